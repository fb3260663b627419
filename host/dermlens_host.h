/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens host core: what the GIMP plug-in and the dermlens command share
 * above the engine.
 *
 * Turns engine results into what a front end shows: the model search, the
 * analysis of one region (classification, saliency, the image check), the
 * overlay and legend pixels with the one colour map, the label text and its
 * layout, the "dermlens-result" JSON, and the batch review of a folder.
 * Plain C on dermlens.h / dermlens_io.h: no GIMP, no GLib, no GTK, so it is
 * unit-testable and linked into both front ends. Prefix dh_.
 *
 * Conventions as in dermlens.h: 0 / -1 returns with a dl_error or a message
 * buffer, ownership stated on each function, nothing printed. */
#ifndef DERMLENS_HOST_H
#define DERMLENS_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "dermlens.h"

#define DH_VERSION DL_VERSION_STRING
#define DH_MIN_REGION 8          /* smallest side we classify, in pixels */
#define DH_MAX_TOP_K 50
#define DH_DISCLAIMER "Research/teaching aid - not a diagnosis"
/* The longer form on the review page and its images (as the CLI prints it). */
#define DH_DISCLAIMER_LONG "Research/teaching aid - not a medical device, not a diagnosis."
/* The headline when the input looks out of distribution. */
#define DH_OOD_HEADLINE "Not a dermoscopic lesion image? Results unreliable"
/* Colours of the label (Pango/GTK markup): text, warning (out of
 * distribution), caution (uncertain). */
#define DH_COLOUR_TEXT "#ffffff"
#define DH_COLOUR_WARNING "#ff9f1c"
#define DH_COLOUR_CAUTION "#ffd166"
/* A near-tie: the top two within this many percentage points, or the top
 * class below DH_UNCERTAIN_TOP percent. */
#define DH_UNCERTAIN_GAP 10
#define DH_UNCERTAIN_TOP 50

/* ------------------------------------------------------------------ model search */

/* The model files looked for, the lesion model first (it wins over the
 * ImageNet model wherever each is). */
#define DH_MODEL_LESION "dermlens_ham10000.safetensors"
#define DH_MODEL_IMAGENET "mobilenet_v2_imagenet.safetensors"

/* The one model search of the plug-in and the CLI. Order:
 *  1. explicit_path (the --model option, the dialog's file, the PDB argument)
 *     when non-NULL and non-empty, used as given;
 *  2. $DERMLENS_MODEL when set and non-empty;
 *  3. the lesion model, then the ImageNet model, in the first folder that has
 *     it of: own_dir (the plug-in's folder, where a user-only install puts
 *     it; NULL for the CLI), the user data folder $XDG_DATA_HOME/dermlens
 *     (default ~/.local/share/dermlens), the installed data folder
 *     <prefix>/share/dermlens, the source tree's weights/ (a build folder run).
 * Writes the path to out (out_size bytes). Returns 0, or -1 with err
 * (DL_ERR_IO: nothing found, the folders named; DL_ERR_LIMIT: path too long). */
int dh_model_find(const char *explicit_path, const char *own_dir, char *out, size_t out_size,
                  dl_error *err);
/* The compiled-in installed data folder (<prefix>/share/dermlens). Static. */
const char *dh_model_data_dir(void);
/* dh_model_find, then dl_model_load. The path used is copied to used_path
 * (may be NULL). Caller frees the model with dl_model_free. */
dl_model *dh_model_open(const char *explicit_path, const char *own_dir, char *used_path,
                        size_t used_size, dl_error *err);

/* ------------------------------------------------------------------ parameters */

/* Validated user parameters (PDB arguments, dialog values, CLI options). */
typedef struct {
    char model_path[4096];        /* "" = the model search */
    dl_saliency_method method;
    double opacity;               /* 0..100 */
    int top_k;                    /* 1..DH_MAX_TOP_K (clamped to the class count later) */
    int add_labels;
    int add_legend;
    int overlay;                  /* a dh_overlay_style (fill, outline, both); default fill */
} dh_params;

