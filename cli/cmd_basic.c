/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Shared CLI helpers and the classify / info / import commands. */
#include "cli.h"
#include "cmd_import_onnx.h"
#include "dermlens_host.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cli_default_model(const char *explicit_path)
{
    static char buf[4096];
    /* an explicit empty path is an error (cli_load_model says so), not "the default" */
    if (explicit_path) return explicit_path;
    /* the one search (host/): $DERMLENS_MODEL, the user and installed data
     * folders, the source tree; when nothing is there, the installed lesion
     * model's path, so that the load error names where it should be */
    if (dh_model_find(NULL, NULL, buf, sizeof buf, NULL) != 0)
        snprintf(buf, sizeof buf, "%s/%s", dh_model_data_dir(), DH_MODEL_LESION);
    return buf;
}

dl_model *cli_load_model(const char *path)
{
    dl_error err = {0};
    if (!path || !*path) {
        fprintf(stderr, "dermlens: cannot load model: the model path is empty (--model '')\n");
        return NULL;
    }
    dl_model *m = dl_model_load(path, &err);
    if (!m) fprintf(stderr, "dermlens: cannot load model: %s\n", cli_disp(err.message));
    return m;
}

const char *cli_disp(const char *s)
{
    static char *ring[8];
    static unsigned next;
    unsigned i = next++ % 8;
    free(ring[i]);
    ring[i] = dl_text_sanitize(s ? s : "");
    return ring[i] ? ring[i] : "(out of memory)";
}

void cli_file_error(const char *cmd, const char *path, const char *message)
{
    size_t n = path ? strlen(path) : 0;
    if (n && !strncmp(message, path, n) && message[n] == ':')
        fprintf(stderr, "dermlens %s: %s\n", cmd, cli_disp(message));
    else if (n)
        fprintf(stderr, "dermlens %s: %s: %s\n", cmd, cli_disp(path), cli_disp(message));
    else
        fprintf(stderr, "dermlens %s: %s\n", cmd, cli_disp(message));
}

