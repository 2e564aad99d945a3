"""1×1 convolutions whose backward is matrix products (the FuseUNet decoder's projections and head on the CPU)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_fuse.ode.pointwise_conv import PointwiseConv2d, PointwiseConv3d, pointwise_conv


@pytest.mark.parametrize("dim,batch,bias", [(2, 1, True), (2, 3, False), (3, 2, True), (3, 1, False)])
def test_values_and_gradients_equal_the_convolution(dim, batch, bias):
    torch.manual_seed(0)
    size = (9, 7) if dim == 2 else (5, 6, 4)
    x = torch.randn(batch, 5, *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 5, *[1] * dim, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True) if bias else None
    conv = F.conv2d if dim == 2 else F.conv3d
    inputs = [t for t in (x, weight, b) if t is not None]
    out, ref = pointwise_conv(x, weight, b), conv(x, weight, b)
    assert out.shape == (batch, 3, *size)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(out, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *t: pointwise_conv(*t), inputs)


def test_gradient_is_a_whole_tensor_so_autograd_can_accumulate_in_place():
    """A skip feeds both its projection and the next encoder stage; the projection's input gradient must not be a
    view (autograd copies a view before summing into it: a fresh full-resolution tensor per step)."""
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    weight = torch.randn(3, 4, 1, 1, requires_grad=True)
    out = pointwise_conv(x, weight)
    (grad_x,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert grad_x._base is None and grad_x.is_contiguous()
    assert out._base is None
    total = (pointwise_conv(x, weight).sum() + (x * x).sum())
    total.backward()
    torch.testing.assert_close(x.grad, weight.sum(0).view(1, 4, 1, 1).expand_as(x) + 2 * x)


def test_runs_in_the_autocast_dtype_and_gradients_reach_float32_parameters():
    conv = PointwiseConv3d(6, 4)
    x = torch.randn(2, 6, 8, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
        reference = F.conv3d(x, conv.weight, conv.bias)
    assert out.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.float())
    out.float().square().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and conv.bias.grad.dtype == torch.float32
    assert x.grad.dtype == torch.float32 and x.grad.abs().sum() > 0


@pytest.mark.parametrize("cls,base,size", [(PointwiseConv2d, nn.Conv2d, (10, 12)),
                                           (PointwiseConv3d, nn.Conv3d, (4, 6, 5))])
def test_modules_are_convolutions_with_the_same_state_dict_and_hooks(cls, base, size):
    torch.manual_seed(0)
    module, plain = cls(5, 3), base(5, 3, kernel_size=1)
    assert isinstance(module, base) and module.kernel_size == plain.kernel_size
    plain.load_state_dict(module.state_dict())  # same keys and shapes: checkpoints load either way
    calls = []
    module.register_forward_hook(lambda m, a, o: calls.append(o.shape))
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    module.double(), plain.double()
    outputs = {}
    for matmul_backward in (True, False):
        module.matmul_backward = matmul_backward
        xi = x.clone().requires_grad_()
        out = module(xi)
        out.square().sum().backward()
        outputs[matmul_backward] = (out, xi.grad, module.weight.grad.clone(), module.bias.grad.clone())
        module.zero_grad()
    for a, b in zip(outputs[True], outputs[False]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outputs[True][0], plain(x))
    assert len(calls) == 2


def test_clear_error_for_a_kernel_that_is_not_1x1():
    with pytest.raises(ValueError, match="1×1 kernel"):
        pointwise_conv(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="1×1 kernel"):
        pointwise_conv(torch.randn(1, 4, 8, 8), torch.randn(2, 5, 1, 1))


def test_mismatched_dtypes_raise_as_the_convolution_does():
    """No silent promotion on the CPU: nn.Conv (and CUDA, which keeps it) refuses float64 input with float32 weights."""
    x, weight = torch.randn(1, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 1, 1)
    with pytest.raises(RuntimeError):
        F.conv2d(x, weight)
    with pytest.raises(RuntimeError):
        pointwise_conv(x, weight)
