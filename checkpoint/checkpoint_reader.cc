// Opening a checkpoint and reading boxes of its tensors (checkpoint.h).
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "checkpoint/checkpoint.h"
#include "checkpoint/manifest.pb.h"
#include "checkpoint/step_dirs.h"
#include "common/shape_text.h"

namespace dyt::checkpoint {

struct Checkpoint::Stored {
  struct Piece {
    Box box;
    const char* bytes = nullptr;  // in a mapped file
  };
  std::string manifest_path;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, std::vector<Piece>> pieces;
  std::map<std::string, std::unique_ptr<MappedSafetensors>> files;
};

namespace {

using namespace detail;

bool plain_file_name(const std::string& f) {
  return !f.empty() && f.find('/') == std::string::npos && f != "." && f != "..";
}

}  // namespace

const std::map<std::string, std::vector<int64_t>>& Checkpoint::shapes() const { return stored_->shapes; }

size_t Checkpoint::files() const { return stored_->files.size(); }

const std::vector<int64_t>& Checkpoint::shape(const std::string& name) const {
  auto it = stored_->shapes.find(name);
  if (it == stored_->shapes.end()) fail(stored_->manifest_path, "has no tensor '" + name + "'");
  return it->second;
}

void Checkpoint::read(const std::string& name, const Box& box, float* out) const {
  const std::vector<int64_t>& s = shape(name);
  bool inside = box.offset.size() == s.size() && box.extent.size() == s.size();
  for (size_t d = 0; inside && d < s.size(); ++d)
    inside = box.offset[d] >= 0 && box.extent[d] >= 0 && box.offset[d] <= s[d] - box.extent[d];
  if (!inside)
    fail(path, "reading tensor '" + name + "': the box at offset " + shape_text(box.offset) + " of extent " +
                   shape_text(box.extent) + " does not lie inside its shape " + shape_text(s));
  int64_t wanted = 1, copied = 0;
  for (int64_t e : box.extent) wanted *= e;
  if (wanted == 0) return;
  for (const Stored::Piece& p : stored_->pieces.at(name)) copied += copy_intersection(p.box, p.bytes, box, out);
  if (copied != wanted)  // cannot happen once the pieces tile the tensor (checked at open)
    fail(path, "reading tensor '" + name + "': the pieces gave " + std::to_string(copied) + " of " +
                   std::to_string(wanted) + " elements");
}

std::vector<float> Checkpoint::read_all(const std::string& name) const {
  const std::vector<int64_t>& s = shape(name);
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  std::vector<float> out(static_cast<size_t>(n));
  read(name, {std::vector<int64_t>(s.size(), 0), s}, out.data());
  return out;
}

Checkpoint load_checkpoint(const std::string& dir) {
  Checkpoint ck;
  ck.path = dir;
  auto stored = std::make_shared<Checkpoint::Stored>();
  const std::string manifest_path = (fs::path(dir) / kManifest).string();
  stored->manifest_path = manifest_path;
  const manifest::Manifest m = parse_manifest(manifest_path);
  ck.format_version = m.format_version();

  const int64_t dir_step = classify(fs::path(dir)).step;
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

  // Every piece: a plain file name, a box; the boxes of a tensor tile it.
  std::set<std::pair<std::string, std::string>> used;  // (file, key)
  for (const manifest::TensorRecord& r : m.tensors()) {
    const std::string& name = r.name();
    if (name.empty()) fail(manifest_path, "a tensor record has no name");
    const std::string what = "tensor '" + name + "'";
    if (r.dtype() != "F32") fail(manifest_path, what + ": dtype '" + r.dtype() + "' (this build reads F32)");
    const std::vector<int64_t> shape(r.shape().begin(), r.shape().end());
    if (!stored->shapes.emplace(name, shape).second) fail(manifest_path, what + " listed twice");
    std::vector<manifest::Piece> pieces(r.pieces().begin(), r.pieces().end());
    if (m.format_version() == 1) {  // the whole tensor under its name in `file`
      if (!pieces.empty()) fail(manifest_path, what + ": pieces in a format_version 1 manifest");
      manifest::Piece whole;
      whole.set_file(r.file());
      whole.set_key(name);
      for (int64_t d : shape) {
        whole.add_offset(0);
        whole.add_extent(d);
      }
      pieces.push_back(whole);
    } else if (r.has_file()) {
      fail(manifest_path, what + ": field 'file' belongs to format_version 1; version 2 lists pieces");
    }
    std::vector<Box> boxes;
    for (size_t i = 0; i < pieces.size(); ++i) {
      const manifest::Piece& piece = pieces[i];
      const std::string pw = what + " piece " + std::to_string(i);
      if (!plain_file_name(piece.file()))
        fail(manifest_path, pw + ": file '" + piece.file() + "' is not a file name in the checkpoint");
      if (!used.emplace(piece.file(), piece.key()).second)
        fail(manifest_path, pw + ": key '" + piece.key() + "' of file '" + piece.file() + "' listed twice");
      boxes.push_back({{piece.offset().begin(), piece.offset().end()}, {piece.extent().begin(), piece.extent().end()}});
    }
    if (const std::string problem = tiling_problem(shape, boxes); !problem.empty())
      fail(manifest_path, what + " of shape " + shape_text(shape) + ": " + problem);

    // Each piece's file is there and holds it at the manifest's extent.
    std::vector<Checkpoint::Stored::Piece>& out = stored->pieces[name];
    for (size_t i = 0; i < pieces.size(); ++i) {
      const manifest::Piece& piece = pieces[i];
      auto& file = stored->files[piece.file()];
      if (!file) file = std::make_unique<MappedSafetensors>((fs::path(dir) / piece.file()).string());
      const auto& tensors = file->header().tensors;
      auto it = tensors.find(piece.key());
      if (it == tensors.end())
        fail(file->path(), "has no tensor '" + piece.key() + "', which the manifest lists (" + what + ")");
      if (it->second.shape != boxes[i].extent)
        fail(file->path(), "tensor '" + piece.key() + "' has shape " + shape_text(it->second.shape) +
                               ", the manifest says extent " + shape_text(boxes[i].extent) + " (" + what + ")");
      out.push_back({boxes[i], file->f32_bytes(piece.key())});
    }
  }
  // A checkpoint always holds parameters: a manifest that lists nothing
  // (cut short, or its records commented out) is damage, not an empty model.
  if (stored->shapes.empty()) fail(manifest_path, "lists no tensors");
  // Nothing in the directory or the files that the manifest does not know of:
  // a rank file it forgets would otherwise be dropped without a word.
  std::error_code listing;
  for (const auto& entry : fs::directory_iterator(dir, listing))
    if (entry.path().extension() == ".safetensors" && !stored->files.count(entry.path().filename().string()))
      fail(entry.path().string(), "is in the checkpoint directory but the manifest lists none of its tensors");
  if (listing) fail(dir, "cannot be listed: " + listing.message());
  for (const auto& [f, file] : stored->files)
    for (const auto& [key, e] : file->header().tensors)
      if (!used.count({f, key}))
        fail(file->path(), "holds tensor '" + key + "', which the manifest does not list");
  ck.stored_ = std::move(stored);
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
