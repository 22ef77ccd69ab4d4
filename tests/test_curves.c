/* test_curves.c: the curves-like generator (host/data/curves.c), a substitute for CURVES.
 * Determinism (same seed twice gives identical bytes; image i generated alone, in any range, or
 * with any number of OpenMP threads equals image i of a batch; a pinned CRC of the first images
 * of the named set, so an unintended change of the recipe is caught), different seeds differ,
 * values in [0, 1], ink statistics within the documented ranges (below), the named splits
 * ("curves-like" train = images 0 .. 19999, test = 20000 .. 29999 of NG_CURVES_LIKE_SEED), and
 * refused arguments. It also draws the 64-sample picture into BUILD/curves_like_samples.png and
 * compares its pixels with the committed data/curves_like_samples.png (`make data-curves-picture`
 * regenerates that file).
 *
 * Documented ranges, for the 30,000 images of the named set (measured: per-image ink sum
 * 19.96 .. 55.76, mean 32.3; pixels > 0 per image 3.6% .. 12.0%, mean 7.1%; mean intensity 0.0412;
 * brightest pixel >= 0.817, and exactly 1 in 29,975 images):
 * every image has ink sum (sum of its pixels) in [15, 70], between 2% and 20% of its pixels
 * non-zero (never saturated: fewer than 20% of pixels above 0.5) and a brightest pixel >= 0.8;
 * the mean intensity over the set is in [0.036, 0.046]; at least 99.5% of images reach 1. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "natgrad/data.h"
#include "natgrad/png.h"
#include "natgrad/status.h"
#include "png_decode.h"

#define DIM (NG_CURVES_SIDE * NG_CURVES_SIDE)
/* the committed picture: images 0 .. 63 of the named train split, 8 columns, 2 pixels of border
 * (the same as bench/curves_samples.c) */
#define PIC_N 64
#define PIC_COLS 8
#define PIC_PAD 2
/* crc32 of the float bytes (little-endian hosts) of images 0 .. 999 of NG_CURVES_LIKE_SEED */
#define PINNED_CRC 0x7daab25au

static const char *argv0 = "";

static int same_images(const ng_dataset *a, int ja, const ng_dataset *b, int jb, int count) {
    return memcmp(a->x + (size_t)ja * DIM, b->x + (size_t)jb * DIM, sizeof(float) * DIM * count) == 0;
}

static int test_determinism(void) {
    ng_dataset a, b, one, mid;
    static const int probe[] = {0, 1, 57, 198, 199};
    size_t k;
    int r = NGT_FAIL;
    NGT_OK(ng_dataset_make_curves(12345, 0, 200, &a));
    NGT_OK(ng_dataset_make_curves(12345, 0, 200, &b));
    NGT_CHECK(a.n == 200 && a.dim == DIM && a.height == 28 && a.width == 28 && !a.labels,
              "shape %d x %d (%d x %d), labels %p", a.dim, a.n, a.height, a.width, (void *)a.labels);
    NGT_CHECK(strcmp(a.name, "curves-like") == 0, "name '%s'", a.name);
    NGT_CHECK(same_images(&a, 0, &b, 0, 200), "same seed twice differs");
    for (k = 0; k < sizeof probe / sizeof probe[0]; k++) {
        NGT_OK(ng_dataset_make_curves(12345, probe[k], 1, &one));
        if (!same_images(&a, probe[k], &one, 0, 1)) {
            printf("  image %d alone differs from image %d of the batch\n", probe[k], probe[k]);
            ng_dataset_free(&one);
            goto done;
        }
        ng_dataset_free(&one);
    }
    NGT_OK(ng_dataset_make_curves(12345, 50, 100, &mid));
    if (!same_images(&a, 50, &mid, 0, 100)) {
        printf("  images 50 .. 149 generated as a range differ from the batch\n");
        ng_dataset_free(&mid);
        goto done;
    }
    ng_dataset_free(&mid);
    /* thread count does not matter */
    {
        int saved = omp_get_max_threads(), t;
        for (t = 1; t <= 3; t += 2) {
            ng_status s;
            omp_set_num_threads(t);
            s = ng_dataset_make_curves(12345, 0, 200, &one);
            omp_set_num_threads(saved);
            NGT_OK(s);
            if (!same_images(&a, 0, &one, 0, 200)) {
                printf("  %d OpenMP thread(s) give different images\n", t);
                ng_dataset_free(&one);
                goto done;
            }
            ng_dataset_free(&one);
        }
    }
    r = NGT_PASS;
done:
    ng_dataset_free(&a);
    ng_dataset_free(&b);
    return r;
}

