/* png.c: the PNG writer (natgrad/png.h). A PNG file is the 8-byte signature and a sequence of
 * chunks (4-byte big-endian length, 4-byte type, data, CRC-32 of type and data): IHDR (width,
 * height, bit depth 8, colour type 0 gray or 2 RGB, compression 0, filter 0, interlace 0), IDAT
 * chunks holding one zlib stream of the filtered rows, IEND. Every row is stored with filter type
 * 0 (a 0 byte, then the row's bytes as they are). The zlib stream is produced row by row, so
 * memory use is one row plus a 64 KiB output buffer whatever the image size.
 *
 * Must not: leave PATH.tmp behind or touch an existing PATH on failure (ng_wfile), or compute a
 * size from unchecked arguments. */
#include "natgrad/png.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "natgrad/file.h"

#define PNG_IDAT_MAX 65536 /* bytes of compressed data per IDAT chunk */

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* One chunk: length, type, data, crc32(type + data). */
static ng_status write_chunk(ng_wfile *w, const char type[4], const unsigned char *data, uint32_t n) {
    unsigned char head[8], tail[4];
    uLong crc = crc32(0L, Z_NULL, 0);
    put_be32(head, n);
    memcpy(head + 4, type, 4);
    crc = crc32(crc, head + 4, 4);
    if (n) crc = crc32(crc, data, n);
    put_be32(tail, (uint32_t)crc);
    NG_TRY(ng_wfile_write(w, head, 8));
    if (n) NG_TRY(ng_wfile_write(w, data, n));
    return ng_wfile_write(w, tail, 4);
}

/* Deflate the rows into IDAT chunks. row is a scratch buffer of 1 + width * channels bytes. */
static ng_status write_idat(ng_wfile *w, const char *path, int width, int height, int channels,
                            const unsigned char *pixels, unsigned char *row, unsigned char *out) {
    z_stream z;
    size_t stride = (size_t)width * (size_t)channels;
    int y, zr;
    ng_status st = NG_OK;

    memset(&z, 0, sizeof z);
    if (deflateInit(&z, Z_DEFAULT_COMPRESSION) != Z_OK)
        return ng_error(NG_ERR_OOM, "PNG %s: zlib deflateInit failed", path);
    z.next_out = out;
    z.avail_out = PNG_IDAT_MAX;
    for (y = 0; y <= height && st == NG_OK; y++) {
        int flush = y == height ? Z_FINISH : Z_NO_FLUSH;
        if (y < height) {
            row[0] = 0; /* filter type None */
            memcpy(row + 1, pixels + (size_t)y * stride, stride);
            z.next_in = row;
            z.avail_in = (uInt)(stride + 1);
        }
        for (;;) {
            zr = deflate(&z, flush);
            if (zr == Z_STREAM_ERROR) {
                st = ng_error(NG_ERR_FORMAT, "PNG %s: zlib deflate failed", path);
                break;
            }
            if (z.avail_out == 0 || (zr == Z_STREAM_END && z.avail_out < PNG_IDAT_MAX)) {
                st = write_chunk(w, "IDAT", out, PNG_IDAT_MAX - z.avail_out);
                if (st != NG_OK) break;
                z.next_out = out;
                z.avail_out = PNG_IDAT_MAX;
            }
            if (zr == Z_STREAM_END) break;
            if (flush == Z_NO_FLUSH && z.avail_in == 0 && z.avail_out > 0) break;
        }
    }
    deflateEnd(&z);
    return st;
}

static ng_status png_write(const char *path, int width, int height, int channels,
                           const unsigned char *pixels, const char *fn) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char ihdr[13], *row = NULL, *out = NULL;
    ng_wfile w;
    ng_status st;

    memset(&w, 0, sizeof w);
    if (!path || !*path) return ng_error(NG_ERR_INVALID_ARG, "%s: %s path", fn, path ? "empty" : "NULL");
    if (!pixels) return ng_error(NG_ERR_INVALID_ARG, "%s(%s): pixels is NULL", fn, path);
    if (width < 1 || height < 1 || width > NG_PNG_MAX_SIDE || height > NG_PNG_MAX_SIDE)
        return ng_error(NG_ERR_INVALID_ARG,
                        "%s(%s): image size %d x %d is outside 1 .. %d in each direction", fn, path,
                        width, height, NG_PNG_MAX_SIDE);

    row = malloc(1 + (size_t)width * (size_t)channels);
    out = malloc(PNG_IDAT_MAX);
    if (!row || !out) {
        free(row);
        free(out);
        return ng_error(NG_ERR_OOM, "%s(%s): cannot allocate the row buffers", fn, path);
    }
    put_be32(ihdr, (uint32_t)width);
    put_be32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8;                             /* bit depth */
    ihdr[9] = channels == 1 ? 0 : 2;         /* colour type: gray or RGB */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;      /* deflate, adaptive filtering (method 0), no interlace */

    st = ng_wfile_open(&w, path);
    if (st == NG_OK) st = ng_wfile_write(&w, sig, sizeof sig);
    if (st == NG_OK) st = write_chunk(&w, "IHDR", ihdr, sizeof ihdr);
    if (st == NG_OK) st = write_idat(&w, path, width, height, channels, pixels, row, out);
    if (st == NG_OK) st = write_chunk(&w, "IEND", NULL, 0);
    if (st == NG_OK) st = ng_wfile_commit(&w);
    if (st != NG_OK) {
        ng_wfile_abort(&w);
        ng_error_wrap(st, "PNG file ");
    }
    free(row);
    free(out);
    return st;
}

