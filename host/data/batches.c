/* batches.c: the mini-batch stream of natgrad/data.h. Host data (dim, n) column-major; device
 * batches (dim, hi - lo). Per call: gather the rank's columns of the next global batch (in the
 * order of the epoch's permutation) into pinned staging memory, queue the upload into one of two
 * device buffers, record an event. A staging buffer is refilled only after the event of its
 * previous upload has completed, so the host never overwrites data still in flight. On the CPU
 * backend, whose device memory is host memory, the columns are gathered straight into the device
 * buffer (the staging copy would be a second pass over the batch for nothing).
 * Must not: allocate after init, or block on the device except for that event. */
#include "natgrad/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/rng.h"

ng_status ng_batches_init(ng_batches *b, ng_backend *be, const float *x_host, int dim, int n,
                          int batch, uint64_t seed, int rank, int world) {
    int k;
    ng_status s = NG_OK;
    memset(b, 0, sizeof *b);
    b->perm_epoch = -1;
    if (!x_host || dim < 1 || n < 1)
        return ng_error(NG_ERR_INVALID_ARG, "batches: empty data set (%d examples of dimension %d)", n, dim);
    if (batch < 1 || batch > n)
        return ng_error(NG_ERR_INVALID_ARG, "--batch %d: must be in 1 .. %d (the training set size)", batch, n);
    if (world < 1 || rank < 0 || rank >= world || world > batch)
        return ng_error(NG_ERR_INVALID_ARG, "batches: rank %d of %d cannot shard a batch of %d", rank, world, batch);
    b->be = be;
    b->x = x_host;
    b->dim = dim;
    b->n = n;
    b->batch = batch;
    b->capacity = batch;
    b->rank = rank;
    b->world = world;
    b->lo = (int)((long long)rank * batch / world);
    b->hi = (int)((long long)(rank + 1) * batch / world);
    b->seed = seed;
    b->perm = (int *)malloc((size_t)n * sizeof(int));
    if (!b->perm) return ng_error(NG_ERR_OOM, "batches: out of host memory for %d indices", n);
    ng_arena_begin(&b->arena, be, "batches");
    ng_arena_reserve(&b->arena, "batch0", dim, b->hi - b->lo, &b->buf[0]);
    ng_arena_reserve(&b->arena, "batch1", dim, b->hi - b->lo, &b->buf[1]);
    s = ng_arena_commit(&b->arena);
    for (k = 0; s == NG_OK && k < 2; k++) {
        s = ng_alloc_host(be, (size_t)dim * (size_t)(b->hi - b->lo) * sizeof(float), (void **)&b->stage[k]);
        if (s == NG_OK) s = ng_event_create(be, &b->uploaded[k]);
    }
    if (s == NG_OK) s = ng_batches_seek(b, 0, 0);
    if (s != NG_OK) ng_batches_free(b);
    return s;
}

void ng_batches_free(ng_batches *b) {
    int k;
    if (!b) return;
    for (k = 0; k < 2; k++) {
        if (b->uploaded[k]) ng_event_destroy(b->be, b->uploaded[k]);
        if (b->stage[k]) ng_free_host(b->be, b->stage[k]);
        b->uploaded[k] = NULL;
        b->stage[k] = NULL;
    }
    ng_arena_free(&b->arena);
    free(b->perm);
    b->perm = NULL;
}

ng_status ng_batches_seek(ng_batches *b, int epoch, int pos) {
    if (epoch < 0 || pos < 0 || pos > b->n)
        return ng_error(NG_ERR_INVALID_ARG, "batches: cannot seek to epoch %d, column %d of %d", epoch, pos, b->n);
    b->epoch = epoch;
    b->pos = pos;
    return NG_OK;
}

int ng_batch_schedule_exp(uint64_t k, int m1, int k_full, int n) {
    double b, m;
    if (m1 >= n || k_full <= 1) return n;
    if (k < 1) k = 1;
    b = (double)(k_full - 1) / log((double)n / (double)m1);
    m = (double)m1 * exp((double)(k - 1) / b);
    if (m >= (double)n) return n;
    return (int)(m + 0.5);
}

ng_status ng_batches_resize(ng_batches *b, int batch) {
    if (batch < b->world || batch > b->capacity)
        return ng_error(NG_ERR_INVALID_ARG, "batches: size %d outside 1 .. %d (the largest batch this run was set up for)",
                        batch, b->capacity);
    b->batch = batch;
    b->lo = (int)((long long)b->rank * batch / b->world);
    b->hi = (int)((long long)(b->rank + 1) * batch / b->world);
    return NG_OK;
}

ng_status ng_batches_next(ng_batches *b, ng_tensor *out) {
    int k = b->next_buf, c, m = b->hi - b->lo;
    /* CPU backend: gather into the device buffer itself (ng_set_async is a memcpy there) */
    const int direct = b->be->kind == NG_DEVICE_CPU;
    float *stage = direct ? b->buf[k].data : b->stage[k];
    if (b->pos + b->batch > b->n) { /* the tail of an epoch shorter than a batch is skipped */
        b->epoch++;
        b->pos = 0;
    }
    if (b->perm_epoch != b->epoch) {
        ng_rng_permutation(b->perm, b->n, ng_rng_stream_key(b->seed, NG_RNG_SHUFFLE), (uint64_t)b->epoch);
        b->perm_epoch = b->epoch;
    }
    if (b->used[k]) NG_TRY(ng_event_synchronize(b->be, b->uploaded[k]));
    for (c = 0; c < m; c++)
        memcpy(stage + (size_t)c * b->dim, b->x + (size_t)b->perm[b->pos + b->lo + c] * b->dim,
               (size_t)b->dim * sizeof(float));
    if (!direct) NG_TRY(ng_set_async(b->be, b->buf[k].data, stage, (size_t)b->dim * (size_t)m * sizeof(float)));
    NG_TRY(ng_event_record(b->be, b->uploaded[k]));
    b->used[k] = 1;
    b->next_buf = 1 - k;
    b->pos += b->batch;
    *out = m == b->buf[k].cols ? b->buf[k] : ng_tensor_matrix(b->buf[k].data, b->dim, m, b->buf[k].ld);
    return NG_OK;
}
