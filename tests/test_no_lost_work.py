"""Folds over patients, reports that merge and never replace a user's files, files written whole or not at all."""
import json

import pytest
import torch

from nnunet_fuse.atomic_files import replaced_atomically, write_text_atomically
from nnunet_fuse.reproduce import ReproduceError, earlier_report, merge_rows
from nnunet_fuse.reproduce.report import summarise
from nnunet_fuse.splits import (SplitError, cases_by_patient, ensure_split_file, leaking_patients,
                                patient_grouped_splits)
from nnunet_fuse.training.checkpoints import read_checkpoint

FRAMES = [f"patient{p:03d}_frame{f:02d}" for p in range(1, 8) for f in (1, 12)]


def test_cases_group_by_patient_and_grouped_folds_never_split_one():
    groups = cases_by_patient(FRAMES + ["other_case"])
    assert groups["patient003"] == ["patient003_frame01", "patient003_frame12"] and groups["other_case"] == [
        "other_case"]
    splits = patient_grouped_splits(groups)
    assert len(splits) == 5
    assert sorted(c for fold in splits for c in fold["val"]) == sorted(FRAMES + ["other_case"])  # each case once
    assert all(leaking_patients(fold, groups) == [] for fold in splits)
    # nnU-Net's own split over cases: KFold over the 15 frames puts some patient on both sides
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    nnunet_splits = generate_crossval_split(sorted(FRAMES), seed=12345, n_splits=5)
    assert any(leaking_patients(fold, groups) for fold in nnunet_splits)


def test_split_file_written_when_missing_and_refused_when_leaking(tmp_path):
    splits_file = tmp_path / "splits_final.json"
    # one case per patient: written up front (trainings started together would race on it), nnU-Net's own split
    cases = [f"case_{i:03d}" for i in range(12, 0, -1)]
    ensure_split_file(splits_file, cases, [0], log=lambda _: None)
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    assert json.loads(splits_file.read_text()) == [{k: list(map(str, v)) for k, v in fold.items()}
                                                   for fold in generate_crossval_split(sorted(cases), 12345, 5)]
    splits_file.unlink()
    lines = []
    ensure_split_file(splits_file, FRAMES, [0, 1], log=lines.append)
    assert "folds over patients (7 patients, 14 cases)" in lines[0]
    assert all(not leaking_patients(f, cases_by_patient(FRAMES)) for f in json.loads(splits_file.read_text()))
    ensure_split_file(splits_file, FRAMES, [0, 1], log=lines.append)  # a grouped split is accepted
    assert len(lines) == 1

    leaking = [{"train": FRAMES[1:], "val": FRAMES[:1]}]
    splits_file.write_text(json.dumps(leaking))
    with pytest.raises(SplitError, match=r"fold 0 .* 1 patient\(s\) \(patient001\) in both training and validation"):
        ensure_split_file(splits_file, FRAMES, [0])
    with pytest.raises(SplitError, match="defines 1 folds, not fold 3"):
        ensure_split_file(splits_file, FRAMES, [3])
    splits_file.write_text("[{")
    with pytest.raises(SplitError, match="not a readable nnU-Net split file"):
        ensure_split_file(splits_file, FRAMES, [0])
    assert splits_file.read_text() == "[{"  # never replaced


def row(method, dice):
    return {"method": method, "label": method, "mean_dice": dice, "per_fold": {"0": {}}}


