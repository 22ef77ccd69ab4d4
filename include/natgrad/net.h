/* natgrad/net.h: feed-forward networks of dense layers (host/models/net.c), a model of
 * natgrad/model.h with the curvature products that second-order methods need.
 *
 * Layers l = 1..L map d_{l-1} units to d_l units: z_l = W_l a_{l-1} + b_l, a_l = f_l(z_l), with
 * W_l (d_l, d_{l-1}) column-major and b_l (d_l). In the packed parameter arena b_l follows W_l,
 * so [W_l b_l] is one (d_l, d_{l-1} + 1) matrix (K-FAC's W-bar) and every activation buffer keeps a
 * row of ones below its d_l rows (a-bar): one gemm does weights and biases. A layer may instead
 * use batch normalisation before its nonlinearity: z_l = W_l a_{l-1} (no bias), u_l = gamma_l
 * xhat_l + beta_l with xhat_l = (z_l - mean) / sqrt(var + eps) over the batch (running averages of
 * mean and 1/sqrt(var + eps) at inference), a_l = f_l(u_l).
 *
 * The output layer's nonlinearity and the loss form a matching pair (natgrad/nn_types.h):
 * linear + squared error, logistic + cross-entropy, softmax + cross-entropy, so dL/dz_L = y - t and
 * the Gauss-Newton matrix equals the Fisher of the predictive distribution. The objective is the
 * mean loss per case over the batch; the papers' reported error is the mean over cases of
 * sum_pixels (y - t)^2 (no factor 1/2).
 *
 * Curvature products, for the parameters and batch of the last ng_model_gradient (or
 * ng_net_set_batch), on flat vectors laid out like the parameter arena (m = cases in the batch):
 *   J v   the R-operator forward pass: R{z_L} (d_L, m)   (ng_net_jvp)
 *   G v = (1/m) sum_i J_i^T H_i J_i v, H_i the loss Hessian in z_L at case i (closed form)
 *   F v   the Fisher: NG_FISHER_EXACT (E over targets in closed form: equals G v for matching
 *         losses), NG_FISHER_SAMPLED (targets drawn from the model, `samples` draws per case),
 *         NG_FISHER_EMPIRICAL (the data targets)
 *   H v   Pearlmutter's R{backprop}: the Hessian of the objective.
 * Batches larger than the chunk size are processed chunk by chunk (forward pass recomputed per
 * chunk, results accumulated), so the workspace is bounded by the chunk size. The gradient runs
 * its chunks in the order 1, ..., K - 1, 0 and leaves chunk 0's forward pass in the buffers: a
 * batch that fits one chunk, a prefix of the batch within chunk 0 (ng_net_batch_prefix) and the
 * first chunk of a chunked product after it reuse that pass instead of recomputing it. The
 * buffers do not see parameter changes: after writing the parameters directly, call
 * ng_net_set_batch (or compute a gradient) before further products on the batch. Batch
 * normalisation is per chunk (a prefix of a batch-normalised chunk is recomputed).
 *
 * Statistics (ng_model_statistic, single-chunk batches): "a<l>" = a-bar_l (d_l + 1, m) with the
 * homogeneous row, l = 0..L-1; "g<l>" = dL/dz_l of the last backward pass (d_l, m), l = 1..L,
 * unscaled by 1/m after ng_net_backward_sampled (per-case derivatives with sampled targets, what
 * K-FAC's G factors average); "y" = the outputs (d_L, m). */
#ifndef NATGRAD_NET_H
#define NATGRAD_NET_H

#include <stdint.h>

#include "natgrad/model.h"
#include "natgrad/nn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ng_comm;

#define NG_NET_MAX_LAYERS 16

enum { NG_NET_TARGET_INPUT = 0, /* autoencoder: the targets are the inputs (d_L = d_0) */
       NG_NET_TARGET_ROWS = 1   /* batches hold d_0 input rows followed by d_L target rows */ };

enum { NG_INIT_SPARSE = 0, /* Martens 2010: 15 incoming weights per unit from N(0, 1), biases 0 */
       NG_INIT_GAUSSIAN,   /* every weight from N(0, init_scale^2), biases 0 */
       NG_INIT_GLOROT      /* uniform in +-sqrt(6 / (fan_in + fan_out)), biases 0 */ };

enum { NG_FISHER_EXACT = 0, NG_FISHER_SAMPLED, NG_FISHER_EMPIRICAL };

