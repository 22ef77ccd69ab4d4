/* natgrad/data.h: IDX files (the MNIST container format, raw or gzip) and host-side data sets.
 *
 * A data set of n examples of dimension dim is a (dim, n) column-major float matrix on the host:
 * example j occupies x[j*dim .. j*dim + dim-1], and for an image pixel (r, c) sits at index
 * r*width + c of its column (the row-major pixel order of the IDX file). Values are in [0, 1].
 *
 * The reader is strict: every header field is validated, the payload length must equal what the
 * header implies (no truncation, no trailing bytes), float payloads must be finite, and nothing is
 * allocated from a size that has not been checked (for gzip input, the buffer grows only as
 * decompressed bytes actually arrive). Errors are NG_ERR_IO (open/read/write failed) or
 * NG_ERR_FORMAT (malformed content), with a message naming the file and the problem.
 *
 * Every function that fills an output struct zeroes it first, so the matching *_free is always
 * safe to call, on success or failure. */
#ifndef NATGRAD_DATA_H
#define NATGRAD_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "natgrad/status.h"
#include "natgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* IDX element types: the third byte of the magic number. */
enum {
    NG_IDX_U8 = 0x08,
    NG_IDX_I8 = 0x09,
    NG_IDX_I16 = 0x0B,
    NG_IDX_I32 = 0x0C,
    NG_IDX_F32 = 0x0D,
    NG_IDX_F64 = 0x0E
};

#define NG_IDX_MAX_DIMS 4
/* Largest accepted element count (2^31 - 1): anything larger is rejected as absurd. */
#define NG_IDX_MAX_COUNT ((size_t)2147483647)

typedef struct ng_idx {
    int dtype;                  /* NG_IDX_U8 ... NG_IDX_F64 */
    int ndims;                  /* 1 .. NG_IDX_MAX_DIMS */
    int dims[NG_IDX_MAX_DIMS];  /* dims[0] is the slowest-varying (the example index); unused = 0 */
    size_t count;               /* product of dims */
    void *data;                 /* count elements of dtype, host byte order, row-major as in the file */
} ng_idx;

/* Size in bytes of one element of dtype; 0 for an unknown dtype. */
size_t ng_idx_dtype_size(int dtype);
/* "u8", "i8", "i16", "i32", "f32", "f64", or "?". */
const char *ng_idx_dtype_name(int dtype);

/* Read an IDX file, raw or gzip-compressed (recognised by the bytes 1f 8b, not by its name).
 * Regular files only: a FIFO, directory or device is refused at once (NG_ERR_IO). */
ng_status ng_idx_read(const char *path, ng_idx *out);
/* Write a raw (uncompressed) IDX file through ng_wfile (natgrad/file.h): to path.tmp, flushed and
 * fsync'ed, then renamed onto path, so an existing file is replaced whole or not at all. idx->count must equal the product of dims. */
ng_status ng_idx_write(const char *path, const ng_idx *idx);
void ng_idx_free(ng_idx *idx);

typedef struct ng_dataset {
    float *x;               /* (dim, n) column-major, host memory, values in [0, 1] */
    unsigned char *labels;  /* (n), or NULL when the set has no labels */
    int dim;                /* height * width */
    int n;
    int height, width;      /* image shape; a flat (n, d) IDX file gives height = d, width = 1 */
    char name[64];
} ng_dataset;

/* Load images (u8 scaled by 1/255, or f32/f64 already in [0, 1]; shape (n, h, w) or (n, d)) and,
 * when labels_or_null is given, their labels (1-D, integral, values 0..255, exactly n of them). */
ng_status ng_dataset_load_idx(const char *images, const char *labels_or_null, ng_dataset *out);

/* Load a named data set. name: "mnist" (data_dir/mnist/), "fashion-mnist" (data_dir/fashion-mnist/,
 * else /usr/share/datasets/fashion-mnist/), "bars-stripes" (all 30 distinct 4x4 patterns, no labels,
 * the same for both splits), "curves-like" (generated, no files: see ng_dataset_make_curves).
 * data_dir NULL means "data". split: "train" or "test".
 * Each IDX file is looked up as FILE then FILE.gz; a missing one is NG_ERR_IO with a message that
 * says how to create it. */
ng_status ng_dataset_load_named(const char *name, const char *data_dir, const char *split,
                                ng_dataset *out);

/* Bars and stripes on a side x side grid (host/data/synthetic.c): the distinct patterns in which
 * every row is all-on or all-off (bars) or every column is (stripes); the all-off and all-on
 * patterns count once. Order: bars for masks 0 .. 2^side - 1 (row r on iff bit r of the mask),
 * then stripes for masks 1 .. 2^side - 2 (column c on iff bit c). n = 0 gives each pattern once;
 * n > 0 gives n examples cycling through that order. side: 1 .. 15. Values are 0 or 1; no labels. */
int ng_bars_stripes_count(int side); /* 2^(side+1) - 2 (30 for side 4); 0 when side is out of range */
ng_status ng_dataset_make_bars_stripes(int side, int n, ng_dataset *out);

