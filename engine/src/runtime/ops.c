/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Forward kernels, NHWC float32. Convolutions with groups == 1 and dense
 * layers run on the packed AVX-512 GEMM (kernel_gemm.c: 1x1 directly, 3x3
 * stride 1 with pre-packed weights via Winograd (kernel_winograd.c), others
 * via im2col) with bias, activation and residual fused, or on OpenBLAS where
 * AVX-512 is missing; depthwise has a direct kernel (kernel_dw.c). Scalar
 * helpers are compiled for several ISAs and picked at run time (GCC
 * target_clones). */
#include "runtime/runtime.h"
#include "runtime/kernel.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void dl_same_padding(int in, int k, int s, int *out, int *pad_before, int *pad_after)
{
    int o = (in + s - 1) / s;
    int total = (o - 1) * s + k - in;
    if (total < 0) total = 0;
    *out = o;
    *pad_before = total / 2;
    *pad_after = total - total / 2;
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

/* The packed GEMM serves every groups == 1 conv on AVX-512 CPUs. */
static bool conv_uses_packed_gemm(const dl_conv_shape *s)
{
    return s->groups == 1 && dl_cpu_level() >= DL_ISA_AVX512;
}

size_t dl_conv2d_packed_floats(const dl_conv_shape *s)
{
    if (conv_is_depthwise(s)) return (size_t)s->kh * s->kw * s->oc;
    if (dl_winograd_ok(s)) return dl_winograd_packed_floats(s);
    if (conv_uses_packed_gemm(s)) return dl_gemm_packed_floats(s->oc, s->kh * s->kw * s->ic);
    return 0;
}

int dl_conv2d_packed_winograd(const dl_conv_shape *s)
{
    return dl_winograd_ok(s);
}

void dl_conv2d_pack(const dl_conv_shape *s, const float *w, float *packed)
{
    if (dl_winograd_ok(s)) {
        dl_winograd_pack(s, w, packed);
    } else if (conv_is_depthwise(s)) {
        /* [c][kh][kw] -> [kh][kw][c]: channels innermost like the activations */
        const int C = s->oc, K = s->kh * s->kw;
        for (int k = 0; k < K; k++)
            for (int c = 0; c < C; c++) packed[(size_t)k * C + c] = w[(size_t)c * K + k];
    } else if (conv_uses_packed_gemm(s)) {
        dl_gemm_pack(s->oc, s->kh * s->kw * s->ic, w, packed);
    }
}

size_t dl_conv2d_scratch_floats(const dl_conv_shape *s)
{
    /* room to pack the weights when the caller has no packed copy (im2col
     * form: without packed weights Winograd convs take that path) */
    size_t pack = conv_uses_packed_gemm(s) && !conv_is_depthwise(s)
                      ? dl_gemm_packed_floats(s->oc, s->kh * s->kw * s->ic)
                      : dl_conv2d_packed_floats(s);
    if (conv_is_pointwise(s) || conv_is_depthwise(s)) return pack;
    int icg = s->ic / s->groups;
    size_t cols = (size_t)s->oh * s->ow * s->kh * s->kw * icg;
    if (s->groups > 1) cols += (size_t)s->oh * s->ow * (s->oc / s->groups);
    size_t wino = dl_winograd_ok(s) ? dl_winograd_scratch_floats(s) : 0;
    return cols + pack > wino ? cols + pack : wino;
}

/* im2col for one image and one channel group, output pixels [p0, p1)
 * (col holds pixel p0 in row 0): row layout [kh][kw][icg] to match OHWI
 * weights. */
static void im2col(const dl_conv_shape *s, const float *in, int c0, int icg, float *col, size_t p0, size_t p1)
{
    for (size_t p = p0; p < p1; p++) {
        const int oy = (int)(p / (size_t)s->ow), ox = (int)(p % (size_t)s->ow);
        {
            float *dst = col + (p - p0) * s->kh * s->kw * icg;
            const int ix0 = ox * s->sw - s->pl;
            for (int ky = 0; ky < s->kh; ky++) {
                int iy = oy * s->sh - s->pt + ky;
                if (icg == s->ic && iy >= 0 && iy < s->ih && ix0 >= 0 && ix0 + s->kw <= s->iw) {
                    /* whole window row in bounds: kw*ic contiguous floats */
                    const float *src = in + ((size_t)iy * s->iw + ix0) * s->ic;
                    for (int c = 0; c < s->kw * icg; c++) dst[c] = src[c];
                    dst += s->kw * icg;
                    continue;
                }
                for (int kx = 0; kx < s->kw; kx++, dst += icg) {
                    int ix = ox * s->sw - s->pl + kx;
                    /* plain loops: icg is often 3 (RGB), far below memcpy's break-even */
                    if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw) {
                        for (int c = 0; c < icg; c++) dst[c] = 0.f;
                    } else {
                        const float *src = in + ((size_t)iy * s->iw + ix) * s->ic + c0;
                        for (int c = 0; c < icg; c++) dst[c] = src[c];
                    }
                }
            }
        }
    }
}

