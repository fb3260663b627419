/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Forward kernels against plain reference loops on randomized shapes: every
 * convolution path (1x1 GEMM, im2col + GEMM, depthwise, grouped), with
 * explicit and TF-SAME padding, strides, batch > 1 and every activation,
 * with and without pre-packed weights and a fused residual add, at every
 * instruction-set level this CPU has (AVX-512, AVX2, portable); results
 * must not depend on the thread count; pooling, dense, add, pad, softmax.
 * The convolution backward (every path, fused activation and bias
 * gradients, accumulation into the gradients) against a plain reference at
 * every level too (tests/test_gradcheck.c checks it numerically). */
#include "testutil.h"
#include "dermlens_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t seed = 12345;

static float ref_act(dl_act a, float x)
{
    switch (a) {
    case DL_ACT_RELU: return x > 0 ? x : 0;
    case DL_ACT_RELU6: return x < 0 ? 0 : x > 6 ? 6 : x;
    case DL_ACT_HSWISH: { float r = x + 3; r = r < 0 ? 0 : r > 6 ? 6 : r; return x * r / 6; }
    case DL_ACT_SILU: return x / (1 + expf(-x));
    default: return x;
    }
}

static void ref_conv(const dl_conv_shape *s, const float *in, const float *w, const float *b, float *out)
{
    int icg = s->ic / s->groups, ocg = s->oc / s->groups;
    for (int n = 0; n < s->n; n++)
        for (int oy = 0; oy < s->oh; oy++)
            for (int ox = 0; ox < s->ow; ox++)
                for (int o = 0; o < s->oc; o++) {
                    int g = o / ocg;
                    double acc = b ? b[o] : 0;
                    for (int ky = 0; ky < s->kh; ky++)
                        for (int kx = 0; kx < s->kw; kx++) {
                            int iy = oy * s->sh - s->pt + ky, ix = ox * s->sw - s->pl + kx;
                            if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw) continue;
                            for (int i = 0; i < icg; i++)
                                acc += (double)in[(((size_t)n * s->ih + iy) * s->iw + ix) * s->ic + g * icg + i] *
                                       w[(((size_t)o * s->kh + ky) * s->kw + kx) * icg + i];
                        }
                    out[(((size_t)n * s->oh + oy) * s->ow + ox) * s->oc + o] = ref_act(s->act, (float)acc);
                }
}

static float *rnd(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = tu_rand(&seed, -1.f, 1.f);
    return p;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* The executor's entry: pre-packed weights (when this CPU packs) and the
 * conv -> add fusion. out must equal the plain forward's bit for bit (same
 * kernel; Winograd-packed 3x3: within the reference bound instead),
 * out2 = res_act(ref + res). */
static void check_packed_residual(const dl_conv_shape *s, const float *in, const float *w, const float *b,
                                  const float *out, const float *ref, float *scratch, int trial)
{
    size_t out_n = (size_t)s->n * s->oh * s->ow * s->oc;
    size_t pf = dl_conv2d_packed_floats(s);
    float *packed = pf ? rnd(pf) : NULL;
    if (packed) dl_conv2d_pack(s, w, packed);
    float *res = rnd(out_n), *o1 = rnd(out_n), *o2 = rnd(out_n);
    dl_act ra = (dl_act)(trial % 5);
    dl_conv2d_forward_ex(s, in, w, packed, b, o1, scratch, res, ra, o2);
    if (packed && dl_conv2d_packed_winograd(s)) /* Winograd: other roundings, same bound as the plain path */
        CHECK(maxdiff(o1, ref, out_n) < 1e-4, "trial %d: Winograd conv off the reference by %g", trial,
              maxdiff(o1, ref, out_n));
    else
        CHECK(memcmp(o1, out, sizeof(float) * out_n) == 0, "trial %d: packed/fused conv output differs from plain",
              trial);
    double d = 0;
    for (size_t i = 0; i < out_n; i++) d = fmax(d, fabs(o2[i] - ref_act(ra, ref[i] + res[i])));
    CHECK(d < 2e-4, "trial %d g%d k%dx%d: fused residual (%s) off by %g", trial, s->groups, s->kh, s->kw,
          dl_act_name(ra), d);
    free(packed); free(res); free(o1); free(o2);
}

/* The output size and padding: TF SAME, or VALID (kernel clipped to the
 * input). */
static void set_padding(dl_conv_shape *s, bool same)
{
    int pb, pr;
    if (same) {
        dl_same_padding(s->ih, s->kh, s->sh, &s->oh, &s->pt, &pb);
        dl_same_padding(s->iw, s->kw, s->sw, &s->ow, &s->pl, &pr);
    } else {
        if (s->kh > s->ih) s->kh = s->ih;
        if (s->kw > s->iw) s->kw = s->iw;
        s->pt = s->pl = 0;
        s->oh = (s->ih - s->kh) / s->sh + 1;
        s->ow = (s->iw - s->kw) / s->sw + 1;
    }
}

/* A random convolution of kind 0 pointwise, 1 im2col, 2 depthwise, 3
 * grouped (padding not set). */
static dl_conv_shape rand_conv(int kind, int max_hw)
{
    dl_conv_shape s;
    memset(&s, 0, sizeof s);
    s.n = 1 + (int)tu_rand(&seed, 0, 3);
    s.ih = 1 + (int)tu_rand(&seed, 0, max_hw);
    s.iw = 1 + (int)tu_rand(&seed, 0, max_hw);
    s.kh = kind == 0 ? 1 : 1 + (int)tu_rand(&seed, 0, 5);
    s.kw = kind == 0 ? 1 : 1 + (int)tu_rand(&seed, 0, 5);
    s.sh = kind == 0 ? 1 : 1 + (int)tu_rand(&seed, 0, 3);
    s.sw = kind == 0 ? 1 : 1 + (int)tu_rand(&seed, 0, 3);
    s.act = (dl_act)((int)tu_rand(&seed, 0, 5) % 5);
    if (kind == 2) {
        s.ic = s.oc = s.groups = 1 + (int)tu_rand(&seed, 0, 40);
        if (s.groups == 1) s.ic = s.oc = s.groups = 2;
    } else if (kind == 3) {
        s.groups = 2 + (int)tu_rand(&seed, 0, 3);
        s.ic = s.groups * (1 + (int)tu_rand(&seed, 0, 5));
        s.oc = s.groups * (1 + (int)tu_rand(&seed, 0, 5));
    } else {
        s.groups = 1;
        s.ic = 1 + (int)tu_rand(&seed, 0, 48);
        s.oc = 1 + (int)tu_rand(&seed, 0, 48);
    }
    return s;
}

