/* SPDX-License-Identifier: GPL-3.0-or-later */
/* A growable text buffer for the host core's CSV and HTML writers (what
 * GString is to the GLib front ends). Out of memory is sticky: later
 * appends do nothing and the writer reports it once at the end. */
#include "internal.h"
#include "dermlens_io.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dh_str_put(dh_str *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->len + n + 1) {
            if (ncap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            ncap *= 2;
        }
        char *nd = realloc(b->data, ncap);
        if (!nd) {
            b->oom = 1;
            return;
        }
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void dh_str_puts(dh_str *b, const char *s)
{
    dh_str_put(b, s, strlen(s));
}

void dh_str_printf(dh_str *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        dh_str_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    dh_str_put(b, big, (size_t)n);
    free(big);
}

void dh_str_csv(dh_str *b, const char *s)
{
    char *c = dl_csv_cell(s ? s : "");
    if (!c) {
        b->oom = 1;
        return;
    }
    dh_str_puts(b, c);
    free(c);
}

void dh_str_free(dh_str *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}
