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
#  5. the cost model of NAG and K-FAC steps on 8 GPUs (bench/dist_cost_model.py), evaluated with
#     T1_MS (measured single-GPU ms per update at the global batch) and BUSBW_GBPS (measured NCCL
#     bus bandwidth) when given in the environment, otherwise left as formulas.
# Writes bench/results/dist_bench.csv, dist_allreduce.csv and dist_bench.md.
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
comm_share() { # comm_share LOG TRAIN_S: prints c0,c1,share (rank 0's seconds in collectives over TRAIN_S)
  local c0 c1
  c0=$(sed -n 's/.*rank 0: [0-9]* collectives, \([0-9.]*\) s in.*/\1/p' "$1")
  c1=$(sed -n 's/.*rank 1: [0-9]* collectives, \([0-9.]*\) s in.*/\1/p' "$1")
  echo "${c0:-0},${c1:-0},$(awk -v c="${c0:-0}" -v t="$2" 'BEGIN { printf "%.3f", c / t }')"
}
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
python3 bench/dist_cost_model.py "$csv" "$out/dist_allreduce.csv" >"$md"
echo "bench-dist: wrote $csv, $out/dist_allreduce.csv and $md"
