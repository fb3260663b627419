/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens plug-in glue for GIMP 3.0 (GimpPlugIn subclass, objects, GTK 3):
 * registration, the parameter dialogs, and the GIMP calls of plugin.h spelled
 * in this API. The plug-in's logic is in core.c. */
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>
#include <math.h>

#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define DLP_BINARY "dermlens"

typedef struct _Dermlens {
    GimpPlugIn parent_instance;
} Dermlens;
typedef struct _DermlensClass {
    GimpPlugInClass parent_class;
} DermlensClass;

static GType dermlens_get_type(void);
G_DEFINE_TYPE(Dermlens, dermlens, GIMP_TYPE_PLUG_IN)

static GList *dermlens_query(GimpPlugIn *plug_in);
static GimpProcedure *dermlens_create(GimpPlugIn *plug_in, const gchar *name);

/* No translations are shipped yet: say so instead of letting GIMP warn. */
static gboolean dermlens_set_i18n(GimpPlugIn *plug_in, const gchar *procedure_name,
                                  gchar **gettext_domain, gchar **catalog_dir)
{
    return FALSE;
}

static void dermlens_class_init(DermlensClass *klass)
{
    GimpPlugInClass *pc = GIMP_PLUG_IN_CLASS(klass);
    pc->query_procedures = dermlens_query;
    pc->create_procedure = dermlens_create;
    pc->set_i18n = dermlens_set_i18n;
}

static void dermlens_init(Dermlens *self)
{
    (void)self;
}

static GList *dermlens_query(GimpPlugIn *plug_in)
{
    GList *l = NULL;
    l = g_list_append(l, g_strdup(DLP_PROC_CLASSIFY));
    l = g_list_append(l, g_strdup(DLP_PROC_BATCH));
    l = g_list_append(l, g_strdup(DLP_PROC_FIGURE));
    return l;
}

static GimpValueArray *fail(GimpProcedure *proc, GimpPDBStatusType status, gchar *msg)
{
    GError *e = g_error_new_literal(GIMP_PLUG_IN_ERROR, 0, msg ? msg : "failed");
    g_free(msg);
    return gimp_procedure_new_return_values(proc, status, e);
}

/* ------------------------------------------------------------------ GIMP calls */

/* plugin.h's dlp_gimp in libgimp 3.0: items travel as their IDs and are
 * looked up here. */
#define IMAGE(id) gimp_image_get_by_id(id)
#define ITEM(id) gimp_item_get_by_id(id)
#define DRAWABLE(id) GIMP_DRAWABLE(gimp_item_get_by_id(id))
#define LAYER(id) GIMP_LAYER(gimp_item_get_by_id(id))

static dlp_base g3_image_base(gint32 image)
{
    GimpImageBaseType b = gimp_image_get_base_type(IMAGE(image));
    return b == GIMP_GRAY ? DLP_BASE_GRAY : b == GIMP_INDEXED ? DLP_BASE_INDEXED : DLP_BASE_RGB;
}

static gboolean g3_selection_empty(gint32 image)
{
    return gimp_selection_is_empty(IMAGE(image));
}

static void g3_undo_group(gint32 image, gboolean start)
{
    if (start)
        gimp_image_undo_group_start(IMAGE(image));
    else
        gimp_image_undo_group_end(IMAGE(image));
}

static gboolean g3_attach_parasite(gint32 image, const char *name, const char *data)
{
    GimpParasite *para = gimp_parasite_new(name, GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                           (guint32)strlen(data), data);
    gboolean ok = gimp_image_attach_parasite(IMAGE(image), para);
    gimp_parasite_free(para);
    return ok;
}

static void g3_select_layer(gint32 image, gint32 drawable)
{
    GimpItem *it = ITEM(drawable);
    if (GIMP_IS_LAYER(it)) {
        const GimpLayer *sel[2] = {GIMP_LAYER(it), NULL};
        gimp_image_set_selected_layers(IMAGE(image), sel);
    }
}

