/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The network as a list of nodes in topological order (each node reads only
 * earlier nodes, so cycles cannot be expressed) plus the weight tensors. */
#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[DL_OP_COUNT] = {
    "input", "conv2d", "add", "avgpool", "maxpool", "global_avgpool", "dense", "softmax", "pad",
    "dropout", "mul", "concat"};

const char *dl_op_name(dl_op op)
{
    return (unsigned)op < DL_OP_COUNT ? op_names[op] : "?";
}

int dl_op_from_name(const char *name)
{
    for (int i = 0; i < DL_OP_COUNT; i++)
        if (strcmp(name, op_names[i]) == 0) return i;
    return -1;
}

void dl_graph_init(dl_graph *g)
{
    memset(g, 0, sizeof *g);
    g->output = -1;
    g->features = -1;
}

void dl_graph_free(dl_graph *g)
{
    for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i].data);
    free(g->tensors);
    free(g->nodes);
    dl_graph_init(g);
}

int dl_graph_add_tensor(dl_graph *g, const char *name, int ndim, const int64_t *dims,
                        const float *data, dl_error *err)
{
    if (ndim < 1 || ndim > 4) return dl_fail(err, DL_ERR_FORMAT, "tensor %s: rank %d not in 1..4", name, ndim);
    if (strlen(name) >= DL_NAME_MAX) return dl_fail(err, DL_ERR_FORMAT, "tensor name too long: %.40s...", name);
    if (dl_graph_find_tensor(g, name) >= 0) return dl_fail(err, DL_ERR_FORMAT, "tensor %s: duplicate name", name);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1 || dims[i] > (int64_t)1 << 31)
            return dl_fail(err, DL_ERR_FORMAT, "tensor %s: dimension %d is %lld", name, i, (long long)dims[i]);
        if (!dl_mul_size(count, (size_t)dims[i], &count) || count > (size_t)DL_MAX_MODEL_BYTES / 4)
            return dl_fail(err, DL_ERR_LIMIT, "tensor %s: element count overflows the limit", name);
    }
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? g->cap_tensors * 2 : 64;
        dl_tensor *t = realloc(g->tensors, sizeof *t * cap);
        if (!t) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
        g->tensors = t;
        g->cap_tensors = cap;
    }
    float *buf = NULL;
    if (posix_memalign((void **)&buf, 64, count * sizeof(float)) != 0)
        return dl_fail(err, DL_ERR_NOMEM, "tensor %s: cannot allocate %zu floats", name, count);
    if (data) memcpy(buf, data, count * sizeof(float));
    else memset(buf, 0, count * sizeof(float));
    dl_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
    t->count = count;
    t->data = buf;
    return g->n_tensors++;
}

int dl_graph_find_tensor(const dl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return i;
    return -1;
}

int dl_graph_find_node(const dl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

dl_node dl_node_make(dl_op op, const char *name)
{
    dl_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    snprintf(n.name, sizeof n.name, "%s", name);
    n.inputs[0] = n.inputs[1] = -1;
    n.kh = n.kw = n.sh = n.sw = 1;
    n.groups = 1;
    n.weight = n.bias = -1;
    return n;
}

int dl_graph_add_node(dl_graph *g, const dl_node *node, dl_error *err)
{
    if (node->name[0] == '\0') return dl_fail(err, DL_ERR_FORMAT, "node %d: empty name", g->n_nodes);
    if (dl_graph_find_node(g, node->name) >= 0)
        return dl_fail(err, DL_ERR_FORMAT, "node %s: duplicate name", node->name);
    if (g->n_nodes >= 100000) return dl_fail(err, DL_ERR_LIMIT, "too many nodes");
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        dl_node *n = realloc(g->nodes, sizeof *n * cap);
        if (!n) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
        g->nodes = n;
        g->cap_nodes = cap;
    }
    g->nodes[g->n_nodes] = *node;
    return g->n_nodes++;
}

size_t dl_node_out_count(const dl_node *n)
{
    return (size_t)n->h * n->w * n->c;
}

#define MAX_SIDE 65536
#define MAX_KERNEL 64

