/* test_update.c: the update rules of host/optim/ (natgrad/update.h): sgd, nag, adam, rmsprop, and
 * what they share (weight decay, iterate averaging, theta / average accessors, checkpoints).
 *
 * The model is a fake: a quadratic f(theta) = 1/2 theta^T A theta - b^T theta on 9 parameters, W
 * (3 x 2, takes decay) and c (3, no decay), A = Q diag(lambda) Q^T with Q a Householder
 * reflection and lambda log-spaced in [lo, hi]. Its gradient slot fetches the parameters, computes
 * A theta - b in double on the host and uploads it (rounded to float). Every reference below is
 * written here in double, independently of the library:
 *   (a) the NAG momentum schedule 1 - 2^(-1 - log2(floor(t/250) + 1)) capped by mu_max (pow/log2,
 *       not the library's closed form), and the final phase;
 *   (b) NAG in Sutskever et al.'s theta/v form (v = mu v - lr g(theta + mu v), theta += v) against
 *       the library's look-ahead form: theta recovered by ng_update_theta, the look-ahead point in
 *       the parameter arena, and the log columns (momentum, update_norm), across the schedule's
 *       250-update boundaries;
 *   (c) adam and rmsprop: each of the updates t = 0, 1, 2 against the formula applied to the
 *       device's own parameters and gradient (bias correction: the first adam step is
 *       -lr sign(g)), and a 40-update trajectory against an independent double run;
 *   (d) iterate averaging theta_bar = xi theta_bar + (1 - xi) theta (theta_bar_0 = theta_0) for
 *       every rule, with nag averaging theta (not the look-ahead point); off: NG_ERR_UNSUPPORTED;
 *   (e) weight decay adds wd * theta only to parameters marked for decay, for every rule;
 *   (f) save -> load -> continue through the trainer (ng_trainer_save to a file, a fresh model,
 *       update rule and trainer, ng_trainer_load) is bit-exact against an uninterrupted run (the
 *       parameters, every state tensor, theta and the log columns), for every rule with averaging,
 *       nag crossing t = 250 and entering its final phase; a mismatching configuration is refused
 *       naming the field, and nothing changes;
 *   (g) bad configurations are refused by the checks and the init functions, naming the option;
 *   (h) on an ill-conditioned quadratic NAG reaches a lower objective than SGD at the same lr;
 *   (i) the fused ops (NG_OP_MOMENTUM of sgd / nag, NG_OP_AXPBY_SEGMENTS of weight decay, NG_OP_ADAM
 *       with its device step count) equal the ops they replaced bit for bit.
 * Every device test runs on the CPU backend and on CUDA (a GPU, or the tests/simt emulator under
 * `make test`; skipped with the reason when neither answers). Files go to a mkdtemp directory. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/checkpoint.h"
#include "natgrad/data.h"
#include "natgrad/model.h"
#include "natgrad/precond.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[480];
static char g_dir[512];

static const char *path_in(const char *name) {
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* ---- the quadratic model -------------------------------------------------------------------- */

#define NP 9 /* W (3 x 2) then c (3): the order of the packed arena */
#define NW 6

typedef struct quad {
    ng_model m; /* first: the interface receives &q->m */
    double A[NP * NP], b[NP];
    ng_tensor W, gW, c, gc;
    long evals;
} quad;

static double urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1p-53;
}

static ng_status quad_gradient(ng_model *m, const ng_tensor *x, const ng_tensor *y) {
    quad *q = (quad *)m;
    float p[NP], g[NP];
    int i, j;
    (void)x;
    (void)y;
    NG_TRY(ng_tensor_get(m->be, &m->param_flat, p));
    for (i = 0; i < NP; i++) {
        double s = -q->b[i];
        for (j = 0; j < NP; j++) s += q->A[i + NP * j] * (double)p[j];
        g[i] = (float)s;
    }
    q->evals++;
    return ng_tensor_set(m->be, &m->grad_flat, g);
}

static const struct ng_model_i quad_iface = {.kind = "quad", .gradient = quad_gradient};

/* A = Q diag(lambda) Q^T, lambda_i = lo (hi / lo)^(i / (NP - 1)), Q = I - 2 u u^T / u^T u; b and
 * theta_0 uniform in [-1, 1) from `seed`. */
static ng_status quad_init(quad *q, ng_backend *be, double lo, double hi, uint64_t seed) {
    double u[NP], uu = 0.0, Q[NP * NP], lam[NP];
    float th[NP];
    int dw[2] = {3, 2}, dc[1] = {3}, i, j, k;
    uint64_t s = seed;
    memset(q, 0, sizeof *q);
    ng_model_begin(&q->m, &quad_iface, be);
    NG_TRY(ng_model_add_param(&q->m, "W", 2, dw, 1, &q->W, &q->gW));
    NG_TRY(ng_model_add_param(&q->m, "c", 1, dc, 0, &q->c, &q->gc));
    NG_TRY(ng_model_commit(&q->m));
    for (i = 0; i < NP; i++) {
        u[i] = urand(&s) - 0.5;
        uu += u[i] * u[i];
        lam[i] = lo * pow(hi / lo, (double)i / (NP - 1));
    }
    for (i = 0; i < NP; i++)
        for (j = 0; j < NP; j++) Q[i + NP * j] = (i == j ? 1.0 : 0.0) - 2.0 * u[i] * u[j] / uu;
    for (i = 0; i < NP; i++)
        for (j = 0; j < NP; j++) {
            double a = 0.0;
            for (k = 0; k < NP; k++) a += Q[i + NP * k] * lam[k] * Q[j + NP * k];
            q->A[i + NP * j] = a;
        }
    for (i = 0; i < NP; i++) q->b[i] = 2.0 * urand(&s) - 1.0;
    for (i = 0; i < NP; i++) th[i] = (float)(2.0 * urand(&s) - 1.0);
    return ng_tensor_set(be, &q->m.param_flat, th);
}

static double quad_f(const quad *q, const double *th) {
    double f = 0.0;
    int i, j;
    for (i = 0; i < NP; i++) {
        double at = 0.0;
        for (j = 0; j < NP; j++) at += q->A[i + NP * j] * th[j];
        f += 0.5 * th[i] * at - q->b[i] * th[i];
    }
    return f;
}

/* g = A x - b + wd x on the decay-marked entries (the first NW) */
static void quad_grad_d(const quad *q, const double *x, double wd, double *g) {
    int i, j;
    for (i = 0; i < NP; i++) {
        double s = -q->b[i];
        for (j = 0; j < NP; j++) s += q->A[i + NP * j] * x[j];
        g[i] = s + (i < NW ? wd * x[i] : 0.0);
    }
}

static ng_status get_vec(ng_backend *be, const float *dev, double *out) {
    float f[NP];
    int i;
    NG_TRY(ng_get(be, f, dev, sizeof f));
    for (i = 0; i < NP; i++) out[i] = f[i];
    return NG_OK;
}

static ng_status get_params(const quad *q, double *out) {
    return get_vec(q->m.be, q->m.param_flat.data, out);
}

/* theta after t updates, through ng_update_theta into a scratch device buffer */
static ng_status get_theta(ng_update *u, quad *q, uint64_t t, double *out) {
    float *d = NULL;
    ng_tensor v;
    ng_status s;
    NG_TRY(ng_alloc(q->m.be, NP * sizeof(float), (void **)&d));
    v = ng_tensor_matrix(d, NP, 1, NP);
    s = ng_update_theta(u, &q->m, t, &v);
    if (s == NG_OK) s = get_vec(q->m.be, d, out);
    ng_free(q->m.be, d);
    return s;
}

