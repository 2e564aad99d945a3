"""Window partitioning for (shifted-)window attention, dimension-agnostic (2D and 3D); pure tensor functions.

A feature map (B, C, *S) is cut into non-overlapping windows of size ``window`` (one entry per spatial axis, each
dividing S after padding): (B·nW, N, C) with N = prod(window). ``window_reverse`` is the exact inverse.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def effective_window(spatial: Sequence[int], window: Sequence[int],
                     shift: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Window clipped to the map; no shift along an axis that the window covers whole (one window: nothing to shift)."""
    w = tuple(min(wi, si) for wi, si in zip(window, spatial))
    s = tuple(0 if wi >= si else min(shi, wi - 1) for wi, si, shi in zip(w, spatial, shift))
    return w, s


def pad_to_windows(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """Zero-pad (B, C, *S) at the end of each spatial axis to a multiple of the window."""
    pads = []
    for size, w in zip(reversed(x.shape[2:]), reversed(window)):
        pads += [0, (-size) % w]
    return F.pad(x, pads) if any(pads) else x


def window_partition(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """(B, C, *S) with every S_i divisible by window_i → (B·nW, N, C), windows in row-major order per sample."""
    b, c, *spatial = x.shape
    d = len(spatial)
    if len(window) != d or any(s % w for s, w in zip(spatial, window)):
        raise ValueError(f"window {tuple(window)} must divide the spatial shape {tuple(spatial)}")
    shape = [b, c]
    for s, w in zip(spatial, window):
        shape += [s // w, w]
    perm = [0] + [2 + 2 * i for i in range(d)] + [3 + 2 * i for i in range(d)] + [1]
    n = 1
    for w in window:
        n *= w
    return x.reshape(shape).permute(perm).reshape(-1, n, c)


def window_reverse(windows: torch.Tensor, window: Sequence[int], spatial: Sequence[int]) -> torch.Tensor:
    """(B·nW, N, C) → (B, C, *S): the inverse of window_partition."""
    d = len(spatial)
    counts = [s // w for s, w in zip(spatial, window)]
    c = windows.shape[-1]
    x = windows.reshape(-1, *counts, *window, c)
    perm = [0, 1 + 2 * d] + [j for i in range(d) for j in (1 + i, 1 + d + i)]
    return x.permute(perm).reshape(x.shape[0], c, *spatial)


def attention_mask(spatial: Sequence[int], window: Sequence[int], shift: Sequence[int], valid: Sequence[int],
                   device: Optional[torch.device] = None) -> Optional[torch.Tensor]:
    """(nW, N, N) boolean, True where query i may attend key j: same region after a cyclic shift (Swin's regions)
    and key not padding (``valid``: the unpadded size per axis), and always i = j, so no row is fully masked. None when
    nothing is masked. ``spatial`` is the
    padded shape, the map is rolled by −shift before partitioning."""
    if not any(shift) and tuple(valid) == tuple(spatial):
        return None
    regions = torch.zeros(1, 1, *spatial, device=device)
    stride = 1
    for axis, (size, w, s) in enumerate(zip(spatial, window, shift)):
        cuts = [slice(0, size - w), slice(size - w, size - s), slice(size - s, size)] if s else [slice(0, size)]
        index = torch.zeros(size, device=device)
        for k, cut in enumerate(cuts):
            index[cut] = k
        shape = [1] * len(spatial)
        shape[axis] = size
        regions = regions + stride * index.reshape(1, 1, *shape)
        stride *= 3
    keep = torch.zeros(1, 1, *spatial, dtype=torch.bool, device=device)
    keep[(slice(None), slice(None), *[slice(0, v) for v in valid])] = True
    keep = torch.roll(keep, [-s for s in shift], dims=list(range(2, 2 + len(spatial))))
    regions = window_partition(regions, window)[..., 0]      # (nW, N) (the regions are defined on the rolled map)
    keys = window_partition(keep.float(), window)[..., 0] > 0
    allowed = (regions[:, :, None] == regions[:, None, :]) & keys[:, None, :]
    # every query attends at least to itself: a padding query in a window of padding would otherwise have no key,
    # a fully masked row (CPU attention returns zeros there, CUDA's memory-efficient kernel has returned NaN)
    return allowed | torch.eye(allowed.shape[-1], dtype=torch.bool, device=device)


def relative_position_index(window: Sequence[int], table_window: Sequence[int]) -> torch.Tensor:
    """(N, N) index into a bias table of prod(2·table_window − 1) entries: the relative offset of key j from query i
    (``window`` ≤ ``table_window`` per axis, so a window clipped to a small map reuses the table)."""
    grids = torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")
    coords = torch.stack([g.reshape(-1) for g in grids])              # (d, N)
    relative = coords[:, :, None] - coords[:, None, :]                 # (d, N, N)
    index = torch.zeros(relative.shape[1:], dtype=torch.long)
    for axis, t in enumerate(table_window):
        index = index * (2 * t - 1) + relative[axis] + t - 1
    return index
