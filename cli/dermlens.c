/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens: command-line front end of the DermLens engine. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command commands[] = {
    {"classify", cmd_classify, "classify images (probabilities, top-k, JSON)"},
    {"explain", cmd_explain, "saliency overlay (Grad-CAM family, Score-CAM, occlusion); --evaluate faithfulness"},
    {"info", cmd_info, "show a model's graph, classes, preprocessing and provenance"},
    {"import", cmd_import, "convert a TFLite model into a DermLens model file"},
    {"batch", cmd_batch, "classify every image of a folder into a CSV (the plug-in's batch review)"},
    {"train", cmd_train, "transfer learning: frozen-backbone head, then fine-tuning"},
    {"evaluate", cmd_evaluate, "score a model on labelled images: metrics, report, plots"},
    {"robustness", cmd_robustness, "balanced accuracy under image perturbations, with/without TTA"},
    {"compare", cmd_compare, "traditional classifiers (colour/texture/shape + LR, RF) vs the CNN"},
    {"adjust", cmd_adjust, "set a class operating point (e.g. melanoma sensitivity chosen on validation) in a model copy"},
    {"ensemble", cmd_ensemble, "combine trained models (seeds, folds, framings) into one ensemble model file"},
    {"export", cmd_export, "write a model as ONNX (--onnx) for ONNX Runtime / Triton"},
    {"review", cmd_review, "review a labelled dataset: suspicious labels first, overlays, CSV and an offline page"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dermlens COMMAND [OPTIONS...]\n\n"
            "DermLens classifies dermoscopic skin-lesion images with a transfer-learned CNN.\n"
            DL_DISCLAIMER "\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'dermlens COMMAND --help' for a command's options.\n"
               "Environment: DERMLENS_MODEL (default model file), DERMLENS_THREADS.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dermlens %s\n", DL_VERSION_STRING);
        return 0;
    }
    const char *t = g_getenv("DERMLENS_THREADS");
    int nt = 0;
    if (t && *t) {
        char *end = NULL;
        long v = strtol(t, &end, 10);
        if (end == t || *end || v < 1 || v > DL_MAX_THREADS) {
            fprintf(stderr, "dermlens: DERMLENS_THREADS must be a whole number from 1 to %d (got '%s'; unset it for all cores)\n",
                    DL_MAX_THREADS, cli_disp(t));
            return 2;
        }
        nt = (int)v;
    }
    cli_set_threads(nt);
    cli_install_signal_cleanup();
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dermlens: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
