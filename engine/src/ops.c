/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Forward kernels, NHWC float32. Dense convolutions go through OpenBLAS
 * sgemm (1x1 directly, others via im2col); depthwise has a direct kernel with
 * channels innermost so it vectorises, compiled for several ISAs and picked at
 * run time (GCC target_clones). */
#include "internal.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define DL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DL_CLONES
#endif

static const char *const act_names[] = {"none", "relu", "relu6", "hswish", "silu"};

const char *dl_act_name(dl_act a)
{
    return (unsigned)a < 5 ? act_names[a] : "?";
}

int dl_act_from_name(const char *name)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(name, act_names[i]) == 0) return i;
    return -1;
}

void dl_same_padding(int in, int k, int s, int *out, int *pad_before, int *pad_after)
{
    int o = (in + s - 1) / s;
    int total = (o - 1) * s + k - in;
    if (total < 0) total = 0;
    *out = o;
    *pad_before = total / 2;
    *pad_after = total - total / 2;
}

DL_CLONES
void dl_act_forward(dl_act a, float *x, size_t n)
{
    switch (a) {
    case DL_ACT_NONE: break;
    case DL_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
    case DL_ACT_RELU6:
        for (size_t i = 0; i < n; i++) {
            float v = x[i] > 0.f ? x[i] : 0.f;
            x[i] = v < 6.f ? v : 6.f;
        }
        break;
    case DL_ACT_HSWISH:
        for (size_t i = 0; i < n; i++) {
            float r = x[i] + 3.f;
            r = r > 0.f ? (r < 6.f ? r : 6.f) : 0.f;
            x[i] = x[i] * r * (1.f / 6.f);
        }
        break;
    case DL_ACT_SILU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.f + expf(-x[i]));
        break;
    }
}

/* out[r][c] = out[r][c] + bias[c], then activation; rows x cols. */
DL_CLONES
static void bias_act(float *out, size_t rows, int cols, const float *bias, dl_act act)
{
    if (bias) {
        for (size_t r = 0; r < rows; r++) {
            float *o = out + r * (size_t)cols;
            for (int c = 0; c < cols; c++) o[c] += bias[c];
        }
    }
    dl_act_forward(act, out, rows * (size_t)cols);
}

static bool conv_is_pointwise(const dl_conv_shape *s)
{
    return s->groups == 1 && s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->pt == 0 &&
           s->pl == 0 && s->oh == s->ih && s->ow == s->iw;
}

static bool conv_is_depthwise(const dl_conv_shape *s)
{
    return s->groups > 1 && s->groups == s->ic && s->groups == s->oc;
}

size_t dl_conv2d_scratch_floats(const dl_conv_shape *s)
{
    if (conv_is_pointwise(s)) return 0;
    if (conv_is_depthwise(s)) return (size_t)s->kh * s->kw * s->oc;
    int icg = s->ic / s->groups;
    size_t cols = (size_t)s->oh * s->ow * s->kh * s->kw * icg;
    if (s->groups > 1) cols += (size_t)s->oh * s->ow * (s->oc / s->groups);
    return cols;
}

/* im2col for one image and one channel group: rows = output pixels,
 * row layout [kh][kw][icg] to match OHWI weights. */
static void im2col(const dl_conv_shape *s, const float *in, int c0, int icg, float *col)
{
    for (int oy = 0; oy < s->oh; oy++) {
        for (int ox = 0; ox < s->ow; ox++) {
            float *dst = col + ((size_t)oy * s->ow + ox) * s->kh * s->kw * icg;
            for (int ky = 0; ky < s->kh; ky++) {
                int iy = oy * s->sh - s->pt + ky;
                for (int kx = 0; kx < s->kw; kx++, dst += icg) {
                    int ix = ox * s->sw - s->pl + kx;
                    if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw) {
                        memset(dst, 0, sizeof(float) * icg);
                    } else {
                        memcpy(dst, in + ((size_t)iy * s->iw + ix) * s->ic + c0, sizeof(float) * icg);
                    }
                }
            }
        }
    }
}

/* Depthwise: wt is [kh][kw][c] (transposed from OHWI [c][kh][kw][1]). */
DL_CLONES
static void depthwise_image(const dl_conv_shape *s, const float *in, const float *wt,
                            const float *bias, float *out)
{
    const int C = s->oc;
    for (int oy = 0; oy < s->oh; oy++) {
        for (int ox = 0; ox < s->ow; ox++) {
            float *o = out + ((size_t)oy * s->ow + ox) * C;
            if (bias) memcpy(o, bias, sizeof(float) * C);
            else memset(o, 0, sizeof(float) * C);
            for (int ky = 0; ky < s->kh; ky++) {
                int iy = oy * s->sh - s->pt + ky;
                if (iy < 0 || iy >= s->ih) continue;
                for (int kx = 0; kx < s->kw; kx++) {
                    int ix = ox * s->sw - s->pl + kx;
                    if (ix < 0 || ix >= s->iw) continue;
                    const float *ip = in + ((size_t)iy * s->iw + ix) * C;
                    const float *wp = wt + ((size_t)ky * s->kw + kx) * C;
                    for (int c = 0; c < C; c++) o[c] += ip[c] * wp[c];
                }
            }
        }
    }
}

