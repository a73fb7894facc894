// The data loader: token shards -> fixed-length samples -> a deterministic
// global order -> each rank's micro-batches.
//
// Samples. A TokenDataset is the sorted list of shards matching a glob. Each
// shard of n tokens gives floor((n - 1) / T) samples (T = seq_len): sample j
// of a shard is its tokens [j*T, j*T + T + 1); the inputs are the first T of
// them and the targets the last T (inputs shifted by one). Input windows do
// not overlap; the last partial window of each shard is dropped, and no
// sample crosses a shard boundary. Samples are numbered 0..S-1 in shard order.
//
// Order. The global sample order depends only on (seed, global index g):
// epoch e = g / S, position p = g % S, sample = P_{seed,e}(p), where P is a
// keyed bijection of [0, S) (a balanced Feistel network over the next even
// power of two, with cycle walking). Any index costs O(1) and no memory; every
// epoch visits every sample exactly once, in a new order per epoch.
//
// Batches. Optimizer step k uses global indices [k*G, (k+1)*G), G =
// global_batch_tokens / seq_len. Data-parallel rank r of `world` takes the
// contiguous slice [k*G + r*G/world, k*G + (r+1)*G/world), and its micro-batch
// j the B = micro_batch consecutive indices starting at j*B inside that slice.
// So the data position of a run is one integer (the step), and the samples of
// a global batch do not depend on the layout (dp=1 and dp=2 see the same ones).
//
// Validation. A fixed set: the first eval_batches * micro_batch samples of the
// validation dataset in file order (no shuffle); batch j holds samples
// [j*B, (j+1)*B). Under data parallelism rank r evaluates the batches with
// j % world == r and the losses are summed over ranks, so the validation loss
// is the same for every layout.
//
// Every problem with the data is a DataError naming the file or glob and the
// config field; layout mistakes (a batch that does not divide) are
// std::invalid_argument naming the train.* fields.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/data/token_shard.h"

namespace dyt::data {

// The files matching `pattern` (glob(3)), sorted bytewise. DataError naming
// `field` (e.g. "data.train_shards") and the pattern when the pattern is
// empty or matches nothing.
std::vector<std::string> expand_shard_glob(const std::string& pattern, const std::string& field);

// Samples of seq_len + 1 tokens from a set of memory-mapped shards.
// Movable, not copyable; read-only after open(), so safe to share across
// threads.
class TokenDataset {
 public:
  // Opens every shard matching `pattern` (see expand_shard_glob); `field`
  // names the config field in messages. DataError when a shard is bad (see
  // TokenShard::open) or the shards hold no sample (S == 0).
  static TokenDataset open(const std::string& pattern, int64_t seq_len, const std::string& field);

  int64_t seq_len() const { return seq_len_; }
  int64_t num_samples() const { return sample_start_.back(); }  // S
  int64_t num_tokens() const { return num_tokens_; }            // over all shards
  const std::vector<TokenShard>& shards() const { return shards_; }
  const std::string& pattern() const { return pattern_; }
  const std::string& field() const { return field_; }

  // DataError naming the first shard with a token id >= vocab_size, its
  // largest id and model.vocab_size. Scans each shard once (cached).
  void check_vocab(int64_t vocab_size) const;

  // Writes sample `sample` (in [0, S)): tokens[0..T) are the inputs,
  // targets[0..T) the next tokens. std::out_of_range outside [0, S).
  void read_sample(int64_t sample, int32_t* tokens, int32_t* targets) const;

 private:
  TokenDataset() = default;

  std::string pattern_;
  std::string field_;
  int64_t seq_len_ = 0;
  int64_t num_tokens_ = 0;
  std::vector<TokenShard> shards_;
  std::vector<int64_t> sample_start_;  // size shards + 1; sample_start_[i] = first sample of shard i
};

// A keyed pseudo-random bijection of [0, n): a 6-round balanced Feistel
// network on 2^(2h) >= n values with cycle walking (expected < 4 rounds of
// walking). Deterministic across platforms.
class KeyedPermutation {
 public:
  KeyedPermutation(int64_t n, uint64_t key);  // n >= 1, else std::invalid_argument
  int64_t size() const { return n_; }
  int64_t operator()(int64_t i) const;  // i in [0, n), else std::out_of_range

