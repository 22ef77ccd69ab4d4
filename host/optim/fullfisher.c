/* fullfisher.c: the natural parameter space of Sohl-Dickstein's note (eq. 37) with the full, dense
 * Fisher of a tiny network (natgrad/recipes.h, "full"). At updates t = 0, K, 2K, ... (and when no
 * factor exists yet) on the gradient's batch:
 *   G      column k = G e_k by the exact Gauss-Newton (= Fisher for the matching losses) product
 *          ng_net_gvp, n products; symmetrised from its lower triangle, + lambda I
 *   roots  G + lambda I = E diag(w) E^T by the float64 symmetric eigensolver (eigenvalues floored at
 *          lambda: G is positive semi-definite), S = E diag(w^(1/2)) E^T, S^-1 = E diag(w^(-1/2)) E^T
 *          rounded to float32 (state arena "full.S", "full.Sinv": a resume between refreshes is
 *          bit-exact)
 * With --full-inverse regularized (Sohl-Dickstein eq. 35) G itself is eigendecomposed (no + lambda I)
 * and S^-1 = E diag(sqrt(g / (g^2 + lambda^2))) E^T, g = max(w, 0), S its pseudo-inverse: the step
 * S^-1 S^-1 grad is (G^2 + lambda^2 I)^-1 G grad. On several ranks (natgrad/train.h) G of this
 * rank's shard, weighted by its share of the global batch, is all-reduced before the roots, so
 * every rank holds the same S, S^-1.
 * apply leaves S^-1 g in the gradient arena (the gradient in phi); ng_full_phi_map maps x <- S x or
 * S^-1 x for the update-rule wrapper of phi.c. Refused above NG_FULL_MAX_PARAMS parameters (dense
 * n x n storage and an O(n^3) eigendecomposition per refresh). Allocates at init only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/net.h"
#include "natgrad/profile.h"
#include "natgrad/recipes.h"

typedef struct full {
    ng_full_config cfg;
    int n;
    ng_tensor S, Si;  /* (n, n) state */
    ng_arena scratch;
    ng_tensor G, X, T, ek, tmp, w, w2, Gd, wd;
    double *hw;      /* host: the eigenvalues (regularised inverse) */
    float *hs, *hsi; /* host: the eigenvalues of S and S^-1 (regularised inverse) */
    int ready;
} full;

void ng_full_config_default(ng_full_config *c) {
    memset(c, 0, sizeof *c);
    c->lambda = 1e-3;
    c->phi_every = 1;
}

ng_status ng_full_config_check(const ng_full_config *c) {
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "full Fisher: NULL configuration");
    if (!(c->lambda > 0.0) || !isfinite(c->lambda))
        return ng_error(NG_ERR_INVALID_ARG, "--full-lambda %g: must be finite and > 0 (G + lambda I must be invertible)", c->lambda);
    if (c->phi_every < 1) return ng_error(NG_ERR_INVALID_ARG, "--phi-every %d: the full Fisher needs K >= 1", c->phi_every);
    if (c->inverse != NG_FULL_INV_TIKHONOV && c->inverse != NG_FULL_INV_REGULARIZED)
        return ng_error(NG_ERR_INVALID_ARG, "--full-inverse: %d is neither tikhonov (0) nor regularized (1)", c->inverse);
    return NG_OK;
}

static ng_status eig_mul(full *k, ng_backend *be, float *out);

static ng_status eig_pow(full *k, ng_backend *be, float power, float *out) {
    ng_op_args o;
    int n = k->n;
    NG_TRY(ng_fill(be, (size_t)n, 1.0f, k->w2.data));
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_POW;
    o.outer_scale.rows = 1;
    o.outer_scale.cols = n;
    o.outer_scale.x = k->w2.data;
    o.outer_scale.ldx = 1;
    o.outer_scale.v = k->w.data;
    o.outer_scale.floor = (float)k->cfg.lambda;
    o.outer_scale.power = power;
    o.outer_scale.out = k->w2.data;
    o.outer_scale.ldo = 1;
    NG_TRY(ng_run_op(be, &o));
    return eig_mul(k, be, out);
}

