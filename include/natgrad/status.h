/* natgrad/status.h: status codes and the error message that travels with them.
 * Library code returns ng_status and records a message naming the thing at fault with ng_error();
 * it never calls exit() or abort(). Only the CLI decides to exit. */
#ifndef NATGRAD_STATUS_H
#define NATGRAD_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_status {
    NG_OK = 0,
    NG_ERR_INVALID_ARG,  /* a caller passed an impossible value (shape, option, NULL) */
    NG_ERR_OOM,          /* host or device allocation failed */
    NG_ERR_NO_DEVICE,    /* no CUDA device answered, or CUDA support is not compiled in */
    NG_ERR_IO,           /* open/read/write/rename failed */
    NG_ERR_FORMAT,       /* a file's content is malformed (magic, sizes, CRC, NaN payload) */
    NG_ERR_NUMERIC,      /* factorisation failed, NaN/Inf produced */
    NG_ERR_UNSUPPORTED,  /* the backend does not implement the operation */
    NG_ERR_BACKEND,      /* the device library reported a failure */
    NG_ERR_INTERRUPTED,  /* stopped by ng_interrupt_request (SIGINT/SIGTERM) */
    NG_ERR_COUNT
} ng_status;

/* Name of a status code ("NG_ERR_FORMAT"). */
const char *ng_status_name(ng_status s);

/* Record a printf-style message for the current thread and return `code` unchanged, so a failure
 * site reads `return ng_error(NG_ERR_FORMAT, "%s: bad magic 0x%08x", path, magic);`. */
ng_status ng_error(ng_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefix the current message with more context ("loading checkpoint x: " + old message). */
ng_status ng_error_wrap(ng_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The last message recorded on this thread ("" when none). */
const char *ng_last_error(void);
void ng_clear_error(void);

#define NG_TRY(expr)                                     \
    do {                                                 \
        ng_status ng_try_s_ = (expr);                    \
        if (ng_try_s_ != NG_OK) return ng_try_s_;        \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
