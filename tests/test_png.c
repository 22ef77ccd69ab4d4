/* test_png.c: the PNG writer (natgrad/png.h). Every file written is decoded back by an independent
 * reader (tests/png_decode.h: chunk framing, CRCs with zlib's crc32, inflate with zlib's
 * uncompress, filter type 0 undone) and compared pixel by pixel: gray and RGB images, an image
 * large enough to span several IDAT chunks, and the grid helper's layout (border, empty cells,
 * clamping, rounding). Also refused arguments (NULL, zero, negative and absurd sizes, NaN), a
 * path in a missing directory (an error naming the path, nothing left behind), and, when python3
 * is installed, a second independent reader (tests/read_png.py, standard library only).
 * Files are written to a fresh directory under /tmp, removed at the end. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "natgrad/png.h"
#include "natgrad/status.h"
#include "png_decode.h"

static char tmpdir[256];
static const char *argv0 = "";

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* A deterministic byte pattern: low-quality LCG bytes (incompressible enough for the test). */
static void fill_bytes(unsigned char *p, size_t n, uint32_t seed) {
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (unsigned char)(seed >> 24);
    }
}

/* Decode path and compare with the expected image. */
static int check_file(const char *path, int w, int h, int c, const unsigned char *want, int *n_idat) {
    ngt_png png;
    char err[256];
    size_t i, n = (size_t)w * (size_t)h * (size_t)c;
    NGT_CHECK(ngt_png_decode(path, &png, err, sizeof err) == 0, "%s: %s", path, err);
    if (png.width != w || png.height != h || png.channels != c) {
        printf("  %s: decoded %d x %d x %d, wrote %d x %d x %d\n", path, png.width, png.height,
               png.channels, w, h, c);
        free(png.pixels);
        return NGT_FAIL;
    }
    for (i = 0; i < n; i++)
        if (png.pixels[i] != want[i]) {
            printf("  %s: byte %zu is %d, wrote %d\n", path, i, png.pixels[i], want[i]);
            free(png.pixels);
            return NGT_FAIL;
        }
    if (n_idat) *n_idat = png.n_idat;
    free(png.pixels);
    return NGT_PASS;
}

static int test_gray_roundtrip(void) {
    unsigned char im[37 * 5], one = 200;
    int r, c;
    for (r = 0; r < 5; r++)
        for (c = 0; c < 37; c++) im[r * 37 + c] = (unsigned char)(r * 50 + c * 7);
    NGT_OK(ng_png_write_gray(tpath("g.png"), 37, 5, im));
    NGT_CHECK(!exists(tpath("g.png.tmp")), ".tmp left behind");
    if (check_file(tpath("g.png"), 37, 5, 1, im, NULL) != NGT_PASS) return NGT_FAIL;
    /* the reader is not blind: one flipped bit anywhere after the signature is caught */
    {
        FILE *f = fopen(tpath("g.png"), "r+b");
        ngt_png png;
        char err[256];
        long len, at;
        int ch;
        NGT_CHECK(f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 40, "open g.png");
        for (at = 8; at < len; at += 7) {
            fseek(f, at, SEEK_SET);
            ch = fgetc(f);
            fseek(f, at, SEEK_SET);
            fputc(ch ^ 0x10, f);
            fflush(f);
            if (ngt_png_decode(tpath("g.png"), &png, err, sizeof err) == 0) {
                printf("  flipped bit at byte %ld of %ld not detected\n", at, len);
                free(png.pixels);
                fclose(f);
                return NGT_FAIL;
            }
            fseek(f, at, SEEK_SET);
            fputc(ch, f);
            fflush(f);
        }
        fclose(f);
        if (check_file(tpath("g.png"), 37, 5, 1, im, NULL) != NGT_PASS) return NGT_FAIL;
    }
    NGT_OK(ng_png_write_gray(tpath("one.png"), 1, 1, &one));
    if (check_file(tpath("one.png"), 1, 1, 1, &one, NULL) != NGT_PASS) return NGT_FAIL;
    /* a tall, narrow one (many tiny rows) */
    {
        unsigned char col[3000];
        fill_bytes(col, sizeof col, 7);
        NGT_OK(ng_png_write_gray(tpath("tall.png"), 1, 3000, col));
        if (check_file(tpath("tall.png"), 1, 3000, 1, col, NULL) != NGT_PASS) return NGT_FAIL;
    }
    return NGT_PASS;
}

