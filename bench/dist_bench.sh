#!/usr/bin/env bash
# dist_bench.sh BUILD: data-parallel cost on this machine's CPU backend (make bench-dist).
#  1. BUILD/bench/bench_comm under mpirun -np 2: time of one float32 all-reduce (sum) per size,
#     with algbw and busbw (NCCL's convention);
#  2. `natgrad net train` NAG on the MNIST autoencoder (784-1000-500-250-30-250-500-1000-784,
#     2,837,314 parameters), global batch 500, 25 updates: one rank with 1 and 2 threads, two ranks
#     with 1 thread each; time per update (train_s of the log, monitors excluded), seconds in
#     collectives per rank, communication share; the 1-minute load average before each run
#     (other engineers' jobs share these 2 cores: every figure is disturbed by them);
#  3. the same for K-FAC (blockdiag, the paper's defaults) at the same global batch: one rank with
#     1 thread and two ranks with 1 thread each, DIST_BENCH_KFAC_STEPS (10) updates, which include
#     the inverse refreshes of updates 1-3 (each layer's inverses owned by one rank, broadcast);
#  4. `natgrad rbm train` on MNIST (784 x 500, PCD-1, DIST_BENCH_RBM_BATCH (2000) cases and as many
#     particles, FANG's section 6.2 sizes), centering and FANG (refit at update 0 only), one rank with
#     1 and 2 threads and two ranks with 1 thread each, DIST_BENCH_RBM_STEPS (20) updates; time per update
#     from the log's time_s with the free-energy monitor off (--monitor-n 0);
#     DIST_BENCH_ONLY=rbm runs only these rows and keeps the other rows and the all-reduce table of
#     the last full run;
#  5. the gradient all-reduce overlapped with the backward pass: NAG on the same autoencoder, 2 ranks
#     with 1 thread each, --comm-overlap 0 and 1 (default buckets, 1 MiB) alternated DIST_BENCH_OV_PAIRS
#     (3) times so that both see the same load drift; time per update, seconds in collectives and their
#     share, load before each run (dist_overlap.csv, the last section of dist_bench.md);
#     DIST_BENCH_ONLY=overlap runs only these rows and replaces that section of the last full run's file;
#  6. K-FAC with asynchronous refreshes (--kfac-async 2 --T3 5: launched at updates 5, 10, ..., used 2
#     updates later) on the same autoencoder and global batch, 2 ranks with 1 thread each (a main and a
#     worker thread per rank), each layer's refresh owned by one rank (default) against every rank
#     computing every layer (NG_KFAC_REDUNDANT=1), alternated DIST_BENCH_KA_PAIRS (3) times over
#     DIST_BENCH_KA_STEPS (20) updates; wall and CPU time per update over updates 4 .. N (1-3 refresh
#     synchronously, also redundantly under the switch), the main thread's seconds waiting for and sharing the
#     refreshes (inverse_s), load before each run (dist_kfac_async.csv, a section of dist_bench.md);
#     DIST_BENCH_ONLY=kfac-async runs only these rows and replaces that section of the last full run's file;
#  7. the cost model of NAG and K-FAC steps on 8 GPUs (bench/dist_cost_model.py), evaluated with
#     T1_MS (measured single-GPU ms per update at the global batch) and BUSBW_GBPS (measured NCCL
#     bus bandwidth) when given in the environment, otherwise left as formulas.
# Writes bench/results/dist_bench.csv, dist_allreduce.csv, dist_overlap.csv, dist_kfac_async.csv and dist_bench.md.
set -euo pipefail
build=${1:-build}
out=bench/results
mkdir -p "$out"
csv=$out/dist_bench.csv
md=$out/dist_bench.md
steps=${DIST_BENCH_STEPS:-25}
batch=${DIST_BENCH_BATCH:-500}
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe --bind-to none)
if ! "$build/natgrad" info | grep -q "mpi compiled in: yes" || ! command -v mpirun >/dev/null; then
  echo "bench-dist: needs a build with MPI and mpirun (make deps installs Open MPI)"; exit 1
fi
bash data/prepare.sh mnist >/dev/null 2>&1 || { echo "bench-dist: MNIST could not be prepared"; exit 1; }
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
load() { cut -d' ' -f1 /proc/loadavg; }

