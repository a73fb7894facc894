#!/usr/bin/env python3
"""Kill test: a run SIGKILLed at random moments and started again each time
ends with the same bits as the run never interrupted.

  kill_test.py --train BIN --config FILE --data DIR --work DIR [--kills N] [--seed S]

A small model (configs/tiny.pbtxt scaled down by --set: width 32, 2 layers,
32-token samples, 256 tokens a step) saves a checkpoint after every step
(keep 2), so a step is mostly its save and random kills often land inside
one. First the straight run; then the same command is started, killed
(SIGKILL, no warning), started again, N times, and finally left to finish.
The kill moments (from --seed) take turns among three kinds:

  save  a save of this start: by turns, 0-20 ms after its
        step-XXXXXXXX.tmp/ directory appears (files being written), and
        0-2 ms after that directory is renamed (the commit: the root's
        fsync, the oldest checkpoint renamed to .trash- and deleted);
  step  after a random fraction of a step, once the run has logged a step;
  any   a random time from the start (loading, the first step, or a save).

After each kill: the process must have died of the kill (not an error of
its own); the newest checkpoint by the documented rule (the highest step-N,
or a step's aside when its step-N is missing) must load: dyt-train started
on it with checkpoint.exit_at_step = its step and another run_dir resumes
from exactly it and exits 0 without training. The next start must say it
resumes from that checkpoint. At the end: model.safetensors and config.json
byte-identical to the straight run's, every metrics line identical except
tokens_per_s, mfu and peak_memory_bytes (measurements), checkpoint.dir holding exactly the last two steps,
and no temporaries left anywhere in the run. Prints the figures (kills of
each kind, how many landed during a save, what they left behind).
Uses only the standard library.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_files import fail, logged_steps, read_bytes as read  # noqa: E402

SMALL = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1",
         "model.ffn_hidden=64", "model.max_seq_len=32", "train.seq_len=32", "train.micro_batch=4",
         "train.global_batch_tokens=256", "train.eval_every=10", "train.eval_batches=2",
         "train.log_every=1", "checkpoint.every_steps=1", "checkpoint.keep=2"]
STEP_DIR = re.compile(r"^step-(\d+)(\.tmp|\.aside-.+|\.trash-.+)?$")
ATOMIC_TEMP = re.compile(r"\.tmp\.[A-Za-z0-9]{6}$")  # checkpoint/atomic_file.h


def command(args, run_dir, ck_dir, *extra):
    cmd = [args.train, "--config", args.config,
           "--set", f"data.train_shards={args.data}/train_*.bin",
           "--set", f"data.val_shards={args.data}/val_*.bin",
           "--set", f"train.run_dir={run_dir}", "--set", f"checkpoint.dir={ck_dir}",
           "--set", f"train.steps={args.steps}"]
    for o in SMALL + list(extra):
        cmd += ["--set", o]
    return cmd


def env():
    # One thread everywhere: the comparison is bit for bit, and the thread
    # count is not what this test is about.
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def listing(ck_dir):
    try:
        return sorted(os.listdir(ck_dir))
    except FileNotFoundError:
        return []


def newest_checkpoint(ck_dir):
    """The checkpoint a start must take (checkpoint/checkpoint.h): the highest
    step whose step-N directory exists, or whose aside stands in for it."""
    committed, asides = {}, {}
    for name in listing(ck_dir):
        m = STEP_DIR.match(name)
        if not m or not os.path.isdir(os.path.join(ck_dir, name)):
            continue
        step = int(m.group(1))
        if m.group(2) is None:
            committed[step] = name
        elif m.group(2).startswith(".aside-"):
            asides.setdefault(step, name)
    whole = dict(asides)
    whole.update(committed)
    if not whole:
        return None, None
    step = max(whole)
    return step, os.path.join(ck_dir, whole[step])


def progress_lines(log):
    """Steps this start has finished (its progress lines, flushed as printed)."""
    with open(log, "rb") as f:
        return len(re.findall(rb"^step \d+/\d+ \|", f.read(), re.M))


def tmp_inode(ck_dir, name):
    try:
        return os.stat(os.path.join(ck_dir, name)).st_ino
    except FileNotFoundError:
        return None


def save_leftovers(ck_dir):
    """(name, inode) of what an unfinished save leaves in checkpoint.dir."""
    return {(n, tmp_inode(ck_dir, n)) for n in listing(ck_dir)
            if n.endswith(".tmp") or ".aside-" in n or ".trash-" in n}


def metrics_without_timing(run_dir):
    out = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            for measured in ("tokens_per_s", "mfu", "peak_memory_bytes"):  # timings and the OS's counts
                r.pop(measured, None)
            out.append(r)
    return out


def temporaries(top):
    found = []
    for d, dirs, files in os.walk(top):
        found += [os.path.join(d, n) for n in dirs + files if ATOMIC_TEMP.search(n) or n.endswith(".tmp")
                  or ".aside-" in n or ".trash-" in n]
    return found


def wait_until(proc, cond, timeout=60.0, poll=0.0003):
    """Polls `cond` until true (True) or the process ends first (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    fail("timed out waiting for the run")


def straight_run(args, root):
    """The uninterrupted run, timed: seconds to the first logged step and per step."""
    run_dir, ck = os.path.join(root, "run"), os.path.join(root, "ck")
    with open(os.path.join(root, "out.txt"), "w") as out:
        t0 = time.time()
        proc = subprocess.Popen(command(args, run_dir, ck), stdout=out, stderr=subprocess.STDOUT, env=env())
        wait_until(proc, lambda: logged_steps(run_dir) >= 1, poll=0.001)
        first = time.time() - t0
        rc = proc.wait(timeout=600)
        total = time.time() - t0
    if rc != 0:
        fail(f"the straight run exited {rc}: {read(os.path.join(root, 'out.txt'))[-2000:]!r}")
    return first, (total - first) / max(1, args.steps - 1)


def check_loads(args, root, ck_dir, expect_step, expect_path, n):
    """dyt-train resumes from exactly the expected checkpoint, then stops at
    once (exit_at_step = its step): it loads whole, and nothing is trained
    or saved."""
    check_dir = os.path.join(root, f"check-{n:02d}")
    p = subprocess.run(command(args, check_dir, ck_dir, f"checkpoint.exit_at_step={expect_step}"),
                       capture_output=True, text=True, env=env(), timeout=120)
    if p.returncode != 0 or f"resuming from {expect_path} after step {expect_step}" not in p.stdout:
        fail(f"after kill {n}, the newest checkpoint {expect_path} does not load (exit {p.returncode}):\n"
             f"{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    shutil.rmtree(check_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--steps", type=int, default=0, help="default 3 x kills + 10")
    args = ap.parse_args()
    args.steps = args.steps or 3 * args.kills + 10
    shutil.rmtree(args.work, ignore_errors=True)
    straight, killed = os.path.join(args.work, "straight"), os.path.join(args.work, "killed")
    for d in (straight, killed, os.path.join(killed, "logs")):
        os.makedirs(d)
    started = time.time()
    first_step_s, step_s = straight_run(args, straight)
    print(f"straight run: {args.steps} steps, first step logged after {first_step_s:.2f} s, "
          f"then {step_s * 1000:.0f} ms a step (checkpoint every step)", flush=True)

    rng = random.Random(args.seed)
    run_dir, ck = os.path.join(killed, "run"), os.path.join(killed, "ck")
    kinds = {"save": 0, "step": 0, "any": 0}
    during_save, left_behind, starts = 0, {}, 0
    expect_step, expect_path = None, None
    kills, left_last = 0, set()
    while True:
        starts += 1
        log = os.path.join(killed, "logs", f"start-{starts:02d}.txt")
        left_before = save_leftovers(ck)
        with open(log, "w") as out:
            proc = subprocess.Popen(command(args, run_dir, ck), stdout=out, stderr=subprocess.STDOUT, env=env())
            if kills < args.kills:
                kind = ("save", "step", "any")[kills % 3]
                if kind == "save":
                    # A save of this start: a .tmp directory that was not
                    # there before (a previous kill's is removed by the save).
                    old = {tmp_inode(ck, n) for n in listing(ck) if n.endswith(".tmp")}
                    alive = wait_until(proc, lambda: any(n.endswith(".tmp") and tmp_inode(ck, n) not in old
                                                         for n in listing(ck)))
                    if kinds["save"] % 2 == 0:  # while its files are written
                        delay = rng.uniform(0.0, 0.02)
                    else:  # right after its commit: the root's fsync, deleting the oldest
                        alive = alive and wait_until(proc, lambda: not any(n.endswith(".tmp") for n in listing(ck)))
                        delay = rng.uniform(0.0, 0.002)
                elif kind == "step":
                    steps = rng.randint(1, 3)
                    alive = wait_until(proc, lambda: progress_lines(log) >= steps, poll=0.001)
                    delay = rng.uniform(0.0, step_s)
                else:
                    alive, delay = True, rng.uniform(0.0, first_step_s + 2 * step_s)
                time.sleep(delay)
                if alive and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
            rc = proc.wait(timeout=600)
        text = read(log).decode(errors="replace")
        # Each start that got as far as loading must have taken the newest
        # (its stdout is flushed with the first progress line, so a start
        # killed before that may not show it; the next one does).
        m = re.search(r"resuming from (\S+) after step (\d+)", text)
        if (m and m.group(1) != expect_path) or (rc == 0 and not m and expect_path):
            fail(f"start {starts} resumed from {m.group(1) if m else 'nothing'}, expected {expect_path}:\n{text[-2000:]}")
        if rc == 0:
            break
        if rc != -signal.SIGKILL:
            fail(f"start {starts} exited {rc} on its own:\n{text[-2000:]}")
        kills += 1
        kinds[kind] += 1
        left = [os.path.relpath(p, killed) for p in temporaries(killed) if "/logs/" not in p]
        # Landed during a save: this start left a save's leftovers (new
        # ones; a start killed before it saved still has the last ones).
        in_save = bool(save_leftovers(ck) - left_before)
        during_save += in_save
        for p in set(left) - left_last:  # what this start left, not the ones before
            k = "step dir .tmp" if p.endswith(".tmp") else "aside" if ".aside-" in p else \
                "trash" if ".trash-" in p else "file temporary"
            left_behind[k] = left_behind.get(k, 0) + 1
        left_last = set(left)
        expect_step, expect_path = newest_checkpoint(ck)
        print(f"kill {kills} ({kind}, +{delay * 1000:.0f} ms): newest checkpoint step {expect_step}"
              f"{', during a save' if in_save else ''}{', left ' + ', '.join(left) if left else ''}", flush=True)
        if expect_path is not None:
            check_loads(args, killed, ck, expect_step, expect_path, kills)
    if kills < args.kills:
        fail(f"the run finished after {kills} kills of {args.kills}; give it more steps")

    if metrics_without_timing(run_dir) != metrics_without_timing(os.path.join(straight, "run")):
        fail("the metrics of the killed-and-resumed run differ from the straight run's")
    for f in ("model.safetensors", "config.json"):
        if read(os.path.join(run_dir, f)) != read(os.path.join(straight, "run", f)):
            fail(f"{f} of the killed-and-resumed run differs from the straight run's")
    want = [f"step-{args.steps - 1:08d}", f"step-{args.steps:08d}"]
    if listing(ck) != want:
        fail(f"checkpoint.dir holds {listing(ck)}, expected {want}")
    left = [p for p in temporaries(killed) if "/logs/" not in p]
    if left:
        fail(f"temporaries left after the run finished: {left}")
    print(f"kills: {kills} ({kinds['save']} at a save, {kinds['step']} within a step, {kinds['any']} from the start); "
          f"{during_save} landed during a save; left behind at the kills: {left_behind or 'nothing'}; "
          f"{starts} starts; final weights, config.json and metrics identical to the straight run; "
          f"{time.time() - started:.1f} s", flush=True)
    print("PASS")


if __name__ == "__main__":
    main()
