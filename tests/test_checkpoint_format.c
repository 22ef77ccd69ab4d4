/* test_checkpoint_format.c: the NGCK checkpoint container (natgrad/checkpoint.h), the atomic
 * writer and regular-file opening (natgrad/file.h), and the safetensors writer
 * (natgrad/safetensors.h).
 *
 * - round trip of every field type and of f32/f64/f16/bf16 tensors of 1..4 dimensions (one added
 *   by callback), bit for bit; header-only reads; last-wins for repeated keys; byte-identical
 *   rewrites;
 * - every header field corrupted in turn with both CRCs recomputed afterwards, so that the field's
 *   own validation refuses it (the message must name the field); CRC damage; truncation at every
 *   byte; trailing bytes; a randomized damage loop that must never crash or hang (also built with
 *   ASan+UBSan as test_checkpoint_format_asan);
 * - lookups, range-checked reads and ng_ckpt_expect with their messages;
 * - FIFOs, directories and devices refused at once; failed writes (missing directory, a fetch
 *   callback's error, NaN fetched, the file size limit) leave the previous file intact and no .tmp;
 * - safetensors files read back by an independent Python reader (tests/read_safetensors.py,
 *   json + struct only), skipped with a message when python3 is missing.
 * The test-side walker of the file layout below is written from the format description in
 * checkpoint.h, not from the library. Files live in a mkdtemp directory removed at the end. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "natgrad/checkpoint.h"
#include "natgrad/file.h"
#include "natgrad/safetensors.h"
#include "natgrad/status.h"

static char tmpdir[256];
static const char *argv0 = "";

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    if (n && fwrite(p, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long len;
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = malloc(len > 0 ? (size_t)len : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static void on_alarm(int sig) {
    static const char msg[] = "  alarm: the test blocked or looped (FIFO? endless loop?)\n";
    (void)sig;
    if (write(1, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(3);
}

/* ---- little-endian helpers and the test-side layout walker ---------------------------------- */

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}
static void wr32(unsigned char *p, uint32_t v) {
    int i;
    for (i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t al64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

typedef struct kvpos {
    size_t klen_at, key_at, type_at, val_at;
    uint32_t type;
    char key[256];
} kvpos;

typedef struct tpos {
    size_t nlen_at, name_at, dtype_at, ndim_at, dims_at, off_at;
    uint32_t dtype, ndim;
    uint64_t off, bytes;
    char name[256];
} tpos;

typedef struct layout {
    uint64_t hb, n_kv, n_t, pstart;
    kvpos kv[32];
    tpos t[16];
} layout;

/* Walk a valid file, recording where every field sits. Returns 0 on success. */
static int walk(const unsigned char *b, size_t n, layout *L) {
    size_t p = 32;
    uint64_t i;
    memset(L, 0, sizeof *L);
    if (n < 32 || memcmp(b, "NGCK", 4) != 0) return -1;
    L->hb = rd64(b + 8);
    L->n_kv = rd64(b + 16);
    L->n_t = rd64(b + 24);
    L->pstart = al64(L->hb + 4);
    if (L->n_kv > 32 || L->n_t > 16 || L->hb > n) return -1;
    for (i = 0; i < L->n_kv; i++) {
        kvpos *k = &L->kv[i];
        uint32_t kl = rd32(b + p);
        k->klen_at = p;
        k->key_at = p + 4;
        memcpy(k->key, b + p + 4, kl);
        p += 4 + kl;
        k->type_at = p;
        k->type = rd32(b + p);
        p += 4;
        k->val_at = p;
        p += k->type == 3 ? 4 : k->type == 5 ? 4 + rd32(b + p) : 8;
    }
    for (i = 0; i < L->n_t; i++) {
        tpos *t = &L->t[i];
        uint32_t nl = rd32(b + p), d;
        uint64_t count = 1;
        t->nlen_at = p;
        t->name_at = p + 4;
        memcpy(t->name, b + p + 4, nl);
        p += 4 + nl;
        t->dtype_at = p;
        t->dtype = rd32(b + p);
        t->ndim_at = p + 4;
        t->ndim = rd32(b + p + 4);
        p += 8;
        t->dims_at = p;
        for (d = 0; d < t->ndim; d++)
            count *= rd64(b + p + 8 * d);
        p += 8 * (size_t)t->ndim;
        t->off_at = p;
        t->off = rd64(b + p);
        p += 8;
        t->bytes = count * (t->dtype == 0 ? 4 : t->dtype == 1 ? 8 : 2);
    }
    return p == L->hb ? 0 : -1;
}

static const kvpos *kvp(const layout *L, const char *key) {
    uint64_t i;
    for (i = 0; i < L->n_kv; i++)
        if (strcmp(L->kv[i].key, key) == 0) return &L->kv[i];
    printf("  (test bug: no key %s in the layout)\n", key);
    exit(2);
}

static const tpos *tp(const layout *L, const char *name) {
    uint64_t i;
    for (i = 0; i < L->n_t; i++)
        if (strcmp(L->t[i].name, name) == 0) return &L->t[i];
    printf("  (test bug: no tensor %s in the layout)\n", name);
    exit(2);
}

/* Recompute both CRCs where the (possibly damaged) header_bytes field puts them. */
static void fix_crcs(unsigned char *b, size_t n) {
    uint64_t hb, ps;
    if (n < 16) return;
    hb = rd64(b + 8);
    if (hb <= n && n - hb >= 4) wr32(b + hb, (uint32_t)crc32(0L, b, (uInt)hb));
    ps = hb <= n ? al64(hb + 4) : UINT64_MAX;
    if (ps <= n && n - ps >= 4) wr32(b + n - 4, (uint32_t)crc32(0L, b + ps, (uInt)(n - 4 - ps)));
}

/* ---- the reference checkpoint -----------------------------------------------------------------
 */

static float g_W[15], g_C4[12], g_CB[24], g_t1[1] = {1.5f}, g_t2[1] = {-2.5f};
static double g_B[7];
static uint16_t g_H[5] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001}; /* f16 1, -2, 0.5, 65504, tiny */
static uint16_t g_BF[6] = {0x3f80, 0xbf80, 0x4049, 0x0000, 0x8000, 0x7f7f};
static const char *g_note = "quote \" backslash \\ newline \n tab \t bell \x07 utf8 \xc3\xa9";

static void fill_data(void) {
    int i;
    for (i = 0; i < 15; i++)
        g_W[i] = (float)(i - 7) * 0.37f + 1e-3f * (float)(i * i);
    g_W[0] = -0.0f;
    g_W[1] = 1e-40f; /* subnormal */
    g_W[2] = FLT_MAX;
    for (i = 0; i < 7; i++)
        g_B[i] = 1.0 / (double)(i + 3) - 0.25;
    g_B[6] = -DBL_MAX;
    for (i = 0; i < 12; i++)
        g_C4[i] = (float)i * 0.5f - 3.0f;
    for (i = 0; i < 24; i++)
        g_CB[i] = (float)(i * 7 % 11) / 3.0f;
}

static int g_fetch_calls;
static ng_status fetch_copy(void *user, void *dst, size_t bytes) {
    g_fetch_calls++;
    memcpy(dst, user, bytes);
    return NG_OK;
}

/* The reference container; padlen sizes a string field so the header padding is at least 8. */
static ng_status make_ref(ng_ckpt **out, size_t padlen) {
    static const uint64_t dW[2] = {3, 5}, dB[1] = {7}, dC4[4] = {2, 1, 3, 2}, dCB[3] = {2, 3, 4},
                          dH[1] = {5}, dBF[2] = {2, 3}, d1[1] = {1};
    char pad[128];
    ng_ckpt *c;
    memset(pad, 'x', sizeof pad);
    pad[padlen < sizeof pad ? padlen : sizeof pad - 1] = 0;
    NG_TRY(ng_ckpt_new(&c));
    *out = c;
    NG_TRY(ng_ckpt_set_str(c, "model.kind", "rbm"));
    NG_TRY(ng_ckpt_set_u64(c, "rbm.k", 1));
    NG_TRY(ng_ckpt_set_i64(c, "seed", -5));
    NG_TRY(ng_ckpt_set_f32(c, "lr", 0.1f));
    NG_TRY(ng_ckpt_set_f64(c, "lambda", 1e-3));
    NG_TRY(ng_ckpt_set_str(c, "note", g_note));
    NG_TRY(ng_ckpt_set_u64(c, "big", UINT64_MAX));
    NG_TRY(ng_ckpt_set_i64(c, "neg", INT64_MIN));
    NG_TRY(ng_ckpt_set_u64(c, "aa", 1));
    NG_TRY(ng_ckpt_set_u64(c, "ab", 2));
    NG_TRY(ng_ckpt_set_str(c, "empty", ""));
    NG_TRY(ng_ckpt_set_f32(c, "tiny", -1e-40f));
    NG_TRY(ng_ckpt_set_str(c, "odd:chars/ok-._", pad));
    NG_TRY(ng_ckpt_add_tensor(c, "W", NG_F32, 2, dW, g_W));
    NG_TRY(ng_ckpt_add_tensor(c, "B", NG_F64, 1, dB, g_B));
    NG_TRY(ng_ckpt_add_tensor(c, "C4", NG_F32, 4, dC4, g_C4));
    NG_TRY(ng_ckpt_add_tensor_cb(c, "CB", NG_F32, 3, dCB, fetch_copy, g_CB));
    NG_TRY(ng_ckpt_add_tensor(c, "H", NG_F16, 1, dH, g_H));
    NG_TRY(ng_ckpt_add_tensor(c, "BF", NG_BF16, 2, dBF, g_BF));
    NG_TRY(ng_ckpt_add_tensor(c, "t1", NG_F32, 1, d1, g_t1));
    NG_TRY(ng_ckpt_add_tensor(c, "t2", NG_F32, 1, d1, g_t2));
    return NG_OK;
}

static unsigned char *g_ref;
static size_t g_ref_n;
static layout g_L;

/* Build the reference file (header padding >= 8 bytes) into g_ref and walk it. */
static int build_ref(void) {
    size_t padlen;
    for (padlen = 1; padlen < 80; padlen++) {
        ng_ckpt *c = NULL;
        ng_status s = make_ref(&c, padlen);
        if (s == NG_OK) s = ng_ckpt_write(c, tpath("ref.ckpt"));
        ng_ckpt_free(c);
        if (s != NG_OK) {
            printf("  writing the reference checkpoint: %s\n", ng_last_error());
            return -1;
        }
        free(g_ref);
        g_ref = slurp(tpath("ref.ckpt"), &g_ref_n);
        if (!g_ref || walk(g_ref, g_ref_n, &g_L) != 0) {
            printf("  the test walker cannot parse the reference file\n");
            return -1;
        }
        if (g_L.pstart - (g_L.hb + 4) >= 8) return 0;
    }
    return -1;
}

/* ---- expectations -----------------------------------------------------------------------------
 */

/* Read path with flags; want code, a message naming the file and containing want1 (and want2). */
static int expect_read_fail(const char *label, const char *path, int flags, ng_status code,
                            const char *want1, const char *want2) {
    ng_ckpt *c = (ng_ckpt *)(uintptr_t)1;
    ng_status s = ng_ckpt_read(path, flags, &c);
    if (s != code) {
        printf("  %s: %s read returned %s (%s), want %s\n", label,
               flags == NG_CKPT_HEADER_ONLY ? "header-only" : "full", ng_status_name(s),
               ng_last_error(), ng_status_name(code));
        if (s == NG_OK) ng_ckpt_free(c);
        return 1;
    }
    if (c != NULL) {
        printf("  %s: *out not NULL after a failure\n", label);
        return 1;
    }
    if (!strstr(ng_last_error(), path)) {
        printf("  %s: message does not name the file: %s\n", label, ng_last_error());
        return 1;
    }
    if ((want1 && !strstr(ng_last_error(), want1)) || (want2 && !strstr(ng_last_error(), want2))) {
        printf("  %s: message lacks \"%s\"%s%s%s: %s\n", label, want1, want2 ? " / \"" : "",
               want2 ? want2 : "", want2 ? "\"" : "", ng_last_error());
        return 1;
    }
    return 0;
}

static int expect_read_ok(const char *label, const char *path, int flags) {
    ng_ckpt *c = NULL;
    ng_status s = ng_ckpt_read(path, flags, &c);
    ng_ckpt_free(c);
    if (s != NG_OK) {
        printf("  %s: %s read refused: %s\n", label, flags ? "header-only" : "full",
               ng_last_error());
        return 1;
    }
    return 0;
}

/* ---- round trip ---------------------------------------------------------------------------------
 */

static int same_kvs(const ng_ckpt *a, const ng_ckpt *b) {
    int i;
    NGT_CHECK(ng_ckpt_n_kv(a) == ng_ckpt_n_kv(b), "n_kv %d vs %d", ng_ckpt_n_kv(a),
              ng_ckpt_n_kv(b));
    for (i = 0; i < ng_ckpt_n_kv(a); i++) {
        ng_kv_type ta, tb;
        const char *ka = ng_ckpt_kv_at(a, i, &ta), *kb = ng_ckpt_kv_at(b, i, &tb);
        NGT_CHECK(ka && kb && strcmp(ka, kb) == 0 && ta == tb, "field %d: %s/%s type %d/%d", i, ka,
                  kb, (int)ta, (int)tb);
        switch (ta) {
        case NG_KV_U64: {
            uint64_t x, y;
            NGT_OK(ng_ckpt_get_u64(a, ka, &x));
            NGT_OK(ng_ckpt_get_u64(b, kb, &y));
            NGT_CHECK(x == y, "%s: %llu vs %llu", ka, (unsigned long long)x, (unsigned long long)y);
            break;
        }
        case NG_KV_I64: {
            int64_t x, y;
            NGT_OK(ng_ckpt_get_i64(a, ka, &x));
            NGT_OK(ng_ckpt_get_i64(b, kb, &y));
            NGT_CHECK(x == y, "%s: %lld vs %lld", ka, (long long)x, (long long)y);
            break;
        }
        case NG_KV_F32: {
            float x, y;
            NGT_OK(ng_ckpt_get_f32(a, ka, &x));
            NGT_OK(ng_ckpt_get_f32(b, kb, &y));
            NGT_CHECK(memcmp(&x, &y, 4) == 0, "%s: %.9g vs %.9g (bits)", ka, (double)x, (double)y);
            break;
        }
        case NG_KV_F64: {
            double x, y;
            NGT_OK(ng_ckpt_get_f64(a, ka, &x));
            NGT_OK(ng_ckpt_get_f64(b, kb, &y));
            NGT_CHECK(memcmp(&x, &y, 8) == 0, "%s: %.17g vs %.17g (bits)", ka, x, y);
            break;
        }
        case NG_KV_STR: {
            const char *x, *y;
            NGT_OK(ng_ckpt_get_str(a, ka, &x));
            NGT_OK(ng_ckpt_get_str(b, kb, &y));
            NGT_CHECK(strcmp(x, y) == 0, "%s: \"%s\" vs \"%s\"", ka, x, y);
            break;
        }
        }
    }
    return NGT_PASS;
}

/* Directory equality; with data, bytes equality (data of a callback tensor in `a` comes from cb).
 */
static int same_tensors(const ng_ckpt *a, const ng_ckpt *b, int with_data) {
    int i, k;
    NGT_CHECK(ng_ckpt_n_tensors(a) == ng_ckpt_n_tensors(b), "n_tensors %d vs %d",
              ng_ckpt_n_tensors(a), ng_ckpt_n_tensors(b));
    for (i = 0; i < ng_ckpt_n_tensors(a); i++) {
        const ng_ckpt_tensor *x = ng_ckpt_tensor_at(a, i), *y = ng_ckpt_tensor_at(b, i);
        NGT_CHECK(x && y && strcmp(x->name, y->name) == 0, "tensor %d name", i);
        NGT_CHECK(x->dtype == y->dtype && x->ndim == y->ndim && x->count == y->count &&
                      x->bytes == y->bytes,
                  "tensor %s: dtype/ndim/count/bytes differ", x->name);
        for (k = 0; k < 4; k++)
            NGT_CHECK(x->dims[k] == y->dims[k], "tensor %s dims[%d]", x->name, k);
        if (with_data) {
            const void *xd =
                x->data ? x->data : (strcmp(x->name, "CB") == 0 ? (const void *)g_CB : NULL);
            NGT_CHECK(xd && y->data, "tensor %s: no data", x->name);
            NGT_CHECK(memcmp(xd, y->data, x->bytes) == 0, "tensor %s: bytes differ", x->name);
            NGT_CHECK(((uintptr_t)y->data % 64) == 0, "tensor %s: data not 64-byte aligned",
                      x->name);
        } else {
            NGT_CHECK(y->data == NULL, "tensor %s: header-only read has data", y->name);
        }
    }
    return NGT_PASS;
}

static int test_round_trip(void) {
    ng_ckpt *a = NULL, *b = NULL, *h = NULL;
    const ng_ckpt_tensor *t;
    unsigned char *again;
    size_t again_n;
    int r = NGT_FAIL;
    char path[512];
    snprintf(path, sizeof path, "%s", tpath("ref.ckpt"));
    NGT_CHECK(build_ref() == 0, "reference file");
    /* the container as built for the reference file: rebuilt with the same padding */
    {
        const kvpos *k = kvp(&g_L, "odd:chars/ok-._");
        NGT_OK(make_ref(&a, rd32(g_ref + k->val_at)));
    }
    g_fetch_calls = 0;
    NGT_OK(ng_ckpt_read(path, NG_CKPT_READ_ALL, &b));
    NGT_OK(ng_ckpt_read(path, NG_CKPT_HEADER_ONLY, &h));
    if (same_kvs(a, b) != NGT_PASS || same_kvs(a, h) != NGT_PASS) goto out;
    if (same_tensors(a, b, 1) != NGT_PASS || same_tensors(a, h, 0) != NGT_PASS) goto out;
    if (strcmp(ng_ckpt_path(b), path) != 0 || strcmp(ng_ckpt_path(a), "") != 0) {
        printf("  ng_ckpt_path: \"%s\" / \"%s\"\n", ng_ckpt_path(b), ng_ckpt_path(a));
        goto out;
    }
    t = ng_ckpt_find(b, "C4");
    if (!t || t->ndim != 4 || t->count != 12 || t->bytes != 48 || ng_ckpt_find(b, "nope")) {
        printf("  ng_ckpt_find\n");
        goto out;
    }
    if (ng_ckpt_tensor_at(b, -1) || ng_ckpt_tensor_at(b, ng_ckpt_n_tensors(b)) ||
        ng_ckpt_kv_at(b, ng_ckpt_n_kv(b), NULL)) {
        printf("  out-of-range index did not give NULL\n");
        goto out;
    }
    /* the container read back writes the very same bytes; the callback is called per write */
    g_fetch_calls = 0;
    if (ng_ckpt_write(b, tpath("again.ckpt")) != NG_OK ||
        ng_ckpt_write(a, tpath("again2.ckpt")) != NG_OK) {
        printf("  rewrite: %s\n", ng_last_error());
        goto out;
    }
    if (g_fetch_calls != 1) {
        printf("  fetch called %d times for one write\n", g_fetch_calls);
        goto out;
    }
    again = slurp(tpath("again.ckpt"), &again_n);
    if (!again || again_n != g_ref_n || memcmp(again, g_ref, g_ref_n) != 0) {
        printf("  rewriting the read container changed the bytes\n");
        free(again);
        goto out;
    }
    free(again);
    again = slurp(tpath("again2.ckpt"), &again_n);
    if (!again || again_n != g_ref_n || memcmp(again, g_ref, g_ref_n) != 0) {
        printf("  writing the same contents twice gave different bytes\n");
        free(again);
        goto out;
    }
    free(again);
    /* the file is laid out as documented */
    if (g_L.n_kv != 13 || g_L.n_t != 8 || g_L.pstart % 64 || tp(&g_L, "W")->off != 0 ||
        tp(&g_L, "B")->off != 64 || g_ref_n != g_L.pstart + tp(&g_L, "t2")->off + 4 + 4) {
        printf("  layout: n_kv %llu n_t %llu pstart %llu size %zu\n", (unsigned long long)g_L.n_kv,
               (unsigned long long)g_L.n_t, (unsigned long long)g_L.pstart, g_ref_n);
        goto out;
    }
    r = NGT_PASS;
out:
    ng_ckpt_free(a);
    ng_ckpt_free(b);
    ng_ckpt_free(h);
    return r;
}

static int test_last_wins_and_listing(void) {
    ng_ckpt *c, *r = NULL;
    uint64_t u;
    const char *s;
    char buf[128];
    ng_kv_type ty;
    int res = NGT_FAIL;
    NGT_OK(ng_ckpt_new(&c));
    if (ng_ckpt_set_u64(c, "a", 1) || ng_ckpt_set_str(c, "b", "x") || ng_ckpt_set_u64(c, "a", 7) ||
        ng_ckpt_set_str(c, "b", "second") || ng_ckpt_set_f32(c, "c", 1.0f) ||
        ng_ckpt_set_str(c, "c", "now a string") || ng_ckpt_write(c, tpath("lw.ckpt")) ||
        ng_ckpt_read(tpath("lw.ckpt"), NG_CKPT_READ_ALL, &r)) {
        printf("  %s\n", ng_last_error());
        goto out;
    }
    if (ng_ckpt_n_kv(r) != 3 || strcmp(ng_ckpt_kv_at(r, 0, &ty), "a") || ty != NG_KV_U64 ||
        strcmp(ng_ckpt_kv_at(r, 2, &ty), "c") || ty != NG_KV_STR) {
        printf("  order or types after repeated sets\n");
        goto out;
    }
    if (ng_ckpt_get_u64(r, "a", &u) || u != 7 || ng_ckpt_get_str(r, "b", &s) ||
        strcmp(s, "second") || ng_ckpt_get_str(r, "c", &s) || strcmp(s, "now a string")) {
        printf("  last value did not win\n");
        goto out;
    }
    if (!ng_ckpt_has(r, "a") || ng_ckpt_has(r, "zz") || strcmp(ng_kv_type_name(NG_KV_F64), "f64")) {
        printf("  ng_ckpt_has / ng_kv_type_name\n");
        goto out;
    }
    ng_ckpt_free(c);
    ng_ckpt_free(r);
    r = NULL;
    /* an empty container: 32-byte header, CRC, padding to 64, payload CRC (of nothing) */
    NGT_OK(ng_ckpt_new(&c));
    NGT_OK(ng_ckpt_write(c, tpath("empty.ckpt")));
    ng_ckpt_free(c);
    c = NULL;
    {
        size_t n;
        unsigned char *b = slurp(tpath("empty.ckpt"), &n);
        int good = b && n == 68 && rd64(b + 8) == 32 && rd32(b + 64) == 0;
        free(b);
        NGT_CHECK(good, "empty container file layout (%zu bytes)", n);
    }
    NGT_OK(ng_ckpt_read(tpath("empty.ckpt"), NG_CKPT_READ_ALL, &r));
    NGT_CHECK(ng_ckpt_n_kv(r) == 0 && ng_ckpt_n_tensors(r) == 0, "empty container read back");
    NGT_OK(ng_ckpt_read(tpath("ref.ckpt"), NG_CKPT_HEADER_ONLY, &c));
    {
        struct {
            const char *key, *want;
        } fm[] = {
            {"rbm.k", "1"},
            {"seed", "-5"},
            {"lr", "0.100000001"},
            {"lambda", "0.001"},
            {"big", "18446744073709551615"},
            {"neg", "-9223372036854775808"},
            {"empty", "\"\""},
            {"note",
             "\"quote \\\" backslash \\\\ newline \\x0a tab \\x09 bell \\x07 utf8 \xc3\xa9\""}};
        int i, j;
        for (j = 0; j < (int)(sizeof fm / sizeof fm[0]); j++) {
            for (i = 0; i < ng_ckpt_n_kv(c); i++)
                if (strcmp(ng_ckpt_kv_at(c, i, NULL), fm[j].key) == 0) break;
            ng_ckpt_kv_format(c, i, buf, sizeof buf);
            if (strcmp(buf, fm[j].want) != 0) {
                printf("  ng_ckpt_kv_format(%s) = %s, want %s\n", fm[j].key, buf, fm[j].want);
                goto out;
            }
        }
        ng_ckpt_kv_format(c, 99, buf, sizeof buf);
        if (buf[0]) goto out;
        ng_ckpt_kv_format(c, 0, buf, 4); /* truncated, still terminated */
        if (strlen(buf) > 3) goto out;
    }
    res = NGT_PASS;
out:
    ng_ckpt_free(c);
    ng_ckpt_free(r);
    return res;
}

/* Refused arguments of the setters and adders: nothing is added. */
static int test_api_refusals(void) {
    static const uint64_t d2[2] = {2, 2}, d0[2] = {2, 0}, dbig[2] = {1ull << 62, 8};
    float ok[4] = {1, 2, 3, 4}, nan4[4] = {1, 2, NAN, 4};
    char longkey[300];
    ng_ckpt *c;
    NGT_OK(ng_ckpt_new(&c));
    memset(longkey, 'k', sizeof longkey);
    longkey[256] = 0;
#define REFUSE(expr, needle)                                                                       \
    do {                                                                                           \
        ng_status s_ = (expr);                                                                     \
        if (s_ != NG_ERR_INVALID_ARG || !strstr(ng_last_error(), needle)) {                        \
            printf("  %s: %s (%s), want NG_ERR_INVALID_ARG with \"%s\"\n", #expr,                  \
                   ng_status_name(s_), ng_last_error(), needle);                                   \
            ng_ckpt_free(c);                                                                       \
            return NGT_FAIL;                                                                       \
        }                                                                                          \
    } while (0)
    REFUSE(ng_ckpt_set_u64(c, "", 1), "length 0");
    REFUSE(ng_ckpt_set_u64(c, longkey, 1), "length 256");
    REFUSE(ng_ckpt_set_u64(c, "bad key", 1), "0x20");
    REFUSE(ng_ckpt_set_u64(c, NULL, 1), "NULL");
    REFUSE(ng_ckpt_set_f32(c, "x", NAN), "not finite");
    REFUSE(ng_ckpt_set_f64(c, "x", -INFINITY), "not finite");
    REFUSE(ng_ckpt_set_str(c, "x", NULL), "NULL");
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_F32, 2, d2, nan4), "element 2 is NaN");
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_F32, 2, d0, ok), "a dimension is 0");
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_F32, 0, d2, ok), "ndim = 0");
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_F32, 5, d2, ok), "ndim = 5");
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_DTYPE_COUNT, 2, d2, ok), "dtype");
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_F64, 2, dbig, ok), "overflows");
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_F32, 2, d2, NULL), "NULL data");
    REFUSE(ng_ckpt_add_tensor(c, "t t", NG_F32, 2, d2, ok), "tensor name");
    REFUSE(ng_ckpt_add_tensor_cb(c, "t", NG_F32, 2, d2, NULL, NULL), "NULL fetch");
    NGT_CHECK(ng_ckpt_n_kv(c) == 0 && ng_ckpt_n_tensors(c) == 0, "a refused call added something");
    NGT_OK(ng_ckpt_add_tensor(c, "t", NG_F32, 2, d2, ok));
    REFUSE(ng_ckpt_add_tensor(c, "t", NG_F32, 2, d2, ok), "already added");
    NGT_OK(ng_ckpt_set_u64(c, "k", 1));
    NGT_CHECK(ng_ckpt_n_kv(c) == 1 && ng_ckpt_n_tensors(c) == 1, "counts");
    ng_ckpt_free(c);
    ng_ckpt_free(NULL);
    NGT_CHECK(ng_ckpt_read(NULL, 0, &c) == NG_ERR_INVALID_ARG, "NULL path");
    NGT_CHECK(ng_ckpt_read(tpath("ref.ckpt"), 7, &c) == NG_ERR_INVALID_ARG && c == NULL,
              "bad flags");
