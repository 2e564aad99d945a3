"""Resampling of decoder states without scatter-add backwards.

``F.interpolate(mode="(bi|tri)linear")`` and ``mode="area"`` compute their CUDA backward with atomic adds, and in
FuseUNet the coarsest forcings are upsampled by 16–32× per axis: thousands of output voxels add into each input
voxel, which serialises the atomics (measured on an H100: FuseUNet's training step slower than nnU-Net's whole
network). Here linear upsampling is one small matrix product per axis (its backward is a matrix product too) and
area downsampling by an integer factor is average pooling. Both compute the same maths as F.interpolate.

Under torch.compile (nnU-Net compiles on CUDA) 2D upsampling stays F.interpolate: inductor's own 2D kernel beat the
matrix products there (FuseUNet step on an H100, ACDC 2d batch 20: 16.7 vs 26.9 ms), while in 3D the matrix
products won (BraTS-like 128³ batch 2: 28.3 vs 53.2 ms); benchmarks/compile_variants.py.
"""
from __future__ import annotations

from math import prod
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from nnunet_fuse.constant_cache import constant_tensor_cache

_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def interpolation_matrix(n_in: int, n_out: int, device: Optional[torch.device] = None,
                         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(n_out, n_in) matrix of 1-D linear interpolation as F.interpolate computes it with align_corners=False and a
    given output size: source coordinate (i + 0.5)·n_in/n_out − 0.5, clamped at 0, two neighbours, edge repeated."""
    src = ((torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    frac = src - low
    rows = torch.arange(n_out, device=device)
    weights = torch.zeros(n_out, n_in, dtype=torch.float64, device=device)
    weights.index_put_((rows, low), 1 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights.to(dtype)


@constant_tensor_cache(maxsize=128)
def linear_weights(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """interpolation_matrix, cached per size, device and dtype (constant_tensor_cache)."""
    return interpolation_matrix(n_in, n_out, device, dtype)


def linear_upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, C, *spatial) → (B, C, *size): linear/bilinear/trilinear interpolation, align_corners=False, one matrix
    product per axis whose size changes (last axis first, so intermediates stay small); F.interpolate for 2D under
    torch.compile (see the module docstring)."""
    batch, channels, *spatial = x.shape
    if len(size) != len(spatial):
        raise ValueError(f"size {list(size)} has {len(size)} axes, the input {len(spatial)} spatial axes")
    if len(spatial) == 2 and torch.compiler.is_compiling():
        return F.interpolate(x, size=[int(s) for s in size], mode="bilinear", align_corners=False)
    for axis in reversed(range(len(spatial))):
        n_in, n_out = spatial[axis], int(size[axis])
        if n_in == n_out:
            continue
        weights = linear_weights(n_in, n_out, x.device, x.dtype)
        before, after = batch * channels * prod(spatial[:axis]), prod(spatial[axis + 1:])
        if after == 1:  # (before, n_in) @ (n_in, n_out)
            x = x.reshape(before, n_in) @ weights.t()
        else:  # (n_out, n_in) @ (before, n_in, after)
            x = torch.matmul(weights, x.reshape(before, n_in, after))
        spatial[axis] = n_out
    return x.reshape(batch, channels, *spatial)


def linear_upsample_adjoint(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, C, *spatial) → (B, C, *size): the adjoint (transpose) of linear_upsample from size to spatial, i.e. the
    gradient of linear_upsample(·, spatial) at its input; one matrix product per axis whose size changes (first axis
    first, so intermediates shrink early)."""
    batch, channels, *spatial = x.shape
    if len(size) != len(spatial):
        raise ValueError(f"size {list(size)} has {len(size)} axes, the input {len(spatial)} spatial axes")
    for axis in range(len(spatial)):
        n_in, n_out = int(size[axis]), spatial[axis]
        if n_in == n_out:
            continue
        weights = linear_weights(n_in, n_out, x.device, x.dtype)  # (n_out, n_in)
        before, after = batch * channels * prod(spatial[:axis]), prod(spatial[axis + 1:])
        if after == 1:  # (before, n_out) @ (n_out, n_in)
            x = x.reshape(before, n_out) @ weights
        else:  # (n_in, n_out) @ (before, n_out, after)
            x = torch.matmul(weights.t(), x.reshape(before, n_out, after))
        spatial[axis] = n_in
    return x.reshape(batch, channels, *spatial)


def area_downsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, C, *spatial) → (B, C, *size), as F.interpolate(mode="area"): average pooling when every axis shrinks by
    an integer factor (always so for nnU-Net's patch sizes), else adaptive average pooling."""
    spatial = x.shape[2:]
    factors = [s // t for s, t in zip(spatial, size)]
    if all(t * f == s for s, t, f in zip(spatial, size, factors)):
        return _AVG_POOL[len(spatial)](x, kernel_size=factors, stride=factors)
    return F.interpolate(x, size=list(size), mode="area")
