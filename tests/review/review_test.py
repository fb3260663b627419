#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""`dermlens review` end to end (issue 17, item 6): a folder of class
subfolders with a TIFF, a BMP, a broken file, a blank image and hostile names
is reviewed; the CSV has the documented columns, one row per image, sorted by
suspicion, with the suspicion recomputable from the probabilities; every
annotated image and thumbnail exists; the page is escaped and offline; labels
from a CSV; the errors a user can make. Prints "N passed, M failed"."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import review_data  # noqa: E402

exe, src = sys.argv[1], sys.argv[2]
model = os.path.join(src, "weights", "dermlens_ham10000.safetensors")
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
passed = failed = 0


def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", msg)


def run(*args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=900)


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


tmp = tempfile.mkdtemp(prefix="dl_review_")
try:
    ds = os.path.join(tmp, "dataset")
    out = os.path.join(tmp, "review")
    images = review_data.build(ds, src)
    before = {p: open(os.path.join(ds, p), "rb").read() for p in images}

    r = run("review", ds, "-o", out, "--model", model, "--threads", "2")
    check(r.returncode == 3, "exit %d, want 3 (one file failed): %s" % (r.returncode, r.stderr))
    check(re.search(r"%d images: %d reviewed, 1 failed" % (len(images), len(images) - 1), r.stdout),
          "summary line: " + r.stdout)
    check("broken.jpg" in r.stderr and "failed" in r.stderr, "the failure is not named: " + r.stderr)
    check("1 other file skipped" in r.stdout, "README.txt not reported as skipped: " + r.stdout)

    header, rows, raw = review_data.read_csv(os.path.join(out, "review.csv"))
    want = (["rank", "path", "label", "prediction", "confidence"] + ["p_" + c for c in CLASSES]
            + ["ood_score", "ood_flag", "ood_reason", "suspicion", "disagree", "annotated", "thumbnail", "error"])
    check(header == want, "CSV header %s" % header)
    check(all(len(x) == len(header) for x in raw), "a CSV row has the wrong number of cells")
    check(len(rows) == len(images), "CSV rows %d, images %d" % (len(rows), len(images)))
    check([int(x["rank"]) for x in rows] == list(range(1, len(rows) + 1)), "ranks not 1..n")
    # the hostile name is written as a text cell, not a formula
    paths = {x["path"].lstrip("'") for x in rows}
    check(paths == set(images), "CSV paths %s" % sorted(paths ^ set(images)))
    inj = [x for x in rows if "HYPERLINK" in x["path"]]
    check(len(inj) == 1 and inj[0]["path"].startswith("'="), "CSV injection not neutralised: %s" % inj)

    by_path = {x["path"].lstrip("'"): x for x in rows}
    ok = [x for x in rows if not x["error"]]
    labelled = [x for x in ok if x["label"] in CLASSES]
    for x in ok:
        p = [float(x["p_" + c]) for c in CLASSES]
        check(abs(sum(p) - 1) < 1e-3, "%s: probabilities sum to %f" % (x["path"], sum(p)))
        check(x["prediction"] == CLASSES[max(range(7), key=lambda i: p[i])], "%s: prediction is not the argmax" % x["path"])
        check(abs(float(x["confidence"]) - max(p)) < 1e-5, "%s: confidence" % x["path"])
        check(x["ood_flag"] in ("0", "1") and x["ood_score"] != "", "%s: OOD columns %r %r" % (x["path"], x["ood_flag"], x["ood_score"]))
        for col in ("annotated", "thumbnail"):
            f = os.path.join(out, x[col])
            check(os.path.isfile(f) and is_png(f), "%s: %s %s missing or not PNG" % (x["path"], col, x[col]))
        a, t = png_size(os.path.join(out, x["annotated"])), png_size(os.path.join(out, x["thumbnail"]))
        # the label box goes below the image, the thumbnail is at most 200 px
        check(a[1] > 224 and a[0] >= 224 and max(t) <= 200, "%s: annotated %s, thumbnail %s" % (x["path"], a, t))
        if x in labelled:
            li = CLASSES.index(x["label"])
            s = max(p[i] for i in range(7) if i != li) - p[li]
            check(abs(float(x["suspicion"]) - s) < 1e-3, "%s: suspicion %s, recomputed %.4f" % (x["path"], x["suspicion"], s))
            check(x["disagree"] == ("1" if x["prediction"] != x["label"] else "0"), "%s: disagree" % x["path"])
            check((float(x["suspicion"]) > 0) == (x["disagree"] == "1"), "%s: suspicion sign vs disagreement" % x["path"])
        else:
            check(x["suspicion"] == "" and x["disagree"] == "", "%s: unlabelled with a suspicion" % x["path"])
    # order: labelled by suspicion (descending), then unlabelled, then failures
    groups = [0 if x in labelled else 1 if not x["error"] else 2 for x in rows]
    check(groups == sorted(groups), "groups out of order: %s" % groups)
    susp = [float(x["suspicion"]) for x in labelled]
    check(susp == sorted(susp, reverse=True), "not sorted by suspicion: %s" % susp)

    # labels from folders, the nearest class folder winning
    check(by_path["archive/2019/vasc/ISIC_0031201.jpg"]["label"] == "vasc", "nested class folder")
    check(by_path["=HYPERLINK(x).jpg"]["label"] == "", "a root file got a label")
    # the TIFF and the BMP are read, and their wrong folder labels top the list
    tif, bmp = by_path["nv/ISIC_0028790.tif"], by_path["mel/ISIC_0026656.bmp"]
    check(not tif["error"] and tif["prediction"] == "df", "TIFF: %s %s" % (tif["prediction"], tif["error"]))
    check(not bmp["error"] and bmp["prediction"] == "bcc", "BMP: %s %s" % (bmp["prediction"], bmp["error"]))
    check({rows[0]["path"], rows[1]["path"]} == {"nv/ISIC_0028790.tif", "mel/ISIC_0026656.bmp"},
          "mislabelled TIFF/BMP not first: %s" % [x["path"] for x in rows[:3]])
    check(float(rows[0]["suspicion"]) > 0.9, "top suspicion %s" % rows[0]["suspicion"])
    broken = by_path["nv/broken.jpg"]
    check(broken["error"] and "JPEG" in broken["error"] and broken["prediction"] == "" and rows[-1] is broken,
          "broken file row: %s" % broken)
    blank = by_path["nv/blank.png"]
    check(blank["ood_flag"] == "1" and "image check" in blank["ood_reason"], "blank image not flagged: %s" % blank)

    # the page: offline, escaped, every image it shows exists
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    check(not re.search(r"(src|href)\s*=\s*\"(https?:|//)", html) and "http://" not in html and "https://" not in html,
          "the page names a network URL")
    check("Content-Security-Policy" in html and "default-src 'none'" in html, "no CSP")
    check("&lt;b&gt;odd &amp; &quot;name&#39;.jpg" in html and "<b>odd" not in html, "file name not escaped")
    check("Research/teaching aid" in html and "DermLens lesion classifier" in html, "disclaimer or model name missing")
    check('id="confusion"' in html, "no confusion matrix")
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        check(os.path.isfile(os.path.join(out, ref)), "the page refers to a missing file " + ref)
    order = re.findall(r'<li class="item[^"]*" data-rank="(\d+)"[^>]*data-path="([^"]*)"', html)
    check([int(k) for k, _ in order] == list(range(1, len(rows) + 1)), "page ranks")
    check(len(order) == len(rows), "page rows %d" % len(order))
    after = {p: open(os.path.join(ds, p), "rb").read() for p in images}
    check(before == after and sorted(os.listdir(ds)) == sorted(set(p.split("/")[0] for p in images) | {"README.txt"}),
          "review changed or wrote into its dataset")

    # labels from a CSV (image ids as in HAM10000_metadata.csv; one label
    # that is not a class; one row that matches nothing) into the same
    # folder: the earlier outputs are replaced
    flat = os.path.join(tmp, "flat")
    os.mkdir(flat)
    for name in ("ISIC_0031711.jpg", "ISIC_0025921.jpg", "ISIC_0029674.jpg"):
        shutil.copy(os.path.join(ds, {"ISIC_0031711.jpg": "mel", "ISIC_0025921.jpg": "nv", "ISIC_0029674.jpg": "bkl"}[name], name), flat)
    labels = os.path.join(tmp, "meta.csv")
    with open(labels, "w") as f:
        f.write("lesion_id,image_id,dx\nHAM_1,ISIC_0031711,nv\nHAM_2,ISIC_0025921,nv\nHAM_3,ISIC_0029674,keratosis\n"
                "HAM_4,ISIC_9999999,mel\n")
    r = run("review", flat, "-o", out, "--model", model, "--labels", labels, "--threads", "1")
    check(r.returncode == 0, "--labels run: exit %d: %s" % (r.returncode, r.stderr))
    check("keratosis" in r.stderr and "1 row of" in r.stderr, "label warnings: " + r.stderr)
    header, rows, _ = review_data.read_csv(os.path.join(out, "review.csv"))
    got = {x["path"]: (x["label"], x["disagree"]) for x in rows}
    check(got == {"ISIC_0031711.jpg": ("nv", "1"), "ISIC_0025921.jpg": ("nv", "0"), "ISIC_0029674.jpg": ("keratosis", "")},
          "labels from CSV: %s" % got)
    check(rows[0]["path"] == "ISIC_0031711.jpg", "the melanoma labelled nv is not first")
    check(len(os.listdir(os.path.join(out, "images"))) == 3 and len(os.listdir(os.path.join(out, "thumbs"))) == 3,
          "outputs of the first run left behind: %s" % os.listdir(os.path.join(out, "images")))
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    check("meta.csv" in html, "the page does not say where the labels came from")

    # mistakes a user makes
    r = run("review", ds, "-o", os.path.join(ds, "out"), "--model", model)
    check(r.returncode == 1 and "inside the dataset" in r.stderr and not os.path.exists(os.path.join(ds, "out")),
          "output inside the dataset: %d %s" % (r.returncode, r.stderr))
    r = run("review", ds, "--model", model)
    check(r.returncode == 2 and "-o DIR" in r.stderr, "missing -o: %d %s" % (r.returncode, r.stderr))
    r = run("review", os.path.join(tmp, "nope"), "-o", out, "--model", model)
    check(r.returncode == 1 and "nope" in r.stderr, "missing dataset: %d %s" % (r.returncode, r.stderr))
    r = run("review", labels, "-o", out, "--model", model)
    check(r.returncode == 1 and "--labels" in r.stderr, "a CSV as DATASET: %d %s" % (r.returncode, r.stderr))
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    r = run("review", empty, "-o", out, "--model", model)
    check(r.returncode == 1 and "no images" in r.stderr, "empty folder: %d %s" % (r.returncode, r.stderr))
    r = run("review", ds, "-o", out, "--model", model, "--method", "magic")
    check(r.returncode == 2 and "magic" in r.stderr, "bad method: %d %s" % (r.returncode, r.stderr))
    r = run("review", ds, "-o", out, "--model", model, "--labels", os.path.join(tmp, "nope.csv"))
    check(r.returncode == 1 and "nope.csv" in r.stderr, "missing labels CSV: %d %s" % (r.returncode, r.stderr))
    r = run("review", "--help")
    check(r.returncode == 0 and "Suspicion" in r.stdout and "TIFF" in r.stdout and "index.html" in r.stdout,
          "--help does not explain")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
