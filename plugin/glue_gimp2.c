/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens plug-in glue for GIMP 2.10 (libgimp 2.0, integer IDs, GTK 2):
 * registration, the parameter dialogs, and the GIMP calls of plugin.h spelled
 * in this API. The plug-in's logic is in core.c. */
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>
#include <math.h>

#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* Last values, kept by GIMP between runs (gimp_set_data). */
typedef struct {
    char model_path[4096];
    char method[32];
    double opacity;
    int top_k;
    int add_labels;
    int add_legend;
    int overlay; /* dh_overlay_style */
} dlp_saved;

typedef struct {
    char input_dir[4096];
    char csv_path[4096];
    char output_dir[4096];
    char model_path[4096];
    char labels_path[4096]; /* last: older saved values still load */
} dlp_saved_batch;

static void query(void);
static void run(const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals,
                GimpParam **return_vals);

const GimpPlugInInfo PLUG_IN_INFO = {NULL, NULL, query, run};

static void query(void)
{
    GimpParamDef classify_args[] = {
        {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
        {GIMP_PDB_IMAGE, "image", "Input image"},
        {GIMP_PDB_DRAWABLE, "drawable", "Layer to classify"},
        {GIMP_PDB_STRING, "model-path", "Model file (empty: the shipped model)"},
        {GIMP_PDB_STRING, "saliency-method", NULL /* dh_method_list(), set below */},
        {GIMP_PDB_FLOAT, "opacity", "Overlay opacity (0..100)"},
        {GIMP_PDB_INT32, "top-k", "Number of classes in the label (1..50)"},
        {GIMP_PDB_INT32, "add-labels", "Add the label text layer (TRUE/FALSE)"},
        {GIMP_PDB_INT32, "add-legend", "Add the colour-scale legend (TRUE/FALSE)"},
        {GIMP_PDB_INT32, "overlay-style",
         "How the map is drawn: 0 colour map, 1 outline of its top 20 %, 2 both (optional, 0)"},
    };
    GimpParamDef figure_args[] = {
        {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
        {GIMP_PDB_IMAGE, "image", "Input image (not changed)"},
        {GIMP_PDB_DRAWABLE, "drawable", "Layer to classify"},
        {GIMP_PDB_STRING, "model-path", "Model file (empty: the shipped model)"},
        {GIMP_PDB_STRING, "saliency-method", NULL /* dh_method_list(), set below */},
        {GIMP_PDB_FLOAT, "opacity", "Colour map opacity (0..100)"},
        {GIMP_PDB_INT32, "top-k", "Number of classes in the caption (1..50)"},
        {GIMP_PDB_INT32, "overlay-style",
         "How the map is drawn: 0 colour map, 1 outline of its top 20 %, 2 both"},
    };
    static const GimpParamDef figure_ret[] = {
        {GIMP_PDB_IMAGE, "figure", "The new image: region and saliency side by side, caption"},
    };
    static const GimpParamDef batch_args[] = {
        {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
        {GIMP_PDB_STRING, "input-folder", "Folder of images to review (never written to)"},
        {GIMP_PDB_STRING, "output-csv", "CSV file to write (atomically)"},
        {GIMP_PDB_STRING, "output-folder", "Folder for annotated PNG copies (empty: none)"},
        {GIMP_PDB_STRING, "model-path", "Model file (empty: the shipped model)"},
        {GIMP_PDB_STRING, "saliency-method", "Saliency method for the annotated copies"},
        {GIMP_PDB_FLOAT, "opacity", "Overlay opacity for the annotated copies (0..100)"},
        /* DLP_PROC_BATCH_LABELS only */
        {GIMP_PDB_STRING, "labels-csv",
         "Ground truth from this CSV (a label column and a path or image id column; empty: from "
         "class subfolders)"},
    };
    static const GimpParamDef batch_ret[] = {
        {GIMP_PDB_INT32, "classified", "Files classified"},
        {GIMP_PDB_INT32, "failed", "Files that failed (listed in the CSV with their error)"},
    };
    classify_args[4].description = figure_args[4].description = (gchar *)dh_method_list();

    gimp_install_procedure(DLP_PROC_CLASSIFY, "Classify a skin lesion and show where the model looked",
                           "Classifies the active layer (or the selection's bounding box) with the "
                           "DermLens CNN and adds a layer group with a saliency overlay, the top "
                           "classes and a legend. Research/teaching aid - not a diagnosis.",
                           "DermLens authors", "GPL-3.0-or-later", "2025", "Classify _Lesion...",
                           "RGB*, GRAY*, INDEXED*", GIMP_PLUGIN, G_N_ELEMENTS(classify_args), 0,
                           classify_args, NULL);
    gimp_plugin_menu_register(DLP_PROC_CLASSIFY, DLP_MENU_PATH);

    gimp_install_procedure(DLP_PROC_BATCH, "Review every image in a folder and its subfolders",
                           "Classifies and explains every image under the folder (subfolders "
                           "included; every format GIMP opens) and writes the CSV: path, given "
                           "label (from class subfolders or the labels CSV), prediction, every "
                           "probability, OOD score and flag, suspicion (likely label errors "
                           "first), error. With an output folder also index.html, images/ "
                           "(annotated PNGs with a label box, the disclaimer and the "
                           "out-of-distribution warning) and thumbs/, as `dermlens review`. "
                           "Input files are never changed.",
                           "DermLens authors", "GPL-3.0-or-later", "2025", "_Batch Review...", "",
                           GIMP_PLUGIN, G_N_ELEMENTS(batch_args) - 1, G_N_ELEMENTS(batch_ret),
                           batch_args, batch_ret);
    gimp_plugin_menu_register(DLP_PROC_BATCH, DLP_MENU_PATH);
    gimp_install_procedure(DLP_PROC_BATCH_LABELS, "Batch Review with the ground truth from a CSV",
                           "plug-in-dermlens-batch with an 8th argument, labels-csv: the given "
                           "labels come from that CSV (a label column: label, dx, "
                           "ham10000_class, class or diagnosis; and a path or image id column) "
                           "instead of class subfolders. Input files are never changed.",
                           "DermLens authors", "GPL-3.0-or-later", "2025", NULL, "", GIMP_PLUGIN,
                           G_N_ELEMENTS(batch_args), G_N_ELEMENTS(batch_ret), batch_args,
                           batch_ret);

    gimp_install_procedure(DLP_PROC_FIGURE, "A teaching figure: the lesion and where the model looked",
                           "Makes a new image with the active layer's region (or the selection's "
                           "bounding box) and the same region with its saliency map side by side, "
                           "and a caption with the top classes, the method, the model and the "
                           "disclaimer, ready to export. The image is not changed. "
                           "Research/teaching aid - not a diagnosis.",
                           "DermLens authors", "GPL-3.0-or-later", "2025", "_Teaching Figure...",
                           "RGB*, GRAY*, INDEXED*", GIMP_PLUGIN, G_N_ELEMENTS(figure_args),
                           G_N_ELEMENTS(figure_ret), figure_args, figure_ret);
    gimp_plugin_menu_register(DLP_PROC_FIGURE, DLP_MENU_PATH);
}

/* ------------------------------------------------------------------ GIMP calls */

/* plugin.h's dlp_gimp in libgimp 2.0: items are the API's own IDs. */
static dlp_base g2_image_base(gint32 image)
{
    GimpImageBaseType b = gimp_image_base_type(image);
    return b == GIMP_GRAY ? DLP_BASE_GRAY : b == GIMP_INDEXED ? DLP_BASE_INDEXED : DLP_BASE_RGB;
}

static gboolean g2_selection_empty(gint32 image)
{
    return gimp_selection_is_empty(image);
}

static void g2_undo_group(gint32 image, gboolean start)
{
    if (start)
        gimp_image_undo_group_start(image);
    else
        gimp_image_undo_group_end(image);
}

static gboolean g2_attach_parasite(gint32 image, const char *name, const char *data)
{
    GimpParasite *para = gimp_parasite_new(name, GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                           strlen(data), data);
    gboolean ok = gimp_image_attach_parasite(image, para);
    gimp_parasite_free(para);
    return ok;
}

static void g2_select_layer(gint32 image, gint32 drawable)
{
    if (gimp_item_is_layer(drawable))
        gimp_image_set_active_layer(image, drawable);
}

static gboolean g2_is_pixel_layer(gint32 drawable)
{
    return gimp_item_is_layer(drawable) && !gimp_item_is_group(drawable);
}

static void g2_size(gint32 drawable, int *w, int *h)
{
    *w = gimp_drawable_width(drawable);
    *h = gimp_drawable_height(drawable);
}

static void g2_offsets(gint32 drawable, int *x, int *y)
{
    gimp_drawable_offsets(drawable, x, y);
}

static gboolean g2_mask_intersect(gint32 drawable, int *x, int *y, int *w, int *h)
{
    return gimp_drawable_mask_intersect(drawable, x, y, w, h);
}

static guint8 *g2_sub_thumbnail(gint32 drawable, int x, int y, int w, int h, int *tw, int *th,
                                int *bpp, gsize *size)
{
    guint8 *data = gimp_drawable_get_sub_thumbnail_data(drawable, x, y, w, h, tw, th, bpp);
    *size = data ? (gsize)*tw * (gsize)*th * (gsize)*bpp : 0;
    return data;
}

static GeglBuffer *g2_buffer(gint32 drawable)
{
    return gimp_drawable_get_buffer(drawable);
}

static void g2_update(gint32 drawable, int w, int h)
{
    gimp_drawable_update(drawable, 0, 0, w, h);
}

static gint32 g2_group_new(gint32 image, gint32 above, const char *name)
{
    gint32 parent = gimp_item_get_parent(above);
    gint pos = gimp_image_get_item_position(image, above);
    gint32 group = gimp_layer_group_new(image);
    if (group < 0 || !gimp_image_insert_layer(image, group, parent > 0 ? parent : -1, pos))
        return -1;
    gimp_item_set_name(group, name);
    return group;
}

static gint32 g2_layer_new(gint32 image, gint32 parent, const char *name, int w, int h, int x,
                           int y, double opacity, int channels)
{
    GimpImageBaseType base = gimp_image_base_type(image);
    GimpImageType type = channels == 2 ? GIMP_GRAYA_IMAGE
                         : base == GIMP_INDEXED ? GIMP_INDEXEDA_IMAGE
                                                : GIMP_RGBA_IMAGE;
    gint32 layer = gimp_layer_new(image, name, w, h, type, opacity, GIMP_LAYER_MODE_NORMAL);
    if (layer < 0 || !gimp_image_insert_layer(image, layer, parent, 0))
        return -1;
    gimp_layer_set_offsets(layer, x, y);
    return layer;
}

static gboolean g2_parse_colour(const char *hex, GimpRGB *col)
{
    if (!gimp_rgb_parse_hex(col, hex, -1))
        gimp_rgba_set(col, 1.0, 1.0, 1.0, 1.0);
    col->a = 1.0;
    return TRUE;
}

static gint32 g2_text_new(gint32 image, gint32 parent, int pos, const char *text,
                          const char *font, double size, const char *hex)
{
    /* A new text layer takes the context's foreground: set it first, so
     * that GIMP renders the text once, in its colour, instead of rendering
     * it again for a colour change (a large share of the labels' time on a
     * 12 MP image). */
    GimpRGB col;
    gboolean colour = hex && g2_parse_colour(hex, &col);
    if (colour) {
        gimp_context_push();
        gimp_context_set_foreground(&col);
    }
    gint32 tl = gimp_text_layer_new(image, text, font, size, GIMP_UNIT_PIXEL);
    if (colour)
        gimp_context_pop();
    if (tl < 0 || !gimp_image_insert_layer(image, tl, parent, pos))
        return -1;
    GimpRGB got;
    if (colour && (!gimp_text_layer_get_color(tl, &got) || fabs(got.r - col.r) > 1.0 / 512 ||
                   fabs(got.g - col.g) > 1.0 / 512 || fabs(got.b - col.b) > 1.0 / 512))
        gimp_text_layer_set_color(tl, &col); /* a GIMP that does not take the context's */
    return tl;
}

static void g2_text_set(gint32 layer, const char *text)
{
    gimp_text_layer_set_text(layer, text);
}

static void g2_text_size(gint32 layer, double size)
{
    gimp_text_layer_set_font_size(layer, size, GIMP_UNIT_PIXEL);
}

static gboolean g2_scale(gint32 layer, int w, int h)
{
    /* Linear is plenty for a smooth map and much cheaper than the user's
     * default (cubic / NoHalo) on a huge layer. */
    gimp_context_push();
    gimp_context_set_interpolation(GIMP_INTERPOLATION_LINEAR);
    gboolean ok = gimp_layer_scale(layer, w, h, TRUE);
    gimp_context_pop();
    return ok;
}

static void g2_move(gint32 layer, int x, int y)
{
    gimp_layer_set_offsets(layer, x, y);
}

static void g2_rename(gint32 item, const char *name)
{
    gimp_item_set_name(item, name);
}

static void g2_reorder(gint32 image, gint32 item, gint32 parent, int pos)
{
    gimp_image_reorder_item(image, item, parent, pos);
}

static void g2_remove(gint32 image, gint32 layer)
{
    gimp_image_remove_layer(image, layer);
}

static gint32 g2_image_new(int w, int h)
{
    gint32 image = gimp_image_new(w, h, GIMP_RGB);
    if (image >= 0)
        gimp_image_undo_disable(image);
    return image;
}

static void g2_image_resize(gint32 image, int w, int h)
{
    gimp_image_resize(image, w, h, 0, 0);
}

static void g2_image_ready(gint32 image, gboolean display)
{
    gimp_image_undo_enable(image);
    gimp_image_clean_all(image);
    if (display)
        gimp_display_new(image);
}

static void g2_image_delete(gint32 image)
{
    gimp_image_delete(image);
}

static gint32 g2_file_load(const char *path)
{
    /* a file GIMP cannot open is an error row, not a GIMP error message */
    gimp_plugin_set_pdb_error_handler(GIMP_PDB_ERROR_HANDLER_PLUGIN);
    gint32 image = gimp_file_load(GIMP_RUN_NONINTERACTIVE, path, path);
    gimp_plugin_set_pdb_error_handler(GIMP_PDB_ERROR_HANDLER_INTERNAL);
    return image;
}

static gint32 g2_flatten(gint32 image)
{
    return gimp_image_flatten(image);
}

static const dlp_gimp gimp2 = DLP_GIMP_TABLE(g2, "active", 0);

/* ------------------------------------------------------------------ dialogs */

static void browse_clicked(GtkWidget *button, gpointer entry)
{
    GtkWidget *fc = gtk_file_chooser_dialog_new("Choose a DermLens model",
                                                GTK_WINDOW(gtk_widget_get_toplevel(button)),
                                                GTK_FILE_CHOOSER_ACTION_OPEN, "_Cancel",
                                                GTK_RESPONSE_CANCEL, "_Open", GTK_RESPONSE_ACCEPT,
                                                NULL);
    if (gtk_dialog_run(GTK_DIALOG(fc)) == GTK_RESPONSE_ACCEPT) {
        gchar *f = gtk_file_chooser_get_filename(GTK_FILE_CHOOSER(fc));
        if (f)
            gtk_entry_set_text(GTK_ENTRY(entry), f);
        g_free(f);
    }
    gtk_widget_destroy(fc);
}

static void method_changed(GtkWidget *combo, gpointer data)
{
    int i = gtk_combo_box_get_active(GTK_COMBO_BOX(combo));
    if (i >= 0 && i < dh_method_count())
        gtk_widget_set_tooltip_text(combo, dh_method_help((dl_saliency_method)i));
}

static void style_changed(GtkWidget *combo, gpointer data)
{
    int i = gtk_combo_box_get_active(GTK_COMBO_BOX(combo));
    gtk_widget_set_tooltip_text(combo, dh_overlay_style_help((dh_overlay_style)(i < 0 ? 0 : i)));
}

static GtkWidget *add_row(GtkWidget *table, int row, const char *label, GtkWidget *w)
{
    GtkWidget *l = gtk_label_new_with_mnemonic(label);
    gtk_misc_set_alignment(GTK_MISC(l), 0.0, 0.5);
    gtk_label_set_mnemonic_widget(GTK_LABEL(l), GTK_IS_HBOX(w) ? NULL : w);
    gtk_table_attach(GTK_TABLE(table), l, 0, 1, row, row + 1, GTK_FILL, GTK_FILL, 4, 2);
    gtk_table_attach(GTK_TABLE(table), w, 1, 2, row, row + 1, GTK_EXPAND | GTK_FILL, GTK_FILL, 4, 2);
    return w;
}

/* Classify Lesion's dialog; with figure set, Teaching Figure's (no label
 * and legend switches: the caption carries the text). */
static gboolean classify_dialog(dlp_saved *s, gboolean figure)
{
    gimp_ui_init("dermlens", FALSE);
    GtkWidget *dlg = gimp_dialog_new(figure ? "DermLens - Teaching Figure"
                                            : "DermLens - Classify Lesion",
                                     "dermlens", NULL, 0, gimp_standard_help_func,
                                     figure ? DLP_PROC_FIGURE : DLP_PROC_CLASSIFY, "_Cancel",
                                     GTK_RESPONSE_CANCEL, "_OK", GTK_RESPONSE_OK, NULL);
    GtkWidget *table = gtk_table_new(8, 2, FALSE);
    gtk_container_set_border_width(GTK_CONTAINER(table), 8);
    gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dlg))), table, TRUE, TRUE, 0);

    GtkWidget *hb = gtk_hbox_new(FALSE, 4);
    GtkWidget *entry = gtk_entry_new();
    gtk_entry_set_text(GTK_ENTRY(entry), s->model_path);
    gtk_widget_set_tooltip_text(entry, "Empty: the shipped lesion model");
    GtkWidget *browse = gtk_button_new_with_label("Choose...");
    gtk_widget_set_tooltip_text(browse, "Pick a DermLens model file (.safetensors)");
    g_signal_connect(browse, "clicked", G_CALLBACK(browse_clicked), entry);
    gtk_box_pack_start(GTK_BOX(hb), entry, TRUE, TRUE, 0);
    gtk_box_pack_start(GTK_BOX(hb), browse, FALSE, FALSE, 0);
    add_row(table, 0, "Model _file:", hb);

    /* Readable names; the selected one's one-line description as tooltip.
     * Mnemonics differ from each other and from the buttons (_Cancel, _OK,
     * _Help). */
    GtkWidget *combo = gtk_combo_box_text_new();
    int active = 0;
    for (int i = 0; i < dh_method_count(); i++) {
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo),
                                       dh_method_title((dl_saliency_method)i));
        if (strcmp(dl_saliency_method_name((dl_saliency_method)i), s->method) == 0)
            active = i;
    }
    g_signal_connect(combo, "changed", G_CALLBACK(method_changed), NULL);
    gtk_combo_box_set_active(GTK_COMBO_BOX(combo), active);
    method_changed(combo, NULL);
    add_row(table, 1, "Saliency _method:", combo);

    GtkWidget *scale = gtk_hscale_new_with_range(0, 100, 1);
    gtk_range_set_value(GTK_RANGE(scale), s->opacity);
    gtk_widget_set_tooltip_text(scale, "How strongly the saliency colours cover the image (0-100)");
    add_row(table, 2, "Overlay o_pacity:", scale);

    GtkWidget *spin = gtk_spin_button_new_with_range(1, DH_MAX_TOP_K, 1);
    gtk_spin_button_set_value(GTK_SPIN_BUTTON(spin), s->top_k);
    gtk_widget_set_tooltip_text(spin, figure ? "How many of the most likely classes the caption lists"
                                             : "How many of the most likely classes the label lists");
    add_row(table, 3, "_Number of classes:", spin);

    GtkWidget *style = gtk_combo_box_text_new();
    for (int i = 0; i < 3; i++)
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(style),
                                       dh_overlay_style_title((dh_overlay_style)i));
    gtk_combo_box_set_active(GTK_COMBO_BOX(style), s->overlay >= 0 && s->overlay < 3 ? s->overlay : 0);
    g_signal_connect(style, "changed", G_CALLBACK(style_changed), NULL);
    style_changed(style, NULL);
    add_row(table, 4, "_Draw the map as:", style);

    GtkWidget *labels = gtk_check_button_new_with_mnemonic("Add label _text");
    gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(labels), s->add_labels);
    GtkWidget *legend = gtk_check_button_new_with_mnemonic("Add le_gend");
    gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(legend), s->add_legend);
    if (!figure) {
        gtk_table_attach(GTK_TABLE(table), labels, 0, 2, 5, 6, GTK_FILL, GTK_FILL, 4, 2);
        gtk_table_attach(GTK_TABLE(table), legend, 0, 2, 6, 7, GTK_FILL, GTK_FILL, 4, 2);
    }
    GtkWidget *disc = gtk_label_new(NULL);
    gtk_label_set_markup(GTK_LABEL(disc), "<b>" DH_DISCLAIMER "</b>");
    gtk_table_attach(GTK_TABLE(table), disc, 0, 2, 7, 8, GTK_FILL, GTK_FILL, 4, 6);

    gtk_widget_show_all(dlg);
    dlp_dialog_test_hook(dlg);
    gboolean ok = gimp_dialog_run(GIMP_DIALOG(dlg)) == GTK_RESPONSE_OK;
    if (ok) {
        g_strlcpy(s->model_path, gtk_entry_get_text(GTK_ENTRY(entry)), sizeof s->model_path);
        int mi = gtk_combo_box_get_active(GTK_COMBO_BOX(combo));
        g_strlcpy(s->method,
                  dl_saliency_method_name(mi >= 0 && mi < dh_method_count() ? (dl_saliency_method)mi
                                                                            : DL_SALIENCY_GRADCAM),
                  sizeof s->method);
        s->opacity = gtk_range_get_value(GTK_RANGE(scale));
        s->top_k = gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(spin));
        s->add_labels = gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(labels));
        s->add_legend = gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(legend));
        s->overlay = gtk_combo_box_get_active(GTK_COMBO_BOX(style));
    }
    if (figure) { /* not packed: not destroyed with the dialog */
        g_object_ref_sink(labels);
        g_object_unref(labels);
        g_object_ref_sink(legend);
        g_object_unref(legend);
    }
    gtk_widget_destroy(dlg);
    return ok;
}

