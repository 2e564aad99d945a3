"""The fused FuseUNet solve (one autograd node, backward written out) against the autograd composition it replaces."""
import pytest
import torch

from nnunet_fuse.ode.decoder import skip_field
from nnunet_fuse.ode.fused_solve import fuseunet_solve, solve_forward
from nnunet_fuse.ode.multistep import multistep_solve
from nnunet_fuse.ode.native import solve_kernels
from nnunet_fuse.ode.resample import linear_upsample


def reference_solve(forcings, size, h, max_order, corrector, keep_states):
    """multistep_solve over skip_field fields, every forcing upsampled by autograd's ops."""
    forcings = [x if list(x.shape[2:]) == list(size) else linear_upsample(x, size) for x in forcings]
    fields = [lambda y, g=g: skip_field(y, g) for g in forcings]
    return multistep_solve(fields, torch.zeros_like(forcings[0]), h, max_order, corrector, keep_states=keep_states)


def pyramid(size, n, channels=3, batch=2, dtype=torch.float64):
    """n forcings, coarsest first, each axis halved per level (at least 1 voxel), the last at full size."""
    return [torch.randn(batch, channels, *[max(1, s >> (n - 1 - k)) for s in size], dtype=dtype, requires_grad=True)
            for k in range(n)]


@pytest.mark.parametrize("size", [(16, 12), (8, 8, 6)])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("max_order", [1, 2, 4])
@pytest.mark.parametrize("corrector", [True, False])
@pytest.mark.parametrize("keep_states", [True, False])
@pytest.mark.parametrize("native", [True, False], ids=["C kernels", "torch ops"])
def test_values_and_gradients_equal_the_autograd_composition(size, n, max_order, corrector, keep_states, native):
    torch.manual_seed(n * 10 + max_order)
    forcings = pyramid(size, n)
    states = fuseunet_solve(forcings, size, 1 / n, max_order, corrector, keep_states, native)
    reference = reference_solve(forcings, size, 1 / n, max_order, corrector, keep_states)
    assert len(states) == len(reference) == (n if keep_states else 1)
    weights = [torch.randn_like(s) for s in reference]
    grads = torch.autograd.grad(sum((s * w).sum() for s, w in zip(states, weights)), forcings)
    reference_grads = torch.autograd.grad(sum((s * w).sum() for s, w in zip(reference, weights)), forcings)
    for a, b in zip([*states, *grads], [*reference, *reference_grads]):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("native", [True, False], ids=["C kernels", "torch ops"])
def test_gradcheck_and_ties_follow_relu_derivative_zero(native):
    """Finite differences agree (float64); at exact ties g = -y (here: a forcing of exactly zero meets y_0 = 0) the
    gradient is that of -y + ReLU(y + g) with ReLU'(0) = 0, as in skip_field."""
    torch.manual_seed(0)
    forcings = pyramid((6, 4), 3, channels=2, batch=1)
    assert torch.autograd.gradcheck(lambda *f: fuseunet_solve(f, (6, 4), 1 / 3, 4, True, True, native), forcings)
    tied = [torch.zeros(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)]
    (grad,) = torch.autograd.grad(fuseunet_solve(tied, (4, 4), 1.0, native=native)[0].sum(), tied)
    (reference,) = torch.autograd.grad(reference_solve(tied, (4, 4), 1.0, 4, True, False)[0].sum(), tied)
    assert torch.equal(grad, reference) and torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("native", [True, False], ids=["C kernels", "torch ops"])
def test_inference_computes_no_masks_and_the_same_values(native):
    torch.manual_seed(1)
    forcings = [f.detach() for f in pyramid((16, 16), 4, dtype=torch.float32)]
    masks = {}
    with_masks = solve_forward(forcings, (16, 16), 0.25, masks=masks,
                               kernels=solve_kernels(forcings[0]) if native else None)
    assert sorted(masks) == sorted([("c", k) for k in range(4)] + [("p", k) for k in range(1, 4)])
    assert all(m.dtype == torch.bool and m.shape == (2, 3, 16, 16) for m in masks.values())
    with torch.inference_mode():
        out = fuseunet_solve(forcings, (16, 16), 0.25, native=native)
    assert torch.equal(out[0], with_masks[0])


def test_follows_dtype_and_device_and_runs_under_autocast():
    torch.manual_seed(2)
    forcings = pyramid((16, 16), 4, dtype=torch.float32)
    reference = fuseunet_solve(forcings, (16, 16), 0.25)[0]
    low = [f.detach().bfloat16().requires_grad_() for f in forcings]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fuseunet_solve(low, (16, 16), 0.25)[0]
    assert out.dtype == torch.bfloat16 and out.device == forcings[0].device
    torch.testing.assert_close(out.float(), reference.detach(), rtol=0.05, atol=0.05)
    grads = torch.autograd.grad(out.float().sum(), low)
    assert all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads)


def test_mixed_forcing_dtypes_are_promoted():
    forcings = [torch.randn(1, 2, 4, 4, dtype=torch.float32, requires_grad=True),
                torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)]
    out = fuseunet_solve(forcings, (8, 8), 0.5)[0]
    grads = torch.autograd.grad(out.sum(), forcings)
    assert out.dtype == torch.float64 and [g.dtype for g in grads] == [torch.float32, torch.float64]
