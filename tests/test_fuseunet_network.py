"""The FuseUNet decoder and the architecture classes nnU-Net plans name."""
import numpy as np
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from nnunet_fuse.architectures import FuseResEncUNet, FuseUNet
from nnunet_fuse.ode.decoder import FuseUNetDecoder, default_state_channels


def arch_kwargs(dim, n_stages=4, strides=None, features=(4, 8, 16, 32, 32, 32, 32)):
    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d
    strides = strides or [[1] * dim] + [[2] * dim] * (n_stages - 1)
    return dict(n_stages=n_stages, features_per_stage=list(features[:n_stages]), conv_op=conv,
                kernel_sizes=[[3] * dim] * n_stages, strides=strides, conv_bias=True, norm_op=norm,
                norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                nonlin_kwargs={"inplace": True})


def build(cls, dim, num_classes=3, deep_supervision=False, nnunet_init=True, **kw):
    kwargs = arch_kwargs(dim, **{k: kw.pop(k) for k in list(kw) if k in ("n_stages", "strides")})
    stage_arg = {"n_conv_per_stage": 2} if cls is FuseUNet else {"n_blocks_per_stage": 1}
    net = cls(input_channels=2, num_classes=num_classes, deep_supervision=deep_supervision, **kwargs,
              **stage_arg, **kw)
    if nnunet_init:
        net.apply(net.initialize)
    return net


def nnunet_deep_supervision_shapes(input_size, strides):
    """The target shapes nnU-Net's loss uses (nnUNetTrainer._get_deep_supervision_scales + downsampling)."""
    scales = list(list(i) for i in 1 / np.cumprod(np.vstack(strides), axis=0))[:-1]
    return [tuple(int(round(s * f)) for s, f in zip(input_size, scale)) for scale in scales]


CASES = [
    (FuseUNet, 2, 4, None, (32, 48)),
    (FuseUNet, 3, 3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], (16, 32, 24)),  # anisotropic strides
    (FuseUNet, 2, 2, None, (16, 16)),  # minimum: one skip + bottleneck
    (FuseUNet, 2, 7, None, (128, 128)),  # nnU-Net-like 2D depth (N >= 5: multistep history beyond order 4)
    (FuseResEncUNet, 2, 4, [[1, 1], [2, 1], [2, 2], [2, 2]], (32, 24)),
    (FuseResEncUNet, 3, 4, None, (16, 16, 16)),
]


@pytest.mark.parametrize("cls,dim,n_stages,strides,size", CASES)
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_output_shapes_and_gradient_reaches_every_parameter(cls, dim, n_stages, strides, size, deep_supervision):
    # PyTorch's random init: nnU-Net's ResEnc init zeroes the last norm of each residual branch, which makes the
    # branch's weight gradients exactly zero at step 0 (they are still in the graph: checked below with that init)
    net = build(cls, dim, deep_supervision=deep_supervision, n_stages=n_stages, strides=strides, nnunet_init=False)
    x = torch.randn(2, 2, *size)
    out = net(x)
    if deep_supervision:
        strides_used = strides or [[1] * dim] + [[2] * dim] * (n_stages - 1)
        expected = nnunet_deep_supervision_shapes(size, strides_used)
        assert [tuple(o.shape[2:]) for o in out] == expected  # highest resolution first
        assert all(o.shape[:2] == (2, 3) for o in out)
        loss = sum((o * torch.randn_like(o)).mean() for o in out)
    else:
        assert out.shape == (2, 3, *size)
        loss = (out * torch.randn_like(out)).mean()
    loss.backward()
    zero = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not zero, f"parameters without a gradient: {zero}"

    net = build(cls, dim, deep_supervision=deep_supervision, n_stages=n_stages, strides=strides)
    out = net(x)
    sum(o.sum() for o in (out if deep_supervision else [out])).backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the graph (breaks DDP): {unused}"


