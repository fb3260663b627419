/* DermLens engine: public API.
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Conventions (stb / libvips style):
 *  - Functions returning int return 0 on success and -1 on failure; functions
 *    returning a pointer return NULL on failure. On failure the optional
 *    dl_error* is filled with a code and a human-readable message.
 *  - The library never prints, never exits, never calls abort() on bad input.
 *  - Ownership is stated on every function: "caller frees with X" or
 *    "borrowed, valid while the model lives".
 *  - Thread safety: a dl_model holds its own workspace, so one model must not be
 *    used from two threads at the same time. Two models can be used from two
 *    threads concurrently.
 *  - Images are 8-bit RGB, row-major, top row first, with an explicit stride in
 *    bytes (>= 3 * width).
 */
#ifndef DERMLENS_H
#define DERMLENS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DL_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ errors */

typedef enum {
    DL_OK = 0,
    DL_ERR_IO,          /* file missing, unreadable, unwritable */
    DL_ERR_FORMAT,      /* malformed or hostile file contents */
    DL_ERR_NOMEM,       /* allocation failed */
    DL_ERR_ARG,         /* invalid argument from the caller */
    DL_ERR_UNSUPPORTED, /* valid input using a feature we do not support */
    DL_ERR_LIMIT,       /* input exceeds a documented resource limit */
    DL_ERR_CANCELLED,   /* a progress callback asked to stop */
    DL_ERR_DATA         /* bad training/evaluation data (labels, classes) */
} dl_status;

typedef struct {
    dl_status code;
    char message[512];
} dl_error;

/* Human-readable name of a status code; static string. */
const char *dl_status_name(dl_status code);

/* Progress callback: fraction in [0,1] and a short stage name. Return nonzero
 * to cancel (the operation then fails with DL_ERR_CANCELLED). */
typedef int (*dl_progress_fn)(void *user, double fraction, const char *stage);

/* ------------------------------------------------------------------ limits */

/* Largest image (width*height) the decoders accept: 2^28 pixels (~268 MP,
 * e.g. 16384 x 16384) to keep decoded RGB8 below 1 GiB. */
#define DL_MAX_IMAGE_PIXELS ((int64_t)1 << 28)
#define DL_MAX_IMAGE_SIDE 65535
/* Largest model file / total tensor bytes the loader accepts. */
#define DL_MAX_MODEL_BYTES ((int64_t)1 << 30)
/* Memory a model may ask for: its weights plus the activations (and largest
 * convolution scratch) of one image at its input size, computed from the
 * file's metadata before anything is allocated. A model needing more is
 * refused by dl_model_load* with DL_ERR_LIMIT naming the need and the limit.
 * Default 4 GiB; the environment variable DERMLENS_MAX_MEMORY_MB (a positive
 * integer, MiB) overrides it. Saliency maps need about one more activation
 * arena on top. */
#define DL_MAX_MODEL_MEMORY_MB 4096

/* ------------------------------------------------------------------ threads */

/* Number of threads the engine (and OpenBLAS under it) may use. The engine is
 * the one owner of the cores: it sets OpenBLAS's thread count itself.
 * n <= 0 means "all cores". Process-wide. */
void dl_set_num_threads(int n);
int dl_get_num_threads(void);
/* The instruction-set level the kernels dispatch to on this CPU (chosen from
 * CPUID feature bits, never from the vendor): "avx512", "avx2" or
 * "portable". Static string. */
const char *dl_cpu_isa_name(void);

/* ------------------------------------------------------------------ random numbers */

/* The engine's one random generator, SplitMix64 (Steele, Lea and Flood
 * 2014): the state advances by a constant and is hashed. Fast, 2^64 period,
 * any state (0 too) is valid; deterministic, never for cryptography. Every
 * randomised step of the engine and of its callers (bootstrap intervals,
 * random forests, augmentation, the faithfulness study, perturbations, test
 * data) draws from it, so one seed means the same numbers everywhere. The
 * state is the caller's: one per thread or per stream. */
uint64_t dl_rng_next(uint64_t *state);              /* next 64 random bits */
double dl_rng_uniform(uint64_t *state);             /* [0, 1), 53 random bits */
uint32_t dl_rng_below(uint64_t *state, uint32_t n); /* [0, n) for n >= 1 (high bits, multiply-shift) */
/* Standard normal (Box-Muller on two uniforms, the cosine half). */
double dl_rng_normal(uint64_t *state);
/* SplitMix64's output for state x without a state: a 64-bit mixer for
 * deriving seeds (dl_rng_hash(x) == dl_rng_next(&x) before x advances). */
