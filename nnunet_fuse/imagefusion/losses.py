"""Fusion losses of Fuse4Seg as pure functions of tensors, 2D and 3D (DESIGN.md §3).

Shapes: fused (B, 1, *spatial), images (B, N, *spatial) with N ≥ 1 modalities, spatial of 2 or 3 axes; intensities
in [0, 1] (the fusion network rescales nnU-Net's z-scored channels robustly before fusing). Every loss returns a
scalar (mean over the batch).
"""
from __future__ import annotations

from itertools import combinations
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

_CONV = {2: F.conv2d, 3: F.conv3d}


def _spatial_dims(x: torch.Tensor) -> int:
    dims = x.dim() - 2
    if dims not in _CONV:
        raise ValueError(f"expected (B, C, *spatial) with 2 or 3 spatial axes, got shape {tuple(x.shape)}")
    return dims


def sobel_gradients(x: torch.Tensor) -> torch.Tensor:
    """Sobel derivatives along every spatial axis, per channel: (B, C, *S) → (B, C, D, *S), D = number of axes.

    Normalised so that a linear ramp a·x_d has derivative exactly a along axis d (difference [-1, 0, 1] / 2 along the
    axis, smoothing [1, 2, 1] / 4 along each other axis); edges are replicated, so a constant image has zero gradient.
    """
    dims = _spatial_dims(x)
    b, c = x.shape[:2]
    derivative = torch.tensor([-0.5, 0.0, 0.5], dtype=x.dtype, device=x.device)
    smoothing = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    kernels = []
    for axis in range(dims):
        factors = [derivative if k == axis else smoothing for k in range(dims)]
        kernel = factors[0]
        for factor in factors[1:]:
            kernel = kernel.unsqueeze(-1) * factor  # outer product: kernel axis k is spatial axis k
        kernels.append(kernel)
    weight = torch.stack(kernels).unsqueeze(1)  # (D, 1, 3, ..., 3)
    padded = F.pad(x.reshape(b * c, 1, *x.shape[2:]), (1, 1) * dims, mode="replicate")
    return _CONV[dims](padded, weight).reshape(b, c, dims, *x.shape[2:])


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|∇x| as the L1 norm of the Sobel derivatives: (B, C, *S) → (B, C, *S)."""
    return sobel_gradients(x).abs().sum(dim=2)


def intensity_loss(fused: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """L1(F, max_i I_i): the fused image keeps the brightest structure of every modality."""
    return (fused - images.amax(dim=1, keepdim=True)).abs().mean()


def gradient_loss(fused: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """L1(|∇F|, max_i |∇I_i|): the fused image keeps the strongest edges of every modality."""
    return (gradient_magnitude(fused) - gradient_magnitude(images).amax(dim=1, keepdim=True)).abs().mean()


def _centred(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) → (B, M) minus its mean per sample, at least float32 (fp16 sums overflow on large volumes)."""
    t = t.flatten(1).to(torch.promote_types(t.dtype, torch.float32))
    return t - t.mean(dim=1, keepdim=True)


def _centred_correlation(a: torch.Tensor, b: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor,
                         eps: float = 1e-8) -> torch.Tensor:
    return (a * b).sum(dim=1) / (norm_a * norm_b + eps)


def correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of two feature maps per sample over all other axes: (B, ...) × (B, ...) → (B,)."""
    a, b = _centred(a), _centred(b)
    return _centred_correlation(a, b, a.norm(dim=1), b.norm(dim=1), eps)


def decomposition_loss(base: Sequence[torch.Tensor], detail: Sequence[torch.Tensor]) -> torch.Tensor:
    """mean over modality pairs (i, j) of cc(D_i, D_j)² / (1.01 + cc(B_i, B_j)): details of different modalities
    decorrelated, their bases correlated. base, detail: one feature map (B, C, *S) per modality (N ≥ 2). Each map is
    centred once, not once per pair: the loss keeps 2N centred maps for the backward, not 4 per pair."""
    if len(base) != len(detail) or len(base) < 2:
        raise ValueError(f"need base and detail features of the same N >= 2 modalities, got {len(base)} and "
                         f"{len(detail)}")
    base, detail = [_centred(t) for t in base], [_centred(t) for t in detail]
    base_norms, detail_norms = [t.norm(dim=1) for t in base], [t.norm(dim=1) for t in detail]
    terms = [_centred_correlation(detail[i], detail[j], detail_norms[i], detail_norms[j]) ** 2
             / (1.01 + _centred_correlation(base[i], base[j], base_norms[i], base_norms[j]))
             for i, j in combinations(range(len(base)), 2)]
    return torch.stack(terms).mean()


def _gaussian_kernel(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """Normalised 1D Gaussian of ``size`` taps; the ND window is its outer product, applied axis by axis."""
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) with a Gaussian window, per channel, 2D or 3D; x, y: (B, C, *S).

    Local statistics use replicate padding, so SSIM(x, x) = 1 exactly and two constant images a, b give
    (2ab + C1) / (a² + b² + C1), C1 = (0.01·data_range)², C2 = (0.03·data_range)².
    """
    dims = _spatial_dims(x)
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    b, c = x.shape[:2]
    kernel = _gaussian_kernel(window_size, sigma, x)
    pad = (window_size // 2,) * (2 * dims)

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        """Gaussian-weighted local mean, separable: one 1D pass per axis (window_size·D taps, not window_size^D)."""
        t = F.pad(t.reshape(b * c, 1, *t.shape[2:]), pad, mode="replicate")
        for axis in range(dims):
            shape = [1, 1] + [1] * dims
            shape[2 + axis] = window_size
            t = _CONV[dims](t, kernel.reshape(shape))
        return t

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x ** 2
    var_y = local_mean(y * y) - mu_y ** 2
    cov = local_mean(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.mean()


def reconstruction_loss(reconstructed: torch.Tensor, target: torch.Tensor, ssim_weight: float = 1.0,
                        mse_weight: float = 1.0) -> torch.Tensor:
    """ssim_weight·(1 − SSIM) + mse_weight·MSE, for the fusion pre-training (the autoencoder stage)."""
    return ssim_weight * (1 - ssim(reconstructed, target)) + mse_weight * F.mse_loss(reconstructed, target)


_MAX_POOL = {2: F.max_pool2d, 3: F.max_pool3d}
SURROUNDING_WIDTH = 5  # voxels: how far around a region its surrounding tissue reaches (region_contrasts)


def neighbourhood(masks: torch.Tensor, width: int = SURROUNDING_WIDTH) -> torch.Tensor:
    """Each mask grown by ``width`` voxels (a cube neighbourhood, the region included): (B, R, *S) float → same."""
    dims = _spatial_dims(masks)
    for axis in range(dims):  # the cube as one max-pool per axis: 3·(2w + 1) taps, not (2w + 1)³
        kernel = [1] * dims
        kernel[axis] = 2 * width + 1
        masks = _MAX_POOL[dims](masks, kernel, stride=1, padding=[k // 2 for k in kernel])
    return masks


def region_contrasts(images: torch.Tensor, regions: torch.Tensor, within: Optional[torch.Tensor] = None,
                     width: int = SURROUNDING_WIDTH) -> torch.Tensor:
    """How far each region stands out of the tissue around it in each image channel: |mean inside − mean of the
    surrounding| / sd of the surrounding, the surrounding being the voxels within ``width`` voxels of the region (a
    cube neighbourhood) outside it, and inside ``within`` (e.g. the brain) where given. Unchanged by any affine
    intensity map of an image (per-modality normalisation cancels); differentiable in images.
    images (B, C, *S); regions (B, R, *S) and within (B, 1, *S), boolean or {0, 1} → (B, C, R), at least float32
    (float64 stays float64); NaN where a region or its surrounding is empty or the surrounding flat."""
    _spatial_dims(images)
    dtype = torch.promote_types(images.dtype, torch.float32)
    masks = regions.to(dtype)
    around = neighbourhood(masks, width) - masks
    if within is not None:
        around = around * within.to(dtype)
    inside, around = masks.flatten(2).transpose(1, 2), around.flatten(2).transpose(1, 2)  # (B, V, R)
    x = images.to(dtype).flatten(2)                                                      # (B, C, V)
    n_inside, n_around = inside.sum(1, keepdim=True), around.sum(1, keepdim=True)        # (B, 1, R)
    mean_inside = (x @ inside) / n_inside.clamp_min(1)
    mean_around = (x @ around) / n_around.clamp_min(1)
    variance = ((x * x) @ around) / n_around.clamp_min(1) - mean_around ** 2
    defined = (n_inside > 0) & (n_around > 1) & (variance > 0)
    contrast = (mean_inside - mean_around).abs() / variance.clamp_min(torch.finfo(dtype).tiny).sqrt()
    return torch.where(defined, contrast, torch.full_like(contrast, float("nan")))


def kept_contrast_shares(fused: torch.Tensor, images: torch.Tensor, regions: torch.Tensor):
    """Per case and region, contrast(F) / max_i contrast(I_i) (region_contrasts; the images detached), and whether
    any modality shows the region: fused (B, 1, *S), images (B, N, *S), regions (B, R, *S) → two (B, R) tensors."""
    dtype = torch.promote_types(images.dtype, fused.dtype)  # one call: the regions' surroundings found once
    contrasts = region_contrasts(torch.cat([images.detach().to(dtype), fused.to(dtype)], dim=1), regions)
    best = contrasts[:, :-1].nan_to_num(0).amax(dim=1)  # (B, R)
    return contrasts[:, -1].nan_to_num(0) / best.clamp_min(1e-6), best > 0


def region_contrast_loss(fused: torch.Tensor, images: torch.Tensor, regions: torch.Tensor,
                         target: float = 1.0) -> torch.Tensor:
    """mean over the (case, region) pairs present of |target − contrast(F) / max_i contrast(I_i)|: every labelled
    region stands out of the fused image as much as in the modality that shows it best (region_contrasts; target 1)
    — no less (the fusion lost it) and no more (the fusion painted it from the labels it was trained on: with a
    one-sided shortfall a fusion network learnt to show BraTS tumours at 3–8× their best modality's contrast); a
    target a little above 1 leaves a margin for unseen cases. fused (B, 1, *S), images (B, N, *S), regions (B, R, *S)
    → scalar; 0 (with F's graph) where no modality shows a region."""
    kept, shown = kept_contrast_shares(fused, images, regions)
    deviation = (target - kept).abs()[shown]
    return deviation.mean() if deviation.numel() else fused.sum() * 0
