#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The review page in a real browser (issue 17, item 6): Debian's Chromium,
headless, driven through chromedriver by Selenium, opens index.html from
file:// with every host unresolvable, and checks that each thumbnail loads
(naturalWidth > 0, the PNG's own width), that the rows are in the CSV's
order (by suspicion), that each filter (label, prediction, disagreement,
out of distribution, their combination, the confusion-matrix cells, "Show
all") shows exactly the rows the CSV says, that names are shown literally,
and that the page made no request outside its folder and logged no error.

    browser_test.py DERMLENS SOURCE_ROOT            the test
    browser_test.py DERMLENS SOURCE_ROOT --screenshot OUT.png [--dataset DIR]
                                                    docs: review DIR (default: the
                                                    21 sample images), screenshot

Exits 77 (skip) without chromium, chromedriver or python3-selenium (Debian:
chromium chromium-driver python3-selenium); retries with /usr/bin/python3
first when another python3 lacks Selenium. Prints "N passed, M failed"."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
except ImportError:
    system = "/usr/bin/python3"
    if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
            and not os.environ.get("DL_BROWSER_TEST_REEXEC"):
        os.environ["DL_BROWSER_TEST_REEXEC"] = "1"
        os.execv(system, [system] + sys.argv)
    print("SKIP: python3-selenium is not installed")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import review_data  # noqa: E402

exe, src = (sys.argv[1], sys.argv[2]) if sys.argv[1] != "--page" else (None, None)
model = os.path.join(src, "weights", "dermlens_ham10000.safetensors") if src else None
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
browser = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
driver_bin = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver",) if os.path.exists(p)), None)
if not browser or not driver_bin:
    print("SKIP: no chromium / chromedriver (Debian: chromium chromium-driver)")
    sys.exit(77)

passed = failed = 0


def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", msg)


def start(profile, width, height):
    o = webdriver.ChromeOptions()
    o.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
              "--window-size=%d,%d" % (width, height), "--user-data-dir=" + profile,
              # nothing may leave the machine: every host name fails to resolve
              "--host-resolver-rules=MAP * ~NOTFOUND", "--force-device-scale-factor=1"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_bin), options=o)


def wait_images(d, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if d.execute_script("return Array.prototype.every.call(document.images, function(i){return i.complete;})"):
            return True
        time.sleep(0.1)
    return False


def review(dataset, out, *extra):
    r = subprocess.run([exe, "review", dataset, "-o", out, "--model", model, *extra], capture_output=True, text=True,
                       timeout=1800)
    return r


def screenshot(argv):
    out_png = argv[argv.index("--screenshot") + 1]
    dataset = argv[argv.index("--dataset") + 1] if "--dataset" in argv else os.path.join(src, "tests", "data", "sample")
    tmp = tempfile.mkdtemp(prefix="dl_review_shot_")
    try:
        out = os.path.join(tmp, "review")
        r = review(dataset, out)
        print(r.stdout.strip())
        if r.returncode not in (0, 3):
            print(r.stderr)
            sys.exit(1)
        d = start(os.path.join(tmp, "profile"), 1280, 900)
        try:
            d.get("file://" + os.path.join(out, "index.html"))
            wait_images(d)
            # the header, the matrix and the first row of thumbnails
            h = d.execute_script("var r=document.querySelectorAll('#items > li');"
                                 "var last=r[Math.min(r.length,5)-1].getBoundingClientRect();"
                                 "return Math.ceil(last.bottom+window.scrollY+16);")
            # the viewport itself (a window size also counts the browser's frame)
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                              {"width": 1280, "height": min(int(h), 2400), "deviceScaleFactor": 1, "mobile": False})
            time.sleep(0.3)
            d.save_screenshot(out_png)
            print("wrote", out_png)
        finally:
            d.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if "--screenshot" in sys.argv:
    screenshot(sys.argv)
    sys.exit(0)

