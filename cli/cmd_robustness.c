/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens robustness: balanced accuracy of a model on labelled images under
 * perturbations (geometry, photometry, noise, blur, JPEG, resolution,
 * synthetic hair) at three strengths each, with and without test-time
 * augmentation. Writes robustness.md, robustness.json and robustness.png. */
#include "cli.h"
#include "dermlens_eval.h"
#include "plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ perturbations */

typedef enum {
    P_ROT90, P_ROTATE, P_FLIP, P_BRIGHT_DOWN, P_BRIGHT_UP, P_CONTRAST, P_GAMMA, P_CAST,
    P_NOISE, P_BLUR, P_JPEG, P_DOWNSCALE, P_HAIR, P_COUNT
} pert_kind;

#define N_LEVELS 3

typedef struct {
    const char *name;
    const char *unit;           /* how a level reads in the table */
    double level[N_LEVELS];
} pert_def;

static const pert_def perts[P_COUNT] = {
    [P_ROT90] = {"rotate 90/180/270", "deg", {90, 180, 270}},
    [P_ROTATE] = {"rotate arbitrary", "deg", {15, 30, 45}},
    [P_FLIP] = {"flip (h, v, both)", "", {1, 2, 3}},
    [P_BRIGHT_DOWN] = {"darker", "x", {0.85, 0.7, 0.5}},
    [P_BRIGHT_UP] = {"brighter", "x", {1.15, 1.3, 1.5}},
    [P_CONTRAST] = {"lower contrast", "x", {0.8, 0.6, 0.4}},
    [P_GAMMA] = {"gamma", "", {1.3, 1.7, 2.2}},
    [P_CAST] = {"warm colour cast", "+R -B", {10, 20, 35}},
    [P_NOISE] = {"Gaussian noise", "sigma", {5, 10, 20}},
    [P_BLUR] = {"Gaussian blur", "sigma px", {1, 2, 3}},
    [P_JPEG] = {"JPEG quality", "q", {50, 30, 15}},
    [P_DOWNSCALE] = {"downscale", "1/", {2, 4, 8}},
    [P_HAIR] = {"synthetic hair", "curves", {5, 10, 20}},
};

static const char *flip_names[3] = {"horizontal", "vertical", "both"};

static uint8_t clamp_u8(double v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5);
}

static uint8_t *px(dl_image *im, int x, int y)
{
    return im->pixels + (size_t)y * im->stride + (size_t)x * 3;
}

static const uint8_t *cpx(const dl_image *im, int x, int y)
{
    return im->pixels + (size_t)y * im->stride + (size_t)x * 3;
}

static int copy_image(const dl_image *src, dl_image *dst, dl_error *err)
{
    if (dl_image_alloc(dst, src->width, src->height, err)) return -1;
    for (int y = 0; y < src->height; y++) memcpy(px(dst, 0, y), cpx(src, 0, y), (size_t)src->width * 3);
    return 0;
}

/* 90-degree turns (k = 1, 2, 3, counter-clockwise) and flips (bit 1 = h, 2 = v). */
static int turn(const dl_image *src, int k, int flip, dl_image *dst, dl_error *err)
{
    int W = src->width, H = src->height;
    int ow = k % 2 ? H : W, oh = k % 2 ? W : H;
    if (dl_image_alloc(dst, ow, oh, err)) return -1;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (k) {
            case 1: sx = W - 1 - y; sy = x; break; /* rotate 90 CCW */
            case 2: sx = W - 1 - x; sy = H - 1 - y; break;
            case 3: sx = y; sy = H - 1 - x; break;
            default: sx = x; sy = y; break;
            }
            if (flip & 1) sx = W - 1 - sx;
            if (flip & 2) sy = H - 1 - sy;
            memcpy(px(dst, x, y), cpx(src, sx, sy), 3);
        }
    return 0;
}

