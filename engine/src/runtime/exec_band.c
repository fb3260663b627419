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
#define MAX_BUFS (2 * MAX_STAGES)
/* Most parts one image's rows are split into (threads at batch 1). */
#define MAX_SPLIT 4

typedef struct {
    int node;           /* the convolution */
    int add;            /* the add fused into its epilogue, or -1 */
    int in_node, res_node;
    int in_buf, res_buf; /* chain buffers holding them, -1: computed before the chain (arena) */
    int out_buf, add_buf;
    dl_conv_shape s;    /* one image */
} band_stage;

/* One node's output inside a chain: in the arena, or (lean forwards, read
 * by no node after the chain) in a window of `cap` rows. */
typedef struct {
    int node;
    int stage;          /* the stage writing it */
    bool outside;       /* read after the chain (or the graph's output/features): always in the arena */
    int cap;            /* window rows */
    size_t row;         /* floats per row */
} band_buf;

typedef struct {
    int first, last;    /* node range */
    int n, nbuf;        /* stages, buffers */
    int band;           /* output rows of the last stage per band */
    size_t scratch;     /* floats of scratch one image needs (windows + im2col) */
    size_t im2col;      /* floats of it for im2col */
    band_stage *st;
    band_buf *buf;
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

/* A layer worth banding: its input or output (per image) fills half of L2
 * (smaller tensors stay in cache between layers anyway; measured on a
 * 2 MiB L2, a quarter was no better and an eighth worse), and its
 * weights, read again for every band, are small beside them. */
static bool is_big(const dl_graph *g, const dl_node *n)
{
    size_t big = dl_cpu_l2_bytes() / 2;
    size_t in = dl_node_out_count(&g->nodes[n->inputs[0]]) * sizeof(float);
    size_t out = dl_node_out_count(n) * sizeof(float);
    size_t w = n->weight >= 0 ? g->tensors[n->weight].count * sizeof(float) : 0;
    size_t act = in > out ? in : out;
    return act >= big && w * 8 <= act;
}

/* Buffer holding node `node` in the chain so far, -1 if the node precedes
 * the chain, -2 if it is in the chain's range but no buffer (cannot be). */
static int buf_of(const band_chain *c, int node)
{
    if (node < c->first) return -1;
    for (int k = 0; k < c->nbuf; k++)
        if (c->buf[k].node == node) return k;
    return -2;
}

static int add_buf(band_chain *c, const dl_graph *g, int node)
{
    const dl_node *n = &g->nodes[node];
    c->buf[c->nbuf] = (band_buf){.node = node, .stage = c->n, .row = (size_t)n->w * n->c};
    return c->nbuf++;
}

/* The chain starting at node i (n < 2: none). st and buf have room for
 * MAX_STAGES / MAX_BUFS. */
static void grow_chain(const dl_graph *g, float *const *packed, int i, band_chain *c)
{
    c->first = i;
    c->n = c->nbuf = 0;
    for (int j = i; j < g->n_nodes && c->n < MAX_STAGES; j++) {
        const dl_node *n = &g->nodes[j];
        if (n->op != DL_OP_CONV2D || !packed[j] || !plain_act(n->act) || !is_big(g, n)) break;
        dl_conv_shape s = shape1(g, n);
        if (!dl_conv2d_rows_ok(&s)) break;
        int in_buf = buf_of(c, n->inputs[0]);
        if (in_buf == -2) break;
        band_stage *st = &c->st[c->n];
        *st = (band_stage){.node = j, .add = -1, .in_node = n->inputs[0], .res_node = -1, .in_buf = in_buf,
                           .res_buf = -1, .add_buf = -1, .s = s};
        st->out_buf = add_buf(c, g, j);
        const dl_node *nx = j + 1 < g->n_nodes ? &g->nodes[j + 1] : NULL;
        if (nx && nx->op == DL_OP_ADD && plain_act(nx->act) && (nx->inputs[0] == j) != (nx->inputs[1] == j)) {
            int other = nx->inputs[0] == j ? nx->inputs[1] : nx->inputs[0];
            int rb = buf_of(c, other);
            if (rb != -2) {
                st->add = j + 1;
                st->res_node = other;
                st->res_buf = rb;
                st->add_buf = add_buf(c, g, j + 1);
            }
        }
        c->n++;
        c->last = st->add >= 0 ? st->add : j;
        j = c->last;
    }
    for (int k = 0; k < c->nbuf; k++) {
        int node = c->buf[k].node;
        band_buf *b = &c->buf[k];
        b->outside = node == c->last || node == g->output || node == g->features;
        for (int j = c->last + 1; j < g->n_nodes && !b->outside; j++)
            b->outside = g->nodes[j].inputs[0] == node || g->nodes[j].inputs[1] == node;
    }
}

/* Rows of the input that output rows [0, r) read. */
static int rows_in(const dl_conv_shape *s, int r)
{
    if (r <= 0) return 0;
    int need = (r - 1) * s->sh - s->pt + s->kh;
    return need > s->ih ? s->ih : need < 0 ? 0 : need;
}

/* Per-image state of a chain run. */
typedef struct {
    int done[MAX_STAGES], need[MAX_STAGES]; /* rows computed / to compute by now */
    int lo[MAX_BUFS];                       /* a window's first row */
    float *base[MAX_BUFS];                  /* row lo of each buffer */
    bool win[MAX_BUFS];                     /* buffer is a window */
    int ext[MAX_BUFS];                      /* simulation: most rows a window held */
    int rows[MAX_STAGES];                   /* simulation: most rows one call computed */
    int own0[MAX_STAGES], own1[MAX_STAGES]; /* rows of each stage this part writes to the arena */
    bool keep;                              /* windows are also streamed to the arena */
    float *const *act;                      /* the forward's activation table */
    int b0;                                 /* first image of the forward's part (dl_exec_image) */
} chain_state;

/* First row of buffer k that a stage of the chain still reads. */
static int live_from(const band_chain *c, const chain_state *x, int k, int produced)
{
    int lo = produced;
    for (int q = 0; q < c->n; q++) {
        const band_stage *st = &c->st[q];
        if (st->in_buf == k) {
            int r = x->done[q] * st->s.sh - st->s.pt;
            if (r < lo) lo = r;
        }
        if (st->res_buf == k && x->done[q] < lo) lo = x->done[q];
    }
    return lo < 0 ? 0 : lo;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* Copies n floats past the caches (streaming stores): the arena copy of a
 * window is written once and not read soon, so it costs no read-for-
 * ownership and does not evict the windows. */
__attribute__((target("avx512f"))) static void stream_copy(float *dst, const float *src, size_t n)
{
    size_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 63)) {
        dst[i] = src[i];
        i++;
    }
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
    for (; i < n; i++) dst[i] = src[i];
}
static void copy_out(float *dst, const float *src, size_t n)
{
    if (dl_cpu_level() >= DL_ISA_AVX512) {
        stream_copy(dst, src, n);
        _mm_sfence();
    } else {
        memcpy(dst, src, sizeof(float) * n);
    }
}
#else
static void copy_out(float *dst, const float *src, size_t n)
{
    memcpy(dst, src, sizeof(float) * n);
}
#endif

