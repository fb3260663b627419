/* DermLens engine: evaluation API (metrics and statistics, the classic
 * baselines, the saliency faithfulness study).
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Same conventions as dermlens.h: 0 / -1 with a dl_error (where a function
 * can fail), ownership stated on every output, no printing, no exit. What
 * `dermlens evaluate`, `robustness`, `compare` and `explain --evaluate`
 * compute lives here; the commands parse options and print.
 */
#ifndef DERMLENS_EVAL_H
#define DERMLENS_EVAL_H

#include "dermlens.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ metrics */

/* Classification metrics. Probabilities are row-major n x k; labels in [0,k). */
typedef struct {
    int n, k;
    double accuracy, balanced_accuracy, macro_f1, weighted_f1, macro_auc, ece;
    double *precision, *recall, *f1, *auc; /* [k]; auc NAN when a class has no positives */
    int *support;                          /* [k] */
    int *confusion;                        /* [k*k], row = true class, column = predicted */
    int mel_index;                         /* index of "mel" in class_names or -1 */
    double mel_sens_at_spec80, mel_sens_at_spec90; /* NAN without a mel class */
    double ci_accuracy[2], ci_balanced_accuracy[2], ci_macro_auc[2]; /* bootstrap 95%, NAN if none */
} dl_metrics;

/* bootstrap: number of resamples (0: no intervals), drawn with dl_rng_next
 * from seed: deterministic. Fills *out; the arrays are owned by it, free
 * with dl_metrics_free. */
int dl_metrics_compute(int n, int k, const int *labels, const float *probs, const char *const *class_names,
                       int bootstrap, unsigned seed, dl_metrics *out, dl_error *err);
void dl_metrics_free(dl_metrics *m);

/* One-vs-rest ROC AUC (ties counted half); NAN if one side is empty. */
double dl_auc_binary(int n, const float *scores, const int *positive);
/* Balanced accuracy only (mean recall over classes with support). */
double dl_balanced_accuracy(int n, int k, const int *labels, const int *pred);
/* McNemar's exact (binomial) two-sided p-value on paired correctness. */
double dl_mcnemar_p(int n, const int *correct_a, const int *correct_b, int *a_only, int *b_only);

/* ROC curve of scores vs positive, threshold lowered from +inf through each
 * distinct score: (0,0) first, (1,1) last. *fpr and *tpr are malloc'd
 * (*n_points entries), caller frees. Fails without positives or negatives. */
int dl_roc_curve(int n, const float *scores, const int *positive, double **fpr, double **tpr,
                 int *n_points, dl_error *err);
/* Reliability diagram on top-class confidence: n_bins equal-width bins over
 * [0,1] (confidence 1 in the last). Any output may be NULL; empty bins get
 * NAN means. ece = sum |accuracy - confidence| * count / n. Returns 0 / -1. */
int dl_reliability_bins(int n, int k, const int *labels, const float *probs, int n_bins,
                        int *count, double *mean_conf, double *accuracy, double *ece);

/* ------------------------------------------------------------------ statistics */

/* Paired differences d[0..n-1] (method minus reference, per image). */
typedef struct {
    int n;
    double mean, se, lo, hi; /* mean difference, its standard error and t 95% interval */
    double p;                /* Wilcoxon signed-rank, two-sided (normal approximation, ties corrected, zeros dropped) */
    int wins;                /* differences < 0 */
} dl_paired;
/* Every field NAN (wins 0) when n < 2. */
dl_paired dl_paired_test(const double *d, int n);
/* Mean and standard error of the non-NaN values (NAN when there are none,
 * se NAN below two). */
void dl_mean_se(const double *v, int n, double *mean, double *se);

/* ------------------------------------------------------------------ classic baselines */

