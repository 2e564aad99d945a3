"""Fuse4Seg's training step: the fusion network (leader) and the segmentation network (follower), bi-level
(DESIGN.md §3). The leader's objective is its fusion losses (intensity, gradient, decomposition and, with a
contrast_weight > 0, the region-contrast loss on the batch's labelled regions: not in the paper) + λ × the follower's
segmentation loss; two ways to take its gradient (``BilevelSettings.leader_gradient``):

``"unrolled"`` (a Stackelberg step): the follower steps first (nnU-Net's SGD on the segmentation loss of the detached
fused image F), then the leader differentiates the segmentation loss of the follower *after* its step, θ1 = θ0 −
α ∇θ L(θ0, F), with respect to F — including how the follower's step depends on F (a one-step unrolled hypergradient,
as DARTS' second-order step):
    dL(θ1, F)/dF = ∂L/∂F (θ1)  −  α ∂²L/∂F∂θ (θ0) · v,   v = ∂L/∂θ (θ1),
the second-order product by a forward difference, (∂L/∂F (θ0 + εv) − ∂L/∂F (θ0)) / ε with ε = finite_difference /
|v|, so no second-order graph is kept: three forward-backward passes of the segmentation network (at θ0, at θ1, at
θ0 + εv), one at a time, and the fusion network's one, so the peak memory is the first-order step's plus three
copies of the follower's parameters (θ0, v, θ1). α is the follower's step per unit of gradient: its learning rate,
× (1 + momentum) for Nesterov momentum (nnU-Net's SGD), whose update takes the current gradient twice; gradient
clipping is not differentiated.

``"first-order"`` (the earlier step, kept for comparison): one forward and one backward of both networks. The fused
image enters the segmentation network through a view whose gradient is scaled by λ, so the fusion network receives
λ·∂L/∂F at θ0 — the follower *before* its step, its response ignored — while the segmentation network's own
parameters receive ∂L/∂θ. Cheapest (the segmentation network runs once per iteration).

``"none"`` (the ablation without a learned fusion): the leader does not learn; the follower trains on the fused
image of the fusion network as it is (untrained: the plain average of the rescaled modalities).

With ``follower_steps`` K > 1, K − 1 extra follower steps on the detached fused image come first. During fusion
pre-training the leader's loss is the reconstruction of every modality + the decomposition loss, and the segmentation
network reads the fused image detached (one backward of both, as first-order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from nnunet_fuse.imagefusion.losses import (decomposition_loss, gradient_loss, intensity_loss, reconstruction_loss,
                                            region_contrast_loss)


LEADER_GRADIENTS = ("unrolled", "first-order", "none")


@dataclass
class BilevelSettings:
    follower_steps: int = 1             # K
    leader_weight: float = 0.5          # λ
    intensity_weight: float = 1.0
    gradient_weight: float = 1.0
    decomposition_weight: float = 1.0
    contrast_weight: float = 0.0        # the region-contrast loss (losses.region_contrast_loss; needs the regions)
    contrast_target: float = 1.0        # the share of the best modality's contrast it aims at
    clip_norm: float = 12.0             # nnU-Net's gradient clipping, per network
    leader_gradient: str = "first-order"  # one of LEADER_GRADIENTS (module docstring)
    finite_difference: float = 1e-2     # ε·|v| of the unrolled step's second-order product

    def __post_init__(self):
        if self.leader_gradient not in LEADER_GRADIENTS:
            raise ValueError(f"leader_gradient must be one of {', '.join(LEADER_GRADIENTS)}, got "
                             f"'{self.leader_gradient}'")
        if self.follower_steps < 1:
            raise ValueError(f"follower_steps (K) must be at least 1, got {self.follower_steps}")


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """x itself in the forward (a view); the gradient flowing back through it is multiplied by factor."""
    view = x.view_as(x)
    if view.requires_grad:
        view.register_hook(lambda grad: grad * factor)
    return view


def _step(loss: torch.Tensor, optimizers: List[torch.optim.Optimizer], parameter_groups: List[List[nn.Parameter]],
          scaler: Optional[torch.amp.GradScaler], synchronize: Callable[[List[nn.Parameter]], None],
          clip_norm: float, update_scaler: bool = True) -> None:
    """backward → synchronise gradients (DDP) → unscale (AMP) → clip each group → step each optimiser (→ update the
    scaler, once per iteration after its last step)."""
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
    if scaler is not None and update_scaler:
        scaler.update()


def step_per_gradient(optimizer: torch.optim.Optimizer) -> float:
    """α: how far an SGD step moves a parameter per unit of its current gradient (its first group's settings): the
    learning rate, × (1 + momentum) with Nesterov momentum (the update is lr · (g + μ · (μ·buffer + g)))."""
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(f"the unrolled leader gradient differentiates an SGD step of the follower, not "
                        f"{type(optimizer).__name__}'s; use leader_gradient='first-order'")
    group = optimizer.param_groups[0]
    return group["lr"] * (1 + group["momentum"] if group["nesterov"] else 1)


def _loss_and_gradients(segmentation: nn.Module, segmentation_input: Callable[[torch.Tensor], torch.Tensor],
                        fused: torch.Tensor, target, segmentation_loss: Callable, autocast, scale: float,
                        parameters: Sequence[nn.Parameter] = ()):
    """The segmentation loss at the segmentation network's current parameters on ``fused`` (B, 1, *S), read
    detached: (loss, ∂L/∂fused, [∂L/∂p for p in parameters]); under AMP the loss is multiplied by ``scale`` for the
    backward and the gradients divided by it (None where not finite: an fp16 overflow, the scaler's skipped step)."""
    leaf = fused.detach().requires_grad_(True)
    with autocast:
        loss = segmentation_loss(segmentation(segmentation_input(leaf)), target)
    gradients = torch.autograd.grad(loss * scale, [leaf, *parameters], allow_unused=True)
    gradients = [None if g is None else g / scale for g in gradients]
    if not all(g is None or torch.isfinite(g).all() for g in gradients):
        return loss.detach(), None, [None] * len(parameters)
    return loss.detach(), gradients[0], gradients[1:]


def unrolled_fused_gradient(segmentation: nn.Module, segmentation_input: Callable[[torch.Tensor], torch.Tensor],
                            fused: torch.Tensor, target, segmentation_loss: Callable,
                            parameters_before: Sequence[torch.Tensor], fused_gradient_before: Optional[torch.Tensor],
                            step_size: float, finite_difference: float, autocast, scale: float = 1.0):
    """After the follower's step θ0 → θ1 (its parameters now θ1; ``parameters_before`` θ0 and
    ``fused_gradient_before`` ∂L/∂F at θ0): (L(θ1, F), dL(θ1, F)/dF (B, 1, *S) with the follower's response, see the
    module docstring). Where a gradient is not finite (AMP) the response term is dropped; where even ∂L/∂F at θ1 is
    not, the gradient is None (the leader steps on its fusion losses alone)."""
    parameters = list(segmentation.parameters())
    loss_after, direct, v = _loss_and_gradients(segmentation, segmentation_input, fused, target, segmentation_loss,
                                                autocast, scale, parameters)
    if direct is None or fused_gradient_before is None:
        return loss_after, direct
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in v if g is not None))
    if not norm > 0:
        return loss_after, direct
    epsilon = finite_difference / float(norm)
    with torch.no_grad():
        after = [p.detach().clone() for p in parameters]
        for p, before, g in zip(parameters, parameters_before, v):
            p.copy_(before if g is None else before + epsilon * g)
    try:
        _, shifted, _ = _loss_and_gradients(segmentation, segmentation_input, fused, target, segmentation_loss,
                                            autocast, scale)
    finally:
        with torch.no_grad():
            for p, value in zip(parameters, after):
                p.copy_(value)
    if shifted is None:
        return loss_after, direct
    return loss_after, direct - step_size * (shifted - fused_gradient_before) / epsilon


