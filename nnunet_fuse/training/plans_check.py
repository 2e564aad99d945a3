"""Trainers stop early, saying what to run, when the plans do not name their method's network.

The networks a method accepts are the ones its plans overlay (plans/<method>.json) writes, so the two never disagree.
"""
from __future__ import annotations

from typing import Sequence, Union

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_fuse.planning import load_overlay, variant_plans_name


def check_plans_network(configuration_manager: ConfigurationManager, plans_name: str, trainer_name: str,
                        method: Union[str, Sequence[str]]) -> None:
    """Raise RuntimeError unless the configuration's network is one that `nnunet-fuse plan --method M` writes, for
    the method M (or one of the methods) given."""
    methods = [method] if isinstance(method, str) else list(method)
    overlays = [load_overlay(m) for m in methods]
    network = configuration_manager.network_arch_class_name
    if not any(network in set(o["network_class_by_base"].values()) for o in overlays):
        label = overlays[0]["plans_infix"]
        raise RuntimeError(
            f"{trainer_name} needs {label} plans, but plans '{plans_name}' name the network '{network}'. Write "
            f"{label} plans with `nnunet-fuse plan -d <dataset> --method {methods[0]}` and train with "
            f"`-p {variant_plans_name('nnUNetPlans', label)}`.")
