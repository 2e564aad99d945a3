"""HiFuseClassifier: the paper's own task, image classification, on the same HiFuseEncoder (2D).

(B, C_in, H, W) → logits (B, num_classes): encoder's last stage → global average pool → LayerNorm → linear.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nnunet_fuse.hifuse.encoder import HiFuseEncoder


class HiFuseClassifier(nn.Module):
    def __init__(self, input_channels: int, num_classes: int, features_per_stage: Sequence[int] = (32, 64, 128, 256),
                 strides: Sequence[int] = (2, 2, 2, 2), blocks_per_stage: int = 1, window_size: int = 7,
                 global_stages: Sequence[int] = None, head_channels: int = 32):
        super().__init__()
        n_stages = len(features_per_stage)
        self.encoder = HiFuseEncoder(input_channels=input_channels, n_stages=n_stages,
                                     features_per_stage=list(features_per_stage), conv_op=nn.Conv2d, kernel_sizes=3,
                                     strides=[[s, s] for s in strides], n_conv_per_stage=blocks_per_stage,
                                     conv_bias=True,
                                     norm_op=nn.InstanceNorm2d, norm_op_kwargs={"affine": True}, nonlin=nn.GELU,
                                     return_skips=False, global_stages=global_stages, window_size=window_size,
                                     head_channels=head_channels)
        self.norm = nn.LayerNorm(features_per_stage[-1])
        self.head = nn.Linear(features_per_stage[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"HiFuseClassifier is 2D: expects (batch, channels, height, width), got {tuple(x.shape)}")
        return self.head(self.norm(self.encoder(x).mean(dim=(2, 3))))
