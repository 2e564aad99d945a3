"""The FuseUNet decoder: encoder skips fused by one linear-multistep ODE solve (DESIGN.md §2).

State y (C_y channels, full input resolution) starts at zero. Skip k (coarsest first) enters through
g_k = upsample(Conv1x1(s_k)) and the field F_k(y) = -y + ReLU(y + g_k); one step of size h = 1/N per skip.
No conv blocks: the decoder's parameters are N 1×1 projections and one 1×1 head.
Eager mode solves with fused_solve (one autograd node, fewer full-resolution passes); under torch.compile with
multistep_solve over skip_field fields, autograd's ops that the compiler fuses itself. Both compute the same maths.
On the CPU in eager mode the 1×1 convolutions compute their gradients as matrix products (pointwise_conv), and each
step of the solve is one pass of C kernels compiled on first use (native.py).
"""
from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from math import prod
from typing import List, Sequence, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn

from nnunet_fuse.ode.fused_solve import fuseunet_solve
from nnunet_fuse.ode.multistep import MAX_ORDER, multistep_solve
from nnunet_fuse.ode.pointwise_conv import PointwiseConv2d, PointwiseConv3d
from nnunet_fuse.ode.resample import area_downsample, linear_upsample


def default_state_channels(num_classes: int) -> int:
    """The paper's state width: 2·K for K ≥ 3 segmentation heads, else 6."""
    return 2 * num_classes if num_classes >= 3 else 6


