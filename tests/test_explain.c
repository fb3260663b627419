/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Saliency on the committed ImageNet MobileNetV2 and the dog picture:
 * every method gives a finite, non-constant [0,1] map of the region's size;
 * Grad-CAM for "German shepherd" lands on the dog; Grad-CAM's channel
 * weights equal finite differences of the logit taken through the layers
 * above the Grad-CAM layer (an independent forward-only path); error cases.
 * A two-channel synthetic model whose Grad-CAM is known in closed form checks
 * the map itself and the study variants (probability score, signed map);
 * the ROAD imputation used by `explain --evaluate` reproduces a linear ramp
 * inside a hole and never touches known pixels; resize "pad" (letterbox)
 * in preprocessing and in the map's placement. */
#include "dermlens_test.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void check_map(const char *what, const float *map, int w, int h)
{
    float lo = INFINITY, hi = -INFINITY;
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        if (!isfinite(map[i]) || map[i] < 0.f || map[i] > 1.f) bad++;
        else {
            lo = map[i] < lo ? map[i] : lo;
            hi = map[i] > hi ? map[i] : hi;
        }
    }
    CHECK(bad == 0, "%s: %zu values outside [0,1] or not finite", what, bad);
    CHECK(hi - lo > 0.5f, "%s: map is (nearly) constant: [%g, %g]", what, lo, hi);
}

/* Mean of the map inside [x0,x1)x[y0,y1) and over the outer `b`-pixel border. */
static void box_vs_border(const float *map, int w, int h, int x0, int y0, int x1, int y1, int b,
                          double *in, double *border)
{
    double si = 0, sb = 0;
    long ni = 0, nb = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float v = map[(size_t)y * w + x];
            if (x >= x0 && x < x1 && y >= y0 && y < y1) { si += v; ni++; }
            if (x < b || y < b || x >= w - b || y >= h - b) { sb += v; nb++; }
        }
    *in = si / ni;
    *border = sb / nb;
}

/* The part of g above `layer` as its own graph whose input is that layer's
 * output: lets the test evaluate logit(A) for a perturbed activation A by
 * forward passes only. Works for chains whose nodes read `layer` or later. */
static int tail_graph(const dl_graph *g, int layer, dl_graph *t, int *map_out)
{
    dl_error err = {0};
    int *map = calloc(g->n_nodes, sizeof(int));
    int *tmap = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(int));
    for (int i = 0; i < g->n_tensors; i++) tmap[i] = -1;
    dl_graph_init(t);
    dl_node in = dl_node_make(DL_OP_INPUT, "tail_input");
    in.h = g->nodes[layer].h;
    in.w = g->nodes[layer].w;
    in.c = g->nodes[layer].c;
    map[layer] = dl_graph_add_node(t, &in, &err);
    int ok = map[layer] == 0;
    for (int i = layer + 1; ok && i < g->n_nodes; i++) {
        dl_node n = g->nodes[i];
        for (int k = 0; k < n.n_inputs; k++) {
            if (n.inputs[k] < layer) { ok = 0; break; }
            n.inputs[k] = map[n.inputs[k]];
        }
        int *ts[2] = {&n.weight, &n.bias};
        for (int k = 0; ok && k < 2; k++) {
            if (*ts[k] < 0) continue;
            int old = *ts[k];
            if (tmap[old] < 0) {
                const dl_tensor *src = &g->tensors[old];
                tmap[old] = dl_graph_add_tensor(t, src->name, src->ndim, src->dims, src->data, &err);
            }
            *ts[k] = tmap[old];
            ok = *ts[k] >= 0;
        }
        if (ok) ok = (map[i] = dl_graph_add_node(t, &n, &err)) >= 0;
    }
    if (ok) {
        t->output = map[g->output];
        t->features = -1;
        ok = dl_graph_infer(t, &err) == 0;
    }
    if (!ok) fprintf(stderr, "tail graph: %s\n", err.message);
    *map_out = ok ? map[g->output] : -1;
    free(map);
    free(tmap);
    return ok ? 0 : -1;
}


/* Noisy linear imputation: a linear ramp is harmonic under the 8-neighbour
 * mean, so a hole in it must be filled with the ramp; known pixels stay;
 * nothing known gives mid-grey; noise is deterministic per seed and only
 * touches removed pixels. */
