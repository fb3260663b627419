/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens explain: saliency overlay for one image, and --evaluate: the
 * report of the engine's faithfulness study (dl_faith_run in
 * dermlens_eval.h: deletion / insertion AUCs against random and centre
 * baselines; the model randomisation sanity check of Adebayo et al. 2018). */
#include "cli.h"
#include "dermlens_eval.h"
#include "dermlens_host.h"
#include "figure.h"
#include "plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef DL_HAVE_CAIRO
#include <cairo.h>
#endif

/* ------------------------------------------------------------ overlay */


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
    dl_map_resize(map, W, H, m, Wd, Hd, (size_t)Wd);
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

/* ------------------------------------------------------------ methods and layers */

/* Titles and keys of study method specs, from the engine's method table
 * (rotating static buffers: the report is written by one thread). */
/* --upsample: how every method's map reaches the image before it is shown
 * or measured (smooth: host/'s dh_map_smooth, what the overlays show;
 * bilinear: the engine's map as it is). The baselines are not changed. */
static dh_upsample g_upsample = DH_UPSAMPLE_SMOOTH;

static int smooth_filter(void *user, const dl_model *m, float *map, int w, int h, dl_error *err)
{
    (void)user;
    double cx, cy;
    dh_saliency_cell(m, w, h, &cx, &cy);
    return dh_map_smooth(map, w, h, cx, cy, err);
}

static int upsample_map(const dl_model *m, float *map, int w, int h, dl_error *err)
{
    return g_upsample == DH_UPSAMPLE_SMOOTH ? smooth_filter(NULL, m, map, w, h, err) : 0;
}

static const char *method_title(int spec)
{
    static char buf[4][64];
    static int slot;
    return dl_faith_method_title(spec, buf[slot++ & 3], sizeof buf[0]);
}

static const char *method_key(int spec)
{
    static char buf[4][64];
    static int slot;
    return dl_faith_method_key(spec, buf[slot++ & 3], sizeof buf[0]);
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
    printf("Spatial layers usable with --layer (name prefixes are accepted):\n");
    dl_layer_info li;
    for (int k = 0; dl_explain_layer(m, k, &li) == 0; k++)
        printf("  %3d %-8s %4dx%-4d x%5d  %s%s\n", li.index, li.op, li.height, li.width, li.channels, li.name,
               li.is_default ? "   (default)" : "");
}

/* ------------------------------------------------------------ evaluate */

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

/* One data set: its images, the study's results. */
typedef struct {
    const char *dir;
    dl_dataset ds;
    int n_pick;
    int *pick;
    dl_faith_result r;
} ev_split;

/* --evaluate's progress: a bar on a terminal, else a line every 10 images. */
static int faith_progress(void *user, double fraction, const char *stage)
{
    int n = *(const int *)user, d = (int)lround(fraction * n);
    if (isatty(2)) cli_progress(NULL, fraction, stage);
    else if (d % 10 == 0 || d == n) fprintf(stderr, "[%d/%d]\n", d, n);
    return 0;
}

