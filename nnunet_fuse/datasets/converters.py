"""Public datasets → nnU-Net raw format, validated first and written atomically.

Every converter checks its input before writing (missing files, label values outside the expected set, image/label
geometry mismatch → ConversionError naming the case), writes into a hidden staging folder and renames it into place
only when complete, and refuses to replace an existing dataset. Where nnunetv2 ships a working converter we call it.
"""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from nnunet_fuse.datasets.body_sizes import BODY_SIZES_FILE, write_body_sizes
from nnunet_fuse.datasets.classes import write_classes
from nnunet_fuse.input_check import InputError, check_nifti_data, read_image, read_image_header, read_json
from nnunet_fuse.splits import ensure_split_file

PathLike = Union[str, Path]


class ConversionError(ValueError):
    """The source data cannot be converted; the message names the case and the problem."""


def _check_pair(case: str, image_files: Sequence[Path], label_file: Path, allowed_labels: Iterable[int]) -> None:
    """Files exist and are complete and finite (input_check.read_image), label values ⊆ allowed_labels, every image
    has the label's size, spacing, origin, direction."""
    try:
        label = read_image(label_file)
        images = [read_image(f) for f in image_files]
    except InputError as e:
        raise ConversionError(f"case {case}: {e}") from e
    values = np.unique(sitk.GetArrayViewFromImage(label))
    unexpected = sorted(set(values.tolist()) - set(allowed_labels))
    if unexpected:
        raise ConversionError(f"case {case}: label values {unexpected} in {label_file.name} are not in the "
                              f"expected set {sorted(allowed_labels)}")
    for f, image in zip(image_files, images):
        if image.GetDimension() != label.GetDimension() or image.GetSize() != label.GetSize():
            raise ConversionError(f"case {case}: image {f.name} has size {image.GetSize()} but the label "
                                  f"{label.GetSize()}")
        for name in ("GetSpacing", "GetOrigin", "GetDirection"):
            if not np.allclose(getattr(image, name)(), getattr(label, name)(), atol=1e-3):
                raise ConversionError(f"case {case}: {name[3:].lower()} of {f.name} {getattr(image, name)()} differs "
                                      f"from the label's {getattr(label, name)()}")


def check_target(raw_root: PathLike, dataset_name: str) -> None:
    """Refuse a dataset name that exists, or whose id another dataset in raw_root uses."""
    target = Path(raw_root) / dataset_name
    if target.exists():
        raise ConversionError(f"{target} exists already; remove it or choose another dataset id (-d)")
    existing = [p.name for p in Path(raw_root).glob(f"{dataset_name[:10]}_*")] if Path(raw_root).is_dir() else []
    if existing:
        raise ConversionError(f"dataset id {int(dataset_name[7:10])} is taken by {existing}; choose another id (-d)")


@contextmanager
def staged_dataset(raw_root: PathLike, dataset_name: str) -> Iterator[Path]:
    """Yield a hidden staging folder; on success rename it to raw_root/dataset_name, on failure remove it."""
    raw_root = Path(raw_root)
    check_target(raw_root, dataset_name)
    target = raw_root / dataset_name
    staging = raw_root / f".{dataset_name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_case(images: Sequence[Path], label: Optional[Path], out: Path, case: str,
               label_map: Optional[Dict[int, int]] = None) -> None:
    """Copy a training case into out/imagesTr (one file per channel) and, unless label is None, out/labelsTr,
    remapping label values."""
    (out / "imagesTr").mkdir(exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    for channel, image in enumerate(images):
        shutil.copy(image, out / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
    if label is None:
        return
    if label_map is None:
        shutil.copy(label, out / "labelsTr" / f"{case}.nii.gz")
        return
    source = sitk.ReadImage(str(label))
    array = sitk.GetArrayFromImage(source).astype(np.int64)
    mapped = np.zeros(array.shape, dtype=np.uint8)
    for old, new in label_map.items():
        mapped[array == old] = new
    result = sitk.GetImageFromArray(mapped)
    result.CopyInformation(source)
    sitk.WriteImage(result, str(out / "labelsTr" / f"{case}.nii.gz"), useCompression=True)


def _adopt(converted: Path, out: Path) -> None:
    """Move what an nnunetv2 converter wrote below a scratch nnUNet_raw (converted) into the staging folder out,
    and remove the scratch folder (converted's parent, inside out)."""
    for item in converted.iterdir():
        item.rename(out / item.name)
    shutil.rmtree(converted.parent)


def _write_dataset_json(out: Path, channels: Dict[str, str], labels: dict, num_training: int, **extra) -> None:
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    generate_dataset_json(str(out), channels, labels, num_training, ".nii.gz", **extra)


# ------------------------------------------------------------------------------------------------------------- ACDC
ACDC_LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}
# Info.cfg's Group: normal, myocardial infarction, dilated / hypertrophic cardiomyopathy, abnormal right ventricle
ACDC_GROUPS = ["NOR", "MINF", "DCM", "HCM", "RV"]


def _acdc_info(patient_folder: Path) -> Dict[str, str]:
    """The patient's Info.cfg as {key: value}; {} without Info.cfg."""
    info = patient_folder / "Info.cfg"
    if not info.is_file():
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.read_text().splitlines()
                                              if ":" in line)}


