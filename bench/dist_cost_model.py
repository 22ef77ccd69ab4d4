#!/usr/bin/env python3
"""dist_cost_model.py RUNS.csv ALLREDUCE.csv: bench/results/dist_bench.md from the measurements of
bench/dist_bench.sh, and the cost model of data-parallel NAG and K-FAC steps (standard library).

Model (no overlap of communication with the backward pass, which is what natgrad does today):
  T_N = T_1 / N + T_ar(4 P) [+ K-FAC terms]
  T_ar(B) = 2 (N - 1) / N * B / busbw + 2 (N - 1) * alpha        (ring all-reduce; NCCL's busbw)
T_1: one device's time per update at the global batch m (compute assumed to split evenly: the
optimistic end, since a device is less efficient on m / N cases); P: parameters; alpha: per-hop
latency (from the smallest all-reduce measured). K-FAC adds per update the all-reduce of the
factor statistics (sum over layers of (d_in + 1)^2 + d_out^2 floats) and, every T3 updates, the
inversions spread over the ranks (balanced by cost d^3, longest first) and their broadcast.
GPU inputs come from the environment (T1_MS, BUSBW_GBPS, ALPHA_US, T3, INV_MS_PER_GFLOP); without them
the 8-GPU rows are formulas, never invented figures."""
import csv
import os
import sys

DIMS = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]  # the MNIST autoencoder


