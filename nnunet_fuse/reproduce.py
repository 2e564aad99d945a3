"""``nnunet-fuse reproduce``: methods trained side by side on one dataset with the same budget.

plan + preprocess once (nnU-Net's command, skipped when done) → each method's plans variant → ``nnUNetv2_train`` of
each method and fold with the budget's trainer (nnunet_fuse.training.budget) → nnU-Net's own final validation
(prediction of the fold's validation cases + its evaluator) → one table (Markdown, JSON, PNG).

Resumes: a fold whose training and validation finished is never run again; a finished training without its
validation gets ``--val``; an interrupted one continues from its latest checkpoint (``--c``; the budget trainers save
one after every epoch). Datasets with several cases per patient (ACDC) are trained on folds over patients
(nnunet_fuse.splits), and a training made on other folds is refused. The report merges with an earlier report of the
same comparison in the output folder (methods of this run replace their rows, the others stay), and files there that
reproduce did not write are never replaced.

With ``curve`` (budgets that keep snapshots, budgets.SNAPSHOT_EPOCHS) every snapshot of a fold is validated like
the final network (nnUNetv2_predict -chk on the fold's validation cases, nnU-Net's evaluator; cached in
fold_X/curve/iteration_N/), so that the report has validation Dice against iterations: a table with the mean ± sd
over folds, which differences are larger than the fold-to-fold spread, and learning_curves.png.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_fuse.atomic_files import replaced_atomically, write_text_atomically
from nnunet_fuse.commands import nnunet_command, run_step
from nnunet_fuse.input_check import read_json
from nnunet_fuse.planning import (MARKER_KEY, PlanningError, check_input_channels, count_parameters,
                                  find_dataset_folder, load_overlay, variant_plans_name, write_plans_variant)
from nnunet_fuse.reporting import format_table
from nnunet_fuse.budgets import BUDGETS, RECORD_FILE, SNAPSHOT_EPOCHS, SNAPSHOT_FILE
from nnunet_fuse.splits import SplitError, ensure_patient_grouped_split


class ReproduceError(RuntimeError):
    """Input that reproduce cannot work with; the message says what to do."""


@dataclass(frozen=True)
class Method:
    label: str
    overlay: Optional[str]  # plans overlay for `nnunet-fuse plan --method`, None: nnU-Net's own plans
    trainer_prefix: str     # the trainer is f"{trainer_prefix}_{budget}"


METHODS: Dict[str, Method] = {
    "nnunet": Method("nnU-Net default", None, "nnUNetTrainer"),
    "fuseunet": Method("FuseUNet", "fuseunet", "nnUNetTrainerFuseUNet"),
    "fuseunet-ds": Method("FuseUNet + deep supervision", "fuseunet", "nnUNetTrainerFuseUNetDS"),
    "fuse4seg": Method("Fuse4Seg", "fuse4seg", "nnUNetTrainerFuse4Seg"),
    "hifuse": Method("HiFuse", "hifuse", "nnUNetTrainerHiFuse"),
}

# nnU-Net (original) in "nnU-Net Revisited" (MICCAI 2024), 5-fold cross-validation mean Dice (%), 1000 epochs
PUBLISHED = [(re.compile(r"ACDC", re.I), "ACDC", 91.54), (re.compile(r"KiTS(20)?23", re.I), "KiTS23", 86.04),
             (re.compile(r"BraTS(20)?21", re.I), "BraTS21", 91.24)]


def parse_methods(text: str) -> List[str]:
    """'nnunet,fuseunet' → ['nnunet', 'fuseunet'], with a clear error for unknown or repeated methods."""
    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    if not methods:
        raise ReproduceError("--methods is empty; e.g. --methods nnunet,fuseunet")
    for m in methods:
        if m not in METHODS:
            raise ReproduceError(f"unknown method '{m}'; available: {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ReproduceError(f"--methods names a method twice: {text}")
    return methods


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


def fold_state(fold_folder: Path) -> str:
    """'finished' (final checkpoint + validation summary), 'validate' (final checkpoint only), 'continue'
    (a latest or best checkpoint, which nnUNetv2_train --c continues from), or 'new'."""
    final = (fold_folder / "checkpoint_final.pth").is_file()
    if final and (fold_folder / "validation" / "summary.json").is_file():
        return "finished"
    if final:
        return "validate"
    resumable = any((fold_folder / f"checkpoint_{k}.pth").is_file() for k in ("latest", "best"))
    return "continue" if resumable else "new"


def check_trained_on_split(fold_folder: Path, fold: int, splits_file: Path) -> None:
    """Refuse a training whose record names other validation cases than fold ``fold`` of splits_file (made on
    other folds, e.g. nnU-Net's split over frames before a patient-grouped one was written)."""
    record_file = fold_folder / RECORD_FILE
    if not (record_file.is_file() and splits_file.is_file()):
        return
    recorded = json.loads(record_file.read_text()).get("validation_cases")
    splits = json.loads(splits_file.read_text())
    if recorded is not None and fold < len(splits) and sorted(recorded) != sorted(splits[fold]["val"]):
        raise ReproduceError(f"{fold_folder} was trained on other folds than fold {fold} of {splits_file} (its "
                             f"validation cases differ); move that folder away to train the fold again")


def trained_validation_cases(splits_file: Path, fold: int) -> List[str]:
    """The validation cases of fold ``fold`` after its training: nnU-Net writes splits_file when it trains a dataset
    whose folds we left to it (one case per patient), so it is read only then."""
    if not splits_file.is_file():
        raise ReproduceError(f"{splits_file} is missing (nnU-Net writes it when it trains): without it the snapshots "
                             f"cannot be validated on fold {fold}'s cases; train the fold again, or restore the file")
    return json.loads(splits_file.read_text())[fold]["val"]


def label_names(dataset_json: dict) -> Dict[object, str]:
    """nnU-Net summary key (int label or tuple region) → name, foreground only."""
    names = {}
    for name, value in dataset_json["labels"].items():
        key = tuple(value) if isinstance(value, (list, tuple)) else int(value)
        if key != 0 and name != "background":
            names[key] = name
    return names


def validation_hd95(summary: dict, names: Dict[object, str], cache: Path) -> Dict[str, Optional[float]]:
    """Mean HD95 (mm) per label/region over the validation cases of nnU-Net's summary (its prediction and reference
    files), cases where it is undefined (one mask empty) left out; cached in ``cache``."""
    if cache.is_file():
        return json.loads(cache.read_text())
    import SimpleITK as sitk

    from nnunet_fuse.metrics import hd95

    values: Dict[str, List[float]] = {name: [] for name in names.values()}
    for case in summary["metric_per_case"]:
        reference_image = sitk.ReadImage(case["reference_file"])
        reference = sitk.GetArrayFromImage(reference_image)
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(case["prediction_file"]))
        spacing = reference_image.GetSpacing()[::-1]
        for key, name in names.items():
            labels = list(key) if isinstance(key, tuple) else [key]
            distance = hd95(np.isin(prediction, labels), np.isin(reference, labels), spacing)
            if distance is not None:
                values[name].append(distance)
    result = {name: (float(np.mean(v)) if v else None) for name, v in values.items()}
    write_text_atomically(cache, json.dumps(result, indent=2))
    return result


