/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Graph executor. One arena holds every node's output for a fixed batch size;
 * it is allocated once in dl_exec_init and reused by every forward, and the
 * kept activations are what Grad-CAM and training differentiate through. */
#include "runtime/runtime.h"
#include "runtime/kernel.h"

#include <stdlib.h>
#include <string.h>

static dl_conv_shape conv_shape(const dl_graph *g, const dl_node *n, int batch)
{
    const dl_node *a = &g->nodes[n->inputs[0]];
    dl_conv_shape s = {.n = batch, .ih = a->h, .iw = a->w, .ic = a->c, .oh = n->h, .ow = n->w,
                       .oc = n->c, .kh = n->kh, .kw = n->kw, .sh = n->sh, .sw = n->sw,
                       .pt = n->pad_t, .pl = n->pad_l, .groups = n->groups, .act = n->act};
    return s;
}

static dl_pool_shape pool_shape(const dl_graph *g, const dl_node *n, int batch)
{
    const dl_node *a = &g->nodes[n->inputs[0]];
    dl_pool_shape s = {.n = batch, .ih = a->h, .iw = a->w, .c = a->c, .oh = n->h, .ow = n->w,
                       .kh = n->kh, .kw = n->kw, .sh = n->sh, .sw = n->sw, .pt = n->pad_t, .pl = n->pad_l};
    return s;
}

/* Per-image size (floats) from which a 1x1 -> depthwise pair runs banded:
 * smaller maps stay in L2 anyway. */
#define BAND_MIN_FLOATS ((size_t)256 * 1024)

static bool needs_pre(const dl_node *n)
{
    return n->act == DL_ACT_HSWISH || n->act == DL_ACT_SILU;
}

/* The activation runs as its own pass after the op: hswish/silu (their
 * input is kept for the backward pass) and sigmoid/hsigmoid (the fused
 * kernels do not know them; their backward needs only the output). */
static bool post_act(const dl_node *n)
{
    return needs_pre(n) || dl_act_is_post(n->act);
}

/* In a forward no backward will follow (no gradients, not training),
 * hswish/silu need no kept input, so they run inside the kernels like ReLU:
 * no copy of the output and no second pass over it. */
static bool post_act_in(const dl_node *n, bool keep_pre)
{
    return keep_pre ? post_act(n) : dl_act_is_post(n->act);
}

void dl_exec_free(dl_exec *e)
{
    free(e->act);
    free(e->pre);
    free(e->arena);
    free(e->scratch);
    free(e->packed);
    free(e->packed_arena);
    free(e->grad);
    free(e->grad_arena);
    free(e->wgrad);
    free(e->wgrad_arena);
    dl_band_plan_free(e->bands);
    free(e->lean_act);
    free(e->lean_arena);
    memset(e, 0, sizeof *e);
}

static float *alloc_floats(size_t n)
{
    float *p = NULL;
    size_t bytes;
    if (!dl_mul_size(n ? n : 1, sizeof(float), &bytes)) return NULL;
    if (posix_memalign((void **)&p, 64, bytes) != 0) return NULL;
    return p;
}

/* Round up to 16 floats so each node's buffer stays 64-byte aligned. */
static size_t round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* Floats of packed weights node i needs on this CPU (0: none). */
static size_t node_packed_floats(const dl_graph *g, const dl_node *n)
{
    if (n->op == DL_OP_CONV2D) {
        dl_conv_shape s = conv_shape(g, n, 1);
        return dl_conv2d_packed_floats(&s);
    }
    if (n->op == DL_OP_DENSE)
        return dl_dense_packed_floats((int)dl_node_out_count(&g->nodes[n->inputs[0]]), n->c);
    return 0;
}

static void pack_all(dl_exec *e)
{
    const dl_graph *g = e->g;
    for (int i = 0; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        if (!e->packed[i]) continue;
        if (n->op == DL_OP_CONV2D) {
            dl_conv_shape s = conv_shape(g, n, 1);
            dl_conv2d_pack(&s, g->tensors[n->weight].data, e->packed[i]);
        } else {
            dl_dense_pack((int)dl_node_out_count(&g->nodes[n->inputs[0]]), n->c, g->tensors[n->weight].data,
                          e->packed[i]);
        }
    }
}

