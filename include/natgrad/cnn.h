/* natgrad/cnn.h: convolutional classifiers (host/models/cnn.c), a model of natgrad/model.h.
 *
 * Tensors are N,C,H,W float32 (w fastest, then h, channel, image: one image is one column of
 * c h w rows, so a batch of images is a column-major (c h w, n) matrix like every other batch).
 * A network is a list of layers, each mapping maps (c, h, w) to maps (c', h', w'):
 *   conv   y = W * x + b: c' maps, k x k windows, stride, zero padding (im2col + gemm: the
 *          window matrix col (P, K) of each image, P = h' w', K = c k k, times W^T, W (c', K));
 *   pool   max or average over k x k windows (stride defaults to k);
 *   act    relu, tanh, logistic, linear elementwise;
 *   bn     batch normalisation over channels: every pixel of every image of a channel is a sample
 *          (per-unit for dense inputs), y = gamma xhat + beta; running averages of mean and
 *          1/sqrt(var + eps) at inference, updated with momentum by each training batch;
 *   dense  y = W x + b on the flattened maps (c h w units);
 *   whiten the 1x1 whitening convolution of PRONG section 4.3, y = U (x - mu) per pixel, U and mu
 *          state (not trained) set by ng_cnn_whiten (see there).
 * The last layer is dense with `classes` units; softmax + cross-entropy is the loss (categorical,
 * natgrad/nn_types.h), and the objective is the mean loss per case. Batches hold c h w input rows
 * followed by `classes` rows of one-hot targets (or the targets separately).
 *
 * Spec syntax (ng_cnn_parse_spec), tokens separated by '-':
 *   c<N>[k<K>][s<S>][p<P>]  conv, N maps, window K (3), stride S (1), padding P (K/2)
 *   mp<K>[s<S>], ap<K>[s<S>] max / average pooling, window K, stride S (K)
 *   relu tanh logistic linear, bn, w (whitening), d<N> (dense, N units)
 * e.g. "c32-bn-relu-c32-bn-relu-mp2-c64-bn-relu-mp2-d128-relu-d10" (a small VGG-like net).
 *
 * Batches larger than the chunk are processed chunk by chunk (batch norm per chunk), so the
 * workspace (im2col matrices of a chunk included) is bounded by the chunk size. */
#ifndef NATGRAD_CNN_H
#define NATGRAD_CNN_H

#include <stdint.h>

#include "natgrad/model.h"
#include "natgrad/nn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ng_comm;

#define NG_CNN_MAX_LAYERS 40

enum { NG_CNN_CONV = 0, NG_CNN_POOL_MAX, NG_CNN_POOL_AVG, NG_CNN_ACT, NG_CNN_BN, NG_CNN_DENSE, NG_CNN_WHITEN };

typedef struct ng_cnn_layer {
    int kind;              /* NG_CNN_* */
    int out;               /* conv: maps; dense: units; others: 0 (kept) */
    int k, stride, pad;    /* conv / pool windows */
    int act;               /* NG_ACT_* of an act layer */
} ng_cnn_layer;

typedef struct ng_cnn_config {
    int c, h, w;                       /* input maps */
    int n_layers;
    ng_cnn_layer layer[NG_CNN_MAX_LAYERS];
    int chunk;                         /* images per pass (>= 1), default 64 */
    float bn_eps, bn_momentum;         /* 1e-5, 0.1 */
    float whiten_eps;                  /* eigenvalue regulariser of the whitening (PRONG's eps), 0.1 */
    int whiten_every;                  /* PRONG's T: whitening + reparametrisation before gradients
                                        * 0, T, 2T, ... on the batch's first whiten_samples cases
                                        * (0 = never; gradient 0 = the whitened initialisation) */
    int whiten_samples;                /* N_s (>= 1), default 1000 (capped by the batch) */
    int augment_pad;                   /* training batches: random crops of the image padded by this
                                        * many pixels (0 = off) */
    int augment_flip;                  /* 1: and left-right mirrors with probability 1/2 */
    uint64_t seed;                     /* initialisation and augmentation */
} ng_cnn_config;

/* Defaults with no layers and a 1 x 28 x 28 input. */
void ng_cnn_config_default(ng_cnn_config *cfg);
/* Parse the layer list into cfg (input shape untouched). Errors name the token. */
ng_status ng_cnn_parse_spec(const char *spec, ng_cnn_config *cfg);
/* The spec string of cfg, for banners and checkpoints. */
const char *ng_cnn_spec_string(const ng_cnn_config *cfg, char *buf, size_t len);
/* Shapes propagate (windows fit, dense last, sizes in range); messages name the layer. */
ng_status ng_cnn_config_check(const ng_cnn_config *cfg);
/* Output maps of layer l (1-based; l = 0 is the input): channels, height, width. */
void ng_cnn_layer_shape(const ng_cnn_config *cfg, int l, int *c, int *h, int *w);
int ng_cnn_classes(const ng_cnn_config *cfg);
/* The input shape, spec and settings stored in a checkpoint (cnn.*) into cfg, validated. */
ng_status ng_cnn_config_from_ckpt(const ng_ckpt *c, ng_cnn_config *cfg);

