#!/usr/bin/env bash
# The one script a GPU session runs: builds, tests and benchmarks the CUDA
# path and writes a report of the issue's goals, met or missed.
#
#   scripts/gpu_report.sh OUT_DIR
#
# For a GPU machine with the CUDA toolkit, CMake >= 3.24, ninja and python3
# with torch, and no network. Two modes:
#
# FULL (when $DYT_GPU_DEBS, default .gpu-debs, holds the .deb files of
# scripts/fetch_gpu_debs.sh, carried to the machine: run tool `carry`
# [".gpu-debs"]): unpacks them into $build/deps (scripts/gpu_deps_env.sh;
# nothing goes under /), configures the MAIN project against that prefix
# (-DDYT_CUDA_EMULATION=OFF, sm_90) and builds only the CUDA targets: the
# GPU test programs (test_*cuda*, not emulated; test_parallel_nccl_cuda, the
# NCCL communicator on one GPU, among them when NCCL is found: in
# $DYT_NCCL_ROOT if set, else the CUDA toolkit's, else the nvidia-nccl wheel
# of python3's PyTorch; the log says which, or that it is off), dyt-bench-norms-cuda
# and dyt-bench-step-cuda. Then, each stage cut by `timeout` and by a deadline
# for the whole script ($DYT_GPU_BUDGET_S, default 560 s from its start;
# a stage is skipped, and says so, when too little is left):
#   1. the GPU tests: ctest -R 'kernels\.cuda\.|\.cuda\.' (the kernels,
#      the whole-model parity test model.cuda.* and the NCCL communicator
#      parallel.cuda.nccl.*), 90 s
#   2. dyt-bench-step-cuda: the LLaMA-7B-shaped step at as many layers as fit
#      (tokens/s, MFU, breakdown by op family, DyT's share), 120 s
#   3. bench/torch_step_peer.py at the same layer count (torch.compile per
#      block, fused AdamW, SDPA) with the machine's own LD_LIBRARY_PATH,
#      $DYT_TORCH_TIMEOUT_S (default 200 s); if PyTorch had to drop layers to
#      fit, dyt-bench-step-cuda again at its count, 90 s
#   4. compute-sanitizer: memcheck, racecheck, synccheck and initcheck on the
#      norm kernels' tests at DYT_TEST_SHAPES=small, then memcheck on the other
#      GPU test programs, each run at most 25 s, $DYT_SANITIZE_S (default
#      90 s) in all; said so when the tool is absent
#   5. dyt-bench-norms-cuda (the norm kernels' bandwidth), 40 s
# OUT_DIR receives (8 files at most, written as each stage ends, so a call
# cut off still brings back what was measured):
#   env.txt          GPU, driver, toolkit, CMake, torch versions, the mode
#   build.log        unpacking, configure (with the paths CMake found) + build
#   tests.log        ctest -V of the GPU tests, then the sanitizer runs
#   bench.log        every benchmark's output
#   step_cuda.json   dyt-bench-step-cuda --json lines (fitted; at PyTorch's count)
#   step_torch.json  torch_step_peer.py --json
#   bench_cuda.json  dyt-bench-norms-cuda results
#   report.md        the step report (bench/cuda/step_report.py) + the norms one
#
# STANDALONE (no debs carried; the fallback): builds kernels/cuda/standalone
# (no protobuf/OpenBLAS/SentencePiece/GoogleTest/MPI needed), runs the kernel
# tests (not the NCCL communicator's: it needs the main build's MPI),
# benchmarks the norm kernels next to PyTorch (bench_norms_torch.py,
# eager and torch.compile, $DYT_TORCH_TIMEOUT_S default 420 s) and writes
# env.txt, build.log, sass.txt, tests.log, bench.log, bench_cuda.json,
# bench_torch.json, report.md. No whole step: that needs the main build.
#
# Knobs: DYT_GPU_BUILD_DIR (default build-gpu), DYT_GPU_DEBS, DYT_GPU_BUDGET_S,
# DYT_BENCH_ARGS (norm benchmarks), DYT_STEP_ARGS (dyt-bench-step-cuda, e.g.
# "--iters 5"), DYT_TORCH_PEER (another peer script, for testing this one),
# DYT_SKIP_TESTS=1, DYT_SKIP_TORCH=1, DYT_SANITIZE_S=0 (no
# sanitizer), DYT_TORCH_MODES (standalone), and DYT_GPU_DRY_RUN=1: everything
# that needs no GPU for real (unpack, configure, the target list, the report
# from whatever JSON is there), every GPU build/run step only printed; for
# checking this script on a machine without a GPU.
# Exit status: non-zero when the build, a test or a benchmark failed (the
# report is still written).
set -uo pipefail
out=${1:?usage: scripts/gpu_report.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DYT_GPU_BUILD_DIR:-$root/build-gpu}
debs=${DYT_GPU_DEBS:-$root/.gpu-debs}
dry=${DYT_GPU_DRY_RUN:-0}
mkdir -p "$out" "$build"
out=$(cd "$out" && pwd)
build=$(cd "$build" && pwd)
jobs=$(nproc 2>/dev/null || echo 4)
bench_args=${DYT_BENCH_ARGS:-}
start_s=$(date +%s)
deadline=$((start_s + ${DYT_GPU_BUDGET_S:-560}))
say() { echo "[gpu_report] $*"; }
left() { echo $((deadline - $(date +%s))); }
# tbox CAP [MIN]: the seconds a stage may take, min(CAP, time left); prints
# nothing (and the caller skips the stage) when less than MIN (default 15) is left.
tbox() {
  local cap=$1 min=${2:-15} l
  l=$(left)
  [ "$l" -lt "$cap" ] && cap=$l
  [ "$cap" -ge "$min" ] && echo "$cap"
}
# Runs a GPU step, or in a dry run only says what it would run.
gpu() {
  if [ "$dry" = 1 ]; then
    echo "[dry run] $*"
    return 0
  fi
  "$@"
}

