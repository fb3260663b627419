/* SPDX-License-Identifier: GPL-3.0-or-later */
/* SHA-256: the FIPS 180-4 example digests, and the hardware (SHA-NI) rounds
 * against the portable ones on random data of every length around the
 * block and padding boundaries, whole and streamed in uneven pieces. */
#include "dermlens_test.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void digest(const uint8_t *d, size_t n, size_t piece, char hex[65])
{
    dl_sha256_ctx c;
    uint8_t out[32];
    dl_sha256_init(&c);
    for (size_t at = 0; at < n; at += piece) dl_sha256_update(&c, d + at, n - at < piece ? n - at : piece);
    dl_sha256_final(&c, out);
    dl_sha256_to_hex(out, hex);
}

int main(void)
{
    static const struct { const char *msg, *hex; } known[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    char hex[65], ref[65];
    for (int pass = 0; pass < 2; pass++) {
        dl_sha256_force_portable(pass);
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
            dl_sha256_hex(known[i].msg, strlen(known[i].msg), hex);
            CHECK(!strcmp(hex, known[i].hex), "%s rounds: sha256(\"%s\") = %s", pass ? "portable" : "default",
                  known[i].msg, hex);
        }
        /* one million 'a': many blocks through the same state */
        size_t n = 1000000;
        uint8_t *a = malloc(n);
        memset(a, 'a', n);
        dl_sha256_hex(a, n, hex);
        CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
              "%s rounds: sha256(10^6 x 'a') = %s", pass ? "portable" : "default", hex);
        free(a);
    }
    uint64_t rng = 7;
    uint8_t buf[1100];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)dl_rng_next(&rng);
    for (size_t n = 0; n <= sizeof buf; n += n < 200 ? 1 : 37) {
        dl_sha256_force_portable(1);
        digest(buf, n, n ? n : 1, ref);
        dl_sha256_force_portable(0);
        digest(buf, n, n ? n : 1, hex);
        CHECK(!strcmp(hex, ref), "%zu bytes: default %s, portable %s", n, hex, ref);
        digest(buf, n, 13, hex);
        CHECK(!strcmp(hex, ref), "%zu bytes in 13-byte pieces: %s, whole %s", n, hex, ref);
    }
    return tu_exit();
}
