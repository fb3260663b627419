/* DermLens engine: tensor kernels (NHWC float32), forward and backward.
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Every kernel takes explicit shapes and caller-owned buffers; none allocates.
 * Scratch sizes are queried with the *_scratch_floats functions.
 * Backward kernels ACCUMULATE (+=) into grad_in / grad_w / grad_b, so a value
 * consumed by several nodes can sum its gradients; callers zero them first.
 * Any grad pointer may be NULL when that gradient is not wanted.
 */
#ifndef DL_OPS_H
#define DL_OPS_H

#include <stddef.h>
#include <stdbool.h>

/* Plain loops compiled for AVX-512, AVX2 and baseline, picked at run time
 * (GCC target_clones; not under ASan or clang). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define DL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DL_CLONES
#endif

/* sigmoid and hsigmoid (relu6(x + 3) / 6) gate squeeze-excitation blocks;
 * the fused GEMM/depthwise kernels do not know them, so conv/dense apply
 * them in a separate pass (see dl_act_is_post). */
typedef enum {
    DL_ACT_NONE = 0, DL_ACT_RELU, DL_ACT_RELU6, DL_ACT_HSWISH, DL_ACT_SILU, DL_ACT_SIGMOID, DL_ACT_HSIGMOID
} dl_act;
#define DL_ACT_LAST DL_ACT_HSIGMOID

const char *dl_act_name(dl_act a);
int dl_act_from_name(const char *name); /* -1 if unknown */
/* True for activations the fused kernels cannot apply in their epilogue
 * (sigmoid, hsigmoid): they run as a separate pass over the output. */
int dl_act_is_post(dl_act a);

/* Apply activation in place. */
void dl_act_forward(dl_act a, float *x, size_t n);
/* grad *= act'(.) in place. y is the activation OUTPUT (enough for relu/relu6,
 * sigmoid and hsigmoid);
 * pre is the activation INPUT (needed for hswish/silu; may be NULL for
 * relu/relu6/none). */
void dl_act_backward(dl_act a, const float *y, const float *pre, float *grad, size_t n);

/* TF "SAME": pad_total = max((ceil(in/s)-1)*s + k - in, 0); before = total/2. */
void dl_same_padding(int in, int k, int s, int *out, int *pad_before, int *pad_after);

typedef struct {
    int n;              /* batch */
    int ih, iw, ic;     /* input */
    int oh, ow, oc;     /* output */
    int kh, kw, sh, sw; /* kernel, stride */
    int pt, pl;         /* top / left padding (bottom/right implied by oh/ow) */
    int groups;         /* 1 = dense conv, ic = oc = groups: depthwise */
    dl_act act;
} dl_conv_shape;

/* Weights: [oc][kh][kw][ic/groups] (OHWI, as TFLite CONV_2D), bias [oc] or NULL.
 * 1x1 stride-1 unpadded groups=1 runs as one GEMM (AVX-512 packed kernel, or
 * OpenBLAS without AVX-512); other groups=1 convs use im2col + GEMM (3x3
 * stride 1 with packed weights: Winograd, see dl_conv2d_packed_winograd);
 * depthwise has a direct vectorised kernel; other groups loop per group. Bias
 * and activation are always fused. Results do not depend on the thread count. */
size_t dl_conv2d_scratch_floats(const dl_conv_shape *s);
void dl_conv2d_forward(const dl_conv_shape *s, const float *in, const float *w, const float *bias,
                       float *out, float *scratch);
/* Weights pre-packed for this CPU's forward kernels (done once at load).
 * 0 floats: no packed form here (pass packed = NULL). The packed copy must
 * be rebuilt whenever w changes. */
size_t dl_conv2d_packed_floats(const dl_conv_shape *s);
void dl_conv2d_pack(const dl_conv_shape *s, const float *w, float *packed);
/* Nonzero when this CPU packs s for Winograd (3x3 stride 1, 16+ channels,
 * 5x5+ outputs, AVX-512): forwards WITH those packed weights round
 * differently from forwards with packed = NULL (im2col; ~1e-6 relative), so
 * a caller that wants im2col's values (training) passes NULL. */
int dl_conv2d_packed_winograd(const dl_conv_shape *s);
/* dl_conv2d_forward with optional packed weights (NULL: w is used) and an
 * optional fused residual add: when res is non-NULL, also
 * out2 = res_act(out + res) (res and out2 shaped like out). */
void dl_conv2d_forward_ex(const dl_conv_shape *s, const float *in, const float *w, const float *packed,
                          const float *bias, float *out, float *scratch, const float *res, dl_act res_act,
                          float *out2);
/* A 1x1 conv (pw) feeding a depthwise conv (dw), run in bands of rows so
 * that dw reads pw's output while it is still in cache. Both outputs are
 * written in full, bit-identical to two dl_conv2d_forward_ex calls. Needs
 * both packed weights; returns 0 when done, -1 (nothing written) when this
 * CPU or these shapes have no banded path. */
int dl_conv_pw_dw_forward(const dl_conv_shape *pw, const float *in, const float *pw_packed, const float *pw_bias,
                          float *pw_out, const dl_conv_shape *dw, const float *dw_packed, const float *dw_bias,
                          float *dw_out);
