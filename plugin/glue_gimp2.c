/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens plug-in glue for GIMP 2.10 (libgimp 2.0, integer IDs, GTK 2). */
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "glue_common.h"

/* Last values, kept by GIMP between runs (gimp_set_data). */
typedef struct {
    char model_path[4096];
    char method[32];
    double opacity;
    int top_k;
    int add_labels;
    int add_legend;
} dlp_saved;

typedef struct {
    char input_dir[4096];
    char csv_path[4096];
    char output_dir[4096];
    char model_path[4096];
} dlp_saved_batch;

static void query(void);
static void run(const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals,
                GimpParam **return_vals);

const GimpPlugInInfo PLUG_IN_INFO = {NULL, NULL, query, run};

static void query(void)
{
    static const GimpParamDef classify_args[] = {
        {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
        {GIMP_PDB_IMAGE, "image", "Input image"},
        {GIMP_PDB_DRAWABLE, "drawable", "Layer to classify"},
        {GIMP_PDB_STRING, "model-path", "Model file (empty: the shipped model)"},
        {GIMP_PDB_STRING, "saliency-method",
         "gradcam, gradcam++, hirescam, layercam, scorecam or occlusion"},
        {GIMP_PDB_FLOAT, "opacity", "Overlay opacity (0..100)"},
        {GIMP_PDB_INT32, "top-k", "Number of classes in the label (1..50)"},
        {GIMP_PDB_INT32, "add-labels", "Add the label text layer (TRUE/FALSE)"},
        {GIMP_PDB_INT32, "add-legend", "Add the colour-scale legend (TRUE/FALSE)"},
    };
    static const GimpParamDef batch_args[] = {
        {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
        {GIMP_PDB_STRING, "input-folder", "Folder of images to review (never written to)"},
        {GIMP_PDB_STRING, "output-csv", "CSV file to write (atomically)"},
        {GIMP_PDB_STRING, "output-folder", "Folder for annotated PNG copies (empty: none)"},
        {GIMP_PDB_STRING, "model-path", "Model file (empty: the shipped model)"},
        {GIMP_PDB_STRING, "saliency-method", "Saliency method for the annotated copies"},
        {GIMP_PDB_FLOAT, "opacity", "Overlay opacity for the annotated copies (0..100)"},
    };
    static const GimpParamDef batch_ret[] = {
        {GIMP_PDB_INT32, "classified", "Files classified"},
        {GIMP_PDB_INT32, "failed", "Files that failed (listed in the CSV with their error)"},
    };

    gimp_install_procedure(DLP_PROC_CLASSIFY, "Classify a skin lesion and show where the model looked",
                           "Classifies the active layer (or the selection's bounding box) with the "
                           "DermLens CNN and adds a layer group with a saliency overlay, the top "
                           "classes and a legend. Research/teaching aid - not a diagnosis.",
                           "DermLens authors", "GPL-3.0-or-later", "2025", "Classify _Lesion...",
                           "RGB*, GRAY*, INDEXED*", GIMP_PLUGIN, G_N_ELEMENTS(classify_args), 0,
                           classify_args, NULL);
    gimp_plugin_menu_register(DLP_PROC_CLASSIFY, DLP_MENU_PATH);

    gimp_install_procedure(DLP_PROC_BATCH, "Classify every image in a folder into a CSV file",
                           "Writes one CSV row per file (top class, every probability, OOD flag, "
                           "error) and optionally annotated PNG copies. Input files are never "
                           "changed.",
                           "DermLens authors", "GPL-3.0-or-later", "2025", "_Batch Review...", "",
                           GIMP_PLUGIN, G_N_ELEMENTS(batch_args), G_N_ELEMENTS(batch_ret),
                           batch_args, batch_ret);
    gimp_plugin_menu_register(DLP_PROC_BATCH, DLP_MENU_PATH);
}

/* ------------------------------------------------------------------ progress */

typedef struct {
    char last[128];
} host_state;

static void host_progress(void *host, double fraction, const char *text)
{
    host_state *h = host;
    if (text && h && strncmp(h->last, text, sizeof h->last - 1) != 0) {
        g_strlcpy(h->last, text, sizeof h->last);
        gchar *t = g_strdup_printf("DermLens: %s", text);
        gimp_progress_set_text(t);
        g_free(t);
    }
    gimp_progress_update(fraction);
}

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

static const char *const method_names[] = {"gradcam", "gradcam++", "hirescam",
                                           "layercam", "scorecam", "occlusion"};

static void method_changed(GtkWidget *combo, gpointer data)
{
    int i = gtk_combo_box_get_active(GTK_COMBO_BOX(combo));
    if (i >= 0 && i < (int)G_N_ELEMENTS(method_names))
        gtk_widget_set_tooltip_text(combo, dlp_method_help((dl_saliency_method)i));
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

static gboolean classify_dialog(dlp_saved *s)
{
    gimp_ui_init("dermlens", FALSE);
    GtkWidget *dlg = gimp_dialog_new("DermLens - Classify Lesion", "dermlens", NULL, 0,
                                     gimp_standard_help_func, DLP_PROC_CLASSIFY, "_Cancel",
                                     GTK_RESPONSE_CANCEL, "_OK", GTK_RESPONSE_OK, NULL);
    GtkWidget *table = gtk_table_new(7, 2, FALSE);
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
    for (unsigned i = 0; i < G_N_ELEMENTS(method_names); i++) {
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo),
                                       dlp_method_title((dl_saliency_method)i));
        if (strcmp(method_names[i], s->method) == 0)
            active = (int)i;
    }
    g_signal_connect(combo, "changed", G_CALLBACK(method_changed), NULL);
    gtk_combo_box_set_active(GTK_COMBO_BOX(combo), active);
    method_changed(combo, NULL);
    add_row(table, 1, "Saliency _method:", combo);

    GtkWidget *scale = gtk_hscale_new_with_range(0, 100, 1);
    gtk_range_set_value(GTK_RANGE(scale), s->opacity);
    gtk_widget_set_tooltip_text(scale, "How strongly the saliency colours cover the image (0-100)");
    add_row(table, 2, "Overlay o_pacity:", scale);

    GtkWidget *spin = gtk_spin_button_new_with_range(1, DLP_MAX_TOP_K, 1);
    gtk_spin_button_set_value(GTK_SPIN_BUTTON(spin), s->top_k);
    gtk_widget_set_tooltip_text(spin, "How many of the most likely classes the label lists");
    add_row(table, 3, "_Number of classes:", spin);

    GtkWidget *labels = gtk_check_button_new_with_mnemonic("Add label _text");
    gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(labels), s->add_labels);
    gtk_table_attach(GTK_TABLE(table), labels, 0, 2, 4, 5, GTK_FILL, GTK_FILL, 4, 2);
    GtkWidget *legend = gtk_check_button_new_with_mnemonic("Add le_gend");
    gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(legend), s->add_legend);
    gtk_table_attach(GTK_TABLE(table), legend, 0, 2, 5, 6, GTK_FILL, GTK_FILL, 4, 2);
    GtkWidget *disc = gtk_label_new(NULL);
    gtk_label_set_markup(GTK_LABEL(disc), "<b>" DLP_DISCLAIMER "</b>");
    gtk_table_attach(GTK_TABLE(table), disc, 0, 2, 6, 7, GTK_FILL, GTK_FILL, 4, 6);

    gtk_widget_show_all(dlg);
    dlp_dialog_test_hook(dlg);
    gboolean ok = gimp_dialog_run(GIMP_DIALOG(dlg)) == GTK_RESPONSE_OK;
    if (ok) {
        g_strlcpy(s->model_path, gtk_entry_get_text(GTK_ENTRY(entry)), sizeof s->model_path);
        int mi = gtk_combo_box_get_active(GTK_COMBO_BOX(combo));
        g_strlcpy(s->method,
                  mi >= 0 && mi < (int)G_N_ELEMENTS(method_names) ? method_names[mi] : "gradcam",
                  sizeof s->method);
        s->opacity = gtk_range_get_value(GTK_RANGE(scale));
        s->top_k = gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(spin));
        s->add_labels = gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(labels));
        s->add_legend = gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(legend));
    }
    gtk_widget_destroy(dlg);
    return ok;
}

