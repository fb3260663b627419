/* SPDX-License-Identifier: GPL-3.0-or-later */
/* File helpers: bounded reads of regular files only (opened non-blocking, so
 * a FIFO or device never hangs a read), and one safe writer for every output:
 * a target that exists and is not a regular file is refused; the data goes to
 * a new temp file in the target's folder (O_CREAT|O_EXCL|O_NOFOLLOW, random
 * name), is fsynced and renamed over the target, and the folder is fsynced,
 * so an interrupted write never leaves a half file under the final name and a
 * planted symlink never redirects it. Temp files in progress are kept in a
 * fixed table that a signal handler may clear (dl_temp_files_remove). */
#include "base/base.h"
#include "dermlens_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *file_kind(mode_t m)
{
    if (S_ISDIR(m)) return "a folder";
    if (S_ISLNK(m)) return "a symbolic link";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int dl_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size, dl_error *err)
{
    *data = NULL;
    *size = 0;
    if (!path || !*path) return dl_fail(err, DL_ERR_ARG, "empty file name");
    /* O_NONBLOCK: opening a FIFO without a writer returns at once instead of
     * waiting; fstat then refuses it before any read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return dl_fail(err, DL_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dl_fail(err, DL_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dl_fail(err, DL_ERR_IO, "%s: is %s, not a regular file", path, file_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return dl_fail(err, DL_ERR_LIMIT, "%s: file is %lld bytes, limit is %zu", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return dl_fail(err, DL_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return dl_fail(err, DL_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return dl_fail(err, DL_ERR_IO, "%s: short read (%zu of %zu bytes; changed while read?)", path, got, n);
    }
    *data = buf;
    *size = n;
    return 0;
}

/* ------------------------------------------------------ temp file table */

/* state: 0 free, 1 claimed (path being written), 2 live (handler may unlink). */
#define DL_TEMP_SLOTS 32
static struct {
    volatile sig_atomic_t state;
    char path[PATH_MAX];
} g_temps[DL_TEMP_SLOTS];

static void temp_register(const char *path)
{
    size_t len = strlen(path);
    if (len >= PATH_MAX) return;
    for (int i = 0; i < DL_TEMP_SLOTS; i++) {
        sig_atomic_t expect = 0;
        if (__atomic_compare_exchange_n(&g_temps[i].state, &expect, 1, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            memcpy(g_temps[i].path, path, len + 1);
            __atomic_store_n(&g_temps[i].state, 2, __ATOMIC_RELEASE);
            return;
        }
    }
    /* table full: the write still works, only signal cleanup misses it */
}

static void temp_unregister(const char *path)
{
    for (int i = 0; i < DL_TEMP_SLOTS; i++)
        if (__atomic_load_n(&g_temps[i].state, __ATOMIC_ACQUIRE) == 2 && !strcmp(g_temps[i].path, path)) {
            __atomic_store_n(&g_temps[i].state, 1, __ATOMIC_RELEASE);
            g_temps[i].path[0] = 0;
            __atomic_store_n(&g_temps[i].state, 0, __ATOMIC_RELEASE);
            return;
        }
}

void dl_temp_files_remove(void)
{
    for (int i = 0; i < DL_TEMP_SLOTS; i++)
        if (__atomic_load_n(&g_temps[i].state, __ATOMIC_ACQUIRE) == 2) unlink(g_temps[i].path);
}

/* ------------------------------------------------------------ writer */

int dl_output_check(const char *path, dl_error *err)
{
    if (!path || !*path) return dl_fail(err, DL_ERR_ARG, "empty output file name");
    struct stat st;
    if (lstat(path, &st) != 0) return 0; /* absent (or unreachable: creating it will say why) */
    if (S_ISREG(st.st_mode)) return 0;
    return dl_fail(err, DL_ERR_IO, "%s: exists and is %s; refusing to replace it (give a new or regular file)",
                   path, file_kind(st.st_mode));
}

static uint64_t rand64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) return v;
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    v = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)getpid() << 17 ^
        __atomic_add_fetch(&counter, 0x9e3779b97f4a7c15ull, __ATOMIC_RELAXED);
    v ^= v >> 31;
    v *= 0xbf58476d1ce4e5b9ull;
    return v ^ v >> 29;
}

/* Create "path.tmpXXXXXX" exclusively (never through a symlink). Returns fd,
 * tmp filled; -1 with errno. */
static int create_temp(const char *path, char *tmp, size_t cap)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t r = rand64();
        char suffix[7];
        for (int i = 0; i < 6; i++, r /= 62) suffix[i] = chars[r % 62];
        suffix[6] = 0;
        if ((size_t)snprintf(tmp, cap, "%s.tmp%s", path, suffix) >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        /* registered before it exists: a signal arriving right after the
         * open (the process may be preempted there) still finds it */
        temp_register(tmp);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0666);
        if (fd >= 0) return fd;
        int e = errno;
        temp_unregister(tmp);
        errno = e;
        if (e != EEXIST) return -1;
    }
    errno = EEXIST;
    return -1;
}

