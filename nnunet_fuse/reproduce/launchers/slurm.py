"""The trainings as one SLURM job array, one (method, fold) per task, submitted through submitit.

Each task runs runs.run_training (``nnUNetv2_train`` of the budget trainer) with ``nnUNet_n_proc_DA`` and
``nnUNet_def_n_proc`` from the CPUs SLURM gave it. Before a time limit or a preemption SLURM sends SIGUSR2 (submitit
asks for it): the trainer stops after its last checkpoint (training/stopping.py), submitit calls
``TrainingJob.checkpoint`` and requeues the task, which then continues with ``--c``. A task that SLURM requeues or
kills itself (``scontrol requeue``, SIGTERM) stops the same way and continues when it runs again.

Running the same command again is the status command: every training's state is read from its fold folder
(finished) and from SLURM (``squeue``: pending, running, requeued; a task SLURM no longer runs and that did not
finish has failed), printed with the job and log of each, a failure with the last lines of its log; only failed and
missing trainings are submitted again, as one new array. A lock on the state file means two invocations at once
never submit the same training twice. States come from ``squeue`` rather than submitit's ``job.state``, which asks
``sacct`` and so needs SLURM's accounting database.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import submitit

from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.commands import stop_running_step
from nnunet_fuse.reporting import format_table
from nnunet_fuse.reproduce.launchers import Launcher
from nnunet_fuse.reproduce.runs import ReproduceError, Training, is_finished, run_training

LIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
               "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "PREEMPTED", "RESV_DEL_HOLD"}
MAX_TIMEOUT_REQUEUES = 30  # a training longer than --time goes on in up to this many requeued jobs
LOG_TAIL_LINES = 12


def slurm_minutes(text: str) -> int:
    """SLURM's --time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes, at least 1."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ReproduceError(f"--time '{text}' is not a SLURM time (e.g. 90, 12:00:00, 2-00:00:00)")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        seconds = a * 60 + b
    else:  # M
        seconds = a * 60
    return max(1, -(-seconds // 60))


@dataclass(frozen=True)
class SlurmResources:
    """What one training's job asks SLURM for."""
    partition: Optional[str] = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem: Optional[str] = None            # e.g. 64G
    time: str = "24:00:00"               # per job; a longer training is requeued and continues
    max_parallel: Optional[int] = None   # array tasks running at once (SLURM's %N)
    sbatch: Tuple[Tuple[str, str], ...] = ()  # any other sbatch option: (("account", "lab"), ("qos", "high"))


class TrainingJob(submitit.helpers.Checkpointable):
    """What submitit runs in a job: runs.run_training with the CPUs SLURM gave the job. ``env``: the submitting
    command's environment, of which the job keeps nnU-Net's variables."""

    def __init__(self, training: Training, env: Dict[str, str]):
        self.training = training
        self.env = env

    def __call__(self) -> str:
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE") or 1)
        # the job's own environment (SLURM's variables, CUDA_VISIBLE_DEVICES) with nnU-Net's settings of the command
        env = {**os.environ, **{k: v for k, v in self.env.items() if k.startswith("nnUNet_")},
               "nnUNet_n_proc_DA": str(max(0, cpus - 1)), "nnUNet_def_n_proc": str(cpus)}
        job = submitit.JobEnvironment()
        print(f"{self.training.title}: SLURM job {job.job_id} on {socket.gethostname()}, {cpus} CPUs "
              f"(nnUNet_n_proc_DA={env['nnUNet_n_proc_DA']}), {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
        run_training(self.training, env, cpus)
        return self.training.key

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """SLURM's warning signal came: nnUNetv2_train got it too and stops after its last checkpoint; once it has
        ended, the same job is requeued (run_training then continues it with --c)."""
        stop_running_step(signal.SIGUSR2)
        return super().checkpoint(*args, **kwargs)


def slurm_states(job_ids: Sequence[str]) -> Dict[str, dict]:
    """{array task id ('12_3'): {'state', 'reason', 'restarts', 'node'}} of the jobs SLURM still knows (squeue
    -t all: running, pending, and ended ones for a few minutes after their end)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    result = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays),
                             "-O", "JobArrayID:64,State:24,RestartCnt:8,Reason:64,NodeList:256"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:  # every job of ours ended long enough ago that SLURM forgot it
            return {}
        raise ReproduceError(f"squeue failed ({result.stderr.strip()}); is SLURM reachable from here?")
    states = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            states[fields[0]] = {"state": fields[1], "restarts": int(fields[2]), "reason": fields[3],
                                 "node": fields[4] if len(fields) > 4 else ""}
    return states


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """One invocation at a time reads the states and submits (a second waits, then sees the first one's jobs)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> List[str]:
    if not path.is_file():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


class SlurmLauncher(Launcher):
    def __init__(self, resources: SlurmResources):
        self.resources = resources

    def launch(self, trainings: Sequence[Training], env: Dict[str, str], folder: Path) -> bool:
        """folder/slurm/ keeps the state file jobs.json (training → job), the lock and submitit's job folders."""
        jobs_folder = folder / "slurm"
        with locked(jobs_folder / ".lock"):
            state_file = jobs_folder / "jobs.json"
            jobs = json.loads(state_file.read_text()) if state_file.is_file() else {}
            live = slurm_states([jobs[t.key]["job_id"] for t in trainings if t.key in jobs])
            states = {t.key: self.training_state(t, jobs.get(t.key), live) for t in trainings}
            self.print_states(trainings, jobs, states)
            to_submit = [t for t in trainings if states[t.key]["state"] in ("failed", "not submitted")]
            if to_submit:
                for training, job in zip(to_submit, self.submit(to_submit, env, jobs_folder)):
                    earlier = jobs.get(training.key, {})
                    jobs[training.key] = {"job_id": job.job_id, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                          "log": str(training.log), "slurm_output": str(job.paths.stdout),
                                          "earlier_jobs": [*earlier.get("earlier_jobs", []),
                                                           *([earlier["job_id"]] if earlier else [])]}
                    print(f"submitted {training.title} as SLURM job {job.job_id}", flush=True)
                write_text_atomically(state_file, json.dumps(jobs, indent=2))
            else:
                print("nothing to submit", flush=True)
        return all(s["state"] == "finished" for s in states.values())

    def training_state(self, training: Training, job: Optional[dict], live: Dict[str, dict]) -> dict:
        """{'state': finished | pending | running | requeued | failed | not submitted, 'detail'}."""
        if is_finished(training):
            return {"state": "finished", "detail": ""}
        if job is None:
            return {"state": "not submitted", "detail": ""}
        slurm = live.get(job["job_id"])
        if slurm is not None and slurm["state"] in LIVE_STATES:
            restarts = f", requeued {slurm['restarts']}×" if slurm["restarts"] else ""
            if slurm["state"] in ("RUNNING", "COMPLETING"):
                return {"state": "running" if not restarts else "requeued",
                        "detail": f"running on {slurm['node']}{restarts}"}
            return {"state": "pending" if not restarts else "requeued",
                    "detail": f"{slurm['state'].lower()} ({slurm['reason']}){restarts}"}
        how = f"SLURM state {slurm['state']}" if slurm is not None else "no longer known to SLURM"
        return {"state": "failed", "detail": f"{how}, not finished"}

    def print_states(self, trainings: Sequence[Training], jobs: dict, states: Dict[str, dict]) -> None:
        table = [["training", "state", "SLURM job", "detail", "log"]]
        for t in trainings:
            job = jobs.get(t.key, {})
            table.append([t.title, states[t.key]["state"], job.get("job_id", "—"), states[t.key]["detail"] or "—",
                          str(t.log)])
        print(f"\n{format_table(table)}", flush=True)
        for t in trainings:
            if states[t.key]["state"] != "failed":
                continue
            print(f"\n--- {t.title} failed ({states[t.key]['detail']}); last lines of {t.log}:", flush=True)
            print("\n".join(log_tail(t.log)) or "(empty)", flush=True)
            output = Path(jobs[t.key].get("slurm_output", ""))
            error = output.with_name(output.name.replace("_log.out", "_log.err"))
            if log_tail(error):
                print(f"--- last lines of the job's error output {error}:", flush=True)
                print("\n".join(log_tail(error, 5)), flush=True)
            print("--- resubmitting it (fix the cause first if it would fail again the same way)", flush=True)

    def submit(self, trainings: Sequence[Training], env: Dict[str, str], jobs_folder: Path) -> List[submitit.Job]:
        """One job array; submitit's files of each job in jobs_folder/<job id>/."""
        r = self.resources
        executor = submitit.SlurmExecutor(folder=jobs_folder / "%j", max_num_timeout=MAX_TIMEOUT_REQUEUES)
        parameters = {"job_name": f"nnunet-fuse_{trainings[0].raw.name}", "time": slurm_minutes(r.time),
                      "cpus_per_task": r.cpus_per_job, "array_parallelism": r.max_parallel or len(trainings),
                      "additional_parameters": {"requeue": True, **dict(r.sbatch)}}
        for key, value in (("partition", r.partition), ("mem", r.mem), ("gpus_per_node", r.gpus_per_job or None)):
            if value is not None:
                parameters[key] = value
        executor.update_parameters(**parameters)
        try:
            return executor.submit_array([TrainingJob(t, env) for t in trainings])
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            detail = getattr(e, "output", b"") or b""
            raise ReproduceError(f"sbatch refused the job array ({e}; {detail.decode(errors='replace').strip()}); "
                                 f"check --partition, --gpus-per-job, --mem, --time and --sbatch") from e
