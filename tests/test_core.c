/* test_core.c: the pieces of the core every model and optimizer builds on, on the CPU backend:
 *   - arenas: more than 64 views, names copied (the caller's buffer may change), packed arenas as
 *     one flat vector with views back to back, n-dimensional float64 views, sticky reserve errors,
 *     duplicate names refused, lookups by name;
 *   - the model helpers: packed parameter and gradient arenas of the same layout, decay flags,
 *     lookups by name with the model kind in the error;
 *   - the batch stream: every epoch visits ng_rng_permutation(seed, NG_RNG_SHUFFLE, epoch) in order
 *     in batches, skips the short tail, seeks exactly, and the ranks of a sharded run take disjoint
 *     shards whose union is the global batch;
 *   - the log callback (library messages reach it, nothing else is printed), the interrupt flag,
 *     rank-keyed RNG streams (rank 0 is the single-process key, ranks differ);
 *   - the elementwise op table: every ng_op has a name and a descriptor, and the wrappers refuse
 *     an unknown op and bad arguments with the op named. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/data.h"
#include "natgrad/log.h"
#include "natgrad/model.h"
#include "natgrad/rng.h"
#include "natgrad/tensor.h"

static ng_backend *g_cpu;

static int test_arena_many_views_and_names(void) {
    ng_arena a;
    ng_tensor t[100];
    char name[32];
    int i;
    ng_arena_begin(&a, g_cpu, "many");
    for (i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "view%d", i); /* the same buffer each time: names must be copied */
        NGT_OK(ng_arena_reserve(&a, name, i + 1, 2, &t[i]));
    }
    NGT_OK(ng_arena_commit(&a));
    NGT_CHECK(ng_arena_count(&a) == 100, "%d views", ng_arena_count(&a));
    for (i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "view%d", i);
        NGT_CHECK(strcmp(ng_arena_name(&a, i), name) == 0, "name %d is %s", i, ng_arena_name(&a, i));
        NGT_CHECK(ng_arena_find(&a, name) == &t[i], "lookup of %s", name);
        NGT_CHECK(t[i].data && ((uintptr_t)t[i].data % 256) == 0, "view %d not 256-byte aligned", i);
        NGT_CHECK(t[i].rows == i + 1 && t[i].cols == 2 && t[i].ld == i + 1 && t[i].ndim == 2, "shape of view %d", i);
    }
    NGT_CHECK(ng_arena_find(&a, "nope") == NULL, "lookup of a missing name");
    ng_arena_free(&a);
    return NGT_PASS;
}

static int test_arena_sticky_errors(void) {
    ng_arena a;
    ng_tensor x, y, z;
    int d3[3] = {2, 3, 4};
    ng_status s;
    ng_arena_begin(&a, g_cpu, "sticky");
    NGT_OK(ng_arena_reserve(&a, "x", 3, 3, &x));
    s = ng_arena_reserve(&a, "x", 2, 2, &y);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "x") && strstr(ng_last_error(), "twice"),
              "duplicate name: %s %s", ng_status_name(s), ng_last_error());
    /* later reserves and the commit return the first error */
    s = ng_arena_reserve_nd(&a, "z", NG_F64, 3, d3, &z);
    NGT_CHECK(s == NG_ERR_INVALID_ARG, "reserve after an error returned %s", ng_status_name(s));
    s = ng_arena_commit(&a);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && a.base == NULL, "commit after an error returned %s", ng_status_name(s));
    ng_arena_free(&a);
    ng_arena_begin(&a, g_cpu, "bad");
    s = ng_arena_reserve(&a, "neg", -1, 3, &x);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "neg"), "negative dim: %s", ng_last_error());
    ng_arena_free(&a);
    ng_arena_begin(&a, g_cpu, "f16");
    s = ng_arena_reserve_nd(&a, "h", NG_F16, 3, d3, &x);
    NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "f16"), "f16 view: %s", ng_last_error());
    ng_arena_free(&a);
    return NGT_PASS;
}

