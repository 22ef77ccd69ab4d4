#!/usr/bin/env bash
# kfac_cost.sh [--m "1000 4000 7996"] [--steps N] [--threads T] [--reps R]: the cost of one block-diagonal K-FAC iteration
# against one NAG iteration at the same mini-batch size m, on the MNIST autoencoder (the K-FAC issue's
# target: at most 1.5x, inverses amortised), for several m. For each m, NAG and K-FAC (block-diagonal,
# then block-tridiagonal) run N updates (default 25) from the same sparse initialisation, every update
# logged; the cost per update is measured over updates 6..N (train_s: time inside updates, monitor
# excluded; train_cpu_s: the same in CPU seconds of the process). With N = 25 that window holds exactly one inverse refresh and one set of three gamma
# candidates (update 20; T3 = T2 = 20) and four rho evaluations (T1 = 5): the steady-state
# amortisation of section 8. The runs of one m follow each other, so a change of the machine's load
# between them moves the ratio: the load average is recorded before and after, and each of the
# three runs of an m is repeated R times (default 2), the repetitions interleaved (nag, blockdiag,
# tridiag, nag, ...); the table keeps each method's fastest repetition (other jobs only slow a run
# down), the CSV every one. Next to the measured ratio the table gives the arithmetic floor: the
# ratio of the two iterations' floating-point operations counted from the layer sizes (see the
# text under the table).
# --threads T: CPU threads of every run (default 1: steadier on a loaded machine; 0: the library's).
# Writes bench/results/kfac_cost.{md,csv}.
set -euo pipefail
ms="1000 4000 7996" steps=25 threads=1 reps=2
while [ $# -gt 0 ]; do
  case $1 in
    --m) ms=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--m \"1000 4000 7996\"] [--steps N] [--threads T] [--reps R]" >&2; exit 2 ;;
  esac
done
[ "$steps" -ge 10 ] 2>/dev/null || { echo "kfac_cost.sh: --steps $steps: need at least 10" >&2; exit 2; }
[ "$reps" -ge 1 ] 2>/dev/null || { echo "kfac_cost.sh: --reps $reps: need at least 1" >&2; exit 2; }
bin=build/natgrad
out=runs/kfac-cost
res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s)
csv=$res/kfac_cost.csv
echo "m,method,rep,updates,s_per_update,cpu_s_per_update,stats_s,inverse_s,apply_s,quad_s,load1" > "$csv"
per_update() { # train.csv -> "s/update cpu_s/update stats inverse apply quad" over updates 6..N
  awk -F, -v first=6 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    { step = $h["step"]; t[step] = $h["train_s"]; c[step] = $h["train_cpu_s"]
      if (step > first && ("stats_s" in h)) { n++; st += $h["stats_s"]; iv += $h["inverse_s"]; ap += $h["apply_s"]; qu += $h["quad_s"] } last = step }
    END { if (!(first in t) || last <= first) { print "nan nan nan nan nan nan"; exit }
          s = (t[last] - t[first]) / (last - first); cs = (c[last] - c[first]) / (last - first)
          if (n) printf "%.4f %.4f %.4f %.4f %.4f %.4f\n", s, cs, st / n, iv / n, ap / n, qu / n; else printf "%.4f %.4f - - - -\n", s, cs }' "$1"
}
for m in $ms; do
  for rep in $(seq 1 "$reps"); do
    for meth in nag blockdiag tridiag; do
      case $meth in
        nag) args=(--optimizer nag --lr 0.01) ;;
        *) args=(--optimizer kfac --kfac-approx "$meth") ;;
      esac
      dir=$out/m$m-$meth-$rep
      echo "== m = $m: $meth ($steps updates, repetition $rep of $reps)"
      if ! "$bin" net train --data mnist --preset mnist-autoencoder --weight-decay 1e-5 --init sparse --seed 1 --force \
           --batch "$m" --steps "$steps" --threads "$threads" --log-every 1 --eval-n 100 --out "$dir" "${args[@]}" 2>"$dir.err"; then
        echo "   failed: $(tail -1 "$dir.err")"; continue
      fi
      read -r s cs st iv ap qu <<<"$(per_update "$dir/train.csv")"
      echo "   $s s per update ($cs CPU s)"
      echo "$m,$meth,$rep,$steps,$s,$cs,$st,$iv,$ap,$qu,$(cut -d' ' -f1 /proc/loadavg)" >> "$csv"
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
secs=$(( $(date +%s) - t0 ))
python3 - "$csv" "$res/kfac_cost.md" "$load0" "$load1" "$secs" "$steps" "$threads" "$("$bin" info 2>/dev/null | sed -n 's/^auto device: //p')" "$reps" <<'PY'
import csv, sys, datetime, os
path, md, load0, load1, secs, steps, threads, dev, reps = sys.argv[1:10]
rows = list(csv.DictReader(open(path)))
def f(x):
    try: return float(x)
    except: return float("nan")
