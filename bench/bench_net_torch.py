#!/usr/bin/python3
"""bench_net_torch.py: the PyTorch side of make bench-net (see bench/bench_net.c).

The MNIST autoencoder 784-1000-500-250-30-250-500-1000-784 as nn.Linear layers with sigmoid
hidden units and a linear code layer, float32 on the CPU, loss = BCEWithLogitsLoss summed over
pixels and averaged over cases, torch.optim.SGD with momentum 0.9 and nesterov=True. A step is
zero_grad + forward + backward + optimizer.step, timed one by one after warm-up steps (median
reported); the step's 15 gemms are also timed alone (addmm / mm as autograd issues them for
nn.Linear). Flops counted as in bench_net.c: 6 m S, S = sum of d_in * d_out. The sgemm is
torch.mm of (1000 x 784) by (784 x m), the largest layer's forward product, in the same process.
The data are uniform random pixels in [0, 1]. other CPU %: as in bench_net.c. Prints one markdown row, appends one CSV row (the
columns of bench_net.c; natgrad-only columns left empty).
--device cuda[:N] runs the same step on that GPU (bench/gpu_check.sh: the peer beside natgrad's GPU row):
every timed region ends with torch.cuda.synchronize(), as natgrad's bench_net waits for its device.

usage: bench_net_torch.py [--batch M] [--threads N (0: PyTorch's default)] [--iters N]
                          [--warmup N] [--device cpu|cuda[:N]] [--csv PATH] [--profile] [--steps-only N]
"""
import argparse
import ctypes
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn

DIMS = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
CODE_LAYER = 4  # layer 4 (250 -> 30) is linear


def openblas_of_process():
    """(version and kernel, path) of the OpenBLAS this process loaded, or (None, None)."""
    path = None
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "openblas" in os.path.basename(p) and ".so" in p:
                path = p
                break
    if not path:
        return None, None
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_parallel.restype = ctypes.c_int
        core = lib.openblas_get_corename().decode()
        cfg = lib.openblas_get_config().decode()
        ver = cfg.split("OpenBLAS ")[1].split()[0] if "OpenBLAS " in cfg else "?"
        par = {0: "serial", 1: "pthreads", 2: "openmp"}.get(lib.openblas_get_parallel(), "?")
    except (OSError, AttributeError, IndexError):
        return "OpenBLAS", path
    forced = " (OPENBLAS_CORETYPE)" if os.environ.get("OPENBLAS_CORETYPE") else ""
    return "OpenBLAS %s (%s), kernel %s%s" % (ver, par, core, forced), path