int cli_parse_threads(const char *cmd, const char *s, int *out)
{
    *out = 0;
    if (!s) return 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 1 || v > DL_MAX_THREADS) {
        fprintf(stderr, "dermlens %s: --threads must be a whole number from 1 to %d (got '%s'; leave it out for all cores)\n",
                cmd, DL_MAX_THREADS, cli_disp(s));
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_check_region(const dl_image *img, dl_error *err)
{
    if (img->width >= DL_MIN_REGION_SIDE && img->height >= DL_MIN_REGION_SIDE) return 0;
    err->code = DL_ERR_ARG;
    snprintf(err->message, sizeof err->message, "the image is %d x %d pixels; at least %d x %d are needed",
             img->width, img->height, DL_MIN_REGION_SIDE, DL_MIN_REGION_SIDE);
    return -1;
}

int cli_check_output(const char *cmd, const char *path)
{
    dl_error err = {0};
    if (!path) return 0;
    if (dl_output_check(path, &err) != 0) {
        fprintf(stderr, "dermlens %s: %s\n", cmd, cli_disp(err.message));
        return -1;
    }
    return 0;
}

static void on_fatal_signal(int sig)
{
    dl_temp_files_remove(); /* async-signal-safe: unlink(2) only */
    signal(sig, SIG_DFL);
    raise(sig);
}

void cli_install_signal_cleanup(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        /* keep an inherited "ignore" (nohup, background jobs) */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

void cli_set_threads(int n)
{
    dl_set_num_threads(n);
}

int cli_progress(void *user, double fraction, const char *stage)
{
    (void)user;
    if (!isatty(2)) return 0;
    int w = 30, fill = (int)(fraction * w + 0.5);
    fprintf(stderr, "\r%-12s [", stage);
    for (int i = 0; i < w; i++) fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%%", (int)(fraction * 100 + 0.5));
    if (fraction >= 1.0) fputc('\n', stderr);
    return 0;
}

/* ------------------------------------------------------------ classify */

int cmd_classify(int argc, char **argv)
{
    gchar *model_path = NULL, *threads_arg = NULL;
    gint top_k = 5, threads = 0;
    gboolean json = FALSE, tta = FALSE;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path, "Model file (default: the shipped lesion model, or $DERMLENS_MODEL)", "FILE"},
        {"top-k", 'k', 0, G_OPTION_ARG_INT, &top_k, "Number of classes to show (default 5; 0 = all)", "K"},
        {"json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print JSON: each input's path and every class's probability", NULL},
        {"tta", 0, 0, G_OPTION_ARG_NONE, &tta, "Test-time augmentation: average over flips and 90-degree turns", NULL},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Threads, 1..256 (default: all cores)", "N"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("IMAGE... - classify dermoscopic images");
    g_option_context_set_summary(ctx,
        "Runs the model on each PNG, JPEG, TIFF or BMP image (the whole image, resized as the model\n"
        "records; a JPEG's EXIF orientation is applied first, as viewers and GIMP do) and\n"
        "prints the most probable classes. Images must be at least 8 x 8 pixels. " DL_DISCLAIMER);
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens classify: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    if (!files || !files[0]) {
        fprintf(stderr, "dermlens classify: no image given (see --help)\n");
        return 2;
    }
    if (cli_parse_threads("classify", threads_arg, &threads) != 0) return 2;
    if (top_k < 0) {
        fprintf(stderr, "dermlens classify: --top-k must be 0 (all classes) or more, got %d\n", top_k);
        return 2;
    }
    if (threads > 0) cli_set_threads(threads);
    const char *mp = cli_default_model(model_path);
    dl_model *m = cli_load_model(mp);
    if (!m) return 1;
    int K = dl_model_num_classes(m);
    if (top_k > K) {
        fprintf(stderr, "dermlens classify: --top-k must be 0..%d (this model has %d classes), got %d\n", K, K, top_k);
        dl_model_free(m);
        return 2;
    }
    int failures = 0;
    cJSON *root = NULL, *results = NULL;
    if (json) {
        root = cJSON_CreateObject();
        cJSON *mj = cJSON_AddObjectToObject(root, "model");
        cJSON_AddStringToObject(mj, "path", cli_disp(mp));
        cJSON_AddStringToObject(mj, "name", cli_disp(dl_model_name(m)));
        cJSON_AddStringToObject(mj, "sha256", dl_model_sha256(m));
        cJSON_AddNumberToObject(mj, "temperature", dl_model_temperature(m));
        cJSON_AddStringToObject(root, "disclaimer", DL_DISCLAIMER);
        cJSON_AddBoolToObject(root, "tta", tta);
        results = cJSON_AddArrayToObject(root, "results");
    }
    for (int f = 0; files[f]; f++) {
        dl_error err = {0};
        dl_image img = {0};
        dl_result r = {0};
        dl_classify_options opts = {.top_k = top_k, .tta = tta};
        int orient = 1;
        int rc = dl_image_load_oriented(files[f], &img, &orient, &err);
        if (rc == 0 && (img.width < DL_MIN_REGION_SIDE || img.height < DL_MIN_REGION_SIDE))
            rc = cli_check_region(&img, &err);
        if (rc == 0) rc = dl_classify_rgb8(m, img.pixels, img.width, img.height, img.stride, &opts, &r, &err);
        if (rc != 0) {
            failures++;
            cli_file_error("classify", files[f], err.message);
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "path", cli_disp(files[f]));
                cJSON_AddStringToObject(o, "error", cli_disp(err.message));
                cJSON_AddItemToArray(results, o);
            }
        } else if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "path", cli_disp(files[f]));
            cJSON_AddNumberToObject(o, "width", img.width);
            cJSON_AddNumberToObject(o, "height", img.height);
            cJSON_AddNumberToObject(o, "exif_orientation", orient);
            cJSON_AddStringToObject(o, "top_class", cli_disp(dl_model_class_name(m, r.top_index[0])));
            cJSON *classes = cJSON_AddArrayToObject(o, "classes");
            for (int c = 0; c < K; c++) {
                cJSON *cj = cJSON_CreateObject();
                cJSON_AddStringToObject(cj, "name", cli_disp(dl_model_class_name(m, c)));
                cJSON_AddStringToObject(cj, "long_name", cli_disp(dl_model_class_long_name(m, c)));
                cJSON_AddNumberToObject(cj, "probability", r.probs[c]);
                cJSON_AddNumberToObject(cj, "logit", r.logits[c]);
                cJSON_AddItemToArray(classes, cj);
            }
            cJSON *top = cJSON_AddArrayToObject(o, "top");
            for (int k = 0; k < r.top_k; k++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddNumberToObject(t, "index", r.top_index[k]);
                cJSON_AddStringToObject(t, "name", cli_disp(dl_model_class_name(m, r.top_index[k])));
                cJSON_AddNumberToObject(t, "probability", r.probs[r.top_index[k]]);
                cJSON_AddItemToArray(top, t);
            }
            if (isfinite(r.ood_score)) {
                cJSON_AddNumberToObject(o, "ood_score", r.ood_score);
                cJSON_AddBoolToObject(o, "ood_warning", r.ood_flag);
            }
            cJSON_AddItemToArray(results, o);
        } else {
            printf("%s\n", cli_disp(files[f]));
            if (orient != 1)
                printf("  (EXIF orientation %d applied: %s; classified as %dx%d)\n", orient,
                       dl_orientation_description(orient), img.width, img.height);
            for (int k = 0; k < r.top_k; k++) {
                int c = r.top_index[k];
                printf("  %2d. %-10s %6.2f%%  %s\n", k + 1, cli_disp(dl_model_class_name(m, c)), 100.0 * r.probs[c],
                       cli_disp(dl_model_class_long_name(m, c)));
            }
            if (r.ood_flag)
                printf("  WARNING: this does not look like a dermoscopic lesion image (OOD score %.1f)\n",
                       r.ood_score);
        }
        dl_result_free(&r);
        dl_image_free(&img);
    }
    if (json) {
        char *s = cJSON_Print(root);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(root);
    } else {
        printf("(%s)\n", DL_DISCLAIMER);
    }
    dl_model_free(m);
    g_strfreev(files);
    g_free(model_path);
    g_free(threads_arg);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------ info */

