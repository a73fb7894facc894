#!/usr/bin/env bash
# Installs the Debian packages dyt-train builds, tests and trains with.
# Idempotent: packages already present are skipped, so CI and repeat runs are fast.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  protobuf-compiler libprotobuf-dev          # configs/*.proto and checkpoint manifests
  libgtest-dev libgmock-dev                  # tests/
  libopenblas-dev libopenblas-openmp-dev     # CPU GEMMs (the OpenMP build shares our thread pool)
  libomp-dev                                 # OpenMP for CPU kernels
  openmpi-bin libopenmpi-dev                 # multi-rank launch and host communicators
  libsentencepiece-dev sentencepiece         # dyt-tokenize
  fortunes                                   # default training corpus
  python3-torch python3-numpy                # tests/reference (PyTorch reference model)
  clang libclang-rt-14-dev                   # tests/fuzz (libFuzzer + sanitizer runtimes)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
