// The files the trainer writes besides checkpoints: side files all or
// nothing (write_text_file), and the metrics log cut back to the checkpoint
// a run resumes from, torn last line included.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/common/file_size_limit.h"
#include "tests/common/scratch_dir_test.h"
#include "trainer/metrics.h"
#include "trainer/program.h"

namespace dyt::trainer {
namespace {

using testing_support::read_bytes;
using testing_support::write_bytes;

class TrainerFilesTest : public testing_support::ScratchDirTest {
 protected:
  TrainerFilesTest() : ScratchDirTest("trainer_files") {}
};

TEST_F(TrainerFilesTest, TextFilesAreReplacedWholeOrNotAtAll) {
  const std::string path = file("config.json");
  write_text_file(path, "{\"old\": 1}\n");
  write_text_file(path, "{\"new\": 2}\n");
  EXPECT_EQ(read_bytes(path), "{\"new\": 2}\n");
  try {
    const testing_support::FileSizeLimit limit(8);  // the write fails half way
    write_text_file(path, std::string(100, 'x'));
    ADD_FAILURE() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write " + path), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(path), "{\"new\": 2}\n");
  EXPECT_TRUE(temporaries().empty());
}

std::string step_line(int step) {
  return "{\"step\": " + std::to_string(step) + ", \"loss\": 1.5, \"alpha\": {}}\n";
}

TEST_F(TrainerFilesTest, ResumedMetricsKeepOnlyWholeLinesUpToTheCheckpoint) {
  const std::string path = file("metrics.jsonl");
  // Steps 1-4 and an evaluation at 3, then a line a SIGKILL cut short (no
  // newline) whose visible step, 1, is one the checkpoint holds.
  write_bytes(path, step_line(1) + step_line(2) + step_line(3) + "{\"step\": 3, \"val_loss\": 2.5}\n" +
                        step_line(4) + "{\"step\": 1");
  {
    MetricsLog log(path, /*resume_after_step=*/3);
    StepMetrics m;
    m.step = 4;
    log.log_step(m);
  }
  const std::string text = read_bytes(path);
  EXPECT_EQ(text.substr(0, text.find("{\"step\": 4")),
            step_line(1) + step_line(2) + step_line(3) + "{\"step\": 3, \"val_loss\": 2.5}\n");
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5) << text;
  EXPECT_EQ(text.back(), '\n');
  EXPECT_TRUE(temporaries().empty());
}

}  // namespace
}  // namespace dyt::trainer
