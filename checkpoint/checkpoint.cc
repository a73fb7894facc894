#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "checkpoint/atomic_file.h"
#include "checkpoint/manifest.pb.h"

namespace dyt::checkpoint {
namespace {

namespace fs = std::filesystem;
namespace gpb = google::protobuf;
using manifest::Manifest;
using manifest::TensorRecord;

constexpr int kFormatVersion = 1;
constexpr const char* kManifest = "manifest.pbtxt";
constexpr const char* kTensorFile = "tensors.safetensors";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw CheckpointError("checkpoint '" + path + "': " + what);
}

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

// The step of a committed checkpoint directory name ("step-" and digits
// only), or -1.
int64_t step_of(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0 || name.size() > 5 + 18) return -1;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// fsync a directory so a rename in it survives a power cut (best effort: some
// file systems refuse, and the files themselves are already synced).
void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

class LineErrors : public gpb::io::ErrorCollector {
 public:
  void AddError(int line, gpb::io::ColumnNumber column, const std::string& message) override {
    if (!text.empty()) text += "; ";
    text += "line " + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + message;
  }
  std::string text;
};

Manifest parse_manifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot read the manifest (the checkpoint is incomplete)");
  std::stringstream text;
  text << in.rdbuf();
  Manifest m;
  gpb::TextFormat::Parser parser;
  LineErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text.str(), &m)) {
    fail(path, errors.text.empty() ? "does not parse as a manifest" : errors.text);
  }
  if (m.format_version() != kFormatVersion) {
    fail(path, "format_version " + std::to_string(m.format_version()) + " is not " +
                   std::to_string(kFormatVersion) + ", the one this build reads");
  }
  if (!m.has_progress()) fail(path, "no progress record");
  return m;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int64_t step = step_of(e.path().filename().string());
    if (step >= 0 && e.is_directory()) found.emplace_back(step, e.path().string());
  }
  if (ec) fail(root, "cannot list: " + ec.message());
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string save_checkpoint(const std::string& root, const Progress& progress,
                            const std::string& run_config, const std::vector<TensorRef>& tensors,
                            int keep) {
  if (keep < 1) fail(root, "keep = " + std::to_string(keep) + ": at least 1 checkpoint is kept");
  std::set<std::string> names;
  for (const TensorRef& t : tensors)
    if (!names.insert(t.name).second) fail(root, "tensor '" + t.name + "' given twice");

  const fs::path final_dir = fs::path(root) / step_dir_name(progress.step);
  const fs::path tmp_dir = fs::path(final_dir.string() + ".tmp");
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail(root, "cannot create the checkpoint directory: " + ec.message());
  fs::remove_all(tmp_dir, ec);  // a half-written one from a crash at this very step
  if (!fs::create_directory(tmp_dir, ec) || ec)
    fail(tmp_dir.string(), "cannot create: " + (ec ? ec.message() : "it exists"));
  try {
    write_safetensors((tmp_dir / kTensorFile).string(), tensors);

    Manifest m;
    m.set_format_version(kFormatVersion);
    auto* p = m.mutable_progress();
    p->set_step(progress.step);
    p->set_optimizer_steps(progress.optimizer_steps);
    p->set_skipped_steps(progress.skipped_steps);
    p->set_nonfinite_in_a_row(progress.nonfinite_in_a_row);
    m.set_run_config(run_config);
    for (const TensorRef& t : tensors) {
      TensorRecord* r = m.add_tensors();
      r->set_name(t.name);
      for (int64_t d : t.shape) r->add_shape(d);
      r->set_dtype("F32");
      r->set_file(kTensorFile);
    }
    gpb::TextFormat::Printer printer;
    printer.SetUseUtf8StringEscaping(true);
    std::string text;
    if (!printer.PrintToString(m, &text)) fail(tmp_dir.string(), "cannot print the manifest");
    AtomicFile out((tmp_dir / kManifest).string());
    out.write(text.data(), text.size());
    out.commit();
  } catch (const AtomicFileError& e) {
    fs::remove_all(tmp_dir, ec);
    fail(tmp_dir.string(), e.what());
  } catch (...) {
    fs::remove_all(tmp_dir, ec);
    throw;
  }

  // The commit: the directory's rename. A checkpoint of the same step (saved
  // again after a resume) is replaced.
  fs::remove_all(final_dir, ec);
  if (ec) fail(final_dir.string(), "cannot replace the previous checkpoint of this step: " + ec.message());
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) {
    fs::remove_all(tmp_dir, ec);
    fail(final_dir.string(), "cannot commit (rename from " + tmp_dir.filename().string() + ")");
  }
  sync_dir(root);

  // Only now, with the new one durable: drop the oldest beyond `keep`, and
  // half-written directories of other steps left by crashed writers.
  const std::vector<std::string> all = list_checkpoints(root);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i], ec);
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 4 && name.ends_with(".tmp") && step_of(name.substr(0, name.size() - 4)) >= 0)
      fs::remove_all(e.path(), ec);
  }
  return final_dir.string();
}

