/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Golden test: the committed imported MobileNetV2 reproduces the reference
 * logits (two independent float32 implementations) on the dog image. */
#include "testutil.h"
#include "dermlens_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *read_f32(const char *path, size_t n)
{
    uint8_t *d;
    size_t sz;
    dl_error err = {0};
    if (dl_read_file(path, 1 << 20, &d, &sz, &err) || sz != n * 4) {
        fprintf(stderr, "cannot read %s (%s)\n", path, err.message);
        return NULL;
    }
    return (float *)d; /* x86/arm64: little-endian host */
}

static void check_logits(const char *what, const dl_result *r, const float *ref)
{
    double maxdiff = 0;
    for (int c = 0; c < 1001; c++) maxdiff = fmax(maxdiff, fabs(r->logits[c] - ref[c]));
    printf("%s: max |logit - reference| = %.3g\n", what, maxdiff);
    CHECK(maxdiff < 1e-3, "%s: logits differ by %g", what, maxdiff);
    /* reference top-5 order */
    const int want[5] = {236, 250, 249, 175, 251};
    for (int k = 0; k < 5; k++)
        CHECK(r->top_index[k] == want[k], "%s: top-%d is %d, want %d", what, k + 1, r->top_index[k], want[k]);
    double sum = 0;
    for (int c = 0; c < 1001; c++) sum += r->probs[c];
    CHECK(fabs(sum - 1.0) < 1e-4, "%s: probabilities sum to %f", what, sum);
    CHECK(fabs(r->probs[236] - 0.2626) < 1e-3, "%s: p(German shepherd) = %f", what, r->probs[236]);
}

int main(void)
{
    dl_error err = {0};
    dl_model *m = dl_model_load(tu_source("weights/mobilenet_v2_imagenet.safetensors"), &err);
    CHECK(m != NULL, "load: %s", err.message);
    if (!m) return tu_exit();
    CHECK(dl_model_num_classes(m) == 1001, "classes %d", dl_model_num_classes(m));
    CHECK(dl_model_feature_dim(m) == 1280, "feature dim %d", dl_model_feature_dim(m));
    float *ref = read_f32(tu_source("tests/data/imagenet/ref_dog_224.logits.f32"), 1001);
    float *pooled = read_f32(tu_source("tests/data/imagenet/ref_dog_224.pooled1280.f32"), 1280);
    uint8_t *raw;
    size_t rsz;
    CHECK(dl_read_file(tu_source("tests/data/imagenet/dog_224_rgb_hwc.u8"), 1 << 20, &raw, &rsz, &err) == 0, "%s", err.message);
    if (!ref || !pooled || !raw) return tu_exit();

    dl_classify_options opts = {.top_k = 5};
    dl_result r;
    CHECK(dl_classify_rgb8(m, raw, 224, 224, 224 * 3, &opts, &r, &err) == 0, "classify: %s", err.message);
    check_logits("raw u8 input", &r, ref);
    double fd = 0;
    for (int i = 0; i < 1280; i++) fd = fmax(fd, fabs(r.features[i] - pooled[i]));
    printf("max |pooled feature - reference| = %.3g\n", fd);
    CHECK(fd < 1e-3, "pooled features differ by %g", fd);
    dl_result_free(&r);

    /* the same pixels through the PNG decoder, twice (workspace reuse) */
    dl_image img;
    CHECK(dl_image_load(tu_source("tests/data/imagenet/dog_224.png"), &img, &err) == 0, "png: %s", err.message);
    CHECK(img.width == 224 && img.height == 224, "png size %dx%d", img.width, img.height);
    for (int pass = 0; pass < 2; pass++) {
        CHECK(dl_classify_rgb8(m, img.pixels, img.width, img.height, img.stride, &opts, &r, &err) == 0, "%s", err.message);
        check_logits("png input", &r, ref);
        dl_result_free(&r);
    }
    /* bad arguments give errors, not crashes */
    CHECK(dl_classify_rgb8(m, raw, 0, 224, 672, &opts, &r, &err) == -1 && err.message[0], "0-width accepted");
    CHECK(dl_classify_rgb8(m, raw, 224, 224, 10, &opts, &r, &err) == -1, "short stride accepted");
    dl_image_free(&img);
    free(ref);
    free(pooled);
    free(raw);
    dl_model_free(m);
    return tu_exit();
}
