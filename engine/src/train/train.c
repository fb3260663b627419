/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Transfer learning (see dl_train_config in dermlens.h).
 *
 * Data path: decode every image once to the backbone's input size (worker
 * threads) -> V augmented views each -> one forward pass of the frozen lower
 * backbone per view, keeping two caches: the activation at `cut` (stage 2)
 * and the pooled features (stage 1). Training then runs only the part of the
 * network above the cache, so an epoch costs a fraction of a full pass.
 * Checkpoints hold the trainable weights, the Adam moments and the epoch, so
 * --resume reproduces an uninterrupted run (caches are rebuilt
 * deterministically). */
#include "train/augment.h"
#include "train/optim.h"
#include "infer/infer.h"
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

void dl_train_config_defaults(dl_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->stages = 2;
    c->epochs_head = 40;
    c->epochs = 12;
    c->views = 4;
    c->batch = 32;
    c->lr_head = 1e-3f;
    c->lr = 3e-4f;
    c->weight_decay = 1e-4f;
    c->label_smoothing = 0.1f;
    c->dropout = 0.5f;
    c->hidden = 512;
    c->warmup_epochs = 1;
    c->patience = 4;
    c->seed = 42;
    c->name = "DermLens HAM10000 lesion classifier";
}

static const struct { const char *code, *name; } ham_names[] = {
    {"akiec", "actinic keratosis / intraepithelial carcinoma"},
    {"bcc", "basal cell carcinoma"},
    {"bkl", "benign keratosis-like lesion"},
    {"df", "dermatofibroma"},
    {"mel", "melanoma"},
    {"nv", "melanocytic nevus"},
    {"vasc", "vascular lesion"},
};

static const char *long_name(const char *code)
{
    for (size_t i = 0; i < sizeof ham_names / sizeof *ham_names; i++)
        if (!strcmp(code, ham_names[i].code)) return ham_names[i].name;
    return code;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const dl_train_config *cfg;
    int K;
    char **classes;
    /* training images (decoded at input size) */
    int n_train, n_val;
    int *train_labels, *val_labels;
    int *class_count;
    /* caches */
    dl_preprocess prep; /* the backbone's, with the chosen resize mode */
    int cut;          /* node index in the full graph */
    size_t cut_size;  /* floats per sample at cut */
    int feat_dim;
    float *cut_train;  /* n_train * V * cut_size */
    float *feat_train; /* n_train * V * feat_dim */
    float *cut_val, *feat_val;
    /* full fine-tuning (cut = input): decoded images, augmented on the fly */
    uint8_t **train_imgs;
    uint8_t **base;      /* [n_train] input-size renders of the recorded preprocessing */
    const dl_preprocess *pre;
    /* multi-source sampling and scale augmentation */
    int *train_source;   /* [n_train] index of the --train set an image came from */
    int n_sources;
    uint8_t **native;    /* [n_train] aspect-kept decodes (scale_aug), else NULL */
    int *native_dims;    /* [2 n_train] */
    dl_view_params vp;
    int framing;         /* recorded preprocessing: DL_FRAME_SQUASH, _CENTER_CROP or _PAD */
} trainer;

