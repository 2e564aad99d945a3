"""Stopping a training cleanly on a scheduler's signal: SLURM's warning before a time limit or a preemption (SIGUSR2,
the signal submitit asks for), and SIGTERM (``scancel``, ``scontrol requeue``, a plain ``kill`` of
``nnUNetv2_train``).

Our trainers save ``checkpoint_latest.pth`` after every epoch, atomically. On a stop signal the training exits at
once with INTERRUPTED_EXIT_CODE, losing at most the epoch in progress; a signal that comes while a checkpoint is being
written waits until that checkpoint is in place. ``nnUNetv2_train ... --c`` continues from the last finished epoch.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
INTERRUPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped on a signal, continue with --c


class StopOnSignal:
    """Turns STOP_SIGNALS into a clean exit. ``on_stop(signal name)`` runs first (it logs where the training stopped
    and records it); ``while_saving()`` wraps a checkpoint write, during which a stop waits."""

    def __init__(self, on_stop: Callable[[str], None]):
        self.on_stop = on_stop
        self.requested: Optional[str] = None
        self.saving = False

    def install(self) -> bool:
        """Handle STOP_SIGNALS from now on; False (nothing installed) outside the main thread, where Python cannot."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)
        return True

    def _handle(self, signum: int, frame) -> None:
        self.requested = signal.Signals(signum).name
        if not self.saving:
            self._stop()

    @contextmanager
    def while_saving(self) -> Iterator[None]:
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        if self.requested:
            self._stop()

    def _stop(self) -> None:
        for s in STOP_SIGNALS:  # a second signal while stopping must not interrupt the clean-up
            signal.signal(s, signal.SIG_IGN)
        self.on_stop(self.requested)
        sys.exit(INTERRUPTED_EXIT_CODE)
