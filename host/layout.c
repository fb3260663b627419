/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Where the label and the legend go in a region, and how big: the sizes
 * follow the region, the front end measures its own fonts (dh_measure). */
#include "dermlens_host.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double dh_label_font_px(int w, int h)
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

int dh_label_margin(double font_px)
{
    int m = (int)(font_px * 0.3 + 0.5);
    return m < 3 ? 3 : m;
}

/* Sans averages a little over half an em per character. */
int dh_label_cols(int box_w, double font_px)
{
    int c = (int)(box_w / (font_px * 0.5));
    return c < 8 ? 8 : c;
}

double dh_fit_font_size(double size, int text_w, int text_h, int box_w, int box_h)
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

uint8_t *dh_box_pixels(int w, int h, int channels)
{
    size_t n = (size_t)w * (size_t)h;
    uint8_t *px = malloc(n * (size_t)channels);
    if (!px)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        memset(px + i * channels, 0, (size_t)channels - 1);
        px[i * channels + channels - 1] = 158;
    }
    return px;
}

void dh_plan_labels(const dl_model *m, const dh_analysis *an, const dh_params *p, int rw, int rh,
                    int overlay, const dh_measure *ms, dh_label_plan *pl)
{
    double f0 = dh_label_font_px(rw, rh);
    double fmin = (rw >= 200 && rh >= 200) ? 14.0 : 8.0;
    if (fmin > f0)
        fmin = f0;
    int want_leg = p->add_legend && overlay;
    memset(pl, 0, sizeof *pl);
    pl->font_px = f0;
    pl->margin = dh_label_margin(f0);
    pl->top_k = p->top_k;
    pl->show_legend = want_leg;
    if (!p->add_labels)
        return;
    const struct {
        int legend, k;
    } tries[4] = {{want_leg, p->top_k}, {0, p->top_k}, {want_leg, 1}, {0, 1}};
    char *text = malloc(8192);
    if (!text)
        return; /* no label: the group name and the JSON carry the result */
    for (int t = 0; t < 4; t++) {
        if (t > 0 && tries[t].legend == tries[t - 1].legend && tries[t].k == tries[t - 1].k)
            continue;
        int last = 0;
        for (int i = 0; !last; i++) {
            double f = f0 * pow(0.92, i);
            if (f <= fmin) {
                f = fmin;
                last = 1;
            }
            int mg = dh_label_margin(f), pad = mg, lw = 0, lh = 0;
            if (tries[t].legend &&
                ms->legend_size(ms->user, f, rw - 2 * mg, p->method, &lw, &lh) != 0)
                break; /* the legend itself does not fit: next try */
            int tw_max = rw - 2 * mg - 2 * pad;
            int th_max = rh - 2 * mg - 2 * pad - (lh > 0 ? lh + mg : 0);
            if (tw_max < 8 || th_max < 8)
                continue;
            /* Wrap at the estimated width; narrower when the front end says
             * the lines are still too wide. GIMP 2.10 sets the headline apart
             * (a gap of 0.2 em) and lays lines out a little looser than a
             * plain Pango layout: keep 5 % of the height in reserve. */
            int cols = dh_label_cols(tw_max, f), fits = 0;
            for (int c = 0; c < 4 && !fits; c++) {
                dh_label_markup(m, &an->result, an->image_flag, tries[t].k, cols, 1, 1, text,
                                8192);
                int w = 0, h = 0;
                ms->text_size(ms->user, text, f, &w, &h);
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
                free(text);
                return;
            }
        }
    }
    free(text);
    pl->show_label = 0;
}

int dh_plan_cols(const dh_label_plan *pl, int tw_max, double size)
{
    if (pl->cols > 0 && pl->font_px > 0)
        return (int)(pl->cols * pl->font_px / size);
    return dh_label_cols(tw_max, size);
}
