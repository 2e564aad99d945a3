"""The README's first command: `nnunet-fuse demo` end to end on a fresh folder, as a newcomer runs it."""
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_demo_runs_end_to_end_and_learns(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}  # a newcomer's environment
    workdir = tmp_path / "demo"
    result = subprocess.run([str(BIN / "nnunet-fuse"), "demo", "--workdir", str(workdir), "-device", "cpu"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    for step in ("nnU-Net planning and preprocessing", "training FuseUNet", "predicting the held-back cases"):
        assert f"=== {step}" in result.stdout  # progress is shown
    assert "Epoch 9" in result.stdout  # nnU-Net's own training log streamed through
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["dice"]) == {"sphere", "box", "rod"}
    assert results["mean_dice"] > 0.8, results["dice"]
    assert results["parameters"]["FuseUNet"]["total"] < 0.7 * results["parameters"]["nnU-Net default"]["total"]
    png = workdir / "overlay.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "mean foreground" in (workdir / "results.md").read_text()

    again = subprocess.run([str(BIN / "nnunet-fuse"), "demo", "--workdir", str(workdir)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (workdir / "results.json").is_file()  # the earlier run is kept
