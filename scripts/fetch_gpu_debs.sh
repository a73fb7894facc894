#!/usr/bin/env bash
# Downloads the Debian packages the MAIN build needs beyond what the GPU
# machine has (it has the CUDA toolkit, gcc with OpenMP, CMake, ninja and
# python3 with torch, and no network), so scripts/gpu_report.sh can unpack
# them into a private prefix there and build everything: protobuf (+ protoc),
# GoogleTest, OpenBLAS (OpenMP build), SentencePiece and Open MPI (the last
# is REQUIRED by parallel/CMakeLists.txt; only its library and headers come,
# no mpirun: the GPU tests run single-process). NCCL is not among them: the
# build finds it in the CUDA toolkit (as on this machine) or in the
# nvidia-nccl-cu13 wheel the GPU machine's PyTorch ships (header and
# libnccl.so.2; cmake/DytNccl.cmake).
#
#   scripts/fetch_gpu_debs.sh [DIR]     # DIR defaults to .gpu-debs (git-ignored)
#
# Run it HERE (a Debian machine with apt), before a GPU session, then hand DIR
# to the device tool's `carry` (e.g. carry [".gpu-debs"]); the carried tree
# is limited to 64 MiB in all, these come to about 20 MiB (measured:
# docs/cuda_kernels.md "Running it on a GPU machine").
# The runtime libraries listed are those the -dev packages' libraries and
# protoc need (ldd closure) that a CUDA image need not have; libc, libstdc++,
# libgomp and zlib are left to the machine.
set -euo pipefail
dir=${1:-.gpu-debs}
packages=(
  protobuf-compiler libprotoc32 libprotobuf-dev libprotobuf32 libprotobuf-lite32
  libgtest-dev libgmock-dev
  libopenblas-openmp-dev libopenblas0-openmp libgfortran5 libquadmath0
  libsentencepiece-dev libsentencepiece0
  libopenmpi-dev libopenmpi3 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libudev1
)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir"/*.deb
# apt's sandbox user may not write here; download into a temp dir it owns.
tmp=$(mktemp -d)
chmod 777 "$tmp"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download "${packages[@]}") >&2
mv "$tmp"/*.deb "$dir"/
count=$(ls "$dir"/*.deb | wc -l)
if [ "$count" -ne ${#packages[@]} ]; then
  echo "fetch_gpu_debs: expected ${#packages[@]} .deb files in $dir, found $count" >&2
  exit 1
fi
total=$(du -cb "$dir"/*.deb | tail -1 | cut -f1)
echo "fetch_gpu_debs: $count packages, $((total / 1024)) KiB in $dir"
if [ "$total" -gt $((55 << 20)) ]; then
  echo "fetch_gpu_debs: over the 55 MiB budget (the device tool carries 64 MiB in all)" >&2
  exit 1
fi