 private:
  static constexpr int kRounds = 6;
  uint64_t encrypt(uint64_t x) const;

  int64_t n_ = 1;
  int half_bits_ = 0;
  uint64_t half_mask_ = 0;
  uint64_t round_keys_[kRounds] = {};
};

// The global sample order: sample_at(g) = P_{seed, g / S}(g % S).
class SampleOrder {
 public:
  SampleOrder(int64_t num_samples, uint64_t seed);  // num_samples >= 1
  int64_t num_samples() const { return num_samples_; }
  uint64_t seed() const { return seed_; }
  int64_t epoch_of(int64_t global_index) const { return global_index / num_samples_; }
  // global_index >= 0, else std::out_of_range.
  int64_t sample_at(int64_t global_index) const;

 private:
  int64_t num_samples_;
  uint64_t seed_;
};

// One data-parallel rank's view of the training batches. Holds a reference
// to `dataset`, which must outlive it.
class BatchSampler {
 public:
  // std::invalid_argument (naming train.global_batch_tokens, train.seq_len,
  // train.micro_batch, parallel.dp) unless global_batch_tokens is a positive
  // multiple of seq_len * micro_batch * dp_world and 0 <= dp_rank < dp_world.
  BatchSampler(const TokenDataset& dataset, uint64_t seed, int64_t global_batch_tokens,
               int64_t micro_batch, int dp_rank, int dp_world);

  int64_t seq_len() const { return dataset_->seq_len(); }
  int64_t micro_batch() const { return micro_batch_; }                // B
  int64_t global_batch_samples() const { return global_samples_; }    // G
  int64_t micro_batches_per_step() const { return micro_steps_; }     // G / (B * world)
  const SampleOrder& order() const { return order_; }
  // Epoch (pass over the data) that the first sample of `step` belongs to.
  int64_t epoch_of_step(int64_t step) const { return order_.epoch_of(step * global_samples_); }

  // Global index of row `row` of micro-batch `micro` of optimizer step `step`
  // on this rank: step*G + rank*(G/world) + micro*B + row.
  int64_t global_index(int64_t step, int64_t micro, int64_t row) const;

  // Fills tokens and targets, each [B][T] row-major int32 (B*T values), with
  // micro-batch `micro` (in [0, micro_batches_per_step())) of step `step`
  // (>= 0). std::out_of_range otherwise.
  void fill_micro_batch(int64_t step, int64_t micro, int32_t* tokens, int32_t* targets) const;

 private:
  const TokenDataset* dataset_;
  SampleOrder order_;
  int64_t micro_batch_;
  int64_t global_samples_;
  int64_t micro_steps_;
  int dp_rank_;
  int dp_world_;
};

// The fixed validation set: the first eval_batches * micro_batch samples of
// `dataset` in file order. Holds a reference to `dataset`.
class EvalBatches {
 public:
  // DataError (naming the dataset's glob and field, train.eval_batches and
  // train.micro_batch) when the dataset has fewer samples than that;
  // std::invalid_argument when eval_batches < 0 or micro_batch < 1.
  EvalBatches(const TokenDataset& dataset, int64_t eval_batches, int64_t micro_batch);

  int64_t num_batches() const { return num_batches_; }
  int64_t micro_batch() const { return micro_batch_; }
  // Rank `rank` of `world` evaluates batch j iff j % world == rank.
  static bool is_local(int64_t batch, int rank, int world) { return batch % world == rank; }
  // Fills [B][T] tokens and targets with samples [j*B, (j+1)*B).
  void fill_batch(int64_t batch, int32_t* tokens, int32_t* targets) const;

 private:
  const TokenDataset* dataset_;
  int64_t num_batches_;
  int64_t micro_batch_;
};

}  // namespace dyt::data
