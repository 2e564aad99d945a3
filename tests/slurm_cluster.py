"""A real one-node SLURM cluster on this machine for the tests: Debian's slurm-wlm and munge, started as root with a
private configuration (its own munge key and socket, ports, state and log folders under one folder), stopped with
every job it still runs. Needs `apt-get install slurm-wlm munge` (.ci/run installs them)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict

DAEMONS = ("munged", "slurmctld", "slurmd")
KILL_WAIT = 5  # seconds between SIGTERM and SIGKILL when a job is cancelled or requeued (SLURM's default: 30)


def missing_programs() -> list:
    return [p for p in (*DAEMONS, "sbatch", "squeue", "scontrol") if shutil.which(p) is None
            and not Path("/usr/sbin", p).is_file()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """start() → env (SLURM_CONF for every SLURM command), stop() → no job, no daemon left."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.env: Dict[str, str] = {}

    def start(self, timeout: float = 60) -> Dict[str, str]:
        f = self.folder
        for sub in ("munge", "state", "spool", "log"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(f / "munge", 0o711)  # munged: clients must reach the socket
        key = f / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        munge_socket = f / "munge" / "munge.socket"
        subprocess.run([program("munged"), "--force", f"--socket={munge_socket}", f"--key-file={key}",
                        f"--log-file={f / 'log' / 'munged.log'}", f"--pid-file={f / 'munge' / 'munged.pid'}",
                        f"--seed-file={f / 'munge' / 'munged.seed'}"], check=True)
        host = socket.gethostname()
        memory_mb = int(int(open("/proc/meminfo").readline().split()[1]) / 1024 * 0.9)
        (f / "slurm.conf").write_text("\n".join([
            "ClusterName=nnunetfuse", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            f"StateSaveLocation={f / 'state'}", f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}", f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            "ReturnToService=2", "MinJobAge=3600",  # ended jobs stay visible to squeue for an hour
            f"KillWait={KILL_WAIT}",
            f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
        self.env = {**os.environ, "SLURM_CONF": str(f / "slurm.conf")}
        subprocess.run([program("slurmctld")], env=self.env, check=True)
        subprocess.run([program("slurmd")], env=self.env, check=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            idle = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if idle.stdout.strip() in ("idle", "mixed"):
                return self.env
            time.sleep(0.5)
        raise RuntimeError(f"the test SLURM cluster did not come up in {timeout} s; logs in {f / 'log'}")

    def scontrol(self, *arguments: str) -> str:
        return subprocess.run(["scontrol", *arguments], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def stop(self) -> None:
        if self.env:
            subprocess.run(["scancel", "--user=root", "--full"], env=self.env, capture_output=True)
            deadline = time.time() + 60
            while time.time() < deadline and subprocess.run(
                    ["squeue", "-h"], env=self.env, capture_output=True, text=True).stdout.strip():
                time.sleep(0.5)
        for pid_file in (self.folder / "slurmd.pid", self.folder / "slurmctld.pid", self.folder / "munge" / "munged.pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
