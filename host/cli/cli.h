/* cli.h: shared pieces of the natgrad command: option tables, progress output, run set-up.
 * Only code under host/cli/ may exit(); library calls return ng_status. */
#ifndef NG_CLI_H
#define NG_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "natgrad/backend.h"

#define NG_VERSION "0.1.0"

/* Exit codes: 0 ok, 1 runtime failure, 2 usage error. */
enum { NG_EXIT_OK = 0, NG_EXIT_FAIL = 1, NG_EXIT_USAGE = 2 };

typedef enum { OPT_INT, OPT_U64, OPT_FLOAT, OPT_STR, OPT_FLAG } ng_opt_kind;

typedef struct ng_opt {
    const char *name;  /* long name without dashes */
    ng_opt_kind kind;
    void *dest;
    const char *metavar;
    const char *help;  /* help text; the default value is printed from *dest */
    int seen;
} ng_opt;

/* Parse argv against opts; on error prints "natgrad <cmd>: ..." and returns NG_EXIT_USAGE.
 * Returns -1 when --help was given (help already printed), else 0. */
int ng_cli_parse(const char *cmd, const char *summary, ng_opt *opts, int argc, char **argv);
void ng_cli_print_help(FILE *f, const char *cmd, const char *summary, const ng_opt *opts);
const ng_opt *ng_cli_find(const ng_opt *opts, const char *name);

/* Wall clock in seconds. */
double ng_now(void);
/* Progress line "step 120/1000  35.2 it/s  ETA 0:25  <extra>"; on a TTY rewritten in place. */
void ng_progress(uint64_t done, uint64_t total, double elapsed, const char *extra, int final);
/* Make a directory and its parents (like mkdir -p). */
int ng_mkdirs(const char *path);

/* Open a backend for --device and print the start-up line to stderr. */
int ng_cli_backend(const char *device, ng_backend **be);

int ng_cmd_rbm(int argc, char **argv);
int ng_cmd_info(int argc, char **argv);

#endif
