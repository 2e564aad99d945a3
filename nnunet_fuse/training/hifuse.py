"""HiFuse trainers: nnU-Net's training (SGD, lr 1e-2, PolyLR, deep supervision) on HiFuse plans
(``nnunet-fuse plan --method hifuse`` or ``--method hifuse-fuseunet``)."""
from __future__ import annotations

from nnunet_fuse.training.plans_check import MethodPlansTrainer


class nnUNetTrainerHiFuse(MethodPlansTrainer):
    plans_methods = ("hifuse", "hifuse-fuseunet")
