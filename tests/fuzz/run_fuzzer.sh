#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time from its seed corpus.
#   run_fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS
# The seeds (and past findings) are read from SEED_DIR, never written: new
# inputs go to WORK_DIR/corpus, crash/timeout/leak reproducers to WORK_DIR/.
# Exit status is libFuzzer's: non-zero on any crash, hang (an input running
# over 30 s of wall time), leak or sanitizer report; the reproducer's path is
# printed. Inputs take milliseconds; the margin is for a machine shared by
# many jobs (at 10 s, a starved run once reported a 14 ms input as a hang).
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3 seconds=$4
rm -rf "$work"
mkdir -p "$work/corpus"
# A dictionary tests/fuzz/<name>.dict (field names, edge values), when there is one.
dict=()
name=$(basename "$seeds")
[ -f "$(dirname "$seeds")/../$name.dict" ] && dict=(-dict="$(dirname "$seeds")/../$name.dict")
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
exec "$fuzzer" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$work/" "${dict[@]}" "$work/corpus" "$seeds"
