/* SPDX-License-Identifier: GPL-3.0-or-later */
/* AVX-512 GEMM for 1x1 convolutions, im2col convolutions and dense layers:
 * C = epilogue(A x W^T), A row-major [m][k] (NHWC pixels x input channels),
 * W pre-packed into 16-column panels. Register tiles of up to 12 rows x 32
 * columns accumulate over the whole k (no partial sums written back, C is
 * never zeroed or re-read), then bias, activation and an optional residual
 * add are applied while the tile is still in registers.
 *
 * Each output element is one FMA chain over k = 0..K-1 whatever the tile
 * shape or thread split, so results are identical for any thread count. */
#include "runtime/runtime.h"
#include "runtime/kernel.h"

#include <math.h>
#include <string.h>

size_t dl_gemm_packed_floats(int n, int k)
{
    return (size_t)((n + 15) / 16) * 16 * (size_t)k;
}

/* Panels from W read at w[col * cs + kk * ks]. */
static void pack_panels(int n, int k, const float *w, size_t cs, size_t ks, float *packed)
{
    const int np = (n + 15) / 16;
    for (int p = 0; p < np; p++) {
        float *dst = packed + (size_t)p * k * 16;
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < 16; j++) {
                int col = p * 16 + j;
                dst[(size_t)kk * 16 + j] = col < n ? w[(size_t)col * cs + (size_t)kk * ks] : 0.f;
            }
    }
}

void dl_gemm_pack(int n, int k, const float *w, float *packed)
{
    pack_panels(n, k, w, (size_t)k, 1, packed);
}

void dl_gemm_pack_t(int n, int k, const float *w, float *packed)
{
    pack_panels(n, k, w, 1, (size_t)n, packed);
}

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "runtime/act_avx512.h"

#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE static inline __attribute__((always_inline))

#define MR_MAX 12

/* The epilogue's activations: dl_act16's, except that SiLU (and the other
 * sigmoid-based ones) are applied by a separate pass after the GEMM. */
AVX512 INLINE __m512 act512(__m512 v, dl_act a)
{
    switch (a) {
    case DL_ACT_RELU:
    case DL_ACT_RELU6:
    case DL_ACT_HSWISH: return dl_act16(v, a);
    default: return v; /* NONE; SILU is applied by a scalar pass */
    }
}

typedef struct {
    int k;
    const float *a;
    size_t lda;
    const float *bp;    /* first panel of this tile */
    size_t bstride;     /* floats between panels: k * 16 */
    float *c;
    size_t ldc;
    int col;            /* first column of the tile */
    int ncols;          /* valid columns in this tile (<= NV * 16) */
    const dl_epilogue *ep;
    const float *pf, *pf2; /* the next panels, fetched meanwhile (weights streamed once), or NULL */
    const long *seg;    /* full 12 x 32 tiles only: k segments (kernel_12x32), or NULL: one of k */
} tile_args;

/* The accumulator registers and their places in a [12][32] float buffer
 * (%[out]), for the asm kernels below: OP(register, byte offset). */
#define DL_ZMM_12x32(OP)                                                                           \
    OP(0, 0) OP(1, 64) OP(2, 128) OP(3, 192) OP(4, 256) OP(5, 320) OP(6, 384) OP(7, 448) OP(8, 512)   \
    OP(9, 576) OP(10, 640) OP(11, 704) OP(12, 768) OP(13, 832) OP(14, 896) OP(15, 960) OP(16, 1024)   \
    OP(17, 1088) OP(18, 1152) OP(19, 1216) OP(20, 1280) OP(21, 1344) OP(22, 1408) OP(23, 1472)
/* The first 16 columns of each row only (one register a row). */
#define DL_ZMM_12x16(OP)                                                                           \
    OP(0, 0) OP(1, 128) OP(2, 256) OP(3, 384) OP(4, 512) OP(5, 640) OP(6, 768) OP(7, 896) OP(8, 1024) \
    OP(9, 1152) OP(10, 1280) OP(11, 1408)
#define DL_ZMM_STORE(r, o) "vmovaps %%zmm" #r ", " #o "(%[out])\n\t"
#define DL_ZMM_LOAD(r, o) "vmovaps " #o "(%[out]), %%zmm" #r "\n\t"
#define DL_ZMM_STORE_B(r, o) "vmovaps %%zmm" #r ", " #o "(%[b])\n\t"

/* The full 12 x 32 tile, written out by hand because the compiler, given
 * the same loop in intrinsics, keeps twelve row pointers and so spills them
 * to vector registers and the stack; each reload of a spilled pointer
 * (vmovq) takes an issue slot on port 0, one of the two FMA ports (~8 % of
 * the loop, perf on Sapphire Rapids). Here the twelve rows are four base
 * pointers (rows 0-2, 3-5, 6-8, 9-11) plus lda and 2*lda, the k loop is
 * unrolled by four, and the prefetches are unconditional (the caller points
 * them at the panels themselves when there is nothing to fetch).
 *
 * The k range is a list of segments, each a run of k steps with its own A
 * and B starting points (one segment: a GEMM; one per kernel row: a direct
 * convolution, whose A rows are input pixels read in place). Each sum is
 * the same FMA chain (vfmadd231ps acc += x * w) in the same order as the
 * intrinsics' tiles and an im2col GEMM, so results are bit-identical.
 *
 * The epilogue runs in the same asm while the sums are in registers: bias,
 * ReLU/ReLU6, the store to C and the residual add (c2 = act(c + res)), with
 * no round trip through memory. With c == NULL the sums go to out[12][32]
 * instead (64-byte aligned) for the C epilogue's other cases. */
typedef struct {
    const float *a;     /* 0: A, plus each segment's byte offset */
    long lda;           /* 8: bytes between A rows */
    const float *b;     /* 16: the pair's first panel, plus each segment's byte offset */
    long bs;            /* 24: bytes between the two panels */
    const long *seg;    /* 32: {a_off, b_off, k} triples, ended by k < 0 */
    float *out;         /* 40: sums when c == NULL */
    float *c;           /* 48 */
    long ldc;           /* 56: bytes */
    const float *bias;  /* 64: 32 floats (zeros when none) */
    long act;           /* 72: 0 none, 1 ReLU, 2 ReLU6 */
    const float *res;   /* 80: or NULL */
    long ld_res;        /* 88: bytes */
    float *c2;          /* 96 */
    long ld_c2;         /* 104: bytes */
    long res_act;       /* 112: as act */
    long mask1;         /* 120: columns 16-31 present (0xffff: all 32) */
} k12x32_args;

/* The 24 accumulators in row order: OPE(row base, index, byte column, reg)
 * for the first panel's (even registers), OPO for the second's (odd). */
#define DL_ROWS_12x32(OPE, OPO, off0, off1)                                                        \
    OPE("%[a0]", "", off0, 0) OPO("%[a0]", "", off1, 1) OPE("%[a0]", ",%[ld]", off0, 2)                \
    OPO("%[a0]", ",%[ld]", off1, 3) OPE("%[a0]", ",%[ld],2", off0, 4) OPO("%[a0]", ",%[ld],2", off1, 5) \
    OPE("%[a3]", "", off0, 6) OPO("%[a3]", "", off1, 7) OPE("%[a3]", ",%[ld]", off0, 8)                \
    OPO("%[a3]", ",%[ld]", off1, 9) OPE("%[a3]", ",%[ld],2", off0, 10) OPO("%[a3]", ",%[ld],2", off1, 11) \
    OPE("%[a6]", "", off0, 12) OPO("%[a6]", "", off1, 13) OPE("%[a6]", ",%[ld]", off0, 14)             \
    OPO("%[a6]", ",%[ld]", off1, 15) OPE("%[a6]", ",%[ld],2", off0, 16) OPO("%[a6]", ",%[ld],2", off1, 17) \
    OPE("%[a9]", "", off0, 18) OPO("%[a9]", "", off1, 19) OPE("%[a9]", ",%[ld]", off0, 20)             \
    OPO("%[a9]", ",%[ld]", off1, 21) OPE("%[a9]", ",%[ld],2", off0, 22) OPO("%[a9]", ",%[ld],2", off1, 23)
