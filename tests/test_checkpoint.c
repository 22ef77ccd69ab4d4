/* test_checkpoint.c: training checkpoints of the trainer (natgrad/train.h) in the container format
 * (natgrad/checkpoint.h; the format itself is tested field by field in test_checkpoint_format.c),
 * the 0.1 RBM format it still reads, and the run driver around them.
 * Exact references only:
 *   - a round trip restores every state tensor (parameters, particles, velocity, preconditioner
 *     state) and counter bit for bit, and saving the loaded trainer reproduces the file byte for
 *     byte; a run resumed from a checkpoint in a fresh backend, model and trainer (built from the
 *     checkpoint's own configuration, as `rbm train --resume` does) ends bit-identical to the run
 *     done in one go, across epoch boundaries, for SGD, centering and FANG;
 *   - the model part and the optimizer part saved to separate files load into the same state;
 *   - fields with valid CRCs but impossible or mismatched values are refused with the field named
 *     and the trainer left exactly as it was; a failed save leaves the previous file intact;
 *   - natgrad 0.1 checkpoints (tests/data/legacy_*.ckpt, written by 0.1 after 10 updates, and the
 *     same runs continued by 0.1 to 20 updates) load, and 10 more updates here reproduce 0.1's
 *     parameters; damaged 0.1 files (a header claiming more units than the payload holds, fields
 *     out of range) are refused naming the field;
 *   - an interrupted update rolls back (counters, data cursor, particles), and the run driver saves
 *     the last completed update on interruption and on a failed log write, drops the rows of
 *     updates after the checkpoint when a run resumes, and keeps time snapshots.
 * Files live in a mkdtemp directory removed at the end. The round trip and resume also run on the
 * CUDA backend when one answers (the emulator in make test). */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "natgrad/checkpoint.h"
#include "natgrad/data.h"
#include "natgrad/fang.h"
#include "natgrad/log.h"
#include "natgrad/rbm.h"

static char g_dir[512];
static ng_backend *g_cpu;
static int g_have_cuda;
static char g_cuda_reason[480];

static const char *path_in(const char *name) {
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *d = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        d = (unsigned char *)malloc((size_t)n + 1);
        if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
            free(d);
            d = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return d;
}

