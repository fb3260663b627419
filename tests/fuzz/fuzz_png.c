/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fuzz target: image decoding via dl_image_load_memory (format sniffed from
 * the bytes; the corpus holds PNG, TIFF and BMP seeds, so mutations reach
 * every decoder), then a resize of any decoded image, exercising the
 * decoder's output geometry. */
#include "dermlens.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dl_image img;
    dl_error err;
    if (dl_image_load_memory(data, size, &img, &err) != 0)
        return 0;
    dl_image small;
    /* odd target sizes cover both shrinking and enlarging per axis */
    int w = img.width > 7 ? 7 : 13, h = img.height > 5 ? 5 : 11;
    if (dl_image_resize(&img, w, h, &small, &err) == 0)
        dl_image_free(&small);
    dl_image_free(&img);
    return 0;
}
