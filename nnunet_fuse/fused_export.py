"""``nnunet-fuse export-fused``: the fused image of every case, as an image file aligned with the input scan.

Each case goes through nnU-Net's own preprocessing for the trained configuration (cropping, resampling,
normalisation), the trained fusion network runs over it with Gaussian-weighted sliding windows of the plan's patch
size (slice by slice for 2d configurations; tiles on the grid of the network's stride, each counted only where it
holds a voxel's whole receptive field, so that the result does not depend on the tile step), and the result is
resampled back to the original geometry the way nnU-Net exports predictions (linear resampling, cropping reverted,
axes transposed back). The file has the size, spacing, origin and direction of the case's first channel, so it opens
on top of the originals in any viewer.

With reference label maps (``labels_folder``, e.g. labelsTr) it also reports, per case and labelled region (labels
or regions of dataset.json), the region's contrast against the tissue around it (imagefusion.metrics.contrast_table)
in every modality, in their average and maximum (rescaled by the fusion network) and in the fused image, on the
preprocessed grid: ``contrast.json`` and ``contrast.md`` in the output folder.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


class ExportError(RuntimeError):
    """The model folder or an input case cannot be exported; the message says what to do."""


def sliding_window_fuse(fusion: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor,
                        patch_size: Sequence[int], step: float = 0.5, alignment: Optional[Sequence[int]] = None,
                        margin: Optional[Sequence[int]] = None) -> torch.Tensor:
    """fusion over data (N, *spatial) → (*spatial), tiles of patch_size blended with nnU-Net's Gaussian weights.
    A 2D patch on 3D data runs slice by slice along the first axis. With ``alignment`` (per axis, e.g. the fusion
    network's stride) every tile starts at a multiple of it, so the tiles share one grid of the network's strided
    convolutions (the data is zero-padded at the end to a multiple of it). With ``margin`` (per axis, the network's
    receptive radius) a tile counts only where it holds a voxel's whole receptive field (its borders inside the image
    left out), so tiles of a tile-independent network blend to the same value whatever the step; voxels that no tile
    holds that far inside (where tiles overlap by less than two margins) keep the plain Gaussian blend."""
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    if data.ndim - 1 == len(patch_size) + 1:
        return torch.stack([sliding_window_fuse(fusion, data[:, z], patch_size, step, alignment, margin)
                            for z in range(data.shape[1])])
    shape = list(data.shape[1:])
    alignment = [a if a and p % a == 0 else 1 for a, p in zip(alignment or [1] * len(shape), patch_size)]
    padded_shape = [-(-max(s, p) // a) * a for s, p, a in zip(shape, patch_size, alignment)]
    padding = [x for s, p in zip(reversed(shape), reversed(padded_shape)) for x in (0, p - s)]
    data = F.pad(data, padding)
    gaussian = compute_gaussian(tuple(patch_size), value_scaling_factor=10, dtype=torch.float32, device=data.device)
    fused, weight, inner_fused, inner_weight = (torch.zeros(padded_shape, device=data.device) for _ in range(4))
    # nnU-Net's tile starts on the grid of multiples of the alignment: they cover the image as nnU-Net's do
    grid_steps = compute_steps_for_sliding_window(tuple(s // a for s, a in zip(padded_shape, alignment)),
                                                  tuple(p // a for p, a in zip(patch_size, alignment)), step)
    for starts in itertools.product(*([s * a for s in steps] for steps, a in zip(grid_steps, alignment))):
        window = tuple(slice(s, s + p) for s, p in zip(starts, patch_size))
        with torch.no_grad():
            tile = fusion(data[(slice(None), *window)][None])[0, 0].float()
        fused[window] += tile * gaussian
        weight[window] += gaussian
        if margin is not None:
            inner = gaussian.clone()
            for axis, (start, size, m, total) in enumerate(zip(starts, patch_size, margin, padded_shape)):
                for border, inside in ((slice(0, m), start > 0), (slice(size - m, size), start + size < total)):
                    if inside:  # a border inside the image: the tile's zero padding differs from the image there
                        inner[(slice(None),) * axis + (border,)] = 0
            inner_fused[window] += tile * inner
            inner_weight[window] += inner
    blended = torch.where(inner_weight > 0, inner_fused / inner_weight.clamp_min(1e-30), fused / weight)
    return blended[tuple(slice(0, s) for s in shape)]


def export_fused(model_folder: Path, input_folder: Path, output_folder: Path, fold: int,
                 checkpoint_name: str = "checkpoint_final.pth", device: torch.device = torch.device("cpu"),
                 step: float = 0.5, log: Callable[[str], None] = print,
                 labels_folder: Optional[Path] = None) -> List[Path]:
    """Write output_folder/CASE<file_ending> (float32 in [0, 1]) for every case of input_folder; returns the paths.
    ``step``: the tiles' step as a fraction of the patch (nnUNetv2_predict's -step_size); ``labels_folder``: the
    cases' label maps (CASE<file_ending>), for the contrast report (module docstring)."""
    import SimpleITK as sitk
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_fuse.architectures import Fuse4SegNet
    from nnunet_fuse.atomic_files import replaced_atomically
    from nnunet_fuse.input_check import check_prediction_inputs
    from nnunet_fuse.training.distributed import unwrapped

    if not 0 < step <= 1:
        raise ExportError(f"the tile step must be in (0, 1] (a fraction of the patch size), got {step}")
    if not (Path(model_folder) / f"fold_{fold}" / checkpoint_name).is_file():
        raise ExportError(f"no {checkpoint_name} in {Path(model_folder) / f'fold_{fold}'}; train that fold first "
                          f"(nnUNetv2_train ... -tr nnUNetTrainerFuse4Seg -p nnUNetFuse4SegPlans)")
    configuration = Path(model_folder).name.split("__")[-1]
    cases = check_prediction_inputs(model_folder, input_folder, configuration, [fold], checkpoint_name, output_folder)
    label_files = {}
    if labels_folder is not None:
        file_ending = json.loads((Path(model_folder) / "dataset.json").read_text())["file_ending"]
        label_files = {case: Path(labels_folder) / f"{case}{file_ending}" for case in cases}
        missing = [f.name for f in label_files.values() if not f.is_file()]
        if missing:
            raise ExportError(f"--labels {labels_folder} has no label map for {len(missing)} case(s) "
                              f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); give the folder "
                              f"that holds CASE{file_ending} for every case of {input_folder}")
    predictor = nnUNetPredictor(device=device, verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), (fold,), checkpoint_name)
    network = unwrapped(predictor.network)
    if not isinstance(network, Fuse4SegNet):
        raise ExportError(f"{model_folder} holds a {type(network).__name__}, not a Fuse4Seg model: export-fused needs "
                          f"a training with -tr nnUNetTrainerFuse4Seg -p nnUNetFuse4SegPlans")
    network.load_state_dict(predictor.list_of_parameters[0])
    network.to(device).eval()
    plans_manager, cm, dataset_json = predictor.plans_manager, predictor.configuration_manager, predictor.dataset_json
    file_ending = dataset_json["file_ending"]
    contrasts = {}
    Path(output_folder).mkdir(parents=True, exist_ok=True)
    preprocessor = cm.preprocessor_class(verbose=False)
    written = []
    for i, (case, files) in enumerate(cases.items(), 1):
        log(f"[{i}/{len(cases)}] fusing {case}")
        label_file = str(label_files[case]) if case in label_files else None
        data, seg, properties = preprocessor.run_case([str(f) for f in files], label_file, plans_manager, cm,
                                                      dataset_json)
        fused = sliding_window_fuse(network.fusion, torch.from_numpy(data).to(device), cm.patch_size, step,
                                    network.fusion.downsample, network.fusion.receptive_radius())
        if case in label_files:
            contrasts[case] = case_contrasts(network.fusion, data, fused.cpu().numpy(), seg[0], dataset_json)
        spacing_transposed = [properties["spacing"][j] for j in plans_manager.transpose_forward]
        shape_before_resampling = properties["shape_after_cropping_and_before_resampling"]
        current_spacing = cm.spacing if len(cm.spacing) == len(shape_before_resampling) \
            else [spacing_transposed[0], *cm.spacing]
        fused = cm.resampling_fn_probabilities(fused[None].cpu().numpy(), shape_before_resampling, current_spacing,
                                               spacing_transposed)[0]
        full = insert_crop_into_image(np.zeros(properties["shape_before_cropping"], dtype=np.float32),
                                      np.asarray(fused, dtype=np.float32), properties["bbox_used_for_cropping"])
        full = np.clip(full.transpose(plans_manager.transpose_backward), 0, 1)
        reference = sitk.ReadImage(str(files[0]))
        if full.shape != sitk.GetArrayViewFromImage(reference).shape:
            raise ExportError(f"case {case}: fused image shape {full.shape} does not match {files[0]}")
        image = sitk.GetImageFromArray(full.astype(np.float32))
        image.CopyInformation(reference)
        target = Path(output_folder) / f"{case}{file_ending}"
        with replaced_atomically(target) as temporary:
            sitk.WriteImage(image, str(temporary), useCompression=True)
        written.append(target)
    if contrasts:
        write_contrast_report(contrasts, list(dataset_json["channel_names"].values()), Path(output_folder))
        log(f"wrote {Path(output_folder) / 'contrast.md'}")
    return written


