/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Unit tests for engine/src/formats/image.c: PNG/JPEG decoding, PNG writing, resize,
 * and rejection of broken or hostile inputs.
 *
 * Fixture images are generated here with libpng/libjpeg directly (an
 * independent path from the code under test). `test_image --emit DIR` writes
 * the generated files that are committed as fuzz seeds and broken samples
 * (DIR/png, DIR/jpeg, DIR/images). */
#include "dermlens_io.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

static int g_failures;
static int g_checks;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        g_checks++;                                                             \
        if (!(cond)) {                                                          \
            g_failures++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* ------------------------------------------------------------ helpers */

typedef struct {
    uint8_t *data;
    size_t size, cap;
} buf_t;

static void buf_put(buf_t *b, const void *p, size_t n)
{
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->size + n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        b->cap = cap;
    }
    memcpy(b->data + b->size, p, n);
    b->size += n;
}

static uint64_t rng_state = 12345u;
static uint32_t rnd(void)
{
    return (uint32_t)(dl_rng_next(&rng_state) >> 32);
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* Expect a failure with a given code and a non-empty message. */
static void expect_fail(int rc, const dl_error *e, dl_status code, const char *what)
{
    CHECK(rc == -1, "%s: expected failure, rc=%d", what, rc);
    CHECK(e->code == code, "%s: code %s (%d), expected %s: %s", what, dl_status_name(e->code),
          (int)e->code, dl_status_name(code), e->message);
    CHECK(e->message[0] != '\0', "%s: empty message", what);
}

/* -------------------------------------------------- PNG fixture writer */

typedef struct {
    int width, height, color_type, bit_depth, interlace;
    const png_color *palette;
    int num_palette;
    const uint8_t *trns;   /* palette alpha */
    int num_trns;
    const uint8_t *rows;   /* packed rows in PNG byte order */
    size_t rowbytes;
    int with_text;         /* add tEXt + zTXt chunks (decoder must skip them) */
} png_spec;

static void mem_png_write(png_structp png, png_bytep p, size_t n)
{
    buf_put(png_get_io_ptr(png), p, n);
}
static void mem_png_flush(png_structp png) { (void)png; }

static buf_t make_png(const png_spec *s)
{
    buf_t b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "fixture PNG writer failed\n");
        exit(1);
    }
    png_set_write_fn(png, &b, mem_png_write, mem_png_flush);
    png_set_IHDR(png, info, (png_uint_32)s->width, (png_uint_32)s->height, s->bit_depth,
                 s->color_type, s->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->palette)
        png_set_PLTE(png, info, s->palette, s->num_palette);
    if (s->trns)
        png_set_tRNS(png, info, s->trns, s->num_trns, NULL);
    if (s->with_text) {
        png_text t[2];
        memset(t, 0, sizeof t);
        t[0].compression = PNG_TEXT_COMPRESSION_NONE;
        t[0].key = (png_charp) "Comment";
        t[0].text = (png_charp) "fixture written by test_image";
        t[1].compression = PNG_TEXT_COMPRESSION_zTXt;
        t[1].key = (png_charp) "Description";
        t[1].text = (png_charp) "compressed text chunk, compressed text chunk";
        png_set_text(png, info, t, 2);
    }
    png_write_info(png, info);
    png_bytep *rows = malloc((size_t)s->height * sizeof *rows);
    for (int y = 0; y < s->height; y++)
        rows[y] = (png_bytep)(s->rows + (size_t)y * s->rowbytes);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return b;
}

/* CRC-32 (PNG chunks) and Adler-32 (zlib), written out so the test needs no zlib. */
static uint32_t crc32_of(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t adler32_of(const uint8_t *p, size_t n)
{
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return b << 16 | a;
}

/* Build a PNG from scratch with a given IHDR (and a tiny IDAT), computing
 * correct CRCs, so hostile header values reach the decoder. */
static void put_chunk(buf_t *b, const char *type, const uint8_t *data, uint32_t len)
{
    uint8_t hdr[8] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len, (uint8_t)type[0], (uint8_t)type[1], (uint8_t)type[2],
                      (uint8_t)type[3]};
    buf_put(b, hdr, 8);
    if (len)
        buf_put(b, data, len);
    uint8_t *tmp = malloc(4 + (size_t)len);
    memcpy(tmp, type, 4);
    if (len)
        memcpy(tmp + 4, data, len);
    uint32_t crc = crc32_of(0, tmp, 4 + (size_t)len);
    free(tmp);
    uint8_t c[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                    (uint8_t)crc};
    buf_put(b, c, 4);
}

static buf_t make_png_header(uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    buf_t b = {0};
    buf_put(&b, sig, 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        8, 2, 0, 0, 0};
    put_chunk(&b, "IHDR", ihdr, 13);
    /* zlib stream with one stored block: a row of filter byte + 3 zero bytes */
    uint8_t raw[4] = {0};
    uint32_t ad = adler32_of(raw, sizeof raw);
    uint8_t z[2 + 5 + 4 + 4] = {0x78, 0x01, 0x01, 4, 0, 0xfb, 0xff, 0, 0, 0, 0,
                                (uint8_t)(ad >> 24), (uint8_t)(ad >> 16), (uint8_t)(ad >> 8),
                                (uint8_t)ad};
    put_chunk(&b, "IDAT", z, (uint32_t)sizeof z);
    put_chunk(&b, "IEND", NULL, 0);
    return b;
}

/* Raw read with libpng (no transforms) for checking written files. */
typedef struct {
    const uint8_t *p;
    size_t n, pos;
} rd_t;
static void mem_png_read(png_structp png, png_bytep out, size_t n)
{
    rd_t *r = png_get_io_ptr(png);
    if (n > r->n - r->pos)
        png_error(png, "eof");
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
}

/* Returns malloc'd raw rows (PNG byte order), fills geometry; NULL on error. */
static uint8_t *read_png_raw(const uint8_t *data, size_t n, int *w, int *h, int *ctype,
                             int *depth, size_t *rowbytes)
{
    rd_t r = {data, n, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(out);
        free(rows);
        return NULL;
    }
    png_set_read_fn(png, &r, mem_png_read);
    png_read_info(png, info);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    *ctype = png_get_color_type(png, info);
    *depth = png_get_bit_depth(png, info);
    *rowbytes = png_get_rowbytes(png, info);
    out = malloc(*rowbytes * (size_t)*h);
    rows = malloc((size_t)*h * sizeof *rows);
    for (int y = 0; y < *h; y++)
        rows[y] = out + (size_t)y * *rowbytes;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    return out;
}

/* ------------------------------------------------- JPEG fixture writer */

typedef struct {
    int width, height, components;
    J_COLOR_SPACE in_space;
    int quality, progressive, restart, h_samp; /* h_samp: 2 = 4:2:0 luma */
    const uint8_t *pixels;                     /* packed, width*components per row */
} jpeg_spec;

static buf_t make_jpeg(const jpeg_spec *s)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *mem = NULL;
    unsigned long memsize = 0;
    jpeg_mem_dest(&c, &mem, &memsize);
    c.image_width = (JDIMENSION)s->width;
    c.image_height = (JDIMENSION)s->height;
    c.input_components = s->components;
    c.in_color_space = s->in_space;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, s->quality, TRUE);
    if (s->in_space == JCS_RGB && s->h_samp == 1) {
        c.comp_info[0].h_samp_factor = 1;
        c.comp_info[0].v_samp_factor = 1;
    }
    if (s->progressive)
        jpeg_simple_progression(&c);
    c.restart_interval = (unsigned)s->restart;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(s->pixels + (size_t)c.next_scanline * s->width * s->components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    buf_t b = {0};
    buf_put(&b, mem, memsize);
    free(mem);
    return b;
}

