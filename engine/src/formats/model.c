/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The model container: a safetensors file (u64 LE header length, JSON header,
 * little-endian tensor data) whose __metadata__ holds the graph, classes,
 * preprocessing and provenance as JSON strings. See weights/FORMAT.md.
 * Everything in the file is untrusted and validated before use. */
#include "formats/formats.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_NAME "dermlens"
#define FORMAT_VERSION 1
#define MAX_HEADER_BYTES (64u << 20)
#define MAX_CLASSES 100000
#define MAX_MEMBERS 16
/* No trained or imported weight comes near this (shipped models: < 200);
 * a bit flip in an exponent does. */
#define MAX_WEIGHT_ABS 1e6f

typedef struct {
    const char *name;
    size_t begin, end;
    int64_t dims[4];
    int ndim;
    int esize; /* bytes per element on disk: 4 (F32) or 2 (F16) */
} st_entry;

static int member_of(const char *name, const char **rest);

static int cmp_entry(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static const char *meta_string(const cJSON *meta, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool json_int(const cJSON *obj, const char *key, int lo, int hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return false;
    *out = (int)v->valuedouble;
    return true;
}

static bool json_pair(const cJSON *obj, const char *key, int lo, int hi, int *a, int *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2) return false;
    const cJSON *x = cJSON_GetArrayItem(v, 0), *y = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y)) return false;
    if (x->valuedouble < lo || x->valuedouble > hi || y->valuedouble < lo || y->valuedouble > hi) return false;
    *a = (int)x->valuedouble;
    *b = (int)y->valuedouble;
    return true;
}

/* Strict objects: a key the reader does not know is refused (a damaged or
 * misspelt key must not silently fall back to a default); "x-" keys are the
 * documented extension space and are ignored. */
static int check_keys(const cJSON *obj, const char *const *known, int n, const char *where, dl_error *err)
{
    const cJSON *kv;
    cJSON_ArrayForEach(kv, obj) {
        if (!kv->string) continue;
        if (!strncmp(kv->string, "x-", 2)) continue;
        bool ok = false;
        for (int i = 0; i < n && !ok; i++) ok = !strcmp(kv->string, known[i]);
        if (!ok) return dl_fail(err, DL_ERR_FORMAT, "%s: unknown key \"%.64s\"", where, kv->string);
    }
    return 0;
}
#define CHECK_KEYS(obj, where, ...)                                                                   \
    do {                                                                                               \
        static const char *const known_[] = {__VA_ARGS__};                                             \
        if (check_keys((obj), known_, (int)(sizeof known_ / sizeof *known_), (where), err)) return -1; \
    } while (0)

/* A metadata number: the whole string must be a finite number in [lo, hi]. */
static bool strict_float(const char *s, double lo, double hi, float *out)
{
    if (!s || !*s) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = (float)v;
    return true;
}

/* ------------------------------------------------------------ graph JSON */

static int parse_graph(dl_graph *g, const cJSON *gj, dl_error *err)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(gj, "input");
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(gj, "nodes");
    if (!cJSON_IsObject(in)) return dl_fail(err, DL_ERR_FORMAT, "graph.input: missing or not an object");
    if (!cJSON_IsArray(nodes)) return dl_fail(err, DL_ERR_FORMAT, "graph.nodes: missing or not an array");
    CHECK_KEYS(gj, "graph", "input", "nodes", "output", "features");
    CHECK_KEYS(in, "graph.input", "name", "height", "width", "channels");
    const char *in_name = meta_string(in, "name");
    dl_node n0 = dl_node_make(DL_OP_INPUT, in_name ? in_name : "input");
    if (!json_int(in, "height", 1, 65536, &n0.h) || !json_int(in, "width", 1, 65536, &n0.w) ||
        !json_int(in, "channels", 1, 4096, &n0.c))
        return dl_fail(err, DL_ERR_FORMAT, "graph.input: height/width/channels missing or out of range");
    if (dl_graph_add_node(g, &n0, err) < 0) return -1;
    int idx = 0;
    const cJSON *nj;
    cJSON_ArrayForEach(nj, nodes) {
        idx++;
        const char *name = meta_string(nj, "name");
        const char *op = meta_string(nj, "op");
        if (!cJSON_IsObject(nj)) return dl_fail(err, DL_ERR_FORMAT, "graph.nodes[%d]: not an object", idx - 1);
        CHECK_KEYS(nj, name ? name : "graph.nodes[]", "name", "op", "inputs", "kernel", "stride", "padding", "groups",
                   "units", "activation", "rate", "weight", "bias");
        if (!name || !name[0]) return dl_fail(err, DL_ERR_FORMAT, "graph.nodes[%d].name: missing", idx - 1);
        if (strlen(name) >= DL_NAME_MAX) return dl_fail(err, DL_ERR_FORMAT, "graph.nodes[%d].name: too long", idx - 1);
        int opi = op ? dl_op_from_name(op) : -1;
        if (opi <= 0)
            return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: unknown op \"%s\"", name, op ? op : "(missing)");
        dl_node n = dl_node_make((dl_op)opi, name);
        const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(nj, "inputs");
        if (!cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) < 1 || cJSON_GetArraySize(inputs) > 2)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: inputs must be an array of 1 or 2 names", name);
        const cJSON *ij;
        cJSON_ArrayForEach(ij, inputs) {
            if (!cJSON_IsString(ij)) return dl_fail(err, DL_ERR_FORMAT, "node %s: input is not a name", name);
            int k = dl_graph_find_node(g, ij->valuestring);
            if (k < 0)
                return dl_fail(err, DL_ERR_FORMAT,
                               "node %s: input \"%s\" is not an earlier node (unknown name or cycle)", name,
                               ij->valuestring);
            n.inputs[n.n_inputs++] = k;
        }
        if (cJSON_GetObjectItemCaseSensitive(nj, "kernel") &&
            !json_pair(nj, "kernel", 1, 64, &n.kh, &n.kw))
            return dl_fail(err, DL_ERR_FORMAT, "node %s: kernel must be [h,w] in 1..64", name);
        if (cJSON_GetObjectItemCaseSensitive(nj, "stride") &&
            !json_pair(nj, "stride", 1, 64, &n.sh, &n.sw))
            return dl_fail(err, DL_ERR_FORMAT, "node %s: stride must be [h,w] in 1..64", name);
        const cJSON *pad = cJSON_GetObjectItemCaseSensitive(nj, "padding");
        if (cJSON_IsString(pad)) {
            if (strcmp(pad->valuestring, "same") == 0) n.pad_mode = DL_PAD_SAME;
            else if (strcmp(pad->valuestring, "valid") == 0) n.pad_mode = DL_PAD_VALID;
            else return dl_fail(err, DL_ERR_FORMAT, "node %s: padding \"%s\" unknown", name, pad->valuestring);
        } else if (cJSON_IsArray(pad) && cJSON_GetArraySize(pad) == 4) {
            int p[4];
            for (int k = 0; k < 4; k++) {
                const cJSON *v = cJSON_GetArrayItem(pad, k);
                if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 4096)
                    return dl_fail(err, DL_ERR_FORMAT, "node %s: padding[%d] out of range", name, k);
                p[k] = (int)v->valuedouble;
            }
            n.pad_mode = DL_PAD_EXPLICIT;
            n.pad_t = p[0]; n.pad_b = p[1]; n.pad_l = p[2]; n.pad_r = p[3];
        } else if (pad) {
            return dl_fail(err, DL_ERR_FORMAT, "node %s: padding must be \"same\", \"valid\" or [t,b,l,r]", name);
        }
        if (cJSON_GetObjectItemCaseSensitive(nj, "groups") && !json_int(nj, "groups", 1, 65536, &n.groups))
            return dl_fail(err, DL_ERR_FORMAT, "node %s: groups out of range", name);
        if (cJSON_GetObjectItemCaseSensitive(nj, "units") && !json_int(nj, "units", 1, 1 << 20, &n.units))
            return dl_fail(err, DL_ERR_FORMAT, "node %s: units out of range", name);
        const char *act = meta_string(nj, "activation");
        if (act) {
            int a = dl_act_from_name(act);
            if (a < 0) return dl_fail(err, DL_ERR_UNSUPPORTED, "node %s: activation \"%s\" unknown", name, act);
            n.act = (dl_act)a;
        }
        const cJSON *rate = cJSON_GetObjectItemCaseSensitive(nj, "rate");
        if (rate) {
            if (!cJSON_IsNumber(rate) || !(rate->valuedouble >= 0 && rate->valuedouble < 1))
                return dl_fail(err, DL_ERR_FORMAT, "node %s: rate must be a number in [0, 1)", name);
            n.rate = (float)rate->valuedouble;
        }
        const char *w = meta_string(nj, "weight"), *b = meta_string(nj, "bias");
        if (w && (n.weight = dl_graph_find_tensor(g, w)) < 0)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: weight tensor \"%s\" not in the file", name, w);
        if (b && (n.bias = dl_graph_find_tensor(g, b)) < 0)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: bias tensor \"%s\" not in the file", name, b);
        if ((n.op == DL_OP_CONV2D || n.op == DL_OP_DENSE) && n.weight < 0)
            return dl_fail(err, DL_ERR_FORMAT, "node %s: op %s needs a weight", name, op);
        if (dl_graph_add_node(g, &n, err) < 0) return -1;
    }
    const char *out = meta_string(gj, "output"), *feat = meta_string(gj, "features");
    if (!out) return dl_fail(err, DL_ERR_FORMAT, "graph.output: missing");
    if ((g->output = dl_graph_find_node(g, out)) < 0)
        return dl_fail(err, DL_ERR_FORMAT, "graph.output: node \"%s\" not found", out);
    if (feat && (g->features = dl_graph_find_node(g, feat)) < 0)
        return dl_fail(err, DL_ERR_FORMAT, "graph.features: node \"%s\" not found", feat);
    return dl_graph_infer(g, err);
}