#define DL_EACH_ACC(OP)                                                                            \
    OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) OP(12) OP(13) OP(14) OP(15) \
    OP(16) OP(17) OP(18) OP(19) OP(20) OP(21) OP(22) OP(23)
#define DL_BIAS(r) "vaddps %%zmm" #r ", %%zmm" DL_BIASREG_##r ", %%zmm" #r "\n\t"
#define DL_MAX0(r) "vmaxps %%zmm26, %%zmm" #r ", %%zmm" #r "\n\t"
#define DL_MIN6(r) "vminps %%zmm27, %%zmm" #r ", %%zmm" #r "\n\t"
#define DL_ST(base, idx, off, r) "vmovups %%zmm" #r ", " #off "(" base idx ")\n\t"
#define DL_ADDM(base, idx, off, r) "vaddps " #off "(" base idx "), %%zmm" #r ", %%zmm" #r "\n\t"
/* the same under mask k1 (the second panel of a tile narrower than 32) */
#define DL_STM(base, idx, off, r) "vmovups %%zmm" #r ", " #off "(" base idx ")%{%%k1%}\n\t"
#define DL_ADDMM(base, idx, off, r) "vaddps " #off "(" base idx "), %%zmm" #r ", %%zmm" #r "%{%%k1%}\n\t"
/* C's 12 rows from the bases: whole vectors when k1 is full (a masked
 * store cannot forward to later loads), else the second panel masked */
#define DL_STORE_ROWS(label)                                                                       \
    "cmpl $0xffff, 120(%[p])\n\t" "jne " label "f\n\t"                                            \
    DL_ROWS_12x32(DL_ST, DL_ST, 0, 64) "jmp 1" label "f\n\t"                                       \
    label ":\n\t" DL_ROWS_12x32(DL_ST, DL_STM, 0, 64) "1" label ":\n\t"
/* The head of the asm kernels' segment loop (label 10): the next segment's
 * k split into k4 (steps of four) and k1, or on to label 20 when the list
 * ends (k < 0). */
#define DL_SEG_HEAD                                                                                \
    "10:\n\t"                                                                                      \
    "mov 16(%[seg]), %[k4]\n\t"                                                                    \
    "test %[k4], %[k4]\n\t"                                                                        \
    "js 20f\n\t"                                                                                   \
    "mov %[k4], %[k1]\n\t"                                                                         \
    "shr $2, %[k4]\n\t"                                                                            \
    "and $3, %[k1]\n\t"
/* The rest of a segment: its k steps four at a time, then one at a time
 * (STEP(a_offset, b_offset), ADVANCE(n)), then on to the next segment
 * (label 10); label 20 follows, where the list has ended. */
#define DL_SEG_LOOP(STEP, ADVANCE)                                                                 \
    "add 8(%[seg]), %[b]\n\t"                                                                      \
    "test %[k4], %[k4]\n\t"                                                                        \
    "jz 2f\n\t"                                                                                    \
    "1:\n\t"                                                                                       \
    STEP(0, 0) STEP(4, 64) STEP(8, 128) STEP(12, 192) ADVANCE(4)                                   \
    "dec %[k4]\n\t"                                                                                \
    "jnz 1b\n\t"                                                                                   \
    "2:\n\t"                                                                                       \
    "test %[k1], %[k1]\n\t"                                                                        \
    "jz 4f\n\t"                                                                                    \
    "3:\n\t"                                                                                       \
    STEP(0, 0) ADVANCE(1)                                                                          \
    "dec %[k1]\n\t"                                                                                \
    "jnz 3b\n\t"                                                                                   \
    "4:\n\t"                                                                                       \
    "add $24, %[seg]\n\t"                                                                          \
    "jmp 10b\n\t"                                                                                  \
    "20:\n\t"
/* Four row bases from the pointer in `src` and the stride in %[ld]. */
#define DL_BASES(src)                                                                              \
    "mov " src ", %[a0]\n\t"                                                                       \
    "lea (%[a0],%[ld],2), %[a3]\n\t" "add %[ld], %[a3]\n\t"                                        \
    "lea (%[a3],%[ld],2), %[a6]\n\t" "add %[ld], %[a6]\n\t"                                        \
    "lea (%[a6],%[ld],2), %[a9]\n\t" "add %[ld], %[a9]\n\t"
/* Activation code in %[k4] applied to every accumulator (zmm26 = 0, zmm27 = 6). */
#define DL_ACT_ALL(label)                                                                          \
    "test %[k4], %[k4]\n\t" "jz " label "f\n\t"                                                    \
    DL_EACH_ACC(DL_MAX0)                                                                           \
    "cmp $2, %[k4]\n\t" "jne " label "f\n\t"                                                       \
    DL_EACH_ACC(DL_MIN6)                                                                           \
    label ":\n\t"
/* even accumulators take the first panel's bias (zmm24), odd the second's */
#define DL_BIASREG_0 "24"
#define DL_BIASREG_1 "25"
#define DL_BIASREG_2 "24"
#define DL_BIASREG_3 "25"
#define DL_BIASREG_4 "24"
#define DL_BIASREG_5 "25"
#define DL_BIASREG_6 "24"
#define DL_BIASREG_7 "25"
#define DL_BIASREG_8 "24"
#define DL_BIASREG_9 "25"
#define DL_BIASREG_10 "24"
#define DL_BIASREG_11 "25"
#define DL_BIASREG_12 "24"
#define DL_BIASREG_13 "25"
#define DL_BIASREG_14 "24"
#define DL_BIASREG_15 "25"
#define DL_BIASREG_16 "24"
#define DL_BIASREG_17 "25"
#define DL_BIASREG_18 "24"
#define DL_BIASREG_19 "25"
#define DL_BIASREG_20 "24"
#define DL_BIASREG_21 "25"
#define DL_BIASREG_22 "24"
#define DL_BIASREG_23 "25"