/* Smooth test picture (compresses well, JPEG-friendly). */
static uint8_t *smooth_rgb(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
            q[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
            q[2] = (uint8_t)((x + y) * 127 / (w + h));
        }
    return p;
}

/* Direct libjpeg decode to RGB (reference for the engine's wrapper). */
static uint8_t *ref_jpeg_rgb(const uint8_t *data, size_t n, int *w, int *h)
{
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr e;
    d.err = jpeg_std_error(&e);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, data, (unsigned long)n);
    jpeg_read_header(&d, TRUE);
    d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d);
    *w = (int)d.output_width;
    *h = (int)d.output_height;
    uint8_t *out = malloc((size_t)*w * *h * 3);
    while (d.output_scanline < d.output_height) {
        JSAMPROW r = out + (size_t)d.output_scanline * *w * 3;
        jpeg_read_scanlines(&d, &r, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return out;
}

/* -------------------------------------------------------- PNG tests */

static void test_png_roundtrip(const char *dir)
{
    enum { W = 37, H = 23 };
    for (int ci = 0; ci < 3; ci++) {
        int ch = ci == 0 ? 1 : ci == 1 ? 3 : 4;
        for (int depth = 8; depth <= 16; depth += 8) {
            int bps = depth / 8;
            size_t stride = (size_t)W * ch * bps + 6; /* padded rows */
            uint8_t *src = malloc(stride * H);
            for (size_t i = 0; i < stride * H; i++)
                src[i] = (uint8_t)rnd();
            char path[1024];
            snprintf(path, sizeof path, "%s/rt_c%d_d%d.png", dir, ch, depth);
            dl_error e = {0};
            int rc = dl_png_write(path, src, W, H, stride, ch, depth, &e);
            CHECK(rc == 0, "write %s: %s", path, e.message);

            /* raw samples must match exactly (checks 16-bit byte order) */
            uint8_t *file = NULL;
            size_t fsize = 0;
            CHECK(dl_read_file(path, 1 << 24, &file, &fsize, &e) == 0, "%s", e.message);
            int w = 0, h = 0, ct = -1, bd = 0;
            size_t rb = 0;
            uint8_t *raw = file ? read_png_raw(file, fsize, &w, &h, &ct, &bd, &rb) : NULL;
            int want_ct = ch == 1 ? PNG_COLOR_TYPE_GRAY
                        : ch == 3 ? PNG_COLOR_TYPE_RGB
                                  : PNG_COLOR_TYPE_RGB_ALPHA;
            CHECK(raw && w == W && h == H && ct == want_ct && bd == depth,
                  "c%d d%d: read back %dx%d type %d depth %d", ch, depth, w, h, ct, bd);
            int mismatches = 0;
            if (raw && w == W && h == H && bd == depth) {
                for (int y = 0; y < H; y++)
                    for (int i = 0; i < W * ch; i++) {
                        unsigned want, got;
                        if (depth == 8) {
                            want = src[(size_t)y * stride + i];
                            got = raw[(size_t)y * rb + i];
                        } else {
                            uint16_t v;
                            memcpy(&v, src + (size_t)y * stride + 2 * (size_t)i, 2);
                            want = v;
                            const uint8_t *q = raw + (size_t)y * rb + 2 * (size_t)i;
                            got = (unsigned)q[0] << 8 | q[1]; /* PNG is big-endian */
                        }
                        mismatches += want != got;
                    }
            }
            CHECK(mismatches == 0, "c%d d%d: %d samples differ", ch, depth, mismatches);
            free(raw);

            /* engine decode: RGB8, alpha dropped, 16-bit reduced to the high byte */
            dl_image img;
            rc = dl_image_load(path, &img, &e);
            CHECK(rc == 0, "load %s: %s", path, e.message);
            mismatches = 0;
            if (rc == 0) {
                CHECK(img.width == W && img.height == H && img.stride >= 3 * (size_t)W,
                      "geometry %dx%d", img.width, img.height);
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        for (int c = 0; c < 3; c++) {
                            int sc = ch == 1 ? 0 : c;
                            size_t idx = (size_t)x * ch + sc;
                            unsigned want;
                            if (depth == 8) {
                                want = src[(size_t)y * stride + idx];
                            } else {
                                uint16_t v;
                                memcpy(&v, src + (size_t)y * stride + 2 * idx, 2);
                                want = v >> 8;
                            }
                            mismatches += img.pixels[(size_t)y * img.stride + 3 * x + c] != want;
                        }
                dl_image_free(&img);
                CHECK(img.pixels == NULL, "dl_image_free clears the struct");
            }
            CHECK(mismatches == 0, "c%d d%d: %d decoded samples differ", ch, depth, mismatches);
            free(file);
            free(src);
        }
    }

    /* failures: bad arguments, unwritable place; no temp file left behind */
    uint8_t px[12] = {0};
    dl_error e = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/x.png", dir);
    expect_fail(dl_png_write(path, px, 2, 2, 6, 2, 8, &e), &e, DL_ERR_ARG, "2 channels");
    expect_fail(dl_png_write(path, px, 2, 2, 6, 3, 12, &e), &e, DL_ERR_ARG, "12-bit");
    expect_fail(dl_png_write(path, px, 2, 2, 5, 3, 8, &e), &e, DL_ERR_ARG, "short stride");
    expect_fail(dl_png_write(path, px, 0, 2, 6, 3, 8, &e), &e, DL_ERR_ARG, "zero width");
    expect_fail(dl_png_write(path, NULL, 2, 2, 6, 3, 8, &e), &e, DL_ERR_ARG, "NULL data");
    CHECK(access(path, F_OK) != 0, "no file written on argument errors");
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", dir);
    expect_fail(dl_png_write(path, px, 2, 2, 6, 3, 8, &e), &e, DL_ERR_IO, "missing dir");
    CHECK(strstr(e.message, "no/such/dir") != NULL, "message names the path: %s", e.message);
}

static void test_png_decode_variants(void)
{
    enum { W = 19, H = 13 };
    dl_image img;
    dl_error e = {0};

    /* palette 8-bit with tRNS: alpha dropped, colours from PLTE */
    png_color pal[5] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}, {200, 100, 50}};
    uint8_t trns[3] = {0, 128, 255};
    uint8_t idx8[W * H];
    for (int i = 0; i < W * H; i++)
        idx8[i] = (uint8_t)(rnd() % 5);
    for (int il = 0; il < 2; il++) {
        png_spec s = {W, H, PNG_COLOR_TYPE_PALETTE, 8, il ? PNG_INTERLACE_ADAM7 : 0,
                      pal, 5, trns, 3, idx8, W, !il};
        buf_t b = make_png(&s);
        int rc = dl_image_load_memory(b.data, b.size, &img, &e);
        CHECK(rc == 0, "palette8 il=%d: %s", il, e.message);
        int bad = 0;
        if (rc == 0) {
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const png_color *c = &pal[idx8[y * W + x]];
                    const uint8_t *q = img.pixels + (size_t)y * img.stride + 3 * x;
                    bad += q[0] != c->red || q[1] != c->green || q[2] != c->blue;
                }
            dl_image_free(&img);
        }
        CHECK(bad == 0, "palette8 il=%d: %d pixels differ", il, bad);
        free(b.data);
    }

    /* palette 4-bit (packed 2 pixels per byte), interlaced */
    {
        size_t rb = (W + 1) / 2;
        uint8_t rows4[((W + 1) / 2) * H];
        memset(rows4, 0, sizeof rows4);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int v = idx8[y * W + x];
                rows4[y * rb + x / 2] |= (uint8_t)(x % 2 ? v : v << 4);
            }
        png_spec s = {W, H, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_ADAM7, pal, 5, trns, 2,
                      rows4, rb, 0};
        buf_t b = make_png(&s);
        int rc = dl_image_load_memory(b.data, b.size, &img, &e);
        CHECK(rc == 0, "palette4: %s", e.message);
        int bad = 0;
        if (rc == 0) {
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const png_color *c = &pal[idx8[y * W + x]];
                    const uint8_t *q = img.pixels + (size_t)y * img.stride + 3 * x;
                    bad += q[0] != c->red || q[1] != c->green || q[2] != c->blue;
                }
            dl_image_free(&img);
        }
        CHECK(bad == 0, "palette4: %d pixels differ", bad);
        free(b.data);
    }

    /* grey 1, 2, 4 bit (interlaced and not): bit replication to 8 bits */
    for (int depth = 1; depth <= 4; depth *= 2) {
        for (int il = 0; il < 2; il++) {
            int per = 8 / depth, maxv = (1 << depth) - 1;
            size_t rb = (size_t)(W + per - 1) / per;
            uint8_t rows[((W + 7)) * H];
            uint8_t vals[W * H];
            memset(rows, 0, sizeof rows);
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int v = (int)(rnd() & (unsigned)maxv);
                    vals[y * W + x] = (uint8_t)v;
                    int shift = 8 - depth * (x % per + 1);
                    rows[y * rb + x / per] |= (uint8_t)(v << shift);
                }
            png_spec s = {W, H, PNG_COLOR_TYPE_GRAY, depth, il ? PNG_INTERLACE_ADAM7 : 0,
                          NULL, 0, NULL, 0, rows, rb, 0};
            buf_t b = make_png(&s);
            int rc = dl_image_load_memory(b.data, b.size, &img, &e);
            CHECK(rc == 0, "grey%d il=%d: %s", depth, il, e.message);
            int bad = 0;
            if (rc == 0) {
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        int want = vals[y * W + x] * 255 / maxv;
                        const uint8_t *q = img.pixels + (size_t)y * img.stride + 3 * x;
                        bad += q[0] != want || q[1] != want || q[2] != want;
                    }
                dl_image_free(&img);
            }
            CHECK(bad == 0, "grey%d il=%d: %d pixels differ", depth, il, bad);
            free(b.data);
        }
    }

    /* grey+alpha 8 and 16 bit, RGB 16 interlaced: alpha dropped, high byte kept */
    for (int v = 0; v < 3; v++) {
        int ctype = v < 2 ? PNG_COLOR_TYPE_GRAY_ALPHA : PNG_COLOR_TYPE_RGB;
        int depth = v == 0 ? 8 : 16;
        int ch = v < 2 ? 2 : 3, bps = depth / 8;
        size_t rb = (size_t)W * ch * bps;
        uint8_t *rows = malloc(rb * H);
        for (size_t i = 0; i < rb * H; i++)
            rows[i] = (uint8_t)rnd();
        png_spec s = {W, H, ctype, depth, v == 2 ? PNG_INTERLACE_ADAM7 : 0, NULL, 0, NULL, 0,
                      rows, rb, 0};
        buf_t b = make_png(&s);
        int rc = dl_image_load_memory(b.data, b.size, &img, &e);
        CHECK(rc == 0, "variant %d: %s", v, e.message);
        int bad = 0;
        if (rc == 0) {
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < 3; c++) {
                        int sc = ch == 3 ? c : 0;
                        int want = rows[y * rb + ((size_t)x * ch + sc) * bps]; /* high byte */
                        bad += img.pixels[(size_t)y * img.stride + 3 * x + c] != want;
                    }
            dl_image_free(&img);
        }
        CHECK(bad == 0, "variant %d: %d samples differ", v, bad);
        free(b.data);
        free(rows);
    }
}

