#!/usr/bin/env bash
# The README's first command: on a fresh machine, installs what dyt-train
# needs, builds the programs, prepares the fortunes corpus (cached in
# data/fortunes) and trains configs/tiny.pbtxt. Extra arguments go to
# dyt-train, e.g. scripts/train_tiny.sh --set train.steps=100
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh dyt-train dyt-tokenize
scripts/prepare_data.sh "${DYT_BUILD_DIR:-build}"
exec "${DYT_BUILD_DIR:-build}/trainer/dyt-train" --config configs/tiny.pbtxt "$@"
