#!/usr/bin/env bash
# Real nnU-Net plans for MSD Hippocampus (all 200 cases, nnU-Net's MSD converter) and ACDC (first 20 patients,
# ED + ES frames), then the parameter table. usage: bash benchmarks/plan_real_datasets.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
SHARED=$(cd .. && pwd)/shared/data
WORK=${1:-$(mktemp -d)}
export nnUNet_raw=$WORK/raw nnUNet_preprocessed=$WORK/preprocessed nnUNet_results=$WORK/results nnUNet_def_n_proc=1
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"

[ -d "$nnUNet_raw/Dataset004_Hippocampus" ] || $BIN/nnUNetv2_convert_MSD_dataset -i "$SHARED/Task04_Hippocampus" -np 1
# ACDC: nnU-Net 2.8.1's Dataset027_ACDC.convert_acdc fails on the nnUNet_raw path object, so copy frames directly
$BIN/python - "$SHARED/ACDC/training" "$nnUNet_raw/Dataset027_ACDC" <<'PY'
import shutil, sys
from pathlib import Path
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
src, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "imagesTr").mkdir(parents=True, exist_ok=True); (out / "labelsTr").mkdir(exist_ok=True)
n = 0
for patient in sorted(p for p in src.iterdir() if p.is_dir())[:20]:
    for gt in sorted(patient.glob("*_gt.nii.gz")):
        case = gt.name.replace("_gt.nii.gz", "")
        shutil.copy(patient / f"{case}.nii.gz", out / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copy(gt, out / "labelsTr" / f"{case}.nii.gz"); n += 1
generate_dataset_json(str(out), {0: "cineMRI"}, {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}, n, ".nii.gz")
PY
for d in 4 27; do
  $BIN/nnUNetv2_extract_fingerprint -d $d -np 1
  $BIN/nnUNetv2_plan_experiment -d $d
done
$BIN/python benchmarks/parameter_counts.py "$nnUNet_preprocessed"/Dataset004_Hippocampus/nnUNetPlans.json \
  "$nnUNet_preprocessed"/Dataset027_ACDC/nnUNetPlans.json -c 2d 3d_fullres -o benchmarks/parameter_counts.md
