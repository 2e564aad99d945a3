"""Set one configuration's batch size (and patch size, and target spacing) in nnU-Net plans files, in place, for the
benchmarks' CPU-sized runs where every arm must see the same input; a file that already has them is left untouched
(trainings depend on it). A new spacing needs nnU-Net's preprocessing afterwards (nnUNetv2_preprocess).

    python benchmarks/set_batch_and_patch.py PLANS.json [PLANS.json ...] -c CONFIGURATION --batch B [--patch P P ...]
        [--spacing S S ...]
"""
import argparse
import json
import sys
from pathlib import Path

from nnunet_fuse.profiling import check_patch_size

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plans", nargs="+", type=Path)
    parser.add_argument("-c", required=True, help="configuration, e.g. 2d")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--patch", type=int, nargs="+", default=None, help="default: the plans' own")
    parser.add_argument("--spacing", type=float, nargs="+", default=None, help="default: the plans' own")
    args = parser.parse_args()
    for plans_file in args.plans:
        plans = json.loads(plans_file.read_text())
        configuration = plans["configurations"][args.c]
        if args.patch:
            try:
                check_patch_size(args.patch, configuration["architecture"]["arch_kwargs"]["strides"])
            except ValueError as e:
                sys.exit(f"{plans_file.name}: {e}")
        wanted = {"batch_size": args.batch, **({"patch_size": args.patch} if args.patch else {}),
                  **({"spacing": args.spacing} if args.spacing else {})}
        if any(configuration.get(k) != v for k, v in wanted.items()):
            configuration.update(wanted)
            plans_file.write_text(json.dumps(plans, indent=1))
            print(f"{plans_file.name}: {args.c} " + ", ".join(f"{k} {v}" for k, v in wanted.items()))
