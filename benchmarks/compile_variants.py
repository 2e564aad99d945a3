"""FuseUNet training step on CUDA: eager vs torch.compile variants, side by side (ms, median of 10 after 3 warm-ups).

Variants: eager; the whole network compiled (as nnU-Net does on CUDA); the encoder alone compiled; the whole network
compiled with the decoder's upsampling swapped back to F.interpolate. Plans: benchmarks/plans ACDC 2d, BraTS-like 3d.
Since 2026-11-23 linear_upsample itself takes F.interpolate for 2D under torch.compile, so in 2D "compile all" and
"compile all, F.interpolate" now run the same code (the table in benchmarks/README.md was measured before).
usage (CUDA only): python benchmarks/compile_variants.py
"""
import copy
import json

import torch
import torch.nn.functional as F

import nnunet_fuse.ode.decoder as decoder_module
from nnunet_fuse.plans_network import network_from_plans
from nnunet_fuse.profiling import TrainingStep, candidates, input_channels, make_loss, median_seconds, random_target

PLANS = [("benchmarks/plans/Dataset027_ACDC/nnUNetPlans.json", "2d"),
         ("benchmarks/plans/Dataset137_BraTSlike/nnUNetPlans.json", "3d_fullres")]
VARIANTS = ["eager", "compile all", "compile encoder only", "compile all, F.interpolate"]
MODES = {2: "bilinear", 3: "trilinear"}


def interpolate(x, size):
    return F.interpolate(x, size=list(size), mode=MODES[len(size)], align_corners=False)


def main():
    matmul_upsample = decoder_module.linear_upsample
    device = torch.device("cuda")
    for plans_file, configuration in PLANS:
        dataset_json = json.load(open(plans_file.replace("nnUNetPlans.json", "dataset.json")))
        _, plans, _ = candidates([json.load(open(plans_file))], configuration)[1]  # the FuseUNet variant
        for variant in VARIANTS:
            torch._dynamo.reset()
            decoder_module.linear_upsample = interpolate if "F.interpolate" in variant else matmul_upsample
            network, cm = network_from_plans(copy.deepcopy(plans), dataset_json, configuration)
            network = network.to(device).train()
            if variant == "compile encoder only":
                network.encoder = torch.compile(network.encoder)
            model = torch.compile(network) if variant.startswith("compile all") else network
            batch = torch.randn(cm.batch_size, input_channels(dataset_json), *cm.patch_size, device=device)
            target, regions = random_target(plans, dataset_json, cm.batch_size, cm.patch_size, device)
            step = TrainingStep(model, make_loss(network, False, cm.batch_dice, regions), batch, target)
            seconds = median_seconds(step, 3, 10)
            print(f"{plans['dataset_name']} {configuration} FuseUNet {variant:30s} step {seconds * 1e3:.1f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
