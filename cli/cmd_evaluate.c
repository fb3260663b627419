/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens evaluate: score a model on a labelled image set and write
 * metrics.json, report.md, predictions.csv and PNG plots. Also holds the
 * parallel per-image runner shared with `robustness`. */
#include "cli.h"
#include "dermlens_eval.h"
#include "plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ parallel runner */

typedef struct {
    dl_model *model;
    int owned;
    cli_item_fn fn;
    void *user;
    int n;
    gint *next, *done;
    char **errors;
} worker_ctx;

static gpointer worker_main(gpointer p)
{
    worker_ctx *w = p;
    for (;;) {
        int i = g_atomic_int_add(w->next, 1);
        if (i >= w->n) break;
        dl_error err = {0};
        if (w->fn(w->user, w->model, i, &err) != 0 && w->errors)
            w->errors[i] = g_strdup(err.message[0] ? err.message : "failed");
        g_atomic_int_inc(w->done);
    }
    return NULL;
}

int cli_run_parallel(dl_model *m, const char *model_path, int n, int threads, const char *stage,
                     cli_item_fn fn, void *user, char **errors)
{
    if (threads <= 0) threads = (int)g_get_num_processors();
    if (threads > 16) threads = 16;
    if (threads > n) threads = n > 0 ? n : 1;
    /* One model (own workspace) per worker; the math inside each forward
     * then runs single-threaded, which is faster than sharing one model. */
    int prev_threads = dl_get_num_threads();
    if (threads > 1) dl_set_num_threads(1);
    worker_ctx *w = g_new0(worker_ctx, threads);
    gint next = 0, done = 0;
    int started = 0;
    GThread **tid = g_new0(GThread *, threads);
    for (int t = 0; t < threads; t++) {
        w[t] = (worker_ctx){.model = m, .fn = fn, .user = user, .n = n, .next = &next, .done = &done, .errors = errors};
        if (t > 0) {
            dl_error err = {0};
            w[t].model = dl_model_load(model_path, &err);
            if (!w[t].model) break; /* fewer workers; the work still gets done */
            w[t].owned = 1;
            /* The file may have been replaced since m was loaded: every
             * worker must run the very same model. */
            if (strcmp(dl_model_sha256(w[t].model), dl_model_sha256(m)) != 0) {
                dl_model_free(w[t].model);
                w[t].model = NULL;
                w[t].owned = 0;
                break;
            }
        }
        tid[t] = g_thread_new("dl-eval", worker_main, &w[t]);
        started++;
    }
    while (g_atomic_int_get(&done) < n) {
        cli_progress(NULL, n ? (double)g_atomic_int_get(&done) / n : 1.0, stage);
        g_usleep(150000);
    }
    cli_progress(NULL, 1.0, stage);
    for (int t = 0; t < started; t++) g_thread_join(tid[t]);
    for (int t = 0; t < threads; t++)
        if (w[t].owned) dl_model_free(w[t].model);
    g_free(w);
    g_free(tid);
    dl_set_num_threads(prev_threads);
    return 0;
}

/* ------------------------------------------------------------ helpers */

char *cli_command_line(int argc, char **argv)
{
    GString *s = g_string_new("dermlens");
    for (int i = 0; i < argc; i++) {
        gchar *q = g_shell_quote(argv[i]);
        /* keep plain words readable: quote only when needed */
        int plain = argv[i][0] != 0;
        for (const char *c = argv[i]; *c; c++)
            if (!g_ascii_isalnum(*c) && !strchr("-_./=:,+@%", *c)) plain = 0;
        g_string_append_c(s, ' ');
        g_string_append(s, plain ? argv[i] : q);
        g_free(q);
    }
    return g_string_free(s, FALSE);
}

/* Run name from the data location: ".../ham10000/test" -> "ham10000-test",
 * ".../isic2017/labels.csv --split test" -> "isic2017-test". */
static char *default_name(const char *dataset, const char *split)
{
    gchar *canon = g_canonicalize_filename(dataset, NULL);
    gchar *base = g_path_get_basename(canon), *dir = g_path_get_dirname(canon);
    gchar *parent = g_path_get_basename(dir);
    char *name;
    if (g_file_test(canon, G_FILE_TEST_IS_DIR)) name = g_strdup_printf("%s-%s", parent, base);
    else name = split ? g_strdup_printf("%s-%s", parent, split) : g_strdup(parent);
    for (char *c = name; *c; c++)
        if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_' && *c != '.') *c = '_';
    g_free(canon);
    g_free(base);
    g_free(dir);
    g_free(parent);
    return name;
}

static void fmt_num(char *buf, size_t len, double v, int digits)
{
    if (isnan(v)) snprintf(buf, len, "n/a");
    else snprintf(buf, len, "%.*f", digits, v);
}

static void fmt_ci(char *buf, size_t len, const double ci[2])
{
    if (isnan(ci[0])) snprintf(buf, len, "-");
    else snprintf(buf, len, "%.3f - %.3f", ci[0], ci[1]);
}

static cJSON *json_num(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *json_ci(const double ci[2])
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, json_num(ci[0]));
    cJSON_AddItemToArray(a, json_num(ci[1]));
    return a;
}

static int write_text(const char *dir, const char *name, const char *text)
{
    gchar *path = g_build_filename(dir, name, NULL);
    GError *ge = NULL;
    int ok = g_file_set_contents(path, text, -1, &ge);
    if (!ok) {
        fprintf(stderr, "dermlens evaluate: %s\n", ge->message);
        g_error_free(ge);
    }
    g_free(path);
    return ok ? 0 : -1;
}

static void csv_field(GString *s, const char *v)
{
    if (strpbrk(v, ",\"\n\r")) {
        g_string_append_c(s, '"');
        for (const char *c = v; *c; c++) {
            if (*c == '"') g_string_append_c(s, '"');
            g_string_append_c(s, *c);
        }
        g_string_append_c(s, '"');
    } else {
        g_string_append(s, v);
    }
}

/* ------------------------------------------------------------ evaluation */