static cJSON *graph_to_json(const dl_graph *g)
{
    cJSON *gj = cJSON_CreateObject();
    const dl_node *n0 = &g->nodes[0];
    cJSON *in = cJSON_AddObjectToObject(gj, "input");
    cJSON_AddStringToObject(in, "name", n0->name);
    cJSON_AddNumberToObject(in, "height", n0->h);
    cJSON_AddNumberToObject(in, "width", n0->w);
    cJSON_AddNumberToObject(in, "channels", n0->c);
    cJSON *nodes = cJSON_AddArrayToObject(gj, "nodes");
    for (int i = 1; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        cJSON *nj = cJSON_CreateObject();
        cJSON_AddStringToObject(nj, "name", n->name);
        cJSON_AddStringToObject(nj, "op", dl_op_name(n->op));
        cJSON *ins = cJSON_AddArrayToObject(nj, "inputs");
        for (int k = 0; k < n->n_inputs; k++)
            cJSON_AddItemToArray(ins, cJSON_CreateString(g->nodes[n->inputs[k]].name));
        bool windowed = n->op == DL_OP_CONV2D || n->op == DL_OP_AVGPOOL || n->op == DL_OP_MAXPOOL;
        if (windowed) {
            int k2[2] = {n->kh, n->kw}, s2[2] = {n->sh, n->sw};
            cJSON_AddItemToObject(nj, "kernel", cJSON_CreateIntArray(k2, 2));
            cJSON_AddItemToObject(nj, "stride", cJSON_CreateIntArray(s2, 2));
        }
        if (windowed || n->op == DL_OP_PAD) {
            if (n->pad_mode == DL_PAD_SAME && n->op != DL_OP_PAD) {
                cJSON_AddStringToObject(nj, "padding", "same");
            } else if (n->pad_mode == DL_PAD_VALID && n->op != DL_OP_PAD) {
                cJSON_AddStringToObject(nj, "padding", "valid");
            } else {
                int p[4] = {n->pad_t, n->pad_b, n->pad_l, n->pad_r};
                cJSON_AddItemToObject(nj, "padding", cJSON_CreateIntArray(p, 4));
            }
        }
        if (n->op == DL_OP_CONV2D) cJSON_AddNumberToObject(nj, "groups", n->groups);
        if (n->op == DL_OP_CONV2D || n->op == DL_OP_DENSE) cJSON_AddNumberToObject(nj, "units", n->units);
        if (n->act != DL_ACT_NONE) cJSON_AddStringToObject(nj, "activation", dl_act_name(n->act));
        if (n->op == DL_OP_DROPOUT) cJSON_AddNumberToObject(nj, "rate", n->rate);
        if (n->weight >= 0) cJSON_AddStringToObject(nj, "weight", g->tensors[n->weight].name);
        if (n->bias >= 0) cJSON_AddStringToObject(nj, "bias", g->tensors[n->bias].name);
        cJSON_AddItemToArray(nodes, nj);
    }
    cJSON_AddStringToObject(gj, "output", g->nodes[g->output].name);
    if (g->features >= 0) cJSON_AddStringToObject(gj, "features", g->nodes[g->features].name);
    return gj;
}

/* ------------------------------------------------------------ metadata */

static int parse_json_meta(const cJSON *meta, const char *key, bool required, cJSON **out, dl_error *err)
{
    *out = NULL;
    const char *s = meta_string(meta, key);
    if (!s) return required ? dl_fail(err, DL_ERR_FORMAT, "__metadata__.%s: missing", key) : 0;
    *out = cJSON_Parse(s);
    if (!*out) return dl_fail(err, DL_ERR_FORMAT, "__metadata__.%s: not valid JSON", key);
    return 0;
}

static int parse_preprocess(dl_preprocess *p, const cJSON *pj, dl_error *err)
{
    memset(p, 0, sizeof *p);
    if (!cJSON_IsObject(pj)) return dl_fail(err, DL_ERR_FORMAT, "preprocess: not an object");
    CHECK_KEYS(pj, "preprocess", "width", "height", "resize", "mean", "std");
    if (!json_int(pj, "width", 1, 8192, &p->width) || !json_int(pj, "height", 1, 8192, &p->height))
        return dl_fail(err, DL_ERR_FORMAT, "preprocess.width/height: missing or out of range");
    const char *r = meta_string(pj, "resize");
    if (!r || (strcmp(r, "squash") && strcmp(r, "center_crop") && strcmp(r, "pad")))
        return dl_fail(err, DL_ERR_FORMAT, "preprocess.resize: must be \"squash\", \"center_crop\" or \"pad\"");
    snprintf(p->resize, sizeof p->resize, "%s", r);
    const char *keys[2] = {"mean", "std"};
    float *dst[2] = {p->mean, p->std};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(pj, keys[k]);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3)
            return dl_fail(err, DL_ERR_FORMAT, "preprocess.%s: must be an array of 3 numbers", keys[k]);
        for (int c = 0; c < 3; c++) {
            const cJSON *v = cJSON_GetArrayItem(a, c);
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e6)
                return dl_fail(err, DL_ERR_FORMAT, "preprocess.%s[%d]: not a finite number", keys[k], c);
            dst[k][c] = (float)v->valuedouble;
        }
    }
    for (int c = 0; c < 3; c++)
        if (!(fabsf(p->std[c]) > 1e-6f)) return dl_fail(err, DL_ERR_FORMAT, "preprocess.std[%d]: zero", c);
    return 0;
}

static cJSON *preprocess_to_json(const dl_preprocess *p)
{
    cJSON *pj = cJSON_CreateObject();
    cJSON_AddNumberToObject(pj, "width", p->width);
    cJSON_AddNumberToObject(pj, "height", p->height);
    cJSON_AddStringToObject(pj, "resize", p->resize);
    cJSON_AddItemToObject(pj, "mean", cJSON_CreateFloatArray(p->mean, 3));
    cJSON_AddItemToObject(pj, "std", cJSON_CreateFloatArray(p->std, 3));
    return pj;
}

