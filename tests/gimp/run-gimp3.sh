#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Real-GIMP test of the DermLens plug-in in GIMP 3.0, headless, inside a
# Debian 13 chroot (made or reused by setup-gimp3-chroot.sh; the project is
# rebuilt there against gimp-3.0).
# Env: DL_SOURCE_ROOT, DL_TEST_DATA (meson), DL_GIMP3_CHROOT (chroot folder),
#      DERMLENS_MODEL (model file name under weights/; default lesion model
#      if present, else ImageNet), DL_KEEP_TMP=1, DL_GIMP_HUGE=1 (also classify
#      a 30000 x 30000 layer: minutes, GBs of GIMP swap).
# Exit: 0 pass, 1 fail, 77 skip (chroot cannot be built: not root / no network).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${DL_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
ROOT=${DL_GIMP3_CHROOT:-/var/tmp/dermlens-gimp3-root}
export DL_GIMP3_CHROOT=$ROOT

command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 needed for the checker"; exit 77; }
# Serialise: two test runs must not build in the same chroot at once.
exec 9>"${ROOT}.lock"
flock -w 1500 9 || { echo "FAIL: chroot $ROOT is locked"; exit 1; }

"$here/setup-gimp3-chroot.sh" all "$src" >"${ROOT}.setup.log" 2>&1
rc=$?
if [ $rc = 77 ]; then
    tail -3 "${ROOT}.setup.log"
    echo "SKIP: the GIMP 3 (Debian 13) chroot cannot be built here; see ${ROOT}.setup.log"
    exit 77
fi
[ $rc = 0 ] || { echo "FAIL: building the project in the chroot failed:"; tail -30 "${ROOT}.setup.log"; exit 1; }

model_name=
if [ -n "${DERMLENS_MODEL:-}" ]; then
    model_name=$(basename "$DERMLENS_MODEL")
else
    for m in dermlens_ham10000.safetensors mobilenet_v2_imagenet.safetensors; do
        [ -f "$ROOT/src/dermlens/weights/$m" ] && { model_name=$m; break; }
    done
fi
[ -n "$model_name" ] && [ -f "$ROOT/src/dermlens/weights/$model_name" ] || { echo "SKIP: no model file"; exit 77; }
cmodel=/src/dermlens/weights/$model_name
echo "model: $model_name"

ctmp=$(mktemp -d "$ROOT/tmp/dermlens-gimp3.XXXXXX")
tmp_in=${ctmp#"$ROOT"}            # the same folder as seen inside the chroot
work=$ctmp/work
failed=1
cleanup() { if [ "${DL_KEEP_TMP:-0}" = 1 ] || [ "$failed" != 0 ]; then echo "work folder kept: $ctmp"; else rm -rf "$ctmp"; fi; }
trap cleanup EXIT
mkdir -p "$work/batch-in" "$work/batch-kill-in" "$ctmp/home" "$ctmp/gimp3/plug-ins/dermlens" "$ctmp/data"
cp -r "$src/tests/data/lesions" "$ctmp/data/"
cp "$ROOT/build/dermlens/plugin/dermlens" "$ctmp/gimp3/plug-ins/dermlens/dermlens"
cp "$here/gimp3-session.py" "$ctmp/session.py"

# Batch to be killed part-way: 40 images (the three lesions under 40 names).
i=0
for n in $(seq -w 0 39); do
    case $((i % 3)) in 0) f=ISIC_0031711;; 1) f=ISIC_0025921;; *) f=ISIC_0029674;; esac
    cp "$src/tests/data/lesions/$f.jpg" "$work/batch-kill-in/img$n.jpg"; i=$((i + 1))
