/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Dataset review, the run: walk the dataset, read the given labels (class
 * subfolders or a CSV), take each decoded image from the front end,
 * analyse and annotate it, and write the CSV (sorted by suspicion) and the
 * page. Shared by `dermlens review` and the plug-in's Batch Review. */
#include "review_int.h"
#include "dermlens_io.h"

#include <ctype.h>
#include <dirent.h>
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

/* Listed, and shown as failed when they cannot be decoded (GIF, WebP, HEIF
 * are listed so that a user learns why they were not reviewed). */
static const char *const image_exts[] = {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp", ".dib",
                                         ".gif", ".webp", ".heic", ".heif", ".avif", NULL};

struct dh_review {
    const dl_model *m;
    int K;
    dl_saliency_method method;
    double opacity;
    const dh_text_painter *painter;
    char root[PATH_MAX];
    char *out_dir, *csv_path, *html_path, *images_dir, *thumbs_dir, *labels_base;
    int lock;
    dh_review_item *items;
    dh_review_item **order; /* page order after finish */
    int n, cap;
    dh_review_summary sum;
};

/* ------------------------------------------------------------ small helpers */

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, na);
    s[na] = '/';
    memcpy(s + na + 1, b, nb + 1);
    return s;
}

static int ends_with_ci(const char *s, const char *end)
{
    size_t n = strlen(s), k = strlen(end);
    return n >= k && !strcasecmp(s + n - k, end);
}

static int path_inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (!strcmp(dir, "/"))
        return 1;
    return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == 0);
}

/* p made absolute against base and normalised ("." and ".." and repeated
 * slashes removed) without touching the file system. */
static char *canon(const char *p, const char *base)
{
    size_t n = strlen(p) + strlen(base) + 2;
    char *in = malloc(n), *out = malloc(n + 1);
    if (!in || !out) {
        free(in);
        free(out);
        return NULL;
    }
    if (p[0] == '/')
        snprintf(in, n, "%s", p);
    else
        snprintf(in, n, "%s/%s", base, p);
    size_t len = 0;
    char *save = NULL;
    out[0] = 0;
    for (char *tok = strtok_r(in, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, "."))
            continue;
        if (!strcmp(tok, "..")) {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
            out[len] = 0;
            continue;
        }
        out[len++] = '/';
        size_t k = strlen(tok);
        memcpy(out + len, tok, k);
        len += k;
        out[len] = 0;
    }
    if (!len)
        strcpy(out, "/");
    free(in);
    return out;
}

/* The file name of path without its extension (malloc'd). */
static char *stem_of(const char *path)
{
    const char *base = strrchr(path, '/');
    char *s = strdup(base ? base + 1 : path);
    if (!s)
        return NULL;
    char *dot = strrchr(s, '.');
    if (dot && dot != s)
        *dot = 0;
    return s;
}

/* A sorted list of distinct names with counts, for the warnings. */
typedef struct {
    char **names;
    int *counts;
    int n, cap;
} name_list;

static void names_add(name_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], name)) {
            l->counts[i]++;
            return;
        }
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 8;
        char **nn = realloc(l->names, (size_t)nc * sizeof *nn);
        if (!nn)
            return;
        l->names = nn;
        int *cc = realloc(l->counts, (size_t)nc * sizeof *cc);
        if (!cc)
            return;
        l->counts = cc;
        l->cap = nc;
    }
    if ((l->names[l->n] = strdup(name)) != NULL)
        l->counts[l->n++] = 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "a, b, ... (N in all)" (the first 8 in name order), printable UTF-8. */
