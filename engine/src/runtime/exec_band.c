/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Banded execution of convolution chains. Where activations are large (the
 * high-resolution layers of a MobileNet: 112x112x96 is 4.8 MB), running the
 * network one layer at a time streams every tensor through memory. A chain
 * (consecutive convolutions, each reading earlier ones, residual adds fused)
 * is instead run one image at a time in bands of output rows: for each band
 * of the chain's last layer, every layer first computes just the rows its
 * consumers now need, so a layer's rows are read back while still in L2.
 * Every node's output is still written in full (backward passes, Grad-CAM
 * and Score-CAM read them), and every value is computed by the same kernel
 * code as the layer-at-a-time path, so results are bit-identical.
 *
 * With several images and threads, images are split between threads (each
 * runs whole chains, its kernels single-threaded): no synchronisation per
 * band, and each core keeps its own image's bands in its own L2. */
#include "runtime/runtime.h"
#include "runtime/kernel.h"

#include <stdlib.h>
#include <string.h>

/* Stages per chain (their row counters live on the stack). */
#define MAX_STAGES 64

typedef struct {
    int node;           /* the convolution */
    int add;            /* the add fused into its epilogue, or -1 */
    int in_st, res_st;  /* stages producing its input / the add's other input; -1: before the chain */
    int in_node, res_node;
    dl_conv_shape s;    /* one image */
} band_stage;

typedef struct {
    int first, last;    /* node range */
    int n;              /* stages */
    int band;           /* output rows of the last stage per band */
    size_t scratch;     /* floats of scratch one image needs */
    band_stage *st;
} band_chain;

struct dl_band_plan {
    int n;
    band_chain *c;
};

static dl_conv_shape shape1(const dl_graph *g, const dl_node *n)
{
    const dl_node *a = &g->nodes[n->inputs[0]];
    dl_conv_shape s = {.n = 1, .ih = a->h, .iw = a->w, .ic = a->c, .oh = n->h, .ow = n->w, .oc = n->c,
                       .kh = n->kh, .kw = n->kw, .sh = n->sh, .sw = n->sw, .pt = n->pad_t, .pl = n->pad_l,
                       .groups = n->groups, .act = n->act};
    return s;
}

/* Activations the kernels' epilogues apply, and no pre-activation to keep. */
static bool plain_act(dl_act a)
{
    return a == DL_ACT_NONE || a == DL_ACT_RELU || a == DL_ACT_RELU6;
}

/* Per-image bytes from which a layer is worth banding: a quarter of L2
 * (smaller tensors stay in cache between layers anyway). */
static bool is_big(const dl_graph *g, const dl_node *n)
{
    size_t big = dl_cpu_l2_bytes() / 4;
    size_t in = dl_node_out_count(&g->nodes[n->inputs[0]]) * sizeof(float);
    size_t out = dl_node_out_count(n) * sizeof(float);
    return in >= big || out >= big;
}

/* Stage index of node `node` in the chain so far (its conv or its add), -2
 * if it is inside the chain's range but no stage output, -1 before. */
static int stage_of(const band_chain *c, int node)
{
    if (node < c->first) return -1;
    for (int k = 0; k < c->n; k++)
        if (c->st[k].node == node || c->st[k].add == node) return k;
    return -2;
}

/* Rows of the input that output rows [0, r) read. */
static int rows_in(const dl_conv_shape *s, int r)
{
    if (r <= 0) return 0;
    int need = (r - 1) * s->sh - s->pt + s->kh;
    return need > s->ih ? s->ih : need < 0 ? 0 : need;
}