#undef REFUSE
    return NGT_PASS;
}

/* ---- corruption, one field at a time, CRCs recomputed -----------------------------------------
 */

static unsigned char *g_buf;
static size_t g_n;

static void reset(void) {
    memcpy(g_buf, g_ref, g_ref_n);
    g_n = g_ref_n;
}

/* Write g_buf[0..g_n) (CRCs fixed when fix) and expect both reads refused with NG_ERR_FORMAT and a
 * message containing want (hdr: 1 when the header-only read must refuse too, 0 when it must accept,
 * because the damage is in the payload). */
static int check_case(const char *label, int fix, int hdr, const char *want, const char *want2) {
    char path[512];
    int bad = 0;
    snprintf(path, sizeof path, "%s/case_%s.ckpt", tmpdir, label);
    if (fix) fix_crcs(g_buf, g_n);
    if (write_bytes(path, g_buf, g_n) != 0) {
        printf("  %s: cannot write %s\n", label, path);
        return 1;
    }
    bad |= expect_read_fail(label, path, NG_CKPT_READ_ALL, NG_ERR_FORMAT, want, want2);
    /* the log shows what the reader says for each kind of damage (without the temp dir) */
    printf("  %-28s %s\n", label,
           strstr(ng_last_error(), ".ckpt: ") ? strstr(ng_last_error(), ".ckpt: ") + 7
                                              : ng_last_error());
    if (hdr)
        bad |= expect_read_fail(label, path, NG_CKPT_HEADER_ONLY, NG_ERR_FORMAT, want, want2);
    else
        bad |= expect_read_ok(label, path, NG_CKPT_HEADER_ONLY);
    unlink(path);
    return bad;
}

