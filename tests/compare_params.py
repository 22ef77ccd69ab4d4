#!/usr/bin/env python3
"""compare_params.py A.safetensors B.safetensors RTOL: compare the tensors of two safetensors
files written by `natgrad export` (standard library only). For every tensor present in both (the
same names, dtypes and shapes are required) it computes max |a - b| / (max |a| + 1e-30); prints
the largest over the tensors and exits 0 when it is <= RTOL (RTOL = 0: the payloads must be
bit-identical), 1 otherwise, 2 on a malformed file or a mismatch of names or shapes.
With a fourth argument PREFIX only the tensors whose names start with PREFIX are compared (say
"kfac." to compare the optimizer state of two ranks' files, which hold no model); a PREFIX that
starts with "!" keeps the tensors whose names do NOT start with the rest (say "!fang.diag" to leave
out FANG's diagnostics, which hold a wall-clock time).
--floor F (anywhere after the files) divides by max(max |a|, F) instead: for a tensor whose exact
value is 0 and which holds rounding noise (the bias of a conv layer followed by batch norm, whose
gradient vanishes), F is the scale against which that noise is judged."""
import json
import struct
import sys


def load(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    buf = data[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = buf[lo:hi]
        fmt = {"F32": "f", "F64": "d"}[t["dtype"]]
        out[name] = (t["dtype"], tuple(t["shape"]), raw, struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw))
    return out


def main(argv):
    floor = 0.0
    if "--floor" in argv:
        i = argv.index("--floor")
        floor = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if len(argv) not in (4, 5):
        print("usage: compare_params.py A.safetensors B.safetensors RTOL [PREFIX]")
        return 2
    a, b, rtol = load(argv[1]), load(argv[2]), float(argv[3])
    if len(argv) == 5:
        pre, keep = (argv[4][1:], False) if argv[4].startswith("!") else (argv[4], True)
        a = {k: v for k, v in a.items() if k.startswith(pre) == keep}
        b = {k: v for k, v in b.items() if k.startswith(pre) == keep}
        if not a:
            print("no tensor named %s* in %s" % (argv[4], argv[1]))
            return 2
    if sorted(a) != sorted(b):
        print("tensor names differ: %s vs %s" % (sorted(a), sorted(b)))
        return 2
    worst, where, identical = 0.0, "", True
    for name in sorted(a):
        da, sa, ra, va = a[name]
        db, sb, rb, vb = b[name]
        if da != db or sa != sb:
            print("%s: %s %s vs %s %s" % (name, da, sa, db, sb))
            return 2
        identical = identical and ra == rb
        scale = max(max(abs(x) for x in va), floor) + 1e-30
        d = max(abs(x - y) for x, y in zip(va, vb)) / scale
        if d > worst:
            worst, where = d, name
    print("max relative difference %.3e (%s)%s" % (worst, where or "-", ", bit-identical" if identical else ""))
    if rtol == 0.0:
        return 0 if identical else 1
    return 0 if worst <= rtol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
