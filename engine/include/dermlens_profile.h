/* DermLens engine: profiling API, for benchmarks (bench/) and profilers.
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Same conventions as dermlens.h. These run the model's network and its
 * kernels below the level of dl_classify_rgb8 (no preprocessing, no
 * calibration, member 0 of an ensemble), so that each can be timed alone.
 * Inputs are arbitrary floats: the numbers computed mean nothing.
 */
#ifndef DERMLENS_PROFILE_H
#define DERMLENS_PROFILE_H

#include "dermlens.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Floating-point operations (multiply-adds x 2) of one forward pass of the
 * model's network at batch 1. */
double dl_model_flops(const dl_model *m);

/* ------------------------------------------------------------ the forward pass */

/* An executor of the model's network for `batch` images: all activations in
 * one arena allocated here, the weights packed for this CPU. The model must
 * outlive it. */
typedef struct dl_forward_runner dl_forward_runner;
dl_forward_runner *dl_forward_runner_new(const dl_model *m, int batch, dl_error *err); /* free with _free */
/* The input the runs read: batch x H x W x 3 floats (preprocessed network
 * input, NHWC); *count gets its length. Borrowed, valid while r lives. */
float *dl_forward_runner_input(dl_forward_runner *r, size_t *count);
/* One forward pass up to the logits (the input is copied into the arena
 * first, as a caller's buffer would be). */
int dl_forward_runner_run(dl_forward_runner *r, dl_error *err);
void dl_forward_runner_free(dl_forward_runner *r);

/* ------------------------------------------------------------ one convolution */

/* Every convolution of the model's network, each runnable alone on its own
 * buffers: the engine's kernel (packed weights, bias and activation fused)
 * and, for 1x1 layers, the OpenBLAS reference (sgemm, then bias and
 * activation in a second pass). */
typedef struct {
    int node;         /* the convolution's node index in the graph */
    const char *kind; /* "depthwise", "1x1" or "im2col"; static */
    int m, k, n;      /* as a GEMM: output positions, reduction length, output channels */
    int stride;       /* vertical stride */
    double flops;     /* 2 m n k */
    int has_blas;     /* 1: dl_conv_bench_run_blas runs the layer */
} dl_conv_bench_info;

typedef struct dl_conv_bench dl_conv_bench;
int dl_conv_bench_count(const dl_model *m);
/* Convolution k (0 <= k < dl_conv_bench_count) with its buffers; *info
 * filled. Free with dl_conv_bench_free; the model must outlive it. */
dl_conv_bench *dl_conv_bench_new(const dl_model *m, int k, dl_conv_bench_info *info, dl_error *err);
void dl_conv_bench_run(dl_conv_bench *b);
/* 0, or -1 when the layer has no BLAS form (info.has_blas == 0). */
int dl_conv_bench_run_blas(dl_conv_bench *b);
void dl_conv_bench_free(dl_conv_bench *b);

/* ------------------------------------------------------------ one training step */

/* A whole-network training step as `dermlens train` runs stage 2 with --cut
 * input: every convolution and dense layer trainable, softmax cross-entropy
 * with label smoothing 0.1, backward, dl_train's AdamW (lr 1e-4, weight
 * decay 1e-4), at `batch` fixed pseudo-random inputs and labels. It trains
 * the model's own weights: use a model loaded for this. The model must
 * outlive the runner. */
typedef struct dl_train_step_runner dl_train_step_runner;
dl_train_step_runner *dl_train_step_runner_new(dl_model *m, int batch, dl_error *err); /* free with _free */
/* One step; *loss (may be NULL) gets the batch's mean loss. */
int dl_train_step_runner_run(dl_train_step_runner *r, float *loss, dl_error *err);
void dl_train_step_runner_free(dl_train_step_runner *r);

#ifdef __cplusplus
}
#endif
#endif
