#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Retake docs/screenshot-gimp3.png: GIMP 3.0 (full GUI, in the Debian 13
# chroot of tests/gimp/setup-gimp3-chroot.sh) on a virtual X server runs
# Classify Lesion on a shipped sample melanoma and shows the result.
#
#   docs/screenshot-gimp3.sh [OUT.png]
#
# Needs root (chroot), Xvfb and imagemagick (import) on this machine; the
# chroot is made or reused and the plug-in rebuilt there from this source
# tree (as the gimp3.0 test does). The 224 px sample is shown at its native
# size, like docs/screenshot-gimp.sh does for GIMP 2.10.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/docs/screenshot-gimp3.png}
ROOT=${DL_GIMP3_CHROOT:-/var/tmp/dermlens-gimp3-root}
export DL_GIMP3_CHROOT=$ROOT
display_no=${DL_XVFB_DISPLAY:-:96}
model=${DERMLENS_MODEL:-dermlens_ham10000.safetensors}

for tool in Xvfb import chroot; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done
# One user of the chroot at a time (the gimp3.0 test takes the same lock).
exec 9>"${ROOT}.lock"
flock -w 1500 9 || { echo "chroot $ROOT is locked" >&2; exit 1; }
"$src/tests/gimp/setup-gimp3-chroot.sh" all "$src" >"${ROOT}.setup.log" 2>&1 ||
    { tail -20 "${ROOT}.setup.log" >&2; exit 1; }

ctmp=$(mktemp -d "$ROOT/tmp/dermlens-shot3.XXXXXX")
tin=${ctmp#"$ROOT"}   # the same folder as seen inside the chroot
xvfb_pid=
gimp_pid=
cleanup() {
    [ -n "$gimp_pid" ] && kill "$gimp_pid" 2>/dev/null
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null
    rm -rf "$ctmp"
}
trap cleanup EXIT INT TERM

mkdir -p "$ctmp/home" "$ctmp/gimp3/plug-ins/dermlens"
cp "$ROOT/build/dermlens/plugin/dermlens" "$ctmp/gimp3/plug-ins/dermlens/dermlens"
cp "$src/tests/data/sample/mel/ISIC_0031711.jpg" "$ctmp/sample.jpg"
echo '(show-welcome-dialog no)' >"$ctmp/gimp3/gimprc"

# The X server runs here; GIMP in the chroot reaches it through the
# abstract-namespace socket (the chroot shares the network namespace).
Xvfb "$display_no" -screen 0 1024x768x24 -nolisten tcp >"$ctmp/xvfb.log" 2>&1 &
xvfb_pid=$!
sleep 1

run_gimp3() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME="$tin/home" DISPLAY="$display_no" \
        GIMP3_DIRECTORY="$tin/gimp3" DERMLENS_MODEL="/src/dermlens/weights/$model" \
        gimp-3.0 --no-splash --batch-interpreter=python-fu-eval "$@"
}
# A first start and quit writes GIMP's default session (single window with
# its docks); that window is then made to fill the screen, as GIMP 2.10's
# does in the other shot.
run_gimp3 --quit -b 'pass' >"$ctmp/gimp-first.log" 2>&1 </dev/null
if [ -f "$ctmp/gimp3/sessionrc" ]; then
    awk '/factory-entry "gimp-single-image-window"/ { inwin = 1 }
         inwin && /\(position / { sub(/\(position [-0-9]+ [-0-9]+\)/, "(position 0 0)") }
         inwin && /\(size / { sub(/\(size [0-9]+ [0-9]+\)/, "(size 1024 768)"); inwin = 0 }
         { print }' "$ctmp/gimp3/sessionrc" >"$ctmp/sessionrc" && mv "$ctmp/sessionrc" "$ctmp/gimp3/sessionrc"
fi

# Runs once the GUI is up; writes a marker when the plug-in has finished and
# the display is open.
cat >"$ctmp/shot.py" <<EOP
import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp, Gio
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("$tin/sample.jpg"))
img.clean_all()
proc = Gimp.get_pdb().lookup_procedure("plug-in-dermlens-classify")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [img.get_layers()[0]])
for k, v in {"model-path": "", "saliency-method": "gradcam", "opacity": 60.0, "top-k": 3,
             "add-labels": True, "add-legend": True}.items():
    cfg.set_property(k, v)
res = proc.run(cfg)
Gimp.Display.new(img)
Gimp.displays_flush()
try:
    # the pointer off the canvas (no brush outline) and off the buttons (no tooltip)
    gi.require_version('Gdk', '3.0')
    from gi.repository import Gdk
    Gdk.init([])
    dpy = Gdk.Display.get_default()
    dpy.get_default_seat().get_pointer().warp(dpy.get_default_screen(), 700, 50)
    dpy.flush()
except Exception as e:
    print("pointer not moved:", e)
open("$tin/ready", "w").write(str(res.index(0)))
EOP
run_gimp3 -b - <"$ctmp/shot.py" >"$ctmp/gimp.log" 2>&1 &
gimp_pid=$!

i=0
while [ ! -f "$ctmp/ready" ]; do
    i=$((i + 1))
    if [ $i -gt 360 ] || ! kill -0 "$gimp_pid" 2>/dev/null; then
        echo "GIMP 3 did not finish (log below)" >&2; cat "$ctmp/gimp.log" >&2; exit 1
    fi
    sleep 0.5
done
grep -q SUCCESS "$ctmp/ready" || { echo "the plug-in failed: $(cat "$ctmp/ready")" >&2; cat "$ctmp/gimp.log" >&2; exit 1; }
sleep 6   # let the canvas and layer previews render
DISPLAY=$display_no import -window root "$out"
echo "wrote $out"