static void test_impute(void)
{
    enum { W = 64, H = 48 };
    static uint8_t img[W * H * 3], orig[W * H * 3], rem[W * H], again[W * H * 3];
    dl_error err = {0};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = orig + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(20 + 3 * x);         /* 20..209 */
            p[1] = (uint8_t)(200 - 4 * y);        /* 200..12 */
            p[2] = (uint8_t)(40 + 2 * x + y);     /* 40..213 */
            /* an interior hole (the fill must be the ramp) and one at the
             * corner (free border: values must stay within the known ones) */
            rem[(size_t)y * W + x] = (x >= 10 && x < 40 && y >= 8 && y < 36) || (x >= 50 && y >= 40);
        }
    memcpy(img, orig, sizeof img);
    CHECK(dl_impute_linear(img, W, H, rem, 0.f, 1, &err) == 0, "impute: %s", err.message);
    int worst = 0, out_of_range = 0;
    size_t changed_known = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t i = (size_t)y * W + x;
            for (int c = 0; c < 3; c++) {
                int d = abs((int)img[i * 3 + c] - (int)orig[i * 3 + c]);
                if (!rem[i]) changed_known += d != 0;
                else if (x < 50) worst = d > worst ? d : worst;
            }
            if (rem[i] && x >= 50) /* corner: the known red around it spans 167..209 */
                out_of_range += img[i * 3] < 165 || img[i * 3] > 211;
        }
    printf("impute: ramp inside a 30x28 hole: max error %d levels\n", worst);
    CHECK(worst <= 2, "imputed ramp off by %d levels", worst);
    CHECK(out_of_range == 0, "corner hole: %d pixels outside the known values' range", out_of_range);
    CHECK(changed_known == 0, "%zu known values changed", changed_known);
    /* two colours: a hole inside the left (red) half is filled with red */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = img + ((size_t)y * W + x) * 3;
            p[0] = x < W / 2 ? 220 : 10;
            p[1] = 10;
            p[2] = x < W / 2 ? 10 : 220;
            rem[(size_t)y * W + x] = x >= 4 && x < 12 && y >= 10 && y < 30;
        }
    CHECK(dl_impute_linear(img, W, H, rem, 0.f, 1, &err) == 0, "impute: %s", err.message);
    const uint8_t *mid = img + ((size_t)20 * W + 8) * 3;
    CHECK(mid[0] > 200 && mid[2] < 40, "hole in the red half filled with (%d,%d,%d)", mid[0], mid[1], mid[2]);
    /* noise: only removed pixels differ, same seed = same image */
    memcpy(img, orig, sizeof img);
    memcpy(again, orig, sizeof again);
    for (size_t i = 0; i < (size_t)W * H; i++) rem[i] = (i % 7) == 0;
    CHECK(dl_impute_linear(img, W, H, rem, 2.55f, 42, &err) == 0, "impute: %s", err.message);
    CHECK(dl_impute_linear(again, W, H, rem, 2.55f, 42, &err) == 0, "impute: %s", err.message);
    CHECK(memcmp(img, again, sizeof img) == 0, "noisy imputation not deterministic for one seed");
    size_t diff_removed = 0, diff_known = 0;
    for (size_t i = 0; i < (size_t)W * H; i++)
        for (int c = 0; c < 3; c++)
            if (img[i * 3 + c] != orig[i * 3 + c]) *(rem[i] ? &diff_removed : &diff_known) += 1;
    CHECK(diff_known == 0 && diff_removed > 0, "noise: %zu known and %zu removed values changed", diff_known,
          diff_removed);
    /* everything removed: nothing to impute from, mid-grey */
    memset(rem, 1, sizeof rem);
    CHECK(dl_impute_linear(img, W, H, rem, 0.f, 1, &err) == 0, "impute: %s", err.message);
    CHECK(img[0] == 128 && img[sizeof img - 1] == 128, "all removed -> %d %d", img[0], img[sizeof img - 1]);
    CHECK(dl_impute_linear(img, 0, H, rem, 0.f, 1, &err) == -1 && err.code == DL_ERR_ARG, "zero width accepted");
}

/* input 8x8x3 (x/255) -> 1x1 conv "feat" (unit 0 = red, unit 1 = green;
 * ReLU) -> GAP -> dense: logit0 = mean(R) - mean(G), logit1 = mean(G). For
 * class 0 Grad-CAM weights the channels by +1/hw and -1/hw: the map is
 * ReLU(R - G). The image: red (1,0) top-left quadrant, green (0,1)
 * bottom-right, (a,0) elsewhere with a = 128/255: the map is 1 / a / 0
 * (red / rest / green); signed (no ReLU) it is 1 / (a+1)/2 / 0. The
 * probability's gradient weights the channels p0 p1 (1, -2): the same ReLU
 * map, but signed it is 1 / (a+2)/3 / 0. */
