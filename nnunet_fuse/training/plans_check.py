"""Trainers stop early, saying what to run, when the plans do not name their method's network.

The networks a method accepts are the ones its plans overlay (plans/<method>.json) writes, so the two never disagree.
"""
from __future__ import annotations

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_fuse.planning import load_overlay, variant_plans_name


def check_plans_network(configuration_manager: ConfigurationManager, plans_name: str, trainer_name: str,
                        method: str) -> None:
    """Raise RuntimeError unless the configuration's network is one that `nnunet-fuse plan --method method` writes."""
    overlay = load_overlay(method)
    network = configuration_manager.network_arch_class_name
    if network not in set(overlay["network_class_by_base"].values()):
        label = overlay["plans_infix"]
        raise RuntimeError(
            f"{trainer_name} needs {label} plans, but plans '{plans_name}' name the network '{network}'. Write "
            f"{label} plans with `nnunet-fuse plan -d <dataset> --method {method}` and train with "
            f"`-p {variant_plans_name('nnUNetPlans', label)}`.")
