"""Converters on real cases from ../shared/data, checked with nnU-Net's verify_dataset_integrity; bad input."""
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

from conftest import SHARED, acdc_subset, run
from nnunet_fuse.datasets.converters import (ConversionError, convert_acdc, convert_brats, convert_brats2015,
                                             convert_kits23, convert_msd)


def needs(name):
    return pytest.mark.skipif(not (SHARED / name).is_dir(), reason=f"../shared/data/{name} not present")


def cases(folder):
    return sorted(p.name for p in folder.glob("*.nii.gz"))


@needs("ACDC")
def test_convert_acdc(tmp_path):
    """nnunetv2 2.8.1's own Dataset027_ACDC.convert_acdc fails at once; ours converts and nnU-Net accepts it."""
    out = convert_acdc(acdc_subset(tmp_path), tmp_path / "raw", 27)
    assert out.name == "Dataset027_ACDC"
    assert len(cases(out / "labelsTr")) == 6  # ED + ES of three patients
    assert cases(out / "imagesTr")[0] == "patient001_frame01_0000.nii.gz"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "RV": 1, "MLV": 2, "LVC": 3} and meta["numTraining"] == 6
    verify_dataset_integrity(str(out), num_processes=1)
    assert not list((tmp_path / "raw").glob(".*partial"))


@needs("ACDC")
def test_acdc_folds_keep_both_frames_of_a_patient_together(tmp_path):
    """convert acdc writes a patient-grouped splits_final.json; nnU-Net's own planner puts it into the preprocessed
    folder and nnU-Net's trainer takes its folds from there (the README's convert → plan_and_preprocess → train)."""
    from nnunet_fuse.commands import nnunet_command, nnunet_environment

    patients = ("patient001", "patient002", "patient003", "patient004")
    out = convert_acdc(acdc_subset(tmp_path, patients), tmp_path / "nnUNet_raw", 27)
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(splits) == 4  # fewer patients than nnU-Net's 5 folds: one fold per patient
    every_case = sorted(p.name[:-len(".nii.gz")] for p in (out / "labelsTr").iterdir())
    for fold in splits:
        assert sorted(fold["train"] + fold["val"]) == every_case
        assert len({c.split("_frame")[0] for c in fold["val"]}) == 1 and len(fold["val"]) == 2  # ED + ES
        assert not {c.split("_frame")[0] for c in fold["train"]} & {c.split("_frame")[0] for c in fold["val"]}
    assert sorted(c for f in splits for c in f["val"]) == every_case
    env = nnunet_environment(tmp_path)
    run([nnunet_command("nnUNetv2_extract_fingerprint"), "-d", "27", "-np", "1"], env)
    run([nnunet_command("nnUNetv2_plan_experiment"), "-d", "27"], env)
    preprocessed = tmp_path / "nnUNet_preprocessed" / "Dataset027_ACDC"
    assert json.loads((preprocessed / "splits_final.json").read_text()) == splits


@needs("Task04_Hippocampus")
def test_convert_msd_through_nnunet_converter(tmp_path):
    src_task = SHARED / "Task04_Hippocampus"
    task = tmp_path / "Task04_Hippocampus"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    meta = json.loads((src_task / "dataset.json").read_text())
    meta["training"] = meta["training"][:5]
    meta["numTraining"], meta["test"], meta["numTest"] = 5, [], 0
    for entry in meta["training"]:
        for key in ("image", "label"):
            (task / entry[key]).symlink_to(src_task / entry[key])
    (task / "imagesTs").mkdir()  # as in ../shared/data (empty there); nnunetv2's converter requires the folder
    (task / "dataset.json").write_text(json.dumps(meta))
    out = convert_msd(task, tmp_path / "raw")
    assert out.name == "Dataset004_Hippocampus"
    assert len(cases(out / "labelsTr")) == 5 and len(cases(out / "imagesTr")) == 5
    verify_dataset_integrity(str(out), num_processes=1)


@needs("BraTS2015_FLAIR_T1c")
def test_convert_brats2015_to_regions(tmp_path):
    src = SHARED / "BraTS2015_FLAIR_T1c"
    out = convert_brats2015(src, tmp_path / "raw", 138)
    assert len(cases(out / "labelsTr")) == 6 and len(cases(out / "imagesTr")) == 12  # FLAIR + T1c per case
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FLAIR", "1": "T1c"}
    assert meta["labels"]["whole tumor"] == [1, 2, 3] and meta["regions_class_order"] == [1, 2, 3]
    verify_dataset_integrity(str(out), num_processes=1)
    # label mapping: whole tumour = any original label > 0; enhancing = original 4; edema = original 2
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "brats_2013_pat0001_1" / "OTMultiClass.nii.gz")))
    converted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "brats_2013_pat0001_1.nii.gz")))
    assert converted.dtype == np.uint8 and set(np.unique(converted)) <= {0, 1, 2, 3}
    assert ((converted > 0) == (original > 0)).all()
    assert ((converted == 3) == (original == 4)).all() and ((converted == 1) == (original == 2)).all()


