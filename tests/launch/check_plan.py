#!/usr/bin/env python3
"""dyt-plan's parameter counts against the published LLaMA totals.

With RMSNorm the count must equal Meta's published figure exactly; with DyT
it may differ only by one α per norm layer (2 per block + the final one) and
the embedding scale, plus β (d per norm layer) when norm_bias is on.

  check_plan.py DYT_PLAN CONFIG_DIR
"""
import json
import subprocess
import sys

PUBLISHED = {  # config: (parameters with RMSNorm, layers, width)
    "llama7b": (6_738_415_616, 32, 4096),
    "llama13b": (13_015_864_320, 40, 5120),
    "llama34b": (33_743_970_304, 48, 8192),
    "llama70b": (68_976_648_192, 80, 8192),
}


def plan(binary, config, *overrides):
    cmd = [binary, "--config", config, "--json"]
    for o in overrides:
        cmd += ["--set", o]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    binary, config_dir = sys.argv[1], sys.argv[2]
    failures = []
    for name, (published, layers, width) in PUBLISHED.items():
        cfg = f"{config_dir}/{name}.pbtxt"
        rms = plan(binary, cfg, "model.norm=RMSNORM")["parameters"]
        dyt = plan(binary, cfg)["parameters"]
        dyt_bias = plan(binary, cfg, "model.norm_bias=true")["parameters"]
        norms = 2 * layers + 1
        print(f"{name}: rmsnorm {rms:,} (published {published:,}), dyt {dyt:,}, dyt+bias {dyt_bias:,}")
        if rms != published:
            failures.append(f"{name}: RMSNorm count {rms} != published {published}")
        if dyt != published + norms + 1:
            failures.append(f"{name}: DyT count {dyt} != {published} + {norms} alphas + 1 embed scale")
        if dyt_bias != dyt + norms * width:
            failures.append(f"{name}: DyT+bias count {dyt_bias} != {dyt} + {norms}x{width} betas")
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
