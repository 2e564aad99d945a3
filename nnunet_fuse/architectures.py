"""Network classes that nnU-Net plans can name (``architecture.network_class_name``).

nnU-Net builds them as ``cls(input_channels=…, num_classes=…, **arch_kwargs, deep_supervision=…)``; each is a
dynamic_network_architectures encoder composed with a fusion decoder, nothing more.
"""
from __future__ import annotations

import pydoc
from typing import List, Sequence, Tuple, Type, Union

import torch
from dynamic_network_architectures.architectures.abstract_arch import AbstractDynamicNetworkArchitectures
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import nn
from torch.nn.modules.conv import _ConvNd

from nnunet_fuse.hifuse.decoder import HFFSkipDecoder
from nnunet_fuse.hifuse.encoder import HiFuseEncoder
from nnunet_fuse.imagefusion.network import FusionNetwork
from nnunet_fuse.ode.decoder import FuseUNetDecoder

IntOrSeq = Union[int, List[int], Tuple[int, ...]]


def check_stage_arguments(n_stages: int, conv_op: Type[_ConvNd], **per_stage: Sequence) -> None:
    """Fail early, with the fix, when plans arguments do not fit the network (stages, dimensionality)."""
    if n_stages < 2:
        raise ValueError(f"this network needs n_stages >= 2 (at least one skip and a bottleneck), got {n_stages}. "
                         f"Plan the dataset with a larger patch size or pick another configuration.")
    dim = convert_conv_op_to_dim(conv_op)
    for name, values in per_stage.items():
        if isinstance(values, int):
            continue
        if len(values) != n_stages:
            raise ValueError(f"{name} has {len(values)} entries but n_stages is {n_stages}; the plans do not fit "
                             f"this network")
        for v in values:
            if not isinstance(v, int) and len(v) != dim:
                raise ValueError(f"{name} entry {list(v)} has {len(v)} axes but conv_op {conv_op.__name__} is {dim}D; "
                                 f"use plans of matching dimensionality (2d configuration ↔ Conv2d, 3d ↔ Conv3d)")


CHECK_SCANS = ("Check the scans with `nnunet-fuse check-inputs` (nnUNetv2_predict's arguments), or predict with "
               "`nnunet-fuse predict`, which checks them first and names the file at fault")
PER_STAGE_ARGUMENTS = ("kernel_sizes", "strides", "features_per_stage", "n_conv_per_stage", "n_blocks_per_stage")


def build_encoder(encoder_class: Type[nn.Module], input_channels: int, encoder_kwargs: dict) -> nn.Module:
    """``encoder_class(input_channels=…, **encoder_kwargs, return_skips=True)``, after check_stage_arguments.

    encoder_kwargs: the plans' arch_kwargs that the encoder takes (n_stages, features_per_stage, conv_op, kernel_sizes,
    strides, n_conv_per_stage or n_blocks_per_stage, conv_bias, norm/dropout/nonlin ops and kwargs, ...).
    """
    for required in ("n_stages", "conv_op"):
        if required not in encoder_kwargs:
            raise ValueError(f"the plans' arch_kwargs lack '{required}', which {encoder_class.__name__} needs")
    check_stage_arguments(encoder_kwargs["n_stages"], encoder_kwargs["conv_op"],
                          **{k: v for k, v in encoder_kwargs.items() if k in PER_STAGE_ARGUMENTS})
    return encoder_class(input_channels=input_channels, **encoder_kwargs, return_skips=True)


