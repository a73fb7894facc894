#!/usr/bin/env bash
# The α₀ study of issue 12 (docs/alpha0.md): DyT's α₀ attention × α₀ FFN at
# the tiny recipe with a shorter budget (300 steps of 4096 tokens, a quarter
# of the tiny run's tokens), so the whole study takes about two hours on 2
# cores. Each part is one dyt-sweep: its table (sweep.md, sweep.jsonl) and
# plots land in OUT/<part>/, and the same command again continues where it
# stopped. The final DyT's α₀ is held at 6·sqrt(128/d), the width-128
# default scaled as 1/(√d·σ) (docs/alpha0.md says why).
#
#   scripts/alpha0_study.sh [OUT] [PART...]     (OUT: runs/alpha0; PART: all parts)
# Parts: grid_w64_l4 grid_w128_l4 diag_w256_l4 diag_w64_l2 diag_w128_l2
#        rms_<w>_l<d> dyisru_w128_l4
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/alpha0}
shift || true
sweep=${DYT_BUILD_DIR:-build}/launch/dyt-sweep
[ -x "$sweep" ] || { echo "alpha0_study.sh: $sweep not found; run scripts/build.sh first" >&2; exit 1; }

grid="1,2,4,8,16"
budget=(--set train.steps=${DYT_STUDY_STEPS:-300} --set train.global_batch_tokens=4096 --set train.eval_every=100
        --set train.eval_batches=8 --set train.log_every=50)
export OMP_NUM_THREADS=1

shape() {  # width depth -> the model overrides (heads of 32 channels, 2 KV heads, SwiGLU 8/3·d)
  local d=$1 l=$2 ffn=$(( ( ($1 * 8 / 3) + 31 ) / 32 * 32 ))
  echo "--set model.d_model=$d --set model.n_layers=$l --set model.n_heads=$(( d / 32 ))" \
       "--set model.n_kv_heads=2 --set model.ffn_hidden=$ffn"
}
final_alpha() { /usr/bin/python3 -c "import math; print(round(6 * math.sqrt(128 / $1), 2))"; }

part() {  # name width depth norm sweep-spec [extra --set ...]
  local name=$1 d=$2 l=$3 norm=$4 spec=$5
  shift 5
  # shellcheck disable=SC2046
  "$sweep" --config configs/tiny.pbtxt --out "$out/$name" --jobs 2 --sweep "$spec" \
    $(shape "$d" "$l") --set model.norm="$norm" --set model.alpha_init.final="$(final_alpha "$d")" \
    "${budget[@]}" "$@"
}

# α₀ attention = α₀ FFN: dyt-sweep has no tied fields, so one single-run
# sweep per value, their sweep.jsonl lines gathered into the part's.
diag() {  # name width depth norm
  local name=$1 v
  for v in ${grid//,/ }; do
    part "$name/a$v" "$2" "$3" "$4" "model.alpha_init.attention=$v" --set model.alpha_init.ffn="$v"
  done
  cat "$out/$name"/a*/sweep.jsonl > "$out/$name/sweep.jsonl"
}

run_part() {
  case $1 in
    grid_w64_l4)   part "$1" 64 4 DYT "model.alpha_init.attention=$grid;model.alpha_init.ffn=$grid" ;;
    grid_w128_l4)  part "$1" 128 4 DYT "model.alpha_init.attention=$grid;model.alpha_init.ffn=$grid" ;;
    diag_w256_l4)  diag "$1" 256 4 DYT ;;
    diag_w64_l2)   diag "$1" 64 2 DYT ;;
    diag_w128_l2)  diag "$1" 128 2 DYT ;;
    dyisru_w128_l4) diag "$1" 128 4 DYISRU ;;
    rms_w*_l*)     local w=${1#rms_w}; w=${w%_l*}; local l=${1##*_l}
                   part "$1" "$w" "$l" RMSNORM "train.seed=1234,2,3" ;;
    *) echo "alpha0_study.sh: unknown part $1" >&2; exit 2 ;;
  esac
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(grid_w64_l4 rms_w64_l4 grid_w128_l4 rms_w128_l4 diag_w256_l4 rms_w256_l4
                                 diag_w64_l2 rms_w64_l2 diag_w128_l2 rms_w128_l2 dyisru_w128_l4)
for p in "${parts[@]}"; do run_part "$p"; done
