/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens review: the records one run keeps, shared by the command
 * (cmd_review.c), the annotated images (review_render.c) and the page
 * (review_html.c). */
#ifndef DL_REVIEW_H
#define DL_REVIEW_H

#include "cli.h"

/* Images larger than this on a side are analysed and annotated at this
 * size (the network sees 224 px whatever the input; the page needs no more). */
#define REVIEW_MAX_SIDE 1024
/* Thumbnails fit in this square. */
#define REVIEW_THUMB_SIDE 200

typedef struct {
    char *path;          /* what is read (full path) */
    char *rel;           /* relative to the dataset folder, '/'-separated: shown and written */
    const char *refused; /* static reason when the file is not read (FIFO, link outside) */
    int label;           /* class index of the model, -1 if none or not a class */
    char *label_text;    /* the given label as written (NULL if none) */
    /* results (ok = 1) */
    int ok;
    char *error;         /* why it failed (g_strdup'd) */
    int width, height;   /* as decoded (after EXIF orientation) */
    int scaled;          /* analysed at a reduced size (REVIEW_MAX_SIDE) */
    float *probs;        /* [K] */
    int pred;
    float ood_score;     /* NAN when the model has no detector */
    int ood_model;       /* the model's Mahalanobis flag */
    int image_flag;      /* the image-statistics check (blank, flat, tiny) */
    char image_reason[128];
    int ood;             /* either of the two */
    int uncertain;       /* a near-tie (dlp verdict) */
    double suspicion;    /* NAN without a label; see suspicion_of */
    int disagree;        /* labelled and prediction != label */
    int has_map;         /* the overlay carries a saliency map */
    char saliency_note[256];
    char *out_name;      /* "<index>-<stem>.png" in images/ and thumbs/ */
    int thumb_w, thumb_h;
} review_item;

typedef struct {
    const char *dataset;     /* as given */
    const char *labels_from; /* "class subfolders", "labels.csv", or NULL */
    const char *model_name;
    const char *model_sha;
    const char *method;      /* readable saliency method name */
    int n_classes;
    const char *const *class_names;      /* short codes */
    const char *const *class_long_names; /* may hold NULLs */
    review_item **items;     /* in page order (by suspicion) */
    int n;
    int n_ok, n_failed, n_labelled, n_disagree, n_ood;
    const char *generated;   /* date and time, for the header */
} review_page;

/* Confident disagreement with the given label: the largest probability of
 * another class minus the label's probability, in [-1, 1]. Positive exactly
 * when the model prefers another class; near 1 when it is sure of it and
 * gives the label almost nothing; negative (to -1) when it confirms the
 * label. (The negated "normalized margin" of the label-error literature.) */
double review_suspicion(const float *probs, int k, int label);

/* The annotated image (overlay, label box with headline, classes, the given
 * label, legend and disclaimer) to images_path and its thumbnail (overlay
 * only) to thumb_path. img is what was analysed; map may be NULL. */
int review_render(const dl_model *m, const dl_image *img, const float *map, double opacity,
                  const review_item *it, const dl_result *r, const char *method_title,
                  const char *images_path, const char *thumb_path, int *thumb_w, int *thumb_h,
                  dl_error *err);
/* 1 if the label box could be drawn (built with cairo). */
int review_render_has_text(void);

/* index.html: self-contained (inline CSS and JS, images by relative path,
 * no network), written atomically. */
int review_write_html(const char *path, const review_page *p, dl_error *err);

#endif
