/* DermLens engine: backward kernels (NHWC float32).
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * All kernels ACCUMULATE into grad_in / grad_w / grad_b (see ops.h); any of
 * those may be NULL. Activation backward turns grad_out in place into the
 * gradient with respect to the pre-activation.
 */
#include "runtime/runtime.h"
#include "runtime/kernel.h"
#include "runtime/act_avx512.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- activations */

#if defined(__x86_64__) && defined(__GNUC__)
/* SiLU's derivative s (1 + x (1 - s)) with the vector sigmoid: the scalar
 * loop below is an expf call per element. */
__attribute__((target("avx512f,fma"))) static void silu_backward_512(const float *pre, float *grad, size_t n)
{
    const __m512 one = _mm512_set1_ps(1.f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(m, pre + i), s = dl_sigmoid16(x);
        __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(x, _mm512_sub_ps(one, s), one));
        _mm512_mask_storeu_ps(grad + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, grad + i), d));
    }
}
#endif

DL_CLONES
void dl_act_backward(dl_act a, const float *y, const float *pre, float *grad, size_t n)
{
    /* relu/relu6 derivatives are readable from either the output or the
     * pre-activation; prefer the output as documented. */
    const float *v = y ? y : pre;
    switch (a) {
    case DL_ACT_NONE:
        return;
    case DL_ACT_RELU:
        if (!v)
            return;
        for (size_t i = 0; i < n; i++)
            grad[i] = v[i] > 0.0f ? grad[i] : 0.0f;
        return;
    case DL_ACT_RELU6:
        if (!v)
            return;
        for (size_t i = 0; i < n; i++)
            grad[i] = (v[i] > 0.0f && v[i] < 6.0f) ? grad[i] : 0.0f;
        return;
    case DL_ACT_HSWISH:
        /* d/dx x*relu6(x+3)/6 = 0 (x<=-3), (2x+3)/6 (-3<x<3), 1 (x>=3). */
        if (!pre)
            return;
        for (size_t i = 0; i < n; i++) {
            float x = pre[i], d;
            if (x <= -3.0f)
                d = 0.0f;
            else if (x >= 3.0f)
                d = 1.0f;
            else
                d = (2.0f * x + 3.0f) * (1.0f / 6.0f);
            grad[i] *= d;
        }
        return;
    case DL_ACT_SILU:
        /* d/dx x*s(x) = s(x) * (1 + x*(1 - s(x))); sigmoid kept overflow-free. */
        if (!pre)
            return;
#if defined(__x86_64__) && defined(__GNUC__)
        if (dl_cpu_level() >= DL_ISA_AVX512) {
            silu_backward_512(pre, grad, n);
            return;
        }
#endif
        for (size_t i = 0; i < n; i++) {
            float x = pre[i], s;
            if (x >= 0.0f) {
                s = 1.0f / (1.0f + expf(-x));
            } else {
                float e = expf(x);
                s = e / (1.0f + e);
            }
            grad[i] *= s * (1.0f + x * (1.0f - s));
        }
        return;
    case DL_ACT_SIGMOID:
        /* d/dx s(x) = s(1 - s), from the output */
        if (!y)
            return;
        for (size_t i = 0; i < n; i++)
            grad[i] *= y[i] * (1.0f - y[i]);
        return;
    case DL_ACT_HSIGMOID:
        /* relu6(x + 3) / 6: slope 1/6 strictly inside (0, 1), else 0 */
        if (!y)
            return;
        for (size_t i = 0; i < n; i++)
            grad[i] = (y[i] > 0.0f && y[i] < 1.0f) ? grad[i] * (1.0f / 6.0f) : 0.0f;
        return;
    }
}

/* g [rows][cols] *= act'(.), and grad_b (NULL: not wanted) += the column
 * sums of the result: one pass for relu / relu6 / none (each sum still adds
 * the rows in order, so the bits are those of two passes). */
