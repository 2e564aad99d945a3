"""`nnunet-fuse profile`: fields present, numbers positive and mutually consistent; memory measurement exact."""
import copy
import json
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_ID, run
from nnunet_fuse.profiling import peak_step_memory_bytes

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_cpu_peak_memory_measures_live_bytes_exactly():
    def step():
        a = torch.empty(1_000_000)  # 4 MB, freed at the end of the step
        b = torch.empty(500_000)  # +2 MB while a is alive
        del a, b
        torch.empty(250_000)  # 1 MB after both are freed: the peak stays at 6 MB

    peak = peak_step_memory_bytes(step, torch.device("cpu"))
    assert 6_000_000 <= peak < 6_000_000 + 4096


def check_group(rows):
    default, fuse, floor = rows
    assert default["kind"] == fuse["kind"] == "network" and floor["kind"] == "encoder alone"
    for r in rows:
        assert r["params_total"] == r["params_encoder"] + r["params_decoder"] > 0
        assert r["forward_gflops"] > 0 and r["step_seconds"] > 0 and r["peak_memory_mb"] > 0
    assert fuse["params_encoder"] == default["params_encoder"] == floor["params_encoder"]
    assert fuse["params_decoder"] < 0.05 * default["params_decoder"]
    assert floor["forward_gflops"] <= fuse["forward_gflops"] < default["forward_gflops"]
    assert default["ratios"]["step_vs_default"] == 1.0 and floor["ratios"]["step_vs_encoder"] == 1.0
    assert fuse["ratios"]["step_vs_default"] == pytest.approx(fuse["step_seconds"] / default["step_seconds"])
    assert fuse["ratios"]["memory_vs_encoder"] == pytest.approx(
        fuse["peak_memory_mb"] / floor["peak_memory_mb"])
    return default, fuse, floor


def test_profile_cli_on_a_planned_dataset(planned_dataset, tmp_path):
    _, env, _ = planned_dataset
    result = run(f"nnunet-fuse profile -d {TINY_ID} -c 2d --batch 2 --warmup 0 --repeats 1 --inference-repeats 2 "
                 f"--plot -o {tmp_path}", env)
    assert "timing sliding-window inference of 4 networks round-robin (2 each)" in result.stdout
    assert "| network" in result.stdout and "step ×encoder" in result.stdout
    stem = tmp_path / f"Dataset{TINY_ID}_Tiny_2d_cpu"
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["meta"]["configuration"] == "2d" and data["meta"]["batch_size"] == 2
    assert data["meta"]["inference_repeats"] == 2
    rows = data["rows"]
    # nnUNetPlans and the ResEnc M plans of the fixture, each with its FuseUNet variant and its encoder alone
    assert [r["name"] for r in rows] == [
        "nnU-Net nnUNetPlans", "FuseUNet on nnUNetPlans", "encoder alone (nnUNetPlans)",
        "nnU-Net nnUNetResEncUNetMPlans", "FuseUNet on nnUNetResEncUNetMPlans",
        "encoder alone (nnUNetResEncUNetMPlans)"]
    for i in (0, 3):
        default, fuse, floor = check_group(rows[i:i + 3])
        assert default["inference_seconds"] > 0 and fuse["inference_seconds"] > 0
        assert floor["inference_seconds"] is None
    assert len(stem.with_suffix(".csv").read_text().splitlines()) == 7
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_profile_plans_file_with_region_labels(tmp_path):
    """BraTS-like plans (4 channels, 3 regions → Dice+BCE) without any dataset, at a CPU-sized patch."""
    plans = REPO / "benchmarks" / "plans" / "Dataset137_BraTSlike" / "nnUNetPlans.json"
    run(f"{BIN / 'nnunet-fuse'} profile --plans-file {plans} -c 3d_fullres "
        f"--patch-size 64 64 64 --batch 1 --warmup 0 --repeats 1 --no-inference -o {tmp_path}", None)
    rows = json.loads((tmp_path / "Dataset137_BraTSlike_3d_fullres_cpu.json").read_text())["rows"]
    check_group(rows)


def test_profile_errors(planned_dataset):
    _, env, _ = planned_dataset
    result = run(f"nnunet-fuse profile -d {TINY_ID} -c 3d_lowres --no-inference", env, check=False)
    assert result.returncode == 2 and "configuration '3d_lowres' is not in plans" in result.stderr
    result = run(f"nnunet-fuse profile -d {TINY_ID} -c 2d -p nnUNetResEncUNetXLPlans", env, check=False)
    assert result.returncode == 2 and "missing file" in result.stderr
    assert "nnUNetResEncUNetXLPlans.json" in result.stderr
    plans = REPO / "benchmarks" / "plans" / "Dataset137_BraTSlike" / "nnUNetPlans.json"
    result = run(f"{BIN / 'nnunet-fuse'} profile --plans-file {plans} -c 3d_fullres --patch-size 32 32 32", None,
                 check=False)
    assert result.returncode == 2 and "does not fit the plan's strides" in result.stderr
    assert "e.g. [64, 64, 64]" in result.stderr
    result = run(f"{BIN / 'nnunet-fuse'} profile --plans-file {plans} -c 3d_fullres --inference-repeats 0", None,
                 check=False)
    assert result.returncode == 2 and "--inference-repeats: '0' is not a whole number of at least 1" in result.stderr


