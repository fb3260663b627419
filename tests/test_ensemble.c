/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Ensembles in one model file: the members' calibrated probabilities are
 * averaged, saliency is the normalised mean of the members' maps of the
 * ensemble's class, the file round-trips, and damaged member lists are
 * refused. Also the training-view augmentation's exactness and determinism. */
#include "dermlens_test.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static char path_a[4096], path_b[4096], path_c[4096], path_e[4096];

static void rand_fill(float *x, int n, uint64_t *s)
{
    for (int i = 0; i < n; i++) x[i] = tu_rand(s, -1.f, 1.f);
}

static void test_average(void)
{
    uint64_t s = 7;
    float wa[12], ba[4], da[8], wb[12], bb[4], db[8];
    rand_fill(wa, 12, &s); rand_fill(ba, 4, &s); rand_fill(da, 8, &s);
    rand_fill(wb, 12, &s); rand_fill(bb, 4, &s); rand_fill(db, 8, &s);
    CHECK(tu_save_tiny_model(path_a, 8, 4, wa, ba, da, "relu", "same", "A") == 0, "save A");
    CHECK(tu_save_tiny_model(path_b, 8, 4, wb, bb, db, "relu", "same", "B") == 0, "save B");
    dl_error err = {0};
    dl_model *a = dl_model_load(path_a, &err), *b = dl_model_load(path_b, &err);
    CHECK(a && b, "load: %s", err.message);
    if (!a || !b) { dl_model_free(a); dl_model_free(b); return; }
    dl_model *pair[2] = {a, b};
    CHECK(dl_model_save_ensemble(pair, 2, "A+B", NULL, path_e, &err) == 0, "save ensemble: %s", err.message);
    dl_model *e = dl_model_load(path_e, &err);
    CHECK(e != NULL, "load ensemble: %s", err.message);
    if (!e) { dl_model_free(a); dl_model_free(b); return; }
    CHECK(dl_model_num_members(e) == 2, "members %d", dl_model_num_members(e));
    CHECK(dl_model_num_members(a) == 1, "a single model is an ensemble of 1");
    CHECK(!strcmp(dl_model_name(e), "A+B") && !strcmp(dl_model_member_name(e, 1), "B"), "names");
    CHECK(strstr(dl_model_info_json(e), "\"members\"") != NULL, "info lists the members");

    /* a 20x14 image: the members see it through their own preprocessing */
    uint8_t img[20 * 14 * 3];
    for (int i = 0; i < 20 * 14 * 3; i++) img[i] = (uint8_t)(tu_rand(&s, 0, 255));
    dl_result ra, rb, re;
    dl_classify_options co = {.top_k = 2};
    CHECK(dl_classify_rgb8(a, img, 20, 14, 60, &co, &ra, &err) == 0, "classify a: %s", err.message);
    CHECK(dl_classify_rgb8(b, img, 20, 14, 60, &co, &rb, &err) == 0, "classify b: %s", err.message);
    CHECK(dl_classify_rgb8(e, img, 20, 14, 60, &co, &re, &err) == 0, "classify e: %s", err.message);
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        double want = 0.5 * (ra.probs[k] + rb.probs[k]);
        worst = fmax(worst, fabs(re.probs[k] - want));
    }
    CHECK(worst < 1e-6, "ensemble probability differs from the members' mean by %g", worst);
    CHECK(re.top_index[0] == (re.probs[0] >= re.probs[1] ? 0 : 1), "top class follows the mean");

    /* saliency: normalised mean of the members' maps of the ensemble's class */
    dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = -1, .single_pass = 1};
    float *me = NULL, *ma = NULL, *mb = NULL;
    dl_result rx;
    CHECK(dl_explain_rgb8(e, img, 20, 14, 60, &eo, &me, &rx, &err) == 0, "explain e: %s", err.message);
    eo.class_index = re.top_index[0];
    CHECK(dl_explain_rgb8(a, img, 20, 14, 60, &eo, &ma, NULL, &err) == 0, "explain a: %s", err.message);
    CHECK(dl_explain_rgb8(b, img, 20, 14, 60, &eo, &mb, NULL, &err) == 0, "explain b: %s", err.message);
    if (me && ma && mb) {
        float lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < 20 * 14; i++) {
            ma[i] += mb[i];
            lo = fminf(lo, ma[i]);
            hi = fmaxf(hi, ma[i]);
        }
        double dmax = 0;
        for (int i = 0; i < 20 * 14; i++) {
            float want = hi > lo ? (ma[i] - lo) / (hi - lo) : 0.f;
            dmax = fmax(dmax, fabs(me[i] - want));
        }
        CHECK(dmax < 1e-5, "ensemble map differs from the normalised member mean by %g", dmax);
        CHECK(rx.num_classes == 2 && fabs(rx.probs[0] - re.probs[0]) < 1e-6, "explain's result is the ensemble's");
        dl_result_free(&rx);
    }
    free(me); free(ma); free(mb);

    /* an ensemble of a model with itself answers as the model */
    dl_model *same[2] = {a, a};
    CHECK(dl_model_save_ensemble(same, 2, NULL, NULL, path_c, &err) == 0, "save A+A: %s", err.message);
    dl_model *aa = dl_model_load(path_c, &err);
    dl_result raa;
    if (aa && dl_classify_rgb8(aa, img, 20, 14, 60, &co, &raa, &err) == 0) {
        CHECK(fabs(raa.probs[0] - ra.probs[0]) < 1e-6, "A+A != A: %g vs %g", raa.probs[0], ra.probs[0]);
        dl_result_free(&raa);
    } else {
        CHECK(0, "A+A: %s", err.message);
    }
    dl_model_free(aa);

    /* refused: nested ensembles, one member, other graphs */
    dl_model *nested[2] = {e, a};
    CHECK(dl_model_save_ensemble(nested, 2, NULL, NULL, path_c, &err) != 0 && strstr(err.message, "itself an ensemble"),
          "nested ensemble accepted (%s)", err.message);
    CHECK(dl_model_save_ensemble(pair, 1, NULL, NULL, path_c, &err) != 0, "one-member ensemble accepted");
    float w5[15] = {0}, d5[10] = {0};
    CHECK(tu_save_tiny_model(path_c, 8, 5, w5, NULL, d5, "relu", "same", "C") == 0, "save C");
    dl_model *c = dl_model_load(path_c, &err);
    dl_model *odd[2] = {a, c};
    CHECK(c && dl_model_save_ensemble(odd, 2, NULL, NULL, path_c, &err) != 0 && strstr(err.message, "differ"),
          "members with different graphs accepted (%s)", err.message);
    dl_model_free(c);
    dl_result_free(&ra); dl_result_free(&rb); dl_result_free(&re);
    dl_model_free(a); dl_model_free(b); dl_model_free(e);
}

