/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fuzz target: the plug-in's parameter checks (dh_params_set) and the model
 * lookup's path handling (dh_model_open: explicit path, DERMLENS_MODEL, the
 * plug-in folder), with exact-size message and used-path buffers so that any
 * overrun is caught by ASan.
 *
 * Input layout: byte 0 mode, bytes 1-8 opacity (raw double), 9-12 top_k,
 * 13 add_labels, 14 add_legend, 15 message buffer size, 16 used-path buffer
 * size, then NUL-separated strings: model path, method, plug-in folder.
 *
 * Paths are resolved inside a private sandbox folder (leading '/' dropped,
 * ".." neutralised) so a campaign never opens devices, FIFOs or files
 * outside it; the sandbox holds a tiny valid model under the lesion model's
 * file name, an empty file, a junk file and a folder "sub" with an empty
 * lesion model and a junk ImageNet model. Invariants that fail call __builtin_trap(). */
#include "dermlens_host.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR 17
#define LESION_NAME "dermlens_ham10000.safetensors"
#define IMAGENET_NAME "mobilenet_v2_imagenet.safetensors"

static char sandbox[256];

static void must(int cond)
{
    if (!cond) __builtin_trap();
}

/* input 4x4x3 -> conv 1x1 (2, no bias) -> gap -> dense 2 */
static int write_tiny_model(const char *path)
{
    const float w[6] = {1, 0, 0, 0, 1, 0}, d[4] = {1, 0, 0, 1};
    return tu_save_tiny_model(path, 4, 2, w, NULL, d, "none", "valid", "tiny");
}

static void put_file(const char *rel, const char *content)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", sandbox, rel);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

static void remove_sandbox(void)
{
    static const char *const files[] = {LESION_NAME, "empty", "junk.bin", "sub/" IMAGENET_NAME,
                                        "sub/" LESION_NAME};
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", sandbox, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/sub", sandbox);
    rmdir(p);
    rmdir(sandbox);
}

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(sandbox, sizeof sandbox, "%s/dl-fuzz-params-XXXXXX", t && t[0] ? t : "/tmp");
    if (!mkdtemp(sandbox)) abort();
    char p[512];
    snprintf(p, sizeof p, "%s/sub", sandbox);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/%s", sandbox, LESION_NAME);
    if (write_tiny_model(p)) abort();
    put_file("empty", "");
    put_file("junk.bin", "\x10\0\0\0\0\0\0\0{\"__metadata__\":1}");
    put_file("sub/" IMAGENET_NAME, "not a model");
    put_file("sub/" LESION_NAME, "");
    unsetenv("DERMLENS_MODEL");
    atexit(remove_sandbox);
}

/* sandbox + "/" + s with the leading '/' dropped and ".." made harmless. */
static char *sandboxed(const char *s)
{
    size_t n = strlen(s), len = strlen(sandbox);
    char *out = malloc(len + n + 2);
    if (!out) return NULL;
    memcpy(out, sandbox, len);
    out[len] = '/';
    while (*s == '/') s++;
    char *o = out + len + 1;
    for (; *s; s++) {
        if (s[0] == '.' && s[1] == '.') { *o++ = '_'; *o++ = '_'; s++; continue; }
        *o++ = *s;
    }
    *o = 0;
    return out;
}

static int exists(const char *dir, const char *name)
{
    char p[8192];
    int n = snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return n > 0 && n < 4096 && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Open the model as the glue does and check what comes back. */
static void try_open(const char *explicit_path, const char *plugin_dir, size_t used_size)
{
    char *used = malloc(used_size ? used_size : 1);
    if (!used) return;
    used[0] = 'x';
    dl_error err;
    memset(&err, 0, sizeof err);
    dl_model *m = dh_model_open(explicit_path, plugin_dir, used_size ? used : NULL, used_size, &err);
    if (m) {
        must(dl_model_num_classes(m) == 2);
        if (used_size) must(memchr(used, 0, used_size) != NULL);
        dl_model_free(m);
    } else {
        must(err.code != DL_OK);
        must(memchr(err.message, 0, sizeof err.message) != NULL && err.message[0] != 0);
    }
    free(used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sandbox[0]) setup();
    uint8_t h[HDR] = {0};
    memcpy(h, data, size < HDR ? size : HDR);
    size_t rest = size > HDR ? size - HDR : 0;
    /* strings: NUL-terminated copy of the tail, split at NULs */
    char *tail = malloc(rest + 3);
    if (!tail) return 0;
    memcpy(tail, data + (size > HDR ? HDR : size), rest);
    tail[rest] = tail[rest + 1] = tail[rest + 2] = 0;
    const char *model_path = tail;
    const char *method = model_path + strlen(model_path) + 1;
    if (method > tail + rest) method = tail + rest + 1;
    const char *plugin_dir = method + strlen(method) + 1;
    if (plugin_dir > tail + rest + 1) plugin_dir = tail + rest + 2;

    double opacity;
    int32_t top_k;
    memcpy(&opacity, h + 1, sizeof opacity);
    memcpy(&top_k, h + 9, sizeof top_k);
    size_t msg_size = h[15], used_size = h[16];

    dh_params p;
    memset(&p, 0xA5, sizeof p);
    dh_params before = p;
    char *msg = malloc(msg_size ? msg_size : 1);
    if (!msg) { free(tail); return 0; }
    msg[0] = 'x';
    int rc = dh_params_set(&p, model_path, method, opacity, top_k, h[13], h[14], msg, msg_size);
    if (rc == 0) {
        must(p.opacity >= 0.0 && p.opacity <= 100.0);
        must(p.top_k >= 1 && p.top_k <= DH_MAX_TOP_K && p.top_k == top_k);
        must(p.add_labels == (h[13] != 0) && p.add_legend == (h[14] != 0));
        must(strcmp(p.model_path, model_path) == 0);
        must(method[0] ? (int)p.method == dl_saliency_method_from_name(method) : p.method == DL_SALIENCY_GRADCAM);
    } else {
        must(rc == -1);
        must(memcmp(&p, &before, sizeof p) == 0); /* output untouched on failure */
        if (msg_size) must(memchr(msg, 0, msg_size) != NULL);
        if (msg_size > 1) must(msg[0] != 0);
    }
    free(msg);

    switch (h[0] % 4) {
    case 0: /* the validated explicit path */
        if (rc == 0 && p.model_path[0]) {
            char *sp = sandboxed(p.model_path);
            if (sp) try_open(sp, NULL, used_size);
            free(sp);
        }
        break;
    case 1: { /* DERMLENS_MODEL */
        char *sp = sandboxed(model_path);
        if (sp) {
            setenv("DERMLENS_MODEL", sp, 1);
            try_open("", NULL, used_size);
            unsetenv("DERMLENS_MODEL");
        }
        free(sp);
        break;
    }
    case 2: { /* plug-in folder; only when the lesion model's name is there, since
               * the fallback folders are compiled in and would load the real one */
        char *sd = sandboxed(plugin_dir);
        if (sd && exists(sd, LESION_NAME)) try_open(NULL, sd, used_size);
        free(sd);
        break;
    }
    default: /* nothing to open */
        break;
    }
    free(tail);
    return 0;
}
