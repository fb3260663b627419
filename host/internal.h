/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers shared by the host core's own files; not part of its API. */
#ifndef DH_INTERNAL_H
#define DH_INTERNAL_H

#include <stdint.h>

#include "dermlens.h"

/* Fill err (may be NULL) with code and a printf-style message. */
void dh_set_err(dl_error *err, dl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* [0,1] -> 0..255, rounded; NaN and negatives give 0. */
uint8_t dh_to_u8(float v);

#endif
