/* Gradient check of every backward kernel in engine/src/runtime/ops.h.
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * For each case: L = sum(out * R) with a fixed random R. Analytic gradients
 * of inputs / weights / biases (float, from the engine's backward kernels) are
 * compared with central finite differences computed two ways:
 *   ref: a naive double-precision forward written here, step 1e-6;
 *   eng: the engine's own float forward, step 4e-3 (loss summed in double).
 * Error per element: |a - n| / max(1e-2, |a| + |n|); bounds below. The
 * engine's forward is also compared with the naive reference forward, the
 * in-place pre-activation gradient with R * act'(pre), and each gradient
 * computed alone (others NULL) with the full call. Inputs are redrawn until
 * no pre-activation lies near a ReLU/ReLU6/hard-swish kink, and max-pool
 * inputs are distinct, so finite differences never cross a kink.
 * Fixed seed: deterministic.
 */
#include "dermlens_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_STEP 1e-6
#define ENG_STEP 4e-3 /* float forward rounding (~5e-7 * |out|) stays << step */
#define REF_BOUND 2e-4  /* double FD vs float analytic (worst seen ~3e-5) */
#define ENG_BOUND 2e-2  /* float FD vs float analytic (stated float bound) */
#define FWD_BOUND 1e-4  /* engine forward vs double reference, rel. to max(1,|ref|) */
#define KINK_MARGIN 1e-2 /* > ENG_STEP * max |coefficient| (all |x|,|w| <= 1) */
#define MAX_FD_PER_PARAM 240
#define MAXP 3

static int g_failures;

/* ---------------------------------------------------------------- rng */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    return dl_rng_next(&g_rng);
}

static double urand(double lo, double hi)
{
    return lo + (hi - lo) * dl_rng_uniform(&g_rng);
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* ---------------------------------------------------------------- reference activations */

static double ref_act(dl_act a, double x)
{
    switch (a) {
    case DL_ACT_RELU:
        return x > 0 ? x : 0;
    case DL_ACT_RELU6:
        return x < 0 ? 0 : (x > 6 ? 6 : x);
    case DL_ACT_HSWISH: {
        double r = x + 3;
        r = r < 0 ? 0 : (r > 6 ? 6 : r);
        return x * r / 6.0;
    }
    case DL_ACT_SILU:
        return x / (1.0 + exp(-x));
    case DL_ACT_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    case DL_ACT_HSIGMOID: {
        double r = x + 3;
        return (r < 0 ? 0 : (r > 6 ? 6 : r)) / 6.0;
    }
    default:
        return x;
    }
}

static double ref_act_deriv(dl_act a, double x)
{
    switch (a) {
    case DL_ACT_RELU:
        return x > 0;
    case DL_ACT_RELU6:
        return x > 0 && x < 6;
    case DL_ACT_HSWISH:
        return x <= -3 ? 0 : (x >= 3 ? 1 : (2 * x + 3) / 6.0);
    case DL_ACT_SILU: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    case DL_ACT_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 - s);
    }
    case DL_ACT_HSIGMOID:
        return x > -3 && x < 3 ? 1 / 6.0 : 0;
    default:
        return 1;
    }
}

/* Distance from x to the nearest point where act' is discontinuous. */
static double kink_distance(dl_act a, double x)
{
    switch (a) {
    case DL_ACT_RELU:
        return fabs(x);
    case DL_ACT_RELU6:
        return fmin(fabs(x), fabs(x - 6));
    case DL_ACT_HSWISH:
    case DL_ACT_HSIGMOID:
        return fmin(fabs(x + 3), fabs(x - 3));
    default:
        return INFINITY;
    }
}

/* ---------------------------------------------------------------- generic case */

typedef struct gc_case gc_case;
struct gc_case {
    char name[96];
    const char *kind; /* op family for the summary */
    int np;
    const char *pname[MAXP];
    size_t psz[MAXP];
    double *pd[MAXP]; /* master values */
    float *pf[MAXP];  /* float copies fed to the engine */
    size_t nout;
    dl_act act;
    void *shape;
    /* pre-activation output in double from pd */
    void (*ref)(gc_case *c, double *pre);
    /* engine forward (with activation) from pf */
    void (*fwd)(gc_case *c, float *out);
    /* engine backward from pf; grads[k] may be NULL */
    void (*bwd)(gc_case *c, const float *out, const float *pre, float *gout, float **grads);
    /* draw parameters into pd */
    void (*init)(gc_case *c);
};

typedef struct {
    const char *kind;
    double ref, eng, fwd;
} summary_row;

static summary_row g_summary[32];
static int g_nsummary;

static void summary_add(const char *kind, double ref, double eng, double fwd)
{
    for (int i = 0; i < g_nsummary; i++)
        if (strcmp(g_summary[i].kind, kind) == 0) {
            g_summary[i].ref = fmax(g_summary[i].ref, ref);
            g_summary[i].eng = fmax(g_summary[i].eng, eng);
            g_summary[i].fwd = fmax(g_summary[i].fwd, fwd);
            return;
        }
    g_summary[g_nsummary++] = (summary_row){kind, ref, eng, fwd};
}

static void check(int ok, const char *what, const char *name, double val, double bound)
{
    if (!ok) {
        fprintf(stderr, "FAIL %s: %s = %.3e (bound %.1e)\n", name, what, val, bound);
        g_failures++;
    }
}

static double rel_err(double a, double n)
{
    return fabs(a - n) / fmax(1e-2, fabs(a) + fabs(n));
}

static void sync_float(gc_case *c)
{
    for (int k = 0; k < c->np; k++)
        for (size_t i = 0; i < c->psz[k]; i++)
            c->pf[k][i] = (float)c->pd[k][i];
}

static double ref_loss(gc_case *c, double *pre, const double *R)
{
    c->ref(c, pre);
    double l = 0;
    for (size_t i = 0; i < c->nout; i++)
        l += ref_act(c->act, pre[i]) * R[i];
    return l;
}

static double eng_loss(gc_case *c, float *out, const double *R)
{
    c->fwd(c, out);
    double l = 0;
    for (size_t i = 0; i < c->nout; i++)
        l += (double)out[i] * R[i];
    return l;
}