std::optional<Checkpoint> load_latest_checkpoint(const std::string& root) {
  const std::vector<std::string> all = list_checkpoints(root);
  if (all.empty()) return std::nullopt;
  Checkpoint ck;
  ck.path = all.back();
  const std::string manifest_path = (fs::path(ck.path) / kManifest).string();
  const Manifest m = parse_manifest(manifest_path);

  const int64_t dir_step = step_of(fs::path(ck.path).filename().string());
  const auto& p = m.progress();
  if (p.step() != dir_step)
    fail(manifest_path, "progress.step " + std::to_string(p.step()) + " does not match the directory");
  // step - skipped_steps, not optimizer_steps + skipped_steps: the sum of two
  // hostile counts can overflow int64 (undefined behaviour, reported by UBSan
  // on tests/fuzz/corpus/manifest/regress-progress-overflow); the difference
  // of two non-negative ones cannot.
  if (p.optimizer_steps() < 0 || p.skipped_steps() < 0 || p.nonfinite_in_a_row() < 0 ||
      p.optimizer_steps() != p.step() - p.skipped_steps())
    fail(manifest_path, "progress counts do not add up (optimizer_steps + skipped_steps != step)");
  ck.progress = {p.step(), p.optimizer_steps(), p.skipped_steps(), p.nonfinite_in_a_row()};
  ck.run_config = m.run_config();

  std::map<std::string, std::map<std::string, LoadedTensor>> files;
  for (const TensorRecord& r : m.tensors()) {
    const std::string& f = r.file();
    if (r.name().empty()) fail(manifest_path, "a tensor record has no name");
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
      fail(manifest_path, "tensor '" + r.name() + "': file '" + f + "' is not a file name in the checkpoint");
    if (r.dtype() != "F32")
      fail(manifest_path, "tensor '" + r.name() + "': dtype '" + r.dtype() + "' (this build reads F32)");
    if (!files.count(f)) files[f] = read_safetensors((fs::path(ck.path) / f).string());
    auto& in_file = files[f];
    auto it = in_file.find(r.name());
    const std::string where = (fs::path(ck.path) / f).string();
    if (it == in_file.end()) fail(where, "has no tensor '" + r.name() + "', which the manifest lists");
    const std::vector<int64_t> shape(r.shape().begin(), r.shape().end());
    if (it->second.shape != shape)
      fail(where, "tensor '" + r.name() + "' has shape " + shape_text(it->second.shape) +
                      ", the manifest says " + shape_text(shape));
    if (!ck.tensors.emplace(r.name(), std::move(it->second)).second)
      fail(manifest_path, "tensor '" + r.name() + "' listed twice");
    in_file.erase(it);
  }
  for (const auto& [f, rest] : files)
    if (!rest.empty())
      fail((fs::path(ck.path) / f).string(),
           "holds tensor '" + rest.begin()->first + "', which the manifest does not list");
  return ck;
}

}  // namespace dyt::checkpoint
