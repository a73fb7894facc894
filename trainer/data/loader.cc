#include "trainer/data/loader.h"

#include <glob.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "trainer/data/mix.h"

namespace dyt::data {

namespace {

// SplitMix64: the next value of a stream whose state is `state`.
constexpr uint64_t splitmix64(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The permutation key of one epoch under one seed.
uint64_t epoch_key(uint64_t seed, int64_t epoch) {
  return fmix64(seed ^ fmix64(static_cast<uint64_t>(epoch) + 0x2545f4914f6cdd1dULL));
}

std::string cwd_text() {
  std::error_code ec;
  auto p = std::filesystem::current_path(ec);
  return ec ? std::string("?") : p.string();
}

}  // namespace

// ---- shards ------------------------------------------------------------------

std::vector<std::string> expand_shard_glob(const std::string& pattern, const std::string& field) {
  if (pattern.empty()) {
    throw DataError(field + " is empty: set it to a glob of llm.c token shards (e.g. "
                    "\"data/fortunes/train_*.bin\")");
  }
  glob_t g;
  std::memset(&g, 0, sizeof(g));
  const int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
  std::vector<std::string> paths;
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) paths.emplace_back(g.gl_pathv[i]);
  }
  const int err = errno;
  globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && paths.empty())) {
    throw DataError(field + " = \"" + pattern + "\" matches no file (relative to " + cwd_text() +
                    ")");
  }
  if (rc == GLOB_ABORTED) {
    throw DataError(field + " = \"" + pattern + "\": cannot read a directory while matching: " +
                    std::strerror(err));
  }
  if (rc != 0) throw DataError(field + " = \"" + pattern + "\": glob failed (out of memory)");
  std::sort(paths.begin(), paths.end());
  return paths;
}

TokenDataset TokenDataset::open(const std::string& pattern, int64_t seq_len,
                                const std::string& field) {
  if (seq_len < 1) {
    throw std::invalid_argument("train.seq_len must be >= 1, got " + std::to_string(seq_len));
  }
  TokenDataset d;
  d.pattern_ = pattern;
  d.field_ = field;
  d.seq_len_ = seq_len;
  d.sample_start_.push_back(0);
  for (const std::string& path : expand_shard_glob(pattern, field)) {
    TokenShard s = TokenShard::open(path);
    const int64_t n = s.size();
    d.num_tokens_ += n;
    const int64_t samples = n >= 1 ? (n - 1) / seq_len : 0;
    d.sample_start_.push_back(d.sample_start_.back() + samples);
    d.shards_.push_back(std::move(s));
  }
  if (d.num_samples() == 0) {
    throw DataError(field + " = \"" + pattern + "\": its " + std::to_string(d.shards_.size()) +
                    " shard(s) hold " + std::to_string(d.num_tokens_) +
                    " tokens but no sample: a sample needs train.seq_len + 1 = " +
                    std::to_string(seq_len + 1) + " tokens within one shard");
  }
  return d;
}

void TokenDataset::check_vocab(int64_t vocab_size) const {
  for (const TokenShard& s : shards_) {
    const uint32_t m = s.max_token();
    if (s.size() > 0 && static_cast<int64_t>(m) >= vocab_size) {
      throw DataError("token shard '" + s.path() + "' (" + field_ + "): token id " +
                      std::to_string(m) + " is out of range for model.vocab_size = " +
                      std::to_string(vocab_size) +
                      " (ids must be < vocab_size; was the shard made with another tokenizer?)");
    }
  }
}

void TokenDataset::read_sample(int64_t sample, int32_t* tokens, int32_t* targets) const {
  if (sample < 0 || sample >= num_samples()) {
    throw std::out_of_range("sample " + std::to_string(sample) + " outside [0, " +
                            std::to_string(num_samples()) + ") of " + field_);
  }
  // The shard holding `sample`: the last i with sample_start_[i] <= sample
  // (shards with no sample have equal starts; upper_bound skips them).
  const auto it = std::upper_bound(sample_start_.begin(), sample_start_.end(), sample);
  const size_t shard = static_cast<size_t>(it - sample_start_.begin()) - 1;
  const int64_t start = (sample - sample_start_[shard]) * seq_len_;
  const TokenShard& s = shards_[shard];
  s.read(start, seq_len_, tokens);
  s.read(start + 1, seq_len_, targets);
}

// ---- order -------------------------------------------------------------------

KeyedPermutation::KeyedPermutation(int64_t n, uint64_t key) : n_(n) {
  if (n < 1) throw std::invalid_argument("KeyedPermutation: size must be >= 1, got " + std::to_string(n));
  int bits = 0;
  while ((uint64_t{1} << bits) < static_cast<uint64_t>(n)) ++bits;  // n < 2^63: bits <= 63
  half_bits_ = std::max(1, (bits + 1) / 2);
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
  uint64_t state = key;
  for (uint64_t& k : round_keys_) k = splitmix64(state);
}

uint64_t KeyedPermutation::encrypt(uint64_t x) const {
  uint64_t left = x >> half_bits_;
  uint64_t right = x & half_mask_;
  for (uint64_t k : round_keys_) {
    const uint64_t f = fmix64((right + 1) * 0x9e3779b97f4a7c15ULL ^ k) & half_mask_;
    const uint64_t next_right = left ^ f;
    left = right;
    right = next_right;
  }
  return (left << half_bits_) | right;
}

