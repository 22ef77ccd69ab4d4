#!/usr/bin/env bash
# test_cli_net.sh BUILD: end-to-end tests of `natgrad net train` / `natgrad net eval` with
# BUILD/natgrad on small data (bars and stripes; tiny IDX files written here). Covers: help; a
# train + eval round trip (eval's error equals the log's last test error); exact resume (40 updates
# in one go vs 20 + --resume to 40: byte-identical checkpoints, identical CSV apart from clocks);
# classification from IMAGES,LABELS IDX files; usage errors naming the layer or option (exit 2);
# NaN, truncated and wrong-kind files (exit 1, naming the file); divergence (exit 1, message naming
# the update, no NaN checkpoint); export of a network to safetensors. Everything on the CPU in a
# mktemp -d directory removed at exit. Ends with "RESULT passed=P failed=F skipped=S".
. "$(dirname "$0")/cli_lib.sh"
set -u
build=${1:-build}
bin=$build/natgrad
passed=0 failed=0 skipped=0
if [ ! -x "$bin" ]; then
  echo "FAIL natgrad binary: $bin not found"; echo "RESULT passed=0 failed=1 skipped=0"; exit 1
fi
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
repo=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_cli_net.XXXXXX") || { echo "RESULT passed=0 failed=1 skipped=0"; exit 1; }
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1


T=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --lr 0.05 --average 0.9 --threads 1)

# ---- help ----------------------------------------------------------------------------------------
run help "$bin" net train --help
if [ "$rc" = 0 ] && grep -q -- "--preset" help.out && grep -q -- "--layers" help.out && grep -q "curves-like" help.out; then
  pass net_help; else fail net_help "exit $rc"; show help.out; fi

# ---- train + eval ----------------------------------------------------------------------------------
run train "$bin" "${T[@]}" --steps 30 --log-every 10 --out a
if [ "$rc" = 0 ] && [ -s a/net.ckpt ] && [ "$(wc -l < a/train.csv)" = 4 ]; then pass net_train_runs
else fail net_train_runs "exit $rc"; show train.err; fi
head -1 a/train.csv | grep -q "step,epoch,time_s,lr,objective,batch_error,grad_norm" && pass net_csv_header ||
  fail net_csv_header "$(head -1 a/train.csv)"
run eval "$bin" net eval --checkpoint a/net.ckpt --data bars-stripes --split test --device cpu
# col FILE NAME [ROW]: the value of column NAME in the last (or ROW-th) data row of a CSV log
col() { python3 -c 'import sys,csv; rows=list(csv.DictReader(open(sys.argv[1]))); print(rows[int(sys.argv[3])][sys.argv[2]])' "$1" "$2" "${3:--1}"; }
want=$(col a/train.csv test_error)
got=$(sed -nE 's/^error ([0-9.eE+-]+).*/\1/p' eval.out)
if [ "$rc" = 0 ] && python3 -c "import sys; sys.exit(0 if abs($got-$want) <= 1e-4*max(1,abs($want)) else 1)"; then
  pass net_eval_matches_log; else fail net_eval_matches_log "eval error '$got' vs log test_error '$want' (exit $rc)"; show eval.err; fi

run eval_avg "$bin" net eval --checkpoint a/net.ckpt --data bars-stripes --split train --average --device cpu
want=$(col a/train.csv train_error_avg)
got=$(sed -nE 's/^error ([0-9.eE+-]+).*/\1/p' eval_avg.out)
if [ "$rc" = 0 ] && grep -q "iterate average" eval_avg.out &&
   python3 -c "import sys; sys.exit(0 if abs($got-$want) <= 1e-4*max(1,abs($want)) else 1)"; then
  pass net_eval_average_matches_log; else fail net_eval_average_matches_log "eval '$got' vs log train_error_avg '$want' (exit $rc)"; show eval_avg.err; fi
for opt in sgd adam rmsprop; do
  run "opt_$opt" "$bin" net train --device cpu --data bars-stripes --layers 16-8-16 --batch 10 --optimizer $opt --lr 0.01 --steps 20 --log-every 10 --out "o_$opt"
  if [ "$rc" = 0 ] && grep -q "$opt lr" "opt_$opt.err"; then pass "net_optimizer_$opt"; else fail "net_optimizer_$opt" "exit $rc"; show "opt_$opt.err"; fi
