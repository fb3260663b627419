/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Image I/O for the engine: PNG/JPEG/TIFF/BMP decoding into RGB8 (untrusted input),
 * antialiased bilinear resize (PIL BILINEAR semantics) and atomic PNG writing.
 *
 * Both decoders report errors through longjmp. Each decoder keeps all state
 * that changes after setjmp in a context struct reached through a pointer
 * that is itself never modified, so nothing is indeterminate after a longjmp
 * and the caller frees whatever the context holds. */
#include "formats/formats.h"
#include "dermlens_io.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <stdarg.h>
#include <tiffio.h>

/* Largest image file dl_image_load reads. */
#define DL_MAX_IMAGE_FILE_BYTES ((size_t)512 << 20)
/* libpng: largest single ancillary chunk it may buffer (iCCP, zTXt, ...). */
#define DL_PNG_CHUNK_MALLOC_MAX ((png_alloc_size_t)16 << 20)
#define DL_PNG_CHUNK_CACHE_MAX 1000
/* libjpeg: working memory cap (progressive coefficient buffers, etc.). */
#define DL_JPEG_MAX_MEMORY (1024L << 20)
/* Progressive JPEGs with thousands of scans are a known CPU DoS. */
#define DL_JPEG_MAX_SCANS 500
/* libtiff: largest single allocation of its own (strip/tile buffers, tag
 * arrays); the pixel buffers are ours and go through dl_memory_check. */
#define DL_TIFF_MAX_ALLOC ((size_t)256 << 20)
/* Fuzzing builds decode at most 1 MP so each input stays fast under
 * sanitizers (a 140-byte arithmetic-coded JPEG declaring 3 MP took 1 s
 * under ASan, and timed out on a loaded machine); the limit checks
 * themselves are the same code. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define DL_DECODE_MAX_PIXELS ((int64_t)1 << 20)
#else
#define DL_DECODE_MAX_PIXELS DL_MAX_IMAGE_PIXELS
#endif

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* ------------------------------------------------------------ allocation */

static int check_dims(int width, int height, dl_error *err)
{
    if (width < 1 || height < 1)
        return dl_fail(err, DL_ERR_ARG, "invalid image size %dx%d", width, height);
    if (width > DL_MAX_IMAGE_SIDE || height > DL_MAX_IMAGE_SIDE ||
        (int64_t)width * (int64_t)height > DL_MAX_IMAGE_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT,
                       "image size %dx%d exceeds the limit (side <= %d, %lld pixels)", width,
                       height, DL_MAX_IMAGE_SIDE, (long long)DL_MAX_IMAGE_PIXELS);
    return 0;
}

/* A tiny file declaring a huge picture (libjpeg pads missing data, deflate
 * expands up to ~1030x) is refused before the pixel buffer is allocated. */
static int check_density(const char *fmt, uint64_t w, uint64_t h, size_t size, dl_error *err)
{
    uint64_t px = w * h;
    if (px <= (uint64_t)DL_DECODE_FREE_PIXELS || px / DL_DECODE_MAX_PIXELS_PER_BYTE <= (uint64_t)size)
        return 0;
    return dl_fail(err, DL_ERR_LIMIT,
                   "%s declares %llux%llu pixels (%.1f Mpx) in a file of %zu bytes; above %lld Mpx an image "
                   "needs at least 1 byte per %d pixels (refused before decoding)",
                   fmt, (unsigned long long)w, (unsigned long long)h, (double)px / 1048576.0, size,
                   (long long)(DL_DECODE_FREE_PIXELS >> 20), DL_DECODE_MAX_PIXELS_PER_BYTE);
}

int dl_image_alloc(dl_image *out, int width, int height, dl_error *err)
{
    if (!out)
        return dl_fail(err, DL_ERR_ARG, "dl_image_alloc: NULL output image");
    memset(out, 0, sizeof *out);
    if (check_dims(width, height, err) != 0)
        return -1;
    size_t stride, total;
    if (!dl_mul_size((size_t)width, 3, &stride) || !dl_mul_size(stride, (size_t)height, &total))
        return dl_fail(err, DL_ERR_LIMIT, "image size %dx%d overflows", width, height);
    char what[64];
    snprintf(what, sizeof what, "a %dx%d image", width, height);
    if (dl_memory_check(total, what, err)) return -1;
    uint8_t *p = calloc(total, 1);
    if (!p)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory allocating a %dx%d image (%zu bytes)",
                       width, height, total);
    out->width = width;
    out->height = height;
    out->stride = stride;
    out->pixels = p;
    return 0;
}

