/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens timing driver for bench/run.sh (not installed, not a test).
 * Prints one JSON object on stdout that bench/bench.py aggregates.
 *
 *   bench_dermlens logits MODEL IMAGE.u8 W H OUT.f32
 *       classify a raw RGB8 image (W x H) and write the raw logits (float32)
 *   bench_dermlens time MODEL BATCH THREADS REPS
 *       load time, REPS timed forwards of a preprocessed batch (after 3
 *       warm-up runs), GFLOP per image, peak RSS
 *   bench_dermlens extras MODEL IMAGE.u8 W H THREADS REPS
 *       batch-1 classify vs Grad-CAM (dl_explain_rgb8) times, and the engine
 *       work the plug-in does on a 4000 x 3000 layer (classify + Grad-CAM map
 *       at full layer size; GIMP's own overhead excluded)
 *   bench_dermlens train MODEL BATCH THREADS STEPS
 *       whole-network training steps (every conv and dense layer trainable:
 *       forward, softmax cross-entropy with label smoothing 0.1, backward,
 *       AdamW) on a random batch, 2 warm-up steps, then STEPS timed ones
 */
#include "dermlens.h"
#include "dermlens_io.h"
#include "dermlens_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* CPU time of the whole process (all threads): on a shared machine this is
 * what a run costs, independent of how long it waited for a core. */
static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* VmHWM, not getrusage: ru_maxrss survives execve, so a child of the
 * (large) python driver would report the parent's peak. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

static void print_times(const char *key, const double *t, int n)
{
    printf("\"%s\": [", key);
    for (int i = 0; i < n; i++) printf("%s%.4f", i ? ", " : "", t[i]);
    printf("]");
}

static int die(const char *what, const dl_error *err)
{
    fprintf(stderr, "bench_dermlens: %s: %s\n", what, err ? err->message : "");
    return 1;
}

static uint8_t *read_image(const char *path, int w, int h)
{
    uint8_t *d = NULL;
    size_t sz = 0;
    dl_error err = {0};
    if (dl_read_file(path, (size_t)1 << 28, &d, &sz, &err) || sz != (size_t)w * h * 3) {
        fprintf(stderr, "bench_dermlens: %s: %s (want %d x %d x 3 bytes)\n", path, err.message, w, h);
        free(d);
        return NULL;
    }
    return d;
}

static int cmd_logits(char **a)
{
    dl_error err = {0};
    int w = atoi(a[2]), h = atoi(a[3]);
    dl_model *m = dl_model_load(a[0], &err);
    if (!m) return die("load", &err);
    uint8_t *img = read_image(a[1], w, h);
    if (!img) return 1;
    dl_result r;
    if (dl_classify_rgb8(m, img, w, h, (size_t)w * 3, NULL, &r, &err)) return die("classify", &err);
    if (dl_write_file_atomic(a[4], r.logits, sizeof(float) * (size_t)r.num_classes, &err)) return die("write", &err);
    printf("{\"num_classes\": %d, \"top1\": %d}\n", r.num_classes, r.top_index[0]);
    dl_result_free(&r);
    free(img);
    dl_model_free(m);
    return 0;
}

static int cmd_time(char **a)
{
    dl_error err = {0};
    int batch = atoi(a[1]), threads = atoi(a[2]), reps = atoi(a[3]);
    if (batch < 1 || batch > 256 || threads < 1 || reps < 1 || reps > 100000) {
        fprintf(stderr, "bench_dermlens: bad batch/threads/reps\n");
        return 2;
    }
    dl_set_num_threads(threads);
    double t0 = now_ms();
    dl_model *m = dl_model_load(a[0], &err);
    double load_ms = now_ms() - t0;
    if (!m) return die("load", &err);
    dl_forward_runner *e = dl_forward_runner_new(m, batch, &err);
    if (!e) return die("exec", &err);
    size_t n_in = 0;
    float *x = dl_forward_runner_input(e, &n_in);
    uint64_t s = 12345;
    for (size_t i = 0; i < n_in; i++) x[i] = (float)(2 * dl_rng_uniform(&s) - 1);
    double *t = malloc(sizeof(double) * reps), *tc = malloc(sizeof(double) * reps);
    for (int i = 0; i < 3; i++)
        if (dl_forward_runner_run(e, &err)) return die("forward", &err);
    for (int i = 0; i < reps; i++) {
        double a0 = now_ms(), c0 = cpu_ms();
        dl_forward_runner_run(e, &err);
        tc[i] = cpu_ms() - c0;
        t[i] = now_ms() - a0;
    }
    printf("{\"runtime\": \"dermlens\", \"batch\": %d, \"threads\": %d, \"load_ms\": %.3f, "
           "\"gflop_per_image\": %.6f, ",
           batch, threads, load_ms, dl_model_flops(m) / 1e9);
    print_times("times_ms", t, reps);
    printf(", ");
    print_times("cpu_ms", tc, reps);
    printf(", \"peak_rss_kb\": %ld}\n", peak_rss_kb());
    free(t);
    free(tc);
    dl_forward_runner_free(e);
    dl_model_free(m);
    return 0;
}

static int cmd_extras(char **a)
{
    dl_error err = {0};
    int w = atoi(a[2]), h = atoi(a[3]), threads = atoi(a[4]), reps = atoi(a[5]);
    if (w < 1 || h < 1 || threads < 1 || reps < 1 || reps > 100000) return 2;
    dl_set_num_threads(threads);
    dl_model *m = dl_model_load(a[0], &err);
    if (!m) return die("load", &err);
    uint8_t *img = read_image(a[1], w, h);
    if (!img) return 1;
    double *tc = malloc(sizeof(double) * reps), *tg = malloc(sizeof(double) * reps), *tf = malloc(sizeof(double) * reps);
    /* one pass (the cost target) and the default 8-flip mean (what
     * the plug-in and `dermlens explain` compute) */
    dl_explain_options eo1 = {.method = DL_SALIENCY_GRADCAM, .class_index = -1, .single_pass = 1};
    dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = -1};
    for (int i = 0; i < reps + 2; i++) {
        dl_result r;
        float *map = NULL;
        double a0 = now_ms();
        if (dl_classify_rgb8(m, img, w, h, (size_t)w * 3, NULL, &r, &err)) return die("classify", &err);
        double a1 = now_ms();
        dl_result_free(&r);
        double a2 = now_ms();
        if (dl_explain_rgb8(m, img, w, h, (size_t)w * 3, &eo1, &map, NULL, &err)) return die("explain", &err);
        double a3 = now_ms();
        free(map);
        if (dl_explain_rgb8(m, img, w, h, (size_t)w * 3, &eo, &map, NULL, &err)) return die("explain", &err);
        double a4 = now_ms();
        free(map);
        if (i >= 2) { /* two warm-ups */
            tc[i - 2] = a1 - a0;
            tg[i - 2] = a3 - a2;
            tf[i - 2] = a4 - a3;
        }
    }
    /* plug-in engine work on a 4000 x 3000 layer: classify + Grad-CAM overlay map */
    const int LW = 4000, LH = 3000;
    uint8_t *big = malloc((size_t)LW * LH * 3);
    for (int y = 0; y < LH; y++)
        for (int x = 0; x < LW; x++) {
            const uint8_t *p = img + ((size_t)(y * h / LH) * w + (size_t)(x * w / LW)) * 3;
            memcpy(big + ((size_t)y * LW + x) * 3, p, 3);
        }
    int preps = reps < 3 ? reps : 3;
    double *tp = malloc(sizeof(double) * preps);
    for (int i = 0; i < preps; i++) {
        dl_result r;
        float *map = NULL;
        double a0 = now_ms();
        if (dl_classify_rgb8(m, big, LW, LH, (size_t)LW * 3, NULL, &r, &err)) return die("classify 4000x3000", &err);
        if (dl_explain_rgb8(m, big, LW, LH, (size_t)LW * 3, &eo, &map, NULL, &err))
            return die("explain 4000x3000", &err);
        tp[i] = now_ms() - a0;
        dl_result_free(&r);
        free(map);
    }
    printf("{\"runtime\": \"dermlens\", \"threads\": %d, ", threads);
    print_times("classify_ms", tc, reps);
    printf(", ");
    print_times("gradcam_ms", tg, reps);
    printf(", ");
    print_times("gradcam_flipmean_ms", tf, reps);
    printf(", ");
    print_times("plugin_4000x3000_ms", tp, preps);
    printf(", \"peak_rss_kb\": %ld}\n", peak_rss_kb());
    free(tc);
    free(tg);
    free(tf);
    free(tp);
    free(big);
    free(img);
    dl_model_free(m);
    return 0;
}