static int files_identical(const char *p1, const char *p2) {
    size_t l1 = 0, l2 = 0;
    unsigned char *d1 = read_all(p1, &l1), *d2 = read_all(p2, &l2);
    int same = d1 && d2 && l1 == l2 && memcmp(d1, d2, l1) == 0;
    if (!same && d1 && d2) {
        size_t i;
        for (i = 0; i < (l1 < l2 ? l1 : l2) && d1[i] == d2[i]; i++) {}
        printf("  %s and %s differ: %zu vs %zu bytes, first difference at byte %zu\n", p1, p2, l1, l2, i);
    }
    free(d1);
    free(d2);
    return same;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static ng_backend *fresh_backend(int cuda) {
    ng_backend *be = NULL;
    if ((cuda ? ng_backend_cuda_init(0, &be) : ng_backend_cpu_init(&be)) != NG_OK) return NULL;
    return be;
}

/* ---- a training set-up ------------------------------------------------------------------------ */

typedef struct setup {
    ng_backend *be;
    ng_dataset ds;
    ng_rbm rbm;
    ng_rbm_trainer rt;
    int have_ds, have_rbm, have_rt;
} setup;

static void setup_free(setup *s) {
    if (s->have_rt) ng_rbm_trainer_free(&s->rt);
    if (s->have_rbm) ng_rbm_free(&s->rbm);
    if (s->have_ds) ng_dataset_free(&s->ds);
    s->have_rt = s->have_rbm = s->have_ds = 0;
}

/* Bars and stripes (4x4, n examples cycling through the 30 patterns), an RBM with nh hidden units
 * initialised from init_seed, and the trainer of cfg. */
static ng_status setup_init(setup *s, ng_backend *be, int n, int nh, const ng_rbm_config *cfg, uint64_t init_seed) {
    float mean[16] = {0};
    int i;
    memset(s, 0, sizeof *s);
    s->be = be;
    NG_TRY(ng_dataset_make_bars_stripes(4, n, &s->ds));
    s->have_ds = 1;
    for (i = 0; i < s->ds.dim * s->ds.n; i++) mean[i % 16] += s->ds.x[i] / (float)s->ds.n;
    NG_TRY(ng_rbm_init(be, s->ds.dim, nh, &s->rbm));
    s->have_rbm = 1;
    NG_TRY(ng_rbm_init_params(&s->rbm, init_seed, 0.1f, mean));
    NG_TRY(ng_rbm_trainer_init(&s->rt, &s->rbm, cfg, s->ds.x, s->ds.n, NULL));
    s->have_rt = 1;
    return NG_OK;
}

/* Train until t == until, logging (with the model's and rules' statistics) where t % 3 == 0, as a
 * run driver with --log-every 3 would (the statistics must not change the trajectory). */
static ng_status train_to(ng_rbm_trainer *rt, uint64_t until) {
    double row[NG_TRAIN_MAX_COLUMNS];
    while (rt->tr.t < until) NG_TRY(ng_rbm_trainer_step(rt, rt->tr.t % 3 == 0 ? row : NULL));
    return NG_OK;
}

/* Everything a checkpoint must restore, gathered on the host. */
typedef struct state {
    unsigned char *buf;
    size_t bytes;
    uint64_t t, rng_step;
    int epoch, pos;
} state;

static void state_free(state *s) {
    free(s->buf);
    memset(s, 0, sizeof *s);
}

static ng_status add_arena(state *s, ng_backend *be, const ng_arena *a) {
    int i;
    for (i = 0; i < ng_arena_count(a); i++) {
        const ng_tensor *t = ng_arena_view(a, i);
        size_t b = ng_tensor_count(t) * ng_dtype_size(t->dtype);
        unsigned char *nb = (unsigned char *)realloc(s->buf, s->bytes + b + 1);
        if (!nb) return ng_error(NG_ERR_OOM, "test: out of memory");
        s->buf = nb;
        NG_TRY(ng_tensor_get(be, t, s->buf + s->bytes));
        s->bytes += b;
    }
    return NG_OK;
}

static ng_status add_tensor(state *s, ng_backend *be, const ng_tensor *t) {
    size_t b = ng_tensor_count(t) * ng_dtype_size(t->dtype);
    unsigned char *nb = (unsigned char *)realloc(s->buf, s->bytes + b + 1);
    if (!nb) return ng_error(NG_ERR_OOM, "test: out of memory");
    s->buf = nb;
    NG_TRY(ng_tensor_get(be, t, s->buf + s->bytes));
    s->bytes += b;
    return NG_OK;
}

/* Parameters, particles, update-rule and preconditioner state, counters. FANG's "diag" view holds
 * wall-clock refit times (not part of the trajectory) and is left out unless with_diag. */
static ng_status state_take(setup *su, state *s, int with_diag) {
    const ng_arena *pa = &su->rt.pc->state;
    ng_tensor part;
    int i;
    memset(s, 0, sizeof *s);
    NG_TRY(add_arena(s, su->be, &su->rbm.base.params));
    NG_TRY(ng_model_statistic(ng_rbm_model(&su->rbm), "particles", &part));
    NG_TRY(add_tensor(s, su->be, &part));
    NG_TRY(add_arena(s, su->be, &su->rt.upd->state));
    for (i = 0; i < ng_arena_count(pa); i++)
        if (with_diag || strcmp(ng_arena_name(pa, i), "diag") != 0) NG_TRY(add_tensor(s, su->be, ng_arena_view(pa, i)));
    s->t = su->rt.tr.t;
    s->rng_step = ng_rbm_rng_step(&su->rbm);
    s->epoch = su->rt.data.epoch;
    s->pos = su->rt.data.pos;
    return NG_OK;
}

/* 0 when a and b are identical in every byte and counter. */
static int state_compare(const char *what, const state *a, const state *b) {
    if (a->bytes != b->bytes) {
        printf("  %s: state sizes differ (%zu vs %zu bytes)\n", what, a->bytes, b->bytes);
        return 1;
    }
    if (memcmp(a->buf, b->buf, a->bytes) != 0) {
        size_t i;
        for (i = 0; i < a->bytes && a->buf[i] == b->buf[i]; i++) {}
        printf("  %s: state tensors differ (first byte %zu of %zu)\n", what, i, a->bytes);
        return 1;
    }
    if (a->t != b->t || a->rng_step != b->rng_step || a->epoch != b->epoch || a->pos != b->pos) {
        printf("  %s: counters differ: t %llu/%llu rng_step %llu/%llu epoch %d/%d pos %d/%d\n", what,
               (unsigned long long)a->t, (unsigned long long)b->t, (unsigned long long)a->rng_step,
               (unsigned long long)b->rng_step, a->epoch, b->epoch, a->pos, b->pos);
        return 1;
    }
    return 0;
}

static void base_config(ng_rbm_config *cfg, ng_rbm_optimizer opt) {
    ng_rbm_config_default(cfg);
    cfg->batch = 8;
    cfg->particles = 24;
    cfg->k = 1;
    cfg->optimizer = opt;
    cfg->lr = 0.05f;
    cfg->lr_gamma = 50.0f;
    cfg->momentum = 0.5f;
    cfg->weight_decay = 0.001f;
    cfg->center_rate = 0.05f;
    cfg->fang_refit_every = 4;
    cfg->seed = 17;
}

static const ng_rbm_optimizer g_opts[4] = {NG_RBM_OPT_SGD, NG_RBM_OPT_CENTERING, NG_RBM_OPT_FANG, NG_RBM_OPT_DIAG};

/* ---- round trip and exact resume ---------------------------------------------------------------- */

/* Train, save, load into a fresh trainer initialised differently, compare; save the loaded trainer:
 * the two files must be identical. */
static int round_trip(ng_backend *be, ng_rbm_optimizer opt) {
    setup a, b;
    state sa, sb;
    ng_rbm_config cfg;
    int r = NGT_FAIL;
    const char *p1 = path_in("rt1.ckpt"), *p2 = path_in("rt2.ckpt");
    base_config(&cfg, opt);
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (setup_init(&a, be, 40, 6, &cfg, 3) != NG_OK || train_to(&a.rt, 13) != NG_OK ||
        ng_rbm_trainer_save(&a.rt, p1) != NG_OK || setup_init(&b, be, 40, 6, &cfg, 99) != NG_OK ||
        ng_rbm_trainer_load(&b.rt, p1) != NG_OK || state_take(&a, &sa, 1) != NG_OK ||
        state_take(&b, &sb, 1) != NG_OK || ng_rbm_trainer_save(&b.rt, p2) != NG_OK) {
        printf("  %s: %s\n", ng_rbm_optimizer_name(opt), ng_last_error());
        goto done;
    }
    if (state_compare(ng_rbm_optimizer_name(opt), &sa, &sb)) goto done;
    if (!files_identical(p1, p2)) goto done;
    r = NGT_PASS;
done:
    state_free(&sa);
    state_free(&sb);
    setup_free(&a);
    setup_free(&b);
    return r;
}

static int round_trip_all(int cuda) {
    ng_backend *be = cuda ? fresh_backend(1) : g_cpu;
    int i, r = NGT_PASS;
    if (!be) return ngt_skip(g_cuda_reason);
    for (i = 0; i < 4 && r == NGT_PASS; i++) r = round_trip(be, g_opts[i]);
    if (cuda) ng_backend_free(be);
    return r;
}
static int test_round_trip_cpu(void) { return round_trip_all(0); }
static int test_round_trip_cuda(void) { return g_have_cuda ? round_trip_all(1) : ngt_skip(g_cuda_reason); }

/* 37 updates in one go against 16 + save + (new backend, model and trainer built from the
 * checkpoint's own configuration, initialised differently) load + 21: bit-identical states and
 * byte-identical files. 40 examples in batches of 8 is 5 batches an epoch: both runs cross epochs,
 * and the save falls inside one. */
static int resume_one(int cuda, ng_rbm_optimizer opt) {
    ng_backend *be1 = cuda ? fresh_backend(1) : g_cpu, *be2 = cuda ? fresh_backend(1) : g_cpu;
    setup a, b, c;
    state sa, sc;
    ng_rbm_config cfg, cfg2;
    ng_ckpt *ck = NULL;
    int nv = 0, nh = 0, n = 0, r = NGT_FAIL;
    const char *p_full = path_in("full.ckpt"), *p_half = path_in("half.ckpt"), *p_end = path_in("end.ckpt");
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    memset(&sa, 0, sizeof sa);
    memset(&sc, 0, sizeof sc);
    if (!be1 || !be2) {
        r = ngt_skip(g_cuda_reason);
        goto done;
    }
    base_config(&cfg, opt);
    if (setup_init(&a, be1, 40, 6, &cfg, 3) != NG_OK || train_to(&a.rt, 37) != NG_OK ||
        ng_rbm_trainer_save(&a.rt, p_full) != NG_OK || state_take(&a, &sa, 0) != NG_OK)
        goto fail;
    if (setup_init(&b, be1, 40, 6, &cfg, 3) != NG_OK || train_to(&b.rt, 16) != NG_OK ||
        ng_rbm_trainer_save(&b.rt, p_half) != NG_OK)
        goto fail;
    setup_free(&b);
    if (ng_rbm_checkpoint_read(p_half, NG_CKPT_HEADER_ONLY, &ck) != NG_OK ||
        ng_rbm_checkpoint_config(ck, &nv, &nh, &cfg2, &n) != NG_OK)
        goto fail;
    ng_ckpt_free(ck);
    ck = NULL;
    NGT_CHECK(nv == 16 && nh == 6 && n == 40 && cfg2.optimizer == opt && cfg2.seed == cfg.seed &&
                  cfg2.lr == cfg.lr && cfg2.momentum == cfg.momentum && cfg2.batch == cfg.batch,
              "checkpoint config: %dx%d, %d examples, optimizer %d, seed %llu", nv, nh, n, (int)cfg2.optimizer,
              (unsigned long long)cfg2.seed);
    if (setup_init(&c, be2, 40, nh, &cfg2, 12345) != NG_OK || ng_rbm_trainer_load(&c.rt, p_half) != NG_OK ||
        train_to(&c.rt, 37) != NG_OK || ng_rbm_trainer_save(&c.rt, p_end) != NG_OK || state_take(&c, &sc, 0) != NG_OK)
        goto fail;
    if (state_compare(ng_rbm_optimizer_name(opt), &sa, &sc)) goto done;
    /* FANG's diagnostics hold refit wall-clock times, so only SGD and centering files are compared */
    if (opt != NG_RBM_OPT_FANG && !files_identical(p_full, p_end)) goto done;
    r = NGT_PASS;
    goto done;
fail:
    printf("  %s: %s\n", ng_rbm_optimizer_name(opt), ng_last_error());
done:
    ng_ckpt_free(ck);
    state_free(&sa);
    state_free(&sc);
    setup_free(&a);
    setup_free(&b);
    setup_free(&c);
    if (cuda) {
        ng_backend_free(be1);
        ng_backend_free(be2);
    }
    return r;
}

static int resume_all(int cuda) {
    int i, r = NGT_PASS;
    for (i = 0; i < 4 && r == NGT_PASS; i++) r = resume_one(cuda, g_opts[i]);
    return r;
}
static int test_resume_bit_exact_cpu(void) { return resume_all(0); }
static int test_resume_bit_exact_cuda(void) { return g_have_cuda ? resume_all(1) : ngt_skip(g_cuda_reason); }

/* The model part and the optimizer part written to two files (as per-rank optimizer state will be)
 * load into the same state as one file. */
static int test_separate_parts(void) {
    setup a, b;
    state sa, sb;
    ng_rbm_config cfg;
    ng_ckpt *cm = NULL, *co = NULL;
    int r = NGT_FAIL;
    const char *pm = path_in("model.ckpt"), *po = path_in("optim.ckpt");
    base_config(&cfg, NG_RBM_OPT_FANG);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    if (setup_init(&a, g_cpu, 40, 6, &cfg, 3) != NG_OK || train_to(&a.rt, 9) != NG_OK ||
        ng_trainer_save(&a.rt.tr, pm, NG_SAVE_MODEL) != NG_OK || ng_trainer_save(&a.rt.tr, po, NG_SAVE_OPTIM) != NG_OK ||
        setup_init(&b, g_cpu, 40, 6, &cfg, 77) != NG_OK || ng_ckpt_read(pm, NG_CKPT_READ_ALL, &cm) != NG_OK ||
        ng_ckpt_read(po, NG_CKPT_READ_ALL, &co) != NG_OK)
        goto fail;
    /* the model file holds no optimizer state and the optimizer file no parameters */
    NGT_CHECK(ng_ckpt_find(cm, "model.W") && !ng_ckpt_find(cm, "sgd.velocity") && !ng_ckpt_find(co, "model.W") &&
                  ng_ckpt_find(co, "fang.S_un") && ng_ckpt_find(co, "sgd.velocity"),
              "parts are not separated");
    if (ng_trainer_load(&b.rt.tr, cm, NG_SAVE_MODEL) != NG_OK || ng_trainer_load(&b.rt.tr, co, NG_SAVE_OPTIM) != NG_OK ||
        state_take(&a, &sa, 1) != NG_OK || state_take(&b, &sb, 1) != NG_OK)
        goto fail;
    if (state_compare("model + optimizer files", &sa, &sb)) goto done;
    r = NGT_PASS;
    goto done;
fail:
    printf("  %s\n", ng_last_error());
done:
    ng_ckpt_free(cm);
    ng_ckpt_free(co);
    state_free(&sa);
    state_free(&sb);
    setup_free(&a);
    setup_free(&b);
    return r;
}

/* ---- fields with a valid CRC but impossible or mismatched values ------------------------------- */

/* Rewrite `src` into `dst` with one field changed (through the container, so the CRCs are valid):
 * kind 'i' i64 value, 'u' u64, 'f' f32, 's' string; "drop" removes a tensor by name. */
typedef struct field_edit {
    const char *key;
    char kind;
    int64_t i;
    double f;
    const char *s;
    const char *must_mention; /* in the refusal message */
} field_edit;

static ng_status rewrite(const char *src, const char *dst, const field_edit *e) {
    ng_ckpt *in = NULL, *out = NULL;
    ng_status s;
    int i;
    NG_TRY(ng_ckpt_read(src, NG_CKPT_READ_ALL, &in));
    s = ng_ckpt_new(&out);
    for (i = 0; s == NG_OK && i < ng_ckpt_n_kv(in); i++) {
        ng_kv_type t;
        const char *key = ng_ckpt_kv_at(in, i, &t);
        if (strcmp(key, e->key) == 0) {
            if (e->kind == 'i') s = ng_ckpt_set_i64(out, key, e->i);
            else if (e->kind == 'u') s = ng_ckpt_set_u64(out, key, (uint64_t)e->i);
            else if (e->kind == 'f') s = ng_ckpt_set_f32(out, key, (float)e->f);
            else if (e->kind == 's') s = ng_ckpt_set_str(out, key, e->s);
            continue;
        }
        if (t == NG_KV_U64) {
            uint64_t v;
            s = ng_ckpt_get_u64(in, key, &v);
            if (s == NG_OK) s = ng_ckpt_set_u64(out, key, v);
        } else if (t == NG_KV_I64) {
            int64_t v;
            s = ng_ckpt_get_i64(in, key, &v);
            if (s == NG_OK) s = ng_ckpt_set_i64(out, key, v);
        } else if (t == NG_KV_F32) {
            float v;
            s = ng_ckpt_get_f32(in, key, &v);
            if (s == NG_OK) s = ng_ckpt_set_f32(out, key, v);
        } else if (t == NG_KV_F64) {
            double v;
            s = ng_ckpt_get_f64(in, key, &v);
            if (s == NG_OK) s = ng_ckpt_set_f64(out, key, v);
        } else {
            const char *v;
            s = ng_ckpt_get_str(in, key, &v);
            if (s == NG_OK) s = ng_ckpt_set_str(out, key, v);
        }
    }
    for (i = 0; s == NG_OK && i < ng_ckpt_n_tensors(in); i++) {
        const ng_ckpt_tensor *t = ng_ckpt_tensor_at(in, i);
        if (e->kind == 'd' && strcmp(t->name, e->key) == 0) continue;
        if (e->kind == 'r' && strcmp(t->name, e->key) == 0) { /* reshape: swap the two dims */
            uint64_t d[2];
            d[0] = t->dims[1];
            d[1] = t->dims[0];
            s = ng_ckpt_add_tensor(out, t->name, t->dtype, 2, d, t->data);
            continue;
        }
        s = ng_ckpt_add_tensor(out, t->name, t->dtype, t->ndim, t->dims, t->data);
    }
    if (s == NG_OK) s = ng_ckpt_write(out, dst);
    ng_ckpt_free(in);
    ng_ckpt_free(out);
    return s;
}

/* Every edited field must be refused by ng_rbm_checkpoint_config (as `rbm train --resume` reads it)
 * or by ng_rbm_trainer_load, with the field named and the trainer unchanged. */
static int test_bad_fields(void) {
    static const field_edit edits[] = {
        {"rbm.k", 'i', 0, 0, NULL, "rbm.k"},
        {"rbm.k", 'i', 2, 0, NULL, "rbm.k"},                  /* valid, but not this trainer's */
        {"rbm.n_hidden", 'i', -3, 0, NULL, "rbm.n_hidden"},
        {"rbm.n_hidden", 'i', 7, 0, NULL, "7"},
        {"rbm.estimator", 's', 0, 0, "gibbs", "rbm.estimator"},
        {"rbm.particles", 'i', 0, 0, NULL, "rbm.particles"},
        {"rbm.batch", 'i', 1000, 0, NULL, "rbm.batch"},
        {"rbm.binarize_train", 'i', 2, 0, NULL, "rbm.binarize_train"},
        {"precond.kind", 's', 0, 0, "newton", "precond.kind"},
        {"update.kind", 's', 0, 0, "adam", "update.kind"},
        {"sgd.momentum", 'f', 0, 1.5, NULL, "sgd.momentum"},
        {"sgd.lr", 'f', 0, -1.0, NULL, "sgd.lr"},
        {"sgd.lr", 'f', 0, 1e38, NULL, "sgd.lr"},
        {"fang.tau", 'f', 0, 0.5, NULL, "fang.tau"},
        {"fang.refit_every", 'i', 0, 0, NULL, "fang.refit_every"},
        {"data.pos", 'i', 41, 0, NULL, "data.pos"},
        {"data.epoch", 'i', -1, 0, NULL, "data.epoch"},
        {"data.n", 'i', 41, 0, NULL, "41"},
        {"data.rank", 'i', 1, 0, NULL, "data.rank"},
        {"run.seed", 'u', 18, 0, NULL, "run.seed"},
        {"run.t", 'u', (int64_t)1 << 60, 0, NULL, "run.t"},
        {"model.kind", 's', 0, 0, "net", "model.kind"},
        {"model.W", 'd', 0, 0, NULL, "model.W"},
        {"model.W", 'r', 0, 0, NULL, "model.W"},
        {"fang.S_un", 'd', 0, 0, NULL, "fang.S_un"},
        {"rbm.particles", 'd', 0, 0, NULL, "rbm.particles"},
    };
    setup a, v;
    state before, after;
    ng_rbm_config cfg, cfg2;
    const char *good = path_in("good.ckpt"), *bad = path_in("bad.ckpt");
    size_t i;
    int r = NGT_PASS;
    base_config(&cfg, NG_RBM_OPT_FANG);
    memset(&a, 0, sizeof a);
    memset(&v, 0, sizeof v);
    NGT_OK(setup_init(&a, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(train_to(&a.rt, 5));
    NGT_OK(ng_rbm_trainer_save(&a.rt, good));
    setup_free(&a);
    NGT_OK(setup_init(&v, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(train_to(&v.rt, 2));
    NGT_OK(state_take(&v, &before, 1));
    for (i = 0; i < sizeof edits / sizeof edits[0] && r == NGT_PASS; i++) {
        const field_edit *e = &edits[i];
        ng_ckpt *ck = NULL;
        int nv, nh, n;
        ng_status s1 = NG_OK, s2 = NG_OK;
        if (rewrite(good, bad, e) != NG_OK) {
            /* the writer refuses what no reader could accept (e.g. a dim of 0): fine */
            printf("  %s: the container refuses to write it: %s\n", e->key, ng_last_error());
            continue;
        }
        s1 = ng_rbm_checkpoint_read(bad, NG_CKPT_READ_ALL, &ck);
        if (s1 == NG_OK) s1 = ng_rbm_checkpoint_config(ck, &nv, &nh, &cfg2, &n);
        ng_ckpt_free(ck);
        s2 = ng_rbm_trainer_load(&v.rt, bad);
        if (s2 == NG_OK) {
            printf("  edit %s: the trainer accepted it (config check: %s)\n", e->key, ng_status_name(s1));
            r = NGT_FAIL;
            break;
        }
        if (!strstr(ng_last_error(), e->must_mention) || !strstr(ng_last_error(), bad)) {
            printf("  edit %s: message '%s' does not name '%s' and the file\n", e->key, ng_last_error(), e->must_mention);
            r = NGT_FAIL;
            break;
        }
        printf("  %-18s -> %s\n", e->key, ng_last_error());
        NGT_OK(state_take(&v, &after, 1));
        if (state_compare(e->key, &before, &after)) r = NGT_FAIL;
        state_free(&after);
    }
    state_free(&before);
    setup_free(&v);
    return r;
}

/* A checkpoint that cannot be written (its directory is missing; a directory stands where the file
 * goes) fails with the path named and leaves the previous checkpoint and no .tmp behind. */
static int test_failed_save_keeps_old(void) {
    setup a;
    ng_rbm_config cfg;
    const char *p = path_in("keep.ckpt"), *dirp = path_in("adir.ckpt");
    char tmp[1100], missing[1100];
    size_t l1 = 0, l2 = 0;
    unsigned char *d1, *d2;
    ng_status s;
    struct stat st;
    base_config(&cfg, NG_RBM_OPT_CENTERING);
    memset(&a, 0, sizeof a);
    NGT_OK(setup_init(&a, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(train_to(&a.rt, 3));
    NGT_OK(ng_rbm_trainer_save(&a.rt, p));
    d1 = read_all(p, &l1);
    NGT_OK(train_to(&a.rt, 6));
    NGT_CHECK(mkdir(dirp, 0700) == 0, "mkdir %s: %s", dirp, strerror(errno));
    s = ng_rbm_trainer_save(&a.rt, dirp);
    NGT_CHECK(s == NG_ERR_IO && strstr(ng_last_error(), dirp), "saving onto a directory: %s %s", ng_status_name(s),
              ng_last_error());
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.ckpt", g_dir);
    s = ng_rbm_trainer_save(&a.rt, missing);
    NGT_CHECK(s == NG_ERR_IO && strstr(ng_last_error(), "no/such/dir"), "saving into a missing directory: %s %s",
              ng_status_name(s), ng_last_error());
    d2 = read_all(p, &l2);
    NGT_CHECK(d1 && d2 && l1 == l2 && memcmp(d1, d2, l1) == 0, "the previous checkpoint changed");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    NGT_CHECK(stat(tmp, &st) != 0, "a .tmp file was left behind");
    free(d1);
    free(d2);
    setup_free(&a);
    return NGT_PASS;
}

/* Parameters only, into an evaluation RBM (no estimator), from a training checkpoint; a checkpoint
 * of another shape is refused naming the file, the RBM unchanged. */
static int test_load_params(void) {
    setup a;
    ng_rbm_config cfg;
    ng_rbm e, w;
    float W1[16 * 6], W2[16 * 6], Wx[16 * 7], Wy[16 * 7];
    const char *p = path_in("params.ckpt");
    ng_status s;
    base_config(&cfg, NG_RBM_OPT_FANG);
    memset(&a, 0, sizeof a);
    NGT_OK(setup_init(&a, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(train_to(&a.rt, 4));
    NGT_OK(ng_rbm_trainer_save(&a.rt, p));
    NGT_OK(ng_rbm_init(g_cpu, 16, 6, &e));
    NGT_OK(ng_rbm_load_params(&e, p));
    NGT_OK(ng_rbm_get_params(&a.rbm, W1, NULL, NULL));
    NGT_OK(ng_rbm_get_params(&e, W2, NULL, NULL));
    NGT_CHECK(memcmp(W1, W2, sizeof W1) == 0, "parameters differ after load_params");
    NGT_OK(ng_rbm_init(g_cpu, 16, 7, &w));
    NGT_OK(ng_rbm_init_params(&w, 5, 0.1f, NULL));
    NGT_OK(ng_rbm_get_params(&w, Wx, NULL, NULL));
    s = ng_rbm_load_params(&w, p);
    NGT_OK(ng_rbm_get_params(&w, Wy, NULL, NULL));
    NGT_CHECK(s == NG_ERR_FORMAT && strstr(ng_last_error(), p), "load_params into 16x7: %s %s", ng_status_name(s),
              ng_last_error());
    NGT_CHECK(memcmp(Wx, Wy, sizeof Wx) == 0, "a refused load_params changed the RBM");
    ng_rbm_free(&e);
    ng_rbm_free(&w);
    setup_free(&a);
    return NGT_PASS;
}

/* ---- natgrad 0.1 checkpoints ---------------------------------------------------------------------- */

/* tests/data/legacy_<opt>_10.ckpt were written by natgrad 0.1 (`rbm train --data bars-stripes
 * --hidden 8 --batch 10 --particles 10`, centering lr 0.1 seed 7; FANG --fang-refit-every 3
 * --momentum 0.5 --weight-decay 0.001 lr 0.05 seed 8) after 10 updates, legacy_<opt>_20.ckpt by
 * 0.1 continuing them to 20. Resuming the first here for 10 updates must give 0.1's parameters:
 * bit for bit on the machine that wrote the files, to 1e-5 where OpenBLAS picks other kernels. */
static int legacy_resume(const char *name) {
    char p10[256], p20[256];
    ng_ckpt *ck = NULL, *c20 = NULL;
    ng_rbm_config cfg;
    int nv, nh, n;
    setup a;
    const ng_ckpt_tensor *w20;
    float W[16 * 8];
    ng_rbm ev;
    int r;
    snprintf(p10, sizeof p10, "tests/data/legacy_%s_10.ckpt", name);
    snprintf(p20, sizeof p20, "tests/data/legacy_%s_20.ckpt", name);
    NGT_OK(ng_rbm_checkpoint_read(p10, NG_CKPT_READ_ALL, &ck));
    NGT_OK(ng_rbm_checkpoint_config(ck, &nv, &nh, &cfg, &n));
    ng_ckpt_free(ck);
    NGT_CHECK(nv == 16 && nh == 8 && n == 30, "%s: %dx%d on %d examples", p10, nv, nh, n);
    memset(&a, 0, sizeof a);
    NGT_OK(setup_init(&a, g_cpu, 0, nh, &cfg, 1));
    NGT_OK(ng_rbm_trainer_load(&a.rt, p10));
    NGT_CHECK(a.rt.tr.t == 10, "resumed at %llu", (unsigned long long)a.rt.tr.t);
    NGT_OK(train_to(&a.rt, 20));
    NGT_OK(ng_rbm_get_params(&a.rbm, W, NULL, NULL));
    NGT_OK(ng_rbm_checkpoint_read(p20, NG_CKPT_READ_ALL, &c20));
    w20 = ng_ckpt_find(c20, "model.W");
    NGT_CHECK(w20 && w20->count == 16 * 8, "%s: no model.W", p20);
    r = ngt_compare("W after 10 more updates vs natgrad 0.1", W, (const float *)w20->data, 16 * 8, 1e-6, 1e-5);
    printf("  %s: W %s natgrad 0.1's%s\n", name, memcmp(W, w20->data, sizeof W) == 0 ? "equals" : "matches",
           memcmp(W, w20->data, sizeof W) == 0 ? " bit for bit" : " within 1e-5");
    ng_ckpt_free(c20);
    setup_free(&a);
    NGT_CHECK(r == 0, "resumed 0.1 run diverges from 0.1's own continuation");
    /* and evaluation reads the parameters of a 0.1 file */
    NGT_OK(ng_rbm_init(g_cpu, 16, 8, &ev));
    NGT_OK(ng_rbm_load_params(&ev, p20));
    ng_rbm_free(&ev);
    return NGT_PASS;
}
static int test_legacy_centering(void) { return legacy_resume("centering"); }
static int test_legacy_fang(void) { return legacy_resume("fang"); }

/* Damaged 0.1 files, CRC recomputed so that the field checks are what refuses them: a header that
 * claims more hidden units than the payload holds (0.1 read past its buffer there), fields out of
 * range, a payload count that lies, a truncated file. */
static void legacy_fix_crc(unsigned char *d, size_t len) {
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int k;
    for (i = 0; i + 4 < len + 0 && i < len - 4; i++) {
        crc ^= d[i];
        for (k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    crc ^= 0xFFFFFFFFu;
    memcpy(d + len - 4, &crc, 4);
}

static int test_legacy_damaged(void) {
    /* offsets in the 0.1 header (after 16 bytes of magic, version, header size) */
    static const struct { size_t off; uint32_t value; const char *mention; } cases[] = {
        {16 + 4, 5000, "payload_floats"},  /* n_hidden: more units than the payload holds */
        {16 + 4, 0, "n_hidden"},
        {16 + 16, 0, "k"},
        {16 + 20, 7, "estimator"},
        {16 + 24, 3, "optimizer"},
        {16 + 8, 1000, "batch"},           /* larger than n_train (30) */
        {16 + 104, 12, "payload_floats"},  /* low word of payload_floats */
        {16 + 116, 31, "pos"},
    };
    size_t len = 0, i;
    unsigned char *good = read_all("tests/data/legacy_fang_10.ckpt", &len), *d;
    const char *p = path_in("legacy_bad.ckpt");
    NGT_CHECK(good && len > 200, "cannot read tests/data/legacy_fang_10.ckpt (tests run from the repository root)");
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ng_ckpt *ck = NULL;
        ng_status s;
        FILE *f;
        d = (unsigned char *)malloc(len);
        memcpy(d, good, len);
        memcpy(d + cases[i].off, &cases[i].value, 4);
        legacy_fix_crc(d, len);
        f = fopen(p, "wb");
        NGT_CHECK(f && fwrite(d, 1, len, f) == len && fclose(f) == 0, "cannot write %s", p);
        free(d);
        s = ng_rbm_checkpoint_read(p, NG_CKPT_READ_ALL, &ck);
        ng_ckpt_free(ck);
        NGT_CHECK(s == NG_ERR_FORMAT && strstr(ng_last_error(), cases[i].mention) && strstr(ng_last_error(), p),
                  "header offset %zu = %u: %s '%s' (want a refusal naming %s)", cases[i].off, cases[i].value,
                  ng_status_name(s), ng_last_error(), cases[i].mention);
        printf("  offset %3zu = %-5u -> %s\n", cases[i].off, cases[i].value, ng_last_error());
    }
    /* truncated by one float: the CRC no longer sits where it should */
    {
        FILE *f = fopen(p, "wb");
        ng_ckpt *ck = NULL;
        ng_status s;
        NGT_CHECK(f && fwrite(good, 1, len - 4, f) == len - 4 && fclose(f) == 0, "cannot write %s", p);
        s = ng_rbm_checkpoint_read(p, NG_CKPT_READ_ALL, &ck);
        ng_ckpt_free(ck);
        NGT_CHECK(s == NG_ERR_FORMAT && strstr(ng_last_error(), "truncated"), "truncated 0.1 file: %s %s",
                  ng_status_name(s), ng_last_error());
    }
    free(good);
    return NGT_PASS;
}

/* ---- interruption and the run driver ------------------------------------------------------------ */

/* An interrupt pending when an update starts its Gibbs chain (k = 5: it is checked between
 * sweeps) makes the update fail with NG_ERR_INTERRUPTED and leaves the trainer as before it;
 * after clearing the interrupt the run continues exactly as an uninterrupted one. */
static int test_interrupt_rolls_back(void) {
    setup a, b;
    state s0, s1, sa, sb;
    ng_rbm_config cfg;
    ng_status s;
    base_config(&cfg, NG_RBM_OPT_CENTERING);
    cfg.k = 5;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    NGT_OK(setup_init(&a, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(setup_init(&b, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(train_to(&a.rt, 4));
    NGT_OK(train_to(&b.rt, 4));
    NGT_OK(state_take(&a, &s0, 1));
    ng_interrupt_request();
    s = ng_rbm_trainer_step(&a.rt, NULL);
    ng_interrupt_clear();
    NGT_CHECK(s == NG_ERR_INTERRUPTED, "an interrupted update returned %s (%s)", ng_status_name(s), ng_last_error());
    NGT_OK(state_take(&a, &s1, 1));
    NGT_CHECK(state_compare("after the interrupted update", &s0, &s1) == 0, "the interrupted update left traces");
    NGT_OK(train_to(&a.rt, 9));
    NGT_OK(train_to(&b.rt, 9));
    NGT_OK(state_take(&a, &sa, 1));
    NGT_OK(state_take(&b, &sb, 1));
    NGT_CHECK(state_compare("continued after an interrupt", &sa, &sb) == 0, "the interrupt changed the trajectory");
    state_free(&s0);
    state_free(&s1);
    state_free(&sa);
    state_free(&sb);
    setup_free(&a);
    setup_free(&b);
    return NGT_PASS;
}

typedef struct hook_ctx {
    uint64_t interrupt_at; /* request an interrupt when the monitor sees this update (0: never) */
    int calls;
} hook_ctx;

static const char *const g_monitor_cols[] = {"probe", NULL};

static ng_status test_monitor(void *user, ng_trainer *tr, double *v) {
    hook_ctx *h = (hook_ctx *)user;
    h->calls++;
    v[0] = (double)tr->t * 0.5;
    if (h->interrupt_at && tr->t == h->interrupt_at) ng_interrupt_request();
    return NG_OK;
}

static ng_status run_to(setup *su, uint64_t steps, const char *csv, const char *ckpt, int append, hook_ctx *h,
                        double snapshot_s, ng_run_result *res) {
    ng_run_config rc;
    memset(&rc, 0, sizeof rc);
    rc.steps = steps;
    rc.log_every = 2;
    rc.ckpt_every = 0;
    rc.snapshot_s = snapshot_s;
    rc.out_dir = g_dir;
    rc.csv_path = csv;
    rc.ckpt_path = ckpt;
    rc.append = append;
    rc.monitor = test_monitor;
    rc.user = h;
    return ng_run(&su->rt.tr, &rc, res);
}

/* The CSV without its time column (field 3), for comparing runs. */
static char *csv_without_time(const char *path) {
    size_t len = 0, i, o = 0;
    unsigned char *d = read_all(path, &len);
    char *out;
    int field = 0;
    if (!d) return NULL;
    out = (char *)malloc(len + 1);
    for (i = 0; i < len; i++) {
        if (d[i] == '\n') field = 0;
        else if (d[i] == ',') field++;
        if (field == 2) continue; /* the time column and the comma before it */
        out[o++] = (char)d[i];
    }
    out[o] = '\0';
    free(d);
    return out;
}

/* An interrupt mid-run: the driver saves the last completed update and says so; resuming (append)
 * drops nothing that belongs and continues the CSV; the final CSV (time column aside) and state equal
 * those of an uninterrupted run. The monitor's columns reach the CSV. */
static int test_run_interrupt_resume(void) {
    setup a, b, c;
    ng_rbm_config cfg;
    ng_run_result ra, rb, rc2;
    hook_ctx ha = {0, 0}, hb = {8, 0}, hc = {0, 0};
    state sa, sc;
    const char *csv_a = path_in("a.csv"), *ck_a = path_in("a.ckpt"), *csv_b = path_in("b.csv"), *ck_b = path_in("b.ckpt");
    char *ta, *tb;
    /* centering: every CSV column is then a function of the trajectory (FANG logs refit times) */
    base_config(&cfg, NG_RBM_OPT_CENTERING);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    NGT_OK(setup_init(&a, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(ng_trainer_init(&a.rt.tr, a.rt.tr.model, a.rt.pc, a.rt.upd, &a.rt.data, cfg.seed, g_monitor_cols));
    NGT_OK(run_to(&a, 20, csv_a, ck_a, 0, &ha, 0.0, &ra));
    NGT_CHECK(!ra.interrupted && ra.end == 20 && ra.saved, "uninterrupted run: end %llu interrupted %d saved %d",
              (unsigned long long)ra.end, ra.interrupted, ra.saved);
    NGT_OK(setup_init(&b, g_cpu, 40, 6, &cfg, 3));
    NGT_OK(ng_trainer_init(&b.rt.tr, b.rt.tr.model, b.rt.pc, b.rt.upd, &b.rt.data, cfg.seed, g_monitor_cols));
    NGT_OK(run_to(&b, 20, csv_b, ck_b, 0, &hb, 0.0, &rb));
    ng_interrupt_clear();
    /* the monitor of update 8 (log every 2) asks to stop; the next loop turn stops */
    NGT_CHECK(rb.interrupted && rb.end == 8 && rb.saved, "interrupted run: end %llu interrupted %d saved %d",
              (unsigned long long)rb.end, rb.interrupted, rb.saved);
    setup_free(&b);
    /* resume: a fresh set-up loads the checkpoint and continues the same CSV */
    NGT_OK(setup_init(&c, g_cpu, 40, 6, &cfg, 55));
    NGT_OK(ng_trainer_init(&c.rt.tr, c.rt.tr.model, c.rt.pc, c.rt.upd, &c.rt.data, cfg.seed, g_monitor_cols));
    NGT_OK(ng_rbm_trainer_load(&c.rt, ck_b));
    NGT_OK(run_to(&c, 20, csv_b, ck_b, 1, &hc, 0.0, &rc2));
    NGT_OK(state_take(&a, &sa, 0));
    NGT_OK(state_take(&c, &sc, 0));
    NGT_CHECK(state_compare("interrupted + resumed vs one run", &sa, &sc) == 0, "resumed run diverged");
    ta = csv_without_time(csv_a);
    tb = csv_without_time(csv_b);
    NGT_CHECK(ta && tb && strcmp(ta, tb) == 0, "CSV logs differ:\n--- one run\n%s--- interrupted + resumed\n%s",
              ta ? ta : "(none)", tb ? tb : "(none)");
    NGT_CHECK(strstr(ta, "probe") != NULL, "monitor column missing from the header");
    free(ta);
    free(tb);
    state_free(&sa);
    state_free(&sc);
    setup_free(&a);
    setup_free(&c);
    return NGT_PASS;
}

/* A resume drops the CSV rows of updates after the checkpoint (those of a killed run), keeps the
 * rest, and refuses to append to a log with other columns. */
static int test_csv_truncate(void) {
    const char *p = path_in("t.csv");
    FILE *f = fopen(p, "w");
    size_t len = 0;
    unsigned char *d;
    NGT_CHECK(f != NULL, "cannot write %s", p);
    fputs("step,epoch,x\n2,0,1\n4,0,2\n6,1,3\n8,1,4\n", f);
    fclose(f);
    NGT_OK(ng_csv_truncate(p, 5));
    d = read_all(p, &len);
    NGT_CHECK(d && len == strlen("step,epoch,x\n2,0,1\n4,0,2\n") &&
                  memcmp(d, "step,epoch,x\n2,0,1\n4,0,2\n", len) == 0,
              "after truncating to step 5: '%.*s'", (int)len, d ? (const char *)d : "");
    free(d);
    NGT_OK(ng_csv_truncate(path_in("none.csv"), 3)); /* a missing log is nothing to truncate */
    return NGT_PASS;
}

/* A log that cannot be written ends the run with an error naming it, after the checkpoint of the
 * last completed update was saved. The CSV is limited by RLIMIT_FSIZE (SIGXFSZ ignored) to a size
 * that its rows outgrow while the small checkpoint still fits. */
static int test_run_log_write_failure(void) {
    setup a;
    ng_rbm_config cfg;
    ng_run_result res;
    hook_ctx h = {0, 0};
    struct rlimit old, lim;
    const char *csv = path_in("full.csv"), *ck = path_in("full_run.ckpt");
    ng_status s;
    ng_ckpt *c = NULL;
    uint64_t t = 0;
    size_t ck_size;
    base_config(&cfg, NG_RBM_OPT_SGD);
    cfg.momentum = 0.0f;
    memset(&a, 0, sizeof a);
    NGT_OK(setup_init(&a, g_cpu, 40, 4, &cfg, 3));
    NGT_OK(ng_rbm_trainer_save(&a.rt, ck));
    {
        size_t l = 0;
        unsigned char *d = read_all(ck, &l);
        free(d);
        ck_size = l;
    }
    remove(ck);
    NGT_CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0, "getrlimit");
    lim = old;
    lim.rlim_cur = (rlim_t)(ck_size + 64);
    signal(SIGXFSZ, SIG_IGN);
    NGT_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
    s = run_to(&a, 100000, csv, ck, 0, &h, 0.0, &res);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    NGT_CHECK(s == NG_ERR_IO && strstr(ng_last_error(), csv), "run with a full log: %s '%s'", ng_status_name(s),
              ng_last_error());
    NGT_CHECK(res.saved && res.end > 0 && res.end < 100000, "saved %d at %llu", res.saved, (unsigned long long)res.end);
    NGT_OK(ng_ckpt_read(ck, NG_CKPT_READ_ALL, &c));
    NGT_OK(ng_ckpt_get_u64(c, "run.t", &t));
    ng_ckpt_free(c);
    NGT_CHECK(t == res.end, "checkpoint at %llu, run ended at %llu", (unsigned long long)t, (unsigned long long)res.end);
    printf("  the log filled up at update %llu: %s\n", (unsigned long long)res.end, ng_last_error());
    setup_free(&a);
    return NGT_PASS;
}

/* Time snapshots: with a tiny period every logged step leaves OUT/snap-<t>.ckpt, listed in
 * OUT/snapshots.csv with its update, and each snapshot loads at its update. */
static int test_run_snapshots(void) {
    setup a;
    ng_rbm_config cfg;
    ng_run_result res;
    hook_ctx h = {0, 0};
    char line[512], snap[600];
    FILE *f;
    int rows = 0;
    base_config(&cfg, NG_RBM_OPT_CENTERING);
    memset(&a, 0, sizeof a);
    NGT_OK(setup_init(&a, g_cpu, 40, 4, &cfg, 3));
    NGT_OK(run_to(&a, 6, path_in("snap.csv"), path_in("snap_run.ckpt"), 0, &h, 1e-9, &res));
    f = fopen(path_in("snapshots.csv"), "r");
    NGT_CHECK(f != NULL, "no snapshots.csv");
    NGT_CHECK(fgets(line, sizeof line, f) && strcmp(line, "step,time_s,train_s,checkpoint\n") == 0, "header '%s'", line);
    while (fgets(line, sizeof line, f)) {
        unsigned long long t;
        ng_ckpt *c = NULL;
        uint64_t ct = 0;
        char *last = strrchr(line, ',');
        NGT_CHECK(sscanf(line, "%llu,", &t) == 1 && last, "row '%s'", line);
        snprintf(snap, sizeof snap, "%s", last + 1);
        snap[strcspn(snap, "\n")] = '\0';
        NGT_OK(ng_ckpt_read(snap, NG_CKPT_HEADER_ONLY, &c));
        NGT_OK(ng_ckpt_get_u64(c, "run.t", &ct));
        ng_ckpt_free(c);
        NGT_CHECK(ct == t, "snapshot %s holds update %llu, listed as %llu", snap, (unsigned long long)ct, t);
        rows++;
    }
    fclose(f);
    NGT_CHECK(rows == 6, "%d snapshots, want 6", rows);
    setup_free(&a);
    return NGT_PASS;
}

int main(void) {
    const char *tmpdir = getenv("TMPDIR");
    ng_backend *probe = NULL;
    ng_status s;
    int rc;
    snprintf(g_dir, sizeof g_dir, "%s/natgrad_ckpt_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(g_dir)) {
        printf("mkdtemp %s: %s\nRESULT passed=0 failed=1 skipped=0\n", g_dir, strerror(errno));
        return 1;
    }
    s = ng_backend_cpu_init(&g_cpu);
    if (s != NG_OK) {
        printf("cpu backend: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    s = ng_backend_cuda_init(0, &probe);
    g_have_cuda = s == NG_OK;
    if (!g_have_cuda) {
        snprintf(g_cuda_reason, sizeof g_cuda_reason, "no CUDA backend here: %s", ng_last_error());
        ng_clear_error();
    }
    ng_backend_free(probe);
    NGT_RUN(test_round_trip_cpu);
    NGT_RUN(test_resume_bit_exact_cpu);
    NGT_RUN(test_separate_parts);
    NGT_RUN(test_bad_fields);
    NGT_RUN(test_failed_save_keeps_old);
    NGT_RUN(test_load_params);
    NGT_RUN(test_legacy_centering);
    NGT_RUN(test_legacy_fang);
    NGT_RUN(test_legacy_damaged);
    NGT_RUN(test_interrupt_rolls_back);
    NGT_RUN(test_csv_truncate);
    NGT_RUN(test_run_interrupt_resume);
    NGT_RUN(test_run_log_write_failure);
    NGT_RUN(test_run_snapshots);
    NGT_RUN(test_round_trip_cuda);
    NGT_RUN(test_resume_bit_exact_cuda);
    ng_backend_free(g_cpu);
    rc = ngt_finish();
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
