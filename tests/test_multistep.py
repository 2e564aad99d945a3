"""Adams–Bashforth / Adams–Moulton steps against ODEs with closed-form solutions: convergence orders."""
import math

import numpy as np
import pytest
import torch

from nnunet_fuse.ode.multistep import (
    ADAMS_BASHFORTH,
    ADAMS_MOULTON,
    adams_bashforth_step,
    adams_moulton_step,
    multistep_solve,
)

# dy/dt = f(t, y) = -2 t y², y(0) = 1  →  y(t) = 1 / (1 + t²)   (nonlinear, non-autonomous)
# plus a vector component: dz/dt = cos(t) · z  →  z(t) = exp(sin t)


def field(t, y):
    return torch.stack([-2 * t * y[0] ** 2, math.cos(t) * y[1]])


def exact(t):
    return torch.tensor([1 / (1 + t * t), math.exp(math.sin(t))], dtype=torch.float64)


T_END = 1.0


def solve_exact_start(n_steps, ab_order, am_order=None):
    """AB(ab_order) [+ one AM(am_order) correction, PECE] with exact starting values, the textbook setting."""
    h = T_END / n_steps
    start = max(ab_order, (am_order or 1) - 1)
    y = exact(0.0)
    history = [field(0.0, y)]
    for k in range(1, start):
        y = exact(k * h)
        history.insert(0, field(k * h, y))
    for k in range(start - 1, n_steps):
        t = k * h
        y_new = adams_bashforth_step(y, history[:ab_order], h)
        if am_order is not None:
            y_new = adams_moulton_step(y, field(t + h, y_new), history[: am_order - 1], h)
        y = y_new
        history.insert(0, field(t + h, y))
    return y


def observed_order(solver, steps=(16, 32, 64, 128)):
    errors = [float(torch.linalg.norm(solver(n) - exact(T_END))) for n in steps]
    slope = np.polyfit(np.log([T_END / n for n in steps]), np.log(errors), 1)[0]
    return slope, errors


def test_coefficients_are_consistent():
    # consistency: Σβ = 1, and order conditions Σ β_j (-j)^m · m... checked through the convergence tests below
    for table in (ADAMS_BASHFORTH, ADAMS_MOULTON):
        for order, coefficients in table.items():
            assert len(coefficients) == order
            assert sum(coefficients) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_adams_bashforth_global_error_order(order):
    slope, errors = observed_order(lambda n: solve_exact_start(n, order))
    assert errors[-1] < errors[0]
    assert slope == pytest.approx(order, abs=0.25), f"AB{order} observed order {slope:.2f}, errors {errors}"


@pytest.mark.parametrize("ab_order,am_order", [(1, 1), (1, 2), (2, 3), (3, 4), (4, 4)])
def test_predictor_corrector_global_error_order(ab_order, am_order):
    # PECE: order = min(predictor order + 1, corrector order)
    expected = min(ab_order + 1, am_order)
    slope, errors = observed_order(lambda n: solve_exact_start(n, ab_order, am_order))
    assert slope == pytest.approx(expected, abs=0.25), f"AB{ab_order}+AM{am_order}: {slope:.2f}, {errors}"


def _fields(n_steps, with_last_corrector):
    h = T_END / n_steps
    count = n_steps + 1 if with_last_corrector else n_steps
    return [lambda y, t=k * h: field(t, y) for k in range(count)]


@pytest.mark.parametrize("max_order,corrector,expected", [
    (1, False, 1), (2, False, 2), (4, False, 2),  # the AB1 start step limits a ramped start to order 2
    (1, True, 1), (2, True, 2), (3, True, 3), (4, True, 3),  # AB1+AM2 start step: order 3
])
def test_multistep_solve_ramped_start_orders(max_order, corrector, expected):
    """The solver FuseUNet uses starts at order 1 and ramps up; its observed order is bounded by the start step."""
    def solver(n):
        return multistep_solve(_fields(n, with_last_corrector=True), exact(0.0), T_END / n, max_order, corrector,
                               n_steps=n)[-1]
    slope, errors = observed_order(solver, steps=(32, 64, 128, 256))
    assert slope == pytest.approx(expected, abs=0.25), f"p={max_order} corrector={corrector}: {slope:.2f}, {errors}"


