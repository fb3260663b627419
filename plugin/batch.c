/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Batch review of a folder: one CSV row per file, optional annotated PNG
 * copies. GIMP-independent so the CLI can share it. */
#include "annotate.h"

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

static void set_err(dl_error *err, dl_status code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

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

/* The CSV is kept in memory and rewritten as a whole (temp file + rename)
 * as rows complete, so a batch killed at any point leaves a valid CSV: the
 * header and only complete rows. */
typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} csv_buf;

static void buf_put(csv_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->len + n + 1) {
            if (ncap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            ncap *= 2;
        }
        char *nd = realloc(b->data, ncap);
        if (!nd) {
            b->oom = 1;
            return;
        }
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(csv_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_printf(csv_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void csv_field(csv_buf *b, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        buf_puts(b, s);
        return;
    }
    buf_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"')
            buf_put(b, "\"", 1);
        buf_put(b, s, 1);
    }
    buf_put(b, "\"", 1);
}

/* Replace path by the buffer's content atomically: a temp file in the same
 * folder, fsync, rename over path. path is never seen partly written. */
static int csv_commit(const csv_buf *b, const char *path, dl_error *err)
{
    if (b->oom) {
        set_err(err, DL_ERR_NOMEM, "out of memory building the CSV");
        return -1;
    }
    char tmp_path[PATH_MAX];
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmpXXXXXX", path) >= (int)sizeof tmp_path) {
        set_err(err, DL_ERR_ARG, "CSV path too long");
        return -1;
    }
    int fd = mkstemp(tmp_path);
    if (fd < 0) {
        set_err(err, DL_ERR_IO, "Cannot create %s: %s", tmp_path, strerror(errno));
        return -1;
    }
    (void)fchmod(fd, 0644); /* mkstemp makes 0600; a report is meant to be shared */
    size_t done = 0;
    int werr = 0;
    while (done < b->len) {
        ssize_t n = write(fd, b->data + done, b->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            werr = n < 0 ? errno : EIO;
            break;
        }
        done += (size_t)n;
    }
    if (!werr && fsync(fd) != 0)
        werr = errno;
    if (close(fd) != 0 && !werr)
        werr = errno;
    if (werr) {
        unlink(tmp_path);
        set_err(err, DL_ERR_IO, "Writing %s failed: %s", path, strerror(werr));
        return -1;
    }
    if (rename(tmp_path, path) != 0) {
        set_err(err, DL_ERR_IO, "Cannot rename %s to %s: %s", tmp_path, path, strerror(errno));
        unlink(tmp_path);
        return -1;
    }
    return 0;
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
        set_err(err, DL_ERR_NOMEM, "out of memory for the annotated copy");
        return -1;
    }
    float op = (float)(opacity / 100.0);
    for (int y = 0; y < h; y++) {
        const uint8_t *src = img->pixels + (size_t)y * img->stride;
        uint8_t *dst = out + (size_t)y * stride;
        for (int x = 0; x < w; x++) {
            uint8_t c[4];
            dlp_colormap(map[(size_t)y * (size_t)w + (size_t)x], c);
            float a = op * (float)c[3] / 255.0f;
            for (int k = 0; k < 3; k++) {
                float v = (float)src[3 * x + k] * (1.0f - a) + (float)c[k] * a;
                dst[3 * x + k] = (uint8_t)(v + 0.5f);
            }
        }
    }
    int lw, lh;
    dlp_legend_size(w, h, &lw, &lh);
    if (lw + 4 <= w && lh + 4 <= h) {
        uint8_t *leg = malloc((size_t)lw * (size_t)lh * 4);
        if (leg) {
            dlp_legend_pixels(lw, lh, 4, leg);
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

int dlp_batch_run(dl_model *m, const dlp_batch_opts *o, dlp_batch_stats *stats, dl_error *err)
{
    dlp_batch_stats st = {0};
    char in_real[PATH_MAX], csv_dir[PATH_MAX], out_real[PATH_MAX];
    int want_copies = o->output_dir && o->output_dir[0];

    if (!o->input_dir || !o->input_dir[0] || !o->csv_path || !o->csv_path[0]) {
        set_err(err, DL_ERR_ARG, "An input folder and an output CSV file are required");
        return -1;
    }
    if (!realpath(o->input_dir, in_real)) {
        set_err(err, DL_ERR_IO, "Cannot open input folder %s: %s", o->input_dir, strerror(errno));
        return -1;
    }
    if (resolve_parent(o->csv_path, csv_dir) != 0) {
        set_err(err, DL_ERR_IO, "The folder of the CSV file %s does not exist", o->csv_path);
        return -1;
    }
    if (path_inside(csv_dir, in_real)) {
        set_err(err, DL_ERR_ARG, "The CSV file must not be written into the input folder %s",
                in_real);
        return -1;
    }
    if (want_copies) {
        if (mkdir(o->output_dir, 0777) != 0 && errno != EEXIST) {
            set_err(err, DL_ERR_IO, "Cannot create output folder %s: %s", o->output_dir,
                    strerror(errno));
            return -1;
        }
        if (!realpath(o->output_dir, out_real)) {
            set_err(err, DL_ERR_IO, "Cannot open output folder %s: %s", o->output_dir,
                    strerror(errno));
            return -1;
        }
        if (path_inside(out_real, in_real)) {
            set_err(err, DL_ERR_ARG, "The output folder must not be inside the input folder %s",
                    in_real);
            return -1;
        }
    }

    /* Collect names first so the order is stable and the listing is not
     * disturbed by what we write. */
    DIR *dir = opendir(in_real);
    if (!dir) {
        set_err(err, DL_ERR_IO, "Cannot list %s: %s", in_real, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    int rc = -1;
    csv_buf csv = {0};
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char full[PATH_MAX];
        struct stat sb;
        if (snprintf(full, sizeof full, "%s/%s", in_real, de->d_name) >= (int)sizeof full)
            continue;
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                closedir(dir);
                set_err(err, DL_ERR_NOMEM, "out of memory listing %s", in_real);
                goto done;
            }
            names = nn;
            cap = ncap;
        }
        names[count] = strdup(de->d_name);
        if (!names[count]) {
            closedir(dir);
            set_err(err, DL_ERR_NOMEM, "out of memory listing %s", in_real);
            goto done;
        }
        count++;
    }
    closedir(dir);
    if (count > 1)
        qsort(names, count, sizeof *names, cmp_str);

    int nc = dl_model_num_classes(m);
    buf_puts(&csv, "file,top_class");
    for (int c = 0; c < nc; c++) {
        char col[256];
        snprintf(col, sizeof col, "p_%s", dl_model_class_name(m, c));
        buf_put(&csv, ",", 1);
        csv_field(&csv, col);
    }
    buf_puts(&csv, ",ood,error\n");
    /* The header alone first: from here on a valid CSV exists. */
    if (csv_commit(&csv, o->csv_path, err) != 0)
        goto done;
    double last_commit = now_seconds();

    for (size_t i = 0; i < count; i++) {
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", in_real, names[i]);
        if (o->progress) {
            char text[300];
            snprintf(text, sizeof text, "%s", names[i]);
            o->progress(o->progress_host, (double)i / (double)count, text);
        }
        st.files++;
        dl_image img = {0};
        dl_error fe = {0};
        dlp_analysis an = {0};
        int ok = dl_image_load(full, &img, &fe) == 0;
        if (ok)
            ok = dlp_analyse(m, img.pixels, img.width, img.height, img.stride, o->method,
                             want_copies, NULL, &an, &fe) == 0;
        if (ok && want_copies && an.map) {
            char out_path[PATH_MAX];
            char stem[NAME_MAX + 1];
            snprintf(stem, sizeof stem, "%s", names[i]);
            char *dot = strrchr(stem, '.');
            if (dot && dot != stem)
                *dot = '\0';
            if (snprintf(out_path, sizeof out_path, "%s/%s.dermlens.png", out_real, stem) >=
                (int)sizeof out_path) {
                set_err(&fe, DL_ERR_ARG, "output path too long");
                ok = 0;
            } else if (write_annotated(&img, an.map, o->opacity, out_path, &fe) != 0) {
                ok = 0;
            }
        }
        csv_field(&csv, names[i]);
        if (ok) {
            const dl_result *r = &an.result;
            buf_put(&csv, ",", 1);
            csv_field(&csv, r->top_k > 0 ? dl_model_class_name(m, r->top_index[0]) : "");
            for (int c = 0; c < nc; c++)
                buf_printf(&csv, ",%.6f", c < r->num_classes ? (double)r->probs[c] : 0.0);
            if (isfinite(r->ood_score))
                buf_printf(&csv, ",%d,", r->ood_flag ? 1 : 0);
            else
                buf_puts(&csv, ",,");
            if (want_copies && !an.map)
                csv_field(&csv, an.saliency_note);
            buf_put(&csv, "\n", 1);
            st.ok++;
        } else {
            buf_put(&csv, ",", 1);
            for (int c = 0; c < nc; c++)
                buf_put(&csv, ",", 1);
            buf_puts(&csv, ",,");
            csv_field(&csv, fe.message[0] ? fe.message : dl_status_name(fe.code));
            buf_put(&csv, "\n", 1);
            st.failed++;
        }
        dlp_analysis_free(&an);
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
    free(csv.data);
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    if (stats)
        *stats = st;
    return rc;
}
