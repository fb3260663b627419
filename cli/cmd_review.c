/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens review: classify and explain every image of a dataset folder,
 * compare with the given labels, and write annotated images, a CSV sorted
 * by suspicion (likely label errors first) and a page that opens from disk. */
#include "review.h"
#include "dermlens_host.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 64
#define MAX_FILES 1000000

/* Read and shown as failed when they cannot be decoded (GIF, WebP, HEIF are
 * listed so that a user learns why they were not reviewed). */
static const char *const image_exts[] = {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp", ".dib",
                                         ".gif", ".webp", ".heic", ".heif", ".avif"};

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < G_N_ELEMENTS(image_exts); i++)
        if (!g_ascii_strcasecmp(dot, image_exts[i])) return 1;
    return 0;
}

static int path_inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (!strcmp(dir, "/")) return 1;
    return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == 0);
}

typedef struct {
    GPtrArray *items;  /* review_item* */
    const char *root;  /* realpath of the dataset folder */
    int skipped;       /* files that are not images by name */
    int unreadable;    /* folders that could not be listed */
    dl_error *err;
} walk_ctx;

static review_item *new_item(walk_ctx *w, const char *full, const char *rel)
{
    review_item *it = g_new0(review_item, 1);
    it->path = g_strdup(full);
    it->rel = g_strdup(rel);
    it->label = -1;
    it->pred = -1;
    it->suspicion = NAN;
    it->ood_score = NAN;
    g_ptr_array_add(w->items, it);
    return it;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Folders in name order, depth first; hidden entries skipped. Links are
 * followed only to files inside the dataset; FIFOs and devices are listed as
 * failed without being opened (reading a FIFO would block). */
static int walk(walk_ctx *w, const char *dir, const char *rel, int depth)
{
    if (depth > MAX_DEPTH) {
        w->err->code = DL_ERR_LIMIT;
        snprintf(w->err->message, sizeof w->err->message, "%s: folders nested deeper than %d", dir, MAX_DEPTH);
        return -1;
    }
    GError *ge = NULL;
    GDir *d = g_dir_open(dir, 0, &ge);
    if (!d) {
        fprintf(stderr, "dermlens review: cannot list %s: %s\n", cli_disp(dir), cli_disp(ge->message));
        g_error_free(ge);
        w->unreadable++;
        return 0;
    }
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *nm;
    while ((nm = g_dir_read_name(d)))
        if (nm[0] != '.') g_ptr_array_add(names, g_strdup(nm));
    g_dir_close(d);
    if (names->len > 1) qsort(names->pdata, names->len, sizeof(char *), cmp_names); /* pdata is NULL when empty */
    int rc = 0;
    for (guint i = 0; i < names->len && rc == 0; i++) {
        const char *name = names->pdata[i];
        char *full = g_build_filename(dir, name, NULL);
        char *r = rel[0] ? g_strconcat(rel, "/", name, NULL) : g_strdup(name);
        struct stat lsb, sb;
        if (lstat(full, &lsb) != 0) {
            /* vanished meanwhile */
        } else if (S_ISDIR(lsb.st_mode)) {
            rc = walk(w, full, r, depth + 1);
        } else if (!is_image_name(name)) {
            if (!S_ISLNK(lsb.st_mode) || (stat(full, &sb) == 0 && !S_ISDIR(sb.st_mode))) w->skipped++;
        } else if (S_ISREG(lsb.st_mode)) {
            new_item(w, full, r);
        } else if (S_ISLNK(lsb.st_mode)) {
            char target[PATH_MAX];
            review_item *it = new_item(w, full, r);
            if (!realpath(full, target) || stat(target, &sb) != 0)
                it->refused = "a symbolic link whose target does not exist; not followed";
            else if (!path_inside(target, w->root))
                it->refused = "a symbolic link to something outside the dataset folder; not followed";
            else if (!S_ISREG(sb.st_mode))
                it->refused = "a symbolic link to something that is not a regular file; not followed";
        } else {
            new_item(w, full, r)->refused = S_ISFIFO(lsb.st_mode) ? "a FIFO (named pipe), not a regular file; not read"
                                                                  : "not a regular file (a device or socket); not read";
        }
        g_free(full);
        g_free(r);
        if (w->items->len > MAX_FILES) {
            w->err->code = DL_ERR_LIMIT;
            snprintf(w->err->message, sizeof w->err->message, "more than %d images", MAX_FILES);
            rc = -1;
        }
    }
    g_ptr_array_free(names, TRUE);
    return rc;
}

/* ------------------------------------------------------------ labels */

/* The model's class for a label as written: its code ("mel"), else its
 * code or long name ignoring case, '_' and '-' read as spaces. */
static int class_of(const dl_model *m, const char *label)
{
    int K = dl_model_num_classes(m);
    for (int c = 0; c < K; c++)
        if (!strcmp(dl_model_class_name(m, c), label)) return c;
    char *want = g_strdelimit(g_utf8_casefold(label, -1), "_-", ' ');
    int found = -1;
    for (int c = 0; c < K && found < 0; c++) {
        const char *names[2] = {dl_model_class_name(m, c), dl_model_class_long_name(m, c)};
        for (int k = 0; k < 2 && found < 0; k++) {
            if (!names[k]) continue;
            char *have = g_strdelimit(g_utf8_casefold(names[k], -1), "_-", ' ');
            if (!strcmp(have, want)) found = c;
            g_free(have);
        }
    }
    g_free(want);
    return found;
}

/* The class subfolder nearest to the file, then the dataset folder's own
 * name (review DATA/mel reviews melanomas). Folders that name no class of
 * the model are collected in unmatched. */
static void folder_labels(const dl_model *m, GPtrArray *items, const char *root, GHashTable *unmatched)
{
    char *root_base = g_path_get_basename(root);
    for (guint i = 0; i < items->len; i++) {
        review_item *it = items->pdata[i];
        char **parts = g_strsplit(it->rel, "/", -1);
        int np = (int)g_strv_length(parts);
        for (int k = np - 2; k >= -1 && it->label < 0; k--) {
            const char *f = k >= 0 ? parts[k] : root_base;
            int c = class_of(m, f);
            if (c >= 0) {
                it->label = c;
                it->label_text = g_strdup(f);
            }
        }
        if (it->label < 0 && np >= 2) g_hash_table_add(unmatched, g_strdup(parts[np - 2]));
        g_strfreev(parts);
    }
    g_free(root_base);
}

static char *stem_of(const char *path)
{
    char *base = g_path_get_basename(path);
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = 0;
    return base;
}

static int first_column(const dl_csv_table *t, const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        int c = dl_csv_table_column(t, names[i]);
        if (c >= 0) return c;
    }
    return -1;
}