static int test_corrupt_fields(void) {
    const layout *L = &g_L;
    uint64_t hb = L->hb;
    int bad = 0;
    NGT_CHECK(g_ref != NULL, "no reference file (test_round_trip failed)");
    g_buf = malloc(g_ref_n + 4096);
    NGT_CHECK(g_buf != NULL, "malloc");
#define CASE(label, fix, hdr, want, want2, code)                                                   \
    do {                                                                                           \
        reset();                                                                                   \
        code;                                                                                      \
        bad |= check_case(label, fix, hdr, want, want2);                                           \
    } while (0)
    /* the fixed part */
    CASE("magic", 1, 1, "bad magic", NULL, g_buf[0] = 'X');
    CASE("magic_lower", 1, 1, "bad magic", NULL, memcpy(g_buf, "ngck", 4));
    CASE("old_rbm_format", 1, 1, "previous RBM checkpoint format", "NGRBMCK1",
         memcpy(g_buf, "NGRBMCK1", 8));
    CASE("version_3", 1, 1, "version 3", NULL, wr32(g_buf + 4, 3));
    CASE("version_1", 1, 1, "version 1", NULL, wr32(g_buf + 4, 1));
    CASE("header_bytes_past_file", 1, 1, "header_bytes", NULL, wr64(g_buf + 8, g_ref_n));
    CASE("header_bytes_huge", 1, 1, "header_bytes", NULL, wr64(g_buf + 8, 1ull << 62));
    CASE("header_bytes_max", 1, 1, "header_bytes", NULL, wr64(g_buf + 8, UINT64_MAX));
    CASE("header_bytes_tiny", 1, 1, "header_bytes = 16", NULL, wr64(g_buf + 8, 16));
    CASE("header_bytes_short", 1, 1, "end of the header", NULL, wr64(g_buf + 8, hb - 8));
    CASE("header_bytes_long", 1, 1, "header_bytes", "directory end", wr64(g_buf + 8, hb + 8));
    CASE("n_kv_absurd", 1, 1, "n_kv = 1099511627776", NULL, wr64(g_buf + 16, 1ull << 40));
    CASE("n_kv_max", 1, 1, "n_kv", NULL, wr64(g_buf + 16, UINT64_MAX));
    CASE("n_tensors_absurd", 1, 1, "n_tensors = 1099511627776", NULL, wr64(g_buf + 24, 1ull << 40));
    CASE("n_tensors_max", 1, 1, "n_tensors", NULL, wr64(g_buf + 24, UINT64_MAX));
    /* fields */
    CASE("key_len_0", 1, 1, "key length 0", NULL, wr32(g_buf + kvp(L, "rbm.k")->klen_at, 0));
    CASE("key_len_256", 1, 1, "key length 256", NULL, wr32(g_buf + kvp(L, "rbm.k")->klen_at, 256));
    CASE("key_len_huge", 1, 1, "key length 4294967280", NULL,
         wr32(g_buf + kvp(L, "rbm.k")->klen_at, 0xfffffff0u));
    /* one field whose 255-byte key would end past a 136-byte header */
    CASE("key_len_past_header", 1, 1,
         "kv entry 0: key of 255 bytes runs past the end of the header", NULL, wr64(g_buf + 16, 1);
         wr64(g_buf + 24, 0); wr32(g_buf + 32, 255); wr64(g_buf + 8, 136));
    CASE("key_char_space", 1, 1, "key \"r m.k\"", "not an allowed character",
         g_buf[kvp(L, "rbm.k")->key_at + 1] = ' ');
    CASE("key_char_nul", 1, 1, "byte 0x00", "not an allowed character",
         g_buf[kvp(L, "rbm.k")->key_at + 1] = 0);
    CASE("key_char_utf8", 1, 1, "byte 0xc3", "not an allowed character",
         g_buf[kvp(L, "rbm.k")->key_at] = 0xc3);
    CASE("duplicate_key", 1, 1, "duplicate key aa", NULL, g_buf[kvp(L, "ab")->key_at + 1] = 'a');
    CASE("type_0", 1, 1, "field rbm.k: unknown type code 0", NULL,
         wr32(g_buf + kvp(L, "rbm.k")->type_at, 0));
    CASE("type_6", 1, 1, "field rbm.k: unknown type code 6", NULL,
         wr32(g_buf + kvp(L, "rbm.k")->type_at, 6));
    CASE("type_huge", 1, 1, "unknown type code 4294967295", NULL,
         wr32(g_buf + kvp(L, "rbm.k")->type_at, 0xffffffffu));
    CASE("string_length_huge", 1, 1, "field note: string length 2147483647",
         "past the end of the header", wr32(g_buf + kvp(L, "note")->val_at, 0x7fffffffu));
    CASE("string_length_one_past", 1, 1, "field note: string length", "past the end of the header",
         wr32(g_buf + kvp(L, "note")->val_at, (uint32_t)(hb - kvp(L, "note")->val_at - 4 + 1)));
    CASE("string_nul", 1, 1, "field note", "NUL", g_buf[kvp(L, "note")->val_at + 4 + 3] = 0);
    CASE("f32_nan", 1, 1, "field lr = NaN", NULL, wr32(g_buf + kvp(L, "lr")->val_at, 0x7fc00000u));
    CASE("f32_inf", 1, 1, "field lr = infinity", NULL,
         wr32(g_buf + kvp(L, "lr")->val_at, 0xff800000u));
    CASE("f64_nan", 1, 1, "field lambda = NaN", NULL,
         wr64(g_buf + kvp(L, "lambda")->val_at, 0x7ff8000000000001ull));
    CASE("f64_inf", 1, 1, "field lambda = infinity", NULL,
         wr64(g_buf + kvp(L, "lambda")->val_at, 0x7ff0000000000000ull));
    /* tensor directory */
    CASE("tensor_name_len_0", 1, 1, "tensor name length 0", NULL,
         wr32(g_buf + tp(L, "W")->nlen_at, 0));
    CASE("tensor_name_len_256", 1, 1, "tensor name length 256", NULL,
         wr32(g_buf + tp(L, "W")->nlen_at, 256));
    CASE("tensor_name_char", 1, 1, "tensor name \"#4\"", "not an allowed character",
         g_buf[tp(L, "C4")->name_at] = '#');
    CASE("duplicate_tensor", 1, 1, "duplicate tensor name t1", NULL,
         g_buf[tp(L, "t2")->name_at + 1] = '1');
    CASE("dtype_4", 1, 1, "tensor W: unknown dtype code 4", NULL,
         wr32(g_buf + tp(L, "W")->dtype_at, 4));
    CASE("dtype_huge", 1, 1, "tensor B: unknown dtype code 2147483648", NULL,
         wr32(g_buf + tp(L, "B")->dtype_at, 0x80000000u));
    CASE("ndim_0", 1, 1, "tensor W: ndim = 0", NULL, wr32(g_buf + tp(L, "W")->ndim_at, 0));
    CASE("ndim_5", 1, 1, "tensor W: ndim = 5", NULL, wr32(g_buf + tp(L, "W")->ndim_at, 5));
    CASE("dim_0", 1, 1, "tensor W: dims[1] = 0", NULL, wr64(g_buf + tp(L, "W")->dims_at + 8, 0));
    CASE("dim_count_overflow", 1, 1, "tensor W", "element count overflows",
         wr64(g_buf + tp(L, "W")->dims_at, 1ull << 33);
         wr64(g_buf + tp(L, "W")->dims_at + 8, 1ull << 33));
    CASE("dim_bytes_overflow", 1, 1, "tensor W", "byte size overflows",
         wr64(g_buf + tp(L, "W")->dims_at, 1ull << 62);
         wr64(g_buf + tp(L, "W")->dims_at + 8, 1));
    CASE("dim_past_payload", 1, 1, "tensor W", "outside the payload",
         wr64(g_buf + tp(L, "W")->dims_at + 8, 5000));
    CASE("offset_misaligned", 1, 1, "tensor B: offset 72 is not a multiple of 64", NULL,
         wr64(g_buf + tp(L, "B")->off_at, tp(L, "B")->off + 8));
    CASE("offset_overlap", 1, 1, "tensor B: offset 0 overlaps tensor W", NULL,
         wr64(g_buf + tp(L, "B")->off_at, 0));
    CASE("offset_first_not_0", 1, 1, "tensor W: offset 64", "first tensor starts at offset 0",
         wr64(g_buf + tp(L, "W")->off_at, 64));
    CASE("offset_gap", 1, 1, "tensor B: offset 128 leaves a gap after tensor W", NULL,
         wr64(g_buf + tp(L, "B")->off_at, 128));
    CASE("offset_past_payload", 1, 1, "tensor t2", "outside the payload",
         wr64(g_buf + tp(L, "t2")->off_at, tp(L, "t2")->off + 64 * 1000));
    CASE("offset_huge", 1, 1, "tensor t2", "outside the payload",
         wr64(g_buf + tp(L, "t2")->off_at, 0xffffffffffffffc0ull));
    /* padding, payload, CRCs, length */
    CASE("header_padding", 1, 1, "header padding byte", NULL, g_buf[hb + 4 + 2] = 0x20);
    CASE("payload_padding", 1, 0, "payload padding after tensor W", NULL,
         g_buf[L->pstart + tp(L, "W")->bytes + 1] = 1);
    CASE("tensor_nan_f32", 1, 0, "tensor W: element 3 is NaN", NULL,
         wr32(g_buf + L->pstart + tp(L, "W")->off + 12, 0x7fc00000u));
    CASE("tensor_inf_f64", 1, 0, "tensor B: element 6 is infinite", NULL,
         wr64(g_buf + L->pstart + tp(L, "B")->off + 48, 0xfff0000000000000ull));
    CASE("tensor_nan_callback_tensor", 1, 0, "tensor CB: element 0 is NaN", NULL,
         wr32(g_buf + L->pstart + tp(L, "CB")->off, 0xffc00001u));
    CASE("tensor_nan_f16", 1, 0, "tensor H: element 2 is NaN", NULL,
         g_buf[L->pstart + tp(L, "H")->off + 4] = 0x01;
         g_buf[L->pstart + tp(L, "H")->off + 5] = 0x7e);
    CASE("tensor_inf_bf16", 1, 0, "tensor BF: element 5 is infinite", NULL,
         g_buf[L->pstart + tp(L, "BF")->off + 10] = 0x80;
         g_buf[L->pstart + tp(L, "BF")->off + 11] = 0xff);
    CASE("header_crc", 0, 1, "header CRC mismatch", NULL, g_buf[hb] ^= 1);
    CASE("header_byte_no_crc_fix", 0, 1, "header CRC mismatch", NULL,
         g_buf[kvp(L, "lr")->val_at] ^= 0x10);
    CASE("payload_crc", 0, 0, "payload CRC mismatch", NULL, g_buf[g_n - 1] ^= 0x80);
    CASE("payload_byte_no_crc_fix", 0, 0, "payload CRC mismatch", NULL,
         g_buf[L->pstart + 5] ^= 0x10);
    CASE("both_crcs", 0, 1, "header CRC mismatch", NULL, g_buf[hb + 1] ^= 4; g_buf[g_n - 2] ^= 4);
    CASE("trailing_1", 1, 1, "1 byte after the end of the last tensor", NULL, g_buf[g_n++] = 0);
    CASE("trailing_64", 1, 1, "64 bytes after the end of the last tensor", NULL,
         memset(g_buf + g_n, 0, 64);
         g_n += 64);
    CASE("trailing_no_crc_fix", 0, 1, "1 byte after the end of the last tensor", NULL,
         g_buf[g_n++] = 0x55);
#undef CASE
    free(g_buf);
    g_buf = NULL;
    NGT_CHECK(!bad, "a corrupted field was accepted or misreported (see above)");
    return NGT_PASS;
}

