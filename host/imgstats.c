/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Cheap image statistics for the "not a lesion image" check (see dermlens_host.h). */
#include "dermlens_host.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Value at fraction q of a 256-bin histogram holding n samples. */
static int hist_quantile(const unsigned *h, unsigned n, double q)
{
    double target = q * (double)n;
    unsigned acc = 0;
    for (int v = 0; v < 256; v++) {
        acc += h[v];
        if ((double)acc > target)
            return v;
    }
    return 255;
}

void dh_image_stats_compute(const uint8_t *rgb, int width, int height, size_t stride,
                             dh_image_stats *out)
{
    memset(out, 0, sizeof *out);
    out->width = width;
    out->height = height;
    if (!rgb || width < 1 || height < 1)
        return;
    /* A regular grid of at most 256 x 256 samples: cost is independent of
     * the region's size. */
    int sx = width > 256 ? width / 256 : 1, sy = height > 256 ? height / 256 : 1;
    unsigned hist[3][256];
    memset(hist, 0, sizeof hist);
    double sum[3] = {0, 0, 0}, sum2[3] = {0, 0, 0}, detail = 0.0;
    unsigned n = 0, clipped = 0, ndetail = 0;
    for (int y = 0; y < height; y += sy) {
        const uint8_t *row = rgb + (size_t)y * stride;
        double prev_luma = -1.0;
        for (int x = 0; x < width; x += sx) {
            const uint8_t *p = row + (size_t)x * 3;
            for (int c = 0; c < 3; c++) {
                hist[c][p[c]]++;
                sum[c] += p[c];
                sum2[c] += (double)p[c] * p[c];
            }
            if ((p[0] >= 250 && p[1] >= 250 && p[2] >= 250) || (p[0] <= 5 && p[1] <= 5 && p[2] <= 5))
                clipped++;
            double luma = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            if (prev_luma >= 0.0) {
                detail += fabs(luma - prev_luma);
                ndetail++;
            }
            prev_luma = luma;
            n++;
        }
    }
    out->samples = (int)n;
    for (int c = 0; c < 3; c++) {
        out->mean[c] = sum[c] / n;
        double var = sum2[c] / n - out->mean[c] * out->mean[c];
        out->stddev[c] = var > 0.0 ? sqrt(var) : 0.0;
        out->range[c] = hist_quantile(hist[c], n, 0.98) - hist_quantile(hist[c], n, 0.02);
        if (out->range[c] > out->max_range)
            out->max_range = out->range[c];
    }
    out->clipped = (double)clipped / n;
    out->detail = ndetail ? detail / ndetail : 0.0;
}

int dh_image_stats_flag(const dh_image_stats *s, char *reason, size_t reason_size)
{
    if (reason && reason_size)
        reason[0] = '\0';
    const char *why = NULL;
    char buf[96];
    if (s->width < DH_STATS_MIN_SIDE || s->height < DH_STATS_MIN_SIDE) {
        snprintf(buf, sizeof buf, "too small (%d x %d pixels)", s->width, s->height);
        why = buf;
    } else if (s->clipped >= DH_STATS_BLANK_FRACTION) {
        why = "blank (nearly every pixel white or black)";
    } else if (s->max_range < DH_STATS_FLAT_RANGE) {
        why = "flat (almost no contrast)";
    }
    if (!why)
        return 0;
    if (reason && reason_size)
        snprintf(reason, reason_size, "%s", why);
    return 1;
}
