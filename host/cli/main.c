/* main.c: the natgrad command. Dispatches subcommands; with the rest of host/cli the only code
 * that prints or exits. First thing: make sure OpenBLAS runs the kernels this CPU supports
 * (re-exec if needed), then install the log callback and the signal handlers. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "natgrad/comm.h"

static void usage(FILE *f) {
    fprintf(f,
            "natgrad %s: natural-gradient training on NVIDIA GPUs (and CPUs)\n\n"
            "usage: natgrad <command> [options]\n\n"
            "commands:\n"
            "  rbm train    train a binary RBM with PCD/CD: SGD, centering or FANG\n"
            "  rbm eval     log Z (AIS, exact for small models) and test log-likelihood of a checkpoint\n"
            "  rbm sample   samples after N Gibbs sweeps and the weight filters, as PNG grids and .npy arrays\n"
            "  net train    train an MLP or deep autoencoder (presets of Hinton & Salakhutdinov 2006)\n"
            "  net eval     objective and reconstruction error of a network checkpoint\n"
            "  cnn train    train a convolutional classifier (conv, pooling, batch norm, PRONG whitening)\n"
            "  toy          Figure 1 of Sohl-Dickstein's note: steepest vs natural gradient on a 2-D Gaussian\n"
            "  export       write a checkpoint's parameters as safetensors (NumPy, PyTorch)\n"
            "  ckpt         list the fields and tensors of a checkpoint\n"
            "  info         backends, BLAS kernel and CUDA devices found\n\n"
            "Every command takes --help. Common options: --device auto|cpu|cuda[:N], --seed S,\n"
            "--threads N, --out DIR.\n"
            "Quick start: make run (prepares MNIST, trains a 784x500 RBM, evaluates it with AIS).\n",
            NG_VERSION);
}

int ng_cmd_info(int argc, char **argv) {
    ng_backend *be = NULL;
    char note[512], blas[160];
    int i, n;
    (void)argc;
    (void)argv;
    if (ng_backend_cpu_init(&be) == NG_OK) {
        printf("cpu backend: %s\n", be->description);
        ng_backend_free(be);
    }
    ng_cpu_blas_describe(blas, sizeof blas);
    if (!ng_cpu_blas_kernel_fits())
        printf("note: OpenBLAS runs a slower kernel than this CPU supports (%s); unset OPENBLAS_CORETYPE "
               "or let natgrad re-execute itself\n", blas);
    printf("cuda compiled in: %s\n", ng_cuda_compiled() ? "yes" : "no");
    printf("mpi compiled in: %s (mpirun -np N natgrad ...); nccl compiled in: %s\n", ng_comm_mpi_compiled() ? "yes" : "no",
           ng_comm_nccl_compiled() ? "yes" : "no");
    n = ng_cuda_device_count();
    printf("cuda devices: %d\n", n);
    for (i = 0; i < n; i++)
        if (ng_backend_cuda_init(i, &be) == NG_OK) {
            printf("  cuda:%d  %s\n", i, be->description);
            ng_backend_free(be);
        }
    if (ng_backend_init(NG_DEVICE_AUTO, -1, &be, note, sizeof note) == NG_OK) {
        printf("auto device: %s\n", be->description);
        if (note[0]) printf("note: %s\n", note);
        ng_backend_free(be);
    }
    return NG_EXIT_OK;
}

int main(int argc, char **argv) {
    ng_cpu_blas_reexec(argc, argv);
    ng_cli_setup();
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
    if (strcmp(argv[1], "rbm") == 0) return ng_cli_finish(ng_cmd_rbm(argc - 2, argv + 2));
    if (strcmp(argv[1], "net") == 0) return ng_cli_finish(ng_cmd_net(argc - 2, argv + 2));
    if (strcmp(argv[1], "cnn") == 0) return ng_cli_finish(ng_cmd_cnn(argc - 2, argv + 2));
    if (strcmp(argv[1], "toy") == 0) return ng_cmd_toy(argc - 2, argv + 2);
    if (strcmp(argv[1], "export") == 0) return ng_cmd_export(argc - 2, argv + 2);
    if (strcmp(argv[1], "ckpt") == 0) return ng_cmd_ckpt(argc - 2, argv + 2);
    if (strcmp(argv[1], "info") == 0) return ng_cmd_info(argc - 2, argv + 2);
    fprintf(stderr, "natgrad: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return NG_EXIT_USAGE;
}
