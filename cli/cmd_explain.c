/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens explain: saliency overlay for one image, and --evaluate: the
 * faithfulness of every method on a labelled image folder (deletion /
 * insertion AUCs against random and centre baselines; the model
 * randomisation sanity check of Adebayo et al. 2018). */
#include "cli.h"
#include "dermlens_host.h"
#include "figure.h"
#include "infer/infer.h"
#include "plot.h"

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

/* The overlay's size. Small pictures (HAM10000 is 200x150) are enlarged to
 * 640 px wide so the caption fits; the caption's font follows the width but
 * not beyond the picture's height (a 8x64000 strip must not get a panel
 * taller than itself). The whole output (picture + panel) is bounded relative
 * to the input: at most 4x its pixels (at least 16 Mpx allowed, for small
 * inputs) and never above 64 Mpx; a layout above that is scaled down. */
#define OV_MIN_BUDGET (16.0 * 1024 * 1024)
#define OV_MAX_PIXELS (64.0 * 1024 * 1024)
static void overlay_layout(int W, int H, int *Wd, int *Hd, double *fs, int *ph)
{
    double scale = W < 640 ? 640.0 / W : 1.0;
    double budget = 4.0 * W * H;
    if (budget < OV_MIN_BUDGET) budget = OV_MIN_BUDGET;
    if (budget > OV_MAX_PIXELS) budget = OV_MAX_PIXELS;
    for (int it = 0; it < 16; it++) {
        *Wd = (int)lround(W * scale);
        *Hd = (int)lround(H * scale);
        if (*Wd < 1) *Wd = 1;
        if (*Hd < 1) *Hd = 1;
        double f = *Wd / 640.0, g = *Hd / 240.0;
        if (g < 1) g = 1;
        *fs = 15.0 * (f < g ? f : g); /* font size */
        *ph = (int)lround(*fs * 5.2);
        double total = (double)*Wd * ((double)*Hd + *ph);
        if (total <= budget) break;
        scale *= sqrt(budget / total) * 0.995;
    }
}

/* Compose image + overlay (host/'s colour map and opacity ramp, or the
 * outline of the map's top 20 %) + legend panel into a new RGB8 buffer. */
static uint8_t *render_overlay(const dl_image *img, const float *map, float alpha, dh_overlay_style style,
                               const char *line1, const char *line2, int *ow, int *oh)
{
    int W = img->width, H = img->height;
    int Wd, Hd, ph;
    double fs;
    overlay_layout(W, H, &Wd, &Hd, &fs, &ph);
    dl_image big = {0};
    const dl_image *show = img;
    dl_error err = {0};
    if (Wd != W || Hd != H) {
        if (dl_image_resize(img, Wd, Hd, &big, &err)) return NULL;
        show = &big;
    }
    float *m = malloc(sizeof(float) * (size_t)Wd * Hd);
    uint8_t *out = calloc((size_t)Wd * (Hd + ph), 3);
    if (!m || !out) {
        free(m); free(out); dl_image_free(&big);
        return NULL;
    }
    resample_map(map, W, H, m, Wd, Hd);
    dh_overlay ov;
    dh_overlay_init(&ov, m, Wd, Hd, style, alpha);
    dh_blend_rows(show->pixels, show->stride, m, Wd, Hd, 0, Hd, &ov, out, (size_t)Wd * 3);
    /* panel: dark background, legend bar, caption */
    for (size_t i = (size_t)Wd * Hd * 3; i < (size_t)Wd * (Hd + ph) * 3; i++) out[i] = 28;
    int bx0 = (int)lround(fs * 3.5), bx1 = Wd - bx0, by0 = Hd + (int)lround(fs * 0.6),
        by1 = by0 + (int)lround(fs * 0.9);
    for (int y = by0; y < by1 && bx1 - bx0 >= 2 && style != DH_OVERLAY_OUTLINE; y++)
        for (int x = bx0; x < bx1; x++) {
            /* the colours at full strength (the overlay fades the low end) */
            uint8_t c[4];
            dh_colormap((float)(x - bx0) / (bx1 - bx0 - 1), c);
            memcpy(out + ((size_t)y * Wd + x) * 3, c, 3);
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
        if (style == DH_OVERLAY_OUTLINE) {
            draw_text(cr, fs * 0.6, by1 - fs * 0.05, fs * 0.85, "outline: the contour of the map's top 20 %", 0, Wd);
        } else {
            draw_text(cr, bx0 - fs * 0.4, by1 - fs * 0.05, fs * 0.85, "low", 1, Wd);
            draw_text(cr, bx1 + fs * 0.4, by1 - fs * 0.05, fs * 0.85, "high", 0, Wd);
        }
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

/* --evaluate's method specs: a dl_saliency_method, plus EV_ONE_PASS for the
 * single-pass form of a Grad-CAM-family method (name suffix ":1pass"). */
#define EV_ONE_PASS 0x100

static const char *method_title(int spec)
{
    static const char *t[] = {"Grad-CAM", "Grad-CAM++", "HiResCAM", "LayerCAM", "Score-CAM", "Occlusion"};
    static const char *t1[] = {"Grad-CAM, one pass", "Grad-CAM++, one pass", "HiResCAM, one pass",
                               "LayerCAM, one pass"};
    int m = spec & 0xff;
    if (spec & EV_ONE_PASS) return m <= DL_SALIENCY_LAYERCAM ? t1[m] : "?";
    return m >= 0 && m <= DL_SALIENCY_OCCLUSION ? t[m] : "?";
}

static const char *method_key(int spec)
{
    static const char *k1[] = {"gradcam:1pass", "gradcam++:1pass", "hirescam:1pass", "layercam:1pass"};
    int m = spec & 0xff;
    if (spec & EV_ONE_PASS) return m <= DL_SALIENCY_LAYERCAM ? k1[m] : "?";
    return dl_saliency_method_name(m);
}

static dl_explain_options method_options(int spec, int cls)
{
    dl_explain_options eo = {.method = spec & 0xff, .class_index = cls, .single_pass = (spec & EV_ONE_PASS) != 0};
    return eo;
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


#define EV_MAX_STEPS 50
#define EV_MAX_METHODS (DL_SALIENCY_OCCLUSION + 1)
#define EV_N_BASE 2 /* random, centre */
#define EV_MAX_ROWS (EV_MAX_METHODS + EV_N_BASE)
#define EV_MAX_DEPTHS 6
#define EV_MAX_VARIANTS 12
/* ROAD's imputation noise: 1% of the 0..255 range */
#define EV_ROAD_NOISE 2.55f

enum { RM_ROAD = 0, RM_BLUR = 1, N_REMOVALS = 2 };
enum { CV_MORF = 0, CV_SECOND = 1 }; /* second: ROAD least-relevant-first deletion; blur insertion */

static const int k_depths[] = {1, 2, 3, 5, 8, 12};

/* Grad-CAM variants of the sweep (model layer by name prefix). */
typedef struct {
    const char *label, *layer;
    unsigned flags;
    float smooth;
} variant;

static const variant k_variants[] = {
    /* first: the reference every row is paired against, the single-pass
     * map (the default until the flip mean, row 9, qualified on val;
     * docs/reports/explain-faithfulness.md) */
    {"Conv_1 (7x7x1280), logit, ReLU, no smoothing, one pass (reference)", "MobilenetV2/Conv_1/", 0, 0},
    {"Conv_1, probability", "MobilenetV2/Conv_1/", DL_EXPLAIN_SCORE_PROB, 0},
    {"Conv_1, no ReLU (signed map)", "MobilenetV2/Conv_1/", DL_EXPLAIN_SIGNED, 0},
    {"Conv_1, smoothing sigma 8 px", "MobilenetV2/Conv_1/", 0, 8},
    {"block 16 project (7x7x320)", "MobilenetV2/expanded_conv_16/project/", 0, 0},
    {"block 13 expand (14x14x576)", "MobilenetV2/expanded_conv_13/expand/", 0, 0},
    {"block 12 output (add, 14x14x96)", "MobilenetV2/expanded_conv_12/add", 0, 0},
    {"block 13 expand gated by Conv_1 (14x14, product of the two maps)", "MobilenetV2/expanded_conv_13/expand/",
     DL_EXPLAIN_GATE_LAST, 0},
    {"block 12 output gated by Conv_1 (14x14, product)", "MobilenetV2/expanded_conv_12/add", DL_EXPLAIN_GATE_LAST, 0},
    {"Conv_1, mean over the 8 flips/transposes of the input (8 passes) = the default", "MobilenetV2/Conv_1/",
     DL_EXPLAIN_DIHEDRAL, 0},
    {"Conv_1, probability, mean over the 8 flips/transposes", "MobilenetV2/Conv_1/",
     DL_EXPLAIN_DIHEDRAL | DL_EXPLAIN_SCORE_PROB, 0},
};
/* --variants: which rows of k_variants the sweep runs (bit v = row v; the
 * default row 0 is always run, the others are paired against it) */
static unsigned g_variant_mask = ~0u;
/* --upsample: how every method's map reaches the image before it is
 * measured (smooth: host/'s dh_map_smooth, what the overlays show; bilinear:
 * the engine's map as it is). The baselines are not changed. */
static dh_upsample g_upsample = DH_UPSAMPLE_SMOOTH;

static int upsample_map(const dl_model *m, float *map, int w, int h, dl_error *err)
{
    if (g_upsample != DH_UPSAMPLE_SMOOTH) return 0;
    double cx, cy;
    dh_saliency_cell(m, w, h, &cx, &cy);
    return dh_map_smooth(map, w, h, cx, cy, err);
}
#define N_VARIANTS ((int)(sizeof k_variants / sizeof *k_variants))

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

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Gaussian blur of an RGB8 image (the "removed" pixels' replacement). */
static void blur_rgb(const uint8_t *src, uint8_t *dst, int w, int h, double sigma, float *tmp, double *k)
{
    int r = (int)ceil(3 * sigma);
    double s = 0;
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
}

typedef struct {
    float v;
    int i;
} keyed;

static int cmp_keyed_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->v < y->v ? 1 : x->v > y->v ? -1 : x->i - y->i;
}

/* Pixel order, most salient first; ties (e.g. Grad-CAM's zero plateau) are
 * broken by a fixed random jitter so they are removed in no spatial order. */
static void saliency_order(const float *map, int n, uint64_t seed, int *order, keyed *kv)
{
    uint64_t s = seed | 1;
    for (int i = 0; i < n; i++) {
        kv[i].v = map[i] + (float)(rng_unif(&s) * 1e-6);
        kv[i].i = i;
    }
    qsort(kv, n, sizeof *kv, cmp_keyed_desc);
    for (int i = 0; i < n; i++) order[i] = kv[i].i;
}

static void ranks(const float *v, int n, keyed *kv, double *r)
{
    for (int i = 0; i < n; i++) { kv[i].v = v[i]; kv[i].i = i; }
    qsort(kv, n, sizeof *kv, cmp_keyed_desc);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && kv[j + 1].v == kv[i].v) j++;
        double rank = 0.5 * (i + j); /* ties share the mean rank */
        for (int k = i; k <= j; k++) r[kv[k].i] = rank;
        i = j + 1;
    }
}

/* Spearman rank correlation; NAN when either map is constant. */
static double spearman(const float *a, const float *b, int n, keyed *kv, double *ra, double *rb)
{
    ranks(a, n, kv, ra);
    ranks(b, n, kv, rb);
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

/* Mean SSIM of two [0,1] maps (Wang et al. 2004: Gaussian window sigma 1.5,
 * C1 = 0.01^2, C2 = 0.03^2), computed on the maps downsampled 4x (the maps
 * are smooth; this keeps it cheap). Defined for flat maps too. */
static double ssim_maps(const float *a, const float *b, int w, int h)
{
    const int f = 4, sw = w / f, sh = h / f;
    if (sw < 8 || sh < 8) return NAN;
    size_t n = (size_t)sw * sh;
    double *buf = calloc(n * 10, sizeof(double));
    if (!buf) return NAN;
    double *A = buf, *B = A + n, *mu_a = B + n, *mu_b = mu_a + n, *aa = mu_b + n, *bb = aa + n, *ab = bb + n,
           *t = ab + n;
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < sw; x++) {
            double sa = 0, sb = 0;
            for (int j = 0; j < f; j++)
                for (int i = 0; i < f; i++) {
                    sa += a[(size_t)(y * f + j) * w + x * f + i];
                    sb += b[(size_t)(y * f + j) * w + x * f + i];
                }
            A[(size_t)y * sw + x] = sa / (f * f);
            B[(size_t)y * sw + x] = sb / (f * f);
        }
    double k[11], ks = 0;
    for (int i = -5; i <= 5; i++) ks += k[i + 5] = exp(-i * i / (2 * 1.5 * 1.5));
    for (int i = 0; i < 11; i++) k[i] /= ks;
    /* filter(src) -> dst, separable, edge clamp */
    double *srcs[5] = {A, B, NULL, NULL, NULL}, *dsts[5] = {mu_a, mu_b, aa, bb, ab};
    double *prod = t + n;
    for (int q = 0; q < 5; q++) {
        const double *src = srcs[q];
        if (q >= 2) {
            for (size_t i = 0; i < n; i++) prod[i] = q == 2 ? A[i] * A[i] : q == 3 ? B[i] * B[i] : A[i] * B[i];
            src = prod;
        }
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++) {
                double s = 0;
                for (int i = -5; i <= 5; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= sw ? sw - 1 : x + i;
                    s += k[i + 5] * src[(size_t)y * sw + xx];
                }
                t[(size_t)y * sw + x] = s;
            }
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++) {
                double s = 0;
                for (int i = -5; i <= 5; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= sh ? sh - 1 : y + i;
                    s += k[i + 5] * t[(size_t)yy * sw + x];
                }
                dsts[q][(size_t)y * sw + x] = s;
            }
    }
    const double C1 = 1e-4, C2 = 9e-4;
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        double va = aa[i] - mu_a[i] * mu_a[i], vb = bb[i] - mu_b[i] * mu_b[i], cab = ab[i] - mu_a[i] * mu_b[i];
        acc += (2 * mu_a[i] * mu_b[i] + C1) * (2 * cab + C2) /
               ((mu_a[i] * mu_a[i] + mu_b[i] * mu_b[i] + C1) * (va + vb + C2));
    }
    free(buf);
    return acc / n;
}

