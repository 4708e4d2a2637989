#!/usr/bin/env bash
# Training throughput on one GPU from short runs: `mnist-tuned` (its start fit off), the same with
# `train.graph_heating=true`, and the DDPM (`mnist-diffusion`), each `walkback train` alone for
# SECONDS (default 25, the warm-up included), logging every 2 minibatches. The rate is taken
# from the 4th minibatch to the last (after cuDNN's autotuning and the graph capture):
# transitions per second for VW, images per second for the DDPM. BEFORE=DIR adds an arm run
# from another copy of the package's source (e.g. `git archive COMMIT src | tar -x -C DIR`, then
# BEFORE=DIR/src), on the same card.
# Usage: [BEFORE=SRC] bash experiments/gpu/throughput.sh DATA_ROOT [SECONDS]
set -uo pipefail
root=$1 seconds=${2:-25}
runs=$(mktemp -d)
rate() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
a, b = rows[1], rows[-1]
n = b["transitions"] * (b["step"] - a["step"])
print(f"{n / (b['train_seconds'] - a['train_seconds']):.0f} per s from minibatch {a['step']} to "
      f"{b['step']} (whole-run average {b['transitions_per_s']:.0f})", flush=True)
PY
}
arm() {
  local name=$1 src=$2; shift 2
  PYTHONPATH=$src python3 -m walkback.cli train --preset "$@" --run-dir "$runs/$name" \
    --set "data.root=$root" --set "train.time_limit_s=$seconds" --set train.log_every=2 \
    --set train.checkpoint_every=100000 --set sample.start_step=0 \
    --set sample.start_components=0 > "$runs/$name.log" 2>&1 || {
      echo "$name failed:"; tail -5 "$runs/$name.log"; return; }
  echo -n "$name: "; rate "$runs/$name/metrics.jsonl"
}
nvidia-smi --query-gpu=name --format=csv,noheader
[ -z "${BEFORE:-}" ] || arm before "$BEFORE" mnist-tuned
arm mnist-tuned src mnist-tuned
arm graph-heating src mnist-tuned --set train.graph_heating=true
arm mnist-diffusion src mnist-diffusion
