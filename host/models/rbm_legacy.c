/* rbm_legacy.c: read RBM checkpoints of natgrad 0.1 (format "NGRBMCK1") by converting them, in
 * memory, into the entries a current checkpoint holds (natgrad/checkpoint.h), so that `rbm eval`
 * and `rbm train --resume` accept them unchanged and resume them exactly.
 * The 0.1 layout, little-endian: "NGRBMCK1" | u32 version 1 | u32 header bytes (120) | header |
 * payload floats: W, a, b, particles, vel_W, vel_a, vel_b, mu_v, mu_h, then for FANG mom, S_un,
 * Lambda, beta_v, beta_h, sigma2, diag | u32 CRC-32 of everything before. Every header field is
 * range-checked and the payload length is checked against the shapes before anything is read
 * (0.1 itself did not, and read past its buffer for a file that claimed more units than it held). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "natgrad/file.h"
#include "natgrad/rbm.h"

#define LEGACY_MAGIC "NGRBMCK1"

typedef struct legacy_header {
    uint32_t n_visible, n_hidden, batch, particles, k, estimator, optimizer, binarize_train;
    uint32_t fang_refit_every, n_train, n_tensors, reserved;
    float lr, lr_gamma, momentum, weight_decay, center_rate, init_std, fang_tau, fang_lambda;
    uint64_t seed, t, rng_step, payload_floats;
    int32_t epoch, pos;
} legacy_header;

#define BAD(...) ng_error(NG_ERR_FORMAT, __VA_ARGS__)

static ng_status check_header(const char *path, const legacy_header *h) {
    uint64_t nv = h->n_visible, nh = h->n_hidden;
#define RANGE(field, lo, hi)                                                                       \
    if ((uint64_t)(h->field) < (uint64_t)(lo) || (uint64_t)(h->field) > (uint64_t)(hi))           \
        return BAD("checkpoint %s (natgrad 0.1 format): field %s = %llu is out of range [%llu, %llu]", \
                   path, #field, (unsigned long long)(h->field), (unsigned long long)(lo),        \
                   (unsigned long long)(hi));
    RANGE(n_visible, 1, 1u << 30)
    RANGE(n_hidden, 1, 1u << 30)
    RANGE(n_train, 1, 2147483647u)
    RANGE(batch, 1, h->n_train)
    RANGE(particles, 1, 1u << 30)
    RANGE(k, 1, 100000)
    RANGE(estimator, 0, 1)
    RANGE(optimizer, 0, 2)
    RANGE(binarize_train, 0, 1)
    if (h->optimizer == 2) RANGE(fang_refit_every, 1, 1000000000)
    RANGE(n_tensors, h->optimizer == 2 ? 16 : 9, h->optimizer == 2 ? 16 : 9)
#undef RANGE
    if ((double)nv * (double)nh > 2e9)
        return BAD("checkpoint %s (natgrad 0.1 format): %llu x %llu weights is too large", path,
                   (unsigned long long)nh, (unsigned long long)nv);
    if (h->epoch < 0 || h->pos < 0 || (uint32_t)h->pos > h->n_train)
        return BAD("checkpoint %s (natgrad 0.1 format): fields epoch = %d / pos = %d are out of range "
                   "(pos must be in [0, %u])", path, h->epoch, h->pos, h->n_train);
    if (!(h->lr > 0.0f) || !isfinite(h->lr) || !(h->lr_gamma >= 0.0f) || !isfinite(h->lr_gamma) ||
        !(h->momentum >= 0.0f && h->momentum < 1.0f) || !(h->weight_decay >= 0.0f) ||
        !isfinite(h->weight_decay) || !(h->center_rate > 0.0f && h->center_rate <= 1.0f) ||
        (h->optimizer == 2 && (!(h->fang_tau >= 1.0f) || !isfinite(h->fang_tau) ||
                               !(h->fang_lambda > 0.0f) || !isfinite(h->fang_lambda))))
        return BAD("checkpoint %s (natgrad 0.1 format): a learning-rate, momentum, weight-decay, "
                   "centering or FANG setting is out of range (lr %g, gamma %g, momentum %g, decay %g, "
                   "rate %g, tau %g, lambda %g)", path, (double)h->lr, (double)h->lr_gamma,
                   (double)h->momentum, (double)h->weight_decay, (double)h->center_rate,
                   (double)h->fang_tau, (double)h->fang_lambda);
    if (h->t > ((uint64_t)1 << 53))
        return BAD("checkpoint %s (natgrad 0.1 format): field t = %llu is out of range", path,
                   (unsigned long long)h->t);
    return NG_OK;
}

/* One tensor of the payload: name, shape; advances *off (in floats). */
static ng_status add(ng_ckpt *c, const char *name, const float *payload, uint64_t *off, uint64_t rows,
                     uint64_t cols) {
    uint64_t dims[2];
    dims[0] = rows;
    dims[1] = cols;
    NG_TRY(ng_ckpt_add_tensor(c, name, NG_F32, 2, dims, payload + *off));
    *off += rows * cols;
    return NG_OK;
}

