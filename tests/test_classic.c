/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Traditional classifiers: feature layout, segmentation, LBP/GLCM on known
 * images, and LR / random forest accuracy and determinism on synthetic data. */
#include "dermlens_test.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S DL_FEAT_SIZE

static float gauss(uint64_t *st)
{
    return (float)dl_rng_normal(st);
}

/* Light noisy skin with a dark disc of radius r at (cx, cy). */
static void draw_disc(uint8_t *g, int w, int h, double cx, double cy, double r, uint64_t *st)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int in = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
            float v = (in ? 70.0f : 200.0f) + 8.0f * gauss(st);
            g[y * w + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

static void test_layout(void)
{
    int cols[DL_FEAT_DIM];
    CHECK(DL_FEAT_COLOR_DIM + DL_FEAT_TEXTURE_DIM + DL_FEAT_SHAPE_DIM == DL_FEAT_DIM, "dims");
    CHECK(DL_FEAT_TEXTURE_OFF == DL_FEAT_COLOR_OFF + DL_FEAT_COLOR_DIM, "texture offset");
    CHECK(DL_FEAT_SHAPE_OFF == DL_FEAT_TEXTURE_OFF + DL_FEAT_TEXTURE_DIM, "shape offset");
    CHECK(dl_feat_columns(DL_FEAT_ALL, cols) == DL_FEAT_DIM, "all");
    for (int i = 0; i < DL_FEAT_DIM; i++) CHECK(cols[i] == i, "col %d", i);
    CHECK(dl_feat_columns(DL_FEAT_COLOR, cols) == 75 && cols[74] == 74, "colour");
    CHECK(dl_feat_columns(DL_FEAT_TEXTURE, cols) == 26 && cols[0] == 75, "texture");
    CHECK(dl_feat_columns(DL_FEAT_SHAPE, cols) == 13 && cols[0] == 101 && cols[12] == 113, "shape");
    CHECK(dl_feat_columns(DL_FEAT_COLOR | DL_FEAT_SHAPE, cols) == 88 && cols[75] == 101, "colour+shape");
    CHECK(dl_feat_groups_from_name("texture") == DL_FEAT_TEXTURE && dl_feat_groups_from_name("x") == -1,
          "names");
}

static void test_extract(void)
{
    /* 200x150 (HAM10000 size) brownish lesion on pink skin with noise, and a flat image. */
    int w = 200, h = 150;
    size_t stride = (size_t)w * 3 + 5; /* odd stride on purpose */
    uint8_t *img = calloc(stride * h, 1);
    uint64_t st = 7;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = (x - 100) / 60.0, dy = (y - 75) / 30.0;
            int in = dx * dx + dy * dy < 1;
            int base[3] = {in ? 110 : 225, in ? 70 : 170, in ? 50 : 160};
            for (int c = 0; c < 3; c++) {
                float v = base[c] + 10 * gauss(&st);
                img[y * stride + 3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    float f[DL_FEAT_DIM];
    dl_error err = {0};
    CHECK(dl_feat_extract(img, w, h, stride, f, &err) == 0, "extract: %s", err.message);
    int finite = 1;
    for (int i = 0; i < DL_FEAT_DIM; i++) finite &= isfinite(f[i]);
    CHECK(finite, "non-finite feature");
    for (int c = 0; c < 6; c++) {
        double s = 0;
        for (int b = 0; b < 8; b++) s += f[DL_FEAT_COLOR_OFF + 8 * c + b];
        CHECK(fabs(s - 1) < 1e-4, "histogram %d sums to %g", c, s);
    }
    double sl = 0;
    for (int b = 0; b < DL_FEAT_LBP_BINS; b++) sl += f[DL_FEAT_TEXTURE_OFF + b];
    CHECK(fabs(sl - 1) < 1e-4, "LBP sums to %g", sl);
    /* Lesion ellipse covers pi*60*30/(200*150) = 18.85% of the picture; after
     * the squash to 128x128 its semi-axes are 38.4 and 25.6 pixels
     * (eccentricity 1 - 25.6/38.4 = 1/3); darker than the surround. */
    const float *sh = f + DL_FEAT_SHAPE_OFF;
    CHECK(fabs(sh[0] - 0.1885) < 0.01, "area fraction %g", sh[0]);
    CHECK(fabs(sh[4] - 1.0 / 3) < 0.03, "eccentricity %g", sh[4]);
    CHECK(sh[2] < 0.06 && sh[3] < 0.06, "ellipse asymmetry %g %g", sh[2], sh[3]);
    CHECK(sh[10] < -0.3 && sh[11] < -0.3, "lesion darker than skin %g %g", sh[10], sh[11]);
    /* Mean R (colour moment) near (0.1885*110 + 0.8115*225)/255. */
    double mr = (0.1885 * 110 + 0.8115 * 225) / 255;
    CHECK(fabs(f[48] - mr) < 0.03, "mean R %g vs %g", f[48], mr);

    /* Flat image: every feature still finite. */
    memset(img, 128, stride * h);
    CHECK(dl_feat_extract(img, w, h, stride, f, &err) == 0, "extract flat: %s", err.message);
    finite = 1;
    for (int i = 0; i < DL_FEAT_DIM; i++) finite &= isfinite(f[i]);
    CHECK(finite, "non-finite feature on a flat image");
    CHECK(dl_feat_extract(img, 0, h, stride, f, &err) != 0 && err.code == DL_ERR_ARG, "bad size accepted");
    CHECK(dl_feat_extract(img, w, h, 10, f, &err) != 0, "bad stride accepted");
    free(img);
}

static void test_segmentation(void)
{
    uint8_t *g = malloc(S * S), *mask = malloc(S * S);
    uint64_t st = 11;
    dl_error err = {0};
    double r = 30;
    draw_disc(g, S, S, 64, 60, r, &st);
    /* Dark vignetted corners must not win over the central lesion. */
    for (int y = 0; y < 14; y++)
        for (int x = 0; x < 14 - y; x++) g[y * S + x] = g[(S - 1 - y) * S + (S - 1 - x)] = 20;
    long a = dl_lesion_segment(g, S, S, mask, &err);
    double expect = M_PI * r * r;
    CHECK(a > 0 && fabs(a - expect) / expect < 0.05, "disc area %ld vs %.0f", a, expect);
    CHECK(mask[60 * S + 64] && !mask[0] && !mask[S * S - 1], "disc centre in, corners out");
    float sf[7];
    dl_mask_shape_features(mask, S, S, sf);
    CHECK(fabs(sf[0] - expect / (S * S)) / (expect / (S * S)) < 0.05, "area fraction %g", sf[0]);
    CHECK(fabs(sf[1] - 1) < 0.15, "disc compactness %g", sf[1]);
    CHECK(sf[2] < 0.03 && sf[3] < 0.03, "disc asymmetry %g %g", sf[2], sf[3]);
    CHECK(sf[4] < 0.05, "disc eccentricity %g", sf[4]);
    CHECK(sf[5] < 0.05, "disc irregularity %g", sf[5]);
    CHECK(sf[6] < 0.05, "disc offset %g", sf[6]);

    /* A hole inside the lesion is filled. */
    for (int y = 55; y < 65; y++)
        for (int x = 59; x < 69; x++) g[y * S + x] = 210;
    long a2 = dl_lesion_segment(g, S, S, mask, &err);
    CHECK(labs(a2 - a) < 0.02 * a, "hole filled: %ld vs %ld", a2, a);

    /* L-shape with unequal arms: asymmetric about both principal axes. */
    memset(mask, 0, S * S);
    for (int y = 20; y < 110; y++)
        for (int x = 30; x < 50; x++) mask[y * S + x] = 1;
    for (int y = 90; y < 110; y++)
        for (int x = 50; x < 80; x++) mask[y * S + x] = 1;
    dl_mask_shape_features(mask, S, S, sf);
    CHECK(sf[2] > 0.15 && sf[3] > 0.15, "L asymmetry %g %g", sf[2], sf[3]);
    CHECK(sf[1] > 1.3, "L compactness %g", sf[1]);

    /* Otsu on a two-level image splits exactly between the levels. */
    uint8_t two[100];
    for (int i = 0; i < 100; i++) two[i] = i < 30 ? 40 : 180;
    int t = dl_otsu_threshold(two, 100);
    CHECK(t >= 40 && t < 180, "otsu %d", t);
    free(g);
    free(mask);
}

static void test_texture(void)
{
    uint8_t *g = malloc(S * S);
    float lbp[DL_FEAT_LBP_BINS], gl[16];
    memset(g, 97, S * S);
    dl_lbp_hist(g, S, S, lbp);
    CHECK(lbp[DL_FEAT_LBP_FLAT_BIN] == 1.0f, "flat LBP bin %g", lbp[DL_FEAT_LBP_FLAT_BIN]);
    dl_glcm_features(g, S, S, gl);
    for (int a = 0; a < 4; a++) {
        CHECK(gl[a] == 0.0f, "constant contrast[%d] %g", a, gl[a]);
        CHECK(fabsf(gl[8 + a] - 1) < 1e-6 && fabsf(gl[12 + a] - 1) < 1e-6, "energy/homogeneity %d", a);
    }
    /* Vertical stripes 0/255 one pixel wide: horizontal neighbours differ by
     * 15 levels (contrast 225), vertical neighbours are equal (contrast 0). */
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) g[y * S + x] = (x & 1) ? 255 : 0;
    dl_glcm_features(g, S, S, gl);
    CHECK(fabsf(gl[0] - 225) < 1e-3, "stripes contrast 0deg %g", gl[0]);
    CHECK(gl[2] == 0.0f, "stripes contrast 90deg %g", gl[2]);
    CHECK(fabsf(gl[4] + 1) < 1e-5, "stripes correlation 0deg %g", gl[4]);
    /* Dark stripe pixels see all neighbours >= themselves (flat bin 8); bright
     * ones only the two vertical neighbours (4 transitions: non-uniform). */
    dl_lbp_hist(g, S, S, lbp);
    CHECK(fabsf(lbp[8] - 0.5f) < 0.01f && fabsf(lbp[9] - 0.5f) < 0.01f, "stripes LBP %g %g", lbp[8], lbp[9]);
    free(g);
}

/* Three Gaussian blobs in 6-d (2 informative directions + noise), imbalanced. */
static void make_blobs(int n, uint64_t seed, float *x, int *y)
{
    uint64_t st = seed;
    static const float mu[3][2] = {{0, 0}, {4, 0}, {0, 4}};
    for (int i = 0; i < n; i++) {
        int c = i % 10 < 6 ? 0 : i % 10 < 9 ? 1 : 2;
        y[i] = c;
        for (int j = 0; j < 6; j++) x[i * 6 + j] = 0.8f * gauss(&st) + (j < 2 ? mu[c][j] : 0);
        x[i * 6 + 5] *= 50; /* badly scaled noise column */
    }
}

static double accuracy(int n, int k, const float *p, const int *y)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int b = 0;
        for (int c = 1; c < k; c++)
            if (p[i * k + c] > p[i * k + b]) b = c;
        ok += b == y[i];
    }
    return (double)ok / n;
}