/* Re-initialise the weights of the last `layers` weighted nodes (output
 * side) with Gaussian values of each tensor's own standard deviation. The
 * generator restarts for every call, so depth d+1 randomises exactly the
 * layers of depth d (same values) plus one more: a cascade. */
static int randomise_top(dl_model *m, int layers, char *names, size_t names_len)
{
    dl_graph *g = &m->graph;
    uint64_t s = 0x5eed5eedULL;
    int done = 0;
    if (names) names[0] = 0;
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
        if (names) {
            const char *semi = strchr(n->name, ';');
            size_t len = strlen(names);
            snprintf(names + len, names_len - len, "%s%.*s", done ? ", " : "",
                     semi ? (int)(semi - n->name) : (int)strlen(n->name), n->name);
        }
        done++;
    }
    return done;
}

/* Everything measured on one image. */
typedef struct {
    int ok, cls;
    float p0;
    float curve[EV_MAX_ROWS][N_REMOVALS][2][EV_MAX_STEPS + 1];
    double auc[EV_MAX_ROWS][N_REMOVALS][2];
    double map_cpu[EV_MAX_ROWS];
    double sp[EV_MAX_METHODS][EV_MAX_DEPTHS], ss[EV_MAX_METHODS][EV_MAX_DEPTHS];
    double rho_centre; /* Spearman(first method's map, centre map) */
    double sweep[EV_MAX_VARIANTS], sweep_centre;
    char *error;
} img_res;

typedef struct {
    /* shared, read-only */
    const dl_dataset *ds;
    const int *pick;
    int n_pick;
    const int *methods;
    int n_methods, steps, n_depths, sweep, sweep_only;
    const uint8_t *model_bytes;
    size_t model_size;
    img_res *res;
    gint next, done;
    GMutex lock;
} ev_job;

typedef struct {
    ev_job *job;
    dl_model *m, *rnd[EV_MAX_DEPTHS];
    prober pr;
    int W, H, N;
    uint8_t *img, *blur, *full_grey, **bufs, *removed;
    int *order;
    keyed *kv;
    float *centre, *probs, *ftmp;
    double *ra, *rb, *kern;
    int variant_ok[EV_MAX_VARIANTS];
    char init_error[512];
} ev_worker;

/* The curve pair (MoRF + the second) of one map with one removal.
 * Endpoints are shared by all maps: p0 at 0% removed, p_full at 100%. */
static int map_curves(ev_worker *w, const float *map, uint64_t seed, int cls, float p0, float p_full, int removal,
                      int both, float out[2][EV_MAX_STEPS + 1], double auc[2], dl_error *err)
{
    const int N = w->N, S = w->job->steps;
    saliency_order(map, N, seed, w->order, w->kv);
    int nb = 0;
    for (int c = 0; c < (both ? 2 : 1); c++)
        for (int k = 1; k < S; k++) {
            int cut = (int)((long)N * k / S);
            uint8_t *d = w->bufs[nb++];
            /* removed set: MoRF = the first `cut`; ROAD's LeRF = the last
             * `cut`; blur insertion = all but the first `cut` */
            memset(w->removed, 0, (size_t)N);
            if (c == CV_MORF)
                for (int i = 0; i < cut; i++) w->removed[w->order[i]] = 1;
            else if (removal == RM_ROAD)
                for (int i = N - cut; i < N; i++) w->removed[w->order[i]] = 1;
            else
                for (int i = cut; i < N; i++) w->removed[w->order[i]] = 1;
            memcpy(d, w->img, (size_t)N * 3);
            if (removal == RM_ROAD) {
                if (dl_impute_linear(d, w->W, w->H, w->removed, EV_ROAD_NOISE, seed + 131u * (uint64_t)k + c, err))
                    return -1;
            } else {
                for (int i = 0; i < N; i++)
                    if (w->removed[i]) memcpy(d + (size_t)i * 3, w->blur + (size_t)i * 3, 3);
            }
        }
    if (probe(&w->pr, w->bufs, nb, cls, w->probs, err)) return -1;
    for (int c = 0; c < (both ? 2 : 1); c++) {
        float *o = out[c];
        int insertion = c == CV_SECOND && removal == RM_BLUR;
        o[0] = insertion ? p_full : p0;
        o[S] = insertion ? p0 : p_full;
        for (int k = 1; k < S; k++) o[k] = w->probs[c * (S - 1) + k - 1];
        double a = 0;
        for (int k = 0; k < S; k++) a += 0.5 * (o[k] + o[k + 1]) / S;
        auc[c] = a;
    }
    return 0;
}

