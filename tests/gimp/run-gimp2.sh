#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Real-GIMP test of the DermLens plug-in in GIMP 2.10, headless.
# Env (set by meson): DL_BUILD_ROOT, DL_SOURCE_ROOT, DL_TEST_DATA.
# Optional: DERMLENS_MODEL (default: the lesion model if present, else ImageNet),
#           DL_PLUGIN_BIN (plug-in binary), DL_KEEP_TMP=1 (keep the work folder).
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
mkdir -p "$work" "$tmp/home" "$tmp/plug-ins/dermlens" "$work/batch-in"
cleanup() { if [ "${DL_KEEP_TMP:-0}" = 1 ] || [ "${failed:-1}" != 0 ]; then echo "work folder kept: $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
# GIMP 3 style layout (own subfolder) loads in 2.10 too.
cp "$plugin" "$tmp/plug-ins/dermlens/dermlens"
export HOME=$tmp/home GIMP2_DIRECTORY=$tmp/gimp2
cat >"$tmp/gimprc" <<EOF
(plug-in-path "\${gimp_dir}/plug-ins:\${gimp_plug_in_dir}/plug-ins:$tmp/plug-ins")
EOF

# Batch input: two lesions and one broken file.
cp "$data/lesions/ISIC_0031711.jpg" "$data/lesions/ISIC_0025921.jpg" "$work/batch-in/"
printf '\377\330\377\340 this is not a JPEG' >"$work/batch-in/broken.jpg"
chmod a-w "$work/batch-in"/*
(cd "$work/batch-in" && ls -la --time-style=+%s . | grep -v ' \.\.$' | sed 1d | awk '{print $1, $5, $6, $7}' && sha256sum ./*) >"$work/batch-in.sha256"

gimp_batch() {
    # $1 = script file, $2 = log; the script is prefixed with the paths.
    { printf '(define dl-work "%s")\n(define dl-data "%s")\n' "$work" "$data"; cat "$1"; } >"$tmp/script.scm"
    # The script goes in as one -b argument: with "-b -" GIMP 2.10 never quits.
    timeout "${DL_GIMP_TIMEOUT:-900}" gimp-console-2.10 -i -d --gimprc="$tmp/gimprc" -b "$(cat "$tmp/script.scm")" \
        -b '(gimp-quit 0)' </dev/null >"$2" 2>&1
    rc=$?
    [ $rc = 124 ] && echo "GIMP timed out ($1)"
    return $rc
}

failed=0
start=$(date +%s)
gimp_batch "$here/gimp2-run.scm" "$tmp/run.log" || failed=1
echo "GIMP session 1: $(( $(date +%s) - start )) s"
(cd "$work/batch-in" && ls -la --time-style=+%s . | grep -v ' \.\.$' | sed 1d | awk '{print $1, $5, $6, $7}' && sha256sum ./*) >"$work/batch-in-after.sha256"
for c in rgb selection grey u16 offset; do
    if [ -f "$work/$c-ref.png" ]; then
        "$cli" classify --json -k 0 -m "$DERMLENS_MODEL" "$work/$c-ref.png" >"$work/$c-cli.json" 2>>"$tmp/cli.log" || failed=1
    fi
done
gimp_batch "$here/gimp2-inspect.scm" "$tmp/inspect.log" || failed=1
echo "GIMP sessions: $(( $(date +%s) - start )) s"

# gimp-console-2.10 exits 0 even when a batch command failed: read the logs.
for log in "$tmp/run.log" "$tmp/inspect.log"; do
    # The deliberate 4x4-selection failure is the one expected error.
    if sed '/procedure .plug-in-dermlens-classify.:$/{N;/needs at least 8 x 8/d}' "$log" | \
            grep -n -i -E 'execution error|calling error|unbound variable|Error: '; then
        echo "FAIL: errors in $(basename "$log"):"; sed -n '1,60p' "$log"; failed=1
    fi
done
if [ "$(cat "$work/tiny-facts.txt" 2>/dev/null)" != "refused 1" ]; then
    echo "FAIL: a 4x4 selection was not refused cleanly: $(cat "$work/tiny-facts.txt" 2>/dev/null)"; failed=1
fi
python3 "$here/check_result.py" "$work" || failed=1
[ $failed = 0 ] && echo "PASS: GIMP 2.10"
exit $failed