done
expect_exit net_bad_mu_max 2 "--mu-max" "$bin" "${T[@]}" --mu-max 1.5 --out e9

# ---- exact resume ------------------------------------------------------------------------------------
run full "$bin" "${T[@]}" --steps 40 --log-every 10 --out full
run half "$bin" "${T[@]}" --steps 20 --log-every 10 --out half
run rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume half/net.ckpt --steps 40 --log-every 10 --out half
if [ "$rc" = 0 ] && cmp -s full/net.ckpt half/net.ckpt; then pass net_resume_identical_checkpoint
else fail net_resume_identical_checkpoint "exit $rc"; show rest.err; fi
# the CSVs agree apart from the clock columns (time_s, train_s, train_cpu_s)
strip() { python3 -c 'import sys,csv
r=list(csv.reader(open(sys.argv[1]))); drop=[i for i,n in enumerate(r[0]) if n in ("time_s","train_s","train_cpu_s")]
for row in r: print(",".join(v for i,v in enumerate(row) if i not in drop))' "$1"; }
if diff <(strip full/train.csv) <(strip half/train.csv) >/dev/null; then pass net_resume_same_log
else fail net_resume_same_log "$(diff <(strip full/train.csv) <(strip half/train.csv) | head -4)"; fi
expect_exit net_resume_fixed_option 2 "--lr cannot be combined with --resume" "$bin" net train --resume half/net.ckpt --lr 0.1 --out half

# ---- classification from IDX files -----------------------------------------------------------------
python3 - <<'PY'
import struct, random
random.seed(1)
n, h, w = 90, 4, 4
imgs, labs = bytearray(), bytearray()
for i in range(n):
    k = i % 3
    for r in range(h):
        for c in range(w):
            on = (k == 0 and r < 2) or (k == 1 and c < 2) or (k == 2 and r == c)
            imgs.append(200 if on else random.randint(0, 40))
    labs.append(k)
open('img.idx', 'wb').write(struct.pack('>BBBB', 0, 0, 8, 3) + struct.pack('>iii', n, h, w) + bytes(imgs))
open('lab.idx', 'wb').write(struct.pack('>BBBB', 0, 0, 8, 1) + struct.pack('>i', n) + bytes(labs))
# float32 images with a NaN, and a truncated file
vals = [0.5] * (n * h * w); vals[37] = float('nan')
open('nan.idx', 'wb').write(struct.pack('>BBBB', 0, 0, 0x0D, 3) + struct.pack('>iii', n, h, w) + struct.pack('>%df' % len(vals), *vals))
open('trunc.idx', 'wb').write(open('img.idx', 'rb').read()[:200])
PY
run cls "$bin" net train --device cpu --data img.idx,lab.idx --test-data img.idx,lab.idx --task classify --layers 16-12-3 \
  --batch 30 --lr 0.5 --steps 60 --log-every 20 --out cls
first=$(col cls/train.csv test_error 0); last=$(col cls/train.csv test_error)
if [ "$rc" = 0 ] && python3 -c "import sys; sys.exit(0 if $last < 0.7*$first else 1)"; then pass net_classify_learns
else fail net_classify_learns "exit $rc, test error $first -> $last"; show cls.err; fi
# misclassification rates: percentages of the 90 cases; the same data as train and test set gives equal rates
if python3 - cls/train.csv <<'PY'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
a = [float(x["test_misclass"]) for x in r]; b = [float(x["train_misclass"]) for x in r]
assert all(0 <= v <= 100 for v in a), a
assert a == b, (a, b)
assert all(abs(v * 90 / 100 - round(v * 90 / 100)) < 1e-6 for v in a), "not a count of the 90 cases"
PY
then pass net_classify_misclass; else fail net_classify_misclass "$(head -3 cls/train.csv)"; fi
# natural gradient on a classifier with the unlabeled pool (the cases beyond --limit) as its metric
run cls_ngd "$bin" net train --device cpu --data img.idx,lab.idx --task classify --layers 16-12-3 --limit 60 \
  --optimizer ngd --lr 0.5 --metric unlabeled --metric-batch 20 --batch 30 --steps 30 --log-every 1 --out cls_ngd
if [ "$rc" = 0 ] && python3 -c "
import csv; r = list(csv.DictReader(open('cls_ngd/train.csv')))
assert float(r[-1]['train_misclass']) < float(r[0]['train_misclass']) or float(r[-1]['train_misclass']) == 0"; then
  pass net_classify_ngd_unlabeled; else fail net_classify_ngd_unlabeled "exit $rc"; show cls_ngd.err; fi
expect_exit net_classify_output_layer 2 "output layer (layer 2) has 4 units but the labels have 3 classes" \
  "$bin" net train --device cpu --data img.idx,lab.idx --task classify --layers 16-12-4 --out cls2
expect_exit net_classify_needs_labels 2 "needs labels" "$bin" net train --device cpu --data img.idx --task classify --layers 16-3 --out cls3

# ---- usage errors and bad files -------------------------------------------------------------------------
expect_exit net_input_layer 2 "input layer (layer 0) has 15 units but the data has dimension 16" \
  "$bin" net train --device cpu --data bars-stripes --layers 15-8-15 --out e1
expect_exit net_bad_spec 2 "'x'" "$bin" net train --device cpu --data bars-stripes --layers 16-x-16 --out e2
expect_exit net_mismatched_loss 2 "matching" "$bin" net train --device cpu --data bars-stripes --layers 16-8-16:relu --out e3
expect_exit net_unknown_preset 2 "unknown network preset" "$bin" net train --device cpu --data bars-stripes --preset nope --out e4
expect_exit net_preset_vs_data 2 "input layer (layer 0) has 784 units" "$bin" net train --device cpu --data bars-stripes --preset mnist-autoencoder --out e5
expect_exit net_batch_too_big 2 "larger than the 30 training cases" "$bin" "${T[@]}" --batch 31 --out e6
expect_exit net_nan_data 1 "nan.idx" "$bin" net train --device cpu --data nan.idx --layers 16-4-16 --out e7
expect_exit net_truncated_data 1 "trunc.idx" "$bin" net train --device cpu --data trunc.idx --layers 16-4-16 --out e8
head -c 300 a/net.ckpt > cut.ckpt
expect_exit net_truncated_checkpoint 1 "cut.ckpt" "$bin" net eval --checkpoint cut.ckpt --data bars-stripes --device cpu
run rbm "$bin" rbm train --device cpu --data bars-stripes --hidden 4 --batch 10 --particles 10 --steps 2 --out rbm
expect_exit net_eval_rbm_checkpoint 1 "not a network" "$bin" net eval --checkpoint rbm/rbm.ckpt --data bars-stripes --device cpu
expect_exit net_resume_rbm_checkpoint 1 "not a network" "$bin" net train --device cpu --data bars-stripes --resume rbm/rbm.ckpt --out rbm2
expect_exit net_refuses_overwrite 2 "already holds a run" "$bin" "${T[@]}" --steps 5 --out a

# ---- divergence: exit 1 naming the update; no NaN is ever written as a checkpoint ---------------------
run div "$bin" net train --device cpu --data bars-stripes --layers 16-8-16:linear --loss squared --lr 1e20 --steps 20 \
  --batch 10 --checkpoint-every 1 --out div
if [ "$rc" = 1 ] && grep -qE "update [0-9]+: network (objective|parameters)" div.err; then pass net_divergence_stops
else fail net_divergence_stops "exit $rc"; show div.err; fi
if [ ! -e div/net.ckpt ] || "$bin" net eval --checkpoint div/net.ckpt --data bars-stripes --device cpu >/dev/null 2>div_eval.err; then
  pass net_divergence_checkpoint_loads; else fail net_divergence_checkpoint_loads; show div_eval.err; fi

# ---- export ---------------------------------------------------------------------------------------------

# ---- K-FAC -------------------------------------------------------------------------------------------
# exact resume across inverse refreshes, gamma choices, LM steps and a growing batch (T1 2, T2 6, T3 3;
# m from 8 to the whole set at update 10; resumed after update 10, between two refreshes), both approximations
K=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --optimizer kfac --T1 2 --T2 6 --T3 3
   --batch-schedule exp --m1 8 --m-full 10 --average 0.9 --threads 1)
