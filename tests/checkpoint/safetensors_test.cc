#include "checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "tests/common/file_size_limit.h"
#include "tests/common/scratch_dir_test.h"

namespace dyt::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing_support::read_bytes;
using testing_support::write_bytes;

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int b = 0; b < 8; ++b) s[b] = static_cast<char>(v >> (8 * b));
  return s;
}

std::string float_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// A file from a header (padded to 8 with spaces when `pad`) and a data buffer.
std::string make_file(std::string header, const std::string& data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  return u64_le(header.size()) + header + data;
}

class SafetensorsTest : public testing_support::ScratchDirTest {
 protected:
  SafetensorsTest() : ScratchDirTest("safetensors") {}

  // Expects read_safetensors(path) to throw a CheckpointError whose message
  // contains the path and `problem`.
  void expect_read_error(const std::string& path, const std::string& problem) {
    try {
      read_safetensors(path);
      ADD_FAILURE() << "expected CheckpointError (" << problem << ") for " << path;
    } catch (const CheckpointError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(problem), std::string::npos) << "wanted '" << problem << "' in: " << msg;
    }
  }

};

TEST_F(SafetensorsTest, RoundTrip) {
  std::vector<float> w(2 * 3 * 4), b{0.5f}, v3{-1.0f, std::numeric_limits<float>::infinity(), 1e-40f};
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i)) * 100.0f;
  std::vector<TensorRef> tensors = {
      {"model.layers.0.self_attn.q_proj.weight", {2, 3, 4}, w.data()},
      {"model.embed_scale", {1}, b.data()},
      {"empty", {0, 5}, nullptr},
      {"v", {3}, v3.data()},
  };
  const std::string path = file("rt.safetensors");
  write_safetensors(path, tensors);
  auto loaded = read_safetensors(path);
  ASSERT_EQ(loaded.size(), 4u);
  for (const TensorRef& t : tensors) {
    ASSERT_TRUE(loaded.count(t.name)) << t.name;
    const LoadedTensor& l = loaded.at(t.name);
    EXPECT_EQ(l.shape, t.shape) << t.name;
    size_t n = 1;
    for (int64_t d : t.shape) n *= size_t(d);
    ASSERT_EQ(l.data.size(), n) << t.name;
    if (n) {
      EXPECT_EQ(std::memcmp(l.data.data(), t.data, n * 4), 0) << t.name;
    }
  }
  EXPECT_TRUE(temporaries().empty());
}

TEST_F(SafetensorsTest, ByteLayoutOfAKnownFile) {
  std::vector<float> a{1.0f, -2.0f}, b{0.5f, 0.25f, 3.0f};
  const std::string path = file("known.safetensors");
  write_safetensors(path, {{"a", {2}, a.data()}, {"b", {1, 3}, b.data()}});
  const std::string bytes = read_bytes(path);

  const std::string json =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[1,3],"data_offsets":[8,20]}})";
  const size_t n = (json.size() + 7) / 8 * 8;
  ASSERT_EQ(bytes.size(), 8 + n + 20);
  uint64_t header_len = 0;
  for (int k = 0; k < 8; ++k) header_len |= uint64_t(uint8_t(bytes[k])) << (8 * k);
  EXPECT_EQ(header_len, n);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(bytes.substr(8, json.size()), json);
  EXPECT_EQ(bytes.substr(8 + json.size(), n - json.size()), std::string(n - json.size(), ' '));
  // Little-endian IEEE-754 data, a then b, no gaps.
  const unsigned char expected_data[20] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0,
                                           0x00, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x80, 0x3E,
                                           0x00, 0x00, 0x40, 0x40};
  EXPECT_EQ(bytes.substr(8 + n), std::string(reinterpret_cast<const char*>(expected_data), 20));
}

TEST_F(SafetensorsTest, EmptyFileHasOnlyAHeader) {
  const std::string path = file("empty.safetensors");
  write_safetensors(path, {});
  EXPECT_EQ(read_bytes(path), u64_le(8) + "{}      ");
  EXPECT_TRUE(read_safetensors(path).empty());
}

TEST_F(SafetensorsTest, MetadataRoundTrip) {
  std::vector<float> a{1.0f};
  std::map<std::string, std::string> md = {
      {"format", "pt"},
      {"step", "1200"},
      {"config", "{\"quoted\": \"x\\y\"}\nline two\ttab \x01"},
      {"unicode", "\xC3\xBCn\xC3\xAF \xE2\x82\xAC \xF0\x9F\x98\x80"},
      {"", "empty key"},
  };
  const std::string path = file("md.safetensors");
  write_safetensors(path, {{"a", {1}, a.data()}}, md);
  const std::string bytes = read_bytes(path);
  EXPECT_EQ(bytes.substr(8, 16), "{\"__metadata__\":");  // written first, like the reference
  std::map<std::string, std::string> got = {{"stale", "entry"}};
  auto loaded = read_safetensors(path, &got);
  EXPECT_EQ(got, md);
  EXPECT_EQ(loaded.at("a").data, a);
}

