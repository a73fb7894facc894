#!/usr/bin/env python3
"""bench/cuda/step_report.py on synthetic results: each of the three goals
judged from the numbers given (met and missed both occur), the speed-up
taken at the layer count both ran, failed tests and sanitizer lines listed,
and missing inputs reported as not measured. Run by CTest (bench.step_report)."""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "cuda", "step_report.py")


def ours(layers, tok_s, mfu, norm_share, forced=False):
    return {"device": "Fake H200", "layers": layers, "layers_forced": forced, "d_model": 4096, "seq": 4096,
            "params": 123, "matmul_params": 100, "flops_per_token": 4.6e10, "peak_flops": 989.4e12,
            "median_s": 4096 / tok_s, "tokens_per_s": tok_s, "mfu": mfu, "mfu_causal": mfu * 0.95,
            "breakdown_step_ms": 1000.0, "norm_share": norm_share,
            "breakdown_ms": {"GEMM": 800.0, "norms (DyT)": 1000.0 * norm_share, "attention": 100.0}}


def torch_peer(layers, tok_s):
    return {"impl": "PyTorch", "torch": "2.x", "mode": "compile", "layers": layers, "seq": 4096,
            "median_s": 4096 / tok_s, "tokens_per_s": tok_s, "mfu": 0.3, "mfu_causal": 0.29,
            "notes": ["a note"]}


def run(tmp, cuda_lines, peer=None, tests=None):
    cuda = os.path.join(tmp, "c.json")
    with open(cuda, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in cuda_lines))
    cmd = [sys.executable, SCRIPT, "--cuda", cuda]
    if peer is not None:
        path = os.path.join(tmp, "t.json")
        with open(path, "w") as f:
            f.write("torch_step_peer: some log line\n" + json.dumps(peer) + "\n")
        cmd += ["--torch", path]
    if tests is not None:
        path = os.path.join(tmp, "tests.log")
        with open(path, "w") as f:
            f.write(tests)
        cmd += ["--tests", path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def goal(text, prefix):
    lines = [l for l in text.splitlines() if l.startswith("- " + prefix)]
    assert len(lines) == 1, (prefix, text)
    return lines[0]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # All met: 55% MFU, 1.5x PyTorch, 2% DyT.
        t = run(tmp, [ours(28, 12000, 0.55, 0.02)], torch_peer(28, 8000))
        assert "**met**" in goal(t, "MFU") and "55.0%" in goal(t, "MFU"), t
        assert "**met**" in goal(t, "tokens/s") and "1.50x at 28 layers" in goal(t, "tokens/s"), t
        assert "**met**" in goal(t, "DyT") and "2.00%" in goal(t, "DyT"), t
        assert "PyTorch note: a note" in t
        # All missed: 40% MFU, 1.1x, 4% DyT.
        t = run(tmp, [ours(28, 8800, 0.40, 0.04)], torch_peer(28, 8000))
        for g in ("MFU", "tokens/s", "DyT"):
            assert "**missed**" in goal(t, g), (g, t)
        # PyTorch ran fewer layers: the ratio comes from our second line at its count.
        t = run(tmp, [ours(28, 9000, 0.52, 0.02), ours(20, 13000, 0.5, 0.02, forced=True)], torch_peer(20, 10000))
        assert "1.30x at 20 layers" in goal(t, "tokens/s"), t
        # ... and without that line it is not measured (no cross-shape ratio).
        t = run(tmp, [ours(28, 9000, 0.52, 0.02)], torch_peer(20, 10000))
        assert "not measured" in goal(t, "tokens/s"), t
        # No inputs at all: every goal not measured, still a report.
        t = run(tmp, [], None, tests="")
        for g in ("MFU", "tokens/s", "DyT"):
            assert "not measured" in goal(t, g), (g, t)
        assert "No dyt-bench-step-cuda result" in t
        # Test log: summary, failures, sanitizer lines.
        log = ("1/3 Test #1: model.cuda.Parity.Loss ..........   Passed    3.10 sec\n"
               "2/3 Test #2: model.cuda.Parity.Grads .........***Failed    2.00 sec\n"
               "3/3 Test #3: kernels.cuda.Foo.Bar ..........   Passed    0.10 sec\n"
               "  3 - kernels.cuda.Foo.Bar (Failed)\n  7 - model.cuda.parity (Timeout)\n"
               "90% tests passed, 2 tests failed out of 20\n"
               "[sanitizer] memcheck test_kernels_cuda: no errors\n"
               "[sanitizer] racecheck test_kernels_cuda: ERRORS (exit 99)\n")
        t = run(tmp, [ours(28, 12000, 0.55, 0.02)], None, tests=log)
        assert "90% tests passed, 2 tests failed out of 20" in t, t
        assert "FAILED: `kernels.cuda.Foo.Bar`" in t and "FAILED: `model.cuda.parity`" in t, t
        assert "compute-sanitizer racecheck test_kernels_cuda: ERRORS (exit 99)" in t, t
        assert "whole-model parity (model.cuda.*): 1 passed, 1 not" in t, t
        t = run(tmp, [ours(28, 12000, 0.55, 0.02)], None, tests="100% tests passed, 0 tests failed out of 1\n")
        assert "whole-model parity (model.cuda.*): none ran" in t, t
    print("step_report: all checks passed")


if __name__ == "__main__":
    main()