/* Traditional (non-deep) lesion classifiers, the baselines of `dermlens
 * compare`: hand-crafted colour, texture and shape features,
 * standardisation, class-balanced multinomial logistic regression (L-BFGS)
 * and a random forest (CART, Gini).
 *
 * Feature vector (DL_FEAT_DIM floats, groups contiguous in this order):
 *   colour  [0, 75):   RGB histograms 8 bins x 3, HSV histograms 8 bins x 3
 *                      (fractions), colour moments mean/std/skewness for
 *                      R,G,B, H,S,V and CIE L*a*b* (27, channels scaled ~[0,1]).
 *   texture [75, 101): uniform LBP (P=8, R=1) 10-bin histogram on grey
 *                      (bins 0..8 = number of neighbours >= centre for uniform
 *                      codes, 9 = non-uniform; a flat region is bin 8), then
 *                      GLCM (distance 1, 16 grey levels, symmetric, normalised)
 *                      contrast, correlation, energy (sqrt ASM), homogeneity at
 *                      0, 45, 90, 135 degrees (stat-major: 4 contrasts, ...).
 *   shape   [101, 114): from an Otsu segmentation of the smoothed grey image
 *                      (dark side, component scored by size and closeness to
 *                      the centre, holes filled): area fraction, compactness
 *                      P^2/(4 pi A) (1 for a disc), asymmetry about the major
 *                      and the minor principal axis (fraction of lesion pixels
 *                      whose mirror image is outside the lesion), eccentricity
 *                      (1 - minor/major axis), border irregularity (coefficient
 *                      of variation of the Mahalanobis radius of border
 *                      pixels), centroid offset from the image centre, RGB std
 *                      inside the lesion (3), lesion-minus-surround RGB mean (3).
 * Images are first resized (squash) to DL_FEAT_SIZE x DL_FEAT_SIZE. */
#define DL_FEAT_SIZE 128

#define DL_FEAT_COLOR_OFF 0
#define DL_FEAT_COLOR_DIM 75
#define DL_FEAT_TEXTURE_OFF 75
#define DL_FEAT_TEXTURE_DIM 26
#define DL_FEAT_SHAPE_OFF 101
#define DL_FEAT_SHAPE_DIM 13
#define DL_FEAT_DIM 114

/* Offsets inside the texture group (relative to DL_FEAT_TEXTURE_OFF). */
#define DL_FEAT_LBP_BINS 10
#define DL_FEAT_LBP_FLAT_BIN 8
#define DL_FEAT_GLCM_OFF 10 /* contrast[4], correlation[4], energy[4], homogeneity[4] */

/* Group selection (bit mask). */
enum { DL_FEAT_COLOR = 1, DL_FEAT_TEXTURE = 2, DL_FEAT_SHAPE = 4, DL_FEAT_ALL = 7 };

/* Column indices (into the full vector) of the selected groups, in order.
 * cols must hold DL_FEAT_DIM ints; returns the count (0 for an empty mask). */
int dl_feat_columns(unsigned groups, int *cols);
/* "colour", "texture", "shape", "all" (also "color"); -1 if unknown. */
int dl_feat_groups_from_name(const char *name);

/* Extract the full DL_FEAT_DIM feature vector of an RGB8 image. Thread-safe.
 * out: DL_FEAT_DIM floats (caller's). */
int dl_feat_extract(const uint8_t *rgb, int width, int height, size_t stride, float *out, dl_error *err);

typedef struct {
    int d;
    float *mean, *std; /* [d], owned; std of a constant column is stored as 1 */
} dl_standardizer;

int dl_standardizer_fit(dl_standardizer *s, int n, int d, const float *x, dl_error *err);
/* In place on n x d rows; non-finite values become 0 (the mean). */
void dl_standardizer_apply(const dl_standardizer *s, int n, float *x);
void dl_standardizer_free(dl_standardizer *s);

/* Class-balanced weights n / (k * n_c) (0 for absent classes). w[k]. */
void dl_class_balanced_weights(int n, int k, const int *labels, double *w);

typedef struct {
    int d, k;
    float *w; /* k x (d + 1), last column the bias; owned, free with dl_logreg_free */
} dl_logreg;

typedef struct {
    double l2;          /* L2 penalty on weights (not bias); default 1e-3 */
    int max_iter;       /* L-BFGS iterations; default 300 */
    int class_balanced; /* 1: weights n/(k n_c) per sample */
} dl_logreg_options;

/* x: n x d (standardised), labels in [0,k). Deterministic (no randomness). */
int dl_logreg_fit(dl_logreg *m, int n, int d, int k, const float *x, const int *labels,
                  const dl_logreg_options *opts, dl_error *err);
/* probs: n x k (caller's). */
void dl_logreg_predict(const dl_logreg *m, int n, const float *x, float *probs);
void dl_logreg_free(dl_logreg *m);

typedef struct {
    int feature;     /* -1 for a leaf */
    float threshold; /* go left when x[feature] <= threshold */
    int left, right; /* child node indices; leaf: left = offset into leaf probs */
} dl_rf_node;

typedef struct {
    int n_nodes;
    dl_rf_node *nodes;
    float *leaf_probs; /* k per leaf */
    int n_leaves;
} dl_rf_tree;

