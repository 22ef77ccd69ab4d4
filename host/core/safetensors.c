/* safetensors.c: the safetensors writer (natgrad/safetensors.h).
 *
 * Must not: write JSON that is not valid UTF-8 or not properly escaped, write offsets that do not
 * tile the byte buffer exactly, or leave a partial file at path. */
#include "natgrad/safetensors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/file.h"

/* ---- a growing JSON text --------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        char *np;
        while (ncap < b->n + n + 1) {
            if (ncap > ((size_t)-1) / 2) {
                b->oom = 1;
                return;
            }
            ncap *= 2;
        }
        np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    int k;
    va_start(ap, fmt);
    k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* s as a JSON string literal: quotes, backslashes and control characters escaped; other bytes
 * (valid UTF-8, checked by the caller) copied. */
static void sb_json_string(sbuf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    sb_add(b, "\"", 1);
    for (; *u; u++) {
        char esc[8];
        switch (*u) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\b': sb_add(b, "\\b", 2); break;
        case '\f': sb_add(b, "\\f", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        default:
            if (*u < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *u);
                sb_add(b, esc, 6);
            } else {
                sb_add(b, (const char *)u, 1);
            }
        }
    }
    sb_add(b, "\"", 1);
}

/* 1 when s is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
static int utf8_ok(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        unsigned c = *u, need, k;
        unsigned long cp;
        if (c < 0x80) {
            u++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, cp = c & 0x07;
        else
            return 0;
        for (k = 1; k <= need; k++) {
            if ((u[k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (u[k] & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        u += need + 1;
    }
    return 1;
}

static const char *st_dtype(ng_dtype t) {
    switch (t) {
    case NG_F32: return "F32";
    case NG_F64: return "F64";
    case NG_F16: return "F16";
    case NG_BF16: return "BF16";
    default: return NULL;
    }
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Byte size of tensor t into *bytes; NULL or the reason it is refused. */
static const char *tensor_bytes(const ng_st_tensor *t, uint64_t *bytes) {
    uint64_t c = 1, esz = ng_dtype_size(t->dtype);
    int i;
    if (!st_dtype(t->dtype)) return "unknown dtype";
    if (t->ndim < 0 || t->ndim > NG_ST_MAX_NDIM) return "ndim out of range 0..16";
    if (t->ndim > 0 && !t->shape) return "NULL shape";
    for (i = 0; i < t->ndim; i++) {
        if (t->shape[i] && c > UINT64_MAX / t->shape[i]) return "element count overflows";
        c *= t->shape[i];
    }
    if (c > UINT64_MAX / esz || c * esz > (uint64_t)SIZE_MAX) return "byte size overflows";
    *bytes = c * esz;
    if (*bytes && !t->data) return "NULL data";
    return NULL;
}