/* -------------------------------------------------------- JPEG tests */

static const char *find_sample_jpeg(char *buf, size_t n)
{
    const char *td = getenv("DL_TEST_DATA");
    const char *root = getenv("DL_SOURCE_ROOT");
    const char *sh = getenv("DL_SHARED_DIR");
    if (td) {
        snprintf(buf, n, "%s/images/ham10000_ISIC_0031719.jpg", td);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    if (root) {
        snprintf(buf, n, "%s/tests/data/images/ham10000_ISIC_0031719.jpg", root);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    if (sh) {
        snprintf(buf, n, "%s/datasets/sample/vasc/ISIC_0031719.jpg", sh);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    return NULL;
}

static int test_jpeg_real(void)
{
    char path[1024];
    if (!find_sample_jpeg(path, sizeof path)) {
        fprintf(stderr, "SKIP sample JPEG not found (set DL_TEST_DATA)\n");
        return 77;
    }
    dl_image img;
    dl_error e = {0};
    int rc = dl_image_load(path, &img, &e);
    CHECK(rc == 0, "load %s: %s", path, e.message);
    if (rc != 0)
        return 0;
    CHECK(img.width == 224 && img.height == 224, "size %dx%d", img.width, img.height);
    uint8_t *file = NULL;
    size_t n = 0;
    CHECK(dl_read_file(path, 1 << 24, &file, &n, &e) == 0, "%s", e.message);
    int w = 0, h = 0;
    uint8_t *ref = ref_jpeg_rgb(file, n, &w, &h);
    int bad = 0;
    double sum = 0, sum2 = 0;
    for (int y = 0; y < h && y < img.height; y++)
        for (int x = 0; x < w * 3 && x < img.width * 3; x++) {
            int v = img.pixels[(size_t)y * img.stride + x];
            bad += v != ref[(size_t)y * w * 3 + x];
            sum += v;
            sum2 += (double)v * v;
        }
    CHECK(bad == 0, "%d samples differ from direct libjpeg decode", bad);
    double cnt = 224.0 * 224 * 3, mean = sum / cnt, sd = sqrt(sum2 / cnt - mean * mean);
    CHECK(mean > 60 && mean < 230 && sd > 10, "implausible picture: mean %.1f sd %.1f", mean,
          sd);

    /* truncated at half: error, not a grey-padded image */
    dl_image t;
    rc = dl_image_load_memory(file, n / 2, &t, &e);
    expect_fail(rc, &e, DL_ERR_FORMAT, "truncated real JPEG");
    CHECK(strstr(e.message, "truncated") != NULL, "message: %s", e.message);
    CHECK(t.pixels == NULL, "no pixels on failure");
    free(ref);
    free(file);
    dl_image_free(&img);
    return 0;
}

static void test_jpeg_generated(void)
{
    enum { W = 48, H = 40 };
    uint8_t *rgb = smooth_rgb(W, H);
    dl_image img;
    dl_error e = {0};

    /* RGB (4:2:0 and 4:4:4), progressive, restart markers: match direct decode,
     * and stay close to the source picture */
    for (int v = 0; v < 4; v++) {
        jpeg_spec s = {W, H, 3, JCS_RGB, 92, v == 2, v == 3 ? 2 : 0, v == 1 ? 1 : 2, rgb};
        buf_t b = make_jpeg(&s);
        int rc = dl_image_load_memory(b.data, b.size, &img, &e);
        CHECK(rc == 0, "jpeg variant %d: %s", v, e.message);
        if (rc == 0) {
            int w, h, bad = 0, maxd = 0;
            uint8_t *ref = ref_jpeg_rgb(b.data, b.size, &w, &h);
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W * 3; x++) {
                    int g = img.pixels[(size_t)y * img.stride + x];
                    bad += g != ref[(size_t)y * W * 3 + x];
                    int d = abs(g - rgb[(size_t)y * W * 3 + x]);
                    maxd = d > maxd ? d : maxd;
                }
            CHECK(bad == 0, "jpeg variant %d: %d samples differ from libjpeg", v, bad);
            CHECK(maxd <= 40, "jpeg variant %d: max error %d vs source", v, maxd);
            free(ref);
            dl_image_free(&img);
        }
        free(b.data);
    }

    /* greyscale: replicated into R=G=B */
    {
        uint8_t grey[W * H];
        for (int i = 0; i < W * H; i++)
            grey[i] = rgb[3 * i];
        jpeg_spec s = {W, H, 1, JCS_GRAYSCALE, 95, 0, 0, 2, grey};
        buf_t b = make_jpeg(&s);
        int rc = dl_image_load_memory(b.data, b.size, &img, &e);
        CHECK(rc == 0, "grey jpeg: %s", e.message);
        if (rc == 0) {
            int bad = 0, maxd = 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const uint8_t *q = img.pixels + (size_t)y * img.stride + 3 * x;
                    bad += q[0] != q[1] || q[1] != q[2];
                    int d = abs(q[0] - grey[y * W + x]);
                    maxd = d > maxd ? d : maxd;
                }
            CHECK(bad == 0, "grey jpeg: %d pixels not grey", bad);
            CHECK(maxd <= 12, "grey jpeg: max error %d", maxd);
            dl_image_free(&img);
        }
        free(b.data);
    }

    /* Adobe CMYK (stored inverted, as Photoshop does): left half pure red ink
     * (M+Y), right half 50% black */
    {
        uint8_t *cmyk = malloc((size_t)W * H * 4);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *q = cmyk + ((size_t)y * W + x) * 4;
                uint8_t ink[4] = {0, 255, 255, 0};
                if (x >= W / 2) {
                    ink[1] = ink[2] = 0;
                    ink[3] = 128;
                }
                for (int c = 0; c < 4; c++)
                    q[c] = (uint8_t)(255 - ink[c]);
            }
        jpeg_spec s = {W, H, 4, JCS_CMYK, 95, 0, 0, 2, cmyk};
        buf_t b = make_jpeg(&s);
        int rc = dl_image_load_memory(b.data, b.size, &img, &e);
        CHECK(rc == 0, "cmyk jpeg: %s", e.message);
        if (rc == 0) {
            const uint8_t *l = img.pixels + (size_t)(H / 2) * img.stride + 3 * 4;
            const uint8_t *r = img.pixels + (size_t)(H / 2) * img.stride + 3 * (W - 5);
            CHECK(l[0] >= 250 && l[1] <= 5 && l[2] <= 5, "red ink -> %d %d %d", l[0], l[1], l[2]);
            CHECK(abs(r[0] - 127) <= 4 && abs(r[1] - 127) <= 4 && abs(r[2] - 127) <= 4,
                  "50%% black -> %d %d %d", r[0], r[1], r[2]);
            dl_image_free(&img);
        }
        free(b.data);
        free(cmyk);
    }
    free(rgb);
}

