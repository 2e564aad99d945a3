"""Full size, end to end, on the CPU: the 6 real BraTS 2013/2015 cases (FLAIR + T1c, 240 × 240 × 155)
through convert → nnUNetv2_plan_and_preprocess → nnunet-fuse plan → a short nnUNetv2_train → nnUNetv2_predict
(→ export-fused for Fuse4Seg), for nnU-Net's own network and each method's plans variant (batch and patch as
`nnunet-fuse plan` budgets them). Each training's peak resident memory is that of the training process
(getrusage of the child); its step time comes from nnU-Net's log (epoch time of the second, warm epoch of the
``check`` budget: 1 training + 1 validation iteration; Fuse4Seg's bi-level phase).

    python benchmarks/full_size.py -o OUT [--methods nnunet,fuseunet,fuse4seg,hifuse] [-c 3d_fullres]

Writes OUT/full_size.{md,json}; the work folders (nnUNet_raw/preprocessed/results) are under OUT/work.
``train_steps_peak_rss`` is the cheaper check CI runs (tests/test_full_size.py): a few training iterations of one
trainer through nnU-Net's own trainer, data loader and augmentation, in a fresh process, and its peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "BraTS2015_FLAIR_T1c"
DATASET = "138"


def trainer_and_plans(method: str) -> tuple:
    """(trainer, overlay, plans name) of a `reproduce` method key with the ``check`` budget."""
    from nnunet_fuse.planning import load_overlay, variant_plans_name
    from nnunet_fuse.reproduce import METHODS

    m = METHODS[method]
    plans = "nnUNetPlans" if m.overlay is None else variant_plans_name("nnUNetPlans",
                                                                       load_overlay(m.overlay)["plans_infix"])
    return f"{m.trainer_prefix}_check", m.overlay, plans


def environment(work: Path) -> dict:
    """nnU-Net's folders under work, our trainers visible, this environment's commands first on PATH; one process,
    no data-augmentation workers, no torch.compile."""
    from nnunet_fuse.commands import nnunet_environment

    env = nnunet_environment(work)
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", nnUNet_def_n_proc="1",
               nnUNet_n_proc_DA="0", nnUNet_compile="false", PYTHONUNBUFFERED="1")
    return env


def run(command: list, env: dict, log) -> float:
    """Run a console command, its output to log; returns the wall seconds. Raises on failure."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise RuntimeError(f"{command[0]} failed (exit {result.returncode}); see {log.name}")
    return time.perf_counter() - start


def child_peak_rss_mb(command: list, env: dict, log) -> tuple:
    """(peak RSS in MB of the command's process, wall seconds): the command runs in a fresh wrapper process, so
    getrusage of its children is that command's own peak."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", wrapper, *command], env=env, capture_output=True, text=True)
    log.write(result.stdout + result.stderr)
    log.flush()
    if result.returncode:
        raise RuntimeError(f"{command[0]} failed (exit {result.returncode}); see {log.name}")
    peak_kb = int(re.search(r"PEAK_RSS_KB (\d+)", result.stdout).group(1))
    return peak_kb / 1024, time.perf_counter() - start


def prepare(work: Path, configuration: str, log) -> dict:
    """convert brats + nnUNetv2_plan_and_preprocess (skipped when done); returns the environment."""
    env = environment(work)
    if not any(Path(env["nnUNet_raw"]).glob("Dataset138_*")):
        run(["nnunet-fuse", "convert", "brats", str(DATA)], env, log)
    folder = Path(env["nnUNet_preprocessed"]) / "Dataset138_BraTS2015"
    if not (folder / f"nnUNetPlans_{configuration}").is_dir():
        run(["nnUNetv2_plan_and_preprocess", "-d", DATASET, "-c", configuration, "-np", "1"],
            {**env, "nnUNet_n_proc_DA": "1"}, log)  # nnU-Net's planner sets torch's threads to it
    return env


TRAIN_STEPS = """
import json, resource, sys, time, torch
from nnunetv2.run.run_training import get_trainer_from_args
dataset, configuration, trainer_name, plans, iterations = sys.argv[1:6]
trainer = get_trainer_from_args(dataset, configuration, 0, trainer_name, plans, device=torch.device("cpu"))
trainer.on_train_start()
trainer.on_train_epoch_start()
seconds = []
for _ in range(int(iterations)):
    start = time.perf_counter()
    trainer.train_step(next(trainer.dataloader_train))
    seconds.append(time.perf_counter() - start)
print("RESULT", json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                            "step_seconds": seconds, "batch": trainer.configuration_manager.batch_size,
                            "patch": trainer.configuration_manager.patch_size}))
