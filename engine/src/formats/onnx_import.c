/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens engine: ONNX ModelProto (protobuf) -> float32 NHWC graph.
 *
 * The file is untrusted. The protobuf reader below is written for this
 * converter: every varint is at most 10 bytes, every length-delimited field
 * is checked against the bytes left in its enclosing message, field numbers
 * and wire types are checked for the fields we read (unknown fields are
 * skipped after the same checks), groups are refused, nothing recurses (the
 * message nesting is fixed by the code: model > graph > node > attribute >
 * tensor), and every array is sized from counts that were themselves
 * bounded by the bytes they occupy and by fixed limits before allocating.
 *
 * ONNX is NCHW; the engine is NHWC. Each ONNX value computed by the network
 * maps to an engine node; its element order in ONNX is the node's CHW order,
 * so a Flatten of a spatial map followed by Gemm gets its weight columns
 * permuted once, here. Convolution weights OIHW become OHWI; dilated kernels
 * are expanded with zeros; BatchNormalization, per-channel Mul/Add/Sub/Div
 * by constants and activations fold into the producing convolution or dense
 * layer where nothing else reads its output (else a depthwise 1x1 node does
 * the per-channel affine). x * Sigmoid(x) is SiLU, x * HardSigmoid(x) is
 * hard-swish. Concat of N tensors along the channels becomes a chain of
 * N-1 two-input concat nodes, sharing the chain of a common prefix (DenseNet
 * concatenates the growing list of a block's features in every layer). A
 * node is changed in place (folding) only when nothing else reads it, ONNX
 * node or engine node already emitted. A final Softmax / LogSoftmax is
 * dropped: the model outputs logits. Errors name the node, its op type and
 * the opset.
 */
#include "formats/onnx_import.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ limits */

#define OX_MAX_NODES 20000
#define OX_MAX_INITS 200000
#define OX_MAX_GRAPH_IO 200000   /* graph inputs (old IR lists initializers there too) */
#define OX_MAX_OUTPUTS 16
#define OX_MAX_IN 4096           /* inputs of one node (a DenseNet block's Concat) */
#define OX_MAX_IN_TOTAL (1 << 21) /* node inputs summed over the graph */
/* Converted (engine) nodes: a DenseNet-201 needs about 500; each one added
 * looks its name up among the others (quadratic), so this bounds the time
 * a hostile file can cost (0.3 s of CPU at the limit here). */
#define OX_MAX_ENGINE_NODES 10000
#define OX_MAX_OUT 8             /* outputs of one node */
#define OX_MAX_RANK 8
#define OX_MAX_DIM ((int64_t)1 << 31)
#define OX_MAX_ATTR_INTS 16
#define OX_MAX_KERNEL 64
#define OX_MAX_PAD 4096
/* Decoded parameters, in floats (1 GiB), summed over every decoded tensor. */
#define OX_MAX_FLOATS ((size_t)1 << 28)

/* ------------------------------------------------------------ schema facts (onnx.proto) */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };
/* ModelProto */
enum { MP_IR_VERSION = 1, MP_GRAPH = 7, MP_OPSET = 8 };
/* OperatorSetIdProto */
enum { OS_DOMAIN = 1, OS_VERSION = 2 };
/* GraphProto */
enum { GP_NODE = 1, GP_INITIALIZER = 5, GP_INPUT = 11, GP_OUTPUT = 12, GP_SPARSE_INIT = 15 };
/* NodeProto */
enum { NP_INPUT = 1, NP_OUTPUT = 2, NP_NAME = 3, NP_OP_TYPE = 4, NP_ATTRIBUTE = 5, NP_DOMAIN = 7 };
/* AttributeProto */
enum { AP_NAME = 1, AP_F = 2, AP_I = 3, AP_S = 4, AP_T = 5, AP_G = 6, AP_FLOATS = 7, AP_INTS = 8,
       AP_TYPE = 20, AP_REF_ATTR = 21 };
enum { AT_FLOAT = 1, AT_INT = 2, AT_STRING = 3, AT_TENSOR = 4, AT_GRAPH = 5, AT_FLOATS = 6, AT_INTS = 7 };
/* TensorProto */
enum { TP_DIMS = 1, TP_DATA_TYPE = 2, TP_SEGMENT = 3, TP_FLOAT_DATA = 4, TP_INT32_DATA = 5,
       TP_STRING_DATA = 6, TP_INT64_DATA = 7, TP_NAME = 8, TP_RAW_DATA = 9, TP_DOUBLE_DATA = 10,
       TP_EXTERNAL_DATA = 13, TP_DATA_LOCATION = 14 };
enum { DT_FLOAT = 1, DT_INT32 = 6, DT_INT64 = 7, DT_FLOAT16 = 10, DT_DOUBLE = 11 };
/* ValueInfoProto, TypeProto, TypeProto.Tensor, TensorShapeProto(.Dimension) */
enum { VI_NAME = 1, VI_TYPE = 2, TY_TENSOR = 1, TT_ELEM = 1, TT_SHAPE = 2, SH_DIM = 1, DIM_VALUE = 1,
       DIM_PARAM = 2 };

static const char *dtype_name(int64_t t)
{
    static const char *names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32",
                                  "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64",
                                  "COMPLEX64", "COMPLEX128", "BFLOAT16"};
    if (t >= 0 && t < (int64_t)(sizeof names / sizeof names[0])) return names[t];
    return "unknown";
}

/* ------------------------------------------------------------ protobuf reader */

typedef struct {
    const uint8_t *p;
    size_t n;
} pb_span;

typedef struct {
    const uint8_t *p, *end;
} pb_rd;

typedef struct {
    uint32_t num; /* field number */
    int wt;       /* wire type */
    uint64_t v;   /* varint / fixed value */
    pb_span s;    /* length-delimited payload */
    const uint8_t *at; /* where the field's tag starts */
} pb_field;

typedef struct ox_ctx ox_ctx;

static int pb_varint(pb_rd *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1) return -1; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static pb_rd pb_reader(pb_span s)
{
    pb_rd r = {s.p, s.p + s.n};
    return r;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static float f32_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double f64_of(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ------------------------------------------------------------ structures */

typedef struct {
    pb_span msg;   /* the whole TensorProto */
    pb_span name;
    int ndim;
    int64_t dims[OX_MAX_RANK];
    int64_t dtype;
    pb_span raw;
    bool has_raw, external, segment, has_dtype;
    size_t n_float, n_i32, n_i64, n_double; /* elements in the typed repeated fields */
    char location[80];
} ox_tensor;

typedef struct {
    pb_span name;
    int64_t type;
    float f;
    int64_t i;
    pb_span s;
    bool has_t;
    ox_tensor t;
    int n_ints;
    int64_t ints[OX_MAX_ATTR_INTS];
    bool ints_overflow;
    int n_floats;
} ox_attr;

enum { V_NONE = 0, V_INPUT, V_CONST, V_ACT };

typedef struct {
    pb_span name;
    int kind;
    int producer;    /* ONNX node index, -1 */
    int consumers;   /* node inputs reading it (+1 when a graph output) */
    int consumer;    /* the last node reading it */
    /* V_CONST */
    ox_tensor t;
    float *f;        /* decoded floats (owned) */
    size_t nf;
    /* V_ACT: the engine node and the ONNX shape */
    int node;
    int rank;
    int64_t dims[OX_MAX_RANK];
} ox_value;

typedef struct {
    pb_span msg, name, op, domain;
    int n_in, n_out;
    int n_in_file;   /* inputs in the file (only OX_MAX_IN are kept) */
    pb_span *in_names; /* n_in, into ox_ctx.in_names_all */
    int *in;           /* n_in value indices, -1 for an absent optional input */
    pb_span out_names[OX_MAX_OUT];
    int out[OX_MAX_OUT];
    bool skip;       /* absorbed by a later node (the gate of x * sigmoid(x)) */
    dl_act gate_act; /* Mul: x * gate(x) -> this activation of x */
    int gate_src;    /* Mul: the value x */
} ox_node;

struct ox_ctx {
    const uint8_t *base;
    size_t size;
    dl_error *err;
    dl_graph *g;
    int64_t opset;
    int64_t ir_version;
    int n_nodes, n_inits, n_inputs, n_outputs;
    pb_span *init_msgs, *input_msgs, *output_msgs;
    ox_node *nodes;
    int n_values, cap_values;
    ox_value *values;
    int *hash;       /* open addressing, -1 empty */
    size_t hash_cap;
    pb_span *in_names_all; /* every node's input names, one array */
    int *in_all;
    int *uses;       /* per engine node: ONNX consumers still reading it */
    bool *read;      /* per engine node: an emitted engine node reads it */
    int cap_uses;
    int *cat_hash;   /* engine concat nodes by their (a, b) inputs; open addressing, -1 empty */
    size_t cat_cap;
    int n_cat;
    size_t total_floats;
    int cur;         /* node being converted (for messages), -1 */
    int in_h, in_w;  /* requested input size (0: file's) */
};

static void span_str(pb_span s, char *out, size_t cap)
{
    size_t n = s.n < cap - 1 ? s.n : cap - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = s.p[i];
        out[i] = (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    out[n] = '\0';
}

static bool span_eq(pb_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static size_t off_of(const ox_ctx *c, const uint8_t *p) { return (size_t)(p - c->base); }

/* Next field of r: 1 read, 0 end of message, -1 error (message set). */
static int pb_next(ox_ctx *c, pb_rd *r, pb_field *f, const char *what)
{
    if (r->p >= r->end) return 0;
    f->at = r->p;
    uint64_t tag, len;
    if (pb_varint(r, &tag) != 0)
        return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: truncated or overlong field tag at byte %zu", what,
                       off_of(c, f->at));
    f->num = (uint32_t)(tag >> 3);
    f->wt = (int)(tag & 7);
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: invalid field number %llu at byte %zu", what,
                       (unsigned long long)(tag >> 3), off_of(c, f->at));
    f->v = 0;
    f->s.p = NULL;
    f->s.n = 0;
    switch (f->wt) {
    case WT_VARINT:
        if (pb_varint(r, &f->v) != 0)
            return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: field %u: truncated or overlong varint at byte %zu", what,
                           f->num, off_of(c, f->at));
        return 1;
    case WT_I64:
        if ((size_t)(r->end - r->p) < 8)
            return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: field %u: 8-byte value runs past the end at byte %zu",
                           what, f->num, off_of(c, f->at));
        f->v = le64(r->p);
        r->p += 8;
        return 1;
    case WT_I32:
        if ((size_t)(r->end - r->p) < 4)
            return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: field %u: 4-byte value runs past the end at byte %zu",
                           what, f->num, off_of(c, f->at));
        f->v = le32(r->p);
        r->p += 4;
        return 1;
    case WT_LEN:
        if (pb_varint(r, &len) != 0)
            return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: field %u: truncated length at byte %zu", what, f->num,
                           off_of(c, f->at));
        if (len > (uint64_t)(r->end - r->p))
            return dl_fail(c->err, DL_ERR_FORMAT,
                           "onnx: %s: field %u at byte %zu declares %llu bytes, only %zu are left in its message",
                           what, f->num, off_of(c, f->at), (unsigned long long)len, (size_t)(r->end - r->p));
        f->s.p = r->p;
        f->s.n = (size_t)len;
        r->p += len;
        return 1;
    default:
        return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: field %u at byte %zu has wire type %d (%s)", what, f->num,
                       off_of(c, f->at), f->wt, f->wt == 3 || f->wt == 4 ? "groups are not used by ONNX" : "invalid");
    }
}

static const char *wt_name(int wt)
{
    switch (wt) {
    case WT_VARINT: return "varint";
    case WT_I64: return "fixed64";
    case WT_LEN: return "length-delimited";
    case WT_I32: return "fixed32";
    default: return "invalid";
    }
}

static int want_wt(ox_ctx *c, const pb_field *f, int wt, const char *what, const char *field)
{
    if (f->wt == wt) return 0;
    return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: field %s (%u) at byte %zu has wire type %s, expected %s", what,
                   field, f->num, off_of(c, f->at), wt_name(f->wt), wt_name(wt));
}

/* Count the elements of a repeated scalar field given as one occurrence f
 * (packed or not); elem: 0 varint, 4 fixed32, 8 fixed64. */
static int pb_repeated_count(ox_ctx *c, const pb_field *f, int elem, size_t *count, const char *what,
                             const char *field)
{
    int scalar_wt = elem == 0 ? WT_VARINT : elem == 4 ? WT_I32 : WT_I64;
    if (f->wt == scalar_wt) {
        *count = 1;
        return 0;
    }
    if (f->wt != WT_LEN)
        return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: field %s (%u) at byte %zu has wire type %s, expected %s or packed",
                       what, field, f->num, off_of(c, f->at), wt_name(f->wt), wt_name(scalar_wt));
    if (elem) {
        if (f->s.n % (size_t)elem)
            return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: packed field %s is %zu bytes, not a multiple of %d", what,
                           field, f->s.n, elem);
        *count = f->s.n / (size_t)elem;
        return 0;
    }
    size_t n = 0;
    pb_rd r = pb_reader(f->s);
    uint64_t v;
    while (r.p < r.end) {
        if (pb_varint(&r, &v) != 0)
            return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s: packed field %s: truncated varint at byte %zu", what, field,
                           off_of(c, r.p));
        n++;
    }
    *count = n;
    return 0;
}