typedef struct {
    int matched, not_class, csv_rows, csv_unused, ambiguous;
    GHashTable *not_classes; /* label text -> count */
} label_stats;

/* Labels from a CSV: rows are matched to images by their path (relative to
 * the CSV's folder or to the dataset folder) or by image id (the file name
 * without extension). The engine's CSV reader does the parsing. */
static int csv_labels(const dl_model *m, GPtrArray *items, const char *root, const char *csv_path,
                      const char *label_col, label_stats *ls)
{
    dl_csv_table t;
    dl_error err = {0};
    if (dl_csv_table_load(csv_path, &t, &err) != 0) {
        fprintf(stderr, "dermlens review: --labels: %s\n", cli_disp(err.message));
        return -1;
    }
    static const char *const path_cols[] = {"path", "file", "filename", "image_path", NULL};
    static const char *const id_cols[] = {"image_id", "image", "id", "isic_id", "image_name", NULL};
    static const char *const label_cols[] = {"label", "dx", "ham10000_class", "class", "diagnosis", NULL};
    int cp = first_column(&t, path_cols), ci = first_column(&t, id_cols);
    int cl = label_col ? dl_csv_table_column(&t, label_col) : first_column(&t, label_cols);
    if (cl < 0 || (cp < 0 && ci < 0)) {
        fprintf(stderr,
                "dermlens review: --labels %s: %s\n", cli_disp(csv_path),
                cl < 0 ? (label_col ? "no such label column (see --label-column)"
                                    : "no label column (label, dx, ham10000_class, class or diagnosis; or --label-column)")
                       : "no column naming the image (path, file, filename, image_path, or image_id, image, id)");
        dl_csv_table_free(&t);
        return -1;
    }
    char *csv_dir = g_path_get_dirname(csv_path), real_dir[PATH_MAX];
    /* resolved like the dataset folder, so the two compare as paths */
    char *csv_abs = realpath(csv_dir, real_dir) ? g_strdup(real_dir) : g_canonicalize_filename(csv_dir, NULL);
    /* key -> row index; "path" keys are canonical absolute paths or paths
     * relative to the dataset, "id" keys are stems; -2 marks an id given
     * two different labels */
    GHashTable *by_path = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GHashTable *by_id = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (int r = 0; r < t.n_rows; r++) {
        const char *lab = t.cells[(size_t)r * t.n_cols + cl];
        if (!lab[0]) continue;
        if (cp >= 0) {
            const char *p = t.cells[(size_t)r * t.n_cols + cp];
            if (p[0]) {
                g_hash_table_insert(by_path, g_canonicalize_filename(p, csv_abs), GINT_TO_POINTER(r + 1));
                g_hash_table_insert(by_path, g_strdup(p), GINT_TO_POINTER(r + 1));
            }
        }
        char *id = ci >= 0 ? g_strdup(t.cells[(size_t)r * t.n_cols + ci])
                           : stem_of(t.cells[(size_t)r * t.n_cols + cp]);
        if (id[0]) {
            gpointer old = g_hash_table_lookup(by_id, id);
            if (old && GPOINTER_TO_INT(old) > 0 &&
                strcmp(t.cells[(size_t)(GPOINTER_TO_INT(old) - 1) * t.n_cols + cl], lab)) {
                g_hash_table_insert(by_id, id, GINT_TO_POINTER(-2));
                id = NULL;
            } else if (!old) {
                g_hash_table_insert(by_id, id, GINT_TO_POINTER(r + 1));
                id = NULL;
            }
        }
        g_free(id);
    }
    char *used = g_new0(char, t.n_rows + 1);
    for (guint i = 0; i < items->len; i++) {
        review_item *it = items->pdata[i];
        char *abs = g_canonicalize_filename(it->rel, root);
        int row = GPOINTER_TO_INT(g_hash_table_lookup(by_path, abs));
        if (!row) row = GPOINTER_TO_INT(g_hash_table_lookup(by_path, it->rel));
        g_free(abs);
        if (!row) {
            char *stem = stem_of(it->rel);
            row = GPOINTER_TO_INT(g_hash_table_lookup(by_id, stem));
            g_free(stem);
            if (row == -2) {
                ls->ambiguous++;
                continue;
            }
        }
        if (row <= 0) continue;
        used[row - 1] = 1;
        const char *lab = t.cells[(size_t)(row - 1) * t.n_cols + cl];
        it->label_text = g_strdup(lab);
        it->label = class_of(m, lab);
        ls->matched++;
        if (it->label < 0) {
            ls->not_class++;
            gpointer n = g_hash_table_lookup(ls->not_classes, lab);
            g_hash_table_insert(ls->not_classes, g_strdup(lab), GINT_TO_POINTER(GPOINTER_TO_INT(n) + 1));
        }
    }
    ls->csv_rows = t.n_rows;
    for (int r = 0; r < t.n_rows; r++) ls->csv_unused += !used[r];
    g_free(used);
    g_hash_table_destroy(by_path);
    g_hash_table_destroy(by_id);
    g_free(csv_dir);
    g_free(csv_abs);
    dl_csv_table_free(&t);
    return 0;
}

