/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens compare: traditional classifiers (hand-crafted colour, texture and
 * shape features with logistic regression / random forest) trained and scored
 * on the same split as the CNN, side by side, with McNemar's paired test. */
#include "cli.h"
#include "dermlens_eval.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMP_BOOTSTRAP 500
#define CMP_SEED 20240601u

typedef struct {
    char name[64];
    const char *features; /* "colour", ..., or "CNN" */
    const char *learner;
    char learner_buf[128];
    int is_cnn;
    int ok;
    float *probs;   /* n_test x k */
    int *correct;   /* n_test */
    double train_s; /* NAN for CNN rows (trained elsewhere) */
    double test_s;
    double val_bacc; /* NAN without --val */
    double l2;       /* LR only, else NAN */
    dl_metrics m;
} cmp_row;

/* ------------------------------------------------------------ parallel feature extraction */

typedef struct {
    const dl_dataset *ds;
    const int *sel; /* n indices into ds */
    int n;
    float *feat;    /* n x DL_FEAT_DIM */
    char **errs;    /* n, malloc'd message or NULL */
    const char *stage;
    pthread_mutex_t lock;
    int next, done;
} feat_job;

static void *feat_worker(void *arg)
{
    feat_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int i = j->next < j->n ? j->next++ : -1;
        pthread_mutex_unlock(&j->lock);
        if (i < 0) break;
        dl_error e = {0};
        dl_image img = {0};
        const char *path = j->ds->paths[j->sel[i]];
        if (dl_image_load(path, &img, &e) != 0 ||
            dl_feat_extract(img.pixels, img.width, img.height, img.stride, j->feat + (size_t)i * DL_FEAT_DIM, &e) != 0)
            j->errs[i] = g_strdup_printf("%s: %s", path, e.message);
        dl_image_free(&img);
        pthread_mutex_lock(&j->lock);
        j->done++;
        if (j->done % 32 == 0 || j->done == j->n) cli_progress(NULL, (double)j->done / j->n, j->stage);
        pthread_mutex_unlock(&j->lock);
    }
    return NULL;
}

static void run_workers(void *(*fn)(void *), void *job, int threads)
{
    pthread_t *th = g_new(pthread_t, threads);
    int started = 0;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, fn, job) == 0) started++;
        else break;
    if (started == 0) fn(job);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    g_free(th);
}

/* Extract features of the selected images. Failed images are reported and
 * their index dropped from *sel (compacted, *n updated). */
static float *extract_split(const dl_dataset *ds, int *sel, int *n, int threads, const char *stage,
                            double *seconds)
{
    gint64 t0 = g_get_monotonic_time();
    feat_job j = {.ds = ds, .sel = sel, .n = *n, .stage = stage};
    j.feat = g_new0(float, (size_t)*n * DL_FEAT_DIM);
    j.errs = g_new0(char *, (size_t)*n);
    pthread_mutex_init(&j.lock, NULL);
    run_workers(feat_worker, &j, threads);
    pthread_mutex_destroy(&j.lock);
    int m = 0, bad = 0;
    for (int i = 0; i < *n; i++) {
        if (j.errs[i]) {
            if (bad++ < 5) fprintf(stderr, "dermlens compare: skipping %s\n", j.errs[i]);
            g_free(j.errs[i]);
            continue;
        }
        if (m != i) memmove(j.feat + (size_t)m * DL_FEAT_DIM, j.feat + (size_t)i * DL_FEAT_DIM, DL_FEAT_DIM * sizeof(float));
        sel[m++] = sel[i];
    }
    if (bad) fprintf(stderr, "dermlens compare: %s: %d image(s) could not be read and are left out\n", stage, bad);
    g_free(j.errs);
    *n = m;
    *seconds = (g_get_monotonic_time() - t0) / 1e6;
    return j.feat;
}

/* ------------------------------------------------------------ CNN scoring */

typedef struct {
    const char *model_path;
    const dl_dataset *ds;
    const int *sel;
    int n, k;
    const int *map; /* dataset class -> model class */
    float *probs;   /* n x k */
    const char *stage;
    pthread_mutex_t lock;
    int next, done, failures;
    char first_error[600];
} cnn_job;

