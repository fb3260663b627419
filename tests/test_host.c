/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The host core (host/dermlens_host.h) without a model file: smooth maps
 * (no kinks left from bilinear upsampling, peaks kept, [0,1]), the colour
 * map (lightness rising, opacity ramp), the outline of the top 20 %, the
 * blending, the teaching figure's layout, and the one model search's order.
 * With DL_TEST_HOST_DUMP=DIR it also writes the maps as PNGs to look at. */
#include "dermlens_host.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

/* A 7 x 7 map brought to w x h bilinearly (pixel-centre aligned), as the
 * engine does. */
static void bilinear(const float *c, int cw, int ch, float *out, int w, int h)
{
    for (int y = 0; y < h; y++) {
        double fy = (y + 0.5) * ch / h - 0.5;
        fy = fy < 0 ? 0 : fy > ch - 1 ? ch - 1 : fy;
        int y0 = (int)fy, y1 = y0 + 1 < ch ? y0 + 1 : y0;
        double wy = fy - y0;
        for (int x = 0; x < w; x++) {
            double fx = (x + 0.5) * cw / w - 0.5;
            fx = fx < 0 ? 0 : fx > cw - 1 ? cw - 1 : fx;
            int x0 = (int)fx, x1 = x0 + 1 < cw ? x0 + 1 : x0;
            double wx = fx - x0;
            double a = c[y0 * cw + x0] * (1 - wx) + c[y0 * cw + x1] * wx;
            double b = c[y1 * cw + x0] * (1 - wx) + c[y1 * cw + x1] * wx;
            out[(size_t)y * w + x] = (float)(a * (1 - wy) + b * wy);
        }
    }
}

/* How kinked the map is: the largest |second difference| along rows and
 * columns over their mean. A piecewise-linear map has all its curvature in
 * the kinks (a large ratio); a smooth one spreads it. */
static double kinkiness(const float *m, int w, int h)
{
    double mx = 0, sum = 0;
    long n = 0;
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            const float *p = m + (size_t)y * w + x;
            double dx = fabs(p[-1] - 2 * p[0] + p[1]), dy = fabs(p[-w] - 2 * p[0] + p[w]);
            mx = fmax(mx, fmax(dx, dy));
            sum += dx + dy;
            n += 2;
        }
    return sum > 0 ? mx / (sum / n) : 0;
}

static void dump(const char *name, const float *map, int w, int h)
{
    const char *dir = getenv("DL_TEST_HOST_DUMP");
    if (!dir)
        return;
    uint8_t *rgb = malloc((size_t)w * h * 3), *grey = malloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h; i++)
        grey[3 * i] = grey[3 * i + 1] = grey[3 * i + 2] = 128;
    dh_overlay o;
    dh_overlay_init(&o, map, w, h, DH_OVERLAY_BOTH, 0.8);
    dh_blend_rows(grey, (size_t)w * 3, map, w, h, 0, h, &o, rgb, (size_t)w * 3);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.png", dir, name);
    dl_png_write(path, rgb, w, h, (size_t)w * 3, 3, 8, NULL);
    free(rgb);
    free(grey);
}

