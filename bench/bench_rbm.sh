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
  echo "Shared machine: load average at the start $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) on $(nproc) cores; other engineers' jobs slow every row alike within a run, so compare rows of one run."
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
# scikit-learn's BernoulliRBM at the same shapes, in this run (Debian's python3-sklearn for
# /usr/bin/python3; installed with apt-get when root and missing, otherwise skipped with a note)
py=/usr/bin/python3
sk_note=
if ! "$py" -c 'import sklearn' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench-rbm: installing python3-sklearn for the scikit-learn comparison (log: $build-sklearn.log)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-sklearn) >"$build-sklearn.log" 2>&1 || true
  fi
  "$py" -c 'import sklearn' >/dev/null 2>&1 ||
    sk_note="scikit-learn row skipped: \`$py -c 'import sklearn'\` fails and python3-sklearn could not be installed (not root, or apt-get failed: see $build-sklearn.log)."
fi
if [ -z "$sk_note" ]; then
  sk_row=$(OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} "$py" bench/bench_rbm_sklearn.py --csv "$csv") || sk_row=
  if [ -n "$sk_row" ]; then
    echo "$sk_row" | tee -a "$md"
    case "$sk_row" in *float64*) { echo; echo "scikit-learn's partial_fit initialises its weights in float64, so its gemms are dgemm: its ratio column (against the float32 sgemm rate of its process) understates how close it runs to its own BLAS. It performs the same PCD-1 SGD update as natgrad's sgd row (persistent chains = batch size) with 5 gemms where natgrad does 6."; } | tee -a "$md" ;; esac
  else sk_note="scikit-learn row failed (see the output above)."; fi
fi
[ -n "$sk_note" ] && { echo; echo "$sk_note"; } | tee -a "$md"
if [ -z "$sk_note" ]; then
  # natgrad SGD (the update sklearn does: plain PCD-1 SGD) against sklearn, same run
  awk -F, 'NR > 1 && $(NF-11) == "sklearn" { sk = $(NF-5) }
           NR > 1 && $0 ~ /^"cpu/ && $(NF-11) == "sgd" { ng = $(NF-5) }
           END { if (sk > 0 && ng > 0) { print ""; printf "natgrad SGD (CPU) / scikit-learn updates/s, same run: %.2f (target >= 1.5)\n", sk / ng } }' "$csv" | tee -a "$md"
fi
# FANG's cost relative to centered SGD, same shapes, same run (FANG issue target: <= 1.5 on the CPU)
# (the quoted backend description may hold commas: count the other columns from the end)
awk -F, 'NR > 1 { key = $1; gsub(/"/, "", key); o = $(NF-11); ms[key "," o] = $(NF-5); rf[key "," o] = $NF; keys[key] = 1 }
  END { print ""; print "| backend | FANG ms / centering ms | fraction of FANG time in the refit |"; print "|---|---|---|";
        for (k in keys) if ((k ",fang") in ms && (k ",centering") in ms)
          printf "| %s | %.3f | %.3f |\n", k, ms[k ",fang"] / ms[k ",centering"], rf[k ",fang"] }' "$csv" | tee -a "$md"
echo >> "$md"
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)." >> "$md"
echo "wrote $csv and $md"
