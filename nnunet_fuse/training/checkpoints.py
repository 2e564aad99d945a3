"""Checkpoints of our trainers: written whole or not at all, and read with an error that names the file.

nnU-Net's trainer writes ``checkpoint_latest/best/final.pth`` with ``torch.save`` straight into place, so an
interruption while saving leaves a truncated file that ``--c`` then fails on with a pickle error. Here each is written
under a temporary name and renamed (nnunet_fuse.atomic_files), extra state of a method (Fuse4Seg's second optimiser)
goes into the same file before the rename, the temporary file of a run killed while saving is removed when training
starts again, and ``--c`` / ``-pretrained_weights`` on an unreadable file says which file
and what to do. ``checkpoint_latest.pth`` is saved after every epoch (nnU-Net: every 50th), and a stop signal ends
the training cleanly between two checkpoint writes (training/stopping.py), so an interrupted training loses at most
the epoch in progress.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_fuse import __version__
from nnunet_fuse.atomic_files import replaced_atomically
from nnunet_fuse.compatibility import CHECKPOINT_VERSION_KEY, check_compatible
from nnunet_fuse.training.stopping import StopOnSignal


def read_checkpoint(filename: Union[str, Path]) -> dict:
    """torch.load of a checkpoint, or RuntimeError naming the file when it is truncated, corrupt or not one, or
    IncompatibleVersionError when an nnunet_fuse version this one cannot read wrote it (compatibility.check_compatible:
    the plugin version and the networks its plans name)."""
    try:
        checkpoint = torch.load(filename, map_location="cpu", weights_only=False)
    except Exception as e:  # pickle, zip and EOF errors all mean the same to the user
        raise RuntimeError(
            f"checkpoint {filename} cannot be read ({type(e).__name__}: {e}); it is truncated or not a checkpoint. "
            f"Delete it: nnUNetv2_train --c then continues from the next checkpoint of the fold "
            f"(checkpoint_latest.pth, checkpoint_best.pth), or starts anew when none is left.") from e
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise RuntimeError(f"{filename} is not an nnU-Net training checkpoint (no 'network_weights')")
    check_compatible(checkpoint, f"checkpoint {filename}")
    return checkpoint


class SafeCheckpointTrainer(nnUNetTrainer):
    """nnU-Net's trainer with atomic checkpoints that record the plugin version, saved after every epoch, and a clean
    stop on SIGTERM / SIGUSR2. Subclasses add their own state through the three hooks."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 1  # checkpoint_latest.pth after every epoch: an interrupted run loses one epoch at most
        self.stop_on_signal = StopOnSignal(self.on_stopped)

    def on_stopped(self, signal_name: str) -> None:
        """A stop signal came (training/stopping.py); the process exits after this."""
        self.print_to_log_file(
            f"nnunet_fuse: {signal_name} received in epoch {self.current_epoch}: training stopped. "
            f"checkpoint_latest.pth holds the epochs finished before it; nnUNetv2_train ... --c continues from there.")

    def extra_checkpoint_state(self) -> dict:
        """Entries added to every checkpoint (default none)."""
        return {}

    def check_checkpoint(self, checkpoint: dict, filename: str) -> None:
        """Raise before anything is loaded when the checkpoint cannot continue this trainer (default: accept)."""

    def restore_extra_checkpoint_state(self, checkpoint: dict) -> None:
        """Restore what extra_checkpoint_state saved (default nothing)."""

    def on_train_start(self):
        """Temporary checkpoint files of a run that was killed while saving are removed (the real ones are whole)."""
        super().on_train_start()
        self.stop_on_signal.install()
        if self.local_rank == 0:
            for leftover in Path(self.output_folder).glob(".partial-*.pth"):
                leftover.unlink(missing_ok=True)

    def save_checkpoint(self, filename: str) -> None:
        with self.stop_on_signal.while_saving(), replaced_atomically(filename) as temporary:
            super().save_checkpoint(str(temporary))  # writes nothing on ranks > 0 or with checkpointing disabled
            extra = {CHECKPOINT_VERSION_KEY: __version__, **self.extra_checkpoint_state()}
            if temporary.is_file():
                checkpoint = torch.load(temporary, map_location="cpu", weights_only=False)
                checkpoint.update(extra)
                torch.save(checkpoint, temporary)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        if not isinstance(filename_or_checkpoint, str):  # nnU-Net's own load_checkpoint only reads file names
            raise TypeError(f"{type(self).__name__}.load_checkpoint takes a checkpoint file name")
        checkpoint = read_checkpoint(filename_or_checkpoint)
        self.check_checkpoint(checkpoint, filename_or_checkpoint)
        super().load_checkpoint(filename_or_checkpoint)
        self.restore_extra_checkpoint_state(checkpoint)
