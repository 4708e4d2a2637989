#!/usr/bin/env bash
# Makes the 2-D table of docs/RESULTS.md: every toy preset with the paper loss, and the two
# ablations (objective=released: the 2017 code's loss, SPEC D1; heating=fixed: a parameter-free
# Gaussian diffusion as the walk-away path) plus the online update mode, on the CPU.
# Usage: bash experiments/toy_ablations.sh [RUNS_DIR]   then: python experiments/summarize_toy.py RUNS_DIR
set -euo pipefail
runs=${1:-runs/toy}
wb=${WALKBACK:-walkback}
train_eval() {  # name preset [--set ...]
  local name=$1 preset=$2; shift 2
  $wb train --preset "$preset" --run-dir "$runs/$name" --overwrite --no-progress "$@"
  $wb evaluate --run-dir "$runs/$name" --no-progress
}
for preset in mog spiral; do
  train_eval "$preset-paper" "$preset"
  train_eval "$preset-released" "$preset" --set train.objective=released
  train_eval "$preset-fixed" "$preset" --set train.heating=fixed
  train_eval "$preset-online" "$preset" --set train.mode=online
done
for preset in circle ring8 checkerboard; do
  train_eval "$preset-paper" "$preset"
done
