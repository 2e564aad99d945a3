"""nnunet-fuse reproduce: same-budget trainings through nnU-Net's commands, a report, resuming without retraining."""
import json
import sys
from pathlib import Path

import pytest

from conftest import TINY_ID, interrupt_when_written, run
from nnunet_fuse.planning import write_plans_variant
from nnunet_fuse.reproduce import (ReproduceError, fold_state, label_names, nnunet_folders, parse_methods,
                                   published_reference)

BIN = Path(sys.executable).parent


def test_parse_methods():
    assert parse_methods("nnunet, FuseUNet") == ["nnunet", "fuseunet"]
    assert parse_methods("nnunet,fuse4seg,hifuse") == ["nnunet", "fuse4seg", "hifuse"]
    assert parse_methods("nnunet,fuseunet-ds") == ["nnunet", "fuseunet-ds"]
    assert parse_methods("hifuse,hifuse-fuseunet") == ["hifuse", "hifuse-fuseunet"]
    with pytest.raises(ReproduceError, match="unknown method 'unet'.*available: nnunet, fuseunet, fuseunet-ds, "
                                             "fuse4seg, fuse4seg-unrolled, fuse4seg-contrast, fuse4seg-average, "
                                             "hifuse, hifuse-fuseunet"):
        parse_methods("unet")
    with pytest.raises(ReproduceError, match="twice"):
        parse_methods("nnunet,nnunet")
    # a trainer of the user's on a method's plans: the method lower-cased, the class name kept as written
    assert parse_methods("nnunet, Fuse4Seg:nnUNetTrainerFuse4Seg_demo_lambda1") == [
        "nnunet", "fuse4seg:nnUNetTrainerFuse4Seg_demo_lambda1"]
    with pytest.raises(ReproduceError, match="no trainer after ':'"):
        parse_methods("fuseunet:")
    with pytest.raises(ReproduceError, match="unknown method 'unet'"):
        parse_methods("unet:nnUNetTrainer_smoke")


def test_every_method_trains_on_the_plans_it_writes():
    """Each method's budget trainer accepts the plans variant its overlay writes (nnU-Net's network: no overlay)."""
    from nnunet_fuse.reproduce.runs import METHODS
    from nnunet_fuse.training.budget import BUDGET_TRAINERS
    from nnunet_fuse.training.plans_check import MethodPlansTrainer
    for key, method in METHODS.items():
        trainer = BUDGET_TRAINERS[f"{method.trainer_prefix}_small"]
        if method.overlay is None:
            assert not issubclass(trainer, MethodPlansTrainer), key
        else:
            assert method.overlay in trainer.plans_methods, key


def test_missing_path_variables_are_named():
    with pytest.raises(ReproduceError, match="nnUNet_preprocessed, nnUNet_results not set"):
        nnunet_folders({"nnUNet_raw": "/tmp"})


