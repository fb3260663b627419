/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Traditional (non-deep) lesion classifiers: hand-crafted colour, texture and
 * shape features, standardisation, class-balanced multinomial logistic
 * regression (L-BFGS) and a random forest (CART, Gini). Baselines for
 * `dermlens compare`. No GLib; threads via pthreads.
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
#ifndef DL_CLASSIC_H
#define DL_CLASSIC_H

#include "dermlens.h"

#include <stdint.h>

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
 * out: DL_FEAT_DIM floats. */
int dl_feat_extract(const uint8_t *rgb, int width, int height, size_t stride, float *out, dl_error *err);

/* Building blocks, exposed for tests. Each works on a w x h 8-bit grey image
 * (contiguous rows). */
/* Otsu threshold t: pixels <= t form the dark class. Flat images give the
 * single level present. */
int dl_otsu_threshold(const uint8_t *grey, size_t n);
/* mask[w*h] = 1 for the lesion (largest central dark component, holes filled).
 * Returns lesion pixel count, or -1 on allocation failure. */
long dl_lesion_segment(const uint8_t *grey, int w, int h, uint8_t *mask, dl_error *err);
/* Shape features (first 7 shape slots: area fraction, compactness, asym major,
 * asym minor, eccentricity, irregularity, centre offset) of a binary mask. */
void dl_mask_shape_features(const uint8_t *mask, int w, int h, float out[7]);
/* Uniform LBP histogram (fractions over interior pixels). */
void dl_lbp_hist(const uint8_t *grey, int w, int h, float out[DL_FEAT_LBP_BINS]);
/* GLCM stats, layout as in the texture group: out[16]. */
void dl_glcm_features(const uint8_t *grey, int w, int h, float out[16]);

/* ---------------------------------------------------------------- scaling */

typedef struct {
    int d;
    float *mean, *std; /* [d]; std of a constant column is stored as 1 */
} dl_standardizer;

int dl_standardizer_fit(dl_standardizer *s, int n, int d, const float *x, dl_error *err);
/* In place on n x d rows; non-finite values become 0 (the mean). */
void dl_standardizer_apply(const dl_standardizer *s, int n, float *x);
void dl_standardizer_free(dl_standardizer *s);

/* Class-balanced weights n / (k * n_c) (0 for absent classes). w[k]. */
void dl_class_balanced_weights(int n, int k, const int *labels, double *w);

/* ---------------------------------------------------------------- logistic regression */

typedef struct {
    int d, k;
    float *w; /* k x (d + 1), last column the bias */
} dl_logreg;

typedef struct {
    double l2;          /* L2 penalty on weights (not bias); default 1e-3 */
    int max_iter;       /* L-BFGS iterations; default 300 */
    int class_balanced; /* 1: weights n/(k n_c) per sample */
} dl_logreg_options;

/* x: n x d (standardised), labels in [0,k). Deterministic (no randomness). */
int dl_logreg_fit(dl_logreg *m, int n, int d, int k, const float *x, const int *labels,
                  const dl_logreg_options *opts, dl_error *err);
/* probs: n x k. */
void dl_logreg_predict(const dl_logreg *m, int n, const float *x, float *probs);
void dl_logreg_free(dl_logreg *m);

/* ---------------------------------------------------------------- random forest */

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
    dl_rf_tree *trees;
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

/* Deterministic in seed, independent of the thread count. */
int dl_forest_fit(dl_forest *f, int n, int d, int k, const float *x, const int *labels,
                  const dl_forest_options *opts, dl_error *err);
void dl_forest_predict(const dl_forest *f, int n, const float *x, float *probs);
void dl_forest_free(dl_forest *f);

#endif
