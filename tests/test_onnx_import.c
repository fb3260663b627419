/* ONNX import: small models written byte by byte here (protobuf by hand),
 * imported, run, and compared with a naive NCHW double-precision reference
 * computed here from the same weights; then hostile files (truncated at
 * every length, wrong wire types, huge declared sizes and dimensions,
 * external data, unsupported ops) must be refused with clear messages; and
 * the whole dl_import_onnx path (classes file, mean/std conversion).
 * SPDX-License-Identifier: GPL-3.0-or-later */
#include "dermlens_test.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_fail;
#define EXPECT(cond, ...)                                                                                 \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                         \
            fprintf(stderr, __VA_ARGS__);                                                                \
            fprintf(stderr, "\n");                                                                       \
            g_fail++;                                                                                    \
        }                                                                                                \
    } while (0)

/* ------------------------------------------------------------ protobuf writer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void varint(buf *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        put(b, &c, 1);
    } while (v);
}

static void tag(buf *b, int field, int wt) { varint(b, ((uint64_t)field << 3) | (uint64_t)wt); }
static void f_varint(buf *b, int field, uint64_t v) { tag(b, field, 0); varint(b, v); }
static void f_bytes(buf *b, int field, const void *d, size_t n) { tag(b, field, 2); varint(b, n); put(b, d, n); }
static void f_str(buf *b, int field, const char *s) { f_bytes(b, field, s, strlen(s)); }
static void f_msg(buf *b, int field, buf *sub) { f_bytes(b, field, sub->p, sub->n); free(sub->p); memset(sub, 0, sizeof *sub); }
static void f_float(buf *b, int field, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t le[4] = {u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff, u >> 24};
    tag(b, field, 5);
    put(b, le, 4);
}

/* ------------------------------------------------------------ ONNX builders (onnx.proto field numbers) */

enum { ENC_RAW = 0, ENC_FLOAT_DATA, ENC_FP16_RAW, ENC_FP16_INT32 };

static uint16_t to_half(float f) /* exact for the values used here (normal, 10-bit mantissa) */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) == 0) return (uint16_t)(u >> 16);
    uint32_t sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xff, man = u & 0x7fffff;
    return (uint16_t)(sign | ((exp - 112) << 10) | (man >> 13));
}

static void tensor_msg(buf *t, const char *name, int nd, const int64_t *dims, const float *v, int enc)
{
    size_t n = 1;
    for (int i = 0; i < nd; i++) {
        f_varint(t, 1, (uint64_t)dims[i]);
        n *= (size_t)dims[i];
    }
    f_varint(t, 2, enc >= ENC_FP16_RAW ? 10 : 1);
    f_str(t, 8, name);
    if (enc == ENC_RAW) {
        buf r = {0};
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            uint8_t le[4] = {u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff, u >> 24};
            put(&r, le, 4);
        }
        f_msg(t, 9, &r);
    } else if (enc == ENC_FLOAT_DATA) { /* packed float_data */
        buf r = {0};
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            uint8_t le[4] = {u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff, u >> 24};
            put(&r, le, 4);
        }
        f_msg(t, 4, &r);
    } else if (enc == ENC_FP16_RAW) {
        buf r = {0};
        for (size_t i = 0; i < n; i++) {
            uint16_t h = to_half(v[i]);
            uint8_t le[2] = {h & 0xff, h >> 8};
            put(&r, le, 2);
        }
        f_msg(t, 9, &r);
    } else { /* float16 bit patterns in int32_data (unpacked) */
        for (size_t i = 0; i < n; i++) f_varint(t, 5, to_half(v[i]));
    }
}

static void init_f32(buf *g, const char *name, int nd, const int64_t *dims, const float *v, int enc)
{
    buf t = {0};
    tensor_msg(&t, name, nd, dims, v, enc);
    f_msg(g, 5, &t);
}

static void init_i64(buf *g, const char *name, int n, const int64_t *v)
{
    buf t = {0};
    int64_t d = n;
    f_varint(&t, 1, (uint64_t)d);
    f_varint(&t, 2, 7);
    f_str(&t, 8, name);
    buf r = {0};
    for (int i = 0; i < n; i++) varint(&r, (uint64_t)v[i]);
    f_msg(&t, 7, &r);
    f_msg(g, 5, &t);
}

static void attr_i(buf *nd, const char *name, int64_t v)
{
    buf a = {0};
    f_str(&a, 1, name);
    f_varint(&a, 3, (uint64_t)v);
    f_varint(&a, 20, 2);
    f_msg(nd, 5, &a);
}

static void attr_f(buf *nd, const char *name, float v)
{
    buf a = {0};
    f_str(&a, 1, name);
    f_float(&a, 2, v);
    f_varint(&a, 20, 1);
    f_msg(nd, 5, &a);
}

static void attr_ints(buf *nd, const char *name, int n, const int64_t *v)
{
    buf a = {0};
    f_str(&a, 1, name);
    for (int i = 0; i < n; i++) f_varint(&a, 8, (uint64_t)v[i]);
    f_varint(&a, 20, 7);
    f_msg(nd, 5, &a);
}

/* node: inputs and outputs as "a,b,c" ("" entries allowed: absent input) */
static void node(buf *g, const char *op, const char *name, const char *ins, const char *outs, buf *attrs)
{
    buf n = {0};
    char tmp[256];
    const char *lists[2] = {ins, outs};
    for (int k = 0; k < 2; k++) {
        snprintf(tmp, sizeof tmp, "%s", lists[k]);
        char *s = tmp;
        for (;;) {
            char *comma = strchr(s, ',');
            if (comma) *comma = 0;
            f_str(&n, k == 0 ? 1 : 2, s);
            if (!comma) break;
            s = comma + 1;
        }
    }
    f_str(&n, 3, name);
    f_str(&n, 4, op);
    if (attrs && attrs->n) put(&n, attrs->p, attrs->n);
    if (attrs) {
        free(attrs->p);
        memset(attrs, 0, sizeof *attrs);
    }
    f_msg(g, 1, &n);
}

static void value_info(buf *g, int field, const char *name, int nd, const int64_t *dims)
{
    buf shape = {0}, tt = {0}, ty = {0}, vi = {0};
    for (int i = 0; i < nd; i++) {
        buf d = {0};
        if (dims[i] >= 0) f_varint(&d, 1, (uint64_t)dims[i]);
        else f_str(&d, 2, "N");
        f_msg(&shape, 1, &d);
    }
    f_varint(&tt, 1, 1);
    f_msg(&tt, 2, &shape);
    f_msg(&ty, 1, &tt);
    f_str(&vi, 1, name);
    f_msg(&vi, 2, &ty);
    f_msg(g, field, &vi);
}

static void model(buf *out, buf *graph, int opset)
{
    buf os = {0};
    f_varint(out, 1, 8);
    f_str(out, 2, "test_onnx_import");
    f_msg(out, 7, graph);
    f_str(&os, 1, "");
    f_varint(&os, 2, (uint64_t)opset);
    f_msg(out, 8, &os);
}

/* With DL_ONNX_CORPUS_DIR set, every model built here is also written
 * there (how tests/fuzz/corpus/onnx/ was seeded). */
static void dump(const char *name, const buf *b)
{
    const char *dir = getenv("DL_ONNX_CORPUS_DIR");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b->p, 1, b->n, f);
    fclose(f);
}