/* packed: offsets back to back, the flat view covers everything; an f64 4-D view */
static int test_arena_packed_and_nd(void) {
    ng_arena a, b;
    ng_tensor p, q, r, flat, d;
    int d4[4] = {3, 4, 5, 2};
    float ones[12 + 5 + 7], back[24];
    double dd[120], db[120];
    int i;
    ng_arena_begin_packed(&a, g_cpu, "packed");
    NGT_OK(ng_arena_reserve(&a, "p", 3, 4, &p));
    NGT_OK(ng_arena_reserve(&a, "q", 5, 1, &q));
    NGT_OK(ng_arena_reserve(&a, "r", 7, 1, &r));
    NGT_OK(ng_arena_commit(&a));
    NGT_CHECK(q.data == p.data + 12 && r.data == q.data + 5, "packed views are not back to back");
    flat = ng_arena_flat(&a);
    NGT_CHECK(flat.rows == 24 && flat.cols == 1 && flat.data == p.data, "flat view %d x %d", flat.rows, flat.cols);
    for (i = 0; i < 24; i++) ones[i] = (float)i;
    NGT_OK(ng_tensor_set(g_cpu, &flat, ones));
    NGT_OK(ng_tensor_get(g_cpu, &r, back));
    for (i = 0; i < 7; i++) NGT_CHECK(back[i] == (float)(17 + i), "r[%d] = %g", i, (double)back[i]);
    ng_arena_free(&a);
    ng_arena_begin(&b, g_cpu, "nd");
    NGT_OK(ng_arena_reserve_nd(&b, "d", NG_F64, 4, d4, &d));
    NGT_OK(ng_arena_commit(&b));
    NGT_CHECK(d.dtype == NG_F64 && d.ndim == 4 && d.rows == 60 && d.cols == 2 && d.ld == 60,
              "4-D view: dtype %d ndim %d matrix %d x %d", (int)d.dtype, d.ndim, d.rows, d.cols);
    for (i = 0; i < 120; i++) dd[i] = 0.5 * i;
    NGT_OK(ng_tensor_set(g_cpu, &d, dd));
    NGT_OK(ng_tensor_get(g_cpu, &d, db));
    NGT_CHECK(memcmp(dd, db, sizeof dd) == 0, "f64 round trip");
    {
        char buf[64];
        NGT_CHECK(strcmp(ng_tensor_shape_str(&d, buf, sizeof buf), "(3, 4, 5, 2)") == 0, "shape string %s", buf);
    }
    ng_arena_free(&b);
    return NGT_PASS;
}

static const struct ng_model_i toy_iface = {.kind = "toy"};

static int test_model_params(void) {
    ng_model m;
    ng_tensor w, gw, b, gb, v, g;
    int dw[2] = {4, 3}, db[1] = {4};
    ng_status s;
    ng_model_begin(&m, &toy_iface, g_cpu);
    NGT_OK(ng_model_add_param(&m, "W", 2, dw, 1, &w, &gw));
    NGT_OK(ng_model_add_param(&m, "b", 1, db, 0, &b, &gb));
    NGT_OK(ng_model_commit(&m));
    NGT_CHECK(ng_model_n_params(&m) == 2 && ng_model_size(&m) == 16, "%d params, %zu elements", ng_model_n_params(&m),
              ng_model_size(&m));
    NGT_CHECK(m.decay[0] == 1 && m.decay[1] == 0, "decay flags %d %d", m.decay[0], m.decay[1]);
    NGT_CHECK(m.param_flat.data == w.data && m.grad_flat.data == gw.data && b.data == w.data + 12 &&
                  gb.data == gw.data + 12,
              "the flat vectors do not cover the parameters in order");
    NGT_OK(ng_model_param(&m, "b", &v, &g));
    NGT_CHECK(v.data == b.data && g.data == gb.data, "lookup of b");
    s = ng_model_param(&m, "c", &v, &g);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "toy") && strstr(ng_last_error(), "c"),
              "missing parameter: %s", ng_last_error());
    s = ng_model_gnvp(&m, &v, &g);
    NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "Gauss-Newton"), "gnvp of a model without it: %s",
              ng_last_error());
    ng_model_release(&m);
    return NGT_PASS;
}