static void logf_(const dl_train_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const dl_train_config *c, const char *fmt, ...)
{
    if (!c->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->log(c->log_user, line);
}

/* ------------------------------------------------------------ data */

/* Append src's images to dst (same class order); src is emptied. */
static int append_set(dl_dataset *dst, dl_dataset *more, dl_error *err)
{
    {
        int n = dst->n + more->n;
        dl_dataset *train = dst;
        char **p = realloc(train->paths, sizeof(char *) * n);
        if (p) train->paths = p;
        int *l = realloc(train->labels, sizeof(int) * n);
        if (l) train->labels = l;
        char **g = realloc(train->groups, sizeof(char *) * n);
        if (g) train->groups = g;
        if (!p || !l || !g) { dl_dataset_free(more); return dl_fail(err, DL_ERR_NOMEM, "out of memory"); }
        for (int i = 0; i < more->n; i++) {
            train->paths[train->n + i] = more->paths[i];
            train->labels[train->n + i] = more->labels[i];
            train->groups[train->n + i] = more->groups[i];
            more->paths[i] = more->groups[i] = NULL;
        }
        train->n = n;
        dl_dataset_free(more);
    }
    return 0;
}

/* Image id of a path: its file name without the extension. */
static void image_id(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

/* Drop images whose id is listed in the exclusion file (one id per line;
 * '#' comments). sources (may be NULL) is compacted alongside. */
static int apply_exclusions(const dl_train_config *c, dl_dataset *d, int *sources, const char *what, dl_error *err)
{
    if (!c->exclude) return 0;
    uint8_t *data;
    size_t size;
    if (dl_read_file(c->exclude, (size_t)64 << 20, &data, &size, err)) return dl_fail_prefix(err, "--exclude");
    char *text = malloc(size + 1);
    if (!text) { free(data); return dl_fail(err, DL_ERR_NOMEM, "out of memory"); }
    memcpy(text, data, size);
    text[size] = 0;
    free(data);
    int keep = 0, dropped = 0;
    for (int i = 0; i < d->n; i++) {
        char id[256];
        image_id(d->paths[i], id, sizeof id);
        bool hit = false;
        size_t idl = strlen(id);
        for (char *line = text; line && *line && !hit;) {
            char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
            if (len == idl && line[0] != '#' && !memcmp(line, id, len)) hit = true;
            line = nl ? nl + 1 : NULL;
        }
        if (hit) {
            free(d->paths[i]);
            free(d->groups[i]);
            dropped++;
            continue;
        }
        d->paths[keep] = d->paths[i];
        d->labels[keep] = d->labels[i];
        d->groups[keep] = d->groups[i];
        if (sources) sources[keep] = sources[i];
        keep++;
    }
    d->n = keep;
    free(text);
    logf_(c, "excluded %d %s images listed in %s", dropped, what, c->exclude);
    return 0;
}

static int load_sets(trainer *t, dl_dataset *train, dl_dataset *val, dl_error *err)
{
    const dl_train_config *c = t->cfg;
    int n_val_sets = c->n_val_sets > 0 ? c->n_val_sets : 1;
    const char *const *val_sets = c->n_val_sets > 0 ? c->val_sets : &c->val_set;
    if (c->n_train_sets < 1 || !val_sets[0]) return dl_fail(err, DL_ERR_ARG, "need at least one training set and a validation set");
    dl_dataset_options o = {.split = c->train_split};
    if (dl_dataset_open(c->train_sets[0], &o, train, err)) return -1;
    int *sources = calloc(train->n, sizeof(int));
    if (!sources) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    for (int s = 1; s < c->n_train_sets; s++) {
        dl_dataset more;
        dl_dataset_options o2 = {.split = c->train_split, .class_order = (const char *const *)train->class_names,
                                 .n_class_order = train->n_classes};
        if (dl_dataset_open(c->train_sets[s], &o2, &more, err)) { free(sources); return -1; }
        int *ns = realloc(sources, sizeof(int) * ((size_t)train->n + more.n));
        if (!ns) { free(sources); dl_dataset_free(&more); return dl_fail(err, DL_ERR_NOMEM, "out of memory"); }
        sources = ns;
        for (int i = 0; i < more.n; i++) sources[train->n + i] = s;
        if (append_set(train, &more, err)) { free(sources); return -1; }
    }
    t->train_source = sources;
    t->n_sources = c->n_train_sets;
    if (train->n_classes < 2) return dl_fail(err, DL_ERR_DATA, "training data has %d class; need at least 2", train->n_classes);
    dl_dataset_options ov = {.split = c->val_split, .class_order = (const char *const *)train->class_names,
                             .n_class_order = train->n_classes};
    if (dl_dataset_open(val_sets[0], &ov, val, err)) return dl_fail_prefix(err, "validation set");
    for (int s = 1; s < n_val_sets; s++) {
        dl_dataset more;
        if (dl_dataset_open(val_sets[s], &ov, &more, err)) return dl_fail_prefix(err, "validation set");
        if (append_set(val, &more, err)) return -1;
    }
    if (apply_exclusions(c, train, t->train_source, "training", err) || apply_exclusions(c, val, NULL, "validation", err))
        return -1;
    /* optional cap per class (deterministic: first N in sorted order) */
    if (c->max_per_class > 0) {
        dl_dataset *sets[2] = {train, val};
        for (int s = 0; s < 2; s++) {
            dl_dataset *d = sets[s];
            int *seen = calloc(d->n_classes, sizeof(int));
            if (!seen) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
            int keep = 0;
            for (int i = 0; i < d->n; i++) {
                if (seen[d->labels[i]]++ < c->max_per_class) {
                    if (s == 0) t->train_source[keep] = t->train_source[i];
                    d->paths[keep] = d->paths[i];
                    d->labels[keep] = d->labels[i];
                    d->groups[keep] = d->groups[i];
                    keep++;
                } else {
                    free(d->paths[i]);
                    free(d->groups[i]);
                }
            }
            d->n = keep;
            free(seen);
        }
    }
    return 0;
}

/* Drop images that failed to decode (reported) so indices stay dense. */
static int compact(const dl_train_config *c, dl_dataset *d, uint8_t **imgs, char **errs, int *sources, int *dims,
                   const char *what)
{
    int keep = 0, bad = 0;
    for (int i = 0; i < d->n; i++) {
        if (!imgs[i]) {
            logf_(c, "skipping unreadable %s image %s: %s", what, d->paths[i], errs[i] ? errs[i] : "?");
            bad++;
            free(d->paths[i]);
            free(d->groups[i]);
            free(errs[i]);
            errs[i] = NULL;
            continue;
        }
        d->paths[keep] = d->paths[i];
        d->groups[keep] = d->groups[i];
        d->labels[keep] = d->labels[i];
        imgs[keep] = imgs[i];
        if (sources) sources[keep] = sources[i];
        if (dims) { dims[2 * keep] = dims[2 * i]; dims[2 * keep + 1] = dims[2 * i + 1]; }
        errs[keep] = NULL;
        keep++;
    }
    d->n = keep;
    return bad;
}

/* ------------------------------------------------------------ graphs */

/* Index of the default fine-tuning boundary: the latest node before the
 * last resolution stage that no later node skips over. */
static int auto_cut(const dl_graph *g, int features)
{
    int last_conv = dl_graph_last_spatial_conv(g);
    if (last_conv < 0) return features;
    int final_h = g->nodes[last_conv].h;
    int best = -1;
    size_t best_size = 0;
    for (int k = 1; k < features; k++) {
        if (g->nodes[k].h <= final_h) break;
        bool clean = true;
        for (int j = k + 1; j <= features && clean; j++)
            for (int q = 0; q < g->nodes[j].n_inputs; q++)
                if (g->nodes[j].inputs[q] < k) clean = false;
        /* only the last resolution stage before the final one */
        if (clean && g->nodes[k].h == 2 * final_h) {
            size_t sz = dl_node_out_count(&g->nodes[k]);
            if (best < 0 || sz <= best_size) { best = k; best_size = sz; } /* smallest cache, latest on ties */
        }
    }
    return best > 0 ? best : features;
}

static bool is_boundary(const dl_graph *g, int k, int last)
{
    for (int j = k + 1; j <= last; j++)
        for (int q = 0; q < g->nodes[j].n_inputs; q++)
            if (g->nodes[j].inputs[q] < k) return false;
    return true;
}

/* Full graph: backbone nodes 0..features plus the new head. */
static int build_full(dl_graph *full, const dl_graph *bb, int K, int hidden, float dropout, unsigned seed,
                      dl_error *err)
{
    dl_graph_init(full);
    int feat = bb->features;
    if (feat < 0) return dl_fail(err, DL_ERR_FORMAT, "backbone model has no pooled-feature node");
    for (int i = 0; i <= feat; i++) {
        dl_node n = bb->nodes[i];
        int ts[2] = {n.weight, n.bias};
        int *dst[2] = {&n.weight, &n.bias};
        for (int k = 0; k < 2; k++) {
            if (ts[k] < 0) continue;
            const dl_tensor *t = &bb->tensors[ts[k]];
            *dst[k] = dl_graph_add_tensor(full, t->name, t->ndim, t->dims, t->data, err);
            if (*dst[k] < 0) return -1;
        }
        n.trainable = false;
        if (dl_graph_add_node(full, &n, err) < 0) return -1;
    }
    full->features = feat;
    int F = bb->nodes[feat].c;
    uint64_t s = dl_seed_mix(seed, 0x4ea0);
    /* He-uniform for the ReLU layer, Glorot-uniform for the logits */
    int64_t d1[2] = {hidden, F}, b1[1] = {hidden}, d2[2] = {K, hidden}, b2[1] = {K};
    int w1 = dl_graph_add_tensor(full, "head/fc1.weight", 2, d1, NULL, err);
    int bi1 = dl_graph_add_tensor(full, "head/fc1.bias", 1, b1, NULL, err);
    int w2 = dl_graph_add_tensor(full, "head/logits.weight", 2, d2, NULL, err);
    int bi2 = dl_graph_add_tensor(full, "head/logits.bias", 1, b2, NULL, err);
    if (w1 < 0 || bi1 < 0 || w2 < 0 || bi2 < 0) return -1;
    float a1 = sqrtf(6.f / F), a2 = sqrtf(6.f / (hidden + K));
    for (size_t i = 0; i < full->tensors[w1].count; i++) full->tensors[w1].data[i] = (float)((dl_rand_uniform(&s) * 2 - 1) * a1);
    for (size_t i = 0; i < full->tensors[w2].count; i++) full->tensors[w2].data[i] = (float)((dl_rand_uniform(&s) * 2 - 1) * a2);
    dl_node fc1 = dl_node_make(DL_OP_DENSE, "head/fc1");
    fc1.n_inputs = 1; fc1.inputs[0] = feat; fc1.units = hidden; fc1.act = DL_ACT_RELU;
    fc1.weight = w1; fc1.bias = bi1;
    int i1 = dl_graph_add_node(full, &fc1, err);
    dl_node dr = dl_node_make(DL_OP_DROPOUT, "head/dropout");
    dr.n_inputs = 1; dr.inputs[0] = i1; dr.rate = dropout;
    int i2 = dl_graph_add_node(full, &dr, err);
    dl_node lo = dl_node_make(DL_OP_DENSE, "head/logits");
    lo.n_inputs = 1; lo.inputs[0] = i2; lo.units = K; lo.weight = w2; lo.bias = bi2;
    int i3 = dl_graph_add_node(full, &lo, err);
    if (i1 < 0 || i2 < 0 || i3 < 0) return -1;
    full->output = i3;
    return dl_graph_infer(full, err);
}

/* Nodes cut+1..end of full, fed by a new input node shaped like `cut`. */
static int build_sub(dl_graph *sub, const dl_graph *full, int cut, dl_error *err)
{
    dl_graph_init(sub);
    const dl_node *c = &full->nodes[cut];
    dl_node in = dl_node_make(DL_OP_INPUT, "cut");
    in.h = c->h; in.w = c->w; in.c = c->c;
    if (dl_graph_add_node(sub, &in, err) < 0) return -1;
    for (int i = cut + 1; i < full->n_nodes; i++) {
        dl_node n = full->nodes[i];
        for (int q = 0; q < n.n_inputs; q++) {
            if (n.inputs[q] < cut) return dl_fail(err, DL_ERR_ARG, "cut node %s is skipped over by %s", c->name, n.name);
            n.inputs[q] -= cut;
        }
        int ts[2] = {n.weight, n.bias};
        int *dst[2] = {&n.weight, &n.bias};
        for (int k = 0; k < 2; k++) {
            if (ts[k] < 0) continue;
            const dl_tensor *t = &full->tensors[ts[k]];
            *dst[k] = dl_graph_add_tensor(sub, t->name, t->ndim, t->dims, t->data, err);
            if (*dst[k] < 0) return -1;
        }
        n.trainable = true;
        if (dl_graph_add_node(sub, &n, err) < 0) return -1;
    }
    sub->output = full->output - cut;
    sub->features = full->features >= cut ? full->features - cut : -1;
    return dl_graph_infer(sub, err);
}

static void copy_weights(dl_graph *dst, const dl_graph *src)
{
    for (int i = 0; i < src->n_tensors; i++) {
        int j = dl_graph_find_tensor(dst, src->tensors[i].name);
        if (j >= 0 && dst->tensors[j].count == src->tensors[i].count)
            memcpy(dst->tensors[j].data, src->tensors[i].data, sizeof(float) * src->tensors[i].count);
    }
}

/* ------------------------------------------------------------ caches */

static void to_input(const dl_preprocess *p, const uint8_t *img, int n, float *out)
{
    for (int i = 0; i < n * 3; i++) out[i] = ((float)img[i] - p->mean[i % 3]) / p->std[i % 3];
}

/* What the recorded preprocessing makes of an image, at W x H (RGB8). */
static uint8_t *render_base(const uint8_t *img, int w, int h, int framing, int W, int H)
{
    dl_image src = {.width = w, .height = h, .stride = (size_t)w * 3, .pixels = (uint8_t *)img};
    if (framing == DL_FRAME_PAD) {
        /* letterbox, as infer/preprocess.c: resized into its rectangle, black around */
        int lx, ly, lw, lh;
        dl_preprocess_letterbox(w, h, W, H, &lx, &ly, &lw, &lh);
        dl_image r = {0};
        dl_error e = {0};
        if (dl_image_resize(&src, lw, lh, &r, &e)) return NULL;
        uint8_t *out = calloc((size_t)W * H * 3, 1);
        if (out)
            for (int y = 0; y < lh; y++)
                memcpy(out + ((size_t)(y + ly) * W + lx) * 3, r.pixels + (size_t)y * r.stride, (size_t)lw * 3);
        dl_image_free(&r);
        return out;
    }
    if (framing == DL_FRAME_CENTER_CROP) {
        int side = w < h ? w : h;
        src.pixels += (size_t)((h - side) / 2) * src.stride + (size_t)((w - side) / 2) * 3;
        src.width = src.height = side;
    }
    dl_image r = {0};
    dl_error e = {0};
    if (dl_image_resize(&src, W, H, &r, &e)) return NULL;
    uint8_t *out = malloc((size_t)W * H * 3);
    if (out)
        for (int y = 0; y < H; y++) memcpy(out + (size_t)y * W * 3, r.pixels + (size_t)y * r.stride, (size_t)W * 3);
    dl_image_free(&r);
    return out;
}

static uint8_t **render_all(uint8_t **imgs, const int *dims, int n, int framing, int W, int H)
{
    uint8_t **out = calloc(n ? n : 1, sizeof(uint8_t *));
    if (!out) return NULL;
    for (int i = 0; i < n; i++) {
        out[i] = render_base(imgs[i], dims[2 * i], dims[2 * i + 1], framing, W, H);
        if (!out[i]) {
            for (int j = 0; j < i; j++) free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

/* One augmented training view at the input size: a scale-and-framing view
 * of the aspect-kept decode when there is one, else the affine jitter of
 * the input-size image. */
static void train_view(const trainer *t, int img, uint8_t *dst, uint64_t seed)
{
    const int W = t->prep.width, H = t->prep.height;
    if (t->native) {
        int w = t->native_dims[2 * img], h = t->native_dims[2 * img + 1];
        dl_augment_view(t->native[img], w, h, (size_t)w * 3, t->framing, dst, W, H, &t->vp, seed);
    } else {
        dl_augment_rgb8(t->base[img], dst, W, H, seed);
    }
}

/* Run the frozen backbone on every (image, view) and keep the activation at
 * cut and the pooled features. View 0 is the clean image. */
static int build_caches(trainer *t, const dl_model *bb, dl_graph *full, uint8_t **imgs, int n, int views,
                        float **cut_out, float **feat_out, const char *what, dl_error *err)
{
    const dl_train_config *c = t->cfg;
    const int W = bb->pre.width, H = bb->pre.height, B = 16;
    const size_t in_n = (size_t)W * H;
    size_t total = (size_t)n * views;
    /* with cut = input the training views are rendered on the fly; only the
     * (clean) validation inputs are cached */
    bool need_cut = t->cut != full->features && (t->cut != 0 || views == 1);
    float *cut = need_cut ? malloc(sizeof(float) * total * t->cut_size) : NULL;
    float *feat = malloc(sizeof(float) * total * t->feat_dim);
    uint8_t *aug = malloc(in_n * 3);
    dl_exec e;
    if ((need_cut && !cut) || !feat || !aug) {
        free(cut); free(feat); free(aug);
        return dl_fail(err, DL_ERR_NOMEM, "cannot allocate the %s feature cache (%zu MiB)", what,
                       total * (t->cut_size * need_cut + t->feat_dim) * 4 >> 20);
    }
    if (dl_exec_init(&e, full, B, err)) { free(cut); free(feat); free(aug); return -1; }
    double t0 = now_s();
    for (size_t s0 = 0; s0 < total; s0 += B) {
        int nb = (int)(total - s0 < (size_t)B ? total - s0 : (size_t)B);
        for (int b = 0; b < B; b++) {
            float *dst = e.act[0] + (size_t)b * in_n * 3;
            if (b >= nb) { memset(dst, 0, sizeof(float) * in_n * 3); continue; }
            size_t s = s0 + b;
            int img = (int)(s / views), v = (int)(s % views);
            if (v == 0) {
                to_input(&bb->pre, imgs[img], (int)in_n, dst);
            } else {
                train_view(t, img, aug, dl_seed_mix(dl_seed_mix(c->seed, (uint64_t)img), (uint64_t)v));
                to_input(&bb->pre, aug, (int)in_n, dst);
            }
        }
        if (dl_exec_forward(&e, e.act[0], full->features, err)) goto fail;
        for (int b = 0; b < nb; b++) {
            if (need_cut) memcpy(cut + (s0 + b) * t->cut_size, e.act[t->cut] + (size_t)b * t->cut_size, sizeof(float) * t->cut_size);
            memcpy(feat + (s0 + b) * t->feat_dim, e.act[full->features] + (size_t)b * t->feat_dim, sizeof(float) * t->feat_dim);
        }
        if (c->progress) {
            double el = now_s() - t0, done = (double)(s0 + nb) / total;
            char st[160];
            snprintf(st, sizeof st, "caching %s views: %.0f img/s, ETA %.0f s", what, (s0 + nb) / (el > 1e-9 ? el : 1e-9),
                     el / done - el);
            if (c->progress(c->progress_user, done, st)) { dl_fail(err, DL_ERR_CANCELLED, "cancelled"); goto fail; }
        }
    }
    logf_(c, "cached %zu %s views (%d images x %d) in %.1f s (%.1f img/s)", total, what, n, views, now_s() - t0,
          total / (now_s() - t0));
    dl_exec_free(&e);
    free(aug);
    *cut_out = cut;
    *feat_out = feat;
    return 0;
fail:
    dl_exec_free(&e);
    free(cut); free(feat); free(aug);
    return -1;
}

/* ------------------------------------------------------------ checkpoint */

static char *ckpt_path(const dl_train_config *c)
{
    const char *base = c->checkpoint ? c->checkpoint : c->output;
    char *p = malloc(strlen(base) + 8);
    if (p) sprintf(p, "%s%s", base, c->checkpoint ? "" : ".ckpt");
    return p;
}

/* A checkpoint is a safetensors file: the sub graph's trainable tensors,
 * their Adam moments and, for early stopping, the best weights so far; the
 * state (stage, epoch, step, best score) in the metadata. */
static int ckpt_save(const char *path, const dl_graph *sub, const dl_adamw *a, const dl_graph *best, const dl_graph *ema,
                     int stage, int epoch, double best_score, int best_epoch, int bad_epochs, dl_error *err)
{
    cJSON *hdr = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(hdr, "__metadata__");
    char buf[256];
    snprintf(buf, sizeof buf, "{\"stage\":%d,\"epoch\":%d,\"step\":%ld,\"best_score\":%.17g,\"best_epoch\":%d,\"bad_epochs\":%d}",
             stage, epoch, a->step, best_score, best_epoch, bad_epochs);
    cJSON_AddStringToObject(meta, "format", "dermlens-checkpoint");
    cJSON_AddStringToObject(meta, "state", buf);
    size_t off = 0;
    int nt = 0;
    const float *datas[4096];
    size_t counts[4096];
    const int parts = ema ? 5 : 4;
    for (int i = 0; i < a->n && nt + parts <= 4096; i++) {
        const dl_tensor *t = &sub->tensors[a->tensor[i]];
        const char *pre[5] = {"w.", "m.", "v.", "best.", "ema."};
        const float *src[5] = {t->data, a->m[i], a->v[i], best->tensors[a->tensor[i]].data,
                               ema ? ema->tensors[a->tensor[i]].data : NULL};
        for (int k = 0; k < parts; k++) {
            cJSON *tj = cJSON_CreateObject();
            cJSON_AddStringToObject(tj, "dtype", "F32");
            cJSON *shape = cJSON_AddArrayToObject(tj, "shape");
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->count));
            double o2[2] = {(double)off, (double)(off + t->count * 4)};
            cJSON_AddItemToObject(tj, "data_offsets", cJSON_CreateDoubleArray(o2, 2));
            snprintf(buf, sizeof buf, "%s%s", pre[k], t->name);
            cJSON_AddItemToObject(hdr, buf, tj);
            datas[nt] = src[k];
            counts[nt++] = t->count;
            off += t->count * 4;
        }
    }
    return dl_safetensors_write(path, hdr, nt, datas, counts, err);
}

/* The stage recorded in a checkpoint's state, or -1 if it is not a readable
 * DermLens checkpoint. */
static int ckpt_stage_of(const char *path)
{
    uint8_t *data;
    size_t size;
    dl_error e = {0};
    if (dl_read_file(path, (size_t)DL_MAX_MODEL_BYTES, &data, &size, &e)) return -1;
    int stage = -1;
    uint64_t hl = 0;
    if (size >= 8) {
        for (int i = 7; i >= 0; i--) hl = hl << 8 | data[i];
        if (hl <= size - 8) {
            cJSON *hdr = cJSON_ParseWithLength((const char *)data + 8, hl);
            const cJSON *meta = cJSON_GetObjectItem(hdr, "__metadata__");
            const cJSON *fmt = cJSON_GetObjectItem(meta, "format"), *sj = cJSON_GetObjectItem(meta, "state");
            if (cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "dermlens-checkpoint") && cJSON_IsString(sj)) {
                cJSON *st = cJSON_Parse(sj->valuestring);
                const cJSON *sv = cJSON_GetObjectItem(st, "stage");
                if (cJSON_IsNumber(sv)) stage = sv->valueint;
                cJSON_Delete(st);
            }
            cJSON_Delete(hdr);
        }
    }
    free(data);
    return stage;
}

/* Restores into sub/adam/best. Returns 0 and the state, -1 on error. */
static int ckpt_load(const char *path, dl_graph *sub, dl_adamw *a, dl_graph *best, dl_graph *ema, int *stage, int *epoch,
                     double *best_score, int *best_epoch, int *bad_epochs, dl_error *err)
{
    uint8_t *data;
    size_t size;
    if (dl_read_file(path, (size_t)DL_MAX_MODEL_BYTES, &data, &size, err)) return -1;
    int rc = -1;
    cJSON *hdr = NULL, *st = NULL;
    uint64_t hl = 0;
    if (size < 8) { dl_fail(err, DL_ERR_FORMAT, "%s: truncated checkpoint", path); goto out; }
    for (int i = 7; i >= 0; i--) hl = hl << 8 | data[i];
    if (hl > size - 8) { dl_fail(err, DL_ERR_FORMAT, "%s: header length past the end", path); goto out; }
    hdr = cJSON_ParseWithLength((const char *)data + 8, hl);
    const cJSON *meta = cJSON_GetObjectItem(hdr, "__metadata__");
    const cJSON *sj = cJSON_GetObjectItem(meta, "state");
    if (!cJSON_IsString(sj) || !(st = cJSON_Parse(sj->valuestring))) { dl_fail(err, DL_ERR_FORMAT, "%s: not a DermLens checkpoint", path); goto out; }
    const uint8_t *base = data + 8 + hl;
    size_t dlen = size - 8 - hl;
    /* validate every tensor before touching anything: a checkpoint of the
     * other stage (or a damaged one) must leave the run untouched */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < a->n; i++) {
            dl_tensor *t = &sub->tensors[a->tensor[i]];
            const char *pre[5] = {"w.", "m.", "v.", "best.", "ema."};
            float *dst[5] = {t->data, a->m[i], a->v[i], best->tensors[a->tensor[i]].data,
                             ema ? ema->tensors[a->tensor[i]].data : NULL};
            for (int k = 0; k < (ema ? 5 : 4); k++) {
                char name[256];
                snprintf(name, sizeof name, "%s%s", pre[k], t->name);
                const cJSON *tj = cJSON_GetObjectItem(hdr, name);
                const cJSON *o = cJSON_GetObjectItem(tj, "data_offsets");
                if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2) { dl_fail(err, DL_ERR_FORMAT, "%s: tensor %s missing", path, name); goto out; }
                double b = cJSON_GetArrayItem(o, 0)->valuedouble, e = cJSON_GetArrayItem(o, 1)->valuedouble;
                if (b < 0 || e > (double)dlen || e - b != (double)t->count * 4) { dl_fail(err, DL_ERR_FORMAT, "%s: tensor %s has the wrong size", path, name); goto out; }
                if (pass == 1) memcpy(dst[k], base + (size_t)b, t->count * 4);
            }
        }
    }
    *stage = cJSON_GetObjectItem(st, "stage") ? cJSON_GetObjectItem(st, "stage")->valueint : 0;
    *epoch = cJSON_GetObjectItem(st, "epoch") ? cJSON_GetObjectItem(st, "epoch")->valueint : 0;
    a->step = cJSON_GetObjectItem(st, "step") ? (long)cJSON_GetObjectItem(st, "step")->valuedouble : 0;
    *best_score = cJSON_GetObjectItem(st, "best_score") ? cJSON_GetObjectItem(st, "best_score")->valuedouble : -1;
    *best_epoch = cJSON_GetObjectItem(st, "best_epoch") ? cJSON_GetObjectItem(st, "best_epoch")->valueint : 0;
    *bad_epochs = cJSON_GetObjectItem(st, "bad_epochs") ? cJSON_GetObjectItem(st, "bad_epochs")->valueint : 0;
    rc = 0;
