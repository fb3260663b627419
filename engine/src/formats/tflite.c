/* SPDX-License-Identifier: GPL-3.0-or-later */
/* DermLens engine: TFLite flatbuffer (schema "TFL3") -> float32 graph.
 *
 * The file is untrusted. The FlatBuffers reader below is written for this
 * converter: every uoffset, vtable, vector length and string is checked
 * against the buffer with overflow-safe arithmetic, nothing assumes
 * alignment (values are assembled from little-endian bytes), nothing
 * recurses, and every loop is bounded by a vector length that was itself
 * checked against the file size. Errors name the object and field.
 */
#include "formats/formats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ limits */

#define TFL_MAX_RANK 8
#define TFL_MAX_DIM (1 << 24)        /* keeps every dim inside an int */
#define TFL_MAX_OPS 4096             /* MobileNet-class models use < 100 */
#define TFL_MAX_TENSORS (1 << 20)
#define TFL_MAX_KERNEL 4096
#define TFL_MAX_PAD 4096
#define TFL_MAX_OP_IO 64             /* inputs or outputs of one op */
/* Dequantized parameters, in floats (1 GiB). A hostile file can point many
 * tensors at one buffer, so the budget counts every dequantized copy. */
#define TFL_MAX_FLOATS ((size_t)1 << 28)

/* ------------------------------------------------------------ schema facts */

enum {
    TFL_FLOAT32 = 0, TFL_FLOAT16 = 1, TFL_INT32 = 2, TFL_UINT8 = 3, TFL_INT64 = 4,
    TFL_INT8 = 9
};

enum {
    OP_ADD = 0, OP_AVERAGE_POOL_2D = 1, OP_CONCATENATION = 2, OP_CONV_2D = 3,
    OP_DEPTHWISE_CONV_2D = 4, OP_DEQUANTIZE = 6, OP_FULLY_CONNECTED = 9,
    OP_LOGISTIC = 14, OP_MAX_POOL_2D = 17, OP_MUL = 18, OP_RELU = 19, OP_RELU6 = 21,
    OP_RESHAPE = 22, OP_RESIZE_BILINEAR = 23, OP_SOFTMAX = 25, OP_TANH = 28,
    OP_CUSTOM = 32, OP_PAD = 34, OP_TRANSPOSE = 39, OP_MEAN = 40, OP_SUB = 41,
    OP_SQUEEZE = 43, OP_STRIDED_SLICE = 45, OP_PADV2 = 60, OP_TRANSPOSE_CONV = 67,
    OP_HARD_SWISH = 117, OP_QUANTIZE = 114
};

/* BuiltinOptions union type tags (0 = NONE). */
enum {
    OPT_CONV2D = 1, OPT_DEPTHWISE = 2, OPT_POOL2D = 5, OPT_FULLY_CONNECTED = 8,
    OPT_SOFTMAX = 9, OPT_ADD = 11, OPT_RESHAPE = 17, OPT_PAD = 22, OPT_REDUCER = 27
};

static const char *tfl_op_name(int32_t code)
{
    switch (code) {
    case OP_ADD: return "ADD";
    case OP_AVERAGE_POOL_2D: return "AVERAGE_POOL_2D";
    case OP_CONCATENATION: return "CONCATENATION";
    case OP_CONV_2D: return "CONV_2D";
    case OP_DEPTHWISE_CONV_2D: return "DEPTHWISE_CONV_2D";
    case OP_DEQUANTIZE: return "DEQUANTIZE";
    case OP_FULLY_CONNECTED: return "FULLY_CONNECTED";
    case OP_LOGISTIC: return "LOGISTIC";
    case OP_MAX_POOL_2D: return "MAX_POOL_2D";
    case OP_MUL: return "MUL";
    case OP_RELU: return "RELU";
    case OP_RELU6: return "RELU6";
    case OP_RESHAPE: return "RESHAPE";
    case OP_RESIZE_BILINEAR: return "RESIZE_BILINEAR";
    case OP_SOFTMAX: return "SOFTMAX";
    case OP_TANH: return "TANH";
    case OP_CUSTOM: return "CUSTOM";
    case OP_PAD: return "PAD";
    case OP_TRANSPOSE: return "TRANSPOSE";
    case OP_MEAN: return "MEAN";
    case OP_SUB: return "SUB";
    case OP_SQUEEZE: return "SQUEEZE";
    case OP_STRIDED_SLICE: return "STRIDED_SLICE";
    case OP_PADV2: return "PADV2";
    case OP_TRANSPOSE_CONV: return "TRANSPOSE_CONV";
    case OP_QUANTIZE: return "QUANTIZE";
    case OP_HARD_SWISH: return "HARD_SWISH";
    default: return "builtin";
    }
}

static const char *tfl_type_name(int type)
{
    static const char *names[] = {"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING",
                                  "BOOL", "INT16", "COMPLEX64", "INT8", "FLOAT64"};
    if (type >= 0 && type < (int)(sizeof names / sizeof names[0])) return names[type];
    return "unknown";
}

/* ------------------------------------------------------------ flatbuffer reader */

typedef struct {
    const uint8_t *d;
    size_t n;
} fb_buf;

typedef struct {
    size_t pos;    /* table start (its soffset to the vtable) */
    size_t vt;     /* vtable start */
    size_t vtsize; /* vtable bytes */
    size_t tsize;  /* inline table bytes */
} fb_table;

typedef struct {
    size_t pos;   /* first element */
    uint32_t len; /* element count */
} fb_vec;

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32); }

