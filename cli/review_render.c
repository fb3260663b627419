/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens review: one annotated PNG per image (the saliency overlay with,
 * below it, a label box: headline, classes, the given label, a legend and
 * the disclaimer) and a thumbnail of the overlay for the page. The box sits
 * below the picture so it never hides the lesion and is never clipped. */
#include "review.h"
#include "dermlens_host.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DL_HAVE_CAIRO
#include <cairo.h>
#endif

double review_suspicion(const float *probs, int k, int label)
{
    if (label < 0 || label >= k) return NAN;
    double other = 0;
    for (int c = 0; c < k; c++)
        if (c != label && probs[c] > other) other = probs[c];
    return other - probs[label];
}

/* The image with the overlay blended in: colour map alpha times opacity,
 * so low saliency leaves the lesion visible. */
static uint8_t *blend(const dl_image *img, const float *map, double opacity)
{
    int w = img->width, h = img->height;
    uint8_t *out = malloc((size_t)w * h * 3);
    if (!out) return NULL;
    float op = (float)(opacity / 100.0);
    for (int y = 0; y < h; y++) {
        const uint8_t *src = img->pixels + (size_t)y * img->stride;
        uint8_t *dst = out + (size_t)y * w * 3;
        if (!map) {
            memcpy(dst, src, (size_t)w * 3);
            continue;
        }
        for (int x = 0; x < w; x++) {
            uint8_t c[4];
            dh_colormap(map[(size_t)y * w + x], c);
            float a = op * (float)c[3] / 255.0f;
            for (int k = 0; k < 3; k++)
                dst[3 * x + k] = (uint8_t)((float)src[3 * x + k] * (1.0f - a) + (float)c[k] * a + 0.5f);
        }
    }
    return out;
}

static int write_thumb(const uint8_t *rgb, int w, int h, const char *path, int *tw, int *th, dl_error *err)
{
    double s = (double)REVIEW_THUMB_SIDE / (w > h ? w : h);
    if (s >= 1.0) {
        *tw = w;
        *th = h;
        return dl_png_write(path, rgb, w, h, (size_t)w * 3, 3, 8, err);
    }
    int nw = (int)lround(w * s), nh = (int)lround(h * s);
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;
    dl_image src = {.width = w, .height = h, .stride = (size_t)w * 3, .pixels = (uint8_t *)rgb}, dst;
    if (dl_image_resize(&src, nw, nh, &dst, err) != 0) return -1;
    int rc = dl_png_write(path, dst.pixels, nw, nh, dst.stride, 3, 8, err);
    dl_image_free(&dst);
    *tw = nw;
    *th = nh;
    return rc;
}

#ifdef DL_HAVE_CAIRO

/* One line of the label box before wrapping. */
typedef struct {
    char text[512];
    double rgb[3];
    int bold;
    double scale; /* of the base font size */
} box_line;

static void hex_rgb(const char *hex, double rgb[3])
{
    unsigned v = (unsigned)strtoul(hex + 1, NULL, 16);
    rgb[0] = ((v >> 16) & 255) / 255.0;
    rgb[1] = ((v >> 8) & 255) / 255.0;
    rgb[2] = (v & 255) / 255.0;
}

static box_line *add_line(box_line *lines, int *n, const char *colour, int bold, double scale)
{
    box_line *l = &lines[(*n)++];
    memset(l, 0, sizeof *l);
    hex_rgb(colour, l->rgb);
    l->bold = bold;
    l->scale = scale;
    return l;
}

static void class_text(const dl_model *m, int c, char *buf, size_t size)
{
    const char *code = dl_model_class_name(m, c), *name = dl_model_class_long_name(m, c);
    if (name && *name && strcmp(name, code)) snprintf(buf, size, "%s (%s)", name, code);
    else snprintf(buf, size, "%s", code);
}

/* Words of s that fit max_w at the current font, as successive lines (a
 * word wider than the line is cut by characters). Returns the line count. */
