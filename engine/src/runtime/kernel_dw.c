/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Depthwise convolution, NHWC: vectorised over channels (AVX-512: 16, AVX2:
 * 8, portable: whatever the compiler does), bias and activation fused
 * (AVX-512: SiLU too, in registers before the store), threaded over output
 * rows. 3x3: for each row and channel block the weights sit in registers;
 * taps that fall in the top/bottom padding get a zero weight (on an
 * in-bounds row), so interior columns take one branch-free path; border
 * columns check every tap. Each window row is summed in its own chain
 * (short FMA latency chains), rows added last. Other kernels (AVX-512):
 * 5x5 at stride 1 and 2 computes 8 (or 4) interior outputs at once, each
 * input vector of a window row loaded once for all the taps that read it;
 * any other size takes the same loop without the unrolling. */
#include "runtime/runtime.h"
#include "runtime/kernel.h"
#include "runtime/act_avx512.h"

#include <string.h>

typedef struct {
    const dl_conv_shape *s;
    const float *in, *wt, *bias;
    float *out;
    int isa;
    int oy0, oy1; /* rows to compute */
    int c0, c1;   /* channels to compute (AVX-512 path; 16-aligned c0) */
    bool by_channels; /* parts split the channels, not the rows */
} dw_job;

/* Columns whose window lies fully inside the input: [*a, *b). */
static void interior_cols(const dl_conv_shape *s, int *a, int *b)
{
    int lo = (s->pl + s->sw - 1) / s->sw;
    int hi = s->iw - s->kw + s->pl >= 0 ? (s->iw - s->kw + s->pl) / s->sw + 1 : 0;
    if (hi > s->ow) hi = s->ow;
    if (lo > hi) lo = hi;
    *a = lo;
    *b = hi;
}

/* ---------------------------------------------------------------- portable */

static void dw_rows_portable(const dw_job *j, int oy0, int oy1)
{
    const dl_conv_shape *s = j->s;
    const int C = s->oc;
    for (int oy = oy0; oy < oy1; oy++) {
        for (int ox = 0; ox < s->ow; ox++) {
            float *o = j->out + ((size_t)oy * s->ow + ox) * C;
            if (j->bias) memcpy(o, j->bias, sizeof(float) * C);
            else memset(o, 0, sizeof(float) * C);
            for (int ky = 0; ky < s->kh; ky++) {
                int iy = oy * s->sh - s->pt + ky;
                if (iy < 0 || iy >= s->ih) continue;
                for (int kx = 0; kx < s->kw; kx++) {
                    int ix = ox * s->sw - s->pl + kx;
                    if (ix < 0 || ix >= s->iw) continue;
                    const float *restrict ip = j->in + ((size_t)iy * s->iw + ix) * C;
                    const float *restrict wp = j->wt + ((size_t)ky * s->kw + kx) * C;
                    for (int c = 0; c < C; c++) o[c] += ip[c] * wp[c];
                }
            }
            dl_act_forward(s->act, o, (size_t)C);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,fma")))
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- AVX-512 */

/* A 16-float store under mask m, unmasked when m is full: a masked store
 * cannot forward to later loads, and loads whose address bits 0-11 match
 * it (4K aliasing between the rows read and the rows written) wait until
 * it retires. */
AVX512 INLINE void st16(float *p, __mmask16 m, __m512 v)
{
    if (m == (__mmask16)0xffff) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, m, v);
}

/* One output pixel, channels [c, c+16) under mask m, every tap checked. */
AVX512 INLINE __m512 px16_generic(const dw_job *j, int oy, int ox, int c, __mmask16 m, __m512 acc)
{
    const dl_conv_shape *s = j->s;
    const int C = s->oc;
    for (int ky = 0; ky < s->kh; ky++) {
        int iy = oy * s->sh - s->pt + ky;
        if (iy < 0 || iy >= s->ih) continue;
        for (int kx = 0; kx < s->kw; kx++) {
            int ix = ox * s->sw - s->pl + kx;
            if (ix < 0 || ix >= s->iw) continue;
            __m512 x = _mm512_maskz_loadu_ps(m, j->in + ((size_t)iy * s->iw + ix) * C + c);
            __m512 w = _mm512_maskz_loadu_ps(m, j->wt + ((size_t)ky * s->kw + kx) * C + c);
            acc = _mm512_fmadd_ps(x, w, acc);
        }
    }
    return acc;
}

/* One row of a 3x3 depthwise conv for channels [c, c+16) under mask m.
 * r0..r2: the window's input rows (offset by c; rows in the padding point at
 * an in-bounds row and get zero weights). Columns whose window crosses the
 * left/right edge read a clamped column with a zero weight. ACT is a
 * constant at each call site. */
AVX512 INLINE void row16_3x3(const float *r0, const float *r1, const float *r2, const float *wt, size_t C,
                             bool ok0, bool ok1, bool ok2, const float *bias, __mmask16 m, float *o, int ow,
                             int iw, int sw, int pl, int xa, int xb, const dl_act ACT, const bool FULL)
{
    const __m512 zero = _mm512_setzero_ps();
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias) : zero;
#define W(k, ok) ((ok) ? _mm512_maskz_loadu_ps(m, wt + (size_t)(k) * C) : zero)
    const __m512 w0 = W(0, ok0), w1 = W(1, ok0), w2 = W(2, ok0);
    const __m512 w3 = W(3, ok1), w4 = W(4, ok1), w5 = W(5, ok1);
    const __m512 w6 = W(6, ok2), w7 = W(7, ok2), w8 = W(8, ok2);
#undef W
    const size_t step = (size_t)sw * C;
    for (int ox = 0; ox < ow; ox++) {
        if (ox == xa && xa < xb) {
            /* interior: the whole window is inside the row */
            size_t off = (size_t)(xa * sw - pl) * C;
            float *op = o + (size_t)xa * C;
            for (int x = xa; x < xb; x++, off += step, op += C) {
                const float *p0 = r0 + off, *p1 = r1 + off, *p2 = r2 + off;
                /* one short chain per window row: FMA latency, not the
                 * scheduler, limits a single 9-long chain. Whole vectors
                 * (FULL) load and store unmasked: a masked store cannot
                 * forward, and loads that may alias it (same address bits
                 * 0-11: 4K aliasing between input and output rows) wait for
                 * it to retire. */
#define LD(p) (FULL ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p))
                __m512 a0 = _mm512_fmadd_ps(LD(p0), w0, b);
                __m512 a1 = _mm512_mul_ps(LD(p1), w3);
                __m512 a2 = _mm512_mul_ps(LD(p2), w6);
                a0 = _mm512_fmadd_ps(LD(p0 + C), w1, a0);
                a1 = _mm512_fmadd_ps(LD(p1 + C), w4, a1);
                a2 = _mm512_fmadd_ps(LD(p2 + C), w7, a2);
                a0 = _mm512_fmadd_ps(LD(p0 + 2 * C), w2, a0);
                a1 = _mm512_fmadd_ps(LD(p1 + 2 * C), w5, a1);
                a2 = _mm512_fmadd_ps(LD(p2 + 2 * C), w8, a2);
#undef LD
                __m512 y = dl_act16(_mm512_add_ps(_mm512_add_ps(a0, a1), a2), ACT);
                if (FULL) _mm512_storeu_ps(op, y);
                else st16(op, m, y);
            }
            ox = xb - 1;
            continue;
        }
        /* edge column */
        const __m512 wk[9] = {w0, w1, w2, w3, w4, w5, w6, w7, w8};
        const float *rr[3] = {r0, r1, r2};
        /* same grouping as the interior: rows summed last */
        __m512 a[3];
        for (int ky = 0; ky < 3; ky++) {
            a[ky] = ky == 0 ? b : zero;
            for (int kx = 0; kx < 3; kx++) {
                int ix = ox * sw - pl + kx;
                bool ok = ix >= 0 && ix < iw;
                const float *p = rr[ky] + (size_t)(ok ? ix : 0) * C;
                a[ky] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p), ok ? wk[ky * 3 + kx] : zero, a[ky]);
            }
        }
        st16(o + (size_t)ox * C, m, dl_act16(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), a[2]), ACT));
    }
}

