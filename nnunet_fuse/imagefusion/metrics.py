"""Image-fusion quality metrics for a fused image and its source modalities (numpy arrays in [0, 1], 2D or 3D).

entropy (bits), spatial frequency, mutual information with a source (bits), SSIM with a source (Gaussian window,
``nnunet_fuse.imagefusion.losses.ssim``); and, where label maps exist, each labelled region's contrast against the
tissue around it in every image (contrast_table): what a fused image keeps of what each modality shows.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from nnunet_fuse.imagefusion.losses import SURROUNDING_WIDTH, region_contrasts, ssim


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
    result = {"entropy": entropy(fused), "spatial_frequency": spatial_frequency(fused)}
    as_tensor = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64))[None, None]  # noqa: E731
    for name, source in zip(names, sources):
        result[f"mi_{name}"] = mutual_information(fused, source)
        result[f"ssim_{name}"] = float(ssim(as_tensor(fused), as_tensor(source)))
    return result


def label_regions(labels: np.ndarray, dataset_labels: Dict[str, object]) -> Dict[str, np.ndarray]:
    """name → boolean mask of every foreground label or region of dataset.json's ``labels`` (a region, as in
    BraTS, is a list of label values) in a label map."""
    masks = {}
    for name, value in dataset_labels.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if name != "background" and values != [0]:
            masks[name] = np.isin(labels, values)
    return masks


def contrast_table(images: Dict[str, np.ndarray], regions: Dict[str, np.ndarray],
                   within: Optional[np.ndarray] = None,
                   width: int = SURROUNDING_WIDTH) -> Dict[str, Dict[str, float]]:
    """region → image name → how far the region stands out of the tissue around it in the image
    (``losses.region_contrasts``: the measure the region-contrast loss trains on); images, regions and within
    (e.g. the brain: the surrounding is taken inside it) are arrays of one shape; NaN where undefined."""
    if not regions:
        return {}

    def as_batch(arrays) -> torch.Tensor:  # (1, len(arrays), *S), float64
        return torch.from_numpy(np.stack([np.asarray(a, dtype=np.float64) for a in arrays]))[None]

    contrasts = region_contrasts(as_batch(images.values()), as_batch(regions.values()),
                                 None if within is None else as_batch([within]), width)[0]  # (images, regions)
    return {region: {name: float(contrasts[i, r]) for i, name in enumerate(images)}
            for r, region in enumerate(regions)}


def kept_contrast(contrasts: Dict[str, float], image: str, modalities: Sequence[str]) -> float:
    """The contrast ``image`` keeps of the modality that shows the region best: contrasts[image] / max over the
    modalities (NaN where no modality shows it)."""
    best = max((contrasts[m] for m in modalities if np.isfinite(contrasts[m])), default=float("nan"))
    return float(contrasts[image] / best) if best > 0 else float("nan")
