"""nnU-Net trainer classes of nnunet_fuse (the real code; ``trainers/`` only re-exports them for nnU-Net).

Per method one trainer with its paper's schedule (nnUNetTrainerFuseUNet, nnUNetTrainerFuseUNetDS, nnUNetTrainerFuse4Seg
and its variants Fuse4SegUnrolled, Fuse4SegContrast and Fuse4SegAverage, nnUNetTrainerHiFuse) and one per named budget,
nnUNetTrainer<method>_<budget> (training/budget.py; budgets in nnunet_fuse.budgets), nnU-Net's own network included
(nnUNetTrainer_<budget>).
"""
from nnunet_fuse.training.budget import BUDGET_TRAINERS
from nnunet_fuse.training.fuse4seg import (nnUNetTrainerFuse4Seg, nnUNetTrainerFuse4SegAverage,
                                           nnUNetTrainerFuse4SegContrast, nnUNetTrainerFuse4SegUnrolled)
from nnunet_fuse.training.fuseunet import nnUNetTrainerFuseUNet, nnUNetTrainerFuseUNetDS
from nnunet_fuse.training.hifuse import nnUNetTrainerHiFuse
from nnunet_fuse.training.pretrained import install as _route_pretrained_weights

globals().update(BUDGET_TRAINERS)
_route_pretrained_weights()  # nnUNetv2_train -pretrained_weights with our networks (see training/pretrained.py)

__all__ = ["nnUNetTrainerFuseUNet", "nnUNetTrainerFuseUNetDS", "nnUNetTrainerFuse4Seg", "nnUNetTrainerFuse4SegUnrolled",
           "nnUNetTrainerFuse4SegContrast", "nnUNetTrainerFuse4SegAverage", "nnUNetTrainerHiFuse", *BUDGET_TRAINERS]