/* Probabilities as bars, after the run. */
static void result_dialog(const dl_model *m, const dlp_analysis *an)
{
    GtkWidget *dlg = gimp_dialog_new("DermLens - Result", "dermlens-result", NULL, 0,
                                     gimp_standard_help_func, DLP_PROC_CLASSIFY, "_Close",
                                     GTK_RESPONSE_CLOSE, NULL);
    GtkWidget *vb = gtk_vbox_new(FALSE, 4);
    gtk_container_set_border_width(GTK_CONTAINER(vb), 8);
    gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dlg))), vb, TRUE, TRUE, 0);
    const dl_result *r = &an->result;
    gchar *head = dlp_result_headline_markup(m, an);
    GtkWidget *hl = gtk_label_new(NULL);
    gtk_label_set_markup(GTK_LABEL(hl), head);
    gtk_label_set_line_wrap(GTK_LABEL(hl), TRUE);
    g_free(head);
    gtk_box_pack_start(GTK_BOX(vb), hl, FALSE, FALSE, 4);
    for (int i = 0; i < r->top_k; i++) {
        int c = r->top_index[i];
        const char *name = dl_model_class_long_name(m, c);
        GtkWidget *bar = gtk_progress_bar_new();
        gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(bar), r->probs[c]);
        gchar *t = g_strdup_printf("%s  %d %%", name ? name : "?", dlp_percent(r->probs[c]));
        gtk_progress_bar_set_text(GTK_PROGRESS_BAR(bar), t);
        g_free(t);
        gtk_box_pack_start(GTK_BOX(vb), bar, FALSE, FALSE, 0);
    }
    if (an->saliency_note[0])
        gtk_box_pack_start(GTK_BOX(vb), gtk_label_new(an->saliency_note), FALSE, FALSE, 0);
    GtkWidget *disc = gtk_label_new(NULL);
    gtk_label_set_markup(GTK_LABEL(disc), "<b>" DLP_DISCLAIMER "</b>");
    gtk_box_pack_start(GTK_BOX(vb), disc, FALSE, FALSE, 4);
    gtk_widget_show_all(dlg);
    dlp_dialog_test_hook(dlg);
    gimp_dialog_run(GIMP_DIALOG(dlg));
    gtk_widget_destroy(dlg);
}