"""


def train_steps_peak_rss(env: dict, method: str, configuration: str, iterations: int) -> dict:
    """A few training iterations of the method's check trainer through nnU-Net's trainer, data loader and
    augmentation, in a fresh process: {"peak_rss_mb", "step_seconds", "batch", "patch"}."""
    trainer, _, plans = trainer_and_plans(method)
    result = subprocess.run([sys.executable, "-c", TRAIN_STEPS, DATASET, configuration, trainer, plans,
                             str(iterations)], env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{trainer} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(re.search(r"^RESULT (.*)$", result.stdout, re.M).group(1))


def epoch_seconds(training_folder: Path) -> float:
    """nnU-Net's 'Epoch time' of the last epoch in the training log."""
    log = sorted((training_folder / "fold_0").glob("training_log_*.txt"))[-1].read_text()
    return float(re.findall(r"Epoch time: ([\d.]+) s", log)[-1])


def end_to_end(env: dict, method: str, configuration: str, out: Path, log) -> dict:
    trainer, overlay, plans = trainer_and_plans(method)
    if overlay:
        run(["nnunet-fuse", "plan", "-d", DATASET, "--method", overlay, "--overwrite"], env, log)
    folder = Path(env["nnUNet_preprocessed"]) / "Dataset138_BraTS2015"
    cfg = json.loads((folder / f"{plans}.json").read_text())["configurations"][configuration]
    training = Path(env["nnUNet_results"]) / "Dataset138_BraTS2015" / f"{trainer}__{plans}__{configuration}"
    shutil.rmtree(training, ignore_errors=True)
    peak, train_wall = child_peak_rss_mb(["nnUNetv2_train", DATASET, configuration, "0", "-tr", trainer, "-p", plans,
                                          "-device", "cpu"], env, log)
    cases = out / "predict_in"
    if not cases.is_dir():
        cases.mkdir(parents=True)
        for f in sorted((Path(env["nnUNet_raw"]) / "Dataset138_BraTS2015" / "imagesTr").glob("*pat0004*")):
            shutil.copy(f, cases / f.name)
    predicted = out / f"predict_{method}"
    shutil.rmtree(predicted, ignore_errors=True)
    predict_seconds = run(["nnUNetv2_predict", "-i", str(cases), "-o", str(predicted), "-d", DATASET, "-c",
                           configuration, "-f", "0", "-tr", trainer, "-p", plans, "-device", "cpu", "-npp", "0",
                           "-nps", "0"], env, log)
    row = {"method": method, "trainer": trainer, "plans": plans, "batch": cfg["batch_size"],
           "patch": cfg["patch_size"], "peak_rss_mb": round(peak, 1), "train_wall_s": round(train_wall, 1),
           "epoch_s": epoch_seconds(training), "predict_s": round(predict_seconds, 1),
           "prediction": sorted(p.name for p in predicted.glob("*.nii.gz"))}
    if method == "fuse4seg":
        fused = out / "fused_fuse4seg"
        shutil.rmtree(fused, ignore_errors=True)
        run(["nnunet-fuse", "export-fused", "-i", str(cases), "-o", str(fused), "-d", DATASET, "-c", configuration,
             "-f", "0", "-tr", trainer, "-p", plans, "-device", "cpu"], env, log)
        row["fused"] = sorted(p.name for p in fused.glob("*.nii.gz"))
    return row


def write_table(rows: list, out: Path, meta: dict) -> None:
    base = next((r for r in rows if r["method"] == "nnunet"), None)
    lines = ["| method | batch | patch | peak RSS MB | × nnU-Net | epoch s (1 train + 1 val it.) | × nnU-Net | "
             "predict s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}" if base else "—"
        step = f"{r['epoch_s'] / base['epoch_s']:.2f}" if base else "—"
        lines.append(f"| {r['method']} | {r['batch']} | {' × '.join(map(str, r['patch']))} | {r['peak_rss_mb']:.0f} | "
                     f"{mem} | {r['epoch_s']:.1f} | {step} | {r['predict_s']:.1f} |")
    (out / "full_size.md").write_text(f"{meta['date']}, {meta['machine']}, {meta['configuration']}\n\n"
                                      + "\n".join(lines) + "\n")
    (out / "full_size.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", required=True, help="output folder")
    parser.add_argument("--methods", default="nnunet,fuseunet,fuse4seg,hifuse")
    parser.add_argument("-c", default="3d_fullres")
    args = parser.parse_args()
    out = Path(args.o).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(out / "full_size_log.txt", "a") as log:
        env = prepare(out / "work", args.c, log)
        for method in args.methods.split(","):
            print(f"=== {method}", flush=True)
            rows.append(end_to_end(env, method, args.c, out, log))
            print(json.dumps(rows[-1]), flush=True)
    write_table(rows, out, {"date": time.strftime("%Y-%m-%d"), "configuration": args.c,
                            "machine": f"{os.cpu_count()} CPU cores, "
                                       f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.0f} GiB"})


if __name__ == "__main__":
    main()