AVX512 static void kernel_12x32(const k12x32_args *p, const float *pf, const float *pf2)
{
    const float *a0, *a3, *a6, *a9, *b;
    long k4, k1, ld = p->lda, bs = p->bs;
    const long *seg = p->seg;
#define DL_ROW(base, idx, d, acc0, acc1)                                                           \
    "vbroadcastss " #d "(" base idx "), %%zmm26\n\t"                                                 \
    "vfmadd231ps %%zmm24, %%zmm26, %%zmm" #acc0 "\n\t"                                               \
    "vfmadd231ps %%zmm25, %%zmm26, %%zmm" #acc1 "\n\t"
#define DL_STEP(d, bd)                                                                             \
    "vmovups " #bd "(%[b]), %%zmm24\n\t"                                                           \
    "vmovups " #bd "(%[b],%[bs]), %%zmm25\n\t"                                                      \
    "prefetcht0 " #bd "(%[pf])\n\t"                                                                \
    "prefetcht0 " #bd "(%[pf2])\n\t"                                                               \
    DL_ROW("%[a0]", "", d, 0, 1) DL_ROW("%[a0]", ",%[ld]", d, 2, 3) DL_ROW("%[a0]", ",%[ld],2", d, 4, 5) \
    DL_ROW("%[a3]", "", d, 6, 7) DL_ROW("%[a3]", ",%[ld]", d, 8, 9) DL_ROW("%[a3]", ",%[ld],2", d, 10, 11) \
    DL_ROW("%[a6]", "", d, 12, 13) DL_ROW("%[a6]", ",%[ld]", d, 14, 15)                            \
    DL_ROW("%[a6]", ",%[ld],2", d, 16, 17) DL_ROW("%[a9]", "", d, 18, 19)                          \
    DL_ROW("%[a9]", ",%[ld]", d, 20, 21) DL_ROW("%[a9]", ",%[ld],2", d, 22, 23)
#define DL_ADVANCE(n)                                                                              \
    "add $" #n "*4, %[a0]\n\t"                                                                     \
    "add $" #n "*4, %[a3]\n\t"                                                                     \
    "add $" #n "*4, %[a6]\n\t"                                                                     \
    "add $" #n "*4, %[a9]\n\t"                                                                     \
    "add $" #n "*64, %[b]\n\t"                                                                     \
    "add $" #n "*64, %[pf]\n\t"                                                                    \
    "add $" #n "*64, %[pf2]\n\t"
    __asm__ volatile(
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vmovaps %%zmm0, %%zmm1\n\t" "vmovaps %%zmm0, %%zmm2\n\t" "vmovaps %%zmm0, %%zmm3\n\t"
        "vmovaps %%zmm0, %%zmm4\n\t" "vmovaps %%zmm0, %%zmm5\n\t" "vmovaps %%zmm0, %%zmm6\n\t"
        "vmovaps %%zmm0, %%zmm7\n\t" "vmovaps %%zmm0, %%zmm8\n\t" "vmovaps %%zmm0, %%zmm9\n\t"
        "vmovaps %%zmm0, %%zmm10\n\t" "vmovaps %%zmm0, %%zmm11\n\t" "vmovaps %%zmm0, %%zmm12\n\t"
        "vmovaps %%zmm0, %%zmm13\n\t" "vmovaps %%zmm0, %%zmm14\n\t" "vmovaps %%zmm0, %%zmm15\n\t"
        "vmovaps %%zmm0, %%zmm16\n\t" "vmovaps %%zmm0, %%zmm17\n\t" "vmovaps %%zmm0, %%zmm18\n\t"
        "vmovaps %%zmm0, %%zmm19\n\t" "vmovaps %%zmm0, %%zmm20\n\t" "vmovaps %%zmm0, %%zmm21\n\t"
        "vmovaps %%zmm0, %%zmm22\n\t" "vmovaps %%zmm0, %%zmm23\n\t"
        DL_SEG_HEAD
        DL_BASES("0(%[p])")
        "add 0(%[seg]), %[a0]\n\t" "add 0(%[seg]), %[a3]\n\t" "add 0(%[seg]), %[a6]\n\t" "add 0(%[seg]), %[a9]\n\t"
        "mov 16(%[p]), %[b]\n\t"
        DL_SEG_LOOP(DL_STEP, DL_ADVANCE)
        "mov 48(%[p]), %[b]\n\t"
        "test %[b], %[b]\n\t"
        "jnz 30f\n\t"
        /* sums only */
        "mov 40(%[p]), %[b]\n\t"
        DL_ZMM_12x32(DL_ZMM_STORE_B)
        "jmp 90f\n\t"
        /* epilogue: bias, activation, C */
        "30:\n\t"
        "kmovw 120(%[p]), %%k1\n\t"
        "mov 64(%[p]), %[b]\n\t"
        "vmovups 0(%[b]), %%zmm24\n\t"
        "vmovups 64(%[b]), %%zmm25%{%%k1%}%{z%}\n\t"
        DL_EACH_ACC(DL_BIAS)
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
        "mov $0x40c00000, %k[k1]\n\t"
        "vpbroadcastd %k[k1], %%zmm27\n\t"
        "mov 72(%[p]), %[k4]\n\t"
        DL_ACT_ALL("40")
        "mov 56(%[p]), %[ld]\n\t"
        DL_BASES("48(%[p])")
        DL_STORE_ROWS("60")
        /* residual: c2 = act(c + res) */
        "mov 80(%[p]), %[b]\n\t"
        "test %[b], %[b]\n\t"
        "jz 90f\n\t"
        "mov 88(%[p]), %[ld]\n\t"
        DL_BASES("%[b]")
        DL_ROWS_12x32(DL_ADDM, DL_ADDMM, 0, 64)
        "mov 112(%[p]), %[k4]\n\t"
        DL_ACT_ALL("50")
        "mov 104(%[p]), %[ld]\n\t"
        DL_BASES("96(%[p])")
        DL_STORE_ROWS("70")
        "90:\n\t"
        : [a0] "=&r"(a0), [a3] "=&r"(a3), [a6] "=&r"(a6), [a9] "=&r"(a9), [b] "=&r"(b), [pf] "+r"(pf),
          [pf2] "+r"(pf2), [k4] "=&r"(k4), [k1] "=&r"(k1), [ld] "+r"(ld), [seg] "+r"(seg)
        : [bs] "r"(bs), [p] "r"(p)
        : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
          "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "k1");
#undef DL_ROW
#undef DL_STEP
#undef DL_ADVANCE
}

/* A 16-float store under mask m, unmasked when m is full: a masked store
 * cannot forward to later loads, and loads whose address bits 0-11 match
 * it (4K aliasing, common between activation rows) wait for it to retire. */
AVX512 INLINE void store16(float *p, __mmask16 m, __m512 v)
{
    if (m == (__mmask16)0xffff) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, m, v);
}

/* The 7 x 48 tile (three panels, 21 accumulators): the same k loop and
 * epilogue as kernel_12x32 for maps whose rows are a multiple of 7 but not
 * of 12 (MobileNet's 7x7 stage at batch 1: 49 rows would otherwise be tiles
 * of 12, 10, 9, 9, 9 rows, four of them in the compiler's slower loop). Per
 * k step 3 panel loads and 7 broadcasts feed 21 FMAs, still FMA-bound.
 * Full 48 columns only, epilogue in the asm always (the caller checks);
 * prefetches: the next triple, at pf. Same FMA chains as every tile. */
#define DL_EACH21(OP)                                                                              \
    OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) OP(12) OP(13) OP(14) OP(15) \
    OP(16) OP(17) OP(18) OP(19) OP(20)