def page_test(out, csv_path, profile, full):
    """The page in out against the CSV: thumbnails, order, filters, matrix,
    no request outside the folder. full: also what the test dataset of
    review_data.py must show (the GIMP suites check their own batch's page
    with full=False)."""
    _, rows, _ = review_data.read_csv(csv_path)
    for x in rows:
        # the CSV writes "'=..." for a cell that would be a formula
        if x["path"].startswith("'") and x["path"][1:2] in "=+-@":
            x["path"] = x["path"][1:]
    d = start(profile, 1280, 1000)
    try:
        page_checks(d, out, rows, full)
    finally:
        d.quit()


def page_checks(d, out, rows, full):
    paths = [x["path"] for x in rows]

    def label_key(x):
        return x["label"] if x["label"] else "(none)"

    d.get("file://" + os.path.join(out, "index.html"))
    check(wait_images(d), "thumbnails still loading after 30 s")

    # thumbnails: one per reviewed image, each decoded at its file's width
    imgs = d.execute_script("return Array.prototype.map.call(document.querySelectorAll('#items img'),"
                            "function(i){return [i.closest('li').dataset.path, i.naturalWidth, i.naturalHeight,"
                            "i.getAttribute('src')];})")
    ok_rows = [x for x in rows if not x["error"]]
    check(len(imgs) == len(ok_rows), "%d thumbnails for %d reviewed images" % (len(imgs), len(ok_rows)))
    by_path = {x["path"]: x for x in rows}
    for p, w, h, s in imgs:
        want_w = int.from_bytes(open(os.path.join(out, s), "rb").read(24)[16:20], "big")
        check(w > 0 and h > 0 and w == want_w, "%s: thumbnail %s is %dx%d (file %d wide)" % (p, s, w, h, want_w))
        check(s == by_path[p]["thumbnail"], "%s: page shows %s, CSV says %s" % (p, s, by_path[p]["thumbnail"]))

    # order: the CSV's, most suspicious first
    dom = d.execute_script("return Array.prototype.map.call(document.querySelectorAll('#items > li'),"
                           "function(l){return [l.dataset.path, l.dataset.suspicion];})")
    check([p for p, _ in dom] == paths, "page order differs from the CSV: %s" % [p for p, _ in dom])
    susp = [float(s) for _, s in dom if s]
    check(susp == sorted(susp, reverse=True) and (len(susp) >= 5 or not full), "suspicion not descending: %s" % susp)
    if full:
        check(dom[0][0] in ("nv/ISIC_0028790.tif", "mel/ISIC_0026656.bmp"), "first row %s" % dom[0][0])
        shown_names = d.execute_script("return Array.prototype.map.call(document.querySelectorAll('#items .path'),"
                                       "function(e){return e.textContent;})")
        check('bkl/<b>odd & "name\'.jpg' in shown_names, "hostile name not shown literally: %s" % shown_names)
    check(d.find_element(By.ID, "disclaimer").text.startswith("Research/teaching aid"), "disclaimer")
    check("DermLens lesion classifier" in d.find_element(By.ID, "model-name").text, "model name")

    def visible():
        return d.execute_script("return Array.prototype.filter.call(document.querySelectorAll('#items > li'),"
                                "function(l){return getComputedStyle(l).display!=='none';})"
                                ".map(function(l){return l.dataset.path;})")

    def shown_text():
        return d.find_element(By.ID, "shown").text

    def reset():
        d.find_element(By.ID, "f-reset").click()

    def expect(what, want):
        got = visible()
        check(got == want, "%s: shows %s, want %s" % (what, got, want))
        check(shown_text() == "%d of %d shown" % (len(want), len(rows)), "%s: counter says %r" % (what, shown_text()))

    expect("no filter", paths)
    fl, fp = Select(d.find_element(By.ID, "f-label")), Select(d.find_element(By.ID, "f-pred"))
    label_values = [o.get_attribute("value") for o in fl.options if o.get_attribute("value")]
    check(set(label_values) == {label_key(x) for x in rows}, "label options %s" % label_values)
    for v in label_values:
        fl.select_by_value(v)
        expect("label " + v, [x["path"] for x in rows if label_key(x) == v])
    fl.select_by_value("")
    pred_values = [o.get_attribute("value") for o in fp.options if o.get_attribute("value")]
    check(not full or ("(failed)" in pred_values and "df" in pred_values and "bcc" in pred_values),
          "prediction options %s" % pred_values)
    for v in pred_values:
        fp.select_by_value(v)
        expect("prediction " + v,
               [x["path"] for x in rows if (x["prediction"] == v if v != "(failed)" else bool(x["error"]))])
    reset()
    expect("after Show all", paths)
    d.find_element(By.ID, "f-disagree").click()
    want = [x["path"] for x in rows if x["disagree"] == "1"]
    check(len(want) >= 2 or not full, "fewer than 2 disagreements to filter")
    expect("disagreement only", want)
    if "nv" in label_values:
        fl.select_by_value("nv")
        expect("label nv + disagreement", [x["path"] for x in rows if x["disagree"] == "1" and x["label"] == "nv"])
    reset()
    d.find_element(By.ID, "f-ood").click()
    want = [x["path"] for x in rows if x["ood_flag"] == "1"]
    check("nv/blank.png" in want or not full, "the blank image is not out of distribution")
    expect("out of distribution only", want)
    d.find_element(By.ID, "f-ood").click()
    expect("out of distribution off", paths)

    # every non-empty confusion-matrix cell shows its images
    cells = d.find_elements(By.CSS_SELECTOR, "#confusion td.hit")
    check(len(cells) >= (5 if full else 1), "%d clickable confusion cells" % len(cells))
    labelled = [x for x in rows if not x["error"] and x["label"] in CLASSES]
    cm_total = 0
    for td in cells:
        lab, pred, n = td.get_attribute("data-label"), td.get_attribute("data-pred"), int(td.text)
        cm_total += n
        d.execute_script("arguments[0].scrollIntoView()", td)
        td.click()
        want = [x["path"] for x in rows if x["label"] == lab and x["prediction"] == pred and not x["error"]]
        check(len(want) == n, "cell %s/%s says %d, CSV has %d" % (lab, pred, n, len(want)))
        check(fl.first_selected_option.get_attribute("value") == lab
              and fp.first_selected_option.get_attribute("value") == pred, "cell %s/%s did not set the filters" % (lab, pred))
        expect("confusion cell %s -> %s" % (lab, pred), want)
    check(cm_total == len(labelled), "confusion matrix counts %d of %d labelled images" % (cm_total, len(labelled)))
    reset()

    # nothing outside the page's folder was requested; no error was logged
    base = "file://" + out + "/"
    urls = []
    for e in d.get_log("performance"):
        m = json.loads(e["message"])["message"]
        # what our page asked for (the browser's own start page is not ours)
        if m.get("method") == "Network.requestWillBeSent" and m["params"].get("documentURL", "").startswith(base):
            urls.append(m["params"]["request"]["url"])
    check(sum(u.startswith(base + "thumbs/") for u in urls) == len(ok_rows), "thumbnail requests: %s" % urls)
    check(urls and all(u.startswith(base) for u in urls), "requests outside the folder: %s" %
          [u for u in urls if not u.startswith(base)])
    logs = [e for e in d.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]
    check(not logs, "browser console: %s" % logs)


if "--page" in sys.argv:
    # browser_test.py --page DIR CSV: a review page made elsewhere (the
    # plug-in's Batch Review in the GIMP suites)
    i = sys.argv.index("--page")
    tmp = tempfile.mkdtemp(prefix="dl_review_page_")
    try:
        page_test(os.path.abspath(sys.argv[i + 1]), sys.argv[i + 2], os.path.join(tmp, "profile"), False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)

tmp = tempfile.mkdtemp(prefix="dl_review_browser_")
try:
    ds, out = os.path.join(tmp, "dataset"), os.path.join(tmp, "review")
    review_data.build(ds, src)
    r = review(ds, out, "--threads", "2")
    check(r.returncode == 3, "review exit %d (want 3): %s" % (r.returncode, r.stderr))
    page_test(out, os.path.join(out, "review.csv"), os.path.join(tmp, "profile"), True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