/* (declared in runtime.h; here so that exec.c calls into this file and not
 * the other way round) */
float *dl_exec_image(const dl_exec *e, float *const *act, int node, int b0, int b)
{
    size_t count = dl_node_out_count(&e->g->nodes[node]);
    size_t first = act == e->lean_act && act[node] != e->act[node] ? e->lean_img_floats : count;
    return act[node] + (size_t)b0 * first + (size_t)(b - b0) * count;
}

/* Image b of node's output in the forward's activation table (images from
 * x->b0 on belong to this part of an image-parallel forward). */
static float *img(const dl_exec *e, const chain_state *x, int node, int b)
{
    return dl_exec_image(e, x->act, node, x->b0, b);
}

/* Computes rows [done, need) of every stage in order; windows first drop
 * the rows no stage reads any more. e == NULL: only simulates (sizes). */
static void run_rows(const dl_exec *e, const band_chain *c, chain_state *x, int b, float *scratch)
{
    for (int k = 0; k < c->n; k++) {
        if (x->need[k] <= x->done[k]) continue;
        const band_stage *st = &c->st[k];
        int outs[2] = {st->out_buf, st->add_buf};
        for (int o = 0; o < 2; o++) {
            int bi = outs[o];
            if (bi < 0 || !x->win[bi]) continue;
            const band_buf *bf = &c->buf[bi];
            int lo = live_from(c, x, bi, x->done[k]);
            if (lo > x->lo[bi]) {
                if (e && x->done[k] > lo)
                    memmove(x->base[bi], x->base[bi] + (size_t)(lo - x->lo[bi]) * bf->row,
                            sizeof(float) * bf->row * (size_t)(x->done[k] - lo));
                x->lo[bi] = lo;
            }
            if (x->need[k] - x->lo[bi] > x->ext[bi]) x->ext[bi] = x->need[k] - x->lo[bi];
        }
        if (x->need[k] - x->done[k] > x->rows[k]) x->rows[k] = x->need[k] - x->done[k];
        if (e) {
            const dl_graph *g = e->g;
            const dl_node *n = &g->nodes[st->node];
            dl_rows_io io = {.out = x->base[st->out_buf], .out_lo = x->lo[st->out_buf]};
            if (st->in_buf >= 0) {
                io.in = x->base[st->in_buf];
                io.in_lo = x->lo[st->in_buf];
            } else {
                io.in = img(e, x, st->in_node, b);
            }
            if (st->add >= 0) {
                if (st->res_buf >= 0) {
                    io.res = x->base[st->res_buf];
                    io.res_lo = x->lo[st->res_buf];
                } else {
                    io.res = img(e, x, st->res_node, b);
                }
                io.out2 = x->base[st->add_buf];
                io.out2_lo = x->lo[st->add_buf];
            }
            dl_conv2d_rows(&st->s, &io, e->packed[st->node], n->bias >= 0 ? g->tensors[n->bias].data : NULL,
                           x->done[k], x->need[k], st->add >= 0 ? g->nodes[st->add].act : DL_ACT_NONE, scratch);
            for (int o = 0; o < 2; o++) {
                int bi = outs[o];
                if (bi < 0 || !x->win[bi] || !(x->keep || c->buf[bi].outside)) continue;
                int r0 = x->done[k] > x->own0[k] ? x->done[k] : x->own0[k];
                int r1 = x->need[k] < x->own1[k] ? x->need[k] : x->own1[k];
                if (r0 >= r1) continue;
                size_t row = c->buf[bi].row;
                float *dst = img(e, x, c->buf[bi].node, b) + (size_t)r0 * row;
                const float *src = x->base[bi] + (size_t)(r0 - x->lo[bi]) * row;
                /* read after the chain: soon, keep it cached; else stream it */
                if (c->buf[bi].outside) memcpy(dst, src, sizeof(float) * row * (size_t)(r1 - r0));
                else copy_out(dst, src, row * (size_t)(r1 - r0));
            }
        }
        x->done[k] = x->need[k];
    }
}

