#!/bin/sh
# One dyt-train run of 20 steps of configs/tiny.pbtxt on the fortunes shards,
# as DP ranks of THREADS OpenMP threads each, for timing whole commands:
#
#   bench/run_dp_bench.sh DP THREADS RUN_DIR [BUILD_DIR] [DATA_DIR]
#   farm-bench -n 5 --timeout 600 --vs 'bench/run_dp_bench.sh 1 2 /tmp/b' -- bench/run_dp_bench.sh 2 1 /tmp/a
#
# DATA_DIR defaults to the shards the tests tokenize (BUILD_DIR/tests/trainer/run/fortunes).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dp=$1 threads=$2 run_dir=$3 build=${4:-$root/build}
data=${5:-$build/tests/trainer/run/fortunes}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=$threads
set -- --config "$root/configs/tiny.pbtxt" --set "data.train_shards=$data/train_*.bin" \
  --set "data.val_shards=$data/val_*.bin" --set train.steps=20 --set train.eval_every=0 \
  --set "train.run_dir=$run_dir"
if [ "$dp" = 1 ]; then exec "$build/trainer/dyt-train" "$@"; fi
exec mpirun --oversubscribe -x OMP_NUM_THREADS -np "$dp" "$build/trainer/dyt-train" "$@" --set "parallel.dp=$dp"