mode=standalone
if compgen -G "$debs/*.deb" >/dev/null; then mode=full; fi

{
  date -u
  echo "mode: $mode (debs: $debs)"
  nvidia-smi || echo "nvidia-smi failed"
  command -v nvcc && nvcc --version
  cmake --version | head -1
  command -v compute-sanitizer || echo "compute-sanitizer: absent"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
  echo "git: $(git -C "$root" rev-parse HEAD 2>/dev/null) $(git -C "$root" status --short 2>/dev/null | wc -l) changed files"
} >"$out/env.txt" 2>&1

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
status=0

# ============================ standalone (fallback) ============================
if [ "$mode" = standalone ]; then
  say "no .deb files in $debs: standalone kernels build into $build (no whole step)"
  say "the NCCL communicator test (parallel.cuda.nccl.*) needs the full build (MPI from the debs): not run"
  start=$(date +%s)
  if ! { cmake -S "$root/kernels/cuda/standalone" -B "$build" "${generator[@]}" \
           -DCMAKE_BUILD_TYPE=Release -DDYT_CUDA_PTXAS_VERBOSE=ON -DDYT_CUDA_EMULATION=OFF &&
         gpu cmake --build "$build" -j "$jobs"; } >"$out/build.log" 2>&1; then
    say "build FAILED; tail of build.log:"
    tail -30 "$out/build.log"
    exit 1
  fi
  say "built in $(($(date +%s) - start)) s"
  gpu python3 "$root/bench/cuda/sass_mix.py" "$build/kernels_cuda/libdyt_kernels_cuda.a" >"$out/sass.txt" 2>&1 ||
    say "sass_mix.py failed (see sass.txt); going on"
  if [ "${DYT_SKIP_TESTS:-0}" != 1 ]; then
    say "running the GPU tests"
    (cd "$build" && gpu ctest -V --timeout 900) >"$out/tests.log" 2>&1 || status=1
    grep -E "tests passed|passed, .* failed|FAILED" "$out/tests.log" | tail -8
  fi
  say "benchmarking the CUDA kernels"
  # shellcheck disable=SC2086
  gpu "$build/bench/dyt-bench-norms-cuda" --json "$out/bench_cuda.json" $bench_args >"$out/bench.log" 2>&1 ||
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
    gpu timeout "$limit" python3 "$root/bench/cuda/bench_norms_torch.py" --json "$out/bench_torch.json" \
      --modes "${DYT_TORCH_MODES:-eager,compile}" $bench_args >>"$out/bench.log" 2>&1 ||
      say "bench_norms_torch.py FAILED or ran past ${limit} s (see bench.log); reporting what it measured"
    report || status=1
  fi
  cat "$out/report.md"
  exit $status
