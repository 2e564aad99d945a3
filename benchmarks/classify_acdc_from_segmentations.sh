#!/usr/bin/env bash
# Diagnosis from segmentations on ACDC's 100 patients: 5-fold cross-validation over patients (issue 31).
# usage: bash benchmarks/classify_acdc_from_segmentations.sh WORKDIR   (resumable: run it again after a stop)
#
# 1. reference label maps (labelsTr: the upper bound): classify train/evaluate --features shape;
# 2. predicted label maps (the honest number): a segmentation model per fold on the same splits_final.json —
#    FuseUNet with deep supervision on a CPU-sized 2d plan (nnU-Net's spacing and preprocessing, batch 6, patch
#    128 x 128 instead of 56 x 256 x 224: nnU-Net's plan takes > 12 min per 50 iterations on 2 CPU cores), 2000
#    iterations (budget long), its held-out cases predicted by its final model without test-time mirroring (nnU-Net's
#    tile step 0.5; step 1 halves the time but cost Dice on fold 0: 0.746 instead of 0.826) into
#    fold_k/validation/ — and each fold's classifier classifies its held-out patients from those predictions (cases
#    its segmentation model never trained on).
# Reports: benchmarks/classification/acdc_shape_references/ and acdc_shape_predicted/.
set -euo pipefail
source "$(dirname "$0")/workdir_env.sh" "$1"
eval "$(nnunet-fuse env)"
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-1} nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_compile=false
data=$nnUNet_preprocessed/Dataset027_ACDC
[ -d "$nnUNet_raw/Dataset027_ACDC" ] || nnunet-fuse convert acdc "$here/../shared/data/ACDC/training" -d 27
[ -d "$data/nnUNetPlans_2d" ] || nnUNetv2_plan_and_preprocess -d 27 -c 2d -np "$nnUNet_def_n_proc"
[ -f "$data/nnUNetFuseUNetPlans.json" ] || nnunet-fuse plan -d 27 --method fuseunet -c 2d
# the CPU-sized variant: same preprocessed data (data_identifier nnUNetPlans_2d), smaller batch and patch
python - "$data" <<'EOF'
import json, sys
from pathlib import Path
folder = Path(sys.argv[1])
plans = json.loads((folder / "nnUNetFuseUNetPlans.json").read_text())
plans["plans_name"] = "nnUNetFuseUNetPlans_cpu"
configuration = dict(plans["configurations"]["2d"], batch_size=6, patch_size=[128, 128])
plans["configurations"] = {"2d": configuration}
target = folder / "nnUNetFuseUNetPlans_cpu.json"
if not target.is_file():
    target.write_text(json.dumps(plans, indent=1))
EOF
T=nnUNetTrainerFuseUNetDS_long P=nnUNetFuseUNetPlans_cpu
segmenter=$nnUNet_results/Dataset027_ACDC/${T}__${P}__2d
for fold in 0 1 2 3 4; do
  d=$segmenter/fold_$fold
  [ -f "$d/validation/summary.json" ] && continue
  if [ ! -f "$d/checkpoint_final.pth" ]; then
    # nnU-Net's own end-of-training validation mirrors at test time (about 15 min per fold on 2 cores): it is stopped
    # once the final checkpoint is written (SIGKILL: our trainers take SIGTERM as a preemption, which stops training
    # between epochs, not this validation), and the held-out cases are predicted below without test-time mirroring
    resume=(); [ -f "$d/checkpoint_latest.pth" ] && resume=(--c)
    setsid nnUNetv2_train 27 2d $fold -tr $T -p $P -device cpu "${resume[@]}" &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
      if [ -f "$d/checkpoint_final.pth" ]; then sleep 3; kill -KILL -- -$pid; break; fi
      sleep 10
    done
    wait $pid || true
  fi
  held_out=$(mktemp -d)
  for case in $(python -c "import json, sys; print(' '.join(json.load(open(sys.argv[1]))[$fold]['val']))" "$data/splits_final.json"); do
    ln -s "$nnUNet_raw/Dataset027_ACDC/imagesTr/${case}_0000.nii.gz" "$held_out/"
  done
  rm -rf "$d/validation"
  nnUNetv2_predict -i "$held_out" -o "$d/validation" -d 27 -c 2d -tr $T -p $P -f $fold --disable_tta -step_size 0.5 -device cpu -npp 1 -nps 1
  nnUNetv2_evaluate_folder "$data/gt_segmentations" "$d/validation" -djfile "$segmenter/dataset.json" -pfile "$segmenter/plans.json" -np 1 --chill
  rm -rf "$held_out"
done
out=$here/benchmarks/classification
rm -rf "$nnUNet_results/Dataset027_ACDC/ShapeClassifier__labelsTr" "$nnUNet_results/Dataset027_ACDC/ShapeClassifier__${segmenter##*/}"
/usr/bin/time -f "shape classifier, references: %e s wall" \
  nnunet-fuse classify train -d 27 --features shape -f 0 1 2 3 4
nnunet-fuse classify evaluate -d 27 --features shape -o "$out/acdc_shape_references"
/usr/bin/time -f "shape classifier, predicted: %e s wall" \
  nnunet-fuse classify train -d 27 --features shape --segmentations "$segmenter" -f 0 1 2 3 4
nnunet-fuse classify evaluate -d 27 --features shape --segmentations "$segmenter" -o "$out/acdc_shape_predicted"
python - "$segmenter" <<'EOF'
import json, sys
from pathlib import Path
dice = [json.loads((Path(sys.argv[1]) / f"fold_{f}" / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"]
        for f in range(5)]
print("segmentation Dice (foreground mean) per fold:", " ".join(f"{d:.3f}" for d in dice))
EOF
