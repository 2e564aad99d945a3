"""Parameters and nnU-Net's VRAM proxy: nnU-Net's network vs the FuseUNet variant of the same real plans.

usage: python benchmarks/parameter_counts.py PLANS.json [PLANS.json ...] [-c 2d 3d_fullres] [-o table.md]
Each plans file must sit in its nnUNet_preprocessed dataset folder (dataset.json beside it). The FuseUNet variant is
made in memory exactly as `nnunet-fuse plan --method fuseunet` writes it. Deep supervision off for both networks.
"""
import argparse
import json
from pathlib import Path

from nnunet_fuse.architectures import parameter_counts
from nnunet_fuse.reporting import format_table
from nnunet_fuse.planning import load_overlay, make_plans_variant
from nnunet_fuse.plans_network import network_from_plans


def counts(net, patch_size):
    c = parameter_counts(net)
    return c["total"], c["encoder"], c["decoder"], int(net.compute_conv_feature_map_size(patch_size))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plans", nargs="+", type=Path)
    parser.add_argument("-c", nargs="+", default=["2d", "3d_fullres"])
    parser.add_argument("-o", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    overlay = load_overlay("fuseunet")
    rows = [["dataset", "config", "patch", "stages", "nnU-Net params (enc + dec)", "FuseUNet params (enc + dec)",
             "params ratio", "VRAM proxy ratio"]]
    for plans_file in args.plans:
        plans = json.loads(plans_file.read_text())
        dataset_json = json.loads((plans_file.parent / "dataset.json").read_text())
        variant = make_plans_variant(plans, overlay, "nnUNetFuseUNetPlans")
        for configuration in args.c:
            if configuration not in plans["configurations"]:
                continue
            default, cm = network_from_plans(plans, dataset_json, configuration)
            fuse, _ = network_from_plans(variant, dataset_json, configuration)
            d, f = counts(default, cm.patch_size), counts(fuse, cm.patch_size)
            rows.append([plans["dataset_name"], configuration, "×".join(map(str, cm.patch_size)),
                         str(len(cm.network_arch_init_kwargs["strides"])),
                         f"{d[0] / 1e6:.2f}M ({d[1] / 1e6:.2f}M + {d[2] / 1e6:.2f}M)",
                         f"{f[0] / 1e6:.2f}M ({f[1] / 1e6:.2f}M + {f[2] / 1e3:.1f}k)",
                         f"{f[0] / d[0]:.2f}", f"{f[3] / d[3]:.2f}"])
    table = format_table(rows)
    print(table)
    if args.o:
        args.o.write_text(table + "\n")


if __name__ == "__main__":
    main()