DL_CLONES
static void act_bias_backward(dl_act a, const float *restrict y, const float *pre, float *restrict g, size_t rows,
                              size_t cols, float *restrict grad_b)
{
    if (!grad_b) {
        dl_act_backward(a, y, pre, g, rows * cols);
        return;
    }
    const float *v = y ? y : pre;
    if (a == DL_ACT_NONE || ((a == DL_ACT_RELU || a == DL_ACT_RELU6) && !v)) {
        for (size_t r = 0; r < rows; r++)
            for (size_t o = 0; o < cols; o++)
                grad_b[o] += g[r * cols + o];
    } else if (a == DL_ACT_RELU || a == DL_ACT_RELU6) {
        const bool relu = a == DL_ACT_RELU;
        for (size_t r = 0; r < rows; r++) {
            const float *vr = v + r * cols;
            float *gr = g + r * cols;
            for (size_t o = 0; o < cols; o++) {
                float d = vr[o] > 0.0f && (relu || vr[o] < 6.0f) ? gr[o] : 0.0f;
                gr[o] = d;
                grad_b[o] += d;
            }
        }
    } else {
        dl_act_backward(a, y, pre, g, rows * cols);
        for (size_t r = 0; r < rows; r++)
            for (size_t o = 0; o < cols; o++)
                grad_b[o] += g[r * cols + o];
    }
}

/* The same in parallel on large gradients. The rows go in AB_BLOCKS blocks,
 * a fixed number whatever the thread count, each summing its own column
 * partials, which are then added in block order: so grad_b has the same
 * bits on any number of threads. Without grad_b the pass is elementwise. */
#define AB_BLOCKS 8
#define AB_MIN_FLOATS 65536

typedef struct {
    dl_act a;
    const float *y, *pre;
    float *g;
    size_t rows, cols;
    float *parts; /* [AB_BLOCKS][cols], or NULL: no bias gradient */
} ab_job;

static void ab_part(void *arg, int part, int nparts)
{
    const ab_job *j = arg;
    for (int b = part * AB_BLOCKS / nparts; b < (part + 1) * AB_BLOCKS / nparts; b++) {
        size_t r0 = j->rows * (size_t)b / AB_BLOCKS, r1 = j->rows * (size_t)(b + 1) / AB_BLOCKS;
        size_t off = r0 * j->cols;
        const float *y = j->y ? j->y + off : NULL, *pre = j->pre ? j->pre + off : NULL;
        if (!j->parts) {
            dl_act_backward(j->a, y, pre, j->g + off, (r1 - r0) * j->cols);
            continue;
        }
        float *pb = j->parts + (size_t)b * j->cols;
        memset(pb, 0, sizeof(float) * j->cols);
        act_bias_backward(j->a, y, pre, j->g + off, r1 - r0, j->cols, pb);
    }
}

static void act_bias_backward_par(dl_act a, const float *y, const float *pre, float *g, size_t rows, size_t cols,
                                  float *grad_b)
{
    float *parts = NULL;
    if (rows * cols < AB_MIN_FLOATS || rows < AB_BLOCKS ||
        (grad_b && !(parts = malloc(sizeof(float) * AB_BLOCKS * cols)))) {
        act_bias_backward(a, y, pre, g, rows, cols, grad_b);
        return;
    }
    ab_job j = {a, y, pre, g, rows, cols, parts};
    dl_parallel(dl_parallel_parts(rows * cols, AB_MIN_FLOATS / 2), ab_part, &j);
    if (parts) {
        for (int b = 0; b < AB_BLOCKS; b++)
            for (size_t o = 0; o < cols; o++) grad_b[o] += parts[(size_t)b * cols + o];
        free(parts);
    }
}

/* ---------------------------------------------------------------- conv2d */

/* Depthwise backward splits the batch over at most this many threads. */
#define DW_MAX_THREADS 16

static size_t sat_mul(size_t a, size_t b)
{
    size_t r;
    return dl_mul_size(a, b, &r) ? r : SIZE_MAX;
}

static int conv_is_pointwise(const dl_conv_shape *s)
{
    return s->groups == 1 && s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->pt == 0 &&
           s->pl == 0 && s->oh == s->ih && s->ow == s->iw;
}

static int conv_is_depthwise(const dl_conv_shape *s)
{
    return s->groups > 1 && s->groups == s->ic && s->groups == s->oc;
}