typedef struct ng_net_config {
    int n_layers;                      /* L */
    int dims[NG_NET_MAX_LAYERS + 1];   /* d_0 .. d_L */
    int act[NG_NET_MAX_LAYERS];        /* f_l of layer l = index l-1 (NG_ACT_*) */
    int bn[NG_NET_MAX_LAYERS];         /* 1: batch normalisation in layer l (hidden layers only) */
    int loss;                          /* NG_LOSS_*, must match act[L-1] */
    int target;                        /* NG_NET_TARGET_* */
    int chunk;                         /* cases per pass (>= 1) */
    float bn_eps, bn_momentum;         /* 1e-5 and 0.1 (running = (1-mom) running + mom batch) */
    int init;                          /* NG_INIT_* */
    int sparse_count;                  /* 15 */
    float init_scale;                  /* NG_INIT_GAUSSIAN's standard deviation */
    uint64_t seed;                     /* initialisation and sampled targets */
    int fisher;                        /* NG_FISHER_* used by the fvp slot */
    int fisher_samples;                /* draws per case of NG_FISHER_SAMPLED (>= 1) */
    int whiten;                        /* PRONG (see ng_net_whiten_refresh): 0 plain, 1 whitened
                                          coordinates V, d; 2 canonical form (W, b with the whitened
                                          SGD step as "gradient") */
} ng_net_config;

/* Defaults (chunk 1000, bn_eps 1e-5, bn_momentum 0.1, sparse init of 15, fisher exact, one sample)
 * with no layers. */
void ng_net_config_default(ng_net_config *cfg);

/* Parse a layer spec: dimensions separated by '-', each but the first optionally followed by
 * ":act" (linear, logistic, tanh, relu, softmax) and/or "+bn" (batch normalisation), e.g.
 * "784-1000-500-250-30:linear-250-500-1000-784". Layers without ":act" take hidden_act, the last
 * one out_act. The loss is not set here. Errors name the offending token. */
ng_status ng_net_parse_spec(const char *spec, int hidden_act, int out_act, ng_net_config *cfg);
/* A named preset into cfg (layers, activations, loss): "mnist-autoencoder", "curves-autoencoder",
 * "faces-autoencoder" (Hinton & Salakhutdinov 2006). NG_ERR_INVALID_ARG listing the names. */
ng_status ng_net_preset(const char *name, ng_net_config *cfg);
extern const char *const ng_net_preset_names[]; /* NULL-terminated */
/* The spec string of cfg ("784-1000:logistic-...-784:logistic"), for banners and checkpoints. */
const char *ng_net_spec_string(const ng_net_config *cfg, char *buf, size_t len);
/* Every field in range, the output activation matching the loss, softmax only at the output,
 * batch normalisation only in hidden layers. Messages name the layer or field. */
ng_status ng_net_config_check(const ng_net_config *cfg);

const char *ng_act_name(int act);   /* "linear", ... or "?" */
const char *ng_loss_name(int loss); /* "squared", "bernoulli", "categorical" or "?" */
int ng_act_parse(const char *s);    /* NG_ACT_* or -1 */
int ng_loss_parse(const char *s);   /* NG_LOSS_* or -1 (also "mse", "cross-entropy", "softmax-ce") */

/* The architecture stored in a checkpoint (net.spec, net.loss, net.target, batch-norm settings)
 * into cfg (other fields untouched), validated. */
ng_status ng_net_config_from_ckpt(const ng_ckpt *c, ng_net_config *cfg);

/* Create a network (parameters initialised from cfg->seed by the host, identical on every
 * backend). *out is a model: release with ng_net_free. */
ng_status ng_net_create(ng_backend *be, const ng_net_config *cfg, ng_model **out);
void ng_net_free(ng_model *m); /* NULL ok */
const ng_net_config *ng_net_config_of(const ng_model *m);
/* Rows a batch of this network must have: d_0 (autoencoder) or d_0 + d_L. */
int ng_net_batch_rows(const ng_model *m);

/* Make x (and targets y, or NULL: from x as the config says) the batch of the curvature products
 * without computing a gradient (forward pass of a single-chunk batch). x must stay valid. */