#define DL_B3_0 "24"
#define DL_B3_1 "25"
#define DL_B3_2 "26"
#define DL_B3_3 "24"
#define DL_B3_4 "25"
#define DL_B3_5 "26"
#define DL_B3_6 "24"
#define DL_B3_7 "25"
#define DL_B3_8 "26"
#define DL_B3_9 "24"
#define DL_B3_10 "25"
#define DL_B3_11 "26"
#define DL_B3_12 "24"
#define DL_B3_13 "25"
#define DL_B3_14 "26"
#define DL_B3_15 "24"
#define DL_B3_16 "25"
#define DL_B3_17 "26"
#define DL_B3_18 "24"
#define DL_B3_19 "25"
#define DL_B3_20 "26"
#define DL_BIAS3(r) "vaddps %%zmm" #r ", %%zmm" DL_B3_##r ", %%zmm" #r "\n\t"
#define DL_MAX0_3(r) "vmaxps %%zmm27, %%zmm" #r ", %%zmm" #r "\n\t"
#define DL_MIN6_3(r) "vminps %%zmm28, %%zmm" #r ", %%zmm" #r "\n\t"
#define DL_ACT_ALL3(label)                                                                         \
    "test %[k4], %[k4]\n\t" "jz " label "f\n\t"                                                    \
    DL_EACH21(DL_MAX0_3)                                                                           \
    "cmp $2, %[k4]\n\t" "jne " label "f\n\t"                                                       \
    DL_EACH21(DL_MIN6_3)                                                                           \
    label ":\n\t"
/* rows: a0 (0-2), a3 (3-5), a6 (6) with "", ld, 2*ld */
#define DL_ROWS_7x48(OP)                                                                           \
    OP("%[a0]", "", 0, 0) OP("%[a0]", "", 64, 1) OP("%[a0]", "", 128, 2)                               \
    OP("%[a0]", ",%[ld]", 0, 3) OP("%[a0]", ",%[ld]", 64, 4) OP("%[a0]", ",%[ld]", 128, 5)             \
    OP("%[a0]", ",%[ld],2", 0, 6) OP("%[a0]", ",%[ld],2", 64, 7) OP("%[a0]", ",%[ld],2", 128, 8)       \
    OP("%[a3]", "", 0, 9) OP("%[a3]", "", 64, 10) OP("%[a3]", "", 128, 11)                             \
    OP("%[a3]", ",%[ld]", 0, 12) OP("%[a3]", ",%[ld]", 64, 13) OP("%[a3]", ",%[ld]", 128, 14)          \
    OP("%[a3]", ",%[ld],2", 0, 15) OP("%[a3]", ",%[ld],2", 64, 16) OP("%[a3]", ",%[ld],2", 128, 17)    \
    OP("%[a6]", "", 0, 18) OP("%[a6]", "", 64, 19) OP("%[a6]", "", 128, 20)
#define DL_BASES3(src)                                                                             \
    "mov " src ", %[a0]\n\t"                                                                       \
    "lea (%[a0],%[ld],2), %[a3]\n\t" "add %[ld], %[a3]\n\t"                                        \
    "lea (%[a3],%[ld],2), %[a6]\n\t" "add %[ld], %[a6]\n\t"

AVX512 static void kernel_7x48(const k12x32_args *p, const float *pf)
{
    const float *a0, *a3, *a6, *b;
    long k4, k1, ld = p->lda, bs = p->bs;
    const long *seg = p->seg;
#define DL_ROW3(base, idx, d, r0, r1, r2)                                                          \
    "vbroadcastss " #d "(" base idx "), %%zmm27\n\t"                                                 \
    "vfmadd231ps %%zmm24, %%zmm27, %%zmm" #r0 "\n\t"                                                 \
    "vfmadd231ps %%zmm25, %%zmm27, %%zmm" #r1 "\n\t"                                                 \
    "vfmadd231ps %%zmm26, %%zmm27, %%zmm" #r2 "\n\t"
#define DL_STEP3(d, bd)                                                                            \
    "vmovups " #bd "(%[b]), %%zmm24\n\t"                                                           \
    "vmovups " #bd "(%[b],%[bs]), %%zmm25\n\t"                                                      \
    "vmovups " #bd "(%[b],%[bs],2), %%zmm26\n\t"                                                    \
    "prefetcht0 " #bd "(%[pf])\n\t"                                                                \
    "prefetcht0 " #bd "(%[pf],%[bs])\n\t"                                                          \
    "prefetcht0 " #bd "(%[pf],%[bs],2)\n\t"                                                        \
    DL_ROW3("%[a0]", "", d, 0, 1, 2) DL_ROW3("%[a0]", ",%[ld]", d, 3, 4, 5)                         \
    DL_ROW3("%[a0]", ",%[ld],2", d, 6, 7, 8) DL_ROW3("%[a3]", "", d, 9, 10, 11)                     \
    DL_ROW3("%[a3]", ",%[ld]", d, 12, 13, 14) DL_ROW3("%[a3]", ",%[ld],2", d, 15, 16, 17)           \
    DL_ROW3("%[a6]", "", d, 18, 19, 20)
#define DL_ADVANCE3(n)                                                                             \
    "add $" #n "*4, %[a0]\n\t"                                                                     \
    "add $" #n "*4, %[a3]\n\t"                                                                     \
    "add $" #n "*4, %[a6]\n\t"                                                                     \
    "add $" #n "*64, %[b]\n\t"                                                                     \
    "add $" #n "*64, %[pf]\n\t"
#define DL_ZERO3(r) "vpxord %%zmm" #r ", %%zmm" #r ", %%zmm" #r "\n\t"
    __asm__ volatile(
        DL_EACH21(DL_ZERO3)
        DL_SEG_HEAD
        DL_BASES3("0(%[p])")
        "add 0(%[seg]), %[a0]\n\t" "add 0(%[seg]), %[a3]\n\t" "add 0(%[seg]), %[a6]\n\t"
        "mov 16(%[p]), %[b]\n\t"
        DL_SEG_LOOP(DL_STEP3, DL_ADVANCE3)
        /* epilogue: bias, activation, C */
        "mov 64(%[p]), %[b]\n\t"
        "vmovups 0(%[b]), %%zmm24\n\t"
        "vmovups 64(%[b]), %%zmm25\n\t"
        "vmovups 128(%[b]), %%zmm26\n\t"
        DL_EACH21(DL_BIAS3)
        "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "mov $0x40c00000, %k[k1]\n\t"
        "vpbroadcastd %k[k1], %%zmm28\n\t"
        "mov 72(%[p]), %[k4]\n\t"
        DL_ACT_ALL3("40")
        "mov 56(%[p]), %[ld]\n\t"
        DL_BASES3("48(%[p])")
        DL_ROWS_7x48(DL_ST)
        /* residual: c2 = act(c + res) */
        "mov 80(%[p]), %[b]\n\t"
        "test %[b], %[b]\n\t"
        "jz 90f\n\t"
        "mov 88(%[p]), %[ld]\n\t"
        DL_BASES3("%[b]")
        DL_ROWS_7x48(DL_ADDM)
        "mov 112(%[p]), %[k4]\n\t"
        DL_ACT_ALL3("50")
        "mov 104(%[p]), %[ld]\n\t"
        DL_BASES3("96(%[p])")
        DL_ROWS_7x48(DL_ST)
        "90:\n\t"
        : [a0] "=&r"(a0), [a3] "=&r"(a3), [a6] "=&r"(a6), [b] "=&r"(b), [pf] "+r"(pf), [k4] "=&r"(k4),
          [k1] "=&r"(k1), [ld] "+r"(ld), [seg] "+r"(seg)
        : [bs] "r"(bs), [p] "r"(p)
        : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
          "xmm24", "xmm25", "xmm26", "xmm27", "xmm28");
#undef DL_ROW3
#undef DL_STEP3
#undef DL_ADVANCE3
#undef DL_ZERO3
}

/* kernel_12x32's activation code, or -1 when its epilogue cannot apply it. */
static inline int asm_act(dl_act a)
{
    return a == DL_ACT_NONE ? 0 : a == DL_ACT_RELU ? 1 : a == DL_ACT_RELU6 ? 2 : -1;
}