def cpu_seconds():
    """(CPU seconds the machine was busy, from /proc/stat; CPU seconds this process used)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz, r.ru_utime + r.ru_stime


def make_net():
    layers = []
    for l in range(1, len(DIMS)):
        layers.append(nn.Linear(DIMS[l - 1], DIMS[l]))
        if l != CODE_LAYER and l != len(DIMS) - 1:
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N (a GPU)")
    ap.add_argument("--csv", default="bench/results/bench_net.csv")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's operator table to stderr")
    ap.add_argument("--steps-only", type=int, default=0,
                    help="only run N training steps after the warm-up and exit (for perf record)")
    a = ap.parse_args()
    if a.batch < 1 or a.iters < 1 or a.warmup < 0 or a.threads < 0 or a.steps_only < 0:
        ap.error("--batch and --iters must be >= 1, --warmup, --threads and --steps-only >= 0")
    if a.device != "cpu" and not (a.device == "cuda" or (a.device.startswith("cuda:") and a.device[5:].isdigit())):
        ap.error("--device %s: use cpu, cuda or cuda:N" % a.device)
    gpu = a.device != "cpu"
    if gpu and not torch.cuda.is_available():
        print("bench_net_torch: --device %s: this PyTorch (%s) sees no CUDA device" % (a.device, torch.__version__), file=sys.stderr)
        sys.exit(3)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    default_threads = torch.get_num_threads()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(1)
    m = a.batch
    blas, blas_path = openblas_of_process()
    if gpu:
        desc = "PyTorch %s, CUDA %s, %s" % (torch.__version__, torch.version.cuda, torch.cuda.get_device_name(dev))
    else:
        desc = "PyTorch %s, %s, %d threads" % (torch.__version__, blas or "BLAS: not OpenBLAS", threads)
    print("backend: %s (default threads %d, interop %d; BLAS library %s)"
          % (desc, default_threads, torch.get_num_interop_threads(), blas_path), file=sys.stderr)

    S = sum(DIMS[l - 1] * DIMS[l] for l in range(1, len(DIMS)))
    x = torch.rand(m, DIMS[0], dtype=torch.float32).to(dev)

    # sgemm: (1000 x 784) (784 x m)
    gm, gk = 1000, 784
    A = (torch.randn(gm, gk) * 0.01).to(dev)
    B = x.t().contiguous()
    for _ in range(3):
        torch.mm(A, B)
    sync()
    t = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        torch.mm(A, B)
        sync()
        t.append(time.perf_counter() - t0)
    ms_sgemm = statistics.median(t) * 1e3
    gflop_sgemm = 2.0 * gm * m * gk / ms_sgemm * 1e-6

    net = make_net().to(dev)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x), x) / m
        loss.backward()
        opt.step()
        return loss

    if a.steps_only > 0:
        for _ in range(a.warmup):
            step()
        sync()
        print("steps-only: start", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        for _ in range(a.steps_only):
            step()
        sync()
        print("steps-only: %.2f ms/step" % ((time.perf_counter() - t0) / a.steps_only * 1e3), file=sys.stderr)
        return

    t = []
    for i in range(a.warmup + a.iters):
        if i == a.warmup:
            sync()
            mach0, self0, tw = cpu_seconds() + (time.perf_counter(),)
        t0 = time.perf_counter()
        step()
        sync()
        if i >= a.warmup:
            t.append(time.perf_counter() - t0)
    mach1, self1 = cpu_seconds()
    tw = time.perf_counter() - tw
    other = max(0.0, 100.0 * ((mach1 - mach0) - (self1 - self0)) / (os.cpu_count() * tw))
    ms_step = statistics.median(t) * 1e3
    ms_min = min(t) * 1e3

    # the step's gemms alone, as autograd issues them for nn.Linear: forward addmm(b, a, W^T),
    # backward grad_W = g^T a and (except layer 1) grad_a = g W
    lin = [mod for mod in net if isinstance(mod, nn.Linear)]
    acts = [x] + [torch.rand(m, d).to(dev) for d in DIMS[1:]]
    gs = [None] + [torch.rand(m, d).to(dev) for d in DIMS[1:]]

    def gemms():
        for l in range(1, len(DIMS)):
            torch.addmm(lin[l - 1].bias, acts[l - 1], lin[l - 1].weight.t())
        for l in range(len(DIMS) - 1, 0, -1):
            torch.mm(gs[l].t(), acts[l - 1])
            if l > 1:
                torch.mm(gs[l], lin[l - 1].weight)

    with torch.no_grad():
        gemms()
        sync()
        t = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            gemms()
            sync()
            t.append(time.perf_counter() - t0)
    ms_gemm = statistics.median(t) * 1e3
    gflop_step = 6.0 * m * S / ms_step * 1e-6
    ratio = gflop_step / gflop_sgemm
    shape = "%dx%dx%d" % (gm, m, gk)
    print("| PyTorch | %s | %d | %d | %d | %.1f | %.1f | %.1f | %s | %.1f | %.2f | %.0f%% |"
          % (desc, threads, m, a.iters, ms_step, ms_min, gflop_step, shape, gflop_sgemm, ratio, other))
    sys.stdout.flush()
    new = not os.path.exists(a.csv) or os.path.getsize(a.csv) == 0
    with open(a.csv, "a") as f:
        if new:
            f.write("impl,backend,threads,batch,timed_steps,ms_step_median,ms_step_min,step_gflops,sgemm_shape,"
                    "sgemm_gflops,ratio,ms_gradient,ms_gv,gv_over_gradient,ms_forward_gv,forward_gv_over_gradient,"
                    "ms_gradient_gemms,ms_gradient_elementwise,ms_gradient_rest,ms_update,ms_update_nag,other_cpu_pct\n")
        f.write('pytorch,"%s",%d,%d,%d,%.3f,%.3f,%.2f,%s,%.2f,%.4f,,,,,,%.3f,,,,,%.1f\n'
                % (desc, threads, m, a.iters, ms_step, ms_min, gflop_step, shape, gflop_sgemm, ratio, ms_gemm, other))
    print("bench_net_torch: m %d, %d threads: step %.2f ms, its gemms alone %.2f ms, sgemm %.1f GFLOP/s"
          % (m, threads, ms_step, ms_gemm, gflop_sgemm), file=sys.stderr)
    if a.profile:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])) as prof:
            for _ in range(5):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), file=sys.stderr)


if __name__ == "__main__":
    main()
