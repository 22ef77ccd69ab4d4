/* main.c: the natgrad command. Dispatches subcommands; the only place besides host/cli that may
 * exit. First thing: make sure OpenBLAS runs the kernels this CPU supports (re-exec if needed). */
#include <stdio.h>
#include <string.h>

#include "backend/cpu_blas.h"
#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "natgrad %s: natural-gradient training on NVIDIA GPUs (and CPUs)\n\n"
            "usage: natgrad <command> [options]\n\n"
            "commands:\n"
            "  rbm train    train a binary RBM with PCD/CD: SGD, centering or FANG\n"
            "  rbm eval     log Z (AIS, exact for small models) and test log-likelihood of a checkpoint\n"
            "  info         backends, BLAS kernel and CUDA devices found\n\n"
            "Every command takes --help. Common options: --device auto|cpu|cuda, --seed S.\n"
            "Quick start: make run (prepares MNIST, trains a 784x500 RBM, evaluates it with AIS).\n",
            NG_VERSION);
}

int ng_cmd_info(int argc, char **argv) {
    ng_backend *be = NULL;
    char note[512];
    (void)argc;
    (void)argv;
    if (ng_backend_cpu_init(&be) == NG_OK) {
        printf("cpu backend: %s\n", be->description);
        ng_backend_free(be);
    }
    {
        const char *better = ng_cpu_blas_better_coretype();
        if (better) printf("note: OpenBLAS picked a slow kernel; OPENBLAS_CORETYPE=%s would be faster\n", better);
    }
    printf("cuda compiled in: %s\n", ng_cuda_compiled() ? "yes" : "no");
    if (ng_backend_init(NG_DEVICE_AUTO, &be, note, sizeof note) == NG_OK) {
        printf("auto device: %s\n", be->description);
        if (note[0]) printf("note: %s\n", note);
        ng_backend_free(be);
    }
    return NG_EXIT_OK;
}

int main(int argc, char **argv) {
    ng_cpu_blas_reexec(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return NG_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return NG_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("natgrad %s\n", NG_VERSION);
        return NG_EXIT_OK;
    }
    if (strcmp(argv[1], "rbm") == 0) return ng_cmd_rbm(argc - 2, argv + 2);
    if (strcmp(argv[1], "info") == 0) return ng_cmd_info(argc - 2, argv + 2);
    fprintf(stderr, "natgrad: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return NG_EXIT_USAGE;
}
