"""Converters on real cases from ../shared/data, checked with nnU-Net's verify_dataset_integrity; bad input."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

from conftest import run
from nnunet_fuse.datasets.converters import ConversionError, convert_acdc, convert_brats2015, convert_msd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def needs(name):
    return pytest.mark.skipif(not (SHARED / name).is_dir(), reason=f"../shared/data/{name} not present")


def acdc_subset(tmp_path, patients=("patient001", "patient002", "patient003")):
    src = tmp_path / "ACDC" / "training"
    src.mkdir(parents=True)
    for p in patients:
        (src / p).symlink_to(SHARED / "ACDC" / "training" / p)
    return src


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
