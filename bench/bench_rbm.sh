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
  echo "784 visible x 500 hidden, 2000 PCD particles, mini-batch 2000, PCD-1, timed after one warm-up update"
  echo "(20 updates; FANG: 100 updates = one refit period, so its refit is amortised)."
  echo "ratio = GFLOP/s of the update's gemms (6 products of 2*784*500*2000 flops) / sgemm GFLOP/s measured in the same process."
  echo
  echo "| backend | optimizer | shape | particles | batch | timed updates | ms/update | updates/s | PCD GFLOP/s | sgemm GFLOP/s | ratio | |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$md"
devices="cpu"
if "$build/natgrad" info 2>/dev/null | grep -q '^auto device: cuda'; then devices="cpu cuda"; fi
for dev in $devices; do
  for opt in sgd centering fang; do
    "$build/bench/bench_rbm" --device "$dev" --optimizer "$opt" --csv "$csv" | tee -a "$md"
  done
done
# FANG's cost relative to centered SGD, same shapes, same run (FANG issue target: <= 1.5 on the CPU)
# (the quoted backend description may hold commas: count the other columns from the end)
awk -F, 'NR > 1 { key = $1; gsub(/"/, "", key); o = $(NF-11); ms[key "," o] = $(NF-5); rf[key "," o] = $NF; keys[key] = 1 }
  END { print ""; print "| backend | FANG ms / centering ms | fraction of FANG time in the refit |"; print "|---|---|---|";
        for (k in keys) if ((k ",fang") in ms && (k ",centering") in ms)
          printf "| %s | %.3f | %.3f |\n", k, ms[k ",fang"] / ms[k ",centering"], rf[k ",fang"] }' "$csv" | tee -a "$md"
echo >> "$md"
echo "wrote $csv and $md"