static int progress_check(void *user, double f, const char *stage)
{
    double *st = user; /* last fraction, calls, went backwards */
    (void)stage;
    if (f < st[0]) st[2] = 1;
    st[0] = f;
    st[1] += 1;
    return 0;
}

static void *read_count(void *out)
{
    *(int *)out = dl_get_num_threads();
    return NULL;
}

/* Called on the explaining thread while the members run: another thread
 * must still see the engine's thread count (only the explaining threads run
 * their kernels serially). Records the smallest count seen. */
static int progress_other_thread(void *user, double f, const char *stage)
{
    (void)f;
    (void)stage;
    int seen = -1, *least = user;
    pthread_t t;
    if (pthread_create(&t, NULL, read_count, &seen) == 0) pthread_join(t, NULL);
    if (seen < *least) *least = seen;
    return 0;
}

static int progress_cancel(void *user, double f, const char *stage)
{
    (void)f;
    (void)stage;
    return ++*(int *)user > 3;
}

/* The default map (8 flips a member) of a 4-member ensemble: members run
 * side by side on the engine's threads give the very map of one thread;
 * the class given without a result (no second classification) gives it
 * too; progress only goes forward and ends at 1; a cancellation stops it;
 * the thread count is restored. */
static void test_parallel_members(void)
{
    dl_error err = {0};
    dl_model *a = dl_model_load(path_a, &err), *b = dl_model_load(path_b, &err);
    CHECK(a && b, "load: %s", err.message);
    dl_model *four[4] = {a, b, b, a};
    dl_model *e = NULL;
    if (a && b && dl_model_save_ensemble(four, 4, "ABBA", NULL, path_c, &err) == 0)
        e = dl_model_load(path_c, &err);
    CHECK(e != NULL, "4-member ensemble: %s", err.message);
    if (!e) {
        dl_model_free(a);
        dl_model_free(b);
        return;
    }
    uint64_t s = 11;
    uint8_t img[24 * 18 * 3];
    for (int i = 0; i < 24 * 18 * 3; i++) img[i] = (uint8_t)tu_rand(&s, 0, 255);
    const int n = 24 * 18, threads0 = dl_get_num_threads();
    double st[3] = {0, 0, 0};
    dl_explain_options eo = {.method = DL_SALIENCY_GRADCAM, .class_index = -1, .progress = progress_check,
                             .progress_user = st};
    float *m1 = NULL, *m3 = NULL, *mc = NULL;
    dl_result r1, r3;
    dl_set_num_threads(1);
    CHECK(dl_explain_rgb8(e, img, 24, 18, 72, &eo, &m1, &r1, &err) == 0, "1 thread: %s", err.message);
    CHECK(st[2] == 0 && st[0] == 1.0 && st[1] >= 8, "progress: last %g after %g calls, backwards %g", st[0], st[1],
          st[2]);
    st[0] = st[1] = st[2] = 0;
    dl_set_num_threads(3);
    CHECK(dl_explain_rgb8(e, img, 24, 18, 72, &eo, &m3, &r3, &err) == 0, "3 threads: %s", err.message);
    CHECK(dl_get_num_threads() == 3, "thread count not restored: %d", dl_get_num_threads());
    /* the caller explains member 0 at least, and reports as it goes */
    CHECK(st[2] == 0 && st[0] == 1.0 && st[1] >= 4, "progress: last %g after %g calls, backwards %g", st[0], st[1],
          st[2]);
    if (m1 && m3) {
        eo.class_index = r1.top_index[0];
        eo.progress = NULL;
        CHECK(dl_explain_rgb8(e, img, 24, 18, 72, &eo, &mc, NULL, &err) == 0, "class given: %s", err.message);
        double d13 = 0, dc = 0, mx = 0;
        for (int i = 0; mc && i < n; i++) {
            d13 = fmax(d13, fabs(m1[i] - m3[i]));
            dc = fmax(dc, fabs(m1[i] - mc[i]));
            mx = fmax(mx, m1[i]);
        }
        CHECK(d13 == 0 && dc == 0, "maps differ: 1 vs 3 threads %g, class given %g", d13, dc);
        CHECK(mx == 1.0, "map not normalised (max %g)", mx);
        CHECK(fabs(r1.probs[0] - r3.probs[0]) < 1e-7, "results differ");
        dl_result_free(&r1);
        dl_result_free(&r3);
    }
    /* the flips shared out among the members: on four copies of one model
     * (member k runs transforms k and k + 4) the map is that model's own
     * 8-flip map; 1 and 3 threads agree exactly */
    dl_model *aaaa[4] = {a, a, a, a}, *ea = NULL;
    if (dl_model_save_ensemble(aaaa, 4, "AAAA", NULL, path_c, &err) == 0) ea = dl_model_load(path_c, &err);
    CHECK(ea != NULL, "AAAA: %s", err.message);
    if (ea) {
        dl_explain_options so = {.method = DL_SALIENCY_GRADCAM, .class_index = -1};
        float *ms1 = NULL, *ms3 = NULL, *ma = NULL;
        const unsigned sp = DL_EXPLAIN_DIHEDRAL | DL_EXPLAIN_SPREAD;
        dl_set_num_threads(1);
        CHECK(dl_explain_rgb8_variant(ea, img, 24, 18, 72, &so, sp, &ms1, NULL, &err) == 0, "spread: %s", err.message);
        dl_set_num_threads(3);
        CHECK(dl_explain_rgb8_variant(ea, img, 24, 18, 72, &so, sp, &ms3, NULL, &err) == 0, "spread: %s", err.message);
        CHECK(dl_explain_rgb8(a, img, 24, 18, 72, &so, &ma, NULL, &err) == 0, "A: %s", err.message);
        double d = 0, d13 = 0;
        for (int i = 0; ms1 && ms3 && ma && i < n; i++) {
            d = fmax(d, fabs(ms1[i] - ma[i]));
            d13 = fmax(d13, fabs(ms1[i] - ms3[i]));
        }
        CHECK(ms1 && ms3 && ma && d < 1e-5 && d13 == 0, "spread map vs the model's own: %g; 1 vs 3 threads %g", d, d13);
        free(ms1);
        free(ms3);
        free(ma);
        dl_model_free(ea);
    }
    int least = 1 << 30;
    float *mo = NULL;
    eo.class_index = -1;
    eo.progress = progress_other_thread;
    eo.progress_user = &least;
    CHECK(dl_explain_rgb8(e, img, 24, 18, 72, &eo, &mo, NULL, &err) == 0, "3 threads: %s", err.message);
    CHECK(least == 3, "another thread saw %d threads while the members ran (want 3)", least);
    free(mo);
    int calls = 0;
    float *mx = NULL;
    eo.progress = progress_cancel;
    eo.progress_user = &calls;
    CHECK(dl_explain_rgb8(e, img, 24, 18, 72, &eo, &mx, NULL, &err) != 0 && err.code == DL_ERR_CANCELLED && !mx,
          "cancelled explain: code %d", err.code);
    free(mx);
    CHECK(dl_get_num_threads() == 3, "thread count not restored after a cancellation");
    dl_set_num_threads(threads0);
    free(m1);
    free(m3);
    free(mc);
    dl_model_free(e);
    dl_model_free(a);
    dl_model_free(b);
}

