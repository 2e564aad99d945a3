"""Fuse4Seg fusion network: shapes, range, any number of modalities, exact inverse of the coupling, gradients."""
import pytest
import torch
from torch import nn

from nnunet_fuse.imagefusion.losses import decomposition_loss, intensity_loss
from nnunet_fuse.imagefusion.network import (ChannelLayerNorm, ConvModulation, FusionNetwork, InvertibleCoupling,
                                             RobustRescale)

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
SHAPES = {2: (24, 20), 3: (8, 12, 10)}


DOWNSAMPLE = {2: (2, 2), 3: (1, 2, 2)}


def as_if_trained(net: FusionNetwork) -> FusionNetwork:
    """A non-zero correction of the average (an untrained network outputs the average, which is trivially local)."""
    with torch.no_grad():
        net.decoder[-1].weight.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("modalities", [2, 4])
@pytest.mark.parametrize("downsampled,checkpointing,odd", [(False, False, False), (True, True, True)])
def test_fused_image_shape_range_and_gradients(dims, modalities, downsampled, checkpointing, odd):
    """Full resolution, or the fusion blocks at the plan's first stride with the full-resolution stem merged back
    (odd sizes too: the upsampled map is cropped to the input's size); with activation checkpointing the gradients
    reach every parameter all the same (once the correction of the average is no longer zero, as after a step)."""
    torch.manual_seed(0)
    shape = tuple(s + (1 if odd else 0) for s in SHAPES[dims])
    net = FusionNetwork(CONV[dims], channels=8, downsample=DOWNSAMPLE[dims] if downsampled else None,
                        activation_checkpointing=checkpointing)
    x = torch.randn(2, modalities, *shape) * 3 + 1  # z-scored-like intensities
    fused = as_if_trained(net)(x)
    assert fused.shape == (2, 1, *shape)
    assert fused.min() >= 0 and fused.max() <= 1
    features = net.features(x)
    assert len(features["base"]) == len(features["detail"]) == len(features["stem"]) == modalities
    working = [-(-s // d) for s, d in zip(shape, DOWNSAMPLE[dims])] if downsampled else list(shape)
    assert features["base"][0].shape == (2, 8, *working) and features["stem"][0].shape == (2, 8, *shape)
    loss = intensity_loss(fused, net.rescale(x)) + decomposition_loss(features["base"], features["detail"])
    loss.backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    reconstructed = net.reconstruct(x)
    assert reconstructed.shape == x.shape and reconstructed.min() >= 0 and reconstructed.max() <= 1
    with pytest.raises(ValueError, match="needs 2 entries"):
        FusionNetwork(nn.Conv2d, downsample=(1, 2, 2))


@pytest.mark.parametrize("dims", [2, 3])
def test_untrained_network_fuses_by_the_average(dims):
    """Fused and reconstructed images correct the average of the rescaled modalities, starting from zero at
    initialisation, nnU-Net's included (0.3's network started from a random image: on the two-modality synthetic
    data its segmentation sometimes never learned, Dice 0 in CI)."""
    from nnunet_fuse.architectures import Fuse4SegNet

    torch.manual_seed(0)
    net = FusionNetwork(CONV[dims], channels=8, downsample=DOWNSAMPLE[dims])
    net.apply(Fuse4SegNet.initialize)  # as nnU-Net initialises (get_network_from_plans)
    x = torch.randn(2, 3, *SHAPES[dims]) * 3 + 1
    with torch.no_grad():
        average = net.rescale(x).mean(1, keepdim=True)
        torch.testing.assert_close(net(x), average.clamp(1e-3, 1 - 1e-3), atol=1e-6, rtol=0)
        torch.testing.assert_close(net.reconstruct(x), average.clamp(1e-3, 1 - 1e-3).expand_as(x), atol=1e-6, rtol=0)
        net.decoder[-1].bias.fill_(1.0)  # a correction moves the image away from the average
        assert (net(x) - average).abs().mean() > 0.05


@pytest.mark.parametrize("dims", [2, 3])
def test_coupling_inverse_is_exact(dims):
    torch.manual_seed(0)
    block = InvertibleCoupling(CONV[dims], 8).double()
    x = torch.randn(2, 8, *SHAPES[dims], dtype=torch.float64)
    torch.testing.assert_close(block.inverse(block(x)), x, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="even channel count"):
        InvertibleCoupling(CONV[dims], 7)



@pytest.mark.parametrize("dims", [2, 3])
def test_activations_stay_in_float16_range_at_nnunet_initialisation(dims):
    """Regression (H100, AMP, real BraTS): with CDDFuse's unbounded exp(ρ) the detail branch reached 2e7 at nnU-Net's
    He initialisation, past float16's 65504, and every loss was NaN. The coupling's scale is now bounded by e."""
    from nnunet_fuse.architectures import Fuse4SegNet

    torch.manual_seed(0)
    net = FusionNetwork(CONV[dims], channels=16, detail_blocks=2)
    net.apply(Fuse4SegNet.initialize)  # as nnU-Net initialises (get_network_from_plans)
    largest = {}
    for name, module in net.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: largest.__setitem__(name, o.abs().max().item()))
    with torch.no_grad():
        net(torch.randn(2, 2, *[32] * dims))
    assert max(largest.values()) < 1e3, largest
    block = net.fuse_detail
    x2 = torch.randn(1, 8, *[4] * dims)
    with torch.no_grad():
        for conv in block.rho.modules():
            if isinstance(conv, CONV[dims]):
                conv.weight.mul_(1e3)  # an extreme ρ
        assert block.log_scale(x2).abs().max() <= 1.0

@pytest.mark.parametrize("dims", [2, 3])
def test_fused_value_does_not_depend_on_the_tile(dims):
    """Tile independence (0.3): a tile's fused image equals the whole image's wherever the tile holds the voxel's
    receptive field (``receptive_radius``, what export-fused leaves out of each tile), for a tile on the grid of the
    network's stride. With the instance norms and transposed attention of 0.2 every voxel of the tile changed (by up
    to 0.26 on a real BraTS slice)."""
    from nnunet_fuse.architectures import Fuse4SegNet

    torch.manual_seed(0)
    shape, tile = ((96, 112), (64, 64)) if dims == 2 else ((48, 96, 96), (32, 64, 64))
    net = FusionNetwork(CONV[dims], channels=8, downsample=DOWNSAMPLE[dims], intensity_ranges=[[-2.0, 3.0]] * 2)
    as_if_trained(net.apply(Fuse4SegNet.initialize)).eval()
    margin = net.receptive_radius()
    assert margin == ((22, 22) if dims == 2 else (13, 22, 22))
    x = torch.randn(1, 2, *shape)
    starts = [(s - t) // 2 // d * d for s, t, d in zip(shape, tile, DOWNSAMPLE[dims])]
    window = tuple(slice(a, a + t) for a, t in zip(starts, tile))
    interior = tuple(slice(m, t - m) for m, t in zip(margin, tile))
    with torch.no_grad():
        whole, tiled = net(x)[0, 0][window], net(x[(slice(None), slice(None), *window)])[0, 0]
    torch.testing.assert_close(tiled[interior], whole[interior], atol=1e-5, rtol=0)
    assert (tiled - whole).abs().max() > 1e-3  # the tile's border sees zero padding: only its interior agrees


def test_export_blend_does_not_depend_on_the_tile_step():
    """export-fused's blend (tiles on the stride grid, each counted where it holds the receptive field) equals the
    whole image's fusion for any step whose tiles overlap by two receptive radii; the plain Gaussian blend does not
    (tile borders see zero padding)."""
    from nnunet_fuse.architectures import Fuse4SegNet
    from nnunet_fuse.fused_export import sliding_window_fuse

    torch.manual_seed(0)
    net = FusionNetwork(nn.Conv2d, channels=8, downsample=(2, 2), intensity_ranges=[[-2.0, 3.0]] * 2)
    as_if_trained(net.apply(Fuse4SegNet.initialize)).eval()
    x = torch.randn(2, 150, 170)
    with torch.no_grad():
        whole = net(x[None])[0, 0]
    for step in (0.5, 0.3):
        blended = sliding_window_fuse(net, x, (96, 96), step, net.downsample, net.receptive_radius())
        torch.testing.assert_close(blended, whole, atol=1e-5, rtol=0)
    plain = sliding_window_fuse(net, x, (96, 96), 0.5, net.downsample)
    assert (plain - whole).abs().max() > 1e-3


def test_layer_norm_and_modulation_are_per_voxel_and_local():
    """The layer norm normalises each voxel over its channels (mean 0, sd 1 before the affine); the modulation's
    output at a voxel changes only with the input within its kernel's reach (7 // 2 = 3 voxels here)."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 9, 11) * 5 + 3
    y = ChannelLayerNorm(8)(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 9, 11), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 9, 11), atol=1e-3, rtol=0)
    modulation = ConvModulation(nn.Conv2d, 8)
    changed = x.clone()
    changed[:, :, 4, 5] += 10
    with torch.no_grad():
        moved = (modulation(changed) - modulation(x)).abs().amax(dim=(0, 1)) > 0
    assert moved[1:8, 2:9].all() and moved.sum() == 7 * 7


def test_robust_rescale_ignores_outliers():
    x = torch.linspace(0, 1, 1000).reshape(1, 1, 10, 100).repeat(1, 2, 1, 1)
    x[0, 1] = x[0, 1] * 50 - 7  # another modality's range
    x[0, 0, 0, 0] = 1e4  # one outlier voxel
    y = RobustRescale(low=1, high=99)(x)
    assert y.min() == 0 and y.max() == 1
    # the bulk of both channels maps alike, whatever the original range
    torch.testing.assert_close(y[0, 0, 5], y[0, 1, 5], atol=2e-2, rtol=0)
    assert (y[0, 0, 5, 1:] - y[0, 0, 5, :-1] >= 0).all()  # monotone


def test_wrong_dimensionality_is_a_clear_error():
    with pytest.raises(ValueError, match=r"3D\) expects \(B, N, \*spatial\) with 3 spatial axes"):
        FusionNetwork(nn.Conv3d, channels=8)(torch.randn(1, 2, 16, 16))


def plain_unet_kwargs(dims):
    return dict(n_stages=3, features_per_stage=[8, 16, 16], conv_op=CONV[dims], kernel_sizes=[[3] * dims] * 3,
                strides=[[1] * dims, [2] * dims, [2] * dims], n_conv_per_stage=[1, 1, 1],
                n_conv_per_stage_decoder=[1, 1], conv_bias=True, norm_op=nn.InstanceNorm3d if dims == 3 else
                nn.InstanceNorm2d, norm_op_kwargs={"affine": True}, nonlin=nn.LeakyReLU,
                nonlin_kwargs={"inplace": True})


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("feed_originals", [False, True])
def test_fuse4seg_net_is_one_module_fusion_then_segmentation(dims, feed_originals):
    from nnunet_fuse.architectures import Fuse4SegNet

    torch.manual_seed(0)
    net = Fuse4SegNet(input_channels=2, num_classes=3,
                      segmentation_network="dynamic_network_architectures.architectures.unet.PlainConvUNet",
                      deep_supervision=True, fusion_channels=8, feed_originals=feed_originals,
                      **plain_unet_kwargs(dims))
    net.apply(Fuse4SegNet.initialize)
    assert net.segmentation.encoder.stages[0][0].convs[0].conv.in_channels == (3 if feed_originals else 1)
    x = torch.randn(2, 2, *[16] * dims)
    outputs = net(x)
    assert [o.shape for o in outputs] == [(2, 3, *[16] * dims), (2, 3, *[8] * dims)]  # nnU-Net's DS scales
    sum(o.mean() for o in outputs).backward()
    # end to end, the segmentation's loss trains the fusion stage: untrained, its correction of the average (the only
    # fusion layer not behind the zero-initialised correction); once that is non-zero, every fusion parameter
    assert net.fusion.decoder[-1].weight.grad.abs().sum() > 0
    net.zero_grad()
    as_if_trained(net.fusion)
    sum(o.mean() for o in net(x)).backward()
    unreached = [n for n, p in net.fusion.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert unreached == [], unreached
    net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    assert net(x).shape == (2, 3, *[16] * dims)
    assert net.compute_conv_feature_map_size([16] * dims) > net.segmentation.compute_conv_feature_map_size([16] * dims)


def test_fuse4seg_net_clear_errors():
    from nnunet_fuse.architectures import Fuse4SegNet

    name = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    with pytest.raises(ValueError, match="N >= 2 modalities, the dataset has 1 channel"):
        Fuse4SegNet(1, 3, name, **plain_unet_kwargs(2))
    with pytest.raises(ValueError, match="cannot be imported"):
        Fuse4SegNet(2, 3, "no.such.Network", **plain_unet_kwargs(2))
    net = Fuse4SegNet(4, 3, name, **plain_unet_kwargs(2))
    with pytest.raises(ValueError, match=r"trained on 4 modalities in 2D and expects \(batch, 4, \*spatial\)"):
        net(torch.randn(1, 2, 16, 16))


def test_dataset_ranges_make_the_rescale_independent_of_the_tiling():
    """With the dataset's per-channel ranges a voxel maps alike in every patch: the rescaled image blended from
    sliding-window tiles equals the whole image rescaled at once, for any tile step (per-patch percentiles do not)."""
    from nnunet_fuse.fused_export import sliding_window_fuse

    torch.manual_seed(0)
    case = torch.randn(2, 40, 36) * torch.tensor([1.0, 3.0])[:, None, None] + torch.linspace(-1, 2, 36)
    ranges = [[-2.0, 2.5], [-6.0, 7.0]]
    rescale = RobustRescale(ranges)
    whole = rescale(case[None])[0]
    for channel in range(2):
        for step in (0.5, 0.75):
            tiled = sliding_window_fuse(lambda x: rescale(x)[:, channel:channel + 1], case, (16, 16), step)
            torch.testing.assert_close(tiled, whole[channel], atol=1e-5, rtol=0)
    per_patch = RobustRescale()
    tiled = sliding_window_fuse(lambda x: per_patch(x)[:, :1], case, (16, 16), 0.5)
    assert (tiled - per_patch(case[None])[0, 0]).abs().max() > 0.05
    torch.testing.assert_close(whole[0, 3, 5], ((case[0, 3, 5] + 2) / 4.5).clamp(0, 1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="rescales 2 channels with the dataset's ranges, got 3"):
        rescale(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one \\(low, high\\) with low < high"):
        RobustRescale([[1.0, 0.0]])
