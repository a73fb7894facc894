// Token shards in the llm.c format (karpathy/llm.c, dev/data/data_common.py).
//
// A shard is a header of 256 little-endian int32 followed by the tokens:
//   header[0] = magic, header[1] = version, header[2] = number of tokens;
//   magic 20240520, version 1: uint16 tokens (GPT-2 style shards);
//   magic 20240801, version 7: uint32 tokens (llm.c's LLaMA-3 shards).
// The rest of the header is zero. Every problem with a shard is a DataError
// whose message names the file and the problem.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dyt::data {

struct DataError : std::runtime_error {
  using runtime_error::runtime_error;
};

inline constexpr int32_t kShardMagicU16 = 20240520;
inline constexpr int32_t kShardVersionU16 = 1;
inline constexpr int32_t kShardMagicU32 = 20240801;
inline constexpr int32_t kShardVersionU32 = 7;
inline constexpr int64_t kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;

// A read-only memory map of one shard. Movable, not copyable.
class TokenShard {
 public:
  // Maps `path` and checks it: a readable regular file of at least 1024
  // bytes, a known magic, the version that goes with it, and a size equal to
  // 1024 + count * token size. Throws DataError otherwise.
  static TokenShard open(const std::string& path);

  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  ~TokenShard();

  int64_t size() const { return count_; }
  // Token i; DataError when i is outside [0, size()).
  uint32_t operator[](int64_t i) const;
  // Copies tokens [start, start + n) to out; DataError when the range is not
  // inside the shard or a token does not fit in int32.
  void read(int64_t start, int64_t n, int32_t* out) const;
  // Largest token in the shard (0 when empty); scans once, then cached.
  uint32_t max_token() const;
  bool is_uint16() const { return token_bytes_ == 2; }
  const std::string& path() const { return path_; }

 private:
  TokenShard() = default;
  void release() noexcept;

  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;
  int64_t count_ = 0;
  int token_bytes_ = 2;
  mutable std::atomic<int64_t> max_token_{-1};  // -1: not yet scanned
};

// Writes `tokens` as a shard at `path`, all or nothing (checkpoint/atomic_file.h:
// a temporary of its own, fsync, rename).
// uint16 tokens when every token is < 65536 unless `force_uint32`. Throws
// DataError on I/O failure or more than 2^31 - 1 tokens (the count is int32).
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       bool force_uint32 = false);

}  // namespace dyt::data
