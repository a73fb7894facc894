#!/usr/bin/env python3
"""The plots of a dyt-sweep directory, written beside its table.

  plot_sweep.py OUT [--x FIELD] [--y FIELD]

From OUT/sweep.jsonl (one row per run, written by dyt-sweep or
`dyt-sweep --collect`) and each run's OUT/<run>/metrics.jsonl:

- OUT/sweep_heatmap.png: the final validation loss over two swept fields
  (default: the second field across, the first down; one row for a
  one-field sweep). With more fields, each cell shows the best run over the
  others. A cell with no finished run is hatched and marked: 'x' diverged,
  'failed', 'unfinished'.
- OUT/sweep_losses.png: every run's training loss per step (solid) and its
  validation losses (dots), one colour per run; a diverged run's curve ends
  in an 'x'.
- OUT/<run>/alpha.png: each DyT run's α per layer (scripts/plot_alpha.py).
- OUT/sweep_plot.json: what the heatmap shows, cell by cell (for tests and
  for readers without an image viewer).

Exit 3 when matplotlib is missing, 2 when OUT holds no sweep.jsonl.
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_alpha  # noqa: E402

RESULT_KEYS = {"run", "status", "exit_code", "steps", "train_loss", "val_loss"}
MARKS = {"diverged": "x", "failed": "failed", "unfinished": "unfinished"}


def read_rows(out):
    path = os.path.join(out, "sweep.jsonl")
    if not os.path.exists(path):
        print(f"plot_sweep.py: {path} is missing (run dyt-sweep, or dyt-sweep --collect --out {out})",
              file=sys.stderr)
        sys.exit(2)
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        print(f"plot_sweep.py: {path} holds no run", file=sys.stderr)
        sys.exit(2)
    return rows


def fields_of(rows):
    """The swept fields, in the sweep's order (the keys dyt-sweep writes first)."""
    return [k for k in rows[0] if k not in RESULT_KEYS]


def ordered(values):
    """Unique values in the order of first appearance (the sweep's order)."""
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def finite(v):
    return v is not None and math.isfinite(v)


def cell_of(runs):
    """One cell from the runs that share its (x, y): the best finished run's
    validation loss, else the mark of why there is none."""
    done = [r for r in runs if r["status"] == "finished" and finite(r["val_loss"])]
    if done:
        best = min(done, key=lambda r: r["val_loss"])
        return {"status": "finished", "val_loss": best["val_loss"], "run": best["run"], "mark": ""}
    # No finished run: the most telling reason (diverged is a result, say it first).
    for status in ("diverged", "failed", "unfinished", "finished"):
        hit = [r for r in runs if r["status"] == status]
        if hit:
            return {"status": status, "val_loss": None, "run": hit[0]["run"], "mark": MARKS.get(status, "–")}
    return {"status": "absent", "val_loss": None, "run": None, "mark": ""}


