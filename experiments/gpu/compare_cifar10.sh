#!/usr/bin/env bash
# CIFAR-10 (the lossy JPEG q75 copy: label every number so) at equal GPU minutes: VW
# (cifar10-tuned and the previous preset cifar10) against the DDPM (cifar10-diffusion), 10
# minutes each, 3 seeds (90 GPU minutes of training), models saved every 2 minutes.
# Usage: bash experiments/gpu/compare_cifar10.sh OUT_DIR DATA_ROOT FID_WEIGHTS [JOBS]
# With COPY_BACK=DIR (e.g. $OUT) OUT_DIR is then copied into DIR, files over 15 MiB in pieces
# (copy_back.sh says how to join them).
set -euo pipefail
out=$1 root=$2 weights=$3 jobs=${4:-1}
walkback compare --presets cifar10-tuned,cifar10,cifar10-diffusion --minutes 10 --seeds 0,1,2 \
  --save-at 2,4,6,8 --out-dir "$out" --set "data.root=$root" --data-root "$root" \
  --fid-weights "$weights" --num-samples 5000 --amp bf16 --jobs "$jobs" --no-progress
[ -z "${COPY_BACK:-}" ] || bash "$(dirname "$0")/copy_back.sh" "$out" "$COPY_BACK"
