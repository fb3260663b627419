/* DermLens engine, evaluation layer: metrics and statistics, the classic
 * baselines and the saliency faithfulness study (public half in
 * dermlens_eval.h). Depends on base/, runtime/, formats/ and infer/.
 * SPDX-License-Identifier: GPL-3.0-or-later
 * Internal (not installed): only engine/src/ and the test-only header
 * include it, see docs/ARCHITECTURE.md.
 */
#ifndef DL_EVAL_H
#define DL_EVAL_H

#include "base/base.h"
#include "dermlens_eval.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- classic: building blocks */

/* The steps of dl_feat_extract on their own, for the tests. Each works on a
 * w x h 8-bit grey image (contiguous rows). */
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

#endif
