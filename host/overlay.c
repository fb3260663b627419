/* SPDX-License-Identifier: GPL-3.0-or-later */
/* How a saliency map is drawn: the one colour map, its opacity ramp, the
 * outline of the top of the map, blending onto the picture, and the plain
 * legend bar of annotated copies. */
#include "dermlens_host.h"
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ colour map */

/* A perceptual map defined here: a path in OKLab whose lightness rises
 * linearly (dark violet -> red -> orange -> pale yellow, inferno-like), so
 * the order of values reads in grey print and for colour-blind readers.
 * Out-of-gamut colours lose chroma (bisection) rather than clip. */
static double srgb_gamma(double c)
{
    return c <= 0.0031308 ? 12.92 * c : 1.055 * pow(c, 1 / 2.4) - 0.055;
}

static int oklab_to_srgb(double L, double a, double b, double rgb[3])
{
    double l_ = L + 0.3963377774 * a + 0.2158037573 * b;
    double m_ = L - 0.1055613458 * a - 0.0638541728 * b;
    double s_ = L - 0.0894841775 * a - 1.2914855480 * b;
    double l = l_ * l_ * l_, m = m_ * m_ * m_, s = s_ * s_ * s_;
    double lin[3] = {4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s,
                     -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s,
                     -0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s};
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        if (lin[i] < -1e-6 || lin[i] > 1 + 1e-6)
            ok = 0;
        rgb[i] = srgb_gamma(lin[i] < 0 ? 0 : lin[i] > 1 ? 1 : lin[i]);
    }
    return ok;
}

static uint8_t lut[256][3];

static void build_lut(void)
{
    for (int i = 0; i < 256; i++) {
        double t = i / 255.0;
        double L = 0.20 + 0.72 * t;
        double hue = (285.0 + 180.0 * t) * M_PI / 180.0; /* violet -> red -> yellow */
        double chroma = 0.06 + 0.12 * t + 0.06 * sin(M_PI * t);
        double rgb[3], lo = 0, hi = chroma;
        if (!oklab_to_srgb(L, chroma * cos(hue), chroma * sin(hue), rgb)) {
            for (int it = 0; it < 30; it++) {
                double c = 0.5 * (lo + hi);
                if (oklab_to_srgb(L, c * cos(hue), c * sin(hue), rgb))
                    lo = c;
                else
                    hi = c;
            }
            oklab_to_srgb(L, lo * cos(hue), lo * sin(hue), rgb);
        }
        for (int k = 0; k < 3; k++)
            lut[i][k] = (uint8_t)lround(rgb[k] * 255.0);
    }
}

static float clamp01(float s)
{
    return s > 0.0f ? (s < 1.0f ? s : 1.0f) : 0.0f; /* NaN -> 0 */
}

float dh_saliency_alpha(float s)
{
    float t = (clamp01(s) - DH_ALPHA_LOW) / (DH_ALPHA_HIGH - DH_ALPHA_LOW);
    t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
    return t * t * (3.0f - 2.0f * t);
}

static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

void dh_colormap(float s, uint8_t rgba[4])
{
    pthread_once(&lut_once, build_lut);
    s = clamp01(s);
    memcpy(rgba, lut[(int)lroundf(s * 255.0f)], 3);
    rgba[3] = dh_to_u8(dh_saliency_alpha(s));
}

static void put_px(float s, int channels, uint8_t *px)
{
    uint8_t rgba[4];
    dh_colormap(s, rgba);
    if (channels == 4) {
        memcpy(px, rgba, 4);
    } else {
        px[0] = dh_to_u8(s);
        px[1] = rgba[3];
    }
}