int cmd_info(int argc, char **argv)
{
    gboolean json = FALSE, layers = FALSE;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print the model's metadata as JSON", NULL},
        {"layers", 'l', 0, G_OPTION_ARG_NONE, &layers, "List every layer", NULL},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("[MODEL] - describe a model file");
    g_option_context_set_summary(ctx, "Shows the graph, classes, preprocessing, calibration and provenance of a\n"
                                      "DermLens model file (default: the shipped model).");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens info: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    const char *mp = cli_default_model(files && files[0] ? files[0] : NULL);
    dl_model *m = cli_load_model(mp);
    if (!m) return 1;
    if (json) {
        printf("%s\n", dl_model_info_json(m));
    } else {
        cJSON *info = cJSON_Parse(dl_model_info_json(m));
        const cJSON *g = cJSON_GetObjectItem(info, "graph");
        const cJSON *p = cJSON_GetObjectItem(info, "preprocess");
        printf("model:        %s\nfile:         %s\nsha256:       %s\n", cli_disp(dl_model_name(m)), cli_disp(mp), dl_model_sha256(m));
        {
            const cJSON *ts = cJSON_GetObjectItem(info, "tensor_sha256");
            const char *tv = cJSON_IsString(ts) ? ts->valuestring : "not recorded";
            printf("weights:      sha256 %s%s\n", tv, strlen(tv) == 64 ? " (verified at load)" : " (written by an older version)");
        }
        printf("format:       dermlens safetensors v%s\n", cJSON_GetObjectItem(info, "format_version")->valuestring);
        {
            const cJSON *st = cJSON_GetObjectItem(info, "storage");
            const cJSON *nt = cJSON_GetObjectItem(st, "tensors"), *nh = cJSON_GetObjectItem(st, "tensors_f16");
            if (cJSON_IsNumber(nh) && nh->valueint > 0)
                printf("storage:      F16 (%d of %d tensors as IEEE half, the rest F32; computed in F32)\n", nh->valueint,
                       cJSON_IsNumber(nt) ? nt->valueint : 0);
            else
                printf("storage:      F32\n");
        }
        printf("graph:        %d nodes, %.0f parameters, %.3f GFLOP per image\n",
               cJSON_GetObjectItem(g, "nodes")->valueint, cJSON_GetObjectItem(g, "parameters")->valuedouble,
               cJSON_GetObjectItem(g, "gflops")->valuedouble);
        char *ops = cJSON_PrintUnformatted(cJSON_GetObjectItem(g, "ops"));
        printf("ops:          %s\n", ops);
        free(ops);
        const cJSON *fd = cJSON_GetObjectItem(g, "feature_dim");
        printf("features:     %s (%d)\n", fd ? cJSON_GetObjectItem(g, "features")->valuestring : "-", fd ? fd->valueint : 0);
        const cJSON *lc = cJSON_GetObjectItem(g, "last_conv");
        printf("last conv:    %s (default Grad-CAM layer)\n", lc ? lc->valuestring : "-");
        char *mean = cJSON_PrintUnformatted(cJSON_GetObjectItem(p, "mean"));
        char *std = cJSON_PrintUnformatted(cJSON_GetObjectItem(p, "std"));
        printf("preprocess:   %dx%d, %s, x = (pixel - %s) / %s\n", cJSON_GetObjectItem(p, "width")->valueint,
               cJSON_GetObjectItem(p, "height")->valueint, cJSON_GetObjectItem(p, "resize")->valuestring, mean, std);
        free(mean);
        free(std);
        printf("temperature:  %g\n", dl_model_temperature(m));
        int K = dl_model_num_classes(m);
        printf("classes:      %d\n", K);
        for (int c = 0; c < K && (c < 12 || K <= 20); c++)
            printf("  %3d %-12s %s\n", c, cli_disp(dl_model_class_name(m, c)), cli_disp(dl_model_class_long_name(m, c)));
        if (K > 20) printf("  ... (%d more; --json lists all)\n", K - 12);
        const cJSON *ood = cJSON_GetObjectItem(info, "ood");
        if (ood) printf("ood:          Mahalanobis on pooled features, threshold %g\n", cJSON_GetObjectItem(ood, "threshold")->valuedouble);
        const cJSON *members = cJSON_GetObjectItem(info, "members");
        if (cJSON_IsArray(members)) {
            printf("ensemble:     %d members (mean of calibrated probabilities; saliency maps averaged)\n",
                   cJSON_GetArraySize(members));
            const cJSON *mj;
            int k = 0;
            cJSON_ArrayForEach(mj, members) {
                const cJSON *nm = cJSON_GetObjectItem(mj, "name"), *rs = cJSON_GetObjectItem(mj, "resize");
                const cJSON *tj = cJSON_GetObjectItem(mj, "temperature"), *oj = cJSON_GetObjectItem(mj, "ood_threshold");
                printf("    %d %s (%s, T = %.3f", k++, cJSON_IsString(nm) ? nm->valuestring : "?",
                       cJSON_IsString(rs) ? rs->valuestring : "?", cJSON_IsNumber(tj) ? tj->valuedouble : 1.0);
                if (cJSON_IsNumber(oj)) printf(", OOD threshold %.1f", oj->valuedouble);
                printf(")\n");
            }
        }
        const cJSON *prov = cJSON_GetObjectItem(info, "provenance");
        if (prov) {
            char *s = cJSON_Print(prov);
            printf("provenance:   %s\n", s);
            free(s);
        }
        if (layers) {
            const cJSON *l;
            printf("layers:\n");
            cJSON_ArrayForEach(l, cJSON_GetObjectItem(g, "layers")) printf("  %s\n", l->valuestring);
        }
        cJSON_Delete(info);
    }
    dl_model_free(m);
    g_strfreev(files);
    return 0;
}

