/* tensor.c: arenas of device tensors (one allocation per role, growable name table) and host <->
 * device transfers. Must not: allocate device memory anywhere but ng_arena_commit. */
#include "natgrad/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "cpu" or "cuda:N": the device an arena lives on, for the memory accounting of natgrad/profile.h */
static void arena_device(const ng_arena *a, char *dev, size_t len) {
    if (a->be && a->be->kind == NG_DEVICE_CUDA) snprintf(dev, len, "cuda:%d", a->be->device_index);
    else snprintf(dev, len, "cpu");
}

static void arena_init(ng_arena *a, ng_backend *be, const char *role, int packed) {
    memset(a, 0, sizeof *a);
    a->be = be;
    a->packed = packed;
    snprintf(a->role, sizeof a->role, "%s", role ? role : "arena");
}

void ng_arena_begin(ng_arena *a, ng_backend *be, const char *role) { arena_init(a, be, role, 0); }
void ng_arena_begin_packed(ng_arena *a, ng_backend *be, const char *role) {
    arena_init(a, be, role, 1);
}

/* Record the first error of a reserve (sticky) and return it. */
static ng_status arena_fail(ng_arena *a, ng_status s) {
    if (a->status == NG_OK) a->status = s;
    return s;
}

const ng_tensor *ng_arena_find(const ng_arena *a, const char *name) {
    int i;
    for (i = 0; i < a->count; i++)
        if (strcmp(a->entries[i].name, name) == 0) return a->entries[i].view;
    return NULL;
}

static void set_shape(ng_tensor *t, ng_dtype dtype, int ndim, const int *dims) {
    int i;
    size_t rows = 1;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    for (i = 0; i < NG_MAX_DIMS; i++) t->dims[i] = i < ndim ? dims[i] : 1;
    for (i = 0; i < ndim - 1; i++) rows *= (size_t)dims[i];
    t->rows = ndim == 1 ? dims[0] : (int)rows;
    t->cols = ndim == 1 ? 1 : dims[ndim - 1];
    t->ld = t->rows > 0 ? t->rows : 1;
}

ng_status ng_arena_reserve_nd(ng_arena *a, const char *name, ng_dtype dtype, int ndim,
                              const int *dims, ng_tensor *t) {
    size_t esz = ng_dtype_size(dtype), n = 1, bytes, align;
    int i;
    if (a->status != NG_OK) return a->status;
    if (!name || !*name || !t)
        return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: reserve needs a name and a tensor", a->role));
    if (esz == 0 || dtype == NG_F16 || dtype == NG_BF16)
        return arena_fail(a, ng_error(NG_ERR_UNSUPPORTED, "arena %s: tensor %s: dtype %s is not computed by any backend",
                                      a->role, name, ng_dtype_name(dtype)));
    if (ndim < 1 || ndim > NG_MAX_DIMS)
        return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor %s: %d dimensions (1..%d)", a->role,
                                      name, ndim, NG_MAX_DIMS));
    for (i = 0; i < ndim; i++) {
        if (dims[i] < 0)
            return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor %s: dimension %d is %d", a->role,
                                          name, i, dims[i]));
        if (dims[i] && n > ((size_t)1 << 62) / (size_t)dims[i])
            return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor %s: size overflows", a->role, name));
        n *= (size_t)dims[i];
    }
    if (n > (size_t)2147483647 * 4)
        return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor %s: %zu elements is too large", a->role,
                                      name, n));
    if (ndim > 1) {
        size_t rows = n / (dims[ndim - 1] ? (size_t)dims[ndim - 1] : 1);
        if (rows > 2147483647u)
            return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor %s: matrix view has %zu rows",
                                          a->role, name, rows));
    }
    if (ng_arena_find(a, name))
        return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor name %s is used twice", a->role, name));
    if (a->packed && a->count > 0 && a->entries[0].view->dtype != dtype)
        return arena_fail(a, ng_error(NG_ERR_INVALID_ARG, "arena %s: packed arenas hold one dtype (%s is %s, not %s)",
                                      a->role, name, ng_dtype_name(dtype),
                                      ng_dtype_name(a->entries[0].view->dtype)));
    if (a->count == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        ng_arena_entry *e = (ng_arena_entry *)realloc(a->entries, (size_t)cap * sizeof *e);
        if (!e) return arena_fail(a, ng_error(NG_ERR_OOM, "arena %s: out of host memory", a->role));
        a->entries = e;
        a->cap = cap;
    }
    align = a->packed ? esz : 256;
    a->bytes = (a->bytes + align - 1) / align * align;
    bytes = n * esz;
    a->entries[a->count].name = strdup(name);
    if (!a->entries[a->count].name)
        return arena_fail(a, ng_error(NG_ERR_OOM, "arena %s: out of host memory", a->role));
    a->entries[a->count].view = t;
    a->entries[a->count].offset = a->bytes;
    a->count++;
    a->bytes += bytes;
    set_shape(t, dtype, ndim, dims);
    return NG_OK;
}

