"""One Fuse4Seg case as a figure and a metrics table: every modality, the fused image, the segmentation, and the
simplest alternatives to a learned fusion (the average and the maximum of the rescaled modalities).

    python benchmarks/fuse4seg_case.py --images CASE_0000.nii.gz CASE_0001.nii.gz --names FLAIR T1c \
        --fused fused/CASE.nii.gz --segmentation validation/CASE.nii.gz --reference labelsTr/CASE.nii.gz \
        --dataset-json dataset.json -o OUT

The fused image is what ``nnunet-fuse export-fused`` wrote (in [0, 1]); each modality is put in [0, 1] by the fusion
network's own rescaling without dataset ranges (0.5–99.5 percentiles over the volume). Writes OUT/CASE.png (the axial
slice with the largest reference tumour, cropped to the brain: modalities, average and max fusion, the fused image, the
fused image with the predicted regions' contours (solid) and the reference's (dashed)) and OUT/CASE_metrics.{json,md}:
entropy, spatial frequency, mutual information and SSIM with each modality, on that slice (2D, the usual image-fusion
setting) and on the brain's bounding box (3D), for Fuse4Seg and both baselines; with --reference each region's contrast
against the tissue around it (imagefusion.metrics.contrast_table) in every modality and fusion, and the share of the
best modality's that each fusion keeps; Dice per region of the case. Without --fused and --segmentation: the baselines
only (slice chosen by --reference).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from nnunet_fuse.imagefusion.metrics import (SURROUNDING_WIDTH, contrast_table, fusion_metrics, kept_contrast,
                                             label_regions)
from nnunet_fuse.imagefusion.network import RobustRescale
from nnunet_fuse.reporting import format_table


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)  # (z, y, x)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", nargs="+", required=True, help="the case's channel files, in channel order")
    parser.add_argument("--names", nargs="+", required=True, help="a name per channel")
    parser.add_argument("--fused", help="the fused image export-fused wrote (optional: baselines only)")
    parser.add_argument("--segmentation", help="predicted label map (with --fused)")
    parser.add_argument("--reference", help="reference label map (optional)")
    parser.add_argument("--dataset-json", required=True, help="the dataset's dataset.json (labels / regions)")
    parser.add_argument("-o", required=True)
    args = parser.parse_args()
    if len(args.names) != len(args.images):
        parser.error(f"{len(args.images)} images but {len(args.names)} names")
    if (args.fused is None) != (args.segmentation is None) or (args.fused is None and args.reference is None):
        parser.error("give --fused with --segmentation, or (baselines only) neither, with --reference")

    out = Path(args.o)
    out.mkdir(parents=True, exist_ok=True)
    case = Path(args.fused or args.reference).name.replace(".nii.gz", "")
    raw = np.stack([read(Path(p)) for p in args.images])
    sources = RobustRescale()(torch.from_numpy(raw)[None])[0].numpy()
    fusions = {"Fuse4Seg": read(Path(args.fused))} if args.fused else {}
    fusions.update({"average": sources.mean(0), "max": sources.max(0)})
    segmentation = read(Path(args.segmentation)).astype(np.int64) if args.segmentation else None
    reference = read(Path(args.reference)).astype(np.int64) if args.reference else None
    dataset_json = json.loads(Path(args.dataset_json).read_text())
    shapes = {name: image.shape for name, image in [*fusions.items(), ("segmentation", segmentation)]
              if image is not None}
    if any(shape != raw.shape[1:] for shape in shapes.values()):
        raise SystemExit(f"shapes differ: images {raw.shape[1:]}, {shapes}")

    brain = np.argwhere(np.abs(raw).sum(0) > 0)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(brain.min(0), brain.max(0)))
    shown_mask = (reference if reference is not None else segmentation) > 0
    z = int(np.argmax(shown_mask.reshape(shown_mask.shape[0], -1).sum(1)))
    in_plane = box[1:]

    slice_metrics = {name: fusion_metrics(image[z][in_plane], [s[z][in_plane] for s in sources], args.names)
                     for name, image in fusions.items()}
    volume_metrics = {name: fusion_metrics(image[box], [s[box] for s in sources], args.names)
                      for name, image in fusions.items()}
    predicted = label_regions(segmentation, dataset_json["labels"]) if segmentation is not None else {}
    references = label_regions(reference, dataset_json["labels"]) if reference is not None else {}
    dice_per_region = {n: dice(predicted[n], m) for n, m in references.items()} if predicted else {}
    # each reference region against the tissue around it, in the brain, 3D
    contrasts = contrast_table({**dict(zip(args.names, sources)), **fusions}, references,
                               within=np.abs(raw).sum(0) > 0)
    report = {"case": case, "slice_z": z, "brain_box": [[int(s.start), int(s.stop)] for s in box],
              "slice_2d": slice_metrics, "brain_box_3d": volume_metrics, "dice": dice_per_region,
              "region_contrast": contrasts}
    (out / f"{case}_metrics.json").write_text(json.dumps(report, indent=2))
    rows = [["metric", *[f"{name}, slice z={z} (2D)" for name in fusions],
             *[f"{name}, brain box (3D)" for name in fusions]]]
    rows += [[k, *[f"{slice_metrics[n][k]:.3f}" for n in fusions], *[f"{volume_metrics[n][k]:.3f}" for n in fusions]]
             for k in next(iter(slice_metrics.values()))]
    text = (f"# {case}: fused images ({', '.join(fusions)}) vs the modalities\n\n{format_table(rows)}\n\n"
            f"MI in bits (64-bin joint histogram), entropy in bits (256 bins), modalities rescaled to [0, 1] by "
            f"percentiles; average and max: of the rescaled modalities.\n")
    if contrasts:
        rows = [["region", *args.names, *fusions, *[f"{name} keeps" for name in fusions]]]
        rows += [[region, *[f"{c[n]:.2f}" for n in [*args.names, *fusions]],
                  *[f"{kept_contrast(c, n, args.names):.2f}" for n in fusions]] for region, c in contrasts.items()]
        text += (f"\n## Region contrast (3D, reference regions)\n\n{format_table(rows)}\n\n|mean inside − mean of the "
                 f"surrounding tissue (within {SURROUNDING_WIDTH} voxels, in the brain)| / its sd; \"keeps\": / the "
                 f"best modality's.\n")
    if dice_per_region:
        text += "\nDice of the predicted regions: " + ", ".join(f"{n} {d:.3f}" for n, d in dice_per_region.items())
    (out / f"{case}_metrics.md").write_text(text + "\n")
    print(text)
    plot(case, z, in_plane, sources, args.names, fusions, predicted, references, out / f"{case}.png")


def plot(case, z, in_plane, sources, names, fusions, predicted, reference, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [*zip(names, sources), *((f"{name} fusion", image) for name, image in fusions.items())]
    shown = fusions.get("Fuse4Seg", fusions["average"])
    panels.append(("fused + segmentation" if predicted else "average + reference", shown))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    colours = ["yellow", "red", "cyan", "lime"]
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image[z][in_plane], cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    last = axes[-1]
    for colour, name in zip(colours, predicted or reference):
        if name in predicted:
            last.contour(predicted[name][z][in_plane], levels=[0.5], colors=colour, linewidths=1.2)
        if name in reference:
            last.contour(reference[name][z][in_plane], levels=[0.5], colors=colour, linewidths=0.8,
                         linestyles="dashed")
        last.plot([], [], color=colour, label=name)
    last.legend(fontsize=7, loc="lower right", framealpha=0.6)
    fig.suptitle(f"{case}, axial slice {z} ({'solid: prediction, ' if predicted else ''}dashed: reference)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
