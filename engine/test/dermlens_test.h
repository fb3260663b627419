/* DermLens engine: the test-only door to the engine's internals.
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Unit tests, fuzz targets and test drivers check what the public headers
 * do not show: the graph and executor, every kernel at every ISA level, the
 * readers' graphs node by node, the saliency study switches, the classic
 * features' building blocks, the training stream. They include this header
 * (never an engine/src header directly); nothing else may:
 * tests/layers_test.py fails on an includer outside tests/, and meson puts
 * this folder and engine/src on the include path of test executables only
 * (engine_test_inc). Front ends (cli/, plugin/, bench/) use the public
 * headers in engine/include.
 */
#ifndef DERMLENS_TEST_H
#define DERMLENS_TEST_H

#include "dermlens.h"
#include "dermlens_eval.h"
#include "dermlens_io.h"

#include "base/base.h"
#include "runtime/kernel.h"
#include "runtime/runtime.h"
#include "formats/formats.h"
#include "formats/onnx_import.h"
#include "infer/infer.h"
#include "eval/eval.h"
#include "train/augment.h"

#endif
