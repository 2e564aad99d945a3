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
- state-sized temporaries are reused (_Buffers) rather than allocated per operation;
- each step's elementwise work is one function (_forward_step_torch, _backward_step_torch: one PyTorch operation per
  term); on the CPU the C kernels of native.py do the same step in one pass over memory instead.
Measured on the CPU (benchmarks/decoder_speed.py): the PyTorch operations made the decoder's forward + backward
0.75× and its inference 0.77× of the composition; the C kernels then make the solve's forward + backward about
0.65× and its inference about 0.7× of the PyTorch operations.

Notation: N forcings, coarsest first; y_0 = 0; step k predicts with Adams–Bashforth of order q = min(k+1, max_order),
corrects with Adams–Moulton of order min(q+1, max_order) at the next forcing (PECE), then evaluates
f_{k+1} = F_{k+1}(y_{k+1}); the last step is predictor-only.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence

import torch

from nnunet_fuse.ode.multistep import ADAMS_BASHFORTH, ADAMS_MOULTON, MAX_ORDER
from nnunet_fuse.ode.native import SolveKernels, solve_kernels
from nnunet_fuse.ode.resample import linear_upsample, linear_upsample_adjoint


def _upsampled(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return x if list(x.shape[2:]) == list(size) else linear_upsample(x, size)


class _Buffers:
    """Free state-sized tensors, reused instead of allocating anew: on CPU a new multi-megabyte tensor costs more
    than the elementwise pass that fills it (page faults). Only tensors of our own go in, never inputs or outputs.
    All are contiguous (the C kernels read raw memory)."""

    def __init__(self, like: torch.Tensor):
        self.shape, self.dtype, self.device, self.free = like.shape, like.dtype, like.device, []

    def take(self) -> torch.Tensor:
        return self.free.pop() if self.free else torch.empty(self.shape, dtype=self.dtype, device=self.device)

    def give(self, *tensors: torch.Tensor) -> None:
        self.free.extend(tensors)


def _combination(base: torch.Tensor, coefficients: Sequence[float], values: Sequence[torch.Tensor],
                 out: torch.Tensor) -> torch.Tensor:
    """out = base + Σ_j c_j v_j (zip: as many terms as coefficients), one kernel per term; out may be base."""
    torch.add(base, values[0], alpha=coefficients[0], out=out)
    for c, v in zip(coefficients[1:], values[1:]):
        out.add_(v, alpha=c)
    return out


def _forward_step_torch(buffers: _Buffers, z, history, ab, g, am, z_out, f_out, mask_p, mask_c) -> None:
    """One step in PyTorch operations, as solve_kernels.c's forward_step (which documents the arguments)."""
    if am:
        z_predicted = _combination(z, ab, history, buffers.take())
        f_predicted = torch.maximum(g, z_predicted, out=buffers.take())
        if mask_p is not None:
            torch.gt(g, z_predicted, out=mask_p)
        _combination(z, am, [f_predicted, *history], z_out)
        buffers.give(f_predicted, z_predicted)
    else:
        _combination(z, ab, history, z_out)
    if g is not None:
        torch.maximum(g, z_out, out=f_out)
        if mask_c is not None:
            torch.gt(g, z_out, out=mask_c)


def _backward_step_torch(buffers: _Buffers, y_adjoint, grad, fresh, f_adjoint, mask_c, mask_p, scale, g_adjoint,
                         adjoints, adjoints_fresh, ca, cp) -> None:
    """One step's adjoints in PyTorch operations, as solve_kernels.c's backward_step (which documents the
    arguments)."""
    if fresh:
        y_adjoint.copy_(grad)
    elif grad is not None:
        y_adjoint.add_(grad)
    if f_adjoint is not None:  # dF/dg = mask, dF/dy = mask - 1
        g_adjoint.copy_(mask_c).mul_(f_adjoint)  # the mask converted in our buffer first: no new tensor
        y_adjoint.add_(g_adjoint).sub_(f_adjoint)
    unwritten = list(adjoints_fresh)  # adjoints whose first term is still to come: written, not added to

    def accumulate(coefficients, value):
        for j, c in enumerate(coefficients):
            if c == 0:
                continue
            if unwritten[j]:
                torch.mul(value, c, out=adjoints[j])
                unwritten[j] = False
            else:
                adjoints[j].add_(value, alpha=c)
    accumulate(ca, y_adjoint)
    if mask_p is None:
        accumulate(cp, y_adjoint)
        return
    through = buffers.take().copy_(mask_p).mul_(y_adjoint)
    g_adjoint.add_(through, alpha=scale)
    predicted_adjoint = through.sub_(y_adjoint)
    accumulate(cp, predicted_adjoint)
    y_adjoint.add_(predicted_adjoint, alpha=scale)
    buffers.give(predicted_adjoint)


def solve_forward(forcings: Sequence[torch.Tensor], size: Sequence[int], h: float, max_order: int = MAX_ORDER,
                  corrector: bool = True, keep_states: bool = False,
                  masks: Optional[Dict[tuple, torch.Tensor]] = None,
                  kernels: Optional[SolveKernels] = None) -> List[torch.Tensor]:
    """The FuseUNet solve without autograd.

    forcings: N tensors (B, C, *size_k), coarsest first, already projected to the state's C channels.
    size: the state's spatial size; each forcing is linearly upsampled to it when it is needed.
    masks: if given, filled with the boolean mask g > -y of every field evaluation, keyed ("c", k) for f_k at the
    corrected state y_k and ("p", k) for the evaluation at the predicted state of step k-1.
    kernels: the C kernels (native.solve_kernels) that make each step one pass over memory; None: PyTorch operations.
    Returns the states [y_1, ..., y_N] (only [y_N] if not keep_states), each (B, C, *size).
    """
    n = len(forcings)
    g = _upsampled(forcings[0], size).contiguous()
    buffers = _Buffers(g)
    step = functools.partial(_forward_step_torch, buffers) if kernels is None else kernels.forward_step
    z = torch.zeros(g.shape, dtype=g.dtype, device=g.device)  # z = -y, y_0 = 0; in place unless states are kept
    f = torch.maximum(g, z, out=buffers.take())
    if masks is not None:
        masks["c", 0] = torch.gt(g, z)
    history: List[torch.Tensor] = []
    states: List[torch.Tensor] = []
    for k in range(n):
        if len(history) == max_order:
            buffers.give(history.pop())  # f_{k-max_order}: no step uses it any more
        history = [f, *history]
        last = k + 1 == n
        ab = [-h * c for c in ADAMS_BASHFORTH[len(history)]]
        am = [] if last or not corrector else [-h * c for c in ADAMS_MOULTON[min(len(history) + 1, max_order)]]
        g = None if last else _upsampled(forcings[k + 1], size).contiguous()
        z_out = buffers.take() if keep_states else z
        f = None if last else buffers.take()
        mask_p = mask_c = None
        if masks is not None and not last:
            mask_c = masks["c", k + 1] = torch.empty(z.shape, dtype=torch.bool, device=z.device)
            if am:
                mask_p = masks["p", k + 1] = torch.empty(z.shape, dtype=torch.bool, device=z.device)
        step(z, history, ab, g, am, z_out, f, mask_p, mask_c)
        z = z_out
        if keep_states or last:
            states.append(z)
        del g  # the next step upsamples its own forcing
    return [z.neg_() for z in states]


class _FuseUNetSolve(torch.autograd.Function):
    """apply(size, h, max_order, corrector, keep_states, kernels, *forcings) → states, as solve_forward."""

    @staticmethod
    def forward(ctx, size, h, max_order, corrector, keep_states, kernels, *forcings):
        masks: Dict[tuple, torch.Tensor] = {}
        states = solve_forward(forcings, size, h, max_order, corrector, keep_states, masks, kernels)
        ctx.mask_keys = list(masks)
        ctx.save_for_backward(*masks.values())
        ctx.settings = (list(size), h, max_order, corrector, keep_states, kernels)
        ctx.forcing_sizes = [list(x.shape[2:]) for x in forcings]
        return tuple(states)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *state_grads):
        size, h, max_order, corrector, keep_states, kernels = ctx.settings
        masks = dict(zip(ctx.mask_keys, ctx.saved_tensors))
        n = len(ctx.forcing_sizes)
        state_grads = [grad.contiguous() for grad in state_grads]
        forcing_grads: List[Optional[torch.Tensor]] = [None] * n
        buffers = _Buffers(state_grads[-1])
        step = functools.partial(_backward_step_torch, buffers) if kernels is None else kernels.backward_step
        f_adjoints: Dict[int, torch.Tensor] = {}  # adjoint of f_j, complete once step j is passed
        y_adjoint: Optional[torch.Tensor] = None

        def finish_forcing(k: int, g_adjoint: torch.Tensor) -> None:
            if ctx.forcing_sizes[k] == size:
                forcing_grads[k] = g_adjoint
            else:
                forcing_grads[k] = linear_upsample_adjoint(g_adjoint, ctx.forcing_sizes[k])
                buffers.give(g_adjoint)

        for k in reversed(range(n)):
            # y_adjoint enters as the adjoint of y_{k+1} and leaves as that of y_k
            grad = state_grads[k] if keep_states else (state_grads[0] if k == n - 1 else None)
            fresh = y_adjoint is None
            if fresh:
                y_adjoint = buffers.take()
            history_orders = min(k + 1, max_order)
            # step k took y_k to y_{k+1}; unless it was the last, f_{k+1} = F(g_{k+1}, y_{k+1}) = max(g, -y) followed
            has_next = k + 1 < n
            with_corrector = corrector and has_next
            # corrector: y_{k+1} = y_k + h (α_0 f̃_{k+1} + Σ_j α_{j+1} f_{k-j}),  f̃_{k+1} = F(g_{k+1}, ỹ_{k+1}),
            # predictor: ỹ_{k+1} = y_k + h Σ_j β_j f_{k-j}; f̃'s adjoint is scale · y_adjoint
            alphas = ADAMS_MOULTON[min(history_orders + 1, max_order)] if with_corrector else (0.0,)
            scale = h * alphas[0]
            ca = [h * a for a in alphas[1:]] + [0.0] * (history_orders - len(alphas) + 1)  # 0: no such term
            cp = [(scale * h * b if with_corrector else h * b) for b in ADAMS_BASHFORTH[history_orders]]
            adjoints_fresh = [k - j not in f_adjoints for j in range(history_orders)]
            adjoints = [f_adjoints.setdefault(k - j, buffers.take()) if is_fresh else f_adjoints[k - j]
                        for j, is_fresh in enumerate(adjoints_fresh)]
            f_adjoint = f_adjoints.pop(k + 1) if has_next else None
            g_adjoint = buffers.take() if has_next else None
            step(y_adjoint, grad, fresh, f_adjoint, masks["c", k + 1] if has_next else None,
                 masks["p", k + 1] if with_corrector else None, scale, g_adjoint, adjoints, adjoints_fresh, ca, cp)
            if has_next:
                buffers.give(f_adjoint)
                finish_forcing(k + 1, g_adjoint)
        # f_0 = F(g_0, y_0) with the constant y_0 = 0
        f_adjoint = f_adjoints.pop(0)
        g_adjoint = buffers.take().copy_(masks["c", 0]).mul_(f_adjoint)
        finish_forcing(0, g_adjoint)
        return (None, None, None, None, None, None, *forcing_grads)


def fuseunet_solve(forcings: Sequence[torch.Tensor], size: Sequence[int], h: float, max_order: int = MAX_ORDER,
                   corrector: bool = True, keep_states: bool = False, native: bool = True) -> List[torch.Tensor]:
    """solve_forward with a gradient for every forcing; without autograd (inference) no masks are computed.

    forcings: N tensors (B, C, *size_k), coarsest first. Returns [y_1, ..., y_N] (only [y_N] if not keep_states),
    each (B, C, *size), equal to multistep_solve over the fields F_k(y) = max(upsample(forcing_k), -y).
    native: float32/float64 on the CPU, each step runs as one pass of the C kernels (native.solve_kernels) where
    they can be built; False: PyTorch operations (the same terms; equal to rounding).
    """
    dtype = forcings[0].dtype
    for x in forcings[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    forcings = [x.to(dtype) for x in forcings]
    kernels = solve_kernels(forcings[0]) if native else None
    if torch.is_grad_enabled() and any(x.requires_grad for x in forcings):
        return list(_FuseUNetSolve.apply(list(size), h, max_order, corrector, keep_states, kernels, *forcings))
    return solve_forward(forcings, size, h, max_order, corrector, keep_states, kernels=kernels)