static dl_model *synthetic_model(void)
{
    dl_error err = {0};
    dl_model *m = calloc(1, sizeof *m);
    dl_graph *g = &m->graph;
    dl_graph_init(g);
    dl_node in = dl_node_make(DL_OP_INPUT, "input");
    in.h = 8; in.w = 8; in.c = 3;
    dl_graph_add_node(g, &in, &err);
    int64_t wd[4] = {2, 1, 1, 3}, bd[1] = {2}, dd[2] = {2, 2}, db[1] = {2};
    const float cw[6] = {1, 0, 0, 0, 1, 0}, dw[4] = {1, -1, 0, 1};
    dl_node conv = dl_node_make(DL_OP_CONV2D, "feat");
    conv.n_inputs = 1; conv.inputs[0] = 0; conv.units = 2; conv.kh = conv.kw = 1; conv.sh = conv.sw = 1;
    conv.act = DL_ACT_RELU; conv.pad_mode = DL_PAD_VALID;
    conv.weight = dl_graph_add_tensor(g, "feat.weight", 4, wd, cw, &err);
    conv.bias = dl_graph_add_tensor(g, "feat.bias", 1, bd, NULL, &err);
    int c = dl_graph_add_node(g, &conv, &err);
    dl_node gap = dl_node_make(DL_OP_GAP, "gap");
    gap.n_inputs = 1; gap.inputs[0] = c;
    int p = dl_graph_add_node(g, &gap, &err);
    dl_node fc = dl_node_make(DL_OP_DENSE, "logits");
    fc.n_inputs = 1; fc.inputs[0] = p; fc.units = 2;
    fc.weight = dl_graph_add_tensor(g, "logits.weight", 2, dd, dw, &err);
    fc.bias = dl_graph_add_tensor(g, "logits.bias", 1, db, NULL, &err);
    g->output = dl_graph_add_node(g, &fc, &err);
    g->features = p;
    CHECK(dl_graph_infer(g, &err) == 0, "synthetic infer: %s", err.message);
    m->pre.width = m->pre.height = 8;
    strcpy(m->pre.resize, "squash");
    for (int k = 0; k < 3; k++) { m->pre.mean[k] = 0.f; m->pre.std[k] = 255.f; }
    m->num_classes = 2;
    m->temperature = 1.f;
    return m;
}

static void test_synthetic(void)
{
    dl_model *m = synthetic_model();
    uint8_t img[8 * 8 * 3];
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            uint8_t *q = img + (y * 8 + x) * 3;
            int red = x < 4 && y < 4, green = x >= 4 && y >= 4;
            q[0] = red ? 255 : green ? 0 : 128;
            q[1] = green ? 255 : 0;
            q[2] = 128;
        }
    const float a = 128.f / 255.f; /* the rest's red; its green is 0 */
    struct { unsigned flags; float red, grey, green; } want[] = {
        {0, 1.f, a, 0.f},
        {DL_EXPLAIN_SCORE_PROB, 1.f, a, 0.f},
        {DL_EXPLAIN_SIGNED, 1.f, (a + 1.f) / 2.f, 0.f},
        {DL_EXPLAIN_SIGNED | DL_EXPLAIN_SCORE_PROB, 1.f, (a + 2.f) / 3.f, 0.f},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
        dl_error err = {0};
        float *map = NULL;
        dl_explain_options o = {.method = DL_SALIENCY_GRADCAM, .class_index = 0};
        CHECK(dl_explain_rgb8_variant(m, img, 8, 8, 24, &o, want[k].flags, &map, NULL, &err) == 0, "synthetic: %s",
              err.message);
        if (!map) continue;
        double worst = 0;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                int red = x < 4 && y < 4, green = x >= 4 && y >= 4;
                float e = red ? want[k].red : green ? want[k].green : want[k].grey;
                worst = fmax(worst, fabs(map[y * 8 + x] - e));
            }
        printf("synthetic Grad-CAM flags %u: max error %.2g\n", want[k].flags, worst);
        CHECK(worst < 2e-3, "synthetic Grad-CAM flags %u: map off by %g", want[k].flags, worst);
        free(map);
    }
    /* the public entry point: the flip mean by default, one pass on request */
    for (int single = 0; single <= 1; single++) {
        dl_error err = {0};
        float *m0 = NULL, *m1 = NULL;
        dl_explain_options o = {.method = DL_SALIENCY_GRADCAM, .class_index = 0, .single_pass = single};
        CHECK(dl_explain_rgb8(m, img, 8, 8, 24, &o, &m0, NULL, &err) == 0, "%s", err.message);
        CHECK(dl_explain_rgb8_variant(m, img, 8, 8, 24, &o, single ? 0u : DL_EXPLAIN_DIHEDRAL, &m1, NULL, &err) == 0,
              "%s", err.message);
        CHECK(m0 && m1 && memcmp(m0, m1, sizeof(float) * 64) == 0, "dl_explain_rgb8 (single_pass %d) differs from "
              "its variant", single);
        free(m0);
        free(m1);
    }
    dl_model_free(m);
}

