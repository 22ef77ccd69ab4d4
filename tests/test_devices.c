/* test_devices.c: several CUDA backends in one process, each on its own device (--device cuda:N).
 * Under the SIMT emulator (make test: two emulated devices, NG_SIMT_DEVICES) and on a machine with
 * two or more GPUs: backends on cuda:0 and cuda:1 report their device, a device that does not
 * exist is refused naming how many there are, and two RBM trainers, one per device, stepped in
 * alternation (so every call switches the current device) end with the same parameters as each
 * other and as the CPU backend. The emulator rejects any call issued while another device is
 * current (a kernel on another device's stream, a cuBLAS handle of another device), so a backend
 * that forgot to make its device current fails here. Device-string parsing is checked on the host.
 * Without a CUDA device the backend parts skip, saying why. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/data.h"
#include "natgrad/rbm.h"

static int test_device_parse(void) {
    static const struct { const char *s; int ok; ng_device d; int index; } cases[] = {
        {"auto", 1, NG_DEVICE_AUTO, -1}, {"cpu", 1, NG_DEVICE_CPU, -1},  {"CUDA", 1, NG_DEVICE_CUDA, -1},
        {"cuda:0", 1, NG_DEVICE_CUDA, 0}, {"gpu:3", 0, NG_DEVICE_AUTO, 0}, {"gpu", 0, NG_DEVICE_AUTO, 0}, {"cuda:", 0, NG_DEVICE_AUTO, 0},
        {"cuda:x", 0, NG_DEVICE_AUTO, 0}, {"cuda:-1", 0, NG_DEVICE_AUTO, 0}, {"cpu:1", 0, NG_DEVICE_AUTO, 0},
        {"tpu", 0, NG_DEVICE_AUTO, 0},    {"cuda:1x", 0, NG_DEVICE_AUTO, 0},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ng_device d = NG_DEVICE_AUTO;
        int index = -7;
        ng_status s = ng_device_parse(cases[i].s, &d, &index);
        if (cases[i].ok)
            NGT_CHECK(s == NG_OK && d == cases[i].d && index == cases[i].index, "'%s': %s, device %d index %d",
                      cases[i].s, ng_status_name(s), (int)d, index);
        else
            NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--device"), "'%s' accepted (%s)", cases[i].s,
                      ng_last_error());
    }
    return NGT_PASS;
}

static int g_count;
static char g_why[400];
static ng_backend *g_cpu;

static int test_device_indices(void) {
    ng_backend *b0 = NULL, *b1 = NULL, *bx = NULL;
    ng_status s;
    char want[64];
    if (g_count < 2) return ngt_skip(g_why);
    NGT_OK(ng_backend_cuda_init(0, &b0));
    NGT_OK(ng_backend_cuda_init(1, &b1));
    NGT_CHECK(b0->device_index == 0 && b1->device_index == 1, "device indices %d %d", b0->device_index,
              b1->device_index);
    NGT_CHECK(strstr(b0->description, "cuda:0") && strstr(b1->description, "cuda:1"), "descriptions: %s / %s",
              b0->description, b1->description);
    s = ng_backend_cuda_init(g_count, &bx);
    snprintf(want, sizeof want, "has %d", g_count);
    NGT_CHECK(s == NG_ERR_NO_DEVICE && bx == NULL && strstr(ng_last_error(), want), "cuda:%d: %s '%s'", g_count,
              ng_status_name(s), ng_last_error());
    s = ng_backend_init(NG_DEVICE_CUDA, g_count, &bx, NULL, 0);
    NGT_CHECK(s == NG_ERR_NO_DEVICE && strstr(ng_last_error(), "--device cuda"), "--device cuda:%d: %s", g_count,
              ng_last_error());
    ng_backend_free(b0);
    ng_backend_free(b1);
    return NGT_PASS;
}

/* One RBM trainer per backend on the same data and seed. */
typedef struct run {
    ng_rbm rbm;
    ng_rbm_trainer rt;
} run;

static ng_status run_init(run *r, ng_backend *be, const ng_dataset *ds, const ng_rbm_config *cfg) {
    NG_TRY(ng_rbm_init(be, ds->dim, 6, &r->rbm));
    NG_TRY(ng_rbm_init_params(&r->rbm, 5, 0.1f, NULL));
    return ng_rbm_trainer_init(&r->rt, &r->rbm, cfg, ds->x, ds->n, NULL);
}

static int test_two_devices_train(void) {
    ng_backend *b0 = NULL, *b1 = NULL;
    ng_dataset ds;
    ng_rbm_config cfg;
    run r0, r1, rc;
    float W0[16 * 6], W1[16 * 6], Wc[16 * 6];
    int t;
    if (g_count < 2) return ngt_skip(g_why);
    NGT_OK(ng_dataset_make_bars_stripes(4, 40, &ds));
    ng_rbm_config_default(&cfg);
    cfg.batch = 8;
    cfg.particles = 16;
    cfg.optimizer = NG_RBM_OPT_FANG;
    cfg.fang_refit_every = 3;
    cfg.lr = 0.05f;
    cfg.momentum = 0.5f;
    NGT_OK(ng_backend_cuda_init(0, &b0));
    NGT_OK(ng_backend_cuda_init(1, &b1));
    NGT_OK(run_init(&r0, b0, &ds, &cfg));
    NGT_OK(run_init(&r1, b1, &ds, &cfg));
    NGT_OK(run_init(&rc, g_cpu, &ds, &cfg));
    for (t = 0; t < 12; t++) { /* alternate: every call switches the current device */
        NGT_OK(ng_rbm_trainer_step(&r0.rt, NULL));
        NGT_OK(ng_rbm_trainer_step(&r1.rt, NULL));
        NGT_OK(ng_rbm_trainer_step(&rc.rt, NULL));
    }
    NGT_OK(ng_rbm_get_params(&r0.rbm, W0, NULL, NULL));
    NGT_OK(ng_rbm_get_params(&r1.rbm, W1, NULL, NULL));
    NGT_OK(ng_rbm_get_params(&rc.rbm, Wc, NULL, NULL));
    NGT_CHECK(memcmp(W0, W1, sizeof W0) == 0, "cuda:0 and cuda:1 ran the same training differently");
    /* the emulated device against the CPU: float32 sums in other orders, 12 updates */
    NGT_CHECK(ngt_compare("W on cuda:0 vs the CPU", W0, Wc, 16 * 6, 1e-5, 1e-4) == 0, "devices disagree with the CPU");
    ng_rbm_trainer_free(&r0.rt);
    ng_rbm_trainer_free(&r1.rt);
    ng_rbm_trainer_free(&rc.rt);
    ng_rbm_free(&r0.rbm);
    ng_rbm_free(&r1.rbm);
    ng_rbm_free(&rc.rbm);
    ng_backend_free(b0);
    ng_backend_free(b1);
    ng_dataset_free(&ds);
    return NGT_PASS;
}

int main(void) {
    ng_backend *probe = NULL;
    if (ng_backend_cpu_init(&g_cpu) != NG_OK) {
        printf("cpu backend: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    g_count = ng_cuda_device_count();
    if (ng_backend_cuda_init(0, &probe) != NG_OK) {
        snprintf(g_why, sizeof g_why, "no CUDA backend here: %s", ng_last_error());
        g_count = 0;
    } else if (g_count < 2) {
        snprintf(g_why, sizeof g_why, "needs two CUDA devices, this machine has %d", g_count);
    }
    ng_backend_free(probe);
    ng_clear_error();
    NGT_RUN(test_device_parse);
    NGT_RUN(test_device_indices);
    NGT_RUN(test_two_devices_train);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