fi

# ================================== full =======================================
report() {  # report.md from whatever has been measured so far
  local args=(--cuda "$out/step_cuda.json") norms=""
  [ -f "$out/step_torch.json" ] && args+=(--torch "$out/step_torch.json")
  [ -f "$out/tests.log" ] && args+=(--tests "$out/tests.log")
  python3 "$root/bench/cuda/step_report.py" "${args[@]}" >"$out/report.md.tmp" || status=1
  if [ -s "$out/bench_cuda.json" ]; then
    norms=$(python3 "$root/bench/cuda/make_report.py" --cuda "$out/bench_cuda.json") || status=1
  fi
  { cat "$out/report.md.tmp"; [ -n "$norms" ] && printf '\n%s\n' "$norms"; } >"$out/report.md"
  rm -f "$out/report.md.tmp"
}

say "full build: unpacking $(ls "$debs"/*.deb | wc -l) packages into $build/deps"
mkdir -p "$build"
# shellcheck source=scripts/gpu_deps_env.sh
. "$root/scripts/gpu_deps_env.sh"
start=$(date +%s)
# In this shell, not a subshell: dyt_deps_env's exports serve every later
# stage, except PyTorch, which keeps the machine's own library path.
orig_ld=${LD_LIBRARY_PATH-}
# The packages' CMake files (GTest's) state old policy versions, which CMake 4
# (a pip-installed CMake may be one) refuses without this; older CMake ignores it.
export CMAKE_POLICY_VERSION_MINIMUM=${CMAKE_POLICY_VERSION_MINIMUM:-3.5}
cfg_rc=0
{
  echo "== unpacking $debs into $build/deps" &&
    dyt_deps_env "$debs" "$build/deps" &&
    echo "== configure" &&
    cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDYT_CUDA_EMULATION=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DDYT_CUDA_PTXAS_VERBOSE=ON "${DYT_DEPS_CMAKE_ARGS[@]}" \
      ${DYT_NCCL_ROOT:+-DDYT_NCCL_ROOT="$DYT_NCCL_ROOT"}
} >"$out/build.log" 2>&1 || cfg_rc=1
{
  echo "== what CMake found (all but the CUDA compiler and NCCL should lie under $build/deps)"
  grep -E "^(Protobuf_INCLUDE_DIR|Protobuf_LIBRARY_RELEASE|Protobuf_PROTOC_EXECUTABLE|GTest_DIR|DYT_OPENBLAS_OPENMP|MPI_CXX_HEADER_DIR|MPI_mpi_LIBRARY|pkgcfg_lib_SENTENCEPIECE_sentencepiece|CMAKE_CUDA_COMPILER|DYT_NCCL_INCLUDE_DIR|DYT_NCCL_LIBRARY)[:=]" \
    "$build/CMakeCache.txt"
} >>"$out/build.log" 2>&1
if [ $cfg_rc -ne 0 ]; then
  say "unpacking or configure FAILED; tail of build.log:"
  tail -30 "$out/build.log"
  report
  exit 1
fi
# The CUDA targets: GPU test programs (not emulated) and the CUDA benchmarks.
mapfile -t targets < <(cmake --build "$build" --target help 2>/dev/null |
  sed -E 's/^\.\.\. //; s/: .*$//' | grep -E '^(test_[A-Za-z0-9_]*cuda[A-Za-z0-9_]*|test_cublaslt_real|dyt-bench-[a-z-]*-cuda)$' |
  grep -v '_emu' | sort -u)
say "configured in $(($(date +%s) - start)) s; building ${#targets[@]} targets: ${targets[*]}"
if printf '%s\n' "${targets[@]}" | grep -qx test_parallel_nccl_cuda; then
  say "NCCL: $(grep -m1 'dyt-train: NCCL' "$out/build.log" | sed 's/^-- //')"
else
  say "NCCL OFF: $(grep -m1 'dyt-train: NCCL' "$out/build.log" | sed 's/^-- //'): the NCCL communicator test is not built (DYT_NCCL_ROOT=DIR with include/nccl.h and lib/libnccl.so* turns it on)"