int64_t KeyedPermutation::operator()(int64_t i) const {
  if (i < 0 || i >= n_) {
    throw std::out_of_range("KeyedPermutation: index " + std::to_string(i) + " outside [0, " +
                            std::to_string(n_) + ")");
  }
  if (n_ == 1) return 0;
  // Cycle walking: the network permutes [0, 2^(2h)); iterate it until the
  // value falls back into [0, n). Terminates because i's cycle contains i.
  uint64_t x = static_cast<uint64_t>(i);
  do {
    x = encrypt(x);
  } while (x >= static_cast<uint64_t>(n_));
  return static_cast<int64_t>(x);
}

SampleOrder::SampleOrder(int64_t num_samples, uint64_t seed) : num_samples_(num_samples), seed_(seed) {
  if (num_samples < 1) {
    throw std::invalid_argument("SampleOrder: num_samples must be >= 1, got " +
                                std::to_string(num_samples));
  }
}

int64_t SampleOrder::sample_at(int64_t global_index) const {
  if (global_index < 0) {
    throw std::out_of_range("SampleOrder: negative global index " + std::to_string(global_index));
  }
  const int64_t epoch = global_index / num_samples_;
  const int64_t pos = global_index % num_samples_;
  return KeyedPermutation(num_samples_, epoch_key(seed_, epoch))(pos);
}

// ---- batches -----------------------------------------------------------------

BatchSampler::BatchSampler(const TokenDataset& dataset, uint64_t seed, int64_t global_batch_tokens,
                           int64_t micro_batch, int dp_rank, int dp_world)
    : dataset_(&dataset),
      order_(dataset.num_samples(), seed),
      micro_batch_(micro_batch),
      global_samples_(0),
      micro_steps_(0),
      dp_rank_(dp_rank),
      dp_world_(dp_world) {
  const int64_t T = dataset.seq_len();
  if (micro_batch < 1) {
    throw std::invalid_argument("train.micro_batch must be >= 1, got " + std::to_string(micro_batch));
  }
  if (dp_world < 1 || dp_rank < 0 || dp_rank >= dp_world) {
    throw std::invalid_argument("data-parallel rank " + std::to_string(dp_rank) + " is not in [0, " +
                                std::to_string(dp_world) + ") (parallel.dp)");
  }
  const int64_t per_micro = T * micro_batch * dp_world;
  if (global_batch_tokens < per_micro || global_batch_tokens % per_micro != 0) {
    throw std::invalid_argument(
        "train.global_batch_tokens = " + std::to_string(global_batch_tokens) +
        " is not a positive multiple of train.seq_len * train.micro_batch * parallel.dp = " +
        std::to_string(T) + " * " + std::to_string(micro_batch) + " * " + std::to_string(dp_world));
  }
  global_samples_ = global_batch_tokens / T;
  micro_steps_ = global_samples_ / (micro_batch * dp_world);
}

int64_t BatchSampler::global_index(int64_t step, int64_t micro, int64_t row) const {
  if (step < 0 || micro < 0 || micro >= micro_steps_ || row < 0 || row >= micro_batch_) {
    throw std::out_of_range("BatchSampler: step " + std::to_string(step) + ", micro-batch " +
                            std::to_string(micro) + " (of " + std::to_string(micro_steps_) +
                            "), row " + std::to_string(row) + " (of " +
                            std::to_string(micro_batch_) + ") is out of range");
  }
  const int64_t per_rank = global_samples_ / dp_world_;
  return step * global_samples_ + dp_rank_ * per_rank + micro * micro_batch_ + row;
}

void BatchSampler::fill_micro_batch(int64_t step, int64_t micro, int32_t* tokens,
                                    int32_t* targets) const {
  const int64_t T = dataset_->seq_len();
  for (int64_t b = 0; b < micro_batch_; ++b) {
    const int64_t sample = order_.sample_at(global_index(step, micro, b));
    dataset_->read_sample(sample, tokens + b * T, targets + b * T);
  }
}

EvalBatches::EvalBatches(const TokenDataset& dataset, int64_t eval_batches, int64_t micro_batch)
    : dataset_(&dataset), num_batches_(eval_batches), micro_batch_(micro_batch) {
  if (eval_batches < 0) {
    throw std::invalid_argument("train.eval_batches must be >= 0, got " + std::to_string(eval_batches));
  }
  if (micro_batch < 1) {
    throw std::invalid_argument("train.micro_batch must be >= 1, got " + std::to_string(micro_batch));
  }
  if (eval_batches > dataset.num_samples() / micro_batch) {
    throw DataError(dataset.field() + " = \"" + dataset.pattern() + "\" has " +
                    std::to_string(dataset.num_samples()) + " samples of train.seq_len + 1 = " +
                    std::to_string(dataset.seq_len() + 1) + " tokens, fewer than train.eval_batches * "
                    "train.micro_batch = " + std::to_string(eval_batches) + " * " +
                    std::to_string(micro_batch) + "; lower train.eval_batches");
  }
}

void EvalBatches::fill_batch(int64_t batch, int32_t* tokens, int32_t* targets) const {
  if (batch < 0 || batch >= num_batches_) {
    throw std::out_of_range("EvalBatches: batch " + std::to_string(batch) + " outside [0, " +
                            std::to_string(num_batches_) + ")");
  }
  const int64_t T = dataset_->seq_len();
  for (int64_t b = 0; b < micro_batch_; ++b) {
    dataset_->read_sample(batch * micro_batch_ + b, tokens + b * T, targets + b * T);
  }
}

}  // namespace dyt::data
