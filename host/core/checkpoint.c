/* checkpoint.c: the NGCK checkpoint container (layout in natgrad/checkpoint.h).
 *
 * Must not: trust any header field before checking it, allocate from a count or size the file
 * could not hold, read past a buffer, accept a file whose length differs from what its header
 * implies, accept non-finite floats, or write a file the reader would refuse (the setters and
 * adders validate what the reader validates). Writing goes through ng_wfile, so a failed write
 * leaves the previous file intact. */
#include "natgrad/checkpoint.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "natgrad/file.h"

#define CK_MAGIC "NGCK"
#define CK_OLD_MAGIC "NGRBMCK1"
#define CK_FIXED 32u  /* magic, version, header_bytes, n_kv, n_tensors */
#define CK_MIN_KV 13u /* smallest kv entry: key_len, 1-byte key, type, f32 */
#define CK_MIN_TENSOR                                                                              \
    29u /* smallest tensor entry: name_len, 1-byte name, dtype, ndim, 1 dim, offset */

typedef struct ck_kv {
    char *key;
    ng_kv_type type;
    union {
        uint64_t u;
        int64_t i;
        float f;
        double d;
    } v;
    char *s;     /* NG_KV_STR: owned, NUL-terminated */
    size_t slen; /* NG_KV_STR: bytes without the NUL */
} ck_kv;

typedef struct ck_tensor {
    ng_ckpt_tensor t; /* t.name == name; t.data == own, or into the read payload, or NULL */
    char *name;
    void *own; /* copy made by ng_ckpt_add_tensor */
    ng_ckpt_fetch_fn fetch;
    void *user;
} ck_tensor;

struct ng_ckpt {
    char *path; /* "" for a new container */
    ck_kv *kv;
    int n_kv, cap_kv;
    ck_tensor **ts; /* individually allocated, so tensor pointers stay valid as tensors are added */
    int n_t, cap_t;
    void *payload; /* the payload read from the file (tensor data points into it) */
};

/* ---- small helpers ----------------------------------------------------------------------- */

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const unsigned char *p) {
    return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}
