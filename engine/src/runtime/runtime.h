/* DermLens engine, runtime layer: the graph, its executor (forward and
 * backward over one arena), the NHWC kernels (ops.h) and the thread pool.
 * Depends on base/ only.
 * SPDX-License-Identifier: GPL-3.0-or-later
 * Internal (not installed): only engine/src/ includes it, see docs/ARCHITECTURE.md.
 */
#ifndef DL_RUNTIME_H
#define DL_RUNTIME_H

#include "base/base.h"
#include "runtime/ops.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- graph */

typedef enum {
    DL_OP_INPUT = 0,
    DL_OP_CONV2D,   /* incl. depthwise via groups; fused bias + activation */
    DL_OP_ADD,      /* two inputs, fused activation */
    DL_OP_AVGPOOL,
    DL_OP_MAXPOOL,
    DL_OP_GAP,      /* global average pool -> [1][1][c] */
    DL_OP_DENSE,    /* flattens its input; fused bias + activation */
    DL_OP_SOFTMAX,
    DL_OP_PAD,      /* zero pad */
    DL_OP_DROPOUT,  /* identity at inference */
    DL_OP_MUL,      /* two inputs: same shape, or the second 1x1xC (channel gate); fused activation */
    DL_OP_CONCAT,   /* two inputs of the same HxW: channels of the first, then of the second */
    DL_OP_COUNT
} dl_op;

const char *dl_op_name(dl_op op);
int dl_op_from_name(const char *name); /* -1 if unknown */

typedef enum { DL_PAD_VALID = 0, DL_PAD_SAME, DL_PAD_EXPLICIT } dl_pad_mode;

#define DL_NAME_MAX 96

typedef struct {
    char name[DL_NAME_MAX];
    int ndim;
    int64_t dims[4];
    size_t count;  /* product of dims */
    float *data;   /* owned by the graph (malloc'd, 64-byte aligned) */
} dl_tensor;

typedef struct {
    dl_op op;
    char name[DL_NAME_MAX];
    int n_inputs;
    int inputs[2];       /* node indices, each < this node's index */
    /* conv / pool */
    int kh, kw, sh, sw;
    dl_pad_mode pad_mode;
    int pad_t, pad_b, pad_l, pad_r; /* explicit, or resolved from SAME */
    int groups;
    int units;           /* conv: out channels; dense: output units */
    dl_act act;
    int weight;          /* tensor index or -1 */
    int bias;            /* tensor index or -1 */
    float rate;          /* dropout */
    /* per-sample output shape, computed by dl_graph_infer */
    int h, w, c;
    bool trainable;      /* training: update this node's weights */
} dl_node;

typedef struct {
    int n_nodes, cap_nodes;
    dl_node *nodes;
    int n_tensors, cap_tensors;
    dl_tensor *tensors;
    int output;      /* node giving the logits */
    int features;    /* node giving the pooled feature vector (-1: none) */
} dl_graph;

/* Make the calling thread's kernels serial (on != 0) or not; returns the
 * previous setting, to be restored. dl_get_num_threads() then says 1 on this
 * thread only; other threads and the process-wide count are unchanged. */
int dl_thread_serial(int on);

void dl_graph_init(dl_graph *g);
void dl_graph_free(dl_graph *g);
/* Add a tensor (data copied if non-NULL, else zero-filled). Returns index or -1. */
int dl_graph_add_tensor(dl_graph *g, const char *name, int ndim, const int64_t *dims,
                        const float *data, dl_error *err);
int dl_graph_find_tensor(const dl_graph *g, const char *name);
/* Append a node (copied). Returns its index or -1. */
int dl_graph_add_node(dl_graph *g, const dl_node *node, dl_error *err);
int dl_graph_find_node(const dl_graph *g, const char *name);
/* A node template with defaults (weight/bias -1, groups 1, strides 1). */
dl_node dl_node_make(dl_op op, const char *name);
/* Validate topology, weights' shapes and compute every node's output shape
 * from the input node's (h,w,c). Messages name the node and field. */
int dl_graph_infer(dl_graph *g, dl_error *err);
/* The same for the last node only, its inputs already inferred: a builder
 * appending nodes one by one stays linear (run dl_graph_infer at the end). */
int dl_graph_infer_last(dl_graph *g, dl_error *err);
/* Index of the last CONV2D node whose output is spatial (h*w > 1), or -1. */
int dl_graph_last_spatial_conv(const dl_graph *g);
/* FLOPs (multiply-adds x2) of one forward at batch 1. */
double dl_graph_flops(const dl_graph *g);

/* ---------------------------------------------------------------- executor */

/* Holds every node's output for one batch size: allocated once, reused for
 * each forward (no allocation per layer). Activations are kept so that a
 * backward pass (Grad-CAM, training) can reuse them. */
