/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Metrics on small hand-computed cases (values derived by hand in comments). */
#include "dermlens_eval.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

/* 3 classes, 6 samples. Predictions (argmax, first max on ties):
 *   i0 y0 (.8 .1 .1) -> 0   i1 y0 (.6 .3 .1) -> 0   i2 y0 (.2 .7 .1) -> 1
 *   i3 y1 (.3 .6 .1) -> 1   i4 y1 (.4 .2 .4) -> 0 (tie 0/2)   i5 y2 (.1 .2 .7) -> 2
 * Confusion rows: [2 1 0] [1 1 0] [0 0 1]; accuracy 4/6.
 * precision = recall = F1 = 2/3, 1/2, 1; macro F1 = balanced acc = 13/18;
 * weighted F1 = (3*2/3 + 2*1/2 + 1)/6 = 4/6.
 * AUC c0: pos {.8 .6 .2} vs neg {.3 .4 .1}: 3+3+1 = 7/9.
 * AUC c1: pos {.6 .2} vs neg {.1 .3 .7 .2}: 3 + (1 + tie 0.5) = 4.5/8.
 * AUC c2: pos {.7} vs neg {.1 .1 .1 .1 .4}: 1.
 * ECE (15 bins): bin12 {.8 ok} .2; bin9 {.6 ok, .6 ok} .4*2; bin10 {.7 bad, .7 ok} .2*2;
 * bin6 {.4 bad} .4 -> (0.2 + 0.8 + 0.4 + 0.4)/6 = 0.3. */
static void test_small_multiclass(void)
{
    const int labels[6] = {0, 0, 0, 1, 1, 2};
    const float probs[18] = {.8f, .1f, .1f, .6f, .3f, .1f, .2f, .7f, .1f,
                             .3f, .6f, .1f, .4f, .2f, .4f, .1f, .2f, .7f};
    const char *names[3] = {"a", "b", "c"};
    dl_metrics m;
    dl_error err = {0};
    CHECK(dl_metrics_compute(6, 3, labels, probs, names, 0, 1, &m, &err) == 0, "%s", err.message);
    const int conf[9] = {2, 1, 0, 1, 1, 0, 0, 0, 1};
    for (int i = 0; i < 9; i++) CHECK(m.confusion[i] == conf[i], "confusion[%d]=%d want %d", i, m.confusion[i], conf[i]);
    CHECK(m.support[0] == 3 && m.support[1] == 2 && m.support[2] == 1, "support");
    CHECK(NEAR(m.accuracy, 4.0 / 6, 1e-12), "accuracy %g", m.accuracy);
    const double pr[3] = {2.0 / 3, 0.5, 1.0};
    for (int c = 0; c < 3; c++) {
        CHECK(NEAR(m.precision[c], pr[c], 1e-12), "precision[%d] %g", c, m.precision[c]);
        CHECK(NEAR(m.recall[c], pr[c], 1e-12), "recall[%d] %g", c, m.recall[c]);
        CHECK(NEAR(m.f1[c], pr[c], 1e-12), "f1[%d] %g", c, m.f1[c]);
    }
    CHECK(NEAR(m.macro_f1, 13.0 / 18, 1e-12), "macro f1 %g", m.macro_f1);
    CHECK(NEAR(m.balanced_accuracy, 13.0 / 18, 1e-12), "balanced %g", m.balanced_accuracy);
    CHECK(NEAR(m.weighted_f1, 4.0 / 6, 1e-12), "weighted f1 %g", m.weighted_f1);
    CHECK(NEAR(m.auc[0], 7.0 / 9, 1e-12), "auc0 %g", m.auc[0]);
    CHECK(NEAR(m.auc[1], 4.5 / 8, 1e-12), "auc1 %g", m.auc[1]);
    CHECK(NEAR(m.auc[2], 1.0, 1e-12), "auc2 %g", m.auc[2]);
    CHECK(NEAR(m.macro_auc, (7.0 / 9 + 4.5 / 8 + 1.0) / 3, 1e-12), "macro auc %g", m.macro_auc);
    CHECK(NEAR(m.ece, 0.3, 1e-6), "ece %g", m.ece);
    CHECK(m.mel_index == -1 && isnan(m.mel_sens_at_spec80), "no mel class");
    CHECK(isnan(m.ci_accuracy[0]) && isnan(m.ci_macro_auc[1]), "no bootstrap -> NAN intervals");
    dl_metrics_free(&m);

    int pred[6] = {0, 0, 1, 1, 0, 2};
    CHECK(NEAR(dl_balanced_accuracy(6, 3, labels, pred), 13.0 / 18, 1e-12), "dl_balanced_accuracy");

    int cnt[15];
    double mc[15], acc[15], ece;
    CHECK(dl_reliability_bins(6, 3, labels, probs, 15, cnt, mc, acc, &ece) == 0, "bins");
    CHECK(cnt[12] == 1 && cnt[9] == 2 && cnt[10] == 2 && cnt[6] == 1 && cnt[0] == 0, "bin counts");
    CHECK(NEAR(acc[10], 0.5, 1e-12) && NEAR(mc[9], 0.6, 1e-6) && isnan(mc[0]), "bin means");
    CHECK(NEAR(ece, 0.3, 1e-6), "ece %g", ece);
}

