/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Thread safety: two models (the ImageNet model and the lesion model, loaded
 * separately) used from two threads at the same time give bit-identical
 * classifications and Grad-CAM maps to sequential use; so do two handles of
 * the same model file. Real images from tests/data. Run with the engine at
 * one thread and at two (OpenBLAS then has its own worker threads under two
 * concurrent callers). */
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define DL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DL_ASAN 1
#endif
#endif

#define N_IMG 4
#ifdef DL_ASAN
#define ROUNDS 1 /* instrumented kernels are slow; still every pair runs concurrently */
#define REF_ROUNDS 1
#else
#define ROUNDS 3
#define REF_ROUNDS 2 /* the second round checks repeatability on one thread */
#endif

typedef struct {
    float *probs, *logits, *features, *map;
    int nc, nf;
    size_t map_n;
} outcome;

typedef struct {
    dl_model *m;
    const dl_image *img;  /* N_IMG */
    const outcome *ref;   /* N_IMG reference results, or NULL to record */
    outcome got[N_IMG];
    int rounds;
    int mismatches, failures;
    char first_problem[256];
} job;

static float *dup_floats(const float *p, size_t n)
{
    float *q = malloc((n ? n : 1) * sizeof *q);
    if (q && n) memcpy(q, p, n * sizeof *q);
    return q;
}

static void outcome_free(outcome *o)
{
    free(o->probs);
    free(o->logits);
    free(o->features);
    free(o->map);
    memset(o, 0, sizeof *o);
}

static int same(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static void note(job *j, const char *what, int img, int round)
{
    if (!j->first_problem[0])
        snprintf(j->first_problem, sizeof j->first_problem, "%.200s on image %d, round %d", what, img, round);
}

/* Classify (all classes) and explain (Grad-CAM, top class) every image,
 * `rounds` times; compare with the reference or record the first round. */
static void *run_job(void *arg)
{
    job *j = arg;
    for (int r = 0; r < j->rounds; r++) {
        for (int i = 0; i < N_IMG; i++) {
            const dl_image *im = &j->img[i];
            dl_classify_options co = {.top_k = 0};
            dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = -1};
            dl_result res, eres;
            float *map = NULL;
            dl_error err = {0};
            if (dl_classify_rgb8(j->m, im->pixels, im->width, im->height, im->stride, &co, &res, &err)) {
                j->failures++;
                note(j, err.message, i, r);
                continue;
            }
            if (dl_explain_rgb8(j->m, im->pixels, im->width, im->height, im->stride, &eo, &map, &eres, &err)) {
                j->failures++;
                note(j, err.message, i, r);
                dl_result_free(&res);
                continue;
            }
            size_t mn = (size_t)im->width * im->height;
            outcome o = {.probs = res.probs, .logits = res.logits, .features = res.features, .map = map,
                         .nc = res.num_classes, .nf = res.feature_dim, .map_n = mn};
            const outcome *want = j->ref ? &j->ref[i] : (r > 0 ? &j->got[i] : NULL);
            if (want) {
                int ok = o.nc == want->nc && o.nf == want->nf && o.map_n == want->map_n &&
                         same(o.probs, want->probs, o.nc) && same(o.logits, want->logits, o.nc) &&
                         same(o.features, want->features, o.nf) && same(o.map, want->map, mn) &&
                         same(eres.probs, want->probs, o.nc);
                if (!ok) {
                    j->mismatches++;
                    note(j, "result differs from sequential use", i, r);
                }
            } else {
                j->got[i].probs = dup_floats(res.probs, res.num_classes);
                j->got[i].logits = dup_floats(res.logits, res.num_classes);
                j->got[i].features = dup_floats(res.features, res.feature_dim);
                j->got[i].map = dup_floats(map, mn);
                j->got[i].nc = res.num_classes;
                j->got[i].nf = res.feature_dim;
                j->got[i].map_n = mn;
            }
            dl_result_free(&res);
            dl_result_free(&eres);
            free(map);
        }
    }
    return NULL;
}

static void job_free(job *j)
{
    for (int i = 0; i < N_IMG; i++) outcome_free(&j->got[i]);
}

/* Reference results of one model, used sequentially. */
static void reference(dl_model *m, const dl_image *img, job *ref)
{
    memset(ref, 0, sizeof *ref);
    ref->m = m;
    ref->img = img;
    ref->rounds = REF_ROUNDS;
    run_job(ref);
    CHECK(ref->failures == 0 && ref->mismatches == 0, "sequential: %s", ref->first_problem);
}

