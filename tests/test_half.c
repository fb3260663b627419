/* SPDX-License-Identifier: GPL-3.0-or-later */
/* IEEE binary16 conversion (base/half.c), checked against references that
 * share no code with it: half -> float on all 65,536 patterns against
 * ldexp; float -> half round trips, every tie between neighbouring halves
 * (to even) and its two float neighbours, the range limits, and a sweep of
 * float patterns against a rint()-based reference and, where the compiler
 * has _Float16, against its conversion. */
#include "dermlens_test.h"
#include "testutil.h"

#include <fenv.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The value of a half pattern from its definition, in double. */
static double ref_half(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp(1024.0 + m, e - 25);
    return s ? -v : v;
}

/* float -> half by scaling to integer units of the target ulp and rint()
 * (the FPU's ties-to-even); -1 beyond the range. */
static int ref_to_half(float f, uint16_t *out)
{
    double x = fabs((double)f);
    if (!isfinite(x)) return -1;
    int e;
    frexp(x, &e); /* x = f * 2^e, f in [0.5, 1): x in [2^(e-1), 2^e) */
    int ulp_exp = (e - 1) - 10;
    if (ulp_exp < -24) ulp_exp = -24; /* subnormal halves: fixed ulp 2^-24 */
    double q = rint(ldexp(x, -ulp_exp)); /* exact: x has 24 bits, the scale is a power of two */
    double r = ldexp(q, ulp_exp);
    if (r > 65504.0) return -1;
    /* find the pattern by its value: binary search over the ordered positive halves */
    uint16_t lo = 0, hi = 0x7bff;
    while (lo < hi) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (ref_half(mid) < r) lo = (uint16_t)(mid + 1);
        else hi = mid;
    }
    if (ref_half(lo) != r) return -2;
    *out = (uint16_t)(lo | (signbit(f) ? 0x8000 : 0));
    return 0;
}