static int eval_image(ev_worker *w, int ii, img_res *r, dl_error *err)
{
    ev_job *job = w->job;
    dl_model *m = w->m;
    const int W = w->W, H = w->H, N = w->N, S = job->steps;
    const char *path = job->ds->paths[job->pick[ii]];
    dl_image src = {0}, net = {0};
    if (dl_image_load(path, &src, err)) return -1;
    /* the picture as the network sees it (crop, then squash), so that
     * maps, removal and probabilities share one pixel grid */
    dl_image view = src;
    if (!strcmp(m->pre.resize, "center_crop")) {
        int side = src.width < src.height ? src.width : src.height;
        view.pixels = src.pixels + (size_t)((src.height - side) / 2) * src.stride + (size_t)((src.width - side) / 2) * 3;
        view.width = view.height = side;
    }
    int rc = dl_image_resize(&view, W, H, &net, err);
    dl_image_free(&src);
    if (rc) return -1;
    for (int y = 0; y < H; y++) memcpy(w->img + (size_t)y * W * 3, net.pixels + (size_t)y * net.stride, (size_t)W * 3);
    dl_image_free(&net);
    blur_rgb(w->img, w->blur, W, H, 0.05 * (W < H ? W : H), w->ftmp, w->kern);

    /* class and the shared endpoints: original, fully imputed, fully blurred */
    uint8_t *ends[3] = {w->img, w->full_grey, w->blur};
    float pe[3];
    dl_result res;
    if (dl_classify_rgb8(m, w->img, W, H, (size_t)W * 3, NULL, &res, err)) return -1;
    int cls = r->cls = res.top_index[0];
    dl_result_free(&res);
    if (probe(&w->pr, ends, 3, cls, pe, err)) return -1;
    r->p0 = pe[0];
    const float p_full[N_REMOVALS] = {pe[1], pe[2]};
    const uint64_t seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)(ii + 1) * 0x100000001b3ULL);

    float *maps[EV_MAX_ROWS] = {0};
    const int n_rows = job->sweep_only ? 0 : job->n_methods + EV_N_BASE;
    rc = -1;
    for (int row = 0; row < n_rows; row++) {
        double c0 = thread_cpu();
        if (row < job->n_methods) {
            dl_explain_options eo = method_options(job->methods[row], cls);
            if (dl_explain_rgb8(m, w->img, W, H, (size_t)W * 3, &eo, &maps[row], NULL, err) ||
                upsample_map(m, maps[row], W, H, err))
                goto out;
        } else if (row == job->n_methods) {
            /* random baseline at Grad-CAM's resolution (7x7 for a 224 input):
             * as coarse as the CAMs, so the comparison is not about blob size */
            float coarse[49];
            uint64_t s = seed ^ 0xabcdefULL;
            for (int i = 0; i < 49; i++) coarse[i] = (float)rng_unif(&s);
            if (!(maps[row] = malloc(sizeof(float) * N))) goto nomem;
            resample_map(coarse, 7, 7, maps[row], W, H);
        } else {
            if (!(maps[row] = malloc(sizeof(float) * N))) goto nomem;
            memcpy(maps[row], w->centre, sizeof(float) * N);
        }
        r->map_cpu[row] = thread_cpu() - c0;
        for (int rm = 0; rm < N_REMOVALS; rm++)
            if (map_curves(w, maps[row], seed, cls, r->p0, p_full[rm], rm, 1, r->curve[row][rm], r->auc[row][rm], err))
                goto out;
    }
    r->rho_centre = job->n_methods && n_rows ? spearman(maps[0], w->centre, N, w->kv, w->ra, w->rb) : NAN;
    /* sanity check: the same method on the cascade of randomised models */
    for (int mi = 0; mi < (n_rows ? job->n_methods : 0); mi++)
        for (int d = 0; d < job->n_depths; d++) {
            float *rmap = NULL;
            dl_explain_options eo = method_options(job->methods[mi], cls);
            if (dl_explain_rgb8(w->rnd[d], w->img, W, H, (size_t)W * 3, &eo, &rmap, NULL, err) ||
                upsample_map(m, rmap, W, H, err)) {
                free(rmap);
                goto out;
            }
            r->sp[mi][d] = spearman(maps[mi], rmap, N, w->kv, w->ra, w->rb);
            r->ss[mi][d] = ssim_maps(maps[mi], rmap, W, H);
            free(rmap);
        }
    /* sweep of Grad-CAM variants: ROAD MoRF only, with the centre map as
     * the reference every variant is paired against */
    if (job->sweep) {
        if (n_rows) {
            r->sweep_centre = r->auc[job->n_methods + 1][RM_ROAD][CV_MORF];
        } else {
            float cur[2][EV_MAX_STEPS + 1];
            double a[2];
            if (map_curves(w, w->centre, seed, cls, r->p0, p_full[RM_ROAD], RM_ROAD, 0, cur, a, err)) goto out;
            r->sweep_centre = a[0];
        }
    }
    if (job->sweep)
        for (int v = 0; v < N_VARIANTS; v++) {
            r->sweep[v] = NAN;
            if (!w->variant_ok[v]) continue;
            float *vm = NULL, cur[2][EV_MAX_STEPS + 1];
            double a[2];
            dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = cls, .layer = k_variants[v].layer,
                                     .smooth_sigma = k_variants[v].smooth};
            if (dl_explain_rgb8_variant(m, w->img, W, H, (size_t)W * 3, &eo, k_variants[v].flags, &vm, NULL, err))
                goto out;
            int crc = map_curves(w, vm, seed, cls, r->p0, p_full[RM_ROAD], RM_ROAD, 0, cur, a, err);
            free(vm);
            if (crc) goto out;
            r->sweep[v] = a[0];
        }
    (void)S;
    rc = 0;
    goto out;
nomem:
    dl_fail(err, DL_ERR_NOMEM, "out of memory");
out:
    for (int row = 0; row < n_rows; row++) free(maps[row]);
    return rc;
}

static void worker_free(ev_worker *w)
{
    if (w->bufs)
        for (int k = 0; k < 2 * EV_MAX_STEPS; k++) free(w->bufs[k]);
    free(w->bufs);
    free(w->img); free(w->blur); free(w->full_grey); free(w->removed); free(w->order); free(w->kv);
    free(w->centre); free(w->probs); free(w->ftmp); free(w->ra); free(w->rb); free(w->kern);
    prober_free(&w->pr);
    for (int d = 0; d < EV_MAX_DEPTHS; d++) dl_model_free(w->rnd[d]);
    dl_model_free(w->m);
}

static int worker_init(ev_worker *w, ev_job *job, dl_error *err)
{
    w->job = job;
    if (!(w->m = dl_model_load_memory(job->model_bytes, job->model_size, err))) return -1;
    for (int d = 0; d < job->n_depths; d++) {
        if (!(w->rnd[d] = dl_model_load_memory(job->model_bytes, job->model_size, err))) return -1;
        randomise_top(w->rnd[d], k_depths[d], NULL, 0);
    }
    w->W = w->m->pre.width;
    w->H = w->m->pre.height;
    const int N = w->N = w->W * w->H;
    if (prober_init(&w->pr, w->m, 8, err)) return -1;
    w->bufs = calloc(2 * EV_MAX_STEPS, sizeof(uint8_t *));
    int ok = w->bufs != NULL;
    for (int k = 0; ok && k < 2 * job->steps; k++) ok = (w->bufs[k] = malloc((size_t)N * 3)) != NULL;
    w->img = malloc((size_t)N * 3);
    w->blur = malloc((size_t)N * 3);
    w->full_grey = malloc((size_t)N * 3);
    w->removed = malloc((size_t)N);
    w->order = malloc(sizeof(int) * N);
    w->kv = malloc(sizeof(keyed) * N);
    w->centre = malloc(sizeof(float) * N);
    w->probs = malloc(sizeof(float) * 2 * EV_MAX_STEPS);
    w->ftmp = malloc(sizeof(float) * N * 3);
    w->ra = malloc(sizeof(double) * N);
    w->rb = malloc(sizeof(double) * N);
    w->kern = malloc(sizeof(double) * (2 * (size_t)ceil(3 * 0.05 * (w->W > w->H ? w->W : w->H)) + 3));
    if (!ok || !w->img || !w->blur || !w->full_grey || !w->removed || !w->order || !w->kv || !w->centre ||
        !w->probs || !w->ftmp || !w->ra || !w->rb || !w->kern)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    /* 100% removed under ROAD: nothing is left to impute from */
    memset(w->removed, 1, (size_t)N);
    if (dl_impute_linear(w->full_grey, w->W, w->H, w->removed, 0.f, 1, err)) return -1;
    double sg = 0.25 * (w->W < w->H ? w->W : w->H);
    for (int y = 0; y < w->H; y++)
        for (int x = 0; x < w->W; x++) {
            double dx = x + 0.5 - w->W / 2.0, dy = y + 0.5 - w->H / 2.0;
            w->centre[(size_t)y * w->W + x] = (float)exp(-(dx * dx + dy * dy) / (2 * sg * sg));
        }
    for (int v = 0; v < N_VARIANTS; v++) {
        /* a variant whose layer the model lacks is skipped, not an error */
        dl_error e2 = {0};
        float *vm = NULL;
        dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = 0, .layer = k_variants[v].layer};
        w->variant_ok[v] = job->sweep && ((g_variant_mask >> v) & 1u) && dl_explain_rgb8_variant(w->m, w->full_grey, w->W, w->H, (size_t)w->W * 3, &eo,
                                                                 0, &vm, NULL, &e2) == 0;
        free(vm);
    }
    return 0;
}

