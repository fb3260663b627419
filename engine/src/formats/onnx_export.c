/* SPDX-License-Identifier: GPL-3.0-or-later */
/* ONNX export: the model's graph (backbone and head, up to the logits) as an
 * ONNX ModelProto, opset 13, written as protobuf by hand (no protobuf
 * library: varints, length-delimited fields, fixed32 floats).
 *
 * Conventions of the exported file:
 *  - input  "input": float32 [N, C, H, W] (NCHW), ALREADY PREPROCESSED, i.e.
 *    x = (pixel - mean) / std per RGB channel (mean/std are recorded in the
 *    metadata_props "dermlens.preprocess"); N is symbolic.
 *  - output "logits": float32 [N, K], raw logits (no temperature, no softmax).
 *  - weights OHWI are transposed to OIHW; depthwise is Conv with group=C;
 *    TF-SAME asymmetric padding becomes explicit Conv pads [t, l, b, r];
 *    relu6 = Clip(x, 0, 6); hswish = x * HardSigmoid(x; 1/6, 1/2) (HardSwish
 *    only exists from opset 14); silu = x * Sigmoid(x); dropout is omitted;
 *    dense = Flatten (in HWC order, as DermLens flattens) + Gemm(transB=1).
 */
#include "formats/formats.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ONNX_IR_VERSION 7 /* IR of opset 13 (2020) */
#define ONNX_OPSET 13
/* protobuf messages are limited to 2 GiB */
#define PB_MAX_BYTES ((size_t)2147483647u)

/* ---------------------------------------------------------------- protobuf */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool bad; /* allocation failure or size limit: checked once at the end */
} pb_buf;

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

