"""dyt-train's TensorBoard event file read back by the tensorboard package
itself (EventAccumulator, as `tensorboard --logdir` loads it): every scalar of
metrics.jsonl (loss, val loss, lr, gradient norm, tokens/s, skipped steps,
every alpha, each DyT input's saturation and RMS) is in the event file at the same step with the same value
rounded to float32, and nothing else is; also after a run stopped at a
checkpoint and resumed, when neither file may hold a step twice.

  check_tensorboard.py --train dyt-train --config tiny.pbtxt --data DIR --work DIR
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator


def fail(msg):
    sys.exit("FAIL: " + msg)


def train(args, run_dir, *overrides):
    cmd = [args.train, "--config", args.config,
           "--set", f"data.train_shards={args.data}/train_*.bin",
           "--set", f"data.val_shards={args.data}/val_*.bin",
           "--set", f"data.tokenizer={args.data}/tokenizer.model",
           "--set", f"train.run_dir={run_dir}",
           "--set", "train.steps=12", "--set", "train.eval_every=4", "--set", "train.eval_batches=2"]
    for o in overrides:
        cmd += ["--set", o]
    print("+", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(p.stdout[-2000:], p.stderr[-2000:], sep="\n")
    if p.returncode != 0:
        fail(f"dyt-train exited {p.returncode}")


def expected_scalars(run_dir):
    """{tag: {step: value}} from metrics.jsonl, under the event file's tags."""
    want = {}
    def put(tag, step, value):
        if step in want.setdefault(tag, {}):
            fail(f"metrics.jsonl holds {tag} at step {step} twice")
        want[tag][step] = math.nan if value is None else value
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            s = m["step"]
            if "val_loss" in m:
                put("val/loss", s, m["val_loss"])
                continue
            for key in ("loss", "lr", "grad_norm", "tokens_per_s", "skipped_steps"):
                put("train/" + key, s, m[key])
            for name, a in m["alpha"].items():
                put("alpha/" + name, s, a)
            for group, b in m.get("comm_bytes", {}).items():
                put("comm_bytes/" + group, s, b)
            for key in ("saturation", "input_rms"):
                for name, v in m.get(key, {}).items():
                    put(key + "/" + name, s, v)
    return want


def compare(run_dir):
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = expected_scalars(run_dir)
    if tags != set(want):
        fail(f"event file tags {sorted(tags ^ set(want))} differ from metrics.jsonl's")
    n = 0
    for tag, by_step in want.items():
        got = acc.Scalars(tag)
        steps = [e.step for e in got]
        if steps != sorted(by_step):
            fail(f"{tag}: event file steps {steps}, metrics.jsonl steps {sorted(by_step)}")
        for e in got:
            w = np.float32(by_step[e.step])
            if not (np.float32(e.value) == w or (math.isnan(w) and math.isnan(e.value))):
                fail(f"{tag} at step {e.step}: event file {e.value!r}, metrics.jsonl {float(w)!r}")
            n += 1
    for kind in ("alpha/", "saturation/", "input_rms/"):
        if not any(t.startswith(kind) for t in tags):
            fail(f"no {kind} scalars in the event file of a DyT run")
    print(f"{run_dir}: {len(tags)} tags, {n} scalars equal to metrics.jsonl")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)

    whole = os.path.join(args.work, "whole")
    train(args, whole)
    compare(whole)

    # Checkpoint at 6, run on to 9 (steps 7-9 and the eval at 8 are past the
    # checkpoint), killed there; resumed from 6 to the end.
    resumed = os.path.join(args.work, "resumed")
    ck = ["checkpoint.dir=" + os.path.join(resumed, "ckpt"), "checkpoint.every_steps=6"]
    train(args, resumed, *ck, "checkpoint.exit_at_step=9")
    last = sorted(os.listdir(os.path.join(resumed, "ckpt")))[-1]
    if not last.endswith("9"):
        fail(f"expected the step-9 checkpoint last, found {last}")
    shutil.rmtree(os.path.join(resumed, "ckpt", last))  # as if killed before saving at 9
    train(args, resumed, *ck)
    compare(resumed)
    print("OK")


if __name__ == "__main__":
    main()
