/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Forward kernels against plain reference loops on randomized shapes: every
 * convolution path (1x1 sgemm, im2col + sgemm, depthwise, grouped), with
 * explicit and TF-SAME padding, strides, batch > 1 and every activation;
 * pooling, dense, add, pad, softmax. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned seed = 12345;

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

static void test_conv(int trial)
{
    dl_conv_shape s;
    memset(&s, 0, sizeof s);
    int kind = trial % 4; /* 0 pointwise, 1 im2col, 2 depthwise, 3 grouped */
    s.n = 1 + (int)tu_rand(&seed, 0, 3);
    s.ih = 1 + (int)tu_rand(&seed, 0, 17);
    s.iw = 1 + (int)tu_rand(&seed, 0, 17);
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
    bool same = trial % 3 != 0 && kind != 0;
    int pb, pr;
    if (same) {
        dl_same_padding(s.ih, s.kh, s.sh, &s.oh, &s.pt, &pb);
        dl_same_padding(s.iw, s.kw, s.sw, &s.ow, &s.pl, &pr);
    } else {
        if (s.kh > s.ih) s.kh = s.ih;
        if (s.kw > s.iw) s.kw = s.iw;
        s.pt = s.pl = 0;
        s.oh = (s.ih - s.kh) / s.sh + 1;
        s.ow = (s.iw - s.kw) / s.sw + 1;
    }
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

int main(void)
{
    test_same_padding();
    for (int t = 0; t < 200; t++) test_conv(t);
    test_pool_dense_misc();
    return tu_exit();
}