class _SkipField(torch.autograd.Function):
    """F(y) = -y + ReLU(y + g), computed as max(g, -y).

    Saves one boolean mask (y + g > 0, i.e. g > -y: a float sum is zero only for exact negatives and keeps the sign)
    for backward instead of the ReLU output: 1 byte per element instead of 2 (float16) or 4 (float32); as many
    elementwise passes as the ReLU form. Gradients are those of the ReLU form, including ReLU'(0) = 0:
    dF/dg = mask, dF/dy = mask - 1.
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        negative_y = torch.neg(y)
        ctx.save_for_backward(g > negative_y)
        return torch.maximum(g, negative_y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (active,) = ctx.saved_tensors
        grad_g = grad * active.to(grad.dtype)  # not torch.where: ~10× slower than a multiply on CPU
        return grad_g - grad, grad_g


def skip_field(y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """F(y) = -y + ReLU(y + g) (nmODE form); y, g: (B, C_y, *spatial), same shape."""
    return _SkipField.apply(y, g)


class SkipFields(SequenceABC):
    """The fields F_k, coarsest skip first, each built on first access: g_k = upsample(Conv1x1(s_k)) is computed
    once, kept while field k is in use, and released when the solver moves to field k+1 (the solver's access order,
    see multistep_solve). So at most one full-resolution forcing exists at a time instead of N."""

    def __init__(self, decoder: "FuseUNetDecoder", skips: Sequence[torch.Tensor], size: Sequence[int]):
        self.decoder, self.skips, self.size = decoder, skips, size
        self._index, self._forcing = None, None

    def __len__(self) -> int:
        return len(self.skips)

    def forcing(self, k: int) -> torch.Tensor:
        if k != self._index:
            stage = len(self.skips) - 1 - k
            self._index, self._forcing = k, self.decoder._skip_forcing(self.skips[stage], stage, self.size)
        return self._forcing

    def __getitem__(self, k: int):
        if not 0 <= k < len(self):
            raise IndexError(k)
        return lambda y: skip_field(y, self.forcing(k))


class FuseUNetDecoder(nn.Module):
    """Multistep ODE decoder over the skips of a dynamic_network_architectures encoder.

    encoder: exposes ``output_channels``, ``strides`` and ``conv_op`` (PlainConvEncoder, ResidualEncoder, ...).
    forward(skips): skips finest first, as the encoder returns them, skip s shaped (B, C_s, *size_s).
    Returns logits (B, num_classes, *input_size), or with deep supervision one tensor per encoder stage except the
    bottleneck, highest resolution first, output s shaped (B, num_classes, *size_s) — the scales nnU-Net's
    deep-supervision loss expects. One shared head serves every output, so no parameter is ever unused (DDP-safe).
    fused_solve=False solves with autograd's composition in eager mode too (for comparisons; same maths).
    cpu_matmul_backward: on the CPU in eager mode the 1×1 projections' and head's gradients are computed as matrix
    products (PointwiseConv2d/3d: nn.Conv with the same parameters; at full resolution 0.5–0.7× the time of oneDNN's
    convolution forward + backward there); False keeps nn.Conv's backward. Same values either way.
    cpu_native_solve: on the CPU in eager mode (float32/float64), each solve step runs as one pass over memory in C
    kernels built on first use with the system C compiler (native.py; without one, a warning and PyTorch operations);
    False: PyTorch operations. The same terms either way (equal to rounding).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool = False,
                 state_channels: Union[int, None] = None, max_order: int = MAX_ORDER, corrector: bool = True,
                 fused_solve: bool = True, cpu_matmul_backward: bool = True, cpu_native_solve: bool = True):
        super().__init__()
        n_stages = len(encoder.output_channels)
        if n_stages < 2:
            raise ValueError(f"FuseUNet needs an encoder with at least 2 stages (one skip plus the bottleneck), "
                             f"got {n_stages}. Use a plans configuration with n_stages >= 2.")
        if not 1 <= max_order <= MAX_ORDER:
            raise ValueError(f"max_order must be between 1 and {MAX_ORDER}, got {max_order}")
        self.conv_op = encoder.conv_op
        self.dim = convert_conv_op_to_dim(self.conv_op)
        if self.dim not in (2, 3):
            raise ValueError(f"FuseUNet is 2D or 3D; the encoder's conv_op {self.conv_op.__name__} is {self.dim}D")
        self.strides = [list(s) if isinstance(s, (list, tuple)) else [s] * self.dim for s in encoder.strides]
        self.num_classes = num_classes
        self.state_channels = state_channels or default_state_channels(num_classes)
        self.max_order = max_order
        self.corrector = corrector
        self.deep_supervision = deep_supervision
        self.fused_solve = fused_solve  # eager mode: fused_solve; False: autograd's composition, as under compile
        self.cpu_native_solve = cpu_native_solve
        # projections[s] belongs to encoder stage s (finest first, like the skips)
        pointwise = {2: PointwiseConv2d, 3: PointwiseConv3d}[self.dim]
        self.projections = nn.ModuleList(pointwise(c, self.state_channels) for c in encoder.output_channels)
        self.head = pointwise(self.state_channels, num_classes)
        self.cpu_matmul_backward = cpu_matmul_backward

    @property
    def cpu_matmul_backward(self) -> bool:
        return self.head.matmul_backward

    @cpu_matmul_backward.setter
    def cpu_matmul_backward(self, value: bool) -> None:
        for conv in (*self.projections, self.head):
            conv.matmul_backward = value

    @property
    def n_stages(self) -> int:
        return len(self.projections)

    def _input_size(self, finest_skip_size: Sequence[int]) -> List[int]:
        return [s * st for s, st in zip(finest_skip_size, self.strides[0])]

    def _skip_forcing(self, skip: torch.Tensor, stage: int, size: Sequence[int]) -> torch.Tensor:
        """g_s = upsample(Conv1x1(skip)): (B, C_s, *size_s) → (B, C_y, *size); 1×1 conv at the skip's resolution."""
        g = self.projections[stage](skip)
        if list(g.shape[2:]) != list(size):
            g = linear_upsample(g, size)
        return g

    def forward(self, skips: Sequence[torch.Tensor]) -> Union[torch.Tensor, List[torch.Tensor]]:
        if len(skips) != self.n_stages:
            raise ValueError(f"expected {self.n_stages} skips (one per encoder stage), got {len(skips)}")
        size = self._input_size(skips[0].shape[2:])
        if torch.compiler.is_compiling() or not self.fused_solve:  # autograd's ops (the compiler fuses them)
            fields = SkipFields(self, skips, size)
            states = multistep_solve(fields, torch.zeros_like(fields.forcing(0)), h=1.0 / self.n_stages,
                                     max_order=self.max_order, corrector=self.corrector,
                                     keep_states=self.deep_supervision)
        else:  # the same maths in fewer full-resolution passes (fused_solve)
            forcings = [self.projections[s](skips[s]) for s in reversed(range(self.n_stages))]
            states = fuseunet_solve(forcings, size, h=1.0 / self.n_stages, max_order=self.max_order,
                                    corrector=self.corrector, keep_states=self.deep_supervision,
                                    native=self.cpu_native_solve)
        if not self.deep_supervision:
            return self.head(states[-1])
        # the state after the step that consumed stage s's skip, pooled to that stage's resolution
        outputs = []
        for s in range(self.n_stages - 1):
            state = states[self.n_stages - 1 - s]
            target = list(skips[s].shape[2:])
            if list(state.shape[2:]) != target:
                state = area_downsample(state, target)
            outputs.append(self.head(state))
        return outputs

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """Elements (channels × voxels, one sample) the decoder holds at the end of its forward, for nnU-Net's VRAM
        estimate, in float32 elements: what autograd saves (a boolean mask per field evaluation, a quarter element
        per voxel and channel; the head inputs; with deep supervision the full-resolution states that are pooled)
        plus the one full-resolution forcing g_k alive at a time (both solve paths). The skips are counted by the
        encoder.

        input_size: spatial size of the network input (no batch/channel axes).
        """
        n = self.n_stages
        full = prod(input_size)
        stage_sizes, size = [], list(input_size)
        for stride in self.strides:
            size = [i // j for i, j in zip(size, stride)]
            stage_sizes.append(prod(size))
        evaluations = 1 + (2 if self.corrector else 1) * (n - 1)
        if self.deep_supervision:
            kept = sum(s + (full if s != full else 0) for s in stage_sizes[:-1])  # head input (+ pooled state)
        else:
            kept = full
        return np.int64(self.state_channels * (full * evaluations // 4 + full + kept))
