"""Minimal safetensors reader/writer (struct + json + numpy only).

Format (https://huggingface.co/docs/safetensors, "Format" section):
  bytes [0, 8)        u64 little-endian N, the size of the JSON header
  bytes [8, 8+N)      UTF-8 JSON object: {"__metadata__": {str: str}?,
                        "<name>": {"dtype": "F32", "shape": [..],
                                   "data_offsets": [begin, end]}, ...}
                      offsets are relative to the start of the data section;
                      writers may pad the header with trailing spaces.
  bytes [8+N, ...)    the data section, tensors little-endian, row-major.

Reading supports F64, F32, F16 and BF16 (BF16 is widened to float32, since
numpy has no bfloat16); writing produces F32 only (or F64 on request for
tests). This module is part of the PyTorch reference of dyt-train and must
not depend on anything beyond the Python standard library and numpy.
"""

import json
import struct

import numpy as np

_HEADER_LIMIT = 100 * 1024 * 1024  # the reference implementation's own limit

_READ_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # decoded below
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U16": np.dtype("<u2"),
}

_ITEMSIZE = {k: v.itemsize for k, v in _READ_DTYPES.items()}


class SafetensorsError(ValueError):
    pass


def bf16_bits_to_f32(bits):
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def read_header(path):
    """Return (header dict without __metadata__, metadata dict, data offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: file shorter than the 8-byte header size")
        (n,) = struct.unpack("<Q", raw)
        if n > _HEADER_LIMIT:
            raise SafetensorsError(f"{path}: header size {n} exceeds {_HEADER_LIMIT}")
        hdr = f.read(n)
        if len(hdr) != n:
            raise SafetensorsError(f"{path}: truncated JSON header ({len(hdr)} of {n} bytes)")
    try:
        header = json.loads(hdr.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def load(path, keep_dtype=False):
    """Read a safetensors file.

    Returns (tensors, dtypes, metadata): tensors maps name -> numpy array
    (float32 for BF16/F16/F32 unless keep_dtype, where F16 stays float16 and
    BF16 stays uint16 bits), dtypes maps name -> the dtype string in the file.
    Overlapping, out-of-range or non-contiguous data offsets are errors.
    """
    header, meta, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    tensors, dtypes = {}, {}
    spans = []
    for name, info in header.items():
        try:
            dt, shape, (b, e) = info["dtype"], list(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {name!r} has a malformed entry {info!r}") from None
        if dt not in _READ_DTYPES:
            raise SafetensorsError(f"{path}: tensor {name!r} has unsupported dtype {dt}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if e - b != count * _ITEMSIZE[dt] or b < 0 or e > len(data):
            raise SafetensorsError(
                f"{path}: tensor {name!r} ({dt}, shape {shape}) has data_offsets [{b}, {e}] "
                f"inconsistent with its size or with the {len(data)}-byte data section")
        arr = np.frombuffer(data, dtype=_READ_DTYPES[dt], count=count, offset=b).reshape(shape)
        if dt == "BF16" and not keep_dtype:
            arr = bf16_bits_to_f32(arr).reshape(shape)
        elif dt == "F16" and not keep_dtype:
            arr = arr.astype(np.float32)
        else:
            arr = arr.copy()
        tensors[name] = arr
        dtypes[name] = dt
        spans.append((b, e, name))
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise SafetensorsError(f"{path}: data of tensor {name!r} starts at {b}, expected {pos} "
                                   "(gap or overlap in the data section)")
        pos = e
    if pos != len(data):
        raise SafetensorsError(f"{path}: {len(data) - pos} trailing bytes after the last tensor")
    return tensors, dtypes, meta


def load_tensors(path):
    """Just the name -> numpy array map."""
    return load(path)[0]


def save(path, tensors, metadata=None, dtype="F32"):
    """Write name -> array as safetensors, every tensor converted to `dtype`
    (F32, or F64 for tests). Tensors are laid out in sorted name order."""
    np_dt = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}.get(dtype)
    if np_dt is None:
        raise SafetensorsError(f"writing dtype {dtype} is not supported (F32 or F64)")
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(np.asarray(tensors[name]), dtype=np_dt)
        raw = arr.tobytes(order="C")
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((-len(hdr)) % 8)  # pad so the data section is 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for raw in blobs:
            f.write(raw)
