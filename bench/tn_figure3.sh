#!/usr/bin/env bash
# tn_figure3.sh [--minutes M] [--only 'sgd ngd5000 ...'] [--reuse]: Pascanu & Bengio (2014), Figure 3
# (make tn-figure3): the CURVES autoencoder 784-400-200-100-50-25-6 trained by SGD, natural gradient
# (truncated Newton) with mini-batches of 5000 and of 1000, NGD-L (full batch, line search), NCG-L
# (full batch, the 2-D search over learning rate and conjugation), NCG-F (full batch, Polak-Ribiere
# on natural gradients, line search) and Hessian-free, each for M minutes of wall clock (default 10),
# on the generated curves-like data (20,000 training images; NOT the CURVES data set, which is not
# obtainable here). Training error = the mean over the whole training set of sum (y - t)^2 (the
# paper's "square error"; the objective minimised is the cross-entropy). K-FAC's curve on the same
# data is the log of bench/kfac_autoencoders.sh (its block-diagonal run with the paper's settings),
# measured by that script on this machine. Writes bench/results/tn_figure3.{md,png} and the logs
# bench/results/tn_fig3_<method>.csv. --reuse keeps finished runs under runs/tn-figure3/.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=10 only="sgd ngd5000 ngd1000 ngdl ncgl ncgf hf ngdlq ncglq" reuse=
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "usage: $0 [--minutes M] [--only 'sgd ngd5000 ngd1000 ngdl ncgl ncgf hf ngdlq ncglq'] [--reuse]" >&2; exit 2 ;;
  esac
done
bin=build/natgrad
out=runs/tn-figure3
res=bench/results
mkdir -p "$out" "$res"
[ -x "$bin" ] || make -s all
# the paper's settings (section 10 and the appendix): sparse initialisation, damping from 3 adapted by
# Levenberg-Marquardt, MINRES-QLP for NCG; no weight decay (the paper names none)
common=(net train --data curves-like --preset curves-autoencoder --init sparse --seed 1 --weight-decay 0 --eval-n 0
        --force --steps 100000000 --minutes "$minutes")

run() { # name args...
  local name=$1; shift
  case " $only " in *" $name "*) ;; *) return ;; esac
  if [ -n "$reuse" ] && [ -s "$out/$name/train.csv" ]; then echo "== $name: kept"; return; fi
  echo "== $name ($minutes min): $*"
  "$bin" "${common[@]}" "$@" --out "$out/$name" 2>"$out/$name.err" || tail -3 "$out/$name.err"
  tail -2 "$out/$name.err" | head -1
  cp "$out/$name/train.csv" "$res/tn_fig3_$name.csv"
}

run sgd --optimizer sgd --momentum 0 --lr 0.01 --batch 100 --log-every 400
# NGD with a fixed learning rate 1.0 and a separate metric batch: mini-batches of 5000 (the text) and 1000 (the caption)
run ngd5000 --optimizer ngd --lr 1 --batch 5000 --chunk 5000 --metric separate --metric-batch 5000 --lambda0 3 --log-every 2
run ngd1000 --optimizer ngd --lr 1 --batch 1000 --chunk 1000 --metric separate --metric-batch 1000 --lambda0 3 --log-every 10
# batch methods on the whole training set (chunks of 5000)
run ngdl --optimizer ngd-l --batch 20000 --chunk 5000 --lambda0 3 --log-every 1
run ncgl --optimizer ncg-l --batch 20000 --chunk 5000 --lambda0 3 --tn-solver minres-qlp --cg-iters 50 --log-every 1
run ncgf --optimizer ncg-f --batch 20000 --chunk 5000 --lambda0 3 --tn-solver minres-qlp --cg-iters 50 --log-every 1
# Hessian-free (Martens 2010): full-batch gradient, curvature on a separate batch of 5000, CG up to 250 iterations with
# backtracking and the diagonal preconditioner (one chunk: the preconditioner needs per-case gradients)
run hf --optimizer hf --batch 20000 --chunk 20000 --metric separate --metric-batch 5000 --lambda0 3 --log-every 1
# NOT the paper's rule: rho from Martens' quadratic model instead of eq. 32's first-order prediction (with a line search
# eq. 32's rho stays near 1/2, so Levenberg-Marquardt never changes lambda)
run ngdlq --optimizer ngd-l --batch 20000 --chunk 5000 --lambda0 3 --tn-rho quadratic --log-every 1
run ncglq --optimizer ncg-l --batch 20000 --chunk 5000 --lambda0 3 --tn-solver minres-qlp --cg-iters 50 --tn-rho quadratic --log-every 1

python3 - "$out" "$res" "$minutes" <<'PY'
import csv, os, sys, datetime, subprocess
out, res, minutes = sys.argv[1], sys.argv[2], sys.argv[3]
def load(p):
    # rows as dicts; a column name that occurs twice keeps its first value (logs of natgrad before the
    # truncated-Newton columns were renamed had two "step" columns)
    if not os.path.exists(p): return []
    rows = list(csv.reader(open(p)))
    if not rows: return []
    h = rows[0]
    return [{k: v for k, v in reversed(list(zip(h, r)))} for r in rows[1:]]
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip() or "?"
names = [("sgd", "SGD (m = 100, lr 0.01)"), ("ngd5000", "NGD (m = 5000, lr 1.0, CG <= 20)"), ("ngd1000", "NGD (m = 1000, lr 1.0, CG <= 20)"),
         ("ngdl", "NGD-L (full batch, line search, CG <= 20)"), ("ncgl", "NCG-L (full batch, 2-D search, MINRES-QLP <= 50)"),
         ("ncgf", "NCG-F (full batch, Polak-Ribiere, MINRES-QLP <= 50)"), ("hf", "HF (full-batch gradient, curvature batch 5000, CG <= 250)"),
         ("ngdlq", "NGD-L with rho from the quadratic model (NOT the paper's eq. 32)"), ("ncglq", "NCG-L with rho from the quadratic model (NOT the paper's eq. 32)")]
