/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Evaluation plots with cairo: confusion matrix, ROC curves, reliability
 * diagram and line panels (robustness). Layout is in pixels on a white
 * ARGB surface; text uses cairo's toy font API with a sans family. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef DL_HAVE_CAIRO

int plot_available(void)
{
    return 0;
}

static int no_cairo(char *err, size_t errlen)
{
    snprintf(err, errlen, "dermlens was built without cairo: plots are not available");
    return -1;
}

int plot_confusion(const char *path, int k, const char *const *names, const int *confusion,
                   const char *title, char *err, size_t errlen)
{
    return no_cairo(err, errlen);
}

int plot_roc(const char *path, int n_curves, const char *const *labels, const double *const *fpr,
             const double *const *tpr, const int *npts, const char *title, char *err, size_t errlen)
{
    return no_cairo(err, errlen);
}

int plot_reliability(const char *path, int n_bins, const int *count, const double *mean_conf,
                     const double *accuracy, double ece, const char *title, char *err, size_t errlen)
{
    return no_cairo(err, errlen);
}

int plot_lines(const char *path, const char *title, int n_panels, const char *const *panel_titles,
               const char *xlabel, const char *ylabel, int n_series, const char *const *series_names,
               int n_x, const char *const *x_ticks, const double *y, double ymin, double ymax, char *err,
               size_t errlen)
{
    return no_cairo(err, errlen);
}

#else

#include <cairo.h>

int plot_available(void)
{
    return 1;
}

/* Qualitative palette (Okabe-Ito plus extras): distinguishable, colour-blind
 * friendly for the first eight. */
static const double palette[][3] = {
    {0.00, 0.45, 0.70}, {0.90, 0.62, 0.00}, {0.00, 0.62, 0.45}, {0.80, 0.40, 0.00},
    {0.34, 0.71, 0.91}, {0.80, 0.47, 0.65}, {0.72, 0.62, 0.00}, {0.00, 0.00, 0.00},
    {0.55, 0.34, 0.16}, {0.50, 0.50, 0.50}, {0.60, 0.20, 0.80}, {0.20, 0.60, 0.20},
    {0.70, 0.10, 0.10}, {0.10, 0.10, 0.60}, {0.40, 0.70, 0.60}, {0.90, 0.40, 0.50},
};
#define N_PALETTE ((int)(sizeof palette / sizeof *palette))

static void set_colour(cairo_t *cr, int i)
{
    const double *c = palette[i % N_PALETTE];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
}

/* Series beyond the palette get a dash pattern so they stay distinguishable. */
static void set_dash_for(cairo_t *cr, int i)
{
    static const double dash[] = {8.0, 4.0};
    if (i / N_PALETTE % 2) cairo_set_dash(cr, dash, 2, 0);
    else cairo_set_dash(cr, NULL, 0, 0);
}

static void font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Text anchored at (x, y): ax 0 left / 0.5 centre / 1 right; ay 0 top /
 * 0.5 middle / 1 baseline-ish bottom. angle in radians (counter-clockwise). */
static void text_at(cairo_t *cr, double x, double y, double ax, double ay, double angle, const char *s)
{
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    cairo_text_extents(cr, s, &te);
    cairo_font_extents(cr, &fe);
    double h = fe.ascent;
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -angle);
    cairo_move_to(cr, -ax * te.x_advance, -ay * h + h);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

static double text_width(cairo_t *cr, const char *s)
{
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    return te.x_advance;
}

typedef struct {
    double x, y, w, h;              /* plot area in pixels */
    double xmin, xmax, ymin, ymax;  /* data range */
} frame;

static double fx(const frame *f, double v)
{
    return f->x + (v - f->xmin) / (f->xmax - f->xmin) * f->w;
}

static double fy(const frame *f, double v)
{
    return f->y + f->h - (v - f->ymin) / (f->ymax - f->ymin) * f->h;
}

