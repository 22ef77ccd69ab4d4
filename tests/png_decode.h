/* png_decode.h: an independent PNG reader for the tests (test_png, test_curves), written from the
 * PNG specification and not sharing code with host/core/png.c. It accepts what natgrad writes and
 * checks it strictly: the signature, every chunk's CRC (zlib crc32 over type and data), IHDR first
 * with 8-bit gray (colour type 0) or RGB (2), no interlace, IDAT chunks consecutive, IEND last
 * with nothing after it, the zlib stream inflating to exactly height * (1 + width * channels)
 * bytes, and filter type 0 (None) on every row, which it undoes by dropping the filter byte.
 * Returns 0 and the pixels (malloc'ed, row-major) or -1 with a reason in err. */
#ifndef NG_TEST_PNG_DECODE_H
#define NG_TEST_PNG_DECODE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct ngt_png {
    int width, height, channels;
    int n_idat;             /* IDAT chunks seen */
    unsigned char *pixels;  /* height * width * channels bytes */
} ngt_png;

static uint32_t ngt_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int ngt_png_decode(const char *path, ngt_png *png, char *err, size_t errcap) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    unsigned char *file = NULL, *z = NULL, *raw = NULL;
    size_t len = 0, pos, zlen = 0, rawlen, stride;
    long flen;
    int seen_ihdr = 0, seen_iend = 0, idat_done = 0, y, rc = -1;
    uLongf got;

    memset(png, 0, sizeof *png);
    if (!f) {
        snprintf(err, errcap, "%s: cannot open", path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (flen = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        len = (size_t)flen;
        file = malloc(len ? len : 1);
        if (file && fread(file, 1, len, f) != len) {
            free(file);
            file = NULL;
        }
    }
    fclose(f);
    if (!file) {
        snprintf(err, errcap, "%s: cannot read", path);
        return -1;
    }
    z = malloc(len);
    if (!z) {
        snprintf(err, errcap, "out of memory");
        goto done;
    }
    if (len < 8 || memcmp(file, sig, 8) != 0) {
        snprintf(err, errcap, "bad signature");
        goto done;
    }
    for (pos = 8; pos < len;) {
        uint32_t n, crc;
        const unsigned char *type, *data;
        if (seen_iend) {
            snprintf(err, errcap, "bytes after IEND at %zu", pos);
            goto done;
        }
        if (len - pos < 12) {
            snprintf(err, errcap, "truncated chunk at %zu", pos);
            goto done;
        }
        n = ngt_be32(file + pos);
        if (n > len - pos - 12) {
            snprintf(err, errcap, "chunk length %u at %zu runs past the end", n, pos);
            goto done;
        }
        type = file + pos + 4;
        data = type + 4;
        crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), type, 4 + n);
        if (crc != ngt_be32(data + n)) {
            snprintf(err, errcap, "chunk %.4s: CRC 0x%08x, stored 0x%08x", (const char *)type, crc,
                     ngt_be32(data + n));
            goto done;
        }
        if (!seen_ihdr && memcmp(type, "IHDR", 4) != 0) {
            snprintf(err, errcap, "first chunk is %.4s, not IHDR", (const char *)type);
            goto done;
        }
        if (memcmp(type, "IHDR", 4) == 0) {
            if (seen_ihdr || n != 13) {
                snprintf(err, errcap, "bad or repeated IHDR");
                goto done;
            }
            png->width = (int)ngt_be32(data);
            png->height = (int)ngt_be32(data + 4);
            if (data[8] != 8 || (data[9] != 0 && data[9] != 2) || data[10] || data[11] || data[12] ||
                png->width < 1 || png->height < 1) {
                snprintf(err, errcap, "IHDR: unexpected fields (%d x %d, depth %d, colour %d, %d %d %d)",
                         png->width, png->height, data[8], data[9], data[10], data[11], data[12]);
                goto done;
            }
            png->channels = data[9] == 0 ? 1 : 3;
            seen_ihdr = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            if (idat_done) {
                snprintf(err, errcap, "IDAT chunks are not consecutive");
                goto done;
            }
            memcpy(z + zlen, data, n);
            zlen += n;
            png->n_idat++;
        } else if (memcmp(type, "IEND", 4) == 0) {
            if (n != 0) {
                snprintf(err, errcap, "IEND with data");
                goto done;
            }
            seen_iend = 1;
        } else if (!(type[0] & 0x20)) {
            snprintf(err, errcap, "unknown critical chunk %.4s", (const char *)type);
            goto done;
        }
        if (png->n_idat && memcmp(type, "IDAT", 4) != 0) idat_done = 1;
        pos += 12 + n;
    }
    if (!seen_iend || !png->n_idat) {
        snprintf(err, errcap, "missing %s", seen_iend ? "IDAT" : "IEND");
        goto done;
    }
    stride = (size_t)png->width * (size_t)png->channels;
    rawlen = (size_t)png->height * (1 + stride);
    raw = malloc(rawlen + 1);
    png->pixels = malloc(rawlen);
    if (!raw || !png->pixels) {
        snprintf(err, errcap, "out of memory");
        goto done;
    }
    got = (uLongf)(rawlen + 1); /* one spare byte: a longer stream is caught, not truncated */
    if (uncompress(raw, &got, z, (uLong)zlen) != Z_OK || got != rawlen) {
        snprintf(err, errcap, "zlib stream does not inflate to %zu bytes", rawlen);
        goto done;
    }
    for (y = 0; y < png->height; y++) {
        const unsigned char *r = raw + (size_t)y * (1 + stride);
        if (r[0] != 0) {
            snprintf(err, errcap, "row %d has filter type %d, not 0", y, r[0]);
            goto done;
        }
        memcpy(png->pixels + (size_t)y * stride, r + 1, stride);
    }
    rc = 0;
done:
    if (rc != 0) {
        free(png->pixels);
        png->pixels = NULL;
    }
    free(file);
    free(z);
    free(raw);
    return rc;
}

#endif
