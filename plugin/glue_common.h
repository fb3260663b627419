/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Code shared by the GIMP 2.10 and 3.0 glue that needs GLib/GEGL/GTK but
 * not libgimp: region maths, reading pixels, writing layer pixels, the
 * progress bridge and the result dialog body. Included by exactly one glue
 * file per build (static functions). */
#ifndef DLP_GLUE_COMMON_H
#define DLP_GLUE_COMMON_H

#include <gegl.h>
#include <glib.h>
#include <gtk/gtk.h>
#include <pango/pangocairo.h>
#include <stdio.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>

#include "annotate.h"

#define DLP_PROC_CLASSIFY "plug-in-dermlens-classify"
#define DLP_PROC_BATCH "plug-in-dermlens-batch"
#define DLP_MENU_PATH "<Image>/Filters/Dermatology"
/* Larger regions are analysed at reduced scale (the network sees 224 x 224
 * anyway): GIMP itself makes a sub-thumbnail of at most DLP_THUMB_MAX on a
 * side, so the plug-in never pulls every tile of a huge layer over the wire
 * (30000 x 30000 would be 220000 tile round trips) and its memory stays
 * bounded whatever the layer size. */
#define DLP_MAX_ANALYSIS_PIXELS (16 * 1024 * 1024)
#define DLP_THUMB_MAX 1024 /* the PDB's limit for gimp-drawable-sub-thumbnail */
/* Above this the saliency overlay is not added: a full-size RGBA layer
 * (3.6 GB for 30000 x 30000) would double the image's memory and GIMP takes
 * many minutes to scale it up. The classification, label and parasite are
 * still added, and the parasite says why the overlay is missing. */
#define DLP_MAX_OVERLAY_PIXELS (64.0 * 1024 * 1024)
#define DLP_STRIP_ROWS 128

static char *dlp_plugin_dir; /* folder of the plug-in binary, for the model lookup */

/* Analysis geometry for a region of a drawable (drawable coordinates). */
typedef struct {
    int x, y, w, h;        /* region in drawable coordinates */
    int ox, oy;            /* drawable offsets in the image */
    double scale;          /* 1 or < 1 for huge regions */
    int ax, ay, aw, ah;    /* region at that scale */
} dlp_geom;

static void dlp_geom_init(dlp_geom *g, int x, int y, int w, int h, int ox, int oy)
{
    g->x = x;
    g->y = y;
    g->w = w;
    g->h = h;
    g->ox = ox;
    g->oy = oy;
    double px = (double)w * (double)h;
    if (px > DLP_MAX_ANALYSIS_PIXELS) {
        double sx = (double)DLP_THUMB_MAX / w, sy = (double)DLP_THUMB_MAX / h;
        g->scale = sx < sy ? sx : sy;
        g->ax = (int)floor(x * g->scale);
        g->ay = (int)floor(y * g->scale);
        g->aw = (int)floor(w * g->scale);
        g->ah = (int)floor(h * g->scale);
        if (g->aw > DLP_THUMB_MAX)
            g->aw = DLP_THUMB_MAX;
        if (g->ah > DLP_THUMB_MAX)
            g->ah = DLP_THUMB_MAX;
        if (g->aw < DLP_MIN_REGION)
            g->aw = DLP_MIN_REGION;
        if (g->ah < DLP_MIN_REGION)
            g->ah = DLP_MIN_REGION;
    } else {
        g->scale = 1.0;
        g->ax = x;
        g->ay = y;
        g->aw = w;
        g->ah = h;
    }
}

static int dlp_format_is_float(const Babl *fmt)
{
    const Babl *t = fmt ? babl_format_get_type(fmt, 0) : NULL;
    return t && (t == babl_type("half") || t == babl_type("float") || t == babl_type("double"));
}

/* R'G'B' float -> u8 with a fixed rule for values babl may pass through
 * from float layers: NaN and -Inf give 0, +Inf gives 255, the rest is
 * clamped to [0, 1] and rounded. */
static guint8 dlp_float_to_u8(float v)
{
    if (!(v > 0.0f)) /* also NaN */
        return 0;
    if (v >= 1.0f)
        return 255;
    return (guint8)(v * 255.0f + 0.5f);
}

/* Region pixels as R'G'B' u8 through babl, whatever the drawable's type and
 * precision. Float layers are read as float in strips and converted with
 * dlp_float_to_u8, so NaN/Inf pixels give defined values whatever babl
 * does with them. Returns g_malloc'd memory or NULL with a message. */
