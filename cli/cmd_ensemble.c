/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens ensemble: several trained models (different seeds, folds or
 * framings) into one model file whose members are averaged at run time. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORAGE_HELP "How to store the weights: f32, or f16 (dense and ordinary conv weights and the OOD matrix as " \
                     "IEEE half, about half the file; weights/FORMAT.md). Default: as the (first) input"

/* --storage f16|f32 -> *out; NULL leaves *out. Prints the error, -1. */
static int parse_storage(const char *cmd, const char *s, dl_storage *out)
{
    if (!s) return 0;
    if (!g_ascii_strcasecmp(s, "f16")) *out = DL_STORAGE_F16;
    else if (!g_ascii_strcasecmp(s, "f32")) *out = DL_STORAGE_F32;
    else {
        fprintf(stderr, "dermlens %s: --storage %s: want f16 or f32\n", cmd, cli_disp(s));
        return -1;
    }
    return 0;
}

int cmd_ensemble(int argc, char **argv)
{
    gchar *out = NULL, *name = NULL, *storage = NULL, **rest = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Ensemble model file to write (atomically)", "FILE"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &name, "Model name stored in the file (default: member 0's)", "NAME"},
        {"storage", 0, 0, G_OPTION_ARG_STRING, &storage, STORAGE_HELP, "f16|f32"},
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
    dl_storage st = DL_STORAGE_F32;
    gboolean st_given = storage != NULL;
    if (!out || n < 2 || parse_storage("ensemble", storage, &st)) {
        if (!out || n < 2) fprintf(stderr, "dermlens ensemble: need -o FILE and at least two models (see --help)\n");
        g_strfreev(rest);
        g_free(out);
        g_free(name);
        g_free(storage);
        g_free(cmd);
        return 2;
    }
    g_free(storage);
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
    /* the file is written in member 0's storage */
    if (st_given) {
        dl_model_set_storage(models[0], st, NULL);
        cJSON_AddStringToObject(prov, "storage", st == DL_STORAGE_F16 ? "F16" : "F32");
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
    g_free(out);
    g_free(name);
    g_free(cmd);
    return rc;
}

/* dermlens adjust: a copy of a model with class operating points folded in
 * (e.g. a melanoma-sensitivity setting chosen on validation). */
int cmd_adjust(int argc, char **argv)
{
    gchar *out = NULL, *note = NULL, *storage = NULL, **shifts = NULL, **rest = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Model file to write (atomically)", "FILE"},
        {"class-bias", 'c', 0, G_OPTION_ARG_STRING_ARRAY, &shifts,
         "Multiply CLASS's probability by exp(LOGODDS) before renormalising (repeatable)", "CLASS=LOGODDS"},
        {"note", 0, 0, G_OPTION_ARG_STRING, &note, "Why (recorded in the provenance, e.g. the validation rule)", "TEXT"},
        {"storage", 0, 0, G_OPTION_ARG_STRING, &storage, STORAGE_HELP, "f16|f32"},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("MODEL -o OUT [--class-bias CLASS=LOGODDS] [--storage f16|f32] - set a class "
                                               "operating point or the weight storage");
    g_option_context_set_summary(ctx,
        "Writes a copy of MODEL whose calibrated probability of CLASS is multiplied by\n"
        "exp(LOGODDS) and renormalised, folded into the output bias of every member (LOGODDS\n"
        "times the member's temperature). A positive value trades other classes' accuracy for\n"
        "CLASS's sensitivity; choose it on validation data. The shift and the note go into the\n"
        "provenance; `dermlens info` shows them. --storage rewrites the weights as f16 (about\n"
        "half the file; weights/FORMAT.md says which tensors and what it changes) or f32.\n\n"
        "Examples:\n  dermlens adjust lesion.safetensors -o lesion-mel.safetensors --class-bias mel=0.65\n"
        "  dermlens adjust lesion.safetensors -o lesion-f16.safetensors --storage f16");
    g_option_context_add_main_entries(ctx, entries, NULL);
    char *cmd = cli_command_line(argc, argv);
    GError *gerr = NULL;
    int rc = 2;
    dl_model *m = NULL;
    cJSON *prov = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens adjust: %s\n", gerr->message);
        g_error_free(gerr);
        goto out;
    }
    if (!out || !rest || !rest[0] || rest[1] || ((!shifts || !shifts[0]) && !storage)) {
        fprintf(stderr, "dermlens adjust: need one MODEL, -o FILE and at least one --class-bias or --storage (see --help)\n");
        goto out;
    }
    dl_storage st = DL_STORAGE_F32;
    if (parse_storage("adjust", storage, &st)) goto out;
    rc = 1;
    if (!(m = cli_load_model(rest[0]))) goto out;
    const char *old = dl_model_provenance_json(m);
    prov = old ? cJSON_Parse(old) : NULL;
    if (!cJSON_IsObject(prov)) {
        cJSON_Delete(prov);
        prov = cJSON_CreateObject();
    }
    cJSON *ops = cJSON_GetObjectItem(prov, "operating_point");
    if (shifts && !cJSON_IsArray(ops)) {
        cJSON_DeleteItemFromObject(prov, "operating_point");
        ops = cJSON_AddArrayToObject(prov, "operating_point");
    }
    if (storage) {
        /* the conversion is recorded next to the operating points */
        cJSON_DeleteItemFromObject(prov, "storage");
        cJSON *so = cJSON_AddObjectToObject(prov, "storage");
        cJSON_AddStringToObject(so, "dtype", st == DL_STORAGE_F16 ? "F16" : "F32");
        cJSON_AddStringToObject(so, "from_sha256", dl_model_sha256(m));
        cJSON_AddStringToObject(so, "command_line", cmd);
        dl_model_set_storage(m, st, NULL);
    }
    for (int i = 0; shifts && shifts[i]; i++) {
        char *eq = strchr(shifts[i], '=');
        char *end = NULL;
        double v = eq ? g_ascii_strtod(eq + 1, &end) : NAN;
        if (!eq || !end || *end || end == eq + 1) {
            fprintf(stderr, "dermlens adjust: --class-bias %s: want CLASS=LOGODDS\n", shifts[i]);
            rc = 2;
            goto out;
        }
        *eq = 0;
        int c = -1;
        for (int k = 0; k < dl_model_num_classes(m); k++)
            if (!strcmp(dl_model_class_name(m, k), shifts[i])) c = k;
        if (c < 0) {
            fprintf(stderr, "dermlens adjust: the model has no class \"%s\"\n", shifts[i]);
            rc = 2;
            goto out;
        }
        dl_error err = {0};
        if (dl_model_shift_class(m, c, (float)v, &err)) {
            fprintf(stderr, "dermlens adjust: %s\n", err.message);
            goto out;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "class", shifts[i]);
        cJSON_AddNumberToObject(o, "log_odds", v);
        cJSON_AddStringToObject(o, "meaning", "the class's calibrated probability multiplied by exp(log_odds), then renormalised");
        if (note) cJSON_AddStringToObject(o, "rule", note);
        cJSON_AddStringToObject(o, "command_line", cmd);
        cJSON_AddItemToArray(ops, o);
    }
    char *pj = cJSON_PrintUnformatted(prov);
    dl_error err = {0};
    int w = dl_model_save_as(m, out, pj, &err);
    free(pj);
    if (w) {
        fprintf(stderr, "dermlens adjust: %s\n", err.message);
        goto out;
    }
    printf("wrote %s\n", out);
    rc = 0;
out:
    g_option_context_free(ctx);
    cJSON_Delete(prov);
    dl_model_free(m);
    g_strfreev(shifts);
    g_strfreev(rest);
    g_free(out);
    g_free(note);
    g_free(storage);
    g_free(cmd);
    return rc;
}
