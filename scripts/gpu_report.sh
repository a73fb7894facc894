#!/usr/bin/env bash
# Builds the CUDA norm kernels standalone, runs their GPU tests, benchmarks them
# next to PyTorch (eager and torch.compile) and writes the report.
#
#   scripts/gpu_report.sh OUT_DIR
#
# For a GPU machine with the CUDA toolkit (nvcc), CMake >= 3.24 and python3
# with torch, and nothing else: no network, no protobuf/OpenBLAS/SentencePiece,
# no GoogleTest (the tests then build against tests/kernels/cuda/gtest_lite).
# It builds kernels/cuda/standalone into $DYT_GPU_BUILD_DIR (default
# build-gpu/). OUT_DIR receives (8 files):
#   env.txt          GPU, driver, toolkit, CMake, torch versions
#   build.log        configure + build, with ptxas register/spill reports
#   sass.txt         instruction mix of every kernel (bench/cuda/sass_mix.py)
#   tests.log        the GPU tests (ctest -V: every test, its seed, its verdict)
#   bench.log        both benchmarks' output
#   bench_cuda.json  dyt-bench-norms-cuda results
#   bench_torch.json bench_norms_torch.py results
#   report.md        the merged table and the issue's goals, met or missed
# Knobs: DYT_BENCH_ARGS (both benchmarks, e.g. "--reps 100"),
# DYT_TORCH_MODES (default eager,compile), DYT_TORCH_TIMEOUT_S (default 420:
# the PyTorch part is cut there, keeping what it measured), DYT_SKIP_TESTS=1,
# DYT_SKIP_TORCH=1.
# Exit status: non-zero when the build or a test failed (the report is still written).
set -uo pipefail
out=${1:?usage: scripts/gpu_report.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DYT_GPU_BUILD_DIR:-$root/build-gpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
jobs=$(nproc 2>/dev/null || echo 4)
bench_args=${DYT_BENCH_ARGS:-}
say() { echo "[gpu_report] $*"; }

{
  date -u
  nvidia-smi || echo "nvidia-smi failed"
  command -v nvcc && nvcc --version
  cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
  echo "git: $(git -C "$root" rev-parse HEAD 2>/dev/null) $(git -C "$root" status --short 2>/dev/null | wc -l) changed files"
} >"$out/env.txt" 2>&1

say "building into $build"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
start=$(date +%s)
if ! { cmake -S "$root/kernels/cuda/standalone" -B "$build" "${generator[@]}" \
         -DCMAKE_BUILD_TYPE=Release -DDYT_CUDA_PTXAS_VERBOSE=ON -DDYT_CUDA_EMULATION=OFF &&
       cmake --build "$build" -j "$jobs"; } >"$out/build.log" 2>&1; then
  say "build FAILED; tail of build.log:"
  tail -30 "$out/build.log"
  exit 1
fi
say "built in $(($(date +%s) - start)) s"
python3 "$root/bench/cuda/sass_mix.py" "$build/kernels_cuda/libdyt_kernels_cuda.a" >"$out/sass.txt" 2>&1 ||
  say "sass_mix.py failed (see sass.txt); going on"

status=0
if [ "${DYT_SKIP_TESTS:-0}" != 1 ]; then
  say "running the GPU tests"
  (cd "$build" && ctest -V --timeout 900) >"$out/tests.log" 2>&1 || status=1
  grep -E "tests passed|passed, .* failed|FAILED" "$out/tests.log" | tail -8
fi

say "benchmarking the CUDA kernels"
# shellcheck disable=SC2086
"$build/bench/dyt-bench-norms-cuda" --json "$out/bench_cuda.json" $bench_args >"$out/bench.log" 2>&1 ||
  { say "dyt-bench-norms-cuda FAILED"; status=1; }

tests_arg=()
[ -f "$out/tests.log" ] && tests_arg=(--tests "$out/tests.log")
report() {  # report.md from whatever has been measured so far
  local torch_json=()
  [ -f "$out/bench_torch.json" ] && torch_json=(--torch "$out/bench_torch.json")
  python3 "$root/bench/cuda/make_report.py" --cuda "$out/bench_cuda.json" "${torch_json[@]}" \
    "${tests_arg[@]}" >"$out/report.md"
}
# A first report before PyTorch, so that a call cut off by the device's time
# limit while torch.compile works still brings one back.
report || status=1

if [ "${DYT_SKIP_TORCH:-0}" != 1 ]; then
  limit=${DYT_TORCH_TIMEOUT_S:-420}
  say "benchmarking PyTorch (${DYT_TORCH_MODES:-eager,compile}; compiling takes a few minutes, at most ${limit} s)"
  # shellcheck disable=SC2086
  timeout "$limit" python3 "$root/bench/cuda/bench_norms_torch.py" --json "$out/bench_torch.json" \
    --modes "${DYT_TORCH_MODES:-eager,compile}" $bench_args >>"$out/bench.log" 2>&1 ||
    say "bench_norms_torch.py FAILED or ran past ${limit} s (see bench.log); reporting what it measured"
  report || status=1
fi
cat "$out/report.md"
exit $status