static gboolean g3_is_pixel_layer(gint32 drawable)
{
    GimpItem *it = ITEM(drawable);
    return GIMP_IS_LAYER(it) && !GIMP_IS_LAYER_MASK(it) && !gimp_item_is_group(it);
}

static void g3_size(gint32 drawable, int *w, int *h)
{
    *w = gimp_drawable_get_width(DRAWABLE(drawable));
    *h = gimp_drawable_get_height(DRAWABLE(drawable));
}

static void g3_offsets(gint32 drawable, int *x, int *y)
{
    gimp_drawable_get_offsets(DRAWABLE(drawable), x, y);
}

static gboolean g3_mask_intersect(gint32 drawable, int *x, int *y, int *w, int *h)
{
    return gimp_drawable_mask_intersect(DRAWABLE(drawable), x, y, w, h);
}

static guint8 *g3_sub_thumbnail(gint32 drawable, int x, int y, int w, int h, int *tw, int *th,
                                int *bpp, gsize *size)
{
    GBytes *bytes = gimp_drawable_get_sub_thumbnail_data(DRAWABLE(drawable), x, y, w, h, *tw,
                                                         *th, tw, th, bpp);
    return bytes ? g_bytes_unref_to_data(bytes, size) : NULL;
}

static GeglBuffer *g3_buffer(gint32 drawable)
{
    return gimp_drawable_get_buffer(DRAWABLE(drawable));
}

static void g3_update(gint32 drawable, int w, int h)
{
    gimp_drawable_update(DRAWABLE(drawable), 0, 0, w, h);
}

static gint32 g3_group_new(gint32 image, gint32 above, const char *name)
{
    GimpImage *img = IMAGE(image);
    GimpItem *parent = gimp_item_get_parent(ITEM(above));
    gint pos = gimp_image_get_item_position(img, ITEM(above));
    GimpGroupLayer *group = gimp_group_layer_new(img, name);
    if (!group || !gimp_image_insert_layer(img, GIMP_LAYER(group),
                                           parent ? GIMP_LAYER(parent) : NULL, pos))
        return -1;
    return gimp_item_get_id(GIMP_ITEM(group));
}

static gint32 g3_layer_new(gint32 image, gint32 parent, const char *name, int w, int h, int x,
                           int y, double opacity, int channels)
{
    GimpImage *img = IMAGE(image);
    GimpImageBaseType base = gimp_image_get_base_type(img);
    GimpImageType type = channels == 2 ? GIMP_GRAYA_IMAGE
                         : base == GIMP_INDEXED ? GIMP_INDEXEDA_IMAGE
                                                : GIMP_RGBA_IMAGE;
    GimpLayer *layer = gimp_layer_new(img, name, w, h, type, opacity, GIMP_LAYER_MODE_NORMAL);
    if (!layer || !gimp_image_insert_layer(img, layer, parent >= 0 ? LAYER(parent) : NULL, 0))
        return -1;
    gimp_layer_set_offsets(layer, x, y);
    return gimp_item_get_id(GIMP_ITEM(layer));
}

static gint32 g3_text_new(gint32 image, gint32 parent, int pos, const char *text,
                          const char *font, double size, const char *hex)
{
    GimpImage *img = IMAGE(image);
    GimpFont *f = gimp_font_get_by_name(font);
    if (!f)
        f = gimp_context_get_font();
    /* A new text layer takes the context's foreground: set it first, so
     * that GIMP renders the text once, in its colour (see glue_gimp2.c). */
    GeglColor *c = hex ? gegl_color_new(hex) : NULL;
    if (c) {
        gimp_context_push();
        gimp_context_set_foreground(c);
    }
    GimpTextLayer *tl = f ? gimp_text_layer_new(img, text, f, size, gimp_unit_pixel()) : NULL;
    if (c)
        gimp_context_pop();
    if (!tl || !gimp_image_insert_layer(img, GIMP_LAYER(tl), parent >= 0 ? LAYER(parent) : NULL,
                                        pos)) {
        if (c)
            g_object_unref(c);
        return -1;
    }
    if (c) {
        GeglColor *got = gimp_text_layer_get_color(tl);
        gdouble a[4] = {0}, b[4] = {0};
        if (got)
            gegl_color_get_rgba(got, &a[0], &a[1], &a[2], &a[3]);
        gegl_color_get_rgba(c, &b[0], &b[1], &b[2], &b[3]);
        if (!got || fabs(a[0] - b[0]) > 1.0 / 512 || fabs(a[1] - b[1]) > 1.0 / 512 ||
            fabs(a[2] - b[2]) > 1.0 / 512)
            gimp_text_layer_set_color(tl, c); /* a GIMP that does not take the context's */
        if (got)
            g_object_unref(got);
        g_object_unref(c);
    }
    return gimp_item_get_id(GIMP_ITEM(tl));
}