/* Truncated at every byte: always NG_ERR_FORMAT (never OK, never a crash), header-only too; the
 * section boundaries are listed with their messages. */
static int test_truncation(void) {
    char path[512];
    size_t k;
    int bad = 0;
    NGT_CHECK(g_ref != NULL, "no reference file");
    snprintf(path, sizeof path, "%s/trunc.ckpt", tmpdir);
    for (k = 0; k < g_ref_n; k++) {
        const char *want = k == 0 ? "empty" : NULL;
        NGT_CHECK(write_bytes(path, g_ref, k) == 0, "write");
        if (expect_read_fail("truncated", path, NG_CKPT_READ_ALL, NG_ERR_FORMAT, want, NULL) ||
            expect_read_fail("truncated", path, NG_CKPT_HEADER_ONLY, NG_ERR_FORMAT, want, NULL)) {
            printf("  (truncated to %zu of %zu bytes)\n", k, g_ref_n);
            if (++bad > 5) break;
        }
    }
    {
        /* the section boundaries, with what the reader says */
        size_t at[] = {0,
                       3,
                       4,
                       8,
                       16,
                       24,
                       32,
                       (size_t)g_L.hb,
                       (size_t)g_L.hb + 4,
                       (size_t)g_L.pstart,
                       (size_t)(g_L.pstart + tp(&g_L, "B")->off),
                       g_ref_n - 4,
                       g_ref_n - 1};
        const char *want[] = {"empty",
                              "bad magic",
                              "truncated",
                              "truncated",
                              "truncated",
                              "truncated",
                              "header_bytes",
                              "header_bytes",
                              "truncated",
                              "truncated",
                              "outside the payload",
                              "outside the payload",
                              "outside the payload"};
        size_t i;
        for (i = 0; i < sizeof at / sizeof at[0]; i++) {
            NGT_CHECK(write_bytes(path, g_ref, at[i]) == 0, "write");
            bad |= expect_read_fail("section boundary", path, NG_CKPT_READ_ALL, NG_ERR_FORMAT,
                                    want[i], NULL);
            if (i == 0 || i == 6 || i == 9 || i == 12)
                printf("  cut at %zu: %s\n", at[i], ng_last_error());
        }
    }
    unlink(path);
    NGT_CHECK(!bad, "a truncated file was accepted or misreported");
    return NGT_PASS;
}