/* Rotation about the centre by deg degrees, bilinear, borders replicated. */
static int rotate_any(const dl_image *src, double deg, dl_image *dst, dl_error *err)
{
    int W = src->width, H = src->height;
    if (dl_image_alloc(dst, W, H, err)) return -1;
    double a = deg * M_PI / 180, c = cos(a), s = sin(a), cx = (W - 1) / 2.0, cy = (H - 1) / 2.0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double dx = x - cx, dy = y - cy;
            double sx = c * dx + s * dy + cx, sy = -s * dx + c * dy + cy;
            if (sx < 0) sx = 0;
            if (sy < 0) sy = 0;
            if (sx > W - 1) sx = W - 1;
            if (sy > H - 1) sy = H - 1;
            int x0 = (int)sx, y0 = (int)sy, x1 = x0 + 1 < W ? x0 + 1 : x0, y1 = y0 + 1 < H ? y0 + 1 : y0;
            double fx = sx - x0, fy = sy - y0;
            for (int ch = 0; ch < 3; ch++) {
                double v = (1 - fy) * ((1 - fx) * cpx(src, x0, y0)[ch] + fx * cpx(src, x1, y0)[ch]) +
                           fy * ((1 - fx) * cpx(src, x0, y1)[ch] + fx * cpx(src, x1, y1)[ch]);
                px(dst, x, y)[ch] = clamp_u8(v);
            }
        }
    return 0;
}

/* Compress at quality q in memory, then decode with the engine's decoder
 * (as a real JPEG round trip would). */
static int jpeg_roundtrip(const dl_image *src, int q, dl_image *dst, dl_error *err)
{
    uint8_t *buf = NULL;
    size_t size = 0;
    if (dl_jpeg_encode(src, q, &buf, &size, err)) return -1;
    int rc = dl_image_load_memory(buf, size, dst, err);
    free(buf);
    return rc;
}

/* Dark thin curves (quadratic Bezier strokes) like hairs across the lesion. */
static void draw_hair(dl_image *im, int count, uint64_t seed)
{
    int W = im->width, H = im->height;
    double scale = (W < H ? W : H) / 224.0;
    uint64_t s = seed;
    for (int h = 0; h < count; h++) {
        double x0 = dl_rng_uniform(&s) * W, y0 = dl_rng_uniform(&s) * H;
        double ang = dl_rng_uniform(&s) * 2 * M_PI, len = (0.3 + 0.5 * dl_rng_uniform(&s)) * (W > H ? W : H);
        double x2 = x0 + cos(ang) * len, y2 = y0 + sin(ang) * len;
        double bend = (dl_rng_uniform(&s) - 0.5) * 0.6 * len;
        double x1 = (x0 + x2) / 2 - sin(ang) * bend, y1 = (y0 + y2) / 2 + cos(ang) * bend;
        double rad = (0.6 + 0.8 * dl_rng_uniform(&s)) * scale;
        double col[3] = {25 + 30 * dl_rng_uniform(&s), 18 + 20 * dl_rng_uniform(&s), 12 + 15 * dl_rng_uniform(&s)};
        int steps = (int)(len * 2) + 2;
        for (int t = 0; t <= steps; t++) {
            double u = (double)t / steps, a = (1 - u) * (1 - u), b = 2 * u * (1 - u), c = u * u;
            double cx = a * x0 + b * x1 + c * x2, cy = a * y0 + b * y1 + c * y2;
            int r = (int)ceil(rad + 1);
            for (int yy = (int)cy - r; yy <= (int)cy + r; yy++)
                for (int xx = (int)cx - r; xx <= (int)cx + r; xx++) {
                    if (xx < 0 || yy < 0 || xx >= W || yy >= H) continue;
                    double d = hypot(xx - cx, yy - cy);
                    double alpha = d <= rad ? 0.9 : d <= rad + 1 ? 0.9 * (rad + 1 - d) : 0;
                    if (alpha <= 0) continue;
                    uint8_t *p = px(im, xx, yy);
                    for (int ch = 0; ch < 3; ch++) {
                        double v = p[ch] * (1 - alpha) + col[ch] * alpha;
                        if (v < p[ch]) p[ch] = clamp_u8(v); /* overlapping stamps only darken */
                    }
                }
        }
    }
}