/* Batches follow the epoch permutations, skip the tail, seek exactly, and shard by rank. */
static int test_batches(void) {
    enum { DIM = 3, N = 23, B = 5 };
    float x[DIM * N], got[DIM * B];
    int perm[N], epoch, k, c, r;
    ng_batches b;
    ng_tensor t;
    for (c = 0; c < N; c++)
        for (r = 0; r < DIM; r++) x[r + c * DIM] = (float)(100 * c + r);
    NGT_OK(ng_batches_init(&b, g_cpu, x, DIM, N, B, 42, 0, 1));
    for (epoch = 0; epoch < 3; epoch++) {
        ng_rng_permutation(perm, N, ng_rng_stream_key(42, NG_RNG_SHUFFLE), (uint64_t)epoch);
        for (k = 0; k < N / B; k++) { /* 4 batches of 5; the last 3 columns are skipped */
            NGT_OK(ng_batches_next(&b, &t));
            NGT_CHECK(t.rows == DIM && t.cols == B && b.epoch == epoch, "batch %d of epoch %d: %dx%d at epoch %d", k,
                      epoch, t.rows, t.cols, b.epoch);
            NGT_OK(ng_tensor_get(g_cpu, &t, got));
            for (c = 0; c < B; c++)
                NGT_CHECK(got[c * DIM] == (float)(100 * perm[k * B + c]), "epoch %d batch %d column %d is example %g, want %d",
                          epoch, k, c, (double)got[c * DIM] / 100, perm[k * B + c]);
        }
    }
    /* seek back to epoch 1, column 10: the next batch is columns 10..14 of epoch 1's order */
    NGT_OK(ng_batches_seek(&b, 1, 10));
    ng_rng_permutation(perm, N, ng_rng_stream_key(42, NG_RNG_SHUFFLE), 1);
    NGT_OK(ng_batches_next(&b, &t));
    NGT_OK(ng_tensor_get(g_cpu, &t, got));
    for (c = 0; c < B; c++) NGT_CHECK(got[c * DIM] == (float)(100 * perm[10 + c]), "after seek, column %d", c);
    NGT_CHECK(ng_batches_seek(&b, 0, N + 1) == NG_ERR_INVALID_ARG, "seek past the end accepted");
    ng_batches_free(&b);
    /* three ranks shard a batch of 5 as 1 + 2 + 2 columns: disjoint, together the global batch */
    {
        int seen[N] = {0}, world = 3, total = 0;
        for (r = 0; r < world; r++) {
            ng_batches s;
            NGT_OK(ng_batches_init(&s, g_cpu, x, DIM, N, B, 42, r, world));
            NGT_OK(ng_batches_next(&s, &t));
            NGT_OK(ng_tensor_get(g_cpu, &t, got));
            for (c = 0; c < t.cols; c++) seen[(int)(got[c * DIM] / 100)]++, total++;
            ng_batches_free(&s);
        }
        ng_rng_permutation(perm, N, ng_rng_stream_key(42, NG_RNG_SHUFFLE), 0);
        NGT_CHECK(total == B, "shards hold %d columns, want %d", total, B);
        for (c = 0; c < B; c++) NGT_CHECK(seen[perm[c]] == 1, "example %d seen %d times", perm[c], seen[perm[c]]);
    }
    NGT_CHECK(ng_batches_init(&b, g_cpu, x, DIM, N, N + 1, 1, 0, 1) == NG_ERR_INVALID_ARG &&
                  strstr(ng_last_error(), "--batch"),
              "a batch larger than the set: %s", ng_last_error());
    ng_batches_free(&b);
    return NGT_PASS;
}