/* Direct convolution: the packed GEMM's 12 x 32 tile reads 12 output
 * pixels' input windows in place, one k segment per kernel row (kw * ic
 * consecutive floats of an input row), instead of copying them out by
 * im2col first. For layers with few input channels (a network's first
 * layer: im2col writes and re-reads 9 floats per input float there, 1.3 MB
 * for 224 x 224 RGB) and weights that stay in L2 while each output row
 * meets them all. Same sums as im2col's GEMM (rows of the window that fall
 * in the padding are skipped: they only add zeros). */
#define DIRECT_MAX_KH 16
static bool conv_direct_ok(const dl_conv_shape *s)
{
    return conv_uses_packed_gemm(s) && !conv_is_pointwise(s) && s->oc % 32 == 0 && s->ic <= 16 &&
           s->kh <= DIRECT_MAX_KH && !dl_act_is_post(s->act) && s->act != DL_ACT_SILU &&
           (size_t)s->kh * s->kw * s->ic * s->oc * sizeof(float) <= dl_cpu_l2_bytes() / 4;
}

/* Output rows [r0, r1) of one image (s->n ignored) to out (row r0's first
 * pixel; ep->res and ep->c2 likewise); col: im2col room for the pixels
 * whose windows cross the left or right edge, (r1 - r0) * ow * K floats. */
static void conv_direct_rows(const dl_conv_shape *s, const float *in, const float *packed, const dl_epilogue *ep,
                             float *out, int r0, int r1, float *col)
{
    const int K = s->kh * s->kw * s->ic, kwc = s->kw * s->ic, pairs = s->oc / 32;
    /* output columns whose windows lie inside the input row: [xa, xb) */
    int xa = (s->pl + s->sw - 1) / s->sw;
    int xb = s->iw - s->kw + s->pl >= 0 ? (s->iw - s->kw + s->pl) / s->sw + 1 : 0;
    if (xb > s->ow) xb = s->ow;
    if (xa > xb) xa = xb;
    const int nt = (xb - xa) / 12, xe = xa + 12 * nt;
    long seg[3 * (DIRECT_MAX_KH + 1)];
    for (int oy = r0; oy < r1; oy++) {
        const size_t px0 = (size_t)(oy - r0) * s->ow; /* pixel index of (oy, 0) from row r0 */
        const int iy0 = oy * s->sh - s->pt;
        int ns = 0;
        for (int ky = 0; ky < s->kh; ky++) {
            int iy = iy0 + ky;
            if (iy < 0 || iy >= s->ih) continue;
            seg[3 * ns] = (long)iy * s->iw * s->ic * (long)sizeof(float);
            seg[3 * ns + 1] = (long)ky * kwc * 16 * (long)sizeof(float);
            seg[3 * ns + 2] = kwc;
            ns++;
        }
        seg[3 * ns + 2] = -1;
        dl_epilogue e = *ep;
        for (int q = 0; q < nt; q++) {
            const int ox = xa + 12 * q;
            const size_t px = px0 + (size_t)ox;
            const float *a = in + (size_t)(ox * s->sw - s->pl) * s->ic;
            e.res = ep->res ? ep->res + px * ep->ld_res : NULL;
            e.c2 = ep->res ? ep->c2 + px * ep->ld_c2 : NULL;
            for (int p = 0; p < pairs; p++)
                dl_gemm_tile_seg(a, (size_t)s->sw * s->ic, seg, packed, K, p, out + px * s->oc, (size_t)s->oc, &e);
        }
        /* the edges: im2col and the GEMM */
        const int edge[2][2] = {{0, xa}, {xe, s->ow}};
        for (int k = 0; k < 2; k++) {
            const int x0 = edge[k][0], x1 = edge[k][1];
            if (x0 >= x1) continue;
            const size_t px = px0 + (size_t)x0;
            im2col(s, in, 0, s->ic, col, (size_t)oy * s->ow + x0, (size_t)oy * s->ow + x1);
            e.res = ep->res ? ep->res + px * ep->ld_res : NULL;
            e.c2 = ep->res ? ep->c2 + px * ep->ld_c2 : NULL;
            dl_gemm_packed(x1 - x0, s->oc, K, col, (size_t)K, packed, out + px * s->oc, (size_t)s->oc, &e);
        }
    }
}