/* ------------------------------------------------------ broken inputs */

/* Find the first SOFn marker in a JPEG and patch its height/width. */
static int patch_sof(uint8_t *p, size_t n, uint16_t w, uint16_t h)
{
    for (size_t i = 2; i + 9 < n; i++) {
        if (p[i] == 0xff && (p[i + 1] == 0xc0 || p[i + 1] == 0xc1 || p[i + 1] == 0xc2)) {
            p[i + 5] = (uint8_t)(h >> 8);
            p[i + 6] = (uint8_t)h;
            p[i + 7] = (uint8_t)(w >> 8);
            p[i + 8] = (uint8_t)w;
            return 0;
        }
    }
    return -1;
}

typedef struct {
    const char *name;
    buf_t data;
    dl_status code;
} bad_case;

static int make_bad_cases(bad_case *bc)
{
    int n = 0;
    /* a valid RGB PNG to cut */
    enum { W = 32, H = 32 };
    uint8_t *rgb = smooth_rgb(W, H);
    png_spec ps = {W, H, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, NULL, 0, rgb, (size_t)W * 3, 0};
    buf_t png = make_png(&ps);
    buf_t t = {0};
    buf_put(&t, png.data, png.size / 2); /* inside IDAT */
    bc[n++] = (bad_case){"truncated.png", t, DL_ERR_FORMAT};
    buf_t t2 = {0};
    buf_put(&t2, png.data, 20); /* inside IHDR */
    bc[n++] = (bad_case){"truncated_ihdr.png", t2, DL_ERR_FORMAT};
    buf_t crc = {0};
    buf_put(&crc, png.data, png.size);
    crc.data[29] ^= 0x55; /* IHDR CRC byte */
    bc[n++] = (bad_case){"bad_crc.png", crc, DL_ERR_FORMAT};
    buf_t zt = {0}; /* zTXt claiming 1.4 GB right after IHDR */
    buf_put(&zt, png.data, 33);
    buf_put(&zt, "\x53\x54\xa9\x1ezTXtkey\0\0x", 13);
    bc[n++] = (bad_case){"truncated_huge_ztxt.png", zt, DL_ERR_FORMAT};
    bc[n++] = (bad_case){"zero_size.png", make_png_header(0, 0), DL_ERR_FORMAT};
    bc[n++] = (bad_case){"huge_100000.png", make_png_header(100000, 100000), DL_ERR_LIMIT};
    bc[n++] = (bad_case){"huge_20000.png", make_png_header(20000, 20000), DL_ERR_LIMIT};
    free(png.data);

    jpeg_spec js = {W, H, 3, JCS_RGB, 90, 0, 0, 2, rgb};
    buf_t jpg = make_jpeg(&js);
    /* cut in the middle of the entropy-coded data (after SOS) */
    size_t sos = 0;
    for (size_t i = 2; i + 1 < jpg.size && !sos; i++)
        if (jpg.data[i] == 0xff && jpg.data[i + 1] == 0xda)
            sos = i;
    size_t cut = (sos + jpg.size) / 2;
    buf_t tj = {0};
    buf_put(&tj, jpg.data, cut);
    bc[n++] = (bad_case){"truncated.jpg", tj, DL_ERR_FORMAT};
    buf_t te = {0}; /* cut, then an EOI as some writers add: still truncated */
    buf_put(&te, jpg.data, cut);
    buf_put(&te, "\xff\xd9", 2);
    bc[n++] = (bad_case){"truncated_eoi.jpg", te, DL_ERR_FORMAT};
    buf_t tj2 = {0};
    buf_put(&tj2, jpg.data, 100); /* inside the header tables */
    bc[n++] = (bad_case){"truncated_header.jpg", tj2, DL_ERR_FORMAT};
    buf_t soi = {0};
    buf_put(&soi, "\xff\xd8\xff", 3);
    bc[n++] = (bad_case){"soi_only.jpg", soi, DL_ERR_FORMAT};
    buf_t hj = {0};
    buf_put(&hj, jpg.data, jpg.size);
    patch_sof(hj.data, hj.size, 65000, 65000);
    bc[n++] = (bad_case){"huge_sof_65000.jpg", hj, DL_ERR_LIMIT};
    js.progressive = 1;
    buf_t pj = make_jpeg(&js);
    patch_sof(pj.data, pj.size, 16384, 16385);
    bc[n++] = (bad_case){"huge_progressive.jpg", pj, DL_ERR_LIMIT};
    free(jpg.data);
    free(rgb);

    buf_t rnd_b = {0};
    for (int i = 0; i < 300; i++) {
        uint8_t c = (uint8_t)rnd();
        if (i == 0 && (c == 0x89 || c == 0xff))
            c = 0x12; /* keep it unknown */
        buf_put(&rnd_b, &c, 1);
    }
    bc[n++] = (bad_case){"random.bin", rnd_b, DL_ERR_UNSUPPORTED};
    buf_t gif = {0};
    buf_put(&gif, "GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14);
    bc[n++] = (bad_case){"tiny.gif", gif, DL_ERR_UNSUPPORTED};
    buf_t sig = {0};
    buf_put(&sig, "\x89PNG\r\n", 6);
    bc[n++] = (bad_case){"short_sig.png", sig, DL_ERR_FORMAT};
    return n;
}

static void test_broken(void)
{
    bad_case bc[32];
    int n = make_bad_cases(bc);
    for (int i = 0; i < n; i++) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
        if (!strcmp(bc[i].name, "bad_crc.png")) { /* CRCs are ignored when fuzzing */
            free(bc[i].data.data);
            continue;
        }
#endif
        dl_image img = {1, 1, 3, (uint8_t *)&img}; /* garbage: must be reset */
        dl_error e = {0};
        int rc = dl_image_load_memory(bc[i].data.data, bc[i].data.size, &img, &e);
        expect_fail(rc, &e, bc[i].code, bc[i].name);
        CHECK(img.pixels == NULL && img.width == 0, "%s: output not cleared", bc[i].name);
        if (strstr(bc[i].name, "truncated"))
            CHECK(strstr(e.message, "truncated") != NULL, "%s: %s", bc[i].name, e.message);
        free(bc[i].data.data);
    }
    dl_image img;
    dl_error e = {0};
    expect_fail(dl_image_load_memory("", 0, &img, &e), &e, DL_ERR_FORMAT, "empty buffer");
    expect_fail(dl_image_load_memory(NULL, 5, &img, &e), &e, DL_ERR_ARG, "NULL data");
    expect_fail(dl_image_load("/nonexistent/dir/x.png", &img, &e), &e, DL_ERR_IO, "missing file");
    CHECK(strstr(e.message, "/nonexistent/dir/x.png") != NULL, "names the path: %s", e.message);

    /* the committed broken samples fail the same way when loaded by path */
    const char *td = getenv("DL_TEST_DATA");
    if (td) {
        static const struct {
            const char *f;
            dl_status code;
        } files[] = {{"truncated.png", DL_ERR_FORMAT},   {"zero_size.png", DL_ERR_FORMAT},
                     {"huge_100000.png", DL_ERR_LIMIT},  {"truncated.jpg", DL_ERR_FORMAT},
                     {"huge_sof_65000.jpg", DL_ERR_LIMIT}};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/images/%s", td, files[i].f);
            int rc = dl_image_load(path, &img, &e);
            expect_fail(rc, &e, files[i].code, files[i].f);
            CHECK(strstr(e.message, path) != NULL, "message names the path: %s", e.message);
        }
    }
}