static void test_smooth(void)
{
    enum { W = 224, H = 224 };
    unsigned seed = 12345;
    float coarse[49];
    for (int i = 0; i < 49; i++) {
        seed = seed * 1103515245u + 12345u;
        coarse[i] = 0.5f * (float)((seed >> 8) & 0xffff) / 65535.0f;
    }
    coarse[2 * 7 + 4] = 1.0f; /* a clear peak at cell (4, 2) */
    coarse[0] = 0.0f;
    float *a = malloc(sizeof(float) * W * H), *b = malloc(sizeof(float) * W * H);
    bilinear(coarse, 7, 7, a, W, H);
    memcpy(b, a, sizeof(float) * W * H);
    double cx, cy;
    dh_saliency_cell(NULL, W, H, &cx, &cy);
    CHECK(fabs(cx - 32) < 1e-9 && fabs(cy - 32) < 1e-9, "cell %g x %g at 224 px", cx, cy);
    CHECK(dh_map_smooth(b, W, H, cx, cy, NULL) == 0, "smooth failed");
    double ka = kinkiness(a, W, H), kb = kinkiness(b, W, H);
    CHECK(ka > 8.0 * kb, "bilinear kinkiness %.1f, smooth %.1f: ridges left", ka, kb);
    float lo = 1, hi = 0;
    int best = 0;
    for (int i = 0; i < W * H; i++) {
        lo = fminf(lo, b[i]);
        hi = fmaxf(hi, b[i]);
        if (b[i] > b[best])
            best = i;
    }
    CHECK(lo >= 0.0f && lo < 1e-6f && hi <= 1.0f && hi > 1.0f - 1e-6f, "range %g..%g", lo, hi);
    /* The peak stays within a cell of where it was (centre of cell (4, 2)). */
    int bx = best % W, by = best / W;
    CHECK(abs(bx - (4 * 32 + 16)) <= 32 && abs(by - (2 * 32 + 16)) <= 32, "peak moved to %d,%d",
          bx, by);
    printf("smooth: kinkiness bilinear %.1f -> smooth %.1f, peak at %d,%d\n", ka, kb, bx, by);
    dump("bilinear", a, W, H);
    dump("smooth", b, W, H);

    /* Other sizes: non-square, tiny, a flat map stays zero. */
    int sizes[][2] = {{765, 572}, {8, 8}, {1, 9}, {300, 17}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        float *m = malloc(sizeof(float) * w * h);
        bilinear(coarse, 7, 7, m, w, h);
        dh_saliency_cell(NULL, w, h, &cx, &cy);
        CHECK(dh_map_smooth(m, w, h, cx, cy, NULL) == 0, "%dx%d", w, h);
        int ok = 1;
        for (int i = 0; i < w * h; i++)
            ok &= m[i] >= 0.0f && m[i] <= 1.0f;
        CHECK(ok, "%dx%d out of [0,1]", w, h);
        free(m);
    }
    memset(b, 0, sizeof(float) * W * H);
    CHECK(dh_map_smooth(b, W, H, 32, 32, NULL) == 0 && b[W * H / 2] == 0.0f, "flat map");
    CHECK(dh_upsample_parse("smooth") == DH_UPSAMPLE_SMOOTH &&
              dh_upsample_parse("bilinear") == DH_UPSAMPLE_BILINEAR && dh_upsample_parse("x") < 0,
          "upsample names");
    free(a);
    free(b);
}

/* sRGB -> relative luminance, for the lightness check. */
static double luminance(const uint8_t *c)
{
    double v[3];
    for (int k = 0; k < 3; k++) {
        double s = c[k] / 255.0;
        v[k] = s <= 0.04045 ? s / 12.92 : pow((s + 0.055) / 1.055, 2.4);
    }
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}

static void test_colormap(void)
{
    uint8_t c[4], prev[4];
    dh_colormap(0.0f, prev);
    CHECK(prev[3] == 0, "alpha at 0: %d", prev[3]);
    int monotone = 1;
    for (int i = 1; i <= 50; i++) {
        dh_colormap(i / 50.0f, c);
        monotone &= luminance(c) >= luminance(prev) - 1e-3 && c[3] >= prev[3];
        memcpy(prev, c, 4);
    }
    CHECK(monotone, "lightness or alpha not rising");
    CHECK(c[3] == 255 && c[0] > 200 && c[1] > 200, "top colour %d %d %d %d", c[0], c[1], c[2], c[3]);
    dh_colormap(DH_ALPHA_LOW, c);
    CHECK(c[3] == 0, "transparent up to %g", DH_ALPHA_LOW);
    dh_colormap(NAN, c);
    CHECK(c[3] == 0, "NaN");
    /* the overlay's rows are these pixels (grey-alpha: the value as grey) */
    float row[260];
    for (int i = 0; i < 256; i++) row[i] = i / 255.0f + (i % 3 - 1) * 1e-4f;
    row[256] = NAN;
    row[257] = -0.5f;
    row[258] = 7.0f;
    row[259] = 0.5f;
    uint8_t px4[260 * 4], px2[260 * 2];
    dh_overlay_rows(row, 260, 0, 1, 4, px4);
    dh_overlay_rows(row, 260, 0, 1, 2, px2);
    int same = 1;
    for (int i = 0; i < 260; i++) {
        dh_colormap(row[i], c);
        float v = row[i] > 0.0f ? (row[i] < 1.0f ? row[i] : 1.0f) : 0.0f;
        same &= !memcmp(px4 + 4 * i, c, 4) && px2[2 * i + 1] == c[3] &&
                px2[2 * i] == (uint8_t)lroundf(v * 255.0f);
    }
    CHECK(same, "dh_overlay_rows differs from dh_colormap");
}