only=${DIST_BENCH_ONLY:-}
ovcsv=$out/dist_overlap.csv
overlap_rows() { # NAG, 2 ranks, --comm-overlap 0 / 1 alternated
  local k ov d l train_s n=$steps
  echo "comm_overlap,ranks,threads_per_rank,batch,steps,ms_per_update,comm_s_rank0,comm_s_rank1,comm_share,load_before" >"$ovcsv"
  for k in $(seq 1 "${DIST_BENCH_OV_PAIRS:-3}"); do
    for ov in 0 1; do
      d=$work/ov$ov-$k
      l=$(load)
      OMP_NUM_THREADS=1 "${MPI[@]}" -np 2 "$build/natgrad" net train --device cpu --data mnist --preset mnist-autoencoder \
        --optimizer nag --batch "$batch" --steps "$n" --log-every "$n" --eval-n 1000 --threads 1 --comm-overlap "$ov" \
        --out "$d" >"$d.log" 2>&1
      train_s=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "train_s") c = i } NR > 1 { v = $c } END { print v }' "$d/train.csv")
      echo "$ov,2,1,$batch,$n,$(awk -v t="$train_s" -v n="$n" 'BEGIN { printf "%.1f", 1000 * t / n }'),$(comm_share "$d.log" "$train_s"),$l" |
        tee -a "$ovcsv"
    done
  done
}
overlap_md() { # the section of dist_bench.md from dist_overlap.csv
  echo
  echo "## Gradient all-reduce overlapped with the backward pass (\`--comm-overlap\`), NAG, 2 ranks"
  echo
  echo "Same network, batch and updates as the NAG rows above; 2 ranks with 1 thread each; \`--comm-overlap 0\` (one"
  echo "all-reduce after the backward pass) and \`1\` (buckets of at least 1 MiB started as the backward pass reaches"
  echo "them: layers 8, 7, 6-3, 2 and 1 of the autoencoder's 8, the last when the backward pass ends) alternated."
  echo
  echo "| --comm-overlap | run | ms per update | s in collectives (rank 0 / 1) | communication share (rank 0) | load before |"
  echo "|---|---|---|---|---|---|"
  awk -F, 'NR > 1 { k[$1]++; printf "| %s | %d | %s | %s / %s | %.0f%% | %s |\n", $1, k[$1], $6, $7, $8, 100 * $9, $10 }' "$ovcsv"
  awk -F, 'NR > 1 { ms[$1] += $6; c[$1] += $7; n[$1]++ } END { if (n[0] && n[1]) printf "\nMeans: %.1f ms per update and %.3f s in collectives (rank 0) with overlap off, %.1f ms and %.3f s with it on.\n", ms[0] / n[0], c[0] / n[0], ms[1] / n[1], c[1] / n[1] }' "$ovcsv"
  echo
  echo "Machine: $(nproc) cores ($(uname -m)), shared with other engineers' jobs; the load average before each run is in"
  echo "the table, and the spread between runs of one setting shows how much it disturbs them: compare the means"
  echo "only against that spread."
  echo
  echo "Seconds in collectives count the time a rank is blocked in any collective of the run (the gradient, the log"
  echo "columns, the stop flags, checkpoint agreement; the wait for the buckets included, the backward pass that runs"
  echo "while they travel not), so with overlap the gradient's part is the exposed communication. What"
  echo "overlap can hide is bounded here: the two ranks share 2 cores with other engineers' jobs, so the backward"
  echo "pass and the other rank's work compete for the same cores; Open MPI moves a non-blocking all-reduce only"
  echo "inside MPI calls, which the trainer makes once per layer (\`ng_comm_progress\`), not while a gemm runs; and"
  echo "on one machine the all-reduce is a memory copy. The bit-for-bit equality of the two settings is tested in"
  echo "tests/test_dist.sh, not here."
}
kacsv=$out/dist_kfac_async.csv
kfac_async_rows() { # K-FAC --kfac-async on 2 ranks: owned refreshes / redundant (NG_KFAC_REDUNDANT=1), alternated
  local k mode d l n=${DIST_BENCH_KA_STEPS:-20}
  echo "refresh,ranks,threads_per_rank,batch,steps,ms_per_update_4_on,cpu_ms_per_update_4_on,inverse_s_4_on,load_before" >"$kacsv"
  for k in $(seq 1 "${DIST_BENCH_KA_PAIRS:-3}"); do
    for mode in owned redundant; do
      d=$work/ka-$mode-$k
      l=$(load)
      NG_KFAC_REDUNDANT=$([ $mode = redundant ] && echo 1 || echo 0) OMP_NUM_THREADS=1 "${MPI[@]}" -np 2 "$build/natgrad" net train \
        --device cpu --data mnist --preset mnist-autoencoder --optimizer kfac --kfac-async 2 --T3 5 --batch "$batch" --steps "$n" \
        --log-every 1 --eval-n 1000 --threads 1 --out "$d" >"$d.log" 2>&1
      # train_s and train_cpu_s (rank 0's process, its worker thread included) are cumulative: row r + 1
      # is update r (row 1 the header), so updates 4 .. n are the rows after row 4; inverse_s is per update
      echo "$mode,2,1,$batch,$n,$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "train_s") c = i; if ($i == "train_cpu_s") u = i; if ($i == "inverse_s") v = i } }
        NR == 4 { t3 = $c; u3 = $u } NR > 4 { t = $c; cu = $u; inv += $v; m++ } END { printf "%.1f,%.1f,%.2f", 1000 * (t - t3) / m, 1000 * (cu - u3) / m, inv }' "$d/train.csv"),$l" |
        tee -a "$kacsv"
    done
  done
}
kfac_async_md() { # the section of dist_bench.md from dist_kfac_async.csv
  echo
  echo "## K-FAC with asynchronous refreshes (\`--kfac-async 2 --T3 5\`), 2 ranks: owned against redundant"
  echo
  echo "Same network and global batch as the K-FAC rows above; 2 ranks with 1 thread each, each running a worker"
  echo "thread for the refreshes besides the main thread; ${DIST_BENCH_KA_STEPS:-20} updates, refreshes launched every 5"
  echo "updates and used 2 updates later. *owned*: each rank's worker inverts the layers it owns and the main thread"
  echo "broadcasts them when it uses them; *redundant* (\`NG_KFAC_REDUNDANT=1\`): every rank's worker inverts every layer."
  echo "Over updates 4 .. N (updates 1-3 refresh synchronously), rank 0: wall time per update; CPU time per update of"
  echo "the process (main and worker thread: the worker's share of the refreshes shows here, and load inflates it"
  echo "less); inverse_s: the main thread's seconds in refreshes (launch, waiting for the worker, agreeing and"
  echo "broadcasting), summed."
  echo
  echo "| refresh | run | ms per update | CPU ms per update | inverse_s (main thread) | load before |"
  echo "|---|---|---|---|---|---|"
  awk -F, 'NR > 1 { k[$1]++; printf "| %s | %d | %s | %s | %s | %s |\n", $1, k[$1], $6, $7, $8, $9 }' "$kacsv"
  awk -F, 'NR > 1 { ms[$1] += $6; cp[$1] += $7; iv[$1] += $8; n[$1]++ } END { if (n["owned"] && n["redundant"]) printf "\nMeans: owned %.1f ms per update, %.1f CPU ms, %.2f s inverse_s; redundant %.1f ms, %.1f CPU ms, %.2f s.\n", ms["owned"] / n["owned"], cp["owned"] / n["owned"], iv["owned"] / n["owned"], ms["redundant"] / n["redundant"], cp["redundant"] / n["redundant"], iv["redundant"] / n["redundant"] }' "$kacsv"
  echo
  echo "Machine: $(nproc) cores ($(uname -m)), shared with other engineers' jobs (load before each run in the table):"
  echo "two ranks with two threads each already oversubscribe the 2 cores, so the worker competes with the updates"
  echo "for the same cores and compare the means only against the spread between runs. The bit-for-bit equality of"
  echo "the two settings is tested in tests/test_dist.sh, not here."
}
comm_share() { # comm_share LOG TRAIN_S: prints c0,c1,share (rank 0's seconds in collectives over TRAIN_S)
  local c0 c1
  c0=$(sed -n 's/.*rank 0: [0-9]* collectives, \([0-9.]*\) s in.*/\1/p' "$1")
  c1=$(sed -n 's/.*rank 1: [0-9]* collectives, \([0-9.]*\) s in.*/\1/p' "$1")
  echo "${c0:-0},${c1:-0},$(awk -v c="${c0:-0}" -v t="$2" 'BEGIN { printf "%.3f", c / t }')"
}
if [ "$only" = overlap ]; then
  [ -f "$md" ] || { echo "bench-dist: DIST_BENCH_ONLY=overlap needs the files of a full run"; exit 1; }
  overlap_rows
  sed -i '/^## Gradient all-reduce overlapped/,$d' "$md"
  sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$md"
  overlap_md >>"$md"
  [ -f "$kacsv" ] && kfac_async_md >>"$md"
  echo "bench-dist: wrote $ovcsv and the overlap section of $md"
  exit 0