static int32_t rd_i32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static int64_t rd_i64(const uint8_t *p)
{
    uint64_t u = rd_u64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* [pos, pos+len) lies inside the buffer. */
static bool fb_in(const fb_buf *b, size_t pos, size_t len) { return pos <= b->n && len <= b->n - pos; }

static int fb_table_at(const fb_buf *b, size_t pos, fb_table *t, dl_error *err)
{
    if (!fb_in(b, pos, 4))
        return dl_fail(err, DL_ERR_FORMAT, "table at byte %zu lies outside the file (%zu bytes)", pos, b->n);
    int64_t vt = (int64_t)pos - (int64_t)rd_i32(b->d + pos);
    if (vt < 0 || !fb_in(b, (size_t)vt, 4))
        return dl_fail(err, DL_ERR_FORMAT, "table at byte %zu: vtable at %lld lies outside the file", pos,
                       (long long)vt);
    size_t vts = rd_u16(b->d + vt), ts = rd_u16(b->d + vt + 2);
    if (vts < 4 || (vts & 1) || !fb_in(b, (size_t)vt, vts))
        return dl_fail(err, DL_ERR_FORMAT, "table at byte %zu: bad vtable size %zu", pos, vts);
    if (ts < 4 || !fb_in(b, pos, ts))
        return dl_fail(err, DL_ERR_FORMAT, "table at byte %zu: size %zu runs past the end of the file", pos,
                       ts);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vtsize = vts;
    t->tsize = ts;
    return 0;
}

/* Locate field `id` of `width` bytes. 1 present (*fpos set), 0 absent, -1 error. */
static int fb_field(const fb_buf *b, const fb_table *t, int id, size_t width, size_t *fpos, dl_error *err)
{
    size_t slot = 4 + 2 * (size_t)id;
    if (slot + 2 > t->vtsize) return 0;
    size_t off = rd_u16(b->d + t->vt + slot);
    if (off == 0) return 0;
    if (off < 4 || off + width > t->tsize)
        return dl_fail(err, DL_ERR_FORMAT, "field %d (offset %zu, %zu bytes) lies outside its table (%zu bytes)",
                       id, off, width, t->tsize);
    *fpos = t->pos + off;
    return 1;
}

/* Follow the uoffset stored at fpos (already known to be inside the file). */
static int fb_deref(const fb_buf *b, size_t fpos, size_t *target, dl_error *err)
{
    size_t to = 0;
    if (!dl_add_size(fpos, rd_u32(b->d + fpos), &to) || to >= b->n)
        return dl_fail(err, DL_ERR_FORMAT, "offset at byte %zu points outside the file (%zu bytes)", fpos, b->n);
    *target = to;
    return 0;
}

static int fb_u8(const fb_buf *b, const fb_table *t, int id, uint8_t def, uint8_t *out, dl_error *err)
{
    size_t p = 0;
    int r = fb_field(b, t, id, 1, &p, err);
    if (r < 0) return -1;
    *out = r ? b->d[p] : def;
    return 0;
}

static int fb_i32(const fb_buf *b, const fb_table *t, int id, int32_t def, int32_t *out, dl_error *err)
{
    size_t p = 0;
    int r = fb_field(b, t, id, 4, &p, err);
    if (r < 0) return -1;
    *out = r ? rd_i32(b->d + p) : def;
    return 0;
}

static int fb_u32(const fb_buf *b, const fb_table *t, int id, uint32_t def, uint32_t *out, dl_error *err)
{
    size_t p = 0;
    int r = fb_field(b, t, id, 4, &p, err);
    if (r < 0) return -1;
    *out = r ? rd_u32(b->d + p) : def;
    return 0;
}

static int fb_u64(const fb_buf *b, const fb_table *t, int id, uint64_t def, uint64_t *out, dl_error *err)
{
    size_t p = 0;
    int r = fb_field(b, t, id, 8, &p, err);
    if (r < 0) return -1;
    *out = r ? rd_u64(b->d + p) : def;
    return 0;
}

static int fb_f32(const fb_buf *b, const fb_table *t, int id, float def, float *out, dl_error *err)
{
    size_t p = 0;
    int r = fb_field(b, t, id, 4, &p, err);
    if (r < 0) return -1;
    *out = r ? rd_f32(b->d + p) : def;
    return 0;
}

/* Sub-table field. *present = false (and 0 returned) when absent. */
static int fb_sub(const fb_buf *b, const fb_table *t, int id, fb_table *sub, bool *present, dl_error *err)
{
    size_t p = 0, to = 0;
    int r = fb_field(b, t, id, 4, &p, err);
    *present = false;
    if (r <= 0) return r;
    if (fb_deref(b, p, &to, err) != 0 || fb_table_at(b, to, sub, err) != 0) return -1;
    *present = true;
    return 0;
}

static int fb_vector_at(const fb_buf *b, size_t pos, size_t elem, fb_vec *v, dl_error *err)
{
    if (!fb_in(b, pos, 4))
        return dl_fail(err, DL_ERR_FORMAT, "vector at byte %zu lies outside the file", pos);
    uint32_t len = rd_u32(b->d + pos);
    size_t bytes;
    if (!dl_mul_size(len, elem, &bytes) || !fb_in(b, pos + 4, bytes))
        return dl_fail(err, DL_ERR_FORMAT, "vector at byte %zu: length %u (x%zu bytes) runs past the end of the file",
                       pos, len, elem);
    v->pos = pos + 4;
    v->len = len;
    return 0;
}

/* Vector field; absent means empty. */
static int fb_vector(const fb_buf *b, const fb_table *t, int id, size_t elem, fb_vec *v, dl_error *err)
{
    size_t p = 0, to = 0;
    v->pos = 0;
    v->len = 0;
    int r = fb_field(b, t, id, 4, &p, err);
    if (r <= 0) return r;
    if (fb_deref(b, p, &to, err) != 0) return -1;
    return fb_vector_at(b, to, elem, v, err);
}

/* Element i of a vector of tables. */
static int fb_vec_table(const fb_buf *b, const fb_vec *v, uint32_t i, fb_table *t, dl_error *err)
{
    size_t to = 0;
    if (fb_deref(b, v->pos + 4 * (size_t)i, &to, err) != 0) return -1;
    return fb_table_at(b, to, t, err);
}

/* String field copied into out (truncated, control and non-ASCII bytes
 * replaced so names are safe to print and to put in JSON). */
static int fb_string(const fb_buf *b, const fb_table *t, int id, char *out, size_t cap, dl_error *err)
{
    fb_vec v;
    out[0] = '\0';
    if (fb_vector(b, t, id, 1, &v, err) != 0) return -1;
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = b->d[v.pos + i];
        out[i] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    out[n] = '\0';
    return 0;
}

/* ------------------------------------------------------------ model structures */

typedef struct {
    char name[DL_NAME_MAX];
    int ndim;
    int64_t dims[TFL_MAX_RANK];
    int type;
    uint32_t buffer;
    const uint8_t *data; /* constant data inside the file, or NULL */
    size_t bytes;
    bool has_q;
    fb_vec scale, zero_point;
    int32_t qdim;
    int node;            /* graph node computing this tensor, -1 if none */
} tfl_tensor;

typedef struct {
    int32_t code;
    char custom[48];
    fb_vec in, out;
    uint8_t opt_type;
    bool has_opt;
    fb_table opt;
    bool drop;           /* final SOFTMAX folded away */
} tfl_op;

typedef struct {
    fb_buf b;
    dl_error *err;
    dl_graph *g;
    fb_vec buffers;
    int n_tensors, n_ops;
    tfl_tensor *t;
    tfl_op *op;
    int *producer;       /* per tensor: op index writing it, -1 */
    int *node_tensor;    /* per node: tensor it computes */
    size_t total_floats;
} tfl_ctx;

static int64_t tensor_count(const tfl_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        /* dims <= 2^24 and rank <= 8 could still overflow: saturate. */
        if (t->dims[i] != 0 && n > INT64_MAX / 4 / t->dims[i]) return INT64_MAX / 4;
        n *= t->dims[i];
    }
    return n;
}