size_t dl_conv2d_backward_scratch_floats(const dl_conv_shape *s)
{
    if (conv_is_pointwise(s)) /* W^T packed for the input gradient */
        return dl_gemm_packed_floats(s->ic, s->oc);
    if (conv_is_depthwise(s)) {
        /* channel-innermost weights plus one weight-gradient partial per thread */
        return sat_mul(1 + DW_MAX_THREADS,
                       sat_mul(sat_mul((size_t)s->kh, (size_t)s->kw), (size_t)s->ic));
    }
    /* one per-image, per-group column matrix [oh*ow][kh*kw*ic/groups],
     * reused first for im2col(in) and then for dcol */
    size_t icg = s->groups > 0 ? (size_t)(s->ic / s->groups) : 0;
    size_t k = sat_mul(sat_mul((size_t)s->kh, (size_t)s->kw), icg);
    return sat_mul(sat_mul((size_t)s->oh, (size_t)s->ow), k);
}

/* col[p][(ky*kw+kx)*icg + c] = in[iy][ix][c0 + c] or 0 outside the image. */
static void im2col(const dl_conv_shape *s, const float *img, int c0, int icg, float *col)
{
    size_t k = (size_t)s->kh * (size_t)s->kw * (size_t)icg;
    for (int oy = 0; oy < s->oh; oy++) {
        for (int ox = 0; ox < s->ow; ox++) {
            float *row = col + ((size_t)oy * (size_t)s->ow + (size_t)ox) * k;
            for (int ky = 0; ky < s->kh; ky++) {
                int iy = oy * s->sh - s->pt + ky;
                for (int kx = 0; kx < s->kw; kx++) {
                    int ix = ox * s->sw - s->pl + kx;
                    float *dst = row + ((size_t)ky * (size_t)s->kw + (size_t)kx) * (size_t)icg;
                    if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw)
                        memset(dst, 0, (size_t)icg * sizeof(float));
                    else
                        memcpy(dst,
                               img + ((size_t)iy * (size_t)s->iw + (size_t)ix) * (size_t)s->ic +
                                   (size_t)c0,
                               (size_t)icg * sizeof(float));
                }
            }
        }
    }
}

/* Adjoint of im2col: scatter-add the column gradient back into the image. */
static void col2im_add(const dl_conv_shape *s, const float *col, int c0, int icg, float *img)
{
    size_t k = (size_t)s->kh * (size_t)s->kw * (size_t)icg;
    for (int oy = 0; oy < s->oh; oy++) {
        for (int ox = 0; ox < s->ow; ox++) {
            const float *row = col + ((size_t)oy * (size_t)s->ow + (size_t)ox) * k;
            for (int ky = 0; ky < s->kh; ky++) {
                int iy = oy * s->sh - s->pt + ky;
                if (iy < 0 || iy >= s->ih)
                    continue;
                for (int kx = 0; kx < s->kw; kx++) {
                    int ix = ox * s->sw - s->pl + kx;
                    if (ix < 0 || ix >= s->iw)
                        continue;
                    const float *src =
                        row + ((size_t)ky * (size_t)s->kw + (size_t)kx) * (size_t)icg;
                    float *dst = img + ((size_t)iy * (size_t)s->iw + (size_t)ix) * (size_t)s->ic +
                                 (size_t)c0;
                    for (int c = 0; c < icg; c++)
                        dst[c] += src[c];
                }
            }
        }
    }
}

/* acc[i] += a[i] * b[i]; restrict lets the compiler vectorise without
 * runtime alias checks on these short channel loops. */
static inline void mul_acc(float *restrict acc, const float *restrict a, const float *restrict b,
                           size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += a[i] * b[i];
}

/* Depthwise backward for images [b0, b1): grad_in rows of distinct images
 * never overlap, so workers only need private weight-gradient partials. */
typedef struct {
    const dl_conv_shape *s;
    const float *in, *wt, *g;
    float *grad_in; /* NULL: not wanted */
    float *gwt;     /* [kh][kw][c] partial, NULL: not wanted */
    int b0, b1;
} dw_job;