typedef struct {
    const dl_dataset *ds;
    const int *index;  /* evaluated subset -> dataset row */
    int K;
    int tta;
    float *probs;      /* n x K */
    float *ood;        /* n */
    int *ood_flag;     /* n */
} eval_job;

static int eval_item(void *user, dl_model *m, int i, dl_error *err)
{
    eval_job *j = user;
    const char *path = j->ds->paths[j->index[i]];
    dl_image img = {0};
    dl_result r = {0};
    dl_classify_options o = {.top_k = 1, .tta = j->tta};
    int rc = dl_image_load(path, &img, err);
    if (rc == 0) rc = dl_classify_rgb8(m, img.pixels, img.width, img.height, img.stride, &o, &r, err);
    if (rc == 0) {
        memcpy(j->probs + (size_t)i * j->K, r.probs, (size_t)j->K * sizeof(float));
        j->ood[i] = r.ood_score;
        j->ood_flag[i] = r.ood_flag;
    }
    dl_result_free(&r);
    dl_image_free(&img);
    return rc;
}

/* ------------------------------------------------------------ subgroups */

static const char *const k_subgroup_cols[] = {"sex", "age", "localization", "dataset", "dx_type"};
#define N_SUBGROUP_COLS 5

/* Image id of a path: file name without the extension (g_free). */
static gchar *image_id_of(const char *path)
{
    gchar *b = g_path_get_basename(path);
    char *dot = strrchr(b, '.');
    if (dot && dot != b) *dot = 0;
    return b;
}

/* "age" values become bands so that groups are big enough to mean anything. */
static const char *age_band(const char *v)
{
    char *end = NULL;
    double a = v && *v ? g_ascii_strtod(v, &end) : NAN;
    if (!end || *end || !isfinite(a)) return "unknown";
    return a < 30 ? "0-29" : a < 45 ? "30-44" : a < 60 ? "45-59" : a < 75 ? "60-74" : "75+";
}

/* Subgroup metrics from a metadata CSV keyed by `image_id` (or by the file
 * name of `path`): for each of sex, age band, localization, dataset and
 * dx_type that it carries, per value: images, accuracy, balanced accuracy
 * over the classes present, melanoma recall and mel-vs-nv AUC. Appends a
 * report section to md and an array to json. Returns 0, or -1 with a message. */
static int subgroup_tables(const char *meta_path, const dl_dataset *ds, const int *ok_index, int n_ok, int P,
                           const char *const *cnames, const int *labels, const float *rprobs, GString *md,
                           cJSON *json)
{
    dl_csv_table t;
    dl_error err = {0};
    if (dl_csv_table_load(meta_path, &t, &err)) {
        fprintf(stderr, "dermlens evaluate: --metadata: %s\n", err.message);
        return -1;
    }
    int cid = dl_csv_table_column(&t, "image_id"), cpath = dl_csv_table_column(&t, "path");
    if (cid < 0 && cpath < 0) {
        fprintf(stderr, "dermlens evaluate: --metadata %s: needs an image_id or a path column\n", meta_path);
        dl_csv_table_free(&t);
        return -1;
    }
    GHashTable *row_of = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (int r = 0; r < t.n_rows; r++) {
        const char *key = t.cells[(size_t)r * t.n_cols + (cid >= 0 ? cid : cpath)];
        g_hash_table_insert(row_of, cid >= 0 ? g_strdup(key) : image_id_of(key), GINT_TO_POINTER(r + 1));
    }
    int *row = g_new(int, n_ok > 0 ? n_ok : 1), matched = 0;
    for (int i = 0; i < n_ok; i++) {
        gchar *id = image_id_of(ds->paths[ok_index[i]]);
        row[i] = GPOINTER_TO_INT(g_hash_table_lookup(row_of, id)) - 1;
        matched += row[i] >= 0;
        g_free(id);
    }
    int mel = -1, nv = -1;
    for (int p = 0; p < P; p++) {
        if (!strcmp(cnames[p], "mel")) mel = p;
        if (!strcmp(cnames[p], "nv")) nv = p;
    }
    g_string_append_printf(md, "\n## Subgroups\n\nFrom `%s` (joined by image id: %d of %d scored images found). "
                               "Balanced accuracy is the mean recall over the classes present in the group; groups "
                               "under 30 images are noisy. A teacher should read this table before trusting the "
                               "model on a patient group.\n",
                           meta_path, matched, n_ok);
    cJSON *arr = cJSON_AddArrayToObject(json, "subgroups");
    int *pred = g_new(int, n_ok > 0 ? n_ok : 1);
    for (int i = 0; i < n_ok; i++) {
        const float *q = rprobs + (size_t)i * P;
        int b = 0;
        for (int p = 1; p < P; p++)
            if (q[p] > q[b]) b = p;
        pred[i] = b;
    }
    float *sc = g_new(float, n_ok > 0 ? n_ok : 1);
    int *po = g_new(int, n_ok > 0 ? n_ok : 1);
    for (int g = 0; g < N_SUBGROUP_COLS; g++) {
        int col = dl_csv_table_column(&t, k_subgroup_cols[g]);
        if (col < 0) continue;
        bool is_age = !strcmp(k_subgroup_cols[g], "age");
        /* the values, in first-seen order (age: in band order) */
        GPtrArray *values = g_ptr_array_new_with_free_func(g_free);
        if (is_age) {
            const char *bands[] = {"0-29", "30-44", "45-59", "60-74", "75+", "unknown"};
            for (int b = 0; b < 6; b++) g_ptr_array_add(values, g_strdup(bands[b]));
        }
        for (int i = 0; i < n_ok && !is_age; i++) {
            if (row[i] < 0) continue;
            const char *v = t.cells[(size_t)row[i] * t.n_cols + col];
            bool seen = false;
            for (guint k = 0; k < values->len && !seen; k++) seen = !strcmp(values->pdata[k], v[0] ? v : "unknown");
            if (!seen && values->len < 64) g_ptr_array_add(values, g_strdup(v[0] ? v : "unknown"));
        }
        g_string_append_printf(md, "\n### %s\n\n| %s | images | accuracy | balanced accuracy | melanoma recall (n) | mel vs nv AUC |\n"
                                   "|---|---:|---:|---:|---:|---:|\n",
                               k_subgroup_cols[g], is_age ? "age band" : k_subgroup_cols[g]);
        for (guint k = 0; k < values->len; k++) {
            const char *val = values->pdata[k];
            int n = 0, correct = 0, mp = 0, mtp = 0, nn = 0;
            int *sup = g_new0(int, P), *hit = g_new0(int, P);
            for (int i = 0; i < n_ok; i++) {
                if (row[i] < 0) continue;
                const char *v = t.cells[(size_t)row[i] * t.n_cols + col];
                const char *vv = is_age ? age_band(v) : (v[0] ? v : "unknown");
                if (strcmp(vv, val)) continue;
                n++;
                correct += pred[i] == labels[i];
                sup[labels[i]]++;
                hit[labels[i]] += pred[i] == labels[i];
                if (labels[i] == mel) { mp++; mtp += pred[i] == mel; }
                if (mel >= 0 && nv >= 0 && (labels[i] == mel || labels[i] == nv)) {
                    const float *q = rprobs + (size_t)i * P;
                    double d = (double)q[mel] + q[nv];
                    sc[nn] = d > 0 ? (float)(q[mel] / d) : 0.5f;
                    po[nn++] = labels[i] == mel;
                }
            }
            if (!n) { g_free(sup); g_free(hit); continue; }
            double bsum = 0;
            int bk = 0;
            for (int p = 0; p < P; p++)
                if (sup[p]) { bsum += (double)hit[p] / sup[p]; bk++; }
            double auc = nn ? dl_auc_binary(nn, sc, po) : NAN;
            char a1[32], a2[32], a3[32], a4[32];
            fmt_num(a1, sizeof a1, (double)correct / n, 3);
            fmt_num(a2, sizeof a2, bk ? bsum / bk : NAN, 3);
            fmt_num(a3, sizeof a3, mp ? (double)mtp / mp : NAN, 3);
            fmt_num(a4, sizeof a4, auc, 3);
            g_string_append_printf(md, "| %s | %d | %s | %s | %s (%d) | %s |\n", val, n, a1, a2, a3, mp, a4);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "column", k_subgroup_cols[g]);
            cJSON_AddStringToObject(o, "value", val);
            cJSON_AddNumberToObject(o, "images", n);
            cJSON_AddItemToObject(o, "accuracy", json_num((double)correct / n));
            cJSON_AddItemToObject(o, "balanced_accuracy", json_num(bk ? bsum / bk : NAN));
            cJSON_AddItemToObject(o, "melanoma_recall", json_num(mp ? (double)mtp / mp : NAN));
            cJSON_AddNumberToObject(o, "melanoma_images", mp);
            cJSON_AddItemToObject(o, "mel_vs_nv_auc", json_num(auc));
            cJSON_AddItemToArray(arr, o);
            g_free(sup);
            g_free(hit);
        }
        g_ptr_array_free(values, TRUE);
    }
    g_free(sc);
    g_free(po);
    g_free(pred);
    g_free(row);
    g_hash_table_destroy(row_of);
    dl_csv_table_free(&t);
    return 0;
}

