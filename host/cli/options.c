/* options.c: table-driven --long-option parsing with typed, range-checked values (enumerations
 * by name, floats within float range), help text, the options commands share, the log callback,
 * signal handlers and the progress line of the natgrad command. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"

void ng_common_defaults(ng_common_opts *c) {
    memset(c, 0, sizeof *c);
    c->device = "auto";
    c->seed = 1;
    c->data = "mnist";
    c->data_dir = "data";
    c->threads = 0;
    c->comm_timeout = 300.0f;
    c->comm_overlap = 1;
    c->comm_bucket_mb = (float)NG_TRAIN_BUCKET_MB;
}

const ng_opt *ng_cli_find(const ng_opt *opts, const char *name) {
    for (; opts->name; opts++)
        if (strcmp(opts->name, name) == 0) return opts;
    return NULL;
}

const ng_opt *ng_cli_fixed_given(const ng_opt *opts) {
    for (; opts->name; opts++)
        if ((opts->flags & OPT_FIXED) && opts->seen) return opts;
    return NULL;
}

/* The i-th choice of an enum's metavar "a|b|c" into buf. */
static const char *enum_choice(const char *choices, int i, char *buf, size_t len) {
    const char *p = choices;
    while (i-- > 0 && p) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) return "?";
    {
        size_t n = strcspn(p, "|");
        if (n >= len) n = len - 1;
        memcpy(buf, p, n);
        buf[n] = '\0';
    }
    return buf;
}

static void print_default(FILE *f, const ng_opt *o) {
    char buf[64];
    switch (o->kind) {
    case OPT_INT: fprintf(f, " (default %d)", *(int *)o->dest); break;
    case OPT_U64: fprintf(f, " (default %llu)", (unsigned long long)*(uint64_t *)o->dest); break;
    case OPT_FLOAT: fprintf(f, " (default %g)", (double)*(float *)o->dest); break;
    case OPT_STR:
        if (*(const char **)o->dest) fprintf(f, " (default %s)", *(const char **)o->dest);
        break;
    case OPT_ENUM: fprintf(f, " (default %s)", enum_choice(o->metavar, *(int *)o->dest, buf, sizeof buf)); break;
    case OPT_FLAG: break;
    }
    if (o->flags & OPT_FIXED) fprintf(f, " [kept from the checkpoint on --resume]");
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
        if (!*v || *end) goto bad;
        if (errno == ERANGE || x < -2147483647L || x > 2147483647L) goto range;
        *(int *)o->dest = (int)x;
        break;
    }
    case OPT_U64: {
        unsigned long long x;
        if (*v == '-') goto bad;
        x = strtoull(v, &end, 10);
        if (!*v || *end) goto bad;
        if (errno == ERANGE) goto range;
        *(uint64_t *)o->dest = (uint64_t)x;
        break;
    }
    case OPT_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || isnan(x)) goto bad;
        if (errno == ERANGE && fabs(x) > 1.0) goto range;
        if (!isfinite(x) || fabs(x) > (double)FLT_MAX) goto range;
        *(float *)o->dest = (float)x;
        break;
    }
    case OPT_ENUM: {
        char buf[64];
        int i;
        for (i = 0;; i++) {
            const char *c = enum_choice(o->metavar, i, buf, sizeof buf);
            if (strcmp(c, "?") == 0) {
                fprintf(stderr, "natgrad %s: --%s '%s': unknown (use %s)\n", cmd, o->name, v, o->metavar);
                return NG_EXIT_USAGE;
            }
            if (strcasecmp(c, v) == 0) {
                *(int *)o->dest = i;
                break;
            }
        }
        break;
    }
    case OPT_STR: *(const char **)o->dest = v; break;
    case OPT_FLAG: *(int *)o->dest = 1; break;
    }
    o->seen = 1;
    return 0;
bad:
    fprintf(stderr, "natgrad %s: --%s '%s': not a valid %s\n", cmd, o->name, v,
            o->kind == OPT_FLOAT ? "number" : o->kind == OPT_U64 ? "non-negative integer" : "integer");
    return NG_EXIT_USAGE;
range:
    fprintf(stderr, "natgrad %s: --%s '%s': out of range (largest magnitude: %s)\n", cmd, o->name, v,
            o->kind == OPT_FLOAT ? "3.4e38, the float range" : o->kind == OPT_U64 ? "18446744073709551615" : "2147483647");
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

static void fmt_hms(char *buf, size_t len, double s) {
    long t = !(s >= 0) ? 0 : s > 3.6e8 ? 360000000L : (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

void ng_progress(uint64_t done, uint64_t total, double elapsed, double eta, const char *extra, int final) {
    char etas[32] = "?", el[32];
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    int tty = isatty(fileno(stderr));
    if (final) { /* the last logged line stands; on a terminal, end the line rewritten in place */
        if (tty) fputc('\n', stderr);
        return;
    }
    if (isfinite(eta)) fmt_hms(etas, sizeof etas, eta);
    fmt_hms(el, sizeof el, elapsed);
    fprintf(stderr, "%sstep %llu/%llu  %.2f it/s  elapsed %s  ETA %s  %s%s", tty ? "\r\033[K" : "",
            (unsigned long long)done, (unsigned long long)total, rate, el, etas, extra ? extra : "",
            tty ? "" : "\n");
    fflush(stderr);
}

int ng_mkdirs(const char *path) {
    char buf[4096];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            struct stat st;
            buf[i] = '\0';
            if (mkdir(buf, 0775) != 0) {
                if (errno != EEXIST) return -1;
                if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                    errno = ENOTDIR;
                    return -1;
                }
            }
            buf[i] = c;
        }
    }
    return 0;
}