/* dh_analyse is its two steps: the classification (the note says no
 * saliency yet, no map), then the saliency of its top class. With the
 * shipped lesion model (skipped when the weights are absent). */
static void test_analyse_steps(void)
{
    const char *wdir = getenv("DL_WEIGHTS");
    char path[4096];
    snprintf(path, sizeof path, "%s/dermlens_ham10000.safetensors", wdir ? wdir : "weights");
    if (access(path, R_OK) != 0) {
        printf("test_host: no %s, analysis steps not checked\n", path);
        return;
    }
    dl_error err = {0};
    dl_model *m = dl_model_load(path, &err);
    CHECK(m != NULL, "load: %s", err.message);
    if (!m)
        return;
    enum { W = 160, H = 120 };
    uint8_t *rgb = malloc(W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double d = hypot(x - 70.0, y - 64.0) / 40.0; /* a dark blob on skin */
            uint8_t *p = rgb + (y * W + x) * 3;
            p[0] = (uint8_t)(d < 1 ? 90 + 100 * d : 200);
            p[1] = (uint8_t)(d < 1 ? 60 + 80 * d : 150);
            p[2] = (uint8_t)(d < 1 ? 50 + 70 * d : 130);
        }
    dh_analysis whole, steps;
    CHECK(dh_analyse(m, rgb, W, H, W * 3, DL_SALIENCY_GRADCAM, 1, NULL, &whole, &err) == 0, "analyse: %s",
          err.message);
    CHECK(dh_analyse_classify(m, rgb, W, H, W * 3, NULL, &steps, &err) == 0, "classify: %s", err.message);
    CHECK(!steps.map && strstr(steps.saliency_note, "not requested"), "after classify: map %p, note %s",
          (void *)steps.map, steps.saliency_note);
    CHECK(dh_analyse_saliency(m, rgb, W, H, W * 3, DL_SALIENCY_GRADCAM, NULL, &steps, &err) == 0, "saliency: %s",
          err.message);
    if (whole.map && steps.map) {
        int same = steps.map_width == W && steps.map_height == H && !steps.saliency_note[0];
        for (int i = 0; same && i < W * H; i++) same = whole.map[i] == steps.map[i];
        for (int c = 0; same && c < whole.result.num_classes; c++)
            same = whole.result.probs[c] == steps.result.probs[c];
        CHECK(same, "the two steps differ from dh_analyse");
    } else {
        CHECK(0, "no map: %s / %s", whole.saliency_note, steps.saliency_note);
    }
    dh_analysis_free(&whole);
    dh_analysis_free(&steps);
    free(rgb);
    dl_model_free(m);
}

static void test_outline(void)
{
    enum { W = 200, H = 150 };
    float *m = malloc(sizeof(float) * W * H);
    /* A smooth bump: its top 20 % is a disc around (100, 75). */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            m[y * W + x] = expf(-((x - 100) * (x - 100) + (y - 75) * (y - 75)) / (2.0f * 40 * 40));
    float level = dh_map_level(m, (size_t)W * H, DH_OUTLINE_TOP);
    int above = 0;
    for (int i = 0; i < W * H; i++)
        above += m[i] >= level;
    CHECK(fabs(above / (double)(W * H) - 0.2) < 0.01, "top fraction %.3f", above / (double)(W * H));
    uint8_t *rows = malloc((size_t)W * H * 4);
    dh_outline_rows(m, W, H, level, dh_outline_width(W, H), 0, H, 4, rows);
    /* Radius of the contour: r with area 0.2 * W * H = pi r^2. */
    double r = sqrt(0.2 * W * H / M_PI);
    int on = rows[(75 * W + (int)(100 + r + 0.5)) * 4 + 3];
    int centre = rows[(75 * W + 100) * 4 + 3], corner = rows[3];
    CHECK(on > 200 && centre == 0 && corner == 0, "outline alpha on %d centre %d corner %d", on,
          centre, corner);
    float none[16] = {0};
    CHECK(isinf(dh_map_level(none, 16, DH_OUTLINE_TOP)), "no evidence, no contour");
    dump("outline-bump", m, W, H);
    free(rows);
    free(m);
}