@pytest.mark.parametrize("max_order", [1, 2, 3, 4])
@pytest.mark.parametrize("corrector", [False, True])
def test_constant_forcing_gives_the_exact_solution(max_order, corrector):
    """With g_k ≡ c > 0, F(y) = c along the path, so every scheme returns y(1) = c exactly."""
    net = build(FuseUNet, 2, n_stages=5, max_order=max_order, corrector=corrector)
    c = 0.7
    with torch.no_grad():
        for projection in net.decoder.projections:
            projection.weight.zero_()
            projection.bias.fill_(c)
    out = net(torch.randn(1, 2, 32, 32))
    head = net.decoder.head
    expected = c * head.weight.sum(dim=1).flatten() + head.bias
    assert torch.allclose(out, expected.view(1, -1, 1, 1).expand_as(out), atol=1e-6)


def test_skip_field_equals_the_relu_form_in_values_and_gradients():
    """skip_field (max(g, -y) with a boolean mask saved) against -y + ReLU(y + g) through autograd: values, both
    gradients (including exact ties y + g = 0, where ReLU'(0) = 0), float64 gradcheck, bfloat16 autocast."""
    from nnunet_fuse.ode.decoder import skip_field

    torch.manual_seed(0)
    y = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    g = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    g[0, :, :3] = -y[0, :, :3]  # ties
    y, g = y.requires_grad_(), g.requires_grad_()
    weights = torch.randn_like(y)
    out = skip_field(y, g)
    reference = torch.relu(y + g) - y
    assert torch.allclose(out, reference, rtol=0, atol=1e-15)
    grads = torch.autograd.grad((out * weights).sum(), [y, g])
    reference_grads = torch.autograd.grad((reference * weights).sum(), [y, g])
    for a, b in zip(grads, reference_grads):
        assert torch.equal(a, b)
    assert torch.equal(grads[1][0, :, :3], torch.zeros_like(grads[1][0, :, :3]))  # ReLU'(0) = 0 at the ties
    assert torch.autograd.gradcheck(skip_field, (y[:1, :2, :4, :4], g[:1, :2, :4, :4] + 0.01))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = skip_field(y.float().bfloat16(), g.float().bfloat16())
    assert low.dtype == torch.bfloat16 and torch.allclose(low.double(), reference, atol=0.05)


def test_skip_field_traces_under_torch_compile():
    """The custom autograd function goes through dynamo and AOTAutograd (backend aot_eager: no C++ compiler
    needed) with the same values and gradients as eager."""
    from nnunet_fuse.ode.decoder import skip_field

    y, g = torch.randn(2, 6, 8, 8, requires_grad=True), torch.randn(2, 6, 8, 8, requires_grad=True)
    compiled = torch.compile(lambda a, b: skip_field(a, b) * 2, backend="aot_eager", fullgraph=True)
    out = compiled(y, g)
    assert torch.allclose(out, skip_field(y, g) * 2)
    grads = torch.autograd.grad(out.sum(), [y, g])
    reference = torch.autograd.grad((skip_field(y, g) * 2).sum(), [y, g])
    assert all(torch.equal(a, b) for a, b in zip(grads, reference))


