#!/usr/bin/env bash
# The sanitizer half of CI (docs/robustness.md), run by scripts/test.sh after
# the normal build's tests:
#   1. build-asan: the whole CPU build again with ASan + UBSan (gcc, -O1,
#      every report fatal) and every test not labelled "slow" (end-to-end
#      runs) or "bench" (Python only) under it;
#   2. build-fuzz: the libFuzzer targets of tests/fuzz (clang, ASan + UBSan),
#      each run for DYT_FUZZ_SECONDS (default 25) from its seed corpus.
#   scripts/sanitize.sh [asan|fuzz]    no argument = both
# Needs the packages of scripts/setup.sh (clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=$(nproc)
# Reports abort the process (so the test fails) and leaks count as reports.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
sanitize_args="-DCMAKE_BUILD_TYPE=Debug -DDYT_WITH_CUDA=OFF -DDYT_NATIVE=OFF -DDYT_SANITIZE=ON"

if [ "$what" = all ] || [ "$what" = asan ]; then
  asan=${DYT_ASAN_BUILD_DIR:-build-asan}
  DYT_BUILD_DIR=$asan DYT_CMAKE_ARGS="$sanitize_args" scripts/build.sh
  (cd "$asan" && ctest --output-on-failure -j "$jobs" -LE 'slow|bench')
fi

if [ "$what" = all ] || [ "$what" = fuzz ]; then
  fuzz=${DYT_FUZZ_BUILD_DIR:-build-fuzz}
  CC=clang CXX=clang++ DYT_BUILD_DIR=$fuzz DYT_CMAKE_ARGS="$sanitize_args -DDYT_FUZZ=ON" \
    scripts/build.sh fuzz_json fuzz_safetensors fuzz_manifest fuzz_token_shard fuzz_config
  (cd "$fuzz" && ctest --output-on-failure -j "$jobs" -L fuzz)
fi
