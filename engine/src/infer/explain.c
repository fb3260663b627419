/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Saliency maps: Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM (gradient based,
 * one forward + a backward from the logits down to the chosen layer only),
 * Score-CAM (gradient-free, batched masked forwards over the top-N channels)
 * and occlusion sensitivity (model-agnostic sliding grey patch).
 *
 * Every map is computed at layer (or network-input) resolution, upsampled
 * bilinearly to the caller's region, optionally Gaussian-smoothed and
 * min-max normalised to [0,1]; a map without any positive evidence is all
 * zeros, never NaN.
 *
 * Also here, for the faithfulness evaluation: ROAD's noisy linear
 * imputation (dl_impute_linear) and the Grad-CAM study switches
 * (dl_explain_rgb8_variant). The default Grad-CAM (last 7x7 convolution,
 * logit gradient, ReLU, no smoothing) was kept after a comparison on
 * ham10000/val: docs/reports/explain-faithfulness.md. */
#include "infer/infer.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Score-CAM masks only the N channels with the largest mean activation: the
 * full method needs one forward per channel (1280 for MobileNetV2's Conv_1),
 * 64 keeps it at ~1 s while covering the channels that dominate the map. */
#define DL_SCORECAM_TOP_N 64
/* Batch size of the extra forwards of Score-CAM and occlusion. */
#define DL_EXPLAIN_BATCH 8
/* Threads explaining an ensemble's members side by side, at most. */
#define DL_EXPLAIN_MAX_WORKERS 16
/* Occlusion patch and stride at a 224-pixel network input (scaled with it). */
#define DL_OCCLUSION_PATCH 32
#define DL_OCCLUSION_STRIDE 16

/* The one method table: what the CLI, the plug-in and the reports call each
 * method (indexed by dl_saliency_method). */
static const struct {
    const char *name, *label, *description;
} k_methods[] = {
    {"gradcam", "Grad-CAM", "Gradient-weighted class activation map: fast, coarse; the default"},
    {"gradcam++", "Grad-CAM++", "Grad-CAM with pixel-wise weights: better when several areas matter"},
    {"hirescam", "HiResCAM", "Gradients times activations, cell by cell: faithful to the last layer"},
    {"layercam", "LayerCAM", "Positive gradients per location: finer detail than Grad-CAM"},
    {"scorecam", "Score-CAM", "Masks the image with each activation map and scores it: slower, no gradients"},
    {"occlusion", "Occlusion", "Hides one patch at a time and measures the drop: slowest, model-agnostic"},
};
#define N_METHODS ((int)(sizeof k_methods / sizeof *k_methods))

int dl_explain_method_count(void)
{
    return N_METHODS;
}

const char *dl_explain_method_name(int m)
{
    return m >= 0 && m < N_METHODS ? k_methods[m].name : NULL;
}

const char *dl_explain_method_label(int m)
{
    return m >= 0 && m < N_METHODS ? k_methods[m].label : NULL;
}

const char *dl_explain_method_description(int m)
{
    return m >= 0 && m < N_METHODS ? k_methods[m].description : NULL;
}

int dl_explain_method_single_pass(int m)
{
    return m >= DL_SALIENCY_GRADCAM && m <= DL_SALIENCY_LAYERCAM;
}

int dl_saliency_method_from_name(const char *name)
{
    if (!name) return -1;
    /* case-insensitive; '-', '_' and spaces ignored; "pp" spells "++" */
    char buf[32];
    size_t n = 0;
    for (const char *p = name; *p; p++) {
        if (*p == '-' || *p == '_' || *p == ' ') continue;
        if (n + 1 >= sizeof buf) return -1;
        buf[n++] = (char)tolower((unsigned char)*p);
    }
    buf[n] = 0;
    if (!strcmp(buf, "gradcampp") || !strcmp(buf, "gradcamplusplus")) return DL_SALIENCY_GRADCAM_PP;
    for (int i = 0; i < N_METHODS; i++)
        if (!strcmp(buf, k_methods[i].name)) return i;
    return -1;
}

const char *dl_saliency_method_name(dl_saliency_method m)
{
    const char *s = dl_explain_method_name((int)m);
    return s ? s : "unknown";
}

/* ------------------------------------------------------------ layers */

/* The layers a map can be taken at: spatial convolution and add outputs
 * before the logits. */
static int usable_layer(const dl_graph *g, int i)
{
    const dl_node *n = &g->nodes[i];
    return n->h * n->w > 1 && (n->op == DL_OP_CONV2D || n->op == DL_OP_ADD);
}

int dl_explain_layer_count(const dl_model *m)
{
    int k = 0;
    for (int i = 1; m && i < m->graph.output; i++) k += usable_layer(&m->graph, i);
    return k;
}

int dl_explain_layer(const dl_model *m, int k, dl_layer_info *out)
{
    for (int i = 1; m && out && i < m->graph.output; i++) {
        if (!usable_layer(&m->graph, i) || k-- > 0) continue;
        const dl_node *n = &m->graph.nodes[i];
        *out = (dl_layer_info){.index = i, .name = n->name, .op = dl_op_name(n->op), .height = n->h, .width = n->w,
                               .channels = n->c, .is_default = i == dl_graph_last_spatial_conv(&m->graph)};
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------ helpers */

typedef struct {
    const dl_explain_options *o;
    dl_error *err;
} progress_ctx;

static int report(progress_ctx *p, double f, const char *stage)
{
    if (p->o->progress && p->o->progress(p->o->progress_user, f < 0 ? 0 : f > 1 ? 1 : f, stage))
        return dl_fail(p->err, DL_ERR_CANCELLED, "explain: cancelled during %s", stage);
    return 0;
}

static float *alloc_f(size_t n, dl_error *err)
{
    size_t bytes;
    float *p = NULL;
    if (!dl_mul_size(n ? n : 1, sizeof(float), &bytes) || !(p = malloc(bytes)))
        dl_fail(err, DL_ERR_NOMEM, "explain: cannot allocate %zu floats", n);
    return p;
}

/* Separable Gaussian blur in place (edge clamp); tmp holds w*h floats. */
static int gaussian_blur(float *m, int w, int h, float sigma, dl_error *err)
{
    int r = (int)ceilf(3.f * sigma);
    int lim = w > h ? w : h;
    if (r > lim) r = lim;
    if (r < 1) return 0;
    float *k = alloc_f((size_t)2 * r + 1, err);
    float *tmp = alloc_f((size_t)w * h, err);
    float *line = alloc_f((size_t)lim, err);
    if (!k || !tmp || !line) {
        free(k); free(tmp); free(line);
        return -1;
    }
    double s = 0;
    for (int i = -r; i <= r; i++) s += k[i + r] = expf(-(float)(i * i) / (2.f * sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] = (float)(k[i] / s);
    for (int y = 0; y < h; y++) { /* horizontal: m -> tmp */
        const float *row = m + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            float acc = 0;
            for (int i = -r; i <= r; i++) {
                int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                acc += k[i + r] * row[xx];
            }
            tmp[(size_t)y * w + x] = acc;
        }
    }
    for (int x = 0; x < w; x++) { /* vertical: tmp -> m */
        for (int y = 0; y < h; y++) line[y] = tmp[(size_t)y * w + x];
        for (int y = 0; y < h; y++) {
            float acc = 0;
            for (int i = -r; i <= r; i++) {
                int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                acc += k[i + r] * line[yy];
            }
            m[(size_t)y * w + x] = acc;
        }
    }
    free(k); free(tmp); free(line);
    return 0;
}

/* Non-finite and negative values -> 0, then min-max to [0,1]. A flat map
 * carries no localisation and becomes all zeros. */
static void normalise(float *m, size_t n, bool keep_negative)
{
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        float v = m[i];
        if (!isfinite(v) || (v < 0.f && !keep_negative)) v = m[i] = 0.f;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    float range = hi - lo, mag = fmaxf(fabsf(hi), fabsf(lo));
    if (!(range > 1e-12f * (mag > 1.f ? mag : 1.f))) {
        memset(m, 0, n * sizeof(float));
        return;
    }
    float inv = 1.f / range;
    for (size_t i = 0; i < n; i++) {
        float v = (m[i] - lo) * inv;
        m[i] = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
    }
}

/* Resolve the layer: exact node name, else a unique prefix (TFLite names
 * are long "a;b;c" chains; "MobilenetV2/Conv_1/Relu6" is enough). */
static int find_layer(const dl_graph *g, const char *name, dl_error *err)
{
    int idx = dl_graph_find_node(g, name);
    if (idx >= 0) return idx;
    size_t len = strlen(name);
    int hits = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (len && !strncmp(g->nodes[i].name, name, len)) {
            idx = i;
            hits++;
        }
    if (hits == 1) return idx;
    if (hits > 1)
        return dl_fail(err, DL_ERR_ARG, "layer \"%s\" is ambiguous (%d nodes start with it)", name, hits);
    return dl_fail(err, DL_ERR_ARG, "unknown layer \"%s\" (see `dermlens explain --layers`)", name);
}

/* A forward workspace of batch B for the extra passes of Score-CAM and
 * occlusion; m->exec keeps the original image's activations meanwhile. */
typedef struct {
    dl_exec ex;
    int batch, fill;
    size_t in_count;
} runner;

static int runner_init(runner *r, dl_model *m, int jobs, dl_error *err)
{
    memset(r, 0, sizeof *r);
    r->batch = jobs < DL_EXPLAIN_BATCH ? (jobs < 1 ? 1 : jobs) : DL_EXPLAIN_BATCH;
    r->in_count = dl_node_out_count(&m->graph.nodes[0]);
    return dl_exec_init(&r->ex, &m->graph, r->batch, err);
}

/* Run the filled slots; probs of class `cls` go to out[0..fill). */
static int runner_flush(runner *r, dl_model *m, int cls, float *out, float *probs, dl_error *err)
{
    if (!r->fill) return 0;
    const int K = m->num_classes;
    if (dl_exec_forward(&r->ex, r->ex.act[0], m->graph.output, err)) return -1;
    for (int b = 0; b < r->fill; b++) {
        dl_softmax_temperature(r->ex.act[m->graph.output] + (size_t)b * K, K, m->temperature, probs);
        out[b] = probs[cls];
    }
    r->fill = 0;
    return 0;
}

/* ------------------------------------------------------------ methods */

/* Grad-CAM family from A (hw x C) and G = dScore/dA (hw x C) into cam (hw). */
static int cam_from_gradients(dl_saliency_method method, const float *A, const float *G, int hw, int C,
                              bool relu, float *cam, dl_error *err)
{
    for (int i = 0; i < hw; i++) cam[i] = 0.f;
    if (method == DL_SALIENCY_HIRESCAM || method == DL_SALIENCY_LAYERCAM) {
        for (int i = 0; i < hw; i++) {
            const float *a = A + (size_t)i * C, *g = G + (size_t)i * C;
            double s = 0;
            if (method == DL_SALIENCY_HIRESCAM)
                for (int c = 0; c < C; c++) s += (double)g[c] * a[c];
            else
                for (int c = 0; c < C; c++) s += (g[c] > 0.f ? (double)g[c] : 0.0) * a[c];
            cam[i] = s > 0 || !relu ? (float)s : 0.f;
        }
        return 0;
    }
    double *w = calloc((size_t)C * 2, sizeof(double));
    if (!w) return dl_fail(err, DL_ERR_NOMEM, "explain: out of memory");
    double *suma = w + C;
    if (method == DL_SALIENCY_GRADCAM) {
        /* alpha_c = spatial mean of the gradient */
        for (int i = 0; i < hw; i++)
            for (int c = 0; c < C; c++) w[c] += G[(size_t)i * C + c];
        for (int c = 0; c < C; c++) w[c] /= hw;
    } else {
        /* Grad-CAM++ with the exp(score) convention: the exp(S) factors cancel
         * in alpha = g^2 / (2 g^2 + sum_ab A_ab g^3) and only scale w. */
        for (int i = 0; i < hw; i++)
            for (int c = 0; c < C; c++) suma[c] += A[(size_t)i * C + c];
        for (int i = 0; i < hw; i++)
            for (int c = 0; c < C; c++) {
                double g = G[(size_t)i * C + c], g2 = g * g;
                double den = 2.0 * g2 + suma[c] * g2 * g;
                double alpha = den != 0.0 ? g2 / den : 0.0;
                if (g > 0) w[c] += alpha * g;
            }
    }
    for (int i = 0; i < hw; i++) {
        const float *a = A + (size_t)i * C;
        double s = 0;
        for (int c = 0; c < C; c++) s += w[c] * a[c];
        cam[i] = s > 0 || !relu ? (float)s : 0.f;
    }
    free(w);
    return 0;
}

static int scorecam(dl_model *m, int layer, int cls, float p_unused, float *cam, progress_ctx *pc,
                    dl_error *err)
{
    (void)p_unused;
    const dl_node *L = &m->graph.nodes[layer];
    const int hw = L->h * L->w, C = L->c;
    const int W = m->pre.width, H = m->pre.height, K = m->num_classes;
    const float *A = m->exec.act[layer];
    const float *x0 = m->exec.act[0];
    int N = C < DL_SCORECAM_TOP_N ? C : DL_SCORECAM_TOP_N;
    int rc = -1;
    int *chan = malloc(sizeof(int) * N);
    double *mean = calloc(C, sizeof(double));
    float *mask = alloc_f((size_t)W * H, err), *chmap = alloc_f(hw, err);
    float *probs = alloc_f(K, err), *score = alloc_f(N + 1, err), *got = alloc_f(DL_EXPLAIN_BATCH, err);
    int *slot_of = malloc(sizeof(int) * DL_EXPLAIN_BATCH);
    runner r;
    memset(&r, 0, sizeof r);
    if (!chan || !mean || !mask || !chmap || !probs || !score || !got || !slot_of) {
        dl_fail(err, DL_ERR_NOMEM, "explain: out of memory");
        goto out;
    }
    for (int i = 0; i < hw; i++)
        for (int c = 0; c < C; c++) mean[c] += A[(size_t)i * C + c];
    /* top-N channels by mean activation (selection; N << C) */
    for (int k = 0; k < N; k++) {
        int best = -1;
        for (int c = 0; c < C; c++)
            if (mean[c] > -INFINITY && (best < 0 || mean[c] > mean[best])) best = c;
        chan[k] = best;
        mean[best] = -INFINITY;
    }
    if (runner_init(&r, m, N + 1, err)) goto out;
    /* job 0: baseline (everything masked: zeros in the normalised space,
     * i.e. the preprocessing's mean colour); job k+1: channel chan[k] */
    for (int j = 0; j <= N; j++) {
        float *dst = r.ex.act[0] + (size_t)r.fill * r.in_count;
        int keep = 1;
        if (j == 0) {
            memset(dst, 0, sizeof(float) * r.in_count);
        } else {
            int c = chan[j - 1];
            float lo = INFINITY, hi = -INFINITY;
            for (int i = 0; i < hw; i++) {
                float v = chmap[i] = A[(size_t)i * C + c];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            if (!(hi - lo > 1e-12f)) {
                keep = 0; /* a flat channel gives no mask: weight 0 */
                score[j] = NAN;
            } else {
                for (int i = 0; i < hw; i++) chmap[i] = (chmap[i] - lo) / (hi - lo);
                dl_map_resize(chmap, L->w, L->h, mask, W, H, W);
                for (size_t p = 0; p < (size_t)W * H; p++)
                    for (int ch = 0; ch < 3; ch++) dst[p * 3 + ch] = x0[p * 3 + ch] * mask[p];
            }
        }
        if (keep) slot_of[r.fill++] = j;
        if (r.fill == r.batch || (j == N && r.fill)) {
            int n = r.fill;
            if (runner_flush(&r, m, cls, got, probs, err)) goto out;
            for (int b = 0; b < n; b++) score[slot_of[b]] = got[b];
            if (report(pc, 0.1 + 0.85 * (double)j / N, "scorecam")) goto out;
        }
    }
    for (int i = 0; i < hw; i++) cam[i] = 0.f;
    for (int k = 0; k < N; k++) {
        if (isnan(score[k + 1])) continue;
        float w = score[k + 1] - score[0];
        int c = chan[k];
        for (int i = 0; i < hw; i++) cam[i] += w * A[(size_t)i * C + c];
    }
    for (int i = 0; i < hw; i++) cam[i] = cam[i] > 0.f ? cam[i] : 0.f;
    rc = 0;
out:
    dl_exec_free(&r.ex);
    free(chan); free(mean); free(mask); free(chmap); free(probs); free(score); free(got); free(slot_of);
    return rc;
}

/* Occlusion at network-input resolution: mean drop of p(class) over the
 * grey patches covering each pixel, into cam (H x W). */
static int occlusion(dl_model *m, int cls, float p0, float *cam, progress_ctx *pc, dl_error *err)
{
    const int W = m->pre.width, H = m->pre.height, K = m->num_classes;
    int P = (int)lround((double)DL_OCCLUSION_PATCH * (W < H ? W : H) / 224.0);
    if (P < 1) P = 1;
    if (P > W) P = W;
    if (P > H) P = H;
    int S = (int)lround((double)P * DL_OCCLUSION_STRIDE / DL_OCCLUSION_PATCH);
    if (S < 1) S = 1;
    int nx = (W - P + S - 1) / S + 1, ny = (H - P + S - 1) / S + 1;
    int jobs = nx * ny, rc = -1;
    const float *x0 = m->exec.act[0];
    float grey[3];
    for (int c = 0; c < 3; c++) grey[c] = (128.f - m->pre.mean[c]) / m->pre.std[c];
    float *cnt = alloc_f((size_t)W * H, err), *probs = alloc_f(K, err), *got = alloc_f(DL_EXPLAIN_BATCH, err);
    int *pos = malloc(sizeof(int) * 2 * DL_EXPLAIN_BATCH);
    runner r;
    memset(&r, 0, sizeof r);
    if (!cnt || !probs || !got || !pos) {
        dl_fail(err, DL_ERR_NOMEM, "explain: out of memory");
        goto out;
    }
    memset(cam, 0, sizeof(float) * W * H);
    memset(cnt, 0, sizeof(float) * W * H);
    if (runner_init(&r, m, jobs, err)) goto out;
    for (int j = 0; j < jobs; j++) {
        int px = (j % nx) * S, py = (j / nx) * S;
        if (px > W - P) px = W - P; /* last patch flush with the edge */
        if (py > H - P) py = H - P;
        float *dst = r.ex.act[0] + (size_t)r.fill * r.in_count;
        memcpy(dst, x0, sizeof(float) * r.in_count);
        for (int y = py; y < py + P; y++)
            for (int x = px; x < px + P; x++)
                for (int c = 0; c < 3; c++) dst[((size_t)y * W + x) * 3 + c] = grey[c];
        pos[2 * r.fill] = px;
        pos[2 * r.fill + 1] = py;
        r.fill++;
        if (r.fill == r.batch || j == jobs - 1) {
            int n = r.fill;
            if (runner_flush(&r, m, cls, got, probs, err)) goto out;
            for (int b = 0; b < n; b++) {
                float drop = p0 - got[b];
                for (int y = pos[2 * b + 1]; y < pos[2 * b + 1] + P; y++)
                    for (int x = pos[2 * b]; x < pos[2 * b] + P; x++) {
                        cam[(size_t)y * W + x] += drop;
                        cnt[(size_t)y * W + x] += 1.f;
                    }
            }
            if (report(pc, 0.1 + 0.85 * (j + 1.0) / jobs, "occlusion")) goto out;
        }
    }
    for (size_t i = 0; i < (size_t)W * H; i++) {
        float v = cnt[i] > 0 ? cam[i] / cnt[i] : 0.f;
        cam[i] = v > 0.f ? v : 0.f;
    }
    rc = 0;
out:
    dl_exec_free(&r.ex);
    free(cnt); free(probs); free(got); free(pos);
    return rc;
}

/* ------------------------------------------------------------ imputation */

/* Noisy linear imputation (ROAD, Rong et al. 2022; infer.h): a discrete
 * harmonic fill solved coarse to fine, plus seeded Gaussian noise. */

#define DL_IMPUTE_MAX_LEVELS 24
/* Gauss-Seidel sweeps per pyramid level (more at full size); with the
 * coarse start this fills a 30-pixel hole in a linear ramp to within one
 * grey level (tests/test_explain.c). */
#define DL_IMPUTE_SWEEPS_FINE 8
#define DL_IMPUTE_SWEEPS_COARSE 4

static void gs_sweeps(float *v, const uint8_t *known, int w, int h, int sweeps)
{
    static const int dx[8] = {-1, 1, 0, 0, -1, 1, -1, 1}, dy[8] = {0, 0, -1, 1, -1, -1, 1, 1};
    static const float wt[8] = {2, 2, 2, 2, 1, 1, 1, 1}; /* 1/6 : 1/12 */
    for (int s = 0; s < sweeps; s++) {
        /* alternate the scan direction so information travels both ways */
        int rev = s & 1;
        for (int yy = 0; yy < h; yy++) {
            int y = rev ? h - 1 - yy : yy;
            for (int xx = 0; xx < w; xx++) {
                int x = rev ? w - 1 - xx : xx;
                size_t i = (size_t)y * w + x;
                if (known[i]) continue;
                float acc[3] = {0, 0, 0}, ws = 0;
                for (int k = 0; k < 8; k++) {
                    int nx = x + dx[k], ny = y + dy[k];
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    const float *q = v + ((size_t)ny * w + nx) * 3;
                    acc[0] += wt[k] * q[0];
                    acc[1] += wt[k] * q[1];
                    acc[2] += wt[k] * q[2];
                    ws += wt[k];
                }
                for (int c = 0; c < 3; c++) v[i * 3 + c] = acc[c] / ws;
            }
        }
    }
}

int dl_impute_linear(uint8_t *rgb, int w, int h, const uint8_t *removed, float noise_sd, uint64_t seed,
                     dl_error *err)
{
    if (!rgb || !removed || w < 1 || h < 1) return dl_fail(err, DL_ERR_ARG, "impute: bad arguments");
    if (!(noise_sd >= 0.f) || noise_sd > 255.f) return dl_fail(err, DL_ERR_ARG, "impute: noise %g out of range", noise_sd);
    size_t n0;
    if (!dl_mul_size((size_t)w, (size_t)h, &n0) || n0 > (size_t)DL_MAX_IMAGE_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT, "impute: image %dx%d too large", w, h);
    /* pyramid sizes; total <= 4/3 of level 0 */
    int lw[DL_IMPUTE_MAX_LEVELS], lh[DL_IMPUTE_MAX_LEVELS], nl = 1;
    size_t off[DL_IMPUTE_MAX_LEVELS], total = n0;
    lw[0] = w; lh[0] = h; off[0] = 0;
    while (nl < DL_IMPUTE_MAX_LEVELS && (lw[nl - 1] > 1 || lh[nl - 1] > 1)) {
        lw[nl] = (lw[nl - 1] + 1) / 2;
        lh[nl] = (lh[nl - 1] + 1) / 2;
        off[nl] = total;
        total += (size_t)lw[nl] * lh[nl];
        nl++;
    }
    size_t fbytes;
    if (!dl_mul_size(total, 3 * sizeof(float), &fbytes)) return dl_fail(err, DL_ERR_LIMIT, "impute: too large");
    float *v = malloc(fbytes);
    uint8_t *known = malloc(total);
    if (!v || !known) {
        free(v); free(known);
        return dl_fail(err, DL_ERR_NOMEM, "impute: out of memory");
    }
    size_t n_removed = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            const uint8_t *p = rgb + i * 3;
            known[i] = !removed[i];
            n_removed += !known[i];
            for (int c = 0; c < 3; c++) v[i * 3 + c] = known[i] ? p[c] : 0.f;
        }
    if (!n_removed) { free(v); free(known); return 0; }
    /* down: a coarse pixel is known if any child is; value = their mean */
    for (int l = 1; l < nl; l++) {
        float *pv = v + off[l - 1] * 3, *cv = v + off[l] * 3;
        const uint8_t *pk = known + off[l - 1];
        uint8_t *ck = known + off[l];
        for (int y = 0; y < lh[l]; y++)
            for (int x = 0; x < lw[l]; x++) {
                float acc[3] = {0, 0, 0};
                int cnt = 0;
                for (int j = 0; j < 4; j++) {
                    int px = 2 * x + (j & 1), py = 2 * y + (j >> 1);
                    if (px >= lw[l - 1] || py >= lh[l - 1]) continue;
                    size_t q = (size_t)py * lw[l - 1] + px;
                    if (!pk[q]) continue;
                    for (int c = 0; c < 3; c++) acc[c] += pv[q * 3 + c];
                    cnt++;
                }
                size_t i = (size_t)y * lw[l] + x;
                ck[i] = cnt > 0;
                for (int c = 0; c < 3; c++) cv[i * 3 + c] = cnt ? acc[c] / cnt : 0.f;
            }
    }
    /* nothing known anywhere: mid-grey is the only unbiased fill */
    if (!known[off[nl - 1]])
        for (int c = 0; c < 3; c++) v[off[nl - 1] * 3 + c] = 128.f;
    /* up: unknown pixels start from their parent, then relax */
    for (int l = nl - 2; l >= 0; l--) {
        float *cv = v + off[l + 1] * 3, *fv = v + off[l] * 3;
        const uint8_t *fk = known + off[l];
        for (int y = 0; y < lh[l]; y++)
            for (int x = 0; x < lw[l]; x++) {
                size_t i = (size_t)y * lw[l] + x;
                if (fk[i]) continue;
                size_t q = (size_t)(y / 2) * lw[l + 1] + x / 2;
                for (int c = 0; c < 3; c++) fv[i * 3 + c] = cv[q * 3 + c];
            }
        gs_sweeps(fv, fk, lw[l], lh[l], l == 0 ? DL_IMPUTE_SWEEPS_FINE : DL_IMPUTE_SWEEPS_COARSE);
    }
    uint64_t s = seed;
    for (size_t i = 0; i < n0; i++) {
        if (known[i]) continue;
        for (int c = 0; c < 3; c++) {
            float val = v[i * 3 + c];
            if (noise_sd > 0.f) val += noise_sd * (float)dl_rng_normal(&s);
            rgb[i * 3 + c] = (uint8_t)lrintf(val < 0.f ? 0.f : val > 255.f ? 255.f : val);
        }
    }
    free(v);
    free(known);
    return 0;
}

/* DL_EXPLAIN_GATE_LAST: the map of the last spatial convolution for the
 * same seed, upsampled to the finer layer's mw x mh grid and scaled to
 * [0, 1]; the caller multiplies the finer map (also scaled) by it. It has
 * its own backward, stopped at that convolution: a backward that goes on
 * below a node turns the node's gradient into its pre-activation gradient
 * in place. NULL on error. */
static float *last_conv_gate(const dl_graph *g, dl_exec *e, dl_saliency_method method, int out_node,
                             const float *seed, int layer, int mw, int mh, dl_error *err)
{
    int last = dl_graph_last_spatial_conv(g);
    if (last < layer) {
        dl_fail(err, DL_ERR_ARG, "explain: the gated layer must not follow the last convolution");
        return NULL;
    }
    const dl_node *C = &g->nodes[last];
    float *coarse = alloc_f((size_t)C->h * C->w, err), *up = alloc_f((size_t)mw * mh, err);
    if (!coarse || !up || dl_exec_backward(e, out_node, seed, last, err) ||
        cam_from_gradients(method, e->act[last], e->grad[last], C->h * C->w, C->c, true, coarse, err)) {
        free(coarse);
        free(up);
        return NULL;
    }
    dl_map_resize(coarse, C->w, C->h, up, mw, mh, (size_t)mw);
    normalise(up, (size_t)mw * mh, false);
    free(coarse);
    return up;
}

/* One backward from the seeded output to `layer` and the CAM of that layer
 * (layer w x h floats into cam), gated by the last convolution's map when
 * flags ask for it. Uses the activations of the last forward. */
static int gradcam_pass(const dl_graph *g, dl_exec *e, dl_saliency_method method, unsigned flags, int out_node,
                        const float *seed, int layer, float *cam, dl_error *err)
{
    const dl_node *L = &g->nodes[layer];
    const int mw = L->w, mh = L->h;
    float *gate = NULL;
    /* gating the last convolution by itself would square its map: no gate */
    if ((flags & DL_EXPLAIN_GATE_LAST) && layer != dl_graph_last_spatial_conv(g) &&
        !(gate = last_conv_gate(g, e, method, out_node, seed, layer, mw, mh, err)))
        return -1;
    if (dl_exec_backward(e, out_node, seed, layer, err) ||
        cam_from_gradients(method, e->act[layer], e->grad[layer], mh * mw, L->c, !(flags & DL_EXPLAIN_SIGNED), cam,
                           err)) {
        free(gate);
        return -1;
    }
    if (gate) {
        normalise(cam, (size_t)mw * mh, false);
        for (size_t i = 0; i < (size_t)mw * mh; i++) cam[i] *= gate[i];
    }
    free(gate);
    return 0;
}

/* Source pixel, in the untransformed network input (w x h), of pixel (x, y)
 * of dihedral transform t: bit 2 transposes (square inputs only), bit 0
 * mirrors left-right, bit 1 top-bottom. */
static size_t dihedral_src(int t, int x, int y, int w, int h)
{
    int u = x, v = y;
    if (t & 4) { u = y; v = x; }
    if (t & 1) u = w - 1 - u;
    if (t & 2) v = h - 1 - v;
    return (size_t)v * w + u;
}

/* DL_EXPLAIN_DIHEDRAL: the mean, over the dihedral transforms of the network
 * input (8 for a square input, the 4 flips otherwise), of each transform's
 * map upsampled to the input size, min-max normalised and mapped back to the
 * untransformed pixels. A CAM layer's grid is coarse (32 px cells at Conv_1)
 * and, with TF SAME stride-2 padding, not symmetric: each transform puts the
 * cell borders elsewhere, so the mean localises finer than one pass. Lesion
 * images have no up, down, left or right, and the model was trained with
 * these flips. The class and seed stay those of the untransformed forward,
 * which must be the last forward run. Returns the input-size map (malloc'd)
 * or NULL. */
static float *dihedral_cam(dl_model *m, dl_saliency_method method, unsigned flags, int out_node, const float *seed,
                           int layer, progress_ctx *pc, dl_error *err)
{
    const dl_graph *g = &m->graph;
    dl_exec *e = &m->exec;
    const dl_node *L = &g->nodes[layer];
    const int W = m->pre.width, H = m->pre.height, C = g->nodes[0].c;
    const int n_t = W == H ? 8 : 4;
    unsigned tmask = (flags >> DL_EXPLAIN_TMASK_SHIFT) & ((1u << n_t) - 1);
    if (!tmask) tmask = (1u << n_t) - 1;
    const int n_run = __builtin_popcount(tmask);
    const size_t n = (size_t)W * H;
    float *x0 = alloc_f(n * C, err), *acc = alloc_f(n, err), *up = alloc_f(n, err);
    float *coarse = alloc_f((size_t)L->w * L->h, err);
    int rc = -1;
    if (!x0 || !acc || !up || !coarse) goto out;
    memcpy(x0, e->act[0], n * C * sizeof(float));
    memset(acc, 0, n * sizeof(float));
    for (int t = 0, done = 0; t < n_t; t++) {
        if (!(tmask >> t & 1)) continue;
        if (t > 0) { /* t = 0 is the identity: its forward has been run */
            float *xi = e->act[0];
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    memcpy(xi + ((size_t)y * W + x) * C, x0 + dihedral_src(t, x, y, W, H) * C, C * sizeof(float));
            if (dl_exec_forward(e, xi, -1, err)) goto out;
        }
        if (gradcam_pass(g, e, method, flags, out_node, seed, layer, coarse, err)) goto out;
        dl_map_resize(coarse, L->w, L->h, up, W, H, (size_t)W);
        normalise(up, n, (flags & DL_EXPLAIN_SIGNED) != 0);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) acc[dihedral_src(t, x, y, W, H)] += up[(size_t)y * W + x] / n_run;
        if (report(pc, 0.05 + 0.45 * ++done / n_run, "backward")) goto out;
    }
    rc = 0;
out:
    free(x0);
    free(up);
    free(coarse);
    if (rc) {
        free(acc);
        return NULL;
    }
    return acc;
}

/* ------------------------------------------------------------ API */

/* dl_explain_rgb8_variant and its study flags are declared in infer/infer.h. */

int dl_explain_rgb8(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                    const dl_explain_options *opts, float **map_out, dl_result *result, dl_error *err)
{
    unsigned flags = opts && opts->single_pass ? 0u : DL_EXPLAIN_DIHEDRAL;
    if (flags && !(opts && opts->every_member_all_flips)) flags |= DL_EXPLAIN_SPREAD; /* no-op on one model */
    return dl_explain_rgb8_variant(m, rgb, width, height, stride, opts, flags, map_out, result, err);
}

static int explain_one(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                       const dl_explain_options *opts, unsigned flags, float **map_out, dl_result *result,
                       dl_error *err);

/* An ensemble's members explained side by side: each worker thread takes
 * the next member and runs its passes single-threaded in the member's own
 * executor, so the members' forwards need no synchronisation between layers
 * (less CPU than one member at a time on all threads; a batch-8 forward of a
 * member's 8 flips saved ~5 % more but needs a 225 MB arena per member:
 * docs/reports/plugin-speed.md).
 * Only the calling thread reports progress (a front end's progress call may
 * not be thread-safe) and a cancellation stops the others before their next
 * member. Each member's map is kept, and summed in member order afterwards,
 * so the result does not depend on which thread ran what. */
typedef struct {
    dl_model *m;
    const uint8_t *rgb;
    int width, height;
    size_t stride;
    dl_explain_options o; /* without progress: the workers' copy */
    const dl_explain_options *outer;
    unsigned flags;
    int n;
    float **maps;
    dl_error *errs;
    int *rcs;
    pthread_mutex_t mu;
    int next, done, stop;
    double shown; /* the last fraction reported */
} member_job;

static dl_model *member_of(dl_model *m, int k)
{
    return k ? m->members[k - 1] : m;
}

/* The calling thread's progress: members finished, plus its own member's
 * part, never going backwards. */
static int member_progress_fn(void *user, double f, const char *stage)
{
    member_job *j = user;
    pthread_mutex_lock(&j->mu);
    double v = (j->done + f) / j->n;
    if (v < j->shown) v = j->shown;
    j->shown = v;
    pthread_mutex_unlock(&j->mu);
    return j->outer->progress(j->outer->progress_user, v, stage);
}

/* Take members until none is left; the caller starts with member 0, kept
 * for it, so progress is reported (and a cancellation seen) from the start
 * however fast the workers are. */
static void member_loop(member_job *j, bool caller)
{
    for (bool first = caller;; first = false) {
        pthread_mutex_lock(&j->mu);
        int k = first ? 0 : j->stop ? j->n : j->next++;
        pthread_mutex_unlock(&j->mu);
        if (k >= j->n) return;
        dl_explain_options o = j->o;
        unsigned flags = j->flags & ~(0xffu << DL_EXPLAIN_TMASK_SHIFT);
        if ((flags & DL_EXPLAIN_SPREAD) && (flags & DL_EXPLAIN_DIHEDRAL)) {
            const dl_model *mk = member_of(j->m, k);
            const int n_t = mk->pre.width == mk->pre.height ? 8 : 4, share = j->n < n_t ? j->n : n_t;
            unsigned mask = 0;
            for (int t = 0; t < n_t; t++)
                if (t % share == k % share) mask |= 1u << t;
            flags |= mask << DL_EXPLAIN_TMASK_SHIFT;
        }
        if (caller && j->outer && j->outer->progress) {
            o.progress = member_progress_fn;
            o.progress_user = j;
        }
        j->rcs[k] = explain_one(member_of(j->m, k), j->rgb, j->width, j->height, j->stride, &o, flags,
                                &j->maps[k], NULL, &j->errs[k]);
        pthread_mutex_lock(&j->mu);
        j->done++;
        if (j->rcs[k]) j->stop = 1;
        pthread_mutex_unlock(&j->mu);
    }
}

static void *member_worker(void *arg)
{
    dl_thread_serial(1); /* one core per member: the pool would oversubscribe */
    member_loop(arg, false);
    return NULL;
}

/* Every member's map of class o->class_index into maps[0..n), on up to
 * `threads` threads (the caller is one). 0, or -1 with the first failing
 * member's error (a cancellation included). */
static int explain_members(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                           const dl_explain_options *o, const dl_explain_options *outer, unsigned flags,
                           int threads, float **maps, dl_error *err)
{
    const int n = 1 + m->n_members;
    member_job j = {.m = m, .rgb = rgb, .width = width, .height = height, .stride = stride, .o = *o,
                    .outer = outer, .flags = flags, .n = n, .maps = maps};
    j.o.progress = NULL;
    j.o.progress_user = NULL;
    j.next = 1; /* member 0 is the caller's (member_loop) */
    j.errs = calloc(n, sizeof *j.errs);
    j.rcs = calloc(n, sizeof *j.rcs);
    if (!j.errs || !j.rcs) {
        free(j.errs);
        free(j.rcs);
        return dl_fail(err, DL_ERR_NOMEM, "explain: out of memory");
    }
    pthread_mutex_init(&j.mu, NULL);
    if (threads > n) threads = n;
    pthread_t tid[DL_EXPLAIN_MAX_WORKERS];
    int started = 0;
    int was_serial = 0;
    if (threads > 1) {
        /* one thread per member at a time (this thread's kernels serial too,
         * restored below; other threads keep the engine's count) */
        was_serial = dl_thread_serial(1);
        for (int t = 1; t < threads && t <= DL_EXPLAIN_MAX_WORKERS; t++)
            if (pthread_create(&tid[started], NULL, member_worker, &j) == 0) started++;
    }
    member_loop(&j, true);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    if (threads > 1) dl_thread_serial(was_serial);
    pthread_mutex_destroy(&j.mu);
    int rc = 0;
    for (int k = 0; k < n && !rc; k++)
        if (j.rcs[k]) {
            if (err) *err = j.errs[k];
            rc = -1;
        }
    /* the workers' members may have finished after the caller's last report */
    if (!rc && outer && outer->progress && outer->progress(outer->progress_user, 1.0, "explain"))
        rc = dl_fail(err, DL_ERR_CANCELLED, "explain: cancelled");
    free(j.errs);
    free(j.rcs);
    return rc;
}

int dl_explain_rgb8_variant(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                            const dl_explain_options *opts, unsigned flags, float **map_out, dl_result *result,
                            dl_error *err)
{
    if (!m || !m->n_members || !map_out || !rgb)
        return explain_one(m, rgb, width, height, stride, opts, flags, map_out, result, err);
    /* An ensemble explains the ensemble's decision: its top class (unless
     * one is asked for), each member's map of that class, averaged. */
    *map_out = NULL;
    if (result) memset(result, 0, sizeof *result);
    if (width < 1 || height < 1 || (int64_t)width * height > DL_MAX_IMAGE_PIXELS)
        return explain_one(m, rgb, width, height, stride, opts, flags, map_out, result, err);
    dl_explain_options def = {.method = DL_SALIENCY_GRADCAM, .class_index = -1};
    dl_explain_options o = opts ? *opts : def;
    dl_result ens = {0};
    /* the ensemble's classification only when it is needed: for the class,
     * or for the caller */
    if (o.class_index < 0 || result) {
        dl_classify_options co = {.top_k = 5};
        if (dl_classify_rgb8(m, rgb, width, height, stride, &co, &ens, err)) return -1;
        if (o.class_index < 0) o.class_index = ens.top_index[0];
    }
    const int n = 1 + m->n_members;
    float **maps = calloc(n, sizeof *maps);
    int rc = -1;
    if (!maps) {
        dl_fail(err, DL_ERR_NOMEM, "explain: out of memory");
        goto out;
    }
    if (explain_members(m, rgb, width, height, stride, &o, opts && opts->progress ? opts : NULL, flags,
                        dl_get_num_threads(), maps, err))
        goto out;
    size_t total = (size_t)width * height;
    for (int k = 1; k < n; k++)
        for (size_t i = 0; i < total; i++) maps[0][i] += maps[k][i];
    normalise(maps[0], total, false);
    *map_out = maps[0];
    maps[0] = NULL;
    if (result) {
        *result = ens;
        memset(&ens, 0, sizeof ens);
    }
    rc = 0;
out:
    for (int k = 0; maps && k < n; k++) free(maps[k]);
    free(maps);
    dl_result_free(&ens);
    return rc;
}

static int explain_one(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                       const dl_explain_options *opts, unsigned flags, float **map_out, dl_result *result,
                       dl_error *err)
{
    if (map_out) *map_out = NULL;
    if (result) memset(result, 0, sizeof *result);
    if (!m || !rgb || !map_out) return dl_fail(err, DL_ERR_ARG, "explain: NULL model, image or map");
    if (width < 1 || height < 1) return dl_fail(err, DL_ERR_ARG, "explain: empty image (%dx%d)", width, height);
    if ((int64_t)width * height > DL_MAX_IMAGE_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT, "explain: image %dx%d exceeds %lld pixels", width, height,
                       (long long)DL_MAX_IMAGE_PIXELS);
    dl_explain_options def = {.method = DL_SALIENCY_GRADCAM, .class_index = -1};
    if (!opts) opts = &def;
    if ((int)opts->method < 0 || (int)opts->method >= N_METHODS)
        return dl_fail(err, DL_ERR_ARG, "explain: unknown method %d", (int)opts->method);
    if (!(opts->smooth_sigma >= 0.f) || opts->smooth_sigma > 1e4f)
        return dl_fail(err, DL_ERR_ARG, "explain: smoothing sigma %g out of range [0, 10000]", opts->smooth_sigma);
    progress_ctx pc = {opts, err};
    dl_graph *g = &m->graph;
    const int K = m->num_classes, out_node = g->output;
    const dl_saliency_method method = opts->method;
    const bool grad_based = method <= DL_SALIENCY_LAYERCAM;

    /* layer: validated before any work */
    int layer = -1;
    if (method != DL_SALIENCY_OCCLUSION || opts->layer) {
        if (opts->layer && *opts->layer) {
            if ((layer = find_layer(g, opts->layer, err)) < 0) return -1;
        } else if ((layer = dl_graph_last_spatial_conv(g)) < 0) {
            return dl_fail(err, DL_ERR_UNSUPPORTED, "explain: the model has no spatial convolution layer");
        }
        const dl_node *L = &g->nodes[layer];
        if (L->h * L->w <= 1)
            return dl_fail(err, DL_ERR_ARG, "layer \"%s\" is not spatial (%dx%dx%d): saliency needs a feature map",
                           L->name, L->h, L->w, L->c);
        if (layer >= out_node)
            return dl_fail(err, DL_ERR_ARG, "layer \"%s\" does not precede the output", L->name);
        if (L->op == DL_OP_ADD && L->act != DL_ACT_NONE)
            return dl_fail(err, DL_ERR_UNSUPPORTED, "layer \"%s\": an add with a fused activation is not supported; "
                           "choose a convolution", L->name);
    }
    if (opts->class_index >= K)
        return dl_fail(err, DL_ERR_ARG, "explain: class %d out of range (model has %d classes)", opts->class_index, K);

    if (dl_model_ensure_exec(m, err)) return -1;
    dl_exec *e = &m->exec;
    if (grad_based && dl_exec_enable_backward(e, false, err)) return -1;
    if (report(&pc, 0.0, "preprocess")) return -1;
    if (dl_preprocess_rgb8(&m->pre, rgb, width, height, stride, e->act[0], err)) return -1;
    if (dl_exec_forward(e, e->act[0], -1, err)) return -1;
    if (report(&pc, 0.05, "forward")) return -1;

    float *probs = alloc_f(K, err);
    if (!probs) return -1;
    const float *logits = e->act[out_node];
    dl_softmax_temperature(logits, K, m->temperature, probs);
    int cls = opts->class_index;
    if (cls < 0) {
        cls = 0;
        for (int c = 1; c < K; c++) if (probs[c] > probs[cls]) cls = c;
    }
    if (result) {
        const float *feat = g->features >= 0 ? e->act[g->features] : logits;
        if (dl_result_fill(m, result, probs, logits, feat, 5, err)) { free(probs); return -1; }
    }
    const float p0 = probs[cls];

    /* the raw map, at layer or network-input resolution */
    int mw, mh;
    if (method == DL_SALIENCY_OCCLUSION) {
        mw = m->pre.width;
        mh = m->pre.height;
    } else {
        mw = g->nodes[layer].w;
        mh = g->nodes[layer].h;
    }
    float *cam = alloc_f((size_t)mw * mh, err);
    float *map = NULL;
    int rc = -1;
    if (!cam) goto out;
    if (grad_based) {
        /* seed: d(logit of cls); backward stops at the layer, so the cost is
         * that of the layers above it only */
        size_t oc = dl_node_out_count(&g->nodes[out_node]);
        float *seed = calloc(oc, sizeof(float));
        if (!seed) { dl_fail(err, DL_ERR_NOMEM, "explain: out of memory"); goto out; }
        if (flags & DL_EXPLAIN_SCORE_PROB) {
            /* d p_cls / d z_j = p_cls (delta_cj - p_j) / T */
            for (int j = 0; j < K; j++) seed[j] = -probs[cls] * probs[j] / m->temperature;
            seed[cls] += probs[cls] / m->temperature;
        } else {
            seed[cls] = 1.f;
        }
        int grc;
        if (flags & DL_EXPLAIN_DIHEDRAL) {
            free(cam);
            mw = m->pre.width;
            mh = m->pre.height;
            grc = !(cam = dihedral_cam(m, method, flags, out_node, seed, layer, &pc, err));
        } else {
            grc = gradcam_pass(g, e, method, flags, out_node, seed, layer, cam, err);
        }
        free(seed);
        if (grc) goto out;
        if (report(&pc, 0.5, "backward")) goto out;
    } else if (method == DL_SALIENCY_SCORECAM) {
        if (scorecam(m, layer, cls, p0, cam, &pc, err)) goto out;
    } else {
        if (occlusion(m, cls, p0, cam, &pc, err)) goto out;
    }

    /* map onto the caller's region: squash covers all of it, center_crop
     * only its central square (the rest was never seen: 0), pad shows all
     * of it inside the letterbox rectangle (the black border is dropped) */
    size_t total;
    if (!dl_mul_size((size_t)width, (size_t)height, &total)) { dl_fail(err, DL_ERR_LIMIT, "explain: image too large"); goto out; }
    /* the map, and the caller's overlay of the same size (RGBA) */
    if (dl_memory_check(total * (sizeof(float) + 4), "the saliency map and its overlay", err)) goto out;
    if (!(map = alloc_f(total, err))) goto out;
    if (strcmp(m->pre.resize, "pad") == 0) {
        int lx, ly, lw, lh;
        dl_preprocess_letterbox(width, height, m->pre.width, m->pre.height, &lx, &ly, &lw, &lh);
        double sx = (double)mw / m->pre.width, sy = (double)mh / m->pre.height;
        dl_map_resize_rect(cam, mw, mh, lx * sx, ly * sy, lw * sx, lh * sy, map, width, height, (size_t)width);
    } else if (strcmp(m->pre.resize, "center_crop") == 0) {
        int side = width < height ? width : height;
        int ox = (width - side) / 2, oy = (height - side) / 2;
        memset(map, 0, total * sizeof(float));
        dl_map_resize(cam, mw, mh, map + (size_t)oy * width + ox, side, side, (size_t)width);
    } else {
        dl_map_resize(cam, mw, mh, map, width, height, (size_t)width);
    }
    if (opts->smooth_sigma > 0.f && gaussian_blur(map, width, height, opts->smooth_sigma, err)) goto out;
    normalise(map, total, grad_based && (flags & DL_EXPLAIN_SIGNED));
    if (report(&pc, 1.0, "explain")) goto out;
    *map_out = map;
    map = NULL;
    rc = 0;
out:
    free(map);
    free(cam);
    free(probs);
    if (rc && result) dl_result_free(result);
    return rc;
}