/* ------------------------------------------------------------ the work */

typedef struct {
    review_item **items;
    int K;
    const char *model_path;
    dl_saliency_method method;
    const char *method_title;
    double opacity;
    const char *images_dir, *thumbs_dir;
} review_job;

static int review_one(void *user, dl_model *m, int index, dl_error *err)
{
    review_job *job = user;
    review_item *it = job->items[index];
    if (it->refused) {
        it->error = g_strdup(it->refused);
        err->code = DL_ERR_IO;
        snprintf(err->message, sizeof err->message, "%s", it->refused);
        return -1;
    }
    dl_image img = {0}, small = {0};
    dh_analysis a = {0};
    int rc = dl_image_load_oriented(it->path, &img, NULL, err);
    if (rc == 0) {
        it->width = img.width;
        it->height = img.height;
        rc = cli_check_region(&img, err);
    }
    const dl_image *use = &img;
    if (rc == 0 && (img.width > REVIEW_MAX_SIDE || img.height > REVIEW_MAX_SIDE)) {
        double s = (double)REVIEW_MAX_SIDE / (img.width > img.height ? img.width : img.height);
        int w = (int)lround(img.width * s), h = (int)lround(img.height * s);
        rc = dl_image_resize(&img, w < 1 ? 1 : w, h < 1 ? 1 : h, &small, err);
        use = &small;
        it->scaled = 1;
    }
    if (rc == 0)
        rc = dh_analyse(m, use->pixels, use->width, use->height, use->stride, job->method, 1, NULL, &a, err);
    if (rc == 0) {
        const dl_result *r = &a.result;
        it->probs = g_new(float, job->K);
        memcpy(it->probs, r->probs, sizeof(float) * job->K);
        it->pred = r->top_index[0];
        it->ood_score = r->ood_score;
        it->ood_model = r->ood_flag;
        it->image_flag = a.image_flag;
        snprintf(it->image_reason, sizeof it->image_reason, "%s", a.image_reason);
        it->ood = it->ood_model || it->image_flag;
        it->uncertain = dh_verdict_of(r, a.image_flag) == DH_VERDICT_UNCERTAIN;
        it->suspicion = review_suspicion(it->probs, job->K, it->label);
        it->disagree = it->label >= 0 && it->pred != it->label;
        it->has_map = a.map != NULL;
        snprintf(it->saliency_note, sizeof it->saliency_note, "%s", a.map ? "" : a.saliency_note);
        char *ip = g_build_filename(job->images_dir, it->out_name, NULL);
        char *tp = g_build_filename(job->thumbs_dir, it->out_name, NULL);
        rc = review_render(m, use, a.map, job->opacity, it, r, job->method_title, ip, tp, &it->thumb_w,
                           &it->thumb_h, err);
        g_free(ip);
        g_free(tp);
    }
    dh_analysis_free(&a);
    dl_image_free(&small);
    dl_image_free(&img);
    if (rc == 0) {
        it->ok = 1;
    } else {
        /* the message without the path: the row already names the file */
        const char *msg = err->message;
        size_t n = strlen(it->path);
        if (!strncmp(msg, it->path, n) && msg[n] == ':') msg += n + 1 + (msg[n + 1] == ' ');
        it->error = g_strdup(msg[0] ? msg : dl_status_name(err->code));
        it->ok = 0;
    }
    return rc;
}