static void *dw_run(void *arg)
{
    const dw_job *j = arg;
    const dl_conv_shape *s = j->s;
    const size_t c = (size_t)s->ic;
    for (int b = j->b0; b < j->b1; b++) {
        const float *img = j->in + (size_t)b * (size_t)s->ih * (size_t)s->iw * c;
        float *gimg =
            j->grad_in ? j->grad_in + (size_t)b * (size_t)s->ih * (size_t)s->iw * c : NULL;
        for (int oy = 0; oy < s->oh; oy++) {
            for (int ox = 0; ox < s->ow; ox++) {
                const float *go =
                    j->g +
                    (((size_t)b * (size_t)s->oh + (size_t)oy) * (size_t)s->ow + (size_t)ox) * c;
                for (int ky = 0; ky < s->kh; ky++) {
                    int iy = oy * s->sh - s->pt + ky;
                    if (iy < 0 || iy >= s->ih)
                        continue;
                    for (int kx = 0; kx < s->kw; kx++) {
                        int ix = ox * s->sw - s->pl + kx;
                        if (ix < 0 || ix >= s->iw)
                            continue;
                        size_t t = (size_t)ky * (size_t)s->kw + (size_t)kx;
                        size_t off = ((size_t)iy * (size_t)s->iw + (size_t)ix) * c;
                        if (j->gwt)
                            mul_acc(j->gwt + t * c, go, img + off, c);
                        if (gimg)
                            mul_acc(gimg + off, go, j->wt + t * c, c);
                    }
                }
            }
        }
    }
    return NULL;
}

static void conv_backward_depthwise(const dl_conv_shape *s, const float *in, const float *w,
                                    const float *g, float *grad_in, float *grad_w,
                                    float *scratch, bool assign_in)
{
    const size_t c = (size_t)s->ic;
    const size_t taps = (size_t)s->kh * (size_t)s->kw;
    /* Weights are [c][kh][kw]; transpose to [kh][kw][c] so that the inner
     * loop runs over contiguous channels (as the activations do). */
    float *wt = scratch;
    float *parts = scratch + taps * c; /* DW_MAX_THREADS partials */
    for (size_t ch = 0; ch < c; ch++)
        for (size_t t = 0; t < taps; t++)
            wt[t * c + ch] = w[ch * taps + t];
    if (dl_depthwise_backward(s, in, wt, g, grad_in, grad_w, parts, assign_in) == 0)
        return;
    if (grad_in && assign_in)
        memset(grad_in, 0, sizeof(float) * (size_t)s->n * s->ih * s->iw * c);

    int nt = dl_get_num_threads();
    if (nt > DW_MAX_THREADS)
        nt = DW_MAX_THREADS;
    if (nt > s->n)
        nt = s->n;
    if (nt < 1)
        nt = 1;
    dw_job jobs[DW_MAX_THREADS];
    pthread_t tid[DW_MAX_THREADS];
    bool started[DW_MAX_THREADS] = {false};
    for (int i = 0; i < nt; i++) {
        jobs[i] = (dw_job){s, in, wt, g, grad_in, grad_w ? parts + (size_t)i * taps * c : NULL,
                           (int)((long)s->n * i / nt), (int)((long)s->n * (i + 1) / nt)};
        if (jobs[i].gwt)
            memset(jobs[i].gwt, 0, taps * c * sizeof(float));
    }
    /* Thread 0 is the caller; a failed pthread_create just runs inline. */
    for (int i = 1; i < nt; i++)
        started[i] = pthread_create(&tid[i], NULL, dw_run, &jobs[i]) == 0;
    dw_run(&jobs[0]);
    for (int i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            dw_run(&jobs[i]);
    }
    if (grad_w)
        for (size_t ch = 0; ch < c; ch++)
            for (size_t t = 0; t < taps; t++) {
                float acc = 0.0f;
                for (int i = 0; i < nt; i++)
                    acc += parts[(size_t)i * taps * c + t * c + ch];
                grad_w[ch * taps + t] += acc;
            }
}

void dl_conv2d_backward(const dl_conv_shape *s, const float *in, const float *w, const float *out,
                        const float *pre, float *grad_out, float *grad_in, float *grad_w,
                        float *grad_b, float *scratch)
{
    dl_conv2d_backward_ex(s, in, w, out, pre, grad_out, grad_in, grad_w, grad_b, scratch, false);
}

