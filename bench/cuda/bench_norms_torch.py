#!/usr/bin/env python3
"""PyTorch timings of the ops that dyt-bench-norms-cuda times, same shapes and method.

Each op runs in eager mode and under torch.compile (default mode, static
shapes), timed with CUDA events around every call after warm-up calls,
median of many calls, inputs rotated over buffer sets that together are
several times the L2 cache. The functions compute what the CUDA ops compute:

  dyt_fwd        y = γ·tanh(α·x)
  dyt_bwd        dx' = dx + dy·γ·α·(1 − t²);  dα = Σ dy·γ·x·(1 − t²);  dγ = Σ_rows dy·t
  dyt_res_fwd    h = x + branch;  y = γ·tanh(α·h)       (eager: add, then DyT)
  dyt_res_bwd    dsum = dres + dy·γ·α·(1 − t²), dα, dγ
  dyisru_*       the same with u/sqrt(1+u²), u = α·x
  rmsnorm_fwd    torch.nn.functional.rms_norm(x, (d,), γ, eps)
  rmsnorm_bwd    dx' = dx + r·γ·dy − (r³/d)·Σ(dy·γ·x)·x;  dγ = Σ_rows dy·x·r
  copy           y.copy_(x)

Activations and γ, α are bf16 (a bf16 model: fp32 parameters would promote
the outputs to fp32 and double their bytes); reductions (dα, dγ) and rstd are
fp32. The backward is written out, not taken from autograd, so both sides do
the same work with the same inputs and outputs.

  python3 bench/cuda/bench_norms_torch.py [--rows 4096] [--widths 4096,5120,8192]
         [--modes eager,compile] [--ops dyt_fwd,...] [--reps 200] [--warmup 20] [--json FILE]
"""
import argparse
import json
import os
import statistics
import sys
import time
import traceback

import torch

EPS = 1e-5


def dyt_fwd(x, a, g):
    return g * torch.tanh(a * x)


def dyt_bwd(x, a, g, dy, dx):
    t = torch.tanh(a * x)
    gs = dy * g * (1 - t * t)
    dx_new = dx + gs * a
    da = (gs.float() * x.float()).sum()
    dg = (dy.float() * t.float()).sum(0)
    return dx_new, da, dg


def dyt_res_fwd(x, b, a, g):
    h = x + b
    return h, g * torch.tanh(a * h)


def dyisru_fwd(x, a, g):
    u = a * x
    return g * (u * torch.rsqrt(1 + u * u))


def dyisru_bwd(x, a, g, dy, dx):
    u = a * x
    r = torch.rsqrt(1 + u * u)
    gs = dy * g * (r * r * r)
    dx_new = dx + gs * a
    da = (gs.float() * x.float()).sum()
    dg = (dy.float() * (u * r).float()).sum(0)
    return dx_new, da, dg


def dyisru_res_fwd(x, b, a, g):
    h = x + b
    u = a * h
    return h, g * (u * torch.rsqrt(1 + u * u))


def rmsnorm_fwd(x, g):
    if hasattr(torch.nn.functional, "rms_norm"):  # torch >= 2.4
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), g, EPS)
    xf = x.float()
    return (g * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS))).to(x.dtype)


def rmsnorm_bwd(x, g, r, dy, dx):
    xf, dyf, gf = x.float(), dy.float(), g.float()
    dot = (dyf * gf * xf).sum(-1, keepdim=True)
    dx_new = dx.float() + r * gf * dyf - dot * (r * r * r) / x.shape[-1] * xf
    dg = (dyf * xf * r).sum(0)
    return dx_new.to(dx.dtype), dg


def copy(x, y):
    return y.copy_(x)


