#!/usr/bin/env bash
# bench_whiten.sh [BUILD]: PRONG's statistics (the syrk path of ng_whiten_add against one full gemm X X^T)
# and eigendecompositions (ng_whiten_compute) for d = 250, 500, 1000, n = 1000 (make bench-whiten);
# a CUDA table too where a GPU answers; then one PRONG reparametrisation of the MNIST autoencoder with
# its eight eigendecompositions batched (ng_syevd_batched) against one after another, on 1 and 2 CPU
# threads (bench_whiten --refresh; needs data/mnist: make data-mnist). Writes bench/results/bench_whiten.md.
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
  echo
  echo "## Batched eigendecompositions in a PRONG reparametrisation (\`bench_whiten --refresh\`)"
  echo
  echo "The MNIST autoencoder of Figure 3 (784-1000-500-250-30-250-500-1000-784; eigendecompositions of sizes 784, 1000," \
       "500, 250, 30, 250, 500, 1000), N_s = 1000 digits, eps 0.1, after the whitened initialisation. Two identical networks," \
       "refreshed alternately (7 rounds, medians): one whose refresh sends the eight problems to ng_syevd_batched (CPU: run" \
       "concurrently on the OpenMP threads, each single-threaded, largest first), one on the same backend with the batched" \
       "slot removed (one ssyevd after another, as before). Reparametrisation = ng_net_whiten_refresh's times[1]" \
       "(eigendecompositions, U^T, U c, and K or the projection of V, d); statistics = its forward pass and scatter (times[0])."
  for th in 1 2; do
    echo
    echo "Threads $th; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    OMP_NUM_THREADS=$th "$build/bench/bench_whiten" --refresh --threads "$th" --rounds 7 2>/dev/null
    echo
    echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  done
  if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -gt 0 ]; then
    echo
    echo "CUDA (cuSOLVER syevd per problem: none of these sizes is grouped, see README):"
    echo
    "$build/bench/bench_whiten" --refresh --device cuda --rounds 7 2>/dev/null
  fi
} > "$out"
cat "$out"