/* The ensemble file with one header edit must be refused with `want`. */
static void expect_refused(const char *from, const char *to, const char *want)
{
    uint8_t *data;
    size_t size;
    dl_error err = {0};
    CHECK(dl_read_file(path_e, (size_t)1 << 30, &data, &size, &err) == 0, "read: %s", err.message);
    if (!data) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | data[i];
    CHECK(strlen(from) == strlen(to), "same-length edits only");
    char *h = (char *)data + 8, *p = NULL;
    for (size_t i = 0; i + strlen(from) <= hl && !p; i++)
        if (!memcmp(h + i, from, strlen(from))) p = h + i;
    CHECK(p != NULL, "pattern %s not in the header", from);
    if (p) {
        memcpy(p, to, strlen(to));
        dl_model *m = dl_model_load_memory(data, size, &err);
        CHECK(!m && strstr(err.message, want), "edit %s -> %s: loaded=%d, message \"%s\", want \"%s\"", from, to,
              m != NULL, err.message, want);
        dl_model_free(m);
    }
    free(data);
}

static void test_hostile(void)
{
    expect_refused("\"member1/", "\"member7/", "no such ensemble member");
    expect_refused("\"members\"", "\"membxrs\"", "unknown key");
    expect_refused("\\\"temperature\\\":", "\\\"temperatur0\\\":", "unknown key"); /* strict member keys */
}

