/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Traditional lesion classifiers: hand-crafted features (dermlens_eval.h
 * documents the layout), standardisation, logistic regression and a random forest. */
#include "eval/eval.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ features */

int dl_feat_columns(unsigned groups, int *cols)
{
    int n = 0;
    if (groups & DL_FEAT_COLOR)
        for (int i = 0; i < DL_FEAT_COLOR_DIM; i++) cols[n++] = DL_FEAT_COLOR_OFF + i;
    if (groups & DL_FEAT_TEXTURE)
        for (int i = 0; i < DL_FEAT_TEXTURE_DIM; i++) cols[n++] = DL_FEAT_TEXTURE_OFF + i;
    if (groups & DL_FEAT_SHAPE)
        for (int i = 0; i < DL_FEAT_SHAPE_DIM; i++) cols[n++] = DL_FEAT_SHAPE_OFF + i;
    return n;
}

int dl_feat_groups_from_name(const char *name)
{
    if (!name) return -1;
    if (!strcmp(name, "colour") || !strcmp(name, "color")) return DL_FEAT_COLOR;
    if (!strcmp(name, "texture")) return DL_FEAT_TEXTURE;
    if (!strcmp(name, "shape")) return DL_FEAT_SHAPE;
    if (!strcmp(name, "all")) return DL_FEAT_ALL;
    return -1;
}

int dl_otsu_threshold(const uint8_t *grey, size_t n)
{
    double hist[256] = {0};
    for (size_t i = 0; i < n; i++) hist[grey[i]]++;
    double total = (double)n, sum_all = 0;
    for (int v = 0; v < 256; v++) sum_all += v * hist[v];
    double w0 = 0, s0 = 0, best = -1;
    int best_t = -1, last_level = 0;
    for (int t = 0; t < 256; t++) {
        if (hist[t] > 0) last_level = t;
        w0 += hist[t];
        s0 += t * hist[t];
        double w1 = total - w0;
        if (w0 <= 0 || w1 <= 0) continue;
        double m0 = s0 / w0, m1 = (sum_all - s0) / w1;
        double between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (between > best) {
            best = between;
            best_t = t;
        }
    }
    /* One grey level only: everything is the "dark" class. */
    return best_t >= 0 ? best_t : last_level;
}

/* Separable box blur with clamped edges; radius r. */
static void box_blur(const uint8_t *in, int w, int h, int r, uint8_t *out, float *tmp)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int s = 0;
            for (int d = -r; d <= r; d++) {
                int xx = x + d < 0 ? 0 : x + d >= w ? w - 1 : x + d;
                s += in[(size_t)y * w + xx];
            }
            tmp[(size_t)y * w + x] = (float)s / (2 * r + 1);
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float s = 0;
            for (int d = -r; d <= r; d++) {
                int yy = y + d < 0 ? 0 : y + d >= h ? h - 1 : y + d;
                s += tmp[(size_t)yy * w + x];
            }
            out[(size_t)y * w + x] = (uint8_t)lrintf(s / (2 * r + 1));
        }
}

long dl_lesion_segment(const uint8_t *grey, int w, int h, uint8_t *mask, dl_error *err)
{
    size_t n;
    if (w <= 0 || h <= 0 || !dl_mul_size((size_t)w, (size_t)h, &n) || n > (size_t)1 << 26)
        return dl_fail(err, DL_ERR_ARG, "dl_lesion_segment: bad size %dx%d", w, h);
    uint8_t *sm = malloc(n);
    float *tmp = malloc(n * sizeof *tmp);
    int *label = malloc(n * sizeof *label);
    int *queue = malloc(n * sizeof *queue);
    if (!sm || !tmp || !label || !queue) {
        free(sm), free(tmp), free(label), free(queue);
        return dl_fail(err, DL_ERR_NOMEM, "dl_lesion_segment: out of memory");
    }
    /* Smoothing keeps hairs and JPEG noise from fragmenting the lesion. */
    box_blur(grey, w, h, 2, sm, tmp);
    int t = dl_otsu_threshold(sm, n);
    for (size_t i = 0; i < n; i++) label[i] = sm[i] <= t ? 0 : -1; /* 0: dark, unlabelled */

    /* 4-connected components of the dark class; keep the one with the best
     * area x centrality score (dark vignetted corners are large but peripheral). */
    double cx0 = (w - 1) / 2.0, cy0 = (h - 1) / 2.0, dmax = sqrt(cx0 * cx0 + cy0 * cy0) + 1;
    int n_comp = 0, best = -1;
    double best_score = -1;
    static const int dx4[4] = {1, -1, 0, 0}, dy4[4] = {0, 0, 1, -1};
    for (size_t s = 0; s < n; s++) {
        if (label[s] != 0) continue;
        int id = ++n_comp;
        size_t head = 0, tail = 0;
        queue[tail++] = (int)s;
        label[s] = id;
        double sx = 0, sy = 0;
        while (head < tail) {
            int p = queue[head++];
            int x = p % w, y = p / w;
            sx += x;
            sy += y;
            for (int k = 0; k < 4; k++) {
                int xx = x + dx4[k], yy = y + dy4[k];
                if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
                size_t q = (size_t)yy * w + xx;
                if (label[q] == 0) {
                    label[q] = id;
                    queue[tail++] = (int)q;
                }
            }
        }
        double area = (double)tail;
        double d = hypot(sx / area - cx0, sy / area - cy0) / dmax;
        double score = area * (1 - d) * (1 - d);
        if (score > best_score) {
            best_score = score;
            best = id;
        }
    }
    for (size_t i = 0; i < n; i++) mask[i] = label[i] == best;

    /* Fill holes: background reachable from the border stays background. */
    memset(sm, 0, n); /* reuse as "reached" */
    size_t head = 0, tail = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (x != 0 && y != 0 && x != w - 1 && y != h - 1) continue;
            size_t p = (size_t)y * w + x;
            if (!mask[p] && !sm[p]) {
                sm[p] = 1;
                queue[tail++] = (int)p;
            }
        }
    while (head < tail) {
        int p = queue[head++];
        int x = p % w, y = p / w;
        for (int k = 0; k < 4; k++) {
            int xx = x + dx4[k], yy = y + dy4[k];
            if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
            size_t q = (size_t)yy * w + xx;
            if (!mask[q] && !sm[q]) {
                sm[q] = 1;
                queue[tail++] = (int)q;
            }
        }
    }
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mask[i] && !sm[i]) mask[i] = 1;
        count += mask[i];
    }
    free(sm), free(tmp), free(label), free(queue);
    return count;
}

