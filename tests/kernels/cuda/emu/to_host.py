#!/usr/bin/env python3
"""Rewrites CUDA kernel launches for the host emulator (emu.h).

  to_host.py IN.cu OUT.cc

`name<targs><<<grid, block, smem, stream>>>(args)` becomes
`::emu::launch(&name<targs>, ::emu::Cfg(grid, block, smem, stream), args)`;
nothing else changes, so the emulated kernels are the real kernels' source.
"""
import re
import sys

src = open(sys.argv[1]).read()
out, n = re.subn(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(",
                 lambda m: f"::emu::launch(&{m.group(1)}, ::emu::Cfg({m.group(2)}), ",
                 src, flags=re.S)
if n == 0 and "<<<" in src:
    sys.exit(f"to_host.py: {sys.argv[1]}: a launch did not match the pattern")
with open(sys.argv[2], "w") as f:
    f.write(f"// Generated from {sys.argv[1]} by to_host.py for the CUDA host emulator.\n")
    f.write(f'#line 1 "{sys.argv[1]}"\n')
    f.write(out)