static guint8 *dlp_read_rgb(GeglBuffer *buf, const dlp_geom *g, gchar **msg)
{
    gsize n = (gsize)g->aw * (gsize)g->ah * 3;
    guint8 *rgb = g_try_malloc(n);
    if (!rgb) {
        *msg = g_strdup_printf("Not enough memory to read a %d x %d region", g->aw, g->ah);
        return NULL;
    }
    if (!dlp_format_is_float(gegl_buffer_get_format(buf))) {
        GeglRectangle r = {g->ax, g->ay, g->aw, g->ah};
        gegl_buffer_get(buf, &r, g->scale, babl_format("R'G'B' u8"), rgb, g->aw * 3,
                        GEGL_ABYSS_NONE);
        return rgb;
    }
    int rows = g->ah < 64 ? g->ah : 64;
    float *strip = g_try_malloc((gsize)g->aw * (gsize)rows * 3 * sizeof(float));
    if (!strip) {
        g_free(rgb);
        *msg = g_strdup_printf("Not enough memory to read a %d x %d region", g->aw, g->ah);
        return NULL;
    }
    for (int y0 = 0; y0 < g->ah; y0 += rows) {
        int nr = g->ah - y0 < rows ? g->ah - y0 : rows;
        GeglRectangle r = {g->ax, g->ay + y0, g->aw, nr};
        gegl_buffer_get(buf, &r, g->scale, babl_format("R'G'B' float"), strip,
                        g->aw * 3 * (gint)sizeof(float), GEGL_ABYSS_NONE);
        gsize cnt = (gsize)g->aw * (gsize)nr * 3;
        guint8 *dst = rgb + (gsize)y0 * (gsize)g->aw * 3;
        for (gsize i = 0; i < cnt; i++)
            dst[i] = dlp_float_to_u8(strip[i]);
    }
    g_free(strip);
    return rgb;
}

/* Font size that makes a text of text_w x text_h pixels (at size) fit a
 * box_w x box_h box; size itself when it already fits. */
static double dlp_fit_font_size(double size, int text_w, int text_h, int box_w, int box_h)
{
    if (text_w <= box_w && text_h <= box_h)
        return size;
    double f = 1.0;
    if (text_w > box_w && text_w > 0)
        f = (double)box_w / text_w;
    if (text_h > box_h && text_h > 0 && (double)box_h / text_h < f)
        f = (double)box_h / text_h;
    double s = floor(size * f * 0.97 * 10.0) / 10.0; /* a little margin for hinting */
    return s < 1.0 ? 1.0 : s;
}

/* Message for a region below the minimum size. */
static gchar *dlp_too_small_msg(int w, int h, gboolean selection)
{
    if (selection)
        return g_strdup_printf("The region to classify is %d x %d pixels; DermLens needs at least "
                               "%d x %d. Select a larger area.", w, h, DLP_MIN_REGION,
                               DLP_MIN_REGION);
    return g_strdup_printf("The layer is %d x %d pixels; DermLens needs at least %d x %d.", w, h,
                           DLP_MIN_REGION, DLP_MIN_REGION);
}

/* A sub-thumbnail from GIMP (bpp 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; u8)
 * as R'G'B' u8; alpha is dropped, as the babl read of a layer does. */
