#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Run a libFuzzer campaign on one DermLens fuzz target and merge what it finds
# into the committed replay corpus.
#
#   tests/fuzz/run-campaign.sh TARGET [LIMIT]
#
# TARGET: model, tflite, png, jpeg, csv or params (tests/fuzz/fuzz_TARGET.c).
# LIMIT:  a plain number is a number of executions (default 10000000); with a
#         suffix s, m or h it is a duration (e.g. 3600s, 90m, 1h).
#
# Builds the targets with clang -fsanitize=fuzzer,address,undefined into
# $DL_FUZZ_BUILD (default build-fuzz-campaign), runs the fuzzer single-process
# at nice $DL_FUZZ_NICE (default 19) on a working corpus kept in
# $DL_FUZZ_BUILD/campaign/TARGET (seeded from tests/fuzz/corpus/TARGET, so a
# later run continues where this one stopped), then merges inputs that add
# coverage and are at most $DL_FUZZ_MERGE_MAX bytes (default 4096) into
# tests/fuzz/corpus/TARGET (libFuzzer -merge=1 keeps the smallest input per
# new feature). Crashes, leaks, timeouts and UBSan reports are findings: their
# inputs are kept in $DL_FUZZ_BUILD/campaign/TARGET-artifacts/ and the script
# exits 1. Extra libFuzzer flags can be passed in $DL_FUZZ_FLAGS;
# DL_FUZZ_NO_BUILD=1 runs the existing binary without rebuilding.
set -euo pipefail

usage() { sed -n '3,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
target=$1
limit=${2:-10000000}
src=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$src/tests/fuzz/fuzz_$target.c" ] || { echo "unknown target '$target'" >&2; usage; }

case $limit in
  *s) runs=-1; secs=${limit%s} ;;
  *m) runs=-1; secs=$(( ${limit%m} * 60 )) ;;
  *h) runs=-1; secs=$(( ${limit%h} * 3600 )) ;;
  *) runs=$limit; secs=0 ;;
esac
[[ $runs =~ ^-?[0-9]+$ && $secs =~ ^[0-9]+$ ]] || { echo "bad limit '$limit'" >&2; usage; }

build=${DL_FUZZ_BUILD:-$src/build-fuzz-campaign}
nice_level=${DL_FUZZ_NICE:-19}
merge_max=${DL_FUZZ_MERGE_MAX:-4096}
committed=$src/tests/fuzz/corpus/$target
work=$build/campaign/$target
artifacts=$build/campaign/$target-artifacts
log=$build/campaign/$target.log

# Sanitizers on the whole engine (-Db_sanitize), coverage instrumentation on
# every file (-Dfuzzing adds -fsanitize=fuzzer-no-link project-wide).
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$src" -Dfuzzing=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debugoptimized -Dplugin=disabled -Dgimp_tests=disabled >/dev/null
fi
bin=$build/tests/fuzz/fuzz_$target
if [ "${DL_FUZZ_NO_BUILD:-0}" != 1 ] || [ ! -x "$bin" ]; then
  nice -n "$nice_level" ninja -C "$build" -j1 "tests/fuzz/fuzz_$target" >/dev/null
fi

mkdir -p "$work" "$artifacts"
cp -n "$committed"/* "$work"/ 2>/dev/null || true

# Findings stop the fuzzer: UBSan reports abort, leaks are reported by LSan.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
maxlen=()
[ "$target" = params ] && maxlen=(-max_len=8192)

echo "fuzz_$target: limit $limit, corpus $work"
before=$(find "$artifacts" -type f | wc -l)
set +e
nice -n "$nice_level" "$bin" "$work" -runs="$runs" -max_total_time="$secs" -timeout=25 \
  -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$artifacts/" "${maxlen[@]}" \
  ${DL_FUZZ_FLAGS:-} >"$log" 2>&1
status=$?
set -e
after=$(find "$artifacts" -type f | wc -l)

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)

# Merge: only inputs small enough to commit; -merge=1 adds to the first
# folder just those (smallest first) that bring new coverage.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
find "$work" -maxdepth 1 -type f -size -$((merge_max + 1))c -exec cp {} "$stage"/ \;
n0=$(find "$committed" -maxdepth 1 -type f | wc -l)
nice -n "$nice_level" "$bin" -merge=1 "${maxlen[@]}" "$committed" "$stage" >"$log.merge" 2>&1 || {
  echo "merge failed, see $log.merge" >&2; }
n1=$(find "$committed" -maxdepth 1 -type f | wc -l)

echo "target:      fuzz_$target"
echo "executions:  ${execs:-?}"
echo "seconds:     ${took:-?}"
echo "exec/s:      ${rate:-?}"
echo "peak RSS MB: ${peak:-?}"
echo "corpus:      $(find "$work" -maxdepth 1 -type f | wc -l) working inputs; merged $((n1 - n0)) new into tests/fuzz/corpus/$target"
echo "findings:    $((after - before)) (fuzzer exit status $status)"
if [ "$after" -gt "$before" ] || [ "$status" -ne 0 ]; then
  grep -E "^==[0-9]+==ERROR|runtime error|SUMMARY|Test unit written" "$log" | head -20 || true
  echo "log: $log"
  exit 1
fi
