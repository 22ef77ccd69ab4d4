#!/usr/bin/env bash
# bench_rbm.sh BUILD: PCD updates/s of a 784x500 RBM (2000 particles, mini-batch 2000) for each
# update rule on the CPU backend (and CUDA when a GPU answers), next to the sgemm GFLOP/s measured
# in the same process. Writes bench/results/bench_rbm.csv and bench/results/bench_rbm.md.
# THREADS=N runs natgrad (--threads is OMP_NUM_THREADS here) and scikit-learn (OMP_NUM_THREADS,
# OPENBLAS_NUM_THREADS) on N threads; THREADS=1 is the fair and steady comparison on a shared
# machine. REPS=R (default 3) repeats the natgrad-SGD / scikit-learn pair R times, interleaved,
# and compares their medians.
set -euo pipefail
build=${1:-build}
reps=${REPS:-3}
if [ -n "${THREADS:-}" ]; then export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS; fi
out=bench/results
mkdir -p "$out"
csv=$out/bench_rbm.csv
md=$out/bench_rbm.md
rm -f "$csv"
{
  echo "# RBM PCD speed (make bench-rbm)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc --all) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))."
  echo "784 visible x 500 hidden, 2000 PCD particles, mini-batch 2000, PCD-1, timed after one warm-up update"
  echo "(20 updates; FANG: 100 updates = one refit period, so its refit is amortised)."
  echo "Shared machine: load average at the start $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) on $(nproc --all) cores; other engineers' jobs slow every row alike within a run, so compare rows of one run."
  echo "ratio = GFLOP/s of the update's gemms (6 products of 2*784*500*2000 flops) / sgemm GFLOP/s measured in the same process, interleaved with the updates (after each update, six sgemms of the trainer's 500x2000x784 shape), so that other jobs slow both alike."
  echo "Threads: ${THREADS:-the OpenMP default, one per core} for natgrad and scikit-learn alike."
  echo
  echo "| backend | optimizer | shape | particles | batch | timed updates | ms/update | updates/s | PCD GFLOP/s | sgemm GFLOP/s | ratio | |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$md"
devices="cpu"
if "$build/natgrad" info 2>/dev/null | grep -q '^auto device: cuda'; then devices="cpu cuda"; fi
prof=$out/bench_rbm_profile.txt
b2b=$out/bench_rbm_b2b.csv
rm -f "$prof" "$b2b"
for dev in $devices; do
  for opt in sgd centering fang; do
    extra=()
    [ "$dev/$opt" = cpu/sgd ] && extra=(--profile "$prof" --b2b "$b2b")
    "$build/bench/bench_rbm" --device "$dev" --optimizer "$opt" --csv "$csv" "${extra[@]}" | tee -a "$md"
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
  # natgrad SGD and scikit-learn in turn, REPS times (the first natgrad run is the table's sgd row
  # above); each run appends a CSV row, and the comparison below takes the medians
  sk_row=
  for rep in $(seq 1 "$reps"); do
    [ "$rep" -gt 1 ] && { "$build/bench/bench_rbm" --device cpu --optimizer sgd --csv "$csv" --b2b "$b2b" >/dev/null || true; }
    row=$(OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} "$py" bench/bench_rbm_sklearn.py --csv "$csv") || row=
    [ -z "$sk_row" ] && sk_row=$row
  done
  if [ -n "$sk_row" ]; then
    echo "$sk_row" | tee -a "$md"
    case "$sk_row" in *float64*) { echo; echo "scikit-learn's partial_fit initialises its weights in float64, so its gemms are dgemm: its ratio column (against the float32 sgemm rate of its process) understates how close it runs to its own BLAS. It performs the same PCD-1 SGD update as natgrad's sgd row (persistent chains = batch size) with 5 gemms where natgrad does 6."; } | tee -a "$md" ;; esac
  else sk_note="scikit-learn row failed (see the output above)."; fi
fi
[ -n "$sk_note" ] && { echo; echo "$sk_note"; } | tee -a "$md"
if [ -z "$sk_note" ]; then
  # natgrad SGD (the update sklearn does: plain PCD-1 SGD) against sklearn, same run: every
  # interleaved repetition, then the ratio of the median ms/update
  awk -F, 'function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
           NR > 1 && $(NF-11) == "sklearn" { sk[++ns] = $(NF-5) }
           NR > 1 && $0 ~ /^"cpu/ && $(NF-11) == "sgd" { ng[++nn] = $(NF-5); rt[nn] = $(NF-1) }
           END { if (ns > 0 && nn > 0) {
                   print ""; print "| repetition | natgrad SGD ms/update | its gemm ratio | scikit-learn ms/update | natgrad / scikit-learn updates/s |"; print "|---|---|---|---|---|"
                   for (i = 1; i <= nn && i <= ns; i++) printf "| %d | %.1f | %.2f | %.1f | %.2f |\n", i, ng[i], rt[i], sk[i], sk[i] / ng[i]
                   for (i = 1; i <= nn; i++) r2[i] = rt[i]
                   msk = med(sk, ns); mng = med(ng, nn); mrt = med(r2, nn)
                   print ""; printf "natgrad SGD (CPU) / scikit-learn updates/s, medians of %d interleaved runs each: %.2f (target >= 1.5); natgrad'"'"'s gemm ratio, median: %.2f (target >= 0.85)\n", nn, msk / mng, mrt } }' "$csv" | tee -a "$md"
fi
# the same ratio with the updates back to back (as training runs them): blocks of 5 updates, each
# followed by its sgemms, in the same processes as the interleaved figures above
if [ -s "$b2b" ]; then
  awk -F, 'NR > 1 { r[++n] = $NF; ms[n] = $4 }
           END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
                 med = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
                 print ""; printf "natgrad SGD (CPU), updates back to back (blocks of 5 updates alternating with blocks of their sgemms, in the same %d processes): gemm ratio median %.2f (runs %.2f-%.2f; target >= 0.85). The interleaved figure above runs six sgemms on other buffers between every two updates, which evicts the update'"'"'s data from the cache; training does not.\n", n, med, r[1], r[n] }' "$b2b" | tee -a "$md"
fi
# where the CPU SGD update's time goes: natgrad's profile ranges (each gemm with its GFLOP/s, each
# Gibbs op) over as many updates again, right after the sgd row's timed ones
if [ -s "$prof" ]; then
  { echo; echo "Where the CPU SGD update's time goes (\`bench_rbm --profile\`: natgrad's profile ranges over 20 more updates in the sgd row's process, wall clock; a gemm's GFLOP/s compares with that row's sgemm GFLOP/s; the gemm and Gibbs ranges run once per column block):"; echo
    echo '```'; sed -n '/^range/,/^per update/p' "$prof"; echo '```'; } | tee -a "$md"
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
