"""Plans variants: an nnU-Net plans file rewritten for one of our methods, written next to it.

Nothing is preprocessed again: every configuration keeps its ``data_identifier``, only the ``architecture`` entry
changes (network class and its arguments, from the method's overlay in ``plans/<method>.json``). nnU-Net's own
files are never overwritten.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from nnunet_fuse.resources import plans_overlays_folder

MARKER_KEY = "nnunet_fuse"  # present in every plans file we write; files without it are not ours to overwrite


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
    keep = _dependency_closure(all_configurations, wanted)
    plans["configurations"] = {name: cfg for name, cfg in all_configurations.items() if name in keep}

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
                         "trainer": overlay.get("trainer")}
    return plans


def check_input_channels(overlay: dict, dataset_json_file: Path) -> None:
    """Refuse a dataset with fewer image channels than the method needs (Fuse4Seg fuses N >= 2 modalities)."""
    needed = overlay.get("min_input_channels", 1)
    if needed <= 1 or not dataset_json_file.is_file():
        return
    dataset_json = json.loads(dataset_json_file.read_text())
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    if len(channels) < needed:
        raise PlanningError(f"method '{overlay['method']}' needs at least {needed} image channels (modalities), but "
                            f"this dataset has {len(channels)}: {list(channels.values())}. Use --method fuseunet or "
                            f"nnU-Net's own plans for it.")


def write_plans_variant(preprocessed_root: Union[str, Path], dataset: Union[int, str], method: str,
                        base_plans_name: str = "nnUNetPlans", configurations: Optional[Sequence[str]] = None,
                        plans_name: Optional[str] = None, overwrite: bool = False) -> Dict[str, object]:
    """Write ``<plans_name>.json`` next to ``<base_plans_name>.json`` in the dataset's preprocessed folder.

    Returns {"path", "plans_name", "configurations", "trainer", "status"} where status is "written" or
    "unchanged". Refuses to overwrite a file we did not write, or a different variant of ours unless
    ``overwrite``.
    """
    overlay = load_overlay(method)
    folder = find_dataset_folder(preprocessed_root, dataset)
    base_path = folder / f"{base_plans_name}.json"
    if not base_path.is_file():
        present = sorted(p.stem for p in folder.glob("*Plans*.json"))
        raise PlanningError(f"no plans '{base_plans_name}' in {folder} (found: {present or 'none'}). Run "
                            f"`nnUNetv2_plan_and_preprocess -d {dataset}` (or nnUNetv2_plan_experiment with the "
                            f"planner for those plans) first.")
    base_plans = json.loads(base_path.read_text())
    check_input_channels(overlay, folder / "dataset.json")
    if MARKER_KEY in base_plans:
        raise PlanningError(f"{base_path.name} is already a plans variant written by nnunet_fuse; pass nnU-Net's "
                            f"own plans as --base-plans (e.g. {base_plans[MARKER_KEY]['base_plans']})")
    plans_name = plans_name or variant_plans_name(base_plans_name, overlay["plans_infix"])
    if plans_name == base_plans_name:
        raise PlanningError("the variant's plans name must differ from the base plans name")
    plans = make_plans_variant(base_plans, overlay, plans_name, configurations)
    target = folder / f"{plans_name}.json"
    result = {"path": target, "plans_name": plans_name, "configurations": list(plans["configurations"]),
              "trainer": overlay.get("trainer"), "status": "written"}
    if target.exists():
        existing = json.loads(target.read_text())
        if MARKER_KEY not in existing:
            raise PlanningError(f"{target} exists and was not written by nnunet_fuse; refusing to overwrite it. "
                                f"Choose another --plans-name.")
        if existing == plans:
            result["status"] = "unchanged"
            return result
        if not overwrite:
            raise PlanningError(f"{target} exists with different content (trained models may depend on it); pass "
                                f"--overwrite to replace it, or choose another --plans-name.")
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plans, indent=4, sort_keys=False))
    tmp.replace(target)  # atomic: a crash never leaves a half-written plans file
    return result


def network_from_plans(plans: dict, dataset_json: dict, configuration: str, deep_supervision: bool = False):
    """The network a plans configuration builds, constructed as nnU-Net's trainers do (no weight init).

    Returns (network, configuration_manager).
    """
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

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