ng_status ng_safetensors_write(const char *path, int n, const ng_st_tensor *tensors,
                               const char *const *meta_keys, const char *const *meta_values,
                               int n_meta) {
    sbuf js = {0};
    uint64_t off = 0, nh, *sizes = NULL;
    unsigned char len8[8];
    ng_wfile w;
    ng_status st = NG_OK;
    int i, j;

    if (!path) return ng_error(NG_ERR_INVALID_ARG, "ng_safetensors_write: NULL path");
    if (n < 0 || (n > 0 && !tensors) || n_meta < 0 || (n_meta > 0 && (!meta_keys || !meta_values)))
        return ng_error(NG_ERR_INVALID_ARG,
                        "safetensors %s: bad counts or NULL arrays (n = %d, n_meta = %d)", path, n,
                        n_meta);
    if (!host_is_little_endian())
        return ng_error(NG_ERR_UNSUPPORTED, "safetensors %s: writing needs a little-endian host",
                        path);
    /* validate everything before creating a file */
    sizes = malloc(((size_t)n + 1) * sizeof *sizes);
    if (!sizes) return ng_error(NG_ERR_OOM, "safetensors %s: out of memory", path);
    for (i = 0; i < n; i++) {
        const ng_st_tensor *t = &tensors[i];
        const char *why;
        if (!t->name || !t->name[0]) {
            st = ng_error(NG_ERR_INVALID_ARG, "safetensors %s: tensor %d has an empty name", path,
                          i);
            goto done;
        }
        if (!utf8_ok(t->name)) {
            st = ng_error(NG_ERR_INVALID_ARG, "safetensors %s: tensor %d: name is not valid UTF-8",
                          path, i);
            goto done;
        }
        if (strcmp(t->name, "__metadata__") == 0) {
            st = ng_error(NG_ERR_INVALID_ARG,
                          "safetensors %s: tensor %d: the name __metadata__ is reserved", path, i);
            goto done;
        }
        for (j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0) {
                st = ng_error(NG_ERR_INVALID_ARG,
                              "safetensors %s: tensor name %s is used twice (tensors %d and %d)",
                              path, t->name, j, i);
                goto done;
            }
        why = tensor_bytes(t, &sizes[i]);
        if (why) {
            st = ng_error(NG_ERR_INVALID_ARG, "safetensors %s: tensor %s: %s", path, t->name, why);
            goto done;
        }
        if (sizes[i] > UINT64_MAX - off) {
            st = ng_error(NG_ERR_INVALID_ARG, "safetensors %s: total size overflows", path);
            goto done;
        }
        off += sizes[i];
    }
    for (i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i] || !utf8_ok(meta_keys[i]) ||
            !utf8_ok(meta_values[i])) {
            st = ng_error(NG_ERR_INVALID_ARG,
                          "safetensors %s: metadata entry %d: NULL or not valid UTF-8", path, i);
            goto done;
        }
        for (j = 0; j < i; j++)
            if (strcmp(meta_keys[j], meta_keys[i]) == 0) {
                st = ng_error(NG_ERR_INVALID_ARG, "safetensors %s: metadata key %s is used twice",
                              path, meta_keys[i]);
                goto done;
            }
    }

    /* the JSON header */
    sb_str(&js, "{");
    for (i = 0, off = 0; i < n; i++) {
        const ng_st_tensor *t = &tensors[i];
        if (i) sb_str(&js, ",");
        sb_json_string(&js, t->name);
        sb_str(&js, ":{\"dtype\":\"");
        sb_str(&js, st_dtype(t->dtype));
        sb_str(&js, "\",\"shape\":[");
        for (j = 0; j < t->ndim; j++)
            sb_printf(&js, j ? ",%llu" : "%llu", (unsigned long long)t->shape[j]);
        sb_printf(&js, "],\"data_offsets\":[%llu,", (unsigned long long)off);
        off += sizes[i];
        sb_printf(&js, "%llu]}", (unsigned long long)off);
    }
    if (n_meta > 0) {
        if (n) sb_str(&js, ",");
        sb_str(&js, "\"__metadata__\":{");
        for (i = 0; i < n_meta; i++) {
            if (i) sb_str(&js, ",");
            sb_json_string(&js, meta_keys[i]);
            sb_str(&js, ":");
            sb_json_string(&js, meta_values[i]);
        }
        sb_str(&js, "}");
    }
    sb_str(&js, "}");
    while (!js.oom && js.n % 8)
        sb_str(&js, " ");
    if (js.oom) {
        st = ng_error(NG_ERR_OOM, "safetensors %s: out of memory for the JSON header", path);
        goto done;
    }
    nh = js.n;
    if (nh > NG_ST_MAX_HEADER) {
        st =
            ng_error(NG_ERR_INVALID_ARG,
                     "safetensors %s: JSON header of %llu bytes exceeds the format's limit of %llu",
                     path, (unsigned long long)nh, (unsigned long long)NG_ST_MAX_HEADER);
        goto done;
    }
    for (i = 0; i < 8; i++)
        len8[i] = (unsigned char)(nh >> (8 * i));

    st = ng_wfile_open(&w, path);
    if (st == NG_OK) st = ng_wfile_write(&w, len8, 8);
    if (st == NG_OK) st = ng_wfile_write(&w, js.p, js.n);
    for (i = 0; st == NG_OK && i < n; i++)
        st = ng_wfile_write(&w, tensors[i].data, (size_t)sizes[i]);
    if (st == NG_OK) st = ng_wfile_commit(&w);
    if (st != NG_OK) {
        ng_wfile_abort(&w);
        ng_error_wrap(st, "safetensors ");
    }
done:
    free(js.p);
    free(sizes);
    return st;
}