/* ------------------------------------------------------------ reference (NCHW, double) */

static uint64_t g_rng = 12345;
static float frand(void) /* multiples of 1/64 in [-1, 1): exact in float16 */
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int)((g_rng >> 33) % 128) - 64) / 64.f;
}

static void fill(float *v, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) v[i] = frand() * scale;
}

/* conv: in [C][H][W] -> out [M][OH][OW] */
static void ref_conv(const double *in, int C, int H, int W, const float *w, const float *b, int M, int KH, int KW,
                     int S, int pt, int pl, int pb, int pr, int dil, int group, double *out, int *OH, int *OW)
{
    int ekh = dil * (KH - 1) + 1, ekw = dil * (KW - 1) + 1;
    int oh = (H + pt + pb - ekh) / S + 1, ow = (W + pl + pr - ekw) / S + 1;
    int icg = C / group, ocg = M / group;
    for (int m = 0; m < M; m++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                int gr = m / ocg;
                double acc = b ? b[m] : 0;
                for (int i = 0; i < icg; i++)
                    for (int ky = 0; ky < KH; ky++)
                        for (int kx = 0; kx < KW; kx++) {
                            int iy = y * S - pt + ky * dil, ix = x * S - pl + kx * dil;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            acc += in[((size_t)(gr * icg + i) * H + iy) * W + ix] *
                                   w[(((size_t)m * icg + i) * KH + ky) * KW + kx];
                        }
                out[((size_t)m * oh + y) * ow + x] = acc;
            }
    *OH = oh;
    *OW = ow;
}

static double hsig(double x) { double r = x + 3; return (r < 0 ? 0 : r > 6 ? 6 : r) / 6; }
static double sigm(double x) { return 1 / (1 + exp(-x)); }

/* Import bytes, run on in_nchw [3][H][W], return logits (malloc'd). */
static float *run_onnx(const buf *b, const double *in_nchw, int H, int W, int *k, dl_error *err)
{
    dl_graph g;
    if (dl_onnx_to_graph(b->p, b->n, 0, 0, &g, err)) return NULL;
    float *x = malloc(sizeof(float) * 3 * H * W);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) x[((size_t)y * W + xx) * 3 + c] = (float)in_nchw[((size_t)c * H + y) * W + xx];
    dl_exec e;
    float *out = NULL;
    if (dl_exec_init(&e, &g, 1, err) == 0 && dl_exec_forward(&e, x, -1, err) == 0) {
        *k = g.nodes[g.output].c;
        out = malloc(sizeof(float) * *k);
        memcpy(out, e.act[g.output], sizeof(float) * *k);
    }
    dl_exec_free(&e);
    dl_graph_free(&g);
    free(x);
    return out;
}

static double compare(const char *what, const float *got, const double *ref, int k)
{
    double lo = ref[0], hi = ref[0], worst = 0;
    for (int i = 0; i < k; i++) {
        lo = fmin(lo, ref[i]);
        hi = fmax(hi, ref[i]);
        worst = fmax(worst, fabs(got[i] - ref[i]));
    }
    double rel = worst / fmax(hi - lo, 1e-9);
    printf("%-40s max |diff| %.3e, logit range %.3f, relative %.2e\n", what, worst, hi - lo, rel);
    EXPECT(rel < 1e-5, "%s: logits differ from the reference by %.3e (relative %.2e)", what, worst, rel);
    return rel;
}

/* ------------------------------------------------------------ model 1: conv + bn + relu + gap + gemm */

typedef struct {
    float cw[4 * 3 * 3 * 3], cb[4], bs[4], bb[4], bm[4], bv[4], gw[5 * 4], gb[5];
} m1_weights;

static void build_m1(buf *out, const m1_weights *w, int opset, bool softmax)
{
    buf g = {0}, a = {0};
    int64_t in_d[4] = {-1, 3, 8, 8};
    value_info(&g, 11, "image", 4, in_d);
    int64_t cwd[4] = {4, 3, 3, 3}, c4[1] = {4}, gwd[2] = {5, 4}, c5[1] = {5};
    init_f32(&g, "conv.w", 4, cwd, w->cw, ENC_RAW);
    init_f32(&g, "conv.b", 1, c4, w->cb, ENC_FLOAT_DATA);
    init_f32(&g, "bn.s", 1, c4, w->bs, ENC_RAW);
    init_f32(&g, "bn.b", 1, c4, w->bb, ENC_RAW);
    init_f32(&g, "bn.m", 1, c4, w->bm, ENC_FLOAT_DATA);
    init_f32(&g, "bn.v", 1, c4, w->bv, ENC_RAW);
    init_f32(&g, "fc.w", 2, gwd, w->gw, ENC_FP16_RAW);
    init_f32(&g, "fc.b", 1, c5, w->gb, ENC_FP16_INT32);
    int64_t k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1}, s1[2] = {1, 1};
    attr_ints(&a, "kernel_shape", 2, k3);
    attr_ints(&a, "pads", 4, p1);
    attr_ints(&a, "strides", 2, s1);
    attr_i(&a, "group", 1);
    node(&g, "Conv", "conv", "image,conv.w,conv.b", "c1", &a);
    attr_f(&a, "epsilon", 1e-3f);
    node(&g, "BatchNormalization", "bn", "c1,bn.s,bn.b,bn.m,bn.v", "b1", &a);
    node(&g, "Relu", "relu", "b1", "r1", NULL);
    node(&g, "GlobalAveragePool", "gap", "r1", "p1", NULL);
    attr_i(&a, "axis", 1);
    node(&g, "Flatten", "flat", "p1", "f1", &a);
    attr_i(&a, "transB", 1);
    node(&g, "Gemm", "fc", "f1,fc.w,fc.b", softmax ? "logits" : "out", &a);
    if (softmax) node(&g, "Softmax", "prob", "logits", "out", NULL);
    int64_t out_d[2] = {-1, 5};
    value_info(&g, 12, "out", 2, out_d);
    model(out, &g, opset);
}

static void ref_m1(const m1_weights *w, const double *in, double *logits)
{
    double c1[4 * 8 * 8];
    int oh, ow;
    ref_conv(in, 3, 8, 8, w->cw, w->cb, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, c1, &oh, &ow);
    double pooled[4];
    for (int c = 0; c < 4; c++) {
        double s = 0;
        for (int p = 0; p < 64; p++) {
            double v = (c1[c * 64 + p] - w->bm[c]) / sqrt((double)w->bv[c] + 1e-3) * w->bs[c] + w->bb[c];
            s += v > 0 ? v : 0;
        }
        pooled[c] = s / 64;
    }
    for (int k = 0; k < 5; k++) {
        double acc = w->gb[k];
        for (int c = 0; c < 4; c++) acc += w->gw[k * 4 + c] * pooled[c];
        logits[k] = acc;
    }
}

/* ------------------------------------------------------------ model 2: depthwise + dilation + relu6 + mean + matmul */

typedef struct {
    float pw[6 * 3], pb[6], dw[6 * 3 * 3], db[6], xw[6 * 3 * 3], mw[6 * 3], mb[3];
} m2_weights;