@needs("ACDC")
def test_bad_input_is_named_and_nothing_is_written(tmp_path):
    src = tmp_path / "ACDC" / "training"
    patient = src / "patient001"
    shutil.copytree(SHARED / "ACDC" / "training" / "patient001", patient)
    raw = tmp_path / "raw"
    raw.mkdir()

    label_file = patient / "patient001_frame12_gt.nii.gz"
    label = sitk.ReadImage(str(label_file))
    array = sitk.GetArrayFromImage(label)
    array[0, 0, 0] = 7
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(label)
    sitk.WriteImage(bad, str(label_file))
    with pytest.raises(ConversionError, match=r"case patient001_frame12: label values \[7\]"):
        convert_acdc(src, raw)
    sitk.WriteImage(label, str(label_file))

    image_file = patient / "patient001_frame01.nii.gz"
    image = sitk.ReadImage(str(image_file))
    image.SetSpacing([s * 2 for s in image.GetSpacing()])
    sitk.WriteImage(image, str(image_file))
    with pytest.raises(ConversionError, match="case patient001_frame01: spacing"):
        convert_acdc(src, raw)
    image_file.unlink()
    with pytest.raises(ConversionError, match="case patient001_frame01: missing file"):
        convert_acdc(src, raw)
    assert list(raw.iterdir()) == []  # nothing half-written

    with pytest.raises(ConversionError, match="no patientNNN folders"):
        convert_acdc(tmp_path, raw)


@needs("BraTS2015_FLAIR_T1c")
def test_convert_cli_refuses_to_replace_a_dataset(planned_dataset):
    _, env, _ = planned_dataset
    src = SHARED / "BraTS2015_FLAIR_T1c"
    result = run(f"nnunet-fuse convert brats2015 {src} -d 138", env)
    assert "Dataset138_BraTS2015" in result.stdout and "nnUNetv2_plan_and_preprocess -d 138" in result.stdout
    again = run(f"nnunet-fuse convert brats2015 {src} -d 138", env, check=False)
    assert again.returncode == 2 and "exists already" in again.stderr
    taken = run(f"nnunet-fuse convert msd {SHARED / 'Task04_Hippocampus'} -d 991", env, check=False)
    assert taken.returncode == 2 and "dataset id 991 is taken" in taken.stderr


def write_case_files(folder, images, label, labels, shape=(6, 8, 10), spacing=(1.0, 1.0, 2.5), seed=0):
    """Small NIfTI files as a download would hold them: float images, a label volume using every value in labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in images:
        image = sitk.GetImageFromArray(rng.normal(size=shape[::-1]).astype(np.float32))
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(folder / name))
    array = np.zeros(shape[::-1], dtype=np.uint8)
    for i, value in enumerate(labels):
        array[i % shape[2], :, i] = value
    seg = sitk.GetImageFromArray(array)
    seg.SetSpacing(spacing)
    sitk.WriteImage(seg, str(folder / label))


def test_convert_kits23_through_nnunet_converter(tmp_path):
    """KiTS 2023 layout (case_XXXXX/imaging + segmentation) through nnunetv2's Dataset220 converter, region labels."""
    src = tmp_path / "kits23" / "dataset"
    for i in range(2):
        write_case_files(src / f"case_{i:05d}", ["imaging.nii.gz"], "segmentation.nii.gz", [0, 1, 2, 3], seed=i)
    out = convert_kits23(src, tmp_path / "raw")
    assert out.name == "Dataset220_KiTS2023"
    assert cases(out / "imagesTr") == ["case_00000_0000.nii.gz", "case_00001_0000.nii.gz"]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"]["kidney"] == [1, 2, 3] and meta["regions_class_order"] == [1, 3, 2]
    verify_dataset_integrity(str(out), num_processes=1)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset220_KiTS2023"]  # no scratch left


def test_convert_brats2021_layout_and_label_conversion(tmp_path):
    """BraTS 2021 (4 modalities, labels 0/1/2/4) → nnunetv2's Dataset137 convention (2→1, 1→2, 4→3), regions."""
    src = tmp_path / "BraTS2021_TrainingData"
    for i in range(2):
        case = f"BraTS2021_{i:05d}"
        write_case_files(src / case, [f"{case}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")],
                         f"{case}_seg.nii.gz", [0, 1, 2, 4], seed=i)
    out = convert_brats(src, tmp_path / "raw")  # the layout is detected
    assert out.name == "Dataset137_BraTS2021"
    assert cases(out / "imagesTr")[:4] == [f"BraTS2021_00000_{c:04d}.nii.gz" for c in range(4)]
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz")))
    converted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "BraTS2021_00000.nii.gz")))
    for old, new in {0: 0, 2: 1, 1: 2, 4: 3}.items():
        assert (converted[original == old] == new).all()
    t1ce = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / "BraTS2021_00000_0001.nii.gz")))
    assert np.array_equal(t1ce, sitk.GetArrayFromImage(sitk.ReadImage(
        str(src / "BraTS2021_00000" / "BraTS2021_00000_t1ce.nii.gz"))))  # channel 1 is T1ce, as nnunetv2's order
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"}
    assert meta["labels"]["whole tumor"] == [1, 2, 3] and meta["regions_class_order"] == [1, 2, 3]
    verify_dataset_integrity(str(out), num_processes=1)


def test_kits23_and_brats2021_bad_input_named(tmp_path):
    src = tmp_path / "BraTS2021_TrainingData"
    write_case_files(src / "BraTS2021_00007", [f"BraTS2021_00007_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")],
                     "BraTS2021_00007_seg.nii.gz", [0, 1, 3])
    with pytest.raises(ConversionError, match=r"case BraTS2021_00007: label values \[3\]"):
        convert_brats(src, tmp_path / "raw")
    kits = tmp_path / "kits" / "case_00003"
    write_case_files(kits, ["imaging.nii.gz"], "other.nii.gz", [0, 1])
    with pytest.raises(ConversionError, match="case case_00003: missing file .*segmentation.nii.gz"):
        convert_kits23(kits.parent, tmp_path / "raw")
    with pytest.raises(ConversionError, match="neither a BraTS 2021"):
        convert_brats(tmp_path / "kits", tmp_path / "raw")
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())
