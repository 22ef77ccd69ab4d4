/* bench_args.h: the command line of the bench programs (the .c files of bench/), header-only so that each stays
 * one file linked against libnatgrad.a (several are also built under the SIMT emulator). A program
 * describes its options in a table (name, kind, destination, allowed range, metavar, help) and
 * calls ba_parse once:
 *   --help / -h         usage, one line per option with its default and range, exit status 0;
 *   --opt VALUE, --opt=VALUE; a flag takes no value;
 *   positionals         table entries whose name does not start with '-', filled in order;
 *   anything wrong      (unknown option, missing value, not a whole / finite number, trailing
 *                       characters, out of range, not one of the choices, too few or too many
 *                       positionals): one line "PROGRAM: --opt VALUE: what is wrong; what is
 *                       allowed" on stderr and exit status 2.
 * Numbers are read with strtoll / strtoull / strtod and must use the whole argument. A destination
 * keeps its default unless the argument is valid, and ba_parse neither opens nor writes files:
 * the caller returns before it runs anything, so a bad command line leaves no output behind.
 * List kinds (BA_INTS, BA_NUMS) check each comma-separated element and store the string itself,
 * so the program's own splitting of a known-good list stays as it was. */
#ifndef BENCH_ARGS_H
#define BENCH_ARGS_H

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/backend.h"

enum {
    BA_INT,    /* int *, whole number in [lo, hi] */
    BA_LONG,   /* long *, whole number in [lo, hi] */
    BA_U64,    /* uint64_t *, non-negative whole number (no range beyond the type's) */
    BA_FLOAT,  /* float *, finite number in [lo, hi] (or (lo, hi] with BA_OPEN_LO) */
    BA_DOUBLE, /* double *, the same */
    BA_STR,    /* const char **, any string */
    BA_CHOICE, /* const char **, one of the '|'-separated words of metavar */
    BA_FLAG,   /* int *, set to 1; takes no value */
    BA_INTS,   /* const char **, a comma list of whole numbers, each in [lo, hi] */
    BA_NUMS,   /* const char **, a comma list of finite numbers, each in [lo, hi] (BA_OPEN_LO too) */
    BA_DEVICE  /* const char **, a device ng_device_parse accepts: auto, cpu, cuda or cuda:N */
};

enum {
    BA_OPEN_LO = 1,  /* a number must be > lo, not >= lo */
    BA_REQUIRED = 2, /* a positional that must be given */
    BA_MANY = 4      /* a positional that takes every remaining argument: dest is an array of
                        max_n values, *given (not NULL) their count */
};

typedef struct {
    const char *name;    /* "--iters", or a positional's name ("SEEDS") */
    int kind;            /* BA_INT ... */
    void *dest;          /* where the value goes; keeps its default unless given */
    double lo, hi;       /* numbers and list elements: the allowed range */
    int flags;           /* BA_OPEN_LO, BA_REQUIRED, BA_MANY */
    const char *metavar; /* the value's name in the help; BA_CHOICE: the choices "a|b|c" */
    const char *help;    /* one line */
    int *given;          /* if not NULL: set to 1 when given (BA_MANY: the number of values) */
    int max_n;           /* BA_MANY: capacity of dest; list kinds: most elements (0: no limit) */
} ba_opt;