runs = {k: load(f"{res}/tn_fig3_{k}.csv") for k, _ in names}
kfac = load(f"{res}/kfac_ae_curves_blockdiag.csv")
L = ["# Pascanu & Bengio (2014), Figure 3 on curves-like data (make tn-figure3)\n",
     f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu}), CPU backend, {minutes} minutes of wall clock per method "
     "unless the 'training s' column says otherwise (an update under way when the time is up is finished; monitor passes are "
     "excluded from the time axis). The CURVES autoencoder 784-400-200-100-50-25-6 (logistic units, linear code), "
     "sparse initialisation (Martens 2010), seed 1; training error = mean over the 20,000 training images of sum (y - t)^2 at each "
     "logged update, the objective minimised is the cross-entropy, as in the paper.\n",
     "What differs from the paper: the data is the generated curves-like set (NOT CURVES: not obtainable here); a 2-core CPU instead "
     "of a GTX 580, minutes instead of hours, so only the start of the paper's curves (which run to about 10^4 s) is covered; NCG "
     "runs MINRES-QLP capped at 50 iterations where the paper allowed 250 (each iteration is a full-batch product, about 1 s here); "
     "the paper's NGD used 'small batches of 5000' in the text and 1000 in the caption: both are run; the metric of the mini-batch "
     "NGD runs is a separate batch of the same size (section 10: 'as long as the gradient and the metric are computed on different "
     "samples'). The paper gives its curves only as a figure: there are no numbers of the paper to put beside ours, only its "
     "claims (NGD works with mini-batches; NCG-L converges faster than NGD; NCG-F underperforms NCG-L).\n",
     "| method | updates | training s | final training error | best | error at 60 s | at 120 s | solver iterations / update | final lambda |",
     "|---|---|---|---|---|---|---|---|---|"]
def at(r, s):
    v = [float(x["train_error"]) for x in r if float(x["train_s"]) <= s]
    return f"{v[-1]:.3f}" if v else "-"
for k, label in names:
    r = runs[k]
    if not r:
        L.append(f"| {label} | not run | | | | | | | |"); continue
    it = [float(x["cg_iters"]) for x in r if "cg_iters" in x]
    lam = f"{float(r[-1]['lambda']):.3g}" if "lambda" in r[-1] else "-"
    L.append(f"| {label} | {r[-1]['step']} | {float(r[-1]['train_s']):.0f} | {float(r[-1]['train_error']):.3f} | "
             f"{min(float(x['train_error']) for x in r):.3f} | {at(r, 60)} | {at(r, 120)} | "
             + (f"{sum(it) / len(it):.1f}" if it else "-") + f" | {lam} |")
if kfac:
    L.append(f"| K-FAC block-diagonal (bench/kfac_autoencoders.sh, an earlier run on this machine; its own settings) | {kfac[-1]['step']} | "
             f"{float(kfac[-1]['train_s']):.0f} | {float(kfac[-1]['train_error_best']):.3f} | "
             f"{min(float(x['train_error_best']) for x in kfac):.3f} | {at([dict(x, train_error=x['train_error_best']) for x in kfac], 60)} | "
             f"{at([dict(x, train_error=x['train_error_best']) for x in kfac], 120)} | - | - |")
L.append("\n![training error vs updates and vs seconds](tn_figure3.png)\n")
open(f"{res}/tn_figure3.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY

if command -v gnuplot >/dev/null 2>&1; then
  pi="" pt=""
  for spec in "sgd:SGD:#000000" "ngd5000:NGD m=5000:#0072b2" "ngd1000:NGD m=1000:#56b4e9" "ngdl:NGD-L:#009e73" \
              "ncgl:NCG-L:#d55e00" "ncgf:NCG-F:#e69f00" "hf:HF:#cc79a7" "ngdlq:NGD-L quadratic rho (not the paper):#8fbc8f" \
              "ncglq:NCG-L quadratic rho (not the paper):#f4a582"; do
    IFS=: read -r k t c <<<"$spec"
    f="$res/tn_fig3_$k.csv"
    [ -s "$f" ] || continue
    pi="$pi '$f' using (column('step')):(column('train_error')) with linespoints pt 7 ps 0.4 lw 2 lc rgb '$c' title '$t',"
    pt="$pt '$f' using (column('train_s')):(column('train_error')) with linespoints pt 7 ps 0.4 lw 2 lc rgb '$c' title '$t',"
  done
  f="$res/kfac_ae_curves_blockdiag.csv"
  if [ -s "$f" ]; then
    pi="$pi '$f' using (column('step')):(column('train_error_best')) with lines lw 1 dt 2 lc rgb 'gray40' title 'K-FAC (earlier run)',"
    pt="$pt '$f' using (column('train_s')):(column('train_error_best')) with lines lw 1 dt 2 lc rgb 'gray40' title 'K-FAC (earlier run)',"
  fi
  gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1300,520 noenhanced
set output '$res/tn_figure3.png'
set multiplot layout 1,2 title 'Pascanu & Bengio Figure 3 on curves-like data (generated; NOT CURVES): training error over the 20,000 training images'
set logscale x
set logscale y
set grid
set key top right font ',8'
set ylabel 'training error per case: sum (y - t)^2'
set xlabel 'updates'
plot ${pi%,}
set xlabel 'training time (s)'
plot ${pt%,}
unset multiplot
GP
  echo "wrote $res/tn_figure3.png"
fi
