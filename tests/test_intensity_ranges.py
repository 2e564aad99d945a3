"""Fuse4Seg's intensity ranges: what its fusion network maps to [0, 1] must keep the brightest small structures."""
import numpy as np
import pytest
import torch
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetNumpy

from nnunet_fuse.imagefusion.metrics import contrast_table
from nnunet_fuse.imagefusion.network import RobustRescale
from nnunet_fuse.intensity_ranges import intensity_ranges, preprocessed_intensity_ranges


def test_ranges_keep_the_contrast_of_a_small_bright_structure(tmp_path):
    """Two z-scored cases; in the second channel a structure of 0.3 % of the voxels at 6 sd (an enhancing tumour in
    T1c): rescaled with the ranges of the preprocessed data it keeps its contrast (the 99.5th percentile clamped it
    to 1 and kept less than half of it)."""
    rng = np.random.default_rng(0)
    shape = (8, 64, 64)
    structure = np.zeros(shape, dtype=bool)
    structure[3:6, 30:34, 30:34] = True  # two blobs, 96 of the 32768 voxels
    structure[2:4, 10:14, 40:46] = True
    for case in range(2):
        data = rng.normal(size=(2,) + shape)
        data[1][structure] += 6
        seg = np.where(structure, 1, 0)[None].astype(np.int8)
        nnUNetDatasetNumpy.save_case(data.astype(np.float32), seg, {}, str(tmp_path / f"case_{case}"))
    assert structure.mean() < 0.005
    ranges = preprocessed_intensity_ranges(tmp_path)
    rescaled = RobustRescale(ranges)(torch.from_numpy(data)[None])[0].numpy()
    contrasts = contrast_table({"normalised": data[1], "rescaled": rescaled[1]}, {"structure": structure})
    assert contrasts["structure"]["normalised"] > 5
    assert contrasts["structure"]["rescaled"] >= 0.97 * contrasts["structure"]["normalised"]
    # the background's range stays resolved: its 0.5 % darkest voxels at 0, its median well inside (0, 1)
    assert 0.2 < np.median(rescaled[0]) < 0.5 and np.mean(rescaled[0] == 0) == pytest.approx(0.005, abs=0.002)


@pytest.mark.parametrize("scheme, expected", [("ZScoreNormalization", [-2.0, 5.0]), ("CTNormalization", [-2.0, 3.0]),
                                              ("NoNormalization", [-2.0, 12.0]),
                                              ("RescaleTo01Normalization", [0.0, 1.0])])
def test_ranges_from_the_plans_alone(scheme, expected):
    """Before preprocessing: the fingerprint's 0.5 percentile and maximum in the normalisation's units (CT data is
    clipped to the 99.5th percentile, so that is its top)."""
    plans = {"configurations": {"2d": {"normalization_schemes": [scheme]}},
             "foreground_intensity_properties_per_channel": {"0": {
                 "mean": 2.0, "std": 2.0, "percentile_00_5": -2.0, "percentile_99_5": 8.0, "max": 12.0, "min": -5.0,
                 "median": 2.0}}}
    assert intensity_ranges(plans, "2d") == [expected]
