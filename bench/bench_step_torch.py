#!/usr/bin/python3
"""The training step of dyt-bench-step, in PyTorch float32 on the CPU.

    bench_step_torch.py --shape SHAPE.json [--threads N] [--warmup 2] [--iters 10] [--json]

SHAPE.json is what `dyt-bench-step --shape-out SHAPE.json` writes: the resolved
model in Hugging Face config keys ("model") and the step settings ("train").
The model is the PyTorch reference tests/reference/llama_dyt.py (eager
autograd, the same math as the C++ model), run in float32 instead of its
float64 default. One step, as in bench/bench_step.cc:

    zero the gradients
    for each of the global_batch_tokens / (micro_batch * seq_len) micro-batches:
        (mean cross-entropy / micro_batches).backward()   random tokens, fixed seed
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    AdamW step (torch.optim.AdamW, torch's default implementation; weight decay
    on matrices and the embedding only, as the C++ optimizer), lr from the
    same quadratic-warmup cosine schedule

Threads: torch.set_num_threads(N) (default: torch's own default). Which
OpenBLAS build torch loaded (libblas.so.3: Debian's alternatives pick the
pthread build; LD_LIBRARY_PATH=/usr/lib/<arch>/openblas-openmp picks the OpenMP
one) is printed; bench/run_step_bench.sh chooses it. Timing is
time.perf_counter around each whole step; warm-up steps are not counted.
Prints median/min/max seconds per step and tokens/s, and with --json one JSON
line (the last line of stdout).
"""

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reference"))
import llama_dyt as ref  # noqa: E402


def use_float32():
    """Run the float64 reference in float32: parameters are built with
    ref.DTYPE; RoPE tables are computed in float64 and rounded to float32 (as
    the C++ code does) so no op is promoted back to float64."""
    ref.DTYPE = torch.float32
    rope64 = ref.rope_cos_sin

    def rope_cos_sin(seq_len, head_dim, theta, dtype=None):
        cos, sin = rope64(seq_len, head_dim, theta, dtype=torch.float64)
        return cos.to(torch.float32), sin.to(torch.float32)

    ref.rope_cos_sin = rope_cos_sin


def blas_description():
    """Which OpenBLAS build this process loaded (torch links the system
    libblas.so.3, which Debian's alternatives point at one OpenBLAS build)."""
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "libopenblas" in line})
    except OSError:
        libs = []
    if not libs:
        return "BLAS not OpenBLAS"
    try:
        lib = ctypes.CDLL(libs[0])
        kind = {0: "sequential", 1: "pthread", 2: "OpenMP"}.get(lib.openblas_get_parallel(), "?")
        return f"OpenBLAS {kind} build, {lib.openblas_get_num_threads()} threads ({libs[0]})"
    except (OSError, AttributeError):
        return f"OpenBLAS ({libs[0]})"


def learning_rate(step, t):
    """trainer/schedule.h: quadratic warmup, cosine decay to min_lr_ratio * lr."""
    lr, warm, steps = t["lr"], t["warmup_steps"], t["steps"]
    lr_min = lr * t["min_lr_ratio"]
    if step < warm:
        return lr * ((step + 1) / warm) ** 2
    p = min(max((step - warm) / max(1, steps - warm), 0.0), 1.0)
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * p))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", required=True, help="JSON written by dyt-bench-step --shape-out")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None, help="default: the shape file's seed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.warmup < 0 or args.iters < 1:
        ap.error("--warmup must be >= 0 and --iters >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    with open(args.shape) as f:
        shape = json.load(f)
    cfg, t = ref.Config.from_dict(shape["model"]), shape["train"]
    seed = t["seed"] if args.seed is None else args.seed
    B, T, n_micro = t["micro_batch"], t["seq_len"], t["micro_batches"]
    tokens_per_step = n_micro * B * T

    use_float32()
    torch.manual_seed(seed)
    model = ref.LlamaDyT(cfg, ref.init_tensors(cfg, seed=seed))
    params = list(model.params)
    n_params = sum(p.numel() for p in params)
    if n_params != shape["params"]:
        sys.exit(f"bench_step_torch: the reference model has {n_params} parameters, "
                 f"dyt-bench-step's {shape['params']}: not the same model")
    if any(p.dtype != torch.float32 for p in params):
        sys.exit("bench_step_torch: parameters are not float32")
    decay = [p for p in params if p.dim() >= 2]      # matrices and the embedding
    no_decay = [p for p in params if p.dim() < 2]    # gamma, alpha, beta, embed_scale
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["adam_eps"])

    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (n_micro, B, T), generator=gen, dtype=torch.long)
    targets = torch.randint(0, cfg.vocab_size, (n_micro, B, T), generator=gen, dtype=torch.long)

    threads = torch.get_num_threads()
    blas = blas_description()
    print(f"bench_step_torch: torch {torch.__version__} float32, {n_params} parameters, norm {cfg.norm}")
    print(f"step: {tokens_per_step} tokens = {n_micro} micro-batches of {B} x {T}, "
          f"grad clip {t['grad_clip']}, AdamW")
    print(f"threads: torch {threads} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), {blas}")
    print(f"warmup {args.warmup}, iters {args.iters}", flush=True)

    times, loss_sum, norm = [], 0.0, 0.0
    for step in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_sum = 0.0
        for m in range(n_micro):
            loss = model.loss(tokens[m], targets[m])
            (loss / n_micro).backward()
            loss_sum += loss.item()
        norm = float(torch.nn.utils.clip_grad_norm_(params, t["grad_clip"]))
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, t)
        opt.step()
        dt = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(dt)

    med, lo, hi = statistics.median(times), min(times), max(times)
    tok_s = tokens_per_step / med
    print(f"s/step: median {med:.4f}  min {lo:.4f}  max {hi:.4f}   tokens/s {tok_s:.0f}   "
          f"(last loss {loss_sum / n_micro:.4f}, grad norm {norm:.4f})")
    if args.json:
        print(json.dumps({
            "impl": f"PyTorch {torch.__version__} fp32 eager", "threads": threads, "blas": blas,
            "params": n_params,
            "tokens_per_step": tokens_per_step, "micro_batches": n_micro,
            "warmup": args.warmup, "iters": args.iters, "median_s": med, "min_s": lo, "max_s": hi,
            "tokens_per_s": tok_s, "last_loss": loss_sum / n_micro, "times_s": times}))


if __name__ == "__main__":
    main()