static inline int mask_at(const uint8_t *mask, int w, int h, int x, int y)
{
    return x >= 0 && y >= 0 && x < w && y < h && mask[(size_t)y * w + x];
}

void dl_mask_shape_features(const uint8_t *mask, int w, int h, float out[7])
{
    for (int i = 0; i < 7; i++) out[i] = 0;
    double area = 0, sx = 0, sy = 0;
    long cracks = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (!mask[(size_t)y * w + x]) continue;
            area++;
            sx += x;
            sy += y;
            cracks += !mask_at(mask, w, h, x + 1, y) + !mask_at(mask, w, h, x - 1, y) +
                      !mask_at(mask, w, h, x, y + 1) + !mask_at(mask, w, h, x, y - 1);
        }
    if (area < 1) return;
    double cx = sx / area, cy = sy / area;
    double sxx = 0, syy = 0, sxy = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (!mask[(size_t)y * w + x]) continue;
            sxx += (x - cx) * (x - cx);
            syy += (y - cy) * (y - cy);
            sxy += (x - cx) * (y - cy);
        }
    sxx /= area, syy /= area, sxy /= area;
    double tr = (sxx + syy) / 2, disc = sqrt((sxx - syy) * (sxx - syy) / 4 + sxy * sxy);
    /* +1/12: variance of a unit pixel, so one-pixel lines have finite axes. */
    double l1 = tr + disc + 1.0 / 12, l2 = tr - disc + 1.0 / 12;
    if (l2 < 1.0 / 12) l2 = 1.0 / 12;
    double th = 0.5 * atan2(2 * sxy, sxx - syy), c = cos(th), s = sin(th);

    /* Crack length overestimates a smooth curve's length by 4/pi on average. */
    double perim = cracks * M_PI / 4;
    long mis_major = 0, mis_minor = 0;
    double rs = 0, rs2 = 0, nb = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (!mask[(size_t)y * w + x]) continue;
            double dx = x - cx, dy = y - cy;
            double u = dx * c + dy * s, v = -dx * s + dy * c;
            /* mirror about the major axis: (u, -v); about the minor: (-u, v) */
            int xa = (int)lround(cx + u * c + v * s), ya = (int)lround(cy + u * s - v * c);
            int xb = (int)lround(cx - u * c - v * s), yb = (int)lround(cy - u * s + v * c);
            mis_major += !mask_at(mask, w, h, xa, ya);
            mis_minor += !mask_at(mask, w, h, xb, yb);
            int border = !mask_at(mask, w, h, x + 1, y) || !mask_at(mask, w, h, x - 1, y) ||
                         !mask_at(mask, w, h, x, y + 1) || !mask_at(mask, w, h, x, y - 1);
            if (border) {
                double r = sqrt(u * u / l1 + v * v / l2);
                rs += r;
                rs2 += r * r;
                nb++;
            }
        }
    double cx0 = (w - 1) / 2.0, cy0 = (h - 1) / 2.0;
    out[0] = (float)(area / ((double)w * h));
    out[1] = (float)(perim * perim / (4 * M_PI * area));
    out[2] = (float)(mis_major / area);
    out[3] = (float)(mis_minor / area);
    out[4] = (float)(1 - sqrt(l2 / l1));
    if (nb > 0 && rs > 0) {
        double m = rs / nb, var = rs2 / nb - m * m;
        out[5] = (float)(sqrt(var > 0 ? var : 0) / m);
    }
    out[6] = (float)(hypot(cx - cx0, cy - cy0) / (sqrt(cx0 * cx0 + cy0 * cy0) + 1));
}

void dl_lbp_hist(const uint8_t *grey, int w, int h, float out[DL_FEAT_LBP_BINS])
{
    double hist[DL_FEAT_LBP_BINS] = {0}, total = 0;
    /* Neighbours in circular order on the 3x3 ring. */
    static const int ox[8] = {1, 1, 0, -1, -1, -1, 0, 1}, oy[8] = {0, -1, -1, -1, 0, 1, 1, 1};
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            uint8_t cv = grey[(size_t)y * w + x];
            int bits[8], ones = 0, trans = 0;
            for (int k = 0; k < 8; k++) {
                bits[k] = grey[(size_t)(y + oy[k]) * w + x + ox[k]] >= cv;
                ones += bits[k];
            }
            for (int k = 0; k < 8; k++) trans += bits[k] != bits[(k + 1) & 7];
            hist[trans <= 2 ? ones : 9]++;
            total++;
        }
    for (int i = 0; i < DL_FEAT_LBP_BINS; i++) out[i] = total > 0 ? (float)(hist[i] / total) : 0;
}

