// libFuzzer target: the checkpoint manifest (checkpoint/manifest.proto in
// protobuf text format), read by load_latest_checkpoint (checkpoint/
// checkpoint.h) as dyt-train does on resume. The input is the manifest of
// <root>/step-00000001; beside it lies a valid tensors.safetensors holding
// "a" [2, 3] and "b" [1]. Bad input must throw CheckpointError; an accepted
// checkpoint must agree with its directory and read each of the file's
// values exactly once.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace ck = dyt::checkpoint;

const std::string& root() {
  static const std::string r = [] {
    const auto dir = dyt::fuzz::scratch_dir() / "ckpt";
    std::filesystem::create_directories(dir / "step-00000001");
    const float a[6] = {1, 2, 3, 4, 5, 6};
    const float b[1] = {7};
    ck::write_safetensors((dir / "step-00000001" / "tensors.safetensors").string(),
                          {{"a", {2, 3}, a}, {"b", {1}, b}});
    return dir.string();
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& r = root();
  dyt::fuzz::write_file(std::filesystem::path(r) / "step-00000001" / "manifest.pbtxt",
                        std::string_view(reinterpret_cast<const char*>(data), size));
  dyt::fuzz::expect_only<ck::CheckpointError>("load_latest_checkpoint", [&] {
    const auto c = ck::load_latest_checkpoint(r);
    if (!c) dyt::fuzz::finding("the checkpoint directory was not found");
    if (c->progress.step != 1) dyt::fuzz::finding("accepted a manifest whose step is not the directory's");
    if (c->progress.optimizer_steps + c->progress.skipped_steps != c->progress.step)
      dyt::fuzz::finding("accepted progress counts that do not add up");
    // The manifest may cut and name the file's tensors as it likes (format
    // 2), but an accepted one reads each of the file's 7 values exactly once.
    std::vector<float> all;
    for (const auto& [name, shape] : c->shapes())
      for (float x : c->read_all(name)) all.push_back(x);
    std::sort(all.begin(), all.end());
    if (all != std::vector<float>{1, 2, 3, 4, 5, 6, 7})
      dyt::fuzz::finding("accepted a manifest whose tensors do not read the file's values once each");
  });
  return 0;
}
