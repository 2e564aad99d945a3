"""Plans variants: an nnU-Net plans file rewritten for one of our methods, written next to it.

Nothing is preprocessed again: every configuration keeps its ``data_identifier``; the ``architecture`` entry changes
(network class and its arguments, from the method's overlay in ``plans/<method>.json``), and the batch and patch
size are budgeted for the method's own network as nnU-Net's planner budgets its own (memory_budget.py). nnU-Net's
own files are never overwritten.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from nnunet_fuse import __version__
from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.compatibility import PLANS_KEY, IncompatibleVersionError, check_compatible
from nnunet_fuse.input_check import read_json
from nnunet_fuse.intensity_ranges import intensity_ranges, preprocessed_intensity_ranges
from nnunet_fuse.resources import plans_overlays_folder

MARKER_KEY = PLANS_KEY  # present in every plans file we write; files without it are not ours to overwrite


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
                       configurations: Optional[Sequence[str]] = None,
                       arch_settings: Optional[Dict[str, object]] = None) -> dict:
    """Return a new plans dict for the overlay's method; ``base_plans`` is not modified.

    configurations: the ones to keep (default: all); configurations they inherit or cascade from are kept too.
    arch_settings: values for the method's own network arguments (e.g. {"state_channels": 32}) instead of its defaults.
    Raises PlanningError for an unknown configuration, a network the method cannot replace, or a setting the
    method's network does not have.
    """
    for setting in arch_settings or {}:
        if setting not in overlay.get("add_arch_kwargs", {}):
            having = [m for m in available_methods() if setting in load_overlay(m).get("add_arch_kwargs", {})]
            raise PlanningError(f"method '{overlay['method']}' has no network setting '{setting}'; methods with it: "
                                f"{', '.join(having) or 'none'}")
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
        kwargs.update(arch_settings or {})
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
                        arch_settings: Optional[Dict[str, object]] = None,
                        log: Callable[[str], None] = print) -> Dict[str, object]:
    """Write ``<plans_name>.json`` next to ``<base_plans_name>.json`` in the dataset's preprocessed folder, each
    configuration's batch and patch budgeted for the method's network (``fit_to_memory``) unless
    ``keep_base_batch_and_patch`` (same-input comparisons); ``arch_settings`` as in ``make_plans_variant``; ``log``
    gets a line per change.

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
    plans = make_plans_variant(base_plans, overlay, plans_name, configurations, arch_settings)
    notes = []
    left_out = sorted(cascade_configurations(base_plans["configurations"], overlay) - set(plans["configurations"]))
    if left_out:
        notes.append(f"left out {left_out}: {method} cannot train a cascade stage (it would fuse the previous "
                     f"stage's one-hot maps as if they were modalities)")
    if keep_base_batch_and_patch:
        plans[MARKER_KEY]["memory_budget"] = {name: "kept nnU-Net's batch and patch (--keep-base-batch-and-patch)"
                                              for name in plans["configurations"]}
    else:
        from nnunet_fuse.memory_budget import fit_to_memory  # it builds variants with this module's functions

        fit_to_memory(plans, base_plans, overlay, read_json(folder / "dataset.json"), notes.append, arch_settings)
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


