/* bench_net.c: training-step speed of the MNIST autoencoder of Hinton & Salakhutdinov (2006)
 * (784-1000-500-250-30-250-500-1000-784, logistic hidden units, linear code layer, logistic
 * outputs with cross-entropy) next to the sgemm speed of the same backend, measured in the same
 * process (make bench-net; bench/bench_net_torch.py measures the same network in PyTorch).
 *
 * A step is one gradient (forward + backward, ng_model_gradient) and one SGD-momentum update
 * (ng_update_step, identity preconditioner): one gradient and two vector ops, the cost of a NAG
 * step too. Steps are timed one by one after warm-up steps; the median is reported.
 * Flops counted: 6 m S per step with S = sum_l d_{l-1} d_l (forward 2 m S, backward 4 m S for the
 * weight and input gradients; biases and the unneeded input gradient of layer 1 are not
 * subtracted or added), the convention of the issue, used for PyTorch too.
 * sgemm: C (1000 x m) = A (1000 x 784) B (784 x m) through ng_gemm, the largest layer's forward
 * product at the step's batch size.
 * Also: ms per Gauss-Newton product G v (ng_net_gvp on the gradient's batch, which reuses its
 * forward pass) and per forward pass + G v (ng_net_set_batch + ng_net_gvp), over ms per gradient;
 * and a phase split: the gradient's gemms replayed alone (same shapes, transposes and order), its
 * elementwise ops replayed alone (activations, loss, derivatives, as net.c issues them), the rest
 * of the gradient (the difference: dispatch, the objective read-back), the update step, and
 * NAG's update step (ng_update_nag_init: three axpby where SGD-momentum has two).
 * The data are uniform random pixels in [0, 1] (speed does not depend on pixel values).
 * other CPU % = CPU time other processes took during the timed steps, in % of all cores (from
 * /proc/stat less this process's rusage): above a few % the timings are skewed.
 * Prints one markdown row (step table) and appends one CSV row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_args.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/rng.h"
#include "natgrad/update.h"

#define now ng_time_s
#define MAX_T 1000

static int die(const char *what) {
    fprintf(stderr, "bench_net: %s: %s\n", what, ng_last_error());
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* CPU seconds the whole machine was busy (all cores, from /proc/stat) and this process used; the
 * difference over a timed window is what other processes took (a shared machine skews timings). */
static void cpu_seconds(double *machine, double *self) {
    unsigned long long v[10] = {0};
    struct rusage ru;
    FILE *f = fopen("/proc/stat", "r");
    double hz = (double)sysconf(_SC_CLK_TCK);
    *machine = 0.0;
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) == 8)
            *machine = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz; /* all but idle, iowait */
        fclose(f);
    }
    getrusage(RUSAGE_SELF, &ru);
    *self = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The gradient's gemms alone, in its order, on scratch buffers of the same shapes. */
typedef struct replay {
    int L, d[NG_NET_MAX_LAYERS + 1], m, act[NG_NET_MAX_LAYERS], loss;
    float *A[NG_NET_MAX_LAYERS + 1], *W[NG_NET_MAX_LAYERS + 1], *G[NG_NET_MAX_LAYERS + 1],
        *D[NG_NET_MAX_LAYERS + 1];
    float *X, *Zo, *obj; /* input copy source, output pre-activation, per-case objective/error (2m + 2) */
} replay;

static ng_status replay_init(ng_backend *be, const ng_net_config *cfg, int m, replay *r) {
    int l;
    memset(r, 0, sizeof *r);
    r->L = cfg->n_layers;
    r->m = m;
    for (l = 0; l <= r->L; l++) r->d[l] = cfg->dims[l];
    for (l = 0; l < r->L; l++) r->act[l] = cfg->act[l];
    r->loss = cfg->loss;
    NG_TRY(ng_alloc(be, (size_t)r->d[0] * m * 4, (void **)&r->X));
    NG_TRY(ng_alloc(be, (size_t)r->d[r->L] * m * 4, (void **)&r->Zo));
    NG_TRY(ng_alloc(be, (size_t)(2 * m + 2) * 4, (void **)&r->obj));
    NG_TRY(ng_memset0(be, r->X, (size_t)r->d[0] * m * 4));
    NG_TRY(ng_memset0(be, r->Zo, (size_t)r->d[r->L] * m * 4));
    for (l = 0; l <= r->L; l++) {
        NG_TRY(ng_alloc(be, (size_t)(r->d[l] + 1) * m * 4, (void **)&r->A[l]));
        NG_TRY(ng_memset0(be, r->A[l], (size_t)(r->d[l] + 1) * m * 4));
        NG_TRY(ng_alloc(be, (size_t)r->d[l] * m * 4, (void **)&r->D[l]));
        NG_TRY(ng_memset0(be, r->D[l], (size_t)r->d[l] * m * 4));
        if (l == 0) continue;
        NG_TRY(ng_alloc(be, (size_t)r->d[l] * (r->d[l - 1] + 1) * 4, (void **)&r->W[l]));
        NG_TRY(ng_memset0(be, r->W[l], (size_t)r->d[l] * (r->d[l - 1] + 1) * 4));
        NG_TRY(ng_alloc(be, (size_t)r->d[l] * (r->d[l - 1] + 1) * 4, (void **)&r->G[l]));
    }
    return NG_OK;
}

