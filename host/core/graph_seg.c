/* graph_seg.c: the cache of captured CUDA-graph segments (natgrad/graph.h). A key is the
 * segment's name id, the caller's words and the host state the body starts from; a slot keeps the
 * instantiated graph and the host state the captured body left. Host-only bookkeeping: the device
 * work is the backend's (ng_graph_begin / end / launch / free). */
#include "natgrad/graph.h"

#include <stdio.h>
#include <string.h>

#include "natgrad/log.h"
#include "natgrad/profile.h"

uint64_t ng_graph_key_f64(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

_Static_assert(NG_MAX_DIMS == 4, "ng_graph_tensor_words packs four dims");
void ng_graph_tensor_words(const ng_tensor *t, uint64_t *w) {
    w[0] = (uint64_t)(uintptr_t)t->ptr;
    w[1] = (uint64_t)(uint32_t)t->rows << 32 | (uint32_t)t->cols;
    w[2] = (uint64_t)(uint32_t)t->ld << 32 | (uint32_t)t->ndim;
    w[3] = (uint64_t)(uint32_t)t->dtype;
    w[4] = (uint64_t)(uint32_t)t->dims[0] << 32 | (uint32_t)t->dims[1];
    w[5] = (uint64_t)(uint32_t)t->dims[2] << 32 | (uint32_t)t->dims[3];
}

void ng_graph_words_tensor(const uint64_t *w, ng_tensor *t) {
    memset(t, 0, sizeof *t);
    t->ptr = (void *)(uintptr_t)w[0];
    t->rows = (int)(uint32_t)(w[1] >> 32);
    t->cols = (int)(uint32_t)w[1];
    t->ld = (int)(uint32_t)(w[2] >> 32);
    t->ndim = (int)(uint32_t)w[2];
    t->dtype = (ng_dtype)(uint32_t)w[3];
    t->dims[0] = (int)(uint32_t)(w[4] >> 32);
    t->dims[1] = (int)(uint32_t)w[4];
    t->dims[2] = (int)(uint32_t)(w[5] >> 32);
    t->dims[3] = (int)(uint32_t)w[5];
}

void ng_graph_segs_init(ng_graph_segs *c, ng_backend *be) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->trace = 1469598103934665603ull;
}

/* the decision of one run into the trace: kind 0 eager, 1 replay, 2 capture, 3 failed capture */
static void trace(ng_graph_segs *c, int id, int kind, int slot) {
    const uint64_t w[3] = {(uint64_t)(int64_t)id, (uint64_t)kind, (uint64_t)(int64_t)slot};
    int i;
    for (i = 0; i < 3; i++) c->trace = (c->trace ^ w[i]) * 1099511628211ull;
}

void ng_graph_segs_free(ng_graph_segs *c) {
    int i;
    if (!c) return;
    for (i = 0; i < NG_GRAPH_SEG_SLOTS; i++) {
        if (c->slot[i].exec) ng_graph_free(c->be, c->slot[i].exec);
        c->slot[i].exec = NULL;
        c->slot[i].used = 0;
    }
}

/* the counter of a name (its index is the name's id in the key); -1 when the table is full */
static int name_id(ng_graph_segs *c, const char *name) {
    int i;
    for (i = 0; i < NG_GRAPH_SEG_NAMES; i++) {
        if (c->count[i].name && strcmp(c->count[i].name, name) == 0) return i;
        if (!c->count[i].name) {
            c->count[i].name = name;
            return i;
        }
    }
    return -1;
}

void ng_graph_seg_counts(const ng_graph_segs *c, const char *name, uint64_t *captures, uint64_t *replays, uint64_t *eager,
                         uint64_t *failures) {
    int i;
    *captures = *replays = *eager = *failures = 0;
    for (i = 0; c && i < NG_GRAPH_SEG_NAMES && c->count[i].name; i++)
        if (strcmp(c->count[i].name, name) == 0) {
            *captures = c->count[i].captures;
            *replays = c->count[i].replays;
            *eager = c->count[i].eager;
            *failures = c->count[i].failures;
        }
}

static ng_status run_eager(ng_graph_segs *c, int id, const ng_graph_seg *seg, void *user) {
    if (c) {
        c->eager++;
        if (id >= 0) c->count[id].eager++;
        trace(c, id, 0, -1);
    }
    return seg->body(user);
}

