#!/usr/bin/env bash
# Issue 17: validation Dice against iterations, nnU-Net's network vs FuseUNet (paper's setting, and with deep
# supervision), MSD Hippocampus 3d_fullres (all 200 training cases, nnU-Net's 5-fold split), `long` budget (2000
# iterations, a snapshot every 500), on the CPU.
# usage: bash benchmarks/learning_curves_hippocampus.sh WORKDIR "FOLDS" [METHODS]
#        (e.g. "0" then "0 1"; default methods fuseunet,nnunet,fuseunet-ds)
# Hours per training on 2 cores: run it in the background; the same command resumes an interrupted run (finished
# trainings and validated snapshots are kept). The report goes to WORKDIR/report_long (results.md,
# learning_curves.png).
set -euo pipefail
folds=${2:-0}; methods=${3:-fuseunet,nnunet,fuseunet-ds}
source "$(dirname "$0")/workdir_env.sh" "$1"
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-1} nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_compile=false
[ -d "$nnUNet_raw/Dataset004_Hippocampus" ] || nnunet-fuse convert msd "$here/../shared/data/Task04_Hippocampus"
# shellcheck disable=SC2086
nnunet-fuse reproduce -d 4 -c 3d_fullres --methods "$methods" --folds $folds --budget long --curve -device cpu \
  -np "$nnUNet_def_n_proc" -o "$work/report_long"