static gpointer worker_main(gpointer data)
{
    ev_worker *w = data;
    ev_job *job = w->job;
    for (;;) {
        int ii = g_atomic_int_add(&job->next, 1);
        if (ii >= job->n_pick) break;
        dl_error err = {0};
        img_res *r = &job->res[ii];
        if (eval_image(w, ii, r, &err) == 0) {
            r->ok = 1;
        } else {
            r->error = g_strdup_printf("%s: %s", job->ds->paths[job->pick[ii]], err.message);
        }
        int d = g_atomic_int_add(&job->done, 1) + 1;
        g_mutex_lock(&job->lock);
        if (isatty(2)) cli_progress(NULL, (double)d / job->n_pick, "faithfulness");
        else if (d % 10 == 0 || d == job->n_pick) fprintf(stderr, "[%d/%d]\n", d, job->n_pick);
        g_mutex_unlock(&job->lock);
    }
    return NULL;
}

/* ---- statistics */

typedef struct {
    int n;
    double mean, se, lo, hi, p; /* p: Wilcoxon signed-rank, two-sided */
    int wins;                  /* differences < 0 */
} paired;

static double t975(int df)
{
    /* Cornish-Fisher expansion of Student's t 97.5% quantile */
    const double z = 1.959963984540054;
    if (df < 1) return NAN;
    double d = df;
    return z + (z * z * z + z) / (4 * d) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * d * d) +
           (3 * pow(z, 7) + 19 * pow(z, 5) + 17 * z * z * z - 15 * z) / (384 * d * d * d);
}

static int cmp_abs(const void *a, const void *b)
{
    double x = fabs(*(const double *)a), y = fabs(*(const double *)b);
    return x < y ? -1 : x > y;
}

/* Mean difference with its t interval, and the Wilcoxon signed-rank test
 * (normal approximation with tie correction; zeros dropped). */
static paired paired_stats(const double *d, int n)
{
    paired p = {.n = n, .mean = NAN, .se = NAN, .lo = NAN, .hi = NAN, .p = NAN};
    if (n < 2) return p;
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) { s += d[i]; p.wins += d[i] < 0; }
    p.mean = s / n;
    for (int i = 0; i < n; i++) s2 += (d[i] - p.mean) * (d[i] - p.mean);
    p.se = sqrt(s2 / (n - 1) / n);
    double t = t975(n - 1);
    p.lo = p.mean - t * p.se;
    p.hi = p.mean + t * p.se;
    double *v = malloc(sizeof(double) * n);
    if (!v) return p;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (d[i] != 0) v[m++] = d[i];
    qsort(v, m, sizeof(double), cmp_abs);
    double wplus = 0, tie = 0;
    for (int i = 0; i < m;) {
        int j = i;
        while (j + 1 < m && fabs(v[j + 1]) == fabs(v[i])) j++;
        double rank = 0.5 * (i + j) + 1, t_ = j - i + 1;
        for (int k = i; k <= j; k++) if (v[k] > 0) wplus += rank;
        tie += t_ * t_ * t_ - t_;
        i = j + 1;
    }
    if (m > 0) {
        double mu = m * (m + 1) / 4.0, var = m * (m + 1) * (2.0 * m + 1) / 24.0 - tie / 48.0;
        double z = var > 0 ? (wplus - mu) / sqrt(var) : 0;
        p.p = erfc(fabs(z) / sqrt(2.0));
    }
    free(v);
    return p;
}

static void mean_se(const double *v, int n, double *mean, double *se)
{
    double s = 0, s2 = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) { s += v[i]; k++; }
    *mean = k ? s / k : NAN;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) s2 += (v[i] - *mean) * (v[i] - *mean);
    *se = k > 1 ? sqrt(s2 / (k - 1) / k) : NAN;
}

static const char *fmt_p(double p, char *buf, size_t len)
{
    if (isnan(p)) snprintf(buf, len, "-");
    else if (p < 1e-4) snprintf(buf, len, "%.1e", p);
    else snprintf(buf, len, "%.4f", p);
    return buf;
}

static const char *row_title(const int *methods, int n_methods, int row)
{
    return row < n_methods ? method_title(methods[row]) : row == n_methods ? "random (baseline)" : "centre Gaussian (baseline)";
}

static const char *row_key(const int *methods, int n_methods, int row)
{
    return row < n_methods ? method_key(methods[row]) : row == n_methods ? "random" : "centre";
}

/* One data set: run, then append its sections to md / its object to js. */
typedef struct {
    const char *dir;
    img_res *res;
    int n_pick, n_ok, n_fail;
    int *pick;
    dl_dataset ds;
    double wall, cpu;
} ev_split;

