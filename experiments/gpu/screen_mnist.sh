#!/usr/bin/env bash
# A screening of VW variants on MNIST at equal minibatches (docs/evaluation.md, "Variants and
# screenings"): the `mnist` preset and four variants, each with seeds 0-2, trained for STEPS
# minibatches each, JOBS arms at a time on GPUS GPUs (default: one after another), then scored:
# FID and KID of 2,000 samples (30 steps), FID after K more steps at T = 1, the smallest class
# share and the bound on 1,000 test images (M = 1).
#   top:       schedule.factor=1.3  (the heating tops out at T_K = 1.3^29, about 2,000, instead of
#              1.5^29, about 128,000: accumulated floor noise std about 9 instead of 62; on 2-D data
#              a lower top won at equal minibatches and minutes, docs/RESULTS.md, "Heating top")
#   floor:     model.min_var_at_1=1e-4  (the floor shrinks from 1e-4 at T = 1 to min_var at the top)
#   decoupled: train.objective=decoupled, variance_weight 0.1 (mean by squared error)
#   jitter:    train.temperature_jitter=true (each path heats at the schedule's temperatures moved
#              up by its own fraction of a step in log T: the operator is trained at every T)
# (No arm for the data: data.num_train sets the 2-D data's size only; the image presets train on
# the whole training split, 60,000 MNIST images. The denoising form, model.mean_scale=denoise, is
# not an arm: it failed on 2-D data under VW's own heating, docs/RESULTS.md, "Toward diffusion
# quality".)
# The MNIST U-Net keeps a GPU busy: arms sharing one GPU train no faster together than one alone
# (docs/RESULTS.md, "What did not work", ran this with JOBS=12 GPUS=1).
# Usage: [JOBS=N GPUS=G] bash experiments/gpu/screen_mnist.sh OUT_DIR DATA_ROOT FID_WEIGHTS \
#          [STEPS] [CAP_SECONDS]
# CAP_SECONDS stops an arm that has not finished its STEPS by then (its steps are in the table).
set -euo pipefail
out=$1 root=$2 weights=$3 steps=${4:-40} cap=${5:-240}
jobs=${JOBS:-1}
walkback compare --presets mnist \
  --variant top mnist schedule.factor=1.3 \
  --variant floor mnist model.min_var_at_1=1e-4 \
  --variant decoupled mnist train.objective=decoupled train.variance_weight=0.1 \
  --variant jitter mnist train.temperature_jitter=true \
  --steps "$steps" --seeds 0,1,2 --jobs "$jobs" --gpus "${GPUS:-$jobs}" --out-dir "$out" \
  --set "data.root=$root" --set "train.time_limit_s=$cap" --data-root "$root" \
  --fid-weights "$weights" --num-samples 2000 --chain-steps 0,K --amp bf16 --no-progress
