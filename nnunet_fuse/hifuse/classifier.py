"""HiFuseClassifier: the paper's own task, image classification, on the same HiFuseEncoder (2D and 3D).

(B, C_in, *S) → logits (B, num_classes): encoder's last stage → global average pool → LayerNorm → dropout → linear.
Any input size: a stage whose input side is not divisible by its stride rounds up (the HFF block pools alike).
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

import torch
from torch import nn

from nnunet_fuse.hifuse.encoder import HiFuseEncoder


class HiFuseClassifier(nn.Module):
    """``strides``: one per stage, an int or one per axis (the paper: 4, 2, 2, 2); ``conv_op`` nn.Conv2d or
    nn.Conv3d; ``dropout`` before the linear head."""

    def __init__(self, input_channels: int, num_classes: int, features_per_stage: Sequence[int] = (32, 64, 128, 256),
                 strides: Sequence[Union[int, Sequence[int]]] = (2, 2, 2, 2), blocks_per_stage: int = 1,
                 window_size: Optional[Union[int, Sequence[int]]] = None, global_stages: Sequence[int] = None,
                 head_channels: int = 32, conv_op: Type[nn.Module] = nn.Conv2d, dropout: float = 0.0,
                 activation_checkpointing: bool = False):
        super().__init__()
        dim = 2 if conv_op is nn.Conv2d else 3
        norm_op = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
        self.dim = dim
        self.encoder = HiFuseEncoder(input_channels=input_channels, n_stages=len(features_per_stage),
                                     features_per_stage=list(features_per_stage), conv_op=conv_op, kernel_sizes=3,
                                     strides=[[s] * dim if isinstance(s, int) else list(s) for s in strides],
                                     n_conv_per_stage=blocks_per_stage, conv_bias=True,
                                     norm_op=norm_op, norm_op_kwargs={"affine": True}, nonlin=nn.GELU,
                                     return_skips=False, global_stages=global_stages,
                                     window_size=window_size if window_size is not None else (7 if dim == 2 else 4),
                                     head_channels=head_channels, activation_checkpointing=activation_checkpointing)
        self.norm = nn.LayerNorm(features_per_stage[-1])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features_per_stage[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.dim + 2:
            raise ValueError(f"HiFuseClassifier is {self.dim}D: expects (batch, channels, {self.dim} spatial axes), "
                             f"got {tuple(x.shape)}")
        pooled = self.encoder(x).mean(dim=tuple(range(2, x.dim())))
        return self.head(self.dropout(self.norm(pooled)))
