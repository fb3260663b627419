#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Retake docs/review-page.png: `dermlens review` of the 21 sample images
# (tests/data/sample, labels from their class folders), opened from disk in
# headless Chromium at 1280 px. Needs chromium, chromium-driver and
# python3-selenium (Debian) and a built ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
python3 -c 'import selenium' 2>/dev/null || py=/usr/bin/python3
"$py" tests/review/browser_test.py build/cli/dermlens "$PWD" --screenshot docs/review-page.png \
  --dataset tests/data/sample
