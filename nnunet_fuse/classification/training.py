"""Training a HiFuse classifier on one fold of nnU-Net's preprocessed data, with nnU-Net-like checkpoints.

Model folder: ``nnUNet_results/DatasetXXX/HiFuseClassifier_BUDGET__PLANS__CONFIGURATION`` with nnU-Net's plans.json and
dataset.json and our classes.json (what prediction needs); per fold ``checkpoint_latest.pth`` (every epoch),
``checkpoint_best.pth`` (best validation balanced accuracy, then loss), ``checkpoint_final.pth``,
``training_log.txt``, ``progress.json`` and ``validation.csv`` (the final network on the fold's held-out samples, what
``classify evaluate`` reads). All written atomically; ``--c`` continues from the latest checkpoint.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from nnunet_fuse import __version__
from nnunet_fuse.atomic_files import replaced_atomically, write_csv_atomically, write_text_atomically
from nnunet_fuse.datasets.classes import CLASSES_FILE, read_classes
from nnunet_fuse.classification.metrics import classification_metrics
from nnunet_fuse.classification.samples import (RegionOfInterest, Sample, augment, class_balanced_indices,
                                                group_samples, network_inputs, region_of_interest,
                                                sample_probabilities, stack_frames)
from nnunet_fuse.budgets import CLASSIFIER_BUDGETS, ClassifierBudget
from nnunet_fuse.compatibility import CHECKPOINT_VERSION_KEY
from nnunet_fuse.input_check import InputError, read_json
from nnunet_fuse.splits import SplitError, ensure_split_file

TRAINER_NAME = "HiFuseClassifier"


WEIGHT_DECAY = 1e-2


class ClassificationError(InputError):
    """A classification command cannot run on this input; the message says what to do."""


def model_folder(results: Path, dataset_name: str, plans: str, configuration: str, budget: str) -> Path:
    """nnUNet_results/DatasetXXX/HiFuseClassifier_BUDGET__PLANS__CONFIGURATION (one folder per budget, as nnU-Net
    keeps one per trainer)."""
    return Path(results) / dataset_name / f"{TRAINER_NAME}_{budget}__{plans}__{configuration}"


def classifier_strides(plan_strides: Sequence[Sequence[int]], n_stages: int = 4) -> List[List[int]]:
    """The classifier's per-stage strides from the plan's: the first stage takes the product of the plan's first
    three (the paper's 4 × 4 stem on nnU-Net's 2d plans: 1, 2, 2), the others the plan's next ones (1 where the plan
    has none left), so anisotropic plans stay anisotropic."""
    strides = [list(s) for s in plan_strides]
    stem = np.prod(np.array(strides[:3]), axis=0).astype(int).tolist()
    rest = strides[3:3 + n_stages - 1]
    rest += [[1] * len(stem)] * (n_stages - 1 - len(rest))
    return [stem, *[list(map(int, s)) for s in rest]]


def network_settings(configuration: dict, input_channels: int, n_classes: int, budget: ClassifierBudget) -> dict:
    """HiFuseClassifier's arguments for an nnU-Net configuration dict (its patch size and strides), in the budget's
    layout (ours, or the paper's: hifuse.classifier.paper_layout)."""
    from nnunet_fuse.hifuse.classifier import paper_layout

    settings = {"input_channels": input_channels, "num_classes": n_classes,
                "features_per_stage": list(budget.features),
                "strides": classifier_strides(configuration["architecture"]["arch_kwargs"]["strides"]),
                "dim": len(configuration["patch_size"]), "dropout": 0.2}
    if budget.layout:
        settings.update(paper_layout(budget.layout))
    return settings


def build_network(settings: dict) -> torch.nn.Module:
    from torch import nn

    from nnunet_fuse.hifuse.classifier import HiFuseClassifier

    kwargs = dict(settings)
    dim = kwargs.pop("dim")
    return HiFuseClassifier(conv_op=nn.Conv2d if dim == 2 else nn.Conv3d, **kwargs)


def fold_split(preprocessed_dataset: Path, case_ids: Sequence[str], fold: Union[int, str],
               log: Callable[[str], None]) -> tuple:
    """(training cases, validation cases) of ``fold`` from the preprocessed dataset's splits_final.json, which
    splits.ensure_split_file writes over patients or checks (SplitError for a fold that puts a patient on both
    sides); with one case per patient that is nnU-Net's own default split. 'all': every case, none
    held out."""
    if fold == "all":
        return sorted(case_ids), []
    splits_file = Path(preprocessed_dataset) / "splits_final.json"
    ensure_split_file(splits_file, case_ids, [int(fold)], log)
    splits = read_json(splits_file)
    if int(fold) >= len(splits):
        raise SplitError(f"{splits_file} defines {len(splits)} folds, not fold {fold}; choose folds 0-"
                         f"{len(splits) - 1} or 'all'")
    return sorted(splits[int(fold)]["train"]), sorted(splits[int(fold)]["val"])


class ClassificationData:
    """The samples of nnU-Net's preprocessed folder of one configuration: their cases and class indices, each case's
    labelled foreground box (for the region of interest), and, once ``use_region`` has chosen the region, each
    sample's network inputs (``inputs_of``: the frames stacked as channels, cut to the region)."""

    def __init__(self, preprocessed_dataset: Path, raw_dataset: Path, plans: dict, configuration: str,
                 log: Callable[[str], None] = print):
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        if configuration not in plans["configurations"]:
            raise ClassificationError(f"configuration '{configuration}' is not in the plans; they have "
                                      f"{', '.join(plans['configurations'])}")
        self.configuration = plans["configurations"][configuration]
        if "data_identifier" not in self.configuration:  # a configuration that inherits (3d_cascade_fullres)
            raise ClassificationError(f"configuration '{configuration}' has no preprocessed data of its own; use "
                                      f"2d or 3d_fullres")
        folder = Path(preprocessed_dataset) / self.configuration["data_identifier"]
        if not folder.is_dir():
            raise ClassificationError(f"{folder} does not exist: run nnUNetv2_plan_and_preprocess -d "
                                      f"{Path(preprocessed_dataset).name[7:10]} -c {configuration} first")
        dataset = infer_dataset_class(str(folder))(str(folder))
        case_ids = sorted(dataset.identifiers)
        self.classes, case_classes = read_classes(raw_dataset, case_ids)
        self.samples = group_samples(case_ids)
        for sample in self.samples:
            labels = {case_classes[c] for c in sample.cases}
            if len(labels) > 1:
                raise ClassificationError(f"{Path(raw_dataset) / CLASSES_FILE}: the cases of {sample.id} have "
                                          f"different classes {sorted(labels)}; a patient has one class")
        self.labels = {s.id: self.classes.index(case_classes[s.cases[0]]) for s in self.samples}
        self.patch_size = list(self.configuration["patch_size"])
        self.dataset = dataset
        self.boxes: Dict[str, tuple] = {}  # case → ((low per axis), (high per axis)) of its labelled foreground
        self.shapes: Dict[str, tuple] = {}  # case → its spatial shape
        start = time.perf_counter()
        for i, case in enumerate(case_ids, 1):
            seg = np.asarray(dataset.load_case(case)[1][:])[0]
            self.shapes[case] = seg.shape
            foreground = np.argwhere(seg > 0)
            if len(foreground):
                self.boxes[case] = (foreground.min(0), foreground.max(0))
            if i % 100 == 0 or i == len(case_ids):
                log(f"read the labels of {i}/{len(case_ids)} cases ({time.perf_counter() - start:.0f} s)")
        self.case_ids = case_ids
        self.frames_per_sample = len(self.samples[0].cases)
        self.input_channels = self.frames_per_sample * int(dataset.load_case(case_ids[0])[0].shape[0])
        self.roi: Optional[RegionOfInterest] = None
        self.cache: Dict[str, np.ndarray] = {}

    def region_of(self, samples: Sequence[Sample]) -> RegionOfInterest:
        """The region of interest of ``samples``' labelled foreground (the patch where none is labelled)."""
        cases = [c for s in samples for c in s.cases if c in self.boxes]
        if not cases:
            return RegionOfInterest(size=list(self.patch_size), offset=[0.0] * len(self.patch_size))
        return region_of_interest([self.boxes[c] for c in cases], [self.shapes[c] for c in cases], self.patch_size)

    def use_region(self, roi: RegionOfInterest, memory_limit: int = 4 * 2 ** 30) -> None:
        """Inputs from now on are cut to ``roi``; they are kept in memory when all of them take at most
        ``memory_limit`` bytes (float32), else read from nnU-Net's preprocessed files at each use."""
        self.roi, self.cache = roi, {}
        per_input = self.input_channels * int(np.prod(roi.size)) * 4
        if sum(self.count_inputs(s) for s in self.samples) * per_input <= memory_limit:
            self.cache = {s.id: self._load(s) for s in self.samples}

    def _load(self, sample: Sample) -> np.ndarray:
        frames = [np.asarray(self.dataset.load_case(c)[0][:], dtype=np.float32) for c in sample.cases]
        return network_inputs(stack_frames(frames), self.roi)

    def count_inputs(self, sample: Sample) -> int:
        """How many inputs a sample gives: its slices (a 2d configuration on volumes), else 1."""
        shape = self.shapes[sample.cases[0]]
        return shape[0] if len(self.patch_size) < len(shape) else 1

    def inputs_of(self, sample: Sample) -> np.ndarray:
        """(n, F·C, *roi): the network inputs of a sample (its slices, or its volume)."""
        return self.cache[sample.id] if sample.id in self.cache else self._load(sample)

    def samples_of(self, cases: Sequence[str]) -> List[Sample]:
        wanted = set(cases)
        return [s for s in self.samples if set(s.cases) <= wanted]


def predict_samples(network: torch.nn.Module, data: ClassificationData, samples: Sequence[Sample],
                    device: torch.device) -> np.ndarray:
    """(N, K) class probabilities of ``samples``."""
    network.eval()
    return np.stack([sample_probabilities(network, data.inputs_of(s), device) for s in samples])


def write_predictions_csv(path: Path, samples: Sequence[Sample], probabilities: np.ndarray, classes: Sequence[str],
                          true: Optional[Sequence[int]] = None) -> None:
    """One row per sample: sample, cases, [true,] predicted, p_CLASS for every class."""
    header = ["sample", "cases", *(["true"] if true is not None else []), "predicted", *(f"p_{c}" for c in classes)]
    write_csv_atomically(path, [header] + [
        [sample.id, ";".join(sample.cases), *([classes[true[i]]] if true is not None else []),
         classes[int(np.argmax(p))], *(f"{v:.6f}" for v in p)]
        for i, (sample, p) in enumerate(zip(samples, probabilities))])


def _save(path: Path, state: dict) -> None:
    with replaced_atomically(path) as temporary:
        torch.save(state, temporary)


def prepare_model_folder(folder: Path, plans_file: Path, dataset_json: Path, classes_file: Path) -> None:
    """Copy plans.json, dataset.json and classes.json into the model folder; refuse a folder trained with others."""
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in ((plans_file, "plans.json"), (dataset_json, "dataset.json"), (classes_file, CLASSES_FILE)):
        target = folder / name
        if target.is_file() and read_json(target) != read_json(source):
            raise ClassificationError(f"{target} differs from {source}: the folds in {folder} were trained with "
                                      f"other plans, labels or classes; move that folder away to train anew")
        if not target.is_file():
            with replaced_atomically(target) as temporary:
                shutil.copyfile(source, temporary)


def train_fold(data: ClassificationData, output_folder: Path, fold: Union[int, str], preprocessed_dataset: Path,
               budget_name: str, device: torch.device, continue_training: bool = False, seed: int = 0,
               log: Callable[[str], None] = print) -> Dict:
    """Train one fold; returns the final validation metrics ({} for fold 'all')."""
    budget = CLASSIFIER_BUDGETS[budget_name]
    fold_folder = Path(output_folder) / f"fold_{fold}"
    existing = sorted(p.name for p in fold_folder.glob("checkpoint_*.pth")) if fold_folder.is_dir() else []
    if existing and not continue_training:
        raise ClassificationError(f"{fold_folder} holds {', '.join(existing)} already; pass --c to continue that "
                                  f"training, or move the folder away to train anew")
    fold_folder.mkdir(parents=True, exist_ok=True)
    for leftover in fold_folder.glob(".partial-*"):  # a file being written when a run was killed
        leftover.unlink()
    log_file = fold_folder / "training_log.txt"

    def say(message: str) -> None:
        log(message)
        with open(log_file, "a") as f:
            f.write(message + "\n")

    train_cases, val_cases = fold_split(preprocessed_dataset, data.case_ids, fold, say)
    train_samples, val_samples = data.samples_of(train_cases), data.samples_of(val_cases)
    if not train_samples:
        raise ClassificationError(f"fold {fold} has no training samples")
    train_labels = [data.labels[s.id] for s in train_samples]
    missing = sorted(set(range(len(data.classes))) - set(train_labels))
    if missing:
        raise ClassificationError(f"fold {fold}'s training part has no case of class(es) "
                                  f"{[data.classes[k] for k in missing]}; the network could never predict them")
    settings = network_settings(data.configuration, data.input_channels, len(data.classes), budget)
    roi = data.region_of(train_samples)  # from the training part's labels only
    data.use_region(roi)
    torch.manual_seed(seed)
    network = build_network(settings).to(device)
    n_inputs = sum(data.count_inputs(s) for s in train_samples)
    iterations = budget.iterations or max(1, math.ceil(n_inputs / budget.batch_size))
    total_steps = budget.epochs * iterations
    optimizer = torch.optim.AdamW(network.parameters(), lr=budget.learning_rate, weight_decay=WEIGHT_DECAY)
    warmup = iterations  # one epoch of linear warm-up, then cosine to 0 (the HiFuse repository's schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / warmup if step < warmup
        else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup))))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    generator = torch.Generator().manual_seed(seed)
    progress: List[dict] = []
    start_epoch, best = 0, None
    if continue_training and existing:
        from nnunet_fuse.training.checkpoints import read_checkpoint

        source = fold_folder / ("checkpoint_final.pth" if "checkpoint_final.pth" in existing
                                else "checkpoint_latest.pth" if "checkpoint_latest.pth" in existing
                                else "checkpoint_best.pth")
        try:
            state = read_checkpoint(source)
        except RuntimeError as e:  # truncated or foreign file, or written by an incompatible version: named
            raise ClassificationError(str(e)) from e
        if state["settings"] != settings or state["budget"] != budget_name or state["region"] != vars(roi):
            raise ClassificationError(f"{source} was trained with other settings (budget '{state['budget']}', "
                                      f"network {state['settings']}, region {state['region']}: other training cases?)"
                                      f"; move the fold away to train it anew")
        network.load_state_dict(state["network_weights"])
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        generator.set_state(state["generator_state"])
        torch.set_rng_state(state["rng_state"])  # dropout's
        start_epoch, best, progress = state["epoch"], state["best"], state["progress"]
        say(f"continuing from {source.name} after epoch {start_epoch}")
    say(f"{TRAINER_NAME}_{budget_name} fold {fold}: {len(train_samples)} training / {len(val_samples)} validation "
        f"samples, classes {data.classes}, {data.frames_per_sample} case(s) per sample, input "
        f"{settings['input_channels']} × {roi.size} (region of interest of the training labels, offset "
        f"{[round(o, 1) for o in roi.offset]}; patch {data.patch_size}), budget {budget_name}: {budget.epochs} "
        f"epochs × {iterations} iterations × batch {budget.batch_size}, "
        f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters, {device}")

    def checkpoint(epoch: int) -> dict:
        return {"network_weights": network.state_dict(), "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(), "generator_state": generator.get_state(),
                "rng_state": torch.get_rng_state(),
                "epoch": epoch, "best": best, "progress": progress, "settings": settings, "budget": budget_name,
                "region": vars(roi),
                "classes": data.classes, "frames_per_sample": data.frames_per_sample, "fold": fold,
                "trainer_name": f"{TRAINER_NAME}_{budget_name}", CHECKPOINT_VERSION_KEY: __version__}

    val_true = [data.labels[s.id] for s in val_samples]
    metrics: Dict = {}
    probabilities = None  # of the validation samples, by the network as it is now
    for epoch in range(start_epoch, budget.epochs):
        network.train()
        started, losses = time.perf_counter(), []
        for _ in range(iterations):
            picks = class_balanced_indices(train_labels, budget.batch_size, generator)
            batch = [data.inputs_of(train_samples[i]) for i in picks]
            x = torch.from_numpy(np.stack([b[torch.randint(len(b), (1,), generator=generator).item()]
                                           for b in batch])).to(device)
            y = torch.tensor([train_labels[i] for i in picks], device=device)
            x = augment(x, generator)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                loss = torch.nn.functional.cross_entropy(network(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.item())
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0]}
        message = f"epoch {epoch + 1}/{budget.epochs}: train loss {record['train_loss']:.3f}"
        if val_samples:
            probabilities = predict_samples(network, data, val_samples, device)
            metrics = classification_metrics(val_true, probabilities, data.classes)
            record["val_loss"] = float(-np.mean(np.log(probabilities[range(len(val_true)), val_true] + 1e-8)))
            record.update({k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")})
            message += (f", val loss {record['val_loss']:.3f}, accuracy {metrics['accuracy']:.3f}, balanced "
                        f"{metrics['balanced_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
        progress.append(record)
        say(f"{message} ({time.perf_counter() - started:.0f} s)")
        write_text_atomically(fold_folder / "progress.json", json.dumps(progress, indent=2))
        if val_samples and (best is None or (record["balanced_accuracy"], -record["val_loss"])
                            > (best["balanced_accuracy"], -best["val_loss"])):
            best = {k: record[k] for k in ("epoch", "balanced_accuracy", "val_loss")}
            _save(fold_folder / "checkpoint_best.pth", checkpoint(epoch + 1))
        _save(fold_folder / "checkpoint_latest.pth", checkpoint(epoch + 1))
    _save(fold_folder / "checkpoint_final.pth", checkpoint(budget.epochs))
    (fold_folder / "checkpoint_latest.pth").unlink(missing_ok=True)  # as nnU-Net: final replaces latest
    if val_samples:
        if probabilities is None:  # nothing trained in this run (--c on a finished fold)
            probabilities = predict_samples(network, data, val_samples, device)
        metrics = classification_metrics(val_true, probabilities, data.classes)
        write_predictions_csv(fold_folder / "validation.csv", val_samples, probabilities, data.classes, val_true)
        write_text_atomically(fold_folder / "validation_metrics.json", json.dumps(metrics, indent=2))
        say(f"fold {fold} final: accuracy {metrics['accuracy']:.3f}, balanced accuracy "
            f"{metrics['balanced_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} on {len(val_samples)} held-out "
            f"samples; {fold_folder / 'validation.csv'}")
    return metrics
