/* sample.c: samples of an RBM by block Gibbs sampling (natgrad rbm sample). n chains start from
 * the base-rate model (v ~ sigmoid(a_base), the AIS start) and run `sweeps` sweeps
 * h ~ sigmoid(W v + b), v ~ sigmoid(W^T h + a) at full strength; the last sweep's visible
 * probabilities and samples come back to the host. Shapes: W (n_hidden, n_visible); chains are
 * columns (n_visible, n). Evaluation code: it allocates its workspace per call; no BLAS outside
 * the backend wrappers. */
#include <stdlib.h>

#include "eval/anneal.h"
#include "natgrad/eval.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"

ng_status ng_rbm_sample(ng_rbm *rbm, const float *a_base, int n, int sweeps, uint64_t seed,
                        const ng_ais_config *progress, float *prob_host, float *sample_host) {
    ng_backend *be;
    int nv, nh, k;
    uint64_t key, step = 0;
    ng_anneal an;
    ng_status s = NG_OK;
    if (!rbm || !a_base || (!prob_host && !sample_host))
        return ng_error(NG_ERR_INVALID_ARG, "sample: NULL argument");
    if (n < 1) return ng_error(NG_ERR_INVALID_ARG, "sample: n %d: must be >= 1", n);
    if (sweeps < 1) return ng_error(NG_ERR_INVALID_ARG, "sample: sweeps %d: must be >= 1", sweeps);
    be = rbm->be;
    nv = rbm->n_visible;
    nh = rbm->n_hidden;
    key = ng_rng_stream_key(seed, NG_RNG_GIBBS);
    NG_TRY(ng_anneal_init(rbm, a_base, n, "sample", &an));
    /* v_0 ~ the base-rate model: beta = 0 on zeroed pre-activations leaves sigmoid(a_base) */
    s = ng_fill(be, (size_t)nv * n, 0.0f, an.PV.data);
    if (s == NG_OK)
        s = ng_gibbs_sample(be, nv, n, an.PV.data, nv, NULL, 0.0f, an.ab.data, NULL, nv, an.V.data, nv, key, step++);
    for (k = 1; s == NG_OK && k <= sweeps; k++) {
        s = ng_gemm(be, 0, 0, nh, n, nv, 1.0f, rbm->W.data, nh, an.V.data, nv, 0.0f, an.PH.data, nh);
        if (s == NG_OK)
            s = ng_gibbs_sample(be, nh, n, an.PH.data, nh, rbm->b.data, 1.0f, NULL, NULL, nh, an.H.data, nh, key,
                                step++);
        if (s == NG_OK)
            s = ng_gemm(be, 1, 0, nv, n, nh, 1.0f, rbm->W.data, nh, an.H.data, nh, 0.0f, an.PV.data, nv);
        /* on the last sweep the visible probabilities overwrite their pre-activations in PV
         * (the gibbs_sample op allows prob to alias pre) */
        if (s == NG_OK)
            s = ng_gibbs_sample(be, nv, n, an.PV.data, nv, rbm->a.data, 1.0f, an.ab.data,
                                k == sweeps ? an.PV.data : NULL, nv, an.V.data, nv, key, step++);
        if (s == NG_OK && k % 100 == 0) s = ng_check_interrupt("sample");
        if (s == NG_OK && progress && progress->progress && (k % 100 == 0 || k == sweeps))
            progress->progress(progress->progress_user, "sample", k, sweeps);
    }
    if (s == NG_OK && prob_host) s = ng_get(be, prob_host, an.PV.data, (size_t)nv * n * sizeof(float));
    if (s == NG_OK && sample_host) s = ng_get(be, sample_host, an.V.data, (size_t)nv * n * sizeof(float));
    ng_anneal_free(&an);
    return s;
}
