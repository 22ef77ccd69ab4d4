/* dataset.c: host data sets built from IDX files, the registry of named sets, and copies of sets
 * (subset, 2x2 downsampling). x is (dim, n) column-major with values in [0, 1]; the IDX layout
 * (n, h, w) row-major is already that, one example per column, pixel (r, c) at r*width + c.
 * Must not: leave a half-filled ng_dataset behind on failure (outputs are zeroed first and freed on
 * error), or accept images outside [0, 1] or labels that do not match the images one to one. */
#include "natgrad/data.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DS_PATH_MAX 4096

void ng_dataset_free(ng_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

static const char *path_basename(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Convert the image payload to floats in [0, 1] (x =). */
static ng_status images_to_float(const char *path, const ng_idx *im, float *x) {
    size_t i;
    switch (im->dtype) {
    case NG_IDX_U8: {
        const unsigned char *u = im->data;
        for (i = 0; i < im->count; i++) x[i] = (float)u[i] / 255.0f;
        return NG_OK;
    }
    case NG_IDX_F32: {
        const float *f = im->data;
        for (i = 0; i < im->count; i++) {
            if (!(f[i] >= 0.0f && f[i] <= 1.0f))
                return ng_error(NG_ERR_FORMAT, "%s: pixel %zu is %g, outside [0, 1]", path, i,
                                (double)f[i]);
            x[i] = f[i];
        }
        return NG_OK;
    }
    case NG_IDX_F64: {
        const double *d = im->data;
        for (i = 0; i < im->count; i++) {
            if (!(d[i] >= 0.0 && d[i] <= 1.0))
                return ng_error(NG_ERR_FORMAT, "%s: pixel %zu is %g, outside [0, 1]", path, i, d[i]);
            x[i] = (float)d[i];
        }
        return NG_OK;
    }
    default:
        return ng_error(NG_ERR_FORMAT, "%s: images must be u8, f32 or f64, not %s", path,
                        ng_idx_dtype_name(im->dtype));
    }
}

/* Read a 1-D integral labels file holding exactly n values in 0..255 into labels (n, =). */
static ng_status load_labels(const char *path, const char *images, int n, unsigned char **out) {
    ng_idx lb;
    size_t i;
    ng_status st = NG_OK;
    NG_TRY(ng_idx_read(path, &lb));
    if (lb.ndims != 1) {
        st = ng_error(NG_ERR_FORMAT, "%s: labels must have 1 dimension, not %d", path, lb.ndims);
        goto done;
    }
    if (lb.dims[0] != n) {
        st = ng_error(NG_ERR_FORMAT, "%s has %d labels but %s has %d images", path, lb.dims[0], images,
                      n);
        goto done;
    }
    *out = malloc((size_t)n);
    if (!*out) {
        st = ng_error(NG_ERR_OOM, "%s: cannot allocate %d labels", path, n);
        goto done;
    }
    for (i = 0; i < lb.count && st == NG_OK; i++) {
        long v;
        switch (lb.dtype) {
        case NG_IDX_U8: v = ((const unsigned char *)lb.data)[i]; break;
        case NG_IDX_I8: v = ((const signed char *)lb.data)[i]; break;
        case NG_IDX_I16: v = ((const int16_t *)lb.data)[i]; break;
        case NG_IDX_I32: v = ((const int32_t *)lb.data)[i]; break;
        default:
            st = ng_error(NG_ERR_FORMAT, "%s: labels must be integers, not %s", path,
                          ng_idx_dtype_name(lb.dtype));
            continue;
        }
        if (v < 0 || v > 255)
            st = ng_error(NG_ERR_FORMAT, "%s: label %zu is %ld, outside 0..255", path, i, v);
        else
            (*out)[i] = (unsigned char)v;
    }
    if (st != NG_OK) {
        free(*out);
        *out = NULL;
    }
done:
    ng_idx_free(&lb);
    return st;
}

ng_status ng_dataset_load_idx(const char *images, const char *labels_or_null, ng_dataset *out) {
    ng_idx im;
    ng_status st;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_load_idx: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_load_idx: images path is NULL");
    NG_TRY(ng_idx_read(images, &im));
    if (im.ndims == 3) {
        out->height = im.dims[1];
        out->width = im.dims[2];
    } else if (im.ndims == 2) {
        out->height = im.dims[1];
        out->width = 1;
    } else {
        st = ng_error(NG_ERR_FORMAT, "%s: images must have 2 (n, d) or 3 (n, h, w) dimensions, not %d",
                      images, im.ndims);
        goto fail;
    }
    out->n = im.dims[0];
    out->dim = (int)(im.count / (size_t)im.dims[0]); /* count <= INT_MAX */
    out->x = malloc(im.count * sizeof(float));
    if (!out->x) {
        st = ng_error(NG_ERR_OOM, "%s: cannot allocate %zu floats", images, im.count);
        goto fail;
    }
    st = images_to_float(images, &im, out->x);
    if (st != NG_OK) goto fail;
    if (labels_or_null) {
        st = load_labels(labels_or_null, images, out->n, &out->labels);
        if (st != NG_OK) goto fail;
    }
    snprintf(out->name, sizeof out->name, "%s", path_basename(images));
    ng_idx_free(&im);
    return NG_OK;
fail:
    ng_idx_free(&im);
    ng_dataset_free(out);
    return st;
}

/* Set path to dir/file or dir/file.gz, whichever exists (raw first); 0 when neither does. */
static int find_idx_file(const char *dir, const char *file, char *path, size_t cap) {
    static const char *const suffix[2] = {"", ".gz"};
    int k, r;
    for (k = 0; k < 2; k++) {
        r = snprintf(path, cap, "%s/%s%s", dir, file, suffix[k]);
        if (r < 0 || (size_t)r >= cap) return 0;
        if (access(path, F_OK) == 0) return 1;
    }
    return 0;
}

ng_status ng_dataset_load_named(const char *name, const char *data_dir, const char *split,
                                ng_dataset *out) {
    char dirs[2][DS_PATH_MAX], img_file[64], lab_file[64], img[DS_PATH_MAX], lab[DS_PATH_MAX];
    const char *hint, *prefix, *missing = "";
    int ndirs = 0, d, r;
    ng_status st;

    if (!out) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_load_named: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name || !split) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_load_named: NULL name or split");
    if (strcmp(split, "train") == 0) prefix = "train";
    else if (strcmp(split, "test") == 0) prefix = "t10k";
    else return ng_error(NG_ERR_INVALID_ARG, "%s: unknown split '%s' (want train or test)", name, split);
    if (!data_dir) data_dir = "data";

    if (strcmp(name, "bars-stripes") == 0) return ng_dataset_make_bars_stripes(4, 0, out);
    if (strcmp(name, "curves-like") == 0) {
        int train = strcmp(split, "train") == 0;
        NG_TRY(ng_dataset_make_curves(NG_CURVES_LIKE_SEED, train ? 0 : NG_CURVES_LIKE_TRAIN,
                                      train ? NG_CURVES_LIKE_TRAIN : NG_CURVES_LIKE_TEST, out));
        snprintf(out->name, sizeof out->name, "curves-like-%s", split);
        return NG_OK;
    }
    if (strcmp(name, "mnist") == 0) {
        r = snprintf(dirs[ndirs++], DS_PATH_MAX, "%s/mnist", data_dir);
        hint = "run: make data-mnist (or: bash data/prepare.sh mnist)";
    } else if (strcmp(name, "fashion-mnist") == 0) {
        r = snprintf(dirs[ndirs++], DS_PATH_MAX, "%s/fashion-mnist", data_dir);
        snprintf(dirs[ndirs++], DS_PATH_MAX, "/usr/share/datasets/fashion-mnist");
        hint = "run: make data-fashion (or: bash data/prepare.sh fashion-mnist, which installs the "
               "Debian package dataset-fashion-mnist)";
    } else {
        return ng_error(NG_ERR_INVALID_ARG,
                        "unknown data set '%s' (known: mnist, fashion-mnist, bars-stripes, "
                        "curves-like)",
                        name);
    }
    if (r < 0 || r >= DS_PATH_MAX)
        return ng_error(NG_ERR_INVALID_ARG, "%s: data directory path too long", name);
    snprintf(img_file, sizeof img_file, "%s-images-idx3-ubyte", prefix);
    snprintf(lab_file, sizeof lab_file, "%s-labels-idx1-ubyte", prefix);

    for (d = 0; d < ndirs; d++) {
        int have_img = find_idx_file(dirs[d], img_file, img, sizeof img);
        int have_lab = find_idx_file(dirs[d], lab_file, lab, sizeof lab);
        if (have_img && have_lab) break;
        if (d == 0) missing = have_img ? lab_file : img_file;
    }
    if (d == ndirs)
        return ng_error(NG_ERR_IO, "%s: %s/%s[.gz] not found%s%s; %s", name, dirs[0], missing,
                        ndirs > 1 ? ", nor in " : "", ndirs > 1 ? dirs[1] : "", hint);

    st = ng_dataset_load_idx(img, lab, out);
    if (st != NG_OK) return ng_error_wrap(st, "loading %s %s: ", name, split);
    snprintf(out->name, sizeof out->name, "%s-%s", name, split);
    return NG_OK;
}

ng_status ng_dataset_subset(const ng_dataset *src, int first, int count, ng_dataset *out) {
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_subset: out is NULL");
    memset(out, 0, sizeof *out);
    if (!src || !src->x) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_subset: empty source");
    if (first < 0 || count <= 0 || first > src->n || count > src->n - first)
        return ng_error(NG_ERR_INVALID_ARG, "%s: subset [%d, %d + %d) is outside the %d examples",
                        src->name, first, first, count, src->n);
    out->x = malloc((size_t)src->dim * (size_t)count * sizeof(float));
    if (src->labels) out->labels = malloc((size_t)count);
    if (!out->x || (src->labels && !out->labels)) {
        ng_dataset_free(out);
        return ng_error(NG_ERR_OOM, "%s: cannot allocate a subset of %d examples", src->name, count);
    }
    memcpy(out->x, src->x + (size_t)first * (size_t)src->dim,
           (size_t)src->dim * (size_t)count * sizeof(float));
    if (src->labels) memcpy(out->labels, src->labels + first, (size_t)count);
    out->dim = src->dim;
    out->n = count;
    out->height = src->height;
    out->width = src->width;
    memcpy(out->name, src->name, sizeof out->name);
    return NG_OK;
}

ng_status ng_dataset_downsample2(const ng_dataset *src, ng_dataset *out) {
    int h2, w2, d2, j, r, c;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_downsample2: out is NULL");
    memset(out, 0, sizeof *out);
    if (!src || !src->x) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_downsample2: empty source");
    if (src->height < 2 || src->width < 2 || src->height % 2 || src->width % 2 ||
        src->height * src->width != src->dim)
        return ng_error(NG_ERR_INVALID_ARG, "%s: cannot halve %dx%d images (need even height and width)",
                        src->name, src->height, src->width);
    h2 = src->height / 2;
    w2 = src->width / 2;
    d2 = h2 * w2;
    out->x = malloc((size_t)d2 * (size_t)src->n * sizeof(float));
    if (src->labels) out->labels = malloc((size_t)src->n);
    if (!out->x || (src->labels && !out->labels)) {
        ng_dataset_free(out);
        return ng_error(NG_ERR_OOM, "%s: cannot allocate the downsampled set", src->name);
    }
    for (j = 0; j < src->n; j++) {
        const float *a = src->x + (size_t)j * (size_t)src->dim;
        float *b = out->x + (size_t)j * (size_t)d2;
        for (r = 0; r < h2; r++)
            for (c = 0; c < w2; c++) {
                const float *p = a + (size_t)(2 * r) * (size_t)src->width + (size_t)(2 * c);
                b[r * w2 + c] = 0.25f * ((p[0] + p[1]) + (p[src->width] + p[src->width + 1]));
            }
    }
    if (src->labels) memcpy(out->labels, src->labels, (size_t)src->n);
    out->dim = d2;
    out->n = src->n;
    out->height = h2;
    out->width = w2;
    snprintf(out->name, sizeof out->name, "%.58s-ds2", src->name);
    return NG_OK;
}

/* weights (n_out, n_in) row-major of the 1-D area resampling n_in -> n_out: output o covers
 * [o n_in, (o+1) n_in) and input i covers [i n_out, (i+1) n_out) in units of 1/n_out source
 * pixels; the weight is their overlap over n_in (each row sums to 1) */
static void area_weights(int n_in, int n_out, double *w) {
    int o, i;
    for (o = 0; o < n_out; o++)
        for (i = 0; i < n_in; i++) {
            long lo = (long)o * n_in, hi = lo + n_in, a = (long)i * n_out, b = a + n_out;
            long ov = (hi < b ? hi : b) - (lo > a ? lo : a);
            w[(size_t)o * n_in + i] = ov > 0 ? (double)ov / (double)n_in : 0.0;
        }
}

ng_status ng_dataset_resample_area(const ng_dataset *src, int height, int width, ng_dataset *out) {
    int H, W, d2, j, r, c, i, k;
    double *wr = NULL, *wc = NULL, *tmp = NULL;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_resample_area: out is NULL");
    memset(out, 0, sizeof *out);
    if (!src || !src->x) return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_resample_area: empty source");
    if (height < 1 || width < 1 || height > 4096 || width > 4096)
        return ng_error(NG_ERR_INVALID_ARG, "ng_dataset_resample_area: target size %dx%d out of range (1 .. 4096)",
                        height, width);
    H = src->height;
    W = src->width;
    if (H < 1 || W < 1 || H > 4096 || W > 4096 || H * W != src->dim)
        return ng_error(NG_ERR_INVALID_ARG, "%s: cannot resample %dx%d images of dimension %d", src->name, H, W,
                        src->dim);
    d2 = height * width;
    out->x = malloc((size_t)d2 * (size_t)src->n * sizeof(float));
    if (src->labels) out->labels = malloc((size_t)src->n);
    wr = malloc((size_t)height * H * sizeof(double));
    wc = malloc((size_t)width * W * sizeof(double));
    tmp = malloc((size_t)H * width * sizeof(double));
    if (!out->x || (src->labels && !out->labels) || !wr || !wc || !tmp) {
        free(wr);
        free(wc);
        free(tmp);
        ng_dataset_free(out);
        return ng_error(NG_ERR_OOM, "%s: cannot allocate the resampled set", src->name);
    }
    area_weights(H, height, wr);
    area_weights(W, width, wc);
    for (j = 0; j < src->n; j++) {
        const float *a = src->x + (size_t)j * (size_t)src->dim;
        float *b = out->x + (size_t)j * (size_t)d2;
        for (i = 0; i < H; i++) /* columns first: tmp (H, width) */
            for (c = 0; c < width; c++) {
                double t = 0.0;
                for (k = 0; k < W; k++) t += wc[(size_t)c * W + k] * (double)a[(size_t)i * W + k];
                tmp[(size_t)i * width + c] = t;
            }
        for (r = 0; r < height; r++)
            for (c = 0; c < width; c++) {
                double t = 0.0;
                for (i = 0; i < H; i++) t += wr[(size_t)r * H + i] * tmp[(size_t)i * width + c];
                b[r * width + c] = (float)t;
            }
    }
    free(wr);
    free(wc);
    free(tmp);
    if (src->labels) memcpy(out->labels, src->labels, (size_t)src->n);
    out->dim = d2;
    out->n = src->n;
    out->height = height;
    out->width = width;
    snprintf(out->name, sizeof out->name, "%.40s-area%dx%d", src->name, height & 0xffff, width & 0xffff);
    return NG_OK;
}
