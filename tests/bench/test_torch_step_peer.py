#!/usr/bin/env python3
"""bench/torch_step_peer.py on the CPU at its tiny shape: it runs, falls back
to eager where torch.compile is missing or fails (and says so), builds the
model dyt-bench-step-cuda times (parameter count derived here independently:
embedding, LM head, 7 matrices per block, γ per norm, α per norm, the
embedding scale), drops to 3/4 of the layers when out of memory (a test
hook stands in for the GPU's error), starts from the loss of a uniform guess, ln(vocab), and
reports tokens/s and MFU with the FLOP count of bench/step_plan.h. Run by
CTest (bench.torch_step_peer); a few seconds."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "torch_step_peer.py")


def main():
    layers, d, ffn, vocab, seq = 2, 256, 704, 512, 64
    r = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", "--layers", str(layers),
                        "--warmup", "1", "--iters", "2", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    norms = 2 * layers + 1
    params = 2 * vocab * d + layers * (4 * d * d + 3 * d * ffn) + norms * d + norms + 1
    assert res["params"] == params, (res["params"], params)
    n = layers * (4 * d * d + 3 * d * ffn) + vocab * d
    assert res["matmul_params"] == n
    assert res["flops_per_token"] == 6 * n + 12 * layers * d * seq
    assert res["iters"] == 2 and len(res["times_s"]) == 2 and res["tokens_per_s"] > 0
    assert abs(res["tokens_per_s"] - seq / res["median_s"]) < 1e-6 * res["tokens_per_s"]
    assert abs(res["mfu"] - res["tokens_per_s"] * res["flops_per_token"] / res["peak_flops"]) < 1e-12
    assert abs(res["last_loss"] - math.log(vocab)) < 0.2, res["last_loss"]
    assert res["mode"] in ("eager", "compile")
    if res["mode"] == "eager":
        assert any("torch.compile" in note for note in res["notes"]), res["notes"]
    # Out of memory at 4 and 3 layers (the test hook): 3/4 of the layers each
    # time, so it runs 2, and the FLOP count follows the layers it ran.
    env = dict(os.environ, DYT_TORCH_PEER_FAKE_OOM_ABOVE="2")
    r = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", "--layers", "4", "--warmup", "0",
                        "--iters", "1", "--no-compile", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["layers"] == 2 and res["requested_layers"] == 4, res
    assert [n for n in res["notes"] if "out of GPU memory" in n] == [
        "out of GPU memory at 4 layers: 3 instead", "out of GPU memory at 3 layers: 2 instead"], res["notes"]
    assert res["params"] == params and res["matmul_params"] == n, res
    # Bad input: one clear error, non-zero exit.
    bad = subprocess.run([sys.executable, SCRIPT, "--tiny", "--layers", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--layers must be >= 1" in bad.stderr, bad.stderr
    print("torch_step_peer: all checks passed")


if __name__ == "__main__":
    main()
