/* export_cmd.c: `natgrad export CKPT --out FILE.safetensors` and `natgrad ckpt CKPT`.
 * export writes the parameters of a checkpoint (tensors model.<name>, or every tensor with --all)
 * in the safetensors format that NumPy (safetensors.numpy) and PyTorch (safetensors.torch) load.
 * Layout: natgrad stores tensors column-major (fastest dimension first). A 2-D tensor (rows, cols)
 * is written as the matrix it is, row-major with shape [rows, cols] (transposed on the host); an
 * (n, 1) column as a vector [n]; a tensor of 3 or 4 dimensions keeps its memory order with its
 * dimensions listed slowest first (activations (W, H, C, N) become [N, C, H, W]).
 * ckpt lists a checkpoint's fields and tensors. Public headers only. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natgrad/checkpoint.h"
#include "natgrad/rbm.h"
#include "natgrad/safetensors.h"

/* Row-major copy of a column-major (rows, cols) matrix of esz-byte elements. */
static void transpose(const unsigned char *src, unsigned char *dst, uint64_t rows, uint64_t cols, size_t esz) {
    uint64_t r, c;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) memcpy(dst + (r * cols + c) * esz, src + (c * rows + r) * esz, esz);
}

static const char *EXPORT_SUMMARY =
    "Write the parameters of a checkpoint (this version's or natgrad 0.1's) as a safetensors file,\n"
    "for NumPy and PyTorch: 2-D tensors as (rows, cols) row-major matrices (an RBM's W is\n"
    "(n_hidden, n_visible)), columns (n, 1) as vectors, names without the 'model.' prefix.\n"
    "usage: natgrad export CKPT --out FILE.safetensors [--all]";

