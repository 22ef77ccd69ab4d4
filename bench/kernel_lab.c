/* kernel_lab.c: the Philox-driven elementwise families, variant by variant, in llm.c's dev/cuda spirit
 * (make kernel-lab). Each family has numbered variants; every variant is checked against variant 1,
 * a plain scalar loop over the ng_math.h body written here (the reference), then timed over sizes.
 *   uniform (fill_uniform):  1 scalar ng_uniform4_at per group of 4, one thread
 *                            2 ng_uniform4_block (16 vectorised Philox lanes), one thread
 *                            3 the CPU backend's op (blocks of 16, OpenMP)
 *                            4 the CUDA backend's kernel (cuRAND Philox), when a GPU answers
 *   gibbs (gibbs_sample):    1 scalar: ng_gibbs_unit with ng_uniform_at per unit, one thread
 *                            2 the CPU backend's op;  3 the CUDA kernel, when a GPU answers
 *   bernoulli:               1 scalar;  2 the CPU backend's op;  3 the CUDA kernel
 * and one fusion (issue 13):
 *   momentum (NAG + average): 1 the five axpby ops nag.c / update.c issued before (reference);
 *                            2 NG_OP_MOMENTUM in one pass; on a GPU 3 the axpby kernels, 4 the fused one
 * CPU variants must equal the reference bit for bit; CUDA variants to within the device's expf
 * (probabilities within 2e-7 absolute, draws differing only where u is that close to p).
 * Prints a markdown table (variant, size, check, ms, G elements/s) and writes --csv.
 *
 * The block-shape sweep (section "sweep"): every custom kernel family of kernels/launch.cu's table,
 * on the problems of bench/kernel_lab_families.h (the ones tests/test_kernel_blocks.c checks), at
 * each size: the CPU backend's ops (the reference, timed by the host clock), then on the CUDA
 * backend every block size of --blocks the family accepts (ng_cuda_set_block): its result against
 * the CPU backend (the family's stated tolerance) and against the default shape (bit for bit;
 * reduce within 2 ulp), and its time by CUDA events around the family's launches (best of --reps
 * after one warm-up), then per family and size the fastest shape against the default. Under the
 * tests/simt emulator (build/simt/bench/kernel_lab) only the checks mean something: the time
 * column says "emulated" instead of a figure.
 * usage: kernel_lab [--sizes 65536,1048576,4194304] [--reps N] [--csv PATH] [--sections variants,sweep]
 *                   [--blocks 32,64,96,128,256,512,1024] [--families all|NAME,NAME,...] [--device N (CUDA device)]
 * --need-cuda: exit 1 unless a real CUDA device answers (bench/gpu_check.sh). kernel_lab --help lists
 * the options with their defaults and ranges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/log.h"
#include "ng_math.h"

#include "kernel_lab_families.h"

static FILE *csv;
static int reps = 5;

/* best-of-reps time of f (ms); the backend is synchronised after each call */
typedef ng_status (*run_fn)(void *ctx);
static double timeit(run_fn f, void *ctx, ng_backend *be) {
    double best = 1e30;
    int r;
    for (r = 0; r < reps; r++) {
        double t0 = ng_time_s(), t;
        if (f(ctx) != NG_OK) return NAN;
        if (be) ng_synchronize(be);
        t = ng_time_s() - t0;
        if (t < best) best = t;
    }
    return 1e3 * best;
}

static void row(const char *family, const char *variant, size_t n, const char *check, double ms) {
    printf("| %s | %s | %zu | %s | %.3f | %.3f |\n", family, variant, n, check, ms, ms > 0 ? (double)n / (ms * 1e-3) * 1e-9 : 0.0);
    if (csv) fprintf(csv, "%s,\"%s\",%zu,%s,%.6f\n", family, variant, n, check, ms);
}

/* ---- uniform ------------------------------------------------------------------------------- */
typedef struct uctx { size_t n; float *out; ng_backend *be; float *dev; } uctx;
static const uint64_t KEY = 0x5EED5EEDull, STEP = 11;

