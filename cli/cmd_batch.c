/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens batch: the batch review of host/ (the same code as the plug-in's
 * Batch Review). */
#include "cli.h"
#include "dermlens_host.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* one minimum region for every command */
_Static_assert(DH_MIN_REGION == DL_MIN_REGION_SIDE, "batch and classify/explain minimum sizes differ");

static void batch_progress(void *host, double fraction, const char *text)
{
    cli_progress(host, fraction, text ? text : "batch");
}

int cmd_batch(int argc, char **argv)
{
    gchar *model_path = NULL, *csv = NULL, *out_dir = NULL, *method = NULL;
    gdouble opacity = 60;
    gchar **dirs = NULL;
    GOptionEntry entries[] = {
        {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path, "Model file (default: the shipped lesion model)", "FILE"},
        {"csv", 'c', 0, G_OPTION_ARG_FILENAME, &csv, "Output CSV (written atomically; must not be inside the input folder)", "FILE"},
        {"output-dir", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir, "Also write annotated PNG copies here", "DIR"},
        {"method", 'M', 0, G_OPTION_ARG_STRING, &method, "Saliency method for annotated copies (default gradcam)", "M"},
        {"opacity", 0, 0, G_OPTION_ARG_DOUBLE, &opacity, "Overlay opacity 0..100 (default 60)", "P"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &dirs, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("FOLDER --csv OUT.csv - classify every image in a folder");
    g_option_context_set_summary(ctx,
        "Classifies every PNG/JPEG in FOLDER into a CSV: file, top class, the probability of every class,\n"
        "the out-of-distribution flag and, for files that fail, the error. A broken file gets its row and\n"
        "the run goes on; input files are never changed. " DL_DISCLAIMER);
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens batch: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    if (!dirs || !dirs[0] || !csv || !*csv) {
        fprintf(stderr, "dermlens batch: need FOLDER and --csv (see --help)\n");
        return 2;
    }
    if (dirs[1]) {
        fprintf(stderr, "dermlens batch: one FOLDER at a time\n");
        return 2;
    }
    if (!(isfinite(opacity) && opacity >= 0 && opacity <= 100)) {
        fprintf(stderr, "dermlens batch: --opacity must be a number from 0 to 100, got %g\n", opacity);
        return 2;
    }
    int mi = dl_saliency_method_from_name(method ? method : "gradcam");
    if (mi < 0) {
        fprintf(stderr, "dermlens batch: unknown saliency method '%s'\n", method);
        return 2;
    }
    const char *mp = cli_default_model(model_path);
    dl_model *m = cli_load_model(mp);
    if (!m) return 1;
    dh_batch_opts o = {.input_dir = dirs[0], .csv_path = csv, .output_dir = out_dir,
                        .method = (dl_saliency_method)mi, .opacity = opacity,
                        .progress = batch_progress, .progress_host = NULL};
    dh_batch_stats st = {0};
    dl_error err = {0};
    int rc = dh_batch_run(m, &o, &st, &err);
    if (rc) fprintf(stderr, "dermlens batch: %s\n", cli_disp(err.message));
    else printf("%d files: %d classified, %d failed; wrote %s\n", st.files, st.ok, st.failed, cli_disp(csv));
    dl_model_free(m);
    g_strfreev(dirs);
    g_free(model_path);
    g_free(csv);
    g_free(out_dir);
    g_free(method);
    return rc ? 1 : (st.failed ? 3 : 0);
}
