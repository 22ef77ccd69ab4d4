#!/usr/bin/env bash
# test_cli.sh BUILD: end-to-end tests of the natgrad command (host/cli/) with BUILD/natgrad.
# Covers: help output; a short bars-and-stripes train + eval (CSV log, checkpoint, AIS log Z against
# the exact log Z); resume (150 + 150 updates must give a checkpoint byte-identical to 300 in one
# go, and the same CSV apart from wall-clock times); usage errors (exit 2, message naming the
# option); missing or corrupt files (exit 1, message naming the file); SIGINT during training
# (exit 1, a checkpoint that eval and --resume accept); run directories (--force, resume into
# another run, rows past the checkpoint dropped on resume), unwritable logs, FIFOs, export to
# safetensors read back independently, ckpt listing, 0.1 checkpoints. Everything runs on the CPU (--device cpu)
# in a mktemp -d directory that is removed at exit. Prints PASS/FAIL lines and ends with
# "RESULT passed=P failed=F skipped=S" for tests/run.sh.
. "$(dirname "$0")/cli_lib.sh"
set -u
build=${1:-build}
bin=$build/natgrad
passed=0 failed=0 skipped=0
bgpid=

if [ ! -x "$bin" ]; then
  echo "FAIL natgrad binary: $bin not found or not executable (build it first)"
  echo "RESULT passed=0 failed=1 skipped=0"
  exit 1
fi
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_cli.XXXXXX") || { echo "RESULT passed=0 failed=1 skipped=0"; exit 1; }
cleanup() {
  if [ -n "$bgpid" ]; then kill -KILL "$bgpid" 2>/dev/null; wait "$bgpid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1

# fail NAME [DETAIL...]: one FAIL line, details indented (tests/run.sh shows lines starting "  ")
# show FILE: the last lines of a captured output, indented

# run NAME CMD...: run CMD with stdout in NAME.out, stderr in NAME.err; sets rc

# expect_exit NAME CODE PATTERN CMD...: CMD exits CODE and its stderr contains PATTERN (fixed string)

# num FILE REGEX: the first number after REGEX on the first matching line of FILE
num() { sed -nE "s/.*$2 *(-?[0-9][0-9.eE+-]*).*/\1/p" "$1" | head -1; }
# close A B TOL: |A - B| <= TOL (both numbers)
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a == a + 0 && b == b + 0 && d <= t) }'; }

TRAIN=(rbm train --data bars-stripes --hidden 8 --batch 30 --particles 100 --device cpu)

# ---- help -------------------------------------------------------------------------------------
run help "$bin" --help
if [ "$rc" = 0 ] && grep -q "rbm train" help.out && grep -q "rbm eval" help.out && grep -q "info" help.out; then
  pass help_lists_commands
else
  fail help_lists_commands "exit $rc; stdout must list rbm train, rbm eval, info"; show help.out
fi
run train_help "$bin" rbm train --help
missing=
for o in --data --hidden --batch --particles --steps --lr --optimizer --resume --device --out --seed; do
  grep -qF -- "$o" train_help.out || missing="$missing $o"
done
if [ "$rc" = 0 ] && [ -z "$missing" ]; then pass train_help; else fail train_help "exit $rc; missing:$missing"; fi
run eval_help "$bin" rbm eval --help
missing=
for o in --checkpoint --data --ais-betas --ais-chains --exact --device; do
  grep -qF -- "$o" eval_help.out || missing="$missing $o"
done
if [ "$rc" = 0 ] && [ -z "$missing" ]; then pass eval_help; else fail eval_help "exit $rc; missing:$missing"; fi
expect_exit no_command 2 "usage" "$bin"
expect_exit unknown_command 2 "frobnicate" "$bin" frobnicate
expect_exit unknown_rbm_subcommand 2 "frobnicate" "$bin" rbm frobnicate
run info "$bin" info
if [ "$rc" = 0 ] && grep -q "cpu backend" info.out; then pass info; else fail info "exit $rc"; show info.out; fi
# the start-up line names the kernel OpenBLAS runs, and a user's OPENBLAS_CORETYPE is respected
run info_coretype env OPENBLAS_CORETYPE=Prescott "$bin" info
if [ "$rc" = 0 ] && grep -q "kernel Prescott (OPENBLAS_CORETYPE)" info_coretype.out; then pass info_user_coretype
else fail info_user_coretype "exit $rc; expected 'kernel Prescott (OPENBLAS_CORETYPE)'"; show info_coretype.out; fi