/* Table rows; lo/hi are inclusive (the _GT rows: lo itself excluded). */
#define BA_I(nm, p, l, h, mv, hl) {nm, BA_INT, (void *)(p), (double)(l), (double)(h), 0, mv, hl, NULL, 0}
#define BA_L(nm, p, l, h, mv, hl) {nm, BA_LONG, (void *)(p), (double)(l), (double)(h), 0, mv, hl, NULL, 0}
#define BA_SEED(nm, p, mv, hl) {nm, BA_U64, (void *)(p), 0.0, 0.0, 0, mv, hl, NULL, 0}
#define BA_F(nm, p, l, h, mv, hl) {nm, BA_FLOAT, (void *)(p), (double)(l), (double)(h), 0, mv, hl, NULL, 0}
#define BA_F_GT(nm, p, l, h, mv, hl) {nm, BA_FLOAT, (void *)(p), (double)(l), (double)(h), BA_OPEN_LO, mv, hl, NULL, 0}
#define BA_D(nm, p, l, h, mv, hl) {nm, BA_DOUBLE, (void *)(p), (double)(l), (double)(h), 0, mv, hl, NULL, 0}
#define BA_D_GT(nm, p, l, h, mv, hl) {nm, BA_DOUBLE, (void *)(p), (double)(l), (double)(h), BA_OPEN_LO, mv, hl, NULL, 0}
#define BA_S(nm, p, mv, hl) {nm, BA_STR, (void *)(p), 0.0, 0.0, 0, mv, hl, NULL, 0}
#define BA_CHOOSE(nm, p, choices, hl) {nm, BA_CHOICE, (void *)(p), 0.0, 0.0, 0, choices, hl, NULL, 0}
#define BA_SWITCH(nm, p, hl) {nm, BA_FLAG, (void *)(p), 0.0, 0.0, 0, NULL, hl, NULL, 0}
#define BA_INT_LIST(nm, p, l, h, most, mv, hl) {nm, BA_INTS, (void *)(p), (double)(l), (double)(h), 0, mv, hl, NULL, most}
#define BA_NUM_LIST(nm, p, l, h, most, mv, hl) {nm, BA_NUMS, (void *)(p), (double)(l), (double)(h), 0, mv, hl, NULL, most}
#define BA_DEV(nm, p, hl) {nm, BA_DEVICE, (void *)(p), 0.0, 0.0, 0, "cpu|cuda|auto", hl, NULL, 0}
#define BA_END {NULL, 0, NULL, 0.0, 0.0, 0, NULL, NULL, NULL, 0}

/* What ba_parse returns when the program should go on (any other value: exit with it). */
#define BA_RUN (-1)

static int ba_is_positional(const ba_opt *o) { return o->name[0] != '-'; }

/* "1..1000", ">= 1", "> 0", "0..1" for the help and the error messages. */
static void ba_range(const ba_opt *o, char *buf, size_t len) {
    const double top = o->kind == BA_INT ? (double)INT_MAX : o->kind == BA_LONG ? (double)LONG_MAX : HUGE_VAL;
    const int whole = o->kind == BA_INT || o->kind == BA_LONG || o->kind == BA_INTS;
    if (o->kind == BA_U64) snprintf(buf, len, "0..%llu", (unsigned long long)UINT64_MAX);
    else if (whole && o->hi >= top && o->kind == BA_LONG) snprintf(buf, len, "%.0f..%ld", o->lo, LONG_MAX);
    else if (whole && o->hi >= top) snprintf(buf, len, "%.0f..%d", o->lo, INT_MAX);
    else if (whole) snprintf(buf, len, "%.0f..%.0f", o->lo, o->hi);
    else if (o->hi >= HUGE_VAL || o->hi >= top) snprintf(buf, len, "%s %g", o->flags & BA_OPEN_LO ? ">" : ">=", o->lo);
    else if (o->flags & BA_OPEN_LO) snprintf(buf, len, "> %g and <= %g", o->lo, o->hi);
    else snprintf(buf, len, "%g..%g", o->lo, o->hi);
}

static int ba_fail(const char *prog, const ba_opt *o, const char *v, const char *what) {
    char r[96];
    ba_range(o, r, sizeof r);
    fprintf(stderr, "%s: %s %s: %s; allowed: %s%s\n", prog, o->name, v, what,
            o->kind == BA_INTS || o->kind == BA_NUMS ? "a comma list of numbers " : "", r);
    return 2;
}

/* One number of [s, s + n): whole (integer kinds) or finite; 0 if it parses and is in range. */
static int ba_number(const ba_opt *o, const char *prog, const char *full, const char *s, size_t n, double *out) {
    char buf[128], *end;
    const int whole = o->kind == BA_INT || o->kind == BA_LONG || o->kind == BA_INTS;
    double x;
    if (n == 0 || n >= sizeof buf) return ba_fail(prog, o, full, whole ? "not a whole number" : "not a number");
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    if (whole) {
        long long y = strtoll(buf, &end, 10);
        if (end == buf || *end) return ba_fail(prog, o, full, "not a whole number");
        if (errno == ERANGE) return ba_fail(prog, o, full, "out of range");
        x = (double)y;
        if ((o->kind == BA_INT && (y < INT_MIN || y > INT_MAX)) || (o->kind == BA_LONG && (y < LONG_MIN || y > LONG_MAX)))
            return ba_fail(prog, o, full, "out of range");
    } else {
        x = strtod(buf, &end);
        if (end == buf || *end || isnan(x)) return ba_fail(prog, o, full, "not a number");
        if (!isfinite(x) || (errno == ERANGE && fabs(x) > 1.0)) return ba_fail(prog, o, full, "out of range");
        if (o->kind == BA_FLOAT && fabs(x) > 3.4028234663852886e38) return ba_fail(prog, o, full, "out of range");
    }
    if (x < o->lo || x > o->hi || ((o->flags & BA_OPEN_LO) && x <= o->lo)) return ba_fail(prog, o, full, "out of range");
    *out = x;
    return 0;
}

