#!/usr/bin/env python3
"""The thread count does not change a single bit of what the trainer computes.

  check_threads.py grads --grad BIN --config FILE --data DIR --work DIR
  check_threads.py train --train BIN --config FILE --data DIR --work DIR

grads: dyt-grad (one forward and backward of configs/tiny.pbtxt on the first
  16 x 128 tokens of the training shard) with OMP_NUM_THREADS = 1, 2 and 3,
  for DyT and for RMSNorm: grads.safetensors, weights.safetensors and
  loss.json are byte-identical across the thread counts.
train: 3 optimizer steps of configs/tiny.pbtxt (2 accumulated micro-batches
  each, an evaluation of 2 batches at step 3) with OMP_NUM_THREADS = 1, 2 and 3: every logged loss,
  gradient norm, learning rate, DyT alpha and validation loss has the same
  bits (metrics.jsonl stores doubles with 17 digits), and the exported
  model.safetensors is byte-identical.
3 threads on a 2-core machine is oversubscribed, which is the point: the
OpenMP loops then split work unevenly, and the results must not notice.
Uses only the standard library.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_files import read_bytes as read  # noqa: E402

THREADS = (1, 2, 3)


def run(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    print(f"+ OMP_NUM_THREADS={threads}", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
        sys.exit(f"FAIL: exited {p.returncode} with OMP_NUM_THREADS={threads}")


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    return path


def compare(label, outputs):
    """outputs: {threads: {name: value}}; every value must equal the 1-thread one."""
    failed = False
    for t in THREADS[1:]:
        for name, value in outputs[THREADS[0]].items():
            if outputs[t][name] != value:
                print(f"{label}: {name} differs between 1 and {t} threads")
                failed = True
    return failed


def grads(args):
    shard = sorted(glob.glob(os.path.join(args.data, "train_*.bin")))[0]
    failed = False
    for norm in ("DYT", "RMSNORM"):
        outputs = {}
        for t in THREADS:
            out = fresh(os.path.join(args.work, f"grad_{norm}_{t}"))
            run([args.grad, "--config", args.config, "--set", f"model.norm={norm}",
                 "--tokens", shard, "--batch", "16", "--seq", "128", "--out", out], t)
            outputs[t] = {f: read(os.path.join(out, f))
                          for f in ("grads.safetensors", "weights.safetensors", "loss.json")}
        print(f"{norm}: loss {outputs[1]['loss.json'].decode().strip()}")
        failed |= compare(norm, outputs)
    if failed:
        sys.exit("FAIL: dyt-grad depends on the thread count")
    print("PASS")


def train(args):
    outputs = {}
    for t in THREADS:
        run_dir = fresh(os.path.join(args.work, f"train_{t}"))
        run([args.train, "--config", args.config,
             "--set", f"data.train_shards={args.data}/train_*.bin",
             "--set", f"data.val_shards={args.data}/val_*.bin",
             "--set", f"train.run_dir={run_dir}",
             "--set", "train.steps=3", "--set", "train.global_batch_tokens=4096",
             "--set", "train.eval_every=3", "--set", "train.eval_batches=2",
             "--set", "train.log_every=1"], t)
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f]
        keep = ("step", "loss", "grad_norm", "lr", "alpha", "val_loss", "skipped")
        decided = [{k: r[k] for k in keep if k in r} for r in records]
        steps = [r for r in decided if "loss" in r]
        if len(steps) != 3 or not any("val_loss" in r for r in decided):
            sys.exit(f"FAIL: expected 3 logged steps and an evaluation, got {decided}")
        exported = glob.glob(os.path.join(run_dir, "**", "model.safetensors"), recursive=True)
        if len(exported) != 1:
            sys.exit(f"FAIL: expected one exported model.safetensors under {run_dir}, got {exported}")
        outputs[t] = {"metrics": decided, "model.safetensors": read(exported[0])}
        print(f"{t} threads: losses {[r['loss'] for r in steps]}")
    if compare("dyt-train", outputs):
        sys.exit("FAIL: dyt-train depends on the thread count")
    print("PASS")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["grads", "train"])
    ap.add_argument("--grad")
    ap.add_argument("--train")
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    if getattr(args, args.mode if args.mode == "train" else "grad") is None:
        ap.error(f"{args.mode} needs --{'train' if args.mode == 'train' else 'grad'}")
    os.makedirs(args.work, exist_ok=True)
    globals()[args.mode](args)


if __name__ == "__main__":
    main()