typedef struct {
    int d, k, n_trees;
    dl_rf_tree *trees; /* owned, free with dl_forest_free */
} dl_forest;

typedef struct {
    int n_trees;         /* default 200 */
    int max_depth;       /* default 16 */
    int min_leaf;        /* minimum samples per leaf, default 1 */
    int mtry;            /* features per split; <= 0: round(sqrt(d)) */
    int class_balanced;  /* 0: none; 1: weighted Gini and leaves with n/(k n_c);
                          * 2: class-balanced bootstrap (each draw picks a class
                          *    uniformly, then a sample of it) */
    int threads;         /* <= 0: dl_get_num_threads() */
    uint64_t seed;
} dl_forest_options;

/* Deterministic in seed (dl_rng streams), independent of the thread count. */
int dl_forest_fit(dl_forest *f, int n, int d, int k, const float *x, const int *labels,
                  const dl_forest_options *opts, dl_error *err);
void dl_forest_predict(const dl_forest *f, int n, const float *x, float *probs);
void dl_forest_free(dl_forest *f);

/* ------------------------------------------------------------------ saliency faithfulness */

/* The study behind `dermlens explain --evaluate` (docs/reports/
 * explain-faithfulness.md). For each image, at the network input size (the
 * model's crop, then squash), with the model's top class:
 *  - rows: each method's map, then two baselines, a random 7x7 map upsampled
 *    bilinearly and a centre Gaussian (sigma 0.25 x side);
 *  - per row and removal (ROAD noisy linear imputation, or a Gaussian blur
 *    of sigma 5% of the side), the probability curve as the most salient
 *    pixels are removed (MoRF) and the second curve (ROAD: least relevant
 *    first; blur: insertion), in `steps` steps, and their trapezoid AUCs;
 *  - the cascading model-randomisation check (Adebayo et al. 2018): Spearman
 *    and SSIM between each method's map and its map under the model with its
 *    top 1, 2, 3, 5, 8, 12 weighted layers re-initialised;
 *  - optionally the sweep of Grad-CAM variants (ROAD MoRF AUC only).
 * Images run in parallel, one model set per worker; every value is
 * deterministic (seeded per image) whatever the thread count. */

#define DL_FAITH_MAX_STEPS 50
#define DL_FAITH_MAX_METHODS (DL_SALIENCY_OCCLUSION + 1)
#define DL_FAITH_N_BASELINES 2 /* rows n_methods (random) and n_methods + 1 (centre) */
#define DL_FAITH_MAX_ROWS (DL_FAITH_MAX_METHODS + DL_FAITH_N_BASELINES)
#define DL_FAITH_MAX_DEPTHS 6
#define DL_FAITH_MAX_VARIANTS 12
/* ROAD's imputation noise: 1% of the 0..255 range (standard deviation). */
#define DL_FAITH_ROAD_NOISE 2.55f
/* A study method ("spec") is a dl_saliency_method, or'ed with this flag for
 * the single-pass form of a Grad-CAM-family method. */
#define DL_FAITH_ONE_PASS 0x100

enum { DL_FAITH_ROAD = 0, DL_FAITH_BLUR = 1, DL_FAITH_N_REMOVALS = 2 };
/* Curves: MoRF deletion, and the second (ROAD: least-relevant-first
 * deletion; blur: insertion). */
enum { DL_FAITH_MORF = 0, DL_FAITH_SECOND = 1 };

/* "gradcam", "layercam:1pass", ... -> spec; -1 if unknown or the method has
 * no single-pass form. */
int dl_faith_method_parse(const char *s);
/* The spec's name ("gradcam:1pass") and title ("Grad-CAM, one pass") from
 * the method table (dl_explain_method_name / _label), written to buf
 * (64 bytes suffice); returns buf, "?" for an invalid spec. */
const char *dl_faith_method_key(int spec, char *buf, size_t len);
const char *dl_faith_method_title(int spec, char *buf, size_t len);

/* Randomisation cascade depth d (0 <= d < DL_FAITH_MAX_DEPTHS): how many
 * weighted layers, from the output side, are re-initialised. */
int dl_faith_depth_layers(int d);
/* The sweep's Grad-CAM variants (row 0 is the single-pass reference every
 * other row is paired against): count and static labels. */
int dl_faith_variant_count(void);
const char *dl_faith_variant_label(int v);
/* The row of the 8-flip mean with every member running all 8 flips
 * (dl_explain_rgb8's default on one model; an ensemble's shares them out). */
