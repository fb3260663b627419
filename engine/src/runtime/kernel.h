/* DermLens engine: CPU-specific forward kernels and the engine's thread pool.
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Internal to ops.c / exec.c. Every kernel computes each output element with
 * the same instruction sequence whatever the thread count or tiling, so
 * results do not depend on how the work is split.
 */
#ifndef DL_KERNEL_H
#define DL_KERNEL_H

#include "runtime/ops.h"

#include <stdbool.h>
#include <stddef.h>

/* Instruction-set levels; dl_cpu_level() is the best one usable here. */
enum { DL_ISA_PORTABLE = 0, DL_ISA_AVX2 = 1, DL_ISA_AVX512 = 2 };
int dl_cpu_level(void);
/* Tests: cap the level (-1: back to automatic). */
void dl_cpu_level_force(int level);
/* Per-core L2 size in bytes (sysconf, else sysfs, else 1 MiB): blocking. */
size_t dl_cpu_l2_bytes(void);

/* ---------------------------------------------------------------- pool */

/* Run fn(arg, part, nparts) for part = 0..nparts-1 on the engine's threads
 * (part 0 on the caller) and wait for all. nparts is clamped to
 * dl_get_num_threads(); when the pool is busy (another model on another
 * thread) every part runs on the caller. */
typedef void (*dl_task_fn)(void *arg, int part, int nparts);
void dl_parallel(int nparts, dl_task_fn fn, void *arg);
/* Parts worth using for `work` units with `grain` units as a useful minimum. */
int dl_parallel_parts(size_t work, size_t grain);
/* Part `part` of nparts of the range [0, n) in elementwise passes: [*i0, *i1),
 * cut on multiples of `align` elements (16 floats: no cache line written by
 * two threads; only the last part has a tail), possibly empty. */
void dl_part_range(size_t n, size_t align, int part, int nparts, size_t *i0, size_t *i1);

/* ---------------------------------------------------------------- GEMM */

/* B^T packed for dl_gemm_packed: W [n][k] (row = output channel) becomes
 * ceil(n/16) panels of [k][16] floats, the last zero-padded. */
size_t dl_gemm_packed_floats(int n, int k);
void dl_gemm_pack(int n, int k, const float *w, float *packed);
/* The same panels from W^T: w is [k][n] (backward: a conv's [oc][ic]
 * weights give the input gradient's B). */
void dl_gemm_pack_t(int n, int k, const float *w, float *packed);

/* Fused epilogue: v = act(acc + bias); c = v; if res: c2 = res_act(v + res). */
typedef struct {
    const float *bias; /* [n] or NULL */
    dl_act act;
    const float *res;  /* [m][ld_res] or NULL */
    size_t ld_res;
    dl_act res_act;
    float *c2;         /* [m][ld_c2], needed when res */
    size_t ld_c2;
    int accumulate;    /* c += v instead of c = v (backward: gradients add up) */
} dl_epilogue;

/* C[m][n] (ld_c) = epilogue(A[m][k] (ld_a) x W^T) with W packed. AVX-512
 * only: call when dl_cpu_level() >= DL_ISA_AVX512. Threaded. */
void dl_gemm_packed(int m, int n, int k, const float *a, size_t lda, const float *packed, float *c,
                    size_t ldc, const dl_epilogue *ep);

/* One tile of 12 rows x 32 columns (panel pair `pair` of W packed for k)
 * whose k range is a list of segments: seg holds {a_off, b_off, len}
 * triples (bytes from a, bytes from the pair's first panel, k steps), ended
 * by len < 0; rows are a + i * lda. A direct convolution reads its input
 * pixels in place this way, one segment per kernel row. c, ep->res and
 * ep->c2 point at the tile's row 0 (column 0); ep->act must not be SiLU.
 * Each sum is the FMA chain over the segments in order. AVX-512 only. */
void dl_gemm_tile_seg(const float *a, size_t lda, const long *seg, const float *packed, int k, int pair, float *c,
                      size_t ldc, const dl_epilogue *ep);

/* C[m][n] (ldc) += A^T B, A [k][m] (lda), B [k][n] (ldb), both read in
 * place (nothing packed): a 1x1 convolution's weight gradient, with k the
 * pixels of the batch, A the output gradient and B the input. Each C
 * element is one FMA chain over k in order, from C's value, whatever the
 * blocking or thread count. Threaded. Returns 0, or -1 (nothing done) when
 * the CPU lacks AVX-512: the caller then uses BLAS. */