/* Page and CSV order: labelled images by suspicion (most suspicious first),
 * then unlabelled ones, then failures; ties by path. */
static int cmp_items(const void *pa, const void *pb)
{
    const review_item *a = *(review_item *const *)pa, *b = *(review_item *const *)pb;
    int ga = !a->ok ? 2 : isnan(a->suspicion) ? 1 : 0, gb = !b->ok ? 2 : isnan(b->suspicion) ? 1 : 0;
    if (ga != gb) return ga - gb;
    if (ga == 0 && a->suspicion != b->suspicion) return a->suspicion > b->suspicion ? -1 : 1;
    return strcmp(a->rel, b->rel);
}

static void csv_cell(GString *s, const char *v)
{
    char *c = dl_csv_cell(v ? v : "");
    g_string_append(s, c ? c : "");
    free(c);
}

static int write_csv(const char *path, const review_page *p, dl_error *err)
{
    GString *s = g_string_new("rank,path,label,prediction,confidence");
    for (int c = 0; c < p->n_classes; c++) {
        char *h = g_strconcat("p_", p->class_names[c], NULL);
        g_string_append_c(s, ',');
        csv_cell(s, h);
        g_free(h);
    }
    g_string_append(s, ",ood_score,ood_flag,ood_reason,suspicion,disagree,annotated,thumbnail,error\n");
    for (int i = 0; i < p->n; i++) {
        const review_item *it = p->items[i];
        g_string_append_printf(s, "%d,", i + 1);
        csv_cell(s, it->rel);
        g_string_append_c(s, ',');
        csv_cell(s, it->label_text);
        g_string_append_c(s, ',');
        if (it->ok) {
            csv_cell(s, p->class_names[it->pred]);
            g_string_append_printf(s, ",%.6f", it->probs[it->pred]);
            for (int c = 0; c < p->n_classes; c++) g_string_append_printf(s, ",%.6f", it->probs[c]);
            g_string_append_c(s, ',');
            if (isfinite(it->ood_score)) g_string_append_printf(s, "%.3f", it->ood_score);
            g_string_append_printf(s, ",%d,", it->ood);
            char reason[192] = "";
            if (it->image_flag) snprintf(reason, sizeof reason, "image check: %s", it->image_reason);
            else if (it->ood_model) snprintf(reason, sizeof reason, "OOD score above the model's threshold");
            csv_cell(s, reason);
            g_string_append_c(s, ',');
            if (!isnan(it->suspicion)) g_string_append_printf(s, "%.4f", it->suspicion);
            g_string_append_c(s, ',');
            if (it->label >= 0) g_string_append_printf(s, "%d", it->disagree);
            g_string_append_printf(s, ",images/%s,thumbs/%s,\n", it->out_name, it->out_name);
        } else {
            g_string_append(s, ",");
            for (int c = 0; c < p->n_classes; c++) g_string_append_c(s, ',');
            g_string_append(s, ",,,,,,,,"); /* empty ood_score .. thumbnail, then the error */
            csv_cell(s, it->error);
            g_string_append_c(s, '\n');
        }
    }
    int rc = dl_write_file_atomic(path, s->str, s->len, err);
    g_string_free(s, TRUE);
    return rc;
}