def acdc_labelled_frames(patient_folder: Path) -> Dict[str, int]:
    """{"ED": frame, "ES": frame} from the patient's Info.cfg (the two labelled frames); {} without Info.cfg."""
    values = _acdc_info(patient_folder)
    info = patient_folder / "Info.cfg"
    try:
        return {phase: int(values[phase]) for phase in ("ED", "ES") if phase in values}
    except ValueError as e:
        raise ConversionError(f"case {patient_folder.name}: {info} has a frame number that is not a number ({e})")


def convert_acdc(training_folder: PathLike, raw_root: PathLike, dataset_id: int = 27) -> Path:
    """ACDC challenge layout (patientNNN/patientNNN_frameYY.nii.gz + _gt) → DatasetXXX_ACDC, one case per labelled
    frame (ED and ES), with a ``splits_final.json`` that keeps both frames of a patient in one fold (nnU-Net's planner
    copies it into the preprocessed folder, where nnU-Net's trainer reads its folds; without it nnU-Net's random
    5-fold split over frames puts one patient on both sides of a fold), classes.json (Info.cfg's Group) and
    body_sizes.json (its Height and Weight, where every patient has them). Replaces nnunetv2 2.8.1's
    Dataset027_ACDC.convert_acdc, which fails on the nnUNet_raw path object and requires a testing/ folder."""
    src = Path(training_folder)
    name = f"Dataset{dataset_id:03d}_ACDC"
    check_target(raw_root, name)
    patients = sorted(p for p in src.glob("patient*") if p.is_dir()) if src.is_dir() else []
    if not patients:
        raise ConversionError(f"no patientNNN folders in {src}; pass the ACDC 'training' folder")
    pairs: List[Tuple[str, Path, Path]] = []
    groups: Dict[str, str] = {}  # patient → Info.cfg's Group (the diagnosis), for classes.json
    body_sizes: Dict[str, Tuple[float, float]] = {}  # patient → Info.cfg's Height and Weight, for body_sizes.json
    for patient in patients:
        info = _acdc_info(patient)
        group = info.get("Group")
        if "Height" in info and "Weight" in info:
            try:
                body_sizes[patient.name] = (float(info["Height"]), float(info["Weight"]))
            except ValueError:
                raise ConversionError(f"case {patient.name}: Info.cfg's Height '{info['Height']}' and Weight "
                                      f"'{info['Weight']}' must be numbers (cm, kg)") from None
        if group and group not in ACDC_GROUPS:
            raise ConversionError(f"case {patient.name}: Info.cfg names Group '{group}', not one of ACDC's "
                                  f"{ACDC_GROUPS}")
        if group:
            groups[patient.name] = group
        labels = sorted(patient.glob(f"{patient.name}_frame*_gt.nii.gz"))
        uncompressed = sorted(p.name for p in patient.glob("*_gt.nii"))
        if uncompressed:
            raise ConversionError(f"case {patient.name}: labels {uncompressed} are not .nii.gz and would be left out; "
                                  f"compress them (gzip) as ACDC ships them")
        for phase, frame in acdc_labelled_frames(patient).items():
            expected = patient / f"{patient.name}_frame{frame:02d}_gt.nii.gz"
            if expected not in labels:
                raise ConversionError(f"case {patient.name}: Info.cfg names frame {frame} as {phase}, but {expected} "
                                      f"is missing; restore it (the frame would be left out)")
        if not labels:
            raise ConversionError(f"case {patient.name}: no *_gt.nii.gz label in {patient}")
        for label in labels:
            case = label.name.replace("_gt.nii.gz", "")
            image = patient / f"{case}.nii.gz"
            _check_pair(case, [image], label, ACDC_LABELS.values())
            pairs.append((case, image, label))
    with staged_dataset(raw_root, name) as out:
        for case, image, label in pairs:
            _copy_case([image], label, out, case)
        _write_dataset_json(out, {0: "cineMRI"}, ACDC_LABELS, len(pairs), dataset_name=name,
                            license="ACDC: research use, cite Bernard et al., IEEE TMI 2018")
        ensure_split_file(out / "splits_final.json", [case for case, _, _ in pairs], folds=(), log=lambda line: None)
        if groups:
            without = sorted(p.name for p in patients if p.name not in groups)
            if without:
                raise ConversionError(f"Info.cfg of {', '.join(without[:5])} has no 'Group' (the diagnosis) while "
                                      f"other patients' have; restore it (classes.json needs every patient's)")
            write_classes(out, {case: groups[case.split("_frame")[0]] for case, _, _ in pairs}, ACDC_GROUPS)
        if len(body_sizes) == len(patients):
            write_body_sizes(out / BODY_SIZES_FILE, body_sizes)
    return Path(raw_root) / name


