# Sourced by the benchmark scripts: `source "$(dirname "$0")/workdir_env.sh" WORKDIR`.
# Sets work (WORKDIR, absolute) and here (the checkout), puts nnUNet_raw/preprocessed/results below WORKDIR
# (created), makes the benchmarks' trainer variants findable (reproduce --methods METHOD:TRAINER) and activates the
# checkout's .venv (`make setup`).
work=$(realpath -m "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export nnUNet_raw=$work/nnUNet_raw nnUNet_preprocessed=$work/nnUNet_preprocessed nnUNet_results=$work/nnUNet_results
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
source "$here/.venv/bin/activate"
export nnUNet_extTrainer="${nnUNet_extTrainer:+$nnUNet_extTrainer:}$here/benchmarks/fuseunet_variants:$here/benchmarks/fuse4seg_variants:$here/benchmarks/hifuse_variants"
