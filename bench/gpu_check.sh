#!/usr/bin/env bash
# gpu_check.sh: everything natgrad can only learn on a real GPU, in one command that finishes within
# about 8 minutes, written to bench/results/gpu-<device>.md (+ the CSVs and logs under
# bench/results/gpu-<device>/):
#   1. an NG_CUDA=1 build (make -j all + the bench programs)
#   2. make test-gpu: the CUDA tests on the GPU against the CPU backend (compute-sanitizer's
#      memcheck, racecheck and synccheck over them come last, step 5, when it is installed)
#   3. the speed benchmarks on the GPU and on the CPU backend, each figure beside the sgemm rate
#      measured in the same process (cuBLAS on the GPU, OpenBLAS on the CPU): RBM PCD (SGD,
#      centering, FANG), the MNIST-autoencoder step (with PyTorch's on the same device beside it
#      when a python3 with torch is there), K-FAC's factor accumulation, the
#      truncated-Newton products; and GPU / CPU ratios of the RBM updates/s
#   3b. the kernel lab's block-shape sweep (bench/kernel_lab.c --sections sweep): every custom kernel
#      family at 3 sizes under each block size, checked against the CPU backend and the default
#      shape, timed by CUDA events; the fastest shape per family against the default
#   4. natgrad's own phase profile of an RBM run and of a K-FAC autoencoder run on the GPU
#      (--profile: CUDA-event timings per phase, kernel launches per step), and the launch
#      overhead of NAG on the curves autoencoder at m = 250, eager vs --cuda-graph 1 (ms per
#      update from the profile, the two checkpoints compared bit for bit), and the same for the
#      RBM's PCD-1 update with SGD (rbm train --cuda-graph 1), and K-FAC and NGD on the curves
#      autoencoder eager vs --cuda-graph 1 (graph segments: natgrad/graph.h)
#   5. compute-sanitizer (memcheck, racecheck, synccheck) over make test-gpu's tests, in the time
#      left (TEST_GPU_SANITIZE=only)
#   6. an nsys capture of a steady-state RBM window (--profile-steps) when nsys is installed,
#      with its summary reports
# Every step runs under its own time limit; a failed or timed-out step is recorded in the report
# with the end of its log and the script goes on, so one run always yields a report.
# Without an NVIDIA GPU (nvidia-smi lists none) or without nvcc it refuses at once (exit 3) and
# runs nothing. Usage: bash bench/gpu_check.sh   (GPU_CHECK_DEVICE=N picks GPU N; default 0)
# On a GPU machine that reaches no package registry, first run `bash bench/gpu_deps.sh fetch` here
# (with Debian's registry) and carry .gpu-deps along: step 0 below unpacks it when the machine lacks
# OpenBLAS, LAPACKE, zlib or make (GPU_CHECK_DEPS=DIR names another folder). GPU_CHECK_COPY_TO=DIR
# also copies the report and a .tar.gz of its folder to DIR (a machine given back after the run);
# GPU_CHECK_RESULTS=DIR writes them to DIR instead of bench/results (tests).
#
# Rehearsal: GPU_CHECK_REHEARSAL=1 bash bench/gpu_check.sh [RESULTS_DIR] runs every step's command
# on a machine without a GPU: the natgrad CLI and bench programs built against the SIMT emulator
# (build/simt/natgrad, build/simt/bench/*; tests/simt), the same options with smaller sizes and
# fewer updates, the report in RESULTS_DIR (default build/gpu-check-rehearsal; never bench/results),
# and make test-gpu's recipe on the emulated copies of four of its tests (TEST_GPU_REHEARSAL=1).
# Its timings mean nothing; it proves that the script's commands, options, checkpoints compared and
# report sections work, so the first real run does not waste a lent GPU on a typo. make test runs it
# (tests/test_gpu_check.sh). Not rehearsed: compute-sanitizer and nsys.
set -u
cd "$(dirname "$0")/.." || exit 1
root=$PWD
rehearsal=${GPU_CHECK_REHEARSAL:-0}
case $rehearsal in 0|1) ;; *) echo "gpu_check: GPU_CHECK_REHEARSAL=$rehearsal: use 1 (rehearse on the emulator) or 0" >&2; exit 2 ;; esac
# R REAL SMALL: the value for a real GPU run, or the rehearsal's smaller one
R() { if [ "$rehearsal" = 1 ]; then echo "$2"; else echo "$1"; fi; }

