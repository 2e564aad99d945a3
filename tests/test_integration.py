"""The user's path through the real commands: nnunet-fuse plan/env, nnUNetv2_train, nnUNetv2_predict (CPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from conftest import TINY_ID, assert_beats_baselines, run

BIN = Path(sys.executable).parent


def user_env(env):
    """The environment a user has before `eval "$(nnunet-fuse env)"`: no nnUNet_extTrainer."""
    env = dict(env)
    env.pop("nnUNet_extTrainer", None)
    return env


def train_and_predict(workdir, env, raw, configuration, trainer, plans, out_name):
    results_dir = workdir / "nnUNet_results"
    run(f'eval "$(nnunet-fuse env)" && nnUNetv2_train {TINY_ID} {configuration} 0 -tr {trainer} -p {plans} '
        f'-device cpu', env)
    fold = next(results_dir.glob(f"Dataset{TINY_ID}_*")) / f"{trainer}__{plans}__{configuration}" / "fold_0"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer
    assert (fold / "validation" / "summary.json").is_file()  # nnU-Net's own final validation ran
    out = workdir / out_name
    run(f'eval "$(nnunet-fuse env)" && nnUNetv2_predict -i {raw / "imagesTs"} -o {out} -d {TINY_ID} '
        f'-c {configuration} -f 0 -tr {trainer} -p {plans} -device cpu -npp 1 -nps 1', env)
    for image_file in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        case = image_file.name.replace("_0000.nii.gz", ".nii.gz")
        image, prediction = sitk.ReadImage(str(image_file)), sitk.ReadImage(str(out / case))
        assert prediction.GetSize() == image.GetSize()
        assert np.allclose(prediction.GetSpacing(), image.GetSpacing())
        assert np.allclose(prediction.GetOrigin(), image.GetOrigin())
        assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1, 2, 3}
    assert_beats_baselines(out, raw / "labelsTs", factor=1.7)  # not an all-background, constant or random result
    # nnunet-fuse predict: the scans checked, then nnU-Net's own prediction, the same segmentations
    checked_out = workdir / f"{out_name}_checked"
    result = run([str(BIN / "nnunet-fuse"), "predict", "-i", str(raw / "imagesTs"), "-o", str(checked_out), "-d",
                  str(TINY_ID), "-c", configuration, "-f", "0", "-tr", trainer, "-p", plans, "-device", "cpu",
                  "-npp", "1", "-nps", "1"], user_env(env))
    assert "checked 2 case(s)" in result.stdout
    for reference in sorted(out.glob("*.nii.gz")):
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(reference))),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(checked_out / reference.name))))
    return checkpoint


def test_plan_train_predict_through_nnunet_commands(planned_dataset):
    workdir, env, raw = planned_dataset
    env = user_env(env)
    result = run(f"nnunet-fuse plan -d {TINY_ID} --method fuseunet -c 2d 3d_fullres", env)
    assert "nnUNetFuseUNetPlans.json" in result.stdout
    plans = json.loads(next((workdir / "nnUNet_preprocessed").glob(f"Dataset{TINY_ID}_*"))
                       .joinpath("nnUNetFuseUNetPlans.json").read_text())
    assert plans["plans_name"] == "nnUNetFuseUNetPlans"

    # 3D, no deep supervision (the paper's setting)
    checkpoint = train_and_predict(workdir, env, raw, "3d_fullres", "nnUNetTrainerFuseUNet_demo",
                                   "nnUNetFuseUNetPlans", "pred_3d")
    assert any(k.startswith("decoder.projections.") for k in checkpoint["network_weights"])
    # 2D with deep supervision through nnU-Net's deep-supervision loss
    train_and_predict(workdir, env, raw, "2d", "nnUNetTrainerFuseUNetDS_demo", "nnUNetFuseUNetPlans", "pred_2d")


def test_resenc_base_plans_train_and_predict(planned_dataset):
    workdir, env, raw = planned_dataset
    env = user_env(env)
    result = run(f"nnunet-fuse plan -d {TINY_ID} --method fuseunet --base-plans nnUNetResEncUNetMPlans -c 2d", env)
    assert "nnUNetFuseUNetResEncUNetMPlans" in result.stdout
    # ResEnc M plans reuse nnUNetPlans' preprocessed data (same data_identifier); 2d is preprocessed already. Their
    # 2d batch here is 160 slices of 32 × 32: trained as nnUNetPlans' batch of 8, so that 250 iterations take a minute
    folder = next((workdir / "nnUNet_preprocessed").glob(f"Dataset{TINY_ID}_*"))
    plans = json.loads((folder / "nnUNetFuseUNetResEncUNetMPlans.json").read_text())
    plans["configurations"]["2d"]["batch_size"], plans["plans_name"] = 8, "nnUNetFuseUNetResEncUNetMPlansBatch8"
    (folder / "nnUNetFuseUNetResEncUNetMPlansBatch8.json").write_text(json.dumps(plans))
    checkpoint = train_and_predict(workdir, env, raw, "2d", "nnUNetTrainerFuseUNet_demo",
                                   "nnUNetFuseUNetResEncUNetMPlansBatch8", "pred_resenc")
    assert any(k.startswith("encoder.stem.") for k in checkpoint["network_weights"])


def test_trainer_refuses_plans_of_another_network(planned_dataset):
    workdir, env, _ = planned_dataset
    result = run(f"nnUNetv2_train {TINY_ID} 2d 0 -tr nnUNetTrainerFuseUNet_smoke -p nnUNetPlans -device cpu",
                 env, check=False)
    assert result.returncode != 0
    assert "needs FuseUNet plans" in result.stderr and "nnunet-fuse plan -d" in result.stderr
    fold = next((workdir / "nnUNet_results").glob(f"Dataset{TINY_ID}_*")) / \
        "nnUNetTrainerFuseUNet_smoke__nnUNetPlans__2d" / "fold_0"
    assert not list(fold.glob("checkpoint_*.pth"))


def test_cli_errors(planned_dataset, tmp_path):
    _, env, _ = planned_dataset
    no_paths = {k: v for k, v in env.items() if not k.startswith("nnUNet_")}
    result = run(f"nnunet-fuse plan -d {TINY_ID} --method fuseunet", no_paths, check=False)
    assert result.returncode == 2 and "nnUNet_preprocessed is not set" in result.stderr
    result = run(f"nnunet-fuse plan -d {TINY_ID} --method hifuse-typo", env, check=False)
    assert result.returncode == 2 and "unknown method 'hifuse-typo'" in result.stderr
    result = run("nnunet-fuse plan -d 123 --method fuseunet", env, check=False)
    assert result.returncode == 2 and "nnUNetv2_plan_and_preprocess -d 123" in result.stderr


def test_env_line_keeps_other_trainer_folders_and_finds_installed_trainers(tmp_path):
    """Run from outside the checkout, so the *installed* package answers (pip install ., not only editable)."""
    env = {**os.environ, "nnUNet_extTrainer": "/somewhere/else"}
    line = subprocess.run([str(BIN / "nnunet-fuse"), "env"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert line.startswith("export nnUNet_extTrainer=") and line.rstrip("'").endswith(":/somewhere/else")
    probe = ("import nnunet_fuse, os; from nnunet_fuse.resources import trainers_folder;"
             "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find;"
             "c = find('nnUNetTrainerFuseUNet'); print(nnunet_fuse.__file__); print(trainers_folder());"
             "print(c.__module__)")
    shell = f'{line} && "{sys.executable}" -c "{probe}"'
    package_file, folder, module = run(shell, {**os.environ}, cwd=tmp_path).stdout.strip().splitlines()[-3:]
    assert (Path(folder) / "nnunet_fuse_trainers.py").is_file()
    assert module == "nnunet_fuse.training.fuseunet"  # canonical, picklable class
    if "site-packages" in package_file:  # a wheel install must carry the trainers folder inside the package
        assert Path(folder).parent == Path(package_file).parent
        assert (Path(package_file).parent / "ode" / "solve_kernels.c").is_file()  # the C source the solve builds
