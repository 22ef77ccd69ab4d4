/* simt_runtime.cpp: the SIMT emulator's launch machinery (test-only).
 * A launch validates its configuration like the CUDA runtime (a bad one, or a stream of another
 * device than the current one, sets the error that cudaGetLastError returns and runs nothing),
 * rewrites the kernel's device-pointer arguments to the device view of their buffers
 * (simt_memory.cpp; memory of another device than the launch's aborts with a report), then runs
 * the blocks. A block's threads run as cooperative fibers on one OS thread:
 *   - a fiber takes the next thread that has not started and runs it; when that thread returns
 *     without waiting, the same fiber goes straight on to the next thread, so kernels without
 *     barriers or warp operations run with no context switch per thread;
 *   - a thread that reaches __syncthreads or a warp operation parks its fiber and switches
 *     straight to the next thread to run (a released one, else a fresh fiber for the next thread
 *     not started); the last thread to arrive releases the others, which resume in arrival order;
 *   - warp operations meet in a per-warp mailbox: each lane posts its value, the last lane to
 *     arrive computes every lane's result, so a lane that races ahead cannot clobber them.
 * Waits that can never be released (divergent barriers, mismatched warp operations) are reported.
 * Faults inside a launch (guard pages of device buffers, dynamic shared memory, fiber stacks) are
 * reported with the kernel, block and thread, then the process aborts.
 * Large grids are shared among helper OS threads (NG_SIMT_THREADS in all, default the CPU count,
 * at most 8): each takes whole blocks, so a block's threads still share one OS thread, and its
 * __shared__ variables (thread_local statics) and dynamic shared memory (one buffer per OS thread).
 * Fibers switch with a few lines of x86-64 assembly (no signal-mask system call per switch);
 * other targets, or -DNG_SIMT_UCONTEXT, use ucontext. Launches are serialised process-wide.
 * Must not: run two blocks on one OS thread at once. */
#include "simt.h"
#include "simt_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

/* Under valgrind, fiber stacks must be registered or accesses near them are misreported. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef VALGRIND_STACK_REGISTER
#define VALGRIND_STACK_REGISTER(lo, hi) 0
#endif

#if defined(__x86_64__) && !defined(NG_SIMT_UCONTEXT)
#define NG_SIMT_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

__thread uint3 threadIdx, blockIdx, blockDim, gridDim;

#if defined(NG_SIMT_ASM_SWITCH)
/* ng_simt_ctx_switch(save, load): push the callee-saved registers, store the stack pointer in
 * *save, load `load` and pop the same from there. The SSE and x87 control words are not switched:
 * every fiber runs with the launching thread's (kernels cannot change rounding modes). A fresh
 * stack is laid out by fiber_prepare so that its first switch "returns" into ng_simt_ctx_start,
 * which calls the function in r13. */
extern "C" void ng_simt_ctx_switch(void **save, void *load);
extern "C" void ng_simt_ctx_start(void);
__asm__(".text\n"
        ".globl ng_simt_ctx_switch\n"
        ".type ng_simt_ctx_switch,@function\n"
        ".p2align 4\n"
        "ng_simt_ctx_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size ng_simt_ctx_switch, .-ng_simt_ctx_switch\n"
        ".globl ng_simt_ctx_start\n"
        ".type ng_simt_ctx_start,@function\n"
        ".p2align 4\n"
        "ng_simt_ctx_start:\n"
        "  movq %r12, %rdi\n"
        "  callq *%r13\n"
        "  ud2\n"
        ".size ng_simt_ctx_start, .-ng_simt_ctx_start\n");
#endif

