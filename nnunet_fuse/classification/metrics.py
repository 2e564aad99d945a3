"""Classification metrics from true labels and predicted class probabilities.

Conventions: confusion[i, j] counts cases of true class i predicted as j; precision of a class never predicted is 0
(as scikit-learn's zero_division=0); balanced accuracy is the mean recall over the classes present; macro-F1 is
scikit-learn's (the mean over the classes present in the references or the predictions); one-vs-rest AUC
is the Mann–Whitney statistic (ties count half), undefined (None) for a class with no positive or no negative case.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.metrics import f1_score


def confusion_matrix(true: Sequence[int], predicted: Sequence[int], n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int counts, rows true, columns predicted."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def one_vs_rest_auc(is_positive: np.ndarray, score: np.ndarray) -> Optional[float]:
    """Area under the ROC curve of ``score`` separating is_positive (bool, (N,)) from the rest; None if one side is
    empty."""
    positives, negatives = int(is_positive.sum()), int((~is_positive).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    start = 0
    while start < len(score):  # average ranks over ties
        end = start
        while end + 1 < len(score) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[is_positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(true: Sequence[int], probabilities: np.ndarray, classes: List[str]) -> Dict:
    """true: (N,) class indices; probabilities: (N, K) rows summing to 1. Returns accuracy, balanced_accuracy,
    macro_f1, macro_auc, per_class {name: precision, recall, f1, auc, support}, confusion (list of lists), n."""
    true = np.asarray(true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(true), len(classes)):
        raise ValueError(f"probabilities have shape {probabilities.shape}, need ({len(true)}, {len(classes)})")
    predicted = probabilities.argmax(1)
    confusion = confusion_matrix(true, predicted, len(classes))
    per_class = {}
    for k, name in enumerate(classes):
        tp, support, predicted_k = confusion[k, k], confusion[k].sum(), confusion[:, k].sum()
        precision = tp / predicted_k if predicted_k else 0.0
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall) if recall is not None and precision + recall > 0
              else (0.0 if recall is not None else None))
        per_class[name] = {"precision": float(precision), "recall": None if recall is None else float(recall),
                           "f1": None if f1 is None else float(f1),
                           "auc": one_vs_rest_auc(true == k, probabilities[:, k]), "support": int(support)}
    present = [m for m in per_class.values() if m["support"] > 0]
    aucs = [m["auc"] for m in present if m["auc"] is not None]
    return {"n": int(len(true)), "accuracy": float((predicted == true).mean()) if len(true) else None,
            "balanced_accuracy": float(np.mean([m["recall"] for m in present])) if present else None,
            "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)) if len(true) else None,
            "macro_auc": float(np.mean(aucs)) if aucs else None,
            "per_class": per_class, "confusion": confusion.tolist()}
