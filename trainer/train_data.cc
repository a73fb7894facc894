#include "trainer/train_data.h"

namespace dyt::trainer {

TrainData::TrainData(const config::RunConfig& cfg, const parallel::Mesh& mesh) {
  const config::TrainConfig& t = cfg.train();
  const int64_t T = t.seq_len(), B = t.micro_batch();
  train_set_ = std::make_unique<data::TokenDataset>(
      data::TokenDataset::open(cfg.data().train_shards(), T, "data.train_shards"));
  train_set_->check_vocab(cfg.model().vocab_size());
  if (t.eval_every() > 0 && t.eval_batches() > 0 && !cfg.data().val_shards().empty()) {
    val_set_ = std::make_unique<data::TokenDataset>(
        data::TokenDataset::open(cfg.data().val_shards(), T, "data.val_shards"));
    val_set_->check_vocab(cfg.model().vocab_size());
    val_batches_ = std::make_unique<data::EvalBatches>(*val_set_, t.eval_batches(), B);
  }
  sampler_ = std::make_unique<data::BatchSampler>(*train_set_, t.seed(), t.global_batch_tokens(), B,
                                                  mesh.dp_rank, mesh.dp);
}

}  // namespace dyt::trainer
