#!/usr/bin/env python3
"""The backward formulas that bench/cuda/bench_norms_torch.py times are the
true gradients: each against autograd of its forward, in float64 on the CPU
(small shapes). The formulas reduce in fp32 (`.float()`, as the benchmark
runs them in bf16), so they agree to fp32 rounding (≤ 1e-6 relative here), not
to float64's; a wrong term would be off by O(1). The benchmark's claim that PyTorch does the same work as our
kernels rests on them. Run by CTest (bench.torch_formulas) with the
reference python (torch)."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench", "cuda"))
import bench_norms_torch as B  # noqa: E402


def close(a, b, what, failures, tol=1e-6):
    err = (a - b).abs().max().item() / max(1e-30, b.abs().max().item())
    if not err <= tol:
        failures.append(f"{what}: relative error {err:.3g}")


def main():
    torch.manual_seed(0)
    rows, d = 7, 13
    dt = torch.float64
    x = torch.randn(rows, d, dtype=dt) * 2
    dy, dx = torch.randn(rows, d, dtype=dt), torch.randn(rows, d, dtype=dt)
    a = torch.tensor(0.8, dtype=dt)
    g = 0.5 + torch.rand(d, dtype=dt)
    failures = []

    for name, fwd, bwd in (("dyt", B.dyt_fwd, B.dyt_bwd), ("dyisru", B.dyisru_fwd, B.dyisru_bwd)):
        xr, ar, gr = (t.clone().requires_grad_() for t in (x, a, g))
        (fwd(xr, ar, gr) * dy).sum().backward()
        dx_new, da, dg = bwd(x, a, g, dy, dx)
        close(dx_new - dx, xr.grad, f"{name} dx", failures)
        close(da, ar.grad, f"{name} dalpha", failures)
        close(dg, gr.grad, f"{name} dgamma", failures)

    b = torch.randn(rows, d, dtype=dt)
    for name, res, fwd in (("dyt", B.dyt_res_fwd, B.dyt_fwd), ("dyisru", B.dyisru_res_fwd, B.dyisru_fwd)):
        h, y = res(x, b, a, g)
        close(h, x + b, f"{name}_res sum", failures)
        close(y, fwd(x + b, a, g), f"{name}_res y", failures)

    xr, gr = x.clone().requires_grad_(), g.clone().requires_grad_()
    (B.rmsnorm_fwd(xr, gr) * dy).sum().backward()
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + B.EPS)
    dx_new, dg = B.rmsnorm_bwd(x, g, r, dy, dx)
    close(dx_new - dx, xr.grad, "rmsnorm dx", failures)
    close(dg, gr.grad, "rmsnorm dgamma", failures)

    if failures:
        print("FAILED:", "; ".join(failures))
        return 1
    print("bench_norms_torch formulas: all match autograd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
