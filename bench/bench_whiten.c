/* bench_whiten.c: the cost of PRONG's statistics and eigendecompositions on one backend (CPU by default,
 * --device cuda on a GPU): for d = 250, 500, 1000 and n = 1000 samples, the median over 5 rounds of
 *   add   ng_whiten_add (centre on the batch mean, syrk of the lower triangle, merge)
 *   gemm  one full gemm X X^T of the same samples (the alternative to syrk: both triangles)
 *   eig   ng_whiten_compute (syevd of Sigma, U^T, U c)
 * and the sgemm GFLOP/s of this process, as a markdown table on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/backend.h"
#include "natgrad/log.h"
#include "natgrad/whiten.h"

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    ng_backend *be;
    ng_device dev = NG_DEVICE_CPU;
    int idx = -1, di, r, n = 1000;
    static const int ds[] = {250, 500, 1000};
    if (argc == 3 && !strcmp(argv[1], "--device") && ng_device_parse(argv[2], &dev, &idx) != NG_OK) return 2;
    if (ng_backend_init(dev, idx, &be, NULL, 0) != NG_OK) return fprintf(stderr, "bench_whiten: %s\n", ng_last_error()), 1;
    printf("backend: %s\n\n| d | n | add (syrk) ms | full gemm X X^T ms | add / gemm | eigendecomposition ms | sgemm GFLOP/s (d x d x n) |\n|---|---|---|---|---|---|---|\n",
           be->description);
    for (di = 0; di < 3; di++) {
        int d = ds[di];
        ng_whiten w;
        float *X, *C, *h;
        double ta[5], tg[5], te[5];
        size_t i;
        if (ng_whiten_init(be, d, n, &w) != NG_OK) return fprintf(stderr, "%s\n", ng_last_error()), 1;
        if (ng_alloc(be, sizeof(float) * ((size_t)d * n + (size_t)d * d), (void **)&X) != NG_OK) return 1;
        C = X + (size_t)d * n;
        h = (float *)malloc(sizeof(float) * (size_t)d * n);
        for (i = 0; i < (size_t)d * n; i++) h[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
        ng_set(be, X, h, sizeof(float) * (size_t)d * n);
        for (r = 0; r < 5; r++) {
            double t0;
            ng_whiten_reset(&w);
            ng_synchronize(be);
            t0 = ng_time_s();
            if (ng_whiten_add(&w, X, d, n, 0) != NG_OK) return 1;
            ng_synchronize(be);
            ta[r] = ng_time_s() - t0;
            t0 = ng_time_s();
            if (ng_gemm(be, 0, 1, d, d, n, 1.0f, X, d, X, d, 0.0f, C, d) != NG_OK) return 1;
            ng_synchronize(be);
            tg[r] = ng_time_s() - t0;
            t0 = ng_time_s();
            if (ng_whiten_compute(&w, 0.1f) != NG_OK) return fprintf(stderr, "%s\n", ng_last_error()), 1;
            ng_synchronize(be);
            te[r] = ng_time_s() - t0;
        }
        qsort(ta, 5, sizeof(double), cmpd);
        qsort(tg, 5, sizeof(double), cmpd);
        qsort(te, 5, sizeof(double), cmpd);
        printf("| %d | %d | %.2f | %.2f | %.2f | %.1f | %.1f |\n", d, n, 1e3 * ta[2], 1e3 * tg[2], ta[2] / tg[2], 1e3 * te[2],
               2.0 * d * d * n / tg[2] / 1e9);
        ng_free(be, X);
        free(h);
        ng_whiten_free(&w);
    }
    ng_backend_free(be);
    return 0;
}
