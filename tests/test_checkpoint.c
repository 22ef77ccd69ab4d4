/* test_checkpoint.c: RBM trainer checkpoints (host/models/rbm_checkpoint.c).
 * Exact references only: a round trip must restore every state tensor and counter bit for bit, and
 * a run resumed from a checkpoint (in a fresh backend, model and trainer, as a new process would
 * build them) must end bit-identical (memcmp of all parameters, particles and optimizer state, and
 * byte-identical checkpoint files) to the same run done in one go, including resumes that cross an
 * epoch boundary. Damaged files (flipped bytes, truncations, bad magic/version, NaN payloads with a
 * valid CRC, lying sizes, other shapes) must be refused with NG_ERR_FORMAT, a message naming the
 * file, and the trainer left exactly as it was; a failed save must leave the previous checkpoint
 * intact. Files live in a mkdtemp directory that is removed at the end. The round trip and resume
 * also run on the CUDA backend when ng_backend_cuda_init succeeds; the file checks are CPU only
 * (the file format does not depend on the backend). */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"
#include "natgrad/data.h"
#include "natgrad/rbm.h"

static ng_backend *g_cpu;
static int g_have_cuda;
static char g_cuda_reason[300];
static char g_dir[2048];

/* Layout of the format under test (rbm_checkpoint.c): 8-byte magic, u32 version, u32 header
 * size, a 120-byte header, the payload floats, u32 CRC. Offsets inside the header used below
 * follow its ck_header struct: rng_step at 96, payload_floats at 104, pos at 116. make_good_file
 * checks the total size against this layout, so a format change fails loudly here instead of
 * silently editing the wrong bytes. */
#define CK_PREFIX 16
#define CK_HEADER 120
#define CK_OFF_RNG_STEP 96
#define CK_OFF_PAYLOAD_FLOATS 104
#define CK_OFF_POS 116

static void path_in_dir(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", g_dir, name);
}

/* ---- files ------------------------------------------------------------------------------------ */

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *d = NULL;
    long sz;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        d = (unsigned char *)malloc((size_t)sz + 1);
        if (d && fread(d, 1, (size_t)sz, f) != (size_t)sz) {
            free(d);
            d = NULL;
        }
        *len = (size_t)sz;
    }
    fclose(f);
    return d;
}

static int write_all(const char *path, const unsigned char *d, size_t len) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return -1;
    ok = fwrite(d, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Rewrite the trailing CRC-32 so that a deliberately edited file passes the integrity check and
 * the validation behind it is what gets tested. */
static void fix_crc(unsigned char *d, size_t len) {
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)(len - 4));
    memcpy(d + len - 4, &crc, 4);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- trainers --------------------------------------------------------------------------------- */

typedef struct setup {
    ng_backend *be;
    ng_dataset ds;
    ng_rbm rbm;
    ng_rbm_trainer tr;
    int have_ds, have_rbm, have_tr;
} setup;

static void setup_free(setup *s) {
    if (s->have_tr) ng_rbm_trainer_free(&s->tr);
    if (s->have_rbm) ng_rbm_free(&s->rbm);
    if (s->have_ds) ng_dataset_free(&s->ds);
    s->have_tr = s->have_rbm = s->have_ds = 0;
}

/* Bars and stripes (4x4, n examples cycling through the 30 patterns), an RBM with nh hidden units
 * initialised from `init_seed`, and a trainer with cfg. */
static ng_status setup_init(setup *s, ng_backend *be, int n, int nh, const ng_rbm_config *cfg,
                            uint64_t init_seed) {
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
    NG_TRY(ng_rbm_trainer_init(&s->tr, &s->rbm, cfg, s->ds.x, s->ds.n));
    s->have_tr = 1;
    return NG_OK;
}

/* Train until tr.t == until, asking for statistics on the updates where t % 3 == 0 (as the CLI does
 * for its log; the decision depends only on t, so a resumed run asks on the same updates). */
static ng_status train_to(ng_rbm_trainer *tr, uint64_t until) {
    while (tr->t < until) {
        ng_rbm_stats st;
        NG_TRY(ng_rbm_trainer_step(tr, tr->t % 3 == 0 ? &st : NULL));
    }
    return NG_OK;
}

/* Everything a checkpoint must restore, gathered on the host. */
typedef struct state {
    float *buf;
    size_t n;
    uint64_t t, rng_step;
    int epoch, pos;
    ng_rbm_config cfg;
    int *perm;
    int n_train;
} state;

static void state_free(state *s) {
    free(s->buf);
    free(s->perm);
    memset(s, 0, sizeof *s);
}