out:
    cJSON_Delete(hdr);
    cJSON_Delete(st);
    free(data);
    return rc;
}

/* ------------------------------------------------------------ evaluation */

typedef struct { double loss, acc, bacc, auc, mel_recall; } val_stats;

/* Forward every cached val sample through sub (views==1 caches). logits out
 * n x K (may be NULL). */
static int eval_sub(dl_exec *e, const float *cache, size_t per, int n, int K, const int *labels, float *logits_out,
                    val_stats *vs, const int *label_map, dl_error *err)
{
    const dl_graph *g = e->g;
    const int B = e->batch;
    float *probs = malloc(sizeof(float) * (size_t)n * K);
    int *pred = malloc(sizeof(int) * n);
    if (!probs || !pred) { free(probs); free(pred); return dl_fail(err, DL_ERR_NOMEM, "out of memory"); }
    bool was = e->training;
    e->training = false;
    double loss = 0;
    for (int s0 = 0; s0 < n; s0 += B) {
        int nb = n - s0 < B ? n - s0 : B;
        memcpy(e->act[0], cache + (size_t)s0 * per, sizeof(float) * per * nb);
        if (nb < B) memset(e->act[0] + (size_t)nb * per, 0, sizeof(float) * per * (B - nb));
        if (dl_exec_forward(e, e->act[0], g->output, err)) { free(probs); free(pred); return -1; }
        const float *lg = e->act[g->output];
        loss += dl_softmax_xent(nb, K, lg, labels + s0, NULL, 0.f, NULL) * nb;
        dl_softmax_forward(nb, K, lg, probs + (size_t)s0 * K);
        if (logits_out) memcpy(logits_out + (size_t)s0 * K, lg, sizeof(float) * nb * K);
    }
    e->training = was;
    int correct = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < K; k++) if (probs[(size_t)i * K + k] > probs[(size_t)i * K + best]) best = k;
        pred[i] = best;
        correct += best == labels[i];
    }
    vs->loss = loss / n;
    vs->acc = (double)correct / n;
    vs->bacc = dl_balanced_accuracy(n, K, labels, pred);
    double auc_sum = 0;
    int auc_n = 0;
    int *pos = malloc(sizeof(int) * n);
    float *sc = malloc(sizeof(float) * n);
    if (pos && sc) {
        for (int k = 0; k < K; k++) {
            for (int i = 0; i < n; i++) { pos[i] = labels[i] == k; sc[i] = probs[(size_t)i * K + k]; }
            double a = dl_auc_binary(n, sc, pos);
            if (isfinite(a)) { auc_sum += a; auc_n++; }
        }
    }
    vs->auc = auc_n ? auc_sum / auc_n : NAN;
    vs->mel_recall = NAN;
    if (label_map && label_map[0] >= 0) {
        int mel = label_map[0], tp = 0, p = 0;
        for (int i = 0; i < n; i++) if (labels[i] == mel) { p++; tp += pred[i] == mel; }
        if (p) vs->mel_recall = (double)tp / p;
    }
    free(pos); free(sc); free(probs); free(pred);
    return 0;
}

