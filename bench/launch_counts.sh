#!/usr/bin/env bash
# launch_counts.sh [BUILD]: device calls per update of the curves autoencoder (L = 12) under NAG,
# of an RBM's PCD-1 update (SGD, and with centering, FANG and diag), of a small network with
# --precond diag and of a small augmented conv net's SGD update, eager and with
# --cuda-graph 1, as natgrad's profile counts them on
# the CUDA backend (make bench-launch-counts). It runs the emulated CUDA build of tests/test_graph
# (test_counts_curves, test_counts_rbm, test_counts_rbm_precond, test_counts_net_diag,
# test_counts_cnn), which asserts the counts against the formulas derived from
# net.c (2L + 2 kernels, 3L - 1 cuBLAS calls, 2 copies; graph: 1 graph launch, 2 copies), rbm.c
# (PCD-k: 2k + 6 kernels, 2k + 8 cuBLAS calls, 4 copies; graph: 1 graph launch, 1 copy) and cnn.c
# (c3k3-relu-mp2-d3, m images in one chunk: 12 kernels, m + 9 cuBLAS calls, 3 copies; graph: 1 graph
# launch, 2 copies) and writes them to CSV, and (test_counts_segments, test_counts_cnn_segments) NGD,
# HF and K-FAC updates of the curves autoencoder and an NGD update of a batch-normalised conv net eager
# and as graph segments. The counts are exact
# (the emulator gets the same calls a GPU would); no GPU timing is measured here.
# Writes bench/results/launch_counts.{csv,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/simt/tests/test_graph
res=bench/results
csv=$res/launch_counts.csv
md=$res/launch_counts.md
if [ ! -x "$bin" ]; then
  echo "launch_counts: $bin not built (the emulator needs the CUDA headers, a C++ compiler, OpenBLAS and LAPACKE)" >&2
  exit 3
fi
mkdir -p "$res"
out=$(NG_LAUNCH_COUNTS_CSV="$csv" "$bin" 2>/dev/null | grep -E "test_counts_curves|test_counts_rbm|test_counts_net_diag|test_counts_cnn|test_counts_segments|test_counts_cnn_segments|RESULT" || true)
if ! grep -q "PASS test_counts_curves" <<<"$out" || ! grep -q "PASS test_counts_rbm$" <<<"$out" ||
   ! grep -q "PASS test_counts_rbm_precond" <<<"$out" || ! grep -q "PASS test_counts_net_diag" <<<"$out" ||
   ! grep -q "PASS test_counts_cnn$" <<<"$out" || ! grep -q "PASS test_counts_segments" <<<"$out" ||
   ! grep -q "PASS test_counts_cnn_segments" <<<"$out" || [ ! -s "$csv" ]; then
  echo "launch_counts: test_counts_curves / test_counts_rbm / test_counts_rbm_precond / test_counts_net_diag / test_counts_cnn / test_counts_segments / test_counts_cnn_segments did not pass:" >&2
  echo "$out" >&2
  exit 1
fi
python3 - "$csv" "$md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
e = next(r for r in rows if r["mode"] == "eager" and r["workload"].startswith("curves"))
g = next(r for r in rows if r["mode"] == "cuda-graph" and r["workload"].startswith("curves"))
re_ = next(r for r in rows if r["mode"] == "eager" and r["workload"].startswith("rbm 6x5 PCD-1 SGD batch"))
rg = next(r for r in rows if r["mode"] == "cuda-graph" and r["workload"].startswith("rbm 6x5 PCD-1 SGD batch"))
pcs = [r for r in rows if r["workload"].startswith("rbm 6x5 PCD-1 SGD + ")]
nds = [r for r in rows if r["workload"].startswith("net ")]
ce = next(r for r in rows if r["mode"] == "eager" and r["workload"].startswith("cnn"))
cg = next(r for r in rows if r["mode"] == "cuda-graph" and r["workload"].startswith("cnn"))
n_e, n_g = float(e["host_api_calls"]), float(g["host_api_calls"])
# The counts before the fusions of issue 13 (NAG as three axpby launches, the loss sums as two
# gemv): measured by this script at commit d903967, the same network and update; kept here as the
# "before" row because the code that made them no longer exists to be measured in the same run.
before = {"mode": "eager, before the fusions (d903967)", "kernels": "28", "cublas": "37", "cusolver": "0",
          "copies": "2", "graph_launches": "0", "host_api_calls": "67"}
