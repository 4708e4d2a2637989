# CIFAR-10 (JPEG q75 copy) U-Net preset on a GPU machine, part 1 of 2: train for SECONDS and
# leave the run in runs/cifar10 for part 2 on the same machine. The train and test zips
# (62 MB) and the FID weights (37 MB packed) do not fit into one 64 MiB transfer together, so
# training and evaluation are two calls on one warm machine.
# Usage (repository root): bash experiments/gpu/cifar10_train.sh DATA_DIR SECONDS
# With COPY_BACK=DIR (e.g. $OUT) the run is also copied into DIR, files over 15 MiB in pieces
# (copy_back.sh says how to join them); runs/cifar10 stays whole for part 2.
D=${1:?data folder with cifar10/cifar10_jpeg_q75_{train,test}.zip}; S=${2:-500}
export PYTHONPATH=src
python3 -m walkback train --preset cifar10 --run-dir runs/cifar10 --overwrite --set data.root=$D \
  --set train.time_limit_s=$S --set train.steps=100000 --set train.checkpoint_every=100000 --no-progress
tail -n 1 runs/cifar10/metrics.jsonl
[ -z "${COPY_BACK:-}" ] || bash "$(dirname "$0")/copy_back.sh" runs/cifar10 "$COPY_BACK"