namespace ng_simt {

__thread unsigned char *dyn_smem;

namespace {

/* ---- errors ------------------------------------------------------------------------------ */
__thread cudaError_t last_error = cudaSuccess;

/* ---- fibers ------------------------------------------------------------------------------ */
struct fiber {
#if defined(NG_SIMT_ASM_SWITCH)
    void *sp;
#else
    ucontext_t uc;
#endif
    char *map; /* guard page + stack */
    size_t map_len;
};

enum { ST_NEW, ST_RUN, ST_BAR, ST_WARP, ST_DONE };

struct warp_box {
    uint64_t val[32];
    uint64_t res[32];
    int arg[32];
    int width[32];
    unsigned arrived; /* lanes waiting in the current operation */
    unsigned done;    /* lanes whose thread has returned */
    unsigned mask;
    int kind;
};

struct sched {
    /* current launch */
    const launch_req *req;
    bool in_launch;
    unsigned n;
    unsigned next_new, done, at_barrier;
    long cur_thread;
    const uint3 *tidx; /* threadIdx of each linear thread id (shared by the launch) */
    std::vector<unsigned char> st;
    std::vector<fiber *> fib;
    std::vector<unsigned> runq;
    size_t rq_head;
    std::vector<unsigned> bar_wait; /* threads parked at __syncthreads, in arrival order */
    std::vector<warp_box> warps;
    /* fibers */
    fiber *cur; /* running now */
    fiber main; /* the launching context (no stack of its own) */
    std::vector<fiber *> pool;
    std::vector<fiber *> all;
    size_t stack_bytes;
    /* dynamic shared memory: [pages][guard page]; dyn_smem ends at smem_end */
    unsigned char *smem_map;
    size_t smem_map_len;
    unsigned char *smem_end;
    char *alt_stack; /* for the fault handler (a fiber stack may have overflowed) */
};

__thread sched *tls_sched;
std::mutex launch_mu;
std::mutex attr_mu;
std::map<const void *, size_t> dyn_smem_optin;

size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

sched *get_sched() {
    if (tls_sched) return tls_sched;
    sched *s = new sched();
    size_t pg = page_size();
    const char *e = getenv("NG_SIMT_STACK_KB");
    long kb = e ? atol(e) : 64;
    if (kb < 16) kb = 16;
    s->stack_bytes = ((size_t)kb * 1024 + pg - 1) / pg * pg;
    s->smem_map_len = ((size_t)SHARED_PER_BLOCK_OPTIN + pg - 1) / pg * pg + pg;
    s->smem_map = (unsigned char *)mmap(NULL, s->smem_map_len, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->smem_map == MAP_FAILED) fatal("cannot map dynamic shared memory: %s", strerror(errno));
    s->smem_end = s->smem_map + s->smem_map_len - pg;
    mprotect(s->smem_end, pg, PROT_NONE);
    s->alt_stack = (char *)malloc(64 * 1024);
    stack_t ss;
    ss.ss_sp = s->alt_stack;
    ss.ss_size = 64 * 1024;
    ss.ss_flags = 0;
    sigaltstack(&ss, NULL);
    tls_sched = s;
    return s;
}

void fiber_main_loop();

#if defined(NG_SIMT_ASM_SWITCH)
extern "C" void ng_simt_fiber_entry(void *) { fiber_main_loop(); }

/* The stack top is staggered by 64 * (index % 64) bytes: with every top at the same page offset
 * the hot frames of all fibers would compete for the same cache sets. After the six pops and the
 * `ret` the stack pointer is 16-byte aligned, as a call into ng_simt_fiber_entry needs. */
void fiber_prepare(fiber *f, size_t index) {
    uintptr_t top = ((uintptr_t)f->map + f->map_len - 64u * (index % 64u)) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 72);             /* sp + 56 = top - 16 after the ret */
    sp[0] = 0;                                         /* r15 */
    sp[1] = 0;                                         /* r14 */
    sp[2] = (uint64_t)(uintptr_t)&ng_simt_fiber_entry; /* r13: function */
    sp[3] = 0;                                         /* r12: its argument */
    sp[4] = 0;                                         /* rbx */
    sp[5] = 0;                                         /* rbp */
    sp[6] = (uint64_t)(uintptr_t)&ng_simt_ctx_start;   /* return address */
    f->sp = sp;
}
inline void switch_fiber(fiber *from, fiber *to) { ng_simt_ctx_switch(&from->sp, to->sp); }
#else
void fiber_entry_uc() { fiber_main_loop(); }
void fiber_prepare(fiber *f, size_t index) {
    size_t pg = page_size();
    (void)index;
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->map + pg;
    f->uc.uc_stack.ss_size = f->map_len - pg;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, fiber_entry_uc, 0);
}
inline void switch_fiber(fiber *from, fiber *to) { swapcontext(&from->uc, &to->uc); }
#endif

