/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Classification metrics: confusion matrix, per-class precision/recall/F1,
 * one-vs-rest ROC AUC, melanoma operating points, calibration error, and
 * percentile bootstrap intervals, paired tests (t interval, Wilcoxon). Pure
 * computation: no I/O, no printing. */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

typedef struct {
    float s;
    int i;
} scored;

static int cmp_scored_asc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s < y->s) return -1;
    if (x->s > y->s) return 1;
    return (x->i > y->i) - (x->i < y->i); /* stable order for determinism */
}

/* Sort indices 0..n-1 by score ascending. NaN scores sort first (treated as
 * lowest) so a broken probability cannot crash the comparison. */
static scored *sort_scores(int n, const float *scores)
{
    scored *v = malloc((size_t)n * sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < n; i++) {
        float s = scores[i];
        v[i].s = isnan(s) ? -INFINITY : s;
        v[i].i = i;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_scored_asc);
    return v;
}

/* AUC from a score-sorted list with per-sample weights (bootstrap counts):
 * each positive-negative pair counts 1 if the positive scores higher, 1/2 on
 * a tie. Walking tie groups in ascending order keeps it O(n). */
static double auc_sorted(int n, const scored *v, const int *positive, const int *weight)
{
    double neg_below = 0, num = 0, P = 0, N = 0;
    int a = 0;
    while (a < n) {
        int b = a;
        double pg = 0, ng = 0;
        while (b < n && v[b].s == v[a].s) {
            int i = v[b].i;
            double w = weight ? weight[i] : 1.0;
            if (positive[i]) pg += w;
            else ng += w;
            b++;
        }
        num += pg * neg_below + 0.5 * pg * ng;
        neg_below += ng;
        P += pg;
        N += ng;
        a = b;
    }
    if (P <= 0 || N <= 0) return NAN;
    return num / (P * N);
}

double dl_auc_binary(int n, const float *scores, const int *positive)
{
    if (n <= 0 || !scores || !positive) return NAN;
    scored *v = sort_scores(n, scores);
    if (!v) return NAN;
    double a = auc_sorted(n, v, positive, NULL);
    free(v);
    return a;
}

static int argmax_row(const float *p, int k)
{
    int best = 0;
    for (int c = 1; c < k; c++)
        if (p[c] > p[best]) best = c; /* first maximum wins on ties */
    return best;
}

double dl_balanced_accuracy(int n, int k, const int *labels, const int *pred)
{
    if (n <= 0 || k <= 0) return NAN;
    int *sup = calloc((size_t)k, sizeof *sup), *tp = calloc((size_t)k, sizeof *tp);
    double r = NAN;
    if (sup && tp) {
        for (int i = 0; i < n; i++) {
            if (labels[i] < 0 || labels[i] >= k) continue;
            sup[labels[i]]++;
            if (pred[i] == labels[i]) tp[labels[i]]++;
        }
        double s = 0;
        int m = 0;
        for (int c = 0; c < k; c++)
            if (sup[c] > 0) {
                s += (double)tp[c] / sup[c];
                m++;
            }
        if (m > 0) r = s / m;
    }
    free(sup);
    free(tp);
    return r;
}

/* log C(n, i) via lgamma: exact enough for p-values even at n ~ 1e5. */
static double log_choose(int n, int i)
{
    return lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0);
}

double dl_mcnemar_p(int n, const int *correct_a, const int *correct_b, int *a_only, int *b_only)
{
    int b = 0, c = 0;
    for (int i = 0; i < n; i++) {
        int ca = correct_a[i] != 0, cb = correct_b[i] != 0;
        if (ca && !cb) b++;
        else if (!ca && cb) c++;
    }
    if (a_only) *a_only = b;
    if (b_only) *b_only = c;
    int m = b + c;
    if (m == 0) return 1.0;
    int lo = b < c ? b : c;
    /* Two-sided exact binomial test with p = 1/2: twice the smaller tail. */
    double tail = 0;
    double l2 = m * log(0.5);
    for (int i = 0; i <= lo; i++) tail += exp(log_choose(m, i) + l2);
    double p = 2.0 * tail;
    return p > 1.0 ? 1.0 : p;
}

/* ------------------------------------------------------------ ROC curve */

