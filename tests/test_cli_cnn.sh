#!/usr/bin/env bash
# test_cli_cnn.sh BUILD: end-to-end tests of `natgrad cnn train` with BUILD/natgrad on tiny data
# written here (8x8 IDX images of 3 classes: a bright bar whose row gives the class, plus noise;
# CIFAR-10 binary records). Covers: help; learning (test misclassification falls); exact resume
# (16 updates in one go vs 8 + --resume to 16, with PRONG whitening every 3 updates, batch norm and
# augmentation: byte-identical checkpoints, identical CSV apart from clocks); --cuda-graph ignored on
# the CPU with a note (byte-identical checkpoints), a bad value refused; a fixed option with
# --resume refused; usage errors naming the layer / option (exit 2); CIFAR-10 files: a valid one
# trains, truncated / bad-label / empty / garbage files are refused naming the file (exit 1);
# truncated Newton (--optimizer ngd learns with batch norm, hf and ncg-f run, hf on the Hessian
# learns, ngd-l resumes exactly through PRONG whitening; SGD's options refused with it, its options
# refused with sgd, the Hessian with ngd refused).
# Everything on the CPU in a mktemp -d directory removed at exit. Ends with "RESULT passed=P failed=F skipped=S".
. "$(dirname "$0")/cli_lib.sh"
set -u
build=${1:-build}
bin=$build/natgrad
passed=0 failed=0 skipped=0
if [ ! -x "$bin" ]; then
  echo "FAIL natgrad binary: $bin not found"; echo "RESULT passed=0 failed=1 skipped=0"; exit 1
fi
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_cli_cnn.XXXXXX") || { echo "RESULT passed=0 failed=1 skipped=0"; exit 1; }
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

col() { python3 -c 'import sys,csv; rows=list(csv.DictReader(open(sys.argv[1]))); print(rows[int(sys.argv[3])][sys.argv[2]])' "$1" "$2" "${3:--1}"; }

python3 - <<'PY'
import struct, random
random.seed(7)
n, h, w = 240, 8, 8
imgs, labs = [], []
for i in range(n):
    k = i % 3
    img = [random.randint(0, 60) for _ in range(h * w)]
    r = 1 + 3 * k
    for c in range(w): img[r * w + c] = 230
    imgs += img; labs.append(k)
open('img.idx', 'wb').write(struct.pack('>BBBB', 0, 0, 8, 3) + struct.pack('>iii', n, h, w) + bytes(imgs))
open('lab.idx', 'wb').write(struct.pack('>BBBB', 0, 0, 8, 1) + struct.pack('>i', n) + bytes(labs))
# CIFAR-10 binary: 40 records of label + 3072 pixels
rec = b''.join(bytes([i % 10]) + bytes(random.randint(0, 255) for _ in range(3072)) for i in range(40))
open('c10.bin', 'wb').write(rec)
open('c10_trunc.bin', 'wb').write(rec[:3073 * 3 + 100])
bad = bytearray(rec); bad[3073 * 5] = 11
open('c10_label.bin', 'wb').write(bytes(bad))
open('c10_empty.bin', 'wb').write(b'')
open('c10_garbage.bin', 'wb').write(bytes(random.randint(0, 255) for _ in range(5000)))
PY

T=(cnn train --device cpu --threads 1 --data img.idx,lab.idx --test-data img.idx,lab.idx --batch 24 --chunk 12 --eval-n 120)

# ---- help ----------------------------------------------------------------------------------------
run help "$bin" cnn train --help
if [ "$rc" = 0 ] && grep -q -- "--layers" help.out && grep -q -- "--whiten-every" help.out && grep -q "CIFAR-10" help.out; then
  pass cnn_help; else fail cnn_help "exit $rc"; show help.out; fi
run top "$bin" --help
if grep -q "cnn train" top.out; then pass cnn_in_top_help; else fail cnn_in_top_help; fi

# ---- learning ------------------------------------------------------------------------------------
run learn "$bin" "${T[@]}" --layers c4-relu-mp2-d3 --lr 0.05 --steps 60 --log-every 20 --out learn
if [ "$rc" = 0 ]; then
  first=$(col learn/train.csv test_misclass 0); last=$(col learn/train.csv test_misclass -1)
  if python3 -c "import sys; sys.exit(0 if $last <= 0.1 and $last < $first + 1e-9 else 1)"; then pass cnn_learns
  else fail cnn_learns "test_misclass $first -> $last"; fi
