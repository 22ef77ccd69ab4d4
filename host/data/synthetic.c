/* synthetic.c: generated data sets. Bars and stripes (MacKay; used by small exact RBM tests, where
 * 16 visible units can be enumerated): on a side x side grid, either every row is all-on or all-off
 * (a bar pattern) or every column is (a stripe pattern).
 * Output is a (side*side, n) column-major host matrix of 0/1 values, pixel (r, c) at r*side + c.
 * Deterministic: no random numbers; the order of patterns is fixed and documented in data.h. */
#include "natgrad/data.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS_MAX_SIDE 15

int ng_bars_stripes_count(int side) {
    if (side < 1 || side > BS_MAX_SIDE) return 0;
    return (1 << (side + 1)) - 2;
}

/* Write pattern p (0 <= p < ng_bars_stripes_count(side)) into col (side*side floats, =). */
static void bars_stripes_pattern(int side, int p, float *col) {
    int nbars = 1 << side, r, c;
    int stripes = p >= nbars;
    int mask = stripes ? p - nbars + 1 : p; /* stripes skip the all-off and all-on masks */
    for (r = 0; r < side; r++)
        for (c = 0; c < side; c++)
            col[r * side + c] = (float)((mask >> (stripes ? c : r)) & 1);
}

ng_status ng_dataset_make_bars_stripes(int side, int n, ng_dataset *out) {
    int np, total, dim, j;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "bars-stripes: out is NULL");
    memset(out, 0, sizeof *out);
    np = ng_bars_stripes_count(side);
    if (np == 0)
        return ng_error(NG_ERR_INVALID_ARG, "bars-stripes: side %d out of range 1..%d", side,
                        BS_MAX_SIDE);
    if (n < 0) return ng_error(NG_ERR_INVALID_ARG, "bars-stripes: n = %d is negative", n);
    total = n ? n : np;
    dim = side * side;
    if ((uint64_t)dim * (uint64_t)total > (uint64_t)SIZE_MAX / sizeof(float))
        return ng_error(NG_ERR_INVALID_ARG, "bars-stripes: %d examples of %d pixels do not fit in memory",
                        total, dim);
    out->x = malloc((size_t)dim * (size_t)total * sizeof(float));
    if (!out->x)
        return ng_error(NG_ERR_OOM, "bars-stripes: cannot allocate %d x %d floats", dim, total);
    for (j = 0; j < total; j++) bars_stripes_pattern(side, j % np, out->x + (size_t)j * dim);
    out->dim = dim;
    out->n = total;
    out->height = side;
    out->width = side;
    snprintf(out->name, sizeof out->name, "bars-stripes-%dx%d", side, side);
    return NG_OK;
}
