/* DermLens engine: ONNX import (untrusted ModelProto -> DermLens model).
 * SPDX-License-Identifier: GPL-3.0-or-later
 * Internal: the converter on its own, for the tests and the fuzz target.
 */
#ifndef DL_ONNX_IMPORT_H
#define DL_ONNX_IMPORT_H

#include "formats/formats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The public half (dl_onnx_import_options, dl_import_onnx) is in dermlens.h. */

/* The converter alone: ONNX bytes -> graph (NHWC, OHWI weights). width and
 * height override the file's input size (0: the file's). On failure g is
 * left empty (safe to free). Used by dl_import_onnx, the tests and the
 * fuzz target. */
int dl_onnx_to_graph(const uint8_t *data, size_t size, int width, int height, dl_graph *g, dl_error *err);

#endif
