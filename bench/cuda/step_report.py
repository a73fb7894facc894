#!/usr/bin/env python3
"""The whole-step part of scripts/gpu_report.sh's report.md, in Markdown.

  python3 bench/cuda/step_report.py --cuda step_cuda.json [--torch step_torch.json]
         [--tests tests.log] > part.md

step_cuda.json: JSON lines of dyt-bench-step-cuda --json, the first at the
layer count that fits (MFU, breakdown), a later one, if any, at the layer
count the PyTorch peer ran (when it had to run fewer). step_torch.json:
bench/torch_step_peer.py --json. tests.log: ctest's output with the
"[sanitizer] TOOL TEST: VERDICT" lines gpu_report.sh adds.

The issue's goals, each met, missed or not measured:
  MFU >= 50% (PaLM's count), tokens/s >= 1.2x the PyTorch peer's at the
  same shape, DyT (the norm family) <= 3% of the step.
"""
import argparse
import json
import re
import sys

MFU_GOAL, SPEEDUP_GOAL, DYT_GOAL = 0.50, 1.2, 0.03


def json_lines(path):
    if not path:
        return []
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        print(f"<!-- could not read {path}: {e} -->")
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError as e:
                print(f"<!-- bad JSON line in {path}: {e} -->")
    return out


def verdict(ok):
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def test_summary(path):
    """(ctest summary line or None, failed test names, sanitizer lines)."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None, [], []
    summary = None
    m = re.findall(r"^\d+% tests passed, \d+ tests failed out of \d+.*$", text, re.M)
    if m:
        summary = m[-1]
    failed = re.findall(r"^\s*\d+ - (\S+) \((?:Failed|Timeout|SEGFAULT|Subprocess aborted|Not Run)\)", text, re.M)
    san = re.findall(r"^\[sanitizer\] (.*)$", text, re.M)
    # ctest's per-test lines: "12/40 Test #12: model.cuda.parity ....   Passed   3.1 sec"
    results = re.findall(r"Test\s+#\d+: (\S+) \.*\s*(\*\*\*\w+|Passed|Not Run)", text)
    return summary, failed, san, results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cuda", required=True)
    p.add_argument("--torch", default="")
    p.add_argument("--tests", default="")
    a = p.parse_args()
    ours = json_lines(a.cuda)
    peer = (json_lines(a.torch) or [None])[-1]
    head = ours[0] if ours else None
    print("# Whole CUDA training step (LLaMA-7B-shaped, DyT, bf16)\n")
    if a.tests:
        summary, failed, san, results = test_summary(a.tests)
        print("## GPU tests\n")
        print(f"- ctest: {summary or 'no summary (not run, or cut off)'}")
        model = [(n, v) for n, v in results if n.startswith("model.")]
        passed = sum(v == "Passed" for _, v in model)
        print("- whole-model parity (model.cuda.*): " +
              (f"{passed} passed, {len(model) - passed} not" if model else "none ran"))
        for name in failed:
            print(f"- FAILED: `{name}`")
        for line in san:
            print(f"- compute-sanitizer {line}")
        print()
    print("## Step\n")
    if not head:
        print("No dyt-bench-step-cuda result (see bench.log).\n")
    else:
        print(f"{head['device']}: {head['layers']} layers of d {head['d_model']}"
              f"{' (--layers)' if head.get('layers_forced') else ' (as many as fit in free memory less 10%)'}, "
              f"seq {head['seq']}, {head['params']:,} parameters, N = {head['matmul_params']:,} matmul weights "
              f"(block GEMMs + LM head). FLOPs/token by PaLM's count 6N + 12·L·d·T = "
              f"{head['flops_per_token']:.4g}; peak {head['peak_flops'] / 1e12:.1f} TFLOP/s.\n")
        print("| impl | layers | median s/step | tokens/s | MFU (PaLM) | MFU (causal attention) |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in ours:
            print(f"| dyt-train CUDA | {r['layers']} | {r['median_s']:.4f} | {r['tokens_per_s']:,.0f} | "
                  f"{100 * r['mfu']:.1f}% | {100 * r['mfu_causal']:.1f}% |")
        if peer and peer.get("tokens_per_s"):
            print(f"| PyTorch {peer.get('torch', '')} ({peer.get('mode', '?')}) | {peer['layers']} | "
                  f"{peer['median_s']:.4f} | {peer['tokens_per_s']:,.0f} | {100 * peer['mfu']:.1f}% | "
                  f"{100 * peer['mfu_causal']:.1f}% |")
        print()
        if peer:
            for note in peer.get("notes", []):
                print(f"- PyTorch note: {note}")
            if peer.get("error"):
                print(f"- PyTorch error: {peer['error']}")
            print()
        bd = head.get("breakdown_ms") or {}
        if bd and head.get("breakdown_step_ms", 0) > 0:
            step_ms = head["breakdown_step_ms"]
            print(f"Time per op family (CUDA events around every backend call; step {step_ms:.1f} ms "
                  f"when so timed, {1e3 * head['median_s']:.1f} ms untimed):\n")
            print("| family | ms | share |")
            print("|---|---:|---:|")
            for fam, ms in sorted(bd.items(), key=lambda kv: -kv[1]):
                print(f"| {fam} | {ms:.2f} | {100 * ms / step_ms:.1f}% |")
            rest = step_ms - sum(bd.values())
            print(f"| (gaps between ops) | {rest:.2f} | {100 * rest / step_ms:.1f}% |\n")

    print("## Goals\n")
    mfu = head["mfu"] if head else None
    print(f"- MFU >= {100 * MFU_GOAL:.0f}% (PaLM's count): "
          f"{verdict(None if mfu is None else mfu >= MFU_GOAL)}"
          + (f" ({100 * mfu:.1f}%)" if mfu is not None else ""))
    same = None
    if peer and peer.get("tokens_per_s"):
        same = next((r for r in ours if r["layers"] == peer["layers"] and r["seq"] == peer["seq"]), None)
    ratio = same["tokens_per_s"] / peer["tokens_per_s"] if same else None
    print(f"- tokens/s >= {SPEEDUP_GOAL}x the PyTorch peer's (same shape): "
          f"{verdict(None if ratio is None else ratio >= SPEEDUP_GOAL)}"
          + (f" ({ratio:.2f}x at {same['layers']} layers, PyTorch {peer.get('mode', '?')})" if ratio else ""))
    share = head.get("norm_share") if head else None
    if share is not None and share < 0:
        share = None
    print(f"- DyT <= {100 * DYT_GOAL:.0f}% of the step: {verdict(None if share is None else share <= DYT_GOAL)}"
          + (f" ({100 * share:.2f}%)" if share is not None else ""))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