static void names_format(name_list *l, char *buf, size_t size)
{
    buf[0] = 0;
    if (l->n > 1)
        qsort(l->names, (size_t)l->n, sizeof *l->names, cmp_str); /* counts are not needed after this */
    size_t used = 0;
    for (int i = 0; i < l->n && used + 1 < size; i++) {
        int w;
        if (i == 8) {
            w = snprintf(buf + used, size - used, ", ... (%d in all)", l->n);
            used += w > 0 ? (size_t)w : 0;
            break;
        }
        char *t = dl_text_sanitize(l->names[i]);
        w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", t ? t : "?");
        free(t);
        used += w > 0 ? (size_t)w : 0;
    }
    for (int i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->counts);
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------ the walk */

typedef struct {
    dh_review *rv;
    const char *const *more_exts;
    dl_error *err;
} walk_ctx;

static int is_image_name(const walk_ctx *w, const char *name)
{
    for (int i = 0; image_exts[i]; i++)
        if (ends_with_ci(name, image_exts[i]))
            return 1;
    for (int i = 0; w->more_exts && w->more_exts[i]; i++)
        if (ends_with_ci(name, w->more_exts[i]))
            return 1;
    return 0;
}

static dh_review_item *new_item(walk_ctx *w, const char *full, const char *rel)
{
    dh_review *rv = w->rv;
    if (rv->n == rv->cap) {
        int nc = rv->cap ? 2 * rv->cap : 64;
        dh_review_item *ni = realloc(rv->items, (size_t)nc * sizeof *ni);
        if (!ni)
            return NULL;
        rv->items = ni;
        rv->cap = nc;
    }
    dh_review_item *it = &rv->items[rv->n];
    memset(it, 0, sizeof *it);
    it->path = strdup(full);
    it->rel = strdup(rel);
    it->label = -1;
    it->pred = -1;
    it->suspicion = NAN;
    it->ood_score = NAN;
    if (!it->path || !it->rel) {
        free(it->path);
        free(it->rel);
        return NULL;
    }
    rv->n++;
    return it;
}

/* Folders in name order, depth first; hidden entries skipped. Links are
 * followed only to files inside the dataset; FIFOs and devices are listed as
 * failed without being opened (reading a FIFO would block). */
static int walk(walk_ctx *w, const char *dir, const char *rel, int depth)
{
    if (depth > MAX_DEPTH) {
        dh_set_err(w->err, DL_ERR_LIMIT, "%s: folders nested deeper than %d", dir, MAX_DEPTH);
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        w->rv->sum.unreadable++;
        return 0;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (nn == cap) {
            cap = cap ? 2 * cap : 64;
            char **n2 = realloc(names, cap * sizeof *n2);
            if (!n2) {
                rc = -1;
                break;
            }
            names = n2;
        }
        if (!(names[nn] = strdup(de->d_name))) {
            rc = -1;
            break;
        }
        nn++;
    }
    closedir(d);
    if (rc != 0)
        dh_set_err(w->err, DL_ERR_NOMEM, "out of memory listing %s", dir);
    if (nn > 1)
        qsort(names, nn, sizeof *names, cmp_str);
    for (size_t i = 0; i < nn && rc == 0; i++) {
        const char *name = names[i];
        char *full = join(dir, name);
        char *r = rel[0] ? join(rel, name) : strdup(name);
        struct stat lsb, sb;
        dh_review_item *it = NULL;
        int want = 0;
        if (!full || !r) {
            dh_set_err(w->err, DL_ERR_NOMEM, "out of memory listing %s", dir);
            rc = -1;
        } else if (lstat(full, &lsb) != 0) {
            /* vanished meanwhile */
        } else if (S_ISDIR(lsb.st_mode)) {
            rc = walk(w, full, r, depth + 1);
        } else if (!is_image_name(w, name)) {
            if (!S_ISLNK(lsb.st_mode) || (stat(full, &sb) == 0 && !S_ISDIR(sb.st_mode)))
                w->rv->sum.skipped++;
        } else {
            want = 1;
        }
        if (want) {
            if (!(it = new_item(w, full, r))) {
                dh_set_err(w->err, DL_ERR_NOMEM, "out of memory listing %s", dir);
                rc = -1;
            } else if (S_ISLNK(lsb.st_mode)) {
                char target[PATH_MAX];
                if (!realpath(full, target) || stat(target, &sb) != 0)
                    it->refused = "a symbolic link whose target does not exist; not followed";
                else if (!path_inside(target, w->rv->root))
                    it->refused = "a symbolic link to something outside the dataset folder; not followed";
                else if (!S_ISREG(sb.st_mode))
                    it->refused = "a symbolic link to something that is not a regular file; not followed";
            } else if (!S_ISREG(lsb.st_mode)) {
                it->refused = S_ISFIFO(lsb.st_mode) ? "a FIFO (named pipe), not a regular file; not read"
                                                    : "not a regular file (a device or socket); not read";
            }
        }
        free(full);
        free(r);
        if (rc == 0 && w->rv->n > MAX_FILES) {
            dh_set_err(w->err, DL_ERR_LIMIT, "more than %d images", MAX_FILES);
            rc = -1;
        }
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ------------------------------------------------------------ labels */

/* s folded for comparing labels: ASCII lower case, '_' and '-' as spaces. */
static void fold(const char *s, char *out, size_t size)
{
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        out[i] = s[i] == '_' || s[i] == '-' ? ' ' : (char)tolower((unsigned char)s[i]);
    out[i] = 0;
}

/* The model's class for a label as written: its code ("mel"), else its
 * code or long name ignoring case, '_' and '-' read as spaces. */
static int class_of(const dl_model *m, const char *label)
{
    int K = dl_model_num_classes(m);
    for (int c = 0; c < K; c++)
        if (!strcmp(dl_model_class_name(m, c), label))
            return c;
    char want[256], have[256];
    fold(label, want, sizeof want);
    for (int c = 0; c < K; c++) {
        const char *names[2] = {dl_model_class_name(m, c), dl_model_class_long_name(m, c)};
        for (int k = 0; k < 2; k++) {
            if (!names[k])
                continue;
            fold(names[k], have, sizeof have);
            if (!strcmp(have, want))
                return c;
        }
    }
    return -1;
}

/* The class subfolder nearest to the file, then the dataset folder's own
 * name (reviewing DATA/mel reviews melanomas). Folders that name no class
 * of the model are collected in unmatched. */
static void folder_labels(dh_review *rv, name_list *unmatched)
{
    const char *root_base = strrchr(rv->root, '/');
    root_base = root_base && root_base[1] ? root_base + 1 : rv->root;
    for (int i = 0; i < rv->n; i++) {
        dh_review_item *it = &rv->items[i];
        char *copy = strdup(it->rel);
        if (!copy)
            continue;
        /* the folder parts: every '/' ends one */
        char *parts[MAX_DEPTH + 2];
        int np = 0;
        parts[np++] = copy;
        for (char *c = copy; *c && np < MAX_DEPTH + 2; c++)
            if (*c == '/') {
                *c = 0;
                parts[np++] = c + 1;
            }
        for (int k = np - 2; k >= -1 && it->label < 0; k--) {
            const char *f = k >= 0 ? parts[k] : root_base;
            int c = class_of(rv->m, f);
            if (c >= 0) {
                it->label = c;
                it->label_text = strdup(f);
            }
        }
        if (it->label < 0 && np >= 2)
            names_add(unmatched, parts[np - 2]);
        free(copy);
    }
}

static int first_column(const dl_csv_table *t, const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        int c = dl_csv_table_column(t, names[i]);
        if (c >= 0)
            return c;
    }
    return -1;
}

/* A key -> CSV row map: a sorted array searched by bisection. */
typedef struct {
    char *key;
    int row; /* 1-based; -2: an id given two different labels */
} key_row;

static int cmp_key_row(const void *a, const void *b)
{
    const key_row *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : x->row - y->row;
}

static int lookup(const key_row *k, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(k[mid].key, key);
        if (c == 0)
            return k[mid].row;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static void keys_free(key_row *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(k[i].key);
    free(k);
}

/* Labels from a CSV: rows are matched to images by their path (relative to
 * the CSV's folder or to the dataset folder) or by image id (the file name
 * without extension). The engine's CSV reader does the parsing. */
static int csv_labels(dh_review *rv, const char *csv_path, const char *label_col, name_list *not_classes,
                      dl_error *err)
{
    dl_csv_table t;
    dl_error e = {0};
    if (dl_csv_table_load(csv_path, &t, &e) != 0) {
        dh_set_err(err, e.code, "--labels: %s", e.message);
        return -1;
    }
    static const char *const path_cols[] = {"path", "file", "filename", "image_path", NULL};
    static const char *const id_cols[] = {"image_id", "image", "id", "isic_id", "image_name", NULL};
    static const char *const label_cols[] = {"label", "dx", "ham10000_class", "class", "diagnosis", NULL};
    int cp = first_column(&t, path_cols), ci = first_column(&t, id_cols);
    int cl = label_col ? dl_csv_table_column(&t, label_col) : first_column(&t, label_cols);
    if (cl < 0 || (cp < 0 && ci < 0)) {
        dh_set_err(err, DL_ERR_FORMAT, "--labels %s: %s", csv_path,
                   cl < 0 ? (label_col ? "no such label column (see --label-column)"
                                       : "no label column (label, dx, ham10000_class, class or diagnosis; or --label-column)")
                          : "no column naming the image (path, file, filename, image_path, or image_id, image, id)");
        dl_csv_table_free(&t);
        return -1;
    }
    int rc = -1;
    char real_dir[PATH_MAX], cwd[PATH_MAX];
    char *csv_dir = strdup(csv_path), *csv_abs = NULL;
    key_row *by_path = calloc(2 * (size_t)t.n_rows + 1, sizeof *by_path);
    key_row *by_id = calloc((size_t)t.n_rows + 1, sizeof *by_id);
    char *used = calloc((size_t)t.n_rows + 1, 1);
    size_t np = 0, ni = 0;
    if (!csv_dir || !by_path || !by_id || !used)
        goto nomem;
    char *slash = strrchr(csv_dir, '/');
    if (slash)
        slash == csv_dir ? (void)(slash[1] = 0) : (void)(*slash = 0);
    else
        strcpy(csv_dir, ".");
    /* resolved like the dataset folder, so the two compare as paths */
    if (realpath(csv_dir, real_dir))
        csv_abs = strdup(real_dir);
    else
        csv_abs = canon(csv_dir, getcwd(cwd, sizeof cwd) ? cwd : "/");
    if (!csv_abs)
        goto nomem;
    for (int r = 0; r < t.n_rows; r++) {
        const char *lab = t.cells[(size_t)r * t.n_cols + cl];
        if (!lab[0])
            continue;
        if (cp >= 0) {
            const char *p = t.cells[(size_t)r * t.n_cols + cp];
            if (p[0]) {
                if (!(by_path[np].key = canon(p, csv_abs)))
                    goto nomem;
                by_path[np++].row = r + 1;
                if (!(by_path[np].key = strdup(p)))
                    goto nomem;
                by_path[np++].row = r + 1;
            }
        }
        char *id = ci >= 0 ? strdup(t.cells[(size_t)r * t.n_cols + ci]) : stem_of(t.cells[(size_t)r * t.n_cols + cp]);
        if (!id)
            goto nomem;
        if (!id[0]) {
            free(id);
            continue;
        }
        by_id[ni].key = id;
        by_id[ni++].row = r + 1;
    }
    /* paths: the last row naming a key wins; ids: the first, unless another
     * row gives the id a different label (then it is ambiguous) */
    qsort(by_path, np, sizeof *by_path, cmp_key_row);
    size_t w = 0;
    for (size_t i = 0; i < np; i++) {
        if (w && !strcmp(by_path[w - 1].key, by_path[i].key)) {
            free(by_path[w - 1].key);
            by_path[w - 1] = by_path[i];
        } else {
            by_path[w++] = by_path[i];
        }
    }
    np = w;
    qsort(by_id, ni, sizeof *by_id, cmp_key_row);
    w = 0;
    for (size_t i = 0; i < ni; i++) {
        if (w && !strcmp(by_id[w - 1].key, by_id[i].key)) {
            if (by_id[w - 1].row > 0 &&
                strcmp(t.cells[(size_t)(by_id[w - 1].row - 1) * t.n_cols + cl],
                       t.cells[(size_t)(by_id[i].row - 1) * t.n_cols + cl]))
                by_id[w - 1].row = -2;
            free(by_id[i].key);
        } else {
            by_id[w++] = by_id[i];
        }
    }
    ni = w;
    for (int i = 0; i < rv->n; i++) {
        dh_review_item *it = &rv->items[i];
        char *abs = canon(it->rel, rv->root);
        int row = abs ? lookup(by_path, np, abs) : 0;
        free(abs);
        if (!row)
            row = lookup(by_path, np, it->rel);
        if (!row) {
            char *stem = stem_of(it->rel);
            row = stem ? lookup(by_id, ni, stem) : 0;
            free(stem);
            if (row == -2) {
                rv->sum.csv_ambiguous++;
                continue;
            }
        }
        if (row <= 0)
            continue;
        used[row - 1] = 1;
        const char *lab = t.cells[(size_t)(row - 1) * t.n_cols + cl];
        it->label_text = strdup(lab);
        it->label = class_of(rv->m, lab);
        rv->sum.csv_matched++;
        if (it->label < 0) {
            rv->sum.csv_not_class++;
            names_add(not_classes, lab);
        }
    }
    rv->sum.csv_rows = t.n_rows;
    for (int r = 0; r < t.n_rows; r++)
        rv->sum.csv_unused += !used[r];
    rc = 0;
    goto out;
nomem:
    dh_set_err(err, DL_ERR_NOMEM, "out of memory reading %s", csv_path);
out:
    keys_free(by_path, np);
    keys_free(by_id, ni);
    free(used);
    free(csv_dir);
    free(csv_abs);
    dl_csv_table_free(&t);
    return rc;
}

/* ------------------------------------------------------------ outputs */

/* "<index>-<stem>.png" from safe characters only, so no name needs quoting
 * in a URL or escaping in a shell, and two images never share an output. */
static char *output_name(int index, int width, const char *rel)
{
    char *stem = stem_of(rel);
    char *s = malloc(24 + 60 + 5); /* index (width <= 7 digits), '-', 60 of the stem, ".png" */
    if (!stem || !s) {
        free(stem);
        free(s);
        return NULL;
    }
    int k = snprintf(s, 24, "%0*d-", width, index + 1), n = 0;
    for (const char *c = stem; *c && n < 60; c++, n++)
        s[k++] = isalnum((unsigned char)*c) || *c == '-' || *c == '_' ? *c : '_';
    memcpy(s + k, ".png", 5);
    free(stem);
    return s;
}

/* Outputs of an earlier run in images/ and thumbs/ (our names only), so the
 * folder shows this run alone. */
static void remove_old_outputs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t k = strspn(nm, "0123456789");
        if (k < 4 || nm[k] != '-' || !ends_with_ci(nm, ".png"))
            continue;
        char *full = join(dir, nm);
        struct stat lsb;
        if (full && lstat(full, &lsb) == 0 && S_ISREG(lsb.st_mode))
            unlink(full);
        free(full);
    }
    closedir(d);
}

/* path as a folder we may write into: created (with its parents) when
 * missing, never a symbolic link. */
static int make_dir(const char *path, dl_error *err)
{
    struct stat lsb;
    if (lstat(path, &lsb) == 0) {
        if (S_ISDIR(lsb.st_mode))
            return 0;
        dh_set_err(err, DL_ERR_ARG, "%s exists and is not a folder%s", path,
                   S_ISLNK(lsb.st_mode) ? " (a symbolic link; not followed)" : "");
        return -1;
    }
    char *tmp = strdup(path);
    if (!tmp) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory");
        return -1;
    }
    for (char *c = tmp + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(tmp, 0777);
            *c = '/';
        }
    int rc = mkdir(tmp, 0777) == 0 || errno == EEXIST ? 0 : -1;
    if (rc != 0)
        dh_set_err(err, DL_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    free(tmp);
    return rc;
}

/* Where path is or would be, resolved as far as it exists. */
static char *future_abs(const char *path)
{
    char cwd[PATH_MAX], real[PATH_MAX];
    char *abs = canon(path, getcwd(cwd, sizeof cwd) ? cwd : "/");
    if (abs && realpath(abs, real)) {
        free(abs);
        return strdup(real);
    }
    return abs;
}

/* 1 if path, or the nearest existing folder above it, lies in root. */
static int lands_inside(const char *abs, const char *root)
{
    char *probe = strdup(abs), real[PATH_MAX];
    if (!probe)
        return 0;
    while (!realpath(probe, real)) {
        char *s = strrchr(probe, '/');
        if (!s || s == probe) {
            strcpy(probe, "/");
            continue;
        }
        *s = 0;
    }
    free(probe);
    return path_inside(real, root) || path_inside(abs, root);
}

/* ------------------------------------------------------------ API */

double dh_review_suspicion(const float *probs, int k, int label)
{
    if (label < 0 || label >= k)
        return NAN;
    double other = 0;
    for (int c = 0; c < k; c++)
        if (c != label && probs[c] > other)
            other = probs[c];
    return other - probs[label];
}

int dh_review_open(const dl_model *m, const dh_review_opts *o, dh_review **out, dl_error *err)
{
    *out = NULL;
    struct stat sb;
    if (!o->dataset || !o->dataset[0]) {
        dh_set_err(err, DL_ERR_ARG, "a dataset folder is required");
        return -1;
    }
    int want_dir = o->out_dir && o->out_dir[0];
    if (!want_dir && !(o->csv_path && o->csv_path[0])) {
        dh_set_err(err, DL_ERR_ARG, "an output folder or an output CSV file is required");
        return -1;
    }
    if (!(isfinite(o->opacity) && o->opacity >= 0 && o->opacity <= 100)) {
        dh_set_err(err, DL_ERR_ARG, "the overlay opacity must be a number from 0 to 100 (got %g)", o->opacity);
        return -1;
    }
    dh_review *rv = calloc(1, sizeof *rv);
    if (!rv) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory");
        return -1;
    }
    rv->m = m;
    rv->K = dl_model_num_classes(m);
    rv->method = o->method;
    rv->opacity = o->opacity;
    rv->painter = o->painter;
    rv->lock = -1;
    name_list unmatched = {0}, not_classes = {0};
    if (!realpath(o->dataset, rv->root) || stat(rv->root, &sb) != 0) {
        dh_set_err(err, DL_ERR_IO, "%s: %s", o->dataset, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(sb.st_mode)) {
        dh_set_err(err, DL_ERR_ARG, "%s is not a folder (give the folder that holds the images%s)", o->dataset,
                   ends_with_ci(o->dataset, ".csv") ? "; a CSV goes to --labels" : "");
        goto fail;
    }
    /* the outputs may not exist yet: judge where they would be */
    if (want_dir) {
        if (!(rv->out_dir = future_abs(o->out_dir)))
            goto nomem;
        if (lands_inside(rv->out_dir, rv->root)) {
            dh_set_err(err, DL_ERR_ARG, "the output folder %s must not be inside the dataset %s "
                       "(its images would be reviewed next time)", o->out_dir, rv->root);
            goto fail;
        }
        rv->html_path = join(rv->out_dir, "index.html");
        rv->images_dir = join(rv->out_dir, "images");
        rv->thumbs_dir = join(rv->out_dir, "thumbs");
        if (!rv->html_path || !rv->images_dir || !rv->thumbs_dir)
            goto nomem;
    }
    rv->csv_path = o->csv_path && o->csv_path[0] ? future_abs(o->csv_path) : join(rv->out_dir, "review.csv");
    if (!rv->csv_path)
        goto nomem;
    if (lands_inside(rv->csv_path, rv->root)) {
        dh_set_err(err, DL_ERR_ARG, "the CSV file %s must not be written into the dataset %s",
                   o->csv_path && o->csv_path[0] ? o->csv_path : rv->csv_path, rv->root);
        goto fail;
    }

    walk_ctx w = {.rv = rv, .more_exts = o->more_exts, .err = err};
    if (walk(&w, rv->root, "", 0) != 0)
        goto fail;
    if (rv->n == 0) {
        dh_set_err(err, DL_ERR_IO, "no images under %s (looked for .png, .jpg, .jpeg, .tif, .tiff, .bmp%s%s)",
                   o->dataset, o->more_exts && o->more_exts[0] ? " and the formats GIMP opens" : "",
                   rv->sum.skipped ? "; other files were skipped" : "");
        goto fail;
    }
    if (o->labels_csv && o->labels_csv[0]) {
        if (csv_labels(rv, o->labels_csv, o->label_column, &not_classes, err) != 0)
            goto fail;
        const char *b = strrchr(o->labels_csv, '/');
        if (!(rv->labels_base = strdup(b ? b + 1 : o->labels_csv)))
            goto nomem;
    } else {
        folder_labels(rv, &unmatched);
        rv->sum.from_folders = 1;
    }
    names_format(&unmatched, rv->sum.unmatched, sizeof rv->sum.unmatched);
    names_format(&not_classes, rv->sum.not_classes, sizeof rv->sum.not_classes);

    if (want_dir && (make_dir(rv->out_dir, err) || make_dir(rv->images_dir, err) || make_dir(rv->thumbs_dir, err)))
        goto fail;
    if (dl_output_check(rv->csv_path, err) != 0 || (rv->html_path && dl_output_check(rv->html_path, err) != 0))
        goto fail;
    /* a second review writing the same CSV is refused */
    if ((rv->lock = dl_output_lock(rv->csv_path, err)) < 0)
        goto fail;
    if (want_dir) {
        remove_old_outputs(rv->images_dir);
        remove_old_outputs(rv->thumbs_dir);
    }
    int digits = 4;
    for (int v = rv->n; v >= 10000; v /= 10)
        digits++;
    for (int i = 0; i < rv->n; i++)
        if (!(rv->items[i].out_name = output_name(i, digits, rv->items[i].rel)))
            goto nomem;
    *out = rv;
    return 0;
nomem:
    dh_set_err(err, DL_ERR_NOMEM, "out of memory");
fail:
    names_format(&unmatched, rv->sum.unmatched, sizeof rv->sum.unmatched);
    names_format(&not_classes, rv->sum.not_classes, sizeof rv->sum.not_classes);
    dh_review_close(rv);
    return -1;
}

int dh_review_count(const dh_review *rv)
{
    return rv->n;
}

const char *dh_review_path(const dh_review *rv, int i)
{
    return i >= 0 && i < rv->n ? rv->items[i].path : NULL;
}

const char *dh_review_rel(const dh_review *rv, int i)
{
    return i >= 0 && i < rv->n ? rv->items[i].rel : NULL;
}

const char *dh_review_refused(const dh_review *rv, int i)
{
    return i >= 0 && i < rv->n ? rv->items[i].refused : NULL;
}

void dh_review_fail(dh_review *rv, int i, const char *message)
{
    if (i < 0 || i >= rv->n)
        return;
    dh_review_item *it = &rv->items[i];
    const char *msg = message && message[0] ? message : "not analysed";
    /* the message without the path: the row already names the file */
    size_t n = strlen(it->path);
    if (!strncmp(msg, it->path, n) && msg[n] == ':')
        msg += n + 1 + (msg[n + 1] == ' ');
    free(it->error);
    it->error = strdup(msg);
    it->ok = 0;
    it->done = 1;
}

int dh_review_image(dh_review *rv, dl_model *m, int i, const dl_image *img, dl_error *err)
{
    if (i < 0 || i >= rv->n) {
        dh_set_err(err, DL_ERR_ARG, "no image %d in this review", i);
        return -1;
    }
    dh_review_item *it = &rv->items[i];
    dl_image small = {0};
    dh_analysis a = {0};
    int rc = 0;
    it->width = img->width;
    it->height = img->height;
    if (img->width < DL_MIN_REGION_SIDE || img->height < DL_MIN_REGION_SIDE) {
        dh_set_err(err, DL_ERR_ARG, "the image is %d x %d pixels; at least %d x %d are needed", img->width,
                   img->height, DL_MIN_REGION_SIDE, DL_MIN_REGION_SIDE);
        rc = -1;
    }
    const dl_image *use = img;
    if (rc == 0 && (img->width > DH_REVIEW_MAX_SIDE || img->height > DH_REVIEW_MAX_SIDE)) {
        double s = (double)DH_REVIEW_MAX_SIDE / (img->width > img->height ? img->width : img->height);
        int w = (int)lround(img->width * s), h = (int)lround(img->height * s);
        rc = dl_image_resize(img, w < 1 ? 1 : w, h < 1 ? 1 : h, &small, err);
        use = &small;
        it->scaled = 1;
    }
    if (rc == 0)
        rc = dh_analyse(m, use->pixels, use->width, use->height, use->stride, rv->method, rv->images_dir != NULL,
                        NULL, &a, err);
    if (rc == 0 && !(it->probs = malloc(sizeof(float) * (size_t)rv->K))) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        const dl_result *r = &a.result;
        memcpy(it->probs, r->probs, sizeof(float) * (size_t)rv->K);
        it->pred = r->top_index[0];
        it->ood_score = r->ood_score;
        it->ood_model = r->ood_flag;
        it->image_flag = a.image_flag;
        snprintf(it->image_reason, sizeof it->image_reason, "%s", a.image_reason);
        it->ood = it->ood_model || it->image_flag;
        it->uncertain = dh_verdict_of(r, a.image_flag) == DH_VERDICT_UNCERTAIN;
        it->suspicion = dh_review_suspicion(it->probs, rv->K, it->label);
        it->disagree = it->label >= 0 && it->pred != it->label;
        it->has_map = a.map != NULL;
        snprintf(it->saliency_note, sizeof it->saliency_note, "%s", a.map ? "" : a.saliency_note);
        if (rv->images_dir) {
            char *ip = join(rv->images_dir, it->out_name), *tp = join(rv->thumbs_dir, it->out_name);
            if (!ip || !tp) {
                dh_set_err(err, DL_ERR_NOMEM, "out of memory");
                rc = -1;
            } else {
                rc = dh_review_render(rv->m, use, a.map, rv->opacity, it, r, dh_method_title(rv->method), rv->painter,
                                      ip, tp, &it->thumb_w, &it->thumb_h, err);
            }
            free(ip);
            free(tp);
        }
    }
    dh_analysis_free(&a);
    dl_image_free(&small);
    if (rc == 0) {
        it->ok = 1;
        it->done = 1;
    } else {
        free(it->probs);
        it->probs = NULL;
        dh_review_fail(rv, i, err->message[0] ? err->message : dl_status_name(err->code));
    }
    return rc;
}

