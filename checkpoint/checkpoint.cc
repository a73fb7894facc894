// Saving a checkpoint: the three steps of a collective save and the commit
// protocol (checkpoint.h). Opening one is checkpoint_reader.cc.
#include "checkpoint/checkpoint.h"

#include <google/protobuf/text_format.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

#include "common/error_of.h"
#include "common/shape_text.h"
#include "checkpoint/atomic_file.h"
#include "checkpoint/manifest.pb.h"
#include "checkpoint/step_dirs.h"

namespace dyt::checkpoint {
namespace {

using namespace detail;
namespace gpb = google::protobuf;

constexpr int kFormatVersion = 2;

std::string rank_file_name(int rank) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "rank-%05d.safetensors", rank);
  return buf;
}

// A piece's key in its rank file: "<tensor>@<offset 0>,<offset 1>,...".
std::string piece_key(const PieceRef& p) {
  std::string key = p.tensor + "@";
  for (size_t d = 0; d < p.box.offset.size(); ++d) {
    if (d) key += ',';
    key += std::to_string(p.box.offset[d]);
  }
  return key;
}

// The tensor and offsets of a key, or false when it is not one.
bool parse_key(const std::string& key, std::string* tensor, std::vector<int64_t>* offset) {
  const size_t at = key.rfind('@');
  if (at == std::string::npos || at == 0) return false;
  *tensor = key.substr(0, at);
  offset->clear();
  const std::string rest = key.substr(at + 1);
  if (rest.empty()) return true;  // a tensor of shape []
  size_t i = 0;
  while (i <= rest.size()) {
    const size_t comma = std::min(rest.find(',', i), rest.size());
    if (comma == i || comma - i > 18) return false;
    int64_t v = 0;
    for (size_t k = i; k < comma; ++k) {
      if (rest[k] < '0' || rest[k] > '9') return false;
      v = v * 10 + (rest[k] - '0');
    }
    offset->push_back(v);
    i = comma + 1;
  }
  return true;
}

