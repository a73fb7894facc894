// libFuzzer target: the safetensors reader (checkpoint/safetensors.h,
// read_safetensors), on whole files: the 8-byte header length, the JSON
// header and the data buffer. Bad input must throw CheckpointError; an
// accepted file must hold what its header promises.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "checkpoint/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace ck = dyt::checkpoint;
  static const std::string path = (dyt::fuzz::scratch_dir() / "input.safetensors").string();
  dyt::fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  dyt::fuzz::expect_only<ck::CheckpointError>("read_safetensors", [&] {
    std::map<std::string, std::string> metadata;
    const auto tensors = ck::read_safetensors(path, &metadata);
    // Accepted: every tensor's element count matches its shape, and the
    // elements (at least 2 bytes each) fit in the file.
    uint64_t bytes = 0;
    for (const auto& [name, t] : tensors) {
      uint64_t numel = 1;
      for (int64_t d : t.shape) {
        if (d < 0) dyt::fuzz::finding("tensor '" + name + "' accepted with a negative dimension");
        numel *= uint64_t(d);
      }
      if (numel != t.data.size()) dyt::fuzz::finding("tensor '" + name + "' data does not match its shape");
      bytes += 2 * numel;
    }
    if (bytes > size) dyt::fuzz::finding("accepted tensors need more bytes than the file has");
  });
  return 0;
}