int dl_roc_curve(int n, const float *scores, const int *positive, double **fpr, double **tpr,
                 int *n_points, dl_error *err)
{
    *fpr = *tpr = NULL;
    *n_points = 0;
    if (n <= 0 || !scores || !positive) return dl_fail(err, DL_ERR_ARG, "roc: empty input");
    int P = 0;
    for (int i = 0; i < n; i++) P += positive[i] != 0;
    int N = n - P;
    if (P == 0 || N == 0) return dl_fail(err, DL_ERR_DATA, "roc: needs positives and negatives");
    scored *v = sort_scores(n, scores);
    double *f = malloc(((size_t)n + 2) * sizeof *f), *t = malloc(((size_t)n + 2) * sizeof *t);
    if (!v || !f || !t) {
        free(v);
        free(f);
        free(t);
        return dl_fail(err, DL_ERR_NOMEM, "roc: out of memory");
    }
    /* Lower the threshold from +inf through each distinct score (descending). */
    int m = 0, tp = 0, fp = 0;
    f[m] = 0;
    t[m++] = 0;
    int b = n - 1;
    while (b >= 0) {
        int a = b;
        while (a >= 0 && v[a].s == v[b].s) {
            if (positive[v[a].i]) tp++;
            else fp++;
            a--;
        }
        f[m] = (double)fp / N;
        t[m++] = (double)tp / P;
        b = a;
    }
    free(v);
    *fpr = f;
    *tpr = t;
    *n_points = m;
    return 0;
}

/* Highest sensitivity over thresholds whose specificity is >= spec (ROC
 * operating points, no interpolation between them). */
static double sens_at_spec(int m, const double *fpr, const double *tpr, double spec)
{
    double best = 0;
    for (int j = 0; j < m; j++)
        if (1.0 - fpr[j] >= spec - 1e-12 && tpr[j] > best) best = tpr[j];
    return best;
}

/* ------------------------------------------------------------ calibration */

int dl_reliability_bins(int n, int k, const int *labels, const float *probs, int n_bins,
                        int *count, double *mean_conf, double *accuracy, double *ece)
{
    if (n <= 0 || k <= 0 || n_bins <= 0) return -1;
    double *sc = calloc((size_t)n_bins, sizeof *sc), *sa = calloc((size_t)n_bins, sizeof *sa);
    int *cnt = calloc((size_t)n_bins, sizeof *cnt);
    if (!sc || !sa || !cnt) {
        free(sc);
        free(sa);
        free(cnt);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * k;
        int top = argmax_row(p, k);
        double conf = p[top];
        if (!(conf >= 0)) conf = 0;
        if (conf > 1) conf = 1;
        int bin = (int)(conf * n_bins);
        if (bin >= n_bins) bin = n_bins - 1; /* confidence 1.0 goes to the last bin */
        cnt[bin]++;
        sc[bin] += conf;
        sa[bin] += top == labels[i];
    }
    double e = 0;
    for (int b = 0; b < n_bins; b++) {
        double mc = cnt[b] ? sc[b] / cnt[b] : NAN, ma = cnt[b] ? sa[b] / cnt[b] : NAN;
        if (count) count[b] = cnt[b];
        if (mean_conf) mean_conf[b] = mc;
        if (accuracy) accuracy[b] = ma;
        if (cnt[b]) e += fabs(ma - mc) * cnt[b] / n;
    }
    if (ece) *ece = e;
    free(sc);
    free(sa);
    free(cnt);
    return 0;
}

/* ------------------------------------------------------------ bootstrap */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile with linear interpolation between order statistics (numpy's
 * default); v is sorted, NaNs already removed. */