/* ---------------------------------------------------------------- resize */

/* Straightforward floating-point reference of the triangle filter with
 * widened support, evaluated as one 2-D weighted sum per output pixel. */
static void ref_axis(int in, int out, int i, int *lo, int *hi, double *w)
{
    double scale = (double)in / out, sup = scale > 1 ? scale : 1;
    double center = (i + 0.5) * scale;
    *lo = (int)floor(center - sup) - 1;
    *hi = (int)ceil(center + sup) + 1;
    if (*lo < 0)
        *lo = 0;
    if (*hi > in)
        *hi = in;
    double s = 0;
    for (int j = *lo; j < *hi; j++) {
        double x = fabs((j + 0.5 - center) / sup);
        w[j - *lo] = x < 1 ? 1 - x : 0;
        s += w[j - *lo];
    }
    for (int j = *lo; j < *hi; j++)
        w[j - *lo] /= s;
}

static void ref_resize(const dl_image *src, int W, int H, uint8_t *out)
{
    double *wx = malloc(sizeof(double) * (size_t)(src->width + 4));
    double *wy = malloc(sizeof(double) * (size_t)(src->height + 4));
    for (int y = 0; y < H; y++) {
        int ylo, yhi;
        ref_axis(src->height, H, y, &ylo, &yhi, wy);
        for (int x = 0; x < W; x++) {
            int xlo, xhi;
            ref_axis(src->width, W, x, &xlo, &xhi, wx);
            for (int c = 0; c < 3; c++) {
                double acc = 0;
                for (int j = ylo; j < yhi; j++)
                    for (int i = xlo; i < xhi; i++)
                        acc += wy[j - ylo] * wx[i - xlo] *
                               src->pixels[(size_t)j * src->stride + 3 * (size_t)i + c];
                long v = lround(acc);
                out[((size_t)y * W + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free(wx);
    free(wy);
}

static void test_resize(void)
{
    dl_image src;
    dl_error e = {0};
    CHECK(dl_image_alloc(&src, 53, 41, &e) == 0, "%s", e.message);
    for (int y = 0; y < src.height; y++)
        for (int x = 0; x < src.width * 3; x++)
            src.pixels[(size_t)y * src.stride + x] = (uint8_t)rnd();
    static const int sizes[][2] = {{20, 17}, {100, 90}, {53, 10}, {7, 41}, {1, 1},
                                   {224, 224}, {26, 82}, {53, 41}, {3, 200}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int W = sizes[k][0], H = sizes[k][1];
        dl_image dst;
        int rc = dl_image_resize(&src, W, H, &dst, &e);
        CHECK(rc == 0, "resize to %dx%d: %s", W, H, e.message);
        if (rc != 0)
            continue;
        CHECK(dst.width == W && dst.height == H && dst.stride >= 3 * (size_t)W, "geometry");
        uint8_t *ref = malloc((size_t)W * H * 3);
        ref_resize(&src, W, H, ref);
        int maxd = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W * 3; x++) {
                int d = abs(dst.pixels[(size_t)y * dst.stride + x] - ref[(size_t)y * W * 3 + x]);
                maxd = d > maxd ? d : maxd;
            }
        CHECK(maxd <= 1, "resize %dx%d -> %dx%d: max diff %d vs reference", src.width,
              src.height, W, H, maxd);
        free(ref);
        dl_image_free(&dst);
    }

    /* known values (PIL BILINEAR): 4 -> 2 uses weights 3/7 3/7 1/7 */
    {
        dl_image a, b;
        CHECK(dl_image_alloc(&a, 4, 1, &e) == 0, "%s", e.message);
        static const uint8_t v[4] = {0, 70, 140, 210};
        for (int x = 0; x < 4; x++)
            a.pixels[3 * x] = a.pixels[3 * x + 1] = a.pixels[3 * x + 2] = v[x];
        CHECK(dl_image_resize(&a, 2, 1, &b, &e) == 0, "%s", e.message);
        CHECK(b.pixels[0] == 50 && b.pixels[3] == 160, "got %d %d, want 50 160", b.pixels[0],
              b.pixels[3]);
        dl_image_free(&a);
        dl_image_free(&b);
    }

    /* constant images stay exactly constant, any size, with a padded stride */
    static const uint8_t consts[] = {0, 1, 137, 254, 255};
    for (size_t k = 0; k < sizeof consts; k++) {
        dl_image c = {61, 37, 61 * 3 + 7, NULL};
        c.pixels = malloc(c.stride * c.height);
        memset(c.pixels, consts[k], c.stride * c.height);
        static const int cs[][2] = {{13, 9}, {200, 150}, {61, 5}, {1, 37}};
        for (int s = 0; s < 4; s++) {
            dl_image d;
            int rc = dl_image_resize(&c, cs[s][0], cs[s][1], &d, &e);
            CHECK(rc == 0, "%s", e.message);
            int bad = 0;
            for (int y = 0; rc == 0 && y < d.height; y++)
                for (int x = 0; x < d.width * 3; x++)
                    bad += d.pixels[(size_t)y * d.stride + x] != consts[k];
            CHECK(bad == 0, "constant %d -> %dx%d: %d samples changed", consts[k], cs[s][0],
                  cs[s][1], bad);
            dl_image_free(&d);
        }
        free(c.pixels);
    }

    dl_image d;
    expect_fail(dl_image_resize(&src, 0, 10, &d, &e), &e, DL_ERR_ARG, "zero width");
    expect_fail(dl_image_resize(&src, 10, -3, &d, &e), &e, DL_ERR_ARG, "negative height");
    expect_fail(dl_image_resize(&src, 65536, 10, &d, &e), &e, DL_ERR_LIMIT, "too wide");
    expect_fail(dl_image_resize(&src, 30000, 30000, &d, &e), &e, DL_ERR_LIMIT, "too many px");
    expect_fail(dl_image_resize(&src, 10, 10, &src, &e), &e, DL_ERR_ARG, "dst == src");
    dl_image bad = src;
    bad.stride = 10;
    expect_fail(dl_image_resize(&bad, 10, 10, &d, &e), &e, DL_ERR_ARG, "short stride");
    expect_fail(dl_image_resize(NULL, 10, 10, &d, &e), &e, DL_ERR_ARG, "NULL src");
    dl_image_free(&src);

    expect_fail(dl_image_alloc(&d, 0, 5, &e), &e, DL_ERR_ARG, "alloc 0 width");
    expect_fail(dl_image_alloc(&d, 20000, 20000, &e), &e, DL_ERR_LIMIT, "alloc too large");
    CHECK(dl_image_alloc(&d, 5, 4, &e) == 0 && d.stride == 15 && d.pixels && d.pixels[59] == 0,
          "alloc 5x4");
    dl_image_free(&d);
    dl_image_free(NULL);
}

/* Exact agreement with Pillow: reference files made by Pillow 9.4.0 (see
 * tests/data/images/PROVENANCE.md). Returns 77 if the files are absent. */
static int test_pil_reference(void)
{
    const char *td = getenv("DL_TEST_DATA");
    if (!td) {
        fprintf(stderr, "SKIP Pillow references: DL_TEST_DATA not set\n");
        return 77;
    }
    char path[1024];
    dl_image src, ref, out;
    dl_error e = {0};
    snprintf(path, sizeof path, "%s/images/pil_src.png", td);
    if (dl_image_load(path, &src, &e) != 0) {
        CHECK(0, "%s", e.message);
        return 0;
    }
    static const int sizes[][2] = {{9, 7}, {40, 31}, {23, 5}, {1, 1}, {5, 50}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int W = sizes[k][0], H = sizes[k][1];
        snprintf(path, sizeof path, "%s/images/pil_bilinear_%dx%d.png", td, W, H);
        int rc = dl_image_load(path, &ref, &e);
        CHECK(rc == 0, "%s", e.message);
        if (rc != 0)
            continue;
        rc = dl_image_resize(&src, W, H, &out, &e);
        CHECK(rc == 0, "%s", e.message);
        int bad = 0;
        for (int y = 0; rc == 0 && y < H; y++)
            for (int x = 0; x < W * 3; x++)
                bad += out.pixels[(size_t)y * out.stride + x] != ref.pixels[(size_t)y * ref.stride + x];
        CHECK(bad == 0, "resize to %dx%d: %d samples differ from Pillow BILINEAR", W, H, bad);
        dl_image_free(&out);
        dl_image_free(&ref);
    }
    dl_image_free(&src);

    /* Adobe CMYK JPEG written by Pillow; Pillow's convert('RGB') as reference */
    snprintf(path, sizeof path, "%s/images/pil_cmyk.jpg", td);
    int rc = dl_image_load(path, &src, &e);
    CHECK(rc == 0, "%s", e.message);
    snprintf(path, sizeof path, "%s/images/pil_cmyk_rgb.png", td);
    int rc2 = dl_image_load(path, &ref, &e);
    CHECK(rc2 == 0, "%s", e.message);
    if (rc == 0 && rc2 == 0) {
        int bad = 0;
        CHECK(src.width == ref.width && src.height == ref.height, "CMYK size");
        for (int y = 0; y < src.height && y < ref.height; y++)
            for (int x = 0; x < src.width * 3 && x < ref.width * 3; x++)
                bad += src.pixels[(size_t)y * src.stride + x] != ref.pixels[(size_t)y * ref.stride + x];
        CHECK(bad == 0, "CMYK JPEG: %d samples differ from Pillow", bad);
    }
    dl_image_free(&src);
    dl_image_free(&ref);
    return 0;
}

/* -------------------------------------------------------- fixture emit */

static int emit(const char *dir)
{
    char path[1024];
    const char *sub[] = {"png", "jpeg", "images"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, sub[i]);
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            perror(path);
            return 1;
        }
    }
    int rc = 0;
#define EMIT(sd, name, b)                                                      \
    do {                                                                       \
        snprintf(path, sizeof path, "%s/%s/%s", dir, sd, name);                \
        rc |= write_file(path, (b).data, (b).size);                            \
        printf("%s %zu bytes\n", path, (b).size);                              \
    } while (0)

    /* valid seeds */
    enum { W = 24, H = 16 };
    uint8_t *rgb = smooth_rgb(W, H);
    png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {90, 60, 30}};
    uint8_t trns[2] = {0, 100};
    uint8_t idx[W * H], rows16[W * H * 8];
    for (int i = 0; i < W * H; i++)
        idx[i] = (uint8_t)(i % 4);
    for (size_t i = 0; i < sizeof rows16; i++)
        rows16[i] = (uint8_t)(i * 7);
    struct {
        const char *name;
        png_spec s;
    } pngs[] = {
        {"rgb8.png", {W, H, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, NULL, 0, rgb, (size_t)W * 3, 0}},
        {"rgb8_interlaced.png",
         {W, H, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, NULL, 0, NULL, 0, rgb, (size_t)W * 3, 0}},
        {"palette_trns.png",
         {W, H, PNG_COLOR_TYPE_PALETTE, 8, 0, pal, 4, trns, 2, idx, (size_t)W, 1}},
        {"grey1.png", {W, H, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_ADAM7, NULL, 0, NULL, 0, idx,
                       (size_t)W / 8, 0}},
        {"grey_alpha8.png",
         {W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, NULL, 0, NULL, 0, rgb, (size_t)W * 2, 0}},
        {"rgba16.png",
         {W, H, PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, NULL, 0, NULL, 0, rows16, (size_t)W * 8, 0}},
    };
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
        buf_t b = make_png(&pngs[i].s);
        EMIT("png", pngs[i].name, b);
        free(b.data);
    }
    uint8_t grey[W * H], cmyk[W * H * 4];
    for (int i = 0; i < W * H; i++)
        grey[i] = rgb[3 * i + 1];
    for (int i = 0; i < W * H * 4; i++)
        cmyk[i] = (uint8_t)(255 - rgb[(i / 4) * 3 + (i % 4) % 3]);
    struct {
        const char *name;
        jpeg_spec s;
    } jpgs[] = {
        {"rgb420.jpg", {W, H, 3, JCS_RGB, 80, 0, 0, 2, rgb}},
        {"rgb444.jpg", {W, H, 3, JCS_RGB, 80, 0, 0, 1, rgb}},
        {"progressive.jpg", {W, H, 3, JCS_RGB, 80, 1, 0, 2, rgb}},
        {"restart.jpg", {W, H, 3, JCS_RGB, 80, 0, 1, 2, rgb}},
        {"grey.jpg", {W, H, 1, JCS_GRAYSCALE, 80, 0, 0, 2, grey}},
        {"cmyk_adobe.jpg", {W, H, 4, JCS_CMYK, 80, 0, 0, 2, cmyk}},
    };
    for (size_t i = 0; i < sizeof jpgs / sizeof jpgs[0]; i++) {
        buf_t b = make_jpeg(&jpgs[i].s);
        EMIT("jpeg", jpgs[i].name, b);
        free(b.data);
    }
    free(rgb);

    /* broken ones: every case goes to the corpus; a few also to images/ */
    bad_case bc[32];
    int n = make_bad_cases(bc);
    for (int i = 0; i < n; i++) {
        const char *name = bc[i].name;
        size_t len = strlen(name);
        int is_jpeg = len > 4 && !strcmp(name + len - 4, ".jpg");
        int is_png = len > 4 && !strcmp(name + len - 4, ".png");
        if (is_png || !is_jpeg)
            EMIT("png", name, bc[i].data);
        if (is_jpeg || !is_png)
            EMIT("jpeg", name, bc[i].data);
        if (!strcmp(name, "truncated.png") || !strcmp(name, "zero_size.png") ||
            !strcmp(name, "huge_100000.png") || !strcmp(name, "truncated.jpg") ||
            !strcmp(name, "huge_sof_65000.jpg"))
            EMIT("images", name, bc[i].data);
        free(bc[i].data.data);
    }
#undef EMIT
    return rc ? 1 : 0;
}

