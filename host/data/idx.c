/* idx.c: strict reader and atomic writer for IDX files (the MNIST container), raw or gzip.
 *
 * Layout: magic = 00 00 <dtype> <ndims>, then ndims big-endian u32 dims, then the payload of
 * prod(dims) big-endian elements, row-major. ng_idx holds the payload in host byte order.
 *
 * Must not: trust the header before checking it, allocate from an unchecked size, read past a
 * buffer, or accept a file whose length differs from what its header implies. A raw file's payload
 * length is checked against its size before anything is allocated; a gzip stream's buffer grows
 * only as decompressed bytes arrive, so a lying header cannot make us allocate more than the
 * stream really holds. zlib's gzread stops at the first non-gzip byte after a complete gzip member
 * and does not report it, so bytes appended after a whole .gz stream go unnoticed; bytes appended
 * to the payload inside the stream are caught like any trailing data. */
#include "natgrad/data.h"
#include "natgrad/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_CHUNK ((size_t)1 << 20) /* read/convert granularity, bytes */

size_t ng_idx_dtype_size(int dtype) {
    switch (dtype) {
    case NG_IDX_U8:
    case NG_IDX_I8: return 1;
    case NG_IDX_I16: return 2;
    case NG_IDX_I32:
    case NG_IDX_F32: return 4;
    case NG_IDX_F64: return 8;
    default: return 0;
    }
}

const char *ng_idx_dtype_name(int dtype) {
    switch (dtype) {
    case NG_IDX_U8: return "u8";
    case NG_IDX_I8: return "i8";
    case NG_IDX_I16: return "i16";
    case NG_IDX_I32: return "i32";
    case NG_IDX_F32: return "f32";
    case NG_IDX_F64: return "f64";
    default: return "?";
    }
}

