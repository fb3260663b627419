/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Dataset review: index.html. One self-contained file: the CSS and the
 * script are inline, images are referenced by relative path (images/,
 * thumbs/), and a Content-Security-Policy forbids every network request, so
 * the page works from a USB stick or an e-mail attachment folder. Every
 * string that comes from the user (file names, labels) or the model (class
 * names) is escaped. The rows are in the HTML itself, in suspicion order;
 * the script only hides and shows them (without it, every row shows). */
#include "review_int.h"
#include "dermlens_io.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* Text into HTML (element content or a quoted attribute): printable UTF-8
 * first (control characters as \xNN), then the five special characters. */
static void esc(dh_str *s, const char *text)
{
    char *t = dl_text_sanitize(text ? text : "");
    for (const char *c = t ? t : ""; *c; c++) {
        switch (*c) {
        case '&': dh_str_puts(s, "&amp;"); break;
        case '<': dh_str_puts(s, "&lt;"); break;
        case '>': dh_str_puts(s, "&gt;"); break;
        case '"': dh_str_puts(s, "&quot;"); break;
        case '\'': dh_str_puts(s, "&#39;"); break;
        default: dh_str_put(s, c, 1);
        }
    }
    free(t);
}

static const char page_css[] =
    ":root{--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--mute:#5b6475;--line:#dde1e8;--bad:#c62828;--ood:#e65100;"
    "--warn:#8d6e00;--good:#2e7d32}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;"
    "background:var(--bg);color:var(--ink)}\n"
    "header,section,footer{max-width:1400px;margin:0 auto;padding:12px 20px}\n"
    "h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:10px 0 6px}\n"
    ".disclaimer{display:inline-block;margin:4px 0;padding:4px 10px;border-radius:4px;background:#fff3e0;"
    "color:#7a3b00;border:1px solid #ffcc80;font-weight:600}\n"
    ".meta{color:var(--mute);margin:4px 0}.meta b{color:var(--ink);font-weight:600}\n"
    ".counts{margin:6px 0;font-size:15px}.note{color:var(--mute);margin:2px 0 8px;max-width:900px}\n"
    "table.cm{border-collapse:collapse;background:var(--card);font-variant-numeric:tabular-nums}\n"
    ".cm th,.cm td{border:1px solid var(--line);padding:4px 8px;text-align:center;min-width:44px}\n"
    ".cm th{background:#eef0f4;font-weight:600}.cm th.corner{font-weight:400;color:var(--mute);font-size:12px}\n"
    ".cm td.hit{cursor:pointer}.cm td.hit:hover,.cm td.hit:focus{outline:2px solid #1565c0}\n"
    ".cm td.zero{color:#b0b6c0}\n"
    "#filters{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;gap:8px 18px;align-items:center;"
    "background:var(--bg);padding:8px 0;border-bottom:1px solid var(--line)}\n"
    "#filters select,#filters button{font:inherit;padding:2px 6px}\n"
    "#shown{margin-left:auto;color:var(--mute)}\n"
    "#items{list-style:none;margin:12px 0;padding:0;display:grid;"
    "grid-template-columns:repeat(auto-fill,214px);gap:12px}\n"
    ".item{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px;"
    "display:flex;flex-direction:column;gap:4px}\n"
    ".item[hidden]{display:none!important}\n"
    ".item.disagree{border-color:#ef9a9a;box-shadow:inset 3px 0 0 var(--bad)}\n"
    ".item.failed{background:#fafafa}\n"
    ".thumb{display:flex;align-items:center;justify-content:center;height:200px;border-radius:4px;"
    "overflow:hidden}.thumb img{max-width:100%;max-height:200px;display:block}\n"
    ".path{font-size:12px;color:var(--mute);overflow-wrap:anywhere}\n"
    ".verdict{font-weight:600}.verdict .arrow{color:var(--mute);font-weight:400}\n"
    ".score{font-size:12px;color:var(--mute);font-variant-numeric:tabular-nums}\n"
    ".badges{display:flex;gap:4px;flex-wrap:wrap}\n"
    ".badge{font-size:11px;font-weight:700;padding:1px 6px;border-radius:3px;color:#fff}\n"
    ".b-disagree{background:var(--bad)}.b-ood{background:var(--ood)}.b-uncertain{background:var(--warn)}"
    ".b-failed{background:#555}.b-agree{background:var(--good)}\n"
    ".error{font-size:12px;color:var(--bad);overflow-wrap:anywhere}\n"
    "footer{color:var(--mute);font-size:12px;padding-bottom:30px}\n";