/* One update by hand: gradient, penalty, step (the trainer's order, identity preconditioner). */
static ng_status one_update(ng_update *u, quad *q, uint64_t t) {
    NG_TRY(ng_model_gradient(&q->m, NULL, NULL));
    NG_TRY(ng_update_penalize(u, &q->m, t));
    return ng_update_step(u, &q->m, t);
}

static double max_abs_diff(const double *a, const double *b, int n) {
    double d = 0.0;
    int i;
    for (i = 0; i < n; i++)
        if (!(fabs(a[i] - b[i]) <= d)) d = fabs(a[i] - b[i]);
    return d;
}
static double max_abs(const double *a, int n) {
    double d = 0.0;
    int i;
    for (i = 0; i < n; i++)
        if (fabs(a[i]) > d) d = fabs(a[i]);
    return d;
}

/* ---- (a) the NAG schedule -------------------------------------------------------------------- */

/* Sutskever et al.'s formula written as printed. */
static double mu_formula(uint64_t t, double mu_max) {
    double mu = 1.0 - pow(2.0, -1.0 - log2(floor((double)t / 250.0) + 1.0));
    return mu < mu_max ? mu : mu_max;
}

static int test_nag_schedule(void) {
    static const uint64_t ts[] = {0,    1,    249,  250,  251,   499,   500,    749,     750,
                                  999,  1000, 1249, 1250, 2249,  2250,  24999,  25000,   124999,
                                  125000, 249999, 250000, 1000000, (uint64_t)1 << 40};
    static const float caps[] = {0.0f, 0.5f, 0.9f, 0.99f, 0.995f, 0.999f};
    ng_nag_config c;
    size_t i, k;
    ng_nag_config_default(&c);
    NGT_CHECK(c.lr == 0.01f && c.mu_max == 0.99f && c.final_mu == 0.9f && c.final_steps == 0 && c.average == 0.0f &&
                  c.weight_decay == 0.0f,
              "defaults: lr %g mu_max %g final_mu %g", (double)c.lr, (double)c.mu_max, (double)c.final_mu);
    /* the schedule's first values, uncapped: 1/2 then 3/4, 5/6, 7/8 every 250 updates */
    c.mu_max = 0.999999f;
    NGT_CLOSE(ng_nag_momentum(&c, 0), 0.5, 0.0, "mu_0");
    NGT_CLOSE(ng_nag_momentum(&c, 249), 0.5, 0.0, "mu_249");
    NGT_CLOSE(ng_nag_momentum(&c, 250), 0.75, 0.0, "mu_250");
    NGT_CLOSE(ng_nag_momentum(&c, 749), 5.0 / 6.0, 1e-15, "mu_749");
    NGT_CLOSE(ng_nag_momentum(&c, 750), 0.875, 0.0, "mu_750");
    for (k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        c.mu_max = caps[k];
        for (i = 0; i < sizeof ts / sizeof ts[0]; i++) {
            double want = mu_formula(ts[i], (double)caps[k]), got = ng_nag_momentum(&c, ts[i]);
            if (!(fabs(got - want) <= 1e-15)) {
                printf("  mu_max %g, t = %llu: mu %.17g, formula %.17g\n", (double)caps[k],
                       (unsigned long long)ts[i], got, want);
                return NGT_FAIL;
            }
        }
    }
    /* final phase: the last 1000 of 5000 updates use min(mu_t, 0.9) */
    c.mu_max = 0.999f;
    c.total_steps = 5000;
    c.final_steps = 1000;
    c.final_mu = 0.9f;
    NGT_CHECK(ng_nag_config_check(&c) == NG_OK, "valid final phase refused: %s", ng_last_error());
    NGT_CLOSE(ng_nag_momentum(&c, 3999), mu_formula(3999, 0.999f), 1e-15, "mu_3999 (before the final phase)");
    NGT_CLOSE(ng_nag_momentum(&c, 4000), (double)0.9f, 0.0, "mu_4000 (final phase)");
    NGT_CLOSE(ng_nag_momentum(&c, 4999), (double)0.9f, 0.0, "mu_4999 (final phase)");
    NGT_CLOSE(ng_nag_momentum(&c, 100), 0.5, 0.0, "mu_100 with a final phase set");
    /* a final phase never raises mu */
    c.total_steps = 600;
    c.final_steps = 500;
    NGT_CLOSE(ng_nag_momentum(&c, 100), 0.5, 0.0, "mu_100 inside a long final phase");
    NGT_CLOSE(ng_nag_momentum(&c, 599), 5.0 / 6.0, 1e-15, "mu_599 inside a long final phase");
    return NGT_PASS;
}

/* ---- (b) NAG against the theta/v form -------------------------------------------------------- */

static int nag_reference_body(ng_backend *be) {
    static const uint64_t checks[] = {1, 2, 3, 10, 249, 250, 251, 252, 260, 500, 501, 520};
    quad q;
    ng_update *u = NULL;
    ng_nag_config c;
    double th[NP], v[NP], y[NP], g[NP], got[NP], phi[NP], vals[2];
    uint64_t t;
    size_t ci = 0;
    int i, r = NGT_FAIL;
    /* far from converged at t = 520 (the slowest mode moves by lr lambda / (1 - mu) ~ 1e-4 per
     * update), so v stays large and a wrong mu at a 250-update boundary shows in theta and phi */
    NGT_OK(quad_init(&q, be, 1e-4, 0.5, 11));
    ng_nag_config_default(&c);
    c.lr = 0.1f;
    c.mu_max = 0.99f;
    if (ng_update_nag_init(be, &q.m, &c, &u) != NG_OK || get_params(&q, th) != NG_OK) goto fail;
    for (i = 0; i < NP; i++) v[i] = 0.0;
    /* at t = 0 the parameter arena holds theta_0 */
    if (get_theta(u, &q, 0, got) != NG_OK) goto fail;
    if (max_abs_diff(got, th, NP) != 0.0) {
        printf("  theta_0 differs from the initial parameters\n");
        goto done;
    }
    for (t = 0; t < 520; t++) {
        double mu = mu_formula(t, (double)c.mu_max), mu1 = mu_formula(t + 1, (double)c.mu_max), vn = 0.0, tol;
        if (one_update(u, &q, t) != NG_OK) goto fail;
        /* Sutskever et al.: v = mu_t v - lr g(theta + mu_t v), theta = theta + v */
        for (i = 0; i < NP; i++) y[i] = th[i] + mu * v[i];
        quad_grad_d(&q, y, 0.0, g);
        for (i = 0; i < NP; i++) {
            v[i] = mu * v[i] - (double)c.lr * g[i];
            th[i] += v[i];
            vn += v[i] * v[i];
        }
        if (ci < sizeof checks / sizeof checks[0] && t + 1 == checks[ci]) {
            ci++;
            /* float arithmetic: the measured drift is ~1e-6 |theta| after 500 updates (20 to 40
             * times below this); a wrong mu at a boundary is off by ~1e-3 |theta| */
            tol = 5e-6 * (1.0 + max_abs(th, NP));
            if (get_theta(u, &q, t + 1, got) != NG_OK || get_params(&q, phi) != NG_OK) goto fail;
            if (max_abs_diff(got, th, NP) > tol) {
                printf("  after %llu updates: theta from the look-ahead form is %.3g from the theta/v form "
                       "(tol %.3g)\n",
                       (unsigned long long)(t + 1), max_abs_diff(got, th, NP), tol);
                for (i = 0; i < NP; i++) printf("    theta[%d] = %.9g, theta/v form %.9g\n", i, got[i], th[i]);
                goto done;
            }
            for (i = 0; i < NP; i++) y[i] = th[i] + mu1 * v[i]; /* phi_{t+1} */
            if (max_abs_diff(phi, y, NP) > tol) {
                printf("  after %llu updates: the parameter arena is %.3g from theta + mu_{t+1} v (tol %.3g)\n",
                       (unsigned long long)(t + 1), max_abs_diff(phi, y, NP), tol);
                goto done;
            }
            if (u->iface->log_values(u, &q.m, vals) != NG_OK) goto fail;
            if (fabs(vals[0] - (double)(float)mu) > 0.0 || !(fabs(vals[1] - sqrt(vn)) <= tol * 3.0)) {
                printf("  after %llu updates: log momentum %.9g (want %.9g), update_norm %.9g (want %.9g)\n",
                       (unsigned long long)(t + 1), vals[0], mu, vals[1], sqrt(vn));
                goto done;
            }
        }
    }
    NGT_CHECK(ci == sizeof checks / sizeof checks[0], "checked %zu points", ci);
    NGT_CHECK(ng_update_lr(u, 7) == (double)c.lr, "lr %g", ng_update_lr(u, 7));
    /* theta in place, into the parameter arena itself: the same values */
    if (get_theta(u, &q, 520, th) != NG_OK || ng_update_theta(u, &q.m, 520, &q.m.param_flat) != NG_OK ||
        get_params(&q, got) != NG_OK)
        goto fail;
    if (memcmp(th, got, sizeof th) != 0) {
        printf("  ng_update_theta in place differs from out of place\n");
        goto done;
    }
    r = NGT_PASS;
    goto done;
fail:
    printf("  %s\n", ng_last_error());
done:
    ng_update_free(u);
    ng_model_release(&q.m);
    return r;
}

