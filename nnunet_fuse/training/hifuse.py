"""HiFuse trainers: nnU-Net's training (SGD, lr 1e-2, PolyLR, deep supervision) on HiFuse plans
(``nnunet-fuse plan --method hifuse`` or ``--method hifuse-fuseunet``)."""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_fuse.training.plans_check import check_plans_network

HIFUSE_METHODS = ("hifuse", "hifuse-fuseunet")


class nnUNetTrainerHiFuse(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        check_plans_network(self.configuration_manager, self.plans_manager.plans_name, type(self).__name__,
                            HIFUSE_METHODS)

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        check_plans_network(configuration_manager, plans_manager.plans_name, "nnUNetTrainerHiFuse", HIFUSE_METHODS)
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)


class nnUNetTrainerHiFuse_2x4(nnUNetTrainerHiFuse):
    """Smoke-test schedule: 2 epochs × 4 iterations."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 4, 2
