#include "trainer/tensorboard_log.h"

#include <boost/crc.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "checkpoint/atomic_file.h"
#include "trainer/tensorboard_event.pb.h"

namespace dyt::trainer {

namespace {

// CRC-32C (Castagnoli, reflected, init and final xor all ones), TFRecord's
// checksum, from Boost.CRC rather than a hand-rolled table.
using Crc32c = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

uint32_t crc32c(const void* data, size_t size) {
  Crc32c crc;
  crc.process_bytes(data, size);
  return crc.checksum();
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;  // TFRecord's mask
}

std::string tfrecord(const std::string& data) {
  std::string out;
  put_le(out, data.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

std::vector<std::string> read_tfrecords(const std::string& image) {
  std::vector<std::string> records;
  size_t at = 0;
  // Length, its CRC and the data's CRC take 16 bytes, so a shorter tail is torn
  // (checking for 12 let `size - at - 16` below wrap around).
  while (image.size() - at >= 16) {
    const char* p = image.data() + at;
    const uint64_t n = get_le(p, 8);
    if (get_le(p + 8, 4) != masked_crc32c(p, 8) || n > image.size() - at - 16) break;
    std::string data(p + 12, n);
    if (get_le(p + 12 + n, 4) != masked_crc32c(data.data(), data.size())) break;
    records.push_back(std::move(data));
    at += 16 + n;
  }
  return records;
}

std::vector<std::pair<std::string, double>> tensorboard_scalars(const StepMetrics& m) {
  std::vector<std::pair<std::string, double>> s = {
      {"train/loss", m.loss},
      {"train/lr", m.lr},
      {"train/grad_norm", m.grad_norm},
      {"train/tokens_per_s", m.tokens_per_s},
      {"train/skipped_steps", static_cast<double>(m.skipped_steps)},
  };
  for (const auto& [name, alpha] : m.alphas) s.emplace_back("alpha/" + name, alpha);
  for (const auto& [group, bytes] : m.comm_bytes) s.emplace_back("comm_bytes/" + group, static_cast<double>(bytes));
  for (const NormHealth& h : m.norm_health) {
    s.emplace_back("saturation/" + h.name, h.saturated);
    s.emplace_back("input_rms/" + h.name, h.input_rms);
  }
  return s;
}

TensorBoardLog::TensorBoardLog(const std::string& dir, int64_t resume_after_step)
    : path_((std::filesystem::path(dir) / kFileName).string()) {
  std::filesystem::create_directories(dir);
  std::string kept;
  if (resume_after_step >= 0) {
    for (const std::string& r : read_tfrecords(read_file(path_))) {
      tensorboard::Event e;
      if (e.ParseFromString(r) && (e.has_file_version() || e.step() <= resume_after_step)) kept += tfrecord(r);
    }
    try {
      checkpoint::write_file_atomically(path_, kept);
    } catch (const checkpoint::AtomicFileError& e) {
      throw std::runtime_error("cannot rewrite TensorBoard event file " + path_ + ": " + e.what());
    }
  }
  file_ = std::fopen(path_.c_str(), resume_after_step >= 0 ? "ab" : "wb");
  if (!file_) throw std::runtime_error("cannot open TensorBoard event file " + path_ + " for writing");
  if (kept.empty()) {
    tensorboard::Event header;
    header.set_wall_time(now_seconds());
    header.set_file_version("brain.Event:2");
    write_record(header.SerializeAsString());
  }
}

TensorBoardLog::~TensorBoardLog() {
  if (file_) std::fclose(file_);
}

void TensorBoardLog::write_record(const std::string& data) {
  // Flushed per record, as metrics.jsonl per line: a killed run keeps every
  // finished step, and a torn last record is dropped on resume.
  const std::string r = tfrecord(data);
  if (std::fwrite(r.data(), 1, r.size(), file_) != r.size() || std::fflush(file_) != 0)
    throw std::runtime_error("cannot write TensorBoard event file " + path_);
}

void TensorBoardLog::write_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
  tensorboard::Event e;
  e.set_wall_time(now_seconds());
  e.set_step(step);
  for (const auto& [tag, value] : scalars) {
    tensorboard::SummaryValue* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));  // NaN stays NaN: TensorBoard shows the gap
  }
  write_record(e.SerializeAsString());
}

void TensorBoardLog::log_step(const StepMetrics& m) { write_scalars(m.step, tensorboard_scalars(m)); }

void TensorBoardLog::log_eval(int64_t step, double val_loss) { write_scalars(step, {{"val/loss", val_loss}}); }

}  // namespace dyt::trainer
