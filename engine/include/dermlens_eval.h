/* DermLens engine: evaluation API (metrics and statistics, the classic
 * baselines).
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Same conventions as dermlens.h: 0 / -1 with a dl_error (where a function
 * can fail), ownership stated on every output, no printing, no exit. What
 * `dermlens evaluate`, `robustness` and `compare` compute lives here; the
 * commands parse options and print.
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

#ifdef __cplusplus
}
#endif
#endif
