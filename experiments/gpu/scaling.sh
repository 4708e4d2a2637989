#!/usr/bin/env bash
# Training throughput on 1 and N GPUs of one machine at the same per-GPU minibatch (torchrun,
# DistributedDataParallel; README "Several GPUs"): for each preset, a run of STEPS minibatches
# with 1 process (global batch B) and one with N processes (global batch N x B), both with
# train.noise=streams; prints updates/s, images/s and transitions/s from each run's last
# metrics.jsonl record and the scaling efficiency (N-GPU images/s / (N x 1-GPU images/s)).
# Then FID after the same number of training images: the 1-GPU run trained N x STEPS minibatches
# of B against the N-GPU run's STEPS minibatches of N x B (5,000 samples, 30 steps).
# Usage: bash experiments/gpu/scaling.sh OUT_DIR DATA_ROOT FID_WEIGHTS [N] [STEPS] [PRESETS]
set -euo pipefail
out=$1 root=$2 weights=$3 n=${4:-2} steps=${5:-300} presets=${6:-mnist,cifar10}
mkdir -p "$out"
rate() {  # run_dir -> "updates/s images/s transitions/s" of the last record
  python - "$1" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")][-1]
print(f"{r['updates_per_s']:.2f} {r['images_per_s']:.1f} {r['transitions_per_s']:.1f}")
EOF
}
for preset in ${presets//,/ }; do
  b=$(walkback show-config --preset "$preset" | python -c "import json,sys; print(json.load(sys.stdin)['train']['batch_size'])")
  common=(--preset "$preset" --set "data.root=$root" --set train.noise=streams --no-progress --overwrite)
  walkback train "${common[@]}" --run-dir "$out/$preset-1gpu" --set "train.steps=$steps"
  torchrun --standalone --nproc_per_node="$n" -m walkback train "${common[@]}" \
    --run-dir "$out/$preset-${n}gpu" --set "train.steps=$steps" --set "train.batch_size=$((n * b))"
  read -r u1 i1 t1 < <(rate "$out/$preset-1gpu")
  read -r un in tn < <(rate "$out/$preset-${n}gpu")
  echo "$preset: 1 GPU $u1 updates/s, $i1 images/s, $t1 transitions/s; $n GPUs $un updates/s," \
       "$in images/s, $tn transitions/s; efficiency $(python -c "print(f'{$in / ($n * $i1):.2f}')")" |
    tee -a "$out/scaling.txt"
  # the same training images: 1 GPU for n x steps minibatches of b
  walkback train "${common[@]}" --run-dir "$out/$preset-1gpu-long" --set "train.steps=$((n * steps))"
  for run in "$preset-1gpu-long" "$preset-${n}gpu"; do
    walkback evaluate --run-dir "$out/$run" --metrics fid --num-samples 5000 --fid-weights "$weights" \
      --no-floor --no-progress --overwrite | tee -a "$out/scaling.txt"
  done
done
[ -z "${COPY_BACK:-}" ] || bash "$(dirname "$0")/copy_back.sh" "$out" "$COPY_BACK"