static void run_case(gc_case *c)
{
    for (int k = 0; k < c->np; k++) {
        c->pd[k] = xcalloc(c->psz[k], sizeof(double));
        c->pf[k] = xcalloc(c->psz[k], sizeof(float));
    }
    double *pre = xcalloc(c->nout, sizeof(double));
    double *R = xcalloc(c->nout, sizeof(double));
    float *outf = xcalloc(c->nout, sizeof(float));
    float *pref = xcalloc(c->nout, sizeof(float));
    float *gout = xcalloc(c->nout, sizeof(float));
    float *eout = xcalloc(c->nout, sizeof(float));
    for (size_t i = 0; i < c->nout; i++)
        R[i] = urand(-1, 1);

    /* Draw parameters until no pre-activation sits near a kink. */
    int tries = 0;
    for (;;) {
        c->init(c);
        c->ref(c, pre);
        double d = INFINITY;
        for (size_t i = 0; i < c->nout; i++)
            d = fmin(d, kink_distance(c->act, pre[i]));
        if (d > KINK_MARGIN)
            break;
        if (++tries > 500) {
            fprintf(stderr, "FAIL %s: could not draw kink-free inputs\n", c->name);
            g_failures++;
            break;
        }
    }
    sync_float(c);

    /* Engine forward vs reference forward. */
    double fwd_err = 0;
    c->fwd(c, eout);
    for (size_t i = 0; i < c->nout; i++) {
        double r = ref_act(c->act, pre[i]);
        fwd_err = fmax(fwd_err, fabs((double)eout[i] - r) / fmax(1.0, fabs(r)));
    }
    check(fwd_err < FWD_BOUND, "forward vs reference", c->name, fwd_err, FWD_BOUND);

    /* Analytic gradients: accumulate onto a random base, then subtract it,
     * which also checks that backward adds rather than overwrites. */
    for (size_t i = 0; i < c->nout; i++) {
        pref[i] = (float)pre[i];
        outf[i] = (float)ref_act(c->act, pre[i]);
    }
    float *grads[MAXP] = {0}, *base[MAXP] = {0};
    double *ana[MAXP] = {0};
    for (int k = 0; k < c->np; k++) {
        grads[k] = xcalloc(c->psz[k], sizeof(float));
        base[k] = xcalloc(c->psz[k], sizeof(float));
        ana[k] = xcalloc(c->psz[k], sizeof(double));
        for (size_t i = 0; i < c->psz[k]; i++)
            base[k][i] = grads[k][i] = (float)urand(-2, 2);
    }
    for (size_t i = 0; i < c->nout; i++)
        gout[i] = (float)R[i];
    c->bwd(c, outf, pref, gout, grads);
    for (int k = 0; k < c->np; k++)
        for (size_t i = 0; i < c->psz[k]; i++)
            ana[k][i] = (double)grads[k][i] - (double)base[k][i];

    /* grad_out must now be the pre-activation gradient. */
    double gerr = 0;
    for (size_t i = 0; i < c->nout; i++)
        gerr = fmax(gerr, rel_err(gout[i], R[i] * ref_act_deriv(c->act, pre[i])));
    check(gerr < 1e-5, "in-place pre-activation gradient", c->name, gerr, 1e-5);

    /* Each gradient alone (others NULL) equals the full call. */
    if (c->np > 1) {
        for (int k = 0; k < c->np; k++) {
            float *only[MAXP] = {0};
            only[k] = xcalloc(c->psz[k], sizeof(float));
            for (size_t i = 0; i < c->nout; i++)
                gout[i] = (float)R[i];
            c->bwd(c, outf, pref, gout, only);
            double e = 0;
            for (size_t i = 0; i < c->psz[k]; i++)
                e = fmax(e, rel_err(only[k][i], ana[k][i]));
            check(e < 1e-4, "gradient computed alone vs full call", c->name, e, 1e-4);
            free(only[k]);
        }
    }

    /* Finite differences. */
    double worst_ref = 0, worst_eng = 0;
    for (int k = 0; k < c->np; k++) {
        size_t nchk = c->psz[k] < MAX_FD_PER_PARAM ? c->psz[k] : MAX_FD_PER_PARAM;
        double pr = 0, pe = 0;
        for (size_t t = 0; t < nchk; t++) {
            size_t i = c->psz[k] <= MAX_FD_PER_PARAM ? t : (size_t)(rng_next() % c->psz[k]);
            double x = c->pd[k][i];
            c->pd[k][i] = x + REF_STEP;
            double lp = ref_loss(c, pre, R);
            c->pd[k][i] = x - REF_STEP;
            double lm = ref_loss(c, pre, R);
            c->pd[k][i] = x;
            double nref = (lp - lm) / (2 * REF_STEP);

            float fx = c->pf[k][i];
            float fp = (float)(x + ENG_STEP), fm = (float)(x - ENG_STEP);
            c->pf[k][i] = fp;
            lp = eng_loss(c, eout, R);
            c->pf[k][i] = fm;
            lm = eng_loss(c, eout, R);
            c->pf[k][i] = fx;
            double neng = (lp - lm) / ((double)fp - (double)fm);

            double er = rel_err(ana[k][i], nref), ee = rel_err(ana[k][i], neng);
            if (er > REF_BOUND || ee > ENG_BOUND)
                fprintf(stderr, "  %s d%s[%zu]: analytic %.6g ref-FD %.6g eng-FD %.6g\n", c->name,
                        c->pname[k], i, ana[k][i], nref, neng);
            pr = fmax(pr, er);
            pe = fmax(pe, ee);
        }
        printf("  %-44s d%-4s  ref-FD %.2e  eng-FD %.2e  (%zu/%zu checked)\n", c->name,
               c->pname[k], pr, pe, nchk, c->psz[k]);
        worst_ref = fmax(worst_ref, pr);
        worst_eng = fmax(worst_eng, pe);
    }
    check(worst_ref < REF_BOUND, "max rel err vs double FD", c->name, worst_ref, REF_BOUND);
    check(worst_eng < ENG_BOUND, "max rel err vs float FD", c->name, worst_eng, ENG_BOUND);
    printf("%-46s worst ref-FD %.2e eng-FD %.2e fwd %.2e\n", c->name, worst_ref, worst_eng,
           fwd_err);
    summary_add(c->kind, worst_ref, worst_eng, fwd_err);

    for (int k = 0; k < c->np; k++) {
        free(c->pd[k]);
        free(c->pf[k]);
        free(grads[k]);
        free(base[k]);
        free(ana[k]);
    }
    free(pre);
    free(R);
    free(outf);
    free(pref);
    free(gout);
    free(eout);
}