@pytest.mark.parametrize("dim,deep_supervision", [(2, False), (3, True)])
def test_compiled_decoder_equals_the_eager_fused_solve(dim, deep_supervision):
    """Under torch.compile the decoder traces autograd's composition (SkipFields + multistep_solve), in eager it runs
    the fused solve (fused_solve.py): same outputs and gradients (backend aot_eager: no C++ compiler needed)."""
    torch._dynamo.reset()
    net = build(FuseUNet, dim, n_stages=4, deep_supervision=deep_supervision).double()
    size = (32, 24) if dim == 2 else (16, 16, 8)
    skips = [s.detach().requires_grad_() for s in net.encoder(torch.randn(2, 2, *size, dtype=torch.float64))]
    compiled = torch.compile(net.decoder, backend="aot_eager", fullgraph=True)
    outputs = [compiled(skips), net.decoder(skips)]
    outputs = [o if isinstance(o, list) else [o] for o in outputs]
    weights = [torch.randn_like(o) for o in outputs[1]]
    grads = [torch.autograd.grad(sum((o * w).sum() for o, w in zip(out, weights)), [*skips, *net.decoder.parameters()])
             for out in outputs]
    for a, b in zip([*outputs[0], *grads[0]], [*outputs[1], *grads[1]]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_decoder_values_match_a_per_voxel_scalar_solve():
    """Decoder state at one voxel equals multistep_solve run on that voxel's scalar forcings."""
    from nnunet_fuse.ode.decoder import skip_field
    from nnunet_fuse.ode.multistep import multistep_solve

    net = build(FuseUNet, 2, n_stages=5).double()
    x = torch.randn(1, 2, 32, 32, dtype=torch.float64)
    skips = net.encoder(x)
    decoder = net.decoder
    forcings = [decoder._skip_forcing(skips[s], s, (32, 32)) for s in range(4, -1, -1)]
    voxel = (0, slice(None), 7, 19)
    fields = [lambda y, g=g[voxel]: skip_field(y, g) for g in forcings]
    y = multistep_solve(fields, torch.zeros(decoder.state_channels, dtype=torch.float64), 1 / 5)[-1]
    expected = decoder.head.weight[:, :, 0, 0] @ y + decoder.head.bias
    assert torch.allclose(net(x)[voxel], expected, atol=1e-12)


def test_each_skip_projection_runs_once_per_forward():
    net = build(FuseUNet, 3, n_stages=4)
    calls = []
    for i, projection in enumerate(net.decoder.projections):
        projection.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    net(torch.randn(1, 2, 16, 16, 16))
    assert sorted(calls) == [0, 1, 2, 3]


def test_follows_input_dtype_and_works_under_autocast():
    net = build(FuseUNet, 3, n_stages=3)
    x = torch.randn(1, 2, 16, 16, 16)
    reference = net(x)
    assert net.double()(x.double()).dtype == torch.float64
    net.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), reference, atol=0.1 * reference.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda_with_amp():
    net = build(FuseUNet, 3, n_stages=4, deep_supervision=True).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        out = net(torch.randn(2, 2, 32, 32, 32, device="cuda"))
    assert all(o.device.type == "cuda" for o in out)


def test_state_channels_default_follows_the_paper():
    assert default_state_channels(2) == 6
    assert default_state_channels(3) == 6
    assert default_state_channels(4) == 8
    assert build(FuseUNet, 2, num_classes=4).decoder.state_channels == 8
    assert build(FuseUNet, 2, num_classes=4, state_channels=12).decoder.state_channels == 12


def test_clear_errors_for_bad_configurations():
    with pytest.raises(ValueError, match="n_stages >= 2"):
        build(FuseUNet, 2, n_stages=1, strides=[[1, 1]])
    kwargs = arch_kwargs(3, n_stages=3)
    kwargs["kernel_sizes"] = [[3, 3]] * 3  # 2D kernels with Conv3d
    with pytest.raises(ValueError, match="3D"):
        FuseUNet(input_channels=1, num_classes=2, n_conv_per_stage=2, **kwargs)
    kwargs = arch_kwargs(2, n_stages=3)
    kwargs["strides"] = kwargs["strides"][:2]
    with pytest.raises(ValueError, match="strides has 2 entries but n_stages is 3"):
        FuseUNet(input_channels=1, num_classes=2, n_conv_per_stage=2, **kwargs)
    net = build(FuseUNet, 3, n_stages=3)
    channels = net.input_channels
    with pytest.raises(ValueError, match=rf"trained on {channels} channel\(s\) in 3D and expects input of shape "
                                         rf"\(batch, {channels}, x, y, z\), got \(1, {channels}, 16, 16\)"):
        net(torch.randn(1, channels, 16, 16))
    with pytest.raises(ValueError, match=r"got \(1, 5, 8, 16, 16\)\. Check the scans with `nnunet-fuse check-inputs`"):
        net(torch.randn(1, 5, 8, 16, 16))  # an extra channel file: named before torch's conv error
    with pytest.raises(ValueError, match="max_order"):
        build(FuseUNet, 2, max_order=5)


