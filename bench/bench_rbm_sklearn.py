"""bench_rbm_sklearn.py: scikit-learn's BernoulliRBM at natgrad's bench-rbm shapes (784 x 500, batch 2000,
PCD-1 with as many persistent chains as the batch, float32 data), timed the way bench_rbm times natgrad:
one warm-up update, then ITERS updates (partial_fit on one batch = one update). Also the float32 sgemm
rate of this process at the trainer's shape (500 x 2000 x 784) and the BLAS that numpy runs on.
Prints one markdown row and, with --csv, appends a CSV row. Random binary data: speed does not depend
on pixel values. usage: bench_rbm_sklearn.py [--iters N] [--csv PATH]"""
import sys
import time

import numpy as np
from sklearn.neural_network import BernoulliRBM

iters, csv = 20, None
args = sys.argv[1:]
while args:
    if args[0] == "--iters" and len(args) > 1:
        iters = int(args[1]); args = args[2:]
    elif args[0] == "--csv" and len(args) > 1:
        csv = args[1]; args = args[2:]
    else:
        sys.exit(__doc__)
nv, nh, m, n_train = 784, 500, 2000, 8000
rng = np.random.RandomState(3)
X = (rng.rand(n_train, nv) < 0.2).astype(np.float32)

# sgemm at the trainer's shape, best of 10 after a warm-up
A = rng.rand(m, nv).astype(np.float32)
W = rng.rand(nv, nh).astype(np.float32)
A @ W
ts = []
for _ in range(10):
    t0 = time.perf_counter(); A @ W; ts.append(time.perf_counter() - t0)
sgemm = 2.0 * m * nv * nh / (sum(ts) / len(ts)) * 1e-9

rbm = BernoulliRBM(n_components=nh, batch_size=m, learning_rate=0.05, n_iter=1, random_state=0)
rbm.partial_fit(X[:m])  # warm-up (allocates the chains)
batches = [X[(i % (n_train // m)) * m:(i % (n_train // m) + 1) * m] for i in range(iters)]
t0 = time.perf_counter()
for b in batches:
    rbm.partial_fit(b)
t = (time.perf_counter() - t0) / iters
# gemms of one sklearn update: v W (positive), h W^T and v' W (one Gibbs step), and the two
# outer products v^T h and v'^T h' (5 products of 2 * nv * nh * m flops)
gf = 5 * 2.0 * nv * nh * m / t * 1e-9
blas = "numpy BLAS"
try:
    from threadpoolctl import threadpool_info
    info = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    if info:
        d = info[0]
        blas = "%s %s, kernel %s, %s threads" % (d.get("internal_api"), d.get("version"), d.get("architecture"), d.get("num_threads"))
except Exception:
    pass
dtype = str(rbm.components_.dtype)
print("| scikit-learn %s BernoulliRBM (%s; %s) | %dx%d | %d | %d | %d | %.3f | %.2f | %.1f | %.1f | %.2f | 5 gemms/update |"
      % (__import__("sklearn").__version__, blas, dtype, nv, nh, m, m, iters, 1e3 * t, 1.0 / t, gf, sgemm, gf / sgemm))
if csv:
    with open(csv, "a") as f:
        f.write('"scikit-learn %s (%s; %s)",sklearn,%d,%d,%d,%d,%d,%.6f,%.4f,%.3f,%.3f,%.4f,0.0000\n'
                % (__import__("sklearn").__version__, blas.replace(",", ";"), dtype, nv, nh, m, m, iters, 1e3 * t, 1.0 / t, gf, sgemm, gf / sgemm))