/* the bias of a layer without one (kernel_12x32 reads 32, kernel_7x48 48) */
static const float zeros48[48] __attribute__((aligned(64)));

/* The asm kernels apply e's epilogue, act standing for e->act: activations
 * they know, C written (not added to), no SiLU pass after. */
static inline bool asm_epilogue_ok(const dl_epilogue *e, dl_act act)
{
    return !e->accumulate && e->act != DL_ACT_SILU && asm_act(act) >= 0 && (!e->res || asm_act(e->res_act) >= 0);
}

/* p's epilogue fields for the tile at row `row` (of e's res and c2), column
 * col, with C at c (the tile's first element). */
static void asm_epilogue_args(k12x32_args *p, const dl_epilogue *e, dl_act act, size_t row, int col, float *c,
                              size_t ldc)
{
    p->c = c;
    p->ldc = (long)(ldc * sizeof(float));
    p->bias = e->bias ? e->bias + col : zeros48;
    p->act = asm_act(act);
    if (e->res) {
        p->res = e->res + row * e->ld_res + col;
        p->ld_res = (long)(e->ld_res * sizeof(float));
        p->c2 = e->c2 + row * e->ld_c2 + col;
        p->ld_c2 = (long)(e->ld_c2 * sizeof(float));
        p->res_act = asm_act(e->res_act);
    }
}

/* The register tile: MR rows x NV 16-wide panels. MR and NV are compile-time
 * constants at every call site, so the accumulators live in registers. */
AVX512 INLINE void tile(const tile_args *t, const int MR, const int NV, const int ACT)
{
    __m512 acc[MR_MAX][2];
    if (MR == MR_MAX && NV == 2 && (t->k > 0 || t->seg)) {
        __attribute__((aligned(64))) float sums[MR_MAX][32];
        const float *b1 = t->bp + t->bstride;
        /* the epilogue's residual rows (a skip tensor, often out of cache,
         * read 128 bytes a row at a 1-8 KiB stride) arrive while the sums run */
        const dl_epilogue *e0 = t->ep;
        if (e0->res)
            for (int i = 0; i < MR; i++) {
                const float *r = e0->res + (size_t)i * e0->ld_res + t->col;
                _mm_prefetch((const char *)r, _MM_HINT_T0);
                _mm_prefetch((const char *)(r + 16), _MM_HINT_T0);
            }
        const long one[6] = {0, 0, t->k, 0, 0, -1};
        k12x32_args p = {.a = t->a, .lda = (long)(t->lda * sizeof(float)), .b = t->bp,
                         .bs = (long)(t->bstride * sizeof(float)), .seg = t->seg ? t->seg : one, .out = &sums[0][0]};
        /* the asm epilogue: full tiles, activations it knows, C written (not added to) */
        const dl_act act = ACT >= 0 ? (dl_act)ACT : e0->act;
        if (t->ncols > 16 && asm_epilogue_ok(e0, act)) {
            asm_epilogue_args(&p, e0, act, 0, t->col, t->c + t->col, t->ldc);
            p.mask1 = t->ncols >= 32 ? 0xffff : (long)((1u << (t->ncols - 16)) - 1u);
        }
        kernel_12x32(&p, t->pf ? t->pf : t->bp, t->pf2 ? t->pf2 : b1);
        if (p.c) return;
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_load_ps(&sums[i][v * 16]);
        goto epilogue;
    }
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    const float *a = t->a, *b0 = t->bp, *b1 = t->bp + t->bstride;
    const size_t lda = t->lda;
    const float *pf = t->pf, *pf2 = t->pf2;
    for (int kk = 0; kk < t->k; kk++) {
        if (pf) _mm_prefetch((const char *)(pf + (size_t)kk * 16), _MM_HINT_T0);
        if (pf2) _mm_prefetch((const char *)(pf2 + (size_t)kk * 16), _MM_HINT_T0);
        __m512 w0 = _mm512_loadu_ps(b0 + (size_t)kk * 16);
        __m512 w1 = NV > 1 ? _mm512_loadu_ps(b1 + (size_t)kk * 16) : w0;
        for (int i = 0; i < MR; i++) {
            __m512 x = _mm512_set1_ps(a[(size_t)i * lda + kk]);
            acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
            if (NV > 1) acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
        }
    }
epilogue:;
    const dl_epilogue *ep = t->ep;
    for (int v = 0; v < NV; v++) {
        int left = t->ncols - v * 16;
        __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        int col = t->col + v * 16;
        __m512 bias = ep->bias ? _mm512_maskz_loadu_ps(m, ep->bias + col) : _mm512_setzero_ps();
        /* ACT >= 0: the activation is a compile-time constant (full tiles) */
        const dl_act act = ACT >= 0 ? (dl_act)ACT : ep->act;
        for (int i = 0; i < MR; i++) {
            __m512 y = act512(_mm512_add_ps(acc[i][v], bias), act);
            if (ep->accumulate) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, t->c + (size_t)i * t->ldc + col));
            store16(t->c + (size_t)i * t->ldc + col, m, y);
            if (ep->res && ep->act != DL_ACT_SILU && ep->res_act != DL_ACT_SILU) {
                __m512 r = _mm512_maskz_loadu_ps(m, ep->res + (size_t)i * ep->ld_res + col);
                store16(ep->c2 + (size_t)i * ep->ld_c2 + col, m, act512(_mm512_add_ps(y, r), ep->res_act));
            }
        }
    }
}

#define TILE_CASES(NV)                                                                             \
    if (mr == MR_MAX) {                                                                            \
        switch (t->ep->act) {                                                                      \
        case DL_ACT_RELU: tile(t, MR_MAX, NV, DL_ACT_RELU); return;                                \
        case DL_ACT_RELU6: tile(t, MR_MAX, NV, DL_ACT_RELU6); return;                              \
        case DL_ACT_HSWISH: tile(t, MR_MAX, NV, DL_ACT_HSWISH); return;                            \
        default: tile(t, MR_MAX, NV, DL_ACT_NONE); return; /* NONE; SILU: scalar pass */           \
        }                                                                                          \
    }                                                                                              \
    switch (mr) {                                                                                  \
    case 1: tile(t, 1, NV, -1); break;                                                             \
    case 2: tile(t, 2, NV, -1); break;                                                             \
    case 3: tile(t, 3, NV, -1); break;                                                             \
    case 4: tile(t, 4, NV, -1); break;                                                             \
    case 5: tile(t, 5, NV, -1); break;                                                             \
    case 6: tile(t, 6, NV, -1); break;                                                             \
    case 7: tile(t, 7, NV, -1); break;                                                             \
    case 8: tile(t, 8, NV, -1); break;                                                             \
    case 9: tile(t, 9, NV, -1); break;                                                             \
    case 10: tile(t, 10, NV, -1); break;                                                           \
    default: tile(t, 11, NV, -1); break;                                                           \
    }

AVX512 static void tile_nv1(const tile_args *t, int mr)
{
    TILE_CASES(1)
}

AVX512 static void tile_nv2(const tile_args *t, int mr)
{
    TILE_CASES(2)
}

