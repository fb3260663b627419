/* SPDX-License-Identifier: GPL-3.0-or-later */
/* File helpers: bounded reads and atomic writes (temp file + fsync + rename),
 * so an interrupted write never leaves a half file under the final name. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dl_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size, dl_error *err)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dl_fail(err, DL_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dl_fail(err, DL_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return dl_fail(err, DL_ERR_LIMIT, "%s: file is %lld bytes, limit is %zu", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return dl_fail(err, DL_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    if (n && fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        return dl_fail(err, DL_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    *data = buf;
    *size = n;
    return 0;
}

int dl_atomic_open(dl_atomic_file *f, const char *path, dl_error *err)
{
    memset(f, 0, sizeof *f);
    size_t len = strlen(path);
    f->final_path = strdup(path);
    f->tmp_path = malloc(len + 32);
    if (!f->final_path || !f->tmp_path) {
        free(f->final_path);
        free(f->tmp_path);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    snprintf(f->tmp_path, len + 32, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        int e = errno;
        free(f->final_path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return dl_fail(err, DL_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    return 0;
}

int dl_atomic_write(dl_atomic_file *f, const void *data, size_t size, dl_error *err)
{
    if (size && fwrite(data, 1, size, (FILE *)f->fp) != size)
        return dl_fail(err, DL_ERR_IO, "%s: write failed: %s", f->final_path, strerror(errno));
    return 0;
}

static void atomic_release(dl_atomic_file *f)
{
    free(f->final_path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

int dl_atomic_commit(dl_atomic_file *f, dl_error *err)
{
    FILE *fp = f->fp;
    int ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(f->tmp_path, f->final_path) != 0) {
        int e = errno;
        unlink(f->tmp_path);
        dl_fail(err, DL_ERR_IO, "%s: cannot write: %s", f->final_path, strerror(e));
        atomic_release(f);
        return -1;
    }
    /* make the rename itself durable */
    char *dir = strdup(f->final_path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash) *(slash == dir ? slash + 1 : slash) = 0;
        int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        free(dir);
    }
    atomic_release(f);
    return 0;
}

void dl_atomic_abort(dl_atomic_file *f)
{
    if (f->fp) fclose((FILE *)f->fp);
    if (f->tmp_path) unlink(f->tmp_path);
    atomic_release(f);
}

int dl_write_file_atomic(const char *path, const void *data, size_t size, dl_error *err)
{
    dl_atomic_file f;
    if (dl_atomic_open(&f, path, err) != 0) return -1;
    if (dl_atomic_write(&f, data, size, err) != 0) {
        dl_atomic_abort(&f);
        return -1;
    }
    return dl_atomic_commit(&f, err);
}
