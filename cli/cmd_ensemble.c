/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens ensemble: several trained models (different seeds, folds or
 * framings) into one model file whose members are averaged at run time. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_ensemble(int argc, char **argv)
{
    gchar *out = NULL, *name = NULL, **rest = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Ensemble model file to write (atomically)", "FILE"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &name, "Model name stored in the file (default: member 0's)", "NAME"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("MODEL MODEL... - combine trained models into one ensemble file");
    g_option_context_set_summary(ctx,
        "Writes 2 to 16 models with the same graph and classes (e.g. the same training run\n"
        "with different seeds, folds or preprocessing) as one model file. classify, explain,\n"
        "evaluate, batch and the GIMP plug-in run every member: probabilities are the mean\n"
        "of the members' calibrated probabilities, saliency the mean of their maps of the\n"
        "ensemble's class. Each member keeps its own preprocessing, temperature, OOD detector\n"
        "and provenance; `dermlens info` lists them.\n\n"
        "Example:\n  dermlens ensemble -o lesion.safetensors seed1.safetensors seed2.safetensors");
    g_option_context_add_main_entries(ctx, entries, NULL);
    char *cmd = cli_command_line(argc, argv); /* before parsing consumes argv */
    GError *gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens ensemble: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        g_free(cmd);
        return 2;
    }
    g_option_context_free(ctx);
    int n = rest ? (int)g_strv_length(rest) : 0;
    if (!out || n < 2) {
        fprintf(stderr, "dermlens ensemble: need -o FILE and at least two models (see --help)\n");
        g_strfreev(rest);
        g_free(cmd);
        return 2;
    }
    dl_model **models = calloc(n, sizeof *models);
    int rc = 1;
    if (!models) { fprintf(stderr, "dermlens ensemble: out of memory\n"); goto out; }
    cJSON *prov = cJSON_CreateObject();
    cJSON *mem = cJSON_AddArrayToObject(prov, "ensemble_of");
    for (int k = 0; k < n; k++) {
        if (!(models[k] = cli_load_model(rest[k]))) { cJSON_Delete(prov); goto out; }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", rest[k]);
        cJSON_AddStringToObject(o, "sha256", dl_model_sha256(models[k]));
        cJSON_AddStringToObject(o, "name", dl_model_name(models[k]));
        cJSON_AddItemToArray(mem, o);
    }
    cJSON_AddStringToObject(prov, "combination", "mean of the members' temperature-calibrated probabilities");
    cJSON_AddStringToObject(prov, "command_line", cmd);
    cJSON_AddStringToObject(prov, "license", "CC BY-NC 4.0 where a member was trained on HAM10000; backbone Apache-2.0");
    cJSON_AddStringToObject(prov, "intended_use", "research and teaching aid; not a medical device; not for diagnosis");
    char *pj = cJSON_PrintUnformatted(prov);
    cJSON_Delete(prov);
    dl_error err = {0};
    if (dl_model_save_ensemble(models, n, name, pj, out, &err)) {
        fprintf(stderr, "dermlens ensemble: %s\n", err.message);
        free(pj);
        goto out;
    }
    free(pj);
    dl_model *check = dl_model_load(out, &err);
    if (!check) {
        fprintf(stderr, "dermlens ensemble: the written file does not load: %s\n", err.message);
        goto out;
    }
    printf("wrote %s: %d members\n", out, dl_model_num_members(check));
    dl_model_free(check);
    rc = 0;
out:
    if (models) for (int k = 0; k < n; k++) dl_model_free(models[k]);
    free(models);
    g_strfreev(rest);
    g_free(cmd);
    return rc;
}
