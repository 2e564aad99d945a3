"""Plans variants: an nnU-Net plans file rewritten for one of our methods, written next to it.

Nothing is preprocessed again: every configuration keeps its ``data_identifier``; the ``architecture`` entry changes
(network class and its arguments, from the method's overlay in ``plans/<method>.json``), and the batch and patch
size are budgeted for the method's own network as nnU-Net's planner budgets its own (``fit_to_memory``). nnU-Net's
own files are never overwritten.
"""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from nnunet_fuse import __version__
from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.compatibility import PLANS_KEY, IncompatibleVersionError, check_compatible
from nnunet_fuse.input_check import read_json
from nnunet_fuse.resources import plans_overlays_folder

MARKER_KEY = PLANS_KEY  # present in every plans file we write; files without it are not ours to overwrite

MIN_BATCH = 2  # nnU-Net's planner never plans a smaller batch (a base batch of 1 stays 1)


class PlanningError(RuntimeError):
    """A plans variant cannot be written; the message says why and what to do."""


def available_methods() -> List[str]:
    return sorted(p.stem for p in plans_overlays_folder().glob("*.json"))


def load_overlay(method: str) -> dict:
    path = plans_overlays_folder() / f"{method}.json"
    if not path.is_file():
        raise PlanningError(f"unknown method '{method}'; available: {', '.join(available_methods())}")
    return json.loads(path.read_text())


def variant_plans_name(base_plans_name: str, plans_infix: str) -> str:
    """nnUNetPlans → nnUNetFuseUNetPlans; nnUNetResEncUNetMPlans → nnUNetFuseUNetResEncUNetMPlans."""
    prefix = "nnUNet"
    if base_plans_name.startswith(prefix):
        return prefix + plans_infix + base_plans_name[len(prefix):]
    return base_plans_name + plans_infix


def find_dataset_folder(preprocessed_root: Union[str, Path], dataset: Union[int, str]) -> Path:
    """nnUNet_preprocessed/DatasetXXX_Name for an ID (27, '027') or a full name ('Dataset027_ACDC')."""
    root = Path(preprocessed_root)
    if isinstance(dataset, str) and dataset.startswith("Dataset"):
        matches = [root / dataset] if (root / dataset).is_dir() else []
    else:
        try:
            dataset_id = int(dataset)
        except ValueError:
            raise PlanningError(f"dataset must be an ID like 27 or a name like Dataset027_ACDC, got '{dataset}'")
        if not 1 <= dataset_id <= 999:
            raise PlanningError(f"dataset IDs are 1-999 (nnU-Net's DatasetXXX), got {dataset}")
        matches = sorted(root.glob(f"Dataset{dataset_id:03d}_*"))
    if not matches:
        raise PlanningError(f"dataset {dataset} has not been planned yet: nothing in {root}. "
                            f"Run `nnUNetv2_plan_and_preprocess -d {dataset}` first.")
    if len(matches) > 1:
        raise PlanningError(f"several preprocessed folders match dataset {dataset}: {[m.name for m in matches]}")
    return matches[0]


def _dependency_closure(configurations: dict, names: Iterable[str]) -> List[str]:
    """names plus every configuration they inherit from or cascade from (inherits_from, previous_stage)."""
    selected: List[str] = []
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in selected:
            continue
        selected.append(name)
        cfg = configurations[name]
        pending += [cfg[key] for key in ("inherits_from", "previous_stage") if cfg.get(key) in configurations]
    return selected