/* out = X diag(w2) X^T (X the eigenvectors), symmetric */
static ng_status eig_mul(full *k, ng_backend *be, float *out) {
    ng_op_args o;
    int n = k->n;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_MUL;
    o.outer_scale.rows = n;
    o.outer_scale.cols = n;
    o.outer_scale.x = k->X.data;
    o.outer_scale.ldx = n;
    o.outer_scale.v = k->w2.data;
    o.outer_scale.out = k->T.data;
    o.outer_scale.ldo = n;
    NG_TRY(ng_run_op(be, &o));
    NG_TRY(ng_gemm(be, 0, 1, n, n, n, 1.0f, k->T.data, n, k->X.data, n, 0.0f, out, n));
    return ng_symmetrize_lower(be, n, out, n, 0.0f);
}

/* S^-1 = E diag(h) E^T, h = sqrt(g / (g^2 + lambda^2)), and S = E diag(1 / h) E^T on h > 0 (0 elsewhere),
 * from the float64 eigenvalues (host, n <= NG_FULL_MAX_PARAMS) */
static ng_status regularized_roots(full *k, ng_backend *be) {
    int n = k->n, i;
    double *w = k->hw, l2 = k->cfg.lambda * k->cfg.lambda;
    float *h = k->hsi, *hi = k->hs;
    ng_status s = ng_get(be, w, k->wd.data_d, (size_t)n * sizeof(double));
    for (i = 0; s == NG_OK && i < n; i++) {
        double g = w[i] > 0.0 ? w[i] : 0.0, r = sqrt(g / (g * g + l2));
        h[i] = (float)r;
        hi[i] = r > 0.0 ? (float)(1.0 / r) : 0.0f;
    }
    if (s == NG_OK) s = ng_set(be, k->w2.data, h, (size_t)n * sizeof(float));
    if (s == NG_OK) s = eig_mul(k, be, k->Si.data);
    if (s == NG_OK) s = ng_set(be, k->w2.data, hi, (size_t)n * sizeof(float));
    if (s == NG_OK) s = eig_mul(k, be, k->S.data);
    return s;
}

static ng_status refresh(ng_precond *p, ng_model *m) {
    full *k = (full *)p->impl;
    ng_backend *be = p->be;
    int n = k->n, j, info = 0;
    size_t nn = (size_t)n * (size_t)n;
    float one = 1.0f, zero = 0.0f;
    NG_TRY(ng_fill(be, (size_t)n, 0.0f, k->ek.data));
    for (j = 0; j < n; j++) {
        ng_tensor col = ng_tensor_matrix(k->G.data + (size_t)j * n, n, 1, n);
        NG_TRY(ng_set(be, k->ek.data + j, &one, sizeof one));
        NG_TRY(ng_net_gvp(m, &k->ek, &col));
        NG_TRY(ng_set(be, k->ek.data + j, &zero, sizeof zero));
    }
    if (p->dist.comm && p->dist.comm->world > 1) {
        /* this rank's G is the mean over its shard [lo, hi): weighted by the share and summed over
         * the ranks it is the global batch's, identical on every rank (so are S, S^-1 from it) */
        NG_TRY(ng_scal(be, nn, (float)((double)(p->dist.hi - p->dist.lo) / (double)p->dist.batch), k->G.data));
        NG_TRY_RANGE(NG_CAT_COMM, "full Fisher all-reduce", ng_comm_allreduce(p->dist.comm, be, NG_F32, k->G.data, nn, "the full Fisher"));
    }
    NG_TRY(ng_symmetrize_lower(be, n, k->G.data, n, k->cfg.inverse == NG_FULL_INV_REGULARIZED ? 0.0f : (float)k->cfg.lambda));
    NG_TRY(ng_to_double(be, nn, k->G.data, k->Gd.data_d));
    NG_TRY(ng_syevd_d(be, n, k->Gd.data_d, n, k->wd.data_d, &info));
    if (info)
        return ng_error(NG_ERR_NUMERIC, "full Fisher: the eigendecomposition of G + lambda I failed (info %d; non-finite curvature? "
                        "the network diverged or the data hold NaN/Inf)", info);
    NG_TRY(ng_to_float(be, nn, k->Gd.data_d, k->X.data));
    NG_TRY(ng_to_float(be, (size_t)n, k->wd.data_d, k->w.data));
    if (k->cfg.inverse == NG_FULL_INV_REGULARIZED) {
        NG_TRY(regularized_roots(k, be));
    } else {
        NG_TRY(eig_pow(k, be, 0.5f, k->S.data));
        NG_TRY(eig_pow(k, be, -0.5f, k->Si.data));
    }
    k->ready = 1;
    return NG_OK;
}

