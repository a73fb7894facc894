#!/usr/bin/env python3
"""The α trajectories of one dyt-train run: every DyT layer's α per logged step.

  plot_alpha.py RUN_DIR_OR_METRICS_JSONL [--out PNG]

Reads the "alpha" object of each training line of metrics.jsonl and draws one
line per layer (attention, FFN and final DyT in three line styles, the layer
index as colour) into RUN_DIR/alpha.png (or --out). Exit 3 when matplotlib
is missing, 2 when the run logged no α (an RMSNorm run, or no step yet).
"""
import argparse
import json
import os
import sys


def need_matplotlib():
    """pyplot with a file-only backend, or exit 3 saying how to get it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError as e:
        print(f"{os.path.basename(sys.argv[0])}: matplotlib is missing ({e}); install Debian's "
              "python3-matplotlib (scripts/setup.sh does) or pass --no-plot to dyt-sweep", file=sys.stderr)
        sys.exit(3)


def read_alphas(metrics_path):
    """{name: ([steps], [α])} in the order the run logs them."""
    series = {}
    with open(metrics_path) as f:
        for line in f:
            row = json.loads(line)
            for name, a in (row.get("alpha") or {}).items():
                steps, values = series.setdefault(name, ([], []))
                steps.append(row["step"])
                values.append(float("nan") if a is None else a)
    return series


def style(name):
    """Line style by DyT kind, so attention / FFN / final read apart."""
    if "input_layernorm" in name:
        return "-"
    if "post_attention_layernorm" in name:
        return "--"
    return ":"


def draw(plt, series, title, out):
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    cmap = plt.get_cmap("viridis")
    for i, (name, (steps, values)) in enumerate(series.items()):
        label = name.replace("model.", "").replace(".alpha", "")
        ax.plot(steps, values, style(name), color=cmap(i / max(1, len(series) - 1)), label=label, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("α")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def plot_run(plt, path, out=None):
    """Draws path's α; returns the PNG's path, or None when it logged no α."""
    metrics = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    series = read_alphas(metrics)
    if not series:
        return None
    out = out or os.path.join(os.path.dirname(os.path.abspath(metrics)), "alpha.png")
    draw(plt, series, f"α per DyT layer: {os.path.basename(os.path.dirname(os.path.abspath(metrics)))}", out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run directory (its metrics.jsonl) or a metrics.jsonl file")
    ap.add_argument("--out", help="the PNG to write (default: alpha.png beside metrics.jsonl)")
    args = ap.parse_args()
    plt = need_matplotlib()
    try:
        out = plot_run(plt, args.run, args.out)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"plot_alpha.py: {args.run}: {e}")
    if out is None:
        print(f"plot_alpha.py: {args.run}: no α in its metrics (an RMSNorm run, or no step logged)",
              file=sys.stderr)
        sys.exit(2)
    print(f"plot_alpha.py: wrote {out}")


if __name__ == "__main__":
    main()
