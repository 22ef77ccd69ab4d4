/* cli.h: shared pieces of the natgrad command: option tables, the options every command shares,
 * the log callback and progress line, run set-up. Only code under host/cli/ prints or exit()s;
 * library calls return ng_status and report through ng_log. Uses public headers only. */
#ifndef NG_CLI_H
#define NG_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "natgrad/backend.h"
#include "natgrad/train.h"

#define NG_VERSION NG_VERSION_STRING

/* Exit codes: 0 ok, 1 runtime failure (or interrupted), 2 usage error. */
enum { NG_EXIT_OK = 0, NG_EXIT_FAIL = 1, NG_EXIT_USAGE = 2 };

typedef enum { OPT_INT, OPT_U64, OPT_FLOAT, OPT_STR, OPT_FLAG, OPT_ENUM } ng_opt_kind;

/* flags */
enum {
    OPT_FIXED = 1 /* fixed by a checkpoint: refused together with --resume */
};

typedef struct ng_opt {
    const char *name;     /* long name without dashes */
    ng_opt_kind kind;
    void *dest;           /* int, uint64_t, float, const char *, int (flag), int (enum: index) */
    const char *metavar;  /* OPT_ENUM: the choices, "a|b|c" (the index into them is stored) */
    const char *help;     /* help text; the default value is printed from *dest */
    int flags;
    int seen;
} ng_opt;

#define NG_OPT_END {NULL, OPT_FLAG, NULL, NULL, NULL, 0, 0}

/* The options several commands share, filled by the macros below. */
typedef struct ng_common_opts {
    const char *device;   /* auto | cpu | cuda | cuda:N */
    uint64_t seed;
    const char *data, *data_dir;
    const char *out;
    int threads;          /* CPU threads of OpenBLAS and OpenMP (0: their default) */
    int force;
    int tf32;                  /* --tf32: TF32 tensor-core gemms in forward/backward/Gibbs (CUDA) */
    int profile;               /* --profile: phase table, OUT/profile.csv, OUT/profile.json */
    const char *profile_steps; /* --profile-steps A:B */
    float comm_timeout;   /* seconds a collective of a multi-rank run may wait (--comm-timeout) */
    int comm_overlap;     /* gradient all-reduce in buckets during the backward pass (--comm-overlap) */
    float comm_bucket_mb; /* least bucket size in MiB (--comm-bucket-mb) */
} ng_common_opts;
void ng_common_defaults(ng_common_opts *c);

#define NG_OPT_DEVICE(c) {"device", OPT_STR, &(c)->device, "auto|cpu|cuda[:N]", "compute device (cuda:N picks GPU N)", 0, 0}
#define NG_OPT_THREADS(c) {"threads", OPT_INT, &(c)->threads, "N", "CPU threads for OpenBLAS/OpenMP (0 = their default; bit-exact resume needs the same count)", 0, 0}
#define NG_OPT_COMM(c) {"comm-timeout", OPT_FLOAT, &(c)->comm_timeout, "S", "multi-rank runs (mpirun -np N): a rank waiting longer than S s for the others stops the job with a message", 0, 0}
#define NG_OPT_COMM_OVERLAP(c)                                                                                              \
    {"comm-overlap", OPT_INT, &(c)->comm_overlap, "0|1", "multi-rank runs: 1 sums the gradient in buckets while the backward pass continues (the same sums as 0, one all-reduce after it)", 0, 0}, \
    {"comm-bucket-mb", OPT_FLOAT, &(c)->comm_bucket_mb, "MB", "--comm-overlap 1: least gradient bucket per all-reduce in MiB (layers are never split)", 0, 0}
#define NG_OPT_DATA(c, what) {"data", OPT_STR, &(c)->data, "NAME|PATH", what, 0, 0}, \
    {"data-dir", OPT_STR, &(c)->data_dir, "DIR", "where named data sets live", 0, 0}
#define NG_OPT_SEED(c, flags) {"seed", OPT_U64, &(c)->seed, "S", "random seed (all streams derive from it)", flags, 0}
/* The profiling group (natgrad/profile.h); ng_cli_backend starts the profile, ng_cli_profile_report
 * ends it after the run. */
