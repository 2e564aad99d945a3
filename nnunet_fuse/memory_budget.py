"""Batch and patch of a plans variant, budgeted for the method's own network within the memory the base plans use.

nnU-Net's planner sizes batch and patch for its own network with its VRAM proxy (``compute_conv_feature_map_size``,
elements one sample keeps); a variant's network keeps another amount per sample, so its batch, then its patch, are
fitted to what the base plans use (fit_to_memory).
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Dict, List, Optional

import numpy as np

from nnunet_fuse.planning import MARKER_KEY, PlanningError, make_plans_variant
from nnunet_fuse.plans_network import network_from_plans

MIN_BATCH = 2  # nnU-Net's planner never plans a smaller batch (a base batch of 1 stays 1)


def _total_strides(configuration: dict) -> List[int]:
    strides = np.array(configuration["architecture"]["arch_kwargs"]["strides"])
    return [int(v) for v in np.prod(strides, axis=0)]


def estimate_per_sample(plans: dict, dataset_json: dict, configuration: str) -> int:
    """nnU-Net's VRAM proxy for one sample of the configuration's network, as the heaviest trainer that reads the
    plans builds it: with deep supervision where the network has it (FuseUNet's plans also serve the FuseUNet-DS
    trainer). Measured on each trainer's real training step, losses included (benchmarks/trainer_memory.py), no
    trainer costs more relative to nnU-Net's than its estimate says (tests/test_memory_budget.py allows 3 %)."""
    network, cm = network_from_plans(plans, dataset_json, configuration, deep_supervision=True)
    return int(network.compute_conv_feature_map_size(cm.patch_size))


def fit_to_memory(variant: dict, base_plans: dict, overlay: dict, dataset_json: dict,
                  log: Callable[[str], None] = print,
                  arch_settings: Optional[Dict[str, object]] = None) -> Dict[str, dict]:
    """Budget each configuration of ``variant`` (in place) for the method's own network, as nnU-Net's planner
    budgets its own: the memory is what the base plans use (the base batch × nnU-Net's estimate of its network at
    the base patch, whatever GPU target or planner they were made with), the cost per sample is
    ``estimate_per_sample`` at the patch. If the base batch does not fit, the batch is lowered (never below 2, or 1
    where the base batch is 1), then the patch is shrunk by one total stride along the axis largest against the
    median image shape (the network's stages and the preprocessed data stay), as nnU-Net's planner shrinks it;
    ``arch_settings``: those ``variant`` was made with (``make_plans_variant``), kept at every trial patch.
    Configurations that inherit their patch are left as they are. Returns {configuration: budget record}; the
    records are also written into the plans (``nnunet_fuse.memory_budget``). Raises PlanningError when not even the
    smallest patch fits."""
    records = {}
    for name, cfg in variant["configurations"].items():
        if "patch_size" not in cfg or "batch_size" not in cfg or "architecture" not in cfg:
            continue
        base_cfg = base_plans["configurations"][name]
        base_patch, base_batch = list(base_cfg["patch_size"]), int(base_cfg["batch_size"])
        dim = len(base_patch)
        base_estimate = estimate_per_sample(base_plans, dataset_json, name)
        budget = base_batch * base_estimate
        min_batch = min(MIN_BATCH, base_batch)
        strides = _total_strides(base_cfg)
        median = cfg.get("median_image_size_in_voxels") or base_patch
        patch, trial = list(base_patch), variant
        estimate_at_base_patch = None
        while True:
            estimate = estimate_per_sample(trial, dataset_json, name)
            estimate_at_base_patch = estimate_at_base_patch or estimate
            batch = min(base_batch, math.floor(budget / estimate))
            if batch >= min_batch:
                break
            shrinkable = [a for a in range(dim) if patch[a] - strides[a] >= 2 * strides[a]]
            if not shrinkable:
                raise PlanningError(
                    f"configuration '{name}': {overlay['method']}'s network does not fit the memory nnU-Net planned "
                    f"for (budget {budget:.3g} elements) even at batch {min_batch} and patch {patch}. Plan nnU-Net "
                    f"for a larger GPU (nnUNetv2_plan_experiment -gpu_memory_target), or pass "
                    f"--keep-base-batch-and-patch to keep nnU-Net's batch and patch anyway.")
            axis = max(shrinkable, key=lambda a: patch[a] / median[a])
            patch[axis] -= strides[axis]
            trial_base = copy.deepcopy(base_plans)
            trial_base["configurations"][name]["patch_size"] = list(patch)
            trial = make_plans_variant(trial_base, overlay, variant["plans_name"], [name], arch_settings)
        cfg["batch_size"], cfg["patch_size"] = int(batch), list(patch)
        cfg["architecture"] = trial["configurations"][name]["architecture"]  # HiFuse's windows follow the patch
        records[name] = {"base_batch_size": base_batch, "base_patch_size": base_patch, "batch_size": int(batch),
                         "patch_size": list(patch), "estimate_per_sample": estimate,
                         "estimate_per_sample_at_base_patch": estimate_at_base_patch,
                         "base_estimate_per_sample": base_estimate, "budget": budget}
        if (batch, patch) != (base_batch, base_patch):
            changes = [f"{what} {before} -> {after}" for what, before, after in
                       (("batch", base_batch, batch), ("patch", base_patch, patch)) if before != after]
            ratio = estimate_at_base_patch / base_estimate
            log(f"{name}: {', '.join(changes)}: {overlay['method']} keeps {ratio:.2f}x what nnU-Net's network "
                f"keeps per sample at nnU-Net's patch, and the budget is what nnU-Net's plans use (batch "
                f"{base_batch} × its estimate). "
                f"--keep-base-batch-and-patch keeps nnU-Net's.")
    variant[MARKER_KEY]["memory_budget"] = records
    return records