/* Rows per OpenBLAS call on the portable path: the block of C is finished
 * (bias, activation, residual) while it is still in cache. */
static size_t blas_block_rows(int cols)
{
    size_t r = 32768 / (size_t)(cols > 0 ? cols : 1);
    return r < 16 ? 16 : r;
}

/* C = act(A x W^T + bias) (+ residual) with OpenBLAS, in row blocks: C is
 * initialised with the bias and sgemm accumulates (beta = 1), so there is no
 * separate zeroing or bias pass. */
static void blas_gemm_fused(size_t m, int n, int k, const float *a, size_t lda, const float *w,
                            const float *bias, dl_act act, float *c, size_t ldc, const float *res,
                            dl_act res_act, float *c2)
{
    size_t step = blas_block_rows(n);
    for (size_t r0 = 0; r0 < m; r0 += step) {
        size_t rows = m - r0 < step ? m - r0 : step;
        float *cb = c + r0 * ldc;
        if (bias)
            for (size_t r = 0; r < rows; r++) memcpy(cb + r * ldc, bias, sizeof(float) * n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, n, k, 1.f, a + r0 * lda, (int)lda,
                    w, k, bias ? 1.f : 0.f, cb, (int)ldc);
        for (size_t r = 0; r < rows; r++) {
            float *row = cb + r * ldc;
            dl_act_forward(act, row, (size_t)n);
            if (res) {
                float *o = c2 + (r0 + r) * ldc;
                const float *x = res + (r0 + r) * ldc;
                for (int j = 0; j < n; j++) o[j] = row[j] + x[j];
                dl_act_forward(res_act, o, (size_t)n);
            }
        }
    }
}

void dl_conv2d_forward(const dl_conv_shape *s, const float *in, const float *w, const float *bias,
                       float *out, float *scratch)
{
    dl_conv2d_forward_ex(s, in, w, NULL, bias, out, scratch, NULL, DL_ACT_NONE, NULL);
}