static int parse_classes(dl_model *m, const cJSON *cj, int out_units, dl_error *err)
{
    if (!cJSON_IsArray(cj)) return dl_fail(err, DL_ERR_FORMAT, "__metadata__.classes: not an array");
    int n = cJSON_GetArraySize(cj);
    if (n < 1 || n > MAX_CLASSES) return dl_fail(err, DL_ERR_FORMAT, "__metadata__.classes: %d entries", n);
    if (n != out_units)
        return dl_fail(err, DL_ERR_FORMAT, "__metadata__.classes: %d names but the output has %d units", n,
                       out_units);
    m->class_names = calloc(n, sizeof(char *));
    m->class_long_names = calloc(n, sizeof(char *));
    if (!m->class_names || !m->class_long_names) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    m->num_classes = n;
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(cj, i);
        if (cJSON_IsObject(c)) CHECK_KEYS(c, "__metadata__.classes[]", "name", "long_name");
        const char *name = cJSON_IsString(c) ? c->valuestring : meta_string(c, "name");
        const char *lname = cJSON_IsObject(c) ? meta_string(c, "long_name") : NULL;
        if (!name) return dl_fail(err, DL_ERR_FORMAT, "__metadata__.classes[%d]: no name", i);
        m->class_names[i] = strdup(name);
        m->class_long_names[i] = strdup(lname ? lname : name);
        if (!m->class_names[i] || !m->class_long_names[i]) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* ------------------------------------------------------------ load */

static void model_release(dl_model *m)
{
    for (int i = 0; i < m->num_classes; i++) {
        if (m->class_names) free(m->class_names[i]);
        if (m->class_long_names) free(m->class_long_names[i]);
    }
    free(m->class_names);
    free(m->class_long_names);
    free(m->ood_mean);
    free(m->ood_precision);
    free(m->info_json);
    free(m->provenance_json);
    if (m->exec_ready) dl_exec_free(&m->exec);
    dl_graph_free(&m->graph);
    for (int i = 0; i < m->n_members; i++) {
        if (m->members[i]) model_release(m->members[i]);
        free(m->members[i]);
    }
    free(m->members);
    m->members = NULL;
    m->n_members = 0;
}

/* Header pass: validate every tensor entry (dtype, shape, offsets inside the
 * data, no overlap) without touching the data. *ents_out (sorted by offset)
 * borrows names from hdr; caller frees it. */
static int read_entries(const cJSON *hdr, size_t data_len, st_entry **ents_out, int *n_out, dl_error *err)
{
    int n = cJSON_GetArraySize(hdr);
    st_entry *ents = calloc(n ? n : 1, sizeof *ents);
    *ents_out = NULL;
    *n_out = 0;
    if (!ents) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    int ne = 0, rc = -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, hdr) {
        if (strcmp(t->string, "__metadata__") == 0) continue;
        st_entry *e = &ents[ne];
        e->name = t->string;
        const char *bare = e->name; /* an ensemble member's prefix does not count */
        member_of(e->name, &bare);
        if (strlen(bare) >= DL_NAME_MAX) { dl_fail(err, DL_ERR_FORMAT, "tensor name too long"); goto out; }
        const char *dtype = meta_string(t, "dtype");
        if (!dtype) { dl_fail(err, DL_ERR_FORMAT, "tensor %s: dtype missing", e->name); goto out; }
        if (!strcmp(dtype, "F32")) e->esize = 4;
        else if (!strcmp(dtype, "F16")) e->esize = 2;
        else {
            dl_fail(err, DL_ERR_UNSUPPORTED, "tensor %s: dtype %.16s not supported (F32 or F16)", e->name, dtype);
            goto out;
        }
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) < 1 || cJSON_GetArraySize(shape) > 4) {
            dl_fail(err, DL_ERR_FORMAT, "tensor %s: shape must have 1 to 4 dimensions", e->name);
            goto out;
        }
        size_t count = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, shape) {
            if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 2147483648.0 ||
                d->valuedouble != floor(d->valuedouble)) {
                dl_fail(err, DL_ERR_FORMAT, "tensor %s: bad shape dimension", e->name);
                goto out;
            }
            e->dims[e->ndim++] = (int64_t)d->valuedouble;
            if (!dl_mul_size(count, (size_t)d->valuedouble, &count)) {
                dl_fail(err, DL_ERR_FORMAT, "tensor %s: shape product overflows", e->name);
                goto out;
            }
        }
        size_t bytes;
        if (!dl_mul_size(count, (size_t)e->esize, &bytes)) {
            dl_fail(err, DL_ERR_FORMAT, "tensor %s: byte size overflows", e->name);
            goto out;
        }
        if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
            dl_fail(err, DL_ERR_FORMAT, "tensor %s: data_offsets must be [begin,end]", e->name);
            goto out;
        }
        double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
        if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) ||
            b < 0 || en < b || en > (double)data_len) {
            dl_fail(err, DL_ERR_FORMAT, "tensor %s: data_offsets [%.0f,%.0f] outside the %zu data bytes",
                    e->name, b, en, data_len);
            goto out;
        }
        e->begin = (size_t)b;
        e->end = (size_t)en;
        if (e->end - e->begin != bytes) {
            dl_fail(err, DL_ERR_FORMAT, "tensor %s: data_offsets span %zu bytes, shape needs %zu", e->name,
                    e->end - e->begin, bytes);
            goto out;
        }
        ne++;
    }
    qsort(ents, ne, sizeof *ents, cmp_entry);
    for (int i = 1; i < ne; i++)
        if (ents[i].begin < ents[i - 1].end) {
            dl_fail(err, DL_ERR_FORMAT, "tensors %s and %s overlap", ents[i - 1].name, ents[i].name);
            goto out;
        }
    rc = 0;
out:
    if (rc) {
        free(ents);
        return rc;
    }
    *ents_out = ents;
    *n_out = ne;
    return 0;
}

/* Register the tensors' names and shapes in the graph with no data yet, so
 * the graph can be checked and its memory need computed before any tensor
 * is allocated. */
static int add_tensor_shapes(dl_graph *g, const st_entry *ents, int ne, dl_error *err)
{
    dl_tensor *t = calloc(ne ? ne : 1, sizeof *t);
    if (!t) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    free(g->tensors);
    g->tensors = t;
    g->cap_tensors = ne ? ne : 1;
    g->n_tensors = 0;
    for (int i = 0; i < ne; i++) {
        if (dl_graph_find_tensor(g, ents[i].name) >= 0)
            return dl_fail(err, DL_ERR_FORMAT, "tensor %s: duplicate name", ents[i].name);
        dl_tensor *d = &g->tensors[g->n_tensors++];
        snprintf(d->name, sizeof d->name, "%s", ents[i].name);
        d->ndim = ents[i].ndim;
        memcpy(d->dims, ents[i].dims, sizeof d->dims);
        d->count = (ents[i].end - ents[i].begin) / (size_t)ents[i].esize; /* checked equal to the shape's product */
    }
    return 0;
}

/* Data pass: allocate each tensor and decode its little-endian F32 or F16
 * values to float (the engine computes in float only). *n_f16 counts the
 * tensors stored as F16. */
