/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The dermlens command: one file per group of subcommands. */
#ifndef DL_CLI_H
#define DL_CLI_H

#include "dermlens.h"
#include <glib.h>

#define DL_DISCLAIMER "Research/teaching aid - not a medical device, not a diagnosis."

/* Resolve the model path: explicit, else $DERMLENS_MODEL, else the shipped
 * lesion model, else the ImageNet model. Returned string is static/borrowed. */
const char *cli_default_model(const char *explicit_path);
/* Load a model, printing a clear error on failure. */
dl_model *cli_load_model(const char *path);
/* Terminal progress bar on stderr (only when stderr is a tty, else silent). */
int cli_progress(void *user, double fraction, const char *stage);
void cli_set_threads(int n);

int cmd_classify(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_import(int argc, char **argv);
#endif
