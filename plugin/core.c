/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The GIMP plug-in's logic, once for GIMP 2.10 and 3.0: reading the region,
 * the analysis, the layers it adds (overlay, legend, label, background), the
 * parasite, the result dialog and the batch review. What GIMP's two APIs
 * spell differently comes in through dlp_gimp (plugin.h); GLib, GEGL, GTK,
 * Pango and the libgimp calls both APIs share are used directly. */
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>
#include <pango/pangocairo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "plugin.h"
#include "dermlens_io.h"

/* A region wider or taller than DLP_THUMB_MAX is analysed at reduced scale
 * (the network sees 224 x 224 anyway, from the engine's antialiased resize
 * of what it is given): GIMP itself makes a sub-thumbnail of at most
 * DLP_THUMB_MAX on a side, so the plug-in never pulls every tile of a big
 * layer over the wire (a 4000 x 3000 layer is 2900 tile round trips, 30000 x
 * 30000 would be 220000) and its memory stays bounded whatever the layer
 * size. The probabilities of a 12-megapixel layer read so differ from a
 * full read's by at most 0.016 on 29 clean test images, 0.023 on 10 with
 * pixel noise (docs/reports/plugin-speed.md). */
#define DLP_THUMB_MAX 1024 /* the PDB's limit for gimp-drawable-sub-thumbnail */
/* Above this the saliency overlay is not added: a full-size RGBA layer
 * (3.6 GB for 30000 x 30000) would double the image's memory and GIMP takes
 * many minutes to scale it up. The classification, label and parasite are
 * still added, and the parasite says why the overlay is missing. */
#define DLP_MAX_OVERLAY_PIXELS (64.0 * 1024 * 1024)
/* Above this a map read at reduced scale goes to GIMP at that scale and
 * GIMP scales the layer up; below, the plug-in upsamples it and writes the
 * region's size (measured faster: tests/gimp/bench-gimp2.sh). */
#define DLP_MAX_WRITE_PIXELS (16.0 * 1024 * 1024)
#define DLP_STRIP_ROWS 128

static char *dlp_plugin_dir; /* folder of the plug-in binary, for the model search */
static gint64 dlp_t0;        /* plug-in start, for DERMLENS_STATS */

