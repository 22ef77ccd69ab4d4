/* log.c: the log callback, the interrupt flag and the monotonic clock of natgrad/log.h. */
#include "natgrad/log.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static ng_log_fn g_log_fn;
static void *g_log_user;
static volatile sig_atomic_t g_interrupt;

void ng_log_set(ng_log_fn fn, void *user) {
    g_log_fn = fn;
    g_log_user = user;
}

void ng_log(ng_log_level level, const char *where, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    if (!g_log_fn) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_log_fn(level, where ? where : "", msg, g_log_user);
}

const char *ng_log_level_name(ng_log_level level) {
    switch (level) {
    case NG_LOG_DEBUG: return "debug";
    case NG_LOG_INFO: return "info";
    case NG_LOG_WARN: return "warning";
    default: return "error";
    }
}

void ng_interrupt_request(void) { g_interrupt = 1; }
int ng_interrupted(void) { return g_interrupt != 0; }
void ng_interrupt_clear(void) { g_interrupt = 0; }

ng_status ng_check_interrupt(const char *what) {
    if (!g_interrupt) return NG_OK;
    return ng_error(NG_ERR_INTERRUPTED, "%s: interrupted", what);
}

double ng_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
