"""HiFuse blocks, dimension-agnostic through ``conv_op`` (nn.Conv2d / nn.Conv3d), normalised with nnU-Net's
``norm_op``. All map (B, C, *S) → (B, C_out, *S).

- LocalBlock: depthwise → norm → 1×1 → GELU, residual (the local CNN branch; with an MLP ratio the paper's
  ConvNeXt block).
- GlobalBlock: (shifted-)window multi-head self-attention with a relative position bias (through
  ``scaled_dot_product_attention``), then a 1×1 MLP; both residual (the global branch).
- HFFBlock: fuses the local and global features of one stage with the previous stage's fused map (DESIGN.md §4).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn

from nnunet_fuse.constant_cache import constant_tensor_cache
from nnunet_fuse.hifuse.windows import (attention_mask, effective_window, pad_to_windows, relative_position_index,
                                        window_partition, window_reverse)


@constant_tensor_cache(maxsize=64)
def _position_index(window: Tuple[int, ...], table_window: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    """relative_position_index on ``device``, built once per window shape (not at every forward)."""
    return relative_position_index(window, table_window).to(device)


@constant_tensor_cache(maxsize=64)
def _attention_mask(padded: Tuple[int, ...], window: Tuple[int, ...], shift: Tuple[int, ...], valid: Tuple[int, ...],
                    device: torch.device) -> Optional[torch.Tensor]:
    """attention_mask, built once per (map, window, shift) and device (not at every forward)."""
    return attention_mask(padded, window, shift, valid, device)


def _norm(norm_op: Optional[Type[nn.Module]], channels: int, norm_op_kwargs: Optional[dict]) -> nn.Module:
    return norm_op(channels, **(norm_op_kwargs or {})) if norm_op is not None else nn.Identity()


class LocalBlock(nn.Module):
    """Residual local block. ``mlp_ratio`` 0 (ours, slim): x + GELU(1×1(norm(depthwise k(x)))); ``mlp_ratio`` r
    (the paper's ConvNeXt block): x + γ · 1×1(GELU(1×1 to r·C(norm(depthwise k(x))))), γ a per-channel layer scale
    starting at 1e-6."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, norm_op: Optional[Type[nn.Module]] = None,
                 norm_op_kwargs: Optional[dict] = None, kernel_size: int = 3, mlp_ratio: int = 0):
        super().__init__()
        self.depthwise = conv_op(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = _norm(norm_op, channels, norm_op_kwargs)
        if mlp_ratio:
            self.expand = conv_op(channels, mlp_ratio * channels, 1)
            self.project = conv_op(mlp_ratio * channels, channels, 1)
            self.scale = nn.Parameter(torch.full((channels,), 1e-6))
        else:
            self.pointwise = conv_op(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.depthwise(x))
        if hasattr(self, "pointwise"):
            return x + F.gelu(self.pointwise(y))
        scale = self.scale.reshape(1, -1, *([1] * (x.dim() - 2)))
        return x + scale * self.project(F.gelu(self.expand(y)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows: (B·nW, N, C) → (B·nW, N, C), with a learned bias per head and
    relative offset (a table of prod(2·window − 1) entries) and an optional (nW, N, N) boolean mask."""

    def __init__(self, channels: int, heads: int, window: Sequence[int]):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads, self.window = heads, tuple(window)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.project = nn.Linear(channels, channels)
        size = 1
        for w in self.window:
            size *= 2 * w - 1
        self.bias_table = nn.Parameter(torch.zeros(size, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)

    def forward(self, windows: torch.Tensor, window: Sequence[int], mask: Optional[torch.Tensor]) -> torch.Tensor:
        bw, n, c = windows.shape
        q, k, v = self.qkv(windows).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        index = _position_index(tuple(window), self.window, windows.device)
        bias = self.bias_table[index.reshape(-1)].reshape(n, n, self.heads).permute(2, 0, 1)   # (h, N, N)
        bias = bias.to(q.dtype).unsqueeze(0).expand(bw, -1, -1, -1)
        if mask is not None:
            n_windows = mask.shape[0]
            blocked = ~mask.unsqueeze(1)                                                      # (nW, 1, N, N)
            bias = bias.reshape(bw // n_windows, n_windows, self.heads, n, n).masked_fill(
                blocked.unsqueeze(0), float("-inf")).reshape(bw, self.heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)                        # (B·nW, h, N, d)
        return self.project(out.transpose(1, 2).reshape(bw, n, c))


class GlobalBlock(nn.Module):
    """Swin-style block on a (B, C, *S) map: x + W-MSA(norm x) (windows shifted by half a window when ``shift``),
    then x + MLP(norm x). The window is clipped to small maps; no shift along axes one window covers."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, heads: int, window: Sequence[int], shift: bool,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 mlp_ratio: int = 4):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        if len(window) != dim:
            raise ValueError(f"window {tuple(window)} needs {dim} entries for {conv_op.__name__}")
        self.window = tuple(window)
        self.shift = tuple(w // 2 for w in window) if shift else (0,) * dim
        self.norm1 = _norm(norm_op, channels, norm_op_kwargs)
        self.attention = WindowAttention(channels, heads, window)
        self.norm2 = _norm(norm_op, channels, norm_op_kwargs)
        self.mlp = nn.Sequential(conv_op(channels, mlp_ratio * channels, 1), nn.GELU(),
                                 conv_op(mlp_ratio * channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        window, shift = effective_window(spatial, self.window, self.shift)
        y = pad_to_windows(self.norm1(x), window)
        padded = tuple(y.shape[2:])
        axes = list(range(2, y.dim()))
        if any(shift):
            y = torch.roll(y, [-s for s in shift], dims=axes)
        mask = _attention_mask(padded, window, shift, spatial, x.device)
        y = window_reverse(self.attention(window_partition(y, window), window, mask), window, padded)
        if any(shift):
            y = torch.roll(y, list(shift), dims=axes)
        x = x + y[(slice(None), slice(None), *[slice(0, s) for s in spatial])]
        return x + self.mlp(self.norm2(x))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: x · σ(conv7([mean_c x; max_c x]))."""

    def __init__(self, conv_op: Type[nn.Module]):
        super().__init__()
        self.conv = conv_op(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


class ChannelAttention(nn.Module):
    """CBAM channel attention (reduction r): x · σ(MLP(avgpool x) + MLP(maxpool x))."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(conv_op(channels, hidden, 1), nn.ReLU(inplace=True), conv_op(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(2, x.dim()))
        avg, peak = x.mean(axes, keepdim=True), x.amax(axes, keepdim=True)
        return x * torch.sigmoid(self.mlp(avg) + self.mlp(peak))


class IRMLP(nn.Module):
    """Inverted residual MLP: x + depthwise 3 (x), then 1×1 expand ×ratio → GELU → 1×1 to c_out."""

    def __init__(self, conv_op: Type[nn.Module], c_in: int, c_out: int, ratio: int = 4):
        super().__init__()
        self.depthwise = conv_op(c_in, c_in, 3, padding=1, groups=c_in)  # a real depthwise conv (groups = c_in)
        self.expand = conv_op(c_in, ratio * c_in, 1)
        self.project = conv_op(ratio * c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.depthwise(x)
        return self.project(F.gelu(self.expand(x)))


class HFFBlock(nn.Module):
    """Hierarchical feature fusion of one stage: local L (B, c_local, *S), global G (B, c_global, *S) and the previous
    stage's fused map P (B, c_previous, *S') with S = ceil(S' / stride), or None for the first stage → (B, c_out, *S).

    X = mix(norm([pool P; 1×1 L; 1×1 G])); L_a = spatial attention(L); G_a = channel attention(G);
    F = 1×1 shortcut([G_a; L_a; X]) + IRMLP(norm([G_a; L_a; X])).
    """

    def __init__(self, conv_op: Type[nn.Module], c_local: int, c_global: int, c_out: int,
                 c_previous: Optional[int] = None, stride: Sequence[int] = (),
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 reduction: int = 16, irmlp_ratio: int = 4):
        super().__init__()
        self.local_in, self.global_in = conv_op(c_local, c_out, 1), conv_op(c_global, c_out, 1)
        self.previous_in = conv_op(c_previous, c_out, 1) if c_previous else None
        self.stride = tuple(stride)
        mixed = c_out * (3 if c_previous else 2)
        self.mix = nn.Sequential(_norm(norm_op, mixed, norm_op_kwargs), conv_op(mixed, c_out, 1))
        self.spatial_attention = SpatialAttention(conv_op)
        self.channel_attention = ChannelAttention(conv_op, c_global, reduction)
        fused = c_global + c_local + c_out
        self.shortcut = conv_op(fused, c_out, 1)
        self.norm = _norm(norm_op, fused, norm_op_kwargs)
        self.irmlp = IRMLP(conv_op, fused, c_out, irmlp_ratio)

    def forward(self, local: torch.Tensor, global_: torch.Tensor,
                previous: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (previous is None) != (self.previous_in is None):
            raise ValueError("HFFBlock built " + ("with" if self.previous_in is not None else "without")
                             + " a previous stage input, called " + ("without" if previous is None else "with"))
        parts = [self.local_in(local), self.global_in(global_)]
        if previous is not None:
            pool = F.avg_pool2d if local.dim() == 4 else F.avg_pool3d
            stride = self.stride or tuple(-(-p // s) for p, s in zip(previous.shape[2:], local.shape[2:]))
            # ceil_mode: a side not divisible by the stride gives ceil(n / stride), as the stages' strided convs do
            parts.insert(0, self.previous_in(pool(previous, stride, stride, ceil_mode=True)))
        x = self.mix(torch.cat(parts, 1))
        merged = torch.cat([self.channel_attention(global_), self.spatial_attention(local), x], 1)
        return self.shortcut(merged) + self.irmlp(self.norm(merged))