static void fill_uniform(double *p, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = urand(lo, hi);
}

/* Bias range that puts pre-activations on both sides of every kink. */
static void bias_range(dl_act a, double *lo, double *hi)
{
    switch (a) {
    case DL_ACT_RELU6:
        *lo = -2;
        *hi = 7;
        break;
    case DL_ACT_HSWISH:
    case DL_ACT_HSIGMOID:
        *lo = -3;
        *hi = 3;
        break;
    default:
        *lo = -1;
        *hi = 1;
        break;
    }
}

/* ---------------------------------------------------------------- conv */

static void conv_ref(gc_case *c, double *pre)
{
    const dl_conv_shape *s = c->shape;
    const double *in = c->pd[0], *w = c->pd[1], *b = c->pd[2];
    int icg = s->ic / s->groups, ocg = s->oc / s->groups;
    for (int n = 0; n < s->n; n++)
        for (int oy = 0; oy < s->oh; oy++)
            for (int ox = 0; ox < s->ow; ox++)
                for (int o = 0; o < s->oc; o++) {
                    int gr = o / ocg;
                    double acc = b[o];
                    for (int ky = 0; ky < s->kh; ky++)
                        for (int kx = 0; kx < s->kw; kx++) {
                            int iy = oy * s->sh - s->pt + ky, ix = ox * s->sw - s->pl + kx;
                            if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw)
                                continue;
                            for (int ci = 0; ci < icg; ci++)
                                acc += in[(((size_t)n * s->ih + iy) * s->iw + ix) * s->ic +
                                          gr * icg + ci] *
                                       w[(((size_t)o * s->kh + ky) * s->kw + kx) * icg + ci];
                        }
                    pre[(((size_t)n * s->oh + oy) * s->ow + ox) * s->oc + o] = acc;
                }
}

static void conv_fwd(gc_case *c, float *out)
{
    const dl_conv_shape *s = c->shape;
    float *scratch = xcalloc(dl_conv2d_scratch_floats(s) + 1, sizeof(float));
    dl_conv2d_forward(s, c->pf[0], c->pf[1], c->pf[2], out, scratch);
    free(scratch);
}

static void conv_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    const dl_conv_shape *s = c->shape;
    size_t ns = dl_conv2d_backward_scratch_floats(s);
    float *scratch = xcalloc(ns + 1, sizeof(float));
    for (size_t i = 0; i < ns + 1; i++)
        scratch[i] = NAN; /* backward must not read scratch it did not write */
    dl_conv2d_backward(s, c->pf[0], c->pf[1], out,
                       (s->act == DL_ACT_HSWISH || s->act == DL_ACT_SILU) ? pre : NULL, gout, g[0],
                       g[1], g[2], scratch);
    free(scratch);
}

static void conv_init(gc_case *c)
{
    const dl_conv_shape *s = c->shape;
    double lo, hi;
    bias_range(s->act, &lo, &hi);
    fill_uniform(c->pd[0], c->psz[0], -1, 1);
    fill_uniform(c->pd[1], c->psz[1], -1, 1);
    fill_uniform(c->pd[2], c->psz[2], lo, hi);
}

static int out_size(int in, int k, int s, int pad_before, int pad_after)
{
    return (in + pad_before + pad_after - k) / s + 1;
}

/* same != 0: TF SAME padding (checked against dl_same_padding); else explicit
 * padding p on every side (0 = VALID). */
static void conv_case(const char *name, int n, int ih, int iw, int ic, int oc, int kh, int kw, int sh,
                      int sw, int same, int p, int groups, dl_act act)
{
    dl_conv_shape s = {0};
    s.n = n;
    s.ih = ih;
    s.iw = iw;
    s.ic = ic;
    s.oc = oc;
    s.kh = kh;
    s.kw = kw;
    s.sh = sh;
    s.sw = sw;
    s.groups = groups;
    s.act = act;
    if (same) {
        int ph = (int)(((ih + sh - 1) / sh - 1) * sh + kh - ih);
        int pw = (int)(((iw + sw - 1) / sw - 1) * sw + kw - iw);
        ph = ph < 0 ? 0 : ph;
        pw = pw < 0 ? 0 : pw;
        s.pt = ph / 2;
        s.pl = pw / 2;
        s.oh = out_size(ih, kh, sh, ph / 2, ph - ph / 2);
        s.ow = out_size(iw, kw, sw, pw / 2, pw - pw / 2);
        int o, b, a, o2, b2, a2;
        dl_same_padding(ih, kh, sh, &o, &b, &a);
        dl_same_padding(iw, kw, sw, &o2, &b2, &a2);
        if (o != s.oh || b != ph / 2 || a != ph - ph / 2 || o2 != s.ow || b2 != pw / 2 ||
            a2 != pw - pw / 2) {
            fprintf(stderr, "FAIL dl_same_padding for %s: got h %d,%d,%d w %d,%d,%d\n", name, o,
                    b, a, o2, b2, a2);
            g_failures++;
        }
    } else {
        s.pt = s.pl = p;
        s.oh = out_size(ih, kh, sh, p, p);
        s.ow = out_size(iw, kw, sw, p, p);
    }
    gc_case c = {0};
    snprintf(c.name, sizeof c.name, "conv %s %s", name, dl_act_name(act));
    c.kind = groups == 1 ? ((kh == 1 && kw == 1 && sh == 1 && sw == 1 && !s.pt && !s.pl &&
                             s.oh == ih && s.ow == iw)
                                ? "conv 1x1 (sgemm)"
                                : "conv im2col")
                         : (groups == ic && groups == oc ? "conv depthwise" : "conv grouped");
    c.np = 3;
    c.pname[0] = "in";
    c.pname[1] = "w";
    c.pname[2] = "b";
    c.psz[0] = (size_t)n * ih * iw * ic;
    c.psz[1] = (size_t)oc * kh * kw * (ic / groups);
    c.psz[2] = (size_t)oc;
    c.nout = (size_t)n * s.oh * s.ow * oc;
    c.act = act;
    c.shape = &s;
    c.ref = conv_ref;
    c.fwd = conv_fwd;
    c.bwd = conv_bwd;
    c.init = conv_init;
    run_case(&c);
}