/* Grid, box, numeric ticks every step on both axes and axis labels. */
static void axes(cairo_t *cr, const frame *f, double xstep, double ystep, const char *xlabel, const char *ylabel,
                 int numeric_x)
{
    cairo_set_dash(cr, NULL, 0, 0);
    char buf[32];
    font(cr, 14, 0);
    cairo_set_line_width(cr, 1.0);
    if (numeric_x)
        for (double v = ceil(f->xmin / xstep - 1e-9) * xstep; v <= f->xmax + 1e-9; v += xstep) {
            double px = fx(f, v);
            cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
            cairo_move_to(cr, px, f->y);
            cairo_line_to(cr, px, f->y + f->h);
            cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            cairo_move_to(cr, px, f->y + f->h);
            cairo_line_to(cr, px, f->y + f->h + 6);
            cairo_stroke(cr);
            snprintf(buf, sizeof buf, "%.1f", fabs(v) < 1e-9 ? 0.0 : v);
            text_at(cr, px, f->y + f->h + 9, 0.5, 0, 0, buf);
        }
    for (double v = ceil(f->ymin / ystep - 1e-9) * ystep; v <= f->ymax + 1e-9; v += ystep) {
        double py = fy(f, v);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->x, py);
        cairo_line_to(cr, f->x + f->w, py);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, f->x - 6, py);
        cairo_line_to(cr, f->x, py);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, ystep < 0.099 ? "%.2f" : "%.1f", fabs(v) < 1e-9 ? 0.0 : v);
        text_at(cr, f->x - 9, py, 1, 0.5, 0, buf);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1.5);
    cairo_rectangle(cr, f->x, f->y, f->w, f->h);
    cairo_stroke(cr);
    font(cr, 16, 0);
    if (xlabel) text_at(cr, f->x + f->w / 2, f->y + f->h + 34, 0.5, 0, 0, xlabel);
    if (ylabel) text_at(cr, f->x - 58, f->y + f->h / 2, 0.5, 0.5, M_PI / 2, ylabel);
}

static cairo_t *begin(int w, int h, cairo_surface_t **surf, char *err, size_t errlen)
{
    *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    if (cairo_surface_status(*surf) != CAIRO_STATUS_SUCCESS) {
        snprintf(err, errlen, "cairo: %s", cairo_status_to_string(cairo_surface_status(*surf)));
        cairo_surface_destroy(*surf);
        return NULL;
    }
    cairo_t *cr = cairo_create(*surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    return cr;
}

static int finish(cairo_t *cr, cairo_surface_t *surf, const char *path, char *err, size_t errlen)
{
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_flush(surf);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(surf, path);
    cairo_surface_destroy(surf);
    if (st != CAIRO_STATUS_SUCCESS) {
        snprintf(err, errlen, "%s: %s", path, cairo_status_to_string(st));
        return -1;
    }
    return 0;
}

/* Legend box at (x, y) (top-left); line samples with the series style. */
static void legend(cairo_t *cr, double x, double y, int n, const char *const *labels, double font_size)
{
    font(cr, font_size, 0);
    double w = 0;
    for (int i = 0; i < n; i++) {
        double tw = text_width(cr, labels[i]);
        if (tw > w) w = tw;
    }
    double row = font_size * 1.45, pad = 8;
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
    cairo_rectangle(cr, x, y, w + 50 + 2 * pad, n * row + 2 * pad);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        double yy = y + pad + row * (i + 0.5);
        set_colour(cr, i);
        set_dash_for(cr, i);
        cairo_set_line_width(cr, 3);
        cairo_move_to(cr, x + pad, yy);
        cairo_line_to(cr, x + pad + 36, yy);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, x + pad + 44, yy, 0, 0.5, 0, labels[i]);
    }
    cairo_set_dash(cr, NULL, 0, 0);
}

