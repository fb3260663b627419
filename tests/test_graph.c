/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Graph building and shape inference, the executor's whole-graph backward
 * against finite differences (a residual and a concatenating net), and the
 * dataset readers. */
#include "dermlens_test.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t seed = 99;

static int add_conv(dl_graph *g, const char *name, int in, int units, int k, int s, int groups, dl_act act)
{
    dl_error err = {0};
    const dl_node *a = &g->nodes[in];
    char wn[128], bn[128];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    int64_t wd[4] = {units, k, k, a->c / groups}, bd[1] = {units};
    dl_node n = dl_node_make(DL_OP_CONV2D, name);
    n.n_inputs = 1; n.inputs[0] = in; n.units = units; n.kh = n.kw = k; n.sh = n.sw = s;
    n.groups = groups; n.act = act; n.pad_mode = DL_PAD_SAME; n.trainable = true;
    n.weight = dl_graph_add_tensor(g, wn, 4, wd, NULL, &err);
    n.bias = dl_graph_add_tensor(g, bn, 1, bd, NULL, &err);
    for (size_t i = 0; i < g->tensors[n.weight].count; i++) g->tensors[n.weight].data[i] = tu_rand(&seed, -0.5f, 0.5f);
    for (int i = 0; i < units; i++) g->tensors[n.bias].data[i] = tu_rand(&seed, -0.1f, 0.3f);
    int idx = dl_graph_add_node(g, &n, &err);
    /* shapes must be known for the next node */
    dl_graph_infer(g, &err);
    return idx;
}

/* A small residual network like a MobileNetV2 block: conv s2 -> dw -> pw,
 * add, gap, dense. */
static void build(dl_graph *g)
{
    dl_error err = {0};
    dl_graph_init(g);
    dl_node in = dl_node_make(DL_OP_INPUT, "input");
    in.h = 9; in.w = 8; in.c = 3;
    dl_graph_add_node(g, &in, &err);
    int c1 = add_conv(g, "c1", 0, 6, 3, 2, 1, DL_ACT_RELU6);
    int dw = add_conv(g, "dw", c1, 6, 3, 1, 6, DL_ACT_HSWISH);
    int pw = add_conv(g, "pw", dw, 6, 1, 1, 1, DL_ACT_NONE);
    dl_node add = dl_node_make(DL_OP_ADD, "add");
    add.n_inputs = 2; add.inputs[0] = c1; add.inputs[1] = pw; add.act = DL_ACT_SILU;
    int a = dl_graph_add_node(g, &add, &err);
    dl_node gap = dl_node_make(DL_OP_GAP, "gap");
    gap.n_inputs = 1; gap.inputs[0] = a;
    int p = dl_graph_add_node(g, &gap, &err);
    int64_t dd[2] = {4, 6}, db[1] = {4};
    dl_node fc = dl_node_make(DL_OP_DENSE, "fc");
    fc.n_inputs = 1; fc.inputs[0] = p; fc.units = 4; fc.trainable = true;
    fc.weight = dl_graph_add_tensor(g, "fc.weight", 2, dd, NULL, &err);
    fc.bias = dl_graph_add_tensor(g, "fc.bias", 1, db, NULL, &err);
    for (size_t i = 0; i < 24; i++) g->tensors[fc.weight].data[i] = tu_rand(&seed, -1, 1);
    g->output = dl_graph_add_node(g, &fc, &err); /* add_conv's infer calls picked a provisional output */
    g->features = p;
    CHECK(dl_graph_infer(g, &err) == 0, "infer: %s", err.message);
}

static int add_concat(dl_graph *g, const char *name, int a, int b)
{
    dl_error err = {0};
    dl_node n = dl_node_make(DL_OP_CONCAT, name);
    n.n_inputs = 2; n.inputs[0] = a; n.inputs[1] = b;
    int idx = dl_graph_add_node(g, &n, &err);
    dl_graph_infer(g, &err);
    return idx;
}

/* DenseNet-like: every block concatenates its input with its new features;
 * one value read twice by the same concat. */