static double percentile(const double *v, int m, double q)
{
    if (m <= 0) return NAN;
    double pos = q * (m - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < m ? lo + 1 : lo;
    double fr = pos - lo;
    return v[lo] + (v[hi] - v[lo]) * fr;
}

static void interval(double *v, int m, double out[2])
{
    int j = 0;
    for (int i = 0; i < m; i++)
        if (!isnan(v[i])) v[j++] = v[i];
    qsort(v, (size_t)j, sizeof *v, cmp_double);
    out[0] = percentile(v, j, 0.025);
    out[1] = percentile(v, j, 0.975);
}

typedef struct {
    int n, k;
    const int *labels;
    const int *pred;
    scored **sorted;  /* [k] per-class score order */
    int **pos;        /* [k] labels == c */
    int *w;           /* [n] resample counts */
    int *sup, *tp;    /* [k] */
} boot_ctx;

static void boot_one(boot_ctx *b, double *acc, double *bacc, double *mauc)
{
    int n = b->n, k = b->k;
    memset(b->sup, 0, (size_t)k * sizeof *b->sup);
    memset(b->tp, 0, (size_t)k * sizeof *b->tp);
    long correct = 0;
    for (int i = 0; i < n; i++) {
        if (!b->w[i]) continue;
        int y = b->labels[i];
        b->sup[y] += b->w[i];
        if (b->pred[i] == y) {
            b->tp[y] += b->w[i];
            correct += b->w[i];
        }
    }
    *acc = (double)correct / n;
    double s = 0;
    int m = 0;
    for (int c = 0; c < k; c++)
        if (b->sup[c] > 0) {
            s += (double)b->tp[c] / b->sup[c];
            m++;
        }
    *bacc = m ? s / m : NAN;
    s = 0;
    m = 0;
    for (int c = 0; c < k; c++) {
        if (!b->sorted[c]) continue;
        double a = auc_sorted(n, b->sorted[c], b->pos[c], b->w);
        if (!isnan(a)) {
            s += a;
            m++;
        }
    }
    *mauc = m ? s / m : NAN;
}

/* ------------------------------------------------------------ main entry */

void dl_metrics_free(dl_metrics *m)
{
    if (!m) return;
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->auc);
    free(m->support);
    free(m->confusion);
    memset(m, 0, sizeof *m);
}

