#include "trainer/param_store.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dyt::trainer {

using kernels::DType;
using kernels::Tensor;

namespace {

// The tensors the model reads in fp32 whatever the precision (model.cc).
bool read_in_f32(const ParamEntry& e) {
  return e.kind == ParamKind::NormWeight || e.kind == ParamKind::NormAlpha || e.kind == ParamKind::NormBias ||
         e.kind == ParamKind::EmbedScale;
}

// Each side tensor at a multiple of kParamAlign, as in the flat buffer: the
// kernels that read them take the same (vectorised) paths, hence the same
// bits, as from the master.
std::vector<SidePiece> side_layout(const ParamLayout& layout, int64_t* total) {
  std::vector<SidePiece> out;
  int64_t side = 0;
  for (const ParamEntry& e : layout.entries())
    if (read_in_f32(e)) {
      out.push_back({e.offset, side, e.numel});
      side += (e.numel + kParamAlign - 1) / kParamAlign * kParamAlign;
    }
  *total = side;
  return out;
}

}  // namespace

int64_t side_elements(const ParamLayout& layout) {
  int64_t n = 0;
  side_layout(layout, &n);
  return n;
}

ParamStore::ParamStore(const ParamLayout& layout, kernels::Backend& backend, DType compute_dtype, DpShard shard)
    : layout_(layout), backend_(backend), compute_dtype_(compute_dtype) {
  if (compute_dtype != DType::F32 && compute_dtype != DType::BF16)
    throw std::invalid_argument("ParamStore: compute dtype must be F32 or BF16");
  if (shard.dp < 1 || shard.rank < 0 || shard.rank >= shard.dp)
    throw std::invalid_argument("ParamStore: dp rank " + std::to_string(shard.rank) + " of " +
                                std::to_string(shard.dp) + " is not a rank of a dp group");
  const int64_t n = layout.total(), c = dp_chunk(n, shard.dp), padded = shard.dp * c;
  const bool bf16 = compute_dtype == DType::BF16;
  // All zero-filled: the padding stays zero.
  grads_ = backend.allocate(DType::F32, padded);
  if (bf16 && shard.dp > 1) {
    // The master's range in a buffer of one chunk (set_master stages the
    // whole vector through it), the side tensors whole.
    master_range_ = dp_partition(n, shard.dp, shard.rank);
    master_ = backend.allocate(DType::F32, c);
    int64_t side = 0;
    side_pieces_ = side_layout(layout, &side);
    side_ = backend.allocate(DType::F32, side);
  } else {
    master_range_ = {0, n};
    master_ = backend.allocate(DType::F32, padded);
  }
  if (bf16) work_ = backend.allocate(DType::BF16, master_sharded() ? padded : n);
}

Tensor ParamStore::master_padded() const {
  if (master_sharded())
    throw std::logic_error("ParamStore::master_padded: the master is sharded over dp");
  return master_.flat();
}

Tensor ParamStore::view(const kernels::Buffer& b, const std::string& name, int64_t offset) const {
  const ParamEntry& e = layout_.at(name);
  switch (e.shape.size()) {
    case 1: return b.view({e.shape[0]}, offset);
    case 2: return b.view({e.shape[0], e.shape[1]}, offset);
    default: throw std::logic_error("ParamStore: tensor " + name + " has rank " +
                                    std::to_string(e.shape.size()));
  }
}

Tensor ParamStore::weight(const std::string& name) const {
  return view(has_work_copy() ? work_ : master_, name, layout_.at(name).offset);
}

Tensor ParamStore::f32_param(const std::string& name) const {
  const int64_t offset = layout_.at(name).offset;
  if (!master_sharded()) return view(master_, name, offset);
  const auto p = std::lower_bound(side_pieces_.begin(), side_pieces_.end(), offset,
                                  [](const SidePiece& s, int64_t o) { return s.offset < o; });
  if (p == side_pieces_.end() || p->offset != offset)
    throw std::logic_error("ParamStore::f32_param: " + name + " is not read in fp32 (the master is sharded)");
  return view(side_, name, p->side);
}

Tensor ParamStore::grad(const std::string& name) const { return view(grads_, name, layout_.at(name).offset); }

void ParamStore::side_from_master() {
  const FlatRange r = master_range_;
  for (const SidePiece& p : side_pieces_) {
    const int64_t b = std::max(p.offset, r.begin), e = std::min(p.offset + p.numel, r.end);
    if (e > b)  // F32 → F32: a copy on the device
      backend_.convert(kernels::slice(master(), b - r.begin, e - b), kernels::slice(side(), p.side + (b - p.offset), e - b));
  }
}

void ParamStore::set_master(const float* host) {
  if (!master_sharded()) {
    backend_.upload(host, master());
    refresh_work();
    return;
  }
  // The whole working copy, rounded on the device chunk by chunk through
  // the master's buffer: the same rounding as AdamW's (and refresh_work's).
  const int64_t c = master_.numel();
  for (int64_t b = 0; b < total(); b += c) {
    const Tensor stage = kernels::slice(master_.flat(), 0, std::min(c, total() - b));
    backend_.upload(host + b, stage);
    backend_.convert(stage, kernels::slice(work_.flat(), b, stage.numel()));
  }
  backend_.upload(host + master_range_.begin, master());
  std::vector<float> side_host(static_cast<size_t>(side_.numel()));
  for (const SidePiece& p : side_pieces_) std::copy_n(host + p.offset, p.numel, side_host.begin() + p.side);
  backend_.upload(side_host.data(), side());
}

std::vector<float> ParamStore::master_to_host() const {
  if (master_sharded())
    throw std::logic_error("ParamStore::master_to_host: the master is sharded over dp (this rank holds [" +
                           std::to_string(master_range_.begin) + ", " + std::to_string(master_range_.end) +
                           ")): gather it (gather_master) or read the range");
  return master_range_to_host();
}

std::vector<float> ParamStore::master_range_to_host() const {
  std::vector<float> out(static_cast<size_t>(master_range_.size()));
  backend_.download(master(), out.data());
  return out;
}

std::vector<float> ParamStore::grads_to_host() const {
  std::vector<float> out(static_cast<size_t>(total()));
  backend_.download(grads(), out.data());
  return out;
}

std::vector<uint16_t> ParamStore::work_to_host() const {
  if (!has_work_copy()) throw std::logic_error("ParamStore::work_to_host: no BF16 working copy");
  std::vector<uint16_t> out(static_cast<size_t>(total()));
  backend_.download(work(), out.data());
  return out;
}

void ParamStore::refresh_work() {
  if (master_sharded())
    throw std::logic_error("ParamStore::refresh_work: the master is sharded; the working copy is gathered");
  if (has_work_copy()) backend_.convert(master(), work());
}

void ParamStore::zero_grads() { backend_.zero(grads_padded()); }

float* ParamStore::host_master() const {
  if (backend_.device() != kernels::Device::CPU)
    throw std::logic_error("ParamStore::host_master: the parameters are not in host memory");
  if (master_sharded()) throw std::logic_error("ParamStore::host_master: the master is sharded over dp");
  return master().f32();
}

float* ParamStore::host_grads() const {
  if (backend_.device() != kernels::Device::CPU)
    throw std::logic_error("ParamStore::host_grads: the gradients are not in host memory");
  return grads().f32();
}

}  // namespace dyt::trainer
