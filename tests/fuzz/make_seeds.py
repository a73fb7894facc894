#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
and the config target's dictionary (config.dict, from configs/dyt.proto).

The seeds are checked in; this script says where they came from and can
write them again (`tests/fuzz/make_seeds.py`). It only writes seeds named
seed-*; regression inputs from findings (regress-*) are kept as they are.
Standard library only, so it runs with any python3.
"""
import json
import pathlib
import re
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def put(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + name)).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, buf = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(buf), len(buf) + len(raw)]}
        buf += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + buf


def shard(magic, version, tokens, fmt, count=None):
    head = [magic, version, len(tokens) if count is None else count] + [0] * 253
    return struct.pack("<256i", *head) + b"".join(struct.pack(fmt, t) for t in tokens)


# ---- json: safetensors-style headers and the corners of the grammar
put("json", "header", '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}')
put("json", "escapes", r'["\"\\\/\b\f\n\r\t","\u00e9\u20ac","\ud83d\ude00","plain \u0000"]')
put("json", "ints", "[0,-0,1,-1,9223372036854775807,-9223372036854775808,42]")
put("json", "literals", ' { "t" : true , "f" : false , "n" : null , "e" : [ ] , "o" : { } } ')
put("json", "nested", "[" * 30 + "]" * 30)
put("json", "utf8", '{"ключ":"значение","鍵":"値"}')
put("json", "bad-dup", '{"a":1,"a":2}')
put("json", "bad-frac", '[1.5, 2e3]')

# ---- safetensors: whole files
f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
put("safetensors", "f32", safetensors([("a", "F32", [2, 3], f32), ("b", "F32", [1], struct.pack("<f", 7))]))
put("safetensors", "mixed", safetensors(
    [("h", "F16", [2], struct.pack("<2H", 0x3C00, 0x0001)), ("b", "BF16", [2], struct.pack("<2H", 0x3F80, 0x7F80)),
     ("s", "F32", [], struct.pack("<f", -1)), ("z", "F32", [0, 4], b"")], metadata={"format": "pt", "k": "v"}))
put("safetensors", "empty", safetensors([]))
put("safetensors", "unpadded", safetensors([("x", "F32", [1], struct.pack("<f", 2))], pad=False))
put("safetensors", "bad-dtype", safetensors([("x", "I64", [1], b"\0" * 8)]))
put("safetensors", "truncated", safetensors([("a", "F32", [2, 3], f32)])[:-5])

# ---- token shards (llm.c format)
put("token_shard", "u16", shard(20240520, 1, [1, 2, 3, 65535, 0, 7, 8, 9, 10, 11, 12], "<H"))
put("token_shard", "u32", shard(20240801, 7, [1, 70000, 3, 4, 5, 6, 0x7FFFFFFF], "<I"))
put("token_shard", "u32-big", shard(20240801, 7, [1, 0xFFFFFFFF, 3, 4, 5, 6], "<I"))
put("token_shard", "empty", shard(20240520, 1, [], "<H"))
put("token_shard", "bad-count", shard(20240520, 1, [1, 2, 3], "<H", count=5))

# ---- checkpoint manifests (as save_checkpoint prints them) for step-00000001
manifest = """format_version: 1
progress {
  step: 1
  optimizer_steps: 1
  skipped_steps: 0
  nonfinite_in_a_row: 0
}
run_config: "model {\\n  vocab_size: 4096\\n}\\n"
tensors {
  name: "a"
  shape: 2
  shape: 3
  dtype: "F32"
  file: "tensors.safetensors"
}
tensors {
  name: "b"
  shape: 1
  dtype: "F32"
  file: "tensors.safetensors"
}
"""
put("manifest", "valid", manifest)
put("manifest", "skipped", manifest.replace("optimizer_steps: 1", "optimizer_steps: 0")
    .replace("skipped_steps: 0", "skipped_steps: 1").replace("nonfinite_in_a_row: 0", "nonfinite_in_a_row: 1"))
put("manifest", "missing-tensor", manifest.split("tensors {")[0] + "tensors {" + manifest.split("tensors {")[1])
put("manifest", "other-file", manifest.replace('file: "tensors.safetensors"', 'file: "other.safetensors"', 1))
put("manifest", "compact", 'format_version:1 progress{step:1 optimizer_steps:1} '
    'tensors{name:"a" shape:[2,3] dtype:"F32" file:"tensors.safetensors"} '
    'tensors{name:"b" shape:[1] dtype:"F32" file:"tensors.safetensors"}')

# Format 2 (as save_checkpoint prints it): the same tensors as pieces.
manifest2 = """format_version: 2
progress {
  step: 1
  optimizer_steps: 1
  skipped_steps: 0
  nonfinite_in_a_row: 0
}
run_config: ""
tensors {
  name: "a"
  shape: 2
  shape: 3
  dtype: "F32"
  pieces {
    file: "tensors.safetensors"
    key: "a"
    offset: 0
    offset: 0
    extent: 2
    extent: 3
  }
}
tensors {
  name: "b"
  shape: 1
  dtype: "F32"
  pieces {
    file: "tensors.safetensors"
    key: "b"
    offset: 0
    extent: 1
  }
}
ranks: 1
"""
put("manifest", "v2-pieces", manifest2)
put("manifest", "v2-overlap", manifest2.replace("shape: 2\n  shape: 3", "shape: 3\n  shape: 3"))

# ---- configs: chunk 0 is the file, further NUL-separated chunks are argv
for name in ["tiny", "llama7b", "llama70b"]:
    put("config", name, (ROOT / "configs" / (name + ".pbtxt")).read_text())
tiny = (ROOT / "configs" / "tiny.pbtxt").read_text()
put("config", "tiny-overrides", "\0".join([tiny, "--set", "train.lr=1e-4", "--set=model.norm=RMSNORM",
                                           "--set", "model.alpha_init={attention: 0.5 ffn: 0.1}",
                                           "--set", "train.run_dir=runs/x", "--json"]))
put("config", "tiny-bad-override", "\0".join([tiny, "--set", "model.n_heads=5", "--set", "parallel.tp=3"]))
for bad in sorted((ROOT / "tests" / "configs" / "bad").glob("*.pbtxt"))[:6]:
    put("config", "bad-" + bad.stem, bad.read_text())

# ---- config.dict: the schema's field names and enum values, the options, edge numbers
proto = (ROOT / "configs" / "dyt.proto").read_text()
names = sorted(set(re.findall(r"^\s*(?:optional|required|repeated)\s+\w+\s+(\w+)\s*=", proto, re.M)))
enums = sorted(set(re.findall(r"^\s*([A-Z][A-Z0-9_]+)\s*=\s*\d+;", proto, re.M)))
lines = ["# libFuzzer dictionary of the config target: every field name and enum value",
         "# of configs/dyt.proto (written by tests/fuzz/make_seeds.py), the command-line",
         "# options, and numbers at the edges of the field types."]
lines += ['"%s"' % n for n in names] + ['"%s"' % e for e in enums]
lines += ['"--set"', '"--config"', '"--set="', '"inf"', '"-inf"', '"nan"', '"1e308"', '"1e-320"',
          '"9223372036854775807"', '"-9223372036854775808"', '"2147483647"', '"-2147483648"', '"\\x00"']
(HERE / "config.dict").write_text("\n".join(lines) + "\n")
