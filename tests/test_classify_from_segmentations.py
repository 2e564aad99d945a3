"""``nnunet-fuse classify ... --features shape`` on real ACDC patients: body sizes from Info.cfg, a classifier per fold
from the references, held-out patients classified from the references and from a real nnU-Net model's validation
predictions, new scans segmented by that model first, and the bad inputs of issue 31."""
import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import SHARED, acdc_subset, run
from nnunet_fuse.commands import nnunet_command, nnunet_environment

needs_acdc = pytest.mark.skipif(not (SHARED / "ACDC").is_dir(), reason="../shared/data/ACDC not present")
CLASSES = ["NOR", "MINF", "DCM", "HCM", "RV"]
# eight patients of each ACDC group (001-020 DCM, 021-040 HCM, 041-060 MINF, 061-080 NOR, 081-100 RV)
PATIENTS = [f"patient{first + i:03d}" for first in (1, 21, 41, 61, 81) for i in range(8)]


def _cli(args, env, check=True):
    return run([sys.executable, "-m", "nnunet_fuse.cli", *args], env, check=check)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _refused(result, message):
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def _info(patient):
    return dict(line.split(": ") for line in (SHARED / "ACDC" / "training" / patient / "Info.cfg").read_text()
                .splitlines())


@needs_acdc
def test_shape_classifier_from_references_and_from_a_trained_nnunet_model(tmp_path):
    env = nnunet_environment(tmp_path)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    _cli(["convert", "acdc", str(acdc_subset(tmp_path, PATIENTS)), "-d", "27"], env)
    raw = tmp_path / "nnUNet_raw" / "Dataset027_ACDC"
    sizes = json.loads((raw / "body_sizes.json").read_text())
    assert sizes == {p: {"height_cm": float(_info(p)["Height"]), "weight_kg": float(_info(p)["Weight"])}
                     for p in PATIENTS}

    # five folds over patients, classified from the references: far above what a constant class scores (0.2)
    _cli(["classify", "train", "-d", "27", "--features", "shape", "-f", "0", "1", "2", "3", "4"], env)
    model = tmp_path / "nnUNet_results" / "Dataset027_ACDC" / "ShapeClassifier__labelsTr"
    _cli(["classify", "evaluate", "-d", "27", "--features", "shape"], env)
    report = json.loads((model / "cv_report" / "cv_metrics.json").read_text())
    truth = {p: _info(p)["Group"] for p in PATIENTS}
    rows = _read_csv(model / "cv_report" / "cv_per_case.csv")
    assert sorted(r["sample"] for r in rows) == PATIENTS and all(r["true"] == truth[r["sample"]] for r in rows)
    constant = max(list(truth.values()).count(c) for c in CLASSES) / len(PATIENTS)
    assert report["pooled"]["n"] == 40 and report["pooled"]["accuracy"] >= constant + 0.4, report["pooled"]
    chosen = json.loads((model / "fold_0" / "features.json").read_text())
    assert "LVC_volume_change" in chosen["features"] and "body_surface_area_m2" in chosen["features"]
    assert len(chosen["importance"]) == 15 and chosen["model"] in ("logistic regression", "random forest",
                                                                   "gradient boosting")

    # a real nnU-Net model (2 iterations) on the same patient-grouped fold 0: its validation/ predictions are what
    # fold 0's held-out patients are classified from
    run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", "27", "-c", "2d", "-np", "1"], env)
    run([nnunet_command("nnUNetv2_train"), "27", "2d", "0", "-tr", "nnUNetTrainer_check", "-device", "cpu"], env)
    segmenter = tmp_path / "nnUNet_results" / "Dataset027_ACDC" / "nnUNetTrainer_check__nnUNetPlans__2d"
    _cli(["classify", "train", "-d", "27", "--features", "shape", "--segmentations", str(segmenter), "-f", "0"], env)
    honest = tmp_path / "nnUNet_results" / "Dataset027_ACDC" / f"ShapeClassifier__{segmenter.name}"
    splits = json.loads((tmp_path / "nnUNet_preprocessed" / "Dataset027_ACDC" / "splits_final.json").read_text())
    held_out = sorted({c.split("_frame")[0] for c in splits[0]["val"]})
    assert sorted(r["sample"] for r in _read_csv(honest / "fold_0" / "validation.csv")) == held_out
    _refused(_cli(["classify", "train", "-d", "27", "--features", "shape", "--segmentations", str(segmenter), "-f",
                   "1"], env, check=False), "has no fold_1/validation")

    # new scans: segmented by the nnU-Net model first, then classified by the five reference folds (averaged)
    scans = tmp_path / "scans"
    scans.mkdir()
    for f in (raw / "imagesTr").glob("patient00[12]_*"):
        (scans / f.name).symlink_to(f)
    out = tmp_path / "new" / "diagnosis.csv"
    predict = ["classify", "predict", "-d", "27", "--features", "shape", "-o", str(out)]
    _cli(predict + ["-i", str(scans), "--segment-with", str(segmenter), "--body-sizes", str(raw / "body_sizes.json"),
                    "-device", "cpu"], env)
    segmented = out.parent / "diagnosis_segmentations"
    assert sorted(f.name for f in segmented.glob("*.nii.gz")) == sorted(f.name.replace("_0000", "")
                                                                       for f in scans.iterdir())
    rows = _read_csv(out)
    assert [r["sample"] for r in rows] == ["patient001", "patient002"]
    # the CSV is the folds' models averaged on the label maps' features
    import joblib

    from nnunet_fuse.classification.from_segmentations import feature_table, label_map_files
    from nnunet_fuse.classification.samples import group_samples
    from nnunet_fuse.datasets.body_sizes import read_body_sizes

    files = label_map_files([f.name[:-7] for f in segmented.glob("*.nii.gz")], segmented, ".nii.gz")
    names, features = feature_table(group_samples(sorted(files)), files, json.loads(
        (raw / "dataset.json").read_text())["labels"], read_body_sizes(raw / "body_sizes.json"))
    expected = []
    for fold in range(5):
        pipeline = joblib.load(model / f"fold_{fold}" / "model.joblib")
        raw_p = pipeline.predict_proba(features)
        expected.append([raw_p[:, list(pipeline.classes_).index(c)] for c in CLASSES])
    expected = np.mean(expected, axis=0).T
    got = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)

    # the bad inputs: each a clear error (exit 2), no traceback
    labels = tmp_path / "labels"
    labels.mkdir()
    for f in (raw / "labelsTr").glob("patient00[12]_*"):
        shutil.copy(f, labels / f.name)
    body = ["--body-sizes", str(raw / "body_sizes.json")]
    _refused(_cli(predict + ["--segmentations", str(labels)], env, check=False), "uses height and weight")
    _cli(predict + ["--segmentations", str(labels)] + body, env)
    assert [r["sample"] for r in _read_csv(out)] == ["patient001", "patient002"]
    wrong_grid = sitk.ReadImage(str(labels / "patient001_frame01.nii.gz"))
    sitk.WriteImage(wrong_grid[:, :-8, :], str(labels / "patient001_frame01.nii.gz"))
    _refused(_cli(predict + ["--segmentations", str(labels), "-i", str(scans)] + body, env, check=False),
             "patient001_frame01.nii.gz is on another grid than its image")
    unknown = sitk.GetArrayFromImage(wrong_grid)
    unknown[unknown == 3] = 7
    changed = sitk.GetImageFromArray(unknown)
    changed.CopyInformation(wrong_grid)
    sitk.WriteImage(changed, str(labels / "patient001_frame01.nii.gz"))
    _refused(_cli(predict + ["--segmentations", str(labels)] + body, env, check=False),
             "has label values [7] that the training's labels")
    (labels / "patient001_frame01.nii.gz").unlink()
    _refused(_cli(predict + ["--segmentations", str(labels)] + body, env, check=False),
             "from 2 frames (PATIENT_frameNN cases), but patient001 (1)")
    _refused(_cli(predict + ["--segmentations", str(labels), "--segment-with", str(segmenter)] + body, env,
                  check=False), "give the label maps with --segmentations FOLDER, or --segment-with")
    _refused(_cli(["classify", "train", "-d", "27", "--segmentations", str(segmenter)], env, check=False),
             "--segmentations applies to classification from segmentations: add --features shape")
    partial = tmp_path / "partial"
    shutil.copytree(raw / "labelsTr", partial)
    next(partial.glob(f"{held_out[0]}_frame*")).unlink()
    _refused(_cli(["classify", "train", "-d", "27", "--features", "shape", "--segmentations", str(partial), "-f",
                   "0"], env, check=False), "have no segmentation in")