static const char page_js[] =
    "(function(){'use strict';\n"
    "var items=Array.prototype.slice.call(document.querySelectorAll('#items > li'));\n"
    "var fl=document.getElementById('f-label'),fp=document.getElementById('f-pred'),\n"
    "fd=document.getElementById('f-disagree'),fo=document.getElementById('f-ood'),\n"
    "shown=document.getElementById('shown');\n"
    "function apply(){var l=fl.value,p=fp.value,d=fd.checked,o=fo.checked,n=0;\n"
    "items.forEach(function(li){var s=li.dataset;\n"
    "var show=(!l||s.label===l)&&(!p||s.pred===p)&&(!d||s.disagree==='1')&&(!o||s.ood==='1');\n"
    "li.hidden=!show;if(show)n++;});\n"
    "shown.textContent=n+' of '+items.length+' shown';}\n"
    "[fl,fp,fd,fo].forEach(function(e){e.addEventListener('change',apply);});\n"
    "document.getElementById('f-reset').addEventListener('click',function(){\n"
    "fl.value='';fp.value='';fd.checked=false;fo.checked=false;apply();});\n"
    "function pick(td){fl.value=td.dataset.label;fp.value=td.dataset.pred;fd.checked=false;fo.checked=false;\n"
    "apply();document.getElementById('filters').scrollIntoView();}\n"
    "Array.prototype.forEach.call(document.querySelectorAll('#confusion td.hit'),function(td){\n"
    "td.addEventListener('click',function(){pick(td);});\n"
    "td.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();pick(td);}});});\n"
    "apply();})();\n";

/* The value an item carries for the label filter. */
static const char *label_key(const dh_review_page *p, const dh_review_item *it)
{
    if (it->label >= 0) return p->class_names[it->label];
    return it->label_text ? it->label_text : "(none)";
}

static void option(dh_str *s, const char *value, const char *text, int count)
{
    dh_str_puts(s, "<option value=\"");
    esc(s, value);
    dh_str_puts(s, "\">");
    esc(s, text);
    dh_str_printf(s, " (%d)</option>", count);
}

static void class_title(dh_str *s, const dh_review_page *p, int c)
{
    dh_str_puts(s, " title=\"");
    esc(s, p->class_long_names[c] ? p->class_long_names[c] : p->class_names[c]);
    dh_str_puts(s, "\"");
}