void dl_image_free(dl_image *img)
{
    if (!img)
        return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* ------------------------------------------------------------------ PNG */

typedef struct {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size, pos;
    int truncated;          /* read past the end of the buffer */
    char msg[256];          /* libpng's error message */
    dl_image img;           /* freed by the caller on failure */
    png_bytep *rows;
} png_dec;

static void png_dec_error(png_structp png, png_const_charp msg)
{
    png_dec *d = png_get_error_ptr(png);
    snprintf(d->msg, sizeof d->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

/* Warnings (bad sRGB profile, extra data, ...) do not stop decoding, and the
 * engine never prints. */
static void png_dec_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_dec_read(png_structp png, png_bytep out, size_t len)
{
    png_dec *d = png_get_io_ptr(png);
    if (len > d->size - d->pos) {
        d->truncated = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(out, d->data + d->pos, len);
    d->pos += len;
}

/* Runs under setjmp; every mutable value lives in *d. */
static int png_decode(png_dec *d, dl_error *err)
{
    if (setjmp(png_jmpbuf(d->png)))
        return -2; /* libpng error: message in d->msg */

    png_set_user_limits(d->png, DL_MAX_IMAGE_SIDE, DL_MAX_IMAGE_SIDE);
    png_set_chunk_malloc_max(d->png, DL_PNG_CHUNK_MALLOC_MAX);
    png_set_chunk_cache_max(d->png, DL_PNG_CHUNK_CACHE_MAX);
    /* Only IHDR, PLTE, tRNS, IDAT and IEND matter for RGB8 pixels. Skipping
     * every other chunk (text, ICC, ...) unparsed also avoids libpng
     * allocating a buffer of the declared chunk length before reading it. */
    png_set_keep_unknown_chunks(d->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* Let the fuzzer reach past checksums. */
    png_set_crc_action(d->png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
    png_set_option(d->png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
    png_set_read_fn(d->png, d, png_dec_read);
    png_read_info(d->png, d->info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(d->png, d->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (w < 1 || h < 1)
        return dl_fail(err, DL_ERR_FORMAT, "PNG has an empty size %ux%u", (unsigned)w,
                       (unsigned)h);
    if (w > DL_MAX_IMAGE_SIDE || h > DL_MAX_IMAGE_SIDE ||
        (int64_t)w * (int64_t)h > DL_DECODE_MAX_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT, "PNG size %ux%u exceeds the limit (%lld pixels)",
                       (unsigned)w, (unsigned)h, (long long)DL_DECODE_MAX_PIXELS);

    /* Everything to RGB8; gamma and background are ignored, as PIL does. */
    if (depth == 16)
        png_set_strip_16(d->png);
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(d->png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(d->png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(d->png);
    if (ctype & PNG_COLOR_MASK_ALPHA || png_get_valid(d->png, d->info, PNG_INFO_tRNS))
        png_set_strip_alpha(d->png);
    if (interlace != PNG_INTERLACE_NONE)
        (void)png_set_interlace_handling(d->png);
    png_read_update_info(d->png, d->info);

    if (png_get_bit_depth(d->png, d->info) != 8 || png_get_channels(d->png, d->info) != 3 ||
        png_get_rowbytes(d->png, d->info) != (size_t)w * 3)
        return dl_fail(err, DL_ERR_UNSUPPORTED,
                       "PNG colour type %d / bit depth %d could not be converted to RGB8", ctype,
                       depth);

    if (dl_image_alloc(&d->img, (int)w, (int)h, err) != 0)
        return -1;
    d->rows = malloc((size_t)h * sizeof *d->rows);
    if (!d->rows)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory for %u PNG row pointers", (unsigned)h);
    for (png_uint_32 y = 0; y < h; y++)
        d->rows[y] = d->img.pixels + (size_t)y * d->img.stride;
    png_read_image(d->png, d->rows);
    /* Chunks after the image data are not needed; a missing IEND is accepted. */
    return 0;
}

/* Cheap pre-check of IHDR so an absurd size is reported as a limit and not as
 * a libpng parse error. libpng enforces the same limits again. */
static int png_precheck(const uint8_t *p, size_t size, dl_error *err)
{
    if (size < 24 || memcmp(p + 12, "IHDR", 4) != 0)
        return 0;
    uint32_t w = (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | (uint32_t)p[18] << 8 | p[19];
    uint32_t h = (uint32_t)p[20] << 24 | (uint32_t)p[21] << 16 | (uint32_t)p[22] << 8 | p[23];
    if (w == 0 || h == 0)
        return dl_fail(err, DL_ERR_FORMAT, "invalid PNG: size %ux%u in IHDR", (unsigned)w,
                       (unsigned)h);
    if (w > DL_MAX_IMAGE_SIDE || h > DL_MAX_IMAGE_SIDE ||
        (uint64_t)w * h > (uint64_t)DL_DECODE_MAX_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT,
                       "PNG size %ux%u exceeds the limit (side <= %d, %lld pixels)", (unsigned)w,
                       (unsigned)h, DL_MAX_IMAGE_SIDE, (long long)DL_DECODE_MAX_PIXELS);
    return check_density("PNG", w, h, size, err);
}

static int load_png(const uint8_t *data, size_t size, dl_image *out, dl_error *err)
{
    if (png_precheck(data, size, err) != 0)
        return -1;
    png_dec *d = calloc(1, sizeof *d);
    if (!d)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    d->data = data;
    d->size = size;
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_dec_error, png_dec_warning);
    if (d->png)
        d->info = png_create_info_struct(d->png);
    int rc;
    if (!d->png || !d->info) {
        rc = dl_fail(err, DL_ERR_NOMEM, "cannot create the libpng decoder");
    } else {
        rc = png_decode(d, err);
        if (rc == -2) {
            if (d->truncated)
                rc = dl_fail(err, DL_ERR_FORMAT, "truncated PNG (%zu bytes)", size);
            else if (strstr(d->msg, "user limit") || strstr(d->msg, "exceeds"))
                rc = dl_fail(err, DL_ERR_LIMIT, "PNG exceeds a limit: %s", d->msg);
            else if (strstr(d->msg, "memory"))
                rc = dl_fail(err, DL_ERR_NOMEM, "PNG decoder: %s", d->msg);
            else
                rc = dl_fail(err, DL_ERR_FORMAT, "invalid PNG: %s", d->msg);
        }
    }
    if (d->png)
        png_destroy_read_struct(&d->png, d->info ? &d->info : NULL, NULL);
    free(d->rows);
    if (rc == 0)
        *out = d->img;
    else
        dl_image_free(&d->img);
    free(d);
    return rc;
}

/* ------------------------------------------------------------------ JPEG */

typedef struct {
    struct jpeg_error_mgr pub; /* first member: libjpeg casts cinfo->err to this */
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    struct jpeg_progress_mgr progress;
    int created;
    dl_image img;
    uint8_t *row;              /* grey / CMYK scanline before conversion */
} jpeg_dec;

static void jpeg_dec_error_exit(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_dec_output_message(j_common_ptr cinfo)
{
    (void)cinfo; /* the engine never prints */
}

static void jpeg_dec_emit_message(j_common_ptr cinfo, int level)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level >= 0)
        return; /* trace messages */
    e->pub.num_warnings++;
    /* libjpeg would pad missing scan data with grey and return a picture that
     * is partly made up; report it instead. JWRN_HIT_MARKER is the same
     * truncation when a marker (often a writer's EOI) follows the cut. */
    if (e->pub.msg_code == JWRN_JPEG_EOF || e->pub.msg_code == JWRN_HIT_MARKER) {
        e->truncated = 1;
        (*cinfo->err->format_message)(cinfo, e->msg);
        longjmp(e->jb, 1);
    }
}

static void jpeg_dec_progress(j_common_ptr cinfo)
{
    if (!cinfo->is_decompressor)
        return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > DL_JPEG_MAX_SCANS) {
        jpeg_err *e = (jpeg_err *)cinfo->err;
        snprintf(e->msg, sizeof e->msg, "more than %d scans", DL_JPEG_MAX_SCANS);
        e->pub.msg_code = -1;
        longjmp(e->jb, 2);
    }
}

static int jpeg_decode(jpeg_dec *d, const uint8_t *data, size_t size, dl_error *err)
{
    switch (setjmp(d->jerr.jb)) {
    case 0:
        break;
    case 2:
        return -3; /* too many scans */
    default:
        return -2; /* libjpeg error or truncation: message in d->jerr */
    }

    jpeg_create_decompress(&d->cinfo);
    d->created = 1;
    d->cinfo.mem->max_memory_to_use = DL_JPEG_MAX_MEMORY;
    d->progress.progress_monitor = jpeg_dec_progress;
    d->cinfo.progress = &d->progress;
    if ((unsigned long)size != size)
        return dl_fail(err, DL_ERR_LIMIT, "JPEG data too large (%zu bytes)", size);
    jpeg_mem_src(&d->cinfo, data, (unsigned long)size);
    (void)jpeg_read_header(&d->cinfo, TRUE);

    unsigned w = d->cinfo.image_width, h = d->cinfo.image_height;
    if (w < 1 || h < 1)
        return dl_fail(err, DL_ERR_FORMAT, "invalid JPEG: size %ux%u", w, h);
    if (w > DL_MAX_IMAGE_SIDE || h > DL_MAX_IMAGE_SIDE ||
        (uint64_t)w * h > (uint64_t)DL_DECODE_MAX_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT,
                       "JPEG size %ux%u exceeds the limit (side <= %d, %lld pixels)", w, h,
                       DL_MAX_IMAGE_SIDE, (long long)DL_DECODE_MAX_PIXELS);
    if (check_density("JPEG", w, h, size, err) != 0)
        return -1;

    int cmyk = 0;
    switch (d->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        d->cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_RGB:
    case JCS_YCbCr:
        d->cinfo.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        d->cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        return dl_fail(err, DL_ERR_UNSUPPORTED, "JPEG colour space %d with %d components",
                       (int)d->cinfo.jpeg_color_space, d->cinfo.num_components);
    }
    (void)jpeg_start_decompress(&d->cinfo);
    int nc = d->cinfo.output_components;
    if (d->cinfo.output_width != w || d->cinfo.output_height != h ||
        nc != (cmyk ? 4 : d->cinfo.out_color_space == JCS_GRAYSCALE ? 1 : 3))
        return dl_fail(err, DL_ERR_UNSUPPORTED, "unexpected JPEG output layout");

    if (dl_image_alloc(&d->img, (int)w, (int)h, err) != 0)
        return -1;
    if (nc != 3) {
        d->row = malloc((size_t)w * (size_t)nc);
        if (!d->row)
            return dl_fail(err, DL_ERR_NOMEM, "out of memory for a JPEG scanline");
    }
    /* Photoshop writes Adobe-marked CMYK inverted (0 = full ink). */
    int inverted = d->cinfo.saw_Adobe_marker;
    while (d->cinfo.output_scanline < d->cinfo.output_height) {
        uint8_t *dst = d->img.pixels + (size_t)d->cinfo.output_scanline * d->img.stride;
        JSAMPROW r = nc == 3 ? dst : d->row;
        if (jpeg_read_scanlines(&d->cinfo, &r, 1) != 1)
            return dl_fail(err, DL_ERR_FORMAT, "JPEG decoder returned no scanline");
        if (nc == 1) {
            for (unsigned x = 0; x < w; x++)
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = d->row[x];
        } else if (nc == 4) {
            for (unsigned x = 0; x < w; x++) {
                const uint8_t *p = d->row + 4 * (size_t)x;
                /* ink amounts c,m,y,k in 0..255; rgb = (255-ink)(255-k)/255 */
                unsigned k = inverted ? p[3] : 255u - p[3];
                for (int c = 0; c < 3; c++) {
                    unsigned v = inverted ? p[c] : 255u - p[c];
                    dst[3 * x + c] = (uint8_t)((v * k + 127) / 255);
                }
            }
        }
    }
    /* Trailing data after the image is not needed; skip jpeg_finish_decompress
     * so a missing EOI after complete scan data is accepted. */
    return 0;
}

static int load_jpeg(const uint8_t *data, size_t size, dl_image *out, dl_error *err)
{
    jpeg_dec *d = calloc(1, sizeof *d);
    if (!d)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    d->cinfo.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = jpeg_dec_error_exit;
    d->jerr.pub.output_message = jpeg_dec_output_message;
    d->jerr.pub.emit_message = jpeg_dec_emit_message;

    int rc = jpeg_decode(d, data, size, err);
    if (rc == -3) {
        rc = dl_fail(err, DL_ERR_LIMIT, "JPEG has %s", d->jerr.msg);
    } else if (rc == -2) {
        int code = d->jerr.pub.msg_code;
        if (d->jerr.truncated)
            rc = dl_fail(err, DL_ERR_FORMAT, "truncated JPEG (%zu bytes): %s", size, d->jerr.msg);
        else if (code == JERR_IMAGE_TOO_BIG || code == JERR_NO_BACKING_STORE)
            rc = dl_fail(err, DL_ERR_LIMIT, "JPEG exceeds a limit: %s", d->jerr.msg);
        else if (code == JERR_OUT_OF_MEMORY)
            rc = dl_fail(err, DL_ERR_NOMEM, "JPEG decoder: %s", d->jerr.msg);
        else if (code == JERR_CONVERSION_NOTIMPL || code == JERR_NOT_COMPILED ||
                 code == JERR_ARITH_NOTIMPL || code == JERR_BAD_PRECISION ||
                 code == JERR_SOF_UNSUPPORTED)
            rc = dl_fail(err, DL_ERR_UNSUPPORTED, "JPEG feature not supported: %s",
                         d->jerr.msg);
        else
            rc = dl_fail(err, DL_ERR_FORMAT, "invalid JPEG: %s", d->jerr.msg);
    }
    if (d->created)
        jpeg_destroy_decompress(&d->cinfo);
    free(d->row);
    if (rc == 0)
        *out = d->img;
    else
        dl_image_free(&d->img);
    free(d);
    return rc;
}

/* ------------------------------------------------------------------ TIFF */

/* libtiff reads from memory through client callbacks; its error and warning
 * messages go to handlers given at open time (the engine never prints). */
typedef struct {
    const uint8_t *data;
    size_t size, pos;
    char msg[256];          /* libtiff's first error */
} tiff_mem;

static tmsize_t tiff_mem_read(thandle_t h, void *buf, tmsize_t n)
{
    tiff_mem *m = h;
    if (n <= 0)
        return 0;
    size_t left = m->size - m->pos, k = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, m->data + m->pos, k);
    m->pos += k;
    return (tmsize_t)k;
}

static tmsize_t tiff_mem_write(thandle_t h, void *buf, tmsize_t n)
{
    (void)h;
    (void)buf;
    (void)n;
    return -1; /* read-only */
}

static toff_t tiff_mem_seek(thandle_t h, toff_t off, int whence)
{
    tiff_mem *m = h;
    uint64_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size : 0;
    /* off is unsigned; libtiff passes negative offsets as wrapped values */
    uint64_t to = base + (uint64_t)off;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END)
        return (toff_t)-1;
    if (to > m->size)
        to = m->size; /* reads past the end then return short counts */
    m->pos = (size_t)to;
    return (toff_t)to;
}

static int tiff_mem_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t tiff_mem_size(thandle_t h)
{
    return (toff_t)((tiff_mem *)h)->size;
}

static int tiff_mem_map(thandle_t h, void **base, toff_t *size)
{
    (void)h;
    (void)base;
    (void)size;
    return 0; /* not mapped: libtiff reads through tiff_mem_read */
}

static void tiff_mem_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

static int tiff_on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    (void)module;
    tiff_mem *m = user;
    if (!m->msg[0])
        vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    return 1; /* handled: libtiff's global handler (stderr) is not called */
}

static int tiff_on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    (void)user;
    (void)module;
    (void)fmt;
    (void)ap;
    return 1;
}

/* The first page (directory) through libtiff's RGBA interface, which
 * handles every photometric it knows (grey, palette, RGB, YCbCr, CMYK, Lab,
 * 1..16 bits, strips and tiles). Alpha is dropped. */
static int load_tiff(const uint8_t *data, size_t size, dl_image *out, dl_error *err)
{
    tiff_mem m = {.data = data, .size = size};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_on_error, &m);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_on_warning, &m);
    /* No single allocation inside libtiff (strip buffers, tag arrays) may
     * exceed this; the pixel buffers are ours and checked below. */
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)DL_TIFF_MAX_ALLOC);
    TIFF *tif = TIFFClientOpenExt("TIFF", "rm", &m, tiff_mem_read, tiff_mem_write, tiff_mem_seek,
                                  tiff_mem_close, tiff_mem_size, tiff_mem_map, tiff_mem_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (!tif)
        return dl_fail(err, DL_ERR_FORMAT, "invalid TIFF: %s", m.msg[0] ? m.msg : "cannot read the header");
    int rc = -1;
    uint32_t *raster = NULL;
    uint32_t w = 0, h = 0;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) || w < 1 ||
        h < 1) {
        rc = dl_fail(err, DL_ERR_FORMAT, "invalid TIFF: size %ux%u", (unsigned)w, (unsigned)h);
        goto out;
    }
    if (w > DL_MAX_IMAGE_SIDE || h > DL_MAX_IMAGE_SIDE || (uint64_t)w * h > (uint64_t)DL_DECODE_MAX_PIXELS) {
        rc = dl_fail(err, DL_ERR_LIMIT, "TIFF size %ux%u exceeds the limit (side <= %d, %lld pixels)",
                     (unsigned)w, (unsigned)h, DL_MAX_IMAGE_SIDE, (long long)DL_DECODE_MAX_PIXELS);
        goto out;
    }
    if (check_density("TIFF", w, h, size, err) != 0)
        goto out;
    char emsg[1024] = "";
    if (!TIFFRGBAImageOK(tif, emsg)) {
        rc = dl_fail(err, DL_ERR_UNSUPPORTED, "TIFF feature not supported: %s", emsg[0] ? emsg : m.msg);
        goto out;
    }
    /* the 32-bit RGBA raster libtiff fills, then our RGB8 copy */
    size_t px = (size_t)w * h, bytes;
    if (!dl_mul_size(px, 7, &bytes)) {
        rc = dl_fail(err, DL_ERR_LIMIT, "TIFF size %ux%u overflows", (unsigned)w, (unsigned)h);
        goto out;
    }
    if (dl_memory_check(bytes, "a TIFF raster and its RGB copy", err) != 0)
        goto out;
    bytes = px * 4;
    raster = malloc(bytes);
    if (!raster) {
        rc = dl_fail(err, DL_ERR_NOMEM, "out of memory for a %ux%u TIFF", (unsigned)w, (unsigned)h);
        goto out;
    }
    /* top row first, as every other decoder */
    if (!TIFFReadRGBAImageOriented(tif, w, h, raster, ORIENTATION_TOPLEFT, 1)) {
        rc = dl_fail(err, DL_ERR_FORMAT, "invalid TIFF: %s", m.msg[0] ? m.msg : "cannot decode the image data");
        goto out;
    }
    if (dl_image_alloc(out, (int)w, (int)h, err) != 0)
        goto out;
    for (uint32_t y = 0; y < h; y++) {
        const uint32_t *src = raster + (size_t)y * w;
        uint8_t *dst = out->pixels + (size_t)y * out->stride;
        for (uint32_t x = 0; x < w; x++) {
            dst[3 * x] = (uint8_t)TIFFGetR(src[x]);
            dst[3 * x + 1] = (uint8_t)TIFFGetG(src[x]);
            dst[3 * x + 2] = (uint8_t)TIFFGetB(src[x]);
        }
    }
    rc = 0;
out:
    free(raster);
    TIFFClose(tif);
    return rc;
}

