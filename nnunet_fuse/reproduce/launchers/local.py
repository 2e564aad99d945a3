"""The trainings one after another on this machine, each to its end (what ``--launcher local``, the default, does).

A SIGTERM to ``reproduce`` (a plain ``kill``, a batch system's time limit) is passed on to the running step, so that
nnUNetv2_train stops after its last checkpoint and records its run, instead of being left running without the pipe it
prints to; ``reproduce`` then stops too (INTERRUPTED_EXIT_CODE) and the same command continues.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Sequence

from nnunet_fuse.commands import stop_running_step
from nnunet_fuse.reproduce.launchers import Launcher
from nnunet_fuse.reproduce.runs import Training, TrainingInterrupted, run_training

@contextmanager
def forwarding_sigterm() -> Iterator[None]:
    """Within: SIGTERM goes to the running step (which then ends with its own exit code); with no step running, or
    one that does not end in commands.STOP_TIMEOUT, TrainingInterrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum, frame):
        if stop_running_step(signum) is None:
            raise TrainingInterrupted("SIGTERM received between steps")

    earlier = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, earlier)


class LocalLauncher(Launcher):
    def __init__(self, n_processes: int):
        self.n_processes = n_processes  # nnUNetv2_predict's processes for the snapshot validation

    def launch(self, trainings: Sequence[Training], env: Dict[str, str], folder: Path) -> bool:
        with forwarding_sigterm():
            for training in trainings:
                run_training(training, env, self.n_processes)
        return True
