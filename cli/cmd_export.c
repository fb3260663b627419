/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens export: write a model as ONNX for other runtimes. */
#include "cli.h"

#include <stdio.h>

int cmd_export(int argc, char **argv)
{
    gchar *output = NULL;
    gboolean onnx = FALSE;
    gchar **files = NULL;
    GOptionEntry entries[] = {
        {"onnx", 0, 0, G_OPTION_ARG_NONE, &onnx, "Write ONNX (opset 13); the only format so far", NULL},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Output file (written atomically)", "FILE"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("- export a model for other runtimes: --onnx MODEL -o FILE");
    g_option_context_set_summary(ctx,
        "Writes the model's network (backbone and head, up to the logits) as ONNX, to\n"
        "serve it with ONNX Runtime, Triton or similar. MODEL defaults to the shipped model.\n\n"
        "Input  \"input\":  float32 [N, 3, H, W], NCHW, RGB, ALREADY PREPROCESSED:\n"
        "                 x = (pixel - mean) / std per channel, pixels 0..255, the image\n"
        "                 resized to the model's input size as `dermlens info` shows\n"
        "                 (also stored in the ONNX metadata_props \"dermlens.preprocess\").\n"
        "Output \"logits\": float32 [N, K] raw logits; calibrated probabilities are\n"
        "                 softmax(logits / T), T = metadata \"dermlens.temperature\";\n"
        "                 class names are in metadata \"dermlens.classes\".\n"
        "The OOD detector and Grad-CAM are not exported. " DL_DISCLAIMER);
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens export: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    int rc = 2;
    if (!onnx) {
        fprintf(stderr, "dermlens export: choose a format (--onnx); see --help\n");
    } else if (!output) {
        fprintf(stderr, "dermlens export: no output file (-o FILE)\n");
    } else if (files && files[0] && files[1]) {
        fprintf(stderr, "dermlens export: one model at a time\n");
    } else if (cli_check_output("export", output) != 0) {
        rc = 1; /* a device, FIFO, symlink or folder is never replaced */
    } else {
        const char *mp = cli_default_model(files ? files[0] : NULL);
        dl_model *m = cli_load_model(mp);
        rc = 1;
        if (m) {
            dl_error err = {0};
            if (dl_model_export_onnx(m, output, &err) == 0) {
                printf("wrote %s (ONNX opset 13, input NCHW preprocessed, output logits) from %s\n", cli_disp(output),
                       cli_disp(mp));
                rc = 0;
            } else {
                fprintf(stderr, "dermlens export: %s\n", cli_disp(err.message));
            }
            dl_model_free(m);
        }
    }
    g_strfreev(files);
    g_free(output);
    return rc;
}
