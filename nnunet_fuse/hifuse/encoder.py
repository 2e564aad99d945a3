"""HiFuseEncoder: a local CNN branch and a global window-attention branch, fused stage by stage by HFF blocks; it
exposes what nnU-Net's decoders read (``output_channels``, ``strides``, ``kernel_sizes``, ``conv_op``, norm /
dropout / nonlinearity settings, ``return_skips``), so it plugs under nnU-Net's UNetDecoder and the FuseUNet decoder.

Stage s: each branch downsamples its own previous output (conv with the plan's kernel and stride → norm → nonlin)
and runs its blocks (``n_conv_per_stage[s]`` LocalBlocks; at global stages ``global_blocks_per_stage[s]`` (2)
GlobalBlocks, every second with shifted windows). At a global stage the skip is HFF(local, global, previous skip);
elsewhere it is the local output. The global branch starts from the local branch's output of the stage before its
first stage. (B, C_in, *S) → list of skips (B, features[s], *S / cumulative stride) (or the last one when
``return_skips`` is False).

Widths are nnU-Net's (up to 320 in 3D, 512 in 2D), so the paper's expansions are slimmed: the global blocks' MLP
expands ×``mlp_ratio`` (2; the paper 4), the HFF blocks' IRMLP ×``irmlp_ratio`` (1; the paper 4) and the local
blocks are depthwise 3 + 1×1 (``local_kernel_size`` 7 and ``local_mlp_ratio`` 4: the paper's ConvNeXt blocks) — at
the paper's ratios HiFuse on ACDC's 2d plan had 69 M parameters (nnU-Net's network: 21 M). The classifier's
``paper`` layout (hifuse/classifier.py) sets them all as published.

With ``activation_checkpointing`` (the plans' default) each stage's local blocks, global blocks and HFF block keep only
their inputs during a training forward and run again in the backward (torch.utils.checkpoint): about one more forward
of those blocks; on ACDC's 2d plan the training step's peak memory drops from 2.39× to 1.28× nnU-Net's
(benchmarks/README.md).
"""
from __future__ import annotations

import functools
from typing import List, Optional, Sequence, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn

from nnunet_fuse.activation_checkpoint import run_block
from nnunet_fuse.hifuse.blocks import GlobalBlock, HFFBlock, LocalBlock

IntOrSeq = Union[int, Sequence[int], Sequence[Sequence[int]]]