best, cpu = {}, {}  # (m, method) -> the fastest repetition's row (by the clock), its smallest CPU time
for r in rows:
    key = (int(r["m"]), r["method"])
    if key not in best or f(r["s_per_update"]) < f(best[key]["s_per_update"]): best[key] = r
    cpu[key] = min(cpu.get(key, float("inf")), f(r["cpu_s_per_update"]))
# The arithmetic floor: floating-point operations of the gemms, syrks and Cholesky inversions of one
# iteration of each method on the mnist-autoencoder preset (multiply-add = 2), averaged over the
# measured window (updates first+1 .. last: one refresh with three gamma candidates, rho every T1).
dims = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
tau1, tau2, T1 = 1.0 / 8, 1.0 / 4, 5
L = len(dims) - 1
P2 = sum(2 * dims[l] * (dims[l - 1] + 1) for l in range(1, L + 1))   # forward pass, per case
B = sum(2 * dims[l] * dims[l - 1] for l in range(2, L + 1))          # back-propagation W^T d, per case
SYRK = sum((dims[l] + 1) ** 2 for l in range(L)) + sum(dims[l] ** 2 for l in range(1, L + 1))
FINV = sum(2 * dims[l] ** 2 * (dims[l - 1] + 1) + 2 * dims[l] * (dims[l - 1] + 1) ** 2 for l in range(1, L + 1))
CHOL = sum((dims[l] + 1) ** 3 for l in range(L)) + sum(dims[l] ** 3 for l in range(1, L + 1))  # potrf n^3/3 + potri 2n^3/3
def floor_ratio(m, n_upd):
    nag = m * (2 * P2 + B)                       # forward, weight gradient, back-propagation
    c1, c2 = round(tau1 * m), round(tau2 * m)
    n_rho = sum(1 for k in range(int(steps) - n_upd + 1, int(steps) + 1) if k % T1 == 0)
    n_ref = sum(1 for k in range(int(steps) - n_upd + 1, int(steps) + 1) if k % 20 == 0)
    extra = (c1 * (B + SYRK)                     # sampled backward pass and the factor products on tau1 m
             + (2 + 2 * n_ref / n_upd) * c2 * (P2 + B)  # R-forward passes (Delta, delta0; 2 more candidates at a refresh)
             + n_rho / n_upd * m * P2            # the forward pass at theta + delta for rho
             + (1 + 2 * n_ref / n_upd) * FINV    # F^-1 grad: two gemms per layer, per candidate
             + 3 * n_ref / n_upd * CHOL)         # three inverse sets at a refresh
    return (nag + extra) / nag
n_upd = int(steps) - 6
L_ = ["# Cost of a K-FAC iteration against a NAG iteration at equal m (`make bench-kfac-cost`)", "",
     f"Measured {datetime.date.today()} on {os.cpu_count()} cores, {dev}, --threads {threads}; whole script {secs} s; load average (1, 5, 15 min) "
     f"{load0} at the start, {load1} at the end (other jobs on the machine slow single runs down; each method ran {reps} times per m, interleaved, "
     "and the table keeps its fastest repetition; `kfac_cost.csv` has every run with the 1-minute load average after it). "
     "Two measures: seconds by the clock (`train_s`) and CPU seconds of the one-thread process (`train_cpu_s`), which other jobs "
     "inflate far less (they take the core away rather than slow the work down); on a loaded machine the CPU ratio is the one to read.",
     f"MNIST autoencoder (784-1000-500-250-30-250-500-1000-784), sparse initialisation, {steps} updates per run, cost per update "
     "over updates 6.." + steps + (" (one inverse refresh with its three gamma candidates, four rho evaluations: the steady-state "
     "amortisation)" if int(steps) == 25 else " (the steady-state amortisation needs --steps 25: one refresh and four rho evaluations in the window)") + ", time inside updates only. K-FAC's phase columns are means per update of its own timers (quadratic model + rho: the tau2 m R-forward passes, the products of the model, and rho's forward pass every T1 updates).", "",
     "| m | NAG s / update (CPU s) | K-FAC block-diagonal s / update (CPU s) | / NAG (CPU) | arithmetic floor | block-tridiagonal s / update (CPU s) | / NAG (CPU) | blockdiag phases: statistics / inverses / F^-1 grad / quadratic model + rho (s) |",
     "|---|---|---|---|---|---|---|---|"]