/* Library messages on stderr: "natgrad: [warning: ]<where>: <message>" (debug only with NG_DEBUG). */
static void cli_log_line(ng_log_level level, const char *where, const char *msg, void *user) {
    (void)user;
    if (level == NG_LOG_DEBUG && !getenv("NG_DEBUG")) return;
    fprintf(stderr, "%snatgrad: %s%s%s%s%s\n", isatty(fileno(stderr)) ? "\r\033[K" : "",
            level >= NG_LOG_WARN ? ng_log_level_name(level) : "", level >= NG_LOG_WARN ? ": " : "",
            where && *where ? where : "", where && *where ? ": " : "", msg);
}

static void on_signal(int sig) {
    (void)sig;
    ng_interrupt_request();
}

void ng_cli_setup(void) {
    struct sigaction sa;
    ng_log_set(cli_log_line, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int ng_cli_backend(const ng_common_opts *c, ng_backend **be) {
    ng_device d;
    int index = -1;
    char note[512];
    if (c->threads < 0) {
        fprintf(stderr, "natgrad: --threads %d: must be >= 0\n", c->threads);
        return NG_EXIT_USAGE;
    }
    if (ng_device_parse(c->device, &d, &index) != NG_OK) {
        fprintf(stderr, "natgrad: %s\n", ng_last_error());
        return NG_EXIT_USAGE;
    }
    if (c->threads > 0) ng_cpu_set_threads(c->threads);
    {
        int rc = ng_cli_comm_open(c);
        if (rc) return rc;
        if (ng_cli_world() > 1 && index < 0 && d != NG_DEVICE_CPU) index = ng_cli_comm()->local_rank; /* a GPU per rank */
    }
    if (ng_backend_init(d, index, be, note, sizeof note) != NG_OK) {
        fprintf(stderr, "natgrad: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    if (ng_cli_comm_attach(*be)) return NG_EXIT_FAIL;
    if (note[0]) fprintf(stderr, "natgrad: note: %s\n", note);
    fprintf(stderr, "natgrad %s: backend %s\n", NG_VERSION, (*be)->description);
    if (c->tf32) {
        ng_backend_allow_tf32(*be, 1);
        if (!(*be)->iface->set_tf32)
            fprintf(stderr, "natgrad: note: --tf32 is ignored on the %s backend (FP32 gemms)\n", (*be)->iface->name);
    }
    if (c->profile || c->profile_steps) {
        ng_profile_config pc;
        memset(&pc, 0, sizeof pc);
        pc.measure = c->profile;
        pc.capture = c->profile_steps != NULL;
        if (c->profile_steps && ng_profile_parse_steps(c->profile_steps, &pc.first, &pc.last) != NG_OK) {
            fprintf(stderr, "natgrad: %s\n", ng_last_error());
            return NG_EXIT_USAGE;
        }
        if (ng_profile_start(*be, &pc) != NG_OK) {
            fprintf(stderr, "natgrad: --profile: %s\n", ng_last_error());
            return NG_EXIT_FAIL;
        }
        if (pc.capture && (*be)->kind != NG_DEVICE_CUDA)
            fprintf(stderr, "natgrad: note: --profile-steps on the CPU backend only limits --profile to those updates (no CUDA profiler to bracket)\n");
    }
    return 0;
}

int ng_cli_profile_report(const ng_common_opts *c) {
    char path[4200];
    char *table = NULL;
    ng_profile_finish();
    if (!c->profile) return 0;
    if (ng_profile_table(&table) != NG_OK) {
        fprintf(stderr, "natgrad: --profile: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    fputs(table, stdout);
    fflush(stdout);
    free(table);
    snprintf(path, sizeof path, "%s/profile.csv", c->out ? c->out : ".");
    if (ng_profile_write_csv(path) != NG_OK) {
        fprintf(stderr, "natgrad: --profile: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    snprintf(path, sizeof path, "%s/profile.json", c->out ? c->out : ".");
    if (ng_profile_write_trace(path) != NG_OK) {
        fprintf(stderr, "natgrad: --profile: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    fprintf(stderr, "natgrad: profile written to %s/profile.csv and %s (open it in https://ui.perfetto.dev)\n",
            c->out ? c->out : ".", path);
    return 0;
}

int ng_cli_is_path(const char *s) {
    return strchr(s, '/') || strstr(s, ".idx") || strstr(s, "ubyte") || strstr(s, ".gz");
}

int ng_cli_file_exists(const char *path, int nonempty) {
    struct stat st;
    return stat(path, &st) == 0 && (!nonempty || st.st_size > 0);
}

int ng_cli_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
