#!/usr/bin/env python3
"""Rewrites CUDA kernel source for the host emulator (emu.h).

  to_host.py IN.cu OUT.cc [--mutate FROM=>TO=>COUNT ...]

- `name<targs><<<grid, block, smem, stream>>>(args)` becomes
  `::emu::launch("file.cu:LINE", "name<targs>", &name<targs>,
  ::emu::Cfg(grid, block, smem, stream), args)`: the emulator checks each
  pointer argument and names the launch when one is not device memory.
- `__shared__ T name[...];` becomes `static T name[...]; ::emu::shared_decl(name);`
  (on the same line): the emulator fills it with NaN bytes at each block's start.
- --mutate replaces the literal text FROM by TO, which must occur exactly
  COUNT times (so a planted fault cannot silently stop applying when the
  kernel changes): a deliberately broken variant for tests that must fail.

Nothing else changes, so the emulated kernels are the real kernels' source;
line numbers are kept (#line), so compiler errors and launch sites point into
IN.cu.
"""
import os
import re
import sys


def code_only(text):
    """The text with // comments blanked (same length), for counting tokens."""
    return re.sub(r"//[^\n]*", lambda m: " " * len(m.group(0)), text)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    mutations = []
    rest = argv[1:]
    while "--mutate" in rest:
        i = rest.index("--mutate")
        spec = rest[i + 1]
        parts = spec.split("=>")
        if len(parts) != 3:
            sys.exit(f"to_host.py: --mutate wants FROM=>TO=>COUNT, got {spec!r}")
        mutations.append((parts[0], parts[1], int(parts[2])))
        rest = rest[:i] + rest[i + 2:]
    args = rest
    if len(args) != 2:
        sys.exit("usage: to_host.py IN.cu OUT.cc [--mutate FROM=>TO=>COUNT ...]")
    src_path, out_path = args
    src = open(src_path).read()
    name = os.path.basename(src_path)

    for old, new, count in mutations:
        found = src.count(old)
        if found != count:
            sys.exit(f"to_host.py: {src_path}: --mutate expected {count} occurrence(s) of "
                     f"{old!r}, found {found}")
        src = src.replace(old, new)

    def launch(m):
        line = src.count("\n", 0, m.start()) + 1
        kernel = m.group(1)
        return (f'::emu::launch("{name}:{line}", "{kernel}", &{kernel}, '
                f"::emu::Cfg({m.group(2)}), ")

    out, n = re.subn(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(", launch, src, flags=re.S)
    if code_only(src).count("<<<") != n:
        sys.exit(f"to_host.py: {src_path}: a launch did not match the pattern")

    if re.search(r"\bextern\s+__shared__", code_only(out)):
        sys.exit(f"to_host.py: {src_path}: extern __shared__ (dynamic shared memory) is not "
                 "emulated: emu::Cfg ignores the launch's shared-memory size")
    shared_re = re.compile(r"__shared__(\s+[^;{}()]*?\b)([A-Za-z_]\w*)(\s*(?:\[[^\]]*\]\s*)*);")
    out, n_shared = shared_re.subn(
        lambda m: f"static{m.group(1)}{m.group(2)}{m.group(3)}; ::emu::shared_decl({m.group(2)});",
        out)
    left = code_only(out).count("__shared__")
    if left:
        sys.exit(f"to_host.py: {src_path}: {left} __shared__ declaration(s) did not match the "
                 "pattern `__shared__ T name[...];` (the emulator could not poison them)")

    with open(out_path, "w") as f:
        f.write(f"// Generated from {src_path} by to_host.py for the CUDA host emulator.\n")
        f.write(f'#line 1 "{src_path}"\n')
        f.write(out)


if __name__ == "__main__":
    main(sys.argv)
