"""A clean stop on a scheduler's signal: SIGTERM / SIGUSR2 end a training of ours between two checkpoint writes with
exit code 75, after checkpoint_latest.pth of every finished epoch (the paper's schedule included), and --c continues
it to the same number of epochs as an uninterrupted training."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_ID, run
from nnunet_fuse.planning import load_overlay, make_plans_variant
from nnunet_fuse.reproduce.runs import ReproduceError, check_trained_on_split, check_trained_with_plans
from nnunet_fuse.training.stopping import INTERRUPTED_EXIT_CODE, STOP_SIGNALS, StopOnSignal

BIN = Path(sys.executable).parent
PLANS = Path(__file__).resolve().parents[1] / "benchmarks" / "plans" / "Dataset137_BraTSlike"  # 4 MRI channels


@pytest.fixture
def restore_signal_handlers():
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_a_stop_signal_exits_at_once_but_waits_for_a_checkpoint_being_written(restore_signal_handlers):
    stopped = []
    stopper = StopOnSignal(stopped.append)
    assert stopper.install()
    with pytest.raises(SystemExit) as exit_info:
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(1)  # the handler runs in this thread and never returns
    assert exit_info.value.code == INTERRUPTED_EXIT_CODE and stopped == ["SIGUSR2"]

    stopper = StopOnSignal(stopped.append)
    stopper.install()
    written = []
    with pytest.raises(SystemExit) as exit_info:
        with stopper.while_saving():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            written.append("checkpoint")  # the write goes on to its end
    assert written == ["checkpoint"] and stopped == ["SIGUSR2", "SIGTERM"]
    assert exit_info.value.code == INTERRUPTED_EXIT_CODE


@pytest.mark.parametrize("method, trainer_name", [
    ("fuseunet", "nnUNetTrainerFuseUNet"), ("fuseunet", "nnUNetTrainerFuseUNetDS"),
    ("fuse4seg", "nnUNetTrainerFuse4Seg"), ("hifuse", "nnUNetTrainerHiFuse")])
def test_the_papers_trainers_keep_a_checkpoint_every_epoch(method, trainer_name, tmp_path, monkeypatch):
    """nnU-Net's own trainer saves checkpoint_latest.pth every 50th epoch; ours, on the paper's 1000 epochs too,
    after every one, and stop on SIGTERM / SIGUSR2."""
    import nnunet_fuse.training as training

    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    base = json.loads((PLANS / "nnUNetPlans.json").read_text())
    plans = make_plans_variant(base, load_overlay(method), f"nnUNet{method}Plans", ["3d_fullres"])
    plans["continue_training"] = False  # nnU-Net 2.8 passes this flag inside the plans dict
    dataset_json = json.loads((PLANS / "dataset.json").read_text())
    trainer = getattr(training, trainer_name)(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    assert trainer.num_epochs == 1000 and trainer.save_every == 1
    assert isinstance(trainer.stop_on_signal, StopOnSignal)


def sigterm_in_epoch_1(command, env):
    """Run command in a session of its own and send SIGTERM to its first process (only) when a training prints
    'Epoch 1'; returns (exit code, its output, ids of the session's processes still running after it ended), and
    kills those (augmentation workers of a killed trainer would hold its output open)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if line.rstrip().endswith(": Epoch 1"):
                process.send_signal(signal.SIGTERM)
                break
        code = process.wait(timeout=300)
        left = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    output.append(process.stdout.read())
    return code, "".join(output), left


def test_plain_nnunetv2_train_stops_on_sigterm_and_continues(planned_dataset, tmp_path):
    """SIGTERM to nnUNetv2_train alone (no scheduler) in the second of two epochs: exit 75, the first epoch's
    checkpoint and the record of the run; --c ends with two epochs, as an uninterrupted training."""
    workdir, env, raw = planned_dataset
    env = {**env, "nnUNet_results": str(tmp_path)}
    fold = tmp_path / raw.name / "nnUNetTrainerFuseUNet_smoke__nnUNetFuseUNetPlans__2d" / "fold_0"
    run([str(BIN / "nnunet-fuse"), "plan", "-d", str(TINY_ID), "--method", "fuseunet", "-c", "2d"], env)
    # a snapshot an earlier training left in the folder: a new training moves it aside, it never deletes it
    fold.mkdir(parents=True)
    (fold / "checkpoint_iteration_400.pth").write_bytes(b"an earlier training's snapshot")
    (fold / "curve" / "iteration_400").mkdir(parents=True)  # and reproduce --curve's validation of it
    (fold / "curve" / "iteration_400" / "summary.json").write_text('{"foreground_mean": {"Dice": 0.5}}')
    command = [str(BIN / "nnUNetv2_train"), str(TINY_ID), "2d", "0", "-tr", "nnUNetTrainerFuseUNet_smoke",
               "-p", "nnUNetFuseUNetPlans", "-device", "cpu"]
    code, text, _ = sigterm_in_epoch_1(command, env)  # to nnUNetv2_train alone, as `kill PID` does
    assert code == INTERRUPTED_EXIT_CODE, text[-4000:]
    assert "nnunet_fuse: SIGTERM received in epoch 1: training stopped" in text
    moved = list((fold / "earlier_snapshots").glob("*/checkpoint_iteration_400.pth"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"an earlier training's snapshot"
    assert moved[0].with_name("curve").joinpath("iteration_400", "summary.json").is_file()
    assert not (fold / "curve").exists()  # no curve point of the earlier training is reported as this one's
    assert "snapshots of an earlier training in this folder (checkpoint_iteration_400.pth, curve) were moved to" in text
    latest = torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    assert latest["current_epoch"] == 1 and not (fold / "checkpoint_final.pth").exists()
    record = json.loads((fold / "training_record.json").read_text())
    assert [(r["start_epoch"], r["end_epoch"], r["ended"]) for r in record["runs"]] == [(0, 1, "stopped by SIGTERM")]
    # the record names the fold's validation cases from the start, so reproduce refuses to continue this interrupted
    # training on other folds (it would validate on cases it trained on)
    splits_file = workdir / "nnUNet_preprocessed" / raw.name / "splits_final.json"
    splits = json.loads(splits_file.read_text())
    assert record["validation_cases"] == sorted(splits[0]["val"])
    check_trained_on_split(fold, 0, splits_file)
    other_folds = tmp_path / "other_splits.json"
    other_folds.write_text(json.dumps([splits[1]]))
    with pytest.raises(ReproduceError, match="was trained on other folds than fold 0"):
        check_trained_on_split(fold, 0, other_folds)
    # and the plans it trains with: written again with another batch (plan --overwrite), the fold is refused
    plans_file = workdir / "nnUNet_preprocessed" / raw.name / "nnUNetFuseUNetPlans.json"
    assert record["plans"]["name"] == "nnUNetFuseUNetPlans" and record["plans"]["configuration"] == "2d"
    check_trained_with_plans(fold, plans_file, "2d")
    replanned = json.loads(plans_file.read_text())
    replanned["configurations"]["2d"]["batch_size"] += 1
    other_plans = tmp_path / "replanned.json"
    other_plans.write_text(json.dumps(replanned))
    with pytest.raises(ReproduceError, match=r"was trained with other plans than replanned.json holds now for 2d "
                                             r"\(batch_size: \d+ then, \d+ now; changed: batch_size\)"):
        check_trained_with_plans(fold, other_plans, "2d")

    resumed = run(command + ["--c"], env).stdout
    assert ": Epoch 1\n" in resumed and ": Epoch 0\n" not in resumed
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 2 and len(final["logging"]["train_losses"]) == 2
    record = json.loads((fold / "training_record.json").read_text())
    assert [(r["start_epoch"], r["end_epoch"], r["ended"]) for r in record["runs"]] == [
        (0, 1, "stopped by SIGTERM"), (1, 2, "finished")]
    assert record["train_seconds"] == pytest.approx(sum(r["train_seconds"] for r in record["runs"]))
    assert (fold / "validation" / "summary.json").is_file()


def test_sigterm_to_reproduce_stops_its_training_cleanly(planned_dataset, tmp_path):
    """`kill PID` of a local `nnunet-fuse reproduce` (SIGTERM to it alone) in the training's second epoch: the signal
    is passed on, nnUNetv2_train stops after its first epoch's checkpoint and records it, nothing is left running,
    reproduce exits 75 saying to run it again — and the same command finishes the training."""
    workdir, env, raw = planned_dataset
    env = {**env, "nnUNet_results": str(tmp_path)}
    fold = tmp_path / raw.name / "nnUNetTrainer_smoke__nnUNetPlans__2d" / "fold_0"
    command = [str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "2d", "--methods", "nnunet",
               "--budget", "smoke", "-device", "cpu", "-o", str(tmp_path / "report")]
    code, text, left = sigterm_in_epoch_1(command, env)  # to reproduce alone, as `kill PID` does
    assert code == INTERRUPTED_EXIT_CODE, text[-4000:]
    assert left == [], f"processes of the stopped reproduce still running: {left}"
    assert "nnunet_fuse: SIGTERM received in epoch 1: training stopped" in text
    assert "run the same command again to continue" in text
    record = json.loads((fold / "training_record.json").read_text())
    assert [(r["start_epoch"], r["end_epoch"], r["ended"]) for r in record["runs"]] == [(0, 1, "stopped by SIGTERM")]
    resumed = run(command, env).stdout
    assert "continuing from its latest checkpoint" in resumed
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "validation" / "summary.json").is_file()