def fold_result(fold_folder: Path, dataset_json: dict) -> dict:
    """Dice per label/region and mean foreground Dice (nnU-Net's summary.json), HD95 per label/region, and the
    training record."""
    from nnunetv2.evaluation.evaluate_predictions import load_summary_json

    summary = load_summary_json(str(fold_folder / "validation" / "summary.json"))
    names = label_names(dataset_json)
    dice = {names.get(k, str(k)): float(v["Dice"]) for k, v in summary["mean"].items()}
    distances = validation_hd95(summary, names, fold_folder / "validation" / "hd95.json")
    defined = [d for d in distances.values() if d is not None]
    record_file = fold_folder / RECORD_FILE
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    return {"dice": dice, "mean_dice": float(summary["foreground_mean"]["Dice"]), "hd95": distances,
            "mean_hd95": float(np.mean(defined)) if defined else None,
            "n_validation_cases": len(summary["metric_per_case"]), "train_seconds": record.get("train_seconds"),
            "peak_memory_mb": record.get("peak_memory_mb"), "peak_memory_kind": record.get("peak_memory_kind")}


def snapshot_iterations(fold_folder: Path) -> List[int]:
    """Iterations of the snapshots (checkpoint_iteration_N.pth) a budget trainer kept in fold_folder, ascending."""
    pattern = re.compile("^" + re.escape(SNAPSHOT_FILE).replace(r"\{\}", r"(\d+)") + "$")
    found = (pattern.match(f.name) for f in fold_folder.glob(SNAPSHOT_FILE.format("*")))
    return sorted(int(m.group(1)) for m in found if m)


