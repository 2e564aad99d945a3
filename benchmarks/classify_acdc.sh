#!/usr/bin/env bash
# 5-fold cross-validation of `nnunet-fuse classify` on ACDC's 100 patients (diagnosis: NOR, MINF, DCM, HCM, RV).
# usage: bash benchmarks/classify_acdc.sh WORKDIR [BUDGET] [CONFIGURATION]   (defaults: small, 2d)
# Converts ../shared/data/ACDC/training into WORKDIR/nnUNet_raw (once), runs nnU-Net's plan_and_preprocess (once),
# trains the five folds on the CPU and writes the report to benchmarks/classification/acdc_CONFIG_BUDGET/.
set -euo pipefail
budget=${2:-small}; configuration=${3:-2d}
source "$(dirname "$0")/workdir_env.sh" "$1"
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-2}
[ -d "$nnUNet_raw/Dataset027_ACDC" ] || nnunet-fuse convert acdc "$here/../shared/data/ACDC/training" -d 27
[ -d "$nnUNet_preprocessed/Dataset027_ACDC/nnUNetPlans_$configuration" ] \
  || nnUNetv2_plan_and_preprocess -d 27 -c "$configuration" -np "$nnUNet_def_n_proc"
for fold in 0 1 2 3 4; do
  /usr/bin/time -f "fold $fold: %e s wall, %M KB peak resident" \
    nnunet-fuse classify train -d 27 -c "$configuration" -f $fold --budget "$budget" -device cpu --c
done
nnunet-fuse classify evaluate -d 27 -c "$configuration" --budget "$budget" -o "$here/benchmarks/classification/acdc_${configuration}_$budget"
