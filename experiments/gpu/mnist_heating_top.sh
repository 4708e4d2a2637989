#!/usr/bin/env bash
# The lower heating top on MNIST against the `mnist` preset and the DDPM, at equal GPU minutes
# (docs/method.md, "Heating top"; on 2-D data: docs/RESULTS.md, "Heating top"): `mnist`, the
# `top` variant (schedule.factor=1.3: T_K about 2,000 instead of 128,000) and `mnist-diffusion`,
# 2 minutes each, ONE seed per call, so that each seed's three arms train on the same machine in
# the same call (about 6 minutes of training and 2-3 of scoring on one H200). Run it for seeds
# 0, 1 and 2; `walkback compare` tables of the three calls are then read side by side.
# 5,000 samples per FID (30 steps), FID after K more steps at T = 1, the smallest class share, the
# bound on 500 test images (M = 1).
# Usage: bash experiments/gpu/mnist_heating_top.sh OUT_DIR DATA_ROOT FID_WEIGHTS SEED
set -euo pipefail
out=$1 root=$2 weights=$3 seed=$4
walkback compare --presets mnist,mnist-diffusion --variant top mnist schedule.factor=1.3 \
  --minutes 2 --save-at 2 --seeds "$seed" --out-dir "$out" --set "data.root=$root" \
  --data-root "$root" --fid-weights "$weights" --num-samples 5000 --chain-steps 0,K \
  --bound-points 500 --amp bf16 --no-progress