uint64_t dl_rng_hash(uint64_t x);

/* ------------------------------------------------------------------ images */

typedef struct {
    int width;
    int height;
    size_t stride;    /* bytes per row, >= 3*width */
    uint8_t *pixels;  /* RGB8; owned by the image, free with dl_image_free */
} dl_image;

/* Decode PNG (any bit depth, grey, palette, alpha; alpha is dropped as PIL's
 * convert('RGB') does, 16-bit is reduced to 8), JPEG (grey, RGB, CMYK), TIFF
 * (first page; what libtiff's RGBA reader handles: grey, palette, RGB, YCbCr,
 * CMYK, 1..16 bits, strips or tiles, any compression libtiff has) or BMP
 * (uncompressed 1/4/8/16/24/32 bits, bit fields; not RLE) into
 * RGB8, sniffed from the bytes. Size limits are checked before any pixel
 * buffer is allocated. On success fills *out (caller frees with dl_image_free). */
int dl_image_load(const char *path, dl_image *out, dl_error *err);
int dl_image_load_memory(const void *data, size_t size, dl_image *out, dl_error *err);
void dl_image_free(dl_image *img);

/* Allocate a w x h RGB8 image (zeroed). Caller frees with dl_image_free. */
int dl_image_alloc(dl_image *out, int width, int height, dl_error *err);

/* Resize RGB8 src to w x h with a triangle (bilinear) filter whose support is
 * widened when shrinking (antialiased, as PIL's BILINEAR). dst is allocated. */
int dl_image_resize(const dl_image *src, int width, int height, dl_image *dst, dl_error *err);

/* Gaussian blur of RGB8 src (separable, sigma in pixels, 0 < sigma <=
 * 1000, edges clamped) into dst, allocated (free with dl_image_free). */
int dl_image_blur(const dl_image *src, double sigma, dl_image *dst, dl_error *err);

/* Write RGB8 (channels=3), RGBA8 (channels=4) or grey (channels=1) PNG,
 * atomically (temp file + rename). bit_depth 8 or 16 (16: data is uint16
 * host-endian). */
int dl_png_write(const char *path, const void *data, int width, int height, size_t stride,
                 int channels, int bit_depth, dl_error *err);

/* Encode RGB8 as a baseline JPEG at quality 1..100 (libjpeg's defaults:
 * 4:2:0, optimised tables off), in memory. *data is malloc'd (*size bytes),
 * caller frees with free(). Used to measure what a JPEG round trip does to a
 * prediction (decode the bytes with dl_image_load_memory). */
int dl_jpeg_encode(const dl_image *img, int quality, uint8_t **data, size_t *size, dl_error *err);

/* ------------------------------------------------------------------ model */

typedef struct dl_model dl_model;

/* Load a DermLens model file (safetensors container, see weights/FORMAT.md).
 * Everything is validated before use. Caller frees with dl_model_free. */
dl_model *dl_model_load(const char *path, dl_error *err);
dl_model *dl_model_load_memory(const void *data, size_t size, dl_error *err);
void dl_model_free(dl_model *model);

/* Borrowed strings, valid while the model lives. */
const char *dl_model_name(const dl_model *m);
int dl_model_num_classes(const dl_model *m);
const char *dl_model_class_name(const dl_model *m, int i);      /* short code, e.g. "mel" */
const char *dl_model_class_long_name(const dl_model *m, int i); /* e.g. "melanoma" */
int dl_model_feature_dim(const dl_model *m);                    /* pooled feature length */
int dl_model_input_size(const dl_model *m, int *width, int *height);
float dl_model_temperature(const dl_model *m);
/* sha256 of the model file as 64 hex chars. */
const char *dl_model_sha256(const dl_model *m);
/* The model's metadata as one JSON object (graph summary, classes,
 * preprocessing, provenance). Borrowed. */
const char *dl_model_info_json(const dl_model *m);

/* Ensembles: one file may hold several members (same graph structure and
 * classes, own weights, preprocessing, temperature and OOD detector). Every
 * API call on the model runs all members: classification averages their
 * calibrated probabilities, saliency averages their maps of the ensemble's
 * class, the OOD score is the mean of score/threshold on member 0's scale.
 * A single model is an ensemble of 1. */