static void test_augment(void)
{
    /* identity settings: a source of the output size maps pixel to pixel,
     * up to the random flips */
    enum { W = 9, H = 7 };
    uint8_t src[W * H * 3], out[W * H * 3], out2[W * H * 3];
    uint64_t s = 3;
    for (int i = 0; i < W * H * 3; i++) src[i] = (uint8_t)tu_rand(&s, 0, 255);
    dl_view_params p = {.scale_min = 1, .scale_max = 1, .aspect = 1, .rotate_deg = 0, .colour = 0};
    for (uint64_t seed = 1; seed < 9; seed++) {
        dl_augment_view(src, W, H, W * 3, 0, out, W, H, &p, seed);
        bool match_any = false;
        for (int f = 0; f < 4 && !match_any; f++) {
            bool ok = true;
            for (int y = 0; y < H && ok; y++)
                for (int x = 0; x < W && ok; x++) {
                    int sx = f & 1 ? W - 1 - x : x, sy = f & 2 ? H - 1 - y : y;
                    ok = !memcmp(out + (y * W + x) * 3, src + (sy * W + sx) * 3, 3);
                }
            match_any = ok;
        }
        CHECK(match_any, "seed %llu: identity view is not a flip of the source", (unsigned long long)seed);
    }
    /* pad framing of a 9x3 source in a 9x9 view: black above and below the
     * image's 3 rows, which are (a flip of) the source */
    {
        enum { SH = 3 };
        uint8_t wide[W * SH * 3], view[W * W * 3];
        for (int i = 0; i < W * SH * 3; i++) wide[i] = (uint8_t)tu_rand(&s, 1, 255);
        for (uint64_t seed = 1; seed < 9; seed++) {
            dl_augment_view(wide, W, SH, W * 3, DL_FRAME_PAD, view, W, W, &p, seed);
            bool black = true, match_any = false;
            for (int y = 0; y < W; y++)
                for (int x = 0; x < W && (y < 3 || y >= 6); x++) black &= !view[(y * W + x) * 3] && !view[(y * W + x) * 3 + 2];
            for (int f = 0; f < 4 && !match_any; f++) {
                bool ok = true;
                for (int y = 0; y < SH && ok; y++)
                    for (int x = 0; x < W && ok; x++) {
                        int sx = f & 1 ? W - 1 - x : x, sy = f & 2 ? SH - 1 - y : y;
                        ok = !memcmp(view + ((y + 3) * W + x) * 3, wide + (sy * W + sx) * 3, 3);
                    }
                match_any = ok;
            }
            CHECK(black && match_any, "seed %llu: pad view: border black %d, image rows a flip of the source %d",
                  (unsigned long long)seed, black, match_any);
        }
    }
    /* determinism, and seeds matter */
    dl_view_params d;
    dl_view_params_defaults(&d);
    dl_augment_view(src, W, H, W * 3, 1, out, W, H, &d, 42);
    dl_augment_view(src, W, H, W * 3, 1, out2, W, H, &d, 42);
    CHECK(!memcmp(out, out2, sizeof out), "same seed, different view");
    dl_augment_view(src, W, H, W * 3, 1, out2, W, H, &d, 43);
    CHECK(memcmp(out, out2, sizeof out) != 0, "different seeds, same view");
    /* mixup's Beta(0.4, 0.4): mean 0.5, variance ab/((a+b)^2(a+b+1)) = 0.1389 */
    uint64_t st = 5;
    double sum = 0, sq = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double v = dl_rand_beta(&st, 0.4, 0.4);
        CHECK(v >= 0 && v <= 1, "beta sample %g", v);
        sum += v;
        sq += v * v;
    }
    double mean = sum / n, var = sq / n - mean * mean;
    CHECK(fabs(mean - 0.5) < 0.005 && fabs(var - 0.1389) < 0.004, "Beta(0.4,0.4) mean %g var %g", mean, var);
}

int main(void)
{
    const char *b = getenv("DL_BUILD_ROOT");
    b = b ? b : ".";
    snprintf(path_a, sizeof path_a, "%s/ens_a.safetensors", b);
    snprintf(path_b, sizeof path_b, "%s/ens_b.safetensors", b);
    snprintf(path_c, sizeof path_c, "%s/ens_c.safetensors", b);
    snprintf(path_e, sizeof path_e, "%s/ens_e.safetensors", b);
    test_average();
    test_parallel_members();
    test_hostile();
    test_augment();
    return tu_exit();
}