void dl_glcm_features(const uint8_t *grey, int w, int h, float out[16])
{
    /* 0, 45, 90, 135 degrees with image y pointing down. */
    static const int gdx[4] = {1, 1, 0, -1}, gdy[4] = {0, -1, -1, -1};
    for (int a = 0; a < 4; a++) {
        double p[16][16] = {{0}}, total = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int xx = x + gdx[a], yy = y + gdy[a];
                if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
                int i = grey[(size_t)y * w + x] >> 4, j = grey[(size_t)yy * w + xx] >> 4;
                p[i][j]++;
                p[j][i]++; /* symmetric */
                total += 2;
            }
        double contrast = 0, asm_ = 0, homog = 0, mu = 0, var = 0, cov = 0;
        if (total > 0) {
            for (int i = 0; i < 16; i++)
                for (int j = 0; j < 16; j++) {
                    double q = p[i][j] / total;
                    p[i][j] = q;
                    contrast += q * (i - j) * (i - j);
                    asm_ += q * q;
                    homog += q / (1.0 + (i - j) * (i - j));
                    mu += q * i;
                }
            for (int i = 0; i < 16; i++)
                for (int j = 0; j < 16; j++) {
                    var += p[i][j] * (i - mu) * (i - mu);
                    cov += p[i][j] * (i - mu) * (j - mu);
                }
        }
        out[a] = (float)contrast;
        /* A constant image is perfectly correlated by convention (as scikit-image). */
        out[4 + a] = var > 1e-12 ? (float)(cov / var) : 1.0f;
        out[8 + a] = (float)sqrt(asm_);
        out[12 + a] = (float)homog;
    }
}

static float srgb_lut[256];
static pthread_once_t srgb_once = PTHREAD_ONCE_INIT;
static void srgb_init(void)
{
    for (int i = 0; i < 256; i++) {
        double c = i / 255.0;
        srgb_lut[i] = (float)(c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4));
    }
}

static inline double lab_f(double t)
{
    const double e = 6.0 / 29;
    return t > e * e * e ? cbrt(t) : t / (3 * e * e) + 4.0 / 29;
}

static void rgb_to_hsv(double r, double g, double b, double *hh, double *ss, double *vv)
{
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn, hue = 0;
    if (d > 0) {
        if (mx == r) hue = fmod((g - b) / d, 6.0);
        else if (mx == g) hue = (b - r) / d + 2;
        else hue = (r - g) / d + 4;
        hue /= 6;
        if (hue < 0) hue += 1;
    }
    *hh = hue;
    *ss = mx > 0 ? d / mx : 0;
    *vv = mx;
}

static void moments(const double *s1, const double *s2, const double *s3, double n, int ch, float *out)
{
    for (int c = 0; c < ch; c++) {
        double m = s1[c] / n, var = s2[c] / n - m * m;
        if (var < 0) var = 0;
        double sd = sqrt(var), m3 = s3[c] / n - 3 * m * s2[c] / n + 2 * m * m * m;
        out[3 * c] = (float)m;
        out[3 * c + 1] = (float)sd;
        out[3 * c + 2] = sd > 1e-6 ? (float)(m3 / (sd * sd * sd)) : 0.0f;
    }
}

