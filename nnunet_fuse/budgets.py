"""Training budgets: the one system of named schedules behind every short trainer and ``nnunet-fuse reproduce`` (no
heavy imports: the CLI reads it). ``training/budget.py`` makes the trainer classes from it.

BUDGETS[name] = (epochs, iterations per epoch, validation iterations per epoch). The trainer of method M on budget
B is ``nnUNetTrainer<M>_<B>`` (budget_trainer_name), for M in METHOD_INFIXES: nnUNetTrainer_small,
nnUNetTrainerFuseUNet_demo, nnUNetTrainerHiFuse_paper, ...
"""
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
    "HiFuse": "HiFuse (and HiFuse + FuseUNet) with nnU-Net's training",
}
RECORD_FILE = "training_record.json"  # written by the budget trainers beside their checkpoints


def budget_trainer_name(method_infix: str, budget: str) -> str:
    """('FuseUNet', 'small') → 'nnUNetTrainerFuseUNet_small'."""
    return f"nnUNetTrainer{method_infix}_{budget}"