/* "<index>-<stem>.png" from safe characters only, so no name needs quoting
 * in a URL or escaping in a shell, and two images never share an output. */
static char *output_name(int index, int width, const char *rel)
{
    char *stem = stem_of(rel);
    GString *s = g_string_new(NULL);
    g_string_printf(s, "%0*d-", width, index + 1);
    int n = 0;
    for (const char *c = stem; *c && n < 60; c++, n++)
        g_string_append_c(s, g_ascii_isalnum(*c) || *c == '-' || *c == '_' ? *c : '_');
    g_string_append(s, ".png");
    g_free(stem);
    return g_string_free(s, FALSE);
}

/* Outputs of an earlier run in images/ and thumbs/ (our names only), so the
 * folder shows this run alone. */
static void remove_old_outputs(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    if (!d) return;
    const char *nm;
    while ((nm = g_dir_read_name(d))) {
        size_t k = strspn(nm, "0123456789");
        if (k < 4 || nm[k] != '-' || !g_str_has_suffix(nm, ".png")) continue;
        char *full = g_build_filename(dir, nm, NULL);
        struct stat lsb;
        if (lstat(full, &lsb) == 0 && S_ISREG(lsb.st_mode)) unlink(full);
        g_free(full);
    }
    g_dir_close(d);
}

/* DIR, and DIR/sub, as folders we may write into (created when missing,
 * never a link). */
static int make_dir(const char *path)
{
    struct stat lsb;
    if (lstat(path, &lsb) == 0) {
        if (S_ISDIR(lsb.st_mode)) return 0;
        fprintf(stderr, "dermlens review: %s exists and is not a folder%s\n", cli_disp(path),
                S_ISLNK(lsb.st_mode) ? " (a symbolic link; not followed)" : "");
        return -1;
    }
    if (g_mkdir_with_parents(path, 0777) != 0) {
        fprintf(stderr, "dermlens review: cannot create %s: %s\n", cli_disp(path), g_strerror(errno));
        return -1;
    }
    return 0;
}

static void print_names(const char *what, GHashTable *set)
{
    GList *keys = g_list_sort(g_hash_table_get_keys(set), (GCompareFunc)strcmp);
    GString *s = g_string_new(NULL);
    int k = 0;
    for (GList *l = keys; l; l = l->next, k++) {
        if (k == 8) {
            g_string_append_printf(s, ", ... (%u in all)", g_hash_table_size(set));
            break;
        }
        g_string_append_printf(s, "%s%s", k ? ", " : "", cli_disp(l->data));
    }
    fprintf(stderr, "dermlens review: %s: %s\n", what, s->str);
    g_string_free(s, TRUE);
    g_list_free(keys);
}

static void free_item(review_item *it)
{
    g_free(it->path);
    g_free(it->rel);
    g_free(it->label_text);
    g_free(it->error);
    g_free(it->probs);
    g_free(it->out_name);
    g_free(it);
}