static void confusion(dh_str *s, const dh_review_page *p)
{
    int K = p->n_classes;
    int *cm = calloc((size_t)K * K + 1, sizeof *cm);
    char *row_used = calloc((size_t)K + 1, 1), *col_used = calloc((size_t)K + 1, 1);
    if (!cm || !row_used || !col_used) {
        s->oom = 1;
        goto done;
    }
    for (int i = 0; i < p->n; i++) {
        const dh_review_item *it = p->items[i];
        if (!it->ok || it->label < 0) continue;
        cm[(size_t)it->label * K + it->pred]++;
        row_used[it->label] = col_used[it->label] = col_used[it->pred] = 1;
    }
    int ncols = 0;
    for (int c = 0; c < K; c++) ncols += col_used[c];
    dh_str_puts(s, "<section id=\"matrix-section\"><h2>Confusion matrix</h2>\n");
    if (ncols > 40) {
        dh_str_printf(s, "<p class=\"note\">%d classes occur: too many for a table; see review.csv.</p></section>\n",
                               ncols);
        goto done;
    }
    dh_str_puts(s, "<p class=\"note\">Rows: the given label; columns: the model's prediction; the last column is "
                       "the share of the row the model agrees with. Click a cell to show its images.</p>\n"
                       "<table class=\"cm\" id=\"confusion\"><thead><tr><th class=\"corner\">label \\ prediction</th>");
    for (int c = 0; c < K; c++) {
        if (!col_used[c]) continue;
        dh_str_puts(s, "<th scope=\"col\"");
        class_title(s, p, c);
        dh_str_puts(s, ">");
        esc(s, p->class_names[c]);
        dh_str_puts(s, "</th>");
    }
    dh_str_puts(s, "<th scope=\"col\">agree</th></tr></thead><tbody>\n");
    for (int r = 0; r < K; r++) {
        if (!row_used[r]) continue;
        int total = 0;
        for (int c = 0; c < K; c++) total += cm[(size_t)r * K + c];
        dh_str_puts(s, "<tr><th scope=\"row\"");
        class_title(s, p, r);
        dh_str_puts(s, ">");
        esc(s, p->class_names[r]);
        dh_str_puts(s, "</th>");
        for (int c = 0; c < K; c++) {
            if (!col_used[c]) continue;
            int v = cm[(size_t)r * K + c];
            double f = total ? (double)v / total : 0;
            if (!v) {
                dh_str_puts(s, "<td class=\"zero\">0</td>");
                continue;
            }
            /* shade by the row's share: green on the diagonal, red off it */
            dh_str_printf(s, "<td class=\"hit\" tabindex=\"0\" role=\"button\" style=\"background:rgba(%s,%.2f)\" data-label=\"",
                                   r == c ? "46,125,50" : "198,40,40", 0.12 + 0.55 * f);
            esc(s, p->class_names[r]);
            dh_str_puts(s, "\" data-pred=\"");
            esc(s, p->class_names[c]);
            dh_str_printf(s, "\">%d</td>", v);
        }
        dh_str_printf(s, "<td>%d %%</td></tr>\n", total ? (int)lround(100.0 * cm[(size_t)r * K + r] / total) : 0);
    }
    dh_str_puts(s, "</tbody></table></section>\n");
done:
    free(cm);
    free(row_used);
    free(col_used);
}