/* Call fn for each value of repeated varint field f (packed or not). */
typedef int (*pb_int_fn)(void *user, int64_t v);
static int pb_each_varint(ox_ctx *c, const pb_field *f, pb_int_fn fn, void *user)
{
    if (f->wt == WT_VARINT) return fn(user, (int64_t)f->v);
    pb_rd r = pb_reader(f->s);
    uint64_t v;
    while (r.p < r.end) {
        if (pb_varint(&r, &v) != 0)
            return dl_fail(c->err, DL_ERR_FORMAT, "onnx: truncated packed varint at byte %zu", off_of(c, r.p));
        if (fn(user, (int64_t)v) != 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ messages */

static int node_fail(ox_ctx *c, dl_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int node_fail(ox_ctx *c, dl_status code, const char *fmt, ...)
{
    char msg[400], nm[80], op[48], dom[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->cur < 0) return dl_fail(c->err, code, "onnx: %s", msg);
    const ox_node *n = &c->nodes[c->cur];
    span_str(n->name.n ? n->name : (n->n_out ? n->out_names[0] : n->name), nm, sizeof nm);
    span_str(n->op, op, sizeof op);
    span_str(n->domain, dom, sizeof dom);
    return dl_fail(c->err, code, "onnx: node %d '%s' (%s%s%s, opset %lld): %s", c->cur, nm, dom, dom[0] ? "." : "", op,
                   (long long)c->opset, msg);
}

/* ------------------------------------------------------------ tensors */

typedef struct {
    int64_t *dims;
    int n;
    ox_ctx *c;
} dims_acc;

static int dims_add(void *u, int64_t v)
{
    dims_acc *a = u;
    if (a->n >= OX_MAX_RANK)
        return dl_fail(a->c->err, DL_ERR_UNSUPPORTED, "onnx: tensor rank exceeds %d", OX_MAX_RANK);
    if (v < 0 || v > OX_MAX_DIM)
        return dl_fail(a->c->err, DL_ERR_FORMAT, "onnx: tensor dimension %lld out of range", (long long)v);
    a->dims[a->n++] = v;
    return 0;
}

static int parse_tensor(ox_ctx *c, pb_span msg, ox_tensor *t, const char *what)
{
    memset(t, 0, sizeof *t);
    t->msg = msg;
    pb_rd r = pb_reader(msg);
    pb_field f;
    int rc;
    dims_acc da = {t->dims, 0, c};
    while ((rc = pb_next(c, &r, &f, what)) > 0) {
        size_t n = 0;
        switch (f.num) {
        case TP_DIMS:
            if (f.wt != WT_VARINT && f.wt != WT_LEN) return want_wt(c, &f, WT_VARINT, what, "dims");
            if (pb_each_varint(c, &f, dims_add, &da) != 0) return dl_fail_prefix(c->err, "%s: dims", what);
            t->ndim = da.n;
            break;
        case TP_DATA_TYPE:
            if (want_wt(c, &f, WT_VARINT, what, "data_type")) return -1;
            t->dtype = (int64_t)f.v;
            t->has_dtype = true;
            break;
        case TP_SEGMENT: t->segment = true; break;
        case TP_FLOAT_DATA:
            if (pb_repeated_count(c, &f, 4, &n, what, "float_data")) return -1;
            t->n_float += n;
            break;
        case TP_INT32_DATA:
            if (pb_repeated_count(c, &f, 0, &n, what, "int32_data")) return -1;
            t->n_i32 += n;
            break;
        case TP_INT64_DATA:
            if (pb_repeated_count(c, &f, 0, &n, what, "int64_data")) return -1;
            t->n_i64 += n;
            break;
        case TP_DOUBLE_DATA:
            if (pb_repeated_count(c, &f, 8, &n, what, "double_data")) return -1;
            t->n_double += n;
            break;
        case TP_NAME:
            if (want_wt(c, &f, WT_LEN, what, "name")) return -1;
            t->name = f.s;
            break;
        case TP_RAW_DATA:
            if (want_wt(c, &f, WT_LEN, what, "raw_data")) return -1;
            t->raw = f.s;
            t->has_raw = true;
            break;
        case TP_EXTERNAL_DATA: {
            if (want_wt(c, &f, WT_LEN, what, "external_data")) return -1;
            t->external = true;
            /* StringStringEntryProto: key 1, value 2 */
            pb_rd er = pb_reader(f.s);
            pb_field ef;
            pb_span key = {NULL, 0}, val = {NULL, 0};
            int erc;
            while ((erc = pb_next(c, &er, &ef, what)) > 0) {
                if (ef.wt != WT_LEN) continue;
                if (ef.num == 1) key = ef.s;
                else if (ef.num == 2) val = ef.s;
            }
            if (erc < 0) return -1;
            if (span_eq(key, "location")) span_str(val, t->location, sizeof t->location);
            break;
        }
        case TP_DATA_LOCATION:
            if (want_wt(c, &f, WT_VARINT, what, "data_location")) return -1;
            if (f.v == 1) t->external = true;
            break;
        case TP_STRING_DATA:
            if (want_wt(c, &f, WT_LEN, what, "string_data")) return -1;
            break;
        default: break; /* doc_string, uint64_data, metadata_props, ... */
        }
    }
    return rc;
}

static int64_t tensor_count(const ox_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->dims[i] != 0 && n > (int64_t)OX_MAX_FLOATS * 4 / t->dims[i]) return INT64_MAX;
        n *= t->dims[i];
    }
    return n;
}

static void tensor_label(const ox_tensor *t, char *out, size_t cap)
{
    char nm[72];
    span_str(t->name, nm, sizeof nm);
    snprintf(out, cap, "'%s'", nm[0] ? nm : "(unnamed)");
}

static void dims_str(const int64_t *d, int nd, char *out, size_t cap)
{
    size_t k = 0;
    k += (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < nd && k < cap; i++) k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? "," : "", (long long)d[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

/* Walk the typed repeated field `num` of t's message into out (floats). */
static int walk_floats(ox_ctx *c, const ox_tensor *t, uint32_t num, float *out, size_t n)
{
    pb_rd r = pb_reader(t->msg);
    pb_field f;
    size_t k = 0;
    int rc;
    while ((rc = pb_next(c, &r, &f, "tensor")) > 0) {
        if (f.num != num) continue;
        if (num == TP_FLOAT_DATA || num == TP_DOUBLE_DATA) {
            size_t es = num == TP_FLOAT_DATA ? 4 : 8;
            if (f.wt == WT_LEN) {
                for (size_t i = 0; i + es <= f.s.n && k < n; i += es)
                    out[k++] = es == 4 ? f32_of(le32(f.s.p + i)) : (float)f64_of(le64(f.s.p + i));
            } else if (k < n) {
                out[k++] = es == 4 ? f32_of((uint32_t)f.v) : (float)f64_of(f.v);
            }
        } else { /* int32_data holding float16 bit patterns */
            pb_rd pr = f.wt == WT_LEN ? pb_reader(f.s) : (pb_rd){NULL, NULL};
            uint64_t v = f.v;
            do {
                if (f.wt == WT_LEN && pb_varint(&pr, &v) != 0) break;
                if (k < n) out[k++] = dl_half_to_float((uint16_t)(v & 0xffff));
            } while (f.wt == WT_LEN && pr.p < pr.end);
        }
    }
    return rc < 0 ? -1 : 0;
}

/* Decode a float tensor (FLOAT, FLOAT16, DOUBLE; raw_data or typed fields). */
static int tensor_floats(ox_ctx *c, const ox_tensor *t, float **out, size_t *count, const char *role)
{
    char lab[96];
    tensor_label(t, lab, sizeof lab);
    *out = NULL;
    if (t->external)
        return node_fail(c, DL_ERR_UNSUPPORTED,
                         "%s %s: its data is in an external file%s%s%s; DermLens reads only self-contained .onnx files "
                         "(re-save with onnx.save_model(model, path, save_as_external_data=False))",
                         role, lab, t->location[0] ? " ('" : "", t->location, t->location[0] ? "')" : "");
    if (t->segment) return node_fail(c, DL_ERR_UNSUPPORTED, "%s %s: segmented tensors are not supported", role, lab);
    if (t->dtype != DT_FLOAT && t->dtype != DT_FLOAT16 && t->dtype != DT_DOUBLE)
        return node_fail(c, DL_ERR_UNSUPPORTED, "%s %s: data type %s (%lld), expected FLOAT, FLOAT16 or DOUBLE", role,
                         lab, dtype_name(t->dtype), (long long)t->dtype);
    int64_t n64 = tensor_count(t);
    if (n64 == INT64_MAX || (size_t)n64 > OX_MAX_FLOATS - c->total_floats)
        return node_fail(c, DL_ERR_LIMIT, "%s %s: parameters exceed the limit of %zu floats", role, lab, OX_MAX_FLOATS);
    size_t n = (size_t)n64;
    if (n == 0) return node_fail(c, DL_ERR_FORMAT, "%s %s is empty", role, lab);
    size_t esz = t->dtype == DT_FLOAT ? 4 : t->dtype == DT_FLOAT16 ? 2 : 8;
    size_t have;
    if (t->has_raw) {
        if (t->raw.n / esz != n || t->raw.n % esz)
            return node_fail(c, DL_ERR_FORMAT, "%s %s: raw_data is %zu bytes, its shape needs %zu x %zu", role, lab,
                             t->raw.n, n, esz);
    } else {
        have = t->dtype == DT_FLOAT ? t->n_float : t->dtype == DT_FLOAT16 ? t->n_i32 : t->n_double;
        if (have != n)
            return node_fail(c, DL_ERR_FORMAT, "%s %s: %zu values stored, its shape needs %zu", role, lab, have, n);
    }
    float *f = malloc(n * sizeof *f);
    if (!f) return node_fail(c, DL_ERR_NOMEM, "%s %s: out of memory for %zu floats", role, lab, n);
    if (t->has_raw) {
        const uint8_t *p = t->raw.p;
        for (size_t i = 0; i < n; i++)
            f[i] = esz == 4 ? f32_of(le32(p + 4 * i))
                 : esz == 2 ? dl_half_to_float((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)))
                            : (float)f64_of(le64(p + 8 * i));
    } else if (walk_floats(c, t, t->dtype == DT_FLOAT ? TP_FLOAT_DATA : t->dtype == DT_FLOAT16 ? TP_INT32_DATA
                                                                                                 : TP_DOUBLE_DATA,
                           f, n) != 0) {
        free(f);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            free(f);
            return node_fail(c, DL_ERR_FORMAT, "%s %s: value %zu is not finite", role, lab, i);
        }
    c->total_floats += n;
    *out = f;
    *count = n;
    return 0;
}

typedef struct {
    int64_t *out;
    size_t cap, n;
} ints_acc;

static int ints_add(void *u, int64_t v)
{
    ints_acc *a = u;
    if (a->n < a->cap) a->out[a->n] = v;
    a->n++;
    return 0;
}

/* Decode a small integer tensor (INT64 / INT32: shapes, axes, pads). */
static int tensor_ints(ox_ctx *c, const ox_tensor *t, int64_t *out, size_t cap, size_t *count, const char *role)
{
    char lab[96];
    tensor_label(t, lab, sizeof lab);
    if (t->external) return node_fail(c, DL_ERR_UNSUPPORTED, "%s %s: its data is in an external file", role, lab);
    if (t->dtype != DT_INT64 && t->dtype != DT_INT32)
        return node_fail(c, DL_ERR_UNSUPPORTED, "%s %s: data type %s, expected INT64 or INT32", role, lab,
                         dtype_name(t->dtype));
    int64_t n64 = tensor_count(t);
    if (n64 < 0 || (uint64_t)n64 > cap)
        return node_fail(c, DL_ERR_UNSUPPORTED, "%s %s: %lld values, at most %zu expected", role, lab, (long long)n64, cap);
    size_t n = (size_t)n64, esz = t->dtype == DT_INT64 ? 8 : 4;
    if (t->has_raw) {
        if (t->raw.n != n * esz)
            return node_fail(c, DL_ERR_FORMAT, "%s %s: raw_data is %zu bytes, its shape needs %zu x %zu", role, lab,
                             t->raw.n, n, esz);
        for (size_t i = 0; i < n; i++)
            out[i] = esz == 8 ? (int64_t)le64(t->raw.p + 8 * i) : (int64_t)(int32_t)le32(t->raw.p + 4 * i);
    } else {
        size_t have = t->dtype == DT_INT64 ? t->n_i64 : t->n_i32;
        if (have != n) return node_fail(c, DL_ERR_FORMAT, "%s %s: %zu values stored, its shape needs %zu", role, lab, have, n);
        ints_acc a = {out, cap, 0};
        pb_rd r = pb_reader(t->msg);
        pb_field f;
        int rc;
        uint32_t num = t->dtype == DT_INT64 ? TP_INT64_DATA : TP_INT32_DATA;
        while ((rc = pb_next(c, &r, &f, "tensor")) > 0)
            if (f.num == num && pb_each_varint(c, &f, ints_add, &a) != 0) return -1;
        if (rc < 0) return -1;
        if (t->dtype == DT_INT32)
            for (size_t i = 0; i < n; i++) out[i] = (int32_t)out[i];
    }
    *count = n;
    return 0;
}

/* ------------------------------------------------------------ attributes */

static int parse_attr(ox_ctx *c, pb_span msg, ox_attr *a, const char *what)
{
    memset(a, 0, sizeof *a);
    pb_rd r = pb_reader(msg);
    pb_field f;
    int rc;
    ints_acc ia = {a->ints, OX_MAX_ATTR_INTS, 0};
    size_t nf = 0;
    while ((rc = pb_next(c, &r, &f, what)) > 0) {
        switch (f.num) {
        case AP_NAME:
            if (want_wt(c, &f, WT_LEN, what, "name")) return -1;
            a->name = f.s;
            break;
        case AP_TYPE:
            if (want_wt(c, &f, WT_VARINT, what, "type")) return -1;
            a->type = (int64_t)f.v;
            break;
        case AP_F:
            if (want_wt(c, &f, WT_I32, what, "f")) return -1;
            a->f = f32_of((uint32_t)f.v);
            break;
        case AP_I:
            if (want_wt(c, &f, WT_VARINT, what, "i")) return -1;
            a->i = (int64_t)f.v;
            break;
        case AP_S:
            if (want_wt(c, &f, WT_LEN, what, "s")) return -1;
            a->s = f.s;
            break;
        case AP_T:
            if (want_wt(c, &f, WT_LEN, what, "t")) return -1;
            if (parse_tensor(c, f.s, &a->t, what) != 0) return -1;
            a->has_t = true;
            break;
        case AP_INTS:
            if (f.wt != WT_VARINT && f.wt != WT_LEN) return want_wt(c, &f, WT_VARINT, what, "ints");
            if (pb_each_varint(c, &f, ints_add, &ia) != 0) return -1;
            break;
        case AP_FLOATS: {
            size_t n;
            if (pb_repeated_count(c, &f, 4, &n, what, "floats")) return -1;
            nf += n;
            break;
        }
        case AP_G:
        case AP_REF_ATTR:
            if (want_wt(c, &f, WT_LEN, what, f.num == AP_G ? "g" : "ref_attr_name")) return -1;
            break;
        default: break;
        }
    }
    if (rc < 0) return -1;
    a->n_ints = ia.n > OX_MAX_ATTR_INTS ? OX_MAX_ATTR_INTS : (int)ia.n;
    a->ints_overflow = ia.n > OX_MAX_ATTR_INTS;
    a->n_floats = nf > 1000000 ? 1000000 : (int)nf;
    return 0;
}

/* Find attribute `name` of the current node: 1 found, 0 absent, -1 error. */
static int get_attr(ox_ctx *c, const char *name, ox_attr *a)
{
    const ox_node *n = &c->nodes[c->cur];
    pb_rd r = pb_reader(n->msg);
    pb_field f;
    int rc;
    while ((rc = pb_next(c, &r, &f, "node")) > 0) {
        if (f.num != NP_ATTRIBUTE || f.wt != WT_LEN) continue;
        if (parse_attr(c, f.s, a, "attribute") != 0) return -1;
        if (span_eq(a->name, name)) return 1;
    }
    return rc < 0 ? -1 : 0;
}

static int attr_int(ox_ctx *c, const char *name, int64_t def, int64_t *out)
{
    ox_attr a;
    int r = get_attr(c, name, &a);
    if (r < 0) return -1;
    if (r && a.type != AT_INT) return node_fail(c, DL_ERR_FORMAT, "attribute %s: type %lld, expected INT", name, (long long)a.type);
    *out = r ? a.i : def;
    return 0;
}

static int attr_float(ox_ctx *c, const char *name, float def, float *out)
{
    ox_attr a;
    int r = get_attr(c, name, &a);
    if (r < 0) return -1;
    if (r && a.type != AT_FLOAT)
        return node_fail(c, DL_ERR_FORMAT, "attribute %s: type %lld, expected FLOAT", name, (long long)a.type);
    *out = r ? a.f : def;
    if (!isfinite(*out)) return node_fail(c, DL_ERR_FORMAT, "attribute %s is not finite", name);
    return 0;
}

/* Ints attribute: *n = -1 when absent. */
static int attr_ints(ox_ctx *c, const char *name, int64_t *out, int cap, int *n)
{
    ox_attr a;
    int r = get_attr(c, name, &a);
    *n = -1;
    if (r <= 0) return r;
    if (a.type != AT_INTS) return node_fail(c, DL_ERR_FORMAT, "attribute %s: type %lld, expected INTS", name, (long long)a.type);
    if (a.ints_overflow || a.n_ints > cap)
        return node_fail(c, DL_ERR_UNSUPPORTED, "attribute %s: more than %d values", name, cap);
    memcpy(out, a.ints, sizeof(int64_t) * (size_t)a.n_ints);
    *n = a.n_ints;
    return 0;
}

/* String attribute into out ("" when absent). */
static int attr_str(ox_ctx *c, const char *name, char *out, size_t cap)
{
    ox_attr a;
    int r = get_attr(c, name, &a);
    out[0] = '\0';
    if (r <= 0) return r;
    if (a.type != AT_STRING) return node_fail(c, DL_ERR_FORMAT, "attribute %s: type %lld, expected STRING", name, (long long)a.type);
    span_str(a.s, out, cap);
    return 0;
}

/* ------------------------------------------------------------ values */

static uint64_t hash_span(pb_span s)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < s.n; i++) h = (h ^ s.p[i]) * 1099511628211ull;
    return h;
}

static int find_value(const ox_ctx *c, pb_span name)
{
    size_t m = c->hash_cap - 1, i = (size_t)hash_span(name) & m;
    while (c->hash[i] >= 0) {
        const ox_value *v = &c->values[c->hash[i]];
        if (v->name.n == name.n && memcmp(v->name.p, name.p, name.n) == 0) return c->hash[i];
        i = (i + 1) & m;
    }
    return -1;
}

/* New value; refuses a name that is already defined. */
static int new_value(ox_ctx *c, pb_span name, int kind, const char *what)
{
    char nm[80];
    if (name.n == 0) return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s has an empty name", what);
    if (find_value(c, name) >= 0) {
        span_str(name, nm, sizeof nm);
        return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s '%s': the name is defined twice", what, nm);
    }
    if (c->n_values >= c->cap_values) return dl_fail(c->err, DL_ERR_FORMAT, "onnx: too many values");
    int vi = c->n_values++;
    ox_value *v = &c->values[vi];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->kind = kind;
    v->producer = -1;
    v->consumer = -1;
    v->node = -1;
    size_t m = c->hash_cap - 1, i = (size_t)hash_span(name) & m;
    while (c->hash[i] >= 0) i = (i + 1) & m;
    c->hash[i] = vi;
    return vi;
}

/* ------------------------------------------------------------ graph building helpers */

static int grow_uses(ox_ctx *c, int need)
{
    if (need <= c->cap_uses) return 0;
    int cap = c->cap_uses ? c->cap_uses : 64;
    while (cap < need) cap *= 2;
    int *u = realloc(c->uses, sizeof *u * (size_t)cap);
    if (!u) return dl_fail(c->err, DL_ERR_NOMEM, "onnx: out of memory");
    c->uses = u;
    bool *rd = realloc(c->read, sizeof *rd * (size_t)cap);
    if (!rd) return dl_fail(c->err, DL_ERR_NOMEM, "onnx: out of memory");
    c->read = rd;
    memset(u + c->cap_uses, 0, sizeof *u * (size_t)(cap - c->cap_uses));
    memset(rd + c->cap_uses, 0, sizeof *rd * (size_t)(cap - c->cap_uses));
    c->cap_uses = cap;
    return 0;
}

/* Value vi now holds the output of engine node `node` with ONNX shape dims. */
static void bind(ox_ctx *c, int vi, int node, int rank, const int64_t *dims)
{
    ox_value *v = &c->values[vi];
    v->kind = V_ACT;
    v->node = node;
    v->rank = rank;
    if (dims != v->dims) memcpy(v->dims, dims, sizeof(int64_t) * (size_t)rank);
    c->uses[node] += v->consumers;
}

/* Output 0 of the current node becomes another name for input value vi's
 * node (identity, reshape, fused activation ...). */
static void alias(ox_ctx *c, int vi, int rank, const int64_t *dims)
{
    int node = c->values[vi].node;
    int64_t d[OX_MAX_RANK];
    memcpy(d, dims, sizeof(int64_t) * (size_t)rank);
    c->uses[node]--; /* the current node's read */
    bind(c, c->nodes[c->cur].out[0], node, rank, d);
}

/* Only the current node reads vi's engine node: it may be changed in place
 * (no other ONNX consumer is still to come, and no engine node emitted
 * earlier, e.g. a Concat or an Add, already reads its output). */
static bool sole_reader(const ox_ctx *c, int vi)
{
    int node = c->values[vi].node;
    return node > 0 && c->uses[node] == 1 && !c->read[node];
}

/* Unique engine node name from the ONNX node's name or first output. */
static void make_node_name(ox_ctx *c, const char *suffix, char *out)
{
    const ox_node *n = &c->nodes[c->cur];
    char base[72];
    span_str(n->name.n ? n->name : n->out_names[0], base, sizeof base);
    if (!base[0]) snprintf(base, sizeof base, "node%d", c->cur);
    snprintf(out, DL_NAME_MAX, "%s%s", base, suffix);
    if (dl_graph_find_node(c->g, out) < 0) return;
    snprintf(out, DL_NAME_MAX, "%.60s%s~%d", base, suffix, c->g->n_nodes);
}

static void tensor_name(const char *node, const char *suffix, char *out)
{
    size_t ln = strnlen(node, DL_NAME_MAX - 1), ls = strlen(suffix);
    if (ln + 1 + ls < DL_NAME_MAX) {
        memcpy(out, node, ln);
        out[ln] = '.';
        memcpy(out + ln + 1, suffix, ls + 1);
    } else snprintf(out, DL_NAME_MAX, "%.64s~%zu.%s", node, ln, suffix);
}

/* Append node n, infer shapes; returns its index or -1. */
static int emit(ox_ctx *c, dl_node *n)
{
    if (c->g->n_nodes >= OX_MAX_ENGINE_NODES)
        return node_fail(c, DL_ERR_LIMIT, "the converted graph exceeds %d nodes", OX_MAX_ENGINE_NODES);
    int idx = dl_graph_add_node(c->g, n, c->err);
    if (idx < 0) return node_fail(c, c->err->code, "%s", c->err->message);
    if (grow_uses(c, idx + 1) != 0) return -1;
    c->uses[idx] = 0;
    for (int k = 0; k < n->n_inputs; k++) c->read[n->inputs[k]] = true;
    /* the new node only (linear import); convert() validates the whole graph at the end */
    if (dl_graph_infer_last(c->g, c->err) != 0) {
        char msg[sizeof c->err->message];
        snprintf(msg, sizeof msg, "%s", c->err->message);
        return node_fail(c, c->err->code, "%s", msg);
    }
    return idx;
}

/* Emit n as the current node's only output, replacing its input x (one use
 * of x consumed) with the same rank and dims: the tail of every op that keeps
 * the shape. 0 or -1. */
static int emit_same_shape(ox_ctx *c, dl_node *n, const ox_value *x)
{
    int idx = emit(c, n);
    if (idx < 0) return -1;
    c->uses[x->node]--;
    bind(c, c->nodes[c->cur].out[0], idx, x->rank, x->dims);
    return 0;
}

/* Add weight (and bias) tensors to n; data copied (caller frees). */
static int add_params(ox_ctx *c, dl_node *n, const float *w, int wnd, const int64_t *wdims, const float *bias,
                      int64_t nb)
{
    char name[DL_NAME_MAX];
    tensor_name(n->name, "weight", name);
    n->weight = dl_graph_add_tensor(c->g, name, wnd, wdims, w, c->err);
    if (n->weight < 0) return node_fail(c, c->err->code, "%s", c->err->message);
    if (bias) {
        tensor_name(n->name, "bias", name);
        n->bias = dl_graph_add_tensor(c->g, name, 1, &nb, bias, c->err);
        if (n->bias < 0) return node_fail(c, c->err->code, "%s", c->err->message);
    }
    return 0;
}

static const dl_node *node_of(const ox_ctx *c, int vi) { return &c->g->nodes[c->values[vi].node]; }

static void node_dims(const dl_node *n, int64_t *d)
{
    d[0] = 1;
    d[1] = n->c;
    d[2] = n->h;
    d[3] = n->w;
}

static void value_str(const ox_ctx *c, int vi, char *out, size_t cap)
{
    const ox_value *v = &c->values[vi];
    char nm[64], d[96];
    span_str(v->name, nm, sizeof nm);
    if (v->kind == V_ACT) dims_str(v->dims, v->rank, d, sizeof d);
    else if (v->kind == V_CONST) dims_str(v->t.dims, v->t.ndim, d, sizeof d);
    else snprintf(d, sizeof d, "?");
    snprintf(out, cap, "'%s' %s", nm, d);
}

/* Input k of the current node: an activation (computed by the network). */
static int act_in(ox_ctx *c, int k, int *vi)
{
    const ox_node *n = &c->nodes[c->cur];
    if (k >= n->n_in || n->in[k] < 0) return node_fail(c, DL_ERR_FORMAT, "input %d is missing", k);
    const ox_value *v = &c->values[n->in[k]];
    if (v->kind != V_ACT) {
        char s[160];
        value_str(c, n->in[k], s, sizeof s);
        return node_fail(c, DL_ERR_UNSUPPORTED, "input %d (%s) is a constant, expected a computed tensor", k, s);
    }
    *vi = n->in[k];
    return 0;
}

/* Input k: a constant (initializer or Constant output); -1 when absent
 * and optional. */
static int const_in(ox_ctx *c, int k, bool required, int *vi)
{
    const ox_node *n = &c->nodes[c->cur];
    *vi = -1;
    if (k >= n->n_in || n->in[k] < 0) {
        if (required) return node_fail(c, DL_ERR_FORMAT, "input %d is missing", k);
        return 0;
    }
    const ox_value *v = &c->values[n->in[k]];
    if (v->kind != V_CONST) {
        char s[160];
        value_str(c, n->in[k], s, sizeof s);
        return node_fail(c, DL_ERR_UNSUPPORTED, "input %d (%s) must be a constant (initializer)", k, s);
    }
    *vi = n->in[k];
    return 0;
}

static int const_floats(ox_ctx *c, int vi, const char *role, const float **f, size_t *n)
{
    ox_value *v = &c->values[vi];
    if (!v->f && tensor_floats(c, &v->t, &v->f, &v->nf, role) != 0) return -1;
    *f = v->f;
    *n = v->nf;
    return 0;
}

/* A constant scalar (any rank, one element). */
static int const_scalar(ox_ctx *c, int vi, const char *role, float *out)
{
    const float *f;
    size_t n;
    if (const_floats(c, vi, role, &f, &n) != 0) return -1;
    if (n != 1) return node_fail(c, DL_ERR_UNSUPPORTED, "%s must be a scalar, has %zu values", role, n);
    *out = f[0];
    return 0;
}

/* Value vi maps its ONNX axis 1 to the engine node's channels ([1,C,H,W],
 * [1,C] of a 1x1xC node, [1,C,1,1] ...). */
static bool channel_layout(const ox_ctx *c, int vi)
{
    const ox_value *v = &c->values[vi];
    const dl_node *n = node_of(c, vi);
    if (v->rank < 2 || v->dims[0] != 1 || v->dims[1] != n->c) return false;
    if (v->rank == 4) return v->dims[2] == n->h && v->dims[3] == n->w;
    int64_t rest = 1;
    for (int i = 2; i < v->rank; i++) rest *= v->dims[i];
    return n->h * n->w == 1 && rest == 1;
}

/* The value as a spatial [1,C,H,W] map of its node. */
static int want_spatial(ox_ctx *c, int vi)
{
    const ox_value *v = &c->values[vi];
    const dl_node *n = node_of(c, vi);
    if (v->rank == 4 && v->dims[0] == 1 && v->dims[1] == n->c && v->dims[2] == n->h && v->dims[3] == n->w) return 0;
    char s[160];
    value_str(c, vi, s, sizeof s);
    return node_fail(c, DL_ERR_UNSUPPORTED, "input %s is not a [1,C,H,W] image tensor", s);
}

/* Per-channel vector of constant vi broadcast against activation av:
 * scalar, [C], [1,C], [C,1,1], [1,C,1,1] ... -> out[C] (malloc'd). */
static int channel_vector(ox_ctx *c, int av, int cv, const char *role, float **out)
{
    const ox_value *a = &c->values[av];
    const ox_value *k = &c->values[cv];
    const float *f;
    size_t n;
    char s1[160], s2[160];
    *out = NULL;
    if (const_floats(c, cv, role, &f, &n) != 0) return -1;
    const dl_node *an = node_of(c, av);
    int C = an->c;
    bool ok = k->t.ndim <= a->rank;
    int chan_axis = -1; /* axis of the constant that varies */
    for (int j = 0; ok && j < k->t.ndim; j++) {
        int ax = a->rank - k->t.ndim + j;
        int64_t d = k->t.dims[j];
        if (d == 1) continue;
        if (ax == 1 && d == a->dims[1] && channel_layout(c, av)) chan_axis = j;
        else ok = false;
    }
    if (ok && n != 1 && chan_axis < 0) ok = false;
    if (!ok) {
        value_str(c, av, s1, sizeof s1);
        value_str(c, cv, s2, sizeof s2);
        return node_fail(c, DL_ERR_UNSUPPORTED,
                         "%s %s must be a scalar or one value per channel of %s (channel axis 1)", role, s2, s1);
    }
    float *v = malloc(sizeof(float) * (size_t)C);
    if (!v) return node_fail(c, DL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < C; i++) v[i] = n == 1 ? f[0] : f[i];
    *out = v;
    return 0;
}

/* y = x * scale + shift per channel (either may be NULL), into the current
 * node's output 0: folded into the producing conv/dense when only this node
 * reads it, else a depthwise 1x1 node. */
static int affine(ox_ctx *c, int vi, const float *scale, const float *shift)
{
    ox_value *v = &c->values[vi];
    if (!channel_layout(c, vi)) {
        char s[160];
        value_str(c, vi, s, sizeof s);
        return node_fail(c, DL_ERR_UNSUPPORTED, "a per-channel scale/shift of %s: its channels are not axis 1", s);
    }
    dl_node *p = &c->g->nodes[v->node];
    int C = p->c;
    if ((p->op == DL_OP_CONV2D || p->op == DL_OP_DENSE) && p->act == DL_ACT_NONE && sole_reader(c, vi)) {
        dl_tensor *w = &c->g->tensors[p->weight];
        size_t per = w->count / (size_t)C;
        if (scale)
            for (int o = 0; o < C; o++)
                for (size_t k = 0; k < per; k++) w->data[(size_t)o * per + k] *= scale[o];
        if (p->bias < 0 && shift) {
            char name[DL_NAME_MAX];
            int64_t nb = C;
            tensor_name(p->name, "bias", name);
            int bi = dl_graph_add_tensor(c->g, name, 1, &nb, NULL, c->err);
            if (bi < 0) return node_fail(c, c->err->code, "%s", c->err->message);
            p = &c->g->nodes[v->node];
            p->bias = bi;
        }
        if (p->bias >= 0) {
            float *b = c->g->tensors[p->bias].data;
            for (int o = 0; o < C; o++) b[o] = b[o] * (scale ? scale[o] : 1.f) + (shift ? shift[o] : 0.f);
        }
        alias(c, vi, v->rank, v->dims);
        return 0;
    }
    char nm[DL_NAME_MAX];
    make_node_name(c, "", nm);
    dl_node n = dl_node_make(DL_OP_CONV2D, nm);
    n.n_inputs = 1;
    n.inputs[0] = v->node;
    n.units = C;
    n.groups = C;
    n.pad_mode = DL_PAD_VALID;
    float *w = malloc(sizeof(float) * (size_t)C * 2);
    if (!w) return node_fail(c, DL_ERR_NOMEM, "out of memory");
    for (int o = 0; o < C; o++) {
        w[o] = scale ? scale[o] : 1.f;
        w[C + o] = shift ? shift[o] : 0.f;
    }
    int64_t wd[4] = {C, 1, 1, 1};
    int r = add_params(c, &n, w, 4, wd, shift ? w + C : NULL, C);
    free(w);
    if (r != 0) return -1;
    return emit_same_shape(c, &n, v);
}

/* y = act(x) into the current node's output 0. */
static int activate(ox_ctx *c, int vi, dl_act act)
{
    ox_value *v = &c->values[vi];
    dl_node *p = &c->g->nodes[v->node];
    if ((p->op == DL_OP_CONV2D || p->op == DL_OP_DENSE || p->op == DL_OP_ADD || p->op == DL_OP_MUL) &&
        p->act == DL_ACT_NONE && sole_reader(c, vi)) {
        p->act = act;
        alias(c, vi, v->rank, v->dims);
        return 0;
    }
    /* identity depthwise 1x1 carrying the activation (layout-agnostic) */
    char nm[DL_NAME_MAX];
    make_node_name(c, "", nm);
    dl_node n = dl_node_make(DL_OP_CONV2D, nm);
    int C = p->c;
    n.n_inputs = 1;
    n.inputs[0] = v->node;
    n.units = C;
    n.groups = C;
    n.pad_mode = DL_PAD_VALID;
    n.act = act;
    float *w = malloc(sizeof(float) * (size_t)C);
    if (!w) return node_fail(c, DL_ERR_NOMEM, "out of memory");
    for (int o = 0; o < C; o++) w[o] = 1.f;
    int64_t wd[4] = {C, 1, 1, 1};
    int r = add_params(c, &n, w, 4, wd, NULL, 0);
    free(w);
    if (r != 0) return -1;
    return emit_same_shape(c, &n, v);
}

/* Extra outputs (BatchNorm running stats, MaxPool indices, Dropout mask)
 * must be unused. */
static int only_first_output(ox_ctx *c)
{
    const ox_node *n = &c->nodes[c->cur];
    if (n->n_out < 1) return node_fail(c, DL_ERR_FORMAT, "no outputs");
    for (int k = 1; k < n->n_out; k++)
        if (n->out[k] >= 0 && c->values[n->out[k]].consumers > 0)
            return node_fail(c, DL_ERR_UNSUPPORTED, "output %d is used; only the first output is supported", k);
    return 0;
}

/* ------------------------------------------------------------ windows (conv / pool) */

typedef struct {
    int kh, kw, sh, sw, dh, dw;
    int pt, pl, pb, pr;
} ox_window;

/* kernel_shape / strides / dilations / pads / auto_pad for a 2-D window on
 * an input of ih x iw; kh/kw preset for Conv (from the weights). */
static int read_window(ox_ctx *c, ox_window *w, int ih, int iw, bool kernel_from_attr, bool allow_dilation)
{
    int64_t v[OX_MAX_ATTR_INTS];
    int n;
    if (attr_ints(c, "kernel_shape", v, OX_MAX_ATTR_INTS, &n) != 0) return -1;
    if (n >= 0) {
        if (n != 2) return node_fail(c, DL_ERR_UNSUPPORTED, "kernel_shape has %d values; only 2-D windows are supported", n);
        if (v[0] < 1 || v[1] < 1 || v[0] > OX_MAX_KERNEL || v[1] > OX_MAX_KERNEL)
            return node_fail(c, DL_ERR_UNSUPPORTED, "kernel %lldx%lld out of range 1..%d", (long long)v[0], (long long)v[1],
                             OX_MAX_KERNEL);
        if (!kernel_from_attr && (v[0] != w->kh || v[1] != w->kw))
            return node_fail(c, DL_ERR_FORMAT, "kernel_shape %lldx%lld differs from the weights' %dx%d", (long long)v[0],
                             (long long)v[1], w->kh, w->kw);
        w->kh = (int)v[0];
        w->kw = (int)v[1];
    } else if (kernel_from_attr) {
        return node_fail(c, DL_ERR_FORMAT, "kernel_shape is missing");
    }
    w->sh = w->sw = w->dh = w->dw = 1;
    if (attr_ints(c, "strides", v, OX_MAX_ATTR_INTS, &n) != 0) return -1;
    if (n >= 0) {
        if (n != 2 || v[0] < 1 || v[1] < 1 || v[0] > OX_MAX_KERNEL || v[1] > OX_MAX_KERNEL)
            return node_fail(c, DL_ERR_UNSUPPORTED, "strides must be 2 values in 1..%d", OX_MAX_KERNEL);
        w->sh = (int)v[0];
        w->sw = (int)v[1];
    }
    if (attr_ints(c, "dilations", v, OX_MAX_ATTR_INTS, &n) != 0) return -1;
    if (n >= 0) {
        if (n != 2 || v[0] < 1 || v[1] < 1 || v[0] > OX_MAX_KERNEL || v[1] > OX_MAX_KERNEL)
            return node_fail(c, DL_ERR_UNSUPPORTED, "dilations must be 2 values in 1..%d", OX_MAX_KERNEL);
        w->dh = (int)v[0];
        w->dw = (int)v[1];
        if (!allow_dilation && (w->dh != 1 || w->dw != 1))
            return node_fail(c, DL_ERR_UNSUPPORTED, "dilations %dx%d are not supported here", w->dh, w->dw);
    }
    int64_t ekh = (int64_t)w->dh * (w->kh - 1) + 1, ekw = (int64_t)w->dw * (w->kw - 1) + 1;
    if (ekh > OX_MAX_KERNEL || ekw > OX_MAX_KERNEL)
        return node_fail(c, DL_ERR_UNSUPPORTED, "dilated kernel %lldx%lld exceeds %d", (long long)ekh, (long long)ekw,
                         OX_MAX_KERNEL);
    char ap[32];
    if (attr_str(c, "auto_pad", ap, sizeof ap) != 0) return -1;
    w->pt = w->pl = w->pb = w->pr = 0;
    if (!ap[0] || !strcmp(ap, "NOTSET")) {
        if (attr_ints(c, "pads", v, OX_MAX_ATTR_INTS, &n) != 0) return -1;
        if (n >= 0) {
            if (n != 4) return node_fail(c, DL_ERR_UNSUPPORTED, "pads has %d values, expected 4", n);
            for (int k = 0; k < 4; k++)
                if (v[k] < 0 || v[k] > OX_MAX_PAD)
                    return node_fail(c, DL_ERR_UNSUPPORTED, "pads[%d] = %lld out of range 0..%d", k, (long long)v[k],
                                     OX_MAX_PAD);
            w->pt = (int)v[0];
            w->pl = (int)v[1];
            w->pb = (int)v[2];
            w->pr = (int)v[3];
        }
    } else if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        int o, a, b;
        dl_same_padding(ih, (int)ekh, w->sh, &o, &a, &b);
        w->pt = !strcmp(ap, "SAME_UPPER") ? a : b;
        w->pb = !strcmp(ap, "SAME_UPPER") ? b : a;
        dl_same_padding(iw, (int)ekw, w->sw, &o, &a, &b);
        w->pl = !strcmp(ap, "SAME_UPPER") ? a : b;
        w->pr = !strcmp(ap, "SAME_UPPER") ? b : a;
    } else if (strcmp(ap, "VALID") != 0) {
        return node_fail(c, DL_ERR_UNSUPPORTED, "auto_pad '%s' is not supported", ap);
    }
    return 0;
}

