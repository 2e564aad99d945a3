"""Training budgets: the one registry of named schedules behind every short trainer, ``nnunet-fuse reproduce`` and
``nnunet-fuse classify`` (no heavy imports: the CLI reads it). ``training/budget.py`` makes the trainer classes from
it. A name means one scale of work for both kinds of training: ``check`` an end-to-end run in minutes, ``small`` about
an hour on 2 CPU cores, ``medium`` a few GPU hours, ``paper`` the published schedule; a segmentation budget
(BUDGETS) and a classifier budget (CLASSIFIER_BUDGETS) of one name are two schedules of that one budget.

BUDGETS[name] = (epochs, iterations per epoch, validation iterations per epoch). The trainer of method M on budget
B is ``nnUNetTrainer<M>_<B>`` (budget_trainer_name), for M in METHOD_INFIXES: nnUNetTrainer_small,
nnUNetTrainerFuseUNet_demo, nnUNetTrainerHiFuse_paper, ...
"""
from dataclasses import dataclass
from typing import Dict, Optional

BUDGETS = {
    "smoke": (2, 4, 2),        # tests only
    "check": (2, 1, 1),        # full-size end-to-end checks (benchmarks/full_size.py): one iteration per phase
    "demo": (10, 25, 5),       # nnunet-fuse demo and quick looks: a few minutes on 2 CPU cores at small patches
    "small": (5, 50, 10),      # ~1 h for nnU-Net + FuseUNet on MSD Hippocampus 3d_fullres, 2 CPU cores
    "long": (40, 50, 10),      # 2000 iterations: learning curves on a CPU (hours per training)
    "medium": (100, 250, 50),  # a few GPU hours
    "paper": (1000, 250, 50),  # nnU-Net's schedule
}
# budget → epochs between the snapshots (SNAPSHOT_FILE) its trainers keep, from which `reproduce --curve` measures
# validation Dice against iterations
SNAPSHOT_EPOCHS = {"smoke": 1, "long": 10, "medium": 20, "paper": 100}
SNAPSHOT_FILE = "checkpoint_iteration_{}.pth"  # .format(iterations trained)
NO_MIRRORING_BUDGETS = ("smoke", "check")  # neither augmentation nor test-time mirroring: quick CPU validation
# method infix → what its trainers train ("": nnU-Net's own network, on nnU-Net's plans)
METHOD_INFIXES = {
    "": "nnU-Net's network and training",
    "FuseUNet": "FuseUNet, the paper's setting (no deep supervision)",
    "FuseUNetDS": "FuseUNet with nnU-Net's deep supervision",
    "Fuse4Seg": "Fuse4Seg's bi-level fusion + segmentation",
    "Fuse4SegUnrolled": "Fuse4Seg with the unrolled (Stackelberg) leader gradient",
    "Fuse4SegContrast": "Fuse4Seg whose fused image keeps each labelled region's contrast (a loss not in the paper)",
    "Fuse4SegAverage": "the segmentation network of Fuse4Seg's plans fed the plain average of the modalities",
    "HiFuse": "HiFuse (and HiFuse + FuseUNet) with nnU-Net's training",
}
RECORD_FILE = "training_record.json"  # written by the budget trainers beside their checkpoints


def budget_trainer_name(method_infix: str, budget: str) -> str:
    """('FuseUNet', 'small') → 'nnUNetTrainerFuseUNet_small'."""
    return f"nnUNetTrainer{method_infix}_{budget}"


@dataclass(frozen=True)
class ClassifierBudget:
    """A HiFuse classifier's schedule (nnunet-fuse classify --budget)."""
    epochs: int
    iterations: Optional[int]  # per epoch; None: one pass over the training inputs (slices or volumes)
    batch_size: int
    learning_rate: float
    features: tuple  # channels of the four stages
    layout: Optional[str] = None  # None: our slim network; "T", "S", "B": the paper's HiFuse-T/S/B (its widths)


# small: ACDC's 100 patients (2d) in under 30 min on 2 CPU cores; paper: the HiFuse repository's train.py (100 epochs,
# batch 32, AdamW lr 1e-4, weight decay 1e-2, one warm-up epoch, cosine) on its HiFuse-Tiny network
CLASSIFIER_BUDGETS: Dict[str, ClassifierBudget] = {
    "check": ClassifierBudget(2, 2, 4, 1e-3, (16, 32, 64, 64)),
    "small": ClassifierBudget(20, 25, 16, 1e-3, (32, 64, 128, 256)),
    "medium": ClassifierBudget(60, 25, 16, 1e-3, (32, 64, 128, 256)),
    "paper": ClassifierBudget(100, None, 32, 1e-4, (96, 192, 384, 768), "T"),
}