/* One output row of channels [c, c+16) (mask m). rows[ky] points at input
 * row oy*sh - pt + ky, column 0, channel c; only taps ky in [ky0, ky1) lie
 * inside the image. Every output sums bias, then its taps in (ky, kx)
 * order, one FMA each, whichever branch computes it: interior columns
 * (window inside the row) NB at a time with each input vector loaded once
 * per window row and reused by every tap that reads it (KW0, SW0 constant:
 * the loops unroll into registers), the rest one by one with a bounds
 * check per tap (KW0 = SW0 = 0: kw and sw taken from the shape). */
AVX512 INLINE void dw_row16(const dl_conv_shape *s, const float *const *rows, int ky0, int ky1, const float *wt,
                            __m512 b, __mmask16 m, float *o, int xa, int xb, dl_act act, const int KW0,
                            const int SW0, const int NB)
{
    const int KW = KW0 ? KW0 : s->kw, SW = SW0 ? SW0 : s->sw;
    const size_t C = (size_t)s->oc;
    for (int ox = 0;; ox++) {
        if (ox == xa && KW0) {
            for (; ox + NB <= xb; ox += NB) {
                __m512 acc[8];
                for (int i = 0; i < NB; i++) acc[i] = b;
                const size_t off = (size_t)(ox * SW - s->pl) * C;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *r = rows[ky] + off, *w = wt + (size_t)ky * KW * C;
                    __m512 v[7 * 2 + 5]; /* the largest NB, SW and KW specialised */
                    for (int q = 0; q < (NB - 1) * SW + KW; q++) v[q] = _mm512_maskz_loadu_ps(m, r + q * C);
                    for (int kx = 0; kx < KW; kx++) {
                        const __m512 wv = _mm512_maskz_loadu_ps(m, w + kx * C);
                        for (int i = 0; i < NB; i++) acc[i] = _mm512_fmadd_ps(v[i * SW + kx], wv, acc[i]);
                    }
                }
                for (int i = 0; i < NB; i++) st16(o + (size_t)(ox + i) * C, m, dl_act16(acc[i], act));
            }
        }
        if (ox >= s->ow) break;
        const int ix0 = ox * SW - s->pl;
        __m512 acc = b;
        for (int ky = ky0; ky < ky1; ky++) {
            const float *w = wt + (size_t)ky * KW * C;
            for (int kx = 0; kx < KW; kx++) {
                int ix = ix0 + kx;
                if (ix < 0 || ix >= s->iw) continue;
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, rows[ky] + (size_t)ix * C),
                                      _mm512_maskz_loadu_ps(m, w + kx * C), acc);
            }
        }
        st16(o + (size_t)ox * C, m, dl_act16(acc, act));
    }
}

