"""Shared fixtures: a tiny synthetic dataset planned and preprocessed by nnU-Net's own commands."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_fuse.datasets.synthetic import make_synthetic_dataset
from nnunet_fuse.commands import nnunet_command, nnunet_environment

TINY_ID = 991
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data: small real datasets


def acdc_subset(tmp_path, patients=("patient001", "patient002", "patient003")):
    """An ACDC 'training' folder holding links to the given patients of ../shared/data/ACDC/training."""
    src = tmp_path / "ACDC" / "training"
    src.mkdir(parents=True)
    for p in patients:
        (src / p).symlink_to(SHARED / "ACDC" / "training" / p)
    return src


def run(command, env, cwd=None, check=True, timeout=900):
    """Run a command; on failure show its output in the assertion message."""
    shell = isinstance(command, str)
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            shell=shell, executable="/bin/bash" if shell else None)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n"
                             f"--- stderr\n{result.stderr[-6000:]}")
    return result


def baseline_dice(reference, labels):
    """Expected mean Dice over ``labels`` of the predictions that learn nothing, each on this reference: a uniformly
    random labelling (background and every label equally likely), a random labelling with the reference's label
    frequencies, and every constant prediction (all one label; all background scores 0). {name: Dice}."""
    import numpy as np

    fractions = [float((reference == label).mean()) for label in labels]
    uniform = 1 / (len(labels) + 1)
    baselines = {"uniform random": np.mean([2 * p * uniform / (p + uniform) if p else 0.0 for p in fractions]),
                 "random at the label frequencies": np.mean(fractions)}
    for label, p in zip(labels, fractions):
        baselines[f"all {label}"] = 2 * p / (1 + p) / len(labels)
    return baselines


def assert_beats_baselines(predictions, references, labels=(1, 2, 3), factor=1.5):
    """Mean Dice over the reference cases and labels of the predictions must exceed ``factor`` × the best of the
    baselines (baseline_dice: random and constant predictions, averaged over the same cases).
    Returns (mean Dice, best baseline's name, its Dice)."""
    import numpy as np
    import SimpleITK as sitk

    dice, baselines = [], []
    for reference_file in sorted(Path(references).glob("*.nii.gz")):
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(reference_file)))
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(predictions) / reference_file.name)))
        assert prediction.shape == reference.shape
        for label in labels:
            ref, pred = reference == label, prediction == label
            dice.append(2 * (ref & pred).sum() / max(1, ref.sum() + pred.sum()))
        baselines.append(baseline_dice(reference, labels))
    assert dice, f"no reference cases in {references}"
    mean_dice = float(np.mean(dice))
    best = max(baselines[0], key=lambda name: np.mean([b[name] for b in baselines]))
    best_dice = float(np.mean([b[best] for b in baselines]))
    assert mean_dice > factor * best_dice, \
        f"mean Dice {mean_dice:.3f} vs {factor} x {best_dice:.3f} of the best baseline ({best}): {dice}"
    return mean_dice, best, best_dice


def interrupt_when_written(command, env, path, timeout=900):
    """Start command and kill it (and its children, SIGKILL: no clean-up) as soon as ``path`` exists; return the
    output it printed. Fails if the command ends before that."""
    import signal
    import time

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    start = time.time()
    while not Path(path).exists():
        if process.poll() is not None:
            raise AssertionError(f"{command} ended before writing {path}:\n{process.stdout.read()[-4000:]}")
        if time.time() - start > timeout:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"{path} not written within {timeout} s")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return process.stdout.read()


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