static int fill_tensors(dl_graph *g, const st_entry *ents, int ne, const uint8_t *data, int *n_f16, dl_error *err)
{
    *n_f16 = 0;
    for (int i = 0; i < ne; i++) {
        dl_tensor *t = &g->tensors[i];
        float *dst = NULL;
        if (posix_memalign((void **)&dst, 64, t->count ? t->count * sizeof(float) : 64) != 0)
            return dl_fail(err, DL_ERR_NOMEM, "tensor %s: cannot allocate %zu floats", t->name, t->count);
        t->data = dst;
        const uint8_t *src = data + ents[i].begin;
        bool half = ents[i].esize == 2;
        *n_f16 += half;
        if (half) {
            dl_half_to_float_n(src, dst, t->count);
        } else {
            for (size_t j = 0; j < t->count; j++) {
                uint32_t u = (uint32_t)src[4 * j] | (uint32_t)src[4 * j + 1] << 8 | (uint32_t)src[4 * j + 2] << 16 |
                             (uint32_t)src[4 * j + 3] << 24;
                memcpy(&dst[j], &u, 4);
            }
        }
        /* one branch-free pass (NaN fails the comparison too); the reason
         * only when something is out of range */
        int in_range = 1;
        for (size_t j = 0; j < t->count; j++) in_range &= fabsf(dst[j]) <= MAX_WEIGHT_ABS;
        for (size_t j = 0; !in_range && j < t->count; j++) {
            if (!isfinite(dst[j]))
                return dl_fail(err, DL_ERR_FORMAT, "tensor %s: element %zu is not finite (%s %s)", t->name, j,
                               half ? "F16" : "F32", isnan(dst[j]) ? "NaN" : "Inf");
            if (fabsf(dst[j]) > MAX_WEIGHT_ABS)
                return dl_fail(err, DL_ERR_FORMAT, "tensor %s: element %zu is %g, outside +-%g (damaged file?)",
                               t->name, j, dst[j], MAX_WEIGHT_ABS);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ memory limit */

static size_t mib_up(size_t bytes)
{
    return (bytes >> 20) + ((bytes & ((1u << 20) - 1)) != 0);
}

/* The limit in bytes: DERMLENS_MAX_MEMORY_MB if set, else the default. */
/* What using the model needs at batch 1: every tensor plus the executor's
 * arena (each node's output, twice for hswish/silu which keep their
 * pre-activation, 16-float aligned, as dl_exec_init lays it out) and the
 * largest convolution scratch. Saturates at SIZE_MAX instead of wrapping. */
static void memory_need(const dl_graph *g, size_t *weights, size_t *acts)
{
    size_t w = 0, a = 0, scratch = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        size_t b;
        if (!dl_mul_size(g->tensors[i].count, sizeof(float), &b) || !dl_add_size(w, b, &w)) w = SIZE_MAX;
    }
    /* dl_exec_init keeps a packed copy of the conv/dense weights for the fast
     * kernels: count the weights twice (an upper bound), plus what Winograd's
     * packed form (16/9 or 36/9 of its weights) takes beyond that, below. */
    if (!dl_mul_size(w, 2, &w)) w = SIZE_MAX;
    for (int i = 0; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        size_t c, b;
        bool pre = n->act == DL_ACT_HSWISH || n->act == DL_ACT_SILU;
        if (!dl_mul_size((size_t)n->h, (size_t)n->w, &c) || !dl_mul_size(c, (size_t)n->c, &c) ||
            !dl_add_size(c, 15, &c) || !dl_mul_size(c & ~(size_t)15, pre ? 8 : 4, &b) || !dl_add_size(a, b, &a))
            a = SIZE_MAX;
        if (n->op == DL_OP_CONV2D) {
            const dl_node *in = &g->nodes[n->inputs[0]];
            dl_conv_shape s = {.n = 1, .ih = in->h, .iw = in->w, .ic = in->c, .oh = n->h, .ow = n->w,
                               .oc = n->c, .kh = n->kh, .kw = n->kw, .sh = n->sh, .sw = n->sw,
                               .pt = n->pad_t, .pl = n->pad_l, .groups = n->groups, .act = n->act};
            size_t sc = dl_conv2d_scratch_floats(&s);
            if (sc > scratch) scratch = sc;
            size_t own = (size_t)s.oc * 9 * s.ic, pk = dl_conv2d_packed_winograd(&s) ? dl_conv2d_packed_floats(&s) : 0;
            if (pk > own && (!dl_mul_size(pk - own, sizeof(float), &b) || !dl_add_size(w, b, &w))) w = SIZE_MAX;
        }
    }
    size_t sb;
    if (!dl_mul_size(scratch, sizeof(float), &sb) || !dl_add_size(a, sb, &a)) a = SIZE_MAX;
    *weights = w;
    *acts = a;
}

static int check_memory(const dl_model *m, dl_error *err)
{
    size_t limit = 0, w, a, total;
    if (dl_memory_limit(&limit, err)) return -1;
    memory_need(&m->graph, &w, &a);
    if (!dl_add_size(w, a, &total)) total = SIZE_MAX;
    if (total <= limit) return 0;
    const dl_node *in = &m->graph.nodes[0];
    return dl_fail(err, DL_ERR_LIMIT,
                   "model needs %zu MiB (weights with their packed copy %zu MiB + activations %zu MiB for one %dx%d image), "
                   "more than the %zu MiB limit (DERMLENS_MAX_MEMORY_MB)",
                   mib_up(total), mib_up(w), mib_up(a), in->w, in->h, limit >> 20);
}



static int parse_ood(dl_model *m, const cJSON *meta, dl_error *err)
{
    int im = dl_graph_find_tensor(&m->graph, "ood.mean");
    int ip = dl_graph_find_tensor(&m->graph, "ood.precision");
    const char *thr = meta_string(meta, "ood_threshold");
    if (im < 0 && ip < 0) return 0;
    if (im < 0 || ip < 0 || !thr) return dl_fail(err, DL_ERR_FORMAT, "ood: needs ood.mean, ood.precision and ood_threshold");
    const dl_tensor *tm = &m->graph.tensors[im], *tp = &m->graph.tensors[ip];
    int d = (int)tm->count;
    if (m->graph.features < 0 || d != m->graph.nodes[m->graph.features].c || tp->count != (size_t)d * d)
        return dl_fail(err, DL_ERR_FORMAT, "ood: tensor sizes do not match the feature dimension");
    m->ood_dim = d;
    m->ood_mean = malloc(sizeof(float) * d);
    m->ood_precision = malloc(sizeof(float) * d * d);
    if (!m->ood_mean || !m->ood_precision) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    memcpy(m->ood_mean, tm->data, sizeof(float) * d);
    memcpy(m->ood_precision, tp->data, sizeof(float) * d * d);
    if (!strict_float(thr, 1e-30, 1e30, &m->ood_threshold))
        return dl_fail(err, DL_ERR_FORMAT, "ood_threshold: \"%.32s\" is not a positive finite number", thr);
    return 0;
}

static char *build_info_json(const dl_model *m, const cJSON *meta)
{
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "name", m->name);
    cJSON_AddStringToObject(info, "sha256", m->sha256);
    cJSON_AddStringToObject(info, "tensor_sha256", m->tensor_sha256[0] ? m->tensor_sha256 : "not recorded");
    const char *fv = meta_string(meta, "format_version");
    cJSON_AddStringToObject(info, "format_version", fv ? fv : "?");
    {
        /* how the file stores its tensors, over all members */
        int nt = 0, nh = 0;
        for (int k = 0; k <= m->n_members; k++) {
            const dl_model *x = k ? m->members[k - 1] : m;
            nt += x->graph.n_tensors;
            nh += x->n_f16;
        }
        cJSON *st = cJSON_AddObjectToObject(info, "storage");
        cJSON_AddStringToObject(st, "dtype", nh ? "F16" : "F32");
        cJSON_AddNumberToObject(st, "tensors", nt);
        cJSON_AddNumberToObject(st, "tensors_f16", nh);
    }
    cJSON_AddNumberToObject(info, "temperature", m->temperature);
    cJSON_AddItemToObject(info, "preprocess", preprocess_to_json(&m->pre));
    cJSON *classes = cJSON_AddArrayToObject(info, "classes");
    for (int i = 0; i < m->num_classes; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", m->class_names[i]);
        cJSON_AddStringToObject(c, "long_name", m->class_long_names[i]);
        cJSON_AddItemToArray(classes, c);
    }
    const dl_graph *g = &m->graph;
    cJSON *gs = cJSON_AddObjectToObject(info, "graph");
    cJSON_AddNumberToObject(gs, "nodes", g->n_nodes);
    size_t params = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].weight >= 0) params += g->tensors[g->nodes[i].weight].count;
        if (g->nodes[i].bias >= 0) params += g->tensors[g->nodes[i].bias].count;
    }
    cJSON_AddNumberToObject(gs, "parameters", (double)params);
    cJSON_AddNumberToObject(gs, "gflops", dl_graph_flops(g) / 1e9);
    cJSON *ops = cJSON_AddObjectToObject(gs, "ops");
    for (int op = 1; op < DL_OP_COUNT; op++) {
        int cnt = 0;
        for (int i = 0; i < g->n_nodes; i++) cnt += g->nodes[i].op == (dl_op)op;
        if (cnt) cJSON_AddNumberToObject(ops, dl_op_name((dl_op)op), cnt);
    }
    cJSON_AddStringToObject(gs, "output", g->nodes[g->output].name);
    if (g->features >= 0) {
        cJSON_AddStringToObject(gs, "features", g->nodes[g->features].name);
        cJSON_AddNumberToObject(gs, "feature_dim", g->nodes[g->features].c);
    }
    int lc = dl_graph_last_spatial_conv(g);
    if (lc >= 0) cJSON_AddStringToObject(gs, "last_conv", g->nodes[lc].name);
    cJSON *layers = cJSON_AddArrayToObject(gs, "layers");
    for (int i = 0; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        char line[256];
        snprintf(line, sizeof line, "%-48s %-15s %4dx%-4dx%5d%s%s", n->name, dl_op_name(n->op), n->h, n->w, n->c,
                 n->act ? " " : "", n->act ? dl_act_name(n->act) : "");
        cJSON_AddItemToArray(layers, cJSON_CreateString(line));
    }
    cJSON *prov = m->provenance_json ? cJSON_Parse(m->provenance_json) : NULL;
    if (prov) cJSON_AddItemToObject(info, "provenance", prov);
    if (m->ood_dim) {
        cJSON *o = cJSON_AddObjectToObject(info, "ood");
        cJSON_AddStringToObject(o, "method", "mahalanobis");
        cJSON_AddNumberToObject(o, "dim", m->ood_dim);
        cJSON_AddNumberToObject(o, "threshold", m->ood_threshold);
    }
    if (m->n_members) {
        /* an ensemble: every member, member 0 first (the top-level fields) */
        cJSON *mem = cJSON_AddArrayToObject(info, "members");
        for (int k = 0; k <= m->n_members; k++) {
            const dl_model *x = k ? m->members[k - 1] : m;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", x->name);
            cJSON_AddNumberToObject(o, "temperature", x->temperature);
            cJSON_AddStringToObject(o, "resize", x->pre.resize);
            if (x->ood_dim) cJSON_AddNumberToObject(o, "ood_threshold", x->ood_threshold);
            cJSON_AddItemToArray(mem, o);
        }
        cJSON_AddStringToObject(info, "ensemble",
                                "mean of the members' calibrated probabilities; saliency maps averaged; OOD score = "
                                "mean of score/threshold over members, flagged above 1");
    }
    char *s = cJSON_Print(info);
    cJSON_Delete(info);
    return s;
}