done
chmod a-w "$work/batch-kill-in"/*
klisting() { (cd "$work/batch-kill-in" && ls -la --time-style=+%s . | grep -v ' \.\.$' | sed 1d | awk '{print $1, $5, $6, $7}' && sha256sum ./*); }
klisting >"$work/batch-kill-in.sha256"

run_chroot() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME="$tmp_in/home" \
        GIMP3_DIRECTORY="$tmp_in/gimp3" DERMLENS_MODEL="$cmodel" \
        DL_WORK="$tmp_in/work" DL_DATA="$tmp_in/data" "$@"
}
# The undo helper (see undo-probe.c), built in the chroot, LD_PRELOADed into
# gimp-console-3.0.
cp "$here/undo-probe.c" "$ctmp/undo-probe.c"
if ! run_chroot sh -c "cc -shared -fPIC -O1 -o $tmp_in/undo-probe.so $tmp_in/undo-probe.c \$(pkg-config --cflags --libs gobject-2.0) -ldl" \
        >"$ctmp/probe-build.log" 2>&1; then
    echo "FAIL: cannot build the undo helper:"; cat "$ctmp/probe-build.log"; exit 1
fi
gimp3() {
    # $1 = phase; GIMP 3's exit status is meaningful (0 ok, 64/70 errors).
    run_chroot DL_PHASE="$1" LD_PRELOAD="$tmp_in/undo-probe.so" DL_UNDO_PROBE_LOG="$tmp_in/work/undo-probe.log" \
        ${DERMLENS_STATS:+DERMLENS_STATS=1} timeout "${DL_GIMP_TIMEOUT:-900}" gimp-console-3.0 -i --quit \
        --batch-interpreter=python-fu-eval -b - <"$ctmp/session.py" >"$ctmp/$1.log" 2>&1
    rc=$?
    [ $rc = 0 ] || { echo "FAIL: GIMP 3 $1 phase exited $rc:"; grep -v '^$' "$ctmp/$1.log" | tail -25; }
    return $rc
}

bad=0
# Batch input, a dataset as `dermlens review` takes it: class subfolders, an
# XCF (only GIMP opens it; made by GIMP) two folders below its class, a
# blank PNG, a broken JPEG outside any class folder; and a labels CSV for the second run.
mkdir -p "$work/batch-in/mel" "$work/batch-in/nv" "$work/batch-in/bkl/nested/deeper"
cp "$src/tests/data/lesions/ISIC_0031711.jpg" "$work/batch-in/mel/"
cp "$src/tests/data/lesions/ISIC_0025921.jpg" "$work/batch-in/nv/"
printf '\377\330\377\340 this is not a JPEG' >"$work/batch-in/broken.jpg"
# a blank image: flagged out of distribution, the warning in its label box
python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import review_data; open(sys.argv[2], "wb").write(review_data.png_bytes(96, 96, (255, 255, 255)))' \
    "$src/tests/review" "$work/batch-in/nv/blank.png"
gimp3 makexcf || bad=1
printf 'image_id,dx\nISIC_0031711,nv\nISIC_0025921,nv\nISIC_0029674,bkl\nbroken,mel\n' >"$work/labels.csv"
find "$work/batch-in" -type f -exec chmod a-w {} +
listing() { (cd "$work/batch-in" && find . | sort | xargs ls -lad --time-style=+%s | awk '{print $1, $5, $6, $7}' && find . -type f | sort | xargs sha256sum); }
listing >"$work/batch-in.sha256"

start=$(date +%s)
gimp3 run || bad=1
echo "GIMP 3 session 1: $(( $(date +%s) - start )) s"
listing >"$work/batch-in-after.sha256"
# The review page in a real browser on this machine (when Chromium is
# installed): thumbnails, order, filters and the matrix against the CSV.
python3 "$src/tests/review/browser_test.py" --page "$work/batch-out" "$work/batch.csv"
case $? in 0|77) ;; *) echo "FAIL: the batch's review page in the browser"; bad=1;; esac
for c in rgb selection grey u16 offset empty float blank skin big; do
    if [ -f "$work/$c-ref.png" ]; then
        run_chroot /build/dermlens/cli/dermlens classify --json -k 0 -m "$cmodel" \
            "$tmp_in/work/$c-ref.png" >"$work/$c-cli.json" 2>>"$ctmp/cli.log" || bad=1
    fi
done
gimp3 inspect || bad=1
echo "GIMP 3 sessions: $(( $(date +%s) - start )) s"

# Kill the plug-in (kill -9 on its pid) while it runs a batch over 40 images,
# once the CSV has at least 3 rows; the CSV must stay valid.
kstart=$(date +%s)
gimp3 killbatch &
gpid=$!
n=0 killed=
while [ $n -lt 3000 ] && kill -0 $gpid 2>/dev/null; do
    rows=$(( $(cat "$work/batch-kill.csv" 2>/dev/null | wc -l) - 1 ))
    if [ $rows -ge 3 ]; then
        # Our own copy of the plug-in, found by its unique path (as seen in the chroot).
        ppid=$(pgrep -f "^$tmp_in/gimp3/plug-ins/dermlens/dermlens " | head -n 1)
        if [ -n "$ppid" ]; then kill -9 "$ppid" && killed=$ppid; fi
        break
    fi
    sleep 0.2; n=$((n + 1))
done
wait $gpid   # GIMP reports the crashed plug-in; the phase itself must succeed
[ $? = 0 ] || bad=1
echo "batch kill: plug-in pid ${killed:-none} killed with $(( $(wc -l <"$work/batch-kill.csv") - 1 )) rows on disk, $(( $(date +%s) - kstart )) s"
[ -n "$killed" ] || { echo "FAIL: the batch plug-in was not killed (finished too early?)"; bad=1; }
klisting >"$work/batch-kill-in-after.sha256"

if [ "${DL_GIMP_HUGE:-0}" = 1 ]; then
    hstart=$(date +%s)
    DERMLENS_STATS=1
    gimp3 huge || bad=1
    DERMLENS_STATS=
    echo "huge layer session: $(( $(date +%s) - hstart )) s"
    cat "$work/huge-facts.txt" 2>/dev/null
    grep 'dermlens-stats' "$ctmp/huge.log" | tee "$work/huge-stats.txt"
fi
if [ "$(cat "$work/tiny-facts.txt" 2>/dev/null)" != "refused 1" ]; then
    echo "FAIL: a 4x4 selection was not refused cleanly: $(cat "$work/tiny-facts.txt" 2>/dev/null)"; bad=1
fi
grep -h "tiny selection:" "$ctmp/run.log"
grep -h "mask drawable:" "$ctmp/run.log"
# A layer mask as the drawable: refused with the wrong-type message, nothing added.
if [ "$(cat "$work/mask-facts.txt" 2>/dev/null)" != "refused 1" ]; then
    echo "FAIL: a layer mask was not refused cleanly: $(cat "$work/mask-facts.txt" 2>/dev/null)"; bad=1
fi
if ! grep -q "DermLens classifies a pixel layer" "$ctmp/run.log"; then
    echo "FAIL: no wrong-type message for a layer mask"; bad=1
fi
# 1 x 1 layer: refused, one layer, no parasite, pixel unchanged, clear message.
if [ "$(cat "$work/tiny1-facts.txt" 2>/dev/null)" != "refused 1 0 (12 34 56)" ]; then
    echo "FAIL: a 1x1 layer was not refused cleanly: $(cat "$work/tiny1-facts.txt" 2>/dev/null)"; bad=1
fi
if ! grep -q 'The layer is 1 x 1 pixels; DermLens needs at least 8 x 8' "$work/tiny1-msg.txt" 2>/dev/null; then
    echo "FAIL: no clear message for the 1x1 layer: $(cat "$work/tiny1-msg.txt" 2>/dev/null)"; bad=1
fi
python3 "$here/check_result.py" "$work" || bad=1

# Install layout: meson's install plan must put the plug-in in GIMP 3's own
# plug-in folder (pkg-config gimplibdir) and the models in the folder the
# plug-in searches; then GIMP 3, given a lib folder with that layout
# (GIMP3_PLUGINDIR) and a fresh profile, must find and run it.
run_chroot sh -c 'meson introspect --installed /build/dermlens; echo; pkg-config --variable=gimplibdir gimp-3.0' \
    >"$ctmp/installed.txt" 2>"$ctmp/installed.err"
plan=$(python3 - "$ctmp/installed.txt" <<'EOP'
import json, sys
text = open(sys.argv[1]).read().strip().splitlines()
inst, libdir = json.loads(text[0]), text[-1].strip()
plug = [d for s, d in inst.items() if s.endswith("/plugin/dermlens")]
models = [d for s, d in inst.items() if s.endswith(".safetensors")]
ok = plug == [libdir + "/plug-ins/dermlens/dermlens"] and models
print("ok" if ok else "bad", libdir, plug[0] if plug else "-", models[0].rsplit("/", 1)[0] if models else "-")
EOP
)
set -- $plan
if [ "$1" != ok ]; then
    echo "FAIL: GIMP 3 install plan: $plan"; bad=1
else
    echo "GIMP 3 install plan: plug-in $3, models in $4 (gimplibdir $2)"
    strings "$ROOT/build/dermlens/plugin/dermlens" | grep -q -x -F "$4" || { echo "FAIL: the plug-in does not search $4"; bad=1; }
    lib=$ctmp/gimplib
    mkdir -p "$lib/plug-ins/dermlens" "$ctmp/gimp3-fresh"
    for e in "$ROOT$2"/*; do [ "$(basename "$e")" = plug-ins ] || ln -s "${e#"$ROOT"}" "$lib/"; done
    for e in "$ROOT$2"/plug-ins/*; do ln -s "${e#"$ROOT"}" "$lib/plug-ins/"; done
    cp "$ROOT/build/dermlens/plugin/dermlens" "$lib/plug-ins/dermlens/dermlens"
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME="$tmp_in/home" \
        GIMP3_DIRECTORY="$tmp_in/gimp3-fresh" GIMP3_PLUGINDIR="$tmp_in/gimplib" DERMLENS_MODEL="$cmodel" \
        DL_WORK="$tmp_in/work" DL_DATA="$tmp_in/data" DL_PHASE=installed \
        timeout 600 gimp-console-3.0 -i --quit --batch-interpreter=python-fu-eval -b - \
        <"$ctmp/session.py" >"$ctmp/installed.log" 2>&1
    if grep -q '^DermLens: ' "$work/installed-facts.txt" 2>/dev/null; then
        echo "GIMP 3 ran the plug-in from its own plug-in folder: $(cat "$work/installed-facts.txt")"
    else
        echo "FAIL: GIMP 3 did not find the plug-in in its plug-in folder: $(cat "$work/installed-facts.txt" 2>/dev/null)"
        tail -15 "$ctmp/installed.log"; bad=1
    fi
fi

# Dialogs on a virtual X server: file chooser, readable saliency names with
# tooltips, the disclaimer, and no "duplicate mnemonic" warning.
if [ -x "$ROOT/usr/bin/xvfb-run" ]; then
    run_chroot DL_PHASE=dialog DERMLENS_DIALOG_TEST="$tmp_in/work/dialogs.txt" timeout 600 \
        xvfb-run -a gimp-console-3.0 -i --quit --batch-interpreter=python-fu-eval -b - \
        <"$ctmp/session.py" >"$ctmp/dialog.log" 2>&1
    python3 "$here/check_dialogs.py" "$work/dialogs.txt" "$ctmp/dialog.log" || { bad=1; tail -15 "$ctmp/dialog.log"; }
else
    echo "FAIL: no xvfb-run in the chroot (setup-gimp3-chroot.sh installs it)"; bad=1
fi
echo "GIMP 3.0 test: $(( $(date +%s) - start )) s in all"
failed=$bad
[ $failed = 0 ] && echo "PASS: GIMP 3.0"
exit $failed
