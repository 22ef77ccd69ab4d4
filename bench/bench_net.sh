#!/usr/bin/env bash
# bench_net.sh BUILD: ms per training step of the MNIST autoencoder (784-1000-500-250-30-250-500-
# 1000-784) at m = 500 and m = 1000 on the CPU backend, next to the same network in PyTorch
# (Debian's python3-torch, same threads, float32, SGD with Nesterov momentum), both measured in this
# run, with the sgemm GFLOP/s of each process, natgrad's G v / gradient cost ratio and a phase split
# of natgrad's step. CUDA rows (natgrad only) when a GPU answers. Writes bench/results/bench_net.csv
# and bench/results/bench_net.md.
# PyTorch: when `/usr/bin/python3 -c 'import torch'` fails and we are root, python3-torch is
# installed with apt-get (about 1 GB with its dependencies, a few minutes); otherwise the PyTorch
# rows are skipped with a note.
set -euo pipefail
build=${1:-build}
out=bench/results
mkdir -p "$out"
csv=$out/bench_net.csv
md=$out/bench_net.md
py=/usr/bin/python3
iters=${BENCH_NET_ITERS:-20}
warmup=${BENCH_NET_WARMUP:-5}
batches="500 1000"
rm -f "$csv"

torch_note=
if ! "$py" -c 'import torch' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench-net: installing python3-torch for the PyTorch comparison (log: $build-torch.log)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch) >"$build-torch.log" 2>&1 || true
  fi
  if ! "$py" -c 'import torch' >/dev/null 2>&1; then
    torch_note="PyTorch rows skipped: \`$py -c 'import torch'\` fails and python3-torch could not be installed (not root, or apt-get failed: see $build-torch.log)."
    echo "bench-net: $torch_note"
  fi
fi
torch_default=
[ -z "$torch_note" ] && torch_default=$("$py" -c 'import torch; print(torch.get_num_threads())')
cpu_line=$("$build/natgrad" info 2>/dev/null | sed -n 's/^cpu backend: //p' | head -1)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "# MNIST autoencoder training-step speed (make bench-net)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(uname -m), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average at start $load_start."
  echo "natgrad's CPU backend: $cpu_line (OpenBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} in the environment; PyTorch loads the same OpenBLAS, see its rows)."
  echo
  echo "Network 784-1000-500-250-30-250-500-1000-784 (Hinton & Salakhutdinov 2006): logistic hidden units, linear 30-unit code layer,"
  echo "logistic outputs with cross-entropy summed over pixels and averaged over cases; float32; uniform random pixels in [0, 1] (not MNIST:"
  echo "speed does not depend on pixel values, and the benchmark needs no data files)."
  echo
  echo "- **step** = one gradient (forward + backward) and one SGD-momentum update. natgrad: \`ng_model_gradient\` + \`ng_update_step\`"
  echo "  (identity preconditioner, momentum 0.9); a NAG step costs the same (one gradient and a few vector ops)."
  echo "  PyTorch $( [ -z "$torch_note" ] && "$py" -c 'import torch; print(torch.__version__)' ): \`nn.Linear\` + \`nn.Sigmoid\`, \`BCEWithLogitsLoss(reduction='sum') / m\`,"
  echo "  \`torch.optim.SGD(momentum=0.9, nesterov=True)\`; \`zero_grad\` + forward + \`backward\` + \`step\`."
  echo "- $warmup warm-up steps, then $iters steps timed one by one: median (and min) ms per step."
  echo "- **step GFLOP/s** counts 6 m S flops per step, S = sum of d_in d_out over the 8 layers = 2,833,000 (forward 2 m S, backward"
  echo "  4 m S for the weight and input gradients; biases ignored; the input gradient of layer 1, 2 m 784000 flops, is not needed"
  echo "  by either implementation, so the gemm work really done is 0.91 of the count). m = 500: 8.50 GFLOP per step."
  echo "- **sgemm GFLOP/s**: (1000 x 784) times (784 x m), the largest layer's forward product, measured in the same process"
  echo "  (natgrad: \`ng_gemm\`; PyTorch: \`torch.mm\`), median of $iters. step / sgemm = how close the step runs to the machine's gemm speed."
  echo "- threads: both at 1 and 2 threads (natgrad: \`ng_cpu_set_threads\`; PyTorch: \`torch.set_num_threads\`)${torch_default:+; PyTorch's default here is $torch_default thread(s), interop 1}."
  [ -n "$torch_note" ] && { echo; echo "**$torch_note**"; }
  echo
  echo "## Training step"
  echo
  echo "| implementation | backend | threads | m | timed steps | ms/step (median) | ms/step (min) | step GFLOP/s | sgemm shape | sgemm GFLOP/s | step / sgemm |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} > "$md"