int cmd_evaluate(int argc, char **argv)
{
    char *cmdline = cli_command_line(argc, argv);
    gchar *split = NULL, *label_col = NULL, *out_dir = NULL, *name = NULL, *exclude = NULL, *metadata = NULL;
    gboolean tta = FALSE;
    gint bootstrap = 1000, threads = 0, limit = 0, seed = 20240601;
    gchar *threads_arg = NULL;
    gchar **pos = NULL;
    GOptionEntry entries[] = {
        {"split", 's', 0, G_OPTION_ARG_STRING, &split, "CSV only: rows whose 'split' column equals S", "S"},
        {"label-column", 'l', 0, G_OPTION_ARG_STRING, &label_col, "CSV only: column holding the class code", "C"},
        {"tta", 0, 0, G_OPTION_ARG_NONE, &tta, "Test-time augmentation (average of 8 flips/turns)", NULL},
        {"bootstrap", 'b', 0, G_OPTION_ARG_INT, &bootstrap, "Bootstrap resamples for 95% intervals (default 1000, 0 = none)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "Bootstrap seed (default 20240601)", "N"},
        {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir, "Output folder (default ./eval-NAME)", "DIR"},
        {"name", 'n', 0, G_OPTION_ARG_STRING, &name, "Run name (default from the data path, e.g. ham10000-test)", "NAME"},
        {"limit", 0, 0, G_OPTION_ARG_INT, &limit, "Evaluate only N evenly spaced images (quick check)", "N"},
        {"exclude", 'x', 0, G_OPTION_ARG_FILENAME, &exclude, "Skip images whose id (file name without extension) is listed in FILE (one per line, or first CSV column), e.g. cross-split near-duplicates", "FILE"},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Worker threads, 1..256 (default: all cores)", "N"},
        {"metadata", 'm', 0, G_OPTION_ARG_FILENAME, &metadata, "Subgroup table from a CSV keyed by image_id (or path) with any of sex, age, localization, dataset, dx_type (e.g. HAM10000_metadata.csv); default: the DATASET CSV itself when it has such columns", "CSV"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &pos, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("MODEL DATASET - score a model on labelled images");
    g_option_context_set_summary(ctx,
        "DATASET is a folder of class subfolders (DIR/<class>/<image>) or a CSV with\n"
        "path and label columns. Data class names must be the model's class codes;\n"
        "a set with fewer classes is scored on the classes it has (probabilities\n"
        "restricted to them and renormalised). Writes metrics.json, report.md,\n"
        "predictions.csv, confusion.png, roc.png and reliability.png.\n" DL_DISCLAIMER);
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    int rc = 1;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens evaluate: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        g_free(cmdline);
        return 2;
    }
    g_option_context_free(ctx);
    if (!pos || !pos[0] || !pos[1] || pos[2]) {
        fprintf(stderr, "dermlens evaluate: need MODEL and DATASET (see --help)\n");
        g_strfreev(pos);
        g_free(cmdline);
        return 2;
    }
    if (cli_parse_threads("evaluate", threads_arg, &threads) != 0) {
        g_free(threads_arg);
        g_free(cmdline);
        return 2;
    }
    g_free(threads_arg);
    if (bootstrap < 0 || bootstrap > 100000) {
        fprintf(stderr, "dermlens evaluate: --bootstrap must be in 0..100000\n");
        g_free(cmdline);
        return 2;
    }
    const char *model_path = pos[0], *data_path = pos[1];

    dl_model *m = cli_load_model(model_path);
    dl_dataset ds = {0};
    eval_job job = {0};
    int *index = NULL, *labels = NULL, *keep_map = NULL, *ok_index = NULL;
    GString *subgroup_md = NULL;
    cJSON *subgroup_json = NULL;
    float *rprobs = NULL;
    char **errors = NULL;
    const char **cnames = NULL;
    dl_metrics met = {0};
    int have_metrics = 0;
    char *run_name = NULL;
    gchar *dir = NULL;
    int n_eval = 0;
    int *data_to_model = NULL;
    if (!m) goto out;
    int K = dl_model_num_classes(m);
    /* The data's own class list is mapped to the model's by name here
     * (rather than passing class_order) so that every unknown label can be
     * named at once and models with many classes work too. */
    dl_dataset_options dopt = {.split = split, .label_column = label_col};
    dl_error err = {0};
    if (dl_dataset_open(data_path, &dopt, &ds, &err) != 0) {
        fprintf(stderr, "dermlens evaluate: %s\n", err.message);
        goto out;
    }
    data_to_model = g_new(int, ds.n_classes);
    int unknown = 0;
    for (int d = 0; d < ds.n_classes; d++) {
        data_to_model[d] = -1;
        for (int c = 0; c < K; c++)
            if (!strcmp(ds.class_names[d], dl_model_class_name(m, c))) data_to_model[d] = c;
        if (data_to_model[d] < 0) {
            int cnt = 0;
            for (int i = 0; i < ds.n; i++) cnt += ds.labels[i] == d;
            fprintf(stderr, "dermlens evaluate: data class \"%s\" (%d images) is not a class of the model\n",
                    ds.class_names[d], cnt);
            unknown++;
        }
    }
    if (unknown) {
        fprintf(stderr, "  the model's classes are:");
        for (int c = 0; c < K && c < 30; c++) fprintf(stderr, " %s", dl_model_class_name(m, c));
        fprintf(stderr, "%s\n  (use --label-column to pick a column holding these codes, e.g. ham10000_class)\n",
                K > 30 ? " ..." : "");
        goto out;
    }

    /* Exclusions by image id, then an evenly spaced subset (so every class
     * folder is represented). */
    int *avail = g_new(int, ds.n), n_avail = 0, n_excluded = 0;
    GHashTable *ex = NULL;
    if (exclude) {
        gchar *txt = NULL;
        GError *ge = NULL;
        if (!g_file_get_contents(exclude, &txt, NULL, &ge)) {
            fprintf(stderr, "dermlens evaluate: %s\n", ge->message);
            g_error_free(ge);
            g_free(avail);
            goto out;
        }
        ex = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        gchar **lines = g_strsplit(txt, "\n", -1);
        for (int l = 0; lines[l]; l++) {
            gchar *id = g_strstrip(g_strdup(lines[l]));
            char *comma = strchr(id, ',');
            if (comma) *comma = 0;
            if (*id) g_hash_table_add(ex, id);
            else g_free(id);
        }
        g_strfreev(lines);
        g_free(txt);
    }
    for (int i = 0; i < ds.n; i++) {
        if (ex) {
            gchar *b = g_path_get_basename(ds.paths[i]);
            char *dot = strrchr(b, '.');
            if (dot) *dot = 0;
            int hit = g_hash_table_contains(ex, b);
            g_free(b);
            if (hit) {
                n_excluded++;
                continue;
            }
        }
        avail[n_avail++] = i;
    }
    if (ex) g_hash_table_destroy(ex);
    int n = n_avail;
    if (limit > 0 && limit < n) n = limit;
    n_eval = n;
    index = g_new(int, n > 0 ? n : 1);
    for (int i = 0; i < n; i++) index[i] = avail[(int64_t)i * n_avail / n];
    g_free(avail);
    if (n == 0) {
        fprintf(stderr, "dermlens evaluate: no images left after --exclude\n");
        goto out;
    }
    if (exclude) fprintf(stderr, "excluded %d images listed in %s\n", n_excluded, exclude);

    run_name = name ? g_strdup(name) : default_name(data_path, split);
    dir = out_dir ? g_strdup(out_dir) : g_strdup_printf("eval-%s", run_name);
    if (g_mkdir_with_parents(dir, 0755) != 0) {
        fprintf(stderr, "dermlens evaluate: cannot create %s\n", dir);
        goto out;
    }

    fprintf(stderr, "evaluating %s on %d images of %s%s%s%s\n", dl_model_name(m), n, data_path,
            split ? " (split " : "", split ? split : "", split ? ")" : "");
    job = (eval_job){.ds = &ds, .index = index, .K = K, .tta = tta};
    job.probs = g_new0(float, (size_t)n * K);
    job.ood = g_new0(float, n);
    job.ood_flag = g_new0(int, n);
    errors = g_new0(char *, n);
    double t0 = g_get_monotonic_time() / 1e6;
    cli_run_parallel(m, model_path, n, threads, "classify", eval_item, &job, errors);
    double secs = g_get_monotonic_time() / 1e6 - t0;

    /* Drop images that failed to decode; say which. */
    int n_ok = 0, n_failed = 0;
    for (int i = 0; i < n; i++) {
        if (errors[i]) {
            if (n_failed < 10) {
                /* decoder messages often start with the path already: say it once */
                const char *path = ds.paths[index[i]];
                if (g_str_has_prefix(errors[i], path)) fprintf(stderr, "dermlens evaluate: skipped %s\n", errors[i]);
                else fprintf(stderr, "dermlens evaluate: skipped %s: %s\n", path, errors[i]);
            }
            n_failed++;
        }
    }
    if (n_failed > 10) fprintf(stderr, "dermlens evaluate: ... %d images skipped in all\n", n_failed);

    /* Classes present in the data; restrict and renormalise if fewer. */
    int *support = g_new0(int, K);
    for (int i = 0; i < n; i++)
        if (!errors[i]) support[data_to_model[ds.labels[index[i]]]]++;
    keep_map = g_new(int, K);
    int P = 0;
    for (int c = 0; c < K; c++) keep_map[c] = support[c] > 0 ? P++ : -1;
    int *keep = g_new(int, P > 0 ? P : 1);
    for (int c = 0; c < K; c++)
        if (keep_map[c] >= 0) keep[keep_map[c]] = c;
    g_free(support);
    int restricted = P < K;
    if (P < 2) {
        fprintf(stderr, "dermlens evaluate: the data has %d class(es) the model knows; need at least 2\n", P);
        g_free(keep);
        goto out;
    }
    cnames = g_new0(const char *, P);
    for (int p = 0; p < P; p++) cnames[p] = dl_model_class_name(m, keep[p]);
    labels = g_new(int, n);
    ok_index = g_new(int, n);
    rprobs = g_new(float, (size_t)n * P);
    for (int i = 0; i < n; i++) {
        if (errors[i]) continue;
        const float *src = job.probs + (size_t)i * K;
        double s = 0;
        for (int p = 0; p < P; p++) s += src[keep[p]];
        float *dst = rprobs + (size_t)n_ok * P;
        for (int p = 0; p < P; p++) dst[p] = s > 0 ? (float)(src[keep[p]] / s) : 1.0f / P;
        ok_index[n_ok] = index[i];
        labels[n_ok++] = keep_map[data_to_model[ds.labels[index[i]]]];
    }
    if (n_ok == 0) {
        fprintf(stderr, "dermlens evaluate: no image could be classified\n");
        g_free(keep);
        goto out;
    }
    if (dl_metrics_compute(n_ok, P, labels, rprobs, cnames, bootstrap, (unsigned)seed, &met, &err) != 0) {
        fprintf(stderr, "dermlens evaluate: %s\n", err.message);
        g_free(keep);
        goto out;
    }
    have_metrics = 1;

    /* Melanoma vs nevus: the two-class question on mel and nv images only,
     * scored by p(mel) / (p(mel) + p(nv)). */
    double mel_nv_auc = NAN;
    int mel_nv_n = 0;
    {
        int im = -1, in = -1;
        for (int p = 0; p < P; p++) {
            if (!strcmp(cnames[p], "mel")) im = p;
            if (!strcmp(cnames[p], "nv")) in = p;
        }
        if (im >= 0 && in >= 0) {
            float *sc = g_new(float, n_ok);
            int *po = g_new(int, n_ok);
            for (int i = 0; i < n_ok; i++) {
                if (labels[i] != im && labels[i] != in) continue;
                const float *q = rprobs + (size_t)i * P;
                double d = (double)q[im] + q[in];
                sc[mel_nv_n] = d > 0 ? (float)(q[im] / d) : 0.5f;
                po[mel_nv_n++] = labels[i] == im;
            }
            mel_nv_auc = dl_auc_binary(mel_nv_n, sc, po);
            g_free(sc);
            g_free(po);
        }
    }
    int ood_known = 0, ood_flagged = 0;
    for (int i = 0; i < n; i++)
        if (!errors[i] && isfinite(job.ood[i])) {
            ood_known++;
            ood_flagged += job.ood_flag[i] != 0;
        }

    /* Reliability bins for the plot and the JSON. */
    enum { NB = 15 };
    int bcount[NB];
    double bconf[NB], bacc[NB], ece = NAN;
    dl_reliability_bins(n_ok, P, labels, rprobs, NB, bcount, bconf, bacc, &ece);

    char tbuf[64];
    time_t now = time(NULL);
    strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));

    /* ---------------- subgroups (metadata given, or the data CSV carries it) */
    {
        const char *meta_src = metadata;
        if (!meta_src && g_str_has_suffix(data_path, ".csv")) {
            dl_csv_table t;
            dl_error e2 = {0};
            if (dl_csv_table_load(data_path, &t, &e2) == 0) {
                for (int g = 0; g < N_SUBGROUP_COLS && !meta_src; g++)
                    if (dl_csv_table_column(&t, k_subgroup_cols[g]) >= 0) meta_src = data_path;
                dl_csv_table_free(&t);
            }
        }
        if (meta_src) {
            subgroup_md = g_string_new(NULL);
            subgroup_json = cJSON_CreateObject();
            if (subgroup_tables(meta_src, &ds, ok_index, n_ok, P, cnames, labels, rprobs, subgroup_md, subgroup_json)) {
                g_free(keep);
                goto out;
            }
        }
    }

    /* ---------------- predictions.csv (the model's own probabilities) */
    {
        GString *s = g_string_new("path,label,predicted");
        for (int c = 0; c < K; c++) {
            g_string_append_c(s, ',');
            csv_field(s, dl_model_class_name(m, c));
        }
        g_string_append(s, ",ood_score\n");
        for (int i = 0; i < n; i++) {
            if (errors[i]) continue;
            const float *q = job.probs + (size_t)i * K;
            int best = 0;
            for (int c = 1; c < K; c++)
                if (q[c] > q[best]) best = c;
            csv_field(s, ds.paths[index[i]]);
            g_string_append_c(s, ',');
            csv_field(s, ds.class_names[ds.labels[index[i]]]);
            g_string_append_c(s, ',');
            csv_field(s, dl_model_class_name(m, best));
            for (int c = 0; c < K; c++) g_string_append_printf(s, ",%.6g", q[c]);
            if (isfinite(job.ood[i])) g_string_append_printf(s, ",%.6g\n", job.ood[i]);
            else g_string_append(s, ",\n");
        }
        write_text(dir, "predictions.csv", s->str);
        g_string_free(s, TRUE);
    }

    /* ---------------- metrics.json */
    {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "name", run_name);
        cJSON_AddStringToObject(root, "generated", tbuf);
        cJSON_AddStringToObject(root, "command", cmdline);
        cJSON_AddStringToObject(root, "disclaimer", DL_DISCLAIMER);
        cJSON *mj = cJSON_AddObjectToObject(root, "model");
        cJSON_AddStringToObject(mj, "path", model_path);
        cJSON_AddStringToObject(mj, "name", dl_model_name(m));
        cJSON_AddStringToObject(mj, "sha256", dl_model_sha256(m));
        cJSON *mc = cJSON_AddArrayToObject(mj, "classes");
        for (int c = 0; c < K; c++) cJSON_AddItemToArray(mc, cJSON_CreateString(dl_model_class_name(m, c)));
        cJSON *dj = cJSON_AddObjectToObject(root, "data");
        cJSON_AddStringToObject(dj, "path", data_path);
        if (split) cJSON_AddStringToObject(dj, "split", split);
        if (label_col) cJSON_AddStringToObject(dj, "label_column", label_col);
        cJSON_AddNumberToObject(dj, "images", n);
        cJSON_AddNumberToObject(dj, "scored", n_ok);
        cJSON_AddNumberToObject(dj, "failed", n_failed);
        if (n < n_avail) cJSON_AddNumberToObject(dj, "limited_from", n_avail);
        if (exclude) {
            cJSON_AddStringToObject(dj, "exclude_list", exclude);
            cJSON_AddNumberToObject(dj, "excluded", n_excluded);
        }
        cJSON *dc = cJSON_AddArrayToObject(dj, "classes");
        for (int p = 0; p < P; p++) cJSON_AddItemToArray(dc, cJSON_CreateString(cnames[p]));
        cJSON_AddBoolToObject(root, "restricted_to_data_classes", restricted);
        cJSON_AddBoolToObject(root, "tta", tta);
        cJSON_AddNumberToObject(root, "bootstrap", bootstrap);
        cJSON_AddNumberToObject(root, "seed", seed);
        cJSON_AddNumberToObject(root, "seconds", secs);
        cJSON *r = cJSON_AddObjectToObject(root, "metrics");
        cJSON_AddItemToObject(r, "accuracy", json_num(met.accuracy));
        cJSON_AddItemToObject(r, "accuracy_ci95", json_ci(met.ci_accuracy));
        cJSON_AddItemToObject(r, "balanced_accuracy", json_num(met.balanced_accuracy));
        cJSON_AddItemToObject(r, "balanced_accuracy_ci95", json_ci(met.ci_balanced_accuracy));
        cJSON_AddItemToObject(r, "macro_auc", json_num(met.macro_auc));
        cJSON_AddItemToObject(r, "macro_auc_ci95", json_ci(met.ci_macro_auc));
        cJSON_AddItemToObject(r, "macro_f1", json_num(met.macro_f1));
        cJSON_AddItemToObject(r, "weighted_f1", json_num(met.weighted_f1));
        cJSON_AddItemToObject(r, "ece", json_num(met.ece));
        cJSON_AddItemToObject(r, "mel_sensitivity_at_spec80", json_num(met.mel_sens_at_spec80));
        cJSON_AddItemToObject(r, "mel_sensitivity_at_spec90", json_num(met.mel_sens_at_spec90));
        cJSON_AddItemToObject(r, "mel_vs_nv_auc", json_num(mel_nv_auc));
        cJSON_AddNumberToObject(r, "mel_vs_nv_images", mel_nv_n);
        if (ood_known) {
            cJSON_AddNumberToObject(r, "ood_flagged", ood_flagged);
            cJSON_AddNumberToObject(r, "ood_flagged_fraction", (double)ood_flagged / ood_known);
        }
        cJSON *pc = cJSON_AddArrayToObject(r, "per_class");
        for (int p = 0; p < P; p++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "class", cnames[p]);
            cJSON_AddStringToObject(o, "long_name", dl_model_class_long_name(m, keep[p]));
            cJSON_AddNumberToObject(o, "support", met.support[p]);
            cJSON_AddItemToObject(o, "precision", json_num(met.precision[p]));
            cJSON_AddItemToObject(o, "recall", json_num(met.recall[p]));
            cJSON_AddItemToObject(o, "f1", json_num(met.f1[p]));
            cJSON_AddItemToObject(o, "auc", json_num(met.auc[p]));
            cJSON_AddItemToArray(pc, o);
        }
        cJSON *cm = cJSON_AddArrayToObject(r, "confusion");
        for (int a = 0; a < P; a++) {
            cJSON *row = cJSON_CreateArray();
            for (int b = 0; b < P; b++) cJSON_AddItemToArray(row, cJSON_CreateNumber(met.confusion[a * P + b]));
            cJSON_AddItemToArray(cm, row);
        }
        if (subgroup_json) {
            cJSON *sg = cJSON_DetachItemFromObject(subgroup_json, "subgroups");
            if (sg) cJSON_AddItemToObject(r, "subgroups", sg);
        }
        cJSON *rel = cJSON_AddArrayToObject(r, "reliability");
        for (int b = 0; b < NB; b++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "lo", (double)b / NB);
            cJSON_AddNumberToObject(o, "hi", (double)(b + 1) / NB);
            cJSON_AddNumberToObject(o, "count", bcount[b]);
            cJSON_AddItemToObject(o, "confidence", json_num(bconf[b]));
            cJSON_AddItemToObject(o, "accuracy", json_num(bacc[b]));
            cJSON_AddItemToArray(rel, o);
        }
        char *txt = cJSON_Print(root);
        GString *s = g_string_new(txt);
        g_string_append_c(s, '\n');
        write_text(dir, "metrics.json", s->str);
        g_string_free(s, TRUE);
        free(txt);
        cJSON_Delete(root);
    }

    /* ---------------- plots */
    int plots_ok = 0;
    if (plot_available()) {
        char perr[512];
        gchar *title = g_strdup_printf("%s on %s (n=%d)%s", dl_model_name(m), run_name, n_ok, tta ? ", TTA" : "");
        gchar *p1 = g_build_filename(dir, "confusion.png", NULL);
        if (plot_confusion(p1, P, cnames, met.confusion, title, perr, sizeof perr) != 0)
            fprintf(stderr, "dermlens evaluate: %s\n", perr);
        else plots_ok++;
        g_free(p1);

        double **fpr = g_new0(double *, P + 1), **tpr = g_new0(double *, P + 1);
        int *np = g_new0(int, P + 1);
        char **leg = g_new0(char *, P + 1);
        float *col = g_new(float, n_ok);
        int *po = g_new(int, n_ok);
        int nc = 0;
        for (int p = 0; p < P; p++) {
            for (int i = 0; i < n_ok; i++) {
                col[i] = rprobs[(size_t)i * P + p];
                po[i] = labels[i] == p;
            }
            if (dl_roc_curve(n_ok, col, po, &fpr[nc], &tpr[nc], &np[nc], NULL) != 0) continue;
            leg[nc++] = g_strdup_printf("%s  AUC %.3f (n=%d)", cnames[p], met.auc[p], met.support[p]);
        }
        gchar *rtitle = g_strdup_printf("ROC one-vs-rest, macro AUC %.3f%s", met.macro_auc,
                                        isnan(met.ci_macro_auc[0]) ? "" : " (95% CI in report)");
        gchar *p2 = g_build_filename(dir, "roc.png", NULL);
        if (plot_roc(p2, nc, (const char *const *)leg, (const double *const *)fpr, (const double *const *)tpr, np,
                     rtitle, perr, sizeof perr) != 0)
            fprintf(stderr, "dermlens evaluate: %s\n", perr);
        else plots_ok++;
        for (int i = 0; i < nc; i++) {
            free(fpr[i]);
            free(tpr[i]);
            g_free(leg[i]);
        }
        g_free(fpr);
        g_free(tpr);
        g_free(np);
        g_free(leg);
        g_free(col);
        g_free(po);
        g_free(p2);
        g_free(rtitle);

        gchar *p3 = g_build_filename(dir, "reliability.png", NULL);
        gchar *ltitle = g_strdup_printf("Reliability (top-class confidence), ECE %.3f", ece);
        if (plot_reliability(p3, NB, bcount, bconf, bacc, ece, ltitle, perr, sizeof perr) != 0)
            fprintf(stderr, "dermlens evaluate: %s\n", perr);
        else plots_ok++;
        g_free(p3);
        g_free(ltitle);
        g_free(title);
    } else {
        fprintf(stderr, "dermlens evaluate: built without cairo, plots skipped\n");
    }

    /* ---------------- report.md */
    {
        GString *s = g_string_new(NULL);
        char a[64], b[64], c[64];
        g_string_append_printf(s, "# DermLens evaluation: %s\n\n> %s\n\n", run_name, DL_DISCLAIMER);
        g_string_append_printf(s, "| | |\n|---|---|\n");
        g_string_append_printf(s, "| Model | %s (`%s`) |\n", dl_model_name(m), model_path);
        g_string_append_printf(s, "| Model sha256 | `%s` |\n", dl_model_sha256(m));
        g_string_append_printf(s, "| Data | `%s`%s%s%s%s%s |\n", data_path, split ? ", split `" : "", split ? split : "",
                               split ? "`" : "", label_col ? ", labels from column `" : "", label_col ? label_col : "");
        g_string_append_printf(s, "| Images scored | %d", n_ok);
        if (n_failed) g_string_append_printf(s, " (%d could not be read and were skipped)", n_failed);
        if (n < n_avail) g_string_append_printf(s, " (evenly spaced subset of %d)", n_avail);
        if (exclude) g_string_append_printf(s, " (%d excluded as listed in `%s`)", n_excluded, exclude);
        g_string_append(s, " |\n");
        g_string_append_printf(s, "| Test-time augmentation | %s |\n", tta ? "yes (mean of 8 flips/turns)" : "no");
        if (bootstrap)
            g_string_append_printf(s, "| Intervals | percentile bootstrap, %d resamples, seed %d |\n", bootstrap, seed);
        else
            g_string_append(s, "| Intervals | none (--bootstrap 0) |\n");
        g_string_append_printf(s, "| Generated | %s, %.1f s |\n", tbuf, secs);
        g_string_append_printf(s, "| Command | `%s` |\n\n", cmdline);
        if (restricted) {
            g_string_append_printf(s, "**Scored on the %d classes present in the data** (", P);
            for (int p = 0; p < P; p++) g_string_append_printf(s, "%s%s", p ? ", " : "", cnames[p]);
            g_string_append_printf(s, ") out of the model's %d: each image's probabilities are restricted to "
                                      "these classes and renormalised to sum to 1 before any metric. "
                                      "Numbers are therefore not comparable one-to-one with a %d-class evaluation.\n\n",
                                   K, K);
        }
        g_string_append(s, "## Summary\n\n| metric | value | 95% CI |\n|---|---|---|\n");
        fmt_num(a, sizeof a, met.accuracy, 3);
        fmt_ci(b, sizeof b, met.ci_accuracy);
        g_string_append_printf(s, "| accuracy | %s | %s |\n", a, b);
        fmt_num(a, sizeof a, met.balanced_accuracy, 3);
        fmt_ci(b, sizeof b, met.ci_balanced_accuracy);
        g_string_append_printf(s, "| balanced accuracy (mean recall) | %s | %s |\n", a, b);
        fmt_num(a, sizeof a, met.macro_auc, 3);
        fmt_ci(b, sizeof b, met.ci_macro_auc);
        g_string_append_printf(s, "| macro ROC AUC (one-vs-rest) | %s | %s |\n", a, b);
        fmt_num(a, sizeof a, met.macro_f1, 3);
        g_string_append_printf(s, "| macro F1 | %s | |\n", a);
        fmt_num(a, sizeof a, met.weighted_f1, 3);
        g_string_append_printf(s, "| weighted F1 | %s | |\n", a);
        fmt_num(a, sizeof a, met.ece, 3);
        g_string_append_printf(s, "| expected calibration error (15 bins) | %s | |\n", a);
        if (met.mel_index >= 0) {
            fmt_num(a, sizeof a, met.mel_sens_at_spec80, 3);
            fmt_num(b, sizeof b, met.mel_sens_at_spec90, 3);
            g_string_append_printf(s, "| melanoma sensitivity at 80%% specificity | %s | |\n", a);
            g_string_append_printf(s, "| melanoma sensitivity at 90%% specificity | %s | |\n", b);
        }
        if (!isnan(mel_nv_auc)) {
            fmt_num(a, sizeof a, mel_nv_auc, 3);
            g_string_append_printf(s, "| melanoma vs nevus AUC (%d mel + nv images) | %s | |\n", mel_nv_n, a);
        }
        if (ood_known)
            g_string_append_printf(s, "| flagged out-of-distribution | %d of %d (%.1f%%) | |\n", ood_flagged, ood_known,
                                   100.0 * ood_flagged / ood_known);
        g_string_append(s, "\n## Per class\n\n| class | name | support | precision | recall | F1 | AUC |\n"
                           "|---|---|---:|---:|---:|---:|---:|\n");
        for (int p = 0; p < P; p++) {
            fmt_num(a, sizeof a, met.precision[p], 3);
            fmt_num(b, sizeof b, met.recall[p], 3);
            fmt_num(c, sizeof c, met.f1[p], 3);
            char d[32];
            fmt_num(d, sizeof d, met.auc[p], 3);
            g_string_append_printf(s, "| %s | %s | %d | %s | %s | %s | %s |\n", cnames[p],
                                   dl_model_class_long_name(m, keep[p]), met.support[p], a, b, c, d);
        }
        g_string_append(s, "\n## Confusion matrix\n\nRows: true class; columns: predicted class.\n\n| true \\ pred |");
        for (int p = 0; p < P; p++) g_string_append_printf(s, " %s |", cnames[p]);
        g_string_append(s, "\n|---|");
        for (int p = 0; p < P; p++) g_string_append(s, "---:|");
        g_string_append_c(s, '\n');
        for (int r = 0; r < P; r++) {
            g_string_append_printf(s, "| **%s** |", cnames[r]);
            for (int q = 0; q < P; q++) g_string_append_printf(s, " %d |", met.confusion[r * P + q]);
            g_string_append_c(s, '\n');
        }
        if (subgroup_md) g_string_append(s, subgroup_md->str);
        if (plots_ok) {
            g_string_append(s, "\n## Plots\n\n![confusion matrix](confusion.png)\n\n![ROC curves](roc.png)\n\n"
                               "![reliability diagram](reliability.png)\n");
        }
        g_string_append(s,
            "\n## Definitions\n\n"
            "- Prediction = class of highest probability. Balanced accuracy = mean per-class recall.\n"
            "- Macro F1 averages the classes present in labels or predictions; weighted F1 weights by support.\n"
            "- AUC: one class against the rest on that class's probability, ties counted half; macro = mean over "
            "classes with positives and negatives.\n"
            "- Melanoma sensitivity at a specificity: best sensitivity among the mel-vs-rest ROC operating points "
            "whose specificity is at least the target (no interpolation).\n"
            "- Melanoma vs nevus AUC: only mel and nv images, score p(mel) / (p(mel) + p(nv)).\n"
            "- ECE: 15 equal-width bins of top-class confidence; sum over bins of |accuracy - mean confidence| "
            "weighted by the bin's share of images.\n"
            "- 95% intervals: percentile bootstrap over images (not lesions: images of one lesion are resampled "
            "independently, so intervals can be slightly narrow).\n"
            "- `predictions.csv` holds every image's probabilities for all model classes (before any restriction).\n");
        g_string_append_printf(s, "\n---\n%s\n", DL_DISCLAIMER);
        write_text(dir, "report.md", s->str);
        g_string_free(s, TRUE);
    }

    /* ---------------- terminal summary */
    {
        char a[64], b[64];
        printf("%s: %d images, %d classes%s%s\n", run_name, n_ok, P, restricted ? " (restricted to the data's classes)" : "",
               tta ? ", TTA" : "");
        fmt_ci(b, sizeof b, met.ci_accuracy);
        printf("  accuracy           %.3f  [%s]\n", met.accuracy, b);
        fmt_ci(b, sizeof b, met.ci_balanced_accuracy);
        printf("  balanced accuracy  %.3f  [%s]\n", met.balanced_accuracy, b);
        fmt_ci(b, sizeof b, met.ci_macro_auc);
        fmt_num(a, sizeof a, met.macro_auc, 3);
        printf("  macro AUC          %s  [%s]\n", a, b);
        printf("  macro F1           %.3f   weighted F1 %.3f   ECE %.3f\n", met.macro_f1, met.weighted_f1, met.ece);
        if (met.mel_index >= 0)
            printf("  mel sensitivity    %.3f at spec 0.80, %.3f at spec 0.90\n", met.mel_sens_at_spec80,
                   met.mel_sens_at_spec90);
        if (!isnan(mel_nv_auc)) printf("  mel vs nv AUC      %.3f\n", mel_nv_auc);
        printf("  report: %s/report.md\n(%s)\n", dir, DL_DISCLAIMER);
    }
    g_free(keep);
    rc = 0;

out:
    if (have_metrics) dl_metrics_free(&met);
    if (errors)
        for (int i = 0; i < n_eval; i++) g_free(errors[i]);
    g_free(errors);
    g_free(job.probs);
    g_free(job.ood);
    g_free(job.ood_flag);
    g_free(index);
    g_free(labels);
    g_free(keep_map);
    g_free(ok_index);
    if (subgroup_md) g_string_free(subgroup_md, TRUE);
    cJSON_Delete(subgroup_json);
    g_free(metadata);
    g_free(data_to_model);
    g_free(rprobs);
    g_free(cnames);
    g_free(run_name);
    g_free(dir);
    if (ds.n) dl_dataset_free(&ds);
    if (m) dl_model_free(m);
    g_strfreev(pos);
    g_free(split);
    g_free(label_col);
    g_free(out_dir);
    g_free(name);
    g_free(exclude);
    g_free(cmdline);
    return rc;
}
