// dyt-grad: one forward and backward of the model on the first B·T+1 tokens of
// a shard, writing weights, gradients, loss and config for comparison with a
// reference implementation (tests/reference/check_parity.py); with --logits
// also the forward's logits, with --export DIR the weights as a Hugging Face
// directory (tests/reference/check_hf.py loads it in transformers).
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "configs/cli.h"
#include "configs/config.h"
#include "trainer/data/token_shard.h"
#include "trainer/hf_model.h"
#include "trainer/model_instance.h"
#include "trainer/named_tensors.h"
#include "trainer/program.h"

namespace {

using namespace dyt;

int64_t positive_int(const config::CliArgs& args, const std::string& name) {
  auto it = args.options.find(name);
  if (it == args.options.end()) throw config::ConfigError("missing required option --" + name);
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used == it->second.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw config::ConfigError("option --" + name + " needs a positive integer, got '" + it->second + "'");
}

int run(int argc, char** argv) {
  const config::CliArgs args =
      config::parse_cli(argc, argv, {"tokens", "batch", "seq", "out", "weights", "seed", "export"}, {"logits"});
  if (args.config_path.empty()) throw config::ConfigError("missing required option --config");
  for (const char* required : {"tokens", "out"})
    if (!args.options.count(required))
      throw config::ConfigError(std::string("missing required option --") + required);
  const config::RunConfig cfg = config::load_run_config(args.config_path, args.overrides);
  const int64_t batch = positive_int(args, "batch"), seq = positive_int(args, "seq");
  const uint64_t seed =
      args.options.count("seed") ? static_cast<uint64_t>(positive_int(args, "seed")) : cfg.train().seed();

  // Tokens: row b is [b·T, b·T+T) and its targets are shifted by one.
  const data::TokenShard shard = data::TokenShard::open(args.options.at("tokens"));
  const int64_t n = batch * seq;
  if (shard.size() < n + 1)
    throw data::DataError(shard.path() + ": holds " + std::to_string(shard.size()) +
                          " tokens, --batch " + std::to_string(batch) + " --seq " +
                          std::to_string(seq) + " needs " + std::to_string(n + 1));
  std::vector<int32_t> window(n + 1);
  shard.read(0, n + 1, window.data());
  for (int64_t i = 0; i <= n; ++i)
    if (window[i] < 0 || window[i] >= cfg.model().vocab_size())
      throw data::DataError(shard.path() + ": token " + std::to_string(window[i]) + " at index " +
                            std::to_string(i) + " is outside model.vocab_size = " +
                            std::to_string(cfg.model().vocab_size()));

  trainer::ModelInstance model(cfg.model(), batch, seq, /*recompute=*/false);
  if (args.options.count("weights")) {
    const std::string& path = args.options.at("weights");
    std::vector<float> weights(static_cast<size_t>(model.layout().total()));
    trainer::load_named(model.layout(), checkpoint::read_safetensors(path), path, weights.data());
    model.params().set_master(weights.data());
  } else {
    model.init(seed);
  }
  const std::filesystem::path out = args.options.at("out");
  std::filesystem::create_directories(out);
  if (config::has_flag(args, "logits")) {
    // A forward of its own: the backward overwrites the logits with their gradient.
    model.forward(window.data(), window.data() + 1);
    std::vector<float> logits(static_cast<size_t>(n * cfg.model().vocab_size()));
    model.backend().download(model.acts().logits, logits.data());
    checkpoint::write_safetensors((out / "logits.safetensors").string(),
                                  {{"logits", {batch, seq, cfg.model().vocab_size()}, logits.data()}});
  }
  model.params().zero_grads();
  const double loss = model.forward_backward(window.data(), window.data() + 1, 1.0f / n) / n;

  const std::vector<float> weights = model.params().master_to_host();
  const std::vector<float> grads = model.params().grads_to_host();
  checkpoint::write_safetensors((out / "weights.safetensors").string(),
                                trainer::named_views(model.layout(), weights.data()));
  checkpoint::write_safetensors((out / "grads.safetensors").string(),
                                trainer::named_views(model.layout(), grads.data()));
  char buf[64];
  std::snprintf(buf, sizeof buf, "{\"loss\": %.17g}\n", loss);
  trainer::write_text_file((out / "loss.json").string(), buf);
  trainer::write_text_file((out / "config.json").string(), trainer::hf_config_json(model.dims()));
  trainer::write_hf_sources(out.string(), model.dims());  // so AutoConfig reads config.json
  if (args.options.count("export")) {
    const trainer::ParamLayout& layout = model.layout();
    trainer::write_hf_model(args.options.at("export"), model.dims(),
                            [&](const std::string& name, std::vector<float>& t) {
                              const trainer::ParamEntry& e = *layout.find(name);
                              t.assign(weights.begin() + e.offset, weights.begin() + e.offset + e.numel);
                            });
  }
  std::printf("loss %.9f (%lld tokens), wrote %s\n", loss, static_cast<long long>(n),
              out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-grad", [&] { return run(argc, argv); });
}
