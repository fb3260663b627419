/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The saliency faithfulness study (dermlens_eval.h): deletion / insertion
 * AUCs with ROAD imputation and blur against a random and a centre map, the
 * cascading model-randomisation check (Adebayo et al. 2018) and the sweep
 * of Grad-CAM variants. `dermlens explain --evaluate` prints its tables. */
#include "eval/eval.h"
#include "infer/infer.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the study's own layers of reference, by name prefix (MobileNetV2's) */
typedef struct {
    const char *label, *layer;
    unsigned flags;
    float smooth;
} variant;

static const variant k_variants[] = {
    /* first: the reference every row is paired against, the single-pass
     * map (the default until the flip mean, row 9, qualified on val;
     * docs/reports/explain-faithfulness.md) */
    {"Conv_1 (7x7x1280), logit, ReLU, no smoothing, one pass (reference)", "MobilenetV2/Conv_1/", 0, 0},
    {"Conv_1, probability", "MobilenetV2/Conv_1/", DL_EXPLAIN_SCORE_PROB, 0},
    {"Conv_1, no ReLU (signed map)", "MobilenetV2/Conv_1/", DL_EXPLAIN_SIGNED, 0},
    {"Conv_1, smoothing sigma 8 px", "MobilenetV2/Conv_1/", 0, 8},
    {"block 16 project (7x7x320)", "MobilenetV2/expanded_conv_16/project/", 0, 0},
    {"block 13 expand (14x14x576)", "MobilenetV2/expanded_conv_13/expand/", 0, 0},
    {"block 12 output (add, 14x14x96)", "MobilenetV2/expanded_conv_12/add", 0, 0},
    {"block 13 expand gated by Conv_1 (14x14, product of the two maps)", "MobilenetV2/expanded_conv_13/expand/",
     DL_EXPLAIN_GATE_LAST, 0},
    {"block 12 output gated by Conv_1 (14x14, product)", "MobilenetV2/expanded_conv_12/add", DL_EXPLAIN_GATE_LAST, 0},
    {"Conv_1, mean over the 8 flips/transposes of the input (8 passes a member) = the default on one model",
     "MobilenetV2/Conv_1/",
     DL_EXPLAIN_DIHEDRAL, 0},
    {"Conv_1, probability, mean over the 8 flips/transposes", "MobilenetV2/Conv_1/",
     DL_EXPLAIN_DIHEDRAL | DL_EXPLAIN_SCORE_PROB, 0},
    {"Conv_1, the 8 flips/transposes shared out among an ensemble's members (each run by one member; "
     "= row 9 on one model) = the default on an ensemble", "MobilenetV2/Conv_1/", DL_EXPLAIN_DIHEDRAL | DL_EXPLAIN_SPREAD, 0},
};
#define N_VARIANTS ((int)(sizeof k_variants / sizeof *k_variants))
_Static_assert(N_VARIANTS <= DL_FAITH_MAX_VARIANTS, "variant table larger than DL_FAITH_MAX_VARIANTS");

static const int k_depths[DL_FAITH_MAX_DEPTHS] = {1, 2, 3, 5, 8, 12};

/* Workers of one run, at most (each holds 1 + n_depths models). */
#define FAITH_MAX_WORKERS 16
/* Batch of the probability probes. */
#define FAITH_BATCH 8

int dl_faith_depth_layers(int d)
{
    return d >= 0 && d < DL_FAITH_MAX_DEPTHS ? k_depths[d] : -1;
}

int dl_faith_variant_count(void)
{
    return N_VARIANTS;
}

int dl_faith_variant_default(void)
{
    for (int v = 0; v < N_VARIANTS; v++)
        if (k_variants[v].flags == DL_EXPLAIN_DIHEDRAL && !k_variants[v].smooth) return v;
    return 0;
}

const char *dl_faith_variant_label(int v)
{
    return v >= 0 && v < N_VARIANTS ? k_variants[v].label : NULL;
}

/* ------------------------------------------------------------ method specs */

static int spec_valid(int spec)
{
    int m = spec & ~DL_FAITH_ONE_PASS;
    return m >= 0 && m < dl_explain_method_count() && (!(spec & DL_FAITH_ONE_PASS) || dl_explain_method_single_pass(m));
}