static void test_conv(int trial)
{
    int kind = trial % 4;
    dl_conv_shape s = rand_conv(kind, 17);
    bool same = trial % 3 != 0 && kind != 0;
    set_padding(&s, same);
    size_t in_n = (size_t)s.n * s.ih * s.iw * s.ic, out_n = (size_t)s.n * s.oh * s.ow * s.oc;
    float *in = rnd(in_n), *w = rnd((size_t)s.oc * s.kh * s.kw * (s.ic / s.groups)), *b = rnd(s.oc);
    float *out = rnd(out_n), *ref = rnd(out_n);
    float *scratch = rnd(dl_conv2d_scratch_floats(&s) + 1);
    dl_conv2d_forward(&s, in, w, trial % 5 ? b : NULL, out, scratch);
    ref_conv(&s, in, w, trial % 5 ? b : NULL, ref);
    double d = maxdiff(out, ref, out_n);
    CHECK(d < 1e-4, "conv trial %d kind %d n%d %dx%dx%d k%dx%d s%dx%d g%d oc%d %s act %s: maxdiff %g", trial, kind,
          s.n, s.ih, s.iw, s.ic, s.kh, s.kw, s.sh, s.sw, s.groups, s.oc, same ? "SAME" : "VALID",
          dl_act_name(s.act), d);
    check_packed_residual(&s, in, w, trial % 5 ? b : NULL, out, ref, scratch, trial);
    free(in); free(w); free(b); free(out); free(ref); free(scratch);
}

static void test_same_padding(void)
{
    /* the TF rule from the model's provenance: stride-2 3x3 on even input pads 0 top, 1 bottom */
    int out, a, b;
    dl_same_padding(224, 3, 2, &out, &a, &b);
    CHECK(out == 112 && a == 0 && b == 1, "224/3/2 -> %d %d %d", out, a, b);
    dl_same_padding(225, 3, 2, &out, &a, &b);
    CHECK(out == 113 && a == 1 && b == 1, "225/3/2 -> %d %d %d", out, a, b);
    dl_same_padding(7, 7, 1, &out, &a, &b);
    CHECK(out == 7 && a == 3 && b == 3, "7/7/1 -> %d %d %d", out, a, b);
    dl_same_padding(7, 1, 1, &out, &a, &b);
    CHECK(out == 7 && a == 0 && b == 0, "1x1");
}

static void test_pool_dense_misc(void)
{
    for (int t = 0; t < 20; t++) {
        dl_pool_shape p = {.n = 2, .ih = 3 + t % 7, .iw = 2 + t % 5, .c = 1 + t % 9, .kh = 1 + t % 3, .kw = 1 + (t / 3) % 3,
                           .sh = 1 + t % 2, .sw = 1 + (t / 2) % 2};
        int pb, pr;
        dl_same_padding(p.ih, p.kh, p.sh, &p.oh, &p.pt, &pb);
        dl_same_padding(p.iw, p.kw, p.sw, &p.ow, &p.pl, &pr);
        size_t in_n = (size_t)p.n * p.ih * p.iw * p.c, out_n = (size_t)p.n * p.oh * p.ow * p.c;
        float *in = rnd(in_n), *avg = rnd(out_n), *mx = rnd(out_n);
        dl_avgpool_forward(&p, in, avg);
        dl_maxpool_forward(&p, in, mx);
        double da = 0, dm = 0;
        for (int n = 0; n < p.n; n++)
            for (int oy = 0; oy < p.oh; oy++)
                for (int ox = 0; ox < p.ow; ox++)
                    for (int c = 0; c < p.c; c++) {
                        double s = 0, m = -1e30;
                        int cnt = 0;
                        for (int ky = 0; ky < p.kh; ky++)
                            for (int kx = 0; kx < p.kw; kx++) {
                                int iy = oy * p.sh - p.pt + ky, ix = ox * p.sw - p.pl + kx;
                                if (iy < 0 || iy >= p.ih || ix < 0 || ix >= p.iw) continue;
                                float v = in[(((size_t)n * p.ih + iy) * p.iw + ix) * p.c + c];
                                s += v; cnt++; m = fmax(m, v);
                            }
                        size_t o = (((size_t)n * p.oh + oy) * p.ow + ox) * p.c + c;
                        da = fmax(da, fabs(avg[o] - s / cnt));
                        dm = fmax(dm, fabs(mx[o] - m));
                    }
        CHECK(da < 1e-5 && dm == 0, "pool trial %d: avg %g max %g", t, da, dm);
        free(in); free(avg); free(mx);
    }
    /* dense, every activation */
    for (int a = 0; a < 5; a++) {
        int n = 3, k = 37, m = 11;
        float *in = rnd(n * k), *w = rnd(m * k), *b = rnd(m), *out = rnd(n * m);
        dl_dense_forward(n, k, m, in, w, b, (dl_act)a, out);
        double d = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) {
                double s = b[j];
                for (int q = 0; q < k; q++) s += (double)in[i * k + q] * w[j * k + q];
                d = fmax(d, fabs(out[i * m + j] - ref_act((dl_act)a, (float)s)));
            }
        CHECK(d < 1e-5, "dense act %s: %g", dl_act_name((dl_act)a), d);
        free(in); free(w); free(b); free(out);
    }
    /* add + relu6, gap, pad, softmax */
    float *a = rnd(100), *b = rnd(100), *o = rnd(100);
    for (int i = 0; i < 100; i++) a[i] *= 8;
    dl_add_forward(100, a, b, DL_ACT_RELU6, o);
    double d = 0;
    for (int i = 0; i < 100; i++) d = fmax(d, fabs(o[i] - ref_act(DL_ACT_RELU6, a[i] + b[i])));
    CHECK(d == 0, "add %g", d);
    float g[2 * 5];
    dl_gap_forward(2, 10, 5, a, g);
    d = 0;
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 5; c++) {
            double s = 0;
            for (int p = 0; p < 10; p++) s += a[n * 50 + p * 5 + c];
            d = fmax(d, fabs(g[n * 5 + c] - s / 10));
        }
    CHECK(d < 1e-5, "gap %g", d);
    float padded[2 * 4 * 5 * 3];
    dl_pad_forward(2, 2, 2, 3, 1, 1, 2, 1, a, padded);
    CHECK(padded[0] == 0 && padded[((0 * 4 + 1) * 5 + 2) * 3] == a[0] && padded[((1 * 4 + 2) * 5 + 3) * 3 + 2] == a[12 + 11],
          "pad layout");
    float sm[10];
    dl_softmax_forward(2, 5, a, sm);
    double s0 = 0, s1 = 0;
    for (int i = 0; i < 5; i++) { s0 += sm[i]; s1 += sm[5 + i]; }
    CHECK(fabs(s0 - 1) < 1e-6 && fabs(s1 - 1) < 1e-6, "softmax sums %f %f", s0, s1);
    float big[3] = {1000, 999, -1000}, sb[3];
    dl_softmax_forward(1, 3, big, sb);
    CHECK(isfinite(sb[0]) && fabs(sb[0] - 0.7310586) < 1e-5, "softmax overflow %f", sb[0]);
    free(a); free(b); free(o);
}

/* Depthwise (the vectorised paths) on sizes that reach their interior
 * blocks, single interior columns, edge and channel-tail code: odd channel
 * counts, kernels 3x3, 5x5 (specialised), 7x7 and 3x5 (generic), strides
 * 1-3, SAME and VALID, batch 2, every activation the kernels apply. */