static int test_rgb_roundtrip(void) {
    unsigned char im[19 * 11 * 3];
    fill_bytes(im, sizeof im, 42);
    NGT_OK(ng_png_write_rgb(tpath("rgb.png"), 19, 11, im));
    return check_file(tpath("rgb.png"), 19, 11, 3, im, NULL);
}

static int test_overwrite(void) {
    unsigned char a[4 * 4], b[6 * 2 * 3];
    memset(a, 10, sizeof a);
    fill_bytes(b, sizeof b, 3);
    NGT_OK(ng_png_write_gray(tpath("over.png"), 4, 4, a));
    NGT_OK(ng_png_write_rgb(tpath("over.png"), 6, 2, b));
    NGT_CHECK(!exists(tpath("over.png.tmp")), ".tmp left behind");
    return check_file(tpath("over.png"), 6, 2, 3, b, NULL);
}

/* Random pixels do not compress: the stream spans several 64 KiB IDAT chunks. */
static int test_multi_idat(void) {
    int w = 640, h = 500, n_idat = 0, r;
    unsigned char *im = malloc((size_t)w * h * 3);
    NGT_CHECK(im != NULL, "malloc");
    fill_bytes(im, (size_t)w * h * 3, 1234);
    if (ng_png_write_rgb(tpath("big.png"), w, h, im) != NG_OK) {
        printf("  write: %s\n", ng_last_error());
        free(im);
        return NGT_FAIL;
    }
    r = check_file(tpath("big.png"), w, h, 3, im, &n_idat);
    free(im);
    if (r != NGT_PASS) return r;
    NGT_CHECK(n_idat >= 10, "%d IDAT chunks for ~960 KB of random pixels (expected >= 10)", n_idat);
    return NGT_PASS;
}

/* 5 images of 3 x 2 in 3 columns with pad 1: a 10 x 9 picture, the last cell empty. */
static int test_grid_layout(void) {
    enum { H = 3, W = 2, N = 5, COLS = 3, PAD = 1, GW = COLS * W + (COLS + 1) * PAD,
           GH = 2 * H + 3 * PAD };
    float x[H * W * N];
    unsigned char want[GW * GH];
    int j, r, c, k;
    for (k = 0; k < H * W * N; k++) x[k] = (float)k / (float)(H * W * N - 1);
    x[0] = -0.5f; /* clamped to 0 */
    x[7] = 1.5f;  /* clamped to 1 */
    x[8] = 0.5f;  /* 127.5 rounds up */
    memset(want, NG_PNG_GRID_GRAY, sizeof want);
    for (j = 0; j < N; j++)
        for (r = 0; r < H; r++)
            for (c = 0; c < W; c++) {
                float v = x[j * H * W + r * W + c];
                double d = v < 0 ? 0 : v > 1 ? 255 : floor(255.0 * v + 0.5);
                want[(PAD + (j / COLS) * (H + PAD) + r) * GW + PAD + (j % COLS) * (W + PAD) + c] =
                    (unsigned char)d;
            }
    NGT_CHECK(want[(PAD + 1) * GW + PAD + W + PAD] == 128, "x[8] = 0.5 -> 128 (round half up)");
    NGT_OK(ng_png_write_image_grid(tpath("grid.png"), x, H, W, N, COLS, PAD));
    if (check_file(tpath("grid.png"), GW, GH, 1, want, NULL) != NGT_PASS) return NGT_FAIL;

    /* pad 0, cols > n (reduced to n): one row of images side by side */
    {
        unsigned char row[H * W * 2];
        NGT_OK(ng_png_write_image_grid(tpath("grid2.png"), x + H * W, H, W, 2, 10, 0));
        for (r = 0; r < H; r++)
            for (c = 0; c < 2 * W; c++) {
                float v = x[H * W + (c / W) * H * W + r * W + c % W];
                v = v > 1 ? 1 : v;
                row[r * 2 * W + c] = (unsigned char)floor(255.0 * v + 0.5);
            }
        if (check_file(tpath("grid2.png"), 2 * W, H, 1, row, NULL) != NGT_PASS) return NGT_FAIL;
    }
    return NGT_PASS;
}