int dl_faith_method_parse(const char *s)
{
    if (!s) return -1;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *suffix = strstr(buf, ":1pass");
    int one_pass = suffix && !suffix[6];
    if (one_pass) *suffix = 0;
    int m = dl_saliency_method_from_name(buf);
    if (m < 0) return -1;
    int spec = m | (one_pass ? DL_FAITH_ONE_PASS : 0);
    return spec_valid(spec) ? spec : -1;
}

const char *dl_faith_method_key(int spec, char *buf, size_t len)
{
    int m = spec & ~DL_FAITH_ONE_PASS;
    snprintf(buf, len, "%s%s", spec_valid(spec) ? dl_explain_method_name(m) : "?",
             spec_valid(spec) && (spec & DL_FAITH_ONE_PASS) ? ":1pass" : "");
    return buf;
}

const char *dl_faith_method_title(int spec, char *buf, size_t len)
{
    int m = spec & ~DL_FAITH_ONE_PASS;
    snprintf(buf, len, "%s%s", spec_valid(spec) ? dl_explain_method_label(m) : "?",
             spec_valid(spec) && (spec & DL_FAITH_ONE_PASS) ? ", one pass" : "");
    return buf;
}

static dl_explain_options method_options(int spec, int cls)
{
    dl_explain_options eo = {.method = spec & ~DL_FAITH_ONE_PASS, .class_index = cls,
                             .single_pass = (spec & DL_FAITH_ONE_PASS) != 0};
    return eo;
}

/* ------------------------------------------------------------ probes */

/* p(class) of many network-size images through one batch executor. */
typedef struct {
    dl_model *m;
    dl_exec ex;
    int B, W, H;
    float *probs;
} prober;

static int prober_init(prober *p, dl_model *m, int batch, dl_error *err)
{
    memset(p, 0, sizeof *p);
    p->m = m;
    p->B = batch;
    p->W = m->pre.width;
    p->H = m->pre.height;
    p->probs = malloc(sizeof(float) * m->num_classes);
    if (!p->probs) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    return dl_exec_init(&p->ex, &m->graph, batch, err);
}

static void prober_free(prober *p)
{
    dl_exec_free(&p->ex);
    free(p->probs);
}

/* p(cls) for n network-size RGB8 images. */
static int probe(prober *p, uint8_t *const *imgs, int n, int cls, float *out, dl_error *err)
{
    size_t in = (size_t)p->W * p->H * 3;
    int K = p->m->num_classes, o = p->m->graph.output;
    for (int s = 0; s < n; s += p->B) {
        int k = n - s < p->B ? n - s : p->B;
        for (int b = 0; b < k; b++)
            if (dl_preprocess_rgb8(&p->m->pre, imgs[s + b], p->W, p->H, (size_t)p->W * 3, p->ex.act[0] + b * in, err))
                return -1;
        if (dl_exec_forward(&p->ex, p->ex.act[0], o, err)) return -1;
        for (int b = 0; b < k; b++) {
            dl_softmax_temperature(p->ex.act[o] + (size_t)b * K, K, p->m->temperature, p->probs);
            out[s + b] = p->probs[cls];
        }
    }
    return 0;
}

/* ------------------------------------------------------------ maps */

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    float v;
    int i;
} keyed;

static int cmp_keyed_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->v < y->v ? 1 : x->v > y->v ? -1 : x->i - y->i;
}

/* Pixel order, most salient first; ties (e.g. Grad-CAM's zero plateau) are
 * broken by a fixed random jitter so they are removed in no spatial order. */
static void saliency_order(const float *map, int n, uint64_t seed, int *order, keyed *kv)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        kv[i].v = map[i] + (float)(dl_rng_uniform(&s) * 1e-6);
        kv[i].i = i;
    }
    qsort(kv, n, sizeof *kv, cmp_keyed_desc);
    for (int i = 0; i < n; i++) order[i] = kv[i].i;
}

static void ranks(const float *v, int n, keyed *kv, double *r)
{
    for (int i = 0; i < n; i++) { kv[i].v = v[i]; kv[i].i = i; }
    qsort(kv, n, sizeof *kv, cmp_keyed_desc);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && kv[j + 1].v == kv[i].v) j++;
        double rank = 0.5 * (i + j); /* ties share the mean rank */
        for (int k = i; k <= j; k++) r[kv[k].i] = rank;
        i = j + 1;
    }
}

