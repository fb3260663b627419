/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fuzz target: the model container loader (safetensors header, JSON graph,
 * metadata). A file that loads is also run once on a small image, so shape
 * validation is exercised end to end. */
#include "dermlens.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dl_error err;
    memset(&err, 0, sizeof err);
    dl_model *m = dl_model_load_memory(data, size, &err);
    if (!m) return 0;
    int w = 0, h = 0;
    dl_model_input_size(m, &w, &h);
    /* keep the run bounded: only small networks are executed */
    if ((int64_t)w * h <= 64 * 64) {
        uint8_t px[16 * 16 * 3];
        for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
        dl_result r;
        if (dl_classify_rgb8(m, px, 16, 16, 48, NULL, &r, &err) == 0) dl_result_free(&r);
    }
    dl_model_free(m);
    return 0;
}
