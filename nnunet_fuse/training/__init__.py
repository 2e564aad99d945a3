"""nnU-Net trainer classes of nnunet_fuse (the real code; ``trainers/`` only re-exports them for nnU-Net)."""

from nnunet_fuse.training.fuseunet import (
    nnUNetTrainerFuseUNet,
    nnUNetTrainerFuseUNetDS,
    nnUNetTrainerFuseUNet_lr1e2,
    nnUNetTrainerFuseUNet_10x25,
    nnUNetTrainerFuseUNet_4x25,
    nnUNetTrainerFuseUNet_2x4,
    nnUNetTrainerFuseUNetDS_2x4,
)

__all__ = [
    "nnUNetTrainerFuseUNet",
    "nnUNetTrainerFuseUNetDS",
    "nnUNetTrainerFuseUNet_lr1e2",
    "nnUNetTrainerFuseUNet_10x25",
    "nnUNetTrainerFuseUNet_4x25",
    "nnUNetTrainerFuseUNet_2x4",
    "nnUNetTrainerFuseUNetDS_2x4",
]
