/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Hostile and broken model files: each must be refused with a message that
 * names the problem, never crash or allocate wildly. A tiny valid model is
 * built first, then its header JSON is edited case by case. */
#include "dermlens_test.h"
#include "testutil.h"
#include "dermlens_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tmpdir(void)
{
    const char *b = getenv("DL_BUILD_ROOT");
    return b ? b : ".";
}

/* A 2-node valid model: input 4x4x3 -> conv 1x1 (2 units) -> gap -> dense 2. */
static int make_model(const char *path)
{
    const float w[6] = {1, 0, 0, 0, 1, 0}, b[2] = {0.5f, -0.5f}, d[4] = {1, 2, 3, 4};
    return tu_save_tiny_model(path, 4, 2, w, b, d, "relu6", "same", "tiny");
}

static uint8_t *file;
static size_t file_size, hlen;

/* Rebuild a file from a replacement header (data section unchanged). */
static uint8_t *with_header(const char *hdr, size_t *size_out)
{
    size_t hl = strlen(hdr), data = file_size - 8 - hlen;
    uint8_t *buf = malloc(8 + hl + data);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    memcpy(buf + 8 + hl, file + 8 + hlen, data);
    *size_out = 8 + hl + data;
    return buf;
}

static char *header_copy(void)
{
    char *h = malloc(hlen + 1);
    memcpy(h, file + 8, hlen);
    h[hlen] = 0;
    return h;
}

/* Replace the first occurrence of `from` by `to` in the header; expect
 * loading to fail with a message containing `want`. */
static void expect_edit(const char *what, const char *from, const char *to, const char *want)
{
    char *h = header_copy();
    char *p = strstr(h, from);
    CHECK(p != NULL, "%s: pattern %s not in header", what, from);
    if (!p) { free(h); return; }
    size_t n = strlen(h) - strlen(from) + strlen(to) + 1;
    char *e = malloc(n);
    memcpy(e, h, (size_t)(p - h));
    strcpy(e + (p - h), to);
    strcat(e, p + strlen(from));
    size_t sz;
    uint8_t *buf = with_header(e, &sz);
    dl_error err = {0};
    dl_model *m = dl_model_load_memory(buf, sz, &err);
    CHECK(m == NULL, "%s: accepted", what);
    CHECK(strstr(err.message, want) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.message, want);
    printf("%-28s -> %s\n", what, err.message);
    dl_model_free(m);
    free(buf);
    free(e);
    free(h);
}

static void expect_bytes(const char *what, const uint8_t *buf, size_t sz, const char *want)
{
    dl_error err = {0};
    dl_model *m = dl_model_load_memory(buf, sz, &err);
    CHECK(m == NULL, "%s: accepted", what);
    CHECK(err.message[0] && (!want || strstr(err.message, want)), "%s: message \"%s\" lacks \"%s\"", what,
          err.message, want ? want : "");
    printf("%-28s -> %s\n", what, err.message);
    dl_model_free(m);
}

/* F16 storage: the tiny model rewritten with dl_model_set_storage(F16)
 * (conv.weight [2,1,1,3] and logits.weight [2,2] as F16, conv.bias F32):
 * it loads with the rounded values, and damaged F16 entries are refused. */