static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static void put64(unsigned char *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t crc_update(uint32_t crc, const void *p, uint64_t n) {
    const unsigned char *b = p;
    while (n) {
        uInt k = n > (uint64_t)UINT_MAX ? UINT_MAX : (uInt)n;
        crc = (uint32_t)crc32(crc, b, k);
        b += k;
        n -= k;
    }
    return crc;
}

static uint64_t align_up(uint64_t x) {
    return (x + (NG_CKPT_ALIGN - 1)) & ~(uint64_t)(NG_CKPT_ALIGN - 1);
}

static int name_char_ok(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == ':' || ch == '/' || ch == '-';
}

/* Index of the first byte of p[0..n) outside the name charset, or n when all are allowed. */
static size_t first_bad_char(const unsigned char *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (!name_char_ok(p[i])) return i;
    return n;
}

/* Printable rendering of untrusted bytes for a message: at most 64 source bytes, non-printable
 * bytes, quotes and backslashes escaped, "..." when cut. */
static const char *show(const unsigned char *p, size_t n, char *buf, size_t cap) {
    size_t i, o = 0;
    if (!cap) return "";
    for (i = 0; i < n && i < 64 && o + 5 < cap; i++) {
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    if (i < n && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o < cap ? o : cap - 1] = 0;
    return buf;
}

/* Validate a key or tensor name given as a C string; `kind` is "key" or "tensor name". */
static ng_status check_name(const char *who, const char *kind, const char *name) {
    char sb[300];
    size_t n, bad;
    if (!name) return ng_error(NG_ERR_INVALID_ARG, "%s: NULL %s", who, kind);
    n = strlen(name);
    if (n == 0 || n > NG_CKPT_MAX_NAME)
        return ng_error(NG_ERR_INVALID_ARG, "%s: %s \"%s\" has length %zu (want 1..%d)", who, kind,
                        show((const unsigned char *)name, n, sb, sizeof sb), n, NG_CKPT_MAX_NAME);
    bad = first_bad_char((const unsigned char *)name, n);
    if (bad < n)
        return ng_error(
            NG_ERR_INVALID_ARG,
            "%s: %s \"%s\" has the byte 0x%02x at position %zu; allowed: A-Z a-z 0-9 _ . : / -",
            who, kind, show((const unsigned char *)name, n, sb, sizeof sb),
            (unsigned)(unsigned char)name[bad], bad);
    return NG_OK;
}

/* Index of the first non-finite element of a float tensor (count when none); *nan says whether it
 * is a NaN (else an infinity). */
static uint64_t first_nonfinite(ng_dtype dt, const void *data, uint64_t count, int *nan) {
    const unsigned char *p = data;
    uint64_t i;
    *nan = 0;
    switch (dt) {
    case NG_F32:
        for (i = 0; i < count; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            if (!isfinite(f)) {
                *nan = isnan(f) != 0;
                return i;
            }
        }
        return count;
    case NG_F64:
        for (i = 0; i < count; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            if (!isfinite(d)) {
                *nan = isnan(d) != 0;
                return i;
            }
        }
        return count;
    case NG_F16:
    case NG_BF16: {
        /* all-ones exponent: infinity (zero mantissa) or NaN */
        uint16_t emask = dt == NG_F16 ? 0x7c00u : 0x7f80u, mmask = dt == NG_F16 ? 0x03ffu : 0x007fu;
        for (i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            if ((h & emask) == emask) {
                *nan = (h & mmask) != 0;
                return i;
            }
        }
        return count;
    }
    default: return count;
    }
}

/* "(784, 500)" */
static const char *shape_str(int ndim, const uint64_t *dims, char *buf, size_t cap) {
    size_t o = 0;
    int i;
    o += (size_t)snprintf(buf, cap, "(");
    for (i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %llu" : "%llu", (unsigned long long)dims[i]);
    if (o < cap) snprintf(buf + o, cap - o, ")");
    return buf;
}

/* Element count and byte size of a shape; 0 on success, else a static reason. */
static const char *shape_size(ng_dtype dt, int ndim, const uint64_t *dims, uint64_t *count,
                              uint64_t *bytes) {
    uint64_t c = 1, esz = ng_dtype_size(dt);
    int i;
    for (i = 0; i < ndim; i++) {
        if (dims[i] == 0) return "a dimension is 0";
        if (c > UINT64_MAX / dims[i]) return "the element count overflows 64 bits";
        c *= dims[i];
    }
    if (c > UINT64_MAX / esz) return "the byte size overflows 64 bits";
    if (c * esz > (uint64_t)SIZE_MAX) return "the byte size does not fit in memory";
    *count = c;
    *bytes = c * esz;
    return NULL;
}

static const char *cname(const ng_ckpt *c) {
    return c && c->path && c->path[0] ? c->path : "(unsaved)";
}

const char *ng_kv_type_name(ng_kv_type t) {
    switch (t) {
    case NG_KV_U64: return "u64";
    case NG_KV_I64: return "i64";
    case NG_KV_F32: return "f32";
    case NG_KV_F64: return "f64";
    case NG_KV_STR: return "str";
    default: return "?";
    }
}

/* ---- container --------------------------------------------------------------------------- */

static void tensor_free(ck_tensor *t) {
    if (!t) return;
    free(t->name);
    free(t->own);
    free(t);
}

void ng_ckpt_free(ng_ckpt *c) {
    int i;
    if (!c) return;
    for (i = 0; i < c->n_kv; i++) {
        free(c->kv[i].key);
        free(c->kv[i].s);
    }
    free(c->kv);
    for (i = 0; i < c->n_t; i++)
        tensor_free(c->ts[i]);
    free(c->ts);
    free(c->payload);
    free(c->path);
    free(c);
}

ng_status ng_ckpt_new(ng_ckpt **out) {
    ng_ckpt *c;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_new: NULL out");
    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c) c->path = calloc(1, 1);
    if (!c || !c->path) {
        free(c);
        return ng_error(NG_ERR_OOM, "ng_ckpt_new: out of memory");
    }
    *out = c;
    return NG_OK;
}

const char *ng_ckpt_path(const ng_ckpt *c) { return c && c->path ? c->path : ""; }

ng_status ng_ckpt_set_path(ng_ckpt *c, const char *path) {
    char *p = strdup(path ? path : "");
    if (!p) return ng_error(NG_ERR_OOM, "checkpoint: out of memory");
    free(c->path);
    c->path = p;
    return NG_OK;
}
int ng_ckpt_n_kv(const ng_ckpt *c) { return c ? c->n_kv : 0; }
int ng_ckpt_n_tensors(const ng_ckpt *c) { return c ? c->n_t : 0; }

static ck_kv *find_kv(const ng_ckpt *c, const char *key) {
    int i;
    if (!c || !key) return NULL;
    for (i = 0; i < c->n_kv; i++)
        if (strcmp(c->kv[i].key, key) == 0) return &c->kv[i];
    return NULL;
}

static ck_tensor *find_tensor(const ng_ckpt *c, const char *name) {
    int i;
    if (!c || !name) return NULL;
    for (i = 0; i < c->n_t; i++)
        if (strcmp(c->ts[i]->name, name) == 0) return c->ts[i];
    return NULL;
}

int ng_ckpt_has(const ng_ckpt *c, const char *key) { return find_kv(c, key) != NULL; }

const ng_ckpt_tensor *ng_ckpt_tensor_at(const ng_ckpt *c, int i) {
    return c && i >= 0 && i < c->n_t ? &c->ts[i]->t : NULL;
}

const ng_ckpt_tensor *ng_ckpt_find(const ng_ckpt *c, const char *name) {
    ck_tensor *t = find_tensor(c, name);
    return t ? &t->t : NULL;
}

const char *ng_ckpt_kv_at(const ng_ckpt *c, int i, ng_kv_type *type) {
    if (!c || i < 0 || i >= c->n_kv) return NULL;
    if (type) *type = c->kv[i].type;
    return c->kv[i].key;
}

const char *ng_ckpt_kv_format(const ng_ckpt *c, int i, char *buf, size_t cap) {
    const ck_kv *e;
    if (!buf || !cap) return "";
    buf[0] = 0;
    if (!c || i < 0 || i >= c->n_kv) return buf;
    e = &c->kv[i];
    switch (e->type) {
    case NG_KV_U64: snprintf(buf, cap, "%llu", (unsigned long long)e->v.u); break;
    case NG_KV_I64: snprintf(buf, cap, "%lld", (long long)e->v.i); break;
    case NG_KV_F32: snprintf(buf, cap, "%.9g", (double)e->v.f); break;
    case NG_KV_F64: snprintf(buf, cap, "%.17g", e->v.d); break;
    case NG_KV_STR: {
        size_t o = 0, k;
        if (cap < 3) return buf;
        buf[o++] = '"';
        for (k = 0; k < e->slen && o + 6 < cap; k++) {
            unsigned char ch = (unsigned char)e->s[k];
            if (ch == '"' || ch == '\\') {
                buf[o++] = '\\';
                buf[o++] = (char)ch;
            } else if (ch < 0x20 || ch == 0x7f) {
                o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
            } else {
                buf[o++] = (char)ch;
            }
        }
        if (k < e->slen && o + 4 < cap) {
            memcpy(buf + o, "...", 3);
            o += 3;
        }
        if (o + 1 < cap) buf[o++] = '"';
        buf[o] = 0;
        break;
    }
    }
    return buf;
}

/* The entry for key, added at the end when new (its old string value, if any, freed). */
static ng_status kv_slot(ng_ckpt *c, const char *key, ck_kv **out) {
    ck_kv *e;
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_set: NULL checkpoint");
    NG_TRY(check_name("ng_ckpt_set", "key", key));
    e = find_kv(c, key);
    if (e) {
        free(e->s);
        e->s = NULL;
        e->slen = 0;
        *out = e;
        return NG_OK;
    }
    if (c->n_kv == c->cap_kv) {
        int ncap = c->cap_kv ? c->cap_kv * 2 : 16;
        ck_kv *nk;
        if (c->cap_kv > INT_MAX / 2)
            return ng_error(NG_ERR_OOM, "ng_ckpt_set(%s): too many fields", key);
        nk = realloc(c->kv, (size_t)ncap * sizeof *nk);
        if (!nk) return ng_error(NG_ERR_OOM, "ng_ckpt_set(%s): out of memory", key);
        c->kv = nk;
        c->cap_kv = ncap;
    }
    e = &c->kv[c->n_kv];
    memset(e, 0, sizeof *e);
    e->key = strdup(key);
    if (!e->key) return ng_error(NG_ERR_OOM, "ng_ckpt_set(%s): out of memory", key);
    c->n_kv++;
    *out = e;
    return NG_OK;
}

ng_status ng_ckpt_set_u64(ng_ckpt *c, const char *key, uint64_t v) {
    ck_kv *e;
    NG_TRY(kv_slot(c, key, &e));
    e->type = NG_KV_U64;
    e->v.u = v;
    return NG_OK;
}

ng_status ng_ckpt_set_i64(ng_ckpt *c, const char *key, int64_t v) {
    ck_kv *e;
    NG_TRY(kv_slot(c, key, &e));
    e->type = NG_KV_I64;
    e->v.i = v;
    return NG_OK;
}

ng_status ng_ckpt_set_f32(ng_ckpt *c, const char *key, float v) {
    ck_kv *e;
    if (!isfinite(v))
        return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_set_f32(%s): value %g is not finite",
                        key ? key : "(null)", (double)v);
    NG_TRY(kv_slot(c, key, &e));
    e->type = NG_KV_F32;
    e->v.f = v;
    return NG_OK;
}

ng_status ng_ckpt_set_f64(ng_ckpt *c, const char *key, double v) {
    ck_kv *e;
    if (!isfinite(v))
        return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_set_f64(%s): value %g is not finite",
                        key ? key : "(null)", v);
    NG_TRY(kv_slot(c, key, &e));
    e->type = NG_KV_F64;
    e->v.d = v;
    return NG_OK;
}