static ng_status state_take(ng_rbm_trainer *tr, state *s) {
    ng_tensor *ts[9];
    size_t off = 0;
    int i;
    memset(s, 0, sizeof *s);
    ts[0] = &tr->rbm->W, ts[1] = &tr->rbm->a, ts[2] = &tr->rbm->b, ts[3] = &tr->particles;
    ts[4] = &tr->vel_W, ts[5] = &tr->vel_a, ts[6] = &tr->vel_b, ts[7] = &tr->mu_v, ts[8] = &tr->mu_h;
    for (i = 0; i < 9; i++) s->n += ng_tensor_count(ts[i]);
    s->buf = (float *)malloc(s->n * sizeof(float));
    s->perm = (int *)malloc((size_t)tr->n_train * sizeof(int));
    if (!s->buf || !s->perm) return ng_error(NG_ERR_OOM, "test: out of memory");
    for (i = 0; i < 9; i++) {
        NG_TRY(ng_tensor_get(tr->be, ts[i], s->buf + off));
        off += ng_tensor_count(ts[i]);
    }
    memcpy(s->perm, tr->perm, (size_t)tr->n_train * sizeof(int));
    s->n_train = tr->n_train;
    s->t = tr->t;
    s->rng_step = tr->rng_step;
    s->epoch = tr->epoch;
    s->pos = tr->pos;
    s->cfg = tr->cfg;
    return NG_OK;
}