ng_status ng_net_set_batch(ng_model *m, const ng_tensor *x, const ng_tensor *y);
/* Make the first cols cases of the batch last set (by a gradient or ng_net_set_batch) the current
 * batch. When their forward pass is in the buffers (chunk 0 of the gradient's batch, or the whole
 * single-chunk batch) it is reused, not recomputed: K-FAC's statistics (tau1 m cases) and
 * exact-Fisher products (tau2 m) run on prefixes of the gradient's batch at the cost of their
 * backward / R passes only (a prefix longer than a chunk recomputes its chunks after the first).
 * The parameters must not have changed since that pass (nothing in natgrad changes them between
 * a gradient and its preconditioner's observe / apply). */
ng_status ng_net_batch_prefix(ng_model *m, int cols);
/* J v: out (d_L, m) = R{z_L} for the current batch (m = its cases). */
ng_status ng_net_jvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
ng_status ng_net_gvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
ng_status ng_net_hvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
/* F v with the given mode. NG_FISHER_SAMPLED: draw s (0 .. samples - 1) of the case in column c of
 * the batch takes the uniforms of (key, step + s 1000003) at Philox column c (sample_targets of
 * natgrad/backend.h), whatever the chunking. */
ng_status ng_net_fvp(ng_model *m, int mode, int samples, uint64_t key, uint64_t step,
                     const ng_tensor *v, ng_tensor *out);
/* The same with the targets of case c drawn as those of case col0 + c of a larger batch: a
 * data-parallel rank whose cases start at position col0 of the global batch draws what one process
 * with the whole batch draws, so the shard-weighted sum of the ranks' sampled F v is one process's.
 * With synchronised batch norm (ng_net_set_comm) the product runs through the synchronised passes. */
ng_status ng_net_fvp_at(ng_model *m, int mode, int samples, uint64_t key, uint64_t step, uint64_t col0,
                        const ng_tensor *v, ng_tensor *out);
/* The same (col0 as there) with step = step_dev[0] read on the device (2 words as natgrad/backend.h's
 * sample_targets step_dev, written by the caller; read only: advance 0): the same draws, and a
 * captured CUDA graph of it replays with the step written since (natgrad/graph.h). */
ng_status ng_net_fvp_dev(ng_model *m, int mode, int samples, uint64_t key, uint64_t *step_dev, uint64_t col0,
                         const ng_tensor *v, ng_tensor *out);
/* Backward pass of the current (single-chunk) batch with targets drawn from the model's
 * predictive distribution (stream key, step): statistics "g<l>" then hold per-case dL/dz_l. The
 * gradient arena is not touched. */
ng_status ng_net_backward_sampled(ng_model *m, uint64_t key, uint64_t step);
/* The same with the targets of case c drawn as those of case col0 + c of a larger batch (the
 * Philox index of natgrad/backend.h's sample_targets): a data-parallel rank whose cases start at
 * position col0 of the global batch draws what one process with the whole batch draws. */
ng_status ng_net_backward_sampled_at(ng_model *m, uint64_t key, uint64_t step, uint64_t col0);
/* The same (col0 as there) at the Philox step counted on the device (step_dev[0], 2 words as
 * natgrad/backend.h's sample_targets step_dev), which the draw advances by `advance`: a captured
 * CUDA graph replays with new targets. */
ng_status ng_net_backward_sampled_dev(ng_model *m, uint64_t key, uint64_t *step_dev, uint64_t advance, uint64_t col0);

/* The current batch (as given to the last ng_model_gradient or ng_net_set_batch): *x, and *y when
 * the targets were given separately (else y->ptr = NULL). NG_ERR_INVALID_ARG before any batch. */
ng_status ng_net_current_batch(const ng_model *m, ng_tensor *x, ng_tensor *y);
/* Exact-Fisher (= Gauss-Newton) quadratic forms of nv <= 8 vectors on the current batch, computed
 * as in appendix C of the K-FAC paper: one R-forward pass per vector (J v_i), the output Hessian
 * H_L applied to each, gram[i + nv j] = (1/m) sum_cases (J v_i)^T H_L (J v_j) (symmetric, summed
 * in double on the host). work: float32 device scratch of at least d_L * min(m, chunk) * (nv + 1)
 * elements. Chunked like G v. */
ng_status ng_net_fisher_gram(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, double *gram);
/* The same on a current batch of one chunk, without a host read (a CUDA-graph segment,
 * natgrad/graph.h): dots[i (i + 1) / 2 + j] = sum_cases (J v_j)^T H_L (J v_i) for j <= i, as floats
 * in device memory (nv (nv + 1) / 2 of them); gram[j + nv i] is that divided by m in double, as
 * ng_net_fisher_gram computes it from the same floats. NG_ERR_UNSUPPORTED when the batch is more
 * than one chunk. */