# ---- train + eval -----------------------------------------------------------------------------
header="step,epoch,time_s,lr,recon_error,grad_norm,update_norm,fe_train,fe_test,fe_gap"
run train_e2e "$bin" "${TRAIN[@]}" --steps 300 --log-every 50 --out e2e
if [ "$rc" != 0 ]; then
  fail train_end_to_end "exit $rc"; show train_e2e.err
elif [ ! -s e2e/rbm.ckpt ] || [ ! -s e2e/train.csv ]; then
  fail train_end_to_end "e2e/rbm.ckpt or e2e/train.csv missing"; ls -la e2e | sed 's/^/  | /'
else
  pass train_end_to_end
fi
# header, then one row per 50 updates (50 .. 300), 10 fields each, steps in order
if [ -s e2e/train.csv ] && [ "$(head -1 e2e/train.csv)" = "$header" ] &&
   [ "$(tail -n +2 e2e/train.csv | wc -l)" = 6 ] &&
   [ "$(tail -n +2 e2e/train.csv | cut -d, -f1 | tr '\n' ' ')" = "50 100 150 200 250 300 " ] &&
   ! tail -n +2 e2e/train.csv | awk -F, 'NF != 10 { bad = 1 } $4 !~ /^[0-9.e-]+$/ { bad = 1 } END { exit !bad }'; then
  pass train_csv_rows
else
  fail train_csv_rows "want the header and rows for steps 50..300"; show e2e/train.csv 8
fi

# eval: the AIS estimate and the exact log Z (16 x 8: exact by enumeration) agree within 0.5 nats;
# the two log-likelihoods differ by exactly the difference of the log Z's (same data, same free
# energies): checked to the 4 printed decimals.
check_eval() {
  local name=$1 ckpt=$2; shift 2
  run "$name" "$bin" rbm eval --checkpoint "$ckpt" --data bars-stripes --device cpu "$@"
  local ais exact ll llx
  ais=$(num "$name.out" "AIS: log Z =")
  exact=$(num "$name.out" "exact: log Z =")
  ll=$(num "$name.out" "average log-likelihood:")
  llx=$(num "$name.out" "average log-likelihood with exact log Z:")
  if [ "$rc" != 0 ]; then
    fail "$name" "exit $rc"; show "$name.err"
  elif [ -z "$ais" ] || [ -z "$exact" ] || [ -z "$ll" ] || [ -z "$llx" ]; then
    fail "$name" "missing AIS log Z '$ais', exact log Z '$exact' or log-likelihoods '$ll' '$llx'"; show "$name.out" 8
  elif ! close "$ais" "$exact" 0.5; then
    fail "$name" "AIS log Z $ais vs exact $exact: more than 0.5 nats apart"
  elif ! awk -v l="$ll" 'BEGIN { exit !(l < 0 && l > -100) }'; then
    fail "$name" "average log-likelihood $ll is not a plausible negative number"
  elif ! close "$(awk -v a="$ll" -v b="$ais" 'BEGIN { printf "%.6f", a + b }')" \
               "$(awk -v a="$llx" -v b="$exact" 'BEGIN { printf "%.6f", a + b }')" 0.0003; then
    fail "$name" "log-likelihoods $ll (AIS) and $llx (exact) are not offset by the log Z difference"
  else
    pass "$name"
    echo "  ($ckpt: AIS log Z $ais, exact $exact, average log-likelihood $llx)"
  fi
}
check_eval eval_end_to_end e2e/rbm.ckpt
# a model that has learned something, so that AIS has a real distance to cover
run train_longer "$bin" rbm train --data bars-stripes --hidden 8 --batch 10 --particles 100 --lr 0.1 \
  --steps 3000 --log-every 1000 --device cpu --out longer
if [ "$rc" = 0 ]; then check_eval eval_trained_model longer/rbm.ckpt; else fail eval_trained_model "training exit $rc"; show train_longer.err; fi

# eval --csv appends one row per run under a single header
run eval_csv1 "$bin" rbm eval --checkpoint e2e/rbm.ckpt --data bars-stripes --device cpu --ais-betas 200 --csv results.csv
rc1=$rc
run eval_csv2 "$bin" rbm eval --checkpoint e2e/rbm.ckpt --data bars-stripes --device cpu --ais-betas 200 --csv results.csv
if [ "$rc1" = 0 ] && [ "$rc" = 0 ] && [ "$(wc -l <results.csv)" = 3 ] && head -1 results.csv | grep -q "^checkpoint," &&
   [ "$(grep -c '^e2e/rbm.ckpt,' results.csv)" = 2 ]; then
  pass eval_csv_appends
