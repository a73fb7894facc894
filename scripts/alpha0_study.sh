#!/usr/bin/env bash
# The α₀ study of issue 12 (docs/alpha0.md): DyT's α₀ at the tiny recipe
# (configs/tiny.pbtxt, whatever its optimizer settings are) with a shorter
# budget, 300 steps of 4096 tokens (a quarter of the tiny run's tokens), sized
# to about an hour on 2 cores (an hour and a half with width 256). Each part
# is one dyt-sweep run with one job (a diagonal: one per α₀): its table
# (sweep.md, sweep.jsonl) and plots land in OUT/<part>/, and the
# same command again continues where it stopped. The parts run in two lanes
# side by side, one core each, balanced by their cost (a width-256 run costs
# ~3 width-128 runs, ~7 width-64 runs). The final DyT's α₀ is held at
# 6·sqrt(128/d), the width-128 default scaled as 1/√d (docs/alpha0.md).
#
#   scripts/alpha0_study.sh [OUT] [PART...]   (OUT: runs/alpha0; no PART: both lanes)
# Parts (w: width, l: layers; heads of 32 channels, 2 KV heads, SwiGLU 8/3·d):
#   grid_w64_l4      α₀ attention × α₀ FFN over {1/4, 1, 4}
#   diag_w<W>_l<L>   α₀ attention = α₀ FFN over {1/4, 1/2, 1, …, 16}  (W 64/128, L 2/4;
#                    W 256: {1/4, 1, 4}, not run by default)
#   dyisru_w64_l4    the same diagonal with DyISRU
#   rms_w<W>_l<L>    RMSNorm over seeds 1234, 2, 3 (rms1_...: seed 1234 only)
#   seeds<A>_w<W>_l<L>  DyT at α₀ attention = FFN = A over seeds 2 and 3 (a
#                    cell's seed 1234 is the grid's or diagonal's run)
# Afterwards scripts/alpha0_report.py OUT docs/alpha0 gathers the tables,
# heatmaps and each run's final α and saturation.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/alpha0}
shift || true
sweep=${DYT_BUILD_DIR:-build}/launch/dyt-sweep
[ -x "$sweep" ] || { echo "alpha0_study.sh: $sweep not found; run scripts/build.sh first" >&2; exit 1; }

# α₀ values: the diagonals from 1/4 to 16 (factors of 2; width 256, the
# costliest, every factor of 4), the attention × FFN grid every factor of 4.
diag_values="0.25,0.5,1,2,4,8,16"
wide_values="0.25,1,4"
grid="0.25,1,4"
budget=(--set train.steps=${DYT_STUDY_STEPS:-300} --set train.global_batch_tokens=4096 --set train.eval_every=100
        --set train.eval_batches=8 --set train.log_every=50)
export OMP_NUM_THREADS=1

shape() {  # width depth -> the model overrides
  local d=$1 l=$2 ffn=$(( ( ($1 * 8 / 3) + 31 ) / 32 * 32 ))
  echo "--set model.d_model=$d --set model.n_layers=$l --set model.n_heads=$(( d / 32 ))" \
       "--set model.n_kv_heads=2 --set model.ffn_hidden=$ffn"
}
final_alpha() { /usr/bin/python3 -c "import math; print(round(6 * math.sqrt(128 / $1), 2))"; }

part() {  # name width depth norm sweep-spec [extra --set ...]
  local name=$1 d=$2 l=$3 norm=$4 spec=$5
  shift 5
  # shellcheck disable=SC2046
  "$sweep" --config configs/tiny.pbtxt --out "$out/$name" --jobs 1 --sweep "$spec" \
    $(shape "$d" "$l") --set model.norm="$norm" --set model.alpha_init.final="$(final_alpha "$d")" \
    "${budget[@]}" "$@" > "$out/$name.log" 2>&1 || {
      echo "alpha0_study.sh: part $name failed (exit $?), see $out/$name.log" >&2; return 1; }
}

# α₀ attention = α₀ FFN: dyt-sweep has no tied fields, so one single-run
# sweep per value, their sweep.jsonl lines gathered into the part's.
diag() {  # name width depth norm [values]
  local name=$1 v values=${5:-$diag_values}
  mkdir -p "$out/$name"
  for v in ${values//,/ }; do
    part "$name/a$v" "$2" "$3" "$4" "model.alpha_init.attention=$v" --set model.alpha_init.ffn="$v"
  done
  cat "$out/$name"/a*/sweep.jsonl > "$out/$name/sweep.jsonl"
}

run_part() {
  local w l
  case $1 in
    grid_w*_l*|diag_w*_l*|dyisru_w*_l*|rms_w*_l*|rms1_w*_l*|seeds*_w*_l*)
      w=${1#*_w}; w=${w%_l*}; l=${1##*_l} ;;
    *) echo "alpha0_study.sh: unknown part $1" >&2; exit 2 ;;
  esac
  echo "alpha0_study.sh: $(date +%H:%M:%S) part $1" >&2
  case $1 in
    grid_*)   part "$1" "$w" "$l" DYT "model.alpha_init.attention=$grid;model.alpha_init.ffn=$grid" ;;
    diag_*)   if [ "$w" -ge 256 ]; then diag "$1" "$w" "$l" DYT "$wide_values"; else diag "$1" "$w" "$l" DYT; fi ;;
    dyisru_*) diag "$1" "$w" "$l" DYISRU ;;
    rms_*)    part "$1" "$w" "$l" RMSNORM "train.seed=1234,2,3" ;;
    rms1_*)   part "$1" "$w" "$l" RMSNORM "train.seed=1234" ;;
    seeds*)   local a=${1%%_*}; a=${a#seeds}
              part "$1" "$w" "$l" DYT "model.alpha_init.attention=$a;model.alpha_init.ffn=$a;train.seed=2,3" ;;
  esac
}

# A lane goes on past a failed part (its log says why) and fails at the end.
lane() { local p rc=0; for p in "$@"; do run_part "$p" || rc=1; done; return $rc; }

mkdir -p "$out"
if [ $# -gt 0 ]; then lane "$@"; exit $?; fi
# The lanes take ~50 and ~55 min here (AMD EPYC, one thread a run): a
# width-64 run takes ~2 min, width 128 ~5, width 256 ~10. Width 256
# (diag_w256_l4 rms1_w256_l4, ~35 min more) is not in them: name its parts.
lane diag_w128_l4 rms_w128_l4 &
lane_a=$!
lane grid_w64_l4 rms_w64_l4 dyisru_w64_l4 diag_w64_l2 rms_w64_l2 seeds0.25_w64_l4 seeds1_w64_l4 &
lane_b=$!
status=0
wait $lane_a || status=1
wait $lane_b || status=1
exit $status
