// One optimizer step on the backend: the micro-batches' forward and
// backward, the tensor-parallel sums of partial gradients, the
// data-parallel sum of gradients and loss, the global gradient norm, the
// non-finite guard, clipping and the AdamW update. A few scalars cross to
// the host per step (the loss and the norm's partials); the gradients and
// parameters cross only when the communicator needs host memory. With a
// group's communicator of device buffers (DeviceGroups: NCCL on a CUDA run)
// the gradients and parameters go to it straight from the backend's
// buffers, and the host values (loss, norm) stay on the group's host one.
//
// Data parallelism runs over the dp group of parallel::Groups, the norm's
// last sum over the tp group. Without ZeRO-1 the gradients are all-reduced
// and every rank updates every parameter. With ZeRO-1 (docs/parallel.md)
// they are reduce-scattered onto the rank's dp_partition, AdamW (holding the
// moments of that range only) updates the master weights there, and the
// parameters are all-gathered over dp: under FP32 the master (fp32); under
// BF16, whose store keeps only the master's range (ParamStore), the BF16
// working copy (16 bits) and the small fp32 side buffer of the tensors the
// model reads in fp32, each element taken from its owner. Both give the
// same bits (fixed-order sums, trainer/norm_partition.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "configs/config.h"
#include "parallel/communicator.h"
#include "parallel/groups.h"
#include "trainer/data/loader.h"
#include "trainer/dp_partition.h"
#include "trainer/grad_buckets.h"
#include "trainer/model_instance.h"
#include "trainer/norm_health.h"
#include "trainer/optimizer.h"
#include "trainer/tp_grad_sync.h"

namespace dyt::trainer {

struct StepResult {
  double loss = 0;       // mean over the global batch's tokens
  double grad_norm = 0;  // before clipping
  bool skipped = false;  // non-finite loss or norm: no update
  // Bytes this rank sent in the step per group of more than one rank.
  std::vector<std::pair<std::string, uint64_t>> comm_bytes;
};

// The stream a device dp communicator runs on when it is not the backend's
// (CUDA with overlap: a second stream, so the bucket reductions run beside
// the backward; trainer/device_comms.h). Each call orders the work queued so
// far; nothing waits on the host.
class DpStream {
 public:
  virtual ~DpStream() = default;
  // The dp stream's next work starts after the backend's queued work.
  virtual void wait_for_compute() = 0;
  // The backend's next work starts after the dp stream's queued work.
  virtual void compute_waits() = 0;
};

// The same groups' communicators of device buffers (device_buffers() true,
// the same ranks in the same order as the host groups), or null where a
// group's tensors are staged through the host. Only for a device backend.
// dp_stream: set when dp runs on a stream of its own.
struct DeviceGroups {
  parallel::Communicator* dp = nullptr;
  parallel::Communicator* tp = nullptr;
  DpStream* dp_stream = nullptr;
};

// parallel.overlap_grad_reduce and parallel.grad_bucket_elements.
struct GradOverlap {
  bool on = false;
  int64_t bucket_elements = 40'000'000;
};

class TrainStep {
 public:
  // groups: this rank's data- and tensor-parallel groups (the model's tp
  // group is groups.tp); they must outlive the step. With zero1 the
  // optimizer must hold exactly dp_partition(total, dp, dp_rank) and the
  // store be ZeRO-1's of this dp group (ModelInstance's DpShard: padded to
  // dp·dp_chunk, and under BF16 holding that range of the master); without
  // it, the whole buffer. device: where the gradients and parameters
  // travel instead of groups' host communicators (the model's TensorCollectives
  // should have device.tp too). overlap: reduce the dp gradients in buckets
  // during the last micro-batch's backward (trainer/grad_buckets.h; nothing
  // to do at dp 1). std::invalid_argument otherwise.
  TrainStep(ModelInstance& model, AdamW& optimizer, const data::BatchSampler& sampler,
            const parallel::Groups& groups, const config::TrainConfig& t, bool zero1 = false,
            DeviceGroups device = {}, GradOverlap overlap = {});

