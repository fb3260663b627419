#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end checks of the dermlens command: classify --json names each input's
path and every class; a broken file fails with a message and a non-zero exit;
batch writes one row per file (errors included) and never writes into its input
folder; info shows the provenance."""
import csv, json, os, shutil, subprocess, sys, tempfile

exe, src = sys.argv[1], sys.argv[2]
model = os.path.join(src, "weights", "dermlens_ham10000.safetensors")
lesions = os.path.join(src, "tests", "data", "lesions")
fail = 0

def check(cond, msg):
    global fail
    if not cond:
        print("FAIL:", msg)
        fail += 1

def run(*args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)

imgs = sorted(os.path.join(lesions, f) for f in os.listdir(lesions) if f.endswith(".jpg"))
r = run("classify", "--json", "--model", model, "-k", "0", *imgs)
check(r.returncode == 0, "classify failed: " + r.stderr)
out = json.loads(r.stdout)
check([x["path"] for x in out["results"]] == imgs, "paths not echoed in order")
for x in out["results"]:
    names = [c["name"] for c in x["classes"]]
    check(names == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], "classes: %s" % names)
    check(abs(sum(c["probability"] for c in x["classes"]) - 1) < 1e-4, "probabilities do not sum to 1")
check(out["results"][2]["top_class"] == "mel", "the sample melanoma is not top-1 mel: %s" % out["results"][2]["top_class"])

tmp = tempfile.mkdtemp()
try:
    indir = os.path.join(tmp, "in")
    os.mkdir(indir)
    for f in imgs:
        shutil.copy(f, indir)
    with open(os.path.join(indir, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 truncated")
    before = {f: open(os.path.join(indir, f), "rb").read() for f in os.listdir(indir)}
    r = run("classify", "--model", model, os.path.join(indir, "broken.jpg"))
    check(r.returncode != 0 and "broken.jpg" in r.stderr, "broken file: rc %d, %s" % (r.returncode, r.stderr))
    out_csv = os.path.join(tmp, "out.csv")
    r = run("batch", indir, "--model", model, "--csv", out_csv, "-o", os.path.join(tmp, "annot"))
    check(r.returncode == 3, "batch exit %d (want 3: some files failed): %s" % (r.returncode, r.stderr))
    rows = list(csv.DictReader(open(out_csv)))
    check(len(rows) == 4, "batch rows %d" % len(rows))
    bad = [x for x in rows if x["file"] == "broken.jpg"]
    check(len(bad) == 1 and bad[0]["error"], "broken file has no error row")
    check(len(os.listdir(os.path.join(tmp, "annot"))) == 3, "annotated copies")
    after = {f: open(os.path.join(indir, f), "rb").read() for f in os.listdir(indir)}
    check(before == after, "batch changed its input folder")
    r = run("batch", indir, "--model", model, "--csv", os.path.join(indir, "x.csv"))
    check(r.returncode != 0 and not os.path.exists(os.path.join(indir, "x.csv")), "CSV inside the input folder accepted")
    r = run("info", model)
    check(r.returncode == 0 and "HAM10000" in r.stdout and "seed" in r.stdout, "info lacks provenance")
finally:
    shutil.rmtree(tmp)
print("cli checks:", "FAILED %d" % fail if fail else "all passed")
sys.exit(1 if fail else 0)
