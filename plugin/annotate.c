/* SPDX-License-Identifier: GPL-3.0-or-later */
/* GIMP-independent half of the plug-in: parameters, model lookup, analysis,
 * overlay/legend pixels, label text and the result JSON. */
#include "annotate.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DLP_DATADIR
#define DLP_DATADIR ""
#endif
#ifndef DLP_SOURCE_WEIGHTS
#define DLP_SOURCE_WEIGHTS ""
#endif

static const char *const model_files[] = {
    "dermlens_ham10000.safetensors", /* the shipped lesion model, preferred */
    "mobilenet_v2_imagenet.safetensors",
};

static void set_err(dl_error *err, dl_status code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void dlp_params_default(dlp_params *p)
{
    memset(p, 0, sizeof *p);
    p->method = DL_SALIENCY_GRADCAM;
    p->opacity = 60.0;
    p->top_k = 3;
    p->add_labels = 1;
    p->add_legend = 1;
}

int dlp_params_set(dlp_params *out, const char *model_path, const char *method, double opacity,
                   int top_k, int add_labels, int add_legend, char *msg, size_t msg_size)
{
    dlp_params p;
    dlp_params_default(&p);
    if (model_path) {
        size_t n = strlen(model_path);
        if (n >= sizeof p.model_path) {
            snprintf(msg, msg_size, "Model path is too long (%zu bytes)", n);
            return -1;
        }
        memcpy(p.model_path, model_path, n + 1);
    }
    if (method && method[0]) {
        int mi = dl_saliency_method_from_name(method);
        if (mi < 0) {
            snprintf(msg, msg_size,
                     "Unknown saliency method \"%.64s\" (use gradcam, gradcam++, hirescam, "
                     "layercam, scorecam or occlusion)", method);
            return -1;
        }
        p.method = (dl_saliency_method)mi;
    }
    if (!(opacity >= 0.0 && opacity <= 100.0)) { /* also rejects NaN */
        snprintf(msg, msg_size, "Opacity must be between 0 and 100");
        return -1;
    }
    p.opacity = opacity;
    if (top_k < 1 || top_k > DLP_MAX_TOP_K) {
        snprintf(msg, msg_size, "Top-k must be between 1 and %d", DLP_MAX_TOP_K);
        return -1;
    }
    p.top_k = top_k;
    p.add_labels = add_labels != 0;
    p.add_legend = add_legend != 0;
    *out = p;
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return path[0] && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

dl_model *dlp_model_open(const char *explicit_path, const char *plugin_dir, char *used_path,
                         size_t used_size, dl_error *err)
{
    char cand[4096];
    const char *path = NULL;

    if (explicit_path && explicit_path[0]) {
        path = explicit_path;
    } else if (getenv("DERMLENS_MODEL") && getenv("DERMLENS_MODEL")[0]) {
        path = getenv("DERMLENS_MODEL");
    } else {
        const char *dirs[3] = {plugin_dir, DLP_DATADIR, DLP_SOURCE_WEIGHTS};
        /* The lesion model wins over the ImageNet one wherever it is. */
        for (size_t f = 0; f < sizeof model_files / sizeof model_files[0] && !path; f++) {
            for (size_t d = 0; d < 3 && !path; d++) {
                if (!dirs[d] || !dirs[d][0])
                    continue;
                int n = snprintf(cand, sizeof cand, "%s/%s", dirs[d], model_files[f]);
                if (n > 0 && (size_t)n < sizeof cand && file_exists(cand))
                    path = cand;
            }
        }
        if (!path) {
            set_err(err, DL_ERR_IO,
                    "No DermLens model found (looked for %s and %s next to the plug-in and in "
                    "%s); set a model file in the dialog or DERMLENS_MODEL",
                    model_files[0], model_files[1], DLP_DATADIR[0] ? DLP_DATADIR : "the data dir");
            return NULL;
        }
    }
    if (used_path && used_size) {
        snprintf(used_path, used_size, "%s", path);
    }
    return dl_model_load(path, err);
}

int dlp_progress_cb(void *user, double fraction, const char *stage)
{
    dlp_progress *p = user;
    if (p && p->fn) {
        if (!(fraction >= 0.0))
            fraction = 0.0;
        if (fraction > 1.0)
            fraction = 1.0;
        p->fn(p->host, p->base + p->span * fraction, stage);
    }
    return 0;
}

void dlp_analysis_free(dlp_analysis *a)
{
    if (!a)
        return;
    dl_result_free(&a->result);
    free(a->map);
    memset(a, 0, sizeof *a);
}

int dlp_analyse(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                dl_saliency_method method, int want_saliency, dlp_progress *prog,
                dlp_analysis *out, dl_error *err)
{
    memset(out, 0, sizeof *out);
    if (width < DLP_MIN_REGION || height < DLP_MIN_REGION) {
        set_err(err, DL_ERR_ARG, "The region is %d x %d pixels; at least %d x %d are needed",
                width, height, DLP_MIN_REGION, DLP_MIN_REGION);
        return -1;
    }
    /* The cheap image check runs beside the model's own OOD score. */
    dlp_image_stats_compute(rgb, width, height, stride, &out->stats);
    out->image_flag = dlp_image_stats_flag(&out->stats, out->image_reason,
                                           sizeof out->image_reason);
    dlp_progress local = {0};
    if (prog)
        local = *prog;
    double base = local.base, span = prog ? local.span : 1.0;

    dl_classify_options co = {0};
    co.top_k = 0; /* all classes: the JSON lists every probability */
    co.progress = dlp_progress_cb;
    co.progress_user = &local;
    local.base = base;
    local.span = want_saliency ? span * 0.25 : span;
    if (dl_classify_rgb8(m, rgb, width, height, stride, &co, &out->result, err) != 0)
        return -1;
    if (!want_saliency) {
        snprintf(out->saliency_note, sizeof out->saliency_note, "saliency not requested");
        return 0;
    }

    dl_explain_options eo = {0};
    eo.method = method;
    eo.class_index = out->result.top_k > 0 ? out->result.top_index[0] : -1;
    eo.layer = NULL;
    eo.smooth_sigma = 0.0f;
    eo.progress = dlp_progress_cb;
    eo.progress_user = &local;
    local.base = base + span * 0.25;
    local.span = span * 0.75;
    dl_error e2 = {0};
    float *map = NULL;
    if (dl_explain_rgb8(m, rgb, width, height, stride, &eo, &map, NULL, &e2) != 0) {
        free(map);
        if (e2.code == DL_ERR_CANCELLED) {
            if (err)
                *err = e2;
            dl_result_free(&out->result);
            return -1;
        }
        /* Saliency is an extra: the classification stands without it. */
        snprintf(out->saliency_note, sizeof out->saliency_note, "saliency unavailable: %.200s",
                 e2.message[0] ? e2.message : dl_status_name(e2.code));
        return 0;
    }
    /* Never trust the values blindly: NaN would poison the overlay. */
    size_t n = (size_t)width * (size_t)height;
    for (size_t i = 0; i < n; i++) {
        float v = map[i];
        map[i] = (v > 0.0f) ? (v < 1.0f ? v : 1.0f) : 0.0f;
    }
    out->map = map;
    out->map_width = width;
    out->map_height = height;
    return 0;
}

/* ------------------------------------------------------------------ pixels */

static uint8_t to_u8(float v)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

void dlp_colormap(float s, uint8_t rgba[4])
{
    /* Blue -> cyan -> green -> yellow -> red, the usual CAM palette. */
    static const float stops[5][3] = {
        {0.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 1.0f}, {0.0f, 1.0f, 0.0f},
        {1.0f, 1.0f, 0.0f}, {1.0f, 0.0f, 0.0f},
    };
    if (!(s > 0.0f))
        s = 0.0f;
    if (s > 1.0f)
        s = 1.0f;
    float t = s * 4.0f;
    int i = (int)t;
    if (i > 3)
        i = 3;
    float f = t - (float)i;
    for (int c = 0; c < 3; c++)
        rgba[c] = to_u8(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f);
    /* Transparent below 0.2, fully opaque from 0.7 on. */
    float a = (s - 0.2f) / 0.5f;
    rgba[3] = to_u8(a);
}

static void put_px(float s, int channels, uint8_t *px)
{
    uint8_t rgba[4];
    dlp_colormap(s, rgba);
    if (channels == 4) {
        memcpy(px, rgba, 4);
    } else {
        px[0] = to_u8(s);
        px[1] = rgba[3];
    }
}

void dlp_overlay_rows(const float *map, int map_w, int map_h, int out_w, int out_h, int y0,
                      int rows, int channels, uint8_t *out)
{
    if (map_w == out_w && map_h == out_h) {
        for (int y = 0; y < rows; y++) {
            const float *src = map + (size_t)(y0 + y) * (size_t)map_w;
            uint8_t *dst = out + (size_t)y * (size_t)out_w * (size_t)channels;
            for (int x = 0; x < out_w; x++)
                put_px(src[x], channels, dst + (size_t)x * (size_t)channels);
        }
        return;
    }
    /* Pixel-centre aligned bilinear sampling of the smaller map. */
    double sx = (double)map_w / (double)out_w, sy = (double)map_h / (double)out_h;
    for (int y = 0; y < rows; y++) {
        double fy = ((double)(y0 + y) + 0.5) * sy - 0.5;
        if (fy < 0.0)
            fy = 0.0;
        int iy = (int)fy;
        if (iy > map_h - 1)
            iy = map_h - 1;
        int iy1 = iy + 1 < map_h ? iy + 1 : iy;
        float wy = (float)(fy - iy);
        const float *r0 = map + (size_t)iy * (size_t)map_w;
        const float *r1 = map + (size_t)iy1 * (size_t)map_w;
        uint8_t *dst = out + (size_t)y * (size_t)out_w * (size_t)channels;
        for (int x = 0; x < out_w; x++) {
            double fx = ((double)x + 0.5) * sx - 0.5;
            if (fx < 0.0)
                fx = 0.0;
            int ix = (int)fx;
            if (ix > map_w - 1)
                ix = map_w - 1;
            int ix1 = ix + 1 < map_w ? ix + 1 : ix;
            float wx = (float)(fx - ix);
            float top = r0[ix] + (r0[ix1] - r0[ix]) * wx;
            float bot = r1[ix] + (r1[ix1] - r1[ix]) * wx;
            put_px(top + (bot - top) * wy, channels, dst + (size_t)x * (size_t)channels);
        }
    }
}

void dlp_legend_size(int region_w, int region_h, int *w, int *h)
{
    int lw = region_w / 3;
    if (lw < 48)
        lw = 48;
    if (lw > 256)
        lw = 256;
    int lh = lw / 8;
    if (lh < 6)
        lh = 6;
    (void)region_h;
    *w = lw;
    *h = lh;
}

void dlp_legend_pixels(int w, int h, int channels, uint8_t *out)
{
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *px = out + (size_t)channels * ((size_t)y * (size_t)w + (size_t)x);
            if (x == 0 || y == 0 || x == w - 1 || y == h - 1) {
                memset(px, 32, (size_t)channels - 1);
            } else {
                float s = (w > 3) ? (float)(x - 1) / (float)(w - 3) : 0.0f;
                put_px(s, channels, px);
            }
            px[channels - 1] = 255;
        }
    }
}

