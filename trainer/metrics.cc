#include "trainer/metrics.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "checkpoint/atomic_file.h"

namespace dyt::trainer {

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);  // round-trips a double exactly
  return buf;
}

namespace {

// The step a metrics line is about ({"step": N, ...}), or -1.
int64_t line_step(const std::string& line) {
  const std::string key = "{\"step\": ";
  if (line.compare(0, key.size(), key) != 0) return -1;
  char* end = nullptr;
  const long long step = std::strtoll(line.c_str() + key.size(), &end, 10);
  if (end == line.c_str() + key.size() || (*end != ',' && *end != '}') || line.back() != '}') return -1;
  return step;
}

// Keeps the lines of `path` about steps up to `last_step`: those after it
// were logged by a run that went on past its last checkpoint and will be
// logged again. A last line without its newline was cut short by a crash
// and goes too. Rewritten all or nothing.
void truncate_after(const std::string& path, int64_t last_step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;  // no metrics yet
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string kept;
  for (size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) {
    const std::string line = text.substr(at, nl - at);
    if (line_step(line) >= 0 && line_step(line) <= last_step) kept += line + "\n";
  }
  try {
    checkpoint::write_file_atomically(path, kept);
  } catch (const checkpoint::AtomicFileError& e) {
    throw std::runtime_error("cannot rewrite metrics file " + path + ": " + e.what());
  }
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, int64_t resume_after_step) : path_(path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  if (resume_after_step >= 0) truncate_after(path, resume_after_step);
  file_ = std::fopen(path.c_str(), resume_after_step >= 0 ? "a" : "w");
  if (!file_) throw std::runtime_error("cannot open metrics file " + path + " for writing");
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write_line(const std::string& line) {
  // Flushed per line so a crashed or killed run keeps every finished step.
  if (std::fputs(line.c_str(), file_) < 0 || std::fputc('\n', file_) == EOF || std::fflush(file_) != 0)
    throw std::runtime_error("cannot write metrics file " + path_);
}

void MetricsLog::log_step(const StepMetrics& m) {
  std::string s = "{\"step\": " + std::to_string(m.step) + ", \"loss\": " + json_number(m.loss) +
                  ", \"lr\": " + json_number(m.lr) + ", \"grad_norm\": " + json_number(m.grad_norm) +
                  ", \"tokens_per_s\": " + json_number(m.tokens_per_s) +
                  ", \"skipped_steps\": " + std::to_string(m.skipped_steps) +
                  ", \"skipped\": " + (m.skipped ? "true" : "false") + ", \"alpha\": {";
  for (size_t i = 0; i < m.alphas.size(); ++i)
    s += (i ? ", \"" : "\"") + m.alphas[i].first + "\": " + json_number(m.alphas[i].second);
  s += "}";
  if (!m.comm_bytes.empty()) {
    s += ", \"comm_bytes\": {";
    for (size_t i = 0; i < m.comm_bytes.size(); ++i)
      s += (i ? ", \"" : "\"") + m.comm_bytes[i].first + "\": " + std::to_string(m.comm_bytes[i].second);
    s += "}";
  }
  if (m.peak_memory_bytes > 0) s += ", \"peak_memory_bytes\": " + std::to_string(m.peak_memory_bytes);
  if (m.mfu >= 0) s += ", \"mfu\": " + json_number(m.mfu);
  if (!m.norm_health.empty()) {
    std::string sat = ", \"saturation\": {", rms = ", \"input_rms\": {";
    for (size_t i = 0; i < m.norm_health.size(); ++i) {
      const NormHealth& h = m.norm_health[i];
      sat += (i ? ", \"" : "\"") + h.name + "\": " + json_number(h.saturated);
      rms += (i ? ", \"" : "\"") + h.name + "\": " + json_number(h.input_rms);
    }
    s += sat + "}" + rms + "}";
  }
  write_line(s + "}");
}

void MetricsLog::log_eval(int64_t step, double val_loss) {
  write_line("{\"step\": " + std::to_string(step) + ", \"val_loss\": " + json_number(val_loss) + "}");
}

std::string progress_line(const StepMetrics& m, int64_t total_steps, double eta_seconds) {
  const int64_t eta = std::isfinite(eta_seconds) ? static_cast<int64_t>(eta_seconds) : 0;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "step %lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %.1fk tok/s | eta %lldm%02llds%s",
                static_cast<long long>(m.step), static_cast<long long>(total_steps), m.loss, m.lr,
                m.grad_norm, m.tokens_per_s / 1000.0, static_cast<long long>(eta / 60),
                static_cast<long long>(eta % 60),
                m.skipped ? " | SKIPPED (non-finite)" : "");
  std::string line = buf;
  if (m.mfu >= 0) {
    std::snprintf(buf, sizeof buf, " | mfu %.1f%%", 100.0 * m.mfu);
    line += buf;
  }
  if (m.peak_memory_bytes > 0) {
    std::snprintf(buf, sizeof buf, " | mem %.2f GiB", static_cast<double>(m.peak_memory_bytes) / (1 << 30));
    line += buf;
  }
  const std::string warning = saturation_warning(m.norm_health);
  return warning.empty() ? line : line + " | WARNING " + warning;
}

}  // namespace dyt::trainer
