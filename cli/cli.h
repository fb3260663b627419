/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The dermlens command: one file per group of subcommands. */
#ifndef DL_CLI_H
#define DL_CLI_H

#include "dermlens.h"
#include "dermlens_io.h"
#include <glib.h>

#define DL_DISCLAIMER "Research/teaching aid - not a medical device, not a diagnosis."

/* Resolve the model path: explicit (even ""), else the one model search of
 * host/ (dh_model_find: $DERMLENS_MODEL, user data folder, installed data
 * folder, source tree). Returned string is static/borrowed. */
const char *cli_default_model(const char *explicit_path);
/* Load a model, printing a clear error on failure. */
dl_model *cli_load_model(const char *path);
/* Terminal progress bar on stderr (only when stderr is a tty, else silent). */
int cli_progress(void *user, double fraction, const char *stage);
void cli_set_threads(int n);
/* s made printable (dl_text_sanitize): valid UTF-8, control characters as
 * \xNN. The string lives until eight more calls; never NULL. */
const char *cli_disp(const char *s);
/* "dermlens CMD: PATH: MESSAGE" on stderr, sanitized, without repeating PATH
 * when the message already starts with it. */
void cli_file_error(const char *cmd, const char *path, const char *message);
/* Parse --threads: an integer 1..DL_MAX_THREADS (NULL: default, *out = 0).
 * Prints the error and returns -1 otherwise. */
int cli_parse_threads(const char *cmd, const char *s, int *out);
/* An output path given on the command line: refuses what dl_output_check
 * refuses (prints the message). */
int cli_check_output(const char *cmd, const char *path);
/* Every command's minimum image size: 0, or -1 with err filled. */
int cli_check_region(const dl_image *img, dl_error *err);
/* Remove temp files of atomic writes on SIGINT/SIGTERM/SIGHUP, then die by
 * the signal as before. */
void cli_install_signal_cleanup(void);

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
int cmd_ensemble(int argc, char **argv);
int cmd_adjust(int argc, char **argv);
int cmd_review(int argc, char **argv);

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
