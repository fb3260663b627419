/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Labelled image lists (class subfolders or CSV) and parallel decoding.
 * CSV text is untrusted: line/field sizes are bounded and every error names
 * the file and line. */
#include "base/base.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_ROWS 10000000
#define MAX_FIELDS 256
#define MAX_FIELD_LEN 4096
#define MAX_CLASSES 1000

void dl_dataset_free(dl_dataset *ds)
{
    if (!ds) return;
    for (int i = 0; i < ds->n; i++) {
        if (ds->paths) free(ds->paths[i]);
        if (ds->groups) free(ds->groups[i]);
    }
    for (int i = 0; i < ds->n_classes; i++) free(ds->class_names[i]);
    free(ds->paths);
    free(ds->labels);
    free(ds->groups);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}

/* Growing list of (path, label name, group). */
typedef struct {
    int n, cap;
    char **paths, **labels, **groups;
} rows;

static int rows_push(rows *r, char *path, char *label, char *group, dl_error *err)
{
    if (r->n >= MAX_ROWS) return dl_fail(err, DL_ERR_LIMIT, "more than %d rows", MAX_ROWS);
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 256;
        char **p = realloc(r->paths, sizeof(char *) * cap);
        if (p) r->paths = p;
        char **l = realloc(r->labels, sizeof(char *) * cap);
        if (l) r->labels = l;
        char **g = realloc(r->groups, sizeof(char *) * cap);
        if (g) r->groups = g;
        if (!p || !l || !g) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
        r->cap = cap;
    }
    r->paths[r->n] = path;
    r->labels[r->n] = label;
    r->groups[r->n] = group;
    r->n++;
    return 0;
}

static void rows_free(rows *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->paths[i]);
        free(r->labels[i]);
        free(r->groups[i]);
    }
    free(r->paths);
    free(r->labels);
    free(r->groups);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Turn rows into a dataset: resolve class indices. Takes ownership of the
 * strings in r (moved or freed). */