/* ---------------------------------------------------------------- dense */

typedef struct {
    int n, k, m;
} dense_shape;

static void dense_ref(gc_case *c, double *pre)
{
    const dense_shape *s = c->shape;
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < s->m; j++) {
            double acc = c->pd[2][j];
            for (int t = 0; t < s->k; t++)
                acc += c->pd[0][(size_t)i * s->k + t] * c->pd[1][(size_t)j * s->k + t];
            pre[(size_t)i * s->m + j] = acc;
        }
}

static void dense_fwd(gc_case *c, float *out)
{
    const dense_shape *s = c->shape;
    dl_dense_forward(s->n, s->k, s->m, c->pf[0], c->pf[1], c->pf[2], c->act, out);
}

static void dense_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    const dense_shape *s = c->shape;
    dl_dense_backward(s->n, s->k, s->m, c->pf[0], c->pf[1], out,
                      (c->act == DL_ACT_HSWISH || c->act == DL_ACT_SILU) ? pre : NULL, c->act,
                      gout, g[0], g[1], g[2]);
}

static void dense_init(gc_case *c)
{
    double lo, hi;
    bias_range(c->act, &lo, &hi);
    fill_uniform(c->pd[0], c->psz[0], -1, 1);
    fill_uniform(c->pd[1], c->psz[1], -1, 1);
    fill_uniform(c->pd[2], c->psz[2], lo, hi);
}

static void dense_case(int n, int k, int m, dl_act act)
{
    dense_shape s = {n, k, m};
    gc_case c = {0};
    snprintf(c.name, sizeof c.name, "dense %dx%d->%d %s", n, k, m, dl_act_name(act));
    c.kind = "dense";
    c.np = 3;
    c.pname[0] = "in";
    c.pname[1] = "w";
    c.pname[2] = "b";
    c.psz[0] = (size_t)n * k;
    c.psz[1] = (size_t)m * k;
    c.psz[2] = (size_t)m;
    c.nout = (size_t)n * m;
    c.act = act;
    c.shape = &s;
    c.ref = dense_ref;
    c.fwd = dense_fwd;
    c.bwd = dense_bwd;
    c.init = dense_init;
    run_case(&c);
}

/* ---------------------------------------------------------------- add */

static void add_ref(gc_case *c, double *pre)
{
    for (size_t i = 0; i < c->nout; i++)
        pre[i] = c->pd[0][i] + c->pd[1][i];
}

static void add_fwd(gc_case *c, float *out)
{
    dl_add_forward(c->nout, c->pf[0], c->pf[1], c->act, out);
}

static void add_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    dl_add_backward(c->nout, out, (c->act == DL_ACT_HSWISH || c->act == DL_ACT_SILU) ? pre : NULL,
                    c->act, gout, g[0], g[1]);
}

static void add_init(gc_case *c)
{
    double lo, hi;
    bias_range(c->act, &lo, &hi);
    fill_uniform(c->pd[0], c->psz[0], -1, 1);
    fill_uniform(c->pd[1], c->psz[1], lo - 1, hi + 1);
}

static void add_case(size_t count, dl_act act)
{
    gc_case c = {0};
    snprintf(c.name, sizeof c.name, "add %zu %s", count, dl_act_name(act));
    c.kind = "add";
    c.np = 2;
    c.pname[0] = "a";
    c.pname[1] = "b";
    c.psz[0] = c.psz[1] = count;
    c.nout = count;
    c.act = act;
    c.ref = add_ref;
    c.fwd = add_fwd;
    c.bwd = add_bwd;
    c.init = add_init;
    run_case(&c);
}

/* ---------------------------------------------------------------- mul */

typedef struct {
    int n, hw, c, b_hw;
} mul_shape;

static void mul_ref(gc_case *c, double *pre)
{
    const mul_shape *s = c->shape;
    for (int b = 0; b < s->n; b++)
        for (int p = 0; p < s->hw; p++)
            for (int k = 0; k < s->c; k++) {
                size_t i = ((size_t)b * s->hw + p) * s->c + k;
                size_t j = ((size_t)b * s->b_hw + (s->b_hw == 1 ? 0 : p)) * s->c + k;
                pre[i] = c->pd[0][i] * c->pd[1][j];
            }
}

static void mul_fwd(gc_case *c, float *out)
{
    const mul_shape *s = c->shape;
    dl_mul_forward(s->n, s->hw, s->c, s->b_hw, c->pf[0], c->pf[1], c->act, out);
}

static void mul_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    const mul_shape *s = c->shape;
    dl_mul_backward(s->n, s->hw, s->c, s->b_hw, c->pf[0], c->pf[1], out,
                    (c->act == DL_ACT_HSWISH || c->act == DL_ACT_SILU) ? pre : NULL, c->act, gout, g[0], g[1]);
}

static void mul_init(gc_case *c)
{
    fill_uniform(c->pd[0], c->psz[0], -2, 2);
    fill_uniform(c->pd[1], c->psz[1], -2, 2);
}

/* b_hw = hw: elementwise; b_hw = 1: a channel gate (squeeze-excitation) */
static void mul_case(int n, int hw, int ch, int b_hw, dl_act act)
{
    static mul_shape shape;
    shape = (mul_shape){n, hw, ch, b_hw};
    gc_case c = {0};
    snprintf(c.name, sizeof c.name, "mul %dx%dx%d by %dx%d %s", n, hw, ch, b_hw, ch, dl_act_name(act));
    c.kind = "mul";
    c.np = 2;
    c.pname[0] = "a";
    c.pname[1] = "b";
    c.psz[0] = (size_t)n * hw * ch;
    c.psz[1] = (size_t)n * b_hw * ch;
    c.nout = c.psz[0];
    c.act = act;
    c.shape = &shape;
    c.ref = mul_ref;
    c.fwd = mul_fwd;
    c.bwd = mul_bwd;
    c.init = mul_init;
    run_case(&c);
}

/* ---------------------------------------------------------------- concat */

typedef struct {
    int rows, ca, cb;
} concat_shape;

