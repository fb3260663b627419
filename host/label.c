/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The label: headline, group name, class lines, method names, the result
 * JSON. */
#include "dermlens_host.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *class_label(const dl_model *m, int i)
{
    const char *s = dl_model_class_long_name(m, i);
    if (!s || !s[0])
        s = dl_model_class_name(m, i);
    return s ? s : "?";
}

int dh_percent(float p)
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

dh_verdict dh_verdict_of(const dl_result *r, int image_flag)
{
    if (image_flag || r->ood_flag)
        return DH_VERDICT_OOD;
    if (r->top_k < 1 || r->num_classes < 1)
        return DH_VERDICT_CLASS;
    int p1 = dh_percent(r->probs[r->top_index[0]]);
    int p2 = r->top_k > 1 ? dh_percent(r->probs[r->top_index[1]]) : 0;
    if (p1 < DH_UNCERTAIN_TOP || (r->top_k > 1 && p1 - p2 <= DH_UNCERTAIN_GAP))
        return DH_VERDICT_UNCERTAIN;
    return DH_VERDICT_CLASS;
}

void dh_headline(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size)
{
    if (r->top_k < 1 || r->num_classes < 1) {
        snprintf(buf, size, "no result");
        return;
    }
    int c0 = r->top_index[0];
    switch (dh_verdict_of(r, image_flag)) {
    case DH_VERDICT_OOD:
        snprintf(buf, size, "%s", DH_OOD_HEADLINE);
        break;
    case DH_VERDICT_UNCERTAIN:
        if (r->top_k > 1) {
            int c1 = r->top_index[1];
            snprintf(buf, size, "uncertain: %s %d %% / %s %d %%", class_code(m, c0),
                     dh_percent(r->probs[c0]), class_code(m, c1), dh_percent(r->probs[c1]));
        } else {
            snprintf(buf, size, "uncertain: %s %d %%", class_code(m, c0), dh_percent(r->probs[c0]));
        }
        break;
    default:
        snprintf(buf, size, "%s %d %%", class_label(m, c0), dh_percent(r->probs[c0]));
        break;
    }
}