static void test_depthwise(void)
{
    static const int chans[] = {1, 7, 8, 15, 16, 17, 24, 33, 40};
    static const int kernels[][2] = {{3, 3}, {5, 5}, {7, 7}, {3, 5}};
    for (int t = 0; t < 4 * 54; t++) {
        const int kh = kernels[t / 54][0], kw = kernels[t / 54][1];
        dl_conv_shape s;
        memset(&s, 0, sizeof s);
        s.n = 1 + t % 2;
        s.ih = 1 + (t * 7) % 19;
        s.iw = 1 + (t * 5) % 47; /* 8-wide interior blocks need >= 16 interior columns */
        s.kh = kh;
        s.kw = kw;
        s.sh = s.sw = 1 + t % 2 + (t % 7 == 6);
        s.ic = s.oc = s.groups = chans[t % 9];
        if (s.groups == 1) s.ic = s.oc = s.groups = 2;
        s.act = (dl_act)(t % 5);
        int pb, pr;
        if (t % 6 != 5) {
            dl_same_padding(s.ih, kh, s.sh, &s.oh, &s.pt, &pb);
            dl_same_padding(s.iw, kw, s.sw, &s.ow, &s.pl, &pr);
        } else {
            if (s.ih < kh) s.ih = kh;
            if (s.iw < kw) s.iw = kw;
            s.oh = (s.ih - kh) / s.sh + 1;
            s.ow = (s.iw - kw) / s.sw + 1;
        }
        size_t in_n = (size_t)s.n * s.ih * s.iw * s.ic, out_n = (size_t)s.n * s.oh * s.ow * s.oc;
        float *in = rnd(in_n), *w = rnd((size_t)s.oc * kh * kw), *b = rnd(s.oc), *out = rnd(out_n), *ref = rnd(out_n);
        for (size_t i = 0; i < in_n; i++) in[i] *= 4; /* reach relu6's upper clip */
        float *scratch = rnd(dl_conv2d_scratch_floats(&s) + 1);
        dl_conv2d_forward(&s, in, w, t % 4 ? b : NULL, out, scratch);
        ref_conv(&s, in, w, t % 4 ? b : NULL, ref);
        double d = maxdiff(out, ref, out_n);
        CHECK(d < 1e-4, "dw%dx%d %d: n%d %dx%dx%d s%d pad %d,%d act %s: %g", kh, kw, t, s.n, s.ih, s.iw, s.ic, s.sh,
              s.pt, s.pl, dl_act_name(s.act), d);
        check_packed_residual(&s, in, w, t % 4 ? b : NULL, out, ref, scratch, t);
        free(in); free(w); free(b); free(out); free(ref); free(scratch);
    }
}

/* SiLU and sigmoid (vector exp, no libm) against double references over
 * [-100, 100], lengths that leave tails, special values; a pass long
 * enough to be threaded gives the same bits on 1 and 2 threads. */
static void test_act_exp(void)
{
    const size_t n = 200003;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *y2 = malloc(sizeof(float) * n);
    for (int k = 0; k < 2; k++) {
        const dl_act a = k ? DL_ACT_SIGMOID : DL_ACT_SILU;
        for (size_t i = 0; i < n; i++) x[i] = y[i] = -100.f + 200.f * (float)i / (float)(n - 1);
        dl_set_num_threads(1);
        dl_act_forward(a, y, n);
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            double s = 1.0 / (1.0 + exp(-(double)x[i])), r = k ? s : x[i] * s;
            /* relative (a few ulp), absolute below 1e-30: exp's argument
             * is clamped to [-88, 88], so silu(-100) is -6e-37, not -4e-42 */
            worst = fmax(worst, fabs(y[i] - r) / fmax(fabs(r), 1e-30));
        }
        CHECK(worst < 1e-6, "%s: worst relative error %g", dl_act_name(a), worst);
        memcpy(y2, x, sizeof(float) * n);
        dl_set_num_threads(2);
        dl_act_forward(a, y2, n);
        dl_set_num_threads(0);
        CHECK(memcmp(y, y2, sizeof(float) * n) == 0, "%s: 1 and 2 threads differ", dl_act_name(a));
        for (size_t len = 1; len <= 33; len++) { /* tails: the same values as in the long pass */
            memcpy(y2, x + 1000, sizeof(float) * len);
            dl_act_forward(a, y2, len);
            CHECK(memcmp(y2, y + 1000, sizeof(float) * len) == 0, "%s: length %zu differs", dl_act_name(a), len);
        }
        float sp[4] = {NAN, INFINITY, 0.f, -1000.f};
        dl_act_forward(a, sp, 4);
        CHECK(isnan(sp[0]) && sp[1] == (k ? 1.f : INFINITY) && sp[2] == (k ? 0.5f : 0.f) && fabsf(sp[3]) < 1e-30f,
              "%s: special values %g %g %g %g", dl_act_name(a), sp[0], sp[1], sp[2], sp[3]);
    }
    free(x); free(y); free(y2);
}

/* Shapes big enough to be split over threads: 1 and 2 threads must give
 * the same bits (training is bit-reproducible per thread count; here it is
 * even independent of it), and both must match the reference. */