AVX512 static void dw_rows_512(const dw_job *j, int oy0, int oy1)
{
    const dl_conv_shape *s = j->s;
    const int C = s->oc;
    int xa, xb;
    interior_cols(s, &xa, &xb);
    /* interior blocks of 8 outputs, 4 on narrow maps (7 or 14 columns) */
    const bool nb8 = xb - xa >= 16;
    enum { MAXK = 16 };
    const float *rows[MAXK];
    for (int oy = oy0; oy < oy1; oy++) {
        float *orow = j->out + (size_t)oy * s->ow * C;
        const int iy0 = oy * s->sh - s->pt;
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = s->ih - iy0 < s->kh ? s->ih - iy0 : s->kh;
        if (ky1 < ky0) ky1 = ky0;
        for (int c = j->c0; c < j->c1; c += 16) {
            int left = j->c1 - c;
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
            __m512 b = j->bias ? _mm512_maskz_loadu_ps(m, j->bias + c) : _mm512_setzero_ps();
            if (s->kh > MAXK) {
                for (int ox = 0; ox < s->ow; ox++)
                    st16(orow + (size_t)ox * C + c, m,
                                          dl_act16(px16_generic(j, oy, ox, c, m, b), s->act));
                continue;
            }
            if (s->kh == 3 && s->kw == 3) {
                /* rows in the padding point at an in-bounds row, zero weights */
                const float *r[3];
                bool ok[3];
                for (int ky = 0; ky < 3; ky++) {
                    ok[ky] = ky >= ky0 && ky < ky1;
                    int iy = ok[ky] ? iy0 + ky : (iy0 + ky < 0 ? 0 : s->ih - 1);
                    r[ky] = j->in + (size_t)iy * s->iw * C + c;
                }
                const float *bc = j->bias ? j->bias + c : NULL;
#define ROW(A)                                                                                             \
    (m == 0xffff ? row16_3x3(r[0], r[1], r[2], j->wt + c, (size_t)C, ok[0], ok[1], ok[2], bc, m, orow + c, s->ow, \
                             s->iw, s->sw, s->pl, xa, xb, A, true)                                              \
                 : row16_3x3(r[0], r[1], r[2], j->wt + c, (size_t)C, ok[0], ok[1], ok[2], bc, m, orow + c, s->ow, \
                             s->iw, s->sw, s->pl, xa, xb, A, false))
                switch (s->act) {
                case DL_ACT_RELU: ROW(DL_ACT_RELU); break;
                case DL_ACT_RELU6: ROW(DL_ACT_RELU6); break;
                case DL_ACT_HSWISH: ROW(DL_ACT_HSWISH); break;
                case DL_ACT_SILU: ROW(DL_ACT_SILU); break;
                default: ROW(DL_ACT_NONE); break;
                }
#undef ROW
                continue;
            }
            for (int ky = ky0; ky < ky1; ky++) rows[ky] = j->in + (size_t)(iy0 + ky) * s->iw * C + c;
            const float *w = j->wt + c;
            float *o = orow + c;
#define ROW(KW, SW, NB) dw_row16(s, rows, ky0, ky1, w, b, m, o, xa, xb, s->act, KW, SW, NB)
            if (s->kw == 5 && s->sw == 1) nb8 ? ROW(5, 1, 8) : ROW(5, 1, 4);
            else if (s->kw == 5 && s->sw == 2) nb8 ? ROW(5, 2, 8) : ROW(5, 2, 4);
            else ROW(0, 0, 1);
#undef ROW
        }
    }
}

/* ---------------------------------------------------------------- AVX2 */

AVX2 INLINE __m256 act8(__m256 v, dl_act a)
{
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.f);
    switch (a) {
    case DL_ACT_RELU: return _mm256_max_ps(v, zero);
    case DL_ACT_RELU6: return _mm256_min_ps(_mm256_max_ps(v, zero), six);
    case DL_ACT_HSWISH: {
        __m256 r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, _mm256_set1_ps(3.f)), zero), six);
        return _mm256_mul_ps(_mm256_mul_ps(v, r), _mm256_set1_ps(1.f / 6.f));
    }
    default: return v;
    }
}

AVX2 INLINE __m256i mask8(int left)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

