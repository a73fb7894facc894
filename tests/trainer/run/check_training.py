#!/usr/bin/env python3
"""End-to-end checks of dyt-train on the tiny config and the fortunes corpus.

  check_training.py learns        --train BIN --config FILE --data DIR --work DIR
  check_training.py deterministic --train BIN --config FILE --data DIR --work DIR
  check_training.py nonfinite     --train BIN --config FILE --data DIR --work DIR
  check_training.py resumes       --train BIN --config FILE --data DIR --work DIR
  check_training.py dataparallel  --train BIN --config FILE --data DIR --work DIR --mpirun MPIRUN
  check_training.py reshards      --train BIN --config FILE --data DIR --work DIR --mpirun MPIRUN
                                  --export BIN --save 2x1 --resume 1x1,2x1,4x1

learns: 50 optimizer steps of configs/tiny.pbtxt (its schedule compressed to
  50 steps) must bring the validation loss to within 0.1 nats of the
  cross-entropy of the best context-free model: the unigram distribution of
  the training shard (add-½ smoothing), scored on the same validation
  samples (6.61 for the fortunes corpus). Getting there from ln(vocab) = 8.32
  takes working embeddings, LM head, loss gradient, clipping and AdamW; a
  model that learned nothing stays at 8.32, and a broken gradient stalls far
  above. Going below the unigram loss needs more steps (the full tiny run
  does; see the README). Correctness of every gradient is the parity tests'
  job, not this one's.
deterministic: two runs with one seed give bit-identical losses and gradient
  norms, and a different seed gives different ones.
dataparallel: 4 steps with parallel.dp = 2 under mpirun -np 2 log the same
  losses, gradient norms, learning rates and validation losses as one
  process, up to the order of the gradient sum (1e-6 relative; the gradient
  norm 1e-5), and two dp = 2 runs are bit-identical; with parallel.zero1
  the records and final weights are plain dp = 2's bits, also when saved at
  step 2 and resumed; a dp that is not the
  number of ranks is refused naming parallel.dp (exit 2); a checkpoint saved
  under dp = 2 continues in one process.
refuses: BF16 precision on the CPU, train.device CUDA without a GPU or with
  an unsupported head size, tp > 1, checkpoint.exit_at_step without
  checkpoint.dir and a vocabulary smaller than the data's largest token stop
  the run before any work with a message naming the field (exit 2 for
  config, 1 for data).
resumes: a run stopped at checkpoint.exit_at_step and continued (after a
  simulated crash that left metrics lines past the checkpoint and a
  half-written checkpoint directory) ends with the same bytes in
  model.safetensors and the same losses, gradient norms, learning rates and
  validation losses as one uninterrupted run, and so does a run stopped by
  SIGTERM in the middle and started again; only checkpoint.keep
  checkpoints remain; a changed learning rate is refused (exit 2, naming
  train.lr) unless checkpoint.allow_config_change, and a damaged manifest is
  an error naming the file and line and the newest intact checkpoint before
  it (exit 1, one line, nothing resumed).
reshards: a 4-step run under the --save layout (DPxTP, a "z" suffix for
  parallel.zero1, "s" for parallel.sequence_parallel: 2x2z) saves sharded
  checkpoints (one file per rank) after steps 2 and 4; runs under each
  --resume layout continue from step 2 to step 4: in the saving layout to
  the bits of the uninterrupted run (metrics and model.safetensors), in
  another within 1e-6 of its losses (gradient norms 1e-5, as
  dataparallel). dyt-export of the step-4 checkpoint gives the run's own
  model.safetensors and config.json byte for byte.
nonfinite: a learning rate of 1e30 blows the weights up; every step after
  that has a non-finite loss, is skipped and counted, and after
  train.max_nonfinite_steps in a row the run stops with exit code 1 and a
  message saying why.
Uses only the standard library and numpy.
"""
import argparse
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_files import read_bytes as read_file  # noqa: E402