int dl_feat_extract(const uint8_t *rgb, int width, int height, size_t stride, float *out, dl_error *err)
{
    if (!rgb || !out || width <= 0 || height <= 0 || stride < (size_t)width * 3)
        return dl_fail(err, DL_ERR_ARG, "dl_feat_extract: invalid image %dx%d stride %zu", width, height,
                       stride);
    pthread_once(&srgb_once, srgb_init);
    const int S = DL_FEAT_SIZE;
    const size_t n = (size_t)S * S;
    dl_image small = {0};
    const uint8_t *px = rgb;
    size_t pstride = stride;
    if (width != S || height != S) {
        dl_image src = {width, height, stride, (uint8_t *)rgb};
        if (dl_image_resize(&src, S, S, &small, err) != 0) return dl_fail_prefix(err, "features");
        px = small.pixels;
        pstride = small.stride;
    }
    uint8_t *grey = malloc(n), *mask = malloc(n);
    if (!grey || !mask) {
        free(grey), free(mask), dl_image_free(&small);
        return dl_fail(err, DL_ERR_NOMEM, "dl_feat_extract: out of memory");
    }
    memset(out, 0, DL_FEAT_DIM * sizeof *out);

    /* ---- colour: histograms and moments over the whole picture */
    double hrgb[24] = {0}, hhsv[24] = {0};
    double s1[9] = {0}, s2[9] = {0}, s3[9] = {0};
    for (int y = 0; y < S; y++) {
        const uint8_t *row = px + (size_t)y * pstride;
        for (int x = 0; x < S; x++) {
            uint8_t R = row[3 * x], G = row[3 * x + 1], B = row[3 * x + 2];
            grey[(size_t)y * S + x] = (uint8_t)((299 * R + 587 * G + 114 * B + 500) / 1000);
            hrgb[R >> 5]++;
            hrgb[8 + (G >> 5)]++;
            hrgb[16 + (B >> 5)]++;
            double r = R / 255.0, g = G / 255.0, b = B / 255.0, hh, ss, vv;
            rgb_to_hsv(r, g, b, &hh, &ss, &vv);
            int bh = (int)(hh * 8), bs = (int)(ss * 8), bv = (int)(vv * 8);
            hhsv[bh > 7 ? 7 : bh]++;
            hhsv[8 + (bs > 7 ? 7 : bs)]++;
            hhsv[16 + (bv > 7 ? 7 : bv)]++;
            double lr = srgb_lut[R], lg = srgb_lut[G], lb = srgb_lut[B];
            double X = (0.4124 * lr + 0.3576 * lg + 0.1805 * lb) / 0.95047;
            double Y = 0.2126 * lr + 0.7152 * lg + 0.0722 * lb;
            double Z = (0.0193 * lr + 0.1192 * lg + 0.9505 * lb) / 1.08883;
            double fx = lab_f(X), fy = lab_f(Y), fz = lab_f(Z);
            /* L, a, b divided by 100: all channels on a similar scale */
            double v[9] = {r, g, b, hh, ss, vv, (116 * fy - 16) / 100, 5 * (fx - fy), 2 * (fy - fz)};
            for (int c = 0; c < 9; c++) {
                s1[c] += v[c];
                s2[c] += v[c] * v[c];
                s3[c] += v[c] * v[c] * v[c];
            }
        }
    }
    float *o = out + DL_FEAT_COLOR_OFF;
    for (int i = 0; i < 24; i++) o[i] = (float)(hrgb[i] / (double)n);
    for (int i = 0; i < 24; i++) o[24 + i] = (float)(hhsv[i] / (double)n);
    moments(s1, s2, s3, (double)n, 9, o + 48);

    /* ---- texture */
    dl_lbp_hist(grey, S, S, out + DL_FEAT_TEXTURE_OFF);
    dl_glcm_features(grey, S, S, out + DL_FEAT_TEXTURE_OFF + DL_FEAT_GLCM_OFF);

    /* ---- shape and lesion colour */
    long area = dl_lesion_segment(grey, S, S, mask, err);
    if (area < 0) {
        free(grey), free(mask), dl_image_free(&small);
        return -1;
    }
    float *sh = out + DL_FEAT_SHAPE_OFF;
    dl_mask_shape_features(mask, S, S, sh);
    double in1[3] = {0}, in2[3] = {0}, out1[3] = {0}, nin = 0, nout = 0;
    for (int y = 0; y < S; y++) {
        const uint8_t *row = px + (size_t)y * pstride;
        for (int x = 0; x < S; x++) {
            int m = mask[(size_t)y * S + x];
            for (int c = 0; c < 3; c++) {
                double v = row[3 * x + c] / 255.0;
                if (m) {
                    in1[c] += v;
                    in2[c] += v * v;
                } else {
                    out1[c] += v;
                }
            }
            if (m) nin++;
            else nout++;
        }
    }
    for (int c = 0; c < 3; c++) {
        if (nin > 0) {
            double m = in1[c] / nin, var = in2[c] / nin - m * m;
            sh[7 + c] = (float)sqrt(var > 0 ? var : 0);
            if (nout > 0) sh[10 + c] = (float)(m - out1[c] / nout);
        }
    }
    free(grey), free(mask), dl_image_free(&small);
    for (int i = 0; i < DL_FEAT_DIM; i++)
        if (!isfinite(out[i])) out[i] = 0; /* defensive: never hand NaN to a learner */
    return 0;
}

/* ================================================================ scaling */

int dl_standardizer_fit(dl_standardizer *s, int n, int d, const float *x, dl_error *err)
{
    memset(s, 0, sizeof *s);
    if (n <= 0 || d <= 0 || !x) return dl_fail(err, DL_ERR_ARG, "standardizer: empty data");
    s->mean = calloc((size_t)d, sizeof *s->mean);
    s->std = calloc((size_t)d, sizeof *s->std);
    if (!s->mean || !s->std) {
        dl_standardizer_free(s);
        return dl_fail(err, DL_ERR_NOMEM, "standardizer: out of memory");
    }
    s->d = d;
    for (int j = 0; j < d; j++) {
        double m = 0, v = 0, cnt = 0;
        for (int i = 0; i < n; i++) {
            double a = x[(size_t)i * d + j];
            if (!isfinite(a)) continue;
            cnt++;
            double delta = a - m;
            m += delta / cnt;
            v += delta * (a - m);
        }
        double sd = cnt > 1 ? sqrt(v / cnt) : 0;
        s->mean[j] = (float)m;
        s->std[j] = sd > 1e-9 ? (float)sd : 1.0f;
    }
    return 0;
}

void dl_standardizer_apply(const dl_standardizer *s, int n, float *x)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < s->d; j++) {
            float *p = &x[(size_t)i * s->d + j];
            *p = isfinite(*p) ? (*p - s->mean[j]) / s->std[j] : 0.0f;
        }
}

void dl_standardizer_free(dl_standardizer *s)
{
    free(s->mean);
    free(s->std);
    memset(s, 0, sizeof *s);
}

void dl_class_balanced_weights(int n, int k, const int *labels, double *w)
{
    for (int c = 0; c < k; c++) w[c] = 0;
    for (int i = 0; i < n; i++) w[labels[i]]++;
    for (int c = 0; c < k; c++) w[c] = w[c] > 0 ? n / (k * w[c]) : 0;
}

