#!/usr/bin/env python3
"""Gathers an α₀ study (scripts/alpha0_study.sh) into docs.

  alpha0_report.py OUT DOCS

For every part OUT/<part>/ with a sweep.jsonl (part names as the study
script gives them: grid_/diag_/dyisru_/rms_/rms1_/seeds<α₀>_ +
w<width>_l<layers>; a seeds part adds seeds to a DyT cell of the same shape,
and every cell's loss below is its mean over the seeds it has):

- DOCS/<part>.jsonl: the sweep's rows, each with the part's shape and norm
  and the run's health at its last logged step, read from its metrics.jsonl:
  the smallest and largest α and the mean and largest fraction of DyT inputs
  past |αx| = 3 ("saturation"). Small, so every figure can be redrawn.
- DOCS/<part>_heatmap.png: the sweep's own heatmap, for two-field parts.
- DOCS/diagonal.png: validation loss against α₀ (attention = FFN) for every
  diagonal and grid part, one line per width/depth/norm, with each shape's
  RMSNorm mean as a dashed line of the same colour.
- DOCS/summary.md: per shape, the best DyT and DyISRU cells (by their mean
  over seeds), RMSNorm's mean and spread over seeds, and the gaps; diverged
  or unfinished runs named.

Exit 2 when OUT holds no part; 3 when matplotlib is missing (the tables are
written first).
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import statistics
import sys

PART = re.compile(r"^(grid|diag|dyisru|rms1?|seeds[0-9.]+)_w(\d+)_l(\d+)$")
ATT, FFN, SEED = "model.alpha_init.attention", "model.alpha_init.ffn", "train.seed"


def finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def last_health(metrics):
    """α range and saturation at the last training line that has them."""
    alpha = sat = None
    with open(metrics) as f:
        for line in f:
            rec = json.loads(line)
            if "alpha" in rec:
                alpha = rec["alpha"]
            if "saturation" in rec:
                sat = rec["saturation"]
    h = {}
    if alpha:
        h["alpha_min"], h["alpha_max"] = min(alpha.values()), max(alpha.values())
    if sat:
        h["saturation_mean"] = sum(sat.values()) / len(sat)
        h["saturation_max"] = max(sat.values())
    return h


def read_part(out, name):
    kind, width, depth = PART.match(name).groups()
    norm = {"rms": "RMSNORM", "rms1": "RMSNORM", "dyisru": "DYISRU"}.get(kind, "DYT")
    with open(os.path.join(out, name, "sweep.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        r.update({"part": name, "norm": norm, "width": int(width), "depth": int(depth)})
        if kind in ("diag", "dyisru"):  # one-field sweeps of α₀ attention with FFN set equal
            r[FFN] = r[ATT]
        found = glob.glob(os.path.join(out, name, "**", r["run"], "metrics.jsonl"), recursive=True)
        if found:
            r.update(last_health(found[0]))
    return rows


def fmt(v, digits=3):
    return f"{v:.{digits}f}" if finite(v) else "–"


def finished(rows):
    return [r for r in rows if r["status"] == "finished" and finite(r.get("val_loss"))]


def cells(rows, norm):
    """(α₀ attention, α₀ FFN) -> the finished runs of that cell (any seed)."""
    out = {}
    for r in finished([r for r in rows if r["norm"] == norm]):
        out.setdefault((r[ATT], r[FFN]), []).append(r)
    return out


def best_cell(rows, norm):
    """The cell with the lowest mean validation loss over its seeds, as a row
    (val_loss and saturation_mean averaged, n the number of seeds), or None."""
    best = None
    for (att, ffn), runs in cells(rows, norm).items():
        sats = [r["saturation_mean"] for r in runs if finite(r.get("saturation_mean"))]
        c = {ATT: att, FFN: ffn, "n": len(runs), "val_loss": statistics.fmean(r["val_loss"] for r in runs),
             "saturation_mean": statistics.fmean(sats) if sats else None}
        if best is None or c["val_loss"] < best["val_loss"]:
            best = c
    return best


def summary(parts):
    shapes = sorted({(r["width"], r["depth"]) for rows in parts.values() for r in rows})
    lines = ["| width | layers | best DyT (α₀ att/FFN) | its saturation | best DyISRU (α₀) | RMSNorm mean (seeds) "
             "| RMSNorm spread | DyT − RMSNorm | DyISRU − RMSNorm |",
             "|---|---|---|---|---|---|---|---|---|"]
    trouble = []
    for w, d in shapes:
        rows = [r for rs in parts.values() for r in rs if (r["width"], r["depth"]) == (w, d)]
        trouble += [r for r in rows if r["status"] != "finished"]
        dyt, isru = best_cell(rows, "DYT"), best_cell(rows, "DYISRU")
        rms = [r["val_loss"] for r in finished([r for r in rows if r["norm"] == "RMSNORM"])]
        mean = statistics.fmean(rms) if rms else float("nan")
        spread = max(rms) - min(rms) if len(rms) > 1 else float("nan")

        def cell(b):
            if not b:
                return "–"
            seeds = f", {b['n']} seeds" if b["n"] > 1 else ""
            return f"{fmt(b['val_loss'])} ({b[ATT]}/{b[FFN]}{seeds})"

        lines.append(
            f"| {w} | {d} | {cell(dyt)} | {fmt(dyt['saturation_mean'] if dyt else None, 2)} "
            f"| {cell(isru)} | {fmt(mean)} ({len(rms)}) | {fmt(spread)} "
            f"| {fmt(dyt['val_loss'] - mean if dyt else None)} | {fmt(isru['val_loss'] - mean if isru else None)} |")
    if trouble:
        lines += ["", "Runs that did not finish:", ""]
        lines += [f"- {r['part']} {r['run']}: {r['status']} at step {r['steps']}" for r in trouble]
    return "\n".join(lines) + "\n"


def plot_diagonal(plt, parts, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {}
    for rows in parts.values():
        for r in rows:
            colours.setdefault((r["width"], r["depth"]), f"C{len(colours)}")
    everything = [r for rows in parts.values() for r in rows]
    for (w, d), colour in colours.items():
        rows = [r for r in everything if (r["width"], r["depth"]) == (w, d)]
        for norm, style in (("DYT", "o-"), ("DYISRU", "s--")):
            diag = sorted((float(a), statistics.fmean(r["val_loss"] for r in runs))
                          for (a, f), runs in cells(rows, norm).items() if a == f)
            if diag:
                ax.plot(*zip(*diag), style, color=colour, label=f"{norm} w{w} l{d}")
        rms = [r["val_loss"] for r in finished([r for r in rows if r["norm"] == "RMSNORM"])]
        if rms:
            ax.axhline(statistics.fmean(rms), ls=":", color=colour, label=f"RMSNorm w{w} l{d}")
    for r in everything:  # a diverged diagonal run: an x at the top of the axis
        if r["status"] == "diverged" and r.get(ATT) is not None and r.get(ATT) == r.get(FFN):
            ax.plot([float(r[ATT])], [ax.get_ylim()[1]], "x", color=colours[(r["width"], r["depth"])])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("α₀ (attention = FFN)")
    ax.set_ylabel("validation loss at the last step (mean over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="the study's output directory (alpha0_study.sh OUT)")
    ap.add_argument("docs", help="where the tables and plots go (docs/alpha0)")
    args = ap.parse_args()
    names = sorted(n for n in (os.listdir(args.out) if os.path.isdir(args.out) else [])
                   if PART.match(n) and os.path.exists(os.path.join(args.out, n, "sweep.jsonl")))
    if not names:
        print(f"alpha0_report.py: {args.out} holds no study part with a sweep.jsonl", file=sys.stderr)
        return 2
    os.makedirs(args.docs, exist_ok=True)
    parts = {n: read_part(args.out, n) for n in names}
    for n, rows in parts.items():
        with open(os.path.join(args.docs, n + ".jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        heat = os.path.join(args.out, n, "sweep_heatmap.png")
        if n.startswith("grid") and os.path.exists(heat):
            shutil.copyfile(heat, os.path.join(args.docs, n + "_heatmap.png"))
    with open(os.path.join(args.docs, "summary.md"), "w") as f:
        f.write(summary(parts))
    print(f"alpha0_report.py: {len(names)} parts into {args.docs}: " + ", ".join(names))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("alpha0_report.py: matplotlib is missing (apt-get install python3-matplotlib); "
              "tables written, no diagonal.png", file=sys.stderr)
        return 3
    plot_diagonal(plt, parts, os.path.join(args.docs, "diagonal.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
