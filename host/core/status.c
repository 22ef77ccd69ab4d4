/* status.c: thread-local error message behind ng_error(). Messages are truncated, never overflow. */
#include "natgrad/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char ng_msg[1024];

const char *ng_status_name(ng_status s) {
    switch (s) {
    case NG_OK: return "NG_OK";
    case NG_ERR_INVALID_ARG: return "NG_ERR_INVALID_ARG";
    case NG_ERR_OOM: return "NG_ERR_OOM";
    case NG_ERR_NO_DEVICE: return "NG_ERR_NO_DEVICE";
    case NG_ERR_IO: return "NG_ERR_IO";
    case NG_ERR_FORMAT: return "NG_ERR_FORMAT";
    case NG_ERR_NUMERIC: return "NG_ERR_NUMERIC";
    case NG_ERR_UNSUPPORTED: return "NG_ERR_UNSUPPORTED";
    case NG_ERR_BACKEND: return "NG_ERR_BACKEND";
    case NG_ERR_INTERRUPTED: return "NG_ERR_INTERRUPTED";
    default: return "NG_ERR_?";
    }
}

ng_status ng_error(ng_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ng_msg, sizeof ng_msg, fmt, ap);
    va_end(ap);
    return code;
}

ng_status ng_error_wrap(ng_status code, const char *fmt, ...) {
    char prefix[512], old[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, ng_msg, sizeof old);
    {
        size_t lp = strlen(prefix);
        memcpy(ng_msg, prefix, lp + 1);
        strncat(ng_msg, old, sizeof ng_msg - lp - 1);
    }
    return code;
}

const char *ng_last_error(void) { return ng_msg; }
void ng_clear_error(void) { ng_msg[0] = '\0'; }