ng_status ng_arena_reserve(ng_arena *a, const char *name, int rows, int cols, ng_tensor *t) {
    int dims[2];
    dims[0] = rows;
    dims[1] = cols;
    return ng_arena_reserve_nd(a, name, NG_F32, 2, dims, t);
}

ng_status ng_arena_commit(ng_arena *a) {
    int i;
    ng_status s;
    if (a->status != NG_OK) return a->status;
    if (a->bytes == 0) return NG_OK;
    s = ng_alloc(a->be, a->bytes, &a->base);
    if (s != NG_OK) return arena_fail(a, ng_error_wrap(s, "allocating %zu bytes of %s: ", a->bytes, a->role));
    {
        char dev[16];
        arena_device(a, dev, sizeof dev);
        ng_profile_memory(a->role, dev, (long long)a->bytes);
    }
    s = ng_memset0(a->be, a->base, a->bytes);
    if (s != NG_OK) return arena_fail(a, s);
    for (i = 0; i < a->count; i++) a->entries[i].view->ptr = (char *)a->base + a->entries[i].offset;
    return NG_OK;
}

void ng_arena_free(ng_arena *a) {
    int i;
    if (!a) return;
    if (a->base) {
        char dev[16];
        arena_device(a, dev, sizeof dev);
        ng_profile_memory(a->role, dev, -(long long)a->bytes);
        ng_free(a->be, a->base);
    }
    a->base = NULL;
    for (i = 0; i < a->count; i++) free(a->entries[i].name);
    free(a->entries);
    a->entries = NULL;
    a->count = a->cap = 0;
}

ng_tensor ng_arena_flat(const ng_arena *a) {
    ng_tensor t;
    int n = 0;
    ng_dtype dt = a->count ? a->entries[0].view->dtype : NG_F32;
    size_t esz = ng_dtype_size(dt);
    if (esz) n = (int)(a->bytes / esz);
    set_shape(&t, dt, 1, &n);
    t.ptr = a->base;
    return t;
}

ng_tensor ng_tensor_matrix(float *data, int rows, int cols, int ld) {
    ng_tensor t;
    int dims[2];
    dims[0] = rows;
    dims[1] = cols;
    set_shape(&t, NG_F32, 2, dims);
    t.data = data;
    t.ld = ld;
    return t;
}

const char *ng_tensor_shape_str(const ng_tensor *t, char *buf, size_t len) {
    size_t used = 0;
    int i;
    used += (size_t)snprintf(buf, len, "(");
    for (i = 0; i < t->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %d" : "%d", t->dims[i]);
    if (used < len) snprintf(buf + used, len - used, ")");
    return buf;
}

ng_status ng_tensor_set(ng_backend *be, ng_tensor *t, const void *host) {
    size_t esz = ng_dtype_size(t->dtype);
    int c;
    if (t->ld == t->rows || t->cols <= 1) return ng_set(be, t->ptr, host, ng_tensor_count(t) * esz);
    for (c = 0; c < t->cols; c++)
        NG_TRY(ng_set(be, (char *)t->ptr + (size_t)c * t->ld * esz,
                      (const char *)host + (size_t)c * t->rows * esz, (size_t)t->rows * esz));
    return NG_OK;
}

ng_status ng_tensor_get(ng_backend *be, const ng_tensor *t, void *host) {
    size_t esz = ng_dtype_size(t->dtype);
    int c;
    if (t->ld == t->rows || t->cols <= 1) return ng_get(be, host, t->ptr, ng_tensor_count(t) * esz);
    for (c = 0; c < t->cols; c++)
        NG_TRY(ng_get(be, (char *)host + (size_t)c * t->rows * esz,
                      (const char *)t->ptr + (size_t)c * t->ld * esz, (size_t)t->rows * esz));
    return NG_OK;
}

ng_tensor ng_tensor_cols(const ng_tensor *t, int c0, int n) {
    ng_tensor v = *t;
    v.ptr = (char *)t->ptr + (size_t)c0 * t->ld * ng_dtype_size(t->dtype);
    v.cols = n;
    v.dims[t->ndim > 1 ? t->ndim - 1 : 1] = n;
    if (t->ndim == 1) v.ndim = 2; /* a column range of a vector is a (rows, n) matrix */
    return v;
}
