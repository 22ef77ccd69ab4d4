#!/usr/bin/env bash
# bench_profile.sh [BUILD]: what natgrad's profiling ranges cost (make bench-profile).
# 1. bench_profile: ns per range push/pop pair and per flop-counter call with the profile off (every
#    run without --profile), and per pair with --profile measuring (CPU clock).
# 2. Ranges per update of a real RBM update (784x500, PCD-1, 2000 particles, batch 2000, MNIST) and of
#    a NAG update of the curves autoencoder at m = 250, counted by --profile (the sum of every range's
#    calls inside the updates / updates), with the update's time from the same table.
# 3. The cost of the ranges as a fraction of the update: ranges/update x ns/pair / update time.
# The machine is shared: the load average before and after is recorded beside the figures.
# Writes bench/results/bench_profile.{md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
res=bench/results
mkdir -p "$res"
csv=$res/bench_profile.csv
md=$res/bench_profile.md
tmp=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_bprof.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rm -f "$csv"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
rows=$("$build/bench/bench_profile" --csv "$csv")
# ranges per update and ms per update from a --profile run's CSV (rows inside the updates: depth >= 1
# below "train step", plus the step itself; kernel rows included)
per_update() { # CSV -> "ranges_per_update ms_per_update"
  # fields counted from the end (range names may hold commas): the last 15 columns of the header
  awk -F, 'NR > 1 { n = NF; calls = $(n-11); tot = $(n-10); name = $1 }
           NR > 1 && name == "\"train step\"" { steps = calls; step_s = tot }
           NR > 1 && $(n-12) + 0 >= 1 { inner += calls }
           END { printf "%.1f %.3f\n", (inner + steps) / steps, 1000 * step_s / steps }' "$1"
}
bash data/prepare.sh mnist >/dev/null 2>&1 || true
"$build/natgrad" rbm train --device cpu --data mnist --hidden 500 --steps 12 --log-every 6 --profile --out "$tmp/rbm" >"$tmp/rbm.out" 2>"$tmp/rbm.err"
"$build/natgrad" net train --device cpu --data curves-like --preset curves-autoencoder --batch 250 --optimizer nag --lr 0.01 \
  --steps 60 --log-every 30 --eval-n 500 --profile --out "$tmp/net" >"$tmp/net.out" 2>"$tmp/net.err"
read -r rbm_r rbm_ms < <(per_update "$tmp/rbm/profile.csv")
read -r net_r net_ms < <(per_update "$tmp/net/profile.csv")
off=$(awk -F, '$2 == "pair_off_ns" { print $3 }' "$csv")
on=$(awk -F, '$2 == "pair_on_ns" { print $3 }' "$csv")
load1=$(cut -d' ' -f1-3 /proc/loadavg)
frac() { awk -v r="$1" -v ns="$2" -v ms="$3" 'BEGIN { printf "%.2g", r * ns / (ms * 1e6) }'; }
{
  echo "# Cost of the profiling ranges (make bench-profile)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)),"
  echo "\`$build/natgrad\` as built here. Shared machine: load average $load0 before, $load1 after (1, 5, 15 min) on $(nproc) cores,"
  echo "so update times are inflated by other engineers' jobs; the per-pair costs are the best of 5 rounds."
  echo
  echo "| build | what | cost |"
  echo "|---|---|---|"
  echo "$rows"
  echo
  echo "| workload (CPU backend) | ranges per update | ms per update (this run) | ranges' cost / update, profile off | with --profile |"
  echo "|---|---|---|---|---|"
  echo "| RBM 784x500, PCD-1, 2000 particles, batch 2000 (MNIST) | $rbm_r | $rbm_ms | $(frac "$rbm_r" "$off" "$rbm_ms") | $(frac "$rbm_r" "$on" "$rbm_ms") |"
  echo "| curves autoencoder, NAG, m = 250 | $net_r | $net_ms | $(frac "$net_r" "$off" "$net_ms") | $(frac "$net_r" "$on" "$net_ms") |"
  echo
  echo "Off, the ranges cost a few parts per million of an update or less: nothing measurable against the"
  echo "run-to-run noise of these updates (several % on this shared machine). On a GPU with nsys attached the"
  echo "NVTX calls cost more (the tool records them); without a tool they are the no-op measured here. On the CUDA"
  echo "backend every kernel launcher is a range too (one per launch), which this CPU-backend count does not include."
} > "$md"
cat "$md"
