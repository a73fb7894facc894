#!/usr/bin/env bash
# Times tuning variants of the CUDA norm kernels in one call (GPU machine).
#
#   bench/cuda/sweep.sh OUT_DIR [VARIANT ...]
#
# A VARIANT is a ';'-separated list of KNOB=VALUE (the knobs are at the top
# of kernels/cuda/detail.h), or 'default'. Each variant is built standalone
# into build-gpu-sweep/<n>/ (in parallel), then dyt-bench-norms-cuda runs on
# each, one after another; OUT_DIR gets sweep.log, sweep_<n>.json and
# sweep.md, a table of median µs per op and width with one column per variant.
# Extra benchmark arguments: $DYT_BENCH_ARGS (default "--widths 4096,8192 --reps 100").
set -uo pipefail
out=${1:?usage: bench/cuda/sweep.sh OUT_DIR [VARIANT ...]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ $# -eq 0 ]; then
  set -- default \
    "DYT_CUDA_FWD_ROWS=2;DYT_CUDA_FWD_MIN_BLOCKS=2" \
    "DYT_CUDA_FWD_ROWS=8" \
    "DYT_CUDA_ROW_THREADS=256" \
    "DYT_CUDA_BWD_ROWS=2"
fi
variants=("$@")
n=${#variants[@]}
jobs=$(( $(nproc 2>/dev/null || echo 4) / n + 1 ))
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
log="$out/sweep.log"
: >"$log"

mkdir -p "$root/build-gpu-sweep"
pids=()
for i in "${!variants[@]}"; do
  v=${variants[$i]}
  [ "$v" = default ] && v=""
  dir="$root/build-gpu-sweep/$i"
  (cmake -S "$root/kernels/cuda/standalone" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
     "-DDYT_CUDA_TUNING=$v" -DDYT_CUDA_EMULATION=OFF >"$dir.log" 2>&1 &&
   cmake --build "$dir" --target dyt-bench-norms-cuda -j "$jobs" >>"$dir.log" 2>&1) &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "variant $i (${variants[$i]}) failed to build:" | tee -a "$log"
    tail -20 "$root/build-gpu-sweep/$i.log" | tee -a "$log"
  fi
done

for i in "${!variants[@]}"; do
  bin="$root/build-gpu-sweep/$i/bench/dyt-bench-norms-cuda"
  [ -x "$bin" ] || continue
  echo "=== variant $i: ${variants[$i]}" >>"$log"
  # shellcheck disable=SC2086
  "$bin" --json "$out/sweep_$i.json" ${DYT_BENCH_ARGS:---widths 4096,8192 --reps 100} >>"$log" 2>&1 ||
    echo "variant $i failed to run" | tee -a "$log"
done

python3 - "$out" "${variants[@]}" >"$out/sweep.md" <<'PY'
import json, os, sys
out, variants = sys.argv[1], sys.argv[2:]
runs = []
for i, v in enumerate(variants):
    p = os.path.join(out, f"sweep_{i}.json")
    if os.path.exists(p):
        runs.append((i, v, {(r["op"], r["d"]): r for r in json.load(open(p))["results"]}))
print("median µs (of copy) per variant\n")
for i, v, _ in runs:
    print(f"- v{i}: {v}")
keys = sorted({k for _, _, r in runs for k in r}, key=lambda k: (k[1], k[0]))
print("\n| op | width | " + " | ".join(f"v{i}" for i, _, _ in runs) + " |")
print("|---|---:|" + "---:|" * len(runs))
for k in keys:
    cells = []
    for _, _, r in runs:
        x = r.get(k)
        cells.append(f"{x['median_us']:.1f} ({100 * x['of_copy']:.0f}%)" if x else "–")
    print(f"| {k[0]} | {k[1]} | " + " | ".join(cells) + " |")
PY
cat "$out/sweep.md"