def _saved_elements(module, inputs):
    """float32 elements' worth (bytes / 4) of the distinct feature maps and boolean masks autograd saves during
    module(inputs), excluding inputs, weights and constants (the interpolation matrices, which need no gradient);
    a storage saved through several views counts once."""
    excluded = {t.untyped_storage().data_ptr() for t in [*inputs, *module.parameters()]}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in excluded and (t.requires_grad or t.dtype == torch.bool):
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(inputs)
    return sum(saved.values()) // 4


@pytest.mark.parametrize("deep_supervision", [False, True])
@pytest.mark.parametrize("corrector", [False, True])
def test_feature_map_size_counts_what_the_decoder_keeps(deep_supervision, corrector):
    """compute_conv_feature_map_size = measured saved-for-backward elements + the one forcing alive at a time."""
    net = build(FuseUNet, 3, n_stages=4, deep_supervision=deep_supervision, corrector=corrector,
                strides=[[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]])
    size = (32, 32, 16)
    skips = [s.detach().requires_grad_() for s in net.encoder(torch.randn(1, 2, *size))]
    measured = _saved_elements(net.decoder, skips)
    forcing = net.decoder.state_channels * int(np.prod(size))
    assert net.decoder.compute_conv_feature_map_size(size) == measured + forcing
    total = net.compute_conv_feature_map_size(size)
    assert total == net.encoder.compute_conv_feature_map_size(size) + net.decoder.compute_conv_feature_map_size(size)


@pytest.mark.parametrize("dim,n_stages,features", [(2, 7, (32, 64, 128, 256, 512, 512, 512)),
                                                   (3, 6, (32, 64, 128, 256, 320, 320))])
def test_far_fewer_parameters_than_nnunet_default(dim, n_stages, features):
    """nnU-Net default plans (2D 7 stages, 3D 6 stages): FuseUNet keeps the encoder and drops most decoder weights."""
    kwargs = arch_kwargs(dim, n_stages=n_stages, features=features)
    fuse = FuseUNet(input_channels=1, num_classes=4, n_conv_per_stage=2, **kwargs)
    default = PlainConvUNet(input_channels=1, num_classes=4, n_conv_per_stage=2,
                            n_conv_per_stage_decoder=2, **kwargs)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(fuse.encoder) == count(default.encoder)
    assert count(fuse.decoder) < 0.001 * count(default.decoder)
    assert count(fuse) < 0.5 * count(default)


def test_resenc_variant_matches_nnunet_resenc_encoder():
    kwargs = arch_kwargs(3, n_stages=4)
    fuse = FuseResEncUNet(input_channels=1, num_classes=3, n_blocks_per_stage=[1, 2, 2, 2], **kwargs)
    resenc = ResidualEncoderUNet(input_channels=1, num_classes=3, n_blocks_per_stage=[1, 2, 2, 2],
                                 n_conv_per_stage_decoder=1, **kwargs)
    assert [n for n, _ in fuse.encoder.named_parameters()] == [n for n, _ in resenc.encoder.named_parameters()]
    assert isinstance(fuse.decoder, FuseUNetDecoder)


def reference_decoder(decoder, skips):
    """Straightforward transcription of DESIGN.md §2 (no caching tricks, textbook AB/AM formulas)."""
    import torch.nn.functional as F

    n = decoder.n_stages
    h = 1.0 / n
    size = [s * st for s, st in zip(skips[0].shape[2:], decoder.strides[0])]
    mode = {2: "bilinear", 3: "trilinear"}[decoder.dim]
    g = []
    for s in range(n - 1, -1, -1):
        p = decoder.projections[s](skips[s])
        g.append(p if list(p.shape[2:]) == size else F.interpolate(p, size=size, mode=mode, align_corners=False))
    field = lambda k, y: -y + F.relu(y + g[k])  # noqa: E731
    ab = {1: [1], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}
    am = {1: [1], 2: [1 / 2, 1 / 2], 3: [5 / 12, 8 / 12, -1 / 12], 4: [9 / 24, 19 / 24, -5 / 24, 1 / 24]}
    y, fs, states = torch.zeros_like(g[0]), [], []
    for k in range(n):
        fs.insert(0, field(k, y))
        q = min(k + 1, decoder.max_order)
        pred = y + h * sum(c * f for c, f in zip(ab[q], fs[:q]))
        if decoder.corrector and k + 1 < n:
            c = min(q + 1, decoder.max_order)
            pred = y + h * sum(a * f for a, f in zip(am[c], [field(k + 1, pred), *fs[: c - 1]]))
        y = pred
        states.append(y)
    return decoder.head(states[-1])


