"""Classification from segmentations: each sample's shape features (shape_features.py) from a label map per case,
and a scikit-learn classifier chosen per fold (tabular.py).

Label maps come from a folder of ``CASE<file_ending>`` files: the dataset's references (``labelsTr``: the upper
bound), or segmentations predicted by a model that never trained on the case (nnU-Net's validation folders of a
cross-validation: the honest number). A fold writes ``validation.csv`` like the HiFuse classifier's folds, so
``classify evaluate`` reports both the same way, and ``model.joblib`` with ``features.json`` (the features, the model
chosen and what it relied on).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunet_fuse.atomic_files import replaced_atomically, write_text_atomically
from nnunet_fuse.classification.samples import Sample
from nnunet_fuse.classification.shape_features import label_measurements, sample_features
from nnunet_fuse.input_check import InputError, read_image


def label_map_files(case_ids: Sequence[str], folder: Path, file_ending: str) -> Dict[str, Path]:
    """{case: its label map in folder}; InputError naming the cases without one."""
    files = {case: Path(folder) / f"{case}{file_ending}" for case in case_ids}
    missing = sorted(case for case, f in files.items() if not f.is_file())
    if missing:
        raise InputError(f"{len(missing)} case(s) have no segmentation in {folder}: {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}; give a folder with CASE{file_ending} for every case")
    return files


def case_measurements(path: Path, labels: Mapping[str, int]) -> Dict[str, float]:
    """label_measurements of one label map file; InputError for label values the dataset does not have."""
    import SimpleITK as sitk

    image = read_image(path)
    array = sitk.GetArrayViewFromImage(image)
    unknown = sorted(set(np.unique(array).tolist()) - {int(v) for v in labels.values()})
    if unknown:
        raise InputError(f"{path} has label values {unknown} that the dataset's labels {dict(labels)} do not have; "
                         f"give segmentations made for this dataset")
    return label_measurements(np.asarray(array), image.GetSpacing()[::-1], labels)


def feature_table(samples: Sequence[Sample], files: Mapping[str, Path], labels: Mapping[str, int],
                  body: Optional[Mapping[str, Tuple[float, float]]] = None) -> Tuple[List[str], np.ndarray]:
    """(feature names, (samples, features)) from each sample's frames; body: {sample: (height cm, weight kg)}."""
    rows = []
    for sample in samples:
        frames = [case_measurements(files[case], labels) for case in sample.cases]
        height, weight = (body or {}).get(sample.id, (None, None))
        rows.append(sample_features(frames, labels, height, weight))
    names = sorted(rows[0]) if rows else []
    odd = [s.id for s, r in zip(samples, rows) if sorted(r) != names]
    if odd:
        raise InputError(f"samples {', '.join(odd[:5])} give other features than {samples[0].id} (height and weight "
                         f"known for some samples only?)")
    return names, np.array([[r[n] for n in names] for r in rows], dtype=float)


def train_fold(fold_folder: Path, names: List[str], train_x: np.ndarray, train_y: Sequence[str],
               val_samples: Sequence[Sample], val_x: np.ndarray, val_y: Sequence[str], classes: List[str]) -> dict:
    """Choose and fit the classifier on the training samples, predict the held-out ones: fold_folder/validation.csv,
    model.joblib, features.json. Returns the fold's metrics."""
    import joblib

    from nnunet_fuse.classification.metrics import classification_metrics
    from nnunet_fuse.classification.tabular import importances, select_model
    from nnunet_fuse.classification.training import write_predictions_csv

    fold_folder.mkdir(parents=True, exist_ok=True)
    model = select_model(train_x, train_y, names)
    order = [list(model.pipeline.classes_).index(c) if c in model.pipeline.classes_ else None for c in classes]
    raw = model.pipeline.predict_proba(val_x)
    probabilities = np.array([[raw[i, j] if j is not None else 0.0 for j in order] for i in range(len(val_x))])
    true = [classes.index(c) for c in val_y]
    write_predictions_csv(fold_folder / "validation.csv", val_samples, probabilities, classes, true)
    with replaced_atomically(fold_folder / "model.joblib") as temporary:
        joblib.dump(model.pipeline, temporary)
    write_text_atomically(fold_folder / "features.json", json.dumps(
        {"model": model.name, "settings": model.settings, "inner_balanced_accuracy": model.inner_score,
         "features": names, "importance": importances(model, train_x, train_y)}, indent=2))
    return classification_metrics(true, probabilities, classes)
