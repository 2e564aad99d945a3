"""Fuse4Seg's fusion network: N modalities → one image in [0, 1], 2D and 3D (DESIGN.md §3).

Per modality (shared weights): rescaling to [0, 1] with the dataset's per-channel ranges → a full-resolution stem
conv and a (strided) conv → a base branch (context by convolutional modulation, Conv2Former's attention) and a detail
branch (invertible coupling blocks with depthwise convs). Base and detail features
are averaged over modalities (so any N ≥ 2 works with the same weights), refined once more, upsampled, merged with
the modalities' mean full-resolution stem, and decoded to a correction of the average fusion: fused =
sigmoid(logit(mean_i rescaled_i) + decoder(...)). The decoder's last conv starts at zero, so an untrained network
fuses by the plain average, which the segmentation network can already read; training moves it from there.
``reconstruct`` decodes each modality from its own features as a correction of the same average (the pre-training
stage: what each modality adds to the average).

Tile-independent: no operation takes statistics across voxels (no instance norms: the base and coupling blocks
normalise their branches with layer norms over each voxel's channels; a local modulation instead of CDDFuse's
transposed attention; dataset-wide intensity ranges), so a voxel's fused value is the same in every sliding-window
tile that holds its receptive field (``receptive_radius``) on the same grid of the network's stride.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn

from nnunet_fuse.activation_checkpoint import run_block
from nnunet_fuse.ode.resample import linear_upsample

_MAX_QUANTILE_ELEMENTS = 2 ** 24  # torch.quantile refuses larger inputs


class RobustRescale(nn.Module):
    """Each channel to [0, 1]: (x − low) / (high − low), clamped; (B, C, *S).

    ``ranges``: one (low, high) per channel, constants of the dataset (``nnunet-fuse plan`` takes them from nnU-Net's
    intensity properties, in the units of nnU-Net's normalised data), so a voxel maps alike in every patch, tile and
    case. Without them (plans written before 0.2): per sample and channel the percentiles ``low`` and ``high``, taken
    without gradient on evenly strided voxels (at most 2^24 in all, torch.quantile's limit); these depend on the
    patch."""

    def __init__(self, ranges: Optional[Sequence[Sequence[float]]] = None, low: float = 0.5, high: float = 99.5,
                 eps: float = 1e-6):
        super().__init__()
        if not 0 <= low < high <= 100:
            raise ValueError(f"need 0 <= low < high <= 100, got {low}, {high}")
        if ranges is not None and any(len(r) != 2 or not r[0] < r[1] for r in ranges):
            raise ValueError(f"ranges must be one (low, high) with low < high per channel, got {ranges}")
        self.ranges = None if ranges is None else [tuple(float(v) for v in r) for r in ranges]
        self.low, self.high, self.eps = low, high, eps

    def _bounds(self, x: torch.Tensor):
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        if self.ranges is not None:
            if len(self.ranges) != x.shape[1]:
                raise ValueError(f"the fusion network rescales {len(self.ranges)} channels with the dataset's "
                                 f"ranges, got {x.shape[1]}: give every case the dataset's channels")
            bounds = torch.tensor(self.ranges, dtype=x.dtype, device=x.device).T  # (2, C)
            return bounds[0].reshape(shape), bounds[1].reshape(shape)
        flat = x.detach().flatten(2).float()
        per_channel = max(1, _MAX_QUANTILE_ELEMENTS // (flat.shape[0] * flat.shape[1]))
        step = -(-flat.shape[-1] // per_channel)  # ceil
        q = torch.quantile(flat[..., ::step], torch.tensor([self.low / 100, self.high / 100], device=x.device),
                           dim=-1)  # (2, B, C)
        shape = (x.shape[0],) + shape[1:]
        return q[0].reshape(shape).to(x.dtype), q[1].reshape(shape).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self._bounds(x)
        return ((x - low) / (high - low + self.eps)).clamp(0, 1)


def _conv(conv_op: Type[nn.Module], c_in: int, c_out: int, kernel: int = 3, groups: int = 1,
          stride: Union[int, Sequence[int]] = 1) -> nn.Module:
    return conv_op(c_in, c_out, kernel_size=kernel, padding=kernel // 2, groups=groups, stride=stride)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each voxel (Restormer's, ConvNeXt's), affine: (B, C, *S) → (B, C, *S).
    Unlike an instance norm it takes no statistics across voxels, so a voxel's output does not depend on the patch or
    tile it is computed in."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias,
                                        self.eps).movedim(-1, 1)


class ConvBlock(nn.Sequential):
    """conv 3 (stride) → LeakyReLU: (B, c_in, *S) → (B, c_out, *ceil(S / stride)). No norm on the main path: an
    instance norm takes statistics over the tile, and a layer norm over the channels of each voxel discards the
    voxel's magnitude, i.e. the intensity the fused image is made of (with one, the segmentation of the synthetic
    two-modality test data stayed at Dice 0 where it learns without). The base and coupling blocks normalise their
    branches only."""

    def __init__(self, conv_op: Type[nn.Module], c_in: int, c_out: int, stride: Union[int, Sequence[int]] = 1):
        super().__init__(_conv(conv_op, c_in, c_out, stride=stride), nn.LeakyReLU(0.01, inplace=True))


class ConvModulation(nn.Module):
    """Convolutional modulation (Conv2Former, Hou et al., TPAMI 2024), the base branch's attention: a large-kernel
    depthwise conv of one projection weights another voxel by voxel, project(dwconv_k(GELU(a(x))) ⊙ v(x)). Its context
    is a k^d neighbourhood (at the working resolution), so the output at a voxel is the same in every tile that holds
    the neighbourhood, where the transposed (channel) attention of Restormer/CDDFuse took statistics over the whole
    tile. (B, C, *S) → (B, C, *S)."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, kernel: int = 7):
        super().__init__()
        self.gate = nn.Sequential(_conv(conv_op, channels, channels, kernel=1), nn.GELU(),
                                  _conv(conv_op, channels, channels, kernel=kernel, groups=channels))
        self.value = _conv(conv_op, channels, channels, kernel=1)
        self.project = _conv(conv_op, channels, channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.gate(x) * self.value(x))


class BaseBlock(nn.Module):
    """Low-frequency branch block: x + modulation(norm x), then x + depthwise-conv feed-forward(norm x)."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, expansion: int = 2):
        super().__init__()
        hidden = channels * expansion
        self.norm1, self.norm2 = ChannelLayerNorm(channels), ChannelLayerNorm(channels)
        self.modulation = ConvModulation(conv_op, channels)
        self.feed_forward = nn.Sequential(_conv(conv_op, channels, hidden, kernel=1), nn.GELU(),
                                          _conv(conv_op, hidden, hidden, groups=hidden), nn.GELU(),
                                          _conv(conv_op, hidden, channels, kernel=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.modulation(self.norm1(x))
        return x + self.feed_forward(self.norm2(x))


class DepthwiseResidual(nn.Sequential):
    """channel layer norm → 1×1 expand → ReLU6 → depthwise 3 → ReLU6 → 1×1 project (the coupling functions φ, ρ, η).
    The norm keeps the ReLU6s alive whatever the scale and offset of the (unnormalised) features they read."""

    def __init__(self, conv_op: Type[nn.Module], channels: int, expansion: int = 2):
        hidden = channels * expansion
        super().__init__(ChannelLayerNorm(channels), _conv(conv_op, channels, hidden, kernel=1), nn.ReLU6(inplace=True),
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

    ``features(x)`` returns the per-modality features (lists of N tensors): "base" and "detail" (B, channels, *S')
    used by the decomposition loss, and "stem" (B, channels, *S), the full-resolution features of the first conv;
    and "average_logit" (B, 1, *S) (float32), the logit of the modalities' average, which the decoder corrects;
    ``reconstruct(x)`` decodes every modality from its own features: (B, N, *S) in [0, 1];
    ``rescale(x)`` is the network's own [0, 1] view of the input (per-channel ``intensity_ranges`` of the dataset, see
    RobustRescale), the target of the fusion losses.
    With ``downsample`` (a stride per axis, e.g. the plan's first downsampling) the second encoder conv is strided,
    so the base and detail branches and the fusion blocks run at S' = S / stride; the decoder projects them (1×1),
    upsamples linearly and merges the full-resolution stem before its last conv. Without it everything runs at S' = S.
    With ``activation_checkpointing`` a training forward keeps only the inputs and outputs of the encoder, the base
    and detail branches, the two fusion blocks and the decoder, and runs them again in the backward.
    """

    def __init__(self, conv_op: Type[nn.Module], channels: int = 16, base_blocks: int = 1, detail_blocks: int = 2,
                 downsample: Optional[Sequence[int]] = None, activation_checkpointing: bool = False,
                 intensity_ranges: Optional[Sequence[Sequence[float]]] = None):
        super().__init__()
        self.conv_op = conv_op
        self.activation_checkpointing = activation_checkpointing
        self.dim = convert_conv_op_to_dim(conv_op)
        self.channels = channels
        self.downsample = tuple(downsample) if downsample is not None and max(downsample) > 1 else None
        if self.downsample is not None and len(self.downsample) != self.dim:
            raise ValueError(f"downsample {list(downsample)} needs {self.dim} entries (one stride per axis)")
        self.rescale = RobustRescale(intensity_ranges)
        self.encoder = nn.Sequential(ConvBlock(conv_op, 1, channels),  # the stem, then the (strided) conv
                                     ConvBlock(conv_op, channels, channels, stride=self.downsample or 1))
        self.base = nn.Sequential(*(BaseBlock(conv_op, channels) for _ in range(base_blocks)))
        self.detail = nn.Sequential(*(InvertibleCoupling(conv_op, channels) for _ in range(detail_blocks)))
        self.fuse_base = BaseBlock(conv_op, channels)
        self.fuse_detail = InvertibleCoupling(conv_op, channels)
        # at the working resolution: base and detail → channels, then linear upsampling (ode.resample: F.interpolate's
        # maths without its scatter-add CUDA backward; no transposed conv: its kernel = stride gave a checkerboard)
        self.upsample_projection = (None if self.downsample is None
                                    else _conv(conv_op, 2 * channels, channels, kernel=1))
        self.decoder = nn.Sequential(ConvBlock(conv_op, 2 * channels, channels), _conv(conv_op, channels, 1))
        self.zero_correction()
        # channels-last weights make the convolutions keep their maps channels-last: on the CPU the depthwise
        # convolutions' backward then runs about 3x faster in 3D (benchmarks/README.md)
        self.memory_format = torch.channels_last if self.dim == 2 else torch.channels_last_3d
        self.to(memory_format=self.memory_format)

    def zero_correction(self) -> None:
        """Untrained state: the decoder's last conv at zero, so the network fuses by the average (call it again after
        re-initialising the weights, as nnU-Net does)."""
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != self.dim + 2:
            raise ValueError(f"FusionNetwork ({self.dim}D) expects (B, N, *spatial) with {self.dim} spatial axes, "
                             f"got shape {tuple(x.shape)}")

    def receptive_radius(self) -> Tuple[int, ...]:
        """Per axis, how far (voxels) from a voxel the input can change its fused value: a tile's output equals the
        whole image's wherever the tile holds this much around the voxel (on the grid of the stride). Full
        resolution: stem, strided conv and the decoder's two convs, one voxel each; working resolution (× stride):
        the longer branch (per base block the modulation's kernel // 2 + the feed-forward's 1; per coupling block
        φ then ρ/η, 1 each; the fusion blocks included) and the linear upsampling's one voxel."""
        kernel = self.fuse_base.modulation.gate[-1].kernel_size[0]
        base = (len(self.base) + 1) * (kernel // 2 + 1)
        detail = (len(self.detail) + 1) * 2
        working = max(base, detail) + (1 if self.downsample is not None else 0)
        return tuple(4 + s * working for s in (self.downsample or (1,) * self.dim))

    def features(self, x: torch.Tensor) -> Dict[str, List[torch.Tensor]]:
        self._check(x)
        b, n = x.shape[:2]
        run = functools.partial(run_block, self.activation_checkpointing)
        rescaled = self.rescale(x)
        stem = run(self.encoder[0], rescaled.reshape(b * n, 1, *x.shape[2:]))
        shallow = run(self.encoder[1], stem)
        base, detail = run(self.base, shallow), run(self.detail, shallow)
        split = lambda t: list(t.reshape(b, n, *t.shape[1:]).unbind(1))  # noqa: E731
        average_logit = torch.logit(rescaled.float().mean(1, keepdim=True), eps=1e-3)
        return {"base": split(base), "detail": split(detail), "stem": split(stem), "average_logit": average_logit}

    def _decode(self, base: torch.Tensor, detail: torch.Tensor, stem: Optional[torch.Tensor],
                average_logit: torch.Tensor) -> torch.Tensor:
        x = torch.cat([base, detail], dim=1)
        if self.upsample_projection is not None:
            up = linear_upsample(self.upsample_projection(x), stem.shape[2:])
            x = torch.cat([up, stem], dim=1)
        return torch.sigmoid(average_logit + self.decoder(x))

    def fuse(self, features: Dict[str, List[torch.Tensor]]) -> torch.Tensor:
        run = functools.partial(run_block, self.activation_checkpointing)
        base = run(self.fuse_base, torch.stack(features["base"]).mean(0))
        detail = run(self.fuse_detail, torch.stack(features["detail"]).mean(0))
        stem = torch.stack(features["stem"]).mean(0) if self.upsample_projection is not None else None
        return run(self._decode, base, detail, stem, features["average_logit"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.features(x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int], modalities: int) -> int:
        """Elements (one sample, float32) a training forward of ``modalities`` channels keeps for the backward,
        outputs and the per-modality features (the losses read them) included, measured per block in maps of
        ``channels``: stem 1 and decoder 3 (5 when it upsamples) at full resolution; encoder conv 1, base block 17,
        coupling block 15.5 at the working resolution; plus the mean and 1/sd per voxel of each layer norm (base
        block: two, coupling block: three). With activation checkpointing each part keeps only its inputs
        and outputs: per modality the rescaled input and the stem at full resolution and 3 maps at the working
        resolution; fused 4."""
        full = int(np.prod(input_size, dtype=np.int64))
        working = full // int(np.prod(self.downsample)) if self.downsample is not None else full
        skip = self.upsample_projection is not None
        if self.activation_checkpointing:
            maps = modalities * (full + 3 * working) + 4 * working + (full if skip else 0)
            return int(maps * self.channels + modalities * full)  # + the stem's input, one channel per modality
        base, detail = len(self.base), len(self.detail)
        maps = (modalities * (full + (1 + 17 * base + 15.5 * detail) * working) + (17 + 15.5) * working
                + (5 if skip else 3) * full)
        norms = 2 * (modalities * (2 * base + 3 * detail) + 2 + 3) * working  # base block: two, coupling: three
        return int(maps * self.channels + 2 * norms)

    def decode_each(self, features: Dict[str, List[torch.Tensor]]) -> torch.Tensor:
        """Every modality decoded from its own features: (B, N, *S) in [0, 1]."""
        stems = features["stem"] if self.upsample_projection is not None else [None] * len(features["base"])
        return torch.cat([run_block(self.activation_checkpointing, self._decode, b, d, s, features["average_logit"])
                          for b, d, s in zip(features["base"], features["detail"], stems)], dim=1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_each(self.features(x))
