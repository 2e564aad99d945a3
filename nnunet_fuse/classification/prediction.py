"""``nnunet-fuse classify predict``: new scans → one CSV row per sample with its class and every class probability.

Each case goes through nnU-Net's own preprocessing of the trained configuration (the model folder's plans.json),
cases are grouped into samples as in training (a patient's frames together), and the folds' probabilities are
averaged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Sequence

import numpy as np
import torch

from nnunet_fuse.classification.samples import (RegionOfInterest, network_inputs, sample_probabilities,
                                                samples_of_frames, stack_frames)
from nnunet_fuse.classification.training import ClassificationError, build_network, write_predictions_csv
from nnunet_fuse.input_check import InputError, check_prediction_inputs, read_json


def _networks(model_folder: Path, folds: Sequence, checkpoint_name: str, device: torch.device):
    """([(network, region of interest)] per fold, what the folds share: settings, classes, frames_per_sample)."""
    from nnunet_fuse.training.checkpoints import read_checkpoint

    networks, reference = [], None
    for fold in folds:
        state = read_checkpoint(model_folder / f"fold_{fold}" / checkpoint_name)
        described = {k: state.get(k) for k in ("settings", "classes", "frames_per_sample")}
        if reference is not None and described != reference:
            raise ClassificationError(f"fold {fold} of {model_folder} was trained with other classes or network "
                                      f"settings than fold {folds[0]}; predict with the folds of one training")
        reference = described
        network = build_network(state["settings"]).to(device)
        network.load_state_dict(state["network_weights"])
        networks.append((network.eval(), RegionOfInterest(**state["region"])))
    return networks, reference


def predict_folder(model_folder: Path, input_folder: Path, output_csv: Path, folds: Sequence,
                   checkpoint_name: str = "checkpoint_final.pth", device: torch.device = torch.device("cpu"),
                   log: Callable[[str], None] = print) -> Path:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    model_folder = Path(model_folder)
    configuration = model_folder.name.split("__")[-1]
    cases = check_prediction_inputs(model_folder, input_folder, configuration, folds, checkpoint_name)
    networks, described = _networks(model_folder, list(folds), checkpoint_name, device)
    samples = samples_of_frames(list(cases), described["frames_per_sample"], input_folder)
    plans_manager = PlansManager(read_json(model_folder / "plans.json"))
    cm = plans_manager.get_configuration(configuration)
    dataset_json = read_json(model_folder / "dataset.json")
    preprocessor = cm.preprocessor_class(verbose=False)
    probabilities: List[np.ndarray] = []
    for i, sample in enumerate(samples, 1):
        log(f"[{i}/{len(samples)}] classifying {sample.id}")
        arrays = [preprocessor.run_case([str(f) for f in cases[c]], None, plans_manager, cm, dataset_json)[0]
                  for c in sample.cases]
        stacked = stack_frames([a.astype(np.float32) for a in arrays])
        probabilities.append(np.mean([sample_probabilities(network, network_inputs(stacked, roi), device)
                                      for network, roi in networks], axis=0))
    Path(output_csv).parent.mkdir(parents=True, exist_ok=True)
    write_predictions_csv(Path(output_csv), samples, np.stack(probabilities), described["classes"])
    return Path(output_csv)
