"""``nnunet-fuse find-best-configuration``: nnU-Net's own model selection over a list of trained models.

``nnUNetv2_find_best_configuration -tr A B -p P Q -c C`` considers every trainer × plans × configuration and stops at
the first combination that was never trained; ours pair a trainer with its own plans (FuseUNet trainers with FuseUNet
plans, nnU-Net's with nnU-Net's), so comparing them there fails. This takes the models as nnU-Net names their folders
(TRAINER__PLANS__CONFIGURATION), checks that each requested fold was trained and validated (with --npz where models
are ensembled), and runs nnU-Net's ``find_best_configuration`` on exactly those: cross-validation Dice of each model
and of each pair's ensemble, postprocessing, and the inference commands (nnUNet_results/DatasetXXX/
inference_instructions.txt).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from nnunet_fuse.input_check import InputError


def parse_models(identifiers: Sequence[str]) -> List[Dict[str, str]]:
    """['nnUNetTrainer__nnUNetPlans__2d', ...] → nnU-Net's [{'trainer', 'plans', 'configuration'}, ...]."""
    models = []
    for identifier in identifiers:
        parts = identifier.split("__")
        if len(parts) != 3 or not all(parts):
            raise InputError(f"model '{identifier}' is not TRAINER__PLANS__CONFIGURATION (the name of its folder in "
                             f"nnUNet_results/DatasetXXX, e.g. nnUNetTrainerFuseUNet__nnUNetFuseUNetPlans__2d)")
        models.append({"trainer": parts[0], "plans": parts[1], "configuration": parts[2]})
    if len(models) != len({tuple(m.values()) for m in models}):
        raise InputError(f"a model is listed twice: {list(identifiers)}")
    return models


def check_trained(dataset: str, models: Sequence[Dict[str, str]], folds: Sequence[int], ensembling: bool) -> None:
    """InputError naming the model and fold, and the command to run, unless every fold of every model has its
    validation predictions (and their probabilities, .npz, when ensembling)."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    for m in models:
        folder = Path(get_output_folder(dataset, m["trainer"], m["plans"], m["configuration"]))
        for fold in folds:
            validation = folder / f"fold_{fold}" / "validation"
            train = (f"nnUNetv2_train {dataset} {m['configuration']} {fold} -tr {m['trainer']} -p {m['plans']} "
                     f"--npz")
            if not (validation / "summary.json").is_file():
                raise InputError(f"fold {fold} of {folder.name} has no validation results ({validation}); train it: "
                                 f"{train}")
            if ensembling and not any(validation.glob("*.npz")):
                raise InputError(f"fold {fold} of {folder.name} was validated without --npz, so it cannot be "
                                 f"ensembled; run `{train} --val` (validation only), or pass --disable_ensembling")


def find_best(dataset: str, identifiers: Sequence[str], folds: Sequence[int], ensembling: bool = True,
              num_processes: int = 1) -> dict:
    """Check the models, then run nnU-Net's find_best_configuration on them; returns its result dict."""
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration
    from nnunetv2.utilities.file_path_utilities import maybe_convert_to_dataset_name

    if len(identifiers) < 1:
        raise InputError("give at least one model (-m TRAINER__PLANS__CONFIGURATION ...)")
    try:
        dataset_name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise InputError(f"dataset {dataset}: {e}") from e
    models = parse_models(identifiers)
    check_trained(dataset, models, folds, ensembling and len(models) > 1)
    return find_best_configuration(dataset_name, models, allow_ensembling=ensembling, num_processes=num_processes,
                                   overwrite=True, folds=tuple(folds), strict=True)