/* ------------------------------------------------------------------ classify */

static gint32 new_pixel_layer(gint32 image, gint32 parent, const char *name, int w, int h,
                              int x, int y, double opacity, int channels)
{
    GimpImageBaseType base = gimp_image_base_type(image);
    GimpImageType type = channels == 2 ? GIMP_GRAYA_IMAGE
                         : base == GIMP_INDEXED ? GIMP_INDEXEDA_IMAGE
                                                : GIMP_RGBA_IMAGE;
    gint32 layer = gimp_layer_new(image, name, w, h, type, opacity, GIMP_LAYER_MODE_NORMAL);
    if (layer < 0)
        return -1;
    if (!gimp_image_insert_layer(image, layer, parent, 0))
        return -1;
    gimp_layer_set_offsets(layer, x, y);
    return layer;
}

static gboolean annotate_image(gint32 image, gint32 drawable, const dlp_geom *g, dl_model *m,
                               const char *model_path, const dlp_params *p, const dlp_analysis *an,
                               gchar **msg)
{
    dlp_region region = {g->ox + g->x, g->oy + g->y, g->w, g->h};
    int channels = gimp_image_base_type(image) == GIMP_GRAY ? 2 : 4;
    char name[512];
    gboolean ok = FALSE, group_added = FALSE;

    gimp_image_undo_group_start(image);

    /* Put the group right above the classified layer. */
    gint32 parent = gimp_item_get_parent(drawable);
    gint pos = gimp_image_get_item_position(image, drawable);
    gint32 group = gimp_layer_group_new(image);
    dlp_group_name(m, &an->result, an->image_flag, name, sizeof name);
    if (group < 0 || !gimp_image_insert_layer(image, group, parent > 0 ? parent : -1, pos)) {
        *msg = g_strdup("Could not add the DermLens layer group");
        goto out;
    }
    group_added = TRUE;
    gimp_item_set_name(group, name);

    /* The overlay is skipped on huge regions (DLP_MAX_OVERLAY_PIXELS). */
    gboolean overlay = an->map && (double)g->w * (double)g->h <= DLP_MAX_OVERLAY_PIXELS;
    char note[256];
    g_strlcpy(note, an->saliency_note, sizeof note);
    if (an->map && !overlay)
        g_snprintf(note, sizeof note,
                   "overlay not added: the region (%d x %d) is larger than %.0f megapixels", g->w,
                   g->h, DLP_MAX_OVERLAY_PIXELS / (1024.0 * 1024.0));
    if (overlay) {
        g_snprintf(name, sizeof name, "Saliency (%s)", dlp_method_title(p->method));
        /* A huge region's overlay is written at analysis size and scaled
         * up by GIMP: no full-size pixels cross the wire. */
        int ow = g->scale < 1.0 ? an->map_width : g->w, oh = g->scale < 1.0 ? an->map_height : g->h;
        gint32 ov = new_pixel_layer(image, group, name, ow, oh, region.x, region.y, p->opacity,
                                    channels);
        if (ov < 0) {
            *msg = g_strdup("Could not add the saliency layer");
            goto out;
        }
        GeglBuffer *buf = gimp_drawable_get_buffer(ov);
        gboolean wok = dlp_write_overlay(buf, an, ow, oh, channels, msg);
        g_object_unref(buf);
        if (!wok)
            goto out;
        gimp_drawable_update(ov, 0, 0, ow, oh);
        if (ow != g->w || oh != g->h) {
            /* Linear is plenty for a smooth map and much cheaper than the
             * user's default (cubic / NoHalo) on a huge layer. */
            gimp_context_push();
            gimp_context_set_interpolation(GIMP_INTERPOLATION_LINEAR);
            gboolean scaled = gimp_layer_scale(ov, g->w, g->h, TRUE);
            gimp_context_pop();
            if (!scaled) {
                *msg = g_strdup("Could not scale the saliency layer to the region");
                goto out;
            }
            gimp_layer_set_offsets(ov, region.x, region.y);
        }
    }
    /* Labels and legend: sizes follow the region (dlp_label_font_px). */
    dlp_label_plan plan;
    dlp_plan_labels(m, an, p, g->w, g->h, overlay, channels, &plan);
    double fpx = plan.font_px;
    int mg = plan.margin;
    int lw = 0, lh = 0;
    guint8 *lpx = plan.show_legend
                      ? dlp_legend_render(fpx, g->w - 2 * mg, p->method, channels, &lw, &lh)
                      : NULL;
    if (!lpx)
        lw = lh = 0; /* no overlay, or no room beside a readable label (dlp_plan_labels) */
    if (lpx) {
        g_snprintf(name, sizeof name, "Legend: %s, low to high", dlp_method_title(p->method));
        gint32 lg = new_pixel_layer(image, group, name, lw, lh, region.x + mg,
                                    region.y + g->h - lh - mg, 100.0, channels);
        if (lg < 0) {
            g_free(lpx);
            *msg = g_strdup("Could not add the legend layer");
            goto out;
        }
        GeglBuffer *buf = gimp_drawable_get_buffer(lg);
        gboolean wok = dlp_write_pixels(buf, lpx, lw, lh, channels, msg);
        g_object_unref(buf);
        g_free(lpx);
        if (!wok)
            goto out;
        gimp_drawable_update(lg, 0, 0, lw, lh);
    }
    if (plan.show_label) {
        /* White text (headline in a warning colour when the result is not to
         * be trusted) on a semi-opaque dark box, inside the region and above
         * the legend; the text is wrapped, and made smaller only when it
         * cannot fit otherwise. */
        int pad = mg;
        int tw_max = g->w - 2 * mg - 2 * pad;
        int th_max = g->h - 2 * mg - 2 * pad - (lh > 0 ? lh + mg : 0);
        if (tw_max < 8)
            tw_max = 8;
        if (th_max < 8)
            th_max = 8;
        /* GIMP 2.10's text layers take no markup: the headline is a text
         * layer of its own, in bold and, when the result is not to be
         * trusted, in the warning / caution colour. */
        double size = fpx;
        char head[1024], text[4096];
        dlp_headline_wrapped(m, &an->result, an->image_flag, dlp_plan_cols(&plan, tw_max, size), head,
                             sizeof head);
        dlp_label_markup(m, &an->result, an->image_flag, plan.top_k, dlp_plan_cols(&plan, tw_max, size), 0,
                         0, text, sizeof text);
        gint32 hl = gimp_text_layer_new(image, head, "Sans-serif Bold", size, GIMP_UNIT_PIXEL);
        if (hl < 0 || !gimp_image_insert_layer(image, hl, group, 0)) {
            *msg = g_strdup("Could not add the headline text layer");
            goto out;
        }
        gint32 tl = gimp_text_layer_new(image, text, "Sans-serif", size, GIMP_UNIT_PIXEL);
        if (tl < 0 || !gimp_image_insert_layer(image, tl, group, 1)) {
            *msg = g_strdup("Could not add the label text layer");
            goto out;
        }
        dlp_verdict v = dlp_verdict_of(&an->result, an->image_flag);
        GimpRGB col, white;
        gimp_rgba_set(&white, 1.0, 1.0, 1.0, 1.0);
        if (!gimp_rgb_parse_hex(&col, v == DLP_VERDICT_OOD         ? DLP_COLOUR_WARNING
                                      : v == DLP_VERDICT_UNCERTAIN ? DLP_COLOUR_CAUTION
                                                                   : DLP_COLOUR_TEXT,
                                -1))
            col = white;
        col.a = 1.0;
        gimp_text_layer_set_color(hl, &col);
        gimp_text_layer_set_color(tl, &white);
        int gap = (int)(size * 0.2 + 0.5);
        for (int i = 0; i < 8; i++) {
            int tw = MAX(gimp_drawable_width(tl), gimp_drawable_width(hl));
            int th = gimp_drawable_height(hl) + gap + gimp_drawable_height(tl);
            if (tw <= tw_max && th <= th_max)
                break;
            double ns = dlp_fit_font_size(size, tw, th, tw_max, th_max);
            if (ns >= size)
                ns = size * 0.92;
            if (ns < plan.font_px * 0.8)
                break; /* GIMP and Pango disagree by more than rounding */
            size = ns;
            gap = (int)(size * 0.2 + 0.5);
            dlp_headline_wrapped(m, &an->result, an->image_flag, dlp_plan_cols(&plan, tw_max, size), head,
                                 sizeof head);
            dlp_label_markup(m, &an->result, an->image_flag, plan.top_k,
                             dlp_plan_cols(&plan, tw_max, size), 0, 0, text, sizeof text);
            gimp_text_layer_set_font_size(hl, size, GIMP_UNIT_PIXEL);
            gimp_text_layer_set_text(hl, head);
            gimp_text_layer_set_font_size(tl, size, GIMP_UNIT_PIXEL);
            gimp_text_layer_set_text(tl, text);
        }
        int hh = gimp_drawable_height(hl);
        int tw = MAX(gimp_drawable_width(tl), gimp_drawable_width(hl));
        int th = hh + gap + gimp_drawable_height(tl);
        gimp_layer_set_offsets(hl, region.x + mg + pad, region.y + mg + pad);
        gimp_layer_set_offsets(tl, region.x + mg + pad, region.y + mg + pad + hh + gap);
        gimp_item_set_name(hl, "Headline");
        gimp_item_set_name(tl, "Labels");
        guint8 *bpx = dlp_box_pixels(tw + 2 * pad, th + 2 * pad, channels);
        gint32 box = bpx ? new_pixel_layer(image, group, "Text background", tw + 2 * pad,
                                           th + 2 * pad, region.x + mg, region.y + mg, 100.0,
                                           channels)
                         : -1;
        if (box < 0) {
            g_free(bpx);
            *msg = g_strdup("Could not add the label background");
            goto out;
        }
        /* Below the two text layers. */
        gimp_image_reorder_item(image, box, group, 2);
        GeglBuffer *buf = gimp_drawable_get_buffer(box);
        gboolean wok = dlp_write_pixels(buf, bpx, tw + 2 * pad, th + 2 * pad, channels, msg);
        g_object_unref(buf);
        g_free(bpx);
        if (!wok)
            goto out;
        gimp_drawable_update(box, 0, 0, tw + 2 * pad, th + 2 * pad);
    }

    char *json = dlp_result_json(m, model_path, &an->result, &region, p->method, overlay, note,
                                 an->image_reason);
    if (!json) {
        *msg = g_strdup("Out of memory writing the result");
        goto out;
    }
    GimpParasite *para = gimp_parasite_new(DLP_PARASITE_NAME,
                                           GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                           strlen(json), json);
    free(json);
    gboolean attached = gimp_image_attach_parasite(image, para);
    gimp_parasite_free(para);
    if (!attached) {
        *msg = g_strdup("Could not attach the dermlens-result parasite");
        goto out;
    }
    ok = TRUE;
out:
    /* A failed run leaves nothing behind: drop the half-built group. */
    if (!ok && group_added)
        gimp_image_remove_layer(image, group);
    gimp_image_undo_group_end(image);
    /* Leave the user's layer active, as before. */
    if (gimp_item_is_layer(drawable))
        gimp_image_set_active_layer(image, drawable);
    return ok;
}

