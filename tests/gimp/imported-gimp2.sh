#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# The plug-in on an imported model in real GIMP 2.10 (issue 20, item 4): a
# torchvision mobilenet_v3_small (random weights, seeded, 5 classes, nothing
# downloaded) exported to ONNX, imported with `dermlens import --classes`,
# then Classify on a lesion image with DERMLENS_MODEL pointing at it. Checks:
# the layer group with the overlay, legend, label and its background; the
# parasite names the imported model, its 5 class names in the file's order
# and probabilities summing to 1; the saliency overlay covers the region and
# is neither empty nor everywhere.
# Env (meson): DL_BUILD_ROOT, DL_SOURCE_ROOT. Exit 0 pass, 1 fail, 77 skip (no
# GIMP 2.10, plug-in not built for it, no torch / torchvision in /usr/bin/python3).
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=${DL_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
build=${DL_BUILD_ROOT:?DL_BUILD_ROOT not set}
plugin=${DL_PLUGIN_BIN:-$build/plugin/dermlens}
cli=$build/cli/dermlens
py=/usr/bin/python3
command -v gimp-console-2.10 >/dev/null 2>&1 || { echo "SKIP: gimp-console-2.10 not installed"; exit 77; }
[ -x "$plugin" ] && [ -x "$cli" ] || { echo "SKIP: plug-in or CLI not built"; exit 77; }
if command -v ldd >/dev/null 2>&1 && ! ldd "$plugin" | grep -q 'libgimp-2.0'; then
    echo "SKIP: $plugin is not built against GIMP 2.10"; exit 77
fi
[ -x "$py" ] && "$py" -c 'import torch, torchvision' 2>/dev/null || { echo "SKIP: no torch / torchvision in $py"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dermlens-imported.XXXXXX")
failed=1
cleanup() { if [ "$failed" != 0 ]; then echo "work folder kept: $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
classes='["alpha lesion", "beta lesion", "gamma lesion", "delta lesion", "epsilon lesion"]'
printf '%s\n' "$classes" >"$tmp/classes.json"
"$py" - "$tmp/m.onnx" <<'EOF' || { echo "FAIL: export"; exit 1; }
import sys, torch, torchvision
torch.manual_seed(20)
m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=5)
with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is exercised
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
m.eval()
torch.onnx.export(m, torch.randn(1, 3, 224, 224), sys.argv[1], opset_version=13,
                  input_names=["input"], output_names=["logits"])
EOF
"$cli" import "$tmp/m.onnx" -o "$tmp/m.safetensors" --classes "$tmp/classes.json" \
    --name "mobilenet_v3_small (random weights)" >"$tmp/import.log" 2>&1 || { echo "FAIL: import"; cat "$tmp/import.log"; exit 1; }

mkdir -p "$tmp/home" "$tmp/plug-ins/dermlens"
cp "$plugin" "$tmp/plug-ins/dermlens/dermlens"
export HOME=$tmp/home GIMP2_DIRECTORY=$tmp/gimp2 DERMLENS_MODEL=$tmp/m.safetensors
printf '(plug-in-path "${gimp_dir}/plug-ins:${gimp_plug_in_dir}/plug-ins:%s/plug-ins")\n' "$tmp" >"$tmp/gimprc"
f=$src/tests/data/lesions/ISIC_0031711.jpg
# Script-Fu writes what it sees: the parasite, each child of the group
# (name, offsets, size) and the overlay as a PNG.
timeout "${DL_GIMP_TIMEOUT:-600}" gimp-console-2.10 -i -d --gimprc="$tmp/gimprc" -b "
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE \"$f\" \"$f\")))
       (layer (vector-ref (cadr (gimp-image-get-layers img)) 0)))
  (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer \"\" \"gradcam\" 60 3 TRUE TRUE 0)
  (let ((port (open-output-file \"$tmp/facts.txt\"))
        (group (vector-ref (cadr (gimp-image-get-layers img)) 0)))
    (display (string-append \"image \" (number->string (car (gimp-image-width img))) \" \"
                                 (number->string (car (gimp-image-height img))) \"\\n\") port)
    (for-each (lambda (c)
                (let ((off (gimp-drawable-offsets c)))
                  (display (string-append \"child\\t\" (car (gimp-item-get-name c)) \"\\t\"
                                               (number->string (car off)) \" \" (number->string (cadr off)) \" \"
                                               (number->string (car (gimp-drawable-width c))) \" \"
                                               (number->string (car (gimp-drawable-height c))) \"\\n\") port)
                  (if (let ((n (car (gimp-item-get-name c)))) (and (>= (string-length n) 8) (string=? (substring n 0 8) \"Saliency\")))
                      (let ((dup (car (gimp-image-new (car (gimp-drawable-width c)) (car (gimp-drawable-height c)) RGB))))
                        (let ((l (car (gimp-layer-new-from-drawable c dup))))
                          (gimp-image-insert-layer dup l 0 0)
                          (gimp-layer-set-offsets l 0 0)
                          (file-png-save2 RUN-NONINTERACTIVE dup l \"$tmp/overlay.png\" \"overlay.png\" 0 9 0 0 0 0 0 0 0)
                          (gimp-image-delete dup))))))
              (vector->list (cadr (gimp-item-get-children group))))
    (close-output-port port))
  (let ((port (open-output-file \"$tmp/parasite.json\")))
    (display (caddr (car (gimp-image-get-parasite img \"dermlens-result\"))) port)
    (close-output-port port))
  (gimp-image-delete img))" -b '(gimp-quit 0)' </dev/null >"$tmp/gimp.log" 2>&1
[ -s "$tmp/parasite.json" ] && [ -s "$tmp/facts.txt" ] || { echo "FAIL: GIMP run"; tail -20 "$tmp/gimp.log"; exit 1; }

"$py" - "$tmp" "$classes" <<'EOF' && failed=0
import json, os, struct, sys, zlib
tmp, want = sys.argv[1], json.loads(sys.argv[2])
bad = []
def check(c, msg):
    if not c:
        bad.append(msg)
res = json.load(open(os.path.join(tmp, "parasite.json")))
names = [c["name"] for c in res["classes"]]
check(sorted(names) == sorted(want), "parasite classes %r, imported %r" % (names, want))
probs = [c["probability"] for c in res["classes"]]
check(abs(sum(probs) - 1) < 1e-4 and len(probs) == 5, "probabilities %r" % probs)
check(res["model"]["name"] == "mobilenet_v3_small (random weights)", "model %r" % res["model"])
check(res["saliency"]["available"] is True, "saliency %r" % res["saliency"])
lines = open(os.path.join(tmp, "facts.txt")).read().splitlines()
iw, ih = map(int, lines[0].split()[1:])
kids = {l.split("\t")[1]: list(map(int, l.split("\t")[2].split())) for l in lines[1:]}
check("Saliency (Grad-CAM)" in kids and kids["Saliency (Grad-CAM)"] == [0, 0, iw, ih],
      "overlay layer %r on a %dx%d image" % (kids.get("Saliency (Grad-CAM)"), iw, ih))
check(any(k.startswith("Legend") for k in kids) and "Labels" in kids and "Text background" in kids,
      "group children %r" % list(kids))
# The overlay's alpha: PNG RGBA 8-bit, non-interlaced (as file-png-save2 wrote it).
data = open(os.path.join(tmp, "overlay.png"), "rb").read()
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, t = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if t == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif t == b"IDAT":
        idat += body
    pos += 12 + n
check((w, h, depth, ctype) == (iw, ih, 8, 6), "overlay PNG %dx%d depth %d type %d" % (w, h, depth, ctype))
raw, stride, prev, alpha = zlib.decompress(idat), w * 4, bytearray(w * 4), []
for y in range(h):
    ft, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = row[i - 4] if i >= 4 else 0
        b, c = prev[i], prev[i - 4] if i >= 4 else 0
        if ft == 1: row[i] = (row[i] + a) & 255
        elif ft == 2: row[i] = (row[i] + b) & 255
        elif ft == 3: row[i] = (row[i] + (a + b) // 2) & 255
        elif ft == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    alpha += row[3::4]
    prev = row
visible = sum(1 for a in alpha if a > 5) / len(alpha)
strong = sum(1 for a in alpha if a > 128) / len(alpha)
check(0.02 < visible < 0.98 and 0.005 < strong < 0.9, "overlay trivial: visible %.3f, strong %.3f" % (visible, strong))
print("imported model in GIMP 2.10: top %s %.3f, overlay visible on %.1f %% of the region (alpha > 128 on %.1f %%), "
      "children %s" % (res["top_class"], res["top_probability"], 100 * visible, 100 * strong, ", ".join(kids)))
for m in bad:
    print("FAIL:", m)
sys.exit(1 if bad else 0)
EOF
exit $failed
