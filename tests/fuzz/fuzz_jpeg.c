/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fuzz target: JPEG decoding via dl_image_load_memory (format sniffed from
 * the bytes, so mutations may reach the other decoder too), then a resize of
 * any decoded image, exercising the decoder's output geometry; and the EXIF
 * orientation reader (dl_jpeg_exif_orientation) with the orientation applied
 * to the decoded image, as dl_image_load_oriented does. */
#include "dermlens.h"
#include "dermlens_io.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dl_image img;
    dl_error err;
    int orientation = dl_jpeg_exif_orientation(data, size);
    if (orientation < 1 || orientation > 8)
        __builtin_trap(); /* the reader promises 1..8 */
    if (dl_image_load_memory(data, size, &img, &err) != 0)
        return 0;
    if (dl_image_apply_orientation(&img, orientation, &err) != 0) {
        dl_image_free(&img);
        return 0;
    }
    dl_image small;
    /* odd target sizes cover both shrinking and enlarging per axis */
    int w = img.width > 7 ? 7 : 13, h = img.height > 5 ? 5 : 11;
    if (dl_image_resize(&img, w, h, &small, &err) == 0)
        dl_image_free(&small);
    dl_image_free(&img);
    return 0;
}