static ng_status convert(const char *path, const legacy_header *h, const float *p, ng_ckpt *c) {
    static const char *const prec[] = {"identity", "centering", "fang"};
    uint64_t nv = h->n_visible, nh = h->n_hidden, M = h->particles, n = nv + nh, off = 0, nw = nv * nh;
    uint64_t vel_off, vel_dims[1];
    float *vel;
    ng_status s;
    NG_TRY(ng_ckpt_set_str(c, "natgrad.version", "0.1.0 (converted from NGRBMCK1)"));
    NG_TRY(ng_ckpt_set_u64(c, "run.t", h->t));
    NG_TRY(ng_ckpt_set_u64(c, "run.seed", h->seed));
    NG_TRY(ng_ckpt_set_str(c, "model.kind", "rbm"));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.n_visible", (int64_t)nv));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.n_hidden", (int64_t)nh));
    NG_TRY(ng_ckpt_set_str(c, "rbm.estimator", h->estimator ? "cd" : "pcd"));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.k", h->k));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.particles", h->particles));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.batch", h->batch));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.binarize_train", h->binarize_train));
    NG_TRY(ng_ckpt_set_u64(c, "rbm.seed", h->seed));
    NG_TRY(ng_ckpt_set_u64(c, "rbm.rng_step", h->rng_step));
    NG_TRY(ng_ckpt_set_i64(c, "data.epoch", h->epoch));
    NG_TRY(ng_ckpt_set_i64(c, "data.pos", h->pos));
    NG_TRY(ng_ckpt_set_i64(c, "data.n", h->n_train));
    NG_TRY(ng_ckpt_set_i64(c, "data.batch", h->batch));
    NG_TRY(ng_ckpt_set_i64(c, "data.rank", 0));
    NG_TRY(ng_ckpt_set_i64(c, "data.world", 1));
    NG_TRY(ng_ckpt_set_str(c, "precond.kind", prec[h->optimizer]));
    NG_TRY(ng_ckpt_set_str(c, "update.kind", "sgd"));
    NG_TRY(ng_ckpt_set_f32(c, "sgd.lr", h->lr));
    NG_TRY(ng_ckpt_set_f32(c, "sgd.lr_gamma", h->lr_gamma));
    NG_TRY(ng_ckpt_set_f32(c, "sgd.momentum", h->momentum));
    NG_TRY(ng_ckpt_set_f32(c, "sgd.weight_decay", h->weight_decay));
    NG_TRY(add(c, "model.W", p, &off, nh, nv));
    NG_TRY(add(c, "model.a", p, &off, nv, 1));
    NG_TRY(add(c, "model.b", p, &off, nh, 1));
    NG_TRY(add(c, "rbm.particles", p, &off, nv, M));
    /* the velocities of W, a, b, back to back: the packed layout of the parameters */
    vel_off = off;
    off += nw + nv + nh;
    vel = (float *)malloc((size_t)(nw + nv + nh) * sizeof(float));
    if (!vel) return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", path);
    memcpy(vel, p + vel_off, (size_t)(nw + nv + nh) * sizeof(float));
    vel_dims[0] = nw + nv + nh;
    s = ng_ckpt_add_tensor(c, "sgd.velocity", NG_F32, 1, vel_dims, vel);
    free(vel);
    NG_TRY(s);
    if (h->optimizer == 1) {
        NG_TRY(ng_ckpt_set_f32(c, "centering.rate", h->center_rate));
        NG_TRY(add(c, "centering.mu_v", p, &off, nv, 1));
        NG_TRY(add(c, "centering.mu_h", p, &off, nh, 1));
    } else {
        off += nv + nh; /* 0.1 kept centering offsets for every optimizer */
    }
    if (h->optimizer == 2) {
        NG_TRY(ng_ckpt_set_i64(c, "fang.refit_every", h->fang_refit_every));
        NG_TRY(ng_ckpt_set_f32(c, "fang.tau", h->fang_tau));
        NG_TRY(ng_ckpt_set_f32(c, "fang.lambda", h->fang_lambda));
        NG_TRY(ng_ckpt_set_u64(c, "fang.seed", h->seed));
        NG_TRY(add(c, "fang.mom", p, &off, 2 * n, 1));
        NG_TRY(add(c, "fang.S_un", p, &off, n, n));
        NG_TRY(add(c, "fang.Lambda", p, &off, n, n));
        NG_TRY(add(c, "fang.beta_v", p, &off, nh, nv));
        NG_TRY(add(c, "fang.beta_h", p, &off, nh, nv));
        NG_TRY(add(c, "fang.sigma2", p, &off, nh, nv));
        NG_TRY(add(c, "fang.diag", p, &off, 8, 1));
    }
    if (off != h->payload_floats)
        return BAD("checkpoint %s (natgrad 0.1 format): internal size mismatch (%llu of %llu floats)", path,
                   (unsigned long long)off, (unsigned long long)h->payload_floats);
    return NG_OK;
}