/* A pinned checksum of the named set's first 1000 images: the generator is the specification,
 * so a change of the recipe (or of Philox, or of the arithmetic) must be deliberate. */
static int test_pinned_checksum(void) {
    ng_dataset d;
    uint32_t crc;
    const union {
        uint32_t u;
        unsigned char c[4];
    } endian = {1};
    if (!endian.c[0]) return ngt_skip("big-endian host: the pinned CRC is of little-endian floats");
    NGT_OK(ng_dataset_make_curves(NG_CURVES_LIKE_SEED, 0, 1000, &d));
    crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const unsigned char *)d.x, sizeof(float) * DIM * 1000);
    ng_dataset_free(&d);
    NGT_CHECK(crc == PINNED_CRC,
              "crc32 of images 0 .. 999 is 0x%08x, pinned 0x%08x: the curves-like recipe changed; if "
              "that is intended, update PINNED_CRC, data/README.md and run make data-curves-picture",
              crc, PINNED_CRC);
    return NGT_PASS;
}

static int test_seeds_differ(void) {
    ng_dataset a, b;
    int j, same = 0;
    NGT_OK(ng_dataset_make_curves(1, 0, 500, &a));
    NGT_OK(ng_dataset_make_curves(2, 0, 500, &b));
    for (j = 0; j < 500; j++) same += same_images(&a, j, &b, j, 1);
    ng_dataset_free(&a);
    ng_dataset_free(&b);
    NGT_CHECK(same == 0, "%d of 500 images are equal for seeds 1 and 2", same);
    /* distinct images within one seed */
    NGT_OK(ng_dataset_make_curves(1, 0, 500, &a));
    for (j = 1; j < 500; j++) same += same_images(&a, j - 1, &a, j, 1);
    ng_dataset_free(&a);
    NGT_CHECK(same == 0, "%d consecutive images are equal", same);
    return NGT_PASS;
}

/* The statistics documented at the top, over the whole named set (train and test). */
static int test_statistics(void) {
    ng_dataset tr, te;
    const ng_dataset *sets[2] = {&tr, &te};
    double total = 0.0;
    int s, j, k, reach_one = 0, n = 0, r = NGT_FAIL;
    NGT_OK(ng_dataset_load_named("curves-like", NULL, "train", &tr));
    if (ng_dataset_load_named("curves-like", NULL, "test", &te) != NG_OK) {
        printf("  test split: %s\n", ng_last_error());
        ng_dataset_free(&tr);
        return NGT_FAIL;
    }
    for (s = 0; s < 2; s++)
        for (j = 0; j < sets[s]->n; j++, n++) {
            const float *im = sets[s]->x + (size_t)j * DIM;
            double sum = 0.0, mx = 0.0;
            int on = 0, bright = 0;
            for (k = 0; k < DIM; k++) {
                if (!(im[k] >= 0.0f && im[k] <= 1.0f)) {
                    printf("  %s image %d pixel %d is %g, outside [0, 1]\n", sets[s]->name, j, k,
                           (double)im[k]);
                    goto done;
                }
                sum += im[k];
                on += im[k] > 0.0f;
                bright += im[k] > 0.5f;
                if (im[k] > mx) mx = im[k];
            }
            if (!(sum >= 15.0 && sum <= 70.0) || on < 0.02 * DIM || on > 0.20 * DIM ||
                bright >= 0.20 * DIM || mx < 0.8) {
                printf("  %s image %d: ink sum %.2f, %d pixels > 0, %d > 0.5, brightest %.3f "
                       "(want sum in [15, 70], 2%% .. 20%% > 0, < 20%% > 0.5, brightest >= 0.8)\n",
                       sets[s]->name, j, sum, on, bright, mx);
                goto done;
            }
            reach_one += mx == 1.0;
            total += sum;
        }
    total /= (double)n * DIM;
    if (!(total >= 0.036 && total <= 0.046)) {
        printf("  mean intensity %.4f outside [0.036, 0.046]\n", total);
        goto done;
    }
    if (reach_one < 0.995 * n) {
        printf("  only %d of %d images reach 1\n", reach_one, n);
        goto done;
    }
    r = NGT_PASS;
done:
    ng_dataset_free(&tr);
    ng_dataset_free(&te);
    return r;
}

