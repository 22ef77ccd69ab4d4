/* rbm_checkpoint.c: RBM trainer checkpoints. Little-endian binary layout:
 *   "NGRBMCK1" | u32 version | u32 header_bytes | header (fixed fields below) | payload floats |
 *   u32 CRC-32 (zlib) of every preceding byte.
 * The payload holds, in order: W, a, b, particles, vel_W, vel_a, vel_b, mu_v, mu_h, then the
 * optimizer's extra state (FANG). Saving writes path.tmp, flushes, fsyncs and renames, so an
 * interrupted save leaves the previous checkpoint intact. Loading validates everything (size,
 * magic, version, CRC, shapes, finite values) before touching the trainer. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "natgrad/rbm.h"
#include "optim/fang.h"

#define CK_MAGIC "NGRBMCK1"
#define CK_VERSION 1u
#define CK_MAX_TENSORS 32

typedef struct ck_header {
    uint32_t n_visible, n_hidden, batch, particles, k, estimator, optimizer, binarize_train;
    uint32_t fang_refit_every, n_train, n_tensors, reserved;
    float lr, lr_gamma, momentum, weight_decay, center_rate, init_std, fang_tau, fang_lambda;
    uint64_t seed, t, rng_step, payload_floats;
    int32_t epoch, pos;
} ck_header;

static int list_tensors(ng_rbm_trainer *tr, ng_tensor **ts) {
    int n = 0;
    ts[n++] = &tr->rbm->W;
    ts[n++] = &tr->rbm->a;
    ts[n++] = &tr->rbm->b;
    ts[n++] = &tr->particles;
    ts[n++] = &tr->vel_W;
    ts[n++] = &tr->vel_a;
    ts[n++] = &tr->vel_b;
    ts[n++] = &tr->mu_v;
    ts[n++] = &tr->mu_h;
    if (tr->fang) n += ng_fang_state_tensors(tr, ts + n, CK_MAX_TENSORS - n);
    return n;
}

static void fill_header(const ng_rbm_trainer *tr, ck_header *h, int n_tensors, uint64_t floats) {
    const ng_rbm_config *c = &tr->cfg;
    memset(h, 0, sizeof *h);
    h->n_visible = (uint32_t)tr->rbm->n_visible;
    h->n_hidden = (uint32_t)tr->rbm->n_hidden;
    h->batch = (uint32_t)c->batch;
    h->particles = (uint32_t)c->particles;
    h->k = (uint32_t)c->k;
    h->estimator = (uint32_t)c->estimator;
    h->optimizer = (uint32_t)c->optimizer;
    h->binarize_train = (uint32_t)c->binarize_train;
    h->fang_refit_every = (uint32_t)c->fang_refit_every;
    h->n_train = (uint32_t)tr->n_train;
    h->n_tensors = (uint32_t)n_tensors;
    h->lr = c->lr;
    h->lr_gamma = c->lr_gamma;
    h->momentum = c->momentum;
    h->weight_decay = c->weight_decay;
    h->center_rate = c->center_rate;
    h->init_std = c->init_std;
    h->fang_tau = c->fang_tau;
    h->fang_lambda = c->fang_lambda;
    h->seed = c->seed;
    h->t = tr->t;
    h->rng_step = tr->rng_step;
    h->payload_floats = floats;
    h->epoch = tr->epoch;
    h->pos = tr->pos;
}

static void header_to_config(const ck_header *h, ng_rbm_config *c) {
    ng_rbm_config_default(c);
    c->batch = (int)h->batch;
    c->particles = (int)h->particles;
    c->k = (int)h->k;
    c->estimator = (ng_rbm_estimator)h->estimator;
    c->optimizer = (ng_rbm_optimizer)h->optimizer;
    c->binarize_train = (int)h->binarize_train;
    c->fang_refit_every = (int)h->fang_refit_every;
    c->lr = h->lr;
    c->lr_gamma = h->lr_gamma;
    c->momentum = h->momentum;
    c->weight_decay = h->weight_decay;
    c->center_rate = h->center_rate;
    c->init_std = h->init_std;
    c->fang_tau = h->fang_tau;
    c->fang_lambda = h->fang_lambda;
    c->seed = h->seed;
}

ng_status ng_rbm_checkpoint_save(const ng_rbm_trainer *trc, const char *path) {
    ng_rbm_trainer *tr = (ng_rbm_trainer *)trc;
    ng_tensor *ts[CK_MAX_TENSORS];
    int n = list_tensors(tr, ts), i;
    uint64_t floats = 0;
    uint32_t version = CK_VERSION, hbytes = (uint32_t)sizeof(ck_header), crc;
    ck_header h;
    char tmp[4096];
    FILE *f;
    float *buf = NULL;
    size_t maxn = 0;
    ng_status s = NG_OK;
    for (i = 0; i < n; i++) {
        floats += ng_tensor_count(ts[i]);
        if (ng_tensor_count(ts[i]) > maxn) maxn = ng_tensor_count(ts[i]);
    }
    fill_header(tr, &h, n, floats);
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ng_error(NG_ERR_INVALID_ARG, "checkpoint path too long: %s", path);
    buf = (float *)malloc(maxn * sizeof(float));
    if (!buf) return ng_error(NG_ERR_OOM, "checkpoint %s: out of host memory", path);
    f = fopen(tmp, "wb");
    if (!f) {
        free(buf);
        return ng_error(NG_ERR_IO, "checkpoint %s: cannot create %s: %s", path, tmp, strerror(errno));
    }
    crc = (uint32_t)crc32(0L, Z_NULL, 0);
#define CK_WRITE(ptr, bytes)                                                                 \
    do {                                                                                     \
        if (s == NG_OK && fwrite((ptr), 1, (bytes), f) != (bytes))                           \
            s = ng_error(NG_ERR_IO, "checkpoint %s: write failed: %s", tmp, strerror(errno)); \
        if (s == NG_OK) crc = (uint32_t)crc32(crc, (const Bytef *)(ptr), (uInt)(bytes));     \
    } while (0)
    CK_WRITE(CK_MAGIC, 8);
    CK_WRITE(&version, 4);
    CK_WRITE(&hbytes, 4);
    CK_WRITE(&h, sizeof h);
    for (i = 0; s == NG_OK && i < n; i++) {
        size_t cnt = ng_tensor_count(ts[i]);
        s = ng_tensor_get(tr->be, ts[i], buf);
        CK_WRITE(buf, cnt * sizeof(float));
    }
#undef CK_WRITE
    if (s == NG_OK && fwrite(&crc, 1, 4, f) != 4)
        s = ng_error(NG_ERR_IO, "checkpoint %s: write failed: %s", tmp, strerror(errno));
    if (s == NG_OK && fflush(f) != 0)
        s = ng_error(NG_ERR_IO, "checkpoint %s: flush failed: %s", tmp, strerror(errno));
    if (s == NG_OK && fsync(fileno(f)) != 0)
        s = ng_error(NG_ERR_IO, "checkpoint %s: fsync failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && s == NG_OK)
        s = ng_error(NG_ERR_IO, "checkpoint %s: close failed: %s", tmp, strerror(errno));
    if (s == NG_OK && rename(tmp, path) != 0)
        s = ng_error(NG_ERR_IO, "checkpoint %s: rename from %s failed: %s", path, tmp, strerror(errno));
    if (s != NG_OK) remove(tmp);
    free(buf);
    return s;
}

/* Read a whole checkpoint file and validate its framing (size, magic, version, CRC). */
static ng_status read_file(const char *path, unsigned char **data, size_t *len, ck_header *h) {
    FILE *f = fopen(path, "rb");
    long sz;
    unsigned char *d;
    uint32_t version, hbytes, crc_file, crc;
    struct stat st;
    if (!f) return ng_error(NG_ERR_IO, "checkpoint %s: cannot open: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ng_error(NG_ERR_IO, "checkpoint %s: not a regular file", path);
    }
    if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return ng_error(NG_ERR_IO, "checkpoint %s: cannot determine size", path);
    }
    if ((size_t)sz < 16 + sizeof(ck_header) + 4) {
        fclose(f);
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: truncated (%ld bytes, header alone needs %zu)",
                        path, sz, 16 + sizeof(ck_header) + 4);
    }
    d = (unsigned char *)malloc((size_t)sz);
    if (!d) {
        fclose(f);
        return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory for %ld bytes", path, sz);
    }
    if (fread(d, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(d);
        return ng_error(NG_ERR_IO, "checkpoint %s: read failed", path);
    }
    fclose(f);
    if (memcmp(d, CK_MAGIC, 8) != 0) {
        free(d);
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: not a natgrad RBM checkpoint (bad magic)", path);
    }
    memcpy(&version, d + 8, 4);
    memcpy(&hbytes, d + 12, 4);
    if (version != CK_VERSION || hbytes != sizeof(ck_header)) {
        free(d);
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: unsupported version %u (header %u bytes); this build reads version %u",
                        path, version, hbytes, CK_VERSION);
    }
    memcpy(h, d + 16, sizeof *h);
    if (h->payload_floats > ((uint64_t)sz) / 4 ||
        16 + sizeof(ck_header) + h->payload_floats * 4 + 4 != (uint64_t)sz) {
        free(d);
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: truncated or padded: header promises %llu floats, file has %ld bytes",
                        path, (unsigned long long)h->payload_floats, sz);
    }
    memcpy(&crc_file, d + sz - 4, 4);
    crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)(sz - 4));
    if (crc != crc_file) {
        free(d);
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: CRC mismatch (file corrupt): stored %08x, computed %08x",
                        path, crc_file, crc);
    }
    *data = d;
    *len = (size_t)sz;
    return NG_OK;
}