int main(void)
{
    CHECK(fegetround() == FE_TONEAREST, "rounding mode");
    /* 1. every half pattern -> float, bit-exact against the definition */
    int bad = 0, n_sub = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dl_half_to_float((uint16_t)h);
        double r = ref_half((uint16_t)h);
        int e = (h >> 10) & 31;
        bool ok;
        if (isnan(r)) ok = isnan(f) && (bits(f) & 0x7fffffu) == ((h & 1023u) << 13) && (bits(f) >> 31) == (h >> 15);
        else ok = bits(f) == bits((float)r); /* (float)r is exact, sign of zero included */
        n_sub += e == 0 && (h & 1023) != 0;
        if (!ok && bad++ < 10) fprintf(stderr, "half 0x%04x -> %a, expected %a\n", h, f, r);
    }
    CHECK(bad == 0, "%d of 65536 half patterns decode wrongly", bad);
    CHECK(n_sub == 2 * 1023, "subnormal count %d", n_sub);
    CHECK(bits(dl_half_to_float(0x8000)) == 0x80000000u, "-0 lost its sign");
    CHECK(dl_half_to_float(0x0001) == ldexpf(1.f, -24), "smallest subnormal");
    CHECK(dl_half_to_float(0x03ff) == ldexpf(1023.f, -24), "largest subnormal");
    CHECK(dl_half_to_float(0x0400) == ldexpf(1.f, -14), "smallest normal");
    CHECK(dl_half_to_float(0x7bff) == 65504.f && dl_half_to_float(0xfbff) == -65504.f, "largest finite");
    CHECK(isinf(dl_half_to_float(0x7c00)) && dl_half_to_float(0xfc00) < 0 && isnan(dl_half_to_float(0x7e00)), "Inf/NaN");

    /* 2. every finite half survives float and back, +-0 included */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 31) == 31) continue;
        uint16_t back = 0xdead;
        if ((dl_float_to_half(dl_half_to_float((uint16_t)h), &back) || back != h) && bad++ < 10)
            fprintf(stderr, "round trip 0x%04x -> 0x%04x\n", h, back);
    }
    CHECK(bad == 0, "%d finite halves do not round-trip", bad);

    /* 3. ties: the midpoint of two neighbouring halves goes to the even one,
     * one float ulp either side to the nearer one; both signs */
    bad = 0;
    int ties = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        for (int s = 0; s < 2; s++) {
            uint16_t sg = (uint16_t)(s ? 0x8000 : 0), a = (uint16_t)(h | sg), b = (uint16_t)((h + 1) | sg);
            double mid = (ref_half(a) + ref_half(b)) / 2; /* 12 significant bits: exact as a float */
            float fm = (float)mid;
            CHECK((double)fm == mid, "midpoint of 0x%04x not exact", a);
            uint16_t even = (h & 1) ? b : a, got = 0, below = 0, above = 0;
            float toward0 = nextafterf(fm, 0.f), away = nextafterf(fm, s ? -INFINITY : INFINITY);
            int rc = dl_float_to_half(fm, &got) | dl_float_to_half(toward0, &below) | dl_float_to_half(away, &above);
            if ((rc || got != even || below != a || above != b) && bad++ < 10)
                fprintf(stderr, "tie 0x%04x/0x%04x: mid -> 0x%04x (want 0x%04x), below -> 0x%04x, above -> 0x%04x\n", a, b,
                        got, even, below, above);
            ties++;
        }
    }
    CHECK(bad == 0, "%d of %d ties rounded wrongly", bad, ties);

    /* 4. the ends of the range */
    uint16_t o = 0x1234;
    CHECK(dl_float_to_half(65520.f, &o) == -1 && o == 0x1234, "65520 (the tie with 2^16) must be refused, out untouched");
    CHECK(dl_float_to_half(-65520.f, &o) == -1, "-65520 accepted");
    CHECK(dl_float_to_half(nextafterf(65520.f, 0.f), &o) == 0 && o == 0x7bff, "just below 65520 -> 65504 (0x%04x)", o);
    CHECK(dl_float_to_half(1e10f, &o) == -1 && dl_float_to_half(3.4e38f, &o) == -1, "huge accepted");
    CHECK(dl_float_to_half(INFINITY, &o) == -1 && dl_float_to_half(-INFINITY, &o) == -1 && dl_float_to_half(NAN, &o) == -1,
          "Inf/NaN accepted");
    CHECK(dl_float_to_half(ldexpf(1.f, -25), &o) == 0 && o == 0, "2^-25 (tie with 0) -> 0x%04x, want +0", o);
    CHECK(dl_float_to_half(nextafterf(ldexpf(1.f, -25), 1.f), &o) == 0 && o == 1, "just above 2^-25 -> 0x%04x", o);
    CHECK(dl_float_to_half(ldexpf(3.f, -25), &o) == 0 && o == 2, "3 * 2^-25 (tie 1|2) -> 0x%04x, want 2", o);
    CHECK(dl_float_to_half(ldexpf(1.f, -30), &o) == 0 && o == 0, "2^-30 -> 0x%04x", o);
    CHECK(dl_float_to_half(-1e-45f, &o) == 0 && o == 0x8000, "negative float subnormal -> 0x%04x, want -0", o);
    CHECK(dl_float_to_half(-0.f, &o) == 0 && o == 0x8000, "-0 -> 0x%04x", o);
    CHECK(dl_float_to_half(nextafterf(ldexpf(1.f, -14), 0.f), &o) == 0 && o == 0x0400,
          "just below the smallest normal rounds up into it (0x%04x)", o);
    CHECK(dl_float_to_half(1.f + ldexpf(1.f, -11), &o) == 0 && o == 0x3c00, "1 + 2^-11 (tie) -> 0x%04x, want 1.0", o);
    CHECK(dl_float_to_half(1.f + 3 * ldexpf(1.f, -11), &o) == 0 && o == 0x3c02, "1 + 3*2^-11 (tie) -> 0x%04x", o);
    CHECK(dl_float_to_half(4095.f * ldexpf(1.f, -12), &o) == 0 && o == 0x3c00, "1 - 2^-12 (tie, carry into the exponent) -> 0x%04x", o);

    /* 5. a sweep of float patterns (every 1021st, both signs) against the
     * rint() reference and, if available, the compiler's _Float16 */
    long n = 0, mism = 0, mism_c = 0;
    for (uint64_t u = 0; u < 0x80000000u; u += 1021) {
        for (int s = 0; s < 2; s++) {
            uint32_t ub = (uint32_t)u | (s ? 0x80000000u : 0);
            float f;
            memcpy(&f, &ub, 4);
            if (isnan(f)) continue;
            uint16_t got = 0, want = 0;
            int rg = dl_float_to_half(f, &got), rw = ref_to_half(f, &want);
            n++;
            if ((rg != (rw ? -1 : 0) || (!rg && got != want)) && mism++ < 10)
                fprintf(stderr, "float %a: 0x%04x (rc %d), reference 0x%04x (rc %d)\n", f, got, rg, want, rw);
#ifdef __FLT16_MAX__
            if (!rg) {
                _Float16 c = (_Float16)f;
                uint16_t cb;
                memcpy(&cb, &c, 2);
                if (cb != got && mism_c++ < 10) fprintf(stderr, "float %a: 0x%04x, _Float16 0x%04x\n", f, got, cb);
            }
#endif
        }
    }
    CHECK(mism == 0, "%ld of %ld swept floats differ from the reference", mism, n);
    CHECK(mism_c == 0, "%ld swept floats differ from the compiler's _Float16", mism_c);
#ifdef __FLT16_MAX__
    printf("compiler _Float16 cross-check: yes\n");
#else
    printf("compiler _Float16 cross-check: not available\n");
#endif
    /* 6. the bulk decoder (F16C where the CPU has it) against the scalar one:
     * every pattern as little-endian bytes, at an odd start and with an odd
     * tail; NaNs must stay NaNs with their sign (F16C quiets them) */
    static uint8_t le[2 * 65536 + 2];
    static float bulk[65536 + 1];
    for (uint32_t h = 0; h < 65536; h++) {
        le[2 + 2 * h] = (uint8_t)h;
        le[2 + 2 * h + 1] = (uint8_t)(h >> 8);
    }
    for (int portable = 0; portable < 2; portable++) {
        dl_half_force_portable(portable);
        for (int start = 0; start < 2; start++) {
            const size_t cnt = 65536 - start - 3; /* not a multiple of 8 */
            dl_half_to_float_n(le + 2 + 2 * start, bulk + 1, cnt);
            bad = 0;
            for (size_t i = 0; i < cnt; i++) {
                uint16_t h = (uint16_t)(i + start);
                float w = dl_half_to_float(h), g = bulk[1 + i];
                bool ok = isnan(w) ? isnan(g) && signbit(g) == signbit(w) : bits(g) == bits(w);
                if (!ok && bad++ < 10) fprintf(stderr, "bulk%s 0x%04x -> %a, scalar %a\n", portable ? " (portable)" : "", h, g, w);
            }
            CHECK(bad == 0, "bulk decoder%s: %d patterns differ from the scalar one", portable ? " (portable)" : "", bad);
        }
    }
    dl_half_force_portable(0);
    printf("half -> float: 65536 patterns; ties: %d; swept floats: %ld\n", ties, n);
    return tu_exit();
}