def test_candidates_for_several_methods_and_ratios_per_group():
    """Each base plans: nnU-Net's network, a variant per method that can replace it, the encoder alone; ratios are
    taken within the group (first row: nnU-Net's network, last: the encoder alone)."""
    from nnunet_fuse.profiling import ProfileRow, add_ratios, candidates

    plans = json.loads((REPO / "benchmarks" / "plans" / "Dataset027_ACDC" / "nnUNetPlans.json").read_text())
    rows = candidates([plans], "2d", ("fuseunet", "hifuse", "hifuse-fuseunet"))
    assert [name for name, _, _ in rows] == ["nnU-Net nnUNetPlans", "FuseUNet on nnUNetPlans",
                                             "HiFuse on nnUNetPlans", "HiFuse+FuseUNet on nnUNetPlans",
                                             "encoder alone (nnUNetPlans)"]
    resenc = copy.deepcopy(plans)
    resenc["plans_name"] = "nnUNetResEncUNetMPlans"
    resenc["configurations"]["2d"]["architecture"]["network_class_name"] = \
        "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    assert [name for name, _, _ in candidates([resenc], "2d", ("fuseunet", "hifuse"))] == [
        "nnU-Net nnUNetResEncUNetMPlans", "FuseUNet on nnUNetResEncUNetMPlans",
        "encoder alone (nnUNetResEncUNetMPlans)"]  # HiFuse replaces the plain U-Net only

    def row(name, kind, seconds):
        return ProfileRow(name, "p", kind, 10, 5, 5, 1.0, seconds, 100.0)

    measured = [row("a", "network", 2.0), row("b", "network", 1.0), row("c", "network", 3.0),
                row("floor", "encoder alone", 0.5), row("d", "network", 4.0), row("floor2", "encoder alone", 1.0)]
    add_ratios(measured)
    assert [r.ratios["step_vs_default"] for r in measured] == [1.0, 0.5, 1.5, 0.25, 1.0, 0.25]
    assert [r.ratios["step_vs_encoder"] for r in measured] == [4.0, 2.0, 6.0, 1.0, 4.0, 1.0]


def test_steps_are_timed_round_robin():
    """interleaved_median_seconds alternates the functions (so drift on a shared machine hits all alike) and returns
    each one's own median."""
    from nnunet_fuse.profiling import interleaved_median_seconds

    calls = []

    def sleeper(i, seconds):
        def fn():
            calls.append(i)
            time.sleep(seconds)
        return fn

    medians = interleaved_median_seconds([sleeper(0, 0.03), sleeper(1, 0.0)], warmup=1, repeats=3)
    assert calls == [0, 1] + [0, 1] * 3
    assert medians[0] >= 0.03 > medians[1] >= 0


def test_profile_runs_fuse4segs_own_bilevel_step(tmp_path):
    """Fuse4Seg is profiled with its trainer's step (segmentation SGD + fusion AdamW, one backward of both)."""
    plans = REPO / "benchmarks" / "plans" / "Dataset027_ACDC_2channels" / "nnUNetPlans.json"
    run(f"{BIN / 'nnunet-fuse'} profile --plans-file {plans} -c 2d --patch-size 64 64 --batch 2 --warmup 0 "
        f"--repeats 1 --no-inference --methods fuse4seg -o {tmp_path}", None)
    rows = json.loads((tmp_path / "Dataset027_ACDC_2channels_2d_cpu.json").read_text())["rows"]
    default, fuse4seg, floor = check_group_shape(rows)
    assert fuse4seg["name"] == "Fuse4Seg on nnUNetPlans"
    assert fuse4seg["params_total"] > default["params_total"]  # + the fusion network (its optimiser state too)
    assert fuse4seg["peak_memory_mb"] > default["peak_memory_mb"] and fuse4seg["step_seconds"] > 0


def check_group_shape(rows):
    assert [r["kind"] for r in rows] == ["network", "network", "encoder alone"]
    for r in rows:
        assert r["forward_gflops"] > 0 and r["step_seconds"] > 0 and r["peak_memory_mb"] > 0
    return rows
