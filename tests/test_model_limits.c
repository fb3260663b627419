/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The model memory limit (DL_MAX_MODEL_MEMORY_MB, DERMLENS_MAX_MEMORY_MB):
 * a small file whose graph asks for more memory than the limit is refused
 * quickly, with a message naming the need and the limit, and without
 * allocating (peak RSS stays small); the shipped models load under the
 * default; the override works both ways and bad values are errors. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* input side x side x 3 -> conv 1x1 (units) -> gap -> dense 2: a file of a
 * few hundred bytes whose activations at batch 1 are ~side^2 * (3 + units)
 * floats. */
static int make_model(const char *path, int side, int units)
{
    return tu_save_tiny_model(path, side, units, NULL, NULL, NULL, "relu", "valid", "limits");
}

/* The "needs N MiB" number of a refusal message, or -1. */
static long needed_mib(const char *msg)
{
    const char *s = strstr(msg, "needs ");
    return s ? strtol(s + 6, NULL, 10) : -1;
}

int main(void)
{
    const char *b = getenv("DL_BUILD_ROOT");
    char huge[4096], tiny[4096];
    snprintf(huge, sizeof huge, "%s/test_model_limits_huge.safetensors", b ? b : ".");
    snprintf(tiny, sizeof tiny, "%s/test_model_limits_tiny.safetensors", b ? b : ".");
    unsetenv("DERMLENS_MAX_MEMORY_MB");

    /* 8192x8192 input, 16 channels after the conv: input 768 MiB + conv
     * output 4 GiB, from a file of a few hundred bytes. */
    CHECK(make_model(huge, 8192, 16) == 0, "cannot write %s", huge);
    CHECK(make_model(tiny, 4, 2) == 0, "cannot write %s", tiny);
    long rss0 = peak_rss_kib();
    double t0 = cpu_seconds();
    dl_error err = {0};
    dl_model *m = dl_model_load(huge, &err);
    double t1 = cpu_seconds();
    CHECK(m == NULL, "a model needing ~5 GiB loaded under the 4 GiB default");
    dl_model_free(m);
    CHECK(err.code == DL_ERR_LIMIT, "code %s: %s", dl_status_name(err.code), err.message);
    CHECK(strstr(err.message, "4096 MiB limit") && strstr(err.message, "DERMLENS_MAX_MEMORY_MB"),
          "message does not name the limit: %s", err.message);
    long need = needed_mib(err.message);
    /* (768 + 4096) MiB of activations, each rounded to 16 floats */
    CHECK(need >= 4864 && need <= 4866, "need %ld MiB, expected ~4864: %s", need, err.message);
    CHECK(strstr(err.message, "8192x8192"), "message does not name the input size: %s", err.message);
    CHECK(t1 - t0 < 0.5, "refusal took %.3f s CPU", t1 - t0);
    long rss1 = peak_rss_kib();
    CHECK(rss1 - rss0 < 32 * 1024, "peak RSS grew by %ld KiB while refusing", rss1 - rss0);
    printf("huge model refused in %.4f s CPU, peak RSS %ld -> %ld KiB: %s\n", t1 - t0, rss0, rss1, err.message);

    /* Raising the limit lets the same file load: the check, not a parse
     * error, refused it, and loading still allocates no activations. */
    setenv("DERMLENS_MAX_MEMORY_MB", "6000", 1);
    memset(&err, 0, sizeof err);
    m = dl_model_load(huge, &err);
    CHECK(m != NULL, "not loaded with a 6000 MiB limit: %s", err.message);
    dl_model_free(m);
    CHECK(peak_rss_kib() - rss0 < 32 * 1024, "loading allocated: peak RSS %ld KiB", peak_rss_kib());

    /* A limit below the need of the shipped models refuses them with their
     * need; the tiny model still fits in 1 MiB. */
    setenv("DERMLENS_MAX_MEMORY_MB", "1", 1);
    memset(&err, 0, sizeof err);
    m = dl_model_load(tiny, &err);
    CHECK(m != NULL, "tiny model refused with 1 MiB: %s", err.message);
    dl_model_free(m);
    const char *shipped[2] = {"weights/mobilenet_v2_imagenet.safetensors", "weights/dermlens_ham10000.safetensors"};
    for (int i = 0; i < 2; i++) {
        const char *path = tu_source(shipped[i]);
        FILE *f = fopen(path, "rb");
        if (!f) { printf("skip %s (absent)\n", path); continue; }
        fclose(f);
        setenv("DERMLENS_MAX_MEMORY_MB", "1", 1);
        memset(&err, 0, sizeof err);
        m = dl_model_load(path, &err);
        CHECK(m == NULL && err.code == DL_ERR_LIMIT, "%s loaded with 1 MiB", path);
        dl_model_free(m);
        need = needed_mib(err.message);
        CHECK(need > 10 && need < 512, "%s: need %ld MiB: %s", path, need, err.message);
        printf("%s: %s\n", shipped[i], err.message);
        unsetenv("DERMLENS_MAX_MEMORY_MB");
        memset(&err, 0, sizeof err);
        m = dl_model_load(path, &err);
        CHECK(m != NULL, "%s refused under the default limit: %s", path, err.message);
        dl_model_free(m);
    }

    /* Bad override values are errors, not silently ignored. */
    const char *bad[] = {"abc", "0", "-5", "12x", " ", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("DERMLENS_MAX_MEMORY_MB", bad[i], 1);
        memset(&err, 0, sizeof err);
        m = dl_model_load(tiny, &err);
        CHECK(m == NULL && err.code == DL_ERR_ARG && strstr(err.message, "DERMLENS_MAX_MEMORY_MB"),
              "value \"%s\" accepted (%s)", bad[i], err.message);
        dl_model_free(m);
    }
    /* A huge but valid value means "no practical limit". */
    setenv("DERMLENS_MAX_MEMORY_MB", "18446744073709551615", 1);
    memset(&err, 0, sizeof err);
    m = dl_model_load(tiny, &err);
    CHECK(m != NULL, "max value refused: %s", err.message);
    dl_model_free(m);
    unsetenv("DERMLENS_MAX_MEMORY_MB");
    remove(huge);
    remove(tiny);
    return tu_exit();
}