/* ---- (c) adam and rmsprop ---------------------------------------------------------------------- */

typedef struct adam_ref {
    int rms;
    double lr, b1, b2, eps;
    double m[NP], v[NP];
} adam_ref;

/* One update t of the papers' formulas on theta with the direction g. */
static void adam_ref_step(adam_ref *a, uint64_t t, const double *g, double *th, double *step) {
    int i;
    for (i = 0; i < NP; i++) {
        double s;
        if (a->rms) {
            a->v[i] = a->b2 * a->v[i] + (1.0 - a->b2) * g[i] * g[i];
            s = -a->lr * g[i] / (sqrt(a->v[i]) + a->eps);
        } else {
            double mh, vh;
            a->m[i] = a->b1 * a->m[i] + (1.0 - a->b1) * g[i];
            a->v[i] = a->b2 * a->v[i] + (1.0 - a->b2) * g[i] * g[i];
            mh = a->m[i] / (1.0 - pow(a->b1, (double)(t + 1)));
            vh = a->v[i] / (1.0 - pow(a->b2, (double)(t + 1)));
            s = -a->lr * mh / (sqrt(vh) + a->eps);
        }
        if (step) step[i] = s;
        th[i] += s;
    }
}

/* The trajectory test: both rules step by about lr per coordinate whatever |g|, so a coordinate
 * whose gradient passes near 0 has a step -lr g / sqrt(v) with g computed from float parameters:
 * absolute error ~1e-7, i.e. a large relative error once |g| ~ 1e-4, and float and double runs
 * part ways there whatever the implementation. The trajectory therefore runs on the quadratic
 * with b scaled by 10 (the minimum far away: every |g| stays large) with small steps. */
#define TRAJ_LR 0.002f
#define TRAJ_B_SCALE 10.0

static int adam_body(ng_backend *be, int rms) {
    quad q, q2;
    ng_update *u = NULL, *u2 = NULL;
    adam_ref ra, rb;
    double th[NP], th2[NP], g[NP], got[NP], step[NP], before[NP], vals[1];
    uint64_t t;
    int i, r = NGT_FAIL;
    memset(&ra, 0, sizeof ra);
    ra.rms = rms;
    NGT_OK(quad_init(&q, be, 0.1, 2.0, 21));
    NGT_OK(quad_init(&q2, be, 0.1, 2.0, 21));
    for (i = 0; i < NP; i++) q2.b[i] *= TRAJ_B_SCALE;
    if (rms) {
        ng_rmsprop_config c;
        ng_rmsprop_config_default(&c);
        NGT_CHECK(c.lr == 1e-3f && c.rho == 0.9f && c.eps == 1e-8f, "rmsprop defaults");
        c.lr = 0.01f;
        ra.lr = c.lr;
        ra.b2 = c.rho;
        ra.eps = c.eps;
        if (ng_update_rmsprop_init(be, &q.m, &c, &u) != NG_OK) goto fail;
        c.lr = TRAJ_LR;
        if (ng_update_rmsprop_init(be, &q2.m, &c, &u2) != NG_OK) goto fail;
    } else {
        ng_adam_config c;
        ng_adam_config_default(&c);
        NGT_CHECK(c.lr == 1e-3f && c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f, "adam defaults");
        c.lr = 0.01f;
        ra.lr = c.lr;
        ra.b1 = c.beta1;
        ra.b2 = c.beta2;
        ra.eps = c.eps;
        if (ng_update_adam_init(be, &q.m, &c, &u) != NG_OK) goto fail;
        c.lr = TRAJ_LR;
        if (ng_update_adam_init(be, &q2.m, &c, &u2) != NG_OK) goto fail;
    }
    rb = ra;
    rb.lr = TRAJ_LR;
    /* updates 0, 1, 2 (the bias corrections 1 - beta^1, ^2, ^3) against the formula applied to the
     * device's own parameters and gradient: one update's rounding only */
    for (t = 0; t < 3; t++) {
        float gf[NP];
        if (get_params(&q, before) != NG_OK || ng_model_gradient(&q.m, NULL, NULL) != NG_OK ||
            ng_update_penalize(u, &q.m, t) != NG_OK || ng_tensor_get(be, &q.m.grad_flat, gf) != NG_OK ||
            ng_update_step(u, &q.m, t) != NG_OK || get_params(&q, got) != NG_OK)
            goto fail;
        for (i = 0; i < NP; i++) {
            g[i] = gf[i];
            th[i] = before[i];
        }
        adam_ref_step(&ra, t, g, th, step);
        for (i = 0; i < NP; i++)
            if (!(fabs(got[i] - th[i]) <= 4e-7 * (fabs(before[i]) + fabs(step[i])) + 1e-6 * fabs(step[i]))) {
                printf("  %s update %llu: theta[%d] = %.9g, formula %.9g (step %.9g)\n", rms ? "rmsprop" : "adam",
                       (unsigned long long)t, i, got[i], th[i], step[i]);
                goto done;
            }
        if (t == 0 && !rms)
            for (i = 0; i < NP; i++) /* bias correction: the first step is -lr g / (|g| + eps) */
                if (!(fabs((got[i] - before[i]) + ra.lr * g[i] / (fabs(g[i]) + ra.eps)) <= 1e-6 * ra.lr + 4e-7 * fabs(before[i]))) {
                    printf("  adam update 0: step[%d] = %.9g, want -lr sign(g) = %.9g\n", i, got[i] - before[i],
                           -ra.lr * g[i] / fabs(g[i]));
                    goto done;
                }
        if (u->iface->log_values(u, &q.m, vals) != NG_OK) goto fail;
        {
            double n2 = 0.0;
            for (i = 0; i < NP; i++) n2 += step[i] * step[i];
            if (!(fabs(vals[0] - sqrt(n2)) <= 1e-5 * sqrt(n2))) {
                printf("  update_norm %.9g, want %.9g\n", vals[0], sqrt(n2));
                goto done;
            }
        }
    }
    /* 40 updates against an independent double trajectory (from the same theta_0) */
    if (get_params(&q2, th2) != NG_OK) goto fail;
    for (t = 0; t < 40; t++) {
        double tol;
        if (one_update(u2, &q2, t) != NG_OK) goto fail;
        quad_grad_d(&q2, th2, 0.0, g);
        adam_ref_step(&rb, t, g, th2, NULL);
        tol = 2e-5 * (1.0 + max_abs(th2, NP));
        if (get_params(&q2, got) != NG_OK) goto fail;
        if (max_abs_diff(got, th2, NP) > tol) {
            printf("  %s after %llu updates: %.3g from the double trajectory (tol %.3g)\n", rms ? "rmsprop" : "adam",
                   (unsigned long long)(t + 1), max_abs_diff(got, th2, NP), tol);
            goto done;
        }
    }
    NGT_CHECK(ng_update_lr(u, 3) == ra.lr, "lr %g", ng_update_lr(u, 3));
    r = NGT_PASS;
    goto done;
fail:
    printf("  %s\n", ng_last_error());
done:
    ng_update_free(u);
    ng_update_free(u2);
    ng_model_release(&q.m);
    ng_model_release(&q2.m);
    return r;
}
static int adam_only(ng_backend *be) { return adam_body(be, 0); }
static int rmsprop_only(ng_backend *be) { return adam_body(be, 1); }

