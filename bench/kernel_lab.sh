#!/usr/bin/env bash
# kernel_lab.sh [BUILD] [kernel_lab options]: run bench/kernel_lab.c (make kernel-lab): each Philox-driven
# elementwise family, and the fused NAG step against the axpby ops it replaced, with its numbered variants, checked against a scalar reference and timed over sizes, on the CPU
# backend and, when a GPU answers, the CUDA kernels. Writes bench/results/kernel_lab.{md,csv};
# exits non-zero when a variant differs from its reference.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
res=bench/results
mkdir -p "$res"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
out=$("$build/bench/kernel_lab" --csv "$res/kernel_lab.csv" "${@:2}")
{
  echo "# Kernel lab: Philox-driven elementwise families and the fused NAG step (make kernel-lab)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc --all) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), \`$build/bench/kernel_lab\`."
  echo "Shared machine: load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min) on $(nproc --all) cores;"
  echo "times are the best of the repetitions and still carry other engineers' load. Variant 1 of each family is a"
  echo "plain scalar loop over the ng_math.h body (the reference); CPU variants must be bit-identical to it, CUDA"
  echo "variants within the device's expf. Block shapes of the CUDA kernels are fixed by their launchers (not yet"
  echo "a parameter of the lab). The momentum family times NAG's step with iterate averaging as the five axpby ops"
  echo "nag.c issued before NG_OP_MOMENTUM (variant 1) against the fused op (variant 2): the same roundings in one"
  echo "pass over d, v, p and the average instead of five (bit-identical, checked)."
  echo
  echo "$out"
} > "$res/kernel_lab.md"
cat "$res/kernel_lab.md"
grep -q DIFFERS "$res/kernel_lab.md" && { echo "kernel-lab: a variant differs from its reference" >&2; exit 1; }
exit 0
