#!/usr/bin/env bash
# bench_prong.sh BUILD: PRONG's runtime per update relative to SGD's on the MNIST autoencoder, both
# in one process and interleaved (bench/bench_prong.c: R rounds of T SGD updates then T PRONG
# updates, batch 128, N_s 1000, eps 0.1) for each configuration FORM:THREADS:T:ROUNDS of
# BENCH_PRONG_CONFIGS (default: both forms at T = 100 on one thread, 3 rounds; the canonical form at
# T = 1000, one round; the canonical form at T = 100 on two threads, 2 rounds); then the eigendecomposition of
# a 1000 x 1000 covariance on one and on two OpenBLAS threads (why the CPU backend runs syevd on
# one). Writes bench/results/bench_prong.{md,csv}. Needs MNIST (make data-mnist).
set -euo pipefail
build=${1:-build}
out=bench/results
mkdir -p "$out"
csv=$out/bench_prong.csv
md=$out/bench_prong.md
configs=${BENCH_PRONG_CONFIGS:-canonical:1:100:3 whitened:1:100:3 canonical:1:1000:1 canonical:2:100:2}
bash data/prepare.sh mnist >/dev/null
rm -f "$csv"
rows=()
t_start=$(date +%s)
for c in $configs; do
  IFS=: read -r form th T rounds <<<"$c"
  echo "bench-prong: $form form, T $T, $th thread(s), $rounds round(s)"
  rows+=("$("$build/bench/bench_prong" --form "$form" --T "$T" --rounds "$rounds" --threads "$th" --csv "$csv" | sed "s/^| cpu |/| cpu, $th thread(s) |/")")
done
eig=$("$build/bench/bench_prong" --syevd 1000)
t_total=$(( $(date +%s) - t_start ))
cpu=$(lscpu | sed -n 's/^Model name: *//p')
{
  echo "# PRONG vs SGD per update, interleaved in one process (\`make bench-prong\`)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on the ${cpu:-?} (2 cores, no GPU), CPU backend, ${t_total} s in all. The MNIST"
  echo "autoencoder (784-1000-500-250-30-250-500-1000-784, sparse initialisation), batch 128, SGD with momentum 0.9, lr 0.01,"
  echo "7,996 MNIST digits. bench/bench_prong.c builds a plain network (SGD) and a whitened one (PRONG, eps 0.1, N_s = 1000)"
  echo "and runs, after PRONG's whitened initialisation (timed apart), R rounds of T SGD updates followed by T PRONG updates,"
  echo "so each PRONG block holds one reparametrisation and the load of other processes falls on both networks alike."
  echo "**The machine is shared with other engineers' jobs**: \"other CPU\" is the share of all cores other processes took"
  echo "during the timed rounds, the load average is read at the end; absolute times are inflated by that load, the ratios"
  echo "compare rows of the same process only. The CPU-time ratio (this process's user + system time in the PRONG blocks"
  echo "over the SGD blocks') does not count the time the process waited for a core, so it moves less with the load; on"
  echo "one thread it is the ratio of the work done."
  echo
  echo "| device, threads | PRONG form | batch | T | N_s | rounds | SGD ms / update | PRONG ms / update | PRONG / SGD | median of the rounds' ratios | CPU-time ratio | PRONG ms / update without its refreshes | statistics (% of PRONG's time) | reparametrisation (% of PRONG's time) | whitened initialisation | other CPU | load average |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "PRONG form: canonical = natgrad's default (\`--prong-form canonical\`: W = V U is stored and trained with the whitened"
  echo "SGD step mapped to W, one extra product K a-bar per layer in the backward pass; a refresh leaves W, b alone and"
  echo "computes K = U^T U), whitened = the whitened coordinates V, d (\`--prong-form whitened\`: U (a - c) in every forward pass"
  echo "and U^T in every backward pass; a refresh projects V, d). statistics = the forward pass of the N_s cases and each"
  echo "layer's merged scatter (syrk); reparametrisation = the eight eigendecompositions (sizes 784, 1000, 500, 250, 30,"
  echo "250, 500, 1000) and the projections of V and d (whitened) or the products K = U^T U (canonical). The issue's"
  echo "target: PRONG at most 1.5x SGD per epoch (= per update: same batch size), the reparametrisation under 10 % of its"
  echo "time; the paper: 3.2x, 34 % reparametrisation, 4 % statistics."
  echo
  echo "## The eigendecomposition on one and two threads"
  echo
  echo "$eig"
} > "$md"
cat "$md"