/* Analysis geometry for a region of a drawable (drawable coordinates). */
typedef struct {
    int x, y, w, h;        /* region in drawable coordinates */
    int ox, oy;            /* drawable offsets in the image */
    double scale;          /* 1, or < 1 for regions over DLP_THUMB_MAX on a side */
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
    if (w > DLP_THUMB_MAX || h > DLP_THUMB_MAX) {
        /* A power of two: GIMP's reduced copy is then one of its mipmap
         * levels, box-averaged 2 x 2 at each level (at 1/4, 4 x 4 pixels),
         * which the engine's resize to the network's input follows much as
         * its own resize of the full region would. A scale just fitting
         * 1024 px resamples a level by bilinear steps instead: on noisy
         * pixels the network then saw visibly more noise. */
        g->scale = 0.5;
        while (w * g->scale > DLP_THUMB_MAX || h * g->scale > DLP_THUMB_MAX)
            g->scale *= 0.5;
        g->ax = (int)floor(x * g->scale);
        g->ay = (int)floor(y * g->scale);
        g->aw = (int)floor(w * g->scale);
        g->ah = (int)floor(h * g->scale);
        if (g->aw > DLP_THUMB_MAX)
            g->aw = DLP_THUMB_MAX;
        if (g->ah > DLP_THUMB_MAX)
            g->ah = DLP_THUMB_MAX;
        if (g->aw < DH_MIN_REGION)
            g->aw = DH_MIN_REGION;
        if (g->ah < DH_MIN_REGION)
            g->ah = DH_MIN_REGION;
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

/* Message for a region below the minimum size. */
static gchar *dlp_too_small_msg(int w, int h, gboolean selection)
{
    if (selection)
        return g_strdup_printf("The region to classify is %d x %d pixels; DermLens needs at least "
                               "%d x %d. Select a larger area.", w, h, DH_MIN_REGION,
                               DH_MIN_REGION);
    return g_strdup_printf("The layer is %d x %d pixels; DermLens needs at least %d x %d.", w, h,
                           DH_MIN_REGION, DH_MIN_REGION);
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

/* Fill a new layer's buffer (w x h, the map's size) with the colour map of
 * map, or with its outline at o's level (o->width pixels wide) when outline
 * is set, in strips to bound memory. */
static gboolean dlp_write_overlay(GeglBuffer *buf, const float *map, int w, int h,
                                  const dh_overlay *o, gboolean outline, int channels, gchar **msg)
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
        if (outline)
            dh_outline_rows(map, w, h, o->level, o->width, y0, n, channels, strip);
        else
            dh_overlay_rows(map, w, y0, n, channels, strip);
        GeglRectangle r = {0, y0, w, n};
        ok = dlp_set_u8_pixels(buf, &r, channels, strip, msg);
    }
    g_free(strip);
    return ok;
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
    int pad = dh_label_margin(fs);
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
    gchar *title = g_strdup(dh_method_title(method));
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
        dh_colormap(bar_w > 1 ? (float)x / (float)(bar_w - 1) : 0.0f, rgba);
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
static gchar *dlp_result_headline_markup(const dl_model *m, const dh_analysis *an)
{
    char head[512];
    dh_headline(m, &an->result, an->image_flag, head, sizeof head);
    dh_verdict v = dh_verdict_of(&an->result, an->image_flag);
    const char *col = v == DH_VERDICT_OOD         ? "#d35400"
                      : v == DH_VERDICT_UNCERTAIN ? "#b7950b"
                                                   : NULL;
    gchar *esc = g_markup_escape_text(head, -1);
    gchar *out;
    if (col)
        out = g_strdup_printf("<span size=\"large\" weight=\"bold\" foreground=\"%s\">%s</span>",
                              col, esc);
    else
        out = g_strdup_printf("<span size=\"large\" weight=\"bold\">%s</span>", esc);
    g_free(esc);
    if (v == DH_VERDICT_OOD) {
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

void dlp_dialog_test_hook(GtkWidget *dlg)
{
    if (g_getenv("DERMLENS_DIALOG_TEST") && g_getenv("DERMLENS_DIALOG_TEST")[0])
        g_timeout_add(500, dlp_dialog_test_fire, dlg);
}

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
void dlp_core_init(const char *argv0)
{
    dlp_t0 = g_get_monotonic_time();
    if (argv0) {
        gchar *abs = g_canonicalize_filename(argv0, NULL);
        dlp_plugin_dir = g_path_get_dirname(abs);
        g_free(abs);
    }
}

const char *dlp_method_nick(dl_saliency_method m)
{
    /* Choice nicks must be identifiers: the engine's name with "++" spelled
     * "-pp" (dl_saliency_method_from_name reads that spelling too). */
    static char nicks[16][32];
    if ((int)m < 0 || (int)m >= 16 || (int)m >= dh_method_count())
        return "";
    if (!nicks[m][0]) {
        const char *name = dl_saliency_method_name(m);
        size_t j = 0;
        for (size_t i = 0; name[i] && j + 4 < sizeof nicks[m]; i++) {
            if (name[i] == '+' && name[i + 1] == '+') {
                memcpy(nicks[m] + j, "-pp", 3);
                j += 3;
                i++;
            } else {
                nicks[m][j++] = name[i];
            }
        }
        nicks[m][j] = '\0';
    }
    return nicks[m];
}

/* ------------------------------------------------------------------ progress */

typedef struct {
    char last[128];
} host_state;

static void host_progress(void *host, double fraction, const char *text)
{
    host_state *h = host;
    if (text && h && strncmp(h->last, text, sizeof h->last - 1) != 0) {
        g_strlcpy(h->last, text, sizeof h->last);
        gchar *t = g_strdup_printf("DermLens: %s", text);
        gimp_progress_set_text(t);
        g_free(t);
    }
    gimp_progress_update(fraction);
}

/* ------------------------------------------------------------------ layers */

/* dh_plan_labels measures with the fonts GIMP will draw in. */
static void measure_text(void *user, const char *markup, double font_px, int *w, int *h)
{
    dlp_text_extent(markup, font_px, w, h);
}

static int measure_legend(void *user, double font_px, int max_w, dl_saliency_method method,
                          int *w, int *h)
{
    guint8 *px = dlp_legend_render(font_px, max_w, method, *(const int *)user, w, h);
    g_free(px);
    return px ? 0 : -1;
}

/* A new pixel layer in the group holding px (w x h x channels), or -1 with
 * *msg = what (on failure). */
static gint32 add_pixels(const dlp_gimp *g, gint32 image, gint32 group, const char *name,
                         const guint8 *px, int w, int h, int x, int y, int channels,
                         const char *what, gchar **msg)
{
    gint32 l = g->layer_new(image, group, name, w, h, x, y, 100.0, channels);
    if (l < 0) {
        *msg = g_strdup(what);
        return -1;
    }
    GeglBuffer *buf = g->buffer(l);
    gboolean wok = dlp_write_pixels(buf, px, w, h, channels, msg);
    g_object_unref(buf);
    if (!wok)
        return -1;
    g->update(l, w, h);
    return l;
}

/* The label's text at cols characters a line: with markup, the headline
 * in it; without (GIMP 2.10), the headline in head. */
static void label_texts(const dlp_gimp *g, const dl_model *m, const dh_analysis *an, int top_k,
                        int cols, char *head, size_t head_size, char *text, size_t text_size)
{
    if (!g->text_markup)
        dh_headline_wrapped(m, &an->result, an->image_flag, cols, head, head_size);
    dh_label_markup(m, &an->result, an->image_flag, top_k, cols, g->text_markup, g->text_markup,
                    text, text_size);
}

/* Size of the label's text block: the label layer, and the headline layer
 * above it with a gap (GIMP 2.10). */
static void text_block(const dlp_gimp *g, gint32 hl, gint32 tl, int gap, int *tw, int *th)
{
    g->size(tl, tw, th);
    if (hl >= 0) {
        int hw, hh;
        g->size(hl, &hw, &hh);
        *tw = MAX(*tw, hw);
        *th += hh + gap;
    }
}

/* The label: white text (the headline in a warning colour when the result is
 * not to be trusted) on a semi-opaque dark box, inside the region and above
 * the legend (lh high); wrapped, and made smaller only when it cannot fit
 * otherwise. */
static gboolean add_label(const dlp_gimp *g, gint32 image, gint32 group, const dh_region *region,
                          const dl_model *m, const dh_analysis *an, const dh_label_plan *plan,
                          int lh, int channels, int *added, gchar **msg)
{
    int mg = plan->margin, pad = mg;
    int tw_max = region->width - 2 * mg - 2 * pad;
    int th_max = region->height - 2 * mg - 2 * pad - (lh > 0 ? lh + mg : 0);
    if (tw_max < 8)
        tw_max = 8;
    if (th_max < 8)
        th_max = 8;
    double size = plan->font_px;
    char head[1024] = "", text[4096];
    label_texts(g, m, an, plan->top_k, dh_plan_cols(plan, tw_max, size), head, sizeof head, text,
                sizeof text);
    gint32 hl = -1, tl;
    if (!g->text_markup) {
        /* GIMP 2.10's text layers take no markup: the headline is a text
         * layer of its own, in bold and, when the result is not to be
         * trusted, in the warning / caution colour. */
        dh_verdict v = dh_verdict_of(&an->result, an->image_flag);
        hl = g->text_new(image, group, 0, head, "Sans-serif Bold", size,
                         v == DH_VERDICT_OOD         ? DH_COLOUR_WARNING
                         : v == DH_VERDICT_UNCERTAIN ? DH_COLOUR_CAUTION
                                                     : DH_COLOUR_TEXT);
        if (hl < 0) {
            *msg = g_strdup("Could not add the headline text layer");
            return FALSE;
        }
        tl = g->text_new(image, group, 1, text, "Sans-serif", size, DH_COLOUR_TEXT);
        if (tl < 0) {
            *msg = g_strdup("Could not add the label text layer");
            return FALSE;
        }
    } else {
        tl = g->text_new(image, group, 0, "DermLens", "Sans-serif", size, DH_COLOUR_TEXT);
        if (tl < 0) {
            *msg = g_strdup("Could not add the label text layer");
            return FALSE;
        }
        g->text_set(tl, text);
    }
    int gap = hl >= 0 ? (int)(size * 0.2 + 0.5) : 0;
    for (int i = 0; i < 8; i++) {
        int tw, th;
        text_block(g, hl, tl, gap, &tw, &th);
        if (tw <= tw_max && th <= th_max)
            break;
        double ns = dh_fit_font_size(size, tw, th, tw_max, th_max);
        if (ns >= size)
            ns = size * 0.92;
        if (ns < plan->font_px * 0.8)
            break; /* GIMP and Pango disagree by more than rounding */
        size = ns;
        if (hl >= 0)
            gap = (int)(size * 0.2 + 0.5);
        label_texts(g, m, an, plan->top_k, dh_plan_cols(plan, tw_max, size), head, sizeof head,
                    text, sizeof text);
        if (hl >= 0) {
            g->text_size(hl, size);
            g->text_set(hl, head);
        }
        g->text_size(tl, size);
        g->text_set(tl, text);
    }
    int tw, th, hh = 0, hw;
    text_block(g, hl, tl, gap, &tw, &th);
    int tx = region->x + mg + pad, ty = region->y + mg + pad;
    if (hl >= 0) {
        g->size(hl, &hw, &hh);
        g->move(hl, tx, ty);
        g->rename(hl, "Headline");
    }
    g->move(tl, tx, ty + (hl >= 0 ? hh + gap : 0));
    g->rename(tl, "Labels");
    uint8_t *bpx = dh_box_pixels(tw + 2 * pad, th + 2 * pad, channels);
    if (!bpx) {
        *msg = g_strdup("Could not add the label background");
        return FALSE;
    }
    gint32 box = add_pixels(g, image, group, "Text background", bpx, tw + 2 * pad, th + 2 * pad,
                            region->x + mg, region->y + mg, channels,
                            "Could not add the label background", msg);
    free(bpx);
    if (box < 0)
        return FALSE;
    /* Below the text layers. */
    g->reorder(image, box, group, hl >= 0 ? 2 : 1);
    *added += hl >= 0 ? 3 : 2;
    return TRUE;
}

/* The colour map of map (mw x mh) at w x h pixels (bilinear, as the
 * engine upsamples its maps), rows [y_begin, y_end) into out: one part of
 * the overlay, on a thread of its own. */
typedef struct {
    const float *map;
    int mw, mh, w, h, channels, y_begin, y_end;
    guint8 *out;
    gboolean ok;
} overlay_part;

static gpointer overlay_part_main(gpointer data)
{
    overlay_part *pt = data;
    gboolean same = pt->mw == pt->w && pt->mh == pt->h;
    float *rows = same ? NULL : g_try_malloc((gsize)pt->w * DLP_STRIP_ROWS * sizeof(float));
    pt->ok = same || rows;
    for (int y0 = pt->y_begin; pt->ok && y0 < pt->y_end; y0 += DLP_STRIP_ROWS) {
        int n = MIN(DLP_STRIP_ROWS, pt->y_end - y0);
        guint8 *dst = pt->out + (gsize)y0 * (gsize)pt->w * (gsize)pt->channels;
        if (same) {
            dh_overlay_rows(pt->map, pt->w, y0, n, pt->channels, dst);
            continue;
        }
        double fy = (double)pt->mh / pt->h;
        dl_map_resize_rect(pt->map, pt->mw, pt->mh, 0, y0 * fy, pt->mw, n * fy, rows, pt->w, n,
                           (size_t)pt->w);
        dh_overlay_rows(rows, pt->w, 0, n, pt->channels, dst);
    }
    g_free(rows);
    return NULL;
}

/* The whole colour-map layer's pixels (w x h), computed on two threads
 * while GIMP waits; g_free them. NULL when memory is short. */
static guint8 *overlay_pixels(const float *map, int mw, int mh, int w, int h, int channels)
{
    guint8 *out = g_try_malloc((gsize)w * (gsize)h * (gsize)channels);
    if (!out)
        return NULL;
    int half = h / 2;
    overlay_part pt[2] = {{map, mw, mh, w, h, channels, 0, half, out, FALSE},
                          {map, mw, mh, w, h, channels, half, h, out, FALSE}};
    GThread *t = g_thread_try_new("dermlens-overlay", overlay_part_main, &pt[1], NULL);
    overlay_part_main(&pt[0]);
    if (t)
        g_thread_join(t);
    else
        overlay_part_main(&pt[1]);
    if (!pt[0].ok || !pt[1].ok) {
        g_free(out);
        return NULL;
    }
    return out;
}

/* A layer of the map (its colour map, or its outline) over the region.
 * The colour map is computed at the region's size from the map, however
 * small the map was made, and written in one pass: GIMP's own layer
 * scaling costs more than sending the pixels (tests/gimp/bench-gimp2.sh).
 * Only a region above DLP_MAX_WRITE_PIXELS gets a layer at analysis size
 * that GIMP scales up, so no huge layer's pixels cross the wire. */
static gboolean add_map_layer(const dlp_gimp *g, gint32 image, gint32 group, const char *name,
                              const dh_analysis *an, const dh_overlay *o, gboolean outline,
                              const dh_region *region, const dlp_geom *geo, double opacity,
                              int channels, int pos, guint8 *ready_px, gchar **msg)
{
    int ow = an->map_width, oh = an->map_height;
    const float *map = an->map;
    float *full = NULL;
    guint8 *px = ready_px; /* ours now */
    dh_overlay lo = *o;
    lo.width = dh_outline_width(geo->w, geo->h) * ow / geo->w;
    if (!px && (double)geo->w * geo->h <= DLP_MAX_WRITE_PIXELS) {
        if (!outline)
            px = overlay_pixels(an->map, ow, oh, geo->w, geo->h, channels);
        else if ((ow != geo->w || oh != geo->h) &&
                 (full = g_try_malloc((gsize)geo->w * (gsize)geo->h * sizeof(float)))) {
            /* the outline's stroke is drawn at the size it is shown */
            dl_map_resize(an->map, ow, oh, full, geo->w, geo->h, (size_t)geo->w);
            map = full;
        }
    }
    if (px || full) {
        ow = geo->w;
        oh = geo->h;
        lo.width = dh_outline_width(geo->w, geo->h);
    }
    gint32 ov = g->layer_new(image, group, name, ow, oh, region->x, region->y, opacity, channels);
    if (ov < 0) {
        g_free(full);
        g_free(px);
        *msg = g_strdup("Could not add the saliency layer");
        return FALSE;
    }
    if (pos > 0) /* below the labels and legend already in the group */
        g->reorder(image, ov, group, pos);
    GeglBuffer *buf = g->buffer(ov);
    gboolean wok = TRUE;
    if (px) {
        for (int y0 = 0; wok && y0 < oh; y0 += DLP_STRIP_ROWS) {
            GeglRectangle r = {0, y0, ow, MIN(DLP_STRIP_ROWS, oh - y0)};
            wok = dlp_set_u8_pixels(buf, &r, channels, px + (gsize)y0 * ow * channels, msg);
        }
    } else {
        wok = dlp_write_overlay(buf, map, ow, oh, &lo, outline, channels, msg);
    }
    g_object_unref(buf);
    g_free(full);
    g_free(px);
    if (!wok)
        return FALSE;
    g->update(ov, ow, oh);
    if (ow != geo->w || oh != geo->h) {
        if (!g->scale(ov, geo->w, geo->h)) {
            *msg = g_strdup("Could not scale the saliency layer to the region");
            return FALSE;
        }
        g->move(ov, region->x, region->y);
    }
    return TRUE;
}

/* The saliency of a classified region, computed on a thread of its own
 * while the plug-in adds the label layers (GIMP does that work: the plug-in
 * only waits for it). The thread touches only the analysis' map fields and
 * calls no GIMP function; the region's pixels and the model stay until
 * saliency_join. */
typedef struct {
    dl_model *m;
    const guint8 *rgb;
    const dlp_geom *geo;
    dl_saliency_method method;
    dh_analysis *an;
    int channels;    /* > 0: also compute the colour-map layer's pixels */
    GThread *thread;
    guint8 *fill_px; /* those pixels (region size), or NULL; g_free */
} saliency_job;

static gpointer saliency_main(gpointer data)
{
    saliency_job *sj = data;
    dl_error err = {0};
    /* no progress callback: it would call GIMP from this thread; nothing
     * cancels, so this never fails (a missing map has its note) */
    dh_analyse_saliency(sj->m, sj->rgb, sj->geo->aw, sj->geo->ah, (size_t)sj->geo->aw * 3,
                        sj->method, NULL, sj->an, &err);
    /* the colour map's pixels too, while GIMP may still be busy with labels */
    if (sj->an->map && sj->channels > 0)
        sj->fill_px = overlay_pixels(sj->an->map, sj->an->map_width, sj->an->map_height, sj->geo->w,
                                     sj->geo->h, sj->channels);
    return NULL;
}

/* channels > 0: the colour-map layer will be written at the region's size
 * with that many channels; compute its pixels on the thread too. */
static void saliency_start(saliency_job *sj, dl_model *m, const guint8 *rgb, const dlp_geom *geo,
                           dl_saliency_method method, dh_analysis *an, int channels)
{
    *sj = (saliency_job){m, rgb, geo, method, an, channels, NULL, NULL};
    sj->thread = g_thread_try_new("dermlens-saliency", saliency_main, sj, NULL);
    if (!sj->thread)
        saliency_main(sj); /* no thread: compute it here */
}

static void saliency_join(saliency_job *sj)
{
    if (sj && sj->thread) {
        g_thread_join(sj->thread);
        sj->thread = NULL;
    }
}

/* The layer group (labels, legend, overlay) and the parasite, in one undo
 * group. With sj the saliency is still being computed: the labels and the
 * legend go in first (the legend on the expectation of a map; taken out
 * again if none comes), then the overlay below them once the map is there. */
static gboolean annotate_image(const dlp_gimp *g, gint32 image, gint32 drawable,
                               const dlp_geom *geo, dl_model *m, const char *model_path,
                               const dh_params *p, const dh_analysis *an, saliency_job *sj,
                               gchar **msg)
{
    dh_region region = {geo->ox + geo->x, geo->oy + geo->y, geo->w, geo->h};
    int channels = g->image_base(image) == DLP_BASE_GRAY ? 2 : 4;
    char name[512];
    gboolean ok = FALSE;
    gint32 legend = -1;
    int above = 0; /* layers in the group above the overlay's place */

    g->undo_group(image, TRUE);

    /* The group goes right above the classified layer. */
    dh_group_name(m, &an->result, an->image_flag, name, sizeof name);
    gint32 group = g->group_new(image, drawable, name);
    if (group < 0) {
        *msg = g_strdup("Could not add the DermLens layer group");
        goto out;
    }
    /* The overlay is skipped on huge regions (DLP_MAX_OVERLAY_PIXELS). */
    gboolean fits = (double)geo->w * (double)geo->h <= DLP_MAX_OVERLAY_PIXELS;
    gboolean expect = fits && (sj ? sj->thread != NULL || an->map : an->map != NULL);

    /* Labels and legend: sizes follow the region (dh_label_font_px). */
    dh_label_plan plan;
    dh_measure ms = {measure_text, measure_legend, &channels};
    /* The legend explains the colours: only with the colour map. */
    dh_plan_labels(m, an, p, geo->w, geo->h, expect && p->overlay != DH_OVERLAY_OUTLINE, &ms,
                   &plan);
    int mg = plan.margin, lw = 0, lh = 0;
    guint8 *lpx = plan.show_legend ? dlp_legend_render(plan.font_px, geo->w - 2 * mg, p->method,
                                                       channels, &lw, &lh)
                                   : NULL;
    if (!lpx)
        lw = lh = 0; /* no overlay, or no room beside a readable label (dh_plan_labels) */
    if (lpx) {
        g_snprintf(name, sizeof name, "Legend: %s, low to high", dh_method_title(p->method));
        legend = add_pixels(g, image, group, name, lpx, lw, lh, region.x + mg,
                            region.y + geo->h - lh - mg, channels, "Could not add the legend layer",
                            msg);
        g_free(lpx);
        if (legend < 0)
            goto out;
        above++;
    }
    if (plan.show_label && !add_label(g, image, group, &region, m, an, &plan, lh, channels, &above,
                                      msg))
        goto out;
    dlp_report_stats("labels added");

    saliency_join(sj);
    dlp_report_stats("saliency ready");
    gboolean overlay = an->map && fits;
    if (!overlay && legend >= 0) {
        g->remove(image, legend); /* the map did not come: nothing to explain */
        above--;
    }
    char note[256];
    g_strlcpy(note, an->saliency_note, sizeof note);
    if (an->map && !overlay)
        g_snprintf(note, sizeof note,
                   "overlay not added: the region (%d x %d) is larger than %.0f megapixels",
                   geo->w, geo->h, DLP_MAX_OVERLAY_PIXELS / (1024.0 * 1024.0));
    if (overlay) {
        /* The colour map at the user's opacity and / or the outline of the
         * map's top 20 %, opaque, above it; both below the labels. */
        dh_overlay o;
        dh_overlay_init(&o, an->map, an->map_width, an->map_height, p->overlay, 1.0);
        for (int outline = 0; outline < 2; outline++) {
            if (outline ? p->overlay == DH_OVERLAY_FILL : p->overlay == DH_OVERLAY_OUTLINE)
                continue;
            if (outline)
                g_snprintf(name, sizeof name, "Outline: top %d %% (%s)",
                           (int)(DH_OUTLINE_TOP * 100 + 0.5), dh_method_title(p->method));
            else
                g_snprintf(name, sizeof name, "Saliency (%s)", dh_method_title(p->method));
            guint8 *ready = NULL;
            if (!outline && sj) {
                ready = sj->fill_px;
                sj->fill_px = NULL;
            }
            if (!add_map_layer(g, image, group, name, an, &o, outline, &region, geo,
                               outline ? 100.0 : p->opacity, channels, above, ready, msg))
                goto out;
        }
    }

    char *json = dh_result_json(m, model_path, &an->result, &region, p->method, overlay, note,
                                an->image_reason);
    if (!json) {
        *msg = g_strdup("Out of memory writing the result");
        goto out;
    }
    gboolean attached = g->attach_parasite(image, DLP_PARASITE_NAME, json);
    free(json);
    if (!attached) {
        *msg = g_strdup("Could not attach the dermlens-result parasite");
        goto out;
    }
    ok = TRUE;
out:
    saliency_join(sj); /* an early failure: the thread still holds the pixels */
    if (sj) {
        g_free(sj->fill_px);
        sj->fill_px = NULL;
    }
    /* A failed run leaves nothing behind: drop the half-built group. */
    if (!ok && group >= 0)
        g->remove(image, group);
    g->undo_group(image, FALSE);
    /* Leave the user's layer active / selected, as before. */
    g->select_layer(image, drawable);
    return ok;
}

/* ------------------------------------------------------------------ dialogs */

/* Probabilities as bars, after the run. */
static void result_dialog(const dl_model *m, const dh_analysis *an)
{
    GtkWidget *dlg = gimp_dialog_new("DermLens - Result", "dermlens-result", NULL, 0,
                                     gimp_standard_help_func, DLP_PROC_CLASSIFY, "_Close",
                                     GTK_RESPONSE_CLOSE, NULL);
#if GTK_CHECK_VERSION(3, 0, 0)
    GtkWidget *vb = gtk_box_new(GTK_ORIENTATION_VERTICAL, 4);
#else
    GtkWidget *vb = gtk_vbox_new(FALSE, 4);
#endif
    gtk_container_set_border_width(GTK_CONTAINER(vb), 8);
    gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dlg))), vb, TRUE, TRUE, 0);
    const dl_result *r = &an->result;
    gchar *head = dlp_result_headline_markup(m, an);
    GtkWidget *hl = gtk_label_new(NULL);
    gtk_label_set_markup(GTK_LABEL(hl), head);
    gtk_label_set_line_wrap(GTK_LABEL(hl), TRUE);
    g_free(head);
    gtk_box_pack_start(GTK_BOX(vb), hl, FALSE, FALSE, 4);
    for (int i = 0; i < r->top_k; i++) {
        int c = r->top_index[i];
        const char *name = dl_model_class_long_name(m, c);
        GtkWidget *bar = gtk_progress_bar_new();
        gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(bar), r->probs[c]);
        gchar *t = g_strdup_printf("%s  %d %%", name ? name : "?", dh_percent(r->probs[c]));
        gtk_progress_bar_set_text(GTK_PROGRESS_BAR(bar), t);
#if GTK_CHECK_VERSION(3, 0, 0)
        gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(bar), TRUE); /* GTK 2 always shows it */
