/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Batch review of a folder: one CSV row per file, optional annotated PNG
 * copies. GIMP-independent so the CLI can share it.
 *
 * Hostile folders: every path is validated before anything is created; the
 * CSV is locked against a second writer and written by the engine's safe
 * writer; entries that are not regular files (FIFOs, devices) and symbolic
 * links leaving the folder get an error row and are never opened; names and
 * messages are written as valid UTF-8 CSV cells neutralised against formula
 * injection; annotated copies get names that never collide. */
#include "dermlens_host.h"
#include "dermlens_io.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* 1 if path (resolved) is dir or lies below it. */
static int path_inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0)
        return 0;
    return path[n] == '\0' || path[n] == '/' || (n == 1 && dir[0] == '/');
}

/* Directory part of path, resolved; "." when there is none. */
static int resolve_parent(const char *path, char *out)
{
    char tmp[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(tmp, sizeof tmp, ".");
    } else if (slash == path) {
        snprintf(tmp, sizeof tmp, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof tmp)
            return -1;
        memcpy(tmp, path, n);
        tmp[n] = '\0';
    }
    return realpath(tmp, out) ? 0 : -1;
}

/* The CSV is kept in memory (dh_str) and rewritten as a whole (temp file +
 * rename) as rows complete, so a batch killed at any point leaves a valid
 * CSV: the header and only complete rows. */

/* Replace path by the buffer's content atomically (the engine's safe
 * writer: temp file created exclusively in the same folder, fsync, rename,
 * folder fsync). path is never seen partly written. */
static int csv_commit(const dh_str *b, const char *path, dl_error *err)
{
    if (b->oom) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory building the CSV");
        return -1;
    }
    return dl_write_file_atomic(path, b->data ? b->data : "", b->len, err);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Blend the overlay (at opacity) and a legend onto a copy of img and write
 * it as PNG. */
static int write_annotated(const dl_image *img, const float *map, double opacity,
                           const char *path, dl_error *err)
{
    int w = img->width, h = img->height;
    size_t stride = (size_t)w * 3;
    uint8_t *out = malloc(stride * (size_t)h);
    if (!out) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory for the annotated copy");
        return -1;
    }
    dh_overlay o;
    dh_overlay_init(&o, map, w, h, DH_OVERLAY_FILL, opacity / 100.0);
    dh_blend_rows(img->pixels, img->stride, map, w, h, 0, h, &o, out, stride);
    int lw, lh;
    dh_legend_size(w, h, &lw, &lh);
    if (lw + 4 <= w && lh + 4 <= h) {
        uint8_t *leg = malloc((size_t)lw * (size_t)lh * 4);
        if (leg) {
            dh_legend_pixels(lw, lh, 4, leg);
            for (int y = 0; y < lh; y++)
                for (int x = 0; x < lw; x++) {
                    uint8_t *d = out + (size_t)(h - 2 - lh + y) * stride + 3 * (size_t)(x + 2);
                    memcpy(d, leg + 4 * ((size_t)y * (size_t)lw + (size_t)x), 3);
                }
            free(leg);
        }
    }
    int rc = dl_png_write(path, out, w, h, stride, 3, 8, err);
    free(out);
    return rc;
}

/* ------------------------------------------------------------ names */

/* A small string set (open addressing) for collision-free output names. */
typedef struct {
    char **keys;
    int *counts;
    size_t cap;
} str_set;

static size_t str_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int set_init(str_set *t, size_t n)
{
    t->cap = 16;
    while (t->cap < 2 * n + 16)
        t->cap *= 2;
    t->keys = calloc(t->cap, sizeof *t->keys);
    t->counts = calloc(t->cap, sizeof *t->counts);
    return t->keys && t->counts ? 0 : -1;
}

static void set_free(str_set *t)
{
    if (t->keys)
        for (size_t i = 0; i < t->cap; i++)
            free(t->keys[i]);
    free(t->keys);
    free(t->counts);
    memset(t, 0, sizeof *t);
}

