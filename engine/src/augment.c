/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Training-time augmentation of RGB8 images, deterministic from a seed:
 * the original design's affine jitter (rotation +-40 deg, shifts +-20 %,
 * shear 0.2, zoom +-20 %, horizontal flip, nearest fill = edge replicate),
 * plus vertical flip, 90-degree turns and mild colour jitter. */
#include "augment.h"

#include <math.h>
#include <string.h>

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double dl_rand_uniform(uint64_t *state)
{
    *state = mix(*state);
    return (double)(*state >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t dl_seed_mix(uint64_t a, uint64_t b)
{
    return mix(a ^ mix(b));
}

void dl_augment_rgb8(const uint8_t *src, uint8_t *dst, int w, int h, uint64_t seed)
{
    uint64_t s = seed;
#define U(lo, hi) ((lo) + ((hi) - (lo)) * dl_rand_uniform(&s))
    double rot = U(-40.0, 40.0) * M_PI / 180.0;
    double tx = U(-0.2, 0.2) * w, ty = U(-0.2, 0.2) * h;
    double shear = U(-0.2, 0.2);
    double zx = U(0.8, 1.2), zy = U(0.8, 1.2);
    bool hflip = dl_rand_uniform(&s) < 0.5, vflip = dl_rand_uniform(&s) < 0.5;
    int turns = (int)(dl_rand_uniform(&s) * 4) & 3;
    double bright = U(-0.1, 0.1), contrast = U(0.9, 1.1), sat = U(0.9, 1.1);
#undef U
    /* Output -> source mapping about the centre: inverse of
     * translate * rotate * shear * zoom (Keras convention: zoom < 1 magnifies). */
    double c = cos(rot), sn = sin(rot);
    /* M = R * Sh * Z, with Sh = [[1, -sin(shear)], [0, cos(shear)]] */
    double sh0 = -sin(shear), sh1 = cos(shear);
    double m00 = c * zx, m01 = (c * sh0 - sn * sh1) * zy;
    double m10 = sn * zx, m11 = (sn * sh0 + c * sh1) * zy;
    const double cx = (w - 1) * 0.5, cy = (h - 1) * 0.5;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            /* turns and flips act on output coordinates */
            double ox = x, oy = y;
            for (int t = 0; t < turns; t++) { double nx = (w - 1) - oy; oy = ox; ox = nx; }
            if (hflip) ox = (w - 1) - ox;
            if (vflip) oy = (h - 1) - oy;
            double dx = ox - cx - tx, dy = oy - cy - ty;
            double sx = m00 * dx + m01 * dy + cx, sy = m10 * dx + m11 * dy + cy;
            /* nearest fill: clamp to the edge, bilinear inside */
            if (sx < 0) sx = 0;
            if (sy < 0) sy = 0;
            if (sx > w - 1) sx = w - 1;
            if (sy > h - 1) sy = h - 1;
            int x0 = (int)sx, y0 = (int)sy;
            int x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
            double fx = sx - x0, fy = sy - y0;
            const uint8_t *p00 = src + ((size_t)y0 * w + x0) * 3, *p01 = src + ((size_t)y0 * w + x1) * 3;
            const uint8_t *p10 = src + ((size_t)y1 * w + x0) * 3, *p11 = src + ((size_t)y1 * w + x1) * 3;
            double rgb[3];
            for (int k = 0; k < 3; k++)
                rgb[k] = (p00[k] * (1 - fx) + p01[k] * fx) * (1 - fy) + (p10[k] * (1 - fx) + p11[k] * fx) * fy;
            double grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
            uint8_t *o = dst + ((size_t)y * w + x) * 3;
            for (int k = 0; k < 3; k++) {
                double v = grey + (rgb[k] - grey) * sat;
                v = (v - 128.0) * contrast + 128.0 + bright * 255.0;
                o[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
            }
        }
    }
}
