// The data of a training run, opened and checked before any work: the
// training set and this rank's sampler over it, and the validation batches
// when validation is on.
#pragma once

#include <memory>
#include <optional>

#include "configs/config.h"
#include "parallel/mesh.h"
#include "trainer/data/loader.h"

namespace dyt::trainer {

class TrainData {
 public:
  // Throws data::DataError naming the field and file when a shard is bad or
  // a token lies outside model.vocab_size.
  TrainData(const config::RunConfig& cfg, const parallel::Mesh& mesh);
  TrainData(const TrainData&) = delete;
  TrainData& operator=(const TrainData&) = delete;

  const data::TokenDataset& train_set() const { return *train_set_; }
  const data::BatchSampler& sampler() const { return *sampler_; }
  // Null when the run does not validate.
  const data::EvalBatches* val_batches() const { return val_batches_.get(); }

 private:
  // Held by pointer: the sampler and the batches point into the datasets.
  std::unique_ptr<data::TokenDataset> train_set_, val_set_;
  std::unique_ptr<data::BatchSampler> sampler_;
  std::unique_ptr<data::EvalBatches> val_batches_;
};

}  // namespace dyt::trainer