/* Temperature minimising validation NLL (golden-section on log T). */
static float fit_temperature(const float *logits, const int *labels, int n, int K)
{
    double lo = log(0.05), hi = log(20.0);
    float *scaled = malloc(sizeof(float) * (size_t)n * K);
    if (!scaled) return 1.f;
    double best_t = 1.0;
    for (int it = 0; it < 60; it++) {
        double m1 = lo + (hi - lo) * 0.382, m2 = lo + (hi - lo) * 0.618;
        double nll[2];
        double ms[2] = {m1, m2};
        for (int q = 0; q < 2; q++) {
            float T = (float)exp(ms[q]);
            for (size_t i = 0; i < (size_t)n * K; i++) scaled[i] = logits[i] / T;
            nll[q] = dl_softmax_xent(n, K, scaled, labels, NULL, 0.f, NULL);
        }
        if (nll[0] < nll[1]) hi = m2; else lo = m1;
        best_t = exp((lo + hi) / 2);
    }
    free(scaled);
    return (float)best_t;
}

/* Balanced sampling calibrates the logits to equal class priors; the images
 * users bring follow something closer to the training frequencies. Choose
 * alpha in [0, 1] maximising the mean of accuracy, balanced accuracy and
 * melanoma recall on validation for logits + alpha * log(prior), fold it
 * into the logits bias and shift val_logits alike. Returns alpha, -1 on OOM. */
static double choose_prior_shift(const trainer *t, dl_graph *full, float *val_logits, const int *labels, int n,
                                 cJSON *prov)
{
    const int K = t->K;
    double *lp = malloc(sizeof(double) * K);
    int *pred = malloc(sizeof(int) * (n ? n : 1));
    if (!lp || !pred) { free(lp); free(pred); return -1; }
    int total = 0, mel = -1;
    for (int k = 0; k < K; k++) total += t->class_count[k];
    for (int k = 0; k < K; k++) {
        lp[k] = log((t->class_count[k] + 1.0) / (total + K));
        if (!strcmp(t->classes[k], "mel")) mel = k;
    }
    double mean_lp = 0;
    for (int k = 0; k < K; k++) mean_lp += lp[k] / K;
    for (int k = 0; k < K; k++) lp[k] -= mean_lp;
    double best_alpha = 0, best_j = -1;
    cJSON *sweep = cJSON_CreateArray();
    for (int a = 0; a <= 20; a++) {
        double alpha = a * 0.05;
        int correct = 0, mp = 0, mtp = 0;
        for (int i = 0; i < n; i++) {
            int bk = 0;
            for (int k = 1; k < K; k++)
                if (val_logits[(size_t)i * K + k] + alpha * lp[k] > val_logits[(size_t)i * K + bk] + alpha * lp[bk]) bk = k;
            pred[i] = bk;
            correct += bk == labels[i];
            if (labels[i] == mel) { mp++; mtp += bk == mel; }
        }
        double acc = (double)correct / n, bacc = dl_balanced_accuracy(n, K, labels, pred);
        double mr = mp ? (double)mtp / mp : 0, j = (acc + bacc + (mp ? mr : 0)) / (mp ? 3 : 2);
        cJSON *row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "alpha", alpha);
        cJSON_AddNumberToObject(row, "val_accuracy", acc);
        cJSON_AddNumberToObject(row, "val_balanced_accuracy", bacc);
        cJSON_AddNumberToObject(row, "val_melanoma_recall", mr);
        cJSON_AddItemToArray(sweep, row);
        logf_(t->cfg, "prior shift alpha %.2f: val acc %.4f bal.acc %.4f mel recall %.3f", alpha, acc, bacc, mr);
        if (j > best_j + 1e-9) { best_j = j; best_alpha = alpha; }
    }
    int bi = dl_graph_find_tensor(full, "head/logits.bias");
    if (bi >= 0 && full->tensors[bi].count == (size_t)K) {
        for (int k = 0; k < K; k++) full->tensors[bi].data[k] += (float)(best_alpha * lp[k]);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++) val_logits[(size_t)i * K + k] += (float)(best_alpha * lp[k]);
    } else {
        best_alpha = 0;
    }
    cJSON *ps = cJSON_AddObjectToObject(prov, "prior_shift");
    cJSON_AddNumberToObject(ps, "alpha", best_alpha);
    cJSON_AddStringToObject(ps, "rule", "alpha in 0..1 (step 0.05) maximising mean(val accuracy, val balanced accuracy, val melanoma recall); folded into head/logits.bias");
    cJSON_AddItemToObject(ps, "sweep", sweep);
    logf_(t->cfg, "prior shift: alpha %.2f chosen on validation (folded into the logits bias)", best_alpha);
    free(lp);
    free(pred);
    return best_alpha;
}

/* ------------------------------------------------------------ OOD */

/* The model loader accepts tensor values within +-1e6 and a threshold in
 * [1e-30, 1e30] (formats/model.c). */
static bool ood_storable(const float *mean, const float *prec, int d, float thr)
{
    if (!(thr >= 1e-30f && thr <= 1e30f)) return false;
    for (int j = 0; j < d; j++)
        if (!(fabsf(mean[j]) <= 1e6f)) return false;
    for (size_t k = 0; k < (size_t)d * d; k++)
        if (!(fabsf(prec[k]) <= 1e6f)) return false;
    return true;
}

/* Mahalanobis: mean and shrunk covariance of train features, inverted by
 * Cholesky in double. Threshold = 99th percentile of val scores. */
static int fit_ood(const float *feat, int n, int d, const float *val_feat, int nv, float **mean_out,
                   float **prec_out, float *thr_out, dl_error *err)
{
    double *mu = calloc(d, sizeof(double)), *cov = calloc((size_t)d * d, sizeof(double));
    double *L = calloc((size_t)d * d, sizeof(double)), *inv = calloc((size_t)d * d, sizeof(double));
    float *mean = malloc(sizeof(float) * d), *prec = malloc(sizeof(float) * (size_t)d * d);
    float *scores = malloc(sizeof(float) * (nv ? nv : 1));
    int rc = -1;
    if (!mu || !cov || !L || !inv || !mean || !prec || !scores) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) mu[j] += feat[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= n;
    {
        double *c = malloc(sizeof(double) * d);
        if (!c) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < d; j++) c[j] = feat[(size_t)i * d + j] - mu[j];
            for (int a = 0; a < d; a++) {
                double ca = c[a];
                double *row = cov + (size_t)a * d;
                for (int b = 0; b <= a; b++) row[b] += ca * c[b];
            }
        }
        free(c);
    }
    double tr = 0;
    for (int a = 0; a < d; a++) for (int b = 0; b <= a; b++) {
        cov[(size_t)a * d + b] /= (n > 1 ? n - 1 : 1);
        cov[(size_t)b * d + a] = cov[(size_t)a * d + b];
    }
    for (int a = 0; a < d; a++) tr += cov[(size_t)a * d + a];
    /* shrink towards a scaled identity so the inverse is well conditioned */
    const double shrink = 0.1;
    for (int a = 0; a < d; a++) for (int b = 0; b < d; b++)
        cov[(size_t)a * d + b] = (1 - shrink) * cov[(size_t)a * d + b] + (a == b ? shrink * tr / d : 0);
    for (int j = 0; j < d; j++) {
        double s = cov[(size_t)j * d + j];
        for (int k = 0; k < j; k++) s -= L[(size_t)j * d + k] * L[(size_t)j * d + k];
        if (s <= 0) { dl_fail(err, DL_ERR_DATA, "OOD: covariance not positive definite"); goto out; }
        L[(size_t)j * d + j] = sqrt(s);
        for (int i = j + 1; i < d; i++) {
            double t = cov[(size_t)i * d + j];
            for (int k = 0; k < j; k++) t -= L[(size_t)i * d + k] * L[(size_t)j * d + k];
            L[(size_t)i * d + j] = t / L[(size_t)j * d + j];
        }
    }
    /* inv = (L L^T)^-1: solve column by column */
    {
        double *y = malloc(sizeof(double) * d);
        if (!y) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        for (int col = 0; col < d; col++) {
            for (int i = 0; i < d; i++) {
                double s = i == col ? 1.0 : 0.0;
                for (int k = 0; k < i; k++) s -= L[(size_t)i * d + k] * y[k];
                y[i] = s / L[(size_t)i * d + i];
            }
            for (int i = d - 1; i >= 0; i--) {
                double s = y[i];
                for (int k = i + 1; k < d; k++) s -= L[(size_t)k * d + i] * inv[(size_t)k * d + col];
                inv[(size_t)i * d + col] = s / L[(size_t)i * d + i];
            }
        }
        free(y);
    }
    for (int j = 0; j < d; j++) mean[j] = (float)mu[j];
    for (size_t k = 0; k < (size_t)d * d; k++) prec[k] = (float)inv[k];
    for (int i = 0; i < nv; i++) {
        double s = 0;
        const float *f = val_feat + (size_t)i * d;
        for (int a = 0; a < d; a++) {
            double r = 0;
            for (int b = 0; b < d; b++) r += inv[(size_t)a * d + b] * (f[b] - mu[b]);
            s += r * (f[a] - mu[a]);
        }
        scores[i] = (float)s;
    }
    /* 99th percentile */
    for (int i = 1; i < nv; i++) {
        float v = scores[i];
        int j = i - 1;
        while (j >= 0 && scores[j] > v) { scores[j + 1] = scores[j]; j--; }
        scores[j + 1] = v;
    }
    *thr_out = nv ? scores[(int)floor(0.99 * (nv - 1))] : 0.f;
    *mean_out = mean;
    *prec_out = prec;
    mean = prec = NULL;
    rc = 0;
out:
    free(mu); free(cov); free(L); free(inv); free(mean); free(prec); free(scores);
    return rc;
}

/* ------------------------------------------------------------ stages */

typedef struct {
    int stage;               /* 1 or 2 */
    int cut;                 /* node in full */
    const float *train_cache; /* n_train * views * per */
    const float *val_cache;   /* n_val * per */
    size_t per;
    int epochs;
    float lr, wd, smoothing;
    int warmup_epochs;
    bool online;             /* cut = input: augment each draw on the fly */
    /* resume */
    bool resume;
    const char *ckpt;
    /* results */
    val_stats best;
    int best_epoch, epochs_run;
    double seconds_per_epoch;
} stage_run;

/* Exchange the trainable tensors' data of a and b (same structure). */
static void swap_weights(dl_graph *a, dl_graph *b, const dl_adamw *opt)
{
    for (int i = 0; i < opt->n; i++) {
        float *tmp = a->tensors[opt->tensor[i]].data;
        a->tensors[opt->tensor[i]].data = b->tensors[opt->tensor[i]].data;
        b->tensors[opt->tensor[i]].data = tmp;
    }
}

