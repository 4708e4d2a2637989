#!/usr/bin/env bash
# The extra steps' temperature T_E on MNIST (docs/method.md, "Sampling"): train the `mnist`
# preset with train.temperature_jitter=true (its operator is trained between the schedule's
# temperatures too; without it a T_E off the schedule is untrained: on 2-D data such chains left
# the data, docs/RESULTS.md) for MINUTES (default 5) with seed SEED, then score the same chains
# (2,000, from one seed: identical up to K) after E = 0, K and 10K steps past K at T_E = 1, 1.02,
# 1.05, 1.1 and 1.5 (the schedule's T_2): FID, the smallest class share, how far the chains moved
# and how many changed class. The `mnist` preset's long chains drift at 5 minutes (FID x1.4 after
# 10K steps at T = 1, docs/RESULTS.md, "Long chains"); EDM's noise inflation (T_E = S_noise^2 in
# the 2017 form) is the candidate fix. About MINUTES + 5 minutes on one H200.
# Usage: [COPY_BACK=DIR] bash experiments/gpu/mnist_extra_temperature.sh OUT_DIR DATA_ROOT \
#          FID_WEIGHTS SEED [MINUTES]
set -euo pipefail
out=$1 root=$2 weights=$3 seed=$4 minutes=${5:-5}
run=$out/mnist-jitter-seed$seed
walkback train --preset mnist --run-dir "$run" --set "seed=$seed" --set "data.root=$root" \
  --set train.temperature_jitter=true --set "train.time_limit_s=$((minutes * 60))" \
  --set train.steps=1000000 --no-progress
for t in 1 1.02 1.05 1.1 1.5; do
  dest=$out/T_E=$t
  mkdir -p "$dest"
  cp -r "$run/config.json" "$run/model" "$dest/"
  [ -f "$run/metrics.jsonl" ] && cp "$run/metrics.jsonl" "$dest/"
  walkback evaluate --run-dir "$dest" --metrics fid,classes,chain --chain-steps 0,K,10K \
    --extra-temperature "$t" --num-samples 2000 --fid-weights "$weights" --data-root "$root" \
    --cache-dir "$out/cache" --amp bf16 --no-floor --no-progress
done
if [ -n "${COPY_BACK:-}" ]; then bash "$(dirname "$0")/copy_back.sh" "$run" "$COPY_BACK"; fi