/* ------------------------------------------------------------------ text */

static const char *class_label(const dl_model *m, int i)
{
    const char *s = dl_model_class_long_name(m, i);
    if (!s || !s[0])
        s = dl_model_class_name(m, i);
    return s ? s : "?";
}

int dlp_percent(float p)
{
    if (!(p > 0.0f))
        return 0;
    if (p >= 1.0f)
        return 100;
    return (int)floor(100.0 * (double)p + 0.5);
}

static const char *class_code(const dl_model *m, int i)
{
    const char *s = dl_model_class_name(m, i);
    return s && s[0] ? s : "?";
}

dlp_verdict dlp_verdict_of(const dl_result *r, int image_flag)
{
    if (image_flag || r->ood_flag)
        return DLP_VERDICT_OOD;
    if (r->top_k < 1 || r->num_classes < 1)
        return DLP_VERDICT_CLASS;
    int p1 = dlp_percent(r->probs[r->top_index[0]]);
    int p2 = r->top_k > 1 ? dlp_percent(r->probs[r->top_index[1]]) : 0;
    if (p1 < DLP_UNCERTAIN_TOP || (r->top_k > 1 && p1 - p2 <= DLP_UNCERTAIN_GAP))
        return DLP_VERDICT_UNCERTAIN;
    return DLP_VERDICT_CLASS;
}

