"""Adams–Bashforth / Adams–Moulton linear multistep steps as pure tensor functions.

Notation (DESIGN.md §2): at step k the solver holds y_{k-1} and the history of derivative values
f_k, f_{k-1}, ... (newest first), each evaluated at a *corrected* state. All functions work on tensors of any shape,
device and dtype; they never allocate on a device of their own.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import torch

#: Adams–Bashforth coefficients β_j of order q, for f_k, f_{k-1}, ... (newest first).
ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}

#: Adams–Moulton coefficients of order q, for f_{k+1} (the predicted value), f_k, f_{k-1}, ...
ADAMS_MOULTON = {
    1: (1.0,),
    2: (1 / 2, 1 / 2),
    3: (5 / 12, 8 / 12, -1 / 12),
    4: (9 / 24, 19 / 24, -5 / 24, 1 / 24),
}

MAX_ORDER = 4

Field = Callable[[torch.Tensor], torch.Tensor]


def _linear_combination(y: torch.Tensor, h: float, coefficients: Sequence[float],
                        values: Sequence[torch.Tensor]) -> torch.Tensor:
    """y + h · Σ_j c_j v_j as one kernel per term (h folded into the coefficients), accumulated in place into the
    result, which is our own tensor: inputs are never written (autograd-safe)."""
    out = torch.add(y, values[0], alpha=h * coefficients[0])
    for c, v in zip(coefficients[1:], values[1:]):
        out.add_(v, alpha=h * c)
    return out


def adams_bashforth_step(y: torch.Tensor, history: Sequence[torch.Tensor], h: float) -> torch.Tensor:
    """Explicit AB step of order q = len(history).

    y: state y_{k-1}, any shape. history: [f_k, f_{k-1}, ...] newest first, each shaped like y.
    Returns y_k = y_{k-1} + h Σ_j β_j f_{k-j}.
    """
    order = len(history)
    if order not in ADAMS_BASHFORTH:
        raise ValueError(f"Adams-Bashforth order must be 1..{MAX_ORDER}, got {order} history values")
    return _linear_combination(y, h, ADAMS_BASHFORTH[order], history)


def adams_moulton_step(y: torch.Tensor, f_next: torch.Tensor, history: Sequence[torch.Tensor],
                       h: float) -> torch.Tensor:
    """AM corrector step of order q = len(history) + 1, used explicitly (f_next from a predictor).

    y: state y_{k-1}. f_next: f evaluated at the predicted y_k. history: [f_k, f_{k-1}, ...] newest first.
    Returns y_{k-1} + h (α_0 f_next + Σ_j α_{j+1} f_{k-j}).
    """
    order = len(history) + 1
    if order not in ADAMS_MOULTON:
        raise ValueError(f"Adams-Moulton order must be 1..{MAX_ORDER}, got {len(history)} history values")
    return _linear_combination(y, h, ADAMS_MOULTON[order], [f_next, *history])


def multistep_solve(fields: Sequence[Field], y0: torch.Tensor, h: float, max_order: int = MAX_ORDER,
                    corrector: bool = True, n_steps: int | None = None,
                    keep_states: bool = True) -> List[torch.Tensor]:
    """Integrate dy/dt = fields[k](y) on [t_k, t_{k+1}] with the paper's predictor–corrector (PECE) scheme.

    fields[k] is the vector field at node t_k = k·h (in FuseUNet: F for the k-th skip, coarsest first).
    Step k (0-based) predicts with Adams–Bashforth of order q = min(k+1, max_order) and, if ``corrector`` and a
    field for the next node exists, corrects once with Adams–Moulton of order min(q+1, max_order) evaluated with
    fields[k+1]. The derivative history keeps values evaluated at the corrected states (PECE), newest first, so each
    field is evaluated at most twice and the history is never stale or reversed.

    n_steps defaults to len(fields): then the last step has no next field and is predictor-only, as in FuseUNet.
    Pass len(fields) == n_steps + 1 to correct every step (a plain ODE solve).
    fields[k] is first called in step k-1 (corrector) and never after step k, in that order: a lazy sequence may
    build each field on first access and drop the previous one.
    Returns the states [y_1, ..., y_n] (only [y_n] if not keep_states), each shaped like y0.
    """
    if not 1 <= max_order <= MAX_ORDER:
        raise ValueError(f"max_order must be between 1 and {MAX_ORDER}, got {max_order}")
    n_steps = len(fields) if n_steps is None else n_steps
    if not 1 <= n_steps <= len(fields):
        raise ValueError(f"n_steps must be between 1 and len(fields)={len(fields)}, got {n_steps}")

    y = y0
    f = fields[0](y)
    history: List[torch.Tensor] = []
    states: List[torch.Tensor] = []
    for k in range(n_steps):
        history = [f, *history[: max_order - 1]]
        y_predicted = adams_bashforth_step(y, history, h)
        has_next_field = k + 1 < len(fields)
        if corrector and has_next_field:
            corrector_order = min(len(history) + 1, max_order)
            y = adams_moulton_step(y, fields[k + 1](y_predicted), history[: corrector_order - 1], h)
        else:
            y = y_predicted
        if keep_states or k + 1 == n_steps:
            states.append(y)
        if k + 1 < n_steps:
            f = fields[k + 1](y)
    return states
