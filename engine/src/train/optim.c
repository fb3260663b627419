/* SPDX-License-Identifier: GPL-3.0-or-later */
/* AdamW (train/optim.h). */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int dl_adamw_init(dl_adamw *a, const dl_graph *g, dl_error *err)
{
    memset(a, 0, sizeof *a);
    a->tensor = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(int));
    a->m = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(float *));
    a->v = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(float *));
    a->decay = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(bool));
    if (!a->tensor || !a->m || !a->v || !a->decay) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        if (!n->trainable) continue;
        int ts[2] = {n->weight, n->bias};
        for (int k = 0; k < 2; k++) {
            if (ts[k] < 0) continue;
            a->tensor[a->n] = ts[k];
            a->decay[a->n] = k == 0;
            a->m[a->n] = calloc(g->tensors[ts[k]].count, sizeof(float));
            a->v[a->n] = calloc(g->tensors[ts[k]].count, sizeof(float));
            a->n++; /* counted first: dl_adamw_free releases a half-made pair */
            if (!a->m[a->n - 1] || !a->v[a->n - 1]) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
        }
    }
    return 0;
}

void dl_adamw_free(dl_adamw *a)
{
    for (int i = 0; i < a->n; i++) { free(a->m[i]); free(a->v[i]); }
    free(a->m); free(a->v); free(a->tensor); free(a->decay);
    memset(a, 0, sizeof *a);
}

void dl_adamw_step(dl_adamw *a, dl_graph *g, float **wgrad, float lr, float wd)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    a->step++;
    float c1 = 1.f - powf(b1, (float)a->step), c2 = 1.f - powf(b2, (float)a->step);
    for (int i = 0; i < a->n; i++) {
        dl_tensor *t = &g->tensors[a->tensor[i]];
        const float *gr = wgrad[a->tensor[i]];
        float *m = a->m[i], *v = a->v[i], *w = t->data;
        float decay = a->decay[i] ? wd : 0.f;
        for (size_t k = 0; k < t->count; k++) {
            m[k] = b1 * m[k] + (1 - b1) * gr[k];
            v[k] = b2 * v[k] + (1 - b2) * gr[k] * gr[k];
            w[k] -= lr * ((m[k] / c1) / (sqrtf(v[k] / c2) + eps) + decay * w[k]);
        }
    }
}