int ng_cmd_export(int argc, char **argv) {
    const char *out = NULL, *ckpt = NULL;
    int all = 0, rc, i, n = 0, k;
    ng_ckpt *c = NULL;
    ng_st_tensor *ts = NULL;
    uint64_t (*shapes)[4] = NULL;
    void **bufs = NULL;
    const char *meta_k[8], *meta_v[8];
    int n_meta = 0;
    char version[64] = "";
    ng_status s = NG_OK;
    ng_opt opts[] = {
        {"out", OPT_STR, &out, "FILE", "safetensors file to write (required)", 0, 0},
        {"all", OPT_FLAG, &all, NULL, "export every tensor (optimizer state too), with its full name", 0, 0},
        NG_OPT_END};
    if (argc >= 1 && strncmp(argv[0], "--", 2) != 0) {
        ckpt = argv[0];
        argc--;
        argv++;
    }
    rc = ng_cli_parse("export", EXPORT_SUMMARY, opts, argc, argv);
    if (rc < 0) return NG_EXIT_OK;
    if (rc) return rc;
    if (!ckpt || !out) {
        fprintf(stderr, "natgrad export: usage: natgrad export CKPT --out FILE.safetensors (see --help)\n");
        return NG_EXIT_USAGE;
    }
    if (ng_rbm_checkpoint_read(ckpt, NG_CKPT_READ_ALL, &c) != NG_OK) {
        fprintf(stderr, "natgrad export: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    k = ng_ckpt_n_tensors(c);
    ts = (ng_st_tensor *)calloc((size_t)(k ? k : 1), sizeof *ts);
    shapes = calloc((size_t)(k ? k : 1), sizeof *shapes);
    bufs = (void **)calloc((size_t)(k ? k : 1), sizeof *bufs);
    if (!ts || !shapes || !bufs) s = ng_error(NG_ERR_OOM, "out of memory");
    for (i = 0; s == NG_OK && i < k; i++) {
        const ng_ckpt_tensor *t = ng_ckpt_tensor_at(c, i);
        int d;
        if (!all && strncmp(t->name, "model.", 6) != 0) continue;
        ts[n].name = all ? t->name : t->name + 6;
        ts[n].dtype = t->dtype;
        ts[n].shape = shapes[n];
        ts[n].data = t->data;
        if (t->ndim == 2 && t->dims[1] == 1) {
            ts[n].ndim = 1;
            shapes[n][0] = t->dims[0];
        } else if (t->ndim == 2) {
            ts[n].ndim = 2;
            shapes[n][0] = t->dims[0];
            shapes[n][1] = t->dims[1];
            bufs[n] = malloc(t->bytes ? t->bytes : 1);
            if (!bufs[n]) {
                s = ng_error(NG_ERR_OOM, "out of memory for tensor %s", t->name);
                break;
            }
            transpose((const unsigned char *)t->data, (unsigned char *)bufs[n], t->dims[0], t->dims[1],
                      ng_dtype_size(t->dtype));
            ts[n].data = bufs[n];
        } else {
            ts[n].ndim = t->ndim;
            for (d = 0; d < t->ndim; d++) shapes[n][d] = t->dims[t->ndim - 1 - d];
        }
        n++;
    }
    if (s == NG_OK && n == 0) s = ng_error(NG_ERR_FORMAT, "checkpoint %s holds no model.* tensors", ckpt);
    if (s == NG_OK) {
        const char *v = NULL;
        meta_k[n_meta] = "format";
        meta_v[n_meta++] = "natgrad: 2-D tensors are (rows, cols) row-major";
        if (ng_ckpt_get_str(c, "natgrad.version", &v) == NG_OK) {
            snprintf(version, sizeof version, "%s", v);
            meta_k[n_meta] = "natgrad.version";
            meta_v[n_meta++] = version;
        }
        if (ng_ckpt_get_str(c, "model.kind", &v) == NG_OK) {
            meta_k[n_meta] = "model.kind";
            meta_v[n_meta++] = v;
        }
        ng_clear_error();
        s = ng_safetensors_write(out, n, ts, meta_k, meta_v, n_meta);
    }
    if (s == NG_OK) {
        printf("wrote %s: %d tensors from %s\n", out, n, ckpt);
        for (i = 0; i < n; i++) {
            int d;
            printf("  %-24s %s [", ts[i].name, ng_dtype_name(ts[i].dtype));
            for (d = 0; d < ts[i].ndim; d++) printf(d ? ", %llu" : "%llu", (unsigned long long)ts[i].shape[d]);
            printf("]\n");
        }
        rc = NG_EXIT_OK;
    } else {
        fprintf(stderr, "natgrad export: %s\n", ng_last_error());
        rc = NG_EXIT_FAIL;
    }
    for (i = 0; bufs && i < k; i++) free(bufs[i]);
    free(bufs);
    free(shapes);
    free(ts);
    ng_ckpt_free(c);
    return rc;
}

int ng_cmd_ckpt(int argc, char **argv) {
    ng_ckpt *c = NULL;
    int i;
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *f = argc < 1 ? stderr : stdout;
        fprintf(f, "usage: natgrad ckpt CKPT   (lists the fields and tensors of a checkpoint)\n");
        return argc < 1 ? NG_EXIT_USAGE : NG_EXIT_OK;
    }
    if (ng_rbm_checkpoint_read(argv[0], NG_CKPT_READ_ALL, &c) != NG_OK) {
        fprintf(stderr, "natgrad ckpt: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    printf("%s: %d fields, %d tensors\n", argv[0], ng_ckpt_n_kv(c), ng_ckpt_n_tensors(c));
    for (i = 0; i < ng_ckpt_n_kv(c); i++) {
        char buf[512];
        ng_kv_type t;
        const char *key = ng_ckpt_kv_at(c, i, &t);
        printf("  %-28s %-4s %s\n", key, ng_kv_type_name(t), ng_ckpt_kv_format(c, i, buf, sizeof buf));
    }
    for (i = 0; i < ng_ckpt_n_tensors(c); i++) {
        const ng_ckpt_tensor *t = ng_ckpt_tensor_at(c, i);
        int d;
        printf("  %-28s %-4s (", t->name, ng_dtype_name(t->dtype));
        for (d = 0; d < t->ndim; d++) printf(d ? ", %llu" : "%llu", (unsigned long long)t->dims[d]);
        printf(")\n");
    }
    ng_ckpt_free(c);
    return NG_EXIT_OK;
}
