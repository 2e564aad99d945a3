#!/usr/bin/env bash
# Issue 30: does Fuse4Seg's learned fusion earn its place? Four arms on the same folds, plan (patch and batch) and
# budget: (a) nnU-Net's network fed all channels, (b) the same segmentation network fed the plain average of the
# rescaled modalities (no fusion learned: fuse4seg-average), (c) Fuse4Seg as shipped (first-order leader gradient),
# (d) Fuse4Seg with the unrolled leader gradient (fuse4seg-unrolled).
# usage: bash benchmarks/fuse4seg_ablation.sh WORKDIR DATA [BUDGET] [FOLDS] [METHODS]
#   DATA synthetic: the two-modality synthetic data of the tests (20 training cases, 12 x 32 x 32), 2d;
#   DATA brats: the 6 real BraTS 2013/2015 cases of ../shared/data (FLAIR, T1c; regions), 2d, for every arm at a
#        CPU-sized plan: nnU-Net's 2d plan resampled to SPACING mm in-plane (default 2: a 240 x 240 slice becomes
#        120 x 120, one PATCH-sized tile) with PATCH and BATCH below; nnU-Net's validation scores the predictions at
#        the scans' own 1 mm grid;
#   BUDGET default demo (250 iterations); FOLDS default "0 1 2 3 4" (nnU-Net's folds over the cases); METHODS default
#   the four arms; the search adds trainer variants on the same folds and plans (benchmarks/fuse4seg_variants), e.g.
#   fuse4seg-unrolled:nnUNetTrainerFuse4SegUnrolled_demo_lambda1 — their rows merge into the same report.
# Resumable: run the same command again (the report keeps finished folds). Report: WORKDIR/report_DATA_BUDGET
# (results.md); also the fused images and the per-region contrast of the validation cases of the first fold given
# (WORKDIR/case_DATA_BUDGET_foldK/TRAINER/fused/contrast.md).
set -euo pipefail
data=$2; budget=${3:-demo}; folds=${4:-0 1 2 3 4}; methods=${5:-nnunet,fuse4seg-average,fuse4seg,fuse4seg-unrolled}
source "$(dirname "$0")/workdir_env.sh" "$1"
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-1} nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_compile=false
PATCH=${PATCH:-128,128} BATCH=${BATCH:-2} SPACING=${SPACING:-2,2}
case $data in
  synthetic)
    id=993 name=Dataset993_TwoModal
    [ -d "$nnUNet_raw/$name" ] || python -c "from nnunet_fuse.datasets.synthetic import make_synthetic_dataset as m; \
m('$nnUNet_raw', 993, name='TwoModal', n_train=20, n_test=4, shape=(12, 32, 32), seed=3, channels=2)";;
  brats)
    id=138 name=Dataset138_BraTS2015
    [ -d "$nnUNet_raw/$name" ] || nnunet-fuse convert brats "$here/../shared/data/BraTS2015_FLAIR_T1c";;
  *) echo "DATA must be synthetic or brats, got '$data'" >&2; exit 2;;
esac
folder=$nnUNet_preprocessed/$name
if [ ! -f "$folder/nnUNetPlans.json" ]; then
  if [ "$data" = brats ]; then  # the CPU-sized 2d plan, preprocessed by nnU-Net at its spacing
    nnUNetv2_extract_fingerprint -d $id -np "$nnUNet_def_n_proc" && nnUNetv2_plan_experiment -d $id
    # shellcheck disable=SC2086
    python "$here/benchmarks/set_batch_and_patch.py" "$folder/nnUNetPlans.json" -c 2d --batch "$BATCH" \
      --patch ${PATCH//,/ } --spacing ${SPACING//,/ }
    nnUNetv2_preprocess -d $id -c 2d -np "$nnUNet_def_n_proc"
  else
    nnUNetv2_plan_and_preprocess -d $id -c 2d -np "$nnUNet_def_n_proc"
  fi
fi
# Fuse4Seg's plans with nnU-Net's batch and patch (the same input for every arm); written once, kept after
[ -f "$folder/nnUNetFuse4SegPlans.json" ] || nnunet-fuse plan -d $id --method fuse4seg -c 2d --keep-base-batch-and-patch
if [ "$data" = brats ]; then  # Fuse4Seg's plans at the same batch and patch (the architecture stays as planned)
  # shellcheck disable=SC2086
  python "$here/benchmarks/set_batch_and_patch.py" "$folder/nnUNetFuse4SegPlans.json" -c 2d --batch "$BATCH" \
    --patch ${PATCH//,/ }
fi
# one fold at a time: the report is written after each (it gathers the folds), so a machine lost half-way costs one
# fold at most; to go on elsewhere, copy the report folder into the new WORKDIR first
for fold in $folds; do
  nnunet-fuse reproduce -d $id -c 2d --methods "$methods" --folds "$fold" \
    --budget "$budget" -device cpu -np "$nnUNet_def_n_proc" -o "$work/report_${data}_$budget"
done
# the validation cases of the first fold given: their fused images from each learned fusion trained in this call (the
# arms and variants of METHODS; the folders are the script's own and rewritten: the cases' channels only, never
# another fold's cases), and each region's contrast
first=${folds%% *}
case_ids=$(python -c "import json; print(*json.load(open('$folder/splits_final.json'))[$first]['val'])")
inputs=$work/case_in_$data && rm -rf "$inputs" && mkdir -p "$inputs"
for case_id in $case_ids; do
  for f in "$nnUNet_raw/$name/imagesTr/${case_id}"_000?.nii.gz; do ln -sf "$f" "$inputs/"; done
done
# (reproduce's own names: each method of Fuse4Seg's plans and its trainer at this budget)
trainers=$(python -c "from nnunet_fuse.reproduce.runs import method_of, parse_methods
print(*[method_of(m).trainer('$budget') for m in parse_methods('$methods') if method_of(m).overlay == 'fuse4seg'])")
for trainer in $trainers; do
  out=$work/case_${data}_${budget}_fold$first/${trainer%_"$budget"} && rm -rf "$out"
  nnunet-fuse export-fused -i "$inputs" -o "$out/fused" -d $id -c 2d -f "$first" -tr "$trainer" \
    -p nnUNetFuse4SegPlans -device cpu --labels "$nnUNet_raw/$name/labelsTr"
done