void dl_conv2d_forward_ex(const dl_conv_shape *s, const float *in, const float *w, const float *packed,
                          const float *bias, float *out, float *scratch, const float *res, dl_act res_act,
                          float *out2)
{
    const size_t in_img = (size_t)s->ih * s->iw * s->ic;
    const size_t out_pix = (size_t)s->oh * s->ow;
    const size_t out_img = out_pix * s->oc;

    if (dl_act_is_post(s->act) || (res && dl_act_is_post(res_act))) {
        /* the fused epilogues know neither sigmoid nor hsigmoid: the
         * convolution without them, then the activation, then the add */
        dl_conv_shape s2 = *s;
        s2.act = dl_act_is_post(s->act) ? DL_ACT_NONE : s->act;
        dl_conv2d_forward_ex(&s2, in, w, packed, bias, out, scratch, NULL, DL_ACT_NONE, NULL);
        if (s2.act != s->act) dl_act_forward(s->act, out, (size_t)s->n * out_img);
        if (res) dl_add_forward((size_t)s->n * out_img, out, res, res_act, out2);
        return;
    }
    if (conv_is_depthwise(s)) {
        if (!packed) {
            dl_conv2d_pack(s, w, scratch);
            packed = scratch;
        }
        for (int b = 0; b < s->n; b++)
            dl_depthwise_image(s, in + b * in_img, packed, bias, out + b * out_img);
        if (res) dl_add_forward((size_t)s->n * out_img, out, res, res_act, out2);
        return;
    }
    const bool fast = conv_uses_packed_gemm(s);
    dl_epilogue ep = {.bias = bias, .act = s->act, .res_act = res_act, .ld_res = (size_t)s->oc,
                      .ld_c2 = (size_t)s->oc};
    if (packed && dl_winograd_ok(s)) { /* packed by dl_conv2d_pack in Winograd's form */
        ep.res = res;
        ep.c2 = out2;
        dl_winograd_forward(s, in, packed, &ep, out, scratch);
        return;
    }
    if (conv_is_pointwise(s)) {
        size_t rows = (size_t)s->n * out_pix;
        if (fast) {
            if (!packed) {
                dl_gemm_pack(s->oc, s->ic, w, scratch);
                packed = scratch;
            }
            ep.res = res;
            ep.c2 = out2;
            dl_gemm_packed((int)rows, s->oc, s->ic, in, (size_t)s->ic, packed, out, (size_t)s->oc, &ep);
        } else {
            blas_gemm_fused(rows, s->oc, s->ic, in, (size_t)s->ic, w, bias, s->act, out, (size_t)s->oc, res,
                            res_act, out2);
        }
        return;
    }
    const int G = s->groups, icg = s->ic / G, ocg = s->oc / G;
    const int K = s->kh * s->kw * icg;
    float *col = scratch;
    float *tmp = scratch + out_pix * (size_t)K; /* grouped output staging */
    if (fast && !packed) {
        float *p = scratch + out_pix * (size_t)K;
        dl_gemm_pack(s->oc, K, w, p);
        packed = p;
    }
    for (int b = 0; b < s->n; b++) {
        const float *ib = in + b * in_img;
        float *ob = out + b * out_img;
        if (G == 1) {
            im2col(s, ib, 0, icg, col, 0, out_pix);
            if (fast) {
                ep.res = res ? res + b * out_img : NULL;
                ep.c2 = res ? out2 + b * out_img : NULL;
                dl_gemm_packed((int)out_pix, s->oc, K, col, (size_t)K, packed, ob, (size_t)s->oc, &ep);
            } else {
                blas_gemm_fused(out_pix, s->oc, K, col, (size_t)K, w, bias, s->act, ob, (size_t)s->oc,
                                res ? res + b * out_img : NULL, res_act, res ? out2 + b * out_img : NULL);
            }
            continue;
        }
        for (int g = 0; g < G; g++) {
            im2col(s, ib, g * icg, icg, col, 0, out_pix);
            const float *wg = w + (size_t)g * ocg * K;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)out_pix, ocg, K, 1.f, col, K, wg, K,
                        0.f, tmp, ocg);
            for (size_t p = 0; p < out_pix; p++)
                memcpy(ob + p * s->oc + (size_t)g * ocg, tmp + p * ocg, sizeof(float) * ocg);
        }
        bias_act(ob, out_pix, s->oc, bias, s->act);
        if (res) dl_add_forward(out_img, ob, res + b * out_img, res_act, out2 + b * out_img);
    }
}

int dl_conv_pw_dw_forward(const dl_conv_shape *pw, const float *in, const float *pw_packed, const float *pw_bias,
                          float *pw_out, const dl_conv_shape *dw, const float *dw_packed, const float *dw_bias,
                          float *dw_out)
{
    const size_t row = (size_t)pw->ow * pw->oc; /* floats per row of pw's output */
    if (dl_act_is_post(pw->act) || dl_act_is_post(dw->act)) return -1;
    if (!pw_packed || !dw_packed || !conv_is_pointwise(pw) || !conv_uses_packed_gemm(pw) ||
        !conv_is_depthwise(dw) || dw->n != pw->n || dw->ih != pw->oh || dw->iw != pw->ow || dw->ic != pw->oc)
        return -1;
    /* bands whose input rows take ~256 KiB: L2-resident between the two */
    int in_rows = (int)(65536 / (row ? row : 1));
    if (in_rows < dw->kh) in_rows = dw->kh;
    int band = in_rows / dw->sh;
    if (band < 1) band = 1;
    const size_t in_img = (size_t)pw->ih * pw->iw * pw->ic, mid_img = (size_t)pw->oh * row,
                 out_img = (size_t)dw->oh * dw->ow * dw->oc;
    dl_epilogue ep = {.bias = pw_bias, .act = pw->act};
    for (int b = 0; b < pw->n; b++) {
        const float *ib = in + b * in_img;
        float *mb = pw_out + b * mid_img, *ob = dw_out + b * out_img;
        int done = 0; /* rows of pw's output computed */
        for (int oy0 = 0; oy0 < dw->oh; oy0 += band) {
            int oy1 = oy0 + band < dw->oh ? oy0 + band : dw->oh;
            int need = (oy1 - 1) * dw->sh - dw->pt + dw->kh;
            if (need > pw->oh) need = pw->oh;
            if (need > done) {
                dl_gemm_packed((need - done) * pw->ow, pw->oc, pw->ic, ib + (size_t)done * pw->iw * pw->ic,
                               (size_t)pw->ic, pw_packed, mb + (size_t)done * row, (size_t)pw->oc, &ep);
                done = need;
            }
            dl_depthwise_rows(dw, mb, dw_packed, dw_bias, ob, oy0, oy1);
        }
        if (done < pw->oh) /* rows no window reads (VALID padding): still part of the output */
            dl_gemm_packed((pw->oh - done) * pw->ow, pw->oc, pw->ic, ib + (size_t)done * pw->iw * pw->ic,
                           (size_t)pw->ic, pw_packed, mb + (size_t)done * row, (size_t)pw->oc, &ep);
    }
    return 0;
}

