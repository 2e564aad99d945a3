"""Pilot for issue 30, item 3: Fuse4Seg's fusion network alone (no segmentation network), trained on the 2d slices of
nnU-Net's preprocessed BraTS fold-0 training cases with the region-contrast loss (+ the intensity and gradient
losses), then each region's contrast kept in the fused 3D volume of the fold's validation cases (and of its
training cases), as ``export-fused --labels`` measures it (against nnU-Net's normalised modalities).

    python benchmarks/fuse4seg_contrast_pilot.py nnUNet_preprocessed/Dataset138_BraTS2015 [--loss two-sided]
        [--steps 300] [--lr 1e-3] [--contrast-weight 4] [--contrast-target 1] [--fidelity-weight 1]
        [--decomposition-weight 0] [--clip 0] [--batch 4] [--any-slice] [--seed 0] [--nnunet-loader [--augment]]

--loss two-sided: losses.region_contrast_loss as the trainer uses it (|target − kept|); one-sided: the shortfall only,
max(0, 1 − kept), the loss as it was before 2026-12-07. The fusion network is built as the plans build it (channels,
blocks, first stride, intensity ranges of nnUNetFuse4SegPlans.json); batch 4 slices with a labelled region, AdamW.
What the trainer does besides, one option each: the decomposition loss (weight 1 there), nnU-Net's gradient clipping
(12), its batch (2 on the ablation's plans) of slices drawn from all slices, not only those with a labelled region;
--nnunet-loader: the trainer's batches, nnU-Net's data loader (the plans' patch and batch, a third of the patches
around a labelled voxel), without (or with --augment, with) nnU-Net's training augmentation; its draws are its own
(--seed seeds the weights only). It needs nnUNet_raw, nnUNet_preprocessed and nnUNet_results set (`source
benchmarks/workdir_env.sh WORKDIR`).
"""
from __future__ import annotations

import argparse
import json
import time
from functools import partial
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


def nnunet_batches(folder: Path, augment: bool):
    """Batches as the 2d trainer of fold 0 draws them: (B, N, *patch) data and (B, R, *patch) labelled regions."""
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_fuse.training.fuse4seg import region_masks
    plans = {**json.loads((folder / "nnUNetFuse4SegPlans.json").read_text()), "continue_training": False}
    trainer = nnUNetTrainer(plans, "2d", 0, json.loads((folder / "dataset.json").read_text()), torch.device("cpu"))
    patch_size, labels = trainer.configuration_manager.patch_size, trainer.label_manager
    regions = labels.foreground_regions if labels.has_regions else None
    rotation, dummy_2d, initial_patch_size, mirror_axes = (
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size())
    if augment:
        transforms = trainer.get_training_transforms(
            patch_size, rotation, None, mirror_axes, dummy_2d, trainer.configuration_manager.use_mask_for_norm,
            False, labels.foreground_labels, regions, labels.ignore_label)
    else:
        initial_patch_size = patch_size
        transforms = trainer.get_validation_transforms(None, False, labels.foreground_labels, regions,
                                                       labels.ignore_label)
    loader = nnUNetDataLoader(trainer.get_tr_and_val_datasets()[0], trainer.configuration_manager.batch_size,
                              initial_patch_size, patch_size, labels, transforms=transforms,
                              oversample_foreground_percent=trainer.oversample_foreground_percent)
    for batch in loader:
        yield batch["data"].float(), region_masks(batch["target"], labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--loss", choices=("two-sided", "one-sided"), default="two-sided")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--contrast-weight", type=float, default=4.0)
    parser.add_argument("--contrast-target", type=float, default=1.0,
                        help="the share of the best modality's contrast the two-sided loss aims at")
    parser.add_argument("--fidelity-weight", type=float, default=1.0,
                        help="weight of the intensity and gradient losses")
    parser.add_argument("--decomposition-weight", type=float, default=0.0,
                        help="weight of the base/detail decomposition loss (the trainer's: 1)")
    parser.add_argument("--clip", type=float, default=0.0, help="clip the gradient norm (nnU-Net's: 12); 0: off")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--any-slice", action="store_true",
                        help="draw the batch from all slices, not only those with a labelled region")
    parser.add_argument("--seed", type=int, default=0, help="of the weights and of the slices drawn")
    parser.add_argument("--nnunet-loader", action="store_true",
                        help="the trainer's batches: nnU-Net's data loader, patch and batch (module docstring)")
    parser.add_argument("--augment", action="store_true", help="with --nnunet-loader: nnU-Net's training augmentation")
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
    contrast_loss = (partial(region_contrast_loss, target=args.contrast_target) if args.loss == "two-sided"
                     else one_sided_loss)
    if args.nnunet_loader:
        batches = nnunet_batches(args.folder, args.augment)
    else:
        slices = [(d[:, z], s[:, z]) for d, s in map(load, split["train"]) for z in range(d.shape[1])
                  if args.any_slice or (s[:, z] > 0).sum() > 20]
    start = time.time()
    for step in range(args.steps):
        if args.nnunet_loader:
            x, regions = next(batches)
        else:
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
    source = (f"nnU-Net's loader, augmentation {'on' if args.augment else 'off'}" if args.nnunet_loader
              else f"batch {args.batch} of {'all' if args.any_slice else 'labelled'} slices")
    print(f"{args.loss} loss, {args.steps} steps, lr {args.lr}, weights contrast {args.contrast_weight} (target "
          f"{args.contrast_target}) / fidelity {args.fidelity_weight} / decomposition {args.decomposition_weight}, "
          f"clip {args.clip or 'off'}, {source}: share of the best modality's contrast kept (whole tumour, core, "
          f"enhancing)")
    for case in split["val"] + split["train"]:
        data, labels = load(case)
        with torch.no_grad():
            fused = torch.cat([net(data[:, z:z + 1].movedim(1, 0)) for z in range(data.shape[1])])[:, 0]
            average = net.rescale(data[None])[0].mean(0, keepdim=True)
        images = torch.cat([data, fused[None], average])[None].double()
        contrasts = region_contrasts(images, regions_of(labels)[None], (labels >= 0)[None])[0]
        best = contrasts[:data.shape[0]].amax(0)
        seen = " (training case)" if case in split["train"] else ""
        print(f"  {case}{seen}: fused {np.round((contrasts[-2] / best).numpy(), 2).tolist()}, "
              f"average {np.round((contrasts[-1] / best).numpy(), 2).tolist()}")


if __name__ == "__main__":
    main()
