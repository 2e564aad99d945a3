"""``nnunet-fuse reproduce``: methods trained side by side on one dataset with the same budget, here or on a SLURM
cluster.

preparation.py  plan + preprocess once (nnU-Net's command, skipped when done), each method's plans variant, the folds
                (over patients where a patient has several cases): everything the trainings share, before any starts
runs.py         the trainings, one per (method, fold): their state on disk and the job each runs (nnUNetv2_train
                with the budget's trainer, nnU-Net's final validation, with ``--curve`` the snapshots' validation)
launchers/      where they run: ``local`` (here, one after another) or ``slurm`` (one job array through submitit,
                requeued on preemption and time limits; re-running the command is the status command)
report.py       one table (Markdown, JSON, PNG) with Dice, HD95, parameters, batch and patch, time and memory, and
                learning curves with ``--curve``
pipeline.py     reproduce(): the three in order

Resumes: a finished training is never run again; one without its validation gets ``--val``; an interrupted one
continues from its latest checkpoint (``--c``; our trainers save one after every epoch). A training made on other
folds is refused. The report merges with an earlier one of the same comparison in the output folder, and files there
that reproduce did not write are never replaced.
"""
from nnunet_fuse.reproduce.pipeline import reproduce
from nnunet_fuse.reproduce.preparation import nnunet_folders
from nnunet_fuse.reproduce.report import (curve_summary, curve_table, earlier_report, label_names, merge_rows,
                                          published_reference)
from nnunet_fuse.reproduce.runs import METHODS, ReproduceError, fold_state, parse_methods

__all__ = ["reproduce", "nnunet_folders", "curve_summary", "curve_table", "earlier_report", "label_names",
           "merge_rows", "published_reference", "METHODS", "ReproduceError", "fold_state", "parse_methods"]
