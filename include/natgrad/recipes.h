/* natgrad/recipes.h: recipes of Sohl-Dickstein's note ("The natural gradient by analogy to signal
 * whitening, and recipes and tricks for its use", 2012) as parts every model can use.
 *
 * The diagonal preconditioner (section 2.5, eq. 34; host/optim/diag.c), a preconditioner of
 * natgrad/precond.h: direction = g / (dhat + lambda)^power elementwise, with dhat a bias-corrected
 * moving average over updates of a per-batch estimate d of the metric's diagonal:
 *   avg_t = beta avg_{t-1} + (1 - beta) d_t,   dhat_t = avg_t / w_t   (avg_{-1} = 0)
 * with w_t = beta w_{t-1} + (1 - beta) (w_{-1} = 0) the weight of avg, 1 - beta^(t+1) up to float
 * rounding (in phi mode, where d is estimated only at refreshes, 1 - beta^(refreshes)); w lives on the
 * device, so a captured CUDA graph replays the correction (diag.wsum in checkpoints).
 * power 1 is the diagonal natural gradient of eq. 34; power 1/2 gives RMSprop-like scaling. The
 * metric (d_t, per parameter) is chosen by `metric`:
 *   NG_DIAG_FISHER     the Fisher over the model's distribution (eq. 30 / 34).
 *                      Networks: the mean over the batch's cases of the squared per-case gradients
 *                      with targets drawn from the model's predictive distribution (one draw per
 *                      case, stream (seed, NG_RNG_DIAG_TARGETS) at step t): an unbiased estimate of
 *                      diag(G), the Gauss-Newton matrix of matching losses.
 *                      RBMs: Var over the fantasy particles of the free-energy gradient (the score
 *                      of q(v) is -grad F(v) + <grad F>_q): for W (nh, nv)
 *                      d_W = <(h o h)(v o v)^T> - <h v^T>^2, d_a = <v o v> - <v>^2,
 *                      d_b = <h o h> - <h>^2 with h = p(h | v) and <> the mean over particles.
 *   NG_DIAG_EMPIRICAL  the Fisher over the data distribution (eq. 31): networks, the mean of the
 *                      squared per-case gradients with the data's targets.
 *   NG_DIAG_ENERGY     the energy approximation (eq. 33), RBMs: the second moment of the
 *                      free-energy gradient over the data batch, ignoring log Z:
 *                      d_W = <(h o h)(v o v)^T>_data, d_a = <v o v>_data, d_b = <h o h>_data.
 * Networks need single-chunk batches without batch normalisation (the per-case gradients are
 * g_i a_i^T, computed by one gemm per layer on squared statistics). State (checkpointed): the
 * average `diag.avg`; the configuration as diag.* entries. CSV columns: diag_min, diag_max (of dhat,
 * read back only on logged steps). */
#ifndef NATGRAD_RECIPES_H
#define NATGRAD_RECIPES_H

#include <stdint.h>

#include "natgrad/precond.h"
#include "natgrad/update.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { NG_DIAG_FISHER = 0, NG_DIAG_EMPIRICAL, NG_DIAG_ENERGY, NG_DIAG_METRIC_COUNT };

typedef struct ng_diag_config {
    int metric;        /* NG_DIAG_* */
    double lambda;     /* added to the diagonal before the power (1e-4) */
    double power;      /* exponent of the scaling, in (0, 1] (1) */
    double beta;       /* moving-average weight of past diagonals, in [0, 1) (0.95) */
    int max_batch;     /* the largest gradient batch (sizes the workspace at init; 0: at the first
                        * update, which a CUDA graph then cannot capture) */
    uint64_t seed;     /* networks, NG_DIAG_FISHER: the sampled targets */
    int phi_every;     /* natural parameter space (section 1.4, 2.7, eq. 37): 0 = off; K >= 1: the
                        * metric is estimated only at updates t = 0, K, 2K, ... and held fixed in
                        * between, and the preconditioner hands G^(-1/2) g to an update rule wrapped
                        * by ng_update_phi_init (below), which steps in phi = G^(1/2) theta */
} ng_diag_config;

void ng_diag_config_default(ng_diag_config *cfg);
ng_status ng_diag_config_check(const ng_diag_config *cfg);
const char *ng_diag_metric_name(int metric); /* "fisher", "empirical", "energy" */
int ng_diag_metric_parse(const char *s);     /* NG_DIAG_* or -1 */

/* The configuration stored in a checkpoint (diag.*), validated; cfg->max_batch is kept. */
ng_status ng_diag_config_from_ckpt(const ng_ckpt *c, ng_diag_config *cfg);