void dlp_headline(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size)
{
    if (r->top_k < 1 || r->num_classes < 1) {
        snprintf(buf, size, "no result");
        return;
    }
    int c0 = r->top_index[0];
    switch (dlp_verdict_of(r, image_flag)) {
    case DLP_VERDICT_OOD:
        snprintf(buf, size, "%s", DLP_OOD_HEADLINE);
        break;
    case DLP_VERDICT_UNCERTAIN:
        if (r->top_k > 1) {
            int c1 = r->top_index[1];
            snprintf(buf, size, "uncertain: %s %d %% / %s %d %%", class_code(m, c0),
                     dlp_percent(r->probs[c0]), class_code(m, c1), dlp_percent(r->probs[c1]));
        } else {
            snprintf(buf, size, "uncertain: %s %d %%", class_code(m, c0), dlp_percent(r->probs[c0]));
        }
        break;
    default:
        snprintf(buf, size, "%s %d %%", class_label(m, c0), dlp_percent(r->probs[c0]));
        break;
    }
}

void dlp_group_name(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size)
{
    if (r->top_k < 1 || r->num_classes < 1) {
        snprintf(buf, size, "DermLens: no result");
        return;
    }
    char head[256];
    dlp_headline(m, r, image_flag, head, sizeof head);
    if (dlp_verdict_of(r, image_flag) == DLP_VERDICT_OOD) {
        int c = r->top_index[0];
        snprintf(buf, size, "DermLens: %s (%s %d %%)", head, class_code(m, c),
                 dlp_percent(r->probs[c]));
    } else {
        snprintf(buf, size, "DermLens: %s", head);
    }
}