/* Checks v for option o and stores it; 0 or 2 (message printed). */
static int ba_set(const char *prog, const ba_opt *o, const char *v, int slot) {
    double x;
    switch (o->kind) {
    case BA_INT:
    case BA_LONG:
    case BA_FLOAT:
    case BA_DOUBLE:
        if (ba_number(o, prog, v, v, strlen(v), &x)) return 2;
        if (o->kind == BA_INT) ((int *)o->dest)[slot] = (int)x;
        else if (o->kind == BA_LONG) ((long *)o->dest)[slot] = (long)x;
        else if (o->kind == BA_FLOAT) ((float *)o->dest)[slot] = (float)x;
        else ((double *)o->dest)[slot] = x;
        break;
    case BA_U64: {
        char *end;
        unsigned long long y;
        errno = 0;
        y = strtoull(v, &end, 10);
        if (!*v || *end || *v == '-' || *v == '+' || *v == ' ') return ba_fail(prog, o, v, "not a whole number");
        if (errno == ERANGE) return ba_fail(prog, o, v, "out of range");
        *(uint64_t *)o->dest = (uint64_t)y;
        break;
    }
    case BA_CHOICE: {
        const char *p = o->metavar;
        const size_t n = strlen(v);
        for (;;) {
            const size_t k = strcspn(p, "|");
            if (k == n && n > 0 && !strncmp(p, v, n)) break;
            if (!p[k]) {
                fprintf(stderr, "%s: %s %s: not one of the choices; allowed: %s\n", prog, o->name, v, o->metavar);
                return 2;
            }
            p += k + 1;
        }
        *(const char **)o->dest = v;
        break;
    }
    case BA_INTS:
    case BA_NUMS: {
        const char *p = v;
        int n = 0;
        for (;;) {
            const size_t k = strcspn(p, ",");
            if (ba_number(o, prog, v, p, k, &x)) return 2;
            if (++n > o->max_n && o->max_n > 0) {
                fprintf(stderr, "%s: %s %s: too many numbers; allowed: at most %d\n", prog, o->name, v, o->max_n);
                return 2;
            }
            if (!p[k]) break;
            p += k + 1;
        }
        *(const char **)o->dest = v;
        break;
    }
    case BA_DEVICE: {
        ng_device d;
        int idx;
        if (ng_device_parse(v, &d, &idx) != NG_OK) {
            ng_clear_error();
            fprintf(stderr, "%s: %s %s: not a device; allowed: auto, cpu, cuda or cuda:N\n", prog, o->name, v);
            return 2;
        }
        *(const char **)o->dest = v;
        break;
    }
    case BA_STR: *(const char **)o->dest = v; break;
    case BA_FLAG: *(int *)o->dest = 1; break;
    }
    if (o->given && !(o->flags & BA_MANY)) *o->given = 1;
    return 0;
}

static void ba_default(FILE *f, const ba_opt *o) {
    char r[96];
    if (o->flags & BA_MANY) {
        ba_range(o, r, sizeof r);
        fprintf(f, " (each %s)", r);
        return;
    }
    switch (o->kind) {
    case BA_INT: fprintf(f, " (default %d", *(int *)o->dest); break;
    case BA_LONG: fprintf(f, " (default %ld", *(long *)o->dest); break;
    case BA_U64: fprintf(f, " (default %llu", (unsigned long long)*(uint64_t *)o->dest); break;
    case BA_FLOAT: fprintf(f, " (default %g", (double)*(float *)o->dest); break;
    case BA_DOUBLE: fprintf(f, " (default %g", *(double *)o->dest); break;
    case BA_STR:
    case BA_CHOICE:
    case BA_DEVICE:
    case BA_INTS:
    case BA_NUMS:
        if (*(const char **)o->dest) fprintf(f, " (default %s)", **(const char **)o->dest ? *(const char **)o->dest : "''");
        else fprintf(f, " (default: none)");
        break;
    case BA_FLAG: break;
    }
    if (o->kind == BA_INTS || o->kind == BA_NUMS) {
        ba_range(o, r, sizeof r);
        fprintf(f, " [each %s]", r);
    } else if (o->kind != BA_STR && o->kind != BA_CHOICE && o->kind != BA_DEVICE && o->kind != BA_FLAG) {
        ba_range(o, r, sizeof r);
        fprintf(f, "; %s)", r);
    }
}