AVX2 INLINE __m256 px8_generic(const dw_job *j, int oy, int ox, int c, __m256i m, __m256 acc)
{
    const dl_conv_shape *s = j->s;
    const int C = s->oc;
    for (int ky = 0; ky < s->kh; ky++) {
        int iy = oy * s->sh - s->pt + ky;
        if (iy < 0 || iy >= s->ih) continue;
        for (int kx = 0; kx < s->kw; kx++) {
            int ix = ox * s->sw - s->pl + kx;
            if (ix < 0 || ix >= s->iw) continue;
            __m256 x = _mm256_maskload_ps(j->in + ((size_t)iy * s->iw + ix) * C + c, m);
            __m256 w = _mm256_maskload_ps(j->wt + ((size_t)ky * s->kw + kx) * C + c, m);
            acc = _mm256_fmadd_ps(x, w, acc);
        }
    }
    return acc;
}

AVX2 static void dw_rows_avx2(const dw_job *j, int oy0, int oy1)
{
    const dl_conv_shape *s = j->s;
    const int C = s->oc, SW = s->sw;
    const bool k33 = s->kh == 3 && s->kw == 3;
    const dl_act act = s->act == DL_ACT_SILU ? DL_ACT_NONE : s->act;
    int xa, xb;
    interior_cols(s, &xa, &xb);
    for (int oy = oy0; oy < oy1; oy++) {
        float *orow = j->out + (size_t)oy * s->ow * C;
        for (int c = 0; c < C; c += 8) {
            __m256i m = mask8(C - c);
            __m256 b = j->bias ? _mm256_maskload_ps(j->bias + c, m) : _mm256_setzero_ps();
            int ox = 0;
            if (k33 && xa < xb) {
                const float *r[3];
                __m256 w[9];
                for (int ky = 0; ky < 3; ky++) {
                    int iy = oy * s->sh - s->pt + ky;
                    bool ok = iy >= 0 && iy < s->ih;
                    r[ky] = j->in + (size_t)(ok ? iy : (iy < 0 ? 0 : s->ih - 1)) * s->iw * C + c;
                    for (int kx = 0; kx < 3; kx++)
                        w[ky * 3 + kx] = ok ? _mm256_maskload_ps(j->wt + (size_t)(ky * 3 + kx) * C + c, m)
                                            : _mm256_setzero_ps();
                }
                for (; ox < xa; ox++)
                    _mm256_maskstore_ps(orow + (size_t)ox * C + c, m, act8(px8_generic(j, oy, ox, c, m, b), act));
                for (; ox < xb; ox++) {
                    size_t off = (size_t)(ox * SW - s->pl) * C;
                    __m256 acc = b;
                    for (int ky = 0; ky < 3; ky++) {
                        const float *p = r[ky] + off;
                        acc = _mm256_fmadd_ps(_mm256_maskload_ps(p, m), w[ky * 3], acc);
                        acc = _mm256_fmadd_ps(_mm256_maskload_ps(p + C, m), w[ky * 3 + 1], acc);
                        acc = _mm256_fmadd_ps(_mm256_maskload_ps(p + 2 * (size_t)C, m), w[ky * 3 + 2], acc);
                    }
                    _mm256_maskstore_ps(orow + (size_t)ox * C + c, m, act8(acc, act));
                }
            }
            for (; ox < s->ow; ox++)
                _mm256_maskstore_ps(orow + (size_t)ox * C + c, m, act8(px8_generic(j, oy, ox, c, m, b), act));
        }
        if (s->act == DL_ACT_SILU) dl_act_forward(DL_ACT_SILU, orow, (size_t)s->ow * C);
    }
}

/* ---------------------------------------------------------------- backward, AVX-512 */

typedef struct {
    const dl_conv_shape *s;
    const float *in, *wt, *g;
    float *grad_in;
    float *acc;      /* [kh*kw][c] weight-gradient sums, or NULL */
    int band;        /* output rows per band */
    bool assign;     /* dwb_in33s1 stores its sums (grad_in not added to) */
} dwb_job;

/* Weight gradient, 3x3, channels [c, c+16), output rows [oy0, oy1) of image
 * b: the nine sums stay in registers for the band. */
