#!/usr/bin/env python3
"""PyTorch parity of dyt-train's AdamW, gradient clipping and LR schedule.

usage: check_adamw.py ADAMW_TRACE_BINARY OUT.json

Runs the C++ helper adamw_trace (10 optimizer steps on a tiny LLaMA-DyT
layout), then replays the same steps in float32 with torch.optim.AdamW
(single-tensor path; weight decay 0.1 for matrices and the embedding, 0 for
alpha, norm weights/biases and the embedding scale, decided here from the
tensor names), torch.nn.utils.clip_grad_norm_, and the schedule written out
below. Checks, per step: lr to 1e-12 relative, the gradient norm to 1e-6,
every parameter tensor to 1e-5 relative (||a - b|| / ||b||); at the end the
optimizer state the same way. Exit status 0 = all within tolerance.
"""
import json
import math
import subprocess
import sys

import torch

LR_TOL = 1e-12
NORM_TOL = 1e-6
PARAM_TOL = 1e-5
EXPECTED_CONFIG = dict(steps=40, warmup_steps=4, lr=1e-2, min_lr_ratio=0.1, beta1=0.9,
                       beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0)


def schedule(step, steps, warmup, lr, min_lr_ratio):
    """DyT LLaMA recipe: quadratic warmup, then cosine to lr * min_lr_ratio."""
    if warmup < 0:
        warmup = min(2000, steps // 20)
    if step < warmup:
        return lr * ((step + 1) / warmup) ** 2
    lr_min = lr * min_lr_ratio
    progress = min(1.0, max(0.0, (step - warmup) / max(1, steps - warmup)))
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def decays(name):
    """Weight decay for the weight matrices and the token embedding only."""
    return (name.endswith("_proj.weight") or name == "model.embed_tokens.weight"
            or name == "lm_head.weight")


def rel(a, b):
    return (torch.linalg.vector_norm((a - b).double()) /
            max(torch.linalg.vector_norm(b.double()).item(), 1e-30)).item()


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, out = sys.argv[1], sys.argv[2]
    subprocess.run([binary, out], check=True)
    with open(out) as f:
        trace = json.load(f)

    failures = []
    cfg = trace["config"]
    for k, v in EXPECTED_CONFIG.items():
        if cfg[k] != v:
            failures.append(f"config.{k}: trace has {cfg[k]}, expected {v}")

    layout = trace["layout"]
    names = [e["name"] for e in layout]
    for e in layout:
        if e["weight_decay"] != decays(e["name"]):
            failures.append(f"{e['name']}: C++ weight_decay() = {e['weight_decay']}, "
                            f"reference says {decays(e['name'])}")
    assert any(decays(n) for n in names) and not all(decays(n) for n in names)
    for must in ("model.embed_scale", "model.layers.0.input_layernorm.alpha",
                 "model.layers.0.post_attention_layernorm.bias", "model.norm.weight"):
        assert must in names, must

    def split(flat):
        flat = torch.tensor(flat, dtype=torch.float32)
        return [flat[e["offset"]:e["offset"] + e["numel"]].view(e["shape"]) for e in layout]

    params = [torch.nn.Parameter(t.clone()) for t in split(trace["init"])]
    decay = [p for p, n in zip(params, names) if decays(n)]
    no_decay = [p for p, n in zip(params, names) if not decays(n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"], foreach=False)

    worst = 0.0
    clipped = []
    for rec in trace["steps"]:
        s = rec["step"]
        lr = schedule(s, EXPECTED_CONFIG["steps"], EXPECTED_CONFIG["warmup_steps"],
                      EXPECTED_CONFIG["lr"], EXPECTED_CONFIG["min_lr_ratio"])
        if abs(rec["lr"] - lr) > LR_TOL * lr:
            failures.append(f"step {s}: lr {rec['lr']!r} vs reference {lr!r}")
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(params, split(rec["grad"])):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, EXPECTED_CONFIG["grad_clip"]).item()
        if abs(rec["norm"] - norm) > NORM_TOL * norm:
            failures.append(f"step {s}: grad norm {rec['norm']!r} vs torch {norm!r}")
        clipped.append(norm > EXPECTED_CONFIG["grad_clip"])
        if (rec["clip_coef"] < 1) != (EXPECTED_CONFIG["grad_clip"] / (norm + 1e-6) < 1):
            failures.append(f"step {s}: C++ clip decision differs from torch (norm {norm})")
        opt.step()
        step_worst = 0.0
        for name, p, got in zip(names, params, split(rec["params"])):
            r = rel(got, p.detach())
            step_worst = max(step_worst, r)
            if r > PARAM_TOL:
                failures.append(f"step {s}: {name}: relative error {r:.3e}")
        worst = max(worst, step_worst)
        print(f"step {s}: lr {lr:.6e} norm {norm:.6f} clipped {clipped[-1]!s:5} "
              f"max param rel err {step_worst:.2e}")

    for key, state_key in (("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq")):
        for name, p, got in zip(names, params, split(trace[key])):
            r = rel(got, opt.state[p][state_key])
            worst = max(worst, r)
            if r > PARAM_TOL:
                failures.append(f"final {key}: {name}: relative error {r:.3e}")

    if not any(clipped) or all(clipped):
        failures.append(f"the trace must clip on some steps and not on others: {clipped}")

    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print(f"OK: {len(trace['steps'])} steps, {len(names)} tensors, "
          f"worst relative error {worst:.2e} (tolerance {PARAM_TOL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
