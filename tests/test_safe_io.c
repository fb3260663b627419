/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Unit tests for the safe file and text helpers (issue 18): the atomic writer
 * never replaces a link, FIFO or folder and never follows a planted temp
 * name; temp files are removable from a signal handler; reads refuse FIFOs
 * without blocking; the output lock refuses a second writer; text is made
 * valid UTF-8 without control characters and CSV cells are neutralised
 * against formula injection. */
#include "testutil.h"
#include "dermlens_test.h"
#include "dermlens_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char g_dir[64];

static const char *in_dir(const char *name)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

static int read_all(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    return (int)n;
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
}

/* Files in g_dir whose name starts with prefix. */
static int count_prefix(const char *prefix)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_safe_io: a read blocked (FIFO) - timeout\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

static void test_targets(void)
{
    dl_error e = {0};
    char buf[256];
    /* a new file, then replacing a regular file */
    CHECK(dl_write_file_atomic(in_dir("out.txt"), "one", 3, &e) == 0, "%s", e.message);
    CHECK(dl_write_file_atomic(in_dir("out.txt"), "two!", 4, &e) == 0, "%s", e.message);
    CHECK(read_all(in_dir("out.txt"), buf, sizeof buf) == 4 && !strcmp(buf, "two!"), "content %s", buf);

    /* a symlink to a victim: refused, victim and link unchanged */
    write_text(in_dir("victim.txt"), "precious");
    CHECK(symlink(in_dir("victim.txt"), in_dir("link.txt")) == 0, "symlink");
    memset(&e, 0, sizeof e);
    CHECK(dl_write_file_atomic(in_dir("link.txt"), "evil", 4, &e) == -1, "symlink target accepted");
    CHECK(e.code == DL_ERR_IO && strstr(e.message, "symbolic link"), "message: %s", e.message);
    struct stat st;
    CHECK(lstat(in_dir("link.txt"), &st) == 0 && S_ISLNK(st.st_mode), "link replaced");
    CHECK(read_all(in_dir("victim.txt"), buf, sizeof buf) > 0 && !strcmp(buf, "precious"), "victim %s", buf);

    /* a FIFO: refused at once, still a FIFO */
    CHECK(mkfifo(in_dir("fifo"), 0600) == 0, "mkfifo");
    memset(&e, 0, sizeof e);
    CHECK(dl_write_file_atomic(in_dir("fifo"), "x", 1, &e) == -1 && strstr(e.message, "FIFO"), "%s", e.message);
    CHECK(lstat(in_dir("fifo"), &st) == 0 && S_ISFIFO(st.st_mode), "FIFO replaced");
    /* a folder */
    CHECK(mkdir(in_dir("sub"), 0700) == 0, "mkdir");
    memset(&e, 0, sizeof e);
    CHECK(dl_write_file_atomic(in_dir("sub"), "x", 1, &e) == -1 && strstr(e.message, "folder"), "%s", e.message);
    /* a character device like /dev/full (only root may create one) */
    if (mknod(in_dir("full"), S_IFCHR | 0666, makedev(1, 7)) == 0) {
        memset(&e, 0, sizeof e);
        CHECK(dl_write_file_atomic(in_dir("full"), "x", 1, &e) == -1 && strstr(e.message, "device"), "%s",
              e.message);
        CHECK(lstat(in_dir("full"), &st) == 0 && S_ISCHR(st.st_mode), "device node replaced");
        unlink(in_dir("full"));
    }
    /* PNG writes go through the same writer */
    uint8_t px[3 * 4] = {0};
    memset(&e, 0, sizeof e);
    CHECK(dl_png_write(in_dir("link.txt"), px, 2, 2, 6, 3, 8, &e) == -1 && strstr(e.message, "symbolic link"),
          "%s", e.message);
    CHECK(count_prefix("out.txt.tmp") == 0 && count_prefix("link.txt.tmp") == 0, "temp files left");

    /* The old writer used "PATH.tmp.PID": a link planted there redirected
     * the write. Now the temp name is random and created with O_EXCL. */
    char planted[600];
    snprintf(planted, sizeof planted, "%s.tmp.%ld", in_dir("model.bin"), (long)getpid());
    CHECK(symlink(in_dir("victim.txt"), planted) == 0, "plant");
    memset(&e, 0, sizeof e);
    CHECK(dl_write_file_atomic(in_dir("model.bin"), "model-bytes", 11, &e) == 0, "%s", e.message);
    CHECK(read_all(in_dir("victim.txt"), buf, sizeof buf) > 0 && !strcmp(buf, "precious"),
          "write followed the planted link: victim now %s", buf);
    CHECK(lstat(in_dir("model.bin"), &st) == 0 && S_ISREG(st.st_mode), "output is not a regular file");
    CHECK(read_all(in_dir("model.bin"), buf, sizeof buf) == 11, "output content");
    unlink(planted);
}

static void test_temp_cleanup(void)
{
    dl_error e = {0};
    dl_atomic_file f;
    CHECK(dl_atomic_open(&f, in_dir("big.out"), &e) == 0, "%s", e.message);
    CHECK(dl_atomic_write(&f, "abc", 3, &e) == 0, "%s", e.message);
    CHECK(count_prefix("big.out.tmp") == 1, "temp file not where expected");
    struct stat st;
    CHECK(lstat(f.tmp_path, &st) == 0 && S_ISREG(st.st_mode), "temp not a regular file");
    /* what the CLI's SIGINT/SIGTERM handler calls */
    dl_temp_files_remove();
    CHECK(count_prefix("big.out.tmp") == 0, "dl_temp_files_remove left the temp file");
    dl_atomic_abort(&f);
    CHECK(access(in_dir("big.out"), F_OK) != 0, "aborted write created the target");

    /* after a commit nothing is registered any more: removing is harmless */
    CHECK(dl_write_file_atomic(in_dir("kept.out"), "k", 1, &e) == 0, "%s", e.message);
    dl_temp_files_remove();
    CHECK(access(in_dir("kept.out"), F_OK) == 0, "committed file removed");
}

