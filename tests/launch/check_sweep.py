#!/usr/bin/env python3
"""dyt-sweep end to end on the tiny config and the fortunes shards.

  check_sweep.py --sweep BIN --config FILE --data DIR --work DIR

Two runs (α₀ attention 0.8 with lr 3e-3, and with lr 1e30): both start, the
first finishes, the second diverges and is marked so in sweep.md and
sweep.jsonl (a divergence is a result: exit 0) and in the heatmap beside them
(sweep_plot.json), the loss curves and α drawn as PNGs; each run's config holds its
α₀; the same command again continues rather than restarts (the finished run
resumes after its last step); the run through `--launcher mpirun --np 2`
(parallel.dp=2) ends with the one-process loss to 1e-6; a bad value stops the sweep before any run,
naming the run and the field (exit 2).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys


def sweep(args, out, spec, expect_rc, extra=()):
    cmd = [args.sweep, "--config", args.config,
           "--set", f"data.train_shards={args.data}/train_*.bin",
           "--set", f"data.val_shards={args.data}/val_*.bin",
           "--set", "train.steps=3", "--set", "train.eval_every=3", "--set", "train.warmup_steps=0",
           "--set", "train.max_nonfinite_steps=2", "--sweep", spec, "--out", out, "--jobs", "2", *extra]
    print("+", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: dyt-sweep exited {p.returncode}, expected {expect_rc}")
    return p


def main():
    ap = argparse.ArgumentParser()
    for a in ("--sweep", "--config", "--data", "--work", "--mpirun"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()
    out = os.path.join(args.work, "sweep")
    shutil.rmtree(out, ignore_errors=True)
    spec = "model.alpha_init.attention=0.8;train.lr=0.003,1e30"
    sweep(args, out, spec, 0)

    rows = {r["run"]: r for r in map(json.loads, open(os.path.join(out, "sweep.jsonl")))}
    good, bad = rows.get("attention=0.8_lr=0.003"), rows.get("attention=0.8_lr=1e30")
    if not good or not bad or len(rows) != 2:
        sys.exit(f"FAIL: expected the two runs in sweep.jsonl, got {list(rows)}")
    if good["status"] != "finished" or good["steps"] != 3 or good["val_loss"] is None:
        sys.exit(f"FAIL: the lr 3e-3 run should finish 3 steps with a validation loss: {good}")
    if bad["status"] != "diverged" or bad["exit_code"] != 1:
        sys.exit(f"FAIL: the lr 1e30 run should be marked diverged: {bad}")
    table = open(os.path.join(out, "sweep.md")).read()
    if "**diverged**" not in table or table.index("finished") > table.index("**diverged**"):
        sys.exit("FAIL: sweep.md should list the finished run first and mark the divergence")
    for png in ("sweep_heatmap.png", "sweep_losses.png", "attention=0.8_lr=0.003/alpha.png"):
        with open(os.path.join(out, png), "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                sys.exit(f"FAIL: dyt-sweep should draw {png}")
    cells = {c["x"]: c for c in json.load(open(os.path.join(out, "sweep_plot.json")))["cells"]}
    if cells["1e30"]["mark"] != "x" or cells["0.003"]["val_loss"] != good["val_loss"]:
        sys.exit(f"FAIL: the heatmap should mark the diverged cell and show the finished one's loss: {cells}")
    cfg = open(os.path.join(out, "attention=0.8_lr=0.003", "config.pbtxt")).read()
    if "attention: 0.8" not in cfg:
        sys.exit("FAIL: the run's config does not hold its α₀")

    sweep(args, out, spec, 0)  # the same command again
    log = open(os.path.join(out, "attention=0.8_lr=0.003", "train.log")).read()
    if "resumed after 3" not in log:
        sys.exit("FAIL: the finished run should resume after its last step, not start over")

    # Through mpirun: the same run as two data-parallel ranks, equal to rounding.
    mpi_out = os.path.join(args.work, "sweep_mpirun")
    shutil.rmtree(mpi_out, ignore_errors=True)
    sweep(args, mpi_out, "model.alpha_init.attention=0.8;train.lr=0.003", 0,
          ["--launcher", "mpirun", "--np", "2", "--mpirun", args.mpirun, "--mpirun-args=--oversubscribe",
           "--set", "parallel.dp=2", "--no-plot"])
    mpi = json.loads(open(os.path.join(mpi_out, "sweep.jsonl")).readline())
    mpi_log = open(os.path.join(mpi_out, "attention=0.8_lr=0.003", "train.log")).read()
    if mpi["status"] != "finished" or "2 data-parallel ranks" not in mpi_log \
            or abs(mpi["train_loss"] - good["train_loss"]) > 1e-6 * good["train_loss"]:
        sys.exit(f"FAIL: the mpirun run should finish on 2 ranks with the one-process loss to 1e-6: {mpi}, {good}")

    bad_out = os.path.join(args.work, "sweep_bad")
    shutil.rmtree(bad_out, ignore_errors=True)
    p = sweep(args, bad_out, "model.alpha_init.attention=0.8,-1", 2)
    if "attention=-1" not in p.stderr or "model.alpha_init.attention" not in p.stderr or os.path.exists(bad_out):
        sys.exit("FAIL: a bad value must stop the sweep before any run, naming the run and the field")
    print("PASS")


if __name__ == "__main__":
    main()