static void shape_str(const tfl_tensor *t, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    if (t->ndim == 0) snprintf(out, cap, "scalar");
    for (int i = 0; i < t->ndim && k < cap; i++) {
        int w = snprintf(out + k, cap - k, "%s%lld", i ? "x" : "", (long long)t->dims[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* ------------------------------------------------------------ parsing */

static int parse_buffer(tfl_ctx *c, uint32_t idx, const uint8_t **data, size_t *bytes)
{
    fb_table bt;
    fb_vec v;
    uint64_t off, sz;
    *data = NULL;
    *bytes = 0;
    if (fb_vec_table(&c->b, &c->buffers, idx, &bt, c->err) != 0 ||
        fb_vector(&c->b, &bt, 0, 1, &v, c->err) != 0 || fb_u64(&c->b, &bt, 1, 0, &off, c->err) != 0 ||
        fb_u64(&c->b, &bt, 2, 0, &sz, c->err) != 0)
        return dl_fail_prefix(c->err, "buffer %u", idx);
    if (v.len > 0) {
        *data = c->b.d + v.pos;
        *bytes = v.len;
    } else if (off > 1) {
        /* Large models keep data after the flatbuffer: offset from file start. */
        if (off > c->b.n || sz > c->b.n - off)
            return dl_fail(c->err, DL_ERR_FORMAT,
                           "buffer %u: external data [%llu, +%llu) lies outside the file (%zu bytes)", idx,
                           (unsigned long long)off, (unsigned long long)sz, c->b.n);
        *data = c->b.d + off;
        *bytes = (size_t)sz;
    }
    return 0;
}

static int parse_tensor(tfl_ctx *c, int i, const fb_table *tt)
{
    tfl_tensor *t = &c->t[i];
    const fb_buf *b = &c->b;
    fb_vec shape;
    uint8_t type;
    fb_table qt;
    bool has_qt;

    t->node = -1;
    if (fb_string(b, tt, 3, t->name, sizeof t->name, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: tensor %d: name", i);
    if (fb_vector(b, tt, 0, 4, &shape, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: tensor %d (%s): shape", i, t->name);
    if (shape.len > TFL_MAX_RANK)
        return dl_fail(c->err, DL_ERR_UNSUPPORTED, "tflite: tensor %d (%s): rank %u exceeds %d", i, t->name,
                       shape.len, TFL_MAX_RANK);
    t->ndim = (int)shape.len;
    for (int k = 0; k < t->ndim; k++) {
        int32_t d = rd_i32(b->d + shape.pos + 4 * (size_t)k);
        if (d < 0 || d > TFL_MAX_DIM)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): shape[%d] = %d out of range", i,
                           t->name, k, (int)d);
        t->dims[k] = d;
    }
    if (fb_u8(b, tt, 1, 0, &type, c->err) != 0 || fb_u32(b, tt, 2, 0, &t->buffer, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: tensor %d (%s)", i, t->name);
    t->type = (int8_t)type;
    if (t->buffer >= c->buffers.len)
        return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): buffer index %u out of range (have %u)", i,
                       t->name, t->buffer, c->buffers.len);
    if (parse_buffer(c, t->buffer, &t->data, &t->bytes) != 0)
        return dl_fail_prefix(c->err, "tflite: tensor %d (%s)", i, t->name);
    if (t->bytes == 0) t->data = NULL;

    if (fb_sub(b, tt, 4, &qt, &has_qt, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: tensor %d (%s): quantization", i, t->name);
    t->has_q = false;
    t->qdim = 0;
    if (has_qt) {
        /* QuantizationParameters: min 0, max 1, scale 2, zero_point 3,
         * details_type 4, details 5, quantized_dimension 6. */
        if (fb_vector(b, &qt, 2, 4, &t->scale, c->err) != 0 ||
            fb_vector(b, &qt, 3, 8, &t->zero_point, c->err) != 0 ||
            fb_i32(b, &qt, 6, 0, &t->qdim, c->err) != 0)
            return dl_fail_prefix(c->err, "tflite: tensor %d (%s): quantization", i, t->name);
        t->has_q = t->scale.len > 0;
    }
    return 0;
}

static int parse_op(tfl_ctx *c, int i, const fb_table *ot, const fb_vec *opcodes)
{
    tfl_op *o = &c->op[i];
    const fb_buf *b = &c->b;
    uint32_t opcode_index;
    fb_table ct;

    if (fb_u32(b, ot, 0, 0, &opcode_index, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: op %d: opcode_index", i);
    if (fb_vector(b, ot, 1, 4, &o->in, c->err) != 0) return dl_fail_prefix(c->err, "tflite: op %d: inputs", i);
    if (fb_vector(b, ot, 2, 4, &o->out, c->err) != 0) return dl_fail_prefix(c->err, "tflite: op %d: outputs", i);
    if (fb_u8(b, ot, 3, 0, &o->opt_type, c->err) != 0 || fb_sub(b, ot, 4, &o->opt, &o->has_opt, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: op %d: builtin_options", i);
    if (opcode_index >= opcodes->len)
        return dl_fail(c->err, DL_ERR_FORMAT, "tflite: op %d: opcode_index %u out of range (have %u)", i,
                       opcode_index, opcodes->len);
    uint8_t dep;
    int32_t code;
    if (fb_vec_table(b, opcodes, opcode_index, &ct, c->err) != 0 || fb_u8(b, &ct, 0, 0, &dep, c->err) != 0 ||
        fb_i32(b, &ct, 3, 0, &code, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: operator_codes[%u]", opcode_index);
    /* Old files only fill the int8 field, new ones both: the larger wins. */
    int32_t dcode = (int8_t)dep;
    o->code = dcode > code ? dcode : code;
    o->custom[0] = '\0';
    if (o->code == OP_CUSTOM && fb_string(b, &ct, 1, o->custom, sizeof o->custom, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: operator_codes[%u]: custom_code", opcode_index);

    if (o->out.len == 0)
        return dl_fail(c->err, DL_ERR_FORMAT, "tflite: op %d (%s): no outputs", i, tfl_op_name(o->code));
    /* Bounds the work: ops may share one huge index vector. */
    if (o->in.len > TFL_MAX_OP_IO || o->out.len > TFL_MAX_OP_IO)
        return dl_fail(c->err, DL_ERR_UNSUPPORTED, "tflite: op %d (%s): %u inputs / %u outputs exceed %d", i,
                       tfl_op_name(o->code), o->in.len, o->out.len, TFL_MAX_OP_IO);
    for (uint32_t k = 0; k < o->in.len; k++) {
        int32_t ti = rd_i32(b->d + o->in.pos + 4 * (size_t)k);
        if (ti < -1 || ti >= c->n_tensors)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: op %d (%s): input %u: tensor index %d out of range (have %d)",
                           i, tfl_op_name(o->code), k, (int)ti, c->n_tensors);
    }
    for (uint32_t k = 0; k < o->out.len; k++) {
        int32_t ti = rd_i32(b->d + o->out.pos + 4 * (size_t)k);
        if (ti < 0 || ti >= c->n_tensors)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: op %d (%s): output %u: tensor index %d out of range (have %d)",
                           i, tfl_op_name(o->code), k, (int)ti, c->n_tensors);
        if (c->producer[ti] >= 0)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: op %d (%s): tensor %d (%s) is already written by op %d", i,
                           tfl_op_name(o->code), (int)ti, c->t[ti].name, c->producer[ti]);
        if (c->t[ti].data)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: op %d (%s): writes constant tensor %d (%s)", i,
                           tfl_op_name(o->code), (int)ti, c->t[ti].name);
        c->producer[ti] = i;
    }
    return 0;
}

static int op_in(const tfl_ctx *c, const tfl_op *o, uint32_t k)
{
    return k < o->in.len ? rd_i32(c->b.d + o->in.pos + 4 * (size_t)k) : -1;
}

static int op_out(const tfl_ctx *c, const tfl_op *o, uint32_t k)
{
    return rd_i32(c->b.d + o->out.pos + 4 * (size_t)k);
}

static bool is_identity(int32_t code)
{
    return code == OP_RESHAPE || code == OP_QUANTIZE || code == OP_DEQUANTIZE;
}

/* ------------------------------------------------------------ graph building */

/* Fail with the op's context: "tflite: op 5 (CONV_2D -> name): ...". */
static int op_fail(tfl_ctx *c, int oi, dl_status code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int op_fail(tfl_ctx *c, int oi, dl_status code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const tfl_op *o = &c->op[oi];
    int t = op_out(c, o, 0);
    return dl_fail(c->err, code, "tflite: op %d (%s -> %.64s): %s", oi, tfl_op_name(o->code), c->t[t].name, msg);
}

/* Node index computing activation input k of op oi. */
static int act_input(tfl_ctx *c, int oi, uint32_t k, int *node, const tfl_tensor **tt)
{
    const tfl_op *o = &c->op[oi];
    int ti = op_in(c, o, k);
    if (ti < 0) return op_fail(c, oi, DL_ERR_FORMAT, "input %u is missing", k);
    const tfl_tensor *t = &c->t[ti];
    if (t->node < 0) {
        if (t->data)
            return op_fail(c, oi, DL_ERR_UNSUPPORTED, "input %u: tensor %d (%s) is a constant, not an activation", k,
                           ti, t->name);
        return op_fail(c, oi, DL_ERR_FORMAT, "input %u: tensor %d (%s) is not computed by an earlier op", k, ti,
                       t->name);
    }
    *node = t->node;
    if (tt) *tt = t;
    return 0;
}

/* Constant input k of op oi; required or optional (-1 index). */
static int const_input(tfl_ctx *c, int oi, uint32_t k, bool required, int *tensor)
{
    const tfl_op *o = &c->op[oi];
    int ti = op_in(c, o, k);
    *tensor = -1;
    if (ti < 0) {
        if (required) return op_fail(c, oi, DL_ERR_FORMAT, "input %u is missing", k);
        return 0;
    }
    if (!c->t[ti].data)
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "input %u: tensor %d (%s) has no constant data", k, ti,
                       c->t[ti].name);
    *tensor = ti;
    return 0;
}

/* Activation shape [1,H,W,C] of tensor t. */
static int nhwc(tfl_ctx *c, int oi, const tfl_tensor *t, int *h, int *w, int *ch)
{
    if (t->ndim != 4 || t->dims[0] != 1) {
        char s[96];
        shape_str(t, s, sizeof s);
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "tensor %s has shape %s, expected [1,H,W,C]", t->name, s);
    }
    *h = (int)t->dims[1];
    *w = (int)t->dims[2];
    *ch = (int)t->dims[3];
    return 0;
}

/* Dequantize constant tensor ti to float32 in its TFLite layout. */
static int tensor_floats(tfl_ctx *c, int ti, const char *role, float **out, size_t *count)
{
    const tfl_tensor *t = &c->t[ti];
    size_t esz;
    *out = NULL;
    switch (t->type) {
    case TFL_FLOAT32: case TFL_INT32: esz = 4; break;
    case TFL_UINT8: case TFL_INT8: esz = 1; break;
    default:
        return dl_fail(c->err, DL_ERR_UNSUPPORTED, "tflite: tensor %d (%s): %s type %s is not supported", ti,
                       t->name, role, tfl_type_name(t->type));
    }
    int64_t n64 = tensor_count(t);
    size_t n = (size_t)n64, need;
    if (n64 <= 0)
        return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): %s is empty", ti, t->name, role);
    if (!dl_mul_size(n, esz, &need) || need != t->bytes)
        return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): %s data is %zu bytes, its shape needs %lld x %zu",
                       ti, t->name, role, t->bytes, (long long)n64, esz);
    if (n > TFL_MAX_FLOATS - c->total_floats)
        return dl_fail(c->err, DL_ERR_LIMIT, "tflite: tensor %d (%s): parameters exceed %zu floats", ti, t->name,
                       TFL_MAX_FLOATS);
    c->total_floats += n;

    size_t ns = 1, nz = 0, inner = 1;
    float *scales = NULL;
    int64_t *zps = NULL;
    bool quant = t->type != TFL_FLOAT32;
    if (quant) {
        if (!t->has_q)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): %s is %s without a quantization scale", ti,
                           t->name, role, tfl_type_name(t->type));
        ns = t->scale.len;
        nz = t->zero_point.len;
        if (ns > 1) {
            if (t->qdim < 0 || t->qdim >= t->ndim || t->dims[t->qdim] != (int64_t)ns)
                return dl_fail(c->err, DL_ERR_FORMAT,
                               "tflite: tensor %d (%s): %u scales do not match quantized_dimension %d", ti, t->name,
                               t->scale.len, (int)t->qdim);
            for (int k = t->qdim + 1; k < t->ndim; k++) inner *= (size_t)t->dims[k];
        }
        if (nz != 0 && nz != 1 && nz != ns)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): %zu zero points for %zu scales", ti,
                           t->name, nz, ns);
        scales = malloc(ns * sizeof *scales);
        zps = malloc(ns * sizeof *zps);
        if (!scales || !zps) {
            free(scales);
            free(zps);
            return dl_fail(c->err, DL_ERR_NOMEM, "tflite: out of memory");
        }
        for (size_t k = 0; k < ns; k++) {
            scales[k] = rd_f32(c->b.d + t->scale.pos + 4 * k);
            zps[k] = nz == 0 ? 0 : rd_i64(c->b.d + t->zero_point.pos + 8 * (nz == 1 ? 0 : k));
            if (!isfinite(scales[k]) || zps[k] < -(1LL << 40) || zps[k] > (1LL << 40)) {
                double sk = scales[k];
                long long zk = (long long)zps[k];
                free(scales);
                free(zps);
                return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): scale %zu (%g) or zero point %lld invalid",
                               ti, t->name, k, sk, zk);
            }
        }
    }
    float *f = malloc(n * sizeof *f);
    if (!f) {
        free(scales);
        free(zps);
        return dl_fail(c->err, DL_ERR_NOMEM, "tflite: tensor %d (%s): out of memory for %zu floats", ti, t->name, n);
    }
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; i++) {
        double v;
        if (!quant) {
            v = rd_f32(p + 4 * i);
        } else {
            size_t ch = ns > 1 ? (i / inner) % ns : 0;
            double q;
            switch (t->type) {
            case TFL_UINT8: q = p[i]; break;
            case TFL_INT8: q = (int8_t)p[i]; break;
            default: q = rd_i32(p + 4 * i); break;
            }
            v = (double)scales[ch] * (q - (double)zps[ch]);
        }
        f[i] = (float)v;
        if (!isfinite(f[i])) {
            free(scales);
            free(zps);
            free(f);
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): %s value %zu is not finite", ti, t->name,
                           role, i);
        }
    }
    free(scales);
    free(zps);
    *out = f;
    *count = n;
    return 0;
}

