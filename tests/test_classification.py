"""``nnunet-fuse classify``: metrics by hand, classes.json checks, the classifier on odd sizes in 2D and 3D, the
converters' classes, and the whole workflow through nnU-Net's own planning and preprocessing: real ACDC patients
(train, SIGKILL and --c, evaluate, predict) and a synthetic ImageFolder tree that a short training must learn."""
import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED, acdc_subset, interrupt_when_written, run
from nnunet_fuse.datasets.classes import ClassesError, read_classes, write_classes
from nnunet_fuse.classification.metrics import classification_metrics, one_vs_rest_auc
from nnunet_fuse.classification.samples import (RegionOfInterest, fit_to, group_samples, network_inputs,
                                                region_of_interest)
from nnunet_fuse.classification.training import classifier_strides
from nnunet_fuse.commands import nnunet_command, nnunet_environment
from nnunet_fuse.datasets.converters import ConversionError, convert_acdc, convert_imagefolder
from nnunet_fuse.hifuse.classifier import HiFuseClassifier
from nnunet_fuse.input_check import InputError

needs_acdc = pytest.mark.skipif(not (SHARED / "ACDC").is_dir(), reason="../shared/data/ACDC not present")


def test_metrics_against_a_hand_computed_three_class_example():
    classes = ["a", "b", "c"]
    true = [0, 0, 0, 1, 1, 2]
    # predicted: a a b | b c | c   (argmax of the rows below)
    probabilities = np.array([[.8, .1, .1], [.6, .3, .1], [.3, .6, .1], [.2, .7, .1], [.1, .3, .6], [.1, .1, .8]])
    m = classification_metrics(true, probabilities, classes)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    a, b, c = (m["per_class"][k] for k in classes)
    assert (a["precision"], a["recall"]) == (1.0, pytest.approx(2 / 3))
    assert (b["precision"], b["recall"]) == (0.5, 0.5)
    assert (c["precision"], c["recall"]) == (0.5, 1.0)
    assert a["f1"] == pytest.approx(0.8) and b["f1"] == pytest.approx(0.5) and c["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # AUC of class a: scores of a's cases .8 .6 .3 against the others .2 .1 .1: every pair ordered → 1
    assert a["auc"] == 1.0
    # class b: positives .7 .3 vs negatives .1 .3 .6 .1 → pairs won: .7 beats 4, .3 beats 2 and ties 1 → 6.5 / 8
    assert b["auc"] == pytest.approx(6.5 / 8)
    assert [s["support"] for s in (a, b, c)] == [3, 2, 1]
    assert one_vs_rest_auc(np.array([True, True]), np.array([.2, .3])) is None  # no negative case


def test_macro_f1_is_scikit_learns_over_the_classes_referenced_or_predicted():
    """A class a fold never has in its references but predicts once counts in macro-F1 (F1 0), as in scikit-learn."""
    from sklearn.metrics import f1_score

    true, probabilities = [0, 0, 1], np.array([[.9, .05, .05], [.2, .1, .7], [.1, .8, .1]])  # predicted: 0 2 1
    m = classification_metrics(true, probabilities, ["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["macro_f1"] == pytest.approx(f1_score(true, [0, 2, 1], average="macro"))


def test_cross_validation_report_gives_the_sample_sd_over_folds(tmp_path):
    """Two folds at accuracy 1.0 and 0.5: mean 0.750, sample sd 0.354 (the population sd would be 0.250), as
    reproduce reports its spread over folds."""
    from nnunet_fuse.classification.evaluation import evaluate_cross_validation

    write_classes(tmp_path, {"s1": "a", "s2": "b", "s3": "a", "s4": "b"})
    rows = {0: [("s1", "a", "a"), ("s2", "b", "b")], 1: [("s3", "a", "a"), ("s4", "b", "a")]}
    for fold, samples in rows.items():
        (tmp_path / f"fold_{fold}").mkdir()
        with open(tmp_path / f"fold_{fold}" / "validation.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sample", "cases", "true", "predicted", "p_a", "p_b"])
            for sample, true, predicted in samples:
                writer.writerow([sample, sample, true, predicted, *((0.9, 0.1) if predicted == "a" else (0.1, 0.9))])
    result = evaluate_cross_validation(tmp_path, tmp_path / "report", log=lambda _: None)
    assert result["mean_over_folds"]["accuracy"] == {"mean": pytest.approx(0.75), "sd": pytest.approx(0.5 ** 0.5 / 2)}
    report = (tmp_path / "report" / "cv_report.md").read_text()
    assert "0.750 ± 0.354" in report and "sample standard deviation over the folds (n − 1)" in report


def test_classes_json_is_checked_against_the_dataset(tmp_path):
    cases = ["p1_frame01", "p1_frame02", "p2_frame01", "p2_frame02"]
    write_classes(tmp_path, {c: ("x" if c.startswith("p1") else "y") for c in cases})
    classes, by_case = read_classes(tmp_path, cases)
    assert classes == ["x", "y"] and by_case["p2_frame01"] == "y"
    with pytest.raises(ClassesError, match="no class for 1 training case.*p3_frame01"):
        read_classes(tmp_path, cases + ["p3_frame01"])
    with pytest.raises(ClassesError, match="1 case.*the dataset does not have.*p2_frame02"):
        read_classes(tmp_path, cases[:3])
    write_classes(tmp_path, {c: "x" for c in cases}, ["x", "y"])
    with pytest.raises(ClassesError, match="every case has class \\['x'\\].*at least two classes"):
        read_classes(tmp_path, cases)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["x"], "cases": {c: "y" for c in cases}}))
    with pytest.raises(ClassesError, match="classes \\['y'\\] that are not in its class list"):
        read_classes(tmp_path, cases)
    (tmp_path / "classes.json").write_text("{broken")
    with pytest.raises(InputError, match="classes.json is not valid JSON"):
        read_classes(tmp_path, cases)
    with pytest.raises(ClassesError, match="no classes.json in"):
        read_classes(tmp_path / "elsewhere", cases)