#endif
        g_free(t);
        gtk_box_pack_start(GTK_BOX(vb), bar, FALSE, FALSE, 0);
    }
    if (an->saliency_note[0])
        gtk_box_pack_start(GTK_BOX(vb), gtk_label_new(an->saliency_note), FALSE, FALSE, 0);
    GtkWidget *disc = gtk_label_new(NULL);
    gtk_label_set_markup(GTK_LABEL(disc), "<b>" DH_DISCLAIMER "</b>");
    gtk_box_pack_start(GTK_BOX(vb), disc, FALSE, FALSE, 4);
    gtk_widget_show_all(dlg);
    dlp_dialog_test_hook(dlg);
    gimp_dialog_run(GIMP_DIALOG(dlg));
    gtk_widget_destroy(dlg);
}

/* ------------------------------------------------------------------ classify */

/* The pixels to classify: the drawable, or the selection's bounds in it, at
 * analysis scale (*geo). g_free the result; NULL with *msg. */
static guint8 *read_region(const dlp_gimp *g, gint32 image, gint32 drawable, dlp_geom *geo,
                           gchar **msg)
{
    if (!g->is_pixel_layer(drawable)) {
        *msg = g_strdup("DermLens classifies a pixel layer: select a layer (not a mask, channel "
                        "or layer group)");
        return NULL;
    }
    int x = 0, y = 0, w, h, ox = 0, oy = 0;
    g->size(drawable, &w, &h);
    /* GIMP convention: an empty selection (none, or one with no pixels) means
     * the whole layer. */
    gboolean has_selection = !g->selection_empty(image);
    if (has_selection && (!g->mask_intersect(drawable, &x, &y, &w, &h) || w <= 0 || h <= 0)) {
        *msg = g_strdup_printf("The selection does not overlap the %s layer: nothing to classify",
                               g->layer_word);
        return NULL;
    }
    if (w < DH_MIN_REGION || h < DH_MIN_REGION) {
        *msg = dlp_too_small_msg(w, h, has_selection);
        return NULL;
    }
    g->offsets(drawable, &ox, &oy);
    dlp_geom_init(geo, x, y, w, h, ox, oy);

    gimp_progress_init("DermLens: reading pixels");
    guint8 *rgb;
    if (geo->scale < 1.0) {
        /* GIMP scales the region down itself (see DLP_THUMB_MAX). */
        int tw = geo->aw, th = geo->ah, bpp = 0;
        gsize size = 0;
        guint8 *data = g->sub_thumbnail(drawable, geo->x, geo->y, geo->w, geo->h, &tw, &th, &bpp,
                                        &size);
        if (!data) {
            *msg = g_strdup_printf("GIMP could not make a reduced copy of the %d x %d region",
                                   geo->w, geo->h);
            return NULL;
        }
        geo->aw = tw;
        geo->ah = th;
        rgb = dlp_thumb_to_rgb(data, size, tw, th, bpp, msg);
        g_free(data);
    } else {
        GeglBuffer *buf = g->buffer(drawable);
        rgb = dlp_read_rgb(buf, geo, msg);
        g_object_unref(buf);
    }
    return rgb;
}