static void build_concat(dl_graph *g)
{
    dl_error err = {0};
    dl_graph_init(g);
    dl_node in = dl_node_make(DL_OP_INPUT, "input");
    in.h = 9; in.w = 8; in.c = 3;
    dl_graph_add_node(g, &in, &err);
    int c1 = add_conv(g, "c1", 0, 6, 3, 2, 1, DL_ACT_SILU);
    int b1 = add_conv(g, "b1", c1, 4, 1, 1, 1, DL_ACT_SILU);
    int cat1 = add_concat(g, "cat1", c1, b1);
    int b2 = add_conv(g, "b2", cat1, 3, 3, 1, 1, DL_ACT_SILU);
    int cat2 = add_concat(g, "cat2", cat1, b2);
    int twice = add_concat(g, "twice", b2, b2);
    int pw = add_conv(g, "pw", cat2, 5, 1, 1, 1, DL_ACT_NONE);
    int cat3 = add_concat(g, "cat3", pw, twice);
    dl_node gap = dl_node_make(DL_OP_GAP, "gap");
    gap.n_inputs = 1; gap.inputs[0] = cat3;
    int p = dl_graph_add_node(g, &gap, &err);
    int64_t dd[2] = {4, 11}, db[1] = {4};
    dl_node fc = dl_node_make(DL_OP_DENSE, "fc");
    fc.n_inputs = 1; fc.inputs[0] = p; fc.units = 4; fc.trainable = true;
    fc.weight = dl_graph_add_tensor(g, "fc.weight", 2, dd, NULL, &err);
    fc.bias = dl_graph_add_tensor(g, "fc.bias", 1, db, NULL, &err);
    for (size_t i = 0; i < 44; i++) g->tensors[fc.weight].data[i] = tu_rand(&seed, -1, 1);
    g->output = dl_graph_add_node(g, &fc, &err);
    g->features = p;
    CHECK(dl_graph_infer(g, &err) == 0, "infer: %s", err.message);
    CHECK(g->nodes[cat2].c == 13 && g->nodes[twice].c == 6 && g->nodes[cat3].h == 5 && g->nodes[cat3].w == 4,
          "concat shapes %d %d %dx%d", g->nodes[cat2].c, g->nodes[twice].c, g->nodes[cat3].h, g->nodes[cat3].w);
}

static double loss_of(dl_exec *e, const float *x, const float *r)
{
    dl_error err = {0};
    dl_exec_forward(e, x, -1, &err);
    const dl_node *o = &e->g->nodes[e->g->output];
    double s = 0;
    for (size_t i = 0; i < dl_node_out_count(o) * e->batch; i++) s += e->act[e->g->output][i] * r[i];
    return s;
}

static void test_backward(void (*builder)(dl_graph *), const char *what)
{
    dl_graph g;
    builder(&g);
    printf("%s:\n", what);
    CHECK(g.nodes[1].h == 5 && g.nodes[1].w == 4, "SAME stride 2 on 9x8 -> %dx%d", g.nodes[1].h, g.nodes[1].w);
    dl_exec e;
    dl_error err = {0};
    CHECK(dl_exec_init(&e, &g, 2, &err) == 0 && dl_exec_enable_backward(&e, true, &err) == 0, "%s", err.message);
    size_t in_n = 9 * 8 * 3 * 2;
    float *x = malloc(sizeof(float) * in_n), r[8];
    for (size_t i = 0; i < in_n; i++) x[i] = tu_rand(&seed, -1, 1);
    for (int i = 0; i < 8; i++) r[i] = tu_rand(&seed, -1, 1);
    loss_of(&e, x, r);
    dl_exec_zero_wgrad(&e);
    CHECK(dl_exec_backward(&e, g.output, r, 0, &err) == 0, "%s", err.message);
    /* input gradient vs central differences */
    float *gin = malloc(sizeof(float) * in_n);
    memcpy(gin, e.grad[0], sizeof(float) * in_n);
    double worst = 0;
    const float h = 2e-3f;
    for (size_t i = 0; i < in_n; i += 7) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = loss_of(&e, x, r);
        x[i] = keep - h;
        double lm = loss_of(&e, x, r);
        x[i] = keep;
        double num = (lp - lm) / (2 * h);
        worst = fmax(worst, fabs(num - gin[i]) / fmax(1e-2, fabs(num) + fabs(gin[i])));
    }
    printf("whole-graph input gradient: worst relative error %.2e\n", worst);
    CHECK(worst < 2e-2, "input gradient off by %g", worst);
    /* a weight gradient of the first conv */
    int wt = g.nodes[1].weight;
    float *gw = malloc(sizeof(float) * g.tensors[wt].count);
    memcpy(gw, e.wgrad[wt], sizeof(float) * g.tensors[wt].count);
    worst = 0;
    for (size_t i = 0; i < g.tensors[wt].count; i += 5) {
        float *w = &g.tensors[wt].data[i], keep = *w;
        *w = keep + h;
        double lp = loss_of(&e, x, r);
        *w = keep - h;
        double lm = loss_of(&e, x, r);
        *w = keep;
        double num = (lp - lm) / (2 * h);
        worst = fmax(worst, fabs(num - gw[i]) / fmax(1e-2, fabs(num) + fabs(gw[i])));
    }
    printf("whole-graph conv weight gradient: worst relative error %.2e\n", worst);
    CHECK(worst < 2e-2, "weight gradient off by %g", worst);
    free(gw); free(gin); free(x);
    dl_exec_free(&e);
    dl_graph_free(&g);
}