refuse() {
  echo "gpu_check: $1" >&2
  echo "gpu_check: nothing was run. This script needs a machine with an NVIDIA GPU, its driver and the CUDA toolkit;" >&2
  echo "gpu_check: without one, 'make test' exercises the CUDA backend through the SIMT emulator (tests/simt)." >&2
  exit 3
}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
gi=${GPU_CHECK_DEVICE:-0}
if [ "$rehearsal" = 1 ]; then
  gname="SIMT emulator (rehearsal)"
  slug=rehearsal
  nvcc=
  build=build/simt
  res=${1:-build/gpu-check-rehearsal}
else
  command -v nvidia-smi >/dev/null 2>&1 || refuse "no NVIDIA GPU here: nvidia-smi is not installed"
  gpus=$(nvidia-smi -L 2>/dev/null | grep '^GPU' || true)
  [ -n "$gpus" ] || refuse "no NVIDIA GPU here: nvidia-smi lists no GPU (driver not loaded?)"
  nvcc=$(command -v nvcc 2>/dev/null || { test -x "$CUDA_HOME/bin/nvcc" && echo "$CUDA_HOME/bin/nvcc"; } || true)
  [ -n "$nvcc" ] || refuse "the CUDA toolkit is missing (no nvcc in PATH or $CUDA_HOME/bin)"
  gname=$(nvidia-smi --query-gpu=name --format=csv,noheader -i "$gi" 2>/dev/null | head -1)
  [ -n "$gname" ] || gname=$(sed -n "$((gi + 1))p" <<<"$gpus" | sed -E 's/^GPU [0-9]+: ([^(]*).*/\1/')
  slug=$(echo "$gname" | tr ' /' '--' | tr -cd 'A-Za-z0-9._-' | sed -E 's/-+/-/g; s/^-|-$//g')
  [ -n "$slug" ] || slug=gpu$gi
  build=build
  res=${GPU_CHECK_RESULTS:-bench/results}
fi
dev=cuda:$gi
dir=$res/gpu-$slug
md=$res/gpu-$slug.md
mkdir -p "$dir"
t_start=$(date +%s)
budget=${GPU_CHECK_BUDGET_S:-470}
jobs=$(nproc 2>/dev/null || echo 4)

step_n=0 step_fail=0
# step NAME LIMIT_S CMD...: run CMD with a time limit, its output in $dir/NAME.log; records the
# outcome in the report's status table
declare -a status_rows=()
step() {
  local name=$1 limit=$2; shift 2
  local log=$dir/$name.log t0 rc left
  step_n=$((step_n + 1))
  # the whole check stays within GPU_CHECK_BUDGET_S (default 470 s): a step gets at most what is left
  left=$(( budget - ($(date +%s) - t_start) ))
  if [ $left -lt 15 ]; then
    status_rows+=("| $name | SKIPPED (time budget of ${budget} s spent) | 0 s |"); step_fail=$((step_fail + 1))
    echo "gpu_check: [$step_n] $name skipped: time budget spent" >&2
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  t0=$(date +%s)
  echo "gpu_check: [$step_n] $name (limit ${limit}s) ..." >&2
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  if [ $rc = 0 ]; then status_rows+=("| $name | ok | ${secs} s |")
  elif [ $rc = 124 ] || [ $rc = 137 ]; then status_rows+=("| $name | TIMED OUT after ${limit} s | ${secs} s |"); step_fail=$((step_fail + 1))
  else status_rows+=("| $name | FAILED (exit $rc) | ${secs} s |"); step_fail=$((step_fail + 1)); fi
  echo "gpu_check: [$step_n] $name: exit $rc after ${secs}s (log $log)" >&2
  return $rc
}
# tail of a log for the report
logtail() { echo '```'; tail -n "${2:-15}" "$1" 2>/dev/null; echo '```'; }

