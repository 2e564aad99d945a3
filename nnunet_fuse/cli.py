"""``nnunet-fuse``: plans variants, environment, demo. Follows nnU-Net's CLI conventions (-d, -c, -device)."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from nnunet_fuse.planning import PlanningError, available_methods, write_plans_variant
from nnunet_fuse.resources import ext_trainer_value


def _plan(args: argparse.Namespace) -> int:
    preprocessed = os.environ.get("nnUNet_preprocessed")
    if not preprocessed:
        print("error: nnUNet_preprocessed is not set; export it as for nnU-Net "
              "(see nnU-Net's documentation/setting_up_paths.md)", file=sys.stderr)
        return 2
    try:
        result = write_plans_variant(preprocessed, args.d, args.method, args.base_plans, args.c, args.plans_name,
                                     args.overwrite)
    except PlanningError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{result['status']}: {result['path']}")
    print(f"configurations: {', '.join(result['configurations'])}")
    example = result["configurations"][0]
    print(f"next: eval \"$(nnunet-fuse env)\" && nnUNetv2_train {args.d} {example} 0 -tr {result['trainer']} "
          f"-p {result['plans_name']}")
    return 0


def env_line(current: Optional[str] = None) -> str:
    """The shell line that puts our trainers folder first in nnUNet_extTrainer, keeping other entries."""
    return f"export nnUNet_extTrainer={shlex.quote(ext_trainer_value(current))}"


def _env(args: argparse.Namespace) -> int:
    print(env_line(os.environ.get("nnUNet_extTrainer")))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import torch

    from nnunet_fuse.demo import StepFailed, run_demo

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        run_demo(Path(args.workdir), device, trainer=args.tr, n_train=args.n_train, n_test=args.n_test,
                 seed=args.seed, overwrite=args.overwrite)
    except (StepFailed, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-fuse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="write a method's plans variant next to nnU-Net's plans (no re-preprocessing)")
    plan.add_argument("-d", required=True, help="dataset ID or name, e.g. 27 or Dataset027_ACDC")
    plan.add_argument("--method", required=True, help=f"one of: {', '.join(available_methods())}")
    plan.add_argument("--base-plans", default="nnUNetPlans",
                      help="existing nnU-Net plans to start from (default nnUNetPlans; e.g. nnUNetResEncUNetMPlans)")
    plan.add_argument("-c", nargs="+", default=None, help="configurations to keep (default: all), e.g. 2d 3d_fullres")
    plan.add_argument("--plans-name", default=None, help="name of the variant (default e.g. nnUNetFuseUNetPlans)")
    plan.add_argument("--overwrite", action="store_true", help="replace an earlier, different variant of ours")
    plan.set_defaults(func=_plan)

    env = sub.add_parser("env", help="print the export line for nnUNet_extTrainer: eval \"$(nnunet-fuse env)\"")
    env.set_defaults(func=_env)

    demo = sub.add_parser("demo", help="synthetic data -> plan -> train -> predict -> Dice table + PNG")
    demo.add_argument("--workdir", default="nnunet_fuse_demo", help="output folder (default ./nnunet_fuse_demo)")
    demo.add_argument("-device", choices=["cpu", "cuda", "mps"], default=None, help="default: cuda if available")
    demo.add_argument("-tr", default="nnUNetTrainerFuseUNet_10x25", help="trainer (default: the 10×25 schedule)")
    demo.add_argument("--n-train", type=int, default=24)
    demo.add_argument("--n-test", type=int, default=6)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --workdir")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
