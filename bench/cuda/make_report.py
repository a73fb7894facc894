#!/usr/bin/env python3
"""Merges dyt-bench-norms-cuda's and bench_norms_torch.py's JSON into a Markdown report.

  python3 bench/cuda/make_report.py --cuda bench_cuda.json [--torch bench_torch.json ...]
         [--tests tests.log] > report.md

Per width: our median time, GB/s and fraction of the copy bandwidth measured
in the same run, PyTorch eager and torch.compile medians, and our speed-up
over torch.compile; then the issue's goals, each marked met or missed.
"""
import argparse
import json
import re
import sys

ORDER = ["copy", "dyt_fwd", "dyt_bwd", "dyt_res_fwd", "add+dyt_fwd", "dyt_res_bwd",
         "dyisru_fwd", "dyisru_bwd", "dyisru_res_fwd", "dyisru_res_bwd",
         "rmsnorm_fwd", "rmsnorm_bwd"]


def load(path):
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"<!-- could not read {path}: {e} -->")
        return None


def merge_torch(runs):
    """One torch result set from several files (None when none could be read)."""
    runs = [r for r in runs if r]
    if not runs:
        return None
    merged = dict(runs[0], results=[], errors=[])
    for r in runs:
        merged["results"] += r.get("results", [])
        merged["errors"] += r.get("errors", [])
    return merged


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cuda", required=True)
    p.add_argument("--torch", action="append", default=[],
                   help="bench_norms_torch.py JSON; repeat to merge runs (e.g. eager and compile "
                        "measured in separate calls)")
    p.add_argument("--tests", default="")
    a = p.parse_args()
    ours = load(a.cuda)
    torch_res = merge_torch([load(path) for path in a.torch])
    if not ours:
        print("# CUDA norm kernels: no benchmark results\n")
        return 1
    tt = {}
    if torch_res:
        for r in torch_res["results"]:
            tt[(r["op"], r["d"], r["mode"])] = r["median_us"]
    res = {(r["op"], r["d"]): r for r in ours["results"]}
    widths = sorted({r["d"] for r in ours["results"]})

    print("# CUDA norm kernels: bandwidth report\n")
    print(f"- device: {ours['device']} ({ours['sms']} SMs); rows {ours['rows']}, "
          f"{ours['dtype']}, median of {ours['reps']} timed calls, inputs rotated past L2")
    if torch_res:
        print(f"- PyTorch {torch_res['torch']} on {torch_res['device']}: eager and "
              f"torch.compile (default mode, static shapes), same shapes and timing method")
    if a.tests:
        try:
            log = open(a.tests).read()
            m = re.findall(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", log)
            lite = re.findall(r"(\d+) passed, (\d+) failed, (\d+) skipped", log)
            skipped = len(re.findall(r"\(Skipped\)", log))
            if m:
                print(f"- GPU tests (ctest): {m[-1][0]}% passed, {m[-1][1]} failed of {m[-1][2]}, "
                      f"{skipped} skipped" + (" (**a GPU run should skip none**)" if skipped else ""))
            if lite:
                print(f"- GPU tests (gtest_lite): {lite[-1][0]} passed, {lite[-1][1]} failed, "
                      f"{lite[-1][2]} skipped" +
                      (" (**a GPU run should skip none**)" if lite[-1][2] != "0" else ""))
        except OSError:
            pass
    print("- bytes: each activation read once and written once; GB/s = bytes / median; "
          "'of copy' = GB/s over a device-to-device copy's in the same run\n")

    goals = []
    for d in widths:
        copy = res.get(("copy", d))
        print(f"## width {d}\n")
        print("| op | ours µs | GB/s | of copy | eager µs | compile µs | ours vs compile |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for op in ORDER:
            r = res.get((op, d))
            if not r:
                continue
            eager = tt.get((op, d, "eager"))
            comp = tt.get((op, d, "compile"))
            speed = f"{comp / r['median_us']:.2f}×" if comp else "–"
            print(f"| {op} | {r['median_us']:.1f} | {r['gbps']:.0f} | {100 * r['of_copy']:.1f}% | "
                  f"{f'{eager:.1f}' if eager else '–'} | {f'{comp:.1f}' if comp else '–'} | {speed} |")
            if op != "copy" and comp:
                goals.append((f"{op} d={d} faster than torch.compile", r["median_us"] < comp,
                              f"{r['median_us']:.1f} vs {comp:.1f} µs"))
        print()
        for op, need in (("dyt_fwd", 0.90), ("dyt_bwd", 0.80)):
            r = res.get((op, d))
            if r and copy:
                goals.append((f"{op} d={d} ≥ {int(need * 100)}% of copy bandwidth",
                              r["of_copy"] >= need, f"{100 * r['of_copy']:.1f}%"))
        f, u = res.get(("dyt_res_fwd", d)), res.get(("add+dyt_fwd", d))
        if f and u:
            goals.append((f"dyt_res_fwd d={d} faster than add then DyT", f["median_us"] < u["median_us"],
                          f"{f['median_us']:.1f} vs {u['median_us']:.1f} µs"))

    print("## Goals (issue #4)\n")
    print("| goal | met | measured |")
    print("|---|---|---|")
    for name, ok, what in goals:
        print(f"| {name} | {'yes' if ok else '**no**'} | {what} |")
    if torch_res and torch_res.get("errors"):
        print("\n## PyTorch errors\n")
        for e in torch_res["errors"]:
            print(f"- {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