static void g3_text_set(gint32 layer, const char *text)
{
    gimp_text_layer_set_markup(GIMP_TEXT_LAYER(ITEM(layer)), text);
}

static void g3_text_size(gint32 layer, double size)
{
    gimp_text_layer_set_font_size(GIMP_TEXT_LAYER(ITEM(layer)), size, gimp_unit_pixel());
}

static gboolean g3_scale(gint32 layer, int w, int h)
{
    /* Linear is plenty for a smooth map and much cheaper than the user's
     * default (cubic / NoHalo) on a huge layer. */
    gimp_context_push();
    gimp_context_set_interpolation(GIMP_INTERPOLATION_LINEAR);
    gboolean ok = gimp_layer_scale(LAYER(layer), w, h, TRUE);
    gimp_context_pop();
    return ok;
}

static void g3_move(gint32 layer, int x, int y)
{
    gimp_layer_set_offsets(LAYER(layer), x, y);
}

static void g3_rename(gint32 item, const char *name)
{
    gimp_item_set_name(ITEM(item), name);
}

static void g3_reorder(gint32 image, gint32 item, gint32 parent, int pos)
{
    gimp_image_reorder_item(IMAGE(image), ITEM(item), parent >= 0 ? ITEM(parent) : NULL, pos);
}

static void g3_remove(gint32 image, gint32 layer)
{
    gimp_image_remove_layer(IMAGE(image), LAYER(layer));
}

static gint32 g3_image_new(int w, int h)
{
    GimpImage *img = gimp_image_new(w, h, GIMP_RGB);
    if (!img)
        return -1;
    gimp_image_undo_disable(img);
    return gimp_image_get_id(img);
}

static void g3_image_resize(gint32 image, int w, int h)
{
    gimp_image_resize(IMAGE(image), w, h, 0, 0);
}

static void g3_image_ready(gint32 image, gboolean display)
{
    gimp_image_undo_enable(IMAGE(image));
    gimp_image_clean_all(IMAGE(image));
    if (display)
        gimp_display_new(IMAGE(image));
}

static void g3_image_delete(gint32 image)
{
    gimp_image_delete(IMAGE(image));
}

static gint32 g3_file_load(const char *path)
{
    GFile *f = g_file_new_for_path(path);
    /* a file GIMP cannot open is an error row, not a GIMP error message */
    GimpPlugIn *pi = gimp_get_plug_in();
    gimp_plug_in_set_pdb_error_handler(pi, GIMP_PDB_ERROR_HANDLER_PLUGIN);
    GimpImage *img = gimp_file_load(GIMP_RUN_NONINTERACTIVE, f);
    gimp_plug_in_set_pdb_error_handler(pi, GIMP_PDB_ERROR_HANDLER_INTERNAL);
    g_object_unref(f);
    return img ? gimp_image_get_id(img) : -1;
}

static gint32 g3_flatten(gint32 image)
{
    GimpLayer *l = gimp_image_flatten(IMAGE(image));
    return l ? gimp_item_get_id(GIMP_ITEM(l)) : -1;
}

static const dlp_gimp gimp3 = DLP_GIMP_TABLE(g3, "selected", 1);

/* ------------------------------------------------------------------ classify */

