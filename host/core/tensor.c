/* tensor.c: arenas of device tensors (one allocation per role) and host <-> device transfers. */
#include "natgrad/tensor.h"

#include <string.h>

void ng_arena_begin(ng_arena *a, ng_backend *be, const char *role) {
    memset(a, 0, sizeof *a);
    a->be = be;
    a->role = role;
}

ng_status ng_arena_reserve(ng_arena *a, const char *name, int rows, int cols, ng_tensor *t) {
    size_t n;
    if (a->count >= NG_ARENA_MAX)
        return ng_error(NG_ERR_INVALID_ARG, "arena %s: more than %d tensors", a->role, NG_ARENA_MAX);
    if (rows < 0 || cols < 0)
        return ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor %s has negative shape %dx%d", a->role,
                        name, rows, cols);
    n = (size_t)rows * (size_t)cols;
    if (rows && n / (size_t)rows != (size_t)cols)
        return ng_error(NG_ERR_INVALID_ARG, "arena %s: tensor %s: size overflows", a->role, name);
    a->bytes = (a->bytes + 255) / 256 * 256;
    a->offsets[a->count] = a->bytes;
    a->names[a->count] = name;
    a->views[a->count] = t;
    a->count++;
    a->bytes += n * sizeof(float);
    t->data = NULL;
    t->rows = rows;
    t->cols = cols;
    t->ld = rows > 0 ? rows : 1;
    return NG_OK;
}

ng_status ng_arena_commit(ng_arena *a) {
    int i;
    ng_status s;
    if (a->bytes == 0) return NG_OK;
    s = ng_alloc(a->be, a->bytes, &a->base);
    if (s != NG_OK)
        return ng_error_wrap(s, "allocating %zu bytes of %s: ", a->bytes, a->role);
    NG_TRY(ng_memset0(a->be, a->base, a->bytes));
    for (i = 0; i < a->count; i++) a->views[i]->data = (float *)((char *)a->base + a->offsets[i]);
    return NG_OK;
}

void ng_arena_free(ng_arena *a) {
    if (a && a->base) ng_free(a->be, a->base);
    if (a) a->base = NULL;
}

ng_status ng_tensor_set(ng_backend *be, ng_tensor *t, const float *host) {
    if (t->ld == t->rows || t->cols <= 1)
        return ng_set(be, t->data, host, ng_tensor_count(t) * sizeof(float));
    {
        int c;
        for (c = 0; c < t->cols; c++)
            NG_TRY(ng_set(be, t->data + (size_t)c * t->ld, host + (size_t)c * t->rows,
                          (size_t)t->rows * sizeof(float)));
    }
    return NG_OK;
}

ng_status ng_tensor_get(ng_backend *be, const ng_tensor *t, float *host) {
    if (t->ld == t->rows || t->cols <= 1)
        return ng_get(be, host, t->data, ng_tensor_count(t) * sizeof(float));
    {
        int c;
        for (c = 0; c < t->cols; c++)
            NG_TRY(ng_get(be, host + (size_t)c * t->rows, t->data + (size_t)c * t->ld,
                          (size_t)t->rows * sizeof(float)));
    }
    return NG_OK;
}

ng_tensor ng_tensor_cols(const ng_tensor *t, int c0, int n) {
    ng_tensor v = *t;
    v.data = t->data + (size_t)c0 * t->ld;
    v.cols = n;
    return v;
}
