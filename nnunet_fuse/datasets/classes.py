"""``classes.json`` in ``nnUNet_raw/DatasetXXX/``: the class of every training case.

{"classes": ["DCM", "HCM", ...], "cases": {"patient001_frame01": "DCM", ...}}. The class list fixes the order of
the network's outputs and of every probability column.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.input_check import InputError, read_json

CLASSES_FILE = "classes.json"


class ClassesError(InputError):
    """classes.json is missing, malformed, or does not match the dataset's cases."""


def write_classes(raw_dataset_folder: Path, case_classes: Dict[str, str], classes: Sequence[str] = None) -> Path:
    """Write raw_dataset_folder/classes.json; ``classes`` defaults to the sorted set of the cases' classes."""
    classes = sorted(set(case_classes.values())) if classes is None else list(classes)
    target = Path(raw_dataset_folder) / CLASSES_FILE
    write_text_atomically(target, json.dumps({"classes": classes, "cases": dict(sorted(case_classes.items()))},
                                             indent=2))
    return target


def read_classes(raw_dataset_folder: Path, case_ids: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """(classes, {case: class}) for exactly ``case_ids`` (the dataset's training cases); ClassesError names what
    does not match: a missing file, a case without a class, a class of a case the dataset lacks, a class not in the
    list, fewer than two classes among the cases."""
    path = Path(raw_dataset_folder) / CLASSES_FILE
    if not path.is_file():
        raise ClassesError(f"no {CLASSES_FILE} in {raw_dataset_folder}: classification needs the class of every "
                           f"training case there, as {{\"classes\": [names], \"cases\": {{case id: class name}}}} "
                           f"(nnunet-fuse convert acdc and convert imagefolder write it)")
    content = read_json(path)
    if not isinstance(content, dict) or not isinstance(content.get("classes"), list) \
            or not isinstance(content.get("cases"), dict):
        raise ClassesError(f"{path} must hold {{\"classes\": [names], \"cases\": {{case id: class name}}}}")
    classes = [str(c) for c in content["classes"]]
    if len(set(classes)) != len(classes):
        raise ClassesError(f"{path}: the class list {classes} names a class twice")
    cases = {str(k): str(v) for k, v in content["cases"].items()}
    unknown = sorted(set(cases) - set(case_ids))
    if unknown:
        raise ClassesError(f"{path} gives classes for {len(unknown)} case(s) the dataset does not have "
                           f"({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}); remove them or add "
                           f"the cases to imagesTr")
    missing = sorted(set(case_ids) - set(cases))
    if missing:
        raise ClassesError(f"{path} has no class for {len(missing)} training case(s) ({', '.join(missing[:5])}"
                           f"{', ...' if len(missing) > 5 else ''}); add them")
    undeclared = sorted(set(cases.values()) - set(classes))
    if undeclared:
        raise ClassesError(f"{path}: cases have classes {undeclared} that are not in its class list {classes}")
    used = sorted(set(cases.values()))
    if len(used) < 2:
        raise ClassesError(f"{path}: every case has class {used}; a classifier needs at least two classes")
    return classes, cases
