/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens plug-in glue for GIMP 3.0 (GimpPlugIn subclass, objects, GTK 3). */
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "glue_common.h"

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
    return l;
}

/* Choice nicks must be identifiers, so "gradcam++" is "gradcam-pp" in the
 * dialog's combo box; the PDB string argument keeps the engine's names. */
static const char *const method_names[] = {"gradcam", "gradcam++", "hirescam",
                                           "layercam", "scorecam", "occlusion"};
static const char *const method_nicks[] = {"gradcam", "gradcam-pp", "hirescam",
                                           "layercam", "scorecam", "occlusion"};

static GimpValueArray *fail(GimpProcedure *proc, GimpPDBStatusType status, gchar *msg)
{
    GError *e = g_error_new_literal(GIMP_PLUG_IN_ERROR, 0, msg ? msg : "failed");
    g_free(msg);
    return gimp_procedure_new_return_values(proc, status, e);
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

static void result_dialog(const dl_model *m, const dlp_analysis *an)
{
    GtkWidget *dlg = gimp_dialog_new("DermLens - Result", "dermlens-result", NULL, 0,
                                     gimp_standard_help_func, DLP_PROC_CLASSIFY, "_Close",
                                     GTK_RESPONSE_CLOSE, NULL);
    GtkWidget *vb = gtk_box_new(GTK_ORIENTATION_VERTICAL, 4);
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
        gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(bar), TRUE);
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

static GimpLayer *new_pixel_layer(GimpImage *image, GimpLayer *parent, const char *name, int w,
                                  int h, int x, int y, double opacity, int channels)
{
    GimpImageBaseType base = gimp_image_get_base_type(image);
    GimpImageType type = channels == 2 ? GIMP_GRAYA_IMAGE
                         : base == GIMP_INDEXED ? GIMP_INDEXEDA_IMAGE
                                                : GIMP_RGBA_IMAGE;
    GimpLayer *layer = gimp_layer_new(image, name, w, h, type, opacity, GIMP_LAYER_MODE_NORMAL);
    if (!layer)
        return NULL;
    if (!gimp_image_insert_layer(image, layer, parent, 0))
        return NULL;
    gimp_layer_set_offsets(layer, x, y);
    return layer;
}

static gboolean annotate_image(GimpImage *image, GimpDrawable *drawable, const dlp_geom *g,
                               dl_model *m, const char *model_path, const dlp_params *p,
                               const dlp_analysis *an, gchar **msg)
{
    dlp_region region = {g->ox + g->x, g->oy + g->y, g->w, g->h};
    int channels = gimp_image_get_base_type(image) == GIMP_GRAY ? 2 : 4;
    char name[512];
    gboolean ok = FALSE, group_added = FALSE;

    gimp_image_undo_group_start(image);

    /* Put the group right above the classified layer. */
    GimpItem *parent = gimp_item_get_parent(GIMP_ITEM(drawable));
    gint pos = gimp_image_get_item_position(image, GIMP_ITEM(drawable));
    dlp_group_name(m, &an->result, an->image_flag, name, sizeof name);
    GimpGroupLayer *group = gimp_group_layer_new(image, name);
    if (!group || !gimp_image_insert_layer(image, GIMP_LAYER(group),
                                           parent ? GIMP_LAYER(parent) : NULL, pos)) {
        *msg = g_strdup("Could not add the DermLens layer group");
        goto out;
    }
    group_added = TRUE;

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
        GimpLayer *ov = new_pixel_layer(image, GIMP_LAYER(group), name, ow, oh, region.x,
                                        region.y, p->opacity, channels);
        if (!ov) {
            *msg = g_strdup("Could not add the saliency layer");
            goto out;
        }
        GeglBuffer *buf = gimp_drawable_get_buffer(GIMP_DRAWABLE(ov));
        gboolean wok = dlp_write_overlay(buf, an, ow, oh, channels, msg);
        g_object_unref(buf);
        if (!wok)
            goto out;
        gimp_drawable_update(GIMP_DRAWABLE(ov), 0, 0, ow, oh);
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
        GimpLayer *lg = new_pixel_layer(image, GIMP_LAYER(group), name, lw, lh, region.x + mg,
                                        region.y + g->h - lh - mg, 100.0, channels);
        if (!lg) {
            g_free(lpx);
            *msg = g_strdup("Could not add the legend layer");
            goto out;
        }
        GeglBuffer *buf = gimp_drawable_get_buffer(GIMP_DRAWABLE(lg));
        gboolean wok = dlp_write_pixels(buf, lpx, lw, lh, channels, msg);
        g_object_unref(buf);
        g_free(lpx);
        if (!wok)
            goto out;
        gimp_drawable_update(GIMP_DRAWABLE(lg), 0, 0, lw, lh);
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
        double size = fpx;
        char text[4096];
        dlp_label_markup(m, &an->result, an->image_flag, plan.top_k, dlp_plan_cols(&plan, tw_max, size), 1,
                         1, text, sizeof text);
        GimpFont *font = gimp_font_get_by_name("Sans-serif");
        if (!font)
            font = gimp_context_get_font();
        GimpTextLayer *tl = font ? gimp_text_layer_new(image, "DermLens", font, size,
                                                       gimp_unit_pixel())
                                 : NULL;
        if (!tl || !gimp_image_insert_layer(image, GIMP_LAYER(tl), GIMP_LAYER(group), 0)) {
            *msg = g_strdup("Could not add the label text layer");
            goto out;
        }
        GeglColor *white = gegl_color_new("white");
        gimp_text_layer_set_color(tl, white);
        g_object_unref(white);
        gimp_text_layer_set_markup(tl, text);
        for (int i = 0; i < 8; i++) {
            int tw = gimp_drawable_get_width(GIMP_DRAWABLE(tl));
            int th = gimp_drawable_get_height(GIMP_DRAWABLE(tl));
            if (tw <= tw_max && th <= th_max)
                break;
            double ns = dlp_fit_font_size(size, tw, th, tw_max, th_max);
            if (ns >= size)
                ns = size * 0.92;
            if (ns < plan.font_px * 0.8)
                break; /* GIMP and Pango disagree by more than rounding */
            size = ns;
            dlp_label_markup(m, &an->result, an->image_flag, plan.top_k,
                             dlp_plan_cols(&plan, tw_max, size), 1, 1, text, sizeof text);
            gimp_text_layer_set_font_size(tl, size, gimp_unit_pixel());
            gimp_text_layer_set_markup(tl, text);
        }
        int tw = gimp_drawable_get_width(GIMP_DRAWABLE(tl));
        int th = gimp_drawable_get_height(GIMP_DRAWABLE(tl));
        gimp_layer_set_offsets(GIMP_LAYER(tl), region.x + mg + pad, region.y + mg + pad);
        gimp_item_set_name(GIMP_ITEM(tl), "Labels");
        guint8 *bpx = dlp_box_pixels(tw + 2 * pad, th + 2 * pad, channels);
        GimpLayer *box = bpx ? new_pixel_layer(image, GIMP_LAYER(group), "Text background",
                                               tw + 2 * pad, th + 2 * pad, region.x + mg,
                                               region.y + mg, 100.0, channels)
                             : NULL;
        if (!box) {
            g_free(bpx);
            *msg = g_strdup("Could not add the label background");
            goto out;
        }
        /* Below the text. */
        gimp_image_reorder_item(image, GIMP_ITEM(box), GIMP_ITEM(group), 1);
        GeglBuffer *buf = gimp_drawable_get_buffer(GIMP_DRAWABLE(box));
        gboolean wok = dlp_write_pixels(buf, bpx, tw + 2 * pad, th + 2 * pad, channels, msg);
        g_object_unref(buf);
        g_free(bpx);
        if (!wok)
            goto out;
        gimp_drawable_update(GIMP_DRAWABLE(box), 0, 0, tw + 2 * pad, th + 2 * pad);
    }

    char *json = dlp_result_json(m, model_path, &an->result, &region, p->method, overlay, note,
                                 an->image_reason);
    if (!json) {
        *msg = g_strdup("Out of memory writing the result");
        goto out;
    }
    GimpParasite *para = gimp_parasite_new(DLP_PARASITE_NAME,
                                           GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                           (guint32)strlen(json), json);
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
        gimp_image_remove_layer(image, GIMP_LAYER(group));
    gimp_image_undo_group_end(image);
    /* Leave the user's layer selected, as before. */
    if (GIMP_IS_LAYER(drawable)) {
        const GimpLayer *sel[2] = {GIMP_LAYER(drawable), NULL};
        gimp_image_set_selected_layers(image, sel);
    }
    return ok;
}

