/* natgrad/tensor.h: device-resident column-major float matrices and the arena they live in.
 * A tensor is a view: it never owns memory. All tensors of one role (parameters, gradients,
 * optimizer state, workspace) are reserved in one ng_arena and allocated by one backend call at
 * init, so a checkpoint of a role is one transfer, zeroing it is one memset, and a training step
 * allocates nothing. Host code never dereferences `data`; it moves data with ng_tensor_set/get. */
#ifndef NATGRAD_TENSOR_H
#define NATGRAD_TENSOR_H

#include <stddef.h>

#include "natgrad/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_tensor {
    float *data; /* device pointer; element (r, c) at data[r + c * ld] */
    int rows, cols, ld;
} ng_tensor;

#define NG_ARENA_MAX 64

/* Two phases: reserve named views (sizes only), then commit (one allocation, views filled). */
typedef struct ng_arena {
    ng_backend *be;
    const char *role;               /* "parameters", "gradients", ... (for messages) */
    void *base;                     /* device allocation */
    size_t bytes;                   /* total, each view 256-byte aligned */
    int count;
    ng_tensor *views[NG_ARENA_MAX]; /* filled at commit */
    size_t offsets[NG_ARENA_MAX];
    const char *names[NG_ARENA_MAX];
} ng_arena;

void ng_arena_begin(ng_arena *a, ng_backend *be, const char *role);
/* Reserve a (rows, cols) view named `name`; *t is filled by ng_arena_commit. */
ng_status ng_arena_reserve(ng_arena *a, const char *name, int rows, int cols, ng_tensor *t);
/* Allocate the arena (contents zeroed) and fill every reserved view. */
ng_status ng_arena_commit(ng_arena *a);
void ng_arena_free(ng_arena *a);

static inline size_t ng_tensor_count(const ng_tensor *t) { return (size_t)t->rows * (size_t)t->cols; }

/* Copy a host (rows, cols) column-major buffer (leading dimension rows) into / out of t. */
ng_status ng_tensor_set(ng_backend *be, ng_tensor *t, const float *host);
ng_status ng_tensor_get(ng_backend *be, const ng_tensor *t, float *host);
/* The sub-matrix of columns [c0, c0 + n) (a view into the same memory). */
ng_tensor ng_tensor_cols(const ng_tensor *t, int c0, int n);

#ifdef __cplusplus
}
#endif
#endif