def test_fold_state(tmp_path):
    assert fold_state(tmp_path) == "new"
    (tmp_path / "checkpoint_latest.pth").touch()
    assert fold_state(tmp_path) == "continue"
    (tmp_path / "checkpoint_final.pth").touch()
    assert fold_state(tmp_path) == "validate"
    (tmp_path / "validation").mkdir()
    whole = json.dumps({"foreground_mean": {"Dice": 0.8}, "mean": {}, "metric_per_case": []})
    (tmp_path / "validation" / "summary.json").write_text(whole[:len(whole) // 2])  # nnU-Net's write interrupted
    assert fold_state(tmp_path) == "validate"  # validated again, not a traceback in the report
    (tmp_path / "validation" / "summary.json").write_text(whole)
    assert fold_state(tmp_path) == "finished"


def test_label_names_and_published_reference():
    assert label_names({"labels": {"background": 0, "RV": 1, "LV": 3}}) == {1: "RV", 3: "LV"}
    assert label_names({"labels": {"background": 0, "whole": [1, 2, 3], "core": [2, 3]}}) == {
        (1, 2, 3): "whole", (2, 3): "core"}
    assert published_reference("Dataset027_ACDC")["mean_dice"] == pytest.approx(0.9154)
    assert published_reference("Dataset220_KiTS2023")["mean_dice"] == pytest.approx(0.8604)
    assert published_reference("Dataset004_Hippocampus") is None


def test_reproduce_trains_reports_and_resumes(planned_dataset, tmp_path):
    workdir, env, raw = planned_dataset
    # the user planned FuseUNet earlier for every configuration: reproduce trains with that variant as it is
    write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "fuseunet")
    out = tmp_path / "report"
    command = [str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "2d", "--budget", "smoke",
               "-device", "cpu", "-o", str(out)]
    # one case per patient: the folds are left to nnU-Net, whose splits_final.json appears only when it trains;
    # --curve validates the snapshots on them after the training
    splits_file = workdir / "nnUNet_preprocessed" / raw.name / "splits_final.json"
    splits_file.unlink(missing_ok=True)
    first = run(command + ["--methods", "nnunet", "--curve"], env)
    assert "already planned and preprocessed" in first.stdout
    assert first.stdout.count("=== [1/1] nnU-Net default, fold 0: validating the snapshot after 4 iterations") == 1
    results = workdir / "nnUNet_results" / raw.name
    nnunet_fold = results / "nnUNetTrainer_smoke__nnUNetPlans__2d" / "fold_0"
    checkpoint_time = (nnunet_fold / "checkpoint_final.pth").stat().st_mtime_ns
    record = json.loads((nnunet_fold / "training_record.json").read_text())
    assert record["schedule"] == [2, 4, 2] and record["train_seconds"] > 0 and record["peak_memory_mb"] > 100
    report = json.loads((out / "results.json").read_text())
    assert [m["method"] for m in report["methods"]] == ["nnunet"]

    # both methods, killed during FuseUNet's second epoch (after its first epoch's checkpoint_latest.pth)
    fuse_fold = results / "nnUNetTrainerFuseUNet_smoke__nnUNetFuseUNetPlans__2d" / "fold_0"
    interrupted = interrupt_when_written(command + ["--methods", "nnunet,fuseunet"], env,
                                         fuse_fold / "checkpoint_latest.pth")
    assert "FuseUNet, fold 0: training (smoke: 2 epochs × 4 iterations)" in interrupted
    assert not (fuse_fold / "checkpoint_final.pth").exists()
    assert [m["method"] for m in json.loads((out / "results.json").read_text())["methods"]] == ["nnunet"]

    # rerun: nnU-Net's finished training is not redone, FuseUNet's continues from its last finished epoch; with
    # --curve FuseUNet's snapshot (after epoch 1 of 2: 4 iterations) is validated as well, nnU-Net's is read back
    second = run(command + ["--methods", "nnunet,fuseunet", "--curve"], env)
    assert "nnU-Net default, fold 0: finished earlier, not retrained" in second.stdout
    assert "FuseUNet, fold 0: continuing from its latest checkpoint" in second.stdout
    resumed_log = second.stdout.split("FuseUNet, fold 0: continuing")[1]
    assert "Epoch 1" in resumed_log and "Epoch 0" not in resumed_log
    assert (nnunet_fold / "checkpoint_final.pth").stat().st_mtime_ns == checkpoint_time
    # the killed run (no clean-up) kept its finished epoch and its time on record, the resumed run added its own
    runs = json.loads((fuse_fold / "training_record.json").read_text())["runs"]
    assert [(r["start_epoch"], r["end_epoch"], r["ended"]) for r in runs] == [(0, 1, "running"), (1, 2, "finished")]
    assert all(r["train_seconds"] > 0.1 for r in runs)
    report = json.loads((out / "results.json").read_text())
    rows = {m["method"]: m for m in report["methods"]}
    assert list(rows) == ["nnunet", "fuseunet"]
    for row in rows.values():
        assert set(row["dice"]) == {"sphere", "box", "rod"}
        assert all(0 <= d <= 1 for d in row["dice"].values())
        assert row["mean_dice"] == pytest.approx(sum(row["dice"].values()) / 3)
        assert row["parameters"]["total"] == row["parameters"]["encoder"] + row["parameters"]["decoder"]
        assert row["train_seconds"] > 0
        assert set(row["hd95"]) == {"sphere", "box", "rod"}
        assert all(h is None or h >= 0 for h in row["hd95"].values())
    assert rows["fuseunet"]["plans"] == "nnUNetFuseUNetPlans"
    # each method's batch and patch are reported; FuseUNet keeps less per sample, so it keeps nnU-Net's
    assert rows["nnunet"]["batch_size"] >= 2 and len(rows["nnunet"]["patch_size"]) == 2
    assert (rows["fuseunet"]["batch_size"], rows["fuseunet"]["patch_size"]) == (
        rows["nnunet"]["batch_size"], rows["nnunet"]["patch_size"])
    assert rows["fuseunet"]["parameters"]["total"] < rows["nnunet"]["parameters"]["total"]
    table = (out / "results.md").read_text()
    assert "| FuseUNet" in table and "| nnU-Net default" in table and "Dice sphere" in table and "HD95 mm" in table
    assert "| batch" in table and " × " in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # learning curves: the snapshot after 4 iterations (saved on resume where the interruption came before it) and
    # the final network, validated on the fold's validation cases; the last point is nnU-Net's own validation
    validation_cases = json.loads(splits_file.read_text())[0]
    for row, fold in ((rows["nnunet"], nnunet_fold), (rows["fuseunet"], fuse_fold)):
        assert (fold / "checkpoint_iteration_4.pth").is_file()
        assert [p["iterations"] for p in row["curve"]] == [4, 8]
        assert row["curve"][-1]["mean_dice"] == pytest.approx(row["mean_dice"])
        assert all(0 <= p["mean_dice"] <= 1 and p["sd"] is None and p["folds"] == 1 for p in row["curve"])
        snapshot = json.loads((fold / "curve" / "iteration_4" / "summary.json").read_text())
        assert sorted(Path(c["prediction_file"]).name for c in snapshot["metric_per_case"]) == sorted(
            f"{case}.nii.gz" for case in validation_cases["val"])
        assert row["curve"][0]["mean_dice"] == pytest.approx(snapshot["foreground_mean"]["Dice"])
    assert second.stdout.count("=== [2/2] FuseUNet, fold 0: validating the snapshot after 4 iterations") == 1
    assert "nnU-Net default, fold 0: validating the snapshot" not in second.stdout
    table = (out / "results.md").read_text()
    assert "## Validation Dice against iterations" in table and "FuseUNet − nnU-Net default" in table
    assert "(one fold: no spread)" in table
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a finished training whose validation is missing gets only nnU-Net's validation, not a new training; with plans
    # changed since it was trained (plan --overwrite: another batch) it is refused first, and nothing runs
    fuse_checkpoint_time = (fuse_fold / "checkpoint_final.pth").stat().st_mtime_ns
    (fuse_fold / "validation" / "summary.json").unlink()
    current_plans = workdir / "nnUNet_preprocessed" / raw.name / "nnUNetFuseUNetPlans.json"
    trained_plans = current_plans.read_text()
    changed = json.loads(trained_plans)
    changed["configurations"]["2d"]["batch_size"] += 1
    current_plans.write_text(json.dumps(changed))
    try:
        refused = run(command + ["--methods", "fuseunet", "--curve"], env, check=False)
    finally:
        current_plans.write_text(trained_plans)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "was trained with other plans than nnUNetFuseUNetPlans.json holds now for 2d (batch_size: " \
        in refused.stderr and "move that folder away" in refused.stderr
    assert not (fuse_fold / "validation" / "summary.json").exists()
    third = run(command + ["--methods", "fuseunet", "--curve"], env)
    assert json.loads((out / "results.json").read_text())["methods"][1]["batch_size"] == rows["fuseunet"]["batch_size"]
    assert "FuseUNet, fold 0: validation of the finished training" in third.stdout
    assert "validating the snapshot" not in third.stdout  # validated once, read back since
    assert (fuse_fold / "checkpoint_final.pth").stat().st_mtime_ns == fuse_checkpoint_time
    assert (fuse_fold / "validation" / "summary.json").is_file()
    # the one-method run merged into the report instead of replacing it
    report = json.loads((out / "results.json").read_text())
    assert [m["method"] for m in report["methods"]] == ["nnunet", "fuseunet"] and report["folds"] == [0]
    assert "| nnU-Net default" in (out / "results.md").read_text()


USER_TRAINERS = """
import copy

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_fuse.training.budget import nnUNetTrainer_smoke, nnUNetTrainerFuseUNet_smoke


class nnUNetTrainerFuseUNet_smoke_lr3(nnUNetTrainerFuseUNet_smoke):
    \"\"\"lr 3e-3 and a 16-channel ODE state (an architecture change in the trainer, as nnU-Net's variants do).\"\"\"
    def __init__(self, plans, configuration, fold, dataset_json, device):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 3e-3

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, *args, **kwargs):
        configuration = copy.deepcopy(configuration_manager.configuration)
        configuration["architecture"]["arch_kwargs"]["state_channels"] = 16
        return super().build_network_architecture(plans_manager, ConfigurationManager(configuration), *args, **kwargs)


class nnUNetTrainer_smoke_mine(nnUNetTrainer_smoke):
    pass
"""


def test_reproduce_trains_a_users_trainer_on_a_methods_plans(planned_dataset, tmp_path):
    """--methods fuseunet:TRAINER trains the user's subclass (found through nnUNet_extTrainer) on FuseUNet's plans,
    labelled with its name; a trainer nnU-Net cannot find, or one not derived from the method's budget trainer, is
    refused before any work."""
    workdir, env, raw = planned_dataset
    folder = tmp_path / "my_trainers"
    folder.mkdir()
    (folder / "my_trainers.py").write_text(USER_TRAINERS)
    env = {**env, "nnUNet_extTrainer": str(folder)}
    out = tmp_path / "report"
    command = [str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "2d", "-device", "cpu", "-o", str(out),
               "--budget", "smoke", "--methods"]
    refused = run(command + ["fuseunet:nnUNetTrainerFuseUNet_smoke_lr4"], env, check=False)
    assert refused.returncode == 2 and "finds no trainer class 'nnUNetTrainerFuseUNet_smoke_lr4'" in refused.stderr
    assert "nnUNet_extTrainer" in refused.stderr
    refused = run(command + ["fuseunet:nnUNetTrainer_smoke_mine"], env, check=False)
    assert refused.returncode == 2 and ("nnUNetTrainer_smoke_mine does not derive from nnUNetTrainerFuseUNet_smoke"
                                        in refused.stderr)
    refused = run(command[:-3] + ["--budget", "small", "--methods", "fuseunet:nnUNetTrainerFuseUNet_smoke_lr3"], env,
                  check=False)
    assert refused.returncode == 2 and "does not derive from nnUNetTrainerFuseUNet_small" in refused.stderr
    assert not out.exists()

    result = run(command + ["fuseunet:nnUNetTrainerFuseUNet_smoke_lr3"], env)
    fold = (workdir / "nnUNet_results" / raw.name / "nnUNetTrainerFuseUNet_smoke_lr3__nnUNetFuseUNetPlans__2d"
            / "fold_0")
    assert (fold / "checkpoint_final.pth").is_file()
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert "Current learning rate: 0.003" in log  # the user's setting, not the budget trainer's 0.01
    row = json.loads((out / "results.json").read_text())["methods"][0]
    assert (row["method"], row["label"], row["trainer"], row["plans"]) == (
        "fuseunet:nnUNetTrainerFuseUNet_smoke_lr3", "nnUNetTrainerFuseUNet_smoke_lr3",
        "nnUNetTrainerFuseUNet_smoke_lr3", "nnUNetFuseUNetPlans")
    assert 0 <= row["mean_dice"] <= 1
    # parameters of the network the trainer built (16-channel state), not of the plans' (the paper's 2K = 8): each
    # added state channel adds a weight per skip channel and a bias to every 1x1 projection, and K head weights
    from nnunet_fuse.ode.decoder import default_state_channels
    from nnunet_fuse.plans_network import count_parameters
    plans_params = count_parameters(fold.parent / "plans.json", fold.parent / "dataset.json", "2d")
    skip_widths = json.loads((fold.parent / "plans.json").read_text())["configurations"]["2d"]["architecture"][
        "arch_kwargs"]["features_per_stage"]
    outputs = len(json.loads((fold.parent / "dataset.json").read_text())["labels"])
    added = 16 - default_state_channels(outputs)
    assert row["parameters"]["encoder"] == plans_params["encoder"] and added > 0
    assert row["parameters"]["decoder"] - plans_params["decoder"] == added * (sum(skip_widths) + len(skip_widths)
                                                                              + outputs)
    assert "| nnUNetTrainerFuseUNet_smoke_lr3" in (out / "results.md").read_text()
    assert (out / "logs" / "fuseunet_nnUNetTrainerFuseUNet_smoke_lr3_fold_0.txt").is_file()
    assert "[1/1] nnUNetTrainerFuseUNet_smoke_lr3, fold 0: training" in result.stdout


def test_learning_curve_table_marks_differences_beyond_the_fold_spread():
    """Mean ± sd over folds at the iterations every fold has; differences from nnU-Net's network (whatever the
    order) on the method's own folds, beyond both methods' sd there marked so, the others within; a method on fewer
    folds is compared on those, one on a fold nnU-Net's network lacks is not compared."""
    from nnunet_fuse.reproduce import curve_summary, curve_table

    fuse = curve_summary([{500: 0.70, 1000: 0.71, 1500: 0.8}, {500: 0.72, 1000: 0.69}])
    assert [p["iterations"] for p in fuse] == [500, 1000]
    assert fuse[0]["mean_dice"] == pytest.approx(0.71) and fuse[0]["sd"] == pytest.approx(0.0141421, rel=1e-4)

    def row(method, curves):
        """A report row as results.json holds it (per-fold curves keyed by strings)."""
        per_fold = {str(f): {"curve": {str(i): d for i, d in c.items()}} for f, c in curves.items()}
        return {"method": method, "label": method, "curve": curve_summary(list(curves.values())),
                "per_fold": per_fold}

    table = curve_table([row("FuseUNet", {0: {500: 0.70, 1000: 0.71, 1500: 0.8}, 1: {500: 0.72, 1000: 0.69}}),
                         row("nnunet", {0: {500: 0.50, 1000: 0.70}, 1: {500: 0.52, 1000: 0.75}}),
                         row("one fold", {1: {500: 0.60, 1000: 0.74}}), row("other", {7: {500: 0.9, 1000: 0.9}})],
                        folds=[0, 1, 7])
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()]
    assert cells[0] == ["iterations", "nnunet (folds 0, 1 only)", "FuseUNet (folds 0, 1 only)",
                        "one fold (fold 1 only)", "other (fold 7 only)", "FuseUNet − nnunet", "one fold − nnunet",
                        "other − nnunet"]
    assert cells[2] == ["500", "0.510 ± 0.014", "0.710 ± 0.014", "0.600", "0.900", "+0.200 (beyond the fold spread)",
                        "+0.080 (one fold: no spread)", "other folds"]
    assert cells[3][5:7] == ["-0.025 (within the fold spread)", "-0.010 (one fold: no spread)"]