void dl_conv2d_backward_ex(const dl_conv_shape *s, const float *in, const float *w, const float *out,
                           const float *pre, float *grad_out, float *grad_in, float *grad_w, float *grad_b,
                           float *scratch, bool assign_in)
{
    const size_t oc = (size_t)s->oc;
    const size_t opix = (size_t)s->oh * (size_t)s->ow;     /* output pixels per image */
    const size_t ipix = (size_t)s->ih * (size_t)s->iw;

    act_bias_backward_par(s->act, out, pre, grad_out, (size_t)s->n * opix, oc, grad_b);
    const float *g = grad_out;
    /* groups is validated by dl_graph_infer; this only avoids dividing by 0 */
    if ((!grad_in && !grad_w) || s->groups <= 0)
        return;

    if (conv_is_pointwise(s)) {
        /* Whole batch as one matrix: X [M][ic], G [M][oc], W [oc][ic]. */
        const int m = s->n * s->ih * s->iw;
        if (grad_w &&
            dl_gemm_at_b_acc(s->oc, s->ic, m, g, (size_t)s->oc, in, (size_t)s->ic, grad_w, (size_t)s->ic) != 0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->oc, s->ic, m, 1.0f, g, s->oc,
                        in, s->ic, 1.0f, grad_w, s->ic);
        if (grad_in && dl_cpu_level() >= DL_ISA_AVX512) {
            /* the forward's packed GEMM, adding into grad_in in its epilogue
             * (or storing: assign_in) */
            dl_epilogue ep = {.act = DL_ACT_NONE, .accumulate = !assign_in};
            dl_gemm_pack_t(s->ic, s->oc, w, scratch);
            dl_gemm_packed(m, s->ic, s->oc, g, (size_t)s->oc, scratch, grad_in, (size_t)s->ic, &ep);
        } else if (grad_in) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, s->ic, s->oc, 1.0f, g, s->oc,
                        w, s->ic, assign_in ? 0.0f : 1.0f, grad_in, s->ic);
        }
        return;
    }
    if (conv_is_depthwise(s)) {
        conv_backward_depthwise(s, in, w, g, grad_in, grad_w, scratch, assign_in);
        return;
    }
    if (grad_in && assign_in) /* col2im adds */
        memset(grad_in, 0, sizeof(float) * (size_t)s->n * ipix * (size_t)s->ic);

    /* im2col path, per image and per group (groups == 1 is one group). */
    const int groups = s->groups;
    const int icg = s->ic / groups;
    const int ocg = s->oc / groups;
    const int k = s->kh * s->kw * icg;
    float *col = scratch;
    for (int b = 0; b < s->n; b++) {
        const float *img = in + (size_t)b * ipix * (size_t)s->ic;
        const float *gimg = g + (size_t)b * opix * oc;
        float *giimg = grad_in ? grad_in + (size_t)b * ipix * (size_t)s->ic : NULL;
        for (int gr = 0; gr < groups; gr++) {
            const float *gg = gimg + (size_t)gr * (size_t)ocg; /* [opix][ocg], ld oc */
            const float *wg = w + (size_t)gr * (size_t)ocg * (size_t)k;
            if (grad_w) {
                /* dW_g [ocg][k] += G_g^T [ocg][opix] x col [opix][k] */
                im2col(s, img, gr * icg, icg, col);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ocg, k, (int)opix, 1.0f, gg,
                            s->oc, col, k, 1.0f, grad_w + (size_t)gr * (size_t)ocg * (size_t)k, k);
            }
            if (giimg) {
                /* dcol [opix][k] = G_g [opix][ocg] x W_g [ocg][k]; reuses col */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)opix, k, ocg, 1.0f, gg,
                            s->oc, wg, k, 0.0f, col, k);
                col2im_add(s, col, gr * icg, icg, giimg);
            }
        }
    }
}

/* ---------------------------------------------------------------- dense */