int dl_conv2d_rows_ok(const dl_conv_shape *s)
{
    /* Winograd's packed weights are not im2col's; it runs whole layers */
    if (dl_act_is_post(s->act) || s->act == DL_ACT_SILU || dl_winograd_ok(s)) return 0;
    return conv_is_depthwise(s) || conv_uses_packed_gemm(s);
}

size_t dl_conv2d_rows_scratch_floats(const dl_conv_shape *s, int rows)
{
    if (conv_is_pointwise(s) || conv_is_depthwise(s)) return 0;
    return (size_t)rows * s->ow * s->kh * s->kw * s->ic;
}

void dl_conv2d_rows(const dl_conv_shape *s, const dl_rows_io *io, const float *packed, const float *bias, int oy0,
                    int oy1, dl_act res_act, float *scratch)
{
    if (oy0 >= oy1) return;
    const size_t pix = (size_t)(oy1 - oy0) * s->ow;
    float *out = io->out + (size_t)(oy0 - io->out_lo) * s->ow * s->oc;
    const float *res = io->res ? io->res + (size_t)(oy0 - io->res_lo) * s->ow * s->oc : NULL;
    float *out2 = io->res ? io->out2 + (size_t)(oy0 - io->out2_lo) * s->ow * s->oc : NULL;
    /* the same convolution with the buffers' first rows as rows 0: only
     * the padding shifts, so every value is computed as on whole images */
    dl_conv_shape t = *s;
    t.ih = s->ih - io->in_lo;
    t.pt = s->pt + io->in_lo - io->out_lo * s->sh;
    t.oh = s->oh - io->out_lo;
    const int r0 = oy0 - io->out_lo, r1 = oy1 - io->out_lo;
    if (conv_is_depthwise(s)) {
        dl_depthwise_rows(&t, io->in, packed, bias, io->out, r0, r1);
        if (res) dl_add_forward(pix * s->oc, out, res, res_act, out2);
        return;
    }
    dl_epilogue ep = {.bias = bias, .act = s->act, .res_act = res_act, .ld_res = (size_t)s->oc,
                      .ld_c2 = (size_t)s->oc, .res = res, .c2 = out2};
    if (conv_is_pointwise(s)) {
        dl_gemm_packed((int)pix, s->oc, s->ic, io->in + (size_t)(oy0 - io->in_lo) * s->iw * s->ic, (size_t)s->ic,
                       packed, out, (size_t)s->oc, &ep);
        return;
    }
    if (conv_direct_ok(s)) {
        conv_direct_rows(&t, io->in, packed, &ep, out, r0, r1, scratch);
        return;
    }
    const int K = s->kh * s->kw * s->ic;
    im2col(&t, io->in, 0, s->ic, scratch, (size_t)r0 * s->ow, (size_t)r1 * s->ow);
    dl_gemm_packed((int)pix, s->oc, K, scratch, (size_t)K, packed, out, (size_t)s->oc, &ep);
}

size_t dl_dense_packed_floats(int k, int m)
{
    return dl_cpu_level() >= DL_ISA_AVX512 ? dl_gemm_packed_floats(m, k) : 0;
}

void dl_dense_pack(int k, int m, const float *w, float *packed)
{
    if (dl_cpu_level() >= DL_ISA_AVX512) dl_gemm_pack(m, k, w, packed);
}