int dl_model_num_members(const dl_model *m);
const char *dl_model_member_name(const dl_model *m, int k); /* 0 <= k < num_members; borrowed */
/* Write models[0..n-1] (2..16 single models, borrowed) as one ensemble file,
 * atomically. name and provenance_json (a JSON object) may be NULL: member
 * 0's are kept. Each member's own provenance travels with it. */
int dl_model_save_ensemble(dl_model *const *models, int n, const char *name, const char *provenance_json,
                           const char *path, dl_error *err);

/* An operating point: multiply class c's calibrated probability by
 * exp(log_odds) before renormalising (e.g. a melanoma-sensitivity setting
 * chosen on validation). Folded into the output bias of every member
 * (log_odds x its temperature), so every caller sees it. |log_odds| <= 20. */
int dl_model_shift_class(dl_model *m, int c, float log_odds, dl_error *err);
/* Write the model (all members) to path atomically, with its provenance
 * replaced by provenance_json (a JSON object) unless that is NULL. */
int dl_model_save_as(const dl_model *m, const char *path, const char *provenance_json, dl_error *err);
/* The provenance JSON object as stored (borrowed; NULL if none). */
const char *dl_model_provenance_json(const dl_model *m);

/* How a model file stores its tensors (weights/FORMAT.md). DL_STORAGE_F16:
 * the weights of dense and ungrouped conv2d nodes and the OOD precision
 * matrix as IEEE half (about half the file); depthwise kernels, biases and
 * the OOD mean stay F32. Loading converts to float32 either way (the engine
 * computes in float32 only). */
typedef enum { DL_STORAGE_F32 = 0, DL_STORAGE_F16 = 1 } dl_storage;
/* As loaded: F16 if any tensor of any member was stored as F16. */
dl_storage dl_model_storage(const dl_model *m);
/* The storage dl_model_save_as writes (all members) and, set on models[0],
 * dl_model_save_ensemble. Saving refuses (nothing written) a weight that F16
 * cannot hold: |w| would round beyond 65504. */
int dl_model_set_storage(dl_model *m, dl_storage storage, dl_error *err);

/* ------------------------------------------------------------------ classify */

typedef struct {
    int num_classes;
    float *probs;      /* num_classes, calibrated softmax (temperature applied) */
    float *logits;     /* num_classes, raw logits */
    int top_k;         /* number of valid entries in top_index */
    int *top_index;    /* class indices sorted by decreasing probability */
    int feature_dim;
    float *features;   /* pooled backbone features (feature_dim) */
    float ood_score;   /* out-of-distribution score, NAN if the model has none */
    int ood_flag;      /* 1 if ood_score is above the model's threshold */
} dl_result;

typedef struct {
    int top_k;             /* <= 0: all classes */
    int tta;               /* 0 = off; 1 = average over flips and 90-degree turns */
    dl_progress_fn progress;
    void *progress_user;
} dl_classify_options;

/* Classify an RGB8 buffer. The model's recorded preprocessing (resize mode,
 * size, scaling) is applied here. Fills *out; caller frees with dl_result_free.
 * opts may be NULL (defaults: top_k 5, no TTA). */
int dl_classify_rgb8(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                     const dl_classify_options *opts, dl_result *out, dl_error *err);
void dl_result_free(dl_result *r);

/* ------------------------------------------------------------------ explain */

typedef enum {
    DL_SALIENCY_GRADCAM = 0,
    DL_SALIENCY_GRADCAM_PP,
    DL_SALIENCY_HIRESCAM,
    DL_SALIENCY_LAYERCAM,
    DL_SALIENCY_SCORECAM,
    DL_SALIENCY_OCCLUSION
} dl_saliency_method;

/* Parse "gradcam", "gradcam++", "hirescam", "layercam", "scorecam",
 * "occlusion" (case, '-', '_' and spaces ignored; "gradcampp" too); returns
 * -1 if unknown. */
int dl_saliency_method_from_name(const char *name);
const char *dl_saliency_method_name(dl_saliency_method m); /* "unknown" out of range */

/* The one method table, for front ends and reports. m is a
 * dl_saliency_method, 0 <= m < dl_explain_method_count(); out of range:
 * NULL. Static strings. */