static guint8 *dlp_thumb_to_rgb(const guint8 *data, gsize size, int w, int h, int bpp, gchar **msg)
{
    gsize n = (gsize)w * (gsize)h;
    if (w < 1 || h < 1 || bpp < 1 || bpp > 4 || size < n * (gsize)bpp) {
        *msg = g_strdup_printf("GIMP returned an unusable %d x %d (%d bytes per pixel) reduced copy "
                               "of the region", w, h, bpp);
        return NULL;
    }
    guint8 *rgb = g_try_malloc(n * 3);
    if (!rgb) {
        *msg = g_strdup_printf("Not enough memory to read a %d x %d region", w, h);
        return NULL;
    }
    for (gsize i = 0; i < n; i++) {
        const guint8 *s = data + i * (gsize)bpp;
        guint8 *d = rgb + i * 3;
        if (bpp <= 2) {
            d[0] = d[1] = d[2] = s[0];
        } else {
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    }
    return rgb;
}

/* Write 8-bit R'G'B'A / Y'A pixels into a layer buffer. A layer of higher
 * precision (u16, half, float) gets them as float: from an 8-bit source babl
 * builds a lookup table over every possible pixel (256^3 entries, about
 * 350 MiB measured in the plug-in) once enough pixels go through, while
 * float to anything is computed. v / 255 is exact enough that u8 -> float
 * -> u8 round-trips, so 8-bit layers could take either; they keep u8. */
static gboolean dlp_set_u8_pixels(GeglBuffer *buf, const GeglRectangle *r, int channels,
                                  const guint8 *px, gchar **msg)
{
    const Babl *layer_type = babl_format_get_type(gegl_buffer_get_format(buf), 0);
    if (layer_type == babl_type("u8")) {
        gegl_buffer_set(buf, r, 0, babl_format(channels == 4 ? "R'G'B'A u8" : "Y'A u8"), px,
                        GEGL_AUTO_ROWSTRIDE);
        return TRUE;
    }
    gsize n = (gsize)r->width * (gsize)r->height * (gsize)channels;
    float *f = g_try_malloc(n * sizeof(float));
    if (!f) {
        *msg = g_strdup("Not enough memory to write the DermLens layers");
        return FALSE;
    }
    for (gsize i = 0; i < n; i++)
        f[i] = px[i] * (1.0f / 255.0f);
    gegl_buffer_set(buf, r, 0, babl_format(channels == 4 ? "R'G'B'A float" : "Y'A float"), f,
                    GEGL_AUTO_ROWSTRIDE);
    g_free(f);
    return TRUE;
}

/* Fill a new layer's buffer with the overlay, in strips to bound memory. */
static gboolean dlp_write_overlay(GeglBuffer *buf, const dlp_analysis *an, int w, int h,
                                  int channels, gchar **msg)
{
    int rows = h < DLP_STRIP_ROWS ? h : DLP_STRIP_ROWS;
    guint8 *strip = g_try_malloc((gsize)w * (gsize)rows * (gsize)channels);
    if (!strip) {
        *msg = g_strdup("Not enough memory for the saliency overlay");
        return FALSE;
    }
    gboolean ok = TRUE;
    for (int y0 = 0; ok && y0 < h; y0 += rows) {
        int n = h - y0 < rows ? h - y0 : rows;
        dlp_overlay_rows(an->map, an->map_width, an->map_height, w, h, y0, n, channels, strip);
        GeglRectangle r = {0, y0, w, n};
        ok = dlp_set_u8_pixels(buf, &r, channels, strip, msg);
    }
    g_free(strip);
    return ok;
}

/* ------------------------------------------------------------------ labels */

/* Label text height for a region: scales with its short side (about 1/15 of
 * it: 15 px on 224 px, 533 px on 8000 px), never below 14 px on a region of
 * 200 px or more; smaller regions get smaller text (at least 8 px). */
static double dlp_label_font_px(int w, int h)
{
    int s = w < h ? w : h;
    double px = s * (1.0 / 15.0);
    double lo = s >= 200 ? 14.0 : 8.0;
    if (px < lo)
        px = lo;
    if (px > 600.0)
        px = 600.0;
    return floor(px * 10.0 + 0.5) / 10.0;
}

/* Margin between the region's edge and the label box / legend, and the box's
 * inner padding, for a font size. */
static int dlp_label_margin(double font_px)
{
    int m = (int)(font_px * 0.3 + 0.5);
    return m < 3 ? 3 : m;
}

/* Characters per line that fit box_w pixels at font_px (Sans averages a
 * little over half an em per character). */
static int dlp_label_cols(int box_w, double font_px)
{
    int c = (int)(box_w / (font_px * 0.5));
    return c < 8 ? 8 : c;
}

/* A w x h box of the label background: black at 62 % alpha. */
static guint8 *dlp_box_pixels(int w, int h, int channels)
{
    gsize n = (gsize)w * (gsize)h;
    guint8 *px = g_try_malloc(n * (gsize)channels);
    if (!px)
        return NULL;
    for (gsize i = 0; i < n; i++) {
        memset(px + i * channels, 0, (gsize)channels - 1);
        px[i * channels + channels - 1] = 158;
    }
    return px;
}

/* The legend, drawn into pixels: a semi-opaque dark box holding the method's
 * name ("Grad-CAM saliency") over "low [colour bar] high". Its size follows
 * the label font and is at most max_w wide. Returns straight-alpha R'G'B'A
 * (channels 4) or Y'A (channels 2) pixels, g_free them. */
static guint8 *dlp_legend_render(double font_px, int max_w, dl_saliency_method method,
                                 int channels, int *out_w, int *out_h)
{
    double fs = font_px * 0.85;
    if (fs < 8.0)
        fs = 8.0;
    int pad = dlp_label_margin(fs);
    int bar_h = (int)(fs * 0.8 + 0.5);
    /* Measure the words first on a scratch surface. */
    cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *cr = cairo_create(scratch);
    PangoLayout *lay = pango_cairo_create_layout(cr);
    PangoFontDescription *fd = pango_font_description_from_string("Sans");
    pango_font_description_set_absolute_size(fd, fs * PANGO_SCALE);
    pango_layout_set_font_description(lay, fd);
    int low_w, low_h, high_w, high_h, title_w, title_h;
    pango_layout_set_text(lay, "low", -1);
    pango_layout_get_pixel_size(lay, &low_w, &low_h);
    pango_layout_set_text(lay, "high", -1);
    pango_layout_get_pixel_size(lay, &high_w, &high_h);
    gchar *title = g_strdup(dlp_method_title(method));
    pango_layout_set_text(lay, title, -1);
    pango_layout_get_pixel_size(lay, &title_w, &title_h);
    g_object_unref(lay);
    cairo_destroy(cr);
    cairo_surface_destroy(scratch);

    /* One row "Grad-CAM  low [bar] high" when it fits max_w with a bar of at
     * least 3 em; else the name above "low [bar] high"; else nothing. */
    int row_h = MAX(MAX(low_h, high_h), MAX(bar_h, title_h));
    int fixed1 = pad + title_w + 2 * pad + low_w + pad + pad + high_w + pad;
    int fixed2 = pad + low_w + pad + pad + high_w + pad;
    int min_bar = (int)(fs * 3.0);
    int one_row = max_w - fixed1 >= min_bar;
    if (!one_row && (max_w - fixed2 < min_bar || title_w + 2 * pad > max_w)) {
        g_free(title);
        pango_font_description_free(fd);
        return NULL;
    }
    int bar_w = MIN((int)(fs * 7.0), max_w - (one_row ? fixed1 : fixed2));
    int w = (one_row ? fixed1 : fixed2) + bar_w;
    int h = one_row ? pad + row_h + pad : pad + title_h + pad / 2 + row_h + pad;

    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        g_free(title);
        pango_font_description_free(fd);
        return NULL;
    }
    cr = cairo_create(surf);
    cairo_set_source_rgba(cr, 0, 0, 0, 158.0 / 255.0);
    cairo_paint(cr);
    lay = pango_cairo_create_layout(cr);
    pango_layout_set_font_description(lay, fd);
    cairo_set_source_rgb(cr, 1, 1, 1);
    int row_y = one_row ? pad : pad + title_h + pad / 2;
    int x0 = one_row ? pad + title_w + 2 * pad : pad;
    pango_layout_set_text(lay, title, -1);
    cairo_move_to(cr, pad, one_row ? row_y + (row_h - title_h) / 2.0 : pad);
    pango_cairo_show_layout(cr, lay);
    pango_layout_set_text(lay, "low", -1);
    cairo_move_to(cr, x0, row_y + (row_h - low_h) / 2.0);
    pango_cairo_show_layout(cr, lay);
    pango_layout_set_text(lay, "high", -1);
    cairo_move_to(cr, x0 + low_w + pad + bar_w + pad, row_y + (row_h - high_h) / 2.0);
    pango_cairo_show_layout(cr, lay);
    /* The bar: the overlay's own colour map, fully opaque. */
    int bx = x0 + low_w + pad, by = row_y + (row_h - bar_h) / 2;
    for (int x = 0; x < bar_w; x++) {
        guint8 rgba[4];
        dlp_colormap(bar_w > 1 ? (float)x / (float)(bar_w - 1) : 0.0f, rgba);
        if (channels == 2) {
            double g = bar_w > 1 ? (double)x / (bar_w - 1) : 0.0;
            cairo_set_source_rgb(cr, g, g, g);
        } else {
            cairo_set_source_rgb(cr, rgba[0] / 255.0, rgba[1] / 255.0, rgba[2] / 255.0);
        }
        cairo_rectangle(cr, bx + x, by, 1, bar_h);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, bx - 0.5, by - 0.5, bar_w + 1, bar_h + 1);
    cairo_stroke(cr);
    g_object_unref(lay);
    cairo_destroy(cr);
    pango_font_description_free(fd);
    g_free(title);
    cairo_surface_flush(surf);

    /* Premultiplied native-endian ARGB32 -> straight R'G'B'A / Y'A. */
    guint8 *px = g_try_malloc((gsize)w * (gsize)h * (gsize)channels);
    if (px) {
        const guint8 *data = cairo_image_surface_get_data(surf);
        int stride = cairo_image_surface_get_stride(surf);
        for (int y = 0; y < h; y++) {
            const guint32 *row = (const guint32 *)(data + (gsize)y * stride);
            for (int x = 0; x < w; x++) {
                guint32 v = row[x];
                int a = (int)(v >> 24), r = (v >> 16) & 255, g = (v >> 8) & 255, b = v & 255;
                if (a > 0 && a < 255) {
                    r = (r * 255 + a / 2) / a;
                    g = (g * 255 + a / 2) / a;
                    b = (b * 255 + a / 2) / a;
                }
                guint8 *d = px + ((gsize)y * w + x) * channels;
                if (channels == 4) {
                    d[0] = (guint8)MIN(r, 255);
                    d[1] = (guint8)MIN(g, 255);
                    d[2] = (guint8)MIN(b, 255);
                    d[3] = (guint8)a;
                } else {
                    d[0] = (guint8)MIN((r * 299 + g * 587 + b * 114 + 500) / 1000, 255);
                    d[1] = (guint8)a;
                }
            }
        }
    }
    cairo_surface_destroy(surf);
    *out_w = w;
    *out_h = h;
    return px;
}