void dl_dense_forward(int n, int k, int m, const float *in, const float *w, const float *b, dl_act act,
                      float *out)
{
    dl_dense_forward_ex(n, k, m, in, w, NULL, b, act, out);
}

void dl_dense_forward_ex(int n, int k, int m, const float *in, const float *w, const float *packed,
                         const float *b, dl_act act, float *out)
{
    if (dl_act_is_post(act)) {
        dl_dense_forward_ex(n, k, m, in, w, packed, b, DL_ACT_NONE, out);
        dl_act_forward(act, out, (size_t)n * (size_t)m);
        return;
    }
    if (packed && dl_cpu_level() >= DL_ISA_AVX512) {
        dl_epilogue ep = {.bias = b, .act = act};
        dl_gemm_packed(n, m, k, in, (size_t)k, packed, out, (size_t)m, &ep);
        return;
    }
    blas_gemm_fused((size_t)n, m, k, in, (size_t)k, w, b, act, out, (size_t)m, NULL, DL_ACT_NONE, NULL);
}

DL_CLONES
void dl_add_forward(size_t count, const float *a, const float *b, dl_act act, float *out)
{
    for (size_t i = 0; i < count; i++) out[i] = a[i] + b[i];
    dl_act_forward(act, out, count);
}

/* out = a * b over rows x c, b one row of c (gate) or rows x c (b_rows). */
DL_CLONES
static void mul_rows(size_t rows, int c, const float *restrict a, const float *restrict b, bool b_rows,
                     float *restrict out)
{
    if (b_rows) {
        for (size_t k = 0; k < rows * (size_t)c; k++) out[k] = a[k] * b[k];
        return;
    }
    for (size_t p = 0; p < rows; p++)
        for (int k = 0; k < c; k++) out[p * c + k] = a[p * c + k] * b[k];
}

typedef struct {
    int n, hw, c, b_hw;
    const float *a, *b;
    float *out;
} mul_job;

/* Part of the (image, position) rows: one pass in cache-sized pieces. */
static void mul_part(void *arg, int part, int nparts)
{
    const mul_job *j = arg;
    size_t total = (size_t)j->n * j->hw;
    size_t r0 = total * part / nparts, r1 = total * (part + 1) / nparts;
    while (r0 < r1) {
        size_t img = r0 / j->hw, p = r0 % j->hw, take = j->hw - p < r1 - r0 ? j->hw - p : r1 - r0;
        const size_t off = r0 * j->c;
        const float *b = j->b_hw == j->hw ? j->b + off : j->b + img * j->c;
        mul_rows(take, j->c, j->a + off, b, j->b_hw == j->hw, j->out + off);
        r0 += take;
    }
}

void dl_mul_forward(int n, int hw, int c, int b_hw, const float *a, const float *b, dl_act act, float *out)
{
    mul_job j = {n, hw, c, b_hw, a, b, out};
    size_t count = (size_t)n * hw * c;
    int parts = dl_parallel_parts(count, 65536);
    if (parts > 1) dl_parallel(parts, mul_part, &j);
    else mul_part(&j, 0, 1);
    dl_act_forward(act, out, count);
}

void dl_concat_forward(size_t rows, int ca, int cb, const float *a, const float *b, float *out)
{
    const size_t oc = (size_t)ca + (size_t)cb;
    for (size_t r = 0; r < rows; r++) {
        memcpy(out + r * oc, a + r * (size_t)ca, sizeof(float) * (size_t)ca);
        memcpy(out + r * oc + ca, b + r * (size_t)cb, sizeof(float) * (size_t)cb);
    }
}

/* Output rows [r0, r1) of the batch (row = image * oh + oy). Each output
 * visits its in-bounds taps in (ky, kx) order; the loops over channels are
 * plain, so the clones vectorise them. */
