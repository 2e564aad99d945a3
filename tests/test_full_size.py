"""Full size on the CPU: Fuse4Seg, the method that used to run out of memory, trains on the 6 real BraTS cases at
full size (3d_fullres, the batch and patch `nnunet-fuse plan` budgets) within 1.25× the peak memory of nnU-Net's own
network in the recorded end-to-end run (benchmarks/full_size/full_size.json). A regression to out-of-memory fails
here, in about 5 minutes (preprocessing, then two training iterations through nnU-Net's trainer and data loader)."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import full_size  # noqa: E402

pytestmark = pytest.mark.skipif(not full_size.DATA.is_dir(), reason="../shared/data/BraTS2015_FLAIR_T1c is absent")


def test_fuse4seg_trains_at_full_size_within_nnunets_memory(tmp_path):
    recorded = json.loads((REPO / "benchmarks" / "full_size" / "full_size.json").read_text())
    nnunet_peak = next(r["peak_rss_mb"] for r in recorded["rows"] if r["method"] == "nnunet")
    with open(tmp_path / "log.txt", "w") as log:
        env = full_size.prepare(tmp_path / "work", "3d_fullres", log)
        full_size.run(["nnunet-fuse", "plan", "-d", full_size.DATASET, "--method", "fuse4seg", "-c", "3d_fullres"],
                      env, log)
    plans = json.loads((tmp_path / "work" / "nnUNet_preprocessed" / "Dataset138_BraTS2015" /
                        "nnUNetFuse4SegPlans.json").read_text())["configurations"]["3d_fullres"]
    result = full_size.train_steps_peak_rss(env, "fuse4seg", "3d_fullres", iterations=2)
    assert (result["batch"], result["patch"]) == (plans["batch_size"], plans["patch_size"])
    assert result["batch"] >= 2 and all(s > 0 for s in result["step_seconds"])
    assert result["peak_rss_mb"] <= 1.25 * nnunet_peak, (
        f"Fuse4Seg's full-size training peaked at {result['peak_rss_mb']:.0f} MB, nnU-Net's network at "
        f"{nnunet_peak:.0f} MB (recorded)")