AVX512 static void dwb_w33(const dwb_job *j, int b, int c, __mmask16 m, int oy0, int oy1)
{
    const dl_conv_shape *s = j->s;
    const size_t C = (size_t)s->ic;
    float *A = j->acc + c;
    /* masked: the tail block's lanes past C are the next tap's channels */
#define LD(k) _mm512_maskz_loadu_ps(m, A + (k) * C)
    __m512 a0 = LD(0), a1 = LD(1), a2 = LD(2), a3 = LD(3), a4 = LD(4), a5 = LD(5), a6 = LD(6), a7 = LD(7), a8 = LD(8);
#undef LD
    const float *img = j->in + (size_t)b * s->ih * s->iw * C + c;
    int xa, xb;
    interior_cols(s, &xa, &xb);
    const size_t step = (size_t)s->sw * C;
    for (int oy = oy0; oy < oy1; oy++) {
        const float *go = j->g + (((size_t)b * s->oh + oy) * s->ow) * C + c;
        int iy = oy * s->sh - s->pt;
        /* a row in the padding reads row 0 with gradient zero: same sums */
        const bool ok0 = iy >= 0 && iy < s->ih, ok1 = iy + 1 >= 0 && iy + 1 < s->ih, ok2 = iy + 2 >= 0 && iy + 2 < s->ih;
        const float *r0 = img + (size_t)(ok0 ? iy : 0) * s->iw * C, *r1 = img + (size_t)(ok1 ? iy + 1 : 0) * s->iw * C,
                    *r2 = img + (size_t)(ok2 ? iy + 2 : 0) * s->iw * C;
        const __mmask16 m0 = ok0 ? m : 0, m1 = ok1 ? m : 0, m2 = ok2 ? m : 0;
        size_t off = (size_t)(xa * s->sw - s->pl) * C;
        int ox_in = xa;
        if (ok0 && ok1 && ok2 && s->sw == 1)
            /* rows inside, stride 1: two outputs at a time share their
             * middle input columns (4 loads a row instead of 6) and the
             * gradient vector is loaded once, not once a row; each sum
             * still adds its terms in the order of ox */
            for (; ox_in + 1 < xb; ox_in += 2, off += 2 * C) {
                const float *p0 = r0 + off, *p1 = r1 + off, *p2 = r2 + off;
                const __m512 ga = _mm512_maskz_loadu_ps(m, go + (size_t)ox_in * C);
                const __m512 gb = _mm512_maskz_loadu_ps(m, go + (size_t)(ox_in + 1) * C);
                __m512 x0 = _mm512_maskz_loadu_ps(m, p0), x1 = _mm512_maskz_loadu_ps(m, p0 + C),
                       x2 = _mm512_maskz_loadu_ps(m, p0 + 2 * C), x3 = _mm512_maskz_loadu_ps(m, p0 + 3 * C);
                a0 = _mm512_fmadd_ps(gb, x1, _mm512_fmadd_ps(ga, x0, a0));
                a1 = _mm512_fmadd_ps(gb, x2, _mm512_fmadd_ps(ga, x1, a1));
                a2 = _mm512_fmadd_ps(gb, x3, _mm512_fmadd_ps(ga, x2, a2));
                x0 = _mm512_maskz_loadu_ps(m, p1), x1 = _mm512_maskz_loadu_ps(m, p1 + C);
                x2 = _mm512_maskz_loadu_ps(m, p1 + 2 * C), x3 = _mm512_maskz_loadu_ps(m, p1 + 3 * C);
                a3 = _mm512_fmadd_ps(gb, x1, _mm512_fmadd_ps(ga, x0, a3));
                a4 = _mm512_fmadd_ps(gb, x2, _mm512_fmadd_ps(ga, x1, a4));
                a5 = _mm512_fmadd_ps(gb, x3, _mm512_fmadd_ps(ga, x2, a5));
                x0 = _mm512_maskz_loadu_ps(m, p2), x1 = _mm512_maskz_loadu_ps(m, p2 + C);
                x2 = _mm512_maskz_loadu_ps(m, p2 + 2 * C), x3 = _mm512_maskz_loadu_ps(m, p2 + 3 * C);
                a6 = _mm512_fmadd_ps(gb, x1, _mm512_fmadd_ps(ga, x0, a6));
                a7 = _mm512_fmadd_ps(gb, x2, _mm512_fmadd_ps(ga, x1, a7));
                a8 = _mm512_fmadd_ps(gb, x3, _mm512_fmadd_ps(ga, x2, a8));
            }
        for (int ox = ox_in; ox < xb; ox++, off += step) {
            const float *p0 = r0 + off, *p1 = r1 + off, *p2 = r2 + off;
            const __m512 g0 = _mm512_maskz_loadu_ps(m0, go + (size_t)ox * C);
            const __m512 g1 = _mm512_maskz_loadu_ps(m1, go + (size_t)ox * C);
            const __m512 g2 = _mm512_maskz_loadu_ps(m2, go + (size_t)ox * C);
            a0 = _mm512_fmadd_ps(g0, _mm512_maskz_loadu_ps(m0, p0), a0);
            a1 = _mm512_fmadd_ps(g0, _mm512_maskz_loadu_ps(m0, p0 + C), a1);
            a2 = _mm512_fmadd_ps(g0, _mm512_maskz_loadu_ps(m0, p0 + 2 * C), a2);
            a3 = _mm512_fmadd_ps(g1, _mm512_maskz_loadu_ps(m1, p1), a3);
            a4 = _mm512_fmadd_ps(g1, _mm512_maskz_loadu_ps(m1, p1 + C), a4);
            a5 = _mm512_fmadd_ps(g1, _mm512_maskz_loadu_ps(m1, p1 + 2 * C), a5);
            a6 = _mm512_fmadd_ps(g2, _mm512_maskz_loadu_ps(m2, p2), a6);
            a7 = _mm512_fmadd_ps(g2, _mm512_maskz_loadu_ps(m2, p2 + C), a7);
            a8 = _mm512_fmadd_ps(g2, _mm512_maskz_loadu_ps(m2, p2 + 2 * C), a8);
        }
        /* edge columns: taps outside the row are skipped */
        for (int ox = 0; ox < s->ow; ox++) {
            if (ox == xa && xa < xb) ox = xb;
            if (ox >= s->ow) break;
            const int ix0 = ox * s->sw - s->pl;
            const __m512 gv = _mm512_maskz_loadu_ps(m, go + (size_t)ox * C);
            __m512 *acc9[9] = {&a0, &a1, &a2, &a3, &a4, &a5, &a6, &a7, &a8};
            const float *rr[3] = {r0, r1, r2};
            const bool ok[3] = {ok0, ok1, ok2};
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    int ix = ix0 + kx;
                    if (!ok[ky] || ix < 0 || ix >= s->iw) continue;
                    *acc9[ky * 3 + kx] =
                        _mm512_fmadd_ps(gv, _mm512_maskz_loadu_ps(m, rr[ky] + (size_t)ix * C), *acc9[ky * 3 + kx]);
                }
        }
    }