/* Melanoma vs nevus, mel scores: positives {.9 .8 .55 .3 .2}, negatives
 * {.85 .5 .4 .1 .05}. Descending thresholds: .9 (sens .2, spec 1), .85 (.2, .8),
 * .8 (.4, .8), .55 (.6, .8), .5 (.6, .6) ... -> sens@spec80 = .6, sens@spec90 = .2.
 * AUC = (5 + 4 + 4 + 2 + 2)/25 = 0.68. */
static void test_melanoma(void)
{
    const float s[10] = {.9f, .8f, .55f, .3f, .2f, .85f, .5f, .4f, .1f, .05f};
    int labels[10], pos[10];
    float probs[20];
    for (int i = 0; i < 10; i++) {
        labels[i] = i < 5 ? 1 : 0;
        pos[i] = labels[i];
        probs[2 * i] = 1 - s[i];
        probs[2 * i + 1] = s[i];
    }
    const char *names[2] = {"nv", "mel"};
    dl_metrics m;
    dl_error err = {0};
    CHECK(dl_metrics_compute(10, 2, labels, probs, names, 0, 0, &m, &err) == 0, "%s", err.message);
    CHECK(m.mel_index == 1, "mel index %d", m.mel_index);
    CHECK(NEAR(m.auc[1], 0.68, 1e-12), "mel auc %g", m.auc[1]);
    CHECK(NEAR(m.auc[0], 0.68, 1e-6), "nv auc (complement scores) %g", m.auc[0]);
    CHECK(NEAR(m.mel_sens_at_spec80, 0.6, 1e-12), "sens@spec80 %g", m.mel_sens_at_spec80);
    CHECK(NEAR(m.mel_sens_at_spec90, 0.2, 1e-12), "sens@spec90 %g", m.mel_sens_at_spec90);
    dl_metrics_free(&m);
    CHECK(NEAR(dl_auc_binary(10, s, pos), 0.68, 1e-12), "dl_auc_binary");

    double *fpr, *tpr;
    int np;
    CHECK(dl_roc_curve(10, s, pos, &fpr, &tpr, &np, &err) == 0, "%s", err.message);
    CHECK(np == 11, "roc points %d", np);
    if (np == 11) {
        CHECK(fpr[0] == 0 && tpr[0] == 0 && fpr[10] == 1 && tpr[10] == 1, "roc ends");
        CHECK(NEAR(fpr[2], 0.2, 1e-12) && NEAR(tpr[2], 0.2, 1e-12), "roc point after .85");
        for (int j = 1; j < np; j++) CHECK(fpr[j] >= fpr[j - 1] && tpr[j] >= tpr[j - 1], "monotone");
    }
    free(fpr);
    free(tpr);
    int allpos[3] = {1, 1, 1};
    CHECK(dl_roc_curve(3, s, allpos, &fpr, &tpr, &np, &err) != 0 && err.code == DL_ERR_DATA, "roc needs negatives");
    CHECK(isnan(dl_auc_binary(3, s, allpos)), "auc NAN without negatives");
}