/* A zero PAD node in front of node `in` (for padding the window ops cannot
 * take themselves). Returns the new node index. */
static int emit_pad(ox_ctx *c, int in, int pt, int pb, int pl, int pr)
{
    char nm[DL_NAME_MAX];
    make_node_name(c, "#pad", nm);
    dl_node n = dl_node_make(DL_OP_PAD, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    n.pad_mode = DL_PAD_EXPLICIT;
    n.pad_t = pt;
    n.pad_b = pb;
    n.pad_l = pl;
    n.pad_r = pr;
    int idx = emit(c, &n);
    if (idx >= 0) c->uses[idx] = 1;
    return idx;
}

/* ------------------------------------------------------------ ops */

static int op_conv(ox_ctx *c)
{
    int xv = -1, wv, bv;
    if (act_in(c, 0, &xv) || want_spatial(c, xv) || const_in(c, 1, true, &wv) || const_in(c, 2, false, &bv)) return -1;
    const dl_node *x = node_of(c, xv);
    const ox_tensor *wt = &c->values[wv].t;
    if (wt->ndim != 4)
        return node_fail(c, DL_ERR_UNSUPPORTED, "weight has rank %d; only 2-D convolutions (rank 4) are supported",
                         wt->ndim);
    int64_t group = 1;
    if (attr_int(c, "group", 1, &group) != 0) return -1;
    int64_t M = wt->dims[0], I = wt->dims[1], KH = wt->dims[2], KW = wt->dims[3];
    if (group < 1 || group > 65536 || x->c % group || M % group || I * group != x->c || M < 1 || M > 65536)
        return node_fail(c, DL_ERR_FORMAT, "group %lld with weight [%lld,%lld,%lld,%lld] does not fit %d input channels",
                         (long long)group, (long long)M, (long long)I, (long long)KH, (long long)KW, x->c);
    if (KH < 1 || KW < 1 || KH > OX_MAX_KERNEL || KW > OX_MAX_KERNEL)
        return node_fail(c, DL_ERR_UNSUPPORTED, "kernel %lldx%lld out of range 1..%d", (long long)KH, (long long)KW,
                         OX_MAX_KERNEL);
    ox_window win = {.kh = (int)KH, .kw = (int)KW};
    if (read_window(c, &win, x->h, x->w, false, true) != 0) return -1;
    int ekh = win.dh * (win.kh - 1) + 1, ekw = win.dw * (win.kw - 1) + 1;
    const float *wf, *bf = NULL;
    size_t nw, nb = 0;
    if (const_floats(c, wv, "weight", &wf, &nw) != 0) return -1;
    if (bv >= 0) {
        if (const_floats(c, bv, "bias", &bf, &nb) != 0) return -1;
        if (nb != (size_t)M) return node_fail(c, DL_ERR_FORMAT, "bias has %zu values, expected %lld", nb, (long long)M);
    }
    int in = c->values[xv].node;
    /* padding a window cannot take (>= its size): a zero PAD node first */
    if (win.pt >= ekh || win.pb >= ekh || win.pl >= ekw || win.pr >= ekw) {
        in = emit_pad(c, in, win.pt, win.pb, win.pl, win.pr);
        if (in < 0) return -1;
        c->uses[c->values[xv].node]--;
        win.pt = win.pb = win.pl = win.pr = 0;
    } else {
        c->uses[c->values[xv].node]--;
    }
    /* OIHW -> OHWI, dilation as zeros between the taps */
    size_t cnt = (size_t)M * (size_t)ekh * (size_t)ekw * (size_t)I;
    if (cnt > OX_MAX_FLOATS - c->total_floats) return node_fail(c, DL_ERR_LIMIT, "weights exceed the limit");
    float *w2 = calloc(cnt, sizeof *w2);
    if (!w2) return node_fail(c, DL_ERR_NOMEM, "out of memory for %zu weights", cnt);
    for (int64_t o = 0; o < M; o++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t y = 0; y < KH; y++)
                for (int64_t xx = 0; xx < KW; xx++)
                    w2[(((size_t)o * ekh + (size_t)(y * win.dh)) * ekw + (size_t)(xx * win.dw)) * I + i] =
                        wf[(((size_t)o * I + i) * KH + y) * KW + xx];
    char nm[DL_NAME_MAX];
    make_node_name(c, "", nm);
    dl_node n = dl_node_make(DL_OP_CONV2D, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    n.kh = ekh;
    n.kw = ekw;
    n.sh = win.sh;
    n.sw = win.sw;
    n.pad_mode = DL_PAD_EXPLICIT;
    n.pad_t = win.pt;
    n.pad_b = win.pb;
    n.pad_l = win.pl;
    n.pad_r = win.pr;
    n.groups = (int)group;
    n.units = (int)M;
    int64_t wd[4] = {M, ekh, ekw, I};
    int r = add_params(c, &n, w2, 4, wd, bf, M);
    free(w2);
    if (r != 0) return -1;
    int idx = emit(c, &n);
    if (idx < 0) return -1;
    int64_t od[4];
    node_dims(&c->g->nodes[idx], od);
    bind(c, c->nodes[c->cur].out[0], idx, 4, od);
    return 0;
}

static int op_batchnorm(ox_ctx *c)
{
    int xv = -1, sv, bv, mv, vv;
    if (only_first_output(c) || act_in(c, 0, &xv) || const_in(c, 1, true, &sv) || const_in(c, 2, true, &bv) ||
        const_in(c, 3, true, &mv) || const_in(c, 4, true, &vv))
        return -1;
    float eps = 1e-5f;
    int64_t training = 0;
    if (attr_float(c, "epsilon", 1e-5f, &eps) != 0 || attr_int(c, "training_mode", 0, &training) != 0) return -1;
    if (training) return node_fail(c, DL_ERR_UNSUPPORTED, "training_mode=1 (export the model in eval mode)");
    if (!channel_layout(c, xv)) return want_spatial(c, xv);
    int C = node_of(c, xv)->c;
    const float *p[4];
    size_t n[4];
    const char *roles[4] = {"scale", "B", "mean", "var"};
    int vs[4] = {sv, bv, mv, vv};
    for (int k = 0; k < 4; k++) {
        if (const_floats(c, vs[k], roles[k], &p[k], &n[k]) != 0) return -1;
        if (n[k] != (size_t)C) return node_fail(c, DL_ERR_FORMAT, "%s has %zu values, expected %d", roles[k], n[k], C);
    }
    float *scale = malloc(sizeof(float) * (size_t)C * 2);
    if (!scale) return node_fail(c, DL_ERR_NOMEM, "out of memory");
    float *shift = scale + C;
    for (int k = 0; k < C; k++) {
        double var = (double)p[3][k] + eps;
        if (!(var > 0)) {
            free(scale);
            return node_fail(c, DL_ERR_FORMAT, "var + epsilon is %g at channel %d", var, k);
        }
        double s = p[0][k] / sqrt(var);
        scale[k] = (float)s;
        shift[k] = (float)(p[1][k] - p[2][k] * s);
    }
    int r = affine(c, xv, scale, shift);
    free(scale);
    return r;
}

static int op_activation(ox_ctx *c, dl_act act)
{
    int xv = -1;
    if (act_in(c, 0, &xv) != 0) return -1;
    return activate(c, xv, act);
}

static int op_clip(ox_ctx *c)
{
    int xv = -1, lv = -1, hv = -1;
    float lo = -FLT_MAX, hi = FLT_MAX;
    if (act_in(c, 0, &xv) != 0) return -1;
    if (c->opset < 11) {
        if (attr_float(c, "min", -FLT_MAX, &lo) != 0 || attr_float(c, "max", FLT_MAX, &hi) != 0) return -1;
    } else {
        if (const_in(c, 1, false, &lv) || const_in(c, 2, false, &hv)) return -1;
        if (lv >= 0 && const_scalar(c, lv, "min", &lo) != 0) return -1;
        if (hv >= 0 && const_scalar(c, hv, "max", &hi) != 0) return -1;
    }
    if (lo == 0.f && hi == 6.f) return activate(c, xv, DL_ACT_RELU6);
    if (lo == 0.f && hi >= FLT_MAX) return activate(c, xv, DL_ACT_RELU);
    return node_fail(c, DL_ERR_UNSUPPORTED, "Clip(min %g, max %g): only (0, 6) = ReLU6 and (0, inf) = ReLU are supported",
                     (double)lo, (double)hi);
}

static int hardsigmoid_is_std(ox_ctx *c, bool *ok)
{
    float a, b;
    if (attr_float(c, "alpha", 0.2f, &a) != 0 || attr_float(c, "beta", 0.5f, &b) != 0) return -1;
    *ok = fabsf(a - 1.f / 6.f) < 1e-6f && fabsf(b - 0.5f) < 1e-6f;
    return 0;
}

static int op_hardsigmoid(ox_ctx *c)
{
    bool ok;
    if (hardsigmoid_is_std(c, &ok) != 0) return -1;
    if (!ok)
        return node_fail(c, DL_ERR_UNSUPPORTED, "HardSigmoid with alpha/beta other than 1/6, 1/2 is not supported");
    return op_activation(c, DL_ACT_HSIGMOID);
}

static bool same_dims(const ox_value *a, const ox_value *b)
{
    return a->rank == b->rank && memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0;
}

/* Add / Sub / Mul / Div. */
static int op_binary(ox_ctx *c, char kind)
{
    const ox_node *on = &c->nodes[c->cur];
    if (on->n_in != 2 || on->in[0] < 0 || on->in[1] < 0) return node_fail(c, DL_ERR_FORMAT, "expected 2 inputs");
    if (kind == '*' && on->gate_act != DL_ACT_NONE) {
        if (c->values[on->gate_src].kind != V_ACT) return node_fail(c, DL_ERR_UNSUPPORTED, "gated constant");
        return activate(c, on->gate_src, on->gate_act);
    }
    int a = on->in[0], b = on->in[1];
    const ox_value *va = &c->values[a], *vb = &c->values[b];
    if (va->kind == V_ACT && vb->kind == V_ACT) {
        if (kind != '+' && kind != '*')
            return node_fail(c, DL_ERR_UNSUPPORTED, "%s of two computed tensors is not supported", kind == '-' ? "Sub" : "Div");
        const dl_node *na = node_of(c, a), *nb = node_of(c, b);
        int big = a, small = b;
        if (!same_dims(va, vb)) {
            /* the channel gate [1,C,1,1] times a map [1,C,H,W] */
            if (kind == '*' && channel_layout(c, a) && channel_layout(c, b) && na->c == nb->c &&
                (na->h * na->w == 1) != (nb->h * nb->w == 1)) {
                if (na->h * na->w == 1) {
                    big = b;
                    small = a;
                }
                if (c->values[small].rank > c->values[big].rank) goto bad;
            } else {
            bad:;
                char s1[160], s2[160];
                value_str(c, a, s1, sizeof s1);
                value_str(c, b, s2, sizeof s2);
                return node_fail(c, DL_ERR_UNSUPPORTED,
                                 "broadcasting %s with %s is not supported (only equal shapes, or Mul by a [1,C,1,1] gate)",
                                 s1, s2);
            }
        } else if (na->h != nb->h || na->w != nb->w || na->c != nb->c) {
            goto bad;
        }
        char nm[DL_NAME_MAX];
        make_node_name(c, "", nm);
        dl_node n = dl_node_make(kind == '+' ? DL_OP_ADD : DL_OP_MUL, nm);
        n.n_inputs = 2;
        n.inputs[0] = c->values[big].node;
        n.inputs[1] = c->values[small].node;
        int idx = emit(c, &n);
        if (idx < 0) return -1;
        c->uses[c->values[a].node]--;
        c->uses[c->values[b].node]--;
        bind(c, on->out[0], idx, c->values[big].rank, c->values[big].dims);
        return 0;
    }
    if (va->kind == V_CONST && vb->kind == V_CONST)
        return node_fail(c, DL_ERR_UNSUPPORTED, "both inputs are constants (constant folding is not supported)");
    bool act_first = va->kind == V_ACT;
    int xv = act_first ? a : b, kv = act_first ? b : a;
    if (c->values[xv].kind != V_ACT || c->values[kv].kind != V_CONST)
        return node_fail(c, DL_ERR_FORMAT, "an input is neither computed nor constant");
    float *vec;
    if (channel_vector(c, xv, kv, kind == '+' || kind == '-' ? "addend" : "factor", &vec) != 0) return -1;
    int C = node_of(c, xv)->c, r;
    switch (kind) {
    case '+': r = affine(c, xv, NULL, vec); break;
    case '*': r = affine(c, xv, vec, NULL); break;
    case '-':
        if (act_first) {
            for (int k = 0; k < C; k++) vec[k] = -vec[k];
            r = affine(c, xv, NULL, vec);
        } else {
            float *m1 = malloc(sizeof(float) * (size_t)C);
            if (!m1) {
                free(vec);
                return node_fail(c, DL_ERR_NOMEM, "out of memory");
            }
            for (int k = 0; k < C; k++) m1[k] = -1.f;
            r = affine(c, xv, m1, vec);
            free(m1);
        }
        break;
    default: /* '/' */
        if (!act_first) {
            free(vec);
            return node_fail(c, DL_ERR_UNSUPPORTED, "dividing a constant by a computed tensor is not supported");
        }
        for (int k = 0; k < C; k++) {
            if (vec[k] == 0.f || !isfinite(1.f / vec[k])) {
                double bad = vec[k];
                free(vec);
                return node_fail(c, DL_ERR_FORMAT, "division by %g", bad);
            }
            vec[k] = 1.f / vec[k];
        }
        r = affine(c, xv, vec, NULL);
        break;
    }
    free(vec);
    return r;
}

static int op_pool(ox_ctx *c, bool avg, bool global)
{
    int xv = -1;
    if (only_first_output(c) || act_in(c, 0, &xv) || want_spatial(c, xv)) return -1;
    const dl_node *x = node_of(c, xv);
    int in = c->values[xv].node;
    char nm[DL_NAME_MAX];
    dl_node n;
    if (global && avg) {
        make_node_name(c, "", nm);
        n = dl_node_make(DL_OP_GAP, nm);
        n.n_inputs = 1;
        n.inputs[0] = in;
    } else {
        ox_window win = {0};
        if (global) {
            if (x->h > OX_MAX_KERNEL || x->w > OX_MAX_KERNEL)
                return node_fail(c, DL_ERR_UNSUPPORTED, "GlobalMaxPool over %dx%d exceeds the kernel limit %d", x->h,
                                 x->w, OX_MAX_KERNEL);
            win = (ox_window){.kh = x->h, .kw = x->w, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
        } else if (read_window(c, &win, x->h, x->w, true, false) != 0) {
            return -1;
        }
        int64_t ceil_mode = 0, include_pad = 0, storage = 0;
        if (!global && (attr_int(c, "ceil_mode", 0, &ceil_mode) || attr_int(c, "count_include_pad", 0, &include_pad) ||
                        attr_int(c, "storage_order", 0, &storage)))
            return -1;
        if (storage) return node_fail(c, DL_ERR_UNSUPPORTED, "storage_order=1 is not supported");
        bool padded = win.pt || win.pb || win.pl || win.pr;
        if (avg && include_pad && padded) {
            if (ceil_mode) return node_fail(c, DL_ERR_UNSUPPORTED, "ceil_mode with count_include_pad is not supported");
            /* zeros counted in the average: pad first, then a VALID pool */
            in = emit_pad(c, in, win.pt, win.pb, win.pl, win.pr);
            if (in < 0) return -1;
            c->uses[c->values[xv].node]--;
            c->uses[in] = 1;
            x = &c->g->nodes[in];
            win.pt = win.pb = win.pl = win.pr = 0;
        }
        if (ceil_mode) {
            /* extra bottom/right padding that out-of-bounds reads ignore */
            int ext[2];
            int sizes[2] = {x->h, x->w}, ks[2] = {win.kh, win.kw}, ss[2] = {win.sh, win.sw};
            int pa[2] = {win.pt, win.pl}, pz[2] = {win.pb, win.pr};
            for (int k = 0; k < 2; k++) {
                int span = sizes[k] + pa[k] + pz[k] - ks[k];
                if (span < 0) return node_fail(c, DL_ERR_FORMAT, "kernel larger than the padded input");
                int out = (span + ss[k] - 1) / ss[k] + 1;
                if ((out - 1) * ss[k] >= sizes[k] + pa[k]) out--;
                int need = (out - 1) * ss[k] + ks[k] - (sizes[k] + pa[k] + pz[k]);
                ext[k] = need > 0 ? need : 0;
            }
            win.pb += ext[0];
            win.pr += ext[1];
        }
        if (win.pt >= win.kh || win.pb >= win.kh || win.pl >= win.kw || win.pr >= win.kw)
            return node_fail(c, DL_ERR_UNSUPPORTED, "padding %d,%d,%d,%d is not smaller than the %dx%d window", win.pt,
                             win.pl, win.pb, win.pr, win.kh, win.kw);
        make_node_name(c, "", nm);
        n = dl_node_make(avg ? DL_OP_AVGPOOL : DL_OP_MAXPOOL, nm);
        n.n_inputs = 1;
        n.inputs[0] = in;
        n.kh = win.kh;
        n.kw = win.kw;
        n.sh = win.sh;
        n.sw = win.sw;
        n.pad_mode = DL_PAD_EXPLICIT;
        n.pad_t = win.pt;
        n.pad_b = win.pb;
        n.pad_l = win.pl;
        n.pad_r = win.pr;
    }
    int idx = emit(c, &n);
    if (idx < 0) return -1;
    c->uses[in]--; /* this node's read (of the input, or of its pad node) */
    int64_t od[4];
    node_dims(&c->g->nodes[idx], od);
    bind(c, c->nodes[c->cur].out[0], idx, 4, od);
    return 0;
}

static int op_reducemean(ox_ctx *c)
{
    int xv = -1, av;
    int64_t axes[8], keep = 1;
    int na = -1;
    if (act_in(c, 0, &xv) || want_spatial(c, xv) || attr_int(c, "keepdims", 1, &keep)) return -1;
    if (c->opset >= 18) {
        size_t n;
        if (const_in(c, 1, false, &av) != 0) return -1;
        if (av >= 0) {
            if (tensor_ints(c, &c->values[av].t, axes, 8, &n, "axes") != 0) return -1;
            na = (int)n;
        }
    } else if (attr_ints(c, "axes", axes, 8, &na) != 0) {
        return -1;
    }
    for (int k = 0; k < na; k++)
        if (axes[k] < 0) axes[k] += 4;
    if (!(na == 2 && ((axes[0] == 2 && axes[1] == 3) || (axes[0] == 3 && axes[1] == 2))))
        return node_fail(c, DL_ERR_UNSUPPORTED, "only the mean over H and W (axes 2,3) is supported");
    char nm[DL_NAME_MAX];
    make_node_name(c, "", nm);
    dl_node n = dl_node_make(DL_OP_GAP, nm);
    n.n_inputs = 1;
    n.inputs[0] = c->values[xv].node;
    int idx = emit(c, &n);
    if (idx < 0) return -1;
    c->uses[c->values[xv].node]--;
    int64_t od[4] = {1, c->g->nodes[idx].c, 1, 1};
    bind(c, c->nodes[c->cur].out[0], idx, keep ? 4 : 2, od);
    return 0;
}

/* The output shape newd of a reshape-like op on value xv: accepted when it
 * only adds or drops unit dimensions, or flattens to [1, N] / [N]. */
static int reshape_to(ox_ctx *c, int xv, const int64_t *newd, int rank)
{
    const ox_value *x = &c->values[xv];
    const dl_node *xn = node_of(c, xv);
    int64_t total = 1, have = (int64_t)xn->h * xn->w * xn->c;
    for (int k = 0; k < rank; k++) total *= newd[k];
    char s[160], d[96];
    value_str(c, xv, s, sizeof s);
    dims_str(newd, rank, d, sizeof d);
    if (total != have) return node_fail(c, DL_ERR_FORMAT, "%s has %lld values, the new shape %s %lld", s, (long long)have, d, (long long)total);
    int64_t a[OX_MAX_RANK], b[OX_MAX_RANK];
    int na = 0, nb = 0;
    for (int k = 0; k < x->rank; k++)
        if (x->dims[k] != 1) a[na++] = x->dims[k];
    for (int k = 0; k < rank; k++)
        if (newd[k] != 1) b[nb++] = newd[k];
    bool units_only = na == nb && memcmp(a, b, sizeof(int64_t) * (size_t)na) == 0;
    bool flat = nb <= 1 && (rank == 1 || newd[0] == 1) && rank <= 2;
    if (rank == 4 && !(newd[0] == 1 && newd[1] == xn->c && newd[2] == xn->h && newd[3] == xn->w))
        units_only = flat = false;
    if (!units_only && !flat)
        return node_fail(c, DL_ERR_UNSUPPORTED,
                         "reshaping %s to %s: only adding or dropping unit dimensions, or flattening, is supported", s, d);
    alias(c, xv, rank, newd);
    return 0;
}

static int op_flatten(ox_ctx *c)
{
    int xv = -1;
    int64_t axis = 1;
    if (act_in(c, 0, &xv) || attr_int(c, "axis", 1, &axis)) return -1;
    const ox_value *x = &c->values[xv];
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis > x->rank) return node_fail(c, DL_ERR_FORMAT, "axis %lld out of range", (long long)axis);
    int64_t d[2] = {1, 1};
    for (int k = 0; k < x->rank; k++) d[k < axis ? 0 : 1] *= x->dims[k];
    if (d[0] != 1) return node_fail(c, DL_ERR_UNSUPPORTED, "Flatten with axis %lld keeps more than the batch", (long long)axis);
    return reshape_to(c, xv, d, 2);
}

static int op_reshape(ox_ctx *c)
{
    int xv = -1, sv;
    int64_t shp[OX_MAX_RANK], allowzero = 0;
    size_t n;
    if (act_in(c, 0, &xv) || const_in(c, 1, true, &sv) || attr_int(c, "allowzero", 0, &allowzero)) return -1;
    if (tensor_ints(c, &c->values[sv].t, shp, OX_MAX_RANK, &n, "shape") != 0) return -1;
    const ox_value *x = &c->values[xv];
    int64_t total = 1, known = 1;
    int neg = -1;
    for (size_t k = 0; k < n; k++) {
        if (shp[k] == 0 && !allowzero) {
            if ((int)k >= x->rank) return node_fail(c, DL_ERR_FORMAT, "shape[%zu] = 0 copies a missing dimension", k);
            shp[k] = x->dims[k];
        }
        if (shp[k] == -1) {
            if (neg >= 0) return node_fail(c, DL_ERR_FORMAT, "shape has two -1 entries");
            neg = (int)k;
            continue;
        }
        if (shp[k] < 1 || shp[k] > OX_MAX_DIM) return node_fail(c, DL_ERR_UNSUPPORTED, "shape[%zu] = %lld", k, (long long)shp[k]);
        known *= shp[k];
    }
    for (int k = 0; k < x->rank; k++) total *= x->dims[k];
    if (neg >= 0) {
        if (known < 1 || total % known) return node_fail(c, DL_ERR_FORMAT, "shape cannot be inferred");
        shp[neg] = total / known;
    }
    return reshape_to(c, xv, shp, (int)n);
}

static int op_squeeze(ox_ctx *c, bool unsqueeze)
{
    int xv = -1, av;
    int64_t axes[OX_MAX_RANK];
    int na = -1;
    if (act_in(c, 0, &xv) != 0) return -1;
    if (c->opset >= 13) {
        size_t n;
        if (const_in(c, 1, unsqueeze, &av) != 0) return -1;
        if (av >= 0) {
            if (tensor_ints(c, &c->values[av].t, axes, OX_MAX_RANK, &n, "axes") != 0) return -1;
            na = (int)n;
        }
    } else if (attr_ints(c, "axes", axes, OX_MAX_RANK, &na) != 0) {
        return -1;
    }
    const ox_value *x = &c->values[xv];
    int64_t d[OX_MAX_RANK];
    int rank = 0;
    if (unsqueeze) {
        if (na < 1) return node_fail(c, DL_ERR_FORMAT, "axes are missing");
        int out_rank = x->rank + na;
        if (out_rank > OX_MAX_RANK) return node_fail(c, DL_ERR_UNSUPPORTED, "rank %d exceeds %d", out_rank, OX_MAX_RANK);
        bool ins[OX_MAX_RANK] = {false};
        for (int k = 0; k < na; k++) {
            int64_t ax = axes[k] < 0 ? axes[k] + out_rank : axes[k];
            if (ax < 0 || ax >= out_rank || ins[ax]) return node_fail(c, DL_ERR_FORMAT, "axis %lld invalid", (long long)axes[k]);
            ins[ax] = true;
        }
        int src = 0;
        for (int k = 0; k < out_rank; k++) d[k] = ins[k] ? 1 : x->dims[src++];
        rank = out_rank;
    } else {
        bool drop[OX_MAX_RANK] = {false};
        for (int k = 0; k < na; k++) {
            int64_t ax = axes[k] < 0 ? axes[k] + x->rank : axes[k];
            if (ax < 0 || ax >= x->rank || x->dims[ax] != 1)
                return node_fail(c, DL_ERR_FORMAT, "axis %lld is not a unit dimension", (long long)axes[k]);
            drop[ax] = true;
        }
        for (int k = 0; k < x->rank; k++)
            if (!(na < 0 ? x->dims[k] == 1 : drop[k])) d[rank++] = x->dims[k];
    }
    return reshape_to(c, xv, d, rank);
}

/* Gemm (A [1,K] x B -> [1,N]) and MatMul with a constant right side. */
static int op_dense(ox_ctx *c, bool gemm)
{
    int xv = -1, bv, cv = -1;
    if (act_in(c, 0, &xv) || const_in(c, 1, true, &bv)) return -1;
    if (gemm && const_in(c, 2, false, &cv) != 0) return -1;
    int64_t ta = 0, tb = 0;
    float alpha = 1.f, beta = 1.f;
    if (gemm && (attr_int(c, "transA", 0, &ta) || attr_int(c, "transB", 0, &tb) || attr_float(c, "alpha", 1.f, &alpha) ||
                 attr_float(c, "beta", 1.f, &beta)))
        return -1;
    const ox_value *x = &c->values[xv];
    const dl_node *xn = node_of(c, xv);
    const ox_tensor *bt = &c->values[bv].t;
    char s[160];
    value_str(c, xv, s, sizeof s);
    int64_t K = (int64_t)xn->h * xn->w * xn->c;
    if (ta) return node_fail(c, DL_ERR_UNSUPPORTED, "transA=1 is not supported");
    if (x->rank < 1 || x->dims[x->rank - 1] != K || (gemm && x->rank != 2))
        return node_fail(c, DL_ERR_UNSUPPORTED, "input %s must be [1,K] with the batch dimension 1", s);
    if (bt->ndim != 2) return node_fail(c, DL_ERR_UNSUPPORTED, "the weight must be a 2-D constant");
    int64_t N = tb ? bt->dims[0] : bt->dims[1], KB = tb ? bt->dims[1] : bt->dims[0];
    if (KB != K || N < 1 || N > (1 << 20))
        return node_fail(c, DL_ERR_FORMAT, "weight [%lld,%lld] (transB=%lld) does not fit input %s", (long long)bt->dims[0],
                         (long long)bt->dims[1], (long long)tb, s);
    const float *wf, *cf = NULL;
    size_t nw, nc = 0;
    if (const_floats(c, bv, "weight", &wf, &nw) != 0) return -1;
    if (cv >= 0) {
        if (const_floats(c, cv, "bias", &cf, &nc) != 0) return -1;
        const ox_tensor *ct = &c->values[cv].t;
        bool ok = nc == 1 || (nc == (size_t)N && (ct->ndim == 1 || (ct->ndim == 2 && ct->dims[0] == 1)));
        if (!ok) return node_fail(c, DL_ERR_UNSUPPORTED, "bias C must be a scalar, [N] or [1,N]");
    }
    size_t cnt = (size_t)N * (size_t)K;
    float *w = malloc(sizeof(float) * cnt);
    float *b = cf ? malloc(sizeof(float) * (size_t)N) : NULL;
    if (!w || (cf && !b)) {
        free(w);
        free(b);
        return node_fail(c, DL_ERR_NOMEM, "out of memory");
    }
    /* ONNX column order is the node's CHW; the engine flattens HWC */
    const int64_t H = xn->h, W = xn->w, Cc = xn->c;
    for (int64_t o = 0; o < N; o++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t xx = 0; xx < W; xx++)
                for (int64_t ch = 0; ch < Cc; ch++) {
                    int64_t kon = (ch * H + y) * W + xx, ken = (y * W + xx) * Cc + ch;
                    float v = tb ? wf[o * K + kon] : wf[kon * N + o];
                    w[o * K + ken] = alpha * v;
                }
    if (b)
        for (int64_t o = 0; o < N; o++) b[o] = beta * (nc == 1 ? cf[0] : cf[o]);
    char nm[DL_NAME_MAX];
    make_node_name(c, "", nm);
    dl_node n = dl_node_make(DL_OP_DENSE, nm);
    n.n_inputs = 1;
    n.inputs[0] = x->node;
    n.units = (int)N;
    int64_t wd[2] = {N, K};
    int r = add_params(c, &n, w, 2, wd, b, N);
    free(w);
    free(b);
    if (r != 0) return -1;
    int idx = emit(c, &n);
    if (idx < 0) return -1;
    c->uses[x->node]--;
    int64_t od[OX_MAX_RANK];
    int rank = x->rank;
    memcpy(od, x->dims, sizeof(int64_t) * (size_t)rank);
    od[rank - 1] = N;
    bind(c, c->nodes[c->cur].out[0], idx, rank, od);
    return 0;
}

static int op_softmax(ox_ctx *c, bool log)
{
    int xv = -1;
    int64_t axis = 1;
    if (act_in(c, 0, &xv) || attr_int(c, "axis", c->opset >= 13 ? -1 : 1, &axis)) return -1;
    const ox_value *x = &c->values[xv];
    const ox_value *out = &c->values[c->nodes[c->cur].out[0]];
    if (axis < 0) axis += x->rank;
    bool chan = channel_layout(c, xv) && node_of(c, xv)->h * node_of(c, xv)->w == 1 && axis == 1;
    if (!chan) return node_fail(c, DL_ERR_UNSUPPORTED, "softmax must run over the classes of a [1,K] tensor");
    /* the classifier's final (log-)softmax: the model outputs logits */
    if (out->consumers == 1 && out->consumer == -2) {
        alias(c, xv, x->rank, x->dims);
        return 0;
    }
    if (log) return node_fail(c, DL_ERR_UNSUPPORTED, "LogSoftmax is supported only as the graph's final op");
    char nm[DL_NAME_MAX];
    make_node_name(c, "", nm);
    dl_node n = dl_node_make(DL_OP_SOFTMAX, nm);
    n.n_inputs = 1;
    n.inputs[0] = x->node;
    return emit_same_shape(c, &n, x);
}

static int op_pad(ox_ctx *c)
{
    int xv = -1, pv, vv = -1;
    int64_t p[8];
    size_t np = 0;
    char mode[16];
    if (act_in(c, 0, &xv) || want_spatial(c, xv) || attr_str(c, "mode", mode, sizeof mode)) return -1;
    if (mode[0] && strcmp(mode, "constant") != 0) return node_fail(c, DL_ERR_UNSUPPORTED, "mode '%s': only constant (zero) padding", mode);
    float value = 0.f;
    if (c->opset < 11) {
        int n;
        if (attr_ints(c, "pads", p, 8, &n) != 0 || attr_float(c, "value", 0.f, &value) != 0) return -1;
        np = n < 0 ? 0 : (size_t)n;
    } else {
        if (const_in(c, 1, true, &pv) || const_in(c, 2, false, &vv)) return -1;
        if (tensor_ints(c, &c->values[pv].t, p, 8, &np, "pads") != 0) return -1;
        if (vv >= 0 && const_scalar(c, vv, "constant_value", &value) != 0) return -1;
        if (c->nodes[c->cur].n_in > 3 && c->nodes[c->cur].in[3] >= 0)
            return node_fail(c, DL_ERR_UNSUPPORTED, "the axes input is not supported");
    }
    if (np != 8) return node_fail(c, DL_ERR_UNSUPPORTED, "pads has %zu values, expected 8 (4-D)", np);
    if (value != 0.f) return node_fail(c, DL_ERR_UNSUPPORTED, "padding value %g: only zero padding", (double)value);
    /* [n0, c0, h0, w0, n1, c1, h1, w1] */
    if (p[0] || p[1] || p[4] || p[5]) return node_fail(c, DL_ERR_UNSUPPORTED, "padding the batch or channel dimension");
    for (int k = 0; k < 8; k++)
        if (p[k] < 0 || p[k] > OX_MAX_PAD) return node_fail(c, DL_ERR_UNSUPPORTED, "pad %lld out of range 0..%d", (long long)p[k], OX_MAX_PAD);
    /* PyTorch writes a Pad of zeros in front of AveragePool: no copy for it */
    if (!p[2] && !p[3] && !p[6] && !p[7]) {
        alias(c, xv, 4, c->values[xv].dims);
        return 0;
    }
    int idx = emit_pad(c, c->values[xv].node, (int)p[2], (int)p[6], (int)p[3], (int)p[7]);
    if (idx < 0) return -1;
    c->uses[idx] = 0;
    c->uses[c->values[xv].node]--;
    int64_t od[4];
    node_dims(&c->g->nodes[idx], od);
    bind(c, c->nodes[c->cur].out[0], idx, 4, od);
    return 0;
}

static int op_constant(ox_ctx *c)
{
    const ox_node *on = &c->nodes[c->cur];
    if (on->n_out != 1) return node_fail(c, DL_ERR_FORMAT, "Constant needs one output");
    ox_value *v = &c->values[on->out[0]];
    ox_attr a;
    int r = get_attr(c, "value", &a);
    if (r < 0) return -1;
    if (r) {
        if (!a.has_t) return node_fail(c, DL_ERR_FORMAT, "attribute value holds no tensor");
        v->t = a.t;
        v->kind = V_CONST;
        return 0;
    }
    return node_fail(c, DL_ERR_UNSUPPORTED, "only Constant(value=tensor) is supported");
}

static int op_identity(ox_ctx *c)
{
    int xv = -1;
    const ox_node *on = &c->nodes[c->cur];
    if (only_first_output(c)) return -1;
    if (on->n_in >= 1 && on->in[0] >= 0 && c->values[on->in[0]].kind == V_CONST) {
        /* another name for a constant (exporters share initializers so) */
        ox_value *o = &c->values[on->out[0]];
        o->t = c->values[on->in[0]].t;
        o->kind = V_CONST;
        return 0;
    }
    if (act_in(c, 0, &xv)) return -1;
    const ox_value *x = &c->values[xv];
    alias(c, xv, x->rank, x->dims);
    return 0;
}

static size_t cat_slot(int a, int b, size_t cap)
{
    uint64_t h = ((uint64_t)(uint32_t)a * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(uint32_t)b * 0xc2b2ae3d27d4eb4full);
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* The engine concat node reading (a, b), when one was emitted before, else -1. */
static int find_concat(const ox_ctx *c, int a, int b)
{
    if (!c->cat_cap) return -1;
    for (size_t i = cat_slot(a, b, c->cat_cap);; i = (i + 1) & (c->cat_cap - 1)) {
        int k = c->cat_hash[i];
        if (k < 0) return -1;
        if (c->g->nodes[k].inputs[0] == a && c->g->nodes[k].inputs[1] == b) return k;
    }
}

static int remember_concat(ox_ctx *c, int idx)
{
    if ((size_t)(c->n_cat + 1) * 2 > c->cat_cap) { /* keep the table at most half full */
        size_t cap = c->cat_cap ? c->cat_cap * 2 : 256;
        int *h = malloc(sizeof *h * cap);
        if (!h) return node_fail(c, DL_ERR_NOMEM, "out of memory");
        memset(h, 0xff, sizeof *h * cap);
        for (size_t i = 0; i < c->cat_cap; i++) {
            int k = c->cat_hash[i];
            if (k < 0) continue;
            size_t j = cat_slot(c->g->nodes[k].inputs[0], c->g->nodes[k].inputs[1], cap);
            while (h[j] >= 0) j = (j + 1) & (cap - 1);
            h[j] = k;
        }
        free(c->cat_hash);
        c->cat_hash = h;
        c->cat_cap = cap;
    }
    const dl_node *n = &c->g->nodes[idx];
    size_t j = cat_slot(n->inputs[0], n->inputs[1], c->cat_cap);
    while (c->cat_hash[j] >= 0) j = (j + 1) & (c->cat_cap - 1);
    c->cat_hash[j] = idx;
    c->n_cat++;
    return 0;
}

/* Concat along the channel axis (1, or -3 of a 4-D / -1 of a [1,C] value)
 * of N computed tensors: a left-leaning chain of N-1 two-input engine
 * nodes. DenseNet concatenates [x0 .. xk] in layer k and [x0 .. xk+1] in
 * layer k+1: the chain of the shared prefix is reused, so a block costs one
 * node per layer instead of a quadratic number. */
static int op_concat(ox_ctx *c)
{
    const ox_node *on = &c->nodes[c->cur];
    int64_t axis = 0;
    ox_attr a;
    int r = get_attr(c, "axis", &a);
    if (r < 0) return -1;
    if (!r) return node_fail(c, DL_ERR_FORMAT, "attribute axis is missing");
    if (a.type != AT_INT) return node_fail(c, DL_ERR_FORMAT, "attribute axis: type %lld, expected INT", (long long)a.type);
    axis = a.i;
    if (on->n_in < 1) return node_fail(c, DL_ERR_FORMAT, "no inputs");
    int x0 = -1;
    if (act_in(c, 0, &x0) != 0) return -1;
    const ox_value *v0 = &c->values[x0];
    int rank = v0->rank;
    if (axis < -rank || axis >= rank) return node_fail(c, DL_ERR_FORMAT, "axis %lld out of range for rank %d", (long long)axis, rank);
    if (axis < 0) axis += rank;
    int64_t od[OX_MAX_RANK];
    memcpy(od, v0->dims, sizeof(int64_t) * (size_t)rank);
    od[1] = 0;
    for (int k = 0; k < on->n_in; k++) {
        int xv = -1;
        if (act_in(c, k, &xv) != 0) return -1;
        const ox_value *v = &c->values[xv];
        bool same = v->rank == rank;
        for (int d = 0; same && d < rank; d++) same = d == 1 || v->dims[d] == v0->dims[d];
        if (axis != 1 || !channel_layout(c, xv) || !same) {
            char s1[160], s2[160];
            value_str(c, x0, s1, sizeof s1);
            value_str(c, xv, s2, sizeof s2);
            return node_fail(c, DL_ERR_UNSUPPORTED,
                             "axis %lld of %s and %s: only the channel axis (1) of [1,C,H,W] or [1,C] tensors with "
                             "equal other dimensions can be concatenated",
                             (long long)axis, s1, s2);
        }
        od[1] += v->dims[1];
    }
    if (od[1] > (1 << 20)) return node_fail(c, DL_ERR_LIMIT, "%lld channels exceed %d", (long long)od[1], 1 << 20);
    int cur = v0->node;
    for (int k = 1; k < on->n_in; k++) {
        int b = c->values[on->in[k]].node;
        int idx = find_concat(c, cur, b);
        if (idx < 0) {
            char nm[DL_NAME_MAX], sfx[24] = "";
            if (k + 1 < on->n_in) snprintf(sfx, sizeof sfx, "#%d", k); /* the last link takes the ONNX name */
            make_node_name(c, sfx, nm);
            dl_node n = dl_node_make(DL_OP_CONCAT, nm);
            n.n_inputs = 2;
            n.inputs[0] = cur;
            n.inputs[1] = b;
            if ((idx = emit(c, &n)) < 0 || remember_concat(c, idx) != 0) return -1;
        }
        cur = idx;
    }
    for (int k = 0; k < on->n_in; k++) c->uses[c->values[on->in[k]].node]--; /* this node's reads */
    bind(c, on->out[0], cur, rank, od);
    return 0;
}

static int convert_node(ox_ctx *c, int ni)
{
    ox_node *n = &c->nodes[ni];
    c->cur = ni;
    if (n->skip) return 0;
    if (n->domain.n && !span_eq(n->domain, "ai.onnx"))
        return node_fail(c, DL_ERR_UNSUPPORTED, "operators of this domain are not supported");
    if (span_eq(n->op, "Constant")) return op_constant(c);
    if (n->n_out < 1 || n->out[0] < 0) return node_fail(c, DL_ERR_FORMAT, "no output");
    if (n->n_out > 1 && !span_eq(n->op, "BatchNormalization") && !span_eq(n->op, "MaxPool") && !span_eq(n->op, "Dropout"))
        return node_fail(c, DL_ERR_UNSUPPORTED, "%d outputs, expected 1", n->n_out);
    /* a node whose result nobody reads is skipped (dead code) */
    if (c->values[n->out[0]].consumers == 0) {
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && c->values[n->in[k]].kind == V_ACT) c->uses[c->values[n->in[k]].node]--;
        return 0;
    }
    if (span_eq(n->op, "Conv")) return op_conv(c);
    if (span_eq(n->op, "BatchNormalization")) return op_batchnorm(c);
    if (span_eq(n->op, "Relu")) return op_activation(c, DL_ACT_RELU);
    if (span_eq(n->op, "Clip")) return op_clip(c);
    if (span_eq(n->op, "HardSwish")) return op_activation(c, DL_ACT_HSWISH);
    if (span_eq(n->op, "Sigmoid")) return op_activation(c, DL_ACT_SIGMOID);
    if (span_eq(n->op, "HardSigmoid")) return op_hardsigmoid(c);
    if (span_eq(n->op, "Add")) return op_binary(c, '+');
    if (span_eq(n->op, "Sub")) return op_binary(c, '-');
    if (span_eq(n->op, "Mul")) return op_binary(c, '*');
    if (span_eq(n->op, "Div")) return op_binary(c, '/');
    if (span_eq(n->op, "MaxPool")) return op_pool(c, false, false);
    if (span_eq(n->op, "AveragePool")) return op_pool(c, true, false);
    if (span_eq(n->op, "GlobalAveragePool")) return op_pool(c, true, true);
    if (span_eq(n->op, "GlobalMaxPool")) return op_pool(c, false, true);
    if (span_eq(n->op, "ReduceMean")) return op_reducemean(c);
    if (span_eq(n->op, "Flatten")) return op_flatten(c);
    if (span_eq(n->op, "Reshape")) return op_reshape(c);
    if (span_eq(n->op, "Squeeze")) return op_squeeze(c, false);
    if (span_eq(n->op, "Unsqueeze")) return op_squeeze(c, true);
    if (span_eq(n->op, "Gemm")) return op_dense(c, true);
    if (span_eq(n->op, "MatMul")) return op_dense(c, false);
    if (span_eq(n->op, "Softmax")) return op_softmax(c, false);
    if (span_eq(n->op, "LogSoftmax")) return op_softmax(c, true);
    if (span_eq(n->op, "Pad")) return op_pad(c);
    if (span_eq(n->op, "Dropout") || span_eq(n->op, "Identity")) return op_identity(c);
    if (span_eq(n->op, "Concat")) return op_concat(c);
    return node_fail(c, DL_ERR_UNSUPPORTED, "operator is not supported");
}

/* ------------------------------------------------------------ model parsing */

static int count_field(ox_ctx *c, pb_span msg, uint32_t num, int *count, int limit, const char *what,
                       const char *field)
{
    pb_rd r = pb_reader(msg);
    pb_field f;
    int rc, n = 0;
    while ((rc = pb_next(c, &r, &f, what)) > 0) {
        if (f.num != num) continue;
        if (want_wt(c, &f, WT_LEN, what, field)) return -1;
        if (++n > limit) return dl_fail(c->err, DL_ERR_LIMIT, "onnx: %s: more than %d %s entries", what, limit, field);
    }
    if (rc < 0) return -1;
    *count = n;
    return 0;
}

static int collect_field(ox_ctx *c, pb_span msg, uint32_t num, pb_span *out, int n, const char *what)
{
    pb_rd r = pb_reader(msg);
    pb_field f;
    int rc, k = 0;
    while ((rc = pb_next(c, &r, &f, what)) > 0)
        if (f.num == num && k < n) out[k++] = f.s;
    return rc < 0 ? -1 : 0;
}

static int parse_node(ox_ctx *c, int ni)
{
    ox_node *n = &c->nodes[ni];
    char what[48];
    snprintf(what, sizeof what, "graph.node[%d]", ni);
    pb_rd r = pb_reader(n->msg);
    pb_field f;
    int rc;
    while ((rc = pb_next(c, &r, &f, what)) > 0) {
        switch (f.num) {
        case NP_INPUT:
            if (want_wt(c, &f, WT_LEN, what, "input")) return -1;
            if (n->n_in_file < INT32_MAX) n->n_in_file++; /* names collected by collect_inputs */
            break;
        case NP_OUTPUT:
            if (want_wt(c, &f, WT_LEN, what, "output")) return -1;
            if (n->n_out >= OX_MAX_OUT)
                return dl_fail(c->err, DL_ERR_UNSUPPORTED, "onnx: %s: more than %d outputs", what, OX_MAX_OUT);
            n->out_names[n->n_out++] = f.s;
            break;
        case NP_NAME:
            if (want_wt(c, &f, WT_LEN, what, "name")) return -1;
            n->name = f.s;
            break;
        case NP_OP_TYPE:
            if (want_wt(c, &f, WT_LEN, what, "op_type")) return -1;
            n->op = f.s;
            break;
        case NP_DOMAIN:
            if (want_wt(c, &f, WT_LEN, what, "domain")) return -1;
            n->domain = f.s;
            break;
        case NP_ATTRIBUTE: {
            ox_attr a;
            if (want_wt(c, &f, WT_LEN, what, "attribute") || parse_attr(c, f.s, &a, what)) return -1;
            break;
        }
        default: break;
        }
    }
    if (rc < 0) return -1;
    if (n->op.n == 0) return dl_fail(c->err, DL_ERR_FORMAT, "onnx: %s has no op_type", what);
    return 0;
}

/* Node ni's first n->n_in input names (n->in_names sized by parse_node's count). */
static int collect_inputs(ox_ctx *c, int ni)
{
    ox_node *n = &c->nodes[ni];
    pb_rd r = pb_reader(n->msg);
    pb_field f;
    int rc;
    int k = 0;
    while ((rc = pb_next(c, &r, &f, "node")) > 0)
        if (f.num == NP_INPUT && f.wt == WT_LEN && k < n->n_in) n->in_names[k++] = f.s;
    return rc < 0 ? -1 : 0;
}

/* ValueInfoProto of the graph input: elem type and dims (-1 symbolic). */
static int parse_input_info(ox_ctx *c, pb_span msg, int64_t *elem, int64_t *dims, int *rank)
{
    pb_rd r = pb_reader(msg), tr, ttr, sr, dr;
    pb_field f, tf, ttf, sf, df;
    int rc;
    *elem = 0;
    *rank = -1;
    while ((rc = pb_next(c, &r, &f, "graph.input")) > 0) {
        if (f.num != VI_TYPE) continue;
        if (want_wt(c, &f, WT_LEN, "graph.input", "type")) return -1;
        tr = pb_reader(f.s);
        while ((rc = pb_next(c, &tr, &tf, "graph.input.type")) > 0) {
            if (tf.num != TY_TENSOR) continue;
            if (want_wt(c, &tf, WT_LEN, "graph.input.type", "tensor_type")) return -1;
            ttr = pb_reader(tf.s);
            while ((rc = pb_next(c, &ttr, &ttf, "graph.input.type.tensor_type")) > 0) {
                if (ttf.num == TT_ELEM) {
                    if (want_wt(c, &ttf, WT_VARINT, "graph.input.type.tensor_type", "elem_type")) return -1;
                    *elem = (int64_t)ttf.v;
                } else if (ttf.num == TT_SHAPE) {
                    if (want_wt(c, &ttf, WT_LEN, "graph.input.type.tensor_type", "shape")) return -1;
                    *rank = 0;
                    sr = pb_reader(ttf.s);
                    while ((rc = pb_next(c, &sr, &sf, "graph.input shape")) > 0) {
                        if (sf.num != SH_DIM) continue;
                        if (want_wt(c, &sf, WT_LEN, "graph.input shape", "dim")) return -1;
                        if (*rank >= OX_MAX_RANK)
                            return dl_fail(c->err, DL_ERR_UNSUPPORTED, "onnx: graph input rank exceeds %d", OX_MAX_RANK);
                        int64_t d = -1;
                        dr = pb_reader(sf.s);
                        while ((rc = pb_next(c, &dr, &df, "graph.input dim")) > 0)
                            if (df.num == DIM_VALUE) {
                                if (want_wt(c, &df, WT_VARINT, "graph.input dim", "dim_value")) return -1;
                                d = (int64_t)df.v;
                            }
                        if (rc < 0) return -1;
                        dims[(*rank)++] = d;
                    }
                    if (rc < 0) return -1;
                }
            }
            if (rc < 0) return -1;
        }
        if (rc < 0) return -1;
    }
    return rc < 0 ? -1 : 0;
}

static pb_span vi_name(ox_ctx *c, pb_span msg, int *rc)
{
    pb_rd r = pb_reader(msg);
    pb_field f;
    pb_span name = {NULL, 0};
    while ((*rc = pb_next(c, &r, &f, "value_info")) > 0)
        if (f.num == VI_NAME && f.wt == WT_LEN) name = f.s;
    return name;
}

static int convert(ox_ctx *c)
{
    dl_error *err = c->err;
    pb_span model = {c->base, c->size}, graph = {NULL, 0};
    bool have_graph = false;
    pb_rd r = pb_reader(model);
    pb_field f;
    int rc;
    c->opset = -1;
    c->cur = -1;
    if (c->size == 0) return dl_fail(err, DL_ERR_FORMAT, "onnx: empty file");
    if (c->size > (uint64_t)DL_MAX_MODEL_BYTES) return dl_fail(err, DL_ERR_LIMIT, "onnx: file exceeds the limit");
    while ((rc = pb_next(c, &r, &f, "model")) > 0) {
        if (f.num == MP_IR_VERSION) {
            if (want_wt(c, &f, WT_VARINT, "model", "ir_version")) return -1;
            c->ir_version = (int64_t)f.v;
        } else if (f.num == MP_GRAPH) {
            if (want_wt(c, &f, WT_LEN, "model", "graph")) return -1;
            graph = f.s;
            have_graph = true;
        } else if (f.num == MP_OPSET) {
            if (want_wt(c, &f, WT_LEN, "model", "opset_import")) return -1;
            pb_rd orr = pb_reader(f.s);
            pb_field of;
            pb_span dom = {NULL, 0};
            int64_t ver = -1;
            while ((rc = pb_next(c, &orr, &of, "model.opset_import")) > 0) {
                if (of.num == OS_DOMAIN) {
                    if (want_wt(c, &of, WT_LEN, "model.opset_import", "domain")) return -1;
                    dom = of.s;
                } else if (of.num == OS_VERSION) {
                    if (want_wt(c, &of, WT_VARINT, "model.opset_import", "version")) return -1;
                    ver = (int64_t)of.v;
                }
            }
            if (rc < 0) return -1;
            if (dom.n == 0 || span_eq(dom, "ai.onnx")) c->opset = ver;
        }
    }
    if (rc < 0) return -1;
    if (!have_graph) return dl_fail(err, DL_ERR_FORMAT, "onnx: the file has no graph (not an ONNX model?)");
    if (c->opset < 0) return dl_fail(err, DL_ERR_FORMAT, "onnx: no opset_import for the default domain");
    if (c->opset < 7 || c->opset > 21)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "onnx: opset %lld is not supported (7..21; tested 11..18)", (long long)c->opset);

    int sparse = 0;
    if (count_field(c, graph, GP_NODE, &c->n_nodes, OX_MAX_NODES, "graph", "node") ||
        count_field(c, graph, GP_INITIALIZER, &c->n_inits, OX_MAX_INITS, "graph", "initializer") ||
        count_field(c, graph, GP_INPUT, &c->n_inputs, OX_MAX_GRAPH_IO, "graph", "input") ||
        count_field(c, graph, GP_OUTPUT, &c->n_outputs, OX_MAX_OUTPUTS, "graph", "output") ||
        count_field(c, graph, GP_SPARSE_INIT, &sparse, 1 << 20, "graph", "sparse_initializer"))
        return -1;
    if (sparse) return dl_fail(err, DL_ERR_UNSUPPORTED, "onnx: sparse initializers are not supported");
    if (c->n_nodes == 0) return dl_fail(err, DL_ERR_FORMAT, "onnx: the graph has no nodes");
    if (c->n_outputs != 1)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "onnx: the graph has %d outputs, expected 1 (the logits)", c->n_outputs);
    c->init_msgs = calloc((size_t)c->n_inits + 1, sizeof *c->init_msgs);
    c->input_msgs = calloc((size_t)c->n_inputs + 1, sizeof *c->input_msgs);
    c->output_msgs = calloc((size_t)c->n_outputs + 1, sizeof *c->output_msgs);
    c->nodes = calloc((size_t)c->n_nodes, sizeof *c->nodes);
    if (!c->init_msgs || !c->input_msgs || !c->output_msgs || !c->nodes)
        return dl_fail(err, DL_ERR_NOMEM, "onnx: out of memory for %d nodes", c->n_nodes);
    if (collect_field(c, graph, GP_INITIALIZER, c->init_msgs, c->n_inits, "graph") ||
        collect_field(c, graph, GP_INPUT, c->input_msgs, c->n_inputs, "graph") ||
        collect_field(c, graph, GP_OUTPUT, c->output_msgs, c->n_outputs, "graph"))
        return -1;
    pb_span *node_msgs = malloc(sizeof *node_msgs * (size_t)c->n_nodes);
    if (!node_msgs) return dl_fail(err, DL_ERR_NOMEM, "onnx: out of memory");
    rc = collect_field(c, graph, GP_NODE, node_msgs, c->n_nodes, "graph");
    for (int i = 0; i < c->n_nodes; i++) c->nodes[i].msg = node_msgs[i];
    free(node_msgs);
    if (rc) return -1;
    size_t n_out_total = 0, n_in_total = 0;
    for (int i = 0; i < c->n_nodes; i++) {
        if (parse_node(c, i) != 0) return -1;
        n_out_total += (size_t)c->nodes[i].n_out;
        /* more than OX_MAX_IN is refused below, with the node's name */
        c->nodes[i].n_in = c->nodes[i].n_in_file < OX_MAX_IN ? c->nodes[i].n_in_file : OX_MAX_IN;
        n_in_total += (size_t)c->nodes[i].n_in;
        if (n_in_total > OX_MAX_IN_TOTAL)
            return dl_fail(err, DL_ERR_LIMIT, "onnx: the nodes have more than %d inputs in total", OX_MAX_IN_TOTAL);
    }
    c->in_names_all = malloc(sizeof *c->in_names_all * (n_in_total + 1));
    c->in_all = malloc(sizeof *c->in_all * (n_in_total + 1));
    if (!c->in_names_all || !c->in_all) return dl_fail(err, DL_ERR_NOMEM, "onnx: out of memory for %zu node inputs", n_in_total);
    for (int i = 0, off = 0; i < c->n_nodes; off += c->nodes[i].n_in, i++) {
        c->nodes[i].in_names = c->in_names_all + off;
        c->nodes[i].in = c->in_all + off;
        if (collect_inputs(c, i) != 0) return -1;
    }

    /* values: inputs + initializers + node outputs */
    size_t cap = (size_t)c->n_inputs + (size_t)c->n_inits + n_out_total + 1;
    c->cap_values = (int)cap;
    c->hash_cap = 16;
    while (c->hash_cap < cap * 2) c->hash_cap *= 2;
    c->values = calloc(cap, sizeof *c->values);
    c->hash = malloc(sizeof *c->hash * c->hash_cap);
    if (!c->values || !c->hash) return dl_fail(err, DL_ERR_NOMEM, "onnx: out of memory for %zu values", cap);
    memset(c->hash, 0xff, sizeof *c->hash * c->hash_cap);

    for (int i = 0; i < c->n_inits; i++) {
        ox_tensor t;
        char what[48];
        snprintf(what, sizeof what, "graph.initializer[%d]", i);
        if (parse_tensor(c, c->init_msgs[i], &t, what) != 0) return -1;
        int vi = new_value(c, t.name, V_CONST, what);
        if (vi < 0) return -1;
        c->values[vi].t = t;
    }
    int input_vi = -1;
    int64_t in_elem = 0, in_dims[OX_MAX_RANK];
    int in_rank = -1;
    for (int i = 0; i < c->n_inputs; i++) {
        pb_span name = vi_name(c, c->input_msgs[i], &rc);
        if (rc < 0) return -1;
        if (find_value(c, name) >= 0 && c->values[find_value(c, name)].kind == V_CONST) continue;
        if (input_vi >= 0)
            return dl_fail(err, DL_ERR_UNSUPPORTED, "onnx: the graph has more than one (non-initializer) input");
        if ((input_vi = new_value(c, name, V_INPUT, "graph input")) < 0) return -1;
        if (parse_input_info(c, c->input_msgs[i], &in_elem, in_dims, &in_rank) != 0) return -1;
    }
    if (input_vi < 0) return dl_fail(err, DL_ERR_FORMAT, "onnx: the graph has no input");
    char inm[64];
    span_str(c->values[input_vi].name, inm, sizeof inm);
    if (in_elem != DT_FLOAT)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "onnx: input '%s' has element type %s, expected FLOAT", inm,
                       dtype_name(in_elem));
    if (in_rank != 4 || (in_dims[0] != 1 && in_dims[0] != -1) || in_dims[1] != 3)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "onnx: input '%s' must be [N,3,H,W] (NCHW RGB, N = 1 or symbolic)", inm);
    int H = c->in_h > 0 ? c->in_h : (int)(in_dims[2] > 0 && in_dims[2] <= DL_MAX_IMAGE_SIDE ? in_dims[2] : 0);
    int W = c->in_w > 0 ? c->in_w : (int)(in_dims[3] > 0 && in_dims[3] <= DL_MAX_IMAGE_SIDE ? in_dims[3] : 0);
    if (H < 1 || W < 1)
        return dl_fail(err, DL_ERR_ARG, "onnx: input '%s' has a symbolic or invalid size: give the input size (--size WxH)",
                       inm);
    if (H > 8192 || W > 8192) return dl_fail(err, DL_ERR_LIMIT, "onnx: input size %dx%d exceeds 8192", W, H);

    /* node inputs and outputs -> values, in order (the graph must be sorted) */
    for (int i = 0; i < c->n_nodes; i++) {
        ox_node *n = &c->nodes[i];
        c->cur = i;
        if (n->n_in_file > OX_MAX_IN)
            return node_fail(c, DL_ERR_UNSUPPORTED, "%d inputs exceed the limit of %d", n->n_in_file, OX_MAX_IN);
        for (int k = 0; k < n->n_in; k++) {
            n->in[k] = -1;
            if (n->in_names[k].n == 0) continue; /* absent optional input */
            int vi = find_value(c, n->in_names[k]);
            if (vi < 0) {
                char nm[72];
                span_str(n->in_names[k], nm, sizeof nm);
                return node_fail(c, DL_ERR_FORMAT,
                                 "input '%s' is not a graph input, an initializer or an output of an earlier node "
                                 "(unknown name, or the nodes are not in topological order)",
                                 nm);
            }
            n->in[k] = vi;
            c->values[vi].consumers++;
            c->values[vi].consumer = i;
        }
        for (int k = 0; k < n->n_out; k++) {
            n->out[k] = -1;
            if (n->out_names[k].n == 0) continue;
            char what[48];
            snprintf(what, sizeof what, "output %d of node %d", k, i);
            int vi = new_value(c, n->out_names[k], V_NONE, what);
            if (vi < 0) return -1;
            c->values[vi].producer = i;
            n->out[k] = vi;
        }
    }
    c->cur = -1;
    pb_span oname = vi_name(c, c->output_msgs[0], &rc);
    if (rc < 0) return -1;
    int out_vi = find_value(c, oname);
    if (out_vi < 0) return dl_fail(err, DL_ERR_FORMAT, "onnx: the graph output is not computed by any node");
    c->values[out_vi].consumers++;
    c->values[out_vi].consumer = -2; /* the graph output */

    /* x * Sigmoid(x) = SiLU, x * HardSigmoid(x; 1/6, 1/2) = hard-swish */
    for (int i = 0; i < c->n_nodes; i++) {
        ox_node *n = &c->nodes[i];
        bool sig = span_eq(n->op, "Sigmoid"), hsig = span_eq(n->op, "HardSigmoid");
        if ((!sig && !hsig) || n->domain.n || n->n_in != 1 || n->n_out != 1 || n->in[0] < 0 || n->out[0] < 0) continue;
        if (hsig) {
            bool ok;
            c->cur = i;
            if (hardsigmoid_is_std(c, &ok) != 0) return -1;
            c->cur = -1;
            if (!ok) continue;
        }
        const ox_value *s = &c->values[n->out[0]];
        if (s->consumers != 1 || s->consumer < 0) continue;
        ox_node *m = &c->nodes[s->consumer];
        if (!span_eq(m->op, "Mul") || m->n_in != 2) continue;
        int x = n->in[0];
        if (!((m->in[0] == x && m->in[1] == n->out[0]) || (m->in[1] == x && m->in[0] == n->out[0]))) continue;
        n->skip = true;
        m->gate_act = sig ? DL_ACT_SILU : DL_ACT_HSWISH;
        m->gate_src = x;
        c->values[x].consumers--; /* the gate no longer reads x */
        c->values[n->out[0]].consumers = 0;
    }

    /* the input node */
    dl_node in = dl_node_make(DL_OP_INPUT, "input");
    in.h = H;
    in.w = W;
    in.c = 3;
    if (dl_graph_add_node(c->g, &in, err) < 0) return dl_fail_prefix(err, "onnx: input node");
    if (grow_uses(c, 1) != 0) return -1;
    int64_t d0[4] = {1, 3, H, W};
    bind(c, input_vi, 0, 4, d0);

    for (int i = 0; i < c->n_nodes; i++)
        if (convert_node(c, i) != 0) return -1;
    c->cur = -1;

    const ox_value *ov = &c->values[out_vi];
    if (ov->kind != V_ACT || ov->node < 1)
        return dl_fail(err, DL_ERR_FORMAT, "onnx: the graph output is not computed from the input");
    const dl_node *on = &c->g->nodes[ov->node];
    if (on->h * on->w != 1) {
        char s[160];
        value_str(c, out_vi, s, sizeof s);
        return dl_fail(err, DL_ERR_UNSUPPORTED, "onnx: the graph output %s is not a [1, classes] vector", s);
    }
    c->g->output = ov->node;
    if (dl_graph_infer(c->g, err) != 0) return dl_fail_prefix(err, "onnx");
    c->g->features = -1;
    for (int i = 1; i < c->g->n_nodes && i < c->g->output; i++) {
        const dl_node *gn = &c->g->nodes[i];
        if (gn->op == DL_OP_GAP) c->g->features = i;
    }
    return 0;
}