static void build_m2(buf *out, const m2_weights *w, int opset)
{
    buf g = {0}, a = {0};
    int64_t in_d[4] = {1, 3, 9, 9};
    value_info(&g, 11, "x", 4, in_d);
    int64_t pwd[4] = {6, 3, 1, 1}, c6[1] = {6}, dwd[4] = {6, 1, 3, 3}, xwd[4] = {6, 1, 3, 3}, mwd[2] = {6, 3}, c3[1] = {3};
    init_f32(&g, "pw.w", 4, pwd, w->pw, ENC_RAW);
    init_f32(&g, "pw.b", 1, c6, w->pb, ENC_RAW);
    init_f32(&g, "dw.w", 4, dwd, w->dw, ENC_FLOAT_DATA);
    init_f32(&g, "dw.b", 1, c6, w->db, ENC_RAW);
    init_f32(&g, "dil.w", 4, xwd, w->xw, ENC_RAW);
    init_f32(&g, "mm.w", 2, mwd, w->mw, ENC_RAW);
    init_f32(&g, "mm.b", 1, c3, w->mb, ENC_RAW);
    float lo = 0, hi = 6;
    init_f32(&g, "six", 0, NULL, &hi, ENC_RAW);
    int64_t k1[2] = {1, 1}, k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1}, s2[2] = {2, 2}, d2[2] = {2, 2}, ax[2] = {2, 3};
    attr_ints(&a, "kernel_shape", 2, k1);
    node(&g, "Conv", "pw", "x,pw.w,pw.b", "a", &a);
    node(&g, "Clip", "relu6a", "a,zero,six", "a6", NULL);
    attr_ints(&a, "kernel_shape", 2, k3);
    attr_ints(&a, "pads", 4, p1);
    attr_ints(&a, "strides", 2, s2);
    attr_i(&a, "group", 6);
    node(&g, "Conv", "dw", "a6,dw.w,dw.b", "b", &a);
    node(&g, "Clip", "relu6b", "b,zero,six", "b6", NULL);
    attr_ints(&a, "dilations", 2, d2);
    attr_ints(&a, "pads", 4, p1);
    attr_i(&a, "group", 6);
    node(&g, "Conv", "dil", "b6,dil.w", "d", &a); /* no bias */
    attr_ints(&a, "axes", 2, ax);
    attr_i(&a, "keepdims", 0);
    node(&g, "ReduceMean", "mean", "d", "m", &a);
    node(&g, "MatMul", "mm", "m,mm.w", "mmo", NULL);
    node(&g, "Add", "mmb", "mmo,mm.b", "y", NULL);
    int64_t out_d[2] = {1, 3};
    value_info(&g, 12, "y", 2, out_d);
    /* the clip bounds come from a Constant node placed first */
    buf g2 = {0}, cn = {0}, t = {0}, at = {0};
    tensor_msg(&t, "zero", 0, NULL, &lo, ENC_RAW);
    f_str(&at, 1, "value");
    f_msg(&at, 5, &t);
    f_varint(&at, 20, 4);
    f_str(&cn, 2, "zero");
    f_str(&cn, 3, "const0");
    f_str(&cn, 4, "Constant");
    f_msg(&cn, 5, &at);
    f_msg(&g2, 1, &cn);
    put(&g2, g.p, g.n);
    free(g.p);
    model(out, &g2, opset);
}

static void ref_m2(const m2_weights *w, const double *in, double *logits)
{
    double a[6 * 81], b[6 * 25], d[6 * 25];
    int oh, ow;
    ref_conv(in, 3, 9, 9, w->pw, w->pb, 6, 1, 1, 1, 0, 0, 0, 0, 1, 1, a, &oh, &ow);
    for (int i = 0; i < 6 * 81; i++) a[i] = a[i] < 0 ? 0 : a[i] > 6 ? 6 : a[i];
    ref_conv(a, 6, 9, 9, w->dw, w->db, 6, 3, 3, 2, 1, 1, 1, 1, 1, 6, b, &oh, &ow);
    for (int i = 0; i < 6 * 25; i++) b[i] = b[i] < 0 ? 0 : b[i] > 6 ? 6 : b[i];
    ref_conv(b, 6, 5, 5, w->xw, NULL, 6, 3, 3, 1, 1, 1, 1, 1, 2, 6, d, &oh, &ow);
    double m[6];
    for (int c = 0; c < 6; c++) {
        m[c] = 0;
        for (int p = 0; p < oh * ow; p++) m[c] += d[c * oh * ow + p];
        m[c] /= oh * ow;
    }
    for (int k = 0; k < 3; k++) {
        double acc = w->mb[k];
        for (int c = 0; c < 6; c++) acc += m[c] * w->mw[c * 3 + k];
        logits[k] = acc;
    }
}

/* ------------------------------------------------------------ model 3: squeeze-excitation, hard-swish, SiLU */

typedef struct {
    float cw[8 * 3 * 3 * 3], cb[8], f1w[4 * 8], f1b[4], f2w[8 * 4], f2b[8], scale[8], gw[4 * 8];
} m3_weights;

static void build_m3(buf *out, const m3_weights *w, int opset, bool hardswish_op)
{
    buf g = {0}, a = {0};
    int64_t in_d[4] = {1, 3, 6, 6};
    value_info(&g, 11, "x", 4, in_d);
    int64_t cwd[4] = {8, 3, 3, 3}, c8[1] = {8}, f1d[4] = {4, 8, 1, 1}, c4[1] = {4}, f2d[4] = {8, 4, 1, 1},
            sd[4] = {1, 8, 1, 1}, gwd[2] = {8, 4};
    init_f32(&g, "c.w", 4, cwd, w->cw, ENC_RAW);
    init_f32(&g, "c.b", 1, c8, w->cb, ENC_RAW);
    init_f32(&g, "f1.w", 4, f1d, w->f1w, ENC_RAW);
    init_f32(&g, "f1.b", 1, c4, w->f1b, ENC_RAW);
    init_f32(&g, "f2.w", 4, f2d, w->f2w, ENC_RAW);
    init_f32(&g, "f2.b", 1, c8, w->f2b, ENC_RAW);
    init_f32(&g, "s", 4, sd, w->scale, ENC_RAW);
    init_f32(&g, "fc.w", 2, gwd, w->gw, ENC_RAW);
    int64_t k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1}, k1[2] = {1, 1};
    attr_ints(&a, "kernel_shape", 2, k3);
    attr_ints(&a, "pads", 4, p1);
    node(&g, "Conv", "conv", "x,c.w,c.b", "c", &a);
    if (hardswish_op) {
        node(&g, "HardSwish", "hs", "c", "h", NULL);
    } else { /* x * HardSigmoid(x) */
        attr_f(&a, "alpha", 1.f / 6.f);
        attr_f(&a, "beta", 0.5f);
        node(&g, "HardSigmoid", "hs.gate", "c", "cg", &a);
        node(&g, "Mul", "hs", "c,cg", "h", NULL);
    }
    node(&g, "GlobalAveragePool", "se.pool", "h", "sp", NULL);
    attr_ints(&a, "kernel_shape", 2, k1);
    node(&g, "Conv", "se.fc1", "sp,f1.w,f1.b", "s1", &a);
    node(&g, "Relu", "se.relu", "s1", "s1r", NULL);
    node(&g, "Conv", "se.fc2", "s1r,f2.w,f2.b", "s2", NULL);
    attr_f(&a, "alpha", 1.f / 6.f);
    attr_f(&a, "beta", 0.5f);
    node(&g, "HardSigmoid", "se.gate", "s2", "sg", &a);
    node(&g, "Mul", "se.scale", "sg,h", "se", NULL);  /* gate first, as torchvision writes it */
    node(&g, "Sigmoid", "silu.gate", "se", "sig", NULL);
    node(&g, "Mul", "silu", "se,sig", "z", NULL);      /* SiLU */
    node(&g, "Mul", "chan", "z,s", "zs", NULL);        /* per-channel constant scale */
    node(&g, "Add", "res", "zs,h", "r", NULL);         /* residual */
    int64_t k2[2] = {2, 2}, s2[2] = {2, 2};
    attr_ints(&a, "kernel_shape", 2, k2);
    attr_ints(&a, "strides", 2, s2);
    node(&g, "AveragePool", "avg", "r", "ap", &a);
    node(&g, "GlobalAveragePool", "gap", "ap", "gp", NULL);
    int64_t ax[2] = {2, 3};
    buf ai = {0};
    init_i64(&g, "axes23", 2, ax);
    (void)ai;
    if (opset >= 13) node(&g, "Squeeze", "sq", "gp,axes23", "v", NULL);
    else {
        attr_ints(&a, "axes", 2, ax);
        node(&g, "Squeeze", "sq", "gp", "v", &a);
    }
    node(&g, "Dropout", "drop", "v", "vd", NULL);
    node(&g, "MatMul", "fc", "vd,fc.w", "y", NULL);
    int64_t out_d[2] = {1, 4};
    value_info(&g, 12, "y", 2, out_d);
    model(out, &g, opset);
}