/* Lean forwards' table: the input, output and features stay in the arena;
 * every other output goes to a slot shared by liveness (a chain's outputs
 * are live from its first node to its last; window-only ones need none), so
 * the forward writes a few cache-warm buffers instead of every activation's
 * fresh memory. Planned on the first lean forward. 0, or -1 out of memory. */
static int plan_lean(dl_exec *e)
{
    const dl_graph *g = e->g;
    const int N = g->n_nodes;
    int *born = malloc(sizeof(int) * N), *dies = malloc(sizeof(int) * N), *slot = malloc(sizeof(int) * N);
    int *occupant = malloc(sizeof(int) * N);
    bool *own = calloc(N, sizeof(bool));
    int rc = -1, nslots = 0;
    size_t slot_floats = 0;
    if (!born || !dies || !slot || !occupant || !own) goto out;
    for (int i = 0; i < N; i++) {
        int f, l;
        bool win;
        /* born a node early: the forward fuses some pairs (conv -> add,
         * 1x1 -> depthwise), writing node i + 1 while reading node i's inputs */
        born[i] = i > 0 ? i - 1 : 0;
        dies[i] = i;
        slot[i] = -1;
        if (dl_band_span(e->bands, i, &f, &l, &win)) {
            born[i] = f;
            own[i] = win;
        }
        own[i] = own[i] || i == 0 || i == g->output || i == g->features;
    }
    for (int j = 1; j < N; j++) {
        int f, l;
        bool win;
        int use = dl_band_span(e->bands, j, &f, &l, &win) ? l : j;
        for (int k = 0; k < g->nodes[j].n_inputs && k < 2; k++) {
            int in = g->nodes[j].inputs[k];
            if (in >= 0 && dies[in] < use) dies[in] = use;
        }
    }
    for (int i = 1; i < N; i++) {
        if (own[i]) continue;
        int s = -1;
        for (int k = 0; k < nslots && s < 0; k++)
            if (dies[occupant[k]] < born[i]) s = k;
        if (s < 0) s = nslots++;
        occupant[s] = i;
        slot[i] = s;
        size_t c = round16(dl_node_out_count(&g->nodes[i]) * e->batch);
        if (c > slot_floats) slot_floats = c;
        if (dl_node_out_count(&g->nodes[i]) > e->lean_img_floats) e->lean_img_floats = dl_node_out_count(&g->nodes[i]);
    }
    e->lean_act = malloc(sizeof(float *) * N);
    e->lean_arena = nslots ? alloc_floats(slot_floats * nslots) : NULL;
    if (!e->lean_act || (nslots && !e->lean_arena)) goto out;
    for (int i = 0; i < N; i++) e->lean_act[i] = slot[i] >= 0 ? e->lean_arena + slot_floats * slot[i] : e->act[i];
    rc = 0;
out:
    if (rc) {
        free(e->lean_act);
        free(e->lean_arena);
        e->lean_act = NULL;
        e->lean_arena = NULL;
    }
    free(born); free(dies); free(slot); free(occupant); free(own);
    return rc;
}