/* Scalar activations the vector epilogue leaves out (SILU), on finished rows. */
static void silu_rows(int m0, int m1, int c0, int c1, float *c, size_t ldc, const dl_epilogue *ep)
{
    for (int i = m0; i < m1; i++) {
        float *row = c + (size_t)i * ldc;
        if (ep->act == DL_ACT_SILU) dl_act_forward(DL_ACT_SILU, row + c0, (size_t)(c1 - c0));
        if (ep->res) {
            float *o = ep->c2 + (size_t)i * ep->ld_c2;
            const float *r = ep->res + (size_t)i * ep->ld_res;
            for (int j = c0; j < c1; j++) o[j] = row[j] + r[j];
            dl_act_forward(ep->res_act, o + c0, (size_t)(c1 - c0));
        }
    }
}

void dl_gemm_tile_seg(const float *a, size_t lda, const long *seg, const float *packed, int k, int pair, float *c,
                      size_t ldc, const dl_epilogue *ep)
{
    tile_args t = {0};
    t.k = k;
    t.a = a;
    t.lda = lda;
    t.bstride = (size_t)k * 16;
    t.bp = packed + (size_t)pair * 2 * t.bstride;
    t.c = c;
    t.ldc = ldc;
    t.col = pair * 32;
    t.ncols = 32;
    t.ep = ep;
    t.seg = seg;
    tile_nv2(&t, MR_MAX);
}

typedef struct {
    int m, n, k;
    const float *a;
    size_t lda;
    const float *packed;
    float *c;
    size_t ldc;
    const dl_epilogue *ep;
    bool split_rows;
} gemm_job;

/* Rows of row tile s in a block of r rows: MR_MAX, except that a remainder
 * of 1-3 rows is shared with up to three full tiles before it (49 rows:
 * 12 10 9 9 9, not 12 12 12 12 1), since a tile that small waits on FMA
 * latency rather than throughput. Tile shapes never change the sums. */
static int tile_rows(int r, int s)
{
    int nt = (r + MR_MAX - 1) / MR_MAX, q = nt < 4 ? nt : 4;
    if (r % MR_MAX == 0 || r % MR_MAX > 3 || nt < 2 || s < nt - q) {
        int left = r - s * MR_MAX;
        return left < MR_MAX ? left : MR_MAX;
    }
    int tail = r - (nt - q) * MR_MAX, u = s - (nt - q);
    return tail / q + (u < tail % q ? 1 : 0);
}

/* Most rows of a block that kernel_7x48 takes (more: 12-row tiles lose
 * less to a remainder). */
#define SEVEN_MAX_ROWS 120

/* Rows [m0, m1) x panels [p0, p1). */
AVX512 static void gemm_block(const gemm_job *j, int m0, int m1, int p0, int p1)
{
    const int K = j->k;
    /* rows per block: the A block (mc x k) stays in L1 while it meets every
     * panel; weights stay in L2 */
    int mc = 6144 / (K > 0 ? K : 1);
    mc = mc < MR_MAX ? MR_MAX : mc - mc % MR_MAX;
    if (mc > 240) mc = 240;
    /* weights beyond L2/4: an L1 row block would re-read them all from
     * memory every 12 rows. Rows go in blocks of at most half of L2 that stay
     * there while each panel pair streams past once: all rows at once in
     * the 7x7 layers at batch 1, two blocks in resnet50's 14x14 3x3 convs.
     * Equal blocks: a last block of a few rows would stream all weights
     * again for little work. */
    const size_t l2 = dl_cpu_l2_bytes(), w_bytes = (size_t)(p1 - p0) * 16 * K * sizeof(float);
    const bool stream_w = w_bytes > l2 / 4;
    if (stream_w) {
        size_t fit = l2 / 2 / ((size_t)K * sizeof(float));
        int rows = m1 - m0, cap = fit < (size_t)MR_MAX ? MR_MAX : fit > (size_t)rows ? rows : (int)fit;
        int nb = (rows + cap - 1) / cap, big = (rows + nb - 1) / nb;
        big += (MR_MAX - big % MR_MAX) % MR_MAX;
        if (big > mc) mc = big;
    }
    /* a range kernel_7x48 takes whole (rows in sevens) stays one block */
    const int range = m1 - m0;
    if (range % 7 == 0 && range % MR_MAX != 0 && range <= SEVEN_MAX_ROWS && mc < range) mc = range;
    tile_args t = {0};
    t.k = K;
    t.lda = j->lda;
    t.bstride = (size_t)K * 16;
    t.ldc = j->ldc;
    dl_epilogue ep = *j->ep;
    t.ep = &ep;
    /* 7-row tiles of three panels where rows come in sevens, not twelves
     * (kernel_7x48), with the epilogues its asm applies */
    const dl_epilogue *je = j->ep;
    const bool asm_ep = asm_epilogue_ok(je, je->act);
    for (int mb = m0; mb < m1; mb += mc) {
        int me = mb + mc < m1 ? mb + mc : m1;
        int p = p0;
        const int rows = me - mb;
        if (asm_ep && rows % 7 == 0 && rows % MR_MAX != 0 && rows <= SEVEN_MAX_ROWS) {
            const long one[6] = {0, 0, K, 0, 0, -1};
            for (; p + 3 <= p1 && (p + 3) * 16 <= j->n; p += 3) {
                const float *bp = j->packed + (size_t)p * K * 16;
                const int col = p * 16;
                for (int i = mb; i < me; i += 7) {
                    k12x32_args a = {.a = j->a + (size_t)i * j->lda, .lda = (long)(j->lda * sizeof(float)), .b = bp,
                                     .bs = (long)((size_t)K * 16 * sizeof(float)), .seg = one};
                    asm_epilogue_args(&a, je, je->act, (size_t)i, col, j->c + (size_t)i * j->ldc + col, j->ldc);
                    /* the first row tile fetches the next triple */
                    bool fetch = stream_w && i == mb && p + 6 <= p1;
                    kernel_7x48(&a, fetch ? bp + (size_t)3 * K * 16 : bp);
                }
            }
        }
        for (; p < p1; p += 2) {
            int nv = p1 - p >= 2 ? 2 : 1;
            t.bp = j->packed + (size_t)p * K * 16;
            t.col = p * 16;
            int left = j->n - t.col;
            t.ncols = left < nv * 16 ? left : nv * 16;
            for (int i = mb, s = 0; i < me; i += tile_rows(me - mb, s++)) {
                int mr = tile_rows(me - mb, s);
                /* the first row tile fetches the next pair: by the next
                 * pair's turn it has come from memory */
                bool fetch = stream_w && i == mb;
                t.pf = fetch && p + 2 < p1 ? t.bp + 2 * t.bstride : NULL;
                t.pf2 = fetch && p + 3 < p1 ? t.bp + 3 * t.bstride : NULL;
                t.a = j->a + (size_t)i * j->lda;
                t.c = j->c + (size_t)i * j->ldc;
                ep.res = j->ep->res ? j->ep->res + (size_t)i * j->ep->ld_res : NULL;
                ep.c2 = j->ep->c2 ? j->ep->c2 + (size_t)i * j->ep->ld_c2 : NULL;
                if (nv == 2) tile_nv2(&t, mr);
                else tile_nv1(&t, mr);
            }
            if (j->ep->act == DL_ACT_SILU || (j->ep->res && j->ep->res_act == DL_ACT_SILU))
                silu_rows(mb, me, t.col, t.col + t.ncols, j->c, j->ldc, j->ep);
        }
    }
}

