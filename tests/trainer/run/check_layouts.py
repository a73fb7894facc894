#!/usr/bin/env python3
"""dyt-train under tensor-parallel layouts against the single process.

A 3-step tiny run (smaller batch) at dp x tp = 1x1, then under mpirun at 1x2,
1x2 with sequence parallelism, 1x4 (2 KV heads over 4 ranks: replicated KV
heads) and 2x2 (with parallel.zero1 too, and with ZeRO-1 and the dp
reduction overlapped with the backward in buckets: plain 2x2's bits, their
traffic as planned): every step's loss to 1e-6 and gradient norm to 1e-5 of the
single process, every validation loss to 1e-6, each DyT input's saturation
and RMS (trainer/norm_health.h) as the single process measured them, the bytes each group's
communicator moved in each step (metrics' comm_bytes, rank 0) equal to
dyt-plan's prediction for the layout exactly, the exported whole tensors to
1% of the largest move AdamW can make in these steps (Σ lr: an element whose
gradient is near zero turns its update on rounding, which no tolerance on
the weights themselves can allow for, while a misplaced block or a missing sum
moves weights by whole steps); two 1x2 runs bit-identical; a layout the model
cannot take refused before any work (exit 2, naming parallel.tp).
"""
import argparse
import os
import shutil
import struct
import sys
import json
import subprocess

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_training as ct  # noqa: E402

COMMON = ["train.steps=3", "train.eval_every=3", "train.eval_batches=2",
          "train.global_batch_tokens=2048", "train.micro_batch=4", "train.log_every=1"]

LAYOUTS = [  # name, ranks, overrides
    ("tp2", 2, ["parallel.tp=2"]),
    ("tp2_sp", 2, ["parallel.tp=2", "parallel.sequence_parallel=true"]),
    ("tp4", 4, ["parallel.tp=4"]),
    ("dp2_tp2", 4, ["parallel.dp=2", "parallel.tp=2", "parallel.sequence_parallel=true"]),
]


def safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(h["shape"])
    return out


def planned_bytes(args, overrides):
    cmd = [args.plan, "--config", args.config, "--json"]
    for o in COMMON + overrides:
        cmd += ["--set", o]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}: {p.stderr}")
    totals = json.loads(p.stdout)["comm_total"]
    return {g: t["bytes_sent"] for g, t in totals.items() if t["bytes_sent"] > 0}


def check_comm(name, run, planned):
    for r in ct.metrics(run):
        if "loss" in r and r.get("comm_bytes", {}) != planned:
            sys.exit(f"FAIL: {name} step {r['step']} moved {r.get('comm_bytes')} bytes, "
                     f"dyt-plan predicts {planned}")


def compare(name, run, ref):
    s, e = ct.step_records(run)
    s1, e1 = ref
    if len(s) != len(s1) or len(e) != len(e1):
        sys.exit(f"FAIL: {name}: {len(s)} steps / {len(e)} evaluations, expected {len(s1)} / {len(e1)}")
    for a, b in zip(s, s1):
        if a[0] != b[0] or a[4] != b[4] or not ct.close(a[1], b[1], 1e-6) or not ct.close(a[2], b[2], 1e-5):
            sys.exit(f"FAIL: {name} step {a} is not the single process's {b}")
    for a, b in zip(e, e1):
        if not ct.close(a[1], b[1], 1e-6):
            sys.exit(f"FAIL: {name} validation {a} is not the single process's {b}")


def health(run):
    """{step: (saturation, input_rms)} of every step record (log_every = 1: all probed)."""
    return {r["step"]: (r.get("saturation"), r.get("input_rms")) for r in ct.metrics(run) if "loss" in r}


