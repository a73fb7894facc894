#!/usr/bin/env bash
# Installs the Debian packages dyt-train builds, tests and trains with.
# Idempotent: packages already present are skipped, so CI and repeat runs are fast.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  protobuf-compiler libprotobuf-dev          # configs/*.proto and checkpoint manifests
  libgtest-dev libgmock-dev                  # tests/
  libopenblas-dev libopenblas-openmp-dev     # CPU GEMMs (the OpenMP build shares our thread pool)
  libboost-dev                               # Boost.CRC: CRC-32C of TensorBoard event records
  libomp-dev                                 # OpenMP for CPU kernels
  openmpi-bin libopenmpi-dev                 # multi-rank launch and host communicators
  libsentencepiece-dev sentencepiece         # dyt-tokenize
  fortunes                                   # default training corpus
  python3-torch python3-numpy                # tests/reference (PyTorch reference model)
  python3-venv                               # .venv for the pinned packages of scripts/python-requirements.txt
  clang libclang-rt-14-dev                   # tests/fuzz (libFuzzer + sanitizer runtimes)
  slurmctld slurmd slurm-client munge        # tests/launch: a one-node Slurm for dyt-sweep --launcher slurm
  python3-matplotlib                         # scripts/plot_sweep.py, scripts/plot_alpha.py
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages Debian lacks, pinned (scripts/python-requirements.txt), in a
# venv that also sees Debian's torch and numpy; the tests run its python.
# Skipped when the venv already holds exactly these versions.
venv=$(cd "$(dirname "$0")/.." && pwd)/.venv
requirements=$(cd "$(dirname "$0")" && pwd)/python-requirements.txt
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if ! cmp -s "$requirements" "$venv/installed-requirements.txt"; then
  echo "setup: installing Python packages into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/installed-requirements.txt"
fi
