"""Cross-validation folds that keep every case of a patient on one side (nnU-Net's ``splits_final.json``).

A dataset with several cases per patient (ACDC: one case per frame, ``patientNNN_frameMM``) needs its folds drawn
over patients: nnU-Net's default split is drawn over cases and puts a patient's frames on both sides of a fold, so
validation scores a patient the network trained on.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from nnunet_fuse.atomic_files import write_text_atomically

# case id → patient, for the layouts that hold several cases per patient (ACDC's converters, ours and nnunetv2's)
PATIENT_OF_CASE = re.compile(r"^(?P<patient>.+)_frame\d+$")


class SplitError(ValueError):
    """The folds mix a patient's cases across training and validation, or cannot be read."""


def cases_by_patient(case_ids: Sequence[str]) -> Dict[str, List[str]]:
    """{patient: [case ids]}; a case whose id names no patient is its own patient."""
    groups: Dict[str, List[str]] = {}
    for case in sorted(case_ids):
        match = PATIENT_OF_CASE.match(case)
        groups.setdefault(match.group("patient") if match else case, []).append(case)
    return groups


def patient_grouped_splits(groups: Dict[str, List[str]], n_splits: int = 5, seed: int = 12345) -> list:
    """nnU-Net's ``splits_final.json`` content ([{"train": [...], "val": [...]}] per fold) with every case of a patient
    in the same fold: nnU-Net's own seeded KFold (nnunetv2 generate_crossval_split), over patients instead of cases
    (the same folds as nnU-Net's where every patient has one case).
    Fewer than ``n_splits`` patients give one fold per patient; one patient gives no split."""
    from sklearn.model_selection import KFold

    patients = sorted(groups)
    if len(patients) < 2:
        return []
    folds = KFold(n_splits=min(n_splits, len(patients)), shuffle=True, random_state=seed).split(patients)
    return [{"train": sorted(c for i in train for c in groups[patients[i]]),
             "val": sorted(c for i in val for c in groups[patients[i]])} for train, val in folds]


def leaking_patients(fold: dict, groups: Dict[str, List[str]]) -> List[str]:
    """Patients with cases in both the training and the validation part of one fold."""
    train, val = set(fold["train"]), set(fold["val"])
    return [p for p, cases in groups.items() if train & set(cases) and val & set(cases)]


def ensure_split_file(splits_file: Path, case_ids: Sequence[str], folds: Sequence[int],
                      log: Callable[[str], None] = print) -> None:
    """Make sure splits_file exists before any training, with folds that keep each patient on one side.

    A missing splits_file is written now (patient_grouped_splits), not left to the first nnU-Net training: trainings
    started together would race on writing it. With one case per patient it is exactly the split nnU-Net's trainer
    would draw. An existing one is checked, and SplitError names the patients that a fold splits, or the folds it
    lacks (nnU-Net then draws a random 80:20 split over cases)."""
    groups = cases_by_patient(case_ids)
    if not splits_file.is_file():
        splits = patient_grouped_splits(groups)
        if not splits:
            log(f"no {splits_file.name} written: one patient cannot be split into folds")
            return
        write_text_atomically(splits_file, json.dumps(splits, indent=2))
        log(f"wrote {splits_file}: folds over patients ({len(groups)} patients, {len(case_ids)} cases)")
        return
    try:
        splits = json.loads(splits_file.read_text())
        for fold in folds:
            if fold >= len(splits):
                raise SplitError(f"{splits_file} defines {len(splits)} folds, not fold {fold} (nnU-Net would draw a "
                                 f"random split over cases, mixing the patients' frames); choose folds "
                                 f"0-{len(splits) - 1}")
            leaking = leaking_patients(splits[fold], groups)  # none where each patient has one case
            if leaking:
                raise SplitError(
                    f"fold {fold} of {splits_file} has cases of {len(leaking)} patient(s) ({', '.join(leaking[:5])}"
                    f"{', ...' if len(leaking) > 5 else ''}) in both training and validation, so its validation Dice "
                    f"would score patients the network trained on. Delete {splits_file.name} there (this command "
                    f"then writes folds over patients), and move away trainings made with it.")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SplitError(f"{splits_file} is not a readable nnU-Net split file ({type(e).__name__}: {e}); delete it "
                         f"to have folds over patients written") from e