def test_multistep_solve_matches_hand_written_scheme_with_six_steps():
    """Regression for the reference code's stale/reversed history from the 4th step on (N >= 5)."""
    n = 6
    h = 1.0 / n
    g = [torch.tensor(v, dtype=torch.float64) for v in (0.3, -0.2, 0.9, 0.1, -0.4, 0.7)]
    fields = [lambda y, gk=gk: torch.relu(y + gk) - y for gk in g]
    y0 = torch.tensor(0.05, dtype=torch.float64)
    got = multistep_solve(fields, y0, h, max_order=4, corrector=True)

    # independent, explicit transcription of DESIGN.md §2 (1-based k, F_k = fields[k-1])
    F = lambda k, y: fields[k - 1](y)  # noqa: E731
    ys, fs = [y0], {}
    for k in range(1, n + 1):
        fs[k] = F(k, ys[-1])
        q = min(k, 4)
        if q == 1:
            yp = ys[-1] + h * fs[k]
        elif q == 2:
            yp = ys[-1] + h / 2 * (3 * fs[k] - fs[k - 1])
        elif q == 3:
            yp = ys[-1] + h / 12 * (23 * fs[k] - 16 * fs[k - 1] + 5 * fs[k - 2])
        else:
            yp = ys[-1] + h / 24 * (55 * fs[k] - 59 * fs[k - 1] + 37 * fs[k - 2] - 9 * fs[k - 3])
        if k < n:
            ft = F(k + 1, yp)
            if q == 1:
                yp = ys[-1] + h / 2 * (ft + fs[k])
            elif q == 2:
                yp = ys[-1] + h / 12 * (5 * ft + 8 * fs[k] - fs[k - 1])
            else:
                yp = ys[-1] + h / 24 * (9 * ft + 19 * fs[k] - 5 * fs[k - 1] + fs[k - 2])
        ys.append(yp)
    assert len(got) == n
    for a, b in zip(got, ys[1:]):
        assert float(a) == pytest.approx(float(b), abs=1e-14)


def test_each_field_is_evaluated_at_most_twice_and_last_step_is_predictor_only():
    calls = []

    def make(k):
        def f(y):
            calls.append(k)
            return -y
        return f

    multistep_solve([make(k) for k in range(5)], torch.ones(3), 0.2, max_order=4, corrector=True)
    assert calls == [0, 1, 1, 2, 2, 3, 3, 4, 4]  # F_1 once; then predicted + corrected evaluation per next field
    calls.clear()
    multistep_solve([make(k) for k in range(5)], torch.ones(3), 0.2, max_order=4, corrector=False)
    assert calls == [0, 1, 2, 3, 4]


def test_steps_do_not_modify_their_inputs_and_keep_dtype_device():
    y = torch.randn(2, 3, dtype=torch.float64)
    history = [torch.randn(2, 3, dtype=torch.float64) for _ in range(4)]
    copies = [t.clone() for t in [y, *history]]
    out = adams_bashforth_step(y, history, 0.1)
    out2 = adams_moulton_step(y, history[0], history[1:], 0.1)
    for a, b in zip([y, *history], copies):
        assert torch.equal(a, b)
    assert out.dtype == out2.dtype == torch.float64
    expected = y + 0.1 * sum(c * f for c, f in zip(ADAMS_BASHFORTH[4], history))
    assert torch.allclose(out, expected, atol=1e-14)


def test_invalid_orders_are_rejected():
    with pytest.raises(ValueError, match="max_order"):
        multistep_solve([lambda y: y], torch.zeros(1), 1.0, max_order=5)
    with pytest.raises(ValueError, match="Adams-Bashforth order"):
        adams_bashforth_step(torch.zeros(1), [torch.zeros(1)] * 5, 0.1)