void dh_overlay_rows(const float *map, int w, int y0, int rows, int channels, uint8_t *out)
{
    /* put_px's pixels without its per-pixel once-check: a 12-megapixel
     * overlay is written in this loop */
    pthread_once(&lut_once, build_lut);
    for (int y = 0; y < rows; y++) {
        const float *src = map + (size_t)(y0 + y) * (size_t)w;
        uint8_t *dst = out + (size_t)y * (size_t)w * (size_t)channels;
        for (int x = 0; x < w; x++, dst += channels) {
            float s = clamp01(src[x]);
            uint8_t a = dh_to_u8(dh_saliency_alpha(s));
            if (channels == 4) {
                memcpy(dst, lut[(int)lroundf(s * 255.0f)], 3);
                dst[3] = a;
            } else {
                dst[0] = dh_to_u8(s);
                dst[1] = a;
            }
        }
    }
}

/* ------------------------------------------------------------------ outline */

float dh_map_level(const float *map, size_t n, double top)
{
    enum { BINS = 4096 };
    if (!map || n == 0 || !(top > 0.0 && top < 1.0))
        return INFINITY;
    unsigned *hist = calloc(BINS, sizeof *hist);
    if (!hist)
        return INFINITY;
    for (size_t i = 0; i < n; i++)
        hist[(int)(clamp01(map[i]) * (BINS - 1) + 0.5f)]++;
    /* From the top down to the bin where `top` of the pixels is reached. */
    double want = top * (double)n, acc = 0;
    int b = BINS - 1;
    for (; b > 0; b--) {
        acc += hist[b];
        if (acc >= want)
            break;
    }
    free(hist);
    /* A map that is zero almost everywhere has no top 20 %: its level is
     * then its lowest positive value, and a map with no evidence none. */
    return b > 0 ? (float)b / (BINS - 1) : INFINITY;
}

double dh_outline_width(int w, int h)
{
    int s = w < h ? w : h;
    double px = s / 110.0;
    return px < 2.0 ? 2.0 : px;
}

/* The outline at (x, y): the level's contour, found as the signed distance
 * (v - level) / |gradient| of the (smooth) map, so the stroke is
 * anti-aliased and as wide everywhere; a light core with a dark rim reads on
 * pale skin and on dark lesions alike. rgba gets straight alpha. */
static void outline_px(const float *map, int w, int h, int x, int y, float level, double width,
                       uint8_t rgba[4])
{
    const float *row = map + (size_t)y * (size_t)w;
    float v = clamp01(row[x]);
    int xl = x > 0 ? x - 1 : x, xr = x < w - 1 ? x + 1 : x;
    int yu = y > 0 ? y - 1 : y, yd = y < h - 1 ? y + 1 : y;
    float gx = xr > xl ? (clamp01(row[xr]) - clamp01(row[xl])) / (float)(xr - xl) : 0.0f;
    float gy = yd > yu ? (clamp01(map[(size_t)yd * (size_t)w + (size_t)x]) -
                          clamp01(map[(size_t)yu * (size_t)w + (size_t)x])) / (float)(yd - yu)
                       : 0.0f;
    float g = sqrtf(gx * gx + gy * gy);
    memset(rgba, 0, 4);
    if (!(g > 1e-7f) || !isfinite(level))
        return;
    double d = fabs((double)(v - level) / g);
    double r = width * 0.5, rim = width * 0.35 < 1.0 ? 1.0 : width * 0.35;
    double ac = r + 0.5 - d, ar = r + rim + 0.5 - d;
    ac = ac < 0 ? 0 : ac > 1 ? 1 : ac;
    ar = (ar < 0 ? 0 : ar > 1 ? 1 : ar) * 0.75;
    double a = ac + ar * (1.0 - ac);
    if (a <= 0.0)
        return;
    uint8_t hi[4];
    dh_colormap(1.0f, hi);
    for (int k = 0; k < 3; k++) /* core over a black rim */
        rgba[k] = (uint8_t)lround(hi[k] * ac / a);
    rgba[3] = (uint8_t)lround(a * 255.0);
}