/* The model, loaded on a thread of its own while GIMP hands over the
 * region's pixels (the plug-in only waits for GIMP meanwhile): reading,
 * checking the digests and widening the weights then cost no wall time. */
typedef struct {
    const dh_params *p;
    GThread *thread;
    dl_model *m;
    char path[4096];
    dl_error err;
} model_loader;

static gpointer model_load_main(gpointer data)
{
    model_loader *l = data;
    l->m = dh_model_open(l->p->model_path, dlp_plugin_dir, l->path, sizeof l->path, &l->err);
    return NULL;
}

static void model_loader_start(model_loader *l, const dh_params *p)
{
    memset(l, 0, sizeof *l);
    l->p = p;
    l->thread = g_thread_try_new("dermlens-load", model_load_main, l, NULL);
    if (!l->thread)
        model_load_main(l); /* no thread: load here */
}

/* Wait for the model: it in *m (dl_model_free it) and its path in
 * model_path, or NULL with *msg. */
static dl_model *model_loader_join(model_loader *l, char *model_path, size_t path_size, gchar **msg)
{
    if (l->thread)
        g_thread_join(l->thread);
    l->thread = NULL;
    if (!l->m) {
        *msg = g_strdup_printf("Cannot load the DermLens model: %s", l->err.message);
        return NULL;
    }
    g_strlcpy(model_path, l->path, path_size);
    return l->m;
}