def test_reports_merge_and_foreign_files_are_refused(tmp_path):
    assert earlier_report(tmp_path, "Dataset027_ACDC", "2d", "small") is None
    report = {"written_by": "nnunet-fuse reproduce", "dataset": "Dataset027_ACDC", "configuration": "2d",
              "budget": "small", "methods": [row("nnunet", 0.5), row("fuseunet", 0.6)]}
    (tmp_path / "results.json").write_text(json.dumps(report))
    (tmp_path / "results.md").write_text("# Dataset027_ACDC 2d, budget 'small' ...\n")
    assert earlier_report(tmp_path, "Dataset027_ACDC", "2d", "small")["methods"] == report["methods"]
    merged = merge_rows(report["methods"], [row("fuseunet", 0.7), row("hifuse", 0.4)])
    assert [(r["method"], r["mean_dice"]) for r in merged] == [("nnunet", 0.5), ("fuseunet", 0.7), ("hifuse", 0.4)]
    with pytest.raises(ReproduceError, match="reports Dataset027_ACDC 2d budget 'small', not .* budget 'medium'"):
        earlier_report(tmp_path, "Dataset027_ACDC", "2d", "medium")
    (tmp_path / "results.md").write_text("# my notes\n")
    with pytest.raises(ReproduceError, match="not written by nnunet-fuse reproduce; refusing to replace them"):
        earlier_report(tmp_path, "Dataset027_ACDC", "2d", "small")
    (tmp_path / "results.json").unlink()
    with pytest.raises(ReproduceError, match="results.md"):
        earlier_report(tmp_path, "Dataset027_ACDC", "2d", "small")


def fold(dice):
    """One fold's result as reproduce's report holds it."""
    return {"dice": {"A": dice}, "hd95": {"A": 1.0}, "mean_dice": dice, "mean_hd95": 1.0, "train_seconds": 60.0,
            "peak_memory_mb": 100.0, "peak_memory_kind": "rss", "curve": {500: dice - 0.1, 1000: dice}}


def trained_row(method, dice_per_fold, batch=2, read_back=True):
    """A report row of a run (read back from an earlier results.json: string keys)."""
    row = summarise(method, method, f"trainer_{method}", "plans", {f: fold(d) for f, d in dice_per_fold.items()},
                    {"total": 10}, {"batch_size": batch, "patch_size": [40, 56]})
    return json.loads(json.dumps(row)) if read_back else row


def test_folds_run_separately_gather_in_one_report(capsys):
    earlier = [trained_row("nnunet", {0: 0.6, 1: 0.8}), trained_row("fuseunet", {0: 0.5})]
    current = trained_row("nnunet", {1: 0.7, 2: 0.9}, read_back=False)
    nnunet, fuseunet = merge_rows(earlier, [current])
    assert fuseunet == earlier[1]
    # fold 0 kept from the earlier run, fold 1 retrained by this run, fold 2 new
    assert nnunet["folds"] == [0, 1, 2] and list(nnunet["per_fold"]) == ["0", "1", "2"]
    assert nnunet["mean_dice"] == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert [(p["iterations"], round(p["mean_dice"], 6), p["folds"]) for p in nnunet["curve"]] == [
        (500, round((0.5 + 0.6 + 0.8) / 3, 6), 3), (1000, round((0.6 + 0.7 + 0.9) / 3, 6), 3)]
    # trained at another batch: this run's row replaces the earlier one, and the dropped fold is named
    other_batch = trained_row("fuseunet", {1: 0.9}, batch=4)
    assert merge_rows(earlier, [other_batch])[1] == other_batch
    assert "fuseunet: the earlier report's fold(s) 0 were trained with another batch_size" in capsys.readouterr().out


def test_interrupted_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    write_text_atomically(target, "old")
    with pytest.raises(KeyboardInterrupt):
        with replaced_atomically(target) as temporary:
            temporary.write_text("half of the new con")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with replaced_atomically(target) as temporary:
        assert temporary.name.endswith("results.json")  # the ending stays: format-guessing writers work
        temporary.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with replaced_atomically(target):
        pass  # a writer that writes nothing (checkpointing disabled) leaves the file as it was
    assert target.read_text() == "new"


def test_unreadable_checkpoint_is_named(tmp_path):
    checkpoint = tmp_path / "checkpoint_latest.pth"
    torch.save({"network_weights": {"w": torch.ones(1000)}, "current_epoch": 3}, checkpoint)
    assert read_checkpoint(checkpoint)["current_epoch"] == 3
    checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
    with pytest.raises(RuntimeError, match=f"checkpoint {checkpoint} cannot be read .* Delete it"):
        read_checkpoint(checkpoint)
    torch.save({"weights": 1}, checkpoint)
    with pytest.raises(RuntimeError, match="not an nnU-Net training checkpoint"):
        read_checkpoint(checkpoint)