ng_status ng_ckpt_set_str(ng_ckpt *c, const char *key, const char *v) {
    ck_kv *e;
    char *s;
    size_t n;
    if (!v)
        return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_set_str(%s): NULL value",
                        key ? key : "(null)");
    n = strlen(v);
    if ((uint64_t)n > UINT32_MAX)
        return ng_error(NG_ERR_INVALID_ARG,
                        "ng_ckpt_set_str(%s): string of %zu bytes (limit 2^32-1)",
                        key ? key : "(null)", n);
    s = malloc(n + 1);
    if (!s) return ng_error(NG_ERR_OOM, "ng_ckpt_set_str(%s): out of memory", key ? key : "(null)");
    memcpy(s, v, n + 1);
    {
        ng_status st = kv_slot(c, key, &e);
        if (st != NG_OK) {
            free(s);
            return st;
        }
    }
    e->type = NG_KV_STR;
    e->s = s;
    e->slen = n;
    return NG_OK;
}

static ng_status add_common(ng_ckpt *c, const char *who, const char *name, ng_dtype dtype, int ndim,
                            const uint64_t *dims, ck_tensor **out) {
    char sb[128];
    uint64_t count = 0, bytes = 0;
    const char *why;
    ck_tensor *t;
    int i;
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "%s: NULL checkpoint", who);
    NG_TRY(check_name(who, "tensor name", name));
    if (find_tensor(c, name))
        return ng_error(NG_ERR_INVALID_ARG, "%s: tensor %s was already added", who, name);
    if ((int)dtype < 0 || dtype >= NG_DTYPE_COUNT)
        return ng_error(NG_ERR_INVALID_ARG, "%s: tensor %s: unknown dtype code %d", who, name,
                        (int)dtype);
    if (ndim < 1 || ndim > NG_CKPT_MAX_NDIM)
        return ng_error(NG_ERR_INVALID_ARG, "%s: tensor %s: ndim = %d (want 1..%d)", who, name,
                        ndim, NG_CKPT_MAX_NDIM);
    if (!dims) return ng_error(NG_ERR_INVALID_ARG, "%s: tensor %s: NULL dims", who, name);
    why = shape_size(dtype, ndim, dims, &count, &bytes);
    if (why)
        return ng_error(NG_ERR_INVALID_ARG, "%s: tensor %s: shape %s: %s", who, name,
                        shape_str(ndim, dims, sb, sizeof sb), why);
    if (c->n_t == c->cap_t) {
        int ncap = c->cap_t ? c->cap_t * 2 : 16;
        ck_tensor **nt;
        if (c->cap_t > INT_MAX / 2) return ng_error(NG_ERR_OOM, "%s: too many tensors", who);
        nt = realloc(c->ts, (size_t)ncap * sizeof *nt);
        if (!nt) return ng_error(NG_ERR_OOM, "%s: out of memory", who);
        c->ts = nt;
        c->cap_t = ncap;
    }
    t = calloc(1, sizeof *t);
    if (t) t->name = strdup(name);
    if (!t || !t->name) {
        tensor_free(t);
        return ng_error(NG_ERR_OOM, "%s: tensor %s: out of memory", who, name);
    }
    t->t.name = t->name;
    t->t.dtype = dtype;
    t->t.ndim = ndim;
    for (i = 0; i < ndim; i++)
        t->t.dims[i] = dims[i];
    t->t.count = count;
    t->t.bytes = (size_t)bytes;
    *out = t;
    return NG_OK;
}

ng_status ng_ckpt_add_tensor(ng_ckpt *c, const char *name, ng_dtype dtype, int ndim,
                             const uint64_t *dims, const void *host_data) {
    ck_tensor *t;
    uint64_t bad;
    int nan;
    NG_TRY(add_common(c, "ng_ckpt_add_tensor", name, dtype, ndim, dims, &t));
    if (!host_data) {
        tensor_free(t);
        return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_add_tensor: tensor %s: NULL data", name);
    }
    bad = first_nonfinite(dtype, host_data, t->t.count, &nan);
    if (bad < t->t.count) {
        ng_status e =
            ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_add_tensor: tensor %s: element %llu is %s", name,
                     (unsigned long long)bad, nan ? "NaN" : "infinite");
        tensor_free(t);
        return e;
    }
    t->own = malloc(t->t.bytes ? t->t.bytes : 1);
    if (!t->own) {
        size_t b = t->t.bytes;
        tensor_free(t);
        return ng_error(NG_ERR_OOM, "ng_ckpt_add_tensor: tensor %s: cannot allocate %zu bytes",
                        name, b);
    }
    memcpy(t->own, host_data, t->t.bytes);
    t->t.data = t->own;
    c->ts[c->n_t++] = t;
    return NG_OK;
}

ng_status ng_ckpt_add_tensor_cb(ng_ckpt *c, const char *name, ng_dtype dtype, int ndim,
                                const uint64_t *dims, ng_ckpt_fetch_fn fetch, void *user) {
    ck_tensor *t;
    NG_TRY(add_common(c, "ng_ckpt_add_tensor_cb", name, dtype, ndim, dims, &t));
    if (!fetch) {
        tensor_free(t);
        return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_add_tensor_cb: tensor %s: NULL fetch callback",
                        name);
    }
    t->fetch = fetch;
    t->user = user;
    c->ts[c->n_t++] = t;
    return NG_OK;
}