class _EncoderDecoder(AbstractDynamicNetworkArchitectures):
    """Encoder + decoder, the one construction path of the networks below: each builds its encoder with
    build_encoder and hands it with its decoder to this __init__.
    forward(x): x (B, C_in, *spatial) → logits (B, K, *spatial) or a DS list."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.input_channels = next(m for m in encoder.modules() if isinstance(m, nn.modules.conv._ConvNd)).in_channels

    def forward(self, x: torch.Tensor):
        dim = convert_conv_op_to_dim(self.encoder.conv_op)
        if x.ndim != dim + 2 or x.shape[1] != self.input_channels:
            raise ValueError(f"{type(self).__name__} was trained on {self.input_channels} channel(s) in {dim}D and "
                             f"expects input of shape (batch, {self.input_channels}, "
                             f"{'x, y, z' if dim == 3 else 'x, y'}), got {tuple(x.shape)}. {CHECK_SCANS}")
        return self.decoder(self.encoder(x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]):
        """Feature-map elements of encoder + decoder for one sample of spatial size input_size (nnU-Net's VRAM
        proxy)."""
        dim = convert_conv_op_to_dim(self.encoder.conv_op)
        if len(input_size) != dim:
            raise ValueError(f"input_size must be the {dim} spatial axes only, got {list(input_size)}")
        return (self.encoder.compute_conv_feature_map_size(input_size)
                + self.decoder.compute_conv_feature_map_size(input_size))

    @staticmethod
    def initialize(module: nn.Module) -> None:
        InitWeights_He(1e-2)(module)


class FuseUNet(_EncoderDecoder):
    """nnU-Net's PlainConvEncoder + the FuseUNet multistep ODE decoder. Arguments: PlainConvUNet's (the encoder's go
    through ``encoder_kwargs``) minus the decoder convs, plus ``state_channels``, ``max_order``, ``corrector``."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 state_channels: Union[int, None] = None, max_order: int = 4, corrector: bool = True,
                 **encoder_kwargs):
        encoder = build_encoder(PlainConvEncoder, input_channels, encoder_kwargs)
        super().__init__(encoder, FuseUNetDecoder(encoder, num_classes, deep_supervision, state_channels, max_order,
                                                  corrector))
        self.key_to_encoder = "encoder.stages"
        self.key_to_stem = "encoder.stages.0"
        self.keys_to_in_proj = ("encoder.stages.0.0.convs.0.all_modules.0", "encoder.stages.0.0.convs.0.conv")