def compare_health(name, run, ref):
    """Each DyT input's health as the single process measured it: the sums run
    over the dp group and, under sequence parallelism, the tp group. The RMS to
    1e-6 (the activations differ in the last bits); the saturated fraction to
    1e-4 (an element at the threshold may land on either side)."""
    got, want = health(run), health(ref)
    if sorted(got) != sorted(want):
        sys.exit(f"FAIL: {name}: health at steps {sorted(got)}, single process {sorted(want)}")
    for step, (sat, rms) in want.items():
        gsat, grms = got[step]
        if not sat or not rms or sorted(gsat or {}) != sorted(sat) or sorted(grms or {}) != sorted(rms):
            sys.exit(f"FAIL: {name} step {step}: health {got[step]}, single process {want[step]}")
        for n in rms:
            if not ct.close(grms[n], rms[n], 1e-6) or abs(gsat[n] - sat[n]) > 1e-4:
                sys.exit(f"FAIL: {name} step {step} {n}: saturation {gsat[n]} rms {grms[n]}, "
                         f"single process {sat[n]} {rms[n]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--plan", required=True, help="dyt-plan")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # up to 4 ranks share 2 cores
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)

    one = os.path.join(args.work, "one")
    ct.run_train(args, one, *COMMON)
    ref = ct.step_records(one)
    ref_weights = safetensors(os.path.join(one, "model.safetensors"))
    weight_bound = 0.01 * sum(r[3] for r in ref[0])
    print("1x1:", ref)
    for name, ranks, overrides in LAYOUTS:
        run = os.path.join(args.work, name)
        ct.mpirun_train(args, ranks, run, *COMMON, *overrides)
        compare(name, run, ref)
        compare_health(name, run, one)
        check_comm(name, run, planned_bytes(args, overrides))
        weights = safetensors(os.path.join(run, "model.safetensors"))
        if sorted(weights) != sorted(ref_weights):
            sys.exit(f"FAIL: {name}: the export's tensors differ from the single process's")
        for t, w in ref_weights.items():
            err = float(np.max(np.abs(weights[t] - w))) if w.size else 0.0
            if weights[t].shape != w.shape or err > weight_bound:
                sys.exit(f"FAIL: {name}: exported {t} differs by {err} from the single process's "
                     f"(bound {weight_bound})")
        print(f"{name}: steps and evaluations match the single process")

    # ZeRO-1 at 2x2 (with SP): the plain 2x2 run's bits, every record and the
    # exported bytes, and the dp traffic of ZeRO-1 (reduce-scatter, fp32
    # all-gather, the norm's partials) exactly as dyt-plan predicts it.
    # Then the same with the dp reduction overlapped with the backward in
    # small buckets (parallel.overlap_grad_reduce): plain 2x2's bits again,
    # and every group's bytes (the buckets reduced onto their owners, the
    # replicated norm parameters' tp sums stage by stage) as planned.
    plain = os.path.join(args.work, "dp2_tp2")
    z1_overrides = LAYOUTS[3][2] + ["parallel.zero1=true"]
    ov_overrides = z1_overrides + ["parallel.overlap_grad_reduce=true", "parallel.grad_bucket_elements=20000"]
    for name, overrides in (("dp2_tp2_zero1", z1_overrides), ("dp2_tp2_zero1_overlap", ov_overrides)):
        run = os.path.join(args.work, name)
        p = ct.mpirun_train(args, 4, run, *COMMON, *overrides)
        if (overrides is ov_overrides) != ("buckets during the backward" in p.stdout):
            sys.exit(f"FAIL: {name}: the startup output misstates the bucketed reduction: {p.stdout}")
        check_comm(name, run, planned_bytes(args, overrides))
        if ct.step_records(run) != ct.step_records(plain):
            sys.exit(f"FAIL: {name} is not plain 2x2 bit for bit: {ct.step_records(run)}")
        if ct.read_file(os.path.join(run, "model.safetensors")) != ct.read_file(os.path.join(plain, "model.safetensors")):
            sys.exit(f"FAIL: {name} exports other weights than plain 2x2")
        print(f"{name}: plain 2x2's bits, planned bytes")

    again = os.path.join(args.work, "tp2_again")
    ct.mpirun_train(args, 2, again, *COMMON, "parallel.tp=2")
    if ct.step_records(again) != ct.step_records(os.path.join(args.work, "tp2")):
        sys.exit("FAIL: two tp=2 runs differ: every sum over ranks must have a fixed order")
    if safetensors(os.path.join(again, "model.safetensors")).keys() != ref_weights.keys():
        sys.exit("FAIL: tp=2 export")

    # 4 query heads cannot be split over 3 ranks: refused before any work.
    bad = os.path.join(args.work, "tp3")
    p = ct.mpirun_train(args, 3, bad, *COMMON, "parallel.tp=3", expect_rc=2)
    if "parallel.tp" not in p.stderr or os.path.exists(os.path.join(bad, "metrics.jsonl")):
        sys.exit("FAIL: tp=3 with 4 heads must be refused before any work, naming parallel.tp")
    print("PASS")


if __name__ == "__main__":
    main()