typedef struct {
    const dl_graph *g;
    int batch;
    float **act;         /* [n_nodes] -> batch * h*w*c floats, into arena */
    float **pre;         /* [n_nodes] pre-activation (hswish/silu only) or NULL */
    float *arena;
    size_t arena_floats;
    float *scratch;
    size_t scratch_floats;
    size_t img_scratch_floats; /* scratch of one part of an image-parallel forward (0: none) */
    float **packed;      /* [n_nodes] weights packed for this CPU's kernels, or NULL (exec.c) */
    float *packed_arena;
    /* backward (allocated by dl_exec_enable_backward) */
    float **grad;        /* [n_nodes] dL/d(node output) */
    float *grad_arena;
    float **wgrad;       /* [n_tensors] dL/d(tensor), NULL if not trainable */
    float *wgrad_arena;
    bool training;       /* dropout active */
    bool pre_kept;       /* the last forward kept hswish/silu inputs in pre[] (only with grad or training) */
    uint64_t rng;        /* dropout RNG state */
    struct dl_band_plan *bands; /* chains run in bands of rows (exec_band.c), or NULL */
    /* Lean forwards (default false): inside banded chains, outputs no later
     * node reads (the expansions of inverted-residual blocks) stay in small
     * L2-resident windows and are NOT written to act[]; only outputs read
     * after their chain, the graph's output and features are. For callers
     * that read nothing else and run no backward pass. */
    bool lean;
    float **lean_act;    /* [n_nodes] lean forwards' outputs: the arena for the input, output and
                          * features, shared slots reused by liveness for the rest */
    float *lean_arena;
    size_t lean_img_floats; /* a shared slot's floats per image (the largest node in one) */
} dl_exec;

/* Image b of node's output in a forward's activation table act (e->act or
 * e->lean_act): act[node] + b * (floats per image), except in a part of an
 * image-parallel lean forward, whose images [b0, ...) start at b0 times
 * the shared slots' per-image size (parts then never overlap in a slot
 * that nodes of different sizes share). b0 = 0: the plain layout. */
float *dl_exec_image(const dl_exec *e, float *const *act, int node, int b0, int b);

/* Most parts an inference forward splits a batch into (one per thread). */
#define DL_IMG_PARTS_MAX 8

int dl_exec_init(dl_exec *e, const dl_graph *g, int batch, dl_error *err);
void dl_exec_free(dl_exec *e);
/* input: batch x H x W x C floats (already preprocessed). Runs nodes
 * [0, last] (last < 0: all). */
int dl_exec_forward(dl_exec *e, const float *input, int last, dl_error *err);
/* Allocate gradient buffers; with_weights also for trainable nodes' tensors. */
int dl_exec_enable_backward(dl_exec *e, bool with_weights, dl_error *err);
/* Backward from node `from` with seed gradient seed (batch * size of from's
 * output) down to node `stop` (inclusive; gradients of nodes before stop are
 * not computed). Zeroes node gradients first; weight gradients ACCUMULATE
 * (zero them with dl_exec_zero_wgrad). */
int dl_exec_backward(dl_exec *e, int from, const float *seed, int stop, dl_error *err);
void dl_exec_zero_wgrad(dl_exec *e);
size_t dl_node_out_count(const dl_node *n); /* h*w*c */

/* Banded execution (exec_band.c), used by dl_exec_forward: chains of
 * convolutions on large activations, run an image and a band of rows at a
 * time; same values as layer by layer. packed: the executor's packed
 * weights. NULL: no chain in this graph (or out of memory: layer by layer). */
typedef struct dl_band_plan dl_band_plan;
dl_band_plan *dl_band_plan_new(const dl_graph *g, float *const *packed);
void dl_band_plan_free(dl_band_plan *p);
/* Scratch one image of any chain needs (the executor gives each thread its own). */
size_t dl_band_plan_scratch_floats(const dl_band_plan *p);
/* The last node of the chain starting at `node` if it ends at or before
 * `last`, else -1. */
int dl_band_chain_at(const dl_band_plan *p, int node, int last);
/* Runs that chain on every image of e's batch (e->scratch: the plan's
 * scratch per thread), act: the forward's activation table (e->act, or
 * e->lean_act). -1 if no chain starts there. */
int dl_band_chain_run(const dl_exec *e, const dl_band_plan *p, int first, float *const *act);
/* The same on images [b0, b1) only, on the calling thread, with `scratch`
 * (dl_band_plan_scratch_floats) as its scratch; scratch NULL: as
 * dl_band_chain_run on the whole batch. */
int dl_band_chain_run_images(const dl_exec *e, const dl_band_plan *p, int first, float *const *act, int b0, int b1,
                             float *scratch);
/* 1 if node lies in a chain: its node range, and whether lean forwards keep
 * its output in a window only (no storage needed in act[]). */
int dl_band_span(const dl_band_plan *p, int node, int *first, int *last, bool *windowed);

#endif