static int cmd_train(char **a)
{
    dl_error err = {0};
    int batch = atoi(a[1]), threads = atoi(a[2]), steps = atoi(a[3]);
    if (batch < 1 || batch > 256 || threads < 1 || steps < 1 || steps > 10000) {
        fprintf(stderr, "bench_dermlens: bad batch/threads/steps\n");
        return 2;
    }
    dl_set_num_threads(threads);
    dl_model *m = dl_model_load(a[0], &err);
    if (!m) return die("load", &err);
    dl_train_step_runner *r = dl_train_step_runner_new(m, batch, &err);
    if (!r) return die("train setup", &err);
    double *t = malloc(sizeof(double) * steps), *tc = malloc(sizeof(double) * steps);
    if (!t || !tc) return die("out of memory", NULL);
    float loss = 0.f;
    for (int i = -2; i < steps; i++) { /* two warm-up steps */
        double a0 = now_ms(), c0 = cpu_ms();
        if (dl_train_step_runner_run(r, &loss, &err)) return die("step", &err);
        if (i >= 0) {
            tc[i] = cpu_ms() - c0;
            t[i] = now_ms() - a0;
        }
    }
    printf("{\"runtime\": \"dermlens\", \"batch\": %d, \"threads\": %d, \"loss\": %.5f, ", batch, threads, loss);
    print_times("times_ms", t, steps);
    printf(", ");
    print_times("cpu_ms", tc, steps);
    printf(", \"peak_rss_kb\": %ld}\n", peak_rss_kb());
    free(t);
    free(tc);
    dl_train_step_runner_free(r);
    dl_model_free(m);
    return 0;
}

