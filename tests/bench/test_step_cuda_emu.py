#!/usr/bin/env python3
"""dyt-bench-step-cuda through the host emulator (tests/kernels/cuda/emu) at
--tiny, 2 layers: it runs the whole step (its loss starts at ln(vocab)),
reports the model it built, and every op of the step went through the timing
decorator into its family, as many calls as the model's math makes (per layer
7 GEMMs forward and 14 backward, 4 norms, 4 RoPE, 2 attention, 2 SwiGLU; plus
the LM head's 3 GEMMs, the final norm's 2, one fused cross-entropy). The
emulator's event times are placeholders: only counts are checked. Bad options
exit 2 with one message. Run by CTest (bench.step_cuda_emu)."""
import json
import math
import subprocess
import sys


def main():
    exe = sys.argv[1]
    layers = 2
    r = subprocess.run([exe, "--tiny", "--layers", str(layers), "--warmup", "1", "--iters", "2",
                        "--breakdown-iters", "1", "--json"], capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    d, ffn, vocab, seq = 256, 704, 512, 64
    assert (res["layers"], res["d_model"], res["ffn"], res["vocab"], res["seq"]) == (layers, d, ffn, vocab, seq), res
    assert res["layers_forced"] is True and res["tiny"] is True
    norms = 2 * layers + 1
    assert res["params"] == 2 * vocab * d + layers * (4 * d * d + 3 * d * ffn) + norms * (d + 1) + 1, res["params"]
    assert res["matmul_params"] == layers * (4 * d * d + 3 * d * ffn) + vocab * d
    assert res["skipped"] == 0 and abs(res["last_loss"] - math.log(vocab)) < 0.2, res["last_loss"]
    assert res["iters"] == 2 and len(res["times_s"]) == 2
    calls = res["breakdown_calls"]
    expect = {"GEMM": 21 * layers + 3, "norms (DyT)": 4 * layers + 2, "RoPE": 4 * layers,
              "attention": 2 * layers, "SwiGLU": 2 * layers, "cross-entropy": 1}
    for fam, n in expect.items():
        assert calls[fam] == n, (fam, calls[fam], n, calls)
    for fam in ("embedding", "optimizer/reductions"):  # lookup + scale; sum of squares + AdamW
        assert calls[fam] >= 2, (fam, calls)
    assert set(res["breakdown_ms"]) == set(calls)
    # The fitted layer count: without --layers, as many as the emulator's
    # 16 GiB allow, capped at LLaMA-7B's 32.
    r = subprocess.run([exe, "--tiny", "--warmup", "0", "--iters", "1", "--breakdown-iters", "0", "--json", "--seq", "8"],
                       capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["layers"] == 32 and res["layers_forced"] is False, res
    bad = subprocess.run([exe, "--layers", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--layers needs an integer >= 1" in bad.stderr, bad.stderr
    print("dyt-bench-step-cuda (emulated): all checks passed")


if __name__ == "__main__":
    main()