def make_plans_variant(base_plans: dict, overlay: dict, plans_name: str,
                       configurations: Optional[Sequence[str]] = None) -> dict:
    """Return a new plans dict for the overlay's method; ``base_plans`` is not modified.

    configurations: the ones to keep (default: all); configurations they inherit or cascade from are kept too.
    Raises PlanningError for an unknown configuration or a network the method cannot replace.
    """
    plans = copy.deepcopy(base_plans)
    all_configurations = plans["configurations"]
    wanted = list(all_configurations) if not configurations else list(configurations)
    unknown = [c for c in wanted if c not in all_configurations]
    if unknown:
        raise PlanningError(f"configuration(s) {unknown} do not exist in plans '{base_plans.get('plans_name')}'; "
                            f"available: {list(all_configurations)}")
    cascade = cascade_configurations(all_configurations, overlay)
    if configurations and cascade & set(wanted):
        raise PlanningError(f"method '{overlay['method']}' cannot train {sorted(cascade & set(wanted))}: a cascade "
                            f"stage adds the previous stage's one-hot maps as input channels, which "
                            f"{overlay['method']} would fuse as if they were modalities. Use 3d_fullres (or 3d_lowres) "
                            f"with this method, or nnU-Net's own plans for the cascade.")
    keep = _dependency_closure(all_configurations, [c for c in wanted if c not in cascade])
    plans["configurations"] = {name: cfg for name, cfg in all_configurations.items() if name in keep}
    for cfg in plans["configurations"].values():
        if cascade and cfg.get("next_stage") is not None:  # the cascade stage it would feed is left out
            next_stages = [n for n in np.atleast_1d(cfg["next_stage"]) if n not in cascade]
            if next_stages:
                cfg["next_stage"] = next_stages if isinstance(cfg["next_stage"], list) else next_stages[0]
            else:
                del cfg["next_stage"]

    for name, cfg in plans["configurations"].items():
        if "architecture" not in cfg:
            continue  # inherits the (rewritten) architecture of its parent
        architecture = cfg["architecture"]
        base_class = architecture["network_class_name"]
        new_class = overlay["network_class_by_base"].get(base_class)
        if new_class is None:
            raise PlanningError(
                f"configuration '{name}' uses network {base_class}, which method '{overlay['method']}' cannot "
                f"replace; supported base networks: {list(overlay['network_class_by_base'])}. Use --base-plans "
                f"with plans of one of those (e.g. nnUNetPlans or nnUNetResEncUNetMPlans).")
        architecture["network_class_name"] = new_class
        kwargs = architecture["arch_kwargs"]
        if "segmentation_network_by_base" in overlay:  # a wrapper network (Fuse4Seg) around a segmentation network
            kwargs["segmentation_network"] = overlay["segmentation_network_by_base"][base_class]
        for key in overlay.get("drop_arch_kwargs", []):
            kwargs.pop(key, None)
        for key, value in overlay.get("add_arch_kwargs", {}).items():
            kwargs.setdefault(key, value)
        if "segmentation_network_by_base" in overlay and kwargs.get("fusion_intensity_ranges") is None:
            kwargs["fusion_intensity_ranges"] = intensity_ranges(plans, name)
        if "window_attention" in overlay and "patch_size" in cfg:  # HiFuse: global attention where affordable
            from nnunet_fuse.hifuse.encoder import attention_settings

            dim = str(len(cfg["patch_size"]))
            settings = overlay["window_attention"]
            for key, value in attention_settings(cfg["patch_size"], kwargs["strides"],
                                                 settings["max_global_voxels"][dim],
                                                 settings["max_window"][dim]).items():
                if kwargs.get(key) is None:
                    kwargs[key] = value

    plans["plans_name"] = plans_name
    plans[MARKER_KEY] = {"method": overlay["method"], "base_plans": base_plans.get("plans_name"),
                         "trainer": overlay.get("trainer"), "version": __version__}
    return plans


def cascade_configurations(configurations: dict, overlay: dict) -> set:
    """The cascade stages (configurations with a ``previous_stage``) a method cannot train (overlay ``cascade``:
    false): empty for the methods that can."""
    if overlay.get("cascade", True):
        return set()
    return {name for name, cfg in configurations.items() if cfg.get("previous_stage")}


def trainer_deep_supervision(plans: dict) -> bool:
    """Whether the plans' trainer trains with deep supervision: nnU-Net's yes, FuseUNet's no, others as their overlay
    says (``trainer_deep_supervision``)."""
    if MARKER_KEY not in plans:
        return True
    return bool(load_overlay(plans[MARKER_KEY]["method"]).get("trainer_deep_supervision", False))


