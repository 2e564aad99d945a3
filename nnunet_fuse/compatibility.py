"""Which nnunet_fuse version wrote a plans variant or a checkpoint, and whether this one can use it.

Every plans variant (``plans[PLANS_KEY]["version"]``) and every checkpoint of our trainers
(``checkpoint["nnunet_fuse_version"]``) records the version that wrote it. Files of 0.1.x carry none and are read as
0.1.0. Versions follow semantic versioning with the 0.x rule: files of an earlier minor version from
OLDEST_COMPATIBLE on load, files of a newer minor (or major) version do not. A method whose network changed since
then has a later oldest version of its own (OLDEST_COMPATIBLE_BY_METHOD), for its plans and checkpoints.
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
# method → ((major, minor) of its oldest files this version reads, what changed then)
OLDEST_COMPATIBLE_BY_METHOD = {
    "fuse4seg": ((0, 4), "Fuse4Seg's fusion network changed in 0.4 (it corrects the average of the modalities instead "
                         "of decoding the image; 0.3: tile-independent)"),
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


def check_written_by(recorded: Optional[str], what: str, method: Optional[str] = None) -> None:
    """Raise IncompatibleVersionError, naming ``what`` (a file) and the fix, unless this version can use a file that
    nnunet_fuse ``recorded`` wrote (None: written before versions were recorded, i.e. 0.1.x) for ``method`` (the
    plans' method; None: any)."""
    written_by = recorded or UNRECORDED
    ours = release(__version__)
    theirs = release(written_by)
    if theirs > ours:
        raise IncompatibleVersionError(
            f"{what} was written by nnunet_fuse {written_by}, newer than the installed {__version__}; install a "
            f"compatible version: pip install 'nnunet_fuse>={theirs[0]}.{theirs[1]}'")
    if theirs < OLDEST_COMPATIBLE:
        raise IncompatibleVersionError(
            f"{what} was written by nnunet_fuse {written_by}; the installed {__version__} reads files of "
            f"{OLDEST_COMPATIBLE[0]}.{OLDEST_COMPATIBLE[1]} and later. Install nnunet_fuse=={written_by} to use it, "
            f"or write the plans again (nnunet-fuse plan) and retrain.")
    if method in OLDEST_COMPATIBLE_BY_METHOD:
        oldest, change = OLDEST_COMPATIBLE_BY_METHOD[method]
        if theirs < oldest:
            raise IncompatibleVersionError(
                f"{what} was written by nnunet_fuse {written_by} for {method}; {change}, so the installed "
                f"{__version__} reads {method} files of {oldest[0]}.{oldest[1]} and later. Install "
                f"nnunet_fuse=={written_by} to use it, or write the plans again (nnunet-fuse plan -d DATASET "
                f"--method {method} --overwrite) and retrain.")


def plans_method(plans: dict) -> Optional[str]:
    """The method of a plans variant of ours (None for nnU-Net's own plans)."""
    return plans.get(PLANS_KEY, {}).get("method")


def check_plans_written_by(plans: dict, what: str) -> None:
    """check_written_by for a plans dict: nnU-Net's own plans (no PLANS_KEY) and ours of compatible versions pass."""
    if PLANS_KEY in plans:
        check_written_by(plans[PLANS_KEY].get("version"), what, plans_method(plans))


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

    def verdict(recorded: Optional[str], what: str) -> str:
        try:
            check_written_by(recorded, what, method)
            return "usable by this version"
        except IncompatibleVersionError as e:
            return f"NOT usable: {e}"

    folder = Path(model_folder)
    if not (folder / "plans.json").is_file():
        raise IncompatibleVersionError(f"{folder} is not a trained model folder (no plans.json); give "
                                       f"nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION")
    plans = read_json(folder / "plans.json")
    marker, method = plans.get(PLANS_KEY), plans_method(plans)
    rows = [(str(folder / "plans.json"),
             "nnU-Net's own plans (no nnunet_fuse network)" if marker is None else
             f"nnunet_fuse {marker.get('version') or 'before 0.2 (no version recorded)'}, method "
             f"{marker.get('method')}: {verdict(marker.get('version'), 'plans.json')}")]
    for checkpoint in sorted(folder.glob("fold_*/checkpoint_*.pth")):
        recorded = torch.load(checkpoint, map_location="cpu", weights_only=False).get(CHECKPOINT_VERSION_KEY)
        rows.append((str(checkpoint), f"nnunet_fuse {recorded}: {verdict(recorded, checkpoint.name)}" if recorded else
                     "no nnunet_fuse version (nnU-Net's own trainer, or nnunet_fuse before 0.2)"))
    return rows