static gboolean do_classify(gint32 image, gint32 drawable, const dlp_params *p,
                            gboolean interactive, gchar **msg)
{
    if (!gimp_item_is_layer(drawable) || gimp_item_is_group(drawable)) {
        *msg = g_strdup("DermLens classifies a pixel layer: select a layer (not a mask, channel "
                        "or layer group)");
        return FALSE;
    }
    gint x = 0, y = 0, w, h, ox = 0, oy = 0;
    w = gimp_drawable_width(drawable);
    h = gimp_drawable_height(drawable);
    /* GIMP convention: an empty selection (none, or one with no pixels) means
     * the whole layer. */
    gboolean has_selection = !gimp_selection_is_empty(image);
    if (has_selection) {
        if (!gimp_drawable_mask_intersect(drawable, &x, &y, &w, &h) || w <= 0 || h <= 0) {
            *msg = g_strdup("The selection does not overlap the active layer: nothing to classify");
            return FALSE;
        }
    }
    if (w < DLP_MIN_REGION || h < DLP_MIN_REGION) {
        *msg = dlp_too_small_msg(w, h, has_selection);
        return FALSE;
    }
    gimp_drawable_offsets(drawable, &ox, &oy);
    dlp_geom g;
    dlp_geom_init(&g, x, y, w, h, ox, oy);

    gimp_progress_init("DermLens: reading pixels");
    guint8 *rgb;
    if (g.scale < 1.0) {
        /* GIMP scales the region down itself (see DLP_THUMB_MAX). */
        gint tw = g.aw, th = g.ah, bpp = 0;
        guchar *data = gimp_drawable_get_sub_thumbnail_data(drawable, g.x, g.y, g.w, g.h, &tw, &th,
                                                            &bpp);
        if (!data) {
            *msg = g_strdup_printf("GIMP could not make a reduced copy of the %d x %d region",
                                   g.w, g.h);
            return FALSE;
        }
        g.aw = tw;
        g.ah = th;
        rgb = dlp_thumb_to_rgb(data, (gsize)tw * (gsize)th * (gsize)bpp, tw, th, bpp, msg);
        g_free(data);
    } else {
        GeglBuffer *buf = gimp_drawable_get_buffer(drawable);
        rgb = dlp_read_rgb(buf, &g, msg);
        g_object_unref(buf);
    }
    if (!rgb)
        return FALSE;

    dlp_report_stats("pixels read");
    gimp_progress_set_text("DermLens: loading model");
    char model_path[4096];
    dl_error err = {0};
    dl_model *m = dlp_model_open(p->model_path, dlp_plugin_dir, model_path, sizeof model_path, &err);
    if (!m) {
        g_free(rgb);
        *msg = g_strdup_printf("Cannot load the DermLens model: %s", err.message);
        return FALSE;
    }
    host_state hs = {{0}};
    dlp_progress prog = {host_progress, &hs, 0.05, 0.9};
    dlp_analysis an;
    int rc = dlp_analyse(m, rgb, g.aw, g.ah, (size_t)g.aw * 3, p->method, 1, &prog, &an, &err);
    g_free(rgb);
    if (rc != 0) {
        dl_model_free(m);
        *msg = g_strdup_printf("Classification failed: %s", err.message);
        return FALSE;
    }
    dlp_report_stats("model loaded and region analysed");
    if (!an.map)
        g_message("DermLens: no saliency overlay (%s). The classification is still added.",
                  an.saliency_note);
    gimp_progress_set_text("DermLens: adding layers");
    gboolean ok = annotate_image(image, drawable, &g, m, model_path, p, &an, msg);
    gimp_progress_update(1.0);
    if (ok) {
        gchar *what = g_strdup_printf("classified %d x %d, layers added", g.w, g.h);
        dlp_report_stats(what);
        g_free(what);
    }
    /* Done: the status bar must not keep "adding layers / Cancel" while
     * the result dialog is open. */
    gimp_progress_end();
    if (ok && interactive) {
        gimp_displays_flush();
        result_dialog(m, &an);
    }
    dlp_analysis_free(&an);
    dl_model_free(m);
    return ok;
}