int dl_explain_method_count(void);
const char *dl_explain_method_name(int m);        /* "gradcam++" (what the parsers accept) */
const char *dl_explain_method_label(int m);       /* "Grad-CAM++" */
const char *dl_explain_method_description(int m); /* one line for a menu or a tooltip */
/* 1 for the Grad-CAM family, whose default map is the mean of 8 passes and
 * which has dl_explain_options.single_pass; else 0. */
int dl_explain_method_single_pass(int m);

typedef struct {
    dl_saliency_method method;
    int class_index;       /* < 0: the top class */
    const char *layer;     /* NULL: the last convolution layer */
    float smooth_sigma;    /* Gaussian smoothing in output pixels, 0 = none */
    dl_progress_fn progress;
    void *progress_user;
    /* Grad-CAM family only (ignored by Score-CAM and occlusion). 0 (the
     * default): the map is the mean of the maps of the 8 flips/transposes of
     * the network input (4 flips if it is not square), each mapped back: the
     * 32-px cells of the last convolution fall elsewhere in each, so the mean
     * localises finer; it removed the evidence faster in the faithfulness
     * selection on ham10000/val (docs/reports/explain-faithfulness.md), at 8
     * forward + short backward passes. 1: a single pass, about a third of one
     * forward on top of classification. */
    int single_pass;
    /* Ensembles, with the 8-flip mean: 0 (the default) shares the 8 flips
     * out among the members (with four, each runs two: 8 passes in all, the
     * mean still over every flip); 1: every member runs all 8 (32 passes
     * for four members). Equally faithful on ham10000/val
     * (docs/reports/explain-spread-val.md); 0 is 3-4x cheaper. */
    int every_member_all_flips;
} dl_explain_options;

/* The layers dl_explain_options.layer may name: the spatial (h x w > 1)
 * convolution and add outputs before the logits, in graph order. */
typedef struct {
    int index;        /* node index in the model's graph */
    const char *name; /* node name; borrowed, valid while the model lives */
    const char *op;   /* "conv2d" or "add"; static */
    int height, width, channels;
    int is_default;   /* the last spatial convolution: the layer used when layer is NULL */
} dl_layer_info;
int dl_explain_layer_count(const dl_model *m);
/* Layer k (0 <= k < dl_explain_layer_count) into *out: 0, or -1 out of range. */
int dl_explain_layer(const dl_model *m, int k, dl_layer_info *out);

/* Saliency map for the image region, upsampled (bilinear) to width x height,
 * normalised to [0,1]. *map_out is malloc'd (width*height floats), caller
 * frees with free(). If result is non-NULL it is filled as dl_classify_rgb8
 * would (caller frees with dl_result_free). */
int dl_explain_rgb8(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                    const dl_explain_options *opts, float **map_out, dl_result *result,
                    dl_error *err);

/* Bilinear resample of a single-channel float map sw x sh to dw x dh
 * (pixel centres aligned, edges clamped), as dl_explain_rgb8 upsamples its
 * maps. dst rows are dst_stride floats apart (>= dw); caller's buffers. */
void dl_map_resize(const float *src, int sw, int sh, float *dst, int dw, int dh, size_t dst_stride);
/* dl_map_resize of the source rectangle (rx, ry) rw x rh (source pixels,
 * fractional) onto dw x dh: the image's part of a letterboxed input, or a
 * band of rows of a larger output (the plug-in writes its overlay so). */
void dl_map_resize_rect(const float *src, int sw, int sh, double rx, double ry, double rw, double rh, float *dst,
                        int dw, int dh, size_t dst_stride);

/* ------------------------------------------------------------------ datasets */

/* A labelled image list: either a folder of class subfolders
 * (DIR/<class>/<image>, as Keras flow_from_directory) or a CSV file with a
 * header naming at least `path` and `label` columns (also accepted: `dx` or
 * `class` for the label, `lesion_id` or `group` for the group), paths
 * relative to the CSV's folder. Untrusted input: sizes are bounded. */
typedef struct {
    int n;               /* images */
    char **paths;        /* [n] full paths */
    int *labels;         /* [n] index into class_names */
    char **groups;       /* [n] group (lesion) id or NULL */
    int n_classes;
    char **class_names;  /* [n_classes] sorted, or in class_order if given */
} dl_dataset;

typedef struct {
    const char *split;          /* CSV only: keep rows whose `split` column equals this (NULL: all) */
    const char *label_column;   /* CSV only: label column (NULL: first of label, dx, ham10000_class, class) */
    const char *const *class_order; /* fix class list and order (e.g. the model's), or NULL: sorted */
    int n_class_order;
    int allow_subset;           /* with class_order: skip rows whose label is not in it (else error) */
} dl_dataset_options;

