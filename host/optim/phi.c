/* phi.c: an update rule in the natural parameter space phi = S theta, S = G^(1/2) (Sohl-Dickstein's
 * note, section 1.4, 2.7, eq. 37; natgrad/recipes.h) for a G held by a preconditioner in phi mode:
 *   diag  the diagonal preconditioner: S = diag(s), s = G^(1/2) elementwise (outer_scale mul)
 *   kfac  K-FAC's block-diagonal Kronecker factors: per layer S = (A (x) G)^(1/2), applied as
 *         G^(1/2) V A^(1/2) (ng_kfac_phi_map)
 *   full  the dense Fisher of a tiny network: S = (G + lambda I)^(1/2), a gemv (ng_full_phi_map)
 * The rules wrapped (sgd, nag, adam, rmsprop; averaging refused) move their iterate by an
 * increment that does not depend on it: phi_{t+1} = phi_t + inc(state, direction), and NAG's
 * theta() is phi - mu v. So, on the model's flat vectors, without mapping theta itself:
 *   step:  copy theta; the inner rule steps from a zero parameter vector with the direction in the
 *          gradient arena (the preconditioner left S^-1 g there, the gradient in phi), leaving
 *          inc there; theta_{t+1} = theta_t + S^-1 inc, exactly S^-1 (S theta_t + inc)
 *   theta: the same with the inner rule's theta() from zero: theta + S^-1 theta_inner(0)
 * One map per update (plus the preconditioner's S^-1 g), and theta never goes through a rounded
 * S^-1 S round trip.
 * The wrapper presents the inner rule's name, columns, configuration and state, so checkpoints are
 * the inner rule's. Allocates its copy of the parameters at init only. */
#include <stdlib.h>
#include <string.h>

#include "natgrad/backend.h"
#include "natgrad/kfac.h"
#include "natgrad/recipes.h"

typedef struct phi {
    struct ng_update_i iface; /* the inner rule's, with this file's step / theta / save / load */
    ng_update *inner;
    ng_precond *p;            /* kfac: the factors' square roots */
    ng_tensor s, is;          /* diag: views of the preconditioner's scale and 1/scale */
    void *backup;             /* a copy of the parameters (theta) */
} phi;

static ng_status scale_by(ng_backend *be, float *x, size_t n, const float *by) {
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_MUL;
    o.outer_scale.rows = (int)n;
    o.outer_scale.cols = 1;
    o.outer_scale.x = x;
    o.outer_scale.ldx = (int)n;
    o.outer_scale.u = by;
    o.outer_scale.out = x;
    o.outer_scale.ldo = (int)n;
    return ng_run_op(be, &o);
}

/* x <- S x (to_phi) or S^-1 x, in place */
static ng_status map(ng_update *u, float *x, size_t n, int to_phi) {
    phi *f = (phi *)u->impl;
    if (f->p) return strcmp(f->p->iface->name, "full") == 0 ? ng_full_phi_map(f->p, x, to_phi) : ng_kfac_phi_map(f->p, x, to_phi);
    return scale_by(u->be, x, n, to_phi ? f->s.data : f->is.data);
}

static ng_status phi_penalize(ng_update *u, ng_model *m, uint64_t t) {
    phi *f = (phi *)u->impl;
    return ng_update_penalize(f->inner, m, t);
}

static ng_status phi_step(ng_update *u, ng_model *m, uint64_t t) {
    phi *f = (phi *)u->impl;
    size_t n = ng_model_size(m);
    float *th = m->param_flat.data;
    NG_TRY(ng_copy(u->be, f->backup, th, n * sizeof(float)));
    NG_TRY(ng_fill(u->be, n, 0.0f, th));
    NG_TRY(ng_update_step(f->inner, m, t));
    NG_TRY(map(u, th, n, 0));
    return ng_axpby(u->be, n, 1.0f, (const float *)f->backup, 1.0f, th);
}

static double phi_lr(const ng_update *u, uint64_t t) { return ng_update_lr(((const phi *)u->impl)->inner, t); }

static ng_status phi_log_values(ng_update *u, ng_model *m, double *values) {
    phi *f = (phi *)u->impl;
    return f->inner->iface->log_values ? f->inner->iface->log_values(f->inner, m, values) : NG_OK;
}

static ng_status phi_save(ng_update *u, ng_ckpt *c) {
    phi *f = (phi *)u->impl;
    return f->inner->iface->save ? f->inner->iface->save(f->inner, c) : NG_OK;
}

static ng_status phi_load(ng_update *u, const ng_ckpt *c, int apply) {
    phi *f = (phi *)u->impl;
    return f->inner->iface->load ? f->inner->iface->load(f->inner, c, apply) : NG_OK;
}

