"""HD95 against closed forms: concentric spheres, shifted slabs, anisotropic spacing, empty masks."""
import numpy as np
import pytest

from nnunet_fuse.metrics import hd95


def ball(shape, radius, spacing=(1.0, 1.0, 1.0)):
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum(g ** 2 for g in grids) <= radius ** 2


def test_identical_masks_have_zero_distance():
    mask = ball((21, 21, 21), 6)
    assert hd95(mask, mask, (1, 1, 1)) == 0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.5, 0.5)])
def test_concentric_spheres_are_their_radius_difference_apart(spacing):
    """Every surface point of one sphere is r2 − r1 from the other's surface: HD95 ≈ r2 − r1 (to a voxel)."""
    shape = tuple(int(40 / s) + 1 for s in spacing)
    inner, outer = ball(shape, 8, spacing), ball(shape, 14, spacing)
    assert hd95(inner, outer, spacing) == pytest.approx(6, abs=max(spacing))


def test_shifted_slab_distance_is_the_shift_in_millimetres():
    """Two slabs of whole planes shifted by 3 voxels along an axis of spacing 2.5 mm: their faces are 7.5 mm apart.
    (Voxels on the image border count as surface, as in medpy; the pooled 95th percentile is still the face shift.)"""
    a = np.zeros((20, 8, 8), bool)
    b = np.zeros_like(a)
    a[5:10], b[8:13] = True, True
    assert hd95(a, b, (2.5, 1.0, 1.0)) == pytest.approx(7.5)
    assert hd95(b, a, (2.5, 1.0, 1.0)) == pytest.approx(7.5)  # symmetric


def test_empty_masks_and_bad_input():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    assert hd95(empty, empty, (1, 1)) == 0.0
    assert hd95(empty, full, (1, 1)) is None
    with pytest.raises(ValueError, match="do not match"):
        hd95(empty, np.zeros((5, 6), bool), (1, 1))