static int check_weight(const dl_graph *g, const dl_node *n, int idx, const char *field, int ndim,
                        const int64_t *want, dl_error *err)
{
    if (idx < 0 || idx >= g->n_tensors)
        return dl_fail(err, DL_ERR_FORMAT, "node %s: %s tensor missing", n->name, field);
    const dl_tensor *t = &g->tensors[idx];
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->dims[i] == want[i];
    if (!ok) {
        char got[96] = "", exp[96] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->dims[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", i ? "," : "", (long long)want[i]);
        return dl_fail(err, DL_ERR_FORMAT, "node %s: %s tensor %s has shape [%s], expected [%s]", n->name,
                       field, t->name, got, exp);
    }
    return 0;
}

/* Output size of a windowed op; fills n->pad_* for SAME/VALID. */
static int window_out(dl_node *n, int ih, int iw, int *oh, int *ow, dl_error *err)
{
    if (n->kh < 1 || n->kw < 1 || n->kh > MAX_KERNEL || n->kw > MAX_KERNEL)
        return dl_fail(err, DL_ERR_FORMAT, "node %s: kernel %dx%d out of range 1..%d", n->name, n->kh, n->kw, MAX_KERNEL);
    if (n->sh < 1 || n->sw < 1 || n->sh > MAX_KERNEL || n->sw > MAX_KERNEL)
        return dl_fail(err, DL_ERR_FORMAT, "node %s: stride %dx%d out of range", n->name, n->sh, n->sw);
    if (n->pad_mode == DL_PAD_SAME) {
        dl_same_padding(ih, n->kh, n->sh, oh, &n->pad_t, &n->pad_b);
        dl_same_padding(iw, n->kw, n->sw, ow, &n->pad_l, &n->pad_r);
        return 0;
    }
    if (n->pad_mode == DL_PAD_VALID) n->pad_t = n->pad_b = n->pad_l = n->pad_r = 0;
    if (n->pad_t < 0 || n->pad_b < 0 || n->pad_l < 0 || n->pad_r < 0 || n->pad_t >= n->kh ||
        n->pad_b >= n->kh || n->pad_l >= n->kw || n->pad_r >= n->kw)
        return dl_fail(err, DL_ERR_FORMAT, "node %s: padding out of range for kernel", n->name);
    int eh = ih + n->pad_t + n->pad_b - n->kh, ew = iw + n->pad_l + n->pad_r - n->kw;
    if (eh < 0 || ew < 0)
        return dl_fail(err, DL_ERR_FORMAT, "node %s: kernel larger than padded input %dx%d", n->name, ih, iw);
    *oh = eh / n->sh + 1;
    *ow = ew / n->sw + 1;
    return 0;
}

/* Validate node i and compute its output shape (its inputs' are known). */
static int infer_node(dl_graph *g, int i, dl_error *err)
{
    dl_node *n = &g->nodes[i];
    if ((unsigned)n->op >= DL_OP_COUNT) return dl_fail(err, DL_ERR_FORMAT, "node %d: unknown op", i);
    if ((n->op == DL_OP_INPUT) != (i == 0))
        return dl_fail(err, DL_ERR_FORMAT, "node %s: the input must be node 0 and only node 0", n->name);
    if ((unsigned)n->act > DL_ACT_LAST) return dl_fail(err, DL_ERR_FORMAT, "node %s: bad activation", n->name);
    int want_inputs = n->op == DL_OP_INPUT ? 0 : (n->op == DL_OP_ADD || n->op == DL_OP_MUL || n->op == DL_OP_CONCAT) ? 2 : 1;
    if (n->n_inputs != want_inputs)
        return dl_fail(err, DL_ERR_FORMAT, "node %s: op %s takes %d inputs, has %d", n->name,
                       dl_op_name(n->op), want_inputs, n->n_inputs);
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] < 0 || n->inputs[k] >= i)
            return dl_fail(err, DL_ERR_FORMAT,
                           "node %s: input %d refers to a node that is not earlier (cycle or unknown)",
                           n->name, k);
    const dl_node *a = n->n_inputs ? &g->nodes[n->inputs[0]] : NULL;
    int oh = 0, ow = 0;
    switch (n->op) {
    case DL_OP_INPUT:
        if (n->h < 1 || n->w < 1 || n->c < 1 || n->h > MAX_SIDE || n->w > MAX_SIDE || n->c > 4096)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: input shape %dx%dx%d out of range", n->name, n->h, n->w, n->c);
        break;
    case DL_OP_CONV2D: {
        if (n->groups < 1 || n->units < 1 || n->units > 65536 || a->c % n->groups || n->units % n->groups)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: groups %d incompatible with %d -> %d channels",
                           n->name, n->groups, a->c, n->units);
        if (window_out(n, a->h, a->w, &oh, &ow, err)) return -1;
        int64_t wd[4] = {n->units, n->kh, n->kw, a->c / n->groups};
        if (check_weight(g, n, n->weight, "weight", 4, wd, err)) return -1;
        int64_t bd[1] = {n->units};
        if (n->bias >= 0 && check_weight(g, n, n->bias, "bias", 1, bd, err)) return -1;
        n->h = oh; n->w = ow; n->c = n->units;
        break;
    }
    case DL_OP_ADD: {
        const dl_node *b = &g->nodes[n->inputs[1]];
        if (a->h != b->h || a->w != b->w || a->c != b->c)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: add of shapes %dx%dx%d and %dx%dx%d", n->name,
                           a->h, a->w, a->c, b->h, b->w, b->c);
        n->h = a->h; n->w = a->w; n->c = a->c;
        break;
    }
    case DL_OP_MUL: {
        const dl_node *b = &g->nodes[n->inputs[1]];
        if (a->c != b->c || !((a->h == b->h && a->w == b->w) || (b->h == 1 && b->w == 1)))
            return dl_fail(err, DL_ERR_FORMAT,
                           "node %s: mul of shapes %dx%dx%d and %dx%dx%d (the second must match or be 1x1x%d)",
                           n->name, a->h, a->w, a->c, b->h, b->w, b->c, a->c);
        n->h = a->h; n->w = a->w; n->c = a->c;
        break;
    }
    case DL_OP_CONCAT: {
        const dl_node *b = &g->nodes[n->inputs[1]];
        if (a->h != b->h || a->w != b->w)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: concat of shapes %dx%dx%d and %dx%dx%d (H and W must match)",
                           n->name, a->h, a->w, a->c, b->h, b->w, b->c);
        /* a pure copy: nothing to fuse, and the kernels have no epilogue */
        if (n->act != DL_ACT_NONE)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: concat takes no activation", n->name);
        n->h = a->h; n->w = a->w; n->c = a->c + b->c;
        break;
    }
    case DL_OP_AVGPOOL:
    case DL_OP_MAXPOOL:
        if (window_out(n, a->h, a->w, &oh, &ow, err)) return -1;
        n->h = oh; n->w = ow; n->c = a->c;
        break;
    case DL_OP_GAP:
        n->h = 1; n->w = 1; n->c = a->c;
        break;
    case DL_OP_DENSE: {
        int64_t k = (int64_t)a->h * a->w * a->c;
        if (n->units < 1 || n->units > 1 << 20)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: units %d out of range", n->name, n->units);
        int64_t wd[2] = {n->units, k};
        if (check_weight(g, n, n->weight, "weight", 2, wd, err)) return -1;
        int64_t bd[1] = {n->units};
        if (n->bias >= 0 && check_weight(g, n, n->bias, "bias", 1, bd, err)) return -1;
        n->h = 1; n->w = 1; n->c = n->units;
        break;
    }
    case DL_OP_SOFTMAX:
    case DL_OP_DROPOUT:
        if (n->op == DL_OP_DROPOUT && !(n->rate >= 0.f && n->rate < 1.f))
            return dl_fail(err, DL_ERR_FORMAT, "node %s: dropout rate must be in [0,1)", n->name);
        n->h = a->h; n->w = a->w; n->c = a->c;
        break;
    case DL_OP_PAD:
        if (n->pad_t < 0 || n->pad_b < 0 || n->pad_l < 0 || n->pad_r < 0 || n->pad_t > 4096 ||
            n->pad_b > 4096 || n->pad_l > 4096 || n->pad_r > 4096)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: padding out of range", n->name);
        n->h = a->h + n->pad_t + n->pad_b; n->w = a->w + n->pad_l + n->pad_r; n->c = a->c;
        break;
    default:
        return dl_fail(err, DL_ERR_FORMAT, "node %s: unknown op", n->name);
    }
    if (n->op != DL_OP_CONV2D && n->op != DL_OP_DENSE && (n->weight >= 0 || n->bias >= 0))
        return dl_fail(err, DL_ERR_FORMAT, "node %s: op %s takes no weights", n->name, dl_op_name(n->op));
    if (n->h > MAX_SIDE || n->w > MAX_SIDE || n->c > 1 << 20 ||
        (int64_t)n->h * n->w * n->c > (int64_t)1 << 30)
        return dl_fail(err, DL_ERR_LIMIT, "node %s: output %dx%dx%d too large", n->name, n->h, n->w, n->c);
    return 0;
}

