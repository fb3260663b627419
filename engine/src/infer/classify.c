/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Classification API: preprocessing, forward, calibrated softmax, top-k,
 * pooled features, out-of-distribution score, optional test-time
 * augmentation (mean of probabilities over flips and 90-degree turns). */
#include "infer/infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dl_model_ensure_exec(dl_model *m, dl_error *err)
{
    if (m->exec_ready) return 0;
    if (dl_exec_init(&m->exec, &m->graph, 1, err)) return -1;
    m->exec_ready = true;
    return 0;
}

void dl_result_free(dl_result *r)
{
    if (!r) return;
    free(r->probs);
    free(r->logits);
    free(r->top_index);
    free(r->features);
    memset(r, 0, sizeof *r);
}

/* In-place dihedral transform t (0..7) of an H x W x 3 square tensor. */
static void dihedral(const float *src, float *dst, int n, int t)
{
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            int sx = x, sy = y;
            if (t & 4) { int tmp = sx; sx = sy; sy = tmp; }
            if (t & 1) sx = n - 1 - sx;
            if (t & 2) sy = n - 1 - sy;
            memcpy(dst + ((size_t)y * n + x) * 3, src + ((size_t)sy * n + sx) * 3, 3 * sizeof(float));
        }
}

static float ood_score(const dl_model *m, const float *f);
float dl_model_ood_score_of(const dl_model *m, const float *features)
{
    return m->ood_dim ? ood_score(m, features) : NAN;
}

static float ood_score(const dl_model *m, const float *f)
{
    int d = m->ood_dim;
    double s = 0;
    float *c = malloc(sizeof(float) * d);
    if (!c) return NAN;
    for (int i = 0; i < d; i++) c[i] = f[i] - m->ood_mean[i];
    for (int i = 0; i < d; i++) {
        double r = 0;
        const float *p = m->ood_precision + (size_t)i * d;
        for (int j = 0; j < d; j++) r += p[j] * c[j];
        s += r * c[i];
    }
    free(c);
    return (float)s;
}