/* Spearman rank correlation; NAN when either map is constant. */
static double spearman(const float *a, const float *b, int n, keyed *kv, double *ra, double *rb)
{
    ranks(a, n, kv, ra);
    ranks(b, n, kv, rb);
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) { ma += ra[i]; mb += rb[i]; }
    ma /= n;
    mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* Mean SSIM of two [0,1] maps (Wang et al. 2004: Gaussian window sigma 1.5,
 * C1 = 0.01^2, C2 = 0.03^2), computed on the maps downsampled 4x (the maps
 * are smooth; this keeps it cheap). Defined for flat maps too. */
static double ssim_maps(const float *a, const float *b, int w, int h)
{
    const int f = 4, sw = w / f, sh = h / f;
    if (sw < 8 || sh < 8) return NAN;
    size_t n = (size_t)sw * sh;
    double *buf = calloc(n * 10, sizeof(double));
    if (!buf) return NAN;
    double *A = buf, *B = A + n, *mu_a = B + n, *mu_b = mu_a + n, *aa = mu_b + n, *bb = aa + n, *ab = bb + n,
           *t = ab + n;
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < sw; x++) {
            double sa = 0, sb = 0;
            for (int j = 0; j < f; j++)
                for (int i = 0; i < f; i++) {
                    sa += a[(size_t)(y * f + j) * w + x * f + i];
                    sb += b[(size_t)(y * f + j) * w + x * f + i];
                }
            A[(size_t)y * sw + x] = sa / (f * f);
            B[(size_t)y * sw + x] = sb / (f * f);
        }
    double k[11], ks = 0;
    for (int i = -5; i <= 5; i++) ks += k[i + 5] = exp(-i * i / (2 * 1.5 * 1.5));
    for (int i = 0; i < 11; i++) k[i] /= ks;
    /* filter(src) -> dst, separable, edge clamp */
    double *srcs[5] = {A, B, NULL, NULL, NULL}, *dsts[5] = {mu_a, mu_b, aa, bb, ab};
    double *prod = t + n;
    for (int q = 0; q < 5; q++) {
        const double *src = srcs[q];
        if (q >= 2) {
            for (size_t i = 0; i < n; i++) prod[i] = q == 2 ? A[i] * A[i] : q == 3 ? B[i] * B[i] : A[i] * B[i];
            src = prod;
        }
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++) {
                double s = 0;
                for (int i = -5; i <= 5; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= sw ? sw - 1 : x + i;
                    s += k[i + 5] * src[(size_t)y * sw + xx];
                }
                t[(size_t)y * sw + x] = s;
            }
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++) {
                double s = 0;
                for (int i = -5; i <= 5; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= sh ? sh - 1 : y + i;
                    s += k[i + 5] * t[(size_t)yy * sw + x];
                }
                dsts[q][(size_t)y * sw + x] = s;
            }
    }
    const double C1 = 1e-4, C2 = 9e-4;
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        double va = aa[i] - mu_a[i] * mu_a[i], vb = bb[i] - mu_b[i] * mu_b[i], cab = ab[i] - mu_a[i] * mu_b[i];
        acc += (2 * mu_a[i] * mu_b[i] + C1) * (2 * cab + C2) /
               ((mu_a[i] * mu_a[i] + mu_b[i] * mu_b[i] + C1) * (va + vb + C2));
    }
    free(buf);
    return acc / n;
}

/* ------------------------------------------------------------ model randomisation */

/* Re-initialise the weights of the last `layers` weighted nodes (output
 * side) with Gaussian values of each tensor's own standard deviation. The
 * generator restarts for every call, so depth d+1 randomises exactly the
 * layers of depth d (same values) plus one more: a cascade. The executor's
 * packed weights are rebuilt on first use: m is freshly loaded. */
static int randomise_top(dl_model *m, int layers, char *names, size_t names_len)
{
    dl_graph *g = &m->graph;
    uint64_t s = 0x5eed5eedULL;
    int done = 0;
    if (names) names[0] = 0;
    for (int i = g->output; i > 0 && done < layers; i--) {
        dl_node *n = &g->nodes[i];
        if (n->weight < 0) continue;
        int ts[2] = {n->weight, n->bias};
        for (int k = 0; k < 2; k++) {
            if (ts[k] < 0) continue;
            dl_tensor *t = &g->tensors[ts[k]];
            double mean = 0, var = 0;
            for (size_t j = 0; j < t->count; j++) mean += t->data[j];
            mean /= t->count;
            for (size_t j = 0; j < t->count; j++) var += (t->data[j] - mean) * (t->data[j] - mean);
            double sd = sqrt(var / t->count);
            for (size_t j = 0; j < t->count; j++) t->data[j] = (float)(sd * dl_rng_normal(&s));
        }
        if (names) {
            const char *semi = strchr(n->name, ';');
            size_t len = strlen(names);
            snprintf(names + len, names_len - len, "%s%.*s", done ? ", " : "",
                     semi ? (int)(semi - n->name) : (int)strlen(n->name), n->name);
        }
        done++;
    }
    return done;
}

