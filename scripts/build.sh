#!/usr/bin/env bash
# Configures and builds dyt-train into build/ (or $DYT_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${DYT_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build "$build" -j "$(nproc)"