fiber *pool_get(sched *s) {
    if (!s->pool.empty()) {
        fiber *f = s->pool.back();
        s->pool.pop_back();
        return f;
    }
    fiber *f = new fiber();
    size_t pg = page_size();
    f->map_len = s->stack_bytes + pg;
    f->map =
        (char *)mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (f->map == MAP_FAILED) fatal("cannot map a fiber stack: %s", strerror(errno));
    mprotect(f->map, pg, PROT_NONE); /* stacks grow down: the guard is the lowest page */
    (void)VALGRIND_STACK_REGISTER(f->map + pg, f->map + f->map_len);
    fiber_prepare(f, s->all.size());
    s->all.push_back(f);
    return f;
}

void set_thread(sched *s, unsigned t) {
    s->cur_thread = t;
    threadIdx = s->tidx[t];
}

const char *kind_name(int k) {
    switch (k) {
    case WARP_SHFL_IDX: return "__shfl_sync";
    case WARP_SHFL_UP: return "__shfl_up_sync";
    case WARP_SHFL_DOWN: return "__shfl_down_sync";
    case WARP_SHFL_XOR: return "__shfl_xor_sync";
    case WARP_BALLOT: return "__ballot_sync";
    default: return "__syncwarp";
    }
}

void push_run(sched *s, unsigned t) { s->runq.push_back(t); }

void release_barrier(sched *s, long self) {
    for (unsigned u : s->bar_wait) {
        s->st[u] = ST_RUN;
        if ((long)u != self) push_run(s, u);
    }
    s->bar_wait.clear();
    s->at_barrier = 0;
}

unsigned warp_lanes(sched *s, unsigned w) {
    unsigned first = w * 32u, cnt = s->n - first;
    return cnt >= 32u ? 0xFFFFFFFFu : ((1u << cnt) - 1u);
}

bool warp_ready(sched *s, unsigned w) {
    warp_box &b = s->warps[w];
    unsigned need = b.mask & warp_lanes(s, w) & ~b.done;
    return b.arrived != 0u && (b.arrived & need) == need;
}

/* Compute every waiting lane's result; wake all of them except `self` (which carries on). */
void complete_warp(sched *s, unsigned w, long self) {
    warp_box &b = s->warps[w];
    unsigned have = b.arrived;
    uint64_t ballot = 0;
    if (b.kind == WARP_BALLOT)
        for (unsigned l = 0; l < 32u; l++)
            if (((have >> l) & 1u) && b.val[l] != 0u) ballot |= (uint64_t)1u << l;
    for (unsigned l = 0; l < 32u; l++) {
        if (!((have >> l) & 1u)) continue;
        long src = (long)l;
        unsigned wd = (unsigned)b.width[l];
        long a = (long)b.arg[l];
        switch (b.kind) {
        case WARP_SHFL_IDX: src = (long)(l & ~(wd - 1u)) + (long)((unsigned)a & (wd - 1u)); break;
        case WARP_SHFL_UP:
            if ((unsigned long)(l & (wd - 1u)) >= (unsigned long)(unsigned)a)
                src = (long)l - (long)(unsigned)a;
            break;
        case WARP_SHFL_DOWN:
            if ((unsigned long)(l & (wd - 1u)) + (unsigned long)(unsigned)a < wd)
                src = (long)l + (long)(unsigned)a;
            break;
        case WARP_SHFL_XOR: {
            long x = (long)(l ^ (unsigned)a);
            if (x >= 0 && x < 32 && (unsigned long)x < (unsigned long)((l / wd) + 1u) * wd) src = x;
            break;
        }
        default: break;
        }
        if (b.kind == WARP_BALLOT)
            b.res[l] = ballot;
        else if (b.kind == WARP_SYNC)
            b.res[l] = 0;
        else
            b.res[l] = ((have >> src) & 1u) ? b.val[src] : ~(uint64_t)0; /* absent lane: poison */
    }
    for (unsigned l = 0; l < 32u; l++) {
        if (!((have >> l) & 1u)) continue;
        unsigned t = w * 32u + l;
        s->st[t] = ST_RUN;
        if ((long)t != self) push_run(s, t);
    }
    b.arrived = 0;
}

void thread_exit(sched *s, unsigned t) {
    unsigned w = t / 32u;
    s->st[t] = ST_DONE;
    s->done++;
    s->warps[w].done |= 1u << (t % 32u);
    if (s->at_barrier > 0 && s->at_barrier == s->n - s->done) release_barrier(s, -1);
    if (warp_ready(s, w)) complete_warp(s, w, -1);
}