/* Constant integer tensor (paddings, axes). */
static int tensor_ints(tfl_ctx *c, int ti, int64_t *out, size_t cap, size_t *n)
{
    const tfl_tensor *t = &c->t[ti];
    size_t esz = t->type == TFL_INT32 ? 4 : t->type == TFL_INT64 ? 8 : 0;
    if (!esz)
        return dl_fail(c->err, DL_ERR_UNSUPPORTED, "tflite: tensor %d (%s): integer type expected, got %s", ti,
                       t->name, tfl_type_name(t->type));
    int64_t cnt = tensor_count(t);
    if (cnt < 0 || (size_t)cnt > cap || (size_t)cnt * esz != t->bytes)
        return dl_fail(c->err, DL_ERR_FORMAT, "tflite: tensor %d (%s): %zu bytes for %lld integers (at most %zu)", ti,
                       t->name, t->bytes, (long long)cnt, cap);
    for (size_t i = 0; i < (size_t)cnt; i++)
        out[i] = esz == 4 ? rd_i32(t->data + 4 * i) : rd_i64(t->data + 8 * i);
    *n = (size_t)cnt;
    return 0;
}

static int conv_act(tfl_ctx *c, int oi, uint8_t f, dl_act *act)
{
    switch (f) {
    case 0: *act = DL_ACT_NONE; return 0;
    case 1: *act = DL_ACT_RELU; return 0;
    case 3: *act = DL_ACT_RELU6; return 0;
    default: return op_fail(c, oi, DL_ERR_UNSUPPORTED, "fused activation %u is not supported", f);
    }
}

static int conv_pad(tfl_ctx *c, int oi, uint8_t p, dl_pad_mode *mode)
{
    if (p == 0) *mode = DL_PAD_SAME;
    else if (p == 1) *mode = DL_PAD_VALID;
    else return op_fail(c, oi, DL_ERR_FORMAT, "padding %u is neither SAME nor VALID", p);
    return 0;
}

/* The op's options table when its union tag matches (else absent). */
static int op_options(tfl_ctx *c, int oi, uint8_t want, const fb_table **opt)
{
    const tfl_op *o = &c->op[oi];
    *opt = NULL;
    if (!o->has_opt || o->opt_type == 0) return 0;
    if (o->opt_type != want)
        return op_fail(c, oi, DL_ERR_FORMAT, "builtin_options_type %u, expected %u", o->opt_type, want);
    *opt = &o->opt;
    return 0;
}

/* Unique node name from the op's output tensor name. */
static void node_name(tfl_ctx *c, const char *base, char *out)
{
    snprintf(out, DL_NAME_MAX, "%s", base[0] ? base : "node");
    if (dl_graph_find_node(c->g, out) < 0) return;
    snprintf(out, DL_NAME_MAX, "%.80s~%d", base, c->g->n_nodes);
}

/* "<node>.<suffix>", shortened (and made unique by node index) if too long. */
static void param_name(const char *node, int idx, const char *suffix, char *out)
{
    size_t ln = strnlen(node, DL_NAME_MAX - 1), ls = strlen(suffix);
    if (ln + 1 + ls < DL_NAME_MAX) {
        memcpy(out, node, ln);
        out[ln] = '.';
        memcpy(out + ln + 1, suffix, ls + 1);
    } else
        snprintf(out, DL_NAME_MAX, "%.72s~%d.%s", node, idx, suffix);
}

/* Add node n computing op oi's output 0. */
static int add_node(tfl_ctx *c, int oi, dl_node *n)
{
    int ti = op_out(c, &c->op[oi], 0);
    int idx = dl_graph_add_node(c->g, n, c->err);
    if (idx < 0) return dl_fail_prefix(c->err, "tflite: op %d (%s)", oi, tfl_op_name(c->op[oi].code));
    c->node_tensor[idx] = ti;
    c->t[ti].node = idx;
    return 0;
}

/* Add weight (and bias) tensors to node n; data is consumed (freed). */
static int add_params(tfl_ctx *c, int oi, dl_node *n, float *w, int wnd, const int64_t *wdims, float *bias,
                      int64_t nb)
{
    char name[DL_NAME_MAX];
    int next = c->g->n_nodes;
    param_name(n->name, next, "weight", name);
    n->weight = dl_graph_add_tensor(c->g, name, wnd, wdims, w, c->err);
    free(w);
    if (n->weight < 0) {
        free(bias);
        return dl_fail_prefix(c->err, "tflite: op %d (%s)", oi, tfl_op_name(c->op[oi].code));
    }
    if (bias) {
        param_name(n->name, next, "bias", name);
        n->bias = dl_graph_add_tensor(c->g, name, 1, &nb, bias, c->err);
        free(bias);
        if (n->bias < 0) return dl_fail_prefix(c->err, "tflite: op %d (%s)", oi, tfl_op_name(c->op[oi].code));
    }
    return 0;
}

