/* Replay driver: runs LLVMFuzzerTestOneInput over every file in the given
 * directories (or files), so the committed corpus is a plain meson test.
 * SPDX-License-Identifier: GPL-3.0-or-later */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return -1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) { fclose(f); return -1; }
    uint8_t *buf = malloc(n ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return -1; }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int count = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { fprintf(stderr, "missing %s\n", argv[i]); return 1; }
        if (!S_ISDIR(st.st_mode)) { failed += run_file(argv[i]) != 0; count++; continue; }
        DIR *d = opendir(argv[i]);
        if (!d) return 1;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            failed += run_file(path) != 0;
            count++;
        }
        closedir(d);
    }
    printf("replayed %d inputs, %d unreadable\n", count, failed);
    if (count == 0) { fprintf(stderr, "empty corpus\n"); return 1; }
    return failed ? 1 : 0;
}