int dl_faith_cascade_plan(const void *model_bytes, size_t model_size, int max_layers, dl_faith_cascade *out,
                          dl_error *err)
{
    if (!model_bytes || !out) return dl_fail(err, DL_ERR_ARG, "dl_faith_cascade_plan: NULL argument");
    out->n_depths = 0;
    while (out->n_depths < DL_FAITH_MAX_DEPTHS && k_depths[out->n_depths] <= max_layers) {
        int d = out->n_depths;
        dl_error e2 = {0}; /* a model that does not load has no cascade: dl_faith_run says why */
        dl_model *mr = dl_model_load_memory(model_bytes, model_size, &e2);
        if (!mr) break;
        /* names of the layers this depth adds to the previous one */
        char all[4096];
        int got = randomise_top(mr, k_depths[d], all, sizeof all);
        dl_model_free(mr);
        if (got < k_depths[d]) break;
        const char *p = all;
        for (int skip = d ? k_depths[d - 1] : 0; skip > 0 && p; skip--) {
            p = strstr(p, ", ");
            if (p) p += 2;
        }
        /* a long list is cut to the field (as before, said explicitly) */
        snprintf(out->added[d], sizeof out->added[d], "+%.*s", (int)sizeof out->added[d] - 2, p ? p : "");
        out->n_depths++;
    }
    return 0;
}

/* ------------------------------------------------------------ picking */

