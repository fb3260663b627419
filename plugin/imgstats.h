/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens plug-in: a cheap image-statistics check that runs beside the
 * model's Mahalanobis out-of-distribution score. It flags inputs that cannot
 * be a dermoscopic lesion image whatever the network says: too small, blank
 * (nearly every pixel clipped to white or black) and flat / near-uniform
 * (almost no contrast anywhere: a plain colour, a plain skin patch, a grey
 * card). Plain C, no GIMP, no GLib. */
#ifndef DLP_IMGSTATS_H
#define DLP_IMGSTATS_H

#include <stddef.h>
#include <stdint.h>

/* Smaller than this on either side: "too small". */
#define DLP_STATS_MIN_SIDE 32
/* Fraction of clipped (near-white or near-black) pixels that makes "blank". */
#define DLP_STATS_BLANK_FRACTION 0.97
/* Robust contrast (2nd to 98th percentile, the largest over R, G, B, in
 * 8-bit levels) below which an image is "flat / near-uniform". On
 * ham10000/val + test (2981 images) the lowest value is 30 and only 4 are
 * below 40; tests/gimp/imgstats_check.c measures the false-positive rate on
 * ham10000/test. Noise does not hide flatness: percentiles ignore the tails
 * and sd-4 noise spans about 16 levels. */
#define DLP_STATS_FLAT_RANGE 32

typedef struct {
    int width, height;
    double mean[3];        /* per channel, 8-bit levels */
    double stddev[3];      /* per channel */
    int range[3];          /* 98th - 2nd percentile per channel */
    int max_range;         /* largest of range[] */
    double clipped;        /* fraction of samples with all channels >= 250 or all <= 5 */
    double detail;         /* mean |luma difference| between horizontal neighbours (info) */
    int samples;           /* pixels looked at (a grid of at most ~65536) */
} dlp_image_stats;

/* Statistics of an RGB8 region (stride bytes per row). */
void dlp_image_stats_compute(const uint8_t *rgb, int width, int height, size_t stride,
                             dlp_image_stats *out);

/* 1 when the statistics say "not a dermoscopic lesion image", with a short
 * reason ("too small (20 x 20 pixels)", "blank", "flat: almost no contrast")
 * in reason; 0 otherwise (reason ""). */
int dlp_image_stats_flag(const dlp_image_stats *s, char *reason, size_t reason_size);

#endif