int dl_onnx_to_graph(const uint8_t *data, size_t size, int width, int height, dl_graph *g, dl_error *err)
{
    dl_graph_init(g);
    if (!data && size) return dl_fail(err, DL_ERR_ARG, "onnx: NULL data");
    if (width < 0 || height < 0 || width > 8192 || height > 8192)
        return dl_fail(err, DL_ERR_ARG, "onnx: input size %dx%d out of range", width, height);
    dl_error local;
    if (!err) err = &local;
    ox_ctx c;
    memset(&c, 0, sizeof c);
    static const uint8_t empty[1] = {0};
    c.base = data ? data : empty;
    c.size = size;
    c.err = err;
    c.g = g;
    c.in_w = width;
    c.in_h = height;
    int r = convert(&c);
    for (int i = 0; i < c.n_values; i++) free(c.values[i].f);
    free(c.values);
    free(c.hash);
    free(c.nodes);
    free(c.init_msgs);
    free(c.input_msgs);
    free(c.output_msgs);
    free(c.uses);
    free(c.read);
    free(c.cat_hash);
    free(c.in_names_all);
    free(c.in_all);
    if (r != 0) {
        dl_graph_free(g);
        dl_graph_init(g);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ the model file */

void dl_onnx_import_options_defaults(dl_onnx_import_options *o)
{
    memset(o, 0, sizeof *o);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    memcpy(o->mean, mean, sizeof mean);
    memcpy(o->std, stdv, sizeof stdv);
    o->scale = 1.f;
}

/* Class names: one per line, or a JSON array of strings. */
static int read_classes(const char *path, int k, char **names, dl_error *err)
{
    uint8_t *d = NULL;
    size_t n = 0;
    if (dl_read_file(path, 16u << 20, &d, &n, err)) return -1;
    int got = 0, rc = -1;
    size_t p = 0;
    while (p < n && (d[p] == ' ' || d[p] == '\t' || d[p] == '\r' || d[p] == '\n')) p++;
    if (p < n && d[p] == '[') {
        cJSON *j = cJSON_ParseWithLength((const char *)d, n);
        if (!cJSON_IsArray(j)) {
            cJSON_Delete(j);
            dl_fail(err, DL_ERR_FORMAT, "%s: not a valid JSON list of class names", path);
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, j) {
            if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) > 200) {
                cJSON_Delete(j);
                dl_fail(err, DL_ERR_FORMAT, "%s: class %d is not a non-empty string of at most 200 bytes", path, got);
                goto out;
            }
            if (got < k && !(names[got] = strdup(it->valuestring))) {
                cJSON_Delete(j);
                dl_fail(err, DL_ERR_NOMEM, "out of memory");
                goto out;
            }
            got++;
        }
        cJSON_Delete(j);
    } else {
        p = 0;
        while (p < n) {
            size_t e = p;
            while (e < n && d[e] != '\n') e++;
            size_t len = e - p;
            if (len && d[p + len - 1] == '\r') len--;
            if (len) {
                if (len > 200) {
                    dl_fail(err, DL_ERR_FORMAT, "%s: line %d is longer than 200 bytes", path, got + 1);
                    goto out;
                }
                if (memchr(d + p, '\0', len)) {
                    dl_fail(err, DL_ERR_FORMAT, "%s: class %d contains a NUL byte", path, got);
                    goto out;
                }
                if (got < k) {
                    names[got] = malloc(len + 1);
                    if (!names[got]) {
                        dl_fail(err, DL_ERR_NOMEM, "out of memory");
                        goto out;
                    }
                    memcpy(names[got], d + p, len);
                    names[got][len] = '\0';
                }
                got++;
            }
            p = e + 1;
        }
    }
    if (got != k) {
        dl_fail(err, DL_ERR_DATA, "%s: %d class names for a model with %d outputs", path, got, k);
        goto out;
    }
    rc = 0;
out:
    free(d);
    return rc;
}

