/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Winograd forward for 3x3 stride-1 groups == 1 convolutions (inference;
 * see dl_winograd_ok for which): F(2x2,3x3), or F(4x4,3x3) on large maps.
 *
 * Each MxM block of output pixels (a "tile", M = 2 or 4) reads an AxA input
 * window (A = M + 2); with V = B^T d B (input), U = G g G^T (weights, once
 * at pack time) and Y = A^T M A (output), M = sum over input channels of
 * U .* V: A*A products per input channel and tile instead of 9*M*M, i.e.
 * 2.25x (F(2x2)) or 4x (F(4x4)) fewer multiply-adds. The channel sums are
 * A*A ordinary GEMMs, M_k [tiles][oc] = V_k [tiles][ic] x U_k [ic][oc], run
 * on the packed AVX-512 GEMM (kernel_gemm.c); the output transform applies
 * the GEMM's epilogue (bias, activation, residual add). F(2x2)'s
 * transforms are adds and halves; F(4x4)'s small integers and, on the
 * weights, 1/6 and 1/24: both stay well conditioned (tests/test_ops.c
 * bounds them against the reference).
 *
 * Tiles go in blocks whose V and M stay in L2 while the GEMMs run, one
 * block per thread at a time. Each output value is computed by the same
 * instructions whatever the block or thread split (the GEMM sums each row
 * alone), so results do not depend on the thread count.
 *
 * AVX-512 only, like the GEMM: without it these convs stay on im2col +
 * OpenBLAS (dl_winograd_ok is false, nothing is packed this way). */
#include "runtime/runtime.h"
#include "runtime/kernel.h"

#include <string.h>

/* Blocks in flight at once (each has its scratch slot): the most threads
 * this kernel uses. A fixed number, so the scratch size does not depend on
 * the thread count, which may change after the scratch is allocated. */
#define WINO_MAX_SLOTS 16
/* Rows of the GEMM's register tile: blocks are multiples of it. */
#define WINO_ROWS 12

/* Where it wins, measured one conv at a time against im2col + the same
 * GEMM (Xeon, Sapphire Rapids class, 2 MiB L2, 1 thread, batch 1, 3x3
 * pad 1): 1.5-2.3x from 16 channels in and out on maps of 14x14 and more (2x at resnet50's
 * 56x56x64), 1.4x at 7x7x256 and 5x5x512, 1.2x at 7x7x512; but 1.08x at
 * 4x4x512 and 0.6x below (a GEMM of 4 rows or fewer reading 16/9 as many
 * weight bytes as im2col's), 1.16x at 8 channels and 0.67x from 3 (the
 * transforms cost O(ic + oc) per tile, the GEMMs O(ic x oc)). Hence: 16+
 * channels each way and 9+ tiles (5x5 outputs) per image. */
#define WINO_MIN_C 16
#define WINO_MIN_TILES 9

int dl_winograd_ok(const dl_conv_shape *s)
{
#if defined(__x86_64__) && defined(__GNUC__)
    /* the GEMM is AVX-512 only; elsewhere im2col + OpenBLAS serves these.
     * Not the batch: the weights are packed once for any batch. */
    return s->groups == 1 && s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->ic >= WINO_MIN_C &&
           s->oc >= WINO_MIN_C && (long)((s->oh + 1) / 2) * ((s->ow + 1) / 2) >= WINO_MIN_TILES &&
           dl_cpu_level() >= DL_ISA_AVX512;
#else
    (void)s;
    return 0;
#endif
}

/* Output tile side: 4 (F(4x4,3x3): 6x6 windows, 36 matrices, 4x fewer
 * multiply-adds than im2col) on maps of 7x7 such tiles (28x28) or more,
 * else 2. Measured against F(2x2,3x3) (same CPU, 1 thread): 1.3-1.4x
 * faster at 28x28 and above, 0.9x at 14x14 and 0.7x at 7x7 (GEMMs of 16
 * or 4 rows streaming 36 weight matrices). Its transforms' coefficients
 * (up to 5 in, 8 out, 1/6 and 1/24 on the weights) round ~20x more than
 * F(2x2,3x3)'s: still ~1e-6 of an output's |w x| sum (tests/test_ops.c).
 * In a whole resnet50 forward (batch 1) that is ~1 ms of ~60-80: within
 * the noise of a shared machine; return 2 here to drop it. */