def main(argv):
    runs = list(csv.DictReader(open(argv[1])))
    ar = list(csv.DictReader(open(argv[2])))
    P = sum(DIMS[l] * (DIMS[l - 1] + 1) for l in range(1, len(DIMS)))
    factors = []
    for l in range(1, len(DIMS)):
        factors.append(("A%d" % (l - 1), DIMS[l - 1] + 1))
        factors.append(("G%d" % l, DIMS[l]))
    F = sum(d * d for _, d in factors)
    out = []
    w = out.append
    w("# Data parallelism: cost on the CPU backend, and a model for 8 GPUs")
    w("")
    w("Produced by `make bench-dist` (bench/dist_bench.sh, bench/dist_cost_model.py) on this 2-core machine, shared")
    w("with other engineers' jobs: every time below is disturbed by them (the load average before each run is")
    w("listed; a load above 2 means other processes wanted the cores too). No paper figure exists for this")
    w("benchmark; the issue asks for measured 1- and 2-rank costs and a documented model.")
    w("")
    w("## All-reduce of float32 buffers, 2 ranks, CPU backend over Open MPI (shared memory)")
    w("")
    w("| floats | bytes | median ms | min ms | algbw GB/s | busbw GB/s |")
    w("|---|---|---|---|---|---|")
    for r in ar:
        w("| %s | %s | %s | %s | %s | %s |" % (r["floats"], r["bytes"], r["ms_median"], r["ms_min"], r["algbw_GBps"], r["busbw_GBps"]))
    w("")
    w("## `natgrad net train` (NAG and K-FAC, MNIST autoencoder, %d parameters), CPU backend" % P)
    w("")
    w("| method | ranks | threads per rank | global batch | updates | ms per update | s in collectives (rank 0 / 1) | communication share (rank 0) | load before |")
    w("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if not r["kind"].startswith("net_"):
            continue
        w("| %s | %s | %s | %s | %s | %s | %s / %s | %.0f%% | %s |" % (r["kind"].replace("net_", ""), r["ranks"], r["threads_per_rank"], r["batch"], r["steps"], r["ms_per_update"],
                                                           r["comm_s_rank0"], r["comm_s_rank1"], 100 * float(r["comm_share"]), r["load_before"]))
    w("")
    w("Time per update is the log's `train_s` (monitors excluded) over the updates. Time in collectives counts every")
    w("collective of the rank (the gradient all-reduce, the log columns, the stop flags, checkpoint agreement) and")
    w("includes waiting for the slower rank, so on 2 shared cores it mostly measures imbalance; the all-reduce table")
    w("above (a barrier before each call) is the transfer itself. Two ranks cannot beat one rank with two threads on")
    w("2 cores: the same flops run either way, plus the all-reduce. K-FAC's updates include the inverse refreshes of")
    w("updates 1-3 (of its 10), its collectives the factor all-reduce, the quadratic model's gram and the inverse")
    w("broadcasts; with the paper's tau1 = 1/8 the statistics prefix (62 of 500 cases) lies in rank 0's shard, so")
    w("rank 0 computes all the factor statistics and rank 1 waits (the imbalance shows in its time in collectives).")
    w("")
    rbm = [r for r in runs if r["kind"].startswith("rbm_")]
    if rbm:
        w("## `natgrad rbm train` (MNIST, 784 x 500 RBM, PCD-1, particles = batch), CPU backend")
        w("")
        w("| optimizer | ranks | threads per rank | global batch (= particles) | updates | ms per update | s in collectives (rank 0 / 1) | communication share (rank 0) | load before |")
        w("|---|---|---|---|---|---|---|---|---|")
        for r in rbm:
            w("| %s | %s | %s | %s | %s | %s | %s / %s | %.0f%% | %s |" % (r["kind"].replace("rbm_", ""), r["ranks"], r["threads_per_rank"], r["batch"], r["steps"], r["ms_per_update"],
                                                               r["comm_s_rank0"], r["comm_s_rank1"], 100 * float(r["comm_share"]), r["load_before"]))
        w("")
        w("Time per update is the log's `time_s` at the last update over the updates, with the free-energy monitor off")
        w("(one reconstruction-error log at the end is included). Each update all-reduces gW (392,000 floats) and the")
        w("four means (2568); FANG adds its batch moments: E[u u^T] (1284 x 1284 = 1,648,656 floats) and the means, so")
        w("its collectives move about 5x the gradient's bytes. Time in collectives also counts the checkpoint at the end")
        w("(the particles gathered: 1,568,000 floats) and waiting for the other rank; with these 20 updates FANG refits")
        w("once (update 0), so its time is the statistics and the direction, not the refit. The collectives send the")
        w("whole n x n moment matrix although its lower triangle would do (half the bytes). At a load average above 2 the")
        w("cores are shared with other jobs: rows measured minutes apart can differ by 2x or more, and 2 OpenMP threads")
        w("(`threads per rank` 2) suffer most from the oversubscription; compare rows only at a low load.")
        w("")
    # the model checked on this machine
    one1 = [r for r in runs if r["kind"] == "net_nag" and r["ranks"] == "1" and r["threads_per_rank"] == "1"]
    two = [r for r in runs if r["kind"] == "net_nag" and r["ranks"] == "2"]
    big = max(ar, key=lambda r: int(r["floats"])) if ar else None
    small = min(ar, key=lambda r: int(r["floats"])) if ar else None
    w("## Cost model")
    w("")
    w("    T_N = T_1 / N + T_ar(4 P)                        (NAG, SGD, Adam: one all-reduce of the gradient arena)")
    w("    T_ar(B) = 2 (N - 1) / N * B / busbw + 2 (N - 1) * alpha")
    w("    K-FAC adds  T_ar(4 F)  every update (factor statistics) and, every T3 updates,")
    w("    max over ranks of its inversions' time + the broadcast of 4 F bytes of inverses (B / busbw each);")
    w("    natgrad assigns each layer's pair (A_{l-1}, G_l) to one rank, cost (d_{l-1} + 1)^3 + d_l^3, largest first")
    w("")
    w("For the MNIST autoencoder: P = %d parameters (4 P = %.2f MB); the %d Kronecker factors hold F = %d floats" % (P, 4 * P / 1e6, len(factors), F))
    w("(4 F = %.2f MB, full matrices; the upper triangles would halve it)." % (4 * F / 1e6))
    pairs = [(DIMS[l - 1] + 1) ** 3 + DIMS[l] ** 3 for l in range(1, len(DIMS))]
    for N in (2, 8):
        loads = [0.0] * N
        for c in sorted(pairs, reverse=True):
            i = loads.index(min(loads))
            loads[i] += c
        w("Inversions per layer (cost (d_{l-1} + 1)^3 + d_l^3) over %d ranks, largest first to the least-loaded rank: the busiest "
          "rank holds %.1f%% of the total (ideal %.1f%%)." % (N, 100 * max(loads) / sum(pairs), 100.0 / N))
    w("")
    if one1 and two and big and small:
        t1 = float(one1[0]["ms_per_update"])
        bus = float(big["busbw_GBps"])
        alpha_ms = float(small["ms_median"]) / 2.0
        pred = t1 / 2 + 2 * 1 / 2 * 4 * P / (bus * 1e9) * 1e3 + 2 * alpha_ms
        w("Checked on this machine (N = 2, T_1 = %.1f ms with 1 thread, busbw %.3f GB/s and alpha %.4f ms from the table" % (t1, bus, alpha_ms))
        w("above): the model predicts %.1f ms per update; measured %s ms: the model assumes the cores are free, and here the load average was above 2 (other jobs)." % (pred, two[0]["ms_per_update"]))
        w("")
    t1 = os.environ.get("T1_MS")
    bw = os.environ.get("BUSBW_GBPS")
    w("### 8 GPUs")
    w("")
    if t1 and bw:
        t1, bw = float(t1), float(bw)
        alpha = float(os.environ.get("ALPHA_US", "10")) / 1e3
        t3 = float(os.environ.get("T3", "20"))
        N = 8
        ar_g = 2 * (N - 1) / N * 4 * P / (bw * 1e9) * 1e3 + 2 * (N - 1) * alpha
        ar_f = 2 * (N - 1) / N * 4 * F / (bw * 1e9) * 1e3 + 2 * (N - 1) * alpha
        w("Inputs (measured on the GPU machine, from the environment): T_1 = %g ms, busbw = %g GB/s, alpha = %g ms." % (t1, bw, alpha))
        w("")
        w("| method | compute / GPU (ms) | all-reduce (ms) | per update (ms) | speed-up over 1 GPU |")
        w("|---|---|---|---|---|")
        w("| NAG | %.2f | %.2f | %.2f | %.2f |" % (t1 / N, ar_g, t1 / N + ar_g, t1 / (t1 / N + ar_g)))
        bc = 4 * F / (bw * 1e9) * 1e3 / t3
        w("| K-FAC communication on top of its compute / 8 | - | %.2f + %.2f (bcast / T3) | - | - |" % (ar_g + ar_f, bc))
    else:
        w("No GPU measurements were given (T1_MS, BUSBW_GBPS): nothing is evaluated for 8 GPUs here. On a multi-GPU")
        w("machine, `bench/nccl_smoke.sh` (called by bench/gpu_check.sh) measures the 1- and N-GPU time per update;")
        w("NCCL's bus bandwidth comes from the same machine's all-reduce; then")
        w("`T1_MS=... BUSBW_GBPS=... python3 bench/dist_cost_model.py bench/results/dist_bench.csv bench/results/dist_allreduce.csv`")
        w("fills this section. With 4 P = %.2f MB, the gradient all-reduce on 8 GPUs moves 2 * 7/8 * 4 P = %.2f MB per GPU" % (4 * P / 1e6, 2 * 7 / 8 * 4 * P / 1e6))
        w("per update, and K-FAC's factor all-reduce another %.2f MB." % (2 * 7 / 8 * 4 * F / 1e6))
    w("")
    w("The model has no overlap term: with `--comm-overlap 1` (the default) the gradient's buckets start during the")
    w("backward pass, so T_ar(4 P) bounds the exposed all-reduce time from above (the first layer's bucket, started")
    w("last, is never hidden; the section on overlap below measures it on 2 ranks). The tridiagonal K-FAC inverses")
    w("are computed by every rank.")
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