def read_shard(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        dtype = "<u2" if header[0] == 20240520 else "<u4"
        return np.frombuffer(f.read(), dtype=dtype).astype(np.int64)


def train_command(args, run_dir, *overrides):
    cmd = [args.train, "--config", args.config,
           "--set", f"data.train_shards={args.data}/train_*.bin",
           "--set", f"data.val_shards={args.data}/val_*.bin",
           "--set", f"train.run_dir={run_dir}"]
    for o in overrides:
        cmd += ["--set", o]
    print("+", " ".join(cmd), flush=True)
    return cmd


def run_train(args, run_dir, *overrides, expect_rc=0):
    cmd = train_command(args, run_dir, *overrides)
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: dyt-train exited {p.returncode}, expected {expect_rc}")
    return p


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def unigram_val_loss(args, vocab, seq_len, n_samples):
    """Cross-entropy of the validation samples the trainer evaluates (the first
    n_samples windows of seq_len+1 tokens, targets = tokens 1..T) under the
    smoothed unigram distribution of the training shards."""
    counts = np.zeros(vocab)
    for path in sorted(glob.glob(os.path.join(args.data, "train_*.bin"))):
        counts += np.bincount(read_shard(path), minlength=vocab)[:vocab]
    logp = np.log((counts + 0.5) / (counts.sum() + 0.5 * vocab))
    targets = []
    for path in sorted(glob.glob(os.path.join(args.data, "val_*.bin"))):
        toks = read_shard(path)
        for j in range((len(toks) - 1) // seq_len):
            targets.append(toks[j * seq_len + 1: j * seq_len + seq_len + 1])
    targets = np.concatenate(targets[:n_samples])
    return float(-logp[targets].mean())


def learns(args):
    run_dir = os.path.join(args.work, "learns")
    run_train(args, run_dir, "train.steps=50", "train.eval_every=50", "train.log_every=10")
    m = metrics(run_dir)
    evals = [r for r in m if "val_loss" in r]
    steps = [r for r in m if "loss" in r]
    first, last = evals[0]["val_loss"], evals[-1]["val_loss"]
    vocab, seq_len, micro, batches = 4096, 128, 16, 8  # configs/tiny.pbtxt
    unigram = unigram_val_loss(args, vocab, seq_len, micro * batches)
    print(f"val loss: start {first:.4f} (ln V = {math.log(vocab):.4f}), after 50 steps {last:.4f}; "
          f"unigram model {unigram:.4f}")
    if len(steps) != 50 or evals[-1]["step"] != 50:
        sys.exit("FAIL: expected 50 logged steps and an evaluation at step 50")
    if abs(first - math.log(vocab)) > 0.1:
        sys.exit(f"FAIL: untrained val loss {first} should be near ln(vocab)")
    if not last < unigram + 0.1:
        sys.exit(f"FAIL: val loss {last} after 50 steps is not within 0.1 of the unigram model's {unigram}")
    alphas = steps[-1]["alpha"]
    if len(alphas) != 2 * 4 + 1 or not all(math.isfinite(a) for a in alphas.values()):
        sys.exit(f"FAIL: expected 9 finite DyT alphas in the metrics, got {alphas}")
    print("PASS")


def deterministic(args):
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run_dir = os.path.join(args.work, "det_" + name)
        run_train(args, run_dir, "train.steps=3", "train.eval_every=0", f"train.seed={seed}")
        runs.append([(r["loss"], r["grad_norm"]) for r in metrics(run_dir) if "loss" in r])
    print("seed 7:", runs[0], "\nseed 7:", runs[1], "\nseed 8:", runs[2])
    if runs[0] != runs[1]:
        sys.exit("FAIL: two runs with one seed differ")
    if runs[0] == runs[2]:
        sys.exit("FAIL: a different seed gave the same losses")
    print("PASS")


def nonfinite(args):
    run_dir = os.path.join(args.work, "nonfinite")
    p = run_train(args, run_dir, "train.steps=20", "train.eval_every=0", "train.lr=1e30",
                  "train.warmup_steps=0", "train.max_nonfinite_steps=3", expect_rc=1)
    if "non-finite" not in p.stderr or "train.max_nonfinite_steps" not in p.stderr:
        sys.exit("FAIL: the error does not say why the run stopped")
    m = [r for r in metrics(run_dir) if "loss" in r]
    skipped = [r for r in m if r["skipped"]]
    if len(skipped) != 3 or m[-1]["skipped_steps"] != 3 or not all(r["skipped"] for r in m[-3:]):
        sys.exit(f"FAIL: expected the last 3 logged steps skipped and counted, got {m}")
    if m[0]["skipped"]:
        sys.exit("FAIL: the first step was finite and must not be skipped")
    print("PASS")


def step_records(run_dir):
    """(step, loss, grad_norm, lr, skipped) per step and (step, val_loss) per evaluation."""
    m = metrics(run_dir)
    return ([(r["step"], r["loss"], r["grad_norm"], r["lr"], r["skipped"]) for r in m if "loss" in r],
            [(r["step"], r["val_loss"]) for r in m if "val_loss" in r])


def resumes(args):
    common = ["train.steps=8", "train.eval_every=4", "train.log_every=1",
              "checkpoint.every_steps=3", "checkpoint.keep=2"]
    a_dir, b_dir = os.path.join(args.work, "straight"), os.path.join(args.work, "resumed")
    a_ck, b_ck = os.path.join(a_dir, "ck"), os.path.join(b_dir, "ck")
    for d in (a_dir, b_dir):  # checkpoints of an earlier run of this test would be resumed
        shutil.rmtree(d, ignore_errors=True)
    run_train(args, a_dir, *common, f"checkpoint.dir={a_ck}")
    if sorted(os.listdir(a_ck)) != ["step-00000006", "step-00000008"]:
        sys.exit(f"FAIL: expected checkpoints 6 and 8 (keep = 2), found {sorted(os.listdir(a_ck))}")
    if args.export:  # the checkpoint of the last step exports to the run's own weights
        exported = os.path.join(args.work, "exported")
        shutil.rmtree(exported, ignore_errors=True)
        p = subprocess.run([args.export, os.path.join(a_ck, "step-00000008"), exported], capture_output=True, text=True)
        print(p.stdout, p.stderr)
        for f in ("model.safetensors", "config.json"):
            if p.returncode != 0 or read_file(os.path.join(exported, f)) != read_file(os.path.join(a_dir, f)):
                sys.exit(f"FAIL: dyt-export of step 8 (rc {p.returncode}): {f} differs from the run's own export")

    p = run_train(args, b_dir, *common, f"checkpoint.dir={b_ck}", "checkpoint.exit_at_step=5")
    if "stopped after step 5" not in p.stdout or os.path.exists(os.path.join(b_dir, "model.safetensors")):
        sys.exit("FAIL: exit_at_step=5 should stop after step 5 without the final export")
    if sorted(os.listdir(b_ck)) != ["step-00000003", "step-00000005"]:
        sys.exit(f"FAIL: expected checkpoints 3 and 5, found {sorted(os.listdir(b_ck))}")
    # A crash after step 5's checkpoint: metrics of steps the checkpoint does
    # not hold, and a half-written checkpoint directory.
    with open(os.path.join(b_dir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 6, "loss": 99.0, "lr": 0, "grad_norm": 0, "tokens_per_s": 0, '
                '"skipped_steps": 0, "skipped": false, "alpha": {}}\n')
    os.makedirs(os.path.join(b_ck, "step-00000006.tmp"))
    with open(os.path.join(b_ck, "step-00000006.tmp", "manifest.pbtxt"), "w") as f:
        f.write("garbage")

    p = run_train(args, b_dir, *common, f"checkpoint.dir={b_ck}")
    if "resuming from" not in p.stdout or "resumed after 5" not in p.stdout:
        sys.exit("FAIL: the second run did not say it resumed after step 5")
    a_steps, a_evals = step_records(a_dir)
    b_steps, b_evals = step_records(b_dir)
    print("straight:", a_steps, a_evals, "\nresumed: ", b_steps, b_evals, sep="\n")
    if len(a_steps) != 8 or a_steps != b_steps or a_evals != b_evals:
        sys.exit("FAIL: the resumed run's metrics differ from the uninterrupted run's")
    if read_file(os.path.join(a_dir, "model.safetensors")) != read_file(os.path.join(b_dir, "model.safetensors")):
        sys.exit("FAIL: the resumed run's final weights differ from the uninterrupted run's")
    if sorted(os.listdir(b_ck)) != ["step-00000006", "step-00000008"]:
        sys.exit(f"FAIL: expected checkpoints 6 and 8 after the resumed run, found {sorted(os.listdir(b_ck))}")

    # SIGTERM (a scheduler's notice) in the middle: the step in progress
    # finishes, a checkpoint is saved, exit 0; the same command then finishes
    # the run, again to the same bits.
    c_dir = os.path.join(args.work, "signalled")
    c_ck = os.path.join(c_dir, "ck")
    shutil.rmtree(c_dir, ignore_errors=True)
    cmd = train_command(args, c_dir, *common, f"checkpoint.dir={c_ck}", "checkpoint.every_steps=0")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if len([r for r in metrics(c_dir) if "loss" in r]) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    print(out[-2000:], err[-2000:], sep="\n")
    saved = sorted(os.listdir(c_ck)) if os.path.isdir(c_ck) else []
    if proc.returncode != 0 or "SIGTERM after step" not in out or len(saved) != 1:
        sys.exit(f"FAIL: SIGTERM should save one checkpoint and exit 0 (rc {proc.returncode}, {saved})")
    stopped = int(saved[0].split("-")[1])
    if not 2 <= stopped < 8:
        sys.exit(f"FAIL: stopped at step {stopped}, expected between 2 and 7")
    run_train(args, c_dir, *common, f"checkpoint.dir={c_ck}", "checkpoint.every_steps=0")
    if step_records(c_dir) != (a_steps, a_evals) or \
            read_file(os.path.join(c_dir, "model.safetensors")) != read_file(os.path.join(a_dir, "model.safetensors")):
        sys.exit(f"FAIL: the run stopped by SIGTERM after step {stopped} and resumed differs from the straight one")

    before = read_file(os.path.join(b_dir, "metrics.jsonl"))
    p = run_train(args, b_dir, *common, f"checkpoint.dir={b_ck}", "train.lr=0.001", expect_rc=2)
    if "train.lr" not in p.stderr or read_file(os.path.join(b_dir, "metrics.jsonl")) != before:
        sys.exit("FAIL: a changed lr must be refused, naming train.lr, before any work")
    p = run_train(args, b_dir, *common, f"checkpoint.dir={b_ck}", "train.lr=0.001",
                  "checkpoint.allow_config_change=true")
    if "allow_config_change" not in p.stdout or "train.lr" not in p.stdout:
        sys.exit("FAIL: with allow_config_change the difference must still be printed")

    manifest = os.path.join(b_ck, "step-00000008", "manifest.pbtxt")
    with open(manifest, "a") as f:
        f.write("progress { step: oops }\n")
    p = run_train(args, b_dir, *common, f"checkpoint.dir={b_ck}", expect_rc=1)
    if manifest not in p.stderr or "line" not in p.stderr:
        sys.exit("FAIL: a damaged manifest must be reported with its path and line")
    # Never a quiet step back to step 6: one line that names the way back.
    intact = os.path.join(b_ck, "step-00000006")
    if f"the newest intact checkpoint before it is '{intact}' (step 6)" not in p.stderr or \
            p.stderr.strip().count("\n") != 0 or "resuming" in p.stdout:
        sys.exit("FAIL: a damaged newest checkpoint must be one error line naming the intact step 6")
    print("PASS")


def mpirun_train(args, nproc, run_dir, *overrides, expect_rc=0):
    cmd = [args.mpirun, "--oversubscribe", "-np", str(nproc)] + train_command(args, run_dir, *overrides)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: mpirun exited {p.returncode}, expected {expect_rc}")
    return p


def close(a, b, rtol):
    return abs(a - b) <= rtol * abs(b)


def dataparallel(args):
    common = ["train.steps=4", "train.eval_every=2"]
    one, two, again = (os.path.join(args.work, n) for n in ("dp1", "dp2", "dp2_again"))
    run_train(args, one, *common)
    for d in (two, again):
        mpirun_train(args, 2, d, *common, "parallel.dp=2")
    s1, e1 = step_records(one)
    s2, e2 = step_records(two)
    print("dp=1:", s1, e1, "\ndp=2:", s2, e2, sep="\n")
    if step_records(again) != (s2, e2):
        sys.exit("FAIL: two dp=2 runs differ: the gradient sum over ranks must have a fixed order")
    if len(s2) != 4 or len(e2) != 3:
        sys.exit("FAIL: rank 0 should log 4 steps and 3 evaluations, once")
    for a, b in zip(s2, s1):
        if a[0] != b[0] or a[3] != b[3] or not close(a[1], b[1], 1e-6) or not close(a[2], b[2], 1e-5):
            sys.exit(f"FAIL: dp=2 step {a} is not dp=1's {b} (up to the order of the gradient sum)")
    for a, b in zip(e2, e1):
        if not close(a[1], b[1], 1e-6):
            sys.exit(f"FAIL: dp=2 validation {a} is not dp=1's {b}")

    # ZeRO-1 (gradients reduce-scattered, AdamW on each rank's partition,
    # weights all-gathered) gives plain dp's bits: every step, evaluation and
    # the exported weights; and a run saved under it (the moments gathered
    # for the save) and resumed under it ends with the uninterrupted bits.
    def weights(d):
        return read_file(os.path.join(d, "model.safetensors"))
    z, zr = os.path.join(args.work, "dp2_zero1"), os.path.join(args.work, "dp2_zero1_resumed")
    shutil.rmtree(zr, ignore_errors=True)
    mpirun_train(args, 2, z, *common, "parallel.dp=2", "parallel.zero1=true")
    if step_records(z) != (s2, e2) or weights(z) != weights(two):
        sys.exit(f"FAIL: dp=2 with parallel.zero1 is not plain dp=2 bit for bit: {step_records(z)}")
    for stop in (["checkpoint.exit_at_step=2"], []):
        mpirun_train(args, 2, zr, *common, "parallel.dp=2", "parallel.zero1=true",
                     f"checkpoint.dir={zr}/ck", *stop)
    if step_records(zr) != (s2, e2) or weights(zr) != weights(two):
        sys.exit(f"FAIL: dp=2 zero1 saved at step 2 and resumed is not the uninterrupted run: {step_records(zr)}")

    # The layout must match the ranks started, and says how to launch it.
    p = run_train(args, os.path.join(args.work, "dp_mismatch"), *common, "parallel.dp=2", expect_rc=2)
    if "parallel.dp" not in p.stderr or "mpirun -np 2" not in p.stderr:
        sys.exit("FAIL: dp=2 in one process must be refused, naming parallel.dp and how to launch")
    p = mpirun_train(args, 2, os.path.join(args.work, "dp_mismatch2"), *common, expect_rc=2)
    if "parallel.dp" not in p.stderr:
        sys.exit("FAIL: dp=1 under 2 ranks must be refused, naming parallel.dp")

    # A run saved under dp=2 goes on in one process (the global batch does not
    # depend on the layout).
    ck_dir = os.path.join(args.work, "dp_switch")
    shutil.rmtree(ck_dir, ignore_errors=True)
    mpirun_train(args, 2, ck_dir, *common, "parallel.dp=2", f"checkpoint.dir={ck_dir}/ck",
                 "checkpoint.exit_at_step=2")
    run_train(args, ck_dir, *common, f"checkpoint.dir={ck_dir}/ck")
    s3, e3 = step_records(ck_dir)
    if s3[:2] != s2[:2] or not all(close(a[1], b[1], 1e-6) for a, b in zip(s3, s1)):
        sys.exit(f"FAIL: dp=2 then dp=1 after a checkpoint: {s3} vs dp=1 {s1}")
    print("PASS")


def layout_overrides(text):
    """'2x2z' -> (ranks, overrides): dp x tp, z = zero1, s = sequence_parallel."""
    base = text.rstrip("zs")
    dp, tp = (int(x) for x in base.split("x"))
    flags = text[len(base):]
    return dp * tp, [f"parallel.dp={dp}", f"parallel.tp={tp}", f"parallel.zero1={'true' if 'z' in flags else 'false'}",
                     f"parallel.sequence_parallel={'true' if 's' in flags else 'false'}"]


def train_under(args, ranks, run_dir, *overrides):
    if ranks == 1:
        return run_train(args, run_dir, *overrides)
    return mpirun_train(args, ranks, run_dir, *overrides)


def reshards(args):
    common = ["train.steps=4", "train.eval_every=2", "train.eval_batches=2", "train.log_every=1",
              "train.global_batch_tokens=2048", "train.micro_batch=4"]
    save_ranks, save_set = layout_overrides(args.save)
    tag = args.save
    # One uninterrupted run, saving after steps 2 and 4: step 2 is where the
    # others resume, step 4 what dyt-export must turn into its export.
    straight = os.path.join(args.work, f"straight_{tag}")
    shutil.rmtree(straight, ignore_errors=True)
    train_under(args, save_ranks, straight, *common, *save_set, f"checkpoint.dir={straight}/ck",
                "checkpoint.every_steps=2", "checkpoint.keep=2")
    ck = os.path.join(straight, "ck", "step-00000002")
    files = sorted(f for f in os.listdir(ck) if f.startswith("rank-"))
    if len(files) != save_ranks:
        sys.exit(f"FAIL: expected {save_ranks} rank files in {ck}, found {files}")

    exported = os.path.join(args.work, f"exported_{tag}")
    shutil.rmtree(exported, ignore_errors=True)
    p = subprocess.run([args.export, os.path.join(straight, "ck"), exported], capture_output=True, text=True)
    print(p.stdout, p.stderr)
    if p.returncode != 0 or "step 4" not in p.stdout:
        sys.exit(f"FAIL: dyt-export exited {p.returncode} or did not take step 4")
    for f in ("model.safetensors", "config.json"):
        if read_file(os.path.join(exported, f)) != read_file(os.path.join(straight, f)):
            sys.exit(f"FAIL: dyt-export's {f} differs from the run's own export")

    a_steps, a_evals = step_records(straight)
    for layout in args.resume.split(","):
        ranks, sets = layout_overrides(layout)
        run_dir = os.path.join(args.work, f"resumed_{tag}_to_{layout}")
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(straight, run_dir)  # the metrics, and the checkpoints: step 4 goes
        shutil.rmtree(os.path.join(run_dir, "ck", "step-00000004"))
        os.remove(os.path.join(run_dir, "model.safetensors"))
        p = train_under(args, ranks, run_dir, *common, *sets, f"checkpoint.dir={run_dir}/ck",
                        "checkpoint.every_steps=2", "checkpoint.keep=2")
        if "resumed after 2" not in p.stdout:
            sys.exit(f"FAIL: the run under {layout} did not resume after step 2")
        b_steps, b_evals = step_records(run_dir)
        print(f"{tag} -> {layout}:", b_steps, b_evals, sep="\n")
        if layout == args.save:
            if (b_steps, b_evals) != (a_steps, a_evals) or \
                    read_file(os.path.join(run_dir, "model.safetensors")) != read_file(os.path.join(straight, "model.safetensors")):
                sys.exit(f"FAIL: resumed in the saving layout {layout}, the run differs from the uninterrupted one")
            continue
        if len(b_steps) != len(a_steps) or len(b_evals) != len(a_evals):
            sys.exit(f"FAIL: {tag} -> {layout}: {len(b_steps)} steps, {len(b_evals)} evaluations logged")
        for a, b in zip(b_steps, a_steps):
            if a[0] != b[0] or a[3] != b[3] or not close(a[1], b[1], 1e-6) or not close(a[2], b[2], 1e-5):
                sys.exit(f"FAIL: {tag} -> {layout}: step {a} is not the uninterrupted run's {b}")
        for a, b in zip(b_evals, a_evals):
            if a[0] != b[0] or not close(a[1], b[1], 1e-6):
                sys.exit(f"FAIL: {tag} -> {layout}: validation {a} is not the uninterrupted run's {b}")
    print("PASS")


def refuses(args):
    """Settings this build cannot honour stop the run before any work (exit 2)."""
    cases = [(["checkpoint.exit_at_step=3"], "checkpoint.exit_at_step"),
             (["train.precision=BF16"], "train.precision"),
             (["parallel.tp=2"], "parallel.tp"),
             (["model.vocab_size=100"], "model.vocab_size"),  # data holds ids >= 100
             # A head size the CUDA attention lacks (16); a build without
             # CUDA refuses the device itself.
             (["train.device=CUDA", "model.n_heads=8"], "model.d_model / model.n_heads|train.device")]
    if not os.path.exists("/dev/nvidia0"):  # no GPU: CUDA is refused, saying what was found
        cases.append((["train.device=CUDA"], "train.device"))
    for overrides, fields in cases:
        p = run_train(args, os.path.join(args.work, "refuses"), *overrides, "train.steps=1",
                      expect_rc=1 if fields == "model.vocab_size" else 2)
        if not any(f in p.stderr for f in fields.split("|")):
            sys.exit(f"FAIL: --set {' '.join(overrides)}: the error does not name {fields}: {p.stderr}")
        if os.path.exists(os.path.join(args.work, "refuses", "metrics.jsonl")):
            sys.exit(f"FAIL: --set {' '.join(overrides)}: work started (metrics written) before the refusal")
    print("PASS")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["learns", "deterministic", "nonfinite", "refuses", "resumes", "dataparallel",
                                     "reshards"])
    ap.add_argument("--train", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--export", help="dyt-export (reshards)")
    ap.add_argument("--save", default="2x1", help="reshards: the saving layout, DPxTP[z][s]")
    ap.add_argument("--resume", default="1x1,2x1,4x1", help="reshards: the resuming layouts, comma-separated")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    globals()[args.mode](args)


if __name__ == "__main__":
    main()
