#include "checkpoint/checkpoint.h"


#include <fcntl.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "common/shape_text.h"
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

// What a name under the root is: a committed step directory ("step-" and
// digits only), one being written (".tmp"), an old copy moved aside by a
// re-save (".aside-<id>"), one being deleted (".trash-<id>"), or not ours.
enum class Kind { kCommitted, kWriting, kAside, kTrash, kOther };

struct Entry {
  int64_t step = -1;
  Kind kind = Kind::kOther;
  fs::path path;
};

constexpr const char* kAsideInfix = ".aside-";
constexpr const char* kTrashInfix = ".trash-";

Entry classify(const fs::path& path) {
  const std::string name = path.filename().string();
  Entry e;
  e.path = path;
  if (name.compare(0, 5, "step-") != 0) return e;
  size_t i = 5;
  int64_t step = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && i < 5 + 18)
    step = step * 10 + (name[i++] - '0');
  if (i == 5) return e;
  const std::string rest = name.substr(i);
  const auto has_id = [&](const char* infix) {
    const size_t n = std::strlen(infix);
    return rest.size() > n && rest.compare(0, n, infix) == 0;
  };
  if (rest.empty()) e.kind = Kind::kCommitted;
  else if (rest == ".tmp") e.kind = Kind::kWriting;
  else if (has_id(kAsideInfix)) e.kind = Kind::kAside;
  else if (has_id(kTrashInfix)) e.kind = Kind::kTrash;
  else return e;
  e.step = step;
  return e;
}

std::vector<Entry> scan(const std::string& root) {
  std::vector<Entry> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& d : fs::directory_iterator(root, ec)) {
    Entry e = classify(d.path());
    if (e.kind != Kind::kOther && d.is_directory()) out.push_back(std::move(e));
  }
  if (ec) fail(root, "cannot list: " + ec.message());
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    return a.step != b.step ? a.step < b.step : a.path < b.path;
  });
  return out;
}

