#!/usr/bin/env bash
# The CPU training-step benchmark: dyt-bench-step (C++) against the PyTorch
# float32 reference (bench/bench_step_torch.py), same config, same step, same
# thread count, measured in the same run. Builds nothing.
#
#   bench/run_step_bench.sh [--build DIR] [--config FILE] [--threads N[,N...]]
#                           [--warmup 2] [--iters 10] [--rounds 1] [--set a.b=v ...]
#
#   --build    build directory holding bench/dyt-bench-step (default: build/ in the repo)
#   --config   run config (default: configs/tiny.pbtxt in the repo)
#   --threads  thread counts to run, comma-separated (default: nproc); e.g. --threads 2,1.
#              C++ gets OMP_NUM_THREADS=N; PyTorch gets OMP_NUM_THREADS=N and
#              torch.set_num_threads(N)
#   --rounds   run the C++/PyTorch pair this many times, alternating, and keep
#              each one's best median (for machines with other load)
#   --set      config overrides, passed to dyt-bench-step
#   --torch-blas  which OpenBLAS build PyTorch runs with, comma-separated, one
#              table row each: openmp (default; LD_LIBRARY_PATH points
#              libblas.so.3 at /usr/lib/<arch>/openblas-openmp, one OpenMP pool
#              as in the C++ build) and/or system (whatever the libblas.so.3
#              alternative is; on Debian the pthread build, whose threads
#              fight torch's OpenMP threads: with 2+ threads it is several
#              times slower, so it is no fair peer, only a reference point)
#
# Prints one Markdown table: implementation | threads | median s/step |
# min–max s/step | tokens/s | ratio, where ratio = PyTorch median / C++
# median at the same thread count (> 1: C++ faster).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${DYT_REFERENCE_PYTHON:-/usr/bin/python3}"
build="$repo/build"
config="$repo/configs/tiny.pbtxt"
threads="$(nproc)"
warmup=2
iters=10
rounds=1
sets=()
torch_blas=openmp

die() { echo "run_step_bench.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    --config) config="${2:?--config needs a file}"; shift 2 ;;
    --threads) threads="${2:?--threads needs N[,N...]}"; shift 2 ;;
    --warmup) warmup="${2:?--warmup needs a number}"; shift 2 ;;
    --iters) iters="${2:?--iters needs a number}"; shift 2 ;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --torch-blas) torch_blas="${2:?--torch-blas needs openmp and/or system}"; shift 2 ;;
    --set) sets+=(--set "${2:?--set needs a.b=v}"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
bench="$build/bench/dyt-bench-step"
[[ -x "$bench" ]] || die "$bench not found; build it: cmake --build $build --target dyt-bench-step"
[[ -f "$config" ]] || die "config $config not found"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive integer"
IFS=',' read -r -a thread_list <<< "$threads"
for n in "${thread_list[@]}"; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "bad thread count '$n'"; done
IFS=',' read -r -a blas_list <<< "$torch_blas"
openmp_dir="$(ls -d /usr/lib/*/openblas-openmp 2>/dev/null | head -n 1 || true)"
for b in "${blas_list[@]}"; do
  case "$b" in
    system) ;;
    openmp) [[ -n "$openmp_dir" ]] || die "--torch-blas openmp: no /usr/lib/<arch>/openblas-openmp (apt install libopenblas0-openmp)" ;;
    *) die "--torch-blas: '$b' is not openmp or system" ;;
  esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
shape="$tmp/shape.json"

echo "# $(date -u '+%Y-%m-%d %H:%M UTC') | $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# config $config ${sets[*]:-} | warmup $warmup, iters $iters, rounds $rounds"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
results="$tmp/results.jsonl"
: > "$results"
for n in "${thread_list[@]}"; do
  for ((r = 1; r <= rounds; ++r)); do
    OMP_NUM_THREADS="$n" "$bench" --config "$config" "${sets[@]}" --warmup "$warmup" --iters "$iters" \
      --shape-out "$shape" --json > "$tmp/cpp.out" || { cat "$tmp/cpp.out" >&2; die "dyt-bench-step failed"; }
    tail -n 1 "$tmp/cpp.out" >> "$results"
    grep -E '^(threads|s/step)' "$tmp/cpp.out" | sed "s/^/# C++     $n thr, round $r: /" >&2
    for b in "${blas_list[@]}"; do
      libpath="${LD_LIBRARY_PATH:-}"
      [[ "$b" == openmp ]] && libpath="$openmp_dir${libpath:+:$libpath}"
      LD_LIBRARY_PATH="$libpath" OMP_NUM_THREADS="$n" "$python" "$repo/bench/bench_step_torch.py" \
        --shape "$shape" --threads "$n" --warmup "$warmup" --iters "$iters" --json > "$tmp/torch.out" \
        || { cat "$tmp/torch.out" >&2; die "bench_step_torch.py failed"; }
      tail -n 1 "$tmp/torch.out" >> "$results"
      grep -E '^(threads|s/step)' "$tmp/torch.out" | sed "s/^/# PyTorch ($b BLAS) $n thr, round $r: /" >&2
    done
  done
done
echo "# load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$results" <<'EOF'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
def name(r):
    if r["impl"].startswith("dyt-train"):
        return r["impl"]
    blas = r.get("blas", "")
    kind = next((k for k in ("OpenMP", "pthread", "sequential") if k in blas), "?")
    return f"{r['impl']}, OpenBLAS {kind}"
best = {}  # (name, threads) -> run with the lowest median
order = []
for r in runs:
    key = (name(r), r["threads"])
    if key[0] not in order:
        order.append(key[0])  # first seen first: the C++ row leads
    if key not in best or r["median_s"] < best[key]["median_s"]:
        best[key] = r
first = runs[0]
print(f"{first['params']:,} parameters, {first['tokens_per_step']} tokens/step "
      f"({first['micro_batches']} micro-batches); C++ BLAS: {first.get('blas', '?')}")
print()
print("| implementation | threads | median s/step | min–max s/step | tokens/s | ratio |")
print("|---|---:|---:|---:|---:|---:|")
for threads in sorted({k[1] for k in best}, reverse=True):
    cpp = best.get((order[0], threads))
    for impl in order:
        r = best.get((impl, threads))
        if r is None:
            continue
        ratio = f"{r['median_s'] / cpp['median_s']:.2f}" if cpp else "–"
        print(f"| {impl} | {threads} | {r['median_s']:.3f} | {r['min_s']:.3f}–{r['max_s']:.3f} "
              f"| {r['tokens_per_s']:,.0f} | {ratio} |")
print()
rounds = max(sum(1 for r in runs if (name(r), r["threads"]) == k) for k in best)
print("ratio = PyTorch median / C++ median at the same thread count (> 1: C++ faster); "
      "C++ rows are 1.00 by definition." + (f" Each row: the best median of {rounds} rounds." if rounds > 1 else ""))
EOF
