"""Median CPU time of one bi-level Fuse4Seg training step (follower + leader), on the real BraTS-like plans at a
CPU-sized patch (the helper the distributed tests use): ``python benchmarks/fuse4seg_step.py [repeats]``."""
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("nnUNet_results", tempfile.mkdtemp())
from test_distributed import cpu_trainer, random_batch  # noqa: E402

if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.manual_seed(0)
    trainer = cpu_trainer()
    trainer.current_epoch = trainer.pretrain_epochs  # bi-level phase
    batch = random_batch(trainer, seed=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - start)
    print(f"Fuse4Seg bi-level step, {torch.get_num_threads()} threads: median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {repeats}")