/* Read the region while the model loads, then classify it and, with
 * saliency, explain it: the pixels in *rgb (geo->aw x geo->ah, g_free
 * them), the model in *m (dl_model_free it) and its path in model_path;
 * FALSE with *msg and nothing to free. */
static gboolean read_and_analyse(const dlp_gimp *g, gint32 image, gint32 drawable, dlp_geom *geo,
                                 const dh_params *p, gboolean saliency, guint8 **rgb, dl_model **m,
                                 char *model_path, size_t path_size, dh_analysis *an, gchar **msg)
{
    model_loader ld;
    model_loader_start(&ld, p);
    *rgb = read_region(g, image, drawable, geo, msg);
    dlp_report_stats("pixels read");
    gchar *lmsg = NULL;
    *m = model_loader_join(&ld, model_path, path_size, &lmsg);
    if (!*rgb || !*m) {
        if (*rgb)
            *msg = lmsg;
        else
            g_free(lmsg);
        g_free(*rgb);
        *rgb = NULL;
        dl_model_free(*m);
        *m = NULL;
        return FALSE;
    }
    dlp_report_stats("model loaded");
    gimp_progress_set_text("DermLens: analysing");
    dl_error err = {0};
    host_state hs = {{0}};
    dh_progress prog = {host_progress, &hs, 0.05, saliency ? 0.9 : 0.2};
    if (dh_analyse(*m, *rgb, geo->aw, geo->ah, (size_t)geo->aw * 3, p->method, saliency, &prog, an,
                   &err) != 0) {
        dl_model_free(*m);
        *m = NULL;
        g_free(*rgb);
        *rgb = NULL;
        *msg = g_strdup_printf("Classification failed: %s", err.message);
        return FALSE;
    }
    dlp_report_stats(saliency ? "region analysed" : "region classified");
    if (saliency && !an->map)
        g_message("DermLens: no saliency overlay (%s). The classification is still added.",
                  an->saliency_note);
    return TRUE;
}

