/* graph.h: CUDA-graph segments. A trainer whose update reads scalars on the host mid-update
 * (truncated Newton's CG, K-FAC's quadratic model) cannot be one graph, but the pieces between its
 * host reads repeat with the same shapes and addresses (the curvature product inside CG, the
 * gradient, K-FAC's F^-1 products): each piece is captured once and replayed.
 *
 * A segment is a body (device work only: no host read, no allocation, no host-side decision that
 * a replay would have to repeat) and a key: the segment's name plus everything the body bakes into
 * the recorded work (device addresses, shapes, host scalars passed by value) and the host state
 * that steers its control flow. ng_graph_seg_run looks the key up in the cache: a hit launches the
 * graph; a miss captures the body (the work is recorded, not run) and launches it; with the cache
 * off (or NULL) the body runs eagerly. Host state the body leaves behind (a network's "which
 * forward pass the buffers hold") is saved after a capture through the segment's state_get and put
 * back after a replay through state_set, so the host side of a replayed segment ends where the
 * eager one would.
 *
 * A capture that fails (the body turned out to wait for the host, or the runtime refused the
 * graph) recorded nothing that ran: the host state is put back, the key is remembered as eager
 * (never captured again), the body runs eagerly, and the run goes on with a warning; the failure
 * is counted. The same ops on the same data either way, so graph and eager results are
 * bit-identical. No CUDA types here; the backend's graph slots do the work (natgrad/backend.h). */
#ifndef NATGRAD_GRAPH_H
#define NATGRAD_GRAPH_H

#include <stdint.h>

#include "natgrad/backend.h"
#include "natgrad/status.h"
#include "natgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NG_GRAPH_SEG_KEY 64   /* words of a key (name id + caller's words + host state) */
#define NG_GRAPH_SEG_STATE 40 /* words of host state a segment may save */
#define NG_GRAPH_SEG_SLOTS 32 /* cached graphs (least recently used goes) */
#define NG_GRAPH_SEG_NAMES 8  /* distinct segment names counted per cache */

typedef struct ng_graph_seg {
    const char *name;              /* the segment's id (a static string) and its profile range */
    ng_status (*body)(void *user); /* the device work */
    /* optional: the host state the body reads and leaves; get writes at most cap words and
     * returns how many (< 0: cannot describe it: the segment runs eagerly), set restores them */
    int (*state_get)(void *user, uint64_t *st, int cap);
    void (*state_set)(void *user, const uint64_t *st, int n);
} ng_graph_seg;

typedef struct ng_graph_segs {
    ng_backend *be;
    int on; /* 1: capture / replay; 0: every segment runs eagerly */
    struct {
        void *exec;   /* NULL with used: a key whose capture failed (runs eagerly) */
        int used;
        uint64_t key[NG_GRAPH_SEG_KEY];
        int n_key;
        uint64_t post[NG_GRAPH_SEG_STATE]; /* host state after the captured body */
        int n_post;
        uint64_t last_use;
    } slot[NG_GRAPH_SEG_SLOTS];
    uint64_t clock;
    struct {
        const char *name;
        uint64_t captures, replays, eager, failures;
    } count[NG_GRAPH_SEG_NAMES];
    uint64_t captures, replays, eager, failures; /* over every segment */
    /* the decisions so far (FNV-1a over each run's name id, kind: capture / replay / eager / failed
     * capture, and slot): on several ranks the trainer checks once per update that every rank's
     * trace is the same (ng_trainer_agree_segments, natgrad/train.h) */
    uint64_t trace;
} ng_graph_segs;

/* An empty cache on be (off until on is set). */
void ng_graph_segs_init(ng_graph_segs *c, ng_backend *be);
/* Free every graph (before the backend); safe on a zeroed cache. */
void ng_graph_segs_free(ng_graph_segs *c);
/* Run seg with user: replayed, captured and launched, or eager (c NULL or off). key: n_key words
 * (n_key <= NG_GRAPH_SEG_KEY - 1 - the state's words). */
ng_status ng_graph_seg_run(ng_graph_segs *c, const ng_graph_seg *seg, void *user, const uint64_t *key, int n_key);
/* The counts of the segments called name (zeros when none ran). */
void ng_graph_seg_counts(const ng_graph_segs *c, const char *name, uint64_t *captures, uint64_t *replays, uint64_t *eager,
                         uint64_t *failures);
/* Key words: a pointer, a double (its bits) */
static inline uint64_t ng_graph_key_ptr(const void *p) { return (uint64_t)(uintptr_t)p; }
uint64_t ng_graph_key_f64(double d);
/* A tensor view as NG_GRAPH_TENSOR_WORDS words of pass state (pointer, shape, ld, dtype, dims) and
 * back: the batch views a model's graph_state_get / set save (natgrad/model.h) */
#define NG_GRAPH_TENSOR_WORDS 6
void ng_graph_tensor_words(const ng_tensor *t, uint64_t *w);
void ng_graph_words_tensor(const uint64_t *w, ng_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