int dl_faith_pick(const dl_dataset *ds, int limit, int **pick, int *n_pick, dl_error *err)
{
    *pick = NULL;
    *n_pick = 0;
    if (!ds || ds->n < 0 || ds->n_classes < 0) return dl_fail(err, DL_ERR_ARG, "dl_faith_pick: bad dataset");
    int *p = malloc(sizeof(int) * (ds->n > 0 ? ds->n : 1));
    int *next = calloc(ds->n_classes > 0 ? ds->n_classes : 1, sizeof(int));
    if (!p || !next) {
        free(p);
        free(next);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    if (limit <= 0 || limit > ds->n) limit = ds->n;
    int n = 0;
    while (n < limit) {
        int added = 0;
        for (int c = 0; c < ds->n_classes && n < limit; c++) {
            while (next[c] < ds->n && ds->labels[next[c]] != c) next[c]++;
            if (next[c] < ds->n) { p[n++] = next[c]++; added = 1; }
        }
        if (!added) break;
    }
    free(next);
    *pick = p;
    *n_pick = n;
    return 0;
}

/* ------------------------------------------------------------ the run */

typedef struct {
    /* shared, read-only */
    const dl_dataset *ds;
    const int *pick;
    int n_pick;
    const dl_faith_options *o;
    const uint8_t *model_bytes;
    size_t model_size;
    dl_faith_image *res;
    /* shared, under lock */
    pthread_mutex_t lock;
    int next, done;
} ev_job;

typedef struct {
    ev_job *job;
    dl_model *m, *rnd[DL_FAITH_MAX_DEPTHS];
    prober pr;
    int W, H, N;
    uint8_t *img, *blur, *full_grey, **bufs, *removed;
    int *order;
    keyed *kv;
    float *centre, *probs;
    double *ra, *rb;
    int variant_ok[DL_FAITH_MAX_VARIANTS];
} ev_worker;

/* The curve pair (MoRF + the second) of one map with one removal.
 * Endpoints are shared by all maps: p0 at 0% removed, p_full at 100%. */
static int map_curves(ev_worker *w, const float *map, uint64_t seed, int cls, float p0, float p_full, int removal,
                      int both, float out[2][DL_FAITH_MAX_STEPS + 1], double auc[2], dl_error *err)
{
    const int N = w->N, S = w->job->o->steps;
    saliency_order(map, N, seed, w->order, w->kv);
    int nb = 0;
    for (int c = 0; c < (both ? 2 : 1); c++)
        for (int k = 1; k < S; k++) {
            int cut = (int)((long)N * k / S);
            uint8_t *d = w->bufs[nb++];
            /* removed set: MoRF = the first `cut`; ROAD's LeRF = the last
             * `cut`; blur insertion = all but the first `cut` */
            memset(w->removed, 0, (size_t)N);
            if (c == DL_FAITH_MORF)
                for (int i = 0; i < cut; i++) w->removed[w->order[i]] = 1;
            else if (removal == DL_FAITH_ROAD)
                for (int i = N - cut; i < N; i++) w->removed[w->order[i]] = 1;
            else
                for (int i = cut; i < N; i++) w->removed[w->order[i]] = 1;
            memcpy(d, w->img, (size_t)N * 3);
            if (removal == DL_FAITH_ROAD) {
                if (dl_impute_linear(d, w->W, w->H, w->removed, DL_FAITH_ROAD_NOISE, seed + 131u * (uint64_t)k + c, err))
                    return -1;
            } else {
                for (int i = 0; i < N; i++)
                    if (w->removed[i]) memcpy(d + (size_t)i * 3, w->blur + (size_t)i * 3, 3);
            }
        }
    if (probe(&w->pr, w->bufs, nb, cls, w->probs, err)) return -1;
    for (int c = 0; c < (both ? 2 : 1); c++) {
        float *o = out[c];
        int insertion = c == DL_FAITH_SECOND && removal == DL_FAITH_BLUR;
        o[0] = insertion ? p_full : p0;
        o[S] = insertion ? p0 : p_full;
        for (int k = 1; k < S; k++) o[k] = w->probs[c * (S - 1) + k - 1];
        double a = 0;
        for (int k = 0; k < S; k++) a += 0.5 * (o[k] + o[k + 1]) / S;
        auc[c] = a;
    }
    return 0;
}

/* The picture as the network sees it (the model's crop, then squash), so
 * that maps, removal and probabilities share one pixel grid. */
static int load_network_view(ev_worker *w, const char *path, dl_error *err)
{
    dl_image src = {0}, net = {0};
    if (dl_image_load(path, &src, err)) return -1;
    dl_image view = src;
    if (!strcmp(w->m->pre.resize, "center_crop")) {
        int side = src.width < src.height ? src.width : src.height;
        view.pixels = src.pixels + (size_t)((src.height - side) / 2) * src.stride + (size_t)((src.width - side) / 2) * 3;
        view.width = view.height = side;
    }
    int rc = dl_image_resize(&view, w->W, w->H, &net, err);
    dl_image_free(&src);
    if (rc) return -1;
    for (int y = 0; y < w->H; y++)
        memcpy(w->img + (size_t)y * w->W * 3, net.pixels + (size_t)y * net.stride, (size_t)w->W * 3);
    dl_image_free(&net);
    return 0;
}

static int eval_image(ev_worker *w, int ii, dl_faith_image *r, dl_error *err)
{
    ev_job *job = w->job;
    const dl_faith_options *o = job->o;
    dl_model *m = w->m;
    const int W = w->W, H = w->H, N = w->N;
    if (load_network_view(w, job->ds->paths[job->pick[ii]], err)) return -1;
    /* the blur removal's replacement pixels */
    dl_image view = {.width = W, .height = H, .stride = (size_t)W * 3, .pixels = w->img}, blurred = {0};
    if (dl_image_blur(&view, 0.05 * (W < H ? W : H), &blurred, err)) return -1;
    for (int y = 0; y < H; y++)
        memcpy(w->blur + (size_t)y * W * 3, blurred.pixels + (size_t)y * blurred.stride, (size_t)W * 3);
    dl_image_free(&blurred);

    /* class and the shared endpoints: original, fully imputed, fully blurred */
    uint8_t *ends[3] = {w->img, w->full_grey, w->blur};
    float pe[3];
    dl_result res;
    if (dl_classify_rgb8(m, w->img, W, H, (size_t)W * 3, NULL, &res, err)) return -1;
    int cls = r->cls = res.top_index[0];
    dl_result_free(&res);
    if (probe(&w->pr, ends, 3, cls, pe, err)) return -1;
    r->p0 = pe[0];
    const float p_full[DL_FAITH_N_REMOVALS] = {pe[1], pe[2]};
    const uint64_t seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)(ii + 1) * 0x100000001b3ULL);

    float *maps[DL_FAITH_MAX_ROWS] = {0};
    const int n_rows = o->sweep_only ? 0 : o->n_methods + DL_FAITH_N_BASELINES;
    int rc = -1;
    for (int row = 0; row < n_rows; row++) {
        double c0 = thread_cpu();
        if (row < o->n_methods) {
            dl_explain_options eo = method_options(o->methods[row], cls);
            if (dl_explain_rgb8(m, w->img, W, H, (size_t)W * 3, &eo, &maps[row], NULL, err) ||
                (o->map_filter && o->map_filter(o->map_filter_user, m, maps[row], W, H, err)))
                goto out;
        } else if (row == o->n_methods) {
            /* random baseline at Grad-CAM's resolution (7x7 for a 224 input):
             * as coarse as the CAMs, so the comparison is not about blob size */
            float coarse[49];
            uint64_t s = seed ^ 0xabcdefULL;
            for (int i = 0; i < 49; i++) coarse[i] = (float)dl_rng_uniform(&s);
            if (!(maps[row] = malloc(sizeof(float) * N))) goto nomem;
            dl_map_resize(coarse, 7, 7, maps[row], W, H, (size_t)W);
        } else {
            if (!(maps[row] = malloc(sizeof(float) * N))) goto nomem;
            memcpy(maps[row], w->centre, sizeof(float) * N);
        }
        r->map_cpu[row] = thread_cpu() - c0;
        for (int rm = 0; rm < DL_FAITH_N_REMOVALS; rm++)
            if (map_curves(w, maps[row], seed, cls, r->p0, p_full[rm], rm, 1, r->curve[row][rm], r->auc[row][rm], err))
                goto out;
    }
    r->rho_centre = o->n_methods && n_rows ? spearman(maps[0], w->centre, N, w->kv, w->ra, w->rb) : NAN;
    /* sanity check: the same method on the cascade of randomised models */
    for (int mi = 0; mi < (n_rows ? o->n_methods : 0); mi++)
        for (int d = 0; d < o->n_depths; d++) {
            float *rmap = NULL;
            dl_explain_options eo = method_options(o->methods[mi], cls);
            if (dl_explain_rgb8(w->rnd[d], w->img, W, H, (size_t)W * 3, &eo, &rmap, NULL, err) ||
                (o->map_filter && o->map_filter(o->map_filter_user, m, rmap, W, H, err))) {
                free(rmap);
                goto out;
            }
            r->spearman[mi][d] = spearman(maps[mi], rmap, N, w->kv, w->ra, w->rb);
            r->ssim[mi][d] = ssim_maps(maps[mi], rmap, W, H);
            free(rmap);
        }
    /* sweep of Grad-CAM variants: ROAD MoRF only, with the centre map as
     * the reference every variant is paired against */
    if (o->sweep) {
        if (n_rows) {
            r->sweep_centre = r->auc[o->n_methods + 1][DL_FAITH_ROAD][DL_FAITH_MORF];
        } else {
            float cur[2][DL_FAITH_MAX_STEPS + 1];
            double a[2];
            if (map_curves(w, w->centre, seed, cls, r->p0, p_full[DL_FAITH_ROAD], DL_FAITH_ROAD, 0, cur, a, err))
                goto out;
            r->sweep_centre = a[0];
        }
        for (int v = 0; v < N_VARIANTS; v++) {
            r->sweep[v] = NAN;
            if (!w->variant_ok[v]) continue;
            float *vm = NULL, cur[2][DL_FAITH_MAX_STEPS + 1];
            double a[2];
            dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = cls, .layer = k_variants[v].layer,
                                     .smooth_sigma = k_variants[v].smooth};
            if (dl_explain_rgb8_variant(m, w->img, W, H, (size_t)W * 3, &eo, k_variants[v].flags, &vm, NULL, err))
                goto out;
            int crc = map_curves(w, vm, seed, cls, r->p0, p_full[DL_FAITH_ROAD], DL_FAITH_ROAD, 0, cur, a, err);
            free(vm);
            if (crc) goto out;
            r->sweep[v] = a[0];
        }
    }
    rc = 0;
    goto out;
