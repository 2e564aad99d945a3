"""Fuse4Seg's intensity ranges: per channel, the (low, high) of nnU-Net's normalised intensities that its fusion
network maps to [0, 1], from the plans alone or from the preprocessed data."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np

# the percentiles of the preprocessed data mapped to 0 and 1. The top is nearly the maximum: the structures an MRI
# shows brightest are small (on BraTS the enhancing tumour is < 0.5 % of the voxels), and at the 99.5th percentile
# the clamp to 1 took 46–93 % of the enhancing tumour's T1c voxels and removed up to 47 % of its contrast before
# any fusion (benchmarks/README.md, "Fuse4Seg: what a fusion can keep"); at 99.99 at most 3 %.
RANGE_PERCENTILES = (0.5, 99.99)


def _configuration_value(plans: dict, configuration: str, key: str):
    """A configuration's entry, looked up through ``inherits_from`` as nnU-Net does."""
    cfg = plans["configurations"][configuration]
    while key not in cfg and cfg.get("inherits_from"):
        cfg = plans["configurations"][cfg["inherits_from"]]
    return cfg[key]


def intensity_ranges(plans: dict, configuration: str) -> List[List[float]]:
    """Per channel, the (low, high) of nnU-Net's normalised intensities that Fuse4Seg's fusion network maps to
    [0, 1], from the plans alone (``write_plans_variant`` replaces them by ``preprocessed_intensity_ranges`` once
    the data is preprocessed): the dataset's 0.5 foreground percentile and its foreground maximum (the fingerprint's
    nearest to RANGE_PERCENTILES' top; ``foreground_intensity_properties_per_channel``) in the units of the
    configuration's normalisation. CTNormalization (clip to the 0.5 and 99.5 percentiles, z-score with the dataset's
    foreground mean and std): exact, up to the clip; ZScoreNormalization (per image): through the dataset's foreground
    mean and std, a dataset-wide approximation of each image's; NoNormalization: as they are; rescaling to [0, 1]:
    (0, 1)."""
    schemes = _configuration_value(plans, configuration, "normalization_schemes")
    properties = plans["foreground_intensity_properties_per_channel"]
    ranges = []
    for channel, scheme in enumerate(schemes):
        p = properties[str(channel)]
        low, high = p["percentile_00_5"], p["percentile_99_5"] if scheme == "CTNormalization" else p["max"]
        if scheme in ("RescaleTo01Normalization", "RGBTo01Normalization"):
            low, high = 0.0, 1.0
        elif scheme != "NoNormalization":
            std = max(p["std"], 1e-8)
            low, high = (low - p["mean"]) / std, (high - p["mean"]) / std
        if not high > low:
            high = low + 1.0
        ranges.append([round(float(low), 4), round(float(high), 4)])
    return ranges


def preprocessed_intensity_ranges(folder: Path, max_cases: int = 8, max_voxels: int = 2 ** 22,
                                  percentiles: Sequence[float] = RANGE_PERCENTILES) -> List[List[float]]:
    """Per channel, the (low, high) ``percentiles`` of nnU-Net's preprocessed (normalised) data in ``folder`` (a
    configuration's data_identifier folder), over up to ``max_cases`` cases spread over the dataset, strided voxels.
    What the network will see, whatever the normalisation scheme.

    The cases of every fold count, validation cases included, on purpose: this is the statistic nnU-Net's own
    fingerprint takes over all training cases before any fold exists (the 0.5/99.5 percentiles of its CT
    normalisation, dataset_fingerprint.json), from intensities only (no label is read), and one plans file serves
    every fold, as nnU-Net's does; ranges per fold would need a plans file per fold for a clip range."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset = infer_dataset_class(str(folder))(str(folder))
    identifiers = sorted(dataset.identifiers)
    spread = np.linspace(0, len(identifiers) - 1, min(max_cases, len(identifiers))).astype(int)
    chosen = [identifiers[i] for i in spread]
    samples = []
    for identifier in dict.fromkeys(chosen):
        data = np.asarray(dataset.load_case(identifier)[0])
        flat = data.reshape(data.shape[0], -1)
        samples.append(flat[:, ::max(1, flat.shape[1] * len(chosen) // max_voxels)])
    pooled = np.concatenate(samples, axis=1).astype(np.float64)
    ranges = []
    for low, high in np.percentile(pooled, percentiles, axis=1).T:
        ranges.append([round(float(low), 4), round(float(high if high > low else low + 1.0), 4)])
    return ranges