#define ST(k, v) st16(A + (k) * C, m, v)
    ST(0, a0); ST(1, a1); ST(2, a2); ST(3, a3); ST(4, a4); ST(5, a5); ST(6, a6); ST(7, a7); ST(8, a8);
#undef ST
}

/* Weight gradient, any kernel: sums in the acc rows (L1), tap by tap. */
AVX512 static void dwb_w_generic(const dwb_job *j, int b, int c, __mmask16 m, int oy0, int oy1)
{
    const dl_conv_shape *s = j->s;
    const size_t C = (size_t)s->ic;
    const float *img = j->in + (size_t)b * s->ih * s->iw * C + c;
    for (int oy = oy0; oy < oy1; oy++)
        for (int ky = 0; ky < s->kh; ky++) {
            int iy = oy * s->sh - s->pt + ky;
            if (iy < 0 || iy >= s->ih) continue;
            for (int kx = 0; kx < s->kw; kx++) {
                float *A = j->acc + (size_t)(ky * s->kw + kx) * C + c;
                __m512 a = _mm512_maskz_loadu_ps(m, A);
                for (int ox = 0; ox < s->ow; ox++) {
                    int ix = ox * s->sw - s->pl + kx;
                    if (ix < 0 || ix >= s->iw) continue;
                    a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, j->g + (((size_t)b * s->oh + oy) * s->ow + ox) * C + c),
                                        _mm512_maskz_loadu_ps(m, img + ((size_t)iy * s->iw + ix) * C), a);
                }
                st16(A, m, a);
            }
        }
}

/* Input gradient, 3x3 stride 1, input rows [iy0, iy1): gathered, each input
 * pixel sums its nine outputs and is added once. */
AVX512 static void dwb_in33s1(const dwb_job *j, int b, int c, __mmask16 m, int iy0, int iy1)
{
    const dl_conv_shape *s = j->s;
    const size_t C = (size_t)s->ic;
    const float *gimg = j->g + (size_t)b * s->oh * s->ow * C + c;
    float *out = j->grad_in + (size_t)b * s->ih * s->iw * C + c;
    const bool assign = j->assign;
    /* output columns ox = ix + pl - kx; interior (all three exist): ix in
     * [2 - pl, ow - pl) */
    int xa = 2 - s->pl, xb = s->ow - s->pl;
    if (xa < 0) xa = 0;
    if (xb > s->iw) xb = s->iw;
    if (xb < xa) xb = xa;
    for (int iy = iy0; iy < iy1; iy++) {
        /* output row oy = iy + pt - ky */
        int o0 = iy + s->pt, o1 = o0 - 1, o2 = o0 - 2;
        const bool ok0 = o0 >= 0 && o0 < s->oh, ok1 = o1 >= 0 && o1 < s->oh, ok2 = o2 >= 0 && o2 < s->oh;
        const __mmask16 m0 = ok0 ? m : 0, m1 = ok1 ? m : 0, m2 = ok2 ? m : 0;
        const __m512 w0 = _mm512_maskz_loadu_ps(m0, j->wt + c), w1 = _mm512_maskz_loadu_ps(m0, j->wt + C + c),
                     w2 = _mm512_maskz_loadu_ps(m0, j->wt + 2 * C + c), w3 = _mm512_maskz_loadu_ps(m1, j->wt + 3 * C + c),
                     w4 = _mm512_maskz_loadu_ps(m1, j->wt + 4 * C + c), w5 = _mm512_maskz_loadu_ps(m1, j->wt + 5 * C + c),
                     w6 = _mm512_maskz_loadu_ps(m2, j->wt + 6 * C + c), w7 = _mm512_maskz_loadu_ps(m2, j->wt + 7 * C + c),
                     w8 = _mm512_maskz_loadu_ps(m2, j->wt + 8 * C + c);
        const float *q0 = gimg + (size_t)(ok0 ? o0 : 0) * s->ow * C, *q1 = gimg + (size_t)(ok1 ? o1 : 0) * s->ow * C,
                    *q2 = gimg + (size_t)(ok2 ? o2 : 0) * s->ow * C;
        float *orow = out + (size_t)iy * s->iw * C;
        for (int ix = 0; ix < s->iw; ix++) {
            if (ix == xa && xa < xb) {
                for (; ix < xb; ix++) {
                    /* ox = ix + pl - kx for kx = 2, 1, 0 */
                    size_t off = (size_t)(ix + s->pl - 2) * C;
                    const float *p0 = q0 + off, *p1 = q1 + off, *p2 = q2 + off;
                    __m512 s0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, p0), w2);
                    __m512 s1 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, p1), w5);
                    __m512 s2 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m2, p2), w8);
                    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, p0 + C), w1, s0);
                    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, p1 + C), w4, s1);
                    s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m2, p2 + C), w7, s2);
                    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, p0 + 2 * C), w0, s0);
                    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, p1 + 2 * C), w3, s1);
                    s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m2, p2 + 2 * C), w6, s2);
                    float *op = orow + (size_t)ix * C;
                    __m512 sum = _mm512_add_ps(_mm512_add_ps(s0, s1), s2);
                    st16(op, m, assign ? sum : _mm512_add_ps(_mm512_maskz_loadu_ps(m, op), sum));
                }
                if (ix >= s->iw) break;
            }
            const __m512 wk[9] = {w0, w1, w2, w3, w4, w5, w6, w7, w8};
            const float *qq[3] = {q0, q1, q2};
            __m512 sum = _mm512_setzero_ps();
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    int ox = ix + s->pl - kx;
                    if (ox < 0 || ox >= s->ow) continue;
                    sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qq[ky] + (size_t)ox * C), wk[ky * 3 + kx], sum);
                }
            float *op = orow + (size_t)ix * C;
            st16(op, m, assign ? sum : _mm512_add_ps(_mm512_maskz_loadu_ps(m, op), sum));
        }
    }
}

