/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "testutil.h"
#include "dermlens_test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int tu_failures = 0;

static const char *join(const char *env, const char *fallback, const char *rel)
{
    static char buf[8][4096];
    static int slot = 0;
    const char *base = getenv(env);
    if (!base || !*base) base = fallback;
    char *b = buf[slot++ & 7];
    snprintf(b, 4096, "%s/%s", base, rel);
    return b;
}

const char *tu_shared(const char *rel)
{
    const char *p = join("DL_SHARED_DIR", "../shared", rel);
    struct stat st;
    return stat(p, &st) == 0 ? p : NULL;
}

const char *tu_source(const char *rel)
{
    return join("DL_SOURCE_ROOT", "..", rel);
}

float tu_rand(uint64_t *s, float lo, float hi)
{
    /* 24 bits: exact in float, so the value stays below hi */
    return lo + (hi - lo) * ((float)(dl_rng_next(s) >> 40) / 16777216.f);
}

int tu_exit(void)
{
    if (tu_failures) fprintf(stderr, "%d check(s) failed\n", tu_failures);
    else printf("all checks passed\n");
    return tu_failures ? 1 : 0;
}

int tu_save_tiny_model(const char *path, int side, int units, const float *w, const float *b, const float *d,
                       const char *act_name, const char *pad, const char *name)
{
    int act = dl_act_from_name(act_name);
    dl_pad_mode pad_mode = !strcmp(pad, "same") ? DL_PAD_SAME : DL_PAD_VALID;
    if (act < 0 || (strcmp(pad, "same") && strcmp(pad, "valid"))) {
        fprintf(stderr, "tu_save_tiny_model: activation '%s', padding '%s'\n", act_name, pad);
        return -1;
    }
    dl_model m;
    memset(&m, 0, sizeof m);
    dl_graph_init(&m.graph);
    dl_error err = {0};
    dl_graph *g = &m.graph;
    dl_node in = dl_node_make(DL_OP_INPUT, "input");
    in.h = side; in.w = side; in.c = 3;
    dl_graph_add_node(g, &in, &err);
    int64_t wd[4] = {units, 1, 1, 3}, bd[1] = {units}, dd[2] = {2, units};
    float *wz = calloc((size_t)units * 3, sizeof *wz), *dz = calloc((size_t)units * 2, sizeof *dz);
    dl_node c = dl_node_make(DL_OP_CONV2D, "conv");
    c.n_inputs = 1; c.inputs[0] = 0; c.units = units; c.act = act; c.pad_mode = pad_mode;
    c.weight = dl_graph_add_tensor(g, "conv.weight", 4, wd, w ? w : wz, &err);
    if (b) c.bias = dl_graph_add_tensor(g, "conv.bias", 1, bd, b, &err);
    dl_graph_add_node(g, &c, &err);
    dl_node p = dl_node_make(DL_OP_GAP, "pool");
    p.n_inputs = 1; p.inputs[0] = 1;
    dl_graph_add_node(g, &p, &err);
    dl_node f = dl_node_make(DL_OP_DENSE, "logits");
    f.n_inputs = 1; f.inputs[0] = 2; f.units = 2;
    f.weight = dl_graph_add_tensor(g, "logits.weight", 2, dd, d ? d : dz, &err);
    dl_graph_add_node(g, &f, &err);
    free(wz);
    free(dz);
    g->features = 2;
    g->output = 3;
    if (dl_graph_infer(g, &err)) { fprintf(stderr, "infer: %s\n", err.message); dl_graph_free(g); return -1; }
    m.pre.width = side; m.pre.height = side;
    strcpy(m.pre.resize, "squash");
    for (int i = 0; i < 3; i++) { m.pre.mean[i] = 127.5f; m.pre.std[i] = 127.5f; }
    char *names[2] = {"a", "b"};
    m.num_classes = 2;
    m.class_names = names;
    m.class_long_names = names;
    m.temperature = 1.f;
    snprintf(m.name, sizeof m.name, "%s", name);
    int rc = dl_model_save(&m, path, &err);
    if (rc) fprintf(stderr, "save: %s\n", err.message);
    dl_graph_free(g);
    return rc;
}
