/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens explain: saliency overlay for one image, and --evaluate: the
 * faithfulness of every method on a labelled image folder (deletion /
 * insertion AUCs against random and centre baselines; the model
 * randomisation sanity check of Adebayo et al. 2018). */
#include "cli.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef DL_HAVE_CAIRO
#include <cairo.h>
#endif

/* ------------------------------------------------------------ colour map */

/* A perceptual map generated here: a path in OKLab whose lightness rises
 * linearly (dark violet -> red -> orange -> pale yellow, as inferno), so the
 * order of values is readable in grey print and by colour-blind readers.
 * Out-of-gamut colours lose chroma (bisection) rather than clip. */
static double srgb_gamma(double c)
{
    return c <= 0.0031308 ? 12.92 * c : 1.055 * pow(c, 1 / 2.4) - 0.055;
}

static int oklab_to_srgb(double L, double a, double b, double rgb[3])
{
    double l_ = L + 0.3963377774 * a + 0.2158037573 * b;
    double m_ = L - 0.1055613458 * a - 0.0638541728 * b;
    double s_ = L - 0.0894841775 * a - 1.2914855480 * b;
    double l = l_ * l_ * l_, m = m_ * m_ * m_, s = s_ * s_ * s_;
    double lin[3] = {4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s,
                     -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s,
                     -0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s};
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        if (lin[i] < -1e-6 || lin[i] > 1 + 1e-6) ok = 0;
        rgb[i] = srgb_gamma(lin[i] < 0 ? 0 : lin[i] > 1 ? 1 : lin[i]);
    }
    return ok;
}

static uint8_t g_lut[256][3];

static void build_colormap(void)
{
    for (int i = 0; i < 256; i++) {
        double t = i / 255.0;
        double L = 0.20 + 0.72 * t;
        double hue = (285.0 + 180.0 * t) * M_PI / 180.0; /* violet -> red -> yellow */
        double chroma = 0.06 + 0.12 * t + 0.06 * sin(M_PI * t);
        double rgb[3], lo = 0, hi = chroma;
        if (!oklab_to_srgb(L, chroma * cos(hue), chroma * sin(hue), rgb)) {
            for (int it = 0; it < 30; it++) {
                double c = 0.5 * (lo + hi);
                if (oklab_to_srgb(L, c * cos(hue), c * sin(hue), rgb)) lo = c;
                else hi = c;
            }
            oklab_to_srgb(L, lo * cos(hue), lo * sin(hue), rgb);
        }
        for (int k = 0; k < 3; k++) g_lut[i][k] = (uint8_t)lround(rgb[k] * 255.0);
    }
}

/* ------------------------------------------------------------ overlay */

static void resample_map(const float *src, int sw, int sh, float *dst, int dw, int dh)
{
    for (int y = 0; y < dh; y++) {
        double sy = (y + 0.5) * sh / dh - 0.5;
        sy = sy < 0 ? 0 : sy > sh - 1 ? sh - 1 : sy;
        int y0 = (int)sy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
        float wy = (float)(sy - y0);
        for (int x = 0; x < dw; x++) {
            double sx = (x + 0.5) * sw / dw - 0.5;
            sx = sx < 0 ? 0 : sx > sw - 1 ? sw - 1 : sx;
            int x0 = (int)sx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
            float wx = (float)(sx - x0);
            const float *r0 = src + (size_t)y0 * sw, *r1 = src + (size_t)y1 * sw;
            float a = r0[x0] + (r0[x1] - r0[x0]) * wx, b = r1[x0] + (r1[x1] - r1[x0]) * wx;
            dst[(size_t)y * dw + x] = a + (b - a) * wy;
        }
    }
}

static float smoothstep(float e0, float e1, float x)
{
    float t = (x - e0) / (e1 - e0);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return t * t * (3 - 2 * t);
}

#ifdef DL_HAVE_CAIRO
static void draw_text(cairo_t *cr, double x, double y, double size, const char *s, int right, double max_w)
{
    cairo_text_extents_t ext;
    for (;;) { /* shrink until it fits the width */
        cairo_set_font_size(cr, size);
        cairo_text_extents(cr, s, &ext);
        if (ext.x_advance <= max_w || size < 6) break;
        size *= 0.92;
    }
    cairo_move_to(cr, right ? x - ext.x_advance : x, y);
    cairo_show_text(cr, s);
}
#endif

