/* Test helper for tests/onnx_torch_test.py: import an ONNX file, run the
 * imported model on a raw input and print its logits.
 *   onnx_logits MODEL.onnx INPUT.f32 OUT.safetensors [IMAGE.u8 W H]
 * INPUT.f32: float32 little-endian, NCHW [1,3,H,W] (already preprocessed).
 * The model goes through the whole import path (dl_import_onnx writes
 * OUT.safetensors, which is loaded back), then the graph runs on INPUT;
 * prints one logit per line, then "nodes N" and the engine op counts.
 * With IMAGE (raw RGB8, W x H): Grad-CAM (single pass) on the image through
 * the model's own preprocessing at the layer explain picks by itself (the
 * last spatial convolution), then one line
 *   "gradcam HxWxC min MIN max MAX mean MEAN nonfinite N distinct D layer NAME"
 * over the normalised map (D: distinct values, up to 1000; NAME: the layer).
 * SPDX-License-Identifier: GPL-3.0-or-later */
#include "dermlens_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gradcam(dl_model *m, const char *path, int w, int h)
{
    dl_error err = {0};
    size_t n = (size_t)w * h * 3;
    uint8_t *rgb = malloc(n);
    FILE *f = fopen(path, "rb");
    if (!rgb || !f || fread(rgb, 1, n, f) != n) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", n, path);
        if (f) fclose(f);
        free(rgb);
        return 1;
    }
    fclose(f);
    int layer = dl_graph_last_spatial_conv(&m->graph);
    dl_explain_options o = {.method = DL_SALIENCY_GRADCAM, .class_index = -1, .single_pass = 1};
    float *map = NULL;
    if (layer < 0 || dl_explain_rgb8(m, rgb, w, h, (size_t)w * 3, &o, &map, NULL, &err)) {
        fprintf(stderr, "gradcam: %s\n", layer < 0 ? "no spatial convolution" : err.message);
        free(rgb);
        return 1;
    }
    float lo = INFINITY, hi = -INFINITY;
    double sum = 0;
    size_t bad = 0, npx = (size_t)w * h;
    float seen[1000];
    int distinct = 0;
    for (size_t i = 0; i < npx; i++) {
        float v = map[i];
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
        bool known = false;
        for (int k = 0; k < distinct && !known; k++) known = seen[k] == v;
        if (!known && distinct < 1000) seen[distinct++] = v;
    }
    const dl_node *L = &m->graph.nodes[layer];
    printf("gradcam %dx%dx%d min %.6g max %.6g mean %.6g nonfinite %zu distinct %d layer %s\n", L->h, L->w, L->c,
           (double)lo, (double)hi, sum / (double)npx, bad, distinct, L->name);
    free(map);
    free(rgb);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 7) {
        fprintf(stderr, "usage: onnx_logits MODEL.onnx INPUT.f32 OUT.safetensors [IMAGE.u8 W H]\n");
        return 2;
    }
    dl_error err = {0};
    dl_onnx_import_options o;
    dl_onnx_import_options_defaults(&o);
    if (dl_import_onnx(argv[1], &o, argv[3], &err)) {
        fprintf(stderr, "import: %s\n", err.message);
        return 1;
    }
    dl_model *m = dl_model_load(argv[3], &err);
    if (!m) {
        fprintf(stderr, "load: %s\n", err.message);
        return 1;
    }
    const dl_graph *g = &m->graph;
    int H = g->nodes[0].h, W = g->nodes[0].w;
    size_t n = (size_t)3 * H * W;
    float *nchw = malloc(n * sizeof(float)), *nhwc = malloc(n * sizeof(float));
    FILE *f = fopen(argv[2], "rb");
    if (!nchw || !nhwc || !f || fread(nchw, sizeof(float), n, f) != n) {
        fprintf(stderr, "cannot read %zu floats from %s\n", n, argv[2]);
        return 1;
    }
    fclose(f);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) nhwc[((size_t)y * W + x) * 3 + c] = nchw[((size_t)c * H + y) * W + x];
    dl_exec e;
    if (dl_exec_init(&e, g, 1, &err) || dl_exec_forward(&e, nhwc, -1, &err)) {
        fprintf(stderr, "run: %s\n", err.message);
        return 1;
    }
    const dl_node *out = &g->nodes[g->output];
    for (int k = 0; k < out->c; k++) printf("%.9g\n", e.act[g->output][k]);
    int counts[DL_OP_COUNT] = {0};
    for (int i = 0; i < g->n_nodes; i++) counts[g->nodes[i].op]++;
    printf("nodes %d", g->n_nodes);
    for (int op = 1; op < DL_OP_COUNT; op++)
        if (counts[op]) printf(" %s:%d", dl_op_name((dl_op)op), counts[op]);
    printf("\n");
    dl_exec_free(&e);
    int rc = argc == 7 ? gradcam(m, argv[4], atoi(argv[5]), atoi(argv[6])) : 0;
    dl_model_free(m);
    free(nchw);
    free(nhwc);
    return rc;
}
