#include "trainer/throughput.h"

namespace dyt::trainer {

StepFlops step_flops(const ModelDims& d, int64_t seq_len) {
  const int64_t per_layer = d.d * d.q_dim() + 2 * d.d * d.kv_dim() + d.q_dim() * d.d + 3 * d.d * d.ffn;
  StepFlops f;
  f.matmul_params = d.layers * per_layer + d.vocab * d.d;
  f.per_token_matmul = 6.0 * static_cast<double>(f.matmul_params);
  f.per_token_attention = 12.0 * static_cast<double>(d.layers) * static_cast<double>(d.q_dim()) *
                          static_cast<double>(seq_len);
  return f;
}

double gpu_peak_flops(const std::string& name, kernels::DType dtype) {
  const auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  GpuPeak p;
  if (has("H100") || has("H200")) p = kH100Peak;
  else if (has("A100")) p = kA100Peak;
  return dtype == kernels::DType::BF16 ? p.bf16_flops : p.fp32_flops;
}

}  // namespace dyt::trainer
