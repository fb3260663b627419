/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Overlay and legend pixels: the one colour map and the map resampling. */
#include "dermlens_host.h"
#include "internal.h"

#include <math.h>
#include <string.h>

void dh_colormap(float s, uint8_t rgba[4])
{
    /* Blue -> cyan -> green -> yellow -> red, the usual CAM palette. */
    static const float stops[5][3] = {
        {0.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 1.0f}, {0.0f, 1.0f, 0.0f},
        {1.0f, 1.0f, 0.0f}, {1.0f, 0.0f, 0.0f},
    };
    if (!(s > 0.0f))
        s = 0.0f;
    if (s > 1.0f)
        s = 1.0f;
    float t = s * 4.0f;
    int i = (int)t;
    if (i > 3)
        i = 3;
    float f = t - (float)i;
    for (int c = 0; c < 3; c++)
        rgba[c] = dh_to_u8(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f);
    /* Transparent below 0.2, fully opaque from 0.7 on. */
    float a = (s - 0.2f) / 0.5f;
    rgba[3] = dh_to_u8(a);
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

void dh_overlay_rows(const float *map, int map_w, int map_h, int out_w, int out_h, int y0,
                      int rows, int channels, uint8_t *out)
{
    if (map_w == out_w && map_h == out_h) {
        for (int y = 0; y < rows; y++) {
            const float *src = map + (size_t)(y0 + y) * (size_t)map_w;
            uint8_t *dst = out + (size_t)y * (size_t)out_w * (size_t)channels;
            for (int x = 0; x < out_w; x++)
                put_px(src[x], channels, dst + (size_t)x * (size_t)channels);
        }
        return;
    }
    /* Pixel-centre aligned bilinear sampling of the smaller map. */
    double sx = (double)map_w / (double)out_w, sy = (double)map_h / (double)out_h;
    for (int y = 0; y < rows; y++) {
        double fy = ((double)(y0 + y) + 0.5) * sy - 0.5;
        if (fy < 0.0)
            fy = 0.0;
        int iy = (int)fy;
        if (iy > map_h - 1)
            iy = map_h - 1;
        int iy1 = iy + 1 < map_h ? iy + 1 : iy;
        float wy = (float)(fy - iy);
        const float *r0 = map + (size_t)iy * (size_t)map_w;
        const float *r1 = map + (size_t)iy1 * (size_t)map_w;
        uint8_t *dst = out + (size_t)y * (size_t)out_w * (size_t)channels;
        for (int x = 0; x < out_w; x++) {
            double fx = ((double)x + 0.5) * sx - 0.5;
            if (fx < 0.0)
                fx = 0.0;
            int ix = (int)fx;
            if (ix > map_w - 1)
                ix = map_w - 1;
            int ix1 = ix + 1 < map_w ? ix + 1 : ix;
            float wx = (float)(fx - ix);
            float top = r0[ix] + (r0[ix1] - r0[ix]) * wx;
            float bot = r1[ix] + (r1[ix1] - r1[ix]) * wx;
            put_px(top + (bot - top) * wy, channels, dst + (size_t)x * (size_t)channels);
        }
    }
}

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