COUNTS = ["kernels", "cublas", "cusolver", "copies", "graph_launches", "host_api_calls"]
COUNTS_NO_SOLVER = [c for c in COUNTS if c != "cusolver"]
HEAD = {"workload": "workload", "mode": "mode", "kernels": "kernel launches", "cublas": "cuBLAS calls",
        "cusolver": "cuSOLVER", "copies": "copies", "graph_launches": "graph launches",
        "host_api_calls": "host API calls / update"}


def table(f, rs, cols):
    """a markdown table of the rows rs: the columns cols, then the launch overhead at 3-5 us per host call"""
    f.write("| " + " | ".join(HEAD[c] for c in cols) + " | launch overhead at 3-5 us each |\n")
    f.write("|" + "---|" * (len(cols) + 1) + "\n")
    for r in rs:
        n = float(r["host_api_calls"])
        f.write("| " + " | ".join(r[c] for c in cols) + f" | {3*n/1000:.3f}-{5*n/1000:.3f} ms (arithmetic) |\n")


with open(sys.argv[2], "w") as f:
    f.write("# Launch counts per update: the curves autoencoder under NAG (`make bench-launch-counts`)\n\n")
    f.write("Counted by natgrad's profile (`--profile`: device calls per range, `include/natgrad/profile.h`) on the CUDA\n"
            "backend running under the SIMT emulator (tests/simt): the counts are exact, the emulator receives the calls\n"
            "a GPU would. **No GPU timing exists here** (no GPU on this machine): the overhead column is arithmetic, 3-5 us\n"
            "per launch as the issue assumes, not a measurement.\n\n")
    f.write("Network: 784-400-200-100-50-25-6-25-50-100-200-400-784 (L = 12, logistic, Bernoulli loss), one chunk;\n"
            "no op of the update is issued per case, so the counts do not depend on the batch size while it fits one\n"
            "chunk (<= 1000); measured at m = 8 only, not at the paper's m = 250. NAG without averaging or weight decay, identity preconditioner, update 4 (steady state).\n\n")
    table(f, (before, e, g), ["mode"] + COUNTS)
    f.write(f"\nEager now: 2L + 2 = {e['kernels']} kernels (forward: the input copy and one activation per layer; one loss\n"
            "kernel that also sums the objective and error over the batch; one activation derivative per hidden layer; one\n"
            f"fused NAG step) and 3L - 1 = {e['cublas']} cuBLAS calls (one gemm per layer forward, one weight-and-bias gemm per\n"
            "layer and one delta gemm per hidden layer backward), plus the batch upload and the objective read. Before: the NAG\n"
            "step was three axpby launches and the loss sums two gemv (2L + 4 kernels, 3L + 1 cuBLAS calls): 4 host calls\n"
            f"fewer per update now ({int(float(before['host_api_calls']))} -> {int(n_e)}). The issue estimated \"roughly a hundred kernel launches\";\n"
            "each cuBLAS gemm may be more than one kernel on a GPU (nsys `cuda_api_sum` / `cuda_gpu_kern_sum` would show it;\n"
            "not measurable here).\n\n"
            f"With `--cuda-graph 1` the host makes {int(n_g)} calls per update: one graph launch, the batch upload and the\n"
            f"objective read (the graph's nodes are the other {int(n_e) - 2} operations - the emulator's node count, asserted by\n"
            "the test - launched by the driver as one unit). Adam now replays the same way (its step count lives on the\n"
            "device; before, every Adam update was a new capture). What the graph saves in time on a GPU is not measured;\n"
            "run `make bench-launch-counts` and `bash bench/gpu_check.sh` on a GPU machine, and nsys with `--profile-steps`,\n"
            "to measure it.\n\n"
            "With weight decay (not in the counts above) the penalty is one launch for all decayed tensors\n"
            "(NG_OP_AXPBY_SEGMENTS; one axpby per tensor, 2L for the network's W_l and b_l, before).\n\n"
            "Not fused: the activation derivative into the delta gemm (cuBLAS has no such epilogue; cuBLASLt's are for\n"
            "ReLU/GELU only, and the emulator has no cuBLASLt), and the input copy (the bias row of ones must sit under the\n"
            "batch for the first layer's gemm). Bias + activation and the bias gradient cost no launch: the bias is a column\n"
            "of W, so it rides in the forward gemm and its gradient in the weight gemm. K-FAC's factor blends were already one\n"
            "launch for up to 32 factors (NG_OP_FACTOR_UPDATE).\n")
    f.write("\n## The RBM's PCD update (`rbm train --optimizer sgd --cuda-graph 1`)\n\n"
            "A PCD-k update with SGD (momentum, weight decay on W) makes 2k + 6 kernel launches, 2k + 8 cuBLAS calls and\n"
            "4 copies whatever the RBM's size (asserted for k = 1 and 3 by `test_counts_rbm`, derived from rbm.c: the Gibbs\n"
            "kernels, the phases' gemms, the statistics' gemms and gemv, the chain's end copied into the particles (the chain and the positive phase read the particles and the batch in place), the weight\n"
            "decay and the fused SGD step). As a graph the Gibbs kernels read their Philox step from a device count, so one\n"
            "capture per batch shape replays every update with new draws.\n\n")
    table(f, (re_, rg), ["workload", "mode"] + COUNTS_NO_SOLVER)
    f.write("\n## The RBM's update with a preconditioner (`rbm train --optimizer centering|fang|diag --cuda-graph 1`)\n\n"
            "The same PCD-1 SGD update with each captured preconditioner (`test_counts_rbm_precond`, which asserts the eager\n"
            "counts derived from precond.c, fang.c and diag.c and the graph counts): centering's offsets are device moving\n"
            "averages, FANG's hidden samples draw at a Philox step counted on the device, and diag keeps its bias correction's\n"
            "weight on the device, so one capture per batch shape replays every update. FANG refits every 5 updates here\n"
            "(`--fang-refit-every`, 100 by default): a refit reads the host (the Cholesky factor's diagonal, the conditional\n"
            "variances, its diagnostics) and runs eagerly with `--cuda-graph 1` too, the same calls as without it (last rows;\n"
            "cuSOLVER's potrf and potri). sum_cols / sum_rows are cuBLAS gemv against a vector of ones; copies include the\n"
            "device-to-device ones (FANG's [ga; gb] gather and scatter).\n\n")
    table(f, pcs, ["workload", "mode"] + COUNTS)
    f.write("\n## The network with the diagonal metric (`net train --precond diag --cuda-graph 1`)\n\n"
            "A 6-5-4-6 autoencoder (L = 3, batch 4; `test_counts_net_diag` asserts the eager counts derived from net.c,\n"
            "tnewton.c and diag.c, and the graph counts): the diagonal costs 2L + 4 kernels and L gemms (per layer two\n"
            "elementwise squares and a gemm, then HF's (diag + lambda)^-power, 4 kernels whose result diag.c does not use:\n"
            "a possible saving of 4 launches eager, none as a graph), plus 7 kernels for the average, its weight and the\n"
            "direction; the Fisher metric adds the backward pass with sampled targets (the targets drawn at a Philox step\n"
            "counted on the device). As a graph: one launch, the batch upload and the objective read.\n\n")
    table(f, nds, ["workload", "mode"] + COUNTS)
    f.write("\n## A conv net's SGD update (`cnn train --cuda-graph 1`)\n\n"
            "c3k3-relu-mp2-d3 on 1 x 6 x 6 images with random crops (pad 1) and mirrors, SGD with momentum and weight\n"
            "decay, a batch of m images in one chunk. Eager: 12 kernel launches (forward: the input copy, the\n"
            "augmentation, im2col, relu, max pooling, softmax; the loss, which also sums the objective and the\n"
            "misclassifications on the device; backward: pooling, relu, im2col; weight decay; the SGD step) and m + 9\n"
            "cuBLAS calls (forward: two strided batched gemm for the conv, two gemm for the dense layer; backward: gemm,\n"
            "gemv and gemm for the dense layer, one gemm per image for the conv's dW and two gemv for its bias), and 3\n"
            "copies (the augmentation's device copy, the batch upload, one read of the two sums after the gradient).\n"
            "Asserted for m = 4 and 8 by `test_counts_cnn`. Before this change the gradient read the batch's outputs,\n"
            "targets and objectives back per chunk (3 more copies per chunk, each a host wait) and could not be captured.\n"
            "As a graph: one graph launch, the batch upload and the sums' read (the finite-objective check after the graph).\n"
            "The per-image dW gemm is the term that grows with the chunk (64 cuBLAS calls per conv layer at --chunk 64):\n"
            "one strided batched gemm into per-image slices and a sum would remove it (not done).\n\n")
    table(f, (ce, cg), ["workload", "mode"] + COUNTS_NO_SOLVER)
    seg = [r for r in rows if "NGD" in r["workload"] or "HF" in r["workload"] or "K-FAC" in r["workload"]]
    f.write("\n## Truncated Newton and K-FAC as graph segments (`net train --optimizer ngd|hf|kfac --cuda-graph 1`, `cnn train --optimizer ngd --cuda-graph 1`)\n\n"
            "These read the host mid-update (CG's stopping tests and step scalars, the searches, K-FAC's 2x2 model), so\n"
            "the update is not one graph: the gradient, every curvature product (G v here) and the rest of each CG\n"
            "iteration (its vector updates and dots), K-FAC's factor statistics, F^-1 products and quadratic model are\n"
            "graph segments, captured once per key and replayed (`include/natgrad/graph.h`), and so is each objective\n"
            "evaluation of rho (truncated Newton's and K-FAC's), the searches and HF's backtracking (the forward passes\n"
            "and the loss with its sums on the device; the trial point theta + a d is formed eagerly before it, one axpby,\n"
            "since a changes every time);\n"
            "CG's damping launch, HF's diagonal and K-FAC's inverse refreshes stay eager. The\n"
            "curves autoencoder at m = 8,\n"
            "update 3 (the segments of both batch buffers captured at updates 1 and 2; K-FAC: k = 4, no refresh, no lambda\n"
            "adjustment; its statistics are captured anew until their blend weight settles at k = 20, which costs the same\n"
            "device calls: a capture runs nothing and is launched once); NGD:\n"
            "CG with 10 iterations (rtol 0), lr 0.5; HF: CG with at most 10 iterations; K-FAC: the defaults\n"
            "(block-diagonal, momentum). The conv net: c3k3-bn-relu-mp2-d3 on 1 x 6 x 6 images, m = 8 in one chunk,\n"
            "NGD with CG 10 iterations (rtol 0), lr 0.5, update 3 (its gradient, G v through batch norm and the\n"
            "objective evaluation of rho are segments: `ng_cnn_objective_dev`; the copies are the host's reads, which\n"
            "segments do not remove). `test_counts_segments` and `test_counts_cnn_segments` check that the segment run\n"
            "ends with the same parameters bit for bit and issues fewer kernel launches and cuBLAS calls.\n\n")
    table(f, seg, ["workload", "mode"] + COUNTS_NO_SOLVER)
PY
echo "launch_counts: wrote $md and $csv"
cat "$md"
