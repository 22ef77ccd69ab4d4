/* natgrad/tensor.h: device-resident tensors (float32 or float64, up to 4 dimensions) and the arenas
 * they live in.
 *
 * A tensor is a view: it never owns memory. Its dims are listed fastest-varying first (column-major,
 * the BLAS convention): a matrix (rows, cols) has dims {rows, cols} and element (r, c) at
 * data[r + c * ld]; a batch of conv activations has dims {W, H, C, N} (NCHW in row-major terms),
 * one example per column of its matrix view. Every tensor is also a matrix: rows = the product of
 * all dims but the last, cols = the last dim (a 1-D tensor of n is (n, 1)), ld >= rows.
 *
 * All tensors of one role (parameters, gradients, optimizer state, workspace) are reserved in one
 * ng_arena and allocated by one backend call at init, so a checkpoint of a role is a walk over its
 * named views, zeroing it is one memset, and a training step allocates nothing. A packed arena puts
 * its views back to back (no alignment gaps), so the whole arena is also one flat vector: the
 * parameter and gradient arenas of a model are packed, so that an update rule, a dot product or
 * (later) one collective covers all of them at once.
 * Host code never dereferences `data`; it moves data with ng_tensor_set/get. */
#ifndef NATGRAD_TENSOR_H
#define NATGRAD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "natgrad/backend.h"
#include "natgrad/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NG_MAX_DIMS 4

typedef struct ng_tensor {
    union {
        void *ptr;     /* device pointer, any dtype */
        float *data;   /* the same pointer, for NG_F32 tensors */
        double *data_d;/* the same pointer, for NG_F64 tensors */
    };
    ng_dtype dtype;
    int ndim;              /* 1 .. NG_MAX_DIMS */
    int dims[NG_MAX_DIMS]; /* fastest-varying first; unused entries are 1 */
    int rows, cols, ld;    /* matrix view (see the top of this file) */
} ng_tensor;

/* Elements of the tensor (rows * cols). */
static inline size_t ng_tensor_count(const ng_tensor *t) { return (size_t)t->rows * (size_t)t->cols; }

typedef struct ng_arena_entry {
    char *name;       /* owned copy */
    ng_tensor *view;  /* the caller's tensor, filled at commit (must not move until then) */
    size_t offset;    /* bytes from the arena base */
} ng_arena_entry;

/* Two phases: reserve named views (sizes only), then commit (one allocation, views filled).
 * Errors are sticky: a failed reserve returns its status and the commit returns it again, so a
 * list of reserves can be checked once at the commit. */
typedef struct ng_arena {
    ng_backend *be;
    char role[64];            /* "rbm parameters", "FANG state", ... (for messages) */
    int packed;               /* 1: views back to back, no alignment padding */
    void *base;               /* device allocation */
    size_t bytes;             /* total */
    int count, cap;
    ng_arena_entry *entries;  /* grows as needed */
    ng_status status;         /* first error of a reserve, NG_OK otherwise */
} ng_arena;

/* Views 256-byte aligned (coalesced access on the GPU). */
void ng_arena_begin(ng_arena *a, ng_backend *be, const char *role);
/* Views back to back: the arena is one flat vector (ng_arena_flat). All views must share one dtype. */
void ng_arena_begin_packed(ng_arena *a, ng_backend *be, const char *role);
/* Reserve a float32 (rows, cols) matrix named `name` (the name is copied; unique per arena). */
ng_status ng_arena_reserve(ng_arena *a, const char *name, int rows, int cols, ng_tensor *t);
/* Reserve a tensor of any dtype and 1..4 dims (fastest first). */
ng_status ng_arena_reserve_nd(ng_arena *a, const char *name, ng_dtype dtype, int ndim,
                              const int *dims, ng_tensor *t);
/* Allocate the arena (contents zeroed) and fill every reserved view. */
ng_status ng_arena_commit(ng_arena *a);
/* Release the device memory and the names (safe on a zeroed or half-built arena). */
void ng_arena_free(ng_arena *a);

/* Introspection: the i-th view and its name, and the view named `name` (NULL when absent). */
static inline int ng_arena_count(const ng_arena *a) { return a->count; }
static inline const ng_tensor *ng_arena_view(const ng_arena *a, int i) { return a->entries[i].view; }
static inline const char *ng_arena_name(const ng_arena *a, int i) { return a->entries[i].name; }
const ng_tensor *ng_arena_find(const ng_arena *a, const char *name);
/* A packed arena as one 1-D tensor of all its elements (ndim 1, rows = total elements). */
ng_tensor ng_arena_flat(const ng_arena *a);

/* Describe a tensor without memory (for tests and for temporary views). */
ng_tensor ng_tensor_matrix(float *data, int rows, int cols, int ld);
/* "(784, 500)" style shape string; buf of at least 64 bytes. */
const char *ng_tensor_shape_str(const ng_tensor *t, char *buf, size_t len);

/* Copy a host buffer (rows x cols elements of the tensor's dtype, leading dimension rows) into /
 * out of t, whatever t's ld. */
ng_status ng_tensor_set(ng_backend *be, ng_tensor *t, const void *host);
ng_status ng_tensor_get(ng_backend *be, const ng_tensor *t, void *host);
/* The sub-matrix of columns [c0, c0 + n) (a view into the same memory; the last dim becomes n). */
ng_tensor ng_tensor_cols(const ng_tensor *t, int c0, int n);

#ifdef __cplusplus
}
#endif
#endif
