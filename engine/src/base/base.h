/* DermLens engine, base layer: errors, overflow-safe sizes, files (atomic
 * writes), SHA-256, the RNG (rng.c). Depends on nothing in the engine but
 * the public headers.
 * SPDX-License-Identifier: GPL-3.0-or-later
 * Internal (not installed): only engine/src/ includes it, see docs/ARCHITECTURE.md.
 */
#ifndef DL_BASE_H
#define DL_BASE_H

#include "dermlens.h"
#include "dermlens_io.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */

/* Fill err (if non-NULL) with code and printf-style message. Returns -1 so
 * callers can write `return dl_fail(err, DL_ERR_FORMAT, "...")`. */
int dl_fail(dl_error *err, dl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "context: old message". */
int dl_fail_prefix(dl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Overflow-safe arithmetic: return false on overflow. */
bool dl_mul_size(size_t a, size_t b, size_t *out);
bool dl_add_size(size_t a, size_t b, size_t *out);

/* ---------------------------------------------------------------- random */

/* The top 53 bits of x as a double in [0, 1) (dl_rng_uniform's conversion,
 * for streams that chain dl_rng_hash themselves). */
static inline double dl_rng_unit(uint64_t x)
{
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------------------------------------- files */

/* dl_read_file, dl_write_file_atomic and the output checks: dermlens_io.h. */
/* Streamed atomic write: open a temp file, write parts, then commit or abort. */
typedef struct {
    void *fp;          /* FILE* */
    char *final_path;
    char *tmp_path;
} dl_atomic_file;
int dl_atomic_open(dl_atomic_file *f, const char *path, dl_error *err);
int dl_atomic_write(dl_atomic_file *f, const void *data, size_t size, dl_error *err);
int dl_atomic_commit(dl_atomic_file *f, dl_error *err); /* fsync + rename; frees f */
void dl_atomic_abort(dl_atomic_file *f);                /* unlink temp; frees f */

void dl_sha256(const void *data, size_t size, uint8_t out[32]);
void dl_sha256_hex(const void *data, size_t size, char out[65]);
/* Streaming SHA-256 (same digest as dl_sha256 over the concatenation). */
typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t fill;
    uint64_t total;
} dl_sha256_ctx;
void dl_sha256_init(dl_sha256_ctx *c);
void dl_sha256_update(dl_sha256_ctx *c, const void *data, size_t size);
void dl_sha256_final(dl_sha256_ctx *c, uint8_t out[32]);
void dl_sha256_to_hex(const uint8_t d[32], char out[65]);
/* Tests: 1 makes every digest use the portable rounds even where the CPU
 * has the SHA extensions (the same digests, checked by tests/test_sha256.c);
 * 0 restores the default. Process-wide. */
void dl_sha256_force_portable(int on);

/* The one memory budget for models, decoded images, resampling and saliency
 * maps: DERMLENS_MAX_MEMORY_MB (MiB) or DL_MAX_MODEL_MEMORY_MB. */
int dl_memory_limit(size_t *limit, dl_error *err);
/* 0 if bytes fit the budget, else -1 (DL_ERR_LIMIT naming what and both sizes). */
int dl_memory_check(size_t bytes, const char *what, dl_error *err);
/* IEEE binary16 (half) <-> float, on bit patterns (base/half.c).
 * dl_half_to_float is exact for every pattern (subnormals, +-0; Inf and NaN
 * map to Inf and NaN). dl_float_to_half rounds to nearest, ties to even;
 * -1 (out untouched) if f is Inf or NaN or would round beyond +-65504. */
float dl_half_to_float(uint16_t h);
/* n little-endian halves (2n bytes) to floats, as dl_half_to_float does each
 * (F16C where the CPU has it: the same values; a NaN may come out quiet). */
void dl_half_to_float_n(const uint8_t *src, float *dst, size_t n);
/* Tests: the portable loop only (on != 0) or the CPU's best again. */
void dl_half_force_portable(int on);
int dl_float_to_half(float f, uint16_t *out);
#endif