/* "member<N>/..." -> N (1..MAX_MEMBERS) and the rest of the name; 0 if the
 * name has no member prefix (it belongs to member 0). */
static int member_of(const char *name, const char **rest)
{
    if (strncmp(name, "member", 6) != 0) return 0;
    const char *p = name + 6;
    int n = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 3) n = n * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '/' || n < 1) return 0;
    if (rest) *rest = p + 1;
    return n;
}

/* The tensor entries of member k (0: unprefixed), names without the prefix. */
static int member_entries(const st_entry *ents, int n, int k, st_entry **out, int *n_out, dl_error *err)
{
    st_entry *sel = malloc(sizeof *sel * (n ? n : 1));
    if (!sel) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    int c = 0;
    for (int i = 0; i < n; i++) {
        const char *rest = ents[i].name;
        if (member_of(ents[i].name, &rest) != k) continue;
        sel[c] = ents[i];
        sel[c].name = rest;
        c++;
    }
    *out = sel;
    *n_out = c;
    return 0;
}

static int parse_classes(dl_model *m, const cJSON *cj, int out_units, dl_error *err);
static int parse_ood(dl_model *m, const cJSON *meta, dl_error *err);

/* Member k >= 1 of an ensemble: the top-level graph's structure with its own
 * tensors (prefix member<k>/), preprocessing (default: member 0's),
 * temperature and OOD detector. */
static int parse_member(dl_model *m0, int k, const cJSON *mj, const cJSON *graph, const cJSON *classes,
                        const st_entry *ents, int n_ents, const uint8_t *tensor_data, dl_model **out, dl_error *err)
{
    dl_model *mm = calloc(1, sizeof *mm);
    st_entry *sel = NULL;
    int ns = 0, rc = -1;
    cJSON *meta = NULL;
    if (!mm) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    dl_graph_init(&mm->graph);
    mm->temperature = 1.f;
    if (!cJSON_IsObject(mj)) { dl_fail(err, DL_ERR_FORMAT, "not an object"); goto out; }
    {
        /* strict: a misspelt key must not silently fall back to a default */
        static const char *const known[] = {"name", "temperature", "preprocess", "ood_threshold", "provenance"};
        const cJSON *kv;
        cJSON_ArrayForEach(kv, mj) {
            bool ok = false;
            for (size_t q = 0; q < sizeof known / sizeof *known; q++) ok |= !strcmp(kv->string, known[q]);
            if (!ok) { dl_fail(err, DL_ERR_FORMAT, "unknown key \"%.64s\"", kv->string); goto out; }
        }
    }
    if (member_entries(ents, n_ents, k, &sel, &ns, err) || add_tensor_shapes(&mm->graph, sel, ns, err)) goto out;
    if (parse_graph(&mm->graph, graph, err)) { dl_fail_prefix(err, "graph"); goto out; }
    if (check_memory(mm, err) || fill_tensors(&mm->graph, sel, ns, tensor_data, &mm->n_f16, err)) goto out;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(mj, "preprocess");
    if (pre) {
        if (parse_preprocess(&mm->pre, pre, err)) goto out;
    } else {
        mm->pre = m0->pre;
    }
    if (mm->pre.width != m0->pre.width || mm->pre.height != m0->pre.height) {
        dl_fail(err, DL_ERR_FORMAT, "preprocess size %dx%d differs from the graph input", mm->pre.width, mm->pre.height);
        goto out;
    }
    if (parse_classes(mm, classes, m0->num_classes, err)) goto out;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(mj, "name");
    snprintf(mm->name, sizeof mm->name, "%s", cJSON_IsString(nm) ? nm->valuestring : "member");
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(mj, "temperature");
    if (tj) {
        if (!cJSON_IsNumber(tj) || !(tj->valuedouble > 0.01 && tj->valuedouble < 100)) {
            dl_fail(err, DL_ERR_FORMAT, "temperature out of (0.01, 100)");
            goto out;
        }
        mm->temperature = (float)tj->valuedouble;
    }
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(mj, "provenance");
    if (prov) {
        if (!cJSON_IsObject(prov)) { dl_fail(err, DL_ERR_FORMAT, "provenance: not an object"); goto out; }
        mm->provenance_json = cJSON_PrintUnformatted(prov);
    }
    /* the OOD parser reads its threshold from a metadata map of strings */
    meta = cJSON_CreateObject();
    const cJSON *thr = cJSON_GetObjectItemCaseSensitive(mj, "ood_threshold");
    if (thr) {
        char buf[64];
        if (!cJSON_IsNumber(thr) || !isfinite(thr->valuedouble) || thr->valuedouble <= 0) {
            dl_fail(err, DL_ERR_FORMAT, "ood_threshold: not a positive finite number");
            goto out;
        }
        snprintf(buf, sizeof buf, "%.9g", thr->valuedouble);
        cJSON_AddStringToObject(meta, "ood_threshold", buf);
    }
    if (parse_ood(mm, meta, err)) goto out;
    memcpy(mm->sha256, m0->sha256, sizeof mm->sha256);
    *out = mm;
    mm = NULL;
    rc = 0;
out:
    cJSON_Delete(meta);
    free(sel);
    if (mm) { model_release(mm); free(mm); }
    return rc;
}

/* The optional "members" metadata: a JSON array, one object per member
 * after the first. Every prefixed tensor must belong to a listed member. */