/* need[] (rows [0, need) of each stage) grown to cover what the last
 * stage's need[L] rows read; consumers come after producers, so one pass
 * from the end. */
static void propagate_need(const band_chain *c, int *need)
{
    for (int k = c->n - 1; k >= 0; k--) {
        const band_stage *st = &c->st[k];
        int ni = rows_in(&st->s, need[k]);
        if (st->in_buf >= 0 && need[c->buf[st->in_buf].stage] < ni) need[c->buf[st->in_buf].stage] = ni;
        if (st->res_buf >= 0 && need[c->buf[st->res_buf].stage] < need[k]) need[c->buf[st->res_buf].stage] = need[k];
    }
}

/* first[k]: the first row of stage k that the last stage's rows from r on read. */
static void propagate_first(const band_chain *c, int r, int *first)
{
    for (int k = 0; k < c->n; k++) first[k] = c->st[k].s.oh;
    first[c->n - 1] = r;
    for (int k = c->n - 1; k >= 0; k--) {
        const band_stage *st = &c->st[k];
        if (first[k] >= st->s.oh) continue;
        int lo = first[k] * st->s.sh - st->s.pt;
        if (lo < 0) lo = 0;
        if (st->in_buf >= 0 && first[c->buf[st->in_buf].stage] > lo) first[c->buf[st->in_buf].stage] = lo;
        if (st->res_buf >= 0 && first[c->buf[st->res_buf].stage] > first[k])
            first[c->buf[st->res_buf].stage] = first[k];
    }
}

/* Rows [R0, R1) of the chain's last stage for image b, band by band, and
 * the rows of every stage they read (e == NULL: simulation). A part of a
 * row split (R0 > 0 or R1 < OH) recomputes the few rows its windows share
 * with its neighbours, writing to the arena only the rows it owns. */
