"""Fuse4Seg's training step: the fusion network (leader) and the segmentation network (follower), first-order
bi-level (DESIGN.md §3), in one forward and one backward of both networks.

The follower's gradient is the segmentation loss's on the fused image; the leader's is the fusion losses' plus
λ × the segmentation loss's through the segmentation network (whose parameters the leader does not step). Both come
from one backward of ``segmentation loss + fusion losses``: the fused image enters the segmentation network through
a view whose gradient is scaled by λ, so the fusion network receives λ·∂L_seg while the segmentation network's own
parameters receive ∂L_seg. The follower and leader then step their own parameters with their own optimisers.
Compared with a follower step followed by a leader step through the updated follower, the leader reads the follower
before (not after) this iteration's step, and the segmentation network runs once per iteration instead of twice.
With ``follower_steps`` K > 1, K − 1 extra follower steps on the detached fused image come first.
During fusion pre-training the leader's loss is the reconstruction of every modality + the decomposition loss, and
the segmentation network reads the fused image detached.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import nn

from nnunet_fuse.imagefusion.losses import decomposition_loss, gradient_loss, intensity_loss, reconstruction_loss


@dataclass
class BilevelSettings:
    follower_steps: int = 1             # K
    leader_weight: float = 0.5          # λ
    intensity_weight: float = 1.0
    gradient_weight: float = 1.0
    decomposition_weight: float = 1.0
    clip_norm: float = 12.0             # nnU-Net's gradient clipping, per network


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """x itself in the forward (a view); the gradient flowing back through it is multiplied by factor."""
    view = x.view_as(x)
    if view.requires_grad:
        view.register_hook(lambda grad: grad * factor)
    return view


def _step(loss: torch.Tensor, optimizers: List[torch.optim.Optimizer], parameter_groups: List[List[nn.Parameter]],
          scaler: Optional[torch.amp.GradScaler], synchronize: Callable[[List[nn.Parameter]], None],
          clip_norm: float) -> None:
    """backward → synchronise gradients (DDP) → unscale (AMP) → clip each group → step each optimiser."""
    (scaler.scale(loss) if scaler is not None else loss).backward()
    synchronize([p for group in parameter_groups for p in group])
    for optimizer, parameters in zip(optimizers, parameter_groups):
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        if scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
    if scaler is not None:
        scaler.update()


def bilevel_step(network: nn.Module, data: torch.Tensor, target, segmentation_loss: Callable,
                 segmentation_optimizer: torch.optim.Optimizer, fusion_optimizer: torch.optim.Optimizer,
                 settings: BilevelSettings, pretraining: bool, scaler: Optional[torch.amp.GradScaler] = None,
                 synchronize: Callable[[List[nn.Parameter]], None] = lambda parameters: None) -> dict:
    """One training iteration of a Fuse4SegNet (``network.fusion``, ``network.segmentation``,
    ``network.segmentation_input``) on data (B, N, *S) and nnU-Net's target; autocast on CUDA with ``scaler``.
    Returns {"loss": follower (segmentation) loss, "leader_loss": fusion losses (+ λ × segmentation loss)}."""
    fusion, segmentation = network.fusion, network.segmentation
    segmentation_parameters, fusion_parameters = list(segmentation.parameters()), list(fusion.parameters())
    autocast = torch.autocast(data.device.type, enabled=data.device.type == "cuda")
    fusion_optimizer.zero_grad(set_to_none=True)
    with autocast:
        features = fusion.features(data)
        with torch.no_grad() if pretraining else torch.enable_grad():
            fused = fusion.fuse(features)
    detached_input = network.segmentation_input(data, fused.detach())
    for _ in range(settings.follower_steps - 1):
        segmentation_optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = segmentation_loss(segmentation(detached_input), target)
        _step(loss, [segmentation_optimizer], [segmentation_parameters], scaler, synchronize, settings.clip_norm)

    segmentation_optimizer.zero_grad(set_to_none=True)
    with autocast:
        rescaled = fusion.rescale(data)
        decomposition = decomposition_loss(features["base"], features["detail"])
        if pretraining:
            fusion_loss = (reconstruction_loss(fusion.decode_each(features).float(), rescaled.float())
                           + settings.decomposition_weight * decomposition)
            segmentation_input = detached_input
        else:
            fusion_loss = (settings.intensity_weight * intensity_loss(fused, rescaled)
                           + settings.gradient_weight * gradient_loss(fused.float(), rescaled.float())
                           + settings.decomposition_weight * decomposition)
            segmentation_input = network.segmentation_input(data, scale_gradient(fused, settings.leader_weight))
        follower_loss = segmentation_loss(segmentation(segmentation_input), target)
    _step(follower_loss + fusion_loss, [segmentation_optimizer, fusion_optimizer],
          [segmentation_parameters, fusion_parameters], scaler, synchronize, settings.clip_norm)
    leader_loss = fusion_loss.detach() + (0 if pretraining else settings.leader_weight * follower_loss.detach())
    return {"loss": follower_loss.detach().cpu().numpy(), "leader_loss": leader_loss.cpu().numpy()}