static int check_xy(int n, int d, int k, const float *x, const int *labels, const char *who, dl_error *err)
{
    size_t sz;
    if (n <= 0 || d <= 0 || k < 2 || !x || !labels || !dl_mul_size((size_t)n, (size_t)d, &sz) ||
        !dl_mul_size((size_t)d + 1, (size_t)k, &sz))
        return dl_fail(err, DL_ERR_ARG, "%s: invalid sizes n=%d d=%d k=%d", who, n, d, k);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return dl_fail(err, DL_ERR_DATA, "%s: label %d of sample %d outside [0,%d)", who, labels[i], i, k);
    return 0;
}

/* ================================================================ logistic regression */

typedef struct {
    int n, d, k;
    const float *x;
    const int *y;
    const double *sw; /* per-sample weight, sums to 1 */
    double l2;
    double *z; /* k scratch */
} lr_problem;

/* Objective and gradient; theta/grad are k x (d+1). */
static double lr_eval(const lr_problem *p, const double *theta, double *grad)
{
    int d = p->d, k = p->k, D = d + 1;
    size_t P = (size_t)k * D;
    memset(grad, 0, P * sizeof *grad);
    double f = 0;
    for (int i = 0; i < p->n; i++) {
        const float *xi = p->x + (size_t)i * d;
        double mx = -INFINITY;
        for (int c = 0; c < k; c++) {
            const double *wc = theta + (size_t)c * D;
            double z = wc[d];
            for (int j = 0; j < d; j++) z += wc[j] * xi[j];
            p->z[c] = z;
            if (z > mx) mx = z;
        }
        double se = 0;
        for (int c = 0; c < k; c++) se += exp(p->z[c] - mx);
        double lse = mx + log(se), wi = p->sw[i];
        f += wi * (lse - p->z[p->y[i]]);
        for (int c = 0; c < k; c++) {
            double g = wi * (exp(p->z[c] - lse) - (c == p->y[i]));
            double *gc = grad + (size_t)c * D;
            for (int j = 0; j < d; j++) gc[j] += g * xi[j];
            gc[d] += g;
        }
    }
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++) {
            double w = theta[(size_t)c * D + j];
            f += 0.5 * p->l2 * w * w;
            grad[(size_t)c * D + j] += p->l2 * w;
        }
    return f;
}

static double dot(size_t n, const double *a, const double *b)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

int dl_logreg_fit(dl_logreg *m, int n, int d, int k, const float *x, const int *labels,
                  const dl_logreg_options *opts, dl_error *err)
{
    memset(m, 0, sizeof *m);
    if (check_xy(n, d, k, x, labels, "logistic regression", err) != 0) return -1;
    dl_logreg_options o = {1e-3, 300, 1};
    if (opts) o = *opts;
    if (o.max_iter <= 0) o.max_iter = 300;
    if (!(o.l2 >= 0)) o.l2 = 1e-3;
    enum { M = 10 };
    size_t P = (size_t)k * (d + 1);
    double *buf = calloc(P * (5 + 2 * M), sizeof *buf);
    double *sw = malloc((size_t)n * sizeof *sw), *z = malloc((size_t)k * sizeof *z);
    double *cw = malloc((size_t)k * sizeof *cw);
    m->w = malloc(P * sizeof *m->w);
    if (!buf || !sw || !z || !cw || !m->w) {
        free(buf), free(sw), free(z), free(cw), free(m->w);
        m->w = NULL;
        return dl_fail(err, DL_ERR_NOMEM, "logistic regression: out of memory");
    }
    if (o.class_balanced) dl_class_balanced_weights(n, k, labels, cw);
    else
        for (int c = 0; c < k; c++) cw[c] = 1;
    double tot = 0;
    for (int i = 0; i < n; i++) tot += cw[labels[i]];
    for (int i = 0; i < n; i++) sw[i] = cw[labels[i]] / tot;
    lr_problem pr = {n, d, k, x, labels, sw, o.l2, z};

    double *th = buf, *g = th + P, *dir = g + P, *th2 = dir + P, *g2 = th2 + P;
    double *S = g2 + P, *Y = S + P * M, rho[M], alpha[M];
    int hist = 0, head = 0; /* ring buffer of (s, y) pairs */
    double f = lr_eval(&pr, th, g);
    for (int it = 0; it < o.max_iter; it++) {
        double gmax = 0;
        for (size_t i = 0; i < P; i++) gmax = fmax(gmax, fabs(g[i]));
        if (gmax < 1e-7) break;
        /* Two-loop recursion: dir = -H g. */
        for (size_t i = 0; i < P; i++) dir[i] = -g[i];
        for (int h = 0; h < hist; h++) {
            int idx = (head - 1 - h + M) % M;
            alpha[h] = rho[idx] * dot(P, S + idx * P, dir);
            for (size_t i = 0; i < P; i++) dir[i] -= alpha[h] * Y[idx * P + i];
        }
        if (hist > 0) {
            int last = (head - 1 + M) % M;
            double gamma = dot(P, S + last * P, Y + last * P) / dot(P, Y + last * P, Y + last * P);
            for (size_t i = 0; i < P; i++) dir[i] *= gamma;
        }
        for (int h = hist - 1; h >= 0; h--) {
            int idx = (head - 1 - h + M) % M;
            double beta = rho[idx] * dot(P, Y + idx * P, dir);
            for (size_t i = 0; i < P; i++) dir[i] += (alpha[h] - beta) * S[idx * P + i];
        }
        double gd = dot(P, g, dir);
        if (!(gd < 0)) { /* not a descent direction: restart from steepest descent */
            for (size_t i = 0; i < P; i++) dir[i] = -g[i];
            gd = dot(P, g, dir);
            hist = 0;
        }
        double t = hist == 0 ? 1.0 / fmax(1.0, sqrt(dot(P, g, g))) : 1.0, f2 = f;
        int ok = 0;
        for (int ls = 0; ls < 40; ls++) {
            for (size_t i = 0; i < P; i++) th2[i] = th[i] + t * dir[i];
            f2 = lr_eval(&pr, th2, g2);
            if (f2 <= f + 1e-4 * t * gd) {
                ok = 1;
                break;
            }
            t *= 0.5;
        }
        if (!ok) break;
        double *s = S + head * P, *yv = Y + head * P;
        for (size_t i = 0; i < P; i++) {
            s[i] = th2[i] - th[i];
            yv[i] = g2[i] - g[i];
        }
        double sy = dot(P, s, yv);
        if (sy > 1e-12) {
            rho[head] = 1.0 / sy;
            head = (head + 1) % M;
            if (hist < M) hist++;
        }
        memcpy(th, th2, P * sizeof *th);
        memcpy(g, g2, P * sizeof *g);
        double df = f - f2;
        f = f2;
        if (df < 1e-10 * fmax(1.0, fabs(f))) break;
    }
    for (size_t i = 0; i < P; i++) m->w[i] = (float)th[i];
    m->d = d;
    m->k = k;
    free(buf), free(sw), free(z), free(cw);
    return 0;
}

