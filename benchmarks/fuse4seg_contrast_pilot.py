"""Pilot for issue 30, item 3: Fuse4Seg's fusion network alone (no segmentation network), trained on the 2d slices of
nnU-Net's preprocessed BraTS fold-0 training cases with the region-contrast loss (+ the intensity and gradient
losses), then each region's contrast kept in the fused 3D volume of the fold's validation cases, as
``export-fused --labels`` measures it (against nnU-Net's normalised modalities).

    python benchmarks/fuse4seg_contrast_pilot.py nnUNet_preprocessed/Dataset138_BraTS2015 [--loss two-sided]
        [--steps 300] [--lr 1e-3] [--contrast-weight 4] [--fidelity-weight 1] [--decomposition-weight 0]
        [--clip 0] [--batch 4] [--any-slice] [--seed 0]

--loss two-sided: losses.region_contrast_loss as the trainer uses it (|1 − kept|); one-sided: the shortfall only,
max(0, 1 − kept), the loss as it was before 2026-12-07. The fusion network is built as the plans build it (channels,
blocks, first stride, intensity ranges of nnUNetFuse4SegPlans.json); batch 4 slices with a labelled region, AdamW.
What the trainer does besides, one option each: the decomposition loss (weight 1 there), nnU-Net's gradient clipping
(12), its batch (2 on the ablation's plans) of slices drawn from all slices, not only those with a labelled region.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from torch import nn

from nnunet_fuse.imagefusion.losses import (decomposition_loss, gradient_loss, intensity_loss, kept_contrast_shares,
                                            region_contrast_loss, region_contrasts)
from nnunet_fuse.imagefusion.metrics import label_regions
from nnunet_fuse.imagefusion.network import FusionNetwork


def one_sided_loss(fused: torch.Tensor, images: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    kept, shown = kept_contrast_shares(fused, images, regions)
    return (1 - kept).clamp_min(0)[shown].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--loss", choices=("two-sided", "one-sided"), default="two-sided")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--contrast-weight", type=float, default=4.0)
    parser.add_argument("--fidelity-weight", type=float, default=1.0,
                        help="weight of the intensity and gradient losses")
    parser.add_argument("--decomposition-weight", type=float, default=0.0,
                        help="weight of the base/detail decomposition loss (the trainer's: 1)")
    parser.add_argument("--clip", type=float, default=0.0, help="clip the gradient norm (nnU-Net's: 12); 0: off")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--any-slice", action="store_true",
                        help="draw the batch from all slices, not only those with a labelled region")
    parser.add_argument("--seed", type=int, default=0, help="of the weights and of the slices drawn")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    kwargs = json.loads((args.folder / "nnUNetFuse4SegPlans.json").read_text())["configurations"]["2d"][
        "architecture"]["arch_kwargs"]
    split = json.loads((args.folder / "splits_final.json").read_text())[0]
    dataset_labels = json.loads((args.folder / "dataset.json").read_text())["labels"]

    def regions_of(labels: torch.Tensor) -> torch.Tensor:
        """(1, *S) label map → (R, *S): dataset.json's labelled regions (BraTS: whole tumour, core, enhancing)."""
        return torch.from_numpy(np.stack(list(label_regions(labels[0].numpy(), dataset_labels).values())))
    data_folder = args.folder / "nnUNetPlans_2d"
    dataset = infer_dataset_class(str(data_folder))(str(data_folder))

    def load(case):
        data, seg = dataset.load_case(case)[:2]
        return torch.from_numpy(np.asarray(data)).float(), torch.from_numpy(np.asarray(seg)).long()

    net = FusionNetwork(nn.Conv2d, kwargs["fusion_channels"], kwargs["fusion_base_blocks"],
                        kwargs["fusion_detail_blocks"], downsample=kwargs["strides"][1],
                        intensity_ranges=kwargs["fusion_intensity_ranges"])
    optimizer = torch.optim.AdamW(net.parameters(), args.lr, weight_decay=1e-4)
    contrast_loss = region_contrast_loss if args.loss == "two-sided" else one_sided_loss
    slices = [(d[:, z], s[:, z]) for d, s in map(load, split["train"]) for z in range(d.shape[1])
              if args.any_slice or (s[:, z] > 0).sum() > 20]
    start = time.time()
    for step in range(args.steps):
        chosen = rng.integers(len(slices), size=args.batch)
        x = torch.stack([slices[i][0] for i in chosen])
        regions = torch.stack([regions_of(slices[i][1]) for i in chosen])
        features = net.features(x)
        fused, rescaled = net.fuse(features), net.rescale(x)
        loss = (args.decomposition_weight * decomposition_loss(features["base"], features["detail"])
                + args.contrast_weight * contrast_loss(fused, rescaled, regions)
                + args.fidelity_weight * (intensity_loss(fused, rescaled) + gradient_loss(fused, rescaled)))
        optimizer.zero_grad()
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.3f} ({time.time() - start:.0f} s)", flush=True)
    print(f"{args.loss} loss, {args.steps} steps, lr {args.lr}, weights contrast {args.contrast_weight} / fidelity "
          f"{args.fidelity_weight} / decomposition {args.decomposition_weight}, clip {args.clip or 'off'}, batch "
          f"{args.batch} of {'all' if args.any_slice else 'labelled'} slices: share of the best modality's contrast "
          f"kept (whole tumour, core, enhancing)")
    for case in split["val"]:
        data, labels = load(case)
        with torch.no_grad():
            fused = torch.cat([net(data[:, z:z + 1].movedim(1, 0)) for z in range(data.shape[1])])[:, 0]
            average = net.rescale(data[None])[0].mean(0, keepdim=True)
        images = torch.cat([data, fused[None], average])[None].double()
        contrasts = region_contrasts(images, regions_of(labels)[None], (labels >= 0)[None])[0]
        best = contrasts[:data.shape[0]].amax(0)
        print(f"  {case}: fused {np.round((contrasts[-2] / best).numpy(), 2).tolist()}, "
              f"average {np.round((contrasts[-1] / best).numpy(), 2).tolist()}")


if __name__ == "__main__":
    main()
