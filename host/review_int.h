/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The dataset review's records, shared by review.c (the run, the CSV),
 * review_render.c (the annotated images) and review_page.c (index.html).
 * Not part of the host API. */
#ifndef DH_REVIEW_INT_H
#define DH_REVIEW_INT_H

#include "dermlens_host.h"
#include "internal.h"

typedef struct {
    char *path;          /* what is read (full path) */
    char *rel;           /* relative to the dataset folder, '/'-separated: shown and written */
    const char *refused; /* static reason when the file is not read (FIFO, link outside) */
    int label;           /* class index of the model, -1 if none or not a class */
    char *label_text;    /* the given label as written (NULL if none) */
    int done;            /* handed over (reviewed or failed) */
    int ok;
    char *error;         /* why it failed */
    int width, height;   /* as decoded */
    int scaled;          /* analysed at DH_REVIEW_MAX_SIDE */
    float *probs;        /* [K] */
    int pred;
    float ood_score;     /* NAN when the model has no detector */
    int ood_model;       /* the model's Mahalanobis flag */
    int image_flag;      /* the image-statistics check (blank, flat, tiny) */
    char image_reason[128];
    int ood;             /* either of the two */
    int uncertain;       /* a near-tie */
    double suspicion;    /* NAN without a label */
    int disagree;        /* labelled and prediction != label */
    int has_map;
    char saliency_note[256];
    char *out_name;      /* "<index>-<stem>.png" in images/ and thumbs/ */
    int thumb_w, thumb_h;
} dh_review_item;

/* What the page shows (review_page.c). */
typedef struct {
    const char *dataset;
    const char *labels_from; /* "class subfolders", the CSV's name, or NULL */
    const char *model_name;
    const char *model_sha;
    const char *method;      /* readable saliency method name */
    int n_classes;
    const char *const *class_names;
    const char *const *class_long_names; /* may hold NULLs */
    dh_review_item **items;  /* page order */
    int n;
    int n_ok, n_failed, n_labelled, n_disagree, n_ood;
    const char *generated;   /* date and time */
} dh_review_page;

int dh_review_write_html(const char *path, const dh_review_page *p, dl_error *err);

/* The annotated image (overlay above the label box, or the overlay alone
 * without a painter) and its thumbnail (overlay only). */
int dh_review_render(const dl_model *m, const dl_image *img, const float *map, double opacity,
                     const dh_review_item *it, const dl_result *r, const char *method_title,
                     const dh_text_painter *painter, const char *images_path, const char *thumb_path,
                     int *thumb_w, int *thumb_h, dl_error *err);

#endif