static int cmp_text(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void filters(dh_str *s, const dh_review_page *p)
{
    int K = p->n_classes;
    int *lab = calloc((size_t)K + 1, sizeof *lab), *pred = calloc((size_t)K + 1, sizeof *pred), none = 0, failed = 0;
    /* labels that are no class, sorted for the list */
    const char **other = calloc((size_t)p->n + 1, sizeof *other);
    int n_other = 0;
    if (!lab || !pred || !other) {
        s->oom = 1;
        free(lab);
        free(pred);
        free(other);
        return;
    }
    for (int i = 0; i < p->n; i++) {
        const dh_review_item *it = p->items[i];
        if (it->label >= 0) lab[it->label]++;
        else if (it->label_text) other[n_other++] = it->label_text;
        else none++;
        if (it->ok) pred[it->pred]++;
        else failed++;
    }
    dh_str_puts(s, "<form id=\"filters\" onsubmit=\"return false\">\n<label>Label <select id=\"f-label\">"
                       "<option value=\"\">all</option>");
    for (int c = 0; c < K; c++)
        if (lab[c]) option(s, p->class_names[c], p->class_names[c], lab[c]);
    if (n_other > 1) qsort(other, (size_t)n_other, sizeof *other, cmp_text);
    for (int i = 0, j; i < n_other; i = j) {
        for (j = i + 1; j < n_other && !strcmp(other[j], other[i]); j++) {}
        option(s, other[i], other[i], j - i);
    }
    if (none) option(s, "(none)", "no label", none);
    dh_str_puts(s, "</select></label>\n<label>Prediction <select id=\"f-pred\"><option value=\"\">all</option>");
    for (int c = 0; c < K; c++)
        if (pred[c]) option(s, p->class_names[c], p->class_names[c], pred[c]);
    if (failed) option(s, "(failed)", "failed", failed);
    dh_str_printf(s, "</select></label>\n"
                              "<label><input type=\"checkbox\" id=\"f-disagree\"> disagreement only (%d)</label>\n"
                              "<label><input type=\"checkbox\" id=\"f-ood\"> out of distribution only (%d)</label>\n"
                              "<button type=\"button\" id=\"f-reset\">Show all</button>\n"
                              "<output id=\"shown\">%d of %d shown</output>\n</form>\n",
                           p->n_disagree, p->n_ood, p->n, p->n);
    free(other);
    free(lab);
    free(pred);
}

static void item(dh_str *s, const dh_review_page *p, const dh_review_item *it, int rank)
{
    dh_str_printf(s, "<li class=\"item%s%s%s\" data-rank=\"%d\" data-label=\"", it->disagree ? " disagree" : "",
                           it->ood ? " ood" : "", it->ok ? "" : " failed", rank);
    esc(s, label_key(p, it));
    dh_str_puts(s, "\" data-pred=\"");
    esc(s, it->ok ? p->class_names[it->pred] : "(failed)");
    dh_str_printf(s, "\" data-disagree=\"%d\" data-ood=\"%d\" data-failed=\"%d\" data-suspicion=\"",
                           it->disagree, it->ood, !it->ok);
    if (!isnan(it->suspicion)) dh_str_printf(s, "%.4f", it->suspicion);
    dh_str_puts(s, "\" data-path=\"");
    esc(s, it->rel);
    dh_str_puts(s, "\">\n");
    if (it->ok) {
        /* names are [0-9A-Za-z_-] only (output_name): no URL encoding needed */
        dh_str_puts(s, "<a class=\"thumb\" href=\"images/");
        esc(s, it->out_name);
        dh_str_puts(s, "\"><img src=\"thumbs/");
        esc(s, it->out_name);
        dh_str_printf(s, "\" width=\"%d\" height=\"%d\" alt=\"", it->thumb_w, it->thumb_h);
        esc(s, it->rel);
        dh_str_printf(s, "\"%s></a>\n", p->n > 1000 ? " loading=\"lazy\"" : "");
    }
    dh_str_puts(s, "<div class=\"path\" title=\"");
    esc(s, it->rel);
    dh_str_puts(s, "\">");
    esc(s, it->rel);
    dh_str_puts(s, "</div>\n<div class=\"verdict\">");
    if (it->label >= 0 || it->label_text) {
        dh_str_puts(s, "<span class=\"lab\">");
        esc(s, it->label >= 0 ? p->class_names[it->label] : it->label_text);
        dh_str_puts(s, "</span> <span class=\"arrow\">&rarr;</span> ");
    }
    if (it->ok) {
        dh_str_puts(s, "<span class=\"pred\">");
        esc(s, p->class_names[it->pred]);
        dh_str_printf(s, " %d&nbsp;%%</span>", dh_percent(it->probs[it->pred]));
    } else {
        dh_str_puts(s, "<span class=\"pred\">not reviewed</span>");
    }
    dh_str_puts(s, "</div>\n");
    if (it->ok) {
        dh_str_puts(s, "<div class=\"score\">");
        if (!isnan(it->suspicion)) dh_str_printf(s, "suspicion %+.2f", it->suspicion);
        else dh_str_puts(s, "no label");
        if (isfinite(it->ood_score)) dh_str_printf(s, " &middot; OOD score %.1f", it->ood_score);
        dh_str_puts(s, "</div>\n");
    }
    dh_str_puts(s, "<div class=\"badges\">");
    if (it->disagree) dh_str_puts(s, "<span class=\"badge b-disagree\">disagrees</span>");
    else if (it->ok && it->label >= 0) dh_str_puts(s, "<span class=\"badge b-agree\">agrees</span>");
    if (it->ood) {
        dh_str_puts(s, "<span class=\"badge b-ood\" title=\"");
        esc(s, it->image_flag ? it->image_reason : "features unlike the training images");
        dh_str_puts(s, "\">out of distribution</span>");
    }
    if (it->uncertain) dh_str_puts(s, "<span class=\"badge b-uncertain\">uncertain</span>");
    if (!it->ok) dh_str_puts(s, "<span class=\"badge b-failed\">failed</span>");
    dh_str_puts(s, "</div>\n");
    if (!it->ok) {
        dh_str_puts(s, "<div class=\"error\">");
        esc(s, it->error);
        dh_str_puts(s, "</div>\n");
    }
    dh_str_puts(s, "</li>\n");
}

int dh_review_write_html(const char *path, const dh_review_page *p, dl_error *err)
{
    dh_str str = {0}, *s = &str;
    dh_str_puts(s, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                       /* no request leaves the page: images from its own folder only */
                       "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file:; "
                       "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
                       "<meta name=\"generator\" content=\"dermlens " DL_VERSION_STRING "\">\n<title>DermLens review: ");
    esc(s, p->dataset);
    dh_str_printf(s, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<header>\n<h1>DermLens dataset review</h1>\n"
                              "<p class=\"disclaimer\" id=\"disclaimer\">", page_css);
    esc(s, DH_DISCLAIMER_LONG);
    dh_str_puts(s, "</p>\n<p class=\"meta\">Dataset <b>");
    esc(s, p->dataset);
    dh_str_puts(s, "</b> &middot; labels from <b>");
    esc(s, p->labels_from ? p->labels_from : "nowhere (no class subfolders, no --labels)");
    dh_str_puts(s, "</b><br>Model <b id=\"model-name\">");
    esc(s, p->model_name);
    dh_str_puts(s, "</b> <span title=\"sha256 of the model file\">(");
    dh_str_put(s, p->model_sha, strnlen(p->model_sha, 12));
    dh_str_puts(s, ")</span> &middot; saliency <b>");
    esc(s, p->method);
    dh_str_puts(s, "</b> &middot; ");
    esc(s, p->generated);
    dh_str_printf(s, "</p>\n<p class=\"counts\" id=\"counts\"><b>%d</b> images: %d reviewed, %d failed", p->n,
                           p->n_ok, p->n_failed);
    if (p->n_labelled)
        dh_str_printf(s, " &middot; %d labelled, <b>%d disagree</b> with their label", p->n_labelled,
                               p->n_disagree);
    dh_str_printf(s, " &middot; %d out of distribution</p>\n</header>\n", p->n_ood);
    if (p->n_labelled) confusion(s, p);
    dh_str_puts(s, "<section id=\"review\">\n<h2>Images, most suspicious first</h2>\n<p class=\"note\">"
                       "Suspicion = the largest probability of another class minus the probability of the given "
                       "label (&minus;1 to 1): positive when the model prefers another class, near 1 when it is sure "
                       "of it. The top of the list is where label errors (or model errors) are most likely. "
                       "Click a thumbnail for the annotated image.</p>\n");
    filters(s, p);
    dh_str_puts(s, "<ol id=\"items\">\n");
    for (int i = 0; i < p->n; i++) item(s, p, p->items[i], i + 1);
    dh_str_puts(s, "</ol>\n<noscript><p class=\"note\">The filters need JavaScript; every image is shown.</p></noscript>\n"
                       "</section>\n<footer>");
    esc(s, DH_DISCLAIMER_LONG);
    dh_str_printf(s, " Made by dermlens %s review; the table is also in review.csv.</footer>\n<script>\n%s</script>\n"
                              "</body>\n</html>\n",
                           DL_VERSION_STRING, page_js);
    int rc;
    if (s->oom) {
        dh_set_err(err, DL_ERR_NOMEM, "out of memory building %s", path);
        rc = -1;
    } else {
        rc = dl_write_file_atomic(path, s->data, s->len, err);
    }
    dh_str_free(s);
    return rc;
}
