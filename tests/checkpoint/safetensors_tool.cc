// Test helper for the Python interoperability check (safetensors_interop.py).
//   safetensors_tool write-sample PATH   writes a fixed set of F32 tensors and metadata
//   safetensors_tool dump PATH           prints metadata and tensors as JSON on stdout
// Values are printed as the hex of their float32 bits, so the comparison is exact.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/json_lite.h"
#include "checkpoint/safetensors.h"

using namespace dyt::checkpoint;

static int write_sample(const std::string& path) {
  std::vector<float> w(3 * 5), s{1.5f}, e;
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) * 0.25f - 1.0f;
  std::vector<float> v{3.0e38f, -1.0e-45f, 0.1f, -0.0f};
  write_safetensors(path,
                    {{"model.layers.0.mlp.down_proj.weight", {3, 5}, w.data()},
                     {"model.embed_scale", {1}, s.data()},
                     {"empty", {2, 0}, e.data()},
                     {"v\xC3\xA9", {4}, v.data()}},
                    {{"step", "42"}, {"note", "quote \" backslash \\ newline \n"}});
  return 0;
}

static int dump(const std::string& path) {
  std::map<std::string, std::string> md;
  auto tensors = read_safetensors(path, &md);
  std::string out = "{\"metadata\":{";
  bool first = true;
  for (const auto& [k, v] : md) {
    if (!first) out += ',';
    first = false;
    json::append_quoted(out, k);
    out += ':';
    json::append_quoted(out, v);
  }
  out += "},\"tensors\":{";
  first = true;
  for (const auto& [name, t] : tensors) {
    if (!first) out += ',';
    first = false;
    json::append_quoted(out, name);
    out += ":{\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) out += ',';
      out += std::to_string(t.shape[d]);
    }
    out += "],\"bits\":[";
    for (size_t i = 0; i < t.data.size(); ++i) {
      uint32_t b;
      std::memcpy(&b, &t.data[i], 4);
      char buf[16];
      std::snprintf(buf, sizeof(buf), "\"%08" PRIx32 "\"", b);
      if (i) out += ',';
      out += buf;
    }
    out += "]}";
  }
  out += "}}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s write-sample|dump PATH\n", argv[0]);
    return 2;
  }
  try {
    std::string mode = argv[1];
    if (mode == "write-sample") return write_sample(argv[2]);
    if (mode == "dump") return dump(argv[2]);
    std::fprintf(stderr, "unknown mode '%s'\n", argv[1]);
    return 2;
  } catch (const CheckpointError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