ng_status ng_net_fisher_gram_dots(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, float *dots);

/* Mean objective and mean error per case (sum (y - t)^2) of the n cases of x (device, rows as
 * ng_net_batch_rows), chunk by chunk, batch normalisation in inference mode. Touches neither the
 * gradient nor the statistics of the last gradient. */
ng_status ng_net_evaluate(ng_model *m, const ng_tensor *x, double *objective, double *error);
/* ng_net_evaluate in two halves, for a caller that captures the device work in a CUDA-graph
 * segment (natgrad/graph.h): ng_net_evaluate_dev runs the same forward passes and loss ops with no
 * host read, each chunk c's sums (objective, error) into sums[2c], sums[2c + 1] (device memory of
 * 2 ng_net_evaluate_chunks(m, x->cols) floats); ng_net_evaluate_read reads them (one wait per 32
 * chunks) and gives what ng_net_evaluate gives, bit for bit. */
int ng_net_evaluate_chunks(const ng_model *m, int cases);
ng_status ng_net_evaluate_dev(ng_model *m, const ng_tensor *x, float *sums);
ng_status ng_net_evaluate_read(ng_model *m, int cases, const float *sums, double *objective, double *error);
/* ng_net_evaluate's objective of x at the parameters in the arena as the CUDA-graph segment `name`
 * (a static string) of segs (natgrad/graph.h; eager when segs is NULL or off): the _dev half
 * captured, keyed by x's view, the parameters' and the sums' addresses and the network's pass state,
 * then the _read half. *sums / *cap: the caller's device buffer of sums (floats), grown here, outside
 * the segment, when x needs more (the caller frees it with ng_free). What the truncated-Newton and
 * K-FAC rho evaluations call. */
struct ng_graph_segs;
ng_status ng_net_evaluate_seg(struct ng_graph_segs *segs, const char *name, ng_model *m, const ng_tensor *x,
                              float **sums, size_t *cap, double *objective);
/* The outputs y (d_L, n) of x, inference mode (for reconstructions). */
ng_status ng_net_predict(ng_model *m, const ng_tensor *x, ng_tensor *y);

/* ---- whitened layers (PRONG, Desjardins et al. 2015) ------------------------------------------
 * With cfg.whiten = 1 every layer reads its input whitened (eq. 6):
 *   z_l = V_l U_{l-1} (a_{l-1} - c_{l-1}) + d_l
 * V_l and d_l are the trainable parameters (they occupy the W<l> and b<l> slots of the parameter
 * arena; with batch normalisation z_l = V_l U (a - c) and no d_l); U and c are state, checkpointed
 * as net.whiten_UhT<l> = [U^T; -(U c)^T] ((d_{l-1} + 1, d_{l-1})) and net.whiten_c<l>. A new
 * network starts with U = I, c = 0 (the canonical network). Every product of this header (gradient,
 * J v, G v, F v, H v, sampled backward, Fisher gram) is taken with respect to (V, d), and the
 * statistic "a<l>" is the whitened input [U (a_l - c); 1] that V_{l+1} multiplies (K-FAC's A factors
 * of a whitened network).
 *
 * With cfg.whiten = 2 (PRONG's canonical form) the parameters are the canonical W_l = V_l U_{l-1},
 * b_l = d_l - W_l c_{l-1} and the passes are those of the plain network; the gradient slot returns
 * instead of dL/dW, dL/db the whitened SGD step mapped to W, b:
 *   [G_W G_b] = D [K a-bar]^T,  K = U~^T U~,  U~ = [U, -U c; 0, 1]  ((d + 1, d + 1), net.whiten_K<l>)
 * i.e. G_W = dL/dV U and G_b = dL/dd - G_W c, so that theta -= lr G moves W, b exactly as SGD on V, d
 * with U, c fixed moves V U, d - V U c. This costs one product K a-bar per layer where whitened
 * coordinates cost two (U (a - c) forward, U^T back). A refresh keeps W and b (the function exactly)
 * and only replaces U, c, K. The update rule's state (momentum) lives in W-space, so across a
 * refresh it is kept as a step of W (whiten = 1 keeps it as a step of V instead: the two forms agree
 * between refreshes and differ after one). J v, G v, F v, H v, the sampled backward pass, the Fisher
 * gram and the "a<l>" statistics are refused (NG_ERR_INVALID_ARG): the gradient is not dL/dtheta. */