void dl_dense_backward(int n, int k, int m, const float *in, const float *w, const float *out,
                       const float *pre, dl_act act, float *grad_out, float *grad_in, float *grad_w,
                       float *grad_b)
{
    act_bias_backward(act, out, pre, grad_out, (size_t)n, (size_t)m, grad_b);
    /* dW [m][k] += G^T [m][n] x X [n][k];  dX [n][k] += G [n][m] x W [m][k] */
    if (grad_w)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, k, n, 1.0f, grad_out, m, in, k,
                    1.0f, grad_w, k);
    if (grad_in)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, m, 1.0f, grad_out, m, w, k,
                    1.0f, grad_in, k);
}

/* ---------------------------------------------------------------- add */

void dl_add_backward(size_t count, const float *out, const float *pre, dl_act act, float *grad_out,
                     float *grad_a, float *grad_b)
{
    dl_add_backward_ex(count, out, pre, act, grad_out, grad_a, grad_b, false, false);
}

typedef struct {
    size_t count;
    const float *out, *pre;
    dl_act act;
    float *g, *ga, *gb;
    bool assign_a, assign_b;
} add_bw_job;

DL_CLONES
static void add_bw_range(const add_bw_job *j, size_t i0, size_t i1)
{
    float *g = j->g + i0;
    const size_t n = i1 - i0;
    dl_act_backward(j->act, j->out ? j->out + i0 : NULL, j->pre ? j->pre + i0 : NULL, g, n);
    /* Separate loops keep this right when grad_a == grad_b (x + x). */
    if (j->ga) {
        float *a = j->ga + i0;
        if (j->assign_a) memcpy(a, g, sizeof(float) * n);
        else for (size_t i = 0; i < n; i++) a[i] += g[i];
    }
    if (j->gb) {
        float *b = j->gb + i0;
        if (j->assign_b) memcpy(b, g, sizeof(float) * n);
        else for (size_t i = 0; i < n; i++) b[i] += g[i];
    }
}

static void add_bw_part(void *arg, int part, int nparts)
{
    const add_bw_job *j = arg;
    size_t i0, i1;
    dl_part_range(j->count, 16, part, nparts, &i0, &i1);
    if (i0 < i1) add_bw_range(j, i0, i1);
}

void dl_add_backward_ex(size_t count, const float *out, const float *pre, dl_act act, float *grad_out,
                        float *grad_a, float *grad_b, bool assign_a, bool assign_b)
{
    add_bw_job j = {count, out, pre, act, grad_out, grad_a, grad_b, assign_a, assign_b};
    int parts = dl_parallel_parts(count, AB_MIN_FLOATS);
    if (parts > 1) dl_parallel(parts, add_bw_part, &j);
    else add_bw_range(&j, 0, count);
}

/* ---------------------------------------------------------------- mul */

void dl_mul_backward(int n, int hw, int c, int b_hw, const float *a, const float *b, const float *out,
                     const float *pre, dl_act act, float *grad_out, float *grad_a, float *grad_b)
{
    const size_t img = (size_t)hw * c;
    dl_act_backward(act, out, pre, grad_out, (size_t)n * img);
    for (int i = 0; i < n; i++) {
        const float *ai = a + i * img, *gi = grad_out + i * img;
        const float *bi = b + (size_t)i * b_hw * c;
        float *gai = grad_a ? grad_a + i * img : NULL;
        float *gbi = grad_b ? grad_b + (size_t)i * b_hw * c : NULL;
        /* separate loops keep this right when grad_a == grad_b (x * x) */
        if (b_hw == hw) {
            if (gai)
                for (size_t k = 0; k < img; k++)
                    gai[k] += gi[k] * bi[k];
            if (gbi)
                for (size_t k = 0; k < img; k++)
                    gbi[k] += gi[k] * ai[k];
        } else {
            if (gai)
                for (int p = 0; p < hw; p++)
                    for (int k = 0; k < c; k++)
                        gai[(size_t)p * c + k] += gi[(size_t)p * c + k] * bi[k];
            if (gbi)
                for (int k = 0; k < c; k++) {
                    double acc = 0;
                    for (int p = 0; p < hw; p++)
                        acc += (double)gi[(size_t)p * c + k] * ai[(size_t)p * c + k];
                    gbi[k] += (float)acc;
                }
        }
    }
}

