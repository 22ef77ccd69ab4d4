#!/usr/bin/env bash
# kernel_lab.sh [BUILD] [kernel_lab options]: run bench/kernel_lab.c (make kernel-lab):
#   1. each Philox-driven elementwise family, and the fused NAG step against the axpby ops it replaced,
#      with its numbered variants, checked against a scalar reference and timed over sizes, on the CPU
#      backend and, when a GPU answers, the CUDA kernels;
#   2. the block-shape sweep of every custom kernel family (kernels/launch.cu's table): the CPU
#      backend's ops (the references, timed) and, on a GPU, every block size checked against them and
#      against the default shape and timed by CUDA events;
#   3. when BUILD/simt/bench/kernel_lab exists (make kernel-lab builds it with the tests/simt
#      emulator): the same sweep on the emulated CUDA backend at small sizes, checks only.
# Writes bench/results/kernel_lab.{md,csv} (+ kernel_lab_emulated.csv); exits non-zero when a variant
# or a shape differs from its reference or fails to launch.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
res=bench/results
mkdir -p "$res"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
out=$("$build/bench/kernel_lab" --csv "$res/kernel_lab.csv" "${@:2}")
emu=
if [ -x "$build/simt/bench/kernel_lab" ]; then
  emu=$(OMP_NUM_THREADS=1 "$build/simt/bench/kernel_lab" --sections sweep --sizes 4099,65536 --reps 1 \
    --csv "$res/kernel_lab_emulated.csv" 2>&1 | sed -n '/^## Block-shape sweep/,$p')
fi
{
  echo "# Kernel lab: the custom kernel families, variants and block shapes (make kernel-lab)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc --all) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), \`$build/bench/kernel_lab\`."
  echo "Shared machine: load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min) on $(nproc --all) cores;"
  echo "times are the best of the repetitions and still carry other engineers' load. Variant 1 of each family is a"
  echo "plain scalar loop over the ng_math.h body (the reference); CPU variants must be bit-identical to it, CUDA"
  echo "variants within the device's expf. The momentum family times NAG's step with iterate averaging as the five axpby ops"
  echo "nag.c issued before NG_OP_MOMENTUM (variant 1) against the fused op (variant 2): the same roundings in one"
  echo "pass over d, v, p and the average instead of five (bit-identical, checked)."
  echo
  echo "The block-shape sweep runs each custom kernel family (kernels/launch.cu: ng_cuda_set_block) on the problems"
  echo "of bench/kernel_lab_families.h; its CUDA rows need a GPU (bench/gpu_check.sh runs it there). Below the"
  echo "CPU run, the same sweep on the tests/simt emulator: every block size launched and checked, no time shown."
  echo
  echo "$out"
  if [ -n "$emu" ]; then
    echo
    echo "# Emulated CUDA (\`$build/simt/bench/kernel_lab --sections sweep --sizes 4099,65536\`): checks only"
    echo
    echo "$emu" | sed '1s/^## /## Emulated: /'
  fi
} > "$res/kernel_lab.md"
cat "$res/kernel_lab.md"
grep -qE "DIFFERS|LAUNCH FAILED" "$res/kernel_lab.md" && { echo "kernel-lab: a variant or shape differs from its reference" >&2; exit 1; }
exit 0