int dl_faith_variant_default(void);

/* The cascade the model allows: depths d with dl_faith_depth_layers(d) <=
 * max_layers and no more than the model's weighted layers, and for each the
 * names of the layers it adds to the previous depth ("+a, b"). */
typedef struct {
    int n_depths;
    char added[DL_FAITH_MAX_DEPTHS][1024];
} dl_faith_cascade;
int dl_faith_cascade_plan(const void *model_bytes, size_t model_size, int max_layers, dl_faith_cascade *out,
                          dl_error *err);

/* The images of ds to study: a class-balanced round robin (every class in
 * turn, each in dataset order; all of a class when it has fewer), up to
 * limit (<= 0: all). *pick (malloc'd, caller frees) gets *n_pick dataset
 * rows. */
int dl_faith_pick(const dl_dataset *ds, int limit, int **pick, int *n_pick, dl_error *err);

typedef struct {
    const int *methods;    /* specs, distinct, at most DL_FAITH_MAX_METHODS */
    int n_methods;
    int steps;             /* removal steps, 2..DL_FAITH_MAX_STEPS */
    int n_depths;          /* cascade depths to check (<= dl_faith_cascade.n_depths), 0: none */
    int sweep;             /* 1: also the Grad-CAM variant sweep */
    int sweep_only;        /* 1: only the sweep (no method rows, no cascade) */
    unsigned variant_mask; /* sweep rows to run, bit v = row v (row 0 always) */
    int threads;           /* workers, <= 0: dl_get_num_threads(); at most 16 */
    /* Called after each image from the worker that did it, one call at a
     * time, with the fraction of images done; nonzero stops nothing (the
     * study always completes). */
    dl_progress_fn progress;
    void *progress_user;
    /* Optional: applied in place to every method's map (and to the cascade's
     * maps) before it is measured, e.g. the smoothing the overlays show;
     * the baselines are not filtered. Called from several workers at once:
     * must be thread-safe. Nonzero (with err set) fails the image. */
    int (*map_filter)(void *user, const dl_model *m, float *map, int w, int h, dl_error *err);
    void *map_filter_user;
} dl_faith_options;

/* Everything measured on one image. Rows: the methods, then random, centre. */
typedef struct {
    int ok;                /* 0: failed, see error */
    int cls;               /* the class explained: the model's top class */
    float p0;              /* p(cls) of the unmodified image */
    float curve[DL_FAITH_MAX_ROWS][DL_FAITH_N_REMOVALS][2][DL_FAITH_MAX_STEPS + 1];
    double auc[DL_FAITH_MAX_ROWS][DL_FAITH_N_REMOVALS][2];
    double map_cpu[DL_FAITH_MAX_ROWS];   /* thread CPU seconds to compute the map */
    double spearman[DL_FAITH_MAX_METHODS][DL_FAITH_MAX_DEPTHS]; /* NAN when a map is flat */
    double ssim[DL_FAITH_MAX_METHODS][DL_FAITH_MAX_DEPTHS];
    double rho_centre;     /* Spearman(first method's map, centre map) */
    double sweep[DL_FAITH_MAX_VARIANTS]; /* ROAD MoRF AUC per variant, NAN if not run */
    double sweep_centre;   /* the same for the centre map */
    char *error;           /* "path: message" when !ok (malloc'd, freed by dl_faith_result_free) */
} dl_faith_image;

typedef struct {
    int n;                 /* images, in pick order */
    dl_faith_image *img;   /* [n] */
    int n_ok, n_fail;
    double wall_seconds, cpu_seconds; /* cpu: process CPU time, all threads */
    int n_workers;
    char **worker_errors;  /* [n_workers]: why worker t could not start, or NULL */
} dl_faith_result;

/* Run the study on ds->paths[pick[i]] with the model in model_bytes (each
 * worker loads its own copies). Images that fail are marked (!ok), not an
 * error; -1 only when no worker could start (or out of memory). Sets the
 * process-wide thread count to 1 while it runs (each worker's forwards run
 * single-threaded) and restores it. *out owned by the caller: free with
 * dl_faith_result_free (also after a failure). */
int dl_faith_run(const void *model_bytes, size_t model_size, const dl_dataset *ds, const int *pick, int n_pick,
                 const dl_faith_options *opts, dl_faith_result *out, dl_error *err);
void dl_faith_result_free(dl_faith_result *r);

#ifdef __cplusplus
}
#endif
#endif
