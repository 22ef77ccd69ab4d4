/* bn_merge.h (internal): the device merge of synchronised batch norm over the ranks, shared by the
 * fully connected net (net.c) and the conv net (cnn.c): the bn_merge op's steps (natgrad/backend.h,
 * NG_OP_BN_MERGE) and the NCCL all-reduces between them, in float64 on the stream, so that no value
 * goes through the host and a CUDA graph holds the whole merge. The models keep the buffers; this
 * file allocates nothing and only fills the op's arguments from the layer's view below. */
#ifndef NG_MODELS_BN_MERGE_H
#define NG_MODELS_BN_MERGE_H

#include <stddef.h>

#include "natgrad/backend.h"
#include "natgrad/comm.h"

/* One batch-norm layer's view of the model's device merge buffers. */
typedef struct ng_bn_dev {
    ng_backend *be;
    ng_comm *comm;     /* NCCL: the all-reduces run on be's stream */
    double cnt;        /* this rank's samples of the layer (>= 0) */
    float eps;         /* the batch norm's epsilon */
    float *mean, *rstd; /* (rows) the layer's statistics, device */
    double *tot;       /* (1) the merged samples of every rank, device */
    double *acc;       /* (2 rmax + 1 + rmax) scratch: acc, then acc2 = acc + 2 rmax + 1 */
    size_t rmax;       /* the most rows of any batch-norm layer of the model */
} ng_bn_dev;

/* One step (mode NG_BN_MERGE_*) of the merge of rows x cols values (see natgrad/backend.h). */
static inline ng_status ng_bn_dev_step(const ng_bn_dev *d, int mode, int rows, int cols, int scaled, float alpha,
                                       const float *x, int ldx, float *out, int ldo) {
    ng_op_args o = {.op = NG_OP_BN_MERGE};
    o.bn_merge.mode = mode;
    o.bn_merge.rows = rows;
    o.bn_merge.cols = cols;
    o.bn_merge.cnt = d->cnt;
    o.bn_merge.eps = d->eps;
    o.bn_merge.alpha = alpha;
    o.bn_merge.scaled = scaled;
    o.bn_merge.mean = d->mean;
    o.bn_merge.rstd = d->rstd;
    o.bn_merge.tot = d->tot;
    o.bn_merge.acc = d->acc;
    o.bn_merge.acc2 = d->acc + 2 * d->rmax + 1;
    o.bn_merge.x = x;
    o.bn_merge.ldx = ldx;
    o.bn_merge.out = out;
    o.bn_merge.ldo = ldo;
    return ng_run_op(d->be, &o);
}

/* Forward: merges every rank's mean and rstd of the layer's rows channels into the global ones
 * (Chan et al.: COUNTS, all-reduce, SCATTER, all-reduce, FINISH), written over mean and rstd; *tot
 * becomes the global sample count. Every rank must hold a case (no empty total). */
static inline ng_status ng_bn_dev_moments(const ng_bn_dev *d, int rows) {
    NG_TRY(ng_bn_dev_step(d, NG_BN_MERGE_COUNTS, rows, 0, 0, 1.0f, NULL, 0, NULL, 0));
    NG_TRY(ng_comm_allreduce(d->comm, d->be, NG_F64, d->acc, (size_t)rows + 1, "the batch-norm means"));
    NG_TRY(ng_bn_dev_step(d, NG_BN_MERGE_SCATTER, rows, 0, 0, 1.0f, NULL, 0, NULL, 0));
    NG_TRY(ng_comm_allreduce(d->comm, d->be, NG_F64, d->acc + 2 * d->rmax + 1, (size_t)rows, "the batch-norm variances"));
    return ng_bn_dev_step(d, NG_BN_MERGE_FINISH, rows, 0, 0, 1.0f, NULL, 0, NULL, 0);
}

/* Backward: rows x cols sums x (ld ldx) into means at this rank's scale, weighted by w (scaled:
 * cnt / *tot on the device, else 1), all-reduced in float64: out (ld ldo) = alpha sums / *tot / w.
 * out may be x when both hold one column or share the layout. */
static inline ng_status ng_bn_dev_means(const ng_bn_dev *d, int rows, int cols, const float *x, int ldx, int scaled,
                                        float alpha, float *out, int ldo, const char *what) {
    NG_TRY(ng_bn_dev_step(d, NG_BN_MERGE_WEIGHT, rows, cols, scaled, 1.0f, x, ldx, NULL, 0));
    NG_TRY(ng_comm_allreduce(d->comm, d->be, NG_F64, d->acc, (size_t)rows * cols, what));
    return ng_bn_dev_step(d, NG_BN_MERGE_MEANS, rows, cols, scaled, alpha, NULL, 0, out, ldo);
}

#endif
