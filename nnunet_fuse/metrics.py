"""Boundary metrics nnU-Net's evaluator does not report: the 95th-percentile Hausdorff distance (HD95)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of mask with at least one face-neighbour outside it (the image border counts as outside)."""
    padded = np.pad(mask, 1)
    interior = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(mask.ndim, 1))
    return (padded & ~interior)[tuple(slice(1, -1) for _ in range(mask.ndim))]


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> Optional[float]:
    """Symmetric 95th-percentile Hausdorff distance in the units of spacing between two boolean masks.

    The distances from every surface voxel of one mask to the nearest surface voxel of the other, both ways, pooled;
    their 95th percentile. Returns 0.0 when both masks are empty and None when exactly one is (undefined).
    """
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    if prediction.shape != reference.shape or len(spacing) != prediction.ndim:
        raise ValueError(f"masks {prediction.shape} and {reference.shape} with spacing {tuple(spacing)} do not match")
    if not prediction.any() and not reference.any():
        return 0.0
    if not prediction.any() or not reference.any():
        return None
    surface_p, surface_r = _surface(prediction), _surface(reference)
    to_reference = ndimage.distance_transform_edt(~surface_r, sampling=spacing)[surface_p]
    to_prediction = ndimage.distance_transform_edt(~surface_p, sampling=spacing)[surface_r]
    return float(np.percentile(np.concatenate([to_reference, to_prediction]), 95))