/* Size of a text block (Pango markup) at font_px in the label's font, as
 * GIMP's text layer will lay it out (GIMP renders with the same Pango and
 * fonts). */
static void dlp_text_extent(const char *markup, double font_px, int *w, int *h)
{
    cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *cr = cairo_create(scratch);
    PangoLayout *lay = pango_cairo_create_layout(cr);
    PangoFontDescription *fd = pango_font_description_from_string("Sans-serif");
    pango_font_description_set_absolute_size(fd, font_px * PANGO_SCALE);
    pango_layout_set_font_description(lay, fd);
    pango_layout_set_markup(lay, markup, -1);
    pango_layout_get_pixel_size(lay, w, h);
    pango_font_description_free(fd);
    g_object_unref(lay);
    cairo_destroy(cr);
    cairo_surface_destroy(scratch);
}

/* What goes into the region and how big: the label text at the largest
 * size that fits (from dlp_label_font_px down to 14 px on regions of 200 px
 * and more, 8 px below), above the legend. When nothing fits, first the
 * legend gives way, then the class list shrinks to the top class; when even
 * that does not fit, no label is added (the group name and the parasite
 * still carry the result): text is never clipped. */
typedef struct {
    int show_label, show_legend, top_k;
    double font_px;
    int margin;
    int cols;               /* characters per line that fit */
} dlp_label_plan;

