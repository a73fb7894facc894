"""Checks the C++ safetensors code against an independent reader and writer.

Uses only struct, json and numpy (no safetensors package). Run by CTest:
    safetensors_interop.py SAFETENSORS_TOOL WORKDIR
1. The tool writes a sample file; this script parses it by the format's rules
   (header length, JSON, padding, contiguous offsets) and checks every value.
2. This script writes a file with F32, F16 and BF16 tensors (and unordered
   offsets); the tool dumps what it read, which must match bit for bit.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), "header runs past the end"
    header_bytes = raw[8 : 8 + n]
    assert (8 + n) % 8 == 0, f"header length {n} does not align the data to 8 bytes"
    text = header_bytes.decode("utf-8")
    assert text.startswith("{"), "header must start with '{'"
    assert text.rstrip(" ") == text.rstrip(), "padding must be spaces"
    header = json.loads(text)
    buf = raw[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    spans = []
    for name, info in header.items():
        assert set(info) == {"dtype", "shape", "data_offsets"}, info
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        assert info["dtype"] == "F32", info
        assert end - begin == 4 * count, (name, info)
        spans.append((begin, end))
        tensors[name] = np.frombuffer(buf[begin:end], dtype="<f4").reshape(info["shape"])
    pos = 0
    for begin, end in sorted(spans):
        assert begin == pos, f"gap or overlap at {begin} (expected {pos})"
        pos = end
    assert pos == len(buf), f"data buffer has {len(buf)} bytes, tensors cover {pos}"
    return tensors, metadata


def check_cpp_written(tool, workdir):
    path = os.path.join(workdir, "from_cpp.safetensors")
    subprocess.run([tool, "write-sample", path], check=True)
    tensors, metadata = read_safetensors(path)
    assert metadata == {"step": "42", "note": 'quote " backslash \\ newline \n'}, metadata
    w = (np.arange(15, dtype=np.float32) * np.float32(0.25) - np.float32(1.0)).reshape(3, 5)
    expected = {
        "model.layers.0.mlp.down_proj.weight": w,
        "model.embed_scale": np.array([1.5], dtype=np.float32),
        "empty": np.zeros((2, 0), dtype=np.float32),
        "v\u00e9": np.array([3.0e38, -1.0e-45, 0.1, -0.0], dtype=np.float32),
    }
    assert sorted(tensors) == sorted(expected), sorted(tensors)
    for name, want in expected.items():
        got = tensors[name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        assert got.tobytes() == want.tobytes(), (name, got, want)
    print("python reader: C++-written file OK")


def write_safetensors(path, entries, metadata):
    """entries: list of (name, dtype, shape, raw bytes); data laid out in reverse order."""
    header = {"__metadata__": metadata}
    chunks = []
    offset = 0
    for name, dtype, shape, raw in reversed(entries):
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, ensure_ascii=True).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def check_python_written(tool, workdir):
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((4, 3)).astype(np.float32)
    f16 = np.array([1.0, -2.5, 6.1e-5, 65504.0, 1.0 / 3.0, -0.0, np.inf], dtype=np.float16)
    f16_as_f32 = f16.astype(np.float32)  # exact: every float16 is a float32
    src = rng.standard_normal(6).astype(np.float32)
    bf16_bits = (src.view(np.uint32) >> 16).astype(np.uint16)  # truncation
    bf16_as_f32 = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    entries = [
        ("a.f32", "F32", f32.shape, f32.astype("<f4").tobytes()),
        ("b.f16", "F16", f16.shape, f16.astype("<f2").tobytes()),
        ("c.bf16", "BF16", (2, 3), bf16_bits.astype("<u2").tobytes()),
        ("d.\u00fc", "F32", (1,), np.array([7.0], dtype="<f4").tobytes()),
    ]
    metadata = {"format": "pt", "\u00e9t\u00e9": "line\nbreak \"q\""}
    path = os.path.join(workdir, "from_python.safetensors")
    write_safetensors(path, entries, metadata)
    out = subprocess.run([tool, "dump", path], check=True, capture_output=True, text=True).stdout
    dumped = json.loads(out)
    assert dumped["metadata"] == metadata, dumped["metadata"]
    expected = {
        "a.f32": f32.reshape(-1),
        "b.f16": f16_as_f32,
        "c.bf16": bf16_as_f32,
        "d.\u00fc": np.array([7.0], dtype=np.float32),
    }
    shapes = {name: list(shape) for name, _, shape, _ in entries}
    assert sorted(dumped["tensors"]) == sorted(expected), sorted(dumped["tensors"])
    for name, want in expected.items():
        got = dumped["tensors"][name]
        assert got["shape"] == shapes[name], (name, got["shape"])
        want_bits = ["%08x" % b for b in want.astype(np.float32).view(np.uint32)]
        assert got["bits"] == want_bits, (name, got["bits"], want_bits)
    print("C++ reader: Python-written F32/F16/BF16 file OK")


def main():
    tool, workdir = sys.argv[1], sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    check_cpp_written(tool, workdir)
    check_python_written(tool, workdir)


if __name__ == "__main__":
    main()