static int wrap(cairo_t *cr, const char *s, double max_w, char out[][512], int max_lines)
{
    int n = 0;
    char cur[512] = "";
    const char *p = s;
    while (*p && n < max_lines) {
        while (*p == ' ') p++;
        if (!*p) break;
        size_t wl = strcspn(p, " ");
        char cand[1024];
        snprintf(cand, sizeof cand, "%s%s%.*s", cur, cur[0] ? " " : "", (int)wl, p);
        cairo_text_extents_t e;
        cairo_text_extents(cr, cand, &e);
        if (e.x_advance <= max_w || !cur[0]) {
            if (e.x_advance > max_w) {
                /* a single over-long word: as many characters as fit */
                size_t k = strlen(cand);
                while (k > 1) {
                    char part[1024];
                    snprintf(part, sizeof part, "%.*s", (int)k, cand);
                    cairo_text_extents(cr, part, &e);
                    if (e.x_advance <= max_w) break;
                    k--;
                    while (k > 1 && (cand[k] & 0xC0) == 0x80) k--; /* whole UTF-8 characters */
                }
                snprintf(out[n++], 512, "%.*s", (int)k, cand);
                cur[0] = 0;
                p += k < wl ? k : wl;
                continue;
            }
            g_strlcpy(cur, cand, sizeof cur);
            p += wl;
        } else {
            snprintf(out[n++], 512, "%s", cur);
            cur[0] = 0;
        }
    }
    if (cur[0] && n < max_lines) snprintf(out[n++], 512, "%s", cur);
    return n;
}

static void set_font(cairo_t *cr, const box_line *l, double base)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           l->bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, base * l->scale);
}

#define MAX_WRAPPED 24

/* The overlay ov (w x h) above its label box, as a new RGB8 buffer of
 * *out_w x *out_h (malloc'd); NULL when out of memory. */