/* The chain starting at node i (n == 0: none). st has room for every node. */
static void grow_chain(const dl_graph *g, float *const *packed, int i, band_chain *c)
{
    c->first = i;
    c->n = 0;
    for (int j = i; j < g->n_nodes && c->n < MAX_STAGES; j++) {
        const dl_node *n = &g->nodes[j];
        if (n->op != DL_OP_CONV2D || !packed[j] || !plain_act(n->act) || !is_big(g, n)) break;
        dl_conv_shape s = shape1(g, n);
        if (!dl_conv2d_rows_ok(&s)) break;
        int in_st = stage_of(c, n->inputs[0]);
        if (in_st == -2) break;
        band_stage *st = &c->st[c->n];
        *st = (band_stage){.node = j, .add = -1, .in_st = in_st, .res_st = -1, .in_node = n->inputs[0],
                           .res_node = -1, .s = s};
        const dl_node *nx = j + 1 < g->n_nodes ? &g->nodes[j + 1] : NULL;
        if (nx && nx->op == DL_OP_ADD && plain_act(nx->act) && (nx->inputs[0] == j) != (nx->inputs[1] == j)) {
            int other = nx->inputs[0] == j ? nx->inputs[1] : nx->inputs[0];
            int rs = stage_of(c, other);
            if (rs != -2) {
                st->add = j + 1;
                st->res_st = rs;
                st->res_node = other;
            }
        }
        c->n++;
        c->last = st->add >= 0 ? st->add : j;
        j = c->last;
    }
}

/* Last-stage rows per band: the rows every stage computes for them fit in
 * half of L2 (a stage s rows per last-stage row, oh_s / oh_last). */
static void size_bands(band_chain *c)
{
    const dl_conv_shape *L = &c->st[c->n - 1].s;
    double bytes = 0;
    for (int k = 0; k < c->n; k++) {
        const dl_conv_shape *s = &c->st[k].s;
        double per = (double)s->oh / L->oh;
        bytes += per * s->ow * s->oc * sizeof(float) * (c->st[k].add >= 0 ? 2 : 1);
    }
    int band = (int)((double)dl_cpu_l2_bytes() / 2 / (bytes > 1 ? bytes : 1));
    c->band = band < 1 ? 1 : band > L->oh ? L->oh : band;
    c->scratch = 0;
    for (int k = 0; k < c->n; k++) {
        const dl_conv_shape *s = &c->st[k].s;
        /* rows of stage k per band, rounded up, plus one for the ratio's rest */
        int rows = (int)((double)c->band * s->oh / L->oh) + 2;
        size_t sc = dl_conv2d_rows_scratch_floats(s, rows > s->oh ? s->oh : rows);
        if (sc > c->scratch) c->scratch = sc;
    }
}

void dl_band_plan_free(dl_band_plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) free(p->c[i].st);
    free(p->c);
    free(p);
}

dl_band_plan *dl_band_plan_new(const dl_graph *g, float *const *packed)
{
    dl_band_plan *p = calloc(1, sizeof *p);
    band_stage *tmp = malloc(sizeof *tmp * (size_t)(g->n_nodes ? g->n_nodes : 1));
    if (!p || !tmp) goto fail;
    for (int i = 1; i < g->n_nodes; i++) {
        band_chain c = {.st = tmp};
        grow_chain(g, packed, i, &c);
        if (c.n < 2) continue;
        band_chain *nc = realloc(p->c, sizeof *nc * (size_t)(p->n + 1));
        if (!nc) goto fail;
        p->c = nc;
        c.st = malloc(sizeof *c.st * (size_t)c.n);
        if (!c.st) goto fail;
        memcpy(c.st, tmp, sizeof *c.st * (size_t)c.n);
        size_bands(&c);
        p->c[p->n++] = c;
        i = c.last;
    }
    free(tmp);
    if (p->n == 0) {
        free(p);
        return NULL;
    }
    return p;
fail:
    free(tmp);
    dl_band_plan_free(p);
    return NULL;
}

int dl_band_chain_at(const dl_band_plan *p, int node, int last)
{
    if (!p) return -1;
    for (int i = 0; i < p->n; i++)
        if (p->c[i].first == node) return p->c[i].last <= last ? p->c[i].last : -1;
    return -1;
}