static void ba_help(FILE *f, const char *prog, const char *about, const ba_opt *opts) {
    const ba_opt *o;
    int n_opts = 0;
    for (o = opts; o->name; o++) n_opts += !ba_is_positional(o);
    fprintf(f, "usage: %s%s", prog, n_opts ? " [options]" : "");
    for (o = opts; o->name; o++)
        if (ba_is_positional(o))
            fprintf(f, o->flags & BA_REQUIRED ? " %s" : o->flags & BA_MANY ? " [%s ...]" : " [%s]", o->name);
    fprintf(f, "\n\n%s\n\n", about);
    for (o = opts; o->name; o++) {
        char left[64];
        const int pos = ba_is_positional(o);
        snprintf(left, sizeof left, "%s%s%s", o->name, pos || o->kind == BA_FLAG ? "" : " ",
                 pos || o->kind == BA_FLAG ? "" : o->metavar ? o->metavar : "X");
        fprintf(f, "  %-28s %s", left, o->help);
        if (pos && o->kind == BA_CHOICE) fprintf(f, " (%s)", o->metavar);
        if (!(pos && (o->flags & BA_REQUIRED))) ba_default(f, o);
        else if (o->kind != BA_STR && o->kind != BA_CHOICE) {
            char r[96];
            ba_range(o, r, sizeof r);
            fprintf(f, " (%s)", r);
        }
        fputc('\n', f);
    }
    fprintf(f, "  %-28s %s\n", "-h, --help", "show this help and exit (runs nothing)");
}

/* Parses argv[1..argc-1] against opts (ended by BA_END). Returns BA_RUN to go on, 0 after --help,
 * 2 after a message on stderr. */
static int ba_parse(const char *prog, const char *about, const ba_opt *opts, int argc, char **argv) {
    int i, npos = 0;
    const ba_opt *o;
    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ba_help(stdout, prog, about, opts);
            return 0;
        }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *eq, *v = NULL;
        size_t len;
        if (a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9') && a[1] != '.') {
            eq = strchr(a, '=');
            len = eq ? (size_t)(eq - a) : strlen(a);
            for (o = opts; o->name; o++)
                if (!ba_is_positional(o) && strlen(o->name) == len && !strncmp(o->name, a, len)) break;
            if (!o->name) {
                fprintf(stderr, "%s: %.*s: unknown option; see %s --help\n", prog, (int)len, a, prog);
                return 2;
            }
            if (o->kind == BA_FLAG) {
                if (eq) {
                    fprintf(stderr, "%s: %s: takes no value\n", prog, a);
                    return 2;
                }
            } else if (eq) v = eq + 1;
            else if (i + 1 < argc) v = argv[++i];
            else {
                fprintf(stderr, "%s: %s: needs a value (%s); see %s --help\n", prog, o->name, o->metavar ? o->metavar : "X", prog);
                return 2;
            }
            if (ba_set(prog, o, v, 0)) return 2;
            continue;
        }
        /* a positional: the npos-th positional row, or the BA_MANY row that ends the table */
        {
            int k = 0;
            for (o = opts; o->name; o++)
                if (ba_is_positional(o)) {
                    if (o->flags & BA_MANY) {
                        if (*o->given >= o->max_n) {
                            fprintf(stderr, "%s: %s: too many %s arguments (at most %d)\n", prog, a, o->name, o->max_n);
                            return 2;
                        }
                        if (ba_set(prog, o, a, *o->given)) return 2;
                        ++*o->given;
                        break;
                    }
                    if (k++ == npos) {
                        if (ba_set(prog, o, a, 0)) return 2;
                        break;
                    }
                }
            if (!o->name) {
                fprintf(stderr, "%s: %s: unexpected argument; see %s --help\n", prog, a, prog);
                return 2;
            }
            npos++;
        }
    }
    {
        int k = 0;
        for (o = opts; o->name; o++)
            if (ba_is_positional(o) && !(o->flags & BA_MANY) && k++ >= npos && (o->flags & BA_REQUIRED)) {
                fprintf(stderr, "%s: %s: missing; see %s --help\n", prog, o->name, prog);
                return 2;
            }
    }
    return BA_RUN;
}

#endif
