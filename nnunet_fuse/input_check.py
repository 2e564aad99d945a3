"""Input images checked before anything is written: complete, readable, finite, named and shaped as the model needs.

SimpleITK reads a truncated ``.nii.gz`` without complaint (the missing voxels become zeros), and nnU-Net's prediction
meets a missing channel file, an extra one or a 2D image for a 3D model with a traceback, a 0-byte output or a
silently wrong segmentation. The converters and ``nnunet-fuse check-inputs`` / ``export-fused`` read every image
through here first; each problem is an InputError that names the file or case and says what to do.
"""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, Path]
NIFTI_ENDINGS = (".nii.gz", ".nii")
IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".bmp", ".tif", ".tiff", ".jpg")


class InputError(ValueError):
    """An input file or folder nnU-Net cannot use as it is; the message names it and says what to do."""


def check_nifti_data(path: Path) -> None:
    """Every voxel the header declares is in the file (a truncated gzip stream or a short file fails), and none is
    NaN or infinite (SimpleITK, and so nnU-Net, would read those as 0)."""
    import nibabel

    try:
        values = np.asanyarray(nibabel.load(str(path)).dataobj)
    except (EOFError, OSError, zlib.error, ValueError, nibabel.filebasedimages.ImageFileError) as e:
        reason = " ".join(str(e).split())
        raise InputError(f"{path} is not a complete NIfTI image ({type(e).__name__}: {reason}); copy or export it "
                         f"again") from e
    check_finite(values, path)


