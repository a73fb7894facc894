#!/usr/bin/env bash
# Configures and builds dyt-train into build/ (or $DYT_BUILD_DIR).
#   scripts/build.sh [TARGET...]     no target = everything (programs and tests)
# Extra configure flags go in $DYT_CMAKE_ARGS, e.g. DYT_CMAKE_ARGS=-DDYT_WITH_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${DYT_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release ${DYT_CMAKE_ARGS:-}
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