/* xorshift64* */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

/* Thousands of random mutations (single and multi-byte, word-sized values at field-aligned spots,
 * truncations, appended bytes), most with the CRCs fixed up so the parser sees them. Every read
 * must return NG_OK or NG_ERR_FORMAT, quickly; an alarm catches a hang. */
static int test_random_damage(void) {
    static const uint64_t vals[] = {0,           1,           2,          4,          5,
                                    63,          64,          255,        256,        0x7fffffff,
                                    0x80000000u, 0xffffffffu, 1ull << 32, 1ull << 62, UINT64_MAX};
    char path[512];
    unsigned char *b;
    size_t n;
    int it, refused = 0, accepted = 0, other = 0;
    NGT_CHECK(g_ref != NULL, "no reference file");
    b = malloc(g_ref_n + 256);
    NGT_CHECK(b != NULL, "malloc");
    snprintf(path, sizeof path, "%s/damage.ckpt", tmpdir);
    signal(SIGALRM, on_alarm);
    alarm(300);
    for (it = 0; it < 4000; it++) {
        int kind = (int)(rnd() % 6), k, flags;
        memcpy(b, g_ref, g_ref_n);
        n = g_ref_n;
        switch (kind) {
        case 0: /* one byte of the header */ b[rnd() % (g_L.hb + 4)] = (unsigned char)rnd(); break;
        case 1: /* 1..8 bytes anywhere */
            for (k = 1 + (int)(rnd() % 8); k > 0; k--)
                b[rnd() % n] = (unsigned char)rnd();
            break;
        case 2: { /* an interesting value at a 4-byte boundary of the header */
            size_t at = (size_t)(rnd() % ((g_L.hb - 4) / 4)) * 4;
            uint64_t v = vals[rnd() % (sizeof vals / sizeof vals[0])];
            if (rnd() & 1 || at + 8 > g_L.hb)
                wr32(b + at, (uint32_t)v);
            else
                wr64(b + at, v);
            break;
        }
        case 3: /* a bit flip in the header */
            b[rnd() % g_L.hb] ^= (unsigned char)(1u << (rnd() % 8));
            break;
        case 4: /* truncation, possibly after a mutation */
            if (rnd() & 1) b[rnd() % n] ^= 0xff;
            n = (size_t)(rnd() % n);
            break;
        default: /* appended bytes */
            for (k = 1 + (int)(rnd() % 200); k > 0; k--)
                b[n++] = (unsigned char)rnd();
            break;
        }
        if (rnd() % 4) fix_crcs(b, n);
        NGT_CHECK(write_bytes(path, b, n) == 0, "write");
        for (flags = 0; flags < 2; flags++) {
            ng_ckpt *c = NULL;
            ng_status s = ng_ckpt_read(path, flags, &c);
            if (s == NG_OK) {
                int i;
                /* a file that passes is whole: every tensor has data on a full read */
                for (i = 0; i < ng_ckpt_n_tensors(c); i++)
                    if (!flags && !ng_ckpt_tensor_at(c, i)->data) other++;
                accepted++;
                ng_ckpt_free(c);
            } else if (s == NG_ERR_FORMAT && c == NULL && strstr(ng_last_error(), path)) {
                refused++;
            } else {
                if (other < 5)
                    printf("  mutation %d (kind %d): %s: %s\n", it, kind, ng_status_name(s),
                           ng_last_error());
                other++;
            }
        }
    }
    alarm(0);
    free(b);
    unlink(path);
    printf("  %d reads refused, %d accepted (harmless mutations, e.g. of a value)\n", refused,
           accepted);
    NGT_CHECK(other == 0, "%d reads failed in an unexpected way", other);
    NGT_CHECK(refused > 6000, "too few damaged files refused (%d)", refused);
    return NGT_PASS;
}

/* ---- lookups ----------------------------------------------------------------------------------
 */

static int err_has(ng_status s, ng_status want, const char *a, const char *b, const char *c) {
    if (s != want || (a && !strstr(ng_last_error(), a)) || (b && !strstr(ng_last_error(), b)) ||
        (c && !strstr(ng_last_error(), c))) {
        printf("  got %s (%s), want %s with \"%s\" \"%s\" \"%s\"\n", ng_status_name(s),
               ng_last_error(), ng_status_name(want), a ? a : "", b ? b : "", c ? c : "");
        return 0;
    }
    return 1;
}

