"""HiFuse trainers: nnU-Net's training (SGD, lr 1e-2, PolyLR, deep supervision) on HiFuse plans
(``nnunet-fuse plan --method hifuse`` or ``--method hifuse-fuseunet``)."""
from __future__ import annotations

import torch

from nnunet_fuse.training.plans_check import MethodPlansTrainer


class nnUNetTrainerHiFuse(MethodPlansTrainer):
    plans_methods = ("hifuse", "hifuse-fuseunet")


class nnUNetTrainerHiFuse_2x4(nnUNetTrainerHiFuse):
    """Smoke-test schedule: 2 epochs × 4 iterations."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 4, 2