def validation_inputs(raw: Path, dataset_json: dict, cases: Sequence[str], folder: Path) -> Path:
    """A folder of links to the raw images of ``cases`` (every channel), as nnUNetv2_predict -i reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    ending = dataset_json["file_ending"]
    for case in cases:
        for channel in range(len(dataset_json["channel_names"])):
            link = folder / f"{case}_{channel:04d}{ending}"
            if not link.is_symlink():
                link.symlink_to((raw / "imagesTr" / link.name).resolve())
    return folder


def snapshot_curve(title: str, fold_folder: Path, fold: int, predict: Sequence[str], raw: Path, dataset_json: dict,
                   plans_file: Path, validation_cases: Sequence[str], env: Dict[str, str], log: Path,
                   n_processes: int) -> Dict[int, float]:
    """{iterations: mean foreground Dice on the fold's validation cases} for every snapshot of the training (the
    final network's point is nnU-Net's own validation, fold_result). A snapshot is predicted with nnUNetv2_predict
    -chk (the trainer's mirroring, as the final validation) and evaluated with nnU-Net's evaluator, once:
    fold/curve/iteration_N/."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2, load_summary_json

    curve = {}
    inputs = None
    for iterations in snapshot_iterations(fold_folder):
        out = fold_folder / "curve" / f"iteration_{iterations}"
        if not (out / "summary.json").is_file():
            inputs = inputs or validation_inputs(raw, dataset_json, validation_cases, fold_folder / "curve" / "input")
            run_step(f"{title}: validating the snapshot after {iterations} iterations",
                     [*predict, "-i", str(inputs), "-o", str(out), "-f", str(fold), "-chk",
                      SNAPSHOT_FILE.format(iterations), "-npp", str(n_processes), "-nps", str(n_processes)], env, log)
            compute_metrics_on_folder2(str(raw / "labelsTr"), str(out), str(raw / "dataset.json"), str(plans_file),
                                       str(out / "summary.json"), num_processes=n_processes, chill=True)
        curve[iterations] = float(load_summary_json(str(out / "summary.json"))["foreground_mean"]["Dice"])
    return curve


def published_reference(dataset_name: str) -> Optional[dict]:
    for pattern, name, dice in PUBLISHED:
        if pattern.search(dataset_name):
            return {"dataset": name, "mean_dice": dice / 100,
                    "source": "nnU-Net (original), nnU-Net Revisited (MICCAI 2024), 5-fold CV, 1000 epochs"}
    return None


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


def reproduce(dataset_id: int, configuration: str, methods: Sequence[str], folds: Sequence[int], budget: str,
              device: str, env: Dict[str, str], out_folder: Optional[Path] = None,
              n_processes: Optional[int] = None, curve: bool = False) -> dict:
    """Run (or resume) the comparison; returns the report dict also written as results.json in out_folder."""
    if budget not in BUDGETS:
        raise ReproduceError(f"unknown budget '{budget}'; one of {', '.join(BUDGETS)}")
    if curve and budget not in SNAPSHOT_EPOCHS:
        raise ReproduceError(f"budget '{budget}' keeps no snapshots to draw a learning curve from; --curve needs one "
                             f"of {', '.join(SNAPSHOT_EPOCHS)}")
    folders = nnunet_folders(env)
    raw = raw_dataset_folder(folders["nnUNet_raw"], dataset_id)
    dataset_json = read_json(raw / "dataset.json")
    for key in methods:  # before any work: a method that cannot run on this dataset (Fuse4Seg on one channel)
        if METHODS[key].overlay is not None:
            try:
                check_input_channels(load_overlay(METHODS[key].overlay), raw / "dataset.json")
            except PlanningError as e:
                raise ReproduceError(str(e)) from e
    default_out = folders["nnUNet_results"] / raw.name / f"nnunet_fuse_reproduce_{configuration}_{budget}"
    out_folder = Path(out_folder or default_out)
    earlier = earlier_report(out_folder, raw.name, configuration, budget)  # before any work: refuse foreign files
    out_folder.mkdir(parents=True, exist_ok=True)
    log = out_folder / "reproduce_log.txt"
    n_processes = n_processes or int(env.get("nnUNet_def_n_proc", min(8, os.cpu_count() or 1)))

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
        ensure_patient_grouped_split(preprocessed / "splits_final.json", case_ids, folds)
    except SplitError as e:
        raise ReproduceError(str(e)) from e

    epochs, iterations, _ = BUDGETS[budget]
    rows = []
    for i, key in enumerate(methods, 1):
        method = METHODS[key]
        plans_name = method_plans(folders["nnUNet_preprocessed"], dataset_id, method.overlay, configuration)
        trainer = f"{method.trainer_prefix}_{budget}"
        training_folder = folders["nnUNet_results"] / raw.name / f"{trainer}__{plans_name}__{configuration}"
        per_fold = {}
        for fold in folds:
            fold_folder = training_folder / f"fold_{fold}"
            state = fold_state(fold_folder)
            title = f"[{i}/{len(methods)}] {method.label}, fold {fold}"
            command = [nnunet_command("nnUNetv2_train"), str(dataset_id), configuration, str(fold), "-tr", trainer,
                       "-p", plans_name, "-device", device]
            check_trained_on_split(fold_folder, fold, preprocessed / "splits_final.json")
            if state == "finished":
                print(f"\n=== {title}: finished earlier, not retrained ({fold_folder})", flush=True)
            else:
                (fold_folder / "validation" / "hd95.json").unlink(missing_ok=True)  # ours: recomputed after
                if state == "validate":
                    run_step(f"{title}: validation of the finished training", command + ["--val"], env, log)
                else:
                    what = "continuing from its latest checkpoint" if state == "continue" else "training"
                    run_step(f"{title}: {what} ({budget}: {epochs} epochs × {iterations} iterations)",
                             command + (["--c"] if state == "continue" else []), env, log)
            per_fold[fold] = fold_result(fold_folder, dataset_json)
            if curve:
                predict = [nnunet_command("nnUNetv2_predict"), "-d", str(dataset_id), "-c", configuration, "-tr",
                           trainer, "-p", plans_name, "-device", device]
                per_fold[fold]["curve"] = {**snapshot_curve(
                    title, fold_folder, fold, predict, raw, dataset_json, preprocessed / f"{plans_name}.json",
                    trained_validation_cases(preprocessed / "splits_final.json", fold), env, log, n_processes),
                    epochs * iterations: per_fold[fold]["mean_dice"]}
        params = count_parameters(preprocessed / f"{plans_name}.json", preprocessed / "dataset.json", configuration)
        rows.append(summarise(key, method.label, trainer, plans_name, per_fold, params,
                              batch_and_patch(preprocessed / f"{plans_name}.json", configuration)))

    if earlier is not None:
        rows = merge_rows(earlier["methods"], rows)
    report = {"written_by": WRITTEN_BY, "dataset": raw.name, "configuration": configuration, "budget": budget,
              "schedule": {"epochs": epochs, "iterations_per_epoch": iterations},
              "folds": sorted({int(f) for r in rows for f in r["per_fold"]}),
              "device": device, "date": time.strftime("%Y-%m-%d"), "methods": rows,
              "published": published_reference(raw.name)}
    write_report(report, out_folder)
    return report


WRITTEN_BY = "nnunet-fuse reproduce"
REPORT_FILES = ("results.json", "results.md", "results.png", "learning_curves.png")


def earlier_report(out_folder: Path, dataset: str, configuration: str, budget: str) -> Optional[dict]:
    """The report reproduce wrote earlier in out_folder for the same dataset, configuration and budget (merged into
    by this run), or None when there is none. ReproduceError when a report file there is not one of ours (the user's
    own results.md, say) or belongs to another comparison: nothing is replaced then."""
    present = [out_folder / f for f in REPORT_FILES if (out_folder / f).exists()]
    if not present:
        return None
    report = None
    try:
        report = json.loads((out_folder / "results.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    ours = isinstance(report, dict) and all(k in report for k in ("dataset", "configuration", "budget", "methods"))
    markdown = out_folder / "results.md"
    if ours and markdown.exists():
        ours = markdown.read_text(errors="replace").startswith(f"# {report['dataset']} {report['configuration']}, ")
    if not ours:
        raise ReproduceError(f"{', '.join(str(p) for p in present)} in {out_folder} were not written by nnunet-fuse "
                             f"reproduce; refusing to replace them. Choose another report folder with -o.")
    if (report["dataset"], report["configuration"], report["budget"]) != (dataset, configuration, budget):
        raise ReproduceError(f"{out_folder / 'results.json'} reports {report['dataset']} {report['configuration']} "
                             f"budget '{report['budget']}', not {dataset} {configuration} budget '{budget}'; choose "
                             f"another report folder with -o")
    return report


def merge_rows(earlier: List[dict], current: List[dict]) -> List[dict]:
    """The earlier report's rows with this run's methods replaced or appended (order: earlier first)."""
    by_method = {r["method"]: r for r in current}
    merged = [by_method.pop(r["method"], r) for r in earlier]
    return merged + [r for r in current if r["method"] in by_method]


def batch_and_patch(plans_file: Path, configuration: str) -> dict:
    """{"batch_size", "patch_size"} a method trains with (``nnunet-fuse plan`` budgets them per method)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(json.loads(plans_file.read_text())).get_configuration(configuration)
    return {"batch_size": int(cm.batch_size), "patch_size": [int(p) for p in cm.patch_size]}


def summarise(key: str, label: str, trainer: str, plans_name: str, per_fold: Dict[int, dict],
              params: Dict[str, int], batch_patch: dict) -> dict:
    """One table row: per-fold results averaged over folds."""
    folds = list(per_fold.values())
    names = list(folds[0]["dice"])

    def mean(values) -> Optional[float]:
        """Mean of the defined values (None where nothing is defined)."""
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    curves = [f["curve"] for f in folds if f.get("curve")]
    return {"method": key, "label": label, "trainer": trainer, "plans": plans_name, "folds": sorted(per_fold),
            "curve": curve_summary(curves) if len(curves) == len(folds) else None,
            "dice": {n: mean(f["dice"][n] for f in folds) for n in names},
            "hd95": {n: mean(f["hd95"][n] for f in folds) for n in names},
            **{field: mean(f[field] for f in folds)
               for field in ("mean_dice", "mean_hd95", "train_seconds", "peak_memory_mb")},
            "peak_memory_kind": folds[0]["peak_memory_kind"],
            "parameters": params, **batch_patch, "per_fold": {str(k): v for k, v in per_fold.items()}}


def curve_summary(curves: Sequence[Dict[int, float]]) -> List[dict]:
    """Per fold {iterations: Dice} → [{"iterations", "mean_dice", "sd" (over folds; None for one fold), "folds"}]
    at the iterations every fold has."""
    shared = sorted(set.intersection(*(set(int(i) for i in c) for c in curves)))
    points = []
    for iterations in shared:
        values = [c[iterations] for c in curves]
        points.append({"iterations": iterations, "mean_dice": float(np.mean(values)),
                       "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None, "folds": len(values)})
    return points


def curve_table(rows: List[dict]) -> str:
    """Validation Dice against iterations, mean ± sd over folds, and each method's difference from nnU-Net's network
    (else the first method), marked where it is larger than both methods' fold-to-fold spread."""
    rows = [r for r in rows if r.get("curve")]
    reference = next((r for r in rows if r["method"] == "nnunet"), rows[0])
    rows = [reference, *(r for r in rows if r is not reference)]
    by_iterations = [{p["iterations"]: p for p in r["curve"]} for r in rows]
    table = [["iterations", *[r["label"] for r in rows], *[f"{r['label']} − {reference['label']}" for r in rows[1:]]]]
    for iterations in sorted(set.union(*(set(points) for points in by_iterations))):
        points = [points.get(iterations) for points in by_iterations]
        cells = ["—" if p is None else f"{p['mean_dice']:.3f}" + ("" if p["sd"] is None else f" ± {p['sd']:.3f}")
                 for p in points]
        for p in points[1:]:
            if p is None or points[0] is None:
                cells.append("—")
                continue
            difference = p["mean_dice"] - points[0]["mean_dice"]
            if p["sd"] is None or points[0]["sd"] is None:
                verdict = "one fold: no spread"
            else:
                verdict = "beyond" if abs(difference) > max(p["sd"], points[0]["sd"]) else "within"
                verdict += " the fold spread"
            cells.append(f"{difference:+.3f} ({verdict})")
        table.append([str(iterations), *cells])
    return format_table(table)


def plot_curves(report: dict, png: Path) -> None:
    """Mean validation Dice against iterations per method, ± sd over folds shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in report["methods"]:
        if not r.get("curve"):
            continue
        x = np.array([p["iterations"] for p in r["curve"]])
        mean = np.array([p["mean_dice"] for p in r["curve"]])
        line, = ax.plot(x, mean, marker="o", label=r["label"])
        sd = np.array([np.nan if p["sd"] is None else p["sd"] for p in r["curve"]])
        if not np.isnan(sd).all():
            ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training iterations")
    ax.set_ylabel("validation mean Dice (foreground)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{report['dataset']} {report['configuration']}, folds {report['folds']}: mean ± sd over folds")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def report_table(report: dict) -> str:
    rows = report["methods"]
    names = list(rows[0]["dice"])
    header = ["method", "folds", *[f"Dice {n}" for n in names], "mean Dice", "HD95 mm", "params M", "batch", "patch",
              "train min", "peak memory MB"]
    table = [header]
    for r in rows:
        folds = r.get("folds") or sorted(int(f) for f in r["per_fold"])
        table.append([r["label"], ",".join(map(str, folds)), *[f"{r['dice'][n]:.3f}" for n in names],
                      f"{r['mean_dice']:.3f}",
                      "—" if r["mean_hd95"] is None else f"{r['mean_hd95']:.2f}",
                      f"{r['parameters']['total'] / 1e6:.2f}", str(r.get("batch_size", "—")),
                      " × ".join(map(str, r["patch_size"])) if r.get("patch_size") else "—",
                      "—" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:.1f}",
                      "—" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"])
    if report["published"]:
        p = report["published"]
        table.append([f"published: {p['source']}", "0-4", *["—"] * len(names), f"{p['mean_dice']:.4f}", *["—"] * 6])
    return format_table(table)


def write_report(report: dict, out_folder: Path) -> None:
    """results.json, results.md (table + how it was made), results.png; printed on the terminal too."""
    write_text_atomically(out_folder / "results.json", json.dumps(report, indent=2))
    kind = report["methods"][0]["peak_memory_kind"] or "not recorded"
    text = (f"# {report['dataset']} {report['configuration']}, budget '{report['budget']}' "
            f"({report['schedule']['epochs']} epochs × {report['schedule']['iterations_per_epoch']} iterations), "
            f"folds {report['folds']}, {report['device']}, {report['date']}\n\n{report_table(report)}\n\n"
            f"Dice: nnU-Net's evaluator on each fold's validation cases (nnUNetv2_train's final validation), mean "
            f"over the row's folds. HD95: mean over labels/regions of the mean over cases (nnunet_fuse.metrics; cases "
            f"where one mask is empty left out). Train: the training loop only. Peak memory: {kind}.\n")
    curves = any(r.get("curve") for r in report["methods"])
    if curves:
        text += (f"\n## Validation Dice against iterations\n\n{curve_table(report['methods'])}\n\nMean foreground Dice "
                 f"on each fold's validation cases of the training's snapshots (nnUNetv2_predict -chk, nnU-Net's "
                 f"evaluator) and of its final network, mean ± sd over the folds. A difference is beyond the fold "
                 f"spread when it is larger than both methods' sd over folds. Plot: learning_curves.png.\n")
    write_text_atomically(out_folder / "results.md", text)
    with replaced_atomically(out_folder / "results.png") as png:
        plot_report(report, png)
    if curves:
        with replaced_atomically(out_folder / "learning_curves.png") as png:
            plot_curves(report, png)
    print("\n" + text + f"\nwrote {out_folder / 'results.md'}, results.json, results.png"
          + (", learning_curves.png" if curves else ""), flush=True)


def plot_report(report: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["methods"]
    names = [*rows[0]["dice"], "mean"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    width = 0.8 / len(rows)
    for j, r in enumerate(rows):
        values = [*r["dice"].values(), r["mean_dice"]]
        axes[0].bar(np.arange(len(names)) + j * width, values, width, label=r["label"])
    if report["published"]:
        axes[0].axhline(report["published"]["mean_dice"], color="gray", ls="--", lw=1,
                        label="published nnU-Net mean (1000 epochs)")
    axes[0].set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("validation Dice")
    axes[0].legend(fontsize=8)
    labels = [r["label"] for r in rows]
    axes[1].bar(labels, [(r["train_seconds"] or 0) / 60 for r in rows], color="tab:gray")
    axes[1].set_title("training time (min)")
    axes[2].bar(labels, [r["parameters"]["total"] / 1e6 for r in rows], color="tab:gray")
    axes[2].set_title("parameters (M)")
    fig.suptitle(f"{report['dataset']} {report['configuration']}, budget {report['budget']}, folds {report['folds']}")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
