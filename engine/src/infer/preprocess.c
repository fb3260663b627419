/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The model's recorded preprocessing, applied by the engine so that every
 * caller (CLI, plug-in, training, evaluation) feeds the network alike. */
#include "infer/infer.h"

#include <stdlib.h>
#include <string.h>

void dl_preprocess_letterbox(int w, int h, int W, int H, int *x, int *y, int *rw, int *rh)
{
    /* the side that fits exactly keeps the full size; no rounding drift */
    if ((int64_t)w * H >= (int64_t)h * W) {
        *rw = W;
        *rh = (int)(((int64_t)h * W + w / 2) / w);
    } else {
        *rh = H;
        *rw = (int)(((int64_t)w * H + h / 2) / h);
    }
    if (*rw < 1) *rw = 1;
    if (*rh < 1) *rh = 1;
    *x = (W - *rw) / 2;
    *y = (H - *rh) / 2;
}

/* resize "pad": the image resized into its letterbox rectangle (the same
 * antialiased resize as squash), the border black before normalisation. */
static int letterbox(const dl_preprocess *p, const dl_image *src, float *out, dl_error *err)
{
    int x0, y0, rw, rh;
    dl_preprocess_letterbox(src->width, src->height, p->width, p->height, &x0, &y0, &rw, &rh);
    dl_image tmp = {0};
    const dl_image *use = src;
    if (src->width != rw || src->height != rh) {
        if (dl_image_resize(src, rw, rh, &tmp, err)) return -1;
        use = &tmp;
    }
    const float inv[3] = {1.f / p->std[0], 1.f / p->std[1], 1.f / p->std[2]};
    for (int y = 0; y < p->height; y++) {
        float *o = out + (size_t)y * p->width * 3;
        const uint8_t *row = y >= y0 && y < y0 + rh ? use->pixels + (size_t)(y - y0) * use->stride : NULL;
        for (int x = 0; x < p->width; x++)
            for (int c = 0; c < 3; c++) {
                float v = row && x >= x0 && x < x0 + rw ? (float)row[(size_t)(x - x0) * 3 + c] : 0.f;
                o[(size_t)x * 3 + c] = (v - p->mean[c]) * inv[c];
            }
    }
    dl_image_free(&tmp);
    return 0;
}

int dl_preprocess_rgb8(const dl_preprocess *p, const uint8_t *rgb, int width, int height,
                       size_t stride, float *out, dl_error *err)
{
    if (!rgb || width < 1 || height < 1) return dl_fail(err, DL_ERR_ARG, "empty image (%dx%d)", width, height);
    if (stride < (size_t)width * 3) return dl_fail(err, DL_ERR_ARG, "stride %zu < 3*width", stride);
    if ((int64_t)width * height > DL_MAX_IMAGE_PIXELS)
        return dl_fail(err, DL_ERR_LIMIT, "image %dx%d exceeds %lld pixels", width, height,
                       (long long)DL_MAX_IMAGE_PIXELS);
    dl_image src = {.width = width, .height = height, .stride = stride, .pixels = (uint8_t *)rgb};
    if (strcmp(p->resize, "pad") == 0) return letterbox(p, &src, out, err);
    if (strcmp(p->resize, "center_crop") == 0) {
        int side = width < height ? width : height;
        src.pixels = (uint8_t *)rgb + (size_t)((height - side) / 2) * stride + (size_t)((width - side) / 2) * 3;
        src.width = src.height = side;
    }
    dl_image tmp = {0};
    const dl_image *use = &src;
    if (src.width != p->width || src.height != p->height) {
        if (dl_image_resize(&src, p->width, p->height, &tmp, err)) return -1;
        use = &tmp;
    }
    const float inv[3] = {1.f / p->std[0], 1.f / p->std[1], 1.f / p->std[2]};
    for (int y = 0; y < p->height; y++) {
        const uint8_t *row = use->pixels + (size_t)y * use->stride;
        float *o = out + (size_t)y * p->width * 3;
        for (int x = 0; x < p->width * 3; x++) o[x] = ((float)row[x] - p->mean[x % 3]) * inv[x % 3];
    }
    dl_image_free(&tmp);
    return 0;
}