def test_report_table_gives_the_fold_spread_and_marks_differences_beyond_it():
    """Mean Dice ± sd over folds per row, and each row's difference from nnU-Net's network on the same folds:
    beyond when larger than both sds, within otherwise; a row on fewer folds is compared on those, one on a fold
    nnU-Net's network lacks is not compared."""
    from nnunet_fuse.reproduce.report import report_table

    def row(method, per_fold_dice):
        per_fold = {str(f): {"mean_dice": d} for f, d in per_fold_dice.items()}
        return {"method": method, "label": method, "per_fold": per_fold, "dice": {"A": 0.5},
                "mean_dice": sum(per_fold_dice.values()) / len(per_fold_dice), "mean_hd95": None,
                "parameters": {"total": 1e6}, "train_seconds": None, "peak_memory_mb": None}

    report = {"published": None, "methods": [row("fuse4seg", {0: 0.70, 1: 0.74}), row("nnunet", {0: 0.80, 1: 0.84}),
                                             row("average", {0: 0.79, 1: 0.81}), row("variant", {0: 0.6}),
                                             row("elsewhere", {2: 0.6})]}
    lines = report_table(report).splitlines()
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert cells[0][3:5] == ["mean Dice", "− nnunet"]
    assert cells[2][3:5] == ["0.720 ± 0.028", "-0.100 (beyond the fold spread)"]
    assert cells[3][3:5] == ["0.820 ± 0.028", "—"]
    assert cells[4][3:5] == ["0.800 ± 0.014", "-0.020 (within the fold spread)"]
    assert cells[5][3:5] == ["0.600", "-0.200 (one fold: no spread)"]  # on fold 0, where nnU-Net's scored 0.80
    assert cells[6][3:5] == ["0.600", "other folds"]


def test_reproduce_cli_errors(planned_dataset):
    _, env, _ = planned_dataset
    result = run([str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "2d", "--methods", "hifuse,unet"],
                 env, check=False)
    assert result.returncode == 2 and "unknown method 'unet'" in result.stderr
    result = run([str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "2d", "--methods", "fuse4seg"],
                 env, check=False)
    assert result.returncode == 2 and "needs at least 2 image channels" in result.stderr
    result = run([str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "2d", "--budget", "small",
                  "--curve"], env, check=False)
    assert result.returncode == 2 and "budget 'small' keeps no snapshots" in result.stderr
    result = run([str(BIN / "nnunet-fuse"), "reproduce", "-d", "555", "-c", "2d"], env, check=False)
    assert result.returncode == 2 and "Dataset555_*" in result.stderr and "convert it first" in result.stderr
    result = run([str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "3d_lowres"], env, check=False)
    assert result.returncode == 2 and "configuration '3d_lowres'" in result.stderr
