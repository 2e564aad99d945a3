"""Measurements of label maps against shapes whose volume, surface, extent and thickness are known."""
import numpy as np
import pytest

from nnunet_fuse.classification.shape_features import body_surface_area, label_measurements, sample_features

LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}


def test_a_box_has_its_volume_surface_and_extent():
    label_map = np.zeros((14, 14, 14), np.uint8)
    label_map[2:12, 2:12, 2:12] = 3
    measured = label_measurements(label_map, (2.0, 1.0, 1.0), LABELS)
    assert measured["LVC_volume_ml"] == pytest.approx(2.0)              # 1000 voxels of 2 mm³
    assert measured["LVC_surface_cm2"] == pytest.approx(10.0)           # 200·1 + 400·2 + 400·2 mm²
    assert [measured[f"LVC_extent{a}_mm"] for a in range(3)] == [20.0, 10.0, 10.0]
    assert measured["RV_volume_ml"] == 0 and measured["RV_thickness_max_mm"] == 0


def test_a_ring_in_thick_slices_has_its_wall_thickness_in_plane():
    """A myocardium-like ring, 6 mm thick, in 10 mm slices: thickness measured in-plane, not through the slices."""
    y, x = np.mgrid[:64, :64]
    radius = np.hypot(y - 32, x - 32)
    ring = (radius >= 10) & (radius < 16)
    label_map = np.stack([np.where(ring, 2, 0)] * 4).astype(np.uint8)
    measured = label_measurements(label_map, (10.0, 1.0, 1.0), LABELS)
    assert measured["MLV_thickness_max_mm"] == pytest.approx(6.0, abs=1.0)
    assert 2.0 < measured["MLV_thickness_mean_mm"] < measured["MLV_thickness_max_mm"]


def test_patient_features_across_frames():
    end_diastole = {"RV_volume_ml": 150.0, "MLV_volume_ml": 100.0, "LVC_volume_ml": 120.0}
    end_systole = {"RV_volume_ml": 75.0, "MLV_volume_ml": 98.0, "LVC_volume_ml": 48.0}
    features = sample_features([end_diastole, end_systole], LABELS, height_cm=180, weight_kg=80)
    assert features["LVC_volume_change"] == pytest.approx(0.6)   # the left ventricle's ejection fraction
    assert features["RV_volume_change"] == pytest.approx(0.5)
    assert features["MLV_mass_g"] == pytest.approx(105.0)
    assert features["RV_to_LVC_volume_ratio"] == pytest.approx(150 / 120)
    assert body_surface_area(180, 80) == pytest.approx(2.0) == features["body_surface_area_m2"]
    assert features["LVC_largest_volume_ml_per_m2"] == pytest.approx(60.0)
    assert features["frame1_LVC_volume_ml"] == 48.0


def test_stray_fragments_of_a_label_are_not_measured():
    """A predicted segmentation's stray voxels far from the structure change neither its volume nor its extent."""
    label_map = np.zeros((14, 40, 40), np.uint8)
    label_map[2:12, 2:12, 2:12] = 3
    alone = label_measurements(label_map, (2.0, 1.0, 1.0), LABELS)
    label_map[7, 35, 35] = 3
    label_map[1, 30:32, 20] = 3
    with_fragments = label_measurements(label_map, (2.0, 1.0, 1.0), LABELS)
    assert with_fragments == alone
    assert alone["LVC_extent1_mm"] == 10.0