int dl_graph_infer(dl_graph *g, dl_error *err)
{
    if (g->n_nodes < 2) return dl_fail(err, DL_ERR_FORMAT, "graph: needs an input node and at least one op");
    for (int i = 0; i < g->n_nodes; i++)
        if (infer_node(g, i, err)) return -1;
    if (g->output < 0) g->output = g->n_nodes - 1;
    if (g->output >= g->n_nodes) return dl_fail(err, DL_ERR_FORMAT, "graph: output node out of range");
    if (g->features >= g->n_nodes) return dl_fail(err, DL_ERR_FORMAT, "graph: features node out of range");
    return 0;
}

int dl_graph_infer_last(dl_graph *g, dl_error *err)
{
    if (g->n_nodes < 1) return dl_fail(err, DL_ERR_FORMAT, "graph: no nodes");
    return infer_node(g, g->n_nodes - 1, err);
}

int dl_graph_last_spatial_conv(const dl_graph *g)
{
    for (int i = g->n_nodes - 1; i > 0; i--)
        if (g->nodes[i].op == DL_OP_CONV2D && g->nodes[i].h * g->nodes[i].w > 1) return i;
    return -1;
}

double dl_graph_flops(const dl_graph *g)
{
    double f = 0;
    for (int i = 1; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        const dl_node *a = &g->nodes[n->inputs[0]];
        if (n->op == DL_OP_CONV2D)
            f += 2.0 * n->h * n->w * n->c * n->kh * n->kw * (a->c / n->groups);
        else if (n->op == DL_OP_DENSE)
            f += 2.0 * n->c * a->h * a->w * a->c;
    }
    return f;
}
