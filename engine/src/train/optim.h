/* SPDX-License-Identifier: GPL-3.0-or-later */
/* AdamW over a graph's trainable tensors: the optimiser of dl_train, shared
 * with bench/ (one training step timed against PyTorch's). */
#ifndef DL_OPTIM_H
#define DL_OPTIM_H
#include "runtime/runtime.h"

#include <stdbool.h>

typedef struct {
    int n;            /* trainable tensors */
    int *tensor;      /* their indices in the graph */
    float **m, **v;   /* first and second moments, one array per tensor (owned) */
    bool *decay;      /* weights decay, biases do not */
    long step;
} dl_adamw;

/* Moments for every tensor of g's trainable nodes, zeroed. On failure the
 * partly built state is still freed by dl_adamw_free. */
int dl_adamw_init(dl_adamw *a, const dl_graph *g, dl_error *err);
void dl_adamw_free(dl_adamw *a);
/* One step (beta 0.9 / 0.999, eps 1e-8, decoupled weight decay wd on
 * weights only) from wgrad (dl_exec's, indexed by tensor). */
void dl_adamw_step(dl_adamw *a, dl_graph *g, float **wgrad, float lr, float wd);
#endif
