"""Where a training step's time goes: torch.profiler over nnU-Net-style training steps of one network of a plans file.

usage: python benchmarks/step_breakdown.py PLANS.json -c CONFIG [--network fuseunet|nnunet|encoder] [-device cuda]
       [--batch N] [--patch-size ...] [--rows 20]
Prints the operators sorted by their own device time (CUDA) or CPU time, summed over 3 profiled steps.
"""
import argparse
import copy
import json
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from nnunet_fuse.profiling import (EncoderAlone, TrainingStep, candidates, check_patch_size, input_channels,
                                   make_loss, random_target)
from nnunet_fuse.planning import MARKER_KEY
from nnunet_fuse.plans_network import network_from_plans


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans_file")
    parser.add_argument("-c", required=True)
    parser.add_argument("--network", choices=["nnunet", "fuseunet", "encoder"], default="fuseunet")
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--patch-size", type=int, nargs="+", default=None)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    plans_file = Path(args.plans_file)
    dataset_json = json.loads((plans_file.parent / "dataset.json").read_text())
    name, plans, kind = candidates([json.loads(plans_file.read_text())], args.c)[
        ["nnunet", "fuseunet", "encoder"].index(args.network)]
    plans = copy.deepcopy(plans)
    if args.patch_size:
        check_patch_size(args.patch_size, plans["configurations"][args.c]["architecture"]["arch_kwargs"]["strides"])
        plans["configurations"][args.c]["patch_size"] = args.patch_size
    device = torch.device(args.device)
    network, cm = network_from_plans(plans, dataset_json, args.c, deep_supervision=MARKER_KEY not in plans)
    deep_supervision = network.decoder.deep_supervision
    if kind == "encoder alone":
        network = EncoderAlone(network.encoder)
    network = network.to(device).train()
    batch_n = args.batch or cm.batch_size
    batch = torch.randn(batch_n, input_channels(dataset_json), *cm.patch_size, device=device)
    target, regions = random_target(plans, dataset_json, batch_n, cm.patch_size, device)
    step = TrainingStep(network, make_loss(network, deep_supervision, cm.batch_dice, regions), batch, target)
    for _ in range(3):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"{name}: patch {cm.patch_size}, batch {batch_n}, {device}; 3 steps")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
