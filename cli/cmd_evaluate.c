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

/* ------------------------------------------------------------ the command */

/* Reliability diagram bins (report, JSON, plot). */
#define EV_BINS 15

/* One `dermlens evaluate` run: its options, then what each step adds. */
typedef struct {
    /* options */
    char *cmdline;
    gchar *split, *label_col, *out_dir, *name, *exclude, *metadata;
    gboolean tta;
    gint bootstrap, threads, limit, seed;
    gchar **pos;
    const char *model_path, *data_path;
    /* the model and the data */
    dl_model *m;
    int K;
    dl_dataset ds;
    int *data_to_model;      /* data class -> model class */
    /* the images scored */
    int *index;              /* [n] dataset rows */
    int n, n_avail, n_excluded;
    char *run_name;
    gchar *dir;
    /* classification */
    eval_job job;
    char **errors;           /* [n] g_strdup'd message of an image that failed */
    double secs;
    int n_ok, n_failed;
    /* the classes present and the renormalised probabilities */
    int *keep_map, *keep;    /* model class -> present class (-1), present -> model */
    int P, restricted;
    const char **cnames;     /* [P] */
    int *labels, *ok_index;  /* [n_ok] present class, dataset row */
    float *rprobs;           /* [n_ok * P] */
    /* metrics */
    dl_metrics met;
    int have_metrics;
    double mel_nv_auc;
    int mel_nv_n, ood_known, ood_flagged;
    int bcount[EV_BINS];
    double bconf[EV_BINS], bacc[EV_BINS], ece;
    char tbuf[64];
    GString *subgroup_md;
    cJSON *subgroup_json;
    int plots_ok;
} ev_run;

static void ev_run_free(ev_run *r)
{
    if (r->have_metrics) dl_metrics_free(&r->met);
    if (r->errors)
        for (int i = 0; i < r->n; i++) g_free(r->errors[i]);
    g_free(r->errors);
    g_free(r->job.probs);
    g_free(r->job.ood);
    g_free(r->job.ood_flag);
    g_free(r->index);
    g_free(r->labels);
    g_free(r->keep_map);
    g_free(r->keep);
    g_free(r->ok_index);
    if (r->subgroup_md) g_string_free(r->subgroup_md, TRUE);
    cJSON_Delete(r->subgroup_json);
    g_free(r->data_to_model);
    g_free(r->rprobs);
    g_free(r->cnames);
    g_free(r->run_name);
    g_free(r->dir);
    if (r->ds.n) dl_dataset_free(&r->ds);
    if (r->m) dl_model_free(r->m);
    g_strfreev(r->pos);
    g_free(r->split);
    g_free(r->label_col);
    g_free(r->out_dir);
    g_free(r->name);
    g_free(r->exclude);
    g_free(r->metadata);
    g_free(r->cmdline);
}