static gboolean do_classify(GimpImage *image, GimpDrawable *drawable, const dlp_params *p,
                            gboolean interactive, gchar **msg)
{
    if (!GIMP_IS_LAYER(drawable) || GIMP_IS_LAYER_MASK(drawable) ||
        gimp_item_is_group(GIMP_ITEM(drawable))) {
        *msg = g_strdup("DermLens classifies a pixel layer: select a layer (not a mask, channel "
                        "or layer group)");
        return FALSE;
    }
    gint x = 0, y = 0, w, h, ox = 0, oy = 0;
    w = gimp_drawable_get_width(drawable);
    h = gimp_drawable_get_height(drawable);
    /* GIMP convention: an empty selection (none, or one with no pixels) means
     * the whole layer. */
    gboolean has_selection = !gimp_selection_is_empty(image);
    if (has_selection) {
        if (!gimp_drawable_mask_intersect(drawable, &x, &y, &w, &h) || w <= 0 || h <= 0) {
            *msg = g_strdup("The selection does not overlap the selected layer: nothing to "
                            "classify");
            return FALSE;
        }
    }
    if (w < DLP_MIN_REGION || h < DLP_MIN_REGION) {
        *msg = dlp_too_small_msg(w, h, has_selection);
        return FALSE;
    }
    gimp_drawable_get_offsets(drawable, &ox, &oy);
    dlp_geom g;
    dlp_geom_init(&g, x, y, w, h, ox, oy);

    gimp_progress_init("DermLens: reading pixels");
    guint8 *rgb;
    if (g.scale < 1.0) {
        /* GIMP scales the region down itself (see DLP_THUMB_MAX). */
        gint tw = 0, th = 0, bpp = 0;
        GBytes *bytes = gimp_drawable_get_sub_thumbnail_data(drawable, g.x, g.y, g.w, g.h, g.aw,
                                                             g.ah, &tw, &th, &bpp);
        if (!bytes) {
            *msg = g_strdup_printf("GIMP could not make a reduced copy of the %d x %d region",
                                   g.w, g.h);
            return FALSE;
        }
        gsize size = 0;
        const guint8 *data = g_bytes_get_data(bytes, &size);
        g.aw = tw;
        g.ah = th;
        rgb = dlp_thumb_to_rgb(data, size, tw, th, bpp, msg);
        g_bytes_unref(bytes);
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

static GimpValueArray *classify_run(GimpProcedure *proc, GimpRunMode mode, GimpImage *image,
                                    GimpDrawable **drawables, GimpProcedureConfig *config,
                                    gpointer data)
{
    gegl_init(NULL, NULL);
    int n = 0;
    while (drawables && drawables[n])
        n++;
    if (n != 1)
        return fail(proc, GIMP_PDB_CALLING_ERROR,
                    g_strdup_printf("DermLens works on one layer; %d are selected", n));

    if (mode == GIMP_RUN_INTERACTIVE) {
        gchar *method = NULL;
        g_object_get(config, "saliency-method", &method, NULL);
        for (unsigned i = 0; i < G_N_ELEMENTS(method_names); i++)
            if (method && strcmp(method, method_names[i]) == 0)
                g_object_set(config, "saliency-choice", method_nicks[i], NULL);
        g_free(method);
        gchar *mp = NULL;
        g_object_get(config, "model-path", &mp, NULL);
        GFile *mf = mp && mp[0] ? g_file_new_for_path(mp) : NULL;
        g_object_set(config, "model-file", mf, NULL);
        if (mf)
            g_object_unref(mf);
        g_free(mp);
        gimp_ui_init(DLP_BINARY);
        GtkWidget *dlg = gimp_procedure_dialog_new(proc, config, "DermLens - Classify Lesion");
        gimp_procedure_dialog_get_label(GIMP_PROCEDURE_DIALOG(dlg), "disclaimer",
                                        "<b>" DLP_DISCLAIMER "</b>", TRUE, FALSE);
        gimp_procedure_dialog_fill(GIMP_PROCEDURE_DIALOG(dlg), "model-file", "saliency-choice",
                                   "opacity", "top-k", "add-labels", "add-legend", "disclaimer",
                                   NULL);
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
        for (unsigned i = 0; i < G_N_ELEMENTS(method_nicks); i++)
            if (nick && strcmp(nick, method_nicks[i]) == 0)
                g_object_set(config, "saliency-method", method_names[i], NULL);
        g_free(nick);
    }

    gchar *model = NULL, *method = NULL;
    gdouble opacity = 60.0;
    gint top_k = 3;
    gboolean labels = TRUE, legend = TRUE;
    g_object_get(config, "model-path", &model, "saliency-method", &method, "opacity", &opacity,
                 "top-k", &top_k, "add-labels", &labels, "add-legend", &legend, NULL);
    dlp_params p;
    char perr[256];
    int prc = dlp_params_set(&p, model ? model : "", method, opacity, top_k, labels, legend, perr,
                             sizeof perr);
    g_free(model);
    g_free(method);
    if (prc != 0)
        return fail(proc, GIMP_PDB_CALLING_ERROR, g_strdup(perr));

    gchar *msg = NULL;
    if (!do_classify(image, drawables[0], &p, mode == GIMP_RUN_INTERACTIVE, &msg)) {
        if (mode == GIMP_RUN_INTERACTIVE)
            g_message("DermLens: %s", msg);
        return fail(proc, GIMP_PDB_EXECUTION_ERROR, msg);
    }
    return gimp_procedure_new_return_values(proc, GIMP_PDB_SUCCESS, NULL);
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
                                        "<b>" DLP_DISCLAIMER "</b>", TRUE, FALSE);
        gimp_procedure_dialog_fill(GIMP_PROCEDURE_DIALOG(dlg), "input-folder", "output-csv",
                                   "output-folder", "model-path", "saliency-method", "opacity",
                                   "disclaimer", NULL);
        dlp_dialog_test_hook(dlg);
        gboolean ok = gimp_procedure_dialog_run(GIMP_PROCEDURE_DIALOG(dlg));
        gtk_widget_destroy(dlg);
        if (!ok)
            return gimp_procedure_new_return_values(proc, GIMP_PDB_CANCEL, NULL);
    }
    gchar *in = NULL, *csv = NULL, *out = NULL, *model = NULL, *method = NULL;
    gdouble opacity = 60.0;
    g_object_get(config, "input-folder", &in, "output-csv", &csv, "output-folder", &out,
                 "model-path", &model, "saliency-method", &method, "opacity", &opacity, NULL);
    dlp_params p;
    char perr[256];
    gchar *msg = NULL;
    GimpPDBStatusType status = GIMP_PDB_SUCCESS;
    dlp_batch_stats st = {0};
    if (dlp_params_set(&p, model ? model : "", method, opacity, 3, 1, 1, perr, sizeof perr) != 0) {
        status = GIMP_PDB_CALLING_ERROR;
        msg = g_strdup(perr);
    } else {
        dl_error err = {0};
        char model_path[4096];
        dl_model *m = dlp_model_open(p.model_path, dlp_plugin_dir, model_path, sizeof model_path,
                                     &err);
        if (!m) {
            status = GIMP_PDB_EXECUTION_ERROR;
            msg = g_strdup_printf("Cannot load the DermLens model: %s", err.message);
        } else {
            gimp_progress_init("DermLens: batch review");
            host_state hs = {{0}};
            dlp_batch_opts o = {in, csv, out, p.method, p.opacity, host_progress, &hs};
            if (dlp_batch_run(m, &o, &st, &err) != 0) {
                status = GIMP_PDB_EXECUTION_ERROR;
                msg = g_strdup_printf("Batch review failed: %s", err.message);
            }
            dl_model_free(m);
        }
    }
    g_free(in);
    g_free(out);
    g_free(model);
    g_free(method);
    if (status != GIMP_PDB_SUCCESS) {
        g_free(csv);
        if (mode == GIMP_RUN_INTERACTIVE)
            g_message("DermLens: %s", msg);
        return fail(proc, status, msg);
    }
    if (mode == GIMP_RUN_INTERACTIVE)
        g_message("DermLens: %d files classified, %d failed; results in %s", st.ok, st.failed, csv);
    g_free(csv);
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
                                       "gradcam, gradcam++, hirescam, layercam, scorecam or "
                                       "occlusion", "gradcam", G_PARAM_READWRITE);
    gimp_procedure_add_double_argument(proc, "opacity", "Overlay o_pacity",
                                       "How strongly the saliency colours cover the image (0-100)",
                                       0.0, 100.0, 60.0, G_PARAM_READWRITE);
}

