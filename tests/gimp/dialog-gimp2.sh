#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# The DermLens dialogs in real GIMP 2.10 on a virtual X server (Xvfb):
# Classify Lesion is run interactively; with DERMLENS_DIALOG_TEST set, each
# dialog writes what it shows to a file and answers itself (OK / Close).
# check_dialogs.py then checks the model file chooser, readable saliency
# names with tooltips, the disclaimer in both dialogs and unique mnemonics.
# Env (meson): DL_BUILD_ROOT, DL_SOURCE_ROOT, DL_TEST_DATA.
# Exit: 0 pass, 1 fail, 77 skip (no GIMP 2.10 / Xvfb / plug-in for 2.10).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${DL_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
build=${DL_BUILD_ROOT:?DL_BUILD_ROOT not set}
data=${DL_TEST_DATA:-$src/tests/data}
plugin=$build/plugin/dermlens
command -v gimp-console-2.10 >/dev/null 2>&1 || { echo "SKIP: gimp-console-2.10 not installed"; exit 77; }
command -v xvfb-run >/dev/null 2>&1 || { echo "SKIP: xvfb-run not installed (apt-get install xvfb xauth)"; exit 77; }
[ -x "$plugin" ] && ldd "$plugin" | grep -q 'libgimp-2.0' || { echo "SKIP: no GIMP 2.10 plug-in built"; exit 77; }
if [ -z "${DERMLENS_MODEL:-}" ]; then
    for m in "$src/weights/dermlens_ham10000.safetensors" "$src/weights/mobilenet_v2_imagenet.safetensors"; do
        [ -f "$m" ] && { DERMLENS_MODEL=$m; break; }
    done
fi
export DERMLENS_MODEL

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dermlens-dialog2.XXXXXX")
failed=1
cleanup() { if [ "${DL_KEEP_TMP:-0}" = 1 ] || [ "$failed" != 0 ]; then echo "work folder kept: $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
mkdir -p "$tmp/home" "$tmp/plug-ins/dermlens"
cp "$plugin" "$tmp/plug-ins/dermlens/dermlens"
cat >"$tmp/gimprc" <<EOG
(plug-in-path "\${gimp_dir}/plug-ins:\${gimp_plug_in_dir}/plug-ins:$tmp/plug-ins")
EOG
f=$data/lesions/ISIC_0031711.jpg
script="(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE \"$f\" \"$f\")))
               (layer (vector-ref (cadr (gimp-image-get-layers img)) 0)))
          (plug-in-dermlens-classify RUN-INTERACTIVE img layer \"\" \"gradcam\" 60 3 TRUE TRUE 0)
          (gimp-image-delete img))"
HOME=$tmp/home GIMP2_DIRECTORY=$tmp/gimp2 DERMLENS_DIALOG_TEST=$tmp/dialogs.txt \
    timeout 300 xvfb-run -a gimp-console-2.10 -i -d --gimprc="$tmp/gimprc" -b "$script" -b '(gimp-quit 0)' \
    </dev/null >"$tmp/gimp.log" 2>&1
python3 "$here/check_dialogs.py" "$tmp/dialogs.txt" "$tmp/gimp.log"
failed=$?
[ $failed = 0 ] || grep -v '^$' "$tmp/gimp.log" | tail -15
[ $failed = 0 ] && echo "PASS: GIMP 2.10 dialogs"
exit $failed
