#include "trainer/data/token_shard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "tests/common/file_size_limit.h"
#include "tests/common/scratch_dir_test.h"

namespace dyt::data {
namespace {

namespace fs = std::filesystem;
using testing_support::read_bytes;
using testing_support::write_bytes;

// A shard written by hand, the way llm.c's write_datafile does it.
std::string raw_shard(int32_t magic, int32_t version, int32_t count, const std::string& payload) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  return std::string(reinterpret_cast<const char*>(header.data()), 1024) + payload;
}

template <typename T>
std::string payload(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class TokenShardTest : public testing_support::ScratchDirTest {
 protected:
  TokenShardTest() : ScratchDirTest("token_shard") {}

  void expect_open_error(const std::string& path, const std::vector<std::string>& problems) {
    try {
      TokenShard::open(path);
      ADD_FAILURE() << "expected DataError for " << path;
    } catch (const DataError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      for (const auto& p : problems) {
        EXPECT_NE(msg.find(p), std::string::npos) << "wanted '" << p << "' in: " << msg;
      }
    }
  }

};

TEST_F(TokenShardTest, RoundTripUint16) {
  std::vector<uint32_t> tokens = {0, 1, 50256, 65535, 7, 7, 12345};
  const std::string path = file("u16.bin");
  write_token_shard(path, tokens);
  EXPECT_TRUE(temporaries().empty());
  const std::string bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 1024 + tokens.size() * 2);
  int32_t header[256];
  std::memcpy(header, bytes.data(), 1024);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], int32_t(tokens.size()));
  for (int i = 3; i < 256; ++i) EXPECT_EQ(header[i], 0) << i;

  TokenShard s = TokenShard::open(path);
  EXPECT_TRUE(s.is_uint16());
  EXPECT_EQ(s.path(), path);
  ASSERT_EQ(s.size(), int64_t(tokens.size()));
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(s[int64_t(i)], tokens[i]) << i;
  std::vector<int32_t> out(tokens.size());
  s.read(0, s.size(), out.data());
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(out[i], int32_t(tokens[i]));
  EXPECT_EQ(s.max_token(), 65535u);
}

TEST_F(TokenShardTest, RoundTripUint32) {
  std::vector<uint32_t> tokens = {0, 128000, 128255, 65536, 3};
  const std::string path = file("u32.bin");
  write_token_shard(path, tokens);
  const std::string bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 1024 + tokens.size() * 4);
  int32_t header[3];
  std::memcpy(header, bytes.data(), 12);
  EXPECT_EQ(header[0], 20240801);
  EXPECT_EQ(header[1], 7);
  EXPECT_EQ(header[2], 5);

  TokenShard s = TokenShard::open(path);
  EXPECT_FALSE(s.is_uint16());
  ASSERT_EQ(s.size(), 5);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(s[int64_t(i)], tokens[i]);
  std::vector<int32_t> out(3);
  s.read(1, 3, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{128000, 128255, 65536}));
  EXPECT_EQ(s.max_token(), 128255u);
}

TEST_F(TokenShardTest, ForceUint32AndEmptyShard) {
  const std::string path = file("forced.bin");
  write_token_shard(path, {1, 2, 3}, /*force_uint32=*/true);
  TokenShard s = TokenShard::open(path);
  EXPECT_FALSE(s.is_uint16());
  EXPECT_EQ(s[2], 3u);

  const std::string empty = file("empty.bin");
  write_token_shard(empty, {});
  TokenShard e = TokenShard::open(empty);
  EXPECT_EQ(e.size(), 0);
  EXPECT_EQ(e.max_token(), 0u);
  e.read(0, 0, nullptr);
  EXPECT_THROW(e[0], DataError);
}

TEST_F(TokenShardTest, ReadsShardsWrittenLikeLlmC) {
  const std::string path = file("llmc.bin");
  write_bytes(path, raw_shard(20240520, 1, 4, payload<uint16_t>({10, 20, 30, 40})));
  TokenShard s = TokenShard::open(path);
  EXPECT_EQ(s[3], 40u);
  write_bytes(path, raw_shard(20240801, 7, 2, payload<uint32_t>({100000, 5})));
  TokenShard t = TokenShard::open(path);
  EXPECT_EQ(t[0], 100000u);
}