# the two implementations alternate, so both see the same machine state
for m in $batches; do
  for th in 2 1; do
    "$build/bench/bench_net" --device cpu --batch "$m" --threads "$th" --iters "$iters" --warmup "$warmup" --csv "$csv" | tee -a "$md"
    if [ -z "$torch_note" ]; then
      "$py" bench/bench_net_torch.py --batch "$m" --threads "$th" --iters "$iters" --warmup "$warmup" --csv "$csv" | tee -a "$md"
    fi
  done
  if [ -n "$torch_default" ] && [ "$torch_default" != 1 ] && [ "$torch_default" != 2 ]; then
    "$py" bench/bench_net_torch.py --batch "$m" --threads 0 --iters "$iters" --warmup "$warmup" --csv "$csv" | tee -a "$md"
  fi
done
if "$build/natgrad" info 2>/dev/null | grep -q '^auto device: cuda'; then
  for m in $batches; do
    "$build/bench/bench_net" --device cuda --batch "$m" --iters "$iters" --warmup "$warmup" --csv "$csv" | tee -a "$md"
  done
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# Summaries from the CSV. The quoted backend may hold commas: columns 3.. are counted from the end
# (19 columns in all: column j >= 3 is $(NF - 19 + j)).
awk -F, -v load_end="$load_end" '
  function c(j) { return $(NF - 19 + j) }
  NR == 1 { next }
  {
    impl = $1; be = $2; for (k = 3; k <= NF - 17; k++) be = be "," $k; gsub(/"/, "", be)
    dev = impl == "pytorch" ? "cpu" : (be ~ /^cpu/ ? "cpu" : "cuda")
    key = dev "," c(3) "," c(4)
    if (impl == "natgrad") {
      nat[key] = c(6); nat_be[key] = be; grad[key] = c(12); gv[key] = c(13); gvr[key] = c(14)
      fgv[key] = c(15); fgvr[key] = c(16); gemm[key] = c(17); rest[key] = c(18); upd[key] = c(19)
      order[++n] = key
    } else tor[key] = c(6)
  }
  END {
    print ""
    print "## natgrad against PyTorch (same threads, same run)"
    print ""
    print "| threads | m | natgrad ms/step | PyTorch ms/step | natgrad / PyTorch | target: natgrad no slower |"
    print "|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) { k = order[i]; split(k, p, ",")
      if (p[1] != "cpu") continue
      if (k in tor) printf "| %s | %s | %.1f | %.1f | %.2f | %s |\n", p[2], p[3], nat[k], tor[k], nat[k] / tor[k], nat[k] <= tor[k] ? "met" : "not met"
      else printf "| %s | %s | %.1f | - | - | no PyTorch row |\n", p[2], p[3], nat[k] }
    print ""
    print "## natgrad: G v product against the gradient"
    print ""
    print "G v = ng_net_gvp on the gradient'"'"'s batch (one chunk, so it reuses the forward pass the gradient left: R-forward + backward);"
    print "forward + G v = ng_net_set_batch + ng_net_gvp on a batch whose forward pass is not cached. Medians of the same number of calls."
    print ""
    print "| backend | threads | m | ms/gradient | ms/G v | G v / gradient | ms/(forward + G v) | (forward + G v) / gradient |"
    print "|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) { k = order[i]; split(k, p, ",")
      printf "| %s | %s | %s | %.1f | %.1f | %.2f | %.1f | %.2f |\n", nat_be[k], p[2] == 0 ? "-" : p[2], p[3], grad[k], gv[k], gvr[k], fgv[k], fgvr[k] }
    print ""
    print "## natgrad: where the step goes"
    print ""
    print "gradient gemms = the gradient'"'"'s 15 gemms (8 forward, 8 weight-gradient, 7 input-gradient; same shapes, transposes and order)"
    print "replayed alone on scratch buffers; rest = ms/gradient - gemms (activations, loss, derivative ops, the per-step objective"
    print "read-back); update = ng_update_step alone (two axpby over the 2.84 M parameters). Gemm GFLOP/s counts the flops really done"
    print "(forward and weight gradient 2 m (S + 4,314 bias terms) each, input gradient 2 m (S - 784,000))."
    print ""
    print "| backend | threads | m | ms/step | ms gradient gemms | gemm GFLOP/s | ms rest of gradient | ms update |"
    print "|---|---|---|---|---|---|---|---|"
    S = 2833000
    for (i = 1; i <= n; i++) { k = order[i]; split(k, p, ",")
      fl = 4 * p[3] * (S + 4314) + 2 * p[3] * (S - 784000)
      printf "| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", nat_be[k], p[2] == 0 ? "-" : p[2], p[3], nat[k], gemm[k], fl / gemm[k] * 1e-6, rest[k], upd[k] }
    print ""
    print "Load average at the end: " load_end "."
  }' "$csv" | tee -a "$md"
echo >> "$md"
echo "wrote $csv and $md"