static void ref_m3(const m3_weights *w, const double *in, double *logits)
{
    double c[8 * 36], h[8 * 36], r[8 * 36];
    int oh, ow;
    ref_conv(in, 3, 6, 6, w->cw, w->cb, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, c, &oh, &ow);
    for (int i = 0; i < 8 * 36; i++) h[i] = c[i] * hsig(c[i]);
    double sp[8], s1[4], sg[8];
    for (int k = 0; k < 8; k++) {
        sp[k] = 0;
        for (int p = 0; p < 36; p++) sp[k] += h[k * 36 + p];
        sp[k] /= 36;
    }
    for (int j = 0; j < 4; j++) {
        double acc = w->f1b[j];
        for (int k = 0; k < 8; k++) acc += w->f1w[j * 8 + k] * sp[k];
        s1[j] = acc > 0 ? acc : 0;
    }
    for (int k = 0; k < 8; k++) {
        double acc = w->f2b[k];
        for (int j = 0; j < 4; j++) acc += w->f2w[k * 4 + j] * s1[j];
        sg[k] = hsig(acc);
    }
    for (int k = 0; k < 8; k++)
        for (int p = 0; p < 36; p++) {
            double se = h[k * 36 + p] * sg[k];
            double z = se * sigm(se);
            r[k * 36 + p] = z * w->scale[k] + h[k * 36 + p];
        }
    double v[8];
    for (int k = 0; k < 8; k++) {
        double s = 0; /* 2x2 s2 average pool then the mean = the mean over the 6x6 map */
        for (int p = 0; p < 36; p++) s += r[k * 36 + p];
        v[k] = s / 36;
    }
    for (int j = 0; j < 4; j++) {
        double acc = 0;
        for (int k = 0; k < 8; k++) acc += v[k] * w->gw[k * 4 + j];
        logits[j] = acc;
    }
}

/* ------------------------------------------------------------ model 4: concatenation (DenseNet / SqueezeNet style) */

typedef struct {
    float aw[4 * 3 * 3 * 3], ab[4], bs[4], bb[4], bm[4], bv[4], bw[3 * 4], nbs[7], nbb[7], nbm[7], nbv[7],
        cw[2 * 7 * 3 * 3], fw[3 * 32], fb[3];
} m4_weights;

static void bn_attrs(buf *g, const char *p, int C, const float *s, const float *b, const float *m, const float *v)
{
    char n[32];
    int64_t d[1] = {C};
    snprintf(n, sizeof n, "%s.s", p);
    init_f32(g, n, 1, d, s, ENC_RAW);
    snprintf(n, sizeof n, "%s.b", p);
    init_f32(g, n, 1, d, b, ENC_RAW);
    snprintf(n, sizeof n, "%s.m", p);
    init_f32(g, n, 1, d, m, ENC_RAW);
    snprintf(n, sizeof n, "%s.v", p);
    init_f32(g, n, 1, d, v, ENC_RAW);
}

/* a0 = conv(x); e = [a0, x] (read before a0's BatchNorm: the norm must not
 * fold into the conv in place); ar = relu(bn(a0)); b = conv1x1(ar);
 * n = relu(bn([ar, b])) (BatchNorm after a concat: a node of its own);
 * c = conv(n); [c] alone; abc = [ar, b, c] (shares [ar, b]); [abc, e, abc]
 * (axis -3, a value twice); MaxPool 3x3 s2 ceil_mode; two pooled vectors
 * concatenated as [1,C] (axis 1); Gemm. */
static void build_m4(buf *out, const m4_weights *w, int opset)
{
    buf g = {0}, a = {0};
    int64_t in_d[4] = {1, 3, 6, 6};
    value_info(&g, 11, "x", 4, in_d);
    int64_t awd[4] = {4, 3, 3, 3}, c4[1] = {4}, bwd[4] = {3, 4, 1, 1}, cwd[4] = {2, 7, 3, 3}, fwd[2] = {3, 32}, c3[1] = {3};
    init_f32(&g, "a.w", 4, awd, w->aw, ENC_RAW);
    init_f32(&g, "a.b", 1, c4, w->ab, ENC_RAW);
    bn_attrs(&g, "bna", 4, w->bs, w->bb, w->bm, w->bv);
    init_f32(&g, "b.w", 4, bwd, w->bw, ENC_RAW);
    bn_attrs(&g, "bnab", 7, w->nbs, w->nbb, w->nbm, w->nbv);
    init_f32(&g, "c.w", 4, cwd, w->cw, ENC_RAW);
    init_f32(&g, "fc.w", 2, fwd, w->fw, ENC_RAW);
    init_f32(&g, "fc.b", 1, c3, w->fb, ENC_RAW);
    int64_t k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1}, s2[2] = {2, 2};
    attr_ints(&a, "kernel_shape", 2, k3);
    attr_ints(&a, "pads", 4, p1);
    node(&g, "Conv", "ca", "x,a.w,a.b", "a0", &a);
    attr_i(&a, "axis", 1);
    node(&g, "Concat", "early", "a0,x", "e", &a);
    node(&g, "BatchNormalization", "bn_a", "a0,bna.s,bna.b,bna.m,bna.v", "an", NULL);
    node(&g, "Relu", "relu_a", "an", "ar", NULL);
    node(&g, "Conv", "cb", "ar,b.w", "b", NULL);
    attr_i(&a, "axis", 1);
    node(&g, "Concat", "ab", "ar,b", "abv", &a);
    node(&g, "BatchNormalization", "bn_ab", "abv,bnab.s,bnab.b,bnab.m,bnab.v", "abn", NULL);
    node(&g, "Relu", "relu_ab", "abn", "n", NULL);
    attr_ints(&a, "pads", 4, p1);
    node(&g, "Conv", "cc", "n,c.w", "c", &a);
    attr_i(&a, "axis", 1);
    node(&g, "Concat", "single", "c", "c1", &a);
    attr_i(&a, "axis", 1);
    node(&g, "Concat", "abc", "ar,b,c1", "abcv", &a);
    attr_i(&a, "axis", -3);
    node(&g, "Concat", "dup", "abcv,e,abcv", "d", &a);
    attr_ints(&a, "kernel_shape", 2, k3);
    attr_ints(&a, "strides", 2, s2);
    attr_i(&a, "ceil_mode", 1);
    node(&g, "MaxPool", "mp", "d", "m", &a);
    node(&g, "GlobalAveragePool", "gap", "m", "gm", NULL);
    node(&g, "Flatten", "flat", "gm", "f", NULL);
    node(&g, "GlobalAveragePool", "gap2", "e", "ge", NULL);
    node(&g, "Flatten", "flat2", "ge", "f2", NULL);
    attr_i(&a, "axis", 1);
    node(&g, "Concat", "fc_in", "f,f2", "fi", &a);
    attr_i(&a, "transB", 1);
    node(&g, "Gemm", "fc", "fi,fc.w,fc.b", "y", &a);
    int64_t out_d[2] = {1, 3};
    value_info(&g, 12, "y", 2, out_d);
    model(out, &g, opset);
}