static double legend_width(cairo_t *cr, int n, const char *const *labels, double font_size)
{
    font(cr, font_size, 0);
    double w = 0;
    for (int i = 0; i < n; i++) {
        double tw = text_width(cr, labels[i]);
        if (tw > w) w = tw;
    }
    return w + 50 + 16;
}

static void title_text(cairo_t *cr, double cx, double y, const char *title)
{
    if (!title) return;
    cairo_set_source_rgb(cr, 0, 0, 0);
    font(cr, 18, 1);
    text_at(cr, cx, y, 0.5, 0, 0, title);
}

/* ------------------------------------------------------------ confusion */

int plot_confusion(const char *path, int k, const char *const *names, const int *confusion,
                   const char *title, char *err, size_t errlen)
{
    if (k <= 0 || k > 64) {
        snprintf(err, errlen, "confusion plot: %d classes", k);
        return -1;
    }
    double cell = k <= 8 ? 84 : k <= 16 ? 48 : 24;
    /* Measure labels first: margins fit the longest class name, and column
     * labels turn vertical when they do not fit under their cell. */
    cairo_surface_t *tmp = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 4, 4);
    cairo_t *tc = cairo_create(tmp);
    font(tc, 14, 0);
    double maxw = 0;
    for (int i = 0; i < k; i++) maxw = fmax(maxw, text_width(tc, names[i]));
    font(tc, 18, 1);
    double tw = title ? text_width(tc, title) : 0;
    cairo_destroy(tc);
    cairo_surface_destroy(tmp);
    int vertical = maxw > cell - 6;
    double left = 60 + maxw, top = 70, right = 40, bottom = 90 + (vertical ? maxw : 20);
    int W = (int)(left + k * cell + right), H = (int)(top + k * cell + bottom);
    int minw = (int)fmax(520, tw + 40);
    if (W < minw) {
        right += minw - W;
        W = minw;
    }
    cairo_surface_t *surf;
    cairo_t *cr = begin(W, H, &surf, err, errlen);
    if (!cr) return -1;
    title_text(cr, W / 2.0, 18, title);
    char buf[64];
    for (int r = 0; r < k; r++) {
        long row = 0;
        for (int c = 0; c < k; c++) row += confusion[r * k + c];
        for (int c = 0; c < k; c++) {
            int v = confusion[r * k + c];
            double frac = row ? (double)v / row : 0;
            /* white -> blue ramp on the row-normalised fraction (recall) */
            cairo_set_source_rgb(cr, 1 - 0.85 * frac, 1 - 0.6 * frac, 1 - 0.25 * frac);
            double x = left + c * cell, y = top + r * cell;
            cairo_rectangle(cr, x, y, cell, cell);
            cairo_fill(cr);
            cairo_set_source_rgb(cr, frac > 0.55 ? 1 : 0, frac > 0.55 ? 1 : 0, frac > 0.55 ? 1 : 0);
            if (cell >= 48) {
                font(cr, cell >= 80 ? 17 : 12, 1);
                snprintf(buf, sizeof buf, "%d", v);
                text_at(cr, x + cell / 2, y + cell / 2 - (cell >= 80 ? 10 : 6), 0.5, 0.5, 0, buf);
                font(cr, cell >= 80 ? 13 : 10, 0);
                snprintf(buf, sizeof buf, "%.0f%%", 100 * frac);
                if (row) text_at(cr, x + cell / 2, y + cell / 2 + (cell >= 80 ? 12 : 8), 0.5, 0.5, 0, buf);
            }
        }
    }
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 1);
    for (int i = 0; i <= k; i++) {
        cairo_move_to(cr, left, top + i * cell);
        cairo_line_to(cr, left + k * cell, top + i * cell);
        cairo_move_to(cr, left + i * cell, top);
        cairo_line_to(cr, left + i * cell, top + k * cell);
    }
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    font(cr, 14, 0);
    for (int i = 0; i < k; i++) {
        text_at(cr, left - 8, top + (i + 0.5) * cell, 1, 0.5, 0, names[i]);
        if (vertical) text_at(cr, left + (i + 0.5) * cell, top + k * cell + 8, 1, 0.5, M_PI / 2, names[i]);
        else text_at(cr, left + (i + 0.5) * cell, top + k * cell + 8, 0.5, 0, 0, names[i]);
    }
    double below = top + k * cell + (vertical ? maxw + 14 : 30);
    font(cr, 16, 0);
    text_at(cr, left + k * cell / 2, below + 4, 0.5, 0, 0, "predicted class");
    text_at(cr, 22, top + k * cell / 2, 0.5, 0.5, M_PI / 2, "true class");
    font(cr, 12, 0);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    text_at(cr, left + k * cell / 2, below + 34, 0.5, 0, 0,
            "cell: count and share of the true class (row); shading = row share");
    return finish(cr, surf, path, err, errlen);
}

