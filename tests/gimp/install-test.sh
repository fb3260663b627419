#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# `meson install` puts the plug-in where the installed GIMP looks and the
# models where the plug-in looks, and GIMP finds it there.
#
#  1. meson install --destdir TMP/dest (a throw-away DESTDIR: nothing on the
#     system is touched).
#  2. The plug-in must be at DEST/<gimplibdir>/plug-ins/dermlens/dermlens,
#     gimplibdir from `pkg-config --variable=gimplibdir gimp-2.0|gimp-3.0`
#     (unless -Dgimp_plugin_dir overrides it), and the shipped models in
#     DEST/<prefix>/<datadir>/dermlens, the folder compiled into the plug-in
#     as its model folder.
#  3. GIMP 2.10 is started with GIMP2_PLUGINDIR pointing at a copy of its
#     own lib folder whose plug-ins/dermlens is the DESTDIR one, and the
#     stock gimprc (no plug-in-path of ours): GIMP's default search path
#     (${gimp_plug_in_dir}/plug-ins) must find the procedure and run it,
#     with no DERMLENS_MODEL and no model argument.
# Env (meson): DL_BUILD_ROOT, DL_SOURCE_ROOT, DL_TEST_DATA. DL_KEEP_TMP=1 keeps the folder.
# Exit: 0 pass, 1 fail, 77 skip (no plug-in built).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${DL_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
build=${DL_BUILD_ROOT:?DL_BUILD_ROOT not set}
data=${DL_TEST_DATA:-$src/tests/data}
plugin=$build/plugin/dermlens
[ -x "$plugin" ] || { echo "SKIP: plug-in not built"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 needed"; exit 77; }
if ldd "$plugin" | grep -q 'libgimp-3.0'; then api=3.0; else api=2.0; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dermlens-install.XXXXXX")
failed=1
cleanup() { if [ "${DL_KEEP_TMP:-0}" = 1 ] || [ "$failed" != 0 ]; then echo "work folder kept: $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
dest=$tmp/dest
bad=0
fail() { echo "FAIL: $*"; bad=1; }

# What meson was configured with.
opts=$(meson introspect --buildoptions "$build") || { echo "FAIL: meson introspect"; exit 1; }
opt() { printf '%s' "$opts" | python3 -c "import json,sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name']=='$1'))"; }
prefix=$(opt prefix)
datadir=$(opt datadir)
override=$(opt gimp_plugin_dir)
case "$datadir" in /*) modeldir=$datadir/dermlens ;; *) modeldir=$prefix/$datadir/dermlens ;; esac
gimplibdir=$(pkg-config --variable=gimplibdir "gimp-$api")
if [ -n "$override" ]; then
    case "$override" in /*) pdir=$override ;; *) pdir=$prefix/$override ;; esac
else
    pdir=$gimplibdir/plug-ins
fi
echo "GIMP $api: gimplibdir $gimplibdir; expect the plug-in in $pdir/dermlens, the models in $modeldir"

# 1. Install into the DESTDIR (the build is up to date: meson test built it).
if ! meson install -C "$build" --destdir "$dest" --no-rebuild >"$tmp/install.log" 2>&1; then
    tail -20 "$tmp/install.log"; fail "meson install"; exit 1
fi

# 2. Where the files landed.
[ -x "$dest$pdir/dermlens/dermlens" ] || fail "no plug-in at $pdir/dermlens/dermlens (installed: $(cd "$dest" && find . -name dermlens -type f | tr '\n' ' '))"
if [ -z "$override" ]; then
    # GIMP's own search path: ${gimp_plug_in_dir}/plug-ins, gimp_plug_in_dir = gimplibdir.
    [ "$pdir" = "$gimplibdir/plug-ins" ] || fail "plug-in folder $pdir is not $gimplibdir/plug-ins"
fi
nmodels=0
for m in dermlens_ham10000.safetensors mobilenet_v2_imagenet.safetensors; do
    if [ -f "$src/weights/$m" ]; then
        if cmp -s "$src/weights/$m" "$dest$modeldir/$m"; then nmodels=$((nmodels + 1)); else fail "model $m not installed in $modeldir"; fi
    fi
done
# The plug-in searches exactly that folder (compiled in from the same options).
grep -q -a -F "$modeldir" "$dest$pdir/dermlens/dermlens" || fail "the plug-in does not search $modeldir"
echo "installed: $pdir/dermlens/dermlens, $nmodels model(s) in $modeldir"

# 3. GIMP 2.10 finds the installed plug-in through its default search path.
if [ "$api" = 2.0 ] && command -v gimp-console-2.10 >/dev/null 2>&1; then
    lib=$tmp/gimplib
    mkdir -p "$lib/plug-ins"
    for e in "$gimplibdir"/*; do
        [ "$(basename "$e")" = plug-ins ] || ln -s "$e" "$lib/"
    done
    for e in "$gimplibdir"/plug-ins/*; do
        [ "$(basename "$e")" = dermlens ] || ln -s "$e" "$lib/plug-ins/"
    done
    ln -s "$dest$pdir/dermlens" "$lib/plug-ins/dermlens"
    mkdir -p "$tmp/home"
    out=$tmp/facts.txt
    script="(let* ((f \"$data/lesions/ISIC_0031711.jpg\")
                   (img (car (gimp-file-load RUN-NONINTERACTIVE f f)))
                   (layer (vector-ref (cadr (gimp-image-get-layers img)) 0))
                   (port (open-output-file \"$out\")))
              (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer \"\" \"gradcam\" 60 3 TRUE TRUE 0)
              (display (car (gimp-item-get-name (vector-ref (cadr (gimp-image-get-layers img)) 0))) port)
              (newline port)
              (display (caddr (car (gimp-image-get-parasite img \"dermlens-result\"))) port)
              (close-output-port port)
              (gimp-image-delete img))"
    env -u DERMLENS_MODEL HOME="$tmp/home" GIMP2_DIRECTORY="$tmp/gimp2" GIMP2_PLUGINDIR="$lib" \
        timeout 300 gimp-console-2.10 -i -d -b "$script" -b '(gimp-quit 0)' </dev/null >"$tmp/gimp.log" 2>&1
    if [ -s "$out" ] && head -n 1 "$out" | grep -q '^DermLens: '; then
        echo "GIMP 2.10 ran the installed plug-in: group \"$(head -n 1 "$out")\""
        sed 1d "$out" | python3 -c "import json,sys; r=json.load(sys.stdin); print('model used:', r['model']['file'])"
    else
        fail "GIMP 2.10 did not run the installed plug-in:"; grep -v '^$' "$tmp/gimp.log" | tail -15
    fi
fi
failed=$bad
[ $bad = 0 ] && echo "PASS: install"
exit $bad
