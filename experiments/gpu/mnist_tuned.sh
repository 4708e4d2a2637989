#!/usr/bin/env bash
# The tuned recipe of the 2-D presets (`mog-tuned`, `spiral-tuned`: docs/RESULTS.md, "The tuned
# presets") on MNIST at equal GPU minutes, against the `mnist` preset and the DDPM: the arm
# `tuned` is `mnist` with a lower heating top (schedule.factor=1.3), 5 steps at T = 1 first
# (schedule.n1=5, so T_K = 1.3^24, about 545), the floor shrinking to 1e-4 at T = 1
# (model.min_var_at_1) and jittered temperatures (train.temperature_jitter): the preset
# `mnist-tuned` less its mixture start prior (`sample.start_step`, `sample.start_components`,
# measured by mixture_start.sh; tests/test_config.py checks the rest). MINUTES (default 2)
# each, ONE seed per call, so that a seed's three arms train on the same machine in the same call;
# run it for seeds 0, 1 and 2 and read the three tables side by side.
# 2,000 samples per FID (30 steps) and after K more steps at T = 1, the smallest class share, the
# bound on 500 test images (M = 1).
# With PACK=DIR the tables, every arm's scores and metrics and the tuned arm's EMA weights are
# packed into DIR/mnist_tuned_seedS.tar.partNN (pack_scores.sh).
# TIME_LIMIT=SECONDS stops the comparison then (the arms scored by then are packed); the same
# command run again on the same machine continues it: each arm resumes from its last checkpoint
# with its training clock, and scored arms are kept. So MINUTES=5 (15 minutes of training) fits
# calls of 10 minutes.
# PRESETS=LIST (default mnist,mnist-diffusion) names the other arms: PRESETS=mnist-diffusion
# leaves the `mnist` arm out (the tuned arm against the DDPM alone). CHAIN_STEPS=LIST (default
# 0,K) the extra T = 1 steps scored (0,K,10K adds 10 K more).
# Usage: [PACK=DIR] [TIME_LIMIT=S] [PRESETS=LIST] [CHAIN_STEPS=LIST] bash experiments/gpu/mnist_tuned.sh OUT_DIR DATA_ROOT FID_WEIGHTS SEED [MINUTES]
set -euo pipefail
out=$1 root=$2 weights=$3 seed=$4 minutes=${5:-2}
timeout "${TIME_LIMIT:-0}" walkback compare --presets "${PRESETS:-mnist,mnist-diffusion}" \
  --variant tuned mnist schedule.factor=1.3 schedule.n1=5 model.min_var_at_1=1e-4 \
    train.temperature_jitter=true \
  --minutes "$minutes" --save-at "$minutes" --seeds "$seed" --out-dir "$out" \
  --set "data.root=$root" --data-root "$root" --fid-weights "$weights" --num-samples 2000 \
  --chain-steps "${CHAIN_STEPS:-0,K}" --bound-points 500 --amp bf16 --no-progress || status=$?
[ -z "${PACK:-}" ] || bash "$(dirname "$0")/pack_scores.sh" "$out" "$PACK" "mnist_tuned_seed$seed" tuned
exit "${status:-0}"