static int parse_members(dl_model *m, const cJSON *meta, const cJSON *graph, const cJSON *classes,
                         const st_entry *ents, int n_ents, const uint8_t *tensor_data, dl_error *err)
{
    int max_k = 0;
    for (int i = 0; i < n_ents; i++) {
        int k = member_of(ents[i].name, NULL);
        if (k > max_k) max_k = k;
    }
    cJSON *arr = NULL;
    if (parse_json_meta(meta, "members", false, &arr, err)) return -1;
    int n = arr ? cJSON_GetArraySize(arr) : 0;
    if (arr && (!cJSON_IsArray(arr) || n < 1 || n > MAX_MEMBERS - 1)) {
        cJSON_Delete(arr);
        return dl_fail(err, DL_ERR_FORMAT, "__metadata__.members: must be an array of 1..%d members", MAX_MEMBERS - 1);
    }
    if (max_k > n) {
        cJSON_Delete(arr);
        return dl_fail(err, DL_ERR_FORMAT, "tensor prefix member%d/: no such ensemble member (%d listed)", max_k, n);
    }
    if (!n) return 0;
    m->members = calloc(n, sizeof *m->members);
    if (!m->members) { cJSON_Delete(arr); return dl_fail(err, DL_ERR_NOMEM, "out of memory"); }
    m->n_members = n;
    for (int k = 1; k <= n; k++) {
        if (parse_member(m, k, cJSON_GetArrayItem(arr, k - 1), graph, classes, ents, n_ents, tensor_data,
                         &m->members[k - 1], err)) {
            cJSON_Delete(arr);
            return dl_fail_prefix(err, "ensemble member %d", k);
        }
    }
    cJSON_Delete(arr);
    return 0;
}

int dl_model_parse(dl_model *m, const uint8_t *data, size_t size, dl_error *err)
{
    memset(m, 0, sizeof *m);
    dl_graph_init(&m->graph);
    m->temperature = 1.f;
    cJSON *hdr = NULL, *graph = NULL, *classes = NULL, *pre = NULL;
    st_entry *ents = NULL, *own = NULL;
    int n_ents = 0, n_own = 0;
    int rc = -1;
    if (size > (size_t)DL_MAX_MODEL_BYTES) {
        dl_fail(err, DL_ERR_LIMIT, "model file is %zu bytes, limit is %lld", size, (long long)DL_MAX_MODEL_BYTES);
        goto out;
    }
    if (size < 8) { dl_fail(err, DL_ERR_FORMAT, "file too short for a safetensors header (%zu bytes)", size); goto out; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (hlen < 2 || hlen > MAX_HEADER_BYTES || hlen > size - 8) {
        dl_fail(err, DL_ERR_FORMAT, "header length %llu does not fit in the %zu-byte file", (unsigned long long)hlen, size);
        goto out;
    }
    if (data[8] != '{') { dl_fail(err, DL_ERR_FORMAT, "header does not start with '{' (wrong magic: not a safetensors file)"); goto out; }
    const char *hend = NULL;
    hdr = cJSON_ParseWithLengthOpts((const char *)data + 8, (size_t)hlen, &hend, false);
    if (!cJSON_IsObject(hdr)) { dl_fail(err, DL_ERR_FORMAT, "header is not a well-formed JSON object"); goto out; }
    /* the header length is exact: after the JSON only the padding spaces */
    for (const char *q = hend; q < (const char *)data + 8 + hlen; q++)
        if (*q != ' ') {
            dl_fail(err, DL_ERR_FORMAT, "header length %llu does not end where the header JSON does (damaged length?)",
                    (unsigned long long)hlen);
            goto out;
        }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
    if (!cJSON_IsObject(meta)) { dl_fail(err, DL_ERR_FORMAT, "__metadata__: missing (not a DermLens model)"); goto out; }
    {
        static const char *const known[] = {"format", "format_version", "name", "temperature", "graph", "preprocess",
                                            "classes", "provenance", "ood_threshold", "members", "tensor_sha256"};
        if (check_keys(meta, known, (int)(sizeof known / sizeof *known), "__metadata__", err)) goto out;
    }
    const cJSON *mv;
    cJSON_ArrayForEach(mv, meta) {
        if (!cJSON_IsString(mv)) { dl_fail(err, DL_ERR_FORMAT, "__metadata__.%s: value is not a string", mv->string); goto out; }
    }
    const char *fmt = meta_string(meta, "format"), *ver = meta_string(meta, "format_version");
    if (!fmt || strcmp(fmt, FORMAT_NAME) != 0) { dl_fail(err, DL_ERR_FORMAT, "__metadata__.format: not \"dermlens\""); goto out; }
    if (!ver || atoi(ver) != FORMAT_VERSION) {
        dl_fail(err, DL_ERR_UNSUPPORTED, "__metadata__.format_version: %s (this build reads %d)", ver ? ver : "missing", FORMAT_VERSION);
        goto out;
    }
    if (read_entries(hdr, size - 8 - (size_t)hlen, &ents, &n_ents, err) ||
        member_entries(ents, n_ents, 0, &own, &n_own, err) || add_tensor_shapes(&m->graph, own, n_own, err))
        goto out;
    {
        /* tensors tile the data section exactly: no gap, no slack at the end */
        size_t at = 0, data_len = size - 8 - (size_t)hlen;
        for (int i = 0; i < n_ents; i++) {
            if (ents[i].begin != at) {
                dl_fail(err, DL_ERR_FORMAT, "tensor %s starts at byte %zu, expected %zu (gap or shifted data)",
                        ents[i].name, ents[i].begin, at);
                goto out;
            }
            at = ents[i].end;
        }
        if (at != data_len) {
            dl_fail(err, DL_ERR_FORMAT, "the tensors end at byte %zu of a %zu-byte data section", at, data_len);
            goto out;
        }
        /* the recorded digest of the tensor data, if the writer left one */
        const char *want = meta_string(meta, "tensor_sha256");
        if (want) {
            char got[65];
            dl_sha256_hex(data + 8 + hlen, data_len, got);
            if (strlen(want) != 64 || strcmp(want, got)) {
                dl_fail(err, DL_ERR_FORMAT, "tensor data sha256 %.16s... does not match the recorded %.16s... "
                        "(the weights were changed or damaged)", got, want);
                goto out;
            }
            memcpy(m->tensor_sha256, got, sizeof got);
        }
    }
    if (parse_json_meta(meta, "graph", true, &graph, err) || parse_json_meta(meta, "classes", true, &classes, err) ||
        parse_json_meta(meta, "preprocess", true, &pre, err))
        goto out;
    if (parse_graph(&m->graph, graph, err)) { dl_fail_prefix(err, "graph"); goto out; }
    /* Refuse what would not fit before any tensor or arena is allocated. */
    if (check_memory(m, err)) goto out;
    if (fill_tensors(&m->graph, own, n_own, data + 8 + hlen, &m->n_f16, err)) goto out;
    const dl_node *in = &m->graph.nodes[0];
    if (in->c != 3) { dl_fail(err, DL_ERR_UNSUPPORTED, "graph.input: %d channels, need 3 (RGB)", in->c); goto out; }
    if (parse_preprocess(&m->pre, pre, err)) goto out;
    if (m->pre.width != in->w || m->pre.height != in->h) {
        dl_fail(err, DL_ERR_FORMAT, "preprocess size %dx%d differs from graph input %dx%d", m->pre.width,
                m->pre.height, in->w, in->h);
        goto out;
    }
    const dl_node *outn = &m->graph.nodes[m->graph.output];
    if (outn->h != 1 || outn->w != 1) { dl_fail(err, DL_ERR_FORMAT, "graph.output: not a vector (%dx%dx%d)", outn->h, outn->w, outn->c); goto out; }
    if (parse_classes(m, classes, outn->c, err)) goto out;
    const char *name = meta_string(meta, "name");
    snprintf(m->name, sizeof m->name, "%s", name ? name : "unnamed");
    const char *temp = meta_string(meta, "temperature");
    if (temp) {
        if (!strict_float(temp, 0.0, 1e30, &m->temperature)) m->temperature = NAN;
        if (!(m->temperature > 0.01f && m->temperature < 100.f)) {
            dl_fail(err, DL_ERR_FORMAT, "__metadata__.temperature: %s out of (0.01, 100)", temp);
            goto out;
        }
    }
    const char *prov = meta_string(meta, "provenance");
    if (prov) {
        cJSON *pj = cJSON_Parse(prov);
        if (!pj) { dl_fail(err, DL_ERR_FORMAT, "__metadata__.provenance: not valid JSON"); goto out; }
        cJSON_Delete(pj);
        m->provenance_json = strdup(prov);
    }
    if (parse_ood(m, meta, err)) goto out;
    dl_sha256_hex(data, size, m->sha256);
    if (parse_members(m, meta, graph, classes, ents, n_ents, data + 8 + hlen, err)) goto out;
    for (int k = 0; k <= m->n_members; k++)
        if ((k ? m->members[k - 1] : m)->n_f16) m->storage = DL_STORAGE_F16;
    m->info_json = build_info_json(m, meta);
    if (!m->info_json) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); goto out; }
    rc = 0;