static int run_split(ev_split *sp, const char *dir, int limit, const int *methods, int n_methods, int steps,
                     int n_depths, int sweep, int sweep_only, const uint8_t *model_bytes, size_t model_size, int threads,
                     const char *const *class_order, int n_class_order)
{
    memset(sp, 0, sizeof *sp);
    sp->dir = dir;
    dl_error err = {0};
    dl_dataset_options dopt = {.class_order = class_order, .n_class_order = n_class_order, .allow_subset = 1};
    if (dl_dataset_open(dir, &dopt, &sp->ds, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        return -1;
    }
    /* deterministic class-balanced pick: round-robin over classes, each in
     * dataset (sorted path) order */
    dl_dataset *ds = &sp->ds;
    sp->pick = malloc(sizeof(int) * ds->n);
    int *next = calloc(ds->n_classes, sizeof(int));
    if (!sp->pick || !next) { free(next); return -1; }
    if (limit <= 0 || limit > ds->n) limit = ds->n;
    while (sp->n_pick < limit) {
        int added = 0;
        for (int c = 0; c < ds->n_classes && sp->n_pick < limit; c++) {
            while (next[c] < ds->n && ds->labels[next[c]] != c) next[c]++;
            if (next[c] < ds->n) { sp->pick[sp->n_pick++] = next[c]++; added = 1; }
        }
        if (!added) break;
    }
    free(next);
    sp->res = calloc(sp->n_pick, sizeof(img_res));
    if (!sp->res) return -1;
    ev_job job = {.ds = ds, .pick = sp->pick, .n_pick = sp->n_pick, .methods = methods, .n_methods = n_methods,
                  .steps = steps, .n_depths = n_depths, .sweep = sweep, .sweep_only = sweep_only, .model_bytes = model_bytes,
                  .model_size = model_size, .res = sp->res};
    g_mutex_init(&job.lock);
    if (threads <= 0) threads = (int)g_get_num_processors();
    if (threads > 16) threads = 16;
    if (threads > sp->n_pick) threads = sp->n_pick > 0 ? sp->n_pick : 1;
    /* one model set per worker; each forward then runs single-threaded */
    int prev_threads = dl_get_num_threads();
    dl_set_num_threads(1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_t c0 = clock();
    ev_worker *w = calloc(threads, sizeof(ev_worker));
    GThread **tid = calloc(threads, sizeof(GThread *));
    int started = 0, rc = 0;
    for (int t = 0; w && tid && t < threads; t++) {
        dl_error e = {0};
        if (worker_init(&w[t], &job, &e)) {
            fprintf(stderr, "dermlens explain: worker %d: %s\n", t, e.message);
            worker_free(&w[t]);
            memset(&w[t], 0, sizeof w[t]);
            continue;
        }
        tid[t] = g_thread_new("explain-eval", worker_main, &w[t]);
        started++;
    }
    for (int t = 0; tid && t < threads; t++)
        if (tid[t]) {
            g_thread_join(tid[t]);
            worker_free(&w[t]);
        }
    if (!started) rc = -1;
    free(w);
    free(tid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sp->wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    sp->cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    dl_set_num_threads(prev_threads);
    g_mutex_clear(&job.lock);
    for (int i = 0; i < sp->n_pick; i++) {
        if (sp->res[i].ok) sp->n_ok++;
        else {
            sp->n_fail++;
            if (sp->res[i].error) fprintf(stderr, "dermlens explain: %s\n", sp->res[i].error);
        }
    }
    return rc;
}

static void split_free(ev_split *sp)
{
    if (sp->res)
        for (int i = 0; i < sp->n_pick; i++) g_free(sp->res[i].error);
    free(sp->res);
    free(sp->pick);
    if (sp->ds.n) dl_dataset_free(&sp->ds);
}

/* per-image values of one statistic over the images that worked, optionally
 * only the off-centre subset */
static int collect(const ev_split *sp, const uint8_t *subset, double (*get)(const img_res *, int, int, int), int a,
                   int b, int c, double *out)
{
    int n = 0;
    for (int i = 0; i < sp->n_pick; i++)
        if (sp->res[i].ok && (!subset || subset[i])) out[n++] = get(&sp->res[i], a, b, c);
    return n;
}

static double get_auc(const img_res *r, int row, int rm, int cv)
{
    return r->auc[row][rm][cv];
}

static double get_auc_diff(const img_res *r, int row, int rm, int base)
{
    return r->auc[row][rm][CV_MORF] - r->auc[base][rm][CV_MORF];
}

static double get_sp(const img_res *r, int mi, int d, int unused)
{
    (void)unused;
    return r->sp[mi][d];
}

static double get_ss(const img_res *r, int mi, int d, int unused)
{
    (void)unused;
    return r->ss[mi][d];
}

static double get_sweep(const img_res *r, int v, int unused1, int unused2)
{
    (void)unused1;
    (void)unused2;
    return r->sweep[v];
}

static double get_sweep_diff(const img_res *r, int v, int vs_centre, int unused2)
{
    (void)unused2;
    return r->sweep[v] - (vs_centre ? r->sweep_centre : r->sweep[0]);
}

static const char *removal_name(int rm)
{
    return rm == RM_ROAD ? "ROAD imputation" : "blur";
}

/* One line: does the first method beat both baselines on deletion AUC?
 * "beats" needs the 95% CI of the paired difference below zero. */
static void verdict(GString *md, const ev_split *sp, const int *methods, int n_methods)
{
    if (!n_methods || !sp->n_ok) return;
    double *v = malloc(sizeof(double) * (sp->n_pick + 1));
    if (!v) return;
    gchar *base = g_path_get_basename(sp->dir);
    g_string_append_printf(md, "- **%s** (%d images): ", base, sp->n_ok);
    for (int rm = 0; rm < N_REMOVALS; rm++)
        for (int b = 0; b < 2; b++) {
            int n = collect(sp, NULL, get_auc_diff, 0, rm, b ? n_methods : n_methods + 1, v);
            paired p = paired_stats(v, n);
            char pb[32];
            const char *word = p.hi < 0 ? "beats" : p.lo > 0 ? "loses to" : "does not differ significantly from";
            g_string_append_printf(md, "%s%s %s the %s map with %s removal (%+.3f [%+.3f, %+.3f], p %s)",
                                   rm || b ? "; " : "", method_title(methods[0]), word, b ? "random" : "centre",
                                   rm == RM_ROAD ? "ROAD" : "blur", p.mean, p.lo, p.hi, fmt_p(p.p, pb, sizeof pb));
        }
    g_string_append(md, ".\n");
    g_free(base);
    free(v);
}

static void report_split(GString *md, cJSON *jarr, const ev_split *sp, const int *methods, int n_methods, int steps,
                         int n_depths, int sweep, int sweep_only, const char *rnames[EV_MAX_DEPTHS])
{
    const int n_rows = n_methods + EV_N_BASE, centre = n_methods + 1, random = n_methods;
    double *v = malloc(sizeof(double) * (sp->n_pick + 1));
    uint8_t *off = calloc(sp->n_pick + 1, 1);
    if (!v || !off) { free(v); free(off); return; }
    cJSON *js = cJSON_CreateObject();
    cJSON_AddItemToArray(jarr, js);
    cJSON_AddStringToObject(js, "data", sp->dir);
    cJSON_AddNumberToObject(js, "images", sp->n_ok);
    cJSON_AddNumberToObject(js, "unreadable", sp->n_fail);
    cJSON_AddNumberToObject(js, "wall_seconds", sp->wall);
    cJSON_AddNumberToObject(js, "cpu_seconds", sp->cpu);
    /* off-centre subset: the quarter of images whose first method's map
     * agrees least (Spearman) with the centre Gaussian */
    int n_off = 0;
    double q = NAN;
    if (n_methods) {
        int n = 0;
        for (int i = 0; i < sp->n_pick; i++)
            if (sp->res[i].ok && !isnan(sp->res[i].rho_centre)) v[n++] = sp->res[i].rho_centre;
        if (n >= 4) {
            /* the n/4-th smallest */
            for (int a = 0; a < n; a++)
                for (int b = a + 1; b < n; b++)
                    if (v[b] < v[a]) { double t = v[a]; v[a] = v[b]; v[b] = t; }
            q = v[n / 4 - 1];
            for (int i = 0; i < sp->n_pick; i++)
                if (sp->res[i].ok && !isnan(sp->res[i].rho_centre) && sp->res[i].rho_centre <= q) { off[i] = 1; n_off++; }
        }
    }
    int counts[64] = {0};
    for (int i = 0; i < sp->n_pick; i++)
        if (sp->res[i].ok && sp->ds.labels[sp->pick[i]] < 64) counts[sp->ds.labels[sp->pick[i]]]++;
    g_string_append_printf(md, "### %s\n\n%d images (", sp->dir, sp->n_ok);
    for (int c = 0; c < sp->ds.n_classes && c < 64; c++)
        g_string_append_printf(md, "%s%s %d", c ? ", " : "", sp->ds.class_names[c], counts[c]);
    g_string_append_printf(md, "; %d unreadable); run time %.0f s wall, %.0f s CPU (all threads).\n\n", sp->n_fail,
                           sp->wall, sp->cpu);

    if (sweep_only) goto sweep_section;
    for (int rm = 0; rm < N_REMOVALS; rm++) {
        g_string_append_printf(md, "**Removal by %s** - deletion AUC (most relevant first; lower = more faithful), %s "
                                   "AUC (higher = more faithful); mean ± standard error over images.\n\n",
                               removal_name(rm), rm == RM_ROAD ? "least-relevant-first deletion" : "insertion");
        g_string_append_printf(md, "| map | deletion AUC | %s AUC | %s - deletion | deletion AUC, off-centre quarter (n=%d) | CPU ms / map |\n|---|---|---|---|---|---|\n",
                               rm == RM_ROAD ? "LeRF" : "insertion", rm == RM_ROAD ? "LeRF" : "insertion", n_off);
        cJSON *rows_js = cJSON_AddArrayToObject(js, rm == RM_ROAD ? "road" : "blur");
        for (int row = 0; row < n_rows; row++) {
            double md_, sd_, mi, si, mo, so;
            int n = collect(sp, NULL, get_auc, row, rm, CV_MORF, v);
            mean_se(v, n, &md_, &sd_);
            collect(sp, NULL, get_auc, row, rm, CV_SECOND, v);
            mean_se(v, n, &mi, &si);
            int no = collect(sp, off, get_auc, row, rm, CV_MORF, v);
            mean_se(v, no, &mo, &so);
            double cpu = 0;
            int nc = 0;
            for (int i = 0; i < sp->n_pick; i++)
                if (sp->res[i].ok) { cpu += sp->res[i].map_cpu[row]; nc++; }
            g_string_append_printf(md, "| %s | %.4f ± %.4f | %.4f ± %.4f | %.4f | %.4f ± %.4f | %.1f |\n",
                                   row_title(methods, n_methods, row), md_, sd_, mi, si, mi - md_, mo, so,
                                   nc ? 1e3 * cpu / nc : NAN);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "map", row_key(methods, n_methods, row));
            cJSON_AddStringToObject(o, "removal", rm == RM_ROAD ? "road" : "blur");
            cJSON_AddNumberToObject(o, "deletion_auc", md_);
            cJSON_AddNumberToObject(o, "deletion_auc_se", sd_);
            cJSON_AddNumberToObject(o, rm == RM_ROAD ? "lerf_auc" : "insertion_auc", mi);
            cJSON_AddNumberToObject(o, "deletion_auc_off_centre", mo);
            cJSON *cur = cJSON_AddArrayToObject(o, "mean_deletion_curve");
            for (int k = 0; k <= steps; k++) {
                double s = 0;
                int nn = 0;
                for (int i = 0; i < sp->n_pick; i++)
                    if (sp->res[i].ok) { s += sp->res[i].curve[row][rm][CV_MORF][k]; nn++; }
                cJSON_AddItemToArray(cur, cJSON_CreateNumber(nn ? s / nn : 0));
            }
            cJSON_AddItemToArray(rows_js, o);
        }
        g_string_append(md, "\n");
    }
    /* paired comparisons on deletion AUC */
    g_string_append_printf(md, "**Paired comparison of deletion AUC** (per image: method minus baseline; negative = the "
                               "method removes the evidence faster). 95%% CI of the mean difference (t), images where "
                               "the method wins, Wilcoxon signed-rank p (two-sided).\n\n"
                               "| method | vs | removal | images | mean difference [95%% CI] | wins | Wilcoxon p |\n"
                               "|---|---|---|---|---|---|---|\n");
    cJSON *pj = cJSON_AddArrayToObject(js, "paired");
    for (int mi = 0; mi < n_methods; mi++)
        for (int b = 0; b < 2; b++)
            for (int sub = 0; sub < 2; sub++)
                for (int rm = 0; rm < N_REMOVALS; rm++) {
                    int base = b ? random : centre;
                    if (b && sub) continue; /* random vs off-centre adds nothing */
                    int n = collect(sp, sub ? off : NULL, get_auc_diff, mi, rm, base, v);
                    paired p = paired_stats(v, n);
                    char pb[32];
                    g_string_append_printf(md, "| %s | %s | %s | %s%d | %+.4f [%+.4f, %+.4f] | %d/%d | %s |\n",
                                           method_title(methods[mi]), b ? "random" : "centre", removal_name(rm),
                                           sub ? "off-centre " : "", n, p.mean, p.lo, p.hi, p.wins, n,
                                           fmt_p(p.p, pb, sizeof pb));
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "method", method_key(methods[mi]));
                    cJSON_AddStringToObject(o, "baseline", b ? "random" : "centre");
                    cJSON_AddStringToObject(o, "removal", rm == RM_ROAD ? "road" : "blur");
                    cJSON_AddBoolToObject(o, "off_centre_subset", sub);
                    cJSON_AddNumberToObject(o, "n", n);
                    cJSON_AddNumberToObject(o, "mean_difference", p.mean);
                    cJSON_AddNumberToObject(o, "ci95_low", p.lo);
                    cJSON_AddNumberToObject(o, "ci95_high", p.hi);
                    cJSON_AddNumberToObject(o, "wins", p.wins);
                    cJSON_AddNumberToObject(o, "wilcoxon_p", p.p);
                    cJSON_AddItemToArray(pj, o);
                }
    g_string_append_printf(md, "\nOff-centre quarter: the %d images whose %s map has the lowest Spearman correlation "
                               "with the centre Gaussian (<= %.3f), where a centre prior cannot be right.\n\n",
                           n_off, n_methods ? method_title(methods[0]) : "-", q);
    /* sanity check */
    if (n_depths && n_methods) {
        g_string_append_printf(md, "**Model randomisation (cascading, Adebayo et al. 2018)** - similarity of each map to "
                                   "the map of the same image under a model whose top k weighted layers are "
                                   "re-initialised; Spearman rank correlation / SSIM, mean over images. Low = the map "
                                   "depends on the learned weights (passes).\n\n| method |");
        for (int d = 0; d < n_depths; d++) g_string_append_printf(md, " top %d |", k_depths[d]);
        g_string_append(md, "\n|---|");
        for (int d = 0; d < n_depths; d++) g_string_append(md, "---|");
        g_string_append(md, "\n");
        cJSON *sj = cJSON_AddArrayToObject(js, "randomisation");
        for (int mi = 0; mi < n_methods; mi++) {
            g_string_append_printf(md, "| %s |", method_title(methods[mi]));
            for (int d = 0; d < n_depths; d++) {
                double ms, ses, mss, sess;
                int n = collect(sp, NULL, get_sp, mi, d, 0, v);
                int flat = 0;
                for (int i = 0; i < n; i++) flat += isnan(v[i]);
                mean_se(v, n, &ms, &ses);
                collect(sp, NULL, get_ss, mi, d, 0, v);
                mean_se(v, n, &mss, &sess);
                g_string_append_printf(md, " %.2f / %.2f%s |", ms, mss, flat ? " *" : "");
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "method", method_key(methods[mi]));
                cJSON_AddNumberToObject(o, "layers", k_depths[d]);
                cJSON_AddNumberToObject(o, "spearman", ms);
                cJSON_AddNumberToObject(o, "ssim", mss);
                cJSON_AddNumberToObject(o, "flat_maps", flat);
                cJSON_AddItemToArray(sj, o);
            }
            g_string_append(md, "\n");
        }
        double mrc, serc;
        int n = 0;
        for (int i = 0; i < sp->n_pick; i++)
            if (sp->res[i].ok) v[n++] = sp->res[i].rho_centre;
        mean_se(v, n, &mrc, &serc);
        g_string_append_printf(md, "\nLayers randomised, from the top: ");
        for (int d = 0; d < n_depths; d++) g_string_append_printf(md, "%s%d = %s", d ? "; " : "", k_depths[d], rnames[d]);
        g_string_append_printf(md, ". `*`: some randomised maps were flat (no positive evidence; Spearman undefined, "
                                   "left out of its mean; SSIM counts them). For scale: Spearman between the trained "
                                   "%s map and the fixed centre Gaussian is %.2f on average.\n\n",
                               method_title(methods[0]), mrc);
    }
sweep_section:
    if (sweep) {
        double mc, sc;
        int nc = 0;
        for (int i = 0; i < sp->n_pick; i++)
            if (sp->res[i].ok) v[nc++] = sp->res[i].sweep_centre;
        mean_se(v, nc, &mc, &sc);
        g_string_append_printf(md, "**Grad-CAM variants** (ROAD deletion AUC, mean ± SE; paired differences with 95%% CI "
                                   "and Wilcoxon p, against the first row and against the centre Gaussian, whose AUC "
                                   "here is %.4f ± %.4f):\n\n| variant | ROAD deletion AUC | minus first row [95%% CI] | "
                                   "p | minus centre [95%% CI] | wins vs centre | p |\n|---|---|---|---|---|---|---|\n",
                               mc, sc);
        cJSON *wj = cJSON_AddArrayToObject(js, "sweep");
        for (int vi = 0; vi < N_VARIANTS; vi++) {
            double mv, sv;
            int n = collect(sp, NULL, get_sweep, vi, 0, 0, v);
            mean_se(v, n, &mv, &sv);
            if (isnan(mv)) continue;
            n = collect(sp, NULL, get_sweep_diff, vi, 0, 0, v);
            paired p = paired_stats(v, n);
            collect(sp, NULL, get_sweep_diff, vi, 1, 0, v);
            paired pc = paired_stats(v, n);
            char pb[32], pb2[32];
            g_string_append_printf(md, "| %d. %s | %.4f ± %.4f | %+.4f [%+.4f, %+.4f] | %s | %+.4f [%+.4f, %+.4f] | %d/%d | %s |\n",
                                   vi, k_variants[vi].label, mv, sv, p.mean, p.lo, p.hi, vi ? fmt_p(p.p, pb, sizeof pb) : "-",
                                   pc.mean, pc.lo, pc.hi, pc.wins, n, fmt_p(pc.p, pb2, sizeof pb2));
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "variant", k_variants[vi].label);
            cJSON_AddNumberToObject(o, "road_deletion_auc", mv);
            cJSON_AddNumberToObject(o, "se", sv);
            cJSON_AddItemToArray(wj, o);
        }
        /* the selection rule: a variant replaces the default only if it is
         * better with the 95% CI of the paired difference below zero */
        int best = -1;
        double best_hi = 0, best_mean = 0;
        for (int vi = 1; vi < N_VARIANTS; vi++) {
            int n = collect(sp, NULL, get_sweep_diff, vi, 0, 0, v);
            paired p = paired_stats(v, n);
            if (!isnan(p.hi) && p.hi < 0 && (best < 0 || p.mean < best_mean)) { best = vi; best_hi = p.hi; best_mean = p.mean; }
        }
        if (best >= 0)
            g_string_append_printf(md, "\nSelection rule (a variant is preferred to the first row only if its paired difference "
                                       "has a 95%% CI below zero): **%s** qualifies (%+.4f, CI upper %+.4f).\n", k_variants[best].label, best_mean, best_hi);
        else
            g_string_append_printf(md, "\nSelection rule (a variant is preferred to the first row only if its paired difference "
                                       "has a 95%% CI below zero): no variant qualifies.\n");
        g_string_append(md, "\n");
    }
    free(v);
    free(off);
}