static void test_learners(void)
{
    enum { N = 600 };
    float *xtr = malloc(N * 6 * sizeof *xtr), *xte = malloc(N * 6 * sizeof *xte);
    int ytr[N], yte[N];
    float *p1 = malloc(N * 3 * sizeof *p1), *p2 = malloc(N * 3 * sizeof *p2);
    make_blobs(N, 1, xtr, ytr);
    make_blobs(N, 2, xte, yte);
    dl_error err = {0};
    dl_standardizer sd;
    CHECK(dl_standardizer_fit(&sd, N, 6, xtr, &err) == 0, "fit scaler");
    dl_standardizer_apply(&sd, N, xtr);
    dl_standardizer_apply(&sd, N, xte);
    double m5 = 0, v5 = 0;
    for (int i = 0; i < N; i++) m5 += xtr[i * 6 + 5];
    m5 /= N;
    for (int i = 0; i < N; i++) v5 += (xtr[i * 6 + 5] - m5) * (xtr[i * 6 + 5] - m5);
    CHECK(fabs(m5) < 1e-4 && fabs(v5 / N - 1) < 1e-3, "standardised mean %g var %g", m5, v5 / N);
    dl_standardizer_free(&sd);

    double w[3];
    dl_class_balanced_weights(N, 3, ytr, w);
    CHECK(fabs(w[0] - 600.0 / (3 * 360)) < 1e-9 && fabs(w[2] - 600.0 / (3 * 60)) < 1e-9, "class weights");

    dl_logreg lr1, lr2;
    dl_logreg_options lo = {1e-3, 200, 1};
    CHECK(dl_logreg_fit(&lr1, N, 6, 3, xtr, ytr, &lo, &err) == 0, "LR fit: %s", err.message);
    dl_logreg_predict(&lr1, N, xte, p1);
    double acc = accuracy(N, 3, p1, yte);
    CHECK(acc > 0.95, "LR accuracy %g", acc);
    double ps = p1[0] + p1[1] + p1[2];
    CHECK(fabs(ps - 1) < 1e-5, "LR probs sum %g", ps);
    CHECK(dl_logreg_fit(&lr2, N, 6, 3, xtr, ytr, &lo, &err) == 0, "LR refit");
    dl_logreg_predict(&lr2, N, xte, p2);
    CHECK(!memcmp(p1, p2, N * 3 * sizeof *p1), "LR not deterministic");
    printf("logistic regression accuracy %.4f\n", acc);
    dl_logreg_free(&lr1);
    dl_logreg_free(&lr2);

    dl_forest f1, f2;
    dl_forest_options fo = {60, 16, 1, 0, 1, 1, 42};
    CHECK(dl_forest_fit(&f1, N, 6, 3, xtr, ytr, &fo, &err) == 0, "RF fit: %s", err.message);
    dl_forest_predict(&f1, N, xte, p1);
    acc = accuracy(N, 3, p1, yte);
    CHECK(acc > 0.95, "RF accuracy %g", acc);
    printf("random forest accuracy %.4f\n", acc);
    fo.threads = 3; /* same seed, other thread count: identical forest */
    CHECK(dl_forest_fit(&f2, N, 6, 3, xtr, ytr, &fo, &err) == 0, "RF refit");
    dl_forest_predict(&f2, N, xte, p2);
    CHECK(!memcmp(p1, p2, N * 3 * sizeof *p1), "RF not deterministic across thread counts");
    dl_forest_free(&f2);
    fo.seed = 43;
    CHECK(dl_forest_fit(&f2, N, 6, 3, xtr, ytr, &fo, &err) == 0, "RF other seed");
    dl_forest_predict(&f2, N, xte, p2);
    CHECK(memcmp(p1, p2, N * 3 * sizeof *p1) != 0, "RF ignores its seed");
    dl_forest_free(&f1);
    dl_forest_free(&f2);

    /* Class-balanced bootstrap: also accurate, and deterministic across thread counts. */
    fo.class_balanced = 2;
    fo.threads = 1;
    CHECK(dl_forest_fit(&f1, N, 6, 3, xtr, ytr, &fo, &err) == 0, "RF balanced: %s", err.message);
    dl_forest_predict(&f1, N, xte, p1);
    acc = accuracy(N, 3, p1, yte);
    CHECK(acc > 0.95, "RF balanced-bootstrap accuracy %g", acc);
    fo.threads = 2;
    CHECK(dl_forest_fit(&f2, N, 6, 3, xtr, ytr, &fo, &err) == 0, "RF balanced refit");
    dl_forest_predict(&f2, N, xte, p2);
    CHECK(!memcmp(p1, p2, N * 3 * sizeof *p1), "balanced RF not deterministic");
    ps = p1[3] + p1[4] + p1[5];
    CHECK(fabs(ps - 1) < 1e-5, "RF probs sum %g", ps);
    dl_forest_free(&f1);
    dl_forest_free(&f2);

    /* Tiny problem (1 feature, 2 classes: fewer parameters than L-BFGS history). */
    {
        float x1[8] = {-3, -2, -1.5f, -1, 1, 1.5f, 2, 3}, p8[16];
        int y1[8] = {0, 0, 0, 0, 1, 1, 1, 1};
        CHECK(dl_logreg_fit(&lr1, 8, 1, 2, x1, y1, &lo, &err) == 0, "tiny LR: %s", err.message);
        dl_logreg_predict(&lr1, 8, x1, p8);
        CHECK(accuracy(8, 2, p8, y1) == 1.0, "tiny LR accuracy %g", accuracy(8, 2, p8, y1));
        dl_logreg_free(&lr1);
    }

    /* Bad labels are rejected with a data error. */
    ytr[5] = 3;
    CHECK(dl_logreg_fit(&lr1, N, 6, 3, xtr, ytr, &lo, &err) != 0 && err.code == DL_ERR_DATA, "bad label");
    CHECK(dl_forest_fit(&f1, N, 6, 3, xtr, ytr, &fo, &err) != 0 && err.code == DL_ERR_DATA, "bad label RF");
    free(xtr), free(xte), free(p1), free(p2);
}

int main(void)
{
    test_layout();
    test_extract();
    test_segmentation();
    test_texture();
    test_learners();
    return tu_exit();
}