else
  fail eval_csv_appends "exit $rc1 / $rc"; show results.csv
fi
# --device auto runs anywhere: CUDA when a device answers, else the CPU with a note
expect_exit device_auto 0 "backend" "$bin" rbm train --data bars-stripes --hidden 8 --batch 30 --particles 100 \
  --steps 5 --device auto --out auto

# ---- resume -----------------------------------------------------------------------------------
# 300 updates in one go vs 150 + --resume to 300: byte-identical checkpoints, and CSV logs that
# agree in everything but the wall-clock column
R=(--data bars-stripes --device cpu --log-every 50)
run resume_full "$bin" "${TRAIN[@]}" --batch 10 --steps 300 --log-every 50 --out full
run resume_half "$bin" "${TRAIN[@]}" --batch 10 --steps 150 --log-every 50 --out half
rc1=$rc
run resume_rest "$bin" rbm train "${R[@]}" --resume half/rbm.ckpt --steps 300 --out half
if [ "$rc1" != 0 ] || [ "$rc" != 0 ]; then
  fail resume_identical_checkpoint "exit $rc1 / $rc"; show resume_rest.err
elif ! cmp full/rbm.ckpt half/rbm.ckpt >resume.cmp 2>&1; then
  fail resume_identical_checkpoint "checkpoints differ: $(cat resume.cmp)"
else
  pass resume_identical_checkpoint
fi
if diff <(cut -d, -f1,2,4- full/train.csv) <(cut -d, -f1,2,4- half/train.csv) >resume.diff; then
  pass resume_identical_log
else
  fail resume_identical_log "train.csv of the resumed run differs (time column ignored):"; show resume.diff 6
fi
# resuming a finished run does nothing and rewrites the same checkpoint
cp full/rbm.ckpt done.ckpt
run resume_done "$bin" rbm train "${R[@]}" --resume done.ckpt --checkpoint done.ckpt --steps 300 --out done
if [ "$rc" = 0 ] && cmp -s done.ckpt full/rbm.ckpt; then pass resume_when_done; else fail resume_when_done "exit $rc"; show resume_done.err; fi

# ---- usage errors: exit 2 and a message naming the option ----------------------------------------
expect_exit bad_unknown_option 2 "--no-such-option" "$bin" "${TRAIN[@]}" --steps 5 --out u --no-such-option 3
expect_exit bad_lr_text 2 "--lr" "$bin" "${TRAIN[@]}" --steps 5 --out u --lr abc
expect_exit bad_lr_negative 2 "--lr" "$bin" "${TRAIN[@]}" --steps 5 --out u --lr -1
expect_exit bad_lr_missing_value 2 "--lr" "$bin" "${TRAIN[@]}" --steps 5 --out u --lr
expect_exit bad_batch_zero 2 "--batch" "$bin" "${TRAIN[@]}" --steps 5 --out u --batch 0
expect_exit bad_batch_too_big 2 "--batch" "$bin" "${TRAIN[@]}" --steps 5 --out u --batch 31
expect_exit bad_k_zero 2 "--k" "$bin" "${TRAIN[@]}" --steps 5 --out u --k 0
expect_exit bad_momentum 2 "--momentum" "$bin" "${TRAIN[@]}" --steps 5 --out u --momentum 1
expect_exit bad_device 2 "--device" "$bin" "${TRAIN[@]}" --steps 5 --out u --device tpu
expect_exit bad_optimizer 2 "--optimizer" "$bin" "${TRAIN[@]}" --steps 5 --out u --optimizer newton
expect_exit bad_estimator 2 "--estimator" "$bin" "${TRAIN[@]}" --steps 5 --out u --estimator foo
expect_exit bad_hidden_text 2 "--hidden" "$bin" "${TRAIN[@]}" --steps 5 --out u --hidden 8x
expect_exit bad_positional 2 "stray" "$bin" "${TRAIN[@]}" --steps 5 --out u stray
expect_exit bad_resume_with_hidden 2 "--hidden" "$bin" rbm train "${R[@]}" --resume full/rbm.ckpt --hidden 8 --steps 5 --out u
expect_exit bad_resume_with_lr 2 "--lr" "$bin" rbm train "${R[@]}" --resume full/rbm.ckpt --lr 0.1 --steps 5 --out u
expect_exit bad_eval_no_checkpoint 2 "--checkpoint" "$bin" rbm eval --data bars-stripes --device cpu
expect_exit bad_eval_option 2 "--bogus" "$bin" rbm eval --checkpoint full/rbm.ckpt --bogus