static int evaluate(char **dirs, const char *model_path, int limit, const char *methods_arg, int steps,
                    int max_depth, int sweep, int sweep_only, int threads, const char *report_path, const char *json_path,
                    const char *plot_path, int argc, char **argv)
{
    dl_error err = {0};
    uint8_t *bytes = NULL;
    size_t size = 0;
    if (dl_read_file(model_path, DL_MAX_MODEL_BYTES, &bytes, &size, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        return 1;
    }
    dl_model *m = dl_model_load_memory(bytes, size, &err);
    if (!m) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        free(bytes);
        return 1;
    }
    int methods[EV_MAX_METHODS], n_methods = 0;
    gchar **parts = g_strsplit(methods_arg, ",", -1);
    for (int i = 0; parts[i]; i++) {
        if (!*g_strstrip(parts[i])) continue;
        char *suffix = strstr(parts[i], ":1pass");
        int one_pass = suffix && !suffix[6];
        if (one_pass) *suffix = 0;
        int mi = dl_saliency_method_from_name(parts[i]);
        if (mi >= 0 && one_pass) {
            if (mi > DL_SALIENCY_LAYERCAM) mi = -1; /* only the Grad-CAM family has a one-pass form */
            else mi |= EV_ONE_PASS;
        }
        if (mi < 0) {
            fprintf(stderr, "dermlens explain: unknown method '%s' in --methods\n", parts[i]);
            g_strfreev(parts);
            dl_model_free(m);
            free(bytes);
            return 2;
        }
        int dup = 0;
        for (int j = 0; j < n_methods; j++) dup |= methods[j] == mi;
        if (!dup && n_methods < EV_MAX_METHODS) methods[n_methods++] = mi;
    }
    g_strfreev(parts);
    int n_depths = 0;
    static char rn_buf[EV_MAX_DEPTHS][1024];
    const char *rnames[EV_MAX_DEPTHS];
    while (!sweep_only && n_depths < EV_MAX_DEPTHS && k_depths[n_depths] <= max_depth) {
        dl_model *mr = dl_model_load_memory(bytes, size, &err);
        if (!mr) break;
        /* names of the layers this depth adds to the previous one */
        char all[4096];
        int got = randomise_top(mr, k_depths[n_depths], all, sizeof all);
        dl_model_free(mr);
        if (got < k_depths[n_depths]) break;
        const char *p = all;
        for (int skip = n_depths ? k_depths[n_depths - 1] : 0; skip > 0 && p; skip--) {
            p = strstr(p, ", ");
            if (p) p += 2;
        }
        snprintf(rn_buf[n_depths], sizeof rn_buf[n_depths], "+%s", p ? p : "");
        rnames[n_depths] = rn_buf[n_depths];
        n_depths++;
    }
    const int n_rows = n_methods + EV_N_BASE;
    int n_dirs = 0;
    while (dirs[n_dirs]) n_dirs++;
    ev_split *sp = calloc(n_dirs, sizeof(ev_split));
    int rc = sp ? 0 : 1;
    double total_wall = 0, total_cpu = 0;
    for (int d = 0; !rc && d < n_dirs; d++) {
        fprintf(stderr, "dermlens explain: %s\n", dirs[d]);
        if (run_split(&sp[d], dirs[d], limit, methods, n_methods, steps, n_depths, (sweep && d == 0) || sweep_only, sweep_only, bytes, size,
                      threads, (const char *const *)m->class_names, m->num_classes))
            rc = 1;
        total_wall += sp[d].wall;
        total_cpu += sp[d].cpu;
    }
    GString *md = g_string_new(NULL);
    char *cmd = cli_command_line(argc, argv);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "command", cmd);
    cJSON_AddStringToObject(root, "model", dl_model_name(m));
    cJSON_AddStringToObject(root, "model_sha256", dl_model_sha256(m));
    cJSON_AddNumberToObject(root, "steps", steps);
    cJSON *jarr = cJSON_AddArrayToObject(root, "splits");
    if (!rc) {
        g_string_append_printf(md, "## Saliency faithfulness (generated by `dermlens explain --evaluate`)\n\n");
        g_string_append_printf(md, "- command: `%s`\n", cmd);
        g_string_append_printf(md, "- model: %s (sha256 %.16s...)\n", dl_model_name(m), dl_model_sha256(m));
        g_string_append_printf(md, "- images: class-balanced round-robin pick of up to %d per split (every class in "
                                   "turn, in file order; all of a class when it has fewer); the class explained is the "
                                   "model's top class, the score its calibrated probability\n", limit);
        g_string_append_printf(md, "- maps: the engine defaults of each method (what `dermlens explain` and the plug-in "
                                   "show), brought to the image %s; baselines: *random* = uniform noise on a 7x7 grid "
                                   "upsampled bilinearly, "
                                   "*centre* = Gaussian centred on the image (sigma = 0.25 x side)\n",
                               g_upsample == DH_UPSAMPLE_SMOOTH ? "smoothly (`--upsample smooth`: the bilinear map "
                                                                  "convolved with a cell-wide tent, i.e. the cubic "
                                                                  "B-spline of the coarse cells)"
                                                                : "bilinearly (`--upsample bilinear`)");
        g_string_append_printf(md, "- removal, at the %dx%d network input, in %d steps of %.0f%% of the pixels (pixel "
                                   "order by the map, ties in random order): **ROAD** (Rong et al. 2022): removed pixels "
                                   "are imputed from their neighbours (noisy linear imputation: 8-neighbour harmonic "
                                   "fill, Gaussian noise sd %.2f of 255), which leaks no mask shape to the model; "
                                   "**blur**: removed pixels take a Gaussian blur of the image (sigma 5%% of the side). "
                                   "AUC = trapezoid of p(class) over the removed fraction 0..1.\n",
                               m->pre.width, m->pre.height, steps, 100.0 / steps, EV_ROAD_NOISE);
        g_string_append_printf(md, "- run time: %.0f s wall, %.0f s CPU (process CPU time over all threads)\n\n",
                               total_wall, total_cpu);
        if (!sweep_only && n_methods) {
            g_string_append_printf(md, "**Verdict (computed)** - deletion AUC, paired per image, 95%% CI of the mean "
                                   "difference:\n\n");
            for (int d = 0; d < n_dirs; d++) verdict(md, &sp[d], methods, n_methods);
            g_string_append(md, "\n");
        }
        /* the hand-written notes of an earlier report survive a re-run */
        gchar *old = NULL;
        if (report_path && g_file_get_contents(report_path, &old, NULL, NULL)) {
            const char *a = strstr(old, "<!-- notes -->"), *b = a ? strstr(a, "<!-- /notes -->") : NULL;
            if (a && b) {
                g_string_append_len(md, a, b - a);
                g_string_append(md, "<!-- /notes -->\n\n");
            }
        }
        g_free(old);
        for (int d = 0; d < n_dirs; d++)
            report_split(md, jarr, &sp[d], methods, n_methods, steps, n_depths, (sweep && d == 0) || sweep_only, sweep_only, rnames);
    }
    /* figure: mean deletion curves, one panel per split and removal */
    int plotted = 0;
    if (!rc && plot_path && !sweep_only) {
        int n_panels = n_dirs * N_REMOVALS;
        double *y = calloc((size_t)n_panels * n_rows * (steps + 1), sizeof(double));
        char **ptitles = calloc(n_panels, sizeof(char *)), **ticks = calloc(steps + 1, sizeof(char *));
        const char **names = calloc(n_rows, sizeof(char *));
        if (y && ptitles && ticks && names) {
            for (int d = 0; d < n_dirs; d++)
                for (int rm = 0; rm < N_REMOVALS; rm++) {
                    int p = d * N_REMOVALS + rm;
                    gchar *base = g_path_get_basename(sp[d].dir);
                    ptitles[p] = g_strdup_printf("%s - deletion, %s", base, removal_name(rm));
                    g_free(base);
                    for (int row = 0; row < n_rows; row++)
                        for (int k = 0; k <= steps; k++) {
                            double s = 0;
                            int nn = 0;
                            for (int i = 0; i < sp[d].n_pick; i++)
                                if (sp[d].res[i].ok) { s += sp[d].res[i].curve[row][rm][CV_MORF][k]; nn++; }
                            y[((size_t)p * n_rows + row) * (steps + 1) + k] = nn ? s / nn : NAN;
                        }
                }
            for (int k = 0; k <= steps; k++) ticks[k] = g_strdup_printf("%.0f%%", 100.0 * k / steps);
            for (int row = 0; row < n_rows; row++) names[row] = row_title(methods, n_methods, row);
            char perr[512];
            if (plot_lines(plot_path, "Deletion curves: p(top class) as the most salient pixels are removed", n_panels,
                           (const char *const *)ptitles, "pixels removed", "mean p(class)", n_rows, names, steps + 1,
                           (const char *const *)ticks, y, 0.0, 1.0, perr, sizeof perr) != 0)
                fprintf(stderr, "dermlens explain: plot: %s\n", perr);
            else plotted = 1;
        }
        for (int p = 0; ptitles && p < n_panels; p++) g_free(ptitles[p]);
        for (int k = 0; ticks && k <= steps; k++) g_free(ticks[k]);
        free(y); free(ptitles); free(ticks); free(names);
        if (plotted) {
            gchar *base = g_path_get_basename(plot_path);
            g_string_append_printf(md, "![mean deletion curves](%s)\n\n", base);
            g_free(base);
        }
    }
    if (!rc) g_string_append_printf(md, DL_DISCLAIMER "\n");
    fputs(md->str, stdout);
    if (!rc && report_path && dl_write_file_atomic(report_path, md->str, md->len, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        rc = 1;
    }
    if (!rc && json_path) {
        char *js = cJSON_Print(root);
        if (!js || dl_write_file_atomic(json_path, js, strlen(js), &err)) {
            fprintf(stderr, "dermlens explain: %s\n", js ? err.message : "out of memory");
            rc = 1;
        }
        free(js);
    }
    fprintf(stderr, "dermlens explain: evaluation took %.0f s wall, %.0f s CPU\n", total_wall, total_cpu);
    cJSON_Delete(root);
    g_string_free(md, TRUE);
    g_free(cmd);
    for (int d = 0; sp && d < n_dirs; d++) split_free(&sp[d]);
    free(sp);
    dl_model_free(m);
    free(bytes);
    return rc;
}

