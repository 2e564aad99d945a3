"""What each trainer's real training step holds per sample, against the estimate `nnunet-fuse plan` budgets with.

For every method the trainer that reads its plans (nnU-Net's for nnUNetPlans; FuseUNet and FuseUNet-DS; Fuse4Seg in its
pre-training and bi-level phases, with the unrolled leader gradient and the average ablation; HiFuse) is built on CPU
from the real reference plans at a CPU-sized patch and runs ``train_step`` at batch 1 and 2; the peak bytes allocated
during the step (torch profiler's allocation events), batch 2 minus batch 1, is what one more sample costs (weights,
gradients and optimiser state cancel). Budgeting is right when every method's measured cost relative to nnU-Net's is at
most its estimate relative to nnU-Net's (``ratio`` ≤ 1 in the last column: an estimate that undercounts would overfill
the GPU nnU-Net planned for; measured values are deterministic, tests/test_memory_budget.py allows 3 %).

    python benchmarks/trainer_memory.py [2d|3d]
"""
from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

os.environ.setdefault("nnUNet_results", tempfile.mkdtemp())
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's nnunet_fuse, not an installed one
PLANS = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"
CASES = {  # dims: (reference plans, configuration, fraction of the plan's patch per axis, feature cap)
    "2d": ("Dataset027_ACDC_2channels", "2d", 0.5, 64),
    "3d": ("Dataset137_BraTSlike", "3d_fullres", 0.5, 16),
}


def cpu_sized(plans: dict, configuration: str, fraction: float, cap: int) -> dict:
    """The plans at a fraction of their patch (a multiple of the network's total stride) and narrower features."""
    import numpy as np

    plans = copy.deepcopy(plans)
    cfg = plans["configurations"][configuration]
    total = np.prod(np.array(cfg["architecture"]["arch_kwargs"]["strides"]), axis=0)
    cfg["patch_size"] = [int(max(t, round(p * fraction / t) * t)) for p, t in zip(cfg["patch_size"], total)]
    kwargs = cfg["architecture"]["arch_kwargs"]
    kwargs["features_per_stage"] = [min(f, cap) for f in kwargs["features_per_stage"]]
    plans["continue_training"] = False  # nnU-Net 2.8 passes this flag inside the plans dict
    return plans


def trainers(dims: str) -> List[Tuple[str, object, dict]]:
    """(label, trainer class, plans) of every trainer that reads the plans of a method, at the CPU-sized patch."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_fuse.planning import load_overlay, make_plans_variant
    from nnunet_fuse.training import fuse4seg, fuseunet, hifuse

    dataset, configuration, patch, cap = CASES[dims]
    base = json.loads((PLANS / dataset / "nnUNetPlans.json").read_text())
    base = cpu_sized(base, configuration, patch, cap)

    def variant(method: str) -> dict:
        plans = make_plans_variant(base, load_overlay(method), f"nnUNet{method}Plans", [configuration])
        plans["continue_training"] = False
        return plans

    return [("nnU-Net", nnUNetTrainer, base),
            ("FuseUNet", fuseunet.nnUNetTrainerFuseUNet, variant("fuseunet")),
            ("FuseUNet-DS", fuseunet.nnUNetTrainerFuseUNetDS, variant("fuseunet")),
            ("Fuse4Seg pre-training", fuse4seg.nnUNetTrainerFuse4Seg, variant("fuse4seg")),
            ("Fuse4Seg bi-level", fuse4seg.nnUNetTrainerFuse4Seg, variant("fuse4seg")),
            ("Fuse4Seg unrolled", fuse4seg.nnUNetTrainerFuse4SegUnrolled, variant("fuse4seg")),
            ("Fuse4Seg average", fuse4seg.nnUNetTrainerFuse4SegAverage, variant("fuse4seg")),
            ("HiFuse", hifuse.nnUNetTrainerHiFuse, variant("hifuse"))]


def built(trainer_class, plans: dict, configuration: str, dataset_json: dict):
    """The trainer set up as nnU-Net's initialize does, on CPU."""
    trainer = trainer_class(plans, configuration, 0, dataset_json, device=torch.device("cpu"))
    trainer.grad_scaler = None
    trainer.network = trainer.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, len(dataset_json["channel_names"]),
        trainer.label_manager.num_segmentation_heads, trainer.enable_deep_supervision)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = trainer._build_loss()
    return trainer


def batch_of(trainer, size: int, seed: int = 0) -> dict:
    """A batch of ``size`` samples: random channels and a blob labelling at every deep-supervision scale."""
    patch = tuple(trainer.configuration_manager.patch_size)
    channels = len(trainer.dataset_json["channel_names"])
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(size, channels, *patch, generator=generator)
    pool = F.avg_pool2d if len(patch) == 2 else F.avg_pool3d
    blobs = pool(torch.rand(size, 1, *patch, generator=generator), 7, 1, 3)
    heads = trainer.label_manager.num_segmentation_heads
    if trainer.label_manager.has_regions:
        target = torch.cat([blobs > t for t in torch.linspace(0.45, 0.55, heads)], 1).float()
    else:
        target = torch.bucketize(blobs, torch.linspace(0.45, 0.55, heads - 1)).float()
    scales = trainer._get_deep_supervision_scales() if trainer.enable_deep_supervision else [[1] * len(patch)]
    sizes = [[round(n * s) for n, s in zip(patch, scale)] for scale in scales]
    targets = [F.interpolate(target, size=s, mode="nearest") for s in sizes]
    return {"data": data, "target": targets if trainer.enable_deep_supervision else targets[0]}


def per_sample_bytes(trainer) -> int:
    """Peak bytes of train_step at batch 2 minus batch 1 (after a warm-up step that creates the optimiser state)."""
    from nnunet_fuse.profiling import peak_step_memory_bytes

    trainer.train_step(batch_of(trainer, 1))
    peaks = {}
    for size in (1, 2):
        batch = batch_of(trainer, size, seed=size)
        peaks[size] = peak_step_memory_bytes(lambda: trainer.train_step(batch), torch.device("cpu"))
    return peaks[2] - peaks[1]


def measure(dims: str) -> List[Dict]:
    from nnunet_fuse.memory_budget import estimate_per_sample

    dataset, configuration, _, _ = CASES[dims]
    dataset_json = json.loads((PLANS / dataset / "dataset.json").read_text())
    rows = []
    for label, trainer_class, plans in trainers(dims):
        torch.manual_seed(0)
        trainer = built(trainer_class, plans, configuration, dataset_json)
        if label.startswith("Fuse4Seg"):
            trainer.current_epoch = 0 if "pre-training" in label else trainer.pretrain_epochs
        rows.append({"trainer": label, "estimate": estimate_per_sample(plans, dataset_json, configuration),
                     "measured_elements": per_sample_bytes(trainer) / 4})
    base = rows[0]
    for row in rows:
        row["ratio"] = (row["measured_elements"] / base["measured_elements"]) / (row["estimate"] / base["estimate"])
    return rows


if __name__ == "__main__":
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    dims = sys.argv[1] if len(sys.argv) > 1 else "2d"
    print(f"{'trainer':24s} {'estimate/sample':>16s} {'measured/sample':>16s} {'measured/estimate':>18s} "
          f"{'ratio vs nnU-Net':>17s}")
    for row in measure(dims):
        print(f"{row['trainer']:24s} {row['estimate']:16.3e} {row['measured_elements']:16.3e} "
              f"{row['measured_elements'] / row['estimate']:18.2f} {row['ratio']:17.2f}")