/* Both jobs at once on two threads, each against its own reference. */
static void concurrent(const char *label, dl_model *a, const job *ref_a, dl_model *b, const job *ref_b,
                       const dl_image *img)
{
    job ja = {.m = a, .img = img, .ref = ref_a->got, .rounds = ROUNDS};
    job jb = {.m = b, .img = img, .ref = ref_b->got, .rounds = ROUNDS};
    pthread_t ta, tb;
    int ca = pthread_create(&ta, NULL, run_job, &ja);
    int cb = pthread_create(&tb, NULL, run_job, &jb);
    CHECK(ca == 0 && cb == 0, "pthread_create");
    if (ca == 0) pthread_join(ta, NULL);
    if (cb == 0) pthread_join(tb, NULL);
    CHECK(ja.failures == 0 && ja.mismatches == 0, "%s, thread A: %d failures, %d mismatches; first: %s", label,
          ja.failures, ja.mismatches, ja.first_problem);
    CHECK(jb.failures == 0 && jb.mismatches == 0, "%s, thread B: %d failures, %d mismatches; first: %s", label,
          jb.failures, jb.mismatches, jb.first_problem);
    printf("%s: 2 threads x %d classifications + %d Grad-CAM maps, %d mismatches\n", label, ROUNDS * N_IMG,
           ROUNDS * N_IMG, ja.mismatches + jb.mismatches);
}

int main(void)
{
    const char *imagenet_path = tu_source("weights/mobilenet_v2_imagenet.safetensors");
    dl_error err = {0};
    dl_model *imagenet = dl_model_load(imagenet_path, &err);
    if (!imagenet) { fprintf(stderr, "skip: %s\n", err.message); return TU_SKIP; }
    dl_model *lesion = dl_model_load(tu_source("weights/dermlens_ham10000.safetensors"), &err);
    dl_model *lesion2 = dl_model_load(tu_source("weights/dermlens_ham10000.safetensors"), &err);
    if (!lesion || !lesion2) {
        fprintf(stderr, "skip: %s\n", err.message);
        dl_model_free(imagenet);
        dl_model_free(lesion);
        return TU_SKIP;
    }
    /* 224x224 photos and a 23x19 image (upsampling differs) */
    const char *names[N_IMG] = {"tests/data/lesions/ISIC_0025921.jpg", "tests/data/imagenet/dog_224.png",
                                "tests/data/images/pil_src.png", "tests/data/sample/mel/ISIC_0032915.jpg"};
    dl_image img[N_IMG];
    memset(img, 0, sizeof img);
    int loaded = 0;
    for (int i = 0; i < N_IMG; i++) {
        if (dl_image_load(tu_source(names[i]), &img[i], &err) == 0) loaded++;
        else CHECK(0, "%s: %s", names[i], err.message);
    }
    if (loaded == N_IMG) {
        int thread_counts[2] = {1, 2};
        for (int t = 0; t < 2; t++) {
            dl_set_num_threads(thread_counts[t]);
            job ra, rb, rb2;
            reference(imagenet, img, &ra);
            reference(lesion, img, &rb);
            reference(lesion2, img, &rb2);
            /* two handles of one file agree when used one after the other */
            int agree = 1;
            for (int i = 0; i < N_IMG; i++)
                agree &= same(rb.got[i].probs, rb2.got[i].probs, rb.got[i].nc) &&
                         same(rb.got[i].map, rb2.got[i].map, rb.got[i].map_n);
            CHECK(agree, "two handles of the same model differ sequentially");
            char label[96];
            snprintf(label, sizeof label, "engine threads %d, ImageNet + lesion models", thread_counts[t]);
            concurrent(label, imagenet, &ra, lesion, &rb, img);
            snprintf(label, sizeof label, "engine threads %d, two handles of the lesion model", thread_counts[t]);
            concurrent(label, lesion, &rb, lesion2, &rb2, img);
            job_free(&ra);
            job_free(&rb);
            job_free(&rb2);
        }
    }
    for (int i = 0; i < N_IMG; i++) dl_image_free(&img[i]);
    dl_model_free(imagenet);
    dl_model_free(lesion);
    dl_model_free(lesion2);
    return tu_exit();
}