static uint8_t *render_boxed(const dl_model *m, const uint8_t *ov, int w, int h, const review_item *it,
                             const dl_result *r, const char *method_title, int *out_w, int *out_h)
{
    /* Text height grows with the picture: >= 14 px, readable when a large
     * image is shown scaled down. */
    int W = w < 320 ? 320 : w;
    double base = W / 32.0 < 14 ? 14 : W / 32.0, pad = base * 0.6;
    box_line lines[8];
    int nl = 0;
    char buf[512];

    dh_verdict v = dh_verdict_of(r, it->image_flag);
    box_line *l = add_line(lines, &nl,
                           v == DH_VERDICT_OOD ? DH_COLOUR_WARNING
                           : v == DH_VERDICT_UNCERTAIN ? DH_COLOUR_CAUTION : DH_COLOUR_TEXT, 1, 1.15);
    dh_headline(m, r, it->image_flag, l->text, sizeof l->text);
    if (v == DH_VERDICT_OOD) {
        l = add_line(lines, &nl, DH_COLOUR_WARNING, 0, 0.9);
        if (it->image_flag) snprintf(l->text, sizeof l->text, "image check: %s", it->image_reason);
        else snprintf(l->text, sizeof l->text, "features unlike the training images (OOD score %.1f)", it->ood_score);
    }
    /* the classes follow: all top 3 unless the headline named the first */
    l = add_line(lines, &nl, DH_COLOUR_TEXT, 0, 1.0);
    int k3 = r->top_k < 3 ? r->top_k : 3;
    for (int i = v == DH_VERDICT_CLASS ? 1 : 0; i < k3; i++) {
        int c = r->top_index[i];
        if (dh_percent(r->probs[c]) < 1) break; /* "0 %" says nothing */
        class_text(m, c, buf, sizeof buf);
        char part[600];
        snprintf(part, sizeof part, "%s%s %d %%", l->text[0] ? "  \xc2\xb7  " : "", buf, dh_percent(r->probs[c]));
        g_strlcat(l->text, part, sizeof l->text);
    }
    if (!l->text[0]) nl--;
    if (it->label >= 0) {
        l = add_line(lines, &nl, it->disagree ? "#ff8a80" : "#a5d6a7", 1, 1.0);
        snprintf(l->text, sizeof l->text, "given label: %s - %s (suspicion %+.2f)",
                 dl_model_class_name(m, it->label), it->disagree ? "the model disagrees" : "the model agrees",
                 it->suspicion);
    } else if (it->label_text) {
        l = add_line(lines, &nl, "#c8c8c8", 0, 1.0);
        snprintf(l->text, sizeof l->text, "given label: %s (not a class of this model)", it->label_text);
    }
    if (!it->has_map && it->saliency_note[0]) {
        l = add_line(lines, &nl, "#c8c8c8", 0, 0.85);
        snprintf(l->text, sizeof l->text, "%s", it->saliency_note);
    }
    l = add_line(lines, &nl, "#c8c8c8", 0, 0.85);
    snprintf(l->text, sizeof l->text, "%s", DL_DISCLAIMER);
    /* file names and labels come from the user: printable UTF-8 only */
    for (int i = 0; i < nl; i++) {
        char *s = dl_text_sanitize(lines[i].text);
        if (s) snprintf(lines[i].text, sizeof lines[i].text, "%s", s);
        free(s);
    }

    /* measure */
    cairo_surface_t *ms = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *mc = cairo_create(ms);
    static char wrapped[8][MAX_WRAPPED][512];
    int nw[8];
    double text_h = 0, max_w = W - 2 * pad;
    for (int i = 0; i < nl; i++) {
        set_font(mc, &lines[i], base);
        nw[i] = wrap(mc, lines[i].text, max_w, wrapped[i], MAX_WRAPPED);
        text_h += nw[i] * base * lines[i].scale * 1.3;
    }
    double legend_h = it->has_map ? base * 1.5 : 0;
    int H = h + (int)ceil(pad * 2 + text_h + legend_h);
    cairo_destroy(mc);
    cairo_surface_destroy(ms);

    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return NULL;
    }
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 0.11, 0.11, 0.12);
    cairo_paint(cr);
    cairo_surface_flush(s);
    unsigned char *d = cairo_image_surface_get_data(s);
    int cs = cairo_image_surface_get_stride(s), x0 = (W - w) / 2;
    for (int y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(d + (size_t)y * cs) + x0;
        const uint8_t *src = ov + (size_t)y * w * 3;
        for (int x = 0; x < w; x++)
            row[x] = 0xff000000u | (uint32_t)src[3 * x] << 16 | (uint32_t)src[3 * x + 1] << 8 | src[3 * x + 2];
    }
    cairo_surface_mark_dirty(s);

    double y = h + pad;
    for (int i = 0; i < nl; i++) {
        set_font(cr, &lines[i], base);
        cairo_font_extents_t fe;
        cairo_font_extents(cr, &fe);
        cairo_set_source_rgb(cr, lines[i].rgb[0], lines[i].rgb[1], lines[i].rgb[2]);
        for (int j = 0; j < nw[i]; j++) {
            double lh = base * lines[i].scale * 1.3;
            cairo_move_to(cr, pad, y + (lh - fe.height) / 2 + fe.ascent);
            cairo_show_text(cr, wrapped[i][j]);
            y += lh;
        }
        /* the legend goes right after the classes and the given label */
        if (it->has_map && i == nl - 2) {
            cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
            cairo_set_font_size(cr, base * 0.85);
            cairo_text_extents_t lo, hi, me;
            cairo_text_extents(cr, "low", &lo);
            cairo_text_extents(cr, "high", &hi);
            cairo_text_extents(cr, method_title, &me);
            /* "Grad-CAM  low [bar] high": the bar takes what the words leave */
            double gap = base * 0.4, avail = W - 2 * pad;
            double bw = avail - me.x_advance - lo.x_advance - hi.x_advance - 4 * gap;
            if (bw > avail * 0.5) bw = avail * 0.5;
            if (bw < 24) bw = 24;
            double bh = base * 0.7, by = y + (legend_h - bh) / 2, tx = pad;
            cairo_set_source_rgb(cr, 0.78, 0.78, 0.78);
            cairo_move_to(cr, tx, by + bh * 0.85);
            cairo_show_text(cr, method_title);
            tx += me.x_advance + 2 * gap;
            cairo_move_to(cr, tx, by + bh * 0.85);
            cairo_show_text(cr, "low");
            double bx = tx + lo.x_advance + gap;
            /* each column as the overlay paints that saliency over grey */
            for (int x = 0; x < (int)bw; x++) {
                uint8_t c[4];
                dh_colormap((float)x / (float)(bw - 1), c);
                double a = c[3] / 255.0;
                cairo_set_source_rgb(cr, (0.5 * (1 - a) + c[0] / 255.0 * a), (0.5 * (1 - a) + c[1] / 255.0 * a),
                                     (0.5 * (1 - a) + c[2] / 255.0 * a));
                cairo_rectangle(cr, bx + x, by, 1, bh);
                cairo_fill(cr);
            }
            cairo_set_source_rgb(cr, 0.78, 0.78, 0.78);
            cairo_move_to(cr, bx + bw + gap, by + bh * 0.85);
            cairo_show_text(cr, "high");
            y += legend_h;
        }
    }
    cairo_destroy(cr);
    cairo_surface_flush(s);

    uint8_t *rgb = malloc((size_t)W * H * 3);
    if (rgb) {
        for (int yy = 0; yy < H; yy++) {
            const uint32_t *row = (const uint32_t *)(d + (size_t)yy * cs);
            uint8_t *o = rgb + (size_t)yy * W * 3;
            for (int x = 0; x < W; x++) {
                o[3 * x] = (uint8_t)(row[x] >> 16);
                o[3 * x + 1] = (uint8_t)(row[x] >> 8);
                o[3 * x + 2] = (uint8_t)row[x];
            }
        }
        *out_w = W;
        *out_h = H;
    }
    cairo_surface_destroy(s);
    return rgb;
}

