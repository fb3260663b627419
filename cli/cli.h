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
int cmd_train(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_robustness(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* Per-image work for cli_run_parallel: runs on a worker thread with that
 * worker's own model; return 0, or -1 with err filled. */
typedef int (*cli_item_fn)(void *user, dl_model *m, int index, dl_error *err);
/* Run fn for index 0..n-1 on `threads` workers (<= 0: all cores); worker 0
 * uses m, the others load their own copy from model_path. Failures are
 * stored as g_strdup'd messages in errors[index] (may be NULL). Shows
 * cli_progress under `stage`. */
int cli_run_parallel(dl_model *m, const char *model_path, int n, int threads, const char *stage,
                     cli_item_fn fn, void *user, char **errors);
/* "dermlens ARGS..." shell-quoted where needed; g_free. */
char *cli_command_line(int argc, char **argv);
#endif
int cmd_ensemble(int argc, char **argv);
