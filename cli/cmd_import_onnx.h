/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens import MODEL.onnx: ONNX -> DermLens model file (cmd_import_onnx.c). */
#ifndef DL_CMD_IMPORT_ONNX_H
#define DL_CMD_IMPORT_ONNX_H

/* argv[0] is the command name; returns the process exit status
 * (0 done, 1 failed, 2 usage). */
int cmd_import_onnx(int argc, char **argv);

#endif
