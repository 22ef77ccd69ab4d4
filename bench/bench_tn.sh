#!/usr/bin/env bash
# bench_tn.sh [BUILD]: the cost of the truncated-Newton pipeline (make bench-tn): one gradient, one
# Gauss-Newton product, one Hessian product and one CG iteration on the curves and MNIST
# autoencoders at m = 1000 and 5000 (bench/bench_tn.c), on the CPU and, when a GPU answers, on CUDA;
# then the share of an NGD iteration spent in the solve, from a short `natgrad net train
# --optimizer ngd --tn-timing 1` run. Writes bench/results/bench_tn.{md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
res=bench/results
mkdir -p "$res" runs
rm -f "$res/bench_tn.csv"
cpu=$(lscpu | sed -n 's/^Model name: *//p')
{
  echo "# Cost of the truncated-Newton pipeline (make bench-tn)"
  echo
  echo "Measured $(date +%F) on $(nproc) cores ($cpu); $("$build/natgrad" info 2>/dev/null | sed -n 's/^cpu backend: //p' | head -1)."
  echo "Means of 5 repetitions after a warm-up (CG: a 10-iteration solve with rtol 0, lambda 1); the batch is one chunk"
  echo "(the forward pass of the gradient is reused by the products). Pascanu & Bengio: a CG iteration of their"
  echo "pipeline costs about 2 gradients. sgemm: the rate of this process at the first layer's shape (d1 x d0 x m)."
  echo
} > "$res/bench_tn.md"
note=
for dev in cpu cuda; do
  if [ $dev = cuda ] && ! "$build/natgrad" info 2>/dev/null | grep -q "cuda devices: [1-9]"; then
    note="CUDA rows skipped: no CUDA device answers on this machine (the same command measures them on a GPU)."
    continue
  fi
  first=1
  for p in curves-autoencoder mnist-autoencoder; do
    if [ $first = 1 ] && [ $dev = cpu ]; then
      "$build/bench/bench_tn" --device $dev --preset $p --batch 1000,5000 --csv "$res/bench_tn.csv" >> "$res/bench_tn.md"
    else
      "$build/bench/bench_tn" --device $dev --preset $p --batch 1000,5000 --csv "$res/bench_tn.csv" | tail -n +3 >> "$res/bench_tn.md"
    fi
    first=0
  done
done
[ -n "$note" ] && printf '\n%s\n' "$note" >> "$res/bench_tn.md"
# the share of an NGD iteration in the solve (curves-like, m = 5000, 20 CG iterations, separate metric batch of 5000)
out=runs/bench-tn-ngd
"$build/natgrad" net train --data curves-like --preset curves-autoencoder --optimizer ngd --batch 5000 --chunk 5000 \
  --metric separate --metric-batch 5000 --lambda0 3 --steps 6 --log-every 1 --eval-n 1000 --tn-timing 1 --force --out $out 2>/dev/null
python3 - $out/train.csv >> "$res/bench_tn.md" <<'PY'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))[1:]  # the first update includes start-up
dt = [float(b["train_s"]) - float(a["train_s"]) for a, b in zip(r, r[1:])]
solve = [float(x["solve_s"]) for x in r[1:]]
search = [float(x["search_s"]) for x in r[1:]]
it = [float(x["cg_iters"]) for x in r[1:]]
m = lambda v: sum(v) / len(v)
print(f"\nNGD iteration (curves-like, m = 5000, metric: a separate batch of 5000, CG at most 20 iterations, updates 3-6): "
      f"{m(dt):.2f} s per update, of which the solve {m(solve):.2f} s ({100 * m(solve) / m(dt):.0f} %, {m(it):.1f} CG iterations, "
      f"each a Gauss-Newton product on the metric batch), the step and LM evaluation {m(search):.2f} s; the rest is the "
      "gradient, the metric batch's forward pass and the update.")
PY
cat "$res/bench_tn.md"
