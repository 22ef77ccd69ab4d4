/* profile.c: named ranges (NVTX in the `natgrad` domain on CUDA builds), natgrad's own phase
 * profile (CUDA events on a GPU backend, CLOCK_MONOTONIC on the CPU), the cudaProfilerStart/Stop
 * capture window, and device memory per arena (natgrad/profile.h).
 * Only the thread that called ng_profile_start is measured; other threads (K-FAC's asynchronous
 * inverses) still emit NVTX ranges. Must not: print, or cost more than a flag test per range when
 * the profile is off in a build without NVTX. */
#include "natgrad/profile.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natgrad/backend.h"

#if defined(NG_HAVE_CUDA)
#include <cuda_profiler_api.h>
#endif
#if defined(NG_HAVE_CUDA) && defined(NG_NVTX)
#include <nvtx3/nvToolsExt.h>
#define NG_HAVE_NVTX 1
#else
#define NG_HAVE_NVTX 0
#endif

static const char *const cat_names[NG_CAT_COUNT] = {
    "other", "step", "data", "forward", "backward", "gibbs", "statistics", "inverse",
    "solver", "update", "checkpoint", "eval", "comm", "kernel"};
/* ARGB; one hue per family, so an nsys timeline reads like the algorithm */
static const uint32_t cat_colors[NG_CAT_COUNT] = {
    0xFF9E9E9Eu, 0xFF3F51B5u, 0xFF795548u, 0xFF4CAF50u, 0xFF8BC34Au, 0xFF00BCD4u, 0xFFFFC107u,
    0xFFF44336u, 0xFF9C27B0u, 0xFF2196F3u, 0xFF607D8Bu, 0xFFFF9800u, 0xFF000000u, 0xFFBDBDBDu};

const char *ng_range_cat_name(ng_range_cat c) {
    return (unsigned)c < NG_CAT_COUNT ? cat_names[c] : "?";
}
uint32_t ng_range_cat_color(ng_range_cat c) { return (unsigned)c < NG_CAT_COUNT ? cat_colors[c] : 0u; }

/* ---- slots: one per registered name ---------------------------------------------------------- */

#define MAX_SLOTS 1024
#define HASH_SIZE 4096 /* power of two, > 2 * MAX_SLOTS */
#define MAX_DEPTH 64

typedef struct slot {
    const char *name;
    ng_range_cat cat;
    int depth, order; /* when first measured; order < 0: never measured */
#if NG_HAVE_NVTX
    nvtxStringHandle_t handle;
#endif
    uint64_t calls;
    double total_s, flops, bcalls, dev[NG_DEV_COUNT];
} slot;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static slot g_slots[MAX_SLOTS];
static int g_nslots, g_norder;
static const char *g_hash_key[HASH_SIZE]; /* name pointer -> slot index */
static int g_hash_val[HASH_SIZE];
static int g_slot_overflow;

#if NG_HAVE_NVTX
static nvtxDomainHandle_t g_domain;
static pthread_once_t g_nvtx_once = PTHREAD_ONCE_INIT;
static void nvtx_init(void) {
    int c;
    g_domain = nvtxDomainCreateA("natgrad");
    for (c = 0; c < NG_CAT_COUNT; c++) nvtxDomainNameCategoryA(g_domain, (uint32_t)c, cat_names[c]);
}
#endif

