"""Activation checkpointing for the blocks of our networks: a training forward keeps only a block's inputs and runs
the block again in the backward (torch.utils.checkpoint, non-reentrant: DDP, autocast and torch.compile work)."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint


def run_block(enabled: bool, block: Callable[..., torch.Tensor], *inputs) -> torch.Tensor:
    """block(*inputs); when ``enabled`` and autograd records (a training forward), recomputed in the backward
    instead of keeping what it would save."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(block, *inputs, use_reentrant=False)
    return block(*inputs)