/* 0 when a and b are identical in every tensor bit, counter, config field and the permutation. */
static int state_compare(const char *what, const state *a, const state *b) {
    if (a->n != b->n) {
        printf("  %s: state sizes differ (%zu vs %zu floats)\n", what, a->n, b->n);
        return 1;
    }
    if (memcmp(a->buf, b->buf, a->n * sizeof(float)) != 0) {
        printf("  %s: tensors differ:\n", what);
        ngt_compare(what, a->buf, b->buf, a->n, 0.0, 0.0);
        return 1;
    }
    if (a->t != b->t || a->rng_step != b->rng_step || a->epoch != b->epoch || a->pos != b->pos) {
        printf("  %s: counters differ: t %llu/%llu rng_step %llu/%llu epoch %d/%d pos %d/%d\n", what,
               (unsigned long long)a->t, (unsigned long long)b->t, (unsigned long long)a->rng_step,
               (unsigned long long)b->rng_step, a->epoch, b->epoch, a->pos, b->pos);
        return 1;
    }
    if (memcmp(&a->cfg, &b->cfg, sizeof a->cfg) != 0) {
        printf("  %s: configurations differ (seed %llu/%llu, lr %g/%g)\n", what,
               (unsigned long long)a->cfg.seed, (unsigned long long)b->cfg.seed, (double)a->cfg.lr,
               (double)b->cfg.lr);
        return 1;
    }
    if (a->n_train != b->n_train || memcmp(a->perm, b->perm, (size_t)a->n_train * sizeof(int)) != 0) {
        printf("  %s: data permutations differ\n", what);
        return 1;
    }
    return 0;
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

static ng_backend *fresh_backend(int cuda) {
    ng_backend *be = NULL;
    if ((cuda ? ng_backend_cuda_init(&be) : ng_backend_cpu_init(&be)) != NG_OK) return NULL;
    return be;
}

/* ---- round trip ------------------------------------------------------------------------------- */

static void base_config(ng_rbm_config *cfg) {
    ng_rbm_config_default(cfg);
    cfg->batch = 8;
    cfg->particles = 24;
    cfg->k = 1;
    cfg->lr = 0.05f;
    cfg->lr_gamma = 50.0f;
    cfg->momentum = 0.5f;
    cfg->weight_decay = 0.001f;
    cfg->center_rate = 0.05f;
    cfg->seed = 17;
}

/* Save after 7 updates, load into a trainer built with another seed and other parameters, and
 * compare everything; saving the loaded trainer must reproduce the file byte for byte. */
static int round_trip(int cuda) {
    ng_backend *be = fresh_backend(cuda);
    setup a, b;
    ng_rbm_config cfg, other;
    state sa, sb, sb0;
    char p1[4200], p2[4200];
    int bad;
    if (!be) return ngt_skip(g_cuda_reason);
    base_config(&cfg);
    other = cfg;
    other.seed = 999;
    other.lr = 0.5f;
    other.lr_gamma = 0.0f;
    path_in_dir(p1, sizeof p1, cuda ? "rt_cuda.ckpt" : "rt_cpu.ckpt");
    path_in_dir(p2, sizeof p2, cuda ? "rt_cuda2.ckpt" : "rt_cpu2.ckpt");
    if (setup_init(&a, be, 0, 10, &cfg, 1) != NG_OK || train_to(&a.tr, 7) != NG_OK ||
        ng_rbm_checkpoint_save(&a.tr, p1) != NG_OK || setup_init(&b, be, 0, 10, &other, 2) != NG_OK ||
        state_take(&b.tr, &sb0) != NG_OK || ng_rbm_checkpoint_load(&b.tr, p1) != NG_OK ||
        ng_rbm_checkpoint_save(&b.tr, p2) != NG_OK) {
        printf("  round trip: %s\n", ng_last_error());
        setup_free(&a);
        setup_free(&b);
        ng_backend_free(be);
        return NGT_FAIL;
    }
    NGT_OK(state_take(&a.tr, &sa));
    NGT_OK(state_take(&b.tr, &sb));
    bad = memcmp(sb0.buf, sa.buf, sa.n * sizeof(float)) == 0;
    if (bad) printf("  the target trainer started in the saved state: the test proves nothing\n");
    bad = bad || state_compare("loaded vs saved trainer", &sb, &sa);
    bad = bad || b.tr.cfg.lr != cfg.lr || b.tr.cfg.lr_gamma != cfg.lr_gamma || b.tr.cfg.seed != cfg.seed;
    bad = bad || !files_identical(p1, p2);
    if (b.tr.cfg.lr != cfg.lr || b.tr.cfg.seed != cfg.seed)
        printf("  lr %g seed %llu after load, want %g and %llu\n", (double)b.tr.cfg.lr,
               (unsigned long long)b.tr.cfg.seed, (double)cfg.lr, (unsigned long long)cfg.seed);
    state_free(&sa);
    state_free(&sb);
    state_free(&sb0);
    setup_free(&a);
    setup_free(&b);
    ng_backend_free(be);
    NGT_CHECK(!bad, "round trip through %s did not restore the trainer exactly", p1);
    return NGT_PASS;
}
static int test_round_trip_cpu(void) { return round_trip(0); }
static int test_round_trip_cuda(void) { return g_have_cuda ? round_trip(1) : ngt_skip(g_cuda_reason); }

/* ---- resume == uninterrupted ------------------------------------------------------------------ */

typedef struct resume_case {
    const char *name;
    int n;          /* training examples (0 = the 30 patterns once) */
    int total, cut; /* updates in all, and where the run is interrupted */
    ng_rbm_estimator estimator;
    ng_rbm_optimizer optimizer;
    int k, binarize;
} resume_case;

/* One run of total updates in one go, and one cut at `cut`: save, tear everything down (backend
 * included), build a new backend/model/trainer from the checkpoint's own config (as `natgrad rbm
 * train --resume` does, via ng_rbm_checkpoint_peek) with a different initialisation, load, finish.
 * The two final states and checkpoint files must be identical. */
static int resume_one(int cuda, const resume_case *rc) {
    ng_backend *be = fresh_backend(cuda), *be2;
    setup a, b, c;
    ng_rbm_config cfg, peeked;
    state sa, sc;
    char pa[4200], pb[4200], pc[4200], name[128];
    int nv = 0, nh = 0, bad, epoch_at_cut, pos_at_cut, crossed;
    uint64_t t_ck = 0;
    if (!be) return ngt_skip(g_cuda_reason);
    base_config(&cfg);
    cfg.estimator = rc->estimator;
    cfg.optimizer = rc->optimizer;
    cfg.k = rc->k;
    cfg.binarize_train = rc->binarize;
    snprintf(name, sizeof name, "%s_%s_full.ckpt", rc->name, cuda ? "cuda" : "cpu");
    path_in_dir(pa, sizeof pa, name);
    snprintf(name, sizeof name, "%s_%s_cut.ckpt", rc->name, cuda ? "cuda" : "cpu");
    path_in_dir(pb, sizeof pb, name);
    snprintf(name, sizeof name, "%s_%s_resumed.ckpt", rc->name, cuda ? "cuda" : "cpu");
    path_in_dir(pc, sizeof pc, name);

    NGT_OK(setup_init(&a, be, rc->n, 10, &cfg, cfg.seed));
    NGT_OK(train_to(&a.tr, (uint64_t)rc->total));
    NGT_OK(ng_rbm_checkpoint_save(&a.tr, pa));
    NGT_OK(state_take(&a.tr, &sa));
    setup_free(&a);

    NGT_OK(setup_init(&b, be, rc->n, 10, &cfg, cfg.seed));
    NGT_OK(train_to(&b.tr, (uint64_t)rc->cut));
    NGT_OK(ng_rbm_checkpoint_save(&b.tr, pb));
    epoch_at_cut = b.tr.epoch;
    pos_at_cut = b.tr.pos;
    setup_free(&b);
    ng_backend_free(be);

    /* "new process": nothing survives but the file */
    be2 = fresh_backend(cuda);
    NGT_CHECK(be2 != NULL, "second backend: %s", ng_last_error());
    NGT_OK(ng_rbm_checkpoint_peek(pb, &nv, &nh, &peeked, &t_ck));
    NGT_CHECK(nv == 16 && nh == 10 && t_ck == (uint64_t)rc->cut, "peek: %dx%d at t %llu", nh, nv,
              (unsigned long long)t_ck);
    if (setup_init(&c, be2, rc->n, nh, &peeked, peeked.seed + 1000) != NG_OK ||
        ng_rbm_checkpoint_load(&c.tr, pb) != NG_OK || train_to(&c.tr, (uint64_t)rc->total) != NG_OK ||
        ng_rbm_checkpoint_save(&c.tr, pc) != NG_OK || state_take(&c.tr, &sc) != NG_OK) {
        printf("  resumed run: %s\n", ng_last_error());
        setup_free(&c);
        ng_backend_free(be2);
        state_free(&sa);
        return NGT_FAIL;
    }
    crossed = c.tr.epoch > epoch_at_cut;
    bad = state_compare(rc->name, &sc, &sa);
    bad = bad || !files_identical(pa, pc);
    setup_free(&c);
    ng_backend_free(be2);
    state_free(&sa);
    state_free(&sc);
    NGT_CHECK(!bad, "%s: resumed at update %d (epoch %d, column %d) differs from the run done in one go",
              rc->name, rc->cut, epoch_at_cut, pos_at_cut);
    NGT_CHECK(crossed, "%s: the resumed part never reached a new epoch", rc->name);
    return NGT_PASS;
}

static int resume_all(int cuda) {
    /* batch 8: 30 examples give 3 batches an epoch (columns 24..29 are skipped), 32 give 4 */
    static const resume_case cases[] = {
        /* mid-epoch cut (epoch 3, column 8), binarised data, PCD + centering */
        {"mid_epoch", 0, 20, 10, NG_RBM_PCD, NG_RBM_OPT_CENTERING, 1, 1},
        /* cut at column 24 of 30: the first resumed update must start epoch 1 */
        {"before_epoch_change", 0, 9, 3, NG_RBM_CD, NG_RBM_OPT_SGD, 2, 0},
        /* cut exactly at the end of the data (column 32 of 32) */
        {"at_end_of_data", 32, 12, 4, NG_RBM_PCD, NG_RBM_OPT_CENTERING, 2, 1},
    };
    size_t i;
    if (cuda && !g_have_cuda) return ngt_skip(g_cuda_reason);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (resume_one(cuda, &cases[i]) != NGT_PASS) return NGT_FAIL;
    return NGT_PASS;
}
static int test_resume_bit_exact_cpu(void) { return resume_all(0); }
static int test_resume_bit_exact_cuda(void) { return resume_all(1); }

/* ---- damaged files ---------------------------------------------------------------------------- */

/* One victim trainer; every refused load must leave it exactly as it was. */
static setup g_victim;
static state g_victim_state;
static unsigned char *g_good;
static size_t g_good_len;
static char g_good_path[4200];

/* Write `d` to a file, try to load it and expect `want` with a message naming the file (and
 * mentioning must_mention), the victim unchanged. `also`: REFUSE_PEEK when the damage is in the
 * framing (size, magic, version, CRC) that ng_rbm_checkpoint_peek reads too; REFUSE_PARAMS when
 * ng_rbm_checkpoint_load_params must refuse it as well (framing, or damage in W, a, b), leaving its
 * RBM unchanged. */
enum { REFUSE_PEEK = 1, REFUSE_PARAMS = 2, REFUSE_ALL = 3 };
static int expect_refused(const char *label, const unsigned char *d, size_t len, ng_status want,
                          const char *must_mention, int also) {
    char p[4200];
    ng_status s;
    state now;
    int bad;
    snprintf(p, sizeof p, "%s/bad_%s.ckpt", g_dir, label);
    NGT_CHECK(write_all(p, d, len) == 0, "cannot write %s", p);
    ng_clear_error();
    s = ng_rbm_checkpoint_load(&g_victim.tr, p);
    NGT_CHECK(s == want, "%s: load returned %s (%s), want %s", label, ng_status_name(s), ng_last_error(),
              ng_status_name(want));
    NGT_CHECK(strstr(ng_last_error(), p) != NULL, "%s: message '%s' does not name the file", label,
              ng_last_error());
    NGT_CHECK(!must_mention || strstr(ng_last_error(), must_mention), "%s: message '%s' does not mention '%s'",
              label, ng_last_error(), must_mention);
    NGT_OK(state_take(&g_victim.tr, &now));
    bad = state_compare(label, &now, &g_victim_state);
    state_free(&now);
    NGT_CHECK(!bad, "%s: the refused load changed the trainer", label);
    if (also & REFUSE_PEEK) {
        s = ng_rbm_checkpoint_peek(p, NULL, NULL, NULL, NULL);
        NGT_CHECK(s == want && strstr(ng_last_error(), p), "%s: peek returned %s (%s)", label,
                  ng_status_name(s), ng_last_error());
    }
    if (also & REFUSE_PARAMS) {
        ng_rbm r;
        float W0[160], a0[16], b0[10], W1[160], a1[16], b1[10];
        ng_status s2;
        NGT_OK(ng_rbm_init(g_cpu, 16, 10, &r));
        s2 = ng_rbm_init_params(&r, 4, 0.1f, NULL);
        if (s2 == NG_OK) s2 = ng_rbm_get_params(&r, W0, a0, b0);
        s = ng_rbm_checkpoint_load_params(&r, p);
        if (s2 == NG_OK) s2 = ng_rbm_get_params(&r, W1, a1, b1);
        ng_rbm_free(&r);
        NGT_OK(s2);
        NGT_CHECK(s == want, "%s: load_params returned %s (%s)", label, ng_status_name(s), ng_last_error());
        NGT_CHECK(memcmp(W0, W1, sizeof W0) == 0 && memcmp(a0, a1, sizeof a0) == 0 &&
                      memcmp(b0, b1, sizeof b0) == 0,
                  "%s: the refused load_params changed the RBM", label);
    }
    return NGT_PASS;
}

static ng_status make_good_file(void) {
    setup a;
    ng_rbm_config cfg;
    base_config(&cfg);
    path_in_dir(g_good_path, sizeof g_good_path, "good.ckpt");
    size_t floats;
    NG_TRY(setup_init(&a, g_cpu, 0, 10, &cfg, 5));
    floats = ng_tensor_count(&a.rbm.W) + ng_tensor_count(&a.rbm.a) + ng_tensor_count(&a.rbm.b) +
             ng_tensor_count(&a.tr.particles) + ng_tensor_count(&a.tr.vel_W) +
             ng_tensor_count(&a.tr.vel_a) + ng_tensor_count(&a.tr.vel_b) +
             ng_tensor_count(&a.tr.mu_v) + ng_tensor_count(&a.tr.mu_h);
    if (train_to(&a.tr, 5) != NG_OK || ng_rbm_checkpoint_save(&a.tr, g_good_path) != NG_OK) {
        setup_free(&a);
        return NG_ERR_IO;
    }
    setup_free(&a);
    g_good = read_all(g_good_path, &g_good_len);
    if (!g_good) return ng_error(NG_ERR_IO, "cannot read back %s", g_good_path);
    if (g_good_len != CK_PREFIX + CK_HEADER + 4 * floats + 4)
        return ng_error(NG_ERR_FORMAT, "%s has %zu bytes, the layout this test assumes gives %zu",
                        g_good_path, g_good_len, CK_PREFIX + CK_HEADER + 4 * floats + 4);
    /* the victim: same shapes, another history */
    cfg.seed = 6;
    NG_TRY(setup_init(&g_victim, g_cpu, 0, 10, &cfg, 6));
    NG_TRY(train_to(&g_victim.tr, 3));
    return state_take(&g_victim.tr, &g_victim_state);
}

static int test_corrupt_crc(void) {
    unsigned char *d = (unsigned char *)malloc(g_good_len);
    size_t offs[4], i;
    NGT_CHECK(d != NULL, "out of memory");
    offs[0] = g_good_len / 2;               /* payload */
    offs[1] = CK_PREFIX + CK_OFF_RNG_STEP;  /* header: the random-stream counter */
    offs[2] = g_good_len - 5;               /* last payload byte */
    offs[3] = g_good_len - 1;               /* the CRC itself */
    for (i = 0; i < 4; i++) {
        char label[32];
        int r;
        memcpy(d, g_good, g_good_len);
        d[offs[i]] ^= 0x10;
        snprintf(label, sizeof label, "flip_%zu", offs[i]);
        r = expect_refused(label, d, g_good_len, NG_ERR_FORMAT, "CRC", REFUSE_ALL);
        if (r != NGT_PASS) {
            free(d);
            return r;
        }
    }
    free(d);
    return NGT_PASS;
}

static int test_truncated(void) {
    size_t lens[] = {0, 1, 7, 8, 15, 16, 100, CK_PREFIX + CK_HEADER, CK_PREFIX + CK_HEADER + 4, g_good_len / 2,
                     g_good_len - 8, g_good_len - 4, g_good_len - 1};
    size_t i;
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char label[32];
        snprintf(label, sizeof label, "trunc_%zu", lens[i]);
        if (expect_refused(label, g_good, lens[i], NG_ERR_FORMAT, NULL, REFUSE_ALL) != NGT_PASS) {
            printf("  (truncated to %zu of %zu bytes)\n", lens[i], g_good_len);
            return NGT_FAIL;
        }
    }
    {
        /* one byte too many */
        unsigned char *d = (unsigned char *)malloc(g_good_len + 1);
        int r;
        NGT_CHECK(d != NULL, "out of memory");
        memcpy(d, g_good, g_good_len);
        d[g_good_len] = 0;
        r = expect_refused("padded", d, g_good_len + 1, NG_ERR_FORMAT, NULL, REFUSE_ALL);
        free(d);
        if (r != NGT_PASS) return r;
    }
    return NGT_PASS;
}

