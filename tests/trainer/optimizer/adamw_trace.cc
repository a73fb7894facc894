// Runs 10 clipped AdamW steps on a tiny LLaMA-DyT layout and writes every
// input and output to JSON for check_adamw.py, which replays them with
// torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and its own schedule.
//
// usage: adamw_trace OUT.json
//
// Model: vocab 11, d 8, 1 layer, 2 heads, 1 KV head, FFN 12, DyT with β and
// the embedding scale. Train config: steps 40, warmup 4, lr 1e-2, wd 0.1,
// grad_clip 1.0, β = (0.9, 0.95), ε = 1e-8, min_lr_ratio 0.1. Gradients come
// from a fixed sin/cos formula with a per-step scale chosen so that clipping
// triggers on some steps and not on others.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "configs/config.h"
#include "trainer/grad_norm.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"
#include "trainer/schedule.h"

namespace {

using dyt::trainer::ParamKind;

constexpr int kSteps = 10;
// Per-step gradient scale; the norm is about 17 × scale here, so steps with
// scale above ~0.06 are clipped.
constexpr double kScale[kSteps] = {0.02, 0.2, 0.03, 0.5, 0.01, 0.15, 0.04, 3.0, 0.05, 0.1};

void write_floats(std::FILE* f, const float* x, int64_t n) {
  std::fputc('[', f);
  for (int64_t i = 0; i < n; ++i) std::fprintf(f, "%s%.9g", i ? "," : "", static_cast<double>(x[i]));
  std::fputc(']', f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.json\n", argv[0]);
    return 2;
  }
  dyt::trainer::ModelDims dims;
  dims.vocab = 11;
  dims.d = 8;
  dims.layers = 1;
  dims.heads = 2;
  dims.kv_heads = 1;
  dims.head_dim = 4;
  dims.ffn = 12;
  dims.norm = dyt::trainer::Norm::DyT;
  dims.norm_bias = true;
  dims.embed_scale = true;
  const dyt::trainer::ParamLayout layout(dims);
  const int64_t n = layout.total();

  dyt::config::TrainConfig t;
  t.set_steps(40);
  t.set_warmup_steps(4);
  t.set_lr(1e-2);
  t.set_min_lr_ratio(0.1);
  t.set_weight_decay(0.1);
  t.set_grad_clip(1.0);
  t.set_beta1(0.9);
  t.set_beta2(0.95);
  t.set_adam_eps(1e-8);

  std::vector<float> params(static_cast<size_t>(n)), grads(static_cast<size_t>(n));
  for (const auto& e : layout.entries())
    for (int64_t k = 0; k < e.numel; ++k) {
      const int64_t i = e.offset + k;
      double v = 0;
      switch (e.kind) {
        case ParamKind::Matrix:
        case ParamKind::Embedding: v = 0.2 * std::sin(0.13 * i + 0.5); break;
        case ParamKind::NormWeight: v = 1.0 + 0.1 * std::cos(1.0 * i); break;
        case ParamKind::NormAlpha: v = 0.5; break;
        case ParamKind::NormBias: v = 0.05 * std::sin(1.0 * i); break;
        case ParamKind::EmbedScale: v = std::sqrt(8.0); break;
      }
      params[static_cast<size_t>(i)] = static_cast<float>(v);
    }

  std::FILE* f = std::fopen(argv[1], "w");
  if (!f) {
    std::perror(argv[1]);
    return 1;
  }
  std::fprintf(f,
               "{\"config\":{\"steps\":%lld,\"warmup_steps\":%lld,\"lr\":%.17g,"
               "\"min_lr_ratio\":%.17g,\"beta1\":%.17g,\"beta2\":%.17g,\"eps\":%.17g,"
               "\"weight_decay\":%.17g,\"grad_clip\":%.17g},\n",
               static_cast<long long>(t.steps()), static_cast<long long>(t.warmup_steps()), t.lr(),
               t.min_lr_ratio(), t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay(), t.grad_clip());
  std::fprintf(f, "\"layout\":[");
  bool first = true;
  for (const auto& e : layout.entries()) {
    std::fprintf(f, "%s\n{\"name\":\"%s\",\"offset\":%lld,\"numel\":%lld,\"weight_decay\":%s,\"shape\":[",
                 first ? "" : ",", e.name.c_str(), static_cast<long long>(e.offset),
                 static_cast<long long>(e.numel), e.weight_decay() ? "true" : "false");
    for (size_t k = 0; k < e.shape.size(); ++k)
      std::fprintf(f, "%s%lld", k ? "," : "", static_cast<long long>(e.shape[k]));
    std::fprintf(f, "]}");
    first = false;
  }
  std::fprintf(f, "],\n\"init\":");
  write_floats(f, params.data(), n);
  std::fprintf(f, ",\n\"steps\":[");

  dyt::trainer::AdamW opt(layout, t);
  for (int s = 0; s < kSteps; ++s) {
    // Inside the tensors only: the layout's alignment gaps get no gradient,
    // as in training.
    for (const auto& e : layout.entries())
      for (int64_t i = e.offset; i < e.offset + e.numel; ++i)
        grads[static_cast<size_t>(i)] = static_cast<float>(
            kScale[s] * std::sin(0.37 * i + 1.3 * s + 0.1) * (1.0 + 0.5 * std::cos(0.05 * i * (s + 1))));
    std::fprintf(f, "%s\n{\"step\":%d,\"grad\":", s ? "," : "", s);
    write_floats(f, grads.data(), n);  // before clipping

    const double norm = dyt::trainer::global_grad_norm(grads.data(), n);
    const double coef = dyt::trainer::clip_grads(grads.data(), n, norm, t.grad_clip());
    const double lr = dyt::trainer::learning_rate(opt.steps_taken(), t);
    opt.step(params.data(), grads.data(), lr);
    std::fprintf(f, ",\"lr\":%.17g,\"norm\":%.17g,\"clip_coef\":%.17g,\"params\":", lr, norm, coef);
    write_floats(f, params.data(), n);
    std::fprintf(f, "}");
    std::printf("step %d  lr %.6g  norm %.6g  clip %s\n", s, lr, norm, coef < 1 ? "yes" : "no");
  }
  std::fprintf(f, "],\n\"exp_avg\":");
  write_floats(f, opt.exp_avg_to_host().data(), n);
  std::fprintf(f, ",\n\"exp_avg_sq\":");
  write_floats(f, opt.exp_avg_sq_to_host().data(), n);
  std::fprintf(f, "}\n");
  if (std::fclose(f) != 0) {
    std::perror(argv[1]);
    return 1;
  }
  return 0;
}
