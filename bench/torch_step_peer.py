#!/usr/bin/env python3
"""The PyTorch peer of dyt-bench-step-cuda: the same LLaMA-7B-shaped DyT model
and step, written the way a PyTorch user would make it fast.

    torch_step_peer.py --layers N [--seq 4096] [--warmup 3] [--iters 10]
                       [--device cuda|cpu] [--tiny] [--no-compile]
                       [--peak-tflops 989.4] [--seed S] [--json]

Model (bench/step_plan.h's shape): d 4096, 32 heads (= KV heads), SwiGLU
11008, vocab 32000, untied LM head; DyT in all three slots, y = γ·tanh(α·x)
with one learnable scalar α per norm (α₀ 0.8 before attention, 0.2 before the
FFN and the LM head), γ per channel, no β; the embedding output times a
learnable scalar initialised to √d; RoPE (rotate-half, θ 10000);
F.scaled_dot_product_attention(is_causal=True) (FlashAttention on Hopper in
bf16). --layers should be the count dyt-bench-step-cuda chose; when the
PyTorch step does not fit in GPU memory at that count (one eager probe step
tells), it runs 3/4 of the layers, repeatedly, and reports the count it ran.

Precision: fp32 parameters, gradients and AdamW state with the forward and
backward under torch.autocast(bfloat16), the usual PyTorch recipe and the
counterpart of our fp32 master weights with a bf16 working copy.
Step: zero_grad(set_to_none), forward on one random sequence of --seq tokens,
mean cross-entropy backward, clip_grad_norm_(1.0), AdamW(fused=True, lr 3e-4,
betas (0.9, 0.95), weight decay 0.1). Each decoder block is torch.compile'd
(regional compilation: one graph compiled, reused by the identical blocks)
unless --no-compile; when compiling fails or takes longer than 60% of
DYT_TORCH_TIMEOUT_S (default 420 s), it falls back to eager and says so.

Timing: CUDA events around each whole step on the current stream (after
--warmup steps), median of --iters; on the CPU time.perf_counter. tokens/s at
the median; MFU by PaLM's count as dyt-bench-step-cuda prints it:
6·N + 12·L·d·T FLOPs per token, N = block GEMM weights + LM head (the
embedding left out), against --peak-tflops. The run stops timing once
DYT_TORCH_TIMEOUT_S is spent and reports what it measured.

--tiny: d 256, 4 heads, SwiGLU 704, vocab 512, seq 64 by default (for
checking the logic on a CPU). --json: one JSON line, the last of stdout.
"""

import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

PEAK_TFLOPS = 989.4  # H100 / H200 SXM, dense bf16


def shape(tiny):
    if tiny:
        return dict(d=256, heads=4, ffn=704, vocab=512)
    return dict(d=4096, heads=32, ffn=11008, vocab=32000)


def flops_per_token(layers, d, ffn, vocab, seq):
    """PaLM (Chowdhery et al. 2022, app. B): 6N + 12·L·H·Q·T; N = matmul weights."""
    n = layers * (4 * d * d + 3 * d * ffn) + vocab * d
    return n, 6.0 * n + 12.0 * layers * d * seq, 6.0 * n + 6.0 * layers * d * seq


class DyT(nn.Module):
    def __init__(self, d, alpha0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha0)))
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * torch.tanh(self.alpha * x)


