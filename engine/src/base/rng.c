/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The engine's one random generator: SplitMix64. Its streams are part of
 * the outputs (bootstrap intervals, forests, augmentation), so the
 * constants and the uniform/normal conversions must not change. */
#include "base/base.h"

#include <math.h>

#define GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

uint64_t dl_rng_hash(uint64_t x)
{
    uint64_t z = x + GOLDEN_GAMMA;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t dl_rng_next(uint64_t *state)
{
    uint64_t x = *state;
    *state = x + GOLDEN_GAMMA;
    return dl_rng_hash(x);
}

double dl_rng_uniform(uint64_t *state)
{
    return dl_rng_unit(dl_rng_next(state));
}

uint32_t dl_rng_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(((dl_rng_next(state) >> 32) * (uint64_t)n) >> 32);
}

double dl_rng_normal(uint64_t *state)
{
    double u = dl_rng_uniform(state), v = dl_rng_uniform(state);
    if (u < 1e-300) u = 1e-300; /* log(0) */
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}