class FuseResEncUNet(_EncoderDecoder):
    """nnU-Net's ResidualEncoder (ResEnc M/L/XL plans) + the FuseUNet multistep ODE decoder. Arguments:
    ResidualEncoderUNet's minus the decoder convs, plus ``state_channels``, ``max_order``, ``corrector``."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 state_channels: Union[int, None] = None, max_order: int = 4, corrector: bool = True,
                 **encoder_kwargs):
        encoder = build_encoder(ResidualEncoder, input_channels, {"disable_default_stem": False, **encoder_kwargs})
        super().__init__(encoder, FuseUNetDecoder(encoder, num_classes, deep_supervision, state_channels, max_order,
                                                  corrector))
        self.key_to_encoder = "encoder.stages"
        self.key_to_stem = "encoder.stem"
        self.keys_to_in_proj = ("encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0")

    @staticmethod
    def initialize(module: nn.Module) -> None:
        InitWeights_He(1e-2)(module)
        init_last_bn_before_add_to_0(module)


class HiFuseUNet(_EncoderDecoder):
    """HiFuseEncoder (local CNN + global window attention, fused stage by stage by HFF blocks) + nnU-Net's UNetDecoder.
    Arguments as PlainConvUNet's; the encoder also takes ``global_stages`` (default: the deeper half),
    ``window_size`` (default 7 in 2D, 4 in 3D), ``head_channels`` (channels per attention head) and
    ``activation_checkpointing`` (its blocks are recomputed in the backward instead of kept); ``skip_merge``:
    "concat" (nnU-Net's) or "hff" (HFF blocks merge each skip with the upsampled features)."""

    def __init__(self, input_channels: int, num_classes: int, n_conv_per_stage_decoder: IntOrSeq,
                 deep_supervision: bool = False, nonlin_first: bool = False, skip_merge: str = "concat",
                 **encoder_kwargs):
        if skip_merge not in ("concat", "hff"):
            raise ValueError(f"skip_merge must be 'concat' (nnU-Net's) or 'hff' (HFF blocks), got '{skip_merge}'")
        encoder = build_encoder(HiFuseEncoder, input_channels, encoder_kwargs)
        decoder = HFFSkipDecoder if skip_merge == "hff" else UNetDecoder
        super().__init__(encoder, decoder(encoder, num_classes, n_conv_per_stage_decoder, deep_supervision,
                                          nonlin_first=nonlin_first))


class HiFuseFuseUNet(_EncoderDecoder):
    """HiFuseEncoder + the FuseUNet multistep ODE decoder (HiFuseUNet's arguments minus the decoder convs and
    ``skip_merge``, plus ``state_channels``, ``max_order``, ``corrector``)."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 nonlin_first: bool = False, state_channels: Union[int, None] = None, max_order: int = 4,
                 corrector: bool = True, **encoder_kwargs):
        encoder = build_encoder(HiFuseEncoder, input_channels, encoder_kwargs)
        super().__init__(encoder, FuseUNetDecoder(encoder, num_classes, deep_supervision, state_channels, max_order,
                                                  corrector))


class Fuse4SegNet(nn.Module):
    """Fuse4Seg as one module (what nnUNetv2_predict runs): fusion network → segmentation network.

    input_channels: N ≥ 2 modalities. The segmentation network (``segmentation_network``: a dotted class name such as
    nnU-Net's ``dynamic_network_architectures.architectures.unet.PlainConvUNet`` or our FuseUNet, built with the
    remaining keyword arguments as nnU-Net builds it) sees the fused image (1 channel) or, with ``feed_originals``
    (the ablation), the fused image followed by the N input channels. ``fusion_downsample``: the fusion blocks run at
    the resolution of the segmentation network's second stage (its first stride); ``fusion_activation_checkpointing``:
    the fusion network recomputes its blocks in the backward instead of keeping them; ``fusion_intensity_ranges``:
    per channel the (low, high) that the fusion network maps to [0, 1] (``nnunet-fuse plan`` writes them).
    forward(x): (B, N, *spatial) → logits (B, K, *spatial), or the segmentation network's deep-supervision list.
    """

    def __init__(self, input_channels: int, num_classes: int, segmentation_network: str, deep_supervision: bool = False,
                 fusion_channels: int = 16, fusion_base_blocks: int = 1, fusion_detail_blocks: int = 2,
                 feed_originals: bool = False, fusion_downsample: bool = False,
                 fusion_activation_checkpointing: bool = False, fusion_intensity_ranges: Sequence = None,
                 **segmentation_kwargs):
        super().__init__()
        if input_channels < 2:
            raise ValueError(f"Fuse4Seg fuses N >= 2 modalities, the dataset has {input_channels} channel; use "
                             f"nnU-Net's own plans (or FuseUNet) for single-channel data")
        segmentation_class = pydoc.locate(segmentation_network)
        if segmentation_class is None:
            raise ValueError(f"segmentation_network '{segmentation_network}' cannot be imported")
        self.input_channels = input_channels
        self.feed_originals = feed_originals
        conv_op = segmentation_kwargs["conv_op"]
        downsample = None
        if fusion_downsample:  # the segmentation network's first downsampling stride
            stride = segmentation_kwargs["strides"][1]
            downsample = [stride] * convert_conv_op_to_dim(conv_op) if isinstance(stride, int) else list(stride)
        self.fusion = FusionNetwork(conv_op, fusion_channels, fusion_base_blocks, fusion_detail_blocks,
                                    downsample=downsample, activation_checkpointing=fusion_activation_checkpointing,
                                    intensity_ranges=fusion_intensity_ranges)
        self.segmentation = segmentation_class(input_channels=1 + (input_channels if feed_originals else 0),
                                               num_classes=num_classes, deep_supervision=deep_supervision,
                                               **segmentation_kwargs)

    @property
    def encoder(self) -> nn.Module:
        return self.segmentation.encoder

    @property
    def decoder(self) -> nn.Module:  # nnU-Net switches deep supervision through network.decoder
        return self.segmentation.decoder

    def segmentation_input(self, x: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return torch.cat([fused, x], dim=1) if self.feed_originals else fused

    def forward(self, x: torch.Tensor):
        if x.ndim != self.fusion.dim + 2 or x.shape[1] != self.input_channels:
            raise ValueError(f"Fuse4Seg was trained on {self.input_channels} modalities in {self.fusion.dim}D and "
                             f"expects (batch, {self.input_channels}, *spatial), got {tuple(x.shape)}: give every "
                             f"case all {self.input_channels} channels, in the dataset.json order. {CHECK_SCANS}")
        return self.segmentation(self.segmentation_input(x, self.fusion(x)))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]):
        """nnU-Net's VRAM proxy: the segmentation network's count plus what the fusion network keeps."""
        return (self.segmentation.compute_conv_feature_map_size(input_size)
                + self.fusion.compute_conv_feature_map_size(input_size, self.input_channels))

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's initialisation (network.apply visits a module after its children); the fusion network's
        correction of the average starts at zero again."""
        InitWeights_He(1e-2)(module)
        init_last_bn_before_add_to_0(module)
        if isinstance(module, FusionNetwork):
            module.zero_correction()


NETWORK_CLASSES = (_EncoderDecoder, Fuse4SegNet)  # every network class that plans can name from this module


def parameter_counts(network: nn.Module) -> dict:
    """{"total", "encoder", "decoder"} parameter counts of an encoder/decoder network.

    decoder = total - encoder: nnU-Net's UNetDecoder holds the encoder as a submodule, so its .parameters() repeat it.
    A Fuse4SegNet adds {"fusion"}: its fusion network (total = fusion + encoder + decoder).
    """
    total = sum(p.numel() for p in network.parameters())
    encoder = sum(p.numel() for p in network.encoder.parameters())
    if isinstance(network, Fuse4SegNet):
        fusion = sum(p.numel() for p in network.fusion.parameters())
        return {"total": total, "fusion": fusion, "encoder": encoder, "decoder": total - fusion - encoder}
    return {"total": total, "encoder": encoder, "decoder": total - encoder}
