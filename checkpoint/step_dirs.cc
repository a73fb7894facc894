#include "checkpoint/step_dirs.h"

#include <fcntl.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "checkpoint/safetensors.h"

namespace dyt::checkpoint::detail {
namespace {

namespace gpb = google::protobuf;

class LineErrors : public gpb::io::ErrorCollector {
 public:
  void AddError(int line, gpb::io::ColumnNumber column, const std::string& message) override {
    if (!text.empty()) text += "; ";
    text += "line " + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + message;
  }
  std::string text;
};

}  // namespace

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw CheckpointError("checkpoint '" + path + "': " + what);
}

fs::path tmp_dir(const std::string& root, int64_t step) {
  return fs::path(root) / (step_dir_name(step) + ".tmp");
}

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

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

manifest::Manifest parse_manifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot read the manifest (the checkpoint is incomplete)");
  std::stringstream text;
  text << in.rdbuf();
  manifest::Manifest m;
  gpb::TextFormat::Parser parser;
  LineErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text.str(), &m)) {
    fail(path, errors.text.empty() ? "does not parse as a manifest" : errors.text);
  }
  if (m.format_version() != 1 && m.format_version() != 2) {
    fail(path, "format_version " + std::to_string(m.format_version()) +
                   " is not one this build reads (1 or 2)");
  }
  if (!m.has_progress()) fail(path, "no progress record");
  return m;
}


}  // namespace dyt::checkpoint::detail