static void concat_ref(gc_case *c, double *pre)
{
    const concat_shape *s = c->shape;
    const int oc = s->ca + s->cb;
    for (int r = 0; r < s->rows; r++) {
        for (int k = 0; k < s->ca; k++)
            pre[(size_t)r * oc + k] = c->pd[0][(size_t)r * s->ca + k];
        for (int k = 0; k < s->cb; k++)
            pre[(size_t)r * oc + s->ca + k] = c->pd[1][(size_t)r * s->cb + k];
    }
}

static void concat_fwd(gc_case *c, float *out)
{
    const concat_shape *s = c->shape;
    dl_concat_forward((size_t)s->rows, s->ca, s->cb, c->pf[0], c->pf[1], out);
}

static void concat_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    const concat_shape *s = c->shape;
    dl_concat_backward((size_t)s->rows, s->ca, s->cb, gout, g[0], g[1]);
}

static void concat_init(gc_case *c)
{
    fill_uniform(c->pd[0], c->psz[0], -2, 2);
    fill_uniform(c->pd[1], c->psz[1], -2, 2);
}

/* rows = batch x H x W positions; channels ca then cb */
static void concat_case(int rows, int ca, int cb)
{
    static concat_shape shape;
    shape = (concat_shape){rows, ca, cb};
    gc_case c = {0};
    snprintf(c.name, sizeof c.name, "concat %d x (%d + %d)", rows, ca, cb);
    c.kind = "concat";
    c.np = 2;
    c.pname[0] = "a";
    c.pname[1] = "b";
    c.psz[0] = (size_t)rows * ca;
    c.psz[1] = (size_t)rows * cb;
    c.nout = (size_t)rows * (ca + cb);
    c.act = DL_ACT_NONE;
    c.shape = &shape;
    c.ref = concat_ref;
    c.fwd = concat_fwd;
    c.bwd = concat_bwd;
    c.init = concat_init;
    run_case(&c);
}

/* ---------------------------------------------------------------- pools */

static void pool_ref(gc_case *c, double *pre, int is_max)
{
    const dl_pool_shape *s = c->shape;
    const double *in = c->pd[0];
    for (int n = 0; n < s->n; n++)
        for (int oy = 0; oy < s->oh; oy++)
            for (int ox = 0; ox < s->ow; ox++)
                for (int ch = 0; ch < s->c; ch++) {
                    double acc = is_max ? -INFINITY : 0;
                    int cnt = 0;
                    for (int ky = 0; ky < s->kh; ky++)
                        for (int kx = 0; kx < s->kw; kx++) {
                            int iy = oy * s->sh - s->pt + ky, ix = ox * s->sw - s->pl + kx;
                            if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw)
                                continue;
                            double v = in[(((size_t)n * s->ih + iy) * s->iw + ix) * s->c + ch];
                            acc = is_max ? fmax(acc, v) : acc + v;
                            cnt++;
                        }
                    pre[(((size_t)n * s->oh + oy) * s->ow + ox) * s->c + ch] =
                        is_max ? acc : acc / cnt;
                }
}

static void avgpool_ref(gc_case *c, double *pre) { pool_ref(c, pre, 0); }
static void maxpool_ref(gc_case *c, double *pre) { pool_ref(c, pre, 1); }
static void avgpool_fwd(gc_case *c, float *out) { dl_avgpool_forward(c->shape, c->pf[0], out); }
static void maxpool_fwd(gc_case *c, float *out) { dl_maxpool_forward(c->shape, c->pf[0], out); }

static void avgpool_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    dl_avgpool_backward(c->shape, gout, g[0]);
}

static void maxpool_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    dl_maxpool_backward(c->shape, c->pf[0], out, gout, g[0]);
}

static void plain_init(gc_case *c)
{
    for (int k = 0; k < c->np; k++)
        fill_uniform(c->pd[k], c->psz[k], -1, 1);
}

/* Distinct values 0.02 apart (> 2 * ENG_STEP), so no finite difference
 * changes a window's argmax. */
static void distinct_init(gc_case *c)
{
    size_t n = c->psz[0];
    for (size_t i = 0; i < n; i++)
        c->pd[0][i] = 0.02 * ((double)i - 0.5 * (double)n);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rng_next() % (i + 1));
        double t = c->pd[0][i];
        c->pd[0][i] = c->pd[0][j];
        c->pd[0][j] = t;
    }
}

static void pool_case(int is_max, int n, int ih, int iw, int ch, int k, int st, int same)
{
    dl_pool_shape s = {0};
    s.n = n;
    s.ih = ih;
    s.iw = iw;
    s.c = ch;
    s.kh = s.kw = k;
    s.sh = s.sw = st;
    int pb = 0, pr = 0;
    if (same) {
        dl_same_padding(ih, k, st, &s.oh, &s.pt, &pb);
        dl_same_padding(iw, k, st, &s.ow, &s.pl, &pr);
    } else {
        s.oh = (ih - k) / st + 1;
        s.ow = (iw - k) / st + 1;
    }
    gc_case c = {0};
    snprintf(c.name, sizeof c.name, "%s %dx%dx%d k%d s%d %s%s", is_max ? "maxpool" : "avgpool", ih,
             iw, ch, k, st, same ? "SAME" : "VALID",
             same && (pb != s.pt || pr != s.pl) ? " (asym)" : "");
    c.kind = is_max ? "maxpool" : "avgpool";
    c.np = 1;
    c.pname[0] = "in";
    c.psz[0] = (size_t)n * ih * iw * ch;
    c.nout = (size_t)n * s.oh * s.ow * ch;
    c.act = DL_ACT_NONE;
    c.shape = &s;
    c.ref = is_max ? maxpool_ref : avgpool_ref;
    c.fwd = is_max ? maxpool_fwd : avgpool_fwd;
    c.bwd = is_max ? maxpool_bwd : avgpool_bwd;
    c.init = is_max ? distinct_init : plain_init;
    run_case(&c);
}

/* ---------------------------------------------------------------- gap, pad, softmax */

typedef struct {
    int n, h, w, c, pt, pb, pl, pr;
} misc_shape;

