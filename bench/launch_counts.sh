#!/usr/bin/env bash
# launch_counts.sh [BUILD]: device calls per update of the curves autoencoder (L = 12) under NAG,
# eager and with --cuda-graph 1, as natgrad's profile counts them on the CUDA backend (make
# bench-launch-counts). It runs the emulated CUDA build of tests/test_graph (test_counts_curves),
# which asserts the counts against the formula derived from net.c (2L + 4 kernels, 3L + 1 cuBLAS
# calls, 2 copies; graph: 1 graph launch, 2 copies) and writes them to CSV. The counts are exact
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
out=$(NG_LAUNCH_COUNTS_CSV="$csv" "$bin" 2>/dev/null | grep -E "test_counts_curves|RESULT" || true)
if ! grep -q "PASS test_counts_curves" <<<"$out" || [ ! -s "$csv" ]; then
  echo "launch_counts: test_counts_curves did not pass:" >&2
  echo "$out" >&2
  exit 1
fi
python3 - "$csv" "$md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
e = next(r for r in rows if r["mode"] == "eager")
g = next(r for r in rows if r["mode"] == "cuda-graph")
n_e, n_g = float(e["host_api_calls"]), float(g["host_api_calls"])
with open(sys.argv[2], "w") as f:
    f.write("# Launch counts per update: the curves autoencoder under NAG (`make bench-launch-counts`)\n\n")
    f.write("Counted by natgrad's profile (`--profile`: device calls per range, `include/natgrad/profile.h`) on the CUDA\n"
            "backend running under the SIMT emulator (tests/simt): the counts are exact, the emulator receives the calls\n"
            "a GPU would. **No GPU timing exists here** (no GPU on this machine): the overhead column is arithmetic, 3-5 us\n"
            "per launch as the issue assumes, not a measurement.\n\n")
    f.write("Network: 784-400-200-100-50-25-6-25-50-100-200-400-784 (L = 12, logistic, Bernoulli loss), one chunk;\n"
            "no op of the update is issued per case, so the counts do not depend on the batch size while it fits one\n"
            "chunk (<= 1000); measured at m = 8 only, not at the paper's m = 250. NAG without averaging or weight decay, identity preconditioner, update 4 (steady state).\n\n")
    f.write("| mode | kernel launches | cuBLAS calls | cuSOLVER | copies | graph launches | host API calls / update | launch overhead at 3-5 us each |\n")
    f.write("|---|---|---|---|---|---|---|---|\n")
    for r in (e, g):
        n = float(r["host_api_calls"])
        f.write(f"| {r['mode']} | {r['kernels']} | {r['cublas']} | {r['cusolver']} | {r['copies']} | {r['graph_launches']} | {r['host_api_calls']} | {3*n/1000:.3f}-{5*n/1000:.3f} ms (arithmetic) |\n")
    f.write(f"\nEager: 2L + 4 = 28 kernels (forward: the input copy and one activation per layer; one loss kernel; one\n"
            "activation derivative per hidden layer; three axpby of NAG) and 3L + 1 = 37 cuBLAS calls (one gemm per\n"
            "layer forward, two gemv summing objective and error, one weight-and-bias gemm per layer and one delta gemm per\n"
            "hidden layer backward), plus the batch upload and the objective read. The issue estimated \"roughly a hundred\n"
            f"kernel launches\"; natgrad makes {int(n_e)} host calls, each cuBLAS gemm possibly more than one kernel on a GPU\n"
            "(nsys `cuda_api_sum` / `cuda_gpu_kern_sum` would show it; not measurable here).\n\n"
            f"With `--cuda-graph 1` the host makes {int(n_g)} calls per update: one graph launch, the batch upload and the\n"
            "objective read (the graph's nodes are the other 65 operations, 28 kernels and 37 cuBLAS calls - the emulator's\n"
            "node count, asserted by the test - launched by the driver as one unit). What\n"
            "the graph saves in time on a GPU is not measured; run `make bench-launch-counts` and `bash bench/gpu_check.sh`\n"
            "on a GPU machine, and nsys with `--profile-steps`, to measure it.\n\n"
            "Not done yet: fusing bias + activation and activation backward + bias gradient (the bias is already folded\n"
            "into the gemm as a column of W, so the fusion left is activation backward into the delta gemm's epilogue),\n"
            "which would lower the eager count further.\n")
PY
echo "launch_counts: wrote $md and $csv"
cat "$md"