void dl_logreg_predict(const dl_logreg *m, int n, const float *x, float *probs)
{
    int d = m->d, k = m->k;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *pi = probs + (size_t)i * k;
        double z[256], *zz = k <= 256 ? z : malloc((size_t)k * sizeof *zz), mx = -INFINITY;
        if (!zz) {
            for (int c = 0; c < k; c++) pi[c] = 1.0f / k;
            continue;
        }
        for (int c = 0; c < k; c++) {
            const float *wc = m->w + (size_t)c * (d + 1);
            double s = wc[d];
            for (int j = 0; j < d; j++) s += (double)wc[j] * xi[j];
            zz[c] = s;
            if (s > mx) mx = s;
        }
        double se = 0;
        for (int c = 0; c < k; c++) se += (zz[c] = exp(zz[c] - mx));
        for (int c = 0; c < k; c++) pi[c] = (float)(zz[c] / se);
        if (zz != z) free(zz);
    }
}

void dl_logreg_free(dl_logreg *m)
{
    free(m->w);
    memset(m, 0, sizeof *m);
}

/* ================================================================ random forest */

typedef struct {
    float v;
    int i;
} vpair;

static int vpair_cmp(const void *a, const void *b)
{
    const vpair *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return (x->i > y->i) - (x->i < y->i); /* total order: deterministic */
}

typedef struct {
    /* shared, read-only */
    int n, d, k;
    const float *xt; /* column-major d x n */
    const int *y;
    const double *cw;
    const int *by_class;  /* sample indices grouped by class */
    const int *cls_start; /* k + 1 offsets into by_class */
    dl_forest_options o;
    /* per tree scratch */
    int *idx;
    double *sw;    /* per-sample weight (bootstrap count x class weight) */
    vpair *pairs;
    int *perm;
    double *lw, *rw, *tw; /* k each */
    uint64_t rng;
    dl_rf_tree *tree;
    int cap_nodes, cap_leaves;
    int oom;
} rf_builder;