/* "curves-like" (host/data/curves.c): a generated SUBSTITUTE for the CURVES data set of Hinton &
 * Salakhutdinov (2006), which is not obtainable here; always reported as "curves-like", never as
 * CURVES. Each 28x28 image (values in [0, 1], no labels) is an anti-aliased stroke of width 1.5
 * along a parabolic arc through three random points; the exact recipe is in curves.c and
 * data/README.md. Images first .. first+n-1 of seed `seed`: image i depends only on (seed, i), so
 * any range can be generated on its own and equals the same images of a larger range.
 * n: 1 .. NG_CURVES_MAX_N; first >= 0 with first + n <= INT_MAX.
 * ng_dataset_load_named("curves-like", ...) gives images 0 .. 19999 of NG_CURVES_LIKE_SEED as
 * "train" and images 20000 .. 29999 as "test" (the sizes of CURVES), with no file involved. */
#define NG_CURVES_SIDE 28
#define NG_CURVES_MAX_N 10000000
#define NG_CURVES_LIKE_SEED 2006
#define NG_CURVES_LIKE_TRAIN 20000
#define NG_CURVES_LIKE_TEST 10000
ng_status ng_dataset_make_curves(uint64_t seed, int first, int n, ng_dataset *out);

/* out = a copy of examples first .. first+count-1 of src (x and labels). */
ng_status ng_dataset_subset(const ng_dataset *src, int first, int count, ng_dataset *out);
/* out = src with each image shrunk by averaging 2x2 blocks (28x28 -> 14x14); height and width
 * must be even. Labels are copied. */
ng_status ng_dataset_downsample2(const ng_dataset *src, ng_dataset *out);
/* out = src with each image resampled to height x width by area averaging: output pixel (r, c)
 * covers the rectangle [r H/height, (r+1) H/height) x [c W/width, (c+1) W/width) of the H x W
 * source image (pixels as unit squares) and is the mean of the source over it, each source pixel
 * weighted by its overlap (exact integer weights, float64 sums). Mass is preserved up to the area
 * ratio, a constant image stays constant, 28x28 -> 14x14 equals ng_dataset_downsample2 (to float
 * rounding), and equal sizes copy. Used for the K-FAC paper's 16x16 MNIST (28 -> 16). Labels are
 * copied; height, width: 1 .. 4096. */
ng_status ng_dataset_resample_area(const ng_dataset *src, int height, int width, ng_dataset *out);
void ng_dataset_free(ng_dataset *ds);

/* CIFAR-10 binary files (host/data/cifar.c), concatenated in order: records of one label byte
 * (0..9) and 3 x 32 x 32 pixel bytes (one N,C,H,W image: red, green, blue planes), scaled to
 * [0, 1]. dim = 3072 with height = width = 32 (3 channels). Each file's length must be a positive
 * multiple of 3073 bytes and every label below 10: NG_ERR_FORMAT naming the file and record. */
ng_status ng_dataset_load_cifar10(const char *const *files, int nfiles, ng_dataset *out);

/* ---- batches for training (host/data/batches.c) ---------------------------------------------
 * Streams mini-batches of a host data set to the device, one batch per call, instead of keeping
 * the whole set there. Epoch e visits the columns in the order of a permutation drawn from
 * (seed, NG_RNG_SHUFFLE, step e); a batch is the next `batch` columns of it, and the tail of an
 * epoch shorter than a batch is skipped. With world > 1 ranks, rank r takes its shard of every
 * global batch: columns [r * batch / world, (r + 1) * batch / world) of it.
 * The host gathers a batch into pinned memory and uploads it asynchronously into one of two device
 * buffers, so the gather of batch k + 1 overlaps the device's work on batch k. The device batch
 * returned by ng_batches_next stays valid until the next-but-one call. */
typedef struct ng_batches {
    ng_backend *be;
    const float *x;        /* (dim, n) host data, borrowed: must outlive the iterator */
    int dim, n;
    int batch;             /* global mini-batch size (of the next batch) */
    int capacity;          /* the largest batch (init's `batch`): the buffers' size */
    int rank, world;
    int lo, hi;            /* this rank's columns of a global batch */
    uint64_t seed;
    int epoch, pos;        /* cursor: next column of epoch `epoch`'s permutation */
    int perm_epoch;        /* epoch whose permutation `perm` holds (-1: none) */
    int *perm;             /* (n) */
    float *stage[2];       /* (dim, hi - lo) pinned host staging */
    void *uploaded[2];     /* events: the upload from stage[k] has completed */
    int used[2];
    ng_arena arena;
    ng_tensor buf[2];      /* (dim, hi - lo) device batches */
    int next_buf;
} ng_batches;

ng_status ng_batches_init(ng_batches *b, ng_backend *be, const float *x_host, int dim, int n,
                          int batch, uint64_t seed, int rank, int world);
/* Change the global batch size of the following batches to batch (1 .. the init's batch): a
 * schedule of growing batches (K-FAC's m_k). The cursor stays; shards are recomputed. */
ng_status ng_batches_resize(ng_batches *b, int batch);
/* The K-FAC paper's schedule (section 13): m_k = min(m1 exp((k - 1) / b), n) for update k >= 1,
 * rounded, with b such that m_{k_full} = n (the paper: m1 = 1000, k_full = 500); m1 >= n gives n. */
int ng_batch_schedule_exp(uint64_t k, int m1, int k_full, int n);
/* The next device batch (dim, hi - lo) (a view into one of the two buffers). */
ng_status ng_batches_next(ng_batches *b, ng_tensor *out);
/* Position the cursor at column pos of epoch epoch (resume; rollback of an interrupted step). */
ng_status ng_batches_seek(ng_batches *b, int epoch, int pos);
void ng_batches_free(ng_batches *b);

#ifdef __cplusplus
}
#endif
#endif