int review_render_has_text(void)
{
    /* first use of the toy font API on the calling (main) thread, so the
     * font machinery is set up before the workers draw */
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *cr = cairo_create(s);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_text_extents_t e;
    cairo_text_extents(cr, "DermLens", &e);
    cairo_destroy(cr);
    cairo_surface_destroy(s);
    return 1;
}
#else
int review_render_has_text(void)
{
    return 0;
}
#endif

int review_render(const dl_model *m, const dl_image *img, const float *map, double opacity,
                  const review_item *it, const dl_result *r, const char *method_title,
                  const char *images_path, const char *thumb_path, int *thumb_w, int *thumb_h,
                  dl_error *err)
{
    uint8_t *ov = blend(img, map, opacity);
    if (!ov) {
        err->code = DL_ERR_NOMEM;
        snprintf(err->message, sizeof err->message, "out of memory for the overlay");
        return -1;
    }
    int rc = write_thumb(ov, img->width, img->height, thumb_path, thumb_w, thumb_h, err);
#ifdef DL_HAVE_CAIRO
    /* one drawing at a time: cairo's toy font cache is shared */
    static GMutex draw_lock;
    if (rc == 0) {
        int W = 0, H = 0;
        g_mutex_lock(&draw_lock);
        uint8_t *boxed = render_boxed(m, ov, img->width, img->height, it, r, method_title, &W, &H);
        g_mutex_unlock(&draw_lock);
        if (!boxed) {
            err->code = DL_ERR_NOMEM;
            snprintf(err->message, sizeof err->message, "out of memory drawing the annotated image");
            rc = -1;
        } else {
            rc = dl_png_write(images_path, boxed, W, H, (size_t)W * 3, 3, 8, err);
        }
        free(boxed);
    }
#else
    (void)m;
    (void)it;
    (void)r;
    (void)method_title;
    if (rc == 0) rc = dl_png_write(images_path, ov, img->width, img->height, (size_t)img->width * 3, 3, 8, err);
#endif
    free(ov);
    return rc;
}
