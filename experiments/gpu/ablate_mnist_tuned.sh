#!/usr/bin/env bash
# Each change of `mnist-tuned` turned off in turn, at equal GPU minutes (docs/RESULTS.md, "MNIST,
# 1.5 minutes each"; the `mnist` preset with each change turned on: screen_mnist.sh):
#   no-top:    schedule.factor=1.5      (T_K = 1.5^24, about 17,000, instead of 1.3^24, about 545)
#   no-n1:     schedule.n1=0            (30 geometric steps: T_K = 1.3^29, about 2,000)
#   no-floor:  model.min_var_at_1=0     (the floor 0.01 at every T)
#   no-jitter: train.temperature_jitter=false
#   no-mix:    sample.start_step=0 sample.start_components=0  (the chains start from the prior
#              learned in training, as every arm of the table in docs/RESULTS.md does)
# and one change turned on:
#   input-noise: train.input_noise=0.3  (the walk-back input perturbed by 0.3 heating noise std,
#              docs/method.md, "Input perturbation"; the best of 0, 0.3 and 1 on 2-D data)
# MINUTES (default 1.5) each, ONE seed per call; scored as mnist_tuned.sh scores (2,000 samples,
# 30 steps, after K more steps, the bound on 500 test images). Seven arms of 1.5 minutes with
# their scoring outlast one 10-minute call: with TIME_LIMIT=S the comparison stops then, and the
# same command on the same machine continues it (each arm resumes from its checkpoint with its
# training clock; scored arms are kept).
# PRESETS=LIST (default mnist-tuned) names the arms besides the variants: with
# PRESETS=mnist-tuned,mnist-diffusion,mnist one call also gives mnist_tuned.sh's table for that seed.
# With PACK=DIR the tables, scores and logs are packed into DIR/ablate_seedS.tar.partNN
# (pack_scores.sh), with the EMA weights of the arms named in KEEP_WEIGHTS=LIST (default none).
# Usage: [PACK=DIR] [TIME_LIMIT=S] [PRESETS=LIST] [KEEP_WEIGHTS=LIST] bash experiments/gpu/ablate_mnist_tuned.sh OUT_DIR DATA_ROOT \
#          FID_WEIGHTS SEED [MINUTES]
set -euo pipefail
out=$1 root=$2 weights=$3 seed=$4 minutes=${5:-1.5}
timeout "${TIME_LIMIT:-0}" walkback compare --presets "${PRESETS:-mnist-tuned}" \
  --variant input-noise mnist-tuned train.input_noise=0.3 \
  --variant no-top mnist-tuned schedule.factor=1.5 \
  --variant no-n1 mnist-tuned schedule.n1=0 \
  --variant no-floor mnist-tuned model.min_var_at_1=0 \
  --variant no-jitter mnist-tuned train.temperature_jitter=false \
  --variant no-mix mnist-tuned sample.start_step=0 sample.start_components=0 \
  --minutes "$minutes" --save-at "$minutes" --seeds "$seed" --out-dir "$out" \
  --set "data.root=$root" --data-root "$root" --fid-weights "$weights" --num-samples 2000 \
  --chain-steps 0,K --bound-points 500 --amp bf16 --no-progress || status=$?
[ -z "${PACK:-}" ] || bash "$(dirname "$0")/pack_scores.sh" "$out" "$PACK" "ablate_seed$seed" "${KEEP_WEIGHTS:-}"
exit "${status:-0}"