TEST_F(TokenShardTest, ReadBoundsAreChecked) {
  const std::string path = file("bounds.bin");
  write_token_shard(path, {5, 6, 7, 8});
  TokenShard s = TokenShard::open(path);
  std::vector<int32_t> out(8, -1);
  s.read(4, 0, out.data());  // empty read at the end is fine
  s.read(2, 2, out.data());
  EXPECT_EQ(out[0], 7);
  EXPECT_EQ(out[1], 8);
  for (auto [start, n] : std::vector<std::pair<int64_t, int64_t>>{
           {3, 2}, {-1, 1}, {0, 5}, {5, 0}, {0, -1}, {2, INT64_MAX}}) {
    try {
      s.read(start, n, out.data());
      ADD_FAILURE() << "expected DataError for read(" << start << ", " << n << ")";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("outside the shard's 4 tokens"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(s[4], DataError);
  EXPECT_THROW(s[-1], DataError);
}

TEST_F(TokenShardTest, ReadRejectsTokensBeyondInt32) {
  const std::string path = file("huge_token.bin");
  write_token_shard(path, {1, 0x80000000u, 2});
  TokenShard s = TokenShard::open(path);
  EXPECT_EQ(s[1], 0x80000000u);
  std::vector<int32_t> out(3);
  s.read(0, 1, out.data());
  EXPECT_THROW(s.read(0, 3, out.data()), DataError);
  EXPECT_EQ(s.max_token(), 0x80000000u);
}

TEST_F(TokenShardTest, MaxTokenIsCachedAndSurvivesMoves) {
  const std::string path = file("max.bin");
  std::vector<uint32_t> tokens(10000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint32_t((i * 7919) % 50000);
  tokens[1234] = 50257;
  write_token_shard(path, tokens);
  TokenShard a = TokenShard::open(path);
  EXPECT_EQ(a.max_token(), 50257u);
  TokenShard b = std::move(a);
  EXPECT_EQ(b.max_token(), 50257u);
  EXPECT_EQ(b.size(), 10000);
  EXPECT_EQ(b[1234], 50257u);
  TokenShard c = TokenShard::open(path);
  c = std::move(b);  // the old mapping of c is released, b's moves over
  EXPECT_EQ(c[1234], 50257u);
}

// ---- bad shards: each names the path and the problem

TEST_F(TokenShardTest, MissingFile) {
  expect_open_error(file("nope.bin"), {"cannot open"});
}

TEST_F(TokenShardTest, ShorterThanHeader) {
  const std::string path = file("short.bin");
  write_bytes(path, std::string(100, '\0'));
  expect_open_error(path, {"100 bytes", "shorter than the 1024-byte header"});
}

TEST_F(TokenShardTest, Truncated) {
  const std::string path = file("trunc.bin");
  write_token_shard(path, {1, 2, 3, 4, 5});
  fs::resize_file(path, 1024 + 8);
  expect_open_error(path, {"truncated", "1034", "1032"});
}

TEST_F(TokenShardTest, TrailingBytes) {
  const std::string path = file("trail.bin");
  write_bytes(path, raw_shard(20240801, 7, 2, payload<uint32_t>({1, 2, 3})));
  expect_open_error(path, {"trailing bytes", "1032", "1036"});
}

TEST_F(TokenShardTest, WrongMagic) {
  const std::string path = file("magic.bin");
  write_bytes(path, raw_shard(12345678, 1, 1, payload<uint16_t>({1})));
  expect_open_error(path, {"unknown magic 12345678", "20240520", "20240801"});
}

TEST_F(TokenShardTest, WrongVersion) {
  const std::string path = file("version.bin");
  write_bytes(path, raw_shard(20240520, 7, 1, payload<uint16_t>({1})));
  expect_open_error(path, {"version 7", "magic 20240520", "expects version 1"});
  write_bytes(path, raw_shard(20240801, 1, 1, payload<uint32_t>({1})));
  expect_open_error(path, {"version 1", "magic 20240801", "expects version 7"});
}

TEST_F(TokenShardTest, NegativeCount) {
  const std::string path = file("neg.bin");
  write_bytes(path, raw_shard(20240520, 1, -3, ""));
  expect_open_error(path, {"negative token count -3"});
}

TEST_F(TokenShardTest, DirectoryIsNotAShard) {
  const std::string path = file("adir");
  fs::create_directories(path);
  expect_open_error(path, {});
}

TEST_F(TokenShardTest, FailedWriteLeavesNoPartialFile) {
  const std::string path = file("no/such/dir/x.bin");
  try {
    write_token_shard(path, {1, 2, 3});
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));

  // An existing shard stays intact when the new one cannot be written.
  const std::string keep = file("keep.bin");
  write_token_shard(keep, {9, 8, 7});
  {
    const testing_support::FileSizeLimit limit(1024);  // the header fits, the tokens do not
    EXPECT_THROW(write_token_shard(keep, {1}), DataError);
  }
  EXPECT_TRUE(temporaries().empty());
  TokenShard s = TokenShard::open(keep);
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s[0], 9u);
}

}  // namespace
}  // namespace dyt::data