ng_status ng_rbm_checkpoint_peek(const char *path, int *n_visible, int *n_hidden,
                                 ng_rbm_config *cfg, uint64_t *t) {
    unsigned char *d;
    size_t len;
    ck_header h;
    NG_TRY(read_file(path, &d, &len, &h));
    free(d);
    if (n_visible) *n_visible = (int)h.n_visible;
    if (n_hidden) *n_hidden = (int)h.n_hidden;
    if (cfg) header_to_config(&h, cfg);
    if (t) *t = h.t;
    return NG_OK;
}

ng_status ng_rbm_checkpoint_load(ng_rbm_trainer *tr, const char *path) {
    unsigned char *d;
    size_t len, off, j;
    ck_header h, mine;
    ng_tensor *ts[CK_MAX_TENSORS];
    int n = list_tensors(tr, ts), i;
    uint64_t floats = 0;
    const float *payload;
    ng_status s = NG_OK;
    for (i = 0; i < n; i++) floats += ng_tensor_count(ts[i]);
    NG_TRY(read_file(path, &d, &len, &h));
    fill_header(tr, &mine, n, floats);
    if (h.n_visible != mine.n_visible || h.n_hidden != mine.n_hidden ||
        h.particles != mine.particles || h.batch != mine.batch || h.optimizer != mine.optimizer ||
        h.n_tensors != mine.n_tensors || h.payload_floats != floats || h.k != mine.k ||
        h.estimator != mine.estimator || h.binarize_train != mine.binarize_train ||
        h.momentum != mine.momentum || h.weight_decay != mine.weight_decay ||
        h.center_rate != mine.center_rate || h.fang_refit_every != mine.fang_refit_every ||
        h.fang_tau != mine.fang_tau || h.fang_lambda != mine.fang_lambda) {
        free(d);
        return ng_error(NG_ERR_FORMAT,
                        "checkpoint %s: shapes or settings do not match this run (build the trainer from "
                        "ng_rbm_checkpoint_peek): file %ux%u RBM, %u particles, batch %u, optimizer %u; "
                        "run %ux%u, %u particles, batch %u, optimizer %u (k, estimator, momentum, weight "
                        "decay, center rate, binarisation and FANG settings must match too)",
                        path, h.n_hidden, h.n_visible, h.particles, h.batch, h.optimizer,
                        mine.n_hidden, mine.n_visible, mine.particles, mine.batch, mine.optimizer);
    }
    if (h.n_train != mine.n_train || h.pos < 0 || (uint32_t)h.pos > h.n_train || h.epoch < 0) {
        free(d);
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: trained on %u examples (position %d), this run has %u",
                        path, h.n_train, h.pos, mine.n_train);
    }
    payload = (const float *)(d + 16 + sizeof(ck_header));
    for (j = 0; j < floats; j++) {
        float v;
        memcpy(&v, (const unsigned char *)payload + j * 4, 4);
        if (!isfinite(v)) {
            free(d);
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: non-finite value at payload element %zu", path, j);
        }
    }
    /* validated: now modify the trainer */
    off = 0;
    for (i = 0; s == NG_OK && i < n; i++) {
        float *tmp = (float *)malloc(ng_tensor_count(ts[i]) * sizeof(float));
        if (!tmp) { s = ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", path); break; }
        memcpy(tmp, (const unsigned char *)payload + off * 4, ng_tensor_count(ts[i]) * sizeof(float));
        s = ng_tensor_set(tr->be, ts[i], tmp);
        free(tmp);
        off += ng_tensor_count(ts[i]);
    }
    if (s == NG_OK) {
        tr->t = h.t;
        tr->rng_step = h.rng_step;
        tr->cfg.lr = h.lr;
        tr->cfg.lr_gamma = h.lr_gamma;
        tr->cfg.seed = h.seed;
        s = ng_rbm_trainer_seek(tr, h.epoch, h.pos);
    }
    free(d);
    return s;
}

