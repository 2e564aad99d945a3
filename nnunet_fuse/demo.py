"""``nnunet-fuse demo``: FuseUNet end to end through nnU-Net's own commands on a synthetic dataset.

synthetic raw data → nnUNetv2_plan_and_preprocess → nnunet-fuse plan → nnUNetv2_train → nnUNetv2_predict →
nnU-Net's evaluator → table (terminal + Markdown + JSON) and one PNG overlay.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.commands import nnunet_command, nnunet_environment, run_step
from nnunet_fuse.input_check import InputError
from nnunet_fuse.datasets.synthetic import LABELS, make_synthetic_dataset
from nnunet_fuse.planning import write_plans_variant
from nnunet_fuse.plans_network import count_parameters
from nnunet_fuse.reporting import format_table

DEMO_MARKER = ".nnunet_fuse_demo"


def evaluate(reference_folder: Path, prediction_folder: Path, labels: Sequence[int]) -> dict:
    """nnU-Net's evaluator on a prediction folder; returns its summary (also written as summary.json)."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder_simple, load_summary_json

    compute_metrics_on_folder_simple(str(reference_folder), str(prediction_folder), list(labels), num_processes=1)
    return load_summary_json(str(prediction_folder / "summary.json"))


def save_overlay_png(image_file: Path, label_file: Path, prediction_file: Path, png_file: Path,
                     label_names: Dict[int, str]) -> None:
    """Image, reference and prediction side by side on the slice showing the most labels (then most foreground)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk
    from matplotlib.colors import ListedColormap

    image, label, prediction = (sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
                                for f in (image_file, label_file, prediction_file))
    z = max(range(label.shape[0]), key=lambda i: (len(np.unique(label[i])), int((label[i] > 0).sum())))
    colours = ListedColormap([(0, 0, 0, 0), (0.9, 0.2, 0.2, 0.55), (0.2, 0.8, 0.2, 0.55), (0.2, 0.4, 1.0, 0.55),
                              (1.0, 0.8, 0.1, 0.55), (0.8, 0.2, 0.8, 0.55)])
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, overlay, title in zip(axes, (None, label, prediction), ("image", "reference", "FuseUNet prediction")):
        ax.imshow(image[z], cmap="gray")
        if overlay is not None:
            ax.imshow(overlay[z], cmap=colours, vmin=0, vmax=colours.N - 1, interpolation="nearest")
        ax.set_title(f"{title} (slice {z})")
        ax.axis("off")
    legend = ", ".join(f"{v}: {n}" for v, n in sorted(label_names.items()) if v > 0)
    fig.suptitle(f"{image_file.name}  —  labels {legend}")
    fig.tight_layout()
    fig.savefig(png_file, dpi=100)
    plt.close(fig)


def prepare_workdir(workdir: Path, overwrite: bool) -> None:
    if workdir.exists() and not workdir.is_dir():
        raise FileExistsError(f"--workdir {workdir} is a file; choose a folder")
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / DEMO_MARKER).exists():
            raise FileExistsError(f"{workdir} exists and is not a demo folder; choose another --workdir")
        if not overwrite:
            raise FileExistsError(f"{workdir} holds an earlier demo run; pass --overwrite to replace it or choose "
                                  f"another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / DEMO_MARKER).write_text("created by nnunet-fuse demo; safe to delete\n")


def run_demo(workdir: Path, device: str, trainer: str = "nnUNetTrainerFuseUNet_demo", n_train: int = 24,
             n_test: int = 6, dataset_id: int = 990, configuration: str = "3d_fullres", seed: int = 0,
             overwrite: bool = False) -> dict:
    """Run the whole pipeline in workdir; return the results dict (also written to workdir/results.json)."""
    workdir = Path(workdir).resolve()
    if n_train < 5 or n_test < 1:
        raise InputError(f"the demo needs at least 5 training cases (nnU-Net's 5 folds) and 1 test case, got "
                         f"--n-train {n_train} --n-test {n_test}")
    prepare_workdir(workdir, overwrite)
    env = nnunet_environment(workdir)
    log = workdir / "demo_log.txt"
    timings: Dict[str, float] = {}

    print(f"=== synthetic dataset: {n_train} training + {n_test} held-back cases -> {workdir / 'nnUNet_raw'}",
          flush=True)
    raw = make_synthetic_dataset(workdir / "nnUNet_raw", dataset_id, n_train=n_train, n_test=n_test, seed=seed)
    timings["plan_and_preprocess"] = run_step(
        "nnU-Net planning and preprocessing",
        [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration,
         "-np", "1", "--verify_dataset_integrity"], env, log)

    variant = write_plans_variant(workdir / "nnUNet_preprocessed", dataset_id, "fuseunet",
                                  configurations=[configuration])
    print(f"\n=== nnunet-fuse plan: {variant['status']} {variant['path']}", flush=True)
    plans_name = str(variant["plans_name"])

    timings["train"] = run_step(
        "training FuseUNet",
        [nnunet_command("nnUNetv2_train"), str(dataset_id), configuration, "0", "-tr", trainer, "-p", plans_name,
         "-device", device], env, log)
    predictions = workdir / "predictions"
    timings["predict"] = run_step(
        "predicting the held-back cases",
        [nnunet_command("nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(predictions), "-d",
         str(dataset_id), "-c", configuration, "-f", "0", "-tr", trainer, "-p", plans_name, "-device", device,
         "-npp", "1", "-nps", "1"], env, log)

    foreground = [v for v in LABELS.values() if v > 0]
    summary = evaluate(raw / "labelsTs", predictions, foreground)
    names = {v: n for n, v in LABELS.items()}
    dice = {names[int(k)]: float(v["Dice"]) for k, v in summary["mean"].items()}
    mean_dice = float(np.mean(list(dice.values())))

    preprocessed = workdir / "nnUNet_preprocessed" / raw.name
    params = {"FuseUNet": count_parameters(preprocessed / f"{plans_name}.json", raw / "dataset.json", configuration),
              "nnU-Net default": count_parameters(preprocessed / "nnUNetPlans.json", raw / "dataset.json",
                                                  configuration)}
    first_test = sorted((raw / "labelsTs").glob("*.nii.gz"))[0]
    case = first_test.name[: -len(".nii.gz")]
    png = workdir / "overlay.png"
    save_overlay_png(raw / "imagesTs" / f"{case}_0000.nii.gz", first_test, predictions / first_test.name, png, names)

    results = {"dataset": raw.name, "configuration": configuration, "trainer": trainer, "plans": plans_name,
               "device": device, "n_train": n_train, "n_test": n_test, "dice": dice, "mean_dice": mean_dice,
               "parameters": params, "seconds": timings, "overlay_png": str(png)}
    write_text_atomically(workdir / "results.json", json.dumps(results, indent=2))
    table = demo_table(results)
    write_text_atomically(workdir / "results.md", table + "\n")
    print("\n" + table, flush=True)
    print(f"\noverlay: {png}\nresults: {workdir / 'results.json'}, {workdir / 'results.md'}", flush=True)
    return results


def demo_table(results: dict) -> str:
    dice_rows = [["held-back Dice", ""]] + [[f"  {name}", f"{value:.3f}"] for name, value in results["dice"].items()]
    dice_rows.append(["  mean foreground", f"{results['mean_dice']:.3f}"])
    fuse, default = results["parameters"]["FuseUNet"], results["parameters"]["nnU-Net default"]
    param_rows = [["parameters FuseUNet (encoder + decoder)",
                   f"{fuse['total']:,} ({fuse['encoder']:,} + {fuse['decoder']:,})"],
                  ["parameters nnU-Net default (encoder + decoder)",
                   f"{default['total']:,} ({default['encoder']:,} + {default['decoder']:,})"],
                  ["FuseUNet / default", f"{fuse['total'] / default['total']:.2f}×"]]
    time_rows = [[f"time {step}", f"{seconds:.0f} s"] for step, seconds in results["seconds"].items()]
    header = [[f"{results['dataset']} {results['configuration']}, {results['trainer']}, {results['device']}",
               "value"]]
    return format_table(header + dice_rows + param_rows + time_rows)