def check_finite(values: np.ndarray, path: Path) -> None:
    if np.issubdtype(values.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise InputError(f"{path} has {bad} NaN or infinite voxel(s); replace them (e.g. by 0) before using it")


def _check_present(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"missing file {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); copy or export it again")


def _unreadable(path: Path, error: RuntimeError) -> InputError:
    reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return InputError(f"{path} cannot be read as an image ({reason})")


def read_image(path: PathLike) -> "SimpleITK.Image":
    """The image at path, after checking that it exists, is complete (NIfTI) and has no NaN or Inf voxel."""
    import SimpleITK as sitk

    path = Path(path)
    _check_present(path)
    nifti = path.name.endswith(NIFTI_ENDINGS)
    if nifti:
        check_nifti_data(path)  # completeness and NaN/Inf from the file's own values
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise _unreadable(path, e) from e
    if not nifti:  # SimpleITK's NIfTI reader has turned NaN/Inf into 0 already: only other formats checked here
        check_finite(sitk.GetArrayViewFromImage(image), path)
    return image


def read_image_header(path: PathLike) -> "SimpleITK.ImageFileReader":
    """SimpleITK's reader of path with the header read (size, spacing, dimension; no voxels), after checking that the
    file exists and is an image."""
    import SimpleITK as sitk

    path = Path(path)
    _check_present(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise _unreadable(path, e) from e
    return reader


def check_case_folder(input_folder: PathLike, file_ending: str, n_channels: int,
                      median_shape: Optional[Sequence[float]] = None,
                      output_folder: Optional[PathLike] = None) -> Dict[str, List[Path]]:
    """{case: [channel files]} of an nnU-Net input folder (CASE_0000<file_ending>, ...), every image read and checked:
    each case has exactly the channels 0 .. n_channels - 1, one file per channel, of one size and spacing; no file
    with another image ending would be skipped by nnU-Net; volumes where the model was trained on volumes
    (median_shape: the plans' ``original_median_shape_after_transp``); output_folder is not the input folder."""
    folder = Path(input_folder)
    if not folder.is_dir():
        raise InputError(f"input folder {folder} does not exist or is not a folder")
    if output_folder is not None and Path(output_folder).resolve() == folder.resolve():
        raise InputError(f"the output folder is the input folder ({folder}); outputs would mix with the scans. "
                         f"Choose another output folder (-o)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    other_images = [p.name for p in files if not p.name.endswith(file_ending) and p.name.endswith(IMAGE_ENDINGS)]
    if other_images:
        raise InputError(f"{folder} holds images that do not end in {file_ending}, which the model was trained with, "
                         f"and nnU-Net would skip them: {', '.join(other_images[:5])}"
                         f"{' ...' if len(other_images) > 5 else ''}; convert them to {file_ending}")
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(file_ending)}$")
    cases: Dict[str, Dict[int, Path]] = {}
    for f in (p for p in files if p.name.endswith(file_ending)):
        match = pattern.match(f.name)
        if match is None:
            raise InputError(f"{f} is not named CASE_XXXX{file_ending} (XXXX: the 4-digit channel number, e.g. "
                             f"CASE_0000{file_ending}); rename it")
        cases.setdefault(match.group("case"), {})[int(match.group("channel"))] = f
    if not cases:
        raise InputError(f"no CASE_XXXX{file_ending} images in {folder}")
    expected = set(range(n_channels))
    volumes = median_shape is not None and len(median_shape) == 3 and median_shape[0] > 1
    result = {}
    for case, channels in sorted(cases.items()):
        missing, extra = sorted(expected - set(channels)), sorted(set(channels) - expected)
        if missing or extra:
            problem = (f"lacks channel(s) {', '.join(f'{case}_{c:04d}{file_ending}' for c in missing)}" if missing
                       else f"has channel(s) {', '.join(f'{case}_{c:04d}{file_ending}' for c in extra)} the model "
                            f"does not know")
            raise InputError(f"case {case} in {folder} {problem}; the model was trained on {n_channels} channel(s): "
                             f"give every case exactly {case}_0000{file_ending} ... "
                             f"{case}_{n_channels - 1:04d}{file_ending}")
        result[case] = [channels[c] for c in range(n_channels)]
        images = [read_image(f) for f in result[case]]
        for f, image in zip(result[case], images):
            size = image.GetSize()
            if image.GetDimension() > 3:
                raise InputError(f"{f} is {image.GetDimension()}D; give one 3D file per channel")
            if volumes and (image.GetDimension() < 3 or min(size) == 1):
                raise InputError(f"{f} is a single 2D slice ({size}), but the model was trained on 3D volumes "
                                 f"(median shape {[int(s) for s in median_shape]}); give the whole volume")
        for f, image in zip(result[case][1:], images[1:]):
            if image.GetSize() != images[0].GetSize() or \
                    not np.allclose(image.GetSpacing(), images[0].GetSpacing(), rtol=1e-3):
                raise InputError(f"case {case}: {f.name} has size {image.GetSize()} and spacing {image.GetSpacing()}, "
                                 f"{result[case][0].name} {images[0].GetSize()} and {images[0].GetSpacing()}; the "
                                 f"channels of a case must be registered to one grid")
    return result


def read_json(path: PathLike) -> dict:
    """A JSON file, or InputError naming it when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}); restore it (nnU-Net writes it when planning or "
                         f"training)") from e


def check_prediction_inputs(model_folder: PathLike, input_folder: PathLike, configuration: str, folds: Sequence,
                            checkpoint_name: str = "checkpoint_final.pth",
                            output_folder: Optional[PathLike] = None) -> Dict[str, List[Path]]:
    """What ``nnUNetv2_predict`` needs, checked against a trained model folder (nnUNet_results/Dataset/TRAINER__PLANS__
    CONFIGURATION): its dataset.json and plans.json, a readable checkpoint for each fold, and the input folder
    (check_case_folder). Returns {case: [channel files]}."""
    from nnunet_fuse.compatibility import IncompatibleVersionError, check_compatible
    from nnunet_fuse.training.checkpoints import read_checkpoint

    model_folder = Path(model_folder)
    if not model_folder.is_dir():
        raise InputError(f"no trained model at {model_folder}; check -d, -tr, -p and -c (train it with "
                         f"nnUNetv2_train first)")
    dataset_json = read_json(model_folder / "dataset.json")
    plans = read_json(model_folder / "plans.json")
    try:
        check_compatible(plans, str(model_folder / "plans.json"))
    except IncompatibleVersionError as e:
        raise InputError(str(e)) from e
    if configuration not in plans.get("configurations", {}):
        raise InputError(f"configuration '{configuration}' is not in {model_folder / 'plans.json'}; it has "
                         f"{', '.join(plans.get('configurations', {}))}")
    for fold in folds:
        checkpoint = model_folder / f"fold_{fold}" / checkpoint_name
        if not checkpoint.is_file():
            raise InputError(f"no {checkpoint_name} for fold {fold} in {model_folder}; train that fold or choose the "
                             f"trained folds with -f")
        try:
            read_checkpoint(checkpoint)
        except RuntimeError as e:
            raise InputError(str(e)) from e
    channels = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    return check_case_folder(input_folder, dataset_json["file_ending"], len(channels),
                             plans.get("original_median_shape_after_transp"), output_folder)
