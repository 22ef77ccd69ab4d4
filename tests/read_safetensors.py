#!/usr/bin/env python3
"""read_safetensors.py FILE EXPECTED: an independent reader of a safetensors file written by
natgrad (tests/test_checkpoint_format.c), using only the Python standard library (json, struct).

It checks the format itself (u64 little-endian header size N, N a multiple of 8, N bytes of UTF-8
JSON starting with '{' and padded with at most 7 spaces, no duplicate keys, data_offsets that tile
the byte buffer exactly and in order, sizes matching dtype and shape) and the contents against
EXPECTED, a text file of lines

    tensor HEXNAME DTYPE NDIM D0 .. D(NDIM-1) V0 V1 ...   (values as C99 hex floats, "%a")
    meta HEXKEY HEXVALUE

where HEX* is the UTF-8 text in hexadecimal. Prints "OK ..." and exits 0, or prints every problem
found and exits 1."""
import json
import struct
import sys

SIZES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2}


def decode(dtype, raw):
    n = len(raw) // SIZES[dtype]
    if dtype == "F32":
        return list(struct.unpack("<%df" % n, raw))
    if dtype == "F64":
        return list(struct.unpack("<%dd" % n, raw))
    if dtype == "F16":
        return list(struct.unpack("<%de" % n, raw))
    # bfloat16: the upper half of a float32
    halves = struct.unpack("<%dH" % n, raw)
    return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]


def no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError("duplicate JSON key %r" % k)
        seen[k] = v
    return seen


def main(argv):
    if len(argv) != 3:
        print("usage: read_safetensors.py FILE EXPECTED")
        return 2
    errors = []
    data = open(argv[1], "rb").read()
    if len(data) < 8:
        print("file of %d bytes has no header size" % len(data))
        return 1
    (n,) = struct.unpack("<Q", data[:8])
    if n % 8:
        errors.append("header size %d is not a multiple of 8" % n)
    if 8 + n > len(data):
        print("header size %d runs past the end of the %d-byte file" % (n, len(data)))
        return 1
    raw = data[8:8 + n]
    buf = data[8 + n:]
    text = raw.decode("utf-8")  # raises on invalid UTF-8
    body = text.rstrip(" ")
    if len(text) - len(body) > 7:
        errors.append("%d bytes of padding (at most 7 expected)" % (len(text) - len(body)))
    if not body.startswith("{") or not body.endswith("}"):
        errors.append("header is not a JSON object followed by spaces: %r" % text[:40])
    header = json.loads(text, object_pairs_hook=no_duplicates)
    if not isinstance(header, dict):
        print("header is not a JSON object")
        return 1

    want_t, want_meta = {}, {}
    for line in open(argv[2], encoding="ascii"):
        f = line.split()
        if not f:
            continue
        if f[0] == "tensor":
            name = bytes.fromhex(f[1]).decode("utf-8")
            nd = int(f[3])
            shape = [int(x) for x in f[4:4 + nd]]
            vals = [float.fromhex(x) for x in f[4 + nd:]]
            want_t[name] = (f[2], shape, vals)
        elif f[0] == "meta":
            want_meta[bytes.fromhex(f[1]).decode("utf-8")] = bytes.fromhex(f[2]).decode("utf-8")

    meta = header.pop("__metadata__", None)
    if want_meta or meta is not None:
        if not isinstance(meta, dict) or any(not isinstance(v, str) for v in meta.values()):
            errors.append("__metadata__ is not an object of strings: %r" % (meta,))
        elif meta != want_meta:
            errors.append("metadata %r, expected %r" % (meta, want_meta))
    if set(header) != set(want_t):
        errors.append("tensor names %r, expected %r" % (sorted(header), sorted(want_t)))

    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            errors.append("%r: entry %r is not {dtype, shape, data_offsets}" % (name, info))
            continue
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SIZES:
            errors.append("%r: unknown dtype %r" % (name, dtype))
            continue
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            errors.append("%r: bad shape %r" % (name, shape))
            continue
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)
                and 0 <= offs[0] <= offs[1] <= len(buf)):
            errors.append("%r: bad data_offsets %r (buffer of %d bytes)" % (name, offs, len(buf)))
            continue
        count = 1
        for d in shape:
            count *= d
        if offs[1] - offs[0] != count * SIZES[dtype]:
            errors.append("%r: data_offsets %r hold %d bytes, shape %r of %s needs %d"
                          % (name, offs, offs[1] - offs[0], shape, dtype, count * SIZES[dtype]))
            continue
        spans.append((offs[0], offs[1], name))
        if name in want_t:
            wd, ws, wv = want_t[name]
            if dtype != wd:
                errors.append("%r: dtype %s, expected %s" % (name, dtype, wd))
            if shape != ws:
                errors.append("%r: shape %r, expected %r" % (name, shape, ws))
            got = decode(dtype, buf[offs[0]:offs[1]])
            if dtype == wd and got != wv:
                bad = [i for i in range(min(len(got), len(wv))) if got[i] != wv[i]]
                errors.append("%r: %d values, expected %d; %d differ (first: %r)"
                              % (name, len(got), len(wv), len(bad), bad[:5]))
    spans.sort()
    at = 0
    for b, e, name in spans:
        if b != at:
            errors.append("%r starts at %d, expected %d: the buffer is not tiled contiguously"
                          % (name, b, at))
        at = e
    if at != len(buf):
        errors.append("tensors end at %d, the byte buffer has %d bytes" % (at, len(buf)))

    if errors:
        for e in errors:
            print("ERROR " + e)
        return 1
    print("OK %d tensors, %d metadata entries, header %d bytes, buffer %d bytes"
          % (len(header), len(meta or {}), n, len(buf)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as exc:  # a malformed file: report it as a failure, not a traceback
        print("ERROR %s: %s" % (type(exc).__name__, exc))
        sys.exit(1)