/* ---- lookups ----------------------------------------------------------------------------- */

static ng_status lookup(const ng_ckpt *c, const char *key, ng_kv_type want, const char *want_name,
                        const ck_kv **out) {
    const ck_kv *e;
    if (!c || !key) return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_get: NULL checkpoint or key");
    e = find_kv(c, key);
    if (!e) return ng_error(NG_ERR_FORMAT, "checkpoint %s: field %s is missing", cname(c), key);
    if (want && e->type != want)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field %s is %s, expected %s", cname(c), key,
                        ng_kv_type_name(e->type), want_name);
    *out = e;
    return NG_OK;
}

ng_status ng_ckpt_get_u64(const ng_ckpt *c, const char *key, uint64_t *v) {
    const ck_kv *e;
    NG_TRY(lookup(c, key, NG_KV_U64, "u64", &e));
    if (v) *v = e->v.u;
    return NG_OK;
}

ng_status ng_ckpt_get_i64(const ng_ckpt *c, const char *key, int64_t *v) {
    const ck_kv *e;
    NG_TRY(lookup(c, key, NG_KV_I64, "i64", &e));
    if (v) *v = e->v.i;
    return NG_OK;
}

ng_status ng_ckpt_get_f32(const ng_ckpt *c, const char *key, float *v) {
    const ck_kv *e;
    NG_TRY(lookup(c, key, NG_KV_F32, "f32", &e));
    if (v) *v = e->v.f;
    return NG_OK;
}

ng_status ng_ckpt_get_f64(const ng_ckpt *c, const char *key, double *v) {
    const ck_kv *e;
    NG_TRY(lookup(c, key, NG_KV_F64, "f64", &e));
    if (v) *v = e->v.d;
    return NG_OK;
}

ng_status ng_ckpt_get_str(const ng_ckpt *c, const char *key, const char **v) {
    const ck_kv *e;
    NG_TRY(lookup(c, key, NG_KV_STR, "str", &e));
    if (v) *v = e->s;
    return NG_OK;
}

ng_status ng_ckpt_get_int(const ng_ckpt *c, const char *key, int64_t lo, int64_t hi, int64_t *v) {
    const ck_kv *e;
    NG_TRY(lookup(c, key, 0, NULL, &e));
    if (e->type == NG_KV_U64) {
        if (e->v.u > (uint64_t)INT64_MAX || (int64_t)e->v.u < lo || (int64_t)e->v.u > hi)
            return ng_error(NG_ERR_FORMAT,
                            "checkpoint %s: field %s = %llu is out of range [%lld, %lld]", cname(c),
                            key, (unsigned long long)e->v.u, (long long)lo, (long long)hi);
        if (v) *v = (int64_t)e->v.u;
        return NG_OK;
    }
    if (e->type == NG_KV_I64) {
        if (e->v.i < lo || e->v.i > hi)
            return ng_error(NG_ERR_FORMAT,
                            "checkpoint %s: field %s = %lld is out of range [%lld, %lld]", cname(c),
                            key, (long long)e->v.i, (long long)lo, (long long)hi);
        if (v) *v = e->v.i;
        return NG_OK;
    }
    return ng_error(NG_ERR_FORMAT,
                    "checkpoint %s: field %s is %s, expected an integer (u64 or i64)", cname(c),
                    key, ng_kv_type_name(e->type));
}

ng_status ng_ckpt_get_float(const ng_ckpt *c, const char *key, double lo, double hi, float *v) {
    const ck_kv *e;
    double x;
    NG_TRY(lookup(c, key, NG_KV_F32, "f32", &e));
    x = (double)e->v.f;
    if (!isfinite(x) || !(x >= lo && x <= hi))
        return ng_error(NG_ERR_FORMAT,
                        "checkpoint %s: field %s = %.9g is out of range [%.9g, %.9g]", cname(c),
                        key, x, lo, hi);
    if (v) *v = e->v.f;
    return NG_OK;
}

ng_status ng_ckpt_get_enum(const ng_ckpt *c, const char *key, const char *const *names, int n_names,
                           int *v) {
    const ck_kv *e;
    char list[512], sb[300];
    size_t o = 0;
    int i;
    if (!names || n_names < 1)
        return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_get_enum(%s): no names given",
                        key ? key : "(null)");
    NG_TRY(lookup(c, key, NG_KV_STR, "str", &e));
    for (i = 0; i < n_names; i++) {
        if (names[i] && strcmp(names[i], e->s) == 0) {
            if (v) *v = i;
            return NG_OK;
        }
    }
    list[0] = 0;
    for (i = 0; i < n_names && o + 1 < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "",
                              names[i] ? names[i] : "(null)");
    return ng_error(NG_ERR_FORMAT, "checkpoint %s: field %s = \"%s\" is not one of: %s", cname(c),
                    key, show((const unsigned char *)e->s, e->slen, sb, sizeof sb), list);
}

ng_status ng_ckpt_expect(const ng_ckpt *c, const char *name, ng_dtype dtype, int ndim,
                         const uint64_t *dims, const void **data) {
    const ck_tensor *t;
    char want[128], have[128];
    int i, same;
    if (data) *data = NULL;
    if (!c || !name) return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_expect: NULL checkpoint or name");
    if (ndim < 1 || ndim > NG_CKPT_MAX_NDIM || !dims)
        return ng_error(NG_ERR_INVALID_ARG,
                        "ng_ckpt_expect(%s): ndim = %d (want 1..%d) or NULL dims", name, ndim,
                        NG_CKPT_MAX_NDIM);
    t = find_tensor(c, name);
    if (!t) return ng_error(NG_ERR_FORMAT, "checkpoint %s: tensor %s is missing", cname(c), name);
    if (t->t.dtype != dtype)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: tensor %s has dtype %s, expected %s",
                        cname(c), name, ng_dtype_name(t->t.dtype), ng_dtype_name(dtype));
    same = t->t.ndim == ndim;
    for (i = 0; same && i < ndim; i++)
        same = t->t.dims[i] == dims[i];
    if (!same)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: tensor %s has shape %s, expected %s",
                        cname(c), name, shape_str(t->t.ndim, t->t.dims, have, sizeof have),
                        shape_str(ndim, dims, want, sizeof want));
    if (!t->t.data)
        return ng_error(NG_ERR_INVALID_ARG, "checkpoint %s: tensor %s has no data here (%s)",
                        cname(c), name, t->fetch ? "added by callback" : "read header-only");
    if (data) *data = t->t.data;
    return NG_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

