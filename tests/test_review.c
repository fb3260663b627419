/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The host core's dataset review (host/review.c, the code behind `dermlens
 * review` and the plug-in's Batch Review) with the real lesion model, in the
 * unit suite so that the sanitizer build runs it: the walk (subfolders, a
 * FIFO never opened, other files skipped), labels from class folders (code
 * or long name), a 150-character file name, the label box drawn through a
 * painter, the CSV and the page; then labels from a CSV (paths with "." and
 * "..", an image id given two labels, a row matching nothing), and outputs
 * refused inside the dataset. */
#include "dermlens_host.h"
#include "dermlens_io.h"
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A stand-in for the front ends' cairo / Pango text: a box the size the
 * text would take, so the layout and the drawing run without fonts. */
static int painted;
static double box_text(void *user, uint32_t *surface, int w, int h, int stride, double x, double y,
                       const char *text, double size, int bold, const double rgb[3], double *ascent,
                       double *height)
{
    (void)user;
    (void)bold;
    double adv = 0.55 * size * (double)strlen(text);
    if (ascent)
        *ascent = 0.8 * size;
    if (height)
        *height = 1.2 * size;
    if (surface) {
        uint32_t c = (uint32_t)(rgb[0] * 255) << 16 | (uint32_t)(rgb[1] * 255) << 8 | (uint32_t)(rgb[2] * 255);
        for (int yy = (int)(y - 0.7 * size); yy < (int)y; yy++)
            for (int xx = (int)x; xx < (int)(x + adv); xx++)
                if (xx >= 0 && yy >= 0 && xx < w && yy < h)
                    ((uint32_t *)((char *)surface + (size_t)yy * (size_t)stride))[xx] = c;
        painted++;
    }
    return adv;
}

static char *slurp_n(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *d = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n + 4097 > cap) {
            char *nd = realloc(d, cap = cap * 2 + 8192);
            if (!nd)
                break;
            d = nd;
        }
        size_t k = fread(d + *n, 1, 4096, f);
        *n += k;
        if (k == 0)
            break;
    }
    fclose(f);
    if (d)
        d[*n] = 0;
    return d;
}

static char *slurp(const char *path)
{
    size_t n;
    return slurp_n(path, &n);
}

static void put_n(const char *path, const char *data, size_t n)
{
    dl_error err = {0};
    CHECK(dl_write_file_atomic(path, data, n, &err) == 0, "%s: %s", path, err.message);
}

static void put(const char *path, const char *text)
{
    put_n(path, text, strlen(text));
}

static void copy_file(const char *from, const char *to)
{
    size_t n = 0;
    char *data = slurp_n(from, &n);
    CHECK(data != NULL, "read %s", from);
    if (data)
        put_n(to, data, n);
    free(data);
}

/* CHECK as an expression: cond, counted as a failure with the message when 0. */
static int expect(int cond, const char *fmt, ...)
{
    if (!cond) {
        va_list ap;
        va_start(ap, fmt);
        tu_failures++;
        fprintf(stderr, "CHECK failed: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    return cond;
}

/* Every image of rv, decoded as the CLI does. */
static void run_all(dh_review *rv, dl_model *m)
{
    for (int i = 0; i < dh_review_count(rv); i++) {
        dl_error err = {0};
        dl_image img = {0};
        if (dh_review_refused(rv, i))
            dh_review_fail(rv, i, dh_review_refused(rv, i));
        else if (dl_image_load_oriented(dh_review_path(rv, i), &img, NULL, &err) != 0)
            dh_review_fail(rv, i, err.message);
        else
            CHECK(dh_review_image(rv, m, i, &img, &err) == 0, "%s: %s", dh_review_rel(rv, i), err.message);
        dl_image_free(&img);
        CHECK(dh_review_checkpoint(rv, &err) == 0, "checkpoint: %s", err.message);
    }
}

int main(void)
{
    dl_set_num_threads(1);
    dl_error err = {0};
    dl_model *m = dl_model_load(tu_source("weights/dermlens_ham10000.safetensors"), &err);
    if (!m) {
        fprintf(stderr, "skip: %s\n", err.message);
        return TU_SKIP;
    }
    const char *b = getenv("DL_BUILD_ROOT");
    char tmp[2048], p[4096], q[4096];
    snprintf(tmp, sizeof tmp, "%s/test_review-XXXXXX", b && b[0] ? b : "/tmp");
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp %s", tmp);
        return tu_exit();
    }
    char longname[160];
    memset(longname, 'n', 150);
    strcpy(longname + 150, ".jpg");
    const char *dirs[] = {"ds", "ds/mel", "ds/Melanocytic_Nevus", "ds/Melanocytic_Nevus/deep", "ds/other"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp, dirs[i]);
        mkdir(p, 0777);
    }
    snprintf(p, sizeof p, "%s/ds/mel/ISIC_0031711.jpg", tmp);
    copy_file(tu_source("tests/data/lesions/ISIC_0031711.jpg"), p);
    snprintf(p, sizeof p, "%s/ds/Melanocytic_Nevus/deep/%s", tmp, longname);
    copy_file(tu_source("tests/data/lesions/ISIC_0025921.jpg"), p);
    snprintf(p, sizeof p, "%s/ds/other/x.jpg", tmp);
    copy_file(tu_source("tests/data/lesions/ISIC_0029674.jpg"), p);
    snprintf(p, sizeof p, "%s/ds/fifo.jpg", tmp);
    CHECK(mkfifo(p, 0666) == 0, "mkfifo");
    snprintf(p, sizeof p, "%s/ds/notes.txt", tmp);
    put(p, "not an image\n");

    /* 1: labels from class folders, every output */
    static const dh_text_painter painter = {NULL, box_text};
    snprintf(p, sizeof p, "%s/ds", tmp);
    snprintf(q, sizeof q, "%s/out", tmp);
    dh_review_opts o = {.dataset = p, .out_dir = q, .method = DL_SALIENCY_GRADCAM, .opacity = 60, .painter = &painter};
    dh_review *rv = NULL;
    dh_review_summary sum;
    if (expect(dh_review_open(m, &o, &rv, &err) == 0, "open: %s", err.message)) {
        CHECK(dh_review_count(rv) == 4, "%d images listed", dh_review_count(rv));
        run_all(rv, m);
        CHECK(dh_review_finish(rv, "ds", &sum, &err) == 0, "finish: %s", err.message);
        CHECK(sum.n == 4 && sum.ok == 3 && sum.failed == 1 && sum.skipped == 1 && sum.labelled == 2,
              "n %d ok %d failed %d skipped %d labelled %d", sum.n, sum.ok, sum.failed, sum.skipped, sum.labelled);
        CHECK(!strcmp(sum.unmatched, "other"), "unmatched folders: %s", sum.unmatched);
        CHECK(painted > 10, "the painter drew %d texts", painted);
        const char *rel, *e;
        CHECK(dh_review_result(rv, 3, &rel, &e) == 0 && !strcmp(rel, "fifo.jpg") && e && strstr(e, "FIFO"),
              "last row: %s: %s", rel, e ? e : "-");
        char *csv = slurp(dh_review_csv_path(rv)), *html = slurp(dh_review_html_path(rv));
        CHECK(csv && strstr(csv, "nnn.jpg,Melanocytic_Nevus,"), "CSV:\n%s", csv ? csv : "-");
        CHECK(csv && strstr(csv, "mel/ISIC_0031711.jpg,mel,") && strstr(csv, ",other/x.jpg,,"), "CSV:\n%s", csv ? csv : "-");
        CHECK(html && strstr(html, "Confusion matrix") && strstr(html, DH_DISCLAIMER_LONG), "page");
        /* the long name's outputs (first in name order): index, '-', 60 characters of the stem */
        snprintf(q, sizeof q, "%s/out/images/0001-%.60s.png", tmp, longname);
        CHECK(access(q, R_OK) == 0, "no %s", q);
        free(csv);
        free(html);
        dh_review_close(rv);
    }

    /* 2: labels from a CSV, the CSV only */
    snprintf(q, sizeof q, "%s/labels.csv", tmp);
    put(q, "image_id,path,dx\n"
           "ISIC_0031711,,nv\n"
           "ISIC_0031711,,mel\n"
           ",ds/./other/../other/x.jpg,bcc\n"
           ",nope.jpg,df\n");
    char csv2[4096];
    snprintf(csv2, sizeof csv2, "%s/r2.csv", tmp);
    dh_review_opts o2 = {.dataset = p, .csv_path = csv2, .labels_csv = q, .method = DL_SALIENCY_GRADCAM, .opacity = 60};
    if (expect(dh_review_open(m, &o2, &rv, &err) == 0, "open 2: %s", err.message)) {
        run_all(rv, m);
        CHECK(dh_review_finish(rv, NULL, &sum, &err) == 0, "finish 2: %s", err.message);
        CHECK(sum.csv_matched == 1 && sum.csv_ambiguous == 1 && sum.csv_unused == 3 && sum.csv_rows == 4,
              "matched %d ambiguous %d unused %d rows %d", sum.csv_matched, sum.csv_ambiguous, sum.csv_unused,
              sum.csv_rows);
        CHECK(dh_review_html_path(rv) == NULL, "a page without an output folder");
        char *csv = slurp(csv2);
        CHECK(csv && strstr(csv, ",other/x.jpg,bcc,") && strstr(csv, ",mel/ISIC_0031711.jpg,,"), "CSV 2:\n%s", csv ? csv : "-");
        free(csv);
        dh_review_close(rv);
    }

    /* 3: outputs inside the dataset are refused before anything is made */
    snprintf(q, sizeof q, "%s/ds/mel/out", tmp);
    dh_review_opts o3 = {.dataset = p, .out_dir = q, .method = DL_SALIENCY_GRADCAM, .opacity = 60};
    CHECK(dh_review_open(m, &o3, &rv, &err) != 0 && strstr(err.message, "inside the dataset") && access(q, F_OK) != 0,
          "output inside the dataset: %s", err.message);
    snprintf(q, sizeof q, "%s/ds/r.csv", tmp);
    dh_review_opts o4 = {.dataset = p, .csv_path = q, .method = DL_SALIENCY_GRADCAM, .opacity = 60};
    CHECK(dh_review_open(m, &o4, &rv, &err) != 0 && access(q, F_OK) != 0, "CSV inside the dataset: %s", err.message);
    CHECK(dh_review_suspicion((const float[]){0.7f, 0.2f, 0.1f}, 3, 1) > 0.49 &&
              isnan(dh_review_suspicion((const float[]){1, 0}, 2, -1)),
          "suspicion");

    snprintf(q, sizeof q, "rm -rf '%s'", tmp);
    CHECK(system(q) == 0, "cleanup");
    dl_model_free(m);
    return tu_exit();
}