static GimpValueArray *classify_run(GimpProcedure *proc, GimpRunMode mode, GimpImage *image,
                                    GimpDrawable **drawables, GimpProcedureConfig *config,
                                    gpointer data)
{
    gegl_init(NULL, NULL);
    gboolean figure = strcmp(gimp_procedure_get_name(proc), DLP_PROC_FIGURE) == 0;
    int n = 0;
    while (drawables && drawables[n])
        n++;
    if (n != 1)
        return fail(proc, GIMP_PDB_CALLING_ERROR,
                    g_strdup_printf("DermLens works on one layer; %d are selected", n));

    if (mode == GIMP_RUN_INTERACTIVE) {
        gchar *method = NULL;
        g_object_get(config, "saliency-method", &method, NULL);
        /* The dialog's choice has the nicks, the PDB argument the engine's
         * names (see dlp_method_nick). */
        for (int i = 0; i < dh_method_count(); i++)
            if (method && strcmp(method, dl_saliency_method_name((dl_saliency_method)i)) == 0)
                g_object_set(config, "saliency-choice", dlp_method_nick((dl_saliency_method)i),
                             NULL);
        g_free(method);
        gchar *mp = NULL;
        g_object_get(config, "model-path", &mp, NULL);
        GFile *mf = mp && mp[0] ? g_file_new_for_path(mp) : NULL;
        g_object_set(config, "model-file", mf, NULL);
        if (mf)
            g_object_unref(mf);
        g_free(mp);
        gimp_ui_init(DLP_BINARY);
        GtkWidget *dlg = gimp_procedure_dialog_new(proc, config,
                                                   figure ? "DermLens - Teaching Figure"
                                                          : "DermLens - Classify Lesion");
        gimp_procedure_dialog_get_label(GIMP_PROCEDURE_DIALOG(dlg), "disclaimer",
                                        "<b>" DH_DISCLAIMER "</b>", TRUE, FALSE);
        if (figure)
            gimp_procedure_dialog_fill(GIMP_PROCEDURE_DIALOG(dlg), "model-file",
                                       "saliency-choice", "overlay-style", "opacity", "top-k",
                                       "disclaimer", NULL);
        else
            gimp_procedure_dialog_fill(GIMP_PROCEDURE_DIALOG(dlg), "model-file",
                                       "saliency-choice", "overlay-style", "opacity", "top-k",
                                       "add-labels", "add-legend", "disclaimer", NULL);
        dlp_dialog_test_hook(dlg);
        gboolean ok = gimp_procedure_dialog_run(GIMP_PROCEDURE_DIALOG(dlg));
        gtk_widget_destroy(dlg);
        if (!ok)
            return gimp_procedure_new_return_values(proc, GIMP_PDB_CANCEL, NULL);
        mf = NULL;
        g_object_get(config, "model-file", &mf, NULL);
        gchar *path = mf ? g_file_get_path(mf) : NULL;
        g_object_set(config, "model-path", path ? path : "", NULL);
        g_free(path);
        if (mf)
            g_object_unref(mf);
        gchar *nick = NULL;
        g_object_get(config, "saliency-choice", &nick, NULL);
        for (int i = 0; i < dh_method_count(); i++)
            if (nick && strcmp(nick, dlp_method_nick((dl_saliency_method)i)) == 0)
                g_object_set(config, "saliency-method",
                             dl_saliency_method_name((dl_saliency_method)i), NULL);
        g_free(nick);
    }

    gchar *model = NULL, *method = NULL, *style = NULL;
    gdouble opacity = 60.0;
    gint top_k = 3;
    gboolean labels = TRUE, legend = TRUE;
    g_object_get(config, "model-path", &model, "saliency-method", &method, "opacity", &opacity,
                 "top-k", &top_k, "overlay-style", &style, NULL);
    if (!figure)
        g_object_get(config, "add-labels", &labels, "add-legend", &legend, NULL);
    dh_params p;
    char perr[256];
    int prc = dh_params_set(&p, model ? model : "", method, opacity, top_k, labels, legend, perr,
                            sizeof perr);
    p.overlay = dh_overlay_style_parse(style);
    g_free(model);
    g_free(method);
    g_free(style);
    if (prc != 0)
        return fail(proc, GIMP_PDB_CALLING_ERROR, g_strdup(perr));
    if (p.overlay < 0)
        return fail(proc, GIMP_PDB_CALLING_ERROR, g_strdup("overlay-style: fill, outline or both"));

    gchar *msg = NULL;
    gint32 fig = -1, img = gimp_image_get_id(image);
    gint32 drawable = gimp_item_get_id(GIMP_ITEM(drawables[0]));
    gboolean interactive = mode == GIMP_RUN_INTERACTIVE;
    if (figure ? !dlp_core_figure(&gimp3, img, drawable, &p, interactive, &fig, &msg)
               : !dlp_core_classify(&gimp3, img, drawable, &p, interactive, &msg)) {
        if (interactive)
            g_message("DermLens: %s", msg);
        return fail(proc, GIMP_PDB_EXECUTION_ERROR, msg);
    }
    GimpValueArray *ret = gimp_procedure_new_return_values(proc, GIMP_PDB_SUCCESS, NULL);
    if (figure)
        GIMP_VALUES_SET_IMAGE(ret, 1, gimp_image_get_by_id(fig));
    return ret;
}

