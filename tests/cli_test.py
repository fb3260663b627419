#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end checks of the dermlens command: classify --json names each input's
path and every class; a broken file fails with a message and a non-zero exit;
batch writes one row per file (errors included) and never writes into its input
folder; info shows the provenance; explain draws smooth maps (no kinks), the
outline of the top 20 % and a teaching figure (--figure)."""
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
    check("verified at load" in r.stdout or "older version" in r.stdout, "info does not report the weights digest")
    # `dermlens import x.onnx`: a byte-built ONNX classifier (the fuzz seed) with
    # class names, imported, classified and listed by info
    onnx_src = os.path.join(src, "tests", "fuzz", "corpus", "onnx", "m1-opset13")
    onnx = os.path.join(tmp, "tiny.onnx")
    shutil.copy(onnx_src, onnx)
    imported = os.path.join(tmp, "tiny.safetensors")
    r = run("import", onnx, "-o", imported, "--name", "tiny onnx", "--resize", "crop")
    check(r.returncode == 0 and os.path.exists(imported), "import .onnx failed: " + r.stderr[-400:])
    r = run("info", imported)
    check(r.returncode == 0 and "tiny onnx" in r.stdout and "center_crop" in r.stdout, "imported model info: " + r.stdout[:300])
    r = run("classify", "--json", "--model", imported, imgs[0])
    check(r.returncode == 0 and json.loads(r.stdout)["results"][0]["classes"], "classify with the imported model: " + r.stderr)
    # --resize pad (letterbox): recorded, and a non-square image classifies and explains
    padded = os.path.join(tmp, "tiny-pad.safetensors")
    r = run("import", onnx, "-o", padded, "--resize", "pad")
    check(r.returncode == 0 and json.loads(run("info", "--json", padded).stdout)["preprocess"]["resize"] == "pad",
          "import --resize pad: " + r.stderr[-300:])
    wide = os.path.join(src, "tests", "data", "images", "pil_bilinear_40x31.png")
    r = run("classify", "--json", "--model", padded, wide)
    check(r.returncode == 0 and json.loads(r.stdout)["results"][0]["classes"], "classify with a pad model: " + r.stderr)
    r = run("import", onnx, "-o", os.path.join(tmp, "z.safetensors"), "--resize", "stretch")
    check(r.returncode == 2 and "squash, crop or pad" in r.stderr, "--resize stretch: " + r.stderr)
    r = run("import", os.path.join(src, "tests", "fuzz", "corpus", "onnx", "bad-unsupported_op"), "-o", os.path.join(tmp, "x.safetensors"))
    check(r.returncode != 0 and not os.path.exists(os.path.join(tmp, "x.safetensors")), "a non-.onnx name went to the TFLite importer or an output was left")
    bad_onnx = os.path.join(tmp, "bad.onnx")
    shutil.copy(os.path.join(src, "tests", "fuzz", "corpus", "onnx", "bad-unsupported_op"), bad_onnx)
    r = run("import", bad_onnx, "-o", os.path.join(tmp, "y.safetensors"))
    check(r.returncode != 0 and "not supported" in r.stderr and not os.path.exists(os.path.join(tmp, "y.safetensors")),
          "unsupported ONNX op: rc %d %s" % (r.returncode, r.stderr[-300:]))
    # an ensemble of a single model with itself answers as the model; an
    # ensemble cannot be a member
    single = os.path.join(src, "weights", "dermlens_ham10000_frozen.safetensors")
    ens = os.path.join(tmp, "ens.safetensors")
    r = run("ensemble", "-o", ens, single, single)
    check(r.returncode == 0, "ensemble: " + r.stderr)
    r = run("ensemble", "-o", os.path.join(tmp, "nested.safetensors"), ens, single)
    check(r.returncode != 0 and "itself an ensemble" in r.stderr, "nested ensemble: " + r.stderr)
    r1 = json.loads(run("classify", "--json", "--model", single, imgs[2]).stdout)["results"][0]["classes"]
    r2 = json.loads(run("classify", "--json", "--model", ens, imgs[2]).stdout)["results"][0]["classes"]
    check(max(abs(a["probability"] - b["probability"]) for a, b in zip(r1, r2)) < 1e-5, "ensemble of a model with itself differs")
    check("ensemble:     2 members" in run("info", ens).stdout, "info does not list the ensemble's members")
    # F16 storage (weights/FORMAT.md): adjust and ensemble write it, info shows
    # it, f32 converts back losslessly, a bad --storage writes nothing
    check("storage:      F32" in run("info", single).stdout, "info: storage F32 not shown")
    s16, s32, e16 = (os.path.join(tmp, n) for n in ("s16.safetensors", "s32.safetensors", "e16.safetensors"))
    r = run("adjust", single, "--storage", "f16", "-o", s16)
    check(r.returncode == 0, "adjust --storage f16: " + r.stderr)
    info = run("info", s16).stdout
    check("storage:      F16" in info and '"from_sha256"' in info, "info of the F16 copy: storage or provenance missing")
    check(os.path.getsize(s16) < 0.6 * os.path.getsize(single), "F16 copy is %d of %d bytes" % (os.path.getsize(s16), os.path.getsize(single)))
    r = run("adjust", s16, "--storage", "F32", "-o", s32)
    check(r.returncode == 0 and "storage:      F32" in run("info", s32).stdout, "adjust --storage F32: " + r.stderr)
    r = run("ensemble", "--storage", "f16", "-o", e16, single, single)
    check(r.returncode == 0 and "storage:      F16" in run("info", e16).stdout, "ensemble --storage f16: " + r.stderr)
    p = [json.loads(run("classify", "--json", "--model", m, imgs[2]).stdout)["results"][0]["classes"] for m in (single, s16, s32, e16)]
    dp = lambda a, b: max(abs(x["probability"] - y["probability"]) for x, y in zip(a, b))
    check(dp(p[0], p[1]) < 5e-3 and dp(p[0], p[3]) < 5e-3, "F16 copies moved a probability by %g / %g" % (dp(p[0], p[1]), dp(p[0], p[3])))
    check(dp(p[1], p[2]) == 0, "F16 -> F32 changed a probability by %g" % dp(p[1], p[2]))
    x = os.path.join(tmp, "x.safetensors")
    r = run("adjust", single, "--storage", "f8", "-o", x)
    check(r.returncode == 2 and "want f16 or f32" in r.stderr and not os.path.exists(x), "--storage f8: " + r.stderr)
    r = run("adjust", single, "-o", x)
    check(r.returncode == 2 and "--class-bias or --storage" in r.stderr and not os.path.exists(x), "adjust with nothing to do: " + r.stderr)
finally:
    shutil.rmtree(tmp)
# Overlays a teacher can show (issue 17 item 3) and the teaching figure (item
# 5): smooth maps (no kinks left from bilinear upsampling), the outline of the
# top 20 %, and --figure: the picture and its overlay side by side with a
# caption naming the class, the method, the model and the disclaimer.
sys.path.insert(0, os.path.join(src, "tests", "gimp"))
from check_result import read_png  # noqa: E402
import struct, zlib  # noqa: E402

def write_png(path, w, h, rgb):
    raw = b"".join(b"\x00" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))
    chunk = lambda k, b: struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def kinks(png):
    """Largest |second difference| along rows over its mean (16-bit grey map)."""
    w, h, rows = png[0], png[1], png[4]
    vals = [[struct.unpack(">H", r[2 * x:2 * x + 2])[0] for x in range(w)] for r in rows]
    d2 = [abs(v[x - 1] - 2 * v[x] + v[x + 1]) for v in vals for x in range(1, w - 1)]
    return max(d2) / (sum(d2) / len(d2) + 1e-9)

tmp = tempfile.mkdtemp()
try:
    # A dark irregular blob on skin, as a PNG so that the pixels are known exactly.
    W = H = 224
    px = bytearray()
    for y in range(H):
        for x in range(W):
            d = ((x - 120) ** 2 / 60.0 ** 2 + (y - 100) ** 2 / 45.0 ** 2)
            px += bytes((90, 50, 45)) if d < 1 else bytes((220, 170, 150))
    pic = os.path.join(tmp, "blob.png")
    write_png(pic, W, H, bytes(px))
    fig, ov, ovo, m1, m2 = (os.path.join(tmp, n) for n in ("fig.png", "ov.png", "ovo.png", "m1.png", "m2.png"))
    r = run("explain", pic, "-m", model, "-o", ov, "--figure", fig, "--map", m1)
    check(r.returncode == 0, "explain --figure: " + r.stderr[-400:])
    top = json.loads(run("classify", "--json", "-m", model, "-k", "0", pic).stdout)["results"][0]
    top_name = [c["long_name"] for c in top["classes"] if c["name"] == top["top_class"]][0]
    cap = " ".join(r.stdout[r.stdout.find("figure:"):].split())
    for want in (top_name, "Top classes:", "Grad-CAM", "Research/teaching aid - not a diagnosis", "dermlens_ham10000.safetensors"):
        check(want in cap, "figure caption lacks %r: %s" % (want, cap))
    f = read_png(fig)
    gap = max(8, W // 20)
    check(f[0] == 2 * W + 3 * gap and f[1] > H + 3 * gap + 40, "figure %dx%d" % (f[0], f[1]))
    left = b"".join(f[4][gap + y][3 * gap:3 * (gap + W)] for y in range(H))
    right = b"".join(f[4][gap + y][3 * (2 * gap + W):3 * (2 * gap + 2 * W)] for y in range(H))
    check(left == bytes(px), "figure: the left panel is not the picture")
    check(right != left, "figure: the right panel shows no overlay")
    caption_rows = f[4][H + 2 * gap:]
    dark = sum(1 for row in caption_rows for i in range(0, len(row), 3) if row[i] < 100)
    check(dark > 500, "figure: no caption text drawn (%d dark pixels)" % dark)
    # smooth (default) against bilinear maps
    r = run("explain", pic, "-m", model, "--map", m2, "--upsample", "bilinear")
    check(r.returncode == 0, "explain --upsample bilinear: " + r.stderr[-300:])
    k_smooth, k_bilinear = kinks(read_png(m1)), kinks(read_png(m2))
    check(k_bilinear > 3 * k_smooth, "kinks: bilinear %.1f, smooth %.1f" % (k_bilinear, k_smooth))
    check(run("explain", pic, "-m", model, "--map", m2, "--upsample", "cubic").returncode == 2,
          "--upsample cubic accepted")
    # the outline leaves the picture as it is away from the contour
    r = run("explain", pic, "-m", model, "-o", ovo, "--outline")
    check(r.returncode == 0, "explain --outline: " + r.stderr[-300:])
    r = run("explain", pic, "-m", model, "-o", os.path.join(tmp, "plain.png"), "--alpha", "0")
    a, b = read_png(ovo), read_png(os.path.join(tmp, "plain.png"))
    n = a[0] * a[1] * 3 if a[:2] == b[:2] else 1
    changed = sum(1 for ra, rb in zip(a[4], b[4]) for x, y in zip(ra, rb) if abs(x - y) > 24) / n
    check(0.002 < changed < 0.2, "outline changes %.3f of the overlay's samples" % changed)
    print("explain: smooth map kinks %.1f (bilinear %.1f); outline changes %.1f %%; figure %dx%d"
          % (k_smooth, k_bilinear, 100 * changed, f[0], f[1]))
finally:
    shutil.rmtree(tmp)

# Training interrupted by SIGINT and by SIGKILL (issue 8, item 4): a tiny run on
# tests/data/sample is interrupted by SIGINT after its first checkpoint, resumed,
# interrupted again by SIGKILL after its first stage-2 checkpoint, and resumed to
# the end. After each kill the output model is absent or complete and valid
# (never partial) and the checkpoint is a complete file that --resume picks up;
# the final model equals an uninterrupted run with the same seed and threads in
# every tensor byte and every metadata field except the provenance (which
# records the command line, with its --resume and output path).
import signal, struct, time

def safetensors_check(path):
    """(ok, header): the file is complete: header fits, parses, and the
    tensors tile the data section exactly."""
    data = open(path, "rb").read()
    if len(data) < 8:
        return False, None
    hl = struct.unpack("<Q", data[:8])[0]
    if 8 + hl > len(data):
        return False, None
    try:
        hdr = json.loads(data[8:8 + hl])
    except ValueError:
        return False, None
    spans = sorted(tuple(v["data_offsets"]) for k, v in hdr.items() if k != "__metadata__")
    end = 0
    for b, e in spans:
        if b != end:
            return False, hdr
        end = e
    return end == len(data) - 8 - hl, hdr

def model_payload(path):
    data = open(path, "rb").read()
    hl = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + hl])
    hdr["__metadata__"].pop("provenance", None)
    return hdr, data[8 + hl:]

def ckpt_stage(path):
    try:
        ok, hdr = safetensors_check(path)
        return json.loads(hdr["__metadata__"]["state"])["stage"] if ok else 0
    except (OSError, KeyError, TypeError, ValueError):
        return 0

sample = os.path.join(src, "tests", "data", "sample")
backbone = os.path.join(src, "weights", "mobilenet_v2_imagenet.safetensors")
tmp = tempfile.mkdtemp()
try:
    def train_args(out):
        # tiny: one image per class, a late cut (cheap stage 2), one thread
        return ["train", "--backbone", backbone, "--train", sample, "--val", sample, "-o", out,
                "--epochs-head", "3", "--epochs", "3", "--views", "1", "--batch", "8", "--threads", "1",
                "--seed", "7", "--max-per-class", "1", "--patience", "0",
                "--cut", "MobilenetV2/expanded_conv_15/add"]
    t0 = time.time()
    ref = os.path.join(tmp, "ref.safetensors")
    r = run(*train_args(ref))
    check(r.returncode == 0 and os.path.exists(ref), "uninterrupted training failed: " + r.stderr[-500:])
    out = os.path.join(tmp, "model.safetensors")
    ckpt = out + ".ckpt"
    # (signal, stage whose checkpoint triggers it, resume?)
    for sig, want_stage, resume in ((signal.SIGINT, 1, False), (signal.SIGKILL, 2, True)):
        name = signal.Signals(sig).name
        log = open(os.path.join(tmp, "train-%s.log" % name), "w+")
        p = subprocess.Popen([exe, *train_args(out), *(["--resume"] if resume else [])],
                             stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 300
        sent = False
        while p.poll() is None and time.time() < deadline:
            if ckpt_stage(ckpt) >= want_stage:
                p.send_signal(sig)
                sent = True
                break
            time.sleep(0.002)
        if not sent:
            p.kill()
        rc = p.wait()
        check(sent and rc == -sig, "%s: run ended with %s before a stage-%d checkpoint" % (name, rc, want_stage))
        # the model file is absent or whole, never partial
        if os.path.exists(out):
            ok, _ = safetensors_check(out)
            check(ok and run("info", out).returncode == 0, "%s left a damaged model file" % name)
        ok, hdr = safetensors_check(ckpt)
        check(ok and hdr["__metadata__"].get("format") == "dermlens-checkpoint",
              "%s: checkpoint is not a complete checkpoint file" % name)
        check(ckpt_stage(ckpt) >= want_stage, "%s: checkpoint not in stage %d" % (name, want_stage))
    r = run(*train_args(out), "--resume")
    check(r.returncode == 0, "resume failed: " + r.stderr[-500:])
    check("resuming after epoch" in r.stderr and "no usable checkpoint" not in r.stderr,
          "resume did not continue from the checkpoint: " + r.stderr[-500:])
    if os.path.exists(out) and os.path.exists(ref):
        h1, d1 = model_payload(ref)
        h2, d2 = model_payload(out)
        check(d1 == d2, "resumed model's tensor data differs from the uninterrupted run's")
        check(h1 == h2, "resumed model's header (without provenance) differs")
    print("training interrupted by SIGINT and SIGKILL, resumed: %.0f s" % (time.time() - t0))
finally:
    shutil.rmtree(tmp)
print("cli checks:", "FAILED %d" % fail if fail else "all passed")
sys.exit(1 if fail else 0)
