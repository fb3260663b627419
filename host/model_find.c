/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The one model search of the plug-in and the CLI (order in
 * dermlens_host.h), and the small helpers the host files share. */
#include "dermlens_host.h"
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Set by meson (host/meson.build): <prefix>/share/dermlens and the source
 * tree's weights/. */
#ifndef DH_DATADIR
#define DH_DATADIR ""
#endif
#ifndef DH_SOURCE_WEIGHTS
#define DH_SOURCE_WEIGHTS ""
#endif

void dh_set_err(dl_error *err, dl_status code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

uint8_t dh_to_u8(float v)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

const char *dh_model_data_dir(void)
{
    return DH_DATADIR;
}

static int file_exists(const char *path)
{
    struct stat st;
    return path[0] && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int copy_path(const char *path, char *out, size_t out_size, dl_error *err)
{
    size_t n = strlen(path);
    if (n >= out_size) {
        dh_set_err(err, DL_ERR_LIMIT, "Model path is too long (%zu bytes)", n);
        return -1;
    }
    memcpy(out, path, n + 1);
    return 0;
}

int dh_model_find(const char *explicit_path, const char *own_dir, char *out, size_t out_size,
                  dl_error *err)
{
    static const char *const files[] = {DH_MODEL_LESION, DH_MODEL_IMAGENET};
    if (!out || !out_size) {
        dh_set_err(err, DL_ERR_ARG, "no buffer for the model path");
        return -1;
    }
    out[0] = '\0';
    if (explicit_path && explicit_path[0])
        return copy_path(explicit_path, out, out_size, err);
    const char *env = getenv("DERMLENS_MODEL");
    if (env && env[0])
        return copy_path(env, out, out_size, err);

    /* The user data folder: $XDG_DATA_HOME/dermlens, else
     * ~/.local/share/dermlens (the XDG default). */
    char user_dir[4096] = "";
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(user_dir, sizeof user_dir, "%s/dermlens", xdg);
    else if (home && home[0] == '/')
        snprintf(user_dir, sizeof user_dir, "%s/.local/share/dermlens", home);
    const char *dirs[4] = {own_dir, user_dir, DH_DATADIR, DH_SOURCE_WEIGHTS};
    char cand[4096];
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++)
        for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
            if (!dirs[d] || !dirs[d][0])
                continue;
            int n = snprintf(cand, sizeof cand, "%s/%s", dirs[d], files[f]);
            if (n > 0 && (size_t)n < sizeof cand && file_exists(cand))
                return copy_path(cand, out, out_size, err);
        }
    dh_set_err(err, DL_ERR_IO,
               "No DermLens model found: looked for %s and %s%s, in %s, in %s and in %s; "
               "choose a model file or set DERMLENS_MODEL",
               files[0], files[1], own_dir && own_dir[0] ? " next to the plug-in" : "",
               user_dir[0] ? user_dir : "the user data folder",
               DH_DATADIR[0] ? DH_DATADIR : "the data folder",
               DH_SOURCE_WEIGHTS[0] ? DH_SOURCE_WEIGHTS : "the source tree");
    return -1;
}

dl_model *dh_model_open(const char *explicit_path, const char *own_dir, char *used_path,
                        size_t used_size, dl_error *err)
{
    char path[4096];
    if (dh_model_find(explicit_path, own_dir, path, sizeof path, err) != 0)
        return NULL;
    if (used_path && used_size)
        snprintf(used_path, used_size, "%s", path);
    return dl_model_load(path, err);
}