/* opts may be NULL. Caller frees with dl_dataset_free. Errors name the file
 * and line. An empty result is an error. */
int dl_dataset_open(const char *path, const dl_dataset_options *opts, dl_dataset *ds, dl_error *err);
/* Parse CSV text (for fuzzing / in-memory use); base_dir prefixes paths. */
int dl_dataset_parse_csv(const char *text, size_t len, const char *base_dir,
                         const dl_dataset_options *opts, dl_dataset *ds, dl_error *err);
void dl_dataset_free(dl_dataset *ds);

/* A whole CSV file as strings (RFC 4180 quotes; the same limits as the
 * dataset reader: 256 fields, 4 KiB per field, 10 M rows). Untrusted input.
 * cells[row * n_cols + col]. Caller frees with dl_csv_table_free. */
typedef struct {
    int n_cols, n_rows;
    char **header;  /* [n_cols] */
    char **cells;   /* [n_rows * n_cols] */
} dl_csv_table;
int dl_csv_table_parse(const char *text, size_t len, dl_csv_table *t, dl_error *err);
int dl_csv_table_load(const char *path, dl_csv_table *t, dl_error *err);
int dl_csv_table_column(const dl_csv_table *t, const char *name); /* -1 if absent */
void dl_csv_table_free(dl_csv_table *t);

/* Decode every image of ds and resize it to width x height RGB8 (squash),
 * using `threads` worker threads. Images that fail are reported in
 * errors[i] (malloc'd message, else NULL) and their slot is NULL.
 * *images is an array of n pointers (each width*height*3 bytes), caller
 * frees with dl_dataset_free_images. */
int dl_dataset_load_images(const dl_dataset *ds, int width, int height, int threads,
                           uint8_t ***images, char ***errors, dl_progress_fn progress, void *user,
                           dl_error *err);
/* As dl_dataset_load_images, but each image keeps its aspect ratio, scaled
 * down (never up) so that its longer side is at most max_side. *dims gets
 * 2n ints (width, height of image i at 2i, 2i+1; malloc'd, caller frees). */
int dl_dataset_load_images_fit(const dl_dataset *ds, int max_side, int threads, uint8_t ***images, int **dims,
                               char ***errors, dl_progress_fn progress, void *user, dl_error *err);
void dl_dataset_free_images(const dl_dataset *ds, uint8_t **images, char **errors);

/* ------------------------------------------------------------------ training */

/* Transfer learning from an ImageNet backbone model:
 *  stage 1 (the original design): frozen backbone, head = pooled features ->
 *    dense(hidden) ReLU -> dropout -> dense(K); trained on cached features of
 *    several augmented views per image; Adam; class-balanced sampling.
 *  stage 2: fine-tune every layer after `cut` (default: the start of the last
 *    resolution stage) plus the head, on cached activations at `cut` of
 *    several augmented views; AdamW, warm-up + cosine decay, label smoothing,
 *    early stopping on validation balanced accuracy, atomic checkpoint every
 *    epoch, resumable.
 * Then temperature scaling on val and a Mahalanobis OOD detector on the
 * pooled features. Deterministic for a given seed and thread count. */
