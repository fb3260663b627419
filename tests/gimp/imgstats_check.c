/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The plug-in's headline rule (host/label.c: uncertain / out of
 * distribution first) and its image-statistics "not a lesion image" check
 * (plugin/imgstats.c):
 *  - flat, blank, near-uniform and tiny inputs are flagged;
 *  - the shipped sample lesions are not;
 *  - on a HAM10000 split (default $DL_SHARED_DIR/datasets/ham10000/test, or
 *    the folder given as argv[1]) at most 2 % of the real lesion images are
 *    flagged (false positives). The rate is printed.
 * Exit 0 pass, 1 fail. Without the dataset the synthetic part still runs. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dermlens_host.h"
#include "dermlens.h"
#include "dermlens_host.h"

static int failures;

static uint8_t clamp8(double v)
{
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)(v + 0.5);
}

/* Deterministic noise (xorshift), roughly Gaussian by summing 4 uniforms. */
static unsigned rng_state = 12345u;
static double noise(void)
{
    double s = 0;
    for (int i = 0; i < 4; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        s += (rng_state & 0xffff) / 65535.0 - 0.5;
    }
    return s * 1.732; /* unit variance */
}

typedef enum { FILL_FLAT, FILL_NOISE, FILL_GRADIENT } fill_kind;

static void synth(const char *name, int w, int h, int r, int g, int b, fill_kind kind, double amount,
                  int want_flag)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double d = 0;
            if (kind == FILL_NOISE)
                d = noise() * amount;
            else if (kind == FILL_GRADIENT)
                d = amount * ((double)x / w - 0.5);
            uint8_t *p = px + ((size_t)y * w + x) * 3;
            p[0] = clamp8(r + d);
            p[1] = clamp8(g + d);
            p[2] = clamp8(b + d);
        }
    dh_image_stats s;
    char why[128];
    dh_image_stats_compute(px, w, h, (size_t)w * 3, &s);
    int flag = dh_image_stats_flag(&s, why, sizeof why);
    printf("%-34s %4dx%-4d range %3d detail %5.2f clipped %.2f -> %s%s%s\n", name, w, h,
           s.max_range, s.detail, s.clipped, flag ? "flagged: " : "not flagged", why,
           flag == want_flag ? "" : "   <-- WRONG");
    if (flag != want_flag)
        failures++;
    free(px);
}

static int load_check(const char *path, dh_image_stats *s, char *why, size_t n)
{
    dl_image img;
    dl_error err = {0};
    if (dl_image_load(path, &img, &err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err.message);
        return -1;
    }
    dh_image_stats_compute(img.pixels, img.width, img.height, img.stride, s);
    int f = dh_image_stats_flag(s, why, n);
    dl_image_free(&img);
    return f;
}

static int is_image(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

/* Every image in dir and its class subfolders. */
static void scan(const char *dir, int *n, int *flagged, int *errors, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 1) {
            scan(path, n, flagged, errors, depth + 1);
        } else if (S_ISREG(st.st_mode) && is_image(e->d_name)) {
            dh_image_stats s;
            char why[128];
            int f = load_check(path, &s, why, sizeof why);
            if (f < 0) {
                (*errors)++;
                continue;
            }
            (*n)++;
            if (f) {
                (*flagged)++;
                printf("  flagged: %s (%s; range %d, detail %.2f, clipped %.2f)\n", path, why,
                       s.max_range, s.detail, s.clipped);
            }
        }
    }
    closedir(d);
}

/* The headline rule on fabricated results (real model for the class names):
 * a near-tie or a weak top class reads "uncertain: a N % / b M %", out of
 * distribution comes first, one rounding everywhere. */
static void expect_headline(dl_model *m, const char *const *codes, const float *p, int n, int ood,
                            int image_flag, const char *want_head, const char *want_group)
{
    int nc = dl_model_num_classes(m);
    float probs[64] = {0};
    int idx[64];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < nc; c++)
            if (!strcmp(dl_model_class_name(m, c), codes[i]))
                probs[c] = p[i];
    for (int c = 0; c < nc; c++)
        idx[c] = c;
    for (int a = 0; a < nc; a++) /* sort by probability, stable */
        for (int b = a + 1; b < nc; b++)
            if (probs[idx[b]] > probs[idx[a]]) {
                int t = idx[a];
                idx[a] = idx[b];
                idx[b] = t;
            }
    dl_result r = {0};
    r.num_classes = nc;
    r.probs = probs;
    r.top_k = nc;
    r.top_index = idx;
    r.ood_flag = ood;
    char head[256], group[512], label[2048];
    dh_headline(m, &r, image_flag, head, sizeof head);
    dh_group_name(m, &r, image_flag, group, sizeof group);
    dh_label_markup(m, &r, image_flag, 3, 0, 1, 1, label, sizeof label);
    int ok = !strcmp(head, want_head) && !strcmp(group, want_group) && strstr(label, want_head) &&
             strstr(label, DH_DISCLAIMER);
    printf("headline %-48s group %-70s %s\n", head, group, ok ? "" : "   <-- WRONG");
    if (!ok) {
        printf("  want %s / %s; label %s\n", want_head, want_group, label);
        failures++;
    }
}