static void ref_bn(double *v, int C, int hw, const float *s, const float *b, const float *m, const float *var)
{
    for (int c = 0; c < C; c++)
        for (int p = 0; p < hw; p++)
            v[c * hw + p] = (v[c * hw + p] - m[c]) / sqrt((double)var[c] + 1e-5) * s[c] + b[c];
}

static void ref_m4(const m4_weights *w, const double *x, double *logits)
{
    enum { HW = 36 };
    double a0[4 * HW], ar[4 * HW], b[3 * HW], n[7 * HW], c[2 * HW], d[25 * HW], m[25 * 9];
    int oh, ow;
    ref_conv(x, 3, 6, 6, w->aw, w->ab, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, a0, &oh, &ow);
    memcpy(ar, a0, sizeof ar);
    ref_bn(ar, 4, HW, w->bs, w->bb, w->bm, w->bv);
    for (int i = 0; i < 4 * HW; i++) ar[i] = ar[i] > 0 ? ar[i] : 0;
    ref_conv(ar, 4, 6, 6, w->bw, NULL, 3, 1, 1, 1, 0, 0, 0, 0, 1, 1, b, &oh, &ow);
    memcpy(n, ar, sizeof ar); /* NCHW: channel blocks follow each other */
    memcpy(n + 4 * HW, b, sizeof b);
    ref_bn(n, 7, HW, w->nbs, w->nbb, w->nbm, w->nbv);
    for (int i = 0; i < 7 * HW; i++) n[i] = n[i] > 0 ? n[i] : 0;
    ref_conv(n, 7, 6, 6, w->cw, NULL, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, c, &oh, &ow);
    /* d = [ar b c | a0 x | ar b c] */
    double *p = d;
    const double *parts[8] = {ar, b, c, a0, x, ar, b, c};
    const int chans[8] = {4, 3, 2, 4, 3, 4, 3, 2};
    for (int k = 0; k < 8; k++) {
        memcpy(p, parts[k], sizeof(double) * (size_t)chans[k] * HW);
        p += chans[k] * HW;
    }
    /* 3x3 s2 max pool, ceil mode: 3x3 output, the last window clipped */
    for (int ch = 0; ch < 25; ch++)
        for (int oy = 0; oy < 3; oy++)
            for (int ox = 0; ox < 3; ox++) {
                double mx = -1e300;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = oy * 2 + ky, ix = ox * 2 + kx;
                        if (iy < 6 && ix < 6) mx = fmax(mx, d[ch * HW + iy * 6 + ix]);
                    }
                m[ch * 9 + oy * 3 + ox] = mx;
            }
    double f[32];
    for (int ch = 0; ch < 25; ch++) {
        double s = 0;
        for (int q = 0; q < 9; q++) s += m[ch * 9 + q];
        f[ch] = s / 9;
    }
    for (int ch = 0; ch < 7; ch++) { /* e = [a0, x] pooled */
        const double *src = ch < 4 ? a0 + ch * HW : x + (ch - 4) * HW;
        double s = 0;
        for (int q = 0; q < HW; q++) s += src[q];
        f[25 + ch] = s / HW;
    }
    for (int k = 0; k < 3; k++) {
        double acc = w->fb[k];
        for (int j = 0; j < 32; j++) acc += w->fw[k * 32 + j] * f[j];
        logits[k] = acc;
    }
}

/* ------------------------------------------------------------ hostile files */

