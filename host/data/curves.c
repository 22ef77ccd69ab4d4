/* curves.c: the "curves-like" data set, a generated SUBSTITUTE for CURVES (Hinton & Salakhutdinov
 * 2006; Salakhutdinov's digs3pts_1.mat), which is not obtainable here. Following its published
 * description: 28x28 grayscale images in [0, 1], each an anti-aliased smooth curve shaped by three
 * random 2-D points. The recipe below is the specification (data/README.md repeats it); changing
 * any constant changes the data set, so data/curves_like_samples.png and the statistics in
 * tests/test_curves.c must be regenerated with it.
 *
 * Coordinates are in pixels: x along columns, y along rows, pixel (r, c) is the unit square
 * [c, c+1) x [r, r+1) with its centre at (c + 0.5, r + 0.5).
 *
 * Image i of seed S uses the Philox stream key = ng_rng_stream_key(S, NG_RNG_CURVES), step i:
 * u_k = ng_rng_uniform(key, i, k), uniform in (0, 1]. Nothing else is drawn, so image i depends
 * only on (S, i), whatever other images are generated with it.
 *  1. Attempt a = 0, 1, ... draws three points P_m = (2 + 24 u_{6a+2m}, 2 + 24 u_{6a+2m+1}),
 *     m = 0, 1, 2: uniform in the square [2, 26]^2 (a 2-pixel margin).
 *  2. It is accepted when the end points are at least 12 pixels apart, |P2 - P0| >= 12 (this
 *     keeps strokes long and rules out hairpins that retrace themselves); otherwise the next
 *     attempt is drawn. About 48% of attempts are rejected; after 128 rejections (probability
 *     below 1e-40) the image is the fixed straight stroke from (4, 14) to (24, 14).
 *  3. The curve is the quadratic Bezier curve with control points P0, P1, P2:
 *     Q(t) = (1-t)^2 P0 + 2t(1-t) P1 + t^2 P2, t in [0, 1]. It starts at P0, ends at P2 and bends
 *     towards P1 (passing through (P0 + 2 P1 + P2) / 4 at t = 1/2); it lies inside the triangle
 *     P0 P1 P2, hence inside the image.
 *  4. Rendering: the polyline through Q(k/64), k = 0..64, is drawn as a stroke of width 1.5 with a
 *     1-pixel linear anti-aliasing ramp: with d the exact Euclidean distance from the pixel's
 *     centre to the polyline, the pixel is clamp(1.25 - d, 0, 1) (1 for d <= 0.25, 0 for
 *     d >= 1.25), the box-filter coverage of a straight stroke of half-width 0.75. No per-image
 *     normalisation: the brightest pixel of an image is 1 unless the curve avoids every pixel
 *     centre by more than 0.25 (about 8 images in 10,000; their maximum is still above 0.8).
 *     Only +, -, *, /, sqrt and floor/ceil on doubles (IEEE, no contraction in ISO C mode):
 *     the images are bit-identical across runs, thread counts and machines.
 * Labels: none. */
#include "natgrad/data.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/rng.h"

#define CURVES_SIDE NG_CURVES_SIDE
#define CURVES_SEGMENTS 64      /* polyline segments of a curve */
#define CURVES_ATTEMPTS 128     /* attempts per image before the fixed fallback stroke */
#define CURVES_LO 2.0           /* control points uniform in [LO, LO + SPAN]^2 */
#define CURVES_SPAN 24.0
#define CURVES_MIN_ENDS 12.0    /* accepted curves have their end points at least this far apart */
#define CURVES_HALF_WIDTH 0.75  /* stroke half-width */
#define CURVES_REACH (CURVES_HALF_WIDTH + 0.5) /* intensity = clamp(REACH - d, 0, 1) */

typedef struct pt {
    double x, y;
} pt;

/* Attempt a of image i: 0 when it is rejected, else 1 with the samples Q(k/64) in q. */
static int curve_attempt(uint64_t key, uint64_t i, int a, pt q[CURVES_SEGMENTS + 1]) {
    pt p[3];
    double dx, dy;
    int m, k;
    for (m = 0; m < 3; m++) {
        uint64_t e = 6 * (uint64_t)a + 2 * (uint64_t)m;
        p[m].x = CURVES_LO + CURVES_SPAN * (double)ng_rng_uniform(key, i, e);
        p[m].y = CURVES_LO + CURVES_SPAN * (double)ng_rng_uniform(key, i, e + 1);
    }
    dx = p[2].x - p[0].x;
    dy = p[2].y - p[0].y;
    if (!(dx * dx + dy * dy >= CURVES_MIN_ENDS * CURVES_MIN_ENDS)) return 0;
    for (k = 0; k <= CURVES_SEGMENTS; k++) {
        double t = (double)k / CURVES_SEGMENTS, u = 1.0 - t;
        q[k].x = u * u * p[0].x + 2.0 * t * u * p[1].x + t * t * p[2].x;
        q[k].y = u * u * p[0].y + 2.0 * t * u * p[1].y + t * t * p[2].y;
    }
    return 1;
}