static ng_status map(full *k, ng_backend *be, float *x, int to_phi) {
    NG_TRY(ng_gemv(be, 0, k->n, k->n, 1.0f, to_phi ? k->S.data : k->Si.data, k->n, x, 0.0f, k->tmp.data));
    return ng_copy(be, x, k->tmp.data, (size_t)k->n * sizeof(float));
}

ng_status ng_full_phi_map(ng_precond *p, float *x, int to_phi) {
    full *k;
    if (!p || !x || strcmp(p->iface->name, "full") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: not a full-Fisher preconditioner or NULL vector");
    k = (full *)p->impl;
    if (!k->ready) return ng_error(NG_ERR_NUMERIC, "full Fisher: G^(1/2) is not computed yet (no update applied)");
    return map(k, p->be, x, to_phi);
}

static ng_status full_apply(ng_precond *p, ng_model *m, uint64_t t) {
    full *k = (full *)p->impl;
    if (t % (uint64_t)k->cfg.phi_every == 0 || !k->ready) NG_TRY_RANGE(NG_CAT_INVERSE, "full Fisher roots", refresh(p, m));
    return map(k, p->be, m->grad_flat.data, 0);
}

static ng_status full_save(ng_precond *p, ng_ckpt *c) {
    full *k = (full *)p->impl;
    NG_TRY(ng_ckpt_set_f64(c, "full.lambda", k->cfg.lambda));
    NG_TRY(ng_ckpt_set_i64(c, "full.inverse", k->cfg.inverse));
    return ng_ckpt_set_i64(c, "full.phi_every", k->cfg.phi_every);
}

ng_status ng_full_config_from_ckpt(const ng_ckpt *c, ng_full_config *cfg) {
    ng_full_config f;
    int64_t v;
    ng_full_config_default(&f);
    NG_TRY(ng_ckpt_get_f64(c, "full.lambda", &f.lambda));
    NG_TRY(ng_ckpt_get_int(c, "full.phi_every", 1, 1 << 30, &v));
    f.phi_every = (int)v;
    if (ng_ckpt_has(c, "full.inverse")) {
        NG_TRY(ng_ckpt_get_int(c, "full.inverse", 0, 1, &v));
        f.inverse = (int)v;
    }
    if (ng_full_config_check(&f) != NG_OK) return ng_error_wrap(NG_ERR_FORMAT, "checkpoint %s: full.*: ", ng_ckpt_path(c));
    *cfg = f;
    return NG_OK;
}

static ng_status full_load(ng_precond *p, const ng_ckpt *c, int apply) {
    full *k = (full *)p->impl;
    ng_full_config f;
    NG_TRY(ng_full_config_from_ckpt(c, &f));
    if (f.lambda != k->cfg.lambda || f.phi_every != k->cfg.phi_every || f.inverse != k->cfg.inverse)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: full.lambda %g, full.phi_every %d, full.inverse %d; this run uses %g, %d, %d",
                        ng_ckpt_path(c), f.lambda, f.phi_every, f.inverse, k->cfg.lambda, k->cfg.phi_every, k->cfg.inverse);
    if (apply) k->ready = 1; /* S, S^-1 come with the state arena */
    return NG_OK;
}

static void full_destroy(ng_precond *p) {
    full *k = (full *)p->impl;
    if (!k) return;
    ng_arena_free(&k->scratch);
    free(k->hw), free(k->hs), free(k->hsi);
    free(k);
}

/* CUDA graphs (natgrad/train.h): an update between two refreshes is the gemv S^-1 g with S^-1 at a
 * fixed address, no host value; a refresh (t = 0, K, 2K, ...: the eigendecomposition's info and,
 * regularized, its eigenvalues read on the host; on several ranks the Fisher's all-reduce) runs eagerly. */