static void test_threads_identical(void)
{
    dl_conv_shape shapes[6];
    memset(shapes, 0, sizeof shapes);
    /* 1x1, M = 2 x 40 x 37 rows, odd N */
    shapes[0] = (dl_conv_shape){.n = 2, .ih = 40, .iw = 37, .ic = 37, .oh = 40, .ow = 37, .oc = 53, .kh = 1, .kw = 1,
                                .sh = 1, .sw = 1, .groups = 1, .act = DL_ACT_RELU6};
    /* 1x1 with few rows and many columns: split by columns */
    shapes[1] = (dl_conv_shape){.n = 1, .ih = 7, .iw = 7, .ic = 160, .oh = 7, .ow = 7, .oc = 961, .kh = 1, .kw = 1,
                                .sh = 1, .sw = 1, .groups = 1, .act = DL_ACT_NONE};
    /* depthwise 3x3 stride 2, SAME */
    shapes[2] = (dl_conv_shape){.n = 2, .ih = 57, .iw = 58, .ic = 45, .oc = 45, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
                                .groups = 45, .act = DL_ACT_RELU6};
    /* first-layer style im2col conv 3x3 stride 2, 3 -> 32 */
    shapes[3] = (dl_conv_shape){.n = 1, .ih = 61, .iw = 60, .ic = 3, .oc = 32, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
                                .groups = 1, .act = DL_ACT_HSWISH};
    /* 3x3 convs whose weights and rows both pass L2/4 (resnet50's layer3
     * and layer4 at batch 1): L2-sized row blocks streaming the weights,
     * and 49 rows = row tiles 12 10 9 9 9 */
    shapes[4] = (dl_conv_shape){.n = 1, .ih = 14, .iw = 14, .ic = 256, .oh = 14, .ow = 14, .oc = 256, .kh = 3,
                                .kw = 3, .sh = 1, .sw = 1, .pt = 1, .pl = 1, .groups = 1, .act = DL_ACT_RELU};
    shapes[5] = (dl_conv_shape){.n = 1, .ih = 7, .iw = 7, .ic = 512, .oh = 7, .ow = 7, .oc = 500, .kh = 3,
                                .kw = 3, .sh = 1, .sw = 1, .pt = 1, .pl = 1, .groups = 1, .act = DL_ACT_NONE};
    for (int k = 2; k < 4; k++) {
        int pb, pr;
        dl_same_padding(shapes[k].ih, 3, 2, &shapes[k].oh, &shapes[k].pt, &pb);
        dl_same_padding(shapes[k].iw, 3, 2, &shapes[k].ow, &shapes[k].pl, &pr);
    }
    for (int k = 0; k < 6; k++) {
        const dl_conv_shape *s = &shapes[k];
        size_t in_n = (size_t)s->n * s->ih * s->iw * s->ic, out_n = (size_t)s->n * s->oh * s->ow * s->oc;
        float *in = rnd(in_n), *w = rnd((size_t)s->oc * s->kh * s->kw * (s->ic / s->groups)), *b = rnd(s->oc);
        float *o1 = rnd(out_n), *o2 = rnd(out_n), *ref = rnd(out_n);
        float *scratch = rnd(dl_conv2d_scratch_floats(s) + 1);
        dl_set_num_threads(1);
        dl_conv2d_forward(s, in, w, b, o1, scratch);
        dl_set_num_threads(2);
        dl_conv2d_forward(s, in, w, b, o2, scratch);
        CHECK(memcmp(o1, o2, sizeof(float) * out_n) == 0, "shape %d: 1 and 2 threads differ", k);
        ref_conv(s, in, w, b, ref);
        double d = maxdiff(o2, ref, out_n);
        CHECK(d < 1e-3, "shape %d: off the reference by %g", k, d);
        free(in); free(w); free(b); free(o1); free(o2); free(ref); free(scratch);
    }
    /* dense with packed weights (the classifier head) */
    {
        int n = 3, k = 300, m = 1001;
        float *in = rnd((size_t)n * k), *w = rnd((size_t)m * k), *b = rnd(m), *o = rnd((size_t)n * m);
        size_t pf = dl_dense_packed_floats(k, m);
        float *packed = pf ? rnd(pf) : NULL;
        if (packed) dl_dense_pack(k, m, w, packed);
        dl_dense_forward_ex(n, k, m, in, w, packed, b, DL_ACT_RELU, o);
        double d = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) {
                double acc = b[j];
                for (int q = 0; q < k; q++) acc += (double)in[i * k + q] * w[(size_t)j * k + q];
                d = fmax(d, fabs(o[(size_t)i * m + j] - ref_act(DL_ACT_RELU, (float)acc)));
            }
        CHECK(d < 1e-4, "packed dense: %g", d);
        free(in); free(w); free(b); free(o); free(packed);
    }
    dl_set_num_threads(0);
}

/* Reference backward of any convolution: g is dL/d(output after act), out
 * the forward output (relu / relu6 / none); accumulates like the kernels. */
static void ref_conv_backward(const dl_conv_shape *s, const float *in, const float *w, const float *out,
                              const float *g, double *gin, double *gw, double *gb)
{
    int icg = s->ic / s->groups, ocg = s->oc / s->groups;
    for (int n = 0; n < s->n; n++)
        for (int oy = 0; oy < s->oh; oy++)
            for (int ox = 0; ox < s->ow; ox++)
                for (int o = 0; o < s->oc; o++) {
                    size_t oi = (((size_t)n * s->oh + oy) * s->ow + ox) * s->oc + o;
                    double y = out[oi], d = g[oi];
                    if (s->act == DL_ACT_RELU) d = y > 0 ? d : 0;
                    if (s->act == DL_ACT_RELU6) d = y > 0 && y < 6 ? d : 0;
                    gb[o] += d;
                    int gr = o / ocg;
                    for (int ky = 0; ky < s->kh; ky++)
                        for (int kx = 0; kx < s->kw; kx++) {
                            int iy = oy * s->sh - s->pt + ky, ix = ox * s->sw - s->pl + kx;
                            if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw) continue;
                            for (int i = 0; i < icg; i++) {
                                size_t ii = (((size_t)n * s->ih + iy) * s->iw + ix) * s->ic + gr * icg + i;
                                size_t wi = (((size_t)o * s->kh + ky) * s->kw + kx) * icg + i;
                                gw[wi] += d * in[ii];
                                gin[ii] += d * w[wi];
                            }
                        }
                }
}

/* dl_conv2d_backward on random shapes of every path (1x1, im2col,
 * depthwise with kernels 1..5, strides 1..3, odd channel counts; grouped),
 * SAME and VALID, batch 1..3, relu / relu6 / none: each gradient is added
 * to what the buffer held; the AVX-512 depthwise path gives the same bits
 * on 1 and 2 threads. */
