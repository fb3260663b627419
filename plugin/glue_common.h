/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Code shared by the GIMP 2.10 and 3.0 glue that needs GLib/GEGL/GTK but
 * not libgimp: region maths, reading pixels, writing layer pixels, the
 * progress bridge and the result dialog body. Included by exactly one glue
 * file per build (static functions). */
#ifndef DLP_GLUE_COMMON_H
#define DLP_GLUE_COMMON_H

#include <gegl.h>
#include <glib.h>
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

static gboolean dlp_write_legend(GeglBuffer *buf, int w, int h, int channels, gchar **msg)
{
    guint8 *px = g_try_malloc((gsize)w * (gsize)h * (gsize)channels);
    if (!px) {
        *msg = g_strdup("Not enough memory for the legend");
        return FALSE;
    }
    dlp_legend_pixels(w, h, channels, px);
    GeglRectangle r = {0, 0, w, h};
    gboolean ok = dlp_set_u8_pixels(buf, &r, channels, px, msg);
    g_free(px);
    return ok;
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