static void headline_checks(const char *weights)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/dermlens_ham10000.safetensors", weights);
    dl_error err = {0};
    dl_model *m = dl_model_load(path, &err);
    if (!m) {
        printf("no lesion model (%s): headline checks skipped\n", err.message);
        return;
    }
    const char *tie[] = {"bkl", "nv", "mel"};
    const float ptie[] = {0.4441f, 0.4402f, 0.1157f};
    expect_headline(m, tie, ptie, 3, 0, 0, "uncertain: bkl 44 % / nv 44 %",
                    "DermLens: uncertain: bkl 44 % / nv 44 %");
    const char *gap[] = {"mel", "nv"};
    const float pgap[] = {0.55f, 0.45f}; /* 10 points apart: still a near-tie */
    expect_headline(m, gap, pgap, 2, 0, 0, "uncertain: mel 55 % / nv 45 %",
                    "DermLens: uncertain: mel 55 % / nv 45 %");
    const float pweak[] = {0.48f, 0.30f}; /* top below 50 % */
    expect_headline(m, gap, pweak, 2, 0, 0, "uncertain: mel 48 % / nv 30 %",
                    "DermLens: uncertain: mel 48 % / nv 30 %");
    const float pclear[] = {0.8149f, 0.1851f};
    expect_headline(m, gap, pclear, 2, 0, 0, "melanoma 81 %", "DermLens: melanoma 81 %");
    expect_headline(m, gap, pclear, 2, 1, 0, DH_OOD_HEADLINE,
                    "DermLens: " DH_OOD_HEADLINE " (mel 81 %)");
    expect_headline(m, tie, ptie, 3, 0, 1, DH_OOD_HEADLINE,
                    "DermLens: " DH_OOD_HEADLINE " (bkl 44 %)");
    dl_model_free(m);
}

int main(int argc, char **argv)
{
    const char *src = getenv("DL_SOURCE_ROOT");
    const char *shared = getenv("DL_SHARED_DIR");

    const char *weights = getenv("DL_WEIGHTS");
    if (weights)
        headline_checks(weights);

    /* Inputs the check must flag. */
    synth("blank white", 224, 224, 255, 255, 255, FILL_FLAT, 0, 1);
    synth("solid black", 224, 224, 0, 0, 0, FILL_FLAT, 0, 1);
    synth("solid grey", 224, 224, 128, 128, 128, FILL_FLAT, 0, 1);
    synth("plain skin colour", 224, 224, 224, 172, 150, FILL_FLAT, 0, 1);
    synth("plain skin, 600 x 450", 600, 450, 200, 150, 130, FILL_FLAT, 0, 1);
    synth("near-uniform skin (noise sd 2)", 224, 224, 210, 160, 140, FILL_NOISE, 2.0, 1);
    synth("near-uniform grey (noise sd 4)", 448, 448, 128, 128, 128, FILL_NOISE, 4.0, 1);
    synth("skin with a soft shading", 600, 450, 200, 150, 130, FILL_GRADIENT, 24.0, 1);
    synth("tiny lesion-like (20 x 20)", 20, 20, 120, 60, 40, FILL_NOISE, 40.0, 1);
    synth("tiny strip (300 x 16)", 300, 16, 120, 60, 40, FILL_NOISE, 40.0, 1);

    /* The shipped sample lesions must pass. */
    if (src) {
        const char *names[] = {"ISIC_0031711.jpg", "ISIC_0025921.jpg", "ISIC_0029674.jpg"};
        for (int i = 0; i < 3; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/tests/data/lesions/%s", src, names[i]);
            dh_image_stats s;
            char why[128];
            int f = load_check(path, &s, why, sizeof why);
            printf("%-34s range %3d detail %5.2f -> %s%s\n", names[i], s.max_range, s.detail,
                   f ? "flagged: " : "not flagged", why);
            if (f != 0)
                failures++;
        }
    }

    char dir[4096] = "";
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else if (shared)
        snprintf(dir, sizeof dir, "%s/datasets/ham10000/test", shared);
    struct stat st;
    if (dir[0] && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        int n = 0, flagged = 0, errors = 0;
        scan(dir, &n, &flagged, &errors, 0);
        double rate = n ? 100.0 * flagged / n : 0.0;
        printf("false positives on %s: %d of %d images = %.2f %% (limit 2 %%); %d unreadable\n",
               dir, flagged, n, rate, errors);
        if (n == 0 || rate > 2.0)
            failures++;
    } else {
        printf("dataset folder not found (%s): false-positive rate not measured\n",
               dir[0] ? dir : "no DL_SHARED_DIR");
    }
    if (failures)
        printf("FAIL: %d checks failed\n", failures);
    else
        printf("PASS\n");
    return failures ? 1 : 0;
}
