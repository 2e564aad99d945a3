"""The trainings of a comparison, one per (method, fold), their state on disk, and what one of them runs.

A training's job (``run_training``) is the same under every launcher: ``nnUNetv2_train`` of the method's budget
trainer — anew, continued with ``--c`` from its latest checkpoint, or only nnU-Net's final validation with ``--val``,
as its fold folder says — and with ``--curve`` the validation of the snapshots it kept. Run again on a finished
training it does nothing, so a requeued or resubmitted job simply picks up where the last one stopped.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nnunet_fuse.budgets import BUDGETS, RECORD_FILE, SNAPSHOT_FILE
from nnunet_fuse.commands import StepFailed, nnunet_command, run_step
from nnunet_fuse.training.stopping import INTERRUPTED_EXIT_CODE


class ReproduceError(RuntimeError):
    """Input that reproduce cannot work with; the message says what to do."""


class TrainingInterrupted(RuntimeError):
    """nnUNetv2_train was stopped by a signal (preemption, time limit, requeue) after its last checkpoint."""


@dataclass(frozen=True)
class Method:
    label: str
    overlay: Optional[str]  # plans overlay for `nnunet-fuse plan --method`, None: nnU-Net's own plans
    trainer_prefix: str     # the trainer is f"{trainer_prefix}_{budget}"
    trainer_name: Optional[str] = None  # a user's trainer (METHOD:TRAINER) instead of the budget trainer

    def trainer(self, budget: str) -> str:
        return self.trainer_name or f"{self.trainer_prefix}_{budget}"


METHODS: Dict[str, Method] = {
    "nnunet": Method("nnU-Net default", None, "nnUNetTrainer"),
    "fuseunet": Method("FuseUNet", "fuseunet", "nnUNetTrainerFuseUNet"),
    "fuseunet-ds": Method("FuseUNet + deep supervision", "fuseunet", "nnUNetTrainerFuseUNetDS"),
    "fuse4seg": Method("Fuse4Seg", "fuse4seg", "nnUNetTrainerFuse4Seg"),
    "fuse4seg-unrolled": Method("Fuse4Seg, unrolled leader gradient", "fuse4seg", "nnUNetTrainerFuse4SegUnrolled"),
    "fuse4seg-contrast": Method("Fuse4Seg + region-contrast loss", "fuse4seg", "nnUNetTrainerFuse4SegContrast"),
    "fuse4seg-average": Method("average of the modalities → segmentation", "fuse4seg", "nnUNetTrainerFuse4SegAverage"),
    "hifuse": Method("HiFuse", "hifuse", "nnUNetTrainerHiFuse"),
    "hifuse-fuseunet": Method("HiFuse + FuseUNet decoder", "hifuse-fuseunet", "nnUNetTrainerHiFuse"),
}


def method_of(key: str) -> Method:
    """The Method of a key parse_methods returned: one of METHODS, or 'METHOD:TRAINER' (METHOD's plans, the user's
    trainer, labelled with the trainer's name)."""
    base, _, trainer = key.partition(":")
    if not trainer:
        return METHODS[key]
    return Method(trainer, METHODS[base].overlay, METHODS[base].trainer_prefix, trainer)


def parse_methods(text: str, budget: Optional[str] = None) -> List[str]:
    """'nnunet,fuseunet' → ['nnunet', 'fuseunet'], with a clear error for unknown or repeated methods.

    An entry METHOD:TRAINER trains TRAINER (a trainer class nnUNetv2_train finds: nnU-Net's own or one in a folder of
    nnUNet_extTrainer) on METHOD's plans; with ``budget`` it must derive from METHOD's budget trainer, so that it
    trains that budget's schedule and keeps its records and snapshots."""
    entries = [m.strip() for m in text.split(",") if m.strip()]
    if not entries:
        raise ReproduceError("--methods is empty; e.g. --methods nnunet,fuseunet")
    methods = []
    for entry in entries:
        base, colon, trainer = entry.partition(":")
        base, trainer = base.strip().lower(), trainer.strip()
        if base not in METHODS:
            raise ReproduceError(f"unknown method '{base}'; available: {', '.join(METHODS)} (or METHOD:TRAINER, a "
                                 f"trainer of yours on a method's plans)")
        if colon and not trainer:
            raise ReproduceError(f"--methods '{entry}': no trainer after ':'; e.g. {base}:MyTrainer")
        if trainer and budget is not None:
            check_user_trainer(trainer, base, budget)
        methods.append(f"{base}:{trainer}" if trainer else base)
    if len(set(methods)) != len(methods):
        raise ReproduceError(f"--methods names a method twice: {text}")
    return methods


def check_user_trainer(trainer: str, base: str, budget: str) -> None:
    """TRAINER of METHOD:TRAINER must be a class nnUNetv2_train finds, derived from METHOD's budget trainer."""
    from nnunet_fuse.plans_network import find_trainer_class

    budget_trainer = METHODS[base].trainer(budget)
    try:
        found = find_trainer_class(trainer)
    except (RuntimeError, AssertionError) as e:
        raise ReproduceError(
            f"--methods {base}:{trainer}: nnU-Net finds no trainer class '{trainer}'. Add the folder of the module "
            f"that defines it to nnUNet_extTrainer (export nnUNet_extTrainer=\"$nnUNet_extTrainer:/its/folder\")"
        ) from e
    if budget_trainer not in {c.__name__ for c in found.__mro__}:
        raise ReproduceError(
            f"--methods {base}:{trainer}: {trainer} does not derive from {budget_trainer}, the trainer of method "
            f"'{base}' on --budget {budget}; subclass it (from nnunet_fuse.training.budget import {budget_trainer}) "
            f"so that it trains that budget's schedule on {base}'s plans")


@dataclass(frozen=True)
class Training:
    """One (method, fold) of a comparison with all its job needs (picklable: submitit sends it to a SLURM job)."""
    method: str             # a key parse_methods returned (method_of gives its Method)
    fold: int
    dataset_id: int
    configuration: str
    budget: str
    plans_name: str
    device: str
    curve: bool             # validate the snapshots too
    raw: Path               # nnUNet_raw/DatasetXXX_Name
    preprocessed: Path      # nnUNet_preprocessed/DatasetXXX_Name
    results: Path           # nnUNet_results
    log: Path               # this training's log (every command it ran, with their output)
    title: str              # "[1/2] FuseUNet, fold 0"

    @property
    def key(self) -> str:
        return f"{self.method}/fold_{self.fold}"

    @property
    def trainer(self) -> str:
        return method_of(self.method).trainer(self.budget)

    @property
    def folder(self) -> Path:
        """The fold folder nnUNetv2_train writes."""
        return (self.results / self.raw.name / f"{self.trainer}__{self.plans_name}__{self.configuration}"
                / f"fold_{self.fold}")

    @property
    def splits_file(self) -> Path:
        return self.preprocessed / "splits_final.json"

    @property
    def plans_file(self) -> Path:
        return self.preprocessed / f"{self.plans_name}.json"


def is_summary(path: Path) -> bool:
    """Whether path is a whole summary.json of nnU-Net's evaluator (it writes them in place: an interrupted write
    leaves a truncated one, which counts as none and is written again)."""
    try:
        return "foreground_mean" in json.loads(path.read_text())
    except (OSError, ValueError, TypeError):
        return False


def fold_state(fold_folder: Path) -> str:
    """'finished' (final checkpoint + a whole validation summary), 'validate' (final checkpoint only), 'continue'
    (a latest or best checkpoint, which nnUNetv2_train --c continues from), or 'new'."""
    final = (fold_folder / "checkpoint_final.pth").is_file()
    if final and is_summary(fold_folder / "validation" / "summary.json"):
        return "finished"
    if final:
        return "validate"
    resumable = any((fold_folder / f"checkpoint_{k}.pth").is_file() for k in ("latest", "best"))
    return "continue" if resumable else "new"


def snapshot_iterations(fold_folder: Path) -> List[int]:
    """Iterations of the snapshots (checkpoint_iteration_N.pth) a budget trainer kept in fold_folder, ascending."""
    pattern = re.compile("^" + re.escape(SNAPSHOT_FILE).replace(r"\{\}", r"(\d+)") + "$")
    found = (pattern.match(f.name) for f in fold_folder.glob(SNAPSHOT_FILE.format("*")))
    return sorted(int(m.group(1)) for m in found if m)


def snapshot_folder(fold_folder: Path, iterations: int) -> Path:
    """Where the validation of a snapshot is kept (nnUNetv2_predict output + nnU-Net's summary.json)."""
    return fold_folder / "curve" / f"iteration_{iterations}"


def is_finished(training: Training) -> bool:
    """Trained, validated by nnU-Net, and with ``curve`` every snapshot validated."""
    if fold_state(training.folder) != "finished":
        return False
    return not training.curve or all(is_summary(snapshot_folder(training.folder, i) / "summary.json")
                                     for i in snapshot_iterations(training.folder))


def check_trained_on_split(fold_folder: Path, fold: int, splits_file: Path) -> None:
    """Refuse a training whose record names other validation cases than fold ``fold`` of splits_file (made on
    other folds, e.g. nnU-Net's split over frames before a patient-grouped one was written). The budget trainers
    write the record when a run starts, so an interrupted training is checked too."""
    record_file = fold_folder / RECORD_FILE
    if not (record_file.is_file() and splits_file.is_file()):
        return
    recorded = json.loads(record_file.read_text()).get("validation_cases")
    splits = json.loads(splits_file.read_text())
    if recorded is not None and fold < len(splits) and sorted(recorded) != sorted(splits[fold]["val"]):
        raise ReproduceError(f"{fold_folder} was trained on other folds than fold {fold} of {splits_file} (its "
                             f"validation cases differ); move that folder away to train the fold again")


def plans_settings(plans_file: Path, configuration: str) -> dict:
    """The settings of one configuration of a plans file as nnU-Net's trainer sees them (inheritance resolved)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    settings = PlansManager(json.loads(plans_file.read_text())).get_configuration(configuration).configuration
    return json.loads(json.dumps(settings))  # tuples → lists, as in a record read back


def check_trained_with_plans(fold_folder: Path, plans_file: Path, configuration: str) -> None:
    """Refuse a training whose record names other settings of the configuration than plans_file has now (the plans
    were written again since, e.g. `nnunet-fuse plan --overwrite` with another batch or patch): its results would be
    reported as the current plans'. Records written before the settings were recorded are not checked."""
    record_file = fold_folder / RECORD_FILE
    if not (record_file.is_file() and plans_file.is_file()):
        return
    recorded = (json.loads(record_file.read_text()).get("plans") or {}).get("settings")
    if recorded is None:
        return
    current = plans_settings(plans_file, configuration)
    if recorded != current:
        changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
        examples = "; ".join(f"{k}: {recorded.get(k)} then, {current.get(k)} now" for k in changed[:3]
                             if k != "architecture") or "the network's settings differ"
        raise ReproduceError(f"{fold_folder} was trained with other plans than {plans_file.name} holds now for "
                             f"{configuration} ({examples}; changed: {', '.join(changed)}); move that folder away to "
                             f"train the fold again with the current plans, or restore the plans it was trained with")


def check_trained_as_now(training: "Training") -> None:
    """The fold folder, if trained (even in part), was trained on this fold's cases with the current plans."""
    check_trained_on_split(training.folder, training.fold, training.splits_file)
    check_trained_with_plans(training.folder, training.plans_file, training.configuration)


def validation_cases(splits_file: Path, fold: int) -> List[str]:
    """The validation cases of fold ``fold`` (reproduce writes splits_file before any training)."""
    if not splits_file.is_file():
        raise ReproduceError(f"{splits_file} is missing: without it the snapshots cannot be validated on fold "
                             f"{fold}'s cases; run reproduce again (it writes the folds), or restore the file")
    return json.loads(splits_file.read_text())[fold]["val"]


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


def validate_snapshots(training: Training, env: Dict[str, str], n_processes: int) -> None:
    """Every snapshot of the training not validated yet is predicted with nnUNetv2_predict -chk (the trainer's
    mirroring, as the final validation) on the fold's validation cases and evaluated with nnU-Net's evaluator:
    fold/curve/iteration_N/summary.json."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2

    dataset_json = json.loads((training.raw / "dataset.json").read_text())
    predict = [nnunet_command("nnUNetv2_predict"), "-d", str(training.dataset_id), "-c", training.configuration,
               "-tr", training.trainer, "-p", training.plans_name, "-device", training.device]
    inputs = None
    for iterations in snapshot_iterations(training.folder):
        out = snapshot_folder(training.folder, iterations)
        if is_summary(out / "summary.json"):
            continue
        inputs = inputs or validation_inputs(training.raw, dataset_json,
                                             validation_cases(training.splits_file, training.fold),
                                             training.folder / "curve" / "input")
        run_step(f"{training.title}: validating the snapshot after {iterations} iterations",
                 [*predict, "-i", str(inputs), "-o", str(out), "-f", str(training.fold), "-chk",
                  SNAPSHOT_FILE.format(iterations), "-npp", str(n_processes), "-nps", str(n_processes)],
                 env, training.log)
        compute_metrics_on_folder2(str(training.raw / "labelsTr"), str(out), str(training.raw / "dataset.json"),
                                   str(training.plans_file), str(out / "summary.json"), num_processes=n_processes,
                                   chill=True)


def run_training(training: Training, env: Dict[str, str], n_processes: int) -> None:
    """What one training's job does: train, continue or validate (as the fold folder says), then the snapshots
    with ``curve``. Nothing for a finished training. TrainingInterrupted when nnUNetv2_train was stopped by a
    signal (it continues from its checkpoint when run again), StepFailed when it failed."""
    folder = training.folder
    check_trained_as_now(training)
    training.log.parent.mkdir(parents=True, exist_ok=True)
    state = fold_state(folder)
    command = [nnunet_command("nnUNetv2_train"), str(training.dataset_id), training.configuration, str(training.fold),
               "-tr", training.trainer, "-p", training.plans_name, "-device", training.device]
    epochs, iterations, _ = BUDGETS[training.budget]
    try:
        if state == "finished":
            print(f"\n=== {training.title}: finished earlier, not retrained ({folder})", flush=True)
        elif state == "validate":
            (folder / "validation" / "hd95.json").unlink(missing_ok=True)  # ours: recomputed for the new validation
            run_step(f"{training.title}: validation of the finished training", command + ["--val"], env, training.log)
        else:
            (folder / "validation" / "hd95.json").unlink(missing_ok=True)
            what = "continuing from its latest checkpoint" if state == "continue" else "training"
            run_step(f"{training.title}: {what} ({training.budget}: {epochs} epochs × {iterations} iterations)",
                     command + (["--c"] if state == "continue" else []), env, training.log)
    except StepFailed as e:
        if e.code == INTERRUPTED_EXIT_CODE or e.code < 0:
            raise TrainingInterrupted(f"{training.title} was stopped by a signal; its checkpoint_latest.pth holds "
                                      f"the epochs it finished, and it continues from there when run again") from e
        raise
    if training.curve:
        validate_snapshots(training, env, n_processes)
