/* SPDX-License-Identifier: GPL-3.0-or-later */
/* TIFF and BMP decoding (issue 17, item 6): every layout a dermoscopy
 * archive may hold decodes to the pixels it was written with, and broken,
 * hostile or unsupported files fail with the right code. TIFFs are written
 * here with libtiff, BMPs byte by byte; only the public API is used. */
#include "dermlens.h"
#include "dermlens_io.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

static int failures, checks;
#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        checks++;                                                                 \
        if (!(cond)) {                                                            \
            failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put16(buf_t *b, unsigned v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}

static void put32(buf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

/* A test picture with every channel varying in x and y. */
static uint8_t *picture(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + 3 * ((size_t)y * w + x);
            q[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
            q[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
            q[2] = (uint8_t)((x * 7 + y * 13) & 255);
        }
    return p;
}

/* Largest absolute difference between a decoded image and rgb (w x h). */
static int max_diff(const dl_image *img, const uint8_t *rgb, int w, int h)
{
    if (img->width != w || img->height != h) return 999;
    int m = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < 3 * w; x++) {
            int d = abs((int)img->pixels[(size_t)y * img->stride + x] - (int)rgb[(size_t)y * w * 3 + x]);
            if (d > m) m = d;
        }
    return m;
}

static int decode(const buf_t *b, dl_image *img, dl_error *e)
{
    memset(e, 0, sizeof *e);
    return dl_image_load_memory(b->p, b->n, img, e);
}

static void expect_ok(const char *what, const buf_t *b, const uint8_t *rgb, int w, int h, int tol)
{
    dl_image img;
    dl_error e;
    int rc = decode(b, &img, &e);
    CHECK(rc == 0, "%s: decode failed: %s", what, e.message);
    if (rc) return;
    int d = max_diff(&img, rgb, w, h);
    CHECK(d <= tol, "%s: decoded %dx%d, max difference %d (tolerance %d)", what, img.width, img.height, d, tol);
    dl_image_free(&img);
}

static void expect_fail(const char *what, const buf_t *b, dl_status code)
{
    dl_image img;
    dl_error e;
    int rc = decode(b, &img, &e);
    CHECK(rc != 0 && e.code == code, "%s: rc %d, code %s (want %s): %s", what, rc, dl_status_name(e.code),
          dl_status_name(code), e.message);
    CHECK(rc != 0 || img.pixels == NULL, "%s", what);
    if (rc == 0) dl_image_free(&img);
}

/* ------------------------------------------------------------ TIFF */

static char tmp_path[64];

static TIFF *tiff_new(void)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/dl_fmt_%d.tif", (int)getpid());
    return TIFFOpen(tmp_path, "w");
}

static buf_t tiff_bytes(void)
{
    buf_t b = {0};
    FILE *f = fopen(tmp_path, "rb");
    uint8_t chunk[65536];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0) put(&b, chunk, n);
    if (f) fclose(f);
    unlink(tmp_path);
    return b;
}

static void tiff_fields(TIFF *t, int w, int h, int spp, int bps, int photometric, int compression)
{
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)photometric);
    TIFFSetField(t, TIFFTAG_COMPRESSION, (uint16_t)compression);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
}

/* RGB 8-bit in strips of rps rows with a compression. */
static buf_t tiff_rgb(const uint8_t *rgb, int w, int h, int compression, int rps)
{
    TIFF *t = tiff_new();
    tiff_fields(t, w, h, 3, 8, PHOTOMETRIC_RGB, compression);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)rps);
    for (int y = 0; y < h; y++) TIFFWriteScanline(t, (void *)(rgb + (size_t)y * w * 3), (uint32_t)y, 0);
    TIFFClose(t);
    return tiff_bytes();
}

