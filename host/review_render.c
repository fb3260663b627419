/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Dataset review: one annotated PNG per image (the saliency overlay with,
 * below it, a label box: headline, the out-of-distribution warning,
 * classes, the given label, a legend and the disclaimer) and a thumbnail of
 * the overlay for the page. The box sits below the picture so it never
 * hides the lesion and is never clipped. The text is drawn by the front
 * end's painter (cairo in the CLI, Pango in the plug-in); without one the
 * annotated image is the overlay alone. */
#include "review_int.h"
#include "dermlens_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The image with the overlay blended in: colour map alpha times opacity,
 * so low saliency leaves the lesion visible. */
static uint8_t *blend(const dl_image *img, const float *map, double opacity)
{
    int w = img->width, h = img->height;
    uint8_t *out = malloc((size_t)w * (size_t)h * 3);
    if (!out)
        return NULL;
    float op = (float)(opacity / 100.0);
    for (int y = 0; y < h; y++) {
        const uint8_t *src = img->pixels + (size_t)y * img->stride;
        uint8_t *dst = out + (size_t)y * (size_t)w * 3;
        if (!map) {
            memcpy(dst, src, (size_t)w * 3);
            continue;
        }
        for (int x = 0; x < w; x++) {
            uint8_t c[4];
            dh_colormap(map[(size_t)y * (size_t)w + (size_t)x], c);
            float a = op * (float)c[3] / 255.0f;
            for (int k = 0; k < 3; k++)
                dst[3 * x + k] = (uint8_t)((float)src[3 * x + k] * (1.0f - a) + (float)c[k] * a + 0.5f);
        }
    }
    return out;
}

static int write_thumb(const uint8_t *rgb, int w, int h, const char *path, int *tw, int *th, dl_error *err)
{
    double s = (double)DH_REVIEW_THUMB_SIDE / (w > h ? w : h);
    if (s >= 1.0) {
        *tw = w;
        *th = h;
        return dl_png_write(path, rgb, w, h, (size_t)w * 3, 3, 8, err);
    }
    int nw = (int)lround(w * s), nh = (int)lround(h * s);
    if (nw < 1)
        nw = 1;
    if (nh < 1)
        nh = 1;
    dl_image src = {.width = w, .height = h, .stride = (size_t)w * 3, .pixels = (uint8_t *)rgb}, dst;
    if (dl_image_resize(&src, nw, nh, &dst, err) != 0)
        return -1;
    int rc = dl_png_write(path, dst.pixels, nw, nh, dst.stride, 3, 8, err);
    dl_image_free(&dst);
    *tw = nw;
    *th = nh;
    return rc;
}

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
    if (name && *name && strcmp(name, code))
        snprintf(buf, size, "%s (%s)", name, code);
    else
        snprintf(buf, size, "%s", code);
}

typedef struct {
    const dh_text_painter *p;
    double size;
    int bold;
} pen;

static double measure(const pen *f, const char *s)
{
    return f->p->text(f->p->user, NULL, 0, 0, 0, 0, 0, s, f->size, f->bold, NULL, NULL, NULL);
}

/* Words of s that fit max_w in font f, as successive lines (a word wider
 * than the line is cut by whole UTF-8 characters). Returns the line count. */
static int wrap(const pen *f, const char *s, double max_w, char out[][512], int max_lines)
{
    int n = 0;
    char cur[512] = "";
    const char *p = s;
    while (*p && n < max_lines) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        size_t wl = strcspn(p, " ");
        char cand[1024];
        snprintf(cand, sizeof cand, "%s%s%.*s", cur, cur[0] ? " " : "", (int)wl, p);
        double cw = measure(f, cand);
        if (cw <= max_w || !cur[0]) {
            if (cw > max_w) {
                /* a single over-long word: as many characters as fit */
                size_t k = strlen(cand);
                while (k > 1) {
                    char part[1024];
                    snprintf(part, sizeof part, "%.*s", (int)k, cand);
                    if (measure(f, part) <= max_w)
                        break;
                    k--;
                    while (k > 1 && (cand[k] & 0xC0) == 0x80)
                        k--;
                }
                snprintf(out[n++], 512, "%.*s", (int)k, cand);
                cur[0] = 0;
                p += k < wl ? k : wl;
                continue;
            }
            size_t cl = strlen(cand);
            if (cl >= sizeof cur)
                cl = sizeof cur - 1;
            memcpy(cur, cand, cl);
            cur[cl] = 0;
            p += wl;
        } else {
            snprintf(out[n++], 512, "%s", cur);
            cur[0] = 0;
        }
    }
    if (cur[0] && n < max_lines)
        snprintf(out[n++], 512, "%s", cur);
    return n;
}

static uint32_t xrgb(double r, double g, double b)
{
    return (uint32_t)lround(r * 255) << 16 | (uint32_t)lround(g * 255) << 8 | (uint32_t)lround(b * 255);
}