/* ------------------------------------------------------------------ batch */

static gboolean batch_dialog(dlp_saved_batch *s)
{
    gimp_ui_init("dermlens", FALSE);
    GtkWidget *dlg = gimp_dialog_new("DermLens - Batch Review", "dermlens-batch", NULL, 0,
                                     gimp_standard_help_func, DLP_PROC_BATCH, "_Cancel",
                                     GTK_RESPONSE_CANCEL, "_OK", GTK_RESPONSE_OK, NULL);
    GtkWidget *table = gtk_table_new(4, 2, FALSE);
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
    gtk_widget_set_tooltip_text(out, "Empty: no annotated copies");
    add_row(table, 2, "Annotated copies fol_der:", out);
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
    }
    gtk_widget_destroy(dlg);
    return ok;
}

static gboolean do_batch(const char *in, const char *csv, const char *out, const dlp_params *p,
                         int *classified, int *failed, gchar **msg)
{
    dl_error err = {0};
    char model_path[4096];
    dl_model *m = dlp_model_open(p->model_path, dlp_plugin_dir, model_path, sizeof model_path, &err);
    if (!m) {
        *msg = g_strdup_printf("Cannot load the DermLens model: %s", err.message);
        return FALSE;
    }
    gimp_progress_init("DermLens: batch review");
    host_state hs = {{0}};
    dlp_batch_opts o = {in, csv, out, p->method, p->opacity, host_progress, &hs};
    dlp_batch_stats st;
    int rc = dlp_batch_run(m, &o, &st, &err);
    dl_model_free(m);
    *classified = st.ok;
    *failed = st.failed;
    if (rc != 0) {
        *msg = g_strdup_printf("Batch review failed: %s", err.message);
        return FALSE;
    }
    return TRUE;
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

    if (strcmp(name, DLP_PROC_CLASSIFY) == 0) {
        dlp_saved s;
        memset(&s, 0, sizeof s);
        g_strlcpy(s.method, "gradcam", sizeof s.method);
        s.opacity = 60.0;
        s.top_k = 3;
        s.add_labels = s.add_legend = 1;
        if (mode != GIMP_RUN_NONINTERACTIVE)
            gimp_get_data(DLP_PROC_CLASSIFY, &s);
        s.model_path[sizeof s.model_path - 1] = '\0';
        s.method[sizeof s.method - 1] = '\0';
        if (mode == GIMP_RUN_NONINTERACTIVE) {
            if (nparams != 9) {
                status = GIMP_PDB_CALLING_ERROR;
                msg = g_strdup_printf("%s takes 9 arguments, got %d", name, nparams);
            } else {
                g_strlcpy(s.model_path, param[3].data.d_string ? param[3].data.d_string : "",
                          sizeof s.model_path);
                g_strlcpy(s.method, param[4].data.d_string ? param[4].data.d_string : "",
                          sizeof s.method);
                s.opacity = param[5].data.d_float;
                s.top_k = param[6].data.d_int32;
                s.add_labels = param[7].data.d_int32;
                s.add_legend = param[8].data.d_int32;
            }
        } else if (mode == GIMP_RUN_INTERACTIVE) {
            if (!classify_dialog(&s))
                status = GIMP_PDB_CANCEL;
        }
        dlp_params p;
        char perr[256];
        if (status == GIMP_PDB_SUCCESS &&
            dlp_params_set(&p, s.model_path, s.method, s.opacity, s.top_k, s.add_labels,
                           s.add_legend, perr, sizeof perr) != 0) {
            status = GIMP_PDB_CALLING_ERROR;
            msg = g_strdup(perr);
        }
        if (status == GIMP_PDB_SUCCESS) {
            if (!do_classify(param[1].data.d_image, param[2].data.d_drawable, &p,
                             mode == GIMP_RUN_INTERACTIVE, &msg))
                status = GIMP_PDB_EXECUTION_ERROR;
            else if (mode != GIMP_RUN_NONINTERACTIVE)
                gimp_set_data(DLP_PROC_CLASSIFY, &s, sizeof s);
        }
    } else if (strcmp(name, DLP_PROC_BATCH) == 0) {
        dlp_saved_batch s;
        memset(&s, 0, sizeof s);
        const char *method = "gradcam";
        double opacity = 60.0;
        if (mode != GIMP_RUN_NONINTERACTIVE)
            gimp_get_data(DLP_PROC_BATCH, &s);
        s.input_dir[sizeof s.input_dir - 1] = s.csv_path[sizeof s.csv_path - 1] = '\0';
        s.output_dir[sizeof s.output_dir - 1] = s.model_path[sizeof s.model_path - 1] = '\0';
        if (mode == GIMP_RUN_NONINTERACTIVE) {
            if (nparams != 7) {
                status = GIMP_PDB_CALLING_ERROR;
                msg = g_strdup_printf("%s takes 7 arguments, got %d", name, nparams);
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
            }
        } else if (mode == GIMP_RUN_INTERACTIVE) {
            if (!batch_dialog(&s))
                status = GIMP_PDB_CANCEL;
        }
        dlp_params p;
        char perr[256];
        int classified = 0, failed = 0;
        if (status == GIMP_PDB_SUCCESS &&
            dlp_params_set(&p, s.model_path, method, opacity, 3, 1, 1, perr, sizeof perr) != 0) {
            status = GIMP_PDB_CALLING_ERROR;
            msg = g_strdup(perr);
        }
        if (status == GIMP_PDB_SUCCESS) {
            if (!do_batch(s.input_dir, s.csv_path, s.output_dir, &p, &classified, &failed, &msg))
                status = GIMP_PDB_EXECUTION_ERROR;
            else if (mode != GIMP_RUN_NONINTERACTIVE)
                gimp_set_data(DLP_PROC_BATCH, &s, sizeof s);
        }
        if (status == GIMP_PDB_SUCCESS) {
            *nreturn_vals = 3;
            values[1].type = GIMP_PDB_INT32;
            values[1].data.d_int32 = classified;
            values[2].type = GIMP_PDB_INT32;
            values[2].data.d_int32 = failed;
            if (mode == GIMP_RUN_INTERACTIVE)
                g_message("DermLens: %d files classified, %d failed; results in %s", classified,
                          failed, s.csv_path);
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
    dlp_t0 = g_get_monotonic_time();
    if (argc > 0)
        dlp_plugin_dir = dlp_plugin_dir_from_argv0(argv[0]);
    return gimp_main(&PLUG_IN_INFO, argc, argv);
}