gboolean dlp_core_classify(const dlp_gimp *g, gint32 image, gint32 drawable, const dh_params *p,
                           gboolean interactive, gchar **msg)
{
    dlp_geom geo;
    guint8 *rgb = NULL;
    char model_path[4096];
    dl_model *m = NULL;
    dh_analysis an;
    if (!read_and_analyse(g, image, drawable, &geo, p, FALSE, &rgb, &m, model_path,
                          sizeof model_path, &an, msg))
        return FALSE;
    /* The saliency runs while the label layers go in (annotate_image). */
    gimp_progress_set_text("DermLens: explaining and adding layers");
    saliency_job sj;
    gboolean fill_now = p->overlay != DH_OVERLAY_OUTLINE &&
                        (double)geo.w * geo.h <= MIN(DLP_MAX_WRITE_PIXELS, DLP_MAX_OVERLAY_PIXELS);
    saliency_start(&sj, m, rgb, &geo, p->method, &an,
                   fill_now ? (g->image_base(image) == DLP_BASE_GRAY ? 2 : 4) : 0);
    gboolean ok = annotate_image(g, image, drawable, &geo, m, model_path, p, &an, &sj, msg);
    g_free(rgb);
    if (ok && !an.map)
        g_message("DermLens: no saliency overlay (%s). The classification is still added.",
                  an.saliency_note);
    gimp_progress_update(1.0);
    if (ok) {
        gchar *what = g_strdup_printf("classified %d x %d, layers added", geo.w, geo.h);
        dlp_report_stats(what);
        g_free(what);
    }
    /* Done: the status bar must not keep "adding layers / Cancel" while
     * the result dialog is open. */
    gimp_progress_end();
    if (ok && interactive) {
        gimp_displays_flush();
        result_dialog(m, &an);
    }
    dh_analysis_free(&an);
    dl_model_free(m);
    return ok;
}

/* ------------------------------------------------------------------ batch */

/* The label box's text on the review's annotated images, drawn with Pango
 * (host/ draws no text; the CLI uses cairo's toy API). */
