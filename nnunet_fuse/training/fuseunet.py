"""Trainers for FuseUNet plans (``nnunet-fuse plan --method fuseunet``).

Pick by budget: ``nnUNetTrainerFuseUNet`` is the paper (no deep supervision, SGD/PolyLR from lr 1e-3,
1000 epochs × 250 iterations). With a shorter schedule lr 1e-3 does not start learning (measured: Dice 0.00 after
100 iterations on MSD Hippocampus), so the short trainers and ``_lr1e2`` use nnU-Net's lr 1e-2.
"""
from __future__ import annotations

from typing import Tuple

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


class nnUNetTrainerFuseUNet_lr1e2(nnUNetTrainerFuseUNet):
    """The paper's network and schedule with nnU-Net's initial lr 1e-2 (for budgets shorter than 1000 epochs)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-2


class FixedScheduleFuseUNetTrainer(nnUNetTrainerFuseUNet_lr1e2):
    """Base of the short schedules (lr 1e-2): ``schedule`` = (epochs, iterations per epoch, validation iterations)."""

    schedule: Tuple[int, int, int]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = self.schedule


class nnUNetTrainerFuseUNet_10x25(FixedScheduleFuseUNetTrainer):
    """Demo schedule: 10 epochs × 25 iterations (a few minutes on 2 CPU cores for small patches)."""

    schedule = (10, 25, 5)


class nnUNetTrainerFuseUNet_4x25(FixedScheduleFuseUNetTrainer):
    """100 iterations: 4 epochs × 25 (the budget of the learning-rate measurement in the module docstring)."""

    schedule = (4, 25, 5)


class nnUNetTrainerFuseUNet_2x4(FixedScheduleFuseUNetTrainer):
    """Smoke-test schedule: 2 epochs × 4 iterations."""

    schedule = (2, 4, 2)


class nnUNetTrainerFuseUNetDS_2x4(nnUNetTrainerFuseUNet_2x4):
    """Smoke-test schedule with deep supervision."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = True