fi
if [ "$only" = kfac-async ]; then
  [ -f "$md" ] || { echo "bench-dist: DIST_BENCH_ONLY=kfac-async needs the files of a full run"; exit 1; }
  kfac_async_rows
  sed -i '/^## K-FAC with asynchronous refreshes/,$d' "$md" # the last section
  sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$md"
  kfac_async_md >>"$md"
  echo "bench-dist: wrote $kacsv and the K-FAC asynchronous section of $md"
  exit 0
fi
if [ "$only" = rbm ]; then
  [ -f "$csv" ] && [ -f "$out/dist_allreduce.csv" ] || { echo "bench-dist: DIST_BENCH_ONLY=rbm needs the files of a full run"; exit 1; }
  comm_rows=$(tail -n +2 "$out/dist_allreduce.csv")
  grep -v '^rbm_' "$csv" >"$work/kept.csv"
  cp "$work/kept.csv" "$csv"
else
echo "bench-dist: all-reduce times (2 ranks)"
comm_rows=$(OMP_NUM_THREADS=1 "${MPI[@]}" -np 2 "$build/bench/bench_comm")
echo "$comm_rows"

echo "kind,ranks,threads_per_rank,batch,steps,ms_per_update,comm_s_rank0,comm_s_rank1,comm_share,load_before" >"$csv"
kfac_steps=${DIST_BENCH_KFAC_STEPS:-10}
for setting in "nag 1 1" "nag 1 2" "nag 2 1" "kfac 1 1" "kfac 2 1"; do
  set -- $setting
  opt=$1 np=$2 th=$3
  A=(net train --device cpu --data mnist --preset mnist-autoencoder --optimizer "$opt" --batch "$batch" --steps "$steps" --log-every "$steps" --eval-n 1000)
  [ "$opt" = kfac ] && A=(net train --device cpu --data mnist --preset mnist-autoencoder --optimizer kfac --batch "$batch" --steps "$kfac_steps" --log-every "$kfac_steps" --eval-n 1000)
  n=$([ "$opt" = kfac ] && echo "$kfac_steps" || echo "$steps")
  l=$(load)
  if [ "$np" = 1 ]; then
    OMP_NUM_THREADS=$th "$build/natgrad" "${A[@]}" --threads "$th" --out "$work/$opt$np-$th" >"$work/$opt$np-$th.log" 2>&1
  else
    OMP_NUM_THREADS=$th "${MPI[@]}" -np "$np" "$build/natgrad" "${A[@]}" --threads "$th" --out "$work/$opt$np-$th" >"$work/$opt$np-$th.log" 2>&1
  fi
  train_s=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "train_s") c = i } NR > 1 { v = $c } END { print v }' "$work/$opt$np-$th/train.csv")
  ms=$(awk -v t="$train_s" -v n="$n" 'BEGIN { printf "%.1f", 1000 * t / n }')
  c0=$(sed -n 's/.*rank 0: [0-9]* collectives, \([0-9.]*\) s in.*/\1/p' "$work/$opt$np-$th.log")
  c1=$(sed -n 's/.*rank 1: [0-9]* collectives, \([0-9.]*\) s in.*/\1/p' "$work/$opt$np-$th.log")
  share=$(awk -v c="${c0:-0}" -v t="$train_s" 'BEGIN { printf "%.3f", c / t }')
  echo "net_$opt,$np,$th,$batch,$n,$ms,${c0:-0},${c1:-0},$share,$l" | tee -a "$csv"
