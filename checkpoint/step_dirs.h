// Inside the checkpoint layer: the names under a checkpoint root and the
// crash-safe moves between them (checkpoint.h tells the protocol), shared by
// the saver and the reader. Not for use outside checkpoint/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/manifest.pb.h"

namespace dyt::checkpoint::detail {

namespace fs = std::filesystem;

inline constexpr const char* kManifest = "manifest.pbtxt";
inline constexpr const char* kAsideInfix = ".aside-";
inline constexpr const char* kTrashInfix = ".trash-";

// Throws CheckpointError("checkpoint '<path>': <what>").
[[noreturn]] void fail(const std::string& path, const std::string& what);

std::string step_dir_name(int64_t step);  // "step-00000100"
fs::path tmp_dir(const std::string& root, int64_t step);  // <root>/step-00000100.tmp

// What a name under the root is: a committed step directory ("step-" and
// digits only), one being written (".tmp"), an old copy moved aside by a
// re-save (".aside-<id>"), one being deleted (".trash-<id>"), or not ours.
enum class Kind { kCommitted, kWriting, kAside, kTrash, kOther };
struct Entry {
  int64_t step = -1;
  Kind kind = Kind::kOther;
  fs::path path;
};
Entry classify(const fs::path& path);
std::vector<Entry> scan(const std::string& root);  // by step, then name

// A name no other save has used: "<step dir><infix><pid>-<ns clock>-<n>".
fs::path unique_sibling(const fs::path& step_dir, const char* infix);
// fsync a directory so a rename in it survives a power cut (best effort).
void sync_dir(const fs::path& dir);
// Deletes a step directory or an aside by renaming it to a trash name first.
void retire(const fs::path& dir);
// Settles what a crashed save left under `root` (the saver only).
void recover(const std::string& root);

// The manifest at `path`, parsed; format_version 1 or 2, with progress.
manifest::Manifest parse_manifest(const std::string& path);

}  // namespace dyt::checkpoint::detail