def rope_tables(seq, head_dim, theta, device):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim))
    ang = torch.outer(torch.arange(seq, dtype=torch.float64, device=device), inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().float(), ang.sin().float()


def sdpa_causal(q, k, v):
    """F.scaled_dot_product_attention(is_causal=True); written out on torch < 2.0
    (where it is absent: only this script's CPU check meets such a torch)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class Block(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        self.attn_norm = DyT(d, 0.8)
        self.ffn_norm = DyT(d, 0.2)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, ffn, bias=False)
        self.up = nn.Linear(d, ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        h = self.attn_norm(x)
        q, k, v = (p(h).view(b, t, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        # RoPE in the activations' dtype, so SDPA sees bf16 and takes its flash path.
        c, s = cos.to(q.dtype), sin.to(q.dtype)
        q = q * c + rotate_half(q) * s
        k = k * c + rotate_half(k) * s
        a = sdpa_causal(q, k, v)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, layers, d, heads, ffn, vocab, seq, device):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.embed_scale = nn.Parameter(torch.tensor(math.sqrt(d)))
        self.blocks = nn.ModuleList(Block(d, heads, ffn) for _ in range(layers))
        self.norm = DyT(d, 0.2)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        cos, sin = rope_tables(seq, d // heads, 10000.0, device)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens, targets):
        x = self.embed(tokens) * self.embed_scale
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


class CompileTimeout(Exception):
    pass


class FakeOutOfMemory(RuntimeError):
    """Raised above DYT_TORCH_PEER_FAKE_OOM_ABOVE layers: the test hook of the
    out-of-memory fallback (tests/bench/test_torch_step_peer.py, on a CPU)."""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--seq", type=int, default=0)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    for name in ("layers", "iters"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.warmup < 0 or a.seq < 0:
        p.error("--warmup and --seq must be >= 0")
    budget = float(os.environ.get("DYT_TORCH_TIMEOUT_S", "420"))
    start = time.monotonic()
    sh = shape(a.tiny)
    seq = a.seq or (64 if a.tiny else 4096)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_step_peer.py: --device cuda but torch sees no GPU")
    torch.manual_seed(a.seed)
    result = dict(impl="PyTorch", torch=torch.__version__, device=a.device, tiny=a.tiny, layers=a.layers,
                  seq=seq, d_model=sh["d"], heads=sh["heads"], ffn=sh["ffn"], vocab=sh["vocab"],
                  warmup=a.warmup, notes=[])
    result["device_name"] = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    n, fpt, fpt_causal = flops_per_token(a.layers, sh["d"], sh["ffn"], sh["vocab"], seq)
    result.update(matmul_params=n, flops_per_token=fpt, flops_per_token_causal=fpt_causal,
                  peak_flops=a.peak_tflops * 1e12)

    def build(layers):
        # Parameters made on the device directly where torch can (>= 2.0),
        # not drawn on the CPU and copied.
        ctx = dev if hasattr(torch.device, "__enter__") else contextlib.nullcontext()
        with ctx:
            model = Model(layers, sh["d"], sh["heads"], sh["ffn"], sh["vocab"], seq, dev).to(dev)
        decay = [q for q in model.parameters() if q.dim() >= 2]
        no_decay = [q for q in model.parameters() if q.dim() < 2]
        groups = [dict(params=decay, weight_decay=0.1), dict(params=no_decay, weight_decay=0.0)]
        hyper = dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
        if dev.type == "cuda":
            opt = torch.optim.AdamW(groups, fused=True, **hyper)
        else:  # fused AdamW is CUDA-only (and absent from old torch)
            opt = torch.optim.AdamW(groups, **hyper)
        return model, opt

    g = torch.Generator(device="cpu").manual_seed(a.seed)
    tokens = torch.randint(0, sh["vocab"], (1, seq), generator=g).to(dev)
    targets = torch.randint(0, sh["vocab"], (1, seq), generator=g).to(dev)
    amp = torch.autocast(device_type=dev.type, dtype=torch.bfloat16)

    def step(model, opt, fwd):
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = fwd(tokens, targets)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss, norm

    # One eager step at --layers; when it runs out of GPU memory (PyTorch's
    # step holds more than ours: fp32 weights plus autocast's bf16 copies),
    # 3/4 of the layers, and so on: the report then compares at that count.
    layers = a.layers
    fake_oom_above = int(os.environ.get("DYT_TORCH_PEER_FAKE_OOM_ABOVE", "0"))
    oom_errors = (FakeOutOfMemory,) + ((torch.cuda.OutOfMemoryError,) if dev.type == "cuda" else ())
    while True:
        model = opt = None
        try:
            if fake_oom_above and layers > fake_oom_above:
                raise FakeOutOfMemory()
            model, opt = build(layers)
            step(model, opt, model)
            break
        except oom_errors:
            pass
        # Out of the except block, so that the traceback (whose frames hold
        # the step's tensors) is gone before the memory is handed back.
        model = opt = None
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if layers == 1:
            result["error"] = "out of GPU memory even at 1 layer"
            print(json.dumps(result) if a.json else result["error"])
            return 1
        result["notes"].append(f"out of GPU memory at {layers} layers: {max(1, layers * 3 // 4)} instead")
        layers = max(1, layers * 3 // 4)
    if layers != a.layers:
        n, fpt, fpt_causal = flops_per_token(layers, sh["d"], sh["ffn"], sh["vocab"], seq)
        result.update(matmul_params=n, flops_per_token=fpt, flops_per_token_causal=fpt_causal)
    result.update(layers=layers, requested_layers=a.layers)
    result["params"] = sum(q.numel() for q in model.parameters())
    if dev.type != "cuda":
        result["notes"].append("AdamW not fused (fused needs CUDA)")

    fwd, mode = model, "eager"
    if not a.no_compile:
        # Regional compilation: each block torch.compile'd (the blocks are
        # identical, so after the first the compiled graph is reused, where
        # compiling the whole model would trace and compile all L of them);
        # embedding, final norm, LM head and loss stay eager. The first step
        # runs under an alarm at 60% of the budget; on failure or timeout, eager.
        def on_alarm(signum, frame):
            raise CompileTimeout()
        limit = max(1, int(budget * 0.6))
        eager_blocks = model.blocks
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(limit)
        try:
            # Where a torch guards on each block instance, L compiles must not
            # hit the recompile limit (8 by default) and fall back to eager.
            dynamo = importlib.import_module("torch._dynamo")  # not always loaded by `import torch`
            for knob in ("cache_size_limit", "recompile_limit"):
                if hasattr(dynamo.config, knob):
                    setattr(dynamo.config, knob, max(getattr(dynamo.config, knob), 2 * layers))
            t0 = time.monotonic()
            model.blocks = nn.ModuleList(torch.compile(b) for b in eager_blocks)
            step(model, opt, model)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            mode = "compile"
            result["compile_s"] = time.monotonic() - t0
        except CompileTimeout:
            model.blocks = eager_blocks
            result["notes"].append(f"torch.compile took over {limit} s: eager instead")
        except Exception as e:  # noqa: BLE001 - any compile failure falls back
            model.blocks = eager_blocks
            result["notes"].append(f"torch.compile failed ({type(e).__name__}: {str(e)[:300]}): eager instead")
            traceback.print_exc()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    result["mode"] = mode
    if not hasattr(F, "scaled_dot_product_attention"):
        result["notes"].append("no F.scaled_dot_product_attention in this torch: attention written out")
    print(f"torch_step_peer: {result['device_name']}, torch {torch.__version__}, {mode}, {layers} layers, "
          f"d {sh['d']}, seq {seq}, {result['params']} params", flush=True)

    times, loss, norm = [], float("nan"), float("nan")
    for i in range(a.warmup + a.iters):
        if time.monotonic() - start > budget:
            result["notes"].append(f"DYT_TORCH_TIMEOUT_S={budget:g} spent after {len(times)} timed steps")
            break
        if dev.type == "cuda":
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            loss_t, norm_t = step(model, opt, fwd)
            e1.record()
            e1.synchronize()
            dt = e0.elapsed_time(e1) / 1e3
        else:
            t0 = time.perf_counter()
            loss_t, norm_t = step(model, opt, fwd)
            dt = time.perf_counter() - t0
        loss, norm = float(loss_t), float(norm_t)
        if i >= a.warmup:
            times.append(dt)
    result.update(iters=len(times), times_s=times, last_loss=loss, grad_norm=norm)
    if dev.type == "cuda":
        result["max_memory_bytes"] = torch.cuda.max_memory_allocated()
    if times:
        med = statistics.median(times)
        tok_s = seq / med
        result.update(median_s=med, min_s=min(times), max_s=max(times), tokens_per_s=tok_s,
                      mfu=tok_s * fpt / (a.peak_tflops * 1e12), mfu_causal=tok_s * fpt_causal / (a.peak_tflops * 1e12))
        print(f"step: median {med:.4f} s (min {min(times):.4f}, max {max(times):.4f} over {len(times)}), "
              f"tokens/s {tok_s:.0f}, MFU {100 * result['mfu']:.1f}% (causal count {100 * result['mfu_causal']:.1f}%) "
              f"of {a.peak_tflops:g} TFLOP/s; last loss {loss:.4f}, grad norm {norm:.4f}")
    for note in result["notes"]:
        print("note:", note)
    if a.json:
        print(json.dumps(result))
    return 0 if times else 1


if __name__ == "__main__":
    sys.exit(main())