static void test_reads(void)
{
    signal(SIGALRM, on_alarm);
    alarm(20);
    dl_error e = {0};
    uint8_t *data = NULL;
    size_t n = 0;
    CHECK(dl_read_file(in_dir("fifo"), 1 << 20, &data, &n, &e) == -1, "FIFO read");
    CHECK(e.code == DL_ERR_IO && strstr(e.message, "FIFO") && strstr(e.message, "not a regular file"), "%s",
          e.message);
    dl_image img;
    memset(&e, 0, sizeof e);
    CHECK(dl_image_load(in_dir("fifo"), &img, &e) == -1 && strstr(e.message, "FIFO"), "%s", e.message);
    memset(&e, 0, sizeof e);
    CHECK(dl_model_load(in_dir("fifo"), &e) == NULL && strstr(e.message, "FIFO"), "%s", e.message);
    memset(&e, 0, sizeof e);
    CHECK(dl_read_file(in_dir("sub"), 1 << 20, &data, &n, &e) == -1 && strstr(e.message, "folder"), "%s",
          e.message);
    /* the path appears once in the message */
    memset(&e, 0, sizeof e);
    CHECK(dl_image_load(in_dir("missing.png"), &img, &e) == -1, "missing");
    const char *p = strstr(e.message, "missing.png");
    CHECK(p && !strstr(p + 1, "missing.png"), "path repeated: %s", e.message);
    alarm(0);
}

static void test_lock(void)
{
    dl_error e = {0};
    char csv[512];
    snprintf(csv, sizeof csv, "%s", in_dir("shared.csv"));
    int a = dl_output_lock(csv, &e);
    CHECK(a >= 0, "%s", e.message);
    memset(&e, 0, sizeof e);
    int b = dl_output_lock(csv, &e);
    CHECK(b == -1 && strstr(e.message, "another process"), "second writer not refused: %d %s", b, e.message);
    dl_output_unlock(csv, a);
    CHECK(access(in_dir("shared.csv.lock"), F_OK) != 0, "lock file left");
    memset(&e, 0, sizeof e);
    b = dl_output_lock(csv, &e);
    CHECK(b >= 0, "lock after release: %s", e.message);
    dl_output_unlock(csv, b);
    /* a symlink planted as the lock file is not followed */
    CHECK(symlink(in_dir("victim.txt"), in_dir("shared.csv.lock")) == 0, "plant lock");
    memset(&e, 0, sizeof e);
    CHECK(dl_output_lock(csv, &e) == -1, "lock through a symlink");
    unlink(in_dir("shared.csv.lock"));
    /* a file with content under the lock name is not ours: refused, kept */
    write_text(in_dir("shared.csv.lock"), "someone's notes");
    memset(&e, 0, sizeof e);
    CHECK(dl_output_lock(csv, &e) == -1 && strstr(e.message, "not an (empty) DermLens lock"), "%s", e.message);
    char buf[64];
    CHECK(read_all(in_dir("shared.csv.lock"), buf, sizeof buf) > 0 && !strcmp(buf, "someone's notes"), "kept");
    unlink(in_dir("shared.csv.lock"));
}

static void check_text(const char *in, const char *want, int csv)
{
    char *got = csv ? dl_csv_cell(in) : dl_text_sanitize(in);
    CHECK(got && !strcmp(got, want), "%s(\"%s\") = \"%s\", want \"%s\"", csv ? "csv" : "sanitize", in,
          got ? got : "(null)", want);
    free(got);
}

static void test_text(void)
{
    check_text("plain name.jpg", "plain name.jpg", 0);
    check_text("caf\xc3\xa9.jpg", "caf\xc3\xa9.jpg", 0);              /* valid UTF-8 kept */
    check_text("bad\xff\xfe.jpg", "bad\\xff\\xfe.jpg", 0);            /* invalid bytes */
    check_text("\xc0\xaf", "\\xc0\\xaf", 0);                          /* overlong '/' */
    check_text("\xed\xa0\x80", "\\xed\\xa0\\x80", 0);                 /* surrogate */
    check_text("\xe2\x82", "\\xe2\\x82", 0);                          /* truncated */
    check_text("\x1b[31mred\x07", "\\x1b[31mred\\x07", 0);            /* ESC, BEL */
    check_text("a\nb\tc\x7f", "a\\x0ab\\x09c\\x7f", 0);
    check_text("\xc2\x9b" "2J", "\\xc2\\x9b2J", 0);                   /* C1 CSI */
    check_text("evil\xe2\x80\xaegpj.exe", "evil\\xe2\\x80\\xaegpj.exe", 0); /* RLO */
    /* OWASP: = + - @ tab CR at the start -> quoted, leading single quote */
    check_text("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\"", 1);
    check_text("+1.jpg", "\"'+1.jpg\"", 1);
    check_text("-2+3.jpg", "\"'-2+3.jpg\"", 1);
    check_text("@SUM(A1).jpg", "\"'@SUM(A1).jpg\"", 1);
    check_text("\t=1", "\\x09=1", 1); /* the tab is escaped: the cell starts with a backslash */
    check_text("a,b", "\"a,b\"", 1);
    check_text("say \"hi\"", "\"say \"\"hi\"\"\"", 1);
    check_text("mel", "mel", 1);
    check_text("x=1", "x=1", 1);
    check_text("", "", 1);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dl_test_safe_io_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_targets();
    test_temp_cleanup();
    test_reads();
    test_lock();
    test_text();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", g_dir);
    return tu_exit();
}