void dh_params_default(dh_params *p);

/* Check and copy raw parameter values into *out. Returns 0, or -1 with a
 * user-facing message in msg (*out untouched). method may be NULL/"" (=
 * gradcam). */
int dh_params_set(dh_params *out, const char *model_path, const char *method, double opacity,
                  int top_k, int add_labels, int add_legend, char *msg, size_t msg_size);

/* ------------------------------------------------------------------ image check */

/* A cheap image-statistics check beside the model's Mahalanobis score: it
 * flags inputs that cannot be a dermoscopic lesion image whatever the
 * network says: too small, blank (nearly every pixel clipped to white or
 * black) and flat / near-uniform (almost no contrast anywhere: a plain
 * colour, a plain skin patch, a grey card). */

/* Smaller than this on either side: "too small". */
#define DH_STATS_MIN_SIDE 32
/* Fraction of clipped (near-white or near-black) pixels that makes "blank". */
#define DH_STATS_BLANK_FRACTION 0.97
/* Robust contrast (2nd to 98th percentile, the largest over R, G, B, in
 * 8-bit levels) below which an image is "flat / near-uniform". On
 * ham10000/val + test (2981 images) the lowest value is 30 and only 4 are
 * below 40; tests/gimp/imgstats_check.c measures the false-positive rate on
 * ham10000/test. Noise does not hide flatness: percentiles ignore the tails
 * and sd-4 noise spans about 16 levels. */
#define DH_STATS_FLAT_RANGE 32

typedef struct {
    int width, height;
    double mean[3];        /* per channel, 8-bit levels */
    double stddev[3];      /* per channel */
    int range[3];          /* 98th - 2nd percentile per channel */
    int max_range;         /* largest of range[] */
    double clipped;        /* fraction of samples with all channels >= 250 or all <= 5 */
    double detail;         /* mean |luma difference| between horizontal neighbours (info) */
    int samples;           /* pixels looked at (a grid of at most ~65536) */
} dh_image_stats;

/* Statistics of an RGB8 region (stride bytes per row). */
void dh_image_stats_compute(const uint8_t *rgb, int width, int height, size_t stride,
                            dh_image_stats *out);
/* 1 when the statistics say "not a dermoscopic lesion image", with a short
 * reason ("too small (20 x 20 pixels)", "blank", "flat: almost no contrast")
 * in reason; 0 otherwise (reason ""). */
int dh_image_stats_flag(const dh_image_stats *s, char *reason, size_t reason_size);

/* ------------------------------------------------------------------ analysis */

/* Progress forwarding: maps an engine stage onto [base, base+span] of the
 * host's progress bar. */
typedef void (*dh_host_progress_fn)(void *host, double fraction, const char *text);
typedef struct {
    dh_host_progress_fn fn;
    void *host;
    double base, span;
} dh_progress;
int dh_progress_cb(void *user, double fraction, const char *stage); /* a dl_progress_fn */

/* Result of one analysis. */
typedef struct {
    dl_result result;             /* all classes, sorted in top_index */
    float *map;                   /* width*height saliency in [0,1], NULL if unavailable */
    int map_width, map_height;
    char saliency_note[256];      /* why map is NULL ("" otherwise) */
    dh_image_stats stats;         /* the cheap image-statistics check ... */
    int image_flag;               /* ... flags this input (tiny, blank, flat) */
    char image_reason[128];       /* why ("" when not flagged) */
} dh_analysis;

/* Classify (all classes) and, when want_saliency, explain the top class
 * (the map smoothed by dh_map_smooth: the overlay everyone sees).
 * A saliency failure that is not fatal (unsupported, limit, nomem) leaves
 * map NULL and a note; the classification is still returned. prog may be
 * NULL. Free *out with dh_analysis_free (also after a failure). */
