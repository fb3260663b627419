/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens GIMP plug-in: the part that does not depend on GIMP.
 *
 * Turns engine results into what the glue puts into an image: saliency
 * overlay pixels, legend pixels, the label text, the group name and the
 * "dermlens-result" parasite JSON. Also the parameter checks and the model
 * lookup shared by the GIMP 2.10 and 3.0 glue, and the batch review. No GLib,
 * no GIMP: unit-testable and usable from the CLI. */
#ifndef DLP_ANNOTATE_H
#define DLP_ANNOTATE_H

#include <stddef.h>
#include <stdint.h>

#include "dermlens.h"
#include "imgstats.h"

#define DLP_PLUGIN_VERSION DL_VERSION_STRING
#define DLP_PARASITE_NAME "dermlens-result"
#define DLP_MIN_REGION 8          /* smallest side we classify, in pixels */
#define DLP_MAX_TOP_K 50
#define DLP_DISCLAIMER "Research/teaching aid - not a diagnosis"
/* The headline when the input looks out of distribution. */
#define DLP_OOD_HEADLINE "Not a dermoscopic lesion image? Results unreliable"
/* Colours of the label (Pango/GTK markup): text, warning (out of
 * distribution), caution (uncertain). */
#define DLP_COLOUR_TEXT "#ffffff"
#define DLP_COLOUR_WARNING "#ff9f1c"
#define DLP_COLOUR_CAUTION "#ffd166"
/* A near-tie: the top two within this many percentage points, or the top
 * class below DLP_UNCERTAIN_TOP percent. */
#define DLP_UNCERTAIN_GAP 10
#define DLP_UNCERTAIN_TOP 50

/* Validated user parameters (PDB arguments or dialog values). */
typedef struct {
    char model_path[4096];        /* "" = default lookup */
    dl_saliency_method method;
    double opacity;               /* 0..100 */
    int top_k;                    /* 1..DLP_MAX_TOP_K (clamped to the class count later) */
    int add_labels;
    int add_legend;
} dlp_params;

void dlp_params_default(dlp_params *p);

/* Check and copy raw parameter values into *out. Returns 0, or -1 with a
 * user-facing message in msg. method may be NULL/"" (= gradcam). */
int dlp_params_set(dlp_params *out, const char *model_path, const char *method, double opacity,
                   int top_k, int add_labels, int add_legend, char *msg, size_t msg_size);

/* Find and load the model. Order: explicit path; env DERMLENS_MODEL; the
 * lesion model, then the ImageNet model, in plugin_dir (may be NULL), then in
 * the compiled-in data dir and source weights dir. The path used is copied to
 * used_path. */
dl_model *dlp_model_open(const char *explicit_path, const char *plugin_dir, char *used_path,
                         size_t used_size, dl_error *err);

/* Progress forwarding: maps an engine stage onto [base, base+span] of the
 * host's progress bar. */
typedef void (*dlp_progress_host_fn)(void *host, double fraction, const char *text);
typedef struct {
    dlp_progress_host_fn fn;
    void *host;
    double base, span;
} dlp_progress;
int dlp_progress_cb(void *user, double fraction, const char *stage); /* a dl_progress_fn */

/* Result of one analysis. */
typedef struct {
    dl_result result;             /* all classes, sorted in top_index */
    float *map;                   /* width*height saliency in [0,1], NULL if unavailable */
    int map_width, map_height;
    char saliency_note[256];      /* why map is NULL ("" otherwise) */
    dlp_image_stats stats;        /* the cheap image-statistics check ... */
    int image_flag;               /* ... flags this input (tiny, blank, flat) */
    char image_reason[128];       /* why ("" when not flagged) */
} dlp_analysis;

/* Classify (all classes) and, when want_saliency, explain the top class.
 * A saliency failure that is not fatal (unsupported, limit, nomem) leaves
 * map NULL and a note; the classification is still returned. */
int dlp_analyse(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                dl_saliency_method method, int want_saliency, dlp_progress *prog,
                dlp_analysis *out, dl_error *err);
void dlp_analysis_free(dlp_analysis *a);

/* Colour map: saliency s in [0,1] -> RGBA8. Alpha is 0 where saliency is
 * low so the lesion stays visible. */