static ng_status u_scalar(void *p) {
    uctx *c = (uctx *)p;
    size_t g, ng = (c->n + 3) / 4, j;
    for (g = 0; g < ng; g++) {
        float u[4];
        ng_uniform4_at(KEY, STEP, g, u);
        for (j = 0; j < 4 && 4 * g + j < c->n; j++) c->out[4 * g + j] = u[j];
    }
    return NG_OK;
}
static ng_status u_block(void *p) {
    uctx *c = (uctx *)p;
    size_t b, nb = (c->n + 63) / 64, j;
    for (b = 0; b < nb; b++) {
        float u[64];
        ng_uniform4_block(KEY, STEP, (uint64_t)b * NG_PHILOX_LANES, u);
        for (j = 0; j < 64 && 64 * b + j < c->n; j++) c->out[64 * b + j] = u[j];
    }
    return NG_OK;
}
static ng_status u_backend(void *p) {
    uctx *c = (uctx *)p;
    return ng_fill_uniform(c->be, c->n, c->dev, KEY, STEP);
}

/* ---- gibbs --------------------------------------------------------------------------------- */
typedef struct gctx {
    int rows, cols;
    float *pre, *bias, *prob, *smp;       /* host */
    ng_backend *be;
    float *dpre, *dbias, *dprob, *dsmp;   /* device of be */
} gctx;
static ng_status g_scalar(void *p) {
    gctx *c = (gctx *)p;
    long i, n = (long)c->rows * c->cols;
    for (i = 0; i < n; i++) {
        int r = (int)(i % c->rows);
        ng_gibbs_unit(c->pre[i], c->bias[r], 1.0f, 0.0f, ng_uniform_at(KEY, STEP, (uint64_t)i), &c->prob[i], &c->smp[i]);
    }
    return NG_OK;
}
static ng_status g_backend(void *p) {
    gctx *c = (gctx *)p;
    return ng_gibbs_sample(c->be, c->rows, c->cols, c->dpre, c->rows, c->dbias, 1.0f, NULL, c->dprob, c->rows, c->dsmp,
                           c->rows, KEY, STEP);
}

/* ---- bernoulli ----------------------------------------------------------------------------- */
typedef struct bctx { size_t n; float *p, *out; ng_backend *be; float *dp, *dout; } bctx;
static ng_status b_scalar(void *q) {
    bctx *c = (bctx *)q;
    size_t i;
    for (i = 0; i < c->n; i++) c->out[i] = ng_bernoulli_draw(c->p[i], ng_uniform_at(KEY, STEP, (uint64_t)i));
    return NG_OK;
}
static ng_status b_backend(void *q) {
    bctx *c = (bctx *)q;
    return ng_bernoulli(c->be, c->n, c->dp, c->dout, KEY, STEP);
}

/* ---- momentum: NAG's step with iterate averaging ------------------------------------------------
 * variant 1: the five axpby ops nag.c and update.c issued before NG_OP_MOMENTUM (v, p twice, the
 * average twice); variant 2: the fused op, one pass. Constants of update 300 of Sutskever et al.'s
 * schedule (mu_t = 0.75, mu_{t+1} = 0.75), lr 0.01, averaging xi = 0.99. */
typedef struct mctx { size_t n; ng_backend *be; float *d, *v, *p, *bar; } mctx;
static const float M_A = -0.01f, M_MU = 0.75f, M_C = 0.75f, M_XI = 0.99f;
static ng_status m_chain(void *q) {
    mctx *c = (mctx *)q;
    const float w = (float)(1.0 - (double)M_XI), wc = (float)((1.0 - (double)M_XI) * (double)-M_C);
    NG_TRY(ng_axpby(c->be, c->n, M_A, c->d, M_MU, c->v));
    NG_TRY(ng_axpby(c->be, c->n, M_C, c->v, 1.0f, c->p));
    NG_TRY(ng_axpby(c->be, c->n, M_A, c->d, 1.0f, c->p));
    NG_TRY(ng_axpby(c->be, c->n, w, c->p, M_XI, c->bar));
    return ng_axpby(c->be, c->n, wc, c->v, 1.0f, c->bar);
}
static ng_status m_fused(void *q) {
    mctx *c = (mctx *)q;
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_MOMENTUM;
    o.momentum.n = c->n;
    o.momentum.d = c->d;
    o.momentum.v = c->v;
    o.momentum.p = c->p;
    o.momentum.bar = c->bar;
    o.momentum.a = M_A;
    o.momentum.mu = M_MU;
    o.momentum.c = M_C;
    o.momentum.nesterov = 1;
    o.momentum.xi = M_XI;
    o.momentum.w = (float)(1.0 - (double)M_XI);
    o.momentum.wc = (float)((1.0 - (double)M_XI) * (double)-M_C);
    return ng_run_op(c->be, &o);
}
/* d, v, p, bar of be from the host array h (4 n floats), one step of f, the results into out (3 n) */
static ng_status m_once(run_fn f, mctx *c, const float *h, float *out) {
    NG_TRY(ng_set(c->be, c->d, h, c->n * 4));
    NG_TRY(ng_set(c->be, c->v, h + c->n, c->n * 4));
    NG_TRY(ng_set(c->be, c->p, h + 2 * c->n, c->n * 4));
    NG_TRY(ng_set(c->be, c->bar, h + 3 * c->n, c->n * 4));
    NG_TRY(f(c));
    NG_TRY(ng_get(c->be, out, c->v, c->n * 4));
    NG_TRY(ng_get(c->be, out + c->n, c->p, c->n * 4));
    return ng_get(c->be, out + 2 * c->n, c->bar, c->n * 4);
}