static void test_tiff(void)
{
    int w = 37, h = 23;
    uint8_t *rgb = picture(w, h);
    buf_t b;

    b = tiff_rgb(rgb, w, h, COMPRESSION_NONE, h);
    expect_ok("TIFF RGB uncompressed", &b, rgb, w, h, 0);
    free(b.p);
    b = tiff_rgb(rgb, w, h, COMPRESSION_ADOBE_DEFLATE, 7);
    expect_ok("TIFF RGB deflate, 7-row strips", &b, rgb, w, h, 0);
    free(b.p);
    b = tiff_rgb(rgb, w, h, COMPRESSION_LZW, 5);
    expect_ok("TIFF RGB LZW", &b, rgb, w, h, 0);
    free(b.p);
    b = tiff_rgb(rgb, w, h, COMPRESSION_PACKBITS, 1);
    expect_ok("TIFF RGB PackBits", &b, rgb, w, h, 0);

    /* a cut file (the directory, written last, is gone) is an error */
    buf_t cut = {0};
    put(&cut, b.p, b.n / 2);
    expect_fail("TIFF cut in half", &cut, DL_ERR_FORMAT);
    free(cut.p);
    free(b.p);

    /* tiles (16 x 16, the image not a multiple of them) */
    {
        TIFF *t = tiff_new();
        tiff_fields(t, w, h, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW);
        TIFFSetField(t, TIFFTAG_TILEWIDTH, 16);
        TIFFSetField(t, TIFFTAG_TILELENGTH, 16);
        uint8_t tile[16 * 16 * 3];
        for (int ty = 0; ty < h; ty += 16)
            for (int tx = 0; tx < w; tx += 16) {
                memset(tile, 0, sizeof tile);
                for (int y = 0; y < 16 && ty + y < h; y++)
                    for (int x = 0; x < 16 && tx + x < w; x++)
                        memcpy(tile + 3 * (y * 16 + x), rgb + 3 * ((size_t)(ty + y) * w + tx + x), 3);
                TIFFWriteTile(t, tile, (uint32_t)tx, (uint32_t)ty, 0, 0);
            }
        TIFFClose(t);
        b = tiff_bytes();
        expect_ok("TIFF RGB tiled", &b, rgb, w, h, 0);
        free(b.p);
    }
    /* grey 8-bit, and min-is-white */
    for (int inv = 0; inv < 2; inv++) {
        TIFF *t = tiff_new();
        tiff_fields(t, w, h, 1, 8, inv ? PHOTOMETRIC_MINISWHITE : PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE);
        uint8_t *g = malloc((size_t)w * h), *want = malloc((size_t)w * h * 3);
        for (int i = 0; i < w * h; i++) {
            g[i] = rgb[3 * i];
            want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = inv ? (uint8_t)(255 - g[i]) : g[i];
        }
        for (int y = 0; y < h; y++) TIFFWriteScanline(t, g + (size_t)y * w, (uint32_t)y, 0);
        TIFFClose(t);
        b = tiff_bytes();
        expect_ok(inv ? "TIFF grey min-is-white" : "TIFF grey", &b, want, w, h, 0);
        free(b.p);
        free(g);
        free(want);
    }
    /* palette 8-bit (16-bit colour map entries) */
    {
        TIFF *t = tiff_new();
        tiff_fields(t, w, h, 1, 8, PHOTOMETRIC_PALETTE, COMPRESSION_NONE);
        uint16_t cm[3][256];
        for (int i = 0; i < 256; i++) {
            cm[0][i] = (uint16_t)(i * 257);
            cm[1][i] = (uint16_t)((255 - i) * 257);
            cm[2][i] = (uint16_t)(((i * 5) & 255) * 257);
        }
        TIFFSetField(t, TIFFTAG_COLORMAP, cm[0], cm[1], cm[2]);
        uint8_t *idx = malloc((size_t)w * h), *want = malloc((size_t)w * h * 3);
        for (int i = 0; i < w * h; i++) {
            idx[i] = (uint8_t)(i * 3);
            want[3 * i] = idx[i];
            want[3 * i + 1] = (uint8_t)(255 - idx[i]);
            want[3 * i + 2] = (uint8_t)((idx[i] * 5) & 255);
        }
        for (int y = 0; y < h; y++) TIFFWriteScanline(t, idx + (size_t)y * w, (uint32_t)y, 0);
        TIFFClose(t);
        b = tiff_bytes();
        expect_ok("TIFF palette", &b, want, w, h, 0);
        free(b.p);
        free(idx);
        free(want);
    }
    /* 16 bits per sample: reduced to 8 */
    {
        TIFF *t = tiff_new();
        tiff_fields(t, w, h, 3, 16, PHOTOMETRIC_RGB, COMPRESSION_NONE);
        uint16_t *row = malloc((size_t)w * 6);
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < 3 * w; x++) row[x] = (uint16_t)(rgb[(size_t)y * w * 3 + x] * 257);
            TIFFWriteScanline(t, row, (uint32_t)y, 0);
        }
        free(row);
        TIFFClose(t);
        b = tiff_bytes();
        expect_ok("TIFF RGB 16-bit", &b, rgb, w, h, 1);
        free(b.p);
    }
    /* RGBA (unassociated alpha, opaque): alpha dropped */
    {
        TIFF *t = tiff_new();
        tiff_fields(t, w, h, 4, 8, PHOTOMETRIC_RGB, COMPRESSION_NONE);
        uint16_t extra = EXTRASAMPLE_UNASSALPHA;
        TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
        uint8_t *row = malloc((size_t)w * 4);
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                memcpy(row + 4 * x, rgb + 3 * ((size_t)y * w + x), 3);
                row[4 * x + 3] = 255;
            }
            TIFFWriteScanline(t, row, (uint32_t)y, 0);
        }
        free(row);
        TIFFClose(t);
        b = tiff_bytes();
        expect_ok("TIFF RGBA", &b, rgb, w, h, 0);
        free(b.p);
    }
    /* JPEG-compressed YCbCr (what scanners and slide systems write): lossy */
    {
        int jw = 64, jh = 48;
        uint8_t *smooth = malloc((size_t)jw * jh * 3);
        for (int y = 0; y < jh; y++)
            for (int x = 0; x < jw; x++) {
                uint8_t *q = smooth + 3 * ((size_t)y * jw + x);
                q[0] = (uint8_t)(60 + x * 2);
                q[1] = (uint8_t)(40 + y * 2);
                q[2] = (uint8_t)(100 + (x + y));
            }
        TIFF *t = tiff_new();
        tiff_fields(t, jw, jh, 3, 8, PHOTOMETRIC_YCBCR, COMPRESSION_JPEG);
        TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        TIFFSetField(t, TIFFTAG_JPEGQUALITY, 95);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16);
        for (int y = 0; y < jh; y++) TIFFWriteScanline(t, smooth + (size_t)y * jw * 3, (uint32_t)y, 0);
        TIFFClose(t);
        b = tiff_bytes();
        expect_ok("TIFF JPEG YCbCr", &b, smooth, jw, jh, 12);
        free(b.p);
        free(smooth);
    }
    /* two pages: the first is read */
    {
        TIFF *t = tiff_new();
        tiff_fields(t, w, h, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_NONE);
        for (int y = 0; y < h; y++) TIFFWriteScanline(t, rgb + (size_t)y * w * 3, (uint32_t)y, 0);
        TIFFWriteDirectory(t);
        tiff_fields(t, 8, 8, 1, 8, PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE);
        uint8_t z[8] = {0};
        for (int y = 0; y < 8; y++) TIFFWriteScanline(t, z, (uint32_t)y, 0);
        TIFFClose(t);
        b = tiff_bytes();
        expect_ok("TIFF two pages", &b, rgb, w, h, 0);
        free(b.p);
    }
    /* floating-point samples: a clear "not supported" */
    {
        TIFF *t = tiff_new();
        tiff_fields(t, 8, 8, 1, 32, PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE);
        TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
        float row[8] = {0};
        for (int y = 0; y < 8; y++) TIFFWriteScanline(t, row, (uint32_t)y, 0);
        TIFFClose(t);
        b = tiff_bytes();
        expect_fail("TIFF float samples", &b, DL_ERR_UNSUPPORTED);
        free(b.p);
    }
    free(rgb);

    /* Hand-made headers: a huge declared size is refused before any
     * pixel buffer; a directory pointing past the end is a format error. */
    {
        buf_t t = {0};
        put(&t, "II*\0", 4);
        put32(&t, 8);
        put16(&t, 5);
        const uint16_t tags[5][2] = {{256, 4}, {257, 4}, {258, 3}, {262, 3}, {273, 4}};
        const uint32_t vals[5] = {60000, 60000, 8, 1, 200};
        for (int i = 0; i < 5; i++) {
            put16(&t, tags[i][0]);
            put16(&t, tags[i][1]);
            put32(&t, 1);
            put32(&t, vals[i]);
        }
        put32(&t, 0);
        expect_fail("TIFF 60000 x 60000 in 74 bytes", &t, DL_ERR_LIMIT);
        free(t.p);
        buf_t d = {0};
        put(&d, "MM\0*", 4);
        uint8_t off[4] = {0x7f, 0, 0, 0};
        put(&d, off, 4);
        expect_fail("TIFF directory past the end", &d, DL_ERR_FORMAT);
        free(d.p);
        /* 8 x 8 grey whose strip lies past the end of the file */
        buf_t s = {0};
        put(&s, "II*\0", 4);
        put32(&s, 8);
        put16(&s, 6);
        const uint16_t st[6][2] = {{256, 4}, {257, 4}, {258, 3}, {262, 3}, {273, 4}, {279, 4}};
        const uint32_t sv[6] = {8, 8, 8, 1, 4000, 64};
        for (int i = 0; i < 6; i++) {
            put16(&s, st[i][0]);
            put16(&s, st[i][1]);
            put32(&s, 1);
            put32(&s, sv[i]);
        }
        put32(&s, 0);
        expect_fail("TIFF strip past the end", &s, DL_ERR_FORMAT);
        free(s.p);
        buf_t four = {0};
        put(&four, "II*\0", 4);
        expect_fail("TIFF 4 bytes", &four, DL_ERR_FORMAT);
        free(four.p);
    }
}