else fail cnn_learns "exit $rc"; show learn.err; fi
head -1 learn/train.csv | grep -q "train_misclass" && head -1 learn/train.csv | grep -q "test_misclass" \
  && pass cnn_csv_columns || fail cnn_csv_columns "$(head -1 learn/train.csv)"

# ---- --profile: the phase table and trace, and the same checkpoint as without it -------------------
run prof "$bin" "${T[@]}" --layers c4-relu-mp2-d3 --lr 0.05 --steps 6 --log-every 3 --out prof --profile
run noprof "$bin" "${T[@]}" --layers c4-relu-mp2-d3 --lr 0.05 --steps 6 --log-every 3 --out noprof
if grep -qE '^train step +step +6 ' prof.out && [ -s prof/profile.csv ] && [ -s prof/profile.json ] &&
   cmp -s prof/cnn.ckpt noprof/cnn.ckpt && [ ! -e noprof/profile.json ]; then pass cnn_profile
else fail cnn_profile "table, files or identical checkpoint missing"; show prof.out 20; show prof.err; fi
# --tf32 is ignored on the CPU backend, with a note, and changes nothing
run tf32 "$bin" "${T[@]}" --layers c4-relu-mp2-d3 --lr 0.05 --steps 6 --log-every 3 --out tf32 --tf32
if [ "$rc" = 0 ] && grep -q -- "--tf32 is ignored on the cpu backend" tf32.err && cmp -s tf32/cnn.ckpt noprof/cnn.ckpt; then pass cnn_tf32_cpu_ignored
else fail cnn_tf32_cpu_ignored "exit $rc"; show tf32.err; fi
# --cuda-graph is ignored on the CPU backend, with a note, and changes nothing (PRONG whitening, batch
# norm and augmentation: byte-identical checkpoints); a bad value is a usage error
G=(--layers c4-bn-relu-w-c4k3p0-relu-mp2-d3 --whiten-every 3 --whiten-samples 12 --augment-pad 1 --flip 1 --lr 0.05 --steps 8 --log-every 4)
run cg0 "$bin" "${T[@]}" "${G[@]}" --out cg0
run cg1 "$bin" "${T[@]}" "${G[@]}" --out cg1 --cuda-graph 1
if [ "$rc" = 0 ] && grep -q -- "--cuda-graph is ignored on the cpu backend" cg1.err && cmp -s cg0/cnn.ckpt cg1/cnn.ckpt; then pass cnn_cuda_graph_cpu_ignored
else fail cnn_cuda_graph_cpu_ignored "exit $rc"; show cg1.err; fi
expect_exit cnn_cuda_graph_bad_value 2 "--cuda-graph 2: must be 0 or 1" "$bin" "${T[@]}" --layers c4-d3 --steps 2 --out cg2 --cuda-graph 2
grep -q -- "--cuda-graph" help.out && pass cnn_cuda_graph_help || fail cnn_cuda_graph_help "not in cnn train --help"

# ---- exact resume (PRONG whitening every 3 updates, batch norm, crops and mirrors, waterfall) ----
R=(--layers c4-bn-relu-w-c4k3p0-relu-mp2-d3 --whiten-every 3 --whiten-samples 12 --augment-pad 1 --flip 1 --lr-drop-every 5 --lr-drop 0.5)
run full "$bin" "${T[@]}" "${R[@]}" --steps 16 --log-every 4 --out full
run half "$bin" "${T[@]}" "${R[@]}" --steps 8 --log-every 4 --out half
run rest "$bin" cnn train --device cpu --threads 1 --data img.idx,lab.idx --test-data img.idx,lab.idx --eval-n 120 \
  --resume half/cnn.ckpt --steps 16 --log-every 4 --out half