@pytest.mark.parametrize("dim,n_stages", [(2, 7), (3, 5)])
@pytest.mark.parametrize("max_order,corrector", [(4, True), (2, True), (3, False)])
def test_decoder_matches_reference_values_and_gradients(dim, n_stages, max_order, corrector):
    """Any optimisation of the decoder must keep outputs and gradients of the plain formulation (float64)."""
    size = (128, 128) if dim == 2 else (32, 32, 16)
    net = build(FuseUNet, dim, n_stages=n_stages, max_order=max_order, corrector=corrector,
                strides=None if dim == 2 else [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]][:n_stages])
    net = net.double()
    skips = [s.detach().requires_grad_() for s in net.encoder(torch.randn(2, 2, *size, dtype=torch.float64))]
    weights = torch.randn(2, 3, *size, dtype=torch.float64)
    out = net.decoder(skips)
    grads = torch.autograd.grad((out * weights).sum(), [*skips, *net.decoder.parameters()])
    net.decoder.cpu_matmul_backward = False  # the reference differentiates nn.Conv itself
    ref = reference_decoder(net.decoder, skips)
    ref_grads = torch.autograd.grad((ref * weights).sum(), [*skips, *net.decoder.parameters()])
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


def test_forward_memory_does_not_grow_with_the_number_of_skips():
    """Forcings are upsampled one at a time and released: going from 6 to 7 stages (history already at order 4 at
    the peak, whose forcing is upsampled in both) must not add a full-resolution tensor to the forward peak (holding
    every upsampled forcing would add one)."""
    from nnunet_fuse.profiling import peak_step_memory_bytes

    size = (256, 256)
    peaks = {}
    for n_stages in (6, 7):
        net = build(FuseUNet, 2, n_stages=n_stages)
        with torch.no_grad():
            skips = net.encoder(torch.randn(1, 2, *size))

            def forward():
                net.decoder(skips)

            peaks[n_stages] = peak_step_memory_bytes(forward, torch.device("cpu"))
    full_tensor = net.decoder.state_channels * size[0] * size[1] * 4
    assert peaks[7] - peaks[6] < full_tensor / 2, (peaks, full_tensor)


@pytest.mark.parametrize("dim", [2, 3])
def test_fused_solve_training_peak_is_below_the_composition(dim):
    """The fused solve (eager default) saves only boolean masks and reuses its full-resolution buffers, so the
    decoder's forward + backward peaks lower than with autograd's composition (fused_solve=False) by about one
    state-sized tensor, with equal gradients (CPU peak from the profiler's allocation events: exact, not timed)."""
    from nnunet_fuse.profiling import peak_step_memory_bytes

    net = build(FuseUNet, dim, n_stages=4, strides=None if dim == 2 else [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
    size = (128, 128) if dim == 2 else (32, 32, 32)
    skips = [s.detach().requires_grad_() for s in net.encoder(torch.randn(2, 2, *size))]
    weights = torch.randn(2, 3, *size)
    peaks, grads = {}, {}
    for fused in (True, False):
        net.decoder.fused_solve = fused

        def step():
            grads[fused] = torch.autograd.grad((net.decoder(skips) * weights).sum(), skips)

        peaks[fused] = peak_step_memory_bytes(step, torch.device("cpu"))
    assert peaks[True] < 0.95 * peaks[False], peaks  # measured 0.92 (2D), 0.91 (3D): 10 vs 11 full tensors
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