/* Bias input k (optional): float [units]. */
static int load_bias(tfl_ctx *c, int oi, uint32_t k, int64_t units, float **bias)
{
    int bi;
    size_t nb;
    *bias = NULL;
    if (const_input(c, oi, k, false, &bi) != 0) return -1;
    if (bi < 0) return 0;
    const tfl_tensor *bt = &c->t[bi];
    if (bt->ndim != 1 || bt->dims[0] != units)
        return op_fail(c, oi, DL_ERR_FORMAT, "bias %s has %d dims (first %lld), expected [%lld]", bt->name, bt->ndim,
                       (long long)(bt->ndim ? bt->dims[0] : 0), (long long)units);
    return tensor_floats(c, bi, "bias", bias, &nb);
}

static int build_conv(tfl_ctx *c, int oi, bool depthwise)
{
    const fb_buf *b = &c->b;
    const fb_table *opt;
    const tfl_tensor *it;
    int in = 0, wi = -1, h = 0, w = 0, ch = 0;
    uint8_t pad = 0, fact = 0;
    int32_t sw = 0, sh = 0, dm = 1, dw = 1, dh = 1;

    if (op_options(c, oi, depthwise ? OPT_DEPTHWISE : OPT_CONV2D, &opt) != 0) return -1;
    if (!opt) return op_fail(c, oi, DL_ERR_FORMAT, "options are missing");
    int r = fb_u8(b, opt, 0, 0, &pad, c->err) | fb_i32(b, opt, 1, 0, &sw, c->err) | fb_i32(b, opt, 2, 0, &sh, c->err);
    if (depthwise)
        r |= fb_i32(b, opt, 3, 0, &dm, c->err) | fb_u8(b, opt, 4, 0, &fact, c->err) |
             fb_i32(b, opt, 5, 1, &dw, c->err) | fb_i32(b, opt, 6, 1, &dh, c->err);
    else
        r |= fb_u8(b, opt, 3, 0, &fact, c->err) | fb_i32(b, opt, 4, 1, &dw, c->err) | fb_i32(b, opt, 5, 1, &dh, c->err);
    if (r != 0) return dl_fail_prefix(c->err, "tflite: op %d (%s): options", oi, tfl_op_name(c->op[oi].code));

    if (act_input(c, oi, 0, &in, &it) != 0 || nhwc(c, oi, it, &h, &w, &ch) != 0) return -1;
    if (const_input(c, oi, 1, true, &wi) != 0) return -1;
    const tfl_tensor *wt = &c->t[wi];
    if (wt->ndim != 4)
        return op_fail(c, oi, DL_ERR_FORMAT, "filter %s has rank %d, expected 4", wt->name, wt->ndim);
    int64_t oc = wt->dims[0], kh = wt->dims[1], kw = wt->dims[2], ic = wt->dims[3];
    if (depthwise) {
        if (oc != 1)
            return op_fail(c, oi, DL_ERR_FORMAT, "depthwise filter %s has leading dim %lld, expected 1", wt->name,
                           (long long)oc);
        if (ic != ch || (dm != 0 && dm != 1))
            return op_fail(c, oi, DL_ERR_UNSUPPORTED, "depth multiplier %d (filter channels %lld, input %d): only 1",
                           (int)dm, (long long)ic, ch);
        oc = ic;
    } else if (ic != ch) {
        return op_fail(c, oi, DL_ERR_FORMAT, "filter %s has %lld input channels, input has %d", wt->name,
                       (long long)ic, ch);
    }
    if (kh < 1 || kw < 1 || kh > TFL_MAX_KERNEL || kw > TFL_MAX_KERNEL || oc < 1)
        return op_fail(c, oi, DL_ERR_FORMAT, "filter %s shape %lldx%lld out of range", wt->name, (long long)kh,
                       (long long)kw);
    if (sw < 1 || sh < 1 || sw > TFL_MAX_KERNEL || sh > TFL_MAX_KERNEL)
        return op_fail(c, oi, DL_ERR_FORMAT, "stride %dx%d out of range", (int)sh, (int)sw);
    if (dw != 1 || dh != 1)
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "dilation %dx%d is not supported", (int)dh, (int)dw);

    char nm[DL_NAME_MAX];
    node_name(c, c->t[op_out(c, &c->op[oi], 0)].name, nm);
    dl_node n = dl_node_make(DL_OP_CONV2D, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    n.kh = (int)kh;
    n.kw = (int)kw;
    n.sh = (int)sh;
    n.sw = (int)sw;
    n.units = (int)oc;
    n.groups = depthwise ? (int)oc : 1;
    if (conv_pad(c, oi, pad, &n.pad_mode) != 0 || conv_act(c, oi, fact, &n.act) != 0) return -1;

    float *wf, *bias;
    size_t nw;
    if (tensor_floats(c, wi, "filter", &wf, &nw) != 0) return -1;
    int64_t wdims[4] = {oc, kh, kw, depthwise ? 1 : ic};
    if (depthwise) {
        /* TFLite [1][kh][kw][C] -> engine [C][kh][kw][1]. */
        float *t = malloc(nw * sizeof *t);
        if (!t) {
            free(wf);
            return dl_fail(c->err, DL_ERR_NOMEM, "tflite: out of memory");
        }
        size_t khw = (size_t)(kh * kw);
        for (size_t k = 0; k < khw; k++)
            for (size_t cc = 0; cc < (size_t)oc; cc++) t[cc * khw + k] = wf[k * (size_t)oc + cc];
        free(wf);
        wf = t;
    }
    if (load_bias(c, oi, 2, oc, &bias) != 0) {
        free(wf);
        return -1;
    }
    if (add_params(c, oi, &n, wf, 4, wdims, bias, oc) != 0) return -1;
    return add_node(c, oi, &n);
}

static int build_dense(tfl_ctx *c, int oi)
{
    const fb_table *opt;
    const tfl_tensor *it;
    int in, wi;
    uint8_t fact = 0, fmt = 0;
    if (op_options(c, oi, OPT_FULLY_CONNECTED, &opt) != 0) return -1;
    if (opt && (fb_u8(&c->b, opt, 0, 0, &fact, c->err) != 0 || fb_u8(&c->b, opt, 1, 0, &fmt, c->err) != 0))
        return dl_fail_prefix(c->err, "tflite: op %d (FULLY_CONNECTED): options", oi);
    if (fmt != 0) return op_fail(c, oi, DL_ERR_UNSUPPORTED, "weights_format %u is not supported", fmt);
    if (act_input(c, oi, 0, &in, &it) != 0 || const_input(c, oi, 1, true, &wi) != 0) return -1;
    const tfl_tensor *wt = &c->t[wi];
    if (wt->ndim != 2 || wt->dims[0] < 1 || wt->dims[1] < 1)
        return op_fail(c, oi, DL_ERR_FORMAT, "weights %s must be [units][inputs]", wt->name);
    int64_t units = wt->dims[0], k = wt->dims[1];
    if (tensor_count(it) != k || it->ndim < 1 || it->dims[0] != 1)
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "input %s (%lld values) does not match weights' %lld inputs at batch 1",
                       it->name, (long long)tensor_count(it), (long long)k);
    char nm[DL_NAME_MAX];
    node_name(c, c->t[op_out(c, &c->op[oi], 0)].name, nm);
    dl_node n = dl_node_make(DL_OP_DENSE, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    n.units = (int)units;
    if (conv_act(c, oi, fact, &n.act) != 0) return -1;
    float *wf, *bias;
    size_t nw;
    if (tensor_floats(c, wi, "weights", &wf, &nw) != 0) return -1;
    if (load_bias(c, oi, 2, units, &bias) != 0) {
        free(wf);
        return -1;
    }
    int64_t wdims[2] = {units, k};
    if (add_params(c, oi, &n, wf, 2, wdims, bias, units) != 0) return -1;
    return add_node(c, oi, &n);
}