/* ------------------------------------------------- EXIF and density (issue 18) */

/* A JPEG with an APP1 EXIF block (orientation o, byte order le) right after SOI. */
static buf_t with_exif(const buf_t *jpg, int o, int le)
{
    uint8_t tiff[8 + 2 + 2 * 12 + 4];
    memset(tiff, 0, sizeof tiff);
#define P16(p, v) (le ? ((p)[0] = (uint8_t)(v), (p)[1] = (uint8_t)((v) >> 8)) : ((p)[0] = (uint8_t)((v) >> 8), (p)[1] = (uint8_t)(v)))
#define P32(p, v) (le ? ((p)[0] = (uint8_t)(v), (p)[1] = (uint8_t)((v) >> 8), (p)[2] = (uint8_t)((v) >> 16), (p)[3] = (uint8_t)((v) >> 24)) \
                      : ((p)[0] = (uint8_t)((v) >> 24), (p)[1] = (uint8_t)((v) >> 16), (p)[2] = (uint8_t)((v) >> 8), (p)[3] = (uint8_t)(v)))
    tiff[0] = tiff[1] = le ? 'I' : 'M';
    P16(tiff + 2, 42);
    P32(tiff + 4, 8);
    P16(tiff + 8, 2);
    uint8_t *e0 = tiff + 10, *e1 = tiff + 22;
    P16(e0, 0x010f); /* Make, ASCII, 4 bytes inline: "Foo" */
    P16(e0 + 2, 2);
    P32(e0 + 4, 4);
    memcpy(e0 + 8, "Foo", 4);
    P16(e1, 0x0112);
    P16(e1 + 2, 3);
    P32(e1 + 4, 1);
    P16(e1 + 8, o);