static int full_graph_key(const ng_precond *p, const ng_model *m, uint64_t t, int cols, double *key, int max) {
    const full *k = (const full *)p->impl;
    (void)m, (void)cols, (void)key, (void)max;
    return k->ready && t % (uint64_t)k->cfg.phi_every != 0 ? 0 : -1;
}

static const struct ng_precond_i full_iface = {
    .name = "full",
    .apply = full_apply,
    .save = full_save,
    .load = full_load,
    .destroy = full_destroy,
    .data_parallel = 1, /* G all-reduced in refresh */
    .graph_key = full_graph_key,
};

ng_status ng_precond_full_init(ng_backend *be, ng_model *m, const ng_full_config *cfg, ng_precond **out) {
    ng_precond *p;
    full *k;
    ng_status s = NG_OK;
    size_t n;
    int l, dd[1];
    const ng_net_config *nc;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "full Fisher: NULL output");
    *out = NULL;
    if (!be || !m) return ng_error(NG_ERR_INVALID_ARG, "full Fisher: NULL backend or model");
    NG_TRY(ng_full_config_check(cfg));
    if (strcmp(m->iface->kind, "net") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "full Fisher: needs a network model (natgrad net), not %s", m->iface->kind);
    nc = ng_net_config_of(m);
    for (l = 0; l < nc->n_layers; l++)
        if (nc->bn[l])
            return ng_error(NG_ERR_UNSUPPORTED, "full Fisher: layer %d uses batch normalisation (its Gauss-Newton products are not "
                            "available): drop +bn from --layers", l + 1);
    n = ng_model_size(m);
    if (n > NG_FULL_MAX_PARAMS)
        return ng_error(NG_ERR_INVALID_ARG, "full Fisher: the network has %zu parameters, above the limit of %d (a dense n x n G and its "
                        "O(n^3) eigendecomposition): use --precond kfac --phi-every K (Kronecker factors) or --precond diag --phi-every K",
                        n, NG_FULL_MAX_PARAMS);
    p = (ng_precond *)calloc(1, sizeof *p);
    k = (full *)calloc(1, sizeof *k);
    if (!p || !k) {
        free(p);
        free(k);
        return ng_error(NG_ERR_OOM, "full Fisher: out of host memory");
    }
    p->iface = &full_iface;
    p->be = be;
    p->impl = k;
    k->cfg = *cfg;
    k->n = (int)n;
    ng_arena_begin(&p->state, be, "full");
    ng_arena_begin(&k->scratch, be, "full scratch");
    s = ng_arena_reserve(&p->state, "S", k->n, k->n, &k->S);
    if (s == NG_OK) s = ng_arena_reserve(&p->state, "Sinv", k->n, k->n, &k->Si);
    if (s == NG_OK) s = ng_arena_commit(&p->state);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "G", k->n, k->n, &k->G);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "X", k->n, k->n, &k->X);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "T", k->n, k->n, &k->T);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "ek", k->n, 1, &k->ek);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "tmp", k->n, 1, &k->tmp);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "w", k->n, 1, &k->w);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "w2", k->n, 1, &k->w2);
    dd[0] = k->n * k->n;
    if (s == NG_OK) s = ng_arena_reserve_nd(&k->scratch, "Gd", NG_F64, 1, dd, &k->Gd);
    dd[0] = k->n;
    if (s == NG_OK) s = ng_arena_reserve_nd(&k->scratch, "wd", NG_F64, 1, dd, &k->wd);
    if (s == NG_OK) s = ng_arena_commit(&k->scratch);
    if (s == NG_OK) {
        k->hw = (double *)malloc(n * sizeof(double));
        k->hs = (float *)malloc(n * sizeof(float));
        k->hsi = (float *)malloc(n * sizeof(float));
        if (!k->hw || !k->hs || !k->hsi) s = ng_error(NG_ERR_OOM, "full Fisher: out of host memory");
    }
    if (s != NG_OK) {
        ng_precond_free(p);
        return s;
    }
    *out = p;
    return NG_OK;
}
