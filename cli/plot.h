/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Evaluation plots drawn with cairo and written as PNG. Without cairo at
 * build time every function fails with a message (plot_available() is 0). */
#ifndef DL_PLOT_H
#define DL_PLOT_H

#include <stddef.h>

/* 1 if built with cairo. */
int plot_available(void);

/* All functions return 0 on success, -1 on failure with a message in
 * err (errlen bytes). */

/* Confusion matrix: k x k counts (row = true, column = predicted); cells are
 * shaded by the row-normalised fraction and show count and percentage. */
int plot_confusion(const char *path, int k, const char *const *names, const int *confusion,
                   const char *title, char *err, size_t errlen);

/* ROC curves: one per entry (fpr/tpr of npts[i] points); legend shows
 * labels[i]; a dashed chance diagonal is drawn. */
int plot_roc(const char *path, int n_curves, const char *const *labels, const double *const *fpr,
             const double *const *tpr, const int *npts, const char *title, char *err, size_t errlen);

/* Reliability diagram: per-bin accuracy bars against mean confidence, the
 * diagonal, and a histogram of bin counts below. Empty bins (count 0) are
 * skipped. */
int plot_reliability(const char *path, int n_bins, const int *count, const double *mean_conf,
                     const double *accuracy, double ece, const char *title, char *err, size_t errlen);

/* Line panels sharing series: y[(p * n_series + s) * n_x + x] (NAN = no
 * point). Each panel is a subplot titled panel_titles[p]; x positions are
 * 0..n_x-1 labelled with x_ticks. One legend for all panels. */
int plot_lines(const char *path, const char *title, int n_panels, const char *const *panel_titles,
               const char *xlabel, const char *ylabel, int n_series, const char *const *series_names,
               int n_x, const char *const *x_ticks, const double *y, double ymin, double ymax, char *err,
               size_t errlen);

#endif