/* Algorithm 1 lines 6-11 on the samples x (N_s columns, rows as ng_net_batch_rows; only the input
 * rows are read): the mean c_l and covariance of every layer's input from a forward pass (training
 * mode, chunk by chunk, running batch-norm averages untouched), U_l = diag(lambda + eps)^(-1/2) E^T
 * (eq. 7), then
 *   keep_function = 1: V_l <- W_l U_l^-1 and d_l <- b_l + W_l c_l with W_l = V_l U_old, b_l = d_l - W_l c_old
 *                     (the projection P(theta): the network computes the same function; a batch-
 *                     normalised layer's running mean moves by the change of W c instead);
 *   keep_function = 0: V_l and d_l are kept and the layers are whitened one after another from the
 *                     input up, each on the activations of the layers below it already whitened
 *                     (section 4.1's whitened initialisation; one forward pass in all when the
 *                     samples fit one chunk). The canonical form (whiten = 2) needs the state of a
 *                     new network for it (U = I, c = 0: V = W, d = b) and sets W <- W U, b <- b - W c.
 * The canonical form's keep_function = 1 changes only U, c and K.
 * NG_ERR_INVALID_ARG when the network is not whitened; the last gradient's buffers are invalidated.
 * times (NULL: not measured; the device is synchronised at each boundary when given): times[0] +=
 * seconds in the statistics (forward passes, means and covariances), times[1] += seconds in the
 * eigendecompositions and the update of U, c, V, d. */
ng_status ng_net_whiten_refresh(ng_model *m, const ng_tensor *x, float eps, int keep_function, double *times);
/* The same on several ranks (natgrad/comm.h; comm NULL or one rank: the call above): x holds this
 * rank's share of the N_s samples (>= 1 column on every rank); the means and scatters are merged
 * across the ranks (ng_whiten_allreduce), each eigendecomposition runs on its owner and is broadcast
 * (ng_whiten_compute_shared), so every rank applies the same reparametrisation and keeps identical
 * parameters. Every rank must call it. Batch-normalised layers normalise over every rank's samples
 * when the network has the communicator (ng_net_set_comm; each rank's share within one chunk). */
ng_status ng_net_whiten_refresh_comm(ng_model *m, const ng_tensor *x, float eps, int keep_function, double *times,
                                     struct ng_comm *comm);
/* Several ranks (natgrad/comm.h; comm NULL or one rank: one process): training-mode batch norm
 * normalises over every rank's columns. The forward pass merges the ranks' per-unit means and
 * variances exactly (Chan et al., in double), the backward pass all-reduces the two per-unit sums
 * of its projection (sum g, sum g xhat, weighted by the ranks' shares), so the ranks compute one
 * process's batch with --chunk >= the global batch, and the running averages are identical on every
 * rank. Every training-mode pass (gradient, PRONG statistics) must then be one chunk per rank
 * (refused otherwise, naming --chunk) and run on every rank; inference (evaluate, predict) uses the
 * running averages and no collective. J v, G v and the Fisher gram reduce the two sums of the
 * normalisation's R-derivative in their R-forward pass (and G v the backward pass's), so every rank
 * must call them too; so do the empirical F v (through the synchronised backward pass) and H v
 * (which also reduces the batch means of the normalisation's second-order terms in its R-backward
 * pass). The sampled F v, the sampled backward pass and the layer statistics are refused with
 * batch norm on several ranks. */
ng_status ng_net_set_comm(ng_model *m, struct ng_comm *comm);
/* theta (parameter layout, float32, packed) = the canonical parameters W_l = V_l U_{l-1},
 * b_l = d_l - W_l c_{l-1} (batch-normalised layers: W_l only; their gamma, beta copied) of a whitened
 * network; a copy of the parameters otherwise. */
ng_status ng_net_canonical(ng_model *m, ng_tensor *theta);
/* Views of layer l's whitening state (1 <= l <= L): *UhT = [U^T; -(U c)^T] (d_{l-1} + 1, d_{l-1}),
 * *c (d_{l-1}). NG_ERR_INVALID_ARG when the network is not whitened. */
ng_status ng_net_whiten_state(ng_model *m, int l, ng_tensor *UhT, ng_tensor *c);

/* Objective and error per case of the last gradient's batch (waits for the device). */
ng_status ng_net_batch_loss(ng_model *m, double *objective, double *error);

#ifdef __cplusplus
}
#endif
#endif