nomem:
    dl_fail(err, DL_ERR_NOMEM, "out of memory");
out:
    for (int row = 0; row < n_rows; row++) free(maps[row]);
    return rc;
}

static void worker_free(ev_worker *w)
{
    if (w->bufs)
        for (int k = 0; k < 2 * DL_FAITH_MAX_STEPS; k++) free(w->bufs[k]);
    free(w->bufs);
    free(w->img); free(w->blur); free(w->full_grey); free(w->removed); free(w->order); free(w->kv);
    free(w->centre); free(w->probs); free(w->ra); free(w->rb);
    if (w->pr.m) prober_free(&w->pr);
    for (int d = 0; d < DL_FAITH_MAX_DEPTHS; d++) dl_model_free(w->rnd[d]);
    dl_model_free(w->m);
    memset(w, 0, sizeof *w);
}

static int worker_init(ev_worker *w, ev_job *job, dl_error *err)
{
    const dl_faith_options *o = job->o;
    w->job = job;
    if (!(w->m = dl_model_load_memory(job->model_bytes, job->model_size, err))) return -1;
    for (int d = 0; d < o->n_depths; d++) {
        if (!(w->rnd[d] = dl_model_load_memory(job->model_bytes, job->model_size, err))) return -1;
        randomise_top(w->rnd[d], k_depths[d], NULL, 0);
    }
    w->W = w->m->pre.width;
    w->H = w->m->pre.height;
    const int N = w->N = w->W * w->H;
    if (prober_init(&w->pr, w->m, FAITH_BATCH, err)) return -1;
    w->bufs = calloc(2 * DL_FAITH_MAX_STEPS, sizeof(uint8_t *));
    int ok = w->bufs != NULL;
    for (int k = 0; ok && k < 2 * o->steps; k++) ok = (w->bufs[k] = malloc((size_t)N * 3)) != NULL;
    w->img = malloc((size_t)N * 3);
    w->blur = malloc((size_t)N * 3);
    w->full_grey = malloc((size_t)N * 3);
    w->removed = malloc((size_t)N);
    w->order = malloc(sizeof(int) * N);
    w->kv = malloc(sizeof(keyed) * N);
    w->centre = malloc(sizeof(float) * N);
    w->probs = malloc(sizeof(float) * 2 * DL_FAITH_MAX_STEPS);
    w->ra = malloc(sizeof(double) * N);
    w->rb = malloc(sizeof(double) * N);
    if (!ok || !w->img || !w->blur || !w->full_grey || !w->removed || !w->order || !w->kv || !w->centre ||
        !w->probs || !w->ra || !w->rb)
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    /* 100% removed under ROAD: nothing is left to impute from */
    memset(w->removed, 1, (size_t)N);
    if (dl_impute_linear(w->full_grey, w->W, w->H, w->removed, 0.f, 1, err)) return -1;
    double sg = 0.25 * (w->W < w->H ? w->W : w->H);
    for (int y = 0; y < w->H; y++)
        for (int x = 0; x < w->W; x++) {
            double dx = x + 0.5 - w->W / 2.0, dy = y + 0.5 - w->H / 2.0;
            w->centre[(size_t)y * w->W + x] = (float)exp(-(dx * dx + dy * dy) / (2 * sg * sg));
        }
    for (int v = 0; v < N_VARIANTS; v++) {
        /* a variant whose layer the model lacks is skipped, not an error */
        dl_error e2 = {0};
        float *vm = NULL;
        dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = 0, .layer = k_variants[v].layer};
        w->variant_ok[v] = o->sweep && (v == 0 || ((o->variant_mask >> v) & 1u)) &&
                           dl_explain_rgb8_variant(w->m, w->full_grey, w->W, w->H, (size_t)w->W * 3, &eo, 0, &vm,
                                                   NULL, &e2) == 0;
        free(vm);
    }
    return 0;
}

