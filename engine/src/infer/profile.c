/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The profiling API (dermlens_profile.h): the model's forward pass and each
 * of its convolutions, runnable alone for the benchmarks. */
#include "infer/infer.h"
#include "dermlens_profile.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

double dl_model_flops(const dl_model *m)
{
    return m ? dl_graph_flops(&m->graph) : 0;
}

/* ------------------------------------------------------------ the forward pass */

struct dl_forward_runner {
    dl_exec e;
    float *input;
    size_t count;
};

dl_forward_runner *dl_forward_runner_new(const dl_model *m, int batch, dl_error *err)
{
    if (!m || batch < 1) {
        dl_fail(err, DL_ERR_ARG, "dl_forward_runner_new: %s", m ? "batch < 1" : "NULL model");
        return NULL;
    }
    dl_forward_runner *r = calloc(1, sizeof *r);
    if (!r) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (dl_exec_init(&r->e, &m->graph, batch, err)) {
        free(r);
        return NULL;
    }
    r->e.lean = true; /* as classify runs it: intermediates of banded chains never written */
    r->count = dl_node_out_count(&m->graph.nodes[0]) * (size_t)batch;
    if (!(r->input = calloc(r->count, sizeof(float)))) {
        dl_forward_runner_free(r);
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return r;
}

float *dl_forward_runner_input(dl_forward_runner *r, size_t *count)
{
    if (count) *count = r ? r->count : 0;
    return r ? r->input : NULL;
}

int dl_forward_runner_run(dl_forward_runner *r, dl_error *err)
{
    if (!r) return dl_fail(err, DL_ERR_ARG, "dl_forward_runner_run: NULL runner");
    return dl_exec_forward(&r->e, r->input, r->e.g->output, err);
}

void dl_forward_runner_free(dl_forward_runner *r)
{
    if (!r) return;
    dl_exec_free(&r->e);
    free(r->input);
    free(r);
}

/* ------------------------------------------------------------ one convolution */

struct dl_conv_bench {
    dl_conv_shape s;
    const float *w, *bias;
    float *in, *out, *out2, *scratch, *packed;
    size_t packed_floats;
    int m, k, n, pw;
};

static int nth_conv(const dl_graph *g, int k)
{
    for (int i = 1; i < g->n_nodes; i++)
        if (g->nodes[i].op == DL_OP_CONV2D && k-- == 0) return i;
    return -1;
}

int dl_conv_bench_count(const dl_model *m)
{
    int n = 0;
    for (int i = 1; m && i < m->graph.n_nodes; i++) n += m->graph.nodes[i].op == DL_OP_CONV2D;
    return n;
}

/* 64-byte aligned, filled with a fixed pattern in [-0.5, 0.5). */
static float *bench_alloc(size_t n)
{
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, sizeof(float) * (n ? n : 1))) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.f - 0.5f;
    return p;
}

dl_conv_bench *dl_conv_bench_new(const dl_model *m, int k, dl_conv_bench_info *info, dl_error *err)
{
    int i = m ? nth_conv(&m->graph, k) : -1;
    if (i < 0) {
        dl_fail(err, DL_ERR_ARG, "dl_conv_bench_new: no convolution %d", k);
        return NULL;
    }
    const dl_graph *g = &m->graph;
    const dl_node *n = &g->nodes[i], *a = &g->nodes[n->inputs[0]];
    dl_conv_bench *b = calloc(1, sizeof *b);
    if (!b) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    b->s = (dl_conv_shape){.n = 1, .ih = a->h, .iw = a->w, .ic = a->c, .oh = n->h, .ow = n->w, .oc = n->c,
                           .kh = n->kh, .kw = n->kw, .sh = n->sh, .sw = n->sw, .pt = n->pad_t, .pl = n->pad_l,
                           .groups = n->groups, .act = n->act};
    const dl_conv_shape *s = &b->s;
    b->pw = s->kh == 1 && s->kw == 1 && s->sh == 1 && s->groups == 1;
    b->m = s->oh * s->ow;
    b->k = s->kh * s->kw * s->ic / s->groups;
    b->n = s->oc;
    b->w = g->tensors[n->weight].data;
    b->bias = n->bias >= 0 ? g->tensors[n->bias].data : NULL;
    size_t in_n = (size_t)s->ih * s->iw * s->ic, out_n = (size_t)s->oh * s->ow * s->oc;
    b->packed_floats = dl_conv2d_packed_floats(s);
    b->in = bench_alloc(in_n);
    b->out = bench_alloc(out_n);
    b->out2 = bench_alloc(out_n);
    b->scratch = bench_alloc(dl_conv2d_scratch_floats(s));
    b->packed = bench_alloc(b->packed_floats);
    if (!b->in || !b->out || !b->out2 || !b->scratch || !b->packed) {
        dl_conv_bench_free(b);
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    dl_conv2d_pack(s, b->w, b->packed);
    if (info)
        *info = (dl_conv_bench_info){.node = i, .kind = s->groups > 1 ? "depthwise" : b->pw ? "1x1" : "im2col",
                                     .m = b->m, .k = b->k, .n = b->n, .stride = s->sh,
                                     .flops = 2.0 * b->m * b->n * (double)b->k, .has_blas = b->pw};
    return b;
}

void dl_conv_bench_run(dl_conv_bench *b)
{
    dl_conv2d_forward_ex(&b->s, b->in, b->w, b->packed_floats ? b->packed : NULL, b->bias, b->out, b->scratch, NULL,
                         DL_ACT_NONE, NULL);
}

int dl_conv_bench_run_blas(dl_conv_bench *b)
{
    if (!b->pw) return -1;
    const int M = b->m, N = b->n, K = b->k;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, b->in, K, b->w, K, 0.f, b->out2, N);
    for (int p = 0; p < M; p++)
        for (int c = 0; c < N; c++) b->out2[(size_t)p * N + c] += b->bias ? b->bias[c] : 0.f;
    dl_act_forward(b->s.act, b->out2, (size_t)M * N);
    return 0;
}

void dl_conv_bench_free(dl_conv_bench *b)
{
    if (!b) return;
    free(b->in);
    free(b->out);
    free(b->out2);
    free(b->scratch);
    free(b->packed);
    free(b);
}