static int test_expect(void) {
    static const uint64_t dW[2] = {3, 5}, d15[1] = {15}, d36[2] = {3, 6}, dCB[3] = {2, 3, 4};
    ng_ckpt *c = NULL, *h = NULL, *n = NULL;
    const void *data = NULL;
    char path[512];
    int ok = 1;
    snprintf(path, sizeof path, "%s", tpath("ref.ckpt"));
    NGT_OK(ng_ckpt_read(path, NG_CKPT_READ_ALL, &c));
    NGT_OK(ng_ckpt_read(path, NG_CKPT_HEADER_ONLY, &h));
    ok &=
        ng_ckpt_expect(c, "W", NG_F32, 2, dW, &data) == NG_OK && data == ng_ckpt_find(c, "W")->data;
    ok &= memcmp(data, g_W, sizeof g_W) == 0;
    ok &= err_has(ng_ckpt_expect(c, "W", NG_F64, 2, dW, &data), NG_ERR_FORMAT, path,
                  "tensor W has dtype f32, expected f64", NULL);
    ok &= data == NULL;
    ok &= err_has(ng_ckpt_expect(c, "W", NG_F32, 1, d15, &data), NG_ERR_FORMAT, path,
                  "tensor W has shape (3, 5), expected (15)", NULL);
    ok &= err_has(ng_ckpt_expect(c, "W", NG_F32, 2, d36, &data), NG_ERR_FORMAT, path,
                  "tensor W has shape (3, 5), expected (3, 6)", NULL);
    ok &= err_has(ng_ckpt_expect(c, "model.V", NG_F32, 2, dW, &data), NG_ERR_FORMAT, path,
                  "tensor model.V is missing", NULL);
    ok &= err_has(ng_ckpt_expect(h, "W", NG_F32, 2, dW, &data), NG_ERR_INVALID_ARG, "tensor W",
                  "header-only", NULL);
    ok &= ng_ckpt_expect(c, "CB", NG_F32, 3, dCB, &data) == NG_OK &&
          memcmp(data, g_CB, sizeof g_CB) == 0;
    /* a new container: the callback tensor has no data to hand out; its name is "(unsaved)" */
    NGT_OK(make_ref(&n, 3));
    ok &= err_has(ng_ckpt_expect(n, "CB", NG_F32, 3, dCB, &data), NG_ERR_INVALID_ARG, "tensor CB",
                  "callback", NULL);
    ok &= err_has(ng_ckpt_expect(n, "zz", NG_F32, 3, dCB, &data), NG_ERR_FORMAT, "(unsaved)", "zz",
                  NULL);
    ng_ckpt_free(c);
    ng_ckpt_free(h);
    ng_ckpt_free(n);
    NGT_CHECK(ok, "ng_ckpt_expect");
    return NGT_PASS;
}

static int test_get_ranges(void) {
    static const char *const kinds[] = {"sgd", "centering", "fang"};
    ng_ckpt *c;
    int64_t i64 = 0;
    float f = 0;
    int e = -1, ok = 1;
    uint64_t u;
    double d;
    const char *s;
    char path[512];
    snprintf(path, sizeof path, "%s", tpath("ranges.ckpt"));
    {
        ng_ckpt *w;
        NGT_OK(ng_ckpt_new(&w));
        if (ng_ckpt_set_u64(w, "rbm.k", 0) || ng_ckpt_set_u64(w, "rbm.hidden", 500) ||
            ng_ckpt_set_u64(w, "huge", UINT64_MAX) || ng_ckpt_set_i64(w, "delta", -3) ||
            ng_ckpt_set_f32(w, "rbm.lr", 2.5f) || ng_ckpt_set_f64(w, "rbm.tau", 100.0) ||
            ng_ckpt_set_str(w, "rbm.optimizer", "newton") ||
            ng_ckpt_set_str(w, "rbm.kind", "fang") || ng_ckpt_write(w, path)) {
            printf("  %s\n", ng_last_error());
            ng_ckpt_free(w);
            return NGT_FAIL;
        }
        ng_ckpt_free(w);
    }
    NGT_OK(ng_ckpt_read(path, NG_CKPT_READ_ALL, &c));
    /* get_int */
    ok &= err_has(ng_ckpt_get_int(c, "rbm.k", 1, 1000, &i64), NG_ERR_FORMAT,
                  "ranges.ckpt: field rbm.k = 0 is out of range [1, 1000]", NULL, NULL);
    ok &= ng_ckpt_get_int(c, "rbm.hidden", 1, 1000, &i64) == NG_OK && i64 == 500;
    ok &= err_has(ng_ckpt_get_int(c, "rbm.hidden", 1, 499, &i64), NG_ERR_FORMAT,
                  "field rbm.hidden = 500 is out of range [1, 499]", NULL, NULL);
    ok &= err_has(ng_ckpt_get_int(c, "huge", 0, INT64_MAX, &i64), NG_ERR_FORMAT,
                  "field huge = 18446744073709551615 is out of range", NULL, NULL);
    ok &= ng_ckpt_get_int(c, "delta", -10, 10, &i64) == NG_OK && i64 == -3;
    ok &= err_has(ng_ckpt_get_int(c, "delta", 0, 10, &i64), NG_ERR_FORMAT, "field delta = -3",
                  "[0, 10]", NULL);
    ok &= err_has(ng_ckpt_get_int(c, "rbm.lr", 0, 10, &i64), NG_ERR_FORMAT, "field rbm.lr is f32",
                  "expected an integer", NULL);
    ok &= err_has(ng_ckpt_get_int(c, "missing", 0, 10, &i64), NG_ERR_FORMAT, path,
                  "field missing is missing", NULL);
    /* get_float */
    ok &= ng_ckpt_get_float(c, "rbm.lr", 0, 10, &f) == NG_OK && f == 2.5f;
    ok &= err_has(ng_ckpt_get_float(c, "rbm.lr", 0, 1, &f), NG_ERR_FORMAT,
                  "field rbm.lr = 2.5 is out of range [0, 1]", NULL, NULL);
    ok &= err_has(ng_ckpt_get_float(c, "rbm.tau", 0, 1000, &f), NG_ERR_FORMAT,
                  "field rbm.tau is f64, expected f32", NULL, NULL);
    ok &= err_has(ng_ckpt_get_float(c, "rbm.k", 0, 1000, &f), NG_ERR_FORMAT, "field rbm.k is u64",
                  NULL, NULL);
    /* get_enum */
    ok &= ng_ckpt_get_enum(c, "rbm.kind", kinds, 3, &e) == NG_OK && e == 2;
    ok &=
        err_has(ng_ckpt_get_enum(c, "rbm.optimizer", kinds, 3, &e), NG_ERR_FORMAT,
                "field rbm.optimizer = \"newton\" is not one of: sgd, centering, fang", NULL, NULL);
    ok &= err_has(ng_ckpt_get_enum(c, "rbm.k", kinds, 3, &e), NG_ERR_FORMAT, "field rbm.k is u64",
                  "expected str", NULL);
    /* typed getters on the wrong type or a missing key */
    ok &= err_has(ng_ckpt_get_u64(c, "delta", &u), NG_ERR_FORMAT, path,
                  "field delta is i64, expected u64", NULL);
    ok &= err_has(ng_ckpt_get_i64(c, "rbm.k", &i64), NG_ERR_FORMAT,
                  "field rbm.k is u64, expected i64", NULL, NULL);
    ok &= err_has(ng_ckpt_get_f64(c, "rbm.lr", &d), NG_ERR_FORMAT,
                  "field rbm.lr is f32, expected f64", NULL, NULL);
    ok &=
        err_has(ng_ckpt_get_str(c, "nope", &s), NG_ERR_FORMAT, "field nope is missing", NULL, NULL);
    ok &= err_has(ng_ckpt_get_f32(c, "rbm.kind", &f), NG_ERR_FORMAT, "field rbm.kind is str", NULL,
                  NULL);
    ng_ckpt_free(c);
    NGT_CHECK(ok, "range-checked getters");
    return NGT_PASS;
}

/* ---- special files ------------------------------------------------------------------------------
 */

static int test_special_files(void) {
    char fifo[512], dir[512];
    int bad = 0;
    snprintf(fifo, sizeof fifo, "%s", tpath("pipe.ckpt"));
    snprintf(dir, sizeof dir, "%s", tpath("dir.ckpt"));
    NGT_CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    NGT_CHECK(mkdir(dir, 0700) == 0, "mkdir: %s", strerror(errno));
    signal(SIGALRM, on_alarm);
    alarm(10);
    bad |= expect_read_fail("fifo", fifo, NG_CKPT_READ_ALL, NG_ERR_IO,
                            "is a FIFO (named pipe), not a regular file", NULL);
    bad |= expect_read_fail("fifo", fifo, NG_CKPT_HEADER_ONLY, NG_ERR_IO, "FIFO", NULL);
    bad |= expect_read_fail("directory", dir, NG_CKPT_READ_ALL, NG_ERR_IO, "is a directory", NULL);
    if (access("/dev/null", R_OK) == 0)
        bad |= expect_read_fail("/dev/null", "/dev/null", NG_CKPT_READ_ALL, NG_ERR_IO,
                                "character device", NULL);
    bad |= expect_read_fail("missing", tpath("none.ckpt"), NG_CKPT_READ_ALL, NG_ERR_IO,
                            "No such file", NULL);
    /* ng_file_open_read directly: "what" and the path are named */
    {
        int fd = 123;
        uint64_t size = 9;
        ng_status s = ng_file_open_read(fifo, "data file", &fd, &size);
        if (s != NG_ERR_IO || fd != -1 || !strstr(ng_last_error(), "data file ") ||
            !strstr(ng_last_error(), fifo)) {
            printf("  ng_file_open_read(fifo): %s (%s) fd %d\n", ng_status_name(s), ng_last_error(),
                   fd);
            bad = 1;
        }
        s = ng_file_open_read(tpath("ref.ckpt"), "checkpoint", &fd, &size);
        if (s != NG_OK || fd < 0 || size != g_ref_n || (fcntl(fd, F_GETFL) & O_NONBLOCK)) {
            printf("  ng_file_open_read(regular): %s size %llu\n", ng_last_error(),
                   (unsigned long long)size);
            bad = 1;
        }
        if (fd >= 0) close(fd);
    }
    alarm(0);
    NGT_CHECK(!bad, "special files");
    return NGT_PASS;
}

/* ---- the write path ---------------------------------------------------------------------------
 */

static ng_status fetch_fail(void *user, void *dst, size_t bytes) {
    (void)user;
    memset(dst, 0, bytes);
    return ng_error(NG_ERR_BACKEND, "simulated device copy failure");
}

static ng_status fetch_nan(void *user, void *dst, size_t bytes) {
    float *f = dst;
    (void)user;
    memset(dst, 0, bytes);
    f[bytes / sizeof(float) - 1] = NAN;
    return NG_OK;
}

