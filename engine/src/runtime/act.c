/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Activations: names and the forward pass. Split out of ops.c so that the
 * kernels (kernel_gemm.c, kernel_dw.c) and ops.c all call down into this
 * file and none calls back up: ops.c -> kernel_*.c -> act.c. The backward
 * pass (dl_act_backward) is in ops_backward.c. */
#include "runtime/ops.h"
#include "runtime/kernel.h"
#include "runtime/act_avx512.h"

#include <math.h>
#include <string.h>

static const char *const act_names[] = {"none", "relu", "relu6", "hswish", "silu", "sigmoid", "hsigmoid"};
#define N_ACTS ((int)(sizeof act_names / sizeof act_names[0]))

const char *dl_act_name(dl_act a)
{
    return (unsigned)a < (unsigned)N_ACTS ? act_names[a] : "?";
}

int dl_act_from_name(const char *name)
{
    for (int i = 0; i < N_ACTS; i++)
        if (strcmp(name, act_names[i]) == 0) return i;
    return -1;
}

int dl_act_is_post(dl_act a)
{
    return a == DL_ACT_SIGMOID || a == DL_ACT_HSIGMOID;
}

/* ---------------------------------------------------------------- exp */

/* SiLU and sigmoid need exp(); libm's expf is a call per element and the
 * loop around it stays scalar. With AVX-512, act_avx512.h; elsewhere this
 * version on 16 lanes in GCC vector types, so the AVX2 and SSE2 clones run
 * it in registers too: exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2)/2, and
 * exp(r) by its Taylor series to r^7/7! (truncation < 1e-8 relative: below
 * float rounding). Inputs are clamped to [-87.3, 88], where 2^n stays a
 * normal float; NaN passes through. Tails run through the same code on a
 * padded copy, so a value's result never depends on where it sits. */
#define VL 16
typedef float vf __attribute__((vector_size(4 * VL)));
typedef int vi __attribute__((vector_size(4 * VL)));

/* lanes of a where mask m is set, else of b (a macro: a vector argument
 * draws GCC's ABI note in the non-AVX-512 clones) */
#define VSEL(m, a, b) ((vf)(((m) & (vi)(a)) | (~(m) & (vi)(b))))

/* 16 values in place: silu(x) = x / (1 + exp(-x)) or sigmoid(x) =
 * 1 / (1 + exp(-x)). */
static inline __attribute__((always_inline)) void silu_sigmoid16(float *p, bool silu)
{
    vf x;
    memcpy(&x, p, sizeof x);
    const vf zero = {0}, one = zero + 1.f;
    const vf hi_c = zero + 88.f, lo_c = zero - 87.3f;
    vf m = -x; /* exp(m) */
    m = VSEL(m > hi_c, hi_c, m); /* comparisons are false for NaN: NaN kept */
    m = VSEL(m < lo_c, lo_c, m);
    /* 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits */
    const vf magic = zero + 12582912.f;
    vf t = m * 1.44269504f + magic;
    vf n = t - magic;
    /* ln 2 split so n * hi is exact (hi has 9 significant bits) */
    vf r = m - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf e = zero + (1.f / 5040.f);
    e = e * r + (1.f / 720.f);
    e = e * r + (1.f / 120.f);
    e = e * r + (1.f / 24.f);
    e = e * r + (1.f / 6.f);
    e = e * r + 0.5f;
    e = e * r + 1.f;
    e = e * r + 1.f;
    vi two_n = ((vi)t - (vi)magic + 127) << 23; /* 2^n: n + 127 in [1, 254] */
    e = e * (vf)two_n;
    x = silu ? x / (one + e) : one / (one + e);
    memcpy(p, &x, sizeof x);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,fma"))) static void silu_sigmoid_512(float *x, size_t n, bool silu)
{
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(x + i, m, silu ? dl_silu16(v) : dl_sigmoid16(v));
    }
}
#endif

DL_CLONES
static void silu_sigmoid(float *x, size_t n, bool silu)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (dl_cpu_level() >= DL_ISA_AVX512) {
        silu_sigmoid_512(x, n, silu);
        return;
    }
#endif
    size_t i = 0;
    for (; i + VL <= n; i += VL) silu_sigmoid16(x + i, silu);
    if (i < n) {
        float v[VL] = {0};
        memcpy(v, x + i, sizeof(float) * (n - i));
        silu_sigmoid16(v, silu);
        memcpy(x + i, v, sizeof(float) * (n - i));
    }
}

DL_CLONES
static void act_serial(dl_act a, float *x, size_t n)
{
    switch (a) {
    case DL_ACT_NONE: break;
    case DL_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
    case DL_ACT_RELU6:
        for (size_t i = 0; i < n; i++) {
            float v = x[i] > 0.f ? x[i] : 0.f;
            x[i] = v < 6.f ? v : 6.f;
        }
        break;
    case DL_ACT_HSWISH:
        for (size_t i = 0; i < n; i++) {
            float r = x[i] + 3.f;
            r = r > 0.f ? (r < 6.f ? r : 6.f) : 0.f;
            x[i] = x[i] * r * (1.f / 6.f);
        }
        break;
    case DL_ACT_SILU: silu_sigmoid(x, n, true); break;
    case DL_ACT_SIGMOID: silu_sigmoid(x, n, false); break;
    case DL_ACT_HSIGMOID:
        for (size_t i = 0; i < n; i++) {
            float r = x[i] + 3.f;
            r = r > 0.f ? (r < 6.f ? r : 6.f) : 0.f;
            x[i] = r * (1.f / 6.f);
        }
        break;
    }
}

typedef struct {
    dl_act a;
    float *x;
    size_t n;
} act_job;

static void act_part(void *arg, int part, int nparts)
{
    const act_job *j = arg;
    size_t i0, i1;
    dl_part_range(j->n, VL, part, nparts, &i0, &i1); /* parts start on multiples of VL */
    if (i0 < i1) act_serial(j->a, j->x + i0, i1 - i0);
}

void dl_act_forward(dl_act a, float *x, size_t n)
{
    if (a == DL_ACT_NONE || n == 0) return;
    /* a whole layer's output (the executor's separate pass) is worth the
     * threads; the kernels' per-row calls are not (and come often: no
     * more than a comparison for them) */
    const size_t grain = a == DL_ACT_SILU || a == DL_ACT_SIGMOID ? 16384 : 65536;
    int parts = n < 2 * grain ? 1 : dl_parallel_parts(n, grain);
    if (parts > 1) {
        act_job j = {a, x, n};
        dl_parallel(parts, act_part, &j);
    } else {
        act_serial(a, x, n);
    }
}
