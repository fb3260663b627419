/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Training-time augmentation of RGB8 images, deterministic from a seed:
 * the original design's affine jitter (rotation +-40 deg, shifts +-20 %,
 * shear 0.2, zoom +-20 %, horizontal flip, nearest fill = edge replicate),
 * plus vertical flip, 90-degree turns and mild colour jitter. */
#include "train/augment.h"
#include "base/base.h"
#include "infer/infer.h"

#include <math.h>
#include <string.h>

/* Training's stream, kept bit for bit (checkpoints resume it, trained models
 * depend on it): each draw replaces the state by its SplitMix64 hash. */
double dl_rand_uniform(uint64_t *state)
{
    *state = dl_rng_hash(*state);
    return dl_rng_unit(*state);
}

uint64_t dl_seed_mix(uint64_t a, uint64_t b)
{
    return dl_rng_hash(a ^ dl_rng_hash(b));
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

/* Gamma(shape, 1) by Marsaglia-Tsang; shape < 1 via the boost
 * Gamma(a) = Gamma(a + 1) * U^(1/a). */
static double rand_normal(uint64_t *s)
{
    double u1 = dl_rand_uniform(s), u2 = dl_rand_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double rand_gamma(uint64_t *s, double a)
{
    if (a < 1.0) {
        double u = dl_rand_uniform(s);
        return rand_gamma(s, a + 1.0) * pow(u > 1e-300 ? u : 1e-300, 1.0 / a);
    }
    const double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rand_normal(s), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = dl_rand_uniform(s);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u > 1e-300 ? u : 1e-300) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

double dl_rand_beta(uint64_t *state, double a, double b)
{
    double x = rand_gamma(state, a), y = rand_gamma(state, b);
    return x + y > 0 ? x / (x + y) : 0.5;
}

void dl_view_params_defaults(dl_view_params *p)
{
    p->scale_min = 0.30;
    p->scale_max = 1.40;
    p->aspect = 1.33;
    p->rotate_deg = 180.0;
    p->colour = 1.0;
}

/* Mirror a coordinate into [0, n-1] (reflect fill: zoomed-out views show
 * more skin, not smeared edge pixels). */
static double reflect(double v, int n)
{
    if (n == 1) return 0;
    double period = 2.0 * (n - 1);
    v = fmod(v, period);
    if (v < 0) v += period;
    return v > n - 1 ? period - v : v;
}

void dl_augment_view(const uint8_t *src, int sw, int sh, size_t stride, int framing, uint8_t *dst, int W,
                     int H, const dl_view_params *p, uint64_t seed)
{
    uint64_t s = seed;
#define U(lo, hi) ((lo) + ((hi) - (lo)) * dl_rand_uniform(&s))
    /* base rectangle: what the model's recorded preprocessing shows */
    double bx = 0, by = 0, bw = sw, bh = sh;
    if (framing == DL_FRAME_PAD) {
        /* the whole W x H input in source pixels: the image sits in its
         * letterbox rectangle, centred */
        int lx, ly, lw, lh;
        dl_preprocess_letterbox(sw, sh, W, H, &lx, &ly, &lw, &lh);
        double kx = (double)sw / lw, ky = (double)sh / lh;
        bx = -lx * kx;
        by = -ly * ky;
        bw = W * kx;
        bh = H * ky;
    } else if (framing == DL_FRAME_CENTER_CROP) {
        double side = sw < sh ? sw : sh;
        bx = (sw - side) / 2;
        by = (sh - side) / 2;
        bw = bh = side;
    }
    /* random-resized crop relative to the base: area fraction (log-uniform,
     * so zooming in and out are equally likely around 1), aspect jitter */
    double area = exp(U(log(p->scale_min), log(p->scale_max)));
    double ar = p->aspect > 1 ? exp(U(-log(p->aspect), log(p->aspect))) : 1.0;
    double cw = bw * sqrt(area * ar), ch = bh * sqrt(area / ar);
    /* centre: anywhere that keeps the crop inside the base when it is
     * smaller; near the base's centre when it is larger */
    double mx = fabs(bw - cw) / 2, my = fabs(bh - ch) / 2;
    double cx = bx + bw / 2 + U(-mx, mx), cy = by + bh / 2 + U(-my, my);
    double rot = U(-p->rotate_deg, p->rotate_deg) * M_PI / 180.0;
    bool hflip = dl_rand_uniform(&s) < 0.5, vflip = dl_rand_uniform(&s) < 0.5;
    /* colour: brightness, contrast, saturation, gamma, per-channel gain
     * (white balance: other cameras differ most in colour), hue rotation */
    double k = p->colour;
    double bright = U(-0.15, 0.15) * k, contrast = exp(U(-0.25, 0.25) * k), sat = exp(U(-0.35, 0.35) * k);
    double gamma = exp(U(-0.25, 0.25) * k), hue = U(-0.035, 0.035) * k * 2 * M_PI;
    double gain[3];
    for (int c = 0; c < 3; c++) gain[c] = exp(U(-0.08, 0.08) * k);
#undef U
    double cr = cos(rot), sr = sin(rot);
    /* hue rotation about the grey axis (YIQ-style rotation in RGB) */
    double ch_ = cos(hue), sh_ = sin(hue);
    double hm[3][3];
    {
        const double a = 1.0 / 3.0, r3 = sqrt(1.0 / 3.0);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double v = (i == j ? ch_ : 0) + (1 - ch_) * a;
                /* cross-product term of Rodrigues' rotation about (1,1,1)/sqrt3 */
                int d = (j - i + 3) % 3;
                if (d == 1) v -= sh_ * r3;
                if (d == 2) v += sh_ * r3;
                hm[i][j] = v;
            }
    }
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) {
        double x = pow(v / 255.0, gamma) * 255.0;
        lut[v] = (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x + 0.5);
    }
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            /* output pixel -> unit square centred at 0, flipped, rotated */
            double u = (x + 0.5) / W - 0.5, v = (y + 0.5) / H - 0.5;
            if (hflip) u = -u;
            if (vflip) v = -v;
            double ru = cr * u - sr * v, rv = sr * u + cr * v;
            double qx = cx + ru * cw - 0.5, qy = cy + rv * ch - 0.5;
            uint8_t *o = dst + ((size_t)y * W + x) * 3;
            if (framing == DL_FRAME_PAD && (qx < -0.5 || qx > sw - 0.5 || qy < -0.5 || qy > sh - 0.5)) {
                o[0] = o[1] = o[2] = 0; /* the letterbox border, black as at inference */
                continue;
            }
            double sx = reflect(qx, sw), sy = reflect(qy, sh);
            int x0 = (int)sx, y0 = (int)sy;
            int x1 = x0 + 1 < sw ? x0 + 1 : x0, y1 = y0 + 1 < sh ? y0 + 1 : y0;
            double fx = sx - x0, fy = sy - y0;
            const uint8_t *p00 = src + (size_t)y0 * stride + (size_t)x0 * 3, *p01 = src + (size_t)y0 * stride + (size_t)x1 * 3;
            const uint8_t *p10 = src + (size_t)y1 * stride + (size_t)x0 * 3, *p11 = src + (size_t)y1 * stride + (size_t)x1 * 3;
            double rgb[3], out[3];
            for (int c = 0; c < 3; c++)
                rgb[c] = ((p00[c] * (1 - fx) + p01[c] * fx) * (1 - fy) + (p10[c] * (1 - fx) + p11[c] * fx) * fy) * gain[c];
            for (int i = 0; i < 3; i++) out[i] = hm[i][0] * rgb[0] + hm[i][1] * rgb[1] + hm[i][2] * rgb[2];
            double grey = 0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2];
            for (int c = 0; c < 3; c++) {
                double val = grey + (out[c] - grey) * sat;
                val = (val - 128.0) * contrast + 128.0 + bright * 255.0;
                o[c] = lut[val < 0 ? 0 : val > 255 ? 255 : (int)(val + 0.5)];
            }
        }
    }
}