void dl_softmax_temperature(const float *logits, int n, float t, float *probs)
{
    float mx = logits[0];
    for (int i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += probs[i] = expf((logits[i] - mx) / t);
    for (int i = 0; i < n; i++) probs[i] = (float)(probs[i] / sum);
}

int dl_result_fill(dl_model *m, dl_result *out, const float *probs, const float *logits,
                   const float *features, int top_k, dl_error *err)
{
    const int K = m->num_classes, F = dl_model_feature_dim(m);
    memset(out, 0, sizeof *out);
    out->num_classes = K;
    out->probs = malloc(sizeof(float) * K);
    out->logits = malloc(sizeof(float) * K);
    out->top_index = malloc(sizeof(int) * K);
    out->features = malloc(sizeof(float) * (F ? F : 1));
    if (!out->probs || !out->logits || !out->top_index || !out->features) {
        dl_result_free(out);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    memcpy(out->probs, probs, sizeof(float) * K);
    memcpy(out->logits, logits, sizeof(float) * K);
    out->feature_dim = F;
    if (F) memcpy(out->features, features, sizeof(float) * F);
    /* top-k by insertion: stable for ties (lower index first) */
    int k = top_k <= 0 || top_k > K ? K : top_k;
    int *idx = out->top_index;
    int have = 0;
    for (int c = 0; c < K; c++) {
        int pos = have < k ? have : k;
        while (pos > 0 && probs[idx[pos - 1]] < probs[c]) pos--;
        if (pos >= k) continue;
        int last = have < k ? have : k - 1;
        for (int j = last; j > pos; j--) idx[j] = idx[j - 1];
        idx[pos] = c;
        if (have < k) have++;
    }
    out->top_k = k;
    out->ood_score = (m->ood_dim && F == m->ood_dim) ? ood_score(m, features) : NAN;
    out->ood_flag = isfinite(out->ood_score) && out->ood_score > m->ood_threshold;
    return 0;
}

/* One member's mean over the TTA views: calibrated probabilities, logits and
 * pooled features into acc (K + K + F floats, zeroed by the caller). */
static int classify_one(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                        const dl_classify_options *opts, float *acc, dl_error *err)
{
    if (dl_model_ensure_exec(m, err)) return -1;
    dl_exec *e = &m->exec;
    const int K = m->num_classes, F = dl_model_feature_dim(m);
    const int W = m->pre.width, H = m->pre.height;
    size_t in_count = (size_t)W * H * 3;
    if (opts->progress && opts->progress(opts->progress_user, 0.0, "preprocess")) 
        return dl_fail(err, DL_ERR_CANCELLED, "cancelled");
    if (dl_preprocess_rgb8(&m->pre, rgb, width, height, stride, e->act[0], err)) return -1;
    int views = opts->tta && W == H ? 8 : 1; /* dihedral views need a square input */
    float *base = NULL;
    float *acc_logits = acc + K, *acc_feat = acc + 2 * K;
    if (views > 1) {
        base = malloc(sizeof(float) * in_count);
        if (!base) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
        memcpy(base, e->act[0], sizeof(float) * in_count);
    }
    float *probs = malloc(sizeof(float) * K);
    int rc = -1;
    if (!probs) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    for (int v = 0; v < views; v++) {
        /* non-square inputs: only flips (t in 0..3) */
        if (v > 0) dihedral(base, e->act[0], W, v);
        if (views > 1 && v == 0) memcpy(e->act[0], base, sizeof(float) * in_count);
        /* lean: the layers inside the runtime's banded chains are never
         * written out (only the output and the pooled features are read
         * here); off again at once, because explain's Score-CAM and
         * occlusion read intermediate layers of this same executor */
        e->lean = true;
        int frc = dl_exec_forward(e, e->act[0], -1, err);
        e->lean = false;
        if (frc) goto out;
        const float *logits = e->act[m->graph.output];
        dl_softmax_temperature(logits, K, m->temperature, probs);
        for (int c = 0; c < K; c++) { acc[c] += probs[c] / views; acc_logits[c] += logits[c] / views; }
        if (F) for (int c = 0; c < F; c++) acc_feat[c] += e->act[m->graph.features][c] / views;
        if (opts->progress && opts->progress(opts->progress_user, (v + 1.0) / views, "classify")) {
            dl_fail(err, DL_ERR_CANCELLED, "cancelled");
            goto out;
        }
    }
    rc = 0;
out:
    free(probs);
    free(base);
    return rc;
}

int dl_classify_rgb8(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                     const dl_classify_options *opts, dl_result *out, dl_error *err)
{
    if (!m || !out) return dl_fail(err, DL_ERR_ARG, "NULL model or result");
    memset(out, 0, sizeof *out);
    dl_classify_options def = {.top_k = 5};
    if (!opts) opts = &def;
    const int K = m->num_classes, F = dl_model_feature_dim(m);
    const size_t per = (size_t)K * 2 + (F ? F : 1);
    float *acc = calloc(per * 2, sizeof(float));
    if (!acc) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    float *one = acc + per;
    int rc = classify_one(m, rgb, width, height, stride, opts, acc, err);
    /* an ensemble: mean of the members' calibrated probabilities (and, for
     * the record, logits); features and OOD scale are member 0's */
    double ood_ratio = 0;
    bool ood_all = m->ood_dim > 0;
    const int n = 1 + m->n_members;
    if (!rc && m->n_members) {
        float s0 = m->ood_dim ? dl_model_ood_score_of(m, acc + 2 * K) : NAN;
        if (ood_all) ood_ratio += s0 / m->ood_threshold;
        for (int k = 0; k < m->n_members && !rc; k++) {
            dl_model *x = m->members[k];
            memset(one, 0, sizeof(float) * per);
            rc = classify_one(x, rgb, width, height, stride, opts, one, err);
            if (rc) break;
            for (int c = 0; c < 2 * K; c++) acc[c] += one[c];
            if (x->ood_dim && ood_all) ood_ratio += dl_model_ood_score_of(x, one + 2 * K) / x->ood_threshold;
            else ood_all = false;
        }
        for (int c = 0; c < 2 * K; c++) acc[c] /= n;
    }
    if (!rc) rc = dl_result_fill(m, out, acc, acc + K, acc + 2 * K, opts->top_k, err);
    if (!rc && m->n_members) {
        /* on member 0's scale, so its threshold still reads right */
        out->ood_score = ood_all ? (float)(ood_ratio / n * m->ood_threshold) : NAN;
        out->ood_flag = ood_all && isfinite(out->ood_score) && ood_ratio / n > 1.0;
    }
    free(acc);
    return rc;
}
