/* natgrad/tnewton.h: the truncated-Newton family for the networks of natgrad/net.h, as one
 * preconditioner (natgrad/precond.h) that leaves the whole update in the gradient arena
 * (host/optim/tnewton.c): natural gradient descent by truncated Newton (Pascanu & Bengio 2014,
 * Algorithm 2), natural conjugate gradient (their section 9) and Hessian-free optimisation
 * (Martens 2010). The update rule under it is plain SGD with learning rate 1 and no momentum (the
 * CLI sets that up), so the trainer's step is theta <- theta + delta for the delta chosen here.
 *
 * Per update t, with g = the gradient of the objective h on the trainer's mini-batch (with the L2
 * term eta theta of the update rule's weight decay already in it):
 *   metric      the curvature products run on the metric batch: the gradient's own batch
 *               (metric same), an independent draw of metric_batch cases from the training set
 *               (separate), or from an unlabeled pool of inputs (unlabeled: the Gauss-Newton /
 *               exact Fisher products of matching losses need no targets). Section 7 of Pascanu &
 *               Bengio; Martens' separate curvature mini-batch.
 *   solve       n = (C + lambda I)^-1 g by linear CG or MINRES-QLP (natgrad/solver.h) on the
 *               products of C = the Gauss-Newton matrix G (= the Fisher of the predictive
 *               distribution for matching losses) or, for HF as an option, the Hessian H.
 *               NGD / NCG start from 0; HF starts from decay x the previous solution (0.95).
 *   step        by method:
 *     ngd       delta = -lr n (fixed learning rate; the paper: 1.0)
 *     ngd-l     delta = -a n with a from a line search of h on the gradient batch
 *     ncg-l     delta = -a n + b s_prev, (a, b) minimising h(theta - a n + b s_prev) on the gradient
 *               batch by the derivative-free 2-D search of natgrad/search.h (eq. 21-22; the paper
 *               used COBYLA); s_prev is the previous step (the first update: a line search)
 *     ncg-f     d = -n + beta d_prev with the Polak-Ribiere coefficient on natural gradients
 *               beta = max(0, n^T (g - g_prev) / (n_prev^T g_prev)) (ignoring the change of the
 *               metric, as Gonzalez & Dorronsoro), delta = a d with a from a line search
 *     hf        CG iterates kept at iterations ceil(1.3^j); backtracking picks, from the last
 *               backwards, the best by h on the gradient batch (Martens section 4.6); the
 *               diagonal preconditioner M = (diag(F_emp) + lambda)^0.75 with F_emp the empirical
 *               Fisher diagonal (1/m) sum_i grad_i (.) grad_i of the per-case gradients (section
 *               4.7; the mean over cases puts it on the scale of G), Martens' relative-progress
 *               stopping rule (section 4.4), at most 250 iterations
 *   damping     Levenberg-Marquardt: rho = (h(theta + delta) - h(theta)) / pred, lambda *= 3/2 when
 *               rho < 1/4, lambda *= 2/3 when rho > 3/4 (Martens section 4.1). pred is the quadratic
 *               model 1/2 delta^T C delta + g^T delta for hf and, for the natural-gradient methods,
 *               the first-order prediction g^T delta (Pascanu & Bengio eq. 32; rho_model linear) or
 *               the quadratic model (rho_model quadratic). With a line search the first-order
 *               ratio is about 1/2 whatever the damping (the search stops near the minimum along
 *               the direction, where the decrease is half the linear prediction on a quadratic),
 *               so lambda hardly moves; the quadratic model measures how well the damped model
 *               fits instead.
 * Everything above except the scalar decisions runs on the device; the objective evaluations of
 * the searches, rho and HF's backtracking are passes over the gradient batch (a network's:
 * ng_net_evaluate_dev, a CUDA-graph segment under --cuda-graph 1, then one read of its sums).
 *
 * CSV columns: lambda, rho, alpha (the step size a; hf: 1, or 0 for a rejected step), beta, cg_iters,
 * cg_stop (NG_SOLVE_*), rel_res, hf_iter (hf: the CG iteration backtracking chose), evals (objective
 * evaluations of this update), solve_s, search_s.
 * Metric (fisher): the products above are G v, or F v with targets drawn from the model once per
 * update (sampled) or the data's targets (empirical: (1/m) sum_i g_i g_i^T v, eq. 31 of
 * Sohl-Dickstein 2012), ng_net_fvp on the metric batch; checkpointed as tn.fisher(_samples).
 * State (checkpointed, so a resume is bit-exact): tn.prev (the previous solution / step / natural
 * gradient as each method needs), tn.gprev (ncg-f), lambda, the scalars, the metric stream's
 * cursor.
 * Data parallelism (p->dist, natgrad/precond.h): every curvature product, h at every trial point,
 * h(theta) and HF's diagonal are shard means weighted by the shard's share and all-reduced, so
 * the solver's scalars and every search decision are identical on all ranks; a separate metric
 * stream is drawn whole by every rank (no sum). --tn-fisher sampled is refused on several ranks. */
