"""``body_sizes.json`` in ``nnUNet_raw/DatasetXXX/``: each patient's height and weight, where the dataset has them.

{"patient001": {"height_cm": 184.0, "weight_kg": 95.0}, ...}; ``convert acdc`` writes it from ACDC's Info.cfg.
Classification from segmentations uses it for the body surface area and volumes indexed by it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

from nnunet_fuse.atomic_files import write_text_atomically
from nnunet_fuse.input_check import InputError, read_json

BODY_SIZES_FILE = "body_sizes.json"

BodySizes = Dict[str, Tuple[float, float]]  # patient → (height cm, weight kg)


def write_body_sizes(path: Path, sizes: BodySizes) -> None:
    write_text_atomically(Path(path), json.dumps(
        {k: {"height_cm": h, "weight_kg": w} for k, (h, w) in sorted(sizes.items())}, indent=2))


def read_body_sizes(path: Path) -> BodySizes:
    """{patient: (height cm, weight kg)}; InputError for another layout or sizes out of any human range."""
    content = read_json(path)
    try:
        sizes = {str(k): (float(v["height_cm"]), float(v["weight_kg"])) for k, v in content.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path} must hold {{patient: {{\"height_cm\": number, \"weight_kg\": number}}}} "
                         f"({type(e).__name__}: {e})") from e
    wrong = [k for k, (h, w) in sizes.items() if not (30 <= h <= 260 and 1 <= w <= 400)]
    if wrong:
        raise InputError(f"{path}: height (cm) or weight (kg) outside any human range for {', '.join(wrong[:5])}; "
                         f"give height in cm and weight in kg")
    return sizes
