"""Fusion metrics against known answers."""
import numpy as np
import pytest

from nnunet_fuse.imagefusion.metrics import entropy, fusion_metrics, mutual_information, spatial_frequency


def test_entropy():
    assert entropy(np.full((8, 8), 0.3)) == 0
    half = np.zeros((8, 8))
    half[:4] = 1
    assert entropy(half) == pytest.approx(1.0)  # two equally likely levels: one bit
    assert entropy(np.linspace(0, 1, 256 * 4, endpoint=False)) == pytest.approx(8.0)  # uniform over 256 bins


def test_spatial_frequency():
    assert spatial_frequency(np.full((6, 6, 6), 0.5)) == 0
    checker = np.indices((8, 8)).sum(0) % 2
    assert spatial_frequency(checker) == pytest.approx(np.sqrt(2))  # every neighbour differs by 1 along both axes
    ramp = np.tile(np.arange(10) * 0.1, (5, 1))
    assert spatial_frequency(ramp) == pytest.approx(0.1)


def test_mutual_information():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64))
    assert mutual_information(a, a, bins=16) == pytest.approx(entropy(a, bins=16))  # I(A; A) = H(A)
    assert mutual_information(a, 1 - a, bins=16) == pytest.approx(entropy(a, bins=16), abs=0.05)  # invertible map
    assert mutual_information(a, rng.random((64, 64)), bins=16) < 0.1  # independent
    with pytest.raises(ValueError, match="different shapes"):
        mutual_information(a, a[:10])


def test_fusion_metrics_fields():
    rng = np.random.default_rng(1)
    flair, t1c = rng.random((16, 16)), rng.random((16, 16))
    metrics = fusion_metrics(flair, [flair, t1c], ["FLAIR", "T1c"])
    assert set(metrics) == {"entropy", "spatial_frequency", "mi_FLAIR", "mi_T1c", "ssim_FLAIR", "ssim_T1c"}
    assert metrics["ssim_FLAIR"] == pytest.approx(1.0) and metrics["ssim_T1c"] < 0.5
    assert metrics["mi_FLAIR"] > metrics["mi_T1c"]