/* AUC with ties: all scores equal -> 0.5; partial ties counted half. */
static void test_auc_ties(void)
{
    const float same[4] = {.3f, .3f, .3f, .3f};
    const int pos[4] = {1, 0, 1, 0};
    CHECK(dl_auc_binary(4, same, pos) == 0.5, "all tied -> 0.5");
    /* pos {.5 .2}, neg {.5 .1}: .5 vs .5 tie .5, .5 > .1 1, .2 > .1 1, .2 < .5 0 -> 2.5/4 */
    const float s[4] = {.5f, .5f, .2f, .1f};
    const int p2[4] = {1, 0, 1, 0};
    CHECK(dl_auc_binary(4, s, p2) == 0.625, "partial ties %g", dl_auc_binary(4, s, p2));
    const float inv[4] = {.1f, .9f, .2f, .8f};
    CHECK(dl_auc_binary(4, inv, pos) == 0.0, "inverted scores -> 0");
}

/* Perfect classifier (one-hot probabilities) and an uninformative one
 * (uniform probabilities: every score tied, argmax always class 0). */
static void test_perfect_and_random(void)
{
    enum { N = 40, K = 4 };
    int labels[N];
    float onehot[N * K], uni[N * K];
    for (int i = 0; i < N; i++) {
        labels[i] = i % K == 3 && i > 20 ? 1 : i % K; /* uneven supports: 10,15,10,5 */
        for (int c = 0; c < K; c++) {
            onehot[i * K + c] = c == labels[i];
            uni[i * K + c] = 1.0f / K;
        }
    }
    const char *names[K] = {"bcc", "mel", "nv", "df"};
    dl_metrics m;
    dl_error err = {0};
    CHECK(dl_metrics_compute(N, K, labels, onehot, names, 200, 7, &m, &err) == 0, "%s", err.message);
    CHECK(m.accuracy == 1 && m.balanced_accuracy == 1 && m.macro_f1 == 1 && m.weighted_f1 == 1, "perfect");
    CHECK(m.macro_auc == 1 && m.ece == 0, "perfect auc %g ece %g", m.macro_auc, m.ece);
    CHECK(m.mel_sens_at_spec90 == 1 && m.mel_sens_at_spec80 == 1, "perfect mel");
    CHECK(m.ci_accuracy[0] == 1 && m.ci_accuracy[1] == 1 && m.ci_macro_auc[0] == 1, "perfect CI");
    dl_metrics_free(&m);

    CHECK(dl_metrics_compute(N, K, labels, uni, names, 0, 7, &m, &err) == 0, "%s", err.message);
    int s0 = m.support[0];
    CHECK(s0 == 10 && m.support[1] == 15 && m.support[3] == 5, "supports %d %d %d", s0, m.support[1], m.support[3]);
    CHECK(NEAR(m.accuracy, (double)s0 / N, 1e-12), "uniform accuracy %g", m.accuracy);
    CHECK(NEAR(m.balanced_accuracy, 1.0 / K, 1e-12), "uniform balanced %g", m.balanced_accuracy);
    for (int c = 0; c < K; c++) CHECK(m.auc[c] == 0.5, "uniform auc[%d] %g", c, m.auc[c]);
    CHECK(m.precision[1] == 0 && m.f1[1] == 0 && m.recall[1] == 0, "never-predicted class scores 0");
    /* mel ROC: one tie group, thresholds give (0,0) and (1,1) only. */
    CHECK(m.mel_sens_at_spec80 == 0 && m.mel_sens_at_spec90 == 0, "uniform mel sens");
    /* ECE: everything in bin 3 (conf .25), accuracy 10/40 -> 0. */
    CHECK(NEAR(m.ece, 0.0, 1e-7), "uniform ece %g", m.ece);
    dl_metrics_free(&m);
}