/* Create (weights uniform in +-sqrt(6 / (fan_in + fan_out)) from cfg->seed, drawn on the host so
 * every backend starts equal; biases 0, gamma 1, beta 0, whitening U = I, mu = 0). */
ng_status ng_cnn_create(ng_backend *be, const ng_cnn_config *cfg, ng_model **out);
void ng_cnn_free(ng_model *m); /* NULL ok */
const ng_cnn_config *ng_cnn_config_of(const ng_model *m);
/* Rows of a batch: c h w + classes. */
int ng_cnn_batch_rows(const ng_model *m);

/* Mean objective and misclassification rate of the n cases of x (rows as ng_cnn_batch_rows),
 * batch norm in inference mode; touches neither the gradient nor the last batch's results. */
ng_status ng_cnn_evaluate(ng_model *m, const ng_tensor *x, double *objective, double *misclass);
/* Mean objective of the n cases of x in training mode (batch norm on each chunk's statistics, as
 * the gradient sees them; running averages untouched; no augmentation): the function whose
 * gradient ng_model_gradient computes, for line searches and damping rules. */
ng_status ng_cnn_objective(ng_model *m, const ng_tensor *x, double *objective);
/* ng_cnn_objective in two halves, for a caller that captures the device work in a CUDA-graph
 * segment (natgrad/graph.h): ng_cnn_objective_dev runs the same forward passes and loss ops with no
 * host read, case c's objective into objs[c] (device memory of x->cols floats);
 * ng_cnn_objective_read reads them and gives what ng_cnn_objective gives, bit for bit. */
ng_status ng_cnn_objective_dev(ng_model *m, const ng_tensor *x, float *objs);
ng_status ng_cnn_objective_read(ng_model *m, int cases, const float *objs, double *objective);
/* ng_cnn_objective of x at the parameters in the arena as the CUDA-graph segment `name` (a static
 * string) of segs (eager when segs is NULL or off): the _dev half captured, keyed by x's view, the
 * parameters' and objs' addresses and the model's pass state, then the _read half. *objs / *cap:
 * the caller's device buffer (floats), grown here, outside the segment, when x needs more (the
 * caller frees it with ng_free). What truncated Newton's evaluations call. */
struct ng_graph_segs;
ng_status ng_cnn_objective_seg(struct ng_graph_segs *segs, const char *name, ng_model *m, const ng_tensor *x, float **objs,
                               size_t *cap, double *objective);
/* Gradients computed so far (the counter of the whitening schedule and of the augmentation
 * stream; checkpointed). */
uint64_t ng_cnn_gradients(const ng_model *m);
/* Objective and misclassification rate of the last gradient's batch. */
ng_status ng_cnn_batch_loss(ng_model *m, double *objective, double *misclass);

/* Whitening layers (PRONG section 4.3, Algorithm 1's reparametrisation): for every whitening layer
 * l, the mean mu and covariance Sigma over the channels of its input maps, every pixel of every
 * image of x (first n_s cases) a sample; U = diag((lambda + eps)^-1/2) E^T from Sigma = E diag(lambda)
 * E^T (syevd); then the next conv or dense layer's W and b are changed so that the network computes
 * the same function: W' (acting on the new whitened maps) = W (U_old U_new^-1) on every channel
 * block of the window, b' = b + W (U_old (mu_new - mu_old)) summed over the window's taps inside
 * the map. Padding pixels (zeros after the whitening) make a conv with padding preserve the function
 * only inside the map; the layer after a whitening layer must therefore use pad 0 or be dense
 * (ng_cnn_config_check enforces it). The statistics come from forward passes with batch norm on
 * each chunk's own statistics, as training sees the maps (running averages untouched, no
 * augmentation); the function is kept exactly for every fixed batch-norm normalisation. */