static const unsigned char zeros[NG_CKPT_ALIGN];

ng_status ng_ckpt_write(const ng_ckpt *c, const char *path) {
    uint64_t hb = CK_FIXED, pstart, *offs = NULL, end = 0;
    unsigned char *hdr = NULL, *p, *stage = NULL, crcb[4];
    size_t stage_bytes = 0, hlen;
    uint32_t pcrc;
    ng_wfile w;
    ng_status st = NG_OK;
    int i, named = 0; /* named: the message already starts "checkpoint <path>: " */

    if (!c || !path) return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_write: NULL checkpoint or path");
    if (!host_is_little_endian())
        return ng_error(NG_ERR_UNSUPPORTED, "checkpoint %s: writing needs a little-endian host",
                        path);
    /* sizes: the header, then the tensor offsets (each at the next multiple of 64) */
    for (i = 0; i < c->n_kv; i++) {
        const ck_kv *e = &c->kv[i];
        hb += 4 + strlen(e->key) + 4;
        hb += e->type == NG_KV_F32 ? 4 : e->type == NG_KV_STR ? 4 + (uint64_t)e->slen : 8;
    }
    offs = malloc(((size_t)c->n_t + 1) * sizeof *offs);
    if (!offs) return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", path);
    for (i = 0; i < c->n_t; i++) {
        const ck_tensor *t = c->ts[i];
        hb += 4 + strlen(t->name) + 4 + 4 + 8 * (uint64_t)t->t.ndim + 8;
        offs[i] = i ? align_up(end) : 0;
        if (offs[i] < end || t->t.bytes > UINT64_MAX - offs[i]) {
            free(offs);
            return ng_error(NG_ERR_INVALID_ARG, "checkpoint %s: the payload size overflows", path);
        }
        end = offs[i] + t->t.bytes;
        if (!t->t.data && !t->fetch) {
            free(offs);
            return ng_error(
                NG_ERR_INVALID_ARG,
                "checkpoint %s: tensor %s has no data (its checkpoint was read header-only)", path,
                t->name);
        }
        if (!t->t.data && t->t.bytes > stage_bytes) stage_bytes = t->t.bytes;
    }
    pstart = align_up(hb + 4);
    if (pstart > (uint64_t)SIZE_MAX) {
        free(offs);
        return ng_error(NG_ERR_INVALID_ARG, "checkpoint %s: header too large", path);
    }
    hlen = (size_t)pstart;
    hdr = calloc(1, hlen);
    if (stage_bytes) stage = malloc(stage_bytes);
    if (!hdr || (stage_bytes && !stage)) {
        free(offs);
        free(hdr);
        free(stage);
        return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory (header %zu bytes, staging %zu)",
                        path, hlen, stage_bytes);
    }

    /* the header */
    memcpy(hdr, CK_MAGIC, 4);
    put32(hdr + 4, NG_CKPT_VERSION);
    put64(hdr + 8, hb);
    put64(hdr + 16, (uint64_t)c->n_kv);
    put64(hdr + 24, (uint64_t)c->n_t);
    p = hdr + CK_FIXED;
    for (i = 0; i < c->n_kv; i++) {
        const ck_kv *e = &c->kv[i];
        size_t kl = strlen(e->key);
        put32(p, (uint32_t)kl);
        memcpy(p + 4, e->key, kl);
        p += 4 + kl;
        put32(p, (uint32_t)e->type);
        p += 4;
        switch (e->type) {
        case NG_KV_U64:
            put64(p, e->v.u);
            p += 8;
            break;
        case NG_KV_I64:
            put64(p, (uint64_t)e->v.i);
            p += 8;
            break;
        case NG_KV_F32: {
            uint32_t b;
            memcpy(&b, &e->v.f, 4);
            put32(p, b);
            p += 4;
            break;
        }
        case NG_KV_F64: {
            uint64_t b;
            memcpy(&b, &e->v.d, 8);
            put64(p, b);
            p += 8;
            break;
        }
        case NG_KV_STR:
            put32(p, (uint32_t)e->slen);
            if (e->slen) memcpy(p + 4, e->s, e->slen);
            p += 4 + e->slen;
            break;
        }
    }
    for (i = 0; i < c->n_t; i++) {
        const ck_tensor *t = c->ts[i];
        size_t nl = strlen(t->name);
        int k;
        put32(p, (uint32_t)nl);
        memcpy(p + 4, t->name, nl);
        p += 4 + nl;
        put32(p, (uint32_t)t->t.dtype);
        put32(p + 4, (uint32_t)t->t.ndim);
        p += 8;
        for (k = 0; k < t->t.ndim; k++, p += 8)
            put64(p, t->t.dims[k]);
        put64(p, offs[i]);
        p += 8;
    }
    put32(hdr + hb, crc_update((uint32_t)crc32(0L, Z_NULL, 0), hdr, hb));

    /* header, padding, the tensors through the staging buffer, payload CRC; then commit */
    st = ng_wfile_open(&w, path);
    if (st == NG_OK) st = ng_wfile_write(&w, hdr, hlen);
    pcrc = (uint32_t)crc32(0L, Z_NULL, 0);
    for (i = 0; st == NG_OK && i < c->n_t; i++) {
        const ck_tensor *t = c->ts[i];
        const void *src = t->t.data;
        if (i && offs[i] > offs[i - 1] + c->ts[i - 1]->t.bytes) {
            size_t gap = (size_t)(offs[i] - offs[i - 1] - c->ts[i - 1]->t.bytes);
            st = ng_wfile_write(&w, zeros, gap);
            pcrc = crc_update(pcrc, zeros, gap);
            if (st != NG_OK) break;
        }
        if (!src) {
            uint64_t bad;
            int nan;
            st = t->fetch(t->user, stage, t->t.bytes);
            if (st != NG_OK) {
                ng_error_wrap(st, "checkpoint %s: fetching tensor %s: ", path, t->name);
                named = 1;
                break;
            }
            bad = first_nonfinite(t->t.dtype, stage, t->t.count, &nan);
            if (bad < t->t.count) {
                st = ng_error(NG_ERR_NUMERIC, "checkpoint %s: tensor %s: element %llu is %s", path,
                              t->name, (unsigned long long)bad, nan ? "NaN" : "infinite");
                named = 1;
                break;
            }
            src = stage;
        }
        st = ng_wfile_write(&w, src, t->t.bytes);
        pcrc = crc_update(pcrc, src, t->t.bytes);
    }
    if (st == NG_OK) {
        put32(crcb, pcrc);
        st = ng_wfile_write(&w, crcb, 4);
    }
    if (st == NG_OK) st = ng_wfile_commit(&w);
    if (st != NG_OK) {
        ng_wfile_abort(&w);
        /* the wfile's messages start with the path */
        if (!named) ng_error_wrap(st, "checkpoint ");
    }
    free(offs);
    free(hdr);
    free(stage);
    return st;
}