// The manifest of the pieces the ranks wrote into `dir`, read back from
// their files' headers: what is on disk is what gets listed, and a save
// whose pieces would not load (a gap, an overlap, an unknown tensor) is
// refused here instead of being committed.
manifest::Manifest manifest_from_files(const fs::path& dir, const std::vector<TensorShape>& tensors,
                                       int ranks) {
  const std::string where = (dir / kManifest).string();
  std::map<std::string, size_t> index;
  manifest::Manifest m;
  m.set_format_version(kFormatVersion);
  m.set_ranks(ranks);
  for (const TensorShape& t : tensors) {
    if (!index.emplace(t.name, index.size()).second) fail(where, "tensor '" + t.name + "' given twice");
    manifest::TensorRecord* r = m.add_tensors();
    r->set_name(t.name);
    for (int64_t d : t.shape) r->add_shape(d);
    r->set_dtype("F32");
  }
  std::vector<std::vector<Box>> boxes(tensors.size());
  for (int rank = 0; rank < ranks; ++rank) {
    const std::string file = rank_file_name(rank);
    const std::string path = (dir / file).string();
    const SafetensorsHeader h = read_safetensors_header(path);  // names the file when missing
    for (const auto& [key, e] : h.tensors) {
      std::string name;
      std::vector<int64_t> offset;
      if (!parse_key(key, &name, &offset)) fail(path, "tensor '" + key + "' is not named <tensor>@<offsets>");
      auto it = index.find(name);
      if (it == index.end()) fail(path, "piece '" + key + "' is of tensor '" + name + "', which is not saved");
      if (e.dtype != "F32") fail(path, "piece '" + key + "' is " + e.dtype + ", not F32");
      manifest::Piece* p = m.mutable_tensors(static_cast<int>(it->second))->add_pieces();
      p->set_file(file);
      p->set_key(key);
      for (int64_t o : offset) p->add_offset(o);
      for (int64_t x : e.shape) p->add_extent(x);
      boxes[it->second].push_back({offset, e.shape});
    }
  }
  for (size_t i = 0; i < tensors.size(); ++i)
    if (const std::string problem = tiling_problem(tensors[i].shape, boxes[i]); !problem.empty())
      fail(dir.string(), "the ranks' pieces of tensor '" + tensors[i].name + "' do not tile its shape " +
                             shape_text(tensors[i].shape) + ": " + problem);
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

std::string begin_save(const std::string& root, int64_t step, int keep) {
  if (keep < 1) fail(root, "keep = " + std::to_string(keep) + ": at least 1 checkpoint is kept");
  const fs::path tmp = tmp_dir(root, step);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail(root, "cannot create the checkpoint directory: " + ec.message());
  recover(root);  // also removes a half-written one from a crash at this very step
  if (!fs::create_directory(tmp, ec) || ec) fail(tmp.string(), "cannot create: " + (ec ? ec.message() : "it exists"));
  return tmp.string();
}

void write_rank_file(const std::string& root, int64_t step, int rank, const std::vector<PieceRef>& pieces) {
  const fs::path path = tmp_dir(root, step) / rank_file_name(rank);
  std::vector<TensorSpec> specs;
  specs.reserve(pieces.size());
  for (const PieceRef& p : pieces) {
    if (p.tensor.empty() || p.tensor.find('@') != std::string::npos)
      fail(path.string(), "piece of tensor '" + p.tensor + "': a tensor name is not empty and has no '@'");
    if (p.box.offset.size() != p.box.extent.size())
      fail(path.string(), "piece of tensor '" + p.tensor + "': offset " + shape_text(p.box.offset) +
                              " and extent " + shape_text(p.box.extent) + " differ in rank");
    specs.push_back({piece_key(p), p.box.extent});
  }
  write_safetensors(path.string(), specs, [&](size_t i, std::vector<float>&) { return pieces[i].data; });
}

void abandon_save(const std::string& root, int64_t step) {
  std::error_code ec;
  fs::remove_all(tmp_dir(root, step), ec);
}

std::string commit_save(const std::string& root, const Progress& progress, const std::string& run_config,
                        const std::vector<TensorShape>& tensors, int ranks, int keep) {
  const fs::path final_dir = fs::path(root) / step_dir_name(progress.step);
  const fs::path tmp = tmp_dir(root, progress.step);
  std::error_code ec;
  try {
    manifest::Manifest m = manifest_from_files(tmp, tensors, ranks);
    auto* p = m.mutable_progress();
    p->set_step(progress.step);
    p->set_optimizer_steps(progress.optimizer_steps);
    p->set_skipped_steps(progress.skipped_steps);
    p->set_nonfinite_in_a_row(progress.nonfinite_in_a_row);
    m.set_run_config(run_config);
    gpb::TextFormat::Printer printer;
    printer.SetUseUtf8StringEscaping(true);
    std::string text;
    if (!printer.PrintToString(m, &text)) fail(tmp.string(), "cannot print the manifest");
    write_file_atomically((tmp / kManifest).string(), text);  // fsyncs tmp too
  } catch (const AtomicFileError& e) {
    fs::remove_all(tmp, ec);
    fail(tmp.string(), e.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
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
      fs::remove_all(tmp, ec);
      fail(final_dir.string(), "cannot move the previous checkpoint of this step aside: " + why);
    }
  }
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    const std::string why = ec.message();
    if (!aside.empty()) fs::rename(aside, final_dir, ec);  // put the old one back
    fs::remove_all(tmp, ec);
    fail(final_dir.string(), "cannot commit (rename from " + tmp.filename().string() + "): " + why);
  }
  sync_dir(root);

  // Only now, with the new one durable: drop the old copy of this step and
  // the oldest beyond `keep`.
  if (!aside.empty()) retire(aside);
  const std::vector<std::string> all = list_checkpoints(root);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) retire(all[i]);
  return final_dir.string();
}

std::string save_checkpoint(const std::string& root, const Progress& progress,
                            const std::string& run_config, const std::vector<TensorShape>& tensors,
                            const std::vector<PieceRef>& pieces, int rank, int ranks, int keep,
                            const Agree& agree) {
  const bool zero = rank == 0;
  const auto settle = [&](const std::string& mine, bool abandon) {
    const std::string first = agree(mine);
    if (first.empty()) return;
    if (zero && abandon) abandon_save(root, progress.step);
    throw CheckpointError(first);
  };
  settle(zero ? error_of([&] { begin_save(root, progress.step, keep); }) : "", false);
  settle(error_of([&] { write_rank_file(root, progress.step, rank, pieces); }), true);
  // commit_save cleans up after itself; after its rename the checkpoint stands.
  settle(zero ? error_of([&] { commit_save(root, progress, run_config, tensors, ranks, keep); }) : "", false);
  return (fs::path(root) / step_dir_name(progress.step)).string();
}

std::string save_checkpoint(const std::string& root, const Progress& progress,
                            const std::string& run_config, const std::vector<TensorRef>& tensors,
                            int keep) {
  std::set<std::string> names;
  std::vector<TensorShape> shapes;
  std::vector<PieceRef> pieces;
  for (const TensorRef& t : tensors) {
    if (!names.insert(t.name).second) fail(root, "tensor '" + t.name + "' given twice");
    shapes.push_back({t.name, t.shape});
    pieces.push_back({t.name, {std::vector<int64_t>(t.shape.size(), 0), t.shape}, t.data});
  }
  return save_checkpoint(root, progress, run_config, shapes, pieces, 0, 1, keep,
                         [](const std::string& error) { return error; });
}

}  // namespace dyt::checkpoint