static int refused(ng_status s, const char *what) {
    if (s != NG_ERR_INVALID_ARG) {
        printf("  %s: got %s (%s), want NG_ERR_INVALID_ARG\n", what, ng_status_name(s), ng_last_error());
        return 0;
    }
    if (!*ng_last_error()) {
        printf("  %s: no message\n", what);
        return 0;
    }
    return 1;
}

static int test_invalid_args(void) {
    unsigned char px[16] = {0};
    float x[16] = {0};
    const char *p = tpath("bad.png");
    NGT_CHECK(refused(ng_png_write_gray(NULL, 4, 4, px), "NULL path"), "NULL path");
    NGT_CHECK(refused(ng_png_write_gray("", 4, 4, px), "empty path"), "empty path");
    NGT_CHECK(refused(ng_png_write_gray(p, 4, 4, NULL), "NULL pixels"), "NULL pixels");
    NGT_CHECK(refused(ng_png_write_rgb(p, 4, 4, NULL), "rgb NULL pixels"), "rgb NULL pixels");
    NGT_CHECK(refused(ng_png_write_gray(p, 0, 4, px), "width 0"), "width 0");
    NGT_CHECK(refused(ng_png_write_gray(p, 4, 0, px), "height 0"), "height 0");
    NGT_CHECK(refused(ng_png_write_rgb(p, -1, 4, px), "width -1"), "width -1");
    NGT_CHECK(refused(ng_png_write_gray(p, 100000, 1, px), "width 100000"), "width 100000");
    NGT_CHECK(refused(ng_png_write_rgb(p, 1, INT_MAX, px), "height INT_MAX"), "height INT_MAX");
    NGT_CHECK(refused(ng_png_write_gray(p, NG_PNG_MAX_SIDE + 1, 1, px), "max + 1"), "max + 1");
    NGT_CHECK(strstr(ng_last_error(), "bad.png") != NULL, "message names the file: %s", ng_last_error());

    NGT_CHECK(refused(ng_png_write_image_grid(NULL, x, 4, 4, 1, 1, 0), "grid NULL path"), "grid path");
    NGT_CHECK(refused(ng_png_write_image_grid(p, NULL, 4, 4, 1, 1, 0), "grid NULL x"), "grid x");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 0, 4, 1, 1, 0), "grid img_h 0"), "img_h");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 4, 0, 1, 1, 0), "grid img_w 0"), "img_w");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 4, 4, 0, 1, 0), "grid n 0"), "n");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 4, 4, 1, 0, 0), "grid cols 0"), "cols");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 4, 4, 1, 1, -1), "grid pad -1"), "pad");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 4, 4, INT_MAX, INT_MAX, 1), "grid too wide"),
              "absurd grid");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, INT_MAX, 1, 1, 1, 0), "grid img_h huge"),
              "absurd image");
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 2, 2, 1, 1, INT_MAX), "grid pad huge"),
              "absurd pad");
    x[5] = NAN;
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 2, 2, 4, 2, 1), "NaN pixel"), "NaN");
    NGT_CHECK(strstr(ng_last_error(), "pixel 1 of image 1") != NULL, "NaN located: %s", ng_last_error());
    x[5] = INFINITY;
    NGT_CHECK(refused(ng_png_write_image_grid(p, x, 2, 2, 4, 2, 1), "Inf pixel"), "Inf");
    NGT_CHECK(!exists(p) && !exists(tpath("bad.png.tmp")), "a refused call created a file");
    return NGT_PASS;
}