/* Compose image + overlay + legend panel into a new RGB8 buffer. */
static uint8_t *render_overlay(const dl_image *img, const float *map, float alpha, const char *line1,
                               const char *line2, int *ow, int *oh)
{
    /* small pictures (HAM10000 is 200x150) are enlarged so the caption fits */
    int W = img->width, H = img->height;
    double scale = W < 640 ? 640.0 / W : 1.0;
    int Wd = (int)lround(W * scale), Hd = (int)lround(H * scale);
    dl_image big = {0};
    const dl_image *show = img;
    dl_error err = {0};
    if (scale > 1.0) {
        if (dl_image_resize(img, Wd, Hd, &big, &err)) return NULL;
        show = &big;
    }
    float *m = malloc(sizeof(float) * (size_t)Wd * Hd);
    double fs = Wd / 640.0 * 15.0; /* font size */
    int ph = (int)lround(fs * 5.2);
    uint8_t *out = calloc((size_t)Wd * (Hd + ph), 3);
    if (!m || !out) {
        free(m); free(out); dl_image_free(&big);
        return NULL;
    }
    resample_map(map, W, H, m, Wd, Hd);
    for (int y = 0; y < Hd; y++)
        for (int x = 0; x < Wd; x++) {
            float s = m[(size_t)y * Wd + x];
            s = s < 0 ? 0 : s > 1 ? 1 : s;
            float a = alpha * smoothstep(0.05f, 0.6f, s); /* faint where there is no evidence */
            const uint8_t *c = g_lut[(int)lroundf(s * 255.f)];
            const uint8_t *p = show->pixels + (size_t)y * show->stride + (size_t)x * 3;
            uint8_t *o = out + ((size_t)y * Wd + x) * 3;
            for (int k = 0; k < 3; k++) o[k] = (uint8_t)lroundf(p[k] * (1 - a) + c[k] * a);
        }
    /* panel: dark background, legend bar, caption */
    for (size_t i = (size_t)Wd * Hd * 3; i < (size_t)Wd * (Hd + ph) * 3; i++) out[i] = 28;
    int bx0 = (int)lround(fs * 3.5), bx1 = Wd - bx0, by0 = Hd + (int)lround(fs * 0.6),
        by1 = by0 + (int)lround(fs * 0.9);
    for (int y = by0; y < by1; y++)
        for (int x = bx0; x < bx1; x++) {
            /* the colours at full strength (the overlay fades the low end) */
            float s = (float)(x - bx0) / (bx1 - bx0 - 1);
            memcpy(out + ((size_t)y * Wd + x) * 3, g_lut[(int)lroundf(s * 255.f)], 3);
        }
#ifdef DL_HAVE_CAIRO
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Wd, Hd + ph);
    if (cairo_surface_status(surf) == CAIRO_STATUS_SUCCESS) {
        unsigned char *d = cairo_image_surface_get_data(surf);
        int cs = cairo_image_surface_get_stride(surf);
        cairo_surface_flush(surf);
        for (int y = 0; y < Hd + ph; y++)
            for (int x = 0; x < Wd; x++) {
                const uint8_t *o = out + ((size_t)y * Wd + x) * 3;
                ((uint32_t *)(d + (size_t)y * cs))[x] = (uint32_t)o[0] << 16 | (uint32_t)o[1] << 8 | o[2];
            }
        cairo_surface_mark_dirty(surf);
        cairo_t *cr = cairo_create(surf);
        cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
        cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
        draw_text(cr, bx0 - fs * 0.4, by1 - fs * 0.05, fs * 0.85, "low", 1, Wd);
        draw_text(cr, bx1 + fs * 0.4, by1 - fs * 0.05, fs * 0.85, "high", 0, Wd);
        draw_text(cr, fs * 0.6, by1 + fs * 1.6, fs, line1, 0, Wd - fs * 1.2);
        cairo_set_source_rgb(cr, 1.0, 0.82, 0.45);
        draw_text(cr, fs * 0.6, by1 + fs * 3.2, fs * 0.9, line2, 0, Wd - fs * 1.2);
        cairo_destroy(cr);
        cairo_surface_flush(surf);
        for (int y = 0; y < Hd + ph; y++)
            for (int x = 0; x < Wd; x++) {
                uint32_t v = ((uint32_t *)(d + (size_t)y * cs))[x];
                uint8_t *o = out + ((size_t)y * Wd + x) * 3;
                o[0] = (uint8_t)(v >> 16);
                o[1] = (uint8_t)(v >> 8);
                o[2] = (uint8_t)v;
            }
    }
    cairo_surface_destroy(surf);
#else
    (void)line1;
    (void)line2;
#endif
    free(m);
    dl_image_free(&big);
    *ow = Wd;
    *oh = Hd + ph;
    return out;
}

static const char *method_title(int m)
{
    static const char *t[] = {"Grad-CAM", "Grad-CAM++", "HiResCAM", "LayerCAM", "Score-CAM", "Occlusion"};
    return m >= 0 && m <= DL_SALIENCY_OCCLUSION ? t[m] : "?";
}

static int parse_class(dl_model *m, const char *s)
{
    int K = dl_model_num_classes(m);
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end) return v >= 0 && v < K ? (int)v : -1;
    for (int c = 0; c < K; c++)
        if (!g_ascii_strcasecmp(s, dl_model_class_name(m, c)) || !g_ascii_strcasecmp(s, dl_model_class_long_name(m, c)))
            return c;
    return -1;
}

static void list_layers(dl_model *m)
{
    const dl_graph *g = &m->graph;
    int def = dl_graph_last_spatial_conv(g);
    printf("Spatial layers usable with --layer (name prefixes are accepted):\n");
    for (int i = 1; i < g->output; i++) {
        const dl_node *n = &g->nodes[i];
        if (n->h * n->w <= 1 || (n->op != DL_OP_CONV2D && n->op != DL_OP_ADD)) continue;
        printf("  %3d %-8s %4dx%-4d x%5d  %s%s\n", i, dl_op_name(n->op), n->h, n->w, n->c, n->name,
               i == def ? "   (default)" : "");
    }
}