static void gap_ref(gc_case *c, double *pre)
{
    const misc_shape *s = c->shape;
    int hw = s->h * s->w;
    for (int n = 0; n < s->n; n++)
        for (int ch = 0; ch < s->c; ch++) {
            double acc = 0;
            for (int p = 0; p < hw; p++)
                acc += c->pd[0][((size_t)n * hw + p) * s->c + ch];
            pre[(size_t)n * s->c + ch] = acc / hw;
        }
}

static void gap_fwd(gc_case *c, float *out)
{
    const misc_shape *s = c->shape;
    dl_gap_forward(s->n, s->h * s->w, s->c, c->pf[0], out);
}

static void gap_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    const misc_shape *s = c->shape;
    dl_gap_backward(s->n, s->h * s->w, s->c, gout, g[0]);
}

static void pad_ref(gc_case *c, double *pre)
{
    const misc_shape *s = c->shape;
    int oh = s->h + s->pt + s->pb, ow = s->w + s->pl + s->pr;
    memset(pre, 0, c->nout * sizeof(double));
    for (int n = 0; n < s->n; n++)
        for (int y = 0; y < s->h; y++)
            for (int x = 0; x < s->w; x++)
                for (int ch = 0; ch < s->c; ch++)
                    pre[(((size_t)n * oh + y + s->pt) * ow + x + s->pl) * s->c + ch] =
                        c->pd[0][(((size_t)n * s->h + y) * s->w + x) * s->c + ch];
}

static void pad_fwd(gc_case *c, float *out)
{
    const misc_shape *s = c->shape;
    dl_pad_forward(s->n, s->h, s->w, s->c, s->pt, s->pb, s->pl, s->pr, c->pf[0], out);
}

static void pad_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    const misc_shape *s = c->shape;
    dl_pad_backward(s->n, s->h, s->w, s->c, s->pt, s->pb, s->pl, s->pr, gout, g[0]);
}

static void softmax_ref(gc_case *c, double *pre)
{
    const misc_shape *s = c->shape; /* n rows of c classes */
    for (int i = 0; i < s->n; i++) {
        const double *l = c->pd[0] + (size_t)i * s->c;
        double mx = l[0], se = 0;
        for (int j = 1; j < s->c; j++)
            mx = fmax(mx, l[j]);
        for (int j = 0; j < s->c; j++)
            se += exp(l[j] - mx);
        for (int j = 0; j < s->c; j++)
            pre[(size_t)i * s->c + j] = exp(l[j] - mx) / se;
    }
}

static void softmax_fwd(gc_case *c, float *out)
{
    const misc_shape *s = c->shape;
    dl_softmax_forward(s->n, s->c, c->pf[0], out);
}

static void softmax_bwd(gc_case *c, const float *out, const float *pre, float *gout, float **g)
{
    const misc_shape *s = c->shape;
    dl_softmax_backward(s->n, s->c, out, gout, g[0]);
}

static void softmax_init(gc_case *c)
{
    fill_uniform(c->pd[0], c->psz[0], -3, 3);
}

static void misc_case(const char *kind, misc_shape s)
{
    gc_case c = {0};
    c.kind = kind;
    c.np = 1;
    c.pname[0] = "in";
    c.act = DL_ACT_NONE;
    c.shape = &s;
    c.init = plain_init;
    if (strcmp(kind, "gap") == 0) {
        snprintf(c.name, sizeof c.name, "gap %dx%dx%dx%d", s.n, s.h, s.w, s.c);
        c.psz[0] = (size_t)s.n * s.h * s.w * s.c;
        c.nout = (size_t)s.n * s.c;
        c.ref = gap_ref;
        c.fwd = gap_fwd;
        c.bwd = gap_bwd;
    } else if (strcmp(kind, "pad") == 0) {
        snprintf(c.name, sizeof c.name, "pad %dx%dx%dx%d t%d b%d l%d r%d", s.n, s.h, s.w, s.c, s.pt,
                 s.pb, s.pl, s.pr);
        c.psz[0] = (size_t)s.n * s.h * s.w * s.c;
        c.nout = (size_t)s.n * (s.h + s.pt + s.pb) * (s.w + s.pl + s.pr) * s.c;
        c.ref = pad_ref;
        c.fwd = pad_fwd;
        c.bwd = pad_bwd;
    } else {
        snprintf(c.name, sizeof c.name, "softmax %dx%d", s.n, s.c);
        c.psz[0] = (size_t)s.n * s.c;
        c.nout = c.psz[0];
        c.ref = softmax_ref;
        c.fwd = softmax_fwd;
        c.bwd = softmax_bwd;
        c.init = softmax_init;
    }
    run_case(&c);
}

/* ---------------------------------------------------------------- softmax xent */

static double xent_ref(int n, int c, const double *l, const int *y, const float *cw, double eps)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        const double *r = l + (size_t)i * c;
        double mx = r[0], se = 0;
        for (int j = 1; j < c; j++)
            mx = fmax(mx, r[j]);
        for (int j = 0; j < c; j++)
            se += exp(r[j] - mx);
        double ce = 0;
        for (int j = 0; j < c; j++) {
            double t = (j == y[i] ? 1 - eps : 0) + eps / c;
            ce -= t * (r[j] - mx - log(se));
        }
        double w = cw ? cw[y[i]] : 1;
        num += w * ce;
        den += w;
    }
    return num / den;
}