int dl_exec_init(dl_exec *e, const dl_graph *g, int batch, dl_error *err)
{
    memset(e, 0, sizeof *e);
    if (batch < 1 || batch > 4096) return dl_fail(err, DL_ERR_ARG, "batch %d out of range", batch);
    e->g = g;
    e->batch = batch;
    e->rng = 0x9e3779b97f4a7c15ull;
    size_t total = 0, scratch = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        size_t c;
        if (!dl_mul_size(dl_node_out_count(n), (size_t)batch, &c)) goto too_big;
        size_t need = round16(c) * (needs_pre(n) ? 2 : 1);
        if (!dl_add_size(total, need, &total)) goto too_big;
        if (n->op == DL_OP_CONV2D) {
            dl_conv_shape s = conv_shape(g, n, batch);
            size_t sc = dl_conv2d_scratch_floats(&s);
            if (sc > scratch) scratch = sc;
        }
    }
    if (total > ((size_t)1 << 34) / sizeof(float)) goto too_big;
    /* weights packed once here (rebuilt per forward only while training) */
    size_t packed = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!dl_add_size(packed, round16(node_packed_floats(g, &g->nodes[i])), &packed)) goto too_big;
    e->act = calloc(g->n_nodes, sizeof *e->act);
    e->pre = calloc(g->n_nodes, sizeof *e->pre);
    e->packed = calloc(g->n_nodes, sizeof *e->packed);
    e->arena = alloc_floats(total);
    e->scratch = alloc_floats(scratch);
    e->packed_arena = packed ? alloc_floats(packed) : NULL;
    e->arena_floats = total;
    e->scratch_floats = scratch;
    if (!e->act || !e->pre || !e->packed || !e->arena || !e->scratch || (packed && !e->packed_arena)) {
        dl_exec_free(e);
        return dl_fail(err, DL_ERR_NOMEM, "cannot allocate the %zu MiB workspace", total * 4 >> 20);
    }
    size_t off = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        size_t c = round16(dl_node_out_count(n) * batch);
        e->act[i] = e->arena + off;
        off += c;
        if (needs_pre(n)) {
            e->pre[i] = e->arena + off;
            off += c;
        }
    }
    off = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        size_t c = node_packed_floats(g, &g->nodes[i]);
        if (!c) continue;
        e->packed[i] = e->packed_arena + off;
        off += round16(c);
    }
    pack_all(e);
    /* banded chains: one image's scratch per thread that may run one (an
     * image may be split in up to 4 parts) */
    e->bands = dl_band_plan_new(g, e->packed);

    size_t per = dl_band_plan_scratch_floats(e->bands), parts = batch < 64 ? (size_t)(batch > 4 ? batch : 4) : 64;
    /* image-parallel forwards (dl_exec_forward): a convolution's and a
     * chain's scratch for each part */
    size_t img = round16(scratch > per ? scratch : per), ip = (size_t)dl_get_num_threads();
    if (ip < 2) ip = 2;
    if (ip > (size_t)batch) ip = (size_t)batch;
    if (ip > DL_IMG_PARTS_MAX) ip = DL_IMG_PARTS_MAX;
    e->img_scratch_floats = batch > 1 ? img : 0;
    size_t want = per * parts > img * ip ? per * parts : img * ip;
    if (want > e->scratch_floats) {
        float *s = alloc_floats(want);
        if (!s) {
            dl_exec_free(e);
            return dl_fail(err, DL_ERR_NOMEM, "cannot allocate scratch");
        }
        free(e->scratch);
        e->scratch = s;
        e->scratch_floats = want;
    }
    return 0;