/* Apply perturbation kind at level index l to src; dst is allocated. */
static int perturb(const dl_image *src, int kind, int l, uint64_t seed, dl_image *dst, dl_error *err)
{
    double v = perts[kind].level[l];
    switch (kind) {
    case P_ROT90: return turn(src, l + 1, 0, dst, err);
    case P_ROTATE: return rotate_any(src, v, dst, err);
    case P_FLIP: return turn(src, 0, (int)v, dst, err);
    case P_DOWNSCALE: {
        int w = (int)(src->width / v), h = (int)(src->height / v);
        return dl_image_resize(src, w < 1 ? 1 : w, h < 1 ? 1 : h, dst, err);
    }
    case P_JPEG: return jpeg_roundtrip(src, (int)v, dst, err);
    case P_BLUR: return dl_image_blur(src, v, dst, err);
    default: break;
    }
    if (copy_image(src, dst, err)) return -1;
    int W = dst->width, H = dst->height;
    double mean[3] = {0, 0, 0};
    if (kind == P_CONTRAST) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int ch = 0; ch < 3; ch++) mean[ch] += cpx(dst, x, y)[ch];
        for (int ch = 0; ch < 3; ch++) mean[ch] /= (double)W * H;
    }
    if (kind == P_HAIR) {
        draw_hair(dst, (int)v, seed);
        return 0;
    }
    uint64_t s = seed;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = px(dst, x, y);
            for (int ch = 0; ch < 3; ch++) {
                double q = p[ch];
                switch (kind) {
                case P_BRIGHT_DOWN:
                case P_BRIGHT_UP: q *= v; break;
                case P_CONTRAST: q = mean[ch] + (q - mean[ch]) * v; break;
                case P_GAMMA: q = 255 * pow(q / 255, v); break;
                case P_CAST: q += ch == 0 ? v : ch == 2 ? -v : 0; break;
                case P_NOISE: q += v * dl_rng_normal(&s); break;
                default: break;
                }
                p[ch] = clamp_u8(q);
            }
        }
    return 0;
}

/* ------------------------------------------------------------ run */

#define N_COND (1 + P_COUNT * N_LEVELS) /* condition 0 = clean */

typedef struct {
    const dl_dataset *ds;
    const int *index;
    int K, n_modes;   /* modes: 0 plain, 1 TTA */
    unsigned seed;
    float *probs;     /* [mode][cond][i][K] */
    int n;
    char *sample_dir; /* write perturbed examples of image 0 here (or NULL) */
} rob_job;

static float *slot(rob_job *j, int mode, int cond, int i)
{
    return j->probs + (((size_t)mode * N_COND + cond) * j->n + i) * j->K;
}

static int rob_item(void *user, dl_model *m, int i, dl_error *err)
{
    rob_job *j = user;
    dl_image img = {0};
    if (dl_image_load(j->ds->paths[j->index[i]], &img, err)) return -1;
    int rc = 0;
    for (int c = 0; c < N_COND && rc == 0; c++) {
        dl_image p = {0};
        const dl_image *use = &img;
        if (c > 0) {
            int kind = (c - 1) / N_LEVELS, l = (c - 1) % N_LEVELS;
            uint64_t seed = ((uint64_t)j->seed << 32) ^ ((uint64_t)j->index[i] * 1000003u) ^ (uint64_t)c;
            if ((rc = perturb(&img, kind, l, seed, &p, err)) != 0) break;
            use = &p;
            if (i == 0 && j->sample_dir) {
                gchar *f = g_strdup_printf("%s/%02d_%s_%d.png", j->sample_dir, c, perts[kind].name, l + 1);
                for (char *q = f + strlen(j->sample_dir) + 1; *q; q++)
                    if (!g_ascii_isalnum(*q) && *q != '.' && *q != '_') *q = '_';
                dl_png_write(f, p.pixels, p.width, p.height, p.stride, 3, 8, NULL);
                g_free(f);
            }
        }
        for (int mode = 0; mode < j->n_modes && rc == 0; mode++) {
            dl_result r = {0};
            dl_classify_options o = {.top_k = 1, .tta = mode};
            rc = dl_classify_rgb8(m, use->pixels, use->width, use->height, use->stride, &o, &r, err);
            if (rc == 0) memcpy(slot(j, mode, c, i), r.probs, sizeof(float) * j->K);
            dl_result_free(&r);
        }
        dl_image_free(&p);
    }
    dl_image_free(&img);
    return rc;
}