static int tile_m(const dl_conv_shape *s)
{
    return (long)((s->oh + 3) / 4) * ((s->ow + 3) / 4) >= 49 ? 4 : 2;
}

size_t dl_winograd_packed_floats(const dl_conv_shape *s)
{
    int a = tile_m(s) + 2;
    return (size_t)a * a * dl_gemm_packed_floats(s->oc, s->ic);
}

/* G applied to 3 taps: 4 values (F(2x2,3x3)) or 6 (F(4x4,3x3)). */
static void g_1d(int m, float g0, float g1, float g2, float *u)
{
    if (m == 2) {
        u[0] = g0;
        u[1] = 0.5f * (g0 + g1 + g2);
        u[2] = 0.5f * (g0 - g1 + g2);
        u[3] = g2;
    } else {
        u[0] = g0 / 4;
        u[1] = -(g0 + g1 + g2) / 6;
        u[2] = -(g0 - g1 + g2) / 6;
        u[3] = g0 / 24 + g1 / 12 + g2 / 6;
        u[4] = g0 / 24 - g1 / 12 + g2 / 6;
        u[5] = g2;
    }
}

/* U = G g G^T for one (output, input) channel pair; g is [3][3], u [a][a]. */
static void weight_transform(int m, const float g[9], float *u)
{
    const int a = m + 2;
    float t[6][3], r[6] = {0}; /* G g: rows */
    for (int x = 0; x < 3; x++) {
        g_1d(m, g[x], g[3 + x], g[6 + x], r);
        for (int y = 0; y < a; y++) t[y][x] = r[y];
    }
    for (int y = 0; y < a; y++) g_1d(m, t[y][0], t[y][1], t[y][2], u + y * a);
}

/* a*a matrices U_k, each packed like dl_gemm_pack(oc, ic, U_k as [oc][ic]):
 * panels of 16 output channels, [ic][16] each, the last zero-padded. */
void dl_winograd_pack(const dl_conv_shape *s, const float *w, float *packed)
{
    const int IC = s->ic, OC = s->oc, m = tile_m(s), a2 = (m + 2) * (m + 2);
    const size_t mat = dl_gemm_packed_floats(OC, IC);
    memset(packed, 0, sizeof(float) * a2 * mat);
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < IC; i++) {
            float g[9], u[36];
            for (int k = 0; k < 9; k++) g[k] = w[((size_t)o * 9 + k) * IC + i]; /* OHWI */
            weight_transform(m, g, u);
            size_t at = ((size_t)(o / 16) * IC + i) * 16 + o % 16;
            for (int k = 0; k < a2; k++) packed[k * mat + at] = u[k];
        }
}

/* The tile split: tiles per block and blocks, from the shape and L2 only. */
typedef struct {
    int m, nmat;    /* output tile side, matrices ((m + 2)^2) */
    int th, tw;     /* tiles per column / row of an image */
    long tiles;     /* in the batch */
    int block;      /* tiles per block */
    long nblocks;
    int slots;
    size_t slot_floats; /* V and M of one block */
} wino_plan;

static wino_plan plan(const dl_conv_shape *s)
{
    wino_plan p;
    p.m = tile_m(s);
    p.nmat = (p.m + 2) * (p.m + 2);
    p.th = (s->oh + p.m - 1) / p.m;
    p.tw = (s->ow + p.m - 1) / p.m;
    p.tiles = (long)s->n * p.th * p.tw;
    /* V and M of a block in half of L2: the GEMMs re-read them from there
     * while the weights stream past; the other half holds the weights */
    size_t per_tile = (size_t)p.nmat * (s->ic + s->oc) * sizeof(float);
    size_t fit = dl_cpu_l2_bytes() / 2 / per_tile;
    int cap = fit < WINO_ROWS ? WINO_ROWS : fit > 4096 ? 4096 : (int)(fit - fit % WINO_ROWS);
    /* equal blocks (a short last block would stream all weights for few rows) */
    p.nblocks = (p.tiles + cap - 1) / cap;
    long b = (p.tiles + p.nblocks - 1) / p.nblocks;
    b += (WINO_ROWS - b % WINO_ROWS) % WINO_ROWS;
    p.block = (int)(b < p.tiles ? b : p.tiles);
    p.nblocks = (p.tiles + p.block - 1) / p.block;
    p.slots = p.nblocks < WINO_MAX_SLOTS ? (int)p.nblocks : WINO_MAX_SLOTS;
    p.slot_floats = (size_t)p.nmat * p.block * (s->ic + s->oc);
    return p;
}

