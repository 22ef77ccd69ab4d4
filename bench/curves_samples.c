/* curves_samples.c: draws data/curves_like_samples.png, the picture of the curves-like data set
 * (host/data/curves.c, a substitute for CURVES) that data/README.md shows: images 0 .. 63 of the
 * named train split (seed NG_CURVES_LIKE_SEED), 8 per row, 2 pixels of gray border, written by
 * ng_png_write_image_grid. tests/test_curves.c draws the same picture and compares it with the
 * committed file. Run by `make data-curves-picture`.
 * Usage: curves_samples [OUT.png]   (default data/curves_like_samples.png) */
#include <stdio.h>

#include "bench_args.h"
#include "natgrad/data.h"
#include "natgrad/png.h"

#define PIC_N 64
#define PIC_COLS 8
#define PIC_PAD 2

int main(int argc, char **argv) {
    const char *out = "data/curves_like_samples.png";
    ng_dataset tr;
    {
        const ba_opt opts[] = {{"OUT.png", BA_STR, &out, 0, 0, 0, NULL, "the picture written", NULL, 0}, BA_END};
        const int rc = ba_parse("curves_samples", "Draws images 0 .. 63 of the curves-like training set, 8 per row "
                                                  "(make data-curves-picture).", opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    if (ng_dataset_load_named("curves-like", NULL, "train", &tr) != NG_OK ||
        ng_png_write_image_grid(out, tr.x, tr.height, tr.width, PIC_N, PIC_COLS, PIC_PAD) != NG_OK) {
        fprintf(stderr, "curves_samples: %s\n", ng_last_error());
        ng_dataset_free(&tr);
        return 1;
    }
    ng_dataset_free(&tr);
    printf("curves_samples: wrote %s (images 0 .. %d of curves-like train, %d per row)\n", out,
           PIC_N - 1, PIC_COLS);
    return 0;
}