/* ---- rule construction for (d) (e) (f) ---------------------------------------------------------- */

enum { R_SGD, R_NAG, R_ADAM, R_RMSPROP, R_COUNT };
static const char *const rule_names[R_COUNT] = {"sgd", "nag", "adam", "rmsprop"};

typedef struct rule_opts {
    float wd, xi;
    uint64_t total; /* nag: total updates of the run (final phase: the last 20) */
    float tweak;    /* added to the rule's main momentum-like option (mismatch tests) */
} rule_opts;

static ng_status make_rule(ng_backend *be, quad *q, int rule, const rule_opts *o, ng_update **u) {
    switch (rule) {
    case R_SGD: {
        ng_sgd_config c;
        memset(&c, 0, sizeof c);
        c.lr = 0.05f;
        c.momentum = 0.9f + o->tweak;
        c.weight_decay = o->wd;
        c.average = o->xi;
        return ng_update_sgd_init(be, &q->m, &c, u);
    }
    case R_NAG: {
        ng_nag_config c;
        ng_nag_config_default(&c);
        c.lr = 0.05f;
        c.mu_max = 0.995f + o->tweak;
        c.total_steps = o->total;
        c.final_steps = o->total ? 20 : 0;
        c.final_mu = 0.6f; /* below the schedule's 0.75 at t >= 250: the final phase shows */
        c.weight_decay = o->wd;
        c.average = o->xi;
        return ng_update_nag_init(be, &q->m, &c, u);
    }
    case R_ADAM: {
        ng_adam_config c;
        ng_adam_config_default(&c);
        c.lr = 0.01f;
        c.beta2 = 0.999f + o->tweak;
        c.weight_decay = o->wd;
        c.average = o->xi;
        return ng_update_adam_init(be, &q->m, &c, u);
    }
    default: {
        ng_rmsprop_config c;
        ng_rmsprop_config_default(&c);
        c.lr = 0.01f;
        c.rho = 0.9f + o->tweak;
        c.weight_decay = o->wd;
        c.average = o->xi;
        return ng_update_rmsprop_init(be, &q->m, &c, u);
    }
    }
}

/* ---- (d) iterate averaging ------------------------------------------------------------------------ */

static int averaging_body(ng_backend *be) {
    int rule;
    for (rule = 0; rule < R_COUNT; rule++) {
        quad q;
        ng_update *u = NULL;
        rule_opts o = {0.0f, 0.9f, 0, 0.0f};
        double bar[NP], th[NP], got[NP];
        ng_tensor view;
        uint64_t t;
        int i, r = NGT_FAIL;
        NGT_OK(quad_init(&q, be, 0.1, 1.0, 31 + (uint64_t)rule));
        if (make_rule(be, &q, rule, &o, &u) != NG_OK || get_params(&q, bar) != NG_OK ||
            ng_update_average(u, &view) != NG_OK)
            goto fail;
        if (view.dtype != NG_F32 || ng_tensor_count(&view) != NP) {
            printf("  %s: the average view is not %d floats\n", rule_names[rule], NP);
            goto done;
        }
        for (t = 0; t < 30; t++) {
            if (one_update(u, &q, t) != NG_OK || get_theta(u, &q, t + 1, th) != NG_OK ||
                get_vec(be, view.data, got) != NG_OK)
                goto fail;
            for (i = 0; i < NP; i++) bar[i] = 0.9 * bar[i] + 0.1 * th[i];
            if (max_abs_diff(got, bar, NP) > 1e-6 * (1.0 + max_abs(bar, NP))) {
                printf("  %s after %llu updates: theta_bar is %.3g from xi theta_bar + (1 - xi) theta\n",
                       rule_names[rule], (unsigned long long)(t + 1), max_abs_diff(got, bar, NP));
                goto done;
            }
        }
        r = NGT_PASS;
        goto done;
    fail:
        printf("  %s: %s\n", rule_names[rule], ng_last_error());
    done:
        ng_update_free(u);
        ng_model_release(&q.m);
        if (r != NGT_PASS) return r;
        /* averaging off: no average, and the accessor says so */
        {
            rule_opts off = {0.0f, 0.0f, 0, 0.0f};
            ng_status s;
            NGT_OK(quad_init(&q, be, 0.1, 1.0, 31));
            NGT_OK(make_rule(be, &q, rule, &off, &u));
            s = ng_update_average(u, &view);
            ng_update_free(u);
            ng_model_release(&q.m);
            NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "averaging") &&
                          strstr(ng_last_error(), rule_names[rule]),
                      "%s without averaging: %s %s", rule_names[rule], ng_status_name(s), ng_last_error());
        }
    }
    return NGT_PASS;
}

/* ---- (e) weight decay -------------------------------------------------------------------------- */

static int decay_body(ng_backend *be) {
    int rule;
    for (rule = 0; rule < R_COUNT; rule++) {
        quad q;
        ng_update *u = NULL;
        rule_opts o = {0.25f, 0.0f, 0, 0.0f};
        float g0[NP], g1[NP], th[NP];
        int i;
        NGT_OK(quad_init(&q, be, 0.1, 1.0, 41));
        NGT_OK(make_rule(be, &q, rule, &o, &u));
        NGT_OK(ng_model_gradient(&q.m, NULL, NULL));
        NGT_OK(ng_tensor_get(be, &q.m.grad_flat, g0));
        NGT_OK(ng_tensor_get(be, &q.m.param_flat, th));
        NGT_OK(ng_update_penalize(u, &q.m, 0));
        NGT_OK(ng_tensor_get(be, &q.m.grad_flat, g1));
        ng_update_free(u);
        ng_model_release(&q.m);
        for (i = 0; i < NP; i++) {
            double want = i < NW ? (double)g0[i] + 0.25 * (double)th[i] : (double)g0[i];
            NGT_CHECK(fabs((double)g1[i] - want) <= 2e-7 * (fabs(g0[i]) + fabs(th[i])) && (i < NW || g1[i] == g0[i]),
                      "%s: gradient[%d] (%s) = %.9g after the penalty, want %.9g", rule_names[rule], i,
                      i < NW ? "W, decays" : "c, no decay", (double)g1[i], want);
        }
    }
    return NGT_PASS;
}

/* ---- (f) save -> load -> continue -------------------------------------------------------------- */

