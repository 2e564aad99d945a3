"""Cases → samples → network inputs.

A sample is what gets one class: a case, or, where the dataset holds several cases per patient (ACDC's ED and ES
frames, ``patientNNN_frameMM``), the patient, whose frames become channels of one input (frame order, then the
case's own channels), so the network sees the heart contract. Inputs keep nnU-Net's preprocessing (spacing,
normalisation) and are cropped (or zero-padded) to a region of interest: where the training cases' labels lie
(for ACDC the heart; the whole image for a dataset labelled all ones), at most the plan's patch size. A 2d
configuration classifies each slice and averages the slices' probabilities, a 3d one takes the volume whole.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from nnunet_fuse.input_check import InputError
from nnunet_fuse.splits import cases_by_patient


@dataclass
class Sample:
    id: str  # the patient or the case
    cases: List[str]  # in frame order


def group_samples(case_ids: Sequence[str]) -> List[Sample]:
    """Samples of ``case_ids``: one per patient (cases_by_patient); every sample must hold the same number of cases,
    else InputError naming the odd ones."""
    samples = [Sample(patient, cases) for patient, cases in cases_by_patient(case_ids).items()]
    counts = {len(s.cases) for s in samples}
    if len(counts) > 1:
        usual = max(counts, key=lambda n: sum(len(s.cases) == n for s in samples))
        odd = [f"{s.id} ({len(s.cases)})" for s in samples if len(s.cases) != usual][:5]
        raise InputError(f"the cases group into patients with different numbers of frames: most have {usual}, but "
                         f"{', '.join(odd)}; a patient's frames are one sample, so every patient needs the same "
                         f"frames (name them PATIENT_frameNN)")
    return samples


def samples_of_frames(case_ids: Sequence[str], frames_per_sample: int, where: object) -> List[Sample]:
    """New cases → samples as a model trained on samples of ``frames_per_sample`` frames needs them (one sample per
    case for 1); InputError naming the patients in ``where`` with another number of frames."""
    if frames_per_sample <= 1:
        return [Sample(case, [case]) for case in sorted(case_ids)]
    samples = [Sample(patient, group) for patient, group in cases_by_patient(sorted(case_ids)).items()]
    wrong = [f"{s.id} ({len(s.cases)})" for s in samples if len(s.cases) != frames_per_sample]
    if wrong:
        raise InputError(f"the model classifies a patient from {frames_per_sample} frames (PATIENT_frameNN cases), "
                         f"but {', '.join(wrong[:5])} in {where} have other numbers of frames")
    return samples


def stack_frames(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Frames (C, *S_i) → (F·C, *S): each frame cropped or zero-padded around its centre to the largest shape."""
    shape = [int(n) for n in np.max([f.shape[1:] for f in frames], axis=0)]
    return np.concatenate([fit_to(f, shape) for f in frames], axis=0)


def fit_to(array: np.ndarray, size: Sequence[int], offset: Optional[Sequence[float]] = None) -> np.ndarray:
    """(C, *S) → (C, *size): the window of ``size`` centred at the array's centre (+ ``offset`` voxels per axis),
    zeros where it leaves the array."""
    out = np.zeros((array.shape[0], *size), dtype=array.dtype)
    offset = [0.0] * len(size) if offset is None else offset
    src, dst = [], []
    for have, want, shift in zip(array.shape[1:], size, offset):
        start = math.floor((have - want) / 2 + shift)  # window start in the array's coordinates
        lo, hi = max(0, start), min(have, start + want)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[(slice(None), *dst)] = array[(slice(None), *src)]
    return out


@dataclass
class RegionOfInterest:
    """Where the classifier looks, per axis of its input: a window of ``size`` centred ``offset`` voxels from the
    image centre. From the training cases' labels (region_of_interest); the patch size by default."""
    size: List[int]
    offset: List[float]