# -------------------------------------------------------------------------------------------------------------- MSD
@contextmanager
def _environment(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def convert_msd(task_folder: PathLike, raw_root: PathLike, dataset_id: Optional[int] = None,
                num_processes: int = 1) -> Path:
    """Any Medical Segmentation Decathlon task (TaskXX_Name with dataset.json, imagesTr, labelsTr) through nnunetv2's
    convert_msd_dataset, after checking every training case; dataset id defaults to the task number."""
    src = Path(task_folder)
    meta_file = src / "dataset.json"
    if not meta_file.is_file():
        raise ConversionError(f"{src} is not an MSD task folder (no dataset.json)")
    missing = [d for d in ("imagesTr", "labelsTr", "imagesTs") if not (src / d).is_dir()]
    if missing:
        raise ConversionError(f"{src} is not an MSD task folder: missing {missing}")
    meta = read_json(meta_file)
    if not src.name.startswith("Task") or not src.name[4:6].isdigit():
        raise ConversionError(f"MSD task folders are named TaskXX_Name, got {src.name}")
    dataset_id = int(src.name[4:6]) if dataset_id is None else dataset_id
    name = f"Dataset{dataset_id:03d}_{src.name.split('_', 1)[1]}"
    check_target(raw_root, name)
    allowed = [int(k) for k in meta["labels"]]
    listed = set()
    for entry in meta["training"]:
        image, label = src / entry["image"], src / entry["label"]
        listed.add(image.name)
        case = label.name.replace(".nii.gz", "")
        try:
            header = read_image_header(image)  # header only: the pixels are read once, by _check_pair
            multi_modal = header.GetDimension() == 4  # 4D: nnunetv2 splits the channels
            if multi_modal:
                check_nifti_data(image)  # complete and finite; _check_pair compares the label with the 3D ones
        except InputError as e:
            raise ConversionError(f"case {case}: {e}") from e
        _check_pair(case, [] if multi_modal else [image], label, allowed)
    # nnunetv2's converter takes every .nii.gz of imagesTr, listed or not: one without a label fails nnU-Net later
    unlisted = sorted(f.name for f in (src / "imagesTr").glob("*.nii.gz")
                      if not f.name.startswith((".", "_")) and f.name not in listed)
    if unlisted:
        raise ConversionError(f"{len(unlisted)} image(s) in {src / 'imagesTr'} are not training cases of "
                              f"{meta_file} (no label): {', '.join(unlisted[:5])}; move them to imagesTs (cases to "
                              f"predict) or add them with their labels to dataset.json's 'training' list")
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset

    with staged_dataset(raw_root, name) as out:
        scratch = out / "_nnunet"
        scratch.mkdir()
        # nnunetv2 writes below nnUNet_raw and checks ids against all three folders: point them at scratch space
        with _environment(nnUNet_raw=str(scratch), nnUNet_preprocessed=str(scratch / "p"),
                          nnUNet_results=str(scratch / "r")):
            convert_msd_dataset(str(src), dataset_id, num_processes)
        _adopt(scratch / name, out)
    return Path(raw_root) / name


# ------------------------------------------------------------------------------------------------- BraTS 2015 subset
BRATS_REGIONS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
# BraTS 2013/2015 labels: 1 necrosis, 2 edema, 3 non-enhancing, 4 enhancing → nnU-Net's BraTS convention
# (Dataset137): 1 edema, 2 necrosis / non-enhancing, 3 enhancing; regions as BRATS_REGIONS
BRATS2015_LABEL_MAP = {0: 0, 2: 1, 1: 2, 3: 2, 4: 3}


def convert_brats2015(folder: PathLike, raw_root: PathLike, dataset_id: int = 138) -> Path:
    """BraTS 2013/2015 cases in DeepMedic layout (one folder per case: Flair_subtrMeanDivStd.nii.gz,
    T1c_subtrMeanDivStd.nii.gz, OTMultiClass.nii.gz) → DatasetXXX_BraTS2015 with channels FLAIR, T1c and region-based
    labels (whole tumour, tumour core, enhancing tumour)."""
    src = Path(folder)
    name = f"Dataset{dataset_id:03d}_BraTS2015"
    check_target(raw_root, name)
    cases = sorted(p for p in src.iterdir() if p.is_dir() and (p / "OTMultiClass.nii.gz").exists()) \
        if src.is_dir() else []
    if not cases:
        raise ConversionError(f"no case folders with OTMultiClass.nii.gz in {src}")
    channels = ["Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz"]
    for case in cases:
        _check_pair(case.name, [case / c for c in channels], case / "OTMultiClass.nii.gz", BRATS2015_LABEL_MAP)
    with staged_dataset(raw_root, name) as out:
        for case in cases:
            _copy_case([case / c for c in channels], case / "OTMultiClass.nii.gz", out, case.name,
                       BRATS2015_LABEL_MAP)
        _write_dataset_json(out, {0: "FLAIR", 1: "T1c"}, BRATS_REGIONS, len(cases), regions_class_order=(1, 2, 3),
                            dataset_name=name, license="CC BY-NC-SA 3.0; cite Menze et al., IEEE TMI 2015")
    return Path(raw_root) / name


# ------------------------------------------------------------------------------------------------ KiTS 2023 (nnunetv2)
@contextmanager
def _module_attribute(module, name: str, value) -> Iterator[None]:
    """Temporarily set module.name (nnunetv2's converters read nnUNet_raw from their module, bound at import)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def convert_kits23(dataset_folder: PathLike, raw_root: PathLike, dataset_id: int = 220) -> Path:
    """KiTS 2023 (``dataset/case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz``, labels 0 background, 1 kidney,
    2 tumour, 3 cyst) → DatasetXXX_KiTS2023 through nnunetv2's ``Dataset220_KiTS2023.convert_kits2023`` (regions
    kidney, masses, tumour), after checking every case."""
    from nnunetv2.dataset_conversion import Dataset220_KiTS2023 as nnunet_kits

    src = Path(dataset_folder)
    name = f"Dataset{dataset_id:03d}_KiTS2023"
    check_target(raw_root, name)
    cases = sorted(p for p in src.glob("case_*") if p.is_dir()) if src.is_dir() else []
    if not cases:
        raise ConversionError(f"no case_XXXXX folders in {src}; pass the KiTS 2023 'dataset' folder")
    for case in cases:
        _check_pair(case.name, [case / "imaging.nii.gz"], case / "segmentation.nii.gz", (0, 1, 2, 3))
    with staged_dataset(raw_root, name) as out:
        with _module_attribute(nnunet_kits, "nnUNet_raw", str(out / "_nnunet")):
            nnunet_kits.convert_kits2023(str(src), dataset_id)
        _adopt(out / "_nnunet" / name, out)
    return Path(raw_root) / name


# ----------------------------------------------------------------------------------------------- BraTS 2021 (nnunetv2)
BRATS2021_CHANNELS = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "Flair"}  # nnunetv2's Dataset137 order


def convert_brats2021(folder: PathLike, raw_root: PathLike, dataset_id: int = 137) -> Path:
    """BraTS 2021 training data (``BraTS2021_XXXXX/BraTS2021_XXXXX_{t1,t1ce,t2,flair,seg}.nii.gz``, labels 0, 1, 2, 4)
    → DatasetXXX_BraTS2021 as nnunetv2's Dataset137_BraTS21 script builds it (4 channels, its label conversion,
    regions whole tumour, tumour core, enhancing tumour), after checking every case."""
    from nnunetv2.dataset_conversion.Dataset137_BraTS21 import copy_BraTS_segmentation_and_convert_labels_to_nnUNet

    src = Path(folder)
    name = f"Dataset{dataset_id:03d}_BraTS2021"
    check_target(raw_root, name)
    cases = sorted(p for p in src.glob("BraTS*") if p.is_dir()) if src.is_dir() else []
    if not cases:
        raise ConversionError(f"no BraTS2021_XXXXX case folders in {src}; pass the BraTS 2021 training folder")
    for case in cases:
        _check_pair(case.name, [case / f"{case.name}_{m}.nii.gz" for m in BRATS2021_CHANNELS],
                    case / f"{case.name}_seg.nii.gz", (0, 1, 2, 4))
    with staged_dataset(raw_root, name) as out:
        for case in cases:
            _copy_case([case / f"{case.name}_{m}.nii.gz" for m in BRATS2021_CHANNELS], None, out, case.name)
            copy_BraTS_segmentation_and_convert_labels_to_nnUNet(str(case / f"{case.name}_seg.nii.gz"),
                                                                 str(out / "labelsTr" / f"{case.name}.nii.gz"))
        _write_dataset_json(out, dict(enumerate(BRATS2021_CHANNELS.values())), BRATS_REGIONS, len(cases),
                            regions_class_order=(1, 2, 3), dataset_name=name,
                            license="see https://www.synapse.org/#!Synapse:syn25829067/wiki/610863")
    return Path(raw_root) / name


def convert_brats(folder: PathLike, raw_root: PathLike, dataset_id: Optional[int] = None) -> Path:
    """BraTS in either layout: 2021 (BraTS2021_XXXXX folders, 4 modalities; default id 137) or the 2013/2015
    FLAIR+T1c subset (folders with OTMultiClass.nii.gz; default id 138)."""
    src = Path(folder)
    if src.is_dir() and any(p.is_dir() and (p / f"{p.name}_seg.nii.gz").exists() for p in src.glob("BraTS*")):
        return convert_brats2021(src, raw_root, 137 if dataset_id is None else dataset_id)
    if src.is_dir() and any((p / "OTMultiClass.nii.gz").exists() for p in src.iterdir() if p.is_dir()):
        return convert_brats2015(src, raw_root, 138 if dataset_id is None else dataset_id)
    raise ConversionError(f"{src} is neither a BraTS 2021 training folder (BraTS2021_XXXXX/..._seg.nii.gz) nor a "
                          f"BraTS 2013/2015 folder (case folders with OTMultiClass.nii.gz)")


# ------------------------------------------------------------------------------------------------------ ImageFolder
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _image_folder_files(root: Path) -> Dict[str, List[Path]]:
    """{class: [image files]} of root/<class>/<image>; photos or .nii.gz volumes."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir() if f.is_file() and (f.name.lower().endswith(".nii.gz")
                                                                       or f.suffix.lower() in PHOTO_SUFFIXES))
        if files:
            classes[folder.name] = files
    return classes


