/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tiny test helpers: checks that count failures, env paths, skipping.
 * Public API only: a test that reaches into the engine includes
 * dermlens_test.h itself. */
#ifndef DL_TESTUTIL_H
#define DL_TESTUTIL_H
#include "dermlens.h"

#include <stdint.h>
#include <stdio.h>

extern int tu_failures;
#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            tu_failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)
#define TU_SKIP 77

/* $DL_SHARED_DIR/<rel>, or NULL (test should skip) if the folder is absent. */
const char *tu_shared(const char *rel);
/* $DL_SOURCE_ROOT/<rel> (falls back to ".."). */
const char *tu_source(const char *rel);
/* Deterministic uniform floats in [lo, hi), from the engine's RNG
 * (dl_rng_next: 24 random bits). */
float tu_rand(uint64_t *state, float lo, float hi);
int tu_exit(void);
/* Save a valid tiny model: side x side x 3 input -> 1x1 conv (units,
 * activation act ("relu", "relu6", ...), padding pad ("same" or "valid"))
 * -> GAP -> dense 2, classes "a"/"b". w (units*3), b (units, NULL = no bias)
 * and d (2*units): NULL weights are zeros. 0 or -1 (message on stderr). */
int tu_save_tiny_model(const char *path, int side, int units, const float *w, const float *b, const float *d,
                       const char *act, const char *pad, const char *name);
#endif
