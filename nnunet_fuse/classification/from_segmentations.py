"""Classification from segmentations (``nnunet-fuse classify ... --features shape``): each sample's shape features
(shape_features.py) from a label map per case, and a scikit-learn classifier chosen per fold (tabular.py).

Model folder: ``nnUNet_results/DatasetXXX/ShapeClassifier__SOURCE`` with the dataset's ``classes.json`` and
``shape_classifier.json`` (labels, frames per sample, whether height and weight are used), and per fold
``model.joblib``, ``features.json`` (the features, the model chosen and what it relied on) and ``validation.csv``
(like the HiFuse classifier's folds, so ``classify evaluate`` reports both the same way).

Every fold's classifier learns from the reference label maps (``labelsTr``) of its training patients. Its held-out
patients are classified from the label maps of SOURCE: the references (``labelsTr``: the upper bound), a folder of
label maps, or a trained nnU-Net model folder, whose fold k's ``validation/`` holds what fold k's segmentation model
predicted for the cases it never trained on (the honest number: requiring every held-out case there is what
guarantees that). Height and weight (``body_sizes.json`` beside the raw dataset, written by ``convert acdc`` from
Info.cfg) add the body surface area and indexed volumes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_fuse.atomic_files import replaced_atomically, write_text_atomically
from nnunet_fuse.classification.samples import Sample, group_samples, samples_of_frames
from nnunet_fuse.classification.shape_features import label_measurements, sample_features
from nnunet_fuse.datasets.body_sizes import BODY_SIZES_FILE, BodySizes, read_body_sizes
from nnunet_fuse.datasets.classes import CLASSES_FILE, read_classes
from nnunet_fuse.input_check import InputError, read_image, read_image_header, read_json

SHAPE_CLASSIFIER = "ShapeClassifier"
SETTINGS_FILE = "shape_classifier.json"
REFERENCES = "labelsTr"


def shape_model_folder(results: Path, dataset_name: str, source: Optional[Path]) -> Path:
    """nnUNet_results/DatasetXXX/ShapeClassifier__SOURCE (labelsTr, or the source folder's name)."""
    return Path(results) / dataset_name / f"{SHAPE_CLASSIFIER}__{REFERENCES if source is None else Path(source).name}"


def label_map_files(case_ids: Sequence[str], folder: Path, file_ending: str) -> Dict[str, Path]:
    """{case: its label map in folder}; InputError naming the cases without one."""
    files = {case: Path(folder) / f"{case}{file_ending}" for case in case_ids}
    missing = sorted(case for case, f in files.items() if not f.is_file())
    if missing:
        raise InputError(f"{len(missing)} case(s) have no segmentation in {folder}: {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}; give a folder with CASE{file_ending} for every case")
    return files


def check_same_grid(label_map: Path, image: Path) -> None:
    """InputError unless the label map has its image's size, spacing, origin and direction (headers only)."""
    a, b = read_image_header(label_map), read_image_header(image)
    for what, get in (("size", "GetSize"), ("spacing", "GetSpacing"), ("origin", "GetOrigin"),
                      ("direction", "GetDirection")):
        va, vb = getattr(a, get)(), getattr(b, get)()
        if len(va) != len(vb) or not np.allclose(va, vb, rtol=1e-4, atol=1e-3):
            raise InputError(f"{label_map} is on another grid than its image {image} ({what} {tuple(va)} vs "
                             f"{tuple(vb)}); give segmentations in the images' geometry (as nnUNetv2_predict "
                             f"writes them)")


def check_grids(files: Mapping[str, Path], images: Path, file_ending: str) -> None:
    """check_same_grid of every case's label map against its scan images/CASE_0000<file_ending>."""
    for case, path in files.items():
        check_same_grid(path, images / f"{case}_0000{file_ending}")


def case_measurements(path: Path, labels: Mapping[str, int]) -> Dict[str, float]:
    """label_measurements of one label map file; InputError for label values the dataset does not have."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's notes on ACDC's sform scales, twice per file
    try:
        image = read_image(path)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    array = sitk.GetArrayViewFromImage(image)
    unknown = sorted(set(np.unique(array).tolist()) - {int(v) for v in labels.values()})
    if unknown:
        raise InputError(f"{path} has label values {unknown} that the training's labels {dict(labels)} do not "
                         f"have; give segmentations made for this dataset")
    return label_measurements(np.asarray(array), image.GetSpacing()[::-1], labels)


_MEASURED: Dict[tuple, Dict[str, float]] = {}


def measured(path: Path, labels: Mapping[str, int]) -> Dict[str, float]:
    """case_measurements, once per file and labels (a cross-validation reads each reference five times)."""
    stat = Path(path).stat()
    key = (Path(path).resolve(), stat.st_mtime_ns, stat.st_size, tuple(sorted(labels.items())))
    if key not in _MEASURED:
        _MEASURED[key] = case_measurements(path, labels)
    return _MEASURED[key]


def feature_table(samples: Sequence[Sample], files: Mapping[str, Path], labels: Mapping[str, int],
                  body: Optional[BodySizes] = None) -> Tuple[List[str], np.ndarray]:
    """(feature names, (samples, features)) from each sample's frames; body: every sample's height and weight."""
    if body is not None:
        missing = [s.id for s in samples if s.id not in body]
        if missing:
            raise InputError(f"no height and weight for {', '.join(missing[:5])}: give them for every sample "
                             f"({BODY_SIZES_FILE}) or for none")
    rows = []
    for sample in samples:
        frames = [measured(files[case], labels) for case in sample.cases]
        height, weight = (body or {}).get(sample.id, (None, None))
        rows.append(sample_features(frames, labels, height, weight))
    names = sorted(rows[0]) if rows else []
    return names, np.array([[r[n] for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))


def _class_probabilities(pipeline, features: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """(samples, classes) in the order of ``classes`` (0 for a class the fold's training never saw)."""
    raw = pipeline.predict_proba(features)
    known = list(pipeline.classes_)
    return np.stack([raw[:, known.index(c)] if c in known else np.zeros(len(features)) for c in classes], axis=1)


def validation_folder(source: Optional[Path], raw_dataset: Path, fold: Union[int, str]) -> Path:
    """Where fold's held-out label maps are: labelsTr, SOURCE/fold_k/validation of a trained model, or SOURCE."""
    if source is None:
        return Path(raw_dataset) / REFERENCES
    source = Path(source)
    if not source.is_dir():
        raise InputError(f"--segmentations {source} is not a folder; give a folder of label maps or a trained "
                         f"nnU-Net model folder (nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION)")
    if any(source.glob("fold_*")):
        folder = source / f"fold_{fold}" / "validation"
        if not folder.is_dir():
            raise InputError(f"{source} has no fold_{fold}/validation: train and validate fold {fold} of that model "
                             f"(nnUNetv2_train ... {fold}) on the same splits_final.json")
        return folder
    return source


def prepare_shape_model_folder(folder: Path, settings: dict, classes_file: Path) -> None:
    """Write SETTINGS_FILE and a copy of the dataset's classes.json (what evaluation and prediction read); refuse a
    folder whose folds were trained with other classes, labels or inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in ((SETTINGS_FILE, settings), (CLASSES_FILE, read_json(classes_file))):
        target = folder / name
        if target.is_file() and read_json(target) != content:
            raise InputError(f"{target} differs from this training's classes, labels or inputs: the folds in "
                             f"{folder} were trained on other data; move that folder away to train anew")
        if not target.is_file():
            write_text_atomically(target, json.dumps(content, indent=2))


def train_shape_classifier(raw_dataset: Path, splits_folder: Path, model_folder: Path, folds: Sequence,
                           source: Optional[Path] = None, log: Callable[[str], None] = print) -> Dict:
    """Train and validate ``folds`` (numbers or 'all') of a shape classifier: {fold: metrics} (none for 'all').
    raw_dataset: nnUNet_raw/DatasetXXX (dataset.json, labelsTr, imagesTr, classes.json, optional body_sizes.json);
    splits_folder: where splits_final.json is (the preprocessed dataset, as for nnU-Net's trainer)."""
    import joblib

    from nnunet_fuse.classification.metrics import classification_metrics
    from nnunet_fuse.classification.tabular import importances, select_model
    from nnunet_fuse.classification.training import fold_split, write_predictions_csv

    raw_dataset = Path(raw_dataset)
    dataset_json = read_json(raw_dataset / "dataset.json")
    labels, ending = {str(k): int(v) for k, v in dataset_json["labels"].items()}, dataset_json["file_ending"]
    cases = sorted(f.name[:-len(ending)] for f in (raw_dataset / REFERENCES).glob(f"*{ending}"))
    classes, case_class = read_classes(raw_dataset, cases)
    samples = {s.id: s for s in group_samples(cases)}
    body = read_body_sizes(raw_dataset / BODY_SIZES_FILE) if (raw_dataset / BODY_SIZES_FILE).is_file() else None
    frames = len(next(iter(samples.values())).cases)
    prepare_shape_model_folder(model_folder, {"labels": labels, "file_ending": ending, "frames_per_sample": frames,
                                              "body_sizes": body is not None,
                                              "source": str(source) if source else REFERENCES},
                               raw_dataset / CLASSES_FILE)
    references = label_map_files(cases, raw_dataset / REFERENCES, ending)
    results = {}
    for fold in folds:
        train_cases, val_cases = map(set, fold_split(splits_folder, cases, fold, log))
        train = sorted((s for s in samples.values() if s.cases[0] in train_cases), key=lambda s: s.id)
        held_out = sorted((s for s in samples.values() if s.cases[0] in val_cases), key=lambda s: s.id)
        log(f"fold {fold}: {len(train)} training samples (reference label maps), {len(held_out)} held out")
        names, train_x = feature_table(train, references, labels, body)
        train_y = [case_class[s.cases[0]] for s in train]
        model = select_model(train_x, train_y, names)
        fold_folder = Path(model_folder) / f"fold_{fold}"
        fold_folder.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(fold_folder / "model.joblib") as temporary:
            joblib.dump(model.pipeline, temporary)
        write_text_atomically(fold_folder / "features.json", json.dumps(
            {"model": model.name, "settings": model.settings, "inner_balanced_accuracy": model.inner_score,
             "features": names, "importance": importances(model, train_x, train_y)}, indent=2))
        log(f"fold {fold}: chose {model.name} {model.settings} (inner balanced accuracy {model.inner_score:.3f})")
        if not held_out:
            continue
        folder = validation_folder(source, raw_dataset, fold)
        files = label_map_files([c for s in held_out for c in s.cases], folder, ending)
        if source is not None:
            check_grids(files, raw_dataset / "imagesTr", ending)
        _, val_x = feature_table(held_out, files, labels, body)
        probabilities = _class_probabilities(model.pipeline, val_x, classes)
        true = [classes.index(case_class[s.cases[0]]) for s in held_out]
        write_predictions_csv(fold_folder / "validation.csv", held_out, probabilities, classes, true)
        results[fold] = classification_metrics(true, probabilities, classes)
        log(f"fold {fold}: held-out accuracy {results[fold]['accuracy']:.3f} from {folder}")
    return results


def predict_shape(model_folder: Path, segmentations: Path, output_csv: Path, folds: Sequence,
                  images: Optional[Path] = None, body_sizes: Optional[Path] = None,
                  log: Callable[[str], None] = print) -> Path:
    """Classify the samples of a folder of label maps (CASE<file_ending>) with the folds' classifiers (probabilities
    averaged): one CSV row per sample. images: the scans' folder (CASE_0000<ending>), each label map checked to lie
    on its scan's grid."""
    import joblib

    from nnunet_fuse.classification.training import write_predictions_csv

    model_folder = Path(model_folder)
    if not (model_folder / SETTINGS_FILE).is_file():
        raise InputError(f"no trained shape classifier in {model_folder}; train it first (nnunet-fuse classify "
                         f"train -d ... --features shape -f all)")
    settings = read_json(model_folder / SETTINGS_FILE)
    ending, labels = settings["file_ending"], settings["labels"]
    classes = read_json(model_folder / CLASSES_FILE)["classes"]
    if not Path(segmentations).is_dir():
        raise InputError(f"{segmentations} is not a folder of label maps (CASE{ending})")
    cases = sorted(f.name[:-len(ending)] for f in Path(segmentations).glob(f"*{ending}"))
    if not cases:
        raise InputError(f"no label map (*{ending}) in {segmentations}")
    files = label_map_files(cases, segmentations, ending)
    if images is not None:
        check_grids(files, Path(images), ending)
    samples = samples_of_frames(cases, settings["frames_per_sample"], segmentations)
    body = None
    if settings["body_sizes"]:
        if body_sizes is None:
            raise InputError(f"the classifier in {model_folder} uses height and weight: give --body-sizes FILE "
                             f"({{sample: {{\"height_cm\": ..., \"weight_kg\": ...}}}} for every sample)")
        body = read_body_sizes(Path(body_sizes))
    names, features = feature_table(samples, files, labels, body)
    probabilities = []
    for fold in folds:
        fold_folder = model_folder / f"fold_{fold}"
        if not (fold_folder / "model.joblib").is_file():
            raise InputError(f"no model.joblib for fold {fold} in {model_folder}; train that fold or choose the "
                             f"trained folds with -f")
        if read_json(fold_folder / "features.json")["features"] != names:
            raise InputError(f"fold {fold} of {model_folder} was trained on other features than these label maps "
                             f"give; retrain it with this version")
        probabilities.append(_class_probabilities(joblib.load(fold_folder / "model.joblib"), features, classes))
    log(f"classified {len(samples)} sample(s) from {segmentations} with fold(s) {' '.join(map(str, folds))}")
    write_predictions_csv(Path(output_csv), samples, np.mean(probabilities, axis=0), classes)
    return Path(output_csv)
