#!/usr/bin/env bash
# A screening of VW variants on MNIST at equal minibatches (docs/RESULTS.md, "MNIST variants at
# equal minibatches"): the `mnist` preset and three variants, each with seeds 0-2, all twelve arms
# training at once as separate processes on one GPU (only their updates are compared, not their
# minutes), then scored one after the other: FID and KID of 2,000 samples (30 steps), FID after
# K more steps at T = 1, the smallest class share and the bound on 1,000 test images (M = 1).
# First, for the record, the two presets' throughput alone on the GPU (RATE_SECONDS each).
#   floor:     model.min_var_at_1=1e-4  (the floor shrinks from 1e-4 at T = 1 to min_var at the top)
#   decoupled: train.objective=decoupled, variance_weight 0.1 (mean by squared error)
#   all-data:  data.num_train=60000 (the whole training split instead of 20,000 images)
# Usage: bash experiments/gpu/screen_mnist.sh OUT_DIR DATA_ROOT FID_WEIGHTS [STEPS] [CAP_SECONDS]
# CAP_SECONDS stops an arm that has not finished its STEPS by then (its steps are in the table).
set -euo pipefail
out=$1 root=$2 weights=$3 steps=${4:-40} cap=${5:-240}
mkdir -p "$out"
export OMP_NUM_THREADS=1
for preset in mnist mnist-diffusion; do
  walkback train --preset "$preset" --run-dir "$out/alone-$preset" --set "data.root=$root" \
    --set train.steps=1000000 --set "train.time_limit_s=${RATE_SECONDS:-40}" \
    --set train.checkpoint_every=1000000 --no-progress --overwrite >"$out/alone-$preset.log" 2>&1
  tail -n 1 "$out/alone-$preset/metrics.jsonl" >>"$out/alone-rates.jsonl"
done
walkback compare --presets mnist \
  --variant floor mnist model.min_var_at_1=1e-4 \
  --variant decoupled mnist train.objective=decoupled train.variance_weight=0.1 \
  --variant all-data mnist data.num_train=60000 \
  --steps "$steps" --seeds 0,1,2 --jobs 12 --gpus 1 --out-dir "$out/screen" \
  --set "data.root=$root" --set "train.time_limit_s=$cap" --data-root "$root" \
  --fid-weights "$weights" --num-samples 2000 --chain-steps 0,K --amp bf16 --no-progress