static void test_conv_backward(int trial)
{
    int kind = trial % 4;
    dl_conv_shape s = rand_conv(kind, 19);
    s.act = (dl_act)(s.act % 3); /* the reference knows none / relu / relu6 */
    if (kind == 2 && trial % 3 == 0) s.kh = s.kw = 3;
    if (trial >= 1000) { /* large maps: the depthwise backward runs in several L2 bands */
        kind = 2;
        s.n = 2;
        s.ih = 150 + trial % 7;
        s.iw = 160 - trial % 5;
        s.kh = s.kw = 3;
        s.sh = s.sw = 1 + trial % 2;
        s.ic = s.oc = s.groups = 37 + 16 * (trial % 3);
    }
    if (trial >= 2000) { /* large 1x1: the input gradient on the packed GEMM, split over threads */
        kind = 0;
        s.kh = s.kw = s.sh = s.sw = 1;
        s.groups = 1;
        s.ic = 37 + trial % 3;
        s.oc = 53 - trial % 2;
    }
    set_padding(&s, trial % 5 != 0 && kind != 0);
    size_t in_n = (size_t)s.n * s.ih * s.iw * s.ic, out_n = (size_t)s.n * s.oh * s.ow * s.oc;
    size_t w_n = (size_t)s.oc * s.kh * s.kw * (s.ic / s.groups);
    float *in = rnd(in_n), *w = rnd(w_n), *b = rnd(s.oc), *out = rnd(out_n), *g = rnd(out_n);
    for (size_t i = 0; i < in_n; i++) in[i] *= 4; /* reach relu6's upper clip */
    float *scratch = rnd(dl_conv2d_scratch_floats(&s) + dl_conv2d_backward_scratch_floats(&s) + 1);
    dl_conv2d_forward(&s, in, w, b, out, scratch);
    double *rgi = calloc(in_n, sizeof(double)), *rgw = calloc(w_n, sizeof(double)), *rgb = calloc(s.oc, sizeof(double));
    ref_conv_backward(&s, in, w, out, g, rgi, rgw, rgb);
    float *gi[2], *gw[2], *gb[2], *gcopy = rnd(out_n);
    for (int k = 0; k < 2; k++) {
        uint64_t s0 = 777; /* the same starting values both times */
        gi[k] = malloc(sizeof(float) * in_n); gw[k] = malloc(sizeof(float) * w_n); gb[k] = malloc(sizeof(float) * s.oc);
        for (size_t i = 0; i < in_n; i++) gi[k][i] = tu_rand(&s0, -1.f, 1.f);
        for (size_t i = 0; i < w_n; i++) gw[k][i] = tu_rand(&s0, -1.f, 1.f);
        for (int i = 0; i < s.oc; i++) gb[k][i] = tu_rand(&s0, -1.f, 1.f);
        memcpy(gcopy, g, sizeof(float) * out_n);
        dl_set_num_threads(1 + k);
        dl_conv2d_backward(&s, in, w, out, NULL, gcopy, gi[k], gw[k], gb[k], scratch);
    }
    dl_set_num_threads(0);
    uint64_t s0 = 777;
    double di = 0, dw = 0, db = 0, scale = 1;
    for (int i = 0; i < s.kh * s.kw * s.ic / s.groups; i++) scale += 1; /* sums grow with the fan-in */
    for (size_t i = 0; i < in_n; i++) di = fmax(di, fabs(gi[0][i] - (tu_rand(&s0, -1.f, 1.f) + rgi[i])));
    for (size_t i = 0; i < w_n; i++) dw = fmax(dw, fabs(gw[0][i] - (tu_rand(&s0, -1.f, 1.f) + rgw[i])));
    for (int i = 0; i < s.oc; i++) db = fmax(db, fabs(gb[0][i] - (tu_rand(&s0, -1.f, 1.f) + rgb[i])));
    double pix = (double)s.n * s.oh * s.ow;
    CHECK(di < 1e-5 * scale * 4 && dw < 1e-5 * pix * 4 && db < 1e-5 * pix,
          "backward trial %d kind %d n%d %dx%dx%d k%dx%d s%dx%d g%d oc%d act %s: grad_in %g grad_w %g grad_b %g",
          trial, kind, s.n, s.ih, s.iw, s.ic, s.kh, s.kw, s.sh, s.sw, s.groups, s.oc, dl_act_name(s.act), di, dw, db);
    /* the AVX-512 depthwise backward splits channels, and the 1x1 one runs
     * the packed GEMM and dl_gemm_at_b_acc (bias gradients in fixed row
     * blocks): the same bits for any thread count (elsewhere OpenBLAS or
     * per-thread partials: reproducible per thread count only) */
    CHECK((kind != 2 && kind != 0) || dl_cpu_level() < DL_ISA_AVX512 ||
              (memcmp(gi[0], gi[1], sizeof(float) * in_n) == 0 && memcmp(gw[0], gw[1], sizeof(float) * w_n) == 0 &&
               memcmp(gb[0], gb[1], sizeof(float) * s.oc) == 0),
          "backward trial %d kind %d: 1 and 2 threads differ", trial, kind);
    /* assign_in (the executor's first write of a gradient buffer): grad_in
     * is overwritten, its old values (NaN here) never read, on every path */
    float *ga = malloc(sizeof(float) * in_n);
    for (size_t i = 0; i < in_n; i++) ga[i] = NAN;
    memcpy(gcopy, g, sizeof(float) * out_n);
    dl_conv2d_backward_ex(&s, in, w, out, NULL, gcopy, ga, NULL, NULL, scratch, true);
    double da = 0;
    for (size_t i = 0; i < in_n; i++) da = fmax(da, isnan(ga[i]) ? INFINITY : fabs(ga[i] - rgi[i]));
    CHECK(da < 1e-5 * scale * 4, "backward trial %d kind %d k%dx%d s%dx%d: assign_in grad_in off by %g", trial, kind,
          s.kh, s.kw, s.sh, s.sw, da);
    free(ga);
    for (int k = 0; k < 2; k++) { free(gi[k]); free(gw[k]); free(gb[k]); }
    free(in); free(w); free(b); free(out); free(g); free(gcopy); free(scratch); free(rgi); free(rgw); free(rgb);
}

/* Winograd (3x3 stride 1, packed weights, AVX-512: F(2x2,3x3), and
 * F(4x4,3x3) on maps of 28x28 and more) against the double-precision
 * reference on odd shapes: H, W odd and even (a last tile partly outside),
 * padding 0, 1 and bottom/right only, channels not multiples of 16, batch
 * > 1, every fused activation and residual, one tile block and several, 1
 * and 2 threads (bit-identical). Tolerance: the float32 GEMM's rounding
 * grows with the sum S of the |w x| terms of an output, not with the output
 * (which cancels); Winograd adds its transforms' roundings (F(2x2): sums of
 * up to 4 inputs and 9 weights, at most 4x and 2.25x the raw magnitudes;
 * F(4x4): coefficients up to 5 on the input, 8 on the output, 1/6 and 1/24
 * on the weights). So |out - ref| <= 2^-16 S (1.5e-5 S): measured worst
 * ~1e-7 S for F(2x2), ~2e-6 S for F(4x4) (printed), the im2col path's
 * ~3e-7 S; a wrong tap or transform coefficient is off by ~|w x| ~ S / 9ic,
 * >= 1e-4 S here (an F(2x2) weight coefficient off by 0.1% already fails). */
