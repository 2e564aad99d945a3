"""Fuse4Seg trainer: the fusion network (leader) and the segmentation network (follower) trained bi-level.

Each iteration is ``nnunet_fuse.imagefusion.bilevel.bilevel_step``: the follower steps nnU-Net's SGD (PolyLR) on the
segmentation loss, the leader AdamW on the fusion losses + ``leader_weight`` (λ) × the segmentation loss, its gradient
``leader_gradient``: "first-order" (nnUNetTrainerFuse4Seg: one forward and one backward of both networks, the leader
reading the follower before its step) or "unrolled" (nnUNetTrainerFuse4SegUnrolled: the follower's loss after its
step, its response to the fused image included; three passes of the segmentation network); "none"
(nnUNetTrainerFuse4SegAverage, the ablation) trains the segmentation network on the plain average of the rescaled
modalities, the fusion network never stepped. nnUNetTrainerFuse4SegContrast adds the region-contrast loss (the
leader learns from the batch's labels to keep each region's contrast; ``contrast_weight``, ``contrast_target``).
``follower_steps`` (K) > 1 adds K − 1 follower steps on the detached fused image first. During the first
``fusion_pretrain_epochs`` epochs the leader trains as an autoencoder instead (SSIM + MSE reconstruction of every
modality + the base/detail decomposition loss); the follower trains throughout.
Both optimisers, nnU-Net's GradScaler (CUDA; it scales the one backward of both) and the phase are saved in
one checkpoint file, written atomically (nnunet_fuse.training.checkpoints), and restored with ``--c``. Multi-GPU
(``-num_gpus > 1``): the step averages both networks' gradients over the ranks (nnunet_fuse.training.distributed);
nnU-Net's DDP wrapper serves validation and checkpoints.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from torch import nn

from nnunet_fuse.imagefusion.bilevel import BilevelSettings, bilevel_step
from nnunet_fuse.training.distributed import average_gradients, unwrapped
from nnunet_fuse.training.plans_check import MethodPlansTrainer


def check_checkpoint_trainer(checkpoint: dict, trainer_name: str, filename: str) -> None:
    """A checkpoint written by another trainer lacks the fusion optimiser (or the fusion network): refuse it."""
    written_by = checkpoint.get("trainer_name")
    if written_by is not None and not written_by.startswith("nnUNetTrainerFuse4Seg"):
        raise RuntimeError(f"{filename} was written by {written_by}, not by a Fuse4Seg trainer; {trainer_name} can "
                           f"only continue its own trainings. Start a new training (without --c) or use "
                           f"-tr {written_by}.")


def region_masks(target, label_manager) -> torch.Tensor:
    """The batch's labelled regions at full resolution, (B, R, *S) boolean: one channel per foreground label, or per
    region of a region-based dataset such as BraTS, from nnU-Net's target (B, 1 or R (+ 1 ignore), *S) or its list
    under deep supervision (the first entry is the full resolution)."""
    target = target[0] if isinstance(target, list) else target
    if label_manager.has_regions:
        return target[:, :len(label_manager.foreground_regions)] > 0.5
    return torch.cat([target == label for label in label_manager.foreground_labels], dim=1)


class nnUNetTrainerFuse4Seg(MethodPlansTrainer):
    """Bi-level Fuse4Seg training on Fuse4Seg plans; attributes below are logged at the start of training."""

    plans_methods = ("fuse4seg",)

    follower_steps: int = BilevelSettings.follower_steps              # K
    leader_weight: float = BilevelSettings.leader_weight              # λ
    fusion_pretrain_epochs: Optional[int] = None  # default: 5 % of num_epochs, at least 1
    fusion_lr: float = 1e-4
    intensity_weight: float = BilevelSettings.intensity_weight
    gradient_weight: float = BilevelSettings.gradient_weight
    decomposition_weight: float = BilevelSettings.decomposition_weight
    contrast_weight: float = BilevelSettings.contrast_weight  # region contrast, from the batch's labels
    contrast_target: float = BilevelSettings.contrast_target  # the share of the best modality's contrast it aims at
    leader_gradient: str = BilevelSettings.leader_gradient  # imagefusion.bilevel.LEADER_GRADIENTS

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.fusion_optimizer: Optional[torch.optim.Optimizer] = None

    @property
    def pretrain_epochs(self) -> int:
        if self.fusion_pretrain_epochs is not None:
            return self.fusion_pretrain_epochs
        return max(1, self.num_epochs // 20)

    def model(self) -> nn.Module:
        """The Fuse4SegNet itself (unwrapped from DDP and torch.compile)."""
        return unwrapped(self.network)

    def configure_optimizers(self):
        model = self.model()
        optimizer = torch.optim.SGD(model.segmentation.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                    momentum=0.99, nesterov=True)
        self.fusion_optimizer = torch.optim.AdamW(model.fusion.parameters(), self.fusion_lr, weight_decay=1e-4)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def on_train_start(self):
        super().on_train_start()
        self.print_to_log_file(
            f"Fuse4Seg bi-level training: leader gradient {self.leader_gradient}, follower steps K = "
            f"{self.follower_steps}, leader weight λ = "
            f"{self.leader_weight}, fusion pre-training epochs = {self.pretrain_epochs}, fusion lr = {self.fusion_lr}, "
            f"loss weights intensity {self.intensity_weight}, gradient {self.gradient_weight}, decomposition "
            f"{self.decomposition_weight}, region contrast {self.contrast_weight} (target {self.contrast_target})")

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        phase = ("segmentation of the average (the fusion network is not trained)" if self.leader_gradient == "none"
                 else "fusion pre-training (autoencoder)" if self.current_epoch < self.pretrain_epochs else "bi-level")
        self.print_to_log_file(f"Fuse4Seg phase: {phase}")

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = ([t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list)
                  else target.to(self.device, non_blocking=True))
        settings = BilevelSettings(self.follower_steps, self.leader_weight, self.intensity_weight,
                                   self.gradient_weight, self.decomposition_weight, self.contrast_weight,
                                   self.contrast_target, leader_gradient=self.leader_gradient)
        return bilevel_step(self.model(), data, target, self.loss, self.optimizer, self.fusion_optimizer, settings,
                            pretraining=self.current_epoch < self.pretrain_epochs, scaler=self.grad_scaler,
                            synchronize=average_gradients,
                            regions=region_masks(target, self.label_manager) if self.contrast_weight > 0 else None)

    def on_train_epoch_end(self, train_outputs: List[dict]):
        super().on_train_epoch_end(train_outputs)
        leader_losses = [o["leader_loss"] for o in train_outputs]
        if self.is_ddp:
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, leader_losses)
            leader_losses = [loss for rank in gathered for loss in rank]
        self.print_to_log_file(f"fusion (leader) loss {np.mean(leader_losses):.4f}")

    def extra_checkpoint_state(self) -> dict:
        return {"fusion_optimizer_state": self.fusion_optimizer.state_dict()}

    def check_checkpoint(self, checkpoint: dict, filename: str) -> None:
        check_checkpoint_trainer(checkpoint, type(self).__name__, filename)

    def restore_extra_checkpoint_state(self, checkpoint: dict) -> None:
        if checkpoint.get("fusion_optimizer_state") is not None:
            self.fusion_optimizer.load_state_dict(checkpoint["fusion_optimizer_state"])


class nnUNetTrainerFuse4SegUnrolled(nnUNetTrainerFuse4Seg):
    """Fuse4Seg whose leader differentiates the follower's loss after its step (the unrolled, Stackelberg gradient)."""

    leader_gradient = "unrolled"


class nnUNetTrainerFuse4SegContrast(nnUNetTrainerFuse4Seg):
    """Fuse4Seg whose leader also learns, from the training labels, to keep each labelled region's contrast in the
    fused image as the modality that shows it best does (the region-contrast loss, not in the paper), aimed at 1.15×
    that contrast: the fidelity losses hold it below its target, and aimed at 1× it left the whole tumour below 0.9 on
    unseen BraTS cases (benchmarks/README.md, "what a fusion can keep"); the leader at 1e-3 to move in short
    schedules."""

    contrast_weight = 4.0
    contrast_target = 1.15
    fusion_lr = 1e-3


class nnUNetTrainerFuse4SegAverage(nnUNetTrainerFuse4Seg):
    """The ablation without a learned fusion: the segmentation network trained on the plain average of the rescaled
    modalities (the untrained fusion network's output), on the same plans; the fusion network is never stepped."""

    leader_gradient = "none"