for ap in blockdiag tridiag; do
  run "kf_full_$ap" "$bin" "${K[@]}" --kfac-approx $ap --steps 25 --log-every 5 --out "kf_full_$ap"
  run "kf_half_$ap" "$bin" "${K[@]}" --kfac-approx $ap --steps 10 --log-every 5 --out "kf_half_$ap"
  run "kf_rest_$ap" "$bin" net train --device cpu --data bars-stripes --threads 1 --resume "kf_half_$ap/net.ckpt" --steps 25 --log-every 5 --out "kf_half_$ap"
  if [ "$rc" = 0 ] && cmp -s "kf_full_$ap/net.ckpt" "kf_half_$ap/net.ckpt"; then pass "net_kfac_${ap}_resume_identical_checkpoint"
  else fail "net_kfac_${ap}_resume_identical_checkpoint" "exit $rc"; show "kf_rest_$ap.err"; fi
  kstrip() { python3 -c 'import sys,csv
r=list(csv.reader(open(sys.argv[1]))); drop=[i for i,n in enumerate(r[0]) if n.endswith("_s")]
for row in r: print(",".join(v for i,v in enumerate(row) if i not in drop))' "$1"; }
  if diff <(kstrip "kf_full_$ap/train.csv") <(kstrip "kf_half_$ap/train.csv") >/dev/null; then pass "net_kfac_${ap}_resume_same_log"
  else fail "net_kfac_${ap}_resume_same_log" "$(diff <(kstrip "kf_full_$ap/train.csv") <(kstrip "kf_half_$ap/train.csv") | head -4)"; fi
  # the log has K-FAC's columns and the objective went down
  if python3 - "kf_full_$ap/train.csv" <<'PY'
import csv, sys, math
r = list(csv.DictReader(open(sys.argv[1])))
for k in ("lambda", "gamma", "alpha", "mu", "rho", "qmodel", "inv_retries", "stats_s", "inverse_s", "apply_s", "quad_s"):
    assert k in r[0], k
assert float(r[-1]["train_objective"]) < float(r[0]["train_objective"]), "objective did not decrease"
assert int(float(r[-1]["cases"])) > 25 * 8, "cases do not follow the growing batches"
assert all(float(x["qmodel"]) <= 0 for x in r), "the quadratic model predicted an increase"
PY
  then pass "net_kfac_${ap}_log"; else fail "net_kfac_${ap}_log" "$(tail -2 kf_full_$ap.err)"; fi
done
# asynchronous refreshes (staleness 2): a resume with a refresh in flight at the checkpoint (launched at
# update 9, used at 11) recomputes it and continues exactly
run kfa_full "$bin" "${K[@]}" --kfac-async 2 --steps 25 --log-every 5 --out kfa_full
run kfa_half "$bin" "${K[@]}" --kfac-async 2 --steps 10 --log-every 5 --out kfa_half
run kfa_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume kfa_half/net.ckpt --steps 25 --log-every 5 --out kfa_half
if [ "$rc" = 0 ] && cmp -s kfa_full/net.ckpt kfa_half/net.ckpt; then pass net_kfac_async_resume_identical_checkpoint
else fail net_kfac_async_resume_identical_checkpoint "exit $rc"; show kfa_rest.err; fi
if [ "$rc" = 0 ] && ! cmp -s kfa_full/net.ckpt kf_full_blockdiag/net.ckpt; then pass net_kfac_async_differs
else fail net_kfac_async_differs "staleness 2 gave the synchronous checkpoint"; fi
# a checkpoint written before the first Levenberg-Marquardt check (rho not yet computed, T1 = 5) is
# valid, and resuming from it continues exactly
KE=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --optimizer kfac --batch 10 --threads 1 --log-every 1)
run kfe_full "$bin" "${KE[@]}" --steps 7 --out kfe_full
run kfe_half "$bin" "${KE[@]}" --steps 3 --out kfe_half
if [ "$rc" = 0 ]; then pass net_kfac_checkpoint_before_lm; else fail net_kfac_checkpoint_before_lm "exit $rc"; show kfe_half.err; fi
run kfe_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --log-every 1 --resume kfe_half/net.ckpt --steps 7 --out kfe_half
if [ "$rc" = 0 ] && cmp -s kfe_full/net.ckpt kfe_half/net.ckpt; then pass net_kfac_resume_before_lm_identical
else fail net_kfac_resume_before_lm_identical "exit $rc"; show kfe_rest.err; fi
expect_exit net_kfac_bad_async 2 "--kfac-async" "$bin" "${K[@]}" --kfac-async 3 --out kf_e5
expect_exit net_kfac_bad_T2 2 "--T2" "$bin" "${K[@]}" --T2 4 --out kf_e1
expect_exit net_kfac_bad_tau 2 "--tau1" "$bin" "${K[@]}" --tau1 0 --out kf_e2
expect_exit net_kfac_bad_lambda 2 "--lambda0" "$bin" "${K[@]}" --lambda0 -1 --out kf_e3
expect_exit net_kfac_batchnorm 1 "+bn" "$bin" net train --device cpu --data bars-stripes --layers 16-8+bn-16 --batch 10 --optimizer kfac --out kf_e4
expect_exit net_kfac_resume_fixed 2 "--kfac-approx cannot be combined with --resume" "$bin" net train --resume kf_half_blockdiag/net.ckpt --kfac-approx tridiag --out kf_half_blockdiag

