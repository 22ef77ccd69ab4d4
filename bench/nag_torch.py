#!/usr/bin/env python3
"""nag_torch.py: the NAG baseline of the K-FAC paper in PyTorch, the outside reference a user
would otherwise pick (bench/kfac_autoencoders.sh runs it next to natgrad's K-FAC).

The MNIST autoencoder 784-1000-500-250-30-250-500-1000-784 (logistic hidden units, a linear code
layer, logistic outputs with cross-entropy summed over pixels and averaged over cases), float32 on
the CPU, starting from natgrad's own sparse initialisation (a safetensors export of a natgrad
checkpoint, so both start from the same point). Nesterov's accelerated gradient exactly as
natgrad's nag rule (Sutskever et al. 2013): v <- mu_t v - lr grad(theta + mu_t v), theta <- theta + v,
mu_t = min(1 - 2^(-1 - log2(floor(t / 250) + 1)), mu_max), L2 eta on the weights (not the biases),
iterate averaging xi; every --log-every updates the training error (sum over pixels of (y - t)^2
per case) at theta and at the average, and the minimum, as the K-FAC paper reports it. The time
column counts training only (evaluations excluded), like natgrad's train_s.

usage: nag_torch.py --init INIT.safetensors --data data/mnist --out LOG.csv [--minutes M] [--lr 0.01]
                    [--batch 500] [--mu-max 0.99] [--weight-decay 1e-5] [--average 0.99] [--seed 1]
                    [--threads 0] [--log-every 100]
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import torch

DIMS = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
CODE = 4  # layer 4 (250 -> 30) is linear


def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            raw = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            ndim = raw[3]
            dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
            return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)
    sys.exit("nag_torch: %s[.gz] not found (run: bash data/prepare.sh mnist)" % path)


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=torch.float32).reshape(v["shape"]).clone()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True)
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--mu-max", type=float, default=0.99)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--average", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=100)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = read_idx(os.path.join(a.data, "train-images-idx3-ubyte")).reshape(-1, 784).float() / 255.0
    n = x.shape[0]
    init = read_safetensors(a.init)
    W = [init["W%d" % (l + 1)].clone().requires_grad_(True) for l in range(8)]
    b = [init["b%d" % (l + 1)].reshape(-1).clone().requires_grad_(True) for l in range(8)]
    params = W + b
    decay = [True] * 8 + [False] * 8
    v = [torch.zeros_like(p) for p in params]
    avg = [p.detach().clone() for p in params]

    def forward(xb, ps):
        h = xb
        for l in range(8):
            z = h @ ps[l].t() + ps[8 + l]
            h = z if l == CODE - 1 or l == 7 else torch.sigmoid(z)
        return h  # logits of the output layer

    def errors(ps):
        with torch.no_grad():
            tot = 0.0
            for i in range(0, n, 2000):
                xb = x[i:i + 2000]
                y = torch.sigmoid(forward(xb, ps))
                tot += float(((y - xb) ** 2).sum())
            return tot / n

    def mu_of(t):
        return min(1.0 - 2.0 ** (-1.0 - math.log2(t // 250 + 1)), a.mu_max)

    lossf = torch.nn.BCEWithLogitsLoss(reduction="sum")
    log = open(a.out, "w")
    log.write("step,train_s,cases,train_error,train_error_avg,train_error_best\n")
    t, train_s, pos = 0, 0.0, n
    perm = None
    deadline = a.minutes * 60.0
    while train_s < deadline:
        t0 = time.perf_counter()
        if pos + a.batch > n:
            perm = torch.randperm(n)
            pos = 0
        xb = x[perm[pos:pos + a.batch]]
        pos += a.batch
        # params hold the look-ahead point phi_t = theta_t + mu_t v_t
        loss = lossf(forward(xb, params), xb) / a.batch
        for p in params:
            p.grad = None
        loss.backward()
        mu_t, mu_n = mu_of(t), mu_of(t + 1)
        with torch.no_grad():
            for p, vv, d, av in zip(params, v, decay, avg):
                g = p.grad + a.weight_decay * p if d else p.grad
                vv.mul_(mu_t).add_(g, alpha=-a.lr)          # v_{t+1} = mu_t v_t - lr g(phi_t)
                p.add_(vv, alpha=mu_n).add_(g, alpha=-a.lr)  # phi_{t+1} = phi_t + mu_{t+1} v_{t+1} - lr g
                theta = p - mu_n * vv
                av.mul_(a.average).add_(theta, alpha=1.0 - a.average)
        t += 1
        train_s += time.perf_counter() - t0
        if t % a.log_every == 0 or train_s >= deadline:
            with torch.no_grad():
                theta = [p - mu_of(t) * vv for p, vv in zip(params, v)]
            e, ea = errors(theta), errors(avg)
            log.write("%d,%.3f,%d,%.6g,%.6g,%.6g\n" % (t, train_s, t * a.batch, e, ea, min(e, ea)))
            log.flush()
            print("nag_torch: update %d, %.0f s, train error %.3f (average %.3f)" % (t, train_s, e, ea), file=sys.stderr)
    log.close()


if __name__ == "__main__":
    main()
