/* cifar.c: the CIFAR-10 binary format (Krizhevsky 2009, "binary version"): each record is one label
 * byte (0..9) followed by 3072 bytes of pixels, 1024 red, 1024 green, 1024 blue, each a row-major
 * 32 x 32 plane: exactly one N,C,H,W image. A file holds whole records (data_batch_1.bin ..
 * data_batch_5.bin: 10000 each, test_batch.bin: 10000). Every file is checked before use: its
 * length a positive multiple of 3073 bytes, every label below 10; a bad file is named with the
 * record at fault. Pixels are scaled to [0, 1]. Must not: print. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/data.h"

#define CIFAR_REC 3073
#define CIFAR_DIM 3072

ng_status ng_dataset_load_cifar10(const char *const *files, int nfiles, ng_dataset *out) {
    long total = 0, sizes[64];
    unsigned char *rec = NULL;
    int f, n = 0;
    memset(out, 0, sizeof *out);
    if (nfiles < 1 || nfiles > 64) return ng_error(NG_ERR_INVALID_ARG, "cifar-10: %d files (1..64)", nfiles);
    for (f = 0; f < nfiles; f++) {
        FILE *fp = fopen(files[f], "rb");
        long len;
        if (!fp) return ng_error(NG_ERR_IO, "cifar-10 file %s: %s", files[f], strerror(errno));
        if (fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) < 0) {
            fclose(fp);
            return ng_error(NG_ERR_IO, "cifar-10 file %s: cannot read its length", files[f]);
        }
        fclose(fp);
        if (len == 0 || len % CIFAR_REC != 0)
            return ng_error(NG_ERR_FORMAT, "cifar-10 file %s: %ld bytes is not a positive multiple of the %d-byte record (truncated or not CIFAR-10 binary)",
                            files[f], len, CIFAR_REC);
        if (total + len / CIFAR_REC > 10000000)
            return ng_error(NG_ERR_FORMAT, "cifar-10 file %s: more than 10 million images in all", files[f]);
        sizes[f] = len / CIFAR_REC;
        total += sizes[f];
    }
    out->x = (float *)malloc((size_t)total * CIFAR_DIM * sizeof(float));
    out->labels = (unsigned char *)malloc((size_t)total);
    rec = (unsigned char *)malloc(CIFAR_REC);
    if (!out->x || !out->labels || !rec) {
        free(rec);
        ng_dataset_free(out);
        return ng_error(NG_ERR_OOM, "cifar-10: out of host memory for %ld images", total);
    }
    for (f = 0; f < nfiles; f++) {
        FILE *fp = fopen(files[f], "rb");
        long r;
        if (!fp) {
            free(rec);
            ng_dataset_free(out);
            return ng_error(NG_ERR_IO, "cifar-10 file %s: %s", files[f], strerror(errno));
        }
        for (r = 0; r < sizes[f]; r++, n++) {
            int i;
            if (fread(rec, 1, CIFAR_REC, fp) != CIFAR_REC) {
                fclose(fp);
                free(rec);
                ng_dataset_free(out);
                return ng_error(NG_ERR_IO, "cifar-10 file %s: record %ld could not be read (file changed while reading?)", files[f], r);
            }
            if (rec[0] > 9) {
                const int bad = rec[0];
                fclose(fp);
                free(rec);
                ng_dataset_free(out);
                return ng_error(NG_ERR_FORMAT, "cifar-10 file %s: record %ld has label %d (want 0..9; not CIFAR-10 binary?)", files[f], r,
                                bad);
            }
            out->labels[n] = rec[0];
            for (i = 0; i < CIFAR_DIM; i++) out->x[(size_t)n * CIFAR_DIM + i] = (float)rec[1 + i] / 255.0f;
        }
        fclose(fp);
    }
    free(rec);
    out->n = (int)total;
    out->dim = CIFAR_DIM;
    out->height = 32;
    out->width = 32;
    snprintf(out->name, sizeof out->name, "cifar-10");
    return NG_OK;
}