static void pb_free(pb_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static bool pb_reserve(pb_buf *b, size_t extra)
{
    size_t need;
    if (b->bad) return false;
    if (!dl_add_size(b->n, extra, &need) || need > PB_MAX_BYTES) {
        b->bad = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > PB_MAX_BYTES / 2 ? PB_MAX_BYTES : cap * 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->bad = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void pb_raw(pb_buf *b, const void *data, size_t len)
{
    if (!pb_reserve(b, len)) return;
    if (len) memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void pb_varint(pb_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t k = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[k++] = byte | (v ? 0x80 : 0);
    } while (v);
    pb_raw(b, tmp, k);
}

static void pb_tag(pb_buf *b, int field, int wt)
{
    pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wt);
}

/* int64 / int32 / enum fields: negative values are 10-byte two's complement. */
static void pb_int(pb_buf *b, int field, int64_t v)
{
    pb_tag(b, field, WT_VARINT);
    pb_varint(b, (uint64_t)v);
}

static void pb_float(pb_buf *b, int field, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff, u >> 24};
    pb_tag(b, field, WT_FIXED32);
    pb_raw(b, le, 4);
}

static void pb_bytes(pb_buf *b, int field, const void *data, size_t len)
{
    pb_tag(b, field, WT_LEN);
    pb_varint(b, len);
    pb_raw(b, data, len);
}

static void pb_str(pb_buf *b, int field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

/* Append sub as an embedded message, then empty sub for reuse. */
static void pb_msg(pb_buf *b, int field, pb_buf *sub)
{
    if (sub->bad) b->bad = true;
    pb_bytes(b, field, sub->p, sub->n);
    sub->n = 0;
}

/* ---------------------------------------------------------------- ONNX fields */

/* ModelProto */
enum { MP_IR_VERSION = 1, MP_PRODUCER_NAME = 2, MP_PRODUCER_VERSION = 3, MP_DOC = 6, MP_GRAPH = 7,
       MP_OPSET = 8, MP_METADATA = 14 };
/* GraphProto */
enum { GP_NODE = 1, GP_NAME = 2, GP_INITIALIZER = 5, GP_DOC = 10, GP_INPUT = 11, GP_OUTPUT = 12 };
/* NodeProto */
enum { NP_INPUT = 1, NP_OUTPUT = 2, NP_NAME = 3, NP_OP_TYPE = 4, NP_ATTRIBUTE = 5 };
/* AttributeProto and its AttributeType values */
enum { AP_NAME = 1, AP_F = 2, AP_I = 3, AP_INTS = 8, AP_TYPE = 20 };
enum { AT_FLOAT = 1, AT_INT = 2, AT_INTS = 7 };
/* TensorProto and DataType values */
enum { TP_DIMS = 1, TP_DATA_TYPE = 2, TP_NAME = 8, TP_RAW_DATA = 9 };
enum { DT_FLOAT = 1, DT_INT64 = 7 };
/* ValueInfoProto / TypeProto / TypeProto.Tensor / TensorShapeProto / Dimension */
enum { VI_NAME = 1, VI_TYPE = 2, TY_TENSOR = 1, TT_ELEM_TYPE = 1, TT_SHAPE = 2, SH_DIM = 1,
       DIM_VALUE = 1, DIM_PARAM = 2 };

/* One node being built: inputs/outputs/attributes collected in sub-buffers. */
typedef struct {
    pb_buf node, attr; /* node fields; scratch for one attribute */
} node_builder;

typedef struct {
    pb_buf graph;       /* GraphProto under construction */
    pb_buf tmp, tmp2;   /* scratch for nested messages */
    node_builder nb;
    int helper;         /* counter for helper value names */
    bool have_clip6;    /* the shared Clip bounds are in the initializers */
    bool *tensor_done;  /* [n_tensors]: already an initializer (shared weights) */
} onnx_ctx;

static void node_begin(onnx_ctx *c, const char *op_type, const char *name)
{
    c->nb.node.n = 0;
    pb_str(&c->nb.node, NP_NAME, name);
    pb_str(&c->nb.node, NP_OP_TYPE, op_type);
}

static void node_in(onnx_ctx *c, const char *v) { pb_str(&c->nb.node, NP_INPUT, v); }
static void node_out(onnx_ctx *c, const char *v) { pb_str(&c->nb.node, NP_OUTPUT, v); }

static void attr_int(onnx_ctx *c, const char *name, int64_t v)
{
    pb_buf *a = &c->nb.attr;
    pb_str(a, AP_NAME, name);
    pb_int(a, AP_I, v);
    pb_int(a, AP_TYPE, AT_INT);
    pb_msg(&c->nb.node, NP_ATTRIBUTE, a);
}

static void attr_float(onnx_ctx *c, const char *name, float v)
{
    pb_buf *a = &c->nb.attr;
    pb_str(a, AP_NAME, name);
    pb_float(a, AP_F, v);
    pb_int(a, AP_TYPE, AT_FLOAT);
    pb_msg(&c->nb.node, NP_ATTRIBUTE, a);
}

static void attr_ints(onnx_ctx *c, const char *name, const int64_t *v, int n)
{
    pb_buf *a = &c->nb.attr;
    pb_str(a, AP_NAME, name);
    for (int i = 0; i < n; i++) pb_int(a, AP_INTS, v[i]); /* unpacked: accepted by every reader */
    pb_int(a, AP_TYPE, AT_INTS);
    pb_msg(&c->nb.node, NP_ATTRIBUTE, a);
}

static void node_end(onnx_ctx *c)
{
    pb_msg(&c->graph, GP_NODE, &c->nb.node);
}

/* Initializer: float tensor from data (converted to little-endian), or int64. */
static void add_init_f32(onnx_ctx *c, const char *name, const int64_t *dims, int ndim, const float *data,
                         size_t count)
{
    pb_buf *t = &c->tmp;
    t->n = 0;
    for (int i = 0; i < ndim; i++) pb_int(t, TP_DIMS, dims[i]);
    pb_int(t, TP_DATA_TYPE, DT_FLOAT);
    pb_str(t, TP_NAME, name);
    size_t bytes;
    if (!dl_mul_size(count, 4, &bytes)) {
        t->bad = true;
        return;
    }
    pb_tag(t, TP_RAW_DATA, WT_LEN);
    pb_varint(t, bytes);
    if (!pb_reserve(t, bytes)) return;
    uint8_t *o = t->p + t->n;
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        o[4 * i] = u & 0xff;
        o[4 * i + 1] = (u >> 8) & 0xff;
        o[4 * i + 2] = (u >> 16) & 0xff;
        o[4 * i + 3] = u >> 24;
    }
    t->n += bytes;
    pb_msg(&c->graph, GP_INITIALIZER, t);
}

static void add_init_i64(onnx_ctx *c, const char *name, const int64_t *vals, int count)
{
    pb_buf *t = &c->tmp;
    if (count < 0 || count > 16) {
        c->graph.bad = true;
        return;
    }
    t->n = 0;
    pb_int(t, TP_DIMS, count);
    pb_int(t, TP_DATA_TYPE, DT_INT64);
    pb_str(t, TP_NAME, name);
    uint8_t raw[8 * 16];
    for (int i = 0; i < count && i < 16; i++)
        for (int k = 0; k < 8; k++) raw[8 * i + k] = (uint8_t)((uint64_t)vals[i] >> (8 * k));
    pb_bytes(t, TP_RAW_DATA, raw, 8 * (size_t)count);
    pb_msg(&c->graph, GP_INITIALIZER, t);
}

/* ValueInfoProto for a float tensor [N, dims...] with N symbolic. */
static void add_value_info(onnx_ctx *c, int field, const char *name, const int64_t *dims, int ndim)
{
    pb_buf *shape = &c->tmp2, *vi = &c->tmp;
    pb_buf dim = {0}, tt = {0};
    shape->n = vi->n = 0;
    pb_str(&dim, DIM_PARAM, "N");
    pb_msg(shape, SH_DIM, &dim);
    for (int i = 0; i < ndim; i++) {
        pb_int(&dim, DIM_VALUE, dims[i]);
        pb_msg(shape, SH_DIM, &dim);
    }
    pb_int(&tt, TT_ELEM_TYPE, DT_FLOAT);
    pb_msg(&tt, TT_SHAPE, shape);
    pb_msg(shape, TY_TENSOR, &tt); /* shape buffer reused as the TypeProto */
    pb_str(vi, VI_NAME, name);
    pb_msg(vi, VI_TYPE, shape);
    pb_msg(&c->graph, field, vi);
    if (dim.bad || tt.bad) c->graph.bad = true;
    pb_free(&dim);
    pb_free(&tt);
}

/* ---------------------------------------------------------------- graph */

typedef struct {
    char *name;  /* ONNX value holding this node's output (malloc'd) */
    int rank;    /* 4: NCHW, 2: [N, C] */
} value;

static char *fmt_name(const char *base, const char *suffix)
{
    size_t len = strlen(base) + strlen(suffix) + 2;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s%s", base, suffix);
    return s;
}

/* Emit activation a from value in to value out (a != NONE). */
static void emit_act(onnx_ctx *c, dl_act a, const char *nname, const char *in, const char *out)
{
    char hname[DL_NAME_MAX + 16], hval[DL_NAME_MAX + 16], aname[DL_NAME_MAX + 16];
    snprintf(aname, sizeof aname, "%s#act", nname); /* node names stay unique */
    switch (a) {
    case DL_ACT_RELU:
        node_begin(c, "Relu", aname);
        node_in(c, in);
        node_out(c, out);
        node_end(c);
        break;
    case DL_ACT_RELU6:
        if (!c->have_clip6) {
            float lo = 0.f, hi = 6.f;
            add_init_f32(c, "dermlens.relu6.min", NULL, 0, &lo, 1);
            add_init_f32(c, "dermlens.relu6.max", NULL, 0, &hi, 1);
            c->have_clip6 = true;
        }
        node_begin(c, "Clip", aname);
        node_in(c, in);
        node_in(c, "dermlens.relu6.min");
        node_in(c, "dermlens.relu6.max");
        node_out(c, out);
        node_end(c);
        break;
    case DL_ACT_HSWISH:
    case DL_ACT_SILU:
        /* x * gate(x); hswish's gate is relu6(x + 3) / 6 = HardSigmoid(1/6, 1/2) */
        snprintf(hname, sizeof hname, "%s#gate", nname);
        snprintf(hval, sizeof hval, "%s#gate%d", nname, c->helper++);
        if (a == DL_ACT_HSWISH) {
            node_begin(c, "HardSigmoid", hname);
            attr_float(c, "alpha", 1.f / 6.f);
            attr_float(c, "beta", 0.5f);
        } else {
            node_begin(c, "Sigmoid", hname);
        }
        node_in(c, in);
        node_out(c, hval);
        node_end(c);
        node_begin(c, "Mul", aname);
        node_in(c, in);
        node_in(c, hval);
        node_out(c, out);
        node_end(c);
        break;
    case DL_ACT_SIGMOID:
        node_begin(c, "Sigmoid", aname);
        node_in(c, in);
        node_out(c, out);
        node_end(c);
        break;
    case DL_ACT_HSIGMOID:
        node_begin(c, "HardSigmoid", aname);
        attr_float(c, "alpha", 1.f / 6.f);
        attr_float(c, "beta", 0.5f);
        node_in(c, in);
        node_out(c, out);
        node_end(c);
        break;
    default:
        break;
    }
}

/* Tensor ti (dense weight or any bias: same layout in ONNX) as an initializer,
 * once even if several nodes share it; ti < 0: none. */
static void add_tensor_once(onnx_ctx *c, const dl_graph *g, int ti, int ndim)
{
    if (ti < 0 || c->tensor_done[ti]) return;
    const dl_tensor *t = &g->tensors[ti];
    add_init_f32(c, t->name, t->dims, ndim, t->data, t->count);
    c->tensor_done[ti] = true;
}

/* The ONNX node(s) of graph node i. vals[i] is set on success. */
static int emit_node(onnx_ctx *c, const dl_graph *g, int i, value *vals, dl_error *err)
{
    const dl_node *n = &g->nodes[i];
    const dl_node *a = &g->nodes[n->inputs[0]];
    const value *va = &vals[n->inputs[0]];
    bool has_act = (n->op == DL_OP_CONV2D || n->op == DL_OP_ADD || n->op == DL_OP_DENSE || n->op == DL_OP_MUL) &&
                   n->act != DL_ACT_NONE;
    /* the op writes `pre` (its own name, or name#pre when an activation follows) */
    char *pre = has_act ? fmt_name(n->name, "#pre") : strdup(n->name);
    vals[i].name = strdup(n->name);
    vals[i].rank = 4;
    if (!pre || !vals[i].name) {
        free(pre);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    if (n->op != DL_OP_ADD && n->op != DL_OP_MUL && n->op != DL_OP_CONCAT && n->op != DL_OP_DENSE && n->op != DL_OP_SOFTMAX && n->op != DL_OP_DROPOUT &&
        va->rank != 4) {
        free(pre);
        return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: op %s after a dense layer cannot be exported",
                       n->name, dl_op_name(n->op));
    }
    switch (n->op) {
    case DL_OP_CONV2D: {
        const dl_tensor *w = &g->tensors[n->weight];
        int64_t O = n->units, I = a->c / n->groups, KH = n->kh, KW = n->kw;
        float *t = c->tensor_done[n->weight] ? NULL : malloc(w->count * sizeof(float));
        if (!t && !c->tensor_done[n->weight]) {
            free(pre);
            return dl_fail(err, DL_ERR_NOMEM, "out of memory converting %s", w->name);
        }
        if (t) {
            /* OHWI -> OIHW */
            for (int64_t o = 0; o < O; o++)
                for (int64_t y = 0; y < KH; y++)
                    for (int64_t x = 0; x < KW; x++)
                        for (int64_t ci = 0; ci < I; ci++)
                            t[((o * I + ci) * KH + y) * KW + x] = w->data[((o * KH + y) * KW + x) * I + ci];
            int64_t wd[4] = {O, I, KH, KW};
            add_init_f32(c, w->name, wd, 4, t, w->count);
            c->tensor_done[n->weight] = true;
            free(t);
        }
        add_tensor_once(c, g, n->bias, 1);
        node_begin(c, "Conv", n->name);
        node_in(c, va->name);
        node_in(c, w->name);
        if (n->bias >= 0) node_in(c, g->tensors[n->bias].name);
        node_out(c, pre);
        int64_t ks[2] = {KH, KW}, st[2] = {n->sh, n->sw}, dil[2] = {1, 1};
        int64_t pads[4] = {n->pad_t, n->pad_l, n->pad_b, n->pad_r};
        attr_ints(c, "kernel_shape", ks, 2);
        attr_ints(c, "strides", st, 2);
        attr_ints(c, "pads", pads, 4);
        attr_ints(c, "dilations", dil, 2);
        attr_int(c, "group", n->groups);
        node_end(c);
        break;
    }
    case DL_OP_ADD: {
        const value *vb = &vals[n->inputs[1]];
        if (va->rank != vb->rank) {
            free(pre);
            return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: add of a dense and a spatial value", n->name);
        }
        vals[i].rank = va->rank;
        node_begin(c, "Add", n->name);
        node_in(c, va->name);
        node_in(c, vb->name);
        node_out(c, pre);
        node_end(c);
        break;
    }
    case DL_OP_MUL: {
        /* same shape, or [N, C, 1, 1] broadcast over H, W (ONNX broadcasting) */
        const value *vb = &vals[n->inputs[1]];
        if (va->rank != vb->rank) {
            free(pre);
            return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: mul of a dense and a spatial value", n->name);
        }
        vals[i].rank = va->rank;
        node_begin(c, "Mul", n->name);
        node_in(c, va->name);
        node_in(c, vb->name);
        node_out(c, pre);
        node_end(c);
        break;
    }
    case DL_OP_CONCAT: {
        /* NHWC channels = NCHW axis 1, also for [N, C] after a dense layer */
        const value *vb = &vals[n->inputs[1]];
        if (va->rank != vb->rank) {
            free(pre);
            return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: concat of a dense and a spatial value", n->name);
        }
        vals[i].rank = va->rank;
        node_begin(c, "Concat", n->name);
        node_in(c, va->name);
        node_in(c, vb->name);
        node_out(c, pre);
        attr_int(c, "axis", 1);
        node_end(c);
        break;
    }
    case DL_OP_AVGPOOL:
    case DL_OP_MAXPOOL: {
        bool global = n->op == DL_OP_AVGPOOL && n->kh == a->h && n->kw == a->w && n->h == 1 && n->w == 1 &&
                      !n->pad_t && !n->pad_b && !n->pad_l && !n->pad_r;
        if (global) {
            node_begin(c, "GlobalAveragePool", n->name);
        } else {
            node_begin(c, n->op == DL_OP_AVGPOOL ? "AveragePool" : "MaxPool", n->name);
            int64_t ks[2] = {n->kh, n->kw}, st[2] = {n->sh, n->sw};
            int64_t pads[4] = {n->pad_t, n->pad_l, n->pad_b, n->pad_r};
            attr_ints(c, "kernel_shape", ks, 2);
            attr_ints(c, "strides", st, 2);
            attr_ints(c, "pads", pads, 4);
            /* DermLens averages over in-bounds elements only */
            if (n->op == DL_OP_AVGPOOL) attr_int(c, "count_include_pad", 0);
        }
        node_in(c, va->name);
        node_out(c, pre);
        node_end(c);
        break;
    }
    case DL_OP_GAP:
        node_begin(c, "GlobalAveragePool", n->name);
        node_in(c, va->name);
        node_out(c, pre);
        node_end(c);
        break;
    case DL_OP_PAD: {
        char pname[DL_NAME_MAX + 16];
        snprintf(pname, sizeof pname, "%s#pads", n->name);
        int64_t pads[8] = {0, 0, n->pad_t, n->pad_l, 0, 0, n->pad_b, n->pad_r};
        add_init_i64(c, pname, pads, 8);
        node_begin(c, "Pad", n->name);
        node_in(c, va->name);
        node_in(c, pname);
        node_out(c, pre);
        node_end(c);
        break;
    }
    case DL_OP_DENSE: {
        const char *src = va->name;
        char tname[DL_NAME_MAX + 16], fname[DL_NAME_MAX + 16];
        if (va->rank == 4) {
            if (a->h * a->w > 1) {
                /* DermLens flattens HWC: bring channels last first */
                snprintf(tname, sizeof tname, "%s#nhwc", n->name);
                int64_t perm[4] = {0, 2, 3, 1};
                node_begin(c, "Transpose", tname);
                node_in(c, src);
                node_out(c, tname);
                attr_ints(c, "perm", perm, 4);
                node_end(c);
                src = tname;
            }
            snprintf(fname, sizeof fname, "%s#flat", n->name);
            node_begin(c, "Flatten", fname);
            node_in(c, src);
            node_out(c, fname);
            attr_int(c, "axis", 1);
            node_end(c);
            src = fname;
        }
        const dl_tensor *w = &g->tensors[n->weight];
        add_tensor_once(c, g, n->weight, 2);
        add_tensor_once(c, g, n->bias, 1);
        node_begin(c, "Gemm", n->name);
        node_in(c, src);
        node_in(c, w->name);
        if (n->bias >= 0) node_in(c, g->tensors[n->bias].name);
        node_out(c, pre);
        attr_int(c, "transB", 1);
        node_end(c);
        vals[i].rank = 2;
        break;
    }
    case DL_OP_SOFTMAX:
        node_begin(c, "Softmax", n->name);
        node_in(c, va->name);
        node_out(c, pre);
        attr_int(c, "axis", 1); /* channels, in NCHW and in [N, C] */
        node_end(c);
        vals[i].rank = va->rank;
        break;
    case DL_OP_DROPOUT:
        /* identity at inference: reuse the input's value */
        free(vals[i].name);
        vals[i].name = strdup(va->name);
        vals[i].rank = va->rank;
        free(pre);
        return vals[i].name ? 0 : dl_fail(err, DL_ERR_NOMEM, "out of memory");
    default:
        free(pre);
        return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: op %s cannot be exported", n->name,
                       dl_op_name(n->op));
    }
    if (has_act) emit_act(c, n->act, n->name, pre, vals[i].name);
    free(pre);
    return 0;
}