TEST_F(SafetensorsTest, ReadsBF16AndF16) {
  // F16: 1, -2, smallest subnormal, largest subnormal, 65504, -0, +inf, 1/3 (rounded).
  const uint16_t f16[] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x7BFF, 0x8000, 0x7C00, 0x3555};
  // BF16: 1, -3, 1e-38-ish normal, pi (truncated).
  const uint16_t bf16[] = {0x3F80, 0xC040, 0x0080, 0x4049};
  std::string data(reinterpret_cast<const char*>(f16), sizeof(f16));
  data += std::string(reinterpret_cast<const char*>(bf16), sizeof(bf16));
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},)"
      R"("g":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}})";
  const std::string path = file("half.safetensors");
  write_bytes(path, make_file(header, data));
  auto loaded = read_safetensors(path);
  const auto& h = loaded.at("h");
  EXPECT_EQ(h.shape, (std::vector<int64_t>{2, 4}));
  ASSERT_EQ(h.data.size(), 8u);
  EXPECT_EQ(h.data[0], 1.0f);
  EXPECT_EQ(h.data[1], -2.0f);
  EXPECT_EQ(h.data[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(h.data[3], std::ldexp(1023.0f, -24));
  EXPECT_EQ(h.data[4], 65504.0f);
  EXPECT_EQ(h.data[5], 0.0f);
  EXPECT_TRUE(std::signbit(h.data[5]));
  EXPECT_TRUE(std::isinf(h.data[6]) && h.data[6] > 0);
  EXPECT_EQ(h.data[7], 0.333251953125f);
  const auto& g = loaded.at("g");
  ASSERT_EQ(g.data.size(), 4u);
  EXPECT_EQ(g.data[0], 1.0f);
  EXPECT_EQ(g.data[1], -3.0f);
  EXPECT_EQ(g.data[2], std::numeric_limits<float>::min());
  EXPECT_EQ(g.data[3], 3.140625f);
}

TEST_F(SafetensorsTest, AcceptsUnpaddedHeaderAndRankZero) {
  std::vector<float> one{7.0f};
  const std::string path = file("scalar.safetensors");
  write_bytes(path, make_file(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
                              float_bytes(one), /*pad=*/false));
  auto loaded = read_safetensors(path);
  EXPECT_TRUE(loaded.at("s").shape.empty());
  EXPECT_EQ(loaded.at("s").data, one);
}

// ---- corrupt files: each is a CheckpointError naming the file and problem

TEST_F(SafetensorsTest, MissingFile) {
  expect_read_error(file("does_not_exist.safetensors"), "cannot open");
}

TEST_F(SafetensorsTest, TruncatedData) {
  std::vector<float> a(16, 1.0f);
  const std::string path = file("trunc.safetensors");
  write_safetensors(path, {{"a", {16}, a.data()}});
  fs::resize_file(path, fs::file_size(path) - 4);
  expect_read_error(path, "out of range");
}

TEST_F(SafetensorsTest, TruncatedBeforeHeaderLength) {
  const std::string path = file("tiny.safetensors");
  write_bytes(path, "\x10\x00\x00");
  expect_read_error(path, "too short");
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFile) {
  std::vector<float> a(4, 1.0f);
  const std::string path = file("hlen.safetensors");
  write_safetensors(path, {{"a", {4}, a.data()}});
  std::string bytes = read_bytes(path);
  bytes.replace(0, 8, u64_le(bytes.size()));
  write_bytes(path, bytes);
  expect_read_error(path, "runs past the end");
  bytes.replace(0, 8, u64_le(uint64_t(1) << 62));
  write_bytes(path, bytes);
  expect_read_error(path, "exceeds the limit");
}

TEST_F(SafetensorsTest, MalformedJson) {
  const std::string path = file("badjson.safetensors");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})",
                              float_bytes({1.0f})));
  expect_read_error(path, "malformed JSON");
  write_bytes(path, make_file("[1, 2]", ""));
  expect_read_error(path, "must be a JSON object");
  write_bytes(path, make_file("{\"\xff\":1}", ""));
  expect_read_error(path, "not valid UTF-8");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                              float_bytes({1.0f})));
  expect_read_error(path, "duplicate key");
}

