#!/usr/bin/env bash
# bench_whiten.sh [BUILD]: PRONG's statistics (the syrk path of ng_whiten_add against one full gemm X X^T)
# and eigendecompositions (ng_whiten_compute) for d = 250, 500, 1000, n = 1000 (make bench-whiten);
# a CUDA table too where a GPU answers. Writes bench/results/bench_whiten.md.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
make --no-print-directory "$build/bench/bench_whiten" >&2
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
out=bench/results/bench_whiten.md
{
  echo "# Whitening statistics and eigendecompositions (\`make bench-whiten\`)"
  echo
  echo "Measured $(date -u +%F) on the $(lscpu | sed -n 's/^Model name: *//p'), medians of 5 rounds; load average" \
       "$(cut -d' ' -f1-3 /proc/loadavg) when it ended (other engineers' jobs share the 2 cores: noisy, and the sgemm rate" \
       "of the same process is given for scale). add = ng_whiten_add (centre on the batch mean, syrk of the lower triangle," \
       "merge); gemm = one full X X^T; eig = ng_whiten_compute (syevd, U^T, U c). No custom statistics kernel was written:" \
       "the eigendecomposition costs several times the statistics," \
       "which is where a reparametrisation's time goes (the paper: 34 % reparametrisation, 4 % statistics)."
  echo
  "$build/bench/bench_whiten"
  if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -gt 0 ]; then echo; "$build/bench/bench_whiten" --device cuda; fi
} > "$out"
cat "$out"
