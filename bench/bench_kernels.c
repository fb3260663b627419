/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Kernel micro-benchmark (not installed, not a test): every convolution of a
 * model timed on its own, DermLens' kernel against OpenBLAS sgemm (plus the
 * bias/activation pass it needs) for the groups == 1 layers. Process CPU
 * time, so the numbers mean something on a shared machine.
 *
 *   bench_kernels MODEL [THREADS] [REPS]
 */
#include "dermlens.h"
#include "dermlens_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_kernels MODEL [THREADS] [REPS]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 1, reps = argc > 3 ? atoi(argv[3]) : 20;
    if (threads < 1 || reps < 1) return 2;
    dl_set_num_threads(threads);
    dl_error err = {0};
    dl_model *m = dl_model_load(argv[1], &err);
    if (!m) {
        fprintf(stderr, "bench_kernels: %s\n", err.message);
        return 1;
    }
    double tot_dl = 0, tot_blas = 0;
    double *t = malloc(sizeof(double) * reps), *tb = malloc(sizeof(double) * reps);
    printf("%-4s %-9s %6s %5s %5s %3s | %9s %7s | %9s %7s\n", "node", "kind", "M", "K", "N", "s", "DL ms",
           "GFLOP/s", "BLAS ms", "GFLOP/s");
    for (int k = 0; k < dl_conv_bench_count(m); k++) {
        dl_conv_bench_info ci;
        dl_conv_bench *b = dl_conv_bench_new(m, k, &ci, &err);
        if (!b) {
            fprintf(stderr, "bench_kernels: %s\n", err.message);
            return 1;
        }
        for (int r = 0; r < reps + 2; r++) {
            double c0 = cpu_ms();
            dl_conv_bench_run(b);
            double c1 = cpu_ms();
            dl_conv_bench_run_blas(b);
            double c2 = cpu_ms();
            if (r >= 2) {
                t[r - 2] = c1 - c0;
                tb[r - 2] = c2 - c1;
            }
        }
        qsort(t, reps, sizeof *t, cmp_d);
        qsort(tb, reps, sizeof *tb, cmp_d);
        double md = t[reps / 2], mb = tb[reps / 2];
        tot_dl += md;
        if (ci.has_blas) tot_blas += mb;
        else tot_blas += md;
        printf("%-4d %-9s %6d %5d %5d %3d | %9.4f %7.1f | ", ci.node, ci.kind, ci.m, ci.k, ci.n, ci.stride, md,
               ci.flops / md / 1e6);
        if (ci.has_blas) printf("%9.4f %7.1f\n", mb, ci.flops / mb / 1e6);
        else printf("%9s %7s\n", "-", "-");
        dl_conv_bench_free(b);
    }
    printf("total conv: DermLens %.3f ms, with OpenBLAS for 1x1 %.3f ms (process CPU time, %d thread%s)\n", tot_dl,
           tot_blas, threads, threads > 1 ? "s" : "");
    free(t);
    free(tb);
    dl_model_free(m);
    return 0;
}