static int rf_new_node(rf_builder *b)
{
    dl_rf_tree *t = b->tree;
    if (t->n_nodes == b->cap_nodes) {
        int cap = b->cap_nodes ? b->cap_nodes * 2 : 256;
        dl_rf_node *nn = realloc(t->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        t->nodes = nn;
        b->cap_nodes = cap;
    }
    return t->n_nodes++;
}

static int rf_make_leaf(rf_builder *b, int node, const double *cls_w)
{
    dl_rf_tree *t = b->tree;
    int k = b->k;
    if (t->n_leaves == b->cap_leaves) {
        int cap = b->cap_leaves ? b->cap_leaves * 2 : 128;
        float *np = realloc(t->leaf_probs, (size_t)cap * k * sizeof *np);
        if (!np) return -1;
        t->leaf_probs = np;
        b->cap_leaves = cap;
    }
    double tot = 0;
    for (int c = 0; c < k; c++) tot += cls_w[c];
    float *p = t->leaf_probs + (size_t)t->n_leaves * k;
    for (int c = 0; c < k; c++) p[c] = tot > 0 ? (float)(cls_w[c] / tot) : 1.0f / k;
    t->nodes[node].feature = -1;
    t->nodes[node].threshold = 0;
    t->nodes[node].left = t->n_leaves++ * k;
    t->nodes[node].right = -1;
    return 0;
}

/* Build the subtree for samples idx[lo, hi) into node `node`. */
static int rf_build(rf_builder *b, int node, int lo, int hi, int depth)
{
    int k = b->k, cnt = hi - lo;
    double *tw = b->tw + (size_t)depth * k; /* per-depth slice: survives recursion */
    for (int c = 0; c < k; c++) tw[c] = 0;
    double W = 0;
    for (int i = lo; i < hi; i++) {
        tw[b->y[b->idx[i]]] += b->sw[b->idx[i]];
        W += b->sw[b->idx[i]];
    }
    int nonzero = 0;
    for (int c = 0; c < k; c++) nonzero += tw[c] > 0;
    if (depth >= b->o.max_depth || cnt < 2 * b->o.min_leaf || nonzero <= 1 || W <= 0)
        return rf_make_leaf(b, node, tw);

    double parent = 0;
    for (int c = 0; c < k; c++) parent += tw[c] * tw[c];
    parent /= W;
    /* Score to maximise: sum_c wL_c^2/WL + sum_c wR_c^2/WR (= W - weighted Gini). */
    double best = parent + 1e-12 * W;
    int best_f = -1;
    float best_thr = 0;
    int d = b->d, tried = 0;
    for (int j = 0; j < d; j++) b->perm[j] = j;
    for (int j = 0; j < d && tried < b->o.mtry; j++) {
        int r = j + (int)dl_rng_below(&b->rng, (uint32_t)(d - j));
        int f = b->perm[r];
        b->perm[r] = b->perm[j];
        b->perm[j] = f;
        const float *col = b->xt + (size_t)f * b->n;
        vpair *pr = b->pairs;
        for (int i = 0; i < cnt; i++) {
            pr[i].i = b->idx[lo + i];
            pr[i].v = col[pr[i].i];
        }
        qsort(pr, (size_t)cnt, sizeof *pr, vpair_cmp);
        if (pr[0].v == pr[cnt - 1].v) continue; /* constant here: draw another feature */
        tried++;
        double *lw = b->lw, *rw = b->rw, WL = 0, sl = 0, sr = parent * W;
        for (int c = 0; c < k; c++) {
            lw[c] = 0;
            rw[c] = tw[c];
        }
        /* sl/sr track sum of squares of class weights left/right incrementally. */
        for (int i = 0; i < cnt - 1; i++) {
            int c = b->y[pr[i].i];
            double w = b->sw[pr[i].i];
            sl += w * (2 * lw[c] + w);
            sr += w * (w - 2 * rw[c]);
            lw[c] += w;
            rw[c] -= w;
            WL += w;
            if (pr[i].v == pr[i + 1].v) continue;
            if (i + 1 < b->o.min_leaf || cnt - i - 1 < b->o.min_leaf) continue;
            double WR = W - WL;
            if (WL <= 0 || WR <= 0) continue;
            double score = sl / WL + sr / WR;
            if (score > best) {
                best = score;
                best_f = f;
                float a = pr[i].v, c2 = pr[i + 1].v, m = a + (c2 - a) * 0.5f;
                best_thr = (m >= c2 || m < a) ? a : m;
            }
        }
    }
    if (best_f < 0) return rf_make_leaf(b, node, tw);

    const float *col = b->xt + (size_t)best_f * b->n;
    int i = lo, j = hi - 1;
    while (i <= j) {
        if (col[b->idx[i]] <= best_thr) i++;
        else {
            int tmp = b->idx[i];
            b->idx[i] = b->idx[j];
            b->idx[j--] = tmp;
        }
    }
    int mid = i;
    if (mid == lo || mid == hi) return rf_make_leaf(b, node, tw);
    int left = rf_new_node(b), right = rf_new_node(b);
    if (left < 0 || right < 0) return -1;
    dl_rf_node *nd = &b->tree->nodes[node];
    nd->feature = best_f;
    nd->threshold = best_thr;
    nd->left = left;
    nd->right = right;
    if (rf_build(b, left, lo, mid, depth + 1) != 0) return -1;
    return rf_build(b, right, mid, hi, depth + 1);
}

typedef struct {
    rf_builder proto;
    dl_forest *f;
    pthread_mutex_t lock;
    int next;
    int failed;
} rf_job;

static void *rf_worker(void *arg)
{
    rf_job *job = arg;
    rf_builder b = job->proto;
    int n = b.n, k = b.k, d = b.d;
    b.idx = malloc((size_t)n * sizeof *b.idx);
    b.sw = malloc((size_t)n * sizeof *b.sw);
    b.pairs = malloc((size_t)n * sizeof *b.pairs);
    b.perm = malloc((size_t)d * sizeof *b.perm);
    b.lw = malloc((size_t)k * sizeof *b.lw);
    b.rw = malloc((size_t)k * sizeof *b.rw);
    b.tw = malloc((size_t)k * (b.o.max_depth + 1) * sizeof *b.tw);
    int *counts = malloc((size_t)n * sizeof *counts);
    int fail = !b.idx || !b.sw || !b.pairs || !b.perm || !b.lw || !b.rw || !b.tw || !counts;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        if (fail) job->failed = 1;
        int t = job->failed ? -1 : job->next < job->f->n_trees ? job->next++ : -1;
        pthread_mutex_unlock(&job->lock);
        if (t < 0) break;
        /* Each tree's stream depends only on (seed, tree): thread count does not matter. */
        uint64_t s = b.o.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(t + 1));
        b.rng = dl_rng_next(&s);
        memset(counts, 0, (size_t)n * sizeof *counts);
        if (b.o.class_balanced == 2) {
            /* Balanced bootstrap: every class equally likely per draw (among present ones). */
            int present[256], np = 0;
            for (int c = 0; c < k && np < 256; c++)
                if (b.cls_start[c + 1] > b.cls_start[c]) present[np++] = c;
            for (int i = 0; i < n; i++) {
                int c = present[dl_rng_below(&b.rng, (uint32_t)np)];
                uint32_t cnt = (uint32_t)(b.cls_start[c + 1] - b.cls_start[c]);
                counts[b.by_class[b.cls_start[c] + (int)dl_rng_below(&b.rng, cnt)]]++;
            }
        } else {
            for (int i = 0; i < n; i++) counts[dl_rng_below(&b.rng, (uint32_t)n)]++;
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
            b.sw[i] = counts[i] * b.cw[b.y[i]];
            if (counts[i] > 0 && b.sw[i] > 0) b.idx[m++] = i;
        }
        b.tree = &job->f->trees[t];
        b.cap_nodes = b.cap_leaves = 0;
        int root = rf_new_node(&b);
        if (root < 0 || m == 0 || rf_build(&b, root, 0, m, 0) != 0) fail = 1;
    }
    free(b.idx), free(b.sw), free(b.pairs), free(b.perm), free(b.lw), free(b.rw), free(b.tw);
    free(counts);
    return NULL;
}