int dl_metrics_compute(int n, int k, const int *labels, const float *probs, const char *const *class_names,
                       int bootstrap, unsigned seed, dl_metrics *out, dl_error *err)
{
    memset(out, 0, sizeof *out);
    out->mel_index = -1;
    if (n <= 0 || k <= 0 || !labels || !probs)
        return dl_fail(err, DL_ERR_ARG, "metrics: need n > 0 samples, k > 0 classes (got %d, %d)", n, k);
    if (k > 100000) return dl_fail(err, DL_ERR_LIMIT, "metrics: %d classes is too many", k);
    if (bootstrap < 0 || bootstrap > 1000000)
        return dl_fail(err, DL_ERR_ARG, "metrics: bootstrap count %d out of range", bootstrap);
    size_t kk;
    if (!dl_mul_size((size_t)k, (size_t)k, &kk) || !dl_mul_size((size_t)n, (size_t)k, &(size_t){0}))
        return dl_fail(err, DL_ERR_LIMIT, "metrics: size overflow");
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return dl_fail(err, DL_ERR_DATA, "metrics: label %d of sample %d outside [0,%d)", labels[i], i, k);

    int rc = -1;
    int *pred = malloc((size_t)n * sizeof *pred), *pos = malloc((size_t)n * sizeof *pos);
    float *col = malloc((size_t)n * sizeof *col);
    int *pred_count = calloc((size_t)k, sizeof *pred_count);
    out->n = n;
    out->k = k;
    out->precision = calloc((size_t)k, sizeof(double));
    out->recall = calloc((size_t)k, sizeof(double));
    out->f1 = calloc((size_t)k, sizeof(double));
    out->auc = calloc((size_t)k, sizeof(double));
    out->support = calloc((size_t)k, sizeof(int));
    out->confusion = calloc(kk, sizeof(int));
    boot_ctx bc = {0};
    double *bv[3] = {NULL, NULL, NULL};
    if (!pred || !pos || !col || !pred_count || !out->precision || !out->recall || !out->f1 || !out->auc ||
        !out->support || !out->confusion) {
        dl_fail(err, DL_ERR_NOMEM, "metrics: out of memory");
        goto done;
    }

    long correct = 0;
    for (int i = 0; i < n; i++) {
        pred[i] = argmax_row(probs + (size_t)i * k, k);
        out->confusion[(size_t)labels[i] * k + pred[i]]++;
        out->support[labels[i]]++;
        pred_count[pred[i]]++;
        correct += pred[i] == labels[i];
    }
    out->accuracy = (double)correct / n;

    /* Per class. Precision with no predictions is 0 (sklearn's
     * zero_division=0); recall without support is undefined (NAN). Macro F1
     * averages classes present in the labels or the predictions, as sklearn. */
    double f1_sum = 0, f1_w = 0, rec_sum = 0;
    int f1_m = 0, rec_m = 0;
    for (int c = 0; c < k; c++) {
        int tp = out->confusion[(size_t)c * k + c];
        double p = pred_count[c] ? (double)tp / pred_count[c] : 0.0;
        double r = out->support[c] ? (double)tp / out->support[c] : NAN;
        out->precision[c] = p;
        out->recall[c] = r;
        if (out->support[c] == 0 && pred_count[c] == 0) {
            out->f1[c] = NAN;
        } else {
            double rr = isnan(r) ? 0.0 : r;
            out->f1[c] = (p + rr) > 0 ? 2 * p * rr / (p + rr) : 0.0;
            f1_sum += out->f1[c];
            f1_m++;
            f1_w += out->f1[c] * out->support[c];
        }
        if (out->support[c] > 0) {
            rec_sum += r;
            rec_m++;
        }
    }
    out->balanced_accuracy = rec_m ? rec_sum / rec_m : NAN;
    out->macro_f1 = f1_m ? f1_sum / f1_m : NAN;
    out->weighted_f1 = f1_w / n;

    /* One-vs-rest AUC per class; macro over classes with both sides. */
    double auc_sum = 0;
    int auc_m = 0;
    for (int c = 0; c < k; c++) {
        for (int i = 0; i < n; i++) {
            col[i] = probs[(size_t)i * k + c];
            pos[i] = labels[i] == c;
        }
        out->auc[c] = dl_auc_binary(n, col, pos);
        if (!isnan(out->auc[c])) {
            auc_sum += out->auc[c];
            auc_m++;
        }
    }
    out->macro_auc = auc_m ? auc_sum / auc_m : NAN;

    /* Melanoma operating points from the mel-vs-rest ROC. */
    out->mel_sens_at_spec80 = out->mel_sens_at_spec90 = NAN;
    if (class_names)
        for (int c = 0; c < k; c++)
            if (class_names[c] && !strcmp(class_names[c], "mel")) out->mel_index = c;
    if (out->mel_index >= 0 && !isnan(out->auc[out->mel_index])) {
        int c = out->mel_index;
        for (int i = 0; i < n; i++) {
            col[i] = probs[(size_t)i * k + c];
            pos[i] = labels[i] == c;
        }
        double *fpr, *tpr;
        int m;
        if (dl_roc_curve(n, col, pos, &fpr, &tpr, &m, err) != 0) goto done;
        out->mel_sens_at_spec80 = sens_at_spec(m, fpr, tpr, 0.80);
        out->mel_sens_at_spec90 = sens_at_spec(m, fpr, tpr, 0.90);
        free(fpr);
        free(tpr);
    }

    if (dl_reliability_bins(n, k, labels, probs, 15, NULL, NULL, NULL, &out->ece) != 0) {
        dl_fail(err, DL_ERR_NOMEM, "metrics: out of memory");
        goto done;
    }

    out->ci_accuracy[0] = out->ci_accuracy[1] = NAN;
    out->ci_balanced_accuracy[0] = out->ci_balanced_accuracy[1] = NAN;
    out->ci_macro_auc[0] = out->ci_macro_auc[1] = NAN;
    if (bootstrap > 0) {
        bc.n = n;
        bc.k = k;
        bc.labels = labels;
        bc.pred = pred;
        bc.sorted = calloc((size_t)k, sizeof *bc.sorted);
        bc.pos = calloc((size_t)k, sizeof *bc.pos);
        bc.w = malloc((size_t)n * sizeof *bc.w);
        bc.sup = malloc((size_t)k * sizeof *bc.sup);
        bc.tp = malloc((size_t)k * sizeof *bc.tp);
        for (int j = 0; j < 3; j++) bv[j] = malloc((size_t)bootstrap * sizeof(double));
        if (!bc.sorted || !bc.pos || !bc.w || !bc.sup || !bc.tp || !bv[0] || !bv[1] || !bv[2]) {
            dl_fail(err, DL_ERR_NOMEM, "metrics: out of memory");
            goto done;
        }
        for (int c = 0; c < k; c++) {
            if (out->support[c] == 0 || out->support[c] == n) continue; /* AUC undefined in every resample */
            for (int i = 0; i < n; i++) col[i] = probs[(size_t)i * k + c];
            bc.sorted[c] = sort_scores(n, col);
            bc.pos[c] = malloc((size_t)n * sizeof(int));
            if (!bc.sorted[c] || !bc.pos[c]) {
                dl_fail(err, DL_ERR_NOMEM, "metrics: out of memory");
                goto done;
            }
            for (int i = 0; i < n; i++) bc.pos[c][i] = labels[i] == c;
        }
        uint64_t state = 0x5DEECE66Dull ^ (uint64_t)seed;
        for (int r = 0; r < bootstrap; r++) {
            memset(bc.w, 0, (size_t)n * sizeof *bc.w);
            for (int i = 0; i < n; i++) bc.w[dl_rng_next(&state) % (uint64_t)n]++;
            boot_one(&bc, &bv[0][r], &bv[1][r], &bv[2][r]);
        }
        interval(bv[0], bootstrap, out->ci_accuracy);
        interval(bv[1], bootstrap, out->ci_balanced_accuracy);
        interval(bv[2], bootstrap, out->ci_macro_auc);
    }
    rc = 0;

done:
    if (bc.sorted)
        for (int c = 0; c < k; c++) free(bc.sorted[c]);
    if (bc.pos)
        for (int c = 0; c < k; c++) free(bc.pos[c]);
    free(bc.sorted);
    free(bc.pos);
    free(bc.w);
    free(bc.sup);
    free(bc.tp);
    for (int j = 0; j < 3; j++) free(bv[j]);
    free(pred);
    free(pos);
    free(col);
    free(pred_count);
    if (rc != 0) dl_metrics_free(out);
    return rc;
}