static void add_meta(pb_buf *model, pb_buf *tmp, const char *key, const char *val)
{
    tmp->n = 0;
    pb_str(tmp, 1, key);
    pb_str(tmp, 2, val);
    pb_msg(model, MP_METADATA, tmp);
}

/* Everything a serving user needs besides the weights, as metadata_props. */
static int add_model_meta(const dl_model *m, pb_buf *model, pb_buf *tmp, dl_error *err)
{
    char buf[1024];
    const dl_preprocess *p = &m->pre;
    snprintf(buf, sizeof buf,
             "{\"layout\":\"NCHW\",\"width\":%d,\"height\":%d,\"resize\":\"%s\","
             "\"mean\":[%.9g,%.9g,%.9g],\"std\":[%.9g,%.9g,%.9g],"
             "\"formula\":\"x = (pixel - mean) / std, pixels 0..255 RGB\"}",
             p->width, p->height, p->resize, p->mean[0], p->mean[1], p->mean[2], p->std[0], p->std[1],
             p->std[2]);
    add_meta(model, tmp, "dermlens.preprocess", buf);
    snprintf(buf, sizeof buf, "%.9g", m->temperature);
    add_meta(model, tmp, "dermlens.temperature", buf);
    add_meta(model, tmp, "dermlens.name", m->name);
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->num_classes; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", m->class_names[i]);
        cJSON_AddStringToObject(o, "long_name", m->class_long_names[i]);
    }
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!s) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    add_meta(model, tmp, "dermlens.classes", s);
    free(s);
    return 0;
}

