/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The teaching figure: the region and the region with its saliency map side
 * by side, with a caption below (text in label.c). The layout and the
 * panels' pixels are here; the front end draws the caption in its fonts. */
#include "dermlens_host.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

void dh_figure_plan(int region_w, int region_h, dh_figure_layout *f)
{
    memset(f, 0, sizeof *f);
    int pw = region_w, ph = region_h, longest = pw > ph ? pw : ph;
    if (longest > DH_FIGURE_MAX_PANEL) { /* slides want sharp, not huge */
        double s = (double)DH_FIGURE_MAX_PANEL / longest;
        pw = (int)(pw * s + 0.5);
        ph = (int)(ph * s + 0.5);
    }
    f->panel_w = pw < 1 ? 1 : pw;
    f->panel_h = ph < 1 ? 1 : ph;
    int s = f->panel_w < f->panel_h ? f->panel_w : f->panel_h;
    f->gap = s / 20 < 8 ? 8 : s / 20;
    f->width = 2 * f->panel_w + 3 * f->gap;
    f->font_px = f->width / 45.0;
    if (f->font_px < 14.0)
        f->font_px = 14.0;
    if (f->font_px > 64.0)
        f->font_px = 64.0;
    f->caption_x = f->gap;
    f->caption_y = f->panel_h + 2 * f->gap;
    f->caption_w = f->width - 2 * f->gap;
    f->cols = dh_label_cols(f->caption_w, f->font_px);
}

int dh_figure_height(const dh_figure_layout *f, int caption_h)
{
    return f->caption_y + (caption_h > 0 ? caption_h : 0) + f->gap;
}

/* rgb (w x h) as a panel of f's size: a copy, or scaled down. */
static int to_panel(const uint8_t *rgb, int w, int h, size_t stride, const dh_figure_layout *f,
                    uint8_t **out, dl_error *err)
{
    size_t row = (size_t)f->panel_w * 3;
    dl_image src = {w, h, stride, (uint8_t *)rgb}, dst = {0};
    const dl_image *use = &src;
    if (w != f->panel_w || h != f->panel_h) {
        if (dl_image_resize(&src, f->panel_w, f->panel_h, &dst, err) != 0)
            return -1;
        use = &dst;
    }
    *out = malloc(row * (size_t)f->panel_h);
    if (!*out) {
        dl_image_free(&dst);
        dh_set_err(err, DL_ERR_NOMEM, "out of memory for the figure");
        return -1;
    }
    for (int y = 0; y < f->panel_h; y++)
        memcpy(*out + (size_t)y * row, use->pixels + (size_t)y * use->stride, row);
    dl_image_free(&dst);
    return 0;
}

int dh_figure_panels(const uint8_t *rgb, int w, int h, size_t stride, const float *map,
                     const dh_overlay *o, const dh_figure_layout *f, uint8_t **left,
                     uint8_t **right, dl_error *err)
{
    *left = *right = NULL;
    /* The map is drawn at the region's own size, then both are scaled alike. */
    uint8_t *blend = malloc((size_t)w * 3 * (size_t)h);
    if (!blend) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory for the figure");
        return -1;
    }
    if (map)
        dh_blend_rows(rgb, stride, map, w, h, 0, h, o, blend, (size_t)w * 3);
    else
        for (int y = 0; y < h; y++)
            memcpy(blend + (size_t)y * w * 3, rgb + (size_t)y * stride, (size_t)w * 3);
    int rc = to_panel(rgb, w, h, stride, f, left, err);
    if (rc == 0)
        rc = to_panel(blend, w, h, (size_t)w * 3, f, right, err);
    free(blend);
    if (rc != 0) {
        free(*left);
        *left = NULL;
    }
    return rc;
}