static int test_named_splits(void) {
    ng_dataset tr, te, g;
    int r = NGT_FAIL;
    NGT_OK(ng_dataset_load_named("curves-like", "no/such/dir", "train", &tr));
    NGT_OK(ng_dataset_load_named("curves-like", NULL, "test", &te));
    if (tr.n != NG_CURVES_LIKE_TRAIN || te.n != NG_CURVES_LIKE_TEST || tr.n != 20000 ||
        te.n != 10000 || tr.dim != DIM || te.dim != DIM || tr.labels || te.labels) {
        printf("  splits: train %d x %d, test %d x %d\n", tr.dim, tr.n, te.dim, te.n);
        goto done;
    }
    if (strcmp(tr.name, "curves-like-train") != 0 || strcmp(te.name, "curves-like-test") != 0) {
        printf("  names '%s' '%s'\n", tr.name, te.name);
        goto done;
    }
    if (ng_dataset_make_curves(NG_CURVES_LIKE_SEED, 19999, 2, &g) != NG_OK) {
        printf("  %s\n", ng_last_error());
        goto done;
    }
    if (!same_images(&g, 0, &tr, 19999, 1) || !same_images(&g, 1, &te, 0, 1)) {
        printf("  the splits are not images 0 .. 19999 and 20000 .. 29999 of the seed\n");
        ng_dataset_free(&g);
        goto done;
    }
    ng_dataset_free(&g);
    if (ng_dataset_load_named("curves-like", NULL, "validation", &g) != NG_ERR_INVALID_ARG) {
        printf("  split 'validation' accepted\n");
        goto done;
    }
    r = NGT_PASS;
done:
    ng_dataset_free(&tr);
    ng_dataset_free(&te);
    return r;
}

static int refused(ng_status s, const char *needle, const char *what) {
    if (s != NG_ERR_INVALID_ARG) {
        printf("  %s: got %s (%s), want NG_ERR_INVALID_ARG\n", what, ng_status_name(s), ng_last_error());
        return 0;
    }
    if (!strstr(ng_last_error(), "curves-like") || (needle && !strstr(ng_last_error(), needle))) {
        printf("  %s: message '%s' should name curves-like and '%s'\n", what, ng_last_error(),
               needle ? needle : "");
        return 0;
    }
    return 1;
}

