#include "checkpoint/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/common/scratch_dir_test.h"

namespace dyt::checkpoint {
namespace {

namespace fs = std::filesystem;

using testing_support::read_bytes;
using testing_support::write_bytes;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("dyt_checkpoint_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Saves a checkpoint at `step` holding w (2×3) and b (3), scaled by step.
  std::string save(int64_t step, int keep = 2) {
    w_.assign(6, 0.0f);
    b_.assign(3, 0.0f);
    for (int i = 0; i < 6; ++i) w_[i] = 0.5f * i + step;
    for (int i = 0; i < 3; ++i) b_[i] = -1.0f * i - step;
    return save_checkpoint(root_.string(), {step, step - 1, 1, 0}, "model { d_model: 8 }",
                           {{"w", {2, 3}, w_.data()}, {"b", {3}, b_.data()}}, keep);
  }
  // The manifest of the latest checkpoint, edited by `edit` (old → new text).
  void edit_manifest(const std::string& from, const std::string& to) {
    const fs::path m = fs::path(list_checkpoints(root_.string()).back()) / "manifest.pbtxt";
    std::string text = read_bytes(m);
    const auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from << " not in\n" << text;
    write_bytes(m, text.replace(at, from.size(), to));
  }
  void expect_load_error(const std::string& needle) {
    try {
      load_latest_checkpoint(root_.string());
      ADD_FAILURE() << "expected CheckpointError containing " << needle;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }

  fs::path root_;
  std::vector<float> w_, b_;
};

TEST_F(CheckpointTest, NoneYet) {
  EXPECT_FALSE(load_latest_checkpoint(root_.string()).has_value());  // no root
  fs::create_directories(root_);
  EXPECT_FALSE(load_latest_checkpoint(root_.string()).has_value());  // empty root
}

TEST_F(CheckpointTest, RoundTripOfTheLatest) {
  save(3);
  const std::string dir = save(7);
  EXPECT_EQ(fs::path(dir).filename(), "step-00000007");
  const auto ck = load_latest_checkpoint(root_.string());
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->path, dir);
  EXPECT_EQ(ck->progress.step, 7);
  EXPECT_EQ(ck->progress.optimizer_steps, 6);
  EXPECT_EQ(ck->progress.skipped_steps, 1);
  EXPECT_EQ(ck->run_config, "model { d_model: 8 }");
  ASSERT_EQ(ck->tensors.size(), 2u);
  EXPECT_EQ(ck->tensors.at("w").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ck->tensors.at("w").data, w_);
  EXPECT_EQ(ck->tensors.at("b").data, b_);
}

TEST_F(CheckpointTest, KeepsTheNewestAndClearsHalfWrittenOnes) {
  fs::create_directories(root_ / "step-00000002.tmp");  // a writer crashed here
  write_bytes(root_ / "step-00000002.tmp" / "manifest.pbtxt", "garbage");
  fs::create_directories(root_ / "notes");  // not ours: left alone
  for (int64_t s : {1, 4, 10, 12}) save(s, /*keep=*/3);
  std::vector<std::string> names;
  for (const auto& p : list_checkpoints(root_.string())) names.push_back(fs::path(p).filename());
  EXPECT_EQ(names, (std::vector<std::string>{"step-00000004", "step-00000010", "step-00000012"}));
  EXPECT_FALSE(fs::exists(root_ / "step-00000002.tmp"));
  EXPECT_TRUE(fs::exists(root_ / "notes"));
  // Saving a step again (after a resume) replaces it.
  save(12, 3);
  EXPECT_EQ(load_latest_checkpoint(root_.string())->progress.step, 12);
}

TEST_F(CheckpointTest, RefusesDuplicateNamesAndKeepsWhatIsThere) {
  save(5);
  std::vector<float> x(2, 1.0f);
  EXPECT_THROW(save_checkpoint(root_.string(), {6, 6, 0, 0}, "", {{"x", {2}, x.data()}, {"x", {2}, x.data()}}, 2),
               CheckpointError);
  EXPECT_THROW(save_checkpoint(root_.string(), {6, 6, 0, 0}, "", {{"x", {2}, x.data()}}, 0),
               CheckpointError);
  EXPECT_EQ(load_latest_checkpoint(root_.string())->progress.step, 5);
  EXPECT_FALSE(fs::exists(root_ / "step-00000006"));
  EXPECT_FALSE(fs::exists(root_ / "step-00000006.tmp"));
}

TEST_F(CheckpointTest, DamageIsNamed) {
  save(4);
  edit_manifest("format_version: 1", "format_version: 9");
  expect_load_error("format_version 9");

  save(5);
  edit_manifest("step: 5", "step: 6");
  expect_load_error("does not match the directory");

  save(6);
  edit_manifest("shape: 3\n  dtype", "shape: 4\n  dtype");
  expect_load_error("tensor 'w' has shape [2, 3], the manifest says [2, 4]");

  save(7);
  edit_manifest("name: \"b\"", "name: \"c\"");
  expect_load_error("has no tensor 'c'");

  save(8);
  edit_manifest("tensors.safetensors", "../x");
  expect_load_error("is not a file name in the checkpoint");

  save(9);
  edit_manifest("progress {", "progress { bogus: 1");
  expect_load_error("manifest.pbtxt': line ");

  save(10);
  fs::remove(fs::path(list_checkpoints(root_.string()).back()) / "tensors.safetensors");
  expect_load_error("tensors.safetensors");

  save(11);
  fs::remove(fs::path(list_checkpoints(root_.string()).back()) / "manifest.pbtxt");
  expect_load_error("cannot read the manifest");
}

// Progress counts whose sum overflows int64 are refused (regression input
// tests/fuzz/corpus/manifest/regress-progress-overflow; the check used to add
// them, undefined behaviour that the sanitizer build reports).
TEST_F(CheckpointTest, ProgressCountsThatOverflowAreRefused) {
  save(12);
  edit_manifest("optimizer_steps: 11", "optimizer_steps: 9223372036854775807");
  edit_manifest("skipped_steps: 1", "skipped_steps: 9223372036854775807");
  expect_load_error("progress counts do not add up");
}

}  // namespace
}  // namespace dyt::checkpoint