def heatmap(plt, rows, xf, yf, out):
    xs = ordered(r[xf] for r in rows) if xf else [""]
    ys = ordered(r[yf] for r in rows)
    cells = []
    grid = [[math.nan] * len(xs) for _ in ys]
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            c = cell_of([r for r in rows if r[yf] == y and (not xf or r[xf] == x)])
            c.update({"x": x, "y": y})
            cells.append(c)
            if c["val_loss"] is not None:
                grid[i][j] = c["val_loss"]
    import numpy as np
    import matplotlib.patches as patches
    data = np.ma.masked_invalid(np.array(grid, dtype=float))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(xs), 1.4 + 0.8 * len(ys)), dpi=100)
    cmap = plt.get_cmap("viridis_r").copy()
    cmap.set_bad("white")
    im = ax.imshow(data, cmap=cmap, aspect="auto")
    fig.colorbar(im, ax=ax, label="final validation loss")
    for c in cells:
        i, j = ys.index(c["y"]), xs.index(c["x"])
        if c["val_loss"] is not None:
            ax.text(j, i, f"{c['val_loss']:.4f}", ha="center", va="center", fontsize=8, color="white")
        else:
            ax.add_patch(patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                           edgecolor="grey", linewidth=0))
            ax.text(j, i, c["mark"], ha="center", va="center", color="crimson",
                    fontsize=16 if c["mark"] == "x" else 8, fontweight="bold")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(xf or "")
    ax.set_ylabel(yf)
    others = [f for f in fields_of(rows) if f not in (xf, yf)]
    ax.set_title("final validation loss" + (f" (best over {', '.join(others)})" if others else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return {"x_field": xf, "y_field": yf, "x_values": xs, "y_values": ys, "cells": cells}


def read_curves(run_dir):
    """([steps], [train loss]), ([steps], [val loss]) from a run's metrics."""
    train, val = ([], []), ([], [])
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return train, val
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "val_loss" in row:
                val[0].append(row["step"])
                val[1].append(math.nan if row["val_loss"] is None else row["val_loss"])
            elif "loss" in row:
                train[0].append(row["step"])
                train[1].append(math.nan if row["loss"] is None else row["loss"])
    return train, val


def losses(plt, out, rows, path):
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=100)
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "viridis")
    for k, r in enumerate(rows):
        color = cmap(k % 10 if len(rows) <= 10 else k / max(1, len(rows) - 1))
        (ts, tl), (vs, vl) = read_curves(os.path.join(out, r["run"]))
        label = r["run"] + ("" if r["status"] == "finished" else f" ({r['status']})")
        ax.plot(ts, tl, "-", color=color, linewidth=1.2, label=label)
        ax.plot(vs, vl, "o", color=color, markersize=4)
        if r["status"] == "diverged":
            good = [(s, v) for s, v in zip(ts, tl) if math.isfinite(v)]
            if good:
                ax.plot(*good[-1], "x", color="crimson", markersize=10, markeredgewidth=2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (lines: train, dots: validation)")
    ax.set_title("loss per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="a dyt-sweep --out directory")
    ap.add_argument("--x", help="the swept field across the heatmap (default: the second)")
    ap.add_argument("--y", help="the swept field down the heatmap (default: the first)")
    args = ap.parse_args()
    rows = read_rows(args.out)
    fields = fields_of(rows)
    plt = plot_alpha.need_matplotlib()
    yf = args.y or fields[0]
    xf = args.x or next((f for f in fields if f != yf), None)
    for f in (xf, yf):
        if f is not None and f not in fields:
            sys.exit(f"plot_sweep.py: {f} is not a swept field of {args.out} (fields: {', '.join(fields)})")

    written = []
    heat = heatmap(plt, rows, xf, yf, os.path.join(args.out, "sweep_heatmap.png"))
    written.append("sweep_heatmap.png")
    losses(plt, args.out, rows, os.path.join(args.out, "sweep_losses.png"))
    written.append("sweep_losses.png")
    for r in rows:
        metrics = os.path.join(args.out, r["run"], "metrics.jsonl")
        if os.path.exists(metrics) and plot_alpha.plot_run(plt, metrics):
            written.append(os.path.join(r["run"], "alpha.png"))
    heat["files"] = written
    with open(os.path.join(args.out, "sweep_plot.json"), "w") as f:
        json.dump(heat, f, indent=1)
        f.write("\n")

    marked = [c for c in heat["cells"] if c["mark"]]
    print(f"plot_sweep.py: {len(heat['cells'])} cells of {yf} × {xf}; "
          f"{len(marked)} without a finished run"
          + "".join(f"\n  {c['mark']:>10}  {yf}={c['y']}" + (f" {xf}={c['x']}" if xf else "") + f" ({c['status']})"
                    for c in marked))
    print(f"plot_sweep.py: wrote {', '.join(os.path.join(args.out, w) for w in written)}, "
          f"{os.path.join(args.out, 'sweep_plot.json')}")


if __name__ == "__main__":
    main()