int dh_analyse(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
               dl_saliency_method method, int want_saliency, dh_progress *prog,
               dh_analysis *out, dl_error *err);
void dh_analysis_free(dh_analysis *a);
/* dh_analyse in its two steps, for a front end that does other work (on
 * another thread) between them: the image check and the classification
 * (with saliency_note "saliency not requested"), then the saliency of the
 * classification's top class into the same *out. dh_analyse_saliency
 * touches only out->map, map_width, map_height and saliency_note, so
 * another thread may read out->result and the image check meanwhile; it
 * returns -1 only when cancelled (the classification is then freed too),
 * else 0 with the map or a note. */
int dh_analyse_classify(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                        dh_progress *prog, dh_analysis *out, dl_error *err);
int dh_analyse_saliency(dl_model *m, const uint8_t *rgb, int width, int height, size_t stride,
                        dl_saliency_method method, dh_progress *prog, dh_analysis *out,
                        dl_error *err);

/* ------------------------------------------------------------------ smooth maps */

/* How the coarse map reaches the region: smooth (the default everywhere:
 * dh_map_smooth on the engine's map) or bilinear (the engine's map as it
 * is; kept selectable for the faithfulness comparison). */
typedef enum { DH_UPSAMPLE_SMOOTH = 0, DH_UPSAMPLE_BILINEAR } dh_upsample;
/* "smooth" / "bilinear" -> the enum, -1 if unknown; and back (static). */
int dh_upsample_parse(const char *name);
const char *dh_upsample_name(dh_upsample u);

/* The saliency grid's cell in region pixels for a w x h region: the last
 * convolution's stride (32 network pixels) scaled to the region as the
 * model's preprocessing maps it (squash: each axis; centre crop: the central
 * square). m may be NULL (a 224 px squash model). */
void dh_saliency_cell(const dl_model *m, int w, int h, double *cell_x, double *cell_y);
/* Smooth a bilinearly upsampled w x h map in place into the cubic B-spline
 * of the same coarse values: convolved with a cell-wide tent (two box
 * passes a direction, running sums: about 10 operations a pixel whatever
 * the cell), then stretched to [0, 1] again (a map without evidence stays
 * zero). 0, or -1 with err (out of memory; map unchanged). */
int dh_map_smooth(float *map, int w, int h, double cell_x, double cell_y, dl_error *err);

/* ------------------------------------------------------------------ overlay pixels */

/* The opacity ramp of the colour map: transparent up to DH_ALPHA_LOW,
 * opaque from DH_ALPHA_HIGH (smoothstep between), so that the lesion shows
 * where the model found little. */
#define DH_ALPHA_LOW 0.15f
#define DH_ALPHA_HIGH 0.70f
float dh_saliency_alpha(float s);
/* The one colour map, used by the plug-in and the CLI: saliency s in [0,1]
 * -> RGBA8, a perceptual path in OKLab from dark violet through red and
 * orange to pale yellow (lightness rising with s), alpha dh_saliency_alpha. */
void dh_colormap(float s, uint8_t rgba[4]);
/* Colour-map rows [y0, y0+rows) of a w-wide map. channels 4: RGBA;
 * channels 2: grey + alpha (for grey images), grey = saliency. out holds
 * rows*w*channels bytes. */
void dh_overlay_rows(const float *map, int w, int y0, int rows, int channels, uint8_t *out);

/* The outline mode: the contour of the top DH_OUTLINE_TOP of the map. */
#define DH_OUTLINE_TOP 0.20
/* The map value above which the top `top` fraction of its n values lie
 * (INFINITY for a map without evidence: no contour). */
float dh_map_level(const float *map, size_t n, double top);
/* The outline's width in pixels for a w x h region (about 1/110 of the
 * short side, at least 2). */
double dh_outline_width(int w, int h);
/* Outline rows [y0, y0+rows) of a w x h map: an anti-aliased stroke `width`
 * pixels wide along the contour at `level`, pale yellow (the colour map's
 * top) on a dark rim, transparent elsewhere. channels 4 or 2 as above. */