/* Slot of a name (registered on first use; the same text at another address shares the slot). */
static int slot_of(ng_range_cat cat, const char *name) {
    size_t h = ((size_t)(uintptr_t)name >> 3) * 2654435761u;
    int i, idx = -1;
    pthread_mutex_lock(&g_lock);
    for (i = 0; i < HASH_SIZE; i++) {
        size_t k = (h + (size_t)i) & (HASH_SIZE - 1);
        if (g_hash_key[k] == name) {
            idx = g_hash_val[k];
            break;
        }
        if (!g_hash_key[k]) {
            int j;
            for (j = 0; j < g_nslots; j++)
                if (strcmp(g_slots[j].name, name) == 0 && g_slots[j].cat == cat) break;
            if (j == g_nslots) {
                if (g_nslots == MAX_SLOTS) {
                    g_slot_overflow = 1;
                    break;
                }
                memset(&g_slots[j], 0, sizeof g_slots[j]);
                g_slots[j].name = name;
                g_slots[j].cat = cat;
                g_slots[j].order = -1;
#if NG_HAVE_NVTX
                pthread_once(&g_nvtx_once, nvtx_init);
                g_slots[j].handle = nvtxDomainRegisterStringA(g_domain, name);
#endif
                g_nslots++;
            }
            g_hash_key[k] = name;
            g_hash_val[k] = j;
            idx = j;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return idx;
}

/* ---- measurement state (owner thread) ------------------------------------------------------ */

#define EVENT_POOL 8192

typedef struct frame {
    int slot, timed, ev; /* ev: index of the start event, -1: host clock */
    double t0, flops, bcalls, dev[NG_DEV_COUNT];
} frame;

typedef struct pending { int slot, ev_start, ev_end; size_t trace; } pending;

typedef struct trace_rec {
    int slot, depth;
    double ts_us, dur_us, flops;
} trace_rec;

volatile int ng_profile_active_;
static int g_suspended; /* ng_profile_suspend nesting */
static int g_started, g_measure, g_capture, g_capture_on, g_starts, g_stops;
static uint64_t g_first, g_last, g_updates;
static pthread_t g_owner;
static ng_backend *g_be;
static int g_use_events;
static void *g_events[EVENT_POOL + 1]; /* [EVENT_POOL]: the origin */
static int g_nevents_made, g_ev_next, g_untimed;
static pending g_pending[EVENT_POOL];
static int g_npending;
static frame g_stack[MAX_DEPTH];
static int g_depth, g_depth_overflow;
static double g_origin_host;
static trace_rec *g_trace;
static size_t g_ntrace, g_max_trace, g_trace_dropped;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_owner(void) { return g_started && pthread_equal(pthread_self(), g_owner); }

static int in_window(uint64_t u) { return (g_first == 0 && g_last == 0) || (u >= g_first && u <= g_last); }

static void first_seen(int si, int depth) {
    if (g_slots[si].order < 0) {
        g_slots[si].order = g_norder++;
        g_slots[si].depth = depth;
    }
}

/* Resolve every pending event pair (the device has finished them after the synchronize). */
static void flush_events(void) {
    int i;
    if (!g_npending) return;
    if (ng_event_synchronize(g_be, g_events[g_pending[g_npending - 1].ev_end]) != NG_OK) g_untimed += g_npending;
    else
        for (i = 0; i < g_npending; i++) {
            const pending *p = &g_pending[i];
            float ms = 0.0f, off = 0.0f;
            if (ng_event_elapsed(g_be, g_events[p->ev_start], g_events[p->ev_end], &ms) != NG_OK) {
                g_untimed++;
                continue;
            }
            g_slots[p->slot].total_s += 1e-3 * (double)ms;
            if (p->trace != (size_t)-1 &&
                ng_event_elapsed(g_be, g_events[EVENT_POOL], g_events[p->ev_start], &off) == NG_OK) {
                g_trace[p->trace].ts_us = 1e3 * (double)off;
                g_trace[p->trace].dur_us = 1e3 * (double)ms;
            }
        }
    g_npending = 0;
    g_ev_next = 0;
}

static int take_event(void) {
    if (g_ev_next >= g_nevents_made) {
        if (g_nevents_made >= EVENT_POOL || ng_event_create(g_be, &g_events[g_nevents_made]) != NG_OK) return -1;
        g_nevents_made++;
    }
    if (ng_event_record(g_be, g_events[g_ev_next]) != NG_OK) return -1;
    return g_ev_next++;
}

static void measure_push(int si) {
    frame *f;
    if (g_depth >= MAX_DEPTH) {
        g_depth_overflow++;
        g_depth++;
        return;
    }
    f = &g_stack[g_depth];
    f->slot = si;
    f->timed = ng_profile_active_ && si >= 0;
    f->flops = f->bcalls = 0.0;
    memset(f->dev, 0, sizeof f->dev);
    f->ev = -1;
    if (f->timed) {
        first_seen(si, g_depth);
        if (g_use_events) f->ev = take_event();
        f->t0 = now_s();
    }
    g_depth++;
}

static void measure_pop(void) {
    frame *f;
    slot *sl;
    size_t tr = (size_t)-1;
    if (g_depth == 0) return; /* opened before ng_profile_start */
    g_depth--;
    if (g_depth >= MAX_DEPTH) return;
    f = &g_stack[g_depth];
    if (!f->timed) return;
    sl = &g_slots[f->slot];
    sl->calls++;
    sl->flops += f->flops;
    sl->bcalls += f->bcalls;
    {
        int k;
        for (k = 0; k < NG_DEV_COUNT; k++) sl->dev[k] += f->dev[k];
    }
    if (g_ntrace < g_max_trace) {
        tr = g_ntrace++;
        g_trace[tr].slot = f->slot;
        g_trace[tr].depth = g_depth;
        g_trace[tr].flops = f->flops;
        g_trace[tr].ts_us = g_trace[tr].dur_us = 0.0;
    } else
        g_trace_dropped++;
    if (g_use_events) {
        int e = f->ev >= 0 ? take_event() : -1;
        if (e < 0) {
            g_untimed++;
            if (tr != (size_t)-1) g_ntrace--;
        } else {
            g_pending[g_npending].slot = f->slot;
            g_pending[g_npending].ev_start = f->ev;
            g_pending[g_npending].ev_end = e;
            g_pending[g_npending].trace = tr;
            g_npending++;
        }
        if (g_depth == 0) flush_events();
    } else {
        double t1 = now_s();
        sl->total_s += t1 - f->t0;
        if (tr != (size_t)-1) {
            g_trace[tr].ts_us = 1e6 * (f->t0 - g_origin_host);
            g_trace[tr].dur_us = 1e6 * (t1 - f->t0);
        }
    }
}

static const char *const dev_call_names[NG_DEV_COUNT] = {"kernels", "cublas", "cusolver", "copies", "graphs"};
const char *ng_dev_call_name(ng_dev_call k) { return (unsigned)k < NG_DEV_COUNT ? dev_call_names[k] : "?"; }

void ng_profile_device_call_(ng_dev_call kind) {
    int i, n;
    if (!is_owner() || g_suspended || (unsigned)kind >= NG_DEV_COUNT) return;
    n = g_depth < MAX_DEPTH ? g_depth : MAX_DEPTH;
    for (i = 0; i < n; i++)
        if (g_stack[i].timed) g_stack[i].dev[kind] += 1.0;
}

void ng_profile_suspend(int on) {
    if (!is_owner()) return;
    if (on) g_suspended++;
    else if (g_suspended > 0) g_suspended--;
}

void ng_profile_count_(double flops, int calls) {
    int i, n;
    if (!is_owner() || g_suspended) return;
    n = g_depth < MAX_DEPTH ? g_depth : MAX_DEPTH;
    for (i = 0; i < n; i++)
        if (g_stack[i].timed) {
            g_stack[i].flops += flops;
            g_stack[i].bcalls += (double)calls;
        }
}

/* ---- ranges ---------------------------------------------------------------------------------- */

void ng_range_push_cat(ng_range_cat cat, const char *name) {
    int si;
    if (!NG_HAVE_NVTX && !g_started) return;
    if ((unsigned)cat >= NG_CAT_COUNT) cat = NG_CAT_OTHER;
    si = slot_of(cat, name ? name : "?");
#if NG_HAVE_NVTX
    {
        nvtxEventAttributes_t a;
        memset(&a, 0, sizeof a);
        a.version = NVTX_VERSION;
        a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
        a.category = (uint32_t)cat;
        a.colorType = NVTX_COLOR_ARGB;
        a.color = cat_colors[cat];
        if (si >= 0 && g_slots[si].handle) {
            a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
            a.message.registered = g_slots[si].handle;
        } else {
            a.messageType = NVTX_MESSAGE_TYPE_ASCII;
            a.message.ascii = name ? name : "?";
        }
        pthread_once(&g_nvtx_once, nvtx_init);
        nvtxDomainRangePushEx(g_domain, &a);
    }
#endif
    if (is_owner() && !g_suspended) measure_push(si);
}

void ng_range_push(const char *name) { ng_range_push_cat(NG_CAT_OTHER, name); }

void ng_range_pop(void) {
    if (!NG_HAVE_NVTX && !g_started) return;
#if NG_HAVE_NVTX
    pthread_once(&g_nvtx_once, nvtx_init);
    nvtxDomainRangePop(g_domain);
#endif
    if (is_owner() && !g_suspended) measure_pop();
}

/* ---- start, window, finish ------------------------------------------------------------------- */

ng_status ng_profile_parse_steps(const char *s, uint64_t *first, uint64_t *last) {
    char *end;
    unsigned long long a, b;
    if (!s || !*s) return ng_error(NG_ERR_INVALID_ARG, "--profile-steps: empty (expected A:B, e.g. 10:20)");
    errno = 0;
    a = strtoull(s, &end, 10);
    if (end == s || *end != ':' || errno || s[0] == '-')
        return ng_error(NG_ERR_INVALID_ARG, "--profile-steps '%s': expected A:B (first and last update, 1-based)", s);
    {
        const char *q = end + 1;
        b = strtoull(q, &end, 10);
        if (end == q || *end || errno || q[0] == '-')
            return ng_error(NG_ERR_INVALID_ARG, "--profile-steps '%s': expected A:B (first and last update, 1-based)", s);
    }
    if (a < 1 || b < a)
        return ng_error(NG_ERR_INVALID_ARG, "--profile-steps '%s': need 1 <= A <= B", s);
    *first = a;
    *last = b;
    return NG_OK;
}

static void capture(int on) {
    if (!g_capture || g_capture_on == on) return;
    /* the window starts and ends with the queue drained, so it holds exactly its updates */
    ng_synchronize(g_be);
#if defined(NG_HAVE_CUDA)
    if (on) cudaProfilerStart();
    else cudaProfilerStop();
#endif
    if (on) g_starts++;
    else g_stops++;
    g_capture_on = on;
}

void ng_profile_reset(void) {
    int i;
    pthread_mutex_lock(&g_lock);
    for (i = 0; i < g_nslots; i++) {
        g_slots[i].calls = 0;
        g_slots[i].total_s = g_slots[i].flops = g_slots[i].bcalls = 0.0;
        memset(g_slots[i].dev, 0, sizeof g_slots[i].dev);
        g_slots[i].order = -1;
    }
    g_norder = 0;
    pthread_mutex_unlock(&g_lock);
    g_updates = 0;
    g_ntrace = g_trace_dropped = 0;
    g_untimed = 0;
}

ng_status ng_profile_start(ng_backend *be, const ng_profile_config *cfg) {
    if (!be || !cfg) return ng_error(NG_ERR_INVALID_ARG, "profile: NULL backend or configuration");
    if ((cfg->first || cfg->last) && (cfg->first < 1 || cfg->last < cfg->first))
        return ng_error(NG_ERR_INVALID_ARG, "profile: window %llu:%llu (need 1 <= first <= last)",
                        (unsigned long long)cfg->first, (unsigned long long)cfg->last);
    if (g_started) NG_TRY(ng_profile_finish());
    ng_profile_reset();
    g_be = be;
    g_measure = cfg->measure;
    g_capture = cfg->capture && be->kind == NG_DEVICE_CUDA;
    g_capture_on = 0;
    g_starts = g_stops = 0;
    g_first = cfg->first;
    g_last = cfg->last;
    g_depth = g_depth_overflow = 0;
    g_suspended = 0;
    g_npending = g_ev_next = 0;
    g_use_events = g_measure && be->kind == NG_DEVICE_CUDA;
    g_max_trace = g_measure ? (cfg->max_trace ? cfg->max_trace : 200000) : 0;
    free(g_trace);
    g_trace = NULL;
    if (g_max_trace) {
        g_trace = (trace_rec *)malloc(g_max_trace * sizeof *g_trace);
        if (!g_trace) return ng_error(NG_ERR_OOM, "profile: no memory for %zu trace records", g_max_trace);
    }
    if (g_use_events) {
        if (!g_events[EVENT_POOL]) NG_TRY(ng_event_create(be, &g_events[EVENT_POOL]));
        NG_TRY(ng_event_record(be, g_events[EVENT_POOL]));
    }
    g_origin_host = now_s();
    g_owner = pthread_self();
    g_started = 1;
    ng_profile_active_ = g_measure && g_first == 0;
    return NG_OK;
}

void ng_profile_update(uint64_t u, int begin) {
    if (!is_owner()) return;
    if (begin) {
        if (!in_window(u)) return;
        if (g_first && u == g_first) capture(1);
        if (g_measure) ng_profile_active_ = 1;
        return;
    }
    if (g_measure && in_window(u)) g_updates++;
    if (g_first && u == g_last) {
        if (g_use_events) flush_events();
        ng_profile_active_ = 0;
        capture(0);
    }
}

ng_status ng_profile_finish(void) {
    int i;
    if (!g_started || !is_owner()) return NG_OK;
    if (g_use_events) flush_events();
    capture(0);
    ng_profile_active_ = 0;
    g_started = 0;
    /* the events belong to this backend: release them while it exists (a later profile may use
     * another backend) */
    for (i = 0; i < g_nevents_made; i++) ng_event_destroy(g_be, g_events[i]);
    if (g_events[EVENT_POOL]) ng_event_destroy(g_be, g_events[EVENT_POOL]);
    memset(g_events, 0, sizeof g_events);
    g_nevents_made = g_ev_next = 0;
    return NG_OK;
}

uint64_t ng_profile_updates(void) { return g_updates; }
int ng_profile_device_timed(void) { return g_use_events; }
void ng_profile_capture_counts(int *starts, int *stops) {
    if (starts) *starts = g_starts;
    if (stops) *stops = g_stops;
}

/* ---- reports --------------------------------------------------------------------------------- */

int ng_profile_rows(ng_profile_row *rows, int max) {
    int i, n = 0;
    pthread_mutex_lock(&g_lock);
    for (i = 0; i < g_nslots; i++) {
        const slot *s = &g_slots[i];
        ng_profile_row r;
        if (s->order < 0) continue;
        r.name = s->name;
        r.cat = s->cat;
        r.depth = s->depth;
        r.calls = s->calls;
        r.total_s = s->total_s;
        r.flops = s->flops;
        r.backend_calls = s->bcalls;
        memcpy(r.device_calls, s->dev, sizeof r.device_calls);
        if (s->order < max) rows[s->order] = r;
        n++;
    }
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* growing text buffer */
typedef struct tbuf { char *p; size_t n, cap; int oom; } tbuf;
static void tprintf(tbuf *b, const char *fmt, ...) {
    va_list ap;
    int k;
    if (b->oom) return;
    for (;;) {
        va_start(ap, fmt);
        k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        {
            size_t nc = (b->cap ? 2 * b->cap : 4096) + (size_t)k;
            char *np = (char *)realloc(b->p, nc);
            if (!np) {
                b->oom = 1;
                return;
            }
            b->p = np;
            b->cap = nc;
        }
    }
}

static double step_total(const ng_profile_row *rows, int n) {
    int i;
    double t = 0.0;
    for (i = 0; i < n; i++)
        if (rows[i].cat == NG_CAT_STEP) t += rows[i].total_s;
    return t;
}

static ng_status get_rows(ng_profile_row **rows, int *n) {
    int k = ng_profile_rows(NULL, 0);
    *rows = (ng_profile_row *)calloc((size_t)(k ? k : 1), sizeof **rows);
    if (!*rows) return ng_error(NG_ERR_OOM, "profile: out of memory");
    *n = ng_profile_rows(*rows, k);
    if (*n > k) *n = k;
    return NG_OK;
}

ng_status ng_profile_table(char **text) {
    ng_profile_row *rows;
    ng_profile_mem_row mem[256];
    tbuf b = {0};
    int i, n, nm, dev_any;
    double st;
    NG_TRY(get_rows(&rows, &n));
    st = step_total(rows, n);
    tprintf(&b, "natgrad profile: %llu updates measured; times from %s%s\n",
            (unsigned long long)g_updates, g_use_events ? "CUDA events on the backend's stream" : "the host's monotonic clock",
            g_use_events ? "" : " (the CPU backend runs synchronously)");
    dev_any = 0;
    for (i = 0; i < n; i++) {
        int k;
        for (k = 0; k < NG_DEV_COUNT; k++)
            if (rows[i].device_calls[k] > 0.0) dev_any = 1;
    }
    tprintf(&b, "%-34s %-10s %9s %11s %11s %7s %9s %11s", "range", "category", "calls", "total s",
            "mean ms", "% step", "GFLOP/s", "calls/range");
    if (dev_any) tprintf(&b, " %9s %8s %8s %8s %7s", "kernels", "cuBLAS", "cuSOLVER", "copies", "graphs");
    tprintf(&b, "\n");
    for (i = 0; i < n; i++) {
        const ng_profile_row *r = &rows[i];
        char name[64], gf[32];
        int d = r->depth < 8 ? r->depth : 8;
        snprintf(name, sizeof name, "%*s%s", 2 * d, "", r->name);
        if (r->flops > 0.0 && r->total_s > 0.0) snprintf(gf, sizeof gf, "%.1f", r->flops / r->total_s * 1e-9);
        else snprintf(gf, sizeof gf, "-");
        tprintf(&b, "%-34s %-10s %9llu %11.4f %11.4f %7.1f %9s %11.1f", name, ng_range_cat_name(r->cat),
                (unsigned long long)r->calls, r->total_s, r->calls ? 1e3 * r->total_s / (double)r->calls : 0.0,
                st > 0.0 ? 100.0 * r->total_s / st : 0.0, gf,
                r->calls ? r->backend_calls / (double)r->calls : 0.0);
        if (dev_any) {
            double c = r->calls ? (double)r->calls : 1.0;
            tprintf(&b, " %9.1f %8.1f %8.1f %8.1f %7.1f", r->device_calls[NG_DEV_KERNEL] / c, r->device_calls[NG_DEV_BLAS] / c,
                    r->device_calls[NG_DEV_SOLVER] / c, r->device_calls[NG_DEV_COPY] / c, r->device_calls[NG_DEV_GRAPH] / c);
        }
        tprintf(&b, "\n");
    }
    if (!n) tprintf(&b, "(no range was measured)\n");
    for (i = 0; i < n; i++)
        if (rows[i].cat == NG_CAT_STEP && rows[i].calls) {
            tprintf(&b, "per update: %.3f ms, %.1f backend calls (%s)\n", 1e3 * rows[i].total_s / (double)rows[i].calls,
                    rows[i].backend_calls / (double)rows[i].calls,
                    g_use_events ? "kernel launches and cuBLAS/cuSOLVER calls" : "BLAS/LAPACK calls and elementwise ops");
            if (dev_any) {
                double c = (double)rows[i].calls;
                tprintf(&b, "per update on the device: %.1f kernel launches, %.1f cuBLAS calls, %.1f cuSOLVER calls, "
                        "%.1f copies/memsets, %.1f graph launches\n",
                        rows[i].device_calls[NG_DEV_KERNEL] / c, rows[i].device_calls[NG_DEV_BLAS] / c,
                        rows[i].device_calls[NG_DEV_SOLVER] / c, rows[i].device_calls[NG_DEV_COPY] / c,
                        rows[i].device_calls[NG_DEV_GRAPH] / c);
            }
            break;
        }
    if (g_untimed) tprintf(&b, "note: %d ranges were counted but not timed (event pool full or event error)\n", g_untimed);
    if (g_trace_dropped) tprintf(&b, "note: %zu ranges beyond the trace's capacity are in the table but not in the trace\n", g_trace_dropped);
    if (g_slot_overflow) tprintf(&b, "note: more than %d range names; the rest were not measured\n", MAX_SLOTS);
    nm = ng_profile_memory_rows(mem, 256);
    if (nm > 256) nm = 256;
    tprintf(&b, "\ndevice memory by arena (live now / peak of the role):\n");
    tprintf(&b, "%-34s %-8s %6s %12s %12s\n", "arena", "device", "allocs", "live MiB", "peak MiB");
    for (i = 0; i < nm; i++)
        tprintf(&b, "%-34s %-8s %6d %12.3f %12.3f\n", mem[i].role, mem[i].dev, mem[i].allocations,
                (double)mem[i].current / 1048576.0, (double)mem[i].peak / 1048576.0);
    {
        const char *seen[16];
        int ns = 0, j;
        for (i = 0; i < nm; i++) {
            for (j = 0; j < ns; j++)
                if (strcmp(seen[j], mem[i].dev) == 0) break;
            if (j < ns || ns == 16) continue;
            seen[ns++] = mem[i].dev;
            tprintf(&b, "peak of all arenas on %s: %.3f MiB\n", mem[i].dev,
                    (double)ng_profile_memory_peak(mem[i].dev) / 1048576.0);
        }
    }
    free(rows);
    if (b.oom) {
        free(b.p);
        return ng_error(NG_ERR_OOM, "profile: out of memory formatting the table");
    }
    *text = b.p;
    return NG_OK;
}

static ng_status write_text(const char *path, const tbuf *b) {
    FILE *f;
    if (b->oom) return ng_error(NG_ERR_OOM, "profile: out of memory writing %s", path);
    f = fopen(path, "w");
    if (!f) return ng_error(NG_ERR_IO, "profile: cannot write %s: %s", path, strerror(errno));
    if ((b->n && fwrite(b->p, 1, b->n, f) != b->n) || fclose(f) != 0) {
        int e = errno;
        return ng_error(NG_ERR_IO, "profile: writing %s failed: %s", path, strerror(e));
    }
    return NG_OK;
}

ng_status ng_profile_write_csv(const char *path) {
    ng_profile_row *rows;
    tbuf b = {0};
    int i, n;
    double st;
    ng_status s;
    NG_TRY(get_rows(&rows, &n));
    st = step_total(rows, n);
    tprintf(&b, "range,category,depth,calls,total_s,mean_s,share_of_step,flops,gflops_per_s,backend_calls_per_call,"
            "kernels_per_call,cublas_per_call,cusolver_per_call,copies_per_call,graphs_per_call\n");
    for (i = 0; i < n; i++) {
        const ng_profile_row *r = &rows[i];
        double c = r->calls ? (double)r->calls : 1.0;
        tprintf(&b, "\"%s\",%s,%d,%llu,%.9g,%.9g,%.6g,%.9g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", r->name,
                ng_range_cat_name(r->cat), r->depth,
                (unsigned long long)r->calls, r->total_s, r->calls ? r->total_s / (double)r->calls : 0.0,
                st > 0.0 ? r->total_s / st : 0.0, r->flops,
                r->total_s > 0.0 ? r->flops / r->total_s * 1e-9 : 0.0,
                r->calls ? r->backend_calls / (double)r->calls : 0.0, r->device_calls[NG_DEV_KERNEL] / c,
                r->device_calls[NG_DEV_BLAS] / c, r->device_calls[NG_DEV_SOLVER] / c, r->device_calls[NG_DEV_COPY] / c,
                r->device_calls[NG_DEV_GRAPH] / c);
    }
    free(rows);
    s = write_text(path, &b);
    free(b.p);
    return s;
}

/* JSON string body: escapes quotes, backslashes and control characters */
static void json_str(tbuf *b, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') tprintf(b, "\\%c", c);
        else if (c < 0x20) tprintf(b, "\\u%04x", c);
        else tprintf(b, "%c", c);
    }
}

ng_status ng_profile_write_trace(const char *path) {
    tbuf b = {0};
    size_t i;
    ng_status s;
    const char *dev = g_use_events ? "device stream (CUDA events)" : "host (CPU backend)";
    tprintf(&b, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"producer\":\"natgrad\",\"timing\":\"%s\","
                "\"dropped\":%zu},\n\"traceEvents\":[\n",
            g_use_events ? "cuda-events" : "monotonic-clock", g_trace_dropped);
    tprintf(&b, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":1,\"args\":{\"name\":\"natgrad\"}},\n");
    tprintf(&b, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":1,\"args\":{\"name\":\"%s\"}}", dev);
    for (i = 0; i < g_ntrace; i++) {
        const trace_rec *r = &g_trace[i];
        tprintf(&b, ",\n{\"name\":\"");
        json_str(&b, g_slots[r->slot].name);
        tprintf(&b, "\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":1,\"tid\":1,\"ts\":%.3f,\"dur\":%.3f", 
                ng_range_cat_name(g_slots[r->slot].cat), r->ts_us, r->dur_us);
        if (r->flops > 0.0) tprintf(&b, ",\"args\":{\"gflop\":%.6g}", r->flops * 1e-9);
        tprintf(&b, "}");
    }
    tprintf(&b, "\n]}\n");
    s = write_text(path, &b);
    free(b.p);
    return s;
}

/* ---- memory ---------------------------------------------------------------------------------- */

#define MAX_MEM 256
#define MAX_DEV 16
static struct {
    char role[64], dev[16];
    long long current, peak;
    int allocs;
} g_mem[MAX_MEM];
static int g_nmem;
static struct {
    char dev[16];
    long long current, peak;
} g_dev[MAX_DEV];
static int g_ndev;

void ng_profile_memory(const char *role, const char *dev, long long bytes) {
    int i;
    if (!role) role = "arena";
    if (!dev) dev = "?";
    pthread_mutex_lock(&g_lock);
    for (i = 0; i < g_nmem; i++)
        if (strcmp(g_mem[i].role, role) == 0 && strcmp(g_mem[i].dev, dev) == 0) break;
    if (i == g_nmem && g_nmem < MAX_MEM && bytes > 0) {
        snprintf(g_mem[i].role, sizeof g_mem[i].role, "%s", role);
        snprintf(g_mem[i].dev, sizeof g_mem[i].dev, "%s", dev);
        g_mem[i].current = g_mem[i].peak = 0;
        g_mem[i].allocs = 0;
        g_nmem++;
    }
    if (i < g_nmem) {
        g_mem[i].current += bytes;
        g_mem[i].allocs += bytes > 0 ? 1 : -1;
        if (g_mem[i].current > g_mem[i].peak) g_mem[i].peak = g_mem[i].current;
    }
    for (i = 0; i < g_ndev; i++)
        if (strcmp(g_dev[i].dev, dev) == 0) break;
    if (i == g_ndev && g_ndev < MAX_DEV) {
        snprintf(g_dev[i].dev, sizeof g_dev[i].dev, "%s", dev);
        g_dev[i].current = g_dev[i].peak = 0;
        g_ndev++;
    }
    if (i < g_ndev) {
        g_dev[i].current += bytes;
        if (g_dev[i].current > g_dev[i].peak) g_dev[i].peak = g_dev[i].current;
    }
    pthread_mutex_unlock(&g_lock);
}

int ng_profile_memory_rows(ng_profile_mem_row *rows, int max) {
    int i;
    pthread_mutex_lock(&g_lock);
    for (i = 0; i < g_nmem && i < max; i++) {
        rows[i].role = g_mem[i].role;
        rows[i].dev = g_mem[i].dev;
        rows[i].current = g_mem[i].current;
        rows[i].peak = g_mem[i].peak;
        rows[i].allocations = g_mem[i].allocs;
    }
    i = g_nmem;
    pthread_mutex_unlock(&g_lock);
    return i;
}

long long ng_profile_memory_peak(const char *dev) {
    int i;
    long long p = 0;
    pthread_mutex_lock(&g_lock);
    for (i = 0; i < g_ndev; i++)
        if (strcmp(g_dev[i].dev, dev) == 0) p = g_dev[i].peak;
    pthread_mutex_unlock(&g_lock);
    return p;
}
