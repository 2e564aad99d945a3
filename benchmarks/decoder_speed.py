"""FuseUNet's decoder variants side by side in one process: the eager default (fused solve; on the CPU each solve step
in the C kernels and the 1×1 convolutions' backward as matrix products), the fused solve in PyTorch operations, the
same with nn.Conv's own backward, and autograd's composition with nn.Conv (the decoder before all three; what
torch.compile traces).

usage: python benchmarks/decoder_speed.py PLANS.json -c CONFIG [-device cpu|cuda] [--batch N] [--patch-size ...]
       [--repeats 5]
Builds FuseUNet on the plan's encoder exactly as nnunet-fuse profile does and times, round-robin after warm-up:
- each of the decoder's 1×1 convolutions at its real input shape, forward + backward, nn.Conv's backward vs matrix
  products (CPU only: on CUDA the decoder keeps cuDNN's convolution);
- the decoder alone (forward + backward from fixed skips) and its forward without autograd (inference), per variant;
- the nnU-Net-style training step of the whole network per variant, and of the encoder alone (the floor).
Prints tables of median milliseconds, peak memory (CPU: profiler allocation events) and the ratios.
"""
import argparse
import copy
import json
from pathlib import Path

import torch

from nnunet_fuse.ode.pointwise_conv import pointwise_conv
from nnunet_fuse.planning import MARKER_KEY
from nnunet_fuse.plans_network import network_from_plans
from nnunet_fuse.profiling import (EncoderAlone, TrainingStep, candidates, check_patch_size, input_channels,
                                   interleaved_median_seconds, make_loss, peak_step_memory_bytes, random_target)

# name: (fused_solve, cpu_matmul_backward, cpu_native_solve); the first is the default
VARIANTS = {
    "default": (True, True, True),
    "fused, torch ops": (True, True, False),
    "fused, nn.Conv": (True, False, False),
    "composed, nn.Conv": (False, False, False),
}
CPU_ONLY = ("fused, torch ops", "fused, nn.Conv")  # the same as the default elsewhere


def decoder_step(network, skips, weights):
    """Forward + backward of the decoder alone, gradients of skips and parameters (under fp16 autocast on CUDA, as
    nnU-Net trains)."""
    cuda = weights.device.type == "cuda"
    inputs = [*skips, *network.decoder.parameters()]

    def step():
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            out = network.decoder(skips)
        torch.autograd.grad((out.float() * weights).sum(), inputs)
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


def conv_rows(decoder, skips, repeats):
    """Forward + backward of each 1×1 convolution of the decoder at its real input, F.conv vs pointwise_conv (ms)."""
    state = torch.randn(skips[0].shape[0], decoder.state_channels, *decoder._input_size(skips[0].shape[2:]),
                        device=skips[0].device)
    inputs = [(f"projection {s}", conv, skip) for s, (conv, skip) in enumerate(zip(decoder.projections, skips))]
    inputs.append(("head", decoder.head, state.requires_grad_()))

    def step(function, conv, x):
        def run():
            out = function(x, conv)
            torch.autograd.grad(out, (x, *conv.parameters()), torch.ones_like(out))
        return run

    convolution = torch.nn.functional.conv3d if state.dim() == 5 else torch.nn.functional.conv2d
    steps = []
    for _, conv, x in inputs:
        steps += [step(lambda x, conv: convolution(x, conv.weight, conv.bias), conv, x),  # nn.Conv's own
                  step(lambda x, conv: pointwise_conv(x, conv.weight, conv.bias), conv, x)]
    seconds = interleaved_median_seconds(steps, 2, repeats)
    print(f"| {'1x1 convolution':14s} | {'input':22s} | {'nn.Conv ms':>10s} | {'matmul ms':>10s} | {'ratio':>5s} |")
    print(f"|{'-' * 16}|{'-' * 24}|{'-' * 12}|{'-' * 12}|{'-' * 7}|")
    for i, (name, _, x) in enumerate(inputs):
        conv_s, matmul_s = seconds[2 * i], seconds[2 * i + 1]
        print(f"| {name:14s} | {str(tuple(x.shape)):22s} | {conv_s * 1000:10.1f} | {matmul_s * 1000:10.1f} | "
              f"{matmul_s / conv_s:5.2f} |")
    total_conv, total_matmul = sum(seconds[0::2]), sum(seconds[1::2])
    print(f"all 1x1 convolutions: nn.Conv {total_conv * 1000:.1f} ms, matmul {total_matmul * 1000:.1f} ms, "
          f"ratio {total_matmul / total_conv:.2f}")


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
    network, cm = network_from_plans(plans, dataset_json, args.c)
    network = network.to(device).train()
    variants = dict(VARIANTS)
    if device.type != "cpu":
        for name in CPU_ONLY:
            del variants[name]
    networks = {}
    for name, (fused_solve, cpu_matmul_backward, cpu_native_solve) in variants.items():
        networks[name] = copy.deepcopy(network)
        networks[name].decoder.fused_solve = fused_solve
        networks[name].decoder.cpu_matmul_backward = cpu_matmul_backward
        networks[name].decoder.cpu_native_solve = cpu_native_solve
    batch_n = args.batch or cm.batch_size
    batch = torch.randn(batch_n, input_channels(dataset_json), *cm.patch_size, device=device)
    target, regions = random_target(plans, dataset_json, batch_n, cm.patch_size, device)
    with torch.no_grad():
        skips = [s.detach().requires_grad_() for s in network.encoder(batch)]
    weights = torch.randn(batch_n, network.decoder.num_classes, *cm.patch_size, device=device)
    loss = make_loss(network, False, cm.batch_dice, regions)
    encoder = EncoderAlone(copy.deepcopy(network.encoder))
    print(f"FuseUNet on {plans_file} {args.c}: patch {cm.patch_size}, batch {batch_n}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} round-robin")
    if device.type == "cpu":
        conv_rows(network.decoder, skips, args.repeats)
    rows = {}
    for what, make in (("decoder fwd+bwd", lambda net: decoder_step(net, skips, weights)),
                       ("decoder inference", lambda net: decoder_inference(net, skips)),
                       ("training step", lambda net: TrainingStep(net, loss, batch, target))):
        for name, net in networks.items():
            rows[what, name] = make(net)
    rows["training step", "encoder alone"] = TrainingStep(encoder, make_loss(encoder, False, False, False), batch,
                                                          target)
    peaks = {key: peak_step_memory_bytes(step, device) / 2 ** 20 for key, step in rows.items()}
    seconds = dict(zip(rows, interleaved_median_seconds(list(rows.values()), 2, args.repeats)))
    print(f"| {'measurement':20s} | {'variant':18s} | {'ms':>9s} | {'peak MB':>9s} | {'time / default':>14s} |")
    print(f"|{'-' * 22}|{'-' * 20}|{'-' * 11}|{'-' * 11}|{'-' * 16}|")
    for (what, name), s in seconds.items():
        print(f"| {what:20s} | {name:18s} | {s * 1000:9.1f} | {peaks[what, name]:9.1f} | "
              f"{s / seconds[what, 'default']:14.2f} |")
    floor = seconds["training step", "encoder alone"]
    print("training step / encoder alone: " + ", ".join(
        f"{name} {seconds['training step', name] / floor:.2f}" for name in networks))


if __name__ == "__main__":
    main()
