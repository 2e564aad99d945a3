"""Fusion metrics against known answers."""
import json

import numpy as np
import pytest

from nnunet_fuse.imagefusion.metrics import entropy, fusion_metrics, mutual_information, spatial_frequency
from contrast_reference import region_contrast, surrounding


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


def test_region_contrast_known_answer_and_invariance():
    from nnunet_fuse.imagefusion.metrics import contrast_table, kept_contrast

    image = np.zeros((20, 20))
    image[::2, :] = 2.0                     # the tissue around: 0 / 2 in alternate rows, mean 1, sd 1
    region = np.zeros((20, 20), dtype=bool)
    region[8:12, 8:12] = True
    image[region] = 4.0
    around = surrounding(region, width=2)   # the test's own reference (contrast_reference.py)
    assert around.sum() == 8 * 8 - 16 and not (around & region).any()
    assert region_contrast(image, region, around) == pytest.approx(3.0)
    table = contrast_table({"A": image, "affine": -5 * image + 7, "flat": np.ones_like(image)},
                           {"r": region, "empty": np.zeros_like(region)}, width=2)
    assert table["r"]["A"] == pytest.approx(3.0) and table["r"]["affine"] == pytest.approx(3.0)  # normalisation cancels
    assert np.isnan(table["r"]["flat"]) and np.isnan(table["empty"]["A"])
    brain = np.ones_like(region)
    brain[:, :9] = False                    # the surrounding is taken inside the mask only
    image[brain == 0] = 9.0                 # whatever lies outside it does not count
    assert contrast_table({"A": image}, {"r": region}, within=brain, width=2)["r"]["A"] == pytest.approx(
        region_contrast(image, region, surrounding(region, brain, 2)))
    # 3D, irregular region, random image: the library's separable max-pool dilation equals scipy's cube dilation
    rng = np.random.default_rng(1)
    volume, blob = rng.random((12, 14, 16)), rng.random((12, 14, 16)) > 0.97
    assert contrast_table({"A": volume}, {"b": blob})["b"]["A"] == pytest.approx(
        region_contrast(volume, blob, surrounding(blob)), rel=1e-9)
    assert kept_contrast({"A": 3.0, "B": 1.0, "fused": 2.7}, "fused", ["A", "B"]) == pytest.approx(0.9)


def test_label_regions_of_labels_and_regions():
    from nnunet_fuse.imagefusion.metrics import label_regions

    labels = np.array([0, 1, 2, 3, -1])
    masks = label_regions(labels, {"background": 0, "whole tumor": [1, 2, 3], "enhancing": 3})
    assert list(masks) == ["whole tumor", "enhancing"]
    assert masks["whole tumor"].tolist() == [False, True, True, True, False]
    assert masks["enhancing"].tolist() == [False, False, False, True, False]


def test_export_contrast_leaves_out_what_lies_outside_the_nonzero_mask():
    """export-fused's per-case contrast (fused_export.case_contrasts) measures a region's surroundings inside nnU-Net's
    nonzero mask (label −1 outside): a lesion at the brain's edge is compared with the brain beside it, not with the
    background beyond the edge."""
    import torch
    from torch import nn

    from nnunet_fuse.fused_export import case_contrasts
    from nnunet_fuse.imagefusion.network import FusionNetwork

    rng = np.random.default_rng(0)
    brain = np.zeros((24, 24), dtype=bool)
    brain[:, 6:] = True
    labels = np.where(brain, 0, -1)
    labels[10:14, 6:10] = 1                 # a lesion touching the brain's left edge
    tissue = rng.normal(1.0, 0.1, (24, 24))
    data = np.stack([np.where(brain, tissue, -3.0), np.where(brain, tissue, -3.0)]).astype(np.float32)
    data[:, labels == 1] = 2.0              # the lesion: 10 sds above the tissue around it
    net = FusionNetwork(nn.Conv2d, channels=8, intensity_ranges=[[-3.0, 3.0]] * 2)
    with torch.no_grad():
        fused = net(torch.from_numpy(data)[None])[0, 0].numpy()
    dataset_json = {"channel_names": {"0": "A", "1": "B"}, "labels": {"background": 0, "lesion": 1}}
    contrasts = case_contrasts(net, data, fused, labels, dataset_json)
    lesion = labels == 1
    inside = region_contrast(data[0], lesion, surrounding(lesion, brain))
    assert contrasts["lesion"]["A"] == pytest.approx(inside) and inside > 8  # (2 − 1) / ~0.1
    # with the background beyond the edge counted as surroundings its sd would be far larger, the contrast < 2
    assert region_contrast(data[0], lesion, surrounding(lesion)) < 2


def test_contrast_report_gives_the_mean_and_the_case_that_keeps_least(tmp_path):
    """contrast.md: per region the mean over cases of each image's contrast and of the share each fusion keeps of the
    best modality's, and the lowest share over the cases (a goal such as 'keeps >= 0.9 for every region' is about
    each case, not the mean)."""
    from nnunet_fuse.fused_export import write_contrast_report

    contrasts = {"a": {"tumour": {"T1": 2.0, "T2": 1.0, "average": 1.0, "max": 1.8, "fused": 2.0}},
                 "b": {"tumour": {"T1": 1.0, "T2": 4.0, "average": 2.0, "max": 3.2, "fused": 2.4}}}
    write_contrast_report(contrasts, ["T1", "T2"], tmp_path)
    lines = (tmp_path / "contrast.md").read_text().splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    row = dict(zip(header, [c.strip() for c in lines[4].strip("|").split("|")]))
    assert row == {"region": "tumour", "cases": "2", "T1": "1.50", "T2": "2.50", "average": "1.50", "max": "2.50",
                   "fused": "2.20", "average keeps": "0.50", "max keeps": "0.85", "fused keeps": "0.80",
                   "average keeps, lowest": "0.50", "max keeps, lowest": "0.80", "fused keeps, lowest": "0.60"}
    assert json.loads((tmp_path / "contrast.json").read_text()) == contrasts
