"""The report of a comparison: per fold nnU-Net's validation Dice, HD95 beside it, the training record and (with
--curve) the snapshots' Dice; per method the mean over folds, parameters, batch and patch; a table (results.md),
results.json, results.png, and learning_curves.png with --curve. A report merges with the earlier one of the same
comparison in its folder, and files there that reproduce did not write are never replaced.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_fuse.atomic_files import replaced_atomically, write_text_atomically
from nnunet_fuse.budgets import BUDGETS, RECORD_FILE
from nnunet_fuse.plans_network import count_parameters
from nnunet_fuse.reporting import SPREAD_NOTE, format_table, mean_and_sd
from nnunet_fuse.reproduce.runs import ReproduceError, Training, method_of, snapshot_folder, snapshot_iterations

# nnU-Net (original) in "nnU-Net Revisited" (MICCAI 2024), 5-fold cross-validation mean Dice (%), 1000 epochs
PUBLISHED = [(re.compile(r"ACDC", re.I), "ACDC", 91.54), (re.compile(r"KiTS(20)?23", re.I), "KiTS23", 86.04),
             (re.compile(r"BraTS(20)?21", re.I), "BraTS21", 91.24)]


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


def snapshot_curve(training: Training, final_dice: float) -> Dict[int, float]:
    """{iterations: mean foreground Dice on the fold's validation cases} of the training's validated snapshots
    (runs.validate_snapshots) and its final network (``final_dice``: nnU-Net's own validation, from fold_result)."""
    from nnunetv2.evaluation.evaluate_predictions import load_summary_json

    curve = {}
    for iterations in snapshot_iterations(training.folder):
        summary = load_summary_json(str(snapshot_folder(training.folder, iterations) / "summary.json"))
        curve[iterations] = float(summary["foreground_mean"]["Dice"])
    epochs, iterations, _ = BUDGETS[training.budget]
    curve[epochs * iterations] = final_dice
    return curve


def comparison_report(trainings: Sequence[Training], device: str, earlier: Optional[dict]) -> dict:
    """The report of finished trainings (one row per method, in their order), merged into ``earlier``. Batch, patch
    and parameters come from the plans each training wrote beside its folds (what it was trained with)."""
    first = trainings[0]
    dataset_json = json.loads((first.raw / "dataset.json").read_text())
    rows = []
    for method in dict.fromkeys(t.method for t in trainings):
        own = [t for t in trainings if t.method == method]
        per_fold = {}
        for t in own:
            per_fold[t.fold] = fold_result(t.folder, dataset_json)
            if t.curve:
                per_fold[t.fold]["curve"] = snapshot_curve(t, per_fold[t.fold]["mean_dice"])
        plans_file = own[0].folder.parent / "plans.json"
        params = count_parameters(plans_file, own[0].folder.parent / "dataset.json", first.configuration,
                                  method_of(method).trainer_name)
        rows.append(summarise(method, method_of(method).label, own[0].trainer, own[0].plans_name, per_fold, params,
                              batch_and_patch(plans_file, first.configuration)))
    if earlier is not None:
        rows = merge_rows(earlier["methods"], rows)
    epochs, iterations, _ = BUDGETS[first.budget]
    return {"written_by": WRITTEN_BY, "dataset": first.raw.name, "configuration": first.configuration,
            "budget": first.budget, "schedule": {"epochs": epochs, "iterations_per_epoch": iterations},
            "folds": sorted({int(f) for r in rows for f in r["per_fold"]}),
            "device": device, "date": time.strftime("%Y-%m-%d"), "methods": rows,
            "published": published_reference(first.raw.name)}


def published_reference(dataset_name: str) -> Optional[dict]:
    for pattern, name, dice in PUBLISHED:
        if pattern.search(dataset_name):
            return {"dataset": name, "mean_dice": dice / 100,
                    "source": "nnU-Net (original), nnU-Net Revisited (MICCAI 2024), 5-fold CV, 1000 epochs"}
    return None


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
    """The earlier report's rows with this run's methods merged in or appended (order: earlier first). A method in
    both keeps the earlier run's folds that this run did not train (folds run on different days or machines gather
    in one report) when both were trained alike (trainer, plans, batch, patch, parameters); otherwise this run's row
    replaces the earlier one, and the dropped folds are named."""
    by_method = {r["method"]: r for r in current}
    merged = [merge_folds(r, by_method.pop(r["method"])) if r["method"] in by_method else r for r in earlier]
    return merged + [r for r in current if r["method"] in by_method]


SAME_TRAINING = ("trainer", "plans", "batch_size", "patch_size", "parameters")


def merge_folds(earlier: dict, current: dict) -> dict:
    """current's row with the folds only ``earlier`` has (see merge_rows), re-averaged."""
    trained_now = {int(f) for f in current["per_fold"]}
    kept = {int(f): fold_from_json(result) for f, result in earlier["per_fold"].items() if int(f) not in trained_now}
    if not kept:
        return current
    differing = [field for field in SAME_TRAINING if earlier.get(field) != current.get(field)]
    if differing:
        print(f"{current['label']}: the earlier report's fold(s) {', '.join(map(str, sorted(kept)))} were trained with "
              f"another {', '.join(differing)}; they are left out of the report", flush=True)
        return current
    per_fold = dict(sorted({**kept, **{int(f): result for f, result in current["per_fold"].items()}}.items()))
    return summarise(current["method"], current["label"], current["trainer"], current["plans"], per_fold,
                     current["parameters"], {k: current[k] for k in ("batch_size", "patch_size")})


def fold_from_json(result: dict) -> dict:
    """A fold's result as read back from results.json, its curve keyed by int iterations again."""
    if not result.get("curve"):
        return result
    return {**result, "curve": {int(i): dice for i, dice in result["curve"].items()}}


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
        mean, sd = mean_and_sd(values)
        points.append({"iterations": iterations, "mean_dice": mean, "sd": sd, "folds": len(values)})
    return points


def curve_table(rows: List[dict], folds: Sequence[int]) -> str:
    """Validation Dice against iterations, mean ± sd over folds, and each method's difference from nnU-Net's network
    (else the first method) on the method's folds, marked where it is larger than both methods' fold-to-fold spread;
    ``folds``: the report's (a method on fewer is labelled so)."""
    rows = [r for r in rows if r.get("curve")]
    reference = reference_row(rows)
    rows = [reference, *(r for r in rows if r is not reference)]
    by_iterations = [{p["iterations"]: p for p in r["curve"]} for r in rows]
    table = [["iterations", *[curve_label(r, folds) for r in rows],
              *[f"{r['label']} − {reference['label']}" for r in rows[1:]]]]
    for iterations in sorted(set.union(*(set(points) for points in by_iterations))):
        points = [points.get(iterations) for points in by_iterations]
        cells = ["—" if p is None else f"{p['mean_dice']:.3f}" + ("" if p["sd"] is None else f" ± {p['sd']:.3f}")
                 for p in points]
        cells += ["—" if p is None else
                  difference_on_same_folds(row, reference, lambda fold: curve_point(fold, iterations))
                  for row, p in zip(rows[1:], points[1:])]
        table.append([str(iterations), *cells])
    return format_table(table)


def curve_point(fold_result: dict, iterations: int) -> Optional[float]:
    """One fold's validation Dice at a snapshot (None where it has none); keys are ints, or strings once read back
    from results.json."""
    curve = fold_result.get("curve") or {}
    return curve.get(iterations, curve.get(str(iterations)))


def difference_on_same_folds(row: dict, reference: dict, value: Callable[[dict], Optional[float]]) -> str:
    """row − reference on the row's folds (value(per-fold result) → Dice), marked against both sds over those folds;
    'other folds' where the reference lacks one of them."""
    folds = sorted(row["per_fold"])
    ours = [value(row["per_fold"][f]) for f in folds]
    theirs = [value(reference["per_fold"][f]) if f in reference["per_fold"] else None for f in folds]
    if None in ours or None in theirs:
        return "other folds"
    return difference_cell(*mean_and_sd(ours), *mean_and_sd(theirs))


def difference_cell(value: float, sd: Optional[float], reference: float, reference_sd: Optional[float]) -> str:
    """'+0.012 (beyond the fold spread)': value − reference, beyond when larger than both sds over folds."""
    if sd is None or reference_sd is None:
        verdict = "one fold: no spread"
    else:
        verdict = ("beyond" if abs(value - reference) > max(sd, reference_sd) else "within") + " the fold spread"
    return f"{value - reference:+.3f} ({verdict})"


def reference_row(rows: List[dict]) -> dict:
    """The row the others are compared with: nnU-Net's network where the report has it, else the first."""
    return next((r for r in rows if r["method"] == "nnunet"), rows[0])


def plot_curves(report: dict, png: Path) -> None:
    """Mean validation Dice against iterations per method, ± sd over folds shaded: on the whole 0-1 scale (left) and
    zoomed on the later half of the iterations (right), where differences of 0.01 decide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["methods"] if r.get("curve")]
    last = max(p["iterations"] for r in rows for p in r["curve"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    zoomed = []
    for r in rows:
        x = np.array([p["iterations"] for p in r["curve"]])
        mean = np.array([p["mean_dice"] for p in r["curve"]])
        sd = np.nan_to_num(np.array([np.nan if p["sd"] is None else p["sd"] for p in r["curve"]], dtype=float))
        late = x >= last / 2
        zoomed += [*(mean - sd)[late], *(mean + sd)[late]]
        for ax, keep in zip(axes, (np.ones_like(late), late)):
            line, = ax.plot(x[keep], mean[keep], marker="o", label=curve_label(r, report["folds"]))
            ax.fill_between(x[keep], (mean - sd)[keep], (mean + sd)[keep], color=line.get_color(), alpha=0.2)
    margin = max(0.005, 0.1 * (max(zoomed) - min(zoomed)))
    axes[0].set_ylim(0, 1)
    axes[1].set_ylim(max(0.0, min(zoomed) - margin), min(1.0, max(zoomed) + margin))
    axes[1].set_title(f"zoomed: from {last // 2} iterations on")
    for ax in axes:
        ax.set_xlabel("training iterations")
        ax.set_ylabel("validation mean Dice (foreground)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[0].set_title(f"{report['dataset']} {report['configuration']}, folds {report['folds']}: mean ± sd over folds")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def curve_label(row: dict, folds: Sequence[int]) -> str:
    """A plotted method's name, with its folds where it has fewer than the report (its mean is over those only)."""
    own = sorted(int(f) for f in row["per_fold"])
    if own == sorted(folds):
        return row["label"]
    return f"{row['label']} ({'folds' if len(own) > 1 else 'fold'} {', '.join(map(str, own))} only)"


def report_table(report: dict) -> str:
    """One row per method: mean over its folds (mean Dice ± sd over folds) and, beside it, its difference from
    nnU-Net's network (else the first method) on the row's folds, marked beyond or within the fold spread."""
    rows = report["methods"]
    names = list(rows[0]["dice"])
    reference = reference_row(rows)
    header = ["method", "folds", *[f"Dice {n}" for n in names], "mean Dice", f"− {reference['label']}", "HD95 mm",
              "params M", "batch", "patch", "train min", "peak memory MB"]
    table = [header]
    for r in rows:
        folds = r.get("folds") or sorted(int(f) for f in r["per_fold"])
        mean, sd = fold_spread(r)
        difference = "—" if r is reference else difference_on_same_folds(r, reference, lambda f: f["mean_dice"])
        table.append([r["label"], ",".join(map(str, folds)), *[f"{r['dice'][n]:.3f}" for n in names],
                      f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}"), difference,
                      "—" if r["mean_hd95"] is None else f"{r['mean_hd95']:.2f}",
                      f"{r['parameters']['total'] / 1e6:.2f}", str(r.get("batch_size", "—")),
                      " × ".join(map(str, r["patch_size"])) if r.get("patch_size") else "—",
                      "—" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:.1f}",
                      "—" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"])
    if report["published"]:
        p = report["published"]
        table.append([f"published: {p['source']}", "0-4", *["—"] * len(names), f"{p['mean_dice']:.4f}", *["—"] * 7])
    return format_table(table)


def fold_spread(row: dict) -> Tuple[float, Optional[float]]:
    """A row's mean Dice and its sd over the row's folds (None for one fold)."""
    return mean_and_sd([f["mean_dice"] for f in row["per_fold"].values()])


def write_report(report: dict, out_folder: Path) -> None:
    """results.json, results.md (table + how it was made), results.png; printed on the terminal too."""
    write_text_atomically(out_folder / "results.json", json.dumps(report, indent=2))
    kind = report["methods"][0]["peak_memory_kind"] or "not recorded"
    text = (f"# {report['dataset']} {report['configuration']}, budget '{report['budget']}' "
            f"({report['schedule']['epochs']} epochs × {report['schedule']['iterations_per_epoch']} iterations), "
            f"folds {report['folds']}, {report['device']}, {report['date']}\n\n{report_table(report)}\n\n"
            f"Dice: nnU-Net's evaluator on each fold's validation cases (nnUNetv2_train's final validation), mean "
            f"over the row's folds (± {SPREAD_NOTE}); the difference from "
            f"{reference_row(report['methods'])['label']} on the row's folds is beyond the fold spread when it is "
            f"larger than both rows' sd. HD95: mean over labels/regions of the mean over cases (nnunet_fuse.metrics; "
            f"cases where one mask is empty left out). Train: the training loop only. Peak memory: {kind}.\n")
    curves = any(r.get("curve") for r in report["methods"])
    if curves:
        text += (f"\n## Validation Dice against iterations\n\n{curve_table(report['methods'], report['folds'])}"
                 f"\n\nMean foreground Dice on each fold's validation cases of the training's snapshots "
                 f"(nnUNetv2_predict -chk, nnU-Net's evaluator) and of its final network, mean ± sd over the folds "
                 f"({SPREAD_NOTE}). Each difference is taken on the method's own folds, beyond the fold spread when "
                 f"larger than both methods' sd over them. Plot: learning_curves.png.\n")
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