typedef struct run {
    quad q;
    ng_update *u;
    ng_precond *pc;
    ng_batches data;
    ng_trainer tr;
    int live;
} run;

static const float g_data[8] = {1, 2, 3, 4, 5, 6, 7, 8};

static ng_status run_init(run *r, ng_backend *be, int rule, const rule_opts *o) {
    ng_status s;
    memset(r, 0, sizeof *r);
    r->live = 1;
    NG_TRY(quad_init(&r->q, be, 0.05, 1.0, 51));
    s = make_rule(be, &r->q, rule, o, &r->u);
    if (s == NG_OK) s = ng_precond_identity_init(be, &r->pc);
    if (s == NG_OK) s = ng_batches_init(&r->data, be, g_data, 1, 8, 2, 5, 0, 1);
    if (s == NG_OK) s = ng_trainer_init(&r->tr, &r->q.m, r->pc, r->u, &r->data, 5, NULL);
    return s;
}

static void run_free(run *r) {
    if (!r->live) return;
    ng_update_free(r->u);
    ng_precond_free(r->pc);
    ng_batches_free(&r->data);
    ng_model_release(&r->q.m);
    r->live = 0;
}

static ng_status run_to(run *r, uint64_t t, double *row) {
    while (r->tr.t < t) NG_TRY(ng_trainer_step(&r->tr, row));
    return NG_OK;
}

/* every byte of the parameters, of every state tensor, and theta */
static int same_state(const char *what, run *a, run *b) {
    float pa[NP], pb[NP];
    double ta[NP], tb[NP];
    int i;
    NGT_OK(ng_tensor_get(a->q.m.be, &a->q.m.param_flat, pa));
    NGT_OK(ng_tensor_get(b->q.m.be, &b->q.m.param_flat, pb));
    NGT_CHECK(memcmp(pa, pb, sizeof pa) == 0, "%s: parameters differ (%.9g vs %.9g at [0])", what, (double)pa[0],
              (double)pb[0]);
    NGT_CHECK(ng_arena_count(&a->u->state) == ng_arena_count(&b->u->state), "%s: state arenas differ", what);
    for (i = 0; i < ng_arena_count(&a->u->state); i++) {
        float sa[NP], sb[NP];
        const ng_tensor *va = ng_arena_view(&a->u->state, i), *vb = ng_arena_view(&b->u->state, i);
        NGT_CHECK(ng_tensor_count(va) == NP && strcmp(ng_arena_name(&a->u->state, i), ng_arena_name(&b->u->state, i)) == 0,
                  "%s: state tensor %s", what, ng_arena_name(&a->u->state, i));
        NGT_OK(ng_tensor_get(a->q.m.be, va, sa));
        NGT_OK(ng_tensor_get(b->q.m.be, vb, sb));
        NGT_CHECK(memcmp(sa, sb, sizeof sa) == 0, "%s: state tensor %s differs", what, ng_arena_name(&a->u->state, i));
    }
    NGT_OK(get_theta(a->u, &a->q, a->tr.t, ta));
    NGT_OK(get_theta(b->u, &b->q, b->tr.t, tb));
    NGT_CHECK(memcmp(ta, tb, sizeof ta) == 0, "%s: theta differs", what);
    return NGT_PASS;
}

static int resume_one(ng_backend *be, int rule) {
    /* nag: 260 updates in all, final phase (mu 0.6) the last 20; the cut at 130, past it t = 250 */
    const uint64_t half = 130, total = 260;
    rule_opts o = {1e-3f, 0.99f, total, 0.0f};
    run a, b, c;
    double ra[NG_TRAIN_MAX_COLUMNS], rc[NG_TRAIN_MAX_COLUMNS];
    const char *path = path_in("resume.ckpt");
    ng_ckpt *ck = NULL;
    int r = NGT_FAIL, k;
    char what[64];
    snprintf(what, sizeof what, "%s on %s", rule_names[rule], be->iface->name);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    if (run_init(&a, be, rule, &o) != NG_OK || run_to(&a, total, ra) != NG_OK) goto fail;
    if (run_init(&b, be, rule, &o) != NG_OK || run_to(&b, half, NULL) != NG_OK ||
        ng_trainer_save(&b.tr, path, NG_SAVE_ALL) != NG_OK)
        goto fail;
    run_free(&b);
    if (run_init(&c, be, rule, &o) != NG_OK || ng_ckpt_read(path, NG_CKPT_READ_ALL, &ck) != NG_OK ||
        ng_trainer_load(&c.tr, ck, NG_SAVE_ALL) != NG_OK)
        goto fail;
    if (c.tr.t != half) {
        printf("  %s: resumed at t = %llu\n", what, (unsigned long long)c.tr.t);
        goto done;
    }
    if (run_to(&c, total, rc) != NG_OK) goto fail;
    if (same_state(what, &a, &c) != NGT_PASS) goto done;
    for (k = a.tr.col_update; k < a.tr.col_monitor; k++)
        if (memcmp(&ra[k], &rc[k], sizeof ra[k]) != 0) {
            printf("  %s: log column %s %.17g vs %.17g\n", what, a.tr.columns[k], ra[k], rc[k]);
            goto done;
        }
    if (rule == R_NAG) { /* the last update ran in the final phase */
        NGT_CHECK(ra[a.tr.col_update] == (double)0.6f, "%s: last momentum %g", what, ra[a.tr.col_update]);
    }
    r = NGT_PASS;
    goto done;
fail:
    printf("  %s: %s\n", what, ng_last_error());
done:
    ng_ckpt_free(ck);
    run_free(&a);
    run_free(&b);
    run_free(&c);
    return r;
}

/* A checkpoint of one configuration is refused by a run of another, naming the field; the run is
 * unchanged. */
static int mismatch_one(ng_backend *be, int rule) {
    static const struct {
        int rule;
        rule_opts o;
        const char *field;
    } cases[] = {
        {R_SGD, {1e-3f, 0.99f, 260, 0.05f}, "sgd.momentum"},
        {R_SGD, {1e-3f, 0.0f, 260, 0.0f}, "sgd.average_decay"},
        {R_NAG, {1e-3f, 0.99f, 260, -0.005f}, "nag.mu_max"},
        {R_NAG, {1e-3f, 0.99f, 300, 0.0f}, "nag.total_steps"},
        {R_NAG, {0.0f, 0.99f, 260, 0.0f}, "nag.weight_decay"},
        {R_NAG, {1e-3f, 0.9f, 260, 0.0f}, "nag.average_decay"},
        {R_NAG, {1e-3f, 0.0f, 260, 0.0f}, "nag.average_decay"},
        {R_ADAM, {1e-3f, 0.99f, 260, -0.009f}, "adam.beta2"},
        {R_RMSPROP, {1e-3f, 0.99f, 260, 0.05f}, "rmsprop.rho"},
        {R_ADAM, {1e-3f, 0.99f, 260, 0.0f}, "update.kind"}, /* an rmsprop checkpoint into adam */
    };
    const rule_opts base = {1e-3f, 0.99f, 260, 0.0f};
    const char *path = path_in("mismatch.ckpt");
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run a, b;
        ng_ckpt *ck = NULL;
        float before[NP], after[NP];
        ng_status s;
        int src = strcmp(cases[i].field, "update.kind") == 0 ? R_RMSPROP : cases[i].rule;
        if (cases[i].rule != rule) continue;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        NGT_OK(run_init(&a, be, src, &base));
        NGT_OK(run_to(&a, 3, NULL));
        NGT_OK(ng_trainer_save(&a.tr, path, NG_SAVE_ALL));
        run_free(&a);
        NGT_OK(run_init(&b, be, cases[i].rule, &cases[i].o));
        NGT_OK(run_to(&b, 1, NULL));
        NGT_OK(ng_tensor_get(be, &b.q.m.param_flat, before));
        NGT_OK(ng_ckpt_read(path, NG_CKPT_READ_ALL, &ck));
        s = ng_trainer_load(&b.tr, ck, NG_SAVE_ALL);
        ng_ckpt_free(ck);
        NGT_OK(ng_tensor_get(be, &b.q.m.param_flat, after));
        {
            uint64_t t = b.tr.t;
            run_free(&b);
            NGT_CHECK(s == NG_ERR_FORMAT && strstr(ng_last_error(), cases[i].field),
                      "%s checkpoint into a run differing in %s: %s: %s", rule_names[src], cases[i].field,
                      ng_status_name(s), ng_last_error());
            NGT_CHECK(t == 1 && memcmp(before, after, sizeof before) == 0, "a refused load changed the run");
        }
    }
    return NGT_PASS;
}