static void test_winograd(void)
{
    const int cases[][8] = {
        /* n, ih, iw, ic, oc, pad (2: bottom/right only), act, res_act */
        {2, 15, 16, 67, 70, 1, DL_ACT_RELU, DL_ACT_RELU},
        {2, 7, 8, 17, 40, 0, DL_ACT_RELU, DL_ACT_NONE},  /* 5x6 out: the smallest map taken */
        {2, 12, 11, 33, 16, 2, DL_ACT_NONE, DL_ACT_RELU6}, /* ONNX-style asymmetric pads */
        {3, 23, 25, 64, 83, 1, DL_ACT_NONE, DL_ACT_NONE},
        {1, 17, 13, 96, 65, 0, DL_ACT_RELU6, DL_ACT_NONE},
        {2, 10, 11, 129, 64, 0, DL_ACT_HSWISH, DL_ACT_RELU},
        {1, 9, 20, 80, 100, 1, DL_ACT_SILU, DL_ACT_SILU},
        /* 28x28 outputs and more: F(4x4,3x3) */
        {1, 56, 56, 64, 64, 1, DL_ACT_RELU, DL_ACT_RELU}, /* resnet50 layer1: several blocks */
        {2, 29, 31, 35, 49, 1, DL_ACT_SILU, DL_ACT_RELU},
        {1, 30, 28, 20, 24, 2, DL_ACT_HSWISH, DL_ACT_NONE},
        {3, 30, 30, 64, 72, 0, DL_ACT_RELU6, DL_ACT_RELU}, /* 28x28: the smallest F(4x4) map; blocks */
    };
    double worst = 0, worst_im2col = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int *k = cases[c];
        dl_conv_shape s = {.n = k[0], .ih = k[1], .iw = k[2], .ic = k[3], .oc = k[4], .kh = 3, .kw = 3, .sh = 1,
                           .sw = 1, .pt = k[5], .pl = k[5], .groups = 1, .act = (dl_act)k[6]};
        s.oh = k[5] == 2 ? s.ih - 1 : s.ih + 2 * k[5] - 2;
        s.ow = k[5] == 2 ? s.iw - 1 : s.iw + 2 * k[5] - 2;
        if (k[5] == 2) s.pt = s.pl = 0;
        const dl_act ra = (dl_act)k[7];
        bool wino = dl_conv2d_packed_winograd(&s) != 0;
        CHECK(wino == (dl_cpu_level() >= DL_ISA_AVX512), "case %zu: Winograd %d at level %d", c, wino,
              dl_cpu_level());
        if (!wino) continue;
        size_t in_n = (size_t)s.n * s.ih * s.iw * s.ic, out_n = (size_t)s.n * s.oh * s.ow * s.oc;
        float *in = rnd(in_n), *w = rnd((size_t)s.oc * 9 * s.ic), *b = rnd(s.oc), *res = rnd(out_n);
        float *o1 = rnd(out_n), *o2 = rnd(out_n), *r1 = rnd(out_n), *r2 = rnd(out_n), *plain = rnd(out_n);
        float *packed = rnd(dl_conv2d_packed_floats(&s)), *scratch = rnd(dl_conv2d_scratch_floats(&s));
        dl_conv2d_pack(&s, w, packed);
        dl_set_num_threads(1);
        dl_conv2d_forward_ex(&s, in, w, packed, b, o1, scratch, res, ra, r1);
        dl_set_num_threads(2);
        dl_conv2d_forward_ex(&s, in, w, packed, b, o2, scratch, res, ra, r2);
        CHECK(memcmp(o1, o2, sizeof(float) * out_n) == 0 && memcmp(r1, r2, sizeof(float) * out_n) == 0,
              "Winograd case %zu: 1 and 2 threads differ", c);
        dl_conv2d_forward(&s, in, w, b, plain, scratch); /* no packed weights: im2col */
        double bad = 0, bad_res = 0;
        for (int n = 0; n < s.n; n++)
            for (int oy = 0; oy < s.oh; oy++)
                for (int ox = 0; ox < s.ow; ox++)
                    for (int o = 0; o < s.oc; o++) {
                        double acc = b[o], sum = fabs(b[o]);
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = oy - s.pt + ky, ix = ox - s.pl + kx;
                                if (iy < 0 || iy >= s.ih || ix < 0 || ix >= s.iw) continue;
                                const float *x = in + (((size_t)n * s.ih + iy) * s.iw + ix) * s.ic;
                                const float *wk = w + (((size_t)o * 3 + ky) * 3 + kx) * s.ic;
                                for (int i = 0; i < s.ic; i++) {
                                    acc += (double)x[i] * wk[i];
                                    sum += fabs((double)x[i] * wk[i]);
                                }
                            }
                        size_t at = (((size_t)n * s.oh + oy) * s.ow + ox) * s.oc + o;
                        /* activations' slopes are at most 1.1: the bound holds after them */
                        double e = fabs(o1[at] - ref_act(s.act, (float)acc)) / sum;
                        worst = fmax(worst, e);
                        worst_im2col = fmax(worst_im2col, fabs(plain[at] - ref_act(s.act, (float)acc)) / sum);
                        if (e > 1.1 * 0x1p-16) bad = fmax(bad, e);
                        float want = ref_act(ra, o1[at] + res[at]);
                        bad_res = fmax(bad_res, fabs(r1[at] - want) / (1 + fabs(want)));
                    }
        CHECK(bad == 0, "Winograd case %zu (n%d %dx%d ic%d oc%d pad%d %s): off the reference by %g S", c, s.n,
              s.ih, s.iw, s.ic, s.oc, s.pt, dl_act_name(s.act), bad);
        /* the residual is added to the stored output: exact for none/relu,
         * silu/hswish to a few ulp (vector vs scalar) */
        CHECK(bad_res < 1e-6, "Winograd case %zu: fused residual (%s) off by %g", c, dl_act_name(ra), bad_res);
        free(in); free(w); free(b); free(res); free(o1); free(o2); free(r1); free(r2); free(plain);
        free(packed); free(scratch);
    }
    if (worst > 0) printf("winograd: worst |out - ref| = %.3g S (im2col %.3g S)\n", worst, worst_im2col);
    dl_set_num_threads(0);
}

/* 1x1 -> depthwise in bands (the executor's path for large maps) must
 * equal the two convolutions run one after the other, bit for bit, also
 * with VALID padding where the last pw row is read by no window. */
static void test_pw_dw_banded(void)
{
    for (int t = 0; t < 4; t++) {
        int ih = t < 2 ? 40 : 42, sd = 1 + t % 2;
        dl_conv_shape pw = {.n = 2, .ih = ih, .iw = 37, .ic = 13, .oh = ih, .ow = 37, .oc = 201, .kh = 1, .kw = 1,
                            .sh = 1, .sw = 1, .groups = 1, .act = DL_ACT_RELU6};
        dl_conv_shape dw = {.n = 2, .ih = ih, .iw = 37, .ic = 201, .oc = 201, .kh = 3, .kw = 3, .sh = sd, .sw = sd,
                            .groups = 201, .act = (dl_act)(t % 3)};
        int pb;
        if (t < 2) {
            dl_same_padding(ih, 3, sd, &dw.oh, &dw.pt, &pb);
            dl_same_padding(37, 3, sd, &dw.ow, &dw.pl, &pb);
        } else {
            dw.oh = (ih - 3) / sd + 1;
            dw.ow = (37 - 3) / sd + 1;
        }
        size_t in_n = (size_t)2 * ih * 37 * 13, mid_n = (size_t)2 * ih * 37 * 201, out_n = (size_t)2 * dw.oh * dw.ow * 201;
        float *in = rnd(in_n), *w1 = rnd((size_t)201 * 13), *b1 = rnd(201), *w2 = rnd((size_t)201 * 9), *b2 = rnd(201);
        float *m1 = rnd(mid_n), *m2 = rnd(mid_n), *o1 = rnd(out_n), *o2 = rnd(out_n);
        float *p1 = rnd(dl_conv2d_packed_floats(&pw) + 1), *p2 = rnd(dl_conv2d_packed_floats(&dw) + 1);
        float *scratch = rnd(dl_conv2d_scratch_floats(&pw) + dl_conv2d_scratch_floats(&dw) + 1);
        dl_conv2d_pack(&pw, w1, p1);
        dl_conv2d_pack(&dw, w2, p2);
        bool packs = dl_conv2d_packed_floats(&pw) > 0;
        int rc = dl_conv_pw_dw_forward(&pw, in, packs ? p1 : NULL, b1, m1, &dw, p2, b2, o1);
        CHECK(rc == (packs ? 0 : -1), "banded pw->dw returned %d (packed GEMM %d)", rc, packs);
        if (rc == 0) {
            dl_conv2d_forward_ex(&pw, in, w1, p1, b1, m2, scratch, NULL, DL_ACT_NONE, NULL);
            dl_conv2d_forward_ex(&dw, m2, w2, p2, b2, o2, scratch, NULL, DL_ACT_NONE, NULL);
            CHECK(memcmp(m1, m2, sizeof(float) * mid_n) == 0, "banded %d: 1x1 output differs", t);
            CHECK(memcmp(o1, o2, sizeof(float) * out_n) == 0, "banded %d: depthwise output differs", t);
        }
        free(in); free(w1); free(b1); free(w2); free(b2); free(m1); free(m2); free(o1); free(o2);
        free(p1); free(p2); free(scratch);
    }
}