static void test_infer_errors(void)
{
    dl_graph g;
    dl_error err = {0};
    build(&g);
    g.nodes[4].inputs[1] = 5; /* add reads a later node */
    CHECK(dl_graph_infer(&g, &err) == -1 && strstr(err.message, "cycle"), "forward reference: %s", err.message);
    dl_graph_free(&g);
    build(&g);
    g.nodes[4].inputs[1] = 0; /* add of 5x4x6 and 9x8x3 */
    CHECK(dl_graph_infer(&g, &err) == -1 && strstr(err.message, "add of shapes"), "add shapes: %s", err.message);
    dl_graph_free(&g);
    build(&g);
    g.nodes[2].groups = 4; /* 6 channels in 4 groups */
    CHECK(dl_graph_infer(&g, &err) == -1 && strstr(err.message, "groups"), "groups: %s", err.message);
    dl_graph_free(&g);
    build(&g);
    g.nodes[3].op = DL_OP_INPUT;
    CHECK(dl_graph_infer(&g, &err) == -1 && strstr(err.message, "input"), "second input: %s", err.message);
    dl_graph_free(&g);
    build_concat(&g);
    g.nodes[3].inputs[0] = 0; /* concat of 9x8x3 and 5x4x4 */
    CHECK(dl_graph_infer(&g, &err) == -1 && strstr(err.message, "concat of shapes"), "concat shapes: %s", err.message);
    dl_graph_free(&g);
    build_concat(&g);
    g.nodes[3].act = DL_ACT_RELU;
    CHECK(dl_graph_infer(&g, &err) == -1 && strstr(err.message, "no activation"), "concat act: %s", err.message);
    dl_graph_free(&g);
    build_concat(&g);
    g.nodes[3].n_inputs = 1;
    CHECK(dl_graph_infer(&g, &err) == -1 && strstr(err.message, "takes 2 inputs"), "concat inputs: %s", err.message);
    dl_graph_free(&g);
}

static void test_datasets(void)
{
    dl_dataset ds;
    dl_error err = {0};
    CHECK(dl_dataset_open(tu_source("tests/data/sample"), NULL, &ds, &err) == 0, "%s", err.message);
    CHECK(ds.n == 21 && ds.n_classes == 7 && !strcmp(ds.class_names[4], "mel"), "dir: %d images %d classes", ds.n, ds.n_classes);
    dl_dataset_free(&ds);
    CHECK(dl_dataset_open(tu_source("tests/data/sample/labels.csv"), NULL, &ds, &err) == 0, "%s", err.message);
    CHECK(ds.n == 21 && ds.groups[0] && !strncmp(ds.groups[0], "HAM_", 4), "csv: %d images, group %s", ds.n, ds.groups[0] ? ds.groups[0] : "-");
    dl_dataset_free(&ds);
    const char *three[] = {"mel", "nv", "bkl"};
    dl_dataset_options o = {.class_order = three, .n_class_order = 3, .allow_subset = 1};
    CHECK(dl_dataset_open(tu_source("tests/data/sample"), &o, &ds, &err) == 0 && ds.n == 9 && ds.labels[0] == 2,
          "subset: %d %s", ds.n, err.message);
    dl_dataset_free(&ds);
    o.allow_subset = 0;
    CHECK(dl_dataset_open(tu_source("tests/data/sample"), &o, &ds, &err) == -1 && strstr(err.message, "akiec"),
          "unknown class not named: %s", err.message);
    const char *csv = "image_id,split,class,ham10000_class,path\nA,test,melanoma,mel,a.jpg\nB,train,nevus,nv,b.jpg\nC,test,nevus,nv,\"c,1.jpg\"\n";
    dl_dataset_options s = {.split = "test"};
    CHECK(dl_dataset_parse_csv(csv, strlen(csv), "/d", &s, &ds, &err) == 0, "%s", err.message);
    CHECK(ds.n == 2 && !strcmp(ds.class_names[0], "mel") && !strcmp(ds.paths[1], "/d/c,1.jpg"), "split/quotes: n=%d", ds.n);
    dl_dataset_free(&ds);
    const char *bad[] = {"", "path,label\n\"a,mel\n", "x,y\n1,2\n", "path,label\na.jpg\n", "path,label\n,mel\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = dl_dataset_parse_csv(bad[i], strlen(bad[i]), NULL, NULL, &ds, &err);
        CHECK(rc == -1 && err.message[0], "bad csv %zu accepted", i);
        printf("bad csv %zu -> %s\n", i, err.message);
    }
}

int main(void)
{
    test_backward(build, "residual net");
    test_backward(build_concat, "concatenating net");
    test_infer_errors();
    test_datasets();
    return tu_exit();
}