# name -> (function, which inputs it takes, bytes moved in units of one activation)
OPS = {
    "copy": (copy, ("x", "y"), 2),
    "dyt_fwd": (dyt_fwd, ("x", "a", "g"), 2),
    "dyt_bwd": (dyt_bwd, ("x", "a", "g", "dy", "dx"), 4),
    "dyt_res_fwd": (dyt_res_fwd, ("x", "b", "a", "g"), 4),
    "dyt_res_bwd": (dyt_bwd, ("x", "a", "g", "dy", "dx"), 4),  # dx plays dresidual
    "dyisru_fwd": (dyisru_fwd, ("x", "a", "g"), 2),
    "dyisru_bwd": (dyisru_bwd, ("x", "a", "g", "dy", "dx"), 4),
    "dyisru_res_fwd": (dyisru_res_fwd, ("x", "b", "a", "g"), 4),
    "dyisru_res_bwd": (dyisru_bwd, ("x", "a", "g", "dy", "dx"), 4),
    "rmsnorm_fwd": (rmsnorm_fwd, ("x", "g"), 2),
    "rmsnorm_bwd": (rmsnorm_bwd, ("x", "g", "r", "dy", "dx"), 4),
}


def make_sets(rows, d, l2_bytes, dev):
    act_bytes = rows * d * 2
    k = max(3, min(32, int(4 * l2_bytes / (5 * act_bytes)) + 1))
    gen = torch.Generator(device=dev).manual_seed(0)

    def act(scale):
        v = (torch.rand(rows, d, device=dev, generator=gen) * 2 - 1) * scale
        v = torch.where(v.abs() < 0.05 * scale, torch.full_like(v, 0.05 * scale), v)  # never zero
        return v.to(torch.bfloat16)

    a = torch.tensor(0.8, device=dev, dtype=torch.bfloat16)
    g = (0.5 + torch.rand(d, device=dev, generator=gen)).to(torch.bfloat16)
    sets = []
    for _ in range(k):
        x = act(2.0)
        r = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS)
        sets.append({"x": x, "b": act(1.0), "dy": act(1.0), "dx": act(1.0),
                     "y": torch.empty_like(x), "a": a, "g": g, "r": r})
    return sets


def time_calls(fn, arg_sets, reps, warmup):
    k = len(arg_sets)
    for i in range(warmup):
        fn(*arg_sets[i % k])
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        starts[i].record()
        fn(*arg_sets[i % k])
        ends[i].record()
    torch.cuda.synchronize()
    us = [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
    return statistics.median(us), min(us)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--widths", default="4096,5120,8192")
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--json", default="")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("bench_norms_torch: no CUDA device", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    out = {"device": props.name, "torch": torch.__version__, "rows": args.rows, "dtype": "bf16",
           "reps": args.reps, "results": [], "errors": []}
    print(f"device: {props.name}, torch {torch.__version__}")
    def save():  # after every op, so a run cut off by a time limit keeps what it measured
        if args.json:
            with open(args.json + ".part", "w") as f:
                json.dump(out, f, indent=1)
            os.replace(args.json + ".part", args.json)

    modes = [m for m in args.modes.split(",") if m]
    names = [n for n in args.ops.split(",") if n]
    for d in [int(w) for w in args.widths.split(",")]:
        sets = make_sets(args.rows, d, l2, dev)
        act_bytes = args.rows * d * 2
        for mode in modes:
            for name in names:
                fn, keys, units = OPS[name]
                arg_sets = [tuple(s[k] for k in keys) for s in sets]
                t0 = time.time()
                try:
                    f = torch.compile(fn, dynamic=False) if mode == "compile" else fn
                    with torch.no_grad():
                        med, mn = time_calls(f, arg_sets, args.reps, args.warmup)
                except Exception as e:  # record and go on: one failing op must not hide the rest
                    msg = f"{name} d={d} {mode}: {type(e).__name__}: {e}"
                    print("ERROR", msg, file=sys.stderr)
                    traceback.print_exc()
                    out["errors"].append(msg)
                    save()
                    continue
                gbps = units * act_bytes / med / 1e3
                out["results"].append({"op": name, "d": d, "mode": mode, "median_us": round(med, 3),
                                       "min_us": round(mn, 3), "bytes": units * act_bytes,
                                       "gbps": round(gbps, 1)})
                print(f"{name:16s} {d:6d} {mode:8s} {med:10.2f} us {gbps:8.0f} GB/s"
                      f"   ({time.time() - t0:.1f} s incl. compile)", flush=True)
                save()
        del sets
        torch.cuda.empty_cache()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
