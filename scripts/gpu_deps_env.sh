# shellcheck shell=bash disable=SC2034
# Sourced (bash): unpacks the .deb files of scripts/fetch_gpu_debs.sh into a
# private prefix and points the build at it, for machines without those
# packages (the GPU machine). Nothing is installed under /.
#
#   . scripts/gpu_deps_env.sh && dyt_deps_env DEBS_DIR PREFIX
#
# Afterwards: PATH (protoc), LD_LIBRARY_PATH (the libraries at link and run
# time), PKG_CONFIG_LIBDIR + PKG_CONFIG_SYSROOT_DIR (SentencePiece's .pc,
# whose paths say /usr, read as PREFIX/usr) are exported, and the
# array DYT_DEPS_CMAKE_ARGS holds what CMake needs: CMAKE_PREFIX_PATH (GTest's
# config, protobuf, OpenBLAS's folder) and MPI found without its compiler
# wrapper (the wrapper has /usr compiled in). Returns non-zero when a .deb
# cannot be unpacked. Unpacks with dpkg -x, or without dpkg (or with
# DYT_DEPS_NO_DPKG=1, to test that path) with ar x + tar.
dyt_deps_env() {
  local debs=$1 prefix=$2 arch=x86_64-linux-gnu f
  mkdir -p "$prefix" || return 1
  prefix=$(cd "$prefix" && pwd)
  for f in "$debs"/*.deb; do
    if [ -z "${DYT_DEPS_NO_DPKG:-}" ] && command -v dpkg >/dev/null; then
      if ! dpkg -x "$f" "$prefix"; then
        echo "gpu_deps_env: dpkg -x $f failed" >&2
        return 1
      fi
    else  # no dpkg: a .deb is an ar archive holding data.tar.*
      local t abs
      abs=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
      t=$(mktemp -d)
      if ! (cd "$t" && ar x "$abs" && tar -xf data.tar.* -C "$prefix"); then
        echo "gpu_deps_env: ar x / tar of $f failed" >&2
        rm -rf "$t"
        return 1
      fi
      rm -rf "$t"
    fi
  done
  local u=$prefix/usr lib=$prefix/usr/lib/$arch
  # Debian reaches some libraries through update-alternatives links that
  # dpkg -x does not make; the openblas folder is searched directly instead.
  export PATH=$u/bin:$PATH
  export LD_LIBRARY_PATH=$lib:$lib/openblas-openmp:$lib/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PKG_CONFIG_LIBDIR=$lib/pkgconfig:$u/share/pkgconfig
  export PKG_CONFIG_SYSROOT_DIR=$prefix
  DYT_DEPS_PREFIX=$u
  DYT_DEPS_CMAKE_ARGS=(
    "-DCMAKE_PREFIX_PATH=$u"
    "-DProtobuf_PROTOC_EXECUTABLE=$u/bin/protoc"
    "-DMPI_SKIP_COMPILER_WRAPPER=ON"
    "-DMPI_CXX_SKIP_MPICXX=ON"
    "-DMPI_CXX_HEADER_DIR=$lib/openmpi/include"
    "-DMPI_CXX_LIB_NAMES=mpi"
    "-DMPI_mpi_LIBRARY=$lib/openmpi/lib/libmpi.so"
  )
}
