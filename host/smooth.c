/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Smooth saliency maps. The engine brings the coarse map (7 x 7 for
 * MobileNetV2 at 224 px) to the region bilinearly: a sum of cell-wide tents
 * (linear B-splines) with kinks along every cell centre, which the mean over
 * the 8 flips of the input turns into ridges, diamonds and crosses.
 * Convolving that map with one more cell-wide tent turns every linear
 * B-spline into a cubic one (B1 * B1 = B3): the result is the cubic B-spline
 * of the same coarse values, continuous up to the second derivative, with
 * no need to know where the grid lies. A tent is two boxes, and a box is a
 * running sum, so the cost does not grow with the cell. */
#include "dermlens_host.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The last convolution of the CNNs the engine runs (MobileNetV2, ResNet,
 * EfficientNet) has a stride of 32 input pixels: a 7 x 7 grid at 224. */
#define DH_CAM_STRIDE 32.0

void dh_saliency_cell(const dl_model *m, int w, int h, double *cell_x, double *cell_y)
{
    int iw = 0, ih = 0;
    if (!m || dl_model_input_size(m, &iw, &ih) != 0 || iw < 1 || ih < 1) {
        iw = ih = 224;
    }
    /* center_crop shows the network the region's central square only. */
    int crop = 0;
    const char *info = m ? dl_model_info_json(m) : NULL;
    cJSON *j = info ? cJSON_Parse(info) : NULL;
    const cJSON *pre = j ? cJSON_GetObjectItemCaseSensitive(j, "preprocess") : NULL;
    const cJSON *rs = pre ? cJSON_GetObjectItemCaseSensitive(pre, "resize") : NULL;
    if (cJSON_IsString(rs) && strcmp(rs->valuestring, "center_crop") == 0)
        crop = 1;
    cJSON_Delete(j);
    if (crop) {
        int s = w < h ? w : h;
        *cell_x = DH_CAM_STRIDE * s / iw;
        *cell_y = DH_CAM_STRIDE * s / ih;
    } else {
        *cell_x = DH_CAM_STRIDE * w / iw;
        *cell_y = DH_CAM_STRIDE * h / ih;
    }
}

static const char *const upsample_names[] = {"smooth", "bilinear"};

int dh_upsample_parse(const char *name)
{
    for (int i = 0; i < 2; i++)
        if (name && strcmp(name, upsample_names[i]) == 0)
            return i;
    return -1;
}

const char *dh_upsample_name(dh_upsample u)
{
    return (int)u >= 0 && (int)u < 2 ? upsample_names[u] : "?";
}

/* Box average of n values spaced `stride` apart over `width` samples
 * (edges clamped), in place. An even width cannot be centred: shift says
 * which half-sample way (0 or 1), so that two passes cancel out. */
static void box_line(float *v, int n, size_t stride, int width, int shift, float *tmp)
{
    if (width <= 1 || n < 2)
        return;
    int lo = -(width / 2) + (width % 2 == 0 ? shift : 0), hi = lo + width - 1;
    double acc = 0;
    for (int j = lo; j <= hi; j++)
        acc += v[(size_t)(j < 0 ? 0 : j >= n ? n - 1 : j) * stride];
    for (int i = 0; i < n; i++) {
        tmp[i] = (float)(acc / width);
        int out = i + lo, in = i + hi + 1;
        acc += v[(size_t)(in >= n ? n - 1 : in) * stride] - v[(size_t)(out < 0 ? 0 : out) * stride];
    }
    for (int i = 0; i < n; i++)
        v[(size_t)i * stride] = tmp[i];
}

int dh_map_smooth(float *map, int w, int h, double cell_x, double cell_y, dl_error *err)
{
    if (!map || w < 1 || h < 1)
        return 0;
    int bx = (int)(cell_x + 0.5), by = (int)(cell_y + 0.5);
    bx = bx < 1 ? 1 : bx > w ? w : bx;
    by = by < 1 ? 1 : by > h ? h : by;
    float *tmp = malloc((size_t)(w > h ? w : h) * sizeof *tmp);
    if (!tmp) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory smoothing a %d x %d saliency map", w, h);
        return -1;
    }
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++)
        map[i] = map[i] > 0.0f ? map[i] : 0.0f; /* also NaN -> 0 */
    /* A cell-wide tent = two cell-wide boxes, across and down. */
    for (int y = 0; y < h; y++)
        for (int pass = 0; pass < 2; pass++)
            box_line(map + (size_t)y * w, w, 1, bx, pass, tmp);
    for (int x = 0; x < w; x++)
        for (int pass = 0; pass < 2; pass++)
            box_line(map + x, h, (size_t)w, by, pass, tmp);
    free(tmp);
    /* Back to [0, 1], as the engine's maps are; no evidence stays zero. */
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        lo = map[i] < lo ? map[i] : lo;
        hi = map[i] > hi ? map[i] : hi;
    }
    if (hi - lo > 1e-6f) {
        float sc = 1.0f / (hi - lo);
        for (size_t i = 0; i < n; i++)
            map[i] = (map[i] - lo) * sc;
    } else {
        memset(map, 0, n * sizeof *map);
    }
    return 0;
}