too_big:
    return dl_fail(err, DL_ERR_LIMIT, "workspace for batch %d exceeds 16 GiB", batch);
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Nodes [1, last] on images [b0, b0 + B) of the batch (A: the activation
 * table; every tensor is B images further on), with `scratch` as the
 * convolutions' scratch and part_scratch as a band chain's (NULL: the
 * executor's, chains split over the threads). */
#define IMG(node) dl_exec_image(e, A, node, b0, b0)
static int forward_nodes(dl_exec *e, float *const *A, int last, int b0, int B, float *scratch, float *part_scratch,
                         bool keep_pre, dl_error *err)
{
    const dl_graph *g = e->g;
    for (int i = 1; i <= last; i++) {
        const dl_node *n = &g->nodes[i];
        const dl_node *a = &g->nodes[n->inputs[0]];
        const float *x = IMG(n->inputs[0]);
        float *y = IMG(i);
        size_t count = dl_node_out_count(n) * B;
        /* hswish/silu keep their input for the backward pass */
        dl_act act = post_act_in(n, keep_pre) ? DL_ACT_NONE : n->act;
        int chain_end = dl_band_chain_at(e->bands, i, last);
        if (chain_end >= 0 && dl_band_chain_run_images(e, e->bands, i, A, b0, b0 + B, part_scratch) == 0) {
            i = chain_end;
            continue;
        }
        switch (n->op) {
        case DL_OP_CONV2D: {
            dl_conv_shape s = conv_shape(g, n, B);
            s.act = act;
            const dl_node *nx = i + 1 <= last ? &g->nodes[i + 1] : NULL;
            /* 1x1 expand -> depthwise on a large map: banded, so the
             * depthwise reads the expansion from cache; both outputs are
             * kept in full (backward and saliency read them) */
            if (nx && nx->op == DL_OP_CONV2D && nx->inputs[0] == i && nx->groups > 1 && !post_act_in(n, keep_pre) &&
                !post_act_in(nx, keep_pre) && count / B >= BAND_MIN_FLOATS) {
                dl_conv_shape s2 = conv_shape(g, nx, B);
                if (dl_conv_pw_dw_forward(&s, x, e->packed[i], n->bias >= 0 ? g->tensors[n->bias].data : NULL, y,
                                          &s2, e->packed[i + 1],
                                          nx->bias >= 0 ? g->tensors[nx->bias].data : NULL, IMG(i + 1)) == 0) {
                    i++;
                    break;
                }
            }
            /* conv -> add: the add runs in the conv's epilogue; both
             * outputs are kept */
            int other = -1;
            if (nx && nx->op == DL_OP_ADD && !post_act_in(n, keep_pre) && !post_act_in(nx, keep_pre) &&
                (nx->inputs[0] == i) != (nx->inputs[1] == i))
                other = nx->inputs[0] == i ? nx->inputs[1] : nx->inputs[0];
            /* training executors keep im2col's values for the 3x3 convs
             * Winograd would take (training and its gradient checks see one
             * path; their weights are packed per forward anyway); Grad-CAM's
             * backward reads the activations this forward stores, whichever
             * kernel made them, so it runs like classify */
            const float *pk = (e->training || e->wgrad) && dl_conv2d_packed_winograd(&s) ? NULL : e->packed[i];
            dl_conv2d_forward_ex(&s, x, g->tensors[n->weight].data, pk,
                                 n->bias >= 0 ? g->tensors[n->bias].data : NULL, y, scratch,
                                 other >= 0 ? IMG(other) : NULL, other >= 0 ? nx->act : DL_ACT_NONE,
                                 other >= 0 ? IMG(i + 1) : NULL);
            if (other >= 0) i++;
            break;
        }
        case DL_OP_ADD:
            dl_add_forward(count, x, IMG(n->inputs[1]), act, y);
            break;
        case DL_OP_MUL: {
            const dl_node *b = &g->nodes[n->inputs[1]];
            dl_mul_forward(B, n->h * n->w, n->c, b->h * b->w, x, IMG(n->inputs[1]), act, y);
            break;
        }
        case DL_OP_CONCAT:
            dl_concat_forward((size_t)B * n->h * n->w, a->c, g->nodes[n->inputs[1]].c, x, IMG(n->inputs[1]), y);
            break;
        case DL_OP_AVGPOOL: {
            dl_pool_shape s = pool_shape(g, n, B);
            dl_avgpool_forward(&s, x, y);
            break;
        }
        case DL_OP_MAXPOOL: {
            dl_pool_shape s = pool_shape(g, n, B);
            dl_maxpool_forward(&s, x, y);
            break;
        }
        case DL_OP_GAP:
            dl_gap_forward(B, a->h * a->w, a->c, x, y);
            break;
        case DL_OP_DENSE:
            dl_dense_forward_ex(B, (int)dl_node_out_count(a), n->c, x, g->tensors[n->weight].data,
                                e->packed[i], n->bias >= 0 ? g->tensors[n->bias].data : NULL, act, y);
            break;
        case DL_OP_SOFTMAX:
            dl_softmax_forward(B * n->h * n->w, n->c, x, y);
            break;
        case DL_OP_PAD:
            dl_pad_forward(B, a->h, a->w, a->c, n->pad_t, n->pad_b, n->pad_l, n->pad_r, x, y);
            break;
        case DL_OP_DROPOUT:
            if (e->training && n->rate > 0.f) {
                float keep = 1.f - n->rate, scale = 1.f / keep;
                for (size_t k = 0; k < count; k++)
                    y[k] = (float)(next_rand(&e->rng) >> 40) * (1.f / 16777216.f) < keep ? x[k] * scale : 0.f;
            } else {
                memcpy(y, x, sizeof(float) * count);
            }
            break;
        default:
            return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: op %s not executable", n->name, dl_op_name(n->op));
        }
        if (post_act_in(n, keep_pre)) {
            if (keep_pre && needs_pre(n)) memcpy(e->pre[i] + (size_t)b0 * dl_node_out_count(n), y, sizeof(float) * count);
            dl_act_forward(n->act, y, count);
        }
    }
    return 0;
}
#undef IMG

typedef struct {
    dl_exec *e;
    float *const *A;
    int last, batch;
    size_t per;      /* scratch floats per part */
    int rc[DL_IMG_PARTS_MAX];
    dl_error err[DL_IMG_PARTS_MAX];
} img_job;

static void img_part(void *arg, int part, int nparts)
{
    img_job *j = arg;
    int b0 = (int)((long)j->batch * part / nparts), b1 = (int)((long)j->batch * (part + 1) / nparts);
    float *sc = j->e->scratch + (size_t)part * j->per;
    int was = dl_thread_serial(1);
    j->rc[part] = b0 < b1 ? forward_nodes(j->e, j->A, j->last, b0, b1 - b0, sc, sc, false, &j->err[part]) : 0;
    dl_thread_serial(was);
}

int dl_exec_forward(dl_exec *e, const float *input, int last, dl_error *err)
{
    const dl_graph *g = e->g;
    const int B = e->batch;
    if (last < 0 || last >= g->n_nodes) last = g->n_nodes - 1;
    if (input != e->act[0]) /* callers may preprocess straight into the input slot */
        memcpy(e->act[0], input, sizeof(float) * dl_node_out_count(&g->nodes[0]) * B);
    /* a training executor's weights change between forwards (optimiser
     * steps, checkpoints, finite differences): repack them */
    if (e->training || e->wgrad) pack_all(e);
    /* lean: intermediate outputs may go to shared slots (runtime.h) */
    const bool keep_pre = e->grad || e->training;
    e->pre_kept = keep_pre;
    float *const *A = e->act;
    if (e->lean && !e->grad && !e->training) {
        if (!e->lean_act && plan_lean(e)) return dl_fail(err, DL_ERR_NOMEM, "cannot allocate the lean forward's buffers");
        A = e->lean_act;
    }
    /* Inference on several images with several threads: each thread runs
     * the whole network on its share of the images with serial kernels (no
     * hand-off per layer, each core's activations in its own L2; the same
     * kernels, so the same values), when the scratch allows it. */
    int parts = keep_pre || B < 2 ? 1 : dl_parallel_parts((size_t)B, 1);
    if (parts > DL_IMG_PARTS_MAX) parts = DL_IMG_PARTS_MAX;
    /* (the result must then be in the arena: slots hold parts apart) */
    if (parts > 1 && e->img_scratch_floats && (size_t)parts * e->img_scratch_floats <= e->scratch_floats &&
        A[last] == e->act[last]) {
        img_job j = {.e = e, .A = A, .last = last, .batch = B, .per = e->img_scratch_floats};
        dl_parallel(parts, img_part, &j);
        for (int p = 0; p < parts; p++)
            if (j.rc[p]) {
                if (err) *err = j.err[p];
                return j.rc[p];
            }
    } else {
        int rc = forward_nodes(e, A, last, 0, B, e->scratch, NULL, keep_pre, err);
        if (rc) return rc;
    }
    if (A[last] != e->act[last]) /* the caller reads it */
        memcpy(e->act[last], A[last], sizeof(float) * dl_node_out_count(&g->nodes[last]) * B);
    return 0;
}

int dl_exec_enable_backward(dl_exec *e, bool with_weights, dl_error *err)
{
    const dl_graph *g = e->g;
    if (!e->grad) {
        size_t total = 0, scratch = e->scratch_floats;
        for (int i = 0; i < g->n_nodes; i++) {
            const dl_node *n = &g->nodes[i];
            total += round16(dl_node_out_count(n) * e->batch);
            if (n->op == DL_OP_CONV2D) {
                dl_conv_shape s = conv_shape(g, n, e->batch);
                size_t sc = dl_conv2d_backward_scratch_floats(&s);
                if (sc > scratch) scratch = sc;
            }
        }
        e->grad = calloc(g->n_nodes, sizeof *e->grad);
        e->grad_arena = alloc_floats(total);
        if (!e->grad || !e->grad_arena) return dl_fail(err, DL_ERR_NOMEM, "cannot allocate gradients");
        size_t off = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            e->grad[i] = e->grad_arena + off;
            off += round16(dl_node_out_count(&g->nodes[i]) * e->batch);
        }
        if (scratch > e->scratch_floats) {
            float *s = alloc_floats(scratch);
            if (!s) return dl_fail(err, DL_ERR_NOMEM, "cannot allocate scratch");
            free(e->scratch);
            e->scratch = s;
            e->scratch_floats = scratch;
        }
    }
    if (with_weights && !e->wgrad) {
        size_t total = 0;
        e->wgrad = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *e->wgrad);
        if (!e->wgrad) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
        for (int i = 0; i < g->n_nodes; i++) {
            const dl_node *n = &g->nodes[i];
            if (!n->trainable) continue;
            if (n->weight >= 0) total += round16(g->tensors[n->weight].count);
            if (n->bias >= 0) total += round16(g->tensors[n->bias].count);
        }
        e->wgrad_arena = alloc_floats(total);
        if (!e->wgrad_arena) return dl_fail(err, DL_ERR_NOMEM, "cannot allocate weight gradients");
        size_t off = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const dl_node *n = &g->nodes[i];
            if (!n->trainable) continue;
            int ts[2] = {n->weight, n->bias};
            for (int k = 0; k < 2; k++) {
                if (ts[k] < 0) continue;
                e->wgrad[ts[k]] = e->wgrad_arena + off;
                off += round16(g->tensors[ts[k]].count);
            }
        }
        memset(e->wgrad_arena, 0, sizeof(float) * (total ? total : 1));
    }
    return 0;
}

