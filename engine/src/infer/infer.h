/* DermLens engine, inference layer: the model's preprocessing, classification
 * (calibrated softmax, top-k, OOD, TTA, ensembles) and saliency. Depends on
 * base/, runtime/ and formats/.
 * SPDX-License-Identifier: GPL-3.0-or-later
 * Internal (not installed): only engine/src/ includes it, see docs/ARCHITECTURE.md.
 */
#ifndef DL_INFER_H
#define DL_INFER_H

#include "base/base.h"
#include "formats/formats.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Preprocess an RGB8 region into the network input (H x W x 3 floats). */
int dl_preprocess_rgb8(const dl_preprocess *p, const uint8_t *rgb, int width, int height,
                       size_t stride, float *out, dl_error *err);
/* resize "pad": a w x h image keeps its aspect, scaled to fit the W x H
 * input, centred; the rest is black (pixel 0, torchvision's Pad default).
 * The image's rectangle in the input: (*x, *y) size *rw x *rh (>= 1). */
void dl_preprocess_letterbox(int w, int h, int W, int H, int *x, int *y, int *rw, int *rh);

/* The model's batch-1 executor, created on first use (classify.c). */
int dl_model_ensure_exec(dl_model *m, dl_error *err);
/* Fill a dl_result from calibrated probabilities, logits and features
 * (top_k best classes, OOD score), classify.c. */
int dl_result_fill(dl_model *m, dl_result *out, const float *probs, const float *logits,
                   const float *features, int top_k, dl_error *err);
/* Mahalanobis OOD score of pooled features under m's detector (NAN if none). */
float dl_model_ood_score_of(const dl_model *m, const float *features);
/* Softmax of logits / t (classify.c). */
void dl_softmax_temperature(const float *logits, int n, float t, float *probs);

/* Saliency study helpers (explain.c). Noisy linear imputation (ROAD, Rong et al. 2022): every removed pixel
 * becomes the weighted mean of its 8 neighbours (1/6 edge, 1/12 diagonal),
 * known pixels fixed, i.e. a discrete harmonic fill, plus Gaussian noise so
 * the fill carries no exact trace of the mask's shape. The linear system is
 * solved coarse to fine: a pyramid of known-pixel means seeds each level and
 * Gauss-Seidel sweeps relax it, which converges on large holes in a few
 * sweeps per level where plain relaxation would need thousands.
 * rgb: packed w x h RGB8 (stride 3w), changed in place at removed[i] != 0
 * only; noise_sd in grey levels (the noise drawn with dl_rng from seed:
 * deterministic). Used by the faithfulness study (eval/faithfulness.c) and
 * the tests. */
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
#define DL_EXPLAIN_SPREAD 16u    /* with DL_EXPLAIN_DIHEDRAL on an ensemble: the transforms shared
                                    out among the members (member k takes those t with
                                    t % n == k % n, n = min(members, transforms)), so each is
                                    run once by one member instead of once by every member */
/* Internal: bits 24..31 of flags restrict DL_EXPLAIN_DIHEDRAL to the
 * transforms set in them (0: all); explain_members sets them per member. */
#define DL_EXPLAIN_TMASK_SHIFT 24
int dl_explain_rgb8_variant(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                            const dl_explain_options *opts, unsigned flags, float **map_out, dl_result *result,
                            dl_error *err);

#endif