int dl_forest_fit(dl_forest *f, int n, int d, int k, const float *x, const int *labels,
                  const dl_forest_options *opts, dl_error *err)
{
    memset(f, 0, sizeof *f);
    if (check_xy(n, d, k, x, labels, "random forest", err) != 0) return -1;
    dl_forest_options o = {200, 16, 1, 0, 1, 0, 1};
    if (opts) o = *opts;
    if (o.n_trees <= 0) o.n_trees = 200;
    if (o.max_depth <= 0) o.max_depth = 16;
    if (o.max_depth > 64) o.max_depth = 64;
    if (o.min_leaf <= 0) o.min_leaf = 1;
    if (o.mtry <= 0) o.mtry = (int)lround(sqrt((double)d));
    if (o.mtry > d) o.mtry = d;
    if (o.threads <= 0) o.threads = dl_get_num_threads();
    if (o.threads > o.n_trees) o.threads = o.n_trees;
    if (o.threads > 256) o.threads = 256;

    float *xt = malloc((size_t)n * d * sizeof *xt);
    double *cw = malloc((size_t)k * sizeof *cw);
    f->trees = calloc((size_t)o.n_trees, sizeof *f->trees);
    pthread_t *th = malloc((size_t)o.threads * sizeof *th);
    if (!xt || !cw || !f->trees || !th) {
        free(xt), free(cw), free(th), free(f->trees);
        f->trees = NULL;
        return dl_fail(err, DL_ERR_NOMEM, "random forest: out of memory");
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            float v = x[(size_t)i * d + j];
            xt[(size_t)j * n + i] = isfinite(v) ? v : 0.0f;
        }
    if (o.class_balanced == 2 && k > 256) o.class_balanced = 1;
    if (o.class_balanced == 1) dl_class_balanced_weights(n, k, labels, cw);
    else
        for (int c = 0; c < k; c++) cw[c] = 1;
    int *by_class = malloc((size_t)n * sizeof *by_class), *cls_start = calloc((size_t)k + 1, sizeof *cls_start);
    if (!by_class || !cls_start) {
        free(xt), free(cw), free(th), free(f->trees), free(by_class), free(cls_start);
        f->trees = NULL;
        return dl_fail(err, DL_ERR_NOMEM, "random forest: out of memory");
    }
    for (int i = 0; i < n; i++) cls_start[labels[i] + 1]++;
    for (int c = 0; c < k; c++) cls_start[c + 1] += cls_start[c];
    {
        int *fill = malloc((size_t)k * sizeof *fill);
        if (!fill) {
            free(xt), free(cw), free(th), free(f->trees), free(by_class), free(cls_start);
            f->trees = NULL;
            return dl_fail(err, DL_ERR_NOMEM, "random forest: out of memory");
        }
        memcpy(fill, cls_start, (size_t)k * sizeof *fill);
        for (int i = 0; i < n; i++) by_class[fill[labels[i]]++] = i;
        free(fill);
    }
    f->n_trees = o.n_trees;
    f->d = d;
    f->k = k;
    rf_job job = {.f = f, .next = 0, .failed = 0};
    job.proto = (rf_builder){.n = n, .d = d, .k = k, .xt = xt, .y = labels, .cw = cw, .by_class = by_class,
                             .cls_start = cls_start, .o = o};
    pthread_mutex_init(&job.lock, NULL);
    int started = 0;
    for (int i = 0; i < o.threads; i++) {
        if (pthread_create(&th[i], NULL, rf_worker, &job) != 0) break;
        started++;
    }
    if (started == 0) rf_worker(&job);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&job.lock);
    free(xt), free(cw), free(th), free(by_class), free(cls_start);
    if (job.failed || job.next < o.n_trees) {
        dl_forest_free(f);
        return dl_fail(err, DL_ERR_NOMEM, "random forest: out of memory while growing trees");
    }
    return 0;
}

void dl_forest_predict(const dl_forest *f, int n, const float *x, float *probs)
{
    int k = f->k;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * f->d;
        float *pi = probs + (size_t)i * k;
        for (int c = 0; c < k; c++) pi[c] = 0;
        for (int t = 0; t < f->n_trees; t++) {
            const dl_rf_tree *tr = &f->trees[t];
            int nd = 0;
            while (tr->nodes[nd].feature >= 0) {
                float v = xi[tr->nodes[nd].feature];
                nd = (isfinite(v) ? v : 0.0f) <= tr->nodes[nd].threshold ? tr->nodes[nd].left
                                                                            : tr->nodes[nd].right;
            }
            const float *lp = tr->leaf_probs + tr->nodes[nd].left;
            for (int c = 0; c < k; c++) pi[c] += lp[c];
        }
        for (int c = 0; c < k; c++) pi[c] /= (float)f->n_trees;
    }
}

void dl_forest_free(dl_forest *f)
{
    if (f->trees)
        for (int t = 0; t < f->n_trees; t++) {
            free(f->trees[t].nodes);
            free(f->trees[t].leaf_probs);
        }
    free(f->trees);
    memset(f, 0, sizeof *f);
}