static void run_image(const dl_exec *e, const band_chain *c, chain_state *x, int b, float *scratch, int R0, int R1)
{
    const int L = c->n - 1, OH = c->st[L].s.oh;
    int first[MAX_STAGES];
    memset(x->own0, 0, sizeof x->own0);
    x->own0[L] = R0;
    propagate_need(c, x->own0);
    memset(x->own1, 0, sizeof x->own1);
    x->own1[L] = R1;
    propagate_need(c, x->own1);
    if (R1 >= OH) /* the last part also owns rows no later stage reads (VALID padding) */
        for (int k = 0; k <= L; k++) x->own1[k] = c->st[k].s.oh;
    propagate_first(c, R0, first);
    for (int k = 0; k <= L; k++) x->done[k] = first[k] < x->own0[k] ? first[k] : x->own0[k];
    for (int k = 0; k < c->nbuf; k++) x->lo[k] = x->done[c->buf[k].stage];
    for (int r = R0; r < R1; r += c->band) {
        for (int k = 0; k < L; k++) x->need[k] = x->done[k];
        x->need[L] = r + c->band < R1 ? r + c->band : R1;
        propagate_need(c, x->need);
        run_rows(e, c, x, b, scratch);
    }
    for (int k = 0; k <= L; k++) x->need[k] = x->own1[k] > x->done[k] ? x->own1[k] : x->done[k];
    run_rows(e, c, x, b, scratch);
}

/* Last-stage rows per band: the rows every stage computes for them fit in
 * half of L2 (stage k computes oh_k / oh_last rows per last-stage row);
 * then the windows' and im2col's sizes from a dry run. */
static void size_chain(band_chain *c)
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
    /* every buffer windowed, each split a part may run */
    chain_state x;
    int ext[MAX_BUFS] = {0}, rows[MAX_STAGES] = {0};
    for (int parts = 1; parts <= MAX_SPLIT; parts++)
        for (int t = 0; t < parts; t++) {
            memset(&x, 0, sizeof x);
            for (int k = 0; k < c->nbuf; k++) x.win[k] = true;
            run_image(NULL, c, &x, 0, NULL, L->oh * t / parts, L->oh * (t + 1) / parts);
            for (int k = 0; k < c->nbuf; k++) ext[k] = x.ext[k] > ext[k] ? x.ext[k] : ext[k];
            for (int k = 0; k < c->n; k++) rows[k] = x.rows[k] > rows[k] ? x.rows[k] : rows[k];
        }
    memcpy(x.ext, ext, sizeof ext);
    memcpy(x.rows, rows, sizeof rows);
    c->scratch = c->im2col = 0;
    for (int k = 0; k < c->n; k++) {
        size_t sc = (dl_conv2d_rows_scratch_floats(&c->st[k].s, x.rows[k]) + 15) & ~(size_t)15;
        if (sc > c->im2col) c->im2col = sc;
    }
    c->scratch = c->im2col;
    for (int k = 0; k < c->nbuf; k++) {
        c->buf[k].cap = x.ext[k];
        c->scratch += ((size_t)x.ext[k] * c->buf[k].row + 15) & ~(size_t)15;
    }
}

void dl_band_plan_free(dl_band_plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        free(p->c[i].st);
        free(p->c[i].buf);
    }
    free(p->c);
    free(p);
}