if [ "$rc" = 0 ] && [ -s full/cnn.ckpt ] && cmp -s full/cnn.ckpt half/cnn.ckpt; then pass cnn_resume_identical_checkpoint
else fail cnn_resume_identical_checkpoint "exit $rc"; show rest.err; show full.err; fi
strip() { python3 -c 'import sys,csv
r=list(csv.reader(open(sys.argv[1]))); drop=[i for i,n in enumerate(r[0]) if n in ("time_s","train_s")]
for row in r: print(",".join(v for i,v in enumerate(row) if i not in drop))' "$1"; }
if [ -s full/train.csv ] && diff <(strip full/train.csv) <(strip half/train.csv) >/dev/null; then pass cnn_resume_same_log
else fail cnn_resume_same_log "$(diff <(strip full/train.csv) <(strip half/train.csv) | head -4)"; fi
# the logged lr(t) = 0.05 * 0.5^floor(t / 5): 0.05 at t = 4, 0.05 / 8 at t = 16
if python3 -c "
import csv; r=list(csv.DictReader(open('full/train.csv'))); lr=[float(x['lr']) for x in r]
import sys; sys.exit(0 if abs(lr[0]-0.05)<1e-9 and abs(lr[-1]-0.05*0.5**3)<1e-9 else 1)"; then pass cnn_waterfall_lr
else fail cnn_waterfall_lr "$(cut -d, -f1-4 full/train.csv | head -5)"; fi
expect_exit cnn_resume_fixed_option 2 "--lr cannot be combined with --resume" "$bin" cnn train --resume half/cnn.ckpt --lr 0.1 --out half

# ---- truncated Newton on the cnn's curvature products ----------------------------------------------
# ngd (fixed step 1, CG on G v, Levenberg-Marquardt) with batch norm: the objective of the first batch
# (ln 3 = 1.10 at the start, 0.88 measured) falls below 0.05 in 6 updates, rho (actual / predicted
# decrease) is positive on every update and CG ran; hf and ncg-f run; the log has the solver's columns
run tn_ngd "$bin" "${T[@]}" --layers c4-bn-relu-mp2-d3 --optimizer ngd --steps 6 --log-every 1 --out tn_ngd
if [ "$rc" = 0 ] && python3 -c "
import csv, sys; r=list(csv.DictReader(open('tn_ngd/train.csv')))
ok = float(r[0]['objective']) > 0.5 and float(r[-1]['eval_objective']) < 0.05 and all(float(x['rho']) > 0 and int(x['cg_iters']) >= 1 for x in r)
sys.exit(0 if ok else 1)"; then pass cnn_tn_ngd_learns
else fail cnn_tn_ngd_learns "exit $rc"; cut -d, -f1,5,11,15,16,19 tn_ngd/train.csv 2>/dev/null; show tn_ngd.err; fi
for m in hf ncg-f; do
  run "tn_$m" "$bin" "${T[@]}" --layers c4-bn-relu-mp2-d3 --optimizer "$m" --steps 3 --log-every 1 --out "tn_$m"
  if [ "$rc" = 0 ] && grep -q "^3," "tn_$m/train.csv"; then pass "cnn_tn_${m}_runs"; else fail "cnn_tn_${m}_runs" "exit $rc"; show "tn_$m.err"; fi
done
# exact resume of ngd-l (line searches) through PRONG whitening every 3 updates and batch norm:
# byte-identical checkpoints, the same log apart from the clocks (time_s, train_s, solve_s, search_s)
R=(--layers c4-bn-relu-w-c4k3p0-relu-mp2-d3 --whiten-every 3 --whiten-samples 12 --optimizer ngd-l --tn-iters 5)
run tfull "$bin" "${T[@]}" "${R[@]}" --steps 8 --log-every 2 --out tfull
run thalf "$bin" "${T[@]}" "${R[@]}" --steps 4 --log-every 2 --out thalf
run trest "$bin" cnn train --device cpu --threads 1 --data img.idx,lab.idx --test-data img.idx,lab.idx --eval-n 120 \
  --resume thalf/cnn.ckpt --steps 8 --log-every 2 --out thalf
tstrip() { strip "$1" | python3 -c 'import sys,csv
r=list(csv.reader(sys.stdin)); drop=[i for i,n in enumerate(r[0]) if n in ("solve_s","search_s")]
for row in r: print(",".join(v for i,v in enumerate(row) if i not in drop))'; }
if [ "$rc" = 0 ] && [ -s tfull/cnn.ckpt ] && cmp -s tfull/cnn.ckpt thalf/cnn.ckpt && diff <(tstrip tfull/train.csv) <(tstrip thalf/train.csv) >/dev/null &&
   grep -q "ngd-l" trest.err; then pass cnn_tn_resume_identical
else fail cnn_tn_resume_identical "exit $rc"; show trest.err; fi
# hf on the Hessian (R{backprop}, through batch norm too): runs and learns
run tn_hess "$bin" "${T[@]}" --layers c4-bn-tanh-mp2-d3 --optimizer hf --curvature hessian --steps 4 --log-every 1 --out tn_hess
if [ "$rc" = 0 ] && grep -q "Hessian products" tn_hess.err && python3 -c "
import csv, sys; r=list(csv.DictReader(open('tn_hess/train.csv')))
sys.exit(0 if float(r[-1]['eval_objective']) < 0.5 * float(r[0]['objective']) else 1)"; then pass cnn_tn_hf_hessian
else fail cnn_tn_hf_hessian "exit $rc"; show tn_hess.err; fi
expect_exit cnn_tn_hessian_ngd 2 "only with --optimizer hf" "$bin" "${T[@]}" --layers c4-d3 --optimizer ngd --curvature hessian --out e12
expect_exit cnn_tn_no_augmentation 2 "--augment-pad is sgd's option" "$bin" "${T[@]}" --layers c4-d3 --optimizer ngd --augment-pad 1 --out e8
expect_exit cnn_tn_no_momentum 2 "--momentum is sgd's option" "$bin" "${T[@]}" --layers c4-d3 --optimizer hf --momentum 0.5 --out e9
expect_exit cnn_sgd_no_tn_option 2 "--tn-iters is truncated Newton's option" "$bin" "${T[@]}" --layers c4-d3 --tn-iters 5 --out e10

# ---- usage errors --------------------------------------------------------------------------------
expect_exit cnn_bad_token 2 "'q7'" "$bin" "${T[@]}" --layers c4-q7-d3 --out e1
expect_exit cnn_last_not_dense 2 "last layer must be dense" "$bin" "${T[@]}" --layers c4-relu --out e2
expect_exit cnn_window_too_big 2 "layer 2" "$bin" "${T[@]}" --layers c4-c4k9p0-d3 --out e3
expect_exit cnn_whiten_needs_p0 2 "whitening layer must be followed" "$bin" "${T[@]}" --layers c4-w-c4-d3 --out e4
expect_exit cnn_whiten_every_without_w 2 "no whitening layer" "$bin" "${T[@]}" --layers c4-d3 --whiten-every 5 --out e5
expect_exit cnn_classes_mismatch 2 "3 classes" "$bin" "${T[@]}" --layers c4-d5 --out e6
expect_exit cnn_batch_too_big 2 "--batch" "$bin" cnn train --device cpu --data img.idx,lab.idx --batch 1000 --layers c4-d3 --out e7
expect_exit cnn_no_subcommand 2 "cnn train --help" "$bin" cnn

# ---- CIFAR-10 binary files -----------------------------------------------------------------------
run c10 "$bin" cnn train --device cpu --threads 1 --data c10.bin --test-data c10.bin --layers c2k3s2-mp2-d10 --batch 8 --steps 4 \
  --log-every 2 --eval-n 16 --out c10
if [ "$rc" = 0 ] && grep -q "3x32x32" c10.err; then pass cnn_cifar_trains; else fail cnn_cifar_trains "exit $rc"; show c10.err; fi
for f in trunc label empty garbage; do
  expect_exit "cnn_cifar_$f" 1 "c10_$f.bin" "$bin" cnn train --device cpu --data "c10_$f.bin" --layers c2-d10 --batch 2 --out "e_$f"
done
expect_exit cnn_cifar_missing_dir_file 1 "data_batch_1.bin" "$bin" cnn train --device cpu --data "$work" --layers c2-d10 --out e_dir

echo "RESULT passed=$passed failed=$failed skipped=$skipped"
[ "$failed" = 0 ]