def test_samples_group_a_patients_frames_and_inputs_keep_the_scale():
    samples = group_samples(["p1_frame01", "p1_frame12", "p2_frame01", "p2_frame09"])
    assert [(s.id, s.cases) for s in samples] == [("p1", ["p1_frame01", "p1_frame12"]),
                                                 ("p2", ["p2_frame01", "p2_frame09"])]
    with pytest.raises(InputError, match="different numbers of frames.*p3 \\(1\\)"):
        group_samples(["p1_frame01", "p1_frame12", "p2_frame01", "p2_frame09", "p3_frame01"])
    volume = np.arange(2 * 3 * 5 * 6, dtype=np.float32).reshape(2, 3, 5, 6)
    fitted = fit_to(volume, (3, 7, 4))  # pad 5 → 7 (1 each side), crop 6 → 4 (1 each side)
    assert fitted.shape == (2, 3, 7, 4)
    assert np.array_equal(fitted[:, :, 1:6], volume[:, :, :, 1:5]) and not fitted[:, :, 0].any()
    shifted = fit_to(volume, (3, 2, 2), offset=(0, 1, -2))  # window start (5 - 2) / 2 + 1 → 2, (6 - 2) / 2 - 2
    assert np.array_equal(shifted, volume[:, :, 2:4, 0:2])
    assert not fit_to(volume, (3, 2, 2), offset=(0, 9, 0)).any()  # entirely outside
    roi = RegionOfInterest(size=[4, 4], offset=[0.0, 0.0])
    slices = network_inputs(volume, roi)  # 2d: one input per slice
    assert slices.shape == (3, 2, 4, 4) and np.array_equal(slices[1], fit_to(volume[:, 1], (4, 4)))
    assert network_inputs(volume, RegionOfInterest([3, 4, 4], [0.0] * 3)).shape == (1, 2, 3, 4, 4)