static void expect_fail(const char *what, const uint8_t *p, size_t n, const char *needle)
{
    char nm[64];
    snprintf(nm, sizeof nm, "bad-%s", what);
    for (char *q = nm; *q; q++)
        if (*q == ' ' || *q == '(' || *q == ')') *q = '_';
    buf copy = {(uint8_t *)p, n, n};
    dump(nm, &copy);
    dl_graph g;
    dl_error err = {0};
    int r = dl_onnx_to_graph(p, n, 0, 0, &g, &err);
    EXPECT(r != 0, "%s: accepted", what);
    EXPECT(g.n_nodes == 0 && g.n_tensors == 0, "%s: graph not left empty", what);
    EXPECT(err.message[0] != 0, "%s: no message", what);
    if (needle) EXPECT(strstr(err.message, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.message, needle);
    if (r != 0) printf("  refused %-28s %s\n", what, err.message);
    dl_graph_free(&g);
}

static void hostile(const buf *good)
{
    /* truncated at every length: each refused, cleanly */
    int refused = 0;
    for (size_t n = 0; n < good->n; n++) {
        dl_graph g;
        dl_error err = {0};
        if (dl_onnx_to_graph(good->p, n, 0, 0, &g, &err) != 0) {
            refused++;
            EXPECT(err.message[0] && g.n_nodes == 0, "truncated at %zu: no message or graph kept", n);
        }
        dl_graph_free(&g);
    }
    printf("truncations: %d of %zu prefixes refused\n", refused, good->n);
    EXPECT(refused == (int)good->n, "only %d of %zu truncated files were refused", refused, good->n);
    expect_fail("truncated (half)", good->p, good->n / 2, NULL);

    /* wrong wire type: the graph (field 7) as a varint */
    {
        buf b = {0};
        f_varint(&b, 1, 8);
        f_varint(&b, 7, 5);
        expect_fail("graph as varint", b.p, b.n, "wire type");
        free(b.p);
    }
    /* a node's op_type as a fixed32 inside an otherwise valid model */
    {
        buf g = {0}, n = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4};
        value_info(&g, 11, "x", 4, d);
        f_str(&n, 1, "x");
        f_str(&n, 2, "y");
        f_float(&n, 4, 1.f);
        f_msg(&g, 1, &n);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("op_type as fixed32", b.p, b.n, "op_type");
        free(b.p);
    }
    /* huge declared length */
    {
        buf b = {0};
        f_varint(&b, 1, 8);
        tag(&b, 7, 2);
        varint(&b, 0xFFFFFFFFFFull);
        uint8_t pad[16] = {0};
        put(&b, pad, sizeof pad);
        expect_fail("huge length", b.p, b.n, "declares");
        free(b.p);
    }
    /* an overlong varint */
    {
        uint8_t v[12] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00};
        expect_fail("overlong varint", v, sizeof v, "varint");
    }
    /* a group wire type */
    {
        uint8_t v[2] = {(7 << 3) | 3, 0};
        expect_fail("group", v, sizeof v, "wire type 3");
    }
    /* huge dims on an initializer that is used (decoded before its shape is compared) */
    {
        buf g = {0}, t = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4};
        float three[3] = {1, 1, 1};
        value_info(&g, 11, "x", 4, d);
        f_varint(&t, 1, 1u << 31);
        f_varint(&t, 1, 1u << 31);
        f_varint(&t, 1, 1u << 31);
        f_varint(&t, 2, 1);
        f_str(&t, 8, "s");
        f_bytes(&t, 9, "abcd", 4);
        f_msg(&g, 5, &t);
        init_f32(&g, "b", 1, (int64_t[]){3}, three, ENC_RAW);
        node(&g, "BatchNormalization", "bn", "x,s,b,b,b", "y", NULL);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("huge dims", b.p, b.n, "limit");
        free(b.p);
    }
    /* raw_data shorter than the shape */
    {
        buf g = {0}, a = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4}, wd[4] = {2, 3, 1, 1};
        float w[3] = {1, 2, 3};
        value_info(&g, 11, "x", 4, d);
        init_f32(&g, "w", 1, (int64_t[]){3}, w, ENC_RAW);
        /* patch: declare the conv weight [2,3,1,1] but store 3 floats */
        buf t = {0};
        for (int i = 0; i < 4; i++) f_varint(&t, 1, (uint64_t)wd[i]);
        f_varint(&t, 2, 1);
        f_str(&t, 8, "w2");
        f_bytes(&t, 9, w, sizeof w);
        f_msg(&g, 5, &t);
        node(&g, "Conv", "conv", "x,w2", "y", &a);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("short raw_data", b.p, b.n, "raw_data is 12 bytes");
        free(b.p);
    }
    /* external data */
    {
        buf g = {0}, t = {0}, e = {0}, a = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4};
        value_info(&g, 11, "x", 4, d);
        for (int i = 0; i < 4; i++) f_varint(&t, 1, i == 1 ? 3 : (i == 0 ? 2 : 1));
        f_varint(&t, 2, 1);
        f_str(&t, 8, "w");
        f_str(&e, 1, "location");
        f_str(&e, 2, "weights.bin");
        f_msg(&t, 13, &e);
        f_varint(&t, 14, 1);
        f_msg(&g, 5, &t);
        node(&g, "Conv", "conv", "x,w", "y", &a);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("external data", b.p, b.n, "external file ('weights.bin')");
        free(b.p);
    }
    /* unsupported op: named with node and opset */
    {
        buf g = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4};
        value_info(&g, 11, "x", 4, d);
        node(&g, "Tanh", "my_tanh", "x", "y", NULL);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("unsupported op", b.p, b.n, "'my_tanh' (Tanh, opset 13): operator is not supported");
        free(b.p);
    }
    /* Concat: along H, of a constant, without axis, of 4097 inputs */
    {
        buf g = {0}, a = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4}, od[4] = {1, 3, 8, 4};
        float c[48] = {0};
        value_info(&g, 11, "x", 4, d);
        attr_i(&a, "axis", 2);
        node(&g, "Concat", "cat", "x,x", "y", &a);
        value_info(&g, 12, "y", 4, od);
        model(&b, &g, 11);
        expect_fail("concat along H", b.p, b.n, "'cat' (Concat, opset 11): axis 2");
        free(b.p);
        memset(&b, 0, sizeof b);
        value_info(&g, 11, "x", 4, d);
        init_f32(&g, "k", 4, d, c, ENC_RAW);
        attr_i(&a, "axis", 1);
        node(&g, "Concat", "cat", "x,k", "y", &a);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("concat of a constant", b.p, b.n, "is a constant");
        free(b.p);
        memset(&b, 0, sizeof b);
        value_info(&g, 11, "x", 4, d);
        node(&g, "Concat", "cat", "x,x", "y", NULL);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("concat without axis", b.p, b.n, "axis is missing");
        free(b.p);
        memset(&b, 0, sizeof b);
        value_info(&g, 11, "x", 4, d);
        buf n = {0};
        for (int i = 0; i < 4097; i++) f_str(&n, 1, "x");
        f_str(&n, 2, "y");
        f_str(&n, 3, "wide");
        f_str(&n, 4, "Concat");
        attr_i(&n, "axis", 1);
        f_msg(&g, 1, &n);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("concat of 4097", b.p, b.n, "4097 inputs exceed the limit of 4096");
        free(b.p);
    }
    /* an input that nothing defines (or out of order) */
    {
        buf g = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4};
        value_info(&g, 11, "x", 4, d);
        node(&g, "Relu", "r", "later", "y", NULL);
        node(&g, "Relu", "r2", "x", "later", NULL);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("unsorted", b.p, b.n, "topological");
        free(b.p);
    }
    /* a value defined twice */
    {
        buf g = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4};
        value_info(&g, 11, "x", 4, d);
        node(&g, "Relu", "r", "x", "y", NULL);
        node(&g, "Relu", "r2", "x", "y", NULL);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 13);
        expect_fail("defined twice", b.p, b.n, "defined twice");
        free(b.p);
    }
    /* unsupported opset and a missing graph */
    {
        buf g = {0}, b = {0};
        int64_t d[4] = {1, 3, 4, 4};
        value_info(&g, 11, "x", 4, d);
        node(&g, "Relu", "r", "x", "y", NULL);
        value_info(&g, 12, "y", 4, d);
        model(&b, &g, 99);
        expect_fail("opset 99", b.p, b.n, "opset 99");
        free(b.p);
        buf m = {0};
        f_varint(&m, 1, 8);
        expect_fail("no graph", m.p, m.n, "no graph");
        free(m.p);
        expect_fail("empty", (const uint8_t *)"", 0, "empty");
    }
    /* a symbolic input size needs --size */
    {
        buf g = {0}, b = {0};
        int64_t d[4] = {-1, 3, -1, -1}, od[2] = {1, 3};
        value_info(&g, 11, "x", 4, d);
        node(&g, "GlobalAveragePool", "gap", "x", "p", NULL);
        node(&g, "Flatten", "f", "p", "y", NULL);
        value_info(&g, 12, "y", 2, od);
        model(&b, &g, 13);
        expect_fail("symbolic size", b.p, b.n, "--size");
        dl_graph gr;
        dl_error err = {0};
        /* given a size it imports (no weights: the output is the pooled input) */
        int r = dl_onnx_to_graph(b.p, b.n, 5, 4, &gr, &err);
        EXPECT(r == 0 && gr.nodes[0].w == 5 && gr.nodes[0].h == 4 && gr.n_nodes == 2, "--size 5x4: %s", err.message);
        dl_graph_free(&gr);
        free(b.p);
    }
}

/* ------------------------------------------------------------ the whole import */

/* import -> model file -> dl_model_export_onnx -> import again: the same
 * graph and the same logits (the exporter writes sigmoid/hsigmoid/mul too). */
