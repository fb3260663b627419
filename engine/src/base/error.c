/* SPDX-License-Identifier: GPL-3.0-or-later */
/* One place where errors become messages (libvips style). */
#include "base/base.h"

#include <stdio.h>
#include <string.h>

const char *dl_status_name(dl_status code)
{
    switch (code) {
    case DL_OK: return "ok";
    case DL_ERR_IO: return "I/O error";
    case DL_ERR_FORMAT: return "format error";
    case DL_ERR_NOMEM: return "out of memory";
    case DL_ERR_ARG: return "invalid argument";
    case DL_ERR_UNSUPPORTED: return "unsupported";
    case DL_ERR_LIMIT: return "resource limit exceeded";
    case DL_ERR_CANCELLED: return "cancelled";
    case DL_ERR_DATA: return "data error";
    }
    return "unknown error";
}

int dl_fail(dl_error *err, dl_status code, const char *fmt, ...)
{
    if (!err) return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

int dl_fail_prefix(dl_error *err, const char *fmt, ...)
{
    if (!err) return -1;
    char prefix[200], old[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t len = strnlen(err->message, sizeof old - 1); /* keep the tail short enough to fit */
    memcpy(old, err->message, len);
    old[len] = 0;
    snprintf(err->message, sizeof err->message, "%s: %s", prefix, old);
    return -1;
}

bool dl_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

bool dl_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