size_t dl_winograd_scratch_floats(const dl_conv_shape *s)
{
    wino_plan p = plan(s);
    return p.slot_floats * p.slots;
}

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>
#include "runtime/act_avx512.h"

#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE static inline __attribute__((always_inline))

typedef struct {
    const dl_conv_shape *s;
    const float *in, *packed;
    float *out;
    const dl_epilogue *ep; /* bias, activation, residual: applied in the output transform */
    float *scratch;
    wino_plan p;
} wino_job;

/* B^T on 4 values (F(2x2,3x3)): rows [1 0 -1 0], [0 1 1 0], [0 -1 1 0],
 * [0 1 0 -1]; d[i * st] is the i-th value, v[i * vs] the i-th result. */
AVX512 INLINE void bt4(const __m512 *d, int st, __m512 *v, int vs)
{
    v[0] = _mm512_sub_ps(d[0], d[2 * st]);
    v[vs] = _mm512_add_ps(d[st], d[2 * st]);
    v[2 * vs] = _mm512_sub_ps(d[2 * st], d[st]);
    v[3 * vs] = _mm512_sub_ps(d[st], d[3 * st]);
}

/* B^T on 6 values (F(4x4,3x3)): [4 0 -5 0 1 0], [0 -4 -4 1 1 0],
 * [0 4 -4 -1 1 0], [0 -2 -1 2 1 0], [0 2 -1 -2 1 0], [0 4 0 -5 0 1]. */
AVX512 INLINE void bt6(const __m512 *d, int st, __m512 *v, int vs)
{
    const __m512 c4 = _mm512_set1_ps(4.f), c5 = _mm512_set1_ps(5.f), c2 = _mm512_set1_ps(2.f);
    __m512 d0 = d[0], d1 = d[st], d2 = d[2 * st], d3 = d[3 * st], d4 = d[4 * st], d5 = d[5 * st];
    v[0] = _mm512_fmadd_ps(c4, d0, _mm512_fnmadd_ps(c5, d2, d4));
    v[vs] = _mm512_fnmadd_ps(c4, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4));
    v[2 * vs] = _mm512_fmadd_ps(c4, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3));
    v[3 * vs] = _mm512_fmadd_ps(c2, _mm512_sub_ps(d3, d1), _mm512_sub_ps(d4, d2));
    v[4 * vs] = _mm512_fmadd_ps(c2, _mm512_sub_ps(d1, d3), _mm512_sub_ps(d4, d2));
    v[5 * vs] = _mm512_fmadd_ps(c4, d1, _mm512_fnmadd_ps(c5, d3, d5));
}

/* A^T on 4 values: [1 1 1 0], [0 1 -1 -1]. */
AVX512 INLINE void at4(const __m512 *m, int st, __m512 *y, int ys)
{
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], m[st]), m[2 * st]);
    y[ys] = _mm512_sub_ps(_mm512_sub_ps(m[st], m[2 * st]), m[3 * st]);
}

/* A^T on 6 values: [1 1 1 1 1 0], [0 1 -1 2 -2 0], [0 1 1 4 4 0],
 * [0 1 -1 8 -8 1]. */
