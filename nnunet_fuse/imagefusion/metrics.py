"""Image-fusion quality metrics for a fused image and its source modalities (numpy arrays in [0, 1], 2D or 3D).

entropy (bits), spatial frequency, mutual information with a source (bits), SSIM with a source (Gaussian window,
``nnunet_fuse.imagefusion.losses.ssim``).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def _histogram_bins(x: np.ndarray, bins: int) -> np.ndarray:
    return np.clip((np.asarray(x, dtype=np.float64) * bins).astype(np.int64), 0, bins - 1).ravel()


def entropy(image: np.ndarray, bins: int = 256) -> float:
    """Shannon entropy (bits) of the intensity histogram over [0, 1]."""
    counts = np.bincount(_histogram_bins(image, bins), minlength=bins)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def spatial_frequency(image: np.ndarray) -> float:
    """sqrt(Σ_axes mean(squared difference of neighbours along the axis)); in 2D the usual sqrt(RF² + CF²)."""
    image = np.asarray(image, dtype=np.float64)
    return float(np.sqrt(sum(np.mean(np.diff(image, axis=a) ** 2) for a in range(image.ndim))))


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 64) -> float:
    """Mutual information (bits) of the joint intensity histogram of two images over [0, 1]."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"images of different shapes {np.shape(a)} and {np.shape(b)}")
    joint = np.bincount(_histogram_bins(a, bins) * bins + _histogram_bins(b, bins), minlength=bins * bins)
    joint = joint.reshape(bins, bins) / joint.sum()
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log2(joint[nonzero] / (pa @ pb)[nonzero])).sum())


def fusion_metrics(fused: np.ndarray, sources: Sequence[np.ndarray], names: Sequence[str]) -> Dict[str, float]:
    """Entropy and spatial frequency of the fused image; MI and SSIM of the fused image with each source."""
    import torch

    from nnunet_fuse.imagefusion.losses import ssim

    result = {"entropy": entropy(fused), "spatial_frequency": spatial_frequency(fused)}
    as_tensor = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64))[None, None]  # noqa: E731
    for name, source in zip(names, sources):
        result[f"mi_{name}"] = mutual_information(fused, source)
        result[f"ssim_{name}"] = float(ssim(as_tensor(fused), as_tensor(source)))
    return result