/* ------------------------------------------------------------ ROC */

int plot_roc(const char *path, int n_curves, const char *const *labels, const double *const *fpr,
             const double *const *tpr, const int *npts, const char *title, char *err, size_t errlen)
{
    int W = 760, H = 720;
    cairo_surface_t *surf;
    cairo_t *cr = begin(W, H, &surf, err, errlen);
    if (!cr) return -1;
    /* a little margin so curves running along x = 0 or y = 1 stay visible */
    frame f = {90, 60, 620, 580, -0.015, 1.015, -0.015, 1.015};
    title_text(cr, f.x + f.w / 2, 18, title);
    axes(cr, &f, 0.1, 0.1, "false positive rate (1 - specificity)", "true positive rate (sensitivity)", 1);
    static const double dash[] = {6.0, 6.0};
    cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_width(cr, 1.5);
    cairo_move_to(cr, fx(&f, 0), fy(&f, 0));
    cairo_line_to(cr, fx(&f, 1), fy(&f, 1));
    cairo_stroke(cr);
    cairo_save(cr);
    cairo_rectangle(cr, f.x, f.y, f.w, f.h);
    cairo_clip(cr);
    for (int i = 0; i < n_curves; i++) {
        if (!fpr[i] || npts[i] < 2) continue;
        set_colour(cr, i);
        set_dash_for(cr, i);
        cairo_set_line_width(cr, 2.5);
        cairo_move_to(cr, fx(&f, fpr[i][0]), fy(&f, tpr[i][0]));
        for (int j = 1; j < npts[i]; j++) cairo_line_to(cr, fx(&f, fpr[i][j]), fy(&f, tpr[i][j]));
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    double lw = legend_width(cr, n_curves, labels, 14);
    double lh = n_curves * 14 * 1.45 + 16;
    legend(cr, f.x + f.w - lw - 10, f.y + f.h - lh - 10, n_curves, labels, 14);
    return finish(cr, surf, path, err, errlen);
}

/* ------------------------------------------------------------ reliability */

int plot_reliability(const char *path, int n_bins, const int *count, const double *mean_conf,
                     const double *accuracy, double ece, const char *title, char *err, size_t errlen)
{
    if (n_bins <= 0) {
        snprintf(err, errlen, "reliability plot: no bins");
        return -1;
    }
    int W = 760, H = 900;
    cairo_surface_t *surf;
    cairo_t *cr = begin(W, H, &surf, err, errlen);
    if (!cr) return -1;
    frame f = {90, 100, 620, 540, 0, 1, 0, 1};
    title_text(cr, f.x + f.w / 2, 14, title);
    axes(cr, &f, 0.1, 0.1, NULL, "accuracy in bin", 1);
    double bw = 1.0 / n_bins;
    for (int b = 0; b < n_bins; b++) {
        if (!count[b]) continue;
        double x0 = fx(&f, b * bw), x1 = fx(&f, (b + 1) * bw);
        double ya = fy(&f, accuracy[b]), yc = fy(&f, mean_conf[b]);
        cairo_set_source_rgb(cr, 0.0, 0.45, 0.70);
        cairo_rectangle(cr, x0 + 1, ya, x1 - x0 - 2, fy(&f, 0) - ya);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0, 0.25, 0.45);
        cairo_set_line_width(cr, 1);
        cairo_stroke(cr);
        /* gap between accuracy and mean confidence, drawn over the bar */
        cairo_set_source_rgba(cr, 0.85, 0.2, 0.2, 0.4);
        cairo_rectangle(cr, x0 + 1, fmin(ya, yc), x1 - x0 - 2, fabs(ya - yc));
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.7, 0.0, 0.0);
        cairo_set_line_width(cr, 2.5);
        cairo_move_to(cr, x0 + 1, yc);
        cairo_line_to(cr, x1 - 1, yc);
        cairo_stroke(cr);
    }
    static const double dash[] = {6.0, 6.0};
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_width(cr, 1.5);
    cairo_move_to(cr, fx(&f, 0), fy(&f, 0));
    cairo_line_to(cr, fx(&f, 1), fy(&f, 1));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    /* legend: one row between the title and the plot, never over the bars */
    double ly = 58;
    font(cr, 14, 0);
    double lx = f.x;
    cairo_set_source_rgb(cr, 0.0, 0.45, 0.70);
    cairo_rectangle(cr, lx, ly - 8, 20, 16);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, lx + 26, ly, 0, 0.5, 0, "accuracy");
    lx += 26 + text_width(cr, "accuracy") + 22;
    cairo_set_source_rgb(cr, 0.7, 0.0, 0.0);
    cairo_set_line_width(cr, 2.5);
    cairo_move_to(cr, lx, ly);
    cairo_line_to(cr, lx + 20, ly);
    cairo_stroke(cr);
    cairo_set_source_rgba(cr, 0.85, 0.2, 0.2, 0.4);
    cairo_rectangle(cr, lx, ly - 8, 20, 16);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, lx + 26, ly, 0, 0.5, 0, "mean confidence and gap");
    lx += 26 + text_width(cr, "mean confidence and gap") + 22;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_width(cr, 1.5);
    cairo_move_to(cr, lx, ly);
    cairo_line_to(cr, lx + 28, ly);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, lx + 34, ly, 0, 0.5, 0, "perfect calibration");
    char buf[96];

    /* count histogram (log-free, scaled to the largest bin) */
    frame h = {90, 680, 620, 130, 0, 1, 0, 1};
    int maxc = 1;
    for (int b = 0; b < n_bins; b++)
        if (count[b] > maxc) maxc = count[b];
    for (int b = 0; b < n_bins; b++) {
        if (!count[b]) continue;
        double x0 = fx(&h, b * bw), x1 = fx(&h, (b + 1) * bw);
        double y1 = fy(&h, 0.85 * count[b] / maxc); /* headroom for the label */
        cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
        cairo_rectangle(cr, x0 + 1, y1, x1 - x0 - 2, fy(&h, 0) - y1);
        cairo_fill(cr);
        font(cr, 11, 0);
        cairo_set_source_rgb(cr, 0, 0, 0);
        snprintf(buf, sizeof buf, "%d", count[b]);
        text_at(cr, (x0 + x1) / 2, y1 - 3, 0.5, 1, 0, buf);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1.5);
    cairo_rectangle(cr, h.x, h.y, h.w, h.h);
    cairo_stroke(cr);
    font(cr, 14, 0);
    for (int i = 0; i <= 10; i++) {
        double v = i / 10.0, px = fx(&h, v);
        cairo_move_to(cr, px, h.y + h.h);
        cairo_line_to(cr, px, h.y + h.h + 6);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%.1f", v);
        text_at(cr, px, h.y + h.h + 9, 0.5, 0, 0, buf);
    }
    font(cr, 16, 0);
    text_at(cr, h.x + h.w / 2, h.y + h.h + 34, 0.5, 0, 0, "confidence of the predicted class");
    text_at(cr, h.x - 58, h.y + h.h / 2, 0.5, 0.5, M_PI / 2, "images");
    return finish(cr, surf, path, err, errlen);
}