  // Step `step` (0-based) at learning rate lr; with probe_norms, its
  // forwards also measure the DyT/DyISRU inputs (read them with
  // norm_health()).
  StepResult run(int64_t step, double lr, bool probe_norms = false);
  // The last probed step's health per norm slot (trainer/norm_health.h),
  // summed over the ranks: a collective every rank calls. Empty for RMSNorm.
  // Its traffic is not in StepResult::comm_bytes (what dyt-plan predicts).
  std::vector<NormHealth> norm_health();
  int64_t tokens_per_step() const { return tokens_per_step_; }
  bool zero1() const { return zero1_; }
  // The buckets the dp reduction overlaps the backward in; empty without overlap.
  const std::vector<GradBucket>& grad_buckets() const { return plan_.buckets; }
  // The host communicators (the host values' collectives).
  const parallel::Communicator& dp_comm() const { return dp_; }
  const parallel::Communicator& tp_comm() const { return tp_; }
  // A group's counters, for a step's traffic (stats() difference): its host
  // communicator's plus its device communicator's, so a step counts the
  // same whichever carries the tensors.
  parallel::CommStats dp_stats() const;
  parallel::CommStats tp_stats() const;

 private:
  // Gradients summed over the dp ranks (fixed rank order): all of them, or
  // under ZeRO-1 this rank's partition only.
  void reduce_grads();
  // Overlap: a backward stage is done; its tp sums, then every bucket it
  // completes reduced (on the dp stream when there is one).
  void stage_done(int stage);
  void reduce_bucket(const GradBucket& b);
  // Where dp's device collectives run on their own stream: before one, it
  // waits for the backend; after, the backend for it (no-ops otherwise).
  void dp_after_compute();
  void compute_after_dp();
  // Under ZeRO-1: every rank's updated range to every rank (the master, or
  // the BF16 copy and the side buffer).
  void gather_params();
  void gather_side();
  double grad_norm();
  // The groups of more than one rank, by name, and their counters.
  std::vector<std::pair<std::string, parallel::CommStats>> comm_stats() const;

  ModelInstance& model_;
  AdamW& optimizer_;
  const data::BatchSampler& sampler_;
  parallel::Communicator& dp_;
  parallel::Communicator& tp_;
  parallel::Communicator* dp_device_;  // null: dp's tensors go to dp_
  parallel::Communicator* tp_device_;
  parallel::Communicator& dp_tensor_;  // where dp's gradients and parameters go
  DpStream* dp_stream_;                // null: dp's device collectives are on the backend's stream
  TpGradSync tp_sync_;
  bool zero1_;
  bool staged_;        // the backend's memory is not the communicator's: copy through the host
  bool on_device_;     // a device backend with a communicator of device buffers
  FlatRange range_;    // what this rank updates: its dp_partition, or everything
  int64_t chunk_ = 0;  // dp_chunk(total, dp) under ZeRO-1
  GradBucketPlan plan_;       // overlap: the buckets; empty buckets = no overlap
  size_t next_bucket_ = 0;    // the first bucket not yet reduced this step
  GradsReady on_stage_;       // calls stage_done
  double grad_clip_;
  int64_t tokens_per_step_;
  std::vector<int32_t> tokens_, targets_;
  std::vector<float> host_grads_;   // staging: the (padded) gradients or the gathered master
  std::vector<float> shard_;        // one dp chunk (ZeRO-1): the reduced gradients, the range to send
  // A sharded master (BF16): the working copy's chunk to send and (staged)
  // the gathered copy; the side buffer, every rank's side buffer, and which
  // rank owns each run of it.
  std::vector<uint16_t> shard16_, host16_;
  std::vector<float> side_host_, side_all_;
  struct SideRun {
    int rank;
    int64_t begin, end;
  };
  std::vector<SideRun> side_owners_;
  // on_device_: the chunk (F32, and BF16 for the sharded master) and every
  // rank's side buffer, on the device; the chunks' tails stay zero.
  kernels::Buffer shard_dev_, shard16_dev_, side_all_dev_;
  // The norm's pieces (norm_partition.h): those of partition k are
  // pieces_[piece_start_[k], piece_start_[k+1]); under ZeRO-1 only this rank's.
  std::vector<FlatRange> pieces_;
  std::vector<size_t> piece_start_;
  kernels::Buffer piece_sums_;      // F64 [pieces], one download per step
  std::vector<double> host_sums_;
};

// The whole fp32 master on the host: read, or under a sharded master
// gathered over `dp` (the group it is sharded over; collective there).
// std::invalid_argument when the store's range is not this rank's partition.
std::vector<float> gather_master(const ParamStore& params, parallel::Communicator& dp);

// Mean validation loss over the fixed validation batches, which the
// data-parallel ranks share out (batch j on rank j mod dp); `comm` is the
// dp group.
double evaluate(ModelInstance& model, const data::EvalBatches& batches, int dp_rank, int dp,
                parallel::Communicator& comm);

}  // namespace dyt::trainer