/* ------------------------------------------------------------ evaluate */

typedef struct {
    dl_model *m;
    dl_exec ex;
    int B, W, H;
    float *probs;
} prober;

static int prober_init(prober *p, dl_model *m, int batch, dl_error *err)
{
    memset(p, 0, sizeof *p);
    p->m = m;
    p->B = batch;
    p->W = m->pre.width;
    p->H = m->pre.height;
    p->probs = malloc(sizeof(float) * m->num_classes);
    if (!p->probs) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    return dl_exec_init(&p->ex, &m->graph, batch, err);
}

static void prober_free(prober *p)
{
    dl_exec_free(&p->ex);
    free(p->probs);
}

void dl_softmax_temperature(const float *logits, int n, float t, float *probs);

/* p(cls) for n network-size RGB8 images. */
static int probe(prober *p, uint8_t *const *imgs, int n, int cls, float *out, dl_error *err)
{
    size_t in = (size_t)p->W * p->H * 3;
    int K = p->m->num_classes, o = p->m->graph.output;
    for (int s = 0; s < n; s += p->B) {
        int k = n - s < p->B ? n - s : p->B;
        for (int b = 0; b < k; b++)
            if (dl_preprocess_rgb8(&p->m->pre, imgs[s + b], p->W, p->H, (size_t)p->W * 3, p->ex.act[0] + b * in, err))
                return -1;
        if (dl_exec_forward(&p->ex, p->ex.act[0], o, err)) return -1;
        for (int b = 0; b < k; b++) {
            dl_softmax_temperature(p->ex.act[o] + (size_t)b * K, K, p->m->temperature, p->probs);
            out[s + b] = p->probs[cls];
        }
    }
    return 0;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double rng_unif(uint64_t *s)
{
    return (rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(uint64_t *s)
{
    double u = rng_unif(s), v = rng_unif(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

/* Gaussian blur of an RGB8 image (the "removed" pixels' replacement). */
static void blur_rgb(const uint8_t *src, uint8_t *dst, int w, int h, double sigma)
{
    int r = (int)ceil(3 * sigma);
    double *k = malloc(sizeof(double) * (2 * r + 1)), s = 0;
    float *tmp = malloc(sizeof(float) * (size_t)w * h * 3);
    for (int i = -r; i <= r; i++) s += k[i + r] = exp(-(double)i * i / (2 * sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] /= s;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double a = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                    a += k[i + r] * src[((size_t)y * w + xx) * 3 + c];
                }
                tmp[((size_t)y * w + x) * 3 + c] = (float)a;
            }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double a = 0;
                for (int i = -r; i <= r; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                    a += k[i + r] * tmp[((size_t)yy * w + x) * 3 + c];
                }
                dst[((size_t)y * w + x) * 3 + c] = (uint8_t)lround(a < 0 ? 0 : a > 255 ? 255 : a);
            }
    free(k);
    free(tmp);
}

static const float *g_sort_key;
static int cmp_desc(const void *a, const void *b)
{
    float x = g_sort_key[*(const int *)a], y = g_sort_key[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int *)a - *(const int *)b);
}

/* Pixel order, most salient first; ties (e.g. Grad-CAM's zero plateau) are
 * broken by a fixed random jitter so they are removed in no spatial order. */
static void saliency_order(const float *map, int n, uint64_t seed, int *order, float *key)
{
    uint64_t s = seed | 1;
    for (int i = 0; i < n; i++) {
        order[i] = i;
        key[i] = map[i] + (float)(rng_unif(&s) * 1e-6);
    }
    g_sort_key = key;
    qsort(order, n, sizeof(int), cmp_desc);
}

/* Deletion and insertion AUCs (trapezoid over the removed fraction 0..1). */
static int del_ins_auc(prober *p, const uint8_t *img, const uint8_t *blur, const int *order, int steps, int cls,
                       uint8_t **bufs, float *probs, double *del, double *ins, dl_error *err)
{
    int n = p->W * p->H;
    for (int k = 0; k <= steps; k++) {
        int cut = (int)((long)n * k / steps);
        uint8_t *d = bufs[k], *in = bufs[steps + 1 + k];
        memcpy(d, img, (size_t)n * 3);
        memcpy(in, blur, (size_t)n * 3);
        for (int i = 0; i < cut; i++) {
            int q = order[i];
            memcpy(d + (size_t)q * 3, blur + (size_t)q * 3, 3);
            memcpy(in + (size_t)q * 3, img + (size_t)q * 3, 3);
        }
    }
    if (probe(p, bufs, 2 * (steps + 1), cls, probs, err)) return -1;
    double a = 0, b = 0;
    for (int k = 0; k < steps; k++) {
        a += 0.5 * (probs[k] + probs[k + 1]) / steps;
        b += 0.5 * (probs[steps + 1 + k] + probs[steps + 2 + k]) / steps;
    }
    *del = a;
    *ins = b;
    return 0;
}

static void ranks(const float *v, int n, int *order, float *key, double *r)
{
    for (int i = 0; i < n; i++) { order[i] = i; key[i] = v[i]; }
    g_sort_key = key;
    qsort(order, n, sizeof(int), cmp_desc);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && key[order[j + 1]] == key[order[i]]) j++;
        double rank = 0.5 * (i + j); /* ties share the mean rank */
        for (int k = i; k <= j; k++) r[order[k]] = rank;
        i = j + 1;
    }
}