/* Bootstrap: deterministic in the seed, bracketing the point estimate. */
static void test_bootstrap(void)
{
    enum { N = 300, K = 3 };
    int labels[N];
    float probs[N * K];
    uint64_t st = 12345;
    for (int i = 0; i < N; i++) {
        labels[i] = i % K;
        float sum = 0;
        for (int c = 0; c < K; c++) {
            float v = tu_rand(&st, 0.0f, 1.0f) + (c == labels[i] ? 0.6f : 0.0f);
            probs[i * K + c] = v;
            sum += v;
        }
        for (int c = 0; c < K; c++) probs[i * K + c] /= sum;
    }
    dl_metrics a, b, c;
    dl_error err = {0};
    CHECK(dl_metrics_compute(N, K, labels, probs, NULL, 500, 42, &a, &err) == 0, "%s", err.message);
    CHECK(dl_metrics_compute(N, K, labels, probs, NULL, 500, 42, &b, &err) == 0, "%s", err.message);
    CHECK(dl_metrics_compute(N, K, labels, probs, NULL, 500, 43, &c, &err) == 0, "%s", err.message);
    CHECK(a.ci_accuracy[0] == b.ci_accuracy[0] && a.ci_macro_auc[1] == b.ci_macro_auc[1], "same seed, same CI");
    CHECK(a.ci_accuracy[0] != c.ci_accuracy[0] || a.ci_macro_auc[0] != c.ci_macro_auc[0], "other seed differs");
    CHECK(a.ci_accuracy[0] < a.accuracy && a.accuracy < a.ci_accuracy[1], "acc CI [%g %g] around %g",
          a.ci_accuracy[0], a.ci_accuracy[1], a.accuracy);
    CHECK(a.ci_balanced_accuracy[0] < a.balanced_accuracy && a.balanced_accuracy < a.ci_balanced_accuracy[1],
          "bacc CI");
    CHECK(a.ci_macro_auc[0] < a.macro_auc && a.macro_auc < a.ci_macro_auc[1], "auc CI");
    /* Binomial SE for accuracy ~ sqrt(p(1-p)/n): the interval width should be
     * about 4 SE (2 x 1.96). */
    double se = sqrt(a.accuracy * (1 - a.accuracy) / N);
    double w = a.ci_accuracy[1] - a.ci_accuracy[0];
    CHECK(w > 3.0 * se && w < 5.0 * se, "acc CI width %g vs 4 SE %g", w, 4 * se);
    dl_metrics_free(&a);
    dl_metrics_free(&b);
    dl_metrics_free(&c);
}

/* McNemar exact: b = 1, c = 5 -> 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64. */
static void test_mcnemar(void)
{
    int a[20], b[20], ao, bo;
    for (int i = 0; i < 20; i++) a[i] = b[i] = 1;
    CHECK(dl_mcnemar_p(20, a, b, &ao, &bo) == 1.0 && ao == 0 && bo == 0, "no discordant pairs -> 1");
    b[0] = 0;              /* a only: 1 */
    for (int i = 1; i <= 5; i++) a[i] = 0; /* b only: 5 */
    a[10] = b[10] = 0;     /* both wrong: not counted */
    double p = dl_mcnemar_p(20, a, b, &ao, &bo);
    CHECK(ao == 1 && bo == 5, "discordant %d %d", ao, bo);
    CHECK(NEAR(p, 14.0 / 64, 1e-12), "p %g want 0.21875", p);
    CHECK(NEAR(dl_mcnemar_p(20, b, a, NULL, NULL), 14.0 / 64, 1e-12), "symmetric");
    /* 0 vs 10: 2 / 2^10 */
    int x[10], y[10];
    for (int i = 0; i < 10; i++) {
        x[i] = 0;
        y[i] = 1;
    }
    CHECK(NEAR(dl_mcnemar_p(10, x, y, NULL, NULL), 2.0 / 1024, 1e-14), "0 vs 10");
    /* equal split 5 vs 5 -> capped at 1 */
    for (int i = 0; i < 5; i++) {
        x[i] = 1;
        y[i] = 0;
    }
    CHECK(dl_mcnemar_p(10, x, y, NULL, NULL) == 1.0, "5 vs 5 -> 1");
}

static void test_errors(void)
{
    dl_metrics m;
    dl_error err = {0};
    const int bad[2] = {0, 3};
    const float p[4] = {.5f, .5f, .5f, .5f};
    CHECK(dl_metrics_compute(2, 2, bad, p, NULL, 0, 0, &m, &err) == -1 && err.code == DL_ERR_DATA, "label range");
    CHECK(strstr(err.message, "sample 1") != NULL, "message names the sample: %s", err.message);
    CHECK(dl_metrics_compute(0, 2, bad, p, NULL, 0, 0, &m, &err) == -1 && err.code == DL_ERR_ARG, "n = 0");
    CHECK(dl_metrics_compute(2, 2, bad, p, NULL, -1, 0, &m, &err) == -1, "negative bootstrap");
}

int main(void)
{
    test_small_multiclass();
    test_melanoma();
    test_auc_ties();
    test_perfect_and_random();
    test_bootstrap();
    test_mcnemar();
    test_errors();
    return tu_exit();
}