static int run_stage(trainer *t, dl_graph *full, stage_run *r, dl_error *err)
{
    const dl_train_config *c = t->cfg;
    const int K = t->K, V = c->views, B = c->batch, n = t->n_train;
    dl_graph sub, best, ema;
    dl_exec e;
    dl_adamw opt;
    int rc = -1;
    float *grad = NULL, *grad2 = NULL, *cw = NULL, *mixbuf = NULL;
    int *labels2 = NULL;
    double *class_cdf = NULL;
    int ***by_cs = NULL, **cs_count = NULL;
    const bool use_ema = c->ema > 0 && c->ema < 1 && r->stage == 2;
    const bool use_mix = c->mixup > 0 && r->online;
    uint8_t *aug = NULL;
    int *labels = NULL;
    int **by_class = NULL;
    FILE *logf = NULL;
    memset(&e, 0, sizeof e);
    memset(&opt, 0, sizeof opt);
    dl_graph_init(&best);
    dl_graph_init(&ema);
    if (build_sub(&sub, full, r->cut, err) || build_sub(&best, full, r->cut, err) ||
        (use_ema && build_sub(&ema, full, r->cut, err)))
        goto out;
    if (dl_exec_init(&e, &sub, B, err) || dl_exec_enable_backward(&e, true, err) || dl_adamw_init(&opt, &sub, err)) goto out;
    grad = malloc(sizeof(float) * B * K);
    if (r->online && !(aug = malloc((size_t)t->pre->width * t->pre->height * 3))) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    labels = malloc(sizeof(int) * B);
    cw = malloc(sizeof(float) * K);
    by_class = calloc(K, sizeof(int *));
    if (!grad || !labels || !cw || !by_class) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    for (int k = 0; k < K; k++) {
        by_class[k] = malloc(sizeof(int) * (t->class_count[k] ? t->class_count[k] : 1));
        if (!by_class[k]) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    }
    {
        int *fill = calloc(K, sizeof(int));
        if (!fill) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        for (int i = 0; i < n; i++) by_class[t->train_labels[i]][fill[t->train_labels[i]]++] = i;
        free(fill);
    }
    for (int k = 0; k < K; k++) cw[k] = t->class_count[k] ? (float)n / (K * (float)t->class_count[k]) : 0.f;
    /* sampling: class k with weight count_k^power (0 = balanced); with
     * source balance, then a source that has class k, uniformly, so that
     * neither one source nor the largest class decides a class */
    const int S = t->n_sources > 0 ? t->n_sources : 1;
    class_cdf = malloc(sizeof(double) * K);
    by_cs = calloc(K, sizeof(int **));
    cs_count = calloc(K, sizeof(int *));
    if (!class_cdf || !by_cs || !cs_count) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    {
        double acc = 0;
        for (int k = 0; k < K; k++) {
            acc += t->class_count[k] ? pow((double)t->class_count[k], c->class_power) : 0.0;
            class_cdf[k] = acc;
        }
        for (int k = 0; k < K; k++) class_cdf[k] /= acc;
        for (int k = 0; k < K; k++) {
            by_cs[k] = calloc(S, sizeof(int *));
            cs_count[k] = calloc(S, sizeof(int));
            if (!by_cs[k] || !cs_count[k]) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        }
        for (int i = 0; i < n; i++) cs_count[t->train_labels[i]][t->train_source ? t->train_source[i] : 0]++;
        for (int k = 0; k < K; k++)
            for (int q = 0; q < S; q++) {
                by_cs[k][q] = malloc(sizeof(int) * (cs_count[k][q] ? cs_count[k][q] : 1));
                if (!by_cs[k][q]) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
                cs_count[k][q] = 0;
            }
        for (int i = 0; i < n; i++) {
            int k = t->train_labels[i], q = t->train_source ? t->train_source[i] : 0;
            by_cs[k][q][cs_count[k][q]++] = i;
        }
    }
    if (use_mix) {
        grad2 = malloc(sizeof(float) * B * K);
        labels2 = malloc(sizeof(int) * B);
        mixbuf = malloc(sizeof(float) * r->per * B);
        if (!grad2 || !labels2 || !mixbuf) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    }

    int start_epoch = 0, bad_epochs = 0;
    double best_score = -1;
    r->best_epoch = 0;
    if (r->resume && r->ckpt) {
        int st = 0, ep = 0;
        dl_error e2 = {0};
        if (ckpt_load(r->ckpt, &sub, &opt, &best, use_ema ? &ema : NULL, &st, &ep, &best_score, &r->best_epoch,
                      &bad_epochs, &e2) == 0) {
            if (st == r->stage) {
                start_epoch = ep;
                logf_(c, "stage %d: resuming after epoch %d (best val balanced accuracy %.4f at epoch %d)", r->stage, ep,
                      best_score, r->best_epoch);
            } else {
                /* checkpoint from the other stage: start this one fresh */
                dl_graph_free(&sub); dl_graph_free(&best); dl_graph_free(&ema); dl_adamw_free(&opt); dl_exec_free(&e);
                dl_graph_init(&ema);
                if (build_sub(&sub, full, r->cut, err) || build_sub(&best, full, r->cut, err) ||
                    (use_ema && build_sub(&ema, full, r->cut, err)) ||
                    dl_exec_init(&e, &sub, B, err) || dl_exec_enable_backward(&e, true, err) || dl_adamw_init(&opt, &sub, err))
                    goto out;
                best_score = -1; r->best_epoch = 0; bad_epochs = 0;
            }
        } else if (ckpt_stage_of(r->ckpt) > 0 && ckpt_stage_of(r->ckpt) != r->stage) {
            /* a complete checkpoint of the other stage (stage 1 done, or a
             * head-only run): this stage starts fresh, as when it loads */
            logf_(c, "checkpoint is from stage %d: starting stage %d fresh", ckpt_stage_of(r->ckpt), r->stage);
        } else if (access(r->ckpt, F_OK) == 0 && !c->restart) {
            /* never overwrite what we cannot use: the user decides */
            dl_fail(err, DL_ERR_DATA,
                    "--resume: the checkpoint %s cannot be used (%s); it is left untouched. Use --restart to "
                    "start over and replace it, or -o/--checkpoint to write elsewhere",
                    r->ckpt, e2.message);
            goto out;
        } else {
            logf_(c, "no checkpoint to resume (%s): starting stage %d from scratch", e2.message, r->stage);
        }
    }
    if (c->log_csv) {
        logf = fopen(c->log_csv, start_epoch || r->stage == 2 ? "a" : "w");
        if (logf && ftell(logf) == 0)
            fprintf(logf, "stage,epoch,lr,train_loss,train_acc,val_loss,val_acc,val_balanced_acc,val_macro_auc,val_mel_recall,seconds,images_per_s\n");
    }
    const int draws = r->stage == 2 && c->epoch_size > 0 ? c->epoch_size : n;
    const int steps = (draws + B - 1) / B;
    const long total_steps = (long)steps * r->epochs, warm = (long)steps * r->warmup_epochs;
    e.training = true;
    double t_sum = 0;
    int mel = -1;
    for (int k = 0; k < K; k++) if (!strcmp(t->classes[k], "mel")) mel = k;
    int label_map[1] = {mel};
    for (int ep = start_epoch; ep < r->epochs; ep++) {
        if (bad_epochs >= c->patience && c->patience > 0) break;
        uint64_t rng = dl_seed_mix(c->seed, (uint64_t)(r->stage * 100000 + ep));
        e.rng = dl_seed_mix(rng, 7) | 1;
        double t0 = now_s(), loss_sum = 0;
        int correct = 0, seen = 0;
        for (int s = 0; s < steps; s++) {
            for (int b = 0; b < B; b++) {
                int img;
                if (c->class_weighted) {
                    img = (int)(dl_rand_uniform(&rng) * n);
                } else if (c->class_power != 0 || c->source_balance) {
                    double u = dl_rand_uniform(&rng);
                    int k = 0;
                    while (k < K - 1 && (u >= class_cdf[k] || !t->class_count[k])) k++;
                    int q;
                    if (c->source_balance) {
                        int have = 0;
                        for (int j = 0; j < S; j++) have += cs_count[k][j] > 0;
                        int pick = (int)(dl_rand_uniform(&rng) * have);
                        for (q = 0; q < S; q++)
                            if (cs_count[k][q] > 0 && pick-- == 0) break;
                        if (q >= S) q = 0;
                        while (!cs_count[k][q]) q = (q + 1) % S;
                        img = by_cs[k][q][(int)(dl_rand_uniform(&rng) * cs_count[k][q])];
                    } else {
                        img = by_class[k][(int)(dl_rand_uniform(&rng) * t->class_count[k])];
                    }
                } else {
                    int k;
                    do k = (int)(dl_rand_uniform(&rng) * K); while (!t->class_count[k]);
                    img = by_class[k][(int)(dl_rand_uniform(&rng) * t->class_count[k])];
                }
                int v = (int)(dl_rand_uniform(&rng) * V);
                if (img >= n) img = n - 1;
                if (v >= V) v = V - 1;
                if (r->online) {
                    const int W = t->pre->width, H = t->pre->height;
                    train_view(t, img, aug, dl_seed_mix(rng, (uint64_t)s * B + b));
                    to_input(t->pre, aug, W * H, e.act[0] + (size_t)b * r->per);
                } else {
                    memcpy(e.act[0] + (size_t)b * r->per, r->train_cache + ((size_t)img * V + v) * r->per, sizeof(float) * r->per);
                }
                labels[b] = t->train_labels[img];
            }
            double lam = 1.0;
            if (use_mix && dl_rand_uniform(&rng) < c->mixup) {
                /* pair each image with its mirror in the batch */
                const int Wd = t->pre->width, Hd = t->pre->height;
                memcpy(mixbuf, e.act[0], sizeof(float) * r->per * B);
                for (int b = 0; b < B; b++) labels2[b] = labels[B - 1 - b];
                if (dl_rand_uniform(&rng) < 0.5) {
                    lam = dl_rand_beta(&rng, 0.4, 0.4);
                    for (int b = 0; b < B; b++) {
                        float *x = e.act[0] + (size_t)b * r->per;
                        const float *y = mixbuf + (size_t)(B - 1 - b) * r->per;
                        for (size_t q = 0; q < r->per; q++) x[q] = (float)lam * x[q] + (float)(1 - lam) * y[q];
                    }
                } else {
                    /* cutmix: a box of area 1 - lam from the partner */
                    double cut = sqrt(1.0 - dl_rand_uniform(&rng));
                    int bw = (int)(Wd * cut), bh = (int)(Hd * cut);
                    int x0 = (int)(dl_rand_uniform(&rng) * (Wd - bw + 1)), y0 = (int)(dl_rand_uniform(&rng) * (Hd - bh + 1));
                    lam = 1.0 - (double)bw * bh / ((double)Wd * Hd);
                    for (int b = 0; b < B; b++) {
                        float *x = e.act[0] + (size_t)b * r->per;
                        const float *y = mixbuf + (size_t)(B - 1 - b) * r->per;
                        for (int yy = y0; yy < y0 + bh; yy++)
                            memcpy(x + ((size_t)yy * Wd + x0) * 3, y + ((size_t)yy * Wd + x0) * 3, sizeof(float) * bw * 3);
                    }
                }
            }
            if (dl_exec_forward(&e, e.act[0], sub.output, err)) goto out;
            const float *lg = e.act[sub.output];
            float loss = dl_softmax_xent(B, K, lg, labels, c->class_weighted ? cw : NULL, r->smoothing, grad);
            if (lam < 1.0) {
                float loss2 = dl_softmax_xent(B, K, lg, labels2, c->class_weighted ? cw : NULL, r->smoothing, grad2);
                loss = (float)(lam * loss + (1 - lam) * loss2);
                for (int q = 0; q < B * K; q++) grad[q] = (float)(lam * grad[q] + (1 - lam) * grad2[q]);
            }
            for (int b = 0; b < B; b++) {
                int best_k = 0;
                for (int k = 1; k < K; k++) if (lg[b * K + k] > lg[b * K + best_k]) best_k = k;
                correct += best_k == labels[b];
            }
            seen += B;
            loss_sum += loss;
            if (!isfinite(loss)) { dl_fail(err, DL_ERR_DATA, "training diverged (loss is %f); lower the learning rate", loss); goto out; }
            dl_exec_zero_wgrad(&e);
            if (dl_exec_backward(&e, sub.output, grad, 1, err)) goto out;
            long step = (long)ep * steps + s;
            float lr_t;
            if (step < warm) lr_t = r->lr * (float)(step + 1) / (float)warm;
            else lr_t = r->lr * (0.02f + 0.98f * 0.5f * (1.f + cosf((float)M_PI * (float)(step - warm) / (float)(total_steps - warm > 0 ? total_steps - warm : 1))));
            dl_adamw_step(&opt, &sub, e.wgrad, lr_t, r->wd);
            if (use_ema) {
                /* bias-corrected start: the average warms up over the first steps */
                float d = (float)c->ema, d0 = (float)(1.0 + opt.step) / (float)(10.0 + opt.step);
                if (d0 < d) d = d0;
                for (int i = 0; i < opt.n; i++) {
                    const dl_tensor *w = &sub.tensors[opt.tensor[i]];
                    float *a = ema.tensors[opt.tensor[i]].data;
                    for (size_t q = 0; q < w->count; q++) a[q] = d * a[q] + (1 - d) * w->data[q];
                }
            }
            if (c->progress) {
                double el = now_s() - t0, ips = seen / (el > 1e-9 ? el : 1e-9);
                double eta = (steps - s - 1) * B / (ips > 0 ? ips : 1);
                char st[200];
                snprintf(st, sizeof st, "stage %d epoch %d/%d  loss %.4f  %.0f img/s  ETA %d:%02d", r->stage, ep + 1,
                         r->epochs, loss_sum / (s + 1), ips, (int)eta / 60, (int)eta % 60);
                if (c->progress(c->progress_user, (double)(s + 1) / steps, st)) { dl_fail(err, DL_ERR_CANCELLED, "cancelled"); goto out; }
            }
        }
        double train_s = now_s() - t0;
        val_stats vs;
        /* with EMA the averaged weights are what is evaluated (and kept) */
        if (use_ema) swap_weights(&sub, &ema, &opt);
        int erc = eval_sub(&e, r->val_cache, r->per, t->n_val, K, t->val_labels, NULL, &vs, label_map, err);
        if (use_ema) swap_weights(&sub, &ema, &opt);
        if (erc) goto out;
        double secs = now_s() - t0;
        t_sum += secs;
        r->epochs_run = ep + 1;
        float lr_now = (long)(ep + 1) * steps <= warm ? r->lr : r->lr * (0.02f + 0.98f * 0.5f * (1.f + cosf((float)M_PI * (float)((long)(ep + 1) * steps - warm) / (float)(total_steps - warm > 0 ? total_steps - warm : 1))));
        bool improved = vs.bacc > best_score;
        if (improved) {
            best_score = vs.bacc;
            r->best_epoch = ep + 1;
            r->best = vs;
            bad_epochs = 0;
            copy_weights(&best, use_ema ? &ema : &sub);
        } else {
            bad_epochs++;
        }
        logf_(c, "stage %d epoch %2d/%d  loss %.4f  train acc %.3f  val loss %.4f acc %.4f bal.acc %.4f AUC %.4f mel recall %.3f  %.1f s (%.0f img/s)%s",
              r->stage, ep + 1, r->epochs, loss_sum / steps, (double)correct / seen, vs.loss, vs.acc, vs.bacc, vs.auc,
              vs.mel_recall, secs, seen / train_s, improved ? "  *best*" : "");
        if (logf) {
            fprintf(logf, "%d,%d,%.6g,%.5f,%.4f,%.5f,%.4f,%.4f,%.4f,%.4f,%.2f,%.1f\n", r->stage, ep + 1, lr_now,
                    loss_sum / steps, (double)correct / seen, vs.loss, vs.acc, vs.bacc, vs.auc, vs.mel_recall, secs, seen / train_s);
            fflush(logf);
        }
        if (r->ckpt && ckpt_save(r->ckpt, &sub, &opt, &best, use_ema ? &ema : NULL, r->stage, ep + 1, best_score,
                                 r->best_epoch, bad_epochs, err))
            goto out;
    }
    if (best_score < 0 && r->epochs > 0) {
        /* resumed after the last epoch: the best weights came from the checkpoint */
        logf_(c, "stage %d already complete in the checkpoint", r->stage);
    }
    r->seconds_per_epoch = r->epochs_run > start_epoch ? t_sum / (r->epochs_run - start_epoch) : 0;
    if (c->select_last && r->epochs > 0) {
        /* the end of the schedule (the EMA when on) rather than the epoch with
         * the best validation balanced accuracy: with small validation classes
         * that choice follows noise; its stats are measured again here (also
         * after resuming a finished checkpoint, which keeps no per-epoch stats) */
        val_stats vs;
        if (use_ema) swap_weights(&sub, &ema, &opt);
        int erc = eval_sub(&e, r->val_cache, r->per, t->n_val, K, t->val_labels, NULL, &vs, label_map, err);
        if (erc) {
            if (use_ema) swap_weights(&sub, &ema, &opt);
            goto out;
        }
        copy_weights(full, &sub);
        if (use_ema) swap_weights(&sub, &ema, &opt);
        r->best = vs;
        r->best_epoch = r->epochs;
        logf_(c, "stage %d: keeping the last epoch's %sweights (val balanced accuracy %.4f) as --select last asks",
              r->stage, use_ema ? "averaged " : "", vs.bacc);
    } else {
        copy_weights(full, &best);
    }
    rc = 0;
out:
    if (logf) fclose(logf);
    if (by_class) for (int k = 0; k < K; k++) free(by_class[k]);
    if (by_cs)
        for (int k = 0; k < K; k++) {
            if (by_cs[k]) for (int q = 0; q < (t->n_sources > 0 ? t->n_sources : 1); q++) free(by_cs[k][q]);
            free(by_cs[k]);
        }
    if (cs_count) for (int k = 0; k < K; k++) free(cs_count[k]);
    free(by_cs); free(cs_count); free(class_cdf); free(grad2); free(labels2); free(mixbuf);
    dl_graph_free(&ema);
    free(by_class); free(grad); free(labels); free(cw); free(aug);
    dl_adamw_free(&opt);
    dl_exec_free(&e);
    dl_graph_free(&sub);
    dl_graph_free(&best);
    return rc;
}