static double pango_text(void *user, uint32_t *surface, int w, int h, int stride, double x, double y,
                         const char *text, double size, int bold, const double rgb[3], double *ascent,
                         double *height)
{
    (void)user;
    cairo_surface_t *s = surface ? cairo_image_surface_create_for_data((unsigned char *)surface, CAIRO_FORMAT_RGB24,
                                                                       w, h, stride)
                                 : cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *cr = cairo_create(s);
    PangoLayout *lay = pango_cairo_create_layout(cr);
    PangoFontDescription *fd = pango_font_description_from_string(bold ? "Sans Bold" : "Sans");
    pango_font_description_set_absolute_size(fd, size * PANGO_SCALE);
    pango_layout_set_font_description(lay, fd);
    pango_layout_set_text(lay, text, -1);
    PangoRectangle logical;
    pango_layout_get_extents(lay, NULL, &logical);
    double base = pango_layout_get_baseline(lay) / (double)PANGO_SCALE;
    if (ascent)
        *ascent = base;
    if (height)
        *height = logical.height / (double)PANGO_SCALE;
    if (surface) {
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_move_to(cr, x, y - base);
        pango_cairo_show_layout(cr, lay);
        cairo_surface_flush(s);
    }
    pango_font_description_free(fd);
    g_object_unref(lay);
    cairo_destroy(cr);
    cairo_surface_destroy(s);
    return logical.width / (double)PANGO_SCALE;
}

/* Name endings of the formats GIMP's loaders read beyond the ones the
 * review lists anyway (PNG, JPEG, TIFF, BMP, GIF, WebP, HEIF, AVIF): these
 * files are listed too and opened with GIMP. */
static const char *const gimp_exts[] = {
    ".xcf", ".xcf.gz", ".xcf.bz2", ".xcf.xz", ".xcfgz", ".xcfbz2", ".psd", ".psb", ".ora", ".ico", ".cur",
    ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".pam", ".pfm", ".pcx", ".jp2", ".j2k", ".jpx", ".jxl", ".exr",
    ".hdr", ".sgi", ".rgb", ".rgba", ".bw", ".xpm", ".xbm", ".dds", ".qoi", ".fits", ".fit", ".xwd",
    ".ras", ".sun", ".pix", ".pat", ".svg", ".pdf", ".wmf", ".emf", ".mng", ".dcm", ".dicom", ".fli",
    ".flc", ".pcd", ".psp", ".tub", ".pdn", ".im1", ".im8", ".im24", ".im32", ".rs", NULL};

/* Image i of the review as RGB8: the engine's decoder first (as the CLI),
 * else GIMP's loaders (XCF, WebP, GIF and the rest), flattened. 0 or -1
 * with *msg. */
static int batch_decode(const dlp_gimp *g, const char *path, dl_image *img, gchar **msg)
{
    dl_error err = {0};
    if (dl_image_load_oriented(path, img, NULL, &err) == 0)
        return 0;
    const char *why = err.message[0] ? err.message : dl_status_name(err.code);
    size_t n = strlen(path);
    if (!strncmp(why, path, n) && why[n] == ':')
        why += n + 1 + (why[n + 1] == ' ');
    gint32 image = g->file_load(path);
    if (image < 0) {
        *msg = g_strdup_printf("%s; GIMP cannot open it either", why);
        return -1;
    }
    gint32 layer = g->flatten(image);
    int rc = -1;
    if (layer < 0) {
        *msg = g_strdup("GIMP opened the file but could not flatten it");
    } else {
        dlp_geom geo;
        guint8 *rgb = read_region(g, image, layer, &geo, msg);
        if (rgb) {
            img->width = geo.aw;
            img->height = geo.ah;
            img->stride = (size_t)geo.aw * 3;
            img->pixels = malloc((size_t)geo.aw * (size_t)geo.ah * 3);
            if (img->pixels) {
                memcpy(img->pixels, rgb, (size_t)geo.aw * (size_t)geo.ah * 3);
                rc = 0;
            } else {
                *msg = g_strdup("out of memory");
            }
            g_free(rgb);
        }
    }
    g->image_delete(image);
    return rc;
}

gboolean dlp_core_batch(const dlp_gimp *g, const char *in, const char *csv, const char *out,
                        const char *labels, const dh_params *p, dh_batch_stats *st, gchar **msg)
{
    memset(st, 0, sizeof *st);
    dl_error err = {0};
    char model_path[4096];
    if (!in || !in[0] || !csv || !csv[0]) {
        *msg = g_strdup("Batch review: an input folder and an output CSV file are required");
        return FALSE;
    }
    dl_model *m = dh_model_open(p->model_path, dlp_plugin_dir, model_path, sizeof model_path, &err);
    if (!m) {
        *msg = g_strdup_printf("Cannot load the DermLens model: %s", err.message);
        return FALSE;
    }
    static const dh_text_painter painter = {NULL, pango_text};
    dh_review_opts o = {.dataset = in, .out_dir = out, .csv_path = csv, .labels_csv = labels,
                        .more_exts = gimp_exts, .method = p->method, .opacity = p->opacity,
                        .painter = &painter};
    dh_review *rv = NULL;
    if (dh_review_open(m, &o, &rv, &err) != 0) {
        *msg = g_strdup_printf("Batch review failed: %s", err.message);
        dl_model_free(m);
        return FALSE;
    }
    gimp_progress_init("DermLens: batch review");
    host_state hs = {{0}};
    int n = dh_review_count(rv);
    gboolean ok = TRUE;
    gint64 last_commit = 0;
    for (int i = 0; i < n && ok; i++) {
        char *text = dl_text_sanitize(dh_review_rel(rv, i));
        host_progress(&hs, (double)i / n, text ? text : "");
        free(text);
        const char *refused = dh_review_refused(rv, i);
        dl_image img = {0};
        gchar *why = NULL;
        dl_error ie = {0};
        if (refused)
            dh_review_fail(rv, i, refused);
        else if (batch_decode(g, dh_review_path(rv, i), &img, &why) != 0)
            dh_review_fail(rv, i, why);
        else
            dh_review_image(rv, m, i, &img, &ie);
        g_free(why);
        dl_image_free(&img);
        /* the CSV so far, so a batch killed part-way leaves a valid one:
         * after every image for the first 200, then at most once a second
         * (the whole file is rewritten each time) */
        gint64 now = g_get_monotonic_time();
        if ((i < 200 || now - last_commit >= G_USEC_PER_SEC) && dh_review_checkpoint(rv, &err) != 0) {
            *msg = g_strdup_printf("Batch review failed: %s", err.message);
            ok = FALSE;
        }
        if (i < 200 || now - last_commit >= G_USEC_PER_SEC)
            last_commit = now;
    }
    dh_review_summary sum = {0};
    if (ok && dh_review_finish(rv, in, &sum, &err) != 0) {
        *msg = g_strdup_printf("Batch review failed: %s", err.message);
        ok = FALSE;
    }
    host_progress(&hs, 1.0, "done");
    st->files = n;
    st->ok = sum.ok;
    st->failed = sum.failed;
    dh_review_close(rv);
    dl_model_free(m);
    return ok;
}