/* ---- reader ------------------------------------------------------------------------------ */

typedef struct ck_reader {
    const char *path;
    int fd;
    uint64_t size;
    ng_ckpt *c;
} ck_reader;

#define FERR(...) ck_ferr(r, __VA_ARGS__)
static ng_status ck_ferr(const ck_reader *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static ng_status ck_ferr(const ck_reader *r, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ng_error(NG_ERR_FORMAT, "checkpoint %s: %s", r->path, msg);
}

static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that occurs twice among names[0..n) (sorted in place), or NULL. */
static const char *find_duplicate(const char **names, size_t n) {
    size_t i;
    if (n < 2) return NULL;
    qsort(names, n, sizeof *names, cmp_strp);
    for (i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* A key or tensor name of length len at h[p..): validated and copied into *out. `what` is
 * "kv entry" or "tensor entry", idx its index. */
static ng_status parse_name(const ck_reader *r, const unsigned char *h, uint64_t hb, uint64_t *p,
                            const char *what, const char *kind, uint64_t idx, char **out) {
    char sb[300];
    uint64_t len, bad;
    if (hb - *p < 4)
        return FERR("%s %llu: its %s length runs past the end of the header (header_bytes = %llu)",
                    what, (unsigned long long)idx, kind, (unsigned long long)hb);
    len = le32(h + *p);
    if (len == 0 || len > NG_CKPT_MAX_NAME)
        return FERR("%s %llu: %s length %llu (want 1..%d)", what, (unsigned long long)idx, kind,
                    (unsigned long long)len, NG_CKPT_MAX_NAME);
    if (hb - *p - 4 < len)
        return FERR(
            "%s %llu: %s of %llu bytes runs past the end of the header (header_bytes = %llu)", what,
            (unsigned long long)idx, kind, (unsigned long long)len, (unsigned long long)hb);
    bad = first_bad_char(h + *p + 4, (size_t)len);
    if (bad < len)
        return FERR(
            "%s %llu: %s \"%s\" has the byte 0x%02x at position %llu, not an allowed character "
            "(A-Z a-z 0-9 _ . : / -)",
            what, (unsigned long long)idx, kind, show(h + *p + 4, (size_t)len, sb, sizeof sb),
            h[*p + 4 + bad], (unsigned long long)bad);
    *out = malloc((size_t)len + 1);
    if (!*out) return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", r->path);
    memcpy(*out, h + *p + 4, (size_t)len);
    (*out)[len] = 0;
    *p += 4 + len;
    return NG_OK;
}

static ng_status parse_kv(ck_reader *r, const unsigned char *h, uint64_t hb, uint64_t *p,
                          uint64_t idx, ck_kv *e) {
    uint32_t type;
    uint64_t need;
    NG_TRY(parse_name(r, h, hb, p, "kv entry", "key", idx, &e->key));
    if (hb - *p < 4)
        return FERR("field %s: its type runs past the end of the header (header_bytes = %llu)",
                    e->key, (unsigned long long)hb);
    type = le32(h + *p);
    *p += 4;
    switch (type) {
    case NG_KV_U64:
    case NG_KV_I64:
    case NG_KV_F64: need = 8; break;
    case NG_KV_F32:
    case NG_KV_STR: need = 4; break;
    default:
        return FERR("field %s: unknown type code %u (want 1 u64, 2 i64, 3 f32, 4 f64, 5 str)",
                    e->key, type);
    }
    if (hb - *p < need)
        return FERR("field %s: its %s value runs past the end of the header (header_bytes = %llu)",
                    e->key, ng_kv_type_name((ng_kv_type)type), (unsigned long long)hb);
    e->type = (ng_kv_type)type;
    switch (type) {
    case NG_KV_U64: e->v.u = le64(h + *p); break;
    case NG_KV_I64: e->v.i = (int64_t)le64(h + *p); break;
    case NG_KV_F64: {
        uint64_t b = le64(h + *p);
        memcpy(&e->v.d, &b, 8);
        if (!isfinite(e->v.d))
            return FERR("field %s = %s: an f64 field must be finite", e->key,
                        isnan(e->v.d) ? "NaN" : "infinity");
        break;
    }
    case NG_KV_F32: {
        uint32_t b = le32(h + *p);
        memcpy(&e->v.f, &b, 4);
        if (!isfinite(e->v.f))
            return FERR("field %s = %s: an f32 field must be finite", e->key,
                        isnan(e->v.f) ? "NaN" : "infinity");
        break;
    }
    case NG_KV_STR: {
        uint64_t len = le32(h + *p);
        if (hb - *p - 4 < len)
            return FERR("field %s: string length %llu runs past the end of the header "
                        "(%llu bytes left of header_bytes = %llu)",
                        e->key, (unsigned long long)len, (unsigned long long)(hb - *p - 4),
                        (unsigned long long)hb);
        if (memchr(h + *p + 4, 0, (size_t)len))
            return FERR("field %s: the string contains a NUL byte", e->key);
        e->s = malloc((size_t)len + 1);
        if (!e->s) return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", r->path);
        memcpy(e->s, h + *p + 4, (size_t)len);
        e->s[len] = 0;
        e->slen = (size_t)len;
        need = 4 + len;
        break;
    }
    }
    *p += need;
    return NG_OK;
}

/* One tensor entry; *end is updated to the end of this tensor's bytes in the payload. prev names
 * the previous tensor (NULL for the first). */
static ng_status parse_tensor(ck_reader *r, const unsigned char *h, uint64_t hb, uint64_t *p,
                              uint64_t idx, const char *prev, uint64_t payload_len, uint64_t *end,
                              ck_tensor *t) {
    char sb[128];
    uint32_t dtype, ndim;
    uint64_t off, expect, count = 0, bytes = 0;
    const char *why;
    uint32_t k;
    NG_TRY(parse_name(r, h, hb, p, "tensor entry", "tensor name", idx, &t->name));
    t->t.name = t->name;
    if (hb - *p < 8)
        return FERR(
            "tensor %s: its dtype and ndim run past the end of the header (header_bytes = %llu)",
            t->name, (unsigned long long)hb);
    dtype = le32(h + *p);
    ndim = le32(h + *p + 4);
    *p += 8;
    if (dtype >= (uint32_t)NG_DTYPE_COUNT)
        return FERR("tensor %s: unknown dtype code %u (want 0 f32, 1 f64, 2 f16, 3 bf16)", t->name,
                    dtype);
    if (ndim < 1 || ndim > NG_CKPT_MAX_NDIM)
        return FERR("tensor %s: ndim = %u (want 1..%d)", t->name, ndim, NG_CKPT_MAX_NDIM);
    if (hb - *p < 8 * (uint64_t)ndim + 8)
        return FERR(
            "tensor %s: its dims and offset run past the end of the header (header_bytes = %llu)",
            t->name, (unsigned long long)hb);
    t->t.dtype = (ng_dtype)dtype;
    t->t.ndim = (int)ndim;
    for (k = 0; k < ndim; k++) {
        t->t.dims[k] = le64(h + *p + 8 * k);
        if (t->t.dims[k] == 0)
            return FERR("tensor %s: dims[%u] = 0 (every dimension must be at least 1)", t->name, k);
    }
    *p += 8 * (uint64_t)ndim;
    off = le64(h + *p);
    *p += 8;
    why = shape_size(t->t.dtype, t->t.ndim, t->t.dims, &count, &bytes);
    if (why)
        return FERR("tensor %s: dims %s: %s", t->name,
                    shape_str(t->t.ndim, t->t.dims, sb, sizeof sb), why);
    t->t.count = count;
    t->t.bytes = (size_t)bytes;
    expect = prev ? align_up(*end) : 0;
    if (off % NG_CKPT_ALIGN)
        return FERR("tensor %s: offset %llu is not a multiple of %d", t->name,
                    (unsigned long long)off, NG_CKPT_ALIGN);
    if (!prev && off != 0)
        return FERR("tensor %s: offset %llu, but the first tensor starts at offset 0", t->name,
                    (unsigned long long)off);
    if (prev && off < *end)
        return FERR("tensor %s: offset %llu overlaps tensor %s, which ends at %llu", t->name,
                    (unsigned long long)off, prev, (unsigned long long)*end);
    if (off > payload_len || bytes > payload_len - off)
        return FERR("tensor %s: %llu bytes at offset %llu lie outside the payload of %llu bytes "
                    "(file truncated?)",
                    t->name, (unsigned long long)bytes, (unsigned long long)off,
                    (unsigned long long)payload_len);
    if (off != expect)
        return FERR(
            "tensor %s: offset %llu leaves a gap after tensor %s (expected %llu: tensors are "
            "consecutive)",
            t->name, (unsigned long long)off, prev, (unsigned long long)expect);
    *end = off + bytes;
    return NG_OK;
}

ng_status ng_ckpt_read(const char *path, int flags, ng_ckpt **out) {
    ck_reader rd, *r = &rd;
    unsigned char fixed[CK_FIXED], *h = NULL, pad[NG_CKPT_ALIGN], crcb[4];
    uint64_t version, hb, n_kv, n_t, rem, pstart, payload_len, p, end = 0, i;
    uint32_t crc, stored;
    const char **names = NULL, *dup;
    ng_ckpt *c = NULL;
    ng_status st;

    if (out) *out = NULL;
    if (!path || !out) return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_read: NULL path or out");
    if (flags != NG_CKPT_READ_ALL && flags != NG_CKPT_HEADER_ONLY)
        return ng_error(NG_ERR_INVALID_ARG, "ng_ckpt_read(%s): unknown flags %d", path, flags);
    if (!host_is_little_endian())
        return ng_error(NG_ERR_UNSUPPORTED, "checkpoint %s: reading needs a little-endian host",
                        path);
    memset(r, 0, sizeof *r);
    r->path = path;
    NG_TRY(ng_file_open_read(path, "checkpoint", &r->fd, &r->size));

    /* the fixed part: magic, version, header_bytes and the counts, each checked before use */
    if (r->size == 0) {
        st = FERR("empty file");
        goto fail;
    }
    memset(fixed, 0, sizeof fixed);
    st = ng_file_pread_all(r->fd, "checkpoint", path, fixed,
                           r->size < CK_FIXED ? (size_t)r->size : CK_FIXED, 0);
    if (st != NG_OK) goto fail;
    if (r->size >= 8 && memcmp(fixed, CK_OLD_MAGIC, 8) == 0) {
        st = FERR("magic NGRBMCK1: this is the previous RBM checkpoint format (version 1), which "
                  "this reader does not load; convert it to the NGCK format first");
        goto fail;
    }
    if (r->size < 4 || memcmp(fixed, CK_MAGIC, 4) != 0) {
        char sb[64];
        st = FERR("bad magic \"%s\": not a natgrad checkpoint (want \"NGCK\")",
                  show(fixed, r->size < 4 ? (size_t)r->size : 4, sb, sizeof sb));
        goto fail;
    }
    if (r->size < CK_FIXED) {
        st = FERR("truncated: %llu bytes, the fixed header alone needs %u",
                  (unsigned long long)r->size, CK_FIXED);
        goto fail;
    }
    version = le32(fixed + 4);
    hb = le64(fixed + 8);
    n_kv = le64(fixed + 16);
    n_t = le64(fixed + 24);
    if (version != NG_CKPT_VERSION) {
        st = FERR("version %llu is not supported (this build reads version %u)",
                  (unsigned long long)version, NG_CKPT_VERSION);
        goto fail;
    }
    if (hb < CK_FIXED) {
        st = FERR("header_bytes = %llu is smaller than the %u-byte fixed header",
                  (unsigned long long)hb, CK_FIXED);
        goto fail;
    }
    if (hb > r->size - 4) { /* size >= 32 here */
        st = FERR("header_bytes = %llu, but the file has only %llu bytes", (unsigned long long)hb,
                  (unsigned long long)r->size);
        goto fail;
    }
    /* hb < size <= 2^63 (an off_t), so align_up cannot overflow */
    if (align_up(hb + 4) + 4 > r->size) {
        st =
            FERR("truncated: header_bytes = %llu needs a file of at least %llu bytes, this one has "
                 "%llu",
                 (unsigned long long)hb, (unsigned long long)(align_up(hb + 4) + 4),
                 (unsigned long long)r->size);
        goto fail;
    }
    rem = hb - CK_FIXED;
    if (n_kv > rem / CK_MIN_KV || n_kv > (uint64_t)INT_MAX) {
        st = FERR("n_kv = %llu: a header of %llu bytes holds at most %llu fields",
                  (unsigned long long)n_kv, (unsigned long long)hb,
                  (unsigned long long)(rem / CK_MIN_KV));
        goto fail;
    }
    if (n_t > (rem - n_kv * CK_MIN_KV) / CK_MIN_TENSOR || n_t > (uint64_t)INT_MAX) {
        st = FERR(
            "n_tensors = %llu: a header of %llu bytes with %llu fields holds at most %llu tensors",
            (unsigned long long)n_t, (unsigned long long)hb, (unsigned long long)n_kv,
            (unsigned long long)((rem - n_kv * CK_MIN_KV) / CK_MIN_TENSOR));
        goto fail;
    }
    pstart = align_up(hb + 4);
    payload_len = r->size - 4 - pstart;

    /* the header, its CRC, then every entry */
    h = malloc((size_t)hb + 4);
    c = calloc(1, sizeof *c);
    if (c) {
        c->path = strdup(path);
        c->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *c->kv);
        c->ts = calloc(n_t ? (size_t)n_t : 1, sizeof *c->ts);
    }
    names = malloc((size_t)(n_kv > n_t ? n_kv : n_t) * sizeof *names + 1);
    if (!h || !c || !c->path || !c->kv || !c->ts || !names) {
        st = ng_error(NG_ERR_OOM, "checkpoint %s: out of memory for a %llu-byte header", path,
                      (unsigned long long)hb);
        goto fail;
    }
    c->cap_kv = (int)(n_kv ? n_kv : 1);
    c->cap_t = (int)(n_t ? n_t : 1);
    r->c = c;
    st = ng_file_pread_all(r->fd, "checkpoint", path, h, (size_t)hb + 4, 0);
    if (st != NG_OK) goto fail;
    crc = crc_update((uint32_t)crc32(0L, Z_NULL, 0), h, hb);
    stored = le32(h + hb);
    if (crc != stored) {
        st = FERR("header CRC mismatch: stored 0x%08x, computed 0x%08x (the header is damaged)",
                  stored, crc);
        goto fail;
    }
    p = CK_FIXED;
    for (i = 0; i < n_kv; i++) {
        st = parse_kv(r, h, hb, &p, i, &c->kv[c->n_kv]);
        c->n_kv++; /* counted even on failure, so ng_ckpt_free releases what parse_kv allocated */
        if (st != NG_OK) goto fail;
        names[i] = c->kv[i].key;
    }
    if ((dup = find_duplicate(names, (size_t)n_kv)) != NULL) {
        st = FERR("duplicate key %s", dup);
        goto fail;
    }
    for (i = 0; i < n_t; i++) {
        ck_tensor *t = calloc(1, sizeof *t);
        if (!t) {
            st = ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", path);
            goto fail;
        }
        c->ts[c->n_t++] = t;
        st = parse_tensor(r, h, hb, &p, i, i ? c->ts[i - 1]->name : NULL, payload_len, &end, t);
        if (st != NG_OK) goto fail;
        names[i] = t->name;
    }
    if (p != hb) {
        st = FERR("header_bytes = %llu, but the fields and tensor directory end at byte %llu",
                  (unsigned long long)hb, (unsigned long long)p);
        goto fail;
    }
    if ((dup = find_duplicate(names, (size_t)n_t)) != NULL) {
        st = FERR("duplicate tensor name %s", dup);
        goto fail;
    }
    if (payload_len != end) {
        st = FERR("%llu byte%s after the end of the last tensor (the payload ends at %llu): "
                  "trailing data or a damaged directory",
                  (unsigned long long)(payload_len - end), payload_len - end == 1 ? "" : "s",
                  (unsigned long long)end);
        goto fail;
    }
    /* the zero padding between the header CRC and the payload */
    if (pstart > hb + 4) {
        size_t np = (size_t)(pstart - hb - 4), k;
        st = ng_file_pread_all(r->fd, "checkpoint", path, pad, np, hb + 4);
        if (st != NG_OK) goto fail;
        for (k = 0; k < np; k++)
            if (pad[k]) {
                st = FERR("header padding byte at offset %llu is 0x%02x, not zero",
                          (unsigned long long)(hb + 4 + k), pad[k]);
                goto fail;
            }
    }

    if (flags == NG_CKPT_READ_ALL) {
        unsigned char *pl = NULL;
        if (payload_len) {
            pl = aligned_alloc(NG_CKPT_ALIGN, (size_t)align_up(payload_len));
            if (!pl) {
                st = ng_error(NG_ERR_OOM, "checkpoint %s: cannot allocate the %llu-byte payload",
                              path, (unsigned long long)payload_len);
                goto fail;
            }
            c->payload = pl;
            st = ng_file_pread_all(r->fd, "checkpoint", path, pl, (size_t)payload_len, pstart);
            if (st != NG_OK) goto fail;
        }
        st = ng_file_pread_all(r->fd, "checkpoint", path, crcb, 4, pstart + payload_len);
        if (st != NG_OK) goto fail;
        crc = crc_update((uint32_t)crc32(0L, Z_NULL, 0), pl, payload_len);
        stored = le32(crcb);
        if (crc != stored) {
            st = FERR("payload CRC mismatch: stored 0x%08x, computed 0x%08x (the tensor data is "
                      "damaged)",
                      stored, crc);
            goto fail;
        }
        end = 0; /* from here: the end of the previous tensor */
        for (i = 0; i < n_t; i++) {
            ck_tensor *t = c->ts[i];
            uint64_t off = i ? align_up(end) : 0, bad, k;
            int nan;
            if (i) {
                for (k = end; k < off; k++)
                    if (pl[k]) {
                        st = FERR("payload padding after tensor %s is not zero (byte %llu of the "
                                  "payload)",
                                  c->ts[i - 1]->name, (unsigned long long)k);
                        goto fail;
                    }
            }
            t->t.data = pl + off;
            bad = first_nonfinite(t->t.dtype, t->t.data, t->t.count, &nan);
            if (bad < t->t.count) {
                st = FERR("tensor %s: element %llu is %s", t->name, (unsigned long long)bad,
                          nan ? "NaN" : "infinite");
                goto fail;
            }
            end = off + t->t.bytes;
        }
    }
    free(h);
    free(names);
    close(r->fd);
    *out = c;
    return NG_OK;

fail:
    free(h);
    free(names);
    ng_ckpt_free(c);
    close(r->fd);
    return st;
}
