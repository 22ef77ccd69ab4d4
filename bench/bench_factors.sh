#!/usr/bin/env bash
# bench_factors.sh [BUILD]: K-FAC's Kronecker-factor accumulation, the fused op family
# (NG_OP_FACTOR_UPDATE) against the plain syrk + axpby + symmetrise sequence, for the factors of
# the MNIST autoencoder at k = 125, 250, 1000 cases (block-diagonal and block-tridiagonal factor
# sets), on the CPU and, when a GPU answers, on CUDA (bench/bench_factors.c). Writes
# bench/results/bench_factors.{md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
res=bench/results
mkdir -p "$res"
rm -f "$res/bench_factors.csv"
cpu=$(lscpu | sed -n 's/^Model name: *//p')
{
  echo "# Kronecker-factor accumulation: fused op vs plain sequence (make bench-factors)"
  echo
  echo "Measured $(date +%F) on $(nproc) cores ($cpu); $("$build/natgrad" info 2>/dev/null | sed -n 's/^cpu backend: //p' | head -1)."
  echo "Factors of the MNIST autoencoder (A-bar of size d+1, G of size d; tridiag adds the 14 cross factors),"
  echo "moving average F = 0.95 F + 0.05/k X X^T of all of them, mean of 10 repetitions after one warm-up."
  echo "fused: one factor_update call per 32 factors (CUDA: one launch; CPU: ssyrk with beta + mirror);"
  echo "plain: per factor syrk into a temporary, symmetrise, axpby blend. GFLOP/s count n(n+1)k per symmetric"
  echo "and 2rck per cross factor; sgemm: the same process at the largest factor's shape (1001 x 1001 x k)."
  echo
} > "$res/bench_factors.md"
note=
for dev in cpu cuda; do
  if [ $dev = cuda ] && ! "$build/natgrad" info 2>/dev/null | grep -q "cuda devices: [1-9]"; then
    note="CUDA rows skipped: no CUDA device answers on this machine (the same command measures them on a GPU)."
    continue
  fi
  "$build/bench/bench_factors" --device $dev --csv "$res/bench_factors.csv" | { [ $dev = cpu ] && cat || tail -n +3; } >> "$res/bench_factors.md"
  "$build/bench/bench_factors" --device $dev --tridiag --csv "$res/bench_factors.csv" | tail -n +3 >> "$res/bench_factors.md"
done
[ -n "$note" ] && printf '\n%s\n' "$note" >> "$res/bench_factors.md"
cat "$res/bench_factors.md"