/* Spearman rank correlation; NAN when either map is constant. */
static double spearman(const float *a, const float *b, int n, int *order, float *key, double *ra, double *rb)
{
    ranks(a, n, order, key, ra);
    ranks(b, n, order, key, rb);
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) { ma += ra[i]; mb += rb[i]; }
    ma /= n;
    mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* Re-initialise the weights of the last `layers` weighted nodes (output
 * side) with Gaussian values of each tensor's own standard deviation. */
static int randomise_top(dl_model *m, int layers, char *names, size_t names_len)
{
    dl_graph *g = &m->graph;
    uint64_t s = 0x5eed5eedULL;
    int done = 0;
    names[0] = 0;
    for (int i = g->output; i > 0 && done < layers; i--) {
        dl_node *n = &g->nodes[i];
        if (n->weight < 0) continue;
        int ts[2] = {n->weight, n->bias};
        for (int k = 0; k < 2; k++) {
            if (ts[k] < 0) continue;
            dl_tensor *t = &g->tensors[ts[k]];
            double mean = 0, var = 0;
            for (size_t j = 0; j < t->count; j++) mean += t->data[j];
            mean /= t->count;
            for (size_t j = 0; j < t->count; j++) var += (t->data[j] - mean) * (t->data[j] - mean);
            double sd = sqrt(var / t->count);
            for (size_t j = 0; j < t->count; j++) t->data[j] = (float)(sd * rng_normal(&s));
        }
        const char *semi = strchr(n->name, ';');
        size_t len = strlen(names);
        snprintf(names + len, names_len - len, "%s%.*s", done ? ", " : "", semi ? (int)(semi - n->name) : (int)strlen(n->name), n->name);
        done++;
    }
    return done;
}

#define N_BASE 2 /* random, centre */
#define MAX_ROWS (DL_SALIENCY_OCCLUSION + 1 + N_BASE)

typedef struct {
    double del, ins, del2, ins2, rho, secs;
    int n, n_rho, n_rho_undef;
} row_stats;