/* ------------------------------------------------------------------ batch */

static GimpValueArray *batch_run(GimpProcedure *proc, GimpProcedureConfig *config, gpointer data)
{
    gegl_init(NULL, NULL);
    GimpRunMode mode = GIMP_RUN_NONINTERACTIVE;
    g_object_get(config, "run-mode", &mode, NULL);
    if (mode == GIMP_RUN_INTERACTIVE) {
        gimp_ui_init(DLP_BINARY);
        GtkWidget *dlg = gimp_procedure_dialog_new(proc, config, "DermLens - Batch Review");
        gimp_procedure_dialog_get_label(GIMP_PROCEDURE_DIALOG(dlg), "disclaimer",
                                        "<b>" DH_DISCLAIMER "</b>", TRUE, FALSE);
        gimp_procedure_dialog_fill(GIMP_PROCEDURE_DIALOG(dlg), "input-folder", "output-csv",
                                   "output-folder", "labels-csv", "model-path", "saliency-method",
                                   "opacity", "disclaimer", NULL);
        dlp_dialog_test_hook(dlg);
        gboolean ok = gimp_procedure_dialog_run(GIMP_PROCEDURE_DIALOG(dlg));
        gtk_widget_destroy(dlg);
        if (!ok)
            return gimp_procedure_new_return_values(proc, GIMP_PDB_CANCEL, NULL);
    }
    gchar *in = NULL, *csv = NULL, *out = NULL, *model = NULL, *method = NULL, *labels = NULL;
    gdouble opacity = 60.0;
    g_object_get(config, "input-folder", &in, "output-csv", &csv, "output-folder", &out,
                 "model-path", &model, "saliency-method", &method, "opacity", &opacity,
                 "labels-csv", &labels, NULL);
    dh_params p;
    char perr[256];
    gchar *msg = NULL;
    GimpPDBStatusType status = GIMP_PDB_SUCCESS;
    dh_batch_stats st = {0};
    if (dh_params_set(&p, model ? model : "", method, opacity, 3, 1, 1, perr, sizeof perr) != 0) {
        status = GIMP_PDB_CALLING_ERROR;
        msg = g_strdup(perr);
    } else if (!dlp_core_batch(&gimp3, in, csv, out, labels, &p, &st, &msg)) {
        status = GIMP_PDB_EXECUTION_ERROR;
    }
    g_free(in);
    g_free(labels);
    g_free(model);
    g_free(method);
    if (status != GIMP_PDB_SUCCESS) {
        g_free(csv);
        if (mode == GIMP_RUN_INTERACTIVE)
            g_message("DermLens: %s", msg);
        return fail(proc, status, msg);
    }
    if (mode == GIMP_RUN_INTERACTIVE)
        g_message("DermLens: %d images reviewed, %d failed; results in %s%s%s%s", st.ok, st.failed, csv,
                  out && out[0] ? " and " : "", out ? out : "", out && out[0] ? "/index.html" : "");
    g_free(csv);
    g_free(out);
    GimpValueArray *ret = gimp_procedure_new_return_values(proc, GIMP_PDB_SUCCESS, NULL);
    GIMP_VALUES_SET_INT(ret, 1, st.ok);
    GIMP_VALUES_SET_INT(ret, 2, st.failed);
    return ret;
}

