"""1×1 convolutions whose backward is matrix products, for the FuseUNet decoder's projections and head on the CPU.

A 1×1 convolution is, per sample, W (C_out, C_in) @ x (C_in, V) + b over the V voxels. Its forward stays oneDNN's
convolution; its backward is grad_x = Wᵀ @ grad and grad_W = Σ grad @ xᵀ. Measured on the 2-core CI machine,
forward + backward of the finest projection (32 → C_y channels at full resolution) took 0.62× (3D, 64³) and 0.72×
(2D, 4 × 256 × 224) the time of nn.Conv, the head 0.52× / 0.63× (benchmarks/decoder_speed.py). On CUDA cuDNN's
convolution is kept, and torch.compile sees the plain convolution too.
PointwiseConv2d / PointwiseConv3d are nn.Conv2d / nn.Conv3d (same parameters, state dict and hooks) that do this.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class _PointwiseConv(torch.autograd.Function):
    """apply(x, weight, bias) = conv(x, weight, bias) for a 1×1 kernel; backward one matrix product per sample.

    x: (B, C_in, *spatial); weight: (C_out, C_in, 1, ..., 1); bias: (C_out,) or None. Returns (B, C_out, *spatial).
    Saves x and weight, as the convolution does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        convolution = torch.nn.functional.conv3d if x.dim() == 5 else torch.nn.functional.conv2d
        out = convolution(x, weight, bias)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        batch, in_channels = x.shape[:2]
        matrix = weight.reshape(weight.shape[0], in_channels)
        columns = x.reshape(batch, in_channels, -1)
        grad_columns = grad.reshape(batch, matrix.shape[0], -1)
        grad_x = grad_weight = grad_bias = None
        # gradients are written through views of tensors that are returned whole: autograd can then accumulate into
        # them in place where a gradient is summed (a returned view costs a fresh full-resolution copy)
        with torch.autocast(x.device.type, enabled=False):  # products in the forward's dtype
            if ctx.needs_input_grad[0]:
                grad_x = torch.empty_like(x)
                grad_x_columns = grad_x.view_as(columns)
                for sample in range(batch):
                    torch.mm(matrix.t(), grad_columns[sample], out=grad_x_columns[sample])
            if ctx.needs_input_grad[1]:
                grad_weight = torch.zeros_like(weight)
                grad_matrix = grad_weight.view_as(matrix)
                for sample in range(batch):
                    grad_matrix.addmm_(grad_columns[sample], columns[sample].t())
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_bias = grad_columns.sum(dim=(0, 2))
        return grad_x, grad_weight, grad_bias


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """conv(x, weight, bias) for a 1×1 (×1) kernel, 2D and 3D, its gradients computed as matrix products; under
    autocast in the autocast dtype, as the convolution would be.

    x: (B, C_in, *spatial); weight: (C_out, C_in, 1, ..., 1); bias: (C_out,) or None. Returns (B, C_out, *spatial).
    """
    if weight.dim() != x.dim() or any(k != 1 for k in weight.shape[2:]) or weight.shape[1] != x.shape[1]:
        raise ValueError(f"pointwise_conv needs a 1×1 kernel over the input's {x.shape[1]} channels and "
                         f"{x.dim() - 2} spatial axes, got weight {tuple(weight.shape)} for input {tuple(x.shape)}")
    device_type = x.device.type
    tensors = (x.contiguous(), weight, bias)
    if torch.is_autocast_enabled(device_type):  # otherwise mismatched dtypes raise in the convolution, as nn.Conv's
        dtype = torch.get_autocast_dtype(device_type)
        tensors = [t if t is None else t.to(dtype) for t in tensors]
    with torch.autocast(device_type, enabled=False):
        return _PointwiseConv.apply(*tensors)


class _MatmulBackward:
    """Mixin for nn.Conv2d / nn.Conv3d with a 1×1 kernel: on the CPU in eager mode the convolution is pointwise_conv
    (set matmul_backward = False for nn.Conv's own backward); elsewhere, and under torch.compile, the convolution."""

    matmul_backward = True

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if self.matmul_backward and input.device.type == "cpu" and not torch.compiler.is_compiling():
            return pointwise_conv(input, weight, bias)
        return super()._conv_forward(input, weight, bias)


class PointwiseConv2d(_MatmulBackward, nn.Conv2d):
    """nn.Conv2d(in_channels, out_channels, kernel_size=1) whose CPU backward is matrix products."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)


class PointwiseConv3d(_MatmulBackward, nn.Conv3d):
    """nn.Conv3d(in_channels, out_channels, kernel_size=1) whose CPU backward is matrix products."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)