int cmd_review(int argc, char **argv)
{
    gchar *model_path = NULL, *out_dir = NULL, *labels = NULL, *label_col = NULL, *method = NULL,
          *threads_arg = NULL;
    gdouble opacity = 60;
    gchar **args = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir, "Folder for index.html, review.csv, images/ and thumbs/ (created; must not be inside DATASET)", "DIR"},
        {"labels", 'l', 0, G_OPTION_ARG_FILENAME, &labels, "Labels from a CSV instead of class subfolders (see below)", "FILE"},
        {"label-column", 0, 0, G_OPTION_ARG_STRING, &label_col, "The CSV's label column (default: label, dx, ham10000_class, class or diagnosis)", "NAME"},
        {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path, "Model file (default: the shipped lesion model, or $DERMLENS_MODEL)", "FILE"},
        {"method", 'M', 0, G_OPTION_ARG_STRING, &method, "Saliency method: gradcam (default), gradcam++, hirescam, layercam, scorecam, occlusion", "M"},
        {"opacity", 0, 0, G_OPTION_ARG_DOUBLE, &opacity, "Overlay opacity 0..100 (default 60)", "P"},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Threads, 1..256 (default: all cores)", "N"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("DATASET -o DIR - review a labelled image folder for likely label errors");
    g_option_context_set_summary(ctx,
        "Classifies and explains every image under DATASET (subfolders included; PNG, JPEG, TIFF and BMP)\n"
        "and writes into DIR:\n"
        "  index.html  a page that opens from disk with no network: thumbnails with the saliency overlay,\n"
        "              most suspicious first, filters by label, prediction, disagreement and\n"
        "              out-of-distribution, and a confusion matrix when labels are known\n"
        "  review.csv  one row per image in the same order: path, label, prediction, confidence, every\n"
        "              class probability, OOD score and flag, suspicion, disagreement, output files, error\n"
        "  images/     the annotated images (overlay, then a box with the verdict, the classes, the given\n"
        "              label, a legend and the disclaimer); thumbs/ their thumbnails\n"
        "\n"
        "Labels: a folder named after a class of the model (its code, e.g. mel/ or nv/, or its long name)\n"
        "labels the images under it, the nearest such folder winning (ham10000/test/mel/x.jpg is mel).\n"
        "With --labels FILE a CSV gives them instead: a label column and either a path (relative to the\n"
        "CSV's folder or to DATASET) or an image id (the file name without extension), as in the\n"
        "dataset CSVs `dermlens evaluate` reads.\n"
        "\n"
        "Suspicion = max over other classes of p(class) - p(label), from -1 to 1. It is positive exactly\n"
        "when the model prefers another class, and near 1 when it is sure of that class and gives the\n"
        "label almost nothing: the likely label errors (or model errors) come first. Unlike -log p(label)\n"
        "it is bounded and does not rank an image high when the model is merely unsure among several\n"
        "classes. Images without a label follow, then the ones that failed.\n"
        "\n"
        "A file that cannot be read is listed as failed and the run goes on; the exit status is then 3\n"
        "(0: all reviewed, 1: nothing written, 2: bad arguments). Images larger than 1024 px on a side\n"
        "are analysed at 1024 px. Input files are never changed. " DL_DISCLAIMER);
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens review: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    int threads = 0, ret = 1;
    if (!args || !args[0] || !out_dir || !*out_dir) {
        fprintf(stderr, "dermlens review: need DATASET and -o DIR (see --help)\n");
        ret = 2;
        goto out_args;
    }
    if (args[1]) {
        fprintf(stderr, "dermlens review: one DATASET folder at a time (got '%s' too)\n", cli_disp(args[1]));
        ret = 2;
        goto out_args;
    }
    if (cli_parse_threads("review", threads_arg, &threads) != 0) {
        ret = 2;
        goto out_args;
    }
    if (!(isfinite(opacity) && opacity >= 0 && opacity <= 100)) {
        fprintf(stderr, "dermlens review: --opacity must be a number from 0 to 100, got %g\n", opacity);
        ret = 2;
        goto out_args;
    }
    int mi = dl_saliency_method_from_name(method ? method : "gradcam");
    if (mi < 0) {
        fprintf(stderr, "dermlens review: unknown saliency method '%s' (gradcam, gradcam++, hirescam, layercam, scorecam, occlusion)\n",
                cli_disp(method));
        ret = 2;
        goto out_args;
    }
    char root[PATH_MAX];
    struct stat sb;
    if (!realpath(args[0], root) || stat(root, &sb) != 0) {
        fprintf(stderr, "dermlens review: %s: %s\n", cli_disp(args[0]), g_strerror(errno));
        goto out_args;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "dermlens review: %s is not a folder (give the folder that holds the images%s)\n",
                cli_disp(args[0]), g_str_has_suffix(args[0], ".csv") ? "; a CSV goes to --labels" : "");
        goto out_args;
    }
    /* the output may not exist yet: judge where it would be */
    char *out_abs = g_canonicalize_filename(out_dir, NULL);
    {
        char real_out[PATH_MAX];
        if (realpath(out_abs, real_out)) {
            g_free(out_abs);
            out_abs = g_strdup(real_out);
        }
        char *probe = g_strdup(out_abs), real[PATH_MAX];
        while (!realpath(probe, real)) {
            char *up = g_path_get_dirname(probe);
            g_free(probe);
            probe = up;
        }
        int inside = path_inside(real, root) || path_inside(out_abs, root);
        g_free(probe);
        if (inside) {
            fprintf(stderr, "dermlens review: the output folder %s must not be inside the dataset %s "
                            "(its images would be reviewed next time)\n", cli_disp(out_dir), cli_disp(root));
            g_free(out_abs);
            goto out_args;
        }
    }
    if (threads > 0) cli_set_threads(threads);
    const char *mp = cli_default_model(model_path);
    dl_model *m = cli_load_model(mp);
    if (!m) {
        g_free(out_abs);
        goto out_args;
    }
    int K = dl_model_num_classes(m);

    dl_error err = {0};
    walk_ctx w = {.items = g_ptr_array_new(), .root = root, .err = &err};
    GHashTable *unmatched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    label_stats ls = {.not_classes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL)};
    char *csv_path = NULL, *html_path = NULL, *images_dir = NULL, *thumbs_dir = NULL;
    int lock = -1, n = 0;
    review_item **items = NULL;
    if (walk(&w, root, "", 0) != 0) {
        fprintf(stderr, "dermlens review: %s\n", cli_disp(err.message));
        goto out;
    }
    n = (int)w.items->len;
    items = (review_item **)w.items->pdata;
    if (n == 0) {
        fprintf(stderr, "dermlens review: no images under %s (looked for .png, .jpg, .jpeg, .tif, .tiff, .bmp%s)\n",
                cli_disp(args[0]), w.skipped ? "; other files were skipped" : "");
        goto out;
    }
    if (labels) {
        if (csv_labels(m, w.items, root, labels, label_col, &ls) != 0) goto out;
    } else {
        folder_labels(m, w.items, root, unmatched);
    }

    csv_path = g_build_filename(out_abs, "review.csv", NULL);
    html_path = g_build_filename(out_abs, "index.html", NULL);
    images_dir = g_build_filename(out_abs, "images", NULL);
    thumbs_dir = g_build_filename(out_abs, "thumbs", NULL);
    if (make_dir(out_abs) || make_dir(images_dir) || make_dir(thumbs_dir) || cli_check_output("review", csv_path) ||
        cli_check_output("review", html_path))
        goto out;
    /* a second review writing into the same folder is refused */
    lock = dl_output_lock(csv_path, &err);
    if (lock < 0) {
        fprintf(stderr, "dermlens review: %s\n", cli_disp(err.message));
        goto out;
    }
    remove_old_outputs(images_dir);
    remove_old_outputs(thumbs_dir);
    int digits = 4;
    for (int v = n; v >= 10000; v /= 10) digits++;
    for (int i = 0; i < n; i++) items[i]->out_name = output_name(i, digits, items[i]->rel);

    int has_text = review_render_has_text();
    if (!has_text)
        fprintf(stderr, "dermlens review: built without cairo: the annotated images carry the overlay but no label box\n");
    dl_saliency_method sm = (dl_saliency_method)mi;
    printf("Reviewing %d image%s under %s with %s (%s saliency)...\n", n, n == 1 ? "" : "s", cli_disp(args[0]),
           cli_disp(dl_model_name(m)), dh_method_title(sm));
    fflush(stdout);
    review_job job = {.items = items, .K = K, .model_path = mp, .method = sm, .method_title = dh_method_title(sm),
                      .opacity = opacity, .images_dir = images_dir, .thumbs_dir = thumbs_dir};
    char **errors = g_new0(char *, n);
    cli_run_parallel(m, mp, n, threads, "review", review_one, &job, errors);
    for (int i = 0; i < n; i++) {
        /* a worker that could not run leaves neither result nor error */
        if (!items[i]->ok && !items[i]->error)
            items[i]->error = g_strdup(errors[i] ? errors[i] : "not analysed");
        g_free(errors[i]);
    }
    g_free(errors);

    qsort(items, n, sizeof *items, cmp_items);
    const char **names = g_new0(const char *, K), **long_names = g_new0(const char *, K);
    for (int c = 0; c < K; c++) {
        names[c] = dl_model_class_name(m, c);
        long_names[c] = dl_model_class_long_name(m, c);
    }
    GDateTime *now = g_date_time_new_now_local();
    char *when = g_date_time_format(now, "%Y-%m-%d %H:%M");
    g_date_time_unref(now);
    char *labels_base = labels ? g_path_get_basename(labels) : NULL;
    review_page page = {.dataset = args[0], .model_name = dl_model_name(m), .model_sha = dl_model_sha256(m),
                        .method = dh_method_title(sm), .n_classes = K, .class_names = names,
                        .class_long_names = long_names, .items = items, .n = n, .generated = when};
    for (int i = 0; i < n; i++) {
        const review_item *it = items[i];
        page.n_ok += it->ok;
        page.n_failed += !it->ok;
        page.n_labelled += it->ok && it->label >= 0;
        page.n_disagree += it->ok && it->disagree;
        page.n_ood += it->ok && it->ood;
    }
    page.labels_from = labels ? labels_base : page.n_labelled ? "class subfolders" : NULL;
    int wrc = write_csv(csv_path, &page, &err);
    if (wrc == 0) wrc = review_write_html(html_path, &page, &err);
    g_free(names);
    g_free(long_names);
    g_free(when);
    g_free(labels_base);
    if (wrc != 0) {
        fprintf(stderr, "dermlens review: %s\n", cli_disp(err.message));
        goto out;
    }

    /* what the user should know, failures by name */
    for (int i = 0; i < n; i++)
        if (!items[i]->ok) fprintf(stderr, "dermlens review: failed: %s: %s\n", cli_disp(items[i]->rel), cli_disp(items[i]->error));
    if (!labels && page.n_labelled < page.n_ok && g_hash_table_size(unmatched))
        print_names("no label for images in folders that name no class of the model", unmatched);
    if (labels) {
        if (ls.not_class) print_names("labels that are not classes of the model (images kept, no suspicion)", ls.not_classes);
        if (ls.matched < n)
            fprintf(stderr, "dermlens review: %d image%s not in %s (no label)\n", n - ls.matched,
                    n - ls.matched == 1 ? " is" : "s are", cli_disp(labels));
        if (ls.ambiguous)
            fprintf(stderr, "dermlens review: %d image id%s given two different labels in %s (no label)\n", ls.ambiguous,
                    ls.ambiguous == 1 ? " is" : "s are", cli_disp(labels));
        if (ls.csv_unused)
            fprintf(stderr, "dermlens review: %d row%s of %s match no image under %s\n", ls.csv_unused,
                    ls.csv_unused == 1 ? "" : "s", cli_disp(labels), cli_disp(args[0]));
    }
    printf("%d image%s: %d reviewed, %d failed", n, n == 1 ? "" : "s", page.n_ok, page.n_failed);
    if (page.n_labelled)
        printf("; %d labelled, %d disagree%s with their label", page.n_labelled, page.n_disagree,
               page.n_disagree == 1 ? "s" : "");
    printf("; %d flagged out of distribution", page.n_ood);
    if (w.skipped) printf("; %d other file%s skipped", w.skipped, w.skipped == 1 ? "" : "s");
    printf("\nwrote %s and %s (%s)\n", cli_disp(html_path), cli_disp(csv_path), DL_DISCLAIMER);
    ret = page.n_failed || w.unreadable ? 3 : 0;
out:
    if (lock >= 0) dl_output_unlock(csv_path, lock);
    for (guint i = 0; i < w.items->len; i++) free_item(w.items->pdata[i]);
    g_ptr_array_free(w.items, TRUE);
    g_hash_table_destroy(unmatched);
    g_hash_table_destroy(ls.not_classes);
    g_free(csv_path);
    g_free(html_path);
    g_free(images_dir);
    g_free(thumbs_dir);
    g_free(out_abs);
    dl_model_free(m);
out_args:
    g_strfreev(args);
    g_free(model_path);
    g_free(out_dir);
    g_free(labels);
    g_free(label_col);
    g_free(method);
    g_free(threads_arg);
    return ret;
}