static int run_split(ev_split *sp, const char *dir, int limit, const dl_faith_options *fo, const uint8_t *model_bytes,
                     size_t model_size, const char *const *class_order, int n_class_order)
{
    memset(sp, 0, sizeof *sp);
    sp->dir = dir;
    dl_error err = {0};
    dl_dataset_options dopt = {.class_order = class_order, .n_class_order = n_class_order, .allow_subset = 1};
    if (dl_dataset_open(dir, &dopt, &sp->ds, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        return -1;
    }
    if (dl_faith_pick(&sp->ds, limit, &sp->pick, &sp->n_pick, &err)) {
        fprintf(stderr, "dermlens explain: %s\n", err.message);
        return -1;
    }
    dl_faith_options o = *fo;
    o.progress = faith_progress;
    o.progress_user = &sp->n_pick;
    int rc = dl_faith_run(model_bytes, model_size, &sp->ds, sp->pick, sp->n_pick, &o, &sp->r, &err);
    for (int t = 0; t < sp->r.n_workers; t++)
        if (sp->r.worker_errors[t]) fprintf(stderr, "dermlens explain: worker %d: %s\n", t, sp->r.worker_errors[t]);
    if (rc && !sp->r.n_workers) fprintf(stderr, "dermlens explain: %s\n", err.message);
    for (int i = 0; i < sp->r.n; i++)
        if (!sp->r.img[i].ok && sp->r.img[i].error) fprintf(stderr, "dermlens explain: %s\n", sp->r.img[i].error);
    return rc;
}

static void split_free(ev_split *sp)
{
    dl_faith_result_free(&sp->r);
    free(sp->pick);
    if (sp->ds.n) dl_dataset_free(&sp->ds);
}

/* per-image values of one statistic over the images that worked, optionally
 * only the off-centre subset */
static int collect(const ev_split *sp, const uint8_t *subset, double (*get)(const dl_faith_image *, int, int, int), int a,
                   int b, int c, double *out)
{
    int n = 0;
    for (int i = 0; i < sp->n_pick; i++)
        if (sp->r.img[i].ok && (!subset || subset[i])) out[n++] = get(&sp->r.img[i], a, b, c);
    return n;
}

static double get_auc(const dl_faith_image *r, int row, int rm, int cv)
{
    return r->auc[row][rm][cv];
}

static double get_auc_diff(const dl_faith_image *r, int row, int rm, int base)
{
    return r->auc[row][rm][DL_FAITH_MORF] - r->auc[base][rm][DL_FAITH_MORF];
}

static double get_sp(const dl_faith_image *r, int mi, int d, int unused)
{
    (void)unused;
    return r->spearman[mi][d];
}

static double get_ss(const dl_faith_image *r, int mi, int d, int unused)
{
    (void)unused;
    return r->ssim[mi][d];
}

static double get_sweep(const dl_faith_image *r, int v, int unused1, int unused2)
{
    (void)unused1;
    (void)unused2;
    return r->sweep[v];
}

static double get_sweep_diff(const dl_faith_image *r, int v, int vs_centre, int unused2)
{
    (void)unused2;
    return r->sweep[v] - (vs_centre ? r->sweep_centre : r->sweep[0]);
}

/* against the 8-flip mean (every member all 8): what a cheaper variant must not lose */
static double get_sweep_vs_default(const dl_faith_image *r, int v, int unused1, int unused2)
{
    (void)unused1;
    (void)unused2;
    return r->sweep[v] - r->sweep[dl_faith_variant_default()];
}

static const char *removal_name(int rm)
{
    return rm == DL_FAITH_ROAD ? "ROAD imputation" : "blur";
}

/* One line: does the first method beat both baselines on deletion AUC?
 * "beats" needs the 95% CI of the paired difference below zero. */
static void verdict(GString *md, const ev_split *sp, const int *methods, int n_methods)
{
    if (!n_methods || !sp->r.n_ok) return;
    double *v = malloc(sizeof(double) * (sp->n_pick + 1));
    if (!v) return;
    gchar *base = g_path_get_basename(sp->dir);
    g_string_append_printf(md, "- **%s** (%d images): ", base, sp->r.n_ok);
    for (int rm = 0; rm < DL_FAITH_N_REMOVALS; rm++)
        for (int b = 0; b < 2; b++) {
            int n = collect(sp, NULL, get_auc_diff, 0, rm, b ? n_methods : n_methods + 1, v);
            dl_paired p = dl_paired_test(v, n);
            char pb[32];
            const char *word = p.hi < 0 ? "beats" : p.lo > 0 ? "loses to" : "does not differ significantly from";
            g_string_append_printf(md, "%s%s %s the %s map with %s removal (%+.3f [%+.3f, %+.3f], p %s)",
                                   rm || b ? "; " : "", method_title(methods[0]), word, b ? "random" : "centre",
                                   rm == DL_FAITH_ROAD ? "ROAD" : "blur", p.mean, p.lo, p.hi, fmt_p(p.p, pb, sizeof pb));
        }
    g_string_append(md, ".\n");
    g_free(base);
    free(v);
}

static void report_split(GString *md, cJSON *jarr, const ev_split *sp, const int *methods, int n_methods, int steps,
                         int n_depths, int sweep, int sweep_only, const char *rnames[DL_FAITH_MAX_DEPTHS])
{
    const int n_rows = n_methods + DL_FAITH_N_BASELINES, centre = n_methods + 1, random = n_methods;
    double *v = malloc(sizeof(double) * (sp->n_pick + 1));
    uint8_t *off = calloc(sp->n_pick + 1, 1);
    if (!v || !off) { free(v); free(off); return; }
    cJSON *js = cJSON_CreateObject();
    cJSON_AddItemToArray(jarr, js);
    cJSON_AddStringToObject(js, "data", sp->dir);
    cJSON_AddNumberToObject(js, "images", sp->r.n_ok);
    cJSON_AddNumberToObject(js, "unreadable", sp->r.n_fail);
    cJSON_AddNumberToObject(js, "wall_seconds", sp->r.wall_seconds);
    cJSON_AddNumberToObject(js, "cpu_seconds", sp->r.cpu_seconds);
    /* off-centre subset: the quarter of images whose first method's map
     * agrees least (Spearman) with the centre Gaussian */
    int n_off = 0;
    double q = NAN;
    if (n_methods) {
        int n = 0;
        for (int i = 0; i < sp->n_pick; i++)
            if (sp->r.img[i].ok && !isnan(sp->r.img[i].rho_centre)) v[n++] = sp->r.img[i].rho_centre;
        if (n >= 4) {
            /* the n/4-th smallest */
            for (int a = 0; a < n; a++)
                for (int b = a + 1; b < n; b++)
                    if (v[b] < v[a]) { double t = v[a]; v[a] = v[b]; v[b] = t; }
            q = v[n / 4 - 1];
            for (int i = 0; i < sp->n_pick; i++)
                if (sp->r.img[i].ok && !isnan(sp->r.img[i].rho_centre) && sp->r.img[i].rho_centre <= q) { off[i] = 1; n_off++; }
        }
    }
    int counts[64] = {0};
    for (int i = 0; i < sp->n_pick; i++)
        if (sp->r.img[i].ok && sp->ds.labels[sp->pick[i]] < 64) counts[sp->ds.labels[sp->pick[i]]]++;
    g_string_append_printf(md, "### %s\n\n%d images (", sp->dir, sp->r.n_ok);
    for (int c = 0; c < sp->ds.n_classes && c < 64; c++)
        g_string_append_printf(md, "%s%s %d", c ? ", " : "", sp->ds.class_names[c], counts[c]);
    g_string_append_printf(md, "; %d unreadable); run time %.0f s wall, %.0f s CPU (all threads).\n\n", sp->r.n_fail,
                           sp->r.wall_seconds, sp->r.cpu_seconds);

    if (sweep_only) goto sweep_section;
    for (int rm = 0; rm < DL_FAITH_N_REMOVALS; rm++) {
        g_string_append_printf(md, "**Removal by %s** - deletion AUC (most relevant first; lower = more faithful), %s "
                                   "AUC (higher = more faithful); mean ± standard error over images.\n\n",
                               removal_name(rm), rm == DL_FAITH_ROAD ? "least-relevant-first deletion" : "insertion");
        g_string_append_printf(md, "| map | deletion AUC | %s AUC | %s - deletion | deletion AUC, off-centre quarter (n=%d) | CPU ms / map |\n|---|---|---|---|---|---|\n",
                               rm == DL_FAITH_ROAD ? "LeRF" : "insertion", rm == DL_FAITH_ROAD ? "LeRF" : "insertion", n_off);
        cJSON *rows_js = cJSON_AddArrayToObject(js, rm == DL_FAITH_ROAD ? "road" : "blur");
        for (int row = 0; row < n_rows; row++) {
            double md_, sd_, mi, si, mo, so;
            int n = collect(sp, NULL, get_auc, row, rm, DL_FAITH_MORF, v);
            dl_mean_se(v, n, &md_, &sd_);
            collect(sp, NULL, get_auc, row, rm, DL_FAITH_SECOND, v);
            dl_mean_se(v, n, &mi, &si);
            int no = collect(sp, off, get_auc, row, rm, DL_FAITH_MORF, v);
            dl_mean_se(v, no, &mo, &so);
            double cpu = 0;
            int nc = 0;
            for (int i = 0; i < sp->n_pick; i++)
                if (sp->r.img[i].ok) { cpu += sp->r.img[i].map_cpu[row]; nc++; }
            g_string_append_printf(md, "| %s | %.4f ± %.4f | %.4f ± %.4f | %.4f | %.4f ± %.4f | %.1f |\n",
                                   row_title(methods, n_methods, row), md_, sd_, mi, si, mi - md_, mo, so,
                                   nc ? 1e3 * cpu / nc : NAN);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "map", row_key(methods, n_methods, row));
            cJSON_AddStringToObject(o, "removal", rm == DL_FAITH_ROAD ? "road" : "blur");
            cJSON_AddNumberToObject(o, "deletion_auc", md_);
            cJSON_AddNumberToObject(o, "deletion_auc_se", sd_);
            cJSON_AddNumberToObject(o, rm == DL_FAITH_ROAD ? "lerf_auc" : "insertion_auc", mi);
            cJSON_AddNumberToObject(o, "deletion_auc_off_centre", mo);
            cJSON *cur = cJSON_AddArrayToObject(o, "mean_deletion_curve");
            for (int k = 0; k <= steps; k++) {
                double s = 0;
                int nn = 0;
                for (int i = 0; i < sp->n_pick; i++)
                    if (sp->r.img[i].ok) { s += sp->r.img[i].curve[row][rm][DL_FAITH_MORF][k]; nn++; }
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
                for (int rm = 0; rm < DL_FAITH_N_REMOVALS; rm++) {
                    int base = b ? random : centre;
                    if (b && sub) continue; /* random vs off-centre adds nothing */
                    int n = collect(sp, sub ? off : NULL, get_auc_diff, mi, rm, base, v);
                    dl_paired p = dl_paired_test(v, n);
                    char pb[32];
                    g_string_append_printf(md, "| %s | %s | %s | %s%d | %+.4f [%+.4f, %+.4f] | %d/%d | %s |\n",
                                           method_title(methods[mi]), b ? "random" : "centre", removal_name(rm),
                                           sub ? "off-centre " : "", n, p.mean, p.lo, p.hi, p.wins, n,
                                           fmt_p(p.p, pb, sizeof pb));
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "method", method_key(methods[mi]));
                    cJSON_AddStringToObject(o, "baseline", b ? "random" : "centre");
                    cJSON_AddStringToObject(o, "removal", rm == DL_FAITH_ROAD ? "road" : "blur");
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
        for (int d = 0; d < n_depths; d++) g_string_append_printf(md, " top %d |", dl_faith_depth_layers(d));
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
                dl_mean_se(v, n, &ms, &ses);
                collect(sp, NULL, get_ss, mi, d, 0, v);
                dl_mean_se(v, n, &mss, &sess);
                g_string_append_printf(md, " %.2f / %.2f%s |", ms, mss, flat ? " *" : "");
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "method", method_key(methods[mi]));
                cJSON_AddNumberToObject(o, "layers", dl_faith_depth_layers(d));
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
            if (sp->r.img[i].ok) v[n++] = sp->r.img[i].rho_centre;
        dl_mean_se(v, n, &mrc, &serc);
        g_string_append_printf(md, "\nLayers randomised, from the top: ");
        for (int d = 0; d < n_depths; d++) g_string_append_printf(md, "%s%d = %s", d ? "; " : "", dl_faith_depth_layers(d), rnames[d]);
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
            if (sp->r.img[i].ok) v[nc++] = sp->r.img[i].sweep_centre;
        dl_mean_se(v, nc, &mc, &sc);
        g_string_append_printf(md, "**Grad-CAM variants** (ROAD deletion AUC, mean ± SE; paired differences with 95%% CI "
                                   "and Wilcoxon p, against the first row and against the centre Gaussian, whose AUC "
                                   "here is %.4f ± %.4f):\n\n| variant | ROAD deletion AUC | minus first row [95%% CI] | "
                                   "p | minus the 8-flip mean, row %d [95%% CI] | minus centre [95%% CI] | wins vs centre | p |\n"
                                   "|---|---|---|---|---|---|---|---|\n",
                               mc, sc, dl_faith_variant_default());
        cJSON *wj = cJSON_AddArrayToObject(js, "sweep");
        for (int vi = 0; vi < dl_faith_variant_count(); vi++) {
            double mv, sv;
            int n = collect(sp, NULL, get_sweep, vi, 0, 0, v);
            dl_mean_se(v, n, &mv, &sv);
            if (isnan(mv)) continue;
            n = collect(sp, NULL, get_sweep_diff, vi, 0, 0, v);
            dl_paired p = dl_paired_test(v, n);
            const int nd = collect(sp, NULL, get_sweep_vs_default, vi, 0, 0, v);
            dl_paired pd = dl_paired_test(v, nd);
            char dcol[96] = "-";
            if (vi != dl_faith_variant_default() && nd > 0 && !isnan(pd.mean))
                snprintf(dcol, sizeof dcol, "%+.4f [%+.4f, %+.4f]", pd.mean, pd.lo, pd.hi);
            collect(sp, NULL, get_sweep_diff, vi, 1, 0, v);
            dl_paired pc = dl_paired_test(v, n);
            char pb[32], pb2[32];
            g_string_append_printf(md, "| %d. %s | %.4f ± %.4f | %+.4f [%+.4f, %+.4f] | %s | %s | %+.4f [%+.4f, %+.4f] | %d/%d | %s |\n",
                                   vi, dl_faith_variant_label(vi), mv, sv, p.mean, p.lo, p.hi, vi ? fmt_p(p.p, pb, sizeof pb) : "-",
                                   dcol, pc.mean, pc.lo, pc.hi, pc.wins, n, fmt_p(pc.p, pb2, sizeof pb2));
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "variant", dl_faith_variant_label(vi));
            cJSON_AddNumberToObject(o, "road_deletion_auc", mv);
            cJSON_AddNumberToObject(o, "se", sv);
            cJSON_AddItemToArray(wj, o);
        }
        /* the selection rule: a variant replaces the default only if it is
         * better with the 95% CI of the paired difference below zero */
        int best = -1;
        double best_hi = 0, best_mean = 0;
        for (int vi = 1; vi < dl_faith_variant_count(); vi++) {
            int n = collect(sp, NULL, get_sweep_diff, vi, 0, 0, v);
            dl_paired p = dl_paired_test(v, n);
            if (!isnan(p.hi) && p.hi < 0 && (best < 0 || p.mean < best_mean)) { best = vi; best_hi = p.hi; best_mean = p.mean; }
        }
        if (best >= 0)
            g_string_append_printf(md, "\nSelection rule (a variant is preferred to the first row only if its paired difference "
                                       "has a 95%% CI below zero): **%s** qualifies (%+.4f, CI upper %+.4f).\n", dl_faith_variant_label(best), best_mean, best_hi);
        else
            g_string_append_printf(md, "\nSelection rule (a variant is preferred to the first row only if its paired difference "
                                       "has a 95%% CI below zero): no variant qualifies.\n");
        g_string_append(md, "\n");
    }
    free(v);
    free(off);
}