/* resize "pad": the letterbox in preprocessing (black border, the image
 * unresized when it already fits), pad = squash for a square image, and a
 * saliency map that covers exactly the image's part of the input. */
static void test_pad(void)
{
    dl_error err = {0};
    dl_model *m = synthetic_model();
    int x, y, rw, rh;
    dl_preprocess_letterbox(8, 4, 8, 8, &x, &y, &rw, &rh);
    CHECK(x == 0 && y == 2 && rw == 8 && rh == 4, "letterbox 8x4 in 8x8: %d,%d %dx%d", x, y, rw, rh);
    dl_preprocess_letterbox(300, 200, 224, 224, &x, &y, &rw, &rh);
    CHECK(x == 0 && y == 37 && rw == 224 && rh == 149, "letterbox 300x200 in 224: %d,%d %dx%d", x, y, rw, rh);
    dl_preprocess_letterbox(1, 5000, 224, 224, &x, &y, &rw, &rh);
    CHECK(x == 111 && y == 0 && rw == 1 && rh == 224, "letterbox 1x5000 in 224: %d,%d %dx%d", x, y, rw, rh);
    /* a red block left, green right, grey elsewhere, 8x4 */
    uint8_t img[8 * 4 * 3];
    for (int yy = 0; yy < 4; yy++)
        for (int xx = 0; xx < 8; xx++) {
            uint8_t *q = img + (yy * 8 + xx) * 3;
            int red = xx < 3, green = xx >= 5;
            q[0] = red ? 255 : green ? 0 : 128;
            q[1] = green ? 255 : 0;
            q[2] = (uint8_t)(yy * 40 + xx);
        }
    dl_preprocess p = m->pre;
    strcpy(p.resize, "pad");
    p.mean[0] = 10.f;
    float in[8 * 8 * 3];
    CHECK(dl_preprocess_rgb8(&p, img, 8, 4, 24, in, &err) == 0, "pad preprocess: %s", err.message);
    int bad = 0;
    for (int yy = 0; yy < 8; yy++)
        for (int xx = 0; xx < 8; xx++)
            for (int c = 0; c < 3; c++) {
                float px = yy >= 2 && yy < 6 ? img[((yy - 2) * 8 + xx) * 3 + c] : 0.f;
                bad += in[(yy * 8 + xx) * 3 + c] != (px - p.mean[c]) * (1.f / p.std[c]);
            }
    CHECK(bad == 0, "pad preprocess: %d values differ from the letterbox", bad);
    /* a square image: pad is squash */
    uint8_t sq[5 * 5 * 3];
    uint64_t seed = 5;
    for (int i = 0; i < 75; i++) sq[i] = (uint8_t)tu_rand(&seed, 0, 255);
    float a[8 * 8 * 3], b[8 * 8 * 3];
    dl_preprocess ps = p;
    strcpy(ps.resize, "squash");
    CHECK(dl_preprocess_rgb8(&p, sq, 5, 5, 15, a, &err) == 0 && dl_preprocess_rgb8(&ps, sq, 5, 5, 15, b, &err) == 0,
          "%s", err.message);
    CHECK(!memcmp(a, b, sizeof a), "pad differs from squash on a square image");
    /* Grad-CAM of class 0 is relu(R - G) over the input: on the image's
     * rows (the map covers only them) red 1, green 0, grey 128/255 */
    strcpy(m->pre.resize, "pad");
    float *map = NULL;
    dl_explain_options o = {.method = DL_SALIENCY_GRADCAM, .class_index = 0};
    CHECK(dl_explain_rgb8_variant(m, img, 8, 4, 24, &o, 0, &map, NULL, &err) == 0, "pad explain: %s", err.message);
    if (map) {
        double worst = 0;
        for (int yy = 0; yy < 4; yy++)
            for (int xx = 0; xx < 8; xx++) {
                float e = xx < 3 ? 1.f : xx >= 5 ? 0.f : 128.f / 255.f;
                worst = fmax(worst, fabs(map[yy * 8 + xx] - e));
            }
        printf("pad: Grad-CAM on the letterboxed 8x4 image, max error %.2g\n", worst);
        CHECK(worst < 2e-3, "pad: map off by %g", worst);
    }
    free(map);
    dl_model_free(m);
}