ng_status ng_graph_seg_run(ng_graph_segs *c, const ng_graph_seg *seg, void *user, const uint64_t *key, int n_key) {
    uint64_t k[NG_GRAPH_SEG_KEY], pre[NG_GRAPH_SEG_STATE];
    int id, n_pre = 0, nk, i, hit = -1, empty = -1, lru = -1, victim;
    void *exec = NULL;
    ng_status s, e;
    char msg[1024];
    if (!seg || !seg->body || n_key < 0 || (n_key > 0 && !key))
        return ng_error(NG_ERR_INVALID_ARG, "graph segment: NULL segment or body, or a bad key");
    id = c ? name_id(c, seg->name) : -1;
    if (!c || !c->on || id < 0 || !ng_graph_supported(c->be)) return run_eager(c, id, seg, user);
    if (seg->state_get) {
        n_pre = seg->state_get(user, pre, NG_GRAPH_SEG_STATE);
        if (n_pre < 0) return run_eager(c, id, seg, user);
    }
    if (1 + n_key + n_pre > NG_GRAPH_SEG_KEY)
        return ng_error(NG_ERR_INVALID_ARG, "graph segment %s: a key of %d words (at most %d)", seg->name, 1 + n_key + n_pre,
                        NG_GRAPH_SEG_KEY);
    k[0] = (uint64_t)id;
    if (n_key) memcpy(k + 1, key, (size_t)n_key * sizeof *k);
    if (n_pre) memcpy(k + 1 + n_key, pre, (size_t)n_pre * sizeof *k);
    nk = 1 + n_key + n_pre;
    for (i = 0; i < NG_GRAPH_SEG_SLOTS; i++) {
        if (!c->slot[i].used) {
            if (empty < 0) empty = i;
            continue;
        }
        if (c->slot[i].n_key == nk && memcmp(c->slot[i].key, k, (size_t)nk * sizeof *k) == 0) hit = i;
        if (lru < 0 || c->slot[i].last_use < c->slot[lru].last_use) lru = i;
    }
    c->clock++;
    if (hit >= 0) {
        c->slot[hit].last_use = c->clock;
        if (!c->slot[hit].exec) return run_eager(c, id, seg, user); /* its capture failed before */
        trace(c, id, 1, hit);
        NG_TRY(ng_graph_launch(c->be, c->slot[hit].exec));
        if (seg->state_set) seg->state_set(user, c->slot[hit].post, c->slot[hit].n_post);
        c->replays++;
        c->count[id].replays++;
        return NG_OK;
    }
    /* a miss: capture (nothing runs), then launch */
    victim = empty >= 0 ? empty : lru;
    if (c->slot[victim].exec) ng_graph_free(c->be, c->slot[victim].exec);
    c->slot[victim].exec = NULL;
    c->slot[victim].used = 0;
    NG_TRY(ng_graph_begin(c->be));
    ng_profile_suspend(1);
    s = seg->body(user);
    ng_profile_suspend(0);
    if (s != NG_OK) snprintf(msg, sizeof msg, "%s", ng_last_error());
    e = ng_graph_end(c->be, &exec); /* always leave capture mode */
    if (e != NG_OK && s == NG_OK) snprintf(msg, sizeof msg, "%s", ng_last_error());
    memcpy(c->slot[victim].key, k, (size_t)nk * sizeof *k);
    c->slot[victim].n_key = nk;
    c->slot[victim].used = 1;
    c->slot[victim].last_use = c->clock;
    if (s != NG_OK || e != NG_OK) {
        /* nothing recorded ran: back to the host state before, then the same work eagerly */
        if (exec) ng_graph_free(c->be, exec);
        if (seg->state_set && n_pre) seg->state_set(user, pre, n_pre);
        c->failures++;
        c->count[id].failures++;
        trace(c, id, 3, victim);
        ng_log(NG_LOG_WARN, "graph", "--cuda-graph: segment %s could not be captured (%s); it runs eagerly", seg->name, msg);
        return run_eager(c, id, seg, user);
    }
    c->slot[victim].exec = exec;
    c->slot[victim].n_post = seg->state_get ? seg->state_get(user, c->slot[victim].post, NG_GRAPH_SEG_STATE) : 0;
    if (c->slot[victim].n_post < 0) c->slot[victim].n_post = 0;
    c->captures++;
    c->count[id].captures++;
    trace(c, id, 2, victim);
    return ng_graph_launch(c->be, exec);
}