void dh_outline_rows(const float *map, int w, int h, float level, double width, int y0, int rows,
                     int channels, uint8_t *out);

typedef enum { DH_OVERLAY_FILL = 0, DH_OVERLAY_OUTLINE, DH_OVERLAY_BOTH } dh_overlay_style;
/* "fill" / "outline" / "both" -> the enum, -1 if unknown; and back (static). */
int dh_overlay_style_parse(const char *name);
const char *dh_overlay_style_name(dh_overlay_style s);
/* Its readable name ("Outline of the top 20 %") and a one-line description. */
const char *dh_overlay_style_title(dh_overlay_style s);
const char *dh_overlay_style_help(dh_overlay_style s);

/* How a map is drawn onto a picture. */
typedef struct {
    dh_overlay_style style;
    double opacity;    /* of the colour fill, 0..1 (the outline is opaque) */
    float level;       /* outline level (dh_map_level) */
    double width;      /* outline width in pixels */
} dh_overlay;
/* For a w x h map: the style, the fill's opacity (0..1), the outline's
 * level (top DH_OUTLINE_TOP) and width. */
void dh_overlay_init(dh_overlay *o, const float *map, int w, int h, dh_overlay_style style,
                     double opacity);
/* Rows [y0, y0+rows) of the RGB8 picture rgb (w x h, stride bytes a row)
 * with the map drawn over it as o says, into out (out_stride bytes a row). */
void dh_blend_rows(const uint8_t *rgb, size_t stride, const float *map, int w, int h, int y0,
                   int rows, const dh_overlay *o, uint8_t *out, size_t out_stride);

/* A plain legend bar for an image of region_w x region_h (annotated batch
 * copies): its size, and its pixels (w*h*channels, opaque gradient
 * low->high left to right with a dark frame); channels 4 or 2 as above. */
void dh_legend_size(int region_w, int region_h, int *w, int *h);
void dh_legend_pixels(int w, int h, int channels, uint8_t *out);

/* ------------------------------------------------------------------ label text */

/* One rounding everywhere: a probability as a whole percentage (half up). */
int dh_percent(float p);
/* What the user is told first. */
typedef enum {
    DH_VERDICT_CLASS = 0,         /* "melanoma 81 %" */
    DH_VERDICT_UNCERTAIN,         /* "uncertain: bkl 44 % / nv 44 %" */
    DH_VERDICT_OOD                /* DH_OOD_HEADLINE */
} dh_verdict;
/* Out of distribution (the model's Mahalanobis flag or the image check)
 * comes first, then a near-tie, else the top class. */
dh_verdict dh_verdict_of(const dl_result *r, int image_flag);
/* The headline for that verdict (no markup). */
void dh_headline(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size);
/* "DermLens: melanoma 81 %", "DermLens: uncertain: bkl 44 % / nv 44 %",
 * "DermLens: Not a dermoscopic lesion image? Results unreliable (nv 51 %)". */
void dh_group_name(const dl_model *m, const dl_result *r, int image_flag, char *buf, size_t size);
/* Top-k lines, an OOD warning when flagged, and the disclaimer. */
void dh_label_text(const dl_model *m, const dl_result *r, int top_k, char *buf, size_t size);
/* The label as Pango markup: the headline (warning colour when out of
 * distribution, caution colour when uncertain, bold), the top-k classes,
 * the disclaimer; every line wrapped at cols characters (0 = no wrapping).
 * markup 0 gives the same text without tags; with_headline 0 leaves the
 * headline out (GIMP 2.10 shows it in a text layer of its own: its text
 * layers take no markup). */
void dh_label_markup(const dl_model *m, const dl_result *r, int image_flag, int top_k, int cols,
                     int markup, int with_headline, char *buf, size_t size);
