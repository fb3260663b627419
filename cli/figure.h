/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens explain --figure: host/'s teaching figure, drawn with cairo. */
#ifndef DL_CLI_FIGURE_H
#define DL_CLI_FIGURE_H

#include "dermlens.h"
#include "dermlens_host.h"

/* Write the teaching figure of img (and its img-sized map, NULL: none) as
 * a PNG at path, atomically: the picture and the picture with the map drawn
 * in style at opacity (0..1) side by side, and a caption with the headline,
 * the top_k classes of r, what the map shows (class cls, method), the model
 * (name and model_path's file name) and the disclaimer; the caption's text
 * (unwrapped) also into caption (caption_size bytes; may be NULL). 0, or -1
 * with err (also when this dermlens was built without cairo). */
int cli_write_figure(const char *path, const dl_image *img, const float *map, const dl_model *m,
                     const char *model_path, const dl_result *r, int cls,
                     dl_saliency_method method, dh_overlay_style style, double opacity,
                     int top_k, char *caption, size_t caption_size, dl_error *err);

#endif