static void gemm_part(void *arg, int part, int nparts)
{
    const gemm_job *j = arg;
    const int np = (j->n + 15) / 16;
    if (j->split_rows) {
        /* row ranges on tile boundaries: 12 rows, or 7 where rows come in
         * sevens and every part is one kernel_7x48 block (196 rows of a
         * 14x14 map on 2 threads: 98 + 98 rows, not 96 + 100) */
        const int unit = j->m % 7 == 0 && j->m % MR_MAX != 0 && j->n % 48 == 0 &&
                                 j->m <= nparts * SEVEN_MAX_ROWS && j->m / 7 >= nparts
                             ? 7
                             : MR_MAX;
        int tiles = (j->m + unit - 1) / unit;
        int t0 = (int)((long)tiles * part / nparts), t1 = (int)((long)tiles * (part + 1) / nparts);
        int m0 = t0 * unit, m1 = t1 * unit < j->m ? t1 * unit : j->m;
        if (m0 < m1) gemm_block(j, m0, m1, 0, np);
    } else {
        /* panel-pair ranges; single panels when pairs do not divide evenly
         * and panels do (160 columns on 2 threads: 5 + 5 panels, not 4 + 6) */
        int p0, p1;
        if (((np + 1) / 2) % nparts != 0 && np % nparts == 0) {
            p0 = np / nparts * part;
            p1 = np / nparts * (part + 1);
        } else {
            int pairs = (np + 1) / 2;
            int q0 = (int)((long)pairs * part / nparts), q1 = (int)((long)pairs * (part + 1) / nparts);
            p0 = q0 * 2;
            p1 = q1 * 2 < np ? q1 * 2 : np;
        }
        if (p0 < p1) gemm_block(j, 0, j->m, p0, p1);
    }
}

void dl_gemm_packed(int m, int n, int k, const float *a, size_t lda, const float *packed, float *c,
                    size_t ldc, const dl_epilogue *ep)
{
    if (m <= 0 || n <= 0) return;
    gemm_job j = {m, n, k, a, lda, packed, c, ldc, ep, true};
    double flops = 2.0 * m * n * (double)k;
    /* below ~0.2 MFLOP a second thread costs more than it saves */
    int parts = flops < 2e5 ? 1 : dl_parallel_parts((size_t)(flops / 1e5), 1);
    if (parts > 1) {
        int np = (n + 15) / 16;
        /* few rows: split columns (each thread streams half the weights) */
        j.split_rows = m >= 4 * MR_MAX * parts || (np + 1) / 2 < parts;
        dl_parallel(parts, gemm_part, &j);
    } else {
        gemm_block(&j, 0, m, 0, (n + 15) / 16);
    }
}

/* ---------------------------------------------------------------- C += A^T B */

/* A register tile of C: MR rows (A's columns: consecutive floats of each A
 * row, broadcast) x NV 16-wide vectors (B's columns, masked at the edge),
 * over A/B rows [k0, k1), from and back to C. */
/* The full-height tile (12 rows) in hand-written asm, for the reason given
 * at sums_12x32: GCC keeps this loop's accumulators on the stack. acc
 * [12][32] (64-byte aligned) holds C's tile on entry and on return; B's two
 * 16-column vectors are loaded under the masks m[0], m[1] (NV == 1: m[0]
 * only). Each sum is the chain acc += a * b over the rows in order. */
#define DL_ATB_ROW1(i, d) "vbroadcastss " #d "(%[a]), %%zmm26\n\t" "vfmadd231ps %%zmm24, %%zmm26, %%zmm" #i "\n\t"
#define DL_ATB_ROW2(i, j, d)                                                                       \
    "vbroadcastss " #d "(%[a]), %%zmm26\n\t"                                                      \
    "vfmadd231ps %%zmm24, %%zmm26, %%zmm" #i "\n\t"                                                \
    "vfmadd231ps %%zmm25, %%zmm26, %%zmm" #j "\n\t"

/* Rows fetched ahead: the A and B rows come from L2 (or memory) at a
 * stride the hardware prefetchers follow only partly; a prefetch past the
 * last row is harmless (prefetches do not fault). */
#define ATB_AHEAD 12L

AVX512 static void atb_12x32(const float *a, long lda_bytes, const float *b, long ldb_bytes, long k,
                             const __mmask16 m[2], float *acc)
{
    __asm__ volatile(
        DL_ZMM_12x32(DL_ZMM_LOAD)
        "kmovw 0(%[m]), %%k1\n\t"
        "kmovw 2(%[m]), %%k2\n\t"
        "1:\n\t"
        "prefetcht0 (%[a],%[pa])\n\t"
        "prefetcht0 (%[b],%[pb])\n\t"
        "prefetcht0 64(%[b],%[pb])\n\t"
        "vmovups (%[b]), %%zmm24%{%%k1%}%{z%}\n\t"
        "vmovups 64(%[b]), %%zmm25%{%%k2%}%{z%}\n\t"
        DL_ATB_ROW2(0, 1, 0) DL_ATB_ROW2(2, 3, 4) DL_ATB_ROW2(4, 5, 8) DL_ATB_ROW2(6, 7, 12)
        DL_ATB_ROW2(8, 9, 16) DL_ATB_ROW2(10, 11, 20) DL_ATB_ROW2(12, 13, 24) DL_ATB_ROW2(14, 15, 28)
        DL_ATB_ROW2(16, 17, 32) DL_ATB_ROW2(18, 19, 36) DL_ATB_ROW2(20, 21, 40) DL_ATB_ROW2(22, 23, 44)
        "add %[lda], %[a]\n\t"
        "add %[ldb], %[b]\n\t"
        "dec %[k]\n\t"
        "jnz 1b\n\t"
        DL_ZMM_12x32(DL_ZMM_STORE)
        : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k)
        : [lda] "r"(lda_bytes), [ldb] "r"(ldb_bytes), [m] "r"(m), [out] "r"(acc), [pa] "r"(ATB_AHEAD * lda_bytes),
          [pb] "r"(ATB_AHEAD * ldb_bytes)
        : "cc", "memory", "k1", "k2", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
          "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",
          "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26");
}

/* NV == 1: accumulators 0-11, one B vector. */
AVX512 static void atb_12x16(const float *a, long lda_bytes, const float *b, long ldb_bytes, long k,
                             const __mmask16 m[2], float *acc)
{
    __asm__ volatile(
        DL_ZMM_12x16(DL_ZMM_LOAD)
        "kmovw 0(%[m]), %%k1\n\t"
        "1:\n\t"
        "prefetcht0 (%[a],%[pa])\n\t"
        "prefetcht0 (%[b],%[pb])\n\t"
        "vmovups (%[b]), %%zmm24%{%%k1%}%{z%}\n\t"
        DL_ATB_ROW1(0, 0) DL_ATB_ROW1(1, 4) DL_ATB_ROW1(2, 8) DL_ATB_ROW1(3, 12) DL_ATB_ROW1(4, 16)
        DL_ATB_ROW1(5, 20) DL_ATB_ROW1(6, 24) DL_ATB_ROW1(7, 28) DL_ATB_ROW1(8, 32) DL_ATB_ROW1(9, 36)
        DL_ATB_ROW1(10, 40) DL_ATB_ROW1(11, 44)
        "add %[lda], %[a]\n\t"
        "add %[ldb], %[b]\n\t"
        "dec %[k]\n\t"
        "jnz 1b\n\t"
        DL_ZMM_12x16(DL_ZMM_STORE)
        : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k)
        : [lda] "r"(lda_bytes), [ldb] "r"(ldb_bytes), [m] "r"(m), [out] "r"(acc), [pa] "r"(ATB_AHEAD * lda_bytes),
          [pb] "r"(ATB_AHEAD * ldb_bytes)
        : "cc", "memory", "k1", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm24", "xmm26");
}
#undef DL_ATB_ROW1
#undef DL_ATB_ROW2
#undef DL_ZMM_12x32
#undef DL_ZMM_12x16
#undef DL_ZMM_STORE
#undef DL_ZMM_LOAD