for m in sorted({k[0] for k in best}):
    nag = f(best.get((m, "nag"), {}).get("s_per_update"))
    bd = best.get((m, "blockdiag"), {}); td = best.get((m, "tridiag"), {})
    b, t = f(bd.get("s_per_update")), f(td.get("s_per_update"))
    cn, cb, ct = (cpu.get((m, k), float("nan")) for k in ("nag", "blockdiag", "tridiag"))
    ph = " / ".join(bd.get(k, "-") for k in ("stats_s", "inverse_s", "apply_s", "quad_s"))
    L_.append(f"| {m} | {nag:.3f} ({cn:.3f}) | {b:.3f} ({cb:.3f}) | {b / nag:.2f} ({cb / cn:.2f}) | {floor_ratio(m, n_upd):.2f} "
              f"| {t:.3f} ({ct:.3f}) | {t / nag:.2f} ({ct / cn:.2f}) | {ph} |")
fl = {m: floor_ratio(m, n_upd) for m in (1000, 4000, 7996)}
frac = (tau1 * (B + SYRK) + tau2 * 2 * (P2 + B) + P2 / T1) / (2 * P2 + B)
m15 = next((m for m in range(1000, 10 ** 6, 100) if floor_ratio(m, n_upd) <= 1.5), None)
L_ += ["", "The issue's target: a block-diagonal K-FAC iteration at most 1.5x a NAG iteration at the same m, inverses amortised. "
      "*Arithmetic floor*: the ratio of the two iterations' gemm, syrk and Cholesky flops, counted from the layer sizes "
      f"(per case, forward pass {P2 / 1e6:.2f} MFLOP, back-propagation W^T d {B / 1e6:.2f}, weight gradient {P2 / 1e6:.2f}: NAG "
      f"{(2 * P2 + B) / 1e6:.2f} MFLOP per case). K-FAC adds, per case of the batch: 1/8 x ({B / 1e6:.2f} sampled back-propagation + "
      f"{SYRK / 1e6:.2f} factor products by syrk) + 1/4 x 2 R-forward passes of {(P2 + B) / 1e6:.2f} (V a-bar + W R(a) per layer) + 1/5 x "
      f"{P2 / 1e6:.2f} (rho's forward pass) = {(tau1 * (B + SYRK) + tau2 * 2 * (P2 + B) + P2 / T1) / 1e6:.2f} MFLOP, "
      f"{(tau1 * (B + SYRK) + tau2 * 2 * (P2 + B) + P2 / T1) / (2 * P2 + B):.3f} of NAG's, "
      f"and per update, whatever m, F^-1 grad ({FINV / 1e9:.2f} GFLOP: G^-1 V A^-1, two gemms per layer) and the amortised "
      f"inverses ({CHOL / 1e9:.2f} GFLOP per set, three sets per refresh). The floor is therefore "
      f"{fl[1000]:.2f} at m = 1000, {fl[4000]:.2f} at 4000, {fl[7996]:.2f} at 7996 and tends to "
      f"{floor_ratio(10 ** 9, n_upd):.3f} as m grows (over this window, whose refresh adds two R-forward passes for the gamma candidates "
      f"and which holds {sum(1 for k in range(int(steps) - n_upd + 1, int(steps) + 1) if k % T1 == 0)} rho evaluations in {n_upd} updates): "
      "with the paper's tau1 = 1/8, tau2 = 1/4 and T1 = 5 "
      "the 1.5x target is below what the algorithm's arithmetic allows at these m, before any implementation cost; "
      f"the floor reaches 1.5 only from m = {m15} on. Elementwise work is not counted (it weighs more in NAG's forward pass, "
      "with its activations, than in K-FAC's extra passes), and syrk and potrf/potri run below gemm's rate. "
      "The measured ratios are to be read against the floor; on this shared machine single runs move by tens of percent with the load."]
open(md, "w").write("\n".join(L_) + "\n")
print("\n".join(L_))
PY
echo "wrote $res/kfac_cost.md"
