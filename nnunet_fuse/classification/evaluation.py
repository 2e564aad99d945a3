"""``nnunet-fuse classify evaluate``: the cross-validation report over a model's trained folds.

Reads each fold's ``validation.csv`` (the final network on that fold's held-out samples) and writes, like
``reproduce``: ``cv_report.md`` (per fold and mean ± sd: accuracy, balanced accuracy, macro-F1, macro AUC; pooled
per-class precision, recall, F1, AUC; confusion matrix), ``cv_metrics.json``, ``cv_per_case.csv`` and
``confusion_matrix.png``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from nnunet_fuse.atomic_files import replaced_atomically, write_csv_atomically, write_text_atomically
from nnunet_fuse.classification.metrics import classification_metrics
from nnunet_fuse.classification.training import ClassificationError
from nnunet_fuse.reporting import SPREAD_NOTE, format_table, mean_and_sd

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")


def _read_validation(path: Path, classes: List[str]) -> List[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [f"p_{c}" for c in classes]
    if rows and not set(["sample", "true", *columns]) <= set(rows[0]):
        raise ClassificationError(f"{path} lacks the columns sample, true, {', '.join(columns)}; train the fold "
                                  f"again (or --c to rewrite it)")
    return rows


def _plot_confusion(confusion: np.ndarray, classes: List[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for (i, j), value in np.ndenumerate(confusion):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > confusion.max() / 2 else "black")
    fig.tight_layout()
    with replaced_atomically(path) as temporary:
        fig.savefig(temporary, dpi=120)
    plt.close(fig)


def _number(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3f}"


def evaluate_cross_validation(model_folder: Path, output_folder: Optional[Path] = None,
                              log: Callable[[str], None] = print) -> Dict:
    from nnunet_fuse.input_check import read_json

    model_folder = Path(model_folder)
    output_folder = Path(output_folder) if output_folder else model_folder / "cv_report"
    classes = read_json(model_folder / "classes.json")["classes"] if (model_folder / "classes.json").is_file() \
        else None
    files = sorted(model_folder.glob("fold_*/validation.csv"))
    files = [f for f in files if f.parent.name != "fold_all"]
    if classes is None or not files:
        raise ClassificationError(f"no trained fold with a validation.csv in {model_folder}; train folds first "
                                  f"(nnunet-fuse classify train -d ... -f 0 1 2 3 4)")
    folds, pooled_rows, seen = {}, [], {}
    for path in files:
        fold = path.parent.name[len("fold_"):]
        rows = _read_validation(path, classes)
        for row in rows:
            if row["sample"] in seen:
                raise ClassificationError(f"sample {row['sample']} is held out in both fold {seen[row['sample']]} "
                                          f"and fold {fold}: the folds were trained on different splits; retrain "
                                          f"them on one splits_final.json")
            seen[row["sample"]] = fold
            row["fold"] = fold
        true = [classes.index(r["true"]) for r in rows]
        probabilities = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
        folds[fold] = classification_metrics(true, probabilities, classes)
        pooled_rows += rows
    true = [classes.index(r["true"]) for r in pooled_rows]
    probabilities = np.array([[float(r[f"p_{c}"]) for c in classes] for r in pooled_rows])
    pooled = classification_metrics(true, probabilities, classes)
    summary = {k: dict(zip(("mean", "sd"), mean_and_sd([m[k] for m in folds.values() if m[k] is not None])))
               for k in SUMMARY_KEYS if any(m[k] is not None for m in folds.values())}
    result = {"model": str(model_folder), "classes": classes, "folds": folds, "mean_over_folds": summary,
              "pooled": pooled}
    output_folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output_folder / "cv_metrics.json", json.dumps(result, indent=2))
    write_csv_atomically(output_folder / "cv_per_case.csv",
                         [["fold", "sample", "cases", "true", "predicted", *(f"p_{c}" for c in classes)]]
                         + [[r["fold"], r["sample"], r.get("cases", ""), r["true"], r["predicted"],
                             *(r[f"p_{c}"] for c in classes)] for r in pooled_rows])
    fold_table = [["fold", "samples", "accuracy", "balanced accuracy", "macro-F1", "macro AUC"]]
    fold_table += [[f, str(m["n"]), *(_number(m[k]) for k in SUMMARY_KEYS)] for f, m in folds.items()]
    fold_table.append(["mean ± sd", str(pooled["n"]), *("–" if k not in summary else f"{summary[k]['mean']:.3f}" + (
        "" if summary[k]["sd"] is None else f" ± {summary[k]['sd']:.3f}") for k in SUMMARY_KEYS)])
    class_table = [["class", "support", "precision", "recall", "F1", "AUC (one vs rest)"]]
    class_table += [[c, str(m["support"]), _number(m["precision"]), _number(m["recall"]), _number(m["f1"]),
                     _number(m["auc"])] for c, m in pooled["per_class"].items()]
    confusion_table = [["true \\ predicted", *classes]]
    confusion_table += [[c, *map(str, row)] for c, row in zip(classes, pooled["confusion"])]
    chance = 1 / len(classes)
    report = (f"# Cross-validation of {model_folder.name} ({model_folder.parent.name})\n\n"
              f"{len(folds)} fold(s), {pooled['n']} held-out samples; chance accuracy {chance:.2f} "
              f"(balanced). Each fold's final model on its held-out samples; {SPREAD_NOTE}; macro-F1 over the "
              f"classes a fold has in its references or its predictions (scikit-learn's f1_score).\n\n"
              f"{format_table(fold_table)}\n\n"
              f"## Per class (all folds pooled: accuracy {pooled['accuracy']:.3f}, balanced "
              f"{pooled['balanced_accuracy']:.3f}, macro-F1 {pooled['macro_f1']:.3f})\n\n{format_table(class_table)}"
              f"\n\n## Confusion matrix (pooled)\n\n{format_table(confusion_table)}\n\n![confusion matrix]"
              f"(confusion_matrix.png)\n")
    write_text_atomically(output_folder / "cv_report.md", report)
    _plot_confusion(np.array(pooled["confusion"]), classes, output_folder / "confusion_matrix.png",
                    f"{model_folder.parent.name} {model_folder.name}\n{len(folds)} folds, pooled")
    log(report)
    log(f"wrote {output_folder}/cv_report.md, cv_metrics.json, cv_per_case.csv, confusion_matrix.png")
    return result
