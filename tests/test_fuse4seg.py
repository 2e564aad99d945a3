"""Fuse4Seg through nnU-Net's commands: plan, bi-level training, prediction, resume; and its clear refusals."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from conftest import TINY_ID, assert_beats_baselines, interrupt_when_written, run
from contrast_reference import region_contrast, surrounding
import nnunet_fuse
from nnunet_fuse.commands import nnunet_command, nnunet_environment
from nnunet_fuse.datasets.synthetic import make_case, make_synthetic_dataset
from nnunet_fuse.intensity_ranges import RANGE_PERCENTILES
from nnunet_fuse.planning import PlanningError, write_plans_variant
from nnunet_fuse.training.fuse4seg import check_checkpoint_trainer

BIN = Path(sys.executable).parent
MULTI_ID = 993
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def two_channel_dataset(tmp_path_factory):
    """Dataset993: 8 training + 2 test cases, 2 co-registered synthetic modalities, planned and preprocessed (2d)."""
    workdir = tmp_path_factory.mktemp("fuse4seg")
    env = nnunet_environment(workdir)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    raw = make_synthetic_dataset(workdir / "nnUNet_raw", MULTI_ID, name="TwoModal", n_train=8, n_test=2,
                                 shape=(12, 32, 32), seed=3, channels=2)
    run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(MULTI_ID), "-c", "2d", "-np", "1",
         "--verify_dataset_integrity"], env)
    return workdir, env, raw


def test_plan_variants_for_both_segmentation_networks(two_channel_dataset):
    workdir, env, _ = two_channel_dataset
    result = run([str(BIN / "nnunet-fuse"), "plan", "-d", str(MULTI_ID), "--method", "fuse4seg", "-c", "2d"], env)
    assert "nnUNetFuse4SegPlans" in result.stdout and "nnUNetTrainerFuse4Seg" in result.stdout
    folder = next((workdir / "nnUNet_preprocessed").glob(f"Dataset{MULTI_ID}_*"))
    architecture = json.loads((folder / "nnUNetFuse4SegPlans.json").read_text())["configurations"]["2d"]["architecture"]
    assert architecture["network_class_name"] == "nnunet_fuse.architectures.Fuse4SegNet"
    assert architecture["arch_kwargs"]["segmentation_network"].endswith("unet.PlainConvUNet")
    # the fusion network maps the dataset's own range of the preprocessed data to [0, 1], the same in every patch
    ranges = architecture["arch_kwargs"]["fusion_intensity_ranges"]
    dataset = infer_dataset_class(str(folder / "nnUNetPlans_2d"))(str(folder / "nnUNetPlans_2d"))
    data = np.concatenate([np.asarray(dataset.load_case(i)[0]).reshape(2, -1) for i in dataset.identifiers], axis=1)
    expected = np.percentile(data, RANGE_PERCENTILES, axis=1).T
    np.testing.assert_allclose(ranges, expected, atol=0.05)
    run([str(BIN / "nnunet-fuse"), "plan", "-d", str(MULTI_ID), "--method", "fuse4seg", "--segment-with", "fuseunet",
         "-c", "2d"], env)
    kwargs = json.loads((folder / "nnUNetFuse4SegFuseUNetPlans.json").read_text())["configurations"]["2d"][
        "architecture"]["arch_kwargs"]
    assert kwargs["segmentation_network"] == "nnunet_fuse.architectures.FuseUNet"
    assert "n_conv_per_stage_decoder" not in kwargs and kwargs["max_order"] == 4
    # plans of a Fuse4Seg network this version does not run (same content, older version) are refused for training;
    # planning again with --overwrite, as the refusal says, writes them for this version
    plans_file = folder / "nnUNetFuse4SegPlans.json"
    old = json.loads(plans_file.read_text())
    old["nnunet_fuse"]["version"] = "0.3.0"
    plans_file.write_text(json.dumps(old))
    with pytest.raises(PlanningError, match=r"written by nnunet_fuse 0\.3\.0 .*pass --overwrite to replace it"):
        write_plans_variant(workdir / "nnUNet_preprocessed", MULTI_ID, "fuse4seg", configurations=["2d"])
    assert json.loads(plans_file.read_text()) == old  # refused: nothing written
    result = write_plans_variant(workdir / "nnUNet_preprocessed", MULTI_ID, "fuse4seg", configurations=["2d"],
                                 overwrite=True)
    assert result["status"] == "written"
    assert json.loads(plans_file.read_text())["nnunet_fuse"]["version"] == nnunet_fuse.__version__


def test_single_channel_dataset_is_refused(planned_dataset):
    workdir, _, _ = planned_dataset
    with pytest.raises(PlanningError, match="needs at least 2 image channels .* this dataset has 1"):
        write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "fuse4seg")


def test_bilevel_training_prediction_and_resume(two_channel_dataset):
    workdir, env, raw = two_channel_dataset
    write_plans_variant(workdir / "nnUNet_preprocessed", MULTI_ID, "fuse4seg", configurations=["2d"])
    trainer, plans = "nnUNetTrainerFuse4Seg_demo", "nnUNetFuse4SegPlans"  # long enough to beat chance
    result = run([nnunet_command("nnUNetv2_train"), str(MULTI_ID), "2d", "0", "-tr", trainer, "-p", plans,
                  "-device", "cpu"], env)
    log = result.stdout
    assert "follower steps K = 1, leader weight λ = 0.5, fusion pre-training epochs = 1" in log
    assert "Fuse4Seg phase: fusion pre-training (autoencoder)" in log and "Fuse4Seg phase: bi-level" in log
    fold = next((workdir / "nnUNet_results").glob(f"Dataset{MULTI_ID}_*")) / f"{trainer}__{plans}__2d" / "fold_0"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer
    assert checkpoint["fusion_optimizer_state"]["state"]  # the leader took steps
    assert any(k.startswith("fusion.") for k in checkpoint["network_weights"])
    # the fusion learnt: its correction of the average (the decoder's last conv, zero when untrained) moved from zero
    # (the segmentation Dice alone is reached with the fusion frozen at the plain average)
    decoder = {int(k.split(".")[2]) for k in checkpoint["network_weights"] if k.startswith("fusion.decoder.")}
    correction = checkpoint["network_weights"][f"fusion.decoder.{max(decoder)}.weight"]
    assert correction.abs().max() > 1e-3, correction.abs().max()
    assert (fold / "validation" / "summary.json").is_file()

    out = workdir / "predictions"
    run([nnunet_command("nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(out), "-d", str(MULTI_ID), "-c",
         "2d", "-f", "0", "-tr", trainer, "-p", plans, "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    for label_file in sorted((raw / "labelsTs").glob("*.nii.gz")):
        prediction = sitk.ReadImage(str(out / label_file.name))
        reference = sitk.ReadImage(str(label_file))
        assert prediction.GetSize() == reference.GetSize()
        assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1, 2, 3}
    # 0.4's network (the fusion corrects the average) scored test Dice 0.77-0.78 = 20x chance in repeated runs; 0.3's
    # (random initial fused image) 0.00-0.21 validation Dice, and 0.000 once in CI
    assert_beats_baselines(out, raw / "labelsTs", factor=5.0)  # 20x frequency chance ≈ 11x uniform random

    # the fused image of every test case, aligned with its input scan
    fused_dir = workdir / "fused"
    exported = run([str(BIN / "nnunet-fuse"), "export-fused", "-i", str(raw / "imagesTs"), "-o", str(fused_dir),
                    "-d", str(MULTI_ID), "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu"], env)
    assert "wrote 2 fused image(s)" in exported.stdout
    for image_file in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        original = sitk.ReadImage(str(image_file))
        fused = sitk.ReadImage(str(fused_dir / image_file.name.replace("_0000.nii.gz", ".nii.gz")))
        assert fused.GetSize() == original.GetSize()
        for name in ("GetSpacing", "GetOrigin", "GetDirection"):
            assert np.allclose(getattr(fused, name)(), getattr(original, name)())
        values = sitk.GetArrayFromImage(fused)
        assert values.min() >= 0 and values.max() <= 1 and values.std() > 0

    # a case with one of its two modalities missing stops with our message
    one_channel = workdir / "one_channel"
    one_channel.mkdir()
    first = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))[0]
    (one_channel / first.name).symlink_to(first)
    failed = run([nnunet_command("nnUNetv2_predict"), "-i", str(one_channel), "-o", str(workdir / "bad"), "-d",
                  str(MULTI_ID), "-c", "2d", "-f", "0", "-tr", trainer, "-p", plans, "-device", "cpu", "-npp", "0",
                  "-nps", "0"], env, check=False)
    assert failed.returncode != 0
    assert "trained on 2 modalities" in failed.stdout + failed.stderr
    failed = run([str(BIN / "nnunet-fuse"), "export-fused", "-i", str(one_channel), "-o", str(workdir / "bad2"),
                  "-d", str(MULTI_ID), "-c", "2d", "-tr", trainer], env, check=False)
    assert failed.returncode == 2 and "lacks channel(s)" in failed.stderr
    assert "trained on 2 channel(s)" in failed.stderr


def test_interrupted_training_continues_from_its_last_epoch_with_both_optimisers(two_channel_dataset):
    """Killed after its first epoch (the budget trainers save checkpoint_latest.pth after every epoch, atomically),
    the training continues with --c from epoch 1, the fusion optimiser's state restored: AdamW's step count goes on
    from the 4 steps of epoch 0 to 8, instead of starting again from 0."""
    workdir, env, _ = two_channel_dataset
    write_plans_variant(workdir / "nnUNet_preprocessed", MULTI_ID, "fuse4seg", configurations=["2d"])
    trainer, plans = "nnUNetTrainerFuse4Seg_smoke", "nnUNetFuse4SegPlans"  # 2 epochs × 4 iterations
    command = [nnunet_command("nnUNetv2_train"), str(MULTI_ID), "2d", "1", "-tr", trainer, "-p", plans, "-device",
               "cpu"]
    fold = next((workdir / "nnUNet_results").glob(f"Dataset{MULTI_ID}_*")) / f"{trainer}__{plans}__2d" / "fold_1"
    interrupt_when_written(command, env, fold / "checkpoint_latest.pth")
    assert not (fold / "checkpoint_final.pth").exists()
    latest = torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    assert latest["current_epoch"] == 1
    fusion_steps = {int(s["step"]) for s in latest["fusion_optimizer_state"]["state"].values()}
    assert fusion_steps == {4}  # fusion pre-training: the leader stepped once per iteration
    assert all("momentum_buffer" in s for s in latest["optimizer_state"]["state"].values())

    resumed = run(command + ["--c"], env).stdout
    assert "Epoch 1" in resumed and "Epoch 0" not in resumed and "Fuse4Seg phase: bi-level" in resumed
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 2
    steps = {k: int(s["step"]) for k, s in final["fusion_optimizer_state"]["state"].items()}
    assert max(steps.values()) == 8  # restored at 4, 4 more steps (not restored: at most 4)
    assert all(steps[k] >= int(s["step"]) for k, s in latest["fusion_optimizer_state"]["state"].items())
    assert not list(fold.glob(".partial-*"))  # a checkpoint being written when killed was never half in place


def test_foreign_checkpoints_and_plans_are_refused(tmp_path):
    check_checkpoint_trainer({"trainer_name": "nnUNetTrainerFuse4Seg_smoke"}, "nnUNetTrainerFuse4Seg", "c.pth")
    with pytest.raises(RuntimeError, match="written by nnUNetTrainerFuseUNet, not by a Fuse4Seg trainer"):
        check_checkpoint_trainer({"trainer_name": "nnUNetTrainerFuseUNet"}, "nnUNetTrainerFuse4Seg", "c.pth")


def test_fuse4seg_trainer_refuses_other_plans(two_channel_dataset):
    _, env, _ = two_channel_dataset
    result = run([nnunet_command("nnUNetv2_train"), str(MULTI_ID), "2d", "0", "-tr", "nnUNetTrainerFuse4Seg_smoke",
                  "-p", "nnUNetPlans", "-device", "cpu"], env, check=False)
    assert result.returncode != 0
    assert "needs Fuse4Seg plans" in result.stderr and "--method fuse4seg" in result.stderr


def cropped_brats_cases(source: Path, target: Path, slices: int = 24, size: int = 160) -> Path:
    """The real cases cut to a block of `slices` × size × size voxels around the tumour (geometry kept: SimpleITK
    slicing moves the origin), so that whole-volume validation and prediction stay quick on a CPU."""
    for case in sorted(p for p in source.iterdir() if (p / "OTMultiClass.nii.gz").is_file()):
        label = sitk.ReadImage(str(case / "OTMultiClass.nii.gz"))
        centre = np.argwhere(sitk.GetArrayViewFromImage(label) > 0).mean(0).astype(int)[::-1]  # x, y, z
        extent = (size, size, slices)
        start = [int(np.clip(c - e // 2, 0, n - e)) for c, e, n in zip(centre, extent, label.GetSize())]
        box = tuple(slice(s, s + e) for s, e in zip(start, extent))
        (target / case.name).mkdir(parents=True)
        for name in ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz"):
            sitk.WriteImage(sitk.ReadImage(str(case / name))[box], str(target / case.name / name))
    return target


@pytest.mark.skipif(not (SHARED / "BraTS2015_FLAIR_T1c").is_dir(), reason="../shared/data/BraTS2015_FLAIR_T1c absent")
def test_real_brats_cases_convert_train_predict_export(tmp_path):
    """The 6 real BraTS cases (FLAIR, T1c; cut around the tumour): convert to regions, plan, a few bi-level iterations
    on CPU (nnUNetTrainerFuse4SegContrast: with the region-contrast loss), predict one case, export its fused image."""
    env = nnunet_environment(tmp_path)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    source = cropped_brats_cases(SHARED / "BraTS2015_FLAIR_T1c", tmp_path / "BraTS2015_cropped")
    run([str(BIN / "nnunet-fuse"), "convert", "brats", str(source)], env)
    run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", "138", "-c", "2d", "-np", "1",
         "--verify_dataset_integrity"], env)
    run([str(BIN / "nnunet-fuse"), "plan", "-d", "138", "--method", "fuse4seg", "-c", "2d"], env)
    # a CPU-sized patch and batch (the planned architecture is kept: the patch is a multiple of its total stride)
    folder = tmp_path / "nnUNet_preprocessed" / "Dataset138_BraTS2015"
    plans = json.loads((folder / "nnUNetFuse4SegPlans.json").read_text())
    cfg = plans["configurations"]["2d"]
    total_stride = np.prod(cfg["architecture"]["arch_kwargs"]["strides"], axis=0)
    cfg["patch_size"], cfg["batch_size"] = [int(max(128, 2 * t)) for t in total_stride], 2
    plans["plans_name"] = "nnUNetFuse4SegPlansCPU"
    (folder / "nnUNetFuse4SegPlansCPU.json").write_text(json.dumps(plans, indent=2))
    # Fuse4Seg with the region-contrast loss, on the smoke budget: BraTS's regions (whole tumour, core, enhancing)
    trainer, plans_name = "nnUNetTrainerFuse4SegContrast_smoke", "nnUNetFuse4SegPlansCPU"
    trained = run([nnunet_command("nnUNetv2_train"), "138", "2d", "0", "-tr", trainer, "-p", plans_name, "-device",
                   "cpu"], env)
    assert "region contrast 4.0 (target 1.15)" in trained.stdout and "Fuse4Seg phase: bi-level" in trained.stdout

    case = "brats_2013_pat0001_1"
    inputs = tmp_path / "case_in"
    inputs.mkdir()
    for channel in range(2):
        name = f"{case}_{channel:04d}.nii.gz"
        (inputs / name).symlink_to(tmp_path / "nnUNet_raw" / "Dataset138_BraTS2015" / "imagesTr" / name)
    run([nnunet_command("nnUNetv2_predict"), "-i", str(inputs), "-o", str(tmp_path / "seg"), "-d", "138", "-c", "2d",
         "-f", "0", "-tr", trainer, "-p", plans_name, "-device", "cpu", "--disable_tta", "-npp", "0", "-nps", "0"], env)
    labels = tmp_path / "nnUNet_raw" / "Dataset138_BraTS2015" / "labelsTr"
    for step, folder, report in ((0.5, "fused", ["--labels", str(labels)]), (0.2, "fused_step_0.2", [])):
        run([str(BIN / "nnunet-fuse"), "export-fused", "-i", str(inputs), "-o", str(tmp_path / folder), "-d", "138",
             "-c", "2d", "-tr", trainer, "-p", plans_name, "-device", "cpu", "-step_size", str(step), *report], env)
    flair = sitk.ReadImage(str(inputs / f"{case}_0000.nii.gz"))
    segmentation = sitk.ReadImage(str(tmp_path / "seg" / f"{case}.nii.gz"))
    fused = sitk.ReadImage(str(tmp_path / "fused" / f"{case}.nii.gz"))
    for image in (segmentation, fused):
        assert image.GetSize() == flair.GetSize()
        assert np.allclose(image.GetSpacing(), flair.GetSpacing()) and np.allclose(image.GetOrigin(), flair.GetOrigin())
    assert set(np.unique(sitk.GetArrayFromImage(segmentation))) <= {0, 1, 2, 3}
    values = sitk.GetArrayFromImage(fused)
    assert values.min() >= 0 and values.max() <= 1 and values.std() > 0
    # tile-independent fusion: another tile step gives the same image (the 0.2 network, per-tile instance norms and
    # attention, blended with nnU-Net's plain Gaussian weights: mean difference 5.9e-3, max 0.13)
    other = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "fused_step_0.2" / f"{case}.nii.gz")))
    assert np.abs(other - values).max() < 1e-4
    # --labels: each region's contrast in each modality, average, max and fused image, on the preprocessed grid;
    # a modality's equals the contrast in the raw scan (normalisation and cropping to the brain cancel)
    contrasts = json.loads((tmp_path / "fused" / "contrast.json").read_text())[case]
    assert set(contrasts) == {"whole tumor", "tumor core", "enhancing tumor"}
    assert all(set(c) == {"FLAIR", "T1c", "average", "max", "fused"} for c in contrasts.values())
    raw_label = sitk.GetArrayFromImage(sitk.ReadImage(str(labels / f"{case}.nii.gz")))
    raw_images = [sitk.GetArrayFromImage(sitk.ReadImage(str(inputs / f"{case}_{c:04d}.nii.gz"))) for c in range(2)]
    brain = np.any([image != 0 for image in raw_images], axis=0)
    for region, values_in in {"whole tumor": [1, 2, 3], "enhancing tumor": [3]}.items():
        mask = np.isin(raw_label, values_in)
        around = surrounding(mask, brain)
        for name, image in zip(("FLAIR", "T1c"), raw_images):
            assert contrasts[region][name] == pytest.approx(region_contrast(image, mask, around), rel=1e-3)
    assert contrasts["whole tumor"]["FLAIR"] > 1  # oedema is a FLAIR structure
    assert "fused keeps" in (tmp_path / "fused" / "contrast.md").read_text()


def write_brats2021_layout(folder: Path, n_cases: int, shape=(12, 32, 32), seed: int = 5) -> Path:
    """Synthetic 4-modality cases in the BraTS 2021 download layout: BraTS2021_XXXXX/BraTS2021_XXXXX_{flair, t1,
    t1ce, t2, seg}.nii.gz, labels 0 / 1 necrosis / 2 oedema / 4 enhancing (nested as tumours are: an oedema sphere,
    a necrotic box and an enhancing rod)."""
    rng = np.random.default_rng(seed)
    brats_label = np.array([0, 2, 1, 4], dtype=np.uint8)  # synthetic sphere, box, rod → oedema, necrosis, enhancing
    for i in range(n_cases):
        case = f"BraTS2021_{i:05d}"
        (folder / case).mkdir(parents=True)
        images, label = make_case(shape, rng, channels=4)
        arrays = {**dict(zip(("flair", "t1", "t1ce", "t2"), images)), "seg": brats_label[label]}
        for suffix, array in arrays.items():
            sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / case / f"{case}_{suffix}.nii.gz"))
    return folder


def test_brats2021_layout_through_reproduce_and_predict(tmp_path):
    """BraTS 2021 (4 modalities) through nnunetv2's converter, then `nnunet-fuse reproduce --methods fuse4seg`
    (plans, the same-budget Fuse4Seg trainer through nnUNetv2_train, validation, report) and nnUNetv2_predict."""
    env = nnunet_environment(tmp_path)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    source = write_brats2021_layout(tmp_path / "BraTS2021_TrainingData", n_cases=6)
    run([str(BIN / "nnunet-fuse"), "convert", "brats", str(source)], env)
    raw = tmp_path / "nnUNet_raw" / "Dataset137_BraTS2021"
    assert len(json.loads((raw / "dataset.json").read_text())["channel_names"]) == 4
    out = tmp_path / "report"
    result = run([str(BIN / "nnunet-fuse"), "reproduce", "-d", "137", "-c", "2d", "--methods", "fuse4seg", "--budget",
                  "smoke", "-device", "cpu", "-np", "1", "-o", str(out)], env)
    assert "Fuse4Seg, fold 0: training (smoke: 2 epochs × 4 iterations)" in result.stdout
    row = json.loads((out / "results.json").read_text())["methods"][0]
    assert row["trainer"] == "nnUNetTrainerFuse4Seg_smoke" and row["plans"] == "nnUNetFuse4SegPlans"
    assert set(row["dice"]) == {"whole tumor", "tumor core", "enhancing tumor"}
    assert all(0 <= d <= 1 for d in row["dice"].values())
    counts = row["parameters"]
    assert counts["fusion"] > 0 and counts["total"] == counts["fusion"] + counts["encoder"] + counts["decoder"]
    fold = next((tmp_path / "nnUNet_results" / raw.name).glob("nnUNetTrainerFuse4Seg_smoke__*")) / "fold_0"
    assert "fusion pre-training epochs = 1" in next(fold.glob("training_log_*.txt")).read_text()

    inputs = tmp_path / "case_in"
    inputs.mkdir()
    for channel in range(4):
        name = f"BraTS2021_00000_{channel:04d}.nii.gz"
        (inputs / name).symlink_to(raw / "imagesTr" / name)
    run([nnunet_command("nnUNetv2_predict"), "-i", str(inputs), "-o", str(tmp_path / "seg"), "-d", "137", "-c", "2d",
         "-f", "0", "-tr", "nnUNetTrainerFuse4Seg_smoke", "-p", "nnUNetFuse4SegPlans", "-device", "cpu",
         "--disable_tta", "-npp", "0", "-nps", "0"], env)
    segmentation = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "seg" / "BraTS2021_00000.nii.gz")))
    assert segmentation.shape == (12, 32, 32) and set(np.unique(segmentation)) <= {0, 1, 2, 3}


def test_region_masks_of_label_and_region_targets():
    """The regions the region-contrast loss reads: one mask per foreground label, or per BraTS region, from the
    target nnU-Net's own transforms make (regions: its ConvertSegmentationToRegionsTransform)."""
    from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from nnunet_fuse.training.fuse4seg import region_masks

    labels = torch.tensor([[[0, 1, 2, 3, 2]]])                      # (1, 1, 5): a label channel of one 1 × 5 slice
    per_label = region_masks([labels[None].float(), labels[None, ..., :2].float()],
                             LabelManager({"background": 0, "a": 1, "b": 2, "c": 3}, None))
    assert per_label[0, :, 0].int().tolist() == [[0, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0]]
    brats = LabelManager({"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
                         [1, 2, 3])
    target = ConvertSegmentationToRegionsTransform(brats.foreground_regions, 0)(segmentation=labels)["segmentation"]
    regions = region_masks(target[None], brats)
    assert regions[0, :, 0].int().tolist() == [[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 0]]