ng_status ng_cnn_whiten(ng_model *m, const ng_tensor *x, int n_s);
/* Data parallelism (natgrad/comm.h): the batches ng_model_gradient receives are this rank's
 * shard, cases [lo, lo + cols) of a global batch of `batch` cases (comm NULL or one rank: one
 * process). Then batch norm is synchronised: the per-channel mean and variance of the forward pass
 * and the two per-channel sums of the backward pass are all-reduced, so the ranks normalise over
 * the whole global batch as one process does with --chunk >= batch (each rank's shard must fit one
 * chunk); the running averages are identical on every rank. The augmentation draws by the case's
 * index in the global batch, so shards draw what one process draws. The whitening statistics
 * (the first whiten_samples cases of the global batch) are merged across the ranks and each
 * eigendecomposition runs on its owner and is broadcast (natgrad/whiten.h); the reparametrisation
 * then runs identically on every rank. Every rank must call ng_model_gradient for every update.
 * The curvature products on the current batch (ng_cnn_set_batch: this rank's shard, or the same
 * batch on every rank) are this rank's share, for the caller to weight and sum (natgrad/tnewton.h);
 * with batch norm every per-channel sum of their passes is all-reduced (the R-forward pass's of J v,
 * G v, F v and the Fisher gram, the backward pass's, and every mean of H v's R-backward pass), so
 * the weighted sum is one process's product over the global batch, and every rank must call each
 * product alike (one chunk per rank: a batch over --chunk is refused). The sampled F v draws the
 * targets of the gradient's case c as those of case lo + c of the global batch (a batch of
 * ng_cnn_set_batch: as cases 0.. of its own), so the ranks draw what one process draws. */
ng_status ng_cnn_set_dist(ng_model *m, struct ng_comm *comm, int lo, int batch);
/* Outputs (classes, n) (softmax probabilities) of x in inference mode. */
ng_status ng_cnn_predict(ng_model *m, const ng_tensor *x, ng_tensor *y);

/* ---- curvature products (as natgrad/net.h's, for second-order methods) -------------------------
 * On the current batch: the last gradient's, or x (and targets y, or NULL: the rows of x after the
 * input) set by ng_cnn_set_batch (x must stay valid; a batch of one chunk gets its forward pass
 * now). Batch norm uses each chunk's statistics (training mode, differentiated through the mean
 * and variance), running averages are untouched and the images are not augmented; a single-chunk
 * gradient batch without augmentation reuses its forward pass (that of the parameters at the
 * gradient: after changing the parameters, call ng_cnn_set_batch again; any other pass of the model,
 * an evaluation included, drops it). Vectors are float32 in the parameter layout; m = the batch's
 * cases.
 *   J v   ng_cnn_jvp: out (classes, m) = R{z_L}, the R-operator forward pass (conv, max pooling
 *         through its argmax, average pooling, activations, batch norm, whitening, dense)
 *   G v   ng_cnn_gvp: (1/m) sum_i J_i^T H_i J_i v, H_i = diag(y_i) - y_i y_i^T (softmax + CE)
 *   F v   ng_cnn_fvp: NG_FISHER_EXACT (natgrad/net.h; = G v), NG_FISHER_SAMPLED (targets drawn from the model,
 *         `samples` draws, stream (key, step + s), Philox index the case's position in the global
 *         batch: ng_cnn_set_dist),
 *         NG_FISHER_EMPIRICAL (the batch's targets); out must not alias v.
 *   H v   ng_cnn_hvp: the Hessian of the objective (training-mode batch norm included) by
 *         Pearlmutter's R{backprop}; its R{A} buffers (one per layer, a chunk each, and NHWC scratch
 *         for batch norm) are allocated at the first call.
 * The model slots jvp, gnvp, fvp (exact) and hvp are these. */
ng_status ng_cnn_set_batch(ng_model *m, const ng_tensor *x, const ng_tensor *y);
/* The current batch: *x, and *y when the targets were given separately (else y->ptr = NULL). */
ng_status ng_cnn_current_batch(const ng_model *m, ng_tensor *x, ng_tensor *y);
ng_status ng_cnn_jvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
ng_status ng_cnn_gvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
ng_status ng_cnn_hvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
ng_status ng_cnn_fvp(ng_model *m, int mode, int samples, uint64_t key, uint64_t step, const ng_tensor *v, ng_tensor *out);
/* The same with the sampled targets' step = step_dev[0] read on the device (2 words as
 * natgrad/backend.h's sample_targets step_dev, written by the caller; read only): the same draws,
 * and a captured CUDA graph of it replays with the step written since (natgrad/graph.h). */
ng_status ng_cnn_fvp_dev(ng_model *m, int mode, int samples, uint64_t key, uint64_t *step_dev, const ng_tensor *v,
                         ng_tensor *out);
/* Allocate H v's workspace now (its first call would), e.g. before a CUDA-graph capture of it. */
ng_status ng_cnn_hvp_prepare(ng_model *m);
/* Exact-Fisher (= Gauss-Newton) quadratic forms of nv <= 8 vectors on the current batch, as
 * ng_net_fisher_gram (K-FAC's quadratic model, appendix C): gram[i + nv j] = (1/m) sum_cases
 * (J v_i)^T H_L (J v_j), one R-forward pass per vector, no backward pass. work: float32 device
 * scratch of at least classes * min(m, chunk) * (nv + 1) elements. */
ng_status ng_cnn_fisher_gram(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, double *gram);

#ifdef __cplusplus
}
#endif
#endif