static void xent_case(int n, int c, int weighted, float eps, double scale)
{
    char name[96];
    snprintf(name, sizeof name, "softmax_xent %dx%d %s eps=%.2f scale=%g",
             n, c, weighted ? "weighted" : "unweighted", eps, scale);
    double *l = xcalloc((size_t)n * c, sizeof(double));
    float *lf = xcalloc((size_t)n * c, sizeof(float));
    float *grad = xcalloc((size_t)n * c, sizeof(float));
    int *y = xcalloc((size_t)n, sizeof(int));
    float *cw = xcalloc((size_t)c, sizeof(float));
    for (int j = 0; j < c; j++)
        cw[j] = (float)urand(0.2, 3);
    const float *w = weighted ? cw : NULL;
    for (size_t i = 0; i < (size_t)n * c; i++) {
        l[i] = urand(-scale, scale);
        lf[i] = (float)l[i];
        grad[i] = 123.0f; /* must be overwritten, not accumulated */
    }
    for (int i = 0; i < n; i++)
        y[i] = (int)(rng_next() % (uint64_t)c);
    for (size_t i = 0; i < (size_t)n * c; i++)
        l[i] = lf[i]; /* reference sees exactly the float logits */

    float loss = dl_softmax_xent(n, c, lf, y, w, eps, grad);
    float loss2 = dl_softmax_xent(n, c, lf, y, w, eps, NULL);
    double want = xent_ref(n, c, l, y, w, eps);
    double lerr = fabs(loss - want) / fmax(1.0, fabs(want));
    check(isfinite(loss) && lerr < 1e-5, "loss vs reference", name, lerr, 1e-5);
    check(loss == loss2, "loss with grad NULL differs", name, fabs(loss - loss2), 0);

    /* Each row's gradient sums to zero (softmax and targets both sum to 1). */
    double rsum = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < c; j++)
            s += grad[(size_t)i * c + j];
        rsum = fmax(rsum, fabs(s));
    }
    check(rsum < 1e-6, "row gradient sum", name, rsum, 1e-6);

    double wr = 0, we = 0, gsum = 0, fdsum = 0;
    for (size_t i = 0; i < (size_t)n * c; i++) {
        double x = l[i];
        l[i] = x + REF_STEP;
        double lp = xent_ref(n, c, l, y, w, eps);
        l[i] = x - REF_STEP;
        double lm = xent_ref(n, c, l, y, w, eps);
        l[i] = x;
        double nref = (lp - lm) / (2 * REF_STEP);

        float fx = lf[i], fp = (float)(x + ENG_STEP), fm = (float)(x - ENG_STEP);
        lf[i] = fp;
        double elp = dl_softmax_xent(n, c, lf, y, w, eps, NULL);
        lf[i] = fm;
        double elm = dl_softmax_xent(n, c, lf, y, w, eps, NULL);
        lf[i] = fx;
        double neng = (elp - elm) / ((double)fp - (double)fm);

        wr = fmax(wr, rel_err(grad[i], nref));
        we = fmax(we, rel_err(grad[i], neng));
        gsum += grad[i];
        fdsum += nref;
    }
    double serr = fabs(gsum - fdsum);
    check(wr < REF_BOUND, "max rel err vs double FD", name, wr, REF_BOUND);
    check(we < ENG_BOUND, "max rel err vs float FD", name, we, ENG_BOUND);
    check(serr < 1e-5, "|sum grad - sum FD|", name, serr, 1e-5);
    printf("%-46s worst ref-FD %.2e eng-FD %.2e loss %.2e sum %.1e\n", name, wr, we, lerr, serr);
    summary_add("softmax_xent", wr, we, lerr);

    free(l);
    free(lf);
    free(grad);
    free(y);
    free(cw);
}

/* Out-of-range labels carry no loss and no gradient; all-invalid gives 0. */
static void xent_edge(void)
{
    float logits[6] = {1, 2, 3, -1, 0, 1};
    int bad[2] = {5, -1};
    float grad[6];
    for (int i = 0; i < 6; i++)
        grad[i] = 7;
    float loss = dl_softmax_xent(2, 3, logits, bad, NULL, 0.1f, grad);
    int ok = loss == 0.0f;
    for (int i = 0; i < 6; i++)
        ok = ok && grad[i] == 0.0f;
    check(ok, "all-invalid labels give zero loss and gradient", "softmax_xent edge", loss, 0);
    /* Large logits stay finite (stable log-softmax). */
    float big[3] = {1000, -1000, 0};
    int y0 = 1;
    float gb[3];
    loss = dl_softmax_xent(1, 3, big, &y0, NULL, 0.0f, gb);
    check(isfinite(loss) && fabs(loss - 2000.0f) < 1e-2, "stable loss", "softmax_xent edge",
          loss, 2000);
    check(isfinite(gb[0]) && fabs(gb[0] - 1) < 1e-6 && fabs(gb[1] + 1) < 1e-6,
          "stable gradient", "softmax_xent edge", gb[0], 1);
}

/* dl_act_backward directly, incl. relu/relu6 from the output only. */
static void act_case(dl_act a)
{
    enum { N = 64 };
    float pre[N], y[N], g[N];
    double worst = 0;
    double lo, hi;
    bias_range(a, &lo, &hi);
    for (int i = 0; i < N; i++) {
        double x;
        do
            x = urand(lo - 4, hi + 4);
        while (kink_distance(a, x) < 1e-2);
        pre[i] = (float)x;
    }
    memcpy(y, pre, sizeof y);
    dl_act_forward(a, y, N);
    for (int i = 0; i < N; i++) {
        double yr = ref_act(a, pre[i]);
        double fe = fabs(y[i] - yr) / fmax(1.0, fabs(yr));
        check(fe < 1e-5, "dl_act_forward vs reference", dl_act_name(a), fe, 1e-5);
        g[i] = 1.0f;
    }
    dl_act_backward(a, y, (a == DL_ACT_HSWISH || a == DL_ACT_SILU) ? pre : NULL, g, N);
    for (int i = 0; i < N; i++) {
        double x = pre[i];
        double num = (ref_act(a, x + REF_STEP) - ref_act(a, x - REF_STEP)) / (2 * REF_STEP);
        worst = fmax(worst, rel_err(g[i], num));
    }
    char name[64];
    snprintf(name, sizeof name, "act %s", dl_act_name(a));
    check(worst < REF_BOUND, "derivative vs FD", name, worst, REF_BOUND);
    printf("%-46s worst ref-FD %.2e\n", name, worst);
    summary_add("activation", worst, 0, 0);
}