# ---- missing and corrupt files: exit 1 and a message naming the file -----------------------------
expect_exit missing_data 1 "/nonexistent/file.idx" "$bin" "${TRAIN[@]}" --steps 5 --out u --data /nonexistent/file.idx
expect_exit missing_eval_data 1 "/nonexistent/file.idx" "$bin" rbm eval --checkpoint full/rbm.ckpt --device cpu --data /nonexistent/file.idx
expect_exit missing_checkpoint 1 "nothere.ckpt" "$bin" rbm eval --checkpoint nothere.ckpt --data bars-stripes --device cpu
expect_exit missing_resume 1 "nothere.ckpt" "$bin" rbm train "${R[@]}" --resume nothere.ckpt --steps 5 --out u
# a flipped byte in the payload (CRC) and a truncated file
size=$(wc -c <full/rbm.ckpt)
cp full/rbm.ckpt flipped.ckpt
printf '\x55' | dd of=flipped.ckpt bs=1 seek=$((size / 2)) conv=notrunc status=none
if cmp -s flipped.ckpt full/rbm.ckpt; then printf '\xaa' | dd of=flipped.ckpt bs=1 seek=$((size / 2)) conv=notrunc status=none; fi
head -c $((size - 10)) full/rbm.ckpt >truncated.ckpt
cp flipped.ckpt flipped.orig
cp truncated.ckpt truncated.orig
expect_exit corrupt_eval 1 "flipped.ckpt" "$bin" rbm eval --checkpoint flipped.ckpt --data bars-stripes --device cpu
if grep -q "CRC" corrupt_eval.err; then pass corrupt_eval_says_crc; else fail corrupt_eval_says_crc "no CRC in the message"; show corrupt_eval.err; fi
expect_exit corrupt_resume 1 "flipped.ckpt" "$bin" rbm train "${R[@]}" --resume flipped.ckpt --steps 400 --out corrupt
expect_exit truncated_eval 1 "truncated.ckpt" "$bin" rbm eval --checkpoint truncated.ckpt --data bars-stripes --device cpu
expect_exit truncated_resume 1 "truncated.ckpt" "$bin" rbm train "${R[@]}" --resume truncated.ckpt --steps 400 --out corrupt
if [ -e corrupt/rbm.ckpt ]; then fail corrupt_resume_writes_nothing "a refused resume wrote corrupt/rbm.ckpt"; else pass corrupt_resume_writes_nothing; fi
if cmp -s flipped.ckpt flipped.orig && cmp -s truncated.ckpt truncated.orig; then
  pass corrupt_files_left_alone
else
  fail corrupt_files_left_alone "a refused checkpoint was modified"
fi

# ---- run directories, logs and special files ------------------------------------------------------
# a fresh run refuses a directory that holds another run, unless --force
expect_exit refuse_overwrite 2 "already holds a run" "$bin" "${TRAIN[@]}" --steps 5 --out full
expect_exit refuse_overwrite_names_force 2 "--force" "$bin" "${TRAIN[@]}" --steps 5 --out full
cp -r full forced
run force_overwrite "$bin" "${TRAIN[@]}" --steps 5 --log-every 5 --out forced --force
if [ "$rc" = 0 ] && [ "$(tail -n +2 forced/train.csv | wc -l)" = 1 ]; then pass force_overwrite
else fail force_overwrite "exit $rc"; show force_overwrite.err; fi
# resuming one run's checkpoint into another run's directory is refused (it would replace that run)
expect_exit refuse_resume_into_other_run 2 "already holds a run" "$bin" rbm train "${R[@]}" --resume half/rbm.ckpt --steps 400 --out full
# after a kill, the log holds rows past the last checkpoint: a resume drops them (no duplicates)
run kill_a "$bin" "${TRAIN[@]}" --batch 10 --steps 100 --log-every 10 --out straight
run kill_b "$bin" "${TRAIN[@]}" --batch 10 --steps 50 --log-every 10 --out killed
cp killed/rbm.ckpt ck50.ckpt
run kill_c "$bin" rbm train --data bars-stripes --device cpu --log-every 10 --resume killed/rbm.ckpt --steps 80 --out killed
cp ck50.ckpt killed/rbm.ckpt   # as if the run died after writing rows 60..80 but before its next checkpoint
run kill_d "$bin" rbm train --data bars-stripes --device cpu --log-every 10 --resume killed/rbm.ckpt --steps 100 --out killed
if [ "$rc" = 0 ] && diff <(cut -d, -f1,2,4- straight/train.csv) <(cut -d, -f1,2,4- killed/train.csv) >kill.diff; then
  pass resume_drops_rows_after_checkpoint
