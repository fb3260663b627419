/* SPDX-License-Identifier: GPL-3.0-or-later */
/* IEEE 754 binary16 <-> binary32 on the bit patterns, so the result does not
 * depend on the compiler, the FPU's rounding mode or flush-to-zero settings.
 * Used by the model container's F16 storage and the ONNX importer. */
#include "base/base.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>
#define HALF_F16C 1
#endif

static float f32_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float dl_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return f32_bits(sign | 0x7f800000u | (man << 13)); /* Inf, NaN (payload kept) */
    if (exp != 0) return f32_bits(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0) return f32_bits(sign); /* +-0 */
    /* subnormal: man * 2^-24; shift the leading 1 up to the implicit bit */
    int e = 113; /* float exponent field of 2^-14 */
    while (!(man & 0x400u)) {
        man <<= 1;
        e--;
    }
    return f32_bits(sign | ((uint32_t)e << 23) | ((man & 0x3ffu) << 13));
}

int dl_float_to_half(float f, uint16_t *out)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return -1; /* Inf or NaN */
    /* 65520 = 65504 + half an ulp: it and everything above round to Inf */
    if (a >= 0x477ff000u) return -1;
    uint32_t h;
    if (a >= 0x38800000u) { /* normal half (>= 2^-14) */
        h = (a >> 13) - (112u << 10);
        uint32_t rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is right */
    } else if (a <= 0x33000000u) { /* <= 2^-25: rounds to zero (2^-25 is a tie, 0 is even) */
        h = 0;
    } else { /* subnormal half: units of 2^-24 */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 for e in 102..112 */
        h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1u))) h++; /* may reach 0x400, the smallest normal */
    }
    *out = (uint16_t)(sign | h);
    return 0;
}

#ifdef HALF_F16C
/* VCVTPH2PS is exact for every finite half and Inf (subnormals included;
 * MXCSR's DAZ does not apply to half inputs); a NaN comes out quiet. */
__attribute__((target("avx,f16c"))) static void halves_f16c(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
    for (; i < n; i++) dst[i] = dl_half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
}

static int have_f16c(void)
{
    /* CPUID leaf 1 ECX: F16C (29), AVX (28), OSXSAVE (27); and the OS saves
     * the YMM state (XCR0 bits 1-2). Relaxed atomics: every thread finds the
     * same answer. */
    static _Atomic int known = -1;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        unsigned a, b, c, d;
        k = 0;
        if (__get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1) && (c >> 28 & 1) && (c >> 27 & 1)) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            k = (lo & 6u) == 6u;
        }
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
}
#endif

static int g_half_portable; /* dl_half_force_portable: tests compare both paths */

void dl_half_force_portable(int on)
{
    g_half_portable = on != 0;
}

void dl_half_to_float_n(const uint8_t *src, float *dst, size_t n)
{
#ifdef HALF_F16C
    /* the F16C path reads the bytes as little-endian halves: x86 only */
    if (!g_half_portable && have_f16c()) {
        halves_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = dl_half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
}
