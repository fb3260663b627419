/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The plain CSV table reader behind `evaluate --metadata`: quotes, BOM,
 * blank lines, column lookup, and refusals that name the line. */
#include "testutil.h"

#include <string.h>

int main(void)
{
    dl_csv_table t;
    dl_error err = {0};
    const char ok[] = "\xEF\xBB\xBFimage_id,sex,age,localization\r\n"
                      "ISIC_1,male,45.0,\"lower extremity\"\r\n"
                      "\r\n"
                      "ISIC_2,female,,\"back, upper \"\"left\"\"\"\n";
    CHECK(dl_csv_table_parse(ok, sizeof ok - 1, &t, &err) == 0, "parse: %s", err.message);
    CHECK(t.n_cols == 4 && t.n_rows == 2, "shape %dx%d", t.n_rows, t.n_cols);
    CHECK(dl_csv_table_column(&t, "image_id") == 0 && dl_csv_table_column(&t, "age") == 2, "BOM-stripped header");
    CHECK(dl_csv_table_column(&t, "dataset") == -1, "absent column");
    if (t.n_rows == 2) {
        CHECK(!strcmp(t.cells[3], "lower extremity"), "quoted cell: %s", t.cells[3]);
        CHECK(!strcmp(t.cells[6], ""), "empty cell: %s", t.cells[6]);
        CHECK(!strcmp(t.cells[7], "back, upper \"left\""), "escaped quotes: %s", t.cells[7]);
    }
    dl_csv_table_free(&t);

    const char ragged[] = "a,b\n1,2\n3\n";
    CHECK(dl_csv_table_parse(ragged, sizeof ragged - 1, &t, &err) != 0 && strstr(err.message, "line 3"),
          "ragged row: %s", err.message);
    const char open_quote[] = "a,b\n\"1,2\n";
    CHECK(dl_csv_table_parse(open_quote, sizeof open_quote - 1, &t, &err) != 0 && strstr(err.message, "quoted"),
          "unterminated quote: %s", err.message);
    return tu_exit();
}