else
  fail resume_drops_rows_after_checkpoint "exit $rc; log of the killed + resumed run differs from a straight one:"; show kill.diff 6
fi
# a log that cannot be written ends the run with an error naming it (no silent exit 0)
expect_exit csv_dev_full 1 "/dev/full" "$bin" "${TRAIN[@]}" --steps 20 --out devfull --csv /dev/full
# the output directory cannot be created: the reason is given
touch afile
expect_exit out_not_a_directory 1 "Not a directory" "$bin" "${TRAIN[@]}" --steps 5 --out afile/sub
# a FIFO given as data, checkpoint or resume is refused at once, never waited on
mkfifo fifo
expect_exit fifo_data 1 "FIFO" timeout 20 "$bin" "${TRAIN[@]}" --steps 5 --out f1 --data ./fifo
expect_exit fifo_eval 1 "FIFO" timeout 20 "$bin" rbm eval --checkpoint fifo --data bars-stripes --device cpu
expect_exit fifo_resume 1 "FIFO" timeout 20 "$bin" rbm train "${R[@]}" --resume fifo --steps 5 --out f2
# numbers beyond the float range are out of range, not "inf"
expect_exit lr_out_of_range 2 "out of range" "$bin" "${TRAIN[@]}" --steps 5 --out u --lr 1e39
expect_exit device_index_bad 2 "--device" "$bin" "${TRAIN[@]}" --steps 5 --out u --device cuda:x

# ---- export and ckpt --------------------------------------------------------------------------------
# natgrad 0.1's file layout is known (W at byte 136, (n_hidden, n_visible) column-major): the
# exported W must be that matrix as a (rows, cols) row-major array, read back by an independent
# reader (Python's struct + json); a and b as vectors.
legacy=$OLDPWD/tests/data/legacy_centering_20.ckpt
run export_legacy "$bin" export "$legacy" --out legacy.safetensors
if ! command -v python3 >/dev/null 2>&1; then
  echo "SKIP export_read_back: python3 is not installed (the independent reader is a Python script)"; skipped=$((skipped + 1))
elif [ "$rc" != 0 ]; then
  fail export_read_back "exit $rc"; show export_legacy.err
else
  python3 - "$legacy" legacy.safetensors >export.check 2>&1 <<'PY'