/* ------------------------------------------------------------------ batch */

static gboolean batch_dialog(dlp_saved_batch *s)
{
    gimp_ui_init("dermlens", FALSE);
    GtkWidget *dlg = gimp_dialog_new("DermLens - Batch Review", "dermlens-batch", NULL, 0,
                                     gimp_standard_help_func, DLP_PROC_BATCH, "_Cancel",
                                     GTK_RESPONSE_CANCEL, "_OK", GTK_RESPONSE_OK, NULL);
    GtkWidget *table = gtk_table_new(5, 2, FALSE);
    gtk_container_set_border_width(GTK_CONTAINER(table), 8);
    gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dlg))), table, TRUE, TRUE, 0);
    GtkWidget *in = gtk_entry_new();
    gtk_entry_set_text(GTK_ENTRY(in), s->input_dir);
    add_row(table, 0, "_Input folder:", in);
    GtkWidget *csv = gtk_entry_new();
    gtk_entry_set_text(GTK_ENTRY(csv), s->csv_path);
    add_row(table, 1, "Output CS_V file:", csv);
    GtkWidget *out = gtk_entry_new();
    gtk_entry_set_text(GTK_ENTRY(out), s->output_dir);
    gtk_widget_set_tooltip_text(out, "index.html, annotated images and thumbnails; empty: the CSV only");
    add_row(table, 2, "Review page fol_der:", out);
    GtkWidget *labels = gtk_entry_new();
    gtk_entry_set_text(GTK_ENTRY(labels), s->labels_path);
    gtk_widget_set_tooltip_text(labels, "Empty: the class subfolders give the labels");
    add_row(table, 4, "_Ground-truth labels CSV (optional):", labels);
    GtkWidget *model = gtk_entry_new();
    gtk_entry_set_text(GTK_ENTRY(model), s->model_path);
    gtk_widget_set_tooltip_text(model, "Empty: the shipped lesion model");
    add_row(table, 3, "Model _file:", model);
    gtk_widget_show_all(dlg);
    dlp_dialog_test_hook(dlg);
    gboolean ok = gimp_dialog_run(GIMP_DIALOG(dlg)) == GTK_RESPONSE_OK;
    if (ok) {
        g_strlcpy(s->input_dir, gtk_entry_get_text(GTK_ENTRY(in)), sizeof s->input_dir);
        g_strlcpy(s->csv_path, gtk_entry_get_text(GTK_ENTRY(csv)), sizeof s->csv_path);
        g_strlcpy(s->output_dir, gtk_entry_get_text(GTK_ENTRY(out)), sizeof s->output_dir);
        g_strlcpy(s->model_path, gtk_entry_get_text(GTK_ENTRY(model)), sizeof s->model_path);
        g_strlcpy(s->labels_path, gtk_entry_get_text(GTK_ENTRY(labels)), sizeof s->labels_path);
    }
    gtk_widget_destroy(dlg);
    return ok;
}