/* ------------------------------------------------------------ command */

int cmd_explain(int argc, char **argv)
{
    int argc0 = argc;
    char **argv0 = g_strdupv(argv);
    gchar *method = NULL, *cls = NULL, *layer = NULL, *model_path = NULL, *out_path = NULL, *map_path = NULL;
    gchar **eval_dirs = NULL, *methods = NULL, *json_path = NULL, *plot_path = NULL, *variants = NULL;
    gchar *threads_arg = NULL, *upsample = NULL, *figure_path = NULL;
    gdouble alpha = 0.6, smooth = 0;
    gboolean outline = FALSE;
    gint limit = 200, steps = 10, rand_layers = 8, threads = 0;
    gboolean layers = FALSE, sweep = FALSE, sweep_only = FALSE, single_pass = FALSE;
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
        {"upsample", 0, 0, G_OPTION_ARG_STRING, &upsample, "How the coarse map reaches the image: smooth (default: no ridges; what the plug-in shows) or bilinear (the engine's map as it is); also for --evaluate", "MODE"},
        {"outline", 0, 0, G_OPTION_ARG_NONE, &outline, "Draw the contour of the map's top 20 % instead of the colour map (for slides: the lesion stays visible)", NULL},
        {"figure", 0, 0, G_OPTION_ARG_FILENAME, &figure_path, "Also write a teaching figure: the image and its overlay side by side, with a caption (classes, method, model, disclaimer)", "FILE"},
        {"single-pass", '1', 0, G_OPTION_ARG_NONE, &single_pass, "Grad-CAM family: one pass instead of the mean over the image's 8 flips/transposes (8x faster, coarser)", NULL},
        {"layers", 0, 0, G_OPTION_ARG_NONE, &layers, "List the layers usable with --layer and exit", NULL},
        {"evaluate", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &eval_dirs, "Measure faithfulness on a labelled folder (DIR/<class>/<image>); repeat for several splits (the first one is the selection split for --sweep)", "DIR"},
        {"limit", 'n', 0, G_OPTION_ARG_INT, &limit, "--evaluate: images per split, class-balanced (default 200; 0 = all)", "N"},
        {"methods", 0, 0, G_OPTION_ARG_STRING, &methods, "--evaluate: comma-separated methods; NAME:1pass is the single-pass form of a Grad-CAM-family method (default gradcam,gradcam:1pass,gradcam++,layercam)", "LIST"},
        {"steps", 0, 0, G_OPTION_ARG_INT, &steps, "--evaluate: removal steps (default 10, i.e. 10% each)", "K"},
        {"randomise-layers", 0, 0, G_OPTION_ARG_INT, &rand_layers, "--evaluate: deepest cascade of the sanity check: top 1, 2, 3, 5, 8, 12 weighted layers up to K (default 8; 0 = off)", "K"},
        {"sweep", 0, 0, G_OPTION_ARG_NONE, &sweep, "--evaluate: also compare Grad-CAM variants (layer, score, ReLU, smoothing) on the first split", NULL},
        {"sweep-only", 0, 0, G_OPTION_ARG_NONE, &sweep_only, "--evaluate: only the Grad-CAM variant comparison (on every split)", NULL},
        {"variants", 0, 0, G_OPTION_ARG_STRING, &variants, "--sweep: comma-separated rows of the variant table to run (0 = the single-pass reference, always run; default: all; the report lists them)", "LIST"},
        {"plot", 0, 0, G_OPTION_ARG_FILENAME, &plot_path, "--evaluate: write the mean deletion curves as PNG", "FILE"},
        {"json", 'j', 0, G_OPTION_ARG_FILENAME, &json_path, "--evaluate: also write the tables as JSON", "FILE"},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Threads, 1..256 (default: all cores)", "N"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("IMAGE -o overlay.png | --evaluate DIR - show which pixels drove a prediction");
    g_option_context_set_summary(ctx,
        "Writes the image with a colour-mapped saliency overlay (dark violet = low, pale yellow =\n"
        "high; transparent where there is no evidence), a legend and a caption. " DL_DISCLAIMER);
    g_option_context_set_description(ctx,
        "Methods (maps are brought to the image smoothly, see --upsample, and scaled to 0..1):\n"
        "  gradcam    Grad-CAM: channels of the layer weighted by the spatial mean of the\n"
        "             gradient of the class logit; ReLU. The Grad-CAM family (the first four)\n"
        "             averages the maps of the image's 8 flips/transposes, each mapped back\n"
        "             (8 forward + short backward passes): finer than the layer's 32-px grid,\n"
        "             and more faithful on ham10000/val; --single-pass: one pass.\n"
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
        "--evaluate DIR [--evaluate DIR2] measures each method: deletion AUCs (most salient\n"
        "pixels removed first) with ROAD imputation (removed pixels filled from their\n"
        "neighbours) and with a Gaussian blur, least-relevant-first and insertion AUCs, against a\n"
        "random and a centre-Gaussian map, with paired statistics (95% CI, Wilcoxon) overall\n"
        "and on the off-centre quarter; and the cascading model-randomisation sanity check\n"
        "(Adebayo et al. 2018). Example (writes the report and its figure):\n"
        "  dermlens explain --evaluate ham10000/val --evaluate ham10000/test --sweep\n"
        "      -o docs/reports/explain-faithfulness.md --plot docs/reports/explain-deletion.png");
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
    if (cli_parse_threads("explain", threads_arg, &threads) != 0) goto out;
    if (threads > 0) cli_set_threads(threads);
    if (!(alpha >= 0 && alpha <= 1)) {
        fprintf(stderr, "dermlens explain: --alpha must be in 0..1\n");
        goto out;
    }
    if (!(smooth >= 0 && smooth <= 1000)) {
        fprintf(stderr, "dermlens explain: --smooth must be in 0..1000\n");
        goto out;
    }
    int up = dh_upsample_parse(upsample ? upsample : "smooth");
    if (up < 0) {
        fprintf(stderr, "dermlens explain: --upsample must be smooth or bilinear\n");
        goto out;
    }
    g_upsample = (dh_upsample)up;
    const char *mp = cli_default_model(model_path);
    if (eval_dirs && eval_dirs[0]) {
        if (cli_check_output("explain", out_path) || cli_check_output("explain", json_path) ||
            cli_check_output("explain", plot_path))
            goto out;
        if (steps < 2 || steps > EV_MAX_STEPS) {
            fprintf(stderr, "dermlens explain: --steps must be in 2..%d\n", EV_MAX_STEPS);
            goto out;
        }
        if (variants) {
            g_variant_mask = 1u;
            gchar **tok = g_strsplit(variants, ",", -1);
            for (int i = 0; tok[i]; i++) {
                char *end = NULL;
                long v = strtol(tok[i], &end, 10);
                if (end == tok[i] || *end || v < 0 || v >= N_VARIANTS) {
                    fprintf(stderr, "dermlens explain: --variants: '%s' is not a row 0..%d\n", tok[i], N_VARIANTS - 1);
                    g_strfreev(tok);
                    goto out;
                }
                g_variant_mask |= 1u << v;
            }
            g_strfreev(tok);
        }
        rc = evaluate(eval_dirs, mp, limit, methods ? methods : "gradcam,gradcam:1pass,gradcam++,layercam", steps, rand_layers, sweep || sweep_only,
                      sweep_only, threads, out_path, json_path, plot_path, argc0, argv0);
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
    if (!out_path && !map_path && !figure_path) {
        fprintf(stderr, "dermlens explain: nothing to write: give -o overlay.png, --map map.png and/or --figure fig.png\n");
        goto out;
    }
    /* refuse devices, FIFOs, links and folders before the (long) analysis */
    if (cli_check_output("explain", out_path) || cli_check_output("explain", map_path) ||
        cli_check_output("explain", figure_path))
        goto out;
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
    int orient = 1;
    if (dl_image_load_oriented(files[0], &img, &orient, &err) || cli_check_region(&img, &err)) {
        cli_file_error("explain", files[0], err.message);
        goto out;
    }
    dl_explain_options eo = {.method = mi, .class_index = ci, .layer = layer, .smooth_sigma = (float)smooth,
                             .progress = cli_progress, .single_pass = single_pass};
    if (dl_explain_rgb8(m, img.pixels, img.width, img.height, img.stride, &eo, &map, &res, &err) ||
        upsample_map(m, map, img.width, img.height, &err)) {
        cli_file_error("explain", files[0], err.message);
        goto out;
    }
    if (ci < 0) ci = res.top_index[0];
    char line1[512], line2[256];
    snprintf(line1, sizeof line1, "%s  |  class: %s  |  p = %.1f%%%s", method_title(mi | (single_pass && mi <= DL_SALIENCY_LAYERCAM ? EV_ONE_PASS : 0)), dl_model_class_long_name(m, ci),
             100.0 * res.probs[ci], ci == res.top_index[0] ? " (top class)" : "");
    if (strlen(line1) > 90) /* long ImageNet synonyms: the short name reads better */
        snprintf(line1, sizeof line1, "%s  |  class: %s  |  p = %.1f%%%s", method_title(mi | (single_pass && mi <= DL_SALIENCY_LAYERCAM ? EV_ONE_PASS : 0)), dl_model_class_name(m, ci),
                 100.0 * res.probs[ci], ci == res.top_index[0] ? " (top class)" : "");
    snprintf(line2, sizeof line2, "Research/teaching aid, not a diagnosis. Highlighted = what drove the model, not the lesion.");
    if (out_path) {
        int ow, oh;
        uint8_t *ov = render_overlay(&img, map, (float)alpha, outline ? DH_OVERLAY_OUTLINE : DH_OVERLAY_FILL,
                                     line1, line2, &ow, &oh);
        if (!ov) {
            fprintf(stderr, "dermlens explain: cannot render the overlay (out of memory)\n");
            goto out;
        }
        int wrc = dl_png_write(out_path, ov, ow, oh, (size_t)ow * 3, 3, 8, &err);
        free(ov);
        if (wrc) {
            fprintf(stderr, "dermlens explain: %s\n", cli_disp(err.message));
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
            fprintf(stderr, "dermlens explain: %s\n", cli_disp(err.message));
            goto out;
        }
    }
    char caption[2048] = "";
    if (figure_path && cli_write_figure(figure_path, &img, map, m, mp, &res, ci, (dl_saliency_method)mi,
                                        outline ? DH_OVERLAY_OUTLINE : DH_OVERLAY_FILL, alpha, 3, caption,
                                        sizeof caption, &err)) {
        fprintf(stderr, "dermlens explain: --figure: %s\n", cli_disp(err.message));
        goto out;
    }
    printf("%s\n%s\n", cli_disp(line1), DL_DISCLAIMER);
    if (orient != 1)
        printf("EXIF orientation %d applied (%s): explained as %dx%d\n", orient, dl_orientation_description(orient),
               img.width, img.height);
    if (out_path) printf("overlay: %s\n", cli_disp(out_path));
    if (map_path) printf("map:     %s (16-bit grey)\n", cli_disp(map_path));
    if (figure_path) {
        printf("figure:  %s\n", cli_disp(figure_path));
        for (char *l = strtok(caption, "\n"); l; l = strtok(NULL, "\n")) printf("  %s\n", cli_disp(l));
    }
    rc = 0;
out:
    g_option_context_free(ctx);
    dl_result_free(&res);
    free(map);
    dl_image_free(&img);
    dl_model_free(m);
    g_strfreev(argv0);
    g_free(method); g_free(cls); g_free(layer); g_free(model_path); g_free(out_path); g_free(map_path);
    g_strfreev(eval_dirs); g_free(methods); g_free(json_path); g_free(plot_path); g_free(variants);
    g_free(threads_arg); g_free(upsample); g_free(figure_path);
    g_strfreev(files);
    return rc;
}