import json, struct, sys
old = open(sys.argv[1], "rb").read()
nv, nh = struct.unpack_from("<II", old, 16)
W = struct.unpack_from("<%df" % (nv * nh), old, 136)            # column-major (nh, nv)
a = struct.unpack_from("<%df" % nv, old, 136 + 4 * nv * nh)
b = struct.unpack_from("<%df" % nh, old, 136 + 4 * (nv * nh + nv))
st = open(sys.argv[2], "rb").read()
n = struct.unpack_from("<Q", st, 0)[0]
head = json.loads(st[8:8 + n])
data = st[8 + n:]
def get(name):
    e = head[name]
    lo, hi = e["data_offsets"]
    return e["dtype"], e["shape"], struct.unpack("<%df" % ((hi - lo) // 4), data[lo:hi])
dt, shape, Wx = get("W")
assert dt == "F32" and shape == [nh, nv], (dt, shape)
for j in range(nh):
    for i in range(nv):
        assert Wx[j * nv + i] == W[j + i * nh], (j, i)
assert get("a")[1] == [nv] and get("a")[2] == a
assert get("b")[1] == [nh] and get("b")[2] == b
assert sorted(k for k in head if k != "__metadata__") == ["W", "a", "b"]
print("OK W (%d, %d), a, b" % (nh, nv))
PY
  if [ $? = 0 ]; then pass export_read_back; else fail export_read_back "independent reader:"; show export.check 6; fi
fi
run export_all "$bin" export e2e/rbm.ckpt --out all.safetensors --all
if [ "$rc" = 0 ] && grep -q "sgd.velocity" export_all.out && grep -q "rbm.particles" export_all.out; then pass export_all
else fail export_all "exit $rc"; show export_all.out; fi
expect_exit export_missing_out 2 "--out" "$bin" export e2e/rbm.ckpt
expect_exit export_bad_ckpt 1 "flipped.ckpt" "$bin" export flipped.ckpt --out x.safetensors
run ckpt_list "$bin" ckpt e2e/rbm.ckpt
if [ "$rc" = 0 ] && grep -q "model.kind" ckpt_list.out && grep -q "model.W" ckpt_list.out && grep -q "run.t" ckpt_list.out; then
  pass ckpt_lists_fields
else fail ckpt_lists_fields "exit $rc"; show ckpt_list.out; fi
# a 0.1 checkpoint evaluates and resumes
run eval_legacy "$bin" rbm eval --checkpoint "$legacy" --data bars-stripes --device cpu --ais-betas 200
if [ "$rc" = 0 ] && grep -q "exact: log Z" eval_legacy.out; then pass eval_legacy_checkpoint
else fail eval_legacy_checkpoint "exit $rc"; show eval_legacy.err; fi
cp "$legacy" old.ckpt
run resume_legacy "$bin" rbm train --data bars-stripes --device cpu --log-every 10 --resume old.ckpt --checkpoint old.ckpt --steps 30 --out legacyrun
if [ "$rc" = 0 ] && grep -q "resumed old.ckpt at update 20" resume_legacy.err; then pass resume_legacy_checkpoint
else fail resume_legacy_checkpoint "exit $rc"; show resume_legacy.err; fi

# ---- SIGINT -----------------------------------------------------------------------------------
# A long run, interrupted once it is logging: it must save a checkpoint (the only one: periodic
# checkpoints are off), exit 1, and the checkpoint must be accepted by eval and by --resume.
"$bin" rbm train --data bars-stripes --hidden 8 --batch 10 --particles 100 --device cpu --steps 1000000000 \
  --checkpoint-every 0 --log-every 500 --out sigint >sigint.out 2>sigint.err &
bgpid=$!
for _ in $(seq 100); do
  [ -s sigint/train.csv ] && [ "$(wc -l <sigint/train.csv)" -ge 2 ] && break
  sleep 0.1
done
sleep 1
kill -INT "$bgpid" 2>/dev/null
for _ in $(seq 100); do kill -0 "$bgpid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$bgpid" 2>/dev/null; then
  kill -KILL "$bgpid" 2>/dev/null; wait "$bgpid" 2>/dev/null; bgpid=
  fail sigint_saves_checkpoint "still running 10 s after SIGINT"; show sigint.err
else
  wait "$bgpid"; rc=$?; bgpid=
  t=$(sed -nE 's/.*interrupted after ([0-9]+) updates.*/\1/p' sigint.err | tail -1)
  if [ "$rc" != 1 ]; then
    fail sigint_saves_checkpoint "exit $rc after SIGINT, want 1"; show sigint.err
  elif [ ! -s sigint/rbm.ckpt ] || [ -e sigint/rbm.ckpt.tmp ]; then
    fail sigint_saves_checkpoint "no checkpoint (or a stray .tmp) after SIGINT"; ls -la sigint | sed 's/^/  | /'
  elif [ -z "$t" ]; then
    fail sigint_saves_checkpoint "no 'interrupted after N updates' line"; show sigint.err
  else
    pass sigint_saves_checkpoint
    echo "  (interrupted after $t updates)"
    check_eval sigint_checkpoint_evaluates sigint/rbm.ckpt --ais-betas 2000
    run sigint_resume "$bin" rbm train "${R[@]}" --resume sigint/rbm.ckpt --steps $((t + 20)) --out sigint
    if [ "$rc" = 0 ] && grep -q "resumed sigint/rbm.ckpt at update $t" sigint_resume.err &&
       grep -q "done at update $((t + 20)) in all: 20 updates" sigint_resume.err; then
      pass sigint_checkpoint_resumes
    else
      fail sigint_checkpoint_resumes "exit $rc"; show sigint_resume.err
    fi
  fi
fi

# ---- issue 15: honest AIS, samples, rough edges ----------------------------------------------------
# every bad value is named on its own, before the backend starts or the data load
for spec in "hidden 0" "log-every 0" "steps -1" "checkpoint-every -1" "monitor-n -1" "minutes -1" \
            "batch 0" "particles -1" "k 0" "momentum 2" "lr-gamma -1" "center-rate 0" "fang-tau 0"; do
  set -- $spec
  run "early_$1" "$bin" rbm train --data /nonexistent/data.idx --device cpu --out u --"$1" "$2"
  if [ "$rc" = 2 ] && grep -qF -- "--$1 $2" "early_$1.err" && ! grep -q "backend\|nonexistent\|particles," "early_$1.err"; then
    pass "train_names_bad_$1"
  else
    fail "train_names_bad_$1" "exit $rc (want 2, a message naming --$1 $2 before data or backend)"; show "early_$1.err"
  fi
done
for spec in "ais-betas 1" "ais-chains 1" "ais-runs 0" "ais-runs 65" "raise-n -1" "raise-n 1" "raise-betas 0" "raise-chains 0" "exact 2" "limit -1"; do
  set -- $spec
  run "eval_early_$1_$2" "$bin" rbm eval --checkpoint nothere.ckpt --data bars-stripes --device cpu --"$1" "$2"
  if [ "$rc" = 2 ] && grep -qF -- "--$1 $2" "eval_early_$1_$2.err" && ! grep -q "nothere" "eval_early_$1_$2.err"; then
    pass "eval_names_bad_$1_$2"
  else
    fail "eval_names_bad_$1_$2" "exit $rc (want 2 naming --$1 $2 before reading the checkpoint)"; show "eval_early_$1_$2.err"
  fi
done
expect_exit device_gpu_refused 2 "'gpu'" "$bin" rbm train --data bars-stripes --device gpu --out u
expect_exit eval_device_gpu_refused 2 "'gpu'" "$bin" rbm eval --checkpoint e2e/rbm.ckpt --data bars-stripes --device gpu
# --exact 1 on a model too large to enumerate: a usage error before any AIS
run big_train "$bin" rbm train --data curves-like --limit 50 --hidden 21 --steps 1 --device cpu --out big
if [ "$rc" = 0 ]; then
  run exact_big "$bin" rbm eval --checkpoint big/rbm.ckpt --data curves-like --limit 10 --device cpu --exact 1
  if [ "$rc" = 2 ] && grep -qF -- "--exact 1" exact_big.err && ! grep -q "natgrad: AIS" exact_big.err; then pass exact_too_big_up_front
  else fail exact_too_big_up_front "exit $rc"; show exact_big.err; fi
else
  fail exact_too_big_up_front "training the 784 x 21 model: exit $rc"; show big_train.err
fi
# --resume with --steps below the checkpoint's count says so (it used to exit 0 doing nothing)
expect_exit resume_steps_below 2 "--steps 100 is below the 300 updates" "$bin" rbm train "${R[@]}" --resume full/rbm.ckpt --steps 100 --out full
expect_exit resume_steps_equal 0 "nothing to train" "$bin" rbm train "${R[@]}" --resume done.ckpt --checkpoint done.ckpt --steps 300 --out done
# bars-stripes with the default batch (2000 > 30 examples): the batch adapts, with a note
expect_exit bars_default_batch 0 "--batch defaults to 30" "$bin" rbm train --data bars-stripes --steps 5 --device cpu --out bars
# the CSV's time column continues across --resume: non-decreasing over the whole log
if [ -s half/train.csv ] && tail -n +2 half/train.csv | awk -F, 'NR > 1 && $3 + 0 < prev { bad = 1 } { prev = $3 + 0 } END { exit bad }' &&
   grep -q "since the resume at update 150" resume_rest.err; then
  pass resume_time_continues
else
  fail resume_time_continues "time_s restarts after --resume, or the final line lacks the resume"; show half/train.csv 8; show resume_rest.err 2
fi
# eval: pooled runs, 95 % bootstrap interval, per-run ESS, RAISE paired with AIS, progress with ETA
run eval_runs "$bin" rbm eval --checkpoint longer/rbm.ckpt --data bars-stripes --device cpu --ais-betas 500 --ais-runs 3 \
  --ais-chains 40 --raise-n 20 --raise-betas 300 --csv runs.csv
lz=$(num eval_runs.out "AIS: log Z =")
lo=$(sed -nE 's/.*interval \[(-?[0-9.]+), (-?[0-9.]+)\].*/\1/p' eval_runs.out | head -1)
hi=$(sed -nE 's/.*interval \[(-?[0-9.]+), (-?[0-9.]+)\].*/\2/p' eval_runs.out | head -1)
ex=$(num eval_runs.out "exact: log Z =")
if [ "$rc" = 0 ] && grep -q "95% bootstrap interval" eval_runs.out && [ "$(grep -o '([0-9.]*)' <(grep '^AIS runs' eval_runs.out) | wc -l)" = 3 ] &&
   grep -q "AIS - RAISE, paired" eval_runs.out && grep -q "ETA" eval_runs.err &&
   awk -v l="$lo" -v z="$lz" -v h="$hi" 'BEGIN { exit !(l <= z && z <= h) }' &&
   head -1 runs.csv | grep -q ",runs,schedule,ess,min_run_ess,run_sd$"; then
  pass eval_pooled_runs
  echo "  (AIS $lz [$lo, $hi], exact $ex)"
else
  fail eval_pooled_runs "exit $rc"; show eval_runs.out 8; show eval_runs.err 3
fi
# RAISE and AIS bracket the exact value here (long enough paths): the paired interval contains 0
# within noise or lies above it; never below
pd=$(sed -nE 's/.*paired on those examples: (-?[0-9.]+) nats, 95% interval \[(-?[0-9.]+), (-?[0-9.]+)\].*/\3/p' eval_runs.out)
if [ -n "$pd" ] && awk -v h="$pd" 'BEGIN { exit !(h >= 0) }'; then pass raise_ais_paired
else fail raise_ais_paired "paired interval upper end '$pd' below 0"; show eval_runs.out 4; fi
# the S&M 2008 schedule runs 14,500 betas
run eval_sm08 "$bin" rbm eval --checkpoint longer/rbm.ckpt --data bars-stripes --device cpu --ais-schedule sm08 --ais-runs 2 --ais-chains 10
if [ "$rc" = 0 ] && grep -q "14500 betas" eval_sm08.out; then pass eval_sm08_schedule; else fail eval_sm08_schedule "exit $rc"; show eval_sm08.out 4; fi
expect_exit eval_bad_schedule 2 "--ais-schedule" "$bin" rbm eval --checkpoint longer/rbm.ckpt --data bars-stripes --ais-schedule cubic
# degenerate weights (2 betas on a trained model): a warning saying what to increase
run eval_degenerate "$bin" rbm eval --checkpoint longer/rbm.ckpt --data bars-stripes --device cpu --ais-betas 2 --ais-chains 200 --ais-runs 2
if [ "$rc" = 0 ] && grep -q "warning: AIS weights are degenerate.*increase --ais-betas" eval_degenerate.err; then pass eval_low_ess_warning
else fail eval_low_ess_warning "exit $rc"; show eval_degenerate.err 3; show eval_degenerate.out 3; fi
# rbm sample: PNG grids and .npy arrays of the right shapes
run sample "$bin" rbm sample --checkpoint longer/rbm.ckpt --data bars-stripes --n 9 --sweeps 50 --device cpu --out smp
if [ "$rc" = 0 ] && [ "$(head -c 4 smp/samples.png | od -An -c | tr -d ' ')" = "211PNG" ] &&
   [ "$(head -c 4 smp/filters.png | od -An -c | tr -d ' ')" = "211PNG" ] &&
   head -c 128 smp/samples.npy | grep -q "'shape': (9, 16)" && head -c 128 smp/samples_binary.npy | grep -q "'shape': (9, 16)" &&
   head -c 128 smp/filters.npy | grep -q "'shape': (8, 16)" &&
   [ "$(wc -c <smp/samples.npy)" = $((128 + 9 * 16 * 4)) ]; then
  pass rbm_sample_files
else
  fail rbm_sample_files "exit $rc"; show sample.err; ls -la smp 2>/dev/null | sed 's/^/  | /'
fi
expect_exit sample_bad_sweeps 2 "--sweeps 0" "$bin" rbm sample --checkpoint longer/rbm.ckpt --data bars-stripes --sweeps 0
expect_exit sample_no_checkpoint 2 "--checkpoint" "$bin" rbm sample --data bars-stripes
expect_exit sample_wrong_data 2 "visible units" "$bin" rbm sample --checkpoint longer/rbm.ckpt --data curves-like --device cpu --out smp2

# ---- --cuda-graph: ignored on the CPU with a note (same checkpoint bit for bit); a bad value is a usage error
run rgraph0 "$bin" "${TRAIN[@]}" --steps 20 --log-every 10 --out rg0
run rgraph1 "$bin" "${TRAIN[@]}" --steps 20 --log-every 10 --out rg1 --cuda-graph 1
if [ "$rc" = 0 ] && grep -q -- "--cuda-graph is ignored on the cpu backend" rgraph1.err && cmp -s rg0/rbm.ckpt rg1/rbm.ckpt; then
  pass rbm_cuda_graph_cpu_ignored; else fail rbm_cuda_graph_cpu_ignored "exit $rc"; show rgraph1.err; fi
expect_exit rbm_cuda_graph_bad_value 2 "--cuda-graph 2: must be 0 or 1" "$bin" "${TRAIN[@]}" --steps 3 --out rg2 --cuda-graph 2
if grep -q -- "--cuda-graph" train_help.out; then pass rbm_cuda_graph_help; else fail rbm_cuda_graph_help "not in rbm train --help"; fi

echo "RESULT passed=$passed failed=$failed skipped=$skipped"
[ "$failed" = 0 ]
