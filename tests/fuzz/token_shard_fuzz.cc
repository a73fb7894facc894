// libFuzzer target: token shards in the llm.c format (trainer/data/
// token_shard.h, TokenShard::open) and the dataset over them
// (trainer/data/loader.h, TokenDataset::open, as dyt-train opens its data).
// Bad input must throw DataError; an accepted shard must read back whole.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "trainer/data/loader.h"
#include "trainer/data/token_shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace dd = dyt::data;
  static const std::string path = (dyt::fuzz::scratch_dir() / "input.bin").string();
  dyt::fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));

  dyt::fuzz::expect_only<dd::DataError>("TokenShard::open", [&] {
    const dd::TokenShard s = dd::TokenShard::open(path);
    const int64_t token_bytes = s.is_uint16() ? 2 : 4;
    if (dd::kShardHeaderBytes + s.size() * token_bytes != int64_t(size))
      dyt::fuzz::finding("accepted shard's token count disagrees with its size");
    uint32_t max = 0;
    for (int64_t i = 0; i < s.size(); ++i) max = std::max(max, s[i]);
    if (max != s.max_token()) dyt::fuzz::finding("max_token() disagrees with the tokens");
    std::vector<int32_t> out(size_t(s.size()));
    s.read(0, s.size(), out.data());  // DataError when a uint32 token exceeds int32
  });

  // The dataset as the trainer opens it (seq_len 4: 5 tokens per sample).
  dyt::fuzz::expect_only<dd::DataError>("TokenDataset::open", [&] {
    const dd::TokenDataset ds = dd::TokenDataset::open(path, 4, "data.train_shards");
    std::vector<int32_t> tokens(4), targets(4);
    ds.read_sample(0, tokens.data(), targets.data());
    ds.read_sample(ds.num_samples() - 1, tokens.data(), targets.data());
  });
  return 0;
}
