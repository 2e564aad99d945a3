"""Median CPU time of one Fuse4Seg training step (follower + leader) for each leader gradient — the average ablation
("none"), first-order, unrolled — timed round-robin side by side, on the real BraTS-like plans at a CPU-sized patch
(the helper the distributed tests use): ``python benchmarks/fuse4seg_step.py [repeats]``."""
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's nnunet_fuse
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("nnUNet_results", tempfile.mkdtemp())
from test_distributed import cpu_trainer, random_batch  # noqa: E402

from nnunet_fuse.profiling import interleaved_median_seconds  # noqa: E402

if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.manual_seed(0)
    trainer = cpu_trainer()
    trainer.current_epoch = trainer.pretrain_epochs  # bi-level phase
    batch = random_batch(trainer, seed=0)
    kinds = ("none", "first-order", "unrolled")

    def step(kind: str):
        def run() -> None:
            trainer.leader_gradient = kind
            trainer.train_step(batch)
        return run

    seconds = interleaved_median_seconds([step(k) for k in kinds], warmup=1, repeats=repeats)
    print(f"Fuse4Seg training step, {torch.get_num_threads()} threads, median of {repeats} (round-robin):")
    for kind, s in zip(kinds, seconds):
        print(f"  leader gradient {kind:12s} {s:6.2f} s   {s / seconds[1]:.2f}x first-order")
