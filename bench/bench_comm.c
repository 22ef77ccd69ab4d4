/* bench_comm.c: time of ng_comm_allreduce (sum, float32, in place) of the CPU backend's buffers
 * for a few sizes, run under `mpirun -np N` (bench/dist_bench.sh). Rank 0 prints CSV lines
 * "ranks,floats,bytes,reps,ms_median,ms_min,algbw_GBps,busbw_GBps" where algbw = bytes / time and
 * busbw = algbw * 2 (N - 1) / N (the bytes each rank moves in a ring all-reduce, NCCL's convention),
 * from the median time. A barrier precedes each timed call so the time is the reduction's and not
 * a late rank's. Sizes: argv[1..] (floats, at most 64), default 1e3 1e5 1e6 and the MNIST autoencoder's
 * 2,837,314 parameters. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    static const long dflt[] = {1000, 100000, 1000000, 2837314};
    enum { REPS = 21 };
    ng_comm *c;
    ng_backend *be;
    long sizes[64];
    int k, n_sizes = 0;
    {
        const ba_opt opts[] = {
            {"SIZE", BA_LONG, sizes, 1, LONG_MAX, BA_MANY, NULL, "floats per all-reduce, one CSV line each (default 1000 100000 1000000 2837314)", &n_sizes, 64},
            BA_END};
        const int rc = ba_parse("bench_comm", "Time of ng_comm_allreduce (sum, float32, in place) per size, run under mpirun -np N "
                                              "(bench/dist_bench.sh); rank 0 prints CSV lines.", opts, argc, argv);
        if (rc != BA_RUN) return rc;
        if (n_sizes == 0)
            for (k = 0; k < 4; k++) sizes[n_sizes++] = dflt[k];
    }
    if (ng_comm_init(&c, 120.0) != NG_OK || ng_backend_cpu_init(&be) != NG_OK) {
        fprintf(stderr, "bench_comm: %s\n", ng_last_error());
        return 1;
    }
    for (k = 0; k < n_sizes; k++) {
        long n = sizes[k];
        float *x;
        double t[REPS], med, bytes = 4.0 * (double)n;
        int r;
        if (n < 1 || ng_alloc(be, (size_t)n * sizeof(float), (void **)&x) != NG_OK) {
            fprintf(stderr, "bench_comm: bad size %ld\n", n);
            return 1;
        }
        ng_fill(be, (size_t)n, 1.0f, x);
        for (r = 0; r < REPS; r++) {
            double t0;
            if (ng_comm_barrier(c, "bench") != NG_OK) return 1;
            t0 = ng_time_s();
            if (ng_comm_allreduce(c, be, NG_F32, x, (size_t)n, "bench buffer") != NG_OK) {
                fprintf(stderr, "bench_comm: %s\n", ng_last_error());
                return 1;
            }
            t[r] = ng_time_s() - t0;
        }
        qsort(t, REPS, sizeof t[0], cmp_d);
        med = t[REPS / 2];
        if (c->rank == 0)
            printf("%d,%ld,%.0f,%d,%.4f,%.4f,%.3f,%.3f\n", c->world, n, bytes, REPS, 1e3 * med, 1e3 * t[0], bytes / med / 1e9,
                   bytes / med / 1e9 * 2.0 * (c->world - 1) / c->world);
        ng_free(be, x);
    }
    ng_backend_free(be);
    ng_comm_free(c);
    return 0;
}