static const char *same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0 ? "bit-identical" : "DIFFERS";
}
/* CUDA against the reference: probabilities within tol; draws may differ only where the uniform
 * lies within tol of the probability */
static const char *close_draws(const float *pr, const float *sr, const float *pc, const float *sc, size_t n, float tol,
                               char *buf, size_t len) {
    size_t i, bad = 0;
    double md = 0.0;
    for (i = 0; i < n; i++) {
        double d = pr ? fabs((double)pr[i] - (double)pc[i]) : 0.0;
        if (d > md) md = d;
        if (d > tol) bad++;
        if (sr[i] != sc[i]) {
            float u = ng_uniform_at(KEY, STEP, (uint64_t)i), p = pr ? pr[i] : 0.5f;
            if (!pr || fabsf(u - p) > tol) bad++;
        }
    }
    if (bad) snprintf(buf, len, "DIFFERS (%zu, max |dp| %.1e)", bad, md);
    else snprintf(buf, len, "ok (max |dp| %.1e)", md);
    return buf;
}

static int fail;
/* s, noting a failed check (DIFFERS, or a launch that failed) */
static const char *checked(const char *s) {
    if (strncmp(s, "DIFFERS", 7) == 0 || strncmp(s, "LAUNCH FAILED", 13) == 0) fail = 1;
    return s;
}
#define CHECKED(s) checked(s)

/* ---- the block-shape sweep ---------------------------------------------------------------- */
static const char *blocks_s = "32,64,96,128,256,512,1024", *families_s = "all";