def _total_strides(configuration: dict) -> List[int]:
    strides = np.array(configuration["architecture"]["arch_kwargs"]["strides"])
    return [int(v) for v in np.prod(strides, axis=0)]


def _estimate(plans: dict, dataset_json: dict, configuration: str) -> int:
    """nnU-Net's VRAM proxy for one sample of the configuration's network, as the heaviest trainer that reads the
    plans builds it: with deep supervision where the network has it (FuseUNet's plans also serve the FuseUNet-DS
    trainer). Measured against each trainer's real training step, losses included (benchmarks/trainer_memory.py),
    it counts every trainer's cost relative to nnU-Net's within 10 %."""
    network, cm = network_from_plans(plans, dataset_json, configuration, deep_supervision=True)
    return int(network.compute_conv_feature_map_size(cm.patch_size))


def fit_to_memory(variant: dict, base_plans: dict, overlay: dict, dataset_json: dict,
                  log: Callable[[str], None] = print) -> Dict[str, dict]:
    """Budget each configuration of ``variant`` (in place) for the method's own network, as nnU-Net's planner
    budgets its own: the memory is what the base plans use (the base batch × nnU-Net's estimate of its network at
    the base patch, whatever GPU target or planner they were made with), the cost per sample is ``_estimate`` at the
    patch. If the base batch does not fit, the batch is lowered (never below 2, or 1 where the base batch is 1),
    then the patch is shrunk by one total stride along the axis largest against the median image shape (the
    network's stages and the preprocessed data stay), as nnU-Net's planner shrinks it. Configurations that inherit
    their patch are left as they are. Returns {configuration: budget record}; the records are also written into the
    plans (``nnunet_fuse.memory_budget``). Raises PlanningError when not even the smallest patch fits."""
    records = {}
    for name, cfg in variant["configurations"].items():
        if "patch_size" not in cfg or "batch_size" not in cfg or "architecture" not in cfg:
            continue
        base_cfg = base_plans["configurations"][name]
        base_patch, base_batch = list(base_cfg["patch_size"]), int(base_cfg["batch_size"])
        dim = len(base_patch)
        base_estimate = _estimate(base_plans, dataset_json, name)
        budget = base_batch * base_estimate
        min_batch = min(MIN_BATCH, base_batch)
        strides = _total_strides(base_cfg)
        median = cfg.get("median_image_size_in_voxels") or base_patch
        patch, trial = list(base_patch), variant
        estimate_at_base_patch = None
        while True:
            estimate = _estimate(trial, dataset_json, name)
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
            trial = make_plans_variant(trial_base, overlay, variant["plans_name"], [name])
        cfg["batch_size"], cfg["patch_size"] = int(batch), list(patch)
        cfg["architecture"] = trial["configurations"][name]["architecture"]  # HiFuse's windows follow the patch
        records[name] = {"base_batch_size": base_batch, "base_patch_size": base_patch, "batch_size": int(batch),
                         "patch_size": list(patch), "estimate_per_sample": estimate,
                         "estimate_per_sample_at_base_patch": estimate_at_base_patch,
                         "base_estimate_per_sample": base_estimate, "budget": budget,
                         "budget_source": "base batch × base estimate"}
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


def _configuration_value(plans: dict, configuration: str, key: str):
    """A configuration's entry, looked up through ``inherits_from`` as nnU-Net does."""
    cfg = plans["configurations"][configuration]
    while key not in cfg and cfg.get("inherits_from"):
        cfg = plans["configurations"][cfg["inherits_from"]]
    return cfg[key]


