#!/usr/bin/env bash
# Profiles of the reference plans on a CUDA GPU at the plans' own batch and patch (AMP, as nnU-Net trains), every
# method beside nnU-Net's network (Fuse4Seg on the 2-channel ACDC-like plan and on BraTS-like).
# usage: bash benchmarks/profile_gpu.sh OUTDIR [--compile]
# Without --compile it also times FuseUNet's eager fused solve against autograd's composition (decoder_speed.py).
set -euo pipefail
out=${1:?usage: profile_gpu.sh OUTDIR [--compile]}; shift
plans=benchmarks/plans
nf() { python3 -m nnunet_fuse.cli "$@"; }
timing=(-device cuda --warmup 3 --repeats 10 --plot -o "$out")
nf profile --plans-file $plans/Dataset027_ACDC/nnUNetPlans.json -c 2d "${timing[@]}" --inference-repeats 3 \
  --methods fuseunet,hifuse,hifuse-fuseunet "$@"
nf profile --plans-file $plans/Dataset027_ACDC_2channels/nnUNetPlans.json -c 2d "${timing[@]}" --no-inference \
  --methods fuse4seg "$@"
nf profile --plans-file $plans/Dataset137_BraTSlike/nnUNetPlans.json -c 3d_fullres "${timing[@]}" \
  --inference-repeats 3 --methods fuseunet,fuse4seg,hifuse,hifuse-fuseunet "$@"
nf profile --plans-file $plans/Dataset220_KiTSlike/nnUNetPlans.json -c 3d_fullres "${timing[@]}" --no-inference "$@"
if [ $# -eq 0 ]; then
  speed() { python3 benchmarks/decoder_speed.py "$@" -device cuda --repeats 20; }
  speed $plans/Dataset027_ACDC/nnUNetPlans.json -c 2d | tee "$out/decoder_speed_cuda.txt"
  speed $plans/Dataset137_BraTSlike/nnUNetPlans.json -c 3d_fullres | tee -a "$out/decoder_speed_cuda.txt"
fi
