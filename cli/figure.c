/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens explain --figure: the layout, panels and caption text come from
 * host/ (the plug-in's Teaching Figure uses the same); only the caption's
 * drawing is here, with cairo's own text. */
#include "figure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef DL_HAVE_CAIRO
#include <cairo.h>
#endif

static int fail(dl_error *err, dl_status code, const char *msg)
{
    if (err) {
        err->code = code;
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return -1;
}

#ifdef DL_HAVE_CAIRO
/* The widest line of text at the context's font. */
static double widest_line(cairo_t *cr, const char *text, int *lines)
{
    double w = 0;
    *lines = 0;
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        cairo_text_extents_t ext;
        cairo_text_extents(cr, line, &ext);
        w = ext.x_advance > w ? ext.x_advance : w;
        (*lines)++;
        p += n + (p[n] == '\n');
    }
    return w;
}

/* Copy an RGB8 panel into the RGB24 surface at (x, y). */
static void put_panel(unsigned char *data, int stride, const uint8_t *px, int w, int h, int x,
                      int y)
{
    for (int r = 0; r < h; r++) {
        uint32_t *dst = (uint32_t *)(data + (size_t)(y + r) * stride) + x;
        const uint8_t *s = px + (size_t)r * w * 3;
        for (int c = 0; c < w; c++)
            dst[c] = 0xff000000u | (uint32_t)s[3 * c] << 16 | (uint32_t)s[3 * c + 1] << 8 | s[3 * c + 2];
    }
}
#endif

int cli_write_figure(const char *path, const dl_image *img, const float *map, const dl_model *m,
                     const char *model_path, const dl_result *r, int cls,
                     dl_saliency_method method, dh_overlay_style style, double opacity,
                     int top_k, char *caption, size_t caption_size, dl_error *err)
{
    if (caption && caption_size)
        caption[0] = '\0';
#ifndef DL_HAVE_CAIRO
    (void)path, (void)img, (void)map, (void)m, (void)model_path, (void)r, (void)cls;
    (void)method, (void)style, (void)opacity, (void)top_k;
    return fail(err, DL_ERR_UNSUPPORTED,
                "this dermlens was built without cairo, which --figure needs for its caption");
#else
    dh_figure_layout f;
    dh_figure_plan(img->width, img->height, &f);
    dh_overlay o = {0};
    if (map)
        dh_overlay_init(&o, map, img->width, img->height, style, opacity);
    uint8_t *left = NULL, *right = NULL;
    if (dh_figure_panels(img->pixels, img->width, img->height, img->stride, map, &o, &f, &left,
                         &right, err) != 0)
        return -1;
    /* The same "not a lesion image" check as the plug-in, for the headline. */
    dh_image_stats st;
    char why[128];
    dh_image_stats_compute(img->pixels, img->width, img->height, img->stride, &st);
    int flag = dh_image_stats_flag(&st, why, sizeof why);
    if (caption && caption_size)
        dh_figure_caption(m, model_path, r, flag, cls, method, style, top_k, 0, caption,
                          caption_size);

    /* Wrap the caption until cairo finds every line narrower than its box. */
    cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *cr = cairo_create(scratch);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, f.font_px);
    char cap[4096];
    int lines = 0;
    for (int cols = f.cols, i = 0; i < 8; i++, cols = cols * 9 / 10) {
        dh_figure_caption(m, model_path, r, flag, cls, method, style, top_k, cols, cap, sizeof cap);
        if (widest_line(cr, cap, &lines) <= f.caption_w || cols <= 16)
            break;
    }
    cairo_destroy(cr);
    cairo_surface_destroy(scratch);
    double line_h = f.font_px * 1.35;
    int height = dh_figure_height(&f, (int)(lines * line_h + 0.5));

    int rc = -1;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, f.width, height);
    uint8_t *rgb = malloc((size_t)f.width * 3 * (size_t)height);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS || !rgb) {
        fail(err, DL_ERR_NOMEM, "out of memory for the figure");
        goto out;
    }
    cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_surface_flush(surf);
    unsigned char *data = cairo_image_surface_get_data(surf);
    int stride = cairo_image_surface_get_stride(surf);
    put_panel(data, stride, left, f.panel_w, f.panel_h, f.gap, f.gap);
    put_panel(data, stride, right, f.panel_w, f.panel_h, 2 * f.gap + f.panel_w, f.gap);
    cairo_surface_mark_dirty(surf);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, f.font_px);
    cairo_set_source_rgb(cr, 0x1e / 255.0, 0x1e / 255.0, 0x1e / 255.0);
    int k = 0;
    for (const char *p = cap; *p; k++) {
        size_t n = strcspn(p, "\n");
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        cairo_move_to(cr, f.caption_x, f.caption_y + f.font_px + k * line_h);
        cairo_show_text(cr, line);
        p += n + (p[n] == '\n');
    }
    cairo_destroy(cr);
    cairo_surface_flush(surf);
    for (int y = 0; y < height; y++) {
        const uint32_t *s = (const uint32_t *)(data + (size_t)y * stride);
        uint8_t *d = rgb + (size_t)y * f.width * 3;
        for (int x = 0; x < f.width; x++) {
            d[3 * x] = (uint8_t)(s[x] >> 16);
            d[3 * x + 1] = (uint8_t)(s[x] >> 8);
            d[3 * x + 2] = (uint8_t)s[x];
        }
    }
    rc = dl_png_write(path, rgb, f.width, height, (size_t)f.width * 3, 3, 8, err);
out:
    cairo_surface_destroy(surf);
    free(rgb);
    free(left);
    free(right);
    return rc;
#endif
}
