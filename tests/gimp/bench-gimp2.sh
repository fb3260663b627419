#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Measure one classify of a big layer (default 4000 x 3000, a lesion image
# scaled up) in GIMP 2.10: wall time from plug-in start to layers added, and
# the plug-in's peak RSS (printed by the plug-in when DERMLENS_STATS is set).
# Usage: DL_BUILD_ROOT=build bench-gimp2.sh [WIDTH HEIGHT [METHOD]]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${DL_BUILD_ROOT:?DL_BUILD_ROOT not set}
w=${1:-4000} h=${2:-3000} method=${3:-gradcam}
plugin=${DL_PLUGIN_BIN:-$build/plugin/dermlens}
if [ -z "${DERMLENS_MODEL:-}" ]; then
    for m in "$src/weights/dermlens_ham10000.safetensors" "$src/weights/mobilenet_v2_imagenet.safetensors"; do
        [ -f "$m" ] && { DERMLENS_MODEL=$m; break; }
    done
fi
export DERMLENS_MODEL DERMLENS_STATS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dermlens-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/plug-ins/dermlens"
cp "$plugin" "$tmp/plug-ins/dermlens/dermlens"
export HOME=$tmp/home GIMP2_DIRECTORY=$tmp/gimp2
printf '(plug-in-path "${gimp_dir}/plug-ins:${gimp_plug_in_dir}/plug-ins:%s/plug-ins")\n' "$tmp" >"$tmp/gimprc"
f=$src/tests/data/lesions/ISIC_0031711.jpg
timeout 900 gimp-console-2.10 -i -d --gimprc="$tmp/gimprc" -b "
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE \"$f\" \"$f\")))
       (layer (vector-ref (cadr (gimp-image-get-layers img)) 0)))
  (gimp-image-scale img $w $h)
  (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer \"\" \"$method\" 60 3 TRUE TRUE 0)
  (gimp-image-delete img))" -b '(gimp-quit 0)' </dev/null >"$tmp/log" 2>&1 || true
grep -E 'dermlens-stats|error' "$tmp/log" || { cat "$tmp/log"; exit 1; }