void dl_exec_zero_wgrad(dl_exec *e)
{
    if (!e->wgrad) return;
    for (int i = 0; i < e->g->n_tensors; i++)
        if (e->wgrad[i]) memset(e->wgrad[i], 0, sizeof(float) * e->g->tensors[i].count);
}

typedef struct {
    float *p;
    size_t n;
} zero_job;

static void zero_part(void *arg, int part, int nparts)
{
    const zero_job *z = arg;
    size_t a, b;
    dl_part_range(z->n, 16, part, nparts, &a, &b);
    memset(z->p + a, 0, sizeof(float) * (b - a));
}

static void zero_floats(float *p, size_t n)
{
    zero_job z = {p, n};
    dl_parallel(dl_parallel_parts(n, (size_t)1 << 18), zero_part, &z);
}

int dl_exec_backward(dl_exec *e, int from, const float *seed, int stop, dl_error *err)
{
    const dl_graph *g = e->g;
    const int B = e->batch;
    if (!e->grad) return dl_fail(err, DL_ERR_ARG, "backward not enabled");
    if (!e->pre_kept)
        return dl_fail(err, DL_ERR_ARG, "backward: the last forward ran without gradients enabled (run it again)");
    if (from < 1 || from >= g->n_nodes) return dl_fail(err, DL_ERR_ARG, "backward: bad start node");
    if (stop < 0) stop = 0;
    /* Every gradient buffer in [stop, from) starts at zero, since the ops
     * add into them; but a buffer whose first writer in this reverse pass
     * is a convolution or an add is stored to by that node instead, and
     * not zeroed: at batch 32 these are most of the bytes
     * (MobileNetV2's expanded tensors). The rest lie one after the other in
     * the arena and are zeroed in runs on the engine's threads. grad[from]
     * is the seed, copied over. */
    unsigned char *store = stop < from ? calloc((size_t)g->n_nodes, 1) : NULL; /* NULL: zero them all */
    /* store[t]: bit 0, written already in this pass; bit 1, its first
     * writer stores (cleared to 1 once it has) */
    for (int i = from; store && i >= stop && i >= 1; i--) {
        const dl_node *n = &g->nodes[i];
        int t0 = n->inputs[0], t1 = (n->op == DL_OP_ADD || n->op == DL_OP_MUL || n->op == DL_OP_CONCAT)
                                        ? n->inputs[1] : -1;
        bool stores = n->op == DL_OP_CONV2D || n->op == DL_OP_ADD;
        if (t0 >= stop && !(store[t0] & 1)) store[t0] = stores ? 3 : 1;
        if (t1 >= stop && !(store[t1] & 1)) store[t1] = stores ? 3 : 1;
    }
    for (int i = stop; i < from;) {
        if (store && (store[i] & 2)) { i++; continue; }
        int j = i + 1;
        while (j < from && !(store && (store[j] & 2))) j++;
        zero_floats(e->grad[i], (size_t)(e->grad[j] - e->grad[i]));
        i = j;
    }
    memcpy(e->grad[from], seed, sizeof(float) * dl_node_out_count(&g->nodes[from]) * B);
    for (int i = from; i >= stop && i >= 1; i--) {
        const dl_node *n = &g->nodes[i];
        const dl_node *a = &g->nodes[n->inputs[0]];
        float *gy = e->grad[i];
        float *gx = n->inputs[0] >= stop ? e->grad[n->inputs[0]] : NULL;
        const float *x = e->act[n->inputs[0]];
        const float *y = e->act[i];
        size_t count = dl_node_out_count(n) * B;
        float *gw = (e->wgrad && n->weight >= 0) ? e->wgrad[n->weight] : NULL;
        float *gb = (e->wgrad && n->bias >= 0) ? e->wgrad[n->bias] : NULL;
        if (!gx && !gw && !gb && n->op != DL_OP_ADD && n->op != DL_OP_MUL && n->op != DL_OP_CONCAT) continue;
        switch (n->op) {
        case DL_OP_CONV2D: {
            dl_conv_shape s = conv_shape(g, n, B);
            /* the first write of gx stores (see the zeroing above) */
            bool assign = gx && store && store[n->inputs[0]] == 3;
            if (assign) store[n->inputs[0]] = 1;
            dl_conv2d_backward_ex(&s, x, g->tensors[n->weight].data, y, e->pre[i], gy, gx, gw, gb, e->scratch,
                                  assign);
            break;
        }
        case DL_OP_ADD: {
            float *gb2 = n->inputs[1] >= stop ? e->grad[n->inputs[1]] : NULL;
            /* first writes store (see the zeroing above); x + x: a stores, b adds */
            bool sa = gx && store && store[n->inputs[0]] == 3;
            if (sa) store[n->inputs[0]] = 1;
            bool sb = gb2 && store && store[n->inputs[1]] == 3;
            if (sb) store[n->inputs[1]] = 1;
            dl_add_backward_ex(count, y, e->pre[i], n->act, gy, gx, gb2, sa, sb);
            break;
        }
        case DL_OP_MUL: {
            const dl_node *b = &g->nodes[n->inputs[1]];
            float *gb2 = n->inputs[1] >= stop ? e->grad[n->inputs[1]] : NULL;
            dl_mul_backward(B, n->h * n->w, n->c, b->h * b->w, x, e->act[n->inputs[1]], y, e->pre[i], n->act, gy,
                            gx, gb2);
            break;
        }
        case DL_OP_CONCAT: {
            float *gb2 = n->inputs[1] >= stop ? e->grad[n->inputs[1]] : NULL;
            dl_concat_backward((size_t)B * n->h * n->w, a->c, g->nodes[n->inputs[1]].c, gy, gx, gb2);
            break;
        }
        case DL_OP_AVGPOOL: {
            dl_pool_shape s = pool_shape(g, n, B);
            dl_avgpool_backward(&s, gy, gx);
            break;
        }
        case DL_OP_MAXPOOL: {
            dl_pool_shape s = pool_shape(g, n, B);
            dl_maxpool_backward(&s, x, y, gy, gx);
            break;
        }
        case DL_OP_GAP:
            dl_gap_backward(B, a->h * a->w, a->c, gy, gx);
            break;
        case DL_OP_DENSE:
            dl_dense_backward(B, (int)dl_node_out_count(a), n->c, x, g->tensors[n->weight].data, y,
                              e->pre[i], n->act, gy, gx, gw, gb);
            break;
        case DL_OP_SOFTMAX:
            dl_softmax_backward(B * n->h * n->w, n->c, y, gy, gx);
            break;
        case DL_OP_PAD:
            dl_pad_backward(B, a->h, a->w, a->c, n->pad_t, n->pad_b, n->pad_l, n->pad_r, gy, gx);
            break;
        case DL_OP_DROPOUT:
            if (e->training && n->rate > 0.f) {
                float scale = 1.f / (1.f - n->rate);
                for (size_t k = 0; k < count; k++) gx[k] += y[k] != 0.f ? gy[k] * scale : 0.f;
            } else {
                for (size_t k = 0; k < count; k++) gx[k] += gy[k];
            }
            break;
        default:
            free(store);
            return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: no backward for op %s", n->name, dl_op_name(n->op));
        }
    }
    free(store);
    return 0;
}
