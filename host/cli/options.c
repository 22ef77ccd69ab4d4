/* options.c: table-driven --long-option parsing with typed, range-checked values, help text, and
 * progress output for the natgrad command. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

const ng_opt *ng_cli_find(const ng_opt *opts, const char *name) {
    for (; opts->name; opts++)
        if (strcmp(opts->name, name) == 0) return opts;
    return NULL;
}

static void print_default(FILE *f, const ng_opt *o) {
    switch (o->kind) {
    case OPT_INT: fprintf(f, " (default %d)", *(int *)o->dest); break;
    case OPT_U64: fprintf(f, " (default %llu)", (unsigned long long)*(uint64_t *)o->dest); break;
    case OPT_FLOAT: fprintf(f, " (default %g)", (double)*(float *)o->dest); break;
    case OPT_STR:
        if (*(const char **)o->dest) fprintf(f, " (default %s)", *(const char **)o->dest);
        break;
    case OPT_FLAG: break;
    }
}

void ng_cli_print_help(FILE *f, const char *cmd, const char *summary, const ng_opt *opts) {
    fprintf(f, "usage: natgrad %s [options]\n\n%s\n\noptions:\n", cmd, summary);
    for (; opts->name; opts++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts->name, opts->kind == OPT_FLAG ? "" : " ",
                 opts->kind == OPT_FLAG ? "" : opts->metavar ? opts->metavar : "X");
        fprintf(f, "  %-26s %s", left, opts->help);
        print_default(f, opts);
        fputc('\n', f);
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help and exit");
}

static int set_value(const char *cmd, ng_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || !*v || *end || x < -2147483647L || x > 2147483647L) goto bad;
        *(int *)o->dest = (int)x;
        break;
    }
    case OPT_U64: {
        unsigned long long x;
        if (*v == '-') goto bad;
        x = strtoull(v, &end, 10);
        if (errno || !*v || *end) goto bad;
        *(uint64_t *)o->dest = (uint64_t)x;
        break;
    }
    case OPT_FLOAT: {
        double x = strtod(v, &end);
        if (errno || !*v || *end || !isfinite(x)) goto bad;
        *(float *)o->dest = (float)x;
        break;
    }
    case OPT_STR: *(const char **)o->dest = v; break;
    case OPT_FLAG: *(int *)o->dest = 1; break;
    }
    o->seen = 1;
    return 0;
bad:
    fprintf(stderr, "natgrad %s: --%s '%s': not a valid %s\n", cmd, o->name, v,
            o->kind == OPT_FLOAT ? "finite number" : o->kind == OPT_U64 ? "non-negative integer" : "integer");
    return NG_EXIT_USAGE;
}

int ng_cli_parse(const char *cmd, const char *summary, ng_opt *opts, int argc, char **argv) {
    int i;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *eq, *val = NULL;
        char name[64];
        ng_opt *o;
        size_t len;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            ng_cli_print_help(stdout, cmd, summary, opts);
            return -1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "natgrad %s: unexpected argument '%s' (options start with --; see --help)\n", cmd, a);
            return NG_EXIT_USAGE;
        }
        a += 2;
        eq = strchr(a, '=');
        len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a, len);
        name[len] = '\0';
        o = (ng_opt *)ng_cli_find(opts, name);
        if (!o) {
            fprintf(stderr, "natgrad %s: unknown option --%s (see natgrad %s --help)\n", cmd, name, cmd);
            return NG_EXIT_USAGE;
        }
        if (o->kind == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "natgrad %s: --%s takes no value\n", cmd, name);
                return NG_EXIT_USAGE;
            }
            *(int *)o->dest = 1;
            o->seen = 1;
            continue;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            fprintf(stderr, "natgrad %s: --%s needs a value (%s)\n", cmd, name, o->metavar ? o->metavar : "X");
            return NG_EXIT_USAGE;
        }
        if (set_value(cmd, o, val)) return NG_EXIT_USAGE;
    }
    return 0;
}

double ng_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_hms(char *buf, size_t len, double s) {
    long t = s < 0 ? 0 : (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

void ng_progress(uint64_t done, uint64_t total, double elapsed, const char *extra, int final) {
    char eta[32] = "?", el[32];
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    int tty = isatty(fileno(stderr));
    if (rate > 0 && total >= done) fmt_hms(eta, sizeof eta, (double)(total - done) / rate);
    fmt_hms(el, sizeof el, elapsed);
    fprintf(stderr, "%sstep %llu/%llu  %.2f it/s  elapsed %s  ETA %s  %s%s", tty ? "\r\033[K" : "",
            (unsigned long long)done, (unsigned long long)total, rate, el, final ? "0:00" : eta,
            extra ? extra : "", (tty && !final) ? "" : "\n");
    fflush(stderr);
}

int ng_mkdirs(const char *path) {
    char buf[4096];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST) return -1;
            buf[i] = c;
        }
    }
    return 0;
}

int ng_cli_backend(const char *device, ng_backend **be) {
    ng_device d;
    char note[512];
    if (ng_device_parse(device, &d) != NG_OK) {
        fprintf(stderr, "natgrad: %s\n", ng_last_error());
        return NG_EXIT_USAGE;
    }
    if (ng_backend_init(d, be, note, sizeof note) != NG_OK) {
        fprintf(stderr, "natgrad: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    if (note[0]) fprintf(stderr, "natgrad: note: %s\n", note);
    fprintf(stderr, "natgrad %s: backend %s\n", NG_VERSION, (*be)->description);
    return 0;
}
