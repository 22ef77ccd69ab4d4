#!/usr/bin/env bash
# rbm_recipes.sh [--steps N]: Sohl-Dickstein's diagonal metrics for RBMs next to the RBM methods of
# the engine (make rbm-recipes): SGD, centering, FANG, and `--optimizer diag` with the energy metric
# (eq. 33, over the data) and the model Fisher's diagonal (eq. 34, over the fantasy particles), power
# 1 and 1/2, on 4x4 bars-and-stripes (30 patterns, the whole distribution) with 16 hidden units,
# PCD-1, 30 particles, batches of 30, constant learning rate, seed 1. Each method runs at every rate
# of its grid for N updates (2000) and for 300; the log-likelihood uses the exact log Z (`natgrad rbm
# eval`: 16 hidden units are enumerated). Reports the best rate's average log-likelihood. Writes
# bench/results/rbm_recipes.{md,csv}. A minute or two of CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=2000
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    *) echo "usage: $0 [--steps N]" >&2; exit 2 ;;
  esac
done
bin=build/natgrad
out=runs/rbm-recipes
res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
csv=$res/rbm_recipes.csv
echo "method,lr,steps,loglik" > "$csv"
ll() { "$bin" rbm eval --checkpoint "$1" --data bars-stripes --device cpu --threads 1 --split train 2>&1 |
       sed -nE 's/.*average log-likelihood with exact log Z: (-?[0-9.]+) nats.*/\1/p'; }
runm() { # name "options" rates...
  local name=$1 optstr=$2; shift 2
  local lr n
  for lr in "$@"; do
    for n in 300 "$steps"; do
      local d="$out/$name-$lr-$n"
      # shellcheck disable=SC2086
      if "$bin" rbm train --data bars-stripes --device cpu --threads 1 --hidden 16 --batch 30 --particles 30 --k 1 \
           --lr-gamma 0 --seed 1 --lr "$lr" --steps "$n" --log-every "$n" --force --out "$d" $optstr > "$d.log" 2>&1; then
        echo "$name,$lr,$n,$(ll "$d/rbm.ckpt")" >> "$csv"
      else
        echo "$name,$lr,$n,failed" >> "$csv"
      fi
    done
    echo "== $name lr $lr: $(grep "^$name,$lr,$steps," "$csv" | cut -d, -f4)"
  done
}
runm sgd "--optimizer sgd" 0.03 0.1 0.3 1
runm centering "--optimizer centering" 0.03 0.1 0.3 1
runm fang "--optimizer fang --fang-refit-every 20" 0.003 0.01 0.03 0.1
runm diag-energy "--optimizer diag --diag-metric energy" 0.001 0.003 0.01 0.03 0.1
runm diag-fisher "--optimizer diag --diag-metric fisher" 0.001 0.003 0.01 0.03 0.1
runm diag-energy-sqrt "--optimizer diag --diag-metric energy --diag-power 0.5" 0.003 0.01 0.03 0.1 0.3
python3 - "$csv" "$steps" > "$res/rbm_recipes.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]))); steps = sys.argv[2]
def val(r):
    try: return float(r["loglik"])
    except ValueError: return float("-inf")  # "failed": the run stopped (NaN objective, see runs/rbm-recipes/*.log)
names = [("sgd", "SGD"), ("centering", "centering (FANG 5.1)"), ("fang", "FANG (refit every 20)"),
         ("diag-energy", "diag, energy metric eq. 33, power 1"), ("diag-fisher", "diag, model Fisher eq. 34, power 1"),
         ("diag-energy-sqrt", "diag, energy metric, power 1/2")]
print("# Sohl-Dickstein's diagonal metrics for RBMs (make rbm-recipes)\n")
print("4x4 bars-and-stripes (the 30 patterns: the whole distribution; entropy log 30 = 3.401 nats, the best possible")
print("average log-likelihood is -3.401), 16 hidden units, PCD-1 with 30 particles, batches of 30, constant learning")
print("rate, L2 0, seed 1, CPU backend. Log-likelihoods with the exact log Z (16 hidden units enumerated), averaged over")
print("the 30 patterns. Every method at every rate of its grid (bench/rbm_recipes.sh); the best rate after " + steps + " updates")
print("is shown with its value after 300 updates. One seed, and rounding matters: the same code on two CPUs gave")
print("final values 0.14-1.1 nats apart at the rates that were best (several nats at unstable ones): smaller differences are noise.\n")
print(f"| method | best rate | log-likelihood after 300 updates | after {steps} updates | rates tried (final log-likelihood) |")
print("|---|---|---|---|---|")
for k, lab in names:
    fin = [r for r in rows if r["method"] == k and r["steps"] == steps]
    if not fin: continue
    b = max(fin, key=val)
    early = next((r["loglik"] for r in rows if r["method"] == k and r["lr"] == b["lr"] and r["steps"] == "300"), "?")
    tried = ", ".join(f'{r["lr"]}: {r["loglik"]}' for r in fin)
    print(f'| {lab} | {b["lr"]} | {early} | {b["loglik"]} | {tried} |')
PY
cat "$res/rbm_recipes.md"