static void round_trip(const char *what, const buf *mb, const double *in, int H, int W)
{
    char dir[] = "/tmp/dl_onnx_rt_XXXXXX";
    if (!mkdtemp(dir)) return;
    char a[256], b[256], c[256];
    snprintf(a, sizeof a, "%s/a.onnx", dir);
    snprintf(b, sizeof b, "%s/a.safetensors", dir);
    snprintf(c, sizeof c, "%s/b.onnx", dir);
    FILE *f = fopen(a, "wb");
    fwrite(mb->p, 1, mb->n, f);
    fclose(f);
    dl_error err = {0};
    dl_model *m = NULL;
    uint8_t *data = NULL;
    size_t size = 0;
    int k1 = 0, k2 = 0;
    EXPECT(dl_import_onnx(a, NULL, b, &err) == 0 && (m = dl_model_load(b, &err)) != NULL &&
               dl_model_export_onnx(m, c, &err) == 0 && dl_read_file(c, 1u << 26, &data, &size, &err) == 0,
           "round trip: %s", err.message);
    if (data) {
        buf one = {(uint8_t *)mb->p, mb->n, mb->n}, two = {data, size, size};
        float *l1 = run_onnx(&one, in, H, W, &k1, &err);
        float *l2 = run_onnx(&two, in, H, W, &k2, &err);
        EXPECT(l1 && l2 && k1 == k2, "round trip run: %s", err.message);
        double worst = 0;
        for (int i = 0; l1 && l2 && i < k1; i++) worst = fmax(worst, fabs(l1[i] - l2[i]));
        printf("%-40s max |diff| %.3e after export + re-import\n", what, worst);
        EXPECT(worst < 1e-6, "round trip differs by %g", worst);
        free(l1);
        free(l2);
    }
    free(data);
    dl_model_free(m);
    unlink(a);
    unlink(b);
    unlink(c);
    rmdir(dir);
}

static void whole_import(const buf *m1, const m1_weights *w, const double *in)
{
    char dir[] = "/tmp/dl_onnx_XXXXXX";
    if (!mkdtemp(dir)) {
        EXPECT(0, "mkdtemp");
        return;
    }
    char onnx[256], out[256], cls[256], cls2[256];
    snprintf(onnx, sizeof onnx, "%s/m.onnx", dir);
    snprintf(out, sizeof out, "%s/m.safetensors", dir);
    snprintf(cls, sizeof cls, "%s/classes.txt", dir);
    snprintf(cls2, sizeof cls2, "%s/classes.json", dir);
    FILE *f = fopen(onnx, "wb");
    fwrite(m1->p, 1, m1->n, f);
    fclose(f);
    f = fopen(cls, "w");
    fputs("akiec\r\nbcc\nbkl\n\ndf\nmel\n", f);
    fclose(f);
    f = fopen(cls2, "w");
    fputs(" [\"a\", \"b\", \"c\", \"d\"]", f);
    fclose(f);

    dl_onnx_import_options o;
    dl_onnx_import_options_defaults(&o);
    o.classes_path = cls;
    o.name = "tiny";
    o.resize = "crop";
    o.mean[0] = 0.5f;
    o.std[0] = 0.25f;
    o.scale = 1.f;
    dl_error err = {0};
    int r = dl_import_onnx(onnx, &o, out, &err);
    EXPECT(r == 0, "import: %s", err.message);
    dl_model *m = r == 0 ? dl_model_load(out, &err) : NULL;
    EXPECT(m != NULL, "load: %s", err.message);
    if (m) {
        EXPECT(m->num_classes == 5 && !strcmp(m->class_names[0], "akiec") && !strcmp(m->class_names[4], "mel"),
              "class names");
        EXPECT(!strcmp(m->name, "tiny"), "name %s", m->name);
        EXPECT(!strcmp(m->pre.resize, "center_crop"), "resize %s", m->pre.resize);
        EXPECT(m->pre.width == 8 && m->pre.height == 8, "size %dx%d", m->pre.width, m->pre.height);
        EXPECT(fabsf(m->pre.mean[0] - 127.5f) < 1e-4f && fabsf(m->pre.std[0] - 63.75f) < 1e-4f,
              "mean/std in pixel units: %g %g", m->pre.mean[0], m->pre.std[0]);
        EXPECT(fabsf(m->pre.mean[1] - 0.456f * 255) < 1e-3f && fabsf(m->pre.std[2] - 0.225f * 255) < 1e-3f,
              "default mean/std");
        EXPECT(m->graph.features >= 0 && m->graph.nodes[m->graph.features].op == DL_OP_GAP, "features node");
        /* the loaded model computes the same logits */
        dl_exec e;
        float x[3 * 64];
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 64; p++) x[p * 3 + c] = (float)in[c * 64 + p];
        if (dl_exec_init(&e, &m->graph, 1, &err) == 0 && dl_exec_forward(&e, x, -1, &err) == 0) {
            double ref[5];
            ref_m1(w, in, ref);
            compare("m1 via the model file", e.act[m->graph.output], ref, 5);
        } else {
            EXPECT(0, "run: %s", err.message);
        }
        dl_exec_free(&e);
        dl_model_free(m);
    }
    /* scale: a model taking 0..255 */
    o.classes_path = NULL;
    o.scale = 255.f;
    o.mean[0] = o.mean[1] = o.mean[2] = 0.f;
    o.std[0] = o.std[1] = o.std[2] = 1.f;
    o.resize = NULL;
    r = dl_import_onnx(onnx, &o, out, &err);
    m = r == 0 ? dl_model_load(out, &err) : NULL;
    EXPECT(m && fabsf(m->pre.mean[0]) < 1e-6f && fabsf(m->pre.std[0] - 1.f) < 1e-6f && !strcmp(m->class_names[3], "class_3") &&
              !strcmp(m->pre.resize, "squash"),
          "scale 255: %s", err.message);
    dl_model_free(m);
    /* class count mismatch, refused with the counts */
    o.classes_path = cls2;
    r = dl_import_onnx(onnx, &o, out, &err);
    EXPECT(r != 0 && strstr(err.message, "4 class names for a model with 5 outputs"), "class mismatch: %s", err.message);
    o.classes_path = NULL;
    o.resize = "stretch";
    r = dl_import_onnx(onnx, &o, out, &err);
    EXPECT(r != 0 && strstr(err.message, "resize"), "resize stretch: %s", err.message);
    o.resize = "pad";
    r = dl_import_onnx(onnx, &o, out, &err);
    m = r == 0 ? dl_model_load(out, &err) : NULL;
    EXPECT(m && !strcmp(m->pre.resize, "pad"), "resize pad: %s", err.message);
    dl_model_free(m);
    unlink(onnx);
    unlink(out);
    unlink(cls);
    unlink(cls2);
    rmdir(dir);
}

