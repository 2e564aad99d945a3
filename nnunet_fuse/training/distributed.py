"""Gradient averaging over torch.distributed ranks, for trainers whose optimisers step parts of one network.

nnU-Net wraps the whole network in one DistributedDataParallel module (``-num_gpus > 1``). A bi-level trainer steps
the fusion network and the segmentation network in separate backward passes, each touching only its own part, so it
averages each part's gradients itself, after backward and before the GradScaler unscales them (an inf or NaN on one
rank then reaches every rank, and all ranks skip the step together).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


def unwrapped(network: nn.Module) -> nn.Module:
    """The network inside nnU-Net's DistributedDataParallel and torch.compile wrappers (either, both or none)."""
    if isinstance(network, nn.parallel.DistributedDataParallel):
        network = network.module
    return getattr(network, "_orig_mod", network)


def distributed_world_size() -> int:
    """Number of ranks of the default process group; 1 outside torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each parameter's ``.grad`` by its mean over all ranks, in one all-reduce; a no-op on one rank.

    Every rank must pass the same parameters in the same order. A parameter without a gradient on a rank counts as
    zero there; it gets the averaged gradient if any rank had one, and keeps ``None`` if none had.
    """
    world_size = distributed_world_size()
    if world_size == 1:
        return
    parameters = list(parameters)
    if not parameters:
        return
    gradients = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flags = torch.tensor([float(p.grad is not None) for p in parameters], device=gradients[0].device)
    flat = torch.cat([g.reshape(-1).float() for g in gradients] + [flags])
    dist.all_reduce(flat)
    flat /= world_size
    any_gradient = flat[-len(parameters):].gt(0).tolist()
    offset = 0
    for p, has_gradient in zip(parameters, any_gradient):
        averaged = flat[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        if not has_gradient:
            continue
        if p.grad is None:
            p.grad = averaged.clone()
        else:
            p.grad.copy_(averaged)