def test_region_of_interest_holds_the_training_foreground():
    # four 100 x 120 images, a 20 x 30 foreground box centred 10 voxels right of the centre ± 4
    shapes = [(100, 120)] * 4
    boxes = [((40, 55 + d), (59, 84 + d)) for d in (-4, 0, 4, 0)]
    roi = region_of_interest(boxes, shapes, patch_size=(64, 96), multiple=8)
    assert roi.offset == pytest.approx([0.0, 10.0])  # box centres (49.5, 69.5 + d) vs image centre (49.5, 59.5)
    # extents 20, 30 (+ 4 sd of the centres: 0 and 4 * 2.83) rounded up to 8, at most the patch
    assert roi.size == [24, 48]
    for low, high in boxes:  # every training box inside the window
        start = np.array([50, 60]) + roi.offset - np.array(roi.size) / 2
        assert (np.array(low) >= start).all() and (np.array(high) < start + roi.size).all()
    assert region_of_interest(boxes, shapes, patch_size=(16, 16)).size == [16, 16]


@pytest.mark.parametrize("dim, size, strides", [
    (2, (37, 50), [[4, 4], [2, 2], [2, 2], [2, 2]]),
    (3, (9, 17, 15), [[1, 4, 4], [2, 2, 2], [1, 2, 2], [1, 1, 1]]),
])
def test_classifier_head_on_sides_not_divisible_by_the_strides(dim, size, strides):
    torch.manual_seed(0)
    model = HiFuseClassifier(2, 5, features_per_stage=(8, 16, 32, 32), strides=strides, head_channels=8,
                             conv_op=torch.nn.Conv2d if dim == 2 else torch.nn.Conv3d, dropout=0.2)
    x = torch.randn(3, 2, *size)
    logits = model(x)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    model.eval()
    assert not torch.allclose(model(x[:1]), model(x[1:2]))  # the head sees the image, not a constant
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match=f"is {dim}D"):
        model(torch.zeros(1, 2, *size[:-1]))


def _repository_parameters(depths, n_classes):
    """Parameters of the HiFuse repository's main_model (HiFuse_Tiny/Small/Base), counted from its layer definitions:
    ConvNeXt branch (4×4 stem, LayerNorm + 2×2 downsampling, blocks of dw 7 + LN + MLP ×4 + layer scale), Swin branch
    (4×4 patch embedding, patch merging, blocks of 2 LN + qkv + proj + relative bias (13² × heads) + MLP ×4), an HFF
    block per stage, two LayerNorm + linear heads."""
    widths, heads = [96, 192, 384, 768], [3, 6, 12, 24]
    total = 2 * (3 * 96 * 16 + 96 + 2 * 96) + 2 * (2 * 768 + 768 * n_classes + n_classes)
    for i, (c, k) in enumerate(zip(widths, depths)):
        total += k * (8 * c * c + 58 * c) + k * (12 * c * c + 13 * c + 169 * heads[i])
        if i:
            total += 2 * widths[i - 1] + 4 * widths[i - 1] * c + c + 2 * c * c + 4 * c
        total += int(54.875 * c * c) + 26 * c + 100  # HFF: 1×1 and 3×3 mixing convs, SE, spatial 7×7, residual
    return total