/* Hand the OS thread to what runs next: a released thread, else a fiber for the next thread not
 * yet started, else the launching context (the block is finished, or nothing can run: deadlock).
 * `me` is the running fiber; it resumes when something switches back to it. */
void run_next(sched *s, fiber *me) {
    fiber *next;
    if (s->rq_head < s->runq.size()) {
        unsigned t = s->runq[s->rq_head++];
        if (s->rq_head == s->runq.size()) {
            s->runq.clear();
            s->rq_head = 0;
        }
        next = s->fib[t];
        set_thread(s, t);
    } else if (s->next_new < s->n) {
        next = pool_get(s);
    } else {
        next = &s->main;
    }
    s->cur = next;
    if (next != me) switch_fiber(me, next);
}

/* Body of every fiber: run threads that have not started, one after another, until one parks it
 * (it resumes inside that thread) or none is left (it joins the pool and passes the OS thread on;
 * when taken from the pool again it carries on here). */
void fiber_main_loop() {
    sched *s = tls_sched;
    for (;;) {
        fiber *f = s->cur;
        while (s->next_new < s->n) {
            unsigned t = s->next_new++;
            s->fib[t] = f;
            s->st[t] = ST_RUN;
            set_thread(s, t);
            s->req->body(s->req->ctx);
            thread_exit(s, t);
        }
        s->pool.push_back(f);
        run_next(s, f);
    }
}

[[noreturn]] void deadlock(sched *s) {
    char bar[512] = "", warp[512] = "";
    size_t nb = 0, nw = 0;
    for (unsigned t = 0; t < s->n; t++) {
        if (s->st[t] == ST_BAR && nb < sizeof bar - 16)
            nb += (size_t)snprintf(bar + nb, sizeof bar - nb, " %u", t);
        if (s->st[t] == ST_WARP && nw < sizeof warp - 16)
            nw += (size_t)snprintf(warp + nw, sizeof warp - nw, " %u", t);
    }
    fatal("deadlock: no thread can go on; threads waiting at __syncthreads:%s; threads waiting in "
          "warp operations:%s (divergent barrier or warp operation)",
          nb ? bar : " none", nw ? warp : " none");
}

void run_block(sched *s) {
    s->next_new = 0;
    s->done = 0;
    s->at_barrier = 0;
    s->bar_wait.clear();
    s->runq.clear();
    s->rq_head = 0;
    for (unsigned t = 0; t < s->n; t++) s->st[t] = ST_NEW;
    for (auto &w : s->warps) {
        w.arrived = 0;
        w.done = 0;
    }
    s->cur = &s->main;
    run_next(s, &s->main); /* comes back when the block has finished or is stuck */
    if (s->done != s->n) deadlock(s);
}

/* ---- faults ------------------------------------------------------------------------------- */
/* The handler stays installed once a launch has put it there; outside launches it hands the
 * signal to whatever handler it replaced (the default one: the process dies as it would have). */
struct sigaction prev_segv, prev_bus;

