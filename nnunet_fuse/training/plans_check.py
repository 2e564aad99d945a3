"""Trainers stop early, saying what to run, when the plans do not name their method's network.

The networks a method accepts are the ones its plans overlay (plans/<method>.json) writes, so the two never disagree.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_fuse.compatibility import check_compatible
from nnunet_fuse.planning import load_overlay, variant_plans_name
from nnunet_fuse.training.checkpoints import SafeCheckpointTrainer


def check_plans_network(plans_manager: PlansManager, configuration_manager: ConfigurationManager, trainer_name: str,
                        method: Union[str, Sequence[str]]) -> None:
    """Raise RuntimeError unless the configuration's network is one that `nnunet-fuse plan --method M` writes, for
    the method M (or one of the methods) given, by an nnunet_fuse version this one can use."""
    plans_name = plans_manager.plans_name
    methods = [method] if isinstance(method, str) else list(method)
    overlays = [load_overlay(m) for m in methods]
    network = configuration_manager.network_arch_class_name
    if not any(network in set(o["network_class_by_base"].values()) for o in overlays):
        label = overlays[0]["plans_infix"]
        raise RuntimeError(
            f"{trainer_name} needs {label} plans, but plans '{plans_name}' name the network '{network}'. Write "
            f"{label} plans with `nnunet-fuse plan -d <dataset> --method {methods[0]}` and train with "
            f"`-p {variant_plans_name('nnUNetPlans', label)}`.")
    check_compatible(plans_manager.plans, f"plans '{plans_name}'")


class MethodPlansTrainer(SafeCheckpointTrainer):
    """nnU-Net's trainer (atomic checkpoints) for the plans of ``plans_methods``: it refuses other plans when
    constructed and whenever its network is built (nnUNetv2_predict builds it through the class, without a trainer)."""

    plans_methods: Tuple[str, ...]  # every subclass names its methods (plans/<method>.json)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        plans_manager = PlansManager(plans)  # checked before nnU-Net's trainer creates its output folder and log
        check_plans_network(plans_manager, plans_manager.get_configuration(configuration), type(self).__name__,
                            self.plans_methods)
        super().__init__(plans, configuration, fold, dataset_json, device)

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        check_plans_network(plans_manager, configuration_manager, cls.__name__, cls.plans_methods)
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
