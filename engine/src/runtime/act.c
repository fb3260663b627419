/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Activations: names and the forward pass. Split out of ops.c so that the
 * kernels (kernel_gemm.c, kernel_dw.c) and ops.c all call down into this
 * file and none calls back up: ops.c -> kernel_*.c -> act.c. The backward
 * pass (dl_act_backward) is in ops_backward.c. */
#include "runtime/ops.h"

#include <math.h>
#include <string.h>

static const char *const act_names[] = {"none", "relu", "relu6", "hswish", "silu", "sigmoid", "hsigmoid"};
#define N_ACTS ((int)(sizeof act_names / sizeof act_names[0]))

const char *dl_act_name(dl_act a)
{
    return (unsigned)a < (unsigned)N_ACTS ? act_names[a] : "?";
}

int dl_act_from_name(const char *name)
{
    for (int i = 0; i < N_ACTS; i++)
        if (strcmp(name, act_names[i]) == 0) return i;
    return -1;
}

int dl_act_is_post(dl_act a)
{
    return a == DL_ACT_SIGMOID || a == DL_ACT_HSIGMOID;
}

DL_CLONES
void dl_act_forward(dl_act a, float *x, size_t n)
{
    switch (a) {
    case DL_ACT_NONE: break;
    case DL_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
    case DL_ACT_RELU6:
        for (size_t i = 0; i < n; i++) {
            float v = x[i] > 0.f ? x[i] : 0.f;
            x[i] = v < 6.f ? v : 6.f;
        }
        break;
    case DL_ACT_HSWISH:
        for (size_t i = 0; i < n; i++) {
            float r = x[i] + 3.f;
            r = r > 0.f ? (r < 6.f ? r : 6.f) : 0.f;
            x[i] = x[i] * r * (1.f / 6.f);
        }
        break;
    case DL_ACT_SILU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.f + expf(-x[i]));
        break;
    case DL_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) {
            /* overflow-free on both sides */
            if (x[i] >= 0.f) {
                x[i] = 1.f / (1.f + expf(-x[i]));
            } else {
                float e = expf(x[i]);
                x[i] = e / (1.f + e);
            }
        }
        break;
    case DL_ACT_HSIGMOID:
        for (size_t i = 0; i < n; i++) {
            float r = x[i] + 3.f;
            r = r > 0.f ? (r < 6.f ? r : 6.f) : 0.f;
            x[i] = r * (1.f / 6.f);
        }
        break;
    }
}
