#!/usr/bin/env bash
# MNIST at equal GPU minutes (docs/RESULTS.md, "Baselines"): VW (mnist-tuned and the previous
# preset mnist), the 2017 architecture (mnist-paper), the DDPM (mnist-diffusion) and the
# fixed-diffusion arm (mnist-fixed), 5 minutes each, 3 seeds (75 GPU minutes of training),
# models saved after 1-4 minutes; 5,000 samples per FID, the bound on 1,000 test images.
# With JOBS > 1 the arms train JOBS at a time, one per GPU (a machine of JOBS GPUs).
# Usage: bash experiments/gpu/compare_mnist.sh OUT_DIR DATA_ROOT FID_WEIGHTS [JOBS]
# With COPY_BACK=DIR (e.g. $OUT) OUT_DIR is then copied into DIR, files over 15 MiB in pieces
# (copy_back.sh says how to join them).
set -euo pipefail
out=$1 root=$2 weights=$3 jobs=${4:-1}
walkback compare --presets mnist-tuned,mnist,mnist-paper,mnist-diffusion,mnist-fixed --minutes 5 \
  --seeds 0,1,2 --save-at 1,2,3,4 --out-dir "$out" --set "data.root=$root" --data-root "$root" \
  --fid-weights "$weights" --num-samples 5000 --amp bf16 --jobs "$jobs" --no-progress
[ -z "${COPY_BACK:-}" ] || bash "$(dirname "$0")/copy_back.sh" "$out" "$COPY_BACK"