void on_fault(int sig, siginfo_t *si, void *uctx) {
    sched *s = tls_sched;
    const void *addr = si->si_addr;
    if (!s || !s->in_launch) {
        struct sigaction *old = sig == SIGBUS ? &prev_bus : &prev_segv;
        if (old->sa_flags & SA_SIGINFO) {
            old->sa_sigaction(sig, si, uctx);
        } else if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
            sigaction(sig, old, NULL); /* the access faults again, now with the old disposition */
            if (old->sa_handler == SIG_IGN) signal(sig, SIG_DFL);
        } else {
            old->sa_handler(sig);
        }
        return;
    }
    if (dev_fault_open(addr)) return; /* an untranslated device pointer: retry on the host view */
    char what[320], msg[900];
    what[0] = 0;
    size_t pg = page_size();
    for (fiber *f : s->all)
        if ((const char *)addr >= f->map && (const char *)addr < f->map + pg) {
            snprintf(what, sizeof what,
                     "stack overflow of the emulated thread (fiber stacks are %zu KiB; raise "
                     "NG_SIMT_STACK_KB)",
                     s->stack_bytes / 1024);
            break;
        }
    if (!what[0] && (const unsigned char *)addr >= s->smem_end &&
        (const unsigned char *)addr < s->smem_end + pg)
        snprintf(what, sizeof what, "past the end of dynamic shared memory (%zu bytes requested)",
                 s->req ? s->req->shmem : (size_t)0);
    if (!what[0]) dev_describe(addr, what, sizeof what);
    snprintf(
        msg, sizeof msg,
        "simt: %s in kernel %s, block (%u,%u,%u), thread (%u,%u,%u): invalid access at %p: %s\n",
        sig == SIGBUS ? "SIGBUS" : "SIGSEGV", s->req ? s->req->name : "?", blockIdx.x, blockIdx.y,
        blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, addr, what);
    if (write(2, msg, strlen(msg)) < 0) msg[0] = 0;
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* (Re)install the handler if someone replaced it since the last launch. */
void ensure_fault_handler() {
    struct sigaction cur, sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, NULL, &cur);
    if (!(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != on_fault)
        sigaction(SIGSEGV, &sa, &prev_segv);
    sigaction(SIGBUS, NULL, &cur);
    if (!(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != on_fault)
        sigaction(SIGBUS, &sa, &prev_bus);
}

sched *running_block(const char *what) {
    sched *s = tls_sched;
    if (!s || !s->in_launch) fatal("%s called outside a kernel", what);
    return s;
}

} /* namespace */

/* ---- errors ------------------------------------------------------------------------------- */
cudaError_t set_error(cudaError_t err) {
    if (err != cudaSuccess) last_error = err;
    return err;
}
cudaError_t take_error(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t peek_error(void) { return last_error; }

void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("simt: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void fatal(const char *fmt, ...) {
    va_list ap;
    sched *s = tls_sched;
    va_start(ap, fmt);
    fputs("simt: ", stderr);
    if (s && s->in_launch)
        fprintf(stderr, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): ", s->req->name,
                blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

size_t kernel_dyn_smem_limit(const void *func) {
    std::lock_guard<std::mutex> lock(attr_mu);
    auto it = dyn_smem_optin.find(func);
    return it == dyn_smem_optin.end() ? (size_t)SHARED_PER_BLOCK : it->second;
}

cudaError_t kernel_set_dyn_smem_limit(const void *func, int bytes) {
    if (func == NULL || bytes < 0 || bytes > SHARED_PER_BLOCK_OPTIN) return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> lock(attr_mu);
    dyn_smem_optin[func] = bytes < SHARED_PER_BLOCK ? (size_t)SHARED_PER_BLOCK : (size_t)bytes;
    return cudaSuccess;
}

/* ---- grids ----------------------------------------------------------------------------------- */
/* One launch's shared description; every OS thread that helps takes blocks from `next`. */
struct grid_run {
    const launch_req *req;
    std::vector<uint3> tidx;
    unsigned n;
    unsigned long long nblocks;
    std::atomic<unsigned long long> next;
};

/* Run blocks of g until none is left, on the calling OS thread. */
void run_blocks(grid_run *g) {
    sched *s = get_sched();
    const launch_req &r = *g->req;
    s->req = &r;
    s->n = g->n;
    s->tidx = g->tidx.data();
    s->st.assign(s->n, ST_NEW);
    s->fib.assign(s->n, NULL);
    s->warps.assign((s->n + 31u) / 32u, warp_box());
    gridDim.x = r.grid.x;
    gridDim.y = r.grid.y;
    gridDim.z = r.grid.z;
    blockDim.x = r.block.x;
    blockDim.y = r.block.y;
    blockDim.z = r.block.z;
    dyn_smem = s->smem_end - ((r.shmem + 15u) & ~(size_t)15u);
    s->in_launch = true;
    for (;;) {
        unsigned long long b = g->next.fetch_add(1, std::memory_order_relaxed);
        if (b >= g->nblocks) break;
        blockIdx.x = (unsigned)(b % r.grid.x);
        blockIdx.y = (unsigned)((b / r.grid.x) % r.grid.y);
        blockIdx.z = (unsigned)(b / ((unsigned long long)r.grid.x * r.grid.y));
        if (r.shmem) memset(dyn_smem, 0xFF, r.shmem);
        run_block(s);
    }
    s->in_launch = false;
    s->req = NULL;
}

/* Helper OS threads for large grids. They wait for a new generation, run blocks, report done. */
struct workers {
    std::mutex m;
    std::condition_variable go, finished;
    unsigned long gen;
    grid_run *job;
    int busy;
    int count;
};
workers *pool_of_workers;
std::once_flag atfork_once;

void worker_main(workers *w) {
    unsigned long seen = 0;
    for (;;) {
        grid_run *g;
        {
            std::unique_lock<std::mutex> l(w->m);
            w->go.wait(l, [&] { return w->gen != seen; });
            seen = w->gen;
            g = w->job;
        }
        run_blocks(g);
        std::lock_guard<std::mutex> l(w->m);
        if (--w->busy == 0) w->finished.notify_one();
    }
}

/* A forked child has none of the parent's helper threads: start afresh there. */
void forget_workers_in_child() { pool_of_workers = NULL; }

workers *get_workers() {
    std::call_once(atfork_once, [] { pthread_atfork(NULL, NULL, forget_workers_in_child); });
    if (pool_of_workers) return pool_of_workers;
    const char *e = getenv("NG_SIMT_THREADS");
    long n = e && *e ? atol(e) : (long)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 8) n = 8;
    workers *w = new workers();
    w->count = (int)n - 1;
    for (int i = 0; i < w->count; i++) std::thread(worker_main, w).detach();
    pool_of_workers = w;
    return w;
}

/* ---- launches ------------------------------------------------------------------------------ */
static cudaError_t config_error(const void *func, dim3 g, dim3 b, size_t shmem) {
    unsigned long long nthreads = (unsigned long long)b.x * b.y * b.z;
    if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > MAX_BLOCK_X || b.y > MAX_BLOCK_Y ||
        b.z > MAX_BLOCK_Z || nthreads > MAX_THREADS_PER_BLOCK || g.x == 0 || g.y == 0 || g.z == 0 ||
        g.x > MAX_GRID_X || g.y > MAX_GRID_YZ || g.z > MAX_GRID_YZ)
        return cudaErrorInvalidConfiguration;
    if (shmem > kernel_dyn_smem_limit(func)) return cudaErrorInvalidValue;
    return cudaSuccess;
}

