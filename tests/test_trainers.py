"""The trainer names a user can guess: nnUNetTrainer<method>_<budget> for every method and budget, found where
nnU-Net looks (the nnUNet_extTrainer folder), picklable under their canonical names, on the right schedule."""
import importlib.util
import pickle

import pytest

from nnunet_fuse.budgets import BUDGETS, METHOD_INFIXES, budget_trainer_name
from nnunet_fuse.resources import trainers_folder
from nnunet_fuse.training.budget import METHOD_TRAINERS, BudgetRecordMixin


def trainers_module():
    """The module nnU-Net imports from our nnUNet_extTrainer folder, loaded the way nnU-Net loads it."""
    spec = importlib.util.spec_from_file_location("nnunet_fuse_trainers",
                                                  trainers_folder() / "nnunet_fuse_trainers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("infix", list(METHOD_INFIXES))
@pytest.mark.parametrize("budget", list(BUDGETS))
def test_every_method_has_a_trainer_per_budget(infix, budget):
    name = budget_trainer_name(infix, budget)
    trainer = getattr(trainers_module(), name)
    assert trainer.__name__ == name and trainer.budget == budget
    assert issubclass(trainer, BudgetRecordMixin) and issubclass(trainer, METHOD_TRAINERS[infix])
    assert pickle.loads(pickle.dumps(trainer)) is trainer  # DDP and nnU-Net's workers pickle it
    assert f"{BUDGETS[budget][0]} epochs × {BUDGETS[budget][1]} iterations" in trainer.__doc__


def test_the_papers_trainers_and_nothing_else():
    module = trainers_module()
    names = set(module.__all__)
    papers = {"nnUNetTrainerFuseUNet", "nnUNetTrainerFuseUNetDS", "nnUNetTrainerFuse4Seg", "nnUNetTrainerHiFuse",
              "nnUNetTrainerFuse4SegUnrolled", "nnUNetTrainerFuse4SegContrast",
              "nnUNetTrainerFuse4SegAverage"}  # + Fuse4Seg's variants
    budgets = {budget_trainer_name(m, b) for m in METHOD_INFIXES for b in BUDGETS}
    assert names == papers | budgets
    for gone in ("nnUNetTrainerFuseUNet_2x4", "nnUNetTrainerFuseUNet_10x25", "nnUNetTrainerFuseUNet_lr1e2"):
        assert not hasattr(module, gone)


def test_one_budget_registry_for_segmentation_and_classification():
    """A budget name means one scale of work: every classifier budget is one of the segmentation budgets' names and
    lives in the same registry (nnunet_fuse.budgets), so `--budget small` names one budget in every command."""
    from nnunet_fuse import budgets
    from nnunet_fuse.classification import training

    assert training.CLASSIFIER_BUDGETS is budgets.CLASSIFIER_BUDGETS
    assert set(budgets.CLASSIFIER_BUDGETS) <= set(BUDGETS)
    assert set(budgets.CLASSIFIER_BUDGETS) == {"check", "small", "medium", "paper"}