/* The preconditioner for a network ("net") or an RBM ("rbm") model. NG_ERR_INVALID_ARG when the
 * metric does not apply to the model (empirical: networks only; energy: RBMs only). */
ng_status ng_precond_diag_init(ng_backend *be, ng_model *m, const ng_diag_config *cfg, ng_precond **out);
/* Natural parameter space (eq. 37) with the diagonal metric: the scale s = (dhat + lambda)^(power/2)
 * of the last refresh and its reciprocal (device vectors, views valid while p lives), so that
 * phi = s o theta and G^(-1/2) g = g / s. NG_ERR_INVALID_ARG unless phi_every > 0. */
ng_status ng_diag_phi_scale(ng_precond *p, ng_tensor *scale, ng_tensor *inv_scale);

/* An update rule that runs `inner` (SGD, NAG, Adam, RMSprop; taken over, freed with the wrapper) on
 * phi = S theta for a preconditioner p in phi mode: the diagonal (S = diag(s)), K-FAC with
 * phi_every > 0 (S = (A (x) G)^(1/2) per layer, natgrad/kfac.h) or the full Fisher (S dense). For
 * the diagonal: step maps the parameters to phi,
 * lets the inner rule step with the direction p left (g / s = the gradient in phi), and maps back
 * theta = phi / s. Plain SGD in phi is then the natural-gradient step theta -= lr g / s^2 for the
 * fixed metric; Adam in phi is "natural gradient plus Adam" without feeding Adam a natural
 * gradient as if it were a gradient (the note's warning). The inner rule's state (momentum, Adam's
 * moments) lives in phi and is kept across refreshes of s. Checkpoints are the inner rule's
 * (update.kind is its name). Iterate averaging (average > 0) is refused: it would average phi. */
ng_status ng_update_phi_init(ng_backend *be, ng_model *m, ng_update *inner, ng_precond *p, ng_update **out);

/* The natural parameter space with the full, dense Fisher of a tiny network (section 2.7 with an
 * explicit G; host/optim/fullfisher.c), a preconditioner named "full": at updates t = 0, K, 2K, ...
 * G is built column by column from exact Gauss-Newton (= Fisher) products on the gradient's batch,
 * G + lambda I = E diag(w) E^T (float64 eigensolver), S = (G + lambda I)^(1/2) and S^-1 kept
 * (float32, checkpointed); apply leaves S^-1 g, ng_update_phi_init wraps the rule. Networks
 * without batch normalisation, at most NG_FULL_MAX_PARAMS parameters (refused beyond: use the
 * Kronecker factors, natgrad/kfac.h phi_every, or the diagonal). */
#define NG_FULL_MAX_PARAMS 2048
enum { NG_FULL_INV_TIKHONOV = 0, NG_FULL_INV_REGULARIZED = 1 };
typedef struct ng_full_config {
    double lambda;  /* --full-lambda: added to G (1e-3; > 0), or the eps of the regularised inverse */
    int phi_every;  /* --phi-every K >= 1: G recomputed every K updates */
    /* --full-inverse: NG_FULL_INV_TIKHONOV, S = (G + lambda I)^(1/2); NG_FULL_INV_REGULARIZED,
     * Sohl-Dickstein's eq. 35: S^-1 = ((G^2 + lambda^2 I)^-1 G)^(1/2) (eigenvalues sqrt(g / (g^2 +
     * lambda^2)), g = max(eigenvalue of G, 0)), so SGD in phi takes theta - lr (G^2 + lambda^2 I)^-1 G
     * grad; S is its pseudo-inverse (0 on the null space of G, where the regularised inverse takes no
     * step) */
    int inverse;
} ng_full_config;
void ng_full_config_default(ng_full_config *cfg);
ng_status ng_full_config_check(const ng_full_config *cfg);
ng_status ng_full_config_from_ckpt(const ng_ckpt *c, ng_full_config *cfg);
ng_status ng_precond_full_init(ng_backend *be, ng_model *m, const ng_full_config *cfg, ng_precond **out);
/* x <- S x (to_phi) or S^-1 x in place (device, the model's size); NG_ERR_NUMERIC before the
 * first refresh. */
ng_status ng_full_phi_map(ng_precond *p, float *x, int to_phi);

/* For tests: the per-batch estimate d of the last apply and the moving average avg (before the
 * bias correction), device vectors of the model's size; views valid while p lives. */
ng_status ng_diag_get(ng_precond *p, ng_tensor *batch_diag, ng_tensor *avg);

#ifdef __cplusplus
}
#endif
#endif
