"""HiFuseClassifier: the paper's own task, image classification, on the same HiFuseEncoder (2D and 3D).

(B, C_in, *S) → logits (B, num_classes): encoder's last stage → global average pool → LayerNorm → dropout → linear.
Any input size: a stage whose input side is not divisible by its stride rounds up (the HFF block pools alike).
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

import torch
from torch import nn

from nnunet_fuse.hifuse.encoder import HiFuseEncoder


# The paper's HiFuse-T/S/B (the HiFuse repository's HiFuse_Tiny/Small/Base): widths 96–768, local (ConvNeXt) and
# global (Swin) blocks at all four stages with these depths (the same for both branches), MLPs ×4, HFF at every stage
PAPER_DEPTHS = {"T": (2, 2, 2, 2), "S": (2, 2, 6, 2), "B": (2, 2, 18, 2)}


def paper_layout(size: str = "T") -> dict:
    """HiFuseClassifier's arguments (beyond channels, classes, strides, conv_op) for the paper's HiFuse-``size``."""
    depths = list(PAPER_DEPTHS[size])
    return {"features_per_stage": [96, 192, 384, 768], "blocks_per_stage": depths, "global_blocks_per_stage": depths,
            "global_stages": [0, 1, 2, 3], "head_channels": 32, "mlp_ratio": 4, "irmlp_ratio": 4,
            "local_kernel_size": 7, "local_mlp_ratio": 4}


class HiFuseClassifier(nn.Module):
    """``strides``: one per stage, an int or one per axis (the paper: 4, 2, 2, 2); ``conv_op`` nn.Conv2d or
    nn.Conv3d; ``dropout`` before the linear head. The defaults are our slim network (global attention at the last
    two stages, one local block per stage, MLPs ×2 and ×1); ``paper_layout(size)`` gives the published one."""

    def __init__(self, input_channels: int, num_classes: int, features_per_stage: Sequence[int] = (32, 64, 128, 256),
                 strides: Sequence[Union[int, Sequence[int]]] = (2, 2, 2, 2),
                 blocks_per_stage: Union[int, Sequence[int]] = 1,
                 window_size: Optional[Union[int, Sequence[int]]] = None, global_stages: Sequence[int] = None,
                 head_channels: int = 32, conv_op: Type[nn.Module] = nn.Conv2d, dropout: float = 0.0,
                 activation_checkpointing: bool = False, global_blocks_per_stage: Union[int, Sequence[int]] = 2,
                 mlp_ratio: int = 2, irmlp_ratio: int = 1, local_kernel_size: int = 3, local_mlp_ratio: int = 0):
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
                                     head_channels=head_channels, activation_checkpointing=activation_checkpointing,
                                     global_blocks_per_stage=global_blocks_per_stage, mlp_ratio=mlp_ratio,
                                     irmlp_ratio=irmlp_ratio, local_kernel_size=local_kernel_size,
                                     local_mlp_ratio=local_mlp_ratio)
        self.norm = nn.LayerNorm(features_per_stage[-1])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features_per_stage[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.dim + 2:
            raise ValueError(f"HiFuseClassifier is {self.dim}D: expects (batch, channels, {self.dim} spatial axes), "
                             f"got {tuple(x.shape)}")
        pooled = self.encoder(x).mean(dim=tuple(range(2, x.dim())))
        return self.head(self.dropout(self.norm(pooled)))