static void f16_cases(const char *f32_path)
{
    char p16[4096];
    snprintf(p16, sizeof p16, "%s/tiny_model_f16.safetensors", tmpdir());
    dl_error err = {0};
    dl_model *m = dl_model_load(f32_path, &err);
    CHECK(m && dl_model_storage(m) == DL_STORAGE_F32, "F32 tiny model: %s", err.message);
    if (!m) return;
    /* 1/3 needs rounding; 7e4 is beyond F16: refused, nothing written */
    m->graph.tensors[0].data[1] = 1.f / 3.f;
    m->graph.tensors[0].data[2] = 7e4f;
    CHECK(dl_model_set_storage(m, DL_STORAGE_F16, &err) == 0, "%s", err.message);
    CHECK(dl_model_set_storage(m, (dl_storage)7, &err) != 0, "storage 7 accepted");
    unlink(p16);
    CHECK(dl_model_save_as(m, p16, NULL, &err) != 0 && strstr(err.message, "conv.weight: element 2 is 70000, beyond the F16"),
          "7e4 written as F16: %s", err.message);
    CHECK(access(p16, F_OK) != 0, "a refused save left a file");
    m->graph.tensors[0].data[2] = -65504.f;
    CHECK(dl_model_save_as(m, p16, NULL, &err) == 0, "F16 save: %s", err.message);
    dl_model_free(m);

    uint8_t *f16 = NULL;
    size_t f16_size = 0;
    CHECK(dl_read_file(p16, 1 << 20, &f16, &f16_size, &err) == 0, "%s", err.message);
    if (!f16) return;
    m = dl_model_load(p16, &err);
    CHECK(m != NULL, "F16 tiny model refused: %s", err.message);
    if (m) {
        const float *w = m->graph.tensors[0].data;
        CHECK(dl_model_storage(m) == DL_STORAGE_F16 && m->n_f16 == 2, "storage %d, %d F16 tensors", dl_model_storage(m), m->n_f16);
        CHECK(w[0] == 1.f && w[1] == dl_half_to_float(0x3555) && w[2] == -65504.f, "decoded %a %a %a", w[0], w[1], w[2]);
        CHECK(m->graph.tensors[1].data[0] == 0.5f, "bias");
        CHECK(strstr(dl_model_info_json(m), "\"tensors_f16\":\t2") != NULL, "info lacks the F16 count: %.200s",
              strstr(dl_model_info_json(m), "storage"));
        dl_model_free(m);
    }
    /* the expectations below are about this layout */
    const char *lay[2] = {"\"conv.weight\":{\"dtype\":\"F16\",\"shape\":[2,1,1,3],\"data_offsets\":[0,12]}",
                          "\"conv.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}"};
    for (int q = 0; q < 2; q++) CHECK(memmem(f16 + 8, f16_size - 8, lay[q], strlen(lay[q])), "layout: %s missing", lay[q]);
    uint8_t *keep = file;
    size_t keep_size = file_size, keep_hlen = hlen;
    file = f16;
    file_size = f16_size;
    hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | file[i];
    expect_edit("F16 span of F32 size", "\"data_offsets\":[0,12]", "\"data_offsets\":[0,24]", "span 24 bytes, shape needs 12");
    expect_edit("F16 odd span", "\"data_offsets\":[0,12]", "\"data_offsets\":[0,11]", "span 11 bytes, shape needs 12");
    expect_edit("F16 past the end", "\"data_offsets\":[20,28]", "\"data_offsets\":[24,32]", "outside the 28 data bytes");
    expect_edit("F16 shifted by one", "\"data_offsets\":[0,12]", "\"data_offsets\":[1,13]", "overlap");
    expect_edit("F16 byte size overflow", "\"shape\":[2,1,1,3]", "\"shape\":[2147483648,2147483648,2,1]", "byte size overflows");
    expect_edit("F16 shape overflow", "\"shape\":[2,1,1,3]", "\"shape\":[2147483648,2147483648,2147483648,3]", "overflow");
    expect_edit("F16 data called F32", "\"dtype\":\"F16\"", "\"dtype\":\"F32\"", "span 12 bytes, shape needs 24");
    expect_edit("F32 bias called F16", "\"dtype\":\"F32\",\"shape\":[2]", "\"dtype\":\"F16\",\"shape\":[2]", "span 8 bytes, shape needs 4");
    /* cut inside the data: before, inside and after the first F16 tensor, in the last one */
    const size_t cuts[5] = {0, 1, 11, 12, 27};
    for (int q = 0; q < 5; q++) {
        char what[64];
        snprintf(what, sizeof what, "F16 data cut to %zu bytes", cuts[q]);
        expect_bytes(what, file, 8 + hlen + cuts[q], NULL);
    }
    /* a changed F16 byte fails the digest; without the digest, Inf/NaN
     * patterns are refused by value and a subnormal loads exactly */
    uint8_t *bad = malloc(file_size);
    memcpy(bad, file, file_size);
    bad[8 + hlen] ^= 0x01;
    expect_bytes("F16 flipped weight bit", bad, file_size, "does not match the recorded");
    free(bad);
    {
        char *h = header_copy();
        char *k = strstr(h, "\"tensor_sha256\"");
        CHECK(k != NULL, "no digest key");
        if (k) {
            char *e = malloc(strlen(h) + 3);
            memcpy(e, h, (size_t)(k - h));
            strcpy(e + (k - h), "\"x-");
            strcat(e, k + 1);
            size_t sz;
            bad = with_header(e, &sz);
            size_t at = sz - (file_size - 8 - hlen) + 2 * 4; /* conv.weight element 4 */
            const uint16_t pat[3] = {0x7c00, 0xfc00, 0x7e01};
            const char *want[3] = {"element 4 is not finite (F16 Inf)", "element 4 is not finite (F16 Inf)",
                                   "element 4 is not finite (F16 NaN)"};
            for (int q = 0; q < 3; q++) {
                bad[at] = (uint8_t)pat[q];
                bad[at + 1] = (uint8_t)(pat[q] >> 8);
                char what[64];
                snprintf(what, sizeof what, "F16 weight 0x%04x", pat[q]);
                expect_bytes(what, bad, sz, want[q]);
            }
            bad[at] = 0x01; /* 2^-24, the smallest subnormal; then -0 */
            bad[at + 1] = 0x00;
            bad[at + 2] = 0x00;
            bad[at + 3] = 0x80;
            m = dl_model_load_memory(bad, sz, &err);
            CHECK(m != NULL, "F16 subnormal refused: %s", err.message);
            if (m) {
                const float *w = m->graph.tensors[0].data;
                CHECK(w[4] == ldexpf(1.f, -24) && w[5] == 0.f && signbit(w[5]), "subnormal/-0 decoded as %a %a", w[4], w[5]);
                dl_model_free(m);
            }
            free(bad);
            free(e);
        }
        free(h);
    }
    file = keep;
    file_size = keep_size;
    hlen = keep_hlen;
    free(f16);
}