void dl_conv2d_forward(const dl_conv_shape *s, const float *in, const float *w, const float *bias,
                       float *out, float *scratch)
{
    const size_t in_img = (size_t)s->ih * s->iw * s->ic;
    const size_t out_pix = (size_t)s->oh * s->ow;
    const size_t out_img = out_pix * s->oc;

    if (conv_is_pointwise(s)) {
        size_t rows = (size_t)s->n * out_pix;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, s->oc, s->ic, 1.f, in, s->ic,
                    w, s->ic, 0.f, out, s->oc);
        bias_act(out, rows, s->oc, bias, s->act);
        return;
    }
    if (conv_is_depthwise(s)) {
        const int C = s->oc, K = s->kh * s->kw;
        for (int k = 0; k < K; k++)
            for (int c = 0; c < C; c++) scratch[(size_t)k * C + c] = w[(size_t)c * K + k];
        for (int b = 0; b < s->n; b++) {
            float *o = out + b * out_img;
            depthwise_image(s, in + b * in_img, scratch, bias, o);
            dl_act_forward(s->act, o, out_img);
        }
        return;
    }
    const int G = s->groups, icg = s->ic / G, ocg = s->oc / G;
    const int K = s->kh * s->kw * icg;
    float *col = scratch;
    float *tmp = scratch + out_pix * (size_t)K; /* grouped output staging */
    for (int b = 0; b < s->n; b++) {
        const float *ib = in + b * in_img;
        float *ob = out + b * out_img;
        for (int g = 0; g < G; g++) {
            im2col(s, ib, g * icg, icg, col);
            const float *wg = w + (size_t)g * ocg * K;
            if (G == 1) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)out_pix, ocg, K, 1.f, col, K,
                            wg, K, 0.f, ob, s->oc);
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)out_pix, ocg, K, 1.f, col, K,
                            wg, K, 0.f, tmp, ocg);
                for (size_t p = 0; p < out_pix; p++)
                    memcpy(ob + p * s->oc + (size_t)g * ocg, tmp + p * ocg, sizeof(float) * ocg);
            }
        }
        bias_act(ob, out_pix, s->oc, bias, s->act);
    }
}

void dl_dense_forward(int n, int k, int m, const float *in, const float *w, const float *b, dl_act act,
                      float *out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.f, in, k, w, k, 0.f, out, m);
    bias_act(out, (size_t)n, m, b, act);
}

DL_CLONES
void dl_add_forward(size_t count, const float *a, const float *b, dl_act act, float *out)
{
    for (size_t i = 0; i < count; i++) out[i] = a[i] + b[i];
    dl_act_forward(act, out, count);
}

static void pool_forward(const dl_pool_shape *s, const float *in, float *out, bool is_max)
{
    const int C = s->c;
    for (int b = 0; b < s->n; b++) {
        const float *ib = in + (size_t)b * s->ih * s->iw * C;
        float *ob = out + (size_t)b * s->oh * s->ow * C;
        for (int oy = 0; oy < s->oh; oy++) {
            for (int ox = 0; ox < s->ow; ox++) {
                float *o = ob + ((size_t)oy * s->ow + ox) * C;
                for (int c = 0; c < C; c++) o[c] = is_max ? -FLT_MAX : 0.f;
                int cnt = 0;
                for (int ky = 0; ky < s->kh; ky++) {
                    int iy = oy * s->sh - s->pt + ky;
                    if (iy < 0 || iy >= s->ih) continue;
                    for (int kx = 0; kx < s->kw; kx++) {
                        int ix = ox * s->sw - s->pl + kx;
                        if (ix < 0 || ix >= s->iw) continue;
                        const float *ip = ib + ((size_t)iy * s->iw + ix) * C;
                        cnt++;
                        if (is_max) {
                            for (int c = 0; c < C; c++) o[c] = ip[c] > o[c] ? ip[c] : o[c];
                        } else {
                            for (int c = 0; c < C; c++) o[c] += ip[c];
                        }
                    }
                }
                if (!is_max && cnt > 0) {
                    float inv = 1.f / (float)cnt;
                    for (int c = 0; c < C; c++) o[c] *= inv;
                }
                if (is_max && cnt == 0)
                    for (int c = 0; c < C; c++) o[c] = 0.f;
            }
        }
    }
}

void dl_avgpool_forward(const dl_pool_shape *s, const float *in, float *out)
{
    pool_forward(s, in, out, false);
}

void dl_maxpool_forward(const dl_pool_shape *s, const float *in, float *out)
{
    pool_forward(s, in, out, true);
}

void dl_gap_forward(int n, int hw, int c, const float *in, float *out)
{
    float inv = 1.f / (float)hw;
    for (int b = 0; b < n; b++) {
        float *o = out + (size_t)b * c;
        const float *ib = in + (size_t)b * hw * c;
        memset(o, 0, sizeof(float) * c);
        for (int p = 0; p < hw; p++)
            for (int k = 0; k < c; k++) o[k] += ib[(size_t)p * c + k];
        for (int k = 0; k < c; k++) o[k] *= inv;
    }
}

void dl_pad_forward(int n, int ih, int iw, int c, int pt, int pb, int pl, int pr, const float *in,
                    float *out)
{
    int oh = ih + pt + pb, ow = iw + pl + pr;
    memset(out, 0, sizeof(float) * (size_t)n * oh * ow * c);
    for (int b = 0; b < n; b++)
        for (int y = 0; y < ih; y++)
            memcpy(out + (((size_t)b * oh + y + pt) * ow + pl) * c, in + (((size_t)b * ih + y) * iw) * c,
                   sizeof(float) * (size_t)iw * c);
}

void dl_softmax_forward(int n, int c, const float *in, float *out)
{
    for (int b = 0; b < n; b++) {
        const float *x = in + (size_t)b * c;
        float *y = out + (size_t)b * c;
        float mx = x[0];
        for (int k = 1; k < c; k++) mx = x[k] > mx ? x[k] : mx;
        double sum = 0;
        for (int k = 0; k < c; k++) {
            y[k] = expf(x[k] - mx);
            sum += y[k];
        }
        float inv = (float)(1.0 / sum);
        for (int k = 0; k < c; k++) y[k] *= inv;
    }
}
