#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Retake docs/screenshot-gimp.png: GIMP 2.10 (full GUI) on a virtual X server
# runs Classify Lesion on a shipped sample melanoma and shows the result.
#
#   docs/screenshot-gimp.sh [BUILD_DIR] [OUT.png]
#
# BUILD_DIR holds a GIMP 2.10 plug-in build (default build); OUT defaults to
# docs/screenshot-gimp.png. Needs gimp (2.10), xvfb and imagemagick (import).
# The 224 px sample is shown at its native size (the labels are sized to be
# readable at 100 % on a 224 px region); DL_SHOT_SCALE=448 scales it first.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
out=${2:-$src/docs/screenshot-gimp.png}
image=$src/tests/data/sample/mel/ISIC_0031711.jpg
display_no=${DL_XVFB_DISPLAY:-:97}

for tool in gimp-2.10 Xvfb import; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done
[ -x "$build/plugin/dermlens" ] || { echo "no plug-in in $build/plugin" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dermlens-shot.XXXXXX")
xvfb_pid=
gimp_pid=
cleanup() {
    [ -n "$gimp_pid" ] && kill "$gimp_pid" 2>/dev/null
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

mkdir -p "$tmp/home" "$tmp/plug-ins/dermlens"
cp "$build/plugin/dermlens" "$tmp/plug-ins/dermlens/dermlens"
cat >"$tmp/gimprc" <<EOF
(plug-in-path "\${gimp_dir}/plug-ins:\${gimp_plug_in_dir}/plug-ins:$tmp/plug-ins")
EOF
export HOME=$tmp/home GIMP2_DIRECTORY=$tmp/gimp2
export DERMLENS_MODEL=${DERMLENS_MODEL:-$src/weights/dermlens_ham10000.safetensors}

Xvfb "$display_no" -screen 0 1024x768x24 -nolisten tcp >"$tmp/xvfb.log" 2>&1 &
xvfb_pid=$!
sleep 1
export DISPLAY=$display_no

# The batch script runs once the GUI is up; it writes a marker file when the
# plug-in has finished and the display is open.
script="(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE \"$image\" \"$image\")))
               (layer (vector-ref (cadr (gimp-image-get-layers img)) 0)))
          ${DL_SHOT_SCALE:+(gimp-image-scale img $DL_SHOT_SCALE $DL_SHOT_SCALE)}
          (gimp-image-clean-all img)
          (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer \"\" \"gradcam\" 60 3 TRUE TRUE 0)
          (gimp-display-new img)
          (gimp-displays-flush)
          (gimp-file-save RUN-NONINTERACTIVE img layer \"$tmp/ready.xcf\" \"$tmp/ready.xcf\"))"
gimp-2.10 --no-splash --gimprc="$tmp/gimprc" -b "$script" >"$tmp/gimp.log" 2>&1 &
gimp_pid=$!

i=0
while [ ! -f "$tmp/ready.xcf" ]; do
    i=$((i + 1))
    if [ $i -gt 240 ] || ! kill -0 "$gimp_pid" 2>/dev/null; then
        echo "GIMP did not finish (log below)" >&2; cat "$tmp/gimp.log" >&2; exit 1
    fi
    sleep 0.5
done
sleep 4   # let the canvas and layer previews render
import -window root "$out"
echo "wrote $out"
