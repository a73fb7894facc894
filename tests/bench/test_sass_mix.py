#!/usr/bin/env python3
"""bench/cuda/sass_mix.py's parser on a fixed cuobjdump listing: kernels split
at their headers, predicated instructions counted by opcode, classes summed.
Run by CTest (bench.sass_mix); needs only python3."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench", "cuda"))
import sass_mix  # noqa: E402

LISTING = """
\tcode for sm_90
\t\tFunction : _Z3fooPf
\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                 /* 0x00000a00ff017b82 */
        /*0010*/                   MUFU.RCP R3, R2 ;                      /* 0x0000000200037308 */
        /*0020*/                   FFMA R4, -R2, R3, 1 ;                  /* 0x3f80000002047423 */
        /*0030*/              @!P0 BRA 0x70 ;                              /* 0x0000000000108947 */
        /*0040*/                   FFMA R5, R3, R4, R3 ;                  /* 0x0000000403057223 */
        /*0050*/               @P1 CALL.REL.NOINC 0x100 ;                  /* 0x0000000000008944 */
        /*0060*/                   EXIT ;                                  /* 0x000000000000794d */
\t\t..........
\t\tFunction : _Z3barPd
        /*0000*/                   DFMA R2, R4, R6, R2 ;                  /* 0x0000000604027228 */
        /*0010*/                   F2F.F64.F32 R8, R9 ;                   /* 0x0000000900087310 */
        /*0020*/                   STG.E.64 desc[UR4][R10.64], R2 ;       /* 0x000000020a007986 */
"""


def main():
    kernels = sass_mix.parse(LISTING)
    failures = []
    if list(kernels) != ["_Z3fooPf", "_Z3barPd"]:
        failures.append(f"kernels {list(kernels)}")
    foo, bar = kernels.get("_Z3fooPf", {}), kernels.get("_Z3barPd", {})
    want_foo = {"LDC": 1, "MUFU": 1, "FFMA": 2, "BRA": 1, "CALL": 1, "EXIT": 1}
    want_bar = {"DFMA": 1, "F2F": 1, "STG": 1}
    if dict(foo) != want_foo:
        failures.append(f"foo {dict(foo)} != {want_foo}")
    if dict(bar) != want_bar:
        failures.append(f"bar {dict(bar)} != {want_bar}")
    if failures:
        print("FAILED:", "; ".join(failures))
        return 1
    print("sass_mix: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
