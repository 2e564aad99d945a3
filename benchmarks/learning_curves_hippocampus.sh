#!/usr/bin/env bash
# Issues 17 and 29: validation Dice against iterations, nnU-Net's network vs FuseUNet (paper's setting, and with deep
# supervision) — and HiFuse — on MSD Hippocampus 3d_fullres, `long` budget (2000 iterations, a snapshot validated
# every 500), on the CPU.
# usage: bash benchmarks/learning_curves_hippocampus.sh WORKDIR "FOLDS" [METHODS] [TRAIN_CASES]
#        FOLDS: nnU-Net's folds (0-4 of its 5-fold split of the 200 cases in ../shared/data); METHODS default
#        nnunet,fuseunet,fuseunet-ds (also hifuse, hifuse-fuseunet); TRAIN_CASES (e.g. 40): train each fold on a fixed
#        subset of that many of its training cases instead of all 160, validated on the fold's full validation part
#        (40 cases) — the same subset for every method — at batch 2 for every method (what nnU-Net plans for a
#        40-case dataset, its batch covering at most 5 % of the dataset's voxels; its batch 7 for the 200 cases costs
#        about 4x per iteration). The subsets are extra folds of splits_final.json: fold 5 + k is fold k's subset,
#        so the report's fold 5 is fold 0 on TRAIN_CASES cases, fold 6 is fold 1.
# Hours per training on 2 cores: run it in the background; the same command resumes an interrupted run (finished
# trainings and validated snapshots are kept). The report goes to WORKDIR/report_long (full folds) or
# WORKDIR/report_long_train<N> (results.md, learning_curves.png).
set -euo pipefail
folds=${2:-0}; methods=${3:-nnunet,fuseunet,fuseunet-ds}; train_cases=${4:-}
source "$(dirname "$0")/workdir_env.sh" "$1"
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-1} nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_compile=false
[ -d "$nnUNet_raw/Dataset004_Hippocampus" ] || nnunet-fuse convert msd "$here/../shared/data/Task04_Hippocampus"
report=$work/report_long
if [ -n "$train_cases" ]; then
  report=$work/report_long_train$train_cases
  data=$nnUNet_preprocessed/Dataset004_Hippocampus
  [ -f "$data/nnUNetPlans.json" ] || nnUNetv2_plan_and_preprocess -d 4 -c 3d_fullres -np "$nnUNet_def_n_proc"
  # every method's plans at batch 2 (written once: trained models depend on them)
  for variant in fuseunet:FuseUNet hifuse:HiFuse hifuse-fuseunet:HiFuseFuseUNet; do
    [ -f "$data/nnUNet${variant#*:}Plans.json" ] || nnunet-fuse plan -d 4 --method "${variant%%:*}" -c 3d_fullres
  done
  python "$here/benchmarks/set_batch_and_patch.py" "$data"/nnUNet*Plans.json -c 3d_fullres --batch 2
  python - "$data" "$nnUNet_raw/Dataset004_Hippocampus/labelsTr" "$train_cases" <<'EOF'
import json, random, sys
from pathlib import Path
from nnunet_fuse.splits import ensure_split_file
folder, labels, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
splits_file = folder / "splits_final.json"
cases = [p.name[:-len(".nii.gz")] for p in labels.glob("*.nii.gz")]
ensure_split_file(splits_file, cases, range(5))  # nnU-Net's own 5 folds (one case per patient), where missing
splits = json.loads(splits_file.read_text())
subsets = [{"train": sorted(random.Random(k).sample(splits[k]["train"], n)), "val": splits[k]["val"]} for k in range(5)]
if splits[5:] != subsets:
    if len(splits) > 5:
        sys.exit(f"{splits_file} already has subset folds 5-9 of another size; use another WORKDIR")
    splits_file.write_text(json.dumps(splits[:5] + subsets, indent=2))
    print(f"{splits_file}: folds 5-9 = folds 0-4 trained on {n} of their cases")
EOF
  folds=$(for f in $folds; do echo $((f + 5)); done)
fi
# shellcheck disable=SC2086
nnunet-fuse reproduce -d 4 -c 3d_fullres --methods "$methods" --folds $folds --budget long --curve -device cpu \
  -np "$nnUNet_def_n_proc" -o "$report"