#ifndef NATGRAD_TNEWTON_H
#define NATGRAD_TNEWTON_H

#include <stdint.h>

#include "natgrad/checkpoint.h"
#include "natgrad/model.h"
#include "natgrad/precond.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { NG_TN_NGD = 0, NG_TN_NGD_L, NG_TN_NCG_L, NG_TN_NCG_F, NG_TN_HF, NG_TN_METHOD_COUNT };
enum { NG_TN_SOLVER_CG = 0, NG_TN_SOLVER_MINRESQLP };
enum { NG_TN_METRIC_SAME = 0, NG_TN_METRIC_SEPARATE, NG_TN_METRIC_UNLABELED };
enum { NG_TN_CURV_GN = 0, NG_TN_CURV_HESSIAN };
enum { NG_TN_RHO_LINEAR = 0, NG_TN_RHO_QUADRATIC };

typedef struct ng_tn_config {
    int method;            /* NG_TN_* */
    int solver;            /* cg | minres-qlp (hf: cg only) */
    int curvature;         /* gn | hessian (hf only) */
    int max_iter;          /* 0: the method's default (20 for the natural-gradient methods, 250 hf) */
    double rtol;           /* solver relative residual (1e-4; hf: 0 = Martens' progress rule only) */
    double lambda0;        /* initial damping (1.0; Pascanu & Bengio's CURVES runs: 3) */
    int adapt_lambda;      /* 1: Levenberg-Marquardt (default on) */
    int rho_model;         /* the prediction of rho for the natural-gradient methods: NG_TN_RHO_LINEAR
                            * (Pascanu & Bengio eq. 32, g^T delta; the default) or NG_TN_RHO_QUADRATIC
                            * (Martens' model g^T delta + 1/2 delta^T (C + eta) delta, one more product);
                            * hf always uses the quadratic model */
    double lambda_min;     /* floor of the adapted lambda (1e-6) */
    double lr;             /* ngd: fixed learning rate (1.0); the searches: their first trial step */
    int metric;            /* NG_TN_METRIC_* */
    int metric_batch;      /* cases of a separate / unlabeled metric batch (0: the gradient batch's) */
    int fisher;            /* the metric of the Gauss-Newton products (Sohl-Dickstein 2012 sections
                            * 2.2-2.4): NG_FISHER_EXACT (G v, the default), NG_FISHER_SAMPLED (the
                            * Fisher over the model's distribution with fisher_samples target draws
                            * per case, drawn once per update: the same matrix through the whole
                            * solve) or NG_FISHER_EMPIRICAL (the data's targets, eq. 31; not with
                            * metric unlabeled). Only with curvature gn. */
    int fisher_samples;    /* draws per case of NG_FISHER_SAMPLED (1) */
    double hf_decay;       /* hf: warm start from decay x the previous solution (0.95) */
    int hf_precond;        /* hf: the diagonal preconditioner (1) */
    double hf_power;       /* its exponent (0.75) */
    int hf_backtrack;      /* hf: CG backtracking (1) */
    int line_evals;        /* objective evaluations per line search (10) */
    int search_evals;      /* evaluations of ncg-l's 2-D search (30) */
    double eta;            /* the L2 weight eta of the objective (the update rule's --weight-decay):
                            * in every evaluation of h and added to the damping */
    int timing;            /* 1: synchronise the device around phases for solve_s / search_s */
    uint64_t seed;         /* the metric stream's shuffling */
} ng_tn_config;

