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
 * anyway); this bounds the RGB copy and the saliency map to ~250 MB. */
#define DLP_MAX_ANALYSIS_PIXELS (16 * 1024 * 1024)
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
        g->scale = sqrt(DLP_MAX_ANALYSIS_PIXELS / px);
        g->ax = (int)floor(x * g->scale);
        g->ay = (int)floor(y * g->scale);
        g->aw = (int)floor(w * g->scale);
        g->ah = (int)floor(h * g->scale);
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

/* Region pixels as R'G'B' u8 through babl, whatever the drawable's type and
 * precision. Returns g_malloc'd memory or NULL with a message. */
static guint8 *dlp_read_rgb(GeglBuffer *buf, const dlp_geom *g, gchar **msg)
{
    gsize n = (gsize)g->aw * (gsize)g->ah * 3;
    guint8 *rgb = g_try_malloc(n);
    if (!rgb) {
        *msg = g_strdup_printf("Not enough memory to read a %d x %d region", g->aw, g->ah);
        return NULL;
    }
    GeglRectangle r = {g->ax, g->ay, g->aw, g->ah};
    gegl_buffer_get(buf, &r, g->scale, babl_format("R'G'B' u8"), rgb, g->aw * 3,
                    GEGL_ABYSS_NONE);
    return rgb;
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
    const Babl *fmt = babl_format(channels == 4 ? "R'G'B'A u8" : "Y'A u8");
    for (int y0 = 0; y0 < h; y0 += rows) {
        int n = h - y0 < rows ? h - y0 : rows;
        dlp_overlay_rows(an->map, an->map_width, an->map_height, w, h, y0, n, channels, strip);
        GeglRectangle r = {0, y0, w, n};
        gegl_buffer_set(buf, &r, 0, fmt, strip, GEGL_AUTO_ROWSTRIDE);
    }
    g_free(strip);
    return TRUE;
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
    gegl_buffer_set(buf, &r, 0, babl_format(channels == 4 ? "R'G'B'A u8" : "Y'A u8"), px,
                    GEGL_AUTO_ROWSTRIDE);
    g_free(px);
    return TRUE;
}

static gint64 dlp_t0; /* plug-in start, for DERMLENS_STATS */

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
    g_printerr("dermlens-stats: %s: %.2f s wall since plug-in start, %.2f s CPU, peak RSS %ld MiB\n",
               what, (double)(g_get_monotonic_time() - dlp_t0) / 1e6, cpu, ru.ru_maxrss / 1024);
}

static gchar *dlp_plugin_dir_from_argv0(const char *argv0)
{
    gchar *abs = g_canonicalize_filename(argv0, NULL);
    gchar *dir = g_path_get_dirname(abs);
    g_free(abs);
    return dir;
}

#endif
