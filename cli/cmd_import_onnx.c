/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens import MODEL.onnx -o OUT.safetensors: an ONNX classifier (NCHW,
 * float32/float16 weights) into a DermLens model file with its
 * preprocessing and class names. */
#include "cli.h"
#include "cmd_import_onnx.h"

#include <cjson/cJSON.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "a,b,c" -> three finite floats. */
static int parse3(const char *s, float out[3])
{
    char *end;
    for (int k = 0; k < 3; k++) {
        double v = strtod(s, &end);
        if (end == s || !(v == v) || v > 1e30 || v < -1e30) return -1;
        out[k] = (float)v;
        if (k < 2) {
            if (*end != ',') return -1;
            s = end + 1;
        }
    }
    return *end == '\0' ? 0 : -1;
}

int cmd_import_onnx(int argc, char **argv)
{
    gchar *out = NULL, *classes = NULL, *name = NULL, *prov = NULL, *size = NULL, *mean = NULL, *std = NULL,
          *resize = NULL;
    gdouble scale = 1.0;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Output model file (.safetensors)", "FILE"},
        {"classes", 'c', 0, G_OPTION_ARG_FILENAME, &classes, "Class names: one per line, or a JSON list", "FILE"},
        {"size", 's', 0, G_OPTION_ARG_STRING, &size, "Network input size (default: the file's)", "WxH"},
        {"mean", 0, 0, G_OPTION_ARG_STRING, &mean, "Mean per channel, in pixel/255 units (default ImageNet 0.485,0.456,0.406)", "R,G,B"},
        {"std", 0, 0, G_OPTION_ARG_STRING, &std, "Std per channel, in pixel/255 units (default ImageNet 0.229,0.224,0.225)", "R,G,B"},
        {"scale", 0, 0, G_OPTION_ARG_DOUBLE, &scale, "What a 255 pixel is before mean/std (1: 0..1 models; 255: 0..255)", "S"},
        {"resize", 'r', 0, G_OPTION_ARG_STRING, &resize, "squash (default), crop (centre square) or pad (keep the aspect, black border to fit)", "MODE"},
        {"name", 'n', 0, G_OPTION_ARG_STRING, &name, "Model name stored in the file", "NAME"},
        {"provenance", 'p', 0, G_OPTION_ARG_STRING, &prov, "Provenance as a JSON object", "JSON"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("MODEL.onnx -o OUT.safetensors - import an ONNX model");
    g_option_context_set_summary(ctx,
        "Reads an ONNX image classifier (input [N,3,H,W] float, one [N,classes] output; opsets 11-18;\n"
        "Conv incl. grouped/depthwise/dilated, BatchNormalization, Relu, Clip(0,6), HardSwish,\n"
        "HardSigmoid, Sigmoid, SiLU, squeeze-excitation Mul, Add/Sub/Mul/Div, Max/AveragePool,\n"
        "GlobalAveragePool, ReduceMean(H,W), Concat (channels), Flatten/Reshape/Squeeze/Unsqueeze,\n"
        "Gemm/MatMul, Dropout/Identity, Softmax), converts it to NHWC once and writes a DermLens model file.\n"
        "Weights must be inside the .onnx file (external data is refused). Input x = (p/255*scale\n"
        "- mean) / std, as torchvision.transforms.Normalize.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    int rc = 2;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens import: %s\n", gerr->message);
        g_error_free(gerr);
        goto done;
    }
    if (!files || !files[0] || files[1] || !out) {
        fprintf(stderr, "dermlens import: need one MODEL.onnx and -o OUT (see --help)\n");
        goto done;
    }
    dl_onnx_import_options o;
    dl_onnx_import_options_defaults(&o);
    if (size) {
        char *x = strchr(size, 'x');
        char *end;
        long w = strtol(size, &end, 10), h = x ? strtol(x + 1, &end, 10) : 0;
        if (!x || *end || w < 1 || h < 1 || w > 8192 || h > 8192) {
            fprintf(stderr, "dermlens import: --size must be WxH with sides 1..8192, e.g. 224x224\n");
            goto done;
        }
        o.width = (int)w;
        o.height = (int)h;
    }
    if (mean && parse3(mean, o.mean)) {
        fprintf(stderr, "dermlens import: --mean must be three numbers R,G,B\n");
        goto done;
    }
    if (std && (parse3(std, o.std) || !(o.std[0] > 0 && o.std[1] > 0 && o.std[2] > 0))) {
        fprintf(stderr, "dermlens import: --std must be three positive numbers R,G,B\n");
        goto done;
    }
    if (!(scale > 0 && scale < 1e6)) {
        fprintf(stderr, "dermlens import: --scale must be positive\n");
        goto done;
    }
    o.scale = (float)scale;
    if (resize) {
        if (!strcmp(resize, "squash")) o.resize = "squash";
        else if (!strcmp(resize, "crop") || !strcmp(resize, "center_crop")) o.resize = "center_crop";
        else if (!strcmp(resize, "pad")) o.resize = "pad";
        else {
            fprintf(stderr, "dermlens import: --resize %s: expected squash, crop or pad\n", cli_disp(resize));
            goto done;
        }
    }
    if (prov) {
        cJSON *pj = cJSON_Parse(prov);
        int ok = cJSON_IsObject(pj);
        cJSON_Delete(pj);
        if (!ok) {
            fprintf(stderr, "dermlens import: --provenance is not a JSON object\n");
            goto done;
        }
    }
    o.classes_path = classes;
    o.name = name;
    o.provenance_json = prov;
    rc = 1;
    if (cli_check_output("import", out) != 0) goto done;
    dl_error err = {0};
    if (dl_import_onnx(files[0], &o, out, &err)) {
        fprintf(stderr, "dermlens import: %s\n", cli_disp(err.message));
        goto done;
    }
    printf("wrote %s\n", cli_disp(out));
    rc = 0;
done:
    g_option_context_free(ctx);
    g_strfreev(files);
    g_free(out);
    g_free(classes);
    g_free(name);
    g_free(prov);
    g_free(size);
    g_free(mean);
    g_free(std);
    g_free(resize);
    return rc;
}
