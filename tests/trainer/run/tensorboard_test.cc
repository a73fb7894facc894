// TensorBoard event files (trainer/tensorboard_log.h): TFRecord framing with
// CRC-32C checked against a bitwise reference, the Event records a run
// writes, and the file cut back to the checkpoint a run resumes from, torn
// last record included. tensorboard_check.py reads a real run's file with
// the tensorboard package itself.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/common/scratch_dir_test.h"
#include "trainer/tensorboard_event.pb.h"
#include "trainer/tensorboard_log.h"

namespace dyt::trainer {
namespace {

using testing_support::read_bytes;
using testing_support::write_bytes;

// CRC-32C one bit at a time, straight from the definition (reflected
// polynomial 0x82F63B78, init and final xor all ones).
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : s) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t unmask(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

TEST(TensorBoardRecords, Crc32cMatchesTheDefinitionAndTheCheckValue) {
  EXPECT_EQ(unmask(masked_crc32c("123456789", 9)), 0xE3069283u);  // CRC-32C's published check value
  std::mt19937 rng(7);
  for (size_t n : {0, 1, 7, 8, 63, 1000}) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    EXPECT_EQ(unmask(masked_crc32c(s.data(), s.size())), crc32c_bitwise(s)) << n;
  }
}

TEST(TensorBoardRecords, FramingRoundTripsAndStopsAtATornRecord) {
  const std::string a = "first", b(300, 'b'), c = "third";
  std::string image = tfrecord(a) + tfrecord(b) + tfrecord(c);
  EXPECT_EQ(read_tfrecords(image), (std::vector<std::string>{a, b, c}));
  EXPECT_EQ(tfrecord(a).size(), 16 + a.size());
  // Cut anywhere inside the last record: the first two survive.
  for (size_t cut = image.size() - tfrecord(c).size() + 1; cut < image.size(); ++cut)
    EXPECT_EQ(read_tfrecords(image.substr(0, cut)).size(), 2u) << cut;
  // A flipped bit in b's data: a and nothing after.
  image[tfrecord(a).size() + 12 + 5] ^= 1;
  EXPECT_EQ(read_tfrecords(image), std::vector<std::string>{a});
}

class TensorBoardLogTest : public testing_support::ScratchDirTest {
 protected:
  TensorBoardLogTest() : ScratchDirTest("tensorboard") {}
  std::vector<tensorboard::Event> events() {
    std::vector<tensorboard::Event> out;
    for (const std::string& r : read_tfrecords(read_bytes(file(TensorBoardLog::kFileName)))) {
      out.emplace_back();
      EXPECT_TRUE(out.back().ParseFromString(r));
    }
    return out;
  }
  static StepMetrics step(int64_t s) {
    StepMetrics m;
    m.step = s;
    m.loss = 8.0 - 0.25 * static_cast<double>(s);
    m.lr = 1e-3;
    m.grad_norm = 0.5;
    m.tokens_per_s = 1234.5;
    m.alphas = {{"model.layers.0.input_layernorm.alpha", 0.75f}, {"model.norm.alpha", 1.5f}};
    return m;
  }
};

TEST_F(TensorBoardLogTest, WritesTheVersionThenOneEventPerStepAndEval) {
  {
    TensorBoardLog log(dir_.string());
    log.log_step(step(1));
    StepMetrics bad = step(2);
    bad.loss = std::nan("");
    log.log_step(bad);
    log.log_eval(2, 3.5);
  }
  const auto e = events();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].file_version(), "brain.Event:2");
  EXPECT_EQ(e[1].step(), 1);
  const auto& v = e[1].summary().value();
  const auto expected = tensorboard_scalars(step(1));
  ASSERT_EQ(v.size(), static_cast<int>(expected.size()));
  for (int i = 0; i < v.size(); ++i) {
    EXPECT_EQ(v[i].tag(), expected[i].first);
    EXPECT_EQ(v[i].simple_value(), static_cast<float>(expected[i].second)) << v[i].tag();
  }
  EXPECT_EQ(v[0].tag(), "train/loss");
  EXPECT_EQ(v[5].tag(), "alpha/model.layers.0.input_layernorm.alpha");
  EXPECT_TRUE(std::isnan(e[2].summary().value(0).simple_value()));
  EXPECT_EQ(e[3].step(), 2);
  EXPECT_EQ(e[3].summary().value(0).tag(), "val/loss");
  EXPECT_EQ(e[3].summary().value(0).simple_value(), 3.5f);
}

TEST_F(TensorBoardLogTest, ResumeKeepsWholeRecordsUpToTheCheckpoint) {
  {
    TensorBoardLog log(dir_.string());
    for (int s = 1; s <= 3; ++s) log.log_step(step(s));
    log.log_eval(3, 2.5);
    log.log_step(step(4));
  }
  // A SIGKILL tore the last record written: half of another event.
  const std::string path = file(TensorBoardLog::kFileName);
  write_bytes(path, read_bytes(path) + tfrecord(tensorboard::Event().SerializeAsString()).substr(0, 10));
  {
    TensorBoardLog log(dir_.string(), /*resume_after_step=*/3);
    StepMetrics again = step(4);
    again.loss = 42;
    log.log_step(again);
  }
  std::vector<int64_t> steps;
  for (const auto& e : events()) steps.push_back(e.has_file_version() ? -1 : e.step());
  EXPECT_EQ(steps, (std::vector<int64_t>{-1, 1, 2, 3, 3, 4}));  // the 3 twice: the step and its evaluation
  EXPECT_EQ(events().back().summary().value(0).simple_value(), 42.0f);
  EXPECT_TRUE(temporaries().empty());
}

TEST_F(TensorBoardLogTest, AFileThatCannotBeOpenedIsNamed) {
  const std::string blocked = file("blocked");
  write_bytes(blocked, "a file where the directory should be");
  try {
    TensorBoardLog log(blocked);
    ADD_FAILURE() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("blocked"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dyt::trainer
