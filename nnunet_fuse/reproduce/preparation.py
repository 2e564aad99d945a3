"""What every training of a comparison shares, done once before any of them starts (so that trainings started
together never race): the dataset's check, nnU-Net's plan and preprocess, each method's plans variant, and the
folds (``splits_final.json``, over patients where a patient has several cases). Returns the trainings to run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nnunet_fuse.commands import nnunet_command, run_step
from nnunet_fuse.input_check import read_json
from nnunet_fuse.planning import (MARKER_KEY, PlanningError, check_input_channels, find_dataset_folder, load_overlay,
                                  variant_plans_name, write_plans_variant)
from nnunet_fuse.reproduce.runs import ReproduceError, Training, check_trained_as_now, method_of
from nnunet_fuse.splits import SplitError, ensure_split_file


def nnunet_folders(env: Dict[str, str]) -> Dict[str, Path]:
    missing = [v for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not env.get(v)]
    if missing:
        raise ReproduceError(f"{', '.join(missing)} not set; export nnU-Net's path variables "
                             f"(see nnU-Net's documentation/setting_up_paths.md)")
    return {v: Path(env[v]) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}


def raw_dataset_folder(raw_root: Path, dataset_id: int) -> Path:
    matches = sorted(raw_root.glob(f"Dataset{dataset_id:03d}_*"))
    if len(matches) != 1:
        found = "nothing" if not matches else ", ".join(m.name for m in matches)
        raise ReproduceError(f"expected one raw dataset Dataset{dataset_id:03d}_* in {raw_root}, found {found}; "
                             f"convert it first (nnunet-fuse convert ...)")
    return matches[0]


def check_methods_fit(methods: Sequence[str], raw: Path) -> None:
    """Before any work: a method that cannot run on this dataset (Fuse4Seg on one channel) is refused."""
    for key in methods:
        if method_of(key).overlay is not None:
            try:
                check_input_channels(load_overlay(method_of(key).overlay), raw / "dataset.json")
            except PlanningError as e:
                raise ReproduceError(str(e)) from e


def preprocessing_done(preprocessed: Path, dataset_name: str, configuration: str, n_cases: int) -> bool:
    """nnUNetPlans.json exists and holds the configuration, and its data folder has every training case."""
    plans_file = preprocessed / dataset_name / "nnUNetPlans.json"
    if not plans_file.is_file():
        return False
    configurations = read_json(plans_file)["configurations"]
    if configuration not in configurations:
        raise ReproduceError(f"configuration '{configuration}' is not in {plans_file}; nnU-Net planned "
                             f"{', '.join(configurations)}")
    identifier = configurations[configuration].get("data_identifier", f"nnUNetPlans_{configuration}")
    data = preprocessed / dataset_name / identifier
    return data.is_dir() and len(list(data.glob("*.pkl"))) >= n_cases


def method_plans(preprocessed_root: Path, dataset_id: int, overlay: Optional[str], configuration: str) -> str:
    """The plans name a method trains with: nnU-Net's own, or the method's variant of nnUNetPlans. An existing
    variant of ours that holds the configuration is used as it is (trained models may depend on it); else the
    variant is written with every configuration, as `nnunet-fuse plan` writes it by default."""
    if overlay is None:
        return "nnUNetPlans"
    name = variant_plans_name("nnUNetPlans", load_overlay(overlay)["plans_infix"])
    existing = find_dataset_folder(preprocessed_root, dataset_id) / f"{name}.json"
    if existing.is_file():
        plans = json.loads(existing.read_text())
        if MARKER_KEY in plans and configuration in plans["configurations"]:
            return name
    try:
        return str(write_plans_variant(preprocessed_root, dataset_id, overlay)["plans_name"])
    except PlanningError as e:
        raise ReproduceError(f"{e} (to add configuration '{configuration}' to it: nnunet-fuse plan -d {dataset_id} "
                             f"--method {overlay} --overwrite)") from e


def prepare(dataset_id: int, configuration: str, methods: Sequence[str], folds: Sequence[int], budget: str,
            device: str, curve: bool, env: Dict[str, str], log: Path, logs_folder: Path,
            n_processes: int) -> List[Training]:
    """Plan and preprocess (nnU-Net's command, skipped when done), the plans variants and the folds; the trainings
    (method by method, fold by fold), each logging to logs_folder/<method>_fold_<k>.txt."""
    folders = nnunet_folders(env)
    raw = raw_dataset_folder(folders["nnUNet_raw"], dataset_id)
    dataset_json = read_json(raw / "dataset.json")
    if preprocessing_done(folders["nnUNet_preprocessed"], raw.name, configuration, dataset_json["numTraining"]):
        print(f"=== {raw.name} {configuration}: already planned and preprocessed", flush=True)
    else:
        run_step(f"planning and preprocessing {raw.name} ({configuration})",
                 [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration,
                  "-np", str(n_processes), "--verify_dataset_integrity"], env, log)
    preprocessed = find_dataset_folder(folders["nnUNet_preprocessed"], dataset_id)
    case_ids = [f.name[:-len(dataset_json["file_ending"])]
                for f in (raw / "labelsTr").glob(f"*{dataset_json['file_ending']}")]
    try:
        ensure_split_file(preprocessed / "splits_final.json", case_ids, folds)
    except SplitError as e:
        raise ReproduceError(str(e)) from e
    trainings = []
    for i, key in enumerate(methods, 1):
        plans_name = method_plans(folders["nnUNet_preprocessed"], dataset_id, method_of(key).overlay, configuration)
        for fold in folds:
            trainings.append(Training(
                method=key, fold=fold, dataset_id=dataset_id, configuration=configuration, budget=budget,
                plans_name=plans_name, device=device, curve=curve, raw=raw, preprocessed=preprocessed,
                results=folders["nnUNet_results"], log=logs_folder / f"{key.replace(':', '_')}_fold_{fold}.txt",
                title=f"[{i}/{len(methods)}] {method_of(key).label}, fold {fold}"))
    for training in trainings:  # before any launch: a finished fold is not resubmitted, and not re-checked there
        check_trained_as_now(training)
    return trainings