static void test_figure(void)
{
    dh_figure_layout f;
    dh_figure_plan(224, 224, &f);
    CHECK(f.panel_w == 224 && f.panel_h == 224 && f.width == 2 * 224 + 3 * f.gap && f.font_px >= 14,
          "224: panel %dx%d width %d font %g", f.panel_w, f.panel_h, f.width, f.font_px);
    dh_figure_plan(6000, 4000, &f);
    CHECK(f.panel_w == DH_FIGURE_MAX_PANEL && f.panel_h == 1067, "6000x4000: panel %dx%d",
          f.panel_w, f.panel_h);
    CHECK(dh_figure_height(&f, 100) == f.panel_h + 3 * f.gap + 100, "height");
    /* Panels: the left one is the picture, the right one differs where the map is high. */
    enum { W = 64, H = 48 };
    uint8_t rgb[W * H * 3];
    float map[W * H];
    for (int i = 0; i < W * H; i++) {
        rgb[3 * i] = 200, rgb[3 * i + 1] = 150, rgb[3 * i + 2] = 120;
        map[i] = (i % W) / (float)(W - 1);
    }
    dh_figure_plan(W, H, &f);
    dh_overlay o;
    dh_overlay_init(&o, map, W, H, DH_OVERLAY_FILL, 0.6);
    uint8_t *l = NULL, *r = NULL;
    CHECK(dh_figure_panels(rgb, W, H, W * 3, map, &o, &f, &l, &r, NULL) == 0, "panels");
    if (l && r) {
        CHECK(memcmp(l, rgb, sizeof rgb) == 0, "left panel is not the picture");
        CHECK(memcmp(r, rgb, 3) == 0 && memcmp(r + 3 * (W - 1), rgb, 3) != 0,
              "right panel: unchanged where the map is 0, coloured where it is 1");
    }
    free(l);
    free(r);
}

static int touch(const char *dir, const char *name)
{
    char p[4096];
    mkdir(dir, 0700);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fclose(f);
    return 0;
}

static void test_model_search(void)
{
    char tmp[] = "/tmp/dl-host-test-XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char own[4200], xdg[4200], xdgd[4300], out[4096];
    snprintf(own, sizeof own, "%s/own", tmp);
    snprintf(xdg, sizeof xdg, "%s/xdg", tmp);
    snprintf(xdgd, sizeof xdgd, "%s/dermlens", xdg);
    mkdir(xdg, 0700);
    setenv("XDG_DATA_HOME", xdg, 1);
    unsetenv("DERMLENS_MODEL");
    touch(xdgd, DH_MODEL_IMAGENET);
    touch(own, DH_MODEL_LESION);
    dl_error err = {0};
    /* explicit > env > own folder > user folder */
    CHECK(dh_model_find("/x/explicit.safetensors", own, out, sizeof out, &err) == 0 &&
              strcmp(out, "/x/explicit.safetensors") == 0, "explicit: %s", out);
    setenv("DERMLENS_MODEL", "/x/env.safetensors", 1);
    CHECK(dh_model_find("", own, out, sizeof out, &err) == 0 && strcmp(out, "/x/env.safetensors") == 0,
          "env: %s", out);
    unsetenv("DERMLENS_MODEL");
    CHECK(dh_model_find(NULL, own, out, sizeof out, &err) == 0 && strstr(out, "/own/") &&
              strstr(out, DH_MODEL_LESION), "own folder: %s", out);
    /* Without the plug-in's folder, the lesion model wins wherever it is:
     * the user folder has only the ImageNet model, so the lesion model of
     * the installed or source folder (when there is one) comes first. */
    int rc = dh_model_find(NULL, NULL, out, sizeof out, &err);
    CHECK(rc == 0, "search: %s", err.message);
    if (rc == 0 && !strstr(out, DH_MODEL_LESION))
        CHECK(strstr(out, xdgd) != NULL, "user folder: %s", out);
    touch(xdgd, DH_MODEL_LESION);
    CHECK(dh_model_find(NULL, NULL, out, sizeof out, &err) == 0 && strstr(out, xdgd) &&
              strstr(out, DH_MODEL_LESION), "user folder before installed and source: %s", out);
    char small[8];
    CHECK(dh_model_find("/a/long/path.safetensors", NULL, small, sizeof small, &err) == -1 &&
              err.code == DL_ERR_LIMIT, "short buffer");
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    unsetenv("XDG_DATA_HOME");
}

int main(void)
{
    test_smooth();
    test_colormap();
    test_outline();
    test_figure();
    test_model_search();
    test_analyse_steps();
    CHECK(dh_method_count() == 6, "%d methods", dh_method_count());
    CHECK(strstr(dh_method_list(), "gradcam++") && strstr(dh_method_list(), " or occlusion"), "%s",
          dh_method_list());
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("test_host: all checks passed\n");
    return failures ? 1 : 0;
}