/* Appends text to buf, wrapping at cols characters (words kept whole when
 * they fit; continuation lines indented by two spaces) and escaping it for
 * Pango markup when markup is set. */
typedef struct {
    char *buf;
    size_t size, used;
    int markup;
} text_out;

static void out_raw(text_out *o, const char *s)
{
    size_t n = strlen(s);
    if (o->used + 1 >= o->size)
        return;
    if (n > o->size - o->used - 1)
        n = o->size - o->used - 1;
    memcpy(o->buf + o->used, s, n);
    o->used += n;
    o->buf[o->used] = '\0';
}

static void out_text_n(text_out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c[2] = {s[i], 0};
        if (o->markup && s[i] == '&')
            out_raw(o, "&amp;");
        else if (o->markup && s[i] == '<')
            out_raw(o, "&lt;");
        else if (o->markup && s[i] == '>')
            out_raw(o, "&gt;");
        else
            out_raw(o, c);
    }
}

static void out_wrapped(text_out *o, const char *s, int cols)
{
    int col = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        size_t wl = strcspn(p, " ");
        if (cols > 0 && col > 0 && col + 1 + (int)wl > cols) {
            out_raw(o, "\n  ");
            col = 2;
        } else if (col > 0) {
            out_raw(o, " ");
            col++;
        }
        out_text_n(o, p, wl);
        col += (int)wl;
        p += wl;
    }
}

void dlp_headline_wrapped(const dl_model *m, const dl_result *r, int image_flag, int cols,
                          char *buf, size_t size)
{
    text_out o = {buf, size, 0, 0};
    if (size)
        buf[0] = '\0';
    char line[512];
    dlp_headline(m, r, image_flag, line, sizeof line);
    out_wrapped(&o, line, cols);
}

void dlp_label_markup(const dl_model *m, const dl_result *r, int image_flag, int top_k, int cols,
                      int markup, int with_headline, char *buf, size_t size)
{
    text_out o = {buf, size, 0, markup};
    if (size)
        buf[0] = '\0';
    char line[512];
    dlp_verdict v = dlp_verdict_of(r, image_flag);
    dlp_headline(m, r, image_flag, line, sizeof line);
    if (with_headline && markup) {
        const char *col = v == DLP_VERDICT_OOD ? DLP_COLOUR_WARNING
                          : v == DLP_VERDICT_UNCERTAIN ? DLP_COLOUR_CAUTION
                                                       : DLP_COLOUR_TEXT;
        char open_tag[64];
        snprintf(open_tag, sizeof open_tag, "<span foreground=\"%s\"><b>", col);
        out_raw(&o, open_tag);
    }
    if (with_headline)
        out_wrapped(&o, line, cols);
    if (with_headline && markup)
        out_raw(&o, "</b></span>");
    int k = top_k < r->top_k ? top_k : r->top_k;
    /* The class list: all top-k when the headline is not one class; the
     * runners-up otherwise (the headline already names the top class). */
    for (int i = v == DLP_VERDICT_CLASS ? 1 : 0; i < k; i++) {
        int c = r->top_index[i];
        snprintf(line, sizeof line, "%s %d %%", class_label(m, c), dlp_percent(r->probs[c]));
        if (o.used > 0)
            out_raw(&o, "\n");
        out_wrapped(&o, line, cols);
    }
    if (o.used > 0)
        out_raw(&o, "\n");
    if (markup)
        out_raw(&o, "<small>");
    out_wrapped(&o, DLP_DISCLAIMER, cols);
    if (markup)
        out_raw(&o, "</small>");
}

void dlp_label_text(const dl_model *m, const dl_result *r, int top_k, char *buf, size_t size)
{
    dlp_label_markup(m, r, 0, top_k, 0, 0, 1, buf, size);
}

const char *dlp_method_title(dl_saliency_method m)
{
    switch (m) {
    case DL_SALIENCY_GRADCAM: return "Grad-CAM";
    case DL_SALIENCY_GRADCAM_PP: return "Grad-CAM++";
    case DL_SALIENCY_HIRESCAM: return "HiResCAM";
    case DL_SALIENCY_LAYERCAM: return "LayerCAM";
    case DL_SALIENCY_SCORECAM: return "Score-CAM";
    case DL_SALIENCY_OCCLUSION: return "Occlusion";
    }
    return "saliency";
}

