#!/usr/bin/env bash
# The mixture start prior of `mnist-tuned` on MNIST, paired: one model per seed, trained MINUTES
# (default 5) by `walkback compare` as the arm `mix` (the preset, its two start keys spelled
# out: `sample.start_step=30 sample.start_components=10`), so that at the end of training a
# mixture of 10 diagonal Gaussians is fitted to 10,000 training images heated to the top and
# saved with the model, and compare scores the chains that start from it (2,000 samples, FID
# E = 0 and after K more steps at T = 1, classes, the bound on 500 test images, bf16); then the
# same model's chains from the prior learned in training, scored by start_priors.sh with the
# same protocol, and, while the call has time, from a single diagonal Gaussian refitted to the
# same heated images.
# OUT_DIR/scores/{mix,saved,diagonal}.{json,png} hold the three evaluations and sample grids
# (mix_prior.safetensors the fitted mixture); with PACK=DIR the scores, figures and EMA weights
# are packed into DIR (pack_scores.sh pieces).
# N=SAMPLES and BOUND=POINTS shrink a trial run (start_priors.sh's too).
# Usage: [PACK=DIR] [N=..] [BOUND=..] bash experiments/gpu/mixture_start.sh OUT_DIR DATA_ROOT FID_WEIGHTS SEED [MINUTES]
set -euo pipefail
out=$1 root=$2 weights=$3 seed=$4 minutes=${5:-5}
here=$(dirname "$0")
start=$SECONDS
walkback compare --variant mix mnist-tuned sample.start_step=30 sample.start_components=10 \
  --minutes "$minutes" --save-at "$minutes" --seeds "$seed" --out-dir "$out" \
  --set "data.root=$root" --data-root "$root" --fid-weights "$weights" --num-samples "${N:-2000}" \
  --chain-steps 0,K --bound-points "${BOUND:-500}" --amp bf16 --no-progress
run=$out/mix/seed$seed
mkdir -p "$out/scores"
cp "$run/eval.json" "$out/scores/mix.json"
cp "$run/figures/samples.png" "$out/scores/mix.png"  # the evaluations below replace figures/
cp "$run/model/start_prior.safetensors" "$out/scores/mix_prior.safetensors"
forms=saved
# a refit and its evaluation take about as long as the evaluation above
[ $((SECONDS - start)) -gt 400 ] || forms="saved diagonal"
bash "$here/start_priors.sh" "$run" "$root" "$weights" "$out/scores" "$forms"
[ -z "${PACK:-}" ] || bash "$here/pack_scores.sh" "$out" "$PACK" "mixture_seed$seed" mix
