"""The trainings one after another on this machine, each to its end (what ``--launcher local``, the default, does)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from nnunet_fuse.reproduce.launchers import Launcher
from nnunet_fuse.reproduce.runs import Training, run_training


class LocalLauncher(Launcher):
    def __init__(self, n_processes: int):
        self.n_processes = n_processes  # nnUNetv2_predict's processes for the snapshot validation

    def launch(self, trainings: Sequence[Training], env: Dict[str, str], folder: Path) -> bool:
        for training in trainings:
            run_training(training, env, self.n_processes)
        return True