bool stream_capturing(cudaStream_t stream) { return capturing(stream); }

/* A launch on a capturing stream: the configuration and the stream are checked now (an error
 * invalidates the capture, as on a GPU), the launch itself becomes a node. */
void capture_launch(const char *name, const void *func, dim3 grid, dim3 block, size_t shmem,
                    cudaStream_t stream, std::function<void()> replay) {
    char call[160];
    snprintf(call, sizeof call, "launch of kernel %s", name);
    cudaError_t e = config_error(func, grid, block, shmem);
    if (e == cudaSuccess) e = stream_check_current(call, stream);
    if (e != cudaSuccess) {
        capture_invalidate(stream, name);
        set_error(e);
        return;
    }
    e = capture_node(stream, name, [replay]() -> cudaError_t {
        replay();
        return take_error();
    });
    if (e != cudaSuccess) set_error(e);
}

/* The shape of the last launch that passed validation, for tests of the launchers' block table
 * (tests/test_kernel_blocks.c reads it through simt_last_launch, a weak symbol there). */
static struct {
    char name[96];
    unsigned grid, block;
} last_launch;

void launch(const launch_req &r) {
    const dim3 g = r.grid, b = r.block;
    unsigned long long nthreads = (unsigned long long)b.x * b.y * b.z;
    {
        cudaError_t e = config_error(r.func, g, b, r.shmem);
        if (e != cudaSuccess) {
            set_error(e);
            return;
        }
    }
    {
        char call[160];
        snprintf(call, sizeof call, "launch of kernel %s", r.name);
        cudaError_t e = stream_check_current(call, r.stream);
        if (e != cudaSuccess) {
            set_error(e);
            return;
        }
    }
    snprintf(last_launch.name, sizeof last_launch.name, "%s", r.name);
    last_launch.grid = g.x * g.y * g.z;
    last_launch.block = (unsigned)nthreads;
    const int device = current_device(); /* the launch runs on the current device */
    const void *dev_args[64];
    int n_dev = 0;
    for (int i = 0; i < r.n_ptr_args; i++) {
        void *p, *d;
        memcpy(&p, r.ptr_slots[i], sizeof p);
        if (p == NULL) continue;
        d = dev_view(p);
        if (d != NULL) {
            int owner = dev_device(p);
            if (owner != device) {
                char what[256];
                dev_describe(p, what, sizeof what);
                fatal("kernel %s launched on device %d: pointer argument %d (%p) is memory of "
                      "device %d (%s); a GPU would fault when the kernel uses it",
                      r.name, device, r.ptr_index[i], p, owner, what);
            }
            memcpy(r.ptr_slots[i], &d, sizeof d);
            if (n_dev < 64) dev_args[n_dev++] = p;
        } else if (!host_pinned(p)) {
            char what[256];
            dev_describe(p, what, sizeof what);
            fatal("kernel %s: pointer argument %d (%p) is %s; a GPU would fault when the kernel "
                  "uses it",
                  r.name, r.ptr_index[i], p, what);
        }
    }

    std::lock_guard<std::mutex> lock(launch_mu);
    if (tls_sched && tls_sched->in_launch)
        fatal("kernel %s launched from inside a kernel (not emulated)", r.name);
    ensure_fault_handler();
    grid_run run;
    run.req = &r;
    run.n = (unsigned)nthreads;
    run.nblocks = (unsigned long long)g.x * g.y * g.z;
    run.next.store(0);
    run.tidx.resize(run.n);
    for (unsigned t = 0; t < run.n; t++) {
        run.tidx[t].x = t % b.x;
        run.tidx[t].y = (t / b.x) % b.y;
        run.tidx[t].z = t / (b.x * b.y);
    }
    /* Helpers only pay off for grids with real work; small launches stay on this thread. */
    workers *w = run.nblocks >= 4 && run.nblocks * run.n >= 8192 ? get_workers() : NULL;
    if (w && w->count > 0) {
        {
            std::lock_guard<std::mutex> l(w->m);
            w->job = &run;
            w->busy = w->count;
            w->gen++;
        }
        w->go.notify_all();
        run_blocks(&run);
        std::unique_lock<std::mutex> l(w->m);
        w->finished.wait(l, [&] { return w->busy == 0; });
    } else {
        run_blocks(&run);
    }
    dev_fault_close(r.name);
    for (int i = 0; i < n_dev; i++) dev_check_canaries_of(dev_args[i], r.name);
}