static void level_label(char *buf, size_t len, int kind, int l)
{
    const pert_def *d = &perts[kind];
    double v = d->level[l];
    if (kind == P_FLIP) snprintf(buf, len, "%s", flip_names[l]);
    else if (kind == P_DOWNSCALE) snprintf(buf, len, "1/%g", v);
    else if (!strcmp(d->unit, "x")) snprintf(buf, len, "x%g", v);
    else if (!strcmp(d->unit, "deg")) snprintf(buf, len, "%g deg", v);
    else if (!*d->unit) snprintf(buf, len, "%g", v);
    else snprintf(buf, len, "%s %g", d->unit, v);
}

int cmd_robustness(int argc, char **argv)
{
    char *cmdline = cli_command_line(argc, argv);
    gchar *split = NULL, *label_col = NULL, *out_dir = NULL, *name = NULL;
    gboolean tta = FALSE, samples = FALSE;
    gint threads = 0, limit = 300, seed = 7;
    gchar *threads_arg = NULL;
    gchar **pos = NULL;
    GOptionEntry entries[] = {
        {"split", 's', 0, G_OPTION_ARG_STRING, &split, "CSV only: rows whose 'split' column equals S", "S"},
        {"label-column", 'l', 0, G_OPTION_ARG_STRING, &label_col, "CSV only: column holding the class code", "C"},
        {"limit", 0, 0, G_OPTION_ARG_INT, &limit, "Use N evenly spaced images (default 300; 0 = all)", "N"},
        {"tta", 0, 0, G_OPTION_ARG_NONE, &tta, "Also run with test-time augmentation (8x slower)", NULL},
        {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "Seed of the random perturbations (default 7)", "N"},
        {"samples", 0, 0, G_OPTION_ARG_NONE, &samples, "Save the perturbed versions of the first image as PNG", NULL},
        {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir, "Output folder (default ./robustness-NAME)", "DIR"},
        {"name", 'n', 0, G_OPTION_ARG_STRING, &name, "Run name (default from the data path)", "NAME"},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Worker threads, 1..256 (default: all cores)", "N"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &pos, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("MODEL DATASET - balanced accuracy under image perturbations");
    g_option_context_set_summary(ctx,
        "Classifies each image clean and under 13 perturbations at 3 strengths\n"
        "(90-degree and arbitrary rotations, flips, brightness, contrast, gamma,\n"
        "colour cast, noise, blur, JPEG, downscaling, synthetic hair) and reports\n"
        "balanced accuracy per condition, with and (--tta) without test-time\n"
        "augmentation. DATASET as for 'evaluate'. " DL_DISCLAIMER);
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens robustness: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        g_free(cmdline);
        return 2;
    }
    g_option_context_free(ctx);
    int trc = cli_parse_threads("robustness", threads_arg, &threads);
    g_free(threads_arg);
    if (trc != 0) {
        g_free(cmdline);
        return 2;
    }
    if (!pos || !pos[0] || !pos[1] || pos[2]) {
        fprintf(stderr, "dermlens robustness: need MODEL and DATASET (see --help)\n");
        g_strfreev(pos);
        g_free(cmdline);
        return 2;
    }
    const char *model_path = pos[0], *data_path = pos[1];
    int rc = 1;
    dl_model *m = cli_load_model(model_path);
    dl_dataset ds = {0};
    rob_job job = {0};
    int *index = NULL, *map = NULL, *labels = NULL;
    char **errors = NULL;
    gchar *dir = NULL, *run_name = NULL;
    int n = 0;
    if (!m) goto out;
    int K = dl_model_num_classes(m);
    dl_dataset_options dopt = {.split = split, .label_column = label_col};
    dl_error err = {0};
    if (dl_dataset_open(data_path, &dopt, &ds, &err) != 0) {
        fprintf(stderr, "dermlens robustness: %s\n", err.message);
        goto out;
    }
    map = g_new(int, ds.n_classes);
    for (int d = 0; d < ds.n_classes; d++) {
        map[d] = -1;
        for (int c = 0; c < K; c++)
            if (!strcmp(ds.class_names[d], dl_model_class_name(m, c))) map[d] = c;
        if (map[d] < 0) {
            fprintf(stderr, "dermlens robustness: data class \"%s\" is not a class of the model "
                            "(see 'dermlens info'; --label-column picks another column)\n", ds.class_names[d]);
            goto out;
        }
    }
    n = limit > 0 && limit < ds.n ? limit : ds.n;
    index = g_new(int, n);
    for (int i = 0; i < n; i++) index[i] = (int)((int64_t)i * ds.n / n);

    if (name) run_name = g_strdup(name);
    else {
        gchar *canon = g_canonicalize_filename(data_path, NULL), *b = g_path_get_basename(canon),
              *dd = g_path_get_dirname(canon), *p = g_path_get_basename(dd);
        run_name = g_file_test(canon, G_FILE_TEST_IS_DIR) ? g_strdup_printf("%s-%s", p, b)
                   : split ? g_strdup_printf("%s-%s", p, split) : g_strdup(p);
        g_free(canon);
        g_free(b);
        g_free(dd);
        g_free(p);
    }
    dir = out_dir ? g_strdup(out_dir) : g_strdup_printf("robustness-%s", run_name);
    if (g_mkdir_with_parents(dir, 0755) != 0) {
        fprintf(stderr, "dermlens robustness: cannot create %s\n", dir);
        goto out;
    }
    job = (rob_job){.ds = &ds, .index = index, .K = K, .n_modes = tta ? 2 : 1, .seed = (unsigned)seed, .n = n};
    size_t total = (size_t)job.n_modes * N_COND * n * K;
    job.probs = g_try_new0(float, total);
    if (!job.probs) {
        fprintf(stderr, "dermlens robustness: out of memory (%zu floats)\n", total);
        goto out;
    }
    gchar *sdir = NULL;
    if (samples) {
        sdir = g_build_filename(dir, "samples", NULL);
        g_mkdir_with_parents(sdir, 0755);
        job.sample_dir = sdir;
    }
    errors = g_new0(char *, n);
    fprintf(stderr, "robustness of %s on %d images, %d conditions%s\n", dl_model_name(m), n, N_COND,
            tta ? ", with and without TTA" : "");
    double t0 = g_get_monotonic_time() / 1e6;
    cli_run_parallel(m, model_path, n, threads, "perturb", rob_item, &job, errors);
    double secs = g_get_monotonic_time() / 1e6 - t0;
    g_free(sdir);

    /* Score on the classes present (restricted, as evaluate does). */
    int *present = g_new0(int, K), n_ok = 0, n_failed = 0;
    for (int i = 0; i < n; i++) {
        if (errors[i]) {
            if (n_failed++ < 5) fprintf(stderr, "dermlens robustness: skipped %s: %s\n", ds.paths[index[i]], errors[i]);
            continue;
        }
        present[map[ds.labels[index[i]]]] = 1;
        n_ok++;
    }
    int P = 0;
    int *keep = g_new(int, K);
    for (int c = 0; c < K; c++)
        if (present[c]) keep[P++] = c;
    g_free(present);
    if (n_ok == 0 || P < 2) {
        fprintf(stderr, "dermlens robustness: need images of at least two classes (have %d scored, %d classes)\n",
                n_ok, P);
        g_free(keep);
        goto out;
    }
    labels = g_new(int, n_ok);
    int *pred = g_new(int, n_ok);
    double bacc[2][N_COND];
    for (int mode = 0; mode < job.n_modes; mode++)
        for (int c = 0; c < N_COND; c++) {
            int k = 0;
            for (int i = 0; i < n; i++) {
                if (errors[i]) continue;
                const float *q = slot(&job, mode, c, i);
                int best = 0;
                for (int p = 1; p < P; p++)
                    if (q[keep[p]] > q[keep[best]]) best = p;
                int y = -1;
                for (int p = 0; p < P; p++)
                    if (keep[p] == map[ds.labels[index[i]]]) y = p;
                labels[k] = y;
                pred[k++] = best;
            }
            bacc[mode][c] = dl_balanced_accuracy(n_ok, P, labels, pred);
        }
    g_free(pred);

    /* ---------------- report */
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "# DermLens robustness: %s\n\n> %s\n\n", run_name, DL_DISCLAIMER);
    g_string_append_printf(s, "| | |\n|---|---|\n| Model | %s (`%s`) |\n| Model sha256 | `%s` |\n",
                           dl_model_name(m), model_path, dl_model_sha256(m));
    g_string_append_printf(s, "| Data | `%s`%s%s%s |\n", data_path, split ? ", split `" : "", split ? split : "",
                           split ? "`" : "");
    g_string_append_printf(s, "| Images | %d", n_ok);
    if (n < ds.n) g_string_append_printf(s, " (evenly spaced subset of %d)", ds.n);
    g_string_append(s, " |\n");
    if (n_failed) g_string_append_printf(s, "| Skipped (unreadable) | %d |\n", n_failed);
    g_string_append_printf(s, "| Classes scored | %d%s |\n", P,
                           P < K ? " (probabilities restricted to the data's classes and renormalised)" : "");
    g_string_append_printf(s, "| Perturbation seed | %d |\n| Time | %.0f s |\n| Command | `%s` |\n\n", seed, secs, cmdline);
    g_string_append(s, "Balanced accuracy (mean per-class recall). Perturbations are applied to the decoded image at "
                       "its own resolution, before the model's resizing. Arbitrary rotations replicate the border "
                       "into the corners; downscaling is undone by the model's own resize; hair = random dark "
                       "quadratic curves.\n\n");
    for (int mode = 0; mode < job.n_modes; mode++) {
        g_string_append_printf(s, "## %s\n\nClean: **%.3f**\n\n| perturbation | level 1 | level 2 | level 3 | worst drop |\n"
                                  "|---|---|---|---|---:|\n",
                               mode ? "With test-time augmentation (8 flips/turns averaged)" : "Without test-time augmentation",
                               bacc[mode][0]);
        for (int k = 0; k < P_COUNT; k++) {
            g_string_append_printf(s, "| %s |", perts[k].name);
            double worst = 0;
            for (int l = 0; l < N_LEVELS; l++) {
                char lb[48];
                level_label(lb, sizeof lb, k, l);
                double v = bacc[mode][1 + k * N_LEVELS + l];
                g_string_append_printf(s, " %.3f (%s) |", v, lb);
                if (bacc[mode][0] - v > worst) worst = bacc[mode][0] - v;
            }
            g_string_append_printf(s, " %.3f |\n", worst);
        }
        g_string_append_c(s, '\n');
    }
    if (job.n_modes == 2) {
        g_string_append(s, "## TTA gain (with minus without)\n\n| perturbation | level 1 | level 2 | level 3 |\n|---|---:|---:|---:|\n");
        g_string_append_printf(s, "| clean | %+.3f | | |\n", bacc[1][0] - bacc[0][0]);
        for (int k = 0; k < P_COUNT; k++) {
            g_string_append_printf(s, "| %s |", perts[k].name);
            for (int l = 0; l < N_LEVELS; l++) {
                int c = 1 + k * N_LEVELS + l;
                g_string_append_printf(s, " %+.3f |", bacc[1][c] - bacc[0][c]);
            }
            g_string_append_c(s, '\n');
        }
        g_string_append_c(s, '\n');
    }

    int plotted = 0;
    if (plot_available()) {
        const char *names[P_COUNT];
        for (int k = 0; k < P_COUNT; k++) names[k] = perts[k].name;
        const char *ticks[N_LEVELS + 1] = {"clean", "level 1", "level 2", "level 3"};
        const char *ptitles[2] = {"without TTA", "with TTA (8 views)"};
        double *y = g_new(double, (size_t)job.n_modes * P_COUNT * (N_LEVELS + 1));
        double ymin = 1, ymax = 0;
        for (int mode = 0; mode < job.n_modes; mode++)
            for (int k = 0; k < P_COUNT; k++)
                for (int x = 0; x <= N_LEVELS; x++) {
                    double v = x == 0 ? bacc[mode][0] : bacc[mode][1 + k * N_LEVELS + x - 1];
                    y[((size_t)mode * P_COUNT + k) * (N_LEVELS + 1) + x] = v;
                    if (v < ymin) ymin = v;
                    if (v > ymax) ymax = v;
                }
        ymin = floor(ymin * 10 - 0.5) / 10;
        ymax = ceil(ymax * 10 + 0.5) / 10;
        if (ymin < 0) ymin = 0;
        if (ymax > 1) ymax = 1;
        gchar *title = g_strdup_printf("Balanced accuracy under perturbations: %s, %s (n=%d)", dl_model_name(m),
                                       run_name, n_ok);
        gchar *pp = g_build_filename(dir, "robustness.png", NULL);
        char perr[512];
        if (plot_lines(pp, title, job.n_modes, ptitles, "perturbation strength (levels in report)", "balanced accuracy",
                       P_COUNT, names, N_LEVELS + 1, ticks, y, ymin, ymax, perr, sizeof perr) != 0)
            fprintf(stderr, "dermlens robustness: %s\n", perr);
        else plotted = 1;
        g_free(pp);
        g_free(title);
        g_free(y);
    } else {
        fprintf(stderr, "dermlens robustness: built without cairo, plot skipped\n");
    }
    if (plotted) g_string_append(s, "![balanced accuracy against perturbation strength](robustness.png)\n\n");
    g_string_append_printf(s, "---\n%s\n", DL_DISCLAIMER);
    gchar *rp = g_build_filename(dir, "robustness.md", NULL);
    if (!g_file_set_contents(rp, s->str, -1, NULL)) fprintf(stderr, "dermlens robustness: cannot write %s\n", rp);
    g_free(rp);
    g_string_free(s, TRUE);

    /* JSON with the same numbers */
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", run_name);
    cJSON_AddStringToObject(root, "command", cmdline);
    cJSON_AddStringToObject(root, "model_sha256", dl_model_sha256(m));
    cJSON_AddNumberToObject(root, "images", n_ok);
    cJSON_AddNumberToObject(root, "classes", P);
    cJSON *modes = cJSON_AddArrayToObject(root, "results");
    for (int mode = 0; mode < job.n_modes; mode++) {
        cJSON *mo = cJSON_CreateObject();
        cJSON_AddBoolToObject(mo, "tta", mode);
        cJSON_AddNumberToObject(mo, "clean", bacc[mode][0]);
        cJSON *arr = cJSON_AddArrayToObject(mo, "perturbations");
        for (int k = 0; k < P_COUNT; k++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", perts[k].name);
            cJSON *lv = cJSON_AddArrayToObject(o, "levels");
            cJSON *ba = cJSON_AddArrayToObject(o, "balanced_accuracy");
            for (int l = 0; l < N_LEVELS; l++) {
                char lb[48];
                level_label(lb, sizeof lb, k, l);
                cJSON_AddItemToArray(lv, cJSON_CreateString(lb));
                cJSON_AddItemToArray(ba, cJSON_CreateNumber(bacc[mode][1 + k * N_LEVELS + l]));
            }
            cJSON_AddItemToArray(arr, o);
        }
        cJSON_AddItemToArray(modes, mo);
    }
    char *txt = cJSON_Print(root);
    gchar *jp = g_build_filename(dir, "robustness.json", NULL);
    g_file_set_contents(jp, txt, -1, NULL);
    g_free(jp);
    free(txt);
    cJSON_Delete(root);

    printf("%s: balanced accuracy clean %.3f%s\n", run_name, bacc[0][0], "");
    for (int k = 0; k < P_COUNT; k++) {
        printf("  %-20s", perts[k].name);
        for (int l = 0; l < N_LEVELS; l++) printf(" %.3f", bacc[0][1 + k * N_LEVELS + l]);
        if (job.n_modes == 2) {
            printf("   TTA:");
            for (int l = 0; l < N_LEVELS; l++) printf(" %.3f", bacc[1][1 + k * N_LEVELS + l]);
        }
        printf("\n");
    }
    if (job.n_modes == 2) printf("  clean with TTA      %.3f\n", bacc[1][0]);
    printf("  report: %s/robustness.md\n(%s)\n", dir, DL_DISCLAIMER);
    g_free(keep);
    rc = 0;

out:
    if (errors)
        for (int i = 0; i < n; i++) g_free(errors[i]);
    g_free(errors);
    g_free(job.probs);
    g_free(index);
    g_free(map);
    g_free(labels);
    g_free(dir);
    g_free(run_name);
    if (ds.n) dl_dataset_free(&ds);
    if (m) dl_model_free(m);
    g_strfreev(pos);
    g_free(split);
    g_free(label_col);
    g_free(out_dir);
    g_free(name);
    g_free(cmdline);
    return rc;
}