ng_status ng_png_write_gray(const char *path, int width, int height, const unsigned char *pixels) {
    return png_write(path, width, height, 1, pixels, "ng_png_write_gray");
}

ng_status ng_png_write_rgb(const char *path, int width, int height, const unsigned char *pixels) {
    return png_write(path, width, height, 3, pixels, "ng_png_write_rgb");
}

ng_status ng_png_write_image_grid(const char *path, const float *x, int img_h, int img_w, int n,
                                  int cols, int pad) {
    const char *fn = "ng_png_write_image_grid";
    int64_t rows, gw, gh;
    size_t dim, j, k;
    unsigned char *pic;
    ng_status st;

    if (!path || !*path) return ng_error(NG_ERR_INVALID_ARG, "%s: %s path", fn, path ? "empty" : "NULL");
    if (!x) return ng_error(NG_ERR_INVALID_ARG, "%s(%s): images x is NULL", fn, path);
    if (img_h < 1 || img_w < 1 || n < 1 || cols < 1 || pad < 0)
        return ng_error(NG_ERR_INVALID_ARG,
                        "%s(%s): need img_h, img_w, n, cols >= 1 and pad >= 0 (got img_h %d, img_w "
                        "%d, n %d, cols %d, pad %d)",
                        fn, path, img_h, img_w, n, cols, pad);
    if (img_h > NG_PNG_MAX_SIDE || img_w > NG_PNG_MAX_SIDE || pad > NG_PNG_MAX_SIDE)
        return ng_error(NG_ERR_INVALID_ARG, "%s(%s): image %d x %d with pad %d is larger than %d pixels",
                        fn, path, img_h, img_w, pad, NG_PNG_MAX_SIDE);
    if (cols > n) cols = n;
    rows = ((int64_t)n + cols - 1) / cols;
    gw = (int64_t)cols * img_w + ((int64_t)cols + 1) * pad;
    gh = rows * img_h + (rows + 1) * pad;
    if (gw > NG_PNG_MAX_SIDE || gh > NG_PNG_MAX_SIDE)
        return ng_error(NG_ERR_INVALID_ARG,
                        "%s(%s): a grid of %d images of %d x %d in %d columns (pad %d) would be "
                        "%lld x %lld pixels, more than %d in a direction; use fewer images or columns",
                        fn, path, n, img_h, img_w, cols, pad, (long long)gw, (long long)gh,
                        NG_PNG_MAX_SIDE);

    dim = (size_t)img_h * (size_t)img_w;
    for (j = 0; j < (size_t)n; j++)
        for (k = 0; k < dim; k++)
            if (!isfinite(x[j * dim + k]))
                return ng_error(NG_ERR_INVALID_ARG, "%s(%s): pixel %zu of image %zu is %g (not finite)",
                                fn, path, k, j, (double)x[j * dim + k]);

    pic = malloc((size_t)gw * (size_t)gh);
    if (!pic) return ng_error(NG_ERR_OOM, "%s(%s): cannot allocate %lld x %lld pixels", fn, path,
                              (long long)gw, (long long)gh);
    memset(pic, NG_PNG_GRID_GRAY, (size_t)gw * (size_t)gh);
    for (j = 0; j < (size_t)n; j++) {
        const float *im = x + j * dim;
        size_t r0 = (size_t)pad + (j / (size_t)cols) * (size_t)(img_h + pad);
        size_t c0 = (size_t)pad + (j % (size_t)cols) * (size_t)(img_w + pad);
        int r, c;
        for (r = 0; r < img_h; r++)
            for (c = 0; c < img_w; c++) {
                float v = im[(size_t)r * (size_t)img_w + (size_t)c];
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                pic[(r0 + (size_t)r) * (size_t)gw + c0 + (size_t)c] =
                    (unsigned char)(255.0f * v + 0.5f);
            }
    }
    st = ng_png_write_gray(path, (int)gw, (int)gh, pic);
    free(pic);
    return st;
}
