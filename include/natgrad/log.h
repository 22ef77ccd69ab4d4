/* natgrad/log.h: what the library tells its host program, and how the host stops it.
 * Library code never prints: it hands messages to the log callback that the embedding program
 * installs (the natgrad command prints them on stderr; a multi-rank run may prefix the rank or
 * keep rank 0 only). Without a callback, messages are dropped.
 * Interruption: a signal handler calls ng_interrupt_request() (async-signal-safe); long operations
 * (Gibbs chains, AIS, RAISE, exact enumerations, the run driver) poll ng_interrupted() and return
 * NG_ERR_INTERRUPTED, leaving the objects they were updating as they were before the operation
 * began wherever that is promised (the RBM gradient, the run driver). */
#ifndef NATGRAD_LOG_H
#define NATGRAD_LOG_H

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_log_level {
    NG_LOG_DEBUG = 0,
    NG_LOG_INFO,   /* progress notes ("resumed x at update 400") */
    NG_LOG_WARN,   /* something was recovered ("Cholesky failed in float32; inverted in float64") */
    NG_LOG_ERROR
} ng_log_level;

/* msg has no trailing newline; `where` names the component ("fang", "run", "data"). */
typedef void (*ng_log_fn)(ng_log_level level, const char *where, const char *msg, void *user);

/* Install fn (NULL drops every message). Not thread-safe against concurrent ng_log calls: set it
 * once at start-up. */
void ng_log_set(ng_log_fn fn, void *user);
void ng_log(ng_log_level level, const char *where, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *ng_log_level_name(ng_log_level level); /* "debug", "info", "warning", "error" */

/* Interruption (SIGINT/SIGTERM in the command). */
void ng_interrupt_request(void); /* async-signal-safe: only sets a flag */
int ng_interrupted(void);
void ng_interrupt_clear(void);
/* NG_ERR_INTERRUPTED naming `what` when an interrupt is pending, else NG_OK. */
ng_status ng_check_interrupt(const char *what);

/* Monotonic wall clock in seconds (for timings and ETAs; never for results). */
double ng_time_s(void);

#ifdef __cplusplus
}
#endif
#endif
