/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens review: classify and explain every image of a dataset folder,
 * compare with the given labels, and write annotated images, a CSV sorted
 * by suspicion (likely label errors first) and a page that opens from disk. */
#include "cli.h"
#include "dermlens_host.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef DL_HAVE_CAIRO
#include <cairo.h>

/* The label box's text, drawn with cairo's toy font API (host/ draws no
 * text). One drawing at a time: the toy font cache is shared. */
static double cairo_text(void *user, uint32_t *surface, int w, int h, int stride, double x, double y,
                         const char *text, double size, int bold, const double rgb[3], double *ascent,
                         double *height)
{
    static GMutex lock;
    (void)user;
    g_mutex_lock(&lock);
    cairo_surface_t *s = surface ? cairo_image_surface_create_for_data((unsigned char *)surface, CAIRO_FORMAT_RGB24,
                                                                       w, h, stride)
                                 : cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *cr = cairo_create(s);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr, text, &e);
    if (ascent || height) {
        cairo_font_extents_t fe;
        cairo_font_extents(cr, &fe);
        if (ascent) *ascent = fe.ascent;
        if (height) *height = fe.height;
    }
    if (surface) {
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_move_to(cr, x, y);
        cairo_show_text(cr, text);
        cairo_surface_flush(s);
    }
    cairo_destroy(cr);
    cairo_surface_destroy(s);
    g_mutex_unlock(&lock);
    return e.x_advance;
}
static const dh_text_painter painter = {NULL, cairo_text};
#define PAINTER (&painter)
#define HAS_PAINTER 1
#else
#define PAINTER NULL
#define HAS_PAINTER 0
#endif

typedef struct {
    dh_review *rv;
} review_job;

/* One image on a worker thread: decoded here, analysed and drawn by host/. */
static int review_one(void *user, dl_model *m, int index, dl_error *err)
{
    review_job *job = user;
    const char *refused = dh_review_refused(job->rv, index);
    if (refused) {
        err->code = DL_ERR_IO;
        snprintf(err->message, sizeof err->message, "%s", refused);
        dh_review_fail(job->rv, index, refused);
        return -1;
    }
    dl_image img = {0};
    int rc = dl_image_load_oriented(dh_review_path(job->rv, index), &img, NULL, err);
    if (rc == 0)
        rc = dh_review_image(job->rv, m, index, &img, err);
    else
        dh_review_fail(job->rv, index, err->message);
    dl_image_free(&img);
    return rc;
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
    if (threads > 0) cli_set_threads(threads);
    const char *mp = cli_default_model(model_path);
    dl_model *m = cli_load_model(mp);
    if (!m) goto out_args;

    dl_error err = {0};
    dl_saliency_method sm = (dl_saliency_method)mi;
    dh_review_opts o = {.dataset = args[0], .out_dir = out_dir, .labels_csv = labels, .label_column = label_col,
                        .method = sm, .opacity = opacity, .painter = PAINTER};
    dh_review *rv = NULL;
    if (dh_review_open(m, &o, &rv, &err) != 0) {
        fprintf(stderr, "dermlens review: %s\n", cli_disp(err.message));
        goto out;
    }
    int n = dh_review_count(rv);
    if (!HAS_PAINTER)
        fprintf(stderr, "dermlens review: built without cairo: the annotated images carry the overlay but no label box\n");
    printf("Reviewing %d image%s under %s with %s (%s saliency)...\n", n, n == 1 ? "" : "s", cli_disp(args[0]),
           cli_disp(dl_model_name(m)), dh_method_title(sm));
    fflush(stdout);
    review_job job = {.rv = rv};
    char **errors = g_new0(char *, n);
    cli_run_parallel(m, mp, n, threads, "review", review_one, &job, errors);
    /* a worker that could not run leaves neither result nor error: the
     * review records those as "not analysed" unless the runner said why */
    for (int i = 0; i < n; i++)
        if (errors[i]) dh_review_fail(rv, i, errors[i]);
    dh_review_summary sum;
    int wrc = dh_review_finish(rv, args[0], &sum, &err);
    for (int i = 0; i < n; i++) g_free(errors[i]);
    g_free(errors);
    if (wrc != 0) {
        fprintf(stderr, "dermlens review: %s\n", cli_disp(err.message));
        goto out;
    }

    /* what the user should know, failures by name */
    for (int i = 0; i < n; i++) {
        const char *rel, *e;
        if (dh_review_result(rv, i, &rel, &e) == 0 && e)
            fprintf(stderr, "dermlens review: failed: %s: %s\n", cli_disp(rel), cli_disp(e));
    }
    if (sum.from_folders && sum.labelled < sum.ok && sum.unmatched[0])
        fprintf(stderr, "dermlens review: no label for images in folders that name no class of the model: %s\n",
                sum.unmatched);
    if (labels) {
        if (sum.csv_not_class)
            fprintf(stderr, "dermlens review: labels that are not classes of the model (images kept, no suspicion): %s\n",
                    sum.not_classes);
        if (sum.csv_matched < n)
            fprintf(stderr, "dermlens review: %d image%s not in %s (no label)\n", n - sum.csv_matched,
                    n - sum.csv_matched == 1 ? " is" : "s are", cli_disp(labels));
        if (sum.csv_ambiguous)
            fprintf(stderr, "dermlens review: %d image id%s given two different labels in %s (no label)\n",
                    sum.csv_ambiguous, sum.csv_ambiguous == 1 ? " is" : "s are", cli_disp(labels));
        if (sum.csv_unused)
            fprintf(stderr, "dermlens review: %d row%s of %s match no image under %s\n", sum.csv_unused,
                    sum.csv_unused == 1 ? "" : "s", cli_disp(labels), cli_disp(args[0]));
    }
    printf("%d image%s: %d reviewed, %d failed", n, n == 1 ? "" : "s", sum.ok, sum.failed);
    if (sum.labelled)
        printf("; %d labelled, %d disagree%s with their label", sum.labelled, sum.disagree,
               sum.disagree == 1 ? "s" : "");
    printf("; %d flagged out of distribution", sum.ood);
    if (sum.skipped) printf("; %d other file%s skipped", sum.skipped, sum.skipped == 1 ? "" : "s");
    printf("\nwrote %s and %s (%s)\n", cli_disp(dh_review_html_path(rv)), cli_disp(dh_review_csv_path(rv)),
           DL_DISCLAIMER);
    ret = sum.failed || sum.unreadable ? 3 : 0;
out:
    dh_review_close(rv);
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