# ---- truncated Newton: NGD, NGD-L, NCG-L, NCG-F, HF --------------------------------------------------
# exact resume of every method (solver warm starts, previous directions, lambda, the metric stream's cursor);
# ncg-l and hf with a separate metric batch, ngd with the unlabeled pool beyond --limit
N=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --cg-iters 8)
for m in ngd ngd-l ncg-l ncg-f hf; do
  extra=()
  case $m in ncg-l|hf) extra=(--metric separate --metric-batch 7);; ngd) extra=(--metric unlabeled --metric-batch 5 --limit 20 --lr 0.5);; esac
  run "tn_full_$m" "$bin" "${N[@]}" --optimizer $m "${extra[@]}" --steps 12 --log-every 3 --out "tn_full_$m"
  run "tn_half_$m" "$bin" "${N[@]}" --optimizer $m "${extra[@]}" --steps 6 --log-every 3 --out "tn_half_$m"
  lim=(); [ $m = ngd ] && lim=(--limit 20)
  run "tn_rest_$m" "$bin" net train --device cpu --data bars-stripes --threads 1 "${lim[@]}" --resume "tn_half_$m/net.ckpt" --steps 12 --log-every 3 --out "tn_half_$m"
  if [ "$rc" = 0 ] && cmp -s "tn_full_$m/net.ckpt" "tn_half_$m/net.ckpt"; then pass "net_tn_${m}_resume_identical_checkpoint"
  else fail "net_tn_${m}_resume_identical_checkpoint" "exit $rc"; show "tn_rest_$m.err"; show "tn_full_$m.err"; fi
  if python3 - "tn_full_$m/train.csv" $m <<'PY'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