int main(void)
{
    const dl_act acts[] = {DL_ACT_NONE, DL_ACT_RELU, DL_ACT_RELU6, DL_ACT_HSWISH, DL_ACT_SILU,
                           DL_ACT_SIGMOID, DL_ACT_HSIGMOID};
    for (int i = 0; i < 7; i++)
        act_case(acts[i]);

    /* conv: name, n, ih, iw, ic, oc, kh, kw, sh, sw, same, pad, groups, act */
    conv_case("3x3 s2 SAME asym 8x6x3->5", 2, 8, 6, 3, 5, 3, 3, 2, 2, 1, 0, 1, DL_ACT_RELU6);
    conv_case("3x3 s2 SAME sym 7x7x3->4", 1, 7, 7, 3, 4, 3, 3, 2, 2, 1, 0, 1, DL_ACT_NONE);
    conv_case("3x3 s1 SAME 5x6x4->3", 2, 5, 6, 4, 3, 3, 3, 1, 1, 1, 0, 1, DL_ACT_HSWISH);
    conv_case("5x5 VALID 7x8x2->3", 1, 7, 8, 2, 3, 5, 5, 1, 1, 0, 0, 1, DL_ACT_SILU);
    conv_case("2x3 s(1,2) pad1 5x7x3->4", 2, 5, 7, 3, 4, 2, 3, 1, 2, 0, 1, 1, DL_ACT_RELU);
    conv_case("1x1 s1 4x5x6->7", 2, 4, 5, 6, 7, 1, 1, 1, 1, 0, 0, 1, DL_ACT_RELU6);
    conv_case("1x1 s1 3x3x5->4", 3, 3, 3, 5, 4, 1, 1, 1, 1, 0, 0, 1, DL_ACT_NONE);
    conv_case("1x1 s2 VALID 5x5x4->3", 2, 5, 5, 4, 3, 1, 1, 2, 2, 0, 0, 1, DL_ACT_RELU);
    conv_case("dw 3x3 s2 SAME asym 9x8x6", 2, 9, 8, 6, 6, 3, 3, 2, 2, 1, 0, 6, DL_ACT_RELU6);
    conv_case("dw 3x3 s1 SAME 5x5x5", 2, 5, 5, 5, 5, 3, 3, 1, 1, 1, 0, 5, DL_ACT_SILU);
    conv_case("dw 5x5 s2 SAME 8x7x4", 1, 8, 7, 4, 4, 5, 5, 2, 2, 1, 0, 4, DL_ACT_HSWISH);
    conv_case("dw 3x3 VALID 6x6x3", 1, 6, 6, 3, 3, 3, 3, 1, 1, 0, 0, 3, DL_ACT_NONE);
    conv_case("g2 3x3 s1 pad1 5x6x4->6", 2, 5, 6, 4, 6, 3, 3, 1, 1, 0, 1, 2, DL_ACT_RELU);
    conv_case("g2 3x3 s2 SAME asym 6x8x6->4", 1, 6, 8, 6, 4, 3, 3, 2, 2, 1, 0, 2, DL_ACT_HSWISH);
    conv_case("g2 1x1 s1 4x4x4->6", 2, 4, 4, 4, 6, 1, 1, 1, 1, 0, 0, 2, DL_ACT_NONE);

    for (int i = 0; i < 7; i++)
        dense_case(3, 10, 4, acts[i]);
    conv_case("1x1 s1 1x1x6->5 (SE fc)", 2, 1, 1, 6, 5, 1, 1, 1, 1, 0, 0, 1, DL_ACT_SIGMOID);
    conv_case("1x1 s1 1x1x4->6 (SE fc)", 1, 1, 1, 4, 6, 1, 1, 1, 1, 0, 0, 1, DL_ACT_HSIGMOID);
    conv_case("dw 3x3 s1 SAME 5x5x5 sigmoid", 1, 5, 5, 5, 5, 3, 3, 1, 1, 1, 0, 5, DL_ACT_SIGMOID);
    dense_case(1, 17, 5, DL_ACT_NONE);

    add_case(40, DL_ACT_NONE);
    add_case(40, DL_ACT_RELU);
    add_case(60, DL_ACT_RELU6);
    add_case(60, DL_ACT_HSWISH);
    add_case(40, DL_ACT_SILU);
    add_case(40, DL_ACT_SIGMOID);
    add_case(40, DL_ACT_HSIGMOID);

    mul_case(2, 6, 5, 6, DL_ACT_NONE);
    mul_case(2, 6, 5, 1, DL_ACT_NONE);
    mul_case(1, 9, 4, 1, DL_ACT_RELU);
    mul_case(2, 4, 3, 1, DL_ACT_SILU);
    mul_case(1, 5, 7, 5, DL_ACT_SIGMOID);

    concat_case(2 * 3 * 4, 5, 3); /* batch 2, 3x4 map */
    concat_case(7, 1, 6);
    concat_case(1, 9, 9); /* a 1x1 map (after pooling) */

    pool_case(0, 2, 8, 6, 3, 3, 2, 1);
    pool_case(0, 1, 7, 7, 2, 3, 1, 1);
    pool_case(0, 2, 6, 6, 3, 2, 2, 0);
    pool_case(1, 2, 8, 6, 3, 3, 2, 1);
    pool_case(1, 1, 7, 7, 2, 3, 1, 1);
    pool_case(1, 2, 6, 6, 3, 2, 2, 0);

    misc_case("gap", (misc_shape){.n = 2, .h = 3, .w = 4, .c = 5});
    misc_case("gap", (misc_shape){.n = 1, .h = 1, .w = 1, .c = 7});
    misc_case("pad", (misc_shape){.n = 2, .h = 3, .w = 4, .c = 2, .pt = 1, .pb = 2, .pl = 0, .pr = 1});
    misc_case("pad", (misc_shape){.n = 1, .h = 4, .w = 3, .c = 3, .pt = 0, .pb = 1, .pl = 1, .pr = 0});
    misc_case("softmax", (misc_shape){.n = 3, .c = 5});
    misc_case("softmax", (misc_shape){.n = 2, .c = 9});

    xent_case(4, 5, 1, 0.1f, 3);
    xent_case(4, 5, 0, 0.0f, 3);
    xent_case(6, 3, 1, 0.2f, 8);
    xent_case(1, 7, 0, 0.05f, 1);
    xent_edge();

    printf("\nworst relative error per op (bounds: ref-FD %.0e, eng-FD %.0e, fwd %.0e)\n",
           REF_BOUND, ENG_BOUND, FWD_BOUND);
    for (int i = 0; i < g_nsummary; i++)
        printf("  %-20s ref-FD %.2e  eng-FD %.2e  fwd/loss %.2e\n", g_summary[i].kind,
               g_summary[i].ref, g_summary[i].eng, g_summary[i].fwd);
    if (g_failures) {
        fprintf(stderr, "%d failure(s)\n", g_failures);
        return 1;
    }
    printf("all gradient checks passed\n");
    return 0;
}