void dh_outline_rows(const float *map, int w, int h, float level, double width, int y0, int rows,
                     int channels, uint8_t *out)
{
    for (int y = 0; y < rows; y++) {
        uint8_t *dst = out + (size_t)y * (size_t)w * (size_t)channels;
        for (int x = 0; x < w; x++) {
            uint8_t px[4];
            outline_px(map, w, h, x, y0 + y, level, width, px);
            uint8_t *d = dst + (size_t)x * (size_t)channels;
            if (channels == 4) {
                memcpy(d, px, 4);
            } else {
                d[0] = (uint8_t)((px[0] * 299 + px[1] * 587 + px[2] * 114 + 500) / 1000);
                d[1] = px[3];
            }
        }
    }
}

/* ------------------------------------------------------------------ blending */

static void over(uint8_t *dst, const uint8_t rgba[4], double opacity)
{
    double a = rgba[3] / 255.0 * opacity;
    for (int k = 0; k < 3; k++)
        dst[k] = (uint8_t)lround(dst[k] * (1.0 - a) + rgba[k] * a);
}

void dh_blend_rows(const uint8_t *rgb, size_t stride, const float *map, int w, int h, int y0,
                   int rows, const dh_overlay *o, uint8_t *out, size_t out_stride)
{
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = rgb + (size_t)(y0 + y) * stride;
        uint8_t *dst = out + (size_t)y * out_stride;
        const float *mrow = map + (size_t)(y0 + y) * (size_t)w;
        memcpy(dst, src, (size_t)w * 3);
        for (int x = 0; x < w; x++) {
            uint8_t px[4];
            if (o->style != DH_OVERLAY_OUTLINE) {
                dh_colormap(mrow[x], px);
                over(dst + 3 * (size_t)x, px, o->opacity);
            }
            if (o->style != DH_OVERLAY_FILL) {
                outline_px(map, w, h, x, y0 + y, o->level, o->width, px);
                over(dst + 3 * (size_t)x, px, 1.0);
            }
        }
    }
}

void dh_overlay_init(dh_overlay *o, const float *map, int w, int h, dh_overlay_style style,
                     double opacity)
{
    o->style = style;
    o->opacity = opacity < 0 ? 0 : opacity > 1 ? 1 : opacity;
    o->level = style == DH_OVERLAY_FILL ? INFINITY
                                        : dh_map_level(map, (size_t)w * (size_t)h, DH_OUTLINE_TOP);
    o->width = dh_outline_width(w, h);
}

static const char *const style_names[] = {"fill", "outline", "both"};

int dh_overlay_style_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, style_names[i]) == 0)
            return i;
    return -1;
}

const char *dh_overlay_style_name(dh_overlay_style s)
{
    return (int)s >= 0 && (int)s < 3 ? style_names[s] : "?";
}

const char *dh_overlay_style_title(dh_overlay_style s)
{
    static const char *const t[] = {"Colour map", "Outline of the top 20 %",
                                    "Colour map and outline"};
    return (int)s >= 0 && (int)s < 3 ? t[s] : "?";
}

const char *dh_overlay_style_help(dh_overlay_style s)
{
    static const char *const t[] = {
        "Where the model looked, dark (little) to yellow (most); the lesion shows through",
        "Only the contour of the most salient 20 %: the lesion stays fully visible",
        "The colour map with the contour of its top 20 % on top"};
    return (int)s >= 0 && (int)s < 3 ? t[s] : "";
}

/* ------------------------------------------------------------------ legend */

void dh_legend_size(int region_w, int region_h, int *w, int *h)
{
    int lw = region_w / 3;
    if (lw < 48)
        lw = 48;
    if (lw > 256)
        lw = 256;
    int lh = lw / 8;
    if (lh < 6)
        lh = 6;
    (void)region_h;
    *w = lw;
    *h = lh;
}

void dh_legend_pixels(int w, int h, int channels, uint8_t *out)
{
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *px = out + (size_t)channels * ((size_t)y * (size_t)w + (size_t)x);
            if (x == 0 || y == 0 || x == w - 1 || y == h - 1) {
                memset(px, 32, (size_t)channels - 1);
            } else {
                float s = (w > 3) ? (float)(x - 1) / (float)(w - 3) : 0.0f;
                put_px(s, channels, px);
            }
            px[channels - 1] = 255;
        }
    }
}