static void dlp_plan_labels(const dl_model *m, const dlp_analysis *an, const dlp_params *p, int rw,
                            int rh, int overlay, int channels, dlp_label_plan *pl)
{
    double f0 = dlp_label_font_px(rw, rh);
    double fmin = (rw >= 200 && rh >= 200) ? 14.0 : 8.0;
    if (fmin > f0)
        fmin = f0;
    int want_leg = p->add_legend && overlay;
    memset(pl, 0, sizeof *pl);
    pl->font_px = f0;
    pl->margin = dlp_label_margin(f0);
    pl->top_k = p->top_k;
    pl->show_legend = want_leg;
    if (!p->add_labels)
        return;
    const struct {
        int legend, k;
    } tries[4] = {{want_leg, p->top_k}, {0, p->top_k}, {want_leg, 1}, {0, 1}};
    char *text = g_malloc(8192);
    for (int t = 0; t < 4; t++) {
        if (t > 0 && tries[t].legend == tries[t - 1].legend && tries[t].k == tries[t - 1].k)
            continue;
        gboolean last = FALSE;
        for (int i = 0; !last; i++) {
            double f = f0 * pow(0.92, i);
            if (f <= fmin) {
                f = fmin;
                last = TRUE;
            }
            int mg = dlp_label_margin(f), pad = mg, lw = 0, lh = 0;
            if (tries[t].legend) {
                guint8 *lpx = dlp_legend_render(f, rw - 2 * mg, p->method, channels, &lw, &lh);
                if (!lpx)
                    break; /* the legend itself does not fit: next try */
                g_free(lpx);
            }
            int tw_max = rw - 2 * mg - 2 * pad;
            int th_max = rh - 2 * mg - 2 * pad - (lh > 0 ? lh + mg : 0);
            if (tw_max < 8 || th_max < 8)
                continue;
            /* Wrap at the estimated width; narrower when Pango says the
             * lines are still too wide. GIMP 2.10 sets the headline apart
             * (a gap of 0.2 em) and lays lines out a little looser than a
             * plain Pango layout: keep 5 % of the height in reserve. */
            int cols = dlp_label_cols(tw_max, f), fits = 0;
            for (int c = 0; c < 4 && !fits; c++) {
                dlp_label_markup(m, &an->result, an->image_flag, tries[t].k, cols, 1, 1, text,
                                 8192);
                int w = 0, h = 0;
                dlp_text_extent(text, f, &w, &h);
                h += (int)ceil(f * 0.2 + 0.05 * h);
                if (h > th_max)
                    break;
                if (w <= tw_max)
                    fits = 1;
                else
                    cols = cols * 9 / 10;
            }
            if (fits) {
                pl->show_label = 1;
                pl->show_legend = tries[t].legend;
                pl->top_k = tries[t].k;
                pl->font_px = f;
                pl->margin = mg;
                pl->cols = cols;
                g_free(text);
                return;
            }
        }
    }
    g_free(text);
    pl->show_label = 0;
}

