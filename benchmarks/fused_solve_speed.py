"""FuseUNet's solve, fused (one autograd node, eager default) vs autograd's composition, side by side in one process.

usage: python benchmarks/fused_solve_speed.py PLANS.json -c CONFIG [-device cpu|cuda] [--batch N]
       [--patch-size ...] [--repeats 5]
Builds FuseUNet on the plan's encoder exactly as nnunet-fuse profile does and times, round-robin after warm-up:
- the decoder alone (forward + backward from fixed skips), fused and composed;
- the nnU-Net-style training step of the whole network, fused and composed, and of the encoder alone (the floor);
- the decoder's forward without autograd (inference), fused and composed.
Prints a table of median milliseconds, peak memory of each (CPU: profiler allocation events) and the ratios.
"""
import argparse
import copy
import json
from pathlib import Path

import torch

from nnunet_fuse.planning import MARKER_KEY, network_from_plans
from nnunet_fuse.profiling import (EncoderAlone, TrainingStep, candidates, check_patch_size, input_channels,
                                   interleaved_median_seconds, make_loss, peak_step_memory_bytes, random_target)


def decoder_step(network, skips, weights):
    """Forward + backward of the decoder alone (under fp16 autocast on CUDA, as nnU-Net trains)."""
    cuda = weights.device.type == "cuda"

    def step():
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            out = network.decoder(skips)
        torch.autograd.grad((out.float() * weights).sum(), skips)
        if cuda:
            torch.cuda.synchronize()
    return step


def decoder_inference(network, skips):
    """The decoder's forward without autograd (under fp16 autocast on CUDA, as nnU-Net predicts)."""
    cuda = skips[0].device.type == "cuda"

    def step():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            network.decoder(skips)
        if cuda:
            torch.cuda.synchronize()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans_file")
    parser.add_argument("-c", required=True)
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--patch-size", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    plans_file = Path(args.plans_file)
    dataset_json = json.loads((plans_file.parent / "dataset.json").read_text())
    _, plans, _ = candidates([json.loads(plans_file.read_text())], args.c)[1]
    plans = copy.deepcopy(plans)
    assert MARKER_KEY in plans
    if args.patch_size:
        check_patch_size(args.patch_size, plans["configurations"][args.c]["architecture"]["arch_kwargs"]["strides"])
        plans["configurations"][args.c]["patch_size"] = args.patch_size
    device = torch.device(args.device)
    torch.manual_seed(0)
    fused, cm = network_from_plans(plans, dataset_json, args.c)
    fused = fused.to(device).train()
    composed = copy.deepcopy(fused)
    composed.decoder.fused_solve = False
    batch_n = args.batch or cm.batch_size
    batch = torch.randn(batch_n, input_channels(dataset_json), *cm.patch_size, device=device)
    target, regions = random_target(plans, dataset_json, batch_n, cm.patch_size, device)
    with torch.no_grad():
        skips = [s.detach().requires_grad_() for s in fused.encoder(batch)]
    weights = torch.randn(batch_n, fused.decoder.num_classes, *cm.patch_size, device=device)
    loss = make_loss(fused, False, cm.batch_dice, regions)
    encoder = EncoderAlone(copy.deepcopy(fused.encoder))
    rows = {
        "decoder fwd+bwd, fused": decoder_step(fused, skips, weights),
        "decoder fwd+bwd, composed": decoder_step(composed, skips, weights),
        "decoder inference, fused": decoder_inference(fused, skips),
        "decoder inference, composed": decoder_inference(composed, skips),
        "training step, fused": TrainingStep(fused, loss, batch, target),
        "training step, composed": TrainingStep(composed, loss, batch, target),
        "training step, encoder alone": TrainingStep(encoder, make_loss(encoder, False, False, False), batch, target),
    }
    peaks = {name: peak_step_memory_bytes(step, device) / 2 ** 20 for name, step in rows.items()}
    seconds = dict(zip(rows, interleaved_median_seconds(list(rows.values()), 2, args.repeats)))
    print(f"FuseUNet on {plans_file} {args.c}: patch {cm.patch_size}, batch {batch_n}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} round-robin")
    print(f"| {'measurement':30s} | {'ms':>9s} | {'peak MB':>9s} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 11}|")
    for name in rows:
        print(f"| {name:30s} | {seconds[name] * 1000:9.1f} | {peaks[name]:9.1f} |")
    for what in ("decoder fwd+bwd", "decoder inference", "training step"):
        print(f"{what}: fused / composed time {seconds[what + ', fused'] / seconds[what + ', composed']:.2f}, "
              f"peak memory {peaks[what + ', fused'] / peaks[what + ', composed']:.2f}")
    floor = seconds["training step, encoder alone"]
    print(f"training step / encoder alone: fused {seconds['training step, fused'] / floor:.2f}, "
          f"composed {seconds['training step, composed'] / floor:.2f}")


if __name__ == "__main__":
    main()