def intensity_ranges(plans: dict, configuration: str) -> List[List[float]]:
    """Per channel, the (low, high) of nnU-Net's normalised intensities that Fuse4Seg's fusion network maps to
    [0, 1], from the plans alone (``write_plans_variant`` replaces them by ``preprocessed_intensity_ranges`` once
    the data is preprocessed): the dataset's 0.5 and 99.5 foreground percentiles
    (``foreground_intensity_properties_per_channel``) in the units of the configuration's normalisation.
    CTNormalization (clip to them, z-score with the dataset's foreground mean and std): exact; ZScoreNormalization
    (per image): through the dataset's foreground mean and std, a dataset-wide approximation of each image's;
    NoNormalization: as they are; rescaling to [0, 1]: (0, 1)."""
    schemes = _configuration_value(plans, configuration, "normalization_schemes")
    properties = plans["foreground_intensity_properties_per_channel"]
    ranges = []
    for channel, scheme in enumerate(schemes):
        p = properties[str(channel)]
        low, high = p["percentile_00_5"], p["percentile_99_5"]
        if scheme in ("RescaleTo01Normalization", "RGBTo01Normalization"):
            low, high = 0.0, 1.0
        elif scheme != "NoNormalization":
            std = max(p["std"], 1e-8)
            low, high = (low - p["mean"]) / std, (high - p["mean"]) / std
        if not high > low:
            high = low + 1.0
        ranges.append([round(float(low), 4), round(float(high), 4)])
    return ranges


