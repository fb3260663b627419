/* SPDX-License-Identifier: GPL-3.0-or-later */
#ifndef DL_AUGMENT_H
#define DL_AUGMENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Training's random stream: the SplitMix64 hash (dl_rng_hash) chained on
 * its own output. dl_seed_mix derives the seed of one image/view/epoch. */
double dl_rand_uniform(uint64_t *state);
uint64_t dl_seed_mix(uint64_t a, uint64_t b);
/* Random affine + flips + turns + colour jitter of a w x h RGB8 image
 * (src and dst distinct, tightly packed). Same seed, same output. */
void dl_augment_rgb8(const uint8_t *src, uint8_t *dst, int w, int h, uint64_t seed);
/* Beta(a, b) sample (mixup's mixing weight). */
double dl_rand_beta(uint64_t *state, double a, double b);

/* Scale-and-framing augmentation for full fine-tuning. */
typedef struct {
    double scale_min, scale_max; /* crop area relative to the base view (log-uniform); > 1 zooms out */
    double aspect;               /* aspect jitter: ratio in [1/aspect, aspect], log-uniform */
    double rotate_deg;           /* uniform rotation in [-rotate_deg, rotate_deg] */
    double colour;               /* colour jitter strength (0 = none, 1 = default) */
} dl_view_params;
void dl_view_params_defaults(dl_view_params *p);

/* The model's recorded framing (dl_preprocess.resize). */
enum { DL_FRAME_SQUASH = 0, DL_FRAME_CENTER_CROP = 1, DL_FRAME_PAD = 2 };

/* Render a W x H view of an RGB8 source of any size: the base view is the
 * whole image (squash), its centre square (center_crop) or the letterbox
 * around it (pad: black outside the image), as the model's preprocessing
 * shows it; on top a random-resized crop (zoom in and out, reflect fill;
 * black outside the image for pad), flips, rotation and colour jitter.
 * Deterministic in seed. */
void dl_augment_view(const uint8_t *src, int sw, int sh, size_t stride, int framing, uint8_t *dst, int W,
                     int H, const dl_view_params *p, uint64_t seed);
#endif
