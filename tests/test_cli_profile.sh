#!/usr/bin/env bash
# test_cli_profile.sh BUILD: the profiling options of `natgrad rbm train` and `natgrad net train`
# end to end (CPU backend) and bench/gpu_check.sh's refusal without a GPU.
# Covers: --profile prints the phase table (train step, the RBM's Gibbs phases, the network's
# forward / backward), writes OUT/profile.csv and OUT/profile.json; the JSON is parsed by Python's
# json module and its events checked (one "train step" per profiled update, every range inside its
# step, durations >= 0); --profile-steps A:B limits the measured updates; a profiled run's checkpoint
# is byte-identical to an unprofiled one (profiling changes no result); bad --profile-steps values
# are usage errors naming the option; gpu_check.sh exits 3 with a clear message and writes nothing
# when nvidia-smi is missing or lists no GPU. Ends with "RESULT passed=P failed=F skipped=S".
. "$(dirname "$0")/cli_lib.sh"
set -u
build=${1:-build}
bin=$build/natgrad
root=$PWD
passed=0 failed=0 skipped=0
if [ ! -x "$bin" ]; then
  echo "FAIL natgrad binary: $bin not found"; echo "RESULT passed=0 failed=1 skipped=0"; exit 1
fi
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_prof.XXXXXX") || { echo "RESULT passed=0 failed=1 skipped=0"; exit 1; }
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

py=$(command -v python3 || true)

# check_trace NAME FILE STEPS: the Chrome trace parses as JSON, holds STEPS "train step" events,
# and every other complete event lies inside one of them or inside a monitor / checkpoint range
check_trace() {
  local name=$1 file=$2 steps=$3
  if [ -z "$py" ]; then skip "$name" "python3 missing: the trace's JSON is not parsed here (test_profile parses it in C)"; return; fi
  if "$py" - "$file" "$steps" >"$name.py.out" 2>&1 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
ev = [e for e in d["traceEvents"] if e.get("ph") == "X"]
steps = [e for e in ev if e["name"] == "train step"]
assert len(steps) == int(sys.argv[2]), "%d train step events, want %s" % (len(steps), sys.argv[2])
for e in ev:
    assert e["dur"] >= 0 and e["ts"] >= 0, e
    assert isinstance(e["cat"], str) and e["pid"] == 1
win = [(s["ts"], s["ts"] + s["dur"]) for s in ev if s["name"] == "train step" or s["cat"] in ("eval", "checkpoint")]
inside = 0
for e in ev:
    if e["name"] == "train step" or e["cat"] in ("eval", "checkpoint"):
        continue
    ok = any(a - 1e-3 <= e["ts"] and e["ts"] + e["dur"] <= b + 1e-3 for a, b in win)
    assert ok, "range %s at %.3f+%.3f lies in no train step, monitor or checkpoint" % (e["name"], e["ts"], e["dur"])
    inside += 1
assert inside > 0, "no range inside the steps"
print("ok", len(ev), "events")
EOF
  then pass "$name"; else fail "$name" "$(tail -1 "$name.py.out")"; fi
}

RBM=(rbm train --device cpu --threads 1 --data bars-stripes --hidden 8 --batch 30 --particles 100 --lr 0.05 --log-every 10)

# ---- rbm train --profile --------------------------------------------------------------------------
run rbm_profile "$bin" "${RBM[@]}" --steps 20 --out rp --profile
if [ "$rc" != 0 ]; then fail rbm_profile_runs "exit $rc"; show rbm_profile.err
else
  pass rbm_profile_runs
  if grep -q '^natgrad profile: 20 updates measured' rbm_profile.out && grep -qE '^train step +step +20 ' rbm_profile.out &&
     grep -qE '^ +negative phase +gibbs +20 ' rbm_profile.out && grep -qE '^ +positive phase +gibbs +20 ' rbm_profile.out &&
     grep -q '^peak of all arenas on cpu' rbm_profile.out; then pass rbm_profile_table
  else fail rbm_profile_table "table lacks the expected rows"; show rbm_profile.out 30; fi
  if [ "$(head -1 rp/profile.csv)" = "range,category,depth,calls,total_s,mean_s,share_of_step,flops,gflops_per_s,backend_calls_per_call,kernels_per_call,cublas_per_call,cusolver_per_call,copies_per_call,graphs_per_call" ] &&
     grep -q '^"train step",step,0,20,' rp/profile.csv; then pass rbm_profile_csv
  else fail rbm_profile_csv "profile.csv:"; show rp/profile.csv; fi
  check_trace rbm_profile_trace rp/profile.json 20
fi

# ---- the same run without --profile: identical checkpoint -----------------------------------------
run rbm_plain "$bin" "${RBM[@]}" --steps 20 --out rn
if [ "$rc" = 0 ] && cmp -s rp/rbm.ckpt rn/rbm.ckpt && [ ! -e rn/profile.json ] && ! grep -q 'natgrad profile' rbm_plain.out; then
  pass rbm_profile_changes_nothing
