/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The banded executor (runtime/exec_band.c) against the layer-by-layer
 * one: on the real MobileNetV2 and on a small graph with VALID padding,
 * strides and residuals from before a chain, every node's output is the
 * same bit for bit (banded forwards keep all activations), and lean
 * forwards (windows, shared slots) give the same output and features, at
 * batch 1 and 3, on 1 to 3 threads (a batch of 1 splits its rows). */
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
    return tu_exit();
}