for k in ("lambda", "rho", "alpha", "beta", "cg_iters", "cg_stop", "rel_res", "hf_iter", "evals", "solve_s", "search_s"):
    assert list(csv.reader(open(sys.argv[1])))[0].count(k) == 1, "column %s twice" % k
    assert k in r[0], k
assert float(r[-1]["train_objective"]) < float(r[0]["train_objective"]), "objective did not decrease"
assert all(0 < int(float(x["cg_iters"])) <= 8 for x in r), "solver iterations outside 1 .. --cg-iters"
if sys.argv[2] == "ncg-f": assert any(float(x["beta"]) > 0 for x in r), "Polak-Ribiere never conjugated"
PY
  then pass "net_tn_${m}_log"; else fail "net_tn_${m}_log" "$(tail -2 tn_full_$m.err)"; fi
done
if ! cmp -s tn_full_ngd-l/net.ckpt tn_full_ncg-f/net.ckpt; then pass net_tn_methods_differ; else fail net_tn_methods_differ "ngd-l = ncg-f"; fi
expect_exit net_tn_metric_needs_batch 2 "--metric-batch" "$bin" "${N[@]}" --optimizer ngd --metric separate --out tn_e1
expect_exit net_tn_unlabeled_needs_limit 2 "--limit" "$bin" "${N[@]}" --optimizer ngd --metric unlabeled --metric-batch 5 --out tn_e2
expect_exit net_tn_unlabeled_empty_pool 2 "leaves no training cases" "$bin" "${N[@]}" --optimizer ngd --metric unlabeled --metric-batch 5 --limit 30 --out tn_e3
expect_exit net_tn_hessian_only_hf 2 "--curvature hessian" "$bin" "${N[@]}" --optimizer ngd --curvature hessian --out tn_e4
expect_exit net_tn_bad_decay 2 "--hf-decay" "$bin" "${N[@]}" --optimizer hf --hf-decay 1.5 --out tn_e5
expect_exit net_tn_hf_minres 2 "minres-qlp" "$bin" "${N[@]}" --optimizer hf --tn-solver minres-qlp --out tn_e6
expect_exit net_tn_lambda0_not_nag 2 "--lambda0" "$bin" "${N[@]}" --optimizer nag --lambda0 3 --out tn_e7
expect_exit net_tn_metric_batch_too_big 2 "--metric-batch" "$bin" "${N[@]}" --optimizer ngd --metric separate --metric-batch 1000 --out tn_e8
expect_exit net_tn_hf_precond_bn 1 "batch normalisation" "$bin" net train --device cpu --data bars-stripes --layers 16-8+bn-16 --batch 10 --optimizer hf --out tn_e9
expect_exit net_tn_resume_fixed 2 "--metric cannot be combined with --resume" "$bin" net train --resume tn_half_hf/net.ckpt --metric same --out tn_half_hf