#undef P16
#undef P32
    buf_t b = {0};
    buf_put(&b, jpg->data, 2);
    size_t len = 2 + 6 + sizeof tiff;
    uint8_t hdr[4] = {0xff, 0xe1, (uint8_t)(len >> 8), (uint8_t)len};
    buf_put(&b, hdr, 4);
    buf_put(&b, "Exif\0\0", 6);
    buf_put(&b, tiff, sizeof tiff);
    buf_put(&b, jpg->data + 2, jpg->size - 2);
    return b;
}

/* Independent reference: the 8 orientations as compositions of a clockwise
 * quarter turn and a left-right mirror. */
static dl_image ref_rot90cw(const dl_image *a)
{
    dl_image o;
    dl_image_alloc(&o, a->height, a->width, NULL);
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++) /* stored (x,y) -> shown (H-1-y, x) */
            memcpy(o.pixels + (size_t)x * o.stride + 3 * (size_t)(a->height - 1 - y),
                   a->pixels + (size_t)y * a->stride + 3 * (size_t)x, 3);
    return o;
}

static dl_image ref_mirror(const dl_image *a)
{
    dl_image o;
    dl_image_alloc(&o, a->width, a->height, NULL);
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++)
            memcpy(o.pixels + (size_t)y * o.stride + 3 * (size_t)(a->width - 1 - x),
                   a->pixels + (size_t)y * a->stride + 3 * (size_t)x, 3);
    return o;
}

/* ops: 'r' = quarter turn clockwise, 'm' = mirror, applied left to right */
static dl_image ref_orient(const dl_image *src, const char *ops)
{
    dl_image cur;
    dl_image_alloc(&cur, src->width, src->height, NULL);
    memcpy(cur.pixels, src->pixels, src->stride * (size_t)src->height);
    for (; *ops; ops++) {
        dl_image n = *ops == 'r' ? ref_rot90cw(&cur) : ref_mirror(&cur);
        dl_image_free(&cur);
        cur = n;
    }
    return cur;
}

