#!/usr/bin/env bash
# Prepares the default corpus for configs/tiny.pbtxt: Debian's `fortunes`
# text (/usr/share/games/fortunes, or $DYT_FORTUNES) -> a 4096-piece
# SentencePiece BPE tokenizer -> llm.c shards in data/fortunes/:
#   tokenizer.model, train_000.bin, val_000.bin
# Builds nothing: run scripts/build.sh first. Cached: does nothing when the
# files exist already, unless --force.
#
#   scripts/prepare_data.sh [--force] [BUILD_DIR]     (BUILD_DIR: $DYT_BUILD_DIR or build)
set -euo pipefail

force=0
build=${DYT_BUILD_DIR:-build}
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "prepare_data.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) build=$arg ;;
  esac
done

build=$(cd "$build" 2>/dev/null && pwd) || { echo "prepare_data.sh: build directory '$build' not found; run scripts/build.sh first" >&2; exit 1; }
cd "$(dirname "$0")/.."

tokenize="$build/trainer/dyt-tokenize"
corpus=${DYT_FORTUNES:-/usr/share/games/fortunes}
out=data/fortunes
vocab=4096  # configs/tiny.pbtxt: model.vocab_size

if [ "$force" = 0 ] && [ -f "$out/tokenizer.model" ] && [ -f "$out/train_000.bin" ] && [ -f "$out/val_000.bin" ]; then
  echo "prepare_data.sh: $out is ready (tokenizer.model, train_000.bin, val_000.bin); --force redoes it"
  exit 0
fi
if [ ! -x "$tokenize" ]; then
  echo "prepare_data.sh: $tokenize not found; build it first (scripts/build.sh, or cmake --build $build --target dyt-tokenize)" >&2
  exit 1
fi
if [ ! -d "$corpus" ]; then
  echo "prepare_data.sh: corpus $corpus not found; install Debian's fortunes package (apt-get install fortunes) or set DYT_FORTUNES" >&2
  exit 1
fi

start=$(date +%s.%N)
"$tokenize" --input "$corpus" --out "$out" --vocab "$vocab" --val-fraction 0.05 --seed 1234 --threads 2
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "prepare_data.sh: done in %.1f s\n", b - a }'