/* Val logits (n_val x K) and train features of the full model from the caches. */
static int forward_from_cache(const dl_graph *full, int cut, const float *cache, size_t per, int n, size_t stride_samples,
                              int node_in_full, float *out, int out_dim, dl_error *err)
{
    dl_graph sub;
    if (build_sub(&sub, full, cut, err)) return -1;
    dl_exec e;
    const int B = 32;
    if (dl_exec_init(&e, &sub, B, err)) { dl_graph_free(&sub); return -1; }
    int node = node_in_full - cut;
    for (int s0 = 0; s0 < n; s0 += B) {
        int nb = n - s0 < B ? n - s0 : B;
        for (int b = 0; b < B; b++) {
            if (b < nb) memcpy(e.act[0] + (size_t)b * per, cache + (size_t)(s0 + b) * stride_samples * per, sizeof(float) * per);
            else memset(e.act[0] + (size_t)b * per, 0, sizeof(float) * per);
        }
        if (node > 0 && dl_exec_forward(&e, e.act[0], node, err)) { dl_exec_free(&e); dl_graph_free(&sub); return -1; }
        memcpy(out + (size_t)s0 * out_dim, e.act[node], sizeof(float) * nb * out_dim);
    }
    dl_exec_free(&e);
    dl_graph_free(&sub);
    return 0;
}

/* Pooled features of clean images through the (fine-tuned) full graph. */
static int features_from_images(const dl_graph *full, const dl_preprocess *pre, uint8_t **imgs, int n, float *out,
                                dl_error *err)
{
    dl_exec e;
    const int B = 16, F = full->nodes[full->features].c, px = pre->width * pre->height;
    if (dl_exec_init(&e, full, B, err)) return -1;
    for (int s0 = 0; s0 < n; s0 += B) {
        int nb = n - s0 < B ? n - s0 : B;
        for (int b = 0; b < B; b++) {
            float *dst = e.act[0] + (size_t)b * px * 3;
            if (b < nb) to_input(pre, imgs[s0 + b], px, dst);
            else memset(dst, 0, sizeof(float) * px * 3);
        }
        if (dl_exec_forward(&e, e.act[0], full->features, err)) { dl_exec_free(&e); return -1; }
        memcpy(out + (size_t)s0 * F, e.act[full->features], sizeof(float) * nb * F);
    }
    dl_exec_free(&e);
    return 0;
}

static cJSON *stats_json(const val_stats *v, int best_epoch, int epochs_run, double spe)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "val_loss", v->loss);
    cJSON_AddNumberToObject(o, "val_accuracy", v->acc);
    cJSON_AddNumberToObject(o, "val_balanced_accuracy", v->bacc);
    cJSON_AddNumberToObject(o, "val_macro_auc", v->auc);
    if (isfinite(v->mel_recall)) cJSON_AddNumberToObject(o, "val_melanoma_recall", v->mel_recall);
    cJSON_AddNumberToObject(o, "best_epoch", best_epoch);
    cJSON_AddNumberToObject(o, "epochs_run", epochs_run);
    (void)spe; /* timings go to the log, not the model: same seed, same bytes */
    return o;
}

static int save_model(const trainer *t, const dl_model *bb, dl_graph *full, const char *path, float temperature,
                      const float *ood_mean, const float *ood_prec, float ood_thr, cJSON *prov, dl_error *err)
{
    dl_model m;
    memset(&m, 0, sizeof m);
    m.graph = *full;
    m.pre = t->prep;
    snprintf(m.name, sizeof m.name, "%s", t->cfg->name ? t->cfg->name : "DermLens model");
    m.num_classes = t->K;
    m.class_names = t->classes;
    const char *longs[256];
    for (int k = 0; k < t->K && k < 256; k++) longs[k] = long_name(t->classes[k]);
    m.class_long_names = (char **)longs;
    m.temperature = temperature;
    char *pj = cJSON_PrintUnformatted(prov);
    m.provenance_json = pj;
    int saved_tensors = full->n_tensors;
    int rc = 0;
    if (ood_mean) {
        int d = full->nodes[full->features].c;
        int64_t d1[1] = {d}, d2[2] = {d, d};
        if (dl_graph_add_tensor(full, "ood.mean", 1, d1, ood_mean, err) < 0 ||
            dl_graph_add_tensor(full, "ood.precision", 2, d2, ood_prec, err) < 0)
            rc = -1;
        m.graph = *full;
        m.ood_dim = d;
        m.ood_threshold = ood_thr;
    }
    if (!rc) rc = dl_model_save(&m, path, err);
    /* drop the OOD tensors again so the graph can keep training */
    for (int i = saved_tensors; i < full->n_tensors; i++) free(full->tensors[i].data);
    full->n_tensors = saved_tensors;
    free(pj);
    return rc;
}