fi
echo "== targets: ${targets[*]}" >>"$out/build.log"
if t=$(tbox 330 60); then
  targs=()
  for x in "${targets[@]}"; do targs+=(--target "$x"); done
  # ninja -k 0: one target that fails to build does not stop the others.
  [ ${#generator[@]} -gt 0 ] && targs+=(-- -k 0)
  if ! gpu timeout "$t" cmake --build "$build" -j "$jobs" "${targs[@]}" >>"$out/build.log" 2>&1; then
    say "build FAILED or ran past $t s; tail of build.log:"
    tail -30 "$out/build.log"
    status=1
  fi
else
  say "no time left to build"; status=1
fi
say "built at +$(($(date +%s) - start_s)) s"
[ -f "$build/kernels/cuda/libdyt_kernels_cuda.a" ] &&
  { echo "== SASS instruction mix"; python3 "$root/bench/cuda/sass_mix.py" "$build/kernels/cuda/libdyt_kernels_cuda.a"; } \
    >>"$out/build.log" 2>&1
report

# 1. GPU tests (kernels and the whole-model parity test).
if [ "${DYT_SKIP_TESTS:-0}" != 1 ]; then
  if t=$(tbox 90 20); then
    say "GPU tests (ctest -R 'kernels\\.cuda\\.|\\.cuda\\.', at most $t s)"
    (cd "$build" && gpu timeout "$t" ctest -V -R 'kernels\.cuda\.|\.cuda\.' -E '_emu' --timeout 80) \
      >"$out/tests.log" 2>&1 || status=1
    grep -E "tests passed|tests failed|\*\*\*Failed|Timeout" "$out/tests.log" | tail -8
  else
    say "GPU tests skipped: no time left" | tee "$out/tests.log"
  fi
  report
fi

# 2. The whole step, layers fitted to memory.
step_bin=$build/bench/cuda/dyt-bench-step-cuda
layers=""
if t=$(tbox 120 40); then
  say "dyt-bench-step-cuda (at most $t s)"
  echo "== dyt-bench-step-cuda ${DYT_STEP_ARGS:-}" >>"$out/bench.log"
  # shellcheck disable=SC2086
  gpu timeout "$t" "$step_bin" --json ${DYT_STEP_ARGS:-} >"$out/step_cuda.out" 2>&1 ||
    { say "dyt-bench-step-cuda FAILED or ran past $t s"; status=1; }
  cat "$out/step_cuda.out" >>"$out/bench.log" 2>/dev/null
  grep '^{' "$out/step_cuda.out" >"$out/step_cuda.json" 2>/dev/null
  rm -f "$out/step_cuda.out"
  layers=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["layers"])' \
    "$out/step_cuda.json" 2>/dev/null)
  grep -E "^(model|step|DyT)" "$out/bench.log" | tail -3
else
  say "dyt-bench-step-cuda skipped: no time left"
fi
report

# 3. The PyTorch peer at the same layer count.
if [ "${DYT_SKIP_TORCH:-0}" != 1 ]; then
  peer_layers=${layers:-${DYT_TORCH_LAYERS:-}}
  [ "$dry" = 1 ] && peer_layers=${peer_layers:-32}
  if [ -z "$peer_layers" ]; then
    say "torch_step_peer.py skipped: no layer count from dyt-bench-step-cuda"
  elif t=$(tbox "${DYT_TORCH_TIMEOUT_S:-200}" 60); then
    say "torch_step_peer.py at $peer_layers layers (at most $t s; compiling takes most of it)"
    echo "== torch_step_peer.py --layers $peer_layers" >>"$out/bench.log"
    # Its own clock stops timing 15 s before `timeout` would kill it.
    gpu env LD_LIBRARY_PATH="$orig_ld" DYT_TORCH_TIMEOUT_S=$((t - 15)) \
      timeout "$t" python3 "${DYT_TORCH_PEER:-$root/bench/torch_step_peer.py}" \
      --layers "$peer_layers" --json >"$out/step_torch.out" 2>&1 ||
      say "torch_step_peer.py FAILED or ran past $t s (see bench.log)"
    cat "$out/step_torch.out" >>"$out/bench.log" 2>/dev/null
    grep '^{' "$out/step_torch.out" | tail -1 >"$out/step_torch.json" 2>/dev/null
    rm -f "$out/step_torch.out"
    torch_layers=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["layers"])' \
      "$out/step_torch.json" 2>/dev/null)
    if [ -n "$torch_layers" ] && [ "$torch_layers" != "$peer_layers" ]; then
      if t=$(tbox 90 40); then
        say "PyTorch fitted only $torch_layers layers: dyt-bench-step-cuda again at that count (at most $t s)"
        echo "== dyt-bench-step-cuda --layers $torch_layers (the PyTorch peer's count)" >>"$out/bench.log"
        gpu timeout "$t" "$step_bin" --json --layers "$torch_layers" --iters 5 --breakdown-iters 0 \
          >"$out/step_cuda.out" 2>&1 || status=1
        cat "$out/step_cuda.out" >>"$out/bench.log" 2>/dev/null
        grep '^{' "$out/step_cuda.out" >>"$out/step_cuda.json" 2>/dev/null
        rm -f "$out/step_cuda.out"
      fi
    fi
  else
    say "torch_step_peer.py skipped: no time left"
  fi
  report
