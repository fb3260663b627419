/* DermLens engine: internal declarations shared by the engine's files.
 * SPDX-License-Identifier: GPL-3.0-or-later
 * Not installed; tests and the CLI may include it (they link the static lib).
 */
#ifndef DL_INTERNAL_H
#define DL_INTERNAL_H

#include "dermlens.h"
#include "ops.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */

/* Fill err (if non-NULL) with code and printf-style message. Returns -1 so
 * callers can write `return dl_fail(err, DL_ERR_FORMAT, "...")`. */
int dl_fail(dl_error *err, dl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "context: old message". */
int dl_fail_prefix(dl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Overflow-safe arithmetic: return false on overflow. */
bool dl_mul_size(size_t a, size_t b, size_t *out);
bool dl_add_size(size_t a, size_t b, size_t *out);

/* ---------------------------------------------------------------- files */

/* Read a whole file (up to max_bytes). *data malloc'd, caller frees. */
int dl_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size, dl_error *err);
/* Write atomically: path.tmp.PID, fsync, rename. */
int dl_write_file_atomic(const char *path, const void *data, size_t size, dl_error *err);
/* Streamed atomic write: open a temp file, write parts, then commit or abort. */
typedef struct {
    void *fp;          /* FILE* */
    char *final_path;
    char *tmp_path;
} dl_atomic_file;
int dl_atomic_open(dl_atomic_file *f, const char *path, dl_error *err);
int dl_atomic_write(dl_atomic_file *f, const void *data, size_t size, dl_error *err);
int dl_atomic_commit(dl_atomic_file *f, dl_error *err); /* fsync + rename; frees f */
void dl_atomic_abort(dl_atomic_file *f);                /* unlink temp; frees f */

void dl_sha256(const void *data, size_t size, uint8_t out[32]);
void dl_sha256_hex(const void *data, size_t size, char out[65]);
/* Streaming SHA-256 (same digest as dl_sha256 over the concatenation). */
typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t fill;
    uint64_t total;
} dl_sha256_ctx;
void dl_sha256_init(dl_sha256_ctx *c);
void dl_sha256_update(dl_sha256_ctx *c, const void *data, size_t size);
void dl_sha256_final(dl_sha256_ctx *c, uint8_t out[32]);
void dl_sha256_to_hex(const uint8_t d[32], char out[65]);

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
    float **packed;      /* [n_nodes] weights packed for this CPU's kernels, or NULL (exec.c) */
    float *packed_arena;
    /* backward (allocated by dl_exec_enable_backward) */
    float **grad;        /* [n_nodes] dL/d(node output) */
    float *grad_arena;
    float **wgrad;       /* [n_tensors] dL/d(tensor), NULL if not trainable */
    float *wgrad_arena;
    bool training;       /* dropout active */
    uint64_t rng;        /* dropout RNG state */
} dl_exec;

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

/* ---------------------------------------------------------------- model */

typedef struct {
    int width, height;    /* network input */
    char resize[16];      /* "squash" (whole image to WxH) or "center_crop" */
    float mean[3], std[3];/* x = (p - mean) / std, p in 0..255 */
} dl_preprocess;

struct dl_model {
    dl_graph graph;
    dl_preprocess pre;
    char name[128];
    int num_classes;
    char **class_names;
    char **class_long_names;
    float temperature;
    /* OOD: Mahalanobis on pooled features (optional) */
    int ood_dim;
    float *ood_mean;      /* ood_dim */
    float *ood_precision; /* ood_dim x ood_dim */
    float ood_threshold;
    char sha256[65];
    char tensor_sha256[65]; /* recorded digest of the tensor data, verified at load ("" if the file has none) */
    char *info_json;      /* whole metadata as JSON, for `info` */
    char *provenance_json;
    dl_exec exec;         /* workspace for batch 1 */
    bool exec_ready;
    /* Ensemble: this model is member 0; members[] are the others (same
     * graph structure and classes; own weights, preprocessing, temperature
     * and OOD detector). Owned; freed with the model. */
    int n_members;
    struct dl_model **members;
};

/* Model file (safetensors container; weights/FORMAT.md). */
int dl_model_parse(dl_model *m, const uint8_t *data, size_t size, dl_error *err);
/* Serialize graph + metadata and write atomically. extra_metadata_json: a JSON
 * object whose members are merged into the metadata (may be NULL). */
int dl_model_save(const dl_model *m, const char *path, dl_error *err);

/* Write a safetensors file atomically: hdr (a cJSON object already holding
 * __metadata__ and each tensor's dtype/shape/data_offsets, in data order) is
 * consumed; datas[i] holds counts[i] floats. Shared by models and checkpoints. */
struct cJSON;
int dl_safetensors_write(const char *path, struct cJSON *hdr, int n, const float *const *datas,
                         const size_t *counts, dl_error *err);

/* Preprocess an RGB8 region into the network input (H x W x 3 floats). */
int dl_preprocess_rgb8(const dl_preprocess *p, const uint8_t *rgb, int width, int height,
                       size_t stride, float *out, dl_error *err);

/* ---------------------------------------------------------------- tflite */

/* Parse an untrusted TFLite flatbuffer into a DermLens graph (float32,
 * dequantized). Input preprocessing derived from the input tensor's
 * quantization is written to *pre (scale/zero point -> mean/std). */
int dl_tflite_to_graph(const uint8_t *data, size_t size, dl_graph *g, dl_preprocess *pre,
                       dl_error *err);
int dl_model_export_onnx(const dl_model *m, const char *path, dl_error *err); /* onnx_export.c */

/* Mahalanobis OOD score of pooled features under m's detector (NAN if none). */
float dl_model_ood_score_of(const dl_model *m, const float *features);
/* Softmax of logits / t (classify.c). */
void dl_softmax_temperature(const float *logits, int n, float t, float *probs);

/* Saliency study helpers (explain.c), used by `dermlens explain --evaluate`
 * and the tests. ROAD noisy linear imputation of the pixels where removed[i]
 * is non-zero (filled from their neighbours, plus seeded noise of noise_sd). */
int dl_impute_linear(uint8_t *rgb, int w, int h, const uint8_t *removed, float noise_sd, uint64_t seed,
                     dl_error *err);
/* Study switches for the Grad-CAM family (the faithfulness sweep of
 * `dermlens explain --evaluate --sweep` compares them; 0 = one pass, i.e. dl_explain_rgb8
 * with single_pass; dl_explain_rgb8's default is DL_EXPLAIN_DIHEDRAL). */
#define DL_EXPLAIN_SCORE_PROB 1u /* gradient of the calibrated probability instead of the logit */
#define DL_EXPLAIN_SIGNED 2u     /* no ReLU: the signed map, min-max normalised */
#define DL_EXPLAIN_GATE_LAST 4u  /* the map of opts->layer (a finer layer) times the map of the
                                    last spatial convolution: the coarse map says where, the fine
                                    one sharpens it; one backward down to the finer layer */
#define DL_EXPLAIN_DIHEDRAL 8u   /* mean of the maps of the 8 dihedral transforms (flips, and
                                    transposes of a square input) of the network input, each
                                    mapped back: 8 forward + backward passes */
int dl_explain_rgb8_variant(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                            const dl_explain_options *opts, unsigned flags, float **map_out, dl_result *result,
                            dl_error *err);

#endif
