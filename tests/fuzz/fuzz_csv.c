/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fuzz target: the dataset CSV parser (quotes, header lookup, split and
 * class filters), and the plain CSV table reader. */
#include "dermlens.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const classes[] = {"mel", "nv", "bkl"};
    dl_error err;
    memset(&err, 0, sizeof err);
    dl_dataset ds;
    /* free order, then fixed class order with and without subsets, and a split filter */
    dl_dataset_options opts[3] = {{0}, {.class_order = classes, .n_class_order = 3},
                                  {.class_order = classes, .n_class_order = 3, .allow_subset = 1, .split = "test"}};
    for (int i = 0; i < 3; i++) {
        if (dl_dataset_parse_csv((const char *)data, size, "base", &opts[i], &ds, &err) == 0) dl_dataset_free(&ds);
    }
    /* the plain table reader (evaluate's --metadata subgroups) */
    dl_csv_table t;
    if (dl_csv_table_parse((const char *)data, size, &t, &err) == 0) {
        (void)dl_csv_table_column(&t, "image_id");
        dl_csv_table_free(&t);
    }
    return 0;
}
