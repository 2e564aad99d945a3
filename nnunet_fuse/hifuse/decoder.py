"""nnU-Net's UNetDecoder with HFF blocks as its skip-merge operator (``skip_merge: "hff"`` in HiFuse plans).

Where UNetDecoder concatenates [upsampled; skip] (2·C_skip channels), each stage here merges them with an HFF block:
HFF(local = skip, global = upsampled) → 2·C_skip channels, so the stage's convolutions, the deep-supervision heads
and the checkpoint layout of everything else stay nnU-Net's. skips: list (B, C_s, *S_s), bottleneck last → logits.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

from nnunet_fuse.hifuse.blocks import HFFBlock


class HFFSkipDecoder(UNetDecoder):
    def __init__(self, encoder: nn.Module, num_classes: int, n_conv_per_stage: Union[int, Sequence[int]],
                 deep_supervision: bool, nonlin_first: bool = False, reduction: int = 16, irmlp_ratio: int = 1):
        super().__init__(encoder, num_classes, n_conv_per_stage, deep_supervision, nonlin_first=nonlin_first)
        skips = encoder.output_channels[-2::-1]  # skip channels in decoding order
        self.merges = nn.ModuleList(HFFBlock(encoder.conv_op, c, c, 2 * c, norm_op=encoder.norm_op,
                                             norm_op_kwargs=encoder.norm_op_kwargs, reduction=reduction,
                                             irmlp_ratio=irmlp_ratio) for c in skips)

    def forward(self, skips: Sequence[torch.Tensor]):
        lres_input, outputs = skips[-1], []
        for s, stage in enumerate(self.stages):
            x = stage(self.merges[s](skips[-(s + 2)], self.transpconvs[s](lres_input)))
            if self.deep_supervision:
                outputs.append(self.seg_layers[s](x))
            elif s == len(self.stages) - 1:
                outputs.append(self.seg_layers[-1](x))
            lres_input = x
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]