# ---- PRONG / PRONG+ ------------------------------------------------------------------------------------
# exact resume across reparametrisations (every 4 updates on 20 cases; resumed at update 10, between two),
# plain and with batch normalisation (PRONG+), whitened and projected starts, the canonical form (default)
# and the whitened coordinates (--prong-form whitened); the log counts the refreshes
PG=(net train --device cpu --data bars-stripes --batch 10 --lr 0.05 --momentum 0.9 --threads 1 --optimizer prong --prong-T 4 --prong-ns 20)
for v in plain bn white; do
  case $v in
    plain) L=(--layers 16-8-3:linear-8-16 --prong-fanin 1) ;;
    bn) L=(--layers 16-8+bn-3:linear-8+bn-16) ;;
    white) L=(--layers 16-8+bn-3:linear-8-16 --prong-form whitened) ;;
  esac
  run "pg_full_$v" "$bin" "${PG[@]}" "${L[@]}" --steps 25 --log-every 5 --out "pg_full_$v"
  run "pg_half_$v" "$bin" "${PG[@]}" "${L[@]}" --steps 10 --log-every 5 --out "pg_half_$v"
  run "pg_rest_$v" "$bin" net train --device cpu --data bars-stripes --threads 1 --resume "pg_half_$v/net.ckpt" --steps 25 --log-every 5 --out "pg_half_$v"
  if [ "$rc" = 0 ] && cmp -s "pg_full_$v/net.ckpt" "pg_half_$v/net.ckpt"; then pass "net_prong_${v}_resume_identical_checkpoint"
  else fail "net_prong_${v}_resume_identical_checkpoint" "exit $rc"; show "pg_rest_$v.err"; fi
  pstrip() { python3 -c 'import sys,csv
r=list(csv.reader(open(sys.argv[1]))); drop=[i for i,n in enumerate(r[0]) if n.endswith("_s")]
for row in r: print(",".join(v for i,v in enumerate(row) if i not in drop))' "$1"; }
  if diff <(pstrip "pg_full_$v/train.csv") <(pstrip "pg_half_$v/train.csv") >/dev/null; then pass "net_prong_${v}_resume_same_log"
  else fail "net_prong_${v}_resume_same_log" "$(diff <(pstrip "pg_full_$v/train.csv") <(pstrip "pg_half_$v/train.csv") | head -4)"; fi
  if python3 - "pg_full_$v/train.csv" <<'PY'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert [int(float(x["prong_refreshes"])) for x in r] == [2, 3, 4, 5, 7], [x["prong_refreshes"] for x in r]
assert float(r[-1]["train_objective"]) < float(r[0]["train_objective"]), "objective did not decrease"
PY
  then pass "net_prong_${v}_log"; else fail "net_prong_${v}_log" "$(tail -2 pg_full_$v.err)"; fi
done
if grep -q "PRONG+ (batch norm)" pg_full_bn.err && grep -q "whitened initialisation" pg_full_bn.err; then pass net_prong_plus_banner
else fail net_prong_plus_banner; show pg_full_bn.err; fi
expect_exit net_prong_bad_eps 2 "--prong-eps" "$bin" "${PG[@]}" --layers 16-8-16 --prong-eps 0 --out pg_e1
expect_exit net_prong_bad_T 2 "--prong-T" "$bin" "${PG[@]}" --layers 16-8-16 --prong-T 0 --out pg_e2
expect_exit net_prong_ns_too_big 2 "--prong-ns" "$bin" "${PG[@]}" --layers 16-8-16 --prong-ns 100000 --out pg_e3
expect_exit net_prong_bad_form 2 "--prong-form" "$bin" "${PG[@]}" --layers 16-8-16 --prong-form diagonal --out pg_e4
# a checkpoint of the whitened coordinates records its form: the net.whiten field says which
if python3 - pg_full_white/net.ckpt pg_full_plain/net.ckpt <<'PY'
import sys
a, b = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
assert b"whiten_K" not in a and b"whiten_K" in b, "K state only in the canonical form's checkpoint"
PY
then pass net_prong_form_checkpoint; else fail net_prong_form_checkpoint; fi
expect_exit net_prong_resume_fixed 2 "--prong-T cannot be combined with --resume" "$bin" net train --resume pg_half_plain/net.ckpt --prong-T 5 --out pg_half_plain

run export "$bin" export a/net.ckpt --out a/net.safetensors
# PyTorch's layout: W as (out, in) row-major
if [ "$rc" = 0 ] && python3 - a/net.safetensors >rd.out 2>&1 <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
want = {'W1': [8, 16], 'b1': [8], 'W2': [3, 8], 'b2': [3], 'W3': [8, 3], 'b3': [8], 'W4': [16, 8], 'b4': [16]}
got = {k: v['shape'] for k, v in h.items() if k != '__metadata__'}
if got != want:
    print('shapes', got); sys.exit(1)
PY
then pass net_export_safetensors; else fail net_export_safetensors "exit $rc"; show export.err; show rd.out; fi

# ---- --cuda-graph: ignored on the CPU with a note (same checkpoint bit for bit); a bad value is a usage error
run graph0 "$bin" "${T[@]}" --steps 30 --log-every 10 --out g0
run graph1 "$bin" "${T[@]}" --steps 30 --log-every 10 --out g1 --cuda-graph 1
if [ "$rc" = 0 ] && grep -q -- "--cuda-graph is ignored on the cpu backend" graph1.err && cmp -s g0/net.ckpt g1/net.ckpt; then
  pass net_cuda_graph_cpu_ignored; else fail net_cuda_graph_cpu_ignored "exit $rc"; show graph1.err; fi
# PRONG (captured between reparametrisations on a GPU): on the CPU the same note and the same checkpoint
run pgraph0 "$bin" "${PG[@]}" --layers 16-8+bn-3:linear-8-16 --steps 10 --log-every 5 --out pg0
run pgraph1 "$bin" "${PG[@]}" --layers 16-8+bn-3:linear-8-16 --steps 10 --log-every 5 --out pg1 --cuda-graph 1
if [ "$rc" = 0 ] && grep -q -- "--cuda-graph is ignored on the cpu backend" pgraph1.err && cmp -s pg0/net.ckpt pg1/net.ckpt; then
  pass net_prong_cuda_graph_cpu_ignored; else fail net_prong_cuda_graph_cpu_ignored "exit $rc"; show pgraph1.err; fi
run graph2 "$bin" "${T[@]}" --steps 3 --out g2 --cuda-graph 2
if [ "$rc" = 2 ] && grep -q -- "--cuda-graph 2: must be 0 or 1" graph2.err; then pass net_cuda_graph_bad_value
else fail net_cuda_graph_bad_value "exit $rc"; show graph2.err; fi
run graphh "$bin" net train --help
if grep -q -- "--cuda-graph" graphh.out; then pass net_cuda_graph_help; else fail net_cuda_graph_help "not in --help"; fi

echo "RESULT passed=$passed failed=$failed skipped=$skipped"
[ "$failed" = 0 ]