TEST_F(SafetensorsTest, WrongStructure) {
  const std::string path = file("struct.safetensors");
  write_bytes(path, make_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", float_bytes({1.0f})));
  expect_read_error(path, "\"dtype\"");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                              float_bytes({1.0f})));
  expect_read_error(path, "non-negative");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}})",
                              float_bytes({1.0f})));
  expect_read_error(path, "data_offsets");
  write_bytes(path, make_file(R"({"__metadata__":{"k":1}})", ""));
  expect_read_error(path, "must be a string");
}

TEST_F(SafetensorsTest, UnknownAndUnsupportedDtype) {
  const std::string path = file("dtype.safetensors");
  write_bytes(path, make_file(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})",
                              float_bytes({1.0f})));
  expect_read_error(path, "unknown dtype \"F33\"");
  write_bytes(path, make_file(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                              std::string(8, '\0')));
  expect_read_error(path, "unsupported dtype \"I64\"");
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  const std::string path = file("range.safetensors");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}})",
                              float_bytes({1.0f, 2.0f})));
  expect_read_error(path, "out of range");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})",
                              float_bytes({1.0f, 2.0f})));
  expect_read_error(path, "reversed");
}

TEST_F(SafetensorsTest, SizeNotMatchingShape) {
  const std::string path = file("size.safetensors");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                              float_bytes({1.0f, 2.0f})));
  expect_read_error(path, "needs 12");
  write_bytes(path, make_file(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}})",
                              float_bytes({1.0f, 2.0f})));
  expect_read_error(path, "needs 4");
  write_bytes(path, make_file(
      R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})",
      float_bytes({1.0f, 2.0f})));
  expect_read_error(path, "too large");
}

TEST_F(SafetensorsTest, OverlapGapAndTrailingBytes) {
  const std::string path = file("overlap.safetensors");
  const std::string data = float_bytes({1.0f, 2.0f, 3.0f});
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              data));
  expect_read_error(path, "overlap");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                              data));
  expect_read_error(path, "gap");
  write_bytes(path, make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
  expect_read_error(path, "trailing bytes");
}

// ---- writer: bad input and atomicity

void expect_write_error(const std::string& path, const std::vector<TensorRef>& tensors,
                        const std::string& problem) {
  try {
    write_safetensors(path, tensors);
    ADD_FAILURE() << "expected CheckpointError (" << problem << ")";
  } catch (const CheckpointError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(problem), std::string::npos) << "wanted '" << problem << "' in: " << msg;
  }
  EXPECT_FALSE(fs::exists(path));
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  std::vector<float> a{1.0f, 2.0f};
  const std::string path = file("bad.safetensors");
  expect_write_error(path, {{"a", {1}, a.data()}, {"a", {2}, a.data()}}, "duplicate tensor name 'a'");
  expect_write_error(path, {{"__metadata__", {1}, a.data()}}, "reserved");
  expect_write_error(path, {{"", {1}, a.data()}}, "empty name");
  expect_write_error(path, {{"a", {2, -1}, a.data()}}, "negative dimension");
  expect_write_error(path, {{"a", {2}, nullptr}}, "null data");
}

TEST_F(SafetensorsTest, FailedWriteLeavesNoPartialFile) {
  std::vector<float> a{1.0f, 2.0f};
  // Parent directory missing: nothing can be created.
  const std::string missing = file("no/such/dir/x.safetensors");
  EXPECT_THROW(write_safetensors(missing, {{"a", {2}, a.data()}}), CheckpointError);
  EXPECT_FALSE(fs::exists(missing));

  // The rename fails (the target is a non-empty directory): the temporary is removed.
  const std::string dir_target = file("target_is_dir");
  fs::create_directories(dir_target + "/child");
  try {
    write_safetensors(dir_target, {{"a", {2}, a.data()}});
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(dir_target), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_directory(dir_target));
  EXPECT_TRUE(temporaries().empty());
}

TEST_F(SafetensorsTest, FailedWriteKeepsThePreviousFile) {
  std::vector<float> old_data{1.0f, 2.0f}, new_data(1000, 3.0f);
  const std::string path = file("keep.safetensors");
  write_safetensors(path, {{"w", {2}, old_data.data()}});
  const std::string before = read_bytes(path);
  {
    const testing_support::FileSizeLimit limit(256);  // the new file cannot be written whole
    EXPECT_THROW(write_safetensors(path, {{"w", {1000}, new_data.data()}}), CheckpointError);
  }
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(read_safetensors(path).at("w").data, old_data);
  EXPECT_TRUE(temporaries().empty());
  // A temporary left by a crashed writer is removed by the next one.
  write_bytes(path + ".tmp.crash1", "garbage");
  write_safetensors(path, {{"w", {1000}, new_data.data()}});
  EXPECT_EQ(read_safetensors(path).at("w").data, new_data);
  EXPECT_TRUE(temporaries().empty());
}

}  // namespace
}  // namespace dyt::checkpoint
