/* DermLens engine, formats layer: the model container (struct dl_model and
 * its safetensors file), the TFLite and ONNX readers, ONNX export and the
 * PNG/JPEG codecs (public half in dermlens.h). Depends on base/ and runtime/.
 * SPDX-License-Identifier: GPL-3.0-or-later
 * Internal (not installed): only engine/src/ includes it, see docs/ARCHITECTURE.md.
 */
#ifndef DL_FORMATS_H
#define DL_FORMATS_H

#include "base/base.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- model */

typedef struct {
    int width, height;    /* network input */
    char resize[16];      /* "squash" (whole image to WxH), "center_crop" or "pad" (letterbox: see infer.h) */
    float mean[3], std[3];/* x = (p - mean) / std, p in 0..255 */
} dl_preprocess;

struct dl_model {
    dl_graph graph;
    dl_preprocess pre;
    char name[128];
    int num_classes;
    char **class_names;
    char **class_long_names;
    float temperature;
    /* OOD: Mahalanobis on pooled features (optional) */
    int ood_dim;
    float *ood_mean;      /* ood_dim */
    float *ood_precision; /* ood_dim x ood_dim */
    float ood_threshold;
    char sha256[65];
    char tensor_sha256[65]; /* recorded digest of the tensor data, verified at load ("" if the file has none) */
    int n_f16;            /* tensors this member's file stored as F16 (0: all F32) */
    dl_storage storage;   /* what dl_model_save writes: as loaded unless set */
    char *info_json;      /* whole metadata as JSON, for `info` */
    char *provenance_json;
    dl_exec exec;         /* workspace for batch 1 */
    bool exec_ready;
    /* Ensemble: this model is member 0; members[] are the others (same
     * graph structure and classes; own weights, preprocessing, temperature
     * and OOD detector). Owned; freed with the model. */
    int n_members;
    struct dl_model **members;
};

/* Model file (safetensors container; weights/FORMAT.md). */
int dl_model_parse(dl_model *m, const uint8_t *data, size_t size, dl_error *err);
/* Serialize graph + metadata and write atomically. extra_metadata_json: a JSON
 * object whose members are merged into the metadata (may be NULL). */
int dl_model_save(const dl_model *m, const char *path, dl_error *err);
/* dl_model_save, then prove the written file loads (the importers' last step). */
int dl_model_save_verified(const dl_model *m, const char *path, dl_error *err);
/* Free everything a dl_model owns (class names, provenance, graph, OOD,
 * executor, members) and zero it; the struct itself is the caller's. */
void dl_model_clear(dl_model *m);

/* Write a safetensors file atomically: hdr (a cJSON object already holding
 * __metadata__ and each tensor's dtype/shape/data_offsets, in data order) is
 * consumed; datas[i] holds counts[i] floats. Shared by models and checkpoints.
 * The __metadata__ gets tensor_sha256, the digest of the data section. */
struct cJSON;
int dl_safetensors_write(const char *path, struct cJSON *hdr, int n, const float *const *datas,
                         const size_t *counts, dl_error *err);
/* The same with raw little-endian tensor bytes: datas[i] holds bytes[i]. */
int dl_safetensors_write_bytes(const char *path, struct cJSON *hdr, int n, const void *const *datas,
                               const size_t *bytes, dl_error *err);

/* ---------------------------------------------------------------- tflite */

/* Parse an untrusted TFLite flatbuffer into a DermLens graph (float32,
 * dequantized). Input preprocessing derived from the input tensor's
 * quantization is written to *pre (scale/zero point -> mean/std). */
int dl_tflite_to_graph(const uint8_t *data, size_t size, dl_graph *g, dl_preprocess *pre,
                       dl_error *err);

#endif