/* ------------------------------------------------------------ BMP */

typedef struct {
    int hsize;          /* 12, 40, 108, 124 */
    int bpp;
    int comp;           /* 0 BI_RGB, 3 BI_BITFIELDS, 1 RLE8 */
    int top_down;
    uint32_t masks[3];  /* with comp 3 */
    int npal;           /* palette entries written */
} bmp_spec;

/* Write a BMP of w x h from per-pixel raw values: for bpp <= 8 the palette
 * index, else the packed value (24: rgb). pal: npal RGB triples. */
static buf_t make_bmp(const bmp_spec *s, int w, int h, const uint32_t *val, const uint8_t *pal)
{
    buf_t b = {0};
    size_t row = ((size_t)w * s->bpp + 31) / 32 * 4;
    size_t entry = s->hsize == 12 ? 3 : 4;
    size_t extra = s->comp == 3 && s->hsize == 40 ? 12 : 0;
    uint32_t offset = (uint32_t)(14 + s->hsize + extra + entry * s->npal);
    put(&b, "BM", 2);
    put32(&b, (uint32_t)(offset + row * h));
    put32(&b, 0);
    put32(&b, offset);
    put32(&b, (uint32_t)s->hsize);
    if (s->hsize == 12) {
        put16(&b, (unsigned)w);
        put16(&b, (unsigned)h);
        put16(&b, 1);
        put16(&b, (unsigned)s->bpp);
    } else {
        put32(&b, (uint32_t)w);
        put32(&b, (uint32_t)(s->top_down ? -h : h));
        put16(&b, 1);
        put16(&b, (unsigned)s->bpp);
        put32(&b, (uint32_t)s->comp);
        put32(&b, (uint32_t)(row * h));
        put32(&b, 2835);
        put32(&b, 2835);
        put32(&b, (uint32_t)s->npal);
        put32(&b, 0);
        if (s->hsize > 40 || s->comp == 3)
            for (int c = 0; c < 3; c++) put32(&b, s->masks[c]);
        if (s->hsize > 40) {
            put32(&b, 0); /* alpha mask */
            uint8_t zero[124] = {0};
            put(&b, zero, (size_t)s->hsize - 56);
        }
    }
    for (int i = 0; i < s->npal; i++) {
        uint8_t e[4] = {pal[3 * i + 2], pal[3 * i + 1], pal[3 * i], 0};
        put(&b, e, entry);
    }
    uint8_t *r = malloc(row);
    for (int yy = 0; yy < h; yy++) {
        int y = s->top_down ? yy : h - 1 - yy;
        memset(r, 0, row);
        for (int x = 0; x < w; x++) {
            uint32_t v = val[(size_t)y * w + x];
            switch (s->bpp) {
            case 24:
                r[3 * x] = (uint8_t)v;
                r[3 * x + 1] = (uint8_t)(v >> 8);
                r[3 * x + 2] = (uint8_t)(v >> 16);
                break;
            case 32:
                for (int k = 0; k < 4; k++) r[4 * x + k] = (uint8_t)(v >> (8 * k));
                break;
            case 16:
                r[2 * x] = (uint8_t)v;
                r[2 * x + 1] = (uint8_t)(v >> 8);
                break;
            default: {
                int per = 8 / s->bpp;
                r[x / per] |= (uint8_t)(v << ((per - 1 - x % per) * s->bpp));
            }
            }
        }
        put(&b, r, row);
    }
    free(r);
    return b;
}

