"""Shared fixtures: a tiny synthetic dataset planned and preprocessed by nnU-Net's own commands."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_fuse.datasets.synthetic import make_synthetic_dataset
from nnunet_fuse.commands import nnunet_command, nnunet_environment

TINY_ID = 991


def run(command, env, cwd=None, check=True, timeout=900):
    """Run a command; on failure show its output in the assertion message."""
    shell = isinstance(command, str)
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            shell=shell, executable="/bin/bash" if shell else None)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n"
                             f"--- stderr\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def planned_dataset(tmp_path_factory):
    """nnU-Net folders with Dataset991 (10 training + 2 test cases), planned and preprocessed for 2d and 3d_fullres
    with nnUNetPlans, plus nnUNetResEncUNetMPlans (planning only). Returns (workdir, env, raw dataset folder)."""
    workdir = tmp_path_factory.mktemp("nnunet")
    env = nnunet_environment(workdir)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    raw = make_synthetic_dataset(workdir / "nnUNet_raw", TINY_ID, name="Tiny", n_train=10, n_test=2,
                                 shape=(16, 32, 32), seed=1)
    run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(TINY_ID), "-c", "2d", "3d_fullres",
         "-np", "1", "--verify_dataset_integrity"], env)
    run([nnunet_command("nnUNetv2_plan_experiment"), "-d", str(TINY_ID), "-pl", "nnUNetPlannerResEncM"], env)
    return workdir, env, raw
