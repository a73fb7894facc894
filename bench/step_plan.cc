#include "bench/step_plan.h"

#include <stdexcept>

namespace dyt::bench {

config::RunConfig llama7b_shaped(int64_t layers, int64_t seq_len, bool tiny) {
  if (layers < 1) throw std::invalid_argument("llama7b_shaped: layers must be >= 1, got " + std::to_string(layers));
  if (seq_len < 1) throw std::invalid_argument("llama7b_shaped: seq_len must be >= 1, got " + std::to_string(seq_len));
  const std::string shape = tiny ? "vocab_size: 512 d_model: 256 n_heads: 4 ffn_hidden: 704 "
                                 : "vocab_size: 32000 d_model: 4096 n_heads: 32 ffn_hidden: 11008 ";
  const std::string text =
      "model { " + shape + "n_layers: " + std::to_string(layers) +
      " rope_theta: 10000 norm: DYT alpha_init { attention: 0.8 ffn: 0.2 final: 0.2 }"
      " init_std: 0.02 max_seq_len: " + std::to_string(seq_len) + " }\n"
      "train { seq_len: " + std::to_string(seq_len) + " micro_batch: 1 global_batch_tokens: " +
      std::to_string(seq_len) +
      " steps: 1000 lr: 3e-4 beta1: 0.9 beta2: 0.95 adam_eps: 1e-8 weight_decay: 0.1"
      " grad_clip: 1.0 recompute: false precision: BF16 device: CUDA }\n";
  return config::parse_run_config(text, "llama7b_shaped", {});
}

int64_t fit_layers(const std::function<int64_t(int64_t)>& need, int64_t budget, int64_t max_layers) {
  if (max_layers < 1) throw std::invalid_argument("fit_layers: max_layers must be >= 1");
  if (need(1) > budget) return 0;
  int64_t lo = 1, hi = max_layers;  // need(lo) fits; the answer is in [lo, hi]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (need(mid) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

}  // namespace dyt::bench