/* The headline alone, wrapped at cols (no markup). */
void dh_headline_wrapped(const dl_model *m, const dl_result *r, int image_flag, int cols,
                         char *buf, size_t size);
/* Readable name of a saliency method ("Grad-CAM", "Grad-CAM++", ...) and a
 * one-line description of it. Static strings. */
const char *dh_method_title(dl_saliency_method m);
const char *dh_method_help(dl_saliency_method m);
/* How many saliency methods the engine has (dl_saliency_method 0..n-1, named
 * by dl_saliency_method_name), and their names as one phrase, "gradcam,
 * gradcam++, ... or occlusion", for help texts and messages. Static. */
int dh_method_count(void);
const char *dh_method_list(void);

/* Region in image coordinates. */
typedef struct {
    int x, y, width, height;
} dh_region;

/* The result as JSON (the plug-in's "dermlens-result" parasite). malloc'd,
 * caller frees; NULL on allocation failure. image_reason: why the image
 * check flagged the input (NULL or "": not). */
char *dh_result_json(const dl_model *m, const char *model_path, const dl_result *r,
                     const dh_region *region, dl_saliency_method method, int saliency_ok,
                     const char *saliency_note, const char *image_reason);

/* ------------------------------------------------------------------ label layout */

/* Label text height for a region: scales with its short side (about 1/15 of
 * it: 15 px on 224 px, 533 px on 8000 px), never below 14 px on a region of
 * 200 px or more; smaller regions get smaller text (at least 8 px). */
double dh_label_font_px(int w, int h);
/* Margin between the region's edge and the label box / legend, and the box's
 * inner padding, for a font size. */
int dh_label_margin(double font_px);
/* Characters per line that fit box_w pixels at font_px. */
int dh_label_cols(int box_w, double font_px);
/* Font size that makes a text of text_w x text_h pixels (at size) fit a
 * box_w x box_h box; size itself when it already fits. */
double dh_fit_font_size(double size, int text_w, int text_h, int box_w, int box_h);
/* A w x h box of the label background (black at 62 % alpha), channels 4 or
 * 2. malloc'd, caller frees; NULL when out of memory. */
uint8_t *dh_box_pixels(int w, int h, int channels);

/* How a front end measures what it will draw, in its own fonts. */
typedef struct {
    /* Size of a Pango-markup text block at font_px. */
    void (*text_size)(void *user, const char *markup, double font_px, int *w, int *h);
    /* Size of the legend drawn at font_px within max_w; 0, or -1 when it
     * does not fit. */
    int (*legend_size)(void *user, double font_px, int max_w, dl_saliency_method method,
                       int *w, int *h);
    void *user;
} dh_measure;

/* What goes into a region of rw x rh and how big: the label text at the
 * largest size that fits (from dh_label_font_px down to 14 px on regions of
 * 200 px and more, 8 px below), above the legend. When nothing fits, first
 * the legend gives way, then the class list shrinks to the top class; when
 * even that does not fit, no label (the group name and the JSON still
 * carry the result): text is never clipped. */
typedef struct {
    int show_label, show_legend, top_k;
    double font_px;
    int margin;
    int cols;               /* characters per line that fit */
} dh_label_plan;

void dh_plan_labels(const dl_model *m, const dh_analysis *an, const dh_params *p, int rw, int rh,
                    int overlay, const dh_measure *ms, dh_label_plan *pl);
/* Columns for the label at font size size: the plan's at its own size,
 * scaled when the text had to be made smaller. */
int dh_plan_cols(const dh_label_plan *pl, int tw_max, double size);

/* ------------------------------------------------------------------ teaching figure */

/* A figure for a slide: the region (left) and the region with its map
 * (right) side by side on white, a caption below with the verdict, the top
 * classes, the method, the model and the disclaimer. */
#define DH_FIGURE_MAX_PANEL 1600   /* longest panel side; larger regions are scaled down */