/* Columns for the label at font size size: the plan's at its own size,
 * scaled when the text had to be made smaller. */
static int dlp_plan_cols(const dlp_label_plan *pl, int tw_max, double size)
{
    if (pl->cols > 0 && pl->font_px > 0)
        return (int)(pl->cols * pl->font_px / size);
    return dlp_label_cols(tw_max, size);
}

/* Write w x h u8 pixels (channels 4 or 2) into a layer's buffer. */
static gboolean dlp_write_pixels(GeglBuffer *buf, const guint8 *px, int w, int h, int channels,
                                 gchar **msg)
{
    GeglRectangle r = {0, 0, w, h};
    return dlp_set_u8_pixels(buf, &r, channels, px, msg);
}

/* The result dialog's headline as GTK markup: large, bold, in the warning
 * colour when out of distribution (then why), the caution colour when
 * uncertain. g_free it. */
static gchar *dlp_result_headline_markup(const dl_model *m, const dlp_analysis *an)
{
    char head[512];
    dlp_headline(m, &an->result, an->image_flag, head, sizeof head);
    dlp_verdict v = dlp_verdict_of(&an->result, an->image_flag);
    const char *col = v == DLP_VERDICT_OOD         ? "#d35400"
                      : v == DLP_VERDICT_UNCERTAIN ? "#b7950b"
                                                   : NULL;
    gchar *esc = g_markup_escape_text(head, -1);
    gchar *out;
    if (col)
        out = g_strdup_printf("<span size=\"large\" weight=\"bold\" foreground=\"%s\">%s</span>",
                              col, esc);
    else
        out = g_strdup_printf("<span size=\"large\" weight=\"bold\">%s</span>", esc);
    g_free(esc);
    if (v == DLP_VERDICT_OOD) {
        gchar *why = g_markup_escape_text(an->image_flag ? an->image_reason
                                                         : "the model's features are unlike its "
                                                           "training images",
                                          -1);
        gchar *t = g_strdup_printf("%s\n<small>Why: %s. The classes below are shown for "
                                   "completeness only.</small>", out, why);
        g_free(why);
        g_free(out);
        out = t;
    }
    return out;
}

/* Test seam for the real-GIMP dialog test (tests/gimp/): with the
 * environment variable DERMLENS_DIALOG_TEST=FILE, a dialog that is shown
 * appends what the user would read to FILE (every label, tooltip, combo-box
 * entry and file-chooser widget, one "kind<TAB>text" line each), then
 * answers itself with OK (Close for the result dialog) a moment later.
 * Nothing happens without the variable. */