const char *dlp_method_help(dl_saliency_method m)
{
    switch (m) {
    case DL_SALIENCY_GRADCAM:
        return "Gradient-weighted class activation map: fast, coarse; the default";
    case DL_SALIENCY_GRADCAM_PP:
        return "Grad-CAM with pixel-wise weights: better when several areas matter";
    case DL_SALIENCY_HIRESCAM:
        return "Gradients times activations, cell by cell: faithful to the last layer";
    case DL_SALIENCY_LAYERCAM:
        return "Positive gradients per location: finer detail than Grad-CAM";
    case DL_SALIENCY_SCORECAM:
        return "Masks the image with each activation map and scores it: slower, no gradients";
    case DL_SALIENCY_OCCLUSION:
        return "Hides one patch at a time and measures the drop: slowest, model-agnostic";
    }
    return "";
}

char *dlp_result_json(const dl_model *m, const char *model_path, const dl_result *r,
                      const dlp_region *region, dl_saliency_method method, int saliency_ok,
                      const char *saliency_note, const char *image_reason)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "plugin", "dermlens");
    cJSON_AddStringToObject(root, "version", DLP_PLUGIN_VERSION);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    if (model) {
        const char *name = dl_model_name(m);
        const char *sha = dl_model_sha256(m);
        cJSON_AddStringToObject(model, "name", name ? name : "");
        cJSON_AddStringToObject(model, "sha256", sha ? sha : "");
        const char *base = model_path ? strrchr(model_path, '/') : NULL;
        cJSON_AddStringToObject(model, "file", base ? base + 1 : (model_path ? model_path : ""));
    }
    cJSON *reg = cJSON_AddObjectToObject(root, "region");
    if (reg) {
        cJSON_AddNumberToObject(reg, "x", region->x);
        cJSON_AddNumberToObject(reg, "y", region->y);
        cJSON_AddNumberToObject(reg, "width", region->width);
        cJSON_AddNumberToObject(reg, "height", region->height);
    }
    cJSON *sal = cJSON_AddObjectToObject(root, "saliency");
    if (sal) {
        cJSON_AddStringToObject(sal, "method", dl_saliency_method_name(method));
        cJSON_AddBoolToObject(sal, "available", saliency_ok != 0);
        if (!saliency_ok && saliency_note)
            cJSON_AddStringToObject(sal, "note", saliency_note);
    }
    if (r->top_k > 0) {
        int c = r->top_index[0];
        cJSON_AddStringToObject(root, "top_class", dl_model_class_name(m, c));
        cJSON_AddNumberToObject(root, "top_probability", r->probs[c]);
    }
    cJSON *probs = cJSON_AddObjectToObject(root, "probabilities");
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    for (int i = 0; i < r->num_classes; i++) {
        const char *code = dl_model_class_name(m, i);
        if (probs)
            cJSON_AddNumberToObject(probs, code ? code : "?", r->probs[i]);
        cJSON *c = cJSON_CreateObject();
        if (!c)
            continue;
        cJSON_AddStringToObject(c, "code", code ? code : "?");
        cJSON_AddStringToObject(c, "name", class_label(m, i));
        cJSON_AddNumberToObject(c, "probability", r->probs[i]);
        if (r->logits)
            cJSON_AddNumberToObject(c, "logit", r->logits[i]);
        cJSON_AddItemToArray(classes, c);
    }
    cJSON *ood = cJSON_AddObjectToObject(root, "ood");
    if (ood) {
        if (isfinite(r->ood_score))
            cJSON_AddNumberToObject(ood, "score", r->ood_score);
        else
            cJSON_AddNullToObject(ood, "score");
        cJSON_AddBoolToObject(ood, "flag", r->ood_flag != 0);
        int img = image_reason && image_reason[0];
        cJSON_AddBoolToObject(ood, "image_flag", img);
        if (img)
            cJSON_AddStringToObject(ood, "image_reason", image_reason);
    }
    char head[512];
    dlp_headline(m, r, image_reason && image_reason[0], head, sizeof head);
    cJSON_AddStringToObject(root, "headline", head);
    static const char *const verdicts[] = {"class", "uncertain", "out_of_distribution"};
    cJSON_AddStringToObject(root, "verdict", verdicts[dlp_verdict_of(r, image_reason && image_reason[0])]);
    cJSON_AddStringToObject(root, "disclaimer", DLP_DISCLAIMER);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}