void dh_group_name(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size)
{
    if (r->top_k < 1 || r->num_classes < 1) {
        snprintf(buf, size, "DermLens: no result");
        return;
    }
    char head[256];
    dh_headline(m, r, image_flag, head, sizeof head);
    if (dh_verdict_of(r, image_flag) == DH_VERDICT_OOD) {
        int c = r->top_index[0];
        snprintf(buf, size, "DermLens: %s (%s %d %%)", head, class_code(m, c),
                 dh_percent(r->probs[c]));
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

void dh_headline_wrapped(const dl_model *m, const dl_result *r, int image_flag, int cols,
                          char *buf, size_t size)
{
    text_out o = {buf, size, 0, 0};
    if (size)
        buf[0] = '\0';
    char line[512];
    dh_headline(m, r, image_flag, line, sizeof line);
    out_wrapped(&o, line, cols);
}

void dh_label_markup(const dl_model *m, const dl_result *r, int image_flag, int top_k, int cols,
                      int markup, int with_headline, char *buf, size_t size)
{
    text_out o = {buf, size, 0, markup};
    if (size)
        buf[0] = '\0';
    char line[512];
    dh_verdict v = dh_verdict_of(r, image_flag);
    dh_headline(m, r, image_flag, line, sizeof line);
    if (with_headline && markup) {
        const char *col = v == DH_VERDICT_OOD ? DH_COLOUR_WARNING
                          : v == DH_VERDICT_UNCERTAIN ? DH_COLOUR_CAUTION
                                                       : DH_COLOUR_TEXT;
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
    for (int i = v == DH_VERDICT_CLASS ? 1 : 0; i < k; i++) {
        int c = r->top_index[i];
        snprintf(line, sizeof line, "%s %d %%", class_label(m, c), dh_percent(r->probs[c]));
        if (o.used > 0)
            out_raw(&o, "\n");
        out_wrapped(&o, line, cols);
    }
    if (o.used > 0)
        out_raw(&o, "\n");
    if (markup)
        out_raw(&o, "<small>");
    out_wrapped(&o, DH_DISCLAIMER, cols);
    if (markup)
        out_raw(&o, "</small>");
}

void dh_figure_caption(const dl_model *m, const char *model_path, const dl_result *r,
                       int image_flag, int cls, dl_saliency_method method, dh_overlay_style style,
                       int top_k, int cols, char *buf, size_t size)
{
    text_out o = {buf, size, 0, 0};
    if (size)
        buf[0] = '\0';
    char line[1024];
    dh_headline(m, r, image_flag, line, sizeof line);
    out_wrapped(&o, line, cols);
    /* The classes, most likely first. */
    int k = top_k < r->top_k ? top_k : r->top_k;
    size_t used = (size_t)snprintf(line, sizeof line, "Top classes:");
    for (int i = 0; i < k && used < sizeof line; i++) {
        int c = r->top_index[i];
        used += (size_t)snprintf(line + used, sizeof line - used, "%s %s %d %%", i ? "," : "",
                                 class_label(m, c), dh_percent(r->probs[c]));
    }
    out_raw(&o, "\n");
    out_wrapped(&o, line, cols);
    const char *how = style == DH_OVERLAY_OUTLINE ? "outline of its top 20 %"
                      : style == DH_OVERLAY_BOTH  ? "colour map (dark = low, yellow = high) and "
                                                    "outline of its top 20 %"
                                                  : "colour map, dark = low, yellow = high";
    snprintf(line, sizeof line, "Left: the region. Right: where the model looked for %s (%s "
             "saliency, %s).", cls >= 0 && cls < r->num_classes ? class_label(m, cls) : "?",
             dh_method_title(method), how);
    out_raw(&o, "\n");
    out_wrapped(&o, line, cols);
    const char *name = dl_model_name(m), *base = model_path ? strrchr(model_path, '/') : NULL;
    snprintf(line, sizeof line, "Model: %s (%s).", name && name[0] ? name : "unnamed",
             base ? base + 1 : (model_path ? model_path : "?"));
    out_raw(&o, "\n");
    out_wrapped(&o, line, cols);
    out_raw(&o, "\n");
    out_wrapped(&o, DH_DISCLAIMER, cols);
}

void dh_label_text(const dl_model *m, const dl_result *r, int top_k, char *buf, size_t size)
{
    dh_label_markup(m, r, 0, top_k, 0, 0, 1, buf, size);
}

/* Counted from the engine's own names (dl_saliency_method_name says
 * "unknown" past the last) so that no copy of the list lives here; to be
 * replaced by the engine's accessor once dermlens.h has one. */
int dh_method_count(void)
{
    int n = 0;
    while (n < 64 && strcmp(dl_saliency_method_name((dl_saliency_method)n), "unknown") != 0)
        n++;
    return n;
}

static char method_list[256];

static void build_method_list(void)
{
    int n = dh_method_count();
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof method_list; i++)
        used += (size_t)snprintf(method_list + used, sizeof method_list - used, "%s%s",
                                 i == 0 ? "" : i == n - 1 ? " or " : ", ",
                                 dl_saliency_method_name((dl_saliency_method)i));
}

const char *dh_method_list(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_method_list);
    return method_list;
}

const char *dh_method_title(dl_saliency_method m)
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

const char *dh_method_help(dl_saliency_method m)
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

char *dh_result_json(const dl_model *m, const char *model_path, const dl_result *r,
                      const dh_region *region, dl_saliency_method method, int saliency_ok,
                      const char *saliency_note, const char *image_reason)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "plugin", "dermlens");
    cJSON_AddStringToObject(root, "version", DH_VERSION);
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
    dh_headline(m, r, image_reason && image_reason[0], head, sizeof head);
    cJSON_AddStringToObject(root, "headline", head);
    static const char *const verdicts[] = {"class", "uncertain", "out_of_distribution"};
    cJSON_AddStringToObject(root, "verdict", verdicts[dh_verdict_of(r, image_reason && image_reason[0])]);
    cJSON_AddStringToObject(root, "disclaimer", DH_DISCLAIMER);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