#define NG_OPT_PROFILE(c) {"tf32", OPT_FLAG, &(c)->tf32, NULL, "CUDA: TF32 tensor-core math (10-bit mantissa operands) for the gemms of forward, backward and Gibbs steps only; factor inversions, curvature products and solves stay FP32. Ignored on the CPU backend", 0, 0}, \
    {"profile", OPT_FLAG, &(c)->profile, NULL, "time every phase (CUDA events on a GPU, monotonic clock on the CPU): table at the end, OUT/profile.csv, Chrome trace OUT/profile.json (Perfetto), memory per arena", 0, 0}, \
    {"profile-steps", OPT_STR, &(c)->profile_steps, "A:B", "profile only updates A..B (1-based); on a GPU also cudaProfilerStart/Stop around them, for nsys --capture-range=cudaProfilerApi", 0, 0}
#define NG_OPT_OUT(c) {"out", OPT_STR, &(c)->out, "DIR", "output directory", 0, 0}, \
    {"force", OPT_FLAG, &(c)->force, NULL, "overwrite a run already in --out", 0, 0}

/* Parse argv against opts; on error prints "natgrad <cmd>: ..." and returns NG_EXIT_USAGE.
 * Returns -1 when --help was given (help already printed), else 0. */
int ng_cli_parse(const char *cmd, const char *summary, ng_opt *opts, int argc, char **argv);
void ng_cli_print_help(FILE *f, const char *cmd, const char *summary, const ng_opt *opts);
const ng_opt *ng_cli_find(const ng_opt *opts, const char *name);
/* With --resume: the first option flagged OPT_FIXED that was given (NULL when none). */
const ng_opt *ng_cli_fixed_given(const ng_opt *opts);

/* Progress line "step 120/1000  35.2 it/s  elapsed 0:03  ETA 0:25  <extra>"; on a TTY rewritten
 * in place (final = 1 then ends that line). */
void ng_progress(uint64_t done, uint64_t total, double elapsed, double eta, const char *extra, int final);
/* --data values: 1 when s looks like a file path rather than a data-set name */
int ng_cli_is_path(const char *s);
/* 1 when path exists (and, with nonempty, is not empty) */
int ng_cli_file_exists(const char *path, int nonempty);
/* 1 when a and b name the same existing file */
int ng_cli_same_file(const char *a, const char *b);
/* Make a directory and its parents (like mkdir -p); errno tells why on failure. */
int ng_mkdirs(const char *path);

/* Install the log callback (messages on stderr as "natgrad: <where>: <message>") and the
 * SIGINT/SIGTERM handlers that request an interrupt. */
void ng_cli_setup(void);
/* Open a backend for --device and print the start-up line to stderr; applies --threads. */
int ng_cli_backend(const ng_common_opts *c, ng_backend **be);
/* After the run: with --profile print the table to stdout and write OUT/profile.csv and
 * OUT/profile.json; returns 0 or NG_EXIT_FAIL. */
int ng_cli_profile_report(const ng_common_opts *c);

/* The process's communicator (host/cli/dist.c): opened by ng_cli_backend (MPI under mpirun with
 * several ranks, else one rank), attached to the backend; ng_cli_finish(rc) ends it (aborting every
 * rank when rc != 0 on a multi-rank run) and returns rc. */
struct ng_comm *ng_cli_comm(void);
int ng_cli_rank(void);
int ng_cli_world(void);
int ng_cli_comm_open(const ng_common_opts *c);
/* A data-parallel command calls this before ng_cli_backend; other commands refuse several ranks. */
void ng_cli_dist_allow(void);
int ng_cli_comm_attach(ng_backend *be);
int ng_cli_finish(int rc);
int ng_cmd_rbm(int argc, char **argv);
int ng_cmd_net(int argc, char **argv);
int ng_cmd_cnn(int argc, char **argv);
int ng_cmd_info(int argc, char **argv);
int ng_cmd_export(int argc, char **argv);
int ng_cmd_ckpt(int argc, char **argv);
int ng_cmd_toy(int argc, char **argv);

#endif