def test_paper_layouts_are_hifuse_t_s_b():
    """The paper's HiFuse-T/S/B: local, global and HFF blocks at all four stages with its depths and ×4 MLPs, within
    6 % of the repository's parameter count (ours downsamples with 3-wide convs, as nnU-Net's plans; the repository
    with a 4 × 4 patch embedding and 2 × 2 patch merging), and its stage shapes on a 224 × 224 image."""
    from nnunet_fuse.budgets import CLASSIFIER_BUDGETS
    from nnunet_fuse.classification.training import build_network, network_settings
    from nnunet_fuse.hifuse.blocks import GlobalBlock, LocalBlock
    from nnunet_fuse.hifuse.classifier import PAPER_DEPTHS, paper_layout

    for size, depths in PAPER_DEPTHS.items():
        model = HiFuseClassifier(3, 1000, strides=(4, 2, 2, 2), window_size=7, **paper_layout(size))
        encoder = model.encoder
        assert [len(b) for b in encoder.local_blocks] == list(depths)
        assert [len(encoder.global_blocks[str(s)]) for s in range(4)] == list(depths) and len(encoder.hff) == 4
        assert encoder.local_blocks[0][0].depthwise.kernel_size == (7, 7)
        assert encoder.local_blocks[0][0].expand.out_channels == 4 * 96
        assert encoder.global_blocks["3"][0].mlp[0].out_channels == 4 * 768
        assert encoder.global_blocks["3"][0].attention.heads == 24
        ratio = sum(p.numel() for p in model.parameters()) / _repository_parameters(depths, 1000)
        assert 1.0 <= ratio <= 1.06, (size, ratio)
    model = HiFuseClassifier(3, 1000, strides=(4, 2, 2, 2), window_size=7, **paper_layout("T")).eval()
    model.encoder.return_skips = True
    with torch.no_grad():
        skips = model.encoder(torch.zeros(1, 3, 224, 224))
        model.encoder.return_skips = False
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
    assert [tuple(s.shape[1:]) for s in skips] == [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]
    # the classify budget `paper` builds HiFuse-T on an nnU-Net 2d plan
    configuration = {"patch_size": [256, 224], "architecture": {"arch_kwargs": {"strides": [[1, 1]] + [[2, 2]] * 5}}}
    network = build_network(network_settings(configuration, 2, 5, CLASSIFIER_BUDGETS["paper"]))
    assert [len(b) for b in network.encoder.local_blocks] == [2, 2, 2, 2] and len(network.encoder.hff) == 4
    assert isinstance(network.encoder.local_blocks[3][1], LocalBlock)
    assert isinstance(network.encoder.global_blocks["0"][1], GlobalBlock)


def test_strides_from_nnunet_plans():
    assert classifier_strides([[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2]]) == [[4, 4], [2, 2], [2, 2], [2, 2]]
    assert classifier_strides([[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2]]) == [[1, 4, 4], [2, 2, 2], [1, 1, 1],
                                                                                [1, 1, 1]]


def _groups(patients):
    return {p: dict(line.split(": ") for line in (SHARED / "ACDC" / "training" / p / "Info.cfg").read_text()
                    .splitlines())["Group"] for p in patients}


@needs_acdc
def test_convert_acdc_writes_the_diagnosis_of_every_case(tmp_path):
    patients = ["patient001", "patient021", "patient041"]
    out = convert_acdc(acdc_subset(tmp_path, patients), tmp_path / "raw", 27)
    content = json.loads((out / "classes.json").read_text())
    assert content["classes"] == ["NOR", "MINF", "DCM", "HCM", "RV"]
    groups = _groups(patients)
    cases = sorted(p.name[:-len(".nii.gz")] for p in (out / "labelsTr").iterdir())
    assert content["cases"] == {c: groups[c.split("_frame")[0]] for c in cases}
    assert read_classes(out, cases)[1] == content["cases"]


def _bar_image(vertical: bool, rng: np.random.Generator, side: int = 48) -> np.ndarray:
    image = rng.normal(60, 15, (side, side))
    position = rng.integers(10, side - 10)
    if vertical:
        image[6:side - 6, position - 2:position + 2] += 120
    else:
        image[position - 2:position + 2, 6:side - 6] += 120
    return np.clip(image, 0, 255).astype(np.uint8)


def _bar_tree(root: Path, per_class: int, rng: np.random.Generator, name=lambda cls, i: f"{cls}{i:02d}") -> Path:
    """An ImageFolder tree root/{horizontal,vertical}/NAME.png of gray bar images."""
    from skimage import io

    for cls in ("horizontal", "vertical"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            io.imsave(str(root / cls / f"{name(cls, i)}.png"), _bar_image(cls == "vertical", rng),
                      check_contrast=False)
    return root


def test_imagefolder_conversion_and_its_errors(tmp_path):
    from skimage import io

    rng = np.random.default_rng(0)
    root = _bar_tree(tmp_path / "bars", 3, rng, name=lambda cls, i: f"{cls[0]} {i}")
    colour = np.stack([_bar_image(True, rng)] * 3, axis=-1)
    io.imsave(str(root / "vertical" / "rgb.jpg"), colour)
    with pytest.raises(ConversionError, match="mixes gray and colour photos"):
        convert_imagefolder(root, tmp_path / "raw", 500)
    (root / "vertical" / "rgb.jpg").unlink()
    with pytest.raises(ConversionError, match="give the dataset id"):
        convert_imagefolder(root, tmp_path / "raw")
    out = convert_imagefolder(root, tmp_path / "raw", 500)
    assert out.name == "Dataset500_bars"
    content = json.loads((out / "classes.json").read_text())
    assert content["classes"] == ["horizontal", "vertical"] and content["cases"]["v_2"] == "vertical"
    assert io.imread(str(out / "imagesTr" / "h_0_0000.png")).shape == (48, 48)
    assert (io.imread(str(out / "labelsTr" / "h_0.png")) == 1).all()
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(out), num_processes=1)
    io.imsave(str(root / "vertical" / "h_0.png"), _bar_image(True, rng), check_contrast=False)
    with pytest.raises(ConversionError, match="both become case 'h_0'"):
        convert_imagefolder(root, tmp_path / "raw2", 501)
    for f in (root / "vertical").iterdir():
        f.unlink()
    with pytest.raises(ConversionError, match="images in 1 class folder"):
        convert_imagefolder(root, tmp_path / "raw3", 502)


