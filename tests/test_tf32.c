/* test_tf32.c: --tf32 reaches only the model's forward and backward passes. The FP32 guard
 * (natgrad/backend.h ng_fp32_begin / ng_fp32_end) keeps curvature-vector products, K-FAC's factor
 * inversions (Cholesky, eigendecompositions, the tridiagonal Stein solves) and the application of
 * its inverse in full FP32 even when they are called inside an open TF32 scope.
 *
 * Runs on the CUDA backend: a real device, or the SIMT emulator (tests/simt/), which rounds the
 * operands of single-precision gemms to TF32 while the mode is on. Each test first shows that TF32
 * is observable on its path (a control that must differ), then that the guarded results are
 * bit-identical to a run without --tf32. The CPU backend has no TF32 mode: skipped there. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/kfac.h"
#include "natgrad/data.h"
#include "natgrad/net.h"
#include "natgrad/precond.h"
#include "natgrad/tensor.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

static uint64_t g_state = 4242;
static float urandf(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(g_state >> 11) / 9007199254740992.0);
}

/* every test starts from FP32 with no scope open, whatever an earlier failed test left behind */
static void reset_tf32(ng_backend *be) {
    ng_backend_allow_tf32(be, 0);
    (void)ng_tf32_end(be, 0);
    be->fp32_depth = 0;
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* a small gemm through the backend: C = A B (m x k times k x n), results to host */
static ng_status gemm_once(ng_backend *be, const float *hA, const float *hB, int m, int n, int k, float *hC) {
    void *mem = NULL;
    float *A, *B, *C;
    ng_status s = ng_alloc(be, (size_t)(m * k + k * n + m * n) * sizeof(float), &mem);
    if (s != NG_OK) return s;
    A = (float *)mem, B = A + m * k, C = B + k * n;
    s = ng_set(be, A, hA, (size_t)m * k * sizeof(float));
    if (s == NG_OK) s = ng_set(be, B, hB, (size_t)k * n * sizeof(float));
    if (s == NG_OK) s = ng_gemm(be, 0, 0, m, n, k, 1.0f, A, m, B, k, 0.0f, C, m);
    if (s == NG_OK) s = ng_get(be, hC, C, (size_t)m * n * sizeof(float));
    ng_free(be, mem);
    return s;
}

/* The guard's rules: inside it a gemm is FP32 although a TF32 scope is open around it, a TF32 scope
 * opened inside does nothing, and its end switches TF32 back on for the enclosing scope. */
static int test_guard_rules(void) {
    enum { M = 9, N = 7, K = 11 };
    float A[M * K], B[K * N], c_fp32[M * N], c_tf32[M * N], c_guard[M * N], c_after[M * N];
    int i, saved_t = -1, saved_f = -1, saved_in = -1;
    ng_backend *be = g_cuda;
    if (!be) return ngt_skip(g_cuda_reason);
    reset_tf32(be);
    for (i = 0; i < M * K; i++) A[i] = urandf() - 0.5f;
    for (i = 0; i < K * N; i++) B[i] = urandf() - 0.5f;
    NGT_OK(gemm_once(be, A, B, M, N, K, c_fp32));
    ng_backend_allow_tf32(be, 1);
    NGT_OK(ng_tf32_begin(be, &saved_t));
    NGT_CHECK(be->tf32_active, "TF32 scope did not switch the mode on");
    NGT_OK(gemm_once(be, A, B, M, N, K, c_tf32));
    NGT_OK(ng_fp32_begin(be, &saved_f));
    NGT_CHECK(saved_f == 1 && !be->tf32_active && be->fp32_depth == 1, "guard: saved %d, active %d, depth %d", saved_f,
              be->tf32_active, be->fp32_depth);
    NGT_OK(ng_tf32_begin(be, &saved_in));
    NGT_CHECK(saved_in == 0 && !be->tf32_active, "a TF32 scope inside the guard switched TF32 on");
    NGT_OK(gemm_once(be, A, B, M, N, K, c_guard));
    NGT_OK(ng_tf32_end(be, saved_in));
    NGT_OK(ng_fp32_end(be, saved_f));
    NGT_CHECK(be->tf32_active && be->fp32_depth == 0, "the guard's end did not restore the enclosing TF32 scope");
    NGT_OK(gemm_once(be, A, B, M, N, K, c_after));
    NGT_OK(ng_tf32_end(be, saved_t));
    ng_backend_allow_tf32(be, 0);
    NGT_CHECK(!same_bits(c_fp32, c_tf32, M * N), "control: TF32 did not change the gemm (nothing below could fail)");
    NGT_CHECK(same_bits(c_fp32, c_guard, M * N), "a gemm inside the guard was not FP32");
    NGT_CHECK(same_bits(c_tf32, c_after, M * N), "after the guard the enclosing scope's gemm was not TF32");
    return NGT_PASS;
}

/* ---- a small network with a batch ----------------------------------------------------------- */

typedef struct netfix {
    ng_model *net;
    void *mem;
    ng_tensor x, v, v2, out, jout, work;
    size_t np;
    int m, dL;
} netfix;

static void netfix_free(netfix *f) {
    if (f->net) {
        ng_free(f->net->be, f->mem);
        ng_net_free(f->net);
    }
    memset(f, 0, sizeof *f);
}

static ng_status netfix_init(netfix *f, ng_backend *be, int m) {
    ng_net_config cfg;
    int rows, i;
    size_t nx, nw;
    float *h;
    memset(f, 0, sizeof *f);
    ng_net_config_default(&cfg);
    cfg.loss = NG_LOSS_BERNOULLI;
    cfg.init = NG_INIT_GAUSSIAN;
    cfg.init_scale = 0.8f;
    cfg.seed = 11;
    NG_TRY(ng_net_parse_spec("13-9-5:linear-9-13", NG_ACT_TANH, NG_ACT_LOGISTIC, &cfg));
    NG_TRY(ng_net_create(be, &cfg, &f->net));
    f->np = ng_model_size(f->net);
    f->m = m;
    f->dL = cfg.dims[cfg.n_layers];
    rows = ng_net_batch_rows(f->net);
    nx = (size_t)rows * m;
    nw = (size_t)f->dL * m * 3;
    NG_TRY(ng_alloc(be, (nx + 3 * f->np + (size_t)f->dL * m + nw) * sizeof(float), &f->mem));
    f->x = ng_tensor_matrix((float *)f->mem, rows, m, rows);
    f->v = ng_tensor_matrix(f->x.data + nx, (int)f->np, 1, (int)f->np);
    f->v2 = ng_tensor_matrix(f->v.data + f->np, (int)f->np, 1, (int)f->np);
    f->out = ng_tensor_matrix(f->v2.data + f->np, (int)f->np, 1, (int)f->np);
    f->jout = ng_tensor_matrix(f->out.data + f->np, f->dL, m, f->dL);
    f->work = ng_tensor_matrix(f->jout.data + (size_t)f->dL * m, (int)nw, 1, (int)nw);
    h = (float *)malloc((nx > f->np ? nx : f->np) * sizeof(float));
    for (i = 0; i < (int)nx; i++) h[i] = urandf();
    NG_TRY(ng_tensor_set(be, &f->x, h));
    for (i = 0; i < (int)f->np; i++) h[i] = urandf() - 0.5f;
    NG_TRY(ng_tensor_set(be, &f->v, h));
    for (i = 0; i < (int)f->np; i++) h[i] = urandf() - 0.5f;
    NG_TRY(ng_tensor_set(be, &f->v2, h));
    free(h);
    return NG_OK;
}

/* every curvature-vector product of the network on the current batch, concatenated on the host */
enum { N_PRODUCTS = 7 };
static ng_status products(netfix *f, float *all, double *gram) {
    ng_backend *be = f->net->be;
    const ng_tensor *vs[2];
    size_t np = f->np;
    NG_TRY(ng_net_jvp(f->net, &f->v, &f->jout));
    NG_TRY(ng_tensor_get(be, &f->jout, all));
    all += (size_t)f->dL * f->m;
    NG_TRY(ng_net_gvp(f->net, &f->v, &f->out));
    NG_TRY(ng_tensor_get(be, &f->out, all));
    all += np;
    NG_TRY(ng_net_hvp(f->net, &f->v, &f->out));
    NG_TRY(ng_tensor_get(be, &f->out, all));
    all += np;
    NG_TRY(ng_net_fvp(f->net, NG_FISHER_EXACT, 1, 77, 0, &f->v, &f->out));
    NG_TRY(ng_tensor_get(be, &f->out, all));
    all += np;
    NG_TRY(ng_net_fvp(f->net, NG_FISHER_SAMPLED, 2, 77, 0, &f->v, &f->out));
    NG_TRY(ng_tensor_get(be, &f->out, all));
    all += np;
    NG_TRY(ng_net_fvp(f->net, NG_FISHER_EMPIRICAL, 1, 77, 0, &f->v, &f->out));
    NG_TRY(ng_tensor_get(be, &f->out, all));
    all += np;
    vs[0] = &f->v, vs[1] = &f->v2;
    return ng_net_fisher_gram(f->net, 2, vs, &f->work, gram);
}

/* The network's curvature-vector products called inside an open TF32 scope equal the products
 * without --tf32 bit for bit (J v, G v, H v, F v exact / sampled / empirical, the Fisher gram: their
 * R-forward passes, loss Hessian products and backward passes); the gradient (a forward and
 * backward pass) does change (control). */
static int test_curvature_products(void) {
    netfix f;
    size_t n;
    float *ref, *got, *g0, *g1;
    double gram0[4], gram1[4];
    int saved;
    ng_backend *be = g_cuda;
    if (!be) return ngt_skip(g_cuda_reason);
    reset_tf32(be);
    NGT_OK(netfix_init(&f, be, 24));
    n = (size_t)f.dL * f.m + (N_PRODUCTS - 2) * f.np;
    ref = (float *)malloc(n * sizeof(float)), got = (float *)malloc(n * sizeof(float));
    g0 = (float *)malloc(f.np * sizeof(float)), g1 = (float *)malloc(f.np * sizeof(float));
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    NGT_OK(ng_tensor_get(be, &f.net->grad_flat, g0));
    ng_backend_allow_tf32(be, 1);
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    NGT_OK(ng_tensor_get(be, &f.net->grad_flat, g1));
    ng_backend_allow_tf32(be, 0);
    /* the batch's forward pass (the linearisation point) is the model's own pass, which --tf32 may
     * change; the products taken at it are compared, from the same FP32 forward pass */
    NGT_OK(ng_net_set_batch(f.net, &f.x, NULL));
    NGT_OK(products(&f, ref, gram0));
    NGT_OK(ng_net_set_batch(f.net, &f.x, NULL));
    ng_backend_allow_tf32(be, 1);
    NGT_OK(ng_tf32_begin(be, &saved));
    NGT_OK(products(&f, got, gram1));
    NGT_OK(ng_tf32_end(be, saved));
    ng_backend_allow_tf32(be, 0);
    NGT_CHECK(!same_bits(g0, g1, f.np), "control: --tf32 did not change the gradient (nothing below could fail)");
    NGT_CHECK(same_bits(ref, got, n), "a curvature-vector product changed under TF32");
    NGT_CHECK(memcmp(gram0, gram1, sizeof gram0) == 0, "the Fisher gram changed under TF32");
    free(ref), free(got), free(g0), free(g1);
    netfix_free(&f);
    return NGT_PASS;
}

/* K-FAC's inversions and the application of its inverse, for both approximations, called inside
 * an open TF32 scope: identical to the FP32 results. Control: the same inverse applied through a
 * gemm outside the guard (a plain ng_gemm of the result under TF32) differs. */
static int test_kfac_inverses(void) {
    netfix f;
    int approx;
    ng_backend *be = g_cuda;
    if (!be) return ngt_skip(g_cuda_reason);
    reset_tf32(be);
    for (approx = 0; approx < 2; approx++) {
        ng_kfac_config kc;
        ng_precond *pc = NULL;
        float *ref, *got;
        int saved;
        NGT_OK(netfix_init(&f, be, 32));
        ng_kfac_config_default(&kc);
        kc.approx = approx ? NG_KFAC_TRIDIAG : NG_KFAC_BLOCKDIAG;
        kc.timing = 0;
        NGT_OK(ng_precond_kfac_init(be, f.net, &kc, &pc));
        NGT_OK(ng_net_set_batch(f.net, &f.x, NULL));
        NGT_OK(ng_kfac_accumulate(pc, f.net, f.m, 0.0, 99, 1));
        ref = (float *)malloc(f.np * sizeof(float)), got = (float *)malloc(f.np * sizeof(float));
        NGT_OK(ng_kfac_refresh(pc, 0.05));
        NGT_OK(ng_kfac_apply_inverse(pc, &f.v, &f.out));
        NGT_OK(ng_tensor_get(be, &f.out, ref));
        ng_backend_allow_tf32(be, 1);
        NGT_OK(ng_tf32_begin(be, &saved));
        NGT_CHECK(be->tf32_active, "TF32 scope not active");
        NGT_OK(ng_kfac_refresh(pc, 0.05));
        NGT_OK(ng_kfac_apply_inverse(pc, &f.v, &f.out));
        NGT_OK(ng_tf32_end(be, saved));
        ng_backend_allow_tf32(be, 0);
        NGT_OK(ng_tensor_get(be, &f.out, got));
        NGT_CHECK(same_bits(ref, got, f.np), "%s: K-FAC inverse changed under TF32", approx ? "tridiag" : "blockdiag");
        free(ref), free(got);
        ng_precond_free(pc);
        netfix_free(&f);
    }
    return NGT_PASS;
}

/* The run driver: with --tf32, a preconditioner's observe and apply run under the guard (depth > 0,
 * TF32 off) while the step's gradient ran in TF32; nothing is left open after the step. A spy
 * wraps the identity preconditioner and records the backend's state when it is called. */
static struct ng_precond_i g_spy_iface;
static const struct ng_precond_i *g_spy_inner;
static int g_spy_calls, g_spy_bad;
static ng_status spy_observe(ng_precond *p, ng_model *m, uint64_t t) {
    g_spy_calls++;
    if (p->be->fp32_depth < 1 || p->be->tf32_active) g_spy_bad++;
    return g_spy_inner->observe ? g_spy_inner->observe(p, m, t) : NG_OK;
}
static ng_status spy_apply(ng_precond *p, ng_model *m, uint64_t t) {
    g_spy_calls++;
    if (p->be->fp32_depth < 1 || p->be->tf32_active) g_spy_bad++;
    return g_spy_inner->apply ? g_spy_inner->apply(p, m, t) : NG_OK;
}

static int test_trainer_guard(void) {
    netfix f;
    ng_precond *pc = NULL;
    ng_update *upd = NULL;
    ng_batches b;
    ng_trainer tr;
    ng_sgd_config sc;
    float *hx;
    int rows, i;
    ng_backend *be = g_cuda;
    if (!be) return ngt_skip(g_cuda_reason);
    reset_tf32(be);
    NGT_OK(netfix_init(&f, be, 16));
    rows = ng_net_batch_rows(f.net);
    hx = (float *)malloc((size_t)rows * 64 * sizeof(float));
    for (i = 0; i < rows * 64; i++) hx[i] = urandf();
    NGT_OK(ng_precond_identity_init(be, &pc));
    g_spy_inner = pc->iface;
    g_spy_iface = *pc->iface;
    g_spy_iface.observe = spy_observe;
    g_spy_iface.apply = spy_apply;
    pc->iface = &g_spy_iface;
    memset(&sc, 0, sizeof sc);
    sc.lr = 0.1f;
    NGT_OK(ng_update_sgd_init(be, f.net, &sc, &upd));
    NGT_OK(ng_batches_init(&b, be, hx, rows, 64, 16, 3, 0, 1));
    NGT_OK(ng_trainer_init(&tr, f.net, pc, upd, &b, 3, NULL));
    ng_backend_allow_tf32(be, 1);
    g_spy_calls = g_spy_bad = 0;
    for (i = 0; i < 3; i++) NGT_OK(ng_trainer_step(&tr, NULL));
    ng_backend_allow_tf32(be, 0);
    NGT_CHECK(g_spy_calls == 6, "the preconditioner was called %d times in 3 steps (expected 6)", g_spy_calls);
    NGT_CHECK(g_spy_bad == 0, "%d preconditioner calls ran outside the FP32 guard or with TF32 on", g_spy_bad);
    NGT_CHECK(be->fp32_depth == 0 && !be->tf32_active, "the step left the guard (depth %d) or TF32 (%d) open", be->fp32_depth,
              be->tf32_active);
    ng_batches_free(&b);
    ng_update_free(upd);
    ng_precond_free(pc);
    free(hx);
    netfix_free(&f);
    return NGT_PASS;
}

/* On the CPU backend (no TF32 mode) the guard is harmless: it nests, and products are unchanged. */
static int test_cpu_guard_noop(void) {
    int saved = -1;
    NGT_OK(ng_fp32_begin(g_cpu, &saved));
    NGT_CHECK(saved == 0 && g_cpu->fp32_depth == 1, "cpu guard: saved %d, depth %d", saved, g_cpu->fp32_depth);
    NGT_OK(ng_fp32_end(g_cpu, saved));
    NGT_CHECK(g_cpu->fp32_depth == 0 && !g_cpu->tf32_active, "cpu guard left state behind");
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_cpu_guard_noop);
    NGT_RUN(test_guard_rules);
    NGT_RUN(test_curvature_products);
    NGT_RUN(test_trainer_guard);
    NGT_RUN(test_kfac_inverses);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
