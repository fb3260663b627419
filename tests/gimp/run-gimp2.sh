#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Real-GIMP test of the DermLens plug-in in GIMP 2.10, headless.
# Env (set by meson): DL_BUILD_ROOT, DL_SOURCE_ROOT, DL_TEST_DATA.
# Optional: DERMLENS_MODEL (default: the lesion model if present, else ImageNet),
#           DL_PLUGIN_BIN (plug-in binary), DL_KEEP_TMP=1 (keep the work folder),
#           DL_GIMP_HUGE=1 (also classify a 30000 x 30000 layer: minutes, GBs of
#           GIMP swap; prints the plug-in's peak RSS), CC (for the undo helper).
# Exit: 0 pass, 1 fail, 77 skip (no GIMP 2.10, plug-in not built for 2.10, no model).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${DL_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
build=${DL_BUILD_ROOT:?DL_BUILD_ROOT not set}
data=${DL_TEST_DATA:-$src/tests/data}
plugin=${DL_PLUGIN_BIN:-$build/plugin/dermlens}
cli=$build/cli/dermlens

command -v gimp-console-2.10 >/dev/null 2>&1 || { echo "SKIP: gimp-console-2.10 not installed"; exit 77; }
[ -x "$plugin" ] || { echo "SKIP: plug-in not built ($plugin)"; exit 77; }
[ -x "$cli" ] || { echo "SKIP: CLI not built ($cli)"; exit 77; }
# The binary must be the GIMP 2.10 build: libgimp-2.0 in its dependencies.
if command -v ldd >/dev/null 2>&1 && ! ldd "$plugin" | grep -q 'libgimp-2.0'; then
    echo "SKIP: $plugin is not built against GIMP 2.10"; exit 77
fi
if [ -z "${DERMLENS_MODEL:-}" ]; then
    for m in "$src/weights/dermlens_ham10000.safetensors" "$src/weights/mobilenet_v2_imagenet.safetensors"; do
        [ -f "$m" ] && { DERMLENS_MODEL=$m; break; }
    done
fi
[ -n "${DERMLENS_MODEL:-}" ] && [ -f "$DERMLENS_MODEL" ] || { echo "SKIP: no model file"; exit 77; }
export DERMLENS_MODEL
echo "model: $DERMLENS_MODEL"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dermlens-gimp2.XXXXXX")
work=$tmp/work
mkdir -p "$work" "$tmp/home" "$tmp/plug-ins/dermlens" "$work/batch-in" "$work/batch-kill-in"
cleanup() { if [ "${DL_KEEP_TMP:-0}" = 1 ] || [ "${failed:-1}" != 0 ]; then echo "work folder kept: $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
# GIMP 3 style layout (own subfolder) loads in 2.10 too.
cp "$plugin" "$tmp/plug-ins/dermlens/dermlens"
export HOME=$tmp/home GIMP2_DIRECTORY=$tmp/gimp2
cat >"$tmp/gimprc" <<EOF
(plug-in-path "\${gimp_dir}/plug-ins:\${gimp_plug_in_dir}/plug-ins:$tmp/plug-ins")
EOF

# Batch to be killed part-way: 40 images (the three lesions under 40 names).
i=0
for n in $(seq -w 0 39); do
    case $((i % 3)) in 0) f=ISIC_0031711;; 1) f=ISIC_0025921;; *) f=ISIC_0029674;; esac
    cp "$data/lesions/$f.jpg" "$work/batch-kill-in/img$n.jpg"; i=$((i + 1))