/* Where the numbers come from: every table names the machine. */
static long cache_kib(const char *index)
{
    char path[128], buf[64];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/%s/size", index);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    if (fgets(buf, sizeof buf, f)) {
        v = strtol(buf, NULL, 10);
        if (strchr(buf, 'M')) v *= 1024;
    }
    fclose(f);
    return v;
}

static int cmd_cpu(void)
{
    char model[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(model, sizeof model, "%s", c + 2);
                model[strcspn(model, "\n\"\\")] = 0;
            }
            break;
        }
    }
    if (f) fclose(f);
    /* index0/1 are L1d/L1i on x86 Linux; 2 and 3 are L2 and L3 */
    printf("{\"cpu\": \"%s\", \"cores\": %ld, \"isa\": \"%s\", \"l1d_kib\": %ld, \"l2_kib\": %ld, \"l3_kib\": %ld}\n",
           model, sysconf(_SC_NPROCESSORS_ONLN), dl_cpu_isa_name(), cache_kib("index0"), cache_kib("index2"),
           cache_kib("index3"));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "cpu")) return cmd_cpu();
    if (argc >= 7 && !strcmp(argv[1], "logits")) return cmd_logits(argv + 2);
    if (argc >= 6 && !strcmp(argv[1], "time")) return cmd_time(argv + 2);
    if (argc >= 8 && !strcmp(argv[1], "extras")) return cmd_extras(argv + 2);
    if (argc >= 6 && !strcmp(argv[1], "train")) return cmd_train(argv + 2);
    fprintf(stderr,
            "usage: bench_dermlens cpu\n"
            "       bench_dermlens logits MODEL IMAGE.u8 W H OUT.f32\n"
            "       bench_dermlens time MODEL BATCH THREADS REPS\n"
            "       bench_dermlens extras MODEL IMAGE.u8 W H THREADS REPS\n"
            "       bench_dermlens train MODEL BATCH THREADS STEPS\n");
    return 2;
}
