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
from nnunet_fuse.training.budget import (
    nnUNetTrainer_smoke,
    nnUNetTrainer_small,
    nnUNetTrainer_medium,
    nnUNetTrainer_paper,
    nnUNetTrainerFuseUNet_smoke,
    nnUNetTrainerFuseUNet_small,
    nnUNetTrainerFuseUNet_medium,
    nnUNetTrainerFuseUNet_paper,
    nnUNetTrainerFuse4Seg_smoke,
    nnUNetTrainerFuse4Seg_small,
    nnUNetTrainerFuse4Seg_medium,
    nnUNetTrainerFuse4Seg_paper,
)
from nnunet_fuse.training.fuse4seg import nnUNetTrainerFuse4Seg, nnUNetTrainerFuse4Seg_2x4

__all__ = [
    "nnUNetTrainerFuseUNet",
    "nnUNetTrainerFuseUNetDS",
    "nnUNetTrainerFuseUNet_lr1e2",
    "nnUNetTrainerFuseUNet_10x25",
    "nnUNetTrainerFuseUNet_4x25",
    "nnUNetTrainerFuseUNet_2x4",
    "nnUNetTrainerFuseUNetDS_2x4",
    "nnUNetTrainer_smoke",
    "nnUNetTrainer_small",
    "nnUNetTrainer_medium",
    "nnUNetTrainer_paper",
    "nnUNetTrainerFuseUNet_smoke",
    "nnUNetTrainerFuseUNet_small",
    "nnUNetTrainerFuseUNet_medium",
    "nnUNetTrainerFuseUNet_paper",
    "nnUNetTrainerFuse4Seg",
    "nnUNetTrainerFuse4Seg_2x4",
    "nnUNetTrainerFuse4Seg_smoke",
    "nnUNetTrainerFuse4Seg_small",
    "nnUNetTrainerFuse4Seg_medium",
    "nnUNetTrainerFuse4Seg_paper",
]
