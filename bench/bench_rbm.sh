#!/usr/bin/env bash
# bench_rbm.sh BUILD: PCD updates/s of a 784x500 RBM (2000 particles, mini-batch 2000) for each
# update rule on the CPU backend (and CUDA when a GPU answers), next to the sgemm GFLOP/s measured
# in the same process. Writes bench/results/bench_rbm.csv and bench/results/bench_rbm.md.
set -euo pipefail
build=${1:-build}
out=bench/results
mkdir -p "$out"
csv=$out/bench_rbm.csv
md=$out/bench_rbm.md
rm -f "$csv"
{
  echo "# RBM PCD speed (make bench-rbm)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))."
  echo "784 visible x 500 hidden, 2000 PCD particles, mini-batch 2000, PCD-1; 20 timed updates after one warm-up."
  echo "ratio = GFLOP/s of the update's gemms / sgemm GFLOP/s measured in the same process."
  echo
  echo "| backend | optimizer | shape | particles | batch | ms/update | updates/s | PCD GFLOP/s | sgemm GFLOP/s | ratio |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} > "$md"
devices="cpu"
if "$build/natgrad" info 2>/dev/null | grep -q '^auto device: cuda'; then devices="cpu cuda"; fi
for dev in $devices; do
  for opt in sgd centering; do
    "$build/bench/bench_rbm" --device "$dev" --optimizer "$opt" --csv "$csv" | tee -a "$md"
  done
done
echo >> "$md"
echo "wrote $csv and $md"
