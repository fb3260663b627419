/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "testutil.h"

#include <stdlib.h>
#include <sys/stat.h>

int tu_failures = 0;

static const char *join(const char *env, const char *fallback, const char *rel)
{
    static char buf[8][4096];
    static int slot = 0;
    const char *base = getenv(env);
    if (!base || !*base) base = fallback;
    char *b = buf[slot++ & 7];
    snprintf(b, 4096, "%s/%s", base, rel);
    return b;
}

const char *tu_shared(const char *rel)
{
    const char *p = join("DL_SHARED_DIR", "../shared", rel);
    struct stat st;
    return stat(p, &st) == 0 ? p : NULL;
}

const char *tu_source(const char *rel)
{
    return join("DL_SOURCE_ROOT", "..", rel);
}

float tu_rand(unsigned *s, float lo, float hi)
{
    *s = *s * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)((*s >> 8) & 0xffffff) / 16777216.f;
}

int tu_exit(void)
{
    if (tu_failures) fprintf(stderr, "%d check(s) failed\n", tu_failures);
    else printf("all checks passed\n");
    return tu_failures ? 1 : 0;
}
