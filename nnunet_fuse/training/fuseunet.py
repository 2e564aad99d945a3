"""Trainers for FuseUNet plans (``nnunet-fuse plan --method fuseunet``).

``nnUNetTrainerFuseUNet`` is the paper (no deep supervision, SGD/PolyLR from lr 1e-3, 1000 epochs × 250
iterations), ``nnUNetTrainerFuseUNetDS`` adds nnU-Net's deep supervision. With a shorter schedule lr 1e-3 does not
start learning (measured: Dice 0.00 after 100 iterations on MSD Hippocampus), so their budget trainers
(``nnUNetTrainerFuseUNet[DS]_<budget>``, training/budget.py) use nnU-Net's lr 1e-2 below the paper's budget.
"""
from __future__ import annotations

import torch

from nnunet_fuse.training.plans_check import MethodPlansTrainer


class nnUNetTrainerFuseUNet(MethodPlansTrainer):
    """The paper's settings: no deep supervision, initial lr 1e-3, nnU-Net's SGD (Nesterov, 0.99) and PolyLR."""

    plans_methods = ("fuseunet",)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False
        self.initial_lr = 1e-3


class nnUNetTrainerFuseUNetDS(nnUNetTrainerFuseUNet):
    """As the paper, but with nnU-Net's deep supervision (one output per encoder stage but the bottleneck)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = True