/* dl_conv2d_rows on convolutions with few input channels (a network's first
 * layer), which read their input pixels in place (the direct path) on
 * AVX-512, against the whole-image im2col + GEMM path (same bits) and the
 * reference: kernels 3, 5 and 7, strides 1 and 2, TF-SAME padding (none at
 * the left) and explicit padding on every side (edge columns on both
 * sides), 32 and 64 output channels (one and two panel pairs) and 40 (not
 * direct), with and without a fused residual, computed band by band
 * through row windows as the banded executor does. */
static void test_conv_rows_direct(void)
{
    static const int ks[] = {3, 5, 7}, ics[] = {1, 3, 4, 16}, ocs[] = {32, 64, 40};
    for (int t = 0; t < 36; t++) {
        const int k = ks[t % 3], st = 1 + (t / 3) % 2, pad_kind = (t / 6) % 2;
        dl_conv_shape s;
        memset(&s, 0, sizeof s);
        s.n = 1;
        s.ih = 23 + t % 5;
        s.iw = 37 + (t * 7) % 31; /* > 12 interior columns per row, and leftovers */
        s.ic = ics[t % 4];
        s.oc = ocs[(t / 12) % 3];
        s.kh = s.kw = k;
        s.sh = s.sw = st;
        s.groups = 1;
        s.act = (dl_act)(t % 3);
        int pb, pr;
        if (pad_kind == 0) {
            dl_same_padding(s.ih, k, st, &s.oh, &s.pt, &pb);
            dl_same_padding(s.iw, k, st, &s.ow, &s.pl, &pr);
        } else {
            s.pt = s.pl = k / 2; /* PyTorch style: as much at the top and left */
            s.oh = (s.ih + 2 * s.pt - k) / st + 1;
            s.ow = (s.iw + 2 * s.pl - k) / st + 1;
        }
        const bool res = t % 2;
        size_t in_n = (size_t)s.ih * s.iw * s.ic, out_n = (size_t)s.oh * s.ow * s.oc;
        float *in = rnd(in_n), *w = rnd((size_t)s.oc * k * k * s.ic), *b = rnd(s.oc);
        for (size_t i = 0; i < in_n; i++) in[i] *= 3; /* reach relu6's upper clip */
        float *r = rnd(out_n), *o1 = rnd(out_n), *o2 = rnd(out_n), *c1 = rnd(out_n), *c2 = rnd(out_n), *ref = rnd(out_n);
        float *packed = rnd(dl_conv2d_packed_floats(&s) + 1);
        float *scratch = rnd(dl_conv2d_scratch_floats(&s) + dl_conv2d_rows_scratch_floats(&s, s.oh) + 1);
        dl_conv2d_pack(&s, w, packed);
        const bool packs = dl_conv2d_packed_floats(&s) > 0;
        dl_conv2d_forward_ex(&s, in, w, packs ? packed : NULL, b, o1, scratch, res ? r : NULL, DL_ACT_RELU6, c1);
        ref_conv(&s, in, w, b, ref);
        double d = maxdiff(o1, ref, out_n);
        CHECK(d < 1e-4, "direct %d: im2col path vs reference %g", t, d);
        if (packs && dl_conv2d_rows_ok(&s)) {
            /* bands of 4 output rows; the input window holds just the rows
             * they read, so the padding moves with in_lo */
            for (int y0 = 0; y0 < s.oh; y0 += 4) {
                int y1 = y0 + 4 < s.oh ? y0 + 4 : s.oh;
                int lo = y0 * st - s.pt, hi = (y1 - 1) * st - s.pt + k;
                if (lo < 0) lo = 0;
                if (hi > s.ih) hi = s.ih;
                dl_rows_io io = {.in = in + (size_t)lo * s.iw * s.ic, .in_lo = lo, .out = o2, .out_lo = 0};
                if (res) {
                    io.res = r;
                    io.out2 = c2;
                }
                dl_conv2d_rows(&s, &io, packed, b, y0, y1, DL_ACT_RELU6, scratch);
            }
            CHECK(memcmp(o1, o2, sizeof(float) * out_n) == 0, "direct %d (k%d s%d ic%d oc%d pad %d,%d): rows differ from im2col",
                  t, k, st, s.ic, s.oc, s.pt, s.pl);
            if (res) CHECK(memcmp(c1, c2, sizeof(float) * out_n) == 0, "direct %d: residual output differs", t);
        }
        free(in); free(w); free(b); free(r); free(o1); free(o2); free(c1); free(c2); free(ref); free(packed);
        free(scratch);
    }
}

/* dl_gemm_packed on row counts that are multiples of 7 but not of 12 (the
 * 7-row, 48-column tiles: a 7x7 map at batch 1), with every epilogue the
 * asm applies and column counts that leave one or two panels to the other
 * tiles: against a double reference, and bit for bit against the same
 * product computed one row at a time (1-row tiles: the same FMA chains). */