static uint8_t scale(uint32_t v, int bits)
{
    uint32_t max = (1u << bits) - 1;
    return (uint8_t)((v * 255 + max / 2) / max);
}

static void test_bmp(void)
{
    int w = 37, h = 23, n = 37 * 23;
    uint8_t *rgb = picture(w, h);
    uint32_t *val = malloc(sizeof(uint32_t) * n);
    uint8_t *want = malloc((size_t)n * 3);
    buf_t b;

    /* 24 bits, bottom-up (row padding: 37 * 3 = 111 -> 112) and top-down */
    for (int i = 0; i < n; i++) val[i] = rgb[3 * i + 2] | rgb[3 * i + 1] << 8 | (uint32_t)rgb[3 * i] << 16;
    for (int td = 0; td < 2; td++) {
        bmp_spec s = {.hsize = 40, .bpp = 24, .top_down = td};
        b = make_bmp(&s, w, h, val, NULL);
        expect_ok(td ? "BMP 24-bit top-down" : "BMP 24-bit", &b, rgb, w, h, 0);
        if (!td) {
            /* truncated pixel data; width 0; RLE8; odd header size; huge */
            buf_t c = {0};
            put(&c, b.p, b.n - 10);
            expect_fail("BMP cut short", &c, DL_ERR_FORMAT);
            c.n = 0;
            put(&c, b.p, b.n);
            memset(c.p + 18, 0, 4);
            expect_fail("BMP width 0", &c, DL_ERR_FORMAT);
            memcpy(c.p, b.p, b.n);
            c.p[30] = 1;
            expect_fail("BMP RLE8", &c, DL_ERR_UNSUPPORTED);
            memcpy(c.p, b.p, b.n);
            c.p[14] = 20;
            expect_fail("BMP 20-byte header", &c, DL_ERR_UNSUPPORTED);
            memcpy(c.p, b.p, b.n);
            c.p[28] = 7;
            expect_fail("BMP 7 bits per pixel", &c, DL_ERR_UNSUPPORTED);
            memcpy(c.p, b.p, b.n);
            uint8_t big[4] = {0x60, 0xea, 0, 0}; /* 60000 */
            memcpy(c.p + 18, big, 4);
            memcpy(c.p + 22, big, 4);
            expect_fail("BMP 60000 x 60000", &c, DL_ERR_LIMIT);
            memcpy(c.p, b.p, b.n);
            uint8_t off[4] = {0xff, 0xff, 0xff, 0x7f};
            memcpy(c.p + 10, off, 4);
            expect_fail("BMP pixel offset past the end", &c, DL_ERR_FORMAT);
            c.n = 20;
            expect_fail("BMP 20 bytes", &c, DL_ERR_FORMAT);
            free(c.p);
        }
        free(b.p);
    }
    /* OS/2 core header, 24 bits */
    {
        bmp_spec s = {.hsize = 12, .bpp = 24};
        b = make_bmp(&s, w, h, val, NULL);
        expect_ok("BMP core header 24-bit", &b, rgb, w, h, 0);
        free(b.p);
    }
    /* 32 bits BI_RGB (x8r8g8b8) */
    {
        bmp_spec s = {.hsize = 40, .bpp = 32};
        b = make_bmp(&s, w, h, val, NULL);
        expect_ok("BMP 32-bit", &b, rgb, w, h, 0);
        free(b.p);
    }
    /* 32 bits, bit fields in a V5 header: r8g8b8a8 order */
    {
        uint32_t *v2 = malloc(sizeof(uint32_t) * n);
        for (int i = 0; i < n; i++)
            v2[i] = (uint32_t)rgb[3 * i] << 24 | (uint32_t)rgb[3 * i + 1] << 16 | (uint32_t)rgb[3 * i + 2] << 8 | 0xff;
        bmp_spec s = {.hsize = 124, .bpp = 32, .comp = 3, .masks = {0xff000000u, 0x00ff0000u, 0x0000ff00u}};
        b = make_bmp(&s, w, h, v2, NULL);
        expect_ok("BMP 32-bit bit fields, V5 header", &b, rgb, w, h, 0);
        free(b.p);
        free(v2);
    }
    /* 16 bits: default 5-5-5, and 5-6-5 bit fields (V3 header + masks) */
    for (int f565 = 0; f565 < 2; f565++) {
        for (int i = 0; i < n; i++) {
            uint32_t r = rgb[3 * i] >> 3, g = rgb[3 * i + 1] >> (f565 ? 2 : 3), bl = rgb[3 * i + 2] >> 3;
            val[i] = f565 ? (r << 11 | g << 5 | bl) : (r << 10 | g << 5 | bl);
            want[3 * i] = scale(r, 5);
            want[3 * i + 1] = scale(g, f565 ? 6 : 5);
            want[3 * i + 2] = scale(bl, 5);
        }
        bmp_spec s = {.hsize = 40, .bpp = 16, .comp = f565 ? 3 : 0, .masks = {0xf800, 0x07e0, 0x001f}};
        b = make_bmp(&s, w, h, val, NULL);
        expect_ok(f565 ? "BMP 16-bit 5-6-5" : "BMP 16-bit 5-5-5", &b, want, w, h, 0);
        free(b.p);
    }
    /* palettes: 8, 4 and 1 bits; an index past a short palette is black */
    uint8_t pal[256 * 3];
    for (int i = 0; i < 256; i++) {
        pal[3 * i] = (uint8_t)i;
        pal[3 * i + 1] = (uint8_t)(255 - i);
        pal[3 * i + 2] = (uint8_t)(i * 3);
    }
    const int bpps[3] = {8, 4, 1};
    for (int k = 0; k < 3; k++) {
        int bpp = bpps[k], ncol = 1 << bpp, npal = bpp == 8 ? 200 : ncol;
        for (int i = 0; i < n; i++) {
            val[i] = (uint32_t)((i * 7 + i / w) % ncol);
            if ((int)val[i] < npal) memcpy(want + 3 * i, pal + 3 * val[i], 3);
            else memset(want + 3 * i, 0, 3);
        }
        bmp_spec s = {.hsize = 40, .bpp = bpp, .npal = npal};
        b = make_bmp(&s, w, h, val, pal);
        char what[64];
        snprintf(what, sizeof what, "BMP %d-bit palette of %d", bpp, npal);
        expect_ok(what, &b, want, w, h, 0);
        free(b.p);
        if (bpp == 8) {
            bmp_spec c = {.hsize = 12, .bpp = 8, .npal = 256};
            for (int i = 0; i < n; i++) memcpy(want + 3 * i, pal + 3 * val[i], 3);
            b = make_bmp(&c, w, h, val, pal);
            expect_ok("BMP core header, 8-bit palette", &b, want, w, h, 0);
            free(b.p);
        }
    }
    free(rgb);
    free(val);
    free(want);
}