int dl_gemm_at_b_acc(int m, int n, int k, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc);

/* ---------------------------------------------------------------- conv rows */

/* Output rows [oy0, oy1) of ONE image of a convolution (s->n is ignored)
 * with this CPU's packed weights: the banded executor (exec_band.c) runs a
 * chain of layers a band of rows at a time with it. Each buffer holds a
 * window of its tensor's rows: in's first row is input row in_lo, and so on
 * (0: the whole image). The rows read must be in the windows. Same values as
 * dl_conv2d_forward_ex. res (optional): out2 = res_act(out + res) on those
 * rows. scratch: dl_conv2d_rows_scratch_floats(s, oy1 - oy0) floats. Only for
 * convs where dl_conv2d_rows_ok (depthwise, or groups == 1 on AVX-512;
 * activations the epilogues apply). */
typedef struct {
    const float *in;
    int in_lo;
    float *out;
    int out_lo;
    const float *res; /* or NULL */
    int res_lo;
    float *out2;
    int out2_lo;
} dl_rows_io;
int dl_conv2d_rows_ok(const dl_conv_shape *s);
size_t dl_conv2d_rows_scratch_floats(const dl_conv_shape *s, int rows);
void dl_conv2d_rows(const dl_conv_shape *s, const dl_rows_io *io, const float *packed, const float *bias, int oy0,
                    int oy1, dl_act res_act, float *scratch);

/* ---------------------------------------------------------------- Winograd */

/* Winograd F(2x2,3x3), or F(4x4,3x3) on maps of 28x28 and more, for 3x3
 * stride-1 groups == 1 convs (kernel_winograd.c). dl_winograd_ok: this shape
 * on this CPU runs it when its weights are packed (dl_conv2d_pack then
 * stores the 16 or 36 transformed matrices; the shape's batch and
 * activation do not matter). Packed: dl_winograd_packed_floats.
 * Forward: NHWC in/out of the whole batch; ep gives the bias, activation
 * (any, s->act is ignored) and optional residual (res and c2 shaped like
 * out, ld_* ignored; accumulate must be 0). scratch:
 * dl_winograd_scratch_floats(s). Threaded; AVX-512 only. */
int dl_winograd_ok(const dl_conv_shape *s);
size_t dl_winograd_packed_floats(const dl_conv_shape *s);
void dl_winograd_pack(const dl_conv_shape *s, const float *w, float *packed);
size_t dl_winograd_scratch_floats(const dl_conv_shape *s);
void dl_winograd_forward(const dl_conv_shape *s, const float *in, const float *packed, const dl_epilogue *ep,
                         float *out, float *scratch);

/* ---------------------------------------------------------------- depthwise */

/* One image of a depthwise conv; wt is [kh][kw][c] (dl_conv2d_pack). Bias
 * and every activation are applied here. Threaded over output rows. */
void dl_depthwise_image(const dl_conv_shape *s, const float *in, const float *wt, const float *bias,
                        float *out);
/* Output rows [oy0, oy1) only (out still points at the image's row 0). */
void dl_depthwise_rows(const dl_conv_shape *s, const float *in, const float *wt, const float *bias,
                       float *out, int oy0, int oy1);

/* Depthwise backward (any kernel, stride and padding), AVX-512:
 * ACCUMULATES the input gradient (NHWC, like in) and the weight gradient
 * (grad_w [c][kh][kw], the model's layout) from g = dL/d(pre-activation);
 * wt is [kh][kw][c]; acc is kh*kw*c floats of scratch. Either gradient may
 * be NULL. assign_in: grad_in is overwritten instead (its old values are
 * never read: 3x3 stride 1 stores each input pixel once, other shapes zero
 * it first). Bands of rows sized to L2, threaded over blocks of 16
 * channels, so the result does not depend on the thread count. Returns -1
 * (nothing written) when this CPU has no such path. */
int dl_depthwise_backward(const dl_conv_shape *s, const float *in, const float *wt, const float *g,
                          float *grad_in, float *grad_w, float *acc, bool assign_in);

#endif