ng_status ng_rbm_checkpoint_load_params(ng_rbm *rbm, const char *path) {
    unsigned char *d;
    size_t len, j, nW, off;
    ck_header h;
    const unsigned char *payload;
    float *tmp;
    ng_status s;
    NG_TRY(read_file(path, &d, &len, &h));
    if ((int)h.n_visible != rbm->n_visible || (int)h.n_hidden != rbm->n_hidden) {
        free(d);
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: %ux%u RBM, expected %dx%d", path, h.n_hidden,
                        h.n_visible, rbm->n_hidden, rbm->n_visible);
    }
    nW = (size_t)h.n_visible * h.n_hidden + h.n_visible + h.n_hidden;
    payload = d + 16 + sizeof(ck_header);
    tmp = (float *)malloc(nW * sizeof(float));
    if (!tmp) {
        free(d);
        return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", path);
    }
    memcpy(tmp, payload, nW * sizeof(float));
    for (j = 0; j < nW; j++)
        if (!isfinite(tmp[j])) {
            free(tmp);
            free(d);
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: non-finite parameter at element %zu", path, j);
        }
    off = (size_t)h.n_visible * h.n_hidden;
    s = ng_rbm_set_params(rbm, tmp, tmp + off, tmp + off + h.n_visible);
    free(tmp);
    free(d);
    return s;
}