/* A file named .tif that is a BMP, and the other way round: the bytes
 * decide, through the public path loader as every command uses it. */
static void test_load_path(void)
{
    int w = 16, h = 12;
    uint8_t *rgb = picture(w, h);
    char path[64];
    snprintf(path, sizeof path, "/tmp/dl_fmt_%d_misnamed.tif", (int)getpid());
    uint32_t *val = malloc(sizeof(uint32_t) * w * h);
    for (int i = 0; i < w * h; i++) val[i] = rgb[3 * i + 2] | rgb[3 * i + 1] << 8 | (uint32_t)rgb[3 * i] << 16;
    bmp_spec s = {.hsize = 40, .bpp = 24};
    buf_t b = make_bmp(&s, w, h, val, NULL);
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.n, f);
    fclose(f);
    dl_image img;
    dl_error e = {0};
    int o = 0;
    int rc = dl_image_load_oriented(path, &img, &o, &e);
    CHECK(rc == 0 && o == 1 && max_diff(&img, rgb, w, h) == 0, "misnamed BMP: %s", e.message);
    if (rc == 0) dl_image_free(&img);
    unlink(path);
    free(b.p);
    free(val);
    free(rgb);
}

int main(void)
{
    test_tiff();
    test_bmp();
    test_load_path();
    printf("test_image_formats: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
