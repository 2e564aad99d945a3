"""Running nnU-Net's own console commands: finding them, their environment, streaming their output."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nnunet_fuse.resources import ext_trainer_value


class StepFailed(RuntimeError):
    """A pipeline command exited non-zero (``code``; negative: killed by that signal)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


_running: List[subprocess.Popen] = []  # the step run_step is running now, for stop_running_step


STOP_TIMEOUT = 120  # seconds a step gets to stop after a forwarded signal (a checkpoint being written finishes first)


def stop_running_step(signal_number: int, timeout: float = STOP_TIMEOUT) -> Optional[int]:
    """Send ``signal_number`` to the step that run_step is running (if any) and wait up to ``timeout`` seconds for it
    to end; its exit code, or None when nothing ran or it did not end in time."""
    if not _running or _running[-1].poll() is not None:
        return _running[-1].returncode if _running else None
    process = _running[-1]
    process.send_signal(signal_number)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def nnunet_command(name: str) -> str:
    """Path of an nnU-Net console script, preferring the one beside this Python (works without an activated venv)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; install nnunetv2 in this environment (pip install nnunetv2)")
    return found


def nnunet_environment(workdir: Optional[Path] = None, base: Optional[Dict[str, str]] = None,
                       light: bool = True) -> Dict[str, str]:
    """Environment for nnU-Net commands with our trainers visible (nnUNet_extTrainer).

    workdir: nnUNet_raw/preprocessed/results become folders below it (created); else they are kept from base.
    light: where the user has not set them, one worker process and no torch.compile (small data, short runs, CPU).
    """
    env = dict(os.environ if base is None else base)
    for folder in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if workdir is not None else ():
        env[folder] = str(workdir / folder)
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    if light:
        env.setdefault("nnUNet_def_n_proc", "1")  # small data: extra worker processes cost more than they save
        env.setdefault("nnUNet_n_proc_DA", "1")
        env.setdefault("nnUNet_compile", "false")  # a short schedule trains for less time than torch.compile takes
    env["nnUNet_extTrainer"] = ext_trainer_value(env.get("nnUNet_extTrainer"))
    return env


def run_step(title: str, command: Sequence[str], env: Dict[str, str], log_file: Path) -> float:
    """Run one command, streaming its output to the terminal and to log_file; return seconds taken."""
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(log_file, "a", buffering=1) as log:  # line by line: a job's log can be followed
        log.write(f"\n=== {title}\n$ {' '.join(command)}\n")
        process = subprocess.Popen(list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1)
        assert process.stdout is not None
        _running[:] = [process]
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                log.write(line)
            code = process.wait()
        finally:
            _running.clear()
    seconds = time.perf_counter() - start
    if code != 0:
        raise StepFailed(f"step '{title}' failed with exit code {code}; see the output above and {log_file}", code)
    print(f"--- {title}: {seconds:.0f} s", flush=True)
    return seconds