/* ------------------------------------------------------------------ BMP */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned le16(const uint8_t *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* One channel of a bit-field pixel, scaled to 0..255. */
typedef struct {
    uint32_t mask;
    int shift;
    uint32_t max;
} bmp_field;

static bmp_field bmp_field_of(uint32_t mask)
{
    bmp_field f = {mask, 0, 0};
    if (!mask)
        return f;
    while (!((mask >> f.shift) & 1))
        f.shift++;
    f.max = mask >> f.shift;
    return f;
}

static uint8_t bmp_field_get(const bmp_field *f, uint32_t v)
{
    if (!f->max)
        return 0;
    uint64_t x = (v & f->mask) >> f->shift;
    return (uint8_t)((x * 255 + f->max / 2) / f->max);
}

/* Windows / OS/2 bitmaps: uncompressed 1, 4, 8, 16, 24 and 32 bits per
 * pixel, bit fields for 16 and 32; palette indices past the palette read as
 * black. RLE and embedded JPEG/PNG are refused. Every offset and size is
 * checked against the data before it is used. */
static int load_bmp(const uint8_t *p, size_t size, dl_image *out, dl_error *err)
{
    if (size < 14 + 12)
        return dl_fail(err, DL_ERR_FORMAT, "truncated BMP (%zu bytes)", size);
    uint32_t offset = le32(p + 10), hsize = le32(p + 14);
    const uint8_t *h = p + 14;
    int64_t w, ht;
    unsigned planes, bpp;
    uint32_t comp = 0, colours = 0;
    int core = hsize == 12; /* BITMAPCOREHEADER: 16-bit sizes, 3-byte palette */
    if (core) {
        w = le16(h + 4);
        ht = le16(h + 6);
        planes = le16(h + 8);
        bpp = le16(h + 10);
    } else if (hsize == 40 || hsize == 52 || hsize == 56 || hsize == 64 || hsize == 108 || hsize == 124) {
        if (size < 14 + (size_t)hsize)
            return dl_fail(err, DL_ERR_FORMAT, "truncated BMP header (%zu bytes)", size);
        w = (int32_t)le32(h + 4);
        ht = (int32_t)le32(h + 8);
        planes = le16(h + 12);
        bpp = le16(h + 14);
        comp = le32(h + 16);
        colours = le32(h + 32);
    } else {
        return dl_fail(err, DL_ERR_UNSUPPORTED, "BMP header of %u bytes is not supported", (unsigned)hsize);
    }
    int top_down = ht < 0;
    if (top_down)
        ht = -ht;
    if (w < 1 || ht < 1 || planes != 1)
        return dl_fail(err, DL_ERR_FORMAT, "invalid BMP: size %lldx%lld, %u planes", (long long)w,
                       (long long)ht, planes);
    if (w > DL_MAX_IMAGE_SIDE || ht > DL_MAX_IMAGE_SIDE || w * ht > DL_DECODE_MAX_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT, "BMP size %lldx%lld exceeds the limit (side <= %d, %lld pixels)",
                       (long long)w, (long long)ht, DL_MAX_IMAGE_SIDE, (long long)DL_DECODE_MAX_PIXELS);
    /* OS/2 2.x (64-byte header) numbers its compressions differently */
    int bitfields = !core && hsize != 64 && (comp == 3 || comp == 6);
    if (comp != 0 && !bitfields)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "compressed BMP (compression %u: RLE, JPEG or PNG) is not supported",
                       (unsigned)comp);
    if (!(bpp == 1 || bpp == 4 || bpp == 8 || bpp == 16 || bpp == 24 || bpp == 32) ||
        (bitfields && bpp != 16 && bpp != 32))
        return dl_fail(err, DL_ERR_UNSUPPORTED, "BMP with %u bits per pixel%s is not supported", bpp,
                       bitfields ? " and bit fields" : "");
    /* row size rounded up to 4 bytes; all of the pixel data must be there */
    uint64_t row = ((uint64_t)w * bpp + 31) / 32 * 4, need = row * (uint64_t)ht;
    if (offset < 14 + hsize || offset > size || need > size - offset)
        return dl_fail(err, DL_ERR_FORMAT, "truncated BMP: %llu bytes of pixels at offset %u, file has %zu",
                       (unsigned long long)need, (unsigned)offset, size);

    bmp_field f[3];
    if (bpp == 16 || bpp == 32) {
        uint32_t masks[3] = {0x7c00, 0x03e0, 0x001f};
        if (bpp == 32) {
            masks[0] = 0xff0000;
            masks[1] = 0x00ff00;
            masks[2] = 0x0000ff;
        }
        if (bitfields) {
            /* right after the 40-byte header, inside the larger ones */
            if (size < 14 + 40 + 12 || 14 + 40 + 12 > offset)
                return dl_fail(err, DL_ERR_FORMAT, "truncated BMP bit fields");
            for (int c = 0; c < 3; c++)
                masks[c] = le32(h + 40 + 4 * c);
        }
        for (int c = 0; c < 3; c++)
            f[c] = bmp_field_of(masks[c]);
    }
    uint8_t pal[256][3];
    int npal = 0;
    if (bpp <= 8) {
        size_t entry = core ? 3 : 4, start = 14 + (size_t)hsize + (bitfields && hsize == 40 ? 12 : 0);
        uint32_t want = colours && colours < (1u << bpp) ? colours : 1u << bpp;
        /* a palette cut short by the pixel data keeps what is there */
        size_t avail = offset > start ? (offset - start) / entry : 0;
        npal = (int)(want < avail ? want : avail);
        memset(pal, 0, sizeof pal);
        for (int i = 0; i < npal; i++) {
            const uint8_t *e = p + start + entry * (size_t)i;
            pal[i][0] = e[2];
            pal[i][1] = e[1];
            pal[i][2] = e[0];
        }
    }
    if (dl_image_alloc(out, (int)w, (int)ht, err) != 0)
        return -1;
    for (int64_t y = 0; y < ht; y++) {
        const uint8_t *src = p + offset + (size_t)row * (size_t)(top_down ? y : ht - 1 - y);
        uint8_t *dst = out->pixels + (size_t)y * out->stride;
        for (int64_t x = 0; x < w; x++, dst += 3) {
            switch (bpp) {
            case 24:
                dst[0] = src[3 * x + 2];
                dst[1] = src[3 * x + 1];
                dst[2] = src[3 * x];
                break;
            case 16:
            case 32: {
                uint32_t v = bpp == 16 ? le16(src + 2 * x) : le32(src + 4 * x);
                for (int c = 0; c < 3; c++)
                    dst[c] = bmp_field_get(&f[c], v);
                break;
            }
            default: {
                /* 1, 4, 8 bits: leftmost pixel in the high bits */
                unsigned per = 8 / bpp, byte = src[x / per];
                unsigned shift = (unsigned)(per - 1 - x % per) * bpp;
                unsigned idx = (byte >> shift) & ((1u << bpp) - 1);
                memcpy(dst, (int)idx < npal ? pal[idx] : (const uint8_t[3]){0, 0, 0}, 3);
            }
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ load */

static const char *sniff_other(const uint8_t *p, size_t n)
{
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6)))
        return "GIF";
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return "WebP";
    if (n >= 12 && !memcmp(p + 4, "ftyp", 4))
        return "HEIF/AVIF";
    return NULL;
}

/* Classic and BigTIFF byte-order marks. */
static int is_tiff(const uint8_t *p, size_t n)
{
    return n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4) || !memcmp(p, "II+\0", 4) ||
                      !memcmp(p, "MM\0+", 4));
}

