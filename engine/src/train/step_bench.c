/* SPDX-License-Identifier: GPL-3.0-or-later */
/* One whole-network training step, timed alone (dermlens_profile.h): the
 * forward, softmax cross-entropy, backward and dl_train's AdamW on fixed
 * pseudo-random inputs, so bench/ can put it beside PyTorch's step. */
#include "dermlens_profile.h"
#include "infer/infer.h"
#include "runtime/ops.h"
#include "train/optim.h"

#include <stdlib.h>

struct dl_train_step_runner {
    dl_model *m;
    dl_exec e;
    dl_adamw opt;
    int batch, classes;
    float *x, *grad;
    int *labels;
};

void dl_train_step_runner_free(dl_train_step_runner *r)
{
    if (!r) return;
    dl_adamw_free(&r->opt);
    dl_exec_free(&r->e);
    free(r->x);
    free(r->grad);
    free(r->labels);
    free(r);
}

dl_train_step_runner *dl_train_step_runner_new(dl_model *m, int batch, dl_error *err)
{
    if (!m || batch < 1 || batch > 256) {
        dl_fail(err, DL_ERR_ARG, "training step: batch must be 1..256");
        return NULL;
    }
    dl_train_step_runner *r = calloc(1, sizeof *r);
    if (!r) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->m = m;
    r->batch = batch;
    dl_graph *g = &m->graph;
    /* stage 2 with --cut input: every convolution and dense layer trains */
    for (int i = 0; i < g->n_nodes; i++)
        g->nodes[i].trainable = (g->nodes[i].op == DL_OP_CONV2D || g->nodes[i].op == DL_OP_DENSE) &&
                                g->nodes[i].weight >= 0;
    if (dl_exec_init(&r->e, g, batch, err) || dl_exec_enable_backward(&r->e, true, err) ||
        dl_adamw_init(&r->opt, g, err)) {
        dl_train_step_runner_free(r);
        return NULL;
    }
    r->e.training = true;
    r->classes = g->nodes[g->output].c;
    size_t per = dl_node_out_count(&g->nodes[0]), n;
    if (!dl_mul_size(per, (size_t)batch, &n)) {
        dl_fail(err, DL_ERR_LIMIT, "training step: input too large");
        dl_train_step_runner_free(r);
        return NULL;
    }
    r->x = malloc(sizeof(float) * n);
    r->grad = malloc(sizeof(float) * (size_t)r->classes * batch);
    r->labels = malloc(sizeof(int) * batch);
    if (!r->x || !r->grad || !r->labels) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        dl_train_step_runner_free(r);
        return NULL;
    }
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) r->x[i] = 2.f * (float)dl_rng_uniform(&s) - 1.f;
    for (int b = 0; b < batch; b++) r->labels[b] = (b * 7) % r->classes;
    return r;
}

int dl_train_step_runner_run(dl_train_step_runner *r, float *loss, dl_error *err)
{
    dl_graph *g = &r->m->graph;
    if (dl_exec_forward(&r->e, r->x, g->output, err)) return -1;
    float l = dl_softmax_xent(r->batch, r->classes, r->e.act[g->output], r->labels, NULL, 0.1f, r->grad);
    dl_exec_zero_wgrad(&r->e);
    if (dl_exec_backward(&r->e, g->output, r->grad, 1, err)) return -1;
    dl_adamw_step(&r->opt, g, r->e.wgrad, 1e-4f, 1e-4f);
    if (loss) *loss = l;
    return 0;
}