static int build_pool(tfl_ctx *c, int oi, bool avg)
{
    const fb_buf *b = &c->b;
    const fb_table *opt;
    int in;
    uint8_t pad = 0, fact = 0;
    int32_t sw = 0, sh = 0, fw = 0, fh = 0;
    if (op_options(c, oi, OPT_POOL2D, &opt) != 0) return -1;
    if (!opt) return op_fail(c, oi, DL_ERR_FORMAT, "options are missing");
    if (fb_u8(b, opt, 0, 0, &pad, c->err) | fb_i32(b, opt, 1, 0, &sw, c->err) | fb_i32(b, opt, 2, 0, &sh, c->err) |
        fb_i32(b, opt, 3, 0, &fw, c->err) | fb_i32(b, opt, 4, 0, &fh, c->err) | fb_u8(b, opt, 5, 0, &fact, c->err))
        return dl_fail_prefix(c->err, "tflite: op %d (%s): options", oi, tfl_op_name(c->op[oi].code));
    if (act_input(c, oi, 0, &in, NULL) != 0) return -1;
    if (fw < 1 || fh < 1 || fw > TFL_MAX_KERNEL || fh > TFL_MAX_KERNEL || sw < 1 || sh < 1 ||
        sw > TFL_MAX_KERNEL || sh > TFL_MAX_KERNEL)
        return op_fail(c, oi, DL_ERR_FORMAT, "filter %dx%d / stride %dx%d out of range", (int)fh, (int)fw, (int)sh,
                       (int)sw);
    if (fact != 0) return op_fail(c, oi, DL_ERR_UNSUPPORTED, "fused activation %u on a pool", fact);
    char nm[DL_NAME_MAX];
    node_name(c, c->t[op_out(c, &c->op[oi], 0)].name, nm);
    dl_node n = dl_node_make(avg ? DL_OP_AVGPOOL : DL_OP_MAXPOOL, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    n.kh = (int)fh;
    n.kw = (int)fw;
    n.sh = (int)sh;
    n.sw = (int)sw;
    if (conv_pad(c, oi, pad, &n.pad_mode) != 0) return -1;
    return add_node(c, oi, &n);
}

static int build_add(tfl_ctx *c, int oi)
{
    const fb_table *opt;
    const tfl_tensor *ta, *tb;
    int a, bn;
    uint8_t fact = 0;
    if (op_options(c, oi, OPT_ADD, &opt) != 0) return -1;
    if (opt && fb_u8(&c->b, opt, 0, 0, &fact, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: op %d (ADD): options", oi);
    if (c->op[oi].in.len != 2) return op_fail(c, oi, DL_ERR_FORMAT, "%u inputs, expected 2", c->op[oi].in.len);
    if (act_input(c, oi, 0, &a, &ta) != 0 || act_input(c, oi, 1, &bn, &tb) != 0) return -1;
    if (ta->ndim != tb->ndim || memcmp(ta->dims, tb->dims, sizeof(int64_t) * (size_t)ta->ndim) != 0)
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "operands %s and %s differ in shape (no broadcasting)", ta->name,
                       tb->name);
    char nm[DL_NAME_MAX];
    node_name(c, c->t[op_out(c, &c->op[oi], 0)].name, nm);
    dl_node n = dl_node_make(DL_OP_ADD, nm);
    n.n_inputs = 2;
    n.inputs[0] = a;
    n.inputs[1] = bn;
    if (conv_act(c, oi, fact, &n.act) != 0) return -1;
    return add_node(c, oi, &n);
}

static int build_mean(tfl_ctx *c, int oi)
{
    const tfl_tensor *it;
    int in = 0, ai = -1, h = 0, w = 0, ch = 0;
    int64_t ax[4];
    size_t na;
    if (act_input(c, oi, 0, &in, &it) != 0 || nhwc(c, oi, it, &h, &w, &ch) != 0) return -1;
    if (const_input(c, oi, 1, true, &ai) != 0) return -1;
    if (tensor_ints(c, ai, ax, 4, &na) != 0) return -1;
    if (!(na == 2 && ((ax[0] == 1 && ax[1] == 2) || (ax[0] == 2 && ax[1] == 1))))
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "only the mean over H and W (axes 1,2) is supported");
    char nm[DL_NAME_MAX];
    node_name(c, c->t[op_out(c, &c->op[oi], 0)].name, nm);
    dl_node n = dl_node_make(DL_OP_GAP, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    return add_node(c, oi, &n);
}

static int build_pad(tfl_ctx *c, int oi)
{
    const tfl_tensor *it;
    int in = 0, pi = -1, h = 0, w = 0, ch = 0;
    int64_t p[8];
    size_t np;
    if (act_input(c, oi, 0, &in, &it) != 0 || nhwc(c, oi, it, &h, &w, &ch) != 0) return -1;
    if (const_input(c, oi, 1, true, &pi) != 0 || tensor_ints(c, pi, p, 8, &np) != 0) return -1;
    if (np != 8) return op_fail(c, oi, DL_ERR_FORMAT, "paddings has %zu values, expected 4x2", np);
    if (p[0] || p[1] || p[6] || p[7])
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "padding the batch or channel dimension is not supported");
    for (int k = 2; k < 6; k++)
        if (p[k] < 0 || p[k] > TFL_MAX_PAD)
            return op_fail(c, oi, DL_ERR_FORMAT, "padding %lld out of range", (long long)p[k]);
    char nm[DL_NAME_MAX];
    node_name(c, c->t[op_out(c, &c->op[oi], 0)].name, nm);
    dl_node n = dl_node_make(DL_OP_PAD, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    n.pad_mode = DL_PAD_EXPLICIT;
    n.pad_t = (int)p[2];
    n.pad_b = (int)p[3];
    n.pad_l = (int)p[4];
    n.pad_r = (int)p[5];
    return add_node(c, oi, &n);
}

static int build_softmax(tfl_ctx *c, int oi)
{
    const fb_table *opt;
    float beta = 1.0f;
    int in;
    if (op_options(c, oi, OPT_SOFTMAX, &opt) != 0) return -1;
    if (opt && fb_f32(&c->b, opt, 0, 1.0f, &beta, c->err) != 0)
        return dl_fail_prefix(c->err, "tflite: op %d (SOFTMAX): options", oi);
    if (act_input(c, oi, 0, &in, NULL) != 0) return -1;
    if (c->op[oi].drop) {
        c->t[op_out(c, &c->op[oi], 0)].node = in;
        return 0;
    }
    if (beta != 1.0f) return op_fail(c, oi, DL_ERR_UNSUPPORTED, "beta %g is not supported", (double)beta);
    char nm[DL_NAME_MAX];
    node_name(c, c->t[op_out(c, &c->op[oi], 0)].name, nm);
    dl_node n = dl_node_make(DL_OP_SOFTMAX, nm);
    n.n_inputs = 1;
    n.inputs[0] = in;
    return add_node(c, oi, &n);
}

/* RESHAPE / QUANTIZE / DEQUANTIZE: the same float values, so the output
 * tensor aliases the producing node. */
static int build_identity(tfl_ctx *c, int oi)
{
    const tfl_tensor *it;
    int in;
    if (act_input(c, oi, 0, &in, &it) != 0) return -1;
    tfl_tensor *ot = &c->t[op_out(c, &c->op[oi], 0)];
    if (tensor_count(ot) != tensor_count(it))
        return op_fail(c, oi, DL_ERR_FORMAT, "output has %lld values, input %s has %lld", (long long)tensor_count(ot),
                       it->name, (long long)tensor_count(it));
    ot->node = in;
    return 0;
}

static int build_op(tfl_ctx *c, int oi)
{
    const tfl_op *o = &c->op[oi];
    if (o->out.len != 1 && !is_identity(o->code))
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "%u outputs, expected 1", o->out.len);
    switch (o->code) {
    case OP_CONV_2D: return build_conv(c, oi, false);
    case OP_DEPTHWISE_CONV_2D: return build_conv(c, oi, true);
    case OP_FULLY_CONNECTED: return build_dense(c, oi);
    case OP_AVERAGE_POOL_2D: return build_pool(c, oi, true);
    case OP_MAX_POOL_2D: return build_pool(c, oi, false);
    case OP_ADD: return build_add(c, oi);
    case OP_MEAN: return build_mean(c, oi);
    case OP_PAD: return build_pad(c, oi);
    case OP_SOFTMAX: return build_softmax(c, oi);
    case OP_RESHAPE: case OP_QUANTIZE: case OP_DEQUANTIZE:
        if (o->out.len != 1) return op_fail(c, oi, DL_ERR_UNSUPPORTED, "%u outputs, expected 1", o->out.len);
        return build_identity(c, oi);
    case OP_CUSTOM:
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "custom operator '%s' is not supported", o->custom);
    default:
        return op_fail(c, oi, DL_ERR_UNSUPPORTED, "operator code %d is not supported", (int)o->code);
    }
}