int dl_image_load_memory(const void *data, size_t size, dl_image *out, dl_error *err)
{
    if (!out)
        return dl_fail(err, DL_ERR_ARG, "dl_image_load_memory: NULL output image");
    memset(out, 0, sizeof *out);
    if (!data && size > 0)
        return dl_fail(err, DL_ERR_ARG, "dl_image_load_memory: NULL data");
    if (size == 0)
        return dl_fail(err, DL_ERR_FORMAT, "empty image data");
    const uint8_t *p = data;
    size_t n8 = size < 8 ? size : 8;
    if (memcmp(p, png_magic, n8) == 0) {
        if (size < 8)
            return dl_fail(err, DL_ERR_FORMAT, "truncated PNG (%zu bytes)", size);
        return load_png(p, size, out, err);
    }
    if (p[0] == 0xff && (size < 2 || p[1] == 0xd8)) {
        if (size < 3)
            return dl_fail(err, DL_ERR_FORMAT, "truncated JPEG (%zu bytes)", size);
        if (p[2] == 0xff)
            return load_jpeg(p, size, out, err);
    }
    if (is_tiff(p, size))
        return load_tiff(p, size, out, err);
    if (size >= 2 && !memcmp(p, "BM", 2))
        return load_bmp(p, size, out, err);
    const char *other = sniff_other(p, size);
    if (other)
        return dl_fail(err, DL_ERR_UNSUPPORTED,
                       "%s images are not supported (only PNG, JPEG, TIFF and BMP)", other);
    /* nothing of the file's content goes into the message: it may be any
     * file (a key, a log) and messages end up in CSVs and terminals */
    return dl_fail(err, DL_ERR_UNSUPPORTED,
                   "not a PNG, JPEG, TIFF or BMP image (unknown format; only those are supported)");
}