static ng_status replay_run(ng_backend *be, const replay *r) {
    int l, m = r->m;
    for (l = 1; l <= r->L; l++) /* z = [W b] a-bar */
        NG_TRY(ng_gemm(be, 0, 0, r->d[l], m, r->d[l - 1] + 1, 1.0f, r->W[l], r->d[l], r->A[l - 1],
                       r->d[l - 1] + 1, 0.0f, r->A[l], r->d[l] + 1));
    for (l = r->L; l >= 1; l--) {
        int dl = r->d[l], dp = r->d[l - 1];
        NG_TRY(ng_gemm(be, 0, 1, dl, dp + 1, m, 1.0f, r->D[l], dl, r->A[l - 1], dp + 1, 0.0f, r->G[l], dl));
        if (l > 1) NG_TRY(ng_gemm(be, 1, 0, dp, m, dl, 1.0f, r->W[l], dl, r->D[l], dl, 0.0f, r->D[l - 1], dp));
    }
    return NG_OK;
}

/* The gradient's elementwise ops alone, as net.c issues them: the input copy, each layer's
 * activation, the loss (derivative, per-case objective and error, their two sums), each hidden
 * layer's derivative. */
static ng_status replay_elementwise(ng_backend *be, const replay *r) {
    int l, m = r->m, L = r->L;
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_ACT_FORWARD;
    o.act_forward.rows = r->d[0];
    o.act_forward.cols = m;
    o.act_forward.act = NG_ACT_LINEAR;
    o.act_forward.z = r->X;
    o.act_forward.ldz = r->d[0];
    o.act_forward.a = r->A[0];
    o.act_forward.lda = r->d[0] + 1;
    NG_TRY(ng_run_op(be, &o));
    for (l = 1; l <= L; l++) {
        o.act_forward.rows = r->d[l];
        o.act_forward.act = r->act[l - 1];
        o.act_forward.z = l == L ? r->Zo : r->A[l];
        o.act_forward.ldz = l == L ? r->d[l] : r->d[l] + 1;
        o.act_forward.a = r->A[l];
        o.act_forward.lda = r->d[l] + 1;
        NG_TRY(ng_run_op(be, &o));
    }
    memset(&o, 0, sizeof o);
    o.op = NG_OP_LOSS;
    o.loss.rows = r->d[L];
    o.loss.cols = m;
    o.loss.loss = r->loss;
    o.loss.z = r->Zo;
    o.loss.ldz = r->d[L];
    o.loss.y = r->A[L];
    o.loss.ldy = r->d[L] + 1;
    o.loss.t = r->X;
    o.loss.ldt = r->d[0];
    o.loss.scale = 1.0f / (float)m;
    o.loss.d = r->D[L];
    o.loss.ldd = r->d[L];
    o.loss.obj = r->obj;
    o.loss.err = r->obj + m;
    NG_TRY(ng_run_op(be, &o));
    NG_TRY(ng_sum_cols(be, 1, m, 1.0f, r->obj, 1, 0.0f, r->obj + 2 * m));
    NG_TRY(ng_sum_cols(be, 1, m, 1.0f, r->obj + m, 1, 0.0f, r->obj + 2 * m + 1));
    for (l = L; l > 1; l--) {
        memset(&o, 0, sizeof o);
        o.op = NG_OP_ACT_BACKWARD;
        o.act_backward.rows = r->d[l - 1];
        o.act_backward.cols = m;
        o.act_backward.act = r->act[l - 2];
        o.act_backward.a = r->A[l - 1];
        o.act_backward.lda = r->d[l - 1] + 1;
        o.act_backward.g = r->D[l - 1];
        o.act_backward.ldg = r->d[l - 1];
        o.act_backward.ldh = 1;
        o.act_backward.ldr = 1;
        o.act_backward.out = r->D[l - 1];
        o.act_backward.ldo = r->d[l - 1];
        NG_TRY(ng_run_op(be, &o));
    }
    return NG_OK;
}