/* Page and CSV order: labelled images by suspicion (most suspicious first),
 * then unlabelled ones, then failures; ties by path. */
static int cmp_items(const void *pa, const void *pb)
{
    const dh_review_item *a = *(dh_review_item *const *)pa, *b = *(dh_review_item *const *)pb;
    int ga = !a->ok ? 2 : isnan(a->suspicion) ? 1 : 0, gb = !b->ok ? 2 : isnan(b->suspicion) ? 1 : 0;
    if (ga != gb)
        return ga - gb;
    if (ga == 0 && a->suspicion != b->suspicion)
        return a->suspicion > b->suspicion ? -1 : 1;
    return strcmp(a->rel, b->rel);
}

/* The CSV of items (n of them, in the given order; done ones only when
 * partial), written atomically. */
static int write_csv(dh_review *rv, dh_review_item **items, int n, int partial, dl_error *err)
{
    dh_str s = {0};
    dh_str_puts(&s, "rank,path,label,prediction,confidence");
    for (int c = 0; c < rv->K; c++) {
        char h[300];
        snprintf(h, sizeof h, "p_%s", dl_model_class_name(rv->m, c));
        dh_str_put(&s, ",", 1);
        dh_str_csv(&s, h);
    }
    dh_str_puts(&s, ",ood_score,ood_flag,ood_reason,suspicion,disagree,annotated,thumbnail,error\n");
    int rank = 0;
    for (int i = 0; i < n; i++) {
        const dh_review_item *it = items[i];
        if (partial && !it->done)
            continue;
        dh_str_printf(&s, "%d,", ++rank);
        dh_str_csv(&s, it->rel);
        dh_str_put(&s, ",", 1);
        dh_str_csv(&s, it->label_text);
        dh_str_put(&s, ",", 1);
        if (it->ok) {
            dh_str_csv(&s, dl_model_class_name(rv->m, it->pred));
            dh_str_printf(&s, ",%.6f", (double)it->probs[it->pred]);
            for (int c = 0; c < rv->K; c++)
                dh_str_printf(&s, ",%.6f", (double)it->probs[c]);
            dh_str_put(&s, ",", 1);
            if (isfinite(it->ood_score))
                dh_str_printf(&s, "%.3f", (double)it->ood_score);
            dh_str_printf(&s, ",%d,", it->ood);
            char reason[192] = "";
            if (it->image_flag)
                snprintf(reason, sizeof reason, "image check: %s", it->image_reason);
            else if (it->ood_model)
                snprintf(reason, sizeof reason, "OOD score above the model's threshold");
            dh_str_csv(&s, reason);
            dh_str_put(&s, ",", 1);
            if (!isnan(it->suspicion))
                dh_str_printf(&s, "%.4f", it->suspicion);
            dh_str_put(&s, ",", 1);
            if (it->label >= 0)
                dh_str_printf(&s, "%d", it->disagree);
            if (rv->images_dir)
                dh_str_printf(&s, ",images/%s,thumbs/%s,", it->out_name, it->out_name);
            else
                dh_str_puts(&s, ",,,");
            if (!it->has_map && rv->images_dir)
                dh_str_csv(&s, it->saliency_note);
            dh_str_put(&s, "\n", 1);
        } else {
            dh_str_put(&s, ",", 1);
            for (int c = 0; c < rv->K; c++)
                dh_str_put(&s, ",", 1);
            dh_str_puts(&s, ",,,,,,,,"); /* empty ood_score .. thumbnail, then the error */
            dh_str_csv(&s, it->error);
            dh_str_put(&s, "\n", 1);
        }
    }
    int rc;
    if (s.oom) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory building the CSV");
        rc = -1;
    } else {
        rc = dl_write_file_atomic(rv->csv_path, s.data ? s.data : "", s.len, err);
    }
    dh_str_free(&s);
    return rc;
}