static void test_exif(const char *dir)
{
    enum { W = 13, H = 7 };
    uint8_t *rgb = smooth_rgb(W, H);
    jpeg_spec js = {W, H, 3, JCS_RGB, 95, 0, 0, 1, rgb};
    buf_t jpg = make_jpeg(&js);
    dl_image plain;
    dl_error e = {0};
    CHECK(dl_image_load_memory(jpg.data, jpg.size, &plain, &e) == 0, "plain: %s", e.message);
    CHECK(dl_jpeg_exif_orientation(jpg.data, jpg.size) == 1, "no EXIF must read as 1");
    /* 1 none, 2 mirror, 3 180, 4 mirror top-bottom, 5 transpose, 6 cw, 7 transverse, 8 ccw */
    static const char *ops[9] = {"", "", "m", "rr", "rrm", "rm", "r", "rrrm", "rrr"};
    char path[1100];
    snprintf(path, sizeof path, "%s/exif.jpg", dir);
    for (int le = 0; le < 2; le++)
        for (int o = 1; o <= 8; o++) {
            buf_t x = with_exif(&jpg, o, le);
            CHECK(dl_jpeg_exif_orientation(x.data, x.size) == o, "orientation %d (%s) not read", o, le ? "II" : "MM");
            write_file(path, x.data, x.size);
            dl_image got;
            int got_o = 0;
            memset(&e, 0, sizeof e);
            CHECK(dl_image_load_oriented(path, &got, &got_o, &e) == 0, "load %d: %s", o, e.message);
            CHECK(got_o == o, "reported orientation %d, want %d", got_o, o);
            dl_image want = ref_orient(&plain, ops[o]);
            CHECK(got.width == want.width && got.height == want.height, "orientation %d: %dx%d, want %dx%d", o,
                  got.width, got.height, want.width, want.height);
            if (got.width == want.width && got.height == want.height) {
                int same = 1;
                for (int y = 0; y < got.height && same; y++)
                    same = !memcmp(got.pixels + (size_t)y * got.stride, want.pixels + (size_t)y * want.stride,
                                   (size_t)got.width * 3);
                CHECK(same, "orientation %d (%s): pixels differ from the reference", o, le ? "II" : "MM");
            }
            /* every truncation of the file is parsed without reading past it */
            for (size_t n = 0; n < 80 && n < x.size; n++)
                (void)dl_jpeg_exif_orientation(x.data, n);
            dl_image_free(&got);
            dl_image_free(&want);
            free(x.data);
        }
    /* hostile EXIF: bad values, offsets and counts read as 1 (nothing applied) */
    buf_t x = with_exif(&jpg, 9, 1);
    CHECK(dl_jpeg_exif_orientation(x.data, x.size) == 1, "orientation 9 accepted");
    x.data[2 + 4 + 6 + 4] = 0xf0; /* IFD offset far past the block */
    CHECK(dl_jpeg_exif_orientation(x.data, x.size) == 1, "bad IFD offset");
    free(x.data);
    x = with_exif(&jpg, 6, 1);
    x.data[2 + 4 + 6 + 8] = 0xff; /* entry count 0xff: runs past the block */
    x.data[2 + 4 + 6 + 9] = 0xff;
    CHECK(dl_jpeg_exif_orientation(x.data, x.size) == 1, "IFD count past the block");
    free(x.data);
    x = with_exif(&jpg, 6, 1);
    x.data[2 + 4 + 6 + 22 + 2] = 4; /* orientation as LONG: wrong type */
    CHECK(dl_jpeg_exif_orientation(x.data, x.size) == 1, "wrong type accepted");
    x.data[4] = 0xff; /* APP1 length larger than the file */
    x.data[5] = 0xff;
    CHECK(dl_jpeg_exif_orientation(x.data, x.size) == 1, "segment length past the end");
    free(x.data);
    /* PNG files have no EXIF orientation here */
    CHECK(dl_image_apply_orientation(&plain, 0, &e) == -1 && e.code == DL_ERR_ARG, "orientation 0 accepted");
    unlink(path);
    dl_image_free(&plain);
    free(jpg.data);
    free(rgb);
}

/* A tiny file declaring a huge picture is refused before the pixel buffer is
 * allocated (issue 18, item 8); the same header with enough bytes behind it
 * passes that check. */
static void test_density(void)
{
    dl_image img;
    dl_error e = {0};
    buf_t png = make_png_header(5000, 5000); /* 25 Mpx in ~70 bytes */
    int rc = dl_image_load_memory(png.data, png.size, &img, &e);
    expect_fail(rc, &e, DL_ERR_LIMIT, "5000x5000 PNG in 70 bytes");
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    CHECK(strstr(e.message, "refused before decoding") != NULL, "PNG: %s", e.message);
    /* pad to 1 byte per 1024 pixels: no longer refused for its density */
    size_t need = (size_t)5000 * 5000 / DL_DECODE_MAX_PIXELS_PER_BYTE + 1;
    while (png.size < need)
        buf_put(&png, "\0\0\0\0\0\0\0\0", 8);
    memset(&e, 0, sizeof e);
    rc = dl_image_load_memory(png.data, png.size, &img, &e);
    CHECK(rc == 0 || !strstr(e.message, "refused before decoding"), "padded PNG refused: %s", e.message);
    if (rc == 0)
        dl_image_free(&img);
#endif
    free(png.data);

    enum { W = 16, H = 16 };
    uint8_t *rgb = smooth_rgb(W, H);
    jpeg_spec js = {W, H, 3, JCS_RGB, 90, 0, 0, 1, rgb};
    buf_t jpg = make_jpeg(&js);
    /* patch SOF0's height and width to 16000 x 16000 */
    for (size_t i = 2; i + 9 < jpg.size; i++)
        if (jpg.data[i] == 0xff && jpg.data[i + 1] == 0xc0) {
            jpg.data[i + 5] = 16000 >> 8;
            jpg.data[i + 6] = 16000 & 0xff;
            jpg.data[i + 7] = 16000 >> 8;
            jpg.data[i + 8] = 16000 & 0xff;
            break;
        }
    memset(&e, 0, sizeof e);
    rc = dl_image_load_memory(jpg.data, jpg.size, &img, &e);
    expect_fail(rc, &e, DL_ERR_LIMIT, "16000x16000 JPEG in a few hundred bytes");
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    CHECK(strstr(e.message, "16000x16000") && strstr(e.message, "refused before decoding"), "JPEG: %s", e.message);
#endif
    free(jpg.data);
    free(rgb);
}

/* A file that is no image: nothing of its content is echoed in the message. */
static void test_no_echo(void)
{
    static const char secret[] = "root:x:0:0:root:/root:/bin/bash\n";
    dl_image img;
    dl_error e = {0};
    int rc = dl_image_load_memory(secret, sizeof secret - 1, &img, &e);
    expect_fail(rc, &e, DL_ERR_UNSUPPORTED, "text file");
    CHECK(!strstr(e.message, "72 6f 6f 74") && !strstr(e.message, "root"), "content echoed: %s", e.message);
}

/* One memory budget: DERMLENS_MAX_MEMORY_MB also bounds decoded and
 * resampled images (refused before allocating), not only models. */
static void test_memory_budget(void)
{
    dl_error err = {0};
    dl_image img;
    setenv("DERMLENS_MAX_MEMORY_MB", "1", 1);
    CHECK(dl_image_alloc(&img, 1000, 1000, &err) != 0 && err.code == DL_ERR_LIMIT &&
              strstr(err.message, "DERMLENS_MAX_MEMORY_MB"),
          "a 3 MB image under a 1 MiB budget: %s", err.message);
    CHECK(dl_image_alloc(&img, 300, 300, &err) == 0, "a 270 kB image under a 1 MiB budget: %s", err.message);
    dl_image_free(&img);
    unsetenv("DERMLENS_MAX_MEMORY_MB");
    CHECK(dl_image_alloc(&img, 1000, 1000, &err) == 0, "default budget: %s", err.message);
    dl_image_free(&img);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--emit"))
        return emit(argv[2]);

    char dir[] = "/tmp/dl_test_image_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_memory_budget();
    test_png_roundtrip(dir);
    test_png_decode_variants();
    int jr = test_jpeg_real();
    test_jpeg_generated();
    test_broken();
    test_resize();
    test_pil_reference();
    test_exif(dir);
    test_density();
    test_no_echo();

    /* remove the temporary files */
    char cmdpath[1100];
    static const char *names[] = {"rt_c1_d8.png", "rt_c1_d16.png", "rt_c3_d8.png",
                                  "rt_c3_d16.png", "rt_c4_d8.png", "rt_c4_d16.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(cmdpath, sizeof cmdpath, "%s/%s", dir, names[i]);
        unlink(cmdpath);
    }
    if (rmdir(dir) != 0)
        fprintf(stderr, "note: %s not empty (leftover temp files?)\n", dir), g_failures++;

    printf("test_image: %d checks, %d failures\n", g_checks, g_failures);
    if (g_failures)
        return 1;
    return jr == 77 ? 77 : 0;
}
