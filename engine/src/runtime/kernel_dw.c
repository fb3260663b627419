/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Depthwise convolution, NHWC: vectorised over channels (AVX-512: 16, AVX2:
 * 8, portable: whatever the compiler does), bias and activation fused,
 * threaded over output rows. For each row and channel block the 3x3 weights
 * sit in registers; taps that fall in the top/bottom padding get a zero
 * weight (on an in-bounds row), so interior columns take one branch-free
 * path; border columns check every tap. Each window row is summed in its
 * own chain (short FMA latency chains), rows added last. */
#include "runtime/runtime.h"
#include "runtime/kernel.h"

#include <string.h>

typedef struct {
    const dl_conv_shape *s;
    const float *in, *wt, *bias;
    float *out;
    int isa;
    int oy0, oy1; /* rows to compute */
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

AVX512 INLINE __m512 act16(__m512 v, dl_act a)
{
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
    switch (a) {
    case DL_ACT_RELU: return _mm512_max_ps(v, zero);
    case DL_ACT_RELU6: return _mm512_min_ps(_mm512_max_ps(v, zero), six);
    case DL_ACT_HSWISH: {
        __m512 r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, _mm512_set1_ps(3.f)), zero), six);
        return _mm512_mul_ps(_mm512_mul_ps(v, r), _mm512_set1_ps(1.f / 6.f));
    }
    default: return v;
    }
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
                             int iw, int sw, int pl, int xa, int xb, const dl_act ACT)
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
                 * scheduler, limits a single 9-long chain */
                __m512 a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p0), w0, b);
                __m512 a1 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p1), w3);
                __m512 a2 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p2), w6);
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p0 + C), w1, a0);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p1 + C), w4, a1);
                a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p2 + C), w7, a2);
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p0 + 2 * C), w2, a0);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p1 + 2 * C), w5, a1);
                a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p2 + 2 * C), w8, a2);
                _mm512_mask_storeu_ps(op, m, act16(_mm512_add_ps(_mm512_add_ps(a0, a1), a2), ACT));
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
        _mm512_mask_storeu_ps(o + (size_t)ox * C, m, act16(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), a[2]), ACT));
    }
}

AVX512 static void dw_rows_512(const dw_job *j, int oy0, int oy1)
{
    const dl_conv_shape *s = j->s;
    const int C = s->oc;
    const dl_act act = s->act == DL_ACT_SILU ? DL_ACT_NONE : s->act;
    int xa, xb;
    interior_cols(s, &xa, &xb);
    for (int oy = oy0; oy < oy1; oy++) {
        float *orow = j->out + (size_t)oy * s->ow * C;
        if (s->kh != 3 || s->kw != 3) {
            /* other kernel sizes: every tap checked */
            for (int ox = 0; ox < s->ow; ox++)
                for (int c = 0; c < C; c += 16) {
                    int left = C - c;
                    __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
                    __m512 b = j->bias ? _mm512_maskz_loadu_ps(m, j->bias + c) : _mm512_setzero_ps();
                    _mm512_mask_storeu_ps(orow + (size_t)ox * C + c, m,
                                          act16(px16_generic(j, oy, ox, c, m, b), act));
                }
        } else {
            int iy[3];
            bool ok[3];
            for (int ky = 0; ky < 3; ky++) {
                iy[ky] = oy * s->sh - s->pt + ky;
                ok[ky] = iy[ky] >= 0 && iy[ky] < s->ih;
                if (!ok[ky]) iy[ky] = iy[ky] < 0 ? 0 : s->ih - 1;
            }
            const float *r0 = j->in + (size_t)iy[0] * s->iw * C, *r1 = j->in + (size_t)iy[1] * s->iw * C,
                        *r2 = j->in + (size_t)iy[2] * s->iw * C;
            for (int c = 0; c < C; c += 16) {
                int left = C - c;
                __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
                const float *bc = j->bias ? j->bias + c : NULL;
#define ROW(A)                                                                                             \
    row16_3x3(r0 + c, r1 + c, r2 + c, j->wt + c, (size_t)C, ok[0], ok[1], ok[2], bc, m, orow + c, s->ow,     \
              s->iw, s->sw, s->pl, xa, xb, A)
                switch (act) {
                case DL_ACT_RELU: ROW(DL_ACT_RELU); break;
                case DL_ACT_RELU6: ROW(DL_ACT_RELU6); break;
                case DL_ACT_HSWISH: ROW(DL_ACT_HSWISH); break;
                default: ROW(DL_ACT_NONE); break;
                }
#undef ROW
            }
        }
        if (s->act == DL_ACT_SILU) dl_act_forward(DL_ACT_SILU, orow, (size_t)s->ow * C);
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

#endif

static void dw_part(void *arg, int part, int nparts)
{
    const dw_job *j = arg;
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
    dw_job j = {s, in, wt, bias, out, dl_cpu_level(), oy0, oy1};
    size_t work = (size_t)(oy1 - oy0) * s->ow * s->oc * s->kh * s->kw;
    /* ~50k multiply-adds is worth waking a thread */
    int parts = dl_parallel_parts(work, 50000);
    if (parts > oy1 - oy0) parts = oy1 - oy0;
    if (parts > 1) dl_parallel(parts, dw_part, &j);
    else dw_part(&j, 0, 1);
}

void dl_depthwise_image(const dl_conv_shape *s, const float *in, const float *wt, const float *bias,
                        float *out)
{
    dl_depthwise_rows(s, in, wt, bias, out, 0, s->oh);
}
