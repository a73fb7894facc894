// TensorBoard event files beside metrics.jsonl: the same scalars (loss,
// validation loss, lr, gradient norm, tokens/s, every α, ...) as TFRecord
// records of TensorBoard's Event protobuf, so `tensorboard --logdir runs/`
// plots a run, or a sweep of them, with nothing converted.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "trainer/metrics.h"

namespace dyt::trainer {

// The scalars of one step under their TensorBoard tags ("train/loss",
// "alpha/model.layers.0.input_layernorm.alpha", ...), in the order written.
std::vector<std::pair<std::string, double>> tensorboard_scalars(const StepMetrics& m);

class TensorBoardLog {
 public:
  // The event file in `dir` (kFileName). A fresh run (resume_after_step < 0)
  // starts it anew; a run resumed after step N keeps its records up to step N
  // (those after were logged past the last checkpoint and will be logged
  // again; a record cut short by a crash goes too) and appends. Throws
  // std::runtime_error naming the file if it cannot.
  explicit TensorBoardLog(const std::string& dir, int64_t resume_after_step = -1);
  ~TensorBoardLog();
  TensorBoardLog(const TensorBoardLog&) = delete;
  TensorBoardLog& operator=(const TensorBoardLog&) = delete;

  void log_step(const StepMetrics& m);
  void log_eval(int64_t step, double val_loss);

  const std::string& path() const { return path_; }

  // TensorBoard reads files whose name contains "tfevents"; one fixed name per
  // run directory, so a resumed run finds and continues its own file.
  static constexpr const char* kFileName = "events.out.tfevents.dyt-train";

 private:
  void write_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);
  void write_record(const std::string& data);
  std::FILE* file_ = nullptr;
  std::string path_;
};

// TFRecord framing, exposed for the tests: length (u64 LE), masked CRC32C of
// the length, data, masked CRC32C of the data.
std::string tfrecord(const std::string& data);
uint32_t masked_crc32c(const void* data, size_t size);

// The records of a TFRecord file image, in order; stops at the first record
// that is cut short or whose checksums disagree (a crash's torn tail).
std::vector<std::string> read_tfrecords(const std::string& image);

}  // namespace dyt::trainer