/* Mark a SOFTMAX that only feeds the graph output (possibly through
 * identity ops) for dropping, so the graph ends with the logits. */
static int mark_final_softmax(tfl_ctx *c, int out_tensor)
{
    int t = out_tensor, sm = -1;
    for (int steps = 0; steps <= c->n_ops; steps++) {
        int p = c->producer[t];
        if (p < 0) break;
        if (c->op[p].code == OP_SOFTMAX) {
            sm = p;
            break;
        }
        if (!is_identity(c->op[p].code) || c->op[p].in.len < 1) break;
        t = op_in(c, &c->op[p], 0);
        if (t < 0) break;
    }
    if (sm < 0 || c->op[sm].out.len != 1) return 0;
    /* Tensors carrying the softmax's values; a real op reading one keeps it. */
    bool *carry = calloc((size_t)c->n_tensors, sizeof *carry);
    if (!carry) return dl_fail(c->err, DL_ERR_NOMEM, "tflite: out of memory");
    carry[op_out(c, &c->op[sm], 0)] = true;
    bool used = false;
    for (int i = sm + 1; i < c->n_ops && !used; i++) {
        const tfl_op *o = &c->op[i];
        bool reads = false;
        for (uint32_t k = 0; k < o->in.len; k++) {
            int ti = op_in(c, o, k);
            if (ti >= 0 && carry[ti]) reads = true;
        }
        if (!reads) continue;
        if (is_identity(o->code) && op_in(c, o, 0) >= 0 && carry[op_in(c, o, 0)])
            for (uint32_t k = 0; k < o->out.len; k++) carry[op_out(c, o, k)] = true;
        else
            used = true;
    }
    free(carry);
    if (!used) c->op[sm].drop = true;
    return 0;
}

/* After dl_graph_infer: every node's shape must equal the file's. */
static int check_shapes(tfl_ctx *c)
{
    for (int i = 0; i < c->g->n_nodes; i++) {
        const dl_node *n = &c->g->nodes[i];
        const tfl_tensor *t = &c->t[c->node_tensor[i]];
        int64_t count = (int64_t)n->h * n->w * n->c;
        bool ok;
        if (t->ndim == 4)
            ok = t->dims[0] == 1 && t->dims[1] == n->h && t->dims[2] == n->w && t->dims[3] == n->c;
        else
            ok = t->ndim >= 1 && t->dims[0] == 1 && tensor_count(t) == count && n->h == 1 && n->w == 1;
        if (!ok) {
            char s[96];
            shape_str(t, s, sizeof s);
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: node %d (%s): file says shape %s, computed 1x%dx%dx%d", i,
                           n->name, s, n->h, n->w, n->c);
        }
    }
    return 0;
}

static int set_preprocess(tfl_ctx *c, int ti, int h, int w, dl_preprocess *pre)
{
    const tfl_tensor *t = &c->t[ti];
    float mean, stdv;
    memset(pre, 0, sizeof *pre);
    if (t->type == TFL_FLOAT32) {
        mean = 127.5f;
        stdv = 127.5f;
    } else if (t->type == TFL_UINT8 || t->type == TFL_INT8) {
        float s = 1.0f;
        int64_t z = 0;
        if (t->has_q) {
            s = rd_f32(c->b.d + t->scale.pos);
            if (t->zero_point.len) z = rd_i64(c->b.d + t->zero_point.pos);
        }
        if (!(s > 0.0f) || !isfinite(1.0f / s) || z < -512 || z > 512)
            return dl_fail(c->err, DL_ERR_FORMAT, "tflite: input tensor %d (%s): scale %g / zero point %lld invalid", ti,
                           t->name, (double)s, (long long)z);
        /* x = (q - z) * s with q = p (uint8) or p - 128 (int8). */
        mean = (float)z + (t->type == TFL_INT8 ? 128.0f : 0.0f);
        stdv = 1.0f / s;
    } else {
        return dl_fail(c->err, DL_ERR_UNSUPPORTED, "tflite: input tensor %d (%s): type %s is not supported", ti, t->name,
                       tfl_type_name(t->type));
    }
    pre->width = w;
    pre->height = h;
    snprintf(pre->resize, sizeof pre->resize, "squash");
    for (int k = 0; k < 3; k++) {
        pre->mean[k] = mean;
        pre->std[k] = stdv;
    }
    return 0;
}

