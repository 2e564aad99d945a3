"""A classifier of tabular features (shape_features of segmentations), chosen among standard scikit-learn models.

``select_model`` picks, by cross-validation on the training samples alone (stratified folds), the model and its
settings among CANDIDATES: logistic regression, a random forest and gradient-boosted trees, each behind
standard scaling, all single-threaded (tens to hundreds of samples: threads cost more than they save and starve a
training running beside); evaluated on outer folds the training never saw, this is nested cross-validation. The chosen
pipeline is refitted on all training samples; ``importances`` says which features it used (permutation importance
on the training samples).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

CANDIDATES = {  # name: (estimator factory, grid of its settings)
    "logistic regression": ("sklearn.linear_model.LogisticRegression", {"C": [0.1, 1.0, 10.0]},
                            {"max_iter": 5000}),
    "random forest": ("sklearn.ensemble.RandomForestClassifier", {"max_depth": [None, 4]},
                      {"n_estimators": 300, "random_state": 0}),
    "gradient boosting": ("sklearn.ensemble.GradientBoostingClassifier", {"max_depth": [1, 3]},
                          {"n_estimators": 100, "random_state": 0}),
}


@dataclass
class ChosenModel:
    name: str             # key of CANDIDATES
    settings: dict        # the grid point chosen
    inner_score: float    # mean balanced accuracy over the inner folds
    pipeline: object      # fitted sklearn Pipeline (scaler + estimator)
    feature_names: List[str]


def _estimator(path: str, fixed: dict):
    import importlib

    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**fixed)


def select_model(features: np.ndarray, labels: Sequence[str], feature_names: Sequence[str],
                 inner_folds: int = 5, seed: int = 0) -> ChosenModel:
    """The candidate and settings with the best mean balanced accuracy over stratified inner folds of these training
    samples, refitted on all of them. features: (samples, features); labels: one class name per sample."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _select_model(features, labels, feature_names, inner_folds, seed)


def _select_model(features, labels, feature_names, inner_folds, seed) -> ChosenModel:
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    smallest = min(np.unique(labels, return_counts=True)[1])
    folds = StratifiedKFold(n_splits=max(2, min(inner_folds, smallest)), shuffle=True, random_state=seed)
    best = None
    for name, (path, grid, fixed) in CANDIDATES.items():
        pipeline = Pipeline([("scale", StandardScaler()), ("model", _estimator(path, fixed))])
        search = GridSearchCV(pipeline, {f"model__{k}": v for k, v in grid.items()}, scoring="balanced_accuracy",
                              cv=folds, refit=True)
        search.fit(features, labels)
        if best is None or search.best_score_ > best.inner_score:
            settings = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
            best = ChosenModel(name, settings, float(search.best_score_), search.best_estimator_, list(feature_names))
    return best


def importances(model: ChosenModel, features: np.ndarray, labels: Sequence[str], top: int = 15,
                seed: int = 0) -> Dict[str, float]:
    """{feature: mean drop of balanced accuracy when it is shuffled} of the most important ``top`` features."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model.pipeline, features, np.asarray(labels), scoring="balanced_accuracy",
                                    n_repeats=5, random_state=seed)
    order = np.argsort(-result.importances_mean)[:top]
    return {model.feature_names[i]: float(result.importances_mean[i]) for i in order}