// A name no other save has used: "<step dir><infix><pid>-<ns clock>".
fs::path unique_sibling(const fs::path& step_dir, const char* infix) {
  static std::atomic<int64_t> counter{0};
  const auto ns = std::chrono::steady_clock::now().time_since_epoch().count();
  return fs::path(step_dir.string() + infix + std::to_string(::getpid()) + "-" + std::to_string(ns) +
                  "-" + std::to_string(counter++));
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

// Deletes a step directory (or an aside) without ever leaving a torn one
// under a name that could be loaded: rename to a trash name, then remove.
// Best effort: what cannot be renamed stays whole, for the next save to try.
void retire(const fs::path& dir) {
  const Entry e = classify(dir);
  std::error_code ec;
  const fs::path trash = unique_sibling(fs::path(dir.parent_path() / step_dir_name(e.step)), kTrashInfix);
  fs::rename(dir, trash, ec);
  if (!ec) fs::remove_all(trash, ec);
}

// Settles what a crashed save left under `root` (called by the saver only):
// an aside whose step has no directory is that step's only whole copy and
// is renamed back; an aside whose step directory exists, .tmp and .trash-
// directories are removed.
void recover(const std::string& root) {
  const std::vector<Entry> entries = scan(root);
  std::set<int64_t> committed;
  for (const Entry& e : entries)
    if (e.kind == Kind::kCommitted) committed.insert(e.step);
  for (const Entry& e : entries) {
    if (e.kind != Kind::kAside || committed.count(e.step)) continue;
    std::error_code ec;
    fs::rename(e.path, e.path.parent_path() / step_dir_name(e.step), ec);
    if (ec) fail(e.path.string(), "cannot restore this copy of step " + std::to_string(e.step) +
                                      " to its name: " + ec.message());
    committed.insert(e.step);
  }
  // Nothing is deleted before the directory entries it depends on are durable.
  sync_dir(root);
  for (const Entry& e : entries) {
    if (e.kind == Kind::kCommitted) continue;
    if (e.kind == Kind::kAside && !fs::exists(e.path)) continue;  // just restored
    std::error_code ec;
    if (e.kind == Kind::kAside) retire(e.path);
    else fs::remove_all(e.path, ec);
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


}  // namespace

std::vector<std::string> list_checkpoints(const std::string& root) {
  const std::vector<Entry> entries = scan(root);
  std::set<int64_t> committed;
  for (const Entry& e : entries)
    if (e.kind == Kind::kCommitted) committed.insert(e.step);
  std::vector<std::string> out;
  int64_t last = -1;
  for (const Entry& e : entries) {  // by step; within a step, the one name first
    const bool whole = e.kind == Kind::kCommitted || (e.kind == Kind::kAside && !committed.count(e.step));
    if (!whole || e.step == last) continue;
    out.push_back(e.path.string());
    last = e.step;
  }
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
  recover(root);  // also removes a half-written one from a crash at this very step
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
    write_file_atomically((tmp_dir / kManifest).string(), text);  // fsyncs tmp_dir too
  } catch (const AtomicFileError& e) {
    fs::remove_all(tmp_dir, ec);
    fail(tmp_dir.string(), e.what());
  } catch (...) {
    fs::remove_all(tmp_dir, ec);
    throw;
  }

  // The commit: the directory's rename. A checkpoint of the same step (saved
  // again after a resume) is first moved aside, never deleted in place: a
  // crash from here on leaves either it (as step-N or as the aside, which
  // the next load takes and the next save restores) or the new one.
  fs::path aside;
  if (fs::exists(final_dir, ec)) {
    aside = unique_sibling(final_dir, kAsideInfix);
    fs::rename(final_dir, aside, ec);
    if (ec) {
      const std::string why = ec.message();
      fs::remove_all(tmp_dir, ec);
      fail(final_dir.string(), "cannot move the previous checkpoint of this step aside: " + why);
    }
  }
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) {
    const std::string why = ec.message();
    if (!aside.empty()) fs::rename(aside, final_dir, ec);  // put the old one back
    fs::remove_all(tmp_dir, ec);
    fail(final_dir.string(), "cannot commit (rename from " + tmp_dir.filename().string() + "): " + why);
  }
  sync_dir(root);

  // Only now, with the new one durable: drop the old copy of this step and
  // the oldest beyond `keep`.
  if (!aside.empty()) retire(aside);
  const std::vector<std::string> all = list_checkpoints(root);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) retire(all[i]);
  return final_dir.string();
}

Checkpoint load_checkpoint(const std::string& dir) {
  Checkpoint ck;
  ck.path = dir;
  const std::string manifest_path = (fs::path(ck.path) / kManifest).string();
  const Manifest m = parse_manifest(manifest_path);

  const int64_t dir_step = classify(fs::path(ck.path)).step;
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

std::optional<Checkpoint> load_latest_checkpoint(const std::string& root) {
  const std::vector<std::string> all = list_checkpoints(root);
  if (all.empty()) return std::nullopt;
  try {
    return load_checkpoint(all.back());
  } catch (const CheckpointError& damaged) {
    // Name the way back without taking it: continuing from an older state
    // silently would redo steps (and their metrics) the user believes done.
    for (size_t i = all.size() - 1; i-- > 0;) {
      std::optional<Checkpoint> older;
      try {
        older = load_checkpoint(all[i]);
      } catch (const CheckpointError&) {
        continue;  // damaged too: look further back
      }
      throw CheckpointError(std::string(damaged.what()) + "; the newest intact checkpoint before it is '" +
                            all[i] + "' (step " + std::to_string(older->progress.step) +
                            "): to continue from there, move '" + all.back() + "' out of '" + root + "'");
    }
    throw CheckpointError(std::string(damaged.what()) + "; there is no intact checkpoint before it in '" +
                          root + "'");
  }
}

}  // namespace dyt::checkpoint