def case_contrasts(fusion: torch.nn.Module, data: np.ndarray, fused: np.ndarray, labels: np.ndarray,
                   dataset_json: dict) -> dict:
    """region → image → contrast for one preprocessed case: data (N, *S) as nnU-Net normalised it, fused (*S),
    labels (*S) (−1 outside the nonzero mask nnU-Net normalised within: left out of the surroundings)."""
    from nnunet_fuse.imagefusion.metrics import contrast_table, label_regions

    with torch.no_grad():
        rescaled = fusion.rescale(torch.from_numpy(data)[None].float())[0].numpy()
    images = {name: channel for name, channel in zip(dataset_json["channel_names"].values(), data)}
    images.update({"average": rescaled.mean(0), "max": rescaled.max(0), "fused": fused})
    return contrast_table(images, label_regions(labels, dataset_json["labels"]), within=labels >= 0)


def write_contrast_report(contrasts: dict, modalities: Sequence[str], folder: Path) -> None:
    """contrast.json (case → region → image → contrast) and contrast.md: per region the mean over cases of each
    image's contrast and of the share the average, the max and the fused image keep of the best modality's, and the
    lowest share over the cases."""
    from nnunet_fuse.atomic_files import write_text_atomically
    from nnunet_fuse.imagefusion.metrics import SURROUNDING_WIDTH, kept_contrast
    from nnunet_fuse.reporting import format_table

    write_text_atomically(folder / "contrast.json", json.dumps(contrasts, indent=2))
    fusions = ["average", "max", "fused"]
    regions = list(dict.fromkeys(r for case in contrasts.values() for r in case))
    rows = [["region", "cases", *modalities, *fusions, *[f"{f} keeps" for f in fusions],
             *[f"{f} keeps, lowest" for f in fusions]]]

    def summary(values: List[float], reduce) -> str:
        return f"{float(reduce(values)):.2f}" if np.isfinite(values).any() else "nan"

    for region in regions:
        per_case = [case[region] for case in contrasts.values() if region in case]
        kept = {f: [kept_contrast(c, f, modalities) for c in per_case] for f in fusions}
        rows.append([region, str(len(per_case)),
                     *[summary([c[n] for c in per_case], np.nanmean) for n in [*modalities, *fusions]],
                     *[summary(kept[f], np.nanmean) for f in fusions], *[summary(kept[f], np.nanmin) for f in fusions]])
    text = (f"# Contrast of each labelled region ({len(contrasts)} case(s))\n\n{format_table(rows)}\n\n"
            f"Contrast: |mean inside − mean of the surrounding tissue| / sd of the surrounding tissue (the voxels "
            f"within {SURROUNDING_WIDTH} voxels of the region, outside it, inside the nonzero mask), on nnU-Net's "
            f"preprocessed grid; mean over cases. \"keeps\": the image's contrast / the contrast of the modality that "
            f"shows the region best, per case, then averaged (\"lowest\": the case that keeps least). Average and "
            f"max: of the modalities rescaled to [0, 1] by the fusion network. Per case: contrast.json.\n")
    write_text_atomically(folder / "contrast.md", text)