/* The whole legacy file, validated. */
static ng_status read_legacy(const char *path, ng_ckpt **out) {
    int fd = -1;
    uint64_t size = 0, expect, nv, nh, M, n, i;
    unsigned char *d = NULL;
    legacy_header h;
    uint32_t version, hbytes, crc_file, crc;
    ng_status s;
    ng_ckpt *c = NULL;
    const size_t head = 16 + sizeof(legacy_header);
    NG_TRY(ng_file_open_read(path, "checkpoint", &fd, &size));
    if (size < head + 4) {
        close(fd);
        return BAD("checkpoint %s (natgrad 0.1 format): truncated (%llu bytes, the header alone needs %zu)",
                   path, (unsigned long long)size, head + 4);
    }
    if (size > ((uint64_t)1 << 40)) {
        close(fd);
        return BAD("checkpoint %s: %llu bytes is not a plausible 0.1 checkpoint", path, (unsigned long long)size);
    }
    d = (unsigned char *)malloc((size_t)size);
    if (!d) {
        close(fd);
        return ng_error(NG_ERR_OOM, "checkpoint %s: out of memory for %llu bytes", path, (unsigned long long)size);
    }
    {
        uint64_t got = 0;
        while (got < size) {
            ssize_t r = read(fd, d + got, (size_t)(size - got));
            if (r <= 0) break;
            got += (uint64_t)r;
        }
        close(fd);
        if (got != size) {
            free(d);
            return ng_error(NG_ERR_IO, "checkpoint %s: read failed", path);
        }
    }
    memcpy(&version, d + 8, 4);
    memcpy(&hbytes, d + 12, 4);
    if (version != 1 || hbytes != sizeof(legacy_header)) {
        free(d);
        return BAD("checkpoint %s: natgrad 0.1 format with version %u and a header of %u bytes; only version 1 "
                   "(120 bytes) exists", path, version, hbytes);
    }
    memcpy(&h, d + 16, sizeof h);
    s = check_header(path, &h);
    /* the payload the shapes imply, compared with the header and the file length before any read */
    nv = h.n_visible;
    nh = h.n_hidden;
    M = h.particles;
    n = nv + nh;
    expect = 2 * (nv * nh + nv + nh) + nv * M + nv + nh;
    if (h.optimizer == 2) expect += 2 * n + 2 * n * n + 3 * nv * nh + 8;
    if (s == NG_OK && h.payload_floats != expect)
        s = BAD("checkpoint %s (natgrad 0.1 format): field payload_floats = %llu, but the shapes "
                "(%llux%llu RBM, %llu particles%s) need %llu",
                path, (unsigned long long)h.payload_floats, (unsigned long long)nh, (unsigned long long)nv,
                (unsigned long long)M, h.optimizer == 2 ? ", FANG state" : "", (unsigned long long)expect);
    if (s == NG_OK && head + expect * 4 + 4 != size)
        s = BAD("checkpoint %s (natgrad 0.1 format): truncated or padded: the header promises %llu floats "
                "(%llu bytes in all), the file has %llu bytes",
                path, (unsigned long long)expect, (unsigned long long)(head + expect * 4 + 4),
                (unsigned long long)size);
    if (s == NG_OK) {
        memcpy(&crc_file, d + size - 4, 4);
        crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)(size - 4));
        if (crc != crc_file)
            s = BAD("checkpoint %s (natgrad 0.1 format): CRC mismatch (file corrupt): stored %08x, computed %08x",
                    path, crc_file, crc);
    }
    for (i = 0; s == NG_OK && i < expect; i++) {
        float v;
        memcpy(&v, d + head + 4 * i, 4);
        if (!isfinite(v))
            s = BAD("checkpoint %s (natgrad 0.1 format): non-finite value at payload element %llu", path,
                    (unsigned long long)i);
    }
    if (s == NG_OK) s = ng_ckpt_new(&c);
    if (s == NG_OK) s = ng_ckpt_set_path(c, path);
    if (s == NG_OK) {
        float *p = (float *)malloc((size_t)expect * sizeof(float));
        if (!p) s = ng_error(NG_ERR_OOM, "checkpoint %s: out of memory", path);
        else {
            memcpy(p, d + head, (size_t)expect * sizeof(float));
            s = convert(path, &h, p, c);
            free(p);
        }
    }
    free(d);
    if (s != NG_OK) {
        ng_ckpt_free(c);
        return s;
    }
    *out = c;
    return NG_OK;
}

ng_status ng_rbm_checkpoint_read(const char *path, int flags, ng_ckpt **out) {
    int fd;
    uint64_t size;
    char magic[8];
    ssize_t r;
    *out = NULL;
    NG_TRY(ng_file_open_read(path, "checkpoint", &fd, &size));
    r = size >= 8 ? read(fd, magic, 8) : 0;
    close(fd);
    if (r == 8 && memcmp(magic, LEGACY_MAGIC, 8) == 0) return read_legacy(path, out);
    return ng_ckpt_read(path, flags, out);
}