static int resume_body(ng_backend *be) {
    int rule;
    for (rule = 0; rule < R_COUNT; rule++) {
        int r = resume_one(be, rule);
        if (r != NGT_PASS) return r;
        r = mismatch_one(be, rule);
        if (r != NGT_PASS) return r;
    }
    return NGT_PASS;
}

/* ---- (g) bad configurations ------------------------------------------------------------------- */

static int expect_refused(ng_status s, const char *option, const char *what) {
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), option), "%s: %s: %s (want the option %s named)", what,
              ng_status_name(s), ng_last_error(), option);
    return NGT_PASS;
}
#define REFUSED(expr, option)                                                   \
    do {                                                                        \
        if (expect_refused((expr), option, #expr) != NGT_PASS) return NGT_FAIL; \
    } while (0)

/* SGD's waterfall annealing: lr(t) = lr drop^floor(t / every), exactly (the schedule the conv
 * comparison of PRONG section 4.3 uses); with lr_gamma the two schedules multiply. */
static int test_sgd_waterfall(void) {
    quad q;
    ng_update *u = NULL;
    ng_sgd_config c;
    uint64_t t;
    memset(&c, 0, sizeof c);
    c.lr = 0.2f;
    c.momentum = 0.5f;
    c.lr_drop = 0.25f;
    c.lr_drop_every = 7;
    NGT_OK(quad_init(&q, g_cpu, 0.1, 1.0, 5));
    NGT_OK(ng_update_sgd_init(g_cpu, &q.m, &c, &u));
    for (t = 0; t < 40; t++) {
        const double want = (double)c.lr * pow(0.25, (double)(t / 7));
        NGT_CHECK(fabs(ng_update_lr(u, t) - want) <= 1e-15 * want, "lr(%llu) = %.17g, want %.17g", (unsigned long long)t,
                  ng_update_lr(u, t), want);
    }
    ng_update_free(u);
    c.lr_gamma = 10.0f;
    NGT_OK(ng_update_sgd_init(g_cpu, &q.m, &c, &u));
    NGT_CHECK(fabs(ng_update_lr(u, 15) - 0.2f * 10.0 / 25.0 * 0.0625) <= 1e-9, "lr(15) with lr_gamma = %.9g", ng_update_lr(u, 15));
    ng_update_free(u);
    ng_model_release(&q.m);
    return NGT_PASS;
}

static int test_bad_configs(void) {
    ng_nag_config n, n0;
    ng_adam_config a, a0;
    ng_rmsprop_config p, p0;
    ng_sgd_config s, s0;
    quad q;
    ng_update *u = (ng_update *)&q; /* must come back NULL */
    ng_nag_config_default(&n0);
    ng_adam_config_default(&a0);
    ng_rmsprop_config_default(&p0);
    memset(&s0, 0, sizeof s0);
    s0.lr = 0.1f;
    NGT_OK(ng_nag_config_check(&n0));
    NGT_OK(ng_adam_config_check(&a0));
    NGT_OK(ng_rmsprop_config_check(&p0));
    NGT_OK(ng_sgd_config_check(&s0));
#define NAG_BAD(field, value, option)                    \
    do {                                                 \
        n = n0;                                          \
        n.field = (value);                               \
        REFUSED(ng_nag_config_check(&n), option);        \
    } while (0)
    NAG_BAD(lr, 0.0f, "--lr");
    NAG_BAD(lr, -1.0f, "--lr");
    NAG_BAD(lr, NAN, "--lr");
    NAG_BAD(lr, INFINITY, "--lr");
    NAG_BAD(mu_max, 1.0f, "--mu-max");
    NAG_BAD(mu_max, -0.1f, "--mu-max");
    NAG_BAD(mu_max, NAN, "--mu-max");
    NAG_BAD(final_mu, 1.0f, "--final-mu");
    NAG_BAD(weight_decay, -1e-5f, "--weight-decay");
    NAG_BAD(weight_decay, INFINITY, "--weight-decay");
    NAG_BAD(average, 1.0f, "--average");
    NAG_BAD(average, NAN, "--average");
    n = n0;
    n.final_steps = 1000;
    n.total_steps = 999;
    REFUSED(ng_nag_config_check(&n), "--final-steps");
#define ADAM_BAD(field, value, option)                   \
    do {                                                 \
        a = a0;                                          \
        a.field = (value);                               \
        REFUSED(ng_adam_config_check(&a), option);       \
    } while (0)
    ADAM_BAD(lr, 0.0f, "--lr");
    ADAM_BAD(lr, NAN, "--lr");
    ADAM_BAD(beta1, 1.0f, "--beta1");
    ADAM_BAD(beta1, -0.5f, "--beta1");
    ADAM_BAD(beta2, 1.0f, "--beta2");
    ADAM_BAD(beta2, NAN, "--beta2");
    ADAM_BAD(eps, 0.0f, "--eps");
    ADAM_BAD(eps, INFINITY, "--eps");
    ADAM_BAD(weight_decay, -1.0f, "--weight-decay");
    ADAM_BAD(average, 2.0f, "--average");
#define RMS_BAD(field, value, option)                    \
    do {                                                 \
        p = p0;                                          \
        p.field = (value);                               \
        REFUSED(ng_rmsprop_config_check(&p), option);    \
    } while (0)
    RMS_BAD(lr, -1e-3f, "--lr");
    RMS_BAD(rho, 1.0f, "--rho");
    RMS_BAD(rho, NAN, "--rho");
    RMS_BAD(eps, -1e-8f, "--eps");
    RMS_BAD(weight_decay, NAN, "--weight-decay");
    RMS_BAD(average, -0.5f, "--average");
    s = s0;
    s.average = 1.0f;
    REFUSED(ng_sgd_config_check(&s), "--average");
    s = s0; /* waterfall annealing: a factor in (0, 1] when on */
    s.lr_drop_every = 10;
    s.lr_drop = 0.0f;
    REFUSED(ng_sgd_config_check(&s), "--lr-drop");
    s.lr_drop = 1.5f;
    REFUSED(ng_sgd_config_check(&s), "--lr-drop");
    s.lr_drop = NAN;
    REFUSED(ng_sgd_config_check(&s), "--lr-drop");
    s.lr_drop = 0.5f;
    NGT_OK(ng_sgd_config_check(&s));
    s.lr_drop_every = -1;
    REFUSED(ng_sgd_config_check(&s), "--lr-drop");
    /* the init functions check too and leave *out NULL */
    NGT_OK(quad_init(&q, g_cpu, 0.1, 1.0, 61));
    n = n0;
    n.mu_max = 1.5f;
    REFUSED(ng_update_nag_init(g_cpu, &q.m, &n, &u), "--mu-max");
    NGT_CHECK(u == NULL, "nag init left *out set");
    a = a0;
    a.beta1 = 1.0f;
    REFUSED(ng_update_adam_init(g_cpu, &q.m, &a, &u), "--beta1");
    p = p0;
    p.eps = 0.0f;
    REFUSED(ng_update_rmsprop_init(g_cpu, &q.m, &p, &u), "--eps");
    s = s0;
    s.average = -1.0f;
    REFUSED(ng_update_sgd_init(g_cpu, &q.m, &s, &u), "--average");
    NGT_CHECK(u == NULL, "init left *out set");
    /* ng_update_theta wants a float vector of the model's size */
    NGT_OK(ng_update_nag_init(g_cpu, &q.m, &n0, &u));
    {
        ng_tensor bad = ng_tensor_matrix(q.m.param_flat.data, NP - 1, 1, NP - 1);
        ng_status st = ng_update_theta(u, &q.m, 0, &bad);
        ng_update_free(u);
        ng_model_release(&q.m);
        NGT_CHECK(st == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "nag"), "theta into 8 floats: %s", ng_last_error());
    }
    return NGT_PASS;
}

/* ---- (h) NAG against SGD ------------------------------------------------------------------------ */

static int nag_vs_sgd_body(ng_backend *be) {
    quad qn, qs;
    ng_update *un = NULL, *us = NULL;
    ng_nag_config cn;
    ng_sgd_config cs;
    double thn[NP], ths[NP], th0[NP], fn, fs, f0;
    uint64_t t;
    int r = NGT_FAIL;
    /* condition number 1000 */
    NGT_OK(quad_init(&qn, be, 1e-3, 1.0, 71));
    NGT_OK(quad_init(&qs, be, 1e-3, 1.0, 71));
    ng_nag_config_default(&cn);
    cn.lr = 0.5f;
    cn.mu_max = 0.99f;
    memset(&cs, 0, sizeof cs);
    cs.lr = 0.5f;
    if (get_params(&qn, th0) != NG_OK || ng_update_nag_init(be, &qn.m, &cn, &un) != NG_OK ||
        ng_update_sgd_init(be, &qs.m, &cs, &us) != NG_OK)
        goto fail;
    for (t = 0; t < 1000; t++)
        if (one_update(un, &qn, t) != NG_OK || one_update(us, &qs, t) != NG_OK) goto fail;
    if (get_theta(un, &qn, 1000, thn) != NG_OK || get_theta(us, &qs, 1000, ths) != NG_OK) goto fail;
    f0 = quad_f(&qn, th0);
    fn = quad_f(&qn, thn);
    fs = quad_f(&qs, ths);
    printf("  %s: f after 1000 updates at lr 0.5: start %.6g, sgd %.6g, nag %.6g\n", be->iface->name, f0, fs, fn);
    if (!(fn < fs && fs < f0)) {
        printf("  nag did not beat sgd\n");
        goto done;
    }
    r = NGT_PASS;
    goto done;
fail:
    printf("  %s\n", ng_last_error());
done:
    ng_update_free(un);
    ng_update_free(us);
    ng_model_release(&qn.m);
    ng_model_release(&qs.m);
    return r;
}

/* ---- (i) the fused ops equal the ops they replace, bit for bit ---------------------------------------
 * NG_OP_MOMENTUM (sgd, nag, with and without averaging) against the axpby chain sgd.c / nag.c /
 * update.c issued before (v, then p, then p again for nag, then the average's two), the weight
 * decay's NG_OP_AXPBY_SEGMENTS against one axpby per segment, and NG_OP_ADAM
 * with the step count on the device against the host's bias corrections 1 - beta^(t+1) that
 * adam.c passed by value, at t = 0, 1, 2, 37 and 123456. n = 70001 runs the CPU's OpenMP path. */
static uint64_t g_fz = 0x2545F4914F6CDD1Dull;
static float frand(double lo, double hi) {
    g_fz ^= g_fz << 13;
    g_fz ^= g_fz >> 7;
    g_fz ^= g_fz << 17;
    return (float)(lo + (hi - lo) * (double)(g_fz >> 11) * 0x1p-53);
}

static int fused_ops_body(ng_backend *be) {
    enum { N = 70001 };
    static const struct {
        float a, mu, c;
        int nest;
        float xi;
    } mv[] = {{-0.3f, 0.5f, 1.0f, 0, 0.0f}, {-0.25f, 0.0f, 1.0f, 0, 0.0f}, {-0.05f, 0.75f, 0.8333333f, 1, 0.0f},
              {-0.05f, 0.75f, 0.8333333f, 1, 0.9f}, {-0.3f, 0.5f, 1.0f, 0, 0.99f}};
    static const uint64_t ts[] = {0, 1, 2, 37, 123456};
    const size_t bytes = N * sizeof(float);
    float *h = (float *)malloc(11 * bytes), *dev = NULL;
    float *hd = h, *hv = h + N, *hp = h + 2 * N, *hb = h + 3 * N, *got = h + 4 * N, *habs = h + 10 * N;
    double *cnt = NULL, hc[2];
    int k, i;
    NGT_CHECK(h != NULL, "out of memory");
    NGT_OK(ng_alloc(be, 8 * bytes, (void **)&dev));
    NGT_OK(ng_alloc(be, 2 * sizeof(double), (void **)&cnt));
    for (i = 0; i < N; i++) {
        hd[i] = frand(-3.0, 3.0);
        hv[i] = frand(-1.0, 1.0);
        hp[i] = frand(-2.0, 2.0);
        hb[i] = frand(-2.0, 2.0);
        habs[i] = fabsf(hb[i]);
    }
    hd[5] = 0.0f;
    hv[7] = -0.0f;
    for (k = 0; k < (int)(sizeof mv / sizeof mv[0]); k++) {
        /* device: d | v p bar (the axpby chain) | v p bar (the fused op) */
        float *d = dev, *v0 = dev + N, *p0 = dev + 2 * N, *b0 = dev + 3 * N, *v1 = dev + 4 * N, *p1 = dev + 5 * N,
              *b1 = dev + 6 * N;
        const float w = (float)(1.0 - (double)mv[k].xi);
        const float wc = mv[k].nest ? (float)((1.0 - (double)mv[k].xi) * (double)-mv[k].c) : 0.0f;
        ng_op_args o;
        int j;
        NGT_OK(ng_set(be, d, hd, 4 * bytes));
        NGT_OK(ng_set(be, v1, hv, 3 * bytes));
        NGT_OK(ng_axpby(be, N, mv[k].a, d, mv[k].mu, v0));
        NGT_OK(ng_axpby(be, N, mv[k].c, v0, 1.0f, p0));
        if (mv[k].nest) NGT_OK(ng_axpby(be, N, mv[k].a, d, 1.0f, p0));
        if (mv[k].xi > 0.0f) {
            NGT_OK(ng_axpby(be, N, w, p0, mv[k].xi, b0));
            if (wc != 0.0f) NGT_OK(ng_axpby(be, N, wc, v0, 1.0f, b0));
        }
        memset(&o, 0, sizeof o);
        o.op = NG_OP_MOMENTUM;
        o.momentum.n = N;
        o.momentum.d = d;
        o.momentum.v = v1;
        o.momentum.p = p1;
        o.momentum.a = mv[k].a;
        o.momentum.mu = mv[k].mu;
        o.momentum.c = mv[k].c;
        o.momentum.nesterov = mv[k].nest;
        if (mv[k].xi > 0.0f) {
            o.momentum.bar = b1;
            o.momentum.xi = mv[k].xi;
            o.momentum.w = w;
            o.momentum.wc = wc;
        }
        NGT_OK(ng_run_op(be, &o));
        NGT_OK(ng_get(be, got, v0, 6 * bytes));
        for (j = 0; j < 3; j++) {
            const float *x = got + (size_t)j * N, *y = got + (size_t)(3 + j) * N;
            NGT_CHECK(memcmp(x, y, bytes) == 0, "momentum variant %d (%s): %s of the fused op differs from the axpby chain",
                      k, be->iface->name, j == 0 ? "v" : j == 1 ? "p" : "bar");
        }
    }
    { /* weight decay: NG_OP_AXPBY_SEGMENTS against one axpby per segment (what update.c issued) */
        static const size_t so[3] = {0, 5000, 20000}, sl[3] = {1000, 4000, N - 20000};
        float *x = dev, *ya = dev + N, *yb = dev + 2 * N;
        ng_op_args o;
        int j;
        NGT_OK(ng_set(be, x, hp, bytes));
        NGT_OK(ng_set(be, ya, hv, bytes));
        NGT_OK(ng_set(be, yb, hv, bytes));
        for (j = 0; j < 3; j++) NGT_OK(ng_axpby(be, sl[j], 1e-3f, x + so[j], 1.0f, ya + so[j]));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_AXPBY_SEGMENTS;
        o.axpby_segments.count = 3;
        o.axpby_segments.alpha = 1e-3f;
        o.axpby_segments.x = x;
        o.axpby_segments.beta = 1.0f;
        o.axpby_segments.y = yb;
        for (j = 0; j < 3; j++) o.axpby_segments.off[j] = so[j], o.axpby_segments.len[j] = sl[j];
        NGT_OK(ng_run_op(be, &o));
        NGT_OK(ng_get(be, got, ya, 2 * bytes));
        NGT_CHECK(memcmp(got, got + N, bytes) == 0, "axpby_segments (%s) differs from one axpby per segment",
                  be->iface->name);
    }
    for (k = 0; k < (int)(sizeof ts / sizeof ts[0]); k++) {
        const float b1 = 0.9f, b2 = 0.999f;
        float *g = dev, *pa = dev + N, *ma = dev + 2 * N, *va = dev + 3 * N, *pb = dev + 4 * N, *mb = dev + 5 * N,
              *vb = dev + 6 * N, *st = dev + 7 * N;
        ng_op_args o;
        int j;
        NGT_OK(ng_set(be, g, hd, bytes));
        for (j = 0; j < 2; j++) {
            NGT_OK(ng_set(be, j ? pb : pa, hp, bytes));
            NGT_OK(ng_set(be, j ? mb : ma, hv, bytes));
            NGT_OK(ng_set(be, j ? vb : va, habs, bytes)); /* a second moment: >= 0 */
        }
        hc[0] = (double)ts[k];
        hc[1] = 0.0;
        NGT_OK(ng_set(be, cnt, hc, sizeof hc));
        for (j = 0; j < 2; j++) {
            memset(&o, 0, sizeof o);
            o.op = NG_OP_ADAM;
            o.adam.n = N;
            o.adam.param = j ? pb : pa;
            o.adam.grad = g;
            o.adam.m = j ? mb : ma;
            o.adam.v = j ? vb : va;
            o.adam.step = j ? st : NULL;
            o.adam.b1 = b1;
            o.adam.c1 = (float)(1.0 - (double)b1);
            o.adam.b2 = b2;
            o.adam.c2 = (float)(1.0 - (double)b2);
            o.adam.lr = 1e-3f;
            o.adam.eps = 1e-8f;
            if (j) /* the device count */
                o.adam.count = cnt;
            else { /* what adam.c computed on the host before */
                o.adam.bc1 = 1.0 - pow((double)b1, (double)ts[k] + 1.0);
                o.adam.bc2 = 1.0 - pow((double)b2, (double)ts[k] + 1.0);
            }
            NGT_OK(ng_run_op(be, &o));
        }
        NGT_OK(ng_get(be, got, pa, 6 * bytes));
        for (j = 0; j < 3; j++)
            NGT_CHECK(memcmp(got + (size_t)j * N, got + (size_t)(3 + j) * N, bytes) == 0,
                      "adam t = %llu (%s): %s with the device step count differs from the host's bias corrections",
                      (unsigned long long)ts[k], be->iface->name, j == 0 ? "param" : j == 1 ? "m" : "v");
        NGT_OK(ng_get(be, hc, cnt, sizeof hc));
        NGT_CHECK(hc[0] == (double)ts[k] + 1.0 && hc[1] == 0.0, "adam t = %llu (%s): device count {%g, %g} after the op",
                  (unsigned long long)ts[k], be->iface->name, hc[0], hc[1]);
    }
    ng_free(be, cnt);
    ng_free(be, dev);
    free(h);
    return NGT_PASS;
}

/* ---- backends ------------------------------------------------------------------------------------ */

static int run_on(ng_backend *be, int (*body)(ng_backend *)) {
    if (!be) return ngt_skip(g_cuda_reason);
    return body(be);
}

#define BOTH(name, body)                                                  \
    static int test_##name##_cpu(void) { return run_on(g_cpu, body); }   \
    static int test_##name##_cuda(void) { return run_on(g_cuda, body); }
BOTH(nag_vs_theta_v_form, nag_reference_body)
BOTH(adam_steps, adam_only)
BOTH(rmsprop_steps, rmsprop_only)
BOTH(iterate_averaging, averaging_body)
BOTH(weight_decay_marked_only, decay_body)
BOTH(resume_bit_exact_and_mismatch, resume_body)
BOTH(nag_beats_sgd, nag_vs_sgd_body)
BOTH(fused_ops_bit_identical, fused_ops_body)

int main(void) {
    const char *tmpdir = getenv("TMPDIR");
    ng_status s = ng_backend_cpu_init(&g_cpu);
    if (s != NG_OK) {
        printf("cpu backend: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "%s/natgrad_update_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(g_dir)) {
        printf("mkdtemp %s: %s\nRESULT passed=0 failed=1 skipped=0\n", g_dir, strerror(errno));
        return 1;
    }
    s = ng_backend_cuda_init(0, &g_cuda);
    if (s != NG_OK) {
        snprintf(g_cuda_reason, sizeof g_cuda_reason, "no CUDA backend here: %s", ng_last_error());
        g_cuda = NULL;
        ng_clear_error();
    }
    NGT_RUN(test_nag_schedule);
    NGT_RUN(test_bad_configs);
    NGT_RUN(test_sgd_waterfall);
    NGT_RUN(test_nag_vs_theta_v_form_cpu);
    NGT_RUN(test_adam_steps_cpu);
    NGT_RUN(test_rmsprop_steps_cpu);
    NGT_RUN(test_iterate_averaging_cpu);
    NGT_RUN(test_weight_decay_marked_only_cpu);
    NGT_RUN(test_resume_bit_exact_and_mismatch_cpu);
    NGT_RUN(test_nag_beats_sgd_cpu);
    NGT_RUN(test_fused_ops_bit_identical_cpu);
    NGT_RUN(test_nag_vs_theta_v_form_cuda);
    NGT_RUN(test_adam_steps_cuda);
    NGT_RUN(test_rmsprop_steps_cuda);
    NGT_RUN(test_iterate_averaging_cuda);
    NGT_RUN(test_weight_decay_marked_only_cuda);
    NGT_RUN(test_resume_bit_exact_and_mismatch_cuda);
    NGT_RUN(test_nag_beats_sgd_cuda);
    NGT_RUN(test_fused_ops_bit_identical_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    unlink(path_in("resume.ckpt"));
    unlink(path_in("mismatch.ckpt"));
    rmdir(g_dir);
    return ngt_finish();
}