typedef struct {
    int panel_w, panel_h;          /* each panel */
    int gap;                       /* around and between the panels */
    int width;                     /* 2 * panel_w + 3 * gap */
    int caption_x, caption_y, caption_w;
    double font_px;                /* caption text height */
    int cols;                      /* caption characters a line, first guess */
} dh_figure_layout;

void dh_figure_plan(int region_w, int region_h, dh_figure_layout *f);
/* The figure's height once its caption is caption_h pixels high. */
int dh_figure_height(const dh_figure_layout *f, int caption_h);
/* The two panels of f's size from the RGB8 region rgb (w x h, stride bytes
 * a row) and its w x h map (NULL: the right panel is the picture alone)
 * drawn as o says: malloc'd RGB8 in *left and *right (free both); 0, or -1
 * with err (nothing to free). */
int dh_figure_panels(const uint8_t *rgb, int w, int h, size_t stride, const float *map,
                     const dh_overlay *o, const dh_figure_layout *f, uint8_t **left,
                     uint8_t **right, dl_error *err);
/* The caption as plain text, one paragraph a line, each wrapped at cols
 * characters (0: not wrapped): the headline, the top_k classes with their
 * probabilities, what the right panel shows (the map of class cls by
 * method, drawn in style), the model (name and file) and the disclaimer. */
void dh_figure_caption(const dl_model *m, const char *model_path, const dl_result *r,
                       int image_flag, int cls, dl_saliency_method method, dh_overlay_style style, int top_k,
                       int cols, char *buf, size_t size);

/* ------------------------------------------------------------------ batch review */

typedef struct {
    const char *input_dir;
    const char *csv_path;
    const char *output_dir;       /* NULL or "": no annotated copies */
    dl_saliency_method method;    /* for annotated copies */
    double opacity;               /* 0..100, for annotated copies */
    dh_host_progress_fn progress;
    void *progress_host;
} dh_batch_opts;

typedef struct {
    int files;                    /* image files seen */
    int ok;                       /* classified */
    int failed;                   /* rows with an error */
} dh_batch_stats;

/* Classify every regular file in input_dir (sorted by name; hidden files
 * skipped) and write the CSV atomically. Refuses outputs inside input_dir.
 * A file that fails gets a row with its error and the run continues.
 * Returns 0 when the CSV was written (even if some files failed). */
int dh_batch_run(dl_model *m, const dh_batch_opts *o, dh_batch_stats *stats, dl_error *err);

/* ------------------------------------------------------------------ dataset review */

/* `dermlens review` and the plug-in's Batch Review: every image under a
 * dataset folder (subfolders included) is classified and explained and
 * compared with its given label (class subfolders or a CSV); the outputs are
 * annotated PNGs (overlay above a label box: headline, classes, the given
 * label, legend, disclaimer, the out-of-distribution warning), thumbnails,
 * a CSV sorted by suspicion and an index.html that opens from disk. The
 * front end decodes each image (the CLI with the engine, the plug-in also
 * with GIMP's loaders) and hands the pixels over. */

/* Images larger than this on a side are analysed and annotated at this size. */
#define DH_REVIEW_MAX_SIDE 1024
/* Thumbnails fit in this square. */
#define DH_REVIEW_THUMB_SIDE 200

/* The front end's text drawing, for the label box (host/ draws no text).
 * Draws the UTF-8 text with the left end of its baseline at (x, y) on
 * surface, w x h pixels of cairo's RGB24 layout (one uint32 0x00RRGGBB
 * each, stride in bytes), in a sans-serif face of size px, bold or not, in
 * colour rgb (0..1); with surface NULL it only measures. Returns the
 * advance width; *ascent and *height (either may be NULL) get the font's
 * ascent and line height. Called from several threads at once in the CLI. */
typedef struct {
    void *user;
    double (*text)(void *user, uint32_t *surface, int w, int h, int stride, double x, double y,
                   const char *text, double size, int bold, const double rgb[3], double *ascent,
                   double *height);
} dh_text_painter;

