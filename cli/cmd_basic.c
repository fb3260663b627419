/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Shared CLI helpers and the classify / info / import commands. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DL_DATADIR
#define DL_DATADIR "/usr/local/share/dermlens"
#endif
#ifndef DL_SOURCE_WEIGHTS
#define DL_SOURCE_WEIGHTS "weights"
#endif

static const char *const model_files[] = {"dermlens_ham10000.safetensors", "mobilenet_v2_imagenet.safetensors"};

const char *cli_default_model(const char *explicit_path)
{
    static char buf[4096];
    if (explicit_path && *explicit_path) return explicit_path;
    const char *env = g_getenv("DERMLENS_MODEL");
    if (env && *env) return env;
    const char *dirs[] = {DL_SOURCE_WEIGHTS, DL_DATADIR};
    for (size_t f = 0; f < 2; f++)
        for (size_t d = 0; d < 2; d++) {
            snprintf(buf, sizeof buf, "%s/%s", dirs[d], model_files[f]);
            if (access(buf, R_OK) == 0) return buf;
        }
    snprintf(buf, sizeof buf, "%s/%s", DL_DATADIR, model_files[0]);
    return buf;
}

dl_model *cli_load_model(const char *path)
{
    dl_error err = {0};
    dl_model *m = dl_model_load(path, &err);
    if (!m) fprintf(stderr, "dermlens: cannot load model: %s\n", err.message);
    return m;
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
    gchar *model_path = NULL;
    gint top_k = 5, threads = 0;
    gboolean json = FALSE, tta = FALSE;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path, "Model file (default: the shipped lesion model, or $DERMLENS_MODEL)", "FILE"},
        {"top-k", 'k', 0, G_OPTION_ARG_INT, &top_k, "Number of classes to show (default 5; 0 = all)", "K"},
        {"json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print JSON: each input's path and every class's probability", NULL},
        {"tta", 0, 0, G_OPTION_ARG_NONE, &tta, "Test-time augmentation: average over flips and 90-degree turns", NULL},
        {"threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads (default: all cores)", "N"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("IMAGE... - classify dermoscopic images");
    g_option_context_set_summary(ctx,
        "Runs the model on each PNG or JPEG image (the whole image, resized as the model\n"
        "records) and prints the most probable classes. " DL_DISCLAIMER);
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
    if (threads > 0) cli_set_threads(threads);
    const char *mp = cli_default_model(model_path);
    dl_model *m = cli_load_model(mp);
    if (!m) return 1;
    int K = dl_model_num_classes(m);
    int failures = 0;
    cJSON *root = NULL, *results = NULL;
    if (json) {
        root = cJSON_CreateObject();
        cJSON *mj = cJSON_AddObjectToObject(root, "model");
        cJSON_AddStringToObject(mj, "path", mp);
        cJSON_AddStringToObject(mj, "name", dl_model_name(m));
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
        int rc = dl_image_load(files[f], &img, &err);
        if (rc == 0) rc = dl_classify_rgb8(m, img.pixels, img.width, img.height, img.stride, &opts, &r, &err);
        if (rc != 0) {
            failures++;
            fprintf(stderr, "dermlens classify: %s: %s\n", files[f], err.message);
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "path", files[f]);
                cJSON_AddStringToObject(o, "error", err.message);
                cJSON_AddItemToArray(results, o);
            }
        } else if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "path", files[f]);
            cJSON_AddNumberToObject(o, "width", img.width);
            cJSON_AddNumberToObject(o, "height", img.height);
            cJSON_AddStringToObject(o, "top_class", dl_model_class_name(m, r.top_index[0]));
            cJSON *classes = cJSON_AddArrayToObject(o, "classes");
            for (int c = 0; c < K; c++) {
                cJSON *cj = cJSON_CreateObject();
                cJSON_AddStringToObject(cj, "name", dl_model_class_name(m, c));
                cJSON_AddStringToObject(cj, "long_name", dl_model_class_long_name(m, c));
                cJSON_AddNumberToObject(cj, "probability", r.probs[c]);
                cJSON_AddNumberToObject(cj, "logit", r.logits[c]);
                cJSON_AddItemToArray(classes, cj);
            }
            cJSON *top = cJSON_AddArrayToObject(o, "top");
            for (int k = 0; k < r.top_k; k++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddNumberToObject(t, "index", r.top_index[k]);
                cJSON_AddStringToObject(t, "name", dl_model_class_name(m, r.top_index[k]));
                cJSON_AddNumberToObject(t, "probability", r.probs[r.top_index[k]]);
                cJSON_AddItemToArray(top, t);
            }
            if (isfinite(r.ood_score)) {
                cJSON_AddNumberToObject(o, "ood_score", r.ood_score);
                cJSON_AddBoolToObject(o, "ood_warning", r.ood_flag);
            }
            cJSON_AddItemToArray(results, o);
        } else {
            printf("%s\n", files[f]);
            for (int k = 0; k < r.top_k; k++) {
                int c = r.top_index[k];
                printf("  %2d. %-10s %6.2f%%  %s\n", k + 1, dl_model_class_name(m, c), 100.0 * r.probs[c],
                       dl_model_class_long_name(m, c));
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
        printf("model:        %s\nfile:         %s\nsha256:       %s\n", dl_model_name(m), mp, dl_model_sha256(m));
        {
            const cJSON *ts = cJSON_GetObjectItem(info, "tensor_sha256");
            const char *tv = cJSON_IsString(ts) ? ts->valuestring : "not recorded";
            printf("weights:      sha256 %s%s\n", tv, strlen(tv) == 64 ? " (verified at load)" : " (written by an older version)");
        }
        printf("format:       dermlens safetensors v%s\n", cJSON_GetObjectItem(info, "format_version")->valuestring);
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
            printf("  %3d %-12s %s\n", c, dl_model_class_name(m, c), dl_model_class_long_name(m, c));
        if (K > 20) printf("  ... (%d more; --json lists all)\n", K - 12);
        const cJSON *ood = cJSON_GetObjectItem(info, "ood");
        if (ood) printf("ood:          Mahalanobis on pooled features, threshold %g\n", cJSON_GetObjectItem(ood, "threshold")->valuedouble);
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

int cmd_import(int argc, char **argv)
{
    gchar *out = NULL, *labels = NULL, *name = NULL, *prov = NULL;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Output model file (.safetensors)", "FILE"},
        {"labels", 'l', 0, G_OPTION_ARG_FILENAME, &labels, "Class names, one per line", "FILE"},
        {"name", 'n', 0, G_OPTION_ARG_STRING, &name, "Model name stored in the file", "NAME"},
        {"provenance", 'p', 0, G_OPTION_ARG_STRING, &prov, "Provenance as a JSON object", "JSON"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("MODEL.tflite -o OUT.safetensors - import a TFLite model");
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
    dl_error err = {0};
    if (dl_import_tflite(files[0], labels, out, name, prov, &err)) {
        fprintf(stderr, "dermlens import: %s\n", err.message);
        return 1;
    }
    printf("wrote %s\n", out);
    g_strfreev(files);
    g_free(out);
    g_free(labels);
    g_free(name);
    g_free(prov);
    return 0;
}
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