static int test_missing_directory(void) {
    unsigned char px[4] = {1, 2, 3, 4};
    float x[4] = {0};
    const char *p = tpath("no/such/dir/x.png");
    ng_status s = ng_png_write_gray(p, 2, 2, px);
    NGT_CHECK(s == NG_ERR_IO, "got %s: %s", ng_status_name(s), ng_last_error());
    NGT_CHECK(strstr(ng_last_error(), p) != NULL, "message names the path: %s", ng_last_error());
    s = ng_png_write_image_grid(p, x, 2, 2, 1, 1, 1);
    NGT_CHECK(s == NG_ERR_IO, "grid: got %s: %s", ng_status_name(s), ng_last_error());
    NGT_CHECK(strstr(ng_last_error(), p) != NULL, "grid message names the path: %s", ng_last_error());
    /* a directory at the target path is not replaced */
    NGT_CHECK(mkdir(tpath("adir.png"), 0755) == 0, "mkdir");
    s = ng_png_write_gray(tpath("adir.png"), 2, 2, px);
    NGT_CHECK(s == NG_ERR_IO && strstr(ng_last_error(), "adir.png"), "directory target: %s: %s",
              ng_status_name(s), ng_last_error());
    return NGT_PASS;
}

/* Where tests/read_png.py is: from the working directory (tests run from the repo root) or next to
 * the binary (BUILD/tests/x -> tests/). */
static int find_script(char *out, size_t cap) {
    const char *slash;
    if (access("tests/read_png.py", R_OK) == 0) {
        snprintf(out, cap, "tests/read_png.py");
        return 0;
    }
    slash = strrchr(argv0, '/');
    if (slash) {
        snprintf(out, cap, "%.*s/../../tests/read_png.py", (int)(slash - argv0), argv0);
        if (access(out, R_OK) == 0) return 0;
    }
    return -1;
}

static int run_python(const char *script, const char *png, int w, int h, int c,
                      const unsigned char *px) {
    char exp[512], out[512], cmd[2000], line[256] = "";
    FILE *f;
    int rc;
    snprintf(exp, sizeof exp, "%s.expected", png);
    snprintf(out, sizeof out, "%s.reader", png);
    f = fopen(exp, "wb");
    NGT_CHECK(f != NULL, "fopen %s", exp);
    fprintf(f, "%d %d %d\n", w, h, c);
    fwrite(px, 1, (size_t)w * h * c, f);
    NGT_CHECK(fclose(f) == 0, "fclose");
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' '%s' > '%s' 2>&1", script, png, exp, out);
    rc = system(cmd);
    f = fopen(out, "r");
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        fclose(f);
    }
    NGT_CHECK(rc == 0 && strncmp(line, "OK", 2) == 0, "read_png.py %s: exit %d: %s", png, rc, line);
    return NGT_PASS;
}

static int test_python_reader(void) {
    unsigned char g[23 * 9], *big;
    char script[600];
    int r;
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return ngt_skip("python3 is not installed: the second PNG reader (tests/read_png.py) was not run");
    if (system("python3 -c 'import zlib, struct' >/dev/null 2>&1") != 0)
        return ngt_skip("python3 has no zlib module: tests/read_png.py was not run");
    NGT_CHECK(find_script(script, sizeof script) == 0, "tests/read_png.py not found (run from the "
                                                       "repository root)");
    fill_bytes(g, sizeof g, 99);
    NGT_OK(ng_png_write_gray(tpath("py_gray.png"), 23, 9, g));
    if (run_python(script, tpath("py_gray.png"), 23, 9, 1, g) != NGT_PASS) return NGT_FAIL;
    big = malloc(300 * 200 * 3);
    NGT_CHECK(big != NULL, "malloc");
    fill_bytes(big, 300 * 200 * 3, 5);
    if (ng_png_write_rgb(tpath("py_rgb.png"), 300, 200, big) != NG_OK) {
        printf("  write: %s\n", ng_last_error());
        free(big);
        return NGT_FAIL;
    }
    r = run_python(script, tpath("py_rgb.png"), 300, 200, 3, big);
    free(big);
    return r;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

int main(int argc, char **argv) {
    if (argc > 0) argv0 = argv[0];
    strcpy(tmpdir, "/tmp/ng_test_png_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    NGT_RUN(test_gray_roundtrip);
    NGT_RUN(test_rgb_roundtrip);
    NGT_RUN(test_overwrite);
    NGT_RUN(test_multi_idat);
    NGT_RUN(test_grid_layout);
    NGT_RUN(test_invalid_args);
    NGT_RUN(test_missing_directory);
    NGT_RUN(test_python_reader);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return ngt_finish();
}
