"""Fuse4Seg's fusion network: N modalities → one image in [0, 1], 2D and 3D (DESIGN.md §3).

Per modality (shared weights): robust rescaling to [0, 1] → shallow conv encoder → a base branch (global context by
transposed, channel-wise attention: cost linear in the number of voxels) and a detail branch (invertible coupling
blocks with depthwise convs). Base and detail features are averaged over modalities (so any N ≥ 2 works with the same
weights), refined once more, and decoded to one channel through a sigmoid. ``reconstruct`` decodes each modality from
its own features (the pre-training stage).
"""
from __future__ import annotations

from typing import Dict, List, Type

import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim, get_matching_instancenorm
from torch import nn

_MAX_QUANTILE_ELEMENTS = 2 ** 24  # torch.quantile refuses larger inputs


class RobustRescale(nn.Module):
    """Per sample and channel: (x − q_low) / (q_high − q_low) clamped to [0, 1], quantiles in percent; (B, C, *S).

    nnU-Net z-scores MRI channels, so intensity ranges differ by modality; percentiles ignore outliers. Quantiles are
    taken without gradient on evenly strided voxels, at most 2^24 in all (torch.quantile's input limit)."""

    def __init__(self, low: float = 0.5, high: float = 99.5, eps: float = 1e-6):
        super().__init__()
        if not 0 <= low < high <= 100:
            raise ValueError(f"need 0 <= low < high <= 100, got {low}, {high}")
        self.low, self.high, self.eps = low, high, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().flatten(2).float()
        per_channel = max(1, _MAX_QUANTILE_ELEMENTS // (flat.shape[0] * flat.shape[1]))
        step = -(-flat.shape[-1] // per_channel)  # ceil
        q = torch.quantile(flat[..., ::step], torch.tensor([self.low / 100, self.high / 100], device=x.device),
                           dim=-1)  # (2, B, C)
        shape = (*x.shape[:2],) + (1,) * (x.dim() - 2)
        low, high = q[0].reshape(shape).to(x.dtype), q[1].reshape(shape).to(x.dtype)
        return ((x - low) / (high - low + self.eps)).clamp(0, 1)


def _conv(conv_op: Type[nn.Module], c_in: int, c_out: int, kernel: int = 3, groups: int = 1) -> nn.Module:
    return conv_op(c_in, c_out, kernel_size=kernel, padding=kernel // 2, groups=groups)


class ConvBlock(nn.Sequential):
    """conv 3 → instance norm → LeakyReLU: (B, c_in, *S) → (B, c_out, *S)."""

    def __init__(self, conv_op: Type[nn.Module], c_in: int, c_out: int):
        super().__init__(_conv(conv_op, c_in, c_out), get_matching_instancenorm(conv_op)(c_out, affine=True),
                         nn.LeakyReLU(0.01, inplace=True))


class TransposedAttention(nn.Module):
    """Multi-head attention across channels (Restormer's MDTA): the attention map is (C/h × C/h) per head, so the
    cost is linear in the number of voxels. (B, C, *S) → (B, C, *S)."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, heads: int = 2):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = _conv(conv_op, channels, 3 * channels, kernel=1)
        self.qkv_depthwise = _conv(conv_op, 3 * channels, 3 * channels, groups=3 * channels)
        self.project = _conv(conv_op, channels, channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        q, k, v = self.qkv_depthwise(self.qkv(x)).flatten(2).reshape(b, 3, self.heads, c // self.heads, -1).unbind(1)
        q = nn.functional.normalize(q, dim=-1)
        k = nn.functional.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)  # (B, heads, C/h, C/h)
        return self.project((attention @ v).reshape(x.shape))


class BaseBlock(nn.Module):
    """Low-frequency branch block: x + attention(norm x), then x + depthwise-conv feed-forward(norm x)."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, heads: int = 2, expansion: int = 2):
        super().__init__()
        norm = get_matching_instancenorm(conv_op)
        hidden = channels * expansion
        self.norm1, self.norm2 = norm(channels, affine=True), norm(channels, affine=True)
        self.attention = TransposedAttention(conv_op, channels, heads)
        self.feed_forward = nn.Sequential(_conv(conv_op, channels, hidden, kernel=1), nn.GELU(),
                                          _conv(conv_op, hidden, hidden, groups=hidden), nn.GELU(),
                                          _conv(conv_op, hidden, channels, kernel=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.feed_forward(self.norm2(x))


class DepthwiseResidual(nn.Sequential):
    """1×1 expand → ReLU6 → depthwise 3 → ReLU6 → 1×1 project (the coupling functions φ, ρ, η)."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, expansion: int = 2):
        hidden = channels * expansion
        super().__init__(_conv(conv_op, channels, hidden, kernel=1), nn.ReLU6(inplace=True),
                         _conv(conv_op, hidden, hidden, groups=hidden), nn.ReLU6(inplace=True),
                         _conv(conv_op, hidden, channels, kernel=1))


class InvertibleCoupling(nn.Module):
    """Affine coupling (CDDFuse's detail block) on channel halves (x1, x2):
    x2' = x2 + φ(x1);  x1' = x1 · exp(s(x2')) + η(x2'),  s = max_log_scale · tanh(ρ / max_log_scale).
    Exactly invertible (``inverse``). (B, C, *S), C even.

    The log-scale is bounded (as in Glow-style flows): CDDFuse's unbounded exp(ρ) compounds over the blocks; at
    nnU-Net's He initialisation on real MRI it reached 2·10^7 in float32, past float16's range (AMP gave NaN)."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, max_log_scale: float = 1.0):
        super().__init__()
        if channels % 2:
            raise ValueError(f"InvertibleCoupling needs an even channel count, got {channels}")
        half = channels // 2
        self.max_log_scale = max_log_scale
        self.phi, self.rho, self.eta = (DepthwiseResidual(conv_op, half) for _ in range(3))

    def log_scale(self, x2: torch.Tensor) -> torch.Tensor:
        return self.max_log_scale * torch.tanh(self.rho(x2) / self.max_log_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        x2 = x2 + self.phi(x1)
        x1 = x1 * torch.exp(self.log_scale(x2)) + self.eta(x2)
        return torch.cat([x1, x2], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y.chunk(2, dim=1)
        x1 = (y1 - self.eta(y2)) * torch.exp(-self.log_scale(y2))
        return torch.cat([x1, y2 - self.phi(x1)], dim=1)


class FusionNetwork(nn.Module):
    """(B, N, *S) modalities → fused image (B, 1, *S) in [0, 1]; conv_op nn.Conv2d or nn.Conv3d.

    ``features(x)`` returns the per-modality base and detail features (lists of N tensors (B, channels, *S)) used by
    the decomposition loss; ``reconstruct(x)`` decodes every modality from its own features: (B, N, *S) in [0, 1];
    ``rescale(x)`` is the network's own [0, 1] view of the input, the target of the fusion losses.
    """

    def __init__(self, conv_op: Type[nn.Module], channels: int = 16, base_blocks: int = 1, detail_blocks: int = 2,
                 heads: int = 2):
        super().__init__()
        self.conv_op = conv_op
        self.dim = convert_conv_op_to_dim(conv_op)
        self.channels = channels
        self.rescale = RobustRescale()
        self.encoder = nn.Sequential(ConvBlock(conv_op, 1, channels), ConvBlock(conv_op, channels, channels))
        self.base = nn.Sequential(*(BaseBlock(conv_op, channels, heads) for _ in range(base_blocks)))
        self.detail = nn.Sequential(*(InvertibleCoupling(conv_op, channels) for _ in range(detail_blocks)))
        self.fuse_base = BaseBlock(conv_op, channels, heads)
        self.fuse_detail = InvertibleCoupling(conv_op, channels)
        self.decoder = nn.Sequential(ConvBlock(conv_op, 2 * channels, channels), _conv(conv_op, channels, 1),
                                     nn.Sigmoid())

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != self.dim + 2:
            raise ValueError(f"FusionNetwork ({self.dim}D) expects (B, N, *spatial) with {self.dim} spatial axes, "
                             f"got shape {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> Dict[str, List[torch.Tensor]]:
        self._check(x)
        b, n = x.shape[:2]
        shallow = self.encoder(self.rescale(x).reshape(b * n, 1, *x.shape[2:]))
        base, detail = self.base(shallow), self.detail(shallow)
        split = lambda t: list(t.reshape(b, n, *t.shape[1:]).unbind(1))  # noqa: E731
        return {"base": split(base), "detail": split(detail)}

    def fuse(self, features: Dict[str, List[torch.Tensor]]) -> torch.Tensor:
        base = self.fuse_base(torch.stack(features["base"]).mean(0))
        detail = self.fuse_detail(torch.stack(features["detail"]).mean(0))
        return self.decoder(torch.cat([base, detail], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.features(x))

    def decode_each(self, features: Dict[str, List[torch.Tensor]]) -> torch.Tensor:
        """Every modality decoded from its own base and detail features: (B, N, *S) in [0, 1]."""
        return torch.cat([self.decoder(torch.cat([b, d], dim=1)) for b, d in zip(features["base"],
                                                                                  features["detail"])], dim=1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_each(self.features(x))