static ng_status phi_theta(ng_update *u, ng_model *m, uint64_t t, float *out) {
    phi *f = (phi *)u->impl;
    size_t n = ng_model_size(m);
    ng_status s;
    if (!f->inner->iface->theta) return out == m->param_flat.data ? NG_OK : ng_copy(u->be, out, m->param_flat.data, n * sizeof(float));
    /* the inner rule's iterate (NAG: phi - mu v) from a zero phi, mapped and added to theta; the
     * parameters come back from the copy (out may be the parameter arena) */
    NG_TRY(ng_copy(u->be, f->backup, m->param_flat.data, n * sizeof(float)));
    NG_TRY(ng_fill(u->be, n, 0.0f, m->param_flat.data));
    s = f->inner->iface->theta(f->inner, m, t, out);
    if (s == NG_OK) s = map(u, out, n, 0);
    if (s == NG_OK) s = ng_axpby(u->be, n, 1.0f, (const float *)f->backup, 1.0f, out);
    if (out != m->param_flat.data) {
        ng_status s2 = ng_copy(u->be, m->param_flat.data, f->backup, n * sizeof(float));
        if (s == NG_OK) s = s2;
    }
    return s;
}

/* CUDA graphs: the step adds only device copies and scalings to the inner rule's, so its key and
 * its host mirrors are the inner rule's (a K-FAC or full map reads no host either, but those
 * preconditioners are not captured) */
static int phi_graph_key(const ng_update *u, uint64_t t, double *key, int max) {
    const ng_update *in = ((const phi *)u->impl)->inner;
    return in->iface->graph_key(in, t, key, max);
}
static void phi_graph_replayed(ng_update *u, uint64_t t) {
    ng_update *in = ((phi *)u->impl)->inner;
    if (in->iface->graph_replayed) in->iface->graph_replayed(in, t);
}
static void phi_graph_discarded(ng_update *u, uint64_t t) {
    ng_update *in = ((phi *)u->impl)->inner;
    if (in->iface->graph_discarded) in->iface->graph_discarded(in, t);
}

static void phi_destroy(ng_update *u) {
    phi *f = (phi *)u->impl;
    /* the state arena is the inner rule's (a copy of its handle): released with the inner rule */
    memset(&u->state, 0, sizeof u->state);
    if (f) ng_update_free(f->inner);
    if (f && f->backup) ng_free(u->be, f->backup);
    free(f);
}

ng_status ng_update_phi_init(ng_backend *be, ng_model *m, ng_update *inner, ng_precond *p, ng_update **out) {
    ng_update *u;
    phi *f;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: NULL output");
    *out = NULL;
    if (!be || !m || !inner || !p) return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: NULL argument");
    if (ng_arena_find(&inner->state, "average"))
        return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: iterate averaging (--average) would average phi, not theta: "
                        "use --average 0 with --phi-every");
    u = (ng_update *)calloc(1, sizeof *u);
    f = (phi *)calloc(1, sizeof *f);
    if (!u || !f) {
        free(u);
        free(f);
        return ng_error(NG_ERR_OOM, "natural parameter space: out of host memory");
    }
    {
        ng_status s;
        if (strcmp(p->iface->name, "kfac") == 0) {
            ng_kfac_config kc;
            f->p = p;
            s = ng_kfac_get_config(p, &kc);
            if (s == NG_OK && kc.phi_every <= 0)
                s = ng_error(NG_ERR_INVALID_ARG, "natural parameter space: the K-FAC preconditioner was made without --phi-every K");
        } else if (strcmp(p->iface->name, "full") == 0) {
            f->p = p;
            s = NG_OK;
        } else if (strcmp(p->iface->name, "diag") == 0) {
            s = ng_diag_phi_scale(p, &f->s, &f->is);
        } else {
            s = ng_error(NG_ERR_INVALID_ARG, "natural parameter space: preconditioner '%s' cannot apply G^(1/2) (diag, kfac, full can)",
                         p->iface->name);
        }
        if (s == NG_OK) s = ng_alloc(be, ng_model_size(m) * sizeof(float), &f->backup);
        if (s != NG_OK) {
            free(u);
            free(f);
            return s;
        }
    }
    f->inner = inner;
    f->iface = *inner->iface;
    f->iface.penalize = phi_penalize;
    f->iface.step = phi_step;
    f->iface.lr = phi_lr;
    f->iface.log_values = phi_log_values;
    f->iface.save = phi_save;
    f->iface.load = phi_load;
    f->iface.theta = phi_theta;
    f->iface.destroy = phi_destroy;
    f->iface.graph_key = inner->iface->graph_key ? phi_graph_key : NULL;
    f->iface.graph_replayed = phi_graph_replayed;
    f->iface.graph_discarded = phi_graph_discarded;
    u->iface = &f->iface;
    u->be = be;
    u->impl = f;
    u->state = inner->state; /* the same tensors: checkpointed under the inner rule's name */
    *out = u;
    return NG_OK;
}
