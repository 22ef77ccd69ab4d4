#!/usr/bin/env bash
# kfac_cost.sh [--m "1000 4000 7996"] [--steps N] [--threads T]: the cost of one block-diagonal K-FAC iteration
# against one NAG iteration at the same mini-batch size m, on the MNIST autoencoder (the K-FAC issue's
# target: at most 1.5x, inverses amortised), for several m. For each m, NAG and K-FAC (block-diagonal,
# then block-tridiagonal) run N updates (default 25) from the same sparse initialisation, every update
# logged; the cost per update is measured over updates 6..N (train_s: time inside updates, monitor
# excluded). With N = 25 that window holds exactly one inverse refresh and one set of three gamma
# candidates (update 20; T3 = T2 = 20) and four rho evaluations (T1 = 5): the steady-state
# amortisation of section 8. The runs of one m follow each other, so a change of the machine's load
# between them moves the ratio: the load average is recorded before and after.
# --threads T: CPU threads of every run (0: the library default; 1 is steadier on a loaded machine).
# Writes bench/results/kfac_cost.{md,csv}.
set -euo pipefail
ms="1000 4000 7996" steps=25 threads=0
while [ $# -gt 0 ]; do
  case $1 in
    --m) ms=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--m \"1000 4000 7996\"] [--steps N] [--threads T]" >&2; exit 2 ;;
  esac
done
[ "$steps" -ge 10 ] 2>/dev/null || { echo "kfac_cost.sh: --steps $steps: need at least 10" >&2; exit 2; }
bin=build/natgrad
out=runs/kfac-cost
res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s)
csv=$res/kfac_cost.csv
echo "m,method,updates,s_per_update,stats_s,inverse_s,apply_s,quad_s" > "$csv"
per_update() { # train.csv -> "s/update stats inverse apply quad" over updates 6..N
  awk -F, -v first=6 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    { step = $h["step"]; t[step] = $h["train_s"]
      if (step > first && ("stats_s" in h)) { n++; st += $h["stats_s"]; iv += $h["inverse_s"]; ap += $h["apply_s"]; qu += $h["quad_s"] } last = step }
    END { if (!(first in t) || last <= first) { print "nan nan nan nan nan"; exit }
          s = (t[last] - t[first]) / (last - first)
          if (n) printf "%.4f %.4f %.4f %.4f %.4f\n", s, st / n, iv / n, ap / n, qu / n; else printf "%.4f - - - -\n", s }' "$1"
}
for m in $ms; do
  for meth in nag blockdiag tridiag; do
    case $meth in
      nag) args=(--optimizer nag --lr 0.01) ;;
      *) args=(--optimizer kfac --kfac-approx "$meth") ;;
    esac
    dir=$out/m$m-$meth
    echo "== m = $m: $meth ($steps updates)"
    if ! "$bin" net train --data mnist --preset mnist-autoencoder --weight-decay 1e-5 --init sparse --seed 1 --force \
         --batch "$m" --steps "$steps" --threads "$threads" --log-every 1 --eval-n 100 --out "$dir" "${args[@]}" 2>"$dir.err"; then
      echo "   failed: $(tail -1 "$dir.err")"; continue
    fi
    read -r s st iv ap qu <<<"$(per_update "$dir/train.csv")"
    echo "   $s s per update"
    echo "$m,$meth,$steps,$s,$st,$iv,$ap,$qu" >> "$csv"
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
secs=$(( $(date +%s) - t0 ))
python3 - "$csv" "$res/kfac_cost.md" "$load0" "$load1" "$secs" "$steps" "$threads" "$("$bin" info 2>/dev/null | sed -n 's/^auto device: //p')" <<'PY'
import csv, sys, datetime, os
path, md, load0, load1, secs, steps, threads, dev = sys.argv[1:9]
rows = list(csv.DictReader(open(path)))
by = {}
for r in rows: by.setdefault(int(r["m"]), {})[r["method"]] = r
L = ["# Cost of a K-FAC iteration against a NAG iteration at equal m (`make bench-kfac-cost`)", "",
     f"Measured {datetime.date.today()} on {os.cpu_count()} cores, {dev}, --threads {threads} (0: the library's default); whole script {secs} s; load average (1, 5, 15 min) "
     f"{load0} at the start, {load1} at the end (other jobs on the machine move single runs; compare rows of one run).",
     f"MNIST autoencoder (784-1000-500-250-30-250-500-1000-784), sparse initialisation, {steps} updates per run, cost per update "
     "over updates 6.." + steps + (" (one inverse refresh with its three gamma candidates, four rho evaluations: the steady-state "
     "amortisation)" if int(steps) == 25 else " (the steady-state amortisation needs --steps 25: one refresh and four rho evaluations in the window)") + ", time inside updates only. K-FAC's phase columns are means per update of its own timers.", "",
     "| m | NAG s / update | K-FAC block-diagonal s / update | / NAG | block-tridiagonal s / update | / NAG | blockdiag phases: statistics / inverses / F^-1 grad / quadratic model + rho (s) |",
     "|---|---|---|---|---|---|---|"]
def f(x):
    try: return float(x)
    except: return float("nan")
for m in sorted(by):
    d = by[m]
    nag = f(d.get("nag", {}).get("s_per_update"))
    bd = d.get("blockdiag", {}); td = d.get("tridiag", {})
    b, t = f(bd.get("s_per_update")), f(td.get("s_per_update"))
    ph = " / ".join(bd.get(k, "-") for k in ("stats_s", "inverse_s", "apply_s", "quad_s"))
    L.append(f"| {m} | {nag:.3f} | {b:.3f} | {b / nag:.2f} | {t:.3f} | {t / nag:.2f} | {ph} |")
L += ["", "The issue's target: a block-diagonal K-FAC iteration at most 1.5x a NAG iteration at the same m, inverses amortised. "
      "What grows with m: the statistics (a backward pass with sampled targets and the factor products on tau1 = 1/8 of the batch), "
      "the quadratic model (two R-forward passes on tau2 = 1/4 of it, and h at the new point every T1 = 5 updates). What does not: "
      "the inverses and F^-1 grad (two products per layer with the factor inverses). In units of one layer-by-layer pass over one "
      "case (NAG: forward 1 + backward 2 = 3), K-FAC adds about 1/8 x 2 (sampled backward) + 1/8 x 2 (factor products) + 1/4 x 4 "
      "(two R-forwards of two gemms per layer) + 1/5 (rho) = 1.7, so with the paper's tau1, tau2 and T1 its iteration costs about "
      "1.6x NAG's in arithmetic alone at any m, before the m-independent part: 1.5x is below that floor. The measured ratios lie "
      "above it; on this shared machine they move by tens of percent between runs (see the load)."]
open(md, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
echo "wrote $res/kfac_cost.md"