/* Slot of key (existing or the empty one where it would go). */
static size_t set_slot(const str_set *t, const char *key)
{
    size_t i = str_hash(key) & (t->cap - 1);
    while (t->keys[i] && strcmp(t->keys[i], key) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

static int set_count(const str_set *t, const char *key)
{
    size_t i = set_slot(t, key);
    return t->keys[i] ? t->counts[i] : 0;
}

/* Add one occurrence of key; -1 when out of memory. The set never holds more
 * than 2n keys for a capacity above 2n, so it never fills up. */
static int set_add(str_set *t, const char *key)
{
    size_t i = set_slot(t, key);
    if (!t->keys[i] && !(t->keys[i] = strdup(key)))
        return -1;
    t->counts[i]++;
    return 0;
}

typedef struct {
    char *name;          /* directory entry */
    char *load;          /* what to read (resolved for links inside the folder); NULL: refused */
    const char *refused; /* why it is not read */
    char *out_name;      /* annotated copy's file name */
} batch_entry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const batch_entry *)a)->name, ((const batch_entry *)b)->name);
}

static void stem_of(const char *name, char *stem, size_t cap)
{
    snprintf(stem, cap, "%s", name);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem)
        *dot = '\0';
}

/* "STEM.dermlens.png" when no other file shares STEM (dup.jpg and dup.png do),
 * else "NAME.dermlens.png", else "NAME.N.dermlens.png": unique in any case,
 * deterministic (files in name order). */
static int assign_output_names(batch_entry *e, size_t n)
{
    str_set stems = {0}, used = {0};
    int rc = -1;
    if (set_init(&stems, n) || set_init(&used, n))
        goto out;
    char stem[NAME_MAX + 1], cand[NAME_MAX + 64];
    for (size_t i = 0; i < n; i++) {
        stem_of(e[i].name, stem, sizeof stem);
        if (set_add(&stems, stem))
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!e[i].load)
            continue;
        stem_of(e[i].name, stem, sizeof stem);
        if (set_count(&stems, stem) == 1)
            snprintf(cand, sizeof cand, "%s.dermlens.png", stem);
        else
            snprintf(cand, sizeof cand, "%s.dermlens.png", e[i].name);
        for (int k = 2; set_count(&used, cand); k++)
            snprintf(cand, sizeof cand, "%s.%d.dermlens.png", e[i].name, k);
        if (set_add(&used, cand) || !(e[i].out_name = strdup(cand)))
            goto out;
    }
    rc = 0;
out:
    set_free(&stems);
    set_free(&used);
    return rc;
}