typedef struct {
    const char *dataset;          /* the folder to review */
    const char *out_dir;          /* index.html, images/, thumbs/ and (default) review.csv; NULL or "": the CSV only */
    const char *csv_path;         /* NULL or "": out_dir/review.csv */
    const char *labels_csv;       /* labels from this CSV instead of class subfolders; NULL or "": folders */
    const char *label_column;     /* the CSV's label column; NULL: label, dx, ham10000_class, class, diagnosis */
    const char *const *more_exts; /* NULL-terminated extra name endings to list (".xcf"); NULL: none */
    dl_saliency_method method;
    double opacity;               /* 0..100 */
    const dh_text_painter *painter; /* NULL: annotated images without the label box */
} dh_review_opts;

typedef struct dh_review dh_review;

typedef struct {
    int n, ok, failed, labelled, disagree, ood;
    int skipped;        /* files that are not images by name */
    int unreadable;     /* folders that could not be listed */
    int from_folders;   /* labels came from class subfolders */
    int csv_matched, csv_not_class, csv_unused, csv_ambiguous, csv_rows; /* labels from a CSV */
    char unmatched[512];  /* folders that name no class ("a, b, ... (N in all)"); "" if none */
    char not_classes[512]; /* CSV labels that are no class of the model, the same way */
} dh_review_summary;

/* Check the paths (the outputs may not lie inside the dataset), walk the
 * dataset (name order, depth first, hidden entries skipped, symbolic links
 * followed only to files inside it; FIFOs and devices listed as failed,
 * never opened), read the labels, create the output folders, lock the CSV
 * against a second writer and remove an earlier run's images. m must
 * outlive the review. Free *out with dh_review_close (NULL on failure). */
int dh_review_open(const dl_model *m, const dh_review_opts *o, dh_review **out, dl_error *err);
int dh_review_count(const dh_review *rv);
/* Image i (walk order): the file to read (full path), and its path
 * relative to the dataset as shown. NULL when i is out of range. */
const char *dh_review_path(const dh_review *rv, int i);
const char *dh_review_rel(const dh_review *rv, int i);
/* Why image i is not read (a FIFO, a link leaving the dataset), or NULL. */
const char *dh_review_refused(const dh_review *rv, int i);
/* Analyse image i from the decoded pixels and write its annotated image
 * and thumbnail. Returns 0, or -1 with err (the image is then recorded as
 * failed with that message). Distinct i may run on distinct threads with
 * distinct models. */
int dh_review_image(dh_review *rv, dl_model *m, int i, const dl_image *img, dl_error *err);
/* Record image i as failed (message without the file's path). */
void dh_review_fail(dh_review *rv, int i, const char *message);
/* Write the CSV of the images done so far, in walk order, atomically (a
 * run killed part-way leaves a valid CSV). */
int dh_review_checkpoint(dh_review *rv, dl_error *err);
/* Sort (labelled images by suspicion, most suspicious first, then
 * unlabelled ones, then failures), write the CSV and, with an out_dir,
 * index.html. dataset_shown names the dataset on the page. Images never
 * handed over count as failed ("not analysed"). sum may be NULL. */
int dh_review_finish(dh_review *rv, const char *dataset_shown, dh_review_summary *sum, dl_error *err);
/* After finish: image i in page order, its path as shown and its error
 * (NULL when it was reviewed). Returns -1 when i is out of range. */
int dh_review_result(const dh_review *rv, int i, const char **rel, const char **error);
/* The CSV and page paths (the page is NULL without an out_dir). Owned by rv. */
const char *dh_review_csv_path(const dh_review *rv);
const char *dh_review_html_path(const dh_review *rv);
void dh_review_close(dh_review *rv);
/* Confident disagreement with the given label: the largest probability of
 * another class minus the label's probability, in [-1, 1]; NaN without a
 * label (label outside 0..k-1). */
double dh_review_suspicion(const float *probs, int k, int label);

#endif
