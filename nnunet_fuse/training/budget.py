"""Same-budget trainers for ``nnunet-fuse reproduce``: every method trains on one named schedule.

``nnUNetTrainer_<budget>`` (nnU-Net's own network), ``nnUNetTrainerFuseUNet_<budget>``,
``nnUNetTrainerFuse4Seg_<budget>`` and ``nnUNetTrainerHiFuse_<budget>`` share the schedule BUDGETS[budget] =
(epochs, iterations per epoch, validation iterations per epoch). Short budgets use nnU-Net's lr 1e-2 for the
segmentation networks (FuseUNet at the paper's 1e-3 does not start learning in short schedules); ``paper`` is
nnU-Net's 1000 × 250 with each method's own lr (nnU-Net and HiFuse 1e-2, FuseUNet 1e-3). Fuse4Seg keeps its own
settings (fusion pre-training for 5 % of the epochs).

Each saves ``checkpoint_latest.pth`` after every epoch (nnU-Net: every 50th), atomically like all our checkpoints,
so that ``reproduce`` continues an interrupted training from its last finished epoch, and writes
``training_record.json`` beside its checkpoints when training ends: seconds spent in the training loop
(this run; a resumed run counts from its restart), and peak memory (CUDA: max_memory_allocated; CPU: peak resident
set size of the training process), and the fold's validation cases.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.budgets import BUDGETS, RECORD_FILE
from nnunet_fuse.training.checkpoints import SafeCheckpointTrainer
from nnunet_fuse.training.fuse4seg import nnUNetTrainerFuse4Seg
from nnunet_fuse.training.hifuse import nnUNetTrainerHiFuse
from nnunet_fuse.training.fuseunet import nnUNetTrainerFuseUNet, nnUNetTrainerFuseUNet_lr1e2


class BudgetRecordMixin:
    """Sets the schedule of ``budget`` and records training time and peak memory (see the module docstring)."""

    budget: str

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = BUDGETS[self.budget]
        self.save_every = 1  # checkpoint_latest.pth after every epoch: an interrupted run resumes losing one at most

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """The smoke and check budgets mirror neither in augmentation nor at test time, so that validating whole
        full-size volumes on a CPU stays quick; the others keep nnU-Net's mirroring."""
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if self.budget in ("smoke", "check"):
            self.inference_allowed_mirroring_axes = mirror_axes = None
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def on_train_start(self):
        super().on_train_start()
        self._start_epoch = self.current_epoch
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._train_start = time.perf_counter()

    def on_train_end(self):
        if self.local_rank == 0:
            cuda = self.device.type == "cuda"
            peak = (torch.cuda.max_memory_allocated(self.device) if cuda else
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))
            record = {"trainer": type(self).__name__, "budget": self.budget, "schedule": BUDGETS[self.budget],
                      "initial_lr": self.initial_lr, "device": str(self.device),
                      "train_seconds": time.perf_counter() - self._train_start,
                      "epochs_this_run": self.current_epoch - self._start_epoch,
                      "peak_memory_mb": peak / 2 ** 20,
                      "peak_memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
                      "validation_cases": sorted(self.do_split()[1])}  # reproduce checks the folds against it
            write_text_atomically(Path(self.output_folder) / RECORD_FILE, json.dumps(record, indent=2))
        super().on_train_end()


class nnUNetTrainer_smoke(BudgetRecordMixin, SafeCheckpointTrainer):
    budget = "smoke"


class nnUNetTrainer_check(BudgetRecordMixin, SafeCheckpointTrainer):
    budget = "check"


class nnUNetTrainer_small(BudgetRecordMixin, SafeCheckpointTrainer):
    budget = "small"


class nnUNetTrainer_medium(BudgetRecordMixin, SafeCheckpointTrainer):
    budget = "medium"


class nnUNetTrainer_paper(BudgetRecordMixin, SafeCheckpointTrainer):
    budget = "paper"


class nnUNetTrainerFuseUNet_smoke(BudgetRecordMixin, nnUNetTrainerFuseUNet_lr1e2):
    budget = "smoke"


class nnUNetTrainerFuseUNet_check(BudgetRecordMixin, nnUNetTrainerFuseUNet_lr1e2):
    budget = "check"


class nnUNetTrainerFuseUNet_small(BudgetRecordMixin, nnUNetTrainerFuseUNet_lr1e2):
    budget = "small"


class nnUNetTrainerFuseUNet_medium(BudgetRecordMixin, nnUNetTrainerFuseUNet_lr1e2):
    budget = "medium"


class nnUNetTrainerFuseUNet_paper(BudgetRecordMixin, nnUNetTrainerFuseUNet):
    budget = "paper"


class nnUNetTrainerFuse4Seg_smoke(BudgetRecordMixin, nnUNetTrainerFuse4Seg):
    budget = "smoke"


class nnUNetTrainerFuse4Seg_check(BudgetRecordMixin, nnUNetTrainerFuse4Seg):
    budget = "check"


class nnUNetTrainerFuse4Seg_small(BudgetRecordMixin, nnUNetTrainerFuse4Seg):
    budget = "small"


class nnUNetTrainerFuse4Seg_medium(BudgetRecordMixin, nnUNetTrainerFuse4Seg):
    budget = "medium"


class nnUNetTrainerFuse4Seg_paper(BudgetRecordMixin, nnUNetTrainerFuse4Seg):
    budget = "paper"


class nnUNetTrainerHiFuse_smoke(BudgetRecordMixin, nnUNetTrainerHiFuse):
    budget = "smoke"


class nnUNetTrainerHiFuse_check(BudgetRecordMixin, nnUNetTrainerHiFuse):
    budget = "check"


class nnUNetTrainerHiFuse_small(BudgetRecordMixin, nnUNetTrainerHiFuse):
    budget = "small"


class nnUNetTrainerHiFuse_medium(BudgetRecordMixin, nnUNetTrainerHiFuse):
    budget = "medium"


class nnUNetTrainerHiFuse_paper(BudgetRecordMixin, nnUNetTrainerHiFuse):
    budget = "paper"
