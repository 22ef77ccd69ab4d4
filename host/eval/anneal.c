/* anneal.c: the set-up AIS and RAISE share (host/eval/anneal.h). */
#include "eval/anneal.h"

#include <math.h>
#include <string.h>

#include "ng_math.h"

ng_status ng_anneal_init(ng_rbm *rbm, const float *a_base, int cols, const char *what, ng_anneal *an) {
    ng_backend *be = rbm->be;
    int nv = rbm->n_visible, nh = rbm->n_hidden, i;
    ng_status s;
    memset(an, 0, sizeof *an);
    for (i = 0; i < nv; i++) {
        if (!isfinite(a_base[i]))
            return ng_error(NG_ERR_INVALID_ARG, "%s: base-rate bias a_base[%d] is %g", what, i, (double)a_base[i]);
        an->log_z_base += ng_softplus_d((double)a_base[i]);
    }
    an->log_z_base += (double)nh * log(2.0);
    ng_arena_begin(&an->ws, be, what);
    ng_arena_reserve(&an->ws, "V", nv, cols, &an->V);
    ng_arena_reserve(&an->ws, "PV", nv, cols, &an->PV);
    ng_arena_reserve(&an->ws, "H", nh, cols, &an->H);
    ng_arena_reserve(&an->ws, "PH", nh, cols, &an->PH);
    ng_arena_reserve(&an->ws, "logw", cols, 1, &an->lw);
    ng_arena_reserve(&an->ws, "a-a_base", nv, 1, &an->d);
    ng_arena_reserve(&an->ws, "a_base", nv, 1, &an->ab);
    s = ng_arena_commit(&an->ws);
    if (s == NG_OK) s = ng_set(be, an->ab.data, a_base, (size_t)nv * sizeof(float));
    if (s == NG_OK) s = ng_copy(be, an->d.data, rbm->a.data, (size_t)nv * sizeof(float));
    if (s == NG_OK) s = ng_axpby(be, (size_t)nv, -1.0f, an->ab.data, 1.0f, an->d.data);
    if (s != NG_OK) ng_anneal_free(an);
    return s;
}

void ng_anneal_free(ng_anneal *an) { ng_arena_free(&an->ws); }