static void replay_free(ng_backend *be, replay *r) {
    int l;
    ng_free(be, r->X);
    ng_free(be, r->Zo);
    ng_free(be, r->obj);
    for (l = 0; l <= r->L; l++) {
        ng_free(be, r->A[l]);
        ng_free(be, r->D[l]);
        ng_free(be, r->W[l]);
        ng_free(be, r->G[l]);
    }
}

int main(int argc, char **argv) {
    int m = 500, iters = 20, warmup = 5, threads = 0, profile = 0, i, l, L;
    const char *device = "cpu", *csv = "bench/results/bench_net.csv";
    ng_device dev;
    int dev_index;
    ng_backend *be;
    ng_net_config cfg;
    ng_model *model;
    ng_update *upd, *nag;
    ng_nag_config ncfg;
    ng_sgd_config scfg = {0};
    ng_tensor x, v, gv;
    replay rp;
    float *hx, *hv, *dx, *dv, *dgv;
    double t[MAX_T], t0, ms_step, ms_step_min, ms_grad, ms_gv, ms_fgv, ms_gemm, ms_elem, ms_upd, ms_nag, ms_sgemm;
    double S = 0.0, gflop_step, gflop_sgemm, mach0 = 0, self0 = 0, mach1, self1, tw = 0, other;
    size_t n;
    int gm = 1000, gk = 784; /* sgemm shape: (gm x m) = (gm x gk) (gk x m) */
    char note[256];
    FILE *f;
    ng_cpu_blas_reexec(argc, argv);
    {
        const ba_opt opts[] = {
            BA_I("--batch", &m, 1, INT_MAX, "M", "mini-batch size"),
            BA_I("--threads", &threads, 0, INT_MAX, "N", "CPU threads (0: OpenMP's default)"),
            BA_I("--iters", &iters, 1, MAX_T, "N", "timed steps"),
            BA_I("--warmup", &warmup, 0, INT_MAX, "N", "untimed steps first"),
            BA_DEV("--device", &device, "backend (cuda:N: that GPU)"),
            BA_S("--csv", &csv, "PATH", "CSV file a row is appended to"),
            BA_I("--profile", &profile, 0, INT_MAX, "N", "only run N training steps (after the warm-up) and exit, for perf record (0: off)"),
            BA_END};
        const int rc = ba_parse("bench_net", "Time of one training step of the MNIST autoencoder and of its parts, against the "
                                             "sgemm speed of the same backend (make bench-net).", opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    if (threads > 0) ng_cpu_set_threads(threads);
    if (ng_device_parse(device, &dev, &dev_index) != NG_OK) return die("--device");
    if (ng_backend_init(dev, dev_index, &be, note, sizeof note) != NG_OK) return die("backend");
    if (note[0]) fprintf(stderr, "note: %s\n", note);
    fprintf(stderr, "backend: %s\n", be->description);

    ng_net_config_default(&cfg);
    if (ng_net_preset("mnist-autoencoder", &cfg) != NG_OK) return die("preset");
    cfg.chunk = m > cfg.chunk ? m : cfg.chunk; /* one chunk: G v reuses the gradient's forward pass */
    cfg.seed = 1;
    L = cfg.n_layers;
    for (l = 1; l <= L; l++) S += (double)cfg.dims[l - 1] * cfg.dims[l];
    if (ng_net_create(be, &cfg, &model) != NG_OK) return die("net");
    scfg.lr = 1e-3f; /* small: the random-data run stays finite (speed does not depend on it) */
    scfg.momentum = 0.9f;
    if (ng_update_sgd_init(be, model, &scfg, &upd) != NG_OK) return die("sgd");
    ng_nag_config_default(&ncfg);
    ncfg.lr = 1e-3f;
    if (ng_update_nag_init(be, model, &ncfg, &nag) != NG_OK) return die("nag");
    n = ng_model_size(model);

    hx = (float *)malloc((size_t)cfg.dims[0] * m * sizeof(float));
    hv = (float *)malloc(n * sizeof(float));
    if (!hx || !hv) return fprintf(stderr, "bench_net: out of memory\n"), 1;
    for (i = 0; i < cfg.dims[0] * m; i++) hx[i] = ng_rng_uniform(3, 0, (uint64_t)i);
    ng_rng_fill_normal(hv, n, 0.0f, 0.01f, 4, 0);
    if (ng_alloc(be, (size_t)cfg.dims[0] * m * 4, (void **)&dx) || ng_alloc(be, n * 4, (void **)&dv) ||
        ng_alloc(be, n * 4, (void **)&dgv))
        return die("alloc");
    x = ng_tensor_matrix(dx, cfg.dims[0], m, cfg.dims[0]);
    v = ng_tensor_matrix(dv, (int)n, 1, (int)n);
    gv = ng_tensor_matrix(dgv, (int)n, 1, (int)n);
    if (ng_tensor_set(be, &x, hx) || ng_tensor_set(be, &v, hv)) return die("set");

    if (profile > 0) { /* steps only, nothing timed or written: for perf record */
        for (i = 0; i < warmup + profile; i++)
            if (ng_model_gradient(model, &x, NULL) || ng_update_step(upd, model, (uint64_t)i)) return die("step");
        ng_synchronize(be);
        return 0;
    }

    /* sgemm of the largest layer's forward product at this batch size */
    {
        void *dA, *dB, *dC;
        float *hA = (float *)malloc((size_t)gm * gk * sizeof(float));
        if (!hA) return fprintf(stderr, "bench_net: out of memory\n"), 1;
        ng_rng_fill_normal(hA, (size_t)gm * gk, 0.0f, 0.01f, 1, 0);
        if (ng_alloc(be, (size_t)gm * gk * 4, &dA) || ng_alloc(be, (size_t)gk * m * 4, &dB) ||
            ng_alloc(be, (size_t)gm * m * 4, &dC))
            return die("alloc");
        ng_set(be, dA, hA, (size_t)gm * gk * 4);
        ng_set(be, dB, hx, (size_t)gk * m * 4);
        for (i = 0; i < 3; i++) ng_gemm(be, 0, 0, gm, m, gk, 1.0f, dA, gm, dB, gk, 0.0f, dC, gm); /* warm-up */
        ng_synchronize(be);
        for (i = 0; i < iters; i++) {
            t0 = now();
            if (ng_gemm(be, 0, 0, gm, m, gk, 1.0f, dA, gm, dB, gk, 0.0f, dC, gm)) return die("gemm");
            ng_synchronize(be);
            t[i] = now() - t0;
        }
        ms_sgemm = median(t, iters) * 1e3;
        gflop_sgemm = 2.0 * gm * m * gk / ms_sgemm * 1e-6;
        ng_free(be, dA);
        ng_free(be, dB);
        ng_free(be, dC);
        free(hA);
    }

    /* training steps: gradient + SGD-momentum update */
    for (i = 0; i < warmup + iters; i++) {
        if (i == warmup) cpu_seconds(&mach0, &self0), tw = now();
        t0 = now();
        if (ng_model_gradient(model, &x, NULL)) return die("gradient");
        if (ng_update_penalize(upd, model, (uint64_t)i) || ng_update_step(upd, model, (uint64_t)i)) return die("update");
        ng_synchronize(be);
        if (i >= warmup) t[i - warmup] = now() - t0;
    }
    cpu_seconds(&mach1, &self1);
    tw = now() - tw;
    other = 100.0 * ((mach1 - mach0) - (self1 - self0)) / (sysconf(_SC_NPROCESSORS_ONLN) * tw);
    if (other < 0.0) other = 0.0;
    ms_step = median(t, iters) * 1e3;
    ms_step_min = t[0] * 1e3; /* sorted by median() */
    gflop_step = 6.0 * m * S / ms_step * 1e-6;

    /* gradient alone, then G v on its batch (forward pass reused) */
    for (i = 0; i < iters; i++) {
        t0 = now();
        if (ng_model_gradient(model, &x, NULL)) return die("gradient");
        ng_synchronize(be);
        t[i] = now() - t0;
    }
    ms_grad = median(t, iters) * 1e3;
    if (ng_net_gvp(model, &v, &gv)) return die("G v"); /* warm-up */
    ng_synchronize(be);
    for (i = 0; i < iters; i++) {
        t0 = now();
        if (ng_net_gvp(model, &v, &gv)) return die("G v");
        ng_synchronize(be);
        t[i] = now() - t0;
    }
    ms_gv = median(t, iters) * 1e3;
    for (i = 0; i < iters; i++) { /* a fresh batch: its forward pass, then G v */
        t0 = now();
        if (ng_net_set_batch(model, &x, NULL) || ng_net_gvp(model, &v, &gv)) return die("forward + G v");
        ng_synchronize(be);
        t[i] = now() - t0;
    }
    ms_fgv = median(t, iters) * 1e3;

    /* phases: the gradient's gemms alone, and the update step alone */
    if (replay_init(be, &cfg, m, &rp) != NG_OK || ng_set(be, rp.X, hx, (size_t)cfg.dims[0] * m * 4) != NG_OK)
        return die("replay buffers");
    if (replay_run(be, &rp)) return die("replay");
    ng_synchronize(be);
    for (i = 0; i < iters; i++) {
        t0 = now();
        if (replay_run(be, &rp)) return die("replay");
        ng_synchronize(be);
        t[i] = now() - t0;
    }
    ms_gemm = median(t, iters) * 1e3;
    if (replay_elementwise(be, &rp)) return die("replay elementwise");
    ng_synchronize(be);
    for (i = 0; i < iters; i++) {
        t0 = now();
        if (replay_elementwise(be, &rp)) return die("replay elementwise");
        ng_synchronize(be);
        t[i] = now() - t0;
    }
    ms_elem = median(t, iters) * 1e3;
    replay_free(be, &rp);
    for (i = 0; i < iters; i++) {
        t0 = now();
        if (ng_update_step(upd, model, (uint64_t)i)) return die("update");
        ng_synchronize(be);
        t[i] = now() - t0;
    }
    ms_upd = median(t, iters) * 1e3;
    for (i = 0; i < iters; i++) { /* NAG's update alone (three axpby), for comparison */
        t0 = now();
        if (ng_update_step(nag, model, (uint64_t)i)) return die("nag update");
        ng_synchronize(be);
        t[i] = now() - t0;
    }
    ms_nag = median(t, iters) * 1e3;

    snprintf(note, sizeof note, "%d", threads);
    printf("| natgrad | %s | %s | %d | %d | %.1f | %.1f | %.1f | %dx%dx%d | %.1f | %.2f | %.0f%% |\n", be->description,
           be->kind == NG_DEVICE_CPU && threads > 0 ? note : "-", m, iters, ms_step, ms_step_min, gflop_step, gm, m, gk,
           gflop_sgemm, gflop_step / gflop_sgemm, other);
    f = fopen(csv, "a");
    if (f) {
        fseek(f, 0, SEEK_END);
        if (ftell(f) == 0)
            fprintf(f, "impl,backend,threads,batch,timed_steps,ms_step_median,ms_step_min,step_gflops,sgemm_shape,"
                       "sgemm_gflops,ratio,ms_gradient,ms_gv,gv_over_gradient,ms_forward_gv,forward_gv_over_gradient,"
                       "ms_gradient_gemms,ms_gradient_elementwise,ms_gradient_rest,ms_update,ms_update_nag,other_cpu_pct\n");
        fprintf(f, "natgrad,\"%s\",%d,%d,%d,%.3f,%.3f,%.2f,%dx%dx%d,%.2f,%.4f,%.3f,%.3f,%.4f,%.3f,%.4f,%.3f,%.3f,%.3f,%.3f,%.3f,%.1f\n",
                be->description, threads, m, iters, ms_step, ms_step_min, gflop_step, gm, m, gk, gflop_sgemm,
                gflop_step / gflop_sgemm, ms_grad, ms_gv, ms_gv / ms_grad, ms_fgv, ms_fgv / ms_grad, ms_gemm,
                ms_elem, ms_grad - ms_gemm - ms_elem, ms_upd, ms_nag, other);
        fclose(f);
    }
    fprintf(stderr, "bench_net: m %d: step %.2f ms, gradient %.2f ms (gemms %.2f, elementwise %.2f, rest %.2f), update %.2f ms (NAG %.2f), G v %.2f ms (%.2fx), forward + G v %.2f ms (%.2fx)\n",
            m, ms_step, ms_grad, ms_gemm, ms_elem, ms_grad - ms_gemm - ms_elem, ms_upd, ms_nag, ms_gv, ms_gv / ms_grad, ms_fgv, ms_fgv / ms_grad);
    ng_update_free(upd);
    ng_update_free(nag);
    ng_net_free(model);
    ng_free(be, dx);
    ng_free(be, dv);
    ng_free(be, dgv);
    ng_backend_free(be);
    free(hx);
    free(hv);
    return 0;
}