fi

# 4. compute-sanitizer over small shapes, within DYT_SANITIZE_S.
san_budget=${DYT_SANITIZE_S:-90}
if [ "$san_budget" -gt 0 ] && [ "${DYT_SKIP_TESTS:-0}" != 1 ]; then
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  if [ -z "$san" ]; then
    echo "[sanitizer] all: compute-sanitizer absent on this machine" >>"$out/tests.log"
  else
    san_end=$(($(date +%s) + san_budget))
    # All four tools on the norm kernels' small shape set first, then
    # memcheck on the other GPU test programs, each run at most 25 s.
    norms_exe=$build/tests/kernels/cuda/test_kernels_cuda
    runs=("memcheck $norms_exe" "racecheck $norms_exe" "synccheck $norms_exe" "initcheck $norms_exe")
    for exe in "$build"/tests/kernels/cuda/test_*cuda; do
      [ -x "$exe" ] && [ "$exe" != "$norms_exe" ] && runs+=("memcheck $exe")
    done
    for r in "${runs[@]}"; do
      tool=${r%% *} exe=${r#* }
      t=$((san_end - $(date +%s)))
      l=$(left); [ "$l" -lt "$t" ] && t=$l
      [ "$t" -gt 25 ] && t=25
      if [ "$t" -lt 5 ]; then
        echo "[sanitizer] $tool $(basename "$exe"): not run (the ${san_budget} s budget is spent)" >>"$out/tests.log"
        continue
      fi
      echo "== compute-sanitizer --tool $tool $exe (DYT_TEST_SHAPES=small, at most $t s)" >>"$out/tests.log"
      DYT_TEST_SHAPES=small gpu timeout "$t" "$san" --tool "$tool" --error-exitcode 99 "$exe" \
        >>"$out/tests.log" 2>&1
      rc=$?
      case $rc in
        0) v="no errors"; [ "$dry" = 1 ] && v="(dry run)" ;;
        99) v="ERRORS (exit 99; see above in tests.log)"; status=1 ;;
        124|137) v="cut at $t s (no errors before that)" ;;
        *) v="test failed under the tool (exit $rc)"; status=1 ;;
      esac
      echo "[sanitizer] $tool $(basename "$exe"): $v" | tee -a "$out/tests.log"
    done
  fi
  report
fi

# 5. The norm kernels' bandwidth (the earlier report's numbers).
if t=$(tbox 40 15); then
  say "dyt-bench-norms-cuda (at most $t s)"
  echo "== dyt-bench-norms-cuda" >>"$out/bench.log"
  # shellcheck disable=SC2086
  gpu timeout "$t" "$build/bench/cuda/dyt-bench-norms-cuda" --json "$out/bench_cuda.json" $bench_args \
    >>"$out/bench.log" 2>&1 || { say "dyt-bench-norms-cuda FAILED or ran past $t s"; status=1; }
else
  say "dyt-bench-norms-cuda skipped: no time left"
fi
report
say "done at +$(($(date +%s) - start_s)) s"
cat "$out/report.md"
exit $status