done
chmod a-w "$work/batch-kill-in"/*
(cd "$work/batch-kill-in" && ls -la --time-style=+%s . | grep -v ' \.\.$' | sed 1d | awk '{print $1, $5, $6, $7}' && sha256sum ./*) >"$work/batch-kill-in.sha256"

# The undo helper (see undo-probe.c): LD_PRELOADed into gimp-console.
probe=$tmp/dermlens-undo-probe.so
# shellcheck disable=SC2046
if ! ${CC:-cc} -shared -fPIC -O1 -o "$probe" "$here/undo-probe.c" $(pkg-config --cflags --libs gobject-2.0) -ldl \
        >"$tmp/probe-build.log" 2>&1; then
    echo "FAIL: cannot build the undo helper:"; cat "$tmp/probe-build.log"; failed=1; exit 1
fi
export DL_UNDO_PROBE_LOG=$work/undo-probe.log

gimp_batch() {
    # $1 = script file, $2 = log; the script is prefixed with the paths.
    { printf '(define dl-work "%s")\n(define dl-data "%s")\n' "$work" "$data"; cat "$1"; } >"$tmp/script.scm"
    # The script goes in as one -b argument: with "-b -" GIMP 2.10 never quits.
    LD_PRELOAD=$probe timeout "${DL_GIMP_TIMEOUT:-900}" gimp-console-2.10 -i -d --gimprc="$tmp/gimprc" \
        -b "$(cat "$tmp/script.scm")" -b '(gimp-quit 0)' </dev/null >"$2" 2>&1
    rc=$?
    [ $rc = 124 ] && echo "GIMP timed out ($1)"
    return $rc
}

failed=0
# Batch input, a dataset as `dermlens review` takes it: class subfolders, an
# XCF (only GIMP opens it; made by GIMP) two folders below its class, a
# blank PNG, a broken JPEG outside any class folder; and a labels CSV for the second run.
mkdir -p "$work/batch-in/mel" "$work/batch-in/nv" "$work/batch-in/bkl/nested/deeper"
cp "$data/lesions/ISIC_0031711.jpg" "$work/batch-in/mel/"
cp "$data/lesions/ISIC_0025921.jpg" "$work/batch-in/nv/"
printf '\377\330\377\340 this is not a JPEG' >"$work/batch-in/broken.jpg"
# a blank image: flagged out of distribution, the warning in its label box
python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import review_data; open(sys.argv[2], "wb").write(review_data.png_bytes(96, 96, (255, 255, 255)))' \
    "$src/tests/review" "$work/batch-in/nv/blank.png"
gimp_batch "$here/gimp2-makexcf.scm" "$tmp/makexcf.log" || failed=1
[ -f "$work/batch-in/bkl/nested/deeper/ISIC_0029674.xcf" ] || { echo "FAIL: GIMP did not write the XCF"; cat "$tmp/makexcf.log"; failed=1; }
printf 'image_id,dx\nISIC_0031711,nv\nISIC_0025921,nv\nISIC_0029674,bkl\nbroken,mel\n' >"$work/labels.csv"
find "$work/batch-in" -type f -exec chmod a-w {} +
batch_listing() { (cd "$work/batch-in" && find . | sort | xargs ls -lad --time-style=+%s | awk '{print $1, $5, $6, $7}' && find . -type f | sort | xargs sha256sum); }
batch_listing >"$work/batch-in.sha256"

start=$(date +%s)
gimp_batch "$here/gimp2-run.scm" "$tmp/run.log" || failed=1
echo "GIMP session 1: $(( $(date +%s) - start )) s"
batch_listing >"$work/batch-in-after.sha256"
# The review page in a real browser (when Chromium is installed): thumbnails,
# order, filters and the confusion matrix against the batch's CSV.
python3 "$src/tests/review/browser_test.py" --page "$work/batch-out" "$work/batch.csv"
case $? in 0|77) ;; *) echo "FAIL: the batch's review page in the browser"; failed=1;; esac
for c in rgb selection grey u16 offset empty float blank skin big; do
    if [ -f "$work/$c-ref.png" ]; then
        "$cli" classify --json -k 0 -m "$DERMLENS_MODEL" "$work/$c-ref.png" >"$work/$c-cli.json" 2>>"$tmp/cli.log" || failed=1
    fi
done
gimp_batch "$here/gimp2-inspect.scm" "$tmp/inspect.log" || failed=1
echo "GIMP sessions: $(( $(date +%s) - start )) s"

# Kill the plug-in (kill -9 on its pid) while it runs a batch over 40 images,
# once the CSV has at least 3 rows; the CSV must stay valid.
kstart=$(date +%s)
gimp_batch "$here/gimp2-batchkill.scm" "$tmp/kill.log" &
gpid=$!
n=0 killed=
while [ $n -lt 3000 ] && kill -0 $gpid 2>/dev/null; do
    rows=$(( $(cat "$work/batch-kill.csv" 2>/dev/null | wc -l) - 1 ))
    if [ $rows -ge 3 ]; then
        # Our own copy of the plug-in, found by its unique path.
        ppid=$(pgrep -f "^$tmp/plug-ins/dermlens/dermlens " | head -n 1)
        if [ -n "$ppid" ]; then kill -9 "$ppid" && killed=$ppid; fi
        break
    fi
    sleep 0.2; n=$((n + 1))
done
wait $gpid
echo "batch kill: plug-in pid ${killed:-none} killed with $(( $(wc -l <"$work/batch-kill.csv") - 1 )) rows on disk, $(( $(date +%s) - kstart )) s"
[ -n "$killed" ] || { echo "FAIL: the batch plug-in was not killed (finished too early?)"; failed=1; }
(cd "$work/batch-kill-in" && ls -la --time-style=+%s . | grep -v ' \.\.$' | sed 1d | awk '{print $1, $5, $6, $7}' && sha256sum ./*) >"$work/batch-kill-in-after.sha256"

if [ "${DL_GIMP_HUGE:-0}" = 1 ]; then
    hstart=$(date +%s)
    export DERMLENS_STATS=1
    gimp_batch "$here/gimp2-huge.scm" "$tmp/huge.log" || failed=1
    unset DERMLENS_STATS
    echo "huge layer session: $(( $(date +%s) - hstart )) s"
    cat "$work/huge-facts.txt" 2>/dev/null
    grep 'dermlens-stats' "$tmp/huge.log" | tee "$work/huge-stats.txt"
fi

# gimp-console-2.10 exits 0 even when a batch command failed: read the logs.
for log in "$tmp/run.log" "$tmp/inspect.log"; do
    # The deliberate refusals (too small, layer mask) are the expected errors.
    if sed '/procedure .plug-in-dermlens-classify.:$/{N;/needs at least 8 x 8/d;/classifies a pixel layer/d}' "$log" | \
            grep -n -i -E 'execution error|calling error|unbound variable|Error: '; then
        echo "FAIL: errors in $(basename "$log"):"; sed -n '1,60p' "$log"; failed=1
    fi
done
if [ "$(cat "$work/tiny-facts.txt" 2>/dev/null)" != "refused 1" ]; then
    echo "FAIL: a 4x4 selection was not refused cleanly: $(cat "$work/tiny-facts.txt" 2>/dev/null)"; failed=1
fi
# A layer mask as the drawable: refused with the wrong-type message, nothing added.
if [ "$(cat "$work/mask-facts.txt" 2>/dev/null)" != "refused 1" ]; then
    echo "FAIL: a layer mask was not refused cleanly: $(cat "$work/mask-facts.txt" 2>/dev/null)"; failed=1
fi
if ! grep -q "DermLens classifies a pixel layer" "$tmp/run.log"; then
    echo "FAIL: no wrong-type message for a layer mask"; failed=1
fi
# 1 x 1 layer: refused, one layer, no parasite, pixel unchanged, clear message.
if [ "$(cat "$work/tiny1-facts.txt" 2>/dev/null)" != "refused 1 0 (12 34 56)" ]; then
    echo "FAIL: a 1x1 layer was not refused cleanly: $(cat "$work/tiny1-facts.txt" 2>/dev/null)"; failed=1
fi
if ! grep -q 'The layer is 1 x 1 pixels; DermLens needs at least 8 x 8' "$tmp/run.log"; then
    echo "FAIL: no clear message for the 1x1 layer"; failed=1
fi
python3 "$here/check_result.py" "$work" || failed=1
echo "GIMP 2.10 test: $(( $(date +%s) - start )) s in all"
[ $failed = 0 ] && echo "PASS: GIMP 2.10"
exit $failed