static int family_wanted(const char *name) {
    const char *p = families_s;
    size_t len = strlen(name);
    if (!strcmp(families_s, "all")) return 1;
    while (*p) {
        if (!strncmp(p, name, len) && (p[len] == ',' || p[len] == 0)) return 1;
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    return 0;
}

static void sweep_row(const char *family, const char *backend, size_t n, size_t elems, const char *vs_cpu,
                      const char *vs_def, double ms) {
    char t[64], r[64];
    if (ms < 0.0) {
        snprintf(t, sizeof t, "-");
        snprintf(r, sizeof r, "-");
    } else if (ms == ms) {
        snprintf(t, sizeof t, "%.4f", ms);
        snprintf(r, sizeof r, "%.3f", ms > 0 ? (double)elems / (ms * 1e-3) * 1e-9 : 0.0);
    } else {
        snprintf(t, sizeof t, "emulated");
        snprintf(r, sizeof r, "-");
    }
    printf("| %s | %s | %zu | %s | %s | %s | %s |\n", family, backend, n, vs_cpu, vs_def, t, r);
    if (csv) fprintf(csv, "%s,\"sweep %s\",%zu,\"%s / %s\",%.6f\n", family, backend, n, vs_cpu, vs_def, ms == ms ? ms : -1.0);
}

/* best-of-reps milliseconds of kl_run on k's backend after one warm-up run: CUDA events on the
 * stream (device time of the family's launches); the host clock around kl_run + synchronize on the
 * CPU backend */
static double sweep_time(kl_case *k, int events) {
    double best = 1e30;
    int r;
    void *e0 = NULL, *e1 = NULL;
    if (kl_run(k) != NG_OK || ng_synchronize(k->be) != NG_OK) return -1.0;
    if (events && (ng_event_create(k->be, &e0) != NG_OK || ng_event_create(k->be, &e1) != NG_OK)) return -1.0;
    for (r = 0; r < reps; r++) {
        double ms;
        if (events) {
            float f = 0.0f;
            if (ng_event_record(k->be, e0) != NG_OK || kl_run(k) != NG_OK || ng_event_record(k->be, e1) != NG_OK ||
                ng_event_synchronize(k->be, e1) != NG_OK || ng_event_elapsed(k->be, e0, e1, &f) != NG_OK)
                return -1.0;
            ms = (double)f;
        } else {
            double t0 = ng_time_s();
            if (kl_run(k) != NG_OK || ng_synchronize(k->be) != NG_OK) return -1.0;
            ms = 1e3 * (ng_time_s() - t0);
        }
        if (ms < best) best = ms;
    }
    if (events) {
        ng_event_destroy(k->be, e0);
        ng_event_destroy(k->be, e1);
    }
    return best;
}

/* one family at size n: the CPU row, then each block size on gpu (NULL: CPU only) */
static int sweep_family(ng_backend *cpu, ng_backend *gpu, int emulated, ng_kfam f, size_t n, char *summary,
                        size_t slen) {
    const kl_family *F = &kl_families[f];
    kl_case kc;
    float *cpu_out = NULL, *def = NULL, *got = NULL;
    double ms;
    if (kl_case_init(&kc, cpu, f, n) != NG_OK) return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
    cpu_out = malloc(kc.nout * sizeof(float));
    if (!cpu_out || kl_once(&kc, cpu_out) != NG_OK) return fprintf(stderr, "kernel_lab: %s: %s\n", F->name, ng_last_error()), 1;
    ms = emulated ? -1.0 : sweep_time(&kc, 0);
    sweep_row(F->name, "CPU backend (reference)", n, kc.elems, "reference", "-", emulated ? -1.0 : ms);
#if defined(NG_HAVE_CUDA)
    if (gpu) {
        const char *p = blocks_s;
        double def_ms = -1.0, best_ms = 1e30, maxd;
        size_t flips, first, bad;
        char a[160], b[96];
        kl_case kg;
        int best_t = 0;
        if (kl_case_init(&kg, gpu, f, n) != NG_OK) return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
        def = malloc(kg.nout * sizeof(float));
        got = malloc(kg.nout * sizeof(float));
        if (!def || !got) return fprintf(stderr, "kernel_lab: out of memory\n"), 1;
        ng_cuda_set_block(F->name, 0);
        if (kl_once(&kg, def) != NG_OK) return fprintf(stderr, "kernel_lab: %s: %s\n", F->name, ng_last_error()), 1;
        while (*p) {
            const int t = (int)strtol(p, (char **)&p, 10);
            char backend[64];
            if (*p == ',') p++;
            if (t <= 0) break;
            if (ng_cuda_set_block(F->name, t) != NG_OK) {
                /* the family's rules (reduce: powers of two; factor: 64, 256, 1024) are skipped
                 * silently; a shape the device cannot launch is a row */
                if (strstr(ng_last_error(), "exceeds what its kernels allow")) {
                    snprintf(backend, sizeof backend, "CUDA %d threads", t);
                    sweep_row(F->name, backend, n, kg.elems, "not launchable here (registers)", "-", -1.0);
                }
                ng_clear_error();
                continue;
            }
            snprintf(backend, sizeof backend, "CUDA %d threads%s", t, t == ng_cuda_block_default(f) ? " (default)" : "");
            if (kl_once(&kg, got) != NG_OK) {
                snprintf(a, sizeof a, "LAUNCH FAILED: %.120s", ng_last_error());
                ng_clear_error();
                sweep_row(F->name, backend, n, kg.elems, CHECKED(a), "-", -1.0);
                continue;
            }
            bad = kl_compare(&kg, got, cpu_out, F->atol > 0.0 || F->rtol > 0.0 ? F->atol : -1.0, F->rtol,
                             KL_DRAW_FLIPS(kg.draw1 - kg.draw0), &maxd, &flips, &first);
            if (bad)
                snprintf(a, sizeof a, "DIFFERS (%zu; output %zu: %.9g vs %.9g)", bad, first, got[first], cpu_out[first]);
            else if (kg.draw1 > kg.draw0)
                snprintf(a, sizeof a, "ok (max |d| %.1e, %zu draws differ)", maxd, flips);
            else
                snprintf(a, sizeof a, "ok (max |d| %.1e)", maxd);
            bad = F->exact ? kl_compare(&kg, got, def, -1.0, 0.0, 0, &maxd, &flips, &first)
                           : kl_compare(&kg, got, def, 0.0, KL_REDUCE_RTOL, 0, &maxd, &flips, &first);
            if (bad) snprintf(b, sizeof b, "DIFFERS (%zu outputs)", bad);
            else if (F->exact) snprintf(b, sizeof b, "bit-identical");
            else snprintf(b, sizeof b, "within 2 ulp (max |d| %.1e)", maxd);
            /* timed under the emulator too (the same event path as on a GPU), but not shown */
            ms = sweep_time(&kg, 1);
            if (ms < 0.0) {
                snprintf(a, sizeof a, "LAUNCH FAILED while timing: %.100s", ng_last_error());
                sweep_row(F->name, backend, n, kg.elems, CHECKED(a), "-", -1.0);
                continue;
            }
            if (emulated) ms = NAN;
            sweep_row(F->name, backend, n, kg.elems, CHECKED(a), CHECKED(b), ms);
            if (!emulated && ms > 0.0) {
                if (t == ng_cuda_block_default(f)) def_ms = ms;
                if (ms < best_ms) best_ms = ms, best_t = t;
            }
        }
        ng_cuda_set_block(F->name, 0);
        if (!emulated && best_t && def_ms > 0.0)
            snprintf(summary, slen, "| %s | %zu | %.4f | %d | %.4f | %.2f |\n", F->name, n, def_ms, best_t, best_ms,
                     def_ms / best_ms);
        kl_case_free(&kg);
    }
#else
    (void)gpu;
    (void)summary;
    (void)slen;
#endif
    free(cpu_out);
    free(def);
    free(got);
    kl_case_free(&kc);
    return 0;
}

static int sweep(ng_backend *cpu, ng_backend *gpu, int emulated, const char *sizes_s) {
    static char summary[64][160];
    int ns = 0, f, i;
    const char *p = sizes_s;
    printf("\n## Block-shape sweep: every custom kernel family\n\n");
    if (!gpu)
        printf("No CUDA backend here: only the CPU backend's rows (the references the CUDA shapes are checked against); "
               "the shapes run on a GPU (bench/gpu_check.sh) or under the emulator (build/simt/bench/kernel_lab).\n\n");
    else if (emulated)
        printf("CUDA backend: the tests/simt emulator on the CPU: every shape is launched and checked, none is timed "
               "(an emulator's time says nothing about a GPU).\n\n");
    else
        printf("CUDA backend: %s. Times are CUDA events around the family's launches (best of %d after a warm-up); the "
               "CPU backend's by the host clock.\n\n", gpu->description, reps);
    printf("Families (ops per run; tolerance against the CPU backend and why):\n\n");
    for (f = 0; f < NG_KFAM_COUNT; f++)
        if (family_wanted(kl_families[f].name))
            printf("- %s: %s; |d| <= %g + %g |x|%s: %s\n", kl_families[f].name, kl_families[f].ops, kl_families[f].atol,
                   kl_families[f].rtol, kl_families[f].exact ? "" : " (and other block sizes within 2 ulp)", kl_families[f].why);
    printf("\n| family | backend, launch shape | n | vs the CPU backend | vs the default shape | ms (best of %d) | G elements/s |\n",
           reps);
    printf("|---|---|---|---|---|---|---|\n");
    while (*p) {
        size_t n = (size_t)strtoull(p, (char **)&p, 10);
        if (*p == ',') p++;
        if (n < 64) {
            fprintf(stderr, "kernel_lab: sweep sizes must be >= 64\n");
            return 1;
        }
        for (f = 0; f < NG_KFAM_COUNT; f++) {
            if (!family_wanted(kl_families[f].name)) continue;
            if (ns < 64) summary[ns][0] = 0;
            if (sweep_family(cpu, gpu, emulated, (ng_kfam)f, n, ns < 64 ? summary[ns] : summary[63], sizeof summary[0]))
                return 1;
            if (ns < 64 && summary[ns][0]) ns++;
        }
    }
    if (ns) {
        printf("\nFastest block size per family and size against the default (CUDA events, this run):\n\n");
        printf("| family | n | default ms | fastest threads | its ms | default / fastest |\n|---|---|---|---|---|---|\n");
        for (i = 0; i < ns; i++) printf("%s", summary[i]);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *sizes_s = "65536,1048576,4194304", *csv_path = "bench/results/kernel_lab.csv";
    const char *sections = "variants,sweep";
    ng_backend *cpu = NULL, *gpu = NULL, *gpu_all = NULL;
    char buf[128];
    int emulated = 0, device = 0, need_cuda = 0;
    ng_cpu_blas_reexec(argc, argv);
    {
        const ba_opt opts[] = {
            BA_INT_LIST("--sizes", &sizes_s, 1, INT_MAX, 0, "N,N,...", "element counts, one row each"),
            BA_I("--reps", &reps, 1, INT_MAX, "N", "timed runs (the best counts) after one warm-up"),
            BA_S("--csv", &csv_path, "PATH", "CSV file written"),
            BA_S("--sections", &sections, "variants,sweep", "what runs: the numbered variants and/or the block-shape sweep"),
            BA_INT_LIST("--blocks", &blocks_s, 1, 1024, 0, "T,T,...", "threads per block the sweep tries (each family takes those it accepts)"),
            BA_S("--families", &families_s, "all|NAME,...", "kernel families the sweep covers"),
            BA_I("--device", &device, 0, 1023, "N", "CUDA device number"),
            BA_SWITCH("--need-cuda", &need_cuda, "exit 1 unless a real CUDA device answers (the emulator does not count)"),
            BA_END};
        const int rc = ba_parse("kernel_lab", "Numbered variants of the custom kernels and each kernel family's block-shape "
                                              "sweep, checked against the CPU backend and timed (make kernel-lab).",
                                opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    if (strcmp(families_s, "all")) { /* every name of --families must be a family */
        const char *p = families_s;
        while (*p) {
            size_t len = strcspn(p, ",");
            int f, known = 0;
            for (f = 0; f < NG_KFAM_COUNT; f++)
                known |= strlen(kl_families[f].name) == len && !strncmp(p, kl_families[f].name, len);
            if (!known)
                return fprintf(stderr, "kernel_lab: --families: no family '%.*s' (uniform, gibbs, bernoulli, fang, factor, "
                               "conv, optim, reduce, or all)\n", (int)len, p), 2;
            p += len;
            if (*p == ',') p++;
        }
    }
    if (!strstr(sections, "variants") && !strstr(sections, "sweep"))
        return fprintf(stderr, "kernel_lab: --sections %s: name variants and/or sweep\n", sections), 2;
    if (ng_backend_cpu_init(&cpu) != NG_OK) return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
    if (ng_backend_cuda_init(device, &gpu) != NG_OK) {
        fprintf(stderr, "kernel_lab: no CUDA variants: %s\n", ng_last_error());
        gpu = NULL;
    }
    /* the emulator's CUDA backend: only the sweep's checks, no timed variants */
    emulated = gpu && strstr(gpu->description, "SIMT emulator") != NULL;
    if (need_cuda && (!gpu || emulated))
        return fprintf(stderr, "kernel_lab: --need-cuda: %s\n", gpu ? "the CUDA backend is the tests/simt emulator" : "no CUDA device"), 1;
    gpu_all = gpu;
    if (emulated) gpu = NULL;
    csv = fopen(csv_path, "w");
    if (!csv) return fprintf(stderr, "kernel_lab: cannot write %s\n", csv_path), 1;
    fprintf(csv, "family,variant,n,check,ms\n");
    printf("CPU backend: %s%s%s\n\n", cpu->description, gpu_all ? "; CUDA backend: " : "", gpu_all ? gpu_all->description : "");
    if (strstr(sections, "variants")) {
    printf("| family | variant | elements | check against variant 1 | ms (best of %d) | G elements/s |\n", reps);
    printf("|---|---|---|---|---|---|\n");
    {
        const char *p = sizes_s;
        /* the CPU op on its hand-written AVX-512 loops (x86-64-v4 CPUs) and on the compiler's clones */
        const int avx512 = ng_cpu_use_avx512(1);
        int path;
        while (*p) {
            size_t n = (size_t)strtoull(p, (char **)&p, 10), k;
            int rows = 500, cols = (int)((n + 499) / 500);
            float *ref, *out, *ref2, *pr, *sr;
            if (*p == ',') p++;
            if (n < 1) break;
            n = (size_t)rows * cols; /* whole columns for the Gibbs family */
            ref = malloc(n * 4); out = malloc(n * 4); ref2 = malloc(n * 4); pr = malloc(n * 4); sr = malloc(n * 4);
            if (!ref || !out || !ref2 || !pr || !sr) return fprintf(stderr, "kernel_lab: out of memory\n"), 1;
            /* uniform */
            {
                uctx c = {n, ref, cpu, NULL};
                double ms = timeit(u_scalar, &c, NULL);
                row("uniform", "1 scalar ng_uniform4_at, 1 thread", n, "reference", ms);
                c.out = out;
                ms = timeit(u_block, &c, NULL);
                row("uniform", "2 ng_uniform4_block (16 lanes), 1 thread", n, CHECKED(same_bits(ref, out, n)), ms);
                if (ng_alloc(cpu, n * 4, (void **)&c.dev) != NG_OK) return 1;
                for (path = avx512; path >= 0; path--) {
                    ng_cpu_use_avx512(path);
                    ms = timeit(u_backend, &c, cpu);
                    ng_get(cpu, out, c.dev, n * 4);
                    row("uniform", path ? "3 CPU backend op (OpenMP), hand-written AVX-512" : "3c CPU backend op (OpenMP), compiler clones",
                        n, CHECKED(same_bits(ref, out, n)), ms);
                }
                ng_cpu_use_avx512(avx512);
                ng_free(cpu, c.dev);
                if (gpu) {
                    c.be = gpu;
                    if (ng_alloc(gpu, n * 4, (void **)&c.dev) != NG_OK) return 1;
                    ms = timeit(u_backend, &c, gpu);
                    ng_get(gpu, out, c.dev, n * 4);
                    row("uniform", "4 CUDA kernel", n, CHECKED(same_bits(ref, out, n)), ms);
                    ng_free(gpu, c.dev);
                }
            }
            /* gibbs */
            {
                gctx c;
                float *bias = malloc((size_t)rows * 4);
                double ms;
                ng_backend *bes[2] = {cpu, gpu};
                int b;
                memset(&c, 0, sizeof c);
                c.rows = rows;
                c.cols = cols;
                for (k = 0; k < n; k++) ref2[k] = 8.0f * ng_uniform_at(77, 1, k) - 4.0f; /* pre-activations */
                for (k = 0; k < (size_t)rows; k++) bias[k] = 0.002f * (float)k - 0.5f;
                c.pre = ref2; c.bias = bias; c.prob = pr; c.smp = sr;
                ms = timeit(g_scalar, &c, NULL);
                row("gibbs", "1 scalar ng_gibbs_unit + ng_uniform_at, 1 thread", n, "reference", ms);
                for (b = 0; b < 2; b++) {
                    ng_backend *be = bes[b];
                    if (!be) continue;
                    c.be = be;
                    if (ng_alloc(be, n * 4, (void **)&c.dpre) || ng_alloc(be, (size_t)rows * 4, (void **)&c.dbias) ||
                        ng_alloc(be, n * 4, (void **)&c.dprob) || ng_alloc(be, n * 4, (void **)&c.dsmp))
                        return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
                    ng_set(be, c.dpre, ref2, n * 4);
                    ng_set(be, c.dbias, bias, (size_t)rows * 4);
                    for (path = b == 0 ? avx512 : 0; path >= 0; path--) {
                        if (b == 0) ng_cpu_use_avx512(path);
                        ms = timeit(g_backend, &c, be);
                        ng_get(be, out, c.dprob, n * 4);
                        ng_get(be, ref, c.dsmp, n * 4);
                        if (b == 0)
                            row("gibbs", path ? "2 CPU backend op (OpenMP), hand-written AVX-512" : "2c CPU backend op (OpenMP), compiler clones (16-lane Philox)", n,
                                CHECKED(memcmp(out, pr, n * 4) == 0 && memcmp(ref, sr, n * 4) == 0 ? "bit-identical" : "DIFFERS"), ms);
                        else
                            row("gibbs", "3 CUDA kernel", n, CHECKED(close_draws(pr, sr, out, ref, n, 2e-7f, buf, sizeof buf)), ms);
                    }
                    ng_cpu_use_avx512(avx512);
                    ng_free(be, c.dpre); ng_free(be, c.dbias); ng_free(be, c.dprob); ng_free(be, c.dsmp);
                }
                free(bias);
            }
            /* bernoulli */
            {
                bctx c;
                double ms;
                ng_backend *bes[2] = {cpu, gpu};
                int b;
                for (k = 0; k < n; k++) ref2[k] = ng_uniform_at(78, 1, k); /* probabilities */
                c.n = n; c.p = ref2; c.out = sr;
                ms = timeit(b_scalar, &c, NULL);
                row("bernoulli", "1 scalar, 1 thread", n, "reference", ms);
                for (b = 0; b < 2; b++) {
                    ng_backend *be = bes[b];
                    if (!be) continue;
                    c.be = be;
                    if (ng_alloc(be, n * 4, (void **)&c.dp) || ng_alloc(be, n * 4, (void **)&c.dout)) return 1;
                    ng_set(be, c.dp, ref2, n * 4);
                    for (path = b == 0 ? avx512 : 0; path >= 0; path--) {
                        if (b == 0) ng_cpu_use_avx512(path);
                        ms = timeit(b_backend, &c, be);
                        ng_get(be, out, c.dout, n * 4);
                        row("bernoulli", b != 0 ? "3 CUDA kernel" : path ? "2 CPU backend op (OpenMP), hand-written AVX-512" : "2c CPU backend op (OpenMP), compiler clones (16-lane Philox)", n,
                            CHECKED(same_bits(sr, out, n)), ms);
                    }
                    ng_cpu_use_avx512(avx512);
                    ng_free(be, c.dp); ng_free(be, c.dout);
                }
            }
            /* momentum */
            {
                mctx c;
                ng_backend *bes[2] = {cpu, gpu};
                float *h = malloc(4 * n * 4), *want = malloc(3 * n * 4), *got = malloc(3 * n * 4);
                int b;
                if (!h || !want || !got) return fprintf(stderr, "kernel_lab: out of memory\n"), 1;
                for (k = 0; k < 4 * n; k++) h[k] = 2.0f * ng_uniform_at(79, 1, k) - 1.0f;
                for (b = 0; b < 2; b++) {
                    ng_backend *be = bes[b];
                    double ms1, ms2, md = 0.0;
                    if (!be) continue;
                    c.n = n;
                    c.be = be;
                    if (ng_alloc(be, n * 4, (void **)&c.d) || ng_alloc(be, n * 4, (void **)&c.v) ||
                        ng_alloc(be, n * 4, (void **)&c.p) || ng_alloc(be, n * 4, (void **)&c.bar))
                        return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
                    if (m_once(m_chain, &c, h, b == 0 ? want : got) != NG_OK) return 1;
                    ms1 = timeit(m_chain, &c, be);
                    if (m_once(m_fused, &c, h, got) != NG_OK) return 1;
                    ms2 = timeit(m_fused, &c, be);
                    if (b == 0) {
                        row("momentum", "1 NAG + average as 5 axpby ops (CPU backend, OpenMP)", n, "reference", ms1);
                        row("momentum", "2 NG_OP_MOMENTUM, one pass (CPU backend, OpenMP)", n,
                            CHECKED(same_bits(want, got, 3 * n)), ms2);
                    } else {
                        /* the GPU against the CPU's chain: nvcc may contract a product into an fma */
                        for (k = 0; k < 3 * n; k++) {
                            double d = fabs((double)want[k] - (double)got[k]);
                            if (d > md) md = d;
                        }
                        snprintf(buf, sizeof buf, md <= 1e-6 ? "ok (max |d| %.1e)" : "DIFFERS (max |d| %.1e)", md);
                        row("momentum", "3 the 5 axpby kernels (CUDA)", n, "timing only", ms1);
                        row("momentum", "4 the fused kernel (CUDA)", n, CHECKED(buf), ms2);
                    }
                    ng_free(be, c.d); ng_free(be, c.v); ng_free(be, c.p); ng_free(be, c.bar);
                }
                free(h); free(want); free(got);
            }
            free(ref); free(out); free(ref2); free(pr); free(sr);
        }
    }
    }
    if (strstr(sections, "sweep") && sweep(cpu, gpu_all, emulated, sizes_s)) return 1;
    fclose(csv);
    ng_backend_free(gpu_all);
    ng_backend_free(cpu);
    if (fail) fprintf(stderr, "kernel_lab: a variant DIFFERS from its reference\n");
    return fail;
}
