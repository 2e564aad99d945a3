"""A small synthetic 3D segmentation dataset in nnU-Net raw format (for the demo and the tests).

Each case: a sphere (label 1), a box (label 2) and a rod (label 3) at random positions and sizes in an anisotropic
volume, with shape-specific intensities, Gaussian noise and a smooth multiplicative bias field, so that intensity
alone is ambiguous and the network must use context. Deterministic for a given seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

LABELS = {"background": 0, "sphere": 1, "box": 2, "rod": 3}
_INTENSITY = {1: 1.0, 2: 0.55, 3: 1.45}
# further "modalities": the same anatomy with other contrasts (each shape is easy to see in some channel)
_OTHER_CONTRASTS = [{1: 0.35, 2: 1.5, 3: 0.9}, {1: 1.3, 2: 1.1, 3: 0.3}, {1: 0.6, 2: 0.25, 3: 1.2}]
SPACING_ZYX = (2.0, 1.0, 1.0)  # mm, numpy axis order; in-plane finer than through-plane (anisotropic strides)


def _bias_field(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field in [0.7, 1.3]: a random low-order polynomial over the normalised grid."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    field = sum(rng.uniform(-1, 1) * g + rng.uniform(-0.5, 0.5) * g ** 2 for g in grids)
    field = field / (np.abs(field).max() + 1e-8)
    return 1.0 + 0.3 * field


def make_case(shape: Sequence[int], rng: np.random.Generator, channels: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """One case: image (float32, (z, y, x), or (channels, z, y, x) if channels > 1) and label (uint8, (z, y, x))."""
    zz, yy, xx = np.meshgrid(*[np.arange(s) * sp for s, sp in zip(shape, SPACING_ZYX)], indexing="ij")
    extent = np.array(shape) * np.array(SPACING_ZYX)
    label = np.zeros(shape, dtype=np.uint8)

    def centre(margin: float) -> np.ndarray:
        return np.array([rng.uniform(margin, e - margin) for e in extent])

    radius = rng.uniform(5, 8)
    c = centre(radius + 1)
    label[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius ** 2] = 1

    half = rng.uniform(4, 7, size=3)
    c = centre(half.max() + 1)
    label[(np.abs(zz - c[0]) <= half[0]) & (np.abs(yy - c[1]) <= half[1]) & (np.abs(xx - c[2]) <= half[2])] = 2

    rod_radius = rng.uniform(2, 3.5)
    c = centre(rod_radius + 1)
    along_y = rng.random() < 0.5  # a rod through the whole volume along y or x
    r2 = (zz - c[0]) ** 2 + ((xx - c[2]) ** 2 if along_y else (yy - c[1]) ** 2)
    label[r2 <= rod_radius ** 2] = 3

    images = []
    for contrast in [_INTENSITY, *_OTHER_CONTRASTS][:channels]:
        image = np.full(shape, 0.15, dtype=np.float32)
        for value, intensity in contrast.items():
            image[label == value] = intensity
        image = image * _bias_field(shape, rng) + rng.normal(0, 0.18, size=shape)
        images.append((100 * image).astype(np.float32))
    return (images[0] if channels == 1 else np.stack(images)), label


def _write(array: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in SPACING_ZYX[::-1]))  # SimpleITK is x, y, z
    sitk.WriteImage(img, str(path), useCompression=True)


def make_synthetic_dataset(raw_root: Union[str, Path], dataset_id: int = 990, name: str = "FuseDemo",
                           n_train: int = 24, n_test: int = 6, shape: Sequence[int] = (24, 48, 48),
                           seed: int = 0, channels: int = 1) -> Path:
    """Write DatasetXXX_<name> (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json) below raw_root.

    channels: 1 to 4 co-registered "modalities" of the same anatomy with different contrasts (for Fuse4Seg).

    labelsTs holds the held-back cases' labels for evaluation (nnU-Net ignores that folder). Refuses to write into
    an existing dataset folder, so a user's data is never touched. Returns the dataset folder.
    """
    if not 1 <= channels <= 1 + len(_OTHER_CONTRASTS):
        raise ValueError(f"channels must be between 1 and {1 + len(_OTHER_CONTRASTS)}, got {channels}")
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    if folder.exists():
        raise FileExistsError(f"{folder} exists already; remove it or choose another dataset id")
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    for i in range(n_train + n_test):
        image, label = make_case(shape, rng, channels)
        images, labels = ("imagesTr", "labelsTr") if i < n_train else ("imagesTs", "labelsTs")
        for c, channel in enumerate([image] if channels == 1 else image):
            _write(channel, folder / images / f"case_{i:03d}_{c:04d}.nii.gz")
        _write(label, folder / labels / f"case_{i:03d}.nii.gz")
    dataset_json: Dict[str, object] = {
        "channel_names": {str(c): f"synthetic MRI {c}" if channels > 1 else "synthetic MRI" for c in range(channels)},
        "labels": LABELS,
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": name,
        "description": "synthetic shapes with noise and bias field (nnunet_fuse demo)",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder
