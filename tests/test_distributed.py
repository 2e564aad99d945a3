"""Fuse4Seg under torch.distributed (nnU-Net's -num_gpus > 1), run here on CPU ranks with the gloo backend: gradients
averaged over ranks, no unused parameters in either phase, and every rank's network identical after each step."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from nnunet_fuse.planning import load_overlay, make_plans_variant
from nnunet_fuse.training.distributed import average_gradients, distributed_world_size

PLANS = Path(__file__).resolve().parents[1] / "benchmarks" / "plans" / "Dataset137_BraTSlike"  # 4 MRI channels
CONFIGURATION, PATCH = "3d_fullres", (32, 64, 64)  # a CPU-sized patch of the real plans


def start_rank(rank: int, world_size: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)


def end_rank() -> None:
    """Leave the group together, then exit without Python's interpreter teardown: gloo's worker threads can still
    hold tensors then and abort the process (SIGABRT, "terminate called without an active exception"; pytorch
    #179291), which failed this test once in CI after every assertion had passed."""
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _average_gradients_rank(rank: int, world_size: int, init_file: str) -> None:
    start_rank(rank, world_size, init_file)
    a, b, c = (torch.nn.Parameter(torch.zeros(2, 3)) for _ in range(3))
    a.grad = torch.full((2, 3), float(rank + 1))    # ranks: 1, 2 → mean 1.5
    if rank == 1:
        b.grad = torch.full((2, 3), 4.0)             # rank 0 has none: counts as 0 → mean 2
    average_gradients([a, b, c])
    assert torch.equal(a.grad, torch.full((2, 3), 1.5))
    assert torch.equal(b.grad, torch.full((2, 3), 2.0))
    assert c.grad is None                            # no rank had one
    end_rank()


def test_average_gradients_over_two_ranks(tmp_path):
    assert distributed_world_size() == 1
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 7.0)
    average_gradients([p])                           # one process: untouched
    assert torch.equal(p.grad, torch.full((3,), 7.0))
    mp.spawn(_average_gradients_rank, args=(2, str(tmp_path / "init")), nprocs=2)


def cpu_trainer():
    """nnUNetTrainerFuse4Seg on real BraTS-like plans (4 channels, 3 regions) with a small 3d patch, set up as
    nnU-Net's initialize does (network, DDP wrapper when distributed, optimisers, loss), on CPU."""
    from nnunet_fuse.training.fuse4seg import nnUNetTrainerFuse4Seg

    base = json.loads((PLANS / "nnUNetPlans.json").read_text())
    plans = make_plans_variant(base, load_overlay("fuse4seg"), "nnUNetFuse4SegPlans", [CONFIGURATION])
    plans["configurations"][CONFIGURATION]["patch_size"] = list(PATCH)
    plans["continue_training"] = False  # nnU-Net 2.8 passes this flag inside the plans dict
    kwargs = plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]
    kwargs["features_per_stage"] = [min(f, 16) for f in kwargs["features_per_stage"]]  # CPU-sized widths
    kwargs["fusion_channels"] = 8
    dataset_json = json.loads((PLANS / "dataset.json").read_text())
    trainer = nnUNetTrainerFuse4Seg(plans, CONFIGURATION, 0, dataset_json, device=torch.device("cpu"))
    # nnU-Net sets a CUDA device and GradScalers whenever torch.distributed is initialised; these ranks run on CPU
    trainer.device, trainer.grad_scaler = torch.device("cpu"), None
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                         len(dataset_json["channel_names"]), 3, True)
    if trainer.is_ddp:
        trainer.network = DistributedDataParallel(trainer.network)  # broadcasts rank 0's weights
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = trainer._build_loss()
    return trainer


def random_batch(trainer, seed: int) -> dict:
    """4 channels and region targets (whole tumour ⊇ tumour core ⊇ enhancing) at every deep-supervision scale."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(1, 4, *PATCH, generator=generator)
    blobs = F.avg_pool3d(torch.rand(1, 1, *PATCH, generator=generator), 7, 1, 3)
    regions = torch.cat([blobs > t for t in (0.45, 0.5, 0.55)], 1).float()
    sizes = [[round(n * s) for n, s in zip(PATCH, scale)] for scale in trainer._get_deep_supervision_scales()]
    return {"data": data, "target": [F.interpolate(regions, size=size, mode="nearest") for size in sizes]}


def gradients_missing(module: torch.nn.Module):
    return [name for name, p in module.named_parameters() if p.grad is None]


def test_both_phases_give_every_parameter_a_gradient(tmp_path, monkeypatch):
    """The follower step reaches every segmentation parameter and the leader step every fusion parameter; in
    pre-training (an autoencoder of each modality) all but the cross-modality fusion blocks. What a step leaves
    without gradient is the same on every rank, so averaging over ranks keeps it untouched everywhere. The very first
    step of an untrained network (its correction of the average zero) does not reach the blocks that only feed the
    correction's last conv (the decomposition loss reaches the per-modality branches, the fusion losses that conv)."""
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    torch.manual_seed(0)
    trainer = cpu_trainer()
    model = trainer.model()
    trainer.current_epoch = trainer.pretrain_epochs
    trainer.train_step(random_batch(trainer, seed=99))
    behind_correction = ("fuse_base.", "fuse_detail.", "upsample_projection.", "decoder.0.")
    unreached = [n for n, p in model.fusion.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert unreached == [n for n, _ in model.fusion.named_parameters() if n.startswith(behind_correction)]
    for epoch in (0, trainer.pretrain_epochs):  # fusion pre-training, then bi-level
        trainer.current_epoch = epoch
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        losses = trainer.train_step(random_batch(trainer, seed=epoch))
        assert np.isfinite(losses["loss"]) and np.isfinite(losses["leader_loss"])
        fusion_blocks = [n for n, _ in model.fusion.named_parameters() if n.startswith(("fuse_base.", "fuse_detail."))]
        assert gradients_missing(model.fusion) == (fusion_blocks if epoch < trainer.pretrain_epochs else [])
        # nnU-Net's loss weights its lowest-resolution output 0 on one process (1e-6 under DDP, for this reason)
        lowest = "decoder.seg_layers.0"  # the decoder builds its heads from the bottom up
        assert gradients_missing(model.segmentation) == [f"{lowest}.weight", f"{lowest}.bias"]
        unchanged = [name for name, p in model.named_parameters()
                     if torch.equal(p, before[name]) and not name.startswith(f"segmentation.{lowest}.")
                     and not (epoch < trainer.pretrain_epochs and name.startswith(("fusion.fuse_base.",
                                                                                   "fusion.fuse_detail.")))]
        assert unchanged == [], f"parameters not stepped in epoch {epoch}: {unchanged[:5]}"
    trainer.leader_gradient = "unrolled"  # the unrolled step reaches the same parameters
    for module in (model.fusion, model.segmentation):
        module.zero_grad(set_to_none=True)
    losses = trainer.train_step(random_batch(trainer, seed=7))
    assert np.isfinite(losses["loss"]) and np.isfinite(losses["leader_loss"])
    assert gradients_missing(model.fusion) == []
    assert gradients_missing(model.segmentation) == [f"{lowest}.weight", f"{lowest}.bias"]


def _bilevel_rank(rank: int, world_size: int, init_file: str, results: str) -> None:
    os.environ["nnUNet_results"] = results
    start_rank(rank, world_size, init_file)
    torch.manual_seed(rank)                            # different initial weights: DDP must broadcast rank 0's
    trainer = cpu_trainer()
    assert trainer.is_ddp and trainer.local_rank == rank
    model = trainer.model()

    def same_on_every_rank() -> bool:
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world_size)]
        dist.all_gather(gathered, flat)
        return all(torch.equal(gathered[0], g) for g in gathered)

    assert same_on_every_rank()
    start = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    for epoch, leader_gradient in ((0, "first-order"), (trainer.pretrain_epochs, "first-order"),
                                   (trainer.pretrain_epochs, "unrolled")):  # pre-training, both bi-level steps
        trainer.current_epoch, trainer.leader_gradient = epoch, leader_gradient
        trainer.train_step(random_batch(trainer, seed=100 * rank + epoch))  # each rank its own data
        assert same_on_every_rank(), f"ranks diverged after the {leader_gradient} step of epoch {epoch}"
    assert not torch.equal(start, torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    end_rank()


def test_bilevel_steps_keep_two_ranks_identical(tmp_path):
    """Two ranks with different data: after the follower and leader steps of both phases (and of the unrolled leader
    gradient) the networks are still identical (each step's gradients were averaged), as nnUNetv2_train -num_gpus 2 needs."""
    mp.spawn(_bilevel_rank, args=(2, str(tmp_path / "init"), str(tmp_path / "results")), nprocs=2)

