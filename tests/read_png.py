#!/usr/bin/env python3
"""read_png.py FILE EXPECTED: an independent reader of a PNG file written by natgrad
(tests/test_png.c), using only the Python standard library (struct, zlib).

It checks the signature, every chunk's CRC, IHDR (8-bit gray or RGB, no interlace), consecutive
IDAT chunks, IEND last with nothing after it, the zlib stream inflating to exactly
height * (1 + width * channels) bytes and filter type 0 on every row; then compares the pixels with
EXPECTED, a raw file holding "W H C\n" and then the width * height * channels pixel bytes.
Prints "OK ..." and exits 0, or prints the problem and exits 1."""
import struct
import sys
import zlib


def fail(msg):
    print(msg)
    return 1


def main(argv):
    if len(argv) != 3:
        print("usage: read_png.py FILE EXPECTED")
        return 2
    data = open(argv[1], "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return fail("bad signature")
    pos, chunks = 8, []
    while pos < len(data):
        if len(data) - pos < 12:
            return fail("truncated chunk at %d" % pos)
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        typ, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if len(body) != n or pos + 12 + n > len(data):
            return fail("chunk at %d runs past the end" % pos)
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(typ + body) & 0xFFFFFFFF != crc:
            return fail("chunk %r: bad CRC" % typ)
        chunks.append((typ, body))
        pos += 12 + n
    types = [t for t, _ in chunks]
    if not types or types[0] != b"IHDR" or types[-1] != b"IEND" or types.count(b"IEND") != 1:
        return fail("chunk order %r" % types)
    idat = [i for i, t in enumerate(types) if t == b"IDAT"]
    if not idat or idat != list(range(idat[0], idat[-1] + 1)):
        return fail("IDAT chunks missing or not consecutive: %r" % types)
    w, h, depth, colour, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 8 or colour not in (0, 2) or comp or filt or inter:
        return fail("IHDR fields %r" % ((w, h, depth, colour, comp, filt, inter),))
    c = 1 if colour == 0 else 3
    raw = zlib.decompress(b"".join(chunks[i][1] for i in idat))
    stride = w * c
    if len(raw) != h * (1 + stride):
        return fail("inflated %d bytes, expected %d" % (len(raw), h * (1 + stride)))
    pixels = bytearray()
    for y in range(h):
        row = raw[y * (1 + stride):(y + 1) * (1 + stride)]
        if row[0] != 0:
            return fail("row %d: filter type %d" % (y, row[0]))
        pixels += row[1:]
    exp = open(argv[2], "rb").read()
    head, _, want = exp.partition(b"\n")
    ew, eh, ec = (int(v) for v in head.split())
    if (ew, eh, ec) != (w, h, c):
        return fail("size %dx%dx%d, expected %dx%dx%d" % (w, h, c, ew, eh, ec))
    if bytes(pixels) != want:
        first = next(i for i in range(len(want)) if i >= len(pixels) or pixels[i] != want[i])
        return fail("pixels differ first at byte %d" % first)
    print("OK %dx%d, %d channel(s), %d IDAT chunk(s)" % (w, h, c, len(idat)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