static void dlp_dump_widget(GtkWidget *w, gpointer data)
{
    FILE *f = data;
    const char *type = G_OBJECT_TYPE_NAME(w);
    gchar *tip = gtk_widget_get_tooltip_text(w);
    if (tip) {
        fprintf(f, "tooltip\t%s\n", tip);
        g_free(tip);
    }
    if (GTK_IS_LABEL(w)) {
        const char *t = gtk_label_get_label(GTK_LABEL(w));
        if (t && t[0])
            fprintf(f, "label\t%s\n", t);
    }
    if (GTK_IS_BUTTON(w) && gtk_button_get_label(GTK_BUTTON(w)))
        fprintf(f, "button\t%s\n", gtk_button_get_label(GTK_BUTTON(w)));
    if (GTK_IS_FILE_CHOOSER(w) || strstr(type, "FileEntry") || strstr(type, "FileChooser"))
        fprintf(f, "filechooser\t%s\n", type);
    if (GTK_IS_COMBO_BOX(w)) {
        GtkTreeModel *model = gtk_combo_box_get_model(GTK_COMBO_BOX(w));
        GtkTreeIter it;
        int ncol = model ? gtk_tree_model_get_n_columns(model) : 0;
        for (gboolean ok = model && gtk_tree_model_get_iter_first(model, &it); ok;
             ok = gtk_tree_model_iter_next(model, &it)) {
            for (int c = 0; c < ncol; c++) {
                if (gtk_tree_model_get_column_type(model, c) != G_TYPE_STRING)
                    continue;
                gchar *v = NULL;
                gtk_tree_model_get(model, &it, c, &v, -1);
                if (v)
                    fprintf(f, "choice\t%d\t%s\n", c, v);
                g_free(v);
            }
        }
    }
    /* A button's own label is reported above, not again as a child. */
    if (GTK_IS_CONTAINER(w) && !(GTK_IS_BUTTON(w) && gtk_button_get_label(GTK_BUTTON(w))))
        gtk_container_forall(GTK_CONTAINER(w), dlp_dump_widget, data);
}

static gboolean dlp_dialog_test_fire(gpointer dlg)
{
    const char *path = g_getenv("DERMLENS_DIALOG_TEST");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "dialog\t%s\n", gtk_window_get_title(GTK_WINDOW(dlg)));
        dlp_dump_widget(GTK_WIDGET(dlg), f);
        fprintf(f, "end\n");
        fclose(f);
    }
    GtkWidget *ok = gtk_dialog_get_widget_for_response(GTK_DIALOG(dlg), GTK_RESPONSE_OK);
    gtk_dialog_response(GTK_DIALOG(dlg), ok ? GTK_RESPONSE_OK : GTK_RESPONSE_CLOSE);
    return FALSE;
}

static void dlp_dialog_test_hook(GtkWidget *dlg)
{
    if (g_getenv("DERMLENS_DIALOG_TEST") && g_getenv("DERMLENS_DIALOG_TEST")[0])
        g_timeout_add(500, dlp_dialog_test_fire, dlg);
}

static gint64 dlp_t0; /* plug-in start, for DERMLENS_STATS */

/* Peak resident memory of this process image in KiB (VmHWM), or -1.
 * Not getrusage's ru_maxrss: Linux carries that over fork + exec, so in a
 * plug-in it starts at GIMP's own RSS when GIMP forked us (about 400 MiB
 * for a small image, 800 MiB with a 30000 x 30000 one). */
static long dlp_peak_rss_kib(void)
{
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* With env DERMLENS_STATS set, print wall time since start and peak RSS
 * (used to measure big layers; silent otherwise). */
static void dlp_report_stats(const char *what)
{
    if (!g_getenv("DERMLENS_STATS"))
        return;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    long hwm = dlp_peak_rss_kib();
    char peak[64];
    if (hwm >= 0)
        g_snprintf(peak, sizeof peak, "%.1f MiB", hwm / 1024.0);
    else
        g_strlcpy(peak, "unknown (no /proc)", sizeof peak);
    g_printerr("dermlens-stats: %s: %.2f s wall since plug-in start, %.2f s CPU, peak RSS %s "
               "(VmHWM; ru_maxrss, which includes GIMP's RSS at fork, %ld MiB)\n",
               what, (double)(g_get_monotonic_time() - dlp_t0) / 1e6, cpu, peak, ru.ru_maxrss / 1024);
}

static gchar *dlp_plugin_dir_from_argv0(const char *argv0)
{
    gchar *abs = g_canonicalize_filename(argv0, NULL);
    gchar *dir = g_path_get_dirname(abs);
    g_free(abs);
    return dir;
}

#endif