/* ------------------------------------------------------------------ registration */

/* Mnemonics: unique within each dialog and apart from the procedure
 * dialog's own buttons (_Cancel, _OK, _Help, _Reset, _Load Saved Settings,
 * _Save Settings): c, o, h, r, l and s are taken. tests/gimp checks that
 * GIMP prints no "duplicate mnemonic" warning. */
static void add_common_args(GimpProcedure *proc)
{
    gimp_procedure_add_string_argument(proc, "model-path", "Model _path",
                                       "Model file (empty: the shipped lesion model)", "",
                                       G_PARAM_READWRITE);
    gimp_procedure_add_string_argument(proc, "saliency-method", "Saliency _method",
                                       dh_method_list(), "gradcam", G_PARAM_READWRITE);
    gimp_procedure_add_double_argument(proc, "opacity", "Overlay o_pacity",
                                       "How strongly the saliency colours cover the image (0-100)",
                                       0.0, 100.0, 60.0, G_PARAM_READWRITE);
}

static GimpProcedure *dermlens_create(GimpPlugIn *plug_in, const gchar *name)
{
    GimpProcedure *proc = NULL;
    gboolean figure = strcmp(name, DLP_PROC_FIGURE) == 0;
    if (figure || strcmp(name, DLP_PROC_CLASSIFY) == 0) {
        proc = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, classify_run,
                                        NULL, NULL);
        gimp_procedure_set_image_types(proc, "RGB*, GRAY*, INDEXED*");
        gimp_procedure_set_sensitivity_mask(proc, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
        gimp_procedure_set_menu_label(proc, figure ? "_Teaching Figure..." : "Classify _Lesion...");
        gimp_procedure_add_menu_path(proc, "<Image>/Filters/Dermatology");
        if (figure)
            gimp_procedure_set_documentation(
                proc, "A teaching figure: the lesion and where the model looked",
                "Makes a new image with the selected layer's region (or the selection's bounding "
                "box) and the same region with its saliency map side by side, and a caption with "
                "the top classes, the method, the model and the disclaimer, ready to export. The "
                "image is not changed. Research/teaching aid - not a diagnosis.",
                name);
        else
            gimp_procedure_set_documentation(
                proc, "Classify a skin lesion and show where the model looked",
                "Classifies the selected layer (or the selection's bounding box) with the DermLens "
                "CNN and adds a layer group with a saliency overlay, the top classes and a legend. "
                "Research/teaching aid - not a diagnosis.",
                name);
        gimp_procedure_set_attribution(proc, "DermLens authors", "GPL-3.0-or-later", "2025");
        add_common_args(proc);
        gimp_procedure_add_int_argument(proc, "top-k", "_Number of classes",
                                        figure ? "How many of the most likely classes the caption lists"
                                               : "How many of the most likely classes the label lists",
                                        1, DH_MAX_TOP_K, 3, G_PARAM_READWRITE);
        if (!figure) {
            gimp_procedure_add_boolean_argument(proc, "add-labels", "Add label _text",
                                                "Add the label text layer", TRUE,
                                                G_PARAM_READWRITE);
            gimp_procedure_add_boolean_argument(proc, "add-legend", "Add le_gend",
                                                "Add the colour-scale legend", TRUE,
                                                G_PARAM_READWRITE);
        }
        GimpChoice *styles = gimp_choice_new();
        for (int i = 0; i < 3; i++)
            gimp_choice_add(styles, dh_overlay_style_name((dh_overlay_style)i), i,
                            dh_overlay_style_title((dh_overlay_style)i),
                            dh_overlay_style_help((dh_overlay_style)i));
        gimp_procedure_add_choice_argument(proc, "overlay-style", "_Draw the map as",
                                           "Colour map, outline of its top 20 % (for slides), or both",
                                           styles, "fill", G_PARAM_READWRITE);
        /* Dialog-only: readable names with a one-line tooltip each, and a
         * file chooser for the model. The PDB keeps the string arguments. */
        GimpChoice *choice = gimp_choice_new();
        for (int i = 0; i < dh_method_count(); i++)
            gimp_choice_add(choice, dlp_method_nick((dl_saliency_method)i), i,
                            dh_method_title((dl_saliency_method)i),
                            dh_method_help((dl_saliency_method)i));
        gimp_procedure_add_choice_aux_argument(proc, "saliency-choice", "Saliency _method",
                                               "How the map of where the model looked is made",
                                               choice, "gradcam", G_PARAM_READWRITE);
        gimp_procedure_add_file_aux_argument(proc, "model-file", "Model _file",
                                             "A DermLens model (.safetensors); none: the shipped "
                                             "lesion model",
                                             GIMP_FILE_CHOOSER_ACTION_OPEN, TRUE, NULL,
                                             G_PARAM_READWRITE);
        if (figure)
            gimp_procedure_add_image_return_value(proc, "figure", "Figure",
                                                  "The new image: region and saliency side by "
                                                  "side, caption",
                                                  FALSE, G_PARAM_READWRITE);
    } else if (strcmp(name, DLP_PROC_BATCH) == 0) {
        proc = gimp_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, batch_run, NULL, NULL);
        gimp_procedure_set_sensitivity_mask(proc, GIMP_PROCEDURE_SENSITIVE_ALWAYS);
        gimp_procedure_set_menu_label(proc, "_Batch Review...");
        gimp_procedure_add_menu_path(proc, "<Image>/Filters/Dermatology");
        gimp_procedure_set_documentation(
            proc, "Review every image in a folder and its subfolders",
            "Classifies and explains every image under the folder (subfolders included; every "
            "format GIMP opens) and writes the CSV: path, given label (from class subfolders or "
            "the labels CSV), prediction, every probability, OOD score and flag, suspicion "
            "(likely label errors first), error. With an output folder also index.html, images/ "
            "(annotated PNGs with a label box, the disclaimer and the out-of-distribution "
            "warning) and thumbs/, as `dermlens review`. Input files are never changed.",
            name);
        gimp_procedure_set_attribution(proc, "DermLens authors", "GPL-3.0-or-later", "2025");
        gimp_procedure_add_enum_argument(proc, "run-mode", "Run mode", "The run mode",
                                         GIMP_TYPE_RUN_MODE, GIMP_RUN_NONINTERACTIVE,
                                         G_PARAM_READWRITE);
        gimp_procedure_add_string_argument(proc, "input-folder", "_Input folder",
                                           "Folder of images to review (never written to)", "",
                                           G_PARAM_READWRITE);
        gimp_procedure_add_string_argument(proc, "output-csv", "Output CS_V file",
                                           "CSV file to write (atomically)", "",
                                           G_PARAM_READWRITE);
        gimp_procedure_add_string_argument(proc, "output-folder", "Review page fol_der",
                                           "Folder for index.html, the annotated images and "
                                           "thumbnails (empty: the CSV only)", "",
                                           G_PARAM_READWRITE);
        add_common_args(proc);
        /* last, with a default: calls without it keep working */
        gimp_procedure_add_string_argument(proc, "labels-csv", "_Ground-truth labels CSV (optional)",
                                           "Ground truth from this CSV (a label column and a path "
                                           "or image id column); empty: from class subfolders",
                                           "", G_PARAM_READWRITE);
        gimp_procedure_add_int_return_value(proc, "classified", "Classified", "Files classified",
                                            0, G_MAXINT, 0, G_PARAM_READWRITE);
        gimp_procedure_add_int_return_value(proc, "failed", "Failed",
                                            "Files that failed (listed in the CSV)", 0, G_MAXINT,
                                            0, G_PARAM_READWRITE);
    }
    return proc;
}

int main(int argc, char *argv[])
{
    dlp_core_init(argc > 0 ? argv[0] : NULL);
    return gimp_main(dermlens_get_type(), argc, argv);
}