int main(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tiny_model.safetensors", tmpdir());
    CHECK(make_model(path) == 0, "cannot write the tiny model");
    dl_error err = {0};
    CHECK(dl_read_file(path, 1 << 20, &file, &file_size, &err) == 0, "%s", err.message);
    if (!file) return tu_exit();
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | file[i];

    /* the valid model loads and runs */
    dl_model *m = dl_model_load(path, &err);
    CHECK(m != NULL, "valid tiny model refused: %s", err.message);
    if (m) {
        uint8_t px[4 * 4 * 3];
        memset(px, 200, sizeof px);
        dl_result r;
        CHECK(dl_classify_rgb8(m, px, 4, 4, 12, NULL, &r, &err) == 0, "%s", err.message);
        if (r.probs) CHECK(r.probs[0] + r.probs[1] > 0.999f, "probs");
        dl_result_free(&r);
        dl_model_free(m);
    }

    /* raw-byte damage */
    expect_bytes("empty file", file, 0, "too short");
    expect_bytes("truncated in length", file, 5, "too short");
    for (size_t cut = 9; cut < file_size; cut += file_size / 7 + 1) {
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu", cut);
        expect_bytes(what, file, cut, NULL);
    }
    uint8_t *bad = malloc(file_size);
    memcpy(bad, file, file_size);
    bad[8] = 'X';
    expect_bytes("wrong magic", bad, file_size, "not a safetensors");
    memcpy(bad, file, file_size);
    bad[0] = 0xff; bad[1] = 0xff; bad[2] = 0xff; bad[3] = 0x7f;
    expect_bytes("header length past the end", bad, file_size, "does not fit");
    memcpy(bad, file, file_size);
    bad[6] = 0xff;
    expect_bytes("header length 2^55", bad, file_size, "does not fit");
    free(bad);

    /* header edits */
    expect_edit("not JSON", "{\"__metadata__\"", "{\"__metadata__\"::", "well-formed");
    expect_edit("tensor out of range", "\"data_offsets\":[0,24]", "\"data_offsets\":[0,2400000]", "outside");
    expect_edit("offsets not matching shape", "\"data_offsets\":[0,24]", "\"data_offsets\":[0,20]", "shape needs");
    expect_edit("overlapping tensors", "\"data_offsets\":[24,32]", "\"data_offsets\":[16,24]", "overlap");
    expect_edit("shape overflow", "\"shape\":[2,1,1,3]", "\"shape\":[2147483648,2147483648,2147483648,3]", "overflow");
    expect_edit("negative dimension", "\"shape\":[2,1,1,3]", "\"shape\":[-2,1,1,3]", "shape");
    /* F32 data relabelled F16: 2 bytes per element, so the span is twice the shape's */
    expect_edit("F32 data called F16", "\"dtype\":\"F32\"", "\"dtype\":\"F16\"", "span 24 bytes, shape needs 12");
    expect_edit("unknown dtype", "\"dtype\":\"F32\"", "\"dtype\":\"Q9\"", "dtype Q9 not supported (F32 or F16)");
    expect_edit("BF16 dtype", "\"dtype\":\"F32\"", "\"dtype\":\"BF16\"", "not supported");
    expect_edit("unknown op", "\\\"op\\\":\\\"global_avgpool\\\"", "\\\"op\\\":\\\"fft\\\"", "unknown op");
    expect_edit("cycle", "\\\"inputs\\\":[\\\"input\\\"]", "\\\"inputs\\\":[\\\"pool\\\"]", "cycle");
    expect_edit("self loop", "\\\"inputs\\\":[\\\"conv\\\"]", "\\\"inputs\\\":[\\\"pool\\\"]", "cycle");
    expect_edit("weight shape mismatch", "\\\"units\\\":2,\\\"activation", "\\\"units\\\":3,\\\"activation", "shape");
    expect_edit("missing weight tensor", "\\\"weight\\\":\\\"conv.weight\\\"", "\\\"weight\\\":\\\"nope\\\"", "not in the file");
    expect_edit("wrong format", "\"format\":\"dermlens\"", "\"format\":\"other\"", "format");
    expect_edit("future version", "\"format_version\":\"1\"", "\"format_version\":\"99\"", "format_version");
    expect_edit("missing graph", "\"graph\":", "\"x-graph\":", "graph: missing");
    /* strictness: one changed byte in a key is refused, not read as a default */
    expect_edit("misspelt metadata key", "\"graph\":", "\"grap\":", "unknown key \"grap\"");
    expect_edit("misspelt node key", "\\\"padding\\\":", "\\\"paddinf\\\":", "unknown key \"paddinf\"");
    expect_edit("misspelt preprocess key", "\\\"resize\\\":", "\\\"resizf\\\":", "unknown key");
    expect_edit("temperature not a number", "\"temperature\":\"1\"", "\"temperature\":\"abc\"", "temperature");
    expect_edit("temperature nan", "\"temperature\":\"1\"", "\"temperature\":\"nan\"", "temperature");
    expect_edit("temperature with junk", "\"temperature\":\"1\"", "\"temperature\":\"1x\"", "temperature");
    expect_edit("class count mismatch", "{\\\"name\\\":\\\"b\\\",\\\"long_name\\\":\\\"b\\\"}", "{\\\"name\\\":\\\"b\\\"},{\\\"name\\\":\\\"c\\\"}", "classes");
    expect_edit("zero std", "\\\"std\\\":[127.5", "\\\"std\\\":[0", "std");
    expect_edit("bad kernel", "\\\"kernel\\\":[1,1]", "\\\"kernel\\\":[100000,1]", "kernel");
    expect_edit("bad temperature", "\"temperature\":\"1\"", "\"temperature\":\"-3\"", "temperature");
    expect_edit("huge input", "\\\"height\\\":4", "\\\"height\\\":100000", "input");

    /* the tensor data's recorded sha256: any changed weight byte is caught */
    CHECK(memmem(file + 8, hlen, "\"tensor_sha256\":\"", 17) != NULL, "the writer recorded no tensor digest");
    bad = malloc(file_size + 8);
    memcpy(bad, file, file_size);
    bad[8 + hlen + 1] ^= 0x01; /* a low mantissa bit of the first weight */
    expect_bytes("one flipped weight bit", bad, file_size, "does not match the recorded");
    /* header length off by 4: the JSON no longer ends where the length says */
    memcpy(bad, file, file_size);
    bad[0] = (uint8_t)(hlen + 4);
    bad[1] = (uint8_t)((hlen + 4) >> 8);
    expect_bytes("header length off by 4", bad, file_size, "header");
    /* bytes appended after the last tensor */
    memcpy(bad, file, file_size);
    memset(bad + file_size, 0, 8);
    expect_bytes("slack after the tensors", bad, file_size + 8, "data section");
    free(bad);

    /* NaN and huge weights (digest renamed to an ignored x- key so the value
     * checks themselves are reached) */
    {
        char *h = header_copy();
        char *k = strstr(h, "\"tensor_sha256\"");
        CHECK(k != NULL, "no digest key");
        if (k) {
            size_t n = strlen(h) + 3;
            char *e = malloc(n);
            memcpy(e, h, (size_t)(k - h));
            strcpy(e + (k - h), "\"x-");
            strcat(e, k + 1);
            size_t sz;
            bad = with_header(e, &sz);
            size_t data_at = sz - (file_size - 8 - hlen);
            uint32_t nan_bits = 0x7fc00000u;
            memcpy(bad + data_at, &nan_bits, 4);
            expect_bytes("NaN weight", bad, sz, "not finite");
            float huge = 3e38f;
            memcpy(bad + data_at, &huge, 4);
            expect_bytes("3e38 weight", bad, sz, "outside");
            free(bad);
            free(e);
        }
        free(h);
    }

    /* the shipped lesion model's OOD threshold: "nan", "inf" or "abc" would
     * silently switch the warning off (or always on); each is refused */
    {
        uint8_t *lm = NULL;
        size_t lsz = 0;
        dl_error e2 = {0};
        if (dl_read_file(tu_source("weights/dermlens_ham10000.safetensors"), (size_t)1 << 30, &lm, &lsz, &e2) == 0) {
            const char *key = "\"ood_threshold\":\"";
            uint8_t *at = memmem(lm, lsz > 65536 ? 65536 : lsz, key, strlen(key));
            CHECK(at != NULL, "shipped model has no ood_threshold");
            const char *subst[3] = {"nan", "inf", "abc"};
            for (int q = 0; at && q < 3; q++) {
                uint8_t *v = at + strlen(key), *end = memchr(v, '"', 64);
                if (!end) break;
                /* same length: pad the replacement with spaces inside the quotes is not a number either */
                uint8_t *copy = malloc(lsz);
                memcpy(copy, lm, lsz);
                uint8_t *cv = copy + (v - lm);
                memset(cv, ' ', (size_t)(end - v));
                memcpy(cv, subst[q], strlen(subst[q]) < (size_t)(end - v) ? strlen(subst[q]) : (size_t)(end - v));
                char what[64];
                snprintf(what, sizeof what, "ood_threshold \"%s\"", subst[q]);
                expect_bytes(what, copy, lsz, "ood_threshold");
                free(copy);
            }
            free(lm);
        }
    }

    f16_cases(path);

    /* files that are not there or not regular */
    CHECK(dl_model_load("/nonexistent/model.safetensors", &err) == NULL && err.code == DL_ERR_IO, "missing file");
    CHECK(dl_model_load("/", &err) == NULL, "directory accepted");
    free(file);
    return tu_exit();
}
