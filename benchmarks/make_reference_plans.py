"""Write BraTS-like and KiTS-like 3d_fullres plans (no data needed) for `nnunet-fuse profile --plans-file`.

Template: a real nnUNetPlans.json made by nnU-Net's planner (e.g. ACDC from benchmarks/plan_real_datasets.sh);
its 3d_fullres architecture is replaced by the values nnU-Net plans for BraTS 2021 (Dataset137: 4 MRI channels,
128³ patch, 3 regions) and KiTS 2023 (Dataset220: 1 CT channel, 128³ patch, 3 regions): 6 stages, features 32–320,
isotropic 3³ kernels and 2³ strides, batch 2.
usage: python benchmarks/make_reference_plans.py TEMPLATE_nnUNetPlans.json benchmarks/plans
"""
import copy
import json
import sys
from pathlib import Path

SETUPS = {
    "Dataset137_BraTSlike": {"channels": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
                             "median": [138, 169, 138], "spacing": [1.0, 1.0, 1.0],
                             "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                        "enhancing tumor": [3]}, "regions_class_order": [1, 2, 3]},
    "Dataset220_KiTSlike": {"channels": {"0": "CT"}, "median": [437, 512, 512], "spacing": [0.78, 0.78, 0.78],
                            "labels": {"background": 0, "kidney": [1, 2, 3], "masses": [2, 3], "tumor": [2]},
                            "regions_class_order": [1, 3, 2]},
}


def main(template: Path, out: Path) -> None:
    base = json.loads(template.read_text())
    for name, setup in SETUPS.items():
        plans = copy.deepcopy(base)
        plans["dataset_name"] = name
        plans["original_median_shape_after_transp"] = setup["median"]
        cfg = plans["configurations"]["3d_fullres"]
        cfg.update({"patch_size": [128, 128, 128], "batch_size": 2, "median_image_size_in_voxels": setup["median"],
                    "spacing": setup["spacing"]})
        kw = cfg["architecture"]["arch_kwargs"]
        kw.update({"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
                   "kernel_sizes": [[3, 3, 3]] * 6, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5,
                   "n_conv_per_stage": [2] * 6, "n_conv_per_stage_decoder": [2] * 5})
        channels = len(setup["channels"])  # per-channel entries, as nnU-Net's planner writes them
        cfg["normalization_schemes"] = cfg["normalization_schemes"][:1] * channels
        cfg["use_mask_for_norm"] = cfg["use_mask_for_norm"][:1] * channels
        properties = plans["foreground_intensity_properties_per_channel"]["0"]
        plans["foreground_intensity_properties_per_channel"] = {str(c): properties for c in range(channels)}
        plans["configurations"] = {"3d_fullres": cfg}
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "nnUNetPlans.json").write_text(json.dumps(plans, indent=2))
        dataset = {"channel_names": setup["channels"], "labels": setup["labels"],
                   "regions_class_order": setup["regions_class_order"], "numTraining": 0, "file_ending": ".nii.gz"}
        (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
        print(f"wrote {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