static int rows_to_dataset(rows *r, const dl_dataset_options *o, const char *src, dl_dataset *ds,
                           dl_error *err)
{
    memset(ds, 0, sizeof *ds);
    int rc = -1;
    if (o && o->class_order && o->n_class_order > 0) {
        if (o->n_class_order > MAX_CLASSES) { dl_fail(err, DL_ERR_ARG, "too many classes"); goto out; }
        ds->class_names = calloc(o->n_class_order, sizeof(char *));
        if (!ds->class_names) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        for (int i = 0; i < o->n_class_order; i++) {
            ds->class_names[i] = strdup(o->class_order[i]);
            ds->n_classes++;
            if (!ds->class_names[i]) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        }
    } else {
        /* sorted unique labels */
        char **tmp = malloc(sizeof(char *) * (r->n ? r->n : 1));
        if (!tmp) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        if (r->n) memcpy(tmp, r->labels, sizeof(char *) * r->n); /* labels is NULL when no rows */
        qsort(tmp, r->n, sizeof(char *), cmp_str);
        int u = 0;
        for (int i = 0; i < r->n; i++)
            if (u == 0 || strcmp(tmp[u - 1], tmp[i])) tmp[u++] = tmp[i];
        if (u > MAX_CLASSES) { free(tmp); dl_fail(err, DL_ERR_DATA, "%s: more than %d classes", src, MAX_CLASSES); goto out; }
        ds->class_names = calloc(u ? u : 1, sizeof(char *));
        if (!ds->class_names) { free(tmp); dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
        for (int i = 0; i < u; i++) {
            ds->class_names[i] = strdup(tmp[i]);
            ds->n_classes++;
        }
        free(tmp);
    }
    ds->paths = calloc(r->n ? r->n : 1, sizeof(char *));
    ds->groups = calloc(r->n ? r->n : 1, sizeof(char *));
    ds->labels = calloc(r->n ? r->n : 1, sizeof(int));
    if (!ds->paths || !ds->groups || !ds->labels) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    for (int i = 0; i < r->n; i++) {
        int lab = -1;
        for (int c = 0; c < ds->n_classes; c++)
            if (strcmp(ds->class_names[c], r->labels[i]) == 0) { lab = c; break; }
        if (lab < 0) {
            if (o && o->allow_subset) continue;
            dl_fail(err, DL_ERR_DATA, "%s: label \"%s\" of %s is not a known class", src, r->labels[i], r->paths[i]);
            goto out;
        }
        ds->paths[ds->n] = r->paths[i];
        ds->groups[ds->n] = r->groups[i];
        r->paths[i] = r->groups[i] = NULL;
        ds->labels[ds->n++] = lab;
    }
    if (ds->n == 0) { dl_fail(err, DL_ERR_DATA, "%s: no labelled images", src); goto out; }
    rc = 0;
out:
    rows_free(r);
    if (rc) dl_dataset_free(ds);
    return rc;
}

static bool is_image_name(const char *n)
{
    const char *dot = strrchr(n, '.');
    if (!dot) return false;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png") ||
           !strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff") || !strcasecmp(dot, ".bmp");
}

static int open_dir(const char *path, const dl_dataset_options *o, dl_dataset *ds, dl_error *err)
{
    rows r = {0};
    DIR *d = opendir(path);
    if (!d) return dl_fail(err, DL_ERR_IO, "%s: cannot open folder", path);
    struct dirent *de;
    char **classes = NULL;
    int nc = 0, cap = 0, rc = -1;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        struct stat st;
        if (stat(sub, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        if (nc == cap) {
            cap = cap ? cap * 2 : 16;
            char **c = realloc(classes, sizeof(char *) * cap);
            if (!c) { closedir(d); dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
            classes = c;
        }
        classes[nc++] = strdup(de->d_name);
        if (nc > MAX_CLASSES) { closedir(d); dl_fail(err, DL_ERR_LIMIT, "%s: too many subfolders", path); goto out; }
    }
    closedir(d);
    if (nc == 0) { dl_fail(err, DL_ERR_DATA, "%s: no class subfolders (expected DIR/<class>/<image>)", path); goto out; }
    qsort(classes, nc, sizeof(char *), cmp_str);
    for (int c = 0; c < nc; c++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, classes[c]);
        struct dirent **list = NULL;
        int n = scandir(sub, &list, NULL, alphasort); /* sorted: deterministic order */
        if (n < 0) { dl_fail(err, DL_ERR_IO, "%s: cannot list", sub); goto out; }
        for (int i = 0; i < n; i++) {
            if (list[i]->d_name[0] != '.' && is_image_name(list[i]->d_name)) {
                char *p = malloc(strlen(sub) + strlen(list[i]->d_name) + 2);
                if (p) sprintf(p, "%s/%s", sub, list[i]->d_name);
                char *l = strdup(classes[c]);
                if (!p || !l || rows_push(&r, p, l, NULL, err)) {
                    free(p);
                    free(l);
                    for (int j = i; j < n; j++) free(list[j]);
                    free(list);
                    goto out;
                }
            }
            free(list[i]);
        }
        free(list);
    }
    rc = rows_to_dataset(&r, o, path, ds, err);
    memset(&r, 0, sizeof r);
out:
    rows_free(&r);
    for (int c = 0; c < nc; c++) free(classes[c]);
    free(classes);
    return rc;
}

/* One CSV record into fields (RFC 4180 quotes). Returns fields, -1 on error;
 * *pos advances past the record. Fields are malloc'd. */
static int csv_record(const char *t, size_t len, size_t *pos, char **fields, int line, dl_error *err)
{
    int nf = 0;
    size_t i = *pos;
    for (;;) {
        char buf[MAX_FIELD_LEN + 1];
        size_t bl = 0;
        bool quoted = i < len && t[i] == '"';
        if (quoted) i++;
        for (;;) {
            if (i >= len) {
                if (quoted) goto fail_quote;
                break;
            }
            char ch = t[i];
            if (quoted) {
                if (ch == '"') {
                    if (i + 1 < len && t[i + 1] == '"') { i += 2; ch = '"'; }
                    else { i++; quoted = false; continue; }
                } else {
                    i++;
                }
            } else {
                if (ch == ',' || ch == '\n' || ch == '\r') break;
                i++;
            }
            if (bl >= MAX_FIELD_LEN) {
                for (int k = 0; k < nf; k++) free(fields[k]);
                return dl_fail(err, DL_ERR_FORMAT, "line %d: field longer than %d bytes", line, MAX_FIELD_LEN);
            }
            buf[bl++] = ch;
        }
        buf[bl] = 0;
        if (nf >= MAX_FIELDS) {
            for (int k = 0; k < nf; k++) free(fields[k]);
            return dl_fail(err, DL_ERR_FORMAT, "line %d: more than %d fields", line, MAX_FIELDS);
        }
        fields[nf] = strdup(buf);
        if (!fields[nf]) {
            for (int k = 0; k < nf; k++) free(fields[k]);
            return dl_fail(err, DL_ERR_NOMEM, "out of memory");
        }
        nf++;
        if (i < len && t[i] == ',') { i++; continue; }
        break;
    }
    if (i < len && t[i] == '\r') i++;
    if (i < len && t[i] == '\n') i++;
    *pos = i;
    return nf;
fail_quote:
    for (int k = 0; k < nf; k++) free(fields[k]);
    return dl_fail(err, DL_ERR_FORMAT, "line %d: unterminated quoted field", line);
}

static int find_col(char **hdr, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(hdr[i], name) == 0) return i;
    return -1;
}

int dl_dataset_parse_csv(const char *text, size_t len, const char *base_dir, const dl_dataset_options *o,
                         dl_dataset *ds, dl_error *err)
{
    memset(ds, 0, sizeof *ds);
    char *hdr[MAX_FIELDS], *f[MAX_FIELDS];
    size_t pos = 0;
    if (len >= 3 && (uint8_t)text[0] == 0xEF && (uint8_t)text[1] == 0xBB && (uint8_t)text[2] == 0xBF) pos = 3;
    int nh = csv_record(text, len, &pos, hdr, 1, err);
    if (nh < 0) return -1;
    rows r = {0};
    int rc = -1;
    int cpath = find_col(hdr, nh, "path");
    int clab = -1;
    if (o && o->label_column) {
        clab = find_col(hdr, nh, o->label_column);
        if (clab < 0) { dl_fail(err, DL_ERR_DATA, "CSV header has no column \"%s\"", o->label_column); goto out; }
    } else {
        const char *cands[] = {"label", "dx", "ham10000_class", "class"};
        for (int k = 0; k < 4 && clab < 0; k++) clab = find_col(hdr, nh, cands[k]);
    }
    int cgroup = find_col(hdr, nh, "group");
    if (cgroup < 0) cgroup = find_col(hdr, nh, "lesion_id");
    int csplit = find_col(hdr, nh, "split");
    if (cpath < 0 || clab < 0) {
        dl_fail(err, DL_ERR_DATA, "CSV header needs a `path` and a label column (label, dx, ham10000_class or class)");
        goto out;
    }
    if (o && o->split && csplit < 0) { dl_fail(err, DL_ERR_DATA, "CSV has no `split` column to filter on"); goto out; }
    int line = 1;
    while (pos < len) {
        line++;
        if (text[pos] == '\n' || text[pos] == '\r') { pos++; continue; } /* blank line */
        int nf = csv_record(text, len, &pos, f, line, err);
        if (nf < 0) goto out;
        bool ok = nf == nh;
        bool keep = ok && (!(o && o->split) || strcmp(f[csplit], o->split) == 0);
        if (!ok) {
            for (int k = 0; k < nf; k++) free(f[k]);
            dl_fail(err, DL_ERR_FORMAT, "line %d: %d fields, header has %d", line, nf, nh);
            goto out;
        }
        if (keep && (!f[cpath][0] || !f[clab][0])) {
            for (int k = 0; k < nf; k++) free(f[k]);
            dl_fail(err, DL_ERR_DATA, "line %d: empty path or label", line);
            goto out;
        }
        if (keep) {
            char *p;
            if (f[cpath][0] == '/' || !base_dir || !*base_dir) {
                p = strdup(f[cpath]);
            } else {
                p = malloc(strlen(base_dir) + strlen(f[cpath]) + 2);
                if (p) sprintf(p, "%s/%s", base_dir, f[cpath]);
            }
            char *lab = strdup(f[clab]);
            char *grp = cgroup >= 0 ? strdup(f[cgroup]) : NULL;
            if (!p || !lab || rows_push(&r, p, lab, grp, err)) {
                free(p); free(lab); free(grp);
                for (int k = 0; k < nf; k++) free(f[k]);
                if (err && err->code != DL_ERR_LIMIT) dl_fail(err, DL_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        for (int k = 0; k < nf; k++) free(f[k]);
    }
    rc = rows_to_dataset(&r, o, "CSV", ds, err);
    memset(&r, 0, sizeof r);
out:
    rows_free(&r);
    for (int k = 0; k < nh; k++) free(hdr[k]);
    return rc;
}

/* ------------------------------------------------------------ CSV tables */

void dl_csv_table_free(dl_csv_table *t)
{
    if (!t) return;
    for (int c = 0; c < t->n_cols; c++) free(t->header[c]);
    for (size_t i = 0; i < (size_t)t->n_rows * t->n_cols; i++) free(t->cells[i]);
    free(t->header);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

int dl_csv_table_parse(const char *text, size_t len, dl_csv_table *t, dl_error *err)
{
    memset(t, 0, sizeof *t);
    char *f[MAX_FIELDS];
    size_t pos = 0;
    if (len >= 3 && (uint8_t)text[0] == 0xEF && (uint8_t)text[1] == 0xBB && (uint8_t)text[2] == 0xBF) pos = 3;
    int nh = csv_record(text, len, &pos, f, 1, err);
    if (nh < 0) return -1;
    t->header = malloc(sizeof(char *) * nh);
    if (!t->header) {
        for (int k = 0; k < nh; k++) free(f[k]);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    memcpy(t->header, f, sizeof(char *) * nh);
    t->n_cols = nh;
    size_t cap = 0;
    int line = 1;
    while (pos < len) {
        line++;
        if (text[pos] == '\n' || text[pos] == '\r') { pos++; continue; }
        int nf = csv_record(text, len, &pos, f, line, err);
        if (nf < 0) { dl_csv_table_free(t); return -1; }
        if (nf != nh) {
            for (int k = 0; k < nf; k++) free(f[k]);
            dl_csv_table_free(t);
            return dl_fail(err, DL_ERR_FORMAT, "line %d: %d fields, header has %d", line, nf, nh);
        }
        if (t->n_rows >= MAX_ROWS) {
            for (int k = 0; k < nf; k++) free(f[k]);
            dl_csv_table_free(t);
            return dl_fail(err, DL_ERR_LIMIT, "more than %d rows", MAX_ROWS);
        }
        if ((size_t)(t->n_rows + 1) * nh > cap) {
            size_t nc = cap ? cap * 2 : (size_t)nh * 64;
            char **cells = realloc(t->cells, sizeof(char *) * nc);
            if (!cells) {
                for (int k = 0; k < nf; k++) free(f[k]);
                dl_csv_table_free(t);
                return dl_fail(err, DL_ERR_NOMEM, "out of memory");
            }
            t->cells = cells;
            cap = nc;
        }
        memcpy(t->cells + (size_t)t->n_rows * nh, f, sizeof(char *) * nh);
        t->n_rows++;
    }
    return 0;
}

int dl_csv_table_column(const dl_csv_table *t, const char *name)
{
    for (int c = 0; c < t->n_cols; c++)
        if (!strcmp(t->header[c], name)) return c;
    return -1;
}

int dl_csv_table_load(const char *path, dl_csv_table *t, dl_error *err)
{
    uint8_t *data;
    size_t size;
    memset(t, 0, sizeof *t);
    if (dl_read_file(path, 256u << 20, &data, &size, err)) return -1;
    int rc = dl_csv_table_parse((const char *)data, size, t, err);
    if (rc) dl_fail_prefix(err, "%s", path);
    free(data);
    return rc;
}

int dl_dataset_open(const char *path, const dl_dataset_options *o, dl_dataset *ds, dl_error *err)
{
    memset(ds, 0, sizeof *ds);
    struct stat st;
    if (stat(path, &st) != 0) return dl_fail(err, DL_ERR_IO, "%s: no such file or folder", path);
    if (S_ISDIR(st.st_mode)) return open_dir(path, o, ds, err);
    uint8_t *data;
    size_t size;
    if (dl_read_file(path, 256u << 20, &data, &size, err)) return -1;
    char *base = strdup(path);
    if (!base) { free(data); return dl_fail(err, DL_ERR_NOMEM, "out of memory"); }
    char *slash = strrchr(base, '/');
    if (slash) *slash = 0;
    else strcpy(base, ".");
    int rc = dl_dataset_parse_csv((const char *)data, size, base, o, ds, err);
    if (rc) dl_fail_prefix(err, "%s", path);
    free(base);
    free(data);
    return rc;
}

/* ------------------------------------------------------------ loading */

typedef struct {
    const dl_dataset *ds;
    int w, h;
    int max_side;     /* > 0: keep the aspect, longer side at most this (no upscaling) */
    int *dims;        /* with max_side: [2n] width, height of each image */
    uint8_t **images;
    char **errors;
    int next;
    int done;
    pthread_mutex_t lock;
} load_job;

static void *load_worker(void *arg)
{
    load_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int i = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (i >= j->ds->n) break;
        dl_error e = {0};
        dl_image img = {0}, small = {0};
        int rc = dl_image_load(j->ds->paths[i], &img, &e);
        int w = j->w, h = j->h;
        if (rc == 0 && j->max_side > 0) {
            int big = img.width > img.height ? img.width : img.height;
            w = img.width;
            h = img.height;
            if (big > j->max_side) {
                w = (int)((double)img.width * j->max_side / big + 0.5);
                h = (int)((double)img.height * j->max_side / big + 0.5);
                if (w < 1) w = 1;
                if (h < 1) h = 1;
            }
        }
        if (rc == 0) rc = dl_image_resize(&img, w, h, &small, &e);
        if (rc == 0) {
            uint8_t *buf = malloc((size_t)w * h * 3);
            if (buf) {
                for (int y = 0; y < h; y++)
                    memcpy(buf + (size_t)y * w * 3, small.pixels + (size_t)y * small.stride, (size_t)w * 3);
                if (j->dims) {
                    j->dims[2 * i] = w;
                    j->dims[2 * i + 1] = h;
                }
                j->images[i] = buf;
            } else {
                j->errors[i] = strdup("out of memory");
            }
        } else {
            j->errors[i] = strdup(e.message[0] ? e.message : "cannot decode");
        }
        dl_image_free(&img);
        dl_image_free(&small);
        pthread_mutex_lock(&j->lock);
        j->done++;
        pthread_mutex_unlock(&j->lock);
    }
    return NULL;
}

static int load_images(const dl_dataset *ds, int width, int height, int max_side, int *dims, int threads,
                       uint8_t ***images, char ***errors, dl_progress_fn progress, void *user, dl_error *err)
{
    load_job j = {.ds = ds, .w = width, .h = height, .max_side = max_side, .dims = dims};
    j.images = calloc(ds->n ? ds->n : 1, sizeof(uint8_t *));
    j.errors = calloc(ds->n ? ds->n : 1, sizeof(char *));
    if (!j.images || !j.errors) {
        free(j.images);
        free(j.errors);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&j.lock, NULL);
    if (threads < 1) threads = dl_get_num_threads();
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    int started = 0;
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, load_worker, &j) == 0) started++;
        else break;
    if (started == 0) load_worker(&j);
    int cancelled = 0;
    if (progress) {
        for (;;) {
            pthread_mutex_lock(&j.lock);
            int d = j.done;
            pthread_mutex_unlock(&j.lock);
            if (!cancelled && progress(user, ds->n ? (double)d / ds->n : 1.0, "decode")) {
                cancelled = 1;
                pthread_mutex_lock(&j.lock);
                j.next = ds->n; /* stop handing out work */
                pthread_mutex_unlock(&j.lock);
            }
            if (d >= ds->n || cancelled) break;
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&j.lock);
    *images = j.images;
    *errors = j.errors;
    if (cancelled) {
        dl_dataset_free_images(ds, j.images, j.errors);
        *images = NULL;
        *errors = NULL;
        return dl_fail(err, DL_ERR_CANCELLED, "cancelled");
    }
    return 0;
}

int dl_dataset_load_images(const dl_dataset *ds, int width, int height, int threads, uint8_t ***images,
                           char ***errors, dl_progress_fn progress, void *user, dl_error *err)
{
    *images = NULL;
    *errors = NULL;
    if (width < 1 || height < 1 || width > 4096 || height > 4096)
        return dl_fail(err, DL_ERR_ARG, "image size %dx%d out of range", width, height);
    return load_images(ds, width, height, 0, NULL, threads, images, errors, progress, user, err);
}

int dl_dataset_load_images_fit(const dl_dataset *ds, int max_side, int threads, uint8_t ***images, int **dims,
                               char ***errors, dl_progress_fn progress, void *user, dl_error *err)
{
    *images = NULL;
    *errors = NULL;
    *dims = NULL;
    if (max_side < 1 || max_side > 4096) return dl_fail(err, DL_ERR_ARG, "image side %d out of range", max_side);
    int *d = calloc(ds->n ? (size_t)ds->n * 2 : 2, sizeof(int));
    if (!d) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    if (load_images(ds, 0, 0, max_side, d, threads, images, errors, progress, user, err)) {
        free(d);
        return -1;
    }
    *dims = d;
    return 0;
}

void dl_dataset_free_images(const dl_dataset *ds, uint8_t **images, char **errors)
{
    for (int i = 0; i < ds->n; i++) {
        if (images) free(images[i]);
        if (errors) free(errors[i]);
    }
    free(images);
    free(errors);
}