out:
    free(ents);
    free(own);
    cJSON_Delete(hdr);
    cJSON_Delete(graph);
    cJSON_Delete(classes);
    cJSON_Delete(pre);
    if (rc) model_release(m);
    return rc;
}

dl_model *dl_model_load_memory(const void *data, size_t size, dl_error *err)
{
    dl_model *m = malloc(sizeof *m);
    if (!m) { dl_fail(err, DL_ERR_NOMEM, "out of memory"); return NULL; }
    if (dl_model_parse(m, data, size, err)) { free(m); return NULL; }
    return m;
}

dl_model *dl_model_load(const char *path, dl_error *err)
{
    uint8_t *data;
    size_t size;
    if (dl_read_file(path, (size_t)DL_MAX_MODEL_BYTES, &data, &size, err)) return NULL;
    dl_model *m = dl_model_load_memory(data, size, err);
    free(data);
    if (!m) dl_fail_prefix(err, "%s", path);
    return m;
}

void dl_model_free(dl_model *m)
{
    if (!m) return;
    model_release(m);
    free(m);
}

const char *dl_model_name(const dl_model *m) { return m->name; }
int dl_model_num_classes(const dl_model *m) { return m->num_classes; }
const char *dl_model_class_name(const dl_model *m, int i)
{
    return i >= 0 && i < m->num_classes ? m->class_names[i] : NULL;
}
const char *dl_model_class_long_name(const dl_model *m, int i)
{
    return i >= 0 && i < m->num_classes ? m->class_long_names[i] : NULL;
}
int dl_model_feature_dim(const dl_model *m)
{
    return m->graph.features >= 0 ? m->graph.nodes[m->graph.features].c : 0;
}
int dl_model_input_size(const dl_model *m, int *width, int *height)
{
    if (width) *width = m->pre.width;
    if (height) *height = m->pre.height;
    return 0;
}
float dl_model_temperature(const dl_model *m) { return m->temperature; }
const char *dl_model_sha256(const dl_model *m) { return m->sha256; }
const char *dl_model_info_json(const dl_model *m) { return m->info_json; }

/* ------------------------------------------------------------ save */

/* The F16 storage rule (weights/FORMAT.md has the measurements): the big
 * matrices, i.e. the weights of dense and ungrouped conv2d nodes and
 * ood.precision. Grouped (depthwise) kernels have few weights per output, so
 * their rounding does not average out: on the shipped model they caused 5x
 * the probability change of all other weights together, and F16 would save
 * only 0.7% of the file there. Biases (BatchNorm shifts, the operating point) and ood.mean are
 * vectors: F32 costs nothing there. */
static bool f16_kind(const dl_graph *g, int t)
{
    if (!strcmp(g->tensors[t].name, "ood.precision")) return true;
    for (int i = 0; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        if (n->weight == t && (n->op == DL_OP_DENSE || (n->op == DL_OP_CONV2D && n->groups == 1))) return true;
    }
    return false;
}

/* t's values as little-endian F16 bytes (malloc'd), or NULL with the first
 * value F16 cannot hold named. */
static uint8_t *to_half(const dl_tensor *t, const char *name, dl_error *err)
{
    uint8_t *h = malloc(t->count ? t->count * 2 : 2);
    if (!h) {
        dl_fail(err, DL_ERR_NOMEM, "tensor %s: out of memory for its F16 copy", name);
        return NULL;
    }
    for (size_t j = 0; j < t->count; j++) {
        uint16_t v;
        if (dl_float_to_half(t->data[j], &v)) {
            dl_fail(err, DL_ERR_ARG, "tensor %s: element %zu is %g, beyond the F16 range (+-65504); store it as F32",
                    name, j, t->data[j]);
            free(h);
            return NULL;
        }
        h[2 * j] = (uint8_t)v;
        h[2 * j + 1] = (uint8_t)(v >> 8);
    }
    return h;
}

dl_storage dl_model_storage(const dl_model *m) { return m ? m->storage : DL_STORAGE_F32; }

int dl_model_set_storage(dl_model *m, dl_storage storage, dl_error *err)
{
    if (!m) return dl_fail(err, DL_ERR_ARG, "NULL model");
    if (storage != DL_STORAGE_F32 && storage != DL_STORAGE_F16)
        return dl_fail(err, DL_ERR_ARG, "storage %d unknown (F32 or F16)", (int)storage);
    m->storage = storage;
    return 0;
}

static void add_meta_json(cJSON *meta, const char *key, cJSON *value)
{
    char *s = cJSON_PrintUnformatted(value);
    cJSON_AddStringToObject(meta, key, s ? s : "null");
    free(s);
    cJSON_Delete(value);
}

int dl_model_save(const dl_model *m, const char *path, dl_error *err)
{
    const dl_graph *g = &m->graph;
    cJSON *hdr = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(hdr, "__metadata__");
    cJSON_AddStringToObject(meta, "format", FORMAT_NAME);
    char buf[64];
    snprintf(buf, sizeof buf, "%d", FORMAT_VERSION);
    cJSON_AddStringToObject(meta, "format_version", buf);
    cJSON_AddStringToObject(meta, "name", m->name);
    snprintf(buf, sizeof buf, "%.9g", m->temperature);
    cJSON_AddStringToObject(meta, "temperature", buf);
    add_meta_json(meta, "graph", graph_to_json(g));
    add_meta_json(meta, "preprocess", preprocess_to_json(&m->pre));
    cJSON *classes = cJSON_CreateArray();
    for (int i = 0; i < m->num_classes; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", m->class_names[i]);
        cJSON_AddStringToObject(c, "long_name", m->class_long_names[i]);
        cJSON_AddItemToArray(classes, c);
    }
    add_meta_json(meta, "classes", classes);
    if (m->provenance_json) cJSON_AddStringToObject(meta, "provenance", m->provenance_json);
    if (m->ood_dim) {
        snprintf(buf, sizeof buf, "%.9g", m->ood_threshold);
        cJSON_AddStringToObject(meta, "ood_threshold", buf);
    }
    /* Ensemble members share member 0's graph structure and classes */
    int total_tensors = g->n_tensors;
    if (m->n_members) {
        if (m->n_members > MAX_MEMBERS - 1) {
            cJSON_Delete(hdr);
            return dl_fail(err, DL_ERR_ARG, "an ensemble holds at most %d members", MAX_MEMBERS);
        }
        const char *g0s = cJSON_GetObjectItem(meta, "graph")->valuestring;
        cJSON *arr = cJSON_CreateArray();
        for (int k = 0; k < m->n_members; k++) {
            const dl_model *x = m->members[k];
            cJSON *gj = graph_to_json(&x->graph);
            char *gs = cJSON_PrintUnformatted(gj);
            cJSON_Delete(gj);
            bool same = gs && !strcmp(gs, g0s) && x->num_classes == m->num_classes;
            free(gs);
            for (int c = 0; same && c < m->num_classes; c++) same = !strcmp(x->class_names[c], m->class_names[c]);
            if (!same) {
                cJSON_Delete(arr);
                cJSON_Delete(hdr);
                return dl_fail(err, DL_ERR_ARG, "ensemble member %d (%s): its graph or classes differ from member 0's",
                               k + 1, x->name);
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", x->name);
            cJSON_AddNumberToObject(o, "temperature", x->temperature);
            cJSON_AddItemToObject(o, "preprocess", preprocess_to_json(&x->pre));
            if (x->ood_dim) cJSON_AddNumberToObject(o, "ood_threshold", x->ood_threshold);
            cJSON *pj = x->provenance_json ? cJSON_Parse(x->provenance_json) : NULL;
            if (pj) cJSON_AddItemToObject(o, "provenance", pj);
            cJSON_AddItemToArray(arr, o);
            total_tensors += x->graph.n_tensors;
        }
        add_meta_json(meta, "members", arr);
    }
    /* Tensors in graph order, then each member's under member<k>/; ood
     * tensors travel in the graph's tensor list. F16 copies are made here
     * and freed after writing (halves[i] is NULL for an F32 tensor). */
    size_t cap = total_tensors ? (size_t)total_tensors : 1;
    const void **datas = malloc(sizeof(void *) * cap);
    size_t *bytes = malloc(sizeof(size_t) * cap);
    uint8_t **halves = calloc(cap, sizeof(uint8_t *));
    int rc = 0, nt = 0;
    if (!datas || !bytes || !halves) rc = dl_fail(err, DL_ERR_NOMEM, "out of memory");
    size_t off = 0;
    for (int k = 0; !rc && k <= m->n_members; k++) {
        const dl_graph *gk = k ? &m->members[k - 1]->graph : g;
        for (int i = 0; !rc && i < gk->n_tensors; i++) {
            const dl_tensor *t = &gk->tensors[i];
            char name[sizeof t->name + 24];
            if (k) snprintf(name, sizeof name, "member%d/%s", k, t->name);
            else snprintf(name, sizeof name, "%s", t->name);
            bool half = m->storage == DL_STORAGE_F16 && f16_kind(gk, i);
            datas[nt] = t->data;
            bytes[nt] = t->count * (half ? 2 : 4);
            if (half && !(datas[nt] = halves[nt] = to_half(t, name, err))) {
                rc = -1;
                break;
            }
            cJSON *tj = cJSON_CreateObject();
            cJSON_AddStringToObject(tj, "dtype", half ? "F16" : "F32");
            cJSON *shape = cJSON_AddArrayToObject(tj, "shape");
            for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->dims[d]));
            double o2[2] = {(double)off, (double)(off + bytes[nt])};
            cJSON_AddItemToObject(tj, "data_offsets", cJSON_CreateDoubleArray(o2, 2));
            cJSON_AddItemToObject(hdr, name, tj);
            off += bytes[nt++];
        }
    }
    if (rc) cJSON_Delete(hdr);
    else rc = dl_safetensors_write_bytes(path, hdr, nt, datas, bytes, err);
    for (int i = 0; halves && i < nt; i++) free(halves[i]);
    free(halves);
    free(datas);
    free(bytes);
    return rc;
}