def test_model_selection_finds_the_feature_that_decides_the_class():
    """Three classes decided by feature 0 alone among 11 of noise: the chosen model classifies held-out samples
    correctly and names feature 0 the most important."""
    from nnunet_fuse.classification.tabular import importances, select_model

    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 20)
    features = rng.normal(size=(60, 12))
    features[:, 0] = np.repeat([0.0, 3.0, 6.0], 20) + rng.normal(scale=0.3, size=60)
    names = [f"f{i}" for i in range(12)]
    model = select_model(features[::2], labels[::2], names)
    assert model.inner_score >= 0.9 and model.name in ("logistic regression", "random forest", "gradient boosting")
    assert (model.pipeline.predict(features[1::2]) == labels[1::2]).mean() >= 0.9
    assert next(iter(importances(model, features[::2], labels[::2]))) == "f0"


@needs_acdc
def test_body_sizes_from_info_cfg_and_their_errors(tmp_path):
    from nnunet_fuse.datasets.body_sizes import read_body_sizes
    from nnunet_fuse.datasets.converters import ConversionError, convert_acdc
    from nnunet_fuse.input_check import InputError

    source = tmp_path / "ACDC" / "training"
    for patient in ("patient001", "patient021"):
        shutil.copytree(SHARED / "ACDC" / "training" / patient, source / patient)
    info = source / "patient021" / "Info.cfg"
    info.write_text(info.read_text().replace(f"Height: {_info('patient021')['Height']}", "Height: tall"))
    with pytest.raises(ConversionError, match="Height 'tall' and Weight .* must be numbers"):
        convert_acdc(source, tmp_path / "raw", 27)
    (tmp_path / "sizes.json").write_text(json.dumps({"patient001": {"height_cm": 1.84, "weight_kg": 95}}))
    with pytest.raises(InputError, match="outside any human range for patient001; give height in cm"):
        read_body_sizes(tmp_path / "sizes.json")
    (tmp_path / "sizes.json").write_text(json.dumps({"patient001": {"height": 184}}))
    with pytest.raises(InputError, match="must hold"):
        read_body_sizes(tmp_path / "sizes.json")
