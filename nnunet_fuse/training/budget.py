"""The budget trainers: every method on every schedule of nnunet_fuse.budgets, one class each, named
``nnUNetTrainer<method>_<budget>`` (nnUNetTrainer_small, nnUNetTrainerFuseUNet_demo, nnUNetTrainerFuse4Seg_smoke,
nnUNetTrainerHiFuse_paper, ...), so that ``reproduce``, the demo, the tests and users train every method on one named
schedule.

Every budget but ``paper`` trains at nnU-Net's lr 1e-2 (FuseUNet at the paper's 1e-3 does not start learning in
short schedules); ``paper`` is nnU-Net's 1000 × 250 with each method's own lr (nnU-Net and HiFuse 1e-2, FuseUNet
1e-3). Fuse4Seg keeps its own settings (fusion pre-training for 5 % of the epochs, at least one).

Each saves ``checkpoint_latest.pth`` after every epoch (SafeCheckpointTrainer), so that ``reproduce`` continues an
interrupted training from its last finished epoch; on the budgets of SNAPSHOT_EPOCHS it keeps a snapshot
``checkpoint_iteration_N.pth`` every so many epochs (N iterations trained, a whole checkpoint: nnUNetv2_predict -chk
reads it), from which ``reproduce --curve`` draws learning curves; and keeps ``training_record.json`` beside its
checkpoints, written when a run starts (the fold's validation cases: ``reproduce`` checks the folds against them,
also for an interrupted training), when it is stopped by a signal and when it ends: one entry per run (host, GPU,
SLURM job, start and end, epochs, seconds in the training loop, peak memory: CUDA max_memory_allocated, else the
process's peak resident set size, how it ended), and their totals.
"""
from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import torch

from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.budgets import (BUDGETS, METHOD_INFIXES, NO_MIRRORING_BUDGETS, RECORD_FILE, SNAPSHOT_EPOCHS,
                                 SNAPSHOT_FILE, budget_trainer_name)
from nnunet_fuse.training.checkpoints import SafeCheckpointTrainer
from nnunet_fuse.training.fuse4seg import (nnUNetTrainerFuse4Seg, nnUNetTrainerFuse4SegAverage,
                                           nnUNetTrainerFuse4SegContrast, nnUNetTrainerFuse4SegUnrolled)
from nnunet_fuse.training.fuseunet import nnUNetTrainerFuseUNet, nnUNetTrainerFuseUNetDS
from nnunet_fuse.training.hifuse import nnUNetTrainerHiFuse

METHOD_TRAINERS = {"": SafeCheckpointTrainer, "FuseUNet": nnUNetTrainerFuseUNet,
                   "FuseUNetDS": nnUNetTrainerFuseUNetDS, "Fuse4Seg": nnUNetTrainerFuse4Seg,
                   "Fuse4SegUnrolled": nnUNetTrainerFuse4SegUnrolled, "Fuse4SegAverage": nnUNetTrainerFuse4SegAverage,
                   "Fuse4SegContrast": nnUNetTrainerFuse4SegContrast,
                   "HiFuse": nnUNetTrainerHiFuse}
assert set(METHOD_TRAINERS) == set(METHOD_INFIXES)