def convert_imagefolder(folder: PathLike, raw_root: PathLike, dataset_id: Optional[int] = None) -> Path:
    """An ImageFolder tree (root/<class>/<image>.png|jpg|bmp|tif|nii.gz) → DatasetXXX_<root name> for
    ``nnunet-fuse classify``: one case per image (its file name, made safe), photos as one 8-bit PNG per colour
    channel (R, G, B or gray; alpha dropped), volumes copied; a label map of ones (nnU-Net's planning and
    preprocessing need one) and ``classes.json`` with each case's class (the folder it came from)."""
    from skimage import io as skimage_io

    src = Path(folder)
    if dataset_id is None:
        raise ConversionError("give the dataset id for the new dataset with -d (1-999)")
    if not src.is_dir():
        raise ConversionError(f"{src} is not a folder; pass the root of an ImageFolder tree (root/<class>/<image>)")
    by_class = _image_folder_files(src)
    if len(by_class) < 2:
        raise ConversionError(f"{src} has images in {len(by_class)} class folder(s) ({', '.join(by_class) or 'none'})"
                              f"; an ImageFolder tree has one folder of images per class, at least two")
    files = [(cls, f) for cls, fs in by_class.items() for f in fs]
    kinds = {f.name.lower().endswith(".nii.gz") for _, f in files}
    if len(kinds) > 1:
        raise ConversionError(f"{src} mixes NIfTI volumes and photos; convert one kind per dataset")
    volumes = kinds == {True}
    case_of: Dict[str, Path] = {}
    cases: Dict[str, str] = {}  # case → class
    for cls, f in files:
        stem = f.name[:-len(".nii.gz")] if volumes else f.stem
        case = re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_") or "image"
        if case in case_of:
            raise ConversionError(f"{case_of[case]} and {f} both become case '{case}'; rename one")
        case_of[case], cases[case] = f, cls
    name = f"Dataset{dataset_id:03d}_{re.sub(r'[^A-Za-z0-9]+', '', src.name) or 'Images'}"
    check_target(raw_root, name)
    channels_seen: Dict[int, str] = {}
    with staged_dataset(raw_root, name) as out:
        (out / "imagesTr").mkdir()
        (out / "labelsTr").mkdir()
        for case, f in case_of.items():
            if volumes:
                try:
                    image = read_image(f)
                except InputError as e:
                    raise ConversionError(f"case {case}: {e}") from e
                _copy_case([f], None, out, case)
                ones = sitk.GetImageFromArray(np.ones(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8))
                ones.CopyInformation(image)
                sitk.WriteImage(ones, str(out / "labelsTr" / f"{case}.nii.gz"), useCompression=True)
                channels_seen[1] = str(f)
                continue
            try:
                array = np.asarray(skimage_io.imread(str(f)))
            except Exception as e:  # every reader error means an unreadable file to the user
                raise ConversionError(f"case {case}: {f} cannot be read as an image ({type(e).__name__}: {e})") from e
            if array.ndim == 3 and array.shape[-1] in (3, 4):
                array = array[..., :3]
            elif array.ndim != 2:
                raise ConversionError(f"case {case}: {f} has shape {array.shape}; expected a gray or RGB(A) photo")
            planes = [array] if array.ndim == 2 else [array[..., c] for c in range(3)]
            channels_seen.setdefault(len(planes), str(f))
            if len(channels_seen) > 1:
                raise ConversionError(f"{src} mixes gray and colour photos ({channels_seen[1]} is gray, "
                                      f"{channels_seen[3]} colour); convert them to one kind first")
            if array.dtype not in (np.uint8, np.uint16):
                raise ConversionError(f"case {case}: {f} holds {array.dtype} values; nnU-Net reads 8- or 16-bit "
                                      f"photos")
            for c, plane in enumerate(planes):
                skimage_io.imsave(str(out / "imagesTr" / f"{case}_{c:04d}.png"), plane, check_contrast=False)
            skimage_io.imsave(str(out / "labelsTr" / f"{case}.png"), np.ones(array.shape[:2], dtype=np.uint8),
                              check_contrast=False)
        n_channels = next(iter(channels_seen))
        channel_names = ({0: "image"} if volumes else {0: "gray"} if n_channels == 1 else {0: "R", 1: "G", 2: "B"})
        from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

        generate_dataset_json(str(out), channel_names, {"background": 0, "image": 1}, len(case_of),
                              ".nii.gz" if volumes else ".png", dataset_name=name,
                              description=f"ImageFolder {src.name}: one class per folder ({', '.join(by_class)}); "
                                          f"labels are all ones (classification only)")
        write_classes(out, cases, sorted(by_class))
    return Path(raw_root) / name