static void *cnn_worker(void *arg)
{
    cnn_job *j = arg;
    dl_error e = {0};
    /* One model per thread: a dl_model holds its own workspace. */
    dl_model *m = dl_model_load(j->model_path, &e);
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int i = j->next < j->n ? j->next++ : -1;
        pthread_mutex_unlock(&j->lock);
        if (i < 0) break;
        float *p = j->probs + (size_t)i * j->k;
        dl_image img = {0};
        dl_result r = {0};
        int rc = -1;
        if (m && dl_image_load(j->ds->paths[j->sel[i]], &img, &e) == 0 &&
            dl_classify_rgb8(m, img.pixels, img.width, img.height, img.stride, NULL, &r, &e) == 0) {
            /* Renormalise over the dataset's classes (the model may know more). */
            double s = 0;
            for (int c = 0; c < j->k; c++) s += r.probs[j->map[c]];
            for (int c = 0; c < j->k; c++) p[c] = s > 0 ? (float)(r.probs[j->map[c]] / s) : 1.0f / j->k;
            rc = 0;
        }
        dl_result_free(&r);
        dl_image_free(&img);
        pthread_mutex_lock(&j->lock);
        if (rc != 0) {
            for (int c = 0; c < j->k; c++) p[c] = 1.0f / j->k;
            if (j->failures++ == 0)
                snprintf(j->first_error, sizeof j->first_error, "%s: %s", j->ds->paths[j->sel[i]], e.message);
        }
        j->done++;
        if (j->done % 16 == 0 || j->done == j->n) cli_progress(NULL, (double)j->done / j->n, j->stage);
        pthread_mutex_unlock(&j->lock);
    }
    dl_model_free(m);
    return NULL;
}

/* Load a model once to match its classes to the dataset's by name (before
 * any long work). Fills map[k] (dataset class -> model class) and the model's
 * name. Prints a clear error and returns -1 on a mismatch. */
static int cnn_check(const char *path, const dl_dataset *ds, int **map_out, char *name, size_t name_sz)
{
    dl_model *m = cli_load_model(path);
    if (!m) return -1;
    int k = ds->n_classes, nm = dl_model_num_classes(m);
    int *map = g_new(int, k);
    for (int c = 0; c < k; c++) {
        map[c] = -1;
        for (int q = 0; q < nm; q++)
            if (!strcmp(dl_model_class_name(m, q), ds->class_names[c])) map[c] = q;
        if (map[c] < 0) {
            fprintf(stderr, "dermlens compare: %s: the model has no class '%s' (its %d classes:", path,
                    ds->class_names[c], nm);
            for (int q = 0; q < nm && q < 12; q++) fprintf(stderr, " %s", dl_model_class_name(m, q));
            fprintf(stderr, "%s)\n", nm > 12 ? " ..." : "");
            g_free(map);
            dl_model_free(m);
            return -1;
        }
    }
    snprintf(name, name_sz, "%s", dl_model_name(m));
    dl_model_free(m);
    *map_out = map;
    return 0;
}

