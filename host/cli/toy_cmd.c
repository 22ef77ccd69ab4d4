/* toy_cmd.c: `natgrad toy`, Figure 1 of Sohl-Dickstein's note on the 2-D Gaussian of natgrad/toy.h:
 * (a) the descent paths of steepest descent and the natural gradient in theta, (b) KL divergence
 * against steps, (c) the gradient field in theta, (d) in phi = G^(1/2) theta. Writes the numbers as
 * CSV and the four panels as PNG (gnuplot; without it the script is left beside the CSVs).
 * Everything is float64 on the host: the toy has two parameters. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natgrad/toy.h"

/* "X,Y" into v[2]; 0 on success */
static int parse_pair(const char *s, double v[2]) {
    char *end;
    errno = 0;
    v[0] = strtod(s, &end);
    if (end == s || *end != ',') return -1;
    s = end + 1;
    v[1] = strtod(s, &end);
    if (end == s || *end || errno == ERANGE) return -1;
    return isfinite(v[0]) && isfinite(v[1]) ? 0 : -1;
}

static void mv(const double M[4], const double x[2], double y[2]) {
    double y0 = M[0] * x[0] + M[1] * x[1];
    y[1] = M[2] * x[0] + M[3] * x[1];
    y[0] = y0;
}

static int close_or_complain(FILE *f, const char *path) {
    if (ferror(f) | (fclose(f) != 0)) {
        fprintf(stderr, "natgrad toy: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* the field on a grid x grid lattice over [lo0, hi0] x [lo1, hi1] of `space` (theta or phi):
 * position, -gradient in that space, and the same direction scaled to 0.8 of a cell */
static int write_field(const char *path, const ng_toy *t, int phi_space, const double Gih[4],
                       const double lo[2], const double hi[2], int grid) {
    FILE *f = fopen(path, "w");
    int i, j;
    double cell = fmin(hi[0] - lo[0], hi[1] - lo[1]) / (grid - 1);
    if (!f) {
        fprintf(stderr, "natgrad toy: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%s1,%s2,minus_grad1,minus_grad2,arrow1,arrow2\n", phi_space ? "phi" : "theta", phi_space ? "phi" : "theta");
    for (i = 0; i < grid; i++)
        for (j = 0; j < grid; j++) {
            double p[2] = {lo[0] + (hi[0] - lo[0]) * i / (grid - 1), lo[1] + (hi[1] - lo[1]) * j / (grid - 1)};
            double th[2], g[2], d[2], n;
            if (phi_space) mv(Gih, p, th);
            else th[0] = p[0], th[1] = p[1];
            ng_toy_gradient(t, th, g);
            if (phi_space) mv(Gih, g, d); /* eq. 21: grad_phi = G^(-1/2) grad_theta */
            else d[0] = g[0], d[1] = g[1];
            d[0] = -d[0];
            d[1] = -d[1];
            n = hypot(d[0], d[1]);
            fprintf(f, "%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n", p[0], p[1], d[0], d[1],
                    n > 0 ? 0.8 * cell * d[0] / n : 0.0, n > 0 ? 0.8 * cell * d[1] / n : 0.0);
        }
    return close_or_complain(f, path);
}

static void write_plots(const char *out, const char *paths_csv, const double ts[2], const double ps[2]) {
    char gp[4300], cmd[4400];
    FILE *f;
    int rc;
    snprintf(gp, sizeof gp, "%s/figure1.gp", out);
    f = fopen(gp, "w");
    if (!f) {
        fprintf(stderr, "natgrad toy: cannot write %s: %s (no plots)\n", gp, strerror(errno));
        return;
    }
    fprintf(f,
            "set datafile separator ','\nset terminal pngcairo size 640,560 noenhanced\nset grid\nset key top right\n"
            "cd '%s'\n"
            "set output 'a_paths.png'\nset title '(a) descent paths in theta'\nset xlabel 'theta1'\nset ylabel 'theta2'\n"
            "plot '%s' using (strcol('method') eq 'steepest' ? column('theta1') : NaN):(column('theta2')) with linespoints pt 7 ps 0.4 lc rgb 'red' title 'steepest descent', "
            "'' using (strcol('method') eq 'natural' ? column('theta1') : NaN):(column('theta2')) with linespoints pt 7 ps 0.4 lc rgb 'blue' title 'natural gradient', "
            "'+' using (%.17g):(%.17g) every ::0::0 with points pt 3 ps 2 lc rgb 'black' title 'optimum'\n"
            "set output 'b_kl.png'\nset title '(b) KL(p || q) against steps'\nset xlabel 'steps'\nset ylabel 'KL divergence'\nset logscale y\n"
            "plot '%s' using (strcol('method') eq 'steepest' ? column('step') : NaN):(column('kl')) with lines lw 2 lc rgb 'red' title 'steepest descent', "
            "'' using (strcol('method') eq 'natural' ? column('step') : NaN):(column('kl')) with lines lw 2 lc rgb 'blue' title 'natural gradient'\n"
            "unset logscale y\n"
            "set size ratio -1\nset output 'c_field_theta.png'\nset title '(c) -gradient in theta (arrows of equal length)'\nset xlabel 'theta1'\nset ylabel 'theta2'\n"
            "plot 'field_theta.csv' using 1:2:5:6 with vectors head size 0.05,20 filled lc rgb 'black' notitle, "
            "'+' using (%.17g):(%.17g) every ::0::0 with points pt 3 ps 2 lc rgb 'blue' title 'optimum'\n"
            "set output 'd_field_phi.png'\nset title '(d) -gradient in phi = G^(1/2) theta'\nset xlabel 'phi1'\nset ylabel 'phi2'\n"
            "plot 'field_phi.csv' using 1:2:5:6 with vectors head size 0.05,20 filled lc rgb 'black' notitle, "
            "'+' using (%.17g):(%.17g) every ::0::0 with points pt 3 ps 2 lc rgb 'blue' title 'optimum'\n",
            out, paths_csv, ts[0], ts[1], paths_csv, ts[0], ts[1], ps[0], ps[1]);
    if (fclose(f) != 0) {
        fprintf(stderr, "natgrad toy: cannot write %s: %s (no plots)\n", gp, strerror(errno));
        return;
    }
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "natgrad toy: gnuplot not found (apt-get install gnuplot-nox): plot script left in %s\n", gp);
        return;
    }
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", gp);
    rc = system(cmd);
    if (rc == 0) fprintf(stderr, "natgrad toy: panels %s/{a_paths,b_kl,c_field_theta,d_field_phi}.png\n", out);
    else fprintf(stderr, "natgrad toy: gnuplot failed on %s (exit %d)\n", gp, rc);
}

/* first step at which KL < tol (-1: never) */
static int steps_to(const ng_toy *t, const double *path, int steps, double tol) {
    int k;
    for (k = 0; k <= steps; k++)
        if (ng_toy_kl(t, path + 2 * k) < tol) return k;
    return -1;
}

int ng_cmd_toy(int argc, char **argv) {
    static const char *summary =
        "Figure 1 of Sohl-Dickstein's note: the 2-D Gaussian with means 3 theta1 + theta2/3 and theta1/3,\n"
        "fit by steepest descent and by the natural gradient (Fisher G = [[9 + 1/9, 1], [1, 1/9]]).\n"
        "Writes to --out: paths.csv (step, method, theta, phi = G^(1/2) theta, objective, KL for\n"
        "steepest, natural and phi-sgd = plain SGD on phi), field_theta.csv, field_phi.csv (the\n"
        "-gradient on a grid), summary.csv, and the panels a_paths.png, b_kl.png, c_field_theta.png,\n"
        "d_field_phi.png (gnuplot). Files already in --out are overwritten.";
    const char *out = "runs/toy", *theta_init_s = "1,-1", *theta_true_s = "0,0";
    int steps = 100, samples = 0, grid = 15, rc;
    float lr = 0.1f, lr_nat = 0.1f;
    uint64_t seed = 1;
    ng_opt opts[] = {
        {"out", OPT_STR, &out, "DIR", "output directory", 0, 0},
        {"steps", OPT_INT, &steps, "N", "descent steps of each method (1 .. 1000000)", 0, 0},
        {"lr", OPT_FLOAT, &lr, "ETA", "step size of steepest descent (diverges above 2 / 9.22)", 0, 0},
        {"lr-natural", OPT_FLOAT, &lr_nat, "ETA", "step size of the natural gradient and of SGD on phi", 0, 0},
        {"theta-init", OPT_STR, &theta_init_s, "X,Y", "starting parameters", 0, 0},
        {"theta-true", OPT_STR, &theta_true_s, "X,Y", "parameters that generate the data", 0, 0},
        {"samples", OPT_INT, &samples, "N", "data points drawn from theta-true (0: the exact distribution)", 0, 0},
        {"seed", OPT_U64, &seed, "S", "seed of the data draws", 0, 0},
        {"grid", OPT_INT, &grid, "N", "arrows per side of the gradient fields (2 .. 100)", 0, 0},
        NG_OPT_END};
    double t0[2], tt[2], G[4], Gh[4], Gih[4], ts[2], ps[2], *paths[3] = {NULL, NULL, NULL};
    const char *names[3] = {"steepest", "natural", "phi-sgd"};
    char path[4200];
    ng_toy toy;
    ng_status s;
    FILE *f;
    int m, k;

    rc = ng_cli_parse("toy", summary, opts, argc, argv);
    if (rc) return rc < 0 ? NG_EXIT_OK : rc;
    if (steps < 1 || steps > 1000000) {
        fprintf(stderr, "natgrad toy: --steps %d outside 1 .. 1000000\n", steps);
        return NG_EXIT_USAGE;
    }
    if (!(lr > 0.0f)) {
        fprintf(stderr, "natgrad toy: --lr %g must be positive\n", (double)lr);
        return NG_EXIT_USAGE;
    }
    if (!(lr_nat > 0.0f)) {
        fprintf(stderr, "natgrad toy: --lr-natural %g must be positive\n", (double)lr_nat);
        return NG_EXIT_USAGE;
    }
    if (samples < 0) {
        fprintf(stderr, "natgrad toy: --samples %d must be 0 (exact distribution) or positive\n", samples);
        return NG_EXIT_USAGE;
    }
    if (grid < 2 || grid > 100) {
        fprintf(stderr, "natgrad toy: --grid %d outside 2 .. 100\n", grid);
        return NG_EXIT_USAGE;
    }
    if (parse_pair(theta_init_s, t0)) {
        fprintf(stderr, "natgrad toy: --theta-init '%s': want two finite numbers X,Y\n", theta_init_s);
        return NG_EXIT_USAGE;
    }
    if (parse_pair(theta_true_s, tt)) {
        fprintf(stderr, "natgrad toy: --theta-true '%s': want two finite numbers X,Y\n", theta_true_s);
        return NG_EXIT_USAGE;
    }
    if (ng_mkdirs(out) != 0) {
        fprintf(stderr, "natgrad toy: cannot create output directory %s: %s\n", out, strerror(errno));
        return NG_EXIT_FAIL;
    }
    s = ng_toy_init(&toy, tt, samples, seed);
    if (s != NG_OK) {
        fprintf(stderr, "natgrad toy: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    ng_toy_fisher(&toy, G);
    s = ng_sym2_sqrt(G, Gh, Gih);
    ng_toy_optimum(&toy, ts);
    mv(Gh, ts, ps);
    for (m = 0; m < 3 && s == NG_OK; m++) {
        paths[m] = malloc(sizeof(double) * 2 * ((size_t)steps + 1));
        if (!paths[m]) {
            fprintf(stderr, "natgrad toy: out of memory for %d steps\n", steps);
            rc = NG_EXIT_FAIL;
            goto done;
        }
        s = ng_toy_descend(&toy, (ng_toy_method)m, t0, m == 0 ? (double)lr : (double)lr_nat, steps, paths[m]);
        if (s != NG_OK) ng_error_wrap(s, "%s: ", names[m]);
    }
    if (s != NG_OK) {
        fprintf(stderr, "natgrad toy: %s\n", ng_last_error());
        rc = NG_EXIT_FAIL;
        goto done;
    }

    snprintf(path, sizeof path, "%s/paths.csv", out);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "natgrad toy: cannot write %s: %s\n", path, strerror(errno));
        rc = NG_EXIT_FAIL;
        goto done;
    }
    fprintf(f, "step,method,theta1,theta2,phi1,phi2,objective,kl\n");
    for (m = 0; m < 3; m++)
        for (k = 0; k <= steps; k++) {
            double *th = paths[m] + 2 * k, phi[2];
            mv(Gh, th, phi);
            fprintf(f, "%d,%s,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n", k, names[m], th[0], th[1], phi[0], phi[1],
                    ng_toy_objective(&toy, th), ng_toy_kl(&toy, th));
        }
    if (close_or_complain(f, path)) {
        rc = NG_EXIT_FAIL;
        goto done;
    }
    {
        /* the fields: a theta box around the start and the optimum, and its image in phi */
        double lo[2], hi[2], plo[2] = {INFINITY, INFINITY}, phi_hi[2] = {-INFINITY, -INFINITY}, c[2], pc[2], span;
        int a, b;
        char p2[4200];
        span = 1.25 * fmax(fmax(fabs(t0[0] - ts[0]), fabs(t0[1] - ts[1])), 0.5);
        lo[0] = ts[0] - span, hi[0] = ts[0] + span, lo[1] = ts[1] - span, hi[1] = ts[1] + span;
        for (a = 0; a < 2; a++)
            for (b = 0; b < 2; b++) {
                c[0] = a ? hi[0] : lo[0];
                c[1] = b ? hi[1] : lo[1];
                mv(Gh, c, pc);
                plo[0] = fmin(plo[0], pc[0]), phi_hi[0] = fmax(phi_hi[0], pc[0]);
                plo[1] = fmin(plo[1], pc[1]), phi_hi[1] = fmax(phi_hi[1], pc[1]);
            }
        {
            /* a square phi box (the field is isotropic there) centred on phi_star */
            double h = fmax(fmax(phi_hi[0] - ps[0], ps[0] - plo[0]), fmax(phi_hi[1] - ps[1], ps[1] - plo[1]));
            plo[0] = ps[0] - h, phi_hi[0] = ps[0] + h, plo[1] = ps[1] - h, phi_hi[1] = ps[1] + h;
        }
        snprintf(path, sizeof path, "%s/field_theta.csv", out);
        snprintf(p2, sizeof p2, "%s/field_phi.csv", out);
        if (write_field(path, &toy, 0, Gih, lo, hi, grid) || write_field(p2, &toy, 1, Gih, plo, phi_hi, grid)) {
            rc = NG_EXIT_FAIL;
            goto done;
        }
    }
    {
        int k3[3], k6[3];
        snprintf(path, sizeof path, "%s/summary.csv", out);
        f = fopen(path, "w");
        if (!f) {
            fprintf(stderr, "natgrad toy: cannot write %s: %s\n", path, strerror(errno));
            rc = NG_EXIT_FAIL;
            goto done;
        }
        fprintf(f, "method,step_size,steps,final_theta1,final_theta2,final_distance,final_kl,steps_to_kl_1e-3,steps_to_kl_1e-6\n");
        for (m = 0; m < 3; m++) {
            double *th = paths[m] + 2 * steps;
            k3[m] = steps_to(&toy, paths[m], steps, 1e-3);
            k6[m] = steps_to(&toy, paths[m], steps, 1e-6);
            fprintf(f, "%s,%g,%d,%.17g,%.17g,%.17g,%.17g,%d,%d\n", names[m], m == 0 ? (double)lr : (double)lr_nat, steps,
                    th[0], th[1], hypot(th[0] - ts[0], th[1] - ts[1]), ng_toy_kl(&toy, th), k3[m], k6[m]);
        }
        if (close_or_complain(f, path)) {
            rc = NG_EXIT_FAIL;
            goto done;
        }
        printf("G = [[%.6f, %.6f], [%.6f, %.6f]]  G^(1/2) = [[%.6f, %.6f], [%.6f, %.6f]]\n", G[0], G[1], G[2], G[3], Gh[0],
               Gh[1], Gh[2], Gh[3]);
        printf("theta_star = (%.6g, %.6g)  KL(theta_init) = %.6g\n", ts[0] + 0.0, ts[1] + 0.0, ng_toy_kl(&toy, t0));
        for (m = 0; m < 3; m++)
            printf("%-9s step %-6g final KL %-11.4g |theta - theta_star| %-11.4g steps to KL < 1e-3: %-5d < 1e-6: %d\n",
                   names[m], m == 0 ? (double)lr : (double)lr_nat, ng_toy_kl(&toy, paths[m] + 2 * steps),
                   hypot(paths[m][2 * steps] - ts[0], paths[m][2 * steps + 1] - ts[1]), k3[m], k6[m]);
        printf("(-1: not reached within %d steps)\n", steps);
    }
    write_plots(out, "paths.csv", ts, ps);
    rc = NG_EXIT_OK;
done:
    for (m = 0; m < 3; m++) free(paths[m]);
    return rc;
}
