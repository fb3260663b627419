/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers shared by the host core's own files; not part of its API. */
#ifndef DH_INTERNAL_H
#define DH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dermlens.h"

/* Fill err (may be NULL) with code and a printf-style message. */
void dh_set_err(dl_error *err, dl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* [0,1] -> 0..255, rounded; NaN and negatives give 0. */
uint8_t dh_to_u8(float v);

/* Growable text (str.c); zero-initialise. oom is set once an append
 * failed; data is NUL-terminated (NULL while empty). */
typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} dh_str;
void dh_str_put(dh_str *b, const char *s, size_t n);
void dh_str_puts(dh_str *b, const char *s);
void dh_str_printf(dh_str *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One CSV cell: valid UTF-8, control characters escaped, formula
 * characters neutralised (dl_csv_cell); NULL is the empty cell. */
void dh_str_csv(dh_str *b, const char *s);
void dh_str_free(dh_str *b);

#endif
