/* ica_bench.c: linear ICA with the W^T W rule (Sohl-Dickstein section 2.9, eq. 43; Amari 1998)
 * against the plain gradient (make ica-bench). n = 4 unit-variance Laplace sources, T = 5000
 * samples, mixing matrices of condition number 1 (orthogonal) and 20, seed 7; full-batch steps
 * from W = I. Each rule runs at every step size of a grid; the CSV holds every step's objective and
 * Amari index (every step of the first 100, then every 10th; 0: W A is a scaled permutation, i.e. the mixing matrix is recovered up to
 * permutation and scale). Usage: ica_bench OUT.csv [STEPS]. Prints a summary table (markdown). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_args.h"
#include "natgrad/ica.h"

int main(int argc, char **argv) {
    static const double conds[2] = {1.0, 20.0}, etas[5] = {1.0, 0.3, 0.1, 0.03, 0.01};
    const char *rules[2] = {"plain", "natural"};
    const char *out = NULL;
    int steps = 1000, c, r, e, k, i, n = 4, T = 5000;
    FILE *f;
    double *J, *am, W[16];
    {
        const ba_opt opts[] = {
            {"OUT.csv", BA_STR, &out, 0, 0, BA_REQUIRED, NULL, "the CSV written (every step's objective and Amari index)", NULL, 0},
            {"STEPS", BA_INT, &steps, 1, INT_MAX - 1, 0, NULL, "full-batch steps of each rule and step size", NULL, 0},
            BA_END};
        const int rc = ba_parse("ica_bench", "Linear ICA with the natural-gradient W^T W rule against the plain gradient; "
                                             "prints a markdown summary (make ica-bench).", opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    f = fopen(out, "w");
    J = (double *)malloc(sizeof(double) * (steps + 1));
    am = (double *)malloc(sizeof(double) * (steps + 1));
    if (!f || !J || !am) {
        fprintf(stderr, "ica_bench: cannot write %s or out of memory\n", out);
        return 1;
    }
    fprintf(f, "cond,rule,eta,step,objective,amari\n");
    printf("| condition of A | rule | step size | objective after %d steps | Amari index after %d | first step with index < 0.05 |\n", steps, steps);
    printf("|---|---|---|---|---|---|\n");
    for (c = 0; c < 2; c++) {
        ng_ica_problem p;
        if (ng_ica_problem_init(&p, n, T, conds[c], 7) != NG_OK) {
            fprintf(stderr, "ica_bench: %s\n", ng_last_error());
            return 1;
        }
        for (r = 0; r < 2; r++)
            for (e = 0; e < 5; e++) {
                ng_status s;
                int first = -1;
                for (i = 0; i < 16; i++) W[i] = i % 5 == 0;
                s = ng_ica_train(&p, (ng_ica_rule)r, etas[e], steps, W, J, am);
                if (s != NG_OK) {
                    printf("| %g | %s | %g | diverged | | |\n", conds[c], rules[r], etas[e]);
                    ng_clear_error();
                    continue;
                }
                for (k = 0; k <= steps; k++) {
                    /* every step of the first 100, then every 10th */
                    if (k <= 100 || k % 10 == 0 || k == steps)
                        fprintf(f, "%g,%s,%g,%d,%.10g,%.6g\n", conds[c], rules[r], etas[e], k, J[k], am[k]);
                    if (first < 0 && am[k] < 0.05) first = k;
                }
                if (first < 0) printf("| %g | %s | %g | %.5f | %.4f | not reached |\n", conds[c], rules[r], etas[e], J[steps], am[steps]);
                else printf("| %g | %s | %g | %.5f | %.4f | %d |\n", conds[c], rules[r], etas[e], J[steps], am[steps], first);
            }
        ng_ica_problem_free(&p);
    }
    fclose(f);
    free(J);
    free(am);
    return 0;
}
