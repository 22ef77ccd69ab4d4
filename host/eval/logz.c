/* logz.c: exact log partition function of a small binary RBM by enumerating its smaller layer.
 *   E(v, h) = -a^T v - b^T h - h^T W v,  W: (n_hidden, n_visible)
 * Summing the other layer out analytically leaves, for enumerated hidden states H (n_hidden, s),
 *   log p*(h) = b^T h + sum_i softplus((W^T h)_i + a_i)
 * and symmetrically for enumerated visible states. The per-state values are computed on the
 * backend in chunks of CHUNK states (binary_states, gemm, softplus_sum, gemv) and only the s
 * scalars per chunk come to the host, where a running-max log-sum-exp combines them in float64.
 * Evaluation code: it allocates its workspace per call. Must not call BLAS directly. */
#include <math.h>
#include <stdlib.h>

#include "natgrad/eval.h"
#include "natgrad/log.h"

enum {
    LOGZ_MAX_BITS = 20, /* at most 2^20 enumerated states */
    LOGZ_CHUNK = 4096   /* states per device chunk */
};

ng_status ng_rbm_log_z_exact(ng_rbm *rbm, double *log_z) {
    ng_backend *be;
    int nv, nh, nbits, nother, chunk, j;
    const float *bias_enum, *bias_other; /* biases of the enumerated / summed-out layer */
    uint64_t n_states, first;
    ng_arena ws;
    ng_tensor S, P, y; /* S (nbits, chunk) states, P (nother, chunk) pre-activations, y (chunk) */
    float *y_host = NULL;
    double run_max = -INFINITY, run_sum = 0.0;
    ng_status s = NG_OK;

    if (!rbm || !log_z) return ng_error(NG_ERR_INVALID_ARG, "exact log Z: NULL argument");
    be = rbm->be;
    nv = rbm->n_visible;
    nh = rbm->n_hidden;
    if (nv < 1 || nh < 1)
        return ng_error(NG_ERR_INVALID_ARG, "exact log Z: empty RBM (%d visible, %d hidden)", nv, nh);
    if (nh <= nv) {
        nbits = nh;
        nother = nv;
        bias_enum = rbm->b.data;
        bias_other = rbm->a.data;
    } else {
        nbits = nv;
        nother = nh;
        bias_enum = rbm->a.data;
        bias_other = rbm->b.data;
    }
    if (nbits > LOGZ_MAX_BITS)
        return ng_error(NG_ERR_INVALID_ARG,
                        "exact log Z: RBM of %d visible x %d hidden units would need 2^%d states of "
                        "its smaller layer; at most 2^%d are enumerated (use AIS)",
                        nv, nh, nbits, LOGZ_MAX_BITS);
    n_states = (uint64_t)1 << nbits;
    chunk = n_states < (uint64_t)LOGZ_CHUNK ? (int)n_states : LOGZ_CHUNK;

    ng_arena_begin(&ws, be, "exact log Z workspace");
    NG_TRY(ng_arena_reserve(&ws, "states", nbits, chunk, &S));
    NG_TRY(ng_arena_reserve(&ws, "pre", nother, chunk, &P));
    NG_TRY(ng_arena_reserve(&ws, "logp", chunk, 1, &y));
    NG_TRY(ng_arena_commit(&ws));
    y_host = (float *)malloc((size_t)chunk * sizeof(float));
    if (!y_host) s = ng_error(NG_ERR_OOM, "exact log Z: out of host memory");

    for (first = 0; s == NG_OK && first < n_states; first += (uint64_t)chunk) {
        s = ng_check_interrupt("exact log Z");
        if (s == NG_OK) s = ng_binary_states(be, nbits, first, chunk, S.data, nbits);
        /* P = W^T H (hidden enumerated) or W V (visible enumerated)  (=) */
        if (s == NG_OK) {
            if (nh <= nv)
                s = ng_gemm(be, 1, 0, nv, chunk, nh, 1.0f, rbm->W.data, nh, S.data, nbits, 0.0f,
                            P.data, nv);
            else
                s = ng_gemm(be, 0, 0, nh, chunk, nv, 1.0f, rbm->W.data, nh, S.data, nbits, 0.0f,
                            P.data, nh);
        }
        /* y = sum softplus(P + bias_other)  (=), then y += S^T bias_enum */
        if (s == NG_OK)
            s = ng_softplus_sum(be, nother, chunk, P.data, nother, bias_other, 1.0f, 1.0f, 0.0f,
                                y.data);
        if (s == NG_OK)
            s = ng_gemv(be, 1, nbits, chunk, 1.0f, S.data, nbits, bias_enum, 1.0f, y.data);
        if (s == NG_OK) s = ng_get(be, y_host, y.data, (size_t)chunk * sizeof(float));
        for (j = 0; s == NG_OK && j < chunk; j++) {
            double x = (double)y_host[j];
            if (!isfinite(x)) {
                s = ng_error(NG_ERR_NUMERIC,
                             "exact log Z: unnormalised log probability of state %llu is %g "
                             "(do the RBM parameters hold NaN or Inf?)",
                             (unsigned long long)(first + (uint64_t)j), x);
            } else if (x > run_max) {
                run_sum = run_sum * exp(run_max - x) + 1.0;
                run_max = x;
            } else {
                run_sum += exp(x - run_max);
            }
        }
    }
    if (s == NG_OK) *log_z = run_max + log(run_sum);
    free(y_host);
    ng_arena_free(&ws);
    return s;
}