AVX512 INLINE void at6(const __m512 *m, int st, __m512 *y, int ys)
{
    __m512 s12 = _mm512_add_ps(m[st], m[2 * st]), d12 = _mm512_sub_ps(m[st], m[2 * st]);
    __m512 s34 = _mm512_add_ps(m[3 * st], m[4 * st]), d34 = _mm512_sub_ps(m[3 * st], m[4 * st]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
    y[ys] = _mm512_fmadd_ps(_mm512_set1_ps(2.f), d34, d12);
    y[2 * ys] = _mm512_fmadd_ps(_mm512_set1_ps(4.f), s34, s12);
    y[3 * ys] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.f), d34, d12), m[5 * st]);
}

static inline __mmask16 tail_mask(int left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* Input transform of tiles [t0, t0 + nt) into V_k [nt][ic] (k < A*A, one
 * matrix every nt * ic floats): V = B^T d B on each AxA window (A = M + 2),
 * 16 channels at a time. Positions outside the image read as zeros (the
 * padding). M is a constant at each call site. */
AVX512 INLINE void input_tiles(const wino_job *j, long t0, int nt, float *v, const int M)
{
    const int A = M + 2;
    const dl_conv_shape *s = j->s;
    const int IC = s->ic, T = j->p.th * j->p.tw;
    const size_t mat = (size_t)nt * IC;
    for (int q = 0; q < nt; q++) {
        long t = t0 + q;
        int b = (int)(t / T), r = (int)(t % T);
        int y0 = (r / j->p.tw) * M - s->pt, x0 = (r % j->p.tw) * M - s->pl;
        const float *src[36];
        for (int y = 0; y < A; y++)
            for (int x = 0; x < A; x++) {
                int iy = y0 + y, ix = x0 + x;
                src[y * A + x] = iy >= 0 && iy < s->ih && ix >= 0 && ix < s->iw
                                     ? j->in + (((size_t)b * s->ih + iy) * s->iw + ix) * IC
                                     : NULL;
            }
        float *dst = v + (size_t)q * IC;
        for (int c = 0; c < IC; c += 16) {
            __mmask16 m = tail_mask(IC - c);
            __m512 d[36], tr[36], o[6];
            for (int k = 0; k < A * A; k++)
                d[k] = src[k] ? _mm512_maskz_loadu_ps(m, src[k] + c) : _mm512_setzero_ps();
            for (int x = 0; x < A; x++) { /* B^T d: along y */
                if (M == 2) bt4(d + x, A, tr + x, A);
                else bt6(d + x, A, tr + x, A);
            }
            for (int y = 0; y < A; y++) { /* (.) B: along x */
                if (M == 2) bt4(tr + y * A, 1, o, 1);
                else bt6(tr + y * A, 1, o, 1);
                for (int x = 0; x < A; x++) _mm512_mask_storeu_ps(dst + (y * A + x) * mat + c, m, o[x]);
            }
        }
    }
}

/* Output transform of tiles [t0, t0 + nt) from M_k [nt][oc]: Y = A^T M A,
 * then the GEMM's epilogue (v = act(y + bias); out = v; c2 = res_act(v +
 * res)) on each of the MxM pixels in bounds. */
AVX512 INLINE void output_tiles(const wino_job *j, long t0, int nt, const float *mm, const int M)
{
    const int A = M + 2;
    const dl_conv_shape *s = j->s;
    const dl_epilogue *ep = j->ep;
    const int OC = s->oc, T = j->p.th * j->p.tw;
    const size_t mat = (size_t)nt * OC;
    for (int q = 0; q < nt; q++) {
        long t = t0 + q;
        int b = (int)(t / T), r = (int)(t % T);
        int oy = (r / j->p.tw) * M, ox = (r % j->p.tw) * M;
        const float *src = mm + (size_t)q * OC;
        for (int c = 0; c < OC; c += 16) {
            __mmask16 m = tail_mask(OC - c);
            __m512 a[36], rows[24], y[16];
            for (int k = 0; k < A * A; k++) a[k] = _mm512_maskz_loadu_ps(m, src + k * mat + c);
            for (int x = 0; x < A; x++) { /* A^T M: M rows of A */
                if (M == 2) at4(a + x, A, rows + x, A);
                else at6(a + x, A, rows + x, A);
            }
            for (int i = 0; i < M; i++) { /* (.) A */
                if (M == 2) at4(rows + i * A, 1, y + i * M, 1);
                else at6(rows + i * A, 1, y + i * M, 1);
            }
            __m512 bias = ep->bias ? _mm512_maskz_loadu_ps(m, ep->bias + c) : _mm512_setzero_ps();
            for (int k = 0; k < M * M; k++) {
                int py = oy + k / M, px = ox + k % M;
                if (py >= s->oh || px >= s->ow) continue;
                size_t pix = (((size_t)b * s->oh + py) * s->ow + px) * OC;
                __m512 v = dl_act16(_mm512_add_ps(y[k], bias), ep->act);
                _mm512_mask_storeu_ps(j->out + pix + c, m, v);
                if (ep->res) {
                    __m512 rv = _mm512_maskz_loadu_ps(m, ep->res + pix + c);
                    _mm512_mask_storeu_ps(ep->c2 + pix + c, m, dl_act16(_mm512_add_ps(v, rv), ep->res_act));
                }
            }
        }
    }
}

AVX512 static void input_tiles2(const wino_job *j, long t0, int nt, float *v) { input_tiles(j, t0, nt, v, 2); }
AVX512 static void input_tiles4(const wino_job *j, long t0, int nt, float *v) { input_tiles(j, t0, nt, v, 4); }
AVX512 static void output_tiles2(const wino_job *j, long t0, int nt, const float *mm) { output_tiles(j, t0, nt, mm, 2); }
AVX512 static void output_tiles4(const wino_job *j, long t0, int nt, const float *mm) { output_tiles(j, t0, nt, mm, 4); }

/* One block: transform in, a*a GEMMs, transform out; buf is its slot. */
AVX512 static void run_block(const wino_job *j, long blk, float *buf)
{
    const dl_conv_shape *s = j->s;
    long t0 = blk * j->p.block;
    int nt = (int)(j->p.tiles - t0 < j->p.block ? j->p.tiles - t0 : j->p.block);
    float *v = buf, *mm = buf + (size_t)j->p.nmat * j->p.block * s->ic;
    if (j->p.m == 4) input_tiles4(j, t0, nt, v);
    else input_tiles2(j, t0, nt, v);
    const size_t wmat = dl_gemm_packed_floats(s->oc, s->ic);
    const dl_epilogue plain = {.act = DL_ACT_NONE};
    for (int k = 0; k < j->p.nmat; k++)
        dl_gemm_packed(nt, s->oc, s->ic, v + (size_t)k * nt * s->ic, (size_t)s->ic, j->packed + k * wmat,
                       mm + (size_t)k * nt * s->oc, (size_t)s->oc, &plain);
    if (j->p.m == 4) output_tiles4(j, t0, nt, mm);
    else output_tiles2(j, t0, nt, mm);
}

static void wino_part(void *arg, int part, int nparts)
{
    const wino_job *j = arg;
    float *buf = j->scratch + (size_t)part * j->p.slot_floats;
    for (long blk = part; blk < j->p.nblocks; blk += nparts) run_block(j, blk, buf);
}

void dl_winograd_forward(const dl_conv_shape *s, const float *in, const float *packed, const dl_epilogue *ep,
                         float *out, float *scratch)
{
    wino_job j = {s, in, packed, out, ep, scratch, plan(s)};
    /* one block: the GEMMs thread themselves (by rows or columns) */
    int parts = j.p.nblocks < 2 ? 1 : dl_parallel_parts((size_t)j.p.nblocks, 1);
    if (parts > j.p.slots) parts = j.p.slots;
    if (parts > 1) dl_parallel(parts, wino_part, &j);
    else wino_part(&j, 0, 1);
}

#else /* not x86-64 GCC/clang: never called (dl_winograd_ok is false) */

void dl_winograd_forward(const dl_conv_shape *s, const float *in, const float *packed, const dl_epilogue *ep,
                         float *out, float *scratch)
{
    (void)s; (void)in; (void)packed; (void)ep; (void)out; (void)scratch;
}

#endif
