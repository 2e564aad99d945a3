"""The FuseUNet solve as one autograd node, its backward written out (DESIGN.md §2).

The same maths as ``multistep_solve`` over ``skip_field`` fields (the decoder's torch.compile path, where the compiler
fuses the elementwise work itself), computed in fewer full-resolution passes for eager mode:
- forward works on the negated state z = -y, so each field F(y) = max(g, -y) = max(g, z) needs no negation, and in
  inference no mask is computed at all;
- backward accumulates each adjoint in place (one fused ``add_(…, alpha=c)`` per term instead of autograd's
  multiply, new tensor and accumulation), and needs nothing from the forward but one boolean mask per field
  evaluation;
- the forcings enter at their own (coarse) resolution and are upsampled inside, one at a time; their gradient is
  the adjoint of the upsampling;
- state-sized temporaries are reused (_Buffers) rather than allocated per operation.
Measured on the CPU: decoder forward + backward 0.75×, inference 0.77× of the composition
(benchmarks/decoder_speed.py).

Notation: N forcings, coarsest first; y_0 = 0; step k predicts with Adams–Bashforth of order q = min(k+1, max_order),
corrects with Adams–Moulton of order min(q+1, max_order) at the next forcing (PECE), then evaluates
f_{k+1} = F_{k+1}(y_{k+1}); the last step is predictor-only.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from nnunet_fuse.ode.multistep import ADAMS_BASHFORTH, ADAMS_MOULTON, MAX_ORDER
from nnunet_fuse.ode.resample import linear_upsample, linear_upsample_adjoint


def _upsampled(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return x if list(x.shape[2:]) == list(size) else linear_upsample(x, size)


class _Buffers:
    """Free state-sized tensors, reused instead of allocating anew: on CPU a new multi-megabyte tensor costs more
    than the elementwise pass that fills it (page faults). Only tensors of our own go in, never inputs or outputs."""

    def __init__(self, like: torch.Tensor):
        self.like, self.free = like, []

    def take(self) -> torch.Tensor:
        return self.free.pop() if self.free else torch.empty_like(self.like)

    def give(self, *tensors: torch.Tensor) -> None:
        self.free.extend(tensors)


def _combination(base: torch.Tensor, scale: float, coefficients: Sequence[float], values: Sequence[torch.Tensor],
                 out: torch.Tensor) -> torch.Tensor:
    """out = base + scale · Σ_j c_j v_j, one kernel per term; out may be base itself."""
    torch.add(base, values[0], alpha=scale * coefficients[0], out=out)
    for c, v in zip(coefficients[1:], values[1:]):
        out.add_(v, alpha=scale * c)
    return out


def solve_forward(forcings: Sequence[torch.Tensor], size: Sequence[int], h: float, max_order: int = MAX_ORDER,
                  corrector: bool = True, keep_states: bool = False,
                  masks: Optional[Dict[tuple, torch.Tensor]] = None) -> List[torch.Tensor]:
    """The FuseUNet solve without autograd.

    forcings: N tensors (B, C, *size_k), coarsest first, already projected to the state's C channels.
    size: the state's spatial size; each forcing is linearly upsampled to it when it is needed.
    masks: if given, filled with the boolean mask g > -y of every field evaluation, keyed ("c", k) for f_k at the
    corrected state y_k and ("p", k) for the evaluation at the predicted state of step k-1.
    Returns the states [y_1, ..., y_N] (only [y_N] if not keep_states), each (B, C, *size).
    """
    n = len(forcings)
    g = _upsampled(forcings[0], size)
    buffers = _Buffers(g)
    z = torch.zeros_like(g)  # z = -y, y_0 = 0; updated in place unless every state is kept
    f = torch.maximum(g, z)
    if masks is not None:
        masks["c", 0] = torch.gt(g, z)
    history: List[torch.Tensor] = []
    states: List[torch.Tensor] = []
    for k in range(n):
        if len(history) == max_order:
            buffers.give(history.pop())  # f_{k-max_order}: no step uses it any more
        history = [f, *history]
        z_predicted = _combination(z, -h, ADAMS_BASHFORTH[len(history)], history, buffers.take())
        if k + 1 < n:
            g = _upsampled(forcings[k + 1], size)
        if corrector and k + 1 < n:
            f_predicted = torch.maximum(g, z_predicted, out=buffers.take())
            if masks is not None:
                masks["p", k + 1] = torch.gt(g, z_predicted)
            order = min(len(history) + 1, max_order)
            z = _combination(z, -h, ADAMS_MOULTON[order], [f_predicted, *history[: order - 1]],
                             buffers.take() if keep_states else z)
            buffers.give(f_predicted, z_predicted)
        else:
            if not keep_states:
                buffers.give(z)
            z = z_predicted
        if keep_states or k + 1 == n:
            states.append(z)
        if k + 1 < n:
            f = torch.maximum(g, z, out=buffers.take())
            if masks is not None:
                masks["c", k + 1] = torch.gt(g, z)
            del g  # the next step upsamples its own forcing
    return [z.neg_() for z in states]


class _FuseUNetSolve(torch.autograd.Function):
    """apply(size, h, max_order, corrector, keep_states, *forcings) → states, as solve_forward."""

    @staticmethod
    def forward(ctx, size, h, max_order, corrector, keep_states, *forcings):
        masks: Dict[tuple, torch.Tensor] = {}
        states = solve_forward(forcings, size, h, max_order, corrector, keep_states, masks)
        ctx.mask_keys = list(masks)
        ctx.save_for_backward(*masks.values())
        ctx.settings = (list(size), h, max_order, corrector, keep_states)
        ctx.forcing_sizes = [list(x.shape[2:]) for x in forcings]
        return tuple(states)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *state_grads):
        size, h, max_order, corrector, keep_states = ctx.settings
        masks = dict(zip(ctx.mask_keys, ctx.saved_tensors))
        n = len(ctx.forcing_sizes)
        forcing_grads: List[Optional[torch.Tensor]] = [None] * n
        buffers = _Buffers(state_grads[-1])
        f_adjoints: Dict[int, torch.Tensor] = {}  # adjoint of f_j, complete once step j is passed
        y_adjoint: Optional[torch.Tensor] = None

        def accumulate(j: int, value: torch.Tensor, scale: float) -> None:
            """f_adjoints[j] += scale · value."""
            if j in f_adjoints:
                f_adjoints[j].add_(value, alpha=scale)
            else:
                f_adjoints[j] = torch.mul(value, scale, out=buffers.take())

        def masked(mask: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
            """mask · value in a buffer of ours (the mask converted into it first: no new tensor)."""
            return buffers.take().copy_(mask).mul_(value)

        def finish_forcing(k: int, g_adjoint: torch.Tensor) -> None:
            if ctx.forcing_sizes[k] == size:
                forcing_grads[k] = g_adjoint
            else:
                forcing_grads[k] = linear_upsample_adjoint(g_adjoint, ctx.forcing_sizes[k])
                buffers.give(g_adjoint)

        for k in reversed(range(n)):
            # y_adjoint is the adjoint of y_{k+1}
            grad = state_grads[k] if keep_states else (state_grads[0] if k == n - 1 else None)
            if grad is not None:
                y_adjoint = grad.clone() if y_adjoint is None else y_adjoint.add_(grad)
            history_orders = min(k + 1, max_order)
            if k + 1 < n:
                # f_{k+1} = F(g_{k+1}, y_{k+1}) = max(g, -y): dF/dg = mask, dF/dy = mask - 1
                f_adjoint = f_adjoints.pop(k + 1)
                g_adjoint = masked(masks["c", k + 1], f_adjoint)
                y_adjoint.add_(g_adjoint).sub_(f_adjoint)
                buffers.give(f_adjoint)
            if corrector and k + 1 < n:
                # y_{k+1} = y_k + h (α_0 f̃_{k+1} + Σ_j α_{j+1} f_{k-j}),  f̃_{k+1} = F(g_{k+1}, ỹ_{k+1})
                alphas = ADAMS_MOULTON[min(history_orders + 1, max_order)]
                for j, alpha in enumerate(alphas[1:]):
                    accumulate(k - j, y_adjoint, h * alpha)
                scale = h * alphas[0]  # f̃_{k+1}'s adjoint is scale · y_adjoint
                through = masked(masks["p", k + 1], y_adjoint)
                g_adjoint.add_(through, alpha=scale)
                finish_forcing(k + 1, g_adjoint)
                predicted_adjoint = through.sub_(y_adjoint)  # adjoint of ỹ_{k+1}, divided by scale
                # ỹ_{k+1} = y_k + h Σ_j β_j f_{k-j}
                for j, beta in enumerate(ADAMS_BASHFORTH[history_orders]):
                    accumulate(k - j, predicted_adjoint, scale * h * beta)
                y_adjoint.add_(predicted_adjoint, alpha=scale)
                buffers.give(predicted_adjoint)
            else:
                if k + 1 < n:
                    finish_forcing(k + 1, g_adjoint)
                for j, beta in enumerate(ADAMS_BASHFORTH[history_orders]):
                    accumulate(k - j, y_adjoint, h * beta)
            # y_adjoint is now the adjoint of y_k
        # f_0 = F(g_0, y_0) with the constant y_0 = 0
        f_adjoint = f_adjoints.pop(0)
        finish_forcing(0, masked(masks["c", 0], f_adjoint))
        return (None, None, None, None, None, *forcing_grads)


def fuseunet_solve(forcings: Sequence[torch.Tensor], size: Sequence[int], h: float, max_order: int = MAX_ORDER,
                   corrector: bool = True, keep_states: bool = False) -> List[torch.Tensor]:
    """solve_forward with a gradient for every forcing; without autograd (inference) no masks are computed.

    forcings: N tensors (B, C, *size_k), coarsest first. Returns [y_1, ..., y_N] (only [y_N] if not keep_states),
    each (B, C, *size), equal to multistep_solve over the fields F_k(y) = max(upsample(forcing_k), -y).
    """
    dtype = forcings[0].dtype
    for x in forcings[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    forcings = [x.to(dtype) for x in forcings]
    if torch.is_grad_enabled() and any(x.requires_grad for x in forcings):
        return list(_FuseUNetSolve.apply(list(size), h, max_order, corrector, keep_states, *forcings))
    return solve_forward(forcings, size, h, max_order, corrector, keep_states)
