"""The network a plans configuration builds, as nnU-Net's trainers build it, and what it costs in parameters."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Dict, Optional

from nnunet_fuse.compatibility import check_compatible
from nnunet_fuse.planning import MARKER_KEY, load_overlay


def trainer_deep_supervision(plans: dict) -> bool:
    """Whether the plans' trainer trains with deep supervision: nnU-Net's yes, FuseUNet's no, others as their overlay
    says (``trainer_deep_supervision``)."""
    if MARKER_KEY not in plans:
        return True
    return bool(load_overlay(plans[MARKER_KEY]["method"]).get("trainer_deep_supervision", False))


def with_arch_kwargs(configuration_manager, changes: dict):
    """A copy of a ConfigurationManager with ``changes`` written over its architecture arguments: how a trainer
    variant changes the network in its build_network_architecture (nnUNetv2_predict builds through the same trainer,
    so prediction sees the same network)."""
    import copy

    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    configuration = copy.deepcopy(configuration_manager.configuration)
    configuration["architecture"]["arch_kwargs"].update(changes)
    return ConfigurationManager(configuration)


def find_trainer_class(name: str) -> type:
    """The trainer class nnUNetv2_train would use (nnU-Net's package, then the folders of nnUNet_extTrainer), found
    quietly; RuntimeError or AssertionError (nnU-Net's) where there is none of that name."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints every folder it searches
        return recursive_find_trainer_class_by_name(name)


def network_from_plans(plans: dict, dataset_json: dict, configuration: str, deep_supervision: bool = False,
                       trainer: Optional[str] = None):
    """The network a plans configuration builds, constructed as nnU-Net's trainers do (no weight init); ``trainer``:
    built by that trainer class's own build_network_architecture instead (a user's variant may change the
    architecture; nnU-Net's initialisation included).

    Returns (network, configuration_manager); IncompatibleVersionError for plans this version cannot build.
    """
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    check_compatible(plans, f"plans '{plans.get('plans_name')}'")
    plans_manager = PlansManager(plans)
    cm = plans_manager.get_configuration(configuration)
    inputs = determine_num_input_channels(plans_manager, cm, dataset_json)
    outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    if trainer is not None:
        network = find_trainer_class(trainer).build_network_architecture(plans_manager, cm, inputs, outputs,
                                                                          deep_supervision)
    else:
        network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                         cm.network_arch_init_kwargs_req_import, inputs, outputs, allow_init=False,
                                         deep_supervision=deep_supervision)
    return network, cm


def count_parameters(plans_file: Path, dataset_json_file: Path, configuration: str,
                     trainer: Optional[str] = None) -> Dict[str, int]:
    """Parameters of the network a plans configuration builds (as the trainer builds it, deep supervision off;
    ``trainer``: see network_from_plans)."""
    from nnunet_fuse.architectures import parameter_counts

    network, _ = network_from_plans(json.loads(plans_file.read_text()), json.loads(dataset_json_file.read_text()),
                                    configuration, trainer=trainer)
    return parameter_counts(network)
