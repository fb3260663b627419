/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The banded executor (runtime/exec_band.c) against the layer-by-layer
 * one: on the real MobileNetV2 and on a small graph with VALID padding,
 * strides and residuals from before a chain, every node's output is the
 * same bit for bit (banded forwards keep all activations), and lean
 * forwards (windows, shared slots) give the same output and features, at
 * batch 1 and 3, on 1 to 3 threads (a batch of 1 splits its rows). Also
 * which kernel the executor gives a Winograd-sized 3x3 conv (inference:
 * Winograd; training: im2col). */
#include "testutil.h"
#include "dermlens_test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t seed = 4242;

static void fill(float *p, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) p[i] = tu_rand(&seed, lo, hi);
}

/* Forward on e (input x), copying every node's output into out[i]. */
static void forward_all(dl_exec *e, const float *x, float **out)
{
    dl_error err = {0};
    CHECK(dl_exec_forward(e, x, -1, &err) == 0, "forward: %s", err.message);
    for (int i = 0; i < e->g->n_nodes; i++)
        memcpy(out[i], e->act[i], sizeof(float) * dl_node_out_count(&e->g->nodes[i]) * e->batch);
}

static void compare(const dl_graph *g, const char *what, int batch, int threads)
{
    dl_error err = {0};
    dl_set_num_threads(threads);
    dl_exec ref, band;
    CHECK(dl_exec_init(&ref, g, batch, &err) == 0 && dl_exec_init(&band, g, batch, &err) == 0, "%s", err.message);
    CHECK(band.bands != NULL, "%s: no banded chain planned", what);
    dl_band_plan_free(ref.bands); /* the reference runs layer by layer */
    ref.bands = NULL;
    size_t nin = dl_node_out_count(&g->nodes[0]) * batch;
    float *x = malloc(sizeof(float) * nin);
    fill(x, nin, -1.f, 1.f);
    float **a = calloc(g->n_nodes, sizeof *a), **b = calloc(g->n_nodes, sizeof *b);
    for (int i = 0; i < g->n_nodes; i++) {
        a[i] = malloc(sizeof(float) * dl_node_out_count(&g->nodes[i]) * batch);
        b[i] = malloc(sizeof(float) * dl_node_out_count(&g->nodes[i]) * batch);
    }
    forward_all(&ref, x, a);
    forward_all(&band, x, b);
    for (int i = 0; i < g->n_nodes; i++)
        CHECK(memcmp(a[i], b[i], sizeof(float) * dl_node_out_count(&g->nodes[i]) * batch) == 0,
              "%s batch %d threads %d: banded node %d (%s) differs", what, batch, threads, i, g->nodes[i].name);
    /* lean: output and features only; twice (slots reused) */
    band.lean = true;
    for (int rep = 0; rep < 2; rep++) {
        memset(band.act[g->output], 0, sizeof(float) * dl_node_out_count(&g->nodes[g->output]) * batch);
        CHECK(dl_exec_forward(&band, x, -1, &err) == 0, "lean forward: %s", err.message);
        int keep[2] = {g->output, g->features};
        for (int k = 0; k < 2; k++) {
            int i = keep[k];
            if (i < 0) continue;
            CHECK(memcmp(a[i], band.act[i], sizeof(float) * dl_node_out_count(&g->nodes[i]) * batch) == 0,
                  "%s batch %d threads %d: lean node %d (%s) differs", what, batch, threads, i, g->nodes[i].name);
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        free(a[i]);
        free(b[i]);
    }
    free(a);
    free(b);
    free(x);
    dl_exec_free(&ref);
    dl_exec_free(&band);
    dl_set_num_threads(0);
}

/* Which kernel a 3x3 stride-1 conv runs on in the executor: Winograd
 * (packed weights) in inference forwards, im2col in training executors
 * (ops.h: dl_conv2d_packed_winograd). Each must equal its kernel called
 * directly, bit for bit, and the two must differ (other roundings). */
static void test_winograd_routing(void)
{
    dl_error err = {0};
    dl_graph g;
    dl_graph_init(&g);
    dl_node in = dl_node_make(DL_OP_INPUT, "input");
    in.h = 13; in.w = 12; in.c = 17;
    dl_graph_add_node(&g, &in, &err);
    const int oc = 24;
    int64_t wd[4] = {oc, 3, 3, 17}, bd[1] = {oc};
    float *w = malloc(sizeof(float) * oc * 9 * 17), bias[24];
    fill(w, (size_t)oc * 9 * 17, -1.f, 1.f);
    fill(bias, oc, -1.f, 1.f);
    dl_node conv = dl_node_make(DL_OP_CONV2D, "conv");
    conv.n_inputs = 1; conv.inputs[0] = 0; conv.units = oc; conv.kh = conv.kw = 3; conv.sh = conv.sw = 1;
    conv.act = DL_ACT_RELU; conv.pad_mode = DL_PAD_SAME;
    conv.weight = dl_graph_add_tensor(&g, "conv.weight", 4, wd, w, &err);
    conv.bias = dl_graph_add_tensor(&g, "conv.bias", 1, bd, bias, &err);
    int c = dl_graph_add_node(&g, &conv, &err);
    dl_node gap = dl_node_make(DL_OP_GAP, "gap");
    gap.n_inputs = 1; gap.inputs[0] = c;
    g.output = g.features = dl_graph_add_node(&g, &gap, &err);
    CHECK(dl_graph_infer(&g, &err) == 0, "routing graph: %s", err.message);
    const int B = 2;
    dl_conv_shape s = {.n = B, .ih = 13, .iw = 12, .ic = 17, .oh = 13, .ow = 12, .oc = oc, .kh = 3, .kw = 3, .sh = 1,
                       .sw = 1, .pt = g.nodes[c].pad_t, .pl = g.nodes[c].pad_l, .groups = 1, .act = DL_ACT_RELU};
    CHECK(dl_conv2d_packed_winograd(&s), "the routing graph's conv should be Winograd's here");
    size_t nin = (size_t)B * 13 * 12 * 17, nout = (size_t)B * 13 * 12 * oc;
    float *x = malloc(sizeof(float) * nin), *wino = malloc(sizeof(float) * nout), *im2col = malloc(sizeof(float) * nout);
    float *packed = malloc(sizeof(float) * dl_conv2d_packed_floats(&s));
    float *scratch = malloc(sizeof(float) * dl_conv2d_scratch_floats(&s));
    fill(x, nin, -1.f, 1.f);
    dl_conv2d_pack(&s, w, packed);
    dl_conv2d_forward_ex(&s, x, w, packed, bias, wino, scratch, NULL, DL_ACT_NONE, NULL);
    dl_conv2d_forward(&s, x, w, bias, im2col, scratch);
    CHECK(memcmp(wino, im2col, sizeof(float) * nout) != 0, "Winograd and im2col agree bit for bit: no routing seen");
    dl_exec inf, train;
    CHECK(dl_exec_init(&inf, &g, B, &err) == 0 && dl_exec_init(&train, &g, B, &err) == 0, "%s", err.message);
    train.training = true;
    CHECK(dl_exec_forward(&inf, x, -1, &err) == 0 && dl_exec_forward(&train, x, -1, &err) == 0, "%s", err.message);
    CHECK(memcmp(inf.act[c], wino, sizeof(float) * nout) == 0, "inference forward is not Winograd's");
    CHECK(memcmp(train.act[c], im2col, sizeof(float) * nout) == 0, "training forward is not im2col's");
    dl_exec_free(&inf);
    dl_exec_free(&train);
    dl_graph_free(&g);
    free(w); free(x); free(wino); free(im2col); free(packed); free(scratch);
}

int main(void)
{
    if (dl_cpu_level() < DL_ISA_AVX512) {
        printf("no AVX-512: chains only plan on the packed GEMM's CPUs; nothing to compare\n");
        return tu_exit();
    }
    dl_error err = {0};
    dl_model *m = dl_model_load(tu_source("weights/mobilenet_v2_imagenet.safetensors"), &err);
    CHECK(m != NULL, "load: %s", err.message);
    if (!m) return tu_exit();
    for (int t = 1; t <= 3; t++) { /* 3: an image's rows split unevenly */
        compare(&m->graph, "MobileNetV2", 1, t);
        compare(&m->graph, "MobileNetV2", 3, t);
    }
    dl_model_free(m);
    test_winograd_routing();
    return tu_exit();
}
