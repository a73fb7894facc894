#!/usr/bin/env python3
"""scripts/alpha0_report.py on a made-up α₀ study directory.

  check_alpha0_report.py --scripts DIR --work DIR [--python PATH]

Parts as alpha0_study.sh lays them out: a 2×2 grid at width 64 (one run
diverged), two more seeds of its cell 1/1 (a seeds part), a diagonal at
width 128 (one single-run sweep per α₀ in a<v>/), a DyISRU diagonal at
width 64, RMSNorm over three seeds at width 64 and one at width 128. The
summary must name the best cell of each norm per shape by its mean over
seeds (the cell with the best single run is not the best mean), with
RMSNorm's mean and spread, the gaps, and the diverged run; each part's rows
must carry the run's last α range and saturation; the diagonal plot must be
a PNG. An empty directory exits 2.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

PNG = b"\x89PNG\r\n\x1a\n"
ATT, FFN = "model.alpha_init.attention", "model.alpha_init.ffn"


def fail(msg):
    sys.exit(f"FAIL: {msg}")


def run_dir(path, val, alphas, sats):
    os.makedirs(path)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 0, "val_loss": 8.3}) + "\n")
        f.write(json.dumps({"step": 1, "loss": 8.0, "alpha": {"a": 9.0}, "saturation": {"s": 0.99}}) + "\n")
        row = {"step": 2, "loss": 7.0}
        if alphas:
            row["alpha"] = {f"model.layers.{i}.alpha": a for i, a in enumerate(alphas)}
            row["saturation"] = {f"model.layers.{i}": s for i, s in enumerate(sats)}
        f.write(json.dumps(row) + "\n")
        f.write(json.dumps({"step": 2, "val_loss": val}) + "\n")


def sweep_row(run, fields, val, status="finished"):
    r = {"run": run}
    r.update(fields)
    r.update({"status": status, "exit_code": 0 if status != "diverged" else 1, "steps": 2,
              "train_loss": 7.0, "val_loss": val})
    return r


def write_part(out, name, rows):
    os.makedirs(os.path.join(out, name), exist_ok=True)
    with open(os.path.join(out, name, "sweep.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def make_study(out):
    grid = []
    for a, f_, val, status in (("1", "1", 5.10, "finished"), ("1", "4", 5.05, "finished"),
                               ("4", "1", 5.20, "finished"), ("4", "4", None, "diverged")):
        run = f"attention={a}_ffn={f_}"
        grid.append(sweep_row(run, {ATT: a, FFN: f_}, val, status))
        run_dir(os.path.join(out, "grid_w64_l4", run), val, [1.5, 2.5], [0.2, 0.4])
    write_part(out, "grid_w64_l4", grid)
    seeds = []
    for seed, val in (("2", 4.95), ("3", 5.00)):
        run = f"attention=1_ffn=1_seed={seed}"
        seeds.append(sweep_row(run, {ATT: "1", FFN: "1", "train.seed": seed}, val))
        run_dir(os.path.join(out, "seeds1_w64_l4", run), val, [1.0], [0.1])
    write_part(out, "seeds1_w64_l4", seeds)
    diag = []
    for a, val in (("2", 4.80), ("8", 4.70)):
        run = f"attention={a}"
        diag.append(sweep_row(run, {ATT: a}, val))
        run_dir(os.path.join(out, "diag_w128_l4", "a" + a, run), val, [float(a)], [0.5])
    write_part(out, "diag_w128_l4", diag)
    isru = [sweep_row("attention=2", {ATT: "2"}, 5.00)]
    run_dir(os.path.join(out, "dyisru_w64_l4", "a2", "attention=2"), 5.00, [2.0], [0.1])
    write_part(out, "dyisru_w64_l4", isru)
    rms = []
    for seed, val in (("1234", 4.90), ("2", 5.00), ("3", 4.95)):
        rms.append(sweep_row(f"seed={seed}", {"train.seed": seed}, val))
        run_dir(os.path.join(out, "rms_w64_l4", f"seed={seed}"), val, [], [])
    write_part(out, "rms_w64_l4", rms)
    write_part(out, "rms1_w128_l4", [sweep_row("seed=1234", {"train.seed": "1234"}, 4.60)])
    run_dir(os.path.join(out, "rms1_w128_l4", "seed=1234"), 4.60, [], [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scripts", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    work = os.path.join(args.work, "alpha0_report")
    shutil.rmtree(work, ignore_errors=True)
    out, docs = os.path.join(work, "study"), os.path.join(work, "docs")
    script = os.path.join(args.scripts, "alpha0_report.py")

    os.makedirs(out)
    p = subprocess.run([args.python, script, out, docs], capture_output=True, text=True)
    if p.returncode != 2 or "no study part" not in p.stderr:
        fail(f"an empty study should exit 2 naming it, got {p.returncode}: {p.stderr}")

    make_study(out)
    p = subprocess.run([args.python, script, out, docs], capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"alpha0_report.py exited {p.returncode}: {p.stderr}")

    with open(os.path.join(docs, "summary.md")) as f:
        summary = f.read()
    lines = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in summary.splitlines()
             if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    w64, w128 = lines.get(("64", "4")), lines.get(("128", "4"))
    if not w64 or not w128:
        fail(f"summary lacks a row per shape:\n{summary}")
    # width 64: best DyT cell 1/1, mean of 5.10, 4.95 and 5.00 = 5.017 (1/4 has the best
    # single run, 5.05 < 5.10; the diverged 4/4 is not a cell), its saturation the mean
    # of 0.3, 0.1, 0.1; DyISRU 5.000; RMSNorm mean 4.950 over 3 seeds, spread 0.100;
    # gaps 0.067 and 0.050.
    for want in ("5.017 (1/1, 3 seeds)", "| 0.17 |", "5.000 (2/2)", "4.950 (3)", "| 0.100 |", "| 0.067 |",
                 "| 0.050 |"):
        if want not in w64:
            fail(f"width-64 row lacks '{want}': {w64}")
    for want in ("4.700 (8/8)", "4.600 (1)", "| 0.100 |"):
        if want not in w128:
            fail(f"width-128 row lacks '{want}': {w128}")
    if "grid_w64_l4 attention=4_ffn=4: diverged" not in summary:
        fail(f"summary does not name the diverged run:\n{summary}")

    with open(os.path.join(docs, "grid_w64_l4.jsonl")) as f:
        rows = {r["run"]: r for r in map(json.loads, f)}
    r = rows["attention=1_ffn=4"]
    if (r["alpha_min"], r["alpha_max"], r["saturation_max"]) != (1.5, 2.5, 0.4) or \
            abs(r["saturation_mean"] - 0.3) > 1e-12 or (r["width"], r["depth"], r["norm"]) != (64, 4, "DYT"):
        fail(f"grid row health or shape wrong (the last logged step's, not the first): {r}")
    with open(os.path.join(docs, "diag_w128_l4.jsonl")) as f:
        diag = list(map(json.loads, f))
    if any(d[FFN] != d[ATT] for d in diag) or diag[1]["alpha_max"] != 8.0:
        fail(f"diagonal rows should set FFN = attention and carry their own run's α: {diag}")

    with open(os.path.join(docs, "diagonal.png"), "rb") as f:
        if f.read(8) != PNG:
            fail("diagonal.png is not a PNG")
    print("alpha0_report.py: OK")


if __name__ == "__main__":
    main()