# ---- 0. the host libraries: the machine's own, or the packages carried in GPU_CHECK_DEPS --------
# A lent GPU machine reaches no package registry: where OpenBLAS / LAPACKE / zlib (or make) are
# missing, the .deb files that `bash bench/gpu_deps.sh fetch` put in GPU_CHECK_DEPS (default
# .gpu-deps; carry it with the working tree) are unpacked under /tmp/natgrad-deps and every make
# below builds against them (NG_DEPS_PREFIX). Without either, refuse before anything else runs.
deps_dir=${GPU_CHECK_DEPS:-.gpu-deps}
t0=$(date +%s)
if deps_env=$(bash bench/gpu_deps.sh ensure "$deps_dir" /tmp/natgrad-deps 2>"$dir/deps.log"); then
  eval "$deps_env"
  status_rows+=("| deps | ok: $(if [ -n "$deps_env" ]; then echo "the packages carried in $deps_dir"; else echo "this machine's own packages"; fi) | $(( $(date +%s) - t0 )) s |")
else
  tail -n 12 "$dir/deps.log" >&2
  refuse "natgrad's host code cannot be built here (the lines above; full log $dir/deps.log)"
fi

# ---- 1. build ---------------------------------------------------------------------------------
progs="natgrad bench/bench_rbm bench/bench_net bench/bench_factors bench/bench_tn bench/kernel_lab"
if [ "$rehearsal" = 1 ]; then
  step build 240 make -j"$jobs" all $(for p in $progs; do echo "$build/$p"; done)
else
  step build 240 make -j"$jobs" NG_CUDA=1 all $(for p in $progs; do [ "$p" = natgrad ] || echo "$build/$p"; done)
fi
built=$?

# ---- 2. make test-gpu -------------------------------------------------------------------------
# (the rehearsal runs the recipe on the emulated copies of four quick ones; make test runs them all)
if [ "$rehearsal" = 1 ]; then
  rehearsal_tests="test_update test_kernel_blocks test_checkpoint test_fang"
  [ $built = 0 ] && step test-gpu 200 make TEST_GPU_REHEARSAL=1 TEST_GPU_TESTS="$rehearsal_tests" TEST_GPU_SANITIZE=0 test-gpu
elif [ $built = 0 ]; then
  # the tests now; compute-sanitizer's slow passes last (step 5), after the measurements
  step test-gpu 150 make NG_CUDA=1 TEST_GPU_SANITIZE=0 test-gpu
fi

# ---- 3. benchmarks: GPU and CPU, each beside its own process's sgemm --------------------------
# the peer: PyTorch's step of the same autoencoder (bench/bench_net_torch.py) on the same device,
# when a python3 with torch is there (GPU_CHECK_PYTHON, python3, /usr/bin/python3); else a row says why
torch_py=
for p in ${GPU_CHECK_PYTHON:-} python3 /usr/bin/python3; do
  "$p" -c 'import torch' >/dev/null 2>&1 && { torch_py=$p; break; }
done
# torch_step TAG DEVICE: the PyTorch row beside natgrad's, or a skipped row with the reason
torch_step() {
  local tag=$1 d=$2 why=
  if [ -z "$torch_py" ]; then why="no python3 with PyTorch here (GPU_CHECK_PYTHON names one)"
  elif [ "$d" != cpu ] && ! "$torch_py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    why="$torch_py's PyTorch sees no CUDA device"; fi
  if [ -n "$why" ]; then status_rows+=("| bench_net-torch-$tag | skipped: $why | 0 s |"); return 0; fi
  step "bench_net-torch-$tag" 90 "$torch_py" bench/bench_net_torch.py --device "$d" --batch "$(R 500 50)" --iters "$(R 10 2)" \
    --warmup "$(R 3 1)" --csv "$dir/bench_net.csv"
}
if [ $built = 0 ]; then
  rm -f "$dir"/bench_*.csv
  for d in "$dev" cpu; do
    tag=${d/:/}
    for opt in sgd centering fang; do
      # FANG times 100 updates (one refit period) by default: on the CPU 20 keep the step short
      it=(); [ "$d" = cpu ] && [ $opt = fang ] && it=(--iters 20)
      [ "$rehearsal" = 1 ] && it=(--iters 2 --hidden 50 --batch 200)
      step "bench_rbm-$tag-$opt" 60 "$build/bench/bench_rbm" --device "$d" --optimizer "$opt" "${it[@]}" --csv "$dir/bench_rbm.csv"
    done
    step "bench_net-$tag" 90 "$build/bench/bench_net" --device "$d" --batch "$(R 500 50)" --iters "$(R 10 2)" --warmup "$(R 3 1)" --csv "$dir/bench_net.csv"
    torch_step "$tag" "$d"
    kf=(); [ "$rehearsal" = 1 ] && kf=(--k 30,60)
    step "bench_factors-$tag" 45 "$build/bench/bench_factors" --device "$d" --reps "$(R 5 1)" "${kf[@]}" --csv "$dir/bench_factors.csv"
    step "bench_tn-$tag" 60 "$build/bench/bench_tn" --device "$d" --preset curves-autoencoder --batch "$(R 1000 50)" --reps "$(R 3 1)" --csv "$dir/bench_tn.csv"
  done
fi

# ---- 3b. the kernel lab's block-shape sweep on the GPU ----------------------------------------
# exits 1 when a shape differs from the CPU backend or the default shape, or fails to launch
# (the rehearsal drops --need-cuda, which refuses the emulator, and sweeps small sizes)
kl=(--need-cuda); [ "$rehearsal" = 1 ] && kl=(--sizes 1000 --reps 1)
[ $built = 0 ] && step kernel-lab 90 "$build/bench/kernel_lab" "${kl[@]}" --device "$gi" --sections sweep --csv "$dir/kernel_lab.csv"

# ---- 4. natgrad's phase profile on the GPU ----------------------------------------------------
# sizes, update counts and profiled windows (the rehearsal's smaller ones second)
rbm_hidden=$(R 500 50)
kfac_batch=$(R 1000 100) kfac_steps=$(R 30 8) kfac_log=$(R 10 4) kfac_win=$(R 6:30 3:8)
nag_steps=$(R 300 24) nag_win=$(R 101:290 9:20)
rbmsgd_steps=$(R 120 16) rbmsgd_win=$(R 21:110 4:14)
seg_batch=$(R 250 50) seg_steps=$(R 60 8) seg_win=$(R 26:55 3:7)
if [ $built = 0 ]; then
  rm -rf "$dir/prof-rbm" "$dir/prof-kfac"
  step profile-rbm 60 "$build/natgrad" rbm train --device "$dev" --data curves-like --hidden "$rbm_hidden" --steps "$(R 60 12)" --log-every "$(R 30 6)" \
    --profile --profile-steps "$(R 11:60 3:12)" --out "$dir/prof-rbm"
  step profile-kfac 90 "$build/natgrad" net train --device "$dev" --data curves-like --preset curves-autoencoder --optimizer kfac \
    --batch "$kfac_batch" --steps "$kfac_steps" --log-every "$kfac_log" --profile --profile-steps "$kfac_win" --out "$dir/prof-kfac"
  # launch overhead: the curves autoencoder under NAG at m = 250, eager and as CUDA graphs (same
  # seed: the checkpoints must be identical); the window avoids the logged updates (eager)
  rm -rf "$dir/prof-nag-eager" "$dir/prof-nag-graph"
  for g in 0 1; do
    tag=$([ $g = 1 ] && echo graph || echo eager)
    step "profile-nag-$tag" 90 "$build/natgrad" net train --device "$dev" --data curves-like --preset curves-autoencoder \
      --optimizer nag --lr 0.01 --batch 250 --steps "$nag_steps" --log-every "$nag_steps" --cuda-graph $g --profile --profile-steps "$nag_win" \
      --out "$dir/prof-nag-$tag"
  done
  # the RBM's PCD-1 update with SGD, eager and as CUDA graphs (the Philox step counted on the
  # device); same seed, so the checkpoints must be identical
  rm -rf "$dir/prof-rbmsgd-eager" "$dir/prof-rbmsgd-graph"
  for g in 0 1; do
    tag=$([ $g = 1 ] && echo graph || echo eager)
    step "profile-rbmsgd-$tag" 60 "$build/natgrad" rbm train --device "$dev" --data curves-like --hidden "$rbm_hidden" --optimizer sgd \
      --steps "$rbmsgd_steps" --log-every "$rbmsgd_steps" --cuda-graph $g --profile --profile-steps "$rbmsgd_win" --out "$dir/prof-rbmsgd-$tag"
  done
  # K-FAC and NGD (CG) as graph segments between their host reads, eager vs --cuda-graph 1;
  # same seed, so the checkpoints must be identical
  for o in kfac ngd; do
    rm -rf "$dir/prof-$o-eager" "$dir/prof-$o-graph"
    for g in 0 1; do
      tag=$([ $g = 1 ] && echo graph || echo eager)
      step "profile-$o-$tag" 45 "$build/natgrad" net train --device "$dev" --data curves-like --preset curves-autoencoder \
        --optimizer $o --batch "$seg_batch" --steps "$seg_steps" --log-every "$seg_steps" --cuda-graph $g --profile --profile-steps "$seg_win" \
        --out "$dir/prof-$o-$tag"
    done
  done
fi

# ---- 5. compute-sanitizer over make test-gpu's tests, with the time that is left ----------------
if [ "$rehearsal" = 1 ]; then
  [ $built = 0 ] && step sanitizers 60 make TEST_GPU_REHEARSAL=1 TEST_GPU_TESTS="$rehearsal_tests" TEST_GPU_SANITIZE=only test-gpu
elif [ $built = 0 ]; then
  if command -v compute-sanitizer >/dev/null 2>&1 || [ -x "$CUDA_HOME/bin/compute-sanitizer" ]; then
    step sanitizers 240 make NG_CUDA=1 TEST_GPU_SANITIZE=only test-gpu
  else
    status_rows+=("| sanitizers | skipped: compute-sanitizer not found (PATH, $CUDA_HOME/bin) | 0 s |")
  fi
fi

# ---- 6. nsys ----------------------------------------------------------------------------------
nsys=$(command -v nsys 2>/dev/null || true)
if [ -z "$nsys" ]; then for c in "$CUDA_HOME"/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys; do [ -x "$c" ] && nsys=$c; done; fi
[ "$rehearsal" = 1 ] && nsys=
if [ $built = 0 ] && [ -n "$nsys" ]; then
  rm -rf "$dir/nsys-rbm" "$dir"/rbm.nsys-rep "$dir"/rbm.sqlite
  step nsys-rbm 120 "$nsys" profile --trace=cuda,nvtx,cublas,cusolver --capture-range=cudaProfilerApi \
    --capture-range-end=stop --force-overwrite=true -o "$dir/rbm" \
    "$build/natgrad" rbm train --device "$dev" --data curves-like --hidden 500 --steps 40 --log-every 20 --profile-steps 21:40 --out "$dir/nsys-rbm"
  [ -f "$dir/rbm.nsys-rep" ] && step nsys-stats 60 "$nsys" stats --force-export=true \
    --report nvtx_sum,cuda_gpu_kern_sum,cuda_api_sum "$dir/rbm.nsys-rep"
fi

# ---- report -----------------------------------------------------------------------------------
{
  echo "# GPU check: $gname"
  echo
  if [ "$rehearsal" = 1 ]; then
    echo "REHEARSAL (\`GPU_CHECK_REHEARSAL=1 bash bench/gpu_check.sh\`) on the SIMT emulator, no GPU: every figure below is"
    echo "the emulator's on this host's CPU, at reduced sizes, and means nothing; the run shows only that the"
    echo "script's commands, options, comparisons and report work. $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - t_start )) s in all."
    echo "Host: $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1))."
  else
    echo "\`bash bench/gpu_check.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - t_start )) s in all."
    echo "Device $dev: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader -i "$gi" 2>/dev/null)."
    echo "Host: $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)); nvcc $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')."
  fi
  echo
  echo "| step | outcome | time |"
  echo "|---|---|---|"
  printf '%s\n' "${status_rows[@]}"
  echo
  if [ $built != 0 ]; then echo "## Build failed"; logtail "$dir/build.log" 40; fi
  if [ -f "$dir/test-gpu.log" ]; then
    echo "## make test-gpu"
    echo
    logtail "$dir/test-gpu.log" 40
  fi
  if [ -f "$dir/sanitizers.log" ]; then
    echo "## compute-sanitizer (memcheck, racecheck, synccheck) over make test-gpu's tests"
    echo
    logtail "$dir/sanitizers.log" 30
  fi
  if [ -f "$dir/bench_rbm.csv" ]; then
    echo "## RBM PCD speed ($(R '784x500, 2000 particles, batch 2000' '784x50, 200 particles, batch 200'), PCD-1)"
    echo
    echo "ratio = GFLOP/s of the update's gemms / sgemm GFLOP/s measured in the same process (cuBLAS on the GPU, OpenBLAS on the CPU)."
    echo
    echo "| backend | optimizer | shape | particles | batch | timed updates | ms/update | updates/s | PCD GFLOP/s | sgemm GFLOP/s | ratio | |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    cat "$dir"/bench_rbm-*.log | grep '^| ' || true
    echo
    echo "GPU / CPU updates/s (same optimizer, this run):"
    echo
    echo "| optimizer | GPU updates/s | CPU updates/s | GPU / CPU |"
    echo "|---|---|---|---|"
    for opt in sgd centering fang; do
      g=$(grep '^| ' "$dir/bench_rbm-${dev/:/}-$opt.log" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$9); print $9}' | head -1)
      c=$(grep '^| ' "$dir/bench_rbm-cpu-$opt.log" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$9); print $9}' | head -1)
      awk -v o="$opt" -v g="$g" -v c="$c" 'BEGIN { printf "| %s | %s | %s | %s |\n", o, g, c, (g + 0 > 0 && c + 0 > 0) ? sprintf("%.1f", g / c) : "-" }'
    done
    echo
  fi
  for b in bench_net bench_factors bench_tn; do
    grep -qh '^|' "$dir/$b"-*.log 2>/dev/null || continue
    echo "## $b (GPU and CPU rows; sgemm column = the same process's rate)"
    echo
    if [ $b = bench_net ]; then
      echo "| implementation | backend | threads | m | timed steps | ms/step (median) | ms/step (min) | step GFLOP/s | sgemm shape | sgemm GFLOP/s | step / sgemm | other CPU % |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    fi
    grep -h '^|' "$dir/$b"-*.log | awk '!seen[$0]++' || true
    echo
    if [ $b = bench_net ] && ls "$dir"/bench_net-torch-*.log >/dev/null 2>&1; then
      echo "natgrad against PyTorch, the same autoencoder step on the same device (medians of this run):"
      echo
      echo "| device | natgrad ms/step | PyTorch ms/step | PyTorch / natgrad |"
      echo "|---|---|---|---|"
      for tag in ${dev/:/} cpu; do
        n=$(grep '^| natgrad ' "$dir/bench_net-$tag.log" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$7); print $7}' | head -1)
        t=$(grep '^| PyTorch ' "$dir/bench_net-torch-$tag.log" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$7); print $7}' | head -1)
        awk -v d="$tag" -v n="$n" -v t="$t" 'BEGIN { printf "| %s | %s | %s | %s |\n", d, n == "" ? "-" : n, t == "" ? "-" : t, (n + 0 > 0 && t + 0 > 0) ? sprintf("%.2f", t / n) : "-" }'
      done
      echo
    fi
  done
  if [ -f "$dir/kernel-lab.log" ]; then
    echo "## Kernel lab: block shapes of the custom kernel families (bench/kernel_lab.c --sections sweep)"
    echo
    if grep -q '^Fastest block size' "$dir/kernel-lab.log"; then
      sed -n '/^Fastest block size/,$p' "$dir/kernel-lab.log"
    else
      echo "No CUDA timings in this run (no summary table): the end of its log:"; logtail "$dir/kernel-lab.log" 8
    fi
    echo
    bad=$(grep -E '^\|.*(DIFFERS|LAUNCH FAILED|not launchable)' "$dir/kernel-lab.log" || true)
    if ! grep -q '^| [a-z]* | CUDA ' "$dir/kernel-lab.log"; then
      echo "No CUDA rows: the sweep did not reach the GPU (see the log)."
    elif [ -n "$bad" ]; then
      echo "Shapes that differ, fail or cannot launch here:"; echo
      echo "| family | backend, launch shape | n | vs the CPU backend | vs the default shape | ms | G elements/s |"
      echo "|---|---|---|---|---|---|---|"
      echo "$bad" | head -20
    else
      echo "Every shape matched the CPU backend (stated tolerances) and the default shape (bit for bit; reduce within 2 ulp)."
    fi
    echo
    echo "Every row (checks and CUDA-event times): \`$dir/kernel-lab.log\`, \`$dir/kernel_lab.csv\`."
    echo
  fi
  if [ -f "$dir/profile-nag-eager.log" ] || [ -f "$dir/profile-nag-graph.log" ]; then
    echo "## Launch overhead: NAG on the curves autoencoder, m = 250, eager vs --cuda-graph 1 (updates ${nag_win/:/..})"
    echo
    for t in eager graph; do
      echo "- $t: $(grep -h '^per update' "$dir/profile-nag-$t.log" 2>/dev/null | tr '\n' ' ' || echo 'no profile')"
    done
    if cmp -s "$dir/prof-nag-eager/net.ckpt" "$dir/prof-nag-graph/net.ckpt"; then
      echo "- checkpoints after $nag_steps updates: identical (graph = eager bit for bit)"
    else
      echo "- checkpoints after $nag_steps updates: DIFFERENT or missing (graph != eager: a bug to report)"
    fi
    echo
  fi
  if [ -f "$dir/profile-rbmsgd-eager.log" ] || [ -f "$dir/profile-rbmsgd-graph.log" ]; then
    echo "## Launch overhead: the RBM's PCD-1 update with SGD, $rbm_hidden hidden units, eager vs --cuda-graph 1 (updates ${rbmsgd_win/:/..})"
    echo
    for t in eager graph; do
      echo "- $t: $(grep -h '^per update' "$dir/profile-rbmsgd-$t.log" 2>/dev/null | tr '\n' ' ' || echo 'no profile')"
    done
    if cmp -s "$dir/prof-rbmsgd-eager/rbm.ckpt" "$dir/prof-rbmsgd-graph/rbm.ckpt"; then
      echo "- checkpoints after $rbmsgd_steps updates: identical (graph = eager bit for bit)"
    else
      echo "- checkpoints after $rbmsgd_steps updates: DIFFERENT or missing (graph != eager: a bug to report)"
    fi
    echo
  fi
  for o in kfac ngd; do
    if [ -f "$dir/profile-$o-eager.log" ] || [ -f "$dir/profile-$o-graph.log" ]; then
      echo "## Graph segments: $o on the curves autoencoder, m = $seg_batch, eager vs --cuda-graph 1 (updates ${seg_win/:/..})"
      echo
      for t in eager graph; do
        echo "- $t: $(grep -h '^per update' "$dir/profile-$o-$t.log" 2>/dev/null | tr '\n' ' ' || echo 'no profile')"
      done
      if cmp -s "$dir/prof-$o-eager/net.ckpt" "$dir/prof-$o-graph/net.ckpt"; then
        echo "- checkpoints after $seg_steps updates: identical (segments = eager bit for bit)"
      else
        echo "- checkpoints after $seg_steps updates: DIFFERENT or missing (segments != eager: a bug to report)"
      fi
      echo
    fi
  done
  for p in rbm kfac nag-eager nag-graph rbmsgd-eager rbmsgd-graph kfac-eager kfac-graph ngd-eager ngd-graph; do
    if [ -f "$dir/profile-$p.log" ]; then
      echo "## natgrad --profile on $dev: $p"
      echo
      if grep -q '^natgrad profile:' "$dir/profile-$p.log"; then
        echo '```'
        sed -n '/^natgrad profile:/,/^peak of all arenas/p' "$dir/profile-$p.log"
        echo '```'
      else logtail "$dir/profile-$p.log" 8; fi
      echo
    fi
  done
  if [ -z "$nsys" ]; then
    echo "## nsys"; echo; echo "nsys not installed: no capture."
  elif [ -f "$dir/nsys-stats.log" ]; then
    echo "## nsys (steady-state window: RBM updates 21..40, --capture-range=cudaProfilerApi)"
    echo
    logtail "$dir/nsys-stats.log" 80
  fi
  nf=0
  for r in "${status_rows[@]}"; do
    case "$r" in *"| ok |"*|*"| ok: "*|*SKIPPED*|*"| skipped: "*) continue ;; esac
    n=$(sed -E 's/^\| ([^ ]+) .*/\1/' <<<"$r")
    [ "$n" = test-gpu ] || [ "$n" = build ] && continue
    [ $nf = 0 ] && { echo; echo "## Failed steps (end of their logs)"; }
    nf=$((nf + 1)); [ $nf -gt 8 ] && break
    echo; echo "$n:"; logtail "$dir/$n.log" 6
  done
  echo
  echo "Logs, CSVs, profiles and traces: \`$dir/\`."
} > "$md"
echo "gpu_check: wrote $md ($step_fail of $step_n steps failed)" >&2
# GPU_CHECK_COPY_TO=DIR: the report and its folder as one .tar.gz (without checkpoints and nsys
# files) copied to DIR as well, for a machine that is given back when the command ends
if [ -n "${GPU_CHECK_COPY_TO:-}" ]; then
  if mkdir -p "$GPU_CHECK_COPY_TO" && cp "$md" "$GPU_CHECK_COPY_TO/" &&
     tar czf "$GPU_CHECK_COPY_TO/gpu-$slug.tar.gz" --exclude='*.ckpt' --exclude='*.nsys-rep' --exclude='*.sqlite' \
       --exclude='*.qdstrm' -C "$res" "gpu-$slug" "gpu-$slug.md"; then
    echo "gpu_check: copied the report and gpu-$slug.tar.gz to $GPU_CHECK_COPY_TO" >&2
  else
    echo "gpu_check: could not copy the report to GPU_CHECK_COPY_TO=$GPU_CHECK_COPY_TO" >&2; step_fail=$((step_fail + 1))
  fi
fi
[ $step_fail = 0 ]