int dl_model_export_onnx(const dl_model *m, const char *path, dl_error *err)
{
    if (!m || !path) return dl_fail(err, DL_ERR_ARG, "export: model and path are required");
    const dl_graph *g = &m->graph;
    if (g->n_nodes < 2 || g->output < 1 || g->output >= g->n_nodes)
        return dl_fail(err, DL_ERR_ARG, "export: model has no output node");
    const dl_node *on = &g->nodes[g->output];
    if (on->h * on->w != 1)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "export: output node %s is %dx%dx%d, expected 1x1xK logits",
                       on->name, on->h, on->w, on->c);
    for (int i = 1; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].name, "input") || !strcmp(g->nodes[i].name, "logits"))
            return dl_fail(err, DL_ERR_UNSUPPORTED,
                           "export: node name '%s' clashes with the ONNX graph's input/output name",
                           g->nodes[i].name);

    int rc = -1;
    onnx_ctx c = {0};
    pb_buf model = {0};
    bool *needed = calloc((size_t)g->n_nodes, sizeof *needed);
    value *vals = calloc((size_t)g->n_nodes, sizeof *vals);
    c.tensor_done = calloc((size_t)g->n_tensors + 1, sizeof *c.tensor_done);
    if (!needed || !vals || !c.tensor_done) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* only what the logits depend on (not e.g. a trailing softmax) */
    needed[g->output] = true;
    for (int i = g->output; i > 0; i--)
        if (needed[i])
            for (int k = 0; k < g->nodes[i].n_inputs; k++) needed[g->nodes[i].inputs[k]] = true;

    pb_str(&c.graph, GP_NAME, m->name[0] ? m->name : "dermlens");
    pb_str(&c.graph, GP_DOC,
           "DermLens export. Input: float32 NCHW [N,3,H,W], already preprocessed: "
           "x = (pixel - mean) / std per RGB channel (see metadata dermlens.preprocess). "
           "Output: raw logits [N,K]; probabilities = softmax(logits / dermlens.temperature).");
    vals[0].name = strdup("input");
    vals[0].rank = 4;
    if (!vals[0].name) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        goto out;
    }
    const dl_node *in = &g->nodes[0];
    int64_t in_dims[3] = {in->c, in->h, in->w};
    add_value_info(&c, GP_INPUT, "input", in_dims, 3);
    for (int i = 1; i <= g->output; i++) {
        if (!needed[i]) continue;
        if (emit_node(&c, g, i, vals, err)) goto out;
        if (c.graph.bad) break;
    }
    node_begin(&c, vals[g->output].rank == 4 ? "Flatten" : "Identity", "logits");
    node_in(&c, vals[g->output].name);
    node_out(&c, "logits");
    if (vals[g->output].rank == 4) attr_int(&c, "axis", 1);
    node_end(&c);
    int64_t out_dims[1] = {on->c};
    add_value_info(&c, GP_OUTPUT, "logits", out_dims, 1);

    pb_int(&model, MP_IR_VERSION, ONNX_IR_VERSION);
    pb_str(&model, MP_PRODUCER_NAME, "DermLens");
    pb_str(&model, MP_PRODUCER_VERSION, DL_VERSION_STRING);
    pb_str(&model, MP_DOC, "Research/teaching aid - not a medical device, not a diagnosis.");
    c.tmp.n = 0;
    pb_int(&c.tmp, 2, ONNX_OPSET); /* OperatorSetIdProto.version; empty domain = ai.onnx */
    pb_msg(&model, MP_OPSET, &c.tmp);
    if (add_model_meta(m, &model, &c.tmp, err)) goto out;
    /* the graph (with the weights) is streamed after the header fields */
    pb_tag(&model, MP_GRAPH, WT_LEN);
    pb_varint(&model, c.graph.n);
    if (c.graph.bad || model.bad || c.tmp.bad || c.tmp2.bad || c.nb.node.bad || c.nb.attr.bad ||
        c.graph.n + model.n > PB_MAX_BYTES) {
        dl_fail(err, DL_ERR_LIMIT, "export: out of memory or model larger than ONNX's 2 GiB limit");
        goto out;
    }
    dl_atomic_file f;
    if (dl_atomic_open(&f, path, err)) goto out;
    if (dl_atomic_write(&f, model.p, model.n, err) || dl_atomic_write(&f, c.graph.p, c.graph.n, err)) {
        dl_atomic_abort(&f);
        goto out;
    }
    rc = dl_atomic_commit(&f, err);
out:
    if (vals)
        for (int i = 0; i < g->n_nodes; i++) free(vals[i].name);
    free(vals);
    free(needed);
    free(c.tensor_done);
    pb_free(&c.graph);
    pb_free(&c.tmp);
    pb_free(&c.tmp2);
    pb_free(&c.nb.node);
    pb_free(&c.nb.attr);
    pb_free(&model);
    return rc;
}