/* Where output_dir is or would be, resolved, without creating it. */
static int resolve_future_dir(const char *path, char *out)
{
    if (realpath(path, out))
        return 0;
    if (errno != ENOENT)
        return -1;
    char tmp[PATH_MAX], parent[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    const char *base = strrchr(tmp, '/');
    base = base ? base + 1 : tmp;
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return -1;
    if (resolve_parent(tmp, parent) != 0)
        return -1;
    if (snprintf(out, PATH_MAX, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", base) >= PATH_MAX)
        return -1;
    return 0;
}

/* Classify the directory entry full (lstat'd as *lsb): fill e->load or
 * e->refused. Returns 0 to list it, 1 to skip it (folders). */
static int judge_entry(const char *full, const struct stat *lsb, const char *in_real, batch_entry *e)
{
    if (S_ISDIR(lsb->st_mode))
        return 1;
    if (S_ISREG(lsb->st_mode)) {
        e->load = strdup(full);
        return 0;
    }
    if (!S_ISLNK(lsb->st_mode)) {
        e->refused = S_ISFIFO(lsb->st_mode) ? "a FIFO (named pipe), not a regular file; not read"
                                            : "not a regular file (a device or socket); not read";
        return 0;
    }
    char target[PATH_MAX];
    struct stat sb;
    if (!realpath(full, target) || stat(target, &sb) != 0) {
        e->refused = "a symbolic link whose target does not exist; not followed";
        return 0;
    }
    if (!path_inside(target, in_real)) {
        e->refused = "a symbolic link to something outside the input folder; not followed";
        return 0;
    }
    if (S_ISDIR(sb.st_mode))
        return 1;
    if (!S_ISREG(sb.st_mode)) {
        e->refused = "a symbolic link to something that is not a regular file; not followed";
        return 0;
    }
    e->load = strdup(target);
    return 0;
}

int dh_batch_run(dl_model *m, const dh_batch_opts *o, dh_batch_stats *stats, dl_error *err)
{
    dh_batch_stats st = {0};
    char in_real[PATH_MAX], csv_dir[PATH_MAX], out_real[PATH_MAX], out_now[PATH_MAX];
    int want_copies = o->output_dir && o->output_dir[0];
    struct stat sb;

    if (stats)
        *stats = st;
    if (!o->input_dir || !o->input_dir[0] || !o->csv_path || !o->csv_path[0]) {
        dh_set_err(err, DL_ERR_ARG, "An input folder and an output CSV file are required");
        return -1;
    }
    if (want_copies && !(isfinite(o->opacity) && o->opacity >= 0 && o->opacity <= 100)) {
        dh_set_err(err, DL_ERR_ARG, "The overlay opacity must be a number from 0 to 100 (got %g)", o->opacity);
        return -1;
    }
    /* Every path is checked before anything is created. */
    if (!realpath(o->input_dir, in_real) || stat(in_real, &sb) != 0) {
        dh_set_err(err, DL_ERR_IO, "Cannot open input folder %s: %s", o->input_dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        dh_set_err(err, DL_ERR_ARG, "The input %s is not a folder", o->input_dir);
        return -1;
    }
    if (resolve_parent(o->csv_path, csv_dir) != 0) {
        dh_set_err(err, DL_ERR_IO, "The folder of the CSV file %s does not exist", o->csv_path);
        return -1;
    }
    if (path_inside(csv_dir, in_real)) {
        dh_set_err(err, DL_ERR_ARG, "The CSV file must not be written into the input folder %s",
                in_real);
        return -1;
    }
    if (dl_output_check(o->csv_path, err) != 0)
        return -1;
    if (want_copies) {
        if (resolve_future_dir(o->output_dir, out_real) != 0) {
            dh_set_err(err, DL_ERR_IO, "Cannot use output folder %s: %s", o->output_dir,
                    errno ? strerror(errno) : "invalid path");
            return -1;
        }
        if (path_inside(out_real, in_real)) {
            dh_set_err(err, DL_ERR_ARG, "The output folder must not be inside the input folder %s",
                    in_real);
            return -1;
        }
        if (stat(out_real, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
            dh_set_err(err, DL_ERR_ARG, "The output folder %s exists and is not a folder", o->output_dir);
            return -1;
        }
    }
    /* A second writer of the same CSV is refused instead of both "winning". */
    int lock = dl_output_lock(o->csv_path, err);
    if (lock < 0)
        return -1;

    batch_entry *ent = NULL;
    size_t count = 0, cap = 0;
    int rc = -1;
    dh_str csv = {0};
    if (want_copies) {
        int made = mkdir(out_real, 0777) == 0;
        if (!made && errno != EEXIST) {
            dh_set_err(err, DL_ERR_IO, "Cannot create output folder %s: %s", o->output_dir,
                    strerror(errno));
            goto done;
        }
        /* re-check what is there now (a link planted meanwhile) */
        if (!realpath(out_real, out_now) || path_inside(out_now, in_real) ||
            stat(out_now, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            dh_set_err(err, DL_ERR_ARG, "The output folder %s is not a folder outside the input folder",
                    o->output_dir);
            if (made)
                rmdir(out_real);
            goto done;
        }
        memcpy(out_real, out_now, sizeof out_real);
    }

    /* Collect names first so the order is stable and the listing is not
     * disturbed by what we write. Nothing is opened here (lstat only). */
    DIR *dir = opendir(in_real);
    if (!dir) {
        dh_set_err(err, DL_ERR_IO, "Cannot list %s: %s", in_real, strerror(errno));
        goto done;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char full[PATH_MAX];
        struct stat lsb;
        if (snprintf(full, sizeof full, "%s/%s", in_real, de->d_name) >= (int)sizeof full)
            continue;
        if (lstat(full, &lsb) != 0)
            continue;
        batch_entry e = {0};
        if (judge_entry(full, &lsb, in_real, &e) != 0)
            continue;
        e.name = strdup(de->d_name);
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            batch_entry *nn = realloc(ent, ncap * sizeof *nn);
            if (!nn) {
                free(e.name);
                free(e.load);
                closedir(dir);
                dh_set_err(err, DL_ERR_NOMEM, "out of memory listing %s", in_real);
                goto done;
            }
            ent = nn;
            cap = ncap;
        }
        ent[count++] = e;
        if (!e.name || (!e.load && !e.refused)) {
            closedir(dir);
            dh_set_err(err, DL_ERR_NOMEM, "out of memory listing %s", in_real);
            goto done;
        }
    }
    closedir(dir);
    if (count > 1)
        qsort(ent, count, sizeof *ent, cmp_entry);
    if (want_copies && assign_output_names(ent, count) != 0) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory naming the annotated copies");
        goto done;
    }

    int nc = dl_model_num_classes(m);
    dh_str_puts(&csv, "file,top_class");
    for (int c = 0; c < nc; c++) {
        char col[256];
        snprintf(col, sizeof col, "p_%s", dl_model_class_name(m, c));
        dh_str_put(&csv, ",", 1);
        dh_str_csv(&csv, col);
    }
    dh_str_puts(&csv, ",ood,error\n");
    /* The header alone first: from here on a valid CSV exists. */
    if (csv_commit(&csv, o->csv_path, err) != 0)
        goto done;
    double last_commit = now_seconds();

    for (size_t i = 0; i < count; i++) {
        if (o->progress) {
            char *text = dl_text_sanitize(ent[i].name);
            o->progress(o->progress_host, (double)i / (double)count, text ? text : "");
            free(text);
        }
        st.files++;
        dl_image img = {0};
        dl_error fe = {0};
        dh_analysis an = {0};
        int ok = 0;
        if (ent[i].refused) {
            dh_set_err(&fe, DL_ERR_IO, "%s", ent[i].refused);
        } else {
            ok = dl_image_load_oriented(ent[i].load, &img, NULL, &fe) == 0;
            if (ok)
                ok = dh_analyse(m, img.pixels, img.width, img.height, img.stride, o->method,
                                 want_copies, NULL, &an, &fe) == 0;
        }
        if (ok && want_copies && an.map) {
            char out_path[PATH_MAX];
            if (snprintf(out_path, sizeof out_path, "%s/%s", out_real, ent[i].out_name) >=
                (int)sizeof out_path) {
                dh_set_err(&fe, DL_ERR_ARG, "output path too long");
                ok = 0;
            } else if (write_annotated(&img, an.map, o->opacity, out_path, &fe) != 0) {
                ok = 0;
            }
        }
        dh_str_csv(&csv, ent[i].name);
        if (ok) {
            const dl_result *r = &an.result;
            dh_str_put(&csv, ",", 1);
            dh_str_csv(&csv, r->top_k > 0 ? dl_model_class_name(m, r->top_index[0]) : "");
            for (int c = 0; c < nc; c++)
                dh_str_printf(&csv, ",%.6f", c < r->num_classes ? (double)r->probs[c] : 0.0);
            if (isfinite(r->ood_score))
                dh_str_printf(&csv, ",%d,", r->ood_flag ? 1 : 0);
            else
                dh_str_puts(&csv, ",,");
            if (want_copies && !an.map)
                dh_str_csv(&csv, an.saliency_note);
            dh_str_put(&csv, "\n", 1);
            st.ok++;
        } else {
            dh_str_put(&csv, ",", 1);
            for (int c = 0; c < nc; c++)
                dh_str_put(&csv, ",", 1);
            dh_str_puts(&csv, ",,");
            /* the file column names the file: drop the path in front of the message */
            const char *msg = fe.message[0] ? fe.message : dl_status_name(fe.code);
            size_t pl = ent[i].load ? strlen(ent[i].load) : 0;
            if (pl && !strncmp(msg, ent[i].load, pl) && msg[pl] == ':' && msg[pl + 1] == ' ')
                msg += pl + 2;
            dh_str_csv(&csv, msg);
            dh_str_put(&csv, "\n", 1);
            st.failed++;
        }
        dh_analysis_free(&an);
        dl_image_free(&img);
        /* Commit after every row; once the file is big, at most once a
         * second so a long batch does not spend its time rewriting. */
        double t = now_seconds();
        if (i + 1 < count && (csv.len < 65536 || t - last_commit >= 1.0)) {
            if (csv_commit(&csv, o->csv_path, err) != 0)
                goto done;
            last_commit = t;
        }
    }
    if (o->progress)
        o->progress(o->progress_host, 1.0, "done");

    if (csv_commit(&csv, o->csv_path, err) != 0)
        goto done;
    rc = 0;
done:
    dl_output_unlock(o->csv_path, lock);
    dh_str_free(&csv);
    for (size_t i = 0; i < count; i++) {
        free(ent[i].name);
        free(ent[i].load);
        free(ent[i].out_name);
    }
    free(ent);
    if (stats)
        *stats = st;
    return rc;
}
