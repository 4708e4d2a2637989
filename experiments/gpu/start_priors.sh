#!/usr/bin/env bash
# The start prior of a trained image run, measured as a user gets it: for each FORM, `walkback
# fit-prior` refits the top prior (start step K) to 10,000 training images heated by the run's
# own operator and saves it with the model, then `walkback evaluate` scores the chains that start
# from it with the protocol of `walkback compare` (2,000 samples, seed 0, FID E = 0 and after K
# more steps at T = 1, classes, bound on the first 500 test images with M = 1, no floor, bf16).
# FORM: `saved` (the prior learned in training: no refit), `diagonal`, `rank-R` (R principal
# directions, `--rank R`), `mix-C` (a mixture of C diagonal Gaussians, `--components C`).
# Each form's eval.json and sample grid go to OUT_DIR/FORM.json and OUT_DIR/FORM.png; the run's
# saved start prior is the last form's.
# N=SAMPLES (default 2000) and BOUND=POINTS (default 500) shrink a trial run.
# Usage: [N=..] [BOUND=..] bash experiments/gpu/start_priors.sh RUN_DIR DATA_ROOT FID_WEIGHTS OUT_DIR [FORMS]
#        (FORMS default: "saved diagonal rank-50 mix-10 mix-100")
set -euo pipefail
run=$1 root=$2 weights=$3 out=$4 forms=${5:-saved diagonal rank-50 mix-10 mix-100}
mkdir -p "$out"
k=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['schedule']['num_steps'])" \
  "$run/config.json")
for form in $forms; do
  case $form in
    saved) start=0 ;;
    diagonal) start=$k fit=(--rank 0) ;;
    rank-*) start=$k fit=(--rank "${form#rank-}") ;;
    mix-*) start=$k fit=(--components "${form#mix-}") ;;
    *) echo "unknown form $form" >&2; exit 2 ;;
  esac
  if [ "$start" != 0 ]; then
    walkback fit-prior --run-dir "$run" --start-step "$k" "${fit[@]}" --data-root "$root" \
      --overwrite
  fi
  walkback evaluate --run-dir "$run" --start-step "$start" --metrics fid,kid,classes,bound,chain \
    --num-samples "${N:-2000}" --chain-steps 0,K --bound-points "${BOUND:-500}" --num-paths 1 \
    --no-floor --amp bf16 --fid-weights "$weights" --data-root "$root" --overwrite --no-progress
  cp "$run/eval.json" "$out/$form.json"
  find "$run/figures" -name 'samples*.png' | head -1 | xargs -r -I{} cp {} "$out/$form.png"
done