/* Score a CNN model file on the test images. Returns 0 and fills row->probs. */
static int cnn_row(cmp_row *row, const char *path, const char *label, const int *map, const char *model_name,
                   const dl_dataset *ds, const int *sel, int n, int threads)
{
    int k = ds->n_classes;
    snprintf(row->name, sizeof row->name, "%s", label);
    snprintf(row->learner_buf, sizeof row->learner_buf, "%s", model_name);
    row->features = "CNN";
    row->learner = row->learner_buf;
    row->is_cnn = 1;
    row->train_s = NAN;
    row->val_bacc = NAN;
    row->l2 = NAN;
    row->probs = g_new0(float, (size_t)n * k);
    cnn_job j = {.model_path = path, .ds = ds, .sel = sel, .n = n, .k = k, .map = map, .probs = row->probs,
                 .stage = "CNN"};
    pthread_mutex_init(&j.lock, NULL);
    /* Parallel over images with one BLAS thread each. */
    int saved = dl_get_num_threads();
    dl_set_num_threads(1);
    gint64 t0 = g_get_monotonic_time();
    run_workers(cnn_worker, &j, threads);
    row->test_s = (g_get_monotonic_time() - t0) / 1e6;
    dl_set_num_threads(saved);
    pthread_mutex_destroy(&j.lock);
    if (j.failures) {
        fprintf(stderr, "dermlens compare: %s: %d image(s) failed (scored as uniform), first: %s\n", label,
                j.failures, j.first_error);
        if (j.failures == n) {
            g_free(row->probs);
            row->probs = NULL;
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ traditional rows */

static float *select_cols(const float *x, int n, const int *cols, int nc)
{
    if (n <= 0 || nc <= 0) return NULL;
    float *o = g_new(float, (size_t)n * (size_t)nc);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nc; j++) o[(size_t)i * nc + j] = x[(size_t)i * DL_FEAT_DIM + cols[j]];
    return o;
}

static double bacc_of(int n, int k, const float *probs, const int *labels)
{
    int *pred = g_new(int, n);
    for (int i = 0; i < n; i++) {
        int b = 0;
        for (int c = 1; c < k; c++)
            if (probs[(size_t)i * k + c] > probs[(size_t)i * k + b]) b = c;
        pred[i] = b;
    }
    double r = dl_balanced_accuracy(n, k, labels, pred);
    g_free(pred);
    return r;
}

typedef struct {
    int n_tr, n_va, n_te, k;
    const float *xtr, *xva, *xte; /* standardised, n x DL_FEAT_DIM */
    const int *ytr, *yva;
    int threads, trees;
    unsigned seed;
} cmp_data;

static int trad_row(cmp_row *row, const cmp_data *D, unsigned groups, const char *gname, int use_rf)
{
    int cols[DL_FEAT_DIM], d = dl_feat_columns(groups, cols), k = D->k;
    snprintf(row->name, sizeof row->name, "%s + %s", gname, use_rf ? "RF" : "LR");
    row->features = gname;
    row->learner = use_rf ? "random forest" : "logistic regression";
    row->val_bacc = NAN;
    row->l2 = NAN;
    float *xtr = select_cols(D->xtr, D->n_tr, cols, d), *xte = select_cols(D->xte, D->n_te, cols, d);
    float *xva = D->n_va ? select_cols(D->xva, D->n_va, cols, d) : NULL;
    float *pva = D->n_va ? g_new(float, (size_t)D->n_va * k) : NULL;
    row->probs = g_new(float, (size_t)D->n_te * k);
    dl_error err = {0};
    int rc = -1;
    gint64 t0, t1;
    if (use_rf) {
        dl_forest f;
        dl_forest_options fo = {D->trees, 16, 1, 0, 2, D->threads, D->seed};
        t0 = g_get_monotonic_time();
        if (dl_forest_fit(&f, D->n_tr, d, k, xtr, D->ytr, &fo, &err) == 0) {
            t1 = g_get_monotonic_time();
            row->train_s = (t1 - t0) / 1e6;
            dl_forest_predict(&f, D->n_te, xte, row->probs);
            row->test_s = (g_get_monotonic_time() - t1) / 1e6;
            if (pva) {
                dl_forest_predict(&f, D->n_va, xva, pva);
                row->val_bacc = bacc_of(D->n_va, k, pva, D->yva);
            }
            dl_forest_free(&f);
            rc = 0;
        }
    } else {
        /* L2 strength chosen on val balanced accuracy when there is a val split. */
        static const double grid[] = {1e-4, 1e-3, 1e-2, 1e-1};
        int ng = pva ? 4 : 1;
        double best = -1, best_l2 = 1e-3;
        for (int g = 0; g < ng && pva; g++) {
            dl_logreg lr;
            dl_logreg_options lo = {grid[g], 500, 1};
            if (dl_logreg_fit(&lr, D->n_tr, d, k, xtr, D->ytr, &lo, &err) != 0) goto out;
            dl_logreg_predict(&lr, D->n_va, xva, pva);
            double b = bacc_of(D->n_va, k, pva, D->yva);
            dl_logreg_free(&lr);
            if (b > best) {
                best = b;
                best_l2 = grid[g];
            }
        }
        dl_logreg lr;
        dl_logreg_options lo = {best_l2, 500, 1};
        t0 = g_get_monotonic_time();
        if (dl_logreg_fit(&lr, D->n_tr, d, k, xtr, D->ytr, &lo, &err) == 0) {
            t1 = g_get_monotonic_time();
            row->train_s = (t1 - t0) / 1e6;
            dl_logreg_predict(&lr, D->n_te, xte, row->probs);
            row->test_s = (g_get_monotonic_time() - t1) / 1e6;
            row->l2 = best_l2;
            if (pva) row->val_bacc = best;
            dl_logreg_free(&lr);
            rc = 0;
        }
    }
out:
    if (rc != 0) {
        fprintf(stderr, "dermlens compare: %s: %s\n", row->name, err.message);
        g_free(row->probs);
        row->probs = NULL;
    }
    g_free(xtr), g_free(xte), g_free(xva), g_free(pva);
    return rc;
}

/* ------------------------------------------------------------ report */

static void fmt_num(char *buf, size_t sz, double v, int digits)
{
    if (isnan(v)) snprintf(buf, sz, "n/a");
    else snprintf(buf, sz, "%.*f", digits, v);
}

static GString *markdown_table(cmp_row *rows, int nr)
{
    GString *s = g_string_new(NULL);
    g_string_append(s, "| Method | Features | Learner | Accuracy | Balanced acc. (95% CI) | Macro F1 | Macro AUC | "
                       "Melanoma recall | Train s | Test s |\n"
                       "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int r = 0; r < nr; r++) {
        if (!rows[r].ok) continue;
        const dl_metrics *m = &rows[r].m;
        char acc[32], ba[32], lo[32], hi[32], f1[32], auc[32], mel[32], tr[32], te[32];
        fmt_num(acc, sizeof acc, m->accuracy, 3);
        fmt_num(ba, sizeof ba, m->balanced_accuracy, 3);
        fmt_num(lo, sizeof lo, m->ci_balanced_accuracy[0], 3);
        fmt_num(hi, sizeof hi, m->ci_balanced_accuracy[1], 3);
        fmt_num(f1, sizeof f1, m->macro_f1, 3);
        fmt_num(auc, sizeof auc, m->macro_auc, 3);
        fmt_num(mel, sizeof mel, m->mel_index >= 0 ? m->recall[m->mel_index] : NAN, 3);
        fmt_num(tr, sizeof tr, rows[r].train_s, 1);
        fmt_num(te, sizeof te, rows[r].test_s, 2);
        g_string_append_printf(s, "| %s | %s | %s | %s | %s (%s-%s) | %s | %s | %s | %s | %s |\n", rows[r].name,
                               rows[r].features, rows[r].learner, acc, ba, lo, hi, f1, auc, mel,
                               rows[r].is_cnn ? "offline" : tr, te);
    }
    return s;
}

static cJSON *num_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

/* ------------------------------------------------------------ command */

static int open_split(const char *path, const dl_dataset *ref, dl_dataset *ds)
{
    dl_error err = {0};
    dl_dataset_options o = {0};
    if (ref) {
        o.class_order = (const char *const *)ref->class_names;
        o.n_class_order = ref->n_classes;
    }
    if (dl_dataset_open(path, &o, ds, &err) != 0) {
        fprintf(stderr, "dermlens compare: %s\n", err.message);
        return -1;
    }
    return 0;
}

int cmd_compare(int argc, char **argv)
{
    gchar *train = NULL, *test = NULL, *val = NULL, *model = NULL, *frozen = NULL, *out_dir = NULL;
    gint limit = 0, threads = 0, trees = 200, seed = 1;
    gchar *threads_arg = NULL;
    GOptionEntry entries[] = {
        {"train", 0, 0, G_OPTION_ARG_FILENAME, &train, "Training set: class-subfolder folder or CSV (required)", "DIR"},
        {"test", 0, 0, G_OPTION_ARG_FILENAME, &test, "Test set, same classes (required)", "DIR"},
        {"val", 0, 0, G_OPTION_ARG_FILENAME, &val, "Validation set: picks the LR penalty and the best traditional method", "DIR"},
        {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Fine-tuned CNN model file", "FILE"},
        {"frozen-model", 0, 0, G_OPTION_ARG_FILENAME, &frozen, "Frozen-backbone (head-only) CNN model file", "FILE"},
        {"limit-train", 0, 0, G_OPTION_ARG_INT, &limit, "Use at most N training images (seeded random subset)", "N"},
        {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir, "Folder for compare.md and compare.json (default .)", "DIR"},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Threads, 1..256 (default: all cores)", "N"},
        {"trees", 0, 0, G_OPTION_ARG_INT, &trees, "Random forest trees (default 200)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "Seed for the forest and the train subset (default 1)", "N"},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("- traditional classifiers vs the CNN on one split");
    g_option_context_set_summary(ctx,
        "Extracts hand-crafted features (colour histograms and moments; LBP and GLCM texture;\n"
        "shape and asymmetry of an Otsu lesion segmentation) from every image, trains a\n"
        "class-balanced logistic regression per feature group and a random forest on all\n"
        "features, scores them on the test set beside the CNN models given, and runs\n"
        "McNemar's exact test between the best traditional method and the best CNN.\n"
        "Writes compare.md and compare.json into --out-dir.\n\n" DL_DISCLAIMER);
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens compare: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    int trc = cli_parse_threads("compare", threads_arg, &threads);
    g_free(threads_arg);
    if (trc != 0) return 2;
    if (!train || !test) {
        fprintf(stderr, "dermlens compare: --train and --test are required (see --help)\n");
        return 2;
    }
    if (trees < 1 || trees > 100000) {
        fprintf(stderr, "dermlens compare: --trees must be in 1..100000\n");
        return 2;
    }
    if (threads > 0) cli_set_threads(threads);
    int nth = dl_get_num_threads();
    const char *odir = out_dir ? out_dir : ".";
    if (g_mkdir_with_parents(odir, 0755) != 0) {
        fprintf(stderr, "dermlens compare: cannot create %s\n", odir);
        return 1;
    }

    int rc = 1;
    dl_dataset dtr = {0}, dte = {0}, dva = {0};
    int *str = NULL, *ste = NULL, *sva = NULL, *ytr = NULL, *yte = NULL, *yva = NULL;
    int *frozen_map = NULL, *model_map = NULL;
    char frozen_name[128] = "", model_name[128] = "";
    float *ftr = NULL, *fte = NULL, *fva = NULL;
    enum { MAX_ROWS = 12 };
    cmp_row rows[MAX_ROWS];
    memset(rows, 0, sizeof rows);
    int nr = 0;
    if (open_split(train, NULL, &dtr) || open_split(test, &dtr, &dte) || (val && open_split(val, &dtr, &dva)))
        goto done;
    int k = dtr.n_classes;
    if ((frozen && cnn_check(frozen, &dte, &frozen_map, frozen_name, sizeof frozen_name) != 0) ||
        (model && cnn_check(model, &dte, &model_map, model_name, sizeof model_name) != 0))
        goto done;

    /* Seeded subset of the training images (Fisher-Yates, the engine's RNG). */
    int n_tr = dtr.n, n_te = dte.n, n_va = val ? dva.n : 0;
    str = g_new(int, n_tr);
    for (int i = 0; i < n_tr; i++) str[i] = i;
    if (limit > 0 && limit < n_tr) {
        uint64_t s = (uint64_t)seed;
        for (int i = n_tr - 1; i > 0; i--) {
            int r = (int)dl_rng_below(&s, (uint32_t)(i + 1));
            int t = str[i];
            str[i] = str[r];
            str[r] = t;
        }
        n_tr = limit;
        /* Keep file order inside the subset for readable logs. */
        int *cnt = g_new0(int, dtr.n);
        for (int i = 0; i < n_tr; i++) cnt[str[i]] = 1;
        for (int i = 0, m = 0; i < dtr.n; i++)
            if (cnt[i]) str[m++] = i;
        g_free(cnt);
    }
    ste = g_new(int, n_te);
    for (int i = 0; i < n_te; i++) ste[i] = i;
    if (n_va) {
        sva = g_new(int, n_va);
        for (int i = 0; i < n_va; i++) sva[i] = i;
    }
    printf("compare: %d classes, train %d images%s, test %d, val %d, %d threads\n", k, n_tr,
           n_tr < dtr.n ? " (subset)" : "", n_te, n_va, nth);

    double t_ftr, t_fte, t_fva = 0;
    ftr = extract_split(&dtr, str, &n_tr, nth, "features/train", &t_ftr);
    fte = extract_split(&dte, ste, &n_te, nth, "features/test", &t_fte);
    if (n_va) fva = extract_split(&dva, sva, &n_va, nth, "features/val", &t_fva);
    if (n_tr < 2 || n_te < 1) {
        fprintf(stderr, "dermlens compare: not enough readable images\n");
        goto done;
    }
    printf("features: %d per image, extracted in %.1f s (train), %.1f s (test), %.1f s (val)\n", DL_FEAT_DIM, t_ftr,
           t_fte, t_fva);
    ytr = g_new(int, n_tr);
    yte = g_new(int, n_te);
    for (int i = 0; i < n_tr; i++) ytr[i] = dtr.labels[str[i]];
    for (int i = 0; i < n_te; i++) yte[i] = dte.labels[ste[i]];
    if (n_va) {
        yva = g_new(int, n_va);
        for (int i = 0; i < n_va; i++) yva[i] = dva.labels[sva[i]];
    }
    {
        int *seen = g_new0(int, k), present = 0;
        for (int i = 0; i < n_tr; i++) seen[ytr[i]] = 1;
        for (int c = 0; c < k; c++) present += seen[c];
        g_free(seen);
        if (present < 2) {
            fprintf(stderr, "dermlens compare: the training images cover fewer than 2 classes\n");
            goto done;
        }
    }

    dl_standardizer sd;
    dl_error err = {0};
    if (dl_standardizer_fit(&sd, n_tr, DL_FEAT_DIM, ftr, &err) != 0) {
        fprintf(stderr, "dermlens compare: %s\n", err.message);
        goto done;
    }
    dl_standardizer_apply(&sd, n_tr, ftr);
    dl_standardizer_apply(&sd, n_te, fte);
    if (n_va) dl_standardizer_apply(&sd, n_va, fva);
    dl_standardizer_free(&sd);

    cmp_data D = {n_tr, n_va, n_te, k, ftr, fva, fte, ytr, yva, nth, trees, (unsigned)seed};
    static const struct {
        unsigned groups;
        const char *name;
        int rf;
    } methods[] = {{DL_FEAT_COLOR, "colour", 0}, {DL_FEAT_TEXTURE, "texture", 0}, {DL_FEAT_SHAPE, "shape", 0},
                   {DL_FEAT_ALL, "all", 0},      {DL_FEAT_ALL, "all", 1}};
    int n_methods = (int)(sizeof methods / sizeof *methods);
    for (int i = 0; i < n_methods; i++) {
        cli_progress(NULL, (double)i / n_methods, "training");
        if (trad_row(&rows[nr], &D, methods[i].groups, methods[i].name, methods[i].rf) == 0) rows[nr].ok = 1;
        nr++;
    }
    cli_progress(NULL, 1.0, "training");
    int first_cnn = nr;
    if (frozen && cnn_row(&rows[nr], frozen, "CNN frozen backbone + head", frozen_map, frozen_name, &dte, ste, n_te,
                          nth) == 0)
        rows[nr++].ok = 1;
    if (model && cnn_row(&rows[nr], model, "CNN fine-tuned", model_map, model_name, &dte, ste, n_te, nth) == 0)
        rows[nr++].ok = 1;

    for (int r = 0; r < nr; r++) {
        if (!rows[r].ok) continue;
        if (dl_metrics_compute(n_te, k, yte, rows[r].probs, (const char *const *)dte.class_names, CMP_BOOTSTRAP,
                               CMP_SEED, &rows[r].m, &err) != 0) {
            fprintf(stderr, "dermlens compare: %s: metrics: %s\n", rows[r].name, err.message);
            rows[r].ok = 0;
            continue;
        }
        rows[r].correct = g_new(int, n_te);
        for (int i = 0; i < n_te; i++) {
            const float *p = rows[r].probs + (size_t)i * k;
            int b = 0;
            for (int c = 1; c < k; c++)
                if (p[c] > p[b]) b = c;
            rows[r].correct[i] = b == yte[i];
        }
    }

    /* Best traditional: by val balanced accuracy if there is a val split (no
     * selection on test), else by test balanced accuracy. Best CNN: by test. */
    int bt = -1, bc = -1;
    for (int r = 0; r < first_cnn; r++) {
        if (!rows[r].ok) continue;
        double s = n_va ? rows[r].val_bacc : rows[r].m.balanced_accuracy;
        double sb = bt < 0 ? -1 : n_va ? rows[bt].val_bacc : rows[bt].m.balanced_accuracy;
        if (bt < 0 || s > sb) bt = r;
    }
    for (int r = first_cnn; r < nr; r++)
        if (rows[r].ok && (bc < 0 || rows[r].m.balanced_accuracy > rows[bc].m.balanced_accuracy)) bc = r;
    double p_mc = NAN;
    int a_only = 0, b_only = 0;
    GString *mc = g_string_new(NULL);
    if (bt >= 0 && bc >= 0) {
        p_mc = dl_mcnemar_p(n_te, rows[bt].correct, rows[bc].correct, &a_only, &b_only);
        g_string_printf(mc,
                        "McNemar exact test, best traditional method (%s, chosen by %s balanced accuracy) vs best "
                        "CNN (%s): %d test images right only by the traditional method, %d right only by the CNN, "
                        "p = %.3g.",
                        rows[bt].name, n_va ? "validation" : "test", rows[bc].name, a_only, b_only, p_mc);
    } else {
        g_string_printf(mc, "McNemar test not run: %s.",
                        bt < 0 ? "no traditional method finished" : "no CNN row (give --model and/or --frozen-model)");
    }

    GString *table = markdown_table(rows, nr);
    printf("\n%s\n%s\n", table->str, mc->str);

    /* ---- compare.md */
    GString *md = g_string_new("# DermLens: traditional methods vs the CNN\n\n");
    g_string_append_printf(md, "Train: `%s` (%d images%s). Test: `%s` (%d images).", train, n_tr,
                           n_tr < dtr.n ? ", seeded subset" : "", test, n_te);
    if (n_va) g_string_append_printf(md, " Validation: `%s` (%d images).", val, n_va);
    g_string_append(md, " Classes:");
    for (int c = 0; c < k; c++) g_string_append_printf(md, " %s", dtr.class_names[c]);
    g_string_append(md, ".\n\n");
    g_string_append(md, table->str);
    g_string_append_printf(md, "\n%s\n\n", mc->str);
    g_string_append_printf(md,
        "Notes:\n\n"
        "- Features (%d per image, images squashed to %dx%d): colour = RGB and HSV histograms (8 bins) and "
        "mean/std/skewness in RGB, HSV and CIE Lab (%d); texture = uniform LBP (8 neighbours, radius 1) and "
        "GLCM contrast/correlation/energy/homogeneity at 4 angles (%d); shape = area, compactness, asymmetry "
        "about both principal axes, eccentricity, border irregularity, centring, lesion colour spread and "
        "contrast, from an Otsu segmentation of the grey image (%d). Standardised with train statistics.\n"
        "- Feature extraction: %.1f s train, %.1f s test (%d threads); not included in train/test times.\n"
        "- LR: multinomial, class-balanced sample weights, L2 %s, L-BFGS. RF: %d CART trees (Gini), "
        "class-balanced bootstrap (each draw picks a class uniformly), sqrt(d) features per split, max depth 16, "
        "seed %d.\n"
        "- CNN rows: trained offline (train time not measured here); test time is inference on %d threads.\n"
        "- Balanced accuracy intervals: %d bootstrap resamples of the test set.\n\n"
        "%s\n",
        DL_FEAT_DIM, DL_FEAT_SIZE, DL_FEAT_SIZE, DL_FEAT_COLOR_DIM, DL_FEAT_TEXTURE_DIM, DL_FEAT_SHAPE_DIM, t_ftr,
        t_fte, nth, n_va ? "chosen from {1e-4, 1e-3, 1e-2, 1e-1} by validation balanced accuracy" : "1e-3",
        trees, seed, nth, CMP_BOOTSTRAP, DL_DISCLAIMER);

    /* ---- compare.json */
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "train", train);
    cJSON_AddStringToObject(root, "test", test);
    if (n_va) cJSON_AddStringToObject(root, "val", val);
    else cJSON_AddNullToObject(root, "val");
    cJSON_AddNumberToObject(root, "n_train", n_tr);
    cJSON_AddNumberToObject(root, "n_test", n_te);
    cJSON_AddNumberToObject(root, "n_val", n_va);
    cJSON *cls = cJSON_AddArrayToObject(root, "classes");
    for (int c = 0; c < k; c++) cJSON_AddItemToArray(cls, cJSON_CreateString(dtr.class_names[c]));
    cJSON_AddNumberToObject(root, "feature_dim", DL_FEAT_DIM);
    cJSON_AddNumberToObject(root, "feature_seconds_train", t_ftr);
    cJSON_AddNumberToObject(root, "feature_seconds_test", t_fte);
    cJSON_AddNumberToObject(root, "threads", nth);
    cJSON_AddNumberToObject(root, "rf_trees", trees);
    cJSON_AddNumberToObject(root, "seed", seed);
    cJSON *jr = cJSON_AddArrayToObject(root, "rows");
    for (int r = 0; r < nr; r++) {
        if (!rows[r].ok) continue;
        const dl_metrics *m = &rows[r].m;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", rows[r].name);
        cJSON_AddStringToObject(o, "features", rows[r].features);
        cJSON_AddStringToObject(o, "learner", rows[r].learner);
        cJSON_AddItemToObject(o, "accuracy", num_or_null(m->accuracy));
        cJSON_AddItemToObject(o, "balanced_accuracy", num_or_null(m->balanced_accuracy));
        cJSON *ci = cJSON_AddArrayToObject(o, "balanced_accuracy_ci95");
        cJSON_AddItemToArray(ci, num_or_null(m->ci_balanced_accuracy[0]));
        cJSON_AddItemToArray(ci, num_or_null(m->ci_balanced_accuracy[1]));
        cJSON_AddItemToObject(o, "macro_f1", num_or_null(m->macro_f1));
        cJSON_AddItemToObject(o, "macro_auc", num_or_null(m->macro_auc));
        cJSON_AddItemToObject(o, "melanoma_recall", num_or_null(m->mel_index >= 0 ? m->recall[m->mel_index] : NAN));
        cJSON_AddItemToObject(o, "train_seconds", num_or_null(rows[r].train_s));
        cJSON_AddItemToObject(o, "test_seconds", num_or_null(rows[r].test_s));
        cJSON_AddItemToObject(o, "val_balanced_accuracy", num_or_null(rows[r].val_bacc));
        cJSON_AddItemToObject(o, "l2", num_or_null(rows[r].l2));
        cJSON *pc = cJSON_AddObjectToObject(o, "per_class");
        for (int c = 0; c < k; c++) {
            cJSON *q = cJSON_AddObjectToObject(pc, dtr.class_names[c]);
            cJSON_AddItemToObject(q, "precision", num_or_null(m->precision[c]));
            cJSON_AddItemToObject(q, "recall", num_or_null(m->recall[c]));
            cJSON_AddItemToObject(q, "f1", num_or_null(m->f1[c]));
            cJSON_AddItemToObject(q, "auc", num_or_null(m->auc[c]));
            cJSON_AddNumberToObject(q, "support", m->support[c]);
        }
        cJSON_AddItemToArray(jr, o);
    }
    cJSON *jm = cJSON_AddObjectToObject(root, "mcnemar");
    if (bt >= 0 && bc >= 0) {
        cJSON_AddStringToObject(jm, "traditional", rows[bt].name);
        cJSON_AddStringToObject(jm, "cnn", rows[bc].name);
        cJSON_AddStringToObject(jm, "traditional_chosen_by", n_va ? "val balanced accuracy" : "test balanced accuracy");
        cJSON_AddNumberToObject(jm, "traditional_only_correct", a_only);
        cJSON_AddNumberToObject(jm, "cnn_only_correct", b_only);
        cJSON_AddNumberToObject(jm, "p", p_mc);
    }
    cJSON_AddStringToObject(root, "disclaimer", DL_DISCLAIMER);
    char *js = cJSON_Print(root);
    cJSON_Delete(root);

    char *md_path = g_build_filename(odir, "compare.md", NULL), *js_path = g_build_filename(odir, "compare.json", NULL);
    GError *ge = NULL;
    rc = 0;
    if (!g_file_set_contents(md_path, md->str, (gssize)md->len, &ge) ||
        !g_file_set_contents(js_path, js ? js : "{}", -1, &ge)) {
        fprintf(stderr, "dermlens compare: %s\n", ge ? ge->message : "write failed");
        g_clear_error(&ge);
        rc = 1;
    } else {
        printf("\nwrote %s and %s\n%s\n", md_path, js_path, DL_DISCLAIMER);
    }
    g_free(md_path);
    g_free(js_path);
    free(js);
    g_string_free(md, TRUE);
    g_string_free(table, TRUE);
    g_string_free(mc, TRUE);

done:
    for (int r = 0; r < nr; r++) {
        g_free(rows[r].probs);
        g_free(rows[r].correct);
        dl_metrics_free(&rows[r].m);
    }
    g_free(frozen_map), g_free(model_map);
    g_free(str), g_free(ste), g_free(sva), g_free(ytr), g_free(yte), g_free(yva);
    g_free(ftr), g_free(fte), g_free(fva);
    dl_dataset_free(&dtr);
    dl_dataset_free(&dte);
    if (val) dl_dataset_free(&dva);
    g_free(train), g_free(test), g_free(val), g_free(model), g_free(frozen), g_free(out_dir);
    return rc;
}
