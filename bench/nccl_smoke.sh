#!/usr/bin/env bash
# nccl_smoke.sh [BUILD]: the NCCL check of a GPU machine, for bench/gpu_check.sh to call.
# Needs a CUDA build with MPI and NCCL (`make NG_CUDA=1`, build line "mpi: yes | nccl: yes").
#   1. one rank: NATGRAD_COMM=mpi BUILD/tests/test_comm (NCCL refuses two ranks on one GPU, so a
#      one-GPU machine can only run an nranks = 1 communicator): all-reduce and broadcast of device
#      buffers through NCCL, bit for bit against the CPU;
#   2. with G >= 2 GPUs (nvidia-smi -L): mpirun -np G BUILD/tests/test_comm (one GPU per rank),
#      then `natgrad net train` (NAG, MNIST autoencoder, 50 updates) on G ranks against one rank
#      within 1e-4 relative (tests/compare_params.py), and its time per update on 1 and G GPUs.
# Prints PASS/FAIL/SKIP lines and "RESULT passed=P failed=F skipped=S"; exits 1 on a failure.
set -u
build=${1:-build}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
passed=0 failed=0 skipped=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
finish() { echo "RESULT passed=$passed failed=$failed skipped=$skipped"; [ "$failed" = 0 ]; exit $?; }
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$gpus" -lt 1 ]; then skip nccl_smoke "no NVIDIA GPU (nvidia-smi -L lists none)"; finish; fi
make --no-print-directory NG_CUDA=1 BUILD="$build" all "$build/tests/test_comm" >"$build-nccl-smoke-build.log" 2>&1 ||
  { fail nccl_build "make NG_CUDA=1 failed, see $build-nccl-smoke-build.log"; finish; }
if ! "$build/natgrad" info | grep -q "nccl compiled in: yes"; then
  skip nccl_smoke "this build has no NCCL (the build line says nccl: no; needs MPI, nccl.h and libnccl)"; finish
fi
log=$build/nccl-smoke.log
: >"$log"
if NATGRAD_COMM=mpi timeout 300 "$build/tests/test_comm" >>"$log" 2>&1 && grep -q '^PASS test_comm_nccl' "$log"; then
  pass "nccl_one_rank (NCCL communicator of 1 rank on cuda:0)"
else fail nccl_one_rank "see $log"; tail -5 "$log"; fi
if [ "$gpus" -lt 2 ]; then
  skip nccl_multi_gpu "one GPU here: the multi-GPU path needs a machine with 2 or more"
  finish
fi
np=$(( gpus > 8 ? 8 : gpus ))
if timeout 300 mpirun --bind-to none -np "$np" "$build/tests/test_comm" >"$log.multi" 2>&1 &&
   [ "$(grep -c '^PASS test_comm_nccl' "$log.multi")" = "$np" ]; then pass "nccl_$np""_ranks (test_comm on $np GPUs)"
else fail "nccl_$np""_ranks" "see $log.multi"; tail -5 "$log.multi"; fi
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
bash data/prepare.sh mnist >/dev/null 2>&1
A=(net train --device cuda --data mnist --preset mnist-autoencoder --optimizer nag --batch 1000 --steps 50 --log-every 50)
one=$(timeout 600 "$build/natgrad" "${A[@]}" --out "$work/one" 2>&1 | grep -o '([0-9.]* updates/s)' | tail -1)
many=$(timeout 600 mpirun --bind-to none -np "$np" "$build/natgrad" "${A[@]}" --out "$work/many" 2>&1 | grep -o '([0-9.]* updates/s)' | tail -1)
"$build/natgrad" export "$work/one/net.ckpt" --out "$work/one.st" >/dev/null 2>&1
"$build/natgrad" export "$work/many/net.ckpt" --out "$work/many.st" >/dev/null 2>&1
if cmp=$(python3 tests/compare_params.py "$work/one.st" "$work/many.st" 1e-4); then
  pass "nccl_net_train ($np GPUs vs 1: $cmp; 1 GPU $one, $np GPUs $many)"
else fail nccl_net_train "$cmp"; fi
finish
