#!/usr/bin/env bash
# bench_conv.sh [BUILD] [bench_conv options]: im2col + gemm (natgrad's conv layers) against a direct
# convolution on the CPU backend, for the conv shapes of the Fashion-MNIST conv experiment
# (bench/bench_conv.c; make bench-conv). Writes bench/results/bench_conv.{md,csv}; exits non-zero when
# a variant differs from the float64 reference. BENCH_CONV_THREADS (default 1) sets OMP_NUM_THREADS
# for both variants (the backend's BLAS and the direct kernel's OpenMP loops).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
res=bench/results
mkdir -p "$res"
threads=${BENCH_CONV_THREADS:-1}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
out=$(OMP_NUM_THREADS=$threads "$build/bench/bench_conv" --csv "$res/bench_conv.csv" "${@:2}")
{
  echo "# Convolution on the CPU: im2col + gemm against a direct kernel (make bench-conv)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), \`$build/bench/bench_conv\`,"
  echo "OMP_NUM_THREADS=$threads. Shared machine: load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "(1, 5, 15 min); times are the best of the repetitions after a warm-up. The shapes are the two conv layers of"
  echo "bench/conv_fashion.sh for one chunk of 64 images. im2col + gemm is host/models/cnn.c's sequence of backend calls"
  echo "(conv_gather IM2COL, one strided batched gemm, the bias as a rank-1 batched gemm; backward: a gemm per image for"
  echo "dW, a batched gemm and COL2IM for dx); direct is bench/bench_conv.c's loop kernel (OpenMP over image and map,"
  echo "window taps outermost, output rows innermost). GFLOP/s counts 2 n c' P K per pass (twice that for backward);"
  echo "'of sgemm' divides by the backend's sgemm rate on 1024^3 measured in the same process just before (last column). The second table times"
  echo "the conv engine's curvature products (natgrad/cnn.h: J v, G v, H v) against a gradient on the same batch (best of the"
  echo "repetitions, each after the gradient that makes the batch current; the products reuse its forward pass). Under load"
  echo "the 1024^3 sgemm (tens of ms) is preempted more often than the short timed sections (best of 5 of a few ms), so"
  echo "'of sgemm' can pass 100 %: compare the variants with each other, which ran in the same minute."
  echo
  echo "$out"
} > "$res/bench_conv.md"
cat "$res/bench_conv.md"
grep -q DIFFERS "$res/bench_conv.md" && { echo "bench-conv: a variant differs from the float64 reference" >&2; exit 1; }
exit 0