/* Options and their ranges: 0, or the exit code (2) after a message. */
static int ev_parse_options(ev_run *r, int argc, char **argv)
{
    gchar *threads_arg = NULL;
    r->bootstrap = 1000;
    r->seed = 20240601;
    GOptionEntry entries[] = {
        {"split", 's', 0, G_OPTION_ARG_STRING, &r->split, "CSV only: rows whose 'split' column equals S", "S"},
        {"label-column", 'l', 0, G_OPTION_ARG_STRING, &r->label_col, "CSV only: column holding the class code", "C"},
        {"tta", 0, 0, G_OPTION_ARG_NONE, &r->tta, "Test-time augmentation (average of 8 flips/turns)", NULL},
        {"bootstrap", 'b', 0, G_OPTION_ARG_INT, &r->bootstrap, "Bootstrap resamples for 95% intervals (default 1000, 0 = none)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT, &r->seed, "Bootstrap seed (default 20240601)", "N"},
        {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &r->out_dir, "Output folder (default ./eval-NAME)", "DIR"},
        {"name", 'n', 0, G_OPTION_ARG_STRING, &r->name, "Run name (default from the data path, e.g. ham10000-test)", "NAME"},
        {"limit", 0, 0, G_OPTION_ARG_INT, &r->limit, "Evaluate only N evenly spaced images (quick check)", "N"},
        {"exclude", 'x', 0, G_OPTION_ARG_FILENAME, &r->exclude, "Skip images whose id (file name without extension) is listed in FILE (one per line, or first CSV column), e.g. cross-split near-duplicates", "FILE"},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Worker threads, 1..256 (default: all cores)", "N"},
        {"metadata", 'm', 0, G_OPTION_ARG_FILENAME, &r->metadata, "Subgroup table from a CSV keyed by image_id (or path) with any of sex, age, localization, dataset, dx_type (e.g. HAM10000_metadata.csv); default: the DATASET CSV itself when it has such columns", "CSV"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &r->pos, NULL, NULL},
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
    int ok = g_option_context_parse(ctx, &argc, &argv, &gerr);
    g_option_context_free(ctx);
    if (!ok) {
        fprintf(stderr, "dermlens evaluate: %s\n", gerr->message);
        g_error_free(gerr);
        g_free(threads_arg);
        return 2;
    }
    if (!r->pos || !r->pos[0] || !r->pos[1] || r->pos[2]) {
        fprintf(stderr, "dermlens evaluate: need MODEL and DATASET (see --help)\n");
        g_free(threads_arg);
        return 2;
    }
    int trc = cli_parse_threads("evaluate", threads_arg, &r->threads);
    g_free(threads_arg);
    if (trc != 0) return 2;
    if (r->bootstrap < 0 || r->bootstrap > 100000) {
        fprintf(stderr, "dermlens evaluate: --bootstrap must be in 0..100000\n");
        return 2;
    }
    r->model_path = r->pos[0];
    r->data_path = r->pos[1];
    return 0;
}

/* Open the data and map its class names to the model's. The data's own
 * class list is mapped by name here (rather than passing class_order) so
 * that every unknown label can be named at once and models with many
 * classes work too. */
static int ev_open_data(ev_run *r)
{
    dl_dataset_options dopt = {.split = r->split, .label_column = r->label_col};
    dl_error err = {0};
    if (dl_dataset_open(r->data_path, &dopt, &r->ds, &err) != 0) {
        fprintf(stderr, "dermlens evaluate: %s\n", err.message);
        return -1;
    }
    const dl_dataset *ds = &r->ds;
    r->data_to_model = g_new(int, ds->n_classes);
    int unknown = 0;
    for (int d = 0; d < ds->n_classes; d++) {
        r->data_to_model[d] = -1;
        for (int c = 0; c < r->K; c++)
            if (!strcmp(ds->class_names[d], dl_model_class_name(r->m, c))) r->data_to_model[d] = c;
        if (r->data_to_model[d] < 0) {
            int cnt = 0;
            for (int i = 0; i < ds->n; i++) cnt += ds->labels[i] == d;
            fprintf(stderr, "dermlens evaluate: data class \"%s\" (%d images) is not a class of the model\n",
                    ds->class_names[d], cnt);
            unknown++;
        }
    }
    if (unknown) {
        fprintf(stderr, "  the model's classes are:");
        for (int c = 0; c < r->K && c < 30; c++) fprintf(stderr, " %s", dl_model_class_name(r->m, c));
        fprintf(stderr, "%s\n  (use --label-column to pick a column holding these codes, e.g. ham10000_class)\n",
                r->K > 30 ? " ..." : "");
        return -1;
    }
    return 0;
}

/* Image ids listed in --exclude (one per line, or the first CSV column), or
 * NULL with *failed set when the file cannot be read. */
static GHashTable *ev_read_exclusions(const char *path, int *failed)
{
    gchar *txt = NULL;
    GError *ge = NULL;
    *failed = 0;
    if (!g_file_get_contents(path, &txt, NULL, &ge)) {
        fprintf(stderr, "dermlens evaluate: %s\n", ge->message);
        g_error_free(ge);
        *failed = 1;
        return NULL;
    }
    GHashTable *ex = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
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
    return ex;
}

/* The images to score: exclusions by image id, then an evenly spaced subset
 * (so every class folder is represented). */
static int ev_select_images(ev_run *r)
{
    const dl_dataset *ds = &r->ds;
    GHashTable *ex = NULL;
    if (r->exclude) {
        int failed;
        if (!(ex = ev_read_exclusions(r->exclude, &failed)) && failed) return -1;
    }
    int *avail = g_new(int, ds->n);
    for (int i = 0; i < ds->n; i++) {
        if (ex) {
            gchar *b = g_path_get_basename(ds->paths[i]);
            char *dot = strrchr(b, '.');
            if (dot) *dot = 0;
            int hit = g_hash_table_contains(ex, b);
            g_free(b);
            if (hit) {
                r->n_excluded++;
                continue;
            }
        }
        avail[r->n_avail++] = i;
    }
    if (ex) g_hash_table_destroy(ex);
    int n = r->n_avail;
    if (r->limit > 0 && r->limit < n) n = r->limit;
    r->n = n;
    r->index = g_new(int, n > 0 ? n : 1);
    for (int i = 0; i < n; i++) r->index[i] = avail[(int64_t)i * r->n_avail / n];
    g_free(avail);
    if (n == 0) {
        fprintf(stderr, "dermlens evaluate: no images left after --exclude\n");
        return -1;
    }
    if (r->exclude) fprintf(stderr, "excluded %d images listed in %s\n", r->n_excluded, r->exclude);
    return 0;
}

static int ev_make_output_dir(ev_run *r)
{
    r->run_name = r->name ? g_strdup(r->name) : default_name(r->data_path, r->split);
    r->dir = r->out_dir ? g_strdup(r->out_dir) : g_strdup_printf("eval-%s", r->run_name);
    if (g_mkdir_with_parents(r->dir, 0755) != 0) {
        fprintf(stderr, "dermlens evaluate: cannot create %s\n", r->dir);
        return -1;
    }
    return 0;
}

/* Classify every selected image on the worker threads; say which failed. */
static void ev_classify(ev_run *r)
{
    const int n = r->n, K = r->K;
    fprintf(stderr, "evaluating %s on %d images of %s%s%s%s\n", dl_model_name(r->m), n, r->data_path,
            r->split ? " (split " : "", r->split ? r->split : "", r->split ? ")" : "");
    r->job = (eval_job){.ds = &r->ds, .index = r->index, .K = K, .tta = r->tta};
    r->job.probs = g_new0(float, (size_t)n * K);
    r->job.ood = g_new0(float, n);
    r->job.ood_flag = g_new0(int, n);
    r->errors = g_new0(char *, n);
    double t0 = g_get_monotonic_time() / 1e6;
    cli_run_parallel(r->m, r->model_path, n, r->threads, "classify", eval_item, &r->job, r->errors);
    r->secs = g_get_monotonic_time() / 1e6 - t0;
    for (int i = 0; i < n; i++) {
        if (!r->errors[i]) continue;
        if (r->n_failed < 10) {
            /* decoder messages often start with the path already: say it once */
            const char *path = r->ds.paths[r->index[i]];
            if (g_str_has_prefix(r->errors[i], path)) fprintf(stderr, "dermlens evaluate: skipped %s\n", r->errors[i]);
            else fprintf(stderr, "dermlens evaluate: skipped %s: %s\n", path, r->errors[i]);
        }
        r->n_failed++;
    }
    if (r->n_failed > 10) fprintf(stderr, "dermlens evaluate: ... %d images skipped in all\n", r->n_failed);
}

/* The classes present in the data; with fewer than the model's, each
 * image's probabilities are restricted to them and renormalised. */
static int ev_restrict_classes(ev_run *r)
{
    const int n = r->n, K = r->K;
    int *support = g_new0(int, K);
    for (int i = 0; i < n; i++)
        if (!r->errors[i]) support[r->data_to_model[r->ds.labels[r->index[i]]]]++;
    r->keep_map = g_new(int, K);
    int P = 0;
    for (int c = 0; c < K; c++) r->keep_map[c] = support[c] > 0 ? P++ : -1;
    r->keep = g_new(int, P > 0 ? P : 1);
    for (int c = 0; c < K; c++)
        if (r->keep_map[c] >= 0) r->keep[r->keep_map[c]] = c;
    g_free(support);
    r->P = P;
    r->restricted = P < K;
    if (P < 2) {
        fprintf(stderr, "dermlens evaluate: the data has %d class(es) the model knows; need at least 2\n", P);
        return -1;
    }
    r->cnames = g_new0(const char *, P);
    for (int p = 0; p < P; p++) r->cnames[p] = dl_model_class_name(r->m, r->keep[p]);
    r->labels = g_new(int, n);
    r->ok_index = g_new(int, n);
    r->rprobs = g_new(float, (size_t)n * P);
    for (int i = 0; i < n; i++) {
        if (r->errors[i]) continue;
        const float *src = r->job.probs + (size_t)i * K;
        double s = 0;
        for (int p = 0; p < P; p++) s += src[r->keep[p]];
        float *dst = r->rprobs + (size_t)r->n_ok * P;
        for (int p = 0; p < P; p++) dst[p] = s > 0 ? (float)(src[r->keep[p]] / s) : 1.0f / P;
        r->ok_index[r->n_ok] = r->index[i];
        r->labels[r->n_ok++] = r->keep_map[r->data_to_model[r->ds.labels[r->index[i]]]];
    }
    if (r->n_ok == 0) {
        fprintf(stderr, "dermlens evaluate: no image could be classified\n");
        return -1;
    }
    return 0;
}

/* Melanoma vs nevus: the two-class question on mel and nv images only,
 * scored by p(mel) / (p(mel) + p(nv)). */
static void ev_mel_vs_nv(ev_run *r)
{
    const int P = r->P;
    r->mel_nv_auc = NAN;
    r->mel_nv_n = 0;
    int im = -1, in = -1;
    for (int p = 0; p < P; p++) {
        if (!strcmp(r->cnames[p], "mel")) im = p;
        if (!strcmp(r->cnames[p], "nv")) in = p;
    }
    if (im < 0 || in < 0) return;
    float *sc = g_new(float, r->n_ok);
    int *po = g_new(int, r->n_ok);
    for (int i = 0; i < r->n_ok; i++) {
        if (r->labels[i] != im && r->labels[i] != in) continue;
        const float *q = r->rprobs + (size_t)i * P;
        double d = (double)q[im] + q[in];
        sc[r->mel_nv_n] = d > 0 ? (float)(q[im] / d) : 0.5f;
        po[r->mel_nv_n++] = r->labels[i] == im;
    }
    r->mel_nv_auc = dl_auc_binary(r->mel_nv_n, sc, po);
    g_free(sc);
    g_free(po);
}

/* Every number of the report: metrics with bootstrap intervals, melanoma vs
 * nevus, out-of-distribution flags, reliability bins. */
static int ev_compute_metrics(ev_run *r)
{
    dl_error err = {0};
    if (dl_metrics_compute(r->n_ok, r->P, r->labels, r->rprobs, r->cnames, r->bootstrap, (unsigned)r->seed, &r->met,
                           &err) != 0) {
        fprintf(stderr, "dermlens evaluate: %s\n", err.message);
        return -1;
    }
    r->have_metrics = 1;
    ev_mel_vs_nv(r);
    for (int i = 0; i < r->n; i++)
        if (!r->errors[i] && isfinite(r->job.ood[i])) {
            r->ood_known++;
            r->ood_flagged += r->job.ood_flag[i] != 0;
        }
    r->ece = NAN;
    dl_reliability_bins(r->n_ok, r->P, r->labels, r->rprobs, EV_BINS, r->bcount, r->bconf, r->bacc, &r->ece);
    time_t now = time(NULL);
    strftime(r->tbuf, sizeof r->tbuf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    return 0;
}

/* Subgroup tables when --metadata is given or the data CSV carries the
 * columns. */
static int ev_subgroups(ev_run *r)
{
    const char *meta_src = r->metadata;
    if (!meta_src && g_str_has_suffix(r->data_path, ".csv")) {
        dl_csv_table t;
        dl_error e2 = {0};
        if (dl_csv_table_load(r->data_path, &t, &e2) == 0) {
            for (int g = 0; g < N_SUBGROUP_COLS && !meta_src; g++)
                if (dl_csv_table_column(&t, k_subgroup_cols[g]) >= 0) meta_src = r->data_path;
            dl_csv_table_free(&t);
        }
    }
    if (!meta_src) return 0;
    r->subgroup_md = g_string_new(NULL);
    r->subgroup_json = cJSON_CreateObject();
    return subgroup_tables(meta_src, &r->ds, r->ok_index, r->n_ok, r->P, r->cnames, r->labels, r->rprobs,
                           r->subgroup_md, r->subgroup_json);
}

/* predictions.csv: the model's own probabilities (before any restriction). */
static void ev_write_predictions(const ev_run *r)
{
    const int K = r->K;
    GString *s = g_string_new("path,label,predicted");
    for (int c = 0; c < K; c++) {
        g_string_append_c(s, ',');
        csv_field(s, dl_model_class_name(r->m, c));
    }
    g_string_append(s, ",ood_score\n");
    for (int i = 0; i < r->n; i++) {
        if (r->errors[i]) continue;
        const float *q = r->job.probs + (size_t)i * K;
        int best = 0;
        for (int c = 1; c < K; c++)
            if (q[c] > q[best]) best = c;
        csv_field(s, r->ds.paths[r->index[i]]);
        g_string_append_c(s, ',');
        csv_field(s, r->ds.class_names[r->ds.labels[r->index[i]]]);
        g_string_append_c(s, ',');
        csv_field(s, dl_model_class_name(r->m, best));
        for (int c = 0; c < K; c++) g_string_append_printf(s, ",%.6g", q[c]);
        if (isfinite(r->job.ood[i])) g_string_append_printf(s, ",%.6g\n", r->job.ood[i]);
        else g_string_append(s, ",\n");
    }
    write_text(r->dir, "predictions.csv", s->str);
    g_string_free(s, TRUE);
}

static void ev_write_metrics_json(ev_run *r)
{
    const dl_metrics *met = &r->met;
    const int P = r->P, K = r->K;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", r->run_name);
    cJSON_AddStringToObject(root, "generated", r->tbuf);
    cJSON_AddStringToObject(root, "command", r->cmdline);
    cJSON_AddStringToObject(root, "disclaimer", DL_DISCLAIMER);
    cJSON *mj = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(mj, "path", r->model_path);
    cJSON_AddStringToObject(mj, "name", dl_model_name(r->m));
    cJSON_AddStringToObject(mj, "sha256", dl_model_sha256(r->m));
    cJSON *mc = cJSON_AddArrayToObject(mj, "classes");
    for (int c = 0; c < K; c++) cJSON_AddItemToArray(mc, cJSON_CreateString(dl_model_class_name(r->m, c)));
    cJSON *dj = cJSON_AddObjectToObject(root, "data");
    cJSON_AddStringToObject(dj, "path", r->data_path);
    if (r->split) cJSON_AddStringToObject(dj, "split", r->split);
    if (r->label_col) cJSON_AddStringToObject(dj, "label_column", r->label_col);
    cJSON_AddNumberToObject(dj, "images", r->n);
    cJSON_AddNumberToObject(dj, "scored", r->n_ok);
    cJSON_AddNumberToObject(dj, "failed", r->n_failed);
    if (r->n < r->n_avail) cJSON_AddNumberToObject(dj, "limited_from", r->n_avail);
    if (r->exclude) {
        cJSON_AddStringToObject(dj, "exclude_list", r->exclude);
        cJSON_AddNumberToObject(dj, "excluded", r->n_excluded);
    }
    cJSON *dc = cJSON_AddArrayToObject(dj, "classes");
    for (int p = 0; p < P; p++) cJSON_AddItemToArray(dc, cJSON_CreateString(r->cnames[p]));
    cJSON_AddBoolToObject(root, "restricted_to_data_classes", r->restricted);
    cJSON_AddBoolToObject(root, "tta", r->tta);
    cJSON_AddNumberToObject(root, "bootstrap", r->bootstrap);
    cJSON_AddNumberToObject(root, "seed", r->seed);
    cJSON_AddNumberToObject(root, "seconds", r->secs);
    cJSON *o = cJSON_AddObjectToObject(root, "metrics");
    cJSON_AddItemToObject(o, "accuracy", json_num(met->accuracy));
    cJSON_AddItemToObject(o, "accuracy_ci95", json_ci(met->ci_accuracy));
    cJSON_AddItemToObject(o, "balanced_accuracy", json_num(met->balanced_accuracy));
    cJSON_AddItemToObject(o, "balanced_accuracy_ci95", json_ci(met->ci_balanced_accuracy));
    cJSON_AddItemToObject(o, "macro_auc", json_num(met->macro_auc));
    cJSON_AddItemToObject(o, "macro_auc_ci95", json_ci(met->ci_macro_auc));
    cJSON_AddItemToObject(o, "macro_f1", json_num(met->macro_f1));
    cJSON_AddItemToObject(o, "weighted_f1", json_num(met->weighted_f1));
    cJSON_AddItemToObject(o, "ece", json_num(met->ece));
    cJSON_AddItemToObject(o, "mel_sensitivity_at_spec80", json_num(met->mel_sens_at_spec80));
    cJSON_AddItemToObject(o, "mel_sensitivity_at_spec90", json_num(met->mel_sens_at_spec90));
    cJSON_AddItemToObject(o, "mel_vs_nv_auc", json_num(r->mel_nv_auc));
    cJSON_AddNumberToObject(o, "mel_vs_nv_images", r->mel_nv_n);
    if (r->ood_known) {
        cJSON_AddNumberToObject(o, "ood_flagged", r->ood_flagged);
        cJSON_AddNumberToObject(o, "ood_flagged_fraction", (double)r->ood_flagged / r->ood_known);
    }
    cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
    for (int p = 0; p < P; p++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "class", r->cnames[p]);
        cJSON_AddStringToObject(c, "long_name", dl_model_class_long_name(r->m, r->keep[p]));
        cJSON_AddNumberToObject(c, "support", met->support[p]);
        cJSON_AddItemToObject(c, "precision", json_num(met->precision[p]));
        cJSON_AddItemToObject(c, "recall", json_num(met->recall[p]));
        cJSON_AddItemToObject(c, "f1", json_num(met->f1[p]));
        cJSON_AddItemToObject(c, "auc", json_num(met->auc[p]));
        cJSON_AddItemToArray(pc, c);
    }
    cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
    for (int a = 0; a < P; a++) {
        cJSON *row = cJSON_CreateArray();
        for (int b = 0; b < P; b++) cJSON_AddItemToArray(row, cJSON_CreateNumber(met->confusion[a * P + b]));
        cJSON_AddItemToArray(cm, row);
    }
    if (r->subgroup_json) {
        cJSON *sg = cJSON_DetachItemFromObject(r->subgroup_json, "subgroups");
        if (sg) cJSON_AddItemToObject(o, "subgroups", sg);
    }
    cJSON *rel = cJSON_AddArrayToObject(o, "reliability");
    for (int b = 0; b < EV_BINS; b++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "lo", (double)b / EV_BINS);
        cJSON_AddNumberToObject(c, "hi", (double)(b + 1) / EV_BINS);
        cJSON_AddNumberToObject(c, "count", r->bcount[b]);
        cJSON_AddItemToObject(c, "confidence", json_num(r->bconf[b]));
        cJSON_AddItemToObject(c, "accuracy", json_num(r->bacc[b]));
        cJSON_AddItemToArray(rel, c);
    }
    char *txt = cJSON_Print(root);
    GString *s = g_string_new(txt);
    g_string_append_c(s, '\n');
    write_text(r->dir, "metrics.json", s->str);
    g_string_free(s, TRUE);
    free(txt);
    cJSON_Delete(root);
}

/* roc.png: one-vs-rest ROC curve of every present class. 0 if written. */
static int ev_plot_roc(const ev_run *r, char *perr, size_t perr_len)
{
    const int P = r->P, n_ok = r->n_ok;
    const dl_metrics *met = &r->met;
    double **fpr = g_new0(double *, P + 1), **tpr = g_new0(double *, P + 1);
    int *np = g_new0(int, P + 1);
    char **leg = g_new0(char *, P + 1);
    float *col = g_new(float, n_ok);
    int *po = g_new(int, n_ok);
    int nc = 0;
    for (int p = 0; p < P; p++) {
        for (int i = 0; i < n_ok; i++) {
            col[i] = r->rprobs[(size_t)i * P + p];
            po[i] = r->labels[i] == p;
        }
        if (dl_roc_curve(n_ok, col, po, &fpr[nc], &tpr[nc], &np[nc], NULL) != 0) continue;
        leg[nc++] = g_strdup_printf("%s  AUC %.3f (n=%d)", r->cnames[p], met->auc[p], met->support[p]);
    }
    gchar *rtitle = g_strdup_printf("ROC one-vs-rest, macro AUC %.3f%s", met->macro_auc,
                                    isnan(met->ci_macro_auc[0]) ? "" : " (95% CI in report)");
    gchar *p2 = g_build_filename(r->dir, "roc.png", NULL);
    int rc = plot_roc(p2, nc, (const char *const *)leg, (const double *const *)fpr, (const double *const *)tpr, np,
                      rtitle, perr, perr_len);
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
    return rc;
}

/* confusion.png, roc.png, reliability.png (when built with cairo). */
static void ev_write_plots(ev_run *r)
{
    if (!plot_available()) {
        fprintf(stderr, "dermlens evaluate: built without cairo, plots skipped\n");
        return;
    }
    char perr[512];
    gchar *title = g_strdup_printf("%s on %s (n=%d)%s", dl_model_name(r->m), r->run_name, r->n_ok,
                                   r->tta ? ", TTA" : "");
    gchar *p1 = g_build_filename(r->dir, "confusion.png", NULL);
    if (plot_confusion(p1, r->P, r->cnames, r->met.confusion, title, perr, sizeof perr) != 0)
        fprintf(stderr, "dermlens evaluate: %s\n", perr);
    else r->plots_ok++;
    g_free(p1);
    if (ev_plot_roc(r, perr, sizeof perr) != 0) fprintf(stderr, "dermlens evaluate: %s\n", perr);
    else r->plots_ok++;
    gchar *p3 = g_build_filename(r->dir, "reliability.png", NULL);
    gchar *ltitle = g_strdup_printf("Reliability (top-class confidence), ECE %.3f", r->ece);
    if (plot_reliability(p3, EV_BINS, r->bcount, r->bconf, r->bacc, r->ece, ltitle, perr, sizeof perr) != 0)
        fprintf(stderr, "dermlens evaluate: %s\n", perr);
    else r->plots_ok++;
    g_free(p3);
    g_free(ltitle);
    g_free(title);
}

/* report.md, first part: what was run on what. */
static void ev_report_header(const ev_run *r, GString *s)
{
    g_string_append_printf(s, "# DermLens evaluation: %s\n\n> %s\n\n", r->run_name, DL_DISCLAIMER);
    g_string_append_printf(s, "| | |\n|---|---|\n");
    g_string_append_printf(s, "| Model | %s (`%s`) |\n", dl_model_name(r->m), r->model_path);
    g_string_append_printf(s, "| Model sha256 | `%s` |\n", dl_model_sha256(r->m));
    g_string_append_printf(s, "| Data | `%s`%s%s%s%s%s |\n", r->data_path, r->split ? ", split `" : "",
                           r->split ? r->split : "", r->split ? "`" : "", r->label_col ? ", labels from column `" : "",
                           r->label_col ? r->label_col : "");
    g_string_append_printf(s, "| Images scored | %d", r->n_ok);
    if (r->n_failed) g_string_append_printf(s, " (%d could not be read and were skipped)", r->n_failed);
    if (r->n < r->n_avail) g_string_append_printf(s, " (evenly spaced subset of %d)", r->n_avail);
    if (r->exclude) g_string_append_printf(s, " (%d excluded as listed in `%s`)", r->n_excluded, r->exclude);
    g_string_append(s, " |\n");
    g_string_append_printf(s, "| Test-time augmentation | %s |\n", r->tta ? "yes (mean of 8 flips/turns)" : "no");
    if (r->bootstrap)
        g_string_append_printf(s, "| Intervals | percentile bootstrap, %d resamples, seed %d |\n", r->bootstrap,
                               r->seed);
    else
        g_string_append(s, "| Intervals | none (--bootstrap 0) |\n");
    g_string_append_printf(s, "| Generated | %s, %.1f s |\n", r->tbuf, r->secs);
    g_string_append_printf(s, "| Command | `%s` |\n\n", r->cmdline);
    if (r->restricted) {
        g_string_append_printf(s, "**Scored on the %d classes present in the data** (", r->P);
        for (int p = 0; p < r->P; p++) g_string_append_printf(s, "%s%s", p ? ", " : "", r->cnames[p]);
        g_string_append_printf(s, ") out of the model's %d: each image's probabilities are restricted to "
                                  "these classes and renormalised to sum to 1 before any metric. "
                                  "Numbers are therefore not comparable one-to-one with a %d-class evaluation.\n\n",
                               r->K, r->K);
    }
}

/* report.md, the numbers: summary, per class, confusion matrix. */
static void ev_report_tables(const ev_run *r, GString *s)
{
    const dl_metrics *met = &r->met;
    const int P = r->P;
    char a[64], b[64], c[64];
    g_string_append(s, "## Summary\n\n| metric | value | 95% CI |\n|---|---|---|\n");
    fmt_num(a, sizeof a, met->accuracy, 3);
    fmt_ci(b, sizeof b, met->ci_accuracy);
    g_string_append_printf(s, "| accuracy | %s | %s |\n", a, b);
    fmt_num(a, sizeof a, met->balanced_accuracy, 3);
    fmt_ci(b, sizeof b, met->ci_balanced_accuracy);
    g_string_append_printf(s, "| balanced accuracy (mean recall) | %s | %s |\n", a, b);
    fmt_num(a, sizeof a, met->macro_auc, 3);
    fmt_ci(b, sizeof b, met->ci_macro_auc);
    g_string_append_printf(s, "| macro ROC AUC (one-vs-rest) | %s | %s |\n", a, b);
    fmt_num(a, sizeof a, met->macro_f1, 3);
    g_string_append_printf(s, "| macro F1 | %s | |\n", a);
    fmt_num(a, sizeof a, met->weighted_f1, 3);
    g_string_append_printf(s, "| weighted F1 | %s | |\n", a);
    fmt_num(a, sizeof a, met->ece, 3);
    g_string_append_printf(s, "| expected calibration error (15 bins) | %s | |\n", a);
    if (met->mel_index >= 0) {
        fmt_num(a, sizeof a, met->mel_sens_at_spec80, 3);
        fmt_num(b, sizeof b, met->mel_sens_at_spec90, 3);
        g_string_append_printf(s, "| melanoma sensitivity at 80%% specificity | %s | |\n", a);
        g_string_append_printf(s, "| melanoma sensitivity at 90%% specificity | %s | |\n", b);
    }
    if (!isnan(r->mel_nv_auc)) {
        fmt_num(a, sizeof a, r->mel_nv_auc, 3);
        g_string_append_printf(s, "| melanoma vs nevus AUC (%d mel + nv images) | %s | |\n", r->mel_nv_n, a);
    }
    if (r->ood_known)
        g_string_append_printf(s, "| flagged out-of-distribution | %d of %d (%.1f%%) | |\n", r->ood_flagged,
                               r->ood_known, 100.0 * r->ood_flagged / r->ood_known);
    g_string_append(s, "\n## Per class\n\n| class | name | support | precision | recall | F1 | AUC |\n"
                       "|---|---|---:|---:|---:|---:|---:|\n");
    for (int p = 0; p < P; p++) {
        fmt_num(a, sizeof a, met->precision[p], 3);
        fmt_num(b, sizeof b, met->recall[p], 3);
        fmt_num(c, sizeof c, met->f1[p], 3);
        char d[32];
        fmt_num(d, sizeof d, met->auc[p], 3);
        g_string_append_printf(s, "| %s | %s | %d | %s | %s | %s | %s |\n", r->cnames[p],
                               dl_model_class_long_name(r->m, r->keep[p]), met->support[p], a, b, c, d);
    }
    g_string_append(s, "\n## Confusion matrix\n\nRows: true class; columns: predicted class.\n\n| true \\ pred |");
    for (int p = 0; p < P; p++) g_string_append_printf(s, " %s |", r->cnames[p]);
    g_string_append(s, "\n|---|");
    for (int p = 0; p < P; p++) g_string_append(s, "---:|");
    g_string_append_c(s, '\n');
    for (int t = 0; t < P; t++) {
        g_string_append_printf(s, "| **%s** |", r->cnames[t]);
        for (int q = 0; q < P; q++) g_string_append_printf(s, " %d |", met->confusion[t * P + q]);
        g_string_append_c(s, '\n');
    }
}

static void ev_write_report(const ev_run *r)
{
    GString *s = g_string_new(NULL);
    ev_report_header(r, s);
    ev_report_tables(r, s);
    if (r->subgroup_md) g_string_append(s, r->subgroup_md->str);
    if (r->plots_ok) {
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
    write_text(r->dir, "report.md", s->str);
    g_string_free(s, TRUE);
}

static void ev_print_summary(const ev_run *r)
{
    const dl_metrics *met = &r->met;
    char a[64], b[64];
    printf("%s: %d images, %d classes%s%s\n", r->run_name, r->n_ok, r->P,
           r->restricted ? " (restricted to the data's classes)" : "", r->tta ? ", TTA" : "");
    fmt_ci(b, sizeof b, met->ci_accuracy);
    printf("  accuracy           %.3f  [%s]\n", met->accuracy, b);
    fmt_ci(b, sizeof b, met->ci_balanced_accuracy);
    printf("  balanced accuracy  %.3f  [%s]\n", met->balanced_accuracy, b);
    fmt_ci(b, sizeof b, met->ci_macro_auc);
    fmt_num(a, sizeof a, met->macro_auc, 3);
    printf("  macro AUC          %s  [%s]\n", a, b);
    printf("  macro F1           %.3f   weighted F1 %.3f   ECE %.3f\n", met->macro_f1, met->weighted_f1, met->ece);
    if (met->mel_index >= 0)
        printf("  mel sensitivity    %.3f at spec 0.80, %.3f at spec 0.90\n", met->mel_sens_at_spec80,
               met->mel_sens_at_spec90);
    if (!isnan(r->mel_nv_auc)) printf("  mel vs nv AUC      %.3f\n", r->mel_nv_auc);
    printf("  report: %s/report.md\n(%s)\n", r->dir, DL_DISCLAIMER);
}

int cmd_evaluate(int argc, char **argv)
{
    ev_run r = {.cmdline = cli_command_line(argc, argv)};
    int rc = ev_parse_options(&r, argc, argv);
    if (rc == 0) {
        rc = 1;
        if ((r.m = cli_load_model(r.model_path)) != NULL) {
            r.K = dl_model_num_classes(r.m);
            if (ev_open_data(&r) == 0 && ev_select_images(&r) == 0 && ev_make_output_dir(&r) == 0) {
                ev_classify(&r);
                if (ev_restrict_classes(&r) == 0 && ev_compute_metrics(&r) == 0 && ev_subgroups(&r) == 0) {
                    ev_write_predictions(&r);
                    ev_write_metrics_json(&r);
                    ev_write_plots(&r);
                    ev_write_report(&r);
                    ev_print_summary(&r);
                    rc = 0;
                }
            }
        }
    }
    ev_run_free(&r);
    return rc;
}