/* ------------------------------------------------------------------ teaching figure */

/* RGB8 w x h -> R'G'B'A u8, opaque. g_free it; NULL when out of memory. */
static guint8 *opaque_rgba(const uint8_t *rgb, int w, int h)
{
    gsize n = (gsize)w * (gsize)h;
    guint8 *px = g_try_malloc(n * 4);
    for (gsize i = 0; px && i < n; i++) {
        memcpy(px + 4 * i, rgb + 3 * i, 3);
        px[4 * i + 3] = 255;
    }
    return px;
}

/* A panel as a layer of the figure; -1 with *msg. */
static gint32 add_panel(const dlp_gimp *g, gint32 img, const char *name, const uint8_t *rgb,
                        const dh_figure_layout *f, int x, gchar **msg)
{
    guint8 *px = opaque_rgba(rgb, f->panel_w, f->panel_h);
    if (!px) {
        *msg = g_strdup("Not enough memory for the figure");
        return -1;
    }
    gint32 l = add_pixels(g, img, -1, name, px, f->panel_w, f->panel_h, x, f->gap, 4,
                          "Could not add a panel to the figure", msg);
    g_free(px);
    return l;
}

/* The caption at the figure's font, wrapped so that Pango (GIMP's text
 * engine) finds every line narrower than the caption box; its height. */
static int fit_caption(const dl_model *m, const char *model_path, const dh_analysis *an,
                       const dh_params *p, const dh_figure_layout *f, char *cap, size_t size)
{
    int cols = f->cols, w = 0, h = 0;
    int cls = an->result.top_k > 0 ? an->result.top_index[0] : -1;
    for (int i = 0; i < 8; i++) {
        dh_figure_caption(m, model_path, &an->result, an->image_flag, cls, p->method, p->overlay,
                          p->top_k, cols, cap, size);
        gchar *esc = g_markup_escape_text(cap, -1);
        dlp_text_extent(esc, f->font_px, &w, &h);
        g_free(esc);
        if (w <= f->caption_w || cols <= 16)
            break;
        cols = cols * 9 / 10;
    }
    return h;
}

static gboolean build_figure(const dlp_gimp *g, const guint8 *rgb, const dlp_geom *geo,
                             const dl_model *m, const char *model_path, const dh_params *p,
                             const dh_analysis *an, gint32 *figure, gchar **msg)
{
    dh_figure_layout f;
    dh_figure_plan(geo->aw, geo->ah, &f);
    dh_overlay o = {0};
    if (an->map)
        dh_overlay_init(&o, an->map, an->map_width, an->map_height, p->overlay, p->opacity / 100.0);
    uint8_t *left = NULL, *right = NULL;
    dl_error err = {0};
    if (dh_figure_panels(rgb, geo->aw, geo->ah, (size_t)geo->aw * 3, an->map, &o, &f, &left,
                         &right, &err) != 0) {
        *msg = g_strdup_printf("Cannot make the figure: %s", err.message);
        return FALSE;
    }
    char cap[4096];
    int cap_h = fit_caption(m, model_path, an, p, &f, cap, sizeof cap);
    int height = dh_figure_height(&f, cap_h + cap_h / 10); /* GIMP sets text a little looser */
    gboolean ok = FALSE;
    gint32 img = g->image_new(f.width, height);
    if (img < 0) {
        *msg = g_strdup("Could not make a new image for the figure");
        goto out;
    }
    char name[256];
    g_snprintf(name, sizeof name, "Region with saliency (%s)", dh_method_title(p->method));
    if (add_panel(g, img, "Region", left, &f, f.gap, msg) < 0 ||
        add_panel(g, img, an->map ? name : "Region (no saliency map)", right, &f,
                  2 * f.gap + f.panel_w, msg) < 0)
        goto out;
    gint32 tl = g->text_new(img, -1, 0, cap, "Sans-serif", f.font_px, "#1e1e1e");
    if (tl < 0) {
        *msg = g_strdup("Could not add the caption text layer");
        goto out;
    }
    g->move(tl, f.caption_x, f.caption_y);
    g->rename(tl, "Caption");
    /* The canvas follows the caption as GIMP set it. */
    int tw, th;
    g->size(tl, &tw, &th);
    if (dh_figure_height(&f, th) != height) {
        height = dh_figure_height(&f, th);
        g->image_resize(img, f.width, height);
    }
    guint8 *white = g_try_malloc((gsize)f.width * (gsize)height * 4);
    if (!white) {
        *msg = g_strdup("Not enough memory for the figure");
        goto out;
    }
    memset(white, 255, (gsize)f.width * (gsize)height * 4);
    gint32 bg = add_pixels(g, img, -1, "Background", white, f.width, height, 0, 0, 4,
                           "Could not add the figure's background", msg);
    g_free(white);
    if (bg < 0)
        goto out;
    g->reorder(img, bg, -1, 3); /* under the panels and the caption */
    ok = TRUE;
out:
    free(left);
    free(right);
    if (ok)
        *figure = img;
    else if (img >= 0)
        g->image_delete(img); /* a failed run leaves nothing behind */
    return ok;
}

gboolean dlp_core_figure(const dlp_gimp *g, gint32 image, gint32 drawable, const dh_params *p,
                         gboolean interactive, gint32 *figure, gchar **msg)
{
    *figure = -1;
    dlp_geom geo;
    guint8 *rgb = NULL;
    char model_path[4096];
    dl_model *m = NULL;
    dh_analysis an;
    if (!read_and_analyse(g, image, drawable, &geo, p, TRUE, &rgb, &m, model_path,
                          sizeof model_path, &an, msg))
        return FALSE;
    gimp_progress_set_text("DermLens: making the figure");
    gboolean ok = build_figure(g, rgb, &geo, m, model_path, p, &an, figure, msg);
    g_free(rgb);
    gimp_progress_update(1.0);
    gimp_progress_end();
    if (ok)
        g->image_ready(*figure, interactive);
    dh_analysis_free(&an);
    dl_model_free(m);
    return ok;
}