static int evaluate(const char *dir, const char *model_path, int limit, const char *methods_arg, int steps,
                    int rand_layers, const char *report_path, const char *json_path, int argc, char **argv)
{
    dl_model *m = cli_load_model(model_path);
    if (!m) return 1;
    dl_model *mr = cli_load_model(model_path);
    if (!mr) { dl_model_free(m); return 1; }
    char rnames[1024];
    int nr = randomise_top(mr, rand_layers, rnames, sizeof rnames);

    int methods[DL_SALIENCY_OCCLUSION + 1], n_methods = 0;
    gchar **parts = g_strsplit(methods_arg, ",", -1);
    for (int i = 0; parts[i]; i++) {
        if (!*parts[i]) continue;
        int mi = dl_saliency_method_from_name(g_strstrip(parts[i]));
        if (mi < 0) {
            fprintf(stderr, "dermlens explain: unknown method '%s' in --methods\n", parts[i]);
            g_strfreev(parts);
            dl_model_free(m); dl_model_free(mr);
            return 2;
        }
        int dup = 0;
        for (int j = 0; j < n_methods; j++) dup |= methods[j] == mi;
        if (!dup && n_methods <= DL_SALIENCY_OCCLUSION) methods[n_methods++] = mi;
    }
    g_strfreev(parts);

    dl_error err = {0};
    dl_dataset ds;
    if (dl_dataset_open(dir, NULL, &ds, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        dl_model_free(m); dl_model_free(mr);
        return 1;
    }
    /* deterministic class-balanced pick: round-robin over classes, each in
     * dataset (sorted path) order */
    int *pick = malloc(sizeof(int) * ds.n), n_pick = 0;
    int *next = calloc(ds.n_classes, sizeof(int));
    if (limit <= 0 || limit > ds.n) limit = ds.n;
    while (n_pick < limit) {
        int added = 0;
        for (int c = 0; c < ds.n_classes && n_pick < limit; c++) {
            while (next[c] < ds.n && ds.labels[next[c]] != c) next[c]++;
            if (next[c] < ds.n) { pick[n_pick++] = next[c]++; added = 1; }
        }
        if (!added) break;
    }
    free(next);

    const int W = m->pre.width, H = m->pre.height, N = W * H;
    const double blur_sigma = 0.05 * (W < H ? W : H);
    prober pr;
    if (prober_init(&pr, m, 8, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        return 1;
    }
    uint8_t **bufs = malloc(sizeof(uint8_t *) * 2 * (steps + 1));
    for (int k = 0; k < 2 * (steps + 1); k++) bufs[k] = malloc((size_t)N * 3);
    float *probs = malloc(sizeof(float) * 2 * (steps + 1));
    uint8_t *blur = malloc((size_t)N * 3);
    int *order = malloc(sizeof(int) * N);
    float *key = malloc(sizeof(float) * N), *basemap = malloc(sizeof(float) * N);
    double *ra = malloc(sizeof(double) * N), *rb = malloc(sizeof(double) * N);
    row_stats st[MAX_ROWS];
    memset(st, 0, sizeof st);
    int n_done = 0, n_fail = 0;
    for (int ii = 0; ii < n_pick; ii++) {
        const char *path = ds.paths[pick[ii]];
        dl_image src = {0}, net = {0};
        if (dl_image_load(path, &src, &err)) {
            fprintf(stderr, "\ndermlens explain: %s: %s\n", path, err.message);
            n_fail++;
            continue;
        }
        /* the picture as the network sees it (crop, then squash), so that
         * maps, removal and probabilities share one pixel grid */
        dl_image view = src;
        if (!strcmp(m->pre.resize, "center_crop")) {
            int side = src.width < src.height ? src.width : src.height;
            view.pixels = src.pixels + (size_t)((src.height - side) / 2) * src.stride + (size_t)((src.width - side) / 2) * 3;
            view.width = view.height = side;
        }
        if (dl_image_resize(&view, W, H, &net, &err)) {
            fprintf(stderr, "\ndermlens explain: %s: %s\n", path, err.message);
            dl_image_free(&src);
            n_fail++;
            continue;
        }
        dl_image_free(&src);
        uint8_t *img = malloc((size_t)N * 3);
        for (int y = 0; y < H; y++) memcpy(img + (size_t)y * W * 3, net.pixels + (size_t)y * net.stride, (size_t)W * 3);
        dl_image_free(&net);
        blur_rgb(img, blur, W, H, blur_sigma);
        dl_result res;
        if (dl_classify_rgb8(m, img, W, H, (size_t)W * 3, NULL, &res, &err)) {
            fprintf(stderr, "\ndermlens explain: %s: %s\n", path, err.message);
            free(img);
            n_fail++;
            continue;
        }
        int cls = res.top_index[0];
        dl_result_free(&res);
        uint64_t seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)ii * 0x100000001b3ULL);
        for (int r = 0; r < n_methods + N_BASE; r++) {
            int row = r < n_methods ? methods[r] : DL_SALIENCY_OCCLUSION + 1 + (r - n_methods);
            float *map = NULL;
            clock_t c0 = clock();
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            (void)c0;
            if (r < n_methods) {
                dl_explain_options eo = {.method = methods[r], .class_index = cls};
                if (dl_explain_rgb8(m, img, W, H, (size_t)W * 3, &eo, &map, NULL, &err)) {
                    fprintf(stderr, "\ndermlens explain: %s: %s: %s\n", path, dl_saliency_method_name(methods[r]), err.message);
                    continue;
                }
            } else if (r == n_methods) {
                /* random baseline at Grad-CAM's resolution (7x7 for a 224 input):
                 * as coarse as the CAMs, so the comparison is not about blob size */
                int gw = 7, gh = 7;
                float coarse[49];
                uint64_t s = seed ^ 0xabcdefULL;
                for (int i = 0; i < gw * gh; i++) coarse[i] = (float)rng_unif(&s);
                map = malloc(sizeof(float) * N);
                resample_map(coarse, gw, gh, map, W, H);
            } else {
                map = malloc(sizeof(float) * N);
                double sg = 0.25 * (W < H ? W : H);
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        double dx = x + 0.5 - W / 2.0, dy = y + 0.5 - H / 2.0;
                        map[(size_t)y * W + x] = (float)exp(-(dx * dx + dy * dy) / (2 * sg * sg));
                    }
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
            saliency_order(map, N, seed, order, key);
            double del, ins;
            if (del_ins_auc(&pr, img, blur, order, steps, cls, bufs, probs, &del, &ins, &err)) {
                fprintf(stderr, "\ndermlens explain: %s: %s\n", path, err.message);
                free(map);
                continue;
            }
            row_stats *s = &st[row];
            s->del += del; s->ins += ins; s->del2 += del * del; s->ins2 += ins * ins;
            s->secs += secs;
            s->n++;
            if (r < n_methods) {
                /* sanity check: the same method on the randomised model */
                float *rmap = NULL;
                dl_explain_options eo = {.method = methods[r], .class_index = cls};
                if (dl_explain_rgb8(mr, img, W, H, (size_t)W * 3, &eo, &rmap, NULL, &err) == 0) {
                    memcpy(basemap, rmap, sizeof(float) * N);
                    double rho = spearman(map, basemap, N, order, key, ra, rb);
                    if (isnan(rho)) s->n_rho_undef++;
                    else { s->rho += rho; s->n_rho++; }
                }
                free(rmap);
            }
            free(map);
        }
        free(img);
        n_done++;
        if (isatty(2)) cli_progress(NULL, (ii + 1.0) / n_pick, "faithfulness");
        else fprintf(stderr, "[%d/%d] %s\n", ii + 1, n_pick, path); /* logs show where a long run is */
    }

    /* report */
    GString *md = g_string_new(NULL);
    char *cmd = cli_command_line(argc, argv);
    g_string_append_printf(md, "## Saliency faithfulness\n\n");
    g_string_append_printf(md, "- command: `%s`\n", cmd);
    g_string_append_printf(md, "- model: %s (sha256 %.16s...)\n", dl_model_name(m), dl_model_sha256(m));
    g_string_append_printf(md, "- data: %s, %d images (class-balanced round-robin pick of %d; %d unreadable)\n", dir,
                           n_done, n_pick, n_fail);
    g_string_append_printf(md, "- class explained: the model's top class on each image; score = its calibrated probability\n");
    g_string_append_printf(md, "- deletion: the most salient pixels first are replaced by a Gaussian blur of the image "
                               "(sigma %.1f px at the %dx%d network input), %d steps; insertion: the most salient "
                               "pixels first are restored into the blurred image. AUC = trapezoid over the fraction "
                               "0..1. Lower deletion / higher insertion = more faithful.\n",
                           blur_sigma, W, H, steps);
    g_string_append_printf(md, "- baselines: *random* = uniform noise on a 7x7 grid upsampled bilinearly; *centre* = "
                               "Gaussian centred on the image (sigma = 0.25 x side)\n");
    g_string_append_printf(md, "- sanity check (Adebayo et al. 2018): Spearman rank correlation between the map of the "
                               "trained model and of a copy whose top %d weighted layers (%s) were re-initialised with "
                               "Gaussian values of each tensor's own standard deviation; near 0 = the map depends on "
                               "the learned weights (good), near 1 = it does not.\n\n", nr, rnames);
    g_string_append_printf(md, "| method | deletion AUC (lower better) | insertion AUC (higher better) | insertion - deletion | "
                               "rank corr. vs randomised model | seconds / map |\n|---|---|---|---|---|---|\n");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "command", cmd);
    cJSON_AddStringToObject(root, "model", dl_model_name(m));
    cJSON_AddStringToObject(root, "model_sha256", dl_model_sha256(m));
    cJSON_AddStringToObject(root, "data", dir);
    cJSON_AddNumberToObject(root, "images", n_done);
    cJSON_AddNumberToObject(root, "steps", steps);
    cJSON_AddNumberToObject(root, "blur_sigma_px", blur_sigma);
    cJSON_AddStringToObject(root, "randomised_layers", rnames);
    cJSON *rows = cJSON_AddArrayToObject(root, "methods");
    for (int r = 0; r < n_methods + N_BASE; r++) {
        int row = r < n_methods ? methods[r] : DL_SALIENCY_OCCLUSION + 1 + (r - n_methods);
        const char *name = r < n_methods ? method_title(methods[r]) : r == n_methods ? "random (baseline)" : "centre Gaussian (baseline)";
        row_stats *s = &st[row];
        if (!s->n) continue;
        double md_ = s->del / s->n, mi = s->ins / s->n;
        double sed = s->n > 1 ? sqrt(fmax(0, s->del2 / s->n - md_ * md_) / (s->n - 1)) : 0;
        double sei = s->n > 1 ? sqrt(fmax(0, s->ins2 / s->n - mi * mi) / (s->n - 1)) : 0;
        char rho[96] = "-";
        if (r < n_methods) {
            if (s->n_rho)
                snprintf(rho, sizeof rho, "%.3f%s", s->rho / s->n_rho, s->n_rho_undef ? "" : "");
            if (s->n_rho_undef)
                snprintf(rho + strlen(rho), sizeof rho - strlen(rho), " (%d flat map%s)", s->n_rho_undef, s->n_rho_undef > 1 ? "s" : "");
        }
        g_string_append_printf(md, "| %s | %.4f ± %.4f | %.4f ± %.4f | %.4f | %s | %.2f |\n", name, md_, sed, mi, sei,
                               mi - md_, rho, s->secs / s->n);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", r < n_methods ? dl_saliency_method_name(methods[r]) : r == n_methods ? "random" : "centre");
        cJSON_AddNumberToObject(o, "n", s->n);
        cJSON_AddNumberToObject(o, "deletion_auc", md_);
        cJSON_AddNumberToObject(o, "deletion_auc_se", sed);
        cJSON_AddNumberToObject(o, "insertion_auc", mi);
        cJSON_AddNumberToObject(o, "insertion_auc_se", sei);
        if (r < n_methods && s->n_rho) cJSON_AddNumberToObject(o, "spearman_vs_randomised", s->rho / s->n_rho);
        if (r < n_methods) cJSON_AddNumberToObject(o, "flat_randomised_maps", s->n_rho_undef);
        cJSON_AddNumberToObject(o, "seconds_per_map", s->secs / s->n);
        cJSON_AddItemToArray(rows, o);
    }
    g_string_append_printf(md, "\n(± = standard error over images.) " DL_DISCLAIMER "\n");
    fputs(md->str, stdout);
    int rc = n_done ? 0 : 1;
    if (report_path && dl_write_file_atomic(report_path, md->str, md->len, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        rc = 1;
    }
    if (json_path) {
        char *js = cJSON_Print(root);
        if (!js || dl_write_file_atomic(json_path, js, strlen(js), &err)) {
            fprintf(stderr, "dermlens explain: %s\n", js ? err.message : "out of memory");
            rc = 1;
        }
        free(js);
    }
    cJSON_Delete(root);
    g_string_free(md, TRUE);
    g_free(cmd);
    for (int k = 0; k < 2 * (steps + 1); k++) free(bufs[k]);
    free(bufs); free(probs); free(blur); free(order); free(key); free(basemap); free(ra); free(rb); free(pick);
    prober_free(&pr);
    dl_dataset_free(&ds);
    dl_model_free(m);
    dl_model_free(mr);
    return rc;
}