class BudgetRecordMixin:
    """Sets the schedule of ``budget`` and records training time and peak memory (see the module docstring)."""

    budget: str

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = BUDGETS[self.budget]
        if self.budget != "paper":
            self.initial_lr = 1e-2

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """The NO_MIRRORING_BUDGETS mirror neither in augmentation nor at test time, so that validating whole
        full-size volumes on a CPU stays quick; the others keep nnU-Net's mirroring."""
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if self.budget in NO_MIRRORING_BUDGETS:
            self.inference_allowed_mirroring_axes = mirror_axes = None
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def on_train_start(self):
        super().on_train_start()
        record_file = Path(self.output_folder) / RECORD_FILE
        self._earlier_runs = []  # a continued training (--c) adds its run to those of the record
        if self.current_epoch > 0 and record_file.is_file():
            try:
                self._earlier_runs = json.loads(record_file.read_text()).get("runs", [])
            except (OSError, ValueError):
                pass
        # a new training: an earlier one's snapshots and their validation (reproduce --curve) are kept, not lost
        earlier = sorted(Path(self.output_folder).glob(SNAPSHOT_FILE.format("*")))
        curve = Path(self.output_folder) / "curve"
        if curve.is_dir():
            earlier.append(curve)
        if self.local_rank == 0 and self.current_epoch == 0 and earlier:
            aside = Path(self.output_folder) / "earlier_snapshots" / time.strftime("%Y%m%d-%H%M%S")
            aside.mkdir(parents=True, exist_ok=True)
            for snapshot in earlier:
                snapshot.rename(aside / snapshot.name)
            self.print_to_log_file(f"nnunet_fuse: this training starts at epoch 0; the snapshots of an earlier "
                                   f"training in this folder ({', '.join(p.name for p in earlier)}) were moved to "
                                   f"{aside}")
        self.save_snapshot(overwrite=False)  # a run interrupted between checkpoint_latest and its snapshot
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        slurm_job = os.environ.get("SLURM_JOB_ID")
        if os.environ.get("SLURM_ARRAY_TASK_ID"):
            slurm_job = f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        self._run = {"host": socket.gethostname(), "slurm_job": slurm_job,
                     "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "start_epoch": self.current_epoch}
        self._validation_cases = sorted(self.do_split()[1])  # reproduce checks the folds against them
        self._train_start = time.perf_counter()
        self.write_record("running")

    def on_epoch_end(self):
        # the record first: a run killed without clean-up (SIGKILL, out of memory, a session's end) keeps the epochs
        # and time of every epoch it checkpointed
        self.write_record("running", epochs_done=self.current_epoch + 1)
        super().on_epoch_end()  # nnU-Net saves checkpoint_latest.pth and counts the epoch
        self.save_snapshot(overwrite=True)

    def save_snapshot(self, overwrite: bool) -> None:
        """checkpoint_iteration_N.pth when the epochs trained so far are a multiple of the budget's snapshot
        interval (not after the last epoch: that is checkpoint_final.pth)."""
        every = SNAPSHOT_EPOCHS.get(self.budget)
        if not every or self.current_epoch == 0 or self.current_epoch % every or self.current_epoch >= self.num_epochs:
            return
        snapshot = Path(self.output_folder) / SNAPSHOT_FILE.format(self.current_epoch * self.num_iterations_per_epoch)
        if overwrite or not snapshot.is_file():
            self.save_checkpoint(str(snapshot))

    def on_stopped(self, signal_name: str) -> None:
        super().on_stopped(signal_name)
        self.write_record(f"stopped by {signal_name}")

    def on_train_end(self):
        self.write_record("finished")
        super().on_train_end()

    def write_record(self, ended: str, epochs_done: Optional[int] = None) -> None:
        """training_record.json with this run as it stands (``ended``: running, stopped by SIGNAL, finished; ``at``:
        when it was written; ``epochs_done``: the epochs trained so far, default current_epoch)."""
        if self.local_rank != 0:
            return
        end_epoch = self.current_epoch if epochs_done is None else epochs_done
        cuda = self.device.type == "cuda"
        peak = (torch.cuda.max_memory_allocated(self.device) if cuda else
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))
        run = {**self._run, "ended": ended, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "end_epoch": end_epoch, "epochs_this_run": end_epoch - self._run["start_epoch"],
               "train_seconds": time.perf_counter() - self._train_start, "peak_memory_mb": peak / 2 ** 20}
        runs = [*self._earlier_runs, run]
        record = {"trainer": type(self).__name__, "budget": self.budget, "schedule": BUDGETS[self.budget],
                  "initial_lr": self.initial_lr, "device": str(self.device),
                  "train_seconds": sum(r["train_seconds"] for r in runs),
                  "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
                  "peak_memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
                  "validation_cases": self._validation_cases,
                  "plans": {"name": self.plans_manager.plans_name, "configuration": self.configuration_name,
                            "settings": self.configuration_manager.configuration},  # what it trains with
                  "runs": runs}
        write_text_atomically(Path(self.output_folder) / RECORD_FILE, json.dumps(record, indent=2))


def _budget_trainer(method_infix: str, budget: str) -> type:
    name = budget_trainer_name(method_infix, budget)
    base = METHOD_TRAINERS[method_infix]
    epochs, iterations, _ = BUDGETS[budget]
    return type(name, (BudgetRecordMixin, base), {
        "budget": budget, "__module__": __name__, "__qualname__": name,
        "__doc__": f"{METHOD_INFIXES[method_infix]}: {epochs} epochs × {iterations} iterations ('{budget}')."})


BUDGET_TRAINERS: Dict[str, type] = {budget_trainer_name(m, b): _budget_trainer(m, b)
                                    for m in METHOD_TRAINERS for b in BUDGETS}
globals().update(BUDGET_TRAINERS)  # importable (and picklable) as nnunet_fuse.training.budget.<name>