int dh_review_checkpoint(dh_review *rv, dl_error *err)
{
    dh_review_item **items = malloc((size_t)rv->n * sizeof *items);
    if (!items) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory");
        return -1;
    }
    for (int i = 0; i < rv->n; i++)
        items[i] = &rv->items[i];
    int rc = write_csv(rv, items, rv->n, 1, err);
    free(items);
    return rc;
}

int dh_review_finish(dh_review *rv, const char *dataset_shown, dh_review_summary *sum, dl_error *err)
{
    free(rv->order);
    if (!(rv->order = malloc((size_t)rv->n * sizeof *rv->order))) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory");
        return -1;
    }
    for (int i = 0; i < rv->n; i++) {
        if (!rv->items[i].done)
            dh_review_fail(rv, i, rv->items[i].refused ? rv->items[i].refused : "not analysed");
        rv->order[i] = &rv->items[i];
    }
    qsort(rv->order, (size_t)rv->n, sizeof *rv->order, cmp_items);
    dh_review_summary *s = &rv->sum;
    s->n = rv->n;
    s->ok = s->failed = s->labelled = s->disagree = s->ood = 0;
    for (int i = 0; i < rv->n; i++) {
        const dh_review_item *it = rv->order[i];
        s->ok += it->ok;
        s->failed += !it->ok;
        s->labelled += it->ok && it->label >= 0;
        s->disagree += it->ok && it->disagree;
        s->ood += it->ok && it->ood;
    }
    if (sum)
        *sum = *s;
    int rc = write_csv(rv, rv->order, rv->n, 0, err);
    if (rc != 0 || !rv->html_path)
        return rc;

    const char **names = calloc((size_t)rv->K + 1, sizeof *names),
               **long_names = calloc((size_t)rv->K + 1, sizeof *long_names);
    if (!names || !long_names) {
        free(names);
        free(long_names);
        dh_set_err(err, DL_ERR_NOMEM, "out of memory");
        return -1;
    }
    for (int c = 0; c < rv->K; c++) {
        names[c] = dl_model_class_name(rv->m, c);
        long_names[c] = dl_model_class_long_name(rv->m, c);
    }
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
    dh_review_page page = {.dataset = dataset_shown ? dataset_shown : rv->root,
                           .labels_from = rv->labels_base ? rv->labels_base
                                          : s->labelled ? "class subfolders" : NULL,
                           .model_name = dl_model_name(rv->m), .model_sha = dl_model_sha256(rv->m),
                           .method = dh_method_title(rv->method), .n_classes = rv->K, .class_names = names,
                           .class_long_names = long_names, .items = rv->order, .n = rv->n, .n_ok = s->ok,
                           .n_failed = s->failed, .n_labelled = s->labelled, .n_disagree = s->disagree,
                           .n_ood = s->ood, .generated = when};
    rc = dh_review_write_html(rv->html_path, &page, err);
    free(names);
    free(long_names);
    return rc;
}

int dh_review_result(const dh_review *rv, int i, const char **rel, const char **error)
{
    if (!rv->order || i < 0 || i >= rv->n)
        return -1;
    *rel = rv->order[i]->rel;
    *error = rv->order[i]->ok ? NULL : rv->order[i]->error;
    return 0;
}

const char *dh_review_csv_path(const dh_review *rv)
{
    return rv->csv_path;
}

const char *dh_review_html_path(const dh_review *rv)
{
    return rv->html_path;
}

void dh_review_close(dh_review *rv)
{
    if (!rv)
        return;
    if (rv->lock >= 0)
        dl_output_unlock(rv->csv_path, rv->lock);
    for (int i = 0; i < rv->n; i++) {
        dh_review_item *it = &rv->items[i];
        free(it->path);
        free(it->rel);
        free(it->label_text);
        free(it->error);
        free(it->probs);
        free(it->out_name);
    }
    free(rv->items);
    free(rv->order);
    free(rv->out_dir);
    free(rv->csv_path);
    free(rv->html_path);
    free(rv->images_dir);
    free(rv->thumbs_dir);
    free(rv->labels_base);
    free(rv);
}