def _cli(args, env, check=True):
    return run([sys.executable, "-m", "nnunet_fuse.cli", *args], env, check=check)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_acdc
def test_classify_acdc_train_interrupt_continue_evaluate_predict(tmp_path):
    """Ten real ACDC patients (two per group), nnU-Net's own plan_and_preprocess, then the commands of the README."""
    patients = [f"patient{n:03d}" for n in (1, 2, 21, 22, 41, 42, 61, 62, 81, 82)]
    env = nnunet_environment(tmp_path)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    _cli(["convert", "acdc", str(acdc_subset(tmp_path, patients)), "-d", "27"], env)
    run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", "27", "-c", "2d", "-np", "1"], env)
    model = tmp_path / "nnUNet_results" / "Dataset027_ACDC" / "HiFuseClassifier_check__nnUNetPlans__2d"
    fold = model / "fold_0"
    train = ["classify", "train", "-d", "27", "-c", "2d", "-f", "0", "--budget", "check", "-device", "cpu"]
    # a SIGKILL after the first epoch, then --c: the second epoch continues from the saved state
    interrupt_when_written([sys.executable, "-m", "nnunet_fuse.cli", *train], env, fold / "checkpoint_latest.pth")
    first = json.loads((fold / "progress.json").read_text())
    assert [r["epoch"] for r in first] == [1]
    refused = _cli(train, env, check=False)
    assert refused.returncode == 2 and "pass --c to continue" in refused.stderr
    resumed = _cli(train + ["--c"], env)
    assert "continuing from checkpoint_latest.pth after epoch 1" in resumed.stdout
    progress = json.loads((fold / "progress.json").read_text())
    assert [r["epoch"] for r in progress] == [1, 2] and progress[0] == first[0]
    assert {p.name for p in fold.glob("*.pth")} == {"checkpoint_best.pth", "checkpoint_final.pth"}
    # the same training without the interruption ends with the same weights: the state was restored whole
    other = tmp_path / "uninterrupted"
    env2 = dict(env, nnUNet_results=str(other))
    _cli(train, env2)
    final = torch.load(fold / "checkpoint_final.pth", weights_only=False)["network_weights"]
    reference = torch.load(other / model.parent.name / model.name / "fold_0" / "checkpoint_final.pth",
                           weights_only=False)["network_weights"]
    assert all(torch.equal(final[k], reference[k]) for k in final)

    validation = _read_csv(fold / "validation.csv")
    splits = json.loads((tmp_path / "nnUNet_preprocessed" / "Dataset027_ACDC" / "splits_final.json").read_text())
    held_out = sorted({c.split("_frame")[0] for c in splits[0]["val"]})
    assert sorted(r["sample"] for r in validation) == held_out  # one row per patient, both frames in it
    groups = _groups(patients)
    assert all(r["true"] == groups[r["sample"]] and len(r["cases"].split(";")) == 2 for r in validation)
    classes = ["NOR", "MINF", "DCM", "HCM", "RV"]
    for r in validation:
        p = [float(r[f"p_{c}"]) for c in classes]
        assert sum(p) == pytest.approx(1, abs=1e-4) and r["predicted"] == classes[int(np.argmax(p))]

    report = tmp_path / "report"
    _cli(["classify", "evaluate", "-d", "27", "-c", "2d", "--budget", "check", "-o", str(report)], env)
    metrics = json.loads((report / "cv_metrics.json").read_text())
    true = [classes.index(r["true"]) for r in validation]
    predicted = [classes.index(r["predicted"]) for r in validation]
    assert metrics["folds"]["0"]["accuracy"] == pytest.approx(np.mean(np.equal(true, predicted)))
    assert metrics["pooled"]["n"] == len(held_out)
    assert "balanced accuracy" in (report / "cv_report.md").read_text()
    assert (report / "confusion_matrix.png").stat().st_size > 1000
    assert len(_read_csv(report / "cv_per_case.csv")) == len(held_out)

    # predict new scans: two patients' frames as nnUNetv2_predict takes them; one row per patient
    scans = tmp_path / "scans"
    scans.mkdir()
    for p in ("patient001", "patient041"):
        for f in (tmp_path / "nnUNet_raw" / "Dataset027_ACDC" / "imagesTr").glob(f"{p}_*"):
            (scans / f.name).symlink_to(f)
    out = tmp_path / "predictions.csv"
    predict = ["classify", "predict", "-i", str(scans), "-o", str(out), "-d", "27", "-c", "2d", "-f", "0", "--budget",
               "check", "-device", "cpu"]
    _cli(predict, env)
    rows = _read_csv(out)
    assert [r["sample"] for r in rows] == ["patient001", "patient041"]
    assert all(sum(float(r[f"p_{c}"]) for c in classes) == pytest.approx(1, abs=1e-4) for r in rows)
    next(scans.glob("patient041_frame01*")).unlink()
    missing = _cli(predict, env, check=False)
    assert missing.returncode == 2 and "2 frames" in missing.stderr and "patient041 (1)" in missing.stderr