typedef struct {
    const char *backbone;          /* model file with the ImageNet backbone */
    const char *const *train_sets; /* dataset specs (dir or CSV), pooled */
    int n_train_sets;
    const char *train_split;       /* CSV split filter for train sets (NULL: all) */
    const char *val_set;
    const char *val_split;
    const char *output;            /* final model */
    const char *head_output;       /* optional: stage-1 (frozen backbone) model */
    const char *checkpoint;        /* checkpoint file (default: output + ".ckpt") */
    const char *log_csv;           /* per-epoch CSV log (optional) */
    const char *cut;               /* node name to fine-tune from (NULL: auto) */
    const char *name;              /* model name */
    const char *command_line;      /* recorded in provenance */
    int stages;                    /* 1 = head only, 2 = head then fine-tune */
    int epochs_head, epochs;
    int views;                     /* augmented views cached per training image */
    int batch;
    float lr_head, lr, weight_decay, label_smoothing, dropout;
    int hidden;
    int warmup_epochs, patience;
    int class_weighted;            /* 1: class-weighted loss instead of balanced sampling */
    int max_per_class;             /* 0: all; else cap images per class (tests) */
    int resume;
    unsigned seed;
    int threads;
    dl_progress_fn progress;       /* live progress (stage string carries loss, img/s, ETA) */
    void *progress_user;
    void (*log)(void *user, const char *line); /* one line per epoch / event */
    void *log_user;
    /* --- added for multi-source, scale-aware fine-tuning (all 0 = off) --- */
    const char *const *val_sets;   /* pooled validation sets (overrides val_set when n_val_sets > 0) */
    int n_val_sets;
    const char *init_model;        /* warm start: copy same-named, same-sized weights from this model */
    const char *exclude;           /* file of image ids (one per line) dropped from train and val */
    const char *resize;            /* recorded preprocessing: "squash" (default), "center_crop" or "pad" */
    int max_side;                  /* decode training images keeping aspect, longer side <= this (default 320) */
    int scale_aug;                 /* 1: random-resized-crop views (zoom in/out, aspect, rotation, colour) */
    float scale_min, scale_max;    /* crop area relative to the preprocessing's view (default 0.3..1.4) */
    float aspect_jitter;           /* aspect ratio in [1/a, a] (default 1.33) */
    float colour_jitter;           /* colour jitter strength (default 1) */
    int source_balance;            /* 1: each class drawn equally from every source that has it */
    float class_power;             /* class sampling weight n_k^power (0 = balanced, 1 = natural) */
    int epoch_size;                /* images drawn per stage-2 epoch (0: the training set's size) */
    float ema;                     /* weight EMA decay per step (0 = off); evaluated and shipped */
    float mixup;                   /* probability per batch of mixup or cutmix (half each) */
    int prior_shift;               /* 1: choose a logit prior shift on val (alpha x log train prior) */
    int restart;                   /* 1: replace an existing checkpoint (else refused unless resuming) */
    int select_last;               /* 1: keep the last epoch's (EMA) weights, 0: the best epoch on val balanced accuracy */
} dl_train_config;

/* Fill defaults (the values the shipped model was trained with). */
void dl_train_config_defaults(dl_train_config *c);
int dl_train(const dl_train_config *cfg, dl_error *err);

/* ------------------------------------------------------------------ export */

/* Write the model's network (member 0, up to the logits) as ONNX (opset 13),
 * atomically: input "input" float32 [N, 3, H, W] already preprocessed,
 * output "logits" [N, K]; preprocessing, temperature and class names in the
 * metadata_props. */
int dl_model_export_onnx(const dl_model *m, const char *path, dl_error *err);

/* ------------------------------------------------------------------ import */

/* Convert a TFLite flatbuffer (untrusted) into a DermLens model file written
 * atomically to out_path. labels_path may be NULL (classes named class_N).
 * name/provenance are stored in the model metadata (may be NULL). */
int dl_import_tflite(const char *tflite_path, const char *labels_path, const char *out_path,
                     const char *name, const char *provenance_json, dl_error *err);

/* Convert an ONNX image classifier (untrusted; e.g. torchvision or timm
 * exported with torch.onnx.export, weights inside the file) into a DermLens
 * model file written atomically to out_path; the written file is read back
 * as a check. NCHW graphs are converted to NHWC once; BatchNorm is folded;
 * an unsupported op stops the import naming the op, the node and the opset.
 * opts may be NULL (defaults). */
typedef struct {
    const char *classes_path;    /* one name per line, or a JSON list of strings; NULL: class_0.. */
    int width, height;           /* network input; 0: the file's (needed when it is symbolic) */
    float mean[3], std[3];       /* torchvision convention: units of pixel/255 (times scale) */
    float scale;                 /* what a 255 pixel is before mean/std: 1 (0..1 models), 255, 2 (with mean 1, std 1: -1..1) */
    const char *resize;          /* "squash", "center_crop" ("crop" accepted) or "pad" (aspect kept,
                                    black border: letterbox); NULL: squash */
    const char *name;            /* model name; NULL: "imported" */
    const char *provenance_json; /* a JSON object, or NULL */
} dl_onnx_import_options;

/* ImageNet mean/std (0.485,0.456,0.406 / 0.229,0.224,0.225), scale 1,
 * squash, size from the file. */
void dl_onnx_import_options_defaults(dl_onnx_import_options *o);
int dl_import_onnx(const char *onnx_path, const dl_onnx_import_options *opts, const char *out_path,
                   dl_error *err);

#ifdef __cplusplus
}
#endif
#endif