static int test_bad_arguments(void) {
    ng_dataset d;
    memset(&d, 0x5a, sizeof d);
    NGT_CHECK(refused(ng_dataset_make_curves(1, 0, 10, NULL), "NULL", "NULL out"), "NULL out");
    NGT_CHECK(refused(ng_dataset_make_curves(1, 0, -1, &d), "-1", "n = -1"), "n < 0");
    NGT_CHECK(d.x == NULL && d.n == 0, "a refused call leaves the output zeroed");
    NGT_CHECK(refused(ng_dataset_make_curves(1, 0, 0, &d), "0", "n = 0"), "n = 0");
    NGT_CHECK(refused(ng_dataset_make_curves(1, 0, NG_CURVES_MAX_N + 1, &d), "10000001", "n huge"),
              "n > 1e7");
    NGT_CHECK(refused(ng_dataset_make_curves(1, 0, INT_MAX, &d), NULL, "n INT_MAX"), "n INT_MAX");
    NGT_CHECK(refused(ng_dataset_make_curves(1, -1, 10, &d), "-1", "first = -1"), "first < 0");
    NGT_CHECK(refused(ng_dataset_make_curves(1, INT_MAX - 5, 10, &d), NULL, "first + n overflows"),
              "first + n > INT_MAX");
    NGT_OK(ng_dataset_make_curves(1, INT_MAX - 10, 10, &d)); /* the last images that exist */
    ng_dataset_free(&d);
    NGT_CHECK(ng_dataset_load_named("curves", NULL, "train", &d) == NG_ERR_INVALID_ARG &&
                  strstr(ng_last_error(), "curves-like"),
              "unknown name 'curves' should list curves-like: %s", ng_last_error());
    return NGT_PASS;
}

/* The directory holding BUILD/tests/test_curves, i.e. BUILD (or "." when run from elsewhere). */
static void build_dir(char *out, size_t cap) {
    const char *slash = strrchr(argv0, '/');
    if (slash) snprintf(out, cap, "%.*s/..", (int)(slash - argv0), argv0);
    else snprintf(out, cap, "..");
}

static int test_sample_picture(void) {
    ng_dataset tr;
    ngt_png got, want;
    char dir[512], path[600], committed[600], err[256];
    int r = NGT_FAIL;
    build_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/curves_like_samples.png", dir);
    NGT_OK(ng_dataset_load_named("curves-like", NULL, "train", &tr));
    if (ng_png_write_image_grid(path, tr.x, tr.height, tr.width, PIC_N, PIC_COLS, PIC_PAD) != NG_OK) {
        printf("  %s\n", ng_last_error());
        ng_dataset_free(&tr);
        return NGT_FAIL;
    }
    ng_dataset_free(&tr);
    NGT_CHECK(ngt_png_decode(path, &got, err, sizeof err) == 0, "%s: %s", path, err);
    NGT_CHECK(got.width == 8 * 28 + 9 * 2 && got.height == 8 * 28 + 9 * 2 && got.channels == 1,
              "picture %d x %d x %d", got.width, got.height, got.channels);

    snprintf(committed, sizeof committed, "data/curves_like_samples.png");
    if (access(committed, R_OK) != 0)
        snprintf(committed, sizeof committed, "%s/../data/curves_like_samples.png", dir);
    if (access(committed, R_OK) != 0) {
        free(got.pixels);
        return ngt_skip("data/curves_like_samples.png not found (run the test from the repository "
                        "root); the picture was written but not compared");
    }
    if (ngt_png_decode(committed, &want, err, sizeof err) != 0) {
        printf("  %s: %s\n", committed, err);
        free(got.pixels);
        return NGT_FAIL;
    }
    if (want.width != got.width || want.height != got.height || want.channels != got.channels ||
        memcmp(want.pixels, got.pixels, (size_t)got.width * got.height) != 0)
        printf("  %s differs from the generator's picture %s: run make data-curves-picture\n",
               committed, path);
    else
        r = NGT_PASS;
    free(got.pixels);
    free(want.pixels);
    return r;
}

int main(int argc, char **argv) {
    if (argc > 0) argv0 = argv[0];
    NGT_RUN(test_determinism);
    NGT_RUN(test_pinned_checksum);
    NGT_RUN(test_seeds_differ);
    NGT_RUN(test_statistics);
    NGT_RUN(test_named_splits);
    NGT_RUN(test_bad_arguments);
    NGT_RUN(test_sample_picture);
    return ngt_finish();
}
