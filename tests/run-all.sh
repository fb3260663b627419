#!/usr/bin/env bash
# The whole test suite (the README's second command): a release build with
# every suite (unit, golden, corpus, gimp), then an AddressSanitizer +
# UndefinedBehaviorSanitizer build running the unit, golden and corpus suites.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

meson setup build-ci --buildtype=release --wipe >/dev/null 2>&1 || meson setup build-ci --buildtype=release
ninja -C build-ci
meson test -C build-ci --print-errorlogs --num-processes "$jobs"

if [ "${DL_SKIP_SANITIZERS:-0}" != 1 ]; then
  CC=clang meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined \
     -Db_lundef=false -Dplugin=disabled --wipe >/dev/null 2>&1 || \
  CC=clang meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dplugin=disabled
  ninja -C build-asan
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes "$jobs" --suite unit --suite golden --suite corpus \
    --timeout-multiplier 4
fi
echo "all test suites passed"
