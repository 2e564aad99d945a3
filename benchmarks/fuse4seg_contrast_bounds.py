"""What a fused image can keep of each region's contrast (issue 30, item 3), before any training: on every case of a
preprocessed dataset, each labelled region's contrast against the tissue around it (imagefusion.metrics.contrast_table,
the measure of ``export-fused --labels``) in fixed fusions of the modalities as the fusion network sees them
(RobustRescale with the plans' kind of intensity ranges), as a share of the contrast of the modality that shows the
region best in nnU-Net's normalised data.

    python benchmarks/fuse4seg_contrast_bounds.py PREPROCESSED_DATASET_FOLDER [-c 2d] [-o OUT.md]

Two range choices: the 0.5–99.5 percentiles (the plans of 0.4) and intensity_ranges.RANGE_PERCENTILES (now). Fusions:
each modality alone, the average and the maximum; "selection (oracle)": each region's surroundings and inside taken
from its best modality (from the labels: an upper bound for a fusion that weights modalities voxel by voxel, not a
method), the regions in dataset.json's order, the later overwriting; two label-free voxel-wise functions, the same at
every voxel of every case, each the best of a small grid by the worst share (that choice reads the labels: it shows
that such a function exists, it is not a trained result): "sum + boost" Σ_i r_i + β·max(0, r_i − t) (symmetric in
the modalities, as the fusion network is) and "one + boost of another" r_k + β·max(0, r_j − t) (k ≠ j). Prints and
writes a table: per fusion and region the worst share over the cases and the mean.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from nnunet_fuse.imagefusion.losses import neighbourhood
from nnunet_fuse.imagefusion.metrics import contrast_table, label_regions
from nnunet_fuse.imagefusion.network import RobustRescale
from nnunet_fuse.intensity_ranges import RANGE_PERCENTILES, preprocessed_intensity_ranges
from nnunet_fuse.reporting import format_table

BETAS, THRESHOLDS = (1, 2, 4, 8), (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def load_cases(folder: Path) -> List[tuple]:
    """(data (N, *S) float64, labels (*S)) of every preprocessed case in a data_identifier folder."""
    dataset = infer_dataset_class(str(folder))(str(folder))
    cases = []
    for identifier in sorted(dataset.identifiers):
        data, seg = dataset.load_case(identifier)[:2]
        cases.append((np.asarray(data, dtype=np.float64), np.asarray(seg)[0]))
    return cases


def shares(cases: List[dict], fuse: Callable[[dict], np.ndarray]) -> np.ndarray:
    """(cases, regions): the contrast of fuse(case) / the best modality's, per case and region."""
    rows = []
    for case in cases:
        fused = fuse(case)
        table = contrast_table({"fused": fused}, case["regions"], within=case["within"])
        rows.append([table[r]["fused"] / case["best"][r] for r in case["regions"]])
    return np.array(rows)


def selection(case: dict) -> np.ndarray:
    """Each region and its surroundings (losses.neighbourhood) from its best modality, elsewhere the average."""
    rescaled = case["rescaled"]
    fused = rescaled.mean(0)
    for name, mask in case["regions"].items():
        near = neighbourhood(torch.from_numpy(mask.astype(np.float64))[None, None])[0, 0].numpy() > 0
        fused = np.where(near, rescaled[case["best_modality"][name]], fused)
    return fused


def best_of(cases: List[dict], family: Dict[str, Callable]) -> tuple:
    """(name, shares) of the family member (a function of the rescaled modalities) whose worst share over cases and
    regions is the highest."""
    scored = [(name, shares(cases, lambda c, f=f: f(c["rescaled"]))) for name, f in family.items()]
    return max(scored, key=lambda item: np.nanmin(item[1]))


def bounds(folder: Path, configuration: str) -> str:
    dataset_json = json.loads((folder / "dataset.json").read_text())
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    data_folder = folder / plans["configurations"][configuration]["data_identifier"]
    modalities = list(dataset_json["channel_names"].values())
    raw = load_cases(data_folder)
    rows, region_names = [], None
    for label, percentiles in (("0.5–99.5 %", (0.5, 99.5)), (f"{RANGE_PERCENTILES[0]}–{RANGE_PERCENTILES[1]} %",
                                                              RANGE_PERCENTILES)):
        rescale = RobustRescale(preprocessed_intensity_ranges(data_folder, percentiles=percentiles))
        cases = []
        for data, labels in raw:
            regions = label_regions(labels, dataset_json["labels"])
            regions = {name: mask for name, mask in regions.items() if mask.any()}
            within = labels >= 0
            table = contrast_table(dict(zip(modalities, data)), regions, within=within)
            best_modality = {r: int(np.nanargmax([table[r][m] for m in modalities])) for r in regions}
            cases.append({"rescaled": rescale(torch.from_numpy(data)[None])[0].numpy(), "regions": regions,
                          "within": within, "best": {r: max(table[r].values()) for r in regions},
                          "best_modality": best_modality})
        names = list(cases[0]["regions"])
        if any(list(case["regions"]) != names for case in cases):
            raise SystemExit("every case needs every region for this table")
        region_names = names
        fusions = {m: shares(cases, lambda c, i=i: c["rescaled"][i]) for i, m in enumerate(modalities)}
        fusions["average"] = shares(cases, lambda c: c["rescaled"].mean(0))
        fusions["max"] = shares(cases, lambda c: c["rescaled"].max(0))
        fusions["selection (oracle)"] = shares(cases, selection)
        grid = list(itertools.product(BETAS, THRESHOLDS))
        name, value = best_of(cases, {f"sum + boost (β {b}, t {t})":
                                      (lambda r, b=b, t=t: (r + b * np.maximum(r - t, 0)).sum(0)) for b, t in grid})
        fusions[name] = value
        pairs = [(k, j) for k in range(len(modalities)) for j in range(len(modalities)) if k != j]
        name, value = best_of(cases, {f"{modalities[k]} + boost of {modalities[j]} (β {b}, t {t})":
                                      (lambda r, k=k, j=j, b=b, t=t: r[k] + b * np.maximum(r[j] - t, 0))
                                      for k, j in pairs for b, t in grid})
        fusions[name] = value
        for fusion, value in fusions.items():
            rows.append([label, fusion, *[f"{np.nanmin(value[:, r]):.2f} / {np.nanmean(value[:, r]):.2f}"
                                          for r in range(len(names))],
                         "yes" if np.nanmin(value) >= 0.9 else "no"])
    header = ["ranges", "fusion", *[f"{r}: worst / mean" for r in region_names], "≥ 0.9 everywhere"]
    return (f"# What a fusion can keep of each region's contrast: {dataset_json.get('name', folder.name)}, "
            f"{len(raw)} cases, {configuration}\n\n" + format_table([header] + rows) +
            "\n\nShare of the contrast of the modality that shows the region best (nnU-Net's normalised data); worst "
            "case and mean over the cases. benchmarks/fuse4seg_contrast_bounds.py (module docstring).\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="nnUNet_preprocessed/DatasetXXX_Name")
    parser.add_argument("-c", "--configuration", default="2d")
    parser.add_argument("-o", "--output", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    report = bounds(args.folder, args.configuration)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)


if __name__ == "__main__":
    main()
