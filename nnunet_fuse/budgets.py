"""Training budgets shared by the budget trainers and ``nnunet-fuse reproduce`` (no heavy imports: the CLI reads it).

BUDGETS[name] = (epochs, iterations per epoch, validation iterations per epoch).
"""
BUDGETS = {
    "smoke": (2, 4, 2),        # tests only (no mirroring: see training/budget.py)
    "check": (2, 1, 1),        # full-size end-to-end checks (benchmarks/full_size.py): one iteration per phase
    "small": (5, 50, 10),      # ~1 h for nnU-Net + FuseUNet on MSD Hippocampus 3d_fullres, 2 CPU cores
    "medium": (100, 250, 50),  # a few GPU hours
    "paper": (1000, 250, 50),  # nnU-Net's schedule
}
RECORD_FILE = "training_record.json"  # written by the budget trainers beside their checkpoints