int dl_import_onnx(const char *onnx_path, const dl_onnx_import_options *opts, const char *out_path, dl_error *err)
{
    dl_onnx_import_options def;
    if (!opts) {
        dl_onnx_import_options_defaults(&def);
        opts = &def;
    }
    if (!onnx_path || !out_path) return dl_fail(err, DL_ERR_ARG, "NULL path");
    const char *resize = opts->resize ? opts->resize : "squash";
    if (!strcmp(resize, "crop")) resize = "center_crop";
    if (strcmp(resize, "squash") != 0 && strcmp(resize, "center_crop") != 0 && strcmp(resize, "pad") != 0)
        return dl_fail(err, DL_ERR_ARG, "resize '%s': expected squash, center_crop or pad", resize);
    if (!(opts->scale > 0.f) || !isfinite(opts->scale))
        return dl_fail(err, DL_ERR_ARG, "scale %g must be positive", (double)opts->scale);
    dl_preprocess pre;
    memset(&pre, 0, sizeof pre);
    snprintf(pre.resize, sizeof pre.resize, "%s", resize);
    for (int k = 0; k < 3; k++) {
        /* x = (p / 255 * scale - mean) / std = (p - 255 mean / scale) / (255 std / scale) */
        if (!isfinite(opts->mean[k]) || !(opts->std[k] > 0.f) || !isfinite(opts->std[k]))
            return dl_fail(err, DL_ERR_ARG, "mean/std channel %d: %g / %g (std must be positive)", k,
                           (double)opts->mean[k], (double)opts->std[k]);
        pre.mean[k] = 255.f * opts->mean[k] / opts->scale;
        pre.std[k] = 255.f * opts->std[k] / opts->scale;
    }
    if (opts->provenance_json) {
        cJSON *pj = cJSON_Parse(opts->provenance_json);
        bool ok = cJSON_IsObject(pj);
        cJSON_Delete(pj);
        if (!ok) return dl_fail(err, DL_ERR_ARG, "provenance is not a JSON object");
    }
    uint8_t *data = NULL;
    size_t size = 0;
    dl_model m;
    memset(&m, 0, sizeof m);
    dl_graph_init(&m.graph);
    int rc = -1;
    if (dl_read_file(onnx_path, (size_t)DL_MAX_MODEL_BYTES, &data, &size, err)) return -1;
    if (dl_onnx_to_graph(data, size, opts->width, opts->height, &m.graph, err)) {
        dl_fail_prefix(err, "%s", onnx_path);
        goto out;
    }
    pre.width = m.graph.nodes[0].w;
    pre.height = m.graph.nodes[0].h;
    m.pre = pre;
    const dl_node *o = &m.graph.nodes[m.graph.output];
    m.num_classes = o->c;
    m.class_names = calloc((size_t)o->c, sizeof(char *));
    m.class_long_names = calloc((size_t)o->c, sizeof(char *));
    if (!m.class_names || !m.class_long_names) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (opts->classes_path && read_classes(opts->classes_path, o->c, m.class_names, err)) goto out;
    for (int i = 0; i < o->c; i++) {
        char buf[32];
        if (!m.class_names[i]) {
            snprintf(buf, sizeof buf, "class_%d", i);
            m.class_names[i] = strdup(buf);
        }
        m.class_long_names[i] = m.class_names[i] ? strdup(m.class_names[i]) : NULL;
        if (!m.class_names[i] || !m.class_long_names[i]) {
            dl_fail(err, DL_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    snprintf(m.name, sizeof m.name, "%s", opts->name ? opts->name : "imported");
    m.temperature = 1.f;
    if (opts->provenance_json) {
        m.provenance_json = strdup(opts->provenance_json);
    } else {
        cJSON *pj = cJSON_CreateObject();
        const char *base = strrchr(onnx_path, '/');
        cJSON_AddStringToObject(pj, "source", base ? base + 1 : onnx_path);
        cJSON_AddStringToObject(pj, "imported_from", "onnx");
        m.provenance_json = cJSON_PrintUnformatted(pj);
        cJSON_Delete(pj);
    }
    if (!m.provenance_json) {
        dl_fail(err, DL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (dl_model_save_verified(&m, out_path, err)) goto out;
    rc = 0;
out:
    free(data);
    dl_model_clear(&m);
    return rc;
}
