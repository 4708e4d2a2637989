#!/usr/bin/env bash
# Makes the 2-D table of docs/RESULTS.md: every toy preset with the paper loss, and the two
# ablations (objective=released: the 2017 code's loss; heating=fixed: a parameter-free Gaussian
# diffusion as the walk-away path, with the operator's noise scaled by T as in the 2017 comparison,
# model.noise_scale=temperature) plus the online update mode, on the CPU. The table scores the
# chain states (--report states).
# Usage: bash experiments/toy_ablations.sh [RUNS_DIR]   then: python experiments/summarize_toy.py RUNS_DIR
set -euo pipefail
runs=${1:-runs/toy}
wb=${WALKBACK:-walkback}
train_eval() {  # name preset [--set ...]
  local name=$1 preset=$2; shift 2
  $wb train --preset "$preset" --run-dir "$runs/$name" --overwrite --no-progress "$@"
  $wb evaluate --run-dir "$runs/$name" --no-progress --report states
}
for preset in mog spiral; do
  train_eval "$preset-paper" "$preset"
  train_eval "$preset-released" "$preset" --set train.objective=released
  train_eval "$preset-fixed" "$preset" --set train.heating=fixed --set model.noise_scale=temperature
  train_eval "$preset-online" "$preset" --set train.mode=online
done
for preset in circle ring8 checkerboard; do
  train_eval "$preset-paper" "$preset"
done