int dl_train(const dl_train_config *c, dl_error *err)
{
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = c;
    dl_dataset train = {0}, val = {0};
    uint8_t **timg = NULL, **vimg = NULL;
    char **terr = NULL, **verr = NULL;
    dl_model *bb = NULL;
    dl_graph full;
    dl_graph_init(&full);
    float *val_logits = NULL, *train_feat = NULL, *val_feat = NULL, *ood_mean = NULL, *ood_prec = NULL;
    char *ckpt = NULL;
    cJSON *prov = NULL;
    int rc = -1;
    if (!c->output) return dl_fail(err, DL_ERR_ARG, "no output path");
    {
        /* refuse now, not after an hour: the output and checkpoint folders
         * must be writable, and an earlier run's checkpoint is not
         * overwritten unless asked */
        char *ck = ckpt_path(c);
        const char *paths[3] = {c->output, ck, c->log_csv};
        for (int q = 0; q < 3; q++) {
            if (!paths[q]) continue;
            char *dir = strdup(paths[q]);
            if (!dir) { free(ck); return dl_fail(err, DL_ERR_NOMEM, "out of memory"); }
            char *slash = strrchr(dir, '/');
            if (slash == dir) slash[1] = 0;
            else if (slash) *slash = 0;
            else strcpy(dir, ".");
            int ok = access(dir, W_OK | X_OK) == 0;
            if (!ok) {
                dl_fail(err, DL_ERR_IO, "cannot write into %s (for %s): %s", dir, paths[q], strerror(errno));
                free(dir);
                free(ck);
                return -1;
            }
            free(dir);
        }
        if (ck && !c->resume && !c->restart && access(ck, F_OK) == 0) {
            dl_fail(err, DL_ERR_ARG,
                    "a checkpoint of an earlier run exists at %s: --resume to continue it, or --restart to replace it",
                    ck);
            free(ck);
            return -1;
        }
        free(ck);
    }
    if (c->views < 1 || c->views > 64 || c->batch < 1 || c->batch > 1024 || c->epochs < 0 || c->epochs_head < 0 ||
        c->hidden < 1 || c->stages < 1 || c->stages > 2 || !(c->dropout >= 0 && c->dropout < 1))
        return dl_fail(err, DL_ERR_ARG, "training parameters out of range");
    if (c->threads > 0) dl_set_num_threads(c->threads);
    bb = dl_model_load(c->backbone, err);
    if (!bb) return -1;
    if (load_sets(&t, &train, &val, err)) goto out;
    t.K = train.n_classes;
    t.classes = train.class_names;
    logf_(c, "data: %d training images, %d validation images, %d classes", train.n, val.n, t.K);
    const int W = bb->pre.width, H = bb->pre.height;
    t.prep = bb->pre;
    if (c->resize) {
        if (strcmp(c->resize, "squash") && strcmp(c->resize, "center_crop") && strcmp(c->resize, "pad")) {
            dl_fail(err, DL_ERR_ARG, "--resize: \"%s\" is not squash, center_crop or pad", c->resize);
            goto out;
        }
        snprintf(t.prep.resize, sizeof t.prep.resize, "%s", c->resize);
    }
    t.framing = !strcmp(t.prep.resize, "center_crop") ? DL_FRAME_CENTER_CROP
              : !strcmp(t.prep.resize, "pad")       ? DL_FRAME_PAD
                                                    : DL_FRAME_SQUASH;
    dl_view_params_defaults(&t.vp);
    if (c->scale_min > 0) t.vp.scale_min = c->scale_min;
    if (c->scale_max > 0) t.vp.scale_max = c->scale_max;
    if (c->aspect_jitter > 0) t.vp.aspect = c->aspect_jitter;
    if (c->colour_jitter >= 0 && c->scale_aug) t.vp.colour = c->colour_jitter > 0 ? c->colour_jitter : 1.0;
    if (!(t.vp.scale_min > 0 && t.vp.scale_min <= t.vp.scale_max && t.vp.scale_max <= 4)) {
        dl_fail(err, DL_ERR_ARG, "scale range %.3g..%.3g out of range (0 < min <= max <= 4)", t.vp.scale_min, t.vp.scale_max);
        goto out;
    }
    {
        /* decode keeping the aspect (the views are cut from these), then
         * render what the recorded preprocessing shows at the input size */
        int nthreads = c->threads > 0 ? c->threads : dl_get_num_threads();
        int max_side = c->max_side > 0 ? c->max_side : 320;
        uint8_t **tnat = NULL, **vnat = NULL;
        int *vdims = NULL;
        if (dl_dataset_load_images_fit(&train, max_side, nthreads, &tnat, &t.native_dims, &terr, c->progress,
                                       c->progress_user, err) ||
            dl_dataset_load_images_fit(&val, max_side, nthreads, &vnat, &vdims, &verr, c->progress, c->progress_user,
                                       err)) {
            if (tnat) dl_dataset_free_images(&train, tnat, terr);
            terr = NULL;
            free(vdims);
            goto out;
        }
        compact(c, &train, tnat, terr, t.train_source, t.native_dims, "training");
        compact(c, &val, vnat, verr, NULL, vdims, "validation");
        timg = render_all(tnat, t.native_dims, train.n, t.framing, W, H);
        vimg = render_all(vnat, vdims, val.n, t.framing, W, H);
        dl_dataset_free_images(&val, vnat, NULL);
        free(vdims);
        if (c->scale_aug) {
            t.native = tnat;
        } else {
            dl_dataset_free_images(&train, tnat, NULL);
        }
        if (!timg || !vimg) { dl_fail(err, DL_ERR_NOMEM, "out of memory rendering the input views"); goto out; }
        t.base = timg;
    }
    if (train.n == 0 || val.n == 0) { dl_fail(err, DL_ERR_DATA, "no readable images left"); goto out; }
    t.n_train = train.n;
    t.n_val = val.n;
    t.train_labels = train.labels;
    t.val_labels = val.labels;
    t.class_count = calloc(t.K, sizeof(int));
    if (!t.class_count) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    for (int i = 0; i < train.n; i++) t.class_count[train.labels[i]]++;
    int present = 0;
    for (int k = 0; k < t.K; k++) present += t.class_count[k] > 0;
    if (present < 2) { dl_fail(err, DL_ERR_DATA, "training data has images of only %d class", present); goto out; }
    for (int k = 0; k < t.K; k++) logf_(c, "  class %-6s %5d training images", t.classes[k], t.class_count[k]);

    if (build_full(&full, &bb->graph, t.K, c->hidden, c->dropout, c->seed, err)) goto out;
    if (c->init_model) {
        /* warm start: every same-named, same-sized tensor; the head only
         * when the class lists agree (else its logits would mean other things) */
        dl_model *init = dl_model_load(c->init_model, err);
        if (!init) { dl_fail_prefix(err, "--init"); goto out; }
        bool same_classes = init->num_classes == t.K;
        for (int k = 0; k < t.K && same_classes; k++) same_classes = !strcmp(init->class_names[k], t.classes[k]);
        int copied = 0;
        for (int i = 0; i < init->graph.n_tensors; i++) {
            const dl_tensor *src = &init->graph.tensors[i];
            if (!same_classes && !strncmp(src->name, "head/", 5)) continue;
            int j = dl_graph_find_tensor(&full, src->name);
            if (j >= 0 && full.tensors[j].count == src->count) {
                memcpy(full.tensors[j].data, src->data, sizeof(float) * src->count);
                copied++;
            }
        }
        logf_(c, "warm start from %s: %d tensors copied%s", c->init_model, copied,
              same_classes ? " (head included)" : " (backbone only: other classes)");
        dl_model_free(init);
    }
    t.feat_dim = full.nodes[full.features].c;
    t.cut = full.features;
    if (c->stages == 2) {
        if (c->cut) {
            t.cut = dl_graph_find_node(&full, c->cut);
            if (t.cut < 0 || t.cut > full.features) { dl_fail(err, DL_ERR_ARG, "--cut: no backbone node named \"%s\"", c->cut); goto out; }
            if (!is_boundary(&full, t.cut, full.n_nodes - 1)) { dl_fail(err, DL_ERR_ARG, "--cut %s: a later node skips over it (pick a block output)", c->cut); goto out; }
        } else {
            t.cut = auto_cut(&full, full.features);
        }
        logf_(c, "fine-tuning every layer after %s (%dx%dx%d)", full.nodes[t.cut].name, full.nodes[t.cut].h,
              full.nodes[t.cut].w, full.nodes[t.cut].c);
    }
    t.cut_size = dl_node_out_count(&full.nodes[t.cut]);
    /* a warm start straight into full fine-tuning needs no stage-1 cache */
    bool skip_train_cache = c->stages == 2 && c->epochs_head == 0 && t.cut == 0;
    if (!skip_train_cache &&
        build_caches(&t, bb, &full, timg, train.n, c->views, &t.cut_train, &t.feat_train, "training", err))
        goto out;
    if (build_caches(&t, bb, &full, vimg, val.n, 1, &t.cut_val, &t.feat_val, "validation", err)) goto out;
    if (t.cut == 0) {
        t.train_imgs = timg; /* kept for on-the-fly augmentation */
        t.pre = &t.prep;
    } else {
        dl_dataset_free_images(&train, timg, terr);
        timg = NULL;
        terr = NULL;
    }
    dl_dataset_free_images(&val, vimg, verr);
    vimg = NULL;
    verr = NULL;

    ckpt = ckpt_path(c);
    prov = cJSON_CreateObject();
    cJSON *data = cJSON_AddObjectToObject(prov, "data");
    cJSON *ts = cJSON_AddArrayToObject(data, "train");
    for (int s = 0; s < c->n_train_sets; s++) cJSON_AddItemToArray(ts, cJSON_CreateString(c->train_sets[s]));
    cJSON_AddStringToObject(data, "val", c->n_val_sets > 0 ? c->val_sets[0] : c->val_set);
    if (c->train_split) cJSON_AddStringToObject(data, "train_split", c->train_split);
    if (c->val_split) cJSON_AddStringToObject(data, "val_split", c->val_split);
    cJSON_AddNumberToObject(data, "n_train", train.n);
    cJSON_AddNumberToObject(data, "n_val", val.n);
    cJSON *cc = cJSON_AddObjectToObject(data, "train_class_counts");
    for (int k = 0; k < t.K; k++) cJSON_AddNumberToObject(cc, t.classes[k], t.class_count[k]);
    cJSON_AddStringToObject(data, "split_note", "lesion-disjoint train/val/test split of HAM10000 (lesion_splits.csv); test never used for training or tuning");
    cJSON *bj = cJSON_AddObjectToObject(prov, "backbone");
    cJSON_AddStringToObject(bj, "name", bb->name);
    cJSON_AddStringToObject(bj, "sha256", bb->sha256);
    cJSON_AddStringToObject(bj, "license", "Apache-2.0 (google-coral/test_data MobileNetV2 1.0/224)");
    cJSON *hp = cJSON_AddObjectToObject(prov, "training");
    cJSON_AddNumberToObject(hp, "seed", c->seed);
    cJSON_AddNumberToObject(hp, "threads", dl_get_num_threads());
    cJSON_AddNumberToObject(hp, "stages", c->stages);
    cJSON_AddNumberToObject(hp, "epochs_head", c->epochs_head);
    cJSON_AddNumberToObject(hp, "epochs", c->epochs);
    cJSON_AddNumberToObject(hp, "views", c->views);
    cJSON_AddNumberToObject(hp, "batch", c->batch);
    cJSON_AddNumberToObject(hp, "lr_head", c->lr_head);
    cJSON_AddNumberToObject(hp, "lr", c->lr);
    cJSON_AddNumberToObject(hp, "weight_decay", c->weight_decay);
    cJSON_AddNumberToObject(hp, "label_smoothing", c->label_smoothing);
    cJSON_AddNumberToObject(hp, "dropout", c->dropout);
    cJSON_AddNumberToObject(hp, "hidden", c->hidden);
    cJSON_AddStringToObject(hp, "imbalance", c->class_weighted ? "class-weighted loss" : "class-balanced sampling");
    cJSON_AddStringToObject(hp, "augmentation", "rotation +-40, shift +-20%, shear 0.2, zoom +-20%, h/v flips, 90-degree turns, colour jitter, nearest fill");
    cJSON_AddStringToObject(hp, "cut", full.nodes[t.cut].name);
    cJSON_AddStringToObject(hp, "resize", t.prep.resize);
    if (c->scale_aug) {
        char buf[256];
        snprintf(buf, sizeof buf, "random-resized crop of the preprocessing view: area %.2f-%.2f (log-uniform, reflect fill), aspect 1/%.2f-%.2f, rotation +-%.0f, h/v flips, colour jitter x%.2f (brightness, contrast, saturation, gamma, channel gains, hue)",
                 t.vp.scale_min, t.vp.scale_max, t.vp.aspect, t.vp.aspect, t.vp.rotate_deg, t.vp.colour);
        cJSON_ReplaceItemInObject(hp, "augmentation", cJSON_CreateString(buf));
    }
    cJSON_AddNumberToObject(hp, "class_power", c->class_power);
    cJSON_AddBoolToObject(hp, "source_balance", c->source_balance != 0);
    if (c->epoch_size > 0) cJSON_AddNumberToObject(hp, "epoch_size", c->epoch_size);
    if (c->ema > 0) cJSON_AddNumberToObject(hp, "ema", c->ema);
    if (c->mixup > 0) cJSON_AddNumberToObject(hp, "mixup_cutmix_probability", c->mixup);
    if (c->select_last) cJSON_AddStringToObject(hp, "kept_weights", "last epoch");
    if (c->init_model) cJSON_AddStringToObject(hp, "init_model", c->init_model);
    if (c->exclude) cJSON_AddStringToObject(hp, "exclude", c->exclude);
    if (c->n_val_sets > 1) {
        cJSON *vs = cJSON_AddArrayToObject(data, "val_sets");
        for (int q = 0; q < c->n_val_sets; q++) cJSON_AddItemToArray(vs, cJSON_CreateString(c->val_sets[q]));
    }
    cJSON_AddStringToObject(prov, "version", DL_VERSION_STRING);
    if (c->command_line) cJSON_AddStringToObject(prov, "command_line", c->command_line);
    cJSON_AddStringToObject(prov, "license", "CC BY-NC 4.0 (trained on HAM10000); backbone Apache-2.0");
    cJSON_AddStringToObject(prov, "citation", "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018), doi:10.1038/sdata.2018.161");
    cJSON_AddStringToObject(prov, "intended_use", "research and teaching aid; not a medical device; not for diagnosis");

    /* Stage 1 */
    stage_run s1 = {.stage = 1, .cut = full.features, .train_cache = t.feat_train, .val_cache = t.feat_val,
                    .per = (size_t)t.feat_dim, .epochs = c->epochs_head, .lr = c->lr_head, .wd = c->weight_decay,
                    .smoothing = 0.f, .warmup_epochs = 0, .resume = c->resume != 0, .ckpt = ckpt};
    int ck_stage = 0;
    if (c->resume) {
        /* a stage-2 checkpoint means stage 1 is done: its head is inside */
        uint8_t *d;
        size_t sz;
        dl_error e2 = {0};
        if (dl_read_file(ckpt, (size_t)DL_MAX_MODEL_BYTES, &d, &sz, &e2) == 0) {
            const char *p = memmem(d, sz > 4096 ? 4096 : sz, "\\\"stage\\\":2", 11);
            ck_stage = p ? 2 : 1;
            free(d);
        }
    }
    if (ck_stage != 2) {
        if (run_stage(&t, &full, &s1, err)) goto out;
        cJSON_AddItemToObject(prov, "stage1", stats_json(&s1.best, s1.best_epoch, s1.epochs_run, s1.seconds_per_epoch));
        if (c->head_output) {
            val_logits = malloc(sizeof(float) * (size_t)val.n * t.K);
            if (!val_logits) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
            if (forward_from_cache(&full, full.features, t.feat_val, t.feat_dim, val.n, 1, full.output, val_logits, t.K, err)) goto out;
            float T1 = fit_temperature(val_logits, val.labels, val.n, t.K);
            cJSON *p1 = cJSON_Duplicate(prov, 1);
            cJSON_AddStringToObject(p1, "design", "stage 1 only: frozen ImageNet backbone + new head (the original transfer-learning design)");
            cJSON_AddNumberToObject(p1, "temperature", T1);
            const char *nm = c->name;
            trainer t1 = t;
            dl_train_config c1 = *c;
            c1.name = "DermLens frozen-backbone baseline (stage 1)";
            t1.cfg = &c1;
            int r1 = save_model(&t1, bb, &full, c->head_output, T1, NULL, NULL, 0, p1, err);
            (void)nm;
            cJSON_Delete(p1);
            if (r1) goto out;
            logf_(c, "wrote stage-1 (frozen backbone) model %s (temperature %.3f)", c->head_output, T1);
            free(val_logits);
            val_logits = NULL;
        }
    } else {
        logf_(c, "checkpoint is in stage 2: stage 1 already done");
    }

    /* Stage 2 */
    int final_cut = full.features;
    const float *final_train_cache = t.feat_train, *final_val_cache = t.feat_val;
    size_t final_per = t.feat_dim;
    if (c->stages == 2) {
        stage_run s2 = {.stage = 2, .cut = t.cut, .train_cache = t.cut_train, .val_cache = t.cut_val, .per = t.cut_size,
                        .epochs = c->epochs, .lr = c->lr, .wd = c->weight_decay, .smoothing = c->label_smoothing,
                        .warmup_epochs = c->warmup_epochs, .resume = c->resume != 0, .ckpt = ckpt,
                        .online = t.cut == 0};
        if (run_stage(&t, &full, &s2, err)) goto out;
        cJSON_AddItemToObject(prov, "stage2", stats_json(&s2.best, s2.best_epoch, s2.epochs_run, s2.seconds_per_epoch));
        final_cut = t.cut;
        final_train_cache = t.cut_train;
        final_val_cache = t.cut_val;
        final_per = t.cut_size;
    }
    /* Calibration */
    val_logits = malloc(sizeof(float) * (size_t)val.n * t.K);
    train_feat = malloc(sizeof(float) * (size_t)train.n * t.feat_dim);
    val_feat = malloc(sizeof(float) * (size_t)val.n * t.feat_dim);
    if (!val_logits || !train_feat || !val_feat) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    if (forward_from_cache(&full, final_cut, final_val_cache, final_per, val.n, 1, full.output, val_logits, t.K, err)) goto out;
    if (c->prior_shift && choose_prior_shift(&t, &full, val_logits, val.labels, val.n, prov) < 0) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        goto out;
    }
    float T = fit_temperature(val_logits, val.labels, val.n, t.K);
    logf_(c, "temperature scaling on validation: T = %.3f", T);
    /* OOD on clean views */
    if (final_cut == 0 && features_from_images(&full, &bb->pre, timg, train.n, train_feat, err)) goto out;
    if ((final_cut != 0 && forward_from_cache(&full, final_cut, final_train_cache, final_per, train.n, c->views, full.features, train_feat, t.feat_dim, err)) ||
        forward_from_cache(&full, final_cut, final_val_cache, final_per, val.n, 1, full.features, val_feat, t.feat_dim, err))
        goto out;
    float thr = 0;
    if (fit_ood(train_feat, train.n, t.feat_dim, val_feat, val.n, &ood_mean, &ood_prec, &thr, err)) goto out;
    if (!ood_storable(ood_mean, ood_prec, t.feat_dim, thr)) {
        /* features of a degenerate scale (e.g. a randomly initialised
         * imported backbone): the loader would refuse such a detector */
        logf_(c, "OOD detector: not stored (the pooled features' scale gives values beyond the model file's +-1e6)");
        free(ood_mean); free(ood_prec);
        ood_mean = ood_prec = NULL;
    } else {
        logf_(c, "OOD detector: Mahalanobis on %d-d pooled features, threshold %.1f (99th percentile of validation)", t.feat_dim, thr);
    }
    cJSON_AddNumberToObject(prov, "temperature", T);
    cJSON_AddStringToObject(prov, "design", c->stages == 2 ? "stage 1 (frozen backbone, new head) then stage 2 (fine-tuning the top of the backbone with the head)" : "stage 1 only: frozen backbone + new head");
    if (save_model(&t, bb, &full, c->output, T, ood_mean, ood_prec, thr, prov, err)) goto out;
    logf_(c, "wrote %s", c->output);
    /* the run is complete: its checkpoint has served (a later run with the
     * same output starts fresh instead of being refused) */
    if (ckpt && unlink(ckpt) == 0) logf_(c, "removed the checkpoint %s", ckpt);
    rc = 0;
out:
    if (timg || terr) dl_dataset_free_images(&train, timg, terr);
    if (vimg || verr) dl_dataset_free_images(&val, vimg, verr);
    if (t.native) dl_dataset_free_images(&train, t.native, NULL);
    free(t.native_dims); free(t.train_source);
    free(t.cut_train); free(t.feat_train); free(t.cut_val); free(t.feat_val); free(t.class_count);
    free(val_logits); free(train_feat); free(val_feat); free(ood_mean); free(ood_prec); free(ckpt);
    cJSON_Delete(prov);
    dl_graph_free(&full);
    dl_dataset_free(&train);
    dl_dataset_free(&val);
    dl_model_free(bb);
    return rc;
}