def preprocessed_intensity_ranges(folder: Path, max_cases: int = 8, max_voxels: int = 2 ** 22) -> List[List[float]]:
    """Per channel, the 0.5 and 99.5 percentiles of nnU-Net's preprocessed (normalised) data in ``folder`` (a
    configuration's data_identifier folder), over up to ``max_cases`` cases spread over the dataset, strided voxels.
    What the network will see, whatever the normalisation scheme.

    The cases of every fold count, validation cases included, on purpose: this is the statistic nnU-Net's own
    fingerprint takes over all training cases before any fold exists (the 0.5/99.5 percentiles of its CT
    normalisation, dataset_fingerprint.json), from intensities only (no label is read), and one plans file serves
    every fold, as nnU-Net's does; ranges per fold would need a plans file per fold for a clip range."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset = infer_dataset_class(str(folder))(str(folder))
    identifiers = sorted(dataset.identifiers)
    spread = np.linspace(0, len(identifiers) - 1, min(max_cases, len(identifiers))).astype(int)
    chosen = [identifiers[i] for i in spread]
    samples = []
    for identifier in dict.fromkeys(chosen):
        data = np.asarray(dataset.load_case(identifier)[0])
        flat = data.reshape(data.shape[0], -1)
        samples.append(flat[:, ::max(1, flat.shape[1] * len(chosen) // max_voxels)])
    pooled = np.concatenate(samples, axis=1).astype(np.float64)
    ranges = []
    for low, high in np.percentile(pooled, [0.5, 99.5], axis=1).T:
        ranges.append([round(float(low), 4), round(float(high if high > low else low + 1.0), 4)])
    return ranges


def check_input_channels(overlay: dict, dataset_json_file: Path) -> None:
    """Refuse a dataset with fewer image channels than the method needs (Fuse4Seg fuses N >= 2 modalities)."""
    needed = overlay.get("min_input_channels", 1)
    if needed <= 1 or not dataset_json_file.is_file():
        return
    dataset_json = read_json(dataset_json_file)
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    if len(channels) < needed:
        raise PlanningError(f"method '{overlay['method']}' needs at least {needed} image channels (modalities), but "
                            f"this dataset has {len(channels)}: {list(channels.values())}. Use --method fuseunet or "
                            f"nnU-Net's own plans for it.")


def write_plans_variant(preprocessed_root: Union[str, Path], dataset: Union[int, str], method: str,
                        base_plans_name: str = "nnUNetPlans", configurations: Optional[Sequence[str]] = None,
                        plans_name: Optional[str] = None, overwrite: bool = False,
                        keep_base_batch_and_patch: bool = False,
                        log: Callable[[str], None] = print) -> Dict[str, object]:
    """Write ``<plans_name>.json`` next to ``<base_plans_name>.json`` in the dataset's preprocessed folder, each
    configuration's batch and patch budgeted for the method's network (``fit_to_memory``) unless
    ``keep_base_batch_and_patch`` (same-input comparisons); ``log`` gets a line per change.

    Returns {"path", "plans_name", "configurations", "trainer", "status", "notes"} where status is "written" or
    "unchanged". Configurations are added to an existing variant of ours (``merged_variant``); refuses to touch a
    file we did not write, and to change a configuration or variant of ours unless ``overwrite``.
    """
    overlay = load_overlay(method)
    folder = find_dataset_folder(preprocessed_root, dataset)
    base_path = folder / f"{base_plans_name}.json"
    if not base_path.is_file():
        present = sorted(p.stem for p in folder.glob("*Plans*.json"))
        raise PlanningError(f"no plans '{base_plans_name}' in {folder} (found: {present or 'none'}). Run "
                            f"`nnUNetv2_plan_and_preprocess -d {dataset}` (or nnUNetv2_plan_experiment with the "
                            f"planner for those plans) first.")
    base_plans = read_json(base_path)
    check_input_channels(overlay, folder / "dataset.json")
    if MARKER_KEY in base_plans:
        raise PlanningError(f"{base_path.name} is already a plans variant written by nnunet_fuse; pass nnU-Net's "
                            f"own plans as --base-plans (e.g. {base_plans[MARKER_KEY]['base_plans']})")
    plans_name = plans_name or variant_plans_name(base_plans_name, overlay["plans_infix"])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", plans_name) or plans_name.endswith(".json"):
        raise PlanningError(f"plans name '{plans_name}' must be a plain name (letters, digits, _ . -; no folders, "
                            f"no .json), e.g. nnUNetFuseUNetPlans; it becomes <name>.json beside nnU-Net's plans")
    if plans_name == base_plans_name:
        raise PlanningError("the variant's plans name must differ from the base plans name")
    plans = make_plans_variant(base_plans, overlay, plans_name, configurations)
    notes = []
    left_out = sorted(cascade_configurations(base_plans["configurations"], overlay) - set(plans["configurations"]))
    if left_out:
        notes.append(f"left out {left_out}: {method} cannot train a cascade stage (it would fuse the previous "
                     f"stage's one-hot maps as if they were modalities)")
    if keep_base_batch_and_patch:
        plans[MARKER_KEY]["memory_budget"] = {name: "kept nnU-Net's batch and patch (--keep-base-batch-and-patch)"
                                              for name in plans["configurations"]}
    else:
        fit_to_memory(plans, base_plans, overlay, read_json(folder / "dataset.json"), notes.append)
    for cfg in plans["configurations"].values():  # Fuse4Seg: the ranges of the data as preprocessed, where it is
        kwargs = cfg.get("architecture", {}).get("arch_kwargs", {})
        data_folder = folder / str(cfg.get("data_identifier"))
        if "fusion_intensity_ranges" in kwargs and data_folder.is_dir() and any(data_folder.iterdir()):
            kwargs["fusion_intensity_ranges"] = preprocessed_intensity_ranges(data_folder)
    for note in notes:
        log(note)
    target = folder / f"{plans_name}.json"
    existing = read_json(target) if target.exists() else None
    if existing is not None:
        if MARKER_KEY not in existing:
            raise PlanningError(f"{target} exists and was not written by nnunet_fuse; refusing to overwrite it. "
                                f"Choose another --plans-name.")
        plans = merged_variant(existing, plans, target, overwrite, log)
    result = {"path": target, "plans_name": plans_name, "configurations": list(plans["configurations"]),
              "trainer": overlay.get("trainer"), "status": "written", "notes": notes}
    if existing is not None and _without_version(existing) == _without_version(plans) and _readable(existing):
        result["status"] = "unchanged"
        return result
    write_text_atomically(target, json.dumps(plans, indent=4, sort_keys=False))  # never a half-written plans file
    return result


def _readable(plans: dict) -> bool:
    """Whether this version reads plans written by the version they record."""
    try:
        check_compatible(plans, "plans")
    except IncompatibleVersionError:
        return False
    return True


def _without_version(plans: dict) -> dict:
    """The plans as compared for changes: which plugin version wrote them does not count."""
    plans = copy.deepcopy(plans)
    plans.get(MARKER_KEY, {}).pop("version", None)
    return plans


def merged_variant(existing: dict, new: dict, target: Path, overwrite: bool,
                   log: Callable[[str], None] = print) -> dict:
    """The plans to write where our variant ``existing`` is: its configurations with those of ``new`` added, so that
    planning 2d and then 3d_fullres keeps both. A configuration that ``new`` changes, or a variant of another method
    or base plans, is replaced only with ``overwrite`` (trained models may depend on it); otherwise PlanningError.
    A variant written by a version this one cannot read is replaced as a whole with ``overwrite``."""
    try:
        check_compatible(existing, str(target))
    except IncompatibleVersionError as e:
        if overwrite:
            log(f"replacing {target} as a whole: {e}")
            return new
        raise PlanningError(f"{e} (pass --overwrite to replace it, or choose another --plans-name)") from e
    shared = {key: value for key, value in new.items() if key not in ("configurations", MARKER_KEY)}
    same_variant = (all(existing.get(key) == value for key, value in shared.items())
                    and all(existing[MARKER_KEY].get(key) == new[MARKER_KEY][key] for key in ("method", "base_plans")))
    if not same_variant:
        if not overwrite:
            raise PlanningError(f"{target} exists with different content (another method, other base plans, or base "
                                f"plans planned again; trained models may depend on it); pass --overwrite to replace "
                                f"it, or choose another --plans-name.")
        return new
    changed = [name for name, cfg in new["configurations"].items()
               if name in existing["configurations"] and existing["configurations"][name] != cfg]
    if changed and not overwrite:
        raise PlanningError(f"{target} already holds configuration(s) {changed} with different content (trained "
                            f"models may depend on them); pass --overwrite to replace them (its other configurations "
                            f"are kept), or choose another --plans-name.")
    merged = copy.deepcopy(existing)
    merged["configurations"].update(copy.deepcopy(new["configurations"]))
    budgets = existing[MARKER_KEY].get("memory_budget")
    merged[MARKER_KEY] = copy.deepcopy(new[MARKER_KEY])
    merged[MARKER_KEY]["memory_budget"] = {**(budgets if isinstance(budgets, dict) else {}),
                                           **new[MARKER_KEY].get("memory_budget", {})}
    added = [name for name in new["configurations"] if name not in existing["configurations"]]
    kept = [name for name in existing["configurations"] if name not in new["configurations"]]
    if added and kept:
        log(f"added {added} to {target.name}; kept {kept}")
    return merged


def network_from_plans(plans: dict, dataset_json: dict, configuration: str, deep_supervision: bool = False):
    """The network a plans configuration builds, constructed as nnU-Net's trainers do (no weight init).

    Returns (network, configuration_manager); IncompatibleVersionError for plans this version cannot build.
    """
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    check_compatible(plans, f"plans '{plans.get('plans_name')}'")
    plans_manager = PlansManager(plans)
    cm = plans_manager.get_configuration(configuration)
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import,
                                     determine_num_input_channels(plans_manager, cm, dataset_json),
                                     plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
                                     allow_init=False, deep_supervision=deep_supervision)
    return network, cm


def count_parameters(plans_file: Path, dataset_json_file: Path, configuration: str) -> Dict[str, int]:
    """Parameters of the network a plans configuration builds (as the trainer builds it, deep supervision off)."""
    from nnunet_fuse.architectures import parameter_counts

    network, _ = network_from_plans(json.loads(plans_file.read_text()), json.loads(dataset_json_file.read_text()),
                                    configuration)
    return parameter_counts(network)