size_t dl_band_plan_scratch_floats(const dl_band_plan *p)
{
    size_t m = 0;
    for (int i = 0; p && i < p->n; i++)
        if (p->c[i].scratch > m) m = p->c[i].scratch;
    return m;
}

typedef struct {
    const dl_exec *e;
    const band_chain *c;
    float *scratch;
    size_t scratch_per_part;
} chain_job;

static float *img(const dl_exec *e, int node, int b)
{
    return e->act[node] + (size_t)b * dl_node_out_count(&e->g->nodes[node]);
}

/* Computes rows [done[k], need[k]) of every stage, in order. */
static void run_rows(const dl_exec *e, const band_chain *c, int b, int *done, const int *need, float *scratch)
{
    const dl_graph *g = e->g;
    for (int k = 0; k < c->n; k++) {
        if (need[k] <= done[k]) continue;
        const band_stage *st = &c->st[k];
        const dl_node *n = &g->nodes[st->node];
        dl_conv2d_rows(&st->s, img(e, st->in_node, b), e->packed[st->node],
                       n->bias >= 0 ? g->tensors[n->bias].data : NULL, img(e, st->node, b), done[k], need[k],
                       st->add >= 0 ? img(e, st->res_node, b) : NULL,
                       st->add >= 0 ? g->nodes[st->add].act : DL_ACT_NONE,
                       st->add >= 0 ? img(e, st->add, b) : NULL, scratch);
        done[k] = need[k];
    }
}

static void run_image(const dl_exec *e, const band_chain *c, int b, float *scratch, int *done, int *need)
{
    const int L = c->n - 1, OH = c->st[L].s.oh;
    memset(done, 0, sizeof *done * (size_t)c->n);
    for (int r = 0; r < OH; r += c->band) {
        for (int k = 0; k < L; k++) need[k] = done[k];
        need[L] = r + c->band < OH ? r + c->band : OH;
        /* consumers come after producers: one pass from the end */
        for (int k = L; k >= 0; k--) {
            const band_stage *st = &c->st[k];
            int ni = rows_in(&st->s, need[k]);
            if (st->in_st >= 0 && need[st->in_st] < ni) need[st->in_st] = ni;
            if (st->res_st >= 0 && need[st->res_st] < need[k]) need[st->res_st] = need[k];
        }
        run_rows(e, c, b, done, need, scratch);
    }
    /* rows no later stage reads (VALID padding) are outputs too */
    for (int k = 0; k <= L; k++) need[k] = c->st[k].s.oh;
    run_rows(e, c, b, done, need, scratch);
}

static void chain_part(void *arg, int part, int nparts)
{
    const chain_job *j = arg;
    int B = j->e->batch;
    int b0 = (int)((long)B * part / nparts), b1 = (int)((long)B * (part + 1) / nparts);
    int done[MAX_STAGES], need[MAX_STAGES];
    for (int b = b0; b < b1; b++)
        run_image(j->e, j->c, b, j->scratch + (size_t)part * j->scratch_per_part, done, need);
}

int dl_band_chain_run(const dl_exec *e, const dl_band_plan *p, int first)
{
    const band_chain *c = NULL;
    for (int i = 0; p && i < p->n; i++)
        if (p->c[i].first == first) c = &p->c[i];
    if (!c) return -1;
    chain_job j = {e, c, e->scratch, c->scratch};
    /* several images: one or more per thread, kernels single-threaded
     * inside (the pool is busy, nested calls run inline) */
    int parts = e->batch > 1 ? dl_parallel_parts((size_t)e->batch, 1) : 1;
    if (c->scratch && (size_t)parts * c->scratch > e->scratch_floats) parts = (int)(e->scratch_floats / c->scratch);
    if (parts > 1) dl_parallel(parts, chain_part, &j);
    else chain_part(&j, 0, 1);
    return 0;
}