/* Squared distance from c to the segment [a, b]. */
static double seg_dist2(pt c, pt a, pt b) {
    double vx = b.x - a.x, vy = b.y - a.y, wx = c.x - a.x, wy = c.y - a.y;
    double vv = vx * vx + vy * vy, t = vv > 0.0 ? (wx * vx + wy * vy) / vv : 0.0;
    double dx, dy;
    t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
    dx = wx - t * vx;
    dy = wy - t * vy;
    return dx * dx + dy * dy;
}

static int clamp_index(double v) {
    return v < 0.0 ? 0 : v > CURVES_SIDE - 1 ? CURVES_SIDE - 1 : (int)v;
}

/* Image i of the stream key into img (784 floats, =). */
static void curve_image(uint64_t key, uint64_t i, float *img) {
    pt q[CURVES_SEGMENTS + 1];
    double d2[CURVES_SIDE * CURVES_SIDE];
    int a, k, r, c, nseg = CURVES_SEGMENTS;

    for (a = 0; a < CURVES_ATTEMPTS; a++)
        if (curve_attempt(key, i, a, q)) break;
    if (a == CURVES_ATTEMPTS) { /* fallback, documented above */
        q[0] = (pt){4.0, 14.0};
        q[1] = (pt){24.0, 14.0};
        nseg = 1;
    }
    for (k = 0; k < CURVES_SIDE * CURVES_SIDE; k++) d2[k] = HUGE_VAL;
    /* each segment updates only the pixels whose centres can be within reach of it */
    for (k = 0; k < nseg; k++) {
        pt s0 = q[k], s1 = q[k + 1];
        int c0 = clamp_index(floor(fmin(s0.x, s1.x) - CURVES_REACH - 0.5));
        int c1 = clamp_index(ceil(fmax(s0.x, s1.x) + CURVES_REACH - 0.5));
        int r0 = clamp_index(floor(fmin(s0.y, s1.y) - CURVES_REACH - 0.5));
        int r1 = clamp_index(ceil(fmax(s0.y, s1.y) + CURVES_REACH - 0.5));
        for (r = r0; r <= r1; r++)
            for (c = c0; c <= c1; c++) {
                pt centre = {c + 0.5, r + 0.5};
                double e = seg_dist2(centre, s0, s1);
                if (e < d2[r * CURVES_SIDE + c]) d2[r * CURVES_SIDE + c] = e;
            }
    }
    for (k = 0; k < CURVES_SIDE * CURVES_SIDE; k++) {
        double v = CURVES_REACH - sqrt(d2[k]); /* sqrt(inf) = inf: v = -inf, clamped to 0 */
        img[k] = (float)(v <= 0.0 ? 0.0 : v >= 1.0 ? 1.0 : v);
    }
}

ng_status ng_dataset_make_curves(uint64_t seed, int first, int n, ng_dataset *out) {
    const int dim = CURVES_SIDE * CURVES_SIDE;
    uint64_t key;
    int j;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "curves-like: out is NULL");
    memset(out, 0, sizeof *out);
    if (n < 1 || n > NG_CURVES_MAX_N)
        return ng_error(NG_ERR_INVALID_ARG, "curves-like: n = %d images is outside 1 .. %d", n,
                        NG_CURVES_MAX_N);
    if (first < 0 || first > INT_MAX - n)
        return ng_error(NG_ERR_INVALID_ARG,
                        "curves-like: first image %d is outside 0 .. %d (first + n must fit in an int)",
                        first, INT_MAX - n);
    out->x = malloc((size_t)dim * (size_t)n * sizeof(float));
    if (!out->x)
        return ng_error(NG_ERR_OOM, "curves-like: cannot allocate %d images of %d pixels", n, dim);
    key = ng_rng_stream_key(seed, NG_RNG_CURVES);
#pragma omp parallel for schedule(static)
    for (j = 0; j < n; j++) curve_image(key, (uint64_t)first + (uint64_t)j, out->x + (size_t)j * dim);
    out->dim = dim;
    out->n = n;
    out->height = CURVES_SIDE;
    out->width = CURVES_SIDE;
    snprintf(out->name, sizeof out->name, "curves-like");
    return NG_OK;
}