static int evaluate(char **dirs, const char *model_path, int limit, const char *methods_arg, int steps,
                    int max_depth, int sweep, int sweep_only, unsigned variant_mask, int threads,
                    const char *report_path, const char *json_path, const char *plot_path, int argc, char **argv)
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
    int methods[DL_FAITH_MAX_METHODS], n_methods = 0;
    gchar **parts = g_strsplit(methods_arg, ",", -1);
    for (int i = 0; parts[i]; i++) {
        if (!*g_strstrip(parts[i])) continue;
        int mi = dl_faith_method_parse(parts[i]);
        if (mi < 0) {
            char *suffix = g_str_has_suffix(parts[i], ":1pass") ? strrchr(parts[i], ':') : NULL;
            if (suffix) *suffix = 0; /* name the method, not the form */
            fprintf(stderr, "dermlens explain: unknown method '%s' in --methods\n", parts[i]);
            g_strfreev(parts);
            dl_model_free(m);
            free(bytes);
            return 2;
        }
        int dup = 0;
        for (int j = 0; j < n_methods; j++) dup |= methods[j] == mi;
        if (!dup && n_methods < DL_FAITH_MAX_METHODS) methods[n_methods++] = mi;
    }
    g_strfreev(parts);
    dl_faith_cascade cascade = {0};
    const char *rnames[DL_FAITH_MAX_DEPTHS];
    if (!sweep_only) dl_faith_cascade_plan(bytes, size, max_depth, &cascade, NULL);
    const int n_depths = cascade.n_depths;
    for (int d = 0; d < n_depths; d++) rnames[d] = cascade.added[d];
    const int K = dl_model_num_classes(m);
    const char **class_order = g_new(const char *, K);
    for (int c = 0; c < K; c++) class_order[c] = dl_model_class_name(m, c);
    int in_w = 0, in_h = 0;
    dl_model_input_size(m, &in_w, &in_h);
    const int n_rows = n_methods + DL_FAITH_N_BASELINES;
    int n_dirs = 0;
    while (dirs[n_dirs]) n_dirs++;
    ev_split *sp = calloc(n_dirs, sizeof(ev_split));
    int rc = sp ? 0 : 1;
    double total_wall = 0, total_cpu = 0;
    for (int d = 0; !rc && d < n_dirs; d++) {
        fprintf(stderr, "dermlens explain: %s\n", dirs[d]);
        dl_faith_options fo = {.methods = methods, .n_methods = n_methods, .steps = steps, .n_depths = n_depths,
                               .sweep = (sweep && d == 0) || sweep_only, .sweep_only = sweep_only,
                               .variant_mask = variant_mask, .threads = threads,
                               .map_filter = g_upsample == DH_UPSAMPLE_SMOOTH ? smooth_filter : NULL};
        if (run_split(&sp[d], dirs[d], limit, &fo, bytes, size, class_order, K)) rc = 1;
        total_wall += sp[d].r.wall_seconds;
        total_cpu += sp[d].r.cpu_seconds;
    }
    g_free(class_order);
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
                               in_w, in_h, steps, 100.0 / steps, DL_FAITH_ROAD_NOISE);
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
        int n_panels = n_dirs * DL_FAITH_N_REMOVALS;
        double *y = calloc((size_t)n_panels * n_rows * (steps + 1), sizeof(double));
        char **ptitles = calloc(n_panels, sizeof(char *)), **ticks = calloc(steps + 1, sizeof(char *));
        const char **names = calloc(n_rows, sizeof(char *));
        if (y && ptitles && ticks && names) {
            for (int d = 0; d < n_dirs; d++)
                for (int rm = 0; rm < DL_FAITH_N_REMOVALS; rm++) {
                    int p = d * DL_FAITH_N_REMOVALS + rm;
                    gchar *base = g_path_get_basename(sp[d].dir);
                    ptitles[p] = g_strdup_printf("%s - deletion, %s", base, removal_name(rm));
                    g_free(base);
                    for (int row = 0; row < n_rows; row++)
                        for (int k = 0; k <= steps; k++) {
                            double s = 0;
                            int nn = 0;
                            for (int i = 0; i < sp[d].n_pick; i++)
                                if (sp[d].r.img[i].ok) { s += sp[d].r.img[i].curve[row][rm][DL_FAITH_MORF][k]; nn++; }
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
    gboolean layers = FALSE, sweep = FALSE, sweep_only = FALSE, single_pass = FALSE, all_flips = FALSE;
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
        {"all-flips-per-member", 0, 0, G_OPTION_ARG_NONE, &all_flips, "Ensemble models: every member runs all 8 flips (4x the passes for 4 members; the default shares the flips out among the members, equally faithful on ham10000/val)", NULL},
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
        if (steps < 2 || steps > DL_FAITH_MAX_STEPS) {
            fprintf(stderr, "dermlens explain: --steps must be in 2..%d\n", DL_FAITH_MAX_STEPS);
            goto out;
        }
        unsigned variant_mask = ~0u; /* --sweep: every row */
        if (variants) {
            variant_mask = 1u;
            gchar **tok = g_strsplit(variants, ",", -1);
            for (int i = 0; tok[i]; i++) {
                char *end = NULL;
                long v = strtol(tok[i], &end, 10);
                if (end == tok[i] || *end || v < 0 || v >= dl_faith_variant_count()) {
                    fprintf(stderr, "dermlens explain: --variants: '%s' is not a row 0..%d\n", tok[i], dl_faith_variant_count() - 1);
                    g_strfreev(tok);
                    goto out;
                }
                variant_mask |= 1u << v;
            }
            g_strfreev(tok);
        }
        rc = evaluate(eval_dirs, mp, limit, methods ? methods : "gradcam,gradcam:1pass,gradcam++,layercam", steps, rand_layers, sweep || sweep_only,
                      sweep_only, variant_mask, threads, out_path, json_path, plot_path, argc0, argv0);
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
        fprintf(stderr, "dermlens explain: unknown method '%s' (", method);
        for (int k = 0; k < dl_explain_method_count(); k++)
            fprintf(stderr, "%s%s", k ? ", " : "", dl_explain_method_name(k));
        fprintf(stderr, ")\n");
        goto out;
    }
    const int spec = mi | (single_pass && dl_explain_method_single_pass(mi) ? DL_FAITH_ONE_PASS : 0);
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
                             .progress = cli_progress, .single_pass = single_pass,
                             .every_member_all_flips = all_flips};
    if (dl_explain_rgb8(m, img.pixels, img.width, img.height, img.stride, &eo, &map, &res, &err) ||
        upsample_map(m, map, img.width, img.height, &err)) {
        cli_file_error("explain", files[0], err.message);
        goto out;
    }
    if (ci < 0) ci = res.top_index[0];
    char line1[512], line2[256];
    snprintf(line1, sizeof line1, "%s  |  class: %s  |  p = %.1f%%%s", method_title(spec), dl_model_class_long_name(m, ci),
             100.0 * res.probs[ci], ci == res.top_index[0] ? " (top class)" : "");
    if (strlen(line1) > 90) /* long ImageNet synonyms: the short name reads better */
        snprintf(line1, sizeof line1, "%s  |  class: %s  |  p = %.1f%%%s", method_title(spec), dl_model_class_name(m, ci),
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
