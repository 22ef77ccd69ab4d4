#!/usr/bin/env bash
# prong_figure2.sh [ARGS...]: Desjardins et al. (2015), Figure 2 (make prong-figure2): the exact Fisher block
# of the middle layer of a 100-20-20-10 tanh MLP on our 10x10 area-averaged MNIST before and after PRONG's
# first reparametrisation (image), and its condition number during training as a % of the initial value
# for SGD, RMSprop, batch norm and PRONG (bench/prong_figure2.c; ARGS go to it: --iters, --every, --T,
# --eps, --fisher-n, --n, --lr). Writes bench/results/prong_figure2.{md,csv,png} and _fisher.png.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=bench/results/prong_figure2
mkdir -p bench/results
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist >&2
make --no-print-directory build/bench/prong_figure2 >&2
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
start=$(date +%s)
build/bench/prong_figure2 --out "$prefix" "$@" 2> "$prefix.log"
secs=$(( $(date +%s) - start ))
gnuplot <<GP
set terminal pngcairo size 900,600 font ',10'
set output '$prefix.png'
set datafile separator ','
set logscale y
set grid
set xlabel 'updates'
set ylabel 'condition number of the layer-2 Fisher block, % of initial'
plot for [m in "sgd rmsprop batchnorm prong"] '< grep "^'.m.'," $prefix.csv' using 2:4 with linespoints lw 2 title m, \\
     '< grep "^prong_after" $prefix.csv' using 2:4 with points pt 7 ps 2 title 'prong right after its first reparametrisation'
GP
python3 - "$prefix" "$secs" <<'PY'
import csv, sys, datetime, subprocess
prefix, secs = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(prefix + ".csv")))
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip() or "?"
load = open("/proc/loadavg").read().split()[:3]
L = ["# PRONG, Figure 2: conditioning of the Fisher (`make prong-figure2`)\n",
     f"Measured {datetime.date.today()} on the {cpu} (2 cores, no GPU, CPU backend; load average {' '.join(load)} at the end: "
     f"shared with other engineers' jobs), {secs} s in all. A 100-20-20-10 tanh MLP with a softmax output on the first 2,000 "
     "MNIST training digits resampled to 10x10 by area averaging (the paper: a small 3-layer tanh MLP on 10x10 MNIST, sizes not "
     "given), Glorot initialisation (seed 3, the same for every method), mini-batches of 100, SGD with momentum 0.9 and lr 0.05 "
     "for SGD, batch norm (+bn in both hidden layers) and PRONG (eps 0.01, T 100, projected start), RMSprop lr 1e-3; learning "
     "rates not tuned to reach the same error (the paper tuned them). The Fisher block is the exact Fisher (natgrad's G v = F v "
     "for softmax + cross-entropy) of layer 2's parameters on 300 training digits, assembled column by column; condition = "
     "largest / smallest eigenvalue (float64 LAPACK). Batch norm makes its block exactly singular (each row of W_2 can be scaled "
     "freely): its condition skips those 20 zero eigenvalues.\n",
     "| method | update | condition number | % of initial | smallest eigenvalue | largest eigenvalue |", "|---|---|---|---|---|---|"]
for r in rows:
    L.append(f"| {r['method']} | {r['update']} | {float(r['condition']):.4g} | {float(r['condition_pct']):.2f} | {float(r['lambda_min']):.3g} | {float(r['lambda_max']):.3g} |")
after = [r for r in rows if r["method"] == "prong_after_first_reparam"]
if after:
    L.append(f"\nPRONG's first reparametrisation divides the condition number by {100 / float(after[0]['condition_pct']):.0f} "
             f"(to {float(after[0]['condition_pct']):.2f} % of its initial value; the paper: a reduction of more than 95 %). "
             "Rows 'prong' at updates k T + 1 are one SGD step after the k-th refresh; the others show the drift between refreshes.\n")
L.append("![condition numbers](prong_figure2.png)\n")
L.append("![Fisher block before (left) and after (right) the first reparametrisation, |F| scaled by its 99th percentile](prong_figure2_fisher.png)\n")
open(prefix + ".md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