def _per_stage(value: IntOrSeq, n_stages: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_stages
    if len(values) != n_stages:
        raise ValueError(f"{name} needs {n_stages} entries (one per stage), got {len(values)}")
    return values


def _per_axis(value, dim: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * dim


class HiFuseEncoder(nn.Module):
    def __init__(self, input_channels: int, n_stages: int, features_per_stage: IntOrSeq, conv_op: Type[nn.Module],
                 kernel_sizes: IntOrSeq, strides: IntOrSeq, n_conv_per_stage: IntOrSeq, conv_bias: bool = False,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Optional[Type[nn.Module]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = None, nonlin_kwargs: Optional[dict] = None,
                 return_skips: bool = True, global_stages: Optional[Sequence[int]] = None,
                 window_size: IntOrSeq = None, head_channels: int = 32, mlp_ratio: int = 2, irmlp_ratio: int = 1,
                 global_blocks_per_stage: IntOrSeq = 2, local_kernel_size: int = 3, local_mlp_ratio: int = 0,
                 activation_checkpointing: bool = False):
        super().__init__()
        if n_stages < 2:
            raise ValueError(f"HiFuseEncoder needs at least 2 stages, got {n_stages}")
        dim = convert_conv_op_to_dim(conv_op)
        self.output_channels = [int(f) for f in _per_stage(features_per_stage, n_stages, "features_per_stage")]
        self.kernel_sizes = [_per_axis(k, dim) for k in _per_stage(kernel_sizes, n_stages, "kernel_sizes")]
        self.strides = [_per_axis(s, dim) for s in _per_stage(strides, n_stages, "strides")]
        n_blocks = _per_stage(n_conv_per_stage, n_stages, "n_conv_per_stage")
        n_global_blocks = _per_stage(global_blocks_per_stage, n_stages, "global_blocks_per_stage")
        for name, values in (("kernel_sizes", self.kernel_sizes), ("strides", self.strides)):
            if any(len(v) != dim for v in values):
                raise ValueError(f"{name} must have {dim} entries per stage for {conv_op.__name__}")
        self.global_stages = sorted(set(range(n_stages // 2, n_stages) if global_stages is None else global_stages))
        if not self.global_stages or not all(0 <= s < n_stages for s in self.global_stages):
            raise ValueError(f"global_stages must be stage indices in [0, {n_stages}), got {global_stages}")
        window = _per_axis(window_size if window_size is not None else (7 if dim == 2 else 4), dim)
        self.conv_op, self.conv_bias, self.return_skips = conv_op, conv_bias, return_skips
        self.activation_checkpointing = activation_checkpointing
        self.norm_op, self.norm_op_kwargs = norm_op, norm_op_kwargs
        self.dropout_op, self.dropout_op_kwargs = dropout_op, dropout_op_kwargs
        self.nonlin, self.nonlin_kwargs = nonlin, nonlin_kwargs

        def down(c_in: int, s: int) -> nn.Module:
            kernel = self.kernel_sizes[s]
            layers = [conv_op(c_in, self.output_channels[s], kernel, self.strides[s], [k // 2 for k in kernel],
                              bias=conv_bias)]
            if norm_op is not None:
                layers.append(norm_op(self.output_channels[s], **(norm_op_kwargs or {})))
            if dropout_op is not None:
                layers.append(dropout_op(**(dropout_op_kwargs or {})))
            if nonlin is not None:
                layers.append(nonlin(**(nonlin_kwargs or {})))
            return nn.Sequential(*layers)

        self.local_down, self.local_blocks = nn.ModuleList(), nn.ModuleList()
        self.global_down, self.global_blocks, self.hff = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        for s, c in enumerate(self.output_channels):
            c_prev = input_channels if s == 0 else self.output_channels[s - 1]
            self.local_down.append(down(c_prev, s))
            self.local_blocks.append(nn.Sequential(*(LocalBlock(conv_op, c, norm_op, norm_op_kwargs,
                                                                local_kernel_size, local_mlp_ratio)
                                                     for _ in range(n_blocks[s]))))
            if s in self.global_stages:
                key = str(s)
                self.global_down[key] = down(c_prev, s)
                heads = max(1, c // head_channels)
                self.global_blocks[key] = nn.Sequential(*(GlobalBlock(conv_op, c, heads, window, i % 2 == 1,
                                                                      norm_op, norm_op_kwargs, mlp_ratio)
                                                          for i in range(n_global_blocks[s])))
                self.hff[key] = HFFBlock(conv_op, c, c, c, c_previous=c_prev if s > 0 else None,
                                         stride=self.strides[s], norm_op=norm_op, norm_op_kwargs=norm_op_kwargs,
                                         irmlp_ratio=irmlp_ratio)

    def forward(self, x: torch.Tensor) -> Union[List[torch.Tensor], torch.Tensor]:
        skips: List[torch.Tensor] = []
        local = global_ = x
        run = functools.partial(run_block, self.activation_checkpointing)
        for s in range(len(self.output_channels)):
            previous_local = local
            local = run(self.local_blocks[s], self.local_down[s](local))
            if str(s) in self.global_down:
                source = global_ if (s - 1) in self.global_stages else previous_local
                global_ = run(self.global_blocks[str(s)], self.global_down[str(s)](source))
                skips.append(run(self.hff[str(s)], local, global_, skips[-1] if s > 0 else None))
            else:
                skips.append(local)
        return skips if self.return_skips else skips[-1]

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Elements (one sample, float32) a training forward keeps for the backward, stage outputs included.

        Per stage, in maps of the stage's size and width: each downsampling conv keeps 2 (conv and norm/nonlin
        outputs) and each block stack its output; without activation checkpointing also each block's inside
        (measured: local 3, global about 20, HFF about 22 — the attention's share varies with the window)."""
        local_block, global_block, hff_block = (0, 0, 0) if self.activation_checkpointing else (3, 20, 22)
        total, size = 0, list(input_size)
        for s, c in enumerate(self.output_channels):
            size = [i // st for i, st in zip(size, self.strides[s])]
            n_local = len(self.local_blocks[s])
            maps = 2 + (n_local > 0) + local_block * n_local
            if s in self.global_stages:
                maps += 2 + 1 + global_block * len(self.global_blocks[str(s)]) + 1 + hff_block
            total += c * int(np.prod(size, dtype=np.int64)) * maps
        return total


def attention_settings(patch_size: Sequence[int], strides: Sequence[Sequence[int]], max_global_voxels: int,
                       max_window: int) -> dict:
    """Where global attention is affordable in a plan, and a window that divides the maps there.

    Global stages: those whose feature map has at most ``max_global_voxels`` voxels (always the last stage). Window,
    per axis: the largest w in [2, max_window] dividing every global stage's map larger than w (smaller maps are one
    window, clipped, and not shifted); failing that, the smallest global map along the axis when it is at most
    2·max_window (one window across it there), else max_window (larger maps padded).
    Returns {"global_stages": [...], "window_size": [...]}.
    """
    sizes, current = [], list(patch_size)
    for stride in strides:
        current = [c // s for c, s in zip(current, stride)]
        sizes.append(list(current))
    voxels = [int(np.prod(s)) for s in sizes]
    global_stages = [i for i, v in enumerate(voxels) if v <= max_global_voxels] or [len(sizes) - 1]
    window = []
    for axis in range(len(patch_size)):
        maps = [sizes[i][axis] for i in global_stages]
        dividing = [w for w in range(max_window, 1, -1) if all(m <= w or m % w == 0 for m in maps)]
        window.append(dividing[0] if dividing else min(maps) if min(maps) <= 2 * max_window else max_window)
    return {"global_stages": global_stages, "window_size": window}