void ng_idx_free(ng_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* ---- byte order -------------------------------------------------------------------------- */

static uint32_t load_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Reverse the bytes of each of n elements of size esz in place (big-endian <-> little-endian). */
static void swap_elements(unsigned char *p, size_t n, size_t esz) {
    size_t i, k;
    if (esz < 2) return;
    for (i = 0; i < n; i++, p += esz) {
        for (k = 0; k < esz / 2; k++) {
            unsigned char t = p[k];
            p[k] = p[esz - 1 - k];
            p[esz - 1 - k] = t;
        }
    }
}

/* ---- header ------------------------------------------------------------------------------ */

/* Validate shape fields and compute count and payload bytes with overflow checks. `what` names
 * the file (reader) or the target path (writer) in messages. */
static ng_status check_shape(const char *what, int dtype, int ndims, const uint32_t *dims,
                             size_t *count_out, size_t *bytes_out) {
    size_t esz = ng_idx_dtype_size(dtype);
    uint64_t count = 1;
    int i;
    if (esz == 0)
        return ng_error(NG_ERR_FORMAT,
                        "%s: bad dtype byte 0x%02x (want 08 u8, 09 i8, 0B i16, 0C i32, 0D f32, 0E f64)",
                        what, (unsigned)dtype & 0xffu);
    if (ndims < 1 || ndims > NG_IDX_MAX_DIMS)
        return ng_error(NG_ERR_FORMAT, "%s: bad number of dimensions %d (want 1..%d)", what, ndims,
                        NG_IDX_MAX_DIMS);
    for (i = 0; i < ndims; i++) {
        if (dims[i] == 0)
            return ng_error(NG_ERR_FORMAT, "%s: dimension %d is 0", what, i);
        if (dims[i] > (uint32_t)INT_MAX)
            return ng_error(NG_ERR_FORMAT, "%s: dimension %d is %lu, absurdly large (limit %d)", what,
                            i, (unsigned long)dims[i], INT_MAX);
        /* count <= NG_IDX_MAX_COUNT < 2^31 and dims[i] < 2^31, so the product fits in 64 bits. */
        count *= dims[i];
        if (count > (uint64_t)NG_IDX_MAX_COUNT)
            return ng_error(NG_ERR_FORMAT,
                            "%s: dimensions imply more than %zu elements (absurd size) at dimension %d",
                            what, NG_IDX_MAX_COUNT, i);
    }
    if (count * esz > (uint64_t)SIZE_MAX)
        return ng_error(NG_ERR_FORMAT, "%s: payload of %llu elements does not fit in memory", what,
                        (unsigned long long)count);
    *count_out = (size_t)count;
    *bytes_out = (size_t)count * esz;
    return NG_OK;
}

/* ---- input source: a raw file descriptor or a zlib stream -------------------------------- */

typedef struct idx_src {
    const char *path;
    int fd;       /* raw input, or -1 */
    gzFile gz;    /* gzip input, or NULL */
    off_t size;   /* raw: file size from fstat */
} idx_src;

/* Report the state of the zlib stream after a short or failed gzread. */
static ng_status gz_status(idx_src *s) {
    int err = Z_OK;
    const char *msg = gzerror(s->gz, &err);
    switch (err) {
    case Z_OK:
    case Z_STREAM_END: return NG_OK;
    case Z_BUF_ERROR:
        return ng_error(NG_ERR_FORMAT, "%s: truncated gzip stream (%s)", s->path, msg);
    case Z_ERRNO:
        return ng_error(NG_ERR_IO, "%s: read failed: %s", s->path, strerror(errno));
    case Z_MEM_ERROR: return ng_error(NG_ERR_OOM, "%s: zlib out of memory", s->path);
    default: return ng_error(NG_ERR_FORMAT, "%s: corrupt gzip stream: %s", s->path, msg);
    }
}

/* Read up to `want` bytes; *got < want only at the end of the input. */
static ng_status src_read(idx_src *s, void *buf, size_t want, size_t *got) {
    unsigned char *p = buf;
    *got = 0;
    while (*got < want) {
        size_t ask = want - *got;
        if (ask > IDX_CHUNK) ask = IDX_CHUNK;
        if (s->gz) {
            int r = gzread(s->gz, p + *got, (unsigned)ask);
            if (r < 0) {
                ng_status st = gz_status(s);
                return st != NG_OK ? st
                                   : ng_error(NG_ERR_FORMAT, "%s: corrupt gzip stream", s->path);
            }
            if (r == 0) return gz_status(s);
            *got += (size_t)r;
        } else {
            ssize_t r = read(s->fd, p + *got, ask);
            if (r < 0) {
                if (errno == EINTR) continue;
                return ng_error(NG_ERR_IO, "%s: read failed: %s", s->path, strerror(errno));
            }
            if (r == 0) return NG_OK;
            *got += (size_t)r;
        }
    }
    return NG_OK;
}

static void src_close(idx_src *s) {
    if (s->gz) gzclose(s->gz); /* owns the descriptor */
    else if (s->fd >= 0) close(s->fd);
    s->gz = NULL;
    s->fd = -1;
}

static ng_status src_open(const char *path, idx_src *s) {
    uint64_t size = 0;
    unsigned char m[2];
    ssize_t r;
    memset(s, 0, sizeof *s);
    s->path = path;
    s->fd = -1;
    /* regular files only: a FIFO is refused at once instead of blocking the reader */
    NG_TRY(ng_file_open_read(path, "data file", &s->fd, &size));
    if (size > (uint64_t)INT64_MAX) {
        src_close(s);
        return ng_error(NG_ERR_FORMAT, "data file %s: absurd size %llu", path,
                        (unsigned long long)size);
    }
    s->size = (off_t)size;
    if (s->size == 0) {
        src_close(s);
        return ng_error(NG_ERR_FORMAT, "%s: empty file (an IDX file starts with a 4-byte magic)",
                        path);
    }
    do r = pread(s->fd, m, 2, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        ng_status e = ng_error(NG_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        src_close(s);
        return e;
    }
    if (r == 2 && m[0] == 0x1f && m[1] == 0x8b) {
        s->gz = gzdopen(s->fd, "rb");
        if (!s->gz) {
            src_close(s);
            return ng_error(NG_ERR_OOM, "%s: cannot start the gzip decoder", path);
        }
        s->fd = -1;
        gzbuffer(s->gz, 1u << 16);
    }
    return NG_OK;
}

/* ---- reader ------------------------------------------------------------------------------ */

/* Read exactly `bytes` of payload into a buffer that grows with the data actually received. */
static ng_status read_payload(idx_src *s, size_t bytes, void **data_out) {
    unsigned char *buf = NULL;
    size_t cap = 0, have = 0, got;
    ng_status st;
    while (have < bytes) {
        if (have == cap) {
            size_t ncap = cap ? cap * 2 : IDX_CHUNK;
            unsigned char *nb;
            if (s->gz == NULL || ncap > bytes || ncap < cap) ncap = bytes; /* raw: size checked */
            nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return ng_error(NG_ERR_OOM, "%s: cannot allocate %zu bytes for the payload", s->path,
                                ncap);
            }
            buf = nb;
            cap = ncap;
        }
        st = src_read(s, buf + have, cap - have, &got);
        if (st != NG_OK) {
            free(buf);
            return st;
        }
        have += got;
        if (have < cap) break; /* end of input */
    }
    if (have < bytes) {
        free(buf);
        return ng_error(NG_ERR_FORMAT, "%s: truncated: header says %zu bytes of payload, file has %zu",
                        s->path, bytes, have);
    }
    *data_out = buf;
    return NG_OK;
}

/* After the payload: any further byte is an error. Counts up to a bound for the message. */
static ng_status check_no_trailing(idx_src *s, size_t bytes) {
    unsigned char scratch[4096];
    size_t extra = 0, got;
    ng_status st;
    if (!s->gz) {
        /* s->size was checked against the header before reading; re-check the stream end in case
         * the file grew while we read it. */
        st = src_read(s, scratch, 1, &got);
        if (st != NG_OK) return st;
        if (got)
            return ng_error(NG_ERR_FORMAT, "%s: trailing bytes after the %zu-byte payload (file grew?)",
                            s->path, bytes);
        return NG_OK;
    }
    do {
        st = src_read(s, scratch, sizeof scratch, &got);
        if (st != NG_OK) return st;
        extra += got;
    } while (got == sizeof scratch && extra < IDX_CHUNK);
    if (extra)
        return ng_error(NG_ERR_FORMAT, "%s: trailing garbage: %s%zu bytes after the %zu-byte payload",
                        s->path, got == sizeof scratch ? "at least " : "", extra, bytes);
    return NG_OK;
}

static ng_status check_finite(const char *path, const ng_idx *idx) {
    size_t i;
    if (idx->dtype == NG_IDX_F32) {
        const float *f = idx->data;
        for (i = 0; i < idx->count; i++)
            if (!isfinite(f[i]))
                return ng_error(NG_ERR_FORMAT, "%s: element %zu of the f32 payload is %s", path, i,
                                isnan(f[i]) ? "NaN" : "infinite");
    } else if (idx->dtype == NG_IDX_F64) {
        const double *d = idx->data;
        for (i = 0; i < idx->count; i++)
            if (!isfinite(d[i]))
                return ng_error(NG_ERR_FORMAT, "%s: element %zu of the f64 payload is %s", path, i,
                                isnan(d[i]) ? "NaN" : "infinite");
    }
    return NG_OK;
}

ng_status ng_idx_read(const char *path, ng_idx *out) {
    idx_src s;
    unsigned char hdr[4 + 4 * NG_IDX_MAX_DIMS];
    uint32_t dims[NG_IDX_MAX_DIMS] = {0};
    size_t got, count = 0, bytes = 0, hlen;
    ng_status st;
    int i, ndims;

    if (!out) return ng_error(NG_ERR_INVALID_ARG, "ng_idx_read: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return ng_error(NG_ERR_INVALID_ARG, "ng_idx_read: path is NULL");
    NG_TRY(src_open(path, &s));

    st = src_read(&s, hdr, 4, &got);
    if (st != NG_OK) goto fail;
    if (got < 4) {
        st = ng_error(NG_ERR_FORMAT, "%s: truncated header: %zu bytes, the magic alone needs 4", path,
                      got);
        goto fail;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        st = ng_error(NG_ERR_FORMAT,
                      "%s: bad magic %02x %02x %02x %02x: not an IDX file (must start with 00 00)",
                      path, hdr[0], hdr[1], hdr[2], hdr[3]);
        goto fail;
    }
    if (ng_idx_dtype_size(hdr[2]) == 0 || hdr[3] < 1 || hdr[3] > NG_IDX_MAX_DIMS) {
        /* check_shape reports the dtype or ndims problem without looking at dims */
        st = check_shape(path, hdr[2], hdr[3], dims, &count, &bytes);
        goto fail;
    }
    ndims = hdr[3];
    hlen = 4 + 4 * (size_t)ndims;
    st = src_read(&s, hdr + 4, hlen - 4, &got);
    if (st != NG_OK) goto fail;
    if (got < hlen - 4) {
        st = ng_error(NG_ERR_FORMAT, "%s: truncated header: %zu bytes, %d dimensions need %zu", path,
                      4 + got, ndims, hlen);
        goto fail;
    }
    for (i = 0; i < ndims; i++) dims[i] = load_be32(hdr + 4 + 4 * i);
    st = check_shape(path, hdr[2], ndims, dims, &count, &bytes);
    if (st != NG_OK) goto fail;

    if (!s.gz) {
        /* raw: the file size must match exactly, checked before any allocation */
        uint64_t have = (uint64_t)s.size > hlen ? (uint64_t)s.size - hlen : 0;
        if (have < bytes) {
            st = ng_error(NG_ERR_FORMAT, "%s: truncated: header says %zu bytes of payload, file has %llu",
                          path, bytes, (unsigned long long)have);
            goto fail;
        }
        if (have > bytes) {
            st = ng_error(NG_ERR_FORMAT,
                          "%s: trailing garbage: %llu bytes after the %zu-byte payload the header implies",
                          path, (unsigned long long)(have - bytes), bytes);
            goto fail;
        }
    }
    st = read_payload(&s, bytes, &out->data);
    if (st != NG_OK) goto fail;
    st = check_no_trailing(&s, bytes);
    if (st != NG_OK) goto fail;
    src_close(&s);

    out->dtype = hdr[2];
    out->ndims = ndims;
    for (i = 0; i < ndims; i++) out->dims[i] = (int)dims[i];
    out->count = count;
    if (host_is_little_endian()) swap_elements(out->data, count, ng_idx_dtype_size(out->dtype));
    st = check_finite(path, out);
    if (st != NG_OK) ng_idx_free(out);
    return st;

fail:
    src_close(&s);
    ng_idx_free(out);
    return st;
}

/* ---- writer ------------------------------------------------------------------------------ */

ng_status ng_idx_write(const char *path, const ng_idx *idx) {
    unsigned char hdr[4 + 4 * NG_IDX_MAX_DIMS], *buf = NULL;
    uint32_t dims[NG_IDX_MAX_DIMS] = {0};
    size_t count, bytes, esz, hlen, off;
    ng_wfile w;
    int i, swap = host_is_little_endian();
    ng_status st = NG_OK;

    if (!path || !idx) return ng_error(NG_ERR_INVALID_ARG, "ng_idx_write: NULL path or idx");
    if (idx->ndims < 1 || idx->ndims > NG_IDX_MAX_DIMS)
        return ng_error(NG_ERR_INVALID_ARG, "%s: cannot write %d dimensions (want 1..%d)", path,
                        idx->ndims, NG_IDX_MAX_DIMS);
    for (i = 0; i < idx->ndims; i++) {
        if (idx->dims[i] <= 0)
            return ng_error(NG_ERR_INVALID_ARG, "%s: cannot write dimension %d = %d", path, i,
                            idx->dims[i]);
        dims[i] = (uint32_t)idx->dims[i];
    }
    st = check_shape(path, idx->dtype, idx->ndims, dims, &count, &bytes);
    if (st != NG_OK) return ng_error_wrap(NG_ERR_INVALID_ARG, "ng_idx_write: ");
    if (count != idx->count || !idx->data)
        return ng_error(NG_ERR_INVALID_ARG, "%s: idx count %zu does not match dims (%zu) or data is NULL",
                        path, idx->count, count);
    esz = ng_idx_dtype_size(idx->dtype);

    hdr[0] = hdr[1] = 0;
    hdr[2] = (unsigned char)idx->dtype;
    hdr[3] = (unsigned char)idx->ndims;
    for (i = 0; i < idx->ndims; i++) store_be32(hdr + 4 + 4 * i, dims[i]);
    hlen = 4 + 4 * (size_t)idx->ndims;

    buf = malloc(IDX_CHUNK);
    if (!buf) return ng_error(NG_ERR_OOM, "%s: out of memory while writing", path);
    /* atomic: path.tmp, fsync, rename; a failure leaves the old file at path untouched */
    st = ng_wfile_open(&w, path);
    if (st == NG_OK) st = ng_wfile_write(&w, hdr, hlen);
    for (off = 0; st == NG_OK && off < bytes;) {
        size_t n = bytes - off < IDX_CHUNK ? bytes - off : IDX_CHUNK; /* multiple of esz */
        memcpy(buf, (const unsigned char *)idx->data + off, n);
        if (swap) swap_elements(buf, n / esz, esz);
        st = ng_wfile_write(&w, buf, n);
        off += n;
    }
    if (st == NG_OK) st = ng_wfile_commit(&w);
    if (st != NG_OK) {
        ng_wfile_abort(&w);
        ng_error_wrap(st, "IDX file ");
    }
    free(buf);
    return st;
}