/* Input gradient, any kernel and stride, output rows [oy0, oy1): scattered
 * tap by tap (a stride-2 output touches 9 inputs, each input ~2 outputs). */
AVX512 static void dwb_in_generic(const dwb_job *j, int b, int c, __mmask16 m, int oy0, int oy1)
{
    const dl_conv_shape *s = j->s;
    const size_t C = (size_t)s->ic;
    float *out = j->grad_in + (size_t)b * s->ih * s->iw * C + c;
    for (int oy = oy0; oy < oy1; oy++)
        for (int ky = 0; ky < s->kh; ky++) {
            int iy = oy * s->sh - s->pt + ky;
            if (iy < 0 || iy >= s->ih) continue;
            for (int kx = 0; kx < s->kw; kx++) {
                const __m512 w = _mm512_maskz_loadu_ps(m, j->wt + (size_t)(ky * s->kw + kx) * C + c);
                for (int ox = 0; ox < s->ow; ox++) {
                    int ix = ox * s->sw - s->pl + kx;
                    if (ix < 0 || ix >= s->iw) continue;
                    float *op = out + ((size_t)iy * s->iw + ix) * C;
                    __m512 gv = _mm512_maskz_loadu_ps(m, j->g + (((size_t)b * s->oh + oy) * s->ow + ox) * C + c);
                    st16(op, m, _mm512_fmadd_ps(gv, w, _mm512_maskz_loadu_ps(m, op)));
                }
            }
        }
}

/* Channel blocks [cb0, cb1) over the batch, band by band: a band's rows of
 * g, in and grad_in (all channels) are read while they sit in L2. The
 * summation order of every value is fixed by (image, row), never by the
 * split. */
AVX512 static void dwb_blocks(const dwb_job *j, int cb0, int cb1)
{
    const dl_conv_shape *s = j->s;
    const bool k33 = s->kh == 3 && s->kw == 3, s11 = s->sh == 1 && s->sw == 1;
    for (int b = 0; b < s->n; b++)
        for (int oy0 = 0; oy0 < s->oh; oy0 += j->band) {
            int oy1 = oy0 + j->band < s->oh ? oy0 + j->band : s->oh;
            /* stride-1 gather: input rows in step with the output band */
            int iy0 = oy0 == 0 ? 0 : oy0 - s->pt + 2, iy1 = oy1 == s->oh ? s->ih : oy1 - s->pt + 2;
            if (iy0 < 0) iy0 = 0;
            if (iy1 > s->ih) iy1 = s->ih;
            for (int cb = cb0; cb < cb1; cb++) {
                int c = cb * 16, left = s->ic - c;
                __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
                if (j->acc) {
                    if (k33) dwb_w33(j, b, c, m, oy0, oy1);
                    else dwb_w_generic(j, b, c, m, oy0, oy1);
                }
                if (j->grad_in) {
                    if (k33 && s11) dwb_in33s1(j, b, c, m, iy0, iy1);
                    else dwb_in_generic(j, b, c, m, oy0, oy1);
                }
            }
        }
}