/* ------------------------------------------------------------ command */

int cmd_explain(int argc, char **argv)
{
    int argc0 = argc;
    char **argv0 = g_strdupv(argv);
    gchar *method = NULL, *cls = NULL, *layer = NULL, *model_path = NULL, *out_path = NULL, *map_path = NULL;
    gchar *eval_dir = NULL, *methods = NULL, *json_path = NULL;
    gdouble alpha = 0.6, smooth = 0;
    gint limit = 100, steps = 20, rand_layers = 5, threads = 0;
    gboolean layers = FALSE;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"method", 'M', 0, G_OPTION_ARG_STRING, &method, "Saliency method (default gradcam; see below)", "M"},
        {"class", 'c', 0, G_OPTION_ARG_STRING, &cls, "Class to explain: index or name (default: the top class)", "C"},
        {"layer", 'l', 0, G_OPTION_ARG_STRING, &layer, "Layer for the CAM methods (default: the last spatial convolution; see --layers)", "L"},
        {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path, "Model file (default: the shipped lesion model, or $DERMLENS_MODEL)", "FILE"},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out_path, "Overlay PNG to write (with --evaluate: the Markdown report)", "FILE"},
        {"map", 0, 0, G_OPTION_ARG_FILENAME, &map_path, "Also write the raw map as 16-bit grey PNG (0 = none, 65535 = most salient)", "FILE"},
        {"alpha", 'a', 0, G_OPTION_ARG_DOUBLE, &alpha, "Overlay opacity at the highest saliency, 0..1 (default 0.6)", "A"},
        {"smooth", 's', 0, G_OPTION_ARG_DOUBLE, &smooth, "Gaussian smoothing of the map, sigma in image pixels (default 0)", "SIGMA"},
        {"layers", 0, 0, G_OPTION_ARG_NONE, &layers, "List the layers usable with --layer and exit", NULL},
        {"evaluate", 0, 0, G_OPTION_ARG_FILENAME, &eval_dir, "Measure faithfulness on a labelled folder (DIR/<class>/<image>)", "DIR"},
        {"limit", 'n', 0, G_OPTION_ARG_INT, &limit, "--evaluate: images to use, class-balanced (default 100; 0 = all)", "N"},
        {"methods", 0, 0, G_OPTION_ARG_STRING, &methods, "--evaluate: comma-separated methods (default: all six)", "LIST"},
        {"steps", 0, 0, G_OPTION_ARG_INT, &steps, "--evaluate: deletion/insertion steps (default 20)", "K"},
        {"randomise-layers", 0, 0, G_OPTION_ARG_INT, &rand_layers, "--evaluate: weighted layers re-initialised for the sanity check (default 5)", "K"},
        {"json", 'j', 0, G_OPTION_ARG_FILENAME, &json_path, "--evaluate: also write the table as JSON", "FILE"},
        {"threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads (default: all cores)", "N"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, "IMAGE"},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("IMAGE -o overlay.png | --evaluate DIR - show which pixels drove a prediction");
    g_option_context_set_summary(ctx,
        "Writes the image with a colour-mapped saliency overlay (dark violet = low, pale yellow =\n"
        "high; transparent where there is no evidence), a legend and a caption. " DL_DISCLAIMER);
    g_option_context_set_description(ctx,
        "Methods (maps are upsampled bilinearly to the image and scaled to 0..1):\n"
        "  gradcam    Grad-CAM: channels of the layer weighted by the spatial mean of the\n"
        "             gradient of the class logit; ReLU. One forward + a short backward.\n"
        "  gradcam++  Grad-CAM++: per-position weights from 2nd/3rd powers of the gradient\n"
        "             (exp(score) form); better for several instances of a class.\n"
        "  hirescam   HiResCAM: gradient x activation summed over channels at each position\n"
        "             (no spatial averaging, so it is faithful to the model's computation).\n"
        "  layercam   LayerCAM: positive gradient x activation; also works on early layers.\n"
        "  scorecam   Score-CAM, gradient-free: each of the 64 most active channels masks the\n"
        "             input; its weight is the class probability gained over a blank input.\n"
        "             About 65 forward passes.\n"
        "  occlusion  Occlusion sensitivity, model-agnostic: a grey 32x32 patch (at the 224\n"
        "             network input, stride 16) slides over the image; the map is the drop\n"
        "             of the class probability. About 170 forward passes.\n\n"
        "--evaluate DIR measures each method: deletion and insertion AUCs (pixels replaced by\n"
        "a strong Gaussian blur, most salient first) against a random and a centre-Gaussian\n"
        "map, and the model-randomisation sanity check (Adebayo et al. 2018).");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    int rc = 2;
    dl_model *m = NULL;
    dl_image img = {0};
    float *map = NULL;
    dl_result res = {0};
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens explain: %s\n", gerr->message);
        g_error_free(gerr);
        goto out;
    }
    if (threads > 0) cli_set_threads(threads);
    if (!(alpha >= 0 && alpha <= 1)) {
        fprintf(stderr, "dermlens explain: --alpha must be in 0..1\n");
        goto out;
    }
    if (!(smooth >= 0 && smooth <= 1000)) {
        fprintf(stderr, "dermlens explain: --smooth must be in 0..1000\n");
        goto out;
    }
    const char *mp = cli_default_model(model_path);
    if (eval_dir) {
        if (steps < 2 || steps > 200) {
            fprintf(stderr, "dermlens explain: --steps must be in 2..200\n");
            goto out;
        }
        rc = evaluate(eval_dir, mp, limit, methods ? methods : "gradcam,gradcam++,hirescam,layercam,scorecam,occlusion",
                      steps, rand_layers, out_path, json_path, argc0, argv0);
        goto out;
    }
    if (layers) {
        if (!(m = cli_load_model(mp))) { rc = 1; goto out; }
        list_layers(m);
        rc = 0;
        goto out;
    }
    if (!files || !files[0] || files[1]) {
        fprintf(stderr, "dermlens explain: give exactly one IMAGE (see --help)\n");
        goto out;
    }
    if (!out_path && !map_path) {
        fprintf(stderr, "dermlens explain: nothing to write: give -o overlay.png and/or --map map.png\n");
        goto out;
    }
    int mi = dl_saliency_method_from_name(method ? method : "gradcam");
    if (mi < 0) {
        fprintf(stderr, "dermlens explain: unknown method '%s' (gradcam, gradcam++, hirescam, layercam, scorecam, occlusion)\n", method);
        goto out;
    }
    rc = 1;
    if (!(m = cli_load_model(mp))) goto out;
    int ci = -1;
    if (cls && (ci = parse_class(m, cls)) < 0) {
        fprintf(stderr, "dermlens explain: unknown class '%s' (index 0..%d or a class name)\n", cls, dl_model_num_classes(m) - 1);
        rc = 2;
        goto out;
    }
    dl_error err = {0};
    if (dl_image_load(files[0], &img, &err)) {
        fprintf(stderr, "dermlens explain: %s: %s\n", files[0], err.message);
        goto out;
    }
    dl_explain_options eo = {.method = mi, .class_index = ci, .layer = layer, .smooth_sigma = (float)smooth,
                             .progress = cli_progress};
    if (dl_explain_rgb8(m, img.pixels, img.width, img.height, img.stride, &eo, &map, &res, &err)) {
        fprintf(stderr, "dermlens explain: %s: %s\n", files[0], err.message);
        goto out;
    }
    if (ci < 0) ci = res.top_index[0];
    char line1[512], line2[256];
    snprintf(line1, sizeof line1, "%s  |  class: %s  |  p = %.1f%%%s", method_title(mi), dl_model_class_long_name(m, ci),
             100.0 * res.probs[ci], ci == res.top_index[0] ? " (top class)" : "");
    if (strlen(line1) > 90) /* long ImageNet synonyms: the short name reads better */
        snprintf(line1, sizeof line1, "%s  |  class: %s  |  p = %.1f%%%s", method_title(mi), dl_model_class_name(m, ci),
                 100.0 * res.probs[ci], ci == res.top_index[0] ? " (top class)" : "");
    snprintf(line2, sizeof line2, "Research/teaching aid, not a diagnosis. Highlighted = what drove the model, not the lesion.");
    if (out_path) {
        int ow, oh;
        build_colormap();
        uint8_t *ov = render_overlay(&img, map, (float)alpha, line1, line2, &ow, &oh);
        if (!ov) {
            fprintf(stderr, "dermlens explain: cannot render the overlay (out of memory)\n");
            goto out;
        }
        int wrc = dl_png_write(out_path, ov, ow, oh, (size_t)ow * 3, 3, 8, &err);
        free(ov);
        if (wrc) {
            fprintf(stderr, "dermlens explain: %s\n", err.message);
            goto out;
        }
    }
    if (map_path) {
        size_t n = (size_t)img.width * img.height;
        uint16_t *g16 = malloc(n * sizeof(uint16_t));
        if (!g16) goto out;
        for (size_t i = 0; i < n; i++) g16[i] = (uint16_t)lroundf((map[i] < 0 ? 0 : map[i] > 1 ? 1 : map[i]) * 65535.f);
        int wrc = dl_png_write(map_path, g16, img.width, img.height, (size_t)img.width * 2, 1, 16, &err);
        free(g16);
        if (wrc) {
            fprintf(stderr, "dermlens explain: %s\n", err.message);
            goto out;
        }
    }
    printf("%s\n%s\n", line1, DL_DISCLAIMER);
    if (out_path) printf("overlay: %s\n", out_path);
    if (map_path) printf("map:     %s (16-bit grey)\n", map_path);
    rc = 0;
out:
    g_option_context_free(ctx);
    dl_result_free(&res);
    free(map);
    dl_image_free(&img);
    dl_model_free(m);
    g_strfreev(argv0);
    g_free(method); g_free(cls); g_free(layer); g_free(model_path); g_free(out_path); g_free(map_path);
    g_free(eval_dir); g_free(methods); g_free(json_path);
    g_strfreev(files);
    return rc;
}