/* ------------------------------------------------------------------ run */

static void run(const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals,
                GimpParam **return_vals)
{
    static GimpParam values[3];
    GimpPDBStatusType status = GIMP_PDB_SUCCESS;
    gchar *msg = NULL;
    static gchar *ret_msg = NULL;
    GimpRunMode mode = nparams > 0 ? (GimpRunMode)param[0].data.d_int32 : GIMP_RUN_NONINTERACTIVE;

    gegl_init(NULL, NULL);
    *nreturn_vals = 1;
    *return_vals = values;
    values[0].type = GIMP_PDB_STATUS;

    gboolean figure = strcmp(name, DLP_PROC_FIGURE) == 0;
    if (figure || strcmp(name, DLP_PROC_CLASSIFY) == 0) {
        /* Classify: ..., top-k, add-labels, add-legend[, overlay-style];
         * Teaching Figure: ..., top-k, overlay-style. */
        dlp_saved s;
        memset(&s, 0, sizeof s);
        g_strlcpy(s.method, "gradcam", sizeof s.method);
        s.opacity = 60.0;
        s.top_k = 3;
        s.add_labels = s.add_legend = 1;
        if (mode != GIMP_RUN_NONINTERACTIVE)
            gimp_get_data(name, &s);
        s.model_path[sizeof s.model_path - 1] = '\0';
        s.method[sizeof s.method - 1] = '\0';
        int want = figure ? 8 : 10;
        if (mode == GIMP_RUN_NONINTERACTIVE) {
            if (nparams != want && !(nparams == 9 && !figure)) {
                status = GIMP_PDB_CALLING_ERROR;
                msg = g_strdup_printf("%s takes %d arguments, got %d", name, want, nparams);
            } else {
                g_strlcpy(s.model_path, param[3].data.d_string ? param[3].data.d_string : "",
                          sizeof s.model_path);
                g_strlcpy(s.method, param[4].data.d_string ? param[4].data.d_string : "",
                          sizeof s.method);
                s.opacity = param[5].data.d_float;
                s.top_k = param[6].data.d_int32;
                if (figure) {
                    s.overlay = param[7].data.d_int32;
                } else {
                    s.add_labels = param[7].data.d_int32;
                    s.add_legend = param[8].data.d_int32;
                    s.overlay = nparams > 9 ? param[9].data.d_int32 : DH_OVERLAY_FILL;
                }
            }
        } else if (mode == GIMP_RUN_INTERACTIVE) {
            if (!classify_dialog(&s, figure))
                status = GIMP_PDB_CANCEL;
        }
        dh_params p;
        char perr[256];
        if (status == GIMP_PDB_SUCCESS &&
            dh_params_set(&p, s.model_path, s.method, s.opacity, s.top_k, s.add_labels,
                          s.add_legend, perr, sizeof perr) != 0) {
            status = GIMP_PDB_CALLING_ERROR;
            msg = g_strdup(perr);
        }
        if (status == GIMP_PDB_SUCCESS && (s.overlay < 0 || s.overlay > DH_OVERLAY_BOTH)) {
            status = GIMP_PDB_CALLING_ERROR;
            msg = g_strdup("overlay-style must be 0 (colour map), 1 (outline) or 2 (both)");
        }
        p.overlay = s.overlay;
        gint32 fig = -1;
        if (status == GIMP_PDB_SUCCESS) {
            gboolean done = figure ? dlp_core_figure(&gimp2, param[1].data.d_image,
                                                     param[2].data.d_drawable, &p,
                                                     mode == GIMP_RUN_INTERACTIVE, &fig, &msg)
                                   : dlp_core_classify(&gimp2, param[1].data.d_image,
                                                       param[2].data.d_drawable, &p,
                                                       mode == GIMP_RUN_INTERACTIVE, &msg);
            if (!done)
                status = GIMP_PDB_EXECUTION_ERROR;
            else if (mode != GIMP_RUN_NONINTERACTIVE)
                gimp_set_data(name, &s, sizeof s);
        }
        if (figure && status == GIMP_PDB_SUCCESS) {
            *nreturn_vals = 2;
            values[1].type = GIMP_PDB_IMAGE;
            values[1].data.d_image = fig;
        }
    } else if (strcmp(name, DLP_PROC_BATCH) == 0 || strcmp(name, DLP_PROC_BATCH_LABELS) == 0) {
        int want = strcmp(name, DLP_PROC_BATCH) == 0 ? 7 : 8;
        dlp_saved_batch s;
        memset(&s, 0, sizeof s);
        const char *method = "gradcam";
        double opacity = 60.0;
        if (mode != GIMP_RUN_NONINTERACTIVE)
            gimp_get_data(DLP_PROC_BATCH, &s);
        s.input_dir[sizeof s.input_dir - 1] = s.csv_path[sizeof s.csv_path - 1] = '\0';
        s.output_dir[sizeof s.output_dir - 1] = s.model_path[sizeof s.model_path - 1] = '\0';
        s.labels_path[sizeof s.labels_path - 1] = '\0';
        if (mode == GIMP_RUN_NONINTERACTIVE) {
            if (nparams != want) {
                status = GIMP_PDB_CALLING_ERROR;
                msg = g_strdup_printf("%s takes %d arguments, got %d", name, want, nparams);
            } else {
                g_strlcpy(s.input_dir, param[1].data.d_string ? param[1].data.d_string : "",
                          sizeof s.input_dir);
                g_strlcpy(s.csv_path, param[2].data.d_string ? param[2].data.d_string : "",
                          sizeof s.csv_path);
                g_strlcpy(s.output_dir, param[3].data.d_string ? param[3].data.d_string : "",
                          sizeof s.output_dir);
                g_strlcpy(s.model_path, param[4].data.d_string ? param[4].data.d_string : "",
                          sizeof s.model_path);
                if (param[5].data.d_string && param[5].data.d_string[0])
                    method = param[5].data.d_string;
                opacity = param[6].data.d_float;
                if (nparams > 7 && param[7].data.d_string)
                    g_strlcpy(s.labels_path, param[7].data.d_string, sizeof s.labels_path);
            }
        } else if (mode == GIMP_RUN_INTERACTIVE) {
            if (!batch_dialog(&s))
                status = GIMP_PDB_CANCEL;
        }
        dh_params p;
        char perr[256];
        int classified = 0, failed = 0;
        if (status == GIMP_PDB_SUCCESS &&
            dh_params_set(&p, s.model_path, method, opacity, 3, 1, 1, perr, sizeof perr) != 0) {
            status = GIMP_PDB_CALLING_ERROR;
            msg = g_strdup(perr);
        }
        if (status == GIMP_PDB_SUCCESS) {
            dh_batch_stats st;
            if (!dlp_core_batch(&gimp2, s.input_dir, s.csv_path, s.output_dir, s.labels_path, &p, &st, &msg))
                status = GIMP_PDB_EXECUTION_ERROR;
            else if (mode != GIMP_RUN_NONINTERACTIVE)
                gimp_set_data(DLP_PROC_BATCH, &s, sizeof s);
            classified = st.ok;
            failed = st.failed;
        }
        if (status == GIMP_PDB_SUCCESS) {
            *nreturn_vals = 3;
            values[1].type = GIMP_PDB_INT32;
            values[1].data.d_int32 = classified;
            values[2].type = GIMP_PDB_INT32;
            values[2].data.d_int32 = failed;
            if (mode == GIMP_RUN_INTERACTIVE)
                g_message("DermLens: %d images reviewed, %d failed; results in %s%s%s%s", classified,
                          failed, s.csv_path, s.output_dir[0] ? " and " : "", s.output_dir,
                          s.output_dir[0] ? "/index.html" : "");
        }
    } else {
        status = GIMP_PDB_CALLING_ERROR;
        msg = g_strdup_printf("Unknown procedure %s", name);
    }

    values[0].data.d_status = status;
    if (msg) {
        if (mode == GIMP_RUN_INTERACTIVE && status != GIMP_PDB_CANCEL)
            g_message("DermLens: %s", msg);
        g_free(ret_msg);
        ret_msg = msg;
        *nreturn_vals = 2;
        values[1].type = GIMP_PDB_STRING;
        values[1].data.d_string = ret_msg;
    }
}

int main(int argc, char *argv[])
{
    dlp_core_init(argc > 0 ? argv[0] : NULL);
    return gimp_main(&PLUG_IN_INFO, argc, argv);
}