/* ------------------------------------------------------------ import */

/* An ONNX file (by extension, or by its first protobuf field) goes to the
 * ONNX importer, with its own options; everything else is TFLite. */
static int is_onnx_arg(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t n = strlen(a);
        if (a[0] != '-' && n > 5 && !g_ascii_strcasecmp(a + n - 5, ".onnx")) return 1;
    }
    return 0;
}

int cmd_import(int argc, char **argv)
{
    if (is_onnx_arg(argc, argv)) return cmd_import_onnx(argc, argv);
    gchar *out = NULL, *labels = NULL, *name = NULL, *prov = NULL;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Output model file (.safetensors)", "FILE"},
        {"labels", 'l', 0, G_OPTION_ARG_FILENAME, &labels, "Class names, one per line", "FILE"},
        {"name", 'n', 0, G_OPTION_ARG_STRING, &name, "Model name stored in the file", "NAME"},
        {"provenance", 'p', 0, G_OPTION_ARG_STRING, &prov, "Provenance as a JSON object", "JSON"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("MODEL.tflite -o OUT.safetensors - import a TFLite model (MODEL.onnx: see 'dermlens import x.onnx --help')");
    g_option_context_set_summary(ctx,
        "Reads a TFLite flatbuffer (CONV_2D, DEPTHWISE_CONV_2D, ADD, AVERAGE/MAX_POOL_2D, RESHAPE,\n"
        "SOFTMAX, FULLY_CONNECTED, MEAN, PAD), dequantizes uint8/int8 weights to float32 and\n"
        "writes a DermLens model file (the final softmax is applied by the engine).");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens import: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    if (!files || !files[0] || !out) {
        fprintf(stderr, "dermlens import: need MODEL.tflite and -o OUT (see --help)\n");
        return 2;
    }
    if (prov) {
        cJSON *pj = cJSON_Parse(prov);
        if (!cJSON_IsObject(pj)) {
            fprintf(stderr, "dermlens import: --provenance is not a JSON object\n");
            cJSON_Delete(pj);
            return 2;
        }
        cJSON_Delete(pj);
    }
    if (cli_check_output("import", out) != 0) return 1;
    dl_error err = {0};
    if (dl_import_tflite(files[0], labels, out, name, prov, &err)) {
        fprintf(stderr, "dermlens import: %s\n", cli_disp(err.message));
        return 1;
    }
    printf("wrote %s\n", cli_disp(out));
    g_strfreev(files);
    g_free(out);
    g_free(labels);
    g_free(name);
    g_free(prov);
    return 0;
}
