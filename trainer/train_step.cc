#include "trainer/train_step.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "trainer/grad_norm.h"
#include "trainer/norm_partition.h"

namespace dyt::trainer {
namespace {

parallel::Communicator& group(const std::unique_ptr<parallel::Communicator>& c, const char* name) {
  if (!c) throw std::invalid_argument(std::string("TrainStep: the ") + name + " group is missing");
  return *c;
}

// A device communicator must be the host group's twin (same ranks, same
// order) on a device backend.
parallel::Communicator* device_group(parallel::Communicator* d, const parallel::Communicator& host,
                                     const kernels::Backend& backend, const char* name) {
  if (!d) return nullptr;
  if (!d->device_buffers() || d->size() != host.size() || d->rank() != host.rank() ||
      backend.device() == kernels::Device::CPU)
    throw std::invalid_argument(std::string("TrainStep: the ") + name +
                                " group's device communicator must take device buffers, hold the host "
                                "group's ranks in its order and serve a device backend");
  return d;
}

parallel::CommStats plus(parallel::CommStats a, const parallel::Communicator* b) {
  if (b)
    for (int k = 0; k < parallel::kCollectiveKinds; ++k) a.kind[k] += b->stats().kind[k];
  return a;
}

std::string range_text(FlatRange r) {
  return "[" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ")";
}

}  // namespace

TrainStep::TrainStep(ModelInstance& model, AdamW& optimizer, const data::BatchSampler& sampler,
                     const parallel::Groups& groups, const config::TrainConfig& t, bool zero1,
                     DeviceGroups device, GradOverlap overlap)
    : model_(model),
      optimizer_(optimizer),
      sampler_(sampler),
      dp_(group(groups.dp, "dp")),
      tp_(group(groups.tp, "tp")),
      dp_device_(device_group(device.dp, dp_, model.backend(), "dp")),
      tp_device_(device_group(device.tp, tp_, model.backend(), "tp")),
      dp_tensor_(dp_device_ ? *dp_device_ : dp_),
      dp_stream_(device.dp_stream),
      tp_sync_(model.layout(), tp_, model.tensor_parallel().sequence_parallel, tp_device_),
      zero1_(zero1),
      // The MPI and single-process communicators take host memory: a device
      // backend's buffers are staged through the host for them. A
      // communicator of device buffers (NCCL, Communicator::device_buffers())
      // takes the backend's buffers directly, the chunks copied on the
      // device (the CPU's branches below copy on the host).
      staged_(model.backend().device() != kernels::Device::CPU && !dp_device_),
      on_device_(dp_device_ != nullptr),
      grad_clip_(t.grad_clip()),
      tokens_per_step_(sampler.global_batch_samples() * t.seq_len()),
      tokens_(static_cast<size_t>(model.batch() * model.seq_len())),
      targets_(tokens_.size()) {
  const ParamStore& p = model.params();
  const int64_t n = p.total();
  const int dp = dp_.size();
  range_ = zero1 ? dp_partition(n, dp, dp_.rank()) : FlatRange{0, n};
  if (dp_stream_ && !dp_device_)
    throw std::invalid_argument("TrainStep: a dp stream without a device dp communicator to run on it");
  if (overlap.on && dp > 1) {
    plan_ = plan_grad_buckets(model.layout(), model.dims().layers, dp, zero1, overlap.bucket_elements);
    on_stage_ = [this](int stage) { stage_done(stage); };
  }
  if (optimizer.range().begin != range_.begin || optimizer.range().end != range_.end)
    throw std::invalid_argument("TrainStep: the optimizer holds " + range_text(optimizer.range()) +
                                ", this rank updates " + range_text(range_) +
                                (zero1 ? " (its ZeRO-1 dp_partition)" : " (everything)"));
  if (zero1) {
    chunk_ = dp_chunk(n, dp);
    if (p.padded_total() < dp * chunk_)
      throw std::invalid_argument("TrainStep: ZeRO-1 over " + std::to_string(dp) +
                                  " ranks needs the parameter store padded to " +
                                  std::to_string(dp * chunk_) + " elements, it has " +
                                  std::to_string(p.padded_total()));
    // Under BF16 the master is sharded over this group, the range ours.
    const bool shard_master = p.has_work_copy() && dp > 1;
    if (p.master_sharded() != shard_master ||
        (shard_master && (p.master_range().begin != range_.begin || p.master_range().end != range_.end)))
      throw std::invalid_argument("TrainStep: ZeRO-1 over " + std::to_string(dp) + " ranks " +
                                  (shard_master ? "under BF16 needs the master sharded to " + range_text(range_)
                                                : std::string("under FP32 needs the master whole")) +
                                  ", the store holds " + range_text(p.master_range()));
    kernels::Backend& be = model.backend();
    if (dp > 1) {
      shard_.resize(static_cast<size_t>(chunk_));
      if (staged_) host_grads_.resize(static_cast<size_t>(dp * chunk_));
      if (on_device_) shard_dev_ = be.allocate(kernels::DType::F32, chunk_);
    }
    if (shard_master) {
      shard16_.resize(static_cast<size_t>(chunk_));
      if (staged_) host16_.resize(static_cast<size_t>(dp * chunk_));
      if (on_device_) shard16_dev_ = be.allocate(kernels::DType::BF16, chunk_);
      const int64_t S = p.side().numel();
      side_host_.resize(static_cast<size_t>(S));
      side_all_.resize(static_cast<size_t>(dp * S));
      if (on_device_) side_all_dev_ = be.allocate(kernels::DType::F32, std::max<int64_t>(1, dp * S));
      // Element f of the flat buffer is owned by rank f / chunk.
      for (const SidePiece& piece : p.side_pieces())
        for (int64_t f = piece.offset, end = piece.offset + piece.numel; f < end;) {
          const int64_t k = f / chunk_, e = std::min(end, (k + 1) * chunk_);
          side_owners_.push_back({static_cast<int>(k), piece.side + (f - piece.offset), piece.side + (e - piece.offset)});
          f = e;
        }
    }
  } else if (staged_ && dp > 1) {
    host_grads_.resize(static_cast<size_t>(n));
  }

  // The norm's pieces: every partition's without ZeRO-1 (every rank holds
  // every reduced gradient), this rank's alone with it.
  const std::vector<FlatRange> runs = owned_runs(model.layout());
  const int first = zero1 ? dp_.rank() : 0, last = zero1 ? dp_.rank() + 1 : dp;
  piece_start_.push_back(0);
  for (int k = first; k < last; ++k) {
    for (const FlatRange& piece : pieces_in(runs, dp_partition(n, dp, k))) pieces_.push_back(piece);
    piece_start_.push_back(pieces_.size());
  }
  piece_sums_ = model.backend().allocate(kernels::DType::F64, std::max<int64_t>(1, pieces_.size()));
  host_sums_.resize(std::max<size_t>(1, pieces_.size()));
}

void TrainStep::reduce_grads() {
  const int dp = dp_.size();
  if (dp == 1) return;
  ParamStore& p = model_.params();
  kernels::Backend& be = p.backend();
  if (!zero1_) {
    if (!staged_) {  // the CPU's host buffer, or the device's with a device communicator
      if (on_device_) dp_after_compute();
      dp_tensor_.allreduce_sum(p.grads().f32(), static_cast<size_t>(p.total()));
      if (on_device_) compute_after_dp();
      return;
    }
    be.download(p.grads(), host_grads_.data());
    dp_.allreduce_sum(host_grads_.data(), host_grads_.size());
    be.upload(host_grads_.data(), p.grads());
    return;
  }
  // Reduce-scatter of the padded buffer (padding zero): this rank's chunk is
  // bit for bit the same slice of what the all-reduce would give. It goes
  // back into the gradient buffer at the range's offsets, where the norm and
  // AdamW read it.
  const size_t c = static_cast<size_t>(chunk_);
  const kernels::Tensor mine = kernels::slice(p.grads(), range_.begin, range_.size());
  if (staged_) {
    be.download(p.grads_padded(), host_grads_.data());
    dp_.reduce_scatter_sum(host_grads_.data(), shard_.data(), c);
    be.upload(shard_.data(), mine);
  } else if (on_device_) {
    // Into the device chunk (the output may not overlap the input), then
    // the range's part copied into place on the device.
    const kernels::Tensor chunk = shard_dev_.flat();
    dp_after_compute();
    dp_tensor_.reduce_scatter_sum(p.grads_padded().f32(), chunk.f32(), c);
    compute_after_dp();
    be.convert(kernels::slice(chunk, 0, range_.size()), mine);
  } else {
    dp_.reduce_scatter_sum(p.grads_padded().f32(), shard_.data(), c);
    std::memcpy(mine.f32(), shard_.data(), static_cast<size_t>(range_.size()) * sizeof(float));
  }
}

void TrainStep::dp_after_compute() {
  if (dp_stream_) dp_stream_->wait_for_compute();
}

void TrainStep::compute_after_dp() {
  if (dp_stream_) dp_stream_->compute_waits();
}

void TrainStep::stage_done(int stage) {
  tp_sync_.sum(model_.params(), plan_.stage_ranges.at(static_cast<size_t>(stage)));
  while (next_bucket_ < plan_.buckets.size() && plan_.buckets[next_bucket_].stage <= stage)
    reduce_bucket(plan_.buckets[next_bucket_++]);
}

// One bucket of reduce_grads: all-reduced, or under ZeRO-1 reduced onto the
// rank whose partition holds it, in place in the gradient buffer (the same
// rank-order sums, so the bits of the whole-buffer calls). On a dp stream of
// its own the backend does not wait for it until the backward is done.
void TrainStep::reduce_bucket(const GradBucket& b) {
  ParamStore& p = model_.params();
  kernels::Backend& be = p.backend();
  const kernels::Tensor g = kernels::slice(p.grads(), b.range.begin, b.range.size());
  const size_t size = static_cast<size_t>(b.range.size());
  const auto reduce = [&](parallel::Communicator& comm, float* data) {
    if (b.owner < 0)
      comm.allreduce_sum(data, size);
    else
      comm.reduce_sum(data, size, b.owner);
  };
  if (staged_) {
    float* host = host_grads_.data() + b.range.begin;
    be.download(g, host);
    reduce(dp_, host);
    if (b.owner < 0 || b.owner == dp_.rank()) be.upload(host, g);
    return;
  }
  if (on_device_) dp_after_compute();
  reduce(dp_tensor_, g.f32());
}

void TrainStep::gather_params() {
  const int dp = dp_.size();
  ParamStore& p = model_.params();
  if (p.master_sharded()) {
    // The range's BF16 copy, written by AdamW in its pass (the bits plain dp
    // has there), to every rank; past the range the chunk sends zeros.
    kernels::Backend& be = p.backend();
    const size_t c = static_cast<size_t>(chunk_);
    std::fill(shard16_.begin(), shard16_.end(), uint16_t{0});
    const kernels::Tensor mine = kernels::slice(p.work(), range_.begin, range_.size());
    if (on_device_) {
      const kernels::Tensor chunk = shard16_dev_.flat();
      be.convert(mine, kernels::slice(chunk, 0, range_.size()));
      if (chunk_ > range_.size()) be.zero(kernels::slice(chunk, range_.size(), chunk_ - range_.size()));
      dp_after_compute();
      dp_tensor_.allgather(static_cast<const uint16_t*>(chunk.data), static_cast<uint16_t*>(p.work_padded().data),
                           c);
      compute_after_dp();
    } else if (staged_) {
      be.download(mine, shard16_.data());
      dp_.allgather(shard16_.data(), host16_.data(), c);
      be.upload(host16_.data(), p.work_padded());
    } else {
      std::memcpy(shard16_.data(), mine.data, static_cast<size_t>(range_.size()) * sizeof(uint16_t));
      dp_.allgather(shard16_.data(), static_cast<uint16_t*>(p.work_padded().data), c);
    }
    gather_side();
    return;
  }
  if (dp > 1) {
    kernels::Backend& be = p.backend();
    const size_t c = static_cast<size_t>(chunk_);
    // Past the range (the last ranks' short or empty partitions) the chunk
    // sends zeros: the master's padding stays zero.
    std::fill(shard_.begin(), shard_.end(), 0.0f);
    const kernels::Tensor mine = kernels::slice(p.master(), range_.begin, range_.size());
    if (on_device_) {
      const kernels::Tensor chunk = shard_dev_.flat();
      be.convert(mine, kernels::slice(chunk, 0, range_.size()));
      if (chunk_ > range_.size()) be.zero(kernels::slice(chunk, range_.size(), chunk_ - range_.size()));
      dp_after_compute();
      dp_tensor_.allgather(chunk.f32(), p.master_padded().f32(), c);
      compute_after_dp();
    } else if (staged_) {
      be.download(mine, shard_.data());
      dp_.allgather(shard_.data(), host_grads_.data(), c);
      be.upload(host_grads_.data(), p.master());
    } else {
      std::memcpy(shard_.data(), mine.f32(), static_cast<size_t>(range_.size()) * sizeof(float));
      dp_.allgather(shard_.data(), p.master_padded().f32(), c);
    }
  }
  // The range's BF16 copy was written by AdamW; the gathered rest is rounded
  // here by the same round-to-nearest-even.
  p.refresh_work();
}

// The side buffer's updated elements are each in one rank's range: every
// rank sends its whole side buffer (small: the norm parameters, α, the
// scale) and takes each element from its owner, so the bits are the
// owner's master's, as plain dp's.
void TrainStep::gather_side() {
  ParamStore& p = model_.params();
  kernels::Backend& be = p.backend();
  p.side_from_master();
  const kernels::Tensor side = p.side();
  const size_t S = side_host_.size();
  if (on_device_) {
    // Every rank's side buffer gathered on the device, then read back (small).
    const kernels::Tensor all = side_all_dev_.flat();
    dp_after_compute();
    dp_tensor_.allgather(side.f32(), all.f32(), S);
    compute_after_dp();
    if (S) be.download(kernels::slice(all, 0, static_cast<int64_t>(dp_.size() * S)), side_all_.data());
    std::copy(side_all_.begin() + static_cast<int64_t>(dp_.rank() * S),
              side_all_.begin() + static_cast<int64_t>((dp_.rank() + 1) * S), side_host_.begin());
  } else {
    if (staged_)
    be.download(side, side_host_.data());
  else if (S)
      std::memcpy(side_host_.data(), side.f32(), S * sizeof(float));
    dp_.allgather(side_host_.data(), side_all_.data(), S);
  }
  for (const SideRun& r : side_owners_)
    std::copy(side_all_.begin() + static_cast<int64_t>(r.rank * S) + r.begin,
              side_all_.begin() + static_cast<int64_t>(r.rank * S) + r.end, side_host_.begin() + r.begin);
  if (staged_ || on_device_)
    be.upload(side_host_.data(), side);
  else if (S)
    std::memcpy(side.f32(), side_host_.data(), S * sizeof(float));
}

double TrainStep::grad_norm() {
  kernels::Backend& be = model_.backend();
  const kernels::Tensor grads = model_.params().grads();
  const kernels::Tensor sums = piece_sums_.flat();
  for (size_t i = 0; i < pieces_.size(); ++i)
    be.sum_squares(kernels::slice(grads, pieces_[i].begin, pieces_[i].size()),
                   kernels::slice(sums, static_cast<int64_t>(i), 1));
  if (!pieces_.empty()) be.download(kernels::slice(sums, 0, static_cast<int64_t>(pieces_.size())), host_sums_.data());
  // Partition partials, then their sum in partition order: locally without
  // ZeRO-1, by the dp all-reduce (rank order = partition order) with it.
  double sum = 0;
  for (size_t k = 0; k + 1 < piece_start_.size(); ++k) {
    double partial = 0;
    for (size_t i = piece_start_[k]; i < piece_start_[k + 1]; ++i) partial += host_sums_[i];
    sum += partial;
  }
  if (zero1_ && dp_.size() > 1) dp_.allreduce_sum(&sum, 1);
  tp_.allreduce_sum(&sum, 1);
  return std::sqrt(sum);
}

std::vector<std::pair<std::string, parallel::CommStats>> TrainStep::comm_stats() const {
  std::vector<std::pair<std::string, parallel::CommStats>> out;
  if (dp_.size() > 1) out.emplace_back("dp", dp_stats());
  if (tp_.size() > 1) out.emplace_back("tp", tp_stats());
  if (tp_sync_.kv_group() && tp_sync_.kv_group()->size() > 1)
    out.emplace_back("tp-kv", tp_sync_.kv_group()->stats());
  return out;
}

parallel::CommStats TrainStep::dp_stats() const { return plus(dp_.stats(), dp_device_); }
parallel::CommStats TrainStep::tp_stats() const { return plus(tp_.stats(), tp_device_); }

std::vector<NormHealth> TrainStep::norm_health() {
  const std::vector<double> probe = model_.norm_probe();
  if (probe.empty()) return {};
  const TensorParallel& tp = model_.tensor_parallel();
  const bool sp = tp.sequence_parallel && tp.size() > 1;
  // Without sequence parallelism the tp ranks hold the same rows: count them once.
  std::vector<double> sums = norm_health_partials(
      probe, sampler_.micro_batches_per_step() * model_.acts().local_rows() * model_.dims().d,
      sp || tp.rank() == 0);
  dp_.allreduce_sum(sums.data(), sums.size());
  tp_.allreduce_sum(sums.data(), sums.size());
  return trainer::norm_health(norm_slot_names(model_.dims().layers), sums);
}

StepResult TrainStep::run(int64_t step, double lr, bool probe_norms) {
  StepResult r;
  const auto before = comm_stats();
  const auto count_comm = [&] {
    const auto after = comm_stats();
    for (size_t i = 0; i < after.size(); ++i)
      r.comm_bytes.emplace_back(after[i].first,
                                (after[i].second - before[i].second).total().bytes_sent);
  };
  ParamStore& params = model_.params();
  params.zero_grads();
  const float grad_scale = 1.0f / static_cast<float>(tokens_per_step_);
  if (probe_norms) model_.probe_norms(true);
  const int64_t micros = sampler_.micro_batches_per_step();
  const bool overlap = !plan_.buckets.empty();
  next_bucket_ = 0;
  for (int64_t micro = 0; micro < micros; ++micro) {
    sampler_.fill_micro_batch(step, micro, tokens_.data(), targets_.data());
    // With overlap the last micro-batch's backward reports its stages: the
    // tp sums and the dp reduction of each bucket start as it completes.
    model_.accumulate(tokens_.data(), targets_.data(), grad_scale,
                      overlap && micro + 1 == micros ? &on_stage_ : nullptr);
  }
  if (probe_norms) model_.probe_norms(false);
  if (overlap) {
    if (next_bucket_ != plan_.buckets.size())
      throw std::logic_error("TrainStep: the backward left " + std::to_string(plan_.buckets.size() - next_bucket_) +
                             " gradient buckets unreduced");
    compute_after_dp();
  } else {
    // Blocks several tp ranks hold alike, each with part of the gradient.
    tp_sync_.sum(params);
    // Each rank holds its slice's share of the mean gradient; the sum over
    // ranks (fixed rank order) is the global batch's, the same bits on all.
    reduce_grads();
  }
  // Every tp rank of a replica has the whole loss (the vocab-parallel loss is combined).
  double loss_sum = model_.acts().take_loss_sum();
  dp_.allreduce_sum(&loss_sum, 1);

  r.loss = loss_sum / static_cast<double>(tokens_per_step_);
  r.grad_norm = grad_norm();
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    // The update is skipped (on every rank: the loss and norm are global);
    // the data position still advances so a bad batch is not retried forever.
    r.skipped = true;
    count_comm();
    return r;
  }
  const double coef = clip_coefficient(r.grad_norm, grad_clip_);
  if (coef < 1.0)
    model_.backend().scale_inplace(kernels::slice(params.grads(), range_.begin, range_.size()),
                                   static_cast<float>(coef));
  optimizer_.step(params, lr);
  if (zero1_) gather_params();
  count_comm();
  return r;
}