static GimpProcedure *dermlens_create(GimpPlugIn *plug_in, const gchar *name)
{
    GimpProcedure *proc = NULL;
    if (strcmp(name, DLP_PROC_CLASSIFY) == 0) {
        proc = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, classify_run,
                                        NULL, NULL);
        gimp_procedure_set_image_types(proc, "RGB*, GRAY*, INDEXED*");
        gimp_procedure_set_sensitivity_mask(proc, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
        gimp_procedure_set_menu_label(proc, "Classify _Lesion...");
        gimp_procedure_add_menu_path(proc, "<Image>/Filters/Dermatology");
        gimp_procedure_set_documentation(
            proc, "Classify a skin lesion and show where the model looked",
            "Classifies the selected layer (or the selection's bounding box) with the DermLens "
            "CNN and adds a layer group with a saliency overlay, the top classes and a legend. "
            "Research/teaching aid - not a diagnosis.",
            name);
        gimp_procedure_set_attribution(proc, "DermLens authors", "GPL-3.0-or-later", "2025");
        add_common_args(proc);
        gimp_procedure_add_int_argument(proc, "top-k", "_Number of classes",
                                        "How many of the most likely classes the label lists", 1,
                                        DLP_MAX_TOP_K, 3, G_PARAM_READWRITE);
        gimp_procedure_add_boolean_argument(proc, "add-labels", "Add label _text",
                                            "Add the label text layer", TRUE, G_PARAM_READWRITE);
        gimp_procedure_add_boolean_argument(proc, "add-legend", "Add le_gend",
                                            "Add the colour-scale legend", TRUE,
                                            G_PARAM_READWRITE);
        /* Dialog-only: readable names with a one-line tooltip each, and a
         * file chooser for the model. The PDB keeps the string arguments. */
        GimpChoice *choice = gimp_choice_new();
        for (unsigned i = 0; i < G_N_ELEMENTS(method_nicks); i++)
            gimp_choice_add(choice, method_nicks[i], (gint)i, dlp_method_title((dl_saliency_method)i),
                            dlp_method_help((dl_saliency_method)i));
        gimp_procedure_add_choice_aux_argument(proc, "saliency-choice", "Saliency _method",
                                               "How the map of where the model looked is made",
                                               choice, "gradcam", G_PARAM_READWRITE);
        gimp_procedure_add_file_aux_argument(proc, "model-file", "Model _file",
                                             "A DermLens model (.safetensors); none: the shipped "
                                             "lesion model",
                                             GIMP_FILE_CHOOSER_ACTION_OPEN, TRUE, NULL,
                                             G_PARAM_READWRITE);
    } else if (strcmp(name, DLP_PROC_BATCH) == 0) {
        proc = gimp_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, batch_run, NULL, NULL);
        gimp_procedure_set_sensitivity_mask(proc, GIMP_PROCEDURE_SENSITIVE_ALWAYS);
        gimp_procedure_set_menu_label(proc, "_Batch Review...");
        gimp_procedure_add_menu_path(proc, "<Image>/Filters/Dermatology");
        gimp_procedure_set_documentation(
            proc, "Classify every image in a folder into a CSV file",
            "Writes one CSV row per file (top class, every probability, OOD flag, error) and "
            "optionally annotated PNG copies. Input files are never changed.",
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
        gimp_procedure_add_string_argument(proc, "output-folder", "Annotated copies fol_der",
                                           "Folder for annotated PNG copies (empty: none)", "",
                                           G_PARAM_READWRITE);
        add_common_args(proc);
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
    dlp_t0 = g_get_monotonic_time();
    if (argc > 0)
        dlp_plugin_dir = dlp_plugin_dir_from_argv0(argv[0]);
    return gimp_main(dermlens_get_type(), argc, argv);
}