int main(void)
{
    dl_error err = {0};
    dl_set_num_threads(0);
    test_impute();
    test_synthetic();
    test_pad();
    dl_model *m = dl_model_load(tu_source("weights/mobilenet_v2_imagenet.safetensors"), &err);
    CHECK(m != NULL, "load: %s", err.message);
    dl_image img = {0};
    CHECK(dl_image_load(tu_source("tests/data/imagenet/dog_224.png"), &img, &err) == 0, "image: %s", err.message);
    if (!m || !img.pixels) return tu_exit();
    const int W = img.width, H = img.height;

    /* names */
    for (int i = 0; i <= DL_SALIENCY_OCCLUSION; i++)
        CHECK(dl_saliency_method_from_name(dl_saliency_method_name(i)) == i, "method %d name round trip", i);
    CHECK(dl_saliency_method_from_name("Grad-CAM") == DL_SALIENCY_GRADCAM, "alias Grad-CAM");
    CHECK(dl_saliency_method_from_name("gradcampp") == DL_SALIENCY_GRADCAM_PP, "alias gradcampp");
    CHECK(dl_saliency_method_from_name("saliency") == -1, "unknown name accepted");

    /* cost: classify vs Grad-CAM (warm-up first; printed, not asserted) */
    dl_result r = {0};
    float *map = NULL;
    dl_explain_options o = {.method = DL_SALIENCY_GRADCAM, .class_index = 236, .single_pass = 1};
    CHECK(dl_classify_rgb8(m, img.pixels, W, H, img.stride, NULL, &r, &err) == 0, "classify: %s", err.message);
    dl_result_free(&r);
    CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &o, &map, NULL, &err) == 0, "gradcam: %s", err.message);
    free(map);
    const int reps = 3;
    double t0 = now();
    for (int i = 0; i < reps; i++) {
        dl_classify_rgb8(m, img.pixels, W, H, img.stride, NULL, &r, &err);
        dl_result_free(&r);
    }
    double t_cls = (now() - t0) / reps;
    t0 = now();
    for (int i = 0; i < reps; i++) {
        dl_explain_rgb8(m, img.pixels, W, H, img.stride, &o, &map, NULL, &err);
        free(map);
    }
    double t_cam = (now() - t0) / reps;
    o.single_pass = 0;
    t0 = now();
    for (int i = 0; i < reps; i++) {
        dl_explain_rgb8(m, img.pixels, W, H, img.stride, &o, &map, NULL, &err);
        free(map);
    }
    double t_flip = (now() - t0) / reps;
    printf("cost: classify %.1f ms, Grad-CAM one pass (incl. its forward) %.1f ms, ratio %.3f "
           "(one pass adds %.0f%% of a forward); the default 8-flip mean %.1f ms (%.1fx classify)\n",
           t_cls * 1e3, t_cam * 1e3, t_cam / t_cls, (t_cam / t_cls - 1) * 100, t_flip * 1e3, t_flip / t_cls);

    /* Grad-CAM on the dog, with the result filled as classify would */
    map = NULL;
    CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &o, &map, &r, &err) == 0, "gradcam: %s", err.message);
    if (map) {
        check_map("gradcam", map, W, H);
        CHECK(r.top_index && r.top_index[0] == 236, "result top class %d", r.top_index ? r.top_index[0] : -1);
        CHECK(r.probs && fabsf(r.probs[236] - 0.2626f) < 1e-3f, "result p(236) = %f", r.probs ? r.probs[236] : -1);
        double in, border;
        box_vs_border(map, W, H, 30, 80, 100, 200, 16, &in, &border);
        printf("gradcam class 236: mean on the dog box %.3f, on the border %.3f\n", in, border);
        CHECK(in > 2 * border && in > 0.3, "gradcam misses the dog: box %.3f border %.3f", in, border);
    }
    dl_result_free(&r);
    /* After Conv_1 come a global average pool and a linear layer, so the
     * gradient is the same at every position and HiResCAM must equal
     * Grad-CAM exactly (up to float rounding); LayerCAM must not be empty. */
    {
        float *hm = NULL;
        dl_explain_options ho = {.method = DL_SALIENCY_HIRESCAM, .class_index = 236};
        CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &ho, &hm, NULL, &err) == 0, "hirescam: %s", err.message);
        if (hm && map) {
            double md = 0;
            for (int i = 0; i < W * H; i++) md = fmax(md, fabs(hm[i] - map[i]));
            printf("max |HiResCAM - Grad-CAM| = %.3g (equal for GAP + linear heads)\n", md);
            CHECK(md < 1e-4, "HiResCAM differs from Grad-CAM by %g", md);
        }
        free(hm);
    }
    free(map);

    /* DL_EXPLAIN_GATE_LAST on a 14x14 image (the grid of the finer layer, so
     * the final resize is the identity): the gated map must be the
     * normalised product of the finer layer's map and the Conv_1 map
     * upsampled to 14x14 (itself the default map of a 14x14 image). */
    {
        const char *fine = "MobilenetV2/expanded_conv_13/expand/";
        uint8_t small[14 * 14 * 3];
        for (int y = 0; y < 14; y++)
            for (int x = 0; x < 14; x++)
                memcpy(small + (y * 14 + x) * 3, img.pixels + (size_t)(y * 16 + 8) * img.stride + (x * 16 + 8) * 3, 3);
        float *mf = NULL, *mc = NULL, *mg = NULL;
        dl_explain_options fo = {.method = DL_SALIENCY_GRADCAM, .class_index = 236, .layer = fine};
        dl_explain_options co = {.method = DL_SALIENCY_GRADCAM, .class_index = 236};
        CHECK(dl_explain_rgb8_variant(m, small, 14, 14, 42, &fo, 0, &mf, NULL, &err) == 0, "fine: %s", err.message);
        CHECK(dl_explain_rgb8_variant(m, small, 14, 14, 42, &co, 0, &mc, NULL, &err) == 0, "coarse: %s", err.message);
        CHECK(dl_explain_rgb8_variant(m, small, 14, 14, 42, &fo, DL_EXPLAIN_GATE_LAST, &mg, NULL, &err) == 0,
              "gated: %s", err.message);
        if (mf && mc && mg) {
            /* maps are min-max scaled to [0, 1], the product too */
            float prod[14 * 14], lo = INFINITY, hi = -INFINITY;
            for (int i = 0; i < 196; i++) {
                prod[i] = mf[i] * mc[i];
                lo = fminf(lo, prod[i]);
                hi = fmaxf(hi, prod[i]);
            }
            double md = 0;
            int zero_ok = 1;
            for (int i = 0; i < 196; i++) {
                md = fmax(md, fabs(mg[i] - (hi > lo ? (prod[i] - lo) / (hi - lo) : 0.f)));
                if (mc[i] == 0.f && mg[i] != 0.f) zero_ok = 0;
            }
            printf("gated map vs product of the two maps: max error %.3g\n", md);
            CHECK(hi > lo && md < 1e-4, "gated map differs from the product by %g", md);
            CHECK(zero_ok, "gated map is non-zero where the Conv_1 map is zero");
        }
        free(mf);
        free(mc);
        free(mg);
        /* gating the last convolution by itself changes nothing */
        CHECK(dl_explain_rgb8_variant(m, small, 14, 14, 42, &co, DL_EXPLAIN_GATE_LAST, &mg, NULL, &err) == 0, "%s",
              err.message);
        CHECK(dl_explain_rgb8_variant(m, small, 14, 14, 42, &co, 0, &mc, NULL, &err) == 0, "%s", err.message);
        CHECK(mg && mc && memcmp(mg, mc, sizeof(float) * 196) == 0, "gating Conv_1 by itself changed the map");
        free(mg);
        free(mc);
    }

    /* DL_EXPLAIN_DIHEDRAL on the 224x224 network-size image: the map must be
     * the normalised mean of the default maps of the 8 transformed images
     * (class fixed), each mapped back to the untransformed pixels. */
    {
        dl_explain_options co = {.method = DL_SALIENCY_GRADCAM, .class_index = 236, .single_pass = 1};
        const size_t n = (size_t)W * H;
        uint8_t *ti = malloc(n * 3);
        float *acc = calloc(n, sizeof(float)), *mt = NULL, *md = NULL, *m0 = NULL;
        for (int t = 0; t < 8 && ti && acc; t++) {
            /* pixel (x, y) of transform t shows source pixel (u, v) */
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int u = (t & 4) ? y : x, v = (t & 4) ? x : y;
                    if (t & 1) u = W - 1 - u;
                    if (t & 2) v = H - 1 - v;
                    memcpy(ti + ((size_t)y * W + x) * 3, img.pixels + (size_t)v * img.stride + (size_t)u * 3, 3);
                }
            CHECK(dl_explain_rgb8(m, ti, W, H, (size_t)W * 3, &co, &mt, NULL, &err) == 0, "transform %d: %s", t,
                  err.message);
            if (!mt) break;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int u = (t & 4) ? y : x, v = (t & 4) ? x : y;
                    if (t & 1) u = W - 1 - u;
                    if (t & 2) v = H - 1 - v;
                    acc[(size_t)v * W + u] += mt[(size_t)y * W + x] / 8.f;
                }
            free(mt);
            mt = NULL;
        }
        CHECK(dl_explain_rgb8_variant(m, img.pixels, W, H, img.stride, &co, DL_EXPLAIN_DIHEDRAL, &md, NULL, &err) == 0,
              "dihedral: %s", err.message);
        float *mpub = NULL; /* the public default is this variant */
        CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &(dl_explain_options){.class_index = 236}, &mpub, NULL,
                              &err) == 0, "%s", err.message);
        CHECK(md && mpub && memcmp(md, mpub, n * sizeof(float)) == 0, "dl_explain_rgb8's default is not the flip mean");
        free(mpub);
        CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &co, &m0, NULL, &err) == 0, "%s", err.message);
        if (acc && md && m0) {
            float lo = INFINITY, hi = -INFINITY;
            for (size_t i = 0; i < n; i++) {
                lo = fminf(lo, acc[i]);
                hi = fmaxf(hi, acc[i]);
            }
            double worst = 0, moved = 0;
            for (size_t i = 0; i < n; i++) {
                worst = fmax(worst, fabs(md[i] - (acc[i] - lo) / (hi - lo)));
                moved = fmax(moved, fabs(md[i] - m0[i]));
            }
            printf("dihedral map vs mean of 8 transformed maps: max error %.3g (max change from one pass %.3f)\n",
                   worst, moved);
            CHECK(hi > lo && worst < 1e-4, "dihedral map differs from the mean of the transformed maps by %g", worst);
            CHECK(moved > 0.01, "dihedral map equals the single-pass map (max change %g)", moved);
        }
        free(ti);
        free(acc);
        free(md);
        free(m0);
    }

    /* Grad-CAM's alpha against finite differences through the tail graph */
    {
        dl_graph *g = &m->graph;
        int layer = dl_graph_last_spatial_conv(g);
        const dl_node *L = &g->nodes[layer];
        int hw = L->h * L->w, C = L->c;
        /* m->exec still holds the last Grad-CAM run (class 236) */
        float *A = malloc(sizeof(float) * hw * C), *alpha = calloc(C, sizeof(float));
        memcpy(A, m->exec.act[layer], sizeof(float) * hw * C);
        for (int i = 0; i < hw; i++)
            for (int c = 0; c < C; c++) alpha[c] += m->exec.grad[layer][(size_t)i * C + c] / hw;
        dl_graph t;
        int tout;
        dl_exec te;
        CHECK(tail_graph(g, layer, &t, &tout) == 0, "tail graph");
        if (tout >= 0 && dl_exec_init(&te, &t, 1, &err) == 0) {
            CHECK(dl_exec_forward(&te, A, -1, &err) == 0, "%s", err.message);
            CHECK(fabsf(te.act[tout][236] - m->exec.act[g->output][236]) < 1e-3f, "tail graph logit %f vs %f",
                  te.act[tout][236], m->exec.act[g->output][236]);
            /* channels: the 3 largest |alpha| and 3 fixed ones */
            int chans[6] = {0, 7, 500, 0, 0, 0};
            for (int k = 3; k < 6; k++) {
                int best = 0;
                for (int c = 0; c < C; c++) {
                    int used = 0;
                    for (int j = 3; j < k; j++) used |= chans[j] == c;
                    if (!used && fabsf(alpha[c]) > fabsf(alpha[best])) best = c;
                }
                chans[k] = best;
            }
            float *Ap = malloc(sizeof(float) * hw * C);
            double amax = 0;
            for (int c = 0; c < C; c++) amax = fmax(amax, fabsf(alpha[c]));
            const float eps = 0.05f;
            for (int k = 0; k < 6; k++) {
                int c = chans[k];
                float s[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    memcpy(Ap, A, sizeof(float) * hw * C);
                    for (int i = 0; i < hw; i++) Ap[(size_t)i * C + c] += sgn ? -eps : eps;
                    dl_exec_forward(&te, Ap, -1, &err);
                    s[sgn] = te.act[tout][236];
                }
                double fd = (s[0] - s[1]) / (2.0 * eps) / hw; /* d logit / d(uniform shift of channel c) / hw */
                double diff = fabs(fd - alpha[c]);
                printf("alpha[%4d] = % .6e  finite difference % .6e\n", c, alpha[c], fd);
                CHECK(diff <= 1e-3 * amax + 1e-2 * fabs(alpha[c]), "channel %d: alpha %g vs fd %g", c, alpha[c], fd);
            }
            /* directional derivative along A itself: sum_c alpha_c * sum_ij A_ijc */
            double dir = 0;
            for (int i = 0; i < hw; i++)
                for (int c = 0; c < C; c++) dir += alpha[c] * A[(size_t)i * C + c];
            for (size_t i = 0; i < (size_t)hw * C; i++) Ap[i] = A[i] * (1.f + eps);
            dl_exec_forward(&te, Ap, -1, &err);
            float sp = te.act[tout][236];
            for (size_t i = 0; i < (size_t)hw * C; i++) Ap[i] = A[i] * (1.f - eps);
            dl_exec_forward(&te, Ap, -1, &err);
            double fdd = (sp - te.act[tout][236]) / (2.0 * eps);
            printf("directional derivative along A: alpha.sum(A) %.5f, finite difference %.5f\n", dir, fdd);
            CHECK(fabs(dir - fdd) < 1e-2 * fabs(fdd) + 1e-3, "directional derivative %g vs %g", dir, fdd);
            free(Ap);
            dl_exec_free(&te);
        }
        dl_graph_free(&t);
        free(A);
        free(alpha);
    }

    /* every method: size, range, finiteness, not constant. The gradient
     * methods on a region given by stride (the top-left 200x150 of the
     * picture: the map has the region's size); the slow gradient-free ones
     * on the whole picture, where they must also favour the dog. */
    for (int meth = 0; meth <= DL_SALIENCY_OCCLUSION; meth++) {
        dl_explain_options mo = {.method = meth, .class_index = 236, .smooth_sigma = meth == 1 ? 2.f : 0.f};
        int slow = meth >= DL_SALIENCY_SCORECAM;
        int rw = slow ? W : 200, rh = slow ? H : 150;
        double t1 = now();
        map = NULL;
        int rc = dl_explain_rgb8(m, img.pixels, rw, rh, img.stride, &mo, &map, NULL, &err);
        double dt = now() - t1;
        CHECK(rc == 0, "%s: %s", dl_saliency_method_name(meth), err.message);
        if (rc) continue;
        printf("%-10s %6.0f ms (%dx%d)\n", dl_saliency_method_name(meth), dt * 1e3, rw, rh);
        check_map(dl_saliency_method_name(meth), map, rw, rh);
        if (slow) {
            double in, border;
            box_vs_border(map, W, H, 30, 80, 100, 200, 16, &in, &border);
            printf("%s class 236: box %.3f border %.3f\n", dl_saliency_method_name(meth), in, border);
            CHECK(in > border, "%s: box %.3f <= border %.3f", dl_saliency_method_name(meth), in, border);
        }
        free(map);
    }

    /* errors */
    dl_explain_options bad = {.method = DL_SALIENCY_GRADCAM, .class_index = -1, .layer = "no/such/layer"};
    map = NULL;
    CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &bad, &map, NULL, &err) == -1 && err.code == DL_ERR_ARG &&
              strstr(err.message, "no/such/layer"), "unknown layer: %d %s", err.code, err.message);
    CHECK(map == NULL, "map set on failure");
    bad.layer = m->graph.nodes[m->graph.features].name; /* pooled 1x1 features */
    CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &bad, &map, NULL, &err) == -1 && err.code == DL_ERR_ARG &&
              strstr(err.message, "not spatial"), "non-spatial layer: %s", err.message);
    bad.layer = NULL;
    bad.class_index = 1001;
    CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &bad, &map, NULL, &err) == -1 && err.code == DL_ERR_ARG,
          "class out of range accepted");
    bad.class_index = -1;
    bad.method = (dl_saliency_method)42;
    CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &bad, &map, NULL, &err) == -1, "method 42 accepted");
    /* an earlier layer by (prefix) name works: block 13's expansion (14x14) */
    {
        int idx = -1;
        for (int i = 0; i < m->graph.n_nodes; i++)
            if (m->graph.nodes[i].op == DL_OP_CONV2D && m->graph.nodes[i].h == 14) idx = i;
        CHECK(idx > 0, "no 14x14 conv");
        if (idx > 0) {
            dl_explain_options lo = {.method = DL_SALIENCY_GRADCAM, .class_index = 236, .layer = m->graph.nodes[idx].name};
            CHECK(dl_explain_rgb8(m, img.pixels, W, H, img.stride, &lo, &map, NULL, &err) == 0, "layer %s: %s",
                  lo.layer, err.message);
            if (map) check_map("gradcam@14x14", map, W, H);
            free(map);
            map = NULL;
        }
    }
    dl_image_free(&img);
    dl_model_free(m);
    return tu_exit();
}