/* ------------------------------------------------------------ paired statistics */

/* Student's t 97.5% quantile by the Cornish-Fisher expansion (accurate to a
 * few 1e-4 from df 3 on; no table, no incomplete beta). */
static double t975(int df)
{
    const double z = 1.959963984540054;
    if (df < 1) return NAN;
    double d = df;
    return z + (z * z * z + z) / (4 * d) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * d * d) +
           (3 * pow(z, 7) + 19 * pow(z, 5) + 17 * z * z * z - 15 * z) / (384 * d * d * d);
}

static int cmp_abs(const void *a, const void *b)
{
    double x = fabs(*(const double *)a), y = fabs(*(const double *)b);
    return x < y ? -1 : x > y;
}

dl_paired dl_paired_test(const double *d, int n)
{
    dl_paired p = {.n = n, .mean = NAN, .se = NAN, .lo = NAN, .hi = NAN, .p = NAN};
    if (n < 2) return p;
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) { s += d[i]; p.wins += d[i] < 0; }
    p.mean = s / n;
    for (int i = 0; i < n; i++) s2 += (d[i] - p.mean) * (d[i] - p.mean);
    p.se = sqrt(s2 / (n - 1) / n);
    double t = t975(n - 1);
    p.lo = p.mean - t * p.se;
    p.hi = p.mean + t * p.se;
    double *v = malloc(sizeof(double) * n);
    if (!v) return p;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (d[i] != 0) v[m++] = d[i];
    qsort(v, m, sizeof(double), cmp_abs);
    double wplus = 0, tie = 0;
    for (int i = 0; i < m;) {
        int j = i;
        while (j + 1 < m && fabs(v[j + 1]) == fabs(v[i])) j++;
        double rank = 0.5 * (i + j) + 1, t_ = j - i + 1;
        for (int k = i; k <= j; k++) if (v[k] > 0) wplus += rank;
        tie += t_ * t_ * t_ - t_;
        i = j + 1;
    }
    if (m > 0) {
        double mu = m * (m + 1) / 4.0, var = m * (m + 1) * (2.0 * m + 1) / 24.0 - tie / 48.0;
        double z = var > 0 ? (wplus - mu) / sqrt(var) : 0;
        p.p = erfc(fabs(z) / sqrt(2.0));
    }
    free(v);
    return p;
}

void dl_mean_se(const double *v, int n, double *mean, double *se)
{
    double s = 0, s2 = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) { s += v[i]; k++; }
    *mean = k ? s / k : NAN;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) s2 += (v[i] - *mean) * (v[i] - *mean);
    *se = k > 1 ? sqrt(s2 / (k - 1) / k) : NAN;
}