static char g_logged[1024];
static int g_log_calls;
static void capture(ng_log_level level, const char *where, const char *msg, void *user) {
    (void)user;
    g_log_calls++;
    snprintf(g_logged, sizeof g_logged, "%s|%s|%s", ng_log_level_name(level), where, msg);
}

static int test_log_interrupt_rng(void) {
    ng_log_set(capture, NULL);
    ng_log(NG_LOG_WARN, "fang", "update %d: %s", 7, "float64");
    ng_log_set(NULL, NULL);
    ng_log(NG_LOG_WARN, "fang", "dropped");
    NGT_CHECK(g_log_calls == 1 && strcmp(g_logged, "warning|fang|update 7: float64") == 0, "log: %d calls, '%s'",
              g_log_calls, g_logged);
    NGT_CHECK(!ng_interrupted() && ng_check_interrupt("x") == NG_OK, "interrupt pending at start");
    ng_interrupt_request();
    NGT_CHECK(ng_interrupted() && ng_check_interrupt("AIS") == NG_ERR_INTERRUPTED && strstr(ng_last_error(), "AIS"),
              "interrupt: %s", ng_last_error());
    ng_interrupt_clear();
    NGT_CHECK(!ng_interrupted(), "interrupt not cleared");
    NGT_CHECK(ng_rng_stream_key_rank(9, NG_RNG_GIBBS, 0) == ng_rng_stream_key(9, NG_RNG_GIBBS), "rank 0 key");
    NGT_CHECK(ng_rng_stream_key_rank(9, NG_RNG_GIBBS, 1) != ng_rng_stream_key_rank(9, NG_RNG_GIBBS, 2) &&
                  ng_rng_stream_key_rank(9, NG_RNG_GIBBS, 1) != ng_rng_stream_key(9, NG_RNG_GIBBS) &&
                  ng_rng_stream_key_rank(9, NG_RNG_GIBBS, 1) != ng_rng_stream_key_rank(9, NG_RNG_AIS, 1),
              "rank keys collide");
    return NGT_PASS;
}

static int test_op_table(void) {
    ng_op_args a;
    ng_status s;
    int op;
    for (op = 0; op < NG_OP_COUNT; op++) {
        NGT_CHECK(strcmp(ng_op_name((ng_op)op), "?") != 0, "op %d has no name", op);
        NGT_CHECK(ng_supports_op(g_cpu, (ng_op)op), "the CPU backend does not support %s", ng_op_name((ng_op)op));
    }
    memset(&a, 0, sizeof a);
    a.op = NG_OP_COUNT;
    s = ng_run_op(g_cpu, &a);
    NGT_CHECK(s == NG_ERR_INVALID_ARG, "unknown op accepted: %s", ng_status_name(s));
    a.op = NG_OP_GIBBS_SAMPLE;
    a.gibbs_sample.rows = 4;
    a.gibbs_sample.cols = 2;
    a.gibbs_sample.pre = (const float *)&a; /* never read: the checks refuse ldp first */
    a.gibbs_sample.ldp = 3;
    a.gibbs_sample.prob = (float *)&a;
    a.gibbs_sample.ldq = 4;
    s = ng_run_op(g_cpu, &a);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "gibbs_sample") && strstr(ng_last_error(), "ldp"),
              "bad ldp: %s", ng_last_error());
    return NGT_PASS;
}

int main(void) {
    if (ng_backend_cpu_init(&g_cpu) != NG_OK) {
        printf("cpu backend: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    NGT_RUN(test_arena_many_views_and_names);
    NGT_RUN(test_arena_sticky_errors);
    NGT_RUN(test_arena_packed_and_nd);
    NGT_RUN(test_model_params);
    NGT_RUN(test_batches);
    NGT_RUN(test_log_interrupt_rng);
    NGT_RUN(test_op_table);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