else fail rbm_profile_changes_nothing "exit $rc; checkpoints differ or an unprofiled run wrote a profile"; fi

# ---- --profile-steps --------------------------------------------------------------------------------
run rbm_window "$bin" "${RBM[@]}" --steps 20 --out rw --profile --profile-steps 5:12
if [ "$rc" = 0 ] && grep -q '^natgrad profile: 8 updates measured' rbm_window.out && grep -qE '^train step +step +8 ' rbm_window.out; then
  pass rbm_profile_steps_window
  check_trace rbm_profile_steps_trace rw/profile.json 8
else fail rbm_profile_steps_window "exit $rc"; show rbm_window.out 20; show rbm_window.err; fi
# --profile-steps alone (no table) on the CPU: a note, no profile files
run rbm_steps_only "$bin" "${RBM[@]}" --steps 10 --out ro --profile-steps 2:3
if [ "$rc" = 0 ] && grep -q 'profile-steps on the CPU backend' rbm_steps_only.err && [ ! -e ro/profile.json ]; then pass rbm_profile_steps_alone
else fail rbm_profile_steps_alone "exit $rc"; show rbm_steps_only.err; fi

for bad in 0:3 5:2 x 3 3:x -1:2; do
  expect_exit "bad_profile_steps_${bad//[:-]/_}" 2 "--profile-steps" "$bin" "${RBM[@]}" --steps 5 --out "b$bad" --profile-steps "$bad"
done

# ---- --tf32 on the CPU: a note, and the same checkpoint bit for bit ---------------------------------
run rbm_tf32_ref "$bin" "${RBM[@]}" --steps 20 --out tf_ref
run rbm_tf32 "$bin" "${RBM[@]}" --steps 20 --out tf_on --tf32
if [ "$rc" = 0 ] && grep -q 'note: --tf32 is ignored on the cpu backend' rbm_tf32.err &&
   cmp -s tf_ref/rbm.ckpt tf_on/rbm.ckpt; then pass rbm_tf32_cpu_ignored
else fail rbm_tf32_cpu_ignored "exit $rc, or the checkpoint differs from the run without --tf32"; show rbm_tf32.err; fi

# ---- net train --profile ----------------------------------------------------------------------------
run net_profile "$bin" net train --device cpu --threads 1 --data bars-stripes --layers 16-8-16 --batch 10 --optimizer nag \
  --lr 0.01 --steps 12 --log-every 6 --out np --profile
if [ "$rc" = 0 ] && grep -qE '^train step +step +12 ' net_profile.out && grep -qE '^ +net forward +forward ' net_profile.out &&
   grep -qE '^ +net backward +backward ' net_profile.out && [ -s np/profile.csv ]; then
  pass net_profile_table
  check_trace net_profile_trace np/profile.json 12
else fail net_profile_table "exit $rc"; show net_profile.out 25; show net_profile.err; fi

# ---- gpu_check.sh refuses without a GPU -------------------------------------------------------------
mkdir -p nogpu nosmi
cat > nogpu/nvidia-smi <<'EOF'
#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
exit 9
EOF
chmod +x nogpu/nvidia-smi
for ln in bash timeout date nproc sed grep tr head cat dirname mkdir; do
  p=$(command -v $ln) && ln -sf "$p" nosmi/$ln
done
before=$(ls "$root/bench/results" | md5sum)
PATH=$work/nosmi run gpu_check_no_smi "$(command -v bash)" "$root/bench/gpu_check.sh"
if [ "$rc" = 3 ] && grep -q 'no NVIDIA GPU here: nvidia-smi is not installed' gpu_check_no_smi.err &&
   grep -q 'nothing was run' gpu_check_no_smi.err; then pass gpu_check_refuses_without_nvidia_smi
else fail gpu_check_refuses_without_nvidia_smi "exit $rc (want 3)"; show gpu_check_no_smi.err; fi
PATH=$work/nogpu:$PATH run gpu_check_no_gpu bash "$root/bench/gpu_check.sh"
if [ "$rc" = 3 ] && grep -q 'nvidia-smi lists no GPU' gpu_check_no_gpu.err; then pass gpu_check_refuses_without_gpu
else fail gpu_check_refuses_without_gpu "exit $rc (want 3)"; show gpu_check_no_gpu.err; fi
if [ "$(ls "$root/bench/results" | md5sum)" = "$before" ]; then pass gpu_check_refusal_writes_nothing
else fail gpu_check_refusal_writes_nothing "bench/results changed"; fi

echo "RESULT passed=$passed failed=$failed skipped=$skipped"
[ "$failed" = 0 ]