def test_classify_learns_an_imagefolder_dataset(tmp_path, monkeypatch):
    """Bars horizontal vs vertical, 20 PNGs per class through convert imagefolder and nnU-Net's planning; a short
    training must classify the held-out fold far above chance (0.5)."""
    from nnunet_fuse import cli
    from nnunet_fuse.classification import training

    root = _bar_tree(tmp_path / "bars", 20, np.random.default_rng(1))
    env = nnunet_environment(tmp_path)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(key, env[key])
    assert cli.main(["convert", "imagefolder", str(root), "-d", "500"]) == 0
    run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", "500", "-c", "2d", "-np", "1"], env)
    monkeypatch.setitem(training.CLASSIFIER_BUDGETS, "check", training.ClassifierBudget(6, 10, 8, 2e-3,
                                                                                        (16, 32, 64, 64)))
    assert cli.main(["classify", "train", "-d", "500", "-f", "0", "--budget", "check", "-device", "cpu"]) == 0
    fold = Path(env["nnUNet_results"]) / "Dataset500_bars" / "HiFuseClassifier_check__nnUNetPlans__2d" / "fold_0"
    metrics = json.loads((fold / "validation_metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["accuracy"] >= 0.875, metrics
    # labels of ones: the region of interest is the whole image; inputs read at each use equal the kept ones
    preprocessed = Path(env["nnUNet_preprocessed"]) / "Dataset500_bars"
    data = training.ClassificationData(preprocessed, Path(env["nnUNet_raw"]) / "Dataset500_bars",
                                       json.loads((preprocessed / "nnUNetPlans.json").read_text()), "2d",
                                       log=lambda message: None)
    roi = data.region_of(data.samples)
    assert roi.size == [48, 48] and roi.offset == pytest.approx([0, 0])
    data.use_region(roi)
    kept = {s.id: data.inputs_of(s) for s in data.samples}
    data.use_region(roi, memory_limit=0)
    assert not data.cache and all(np.array_equal(data.inputs_of(s), kept[s.id]) for s in data.samples)
    assert math.isclose(metrics["balanced_accuracy"], np.mean([m["recall"] for m in metrics["per_class"].values()]))