static int test_bad_header(void) {
    unsigned char *d = (unsigned char *)malloc(g_good_len);
    uint32_t u32;
    uint64_t u64;
    float nan = NAN;
    int r;
    NGT_CHECK(d != NULL, "out of memory");
#define TRY(label, want, mention, framing)                                        \
    do {                                                                           \
        r = expect_refused(label, d, g_good_len, want, mention, framing);          \
        if (r != NGT_PASS) {                                                       \
            free(d);                                                               \
            return r;                                                              \
        }                                                                          \
    } while (0)
    memcpy(d, g_good, g_good_len);
    memcpy(d, "NGRBMCK0", 8);
    TRY("magic", NG_ERR_FORMAT, "magic", REFUSE_ALL);
    memcpy(d, g_good, g_good_len);
    memcpy(d, "\x89PNG\r\n\x1a\n", 8);
    fix_crc(d, g_good_len);
    TRY("png_magic", NG_ERR_FORMAT, "magic", REFUSE_ALL);
    memcpy(d, g_good, g_good_len);
    u32 = 2;
    memcpy(d + 8, &u32, 4);
    fix_crc(d, g_good_len);
    TRY("version", NG_ERR_FORMAT, "version", REFUSE_ALL);
    memcpy(d, g_good, g_good_len);
    u32 = 64;
    memcpy(d + 12, &u32, 4);
    fix_crc(d, g_good_len);
    TRY("header_size", NG_ERR_FORMAT, NULL, REFUSE_ALL);
    /* payload_floats promising far more than the file holds, CRC valid */
    memcpy(d, g_good, g_good_len);
    u64 = (uint64_t)1 << 62;
    memcpy(d + CK_PREFIX + CK_OFF_PAYLOAD_FLOATS, &u64, 8);
    fix_crc(d, g_good_len);
    TRY("huge_count", NG_ERR_FORMAT, NULL, REFUSE_ALL);
    memcpy(d, g_good, g_good_len);
    memcpy(&u64, d + CK_PREFIX + CK_OFF_PAYLOAD_FLOATS, 8);
    u64 -= 1;
    memcpy(d + CK_PREFIX + CK_OFF_PAYLOAD_FLOATS, &u64, 8);
    fix_crc(d, g_good_len);
    TRY("count_minus_1", NG_ERR_FORMAT, NULL, REFUSE_ALL);
    /* NaN in the first weight and in the last particle/offset, CRC valid */
    memcpy(d, g_good, g_good_len);
    memcpy(d + CK_PREFIX + CK_HEADER, &nan, 4);
    fix_crc(d, g_good_len);
    TRY("nan_weight", NG_ERR_FORMAT, "non-finite", REFUSE_PARAMS);
    memcpy(d, g_good, g_good_len);
    memcpy(d + g_good_len - 8, &nan, 4);
    fix_crc(d, g_good_len);
    TRY("nan_last", NG_ERR_FORMAT, "non-finite", 0);
    /* a data position beyond the training set, CRC valid */
    memcpy(d, g_good, g_good_len);
    u32 = 31;
    memcpy(d + CK_PREFIX + CK_OFF_POS, &u32, 4);
    fix_crc(d, g_good_len);
    TRY("position", NG_ERR_FORMAT, "examples", 0);
#undef TRY
    free(d);
    return NGT_PASS;
}