DL_CLONES
static void pool_rows(const dl_pool_shape *s, const float *restrict in, float *restrict out, bool is_max, size_t r0,
                      size_t r1)
{
    const int C = s->c;
    for (size_t r = r0; r < r1; r++) {
        const int b = (int)(r / (size_t)s->oh), oy = (int)(r % (size_t)s->oh);
        const float *ib = in + (size_t)b * s->ih * s->iw * C;
        int ky0 = -(oy * s->sh - s->pt), ky1 = s->ih - (oy * s->sh - s->pt);
        if (ky0 < 0) ky0 = 0;
        if (ky1 > s->kh) ky1 = s->kh;
        for (int ox = 0; ox < s->ow; ox++) {
            float *restrict o = out + (r * s->ow + ox) * C;
            int kx0 = -(ox * s->sw - s->pl), kx1 = s->iw - (ox * s->sw - s->pl);
            if (kx0 < 0) kx0 = 0;
            if (kx1 > s->kw) kx1 = s->kw;
            const int cnt = ky1 > ky0 && kx1 > kx0 ? (ky1 - ky0) * (kx1 - kx0) : 0;
            if (cnt == 0) { /* window entirely in the padding */
                for (int c = 0; c < C; c++) o[c] = 0.f;
                continue;
            }
            bool first = true;
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) {
                    const float *restrict ip =
                        ib + ((size_t)(oy * s->sh - s->pt + ky) * s->iw + (ox * s->sw - s->pl + kx)) * C;
                    if (first) {
                        for (int c = 0; c < C; c++) o[c] = ip[c];
                        first = false;
                    } else if (is_max) {
                        for (int c = 0; c < C; c++) o[c] = ip[c] > o[c] ? ip[c] : o[c];
                    } else {
                        for (int c = 0; c < C; c++) o[c] += ip[c];
                    }
                }
            if (!is_max) {
                float inv = 1.f / (float)cnt;
                for (int c = 0; c < C; c++) o[c] *= inv;
            }
        }
    }
}

typedef struct {
    const dl_pool_shape *s;
    const float *in;
    float *out;
    bool is_max;
} pool_job;

static void pool_part(void *arg, int part, int nparts)
{
    const pool_job *j = arg;
    size_t rows = (size_t)j->s->n * j->s->oh;
    pool_rows(j->s, j->in, j->out, j->is_max, rows * part / nparts, rows * (part + 1) / nparts);
}

static void pool_forward(const dl_pool_shape *s, const float *in, float *out, bool is_max)
{
    pool_job j = {s, in, out, is_max};
    size_t work = (size_t)s->n * s->oh * s->ow * s->c * s->kh * s->kw;
    int parts = dl_parallel_parts(work, 65536);
    if ((size_t)parts > (size_t)s->n * s->oh) parts = s->n * s->oh;
    if (parts > 1) dl_parallel(parts, pool_part, &j);
    else pool_part(&j, 0, 1);
}

void dl_avgpool_forward(const dl_pool_shape *s, const float *in, float *out)
{
    pool_forward(s, in, out, false);
}

void dl_maxpool_forward(const dl_pool_shape *s, const float *in, float *out)
{
    pool_forward(s, in, out, true);
}

/* Channels [c0, c1) of one image: sums over the positions in position
 * order (the same for any split), then the mean. */
DL_CLONES
static void gap_channels(int hw, int c, int c0, int c1, const float *restrict in, float *restrict out)
{
    float inv = 1.f / (float)hw;
    for (int k = c0; k < c1; k++) out[k] = 0.f;
    for (int p = 0; p < hw; p++) {
        const float *row = in + (size_t)p * c;
        for (int k = c0; k < c1; k++) out[k] += row[k];
    }
    for (int k = c0; k < c1; k++) out[k] *= inv;
}

typedef struct {
    int n, hw, c;
    const float *in;
    float *out;
} gap_job;

/* Part of the (image, block of 16 channels) pairs. */
static void gap_part(void *arg, int part, int nparts)
{
    const gap_job *j = arg;
    size_t blocks = (size_t)(j->c + 15) / 16, total = blocks * j->n;
    size_t q0 = total * part / nparts, q1 = total * (part + 1) / nparts;
    while (q0 < q1) {
        size_t img = q0 / blocks, cb = q0 % blocks, take = blocks - cb < q1 - q0 ? blocks - cb : q1 - q0;
        int c0 = (int)cb * 16, c1 = (int)(cb + take) * 16 < j->c ? (int)(cb + take) * 16 : j->c;
        gap_channels(j->hw, j->c, c0, c1, j->in + img * j->hw * j->c, j->out + img * j->c);
        q0 += take;
    }
}

void dl_gap_forward(int n, int hw, int c, const float *in, float *out)
{
    gap_job j = {n, hw, c, in, out};
    int parts = dl_parallel_parts((size_t)n * hw * c, 65536);
    if (parts > 1) dl_parallel(parts, gap_part, &j);
    else gap_part(&j, 0, 1);
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