/* "path: message", malloc'd (NULL when out of memory). */
static char *image_error(const char *path, const char *message)
{
    int n = snprintf(NULL, 0, "%s: %s", path, message);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) snprintf(s, (size_t)n + 1, "%s: %s", path, message);
    return s;
}

static void *worker_main(void *data)
{
    ev_worker *w = data;
    ev_job *job = w->job;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        int ii = job->next < job->n_pick ? job->next++ : -1;
        pthread_mutex_unlock(&job->lock);
        if (ii < 0) break;
        dl_error err = {0};
        dl_faith_image *r = &job->res[ii];
        if (eval_image(w, ii, r, &err) == 0) r->ok = 1;
        else r->error = image_error(job->ds->paths[job->pick[ii]], err.message);
        pthread_mutex_lock(&job->lock);
        int d = ++job->done;
        if (job->o->progress) job->o->progress(job->o->progress_user, (double)d / job->n_pick, "faithfulness");
        pthread_mutex_unlock(&job->lock);
    }
    return NULL;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

int dl_faith_run(const void *model_bytes, size_t model_size, const dl_dataset *ds, const int *pick, int n_pick,
                 const dl_faith_options *opts, dl_faith_result *out, dl_error *err)
{
    if (!out) return dl_fail(err, DL_ERR_ARG, "dl_faith_run: NULL result");
    memset(out, 0, sizeof *out);
    if (!model_bytes || !ds || !opts || (n_pick > 0 && !pick) || n_pick < 0)
        return dl_fail(err, DL_ERR_ARG, "dl_faith_run: NULL argument");
    if (opts->steps < 2 || opts->steps > DL_FAITH_MAX_STEPS)
        return dl_fail(err, DL_ERR_ARG, "dl_faith_run: steps %d (2..%d)", opts->steps, DL_FAITH_MAX_STEPS);
    if (opts->n_methods < 0 || opts->n_methods > DL_FAITH_MAX_METHODS || (opts->n_methods && !opts->methods) ||
        opts->n_depths < 0 || opts->n_depths > DL_FAITH_MAX_DEPTHS)
        return dl_fail(err, DL_ERR_ARG, "dl_faith_run: %d methods, %d depths", opts->n_methods, opts->n_depths);
    for (int i = 0; i < opts->n_methods; i++)
        if (!spec_valid(opts->methods[i]))
            return dl_fail(err, DL_ERR_ARG, "dl_faith_run: invalid method spec 0x%x", (unsigned)opts->methods[i]);
    out->n = n_pick;
    out->img = calloc(n_pick > 0 ? n_pick : 1, sizeof *out->img);
    if (!out->img) return dl_fail(err, DL_ERR_NOMEM, "out of memory");

    ev_job job = {.ds = ds, .pick = pick, .n_pick = n_pick, .o = opts, .model_bytes = model_bytes,
                  .model_size = model_size, .res = out->img};
    int threads = opts->threads > 0 ? opts->threads : dl_get_num_threads();
    if (threads > FAITH_MAX_WORKERS) threads = FAITH_MAX_WORKERS;
    if (threads > n_pick) threads = n_pick > 0 ? n_pick : 1;
    ev_worker *w = calloc(threads, sizeof *w);
    pthread_t *tid = calloc(threads, sizeof *tid);
    char *started = calloc(threads, 1);
    out->worker_errors = calloc(threads, sizeof *out->worker_errors);
    if (!w || !tid || !started || !out->worker_errors) {
        free(w);
        free(tid);
        free(started);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    out->n_workers = threads;
    pthread_mutex_init(&job.lock, NULL);
    /* one model set per worker; each forward then runs single-threaded */
    int prev_threads = dl_get_num_threads();
    dl_set_num_threads(1);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_t c0 = clock();
    int n_started = 0;
    dl_error first = {0};
    for (int t = 0; t < threads; t++) {
        dl_error e = {0};
        if (worker_init(&w[t], &job, &e) == 0 && pthread_create(&tid[t], NULL, worker_main, &w[t]) == 0) {
            started[t] = 1;
            n_started++;
            continue;
        }
        if (!e.message[0]) dl_fail(&e, DL_ERR_NOMEM, "cannot start a thread");
        out->worker_errors[t] = strdup(e.message);
        if (!first.message[0]) first = e;
        worker_free(&w[t]);
    }
    for (int t = 0; t < threads; t++)
        if (started[t]) {
            pthread_join(tid[t], NULL);
            worker_free(&w[t]);
        }
    out->wall_seconds = seconds_since(&t0);
    out->cpu_seconds = (double)(clock() - c0) / CLOCKS_PER_SEC;
    dl_set_num_threads(prev_threads);
    pthread_mutex_destroy(&job.lock);
    free(w);
    free(tid);
    free(started);
    for (int i = 0; i < n_pick; i++) {
        if (out->img[i].ok) out->n_ok++;
        else out->n_fail++;
    }
    if (!n_started) {
        if (err) *err = first;
        return -1;
    }
    return 0;
}

void dl_faith_result_free(dl_faith_result *r)
{
    if (!r) return;
    for (int i = 0; r->img && i < r->n; i++) free(r->img[i].error);
    free(r->img);
    for (int t = 0; r->worker_errors && t < r->n_workers; t++) free(r->worker_errors[t]);
    free(r->worker_errors);
    memset(r, 0, sizeof *r);
}