static void fill_rect(uint32_t *s, int W, int H, double x0, double y0, double w, double h, uint32_t c)
{
    int xa = (int)lround(x0), ya = (int)lround(y0), xb = (int)lround(x0 + w), yb = (int)lround(y0 + h);
    for (int y = ya < 0 ? 0 : ya; y < yb && y < H; y++)
        for (int x = xa < 0 ? 0 : xa; x < xb && x < W; x++)
            s[(size_t)y * (size_t)W + (size_t)x] = c;
}

#define MAX_LINES 8
#define MAX_WRAPPED 24

/* The overlay ov (w x h) above its label box, as a new RGB8 buffer of
 * *out_w x *out_h (malloc'd); NULL when out of memory. */
static uint8_t *render_boxed(const dl_model *m, const uint8_t *ov, int w, int h, const dh_review_item *it,
                             const dl_result *r, const char *method_title, const dh_text_painter *painter,
                             int *out_w, int *out_h)
{
    /* Text height grows with the picture: >= 14 px, readable when a large
     * image is shown scaled down. */
    int W = w < 320 ? 320 : w;
    double base = W / 32.0 < 14 ? 14 : W / 32.0, pad = base * 0.6;
    box_line lines[MAX_LINES];
    int nl = 0;
    char buf[512];

    dh_verdict v = dh_verdict_of(r, it->image_flag);
    box_line *l = add_line(lines, &nl,
                           v == DH_VERDICT_OOD         ? DH_COLOUR_WARNING
                           : v == DH_VERDICT_UNCERTAIN ? DH_COLOUR_CAUTION
                                                       : DH_COLOUR_TEXT,
                           1, 1.15);
    dh_headline(m, r, it->image_flag, l->text, sizeof l->text);
    if (v == DH_VERDICT_OOD) {
        l = add_line(lines, &nl, DH_COLOUR_WARNING, 0, 0.9);
        if (it->image_flag)
            snprintf(l->text, sizeof l->text, "image check: %s", it->image_reason);
        else
            snprintf(l->text, sizeof l->text, "features unlike the training images (OOD score %.1f)",
                     (double)it->ood_score);
    }
    /* the classes follow: all top 3 unless the headline named the first */
    l = add_line(lines, &nl, DH_COLOUR_TEXT, 0, 1.0);
    int k3 = r->top_k < 3 ? r->top_k : 3;
    for (int i = v == DH_VERDICT_CLASS ? 1 : 0; i < k3; i++) {
        int c = r->top_index[i];
        if (dh_percent(r->probs[c]) < 1)
            break; /* "0 %" says nothing */
        class_text(m, c, buf, sizeof buf);
        char part[600];
        size_t used = strlen(l->text);
        snprintf(part, sizeof part, "%s%s %d %%", used ? "  \xc2\xb7  " : "", buf, dh_percent(r->probs[c]));
        if (used + strlen(part) < sizeof l->text)
            memcpy(l->text + used, part, strlen(part) + 1);
    }
    if (!l->text[0])
        nl--;
    if (it->label >= 0) {
        l = add_line(lines, &nl, it->disagree ? "#ff8a80" : "#a5d6a7", 1, 1.0);
        snprintf(l->text, sizeof l->text, "given label: %s - %s (suspicion %+.2f)", dl_model_class_name(m, it->label),
                 it->disagree ? "the model disagrees" : "the model agrees", it->suspicion);
    } else if (it->label_text) {
        l = add_line(lines, &nl, "#c8c8c8", 0, 1.0);
        snprintf(l->text, sizeof l->text, "given label: %s (not a class of this model)", it->label_text);
    }
    if (!it->has_map && it->saliency_note[0]) {
        l = add_line(lines, &nl, "#c8c8c8", 0, 0.85);
        snprintf(l->text, sizeof l->text, "%s", it->saliency_note);
    }
    l = add_line(lines, &nl, "#c8c8c8", 0, 0.85);
    snprintf(l->text, sizeof l->text, "%s", DH_DISCLAIMER_LONG);
    /* file names and labels come from the user: printable UTF-8 only */
    for (int i = 0; i < nl; i++) {
        char *s = dl_text_sanitize(lines[i].text);
        if (s)
            snprintf(lines[i].text, sizeof lines[i].text, "%s", s);
        free(s);
    }

    /* measure */
    char (*wrapped)[MAX_WRAPPED][512] = malloc(sizeof(char[MAX_LINES][MAX_WRAPPED][512]));
    if (!wrapped)
        return NULL;
    int nw[MAX_LINES];
    double text_h = 0, max_w = W - 2 * pad;
    for (int i = 0; i < nl; i++) {
        pen f = {painter, base * lines[i].scale, lines[i].bold};
        nw[i] = wrap(&f, lines[i].text, max_w, wrapped[i], MAX_WRAPPED);
        text_h += nw[i] * base * lines[i].scale * 1.3;
    }
    double legend_h = it->has_map ? base * 1.5 : 0;
    int H = h + (int)ceil(pad * 2 + text_h + legend_h);
    uint32_t *s = malloc((size_t)W * (size_t)H * 4);
    uint8_t *rgb = malloc((size_t)W * (size_t)H * 3);
    if (!s || !rgb) {
        free(wrapped);
        free(s);
        free(rgb);
        return NULL;
    }
    int stride = W * 4;
    fill_rect(s, W, H, 0, 0, W, H, xrgb(0.11, 0.11, 0.12));
    int x0 = (W - w) / 2;
    for (int y = 0; y < h; y++) {
        uint32_t *row = s + (size_t)y * (size_t)W + x0;
        const uint8_t *src = ov + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++)
            row[x] = (uint32_t)src[3 * x] << 16 | (uint32_t)src[3 * x + 1] << 8 | src[3 * x + 2];
    }

    const double grey[3] = {0.78, 0.78, 0.78};
    double y = h + pad;
    for (int i = 0; i < nl; i++) {
        double size = base * lines[i].scale, ascent = 0, fh = 0;
        painter->text(painter->user, NULL, 0, 0, 0, 0, 0, "Ag", size, lines[i].bold, NULL, &ascent, &fh);
        for (int j = 0; j < nw[i]; j++) {
            double lh = base * lines[i].scale * 1.3;
            painter->text(painter->user, s, W, H, stride, pad, y + (lh - fh) / 2 + ascent, wrapped[i][j], size,
                          lines[i].bold, lines[i].rgb, NULL, NULL);
            y += lh;
        }
        /* the legend goes right after the classes and the given label */
        if (it->has_map && i == nl - 2) {
            pen f = {painter, base * 0.85, 0};
            double lo = measure(&f, "low"), hi = measure(&f, "high"), me = measure(&f, method_title);
            /* "Grad-CAM  low [bar] high": the bar takes what the words leave */
            double gap = base * 0.4, avail = W - 2 * pad;
            double bw = avail - me - lo - hi - 4 * gap;
            if (bw > avail * 0.5)
                bw = avail * 0.5;
            if (bw < 24)
                bw = 24;
            double bh = base * 0.7, by = y + (legend_h - bh) / 2, tx = pad;
            painter->text(painter->user, s, W, H, stride, tx, by + bh * 0.85, method_title, f.size, 0, grey, NULL, NULL);
            tx += me + 2 * gap;
            painter->text(painter->user, s, W, H, stride, tx, by + bh * 0.85, "low", f.size, 0, grey, NULL, NULL);
            double bx = tx + lo + gap;
            /* each column as the overlay paints that saliency over grey */
            for (int x = 0; x < (int)bw; x++) {
                uint8_t c[4];
                dh_colormap((float)x / (float)(bw - 1), c);
                double a = c[3] / 255.0;
                fill_rect(s, W, H, bx + x, by, 1, bh,
                          xrgb(0.5 * (1 - a) + c[0] / 255.0 * a, 0.5 * (1 - a) + c[1] / 255.0 * a,
                               0.5 * (1 - a) + c[2] / 255.0 * a));
            }
            painter->text(painter->user, s, W, H, stride, bx + bw + gap, by + bh * 0.85, "high", f.size, 0, grey, NULL,
                          NULL);
            y += legend_h;
        }
    }
    for (size_t k = 0; k < (size_t)W * (size_t)H; k++) {
        rgb[3 * k] = (uint8_t)(s[k] >> 16);
        rgb[3 * k + 1] = (uint8_t)(s[k] >> 8);
        rgb[3 * k + 2] = (uint8_t)s[k];
    }
    free(s);
    free(wrapped);
    *out_w = W;
    *out_h = H;
    return rgb;
}

int dh_review_render(const dl_model *m, const dl_image *img, const float *map, double opacity,
                     const dh_review_item *it, const dl_result *r, const char *method_title,
                     const dh_text_painter *painter, const char *images_path, const char *thumb_path,
                     int *thumb_w, int *thumb_h, dl_error *err)
{
    uint8_t *ov = blend(img, map, opacity);
    if (!ov) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory for the overlay");
        return -1;
    }
    int rc = write_thumb(ov, img->width, img->height, thumb_path, thumb_w, thumb_h, err);
    if (rc == 0 && painter && painter->text) {
        int W = 0, H = 0;
        uint8_t *boxed = render_boxed(m, ov, img->width, img->height, it, r, method_title, painter, &W, &H);
        if (!boxed) {
            dh_set_err(err, DL_ERR_NOMEM, "out of memory drawing the annotated image");
            rc = -1;
        } else {
            rc = dl_png_write(images_path, boxed, W, H, (size_t)W * 3, 3, 8, err);
        }
        free(boxed);
    } else if (rc == 0) {
        rc = dl_png_write(images_path, ov, img->width, img->height, (size_t)img->width * 3, 3, 8, err);
    }
    free(ov);
    return rc;
}