/* ---------------------------------------------------------------- concat */

void dl_concat_backward(size_t rows, int ca, int cb, const float *grad_out, float *grad_a, float *grad_b)
{
    const size_t oc = (size_t)ca + (size_t)cb;
    for (size_t r = 0; r < rows; r++) {
        const float *g = grad_out + r * oc;
        /* separate loops keep this right when grad_a == grad_b (concat(x, x)) */
        if (grad_a)
            for (int k = 0; k < ca; k++)
                grad_a[r * (size_t)ca + k] += g[k];
        if (grad_b)
            for (int k = 0; k < cb; k++)
                grad_b[r * (size_t)cb + k] += g[ca + k];
    }
}

/* ---------------------------------------------------------------- pooling */

/* Clip the window starting at `start` of size k to [0, lim). */
static void clip_window(int start, int k, int lim, int *lo, int *hi)
{
    *lo = start < 0 ? 0 : start;
    *hi = start + k > lim ? lim : start + k;
}

void dl_avgpool_backward(const dl_pool_shape *s, const float *grad_out, float *grad_in)
{
    if (!grad_in)
        return;
    const size_t c = (size_t)s->c;
    for (int b = 0; b < s->n; b++) {
        float *gimg = grad_in + (size_t)b * (size_t)s->ih * (size_t)s->iw * c;
        for (int oy = 0; oy < s->oh; oy++) {
            int y0, y1;
            clip_window(oy * s->sh - s->pt, s->kh, s->ih, &y0, &y1);
            for (int ox = 0; ox < s->ow; ox++) {
                int x0, x1;
                clip_window(ox * s->sw - s->pl, s->kw, s->iw, &x0, &x1);
                int cnt = (y1 - y0) * (x1 - x0);
                if (y1 <= y0 || x1 <= x0)
                    continue;
                const float *go =
                    grad_out +
                    (((size_t)b * (size_t)s->oh + (size_t)oy) * (size_t)s->ow + (size_t)ox) * c;
                float inv = 1.0f / (float)cnt;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        float *gi = gimg + ((size_t)iy * (size_t)s->iw + (size_t)ix) * c;
                        for (size_t ch = 0; ch < c; ch++)
                            gi[ch] += go[ch] * inv;
                    }
            }
        }
    }
}

void dl_maxpool_backward(const dl_pool_shape *s, const float *in, const float *out,
                         const float *grad_out, float *grad_in)
{
    (void)out; /* the argmax is recomputed from `in` so ties go to the first max */
    if (!grad_in)
        return;
    const size_t c = (size_t)s->c;
    for (int b = 0; b < s->n; b++) {
        const float *img = in + (size_t)b * (size_t)s->ih * (size_t)s->iw * c;
        float *gimg = grad_in + (size_t)b * (size_t)s->ih * (size_t)s->iw * c;
        for (int oy = 0; oy < s->oh; oy++) {
            int y0, y1;
            clip_window(oy * s->sh - s->pt, s->kh, s->ih, &y0, &y1);
            for (int ox = 0; ox < s->ow; ox++) {
                int x0, x1;
                clip_window(ox * s->sw - s->pl, s->kw, s->iw, &x0, &x1);
                if (y1 <= y0 || x1 <= x0)
                    continue;
                const float *go =
                    grad_out +
                    (((size_t)b * (size_t)s->oh + (size_t)oy) * (size_t)s->ow + (size_t)ox) * c;
                for (size_t ch = 0; ch < c; ch++) {
                    size_t best = ((size_t)y0 * (size_t)s->iw + (size_t)x0) * c + ch;
                    float bv = img[best];
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) {
                            size_t idx = ((size_t)iy * (size_t)s->iw + (size_t)ix) * c + ch;
                            if (img[idx] > bv) {
                                bv = img[idx];
                                best = idx;
                            }
                        }
                    gimg[best] += go[ch];
                }
            }
        }
    }
}