static int same_as(const char *path, const unsigned char *want, size_t n) {
    size_t got;
    unsigned char *b = slurp(path, &got);
    int same = b && got == n && memcmp(b, want, n) == 0;
    free(b);
    return same;
}

static int test_write_failures(void) {
    static const uint64_t d[2] = {4, 8};
    static float big[1 << 14];
    char p[512], ptmp[600], dir[512], fifo[512];
    unsigned char *old;
    size_t old_n;
    ng_ckpt *c = NULL, *h = NULL;
    struct rlimit saved, lim;
    ng_status s;
    int ok = 1;
    snprintf(p, sizeof p, "%s", tpath("keep.ckpt"));
    snprintf(ptmp, sizeof ptmp, "%s.tmp", p);
    snprintf(dir, sizeof dir, "%s", tpath("nodir"));

    /* into a directory that does not exist: NG_ERR_IO, nothing created */
    NGT_OK(make_ref(&c, 3));
    s = ng_ckpt_write(c, tpath("nodir/sub/x.ckpt"));
    ok &= err_has(s, NG_ERR_IO, "checkpoint ", "nodir/sub/x.ckpt", "No such file or directory");
    ok &= !exists(dir);
    /* the previous file survives every failure below */
    NGT_OK(ng_ckpt_write(c, p));
    old = slurp(p, &old_n);
    NGT_CHECK(old != NULL, "slurp");
    ng_ckpt_free(c);
    c = NULL;

    /* a fetch callback's error aborts the write */
    NGT_OK(make_ref(&c, 3));
    NGT_OK(ng_ckpt_add_tensor_cb(c, "model.bad", NG_F32, 2, d, fetch_fail, NULL));
    s = ng_ckpt_write(c, p);
    ok &=
        err_has(s, NG_ERR_BACKEND, p, "fetching tensor model.bad", "simulated device copy failure");
    ok &= same_as(p, old, old_n) && !exists(ptmp);
    ng_ckpt_free(c);
    c = NULL;

    /* NaN fetched at write time */
    NGT_OK(make_ref(&c, 3));
    NGT_OK(ng_ckpt_add_tensor_cb(c, "model.nan", NG_F32, 2, d, fetch_nan, NULL));
    s = ng_ckpt_write(c, p);
    ok &= err_has(s, NG_ERR_NUMERIC, p, "tensor model.nan: element 31 is NaN", NULL);
    ok &= same_as(p, old, old_n) && !exists(ptmp);
    ng_ckpt_free(c);
    c = NULL;

    /* the disk fills up half-way (RLIMIT_FSIZE: EFBIG) */
    {
        static const uint64_t dbig[1] = {1 << 14};
        NGT_OK(make_ref(&c, 3));
        NGT_OK(ng_ckpt_add_tensor(c, "big", NG_F32, 1, dbig, big));
        NGT_CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0, "getrlimit");
        lim = saved;
        lim.rlim_cur = 8192;
        signal(SIGXFSZ, SIG_IGN);
        NGT_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
        s = ng_ckpt_write(c, p);
        setrlimit(RLIMIT_FSIZE, &saved);
        signal(SIGXFSZ, SIG_DFL);
        ok &= err_has(s, NG_ERR_IO, "checkpoint ", p, "File too large");
        ok &= same_as(p, old, old_n) && !exists(ptmp);
        ng_ckpt_free(c);
        c = NULL;
    }

    /* a directory or a FIFO at the target is never replaced */
    snprintf(dir, sizeof dir, "%s", tpath("target_dir"));
    snprintf(fifo, sizeof fifo, "%s", tpath("target_fifo"));
    NGT_CHECK(mkdir(dir, 0700) == 0 && mkfifo(fifo, 0600) == 0, "mkdir/mkfifo");
    NGT_OK(make_ref(&c, 3));
    ok &= err_has(ng_ckpt_write(c, dir), NG_ERR_IO, "checkpoint ", "is a directory", NULL);
    ok &= err_has(ng_ckpt_write(c, fifo), NG_ERR_IO, "checkpoint ", "FIFO", NULL);
    {
        struct stat st;
        char t1[600], t2[600];
        ok &= stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
        ok &= stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode);
        snprintf(t1, sizeof t1, "%s.tmp", dir);
        snprintf(t2, sizeof t2, "%s.tmp", fifo);
        ok &= !exists(t1) && !exists(t2);
    }
    /* a container read header-only has no tensor data to write */
    NGT_OK(ng_ckpt_read(p, NG_CKPT_HEADER_ONLY, &h));
    ok &= err_has(ng_ckpt_write(h, tpath("h.ckpt")), NG_ERR_INVALID_ARG, "header-only", NULL, NULL);
    ok &= !exists(tpath("h.ckpt")) && !exists(tpath("h.ckpt.tmp"));
    /* and a good write still replaces the file */
    NGT_OK(ng_ckpt_set_u64(c, "rbm.k", 9));
    NGT_OK(ng_ckpt_write(c, p));
    ok &= !same_as(p, old, old_n) && !exists(ptmp);
    ng_ckpt_free(c);
    ng_ckpt_free(h);
    free(old);
    NGT_CHECK(ok, "write failures");
    return NGT_PASS;
}

/* ng_wfile itself: crc and byte count, sticky errors, abort, argument checks. */
static int test_wfile(void) {
    static unsigned char chunk[20000];
    char p[512], ptmp[600];
    unsigned char *got;
    size_t n, i;
    ng_wfile w;
    ng_status s, s2;
    struct rlimit saved, lim;
    char first[600];
    for (i = 0; i < sizeof chunk; i++)
        chunk[i] = (unsigned char)(i * 31 + 7);
    snprintf(p, sizeof p, "%s", tpath("wf.bin"));
    snprintf(ptmp, sizeof ptmp, "%s.tmp", p);

    NGT_OK(ng_wfile_open(&w, p));
    NGT_CHECK(exists(ptmp) && !exists(p), "open creates only the .tmp");
    NGT_OK(ng_wfile_write(&w, chunk, 1000));
    NGT_OK(ng_wfile_write(&w, chunk + 1000, 0));
    NGT_OK(ng_wfile_write(&w, chunk + 1000, sizeof chunk - 1000));
    NGT_CHECK(w.bytes == sizeof chunk, "bytes %llu", (unsigned long long)w.bytes);
    NGT_CHECK(w.crc == (uint32_t)crc32(0L, chunk, sizeof chunk), "crc");
    NGT_OK(ng_wfile_commit(&w));
    got = slurp(p, &n);
    NGT_CHECK(got && n == sizeof chunk && memcmp(got, chunk, n) == 0 && !exists(ptmp), "content");
    free(got);
    NGT_CHECK(ng_wfile_write(&w, chunk, 1) == NG_ERR_INVALID_ARG, "write after commit");

    /* abort: the .tmp goes, the old file stays */
    NGT_OK(ng_wfile_open(&w, p));
    NGT_OK(ng_wfile_write(&w, "xyz", 3));
    ng_wfile_abort(&w);
    ng_wfile_abort(&w);
    NGT_CHECK(!exists(ptmp) && same_as(p, chunk, sizeof chunk), "abort");

    /* sticky: the first failure's status and message come back from every later call */
    NGT_CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0, "getrlimit");
    lim = saved;
    lim.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    NGT_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    s = ng_wfile_open(&w, p);
    for (i = 0; s == NG_OK && i < 10; i++)
        s = ng_wfile_write(&w, chunk, sizeof chunk);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, SIG_DFL);
    NGT_CHECK(s == NG_ERR_IO && strstr(ng_last_error(), "write failed: File too large") &&
                  strstr(ng_last_error(), p),
              "first failure: %s (%s)", ng_status_name(s), ng_last_error());
    snprintf(first, sizeof first, "%s", ng_last_error());
    ng_error(NG_ERR_FORMAT, "something else happened in between");
    s2 = ng_wfile_write(&w, chunk, 10);
    NGT_CHECK(s2 == NG_ERR_IO && strcmp(ng_last_error(), first) == 0, "sticky write: %s",
              ng_last_error());
    ng_error(NG_ERR_FORMAT, "something else");
    s2 = ng_wfile_commit(&w);
    NGT_CHECK(s2 == NG_ERR_IO && strcmp(ng_last_error(), first) == 0, "sticky commit: %s",
              ng_last_error());
    ng_wfile_abort(&w);
    NGT_CHECK(!exists(ptmp) && same_as(p, chunk, sizeof chunk), "after a failed write");

    /* arguments */
    {
        static char longp[5000];
        memset(longp, 'a', sizeof longp - 1);
        NGT_CHECK(ng_wfile_open(&w, longp) == NG_ERR_INVALID_ARG, "long path");
        ng_wfile_abort(&w);
        NGT_CHECK(ng_wfile_open(&w, "") == NG_ERR_INVALID_ARG, "empty path");
        NGT_CHECK(ng_wfile_commit(&w) == NG_ERR_INVALID_ARG, "commit of a failed open");
        memset(&w, 0, sizeof w);
        ng_wfile_abort(&w);
        NGT_CHECK(ng_wfile_write(&w, chunk, 1) == NG_ERR_INVALID_ARG, "write on a zeroed writer");
    }
    return NGT_PASS;
}

/* ---- safetensors ------------------------------------------------------------------------------
 */

static void hex_out(FILE *f, const char *s) {
    for (; *s; s++)
        fprintf(f, "%02x", (unsigned)(unsigned char)*s);
}

/* Where tests/read_safetensors.py is: from the working directory (tests run from the repo root) or
 * next to the binary (BUILD/tests/x -> tests/). */
static int find_script(char *out, size_t cap) {
    const char *slash;
    if (access("tests/read_safetensors.py", R_OK) == 0) {
        snprintf(out, cap, "tests/read_safetensors.py");
        return 0;
    }
    slash = strrchr(argv0, '/');
    if (slash) {
        snprintf(out, cap, "%.*s/../../tests/read_safetensors.py", (int)(slash - argv0), argv0);
        if (access(out, R_OK) == 0) return 0;
    }
    return -1;
}

