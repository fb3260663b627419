/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Classification metrics shared by evaluate, compare, robustness and train.
 * Probabilities are row-major n x k; labels in [0,k). */
#ifndef DL_METRICS_H
#define DL_METRICS_H

#include "dermlens.h"

typedef struct {
    int n, k;
    double accuracy, balanced_accuracy, macro_f1, weighted_f1, macro_auc, ece;
    double *precision, *recall, *f1, *auc; /* [k]; auc NAN when a class has no positives */
    int *support;                          /* [k] */
    int *confusion;                        /* [k*k], row = true class, column = predicted */
    int mel_index;                         /* index of "mel" in class_names or -1 */
    double mel_sens_at_spec80, mel_sens_at_spec90; /* NAN without a mel class */
    double ci_accuracy[2], ci_balanced_accuracy[2], ci_macro_auc[2]; /* bootstrap 95%, NAN if none */
} dl_metrics;

/* bootstrap: number of resamples (0: no intervals). Deterministic in seed. */
int dl_metrics_compute(int n, int k, const int *labels, const float *probs, const char *const *class_names,
                       int bootstrap, unsigned seed, dl_metrics *out, dl_error *err);
void dl_metrics_free(dl_metrics *m);

/* One-vs-rest ROC AUC (ties counted half); NAN if one side is empty. */
double dl_auc_binary(int n, const float *scores, const int *positive);
/* Balanced accuracy only (mean recall over classes with support). */
double dl_balanced_accuracy(int n, int k, const int *labels, const int *pred);
/* McNemar's exact (binomial) two-sided p-value on paired correctness. */
double dl_mcnemar_p(int n, const int *correct_a, const int *correct_b, int *a_only, int *b_only);

/* ROC curve of scores vs positive, threshold lowered from +inf through each
 * distinct score: (0,0) first, (1,1) last. *fpr and *tpr are malloc'd
 * (*n_points entries), caller frees. Fails without positives or negatives. */
int dl_roc_curve(int n, const float *scores, const int *positive, double **fpr, double **tpr,
                 int *n_points, dl_error *err);
/* Reliability diagram on top-class confidence: n_bins equal-width bins over
 * [0,1] (confidence 1 in the last). Any output may be NULL; empty bins get
 * NAN means. ece = sum |accuracy - confidence| * count / n. Returns 0 / -1. */
int dl_reliability_bins(int n, int k, const int *labels, const float *probs, int n_bins,
                        int *count, double *mean_conf, double *accuracy, double *ece);

#endif