void dl_gap_backward(int n, int hw, int c, const float *grad_out, float *grad_in)
{
    if (!grad_in || hw <= 0)
        return;
    float inv = 1.0f / (float)hw;
    for (int b = 0; b < n; b++) {
        const float *go = grad_out + (size_t)b * (size_t)c;
        for (int p = 0; p < hw; p++) {
            float *gi = grad_in + ((size_t)b * (size_t)hw + (size_t)p) * (size_t)c;
            for (int ch = 0; ch < c; ch++)
                gi[ch] += go[ch] * inv;
        }
    }
}

void dl_pad_backward(int n, int ih, int iw, int c, int pt, int pb, int pl, int pr,
                     const float *grad_out, float *grad_in)
{
    if (!grad_in)
        return;
    const size_t oh = (size_t)ih + (size_t)pt + (size_t)pb;
    const size_t ow = (size_t)iw + (size_t)pl + (size_t)pr;
    const size_t rowlen = (size_t)iw * (size_t)c;
    for (int b = 0; b < n; b++)
        for (int y = 0; y < ih; y++) {
            const float *src =
                grad_out + (((size_t)b * oh + (size_t)y + (size_t)pt) * ow + (size_t)pl) * (size_t)c;
            float *dst = grad_in + ((size_t)b * (size_t)ih + (size_t)y) * rowlen;
            for (size_t i = 0; i < rowlen; i++)
                dst[i] += src[i];
        }
}

/* ---------------------------------------------------------------- softmax */

void dl_softmax_backward(int n, int c, const float *out, const float *grad_out, float *grad_in)
{
    if (!grad_in)
        return;
    for (int i = 0; i < n; i++) {
        const float *y = out + (size_t)i * (size_t)c;
        const float *go = grad_out + (size_t)i * (size_t)c;
        float *gi = grad_in + (size_t)i * (size_t)c;
        double dot = 0.0;
        for (int j = 0; j < c; j++)
            dot += (double)go[j] * (double)y[j];
        for (int j = 0; j < c; j++)
            gi[j] += y[j] * (float)((double)go[j] - dot);
    }
}

float dl_softmax_xent(int n, int c, const float *logits, const int *labels, const float *class_w,
                      float smoothing, float *grad)
{
    if (grad && n > 0 && c > 0)
        memset(grad, 0, (size_t)n * (size_t)c * sizeof(float));
    if (n <= 0 || c <= 0)
        return 0.0f;

    /* Normaliser: sum of the weights of the samples' true classes. Rows with
     * an out-of-range label get weight 0 (no loss, no gradient). */
    double wsum = 0.0;
    for (int i = 0; i < n; i++) {
        int y = labels[i];
        if (y < 0 || y >= c)
            continue;
        wsum += class_w ? (double)class_w[y] : 1.0;
    }
    if (!(wsum > 0.0))
        return 0.0f;

    const double eps = (double)smoothing;
    const double off = eps / (double)c; /* target of every non-true class */
    double loss = 0.0;
    for (int i = 0; i < n; i++) {
        int y = labels[i];
        if (y < 0 || y >= c)
            continue;
        double wi = class_w ? (double)class_w[y] : 1.0;
        const float *l = logits + (size_t)i * (size_t)c;
        double mx = l[0];
        for (int j = 1; j < c; j++)
            if (l[j] > mx)
                mx = l[j];
        double se = 0.0;
        for (int j = 0; j < c; j++)
            se += exp((double)l[j] - mx);
        double lse = mx + log(se);
        /* CE = -sum_j t_j (l_j - lse) with t = (1-eps) onehot + eps/c. */
        double ce = 0.0;
        for (int j = 0; j < c; j++) {
            double t = off + (j == y ? 1.0 - eps : 0.0);
            ce -= t * ((double)l[j] - lse);
        }
        loss += wi * ce;
        if (grad) {
            /* dCE/dl_j = p_j - t_j (targets sum to 1) */
            double scale = wi / wsum;
            float *gr = grad + (size_t)i * (size_t)c;
            for (int j = 0; j < c; j++) {
                double p = exp((double)l[j] - lse);
                double t = off + (j == y ? 1.0 - eps : 0.0);
                gr[j] = (float)(scale * (p - t));
            }
        }
    }
    return (float)(loss / wsum);
}
