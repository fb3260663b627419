/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Text that came from outside (file names, class names from a model, error
 * messages quoting them) made safe to print and to store: valid UTF-8 with
 * control characters escaped, and CSV cells that a spreadsheet will not run
 * as formulas (OWASP "CSV injection" rule). */
#include "base/base.h"
#include "dermlens_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (1..4) and its code point, or 0 if
 * the bytes there are not valid UTF-8 (overlong, surrogate, > U+10FFFF,
 * truncated). */
static int utf8_seq(const unsigned char *p, unsigned *cp)
{
    unsigned c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n;
    unsigned v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0; /* also stops at the terminating NUL */
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* Characters that move the cursor, change the terminal or reorder text. */
static int unsafe_cp(unsigned cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
           cp == 0x2029;
}

char *dl_text_sanitize(const char *s)
{
    if (!s)
        s = "";
    size_t len = strlen(s);
    /* worst case: every byte becomes \xNN */
    if (len > (SIZE_MAX - 1) / 4)
        return NULL;
    char *out = malloc(4 * len + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p) {
        unsigned cp = 0;
        int n = utf8_seq(p, &cp);
        if (n > 0 && !unsafe_cp(cp)) {
            memcpy(out + o, p, (size_t)n);
            o += (size_t)n;
            p += n;
            continue;
        }
        /* escape the bytes: the invalid one alone, or the whole unsafe sequence */
        int k = n > 0 ? n : 1;
        for (int i = 0; i < k; i++) {
            snprintf(out + o, 5, "\\x%02x", p[i]);
            o += 4;
        }
        p += k;
    }
    out[o] = 0;
    return out;
}

char *dl_csv_cell(const char *s)
{
    char *t = dl_text_sanitize(s);
    if (!t)
        return NULL;
    int neutral = t[0] && strchr("=+-@\t\r", t[0]) != NULL;
    int quote = neutral || strpbrk(t, ",\"\r\n") != NULL;
    if (!quote)
        return t;
    size_t len = strlen(t), q = 0;
    for (size_t i = 0; i < len; i++)
        q += t[i] == '"';
    char *out = malloc(len + q + 4);
    if (!out) {
        free(t);
        return NULL;
    }
    size_t o = 0;
    out[o++] = '"';
    if (neutral)
        out[o++] = '\''; /* OWASP: a leading quote makes the cell text */
    for (size_t i = 0; i < len; i++) {
        if (t[i] == '"')
            out[o++] = '"';
        out[o++] = t[i];
    }
    out[o++] = '"';
    out[o] = 0;
    free(t);
    return out;
}
