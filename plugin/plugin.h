/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The GIMP plug-in's logic, written once for GIMP 2.10 and 3.0 (core.c), and
 * the small interface through which it reaches GIMP.
 *
 * core.c calls libgimp directly where both APIs spell a call the same way
 * (progress, dialogs, displays, context, parasites' contents). Every call
 * spelled differently goes through dlp_gimp, which glue_gimp2.c and
 * glue_gimp3.c fill with their API's spelling; those files also register the
 * procedures and build the parameter dialogs. Images and items travel as
 * their integer IDs, which both APIs have. */
#ifndef DLP_PLUGIN_H
#define DLP_PLUGIN_H

#include <gegl.h>
#include <glib.h>
#include <gtk/gtk.h>

#include "dermlens_host.h"

#define DLP_PROC_CLASSIFY "plug-in-dermlens-classify"
#define DLP_PROC_BATCH "plug-in-dermlens-batch"
/* GIMP 2.10 only: Batch Review with a labels CSV as an 8th argument (Script-Fu
 * checks the argument count, so the 7-argument procedure stays as it was; in
 * GIMP 3 labels-csv is an argument of DLP_PROC_BATCH with a default). */
#define DLP_PROC_BATCH_LABELS "plug-in-dermlens-batch-labels"
#define DLP_PROC_FIGURE "plug-in-dermlens-figure"
#define DLP_MENU_PATH "<Image>/Filters/Dermatology"
#define DLP_PARASITE_NAME "dermlens-result"

typedef enum { DLP_BASE_RGB = 0, DLP_BASE_GRAY, DLP_BASE_INDEXED } dlp_base;

/* The GIMP calls whose spelling differs between the two APIs. */
typedef struct {
    const char *layer_word;  /* "active" (2.10) or "selected" (3.0), in messages */
    /* 1: text layers take Pango markup (3.0: one label layer); 0: plain
     * text, the headline in a text layer of its own (2.10). */
    int text_markup;

    dlp_base (*image_base)(gint32 image);
    gboolean (*selection_empty)(gint32 image);
    void (*undo_group)(gint32 image, gboolean start);
    /* Attach a persistent, undoable parasite holding the string data. */
    gboolean (*attach_parasite)(gint32 image, const char *name, const char *data);
    /* Make drawable the image's active / selected layer again (if it is a layer). */
    void (*select_layer)(gint32 image, gint32 drawable);

    /* A layer that holds pixels (not a mask, channel or group). */
    gboolean (*is_pixel_layer)(gint32 drawable);
    void (*size)(gint32 drawable, int *w, int *h);
    void (*offsets)(gint32 drawable, int *x, int *y);
    /* The selection's bounds within the drawable; FALSE when they do not meet. */
    gboolean (*mask_intersect)(gint32 drawable, int *x, int *y, int *w, int *h);
    /* The region scaled down by GIMP to at most *tw x *th (in/out); u8 pixels
     * of *bpp bytes, *size bytes in all. g_free the result; NULL on failure. */
    guint8 *(*sub_thumbnail)(gint32 drawable, int x, int y, int w, int h, int *tw, int *th,
                             int *bpp, gsize *size);
    /* The drawable's buffer; g_object_unref it. */
    GeglBuffer *(*buffer)(gint32 drawable);
    void (*update)(gint32 drawable, int w, int h);

    /* A layer group named name, inserted right above the item `above`; -1 on failure. */
    gint32 (*group_new)(gint32 image, gint32 above, const char *name);
    /* A w x h pixel layer (channels 4: RGBA, or indexed-alpha on an indexed
     * image; 2: grey-alpha) at (x, y), inserted on top of parent (a group,
     * or -1: the image's top level); -1 on failure. */
    gint32 (*layer_new)(gint32 image, gint32 parent, const char *name, int w, int h, int x, int y,
                        double opacity, int channels);
    /* A text layer in font (a font name) at size pixels and in colour hex
     * ("#rrggbb"; NULL: the context's foreground), inserted into parent at
     * position pos; -1 on failure. */
    gint32 (*text_new)(gint32 image, gint32 parent, int pos, const char *text, const char *font,
                       double size, const char *hex);
    /* Set the text: markup when text_markup, else plain. */
    void (*text_set)(gint32 layer, const char *text);
    void (*text_size)(gint32 layer, double size);
    /* Scale a layer to w x h with linear interpolation. */
    gboolean (*scale)(gint32 layer, int w, int h);
    void (*move)(gint32 layer, int x, int y);
    void (*rename)(gint32 item, const char *name);
    void (*reorder)(gint32 image, gint32 item, gint32 parent, int pos);
    void (*remove)(gint32 image, gint32 layer);

    /* A new RGB image of w x h with its undo off while it is built; -1 on failure. */
    gint32 (*image_new)(int w, int h);
    void (*image_resize)(gint32 image, int w, int h);
    /* Built: undo on, clean, and shown in a display when display is set. */
    void (*image_ready)(gint32 image, gboolean display);
    void (*image_delete)(gint32 image);
    /* Open a file with GIMP's own loaders (every format GIMP reads), quietly;
     * -1 when GIMP cannot. Delete the image with image_delete. */
    gint32 (*file_load)(const char *path);
    /* Flatten the image into one layer and return it; -1 on failure. */
    gint32 (*flatten)(gint32 image);
} dlp_gimp;

/* A dlp_gimp from the functions PREFIX_image_base ... PREFIX_remove of one
 * glue file (each glue file spells every call, under the same names). */
#define DLP_GIMP_TABLE(PREFIX, LAYER_WORD, TEXT_MARKUP)                                           \
    {                                                                                             \
        .layer_word = LAYER_WORD, .text_markup = TEXT_MARKUP, .image_base = PREFIX##_image_base,  \
        .selection_empty = PREFIX##_selection_empty, .undo_group = PREFIX##_undo_group,           \
        .attach_parasite = PREFIX##_attach_parasite, .select_layer = PREFIX##_select_layer,       \
        .is_pixel_layer = PREFIX##_is_pixel_layer, .size = PREFIX##_size,                         \
        .offsets = PREFIX##_offsets, .mask_intersect = PREFIX##_mask_intersect,                   \
        .sub_thumbnail = PREFIX##_sub_thumbnail, .buffer = PREFIX##_buffer,                       \
        .update = PREFIX##_update, .group_new = PREFIX##_group_new,                               \
        .layer_new = PREFIX##_layer_new, .text_new = PREFIX##_text_new,                           \
        .text_set = PREFIX##_text_set, .text_size = PREFIX##_text_size,                           \
        .scale = PREFIX##_scale, .move = PREFIX##_move,                                           \
        .rename = PREFIX##_rename, .reorder = PREFIX##_reorder, .remove = PREFIX##_remove,        \
        .image_new = PREFIX##_image_new, .image_resize = PREFIX##_image_resize,                   \
        .image_ready = PREFIX##_image_ready, .image_delete = PREFIX##_image_delete,               \
        .file_load = PREFIX##_file_load, .flatten = PREFIX##_flatten,                             \
    }

/* Once, from main(): the plug-in's folder (for the model search) and its
 * start time (DERMLENS_STATS). */
void dlp_core_init(const char *argv0);

/* Classify Lesion: analyse the drawable (or the selection's bounds in it)
 * and add the layer group with overlay, legend and label, and the
 * parasite, in one undo step; the drawable is never changed. interactive:
 * show the result dialog after. FALSE with *msg (g_free) on failure. */
gboolean dlp_core_classify(const dlp_gimp *g, gint32 image, gint32 drawable, const dh_params *p,
                           gboolean interactive, gchar **msg);

/* Teaching Figure: analyse the drawable as Classify does and make a new
 * image with the region and the region with its map side by side and a
 * caption below (classes, method, model, disclaimer); the image and the
 * drawable are not changed. The new image in *figure (shown when
 * interactive). FALSE with *msg (g_free) on failure. */
gboolean dlp_core_figure(const dlp_gimp *g, gint32 image, gint32 drawable, const dh_params *p,
                         gboolean interactive, gint32 *figure, gchar **msg);

/* Batch Review: the dataset review of host/ (as `dermlens review`) over
 * the folder in and its subfolders: the CSV csv (label, prediction, every
 * probability, OOD score, suspicion; most suspicious first) and, when out
 * is not "", index.html, images/ (annotated PNGs) and thumbs/ in out.
 * Ground truth from class subfolders, or from the CSV labels when it is
 * not "" or NULL. Files the engine cannot decode are opened with GIMP's
 * loaders. Counts in *st. FALSE with *msg (g_free) when the review could
 * not run. */
gboolean dlp_core_batch(const dlp_gimp *g, const char *in, const char *csv, const char *out,
                        const char *labels, const dh_params *p, dh_batch_stats *st, gchar **msg);

/* A saliency method's nick for a GIMP 3 choice (an identifier: the
 * engine's name with "++" as "-pp", e.g. "gradcam-pp"). Static string. */
const char *dlp_method_nick(dl_saliency_method m);

/* Test seam for the real-GIMP dialog tests: with DERMLENS_DIALOG_TEST=FILE a
 * shown dialog writes what the user would read to FILE and answers itself. */
void dlp_dialog_test_hook(GtkWidget *dlg);

#endif