int dl_image_load(const char *path, dl_image *out, dl_error *err)
{
    if (!out)
        return dl_fail(err, DL_ERR_ARG, "dl_image_load: NULL output image");
    memset(out, 0, sizeof *out);
    if (!path)
        return dl_fail(err, DL_ERR_ARG, "dl_image_load: NULL path");
    uint8_t *data = NULL;
    size_t size = 0;
    if (dl_read_file(path, DL_MAX_IMAGE_FILE_BYTES, &data, &size, err) != 0)
        return -1; /* dl_read_file names the path */
    int rc = dl_image_load_memory(data, size, out, err);
    free(data);
    if (rc != 0)
        return dl_fail_prefix(err, "%s", path);
    return 0;
}

/* ------------------------------------------------------------ EXIF orientation */

static unsigned exif_u16(const uint8_t *p, int le)
{
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t exif_u32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Orientation tag (0x0112) of IFD0 of a TIFF structure t[0..n); 0 if none. */
static int exif_tiff_orientation(const uint8_t *t, size_t n)
{
    if (n < 8)
        return 0;
    int le;
    if (t[0] == 'I' && t[1] == 'I')
        le = 1;
    else if (t[0] == 'M' && t[1] == 'M')
        le = 0;
    else
        return 0;
    if (exif_u16(t + 2, le) != 42)
        return 0;
    uint32_t ifd = exif_u32(t + 4, le);
    if (ifd < 8 || ifd > n - 2)
        return 0;
    size_t count = exif_u16(t + ifd, le);
    if (count > (n - ifd - 2) / 12)
        return 0; /* entries run past the segment */
    for (size_t i = 0; i < count; i++) {
        const uint8_t *e = t + ifd + 2 + 12 * i;
        if (exif_u16(e, le) != 0x0112)
            continue;
        if (exif_u16(e + 2, le) != 3 || exif_u32(e + 4, le) != 1) /* SHORT, one value */
            return 0;
        unsigned v = exif_u16(e + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

int dl_jpeg_exif_orientation(const void *data, size_t size)
{
    const uint8_t *p = data;
    if (!p || size < 4 || p[0] != 0xff || p[1] != 0xd8)
        return 1;
    size_t pos = 2;
    while (size - pos >= 4) {
        if (p[pos] != 0xff)
            return 1; /* not a marker: give up, the decoder will judge the file */
        unsigned marker = p[pos + 1];
        if (marker == 0xff) { /* fill byte */
            pos++;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) { /* no length */
            pos += 2;
            continue;
        }
        if (marker == 0xda || marker == 0xd9) /* image data or end: no EXIF after this */
            return 1;
        size_t len = (size_t)p[pos + 2] << 8 | p[pos + 3];
        if (len < 2 || len > size - pos - 2)
            return 1;
        const uint8_t *seg = p + pos + 4;
        size_t slen = len - 2;
        if (marker == 0xe1 && slen >= 6 && memcmp(seg, "Exif\0\0", 6) == 0) {
            int o = exif_tiff_orientation(seg + 6, slen - 6);
            return o ? o : 1; /* the first EXIF block decides */
        }
        pos += 2 + len;
    }
    return 1;
}

const char *dl_orientation_description(int o)
{
    switch (o) {
    case 2: return "mirrored left-right";
    case 3: return "rotated 180 degrees";
    case 4: return "mirrored top-bottom";
    case 5: return "mirrored along the main diagonal (transposed)";
    case 6: return "rotated 90 degrees clockwise";
    case 7: return "mirrored along the anti-diagonal (transversed)";
    case 8: return "rotated 90 degrees counter-clockwise";
    default: return "as stored";
    }
}

int dl_image_apply_orientation(dl_image *img, int o, dl_error *err)
{
    if (!img || !img->pixels)
        return dl_fail(err, DL_ERR_ARG, "dl_image_apply_orientation: no image");
    if (o < 1 || o > 8)
        return dl_fail(err, DL_ERR_ARG, "EXIF orientation %d (1..8)", o);
    if (o == 1)
        return 0;
    int W = img->width, H = img->height, swap = o >= 5;
    dl_image out;
    if (dl_image_alloc(&out, swap ? H : W, swap ? W : H, err) != 0)
        return -1;
    /* For each displayed pixel (x, y), the stored pixel (sx, sy) it shows. */
    for (int y = 0; y < out.height; y++) {
        uint8_t *d = out.pixels + (size_t)y * out.stride;
        for (int x = 0; x < out.width; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;
            case 4: sx = x; sy = H - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = H - 1 - x; break;
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;
            default: sx = W - 1 - y; sy = x; break; /* 8 */
            }
            memcpy(d + 3 * (size_t)x, img->pixels + (size_t)sy * img->stride + 3 * (size_t)sx, 3);
        }
    }
    dl_image_free(img);
    *img = out;
    return 0;
}

int dl_image_load_oriented(const char *path, dl_image *out, int *orientation, dl_error *err)
{
    if (orientation)
        *orientation = 1;
    if (!out)
        return dl_fail(err, DL_ERR_ARG, "dl_image_load_oriented: NULL output image");
    memset(out, 0, sizeof *out);
    if (!path)
        return dl_fail(err, DL_ERR_ARG, "dl_image_load_oriented: NULL path");
    uint8_t *data = NULL;
    size_t size = 0;
    if (dl_read_file(path, DL_MAX_IMAGE_FILE_BYTES, &data, &size, err) != 0)
        return -1; /* dl_read_file names the path */
    int rc = dl_image_load_memory(data, size, out, err);
    int o = rc == 0 ? dl_jpeg_exif_orientation(data, size) : 1;
    free(data);
    if (rc == 0 && o != 1 && dl_image_apply_orientation(out, o, err) != 0) {
        dl_image_free(out);
        rc = -1;
    }
    if (rc != 0)
        return dl_fail_prefix(err, "%s", path);
    if (orientation)
        *orientation = o;
    return 0;
}

/* ---------------------------------------------------------------- resize */

/* Fixed-point weights as in PIL (22 fraction bits, 8-bit intermediate), so
 * results match PIL's Image.resize(..., BILINEAR) pixel for pixel. */
#define DL_RS_BITS 22

typedef struct {
    int ksize;    /* max taps per output */
    int *start;   /* [out] first input index */
    int *count;   /* [out] number of taps */
    int32_t *w;   /* [out * ksize] */
} rs_coeffs;

static void rs_free(rs_coeffs *c)
{
    free(c->start);
    free(c->count);
    free(c->w);
    memset(c, 0, sizeof *c);
}

static double rs_triangle(double x)
{
    if (x < 0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static int rs_precompute(int in, int out, rs_coeffs *c, dl_error *err)
{
    memset(c, 0, sizeof *c);
    double scale = (double)in / out;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = fscale; /* triangle support 1, widened when shrinking */
    c->ksize = (int)ceil(support) * 2 + 1;
    size_t nw;
    if (!dl_mul_size((size_t)out, (size_t)c->ksize, &nw))
        return dl_fail(err, DL_ERR_LIMIT, "resize weights overflow");
    c->start = malloc((size_t)out * sizeof *c->start);
    c->count = malloc((size_t)out * sizeof *c->count);
    c->w = malloc(nw * sizeof *c->w);
    double *tmp = malloc((size_t)c->ksize * sizeof *tmp);
    if (!c->start || !c->count || !c->w || !tmp) {
        free(tmp);
        rs_free(c);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory for resize weights");
    }
    double inv = 1.0 / fscale;
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        int n = hi - lo;
        if (n > c->ksize)
            n = c->ksize;
        double sum = 0;
        for (int j = 0; j < n; j++) {
            tmp[j] = rs_triangle((j + lo - center + 0.5) * inv);
            sum += tmp[j];
        }
        int32_t *w = c->w + (size_t)i * c->ksize;
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? tmp[j] / sum : 0.0;
            w[j] = (int32_t)(v * (1 << DL_RS_BITS) + 0.5); /* weights are >= 0 */
        }
        c->start[i] = lo;
        c->count[i] = n;
    }
    free(tmp);
    return 0;
}

static inline uint8_t rs_clip(int32_t v)
{
    v >>= DL_RS_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

static void rs_horizontal(const dl_image *src, dl_image *dst, const rs_coeffs *c)
{
    for (int y = 0; y < src->height; y++) {
        const uint8_t *in = src->pixels + (size_t)y * src->stride;
        uint8_t *o = dst->pixels + (size_t)y * dst->stride;
        for (int x = 0; x < dst->width; x++) {
            const int32_t *w = c->w + (size_t)x * c->ksize;
            const uint8_t *p = in + 3 * (size_t)c->start[x];
            int32_t r = 1 << (DL_RS_BITS - 1), g = r, b = r;
            for (int k = 0; k < c->count[x]; k++) {
                r += p[3 * k] * w[k];
                g += p[3 * k + 1] * w[k];
                b += p[3 * k + 2] * w[k];
            }
            o[3 * x] = rs_clip(r);
            o[3 * x + 1] = rs_clip(g);
            o[3 * x + 2] = rs_clip(b);
        }
    }
}

static void rs_vertical(const dl_image *src, dl_image *dst, const rs_coeffs *c)
{
    size_t n = (size_t)dst->width * 3;
    for (int y = 0; y < dst->height; y++) {
        const int32_t *w = c->w + (size_t)y * c->ksize;
        const uint8_t *base = src->pixels + (size_t)c->start[y] * src->stride;
        uint8_t *o = dst->pixels + (size_t)y * dst->stride;
        for (size_t x = 0; x < n; x++) {
            int32_t s = 1 << (DL_RS_BITS - 1);
            for (int k = 0; k < c->count[y]; k++)
                s += base[(size_t)k * src->stride + x] * w[k];
            o[x] = rs_clip(s);
        }
    }
}

int dl_image_resize(const dl_image *src, int width, int height, dl_image *dst, dl_error *err)
{
    if (!src || !dst)
        return dl_fail(err, DL_ERR_ARG, "dl_image_resize: NULL image");
    if (src == dst)
        return dl_fail(err, DL_ERR_ARG, "dl_image_resize: dst must differ from src");
    memset(dst, 0, sizeof *dst);
    if (!src->pixels || src->width < 1 || src->height < 1 ||
        src->stride / 3 < (size_t)src->width)
        return dl_fail(err, DL_ERR_ARG, "dl_image_resize: invalid source image %dx%d stride %zu",
                       src->width, src->height, src->stride);
    if (check_dims(width, height, err) != 0)
        return dl_fail_prefix(err, "resize target");

    dl_image out, mid = {0};
    if (dl_image_alloc(&out, width, height, err) != 0)
        return -1;
    rs_coeffs ch = {0}, cv = {0};
    int rc = 0;
    const dl_image *cur = src;
    if (width != src->width) {
        if (rs_precompute(src->width, width, &ch, err) != 0) {
            rc = -1;
            goto done;
        }
        dl_image *target = &out;
        if (height != src->height) {
            if (dl_image_alloc(&mid, width, src->height, err) != 0) {
                rc = -1;
                goto done;
            }
            target = &mid;
        }
        rs_horizontal(src, target, &ch);
        cur = target;
    }
    if (height != src->height) {
        if (rs_precompute(src->height, height, &cv, err) != 0) {
            rc = -1;
            goto done;
        }
        rs_vertical(cur, &out, &cv);
    } else if (cur == src) {
        for (int y = 0; y < height; y++)
            memcpy(out.pixels + (size_t)y * out.stride, src->pixels + (size_t)y * src->stride,
                   (size_t)width * 3);
    }
done:
    rs_free(&ch);
    rs_free(&cv);
    dl_image_free(&mid);
    if (rc != 0) {
        dl_image_free(&out);
        return rc;
    }
    *dst = out;
    return 0;
}

/* ------------------------------------------------------------- PNG write */

typedef struct {
    png_structp png;
    png_infop info;
    dl_atomic_file file;
    int file_open;
    int io_failed;
    dl_error io_err;    /* the write callback's error */
    char msg[256];
} png_enc;

static void png_enc_error(png_structp png, png_const_charp msg)
{
    png_enc *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void png_enc_write(png_structp png, png_bytep data, size_t len)
{
    png_enc *e = png_get_io_ptr(png);
    if (dl_atomic_write(&e->file, data, len, &e->io_err) != 0) {
        e->io_failed = 1;
        png_error(png, "write failed");
    }
}

static void png_enc_flush(png_structp png)
{
    (void)png;
}

static int png_encode(png_enc *e, const uint8_t *data, int width, int height, size_t stride,
                      int channels, int bit_depth)
{
    if (setjmp(png_jmpbuf(e->png)))
        return -1;
    png_set_write_fn(e->png, e, png_enc_write, png_enc_flush);
    int ctype = channels == 1 ? PNG_COLOR_TYPE_GRAY
              : channels == 3 ? PNG_COLOR_TYPE_RGB
                              : PNG_COLOR_TYPE_RGB_ALPHA;
    png_set_IHDR(e->png, e->info, (png_uint_32)width, (png_uint_32)height, bit_depth, ctype,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(e->png, e->info);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (bit_depth == 16)
        png_set_swap(e->png); /* PNG stores 16-bit samples big-endian */
#endif
    for (int y = 0; y < height; y++)
        png_write_row(e->png, data + (size_t)y * stride);
    png_write_end(e->png, e->info);
    return 0;
}

int dl_png_write(const char *path, const void *data, int width, int height, size_t stride,
                 int channels, int bit_depth, dl_error *err)
{
    if (!path || !data)
        return dl_fail(err, DL_ERR_ARG, "dl_png_write: NULL %s", path ? "data" : "path");
    if (channels != 1 && channels != 3 && channels != 4)
        return dl_fail(err, DL_ERR_ARG, "dl_png_write: %d channels (1, 3 or 4)", channels);
    if (bit_depth != 8 && bit_depth != 16)
        return dl_fail(err, DL_ERR_ARG, "dl_png_write: bit depth %d (8 or 16)", bit_depth);
    if (check_dims(width, height, err) != 0)
        return dl_fail_prefix(err, "dl_png_write %s", path);
    size_t rowbytes = (size_t)width * (size_t)channels * (size_t)(bit_depth / 8);
    if (stride < rowbytes)
        return dl_fail(err, DL_ERR_ARG, "dl_png_write: stride %zu < row size %zu", stride,
                       rowbytes);
#if !defined(__BYTE_ORDER__) || \
    (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ && __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__)
#error "unknown byte order"
#endif

    png_enc *e = calloc(1, sizeof *e);
    if (!e)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    int rc = 0;
    e->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, png_enc_error, png_dec_warning);
    if (e->png)
        e->info = png_create_info_struct(e->png);
    if (!e->png || !e->info) {
        rc = dl_fail(err, DL_ERR_NOMEM, "cannot create the libpng encoder");
    } else if (dl_atomic_open(&e->file, path, err) != 0) {
        rc = -1;
    } else {
        e->file_open = 1;
        if (png_encode(e, data, width, height, stride, channels, bit_depth) != 0) {
            if (e->io_failed) {
                if (err)
                    *err = e->io_err;
                rc = -1;
            } else {
                rc = dl_fail(err, DL_ERR_ARG, "PNG encoder: %s", e->msg);
            }
        }
    }
    if (e->png)
        png_destroy_write_struct(&e->png, e->info ? &e->info : NULL);
    if (e->file_open) {
        if (rc == 0)
            rc = dl_atomic_commit(&e->file, err);
        else
            dl_atomic_abort(&e->file);
    }
    free(e);
    if (rc != 0 && err && !strstr(err->message, path))
        dl_fail_prefix(err, "%s", path);
    return rc;
}

/* ------------------------------------------------------------------ blur */

/* Separable Gaussian, kernel radius ceil(3 sigma), edges clamped; the
 * horizontal pass is kept in doubles so the result is rounded once. */
int dl_image_blur(const dl_image *src, double sigma, dl_image *dst, dl_error *err)
{
    if (!src || !src->pixels || !dst)
        return dl_fail(err, DL_ERR_ARG, "dl_image_blur: NULL argument");
    if (!(sigma > 0 && sigma <= 1000))
        return dl_fail(err, DL_ERR_ARG, "dl_image_blur: sigma %g (0 < sigma <= 1000)", sigma);
    const int W = src->width, H = src->height, r = (int)ceil(3 * sigma);
    size_t n, bytes;
    if (!dl_mul_size((size_t)W * 3, (size_t)H, &n) || !dl_mul_size(n, sizeof(double), &bytes))
        return dl_fail(err, DL_ERR_LIMIT, "dl_image_blur: %dx%d overflows", W, H);
    if (dl_memory_check(bytes, "a blur's intermediate image", err) || dl_image_alloc(dst, W, H, err))
        return -1;
    double *k = malloc(sizeof(double) * (2 * (size_t)r + 1)), *tmp = malloc(bytes);
    if (!k || !tmp) {
        free(k);
        free(tmp);
        dl_image_free(dst);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory blurring a %dx%d image", W, H);
    }
    double sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = exp(-(double)i * i / (2 * sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
    for (int y = 0; y < H; y++) {
        const uint8_t *row = src->pixels + (size_t)y * src->stride;
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                double v = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= W ? W - 1 : x + i;
                    v += k[i + r] * row[(size_t)xx * 3 + c];
                }
                tmp[((size_t)y * W + x) * 3 + c] = v;
            }
    }
    for (int y = 0; y < H; y++) {
        uint8_t *row = dst->pixels + (size_t)y * dst->stride;
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                double v = 0;
                for (int i = -r; i <= r; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= H ? H - 1 : y + i;
                    v += k[i + r] * tmp[((size_t)yy * W + x) * 3 + c];
                }
                row[(size_t)x * 3 + c] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5);
            }
    }
    free(k);
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------------ float maps */

/* The one bilinear map resampler (saliency maps, their overlays, the study's
 * baselines): half-pixel centres, edge clamp. The rectangle form reads the
 * source rectangle (rx, ry) rw x rh (source pixels): the image's part of a
 * letterboxed ("pad") input. */
void dl_map_resize_rect(const float *src, int sw, int sh, double rx, double ry, double rw, double rh, float *dst,
                        int dw, int dh, size_t dst_stride)
{
    const double fx = rw / dw, fy = rh / dh;
    for (int y = 0; y < dh; y++) {
        double sy = ry + (y + 0.5) * fy - 0.5;
        if (sy < 0) sy = 0;
        if (sy > sh - 1) sy = sh - 1;
        int y0 = (int)sy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
        float wy = (float)(sy - y0);
        const float *r0 = src + (size_t)y0 * sw, *r1 = src + (size_t)y1 * sw;
        float *o = dst + (size_t)y * dst_stride;
        for (int x = 0; x < dw; x++) {
            double sx = rx + (x + 0.5) * fx - 0.5;
            if (sx < 0) sx = 0;
            if (sx > sw - 1) sx = sw - 1;
            int x0 = (int)sx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
            float wx = (float)(sx - x0);
            float a = r0[x0] + (r0[x1] - r0[x0]) * wx;
            float b = r1[x0] + (r1[x1] - r1[x0]) * wx;
            o[x] = a + (b - a) * wy;
        }
    }
}

void dl_map_resize(const float *src, int sw, int sh, float *dst, int dw, int dh, size_t dst_stride)
{
    dl_map_resize_rect(src, sw, sh, 0, 0, sw, sh, dst, dw, dh, dst_stride);
}

/* ------------------------------------------------------------------ JPEG encoder */

typedef struct {
    struct jpeg_compress_struct cinfo;
    jpeg_err jerr;
    int created;
    unsigned char *buf; /* libjpeg's memory destination (malloc'd by libjpeg) */
    unsigned long size;
} jpeg_enc;

/* Runs under setjmp; every mutable value lives in *e. */
static int jpeg_encode(jpeg_enc *e, const dl_image *img, int quality)
{
    if (setjmp(e->jerr.jb))
        return -1;
    jpeg_create_compress(&e->cinfo);
    e->created = 1;
    jpeg_mem_dest(&e->cinfo, &e->buf, &e->size);
    e->cinfo.image_width = (JDIMENSION)img->width;
    e->cinfo.image_height = (JDIMENSION)img->height;
    e->cinfo.input_components = 3;
    e->cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&e->cinfo);
    jpeg_set_quality(&e->cinfo, quality, TRUE);
    jpeg_start_compress(&e->cinfo, TRUE);
    while (e->cinfo.next_scanline < e->cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(img->pixels + (size_t)e->cinfo.next_scanline * img->stride);
        jpeg_write_scanlines(&e->cinfo, &row, 1);
    }
    jpeg_finish_compress(&e->cinfo);
    return 0;
}

int dl_jpeg_encode(const dl_image *img, int quality, uint8_t **data, size_t *size, dl_error *err)
{
    if (!img || !img->pixels || !data || !size)
        return dl_fail(err, DL_ERR_ARG, "dl_jpeg_encode: NULL argument");
    *data = NULL;
    *size = 0;
    if (quality < 1 || quality > 100)
        return dl_fail(err, DL_ERR_ARG, "dl_jpeg_encode: quality %d (1..100)", quality);
    if (check_dims(img->width, img->height, err) != 0)
        return dl_fail_prefix(err, "dl_jpeg_encode");
    if (img->stride < (size_t)img->width * 3)
        return dl_fail(err, DL_ERR_ARG, "dl_jpeg_encode: stride %zu < row size %zu", img->stride,
                       (size_t)img->width * 3);
    jpeg_enc *e = calloc(1, sizeof *e);
    if (!e)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    e->cinfo.err = jpeg_std_error(&e->jerr.pub);
    e->jerr.pub.error_exit = jpeg_dec_error_exit;
    e->jerr.pub.output_message = jpeg_dec_output_message;
    int rc = jpeg_encode(e, img, quality);
    if (rc != 0)
        dl_fail(err, DL_ERR_FORMAT, "JPEG compression failed: %s", e->jerr.msg);
    if (e->created)
        jpeg_destroy_compress(&e->cinfo);
    if (rc == 0) {
        *data = e->buf;
        *size = (size_t)e->size;
    } else {
        free(e->buf);
    }
    free(e);
    return rc;
}