void ng_tn_config_default(ng_tn_config *cfg);
ng_status ng_tn_config_check(const ng_tn_config *cfg);
const char *ng_tn_method_name(int method);   /* "ngd", "ngd-l", "ncg-l", "ncg-f", "hf" */
int ng_tn_method_parse(const char *s);       /* NG_TN_* or -1 */
const char *ng_tn_metric_name(int metric);   /* "same", "separate", "unlabeled" */
const char *ng_tn_fisher_name(int fisher);   /* "exact", "sampled", "empirical" */
/* The target-draw stream of NG_FISHER_SAMPLED products in update t: ng_net_fvp(net,
 * NG_FISHER_SAMPLED, fisher_samples, key, step) with key = ng_rng_stream_key(seed,
 * NG_RNG_TN_TARGETS) and step = ng_tn_fisher_step(t) (so a test can rebuild the draws). */
uint64_t ng_tn_fisher_step(uint64_t t);
/* The configuration stored in a checkpoint (tn.*), validated. */
ng_status ng_tn_config_from_ckpt(const ng_ckpt *c, ng_tn_config *cfg);

/* The preconditioner. metric_x (rows = ng_net_batch_rows(net), metric_n columns, host, borrowed:
 * must outlive it) is the pool separate / unlabeled metric batches are drawn from (NULL with
 * metric same). */
ng_status ng_precond_tn_init(ng_backend *be, ng_model *net, const ng_tn_config *cfg, const float *metric_x,
                             int metric_n, ng_precond **out);

/* ---- introspection for tests -------------------------------------------------------------------- */
typedef struct ng_tn_state {
    double lambda, rho, step, beta, pred, h0, h1, rel_res;
    int cg_iters, cg_stop, evals, chosen_iter;
} ng_tn_state;
ng_status ng_tn_get_state(ng_precond *p, ng_tn_state *s);
/* hf: the CG iterates kept in the last update (j = 0 .. count - 1, oldest first): their iteration
 * and a view of the vector (valid until the next update). *count only when j < 0. */
ng_status ng_tn_get_kept(ng_precond *p, int j, int *count, int *iter, ng_tensor *x);
/* The Levenberg-Marquardt rule: lambda x 3/2 when rho < 1/4 (or not finite), x 2/3 when rho > 3/4,
 * never below lambda_min. */
double ng_tn_lm_update(double lambda, double rho, double lambda_min);
/* Polak-Ribiere+ on natural gradients: max(0, n.(g - gp) / (np.gp)) (0 when np.gp = 0). */
double ng_tn_polak_ribiere(double n_g, double n_gp, double np_gp);
/* HF's diagonal preconditioner into minv (device, n): (diag + lambda)^-power with diag (written
 * to `diag`) the mean over the last gradient's cases of the squared per-case gradients (networks
 * without batch normalisation, single-chunk gradient batches); tmp: n floats of scratch. */
ng_status ng_tn_hf_diagonal(ng_model *net, double lambda, double power, float *diag, float *tmp, float *minv);
/* The same with caller-provided device scratch of ng_tn_hf_scratch_floats(net, cases) floats for
 * batches of up to `cases` cases (0 when net is not a network), so a training step allocates
 * nothing (the diagonal preconditioner of natgrad/recipes.h). */
size_t ng_tn_hf_scratch_floats(const ng_model *net, int cases);
ng_status ng_tn_hf_diagonal_ws(ng_model *net, double lambda, double power, float *diag, float *tmp, float *minv, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