int dl_safetensors_write(const char *path, cJSON *hdr, int n, const float *const *datas, const size_t *counts,
                         dl_error *err)
{
    size_t *bytes = malloc(sizeof(size_t) * (n > 0 ? (size_t)n : 1));
    if (!bytes) {
        cJSON_Delete(hdr);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) bytes[i] = counts[i] * 4;
    int rc = dl_safetensors_write_bytes(path, hdr, n, (const void *const *)datas, bytes, err);
    free(bytes);
    return rc;
}

int dl_safetensors_write_bytes(const char *path, cJSON *hdr, int n, const void *const *datas, const size_t *bytes,
                               dl_error *err)
{
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
    if (cJSON_IsObject(meta)) {
        /* a digest of the tensor data, verified by the loader */
        dl_sha256_ctx c;
        uint8_t d[32];
        char hex[65];
        dl_sha256_init(&c);
        for (int i = 0; i < n; i++) dl_sha256_update(&c, datas[i], bytes[i]);
        dl_sha256_final(&c, d);
        dl_sha256_to_hex(d, hex);
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "tensor_sha256");
        cJSON_AddStringToObject(meta, "tensor_sha256", hex);
    }
    char *hs = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    if (!hs) return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    size_t hl = strlen(hs), padded = (hl + 7) & ~(size_t)7;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    dl_atomic_file f;
    if (dl_atomic_open(&f, path, err)) { free(hs); return -1; }
    int rc = dl_atomic_write(&f, lenb, 8, err) || dl_atomic_write(&f, hs, hl, err) ||
             dl_atomic_write(&f, "        ", padded - hl, err);
    free(hs);
    /* little-endian on disk; x86/arm64 hosts are LE already */
    for (int i = 0; !rc && i < n; i++) rc = dl_atomic_write(&f, datas[i], bytes[i], err);
    if (rc) { dl_atomic_abort(&f); return -1; }
    return dl_atomic_commit(&f, err);
}

/* ------------------------------------------------------------ ensembles */

int dl_model_num_members(const dl_model *m) { return m ? 1 + m->n_members : 0; }

const char *dl_model_member_name(const dl_model *m, int k)
{
    if (!m || k < 0 || k > m->n_members) return NULL;
    return k ? m->members[k - 1]->name : m->name;
}

int dl_model_save_ensemble(dl_model *const *models, int n, const char *name, const char *provenance_json,
                           const char *path, dl_error *err)
{
    if (!models || n < 2 || n > MAX_MEMBERS)
        return dl_fail(err, DL_ERR_ARG, "an ensemble needs 2 to %d member models (got %d)", MAX_MEMBERS, n);
    for (int k = 0; k < n; k++)
        if (!models[k] || models[k]->n_members)
            return dl_fail(err, DL_ERR_ARG, "member %d is itself an ensemble: list its members instead", k + 1);
    if (provenance_json) {
        cJSON *pj = cJSON_Parse(provenance_json);
        if (!cJSON_IsObject(pj)) {
            cJSON_Delete(pj);
            return dl_fail(err, DL_ERR_ARG, "ensemble provenance is not a JSON object");
        }
        cJSON_Delete(pj);
    }
    /* a shallow view: member 0's fields with the others attached */
    dl_model view = *models[0];
    view.members = (dl_model **)models + 1;
    view.n_members = n - 1;
    if (name) snprintf(view.name, sizeof view.name, "%s", name);
    if (provenance_json) view.provenance_json = (char *)provenance_json;
    return dl_model_save(&view, path, err);
}

/* ------------------------------------------------------------ operating point */

int dl_model_shift_class(dl_model *m, int c, float log_odds, dl_error *err)
{
    if (!m || c < 0 || c >= m->num_classes) return dl_fail(err, DL_ERR_ARG, "class %d out of range", c);
    if (!isfinite(log_odds) || fabsf(log_odds) > 20.f)
        return dl_fail(err, DL_ERR_ARG, "log-odds shift %g out of range [-20, 20]", log_odds);
    /* every member first, so a failure leaves the model unchanged */
    for (int k = 0; k <= m->n_members; k++) {
        const dl_model *x = k ? m->members[k - 1] : m;
        const dl_node *o = &x->graph.nodes[x->graph.output];
        if (o->bias < 0 || x->graph.tensors[o->bias].count != (size_t)m->num_classes)
            return dl_fail(err, DL_ERR_UNSUPPORTED, "the output layer %s has no per-class bias to shift", o->name);
    }
    for (int k = 0; k <= m->n_members; k++) {
        dl_model *x = k ? m->members[k - 1] : m;
        const dl_node *o = &x->graph.nodes[x->graph.output];
        /* p_c * exp(s) after softmax(z / T) is z_c + s * T */
        x->graph.tensors[o->bias].data[c] += log_odds * x->temperature;
        if (x->exec_ready) { dl_exec_free(&x->exec); x->exec_ready = false; }
    }
    return 0;
}

int dl_model_save_as(const dl_model *m, const char *path, const char *provenance_json, dl_error *err)
{
    if (!m || !path) return dl_fail(err, DL_ERR_ARG, "NULL model or path");
    if (provenance_json) {
        cJSON *pj = cJSON_Parse(provenance_json);
        bool ok = cJSON_IsObject(pj);
        cJSON_Delete(pj);
        if (!ok) return dl_fail(err, DL_ERR_ARG, "provenance is not a JSON object");
    }
    dl_model view = *m;
    if (provenance_json) view.provenance_json = (char *)provenance_json;
    return dl_model_save(&view, path, err);
}

const char *dl_model_provenance_json(const dl_model *m) { return m ? m->provenance_json : NULL; }

int dl_model_save_verified(const dl_model *m, const char *path, dl_error *err)
{
    if (dl_model_save(m, path, err)) return -1;
    dl_model *check = dl_model_load(path, err);
    if (!check) return dl_fail_prefix(err, "re-reading the written model");
    dl_model_free(check);
    return 0;
}

void dl_model_clear(dl_model *m)
{
    model_release(m);
    memset(m, 0, sizeof *m);
}