void syncthreads() {
    sched *s = running_block("__syncthreads");
    unsigned t = (unsigned)s->cur_thread;
    s->st[t] = ST_BAR;
    s->at_barrier++;
    s->bar_wait.push_back(t);
    if (s->at_barrier == s->n - s->done) {
        release_barrier(s, (long)t);
        return;
    }
    run_next(s, s->cur);
}

uint64_t warp_op(warp_kind kind, unsigned mask, uint64_t value, int arg, int width) {
    sched *s = running_block(kind_name(kind));
    unsigned t = (unsigned)s->cur_thread, w = t / 32u, lane = t % 32u;
    warp_box &b = s->warps[w];
    if (!((mask >> lane) & 1u))
        fatal("%s with mask 0x%08x called by lane %u, which the mask excludes", kind_name(kind),
              mask, lane);
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fatal("%s with width %d (must be a power of two up to 32)", kind_name(kind), width);
    if (b.arrived == 0u) {
        b.kind = kind;
        b.mask = mask;
    } else if (b.kind != (int)kind || b.mask != mask) {
        fatal("divergent warp operations in warp %u: lane %u calls %s(mask 0x%08x) while lanes "
              "0x%08x wait in %s(mask 0x%08x)",
              w, lane, kind_name(kind), mask, b.arrived, kind_name(b.kind), b.mask);
    }
    b.val[lane] = value;
    b.arg[lane] = arg;
    b.width[lane] = width;
    b.arrived |= 1u << lane;
    s->st[t] = ST_WARP;
    if (warp_ready(s, w)) {
        complete_warp(s, w, (long)t);
        return b.res[lane];
    }
    run_next(s, s->cur);
    return s->warps[w].res[lane];
}

} /* namespace ng_simt */

/* Name, blocks and threads per block of the last validated launch (eager or replayed). */
extern "C" void simt_last_launch(char *name, size_t len, unsigned *grid, unsigned *block) {
    snprintf(name, len, "%s", ng_simt::last_launch.name);
    *grid = ng_simt::last_launch.grid;
    *block = ng_simt::last_launch.block;
}
