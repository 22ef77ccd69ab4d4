#!/usr/bin/env bash
# tn_figure1.sh [--minutes M] [--labelled N] [--reuse]: Pascanu & Bengio (2014), Figure 1 (make
# tn-figure1): natural gradient with the metric computed on (a) the gradient's own mini-batch of 256,
# (b) a separate mini-batch of 384 training cases, (c) 384 unlabeled inputs. The paper used fold 4
# of the Toronto Face Database, which is not obtainable here; this runs on Fashion-MNIST (Debian's
# dataset-fashion-mnist, installed by data/prepare.sh) as a SUBSTITUTE: the first N = 5000 training
# images (default) are the labelled set, the other 55,000 training images without their labels
# are the unlabeled pool, the 10,000 test images the test set. The paper's settings for TFD: fixed
# learning rate 0.2, damping from 5 adapted by Levenberg-Marquardt, MINRES-QLP with at most 50
# iterations, gradient batches of 256, metric batches of 384; the paper's model (a 512-filter 14x14
# sigmoid convolution, a 1024-unit sigmoid layer, sigmoid outputs) is replaced by an MLP
# 784-1024-10 with a logistic hidden layer and a softmax output (natgrad has no conv layers yet).
# Each variant runs M minutes (default 5). Writes bench/results/tn_figure1.{md,png} and
# bench/results/tn_fig1_<variant>.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=5 labelled=5000 reuse=
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --labelled) labelled=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "usage: $0 [--minutes M] [--labelled N] [--reuse]" >&2; exit 2 ;;
  esac
done
bin=build/natgrad
out=runs/tn-figure1
res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
bash data/prepare.sh fashion-mnist
common=(net train --data fashion-mnist --task classify --layers 784-1024-10 --hidden-act logistic --init sparse --seed 1
        --limit "$labelled" --optimizer ngd --lr 0.2 --lambda0 5 --tn-solver minres-qlp --cg-iters 50 --batch 256
        --weight-decay 0 --log-every 10 --force --steps 100000000 --minutes "$minutes")
run() { # name args...
  local name=$1; shift
  if [ -n "$reuse" ] && [ -s "$out/$name/train.csv" ]; then echo "== $name: kept"; return; fi
  echo "== $name ($minutes min): $*"
  "$bin" "${common[@]}" "$@" --out "$out/$name" 2>"$out/$name.err" || tail -3 "$out/$name.err"
  tail -2 "$out/$name.err" | head -1
  cp "$out/$name/train.csv" "$res/tn_fig1_$name.csv"
}
run same --metric same
run separate --metric separate --metric-batch 384
run unlabeled --metric unlabeled --metric-batch 384

python3 - "$res" "$minutes" "$labelled" <<'PY'
import csv, os, sys, datetime, subprocess
res, minutes, labelled = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(p):
    # rows as dicts; a column name that occurs twice keeps its first value (logs of natgrad before the
    # truncated-Newton columns were renamed had two "step" columns)
    if not os.path.exists(p): return []
    rows = list(csv.reader(open(p)))
    if not rows: return []
    h = rows[0]
    return [{k: v for k, v in reversed(list(zip(h, r)))} for r in rows[1:]]
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip() or "?"
V = [("same", "same mini-batch (256) for gradient and metric"), ("separate", "separate mini-batch of 384 training cases"),
     ("unlabeled", "384 unlabeled inputs (training images beyond the labelled set)")]
R = {k: load(f"{res}/tn_fig1_{k}.csv") for k, _ in V}
L = ["# Pascanu & Bengio (2014), Figure 1 on Fashion-MNIST (make tn-figure1)\n",
     f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu}), CPU backend, {minutes} minutes per variant. Natural gradient "
     f"(truncated Newton, MINRES-QLP <= 50 iterations, fixed learning rate 0.2, damping from 5 adapted by Levenberg-Marquardt, "
     f"gradient batches of 256) on the first {labelled} Fashion-MNIST training images; errors are misclassification percentages "
     "over those labelled images (training) and the 10,000 test images.\n",
     "What differs from the paper: TFD (fold 4) is not obtainable here, so this is Fashion-MNIST, a SUBSTITUTE, with the "
     f"training images beyond the first {labelled} as the unlabeled pool; an MLP 784-1024-10 (logistic hidden layer, softmax "
     "output) instead of the paper's convolutional model with sigmoid outputs; a 2-core CPU; minutes of training. The paper "
     "shows only curves: its claim is the ordering same (worst) > separate > unlabeled (best) for both the training and the "
     "test error.\n",
     "| metric batch | updates | training s | final training error % | final test error % | best test error % |",
     "|---|---|---|---|---|---|"]
for k, label in V:
    r = R[k]
    if not r:
        L.append(f"| {label} | not run | | | | |"); continue
    L.append(f"| {label} | {r[-1]['step']} | {float(r[-1]['train_s']):.0f} | {float(r[-1]['train_misclass']):.2f} | "
             f"{float(r[-1]['test_misclass']):.2f} | {min(float(x['test_misclass']) for x in r):.2f} |")
if all(R.values()):
    n = min(len(r) for r in R.values())
    at = {k: R[k][n - 1] for k in R}
    L.append(f"\nAt update {at['same']['step']} (the last all three reached): training error % same {float(at['same']['train_misclass']):.2f}, "
             f"separate {float(at['separate']['train_misclass']):.2f}, unlabeled {float(at['unlabeled']['train_misclass']):.2f}; test error % "
             f"same {float(at['same']['test_misclass']):.2f}, separate {float(at['separate']['test_misclass']):.2f}, "
             f"unlabeled {float(at['unlabeled']['test_misclass']):.2f}.")
L.append("\n![training and test error vs updates](tn_figure1.png)\n")
open(f"{res}/tn_figure1.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY

if command -v gnuplot >/dev/null 2>&1; then
  ptr="" pte=""
  for spec in "same:same batch (256):#009e73:3" "separate:separate batch (384):#0072b2:2" "unlabeled:unlabeled (384):#d55e00:1"; do
    IFS=: read -r k t c d <<<"$spec"
    f="$res/tn_fig1_$k.csv"
    [ -s "$f" ] || continue
    ptr="$ptr '$f' using (column('step')):(column('train_misclass')) with lines lw 2 dt $d lc rgb '$c' title '$t',"
    pte="$pte '$f' using (column('step')):(column('test_misclass')) with lines lw 2 dt $d lc rgb '$c' title '$t',"
  done
  gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1200,480 noenhanced
set output '$res/tn_figure1.png'
set multiplot layout 1,2 title 'Pascanu & Bengio Figure 1 on Fashion-MNIST (a SUBSTITUTE for TFD): samples for the metric'
set grid
set key top right font ',9'
set xlabel 'updates'
set logscale y
set ylabel 'training error (% misclassified, labelled set)'
plot ${ptr%,}
unset logscale y
set ylabel 'test error (% misclassified)'
plot ${pte%,}
unset multiplot
GP
  echo "wrote $res/tn_figure1.png"
fi