/* ------------------------------------------------------------ line panels */

int plot_lines(const char *path, const char *title, int n_panels, const char *const *panel_titles,
               const char *xlabel, const char *ylabel, int n_series, const char *const *series_names,
               int n_x, const char *const *x_ticks, const double *y, double ymin, double ymax, char *err,
               size_t errlen)
{
    if (n_panels <= 0 || n_panels > 8 || n_series <= 0 || n_x <= 0 || !(ymax > ymin)) {
        snprintf(err, errlen, "line plot: bad layout (%d panels, %d series, %d x)", n_panels, n_series, n_x);
        return -1;
    }
    /* measure the legend on a scratch surface first */
    cairo_surface_t *tmp = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 4, 4);
    cairo_t *tc = cairo_create(tmp);
    double lw = legend_width(tc, n_series, series_names, 14);
    cairo_destroy(tc);
    cairo_surface_destroy(tmp);
    double pw = 520, ph = 480, left = 90, gap = 70, top = 80;
    int W = (int)(left + n_panels * pw + (n_panels - 1) * gap + 30 + lw + 20);
    double lh = n_series * 14 * 1.45 + 16;
    int H = (int)(top + fmax(ph, lh) + 80);
    cairo_surface_t *surf;
    cairo_t *cr = begin(W, H, &surf, err, errlen);
    if (!cr) return -1;
    title_text(cr, W / 2.0, 16, title);
    double ystep = (ymax - ymin) > 0.55 ? 0.1 : 0.05;
    for (int p = 0; p < n_panels; p++) {
        frame f = {left + p * (pw + gap), top, pw, ph, -0.3, n_x - 0.7, ymin, ymax};
        axes(cr, &f, 1, ystep, xlabel, p == 0 ? ylabel : NULL, 0);
        font(cr, 14, 0);
        cairo_set_source_rgb(cr, 0, 0, 0);
        for (int x = 0; x < n_x; x++) {
            double px = fx(&f, x);
            cairo_move_to(cr, px, f.y + f.h);
            cairo_line_to(cr, px, f.y + f.h + 6);
            cairo_stroke(cr);
            if (x_ticks && x_ticks[x]) text_at(cr, px, f.y + f.h + 9, 0.5, 0, 0, x_ticks[x]);
        }
        font(cr, 16, 1);
        if (panel_titles && panel_titles[p]) text_at(cr, f.x + f.w / 2, f.y - 26, 0.5, 0, 0, panel_titles[p]);
        cairo_save(cr);
        cairo_rectangle(cr, f.x, f.y, f.w, f.h);
        cairo_clip(cr);
        for (int s = 0; s < n_series; s++) {
            const double *v = y + ((size_t)p * n_series + s) * n_x;
            set_colour(cr, s);
            set_dash_for(cr, s);
            cairo_set_line_width(cr, 2.2);
            int pen = 0;
            for (int x = 0; x < n_x; x++) {
                if (isnan(v[x])) {
                    pen = 0;
                    continue;
                }
                if (pen) cairo_line_to(cr, fx(&f, x), fy(&f, v[x]));
                else cairo_move_to(cr, fx(&f, x), fy(&f, v[x]));
                pen = 1;
            }
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
            for (int x = 0; x < n_x; x++) {
                if (isnan(v[x])) continue;
                cairo_arc(cr, fx(&f, x), fy(&f, v[x]), 3.5, 0, 2 * M_PI);
                cairo_fill(cr);
            }
        }
        cairo_restore(cr);
    }
    legend(cr, left + n_panels * pw + (n_panels - 1) * gap + 30, top, n_series, series_names, 14);
    return finish(cr, surf, path, err, errlen);
}

#endif