static int test_safetensors_python(void) {
    static const uint64_t s1[1] = {5}, s2[2] = {2, 3}, s3[3] = {2, 1, 4}, s4[2] = {3, 2},
                          s0[2] = {0, 3};
    static const char *const mk[] = {"format", "natgrad.version", "quote\"key", "note", "unicode"};
    static const char *const mv[] = {"pt", "2", "back\\slash \"q\"", "line1\nline2\ttab\x01\x1f",
                                     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"};
    float a[5] = {1.0f, -2.5f, 0.0f, 3.25e-8f, FLT_MAX};
    double b[6] = {0.1, -0.2, 1e300, -1e-300, 3.0, 4.5};
    float c[8];
    double e[6] = {1, 2, 3, 4, 5, 6};
    uint16_t hf[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000}; /* f16 */
    const double hf_v[6] = {1.0, -2.0, 0.5, 65504.0, 5.9604644775390625e-08, -0.0};
    ng_st_tensor t[6];
    char path[512], exp[512], script[600], cmd[2200], out[512];
    unsigned char *file;
    size_t n, i;
    uint64_t hn;
    FILE *f;
    int rc, k;
    for (i = 0; i < 8; i++)
        c[i] = (float)i / 7.0f - 0.5f;
    memset(t, 0, sizeof t);
    t[0] = (ng_st_tensor){"layer.0/weight", NG_F32, 1, s1, a};
    t[1] = (ng_st_tensor){"bias \"quoted\" \\ back\nslash", NG_F64, 2, s2, b};
    t[2] = (ng_st_tensor){"\xc3\xbcnicode", NG_F32, 3, s3, c};
    t[3] = (ng_st_tensor){"f64.second", NG_F64, 2, s4, e};
    t[4] = (ng_st_tensor){"half", NG_F16, 2, s2, hf};
    t[5] = (ng_st_tensor){"empty", NG_F32, 2, s0, NULL};
    snprintf(path, sizeof path, "%s", tpath("model.safetensors"));
    snprintf(exp, sizeof exp, "%s", tpath("model.expected"));
    NGT_OK(ng_safetensors_write(path, 6, t, mk, mv, 5));
    NGT_CHECK(!exists(tpath("model.safetensors.tmp")), ".tmp left");

    /* the framing, checked here too */
    file = slurp(path, &n);
    NGT_CHECK(file && n >= 8, "file");
    hn = rd64(file);
    NGT_CHECK(hn % 8 == 0 && 8 + hn <= n && file[8] == '{', "header size %llu",
              (unsigned long long)hn);
    for (i = 8 + hn; i > 8 && file[i - 1] == ' '; i--) {
    }
    NGT_CHECK(file[i - 1] == '}' && 8 + hn - i < 8, "padding: %zu spaces", (size_t)(8 + hn - i));
    NGT_CHECK(n - 8 - hn == sizeof a + sizeof b + sizeof c + sizeof e + sizeof hf, "buffer size");
    free(file);

    /* the expected contents, for the independent reader */
    f = fopen(exp, "w");
    NGT_CHECK(f != NULL, "fopen");
    for (k = 0; k < 6; k++) {
        const char *dt = t[k].dtype == NG_F32 ? "F32" : t[k].dtype == NG_F64 ? "F64" : "F16";
        uint64_t cnt = 1;
        int j;
        fprintf(f, "tensor ");
        hex_out(f, t[k].name);
        fprintf(f, " %s %d", dt, t[k].ndim);
        for (j = 0; j < t[k].ndim; j++) {
            fprintf(f, " %llu", (unsigned long long)t[k].shape[j]);
            cnt *= t[k].shape[j];
        }
        for (i = 0; i < cnt; i++) {
            double v = t[k].dtype == NG_F32   ? (double)((const float *)t[k].data)[i]
                       : t[k].dtype == NG_F64 ? ((const double *)t[k].data)[i]
                                              : hf_v[i];
            fprintf(f, " %a", v);
        }
        fprintf(f, "\n");
    }
    for (k = 0; k < 5; k++) {
        fprintf(f, "meta ");
        hex_out(f, mk[k]);
        fprintf(f, " ");
        hex_out(f, mv[k]);
        fprintf(f, "\n");
    }
    NGT_CHECK(fclose(f) == 0, "fclose");

    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return ngt_skip("python3 is not installed: the independent safetensors reader "
                        "(tests/read_safetensors.py) was not run");
    if (system("python3 -c 'import json, struct' >/dev/null 2>&1") != 0)
        return ngt_skip("python3 does not run here (no json/struct modules): the independent "
                        "safetensors reader was not run");
    NGT_CHECK(find_script(script, sizeof script) == 0,
              "tests/read_safetensors.py not found (run from the repository root)");
    snprintf(out, sizeof out, "%s", tpath("reader.out"));
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' '%s' > '%s' 2>&1", script, path, exp, out);
    rc = system(cmd);
    file = slurp(out, &n);
    if (file) {
        char *line, *save = NULL;
        file = realloc(file, n + 1);
        file[n] = 0;
        for (line = strtok_r((char *)file, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            printf("  python: %s\n", line);
        free(file);
    }
    NGT_CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
              "the Python reader refused the file");

    /* and it does catch a broken file: one value changed */
    file = slurp(path, &n);
    NGT_CHECK(file != NULL, "slurp");
    file[n - 1] ^= 0x40;
    NGT_CHECK(write_bytes(tpath("broken.safetensors"), file, n) == 0, "write");
    free(file);
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' '%s' > /dev/null 2>&1", script,
             tpath("broken.safetensors"), exp);
    rc = system(cmd);
    NGT_CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 1,
              "the Python reader accepted a changed value");
    return NGT_PASS;
}

static int test_safetensors_refusals(void) {
    static const uint64_t s2[2] = {2, 2};
    float v[4] = {1, 2, 3, 4};
    ng_st_tensor t[2];
    const char *k2[2] = {"a", "a"}, *v2[2] = {"x", "y"}, *bad8[1] = {"\xc3("};
    char p[512];
    int ok = 1;
    snprintf(p, sizeof p, "%s", tpath("bad.safetensors"));
    t[0] = (ng_st_tensor){"w", NG_F32, 2, s2, v};
    t[1] = (ng_st_tensor){"w", NG_F32, 2, s2, v};
    ok &= err_has(ng_safetensors_write(p, 2, t, NULL, NULL, 0), NG_ERR_INVALID_ARG,
                  "tensor name w is used twice", p, NULL);
    t[1].name = "";
    ok &= err_has(ng_safetensors_write(p, 2, t, NULL, NULL, 0), NG_ERR_INVALID_ARG, "empty name",
                  NULL, NULL);
    t[1].name = "__metadata__";
    ok &= err_has(ng_safetensors_write(p, 2, t, NULL, NULL, 0), NG_ERR_INVALID_ARG, "__metadata__",
                  "reserved", NULL);
    t[1].name = NULL;
    ok &= err_has(ng_safetensors_write(p, 2, t, NULL, NULL, 0), NG_ERR_INVALID_ARG, "empty name",
                  NULL, NULL);
    t[1].name = "\xff";
    ok &= err_has(ng_safetensors_write(p, 2, t, NULL, NULL, 0), NG_ERR_INVALID_ARG, "UTF-8", NULL,
                  NULL);
    t[1].name = "v";
    t[1].dtype = NG_DTYPE_COUNT;
    ok &= err_has(ng_safetensors_write(p, 2, t, NULL, NULL, 0), NG_ERR_INVALID_ARG, "tensor v",
                  "dtype", NULL);
    t[1].dtype = NG_F32;
    t[1].data = NULL;
    ok &= err_has(ng_safetensors_write(p, 2, t, NULL, NULL, 0), NG_ERR_INVALID_ARG, "tensor v",
                  "NULL data", NULL);
    t[1].data = v;
    ok &= err_has(ng_safetensors_write(p, 2, t, k2, v2, 2), NG_ERR_INVALID_ARG,
                  "metadata key a is used twice", NULL, NULL);
    ok &= err_has(ng_safetensors_write(p, 2, t, bad8, v2, 1), NG_ERR_INVALID_ARG, "UTF-8", NULL,
                  NULL);
    ok &= !exists(p) && !exists(tpath("bad.safetensors.tmp"));
    /* no tensors, no metadata: "{}" padded to 8 bytes */
    NGT_OK(ng_safetensors_write(p, 0, NULL, NULL, NULL, 0));
    {
        size_t n;
        unsigned char *b = slurp(p, &n);
        ok &= b && n == 16 && rd64(b) == 8 && memcmp(b + 8, "{}      ", 8) == 0;
        free(b);
    }
    ok &= err_has(ng_safetensors_write(tpath("nodir/x.safetensors"), 2, t, NULL, NULL, 0),
                  NG_ERR_IO, "safetensors ", "No such file", NULL);
    NGT_CHECK(ok, "safetensors refusals");
    return NGT_PASS;
}

/* ---- main ---------------------------------------------------------------------------------------
 */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv) {
    (void)argc;
    argv0 = argv[0];
    strcpy(tmpdir, "/tmp/ng_test_ckfmt_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    fill_data();
    NGT_RUN(test_round_trip);
    NGT_RUN(test_last_wins_and_listing);
    NGT_RUN(test_api_refusals);
    NGT_RUN(test_corrupt_fields);
    NGT_RUN(test_truncation);
    NGT_RUN(test_random_damage);
    NGT_RUN(test_expect);
    NGT_RUN(test_get_ranges);
    NGT_RUN(test_special_files);
    NGT_RUN(test_write_failures);
    NGT_RUN(test_wfile);
    NGT_RUN(test_safetensors_python);
    NGT_RUN(test_safetensors_refusals);
    free(g_ref);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return ngt_finish();
}