dl_band_plan *dl_band_plan_new(const dl_graph *g, float *const *packed)
{
    dl_band_plan *p = calloc(1, sizeof *p);
    band_stage *st = malloc(sizeof *st * MAX_STAGES);
    band_buf *bufs = malloc(sizeof *bufs * MAX_BUFS);
    if (!p || !st || !bufs) goto fail;
    for (int i = 1; i < g->n_nodes; i++) {
        band_chain c = {.st = st, .buf = bufs};
        grow_chain(g, packed, i, &c);
        if (c.n < 2) continue;
        size_chain(&c);
        band_chain *nc = realloc(p->c, sizeof *nc * (size_t)(p->n + 1));
        if (!nc) goto fail;
        p->c = nc;
        c.st = malloc(sizeof *c.st * (size_t)c.n);
        c.buf = malloc(sizeof *c.buf * (size_t)c.nbuf);
        if (!c.st || !c.buf) {
            free(c.st);
            free(c.buf);
            goto fail;
        }
        memcpy(c.st, st, sizeof *c.st * (size_t)c.n);
        memcpy(c.buf, bufs, sizeof *c.buf * (size_t)c.nbuf);
        p->c[p->n++] = c;
        i = c.last;
    }
    free(st);
    free(bufs);
    if (p->n == 0) {
        free(p);
        return NULL;
    }
    return p;
fail:
    free(st);
    free(bufs);
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

int dl_band_span(const dl_band_plan *p, int node, int *first, int *last, bool *windowed)
{
    for (int i = 0; p && i < p->n; i++) {
        const band_chain *c = &p->c[i];
        if (node < c->first || node > c->last) continue;
        *first = c->first;
        *last = c->last;
        *windowed = false;
        for (int k = 0; k < c->nbuf; k++)
            if (c->buf[k].node == node) *windowed = !c->buf[k].outside;
        return 1;
    }
    return 0;
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
    float *const *act;
    int split;          /* > 1: image 0's rows split in this many parts; else images split */
    int b0, b1;         /* the images */
    float *scratch;     /* NULL: the executor's, a slot per part */
} chain_job;

static void chain_part(void *arg, int part, int nparts)
{
    const chain_job *j = arg;
    const band_chain *c = j->c;
    const dl_exec *e = j->e;
    const int OH = c->st[c->n - 1].s.oh;
    /* windows only where nothing may read the activations afterwards */
    const bool lean = e->lean && !e->grad && !e->training;
    float *scratch = j->scratch ? j->scratch : e->scratch + (size_t)part * c->scratch;
    chain_state x;
    memset(&x, 0, sizeof x);
    x.keep = !lean;
    x.act = j->act;
    x.b0 = j->b0;
    int b0 = 0, b1 = 1, R0 = 0, R1 = OH;
    if (j->split > 1) {
        R0 = (int)((long)OH * part / nparts);
        R1 = (int)((long)OH * (part + 1) / nparts);
    } else {
        const int nb = j->b1 - j->b0;
        b0 = j->b0 + (int)((long)nb * part / nparts);
        b1 = j->b0 + (int)((long)nb * (part + 1) / nparts);
    }
    for (int b = b0; b < b1; b++) {
        float *w = scratch + c->im2col;
        for (int k = 0; k < c->nbuf; k++) {
            /* a row split writes every buffer through its windows (only the
             * rows a part owns reach the arena) */
            x.win[k] = j->split > 1 || ((lean || x.keep) && !c->buf[k].outside);
            if (x.win[k]) {
                x.base[k] = w;
                w += ((size_t)c->buf[k].cap * c->buf[k].row + 15) & ~(size_t)15;
            } else {
                x.base[k] = img(e, &x, c->buf[k].node, b);
            }
        }
        run_image(e, c, &x, b, scratch, R0, R1);
    }
}

int dl_band_chain_run(const dl_exec *e, const dl_band_plan *p, int first, float *const *act)
{
    const band_chain *c = NULL;
    for (int i = 0; p && i < p->n; i++)
        if (p->c[i].first == first) c = &p->c[i];
    if (!c) return -1;
    chain_job j = {e, c, act, 1, 0, e->batch, NULL};
    /* parts run whole images, or (one image) bands of rows, each with its
     * kernels single-threaded (the pool is busy: nested calls run inline),
     * so threads meet once per chain rather than once per layer and band */
    int parts = dl_parallel_parts(e->batch > 1 ? (size_t)e->batch : MAX_SPLIT, 1);
    if (e->batch == 1) {
        const int OH = c->st[c->n - 1].s.oh;
        if (parts > OH) parts = OH;
        j.split = parts;
    }
    if ((size_t)parts * c->scratch > e->scratch_floats) parts = (int)(e->scratch_floats / (c->scratch ? c->scratch : 1));
    if (j.split > parts) j.split = parts;
    if (parts > 1) dl_parallel(parts, chain_part, &j);
    else chain_part(&j, 0, 1);
    return 0;
}

int dl_band_chain_run_images(const dl_exec *e, const dl_band_plan *p, int first, float *const *act, int b0, int b1,
                             float *scratch)
{
    if (!scratch) return dl_band_chain_run(e, p, first, act);
    const band_chain *c = NULL;
    for (int i = 0; p && i < p->n; i++)
        if (p->c[i].first == first) c = &p->c[i];
    if (!c) return -1;
    chain_job j = {e, c, act, 1, b0, b1, scratch};
    chain_part(&j, 0, 1);
    return 0;
}