static void dwb_part(void *arg, int part, int nparts)
{
    const dwb_job *j = arg;
    int nb = (j->s->ic + 15) / 16;
    int b0 = (int)((long)nb * part / nparts), b1 = (int)((long)nb * (part + 1) / nparts);
    if (b0 < b1) dwb_blocks(j, b0, b1);
}

#endif

static void dw_part(void *arg, int part, int nparts)
{
    const dw_job *j = arg;
#if defined(__x86_64__) && defined(__GNUC__)
    if (j->by_channels) { /* AVX-512 only */
        dw_job q = *j;
        int nb = (j->s->oc + 15) / 16;
        int b0 = (int)((long)nb * part / nparts), b1 = (int)((long)nb * (part + 1) / nparts);
        q.c0 = b0 * 16;
        q.c1 = b1 * 16 < j->s->oc ? b1 * 16 : j->s->oc;
        if (q.c0 < q.c1) dw_rows_512(&q, j->oy0, j->oy1);
        return;
    }
#endif
    int rows = j->oy1 - j->oy0;
    int oy0 = j->oy0 + (int)((long)rows * part / nparts), oy1 = j->oy0 + (int)((long)rows * (part + 1) / nparts);
    if (oy0 >= oy1) return;
#if defined(__x86_64__) && defined(__GNUC__)
    if (j->isa >= DL_ISA_AVX512) {
        dw_rows_512(j, oy0, oy1);
        return;
    }
    if (j->isa >= DL_ISA_AVX2) {
        dw_rows_avx2(j, oy0, oy1);
        return;
    }
#endif
    dw_rows_portable(j, oy0, oy1);
}

void dl_depthwise_rows(const dl_conv_shape *s, const float *in, const float *wt, const float *bias,
                       float *out, int oy0, int oy1)
{
    if (oy0 < 0) oy0 = 0;
    if (oy1 > s->oh) oy1 = s->oh;
    if (oy0 >= oy1) return;
    dw_job j = {s, in, wt, bias, out, dl_cpu_level(), oy0, oy1, 0, s->oc, false};
    size_t work = (size_t)(oy1 - oy0) * s->ow * s->oc * s->kh * s->kw;
    /* ~50k multiply-adds is worth waking a thread */
    int parts = dl_parallel_parts(work, 50000);
    /* Small maps (7x7) are split by channel blocks: rows split unevenly
     * there (3 + 4), and the 1x1 expansion before splits its output by
     * columns (dl_gemm_packed on few rows), so each thread then reads the
     * channels its own core wrote. Per-channel sums: same bits. */
    int blocks = (s->oc + 15) / 16;
    j.by_channels = j.isa >= DL_ISA_AVX512 && parts > 1 && (size_t)s->ih * s->iw < 48 * (size_t)parts &&
                    blocks >= parts;
    if (!j.by_channels && parts > oy1 - oy0) parts = oy1 - oy0;
    if (parts > 1) dl_parallel(parts, dw_part, &j);
    else dw_part(&j, 0, 1);
}

void dl_depthwise_image(const dl_conv_shape *s, const float *in, const float *wt, const float *bias,
                        float *out)
{
    dl_depthwise_rows(s, in, wt, bias, out, 0, s->oh);
}

int dl_depthwise_backward(const dl_conv_shape *s, const float *in, const float *wt, const float *g,
                          float *grad_in, float *grad_w, float *acc, bool assign_in)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (dl_cpu_level() < DL_ISA_AVX512) return -1;
    if (!grad_in && !grad_w) return 0;
    const bool gather = s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1;
    /* the scatter path adds tap by tap: it starts from zeros */
    if (grad_in && assign_in && !gather)
        memset(grad_in, 0, sizeof(float) * (size_t)s->n * s->ih * s->iw * s->ic);
    const size_t C = (size_t)s->ic, T = (size_t)s->kh * s->kw;
    if (grad_w) memset(acc, 0, sizeof(float) * T * C);
    /* a band's output rows plus their input rows (in and grad_in) in half
     * of L2 */
    size_t row_bytes = sizeof(float) * C * ((size_t)s->ow + 2 * (size_t)s->iw * s->sh);
    int band = (int)(dl_cpu_l2_bytes() / 2 / (row_bytes ? row_bytes : 1));
    if (band < 1) band = 1;
    dwb_job j = {s, in, wt, g, grad_in, grad_w ? acc : NULL, band, assign_in && gather};
    int nb = (s->ic + 15) / 16;
    size_t work = (size_t)s->n * s->oh * s->ow * s->ic * s->kh * s->kw;
    int parts = dl_parallel_parts(work, 50000);
    if (parts > nb) parts = nb;
    if (parts > 1) dl_parallel(parts, dwb_part, &j);
    else dwb_part(&j, 0, 1);
    if (grad_w)
        for (size_t c = 0; c < C; c++)
            for (size_t t = 0; t < T; t++) grad_w[c * T + t] += acc[t * C + c];
    return 0;
#else
    (void)s; (void)in; (void)wt; (void)g; (void)grad_in; (void)grad_w; (void)acc; (void)assign_in;
    return -1;
#endif
}