int dl_atomic_open(dl_atomic_file *f, const char *path, dl_error *err)
{
    memset(f, 0, sizeof *f);
    if (dl_output_check(path, err) != 0) return -1;
    size_t len = strlen(path);
    f->final_path = strdup(path);
    f->tmp_path = malloc(len + 16);
    if (!f->final_path || !f->tmp_path) {
        free(f->final_path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return dl_fail(err, DL_ERR_NOMEM, "out of memory");
    }
    int fd = create_temp(path, f->tmp_path, len + 16);
    if (fd < 0) {
        int e = errno;
        free(f->final_path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return dl_fail(err, DL_ERR_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(e));
    }
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        int e = errno;
        close(fd);
        unlink(f->tmp_path);
        temp_unregister(f->tmp_path);
        free(f->final_path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return dl_fail(err, DL_ERR_IO, "%s: %s", path, strerror(e));
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
    if (f->tmp_path) temp_unregister(f->tmp_path);
    free(f->final_path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

static void fsync_parent(const char *path)
{
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int dl_atomic_commit(dl_atomic_file *f, dl_error *err)
{
    FILE *fp = f->fp;
    errno = 0;
    int ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int e = errno;
    if (fclose(fp) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    f->fp = NULL;
    if (!ok) {
        unlink(f->tmp_path);
        dl_fail(err, DL_ERR_IO, "%s: cannot write: %s", f->final_path, strerror(e ? e : EIO));
        atomic_release(f);
        return -1;
    }
    /* the target may have been replaced by a link or device meanwhile */
    if (dl_output_check(f->final_path, err) != 0) {
        unlink(f->tmp_path);
        atomic_release(f);
        return -1;
    }
    if (rename(f->tmp_path, f->final_path) != 0) {
        e = errno;
        unlink(f->tmp_path);
        dl_fail(err, DL_ERR_IO, "%s: cannot write: %s", f->final_path, strerror(e));
        atomic_release(f);
        return -1;
    }
    fsync_parent(f->final_path); /* make the rename itself durable */
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

/* ------------------------------------------------------------ lock */

int dl_output_lock(const char *path, dl_error *err)
{
    if (!path || !*path) return dl_fail(err, DL_ERR_ARG, "empty output file name");
    char lock[PATH_MAX];
    if ((size_t)snprintf(lock, sizeof lock, "%s.lock", path) >= sizeof lock)
        return dl_fail(err, DL_ERR_ARG, "%s: path too long", path);
    for (int attempt = 0; attempt < 20; attempt++) {
        int fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0)
            return dl_fail(err, DL_ERR_IO, "%s: cannot create the lock file %s: %s", path, lock, strerror(errno));
        struct stat a, b;
        if (fstat(fd, &a) != 0 || !S_ISREG(a.st_mode) || a.st_size != 0) {
            close(fd);
            /* ours are empty: a file with content under that name is someone else's */
            return dl_fail(err, DL_ERR_IO, "%s: %s exists and is not an (empty) DermLens lock file; "
                           "move it away", path, lock);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return dl_fail(err, DL_ERR_IO, "%s is being written by another process (lock %s held); "
                               "refusing a second writer", path, lock);
            return dl_fail(err, DL_ERR_IO, "%s: cannot lock %s: %s", path, lock, strerror(e));
        }
        /* the previous holder removes the file when it is done: make sure we
         * hold the lock on the file that is under the name now */
        if (lstat(lock, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            temp_register(lock);
            return fd;
        }
        close(fd);
    }
    return dl_fail(err, DL_ERR_IO, "%s: cannot take the lock %s (it keeps changing)", path, lock);
}

void dl_output_unlock(const char *path, int handle)
{
    if (handle < 0) return;
    char lock[PATH_MAX];
    struct stat a, b;
    if (path && (size_t)snprintf(lock, sizeof lock, "%s.lock", path) < sizeof lock) {
        /* remove it while still holding it (a waiter re-checks the name), and
         * only if the name still is our (empty) file */
        if (fstat(handle, &a) == 0 && lstat(lock, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino &&
            b.st_size == 0)
            unlink(lock);
        temp_unregister(lock);
    }
    close(handle);
}

/* The one memory budget (model, decoding, preprocessing, saliency maps):
 * DERMLENS_MAX_MEMORY_MB if set, else DL_MAX_MODEL_MEMORY_MB. */
int dl_memory_limit(size_t *limit, dl_error *err)
{
    unsigned long long mb = DL_MAX_MODEL_MEMORY_MB;
    const char *s = getenv("DERMLENS_MAX_MEMORY_MB");
    if (s && s[0]) {
        char *end = NULL;
        errno = 0;
        mb = strtoull(s, &end, 10);
        if (errno || end == s || *end || mb == 0 || s[0] == '-')
            return dl_fail(err, DL_ERR_ARG, "DERMLENS_MAX_MEMORY_MB=\"%.32s\" is not a positive number of MiB", s);
    }
    *limit = mb > (SIZE_MAX >> 20) ? SIZE_MAX : (size_t)mb << 20;
    return 0;
}

int dl_memory_check(size_t bytes, const char *what, dl_error *err)
{
    size_t limit = 0;
    if (dl_memory_limit(&limit, err)) return -1;
    if (bytes <= limit) return 0;
    return dl_fail(err, DL_ERR_LIMIT, "%s needs %zu MiB, more than the %zu MiB limit (DERMLENS_MAX_MEMORY_MB)", what,
                   (bytes >> 20) + 1, limit >> 20);
}