def bilevel_step(network: nn.Module, data: torch.Tensor, target, segmentation_loss: Callable,
                 segmentation_optimizer: torch.optim.Optimizer, fusion_optimizer: torch.optim.Optimizer,
                 settings: BilevelSettings, pretraining: bool, scaler: Optional[torch.amp.GradScaler] = None,
                 synchronize: Callable[[List[nn.Parameter]], None] = lambda parameters: None,
                 regions: Optional[torch.Tensor] = None) -> dict:
    """One training iteration of a Fuse4SegNet (``network.fusion``, ``network.segmentation``,
    ``network.segmentation_input``) on data (B, N, *S) and nnU-Net's target; autocast on CUDA with ``scaler``;
    regions (B, R, *S), the labelled regions of data, for the region-contrast loss (needed when its weight > 0).
    Returns {"loss": follower (segmentation) loss before its step, "leader_loss": fusion losses (+ λ × the
    segmentation loss the leader's gradient differentiates)}."""
    if settings.contrast_weight > 0 and regions is None:
        raise ValueError("the region-contrast loss (contrast_weight > 0) needs the labelled regions of the batch")
    fusion, segmentation = network.fusion, network.segmentation
    segmentation_parameters, fusion_parameters = list(segmentation.parameters()), list(fusion.parameters())
    autocast = torch.autocast(data.device.type, enabled=data.device.type == "cuda")
    fusion_optimizer.zero_grad(set_to_none=True)
    leader_learns = settings.leader_gradient != "none"
    with autocast, torch.enable_grad() if leader_learns else torch.no_grad():
        features = fusion.features(data)
        with torch.no_grad() if pretraining else torch.enable_grad():
            fused = fusion.fuse(features)
    detached_input = network.segmentation_input(data, fused.detach())
    for _ in range(settings.follower_steps - (1 if leader_learns else 0)):
        segmentation_optimizer.zero_grad(set_to_none=True)
        with autocast:
            follower_loss = segmentation_loss(segmentation(detached_input), target)
        _step(follower_loss, [segmentation_optimizer], [segmentation_parameters], scaler, synchronize,
              settings.clip_norm)
    if not leader_learns:
        return {"loss": follower_loss.detach().cpu().numpy(), "leader_loss": np.float32(0)}

    def fusion_loss() -> torch.Tensor:
        with autocast:
            rescaled = fusion.rescale(data)
            decomposition = settings.decomposition_weight * decomposition_loss(features["base"], features["detail"])
            if pretraining:
                return reconstruction_loss(fusion.decode_each(features).float(), rescaled.float()) + decomposition
            losses = (settings.intensity_weight * intensity_loss(fused, rescaled)
                      + settings.gradient_weight * gradient_loss(fused.float(), rescaled.float()) + decomposition)
        if settings.contrast_weight > 0:
            losses = losses + settings.contrast_weight * region_contrast_loss(fused, rescaled, regions,
                                                                              settings.contrast_target)
        return losses

    segmentation_optimizer.zero_grad(set_to_none=True)
    if pretraining or settings.leader_gradient == "first-order":
        leader_losses = fusion_loss()
        segmentation_input = (detached_input if pretraining else
                              network.segmentation_input(data, scale_gradient(fused, settings.leader_weight)))
        with autocast:
            follower_loss = segmentation_loss(segmentation(segmentation_input), target)
        _step(follower_loss + leader_losses, [segmentation_optimizer, fusion_optimizer],
              [segmentation_parameters, fusion_parameters], scaler, synchronize, settings.clip_norm)
        leader_loss = leader_losses.detach() + (0 if pretraining else settings.leader_weight * follower_loss.detach())
        return {"loss": follower_loss.detach().cpu().numpy(), "leader_loss": leader_loss.cpu().numpy()}

    # unrolled: the follower steps on the detached fused image (θ0 → θ1), keeping θ0 and ∂L/∂F at θ0 ...
    parameters_before = [p.detach().clone() for p in segmentation_parameters]
    scale = float(scaler.get_scale()) if scaler is not None else 1.0
    leaf = fused.detach().requires_grad_(True)
    with autocast:
        follower_loss = segmentation_loss(segmentation(network.segmentation_input(data, leaf)), target)
    _step(follower_loss, [segmentation_optimizer], [segmentation_parameters], scaler, synchronize, settings.clip_norm,
          update_scaler=False)
    gradient_before = leaf.grad / scale if torch.isfinite(leaf.grad).all() else None
    # ... then the leader differentiates the segmentation loss after that step, the step's dependence on F included
    loss_after, fused_gradient = unrolled_fused_gradient(
        segmentation, lambda f: network.segmentation_input(data, f), fused, target, segmentation_loss,
        parameters_before, gradient_before, step_per_gradient(segmentation_optimizer), settings.finite_difference,
        autocast, scale)
    del parameters_before
    leader_losses = fusion_loss()
    leader_objective = leader_losses
    if fused_gradient is not None:
        leader_objective = leader_objective + settings.leader_weight * (fused.float() * fused_gradient.float()).sum()
    _step(leader_objective, [fusion_optimizer], [fusion_parameters], scaler, synchronize, settings.clip_norm)
    leader_loss = leader_losses.detach() + settings.leader_weight * loss_after
    return {"loss": follower_loss.detach().cpu().numpy(), "leader_loss": leader_loss.cpu().numpy()}
