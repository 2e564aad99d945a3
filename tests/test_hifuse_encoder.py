"""HiFuseEncoder under nnU-Net's UNetDecoder and under the FuseUNet decoder, 2D and 3D (anisotropic strides)."""
import pytest
import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

from nnunet_fuse.hifuse.encoder import HiFuseEncoder
from nnunet_fuse.ode.decoder import FuseUNetDecoder

SETTINGS = {
    2: dict(conv_op=nn.Conv2d, norm_op=nn.InstanceNorm2d, strides=[[1, 1], [2, 2], [2, 2], [2, 2]],
            kernel_sizes=[[3, 3]] * 4, input_size=(32, 24), window_size=4),
    3: dict(conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
            kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], input_size=(8, 16, 16), window_size=(2, 4, 4)),
}


def make_encoder(dims: int, **overrides) -> HiFuseEncoder:
    s = SETTINGS[dims]
    kwargs = dict(input_channels=2, n_stages=4, features_per_stage=[8, 16, 32, 32], conv_op=s["conv_op"],
                  kernel_sizes=s["kernel_sizes"], strides=s["strides"], n_conv_per_stage=1, conv_bias=True,
                  norm_op=s["norm_op"], norm_op_kwargs={"affine": True}, nonlin=nn.LeakyReLU,
                  nonlin_kwargs={"inplace": True}, window_size=s["window_size"], head_channels=8)
    kwargs.update(overrides)
    return HiFuseEncoder(**kwargs)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("decoder", ["unet", "fuseunet"])
def test_encoder_plugs_under_nnunet_and_fuseunet_decoders(dims, decoder):
    torch.manual_seed(0)
    encoder = make_encoder(dims)
    assert encoder.global_stages == [2, 3]
    size = SETTINGS[dims]["input_size"]
    x = torch.randn(2, 2, *size)
    skips = encoder(x)
    expected, current = [], list(size)
    for stride, channels in zip(encoder.strides, encoder.output_channels):
        current = [c // s for c, s in zip(current, stride)]
        expected.append((2, channels, *current))
    assert [tuple(s.shape) for s in skips] == expected
    head = (UNetDecoder(encoder, 3, 1, deep_supervision=False) if decoder == "unet"
            else FuseUNetDecoder(encoder, 3, deep_supervision=False))
    out = head(skips)
    assert out.shape == (2, 3, *size)
    out.square().mean().backward()
    assert [n for n, p in encoder.named_parameters() if p.grad is None] == []  # every branch and HFF block is used
    assert encoder.compute_conv_feature_map_size(size) > 0


def test_global_stages_choice_and_errors():
    encoder = make_encoder(2, global_stages=[0, 3])
    skips = encoder(torch.randn(1, 2, 32, 24))
    assert len(skips) == 4 and sorted(int(k) for k in encoder.hff) == [0, 3]
    assert make_encoder(2, return_skips=False)(torch.randn(1, 2, 32, 24)).shape == (1, 32, 4, 3)
    with pytest.raises(ValueError, match="at least 2 stages"):
        make_encoder(2, n_stages=1, features_per_stage=[8], kernel_sizes=[[3, 3]], strides=[[1, 1]])
    with pytest.raises(ValueError, match="global_stages must be stage indices"):
        make_encoder(2, global_stages=[4])
    with pytest.raises(ValueError, match="strides must have 2 entries per stage"):
        make_encoder(2, strides=[[1, 1, 1]] * 4)


@pytest.mark.parametrize("dims", [2, 3])
def test_hff_as_the_skip_merge_of_nnunets_decoder(dims):
    """skip_merge="hff": each decoder stage merges skip and upsampled features with an HFF block instead of a
    concatenation; deep-supervision outputs at nnU-Net's scales, every parameter trained."""
    from nnunet_fuse.architectures import HiFuseUNet

    s = SETTINGS[dims]
    torch.manual_seed(0)
    kwargs = dict(input_channels=2, n_stages=4, features_per_stage=[8, 16, 32, 32], conv_op=s["conv_op"],
                  kernel_sizes=s["kernel_sizes"], strides=s["strides"], n_conv_per_stage=1, num_classes=3,
                  n_conv_per_stage_decoder=1)
    net = HiFuseUNet(**kwargs, conv_bias=True, norm_op=s["norm_op"], norm_op_kwargs={"affine": True},
                     nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True,
                     window_size=s["window_size"], head_channels=8, skip_merge="hff")
    net.apply(HiFuseUNet.initialize)
    outputs = net(torch.randn(2, 2, *s["input_size"]))
    sizes = [list(s["input_size"])]
    for stride in s["strides"][1:-1]:
        sizes.append([c // st for c, st in zip(sizes[-1], stride)])
    assert [list(o.shape[2:]) for o in outputs] == sizes and all(o.shape[1] == 3 for o in outputs)
    sum(o.square().mean() for o in outputs).backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []
    assert len(net.decoder.merges) == 3
    with pytest.raises(ValueError, match="skip_merge must be"):
        HiFuseUNet(**kwargs, skip_merge="sum")


@pytest.mark.parametrize("dims,size", [(2, (33, 26)), (3, (9, 17, 15))])
def test_sides_not_divisible_by_the_strides(dims, size):
    """Each stage's strided conv rounds a side up (ceil(n / stride)); the HFF block pools the previous stage to the
    same size (it floor-pooled before and failed, e.g. the classifier on 100 × 100 images)."""
    import math

    torch.manual_seed(0)
    encoder = make_encoder(dims, global_stages=[1, 2, 3])
    skips = encoder(torch.randn(1, 2, *size))
    expected = list(size)
    for skip, stride in zip(skips, SETTINGS[dims]["strides"]):
        expected = [math.ceil(n / s) for n, s in zip(expected, stride)]
        assert list(skip.shape[2:]) == expected
        assert torch.isfinite(skip).all()


@pytest.mark.parametrize("side", [100, 37])
def test_classifier_takes_any_image_size(side):
    from nnunet_fuse.hifuse.classifier import HiFuseClassifier

    torch.manual_seed(0)
    model = HiFuseClassifier(3, 5, features_per_stage=(8, 16, 32, 32), head_channels=8)
    logits = model(torch.randn(2, 3, side, side + 3))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