done
fi
rbatch=${DIST_BENCH_RBM_BATCH:-2000}
rsteps=${DIST_BENCH_RBM_STEPS:-20}
for setting in "centering 1 1" "centering 1 2" "centering 2 1" "fang 1 1" "fang 1 2" "fang 2 1"; do
  set -- $setting
  opt=$1 np=$2 th=$3 d=$work/rbm_$1$2-$3
  A=(rbm train --device cpu --data mnist --hidden 500 --batch "$rbatch" --particles "$rbatch" --optimizer "$opt" --steps "$rsteps"
     --log-every "$rsteps" --monitor-n 0 --threads "$th")
  l=$(load)
  if [ "$np" = 1 ]; then OMP_NUM_THREADS=$th "$build/natgrad" "${A[@]}" --out "$d" >"$d.log" 2>&1
  else OMP_NUM_THREADS=$th "${MPI[@]}" -np "$np" "$build/natgrad" "${A[@]}" --out "$d" >"$d.log" 2>&1; fi
  time_s=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "time_s") c = i } NR > 1 { v = $c } END { print v }' "$d/train.csv")
  ms=$(awk -v t="$time_s" -v n="$rsteps" 'BEGIN { printf "%.1f", 1000 * t / n }')
  echo "rbm_$opt,$np,$th,$rbatch,$rsteps,$ms,$(comm_share "$d.log" "$time_s"),$l" | tee -a "$csv"
done
{ echo "ranks,floats,bytes,reps,ms_median,ms_min,algbw_GBps,busbw_GBps"; echo "$comm_rows"; } >"$out/dist_allreduce.csv"
[ "$only" = rbm ] && [ -f "$ovcsv" ] || overlap_rows
[ "$only" = rbm ] && [ -f "$kacsv" ] || kfac_async_rows
python3 bench/dist_cost_model.py "$csv" "$out/dist_allreduce.csv" >"$md"
overlap_md >>"$md"
kfac_async_md >>"$md"
echo "bench-dist: wrote $csv, $out/dist_allreduce.csv and $md"