/* Checkpoints of other shapes: more hidden units, other particle count, batch, training-set size. */
static int test_wrong_shape(void) {
    struct { const char *label; int n, nh, particles, batch; const char *mention; } cases[] = {
        {"hidden_12", 0, 12, 24, 8, "shapes"},
        {"particles_25", 0, 10, 25, 8, "shapes"},
        {"batch_6", 0, 10, 24, 6, "shapes"},
        {"n_train_40", 40, 10, 24, 8, "examples"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup a;
        ng_rbm_config cfg;
        char p[4200];
        unsigned char *d;
        size_t len = 0;
        int r;
        base_config(&cfg);
        cfg.particles = cases[i].particles;
        cfg.batch = cases[i].batch;
        snprintf(p, sizeof p, "%s/shape_%s.ckpt", g_dir, cases[i].label);
        NGT_OK(setup_init(&a, g_cpu, cases[i].n, cases[i].nh, &cfg, 5));
        if (train_to(&a.tr, 2) != NG_OK || ng_rbm_checkpoint_save(&a.tr, p) != NG_OK) {
            printf("  %s: %s\n", cases[i].label, ng_last_error());
            setup_free(&a);
            return NGT_FAIL;
        }
        setup_free(&a);
        d = read_all(p, &len);
        NGT_CHECK(d != NULL, "cannot read %s", p);
        r = expect_refused(cases[i].label, d, len, NG_ERR_FORMAT, cases[i].mention, 0);
        free(d);
        if (r != NGT_PASS) return r;
    }
    return NGT_PASS;
}

static int test_missing_file(void) {
    char p[4200];
    ng_status s;
    state now;
    int bad;
    path_in_dir(p, sizeof p, "does_not_exist.ckpt");
    s = ng_rbm_checkpoint_load(&g_victim.tr, p);
    NGT_CHECK(s == NG_ERR_IO, "load of a missing file returned %s (%s)", ng_status_name(s), ng_last_error());
    NGT_CHECK(strstr(ng_last_error(), p) != NULL, "message '%s' does not name the file", ng_last_error());
    s = ng_rbm_checkpoint_peek(p, NULL, NULL, NULL, NULL);
    NGT_CHECK(s == NG_ERR_IO, "peek of a missing file returned %s", ng_status_name(s));
    NGT_OK(state_take(&g_victim.tr, &now));
    bad = state_compare("missing file", &now, &g_victim_state);
    state_free(&now);
    NGT_CHECK(!bad, "a failed load changed the trainer");
    return NGT_PASS;
}

/* A directory given as the checkpoint (an easy slip on the command line) is an I/O or format
 * error naming the path, not an attempt to allocate what ftell reports for it. */
static int test_directory_refused(void) {
    ng_status s = ng_rbm_checkpoint_load(&g_victim.tr, g_dir);
    state now;
    int bad;
    NGT_CHECK(s == NG_ERR_IO || s == NG_ERR_FORMAT, "load of a directory returned %s (%s)", ng_status_name(s),
              ng_last_error());
    NGT_CHECK(strstr(ng_last_error(), g_dir) != NULL, "message '%s' does not name the path", ng_last_error());
    s = ng_rbm_checkpoint_peek(g_dir, NULL, NULL, NULL, NULL);
    NGT_CHECK(s == NG_ERR_IO || s == NG_ERR_FORMAT, "peek of a directory returned %s (%s)", ng_status_name(s),
              ng_last_error());
    NGT_OK(state_take(&g_victim.tr, &now));
    bad = state_compare("directory", &now, &g_victim_state);
    state_free(&now);
    NGT_CHECK(!bad, "a failed load changed the trainer");
    return NGT_PASS;
}

/* ---- saving ----------------------------------------------------------------------------------- */

/* A save that cannot create path.tmp (a directory is in the way) fails with NG_ERR_IO naming the
 * path, and the previous checkpoint is untouched and still loads; once the obstacle is gone the save
 * succeeds and leaves no .tmp behind. Saving into a missing directory fails cleanly too. */
static int test_failed_save_keeps_old(void) {
    setup a;
    ng_rbm_config cfg;
    char p[4200], tmp[4300], missing[4300];
    unsigned char *before, *after;
    size_t lb = 0, la = 0;
    ng_status s;
    struct stat st;
    int same;
    base_config(&cfg);
    path_in_dir(p, sizeof p, "atomic.ckpt");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    NGT_OK(setup_init(&a, g_cpu, 0, 10, &cfg, 8));
    NGT_OK(train_to(&a.tr, 2));
    NGT_OK(ng_rbm_checkpoint_save(&a.tr, p));
    NGT_CHECK(stat(tmp, &st) != 0 && errno == ENOENT, "%s left behind after a successful save", tmp);
    before = read_all(p, &lb);
    NGT_CHECK(before != NULL, "cannot read %s", p);
    NGT_OK(train_to(&a.tr, 4));
    NGT_CHECK(mkdir(tmp, 0700) == 0, "mkdir %s: %s", tmp, strerror(errno));
    ng_clear_error();
    s = ng_rbm_checkpoint_save(&a.tr, p);
    after = read_all(p, &la);
    same = after && la == lb && memcmp(before, after, lb) == 0;
    free(before);
    free(after);
    NGT_CHECK(s == NG_ERR_IO, "save with %s blocked returned %s (%s)", tmp, ng_status_name(s), ng_last_error());
    NGT_CHECK(strstr(ng_last_error(), p) != NULL, "message '%s' does not name the checkpoint", ng_last_error());
    NGT_CHECK(same, "the failed save changed %s", p);
    NGT_CHECK(stat(tmp, &st) == 0 && S_ISDIR(st.st_mode), "the failed save removed the directory %s", tmp);
    {
        /* the old checkpoint still loads, and it is the update-2 state */
        setup b;
        uint64_t t = 0;
        NGT_OK(ng_rbm_checkpoint_peek(p, NULL, NULL, NULL, &t));
        NGT_CHECK(t == 2, "old checkpoint reports update %llu, want 2", (unsigned long long)t);
        NGT_OK(setup_init(&b, g_cpu, 0, 10, &cfg, 9));
        s = ng_rbm_checkpoint_load(&b.tr, p);
        setup_free(&b);
        NGT_OK(s);
    }
    NGT_CHECK(rmdir(tmp) == 0, "rmdir %s: %s", tmp, strerror(errno));
    NGT_OK(ng_rbm_checkpoint_save(&a.tr, p));
    NGT_CHECK(stat(tmp, &st) != 0 && errno == ENOENT, "%s left behind after a successful save", tmp);
    {
        uint64_t t = 0;
        NGT_OK(ng_rbm_checkpoint_peek(p, NULL, NULL, NULL, &t));
        NGT_CHECK(t == 4, "new checkpoint reports update %llu, want 4", (unsigned long long)t);
    }
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.ckpt", g_dir);
    s = ng_rbm_checkpoint_save(&a.tr, missing);
    NGT_CHECK(s == NG_ERR_IO && strstr(ng_last_error(), missing),
              "save into a missing directory returned %s (%s)", ng_status_name(s), ng_last_error());
    setup_free(&a);
    return NGT_PASS;
}

/* Saving the same state twice gives the same bytes (no uninitialised padding, no timestamps). */
static int test_save_deterministic(void) {
    setup a;
    ng_rbm_config cfg;
    char p1[4200], p2[4200];
    int same;
    base_config(&cfg);
    path_in_dir(p1, sizeof p1, "det1.ckpt");
    path_in_dir(p2, sizeof p2, "det2.ckpt");
    NGT_OK(setup_init(&a, g_cpu, 0, 10, &cfg, 8));
    NGT_OK(train_to(&a.tr, 3));
    NGT_OK(ng_rbm_checkpoint_save(&a.tr, p1));
    NGT_OK(ng_rbm_checkpoint_save(&a.tr, p2));
    setup_free(&a);
    same = files_identical(p1, p2);
    NGT_CHECK(same, "two saves of one state differ");
    return NGT_PASS;
}

/* ---- peek and load_params --------------------------------------------------------------------- */

static int test_peek_config(void) {
    setup a;
    ng_rbm_config cfg, got;
    char p[4200];
    int nv = 0, nh = 0;
    uint64_t t = 0;
    base_config(&cfg);
    cfg.estimator = NG_RBM_CD;
    cfg.optimizer = NG_RBM_OPT_SGD;
    cfg.k = 3;
    cfg.binarize_train = 1;
    cfg.init_std = 0.02f;
    cfg.fang_refit_every = 7;
    cfg.fang_tau = 33.0f;
    cfg.fang_lambda = 0.125f;
    cfg.seed = 0x123456789abcULL;
    path_in_dir(p, sizeof p, "peek.ckpt");
    NGT_OK(setup_init(&a, g_cpu, 0, 11, &cfg, 8));
    NGT_OK(train_to(&a.tr, 4));
    NGT_OK(ng_rbm_checkpoint_save(&a.tr, p));
    NGT_OK(ng_rbm_checkpoint_peek(p, &nv, &nh, &got, &t));
    cfg = a.tr.cfg; /* the trainer's copy (CD sets particles = batch) */
    setup_free(&a);
    NGT_CHECK(nv == 16 && nh == 11 && t == 4, "peek: %d visible, %d hidden, t %llu; want 16, 11, 4", nv, nh,
              (unsigned long long)t);
    NGT_CHECK(got.batch == cfg.batch && got.particles == cfg.particles && got.k == cfg.k &&
                  got.estimator == cfg.estimator && got.optimizer == cfg.optimizer &&
                  got.binarize_train == cfg.binarize_train && got.seed == cfg.seed,
              "peek: batch %d particles %d k %d estimator %d optimizer %d binarize %d seed %llu",
              got.batch, got.particles, got.k, (int)got.estimator, (int)got.optimizer, got.binarize_train,
              (unsigned long long)got.seed);
    NGT_CHECK(got.lr == cfg.lr && got.lr_gamma == cfg.lr_gamma && got.momentum == cfg.momentum &&
                  got.weight_decay == cfg.weight_decay && got.center_rate == cfg.center_rate &&
                  got.init_std == cfg.init_std,
              "peek: lr %g gamma %g momentum %g decay %g center %g init_std %g", (double)got.lr,
              (double)got.lr_gamma, (double)got.momentum, (double)got.weight_decay,
              (double)got.center_rate, (double)got.init_std);
    NGT_CHECK(got.fang_refit_every == cfg.fang_refit_every && got.fang_tau == cfg.fang_tau &&
                  got.fang_lambda == cfg.fang_lambda,
              "peek: FANG settings %d %g %g", got.fang_refit_every, (double)got.fang_tau,
              (double)got.fang_lambda);
    NGT_CHECK(memcmp(&got, &cfg, sizeof cfg) == 0, "peek: the configuration differs in some field");
    /* every output is optional */
    NGT_OK(ng_rbm_checkpoint_peek(p, NULL, NULL, NULL, NULL));
    return NGT_PASS;
}

static int test_load_params(void) {
    setup a;
    ng_rbm_config cfg;
    ng_rbm r, wrong;
    char p[4200];
    float W[160], av[16], bv[10], W2[160], a2[16], b2[10], Wx[192], Wy[192];
    ng_status s;
    base_config(&cfg);
    path_in_dir(p, sizeof p, "params.ckpt");
    NGT_OK(setup_init(&a, g_cpu, 0, 10, &cfg, 8));
    NGT_OK(train_to(&a.tr, 6));
    NGT_OK(ng_rbm_checkpoint_save(&a.tr, p));
    NGT_OK(ng_rbm_get_params(&a.rbm, W, av, bv));
    setup_free(&a);
    NGT_OK(ng_rbm_init(g_cpu, 16, 10, &r));
    s = ng_rbm_checkpoint_load_params(&r, p);
    if (s == NG_OK) s = ng_rbm_get_params(&r, W2, a2, b2);
    ng_rbm_free(&r);
    NGT_OK(s);
    NGT_CHECK(memcmp(W, W2, sizeof W) == 0 && memcmp(av, a2, sizeof av) == 0 && memcmp(bv, b2, sizeof bv) == 0,
              "load_params did not restore W, a, b bit for bit");
    /* another shape is refused and the RBM keeps its parameters */
    NGT_OK(ng_rbm_init(g_cpu, 16, 12, &wrong));
    NGT_OK(ng_rbm_init_params(&wrong, 3, 0.1f, NULL));
    NGT_OK(ng_rbm_get_params(&wrong, Wx, NULL, NULL));
    ng_clear_error();
    s = ng_rbm_checkpoint_load_params(&wrong, p);
    NGT_OK(ng_rbm_get_params(&wrong, Wy, NULL, NULL));
    ng_rbm_free(&wrong);
    NGT_CHECK(s == NG_ERR_FORMAT, "load_params into 16x12 returned %s (%s)", ng_status_name(s), ng_last_error());
    NGT_CHECK(strstr(ng_last_error(), p) != NULL, "message '%s' does not name the file", ng_last_error());
    NGT_CHECK(memcmp(Wx, Wy, sizeof Wx) == 0, "refused load_params changed the RBM");
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
    s = ng_backend_cuda_init(&probe);
    g_have_cuda = s == NG_OK;
    if (!g_have_cuda) {
        snprintf(g_cuda_reason, sizeof g_cuda_reason, "no CUDA backend here: %s", ng_last_error());
        ng_clear_error();
    }
    ng_backend_free(probe);
    NGT_RUN(test_round_trip_cpu);
    NGT_RUN(test_resume_bit_exact_cpu);
    NGT_RUN(test_save_deterministic);
    NGT_RUN(test_peek_config);
    NGT_RUN(test_load_params);
    NGT_RUN(test_failed_save_keeps_old);
    if (make_good_file() != NG_OK) {
        printf("  cannot prepare the damaged-file tests: %s\n", ng_last_error());
        ngt_failed++;
    } else {
        NGT_RUN(test_corrupt_crc);
        NGT_RUN(test_truncated);
        NGT_RUN(test_bad_header);
        NGT_RUN(test_wrong_shape);
        NGT_RUN(test_missing_file);
        NGT_RUN(test_directory_refused);
    }
    NGT_RUN(test_round_trip_cuda);
    NGT_RUN(test_resume_bit_exact_cuda);
    setup_free(&g_victim);
    state_free(&g_victim_state);
    free(g_good);
    ng_backend_free(g_cpu);
    rc = ngt_finish();
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
