"""nnunet-fuse reproduce --launcher slurm against a real one-node SLURM cluster started here (tests/slurm_cluster.py):
one job array, preemption and SLURM's warning signal mid-training, a failure reported and resubmitted alone,
invocations that submit nothing while the jobs run, and the report once all have finished.

Runs in CI (.ci/run installs slurm-wlm and munge); elsewhere it is skipped when SLURM is not installed."""
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_ID, run
from slurm_cluster import KILL_WAIT, SlurmCluster, missing_programs

BIN = Path(sys.executable).parent
REPORT_COLUMNS = ["method", "folds", "Dice sphere", "Dice box", "Dice rod", "mean Dice", "− nnU-Net default",
                  "HD95 mm", "params M", "batch", "patch", "train min", "peak memory MB"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = missing_programs()
    reason = (f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge" if missing
              else "the test SLURM cluster runs its daemons as root" if os.geteuid() != 0 else None)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the SLURM tests (.ci/run installs SLURM)")
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_slurm_time_formats_and_bad_ones():
    from nnunet_fuse.reproduce.launchers.slurm import slurm_minutes
    from nnunet_fuse.reproduce.runs import ReproduceError

    assert [slurm_minutes(t) for t in ("90", "1:30", "12:00:00", "2-00", "1-2:30", "1-00:00:30")] == [
        90, 2, 720, 2880, 1590, 1441]
    for bad in ("", "1h", "12:00:00:00", "-5"):
        with pytest.raises(ReproduceError, match="is not a SLURM time"):
            slurm_minutes(bad)


def squeue(cluster, job_id):
    """(state, restart count) of one array task, as SLURM reports it."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job_id.split("_")[0], "-O",
                          "JobArrayID:40,State:24,RestartCnt:8"], env=cluster.env, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == job_id:
            return fields[1], int(fields[2])
    return None, 0


def wait_for(condition, what, timeout=600, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def requeued_and_released(cluster, job_id, restarts):
    """Wait until SLURM has put the task back in the queue (its restart count is ``restarts``), then let it start
    sooner than after SLURM's fixed two-minute delay for requeued jobs: once the last instance's batch script has
    surely ended (the cluster kills what is left KILL_WAIT seconds after a requeue; a start before that end can
    take the stale end for the new instance's)."""
    wait_for(lambda: squeue(cluster, job_id) == ("PENDING", restarts), f"{job_id} pending after requeue {restarts}")
    time.sleep(KILL_WAIT + 5)
    cluster.scontrol("update", f"JobId={job_id}", "StartTime=now")


def epoch_started(log, epoch, after=None):
    """nnU-Net printed 'Epoch N' in the training's log (after the last ``after`` there, when given)."""
    text = log.read_text() if log.is_file() else ""
    if after is not None:
        if after not in text:
            return False
        text = text.split(after)[-1]
    return f": Epoch {epoch}\n" in text


def test_reproduce_as_a_slurm_job_array(planned_dataset, slurm, tmp_path):
    workdir, env, raw = planned_dataset
    env = {**env, "SLURM_CONF": slurm.env["SLURM_CONF"], "nnUNet_results": str(tmp_path / "results")}
    out = tmp_path / "report"
    command = [str(BIN / "nnunet-fuse"), "reproduce", "-d", str(TINY_ID), "-c", "2d", "--methods", "nnunet,fuseunet",
               "--folds", "0", "1", "--budget", "smoke", "-device", "cpu", "-o", str(out), "--launcher", "slurm",
               "--gpus-per-job", "0", "--cpus-per-job", "1", "--mem", "3G", "--time", "30",
               "--sbatch", "comment=nnunet_fuse_test"]
    results = tmp_path / "results" / raw.name
    fuse_fold_1 = results / "nnUNetTrainerFuseUNet_smoke__nnUNetFuseUNetPlans__2d" / "fold_1"
    nnunet_fold_0 = results / "nnUNetTrainer_smoke__nnUNetPlans__2d" / "fold_0"
    # the cause of one failure: an unreadable checkpoint that nnUNetv2_train --c refuses
    fuse_fold_1.mkdir(parents=True)
    (fuse_fold_1 / "checkpoint_latest.pth").write_bytes(b"not a checkpoint")

    # two invocations at once, while something else holds the lock (a third invocation, say): both wait; then one
    # submits the four trainings as one array, the other sees them and submits none
    (out / "slurm").mkdir(parents=True)
    with open(out / "slurm" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        logs = [tmp_path / f"invocation_{i}.txt" for i in range(2)]
        started = [subprocess.Popen(command, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT) for log in logs]
        wait_for(lambda: all("already planned and preprocessed" in log.read_text() for log in logs), "both prepared")
        time.sleep(2)
        assert [p.poll() for p in started] == [None, None] and not (out / "slurm" / "jobs.json").exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert [p.wait(timeout=300) for p in started] == [0, 0], [log.read_text() for log in logs]
    both = "\n".join(log.read_text() for log in logs)
    assert both.count("submitted [") == 4 and both.count("nothing to submit") == 1, both
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    assert sorted(jobs) == ["fuseunet/fold_0", "fuseunet/fold_1", "nnunet/fold_0", "nnunet/fold_1"]
    assert len({j["job_id"].split("_")[0] for j in jobs.values()}) == 1  # one array
    assert len({j["job_id"] for j in jobs.values()}) == 4
    script = next((out / "slurm").glob("*/*_submission.sh")).read_text()
    for option in ("--cpus-per-task=1", "--mem=3G", "--time=30", "--requeue", "--comment=nnunet_fuse_test",
                   "--signal=USR2@"):
        assert option in script
    assert "--gpus" not in script

    # again while they run: their states, nothing submitted
    again = run(command, env).stdout
    assert "nothing to submit" in again and "submitted [" not in again
    assert json.loads((out / "slurm" / "jobs.json").read_text()) == jobs
    assert "| running" in again or "| pending" in again

    # preempted mid-training (in its second epoch of two, a few seconds long): SLURM requeues the task (SIGTERM to its
    # processes), and it continues from its checkpoint
    preempted = jobs["nnunet/fold_0"]["job_id"]
    log = out / "logs" / "nnunet_fold_0.txt"
    wait_for(lambda: epoch_started(log, 1), "nnU-Net fold 0 in epoch 1")
    slurm.scontrol("requeue", preempted)
    requeued_and_released(slurm, preempted, 1)
    # then SLURM's warning signal before a time limit or preemption (SIGUSR2), again in epoch 1: submitit requeues it
    wait_for(lambda: epoch_started(log, 1, after="continuing from its latest checkpoint"), "epoch 1 after the requeue")
    subprocess.run(["scancel", "--signal=USR2", preempted], env=slurm.env, check=True)
    requeued_and_released(slurm, preempted, 2)

    # the failed training: reported with its log's last lines, then resubmitted alone once its cause is removed
    failed = jobs["fuseunet/fold_1"]["job_id"]
    wait_for(lambda: squeue(slurm, failed)[0] in ("FAILED", "COMPLETED"), "the broken training to fail")
    (fuse_fold_1 / "checkpoint_latest.pth").unlink()
    report = run(command, env).stdout
    assert re.search(r"\| \[2/2\] FuseUNet, fold 1 +\| failed ", report), report
    tail = report.split("--- [2/2] FuseUNet, fold 1 failed")[1]
    assert "checkpoint_latest.pth cannot be read" in tail
    assert report.count("submitted [") == 1 and "submitted [2/2] FuseUNet, fold 1 as SLURM job" in report
    resubmitted = json.loads((out / "slurm" / "jobs.json").read_text())["fuseunet/fold_1"]
    assert resubmitted["earlier_jobs"] == [failed] and resubmitted["job_id"].split("_")[0] != failed.split("_")[0]

    # all finished: the report, with the same rows and columns as a local run's
    wait_for(lambda: all((Path(f) / "validation" / "summary.json").is_file() for f in (
        nnunet_fold_0, fuse_fold_1, nnunet_fold_0.with_name("fold_1"), fuse_fold_1.with_name("fold_0"))),
        "every training to finish", timeout=900)
    wait_for(lambda: all(squeue(slurm, j["job_id"])[0] in ("COMPLETED", None) for j in json.loads(
        (out / "slurm" / "jobs.json").read_text()).values()), "the jobs to end")
    final = run(command, env).stdout
    assert len(re.findall(r"\| finished ", final)) == 4 and "nothing to submit" in final
    table = (out / "results.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")] == REPORT_COLUMNS
    results_json = json.loads((out / "results.json").read_text())
    assert [m["method"] for m in results_json["methods"]] == ["nnunet", "fuseunet"] and results_json["folds"] == [0, 1]
    assert all(sorted(m["per_fold"]) == ["0", "1"] for m in results_json["methods"])

    # the preempted training: three runs in the same SLURM job, each resuming at the epoch the last one stopped in,
    # ending with as many epochs as an uninterrupted training and nnU-Net's usual final validation
    record = json.loads((nnunet_fold_0 / "training_record.json").read_text())
    runs = record["runs"]
    assert [r["ended"] for r in runs] == ["stopped by SIGTERM", "stopped by SIGUSR2", "finished"]
    assert [(r["start_epoch"], r["end_epoch"]) for r in runs] == [(0, 1), (1, 1), (1, 2)]
    assert {r["slurm_job"] for r in runs} == {preempted} and all(r["host"] for r in runs)
    checkpoint = torch.load(nnunet_fold_0 / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == 2 and len(checkpoint["logging"]["train_losses"]) == 2
    assert squeue(slurm, preempted) == ("COMPLETED", 2)
    assert (nnunet_fold_0 / "validation" / "summary.json").is_file()

    timeline = [f"{jobs['nnunet/fold_0']['submitted']} submitted as SLURM job {preempted}"]
    for r in runs:
        timeline.append(f"{r['started']} running on {r['host']} from epoch {r['start_epoch']}")
        timeline.append(f"{r['at']} {r['ended']} in epoch {r['end_epoch']}")
    print("\n".join(["timeline of the preempted training:", *timeline]))