int main(void)
{
    double in1[3 * 64], in2[3 * 81], in3[3 * 36];
    for (int i = 0; i < 3 * 64; i++) in1[i] = frand() * 2;
    for (int i = 0; i < 3 * 81; i++) in2[i] = frand() * 2;
    for (int i = 0; i < 3 * 36; i++) in3[i] = frand() * 2;
    dl_error err = {0};
    int k = 0;

    m1_weights w1;
    fill(w1.cw, 108, 0.5f);
    fill(w1.cb, 4, 0.5f);
    fill(w1.bs, 4, 1.f);
    fill(w1.bb, 4, 0.5f);
    fill(w1.bm, 4, 0.5f);
    for (int i = 0; i < 4; i++) w1.bv[i] = 0.5f + (frand() + 1.f) / 2;
    fill(w1.gw, 20, 1.f);
    fill(w1.gb, 5, 1.f);
    double ref1[5];
    ref_m1(&w1, in1, ref1);
    buf b1 = {0};
    for (int variant = 0; variant < 3; variant++) {
        int opset = variant == 0 ? 13 : variant == 1 ? 11 : 17;
        buf b = {0};
        build_m1(&b, &w1, opset, variant == 2);
        float *got = run_onnx(&b, in1, 8, 8, &k, &err);
        char dn[32];
        snprintf(dn, sizeof dn, "m1-opset%d", opset);
        dump(dn, &b);
        EXPECT(got != NULL, "m1 opset %d: %s", opset, err.message);
        if (got) {
            EXPECT(k == 5, "m1: %d logits", k);
            char what[64];
            snprintf(what, sizeof what, "conv+bn+relu+gap+gemm opset %d%s", opset, variant == 2 ? " +softmax" : "");
            compare(what, got, ref1, 5);
        }
        free(got);
        if (variant == 0) b1 = b;
        else free(b.p);
    }
    /* BN folded: conv, gap, dense and nothing else */
    {
        dl_graph g;
        if (dl_onnx_to_graph(b1.p, b1.n, 0, 0, &g, &err) == 0) {
            EXPECT(g.n_nodes == 4 && g.nodes[1].op == DL_OP_CONV2D && g.nodes[1].act == DL_ACT_RELU &&
                      g.nodes[2].op == DL_OP_GAP && g.nodes[3].op == DL_OP_DENSE,
                  "m1 graph: %d nodes (BatchNorm and ReLU should fold into the conv)", g.n_nodes);
            dl_graph_free(&g);
        }
    }

    m2_weights w2;
    fill(w2.pw, 18, 1.f);
    fill(w2.pb, 6, 1.f);
    fill(w2.dw, 54, 1.f);
    fill(w2.db, 6, 1.f);
    fill(w2.xw, 54, 1.f);
    fill(w2.mw, 18, 1.f);
    fill(w2.mb, 3, 1.f);
    double ref2[3];
    ref_m2(&w2, in2, ref2);
    buf b2 = {0};
    build_m2(&b2, &w2, 13);
    dump("m2-depthwise", &b2);
    float *got = run_onnx(&b2, in2, 9, 9, &k, &err);
    EXPECT(got != NULL, "m2: %s", err.message);
    if (got) compare("depthwise s2 + dilated dw + relu6 + matmul", got, ref2, 3);
    free(got);
    free(b2.p);

    m3_weights w3;
    fill(w3.cw, 216, 1.f);
    fill(w3.cb, 8, 1.f);
    fill(w3.f1w, 32, 1.f);
    fill(w3.f1b, 4, 1.f);
    fill(w3.f2w, 32, 1.f);
    fill(w3.f2b, 8, 2.f);
    fill(w3.scale, 8, 1.f);
    fill(w3.gw, 32, 1.f);
    double ref3[4];
    ref_m3(&w3, in3, ref3);
    for (int variant = 0; variant < 3; variant++) {
        buf b = {0};
        int opset = variant == 2 ? 11 : 14;
        build_m3(&b, &w3, opset, variant == 1);
        char dn3[32];
        snprintf(dn3, sizeof dn3, "m3-se-%d", variant);
        dump(dn3, &b);
        got = run_onnx(&b, in3, 6, 6, &k, &err);
        EXPECT(got != NULL, "m3 variant %d: %s", variant, err.message);
        if (got) {
            char what[80];
            snprintf(what, sizeof what, "squeeze-excitation + %s + SiLU opset %d",
                     variant == 1 ? "HardSwish" : "x*HardSigmoid(x)", opset);
            compare(what, got, ref3, 4);
        }
        free(got);
        if (variant == 0) round_trip("round trip (SE model)", &b, in3, 6, 6);
        if (variant == 0) {
            dl_graph g;
            if (dl_onnx_to_graph(b.p, b.n, 0, 0, &g, &err) == 0) {
                int muls = 0, hswish = 0, silu = 0;
                for (int i = 0; i < g.n_nodes; i++) {
                    muls += g.nodes[i].op == DL_OP_MUL;
                    hswish += g.nodes[i].act == DL_ACT_HSWISH;
                    silu += g.nodes[i].act == DL_ACT_SILU;
                }
                EXPECT(muls == 1 && hswish == 1 && silu == 1,
                      "m3: %d mul nodes, %d hswish, %d silu (expected the gate as 1 mul, fused activations)", muls,
                      hswish, silu);
                dl_graph_free(&g);
            }
        }
        free(b.p);
    }

    m4_weights w4;
    fill(w4.aw, 108, 0.5f);
    fill(w4.ab, 4, 0.5f);
    fill(w4.bs, 4, 1.f);
    fill(w4.bb, 4, 0.5f);
    fill(w4.bm, 4, 0.5f);
    for (int i = 0; i < 4; i++) w4.bv[i] = 0.5f + (frand() + 1.f) / 2;
    fill(w4.bw, 12, 1.f);
    fill(w4.nbs, 7, 1.f);
    fill(w4.nbb, 7, 0.5f);
    fill(w4.nbm, 7, 0.5f);
    for (int i = 0; i < 7; i++) w4.nbv[i] = 0.5f + (frand() + 1.f) / 2;
    fill(w4.cw, 126, 0.5f);
    fill(w4.fw, 96, 1.f);
    fill(w4.fb, 3, 1.f);
    double ref4[3];
    ref_m4(&w4, in3, ref4);
    for (int opset = 11; opset <= 13; opset += 2) {
        buf b = {0};
        build_m4(&b, &w4, opset);
        char dn4[32];
        snprintf(dn4, sizeof dn4, "m4-concat-%d", opset);
        dump(dn4, &b);
        got = run_onnx(&b, in3, 6, 6, &k, &err);
        EXPECT(got != NULL, "m4 opset %d: %s", opset, err.message);
        if (got) {
            char what[64];
            snprintf(what, sizeof what, "concat chains + ceil max pool opset %d", opset);
            compare(what, got, ref4, 3);
        }
        free(got);
        dl_graph g;
        if (opset == 13 && dl_onnx_to_graph(b.p, b.n, 0, 0, &g, &err) == 0) {
            int cats = 0, convs = 0;
            for (int i = 0; i < g.n_nodes; i++) {
                cats += g.nodes[i].op == DL_OP_CONCAT;
                convs += g.nodes[i].op == DL_OP_CONV2D;
            }
            /* early 1, ab 1, abc 1 more (the [ar, b] prefix reused), dup 2, fc_in 1; single: none.
             * bn_a after a concat read a0: its own node, like bn_ab */
            EXPECT(cats == 6 && convs == 5, "m4: %d concat nodes (expected 6), %d conv nodes (expected 5)", cats, convs);
            dl_graph_free(&g);
            round_trip("round trip (concat model)", &b, in3, 6, 6);
        }
        free(b.p);
    }

    hostile(&b1);
    whole_import(&b1, &w1, in1);
    free(b1.p);
    if (g_fail) {
        fprintf(stderr, "%d failures\n", g_fail);
        return 1;
    }
    printf("all ONNX import tests passed\n");
    return 0;
}
