"""The C kernels of the CPU solve (ode/native.py, ode/solve_kernels.c): built with the system compiler, cached,
split over threads, equal to the PyTorch operations they replace, and a clear fallback where they cannot be built."""
import ctypes
import warnings

import pytest
import torch

from torch import nn

from nnunet_fuse.architectures import FuseUNet
from nnunet_fuse.ode import native
from nnunet_fuse.ode.fused_solve import fuseunet_solve
from nnunet_fuse.ode.native import SolveKernels, solve_kernels
from test_fused_solve import pyramid


def solve_and_grads(forcings, size, native_solve, keep_states=True):
    states = fuseunet_solve(forcings, size, 1 / len(forcings), keep_states=keep_states, native=native_solve)
    torch.manual_seed(99)
    weights = [torch.randn_like(s) for s in states]
    grads = torch.autograd.grad(sum((s * w).sum() for s, w in zip(states, weights)), forcings)
    return [s.detach() for s in states], grads


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("threads", [1, 3])
def test_kernels_over_thread_chunks_equal_the_torch_operations(dtype, tolerance, threads):
    """Large enough (2·6·40·36·30 elements, over solve_kernels.c's threshold of 65536) to be shared out by OpenMP:
    an uneven split over 3 threads and a single thread give the values and gradients of the PyTorch operations."""
    size = (40, 36, 30)
    torch.manual_seed(0)
    forcings = pyramid(size, 5, channels=6, batch=2, dtype=dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        states, grads = solve_and_grads(forcings, size, True)
    finally:
        torch.set_num_threads(previous)
    reference_states, reference_grads = solve_and_grads(forcings, size, False)
    for a, b in zip([*states, *grads], [*reference_states, *reference_grads]):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
    assert all(g.abs().sum() > 0 for g in grads)


def test_network_with_and_without_kernels_agree():
    """FuseUNet on a real 3D encoder, deep supervision: outputs and every parameter's gradient."""
    torch.manual_seed(1)
    network = FuseUNet(input_channels=2, n_stages=4, features_per_stage=[4, 8, 16, 16], conv_op=nn.Conv3d,
                       kernel_sizes=[[3] * 3] * 4, strides=[[1] * 3] + [[2] * 3] * 3, n_conv_per_stage=2,
                       num_classes=3, deep_supervision=True, conv_bias=True, norm_op=nn.InstanceNorm3d,
                       norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU)
    x = torch.randn(2, 2, 16, 16, 16)
    results = []
    for cpu_native_solve in (True, False):
        network.decoder.cpu_native_solve = cpu_native_solve
        outputs = network(x)
        loss = sum((o * (i + 1)).square().mean() for i, o in enumerate(outputs))
        grads = torch.autograd.grad(loss, list(network.parameters()))
        assert all(g.abs().sum() > 0 for g in grads)
        results.append([o.detach() for o in outputs] + list(grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_built_once_into_the_cache_folder_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("NNUNET_FUSE_CACHE", str(tmp_path / "cache"))
    kernels = solve_kernels(torch.zeros(1))
    assert isinstance(kernels, SolveKernels)
    (library,) = (tmp_path / "cache").glob("solve_kernels_*.so")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [library.name]  # no scratch left behind
    stamp = library.stat().st_mtime_ns
    assert native.build(tmp_path / "cache", ["cc"]) == library and library.stat().st_mtime_ns == stamp
    assert solve_kernels(torch.zeros(1)) is kernels


def test_without_a_compiler_warns_once_and_the_solve_uses_torch_operations(tmp_path, monkeypatch):
    monkeypatch.setenv("NNUNET_FUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    forcings = pyramid((8, 8), 3, channels=2, batch=1, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="could not build its C kernels.*PyTorch operations.*C compiler"):
        states, grads = solve_and_grads(forcings, (8, 8), True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert solve_kernels(forcings[0]) is None  # warned once only
    monkeypatch.delenv("CC")
    reference_states, reference_grads = solve_and_grads(forcings, (8, 8), False)
    for a, b in zip([*states, *grads], [*reference_states, *reference_grads]):
        assert torch.equal(a, b)


def test_a_compiler_error_is_reported(tmp_path, monkeypatch):
    """A compiler that runs but fails: its message reaches the warning."""
    monkeypatch.setenv("NNUNET_FUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "cc --no-such-option")
    with pytest.warns(RuntimeWarning, match="cc --no-such-option .*failed: .*no-such-option"):
        assert solve_kernels(torch.zeros(1)) is None


def test_only_float_cpu_tensors_and_contiguous_arrays():
    assert solve_kernels(torch.zeros(1, dtype=torch.bfloat16)) is None
    assert solve_kernels(torch.zeros(1, dtype=torch.float16)) is None
    kernels = solve_kernels(torch.zeros(1))
    z = torch.zeros(2, 3, 4, 4)
    strided = torch.zeros(2, 3, 4, 8)[..., ::2]
    with pytest.raises(ValueError, match="contiguous CPU tensors of shape"):
        kernels.forward_step(z, [strided], [-1.0], None, [], z, None, None, None)
    with pytest.raises(ValueError, match="dtype torch.float32"):
        kernels.forward_step(z, [z.double()], [-1.0], None, [], z, None, None, None)


def test_serial_build_without_openmp_gives_the_same_step(tmp_path):
    """The build a compiler without OpenMP falls back to: same kernels, run serially."""
    serial = SolveKernels(ctypes.CDLL(str(native.build(tmp_path, ["cc"], native.FLAGS))))
    parallel = solve_kernels(torch.zeros(1))
    torch.manual_seed(3)
    z, g, *history = [torch.randn(2, 4, 64, 32, 32) for _ in range(6)]
    results = []
    for kernels in (serial, parallel):
        z_out, f_out = torch.empty_like(z), torch.empty_like(z)
        masks = [torch.empty(z.shape, dtype=torch.bool) for _ in range(2)]
        kernels.forward_step(z, history, [-0.3, 0.2, -0.1, 0.05], g, [-0.1, -0.2, 0.1, -0.02], z_out, f_out, *masks)
        results.append([z_out, f_out, *masks])
    assert all(torch.equal(a, b) for a, b in zip(*results))
    assert results[0][2].any() and not results[0][2].all()
    assert serial.threads() == 1


def test_kernels_run_on_pytorchs_openmp_threads():
    """The library's libgomp.so.1 resolves to the one PyTorch loaded: torch.set_num_threads sets the kernels' thread
    count too (a runtime of their own would ignore it and compete with PyTorch's threads for the cores)."""
    kernels = solve_kernels(torch.zeros(1))
    previous = torch.get_num_threads()
    try:
        for threads in (3, 1):
            torch.set_num_threads(threads)
            assert kernels.threads() == threads
    finally:
        torch.set_num_threads(previous)
