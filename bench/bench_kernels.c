/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Kernel micro-benchmark (not installed, not a test): every convolution of a
 * model timed on its own, DermLens' kernel against OpenBLAS sgemm (plus the
 * bias/activation pass it needs) for the groups == 1 layers. Process CPU
 * time, so the numbers mean something on a shared machine.
 *
 *   bench_kernels MODEL [THREADS] [REPS]
 */
#include "formats/formats.h"
#include "runtime/kernel.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static float *falloc(size_t n)
{
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, sizeof(float) * (n ? n : 1))) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.f - 0.5f;
    return p;
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
    const dl_graph *g = &m->graph;
    double tot_dl = 0, tot_blas = 0;
    double *t = malloc(sizeof(double) * reps), *tb = malloc(sizeof(double) * reps);
    printf("%-4s %-9s %6s %5s %5s %3s | %9s %7s | %9s %7s\n", "node", "kind", "M", "K", "N", "s", "DL ms",
           "GFLOP/s", "BLAS ms", "GFLOP/s");
    for (int i = 1; i < g->n_nodes; i++) {
        const dl_node *n = &g->nodes[i];
        if (n->op != DL_OP_CONV2D) continue;
        const dl_node *a = &g->nodes[n->inputs[0]];
        dl_conv_shape s = {.n = 1, .ih = a->h, .iw = a->w, .ic = a->c, .oh = n->h, .ow = n->w, .oc = n->c,
                           .kh = n->kh, .kw = n->kw, .sh = n->sh, .sw = n->sw, .pt = n->pad_t,
                           .pl = n->pad_l, .groups = n->groups, .act = n->act};
        const bool dw = s.groups > 1;
        const bool pw = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.groups == 1;
        size_t in_n = (size_t)s.ih * s.iw * s.ic, out_n = (size_t)s.oh * s.ow * s.oc;
        int M = s.oh * s.ow, K = s.kh * s.kw * s.ic / s.groups, N = s.oc;
        float *in = falloc(in_n), *out = falloc(out_n), *out2 = falloc(out_n);
        float *scratch = falloc(dl_conv2d_scratch_floats(&s));
        size_t pf = dl_conv2d_packed_floats(&s);
        float *packed = falloc(pf);
        const float *w = g->tensors[n->weight].data;
        const float *bias = n->bias >= 0 ? g->tensors[n->bias].data : NULL;
        dl_conv2d_pack(&s, w, packed);
        double fl = 2.0 * M * N * (double)K;
        for (int r = 0; r < reps + 2; r++) {
            double c0 = cpu_ms();
            dl_conv2d_forward_ex(&s, in, w, pf ? packed : NULL, bias, out, scratch, NULL, DL_ACT_NONE, NULL);
            double c1 = cpu_ms();
            if (pw) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, in, K, w, K, 0.f, out2, N);
                for (int p = 0; p < M; p++)
                    for (int c = 0; c < N; c++) out2[(size_t)p * N + c] += bias ? bias[c] : 0.f;
                dl_act_forward(s.act, out2, out_n);
            }
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
        if (pw) tot_blas += mb;
        else tot_blas += md;
        printf("%-4d %-9s %6d %5d %5d %3d | %9.4f %7.1f | ", i, dw ? "depthwise" : pw ? "1x1" : "im2col", M, K, N,
               s.sh, md, fl / md / 1e6);
        if (pw) printf("%9.4f %7.1f\n", mb, fl / mb / 1e6);
        else printf("%9s %7s\n", "-", "-");
        free(in); free(out); free(out2); free(scratch); free(packed);
    }
    printf("total conv: DermLens %.3f ms, with OpenBLAS for 1x1 %.3f ms (process CPU time, %d thread%s)\n", tot_dl,
           tot_blas, threads, threads > 1 ? "s" : "");
    free(t);
    free(tb);
    dl_model_free(m);
    return 0;
}
