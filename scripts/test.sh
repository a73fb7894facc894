#!/usr/bin/env bash
# The README's test command: installs what the project needs, builds it and
# runs every test (unit, reference parity, multi-rank; GPU tests skip without a device),
# then the sanitizer build and the fuzz targets (scripts/sanitize.sh; DYT_SKIP_SANITIZERS=1 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build=${DYT_BUILD_DIR:-build}
(cd "$build" && ctest --output-on-failure -j "$(nproc)" "$@")
if [ "${DYT_SKIP_SANITIZERS:-0}" != 1 ]; then
  scripts/sanitize.sh
fi