static int convert(tfl_ctx *c, dl_preprocess *pre)
{
    const fb_buf *b = &c->b;
    dl_error *err = c->err;
    fb_table model, sg;
    fb_vec opcodes, subgraphs, tensors, inputs, outputs, ops, metadata;
    uint32_t version;
    char desc[8];

    if (b->n < 8 || memcmp(b->d + 4, "TFL3", 4) != 0)
        return dl_fail(err, DL_ERR_FORMAT, "tflite: missing \"TFL3\" identifier at bytes 4..7 (file %zu bytes)", b->n);
    if (b->n > (uint64_t)DL_MAX_MODEL_BYTES)
        return dl_fail(err, DL_ERR_LIMIT, "tflite: file of %zu bytes exceeds the limit", b->n);
    size_t root = 0;
    if (fb_deref(b, 0, &root, err) != 0 || fb_table_at(b, root, &model, err) != 0)
        return dl_fail_prefix(err, "tflite: root table");
    if (fb_u32(b, &model, 0, 0, &version, err) != 0) return dl_fail_prefix(err, "tflite: model version");
    if (version != 3)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "tflite: schema version %u is not supported (expected 3)", version);
    if (fb_vector(b, &model, 1, 4, &opcodes, err) != 0) return dl_fail_prefix(err, "tflite: model operator_codes");
    if (fb_vector(b, &model, 2, 4, &subgraphs, err) != 0) return dl_fail_prefix(err, "tflite: model subgraphs");
    if (fb_string(b, &model, 3, desc, sizeof desc, err) != 0) return dl_fail_prefix(err, "tflite: model description");
    if (fb_vector(b, &model, 4, 4, &c->buffers, err) != 0) return dl_fail_prefix(err, "tflite: model buffers");
    if (fb_vector(b, &model, 6, 4, &metadata, err) != 0) return dl_fail_prefix(err, "tflite: model metadata");
    if (subgraphs.len < 1) return dl_fail(err, DL_ERR_FORMAT, "tflite: model has no subgraphs");
    if (c->buffers.len < 1) return dl_fail(err, DL_ERR_FORMAT, "tflite: model has no buffers");

    /* Validate every buffer and metadata entry, used or not, so a damaged
     * file is never half-accepted. */
    for (uint32_t i = 0; i < c->buffers.len; i++) {
        const uint8_t *d;
        size_t n;
        if (parse_buffer(c, i, &d, &n) != 0) return dl_fail_prefix(err, "tflite");
    }
    for (uint32_t i = 0; i < metadata.len; i++) {
        fb_table mt;
        uint32_t bi;
        char name[64];
        if (fb_vec_table(b, &metadata, i, &mt, err) != 0 || fb_string(b, &mt, 0, name, sizeof name, err) != 0 ||
            fb_u32(b, &mt, 1, 0, &bi, err) != 0)
            return dl_fail_prefix(err, "tflite: metadata %u", i);
        if (bi >= c->buffers.len)
            return dl_fail(err, DL_ERR_FORMAT, "tflite: metadata %u (%s): buffer index %u out of range (have %u)", i,
                           name, bi, c->buffers.len);
    }

    if (fb_vec_table(b, &subgraphs, 0, &sg, err) != 0) return dl_fail_prefix(err, "tflite: subgraph 0");
    if (fb_vector(b, &sg, 0, 4, &tensors, err) != 0) return dl_fail_prefix(err, "tflite: subgraph 0 tensors");
    if (fb_vector(b, &sg, 1, 4, &inputs, err) != 0) return dl_fail_prefix(err, "tflite: subgraph 0 inputs");
    if (fb_vector(b, &sg, 2, 4, &outputs, err) != 0) return dl_fail_prefix(err, "tflite: subgraph 0 outputs");
    if (fb_vector(b, &sg, 3, 4, &ops, err) != 0) return dl_fail_prefix(err, "tflite: subgraph 0 operators");
    if (tensors.len > TFL_MAX_TENSORS)
        return dl_fail(err, DL_ERR_LIMIT, "tflite: %u tensors exceed the limit of %d", tensors.len, TFL_MAX_TENSORS);
    if (ops.len > TFL_MAX_OPS)
        return dl_fail(err, DL_ERR_LIMIT, "tflite: %u operators exceed the limit of %d", ops.len, TFL_MAX_OPS);
    if (ops.len == 0) return dl_fail(err, DL_ERR_FORMAT, "tflite: subgraph 0 has no operators");
    c->n_tensors = (int)tensors.len;
    c->n_ops = (int)ops.len;

    c->t = calloc(tensors.len ? tensors.len : 1, sizeof *c->t);
    c->producer = malloc((tensors.len ? tensors.len : 1) * sizeof *c->producer);
    c->op = calloc(ops.len, sizeof *c->op);
    c->node_tensor = calloc((size_t)ops.len + 1, sizeof *c->node_tensor);
    if (!c->t || !c->producer || !c->op || !c->node_tensor)
        return dl_fail(err, DL_ERR_NOMEM, "tflite: out of memory for %u tensors", tensors.len);
    for (int i = 0; i < c->n_tensors; i++) {
        fb_table tt;
        c->producer[i] = -1;
        if (fb_vec_table(b, &tensors, (uint32_t)i, &tt, err) != 0) return dl_fail_prefix(err, "tflite: tensor %d", i);
        if (parse_tensor(c, i, &tt) != 0) return -1;
    }
    for (int i = 0; i < c->n_ops; i++) {
        fb_table ot;
        if (fb_vec_table(b, &ops, (uint32_t)i, &ot, err) != 0) return dl_fail_prefix(err, "tflite: op %d", i);
        if (parse_op(c, i, &ot, &opcodes) != 0) return -1;
    }

    if (inputs.len != 1)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "tflite: subgraph has %u inputs, expected 1", inputs.len);
    if (outputs.len != 1)
        return dl_fail(err, DL_ERR_UNSUPPORTED, "tflite: subgraph has %u outputs, expected 1", outputs.len);
    int in_t = rd_i32(b->d + inputs.pos), out_t = rd_i32(b->d + outputs.pos);
    if (in_t < 0 || in_t >= c->n_tensors || out_t < 0 || out_t >= c->n_tensors)
        return dl_fail(err, DL_ERR_FORMAT, "tflite: subgraph input %d / output %d out of range (have %d tensors)", in_t,
                       out_t, c->n_tensors);
    const tfl_tensor *it = &c->t[in_t];
    if (c->producer[in_t] >= 0 || it->data)
        return dl_fail(err, DL_ERR_FORMAT, "tflite: input tensor %d (%s) is written by an op or constant", in_t, it->name);
    if (it->ndim != 4 || it->dims[0] != 1 || it->dims[1] < 1 || it->dims[2] < 1 || it->dims[1] > DL_MAX_IMAGE_SIDE ||
        it->dims[2] > DL_MAX_IMAGE_SIDE || it->dims[3] != 3) {
        char s[96];
        shape_str(it, s, sizeof s);
        return dl_fail(err, DL_ERR_UNSUPPORTED, "tflite: input tensor %d (%s) has shape %s, expected [1,H,W,3]", in_t,
                       it->name, s);
    }
    if (mark_final_softmax(c, out_t) != 0) return -1;

    char nm[DL_NAME_MAX];
    snprintf(nm, sizeof nm, "%s", it->name[0] ? it->name : "input");
    dl_node n = dl_node_make(DL_OP_INPUT, nm);
    n.h = (int)it->dims[1];
    n.w = (int)it->dims[2];
    n.c = (int)it->dims[3];
    int idx = dl_graph_add_node(c->g, &n, err);
    if (idx < 0) return dl_fail_prefix(err, "tflite: input node");
    c->node_tensor[idx] = in_t;
    c->t[in_t].node = idx;

    for (int i = 0; i < c->n_ops; i++)
        if (build_op(c, i) != 0) return -1;

    int out_node = c->t[out_t].node;
    if (out_node < 1)
        return dl_fail(err, DL_ERR_FORMAT, "tflite: output tensor %d (%s) is not computed by any supported op", out_t,
                       c->t[out_t].name);
    c->g->output = out_node;
    if (dl_graph_infer(c->g, err) != 0) return dl_fail_prefix(err, "tflite");
    if (check_shapes(c) != 0) return -1;

    c->g->features = -1;
    for (int i = 1; i < c->g->n_nodes; i++) {
        const dl_node *g = &c->g->nodes[i];
        const dl_node *src = &c->g->nodes[g->inputs[0]];
        if (g->op == DL_OP_GAP ||
            (g->op == DL_OP_AVGPOOL && g->pad_mode == DL_PAD_VALID && g->kh == src->h && g->kw == src->w &&
             g->h == 1 && g->w == 1))
            c->g->features = i;
    }
    return set_preprocess(c, in_t, (int)it->dims[1], (int)it->dims[2], pre);
}

int dl_tflite_to_graph(const uint8_t *data, size_t size, dl_graph *g, dl_preprocess *pre, dl_error *err)
{
    dl_graph_init(g);
    if (!data || !pre) return dl_fail(err, DL_ERR_ARG, "tflite: NULL argument");
    tfl_ctx c;
    memset(&c, 0, sizeof c);
    c.b.d = data;
    c.b.n = size;
    c.err = err;
    c.g = g;
    dl_preprocess p;
    int r = convert(&c, &p);
    free(c.t);
    free(c.op);
    free(c.producer);
    free(c.node_tensor);
    if (r != 0) {
        /* Leave g empty and valid so callers may free it either way. */
        dl_graph_free(g);
        dl_graph_init(g);
        return -1;
    }
    *pre = p;
    return 0;
}

/* ------------------------------------------------------------ import */

/* dl_import_tflite (dermlens.h): convert, name the classes, save the model
 * container and prove it loads (moved here from classify.c). */
int dl_import_tflite(const char *tflite_path, const char *labels_path, const char *out_path,
                     const char *name, const char *provenance_json, dl_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    dl_model m;
    memset(&m, 0, sizeof m);
    dl_graph_init(&m.graph);
    int rc = -1;
    if (dl_read_file(tflite_path, 256u << 20, &data, &size, err)) return -1;
    if (dl_tflite_to_graph(data, size, &m.graph, &m.pre, err)) {
        dl_fail_prefix(err, "%s", tflite_path);
        goto out;
    }
    const dl_node *o = &m.graph.nodes[m.graph.output];
    m.num_classes = o->c;
    m.class_names = calloc(o->c, sizeof(char *));
    m.class_long_names = calloc(o->c, sizeof(char *));
    if (!m.class_names || !m.class_long_names) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    uint8_t *lab = NULL;
    size_t lsize = 0;
    if (labels_path && dl_read_file(labels_path, 16u << 20, &lab, &lsize, err)) goto out;
    size_t pos = 0;
    for (int i = 0; i < o->c; i++) {
        char buf[256];
        buf[0] = 0;
        if (lab && pos < lsize) {
            size_t end = pos;
            while (end < lsize && lab[end] != '\n') end++;
            size_t len = end - pos;
            if (len && lab[pos + len - 1] == '\r') len--;
            if (len >= sizeof buf) len = sizeof buf - 1;
            memcpy(buf, lab + pos, len);
            buf[len] = 0;
            pos = end + 1;
        }
        if (!buf[0]) snprintf(buf, sizeof buf, "class_%d", i);
        /* "German shepherd, German police dog" -> short name "German shepherd" */
        char *comma = strchr(buf, ',');
        m.class_long_names[i] = strdup(buf);
        if (comma) *comma = 0;
        m.class_names[i] = strdup(buf);
    }
    free(lab);
    snprintf(m.name, sizeof m.name, "%s", name ? name : "imported");
    m.temperature = 1.f;
    m.provenance_json = provenance_json ? strdup(provenance_json) : NULL;
    if (dl_model_save_verified(&m, out_path, err)) goto out;
    rc = 0;
out:
    free(data);
    dl_model_clear(&m);
    return rc;
}
