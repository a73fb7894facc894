#!/usr/bin/env python3
"""Instruction mix of the norm kernels' machine code (SASS), per kernel.

    bench/cuda/sass_mix.py BUILD/kernels_cuda/libdyt_kernels_cuda.a [--cuobjdump PATH]

Reads `cuobjdump -sass` of a library or object and prints, for every kernel,
its static instruction count and the classes that decide whether an
elementwise kernel can keep up with memory: fp32 arithmetic, MUFU (the
special-function unit: reciprocals, square roots), fp64, conversions, and
CALLs (slow paths of IEEE division and square root, which also bring a
range check and a branch per element). Static counts need no GPU, so a
change to the math can be judged here before a GPU session measures it;
docs/cuda_kernels.md explains how to read them against the issue budget.
cuobjdump ships with the CUDA toolkit; where the toolkit lacks it,
`pip install nvidia-cuda-cuobjdump` provides one.
"""
import argparse
import collections
import re
import shutil
import subprocess
import sys

CLASSES = {
    "fp32": {"FFMA", "FMUL", "FADD", "FMNMX", "FSEL", "FSETP", "FCHK", "FSWZADD"},
    "mufu": {"MUFU"},
    "fp64": {"DFMA", "DADD", "DMUL", "DSETP"},
    "convert": {"F2F", "F2FP", "I2F", "F2I"},
    "memory": {"LDG", "STG", "LDS", "STS", "LDC", "LD", "ST"},
    "branch": {"BRA", "BSSY", "BSYNC", "CALL", "RET", "EXIT"},
}
INSTR = re.compile(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[0-9T]\s+)?([A-Z][A-Z0-9_]*)")
FUNC = re.compile(r"Function : (\S+)")


def short_name(mangled):
    """dyn_forward_kernel<TanhAct, bf16, 8> from the mangled name, without c++filt."""
    try:
        out = subprocess.run(["c++filt", mangled], capture_output=True, text=True, check=True)
        name = out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return mangled
    for noise in ("(anonymous namespace)::", "dyt::cuda::detail::"):
        name = name.replace(noise, "")
    name = re.sub(r"^void ", "", name)
    name = re.sub(r"\([^()]*\)$", "", name)  # the parameter list
    return name.replace("__nv_bfloat16", "bf16")


def parse(sass):
    kernels = collections.OrderedDict()
    current = None
    for line in sass.splitlines():
        m = FUNC.search(line)
        if m:
            current = kernels.setdefault(m.group(1), collections.Counter())
            continue
        m = INSTR.match(line)
        if m and current is not None:
            current[m.group(1)] += 1
    return kernels


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", help="library, object or cubin with sm_90 code")
    ap.add_argument("--cuobjdump", default=shutil.which("cuobjdump"))
    args = ap.parse_args()
    if not args.cuobjdump:
        sys.exit("sass_mix.py: cuobjdump not found (CUDA toolkit, or pip install nvidia-cuda-cuobjdump)")
    run = subprocess.run([args.cuobjdump, "-sass", args.binary], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"sass_mix.py: cuobjdump -sass {args.binary} failed: {run.stderr.strip()}")
    kernels = parse(run.stdout)
    if not kernels:
        sys.exit(f"sass_mix.py: no SASS found in {args.binary}")
    cols = ["total"] + list(CLASSES) + ["CALL"]
    rows = []
    for mangled, ops in kernels.items():
        counts = [sum(ops.values())]
        counts += [sum(n for op, n in ops.items() if op in members) for members in CLASSES.values()]
        counts.append(ops["CALL"])
        rows.append((short_name(mangled), counts))
    width = max(len(name) for name, _ in rows)
    print(f"{'kernel':<{width}}  " + "  ".join(f"{c:>7}" for c in cols))
    for name, counts in sorted(rows):
        print(f"{name:<{width}}  " + "  ".join(f"{n:>7}" for n in counts))


if __name__ == "__main__":
    main()