/* A register tile of C: MR rows (A's columns: consecutive floats of each A
 * row, broadcast) x NV 16-wide vectors (B's columns, masked at the edge),
 * over A/B rows [k0, k1), from and back to C. */
AVX512 INLINE void atb_tile(const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                            int k0, int k1, const int MR, const int NV, __mmask16 m0, __mmask16 m1)
{
    if (MR == MR_MAX && k1 > k0) {
        __attribute__((aligned(64))) float acc[MR_MAX][32];
        const __mmask16 m[2] = {m0, m1};
        for (int i = 0; i < MR; i++) {
            _mm512_store_ps(&acc[i][0], _mm512_maskz_loadu_ps(m0, c + (size_t)i * ldc));
            if (NV > 1) _mm512_store_ps(&acc[i][16], _mm512_maskz_loadu_ps(m1, c + (size_t)i * ldc + 16));
        }
        const float *ap = a + (size_t)k0 * lda, *bp = b + (size_t)k0 * ldb;
        if (NV > 1) atb_12x32(ap, (long)(lda * 4), bp, (long)(ldb * 4), k1 - k0, m, &acc[0][0]);
        else atb_12x16(ap, (long)(lda * 4), bp, (long)(ldb * 4), k1 - k0, m, &acc[0][0]);
        for (int i = 0; i < MR; i++) {
            store16(c + (size_t)i * ldc, m0, _mm512_load_ps(&acc[i][0]));
            if (NV > 1) store16(c + (size_t)i * ldc + 16, m1, _mm512_load_ps(&acc[i][16]));
        }
        return;
    }
    __m512 acc[MR_MAX][2];
    for (int i = 0; i < MR; i++) {
        acc[i][0] = _mm512_maskz_loadu_ps(m0, c + (size_t)i * ldc);
        if (NV > 1) acc[i][1] = _mm512_maskz_loadu_ps(m1, c + (size_t)i * ldc + 16);
    }
    const float *ap = a + (size_t)k0 * lda, *bp = b + (size_t)k0 * ldb;
    for (int kk = k0; kk < k1; kk++, ap += lda, bp += ldb) {
        __m512 x0 = _mm512_maskz_loadu_ps(m0, bp);
        __m512 x1 = NV > 1 ? _mm512_maskz_loadu_ps(m1, bp + 16) : x0;
        for (int i = 0; i < MR; i++) {
            __m512 g = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(g, x0, acc[i][0]);
            if (NV > 1) acc[i][1] = _mm512_fmadd_ps(g, x1, acc[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        store16(c + (size_t)i * ldc, m0, acc[i][0]);
        if (NV > 1) store16(c + (size_t)i * ldc + 16, m1, acc[i][1]);
    }
}

#define ATB_CASES(NV)                                                                              \
    switch (mr) {                                                                                  \
    case 1: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 1, NV, m0, m1); break;                        \
    case 2: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 2, NV, m0, m1); break;                        \
    case 3: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 3, NV, m0, m1); break;                        \
    case 4: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 4, NV, m0, m1); break;                        \
    case 5: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 5, NV, m0, m1); break;                        \
    case 6: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 6, NV, m0, m1); break;                        \
    case 7: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 7, NV, m0, m1); break;                        \
    case 8: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 8, NV, m0, m1); break;                        \
    case 9: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 9, NV, m0, m1); break;                        \
    case 10: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 10, NV, m0, m1); break;                      \
    case 11: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 11, NV, m0, m1); break;                      \
    default: atb_tile(a, lda, b, ldb, c, ldc, k0, k1, 12, NV, m0, m1); break;                      \
    }

AVX512 static void atb_tile_nv1(const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                                int k0, int k1, int mr, __mmask16 m0, __mmask16 m1)
{
    ATB_CASES(1)
}

AVX512 static void atb_tile_nv2(const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                                int k0, int k1, int mr, __mmask16 m0, __mmask16 m1)
{
    ATB_CASES(2)
}

typedef struct {
    int m, n, k;
    const float *a, *b;
    size_t lda, ldb, ldc;
    float *c;
    int kb;     /* A/B rows per block: both blocks stay in L2 while every tile reads them */
    int ntiles; /* tiles of C: row tiles of MR_MAX x column tiles of 32 */
} atb_job;

static void atb_part(void *arg, int part, int nparts)
{
    const atb_job *j = arg;
    const int ct = (j->n + 31) / 32;
    const int t0 = (int)((long)j->ntiles * part / nparts), t1 = (int)((long)j->ntiles * (part + 1) / nparts);
    for (int k0 = 0; k0 < j->k; k0 += j->kb) {
        int k1 = k0 + j->kb < j->k ? k0 + j->kb : j->k;
        for (int t = t0; t < t1; t++) {
            int r = (t / ct) * MR_MAX, col = (t % ct) * 32;
            int mr = j->m - r < MR_MAX ? j->m - r : MR_MAX, left = j->n - col;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1u) : 0;
            float *c = j->c + (size_t)r * j->ldc + col;
            if (left > 16) atb_tile_nv2(j->a + r, j->lda, j->b + col, j->ldb, c, j->ldc, k0, k1, mr, m0, m1);
            else atb_tile_nv1(j->a + r, j->lda, j->b + col, j->ldb, c, j->ldc, k0, k1, mr, m0, m1);
        }
    }
}

int dl_gemm_at_b_acc(int m, int n, int k, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc)
{
    if (dl_cpu_level() < DL_ISA_AVX512) return -1;
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    size_t row_bytes = ((size_t)m + (size_t)n) * sizeof(float);
    size_t kb = dl_cpu_l2_bytes() / 2 / row_bytes;
    atb_job j = {m, n, k, a, b, lda, ldb, ldc, c, kb < 16 ? 16 : kb > 4096 ? 4096 : (int)kb,
                 ((m + MR_MAX - 1) / MR_MAX) * ((n + 31) / 32)};
    double flops = 2.0 * m * n * (double)k;
    int parts = flops < 2e5 ? 1 : dl_parallel_parts((size_t)j.ntiles, 1);
    if (parts > 1) dl_parallel(parts, atb_part, &j);
    else atb_part(&j, 0, 1);
    return 0;
}

#else /* not x86-64 GCC/clang: never called (dl_cpu_level() is portable) */

void dl_gemm_packed(int m, int n, int k, const float *a, size_t lda, const float *packed, float *c,
                    size_t ldc, const dl_epilogue *ep)
{
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)packed; (void)c; (void)ldc; (void)ep;
}

void dl_gemm_tile_seg(const float *a, size_t lda, const long *seg, const float *packed, int k, int pair, float *c,
                      size_t ldc, const dl_epilogue *ep)
{
    (void)a; (void)lda; (void)seg; (void)packed; (void)k; (void)pair; (void)c; (void)ldc; (void)ep;
}

int dl_gemm_at_b_acc(int m, int n, int k, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc)
{
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)b; (void)ldb; (void)c; (void)ldc;
    return -1;
}

#endif
