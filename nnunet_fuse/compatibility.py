"""Which nnunet_fuse version wrote a plans variant or a checkpoint, and whether this one can use it.

Every plans variant (``plans[PLANS_KEY]["version"]``) and every checkpoint of our trainers
(``checkpoint["nnunet_fuse_version"]``) records the version that wrote it. Files of 0.1.x carry none and are read as
0.1.0. Versions follow semantic versioning with the 0.x rule: files of an earlier minor version from
OLDEST_COMPATIBLE on load, files of a newer minor (or major) version do not. A network class whose meaning changed
since then (same parameter names, different output) has a later oldest version of its own
(OLDEST_COMPATIBLE_BY_NETWORK). ``check_compatible`` is the one check every reader of a plans file or checkpoint goes
through; it finds the networks in the file itself (a plans file's configurations, a checkpoint's ``init_args``), so a
method that reuses a network class is covered without being named.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import List, Optional, Tuple, Union

from nnunet_fuse import __version__
from nnunet_fuse.input_check import read_json

PLANS_KEY = "nnunet_fuse"  # present in every plans file nnunet_fuse writes: method, base plans, trainer, version
CHECKPOINT_VERSION_KEY = "nnunet_fuse_version"
OLDEST_COMPATIBLE = (0, 1)  # the (major, minor) of the oldest files this version reads
# network class → ((major, minor) of its oldest files this version reads, what changed then)
OLDEST_COMPATIBLE_BY_NETWORK = {
    "nnunet_fuse.architectures.Fuse4SegNet": (
        (0, 4), "Fuse4Seg's fusion network changed in 0.4 (it corrects the average of the modalities instead of "
                "decoding the image; 0.3: tile-independent)"),
}
UNRECORDED = "0.1.0"  # what a file without a recorded version was written by


class IncompatibleVersionError(RuntimeError):
    """A plans file or checkpoint was written by an nnunet_fuse version this one cannot use; says what to install."""


def release(version: str) -> Tuple[int, int]:
    """'0.2.1' → (0, 2); a local or pre-release suffix after the patch number is ignored."""
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise IncompatibleVersionError(f"'{version}' is not an nnunet_fuse version (expected MAJOR.MINOR.PATCH)")


def _check_release(written_by: str, what: str) -> Tuple[int, int]:
    """(major, minor) of ``written_by``, or IncompatibleVersionError when this version reads no file of it."""
    ours, theirs = release(__version__), release(written_by)
    if theirs > ours:
        raise IncompatibleVersionError(
            f"{what} was written by nnunet_fuse {written_by}, newer than the installed {__version__}; install a "
            f"compatible version: pip install 'nnunet_fuse>={theirs[0]}.{theirs[1]}'")
    if theirs < OLDEST_COMPATIBLE:
        raise IncompatibleVersionError(
            f"{what} was written by nnunet_fuse {written_by}; the installed {__version__} reads files of "
            f"{OLDEST_COMPATIBLE[0]}.{OLDEST_COMPATIBLE[1]} and later. Install nnunet_fuse=={written_by} to use it, "
            f"or write the plans again (nnunet-fuse plan) and retrain.")
    return theirs


def plans_method(plans: dict) -> Optional[str]:
    """The method of a plans variant of ours (None for nnU-Net's own plans)."""
    return plans.get(PLANS_KEY, {}).get("method")


def plans_networks(plans: dict, configuration: Optional[str] = None) -> List[str]:
    """The network classes a plans dict names (of one configuration, or of all), sorted."""
    configurations = plans.get("configurations", {})
    chosen = [configuration] if configuration is not None else list(configurations)
    return sorted({configurations[c].get("architecture", {}).get("network_class_name", "")
                   for c in chosen if c in configurations} - {""})


def is_checkpoint(content: dict) -> bool:
    return "network_weights" in content


def check_compatible(content: dict, what: str) -> None:
    """Raise IncompatibleVersionError, naming ``what`` (the file) and the fix, unless this version can use
    ``content``: a plans dict or a loaded checkpoint (a dict with 'network_weights'). nnU-Net's own plans pass; a
    checkpoint without a recorded version is one of nnU-Net's trainers or of nnunet_fuse 0.1.x."""
    if is_checkpoint(content):
        recorded = content.get(CHECKPOINT_VERSION_KEY)
        init_args = content.get("init_args") or {}  # nnU-Net's trainers save their plans and configuration there
        plans = init_args.get("plans") or {}
        networks = plans_networks(plans, init_args.get("configuration")) if plans else []
    elif PLANS_KEY in content:
        plans, recorded, networks = content, content[PLANS_KEY].get("version"), plans_networks(content)
    else:
        return  # nnU-Net's own plans
    written_by = recorded or UNRECORDED
    theirs = _check_release(written_by, what)
    method = plans_method(plans)
    for network in networks:
        if network in OLDEST_COMPATIBLE_BY_NETWORK:
            oldest, change = OLDEST_COMPATIBLE_BY_NETWORK[network]
            if theirs < oldest:
                plan_again = f"nnunet-fuse plan -d DATASET --method {method} --overwrite" if method else \
                    "nnunet-fuse plan -d DATASET --method METHOD --overwrite"
                raise IncompatibleVersionError(
                    f"{what} was written by nnunet_fuse {written_by} for {method or network}; {change}, so the "
                    f"installed {__version__} reads {network.rsplit('.', 1)[-1]} files of {oldest[0]}.{oldest[1]} "
                    f"and later. Install nnunet_fuse=={written_by} to use it, or write the plans again "
                    f"({plan_again}) and retrain.")


def installed_versions() -> str:
    """One line: this plugin's version and the versions of what it runs on."""
    parts = []
    for package in ("nnunetv2", "torch", "dynamic_network_architectures", "SimpleITK"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} not installed")
    return f"nnunet_fuse {__version__} ({', '.join(parts)})"


def model_versions(model_folder: Union[str, Path]) -> List[Tuple[str, str]]:
    """[(file, what wrote it and whether this version can use it)] for a trained model folder
    (nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION): its plans.json and every fold's checkpoints."""
    import torch

    def verdict(content: dict, what: str) -> str:
        try:
            check_compatible(content, what)
            return "usable by this version"
        except IncompatibleVersionError as e:
            return f"NOT usable: {e}"

    folder = Path(model_folder)
    if not (folder / "plans.json").is_file():
        raise IncompatibleVersionError(f"{folder} is not a trained model folder (no plans.json); give "
                                       f"nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION")
    plans = read_json(folder / "plans.json")
    marker = plans.get(PLANS_KEY)
    rows = [(str(folder / "plans.json"),
             "nnU-Net's own plans (no nnunet_fuse network)" if marker is None else
             f"nnunet_fuse {marker.get('version') or 'before 0.2 (no version recorded)'}, method "
             f"{marker.get('method')}: {verdict(plans, 'plans.json')}")]
    for checkpoint in sorted(folder.glob("fold_*/checkpoint_*.pth")):
        content = torch.load(checkpoint, map_location="cpu", weights_only=False)
        recorded = content.get(CHECKPOINT_VERSION_KEY)
        writer = f"nnunet_fuse {recorded}" if recorded else \
            "no nnunet_fuse version (nnU-Net's own trainer, or nnunet_fuse before 0.2)"
        rows.append((str(checkpoint), f"{writer}: {verdict(content, checkpoint.name)}"))
    return rows
