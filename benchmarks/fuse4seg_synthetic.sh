#!/usr/bin/env bash
# Issue 17: Fuse4Seg vs nnU-Net's network fed both channels, at equal budget on the same folds, on the synthetic
# two-modality data of the tests (nnunet_fuse.datasets.synthetic: each shape is easy to see in some channel), 2d,
# `demo` budget (250 iterations), 5-fold cross-validation; then the fused image of one validation case next to the
# average and max of the modalities (benchmarks/fuse4seg_case.py).
# usage: bash benchmarks/fuse4seg_synthetic.sh WORKDIR      (~15 min per method on 2 CPU cores)
# The report goes to WORKDIR/report (results.md), the case to WORKDIR/case.
set -euo pipefail
source "$(dirname "$0")/workdir_env.sh" "$1"
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-1} nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_compile=false
raw=$nnUNet_raw/Dataset993_TwoModal
[ -d "$raw" ] || python -c "from nnunet_fuse.datasets.synthetic import make_synthetic_dataset as m; \
m('$nnUNet_raw', 993, name='TwoModal', n_train=20, n_test=4, shape=(12, 32, 32), seed=3, channels=2)"
nnunet-fuse reproduce -d 993 -c 2d --methods fuse4seg,nnunet --folds 0 1 2 3 4 --budget demo -device cpu \
  -np "$nnUNet_def_n_proc" -o "$work/report"
splits=$nnUNet_preprocessed/Dataset993_TwoModal/splits_final.json
case=$(python -c "import json; print(json.load(open('$splits'))[0]['val'][0])")
mkdir -p "$work/fused_in"
cp "$raw/imagesTr/${case}_0000.nii.gz" "$raw/imagesTr/${case}_0001.nii.gz" "$work/fused_in/"
nnunet-fuse export-fused -i "$work/fused_in" -o "$work/fused" -d 993 -c 2d -f 0 -tr nnUNetTrainerFuse4Seg_demo \
  -device cpu
model=$nnUNet_results/Dataset993_TwoModal/nnUNetTrainerFuse4Seg_demo__nnUNetFuse4SegPlans__2d/fold_0
python "$here/benchmarks/fuse4seg_case.py" --images "$work/fused_in/${case}_0000.nii.gz" \
  "$work/fused_in/${case}_0001.nii.gz" --names "contrast A" "contrast B" --fused "$work/fused/$case.nii.gz" \
  --segmentation "$model/validation/$case.nii.gz" --reference "$raw/labelsTr/$case.nii.gz" \
  --dataset-json "$raw/dataset.json" -o "$work/case"
