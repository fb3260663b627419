/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Parameters and the analysis of one region: classification, saliency and
 * the image check, with progress forwarded to the front end. */
#include "dermlens_host.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dh_params_default(dh_params *p)
{
    memset(p, 0, sizeof *p);
    p->method = DL_SALIENCY_GRADCAM;
    p->opacity = 60.0;
    p->top_k = 3;
    p->add_labels = 1;
    p->add_legend = 1;
}

int dh_params_set(dh_params *out, const char *model_path, const char *method, double opacity,
                   int top_k, int add_labels, int add_legend, char *msg, size_t msg_size)
{
    dh_params p;
    dh_params_default(&p);
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
            snprintf(msg, msg_size, "Unknown saliency method \"%.64s\" (use %s)", method,
                     dh_method_list());
            return -1;
        }
        p.method = (dl_saliency_method)mi;
    }
    if (!(opacity >= 0.0 && opacity <= 100.0)) { /* also rejects NaN */
        snprintf(msg, msg_size, "Opacity must be between 0 and 100");
        return -1;
    }
    p.opacity = opacity;
    if (top_k < 1 || top_k > DH_MAX_TOP_K) {
        snprintf(msg, msg_size, "Top-k must be between 1 and %d", DH_MAX_TOP_K);
        return -1;
    }
    p.top_k = top_k;
    p.add_labels = add_labels != 0;
    p.add_legend = add_legend != 0;
    *out = p;
    return 0;
}

int dh_progress_cb(void *user, double fraction, const char *stage)
{
    dh_progress *p = user;
    if (p && p->fn) {
        if (!(fraction >= 0.0))
            fraction = 0.0;
        if (fraction > 1.0)
            fraction = 1.0;
        p->fn(p->host, p->base + p->span * fraction, stage);
    }
    return 0;
}

void dh_analysis_free(dh_analysis *a)
{
    if (!a)
        return;
    dl_result_free(&a->result);
    free(a->map);
    memset(a, 0, sizeof *a);
}

int dh_analyse_classify(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                        dh_progress *prog, dh_analysis *out, dl_error *err)
{
    memset(out, 0, sizeof *out);
    if (width < DH_MIN_REGION || height < DH_MIN_REGION) {
        dh_set_err(err, DL_ERR_ARG, "The region is %d x %d pixels; at least %d x %d are needed",
                width, height, DH_MIN_REGION, DH_MIN_REGION);
        return -1;
    }
    /* The cheap image check runs beside the model's own OOD score. */
    dh_image_stats_compute(rgb, width, height, stride, &out->stats);
    out->image_flag = dh_image_stats_flag(&out->stats, out->image_reason,
                                           sizeof out->image_reason);
    dh_progress local = {0};
    if (prog)
        local = *prog;
    dl_classify_options co = {0};
    co.top_k = 0; /* all classes: the JSON lists every probability */
    co.progress = dh_progress_cb;
    co.progress_user = &local;
    if (dl_classify_rgb8(m, rgb, width, height, stride, &co, &out->result, err) != 0)
        return -1;
    snprintf(out->saliency_note, sizeof out->saliency_note, "saliency not requested");
    return 0;
}

int dh_analyse_saliency(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                        dl_saliency_method method, dh_progress *prog, dh_analysis *out,
                        dl_error *err)
{
    dh_progress local = {0};
    if (prog)
        local = *prog;
    out->saliency_note[0] = '\0';
    dl_explain_options eo = {0};
    eo.method = method;
    eo.class_index = out->result.top_k > 0 ? out->result.top_index[0] : -1;
    eo.layer = NULL;
    eo.smooth_sigma = 0.0f;
    eo.progress = prog ? dh_progress_cb : NULL;
    eo.progress_user = &local;
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
    /* Smooth, not bilinear: no ridges or diamonds from the coarse grid. */
    double cx, cy;
    dh_saliency_cell(m, width, height, &cx, &cy);
    if (dh_map_smooth(map, width, height, cx, cy, &e2) != 0) {
        free(map);
        snprintf(out->saliency_note, sizeof out->saliency_note, "saliency unavailable: %.200s",
                 e2.message);
        return 0;
    }
    out->map = map;
    out->map_width = width;
    out->map_height = height;
    return 0;
}

int dh_analyse(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                dl_saliency_method method, int want_saliency, dh_progress *prog,
                dh_analysis *out, dl_error *err)
{
    dh_progress local = {0};
    if (prog)
        local = *prog;
    double base = local.base, span = prog ? local.span : 1.0;
    local.span = want_saliency ? span * 0.25 : span;
    if (dh_analyse_classify(m, rgb, width, height, stride, prog ? &local : NULL, out, err) != 0)
        return -1;
    if (!want_saliency)
        return 0;
    local.base = base + span * 0.25;
    local.span = span * 0.75;
    return dh_analyse_saliency(m, rgb, width, height, stride, method, prog ? &local : NULL, out, err);
}
