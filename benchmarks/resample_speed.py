"""Forward + backward of the FuseUNet forcing upsampling: F.interpolate vs nnunet_fuse.ode.resample, side by side.

Shapes are those of real plans: every non-finest skip of nnU-Net's ACDC 2d plan (batch 20 on CUDA, 4 on CPU, 256×224,
6 stages) and of the BraTS-like 3d_fullres plan (batch 2 / 1, 128³ / 64³, 6 stages), state width 8.
usage: python benchmarks/resample_speed.py [-device cpu|cuda] [--repeats N]
"""
import argparse
import torch
import torch.nn.functional as F

from nnunet_fuse.ode.resample import linear_upsample
from nnunet_fuse.profiling import median_seconds
from nnunet_fuse.reporting import format_table

MODES = {2: "bilinear", 3: "trilinear"}


def forcing_shapes(full, batch, stages):
    """(input shape, output size) of each upsampled forcing, stride 2 per stage on every axis."""
    return [((batch, 8, *[s // 2 ** k for s in full]), full) for k in range(1, stages)]


def seconds(fn, x, size, repeats, device):
    def once():
        x.grad = None
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            out = fn(x, size)
        out.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return median_seconds(once, warmup=1, repeats=repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    cases = {"ACDC 2d": forcing_shapes((256, 224), 20 if cuda else 4, 6),
             "BraTS-like 3d": forcing_shapes((128,) * 3 if cuda else (64,) * 3, 2 if cuda else 1, 6)}

    def interpolate(t, s):
        return F.interpolate(t, size=list(s), mode=MODES[len(s)], align_corners=False)

    rows = [["plan", "forcings", "F.interpolate ms", "matmul ms", "ratio"]]
    for name, shapes in cases.items():
        old = new = 0.0
        for shape, size in shapes:
            x = torch.randn(*shape, device=device, requires_grad=True)
            old += seconds(interpolate, x, size, args.repeats, device)
            new += seconds(linear_upsample, x, size, args.repeats, device)
        rows.append([name, str(len(shapes)), f"{old * 1e3:.1f}", f"{new * 1e3:.1f}", f"{new / old:.2f}"])
    print(f"device: {torch.cuda.get_device_name(device) if cuda else 'cpu'}, torch {torch.__version__}")
    print(format_table(rows))


if __name__ == "__main__":
    main()
