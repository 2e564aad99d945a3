"""Where the plugin's data folders are: the trainers folder for ``nnUNet_extTrainer`` and the plans overlays.

A wheel (``pip install .``) ships them inside the package as ``nnunet_fuse/_trainers`` and ``nnunet_fuse/_plans``;
a source checkout (editable install, tests) has them at the repository root as ``trainers/`` and ``plans/``.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_folder(installed_name: str, source_name: str) -> Path:
    for candidate in (_PACKAGE / installed_name, _PACKAGE.parent / source_name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"nnunet_fuse is installed without its '{source_name}' folder (looked in "
                            f"{_PACKAGE / installed_name} and {_PACKAGE.parent / source_name}); reinstall it with "
                            f"`pip install <path to nnunet_fuse>`")


def trainers_folder() -> Path:
    """The folder that ``nnUNet_extTrainer`` must list: thin modules re-exporting our trainer classes."""
    return _data_folder("_trainers", "trainers")


def plans_overlays_folder() -> Path:
    """The folder of per-method plans overlays (``<method>.json``)."""
    return _data_folder("_plans", "plans")


def ext_trainer_value(current: str | None) -> str:
    """The value for nnUNet_extTrainer: our trainers folder first, the entries of ``current`` kept after it."""
    folder = str(trainers_folder())
    others = [p for p in (current or "").split(os.pathsep) if p and p != folder]
    return os.pathsep.join([folder, *others])
