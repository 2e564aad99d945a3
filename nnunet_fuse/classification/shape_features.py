"""Measurements of label maps, the features a diagnosis from segmentations is made of.

Per case and label (``label_measurements``, on the label's largest connected part: a predicted segmentation's stray
fragments are not the structure): volume (ml), surface (cm²), extent along each axis (mm), and thickness
(mm: twice the mean and the maximum of the distance to the label's border, in-plane where the slices are much
thicker than the pixels, as in short-axis cine MRI). Per sample of several frames (``sample_features``: a patient's
ED and ES in ACDC): each label's measurements per frame, the relative change of its volume from the largest to the
smallest frame (for ACDC's cavities, the ejection fraction), volume ratios between labels, mass (1.05 g/ml) of the
labels named as muscle (myocardium), and, where height and weight are known, volumes indexed by body surface area.
Everything is computed from the label map and its spacing alone; no image intensity enters.
"""
from __future__ import annotations

import itertools
import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

MYOCARDIUM_DENSITY = 1.05  # g/ml
MUSCLE_NAMES = ("myo", "mlv")  # label names whose volume is also reported as a mass
ANISOTROPY = 2.0  # slices this many times thicker than the pixels: thickness is measured in-plane


def _thickness(mask: np.ndarray, spacing: Sequence[float]) -> tuple:
    """(2 × mean, 2 × max) of the distance (mm) from the label's voxels to its border; in-plane (per slice of the
    coarsest axis) where that axis is ANISOTROPY times coarser than the others."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        return 0.0, 0.0
    spacing = np.asarray(spacing, dtype=float)
    coarse = int(np.argmax(spacing))
    others = [s for i, s in enumerate(spacing) if i != coarse]
    if mask.ndim == 3 and spacing[coarse] >= ANISOTROPY * max(others):
        moved = np.moveaxis(mask, coarse, 0)
        distances = np.concatenate([distance_transform_edt(np.pad(s, 1), sampling=others)[1:-1, 1:-1][s]
                                    for s in moved if s.any()])
    else:
        distances = distance_transform_edt(np.pad(mask, 1), sampling=spacing)[tuple([slice(1, -1)] * mask.ndim)][mask]
    return 2 * float(distances.mean()), 2 * float(distances.max())


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of a mask (neighbours across faces, edges and corners): a segmentation's stray
    fragments would otherwise set the extents and add to the volume."""
    from scipy.ndimage import label

    parts, count = label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return mask
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    return parts == int(np.argmax(sizes))


def _surface_mm2(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Area of the faces between the label's voxels and the others (mm²)."""
    padded = np.pad(mask, 1)
    area = 0.0
    for axis in range(mask.ndim):
        faces = np.count_nonzero(np.diff(padded.astype(np.int8), axis=axis))
        area += faces * float(np.prod([s for i, s in enumerate(spacing) if i != axis]))
    return area


def label_measurements(label_map: np.ndarray, spacing: Sequence[float], labels: Mapping[str, int]) -> Dict[str, float]:
    """{f"{name}_{measure}": value} for each label (name → value; background left out) of a label map (array axes
    with ``spacing`` in mm, in the same order)."""
    if label_map.ndim != len(spacing):
        raise ValueError(f"the label map has {label_map.ndim} axes but the spacing {len(spacing)}")
    voxel_ml = float(np.prod(spacing)) / 1000
    features = {}
    for name, value in labels.items():
        if int(value) == 0:
            continue
        mask = _largest_component(label_map == int(value))
        features[f"{name}_volume_ml"] = float(mask.sum()) * voxel_ml
        features[f"{name}_surface_cm2"] = _surface_mm2(mask, spacing) / 100
        if mask.any():
            where = np.nonzero(mask)
            extents = [(int(w.max()) - int(w.min()) + 1) * s for w, s in zip(where, spacing)]
        else:
            extents = [0.0] * mask.ndim
        for axis, extent in enumerate(extents):
            features[f"{name}_extent{axis}_mm"] = float(extent)
        features[f"{name}_thickness_mean_mm"], features[f"{name}_thickness_max_mm"] = _thickness(mask, spacing)
    return features


def body_surface_area(height_cm: float, weight_kg: float) -> float:
    """Mosteller's body surface area (m²)."""
    return math.sqrt(height_cm * weight_kg / 3600)


def sample_features(frames: Sequence[Dict[str, float]], labels: Mapping[str, int],
                    height_cm: Optional[float] = None, weight_kg: Optional[float] = None) -> Dict[str, float]:
    """Features of one sample from the label_measurements of its frames (in frame order): every frame's, each label's
    relative volume change from its largest to its smallest frame, volume ratios between labels in the frame where
    the first label is largest, muscle mass, and with height and weight the volumes per m² of body surface area."""
    features: Dict[str, float] = {}
    for index, measured in enumerate(frames):
        features.update({f"frame{index}_{key}": value for key, value in measured.items()})
    names = [name for name, value in labels.items() if int(value) != 0]
    if len(frames) > 1:
        for name in names:
            volumes = [f[f"{name}_volume_ml"] for f in frames]
            largest = max(volumes)
            features[f"{name}_volume_change"] = (largest - min(volumes)) / largest if largest > 0 else 0.0
    reference = max(range(len(frames)), key=lambda i: frames[i][f"{names[0]}_volume_ml"]) if names else 0
    for a, b in itertools.combinations(names, 2):
        va, vb = frames[reference][f"{a}_volume_ml"], frames[reference][f"{b}_volume_ml"]
        features[f"{a}_to_{b}_volume_ratio"] = va / vb if vb > 0 else 0.0
    for name in names:
        if name.lower().startswith(MUSCLE_NAMES):
            features[f"{name}_mass_g"] = max(f[f"{name}_volume_ml"] for f in frames) * MYOCARDIUM_DENSITY
    if height_cm and weight_kg:
        area = body_surface_area(height_cm, weight_kg)
        features["body_surface_area_m2"] = area
        for name in names:
            features[f"{name}_largest_volume_ml_per_m2"] = max(f[f"{name}_volume_ml"] for f in frames) / area
    return features
