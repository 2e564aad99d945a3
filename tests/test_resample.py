"""Resampling without scatter-add backwards equals F.interpolate in values and gradients."""
import pytest
import torch
import torch.nn.functional as F

from nnunet_fuse.ode.resample import area_downsample, linear_upsample, linear_upsample_adjoint

MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


@pytest.mark.parametrize("in_size,out_size", [
    ((5,), (40,)),                      # 1D, factor 8
    ((4, 7), (64, 112)),                # 2D, factor 16
    ((3, 5), (7, 12)),                  # 2D, non-integer factors
    ((2, 4, 4), (10, 64, 64)),          # 3D anisotropic (factor 5 on z)
    ((4, 4, 4), (4, 32, 32)),           # 3D, one axis unchanged
    ((1, 1, 1), (8, 8, 8)),             # a single voxel
])
def test_linear_upsample_equals_interpolate(in_size, out_size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    ours = linear_upsample(x, out_size)
    reference = F.interpolate(x, size=list(out_size), mode=MODES[len(in_size)], align_corners=False)
    assert ours.shape == reference.shape == (2, 3, *out_size)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(reference)
    (g_ours,) = torch.autograd.grad(ours, x, upstream)
    (g_ref,) = torch.autograd.grad(reference, x, upstream)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("in_size,out_size", [((5,), (40,)), ((3, 5), (7, 12)), ((2, 4, 4), (10, 64, 64)),
                                             ((4, 4, 4), (4, 32, 32)), ((1, 1, 1), (8, 8, 8))])
def test_linear_upsample_adjoint_is_its_gradient(in_size, out_size):
    """linear_upsample_adjoint(v, in_size) is the gradient of <linear_upsample(x, out_size), v> at x, so
    <U x, v> = <x, Uᵀ v>."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, *out_size, dtype=torch.float64)
    adjoint = linear_upsample_adjoint(upstream, in_size)
    assert adjoint.shape == x.shape
    torch.testing.assert_close(adjoint, torch.autograd.grad(linear_upsample(x, out_size), x, upstream)[0],
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((linear_upsample(x, out_size) * upstream).sum(), (x * adjoint).sum())
    with pytest.raises(ValueError, match="axes"):
        linear_upsample_adjoint(upstream, in_size[:-1] or (1, 1))


def test_linear_upsample_keeps_dtype_and_works_under_autocast():
    x = torch.randn(1, 2, 4, 4)
    assert linear_upsample(x.double(), (8, 8)).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = linear_upsample(x.bfloat16(), (16, 16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), F.interpolate(x, size=[16, 16], mode="bilinear"), rtol=2e-2, atol=2e-2)


def test_weights_cached_under_inference_mode_still_train():
    x = torch.randn(1, 1, 3, 6)
    with torch.inference_mode():
        linear_upsample(x, (11, 13))  # fills the cache inside inference mode
    w = torch.randn(1, 1, 3, 6, requires_grad=True)
    linear_upsample(w, (11, 13)).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_linear_upsample_rejects_wrong_axes():
    with pytest.raises(ValueError, match="axes"):
        linear_upsample(torch.zeros(1, 1, 4, 4), (8, 8, 8))


@pytest.mark.parametrize("in_size,out_size", [((8, 12), (2, 3)), ((8, 16, 16), (4, 4, 2)), ((7, 9), (3, 4))])
def test_area_downsample_equals_interpolate(in_size, out_size):
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    ours = area_downsample(x, out_size)
    reference = F.interpolate(x, size=list(out_size), mode="area")
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(reference)
    ours_grad, = torch.autograd.grad(ours, x, upstream)
    torch.testing.assert_close(ours_grad, torch.autograd.grad(reference, x, upstream)[0])


@pytest.mark.parametrize("in_size,out_size,expected", [((4, 7), (64, 112), "interpolate"),
                                                        ((2, 4, 4), (8, 32, 32), "matmul")])
def test_under_torch_compile_2d_uses_interpolate_and_3d_matrix_products(in_size, out_size, expected):
    """What dynamo traces: F.interpolate for 2D, matrix products for 3D; same values as eager either way."""
    traced = []

    def recording_backend(graph_module, example_inputs):
        traced.extend(str(node.target) for node in graph_module.graph.nodes if node.op == "call_function")
        return graph_module.forward

    torch._dynamo.reset()
    x = torch.randn(2, 3, *in_size)
    compiled = torch.compile(lambda t: linear_upsample(t, out_size), backend=recording_backend, fullgraph=True)
    torch.testing.assert_close(compiled(x), linear_upsample(x, out_size), rtol=1e-5, atol=1e-5)
    uses_interpolate = any("interpolate" in target for target in traced)
    uses_matmul = any("matmul" in target for target in traced)
    assert (uses_interpolate, uses_matmul) == ((True, False) if expected == "interpolate" else (False, True)), traced