std::vector<float> gather_master(const ParamStore& params, parallel::Communicator& dp) {
  if (!params.master_sharded()) return params.master_to_host();
  const int64_t n = params.total(), c = dp_chunk(n, dp.size());
  const FlatRange mine = dp_partition(n, dp.size(), dp.rank()), held = params.master_range();
  if (held.begin != mine.begin || held.end != mine.end)
    throw std::invalid_argument("gather_master: the store holds " + range_text(held) + ", dp rank " +
                                std::to_string(dp.rank()) + " of " + std::to_string(dp.size()) + " owns " +
                                range_text(mine));
  std::vector<float> shard = params.master_range_to_host(), out(static_cast<size_t>(dp.size() * c));
  shard.resize(static_cast<size_t>(c), 0.0f);  // the short or empty last partitions: zero padding
  dp.allgather(shard.data(), out.data(), static_cast<size_t>(c));
  out.resize(static_cast<size_t>(n));
  return out;
}

double evaluate(ModelInstance& model, const data::EvalBatches& batches, int dp_rank, int dp,
                parallel::Communicator& comm) {
  std::vector<int32_t> tokens(static_cast<size_t>(model.batch() * model.seq_len())), targets(tokens.size());
  double sum = 0;
  for (int64_t j = dp_rank; j < batches.num_batches(); j += dp) {
    batches.fill_batch(j, tokens.data(), targets.data());
    sum += model.forward(tokens.data(), targets.data());
  }
  comm.allreduce_sum(&sum, 1);
  return sum / static_cast<double>(batches.num_batches() * model.batch() * model.seq_len());
}

}  // namespace dyt::trainer
