# CIFAR-10 part 2 of 2 (see cifar10_train.sh): FID/KID of 10k chains (last step's means) against
# the 50k train images, the long chain, a --start-step 20 run, then the bound, for the run part 1 left on this machine.
# Usage: bash experiments/gpu/cifar10_evaluate.sh DATA_DIR FID_WEIGHTS [SECONDS_LEFT]
# With COPY_BACK=DIR (e.g. $OUT) the evaluated run is then copied into DIR, files over 15 MiB in
# pieces (copy_back.sh says how to join them).
D=${1:?data folder}; W=${2:?FID weights (.npz)}; LEFT=${3:-560}
test -f runs/cifar10/config.json || { echo "runs/cifar10 is not on this machine"; exit 3; }
export PYTHONPATH=src
EV="--fid-weights $W --data-root $D --cache-dir /tmp/cache --amp bf16 --device cuda --no-progress --batch-size 2000 --overwrite"
T0=$(date +%s)
timeout 380 python3 -m walkback evaluate --run-dir runs/cifar10 --metrics fid,kid,chain \
  --chain-steps 0,K,10K --num-samples 10000 --report samples $EV
cp runs/cifar10/eval.json runs/cifar10/eval_main.json
# chains that start from a Gaussian fit to train images heated 20 steps, then 10 steps at T = 1
timeout 120 python3 -m walkback evaluate --run-dir runs/cifar10 --start-step 20 --metrics fid,kid,chain \
  --chain-steps 0,10 --num-samples 10000 --report samples $EV
cp runs/cifar10/eval.json runs/cifar10/eval_start20.json
timeout $(( LEFT - ($(date +%s) - T0) )) python3 -m walkback evaluate --run-dir runs/cifar10 \
  --metrics bound --num-paths 16 --bound-points 500 $EV
[ -z "${COPY_BACK:-}" ] || bash "$(dirname "$0")/copy_back.sh" runs/cifar10 "$COPY_BACK"