static void test_gemm_7rows(void)
{
    if (dl_cpu_level() < DL_ISA_AVX512) return;
    static const int ms[] = {7, 49, 98, 35, 196, 784}, ns[] = {48, 160, 96, 1280, 64}, ks[] = {5, 160, 33};
    for (int t = 0; t < 30; t++) {
        const int m = ms[t % 6], n = ns[t % 5], k = ks[t % 3];
        const bool res = t % 2;
        const dl_act act = (dl_act)(t % 3);
        float *a = rnd((size_t)m * k), *w = rnd((size_t)n * k), *bias = rnd(n), *r = rnd((size_t)m * n);
        float *c1 = rnd((size_t)m * n), *c2 = rnd((size_t)m * n), *d1 = rnd((size_t)m * n), *d2 = rnd((size_t)m * n);
        float *packed = rnd(dl_gemm_packed_floats(n, k) + 1);
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] *= 3;
        dl_gemm_pack(n, k, w, packed);
        dl_epilogue ep = {.bias = t % 4 == 3 ? NULL : bias, .act = act, .res = res ? r : NULL, .ld_res = (size_t)n,
                          .res_act = DL_ACT_RELU6, .c2 = d1, .ld_c2 = (size_t)n};
        dl_gemm_packed(m, n, k, a, (size_t)k, packed, c1, (size_t)n, &ep);
        for (int i = 0; i < m; i++) {
            dl_epilogue e1 = ep;
            e1.res = res ? r + (size_t)i * n : NULL;
            e1.c2 = d2 + (size_t)i * n;
            dl_gemm_packed(1, n, k, a + (size_t)i * k, (size_t)k, packed, c2 + (size_t)i * n, (size_t)n, &e1);
        }
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double acc = ep.bias ? bias[j] : 0;
                for (int q = 0; q < k; q++) acc += (double)a[(size_t)i * k + q] * w[(size_t)j * k + q];
                double d = fabs(ref_act(act, (float)acc) - c1[(size_t)i * n + j]);
                if (d > worst) worst = d;
            }
        CHECK(worst < 1e-4 * (1 + k / 32.0), "gemm7 %d (m%d n%d k%d): |c - ref| %g", t, m, n, k, worst);
        CHECK(memcmp(c1, c2, sizeof(float) * m * n) == 0, "gemm7 %d (m%d n%d k%d): differs from 1-row tiles", t, m, n, k);
        if (res) CHECK(memcmp(d1, d2, sizeof(float) * m * n) == 0, "gemm7 %d: residual output differs", t);
        /* 2 threads: rows split in sevens or columns in single panels */
        int was = dl_get_num_threads();
        dl_set_num_threads(2);
        ep.c2 = d2;
        dl_gemm_packed(m, n, k, a, (size_t)k, packed, c2, (size_t)n, &ep);
        dl_set_num_threads(was);
        CHECK(memcmp(c1, c2, sizeof(float) * m * n) == 0, "gemm7 %d (m%d n%d k%d): 2 threads differ", t, m, n, k);
        if (res) CHECK(memcmp(d1, d2, sizeof(float) * m * n) == 0, "gemm7 %d: 2 threads' residual output differs", t);
        free(a); free(w); free(bias); free(r); free(c1); free(c2); free(d1); free(d2); free(packed);
    }
}

/* dl_gemm_at_b_acc (a 1x1 convolution's weight gradient on AVX-512) against
 * a double reference: ragged tiles (m not a multiple of 12, n not of 16 or
 * 32), k over several L2 blocks, C accumulated from its starting values,
 * a lda/ldb wider than the matrices; 1 and 2 threads give the same bits. */
static void test_gemm_at_b(void)
{
    static const int shapes[][3] = {{1, 1, 1}, {12, 32, 7}, {13, 17, 37}, {24, 96, 500}, {5, 40, 3},
                                    {37, 53, 3001}, {96, 16, 2000}, {200, 210, 2500}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int m = shapes[t][0], n = shapes[t][1], k = shapes[t][2];
        size_t lda = (size_t)m + (t % 2) * 3, ldb = (size_t)n + (t % 3);
        float *a = rnd((size_t)k * lda), *b = rnd((size_t)k * ldb), *c0 = rnd((size_t)m * n);
        float *c[2];
        for (int th = 0; th < 2; th++) {
            c[th] = malloc(sizeof(float) * m * n);
            memcpy(c[th], c0, sizeof(float) * m * n);
            dl_set_num_threads(1 + th);
            int rc = dl_gemm_at_b_acc(m, n, k, a, lda, b, ldb, c[th], (size_t)n);
            if (rc != 0) { /* no AVX-512: BLAS serves the caller */
                CHECK(dl_cpu_level() < DL_ISA_AVX512, "dl_gemm_at_b_acc refused on AVX-512");
                free(c[th]);
                c[th] = NULL;
                break;
            }
        }
        dl_set_num_threads(0);
        if (c[0] && c[1]) {
            double worst = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double ref = c0[(size_t)i * n + j], mag = fabs(ref);
                    for (int q = 0; q < k; q++) {
                        double p = (double)a[(size_t)q * lda + i] * b[(size_t)q * ldb + j];
                        ref += p;
                        mag += fabs(p);
                    }
                    worst = fmax(worst, fabs(c[0][(size_t)i * n + j] - ref) / mag);
                }
            CHECK(worst < 1e-5, "gemm_at_b %dx%dx%d: worst error %g of the |terms| sum", m, n, k, worst);
            CHECK(memcmp(c[0], c[1], sizeof(float) * m * n) == 0, "gemm_at_b %dx%dx%d: 1 and 2 threads differ", m,
                  n, k);
        }
        free(c[0]);
        if (c[0]) free(c[1]);
        free(a); free(b); free(c0);
    }
}

/* dl_add_backward_ex: stores where asked (NaN-filled targets never read),
 * adds elsewhere, the same values as adding into zeros; x + x (one buffer
 * for both) stores then adds; large counts run on the threads. */
static void test_add_backward_assign(void)
{
    static const size_t counts[] = {37, 200003};
    for (size_t t = 0; t < 2; t++) {
        size_t n = counts[t];
        float *y = rnd(n), *g0 = rnd(n), *g = malloc(sizeof(float) * n);
        float *ra = calloc(n, sizeof(float)), *rb = calloc(n, sizeof(float));
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        memcpy(g, g0, sizeof(float) * n);
        dl_add_backward(n, y, NULL, DL_ACT_RELU, g, ra, rb);
        for (size_t i = 0; i < n; i++) a[i] = NAN, b[i] = rb[i] * 0.5f;
        memcpy(g, g0, sizeof(float) * n);
        dl_add_backward_ex(n, y, NULL, DL_ACT_RELU, g, a, b, true, false);
        bool same = true;
        for (size_t i = 0; i < n; i++) same = same && a[i] == ra[i] && b[i] == rb[i] * 1.5f;
        CHECK(same, "add backward n=%zu: assign_a differs from adding into zeros", n);
        for (size_t i = 0; i < n; i++) a[i] = NAN;
        memcpy(g, g0, sizeof(float) * n);
        dl_add_backward_ex(n, y, NULL, DL_ACT_RELU, g, a, a, true, false); /* x + x */
        same = true;
        for (size_t i = 0; i < n; i++) same = same && a[i] == ra[i] + ra[i];
        CHECK(same, "add backward n=%zu: x + x with assign_a is not twice the gradient", n);
        free(y); free(g0); free(g); free(ra); free(rb); free(a); free(b);
    }
}

int main(void)
{
    static const char *const isa[] = {"portable", "AVX2", "AVX-512"};
    test_same_padding();
    /* every kernel level this CPU can run, best first */
    for (int lvl = dl_cpu_level(); lvl >= DL_ISA_PORTABLE; lvl--) {
        dl_cpu_level_force(lvl);
        CHECK(dl_cpu_level() == lvl, "cannot force level %d", lvl);
        printf("kernels: %s\n", isa[lvl]);
        for (int t = 0; t < 200; t++) test_conv(t);
        test_depthwise();
        test_act_exp();
        test_threads_identical();
        test_pw_dw_banded();
        test_conv_rows_direct();
        test_gemm_7rows();
        test_winograd();
        test_gemm_at_b();
        for (int t = 0; t < 120; t++) test_conv_backward(t);
        for (int t = 1000; t < 1004; t++) test_conv_backward(t);
        for (int t = 2000; t < 2002; t++) test_conv_backward(t);
    }
    dl_cpu_level_force(-1);
    test_pool_dense_misc();
    test_add_backward_assign();
    return tu_exit();
}