void dlp_colormap(float s, uint8_t rgba[4]);
/* Overlay rows [y0, y0+rows) of an out_w x out_h layer from a map_w x map_h
 * saliency map (bilinear when the sizes differ, i.e. when a huge region was
 * analysed at reduced scale). channels 4: RGBA colour map; channels 2: grey +
 * alpha (for grey images), grey = saliency. */
void dlp_overlay_rows(const float *map, int map_w, int map_h, int out_w, int out_h, int y0,
                      int rows, int channels, uint8_t *out);
/* Legend size for a region, and its pixels (w*h*channels, opaque gradient
 * low->high left to right with a dark frame); channels 4 or 2 as above. */
void dlp_legend_size(int region_w, int region_h, int *w, int *h);
void dlp_legend_pixels(int w, int h, int channels, uint8_t *out);

/* One rounding everywhere: a probability as a whole percentage (half up). */
int dlp_percent(float p);
/* What the user is told first. */
typedef enum {
    DLP_VERDICT_CLASS = 0,        /* "melanoma 81 %" */
    DLP_VERDICT_UNCERTAIN,        /* "uncertain: bkl 44 % / nv 44 %" */
    DLP_VERDICT_OOD               /* DLP_OOD_HEADLINE */
} dlp_verdict;
/* Out of distribution (the model's Mahalanobis flag or the image check)
 * comes first, then a near-tie, else the top class. */
dlp_verdict dlp_verdict_of(const dl_result *r, int image_flag);
/* The headline for that verdict (no markup). */
void dlp_headline(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size);
/* "DermLens: melanoma 81 %", "DermLens: uncertain: bkl 44 % / nv 44 %",
 * "DermLens: Not a dermoscopic lesion image? Results unreliable (nv 51 %)". */
void dlp_group_name(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size);
/* Top-k lines, an OOD warning when flagged, and the disclaimer. */
void dlp_label_text(const dl_model *m, const dl_result *r, int top_k, char *buf, size_t size);
/* The label as Pango markup: the headline (warning colour when out of
 * distribution, caution colour when uncertain, bold), the top-k classes,
 * the disclaimer; every line wrapped at cols characters (0 = no wrapping).
 * markup 0 gives the same text without tags; with_headline 0 leaves the
 * headline out (GIMP 2.10 shows it in a text layer of its own: its text
 * layers take no markup). */
void dlp_label_markup(const dl_model *m, const dl_result *r, int image_flag, int top_k, int cols,
                      int markup, int with_headline, char *buf, size_t size);
/* The headline alone, wrapped at cols (no markup). */
void dlp_headline_wrapped(const dl_model *m, const dl_result *r, int image_flag, int cols,
                          char *buf, size_t size);
/* Readable name of a saliency method ("Grad-CAM", "Grad-CAM++", ...) and a
 * one-line description of it. */
const char *dlp_method_title(dl_saliency_method m);
const char *dlp_method_help(dl_saliency_method m);

/* Region in image coordinates. */
typedef struct {
    int x, y, width, height;
} dlp_region;

/* Parasite JSON (malloc'd, caller frees). NULL on allocation failure.
 * image_reason: why the image check flagged the input (NULL or "": not). */
char *dlp_result_json(const dl_model *m, const char *model_path, const dl_result *r,
                      const dlp_region *region, dl_saliency_method method, int saliency_ok,
                      const char *saliency_note, const char *image_reason);

/* ------------------------------------------------------------------ batch */

typedef struct {
    const char *input_dir;
    const char *csv_path;
    const char *output_dir;       /* NULL or "": no annotated copies */
    dl_saliency_method method;    /* for annotated copies */
    double opacity;               /* 0..100, for annotated copies */
    dlp_progress_host_fn progress;
    void *progress_host;
} dlp_batch_opts;

typedef struct {
    int files;                    /* image files seen */
    int ok;                       /* classified */
    int failed;                   /* rows with an error */
} dlp_batch_stats;

/* Classify every regular file in input_dir (sorted by name; hidden files
 * skipped) and write the CSV atomically. Refuses outputs inside input_dir.
 * A file that fails gets a row with its error and the run continues.
 * Returns 0 when the CSV was written (even if some files failed). */
int dlp_batch_run(dl_model *m, const dlp_batch_opts *o, dlp_batch_stats *stats, dl_error *err);

#endif
