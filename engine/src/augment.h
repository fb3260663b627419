/* SPDX-License-Identifier: GPL-3.0-or-later */
#ifndef DL_AUGMENT_H
#define DL_AUGMENT_H
#include <stdbool.h>
#include <stdint.h>

/* SplitMix-based deterministic randomness. */
double dl_rand_uniform(uint64_t *state);
uint64_t dl_seed_mix(uint64_t a, uint64_t b);
/* Random affine + flips + turns + colour jitter of a w x h RGB8 image
 * (src and dst distinct, tightly packed). Same seed, same output. */
void dl_augment_rgb8(const uint8_t *src, uint8_t *dst, int w, int h, uint64_t seed);
#endif