def region_of_interest(boxes: Sequence[Sequence[Sequence[int]]], shapes: Sequence[Sequence[int]],
                       patch_size: Sequence[int], multiple: int = 16) -> RegionOfInterest:
    """The window that holds the labelled foreground of (nearly) every training case: centred at the mean offset of
    the foreground boxes' centres from the image centres, as large as the 95th percentile of the boxes' extents plus
    four standard deviations of the centres (rounded up to ``multiple``), at most the patch size. boxes: per case
    (low, high) voxel indices per axis; shapes: per case the image's spatial shape (the axes of patch_size, the
    last ones)."""
    dims = len(patch_size)
    low = np.array([b[0][-dims:] for b in boxes], dtype=float)
    high = np.array([b[1][-dims:] for b in boxes], dtype=float)
    shape = np.array([s[-dims:] for s in shapes], dtype=float)
    offsets = (low + high) / 2 - (shape - 1) / 2  # box centre − image centre, in voxel indices
    extent = np.percentile(high - low + 1, 95, axis=0) + 4 * offsets.std(axis=0)
    size = [int(min(p, multiple * np.ceil(e / multiple))) for e, p in zip(extent, patch_size)]
    return RegionOfInterest(size=size, offset=[float(o) for o in offsets.mean(axis=0)])


def network_inputs(sample_array: np.ndarray, roi: RegionOfInterest) -> np.ndarray:
    """(C, *S) of a sample → the inputs the network classifies, the region of interest of each: (Z, C, *roi) slices
    for a 2D region on a volume, else (1, C, *roi)."""
    if len(roi.size) == sample_array.ndim - 2:  # 2d configuration: slices along the first axis
        return np.stack([fit_to(sample_array[:, z], roi.size, roi.offset) for z in range(sample_array.shape[1])])
    return fit_to(sample_array, roi.size, roi.offset)[None]


@torch.no_grad()
def sample_probabilities(network: torch.nn.Module, inputs: np.ndarray, device: torch.device,
                         batch_size: int = 16) -> np.ndarray:
    """Class probabilities of one sample (K,): the softmax of each input (slice or volume), averaged."""
    probabilities = []
    for start in range(0, len(inputs), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])).to(device)
        probabilities.append(torch.softmax(network(batch).float(), dim=1).cpu())
    return torch.cat(probabilities).mean(0).numpy()


def augment(batch: torch.Tensor, generator: torch.Generator, rotation_degrees: float = 15.0,
            scale: float = 0.1, shift: float = 0.1) -> torch.Tensor:
    """Random in-plane affine (rotation about the first spatial axis in 3D, scaling, translation as a fraction of
    the size; linear interpolation, zeros outside), then per-sample intensity scaling (×0.9–1.1) and shift (±0.1):
    (B, C, *S) → the same shape. No mirroring: it swaps the left and right heart."""
    b, dim = batch.shape[0], batch.dim() - 2
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(batch.device)  # noqa: E731
    angle = (rand(b) * 2 - 1) * np.deg2rad(rotation_degrees)
    factor = 1 + (rand(b) * 2 - 1) * scale
    theta = torch.zeros(b, dim, dim + 1, device=batch.device)
    theta[:, range(dim), range(dim)] = 1.0
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    # affine_grid's axes run x, y(, z) = last axis first: rotate the last two spatial axes
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, :2, dim] = (rand(b, 2) * 2 - 1) * 2 * shift
    grid = torch.nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    moved = torch.nn.functional.grid_sample(batch, grid.to(batch.dtype), mode="bilinear", padding_mode="zeros",
                                            align_corners=False)
    gain = 1 + (rand(b, 1, *[1] * dim) * 2 - 1) * 0.1
    offset = (rand(b, 1, *[1] * dim) * 2 - 1) * 0.1
    return moved * gain + offset


def class_balanced_indices(labels: Sequence[int], count: int, generator: torch.Generator) -> List[int]:
    """``count`` sample indices: a class uniformly among the classes present, then a sample of it uniformly."""
    by_class: Dict[int, List[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    present = sorted(by_class)
    picks = torch.randint(len(present), (count,), generator=generator).tolist()
    return [by_class[present[p]][torch.randint(len(by_class[present[p]]), (1,), generator=generator).item()]
            for p in picks]