/* grad_out is dL/d(output AFTER activation); it is modified in place into
 * dL/d(pre-activation). out is the forward output, pre the pre-activation
 * (only needed for hswish/silu, else NULL). */
size_t dl_conv2d_backward_scratch_floats(const dl_conv_shape *s);
void dl_conv2d_backward(const dl_conv_shape *s, const float *in, const float *w, const float *out,
                        const float *pre, float *grad_out, float *grad_in, float *grad_w,
                        float *grad_b, float *scratch);
/* The same, but grad_in is overwritten instead of added to when assign_in
 * (the executor's first write of a gradient buffer: then it need not be
 * zeroed first; the 1x1 and 3x3 stride-1 depthwise paths on AVX-512 store
 * directly, the others zero grad_in and add). */
void dl_conv2d_backward_ex(const dl_conv_shape *s, const float *in, const float *w, const float *out,
                           const float *pre, float *grad_out, float *grad_in, float *grad_w, float *grad_b,
                           float *scratch, bool assign_in);

/* Dense: in [n][k] (any NHWC flattened), w [m][k] (row = output unit), b [m]. */
void dl_dense_forward(int n, int k, int m, const float *in, const float *w, const float *b, dl_act act,
                      float *out);
size_t dl_dense_packed_floats(int k, int m);
void dl_dense_pack(int k, int m, const float *w, float *packed);
/* packed: from dl_dense_pack, or NULL to use w. */
void dl_dense_forward_ex(int n, int k, int m, const float *in, const float *w, const float *packed,
                         const float *b, dl_act act, float *out);
void dl_dense_backward(int n, int k, int m, const float *in, const float *w, const float *out,
                       const float *pre, dl_act act, float *grad_out, float *grad_in, float *grad_w,
                       float *grad_b);

/* out = a + b, then activation. */
void dl_add_forward(size_t count, const float *a, const float *b, dl_act act, float *out);
void dl_add_backward(size_t count, const float *out, const float *pre, dl_act act, float *grad_out,
                     float *grad_a, float *grad_b);
/* The same with stores instead of adds where asked (the executor's first
 * write of a buffer; grad_a is done first, so x + x stores then adds), on
 * the engine's threads when large. */
void dl_add_backward_ex(size_t count, const float *out, const float *pre, dl_act act, float *grad_out,
                        float *grad_a, float *grad_b, bool assign_a, bool assign_b);

/* out = a * b, then activation. a is [n][hw][c]; b is [n][hw][c] (b_hw = hw)
 * or one value per channel, [n][1][c] (b_hw = 1: the squeeze-excitation
 * gate broadcast over the positions). */
void dl_mul_forward(int n, int hw, int c, int b_hw, const float *a, const float *b, dl_act act, float *out);
/* grad_out (dL/d out) is turned into dL/d(pre-activation) in place; a and b
 * are the forward inputs. Accumulates into grad_a / grad_b (either NULL). */
void dl_mul_backward(int n, int hw, int c, int b_hw, const float *a, const float *b, const float *out,
                     const float *pre, dl_act act, float *grad_out, float *grad_a, float *grad_b);

/* Channel concatenation: a [rows][ca] and b [rows][cb] -> out [rows][ca+cb]
 * (rows = batch x H x W; NCHW's axis 1 is NHWC's last). */
void dl_concat_forward(size_t rows, int ca, int cb, const float *a, const float *b, float *out);
/* Splits grad_out back, accumulating into grad_a / grad_b (either NULL). */
void dl_concat_backward(size_t rows, int ca, int cb, const float *grad_out, float *grad_a, float *grad_b);

typedef struct {
    int n, ih, iw, c, oh, ow, kh, kw, sh, sw, pt, pl;
} dl_pool_shape;

/* Average pool counts only in-bounds elements (TF semantics for SAME). */
void dl_avgpool_forward(const dl_pool_shape *s, const float *in, float *out);
void dl_avgpool_backward(const dl_pool_shape *s, const float *grad_out, float *grad_in);
void dl_maxpool_forward(const dl_pool_shape *s, const float *in, float *out);
void dl_maxpool_backward(const dl_pool_shape *s, const float *in, const float *out,
                         const float *grad_out, float *grad_in);

/* Global average pool: [n][hw][c] -> [n][c]. */
void dl_gap_forward(int n, int hw, int c, const float *in, float *out);
void dl_gap_backward(int n, int hw, int c, const float *grad_out, float *grad_in);

/* Zero padding [n][ih][iw][c] -> [n][ih+pt+pb][iw+pl+pr][c]. */
void dl_pad_forward(int n, int ih, int iw, int c, int pt, int pb, int pl, int pr, const float *in,
                    float *out);
void dl_pad_backward(int n, int ih, int iw, int c, int pt, int pb, int pl, int pr,
                     const float *grad_out, float *grad_in);

/* Row-wise softmax over the last dim (numerically stable). */
void dl_softmax_forward(int n, int c, const float *in, float *out);
void dl_softmax_backward(int n, int c, const float *out, const float *grad_out, float *grad_in);

/* Mean softmax cross-entropy with per-class weights (NULL = 1) and label
 * smoothing eps. Returns the loss; writes dL/dlogits (not accumulated) into
 * grad (may be NULL). labels[i] in [0,c). */
float dl_softmax_xent(int n, int c, const float *logits, const int *labels, const float *class_w,
                      float smoothing, float *grad);

#endif
