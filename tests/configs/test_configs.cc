// Tests of the configs layer: shipped configs, overrides, validation, the
// width-aware α₀ rule, derived values and the command-line parser.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "configs/cli.h"
#include "configs/config.h"

namespace fs = std::filesystem;
using namespace dyt::config;

namespace {

const std::string kSource = DYT_SOURCE_DIR;
std::string shipped(const std::string& name) { return kSource + "/configs/" + name + ".pbtxt"; }
std::string bad(const std::string& name) { return kSource + "/tests/configs/bad/" + name + ".pbtxt"; }

// The message of the ConfigError that `f` throws ("" and a test failure if none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

std::string load_error(const std::string& path, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { load_run_config(path, overrides); });
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A small valid config to mutate.
RunConfig small() {
  return parse_run_config(R"(
    model { vocab_size: 256 d_model: 64 n_layers: 2 n_heads: 4 ffn_hidden: 128 }
    train { seq_len: 32 micro_batch: 2 global_batch_tokens: 128 steps: 10 })",
                          "small", {});
}

// validate() of small() after `mutate`, as one string.
std::string problems_after(const std::function<void(RunConfig&)>& mutate) {
  RunConfig c = small();
  mutate(c);
  std::string all;
  for (const auto& p : validate(c)) all += p + "\n";
  return all;
}

}  // namespace

// ---- shipped configs ----------------------------------------------------------

TEST(ShippedConfigs, AllLoadAndValidate) {
  for (const char* name : {"tiny", "llama7b", "llama13b", "llama34b", "llama70b"}) {
    SCOPED_TRACE(name);
    RunConfig c;
    ASSERT_NO_THROW(c = load_run_config(shipped(name), {}));
    EXPECT_TRUE(validate(c).empty());
    EXPECT_EQ(c.model().norm(), DYT);
  }
}

TEST(ShippedConfigs, TinyIsACpuRun) {
  const RunConfig c = load_run_config(shipped("tiny"), {});
  EXPECT_EQ(c.train().precision(), FP32);
  EXPECT_EQ(c.parallel().dp() * c.parallel().tp(), 1);
  EXPECT_EQ(kv_heads(c.model()), 2);
  EXPECT_EQ(head_dim(c.model()), 32);
  EXPECT_EQ(warmup_steps(c.train()), 30);
  // α₀ set in the file (the width rule would clamp width 128 to 1.0; issue 12).
  const AlphaInitValues a = resolve_alpha(c.model());
  EXPECT_EQ(a.attention, 6.0);
  EXPECT_EQ(a.ffn, 6.0);
  EXPECT_EQ(a.final, 6.0);
  EXPECT_EQ(width_rule_alpha(128, true), 1.0);
  // α's own learning rate 10× (issue 12: α₀ 6 with k 10 is the best found).
  EXPECT_EQ(c.train().alpha_lr_multiplier(), 10.0);
  EXPECT_TRUE(embed_scale_on(c.model()));
}

TEST(ShippedConfigs, LlamaShapesAndRecipe) {
  struct Want {
    const char* name;
    int64_t d, layers, heads, kv, ffn;
    double lr, a_att, a_other;
  };
  for (const Want& w : {Want{"llama7b", 4096, 32, 32, 32, 11008, 3e-4, 0.8, 0.2},
                        Want{"llama13b", 5120, 40, 40, 40, 13824, 3e-4, 0.6, 0.15},
                        Want{"llama34b", 8192, 48, 64, 8, 22016, 1.5e-4, 0.2, 0.05},
                        Want{"llama70b", 8192, 80, 64, 8, 28672, 1.5e-4, 0.2, 0.05}}) {
    SCOPED_TRACE(w.name);
    const RunConfig c = load_run_config(shipped(w.name), {});
    const ModelConfig& m = c.model();
    EXPECT_EQ(m.vocab_size(), 32000);
    EXPECT_EQ(m.d_model(), w.d);
    EXPECT_EQ(m.n_layers(), w.layers);
    EXPECT_EQ(m.n_heads(), w.heads);
    EXPECT_EQ(kv_heads(m), w.kv);
    EXPECT_EQ(m.ffn_hidden(), w.ffn);
    EXPECT_EQ(head_dim(m), 128);
    EXPECT_EQ(c.train().lr(), w.lr);
    // α₀ is explicit in the file and agrees with the width rule.
    ASSERT_TRUE(m.has_alpha_init());
    EXPECT_EQ(m.alpha_init().attention(), w.a_att);
    EXPECT_EQ(m.alpha_init().ffn(), w.a_other);
    EXPECT_EQ(m.alpha_init().final(), w.a_other);
    EXPECT_EQ(width_rule_alpha(w.d, true), w.a_att);
    EXPECT_EQ(width_rule_alpha(w.d, false), w.a_other);
    const TrainConfig& t = c.train();
    EXPECT_EQ(t.seq_len(), 4096);
    EXPECT_EQ(m.max_seq_len(), 4096);
    EXPECT_EQ(t.global_batch_tokens(), 4194304);
    EXPECT_EQ(t.micro_batch(), 1);
    EXPECT_EQ(t.precision(), BF16);
    EXPECT_EQ(t.weight_decay(), 0.1);
    EXPECT_EQ(t.grad_clip(), 1.0);
    EXPECT_EQ(t.beta1(), 0.9);
    EXPECT_EQ(t.beta2(), 0.95);
    EXPECT_EQ(m.rope_theta(), 10000);
    EXPECT_EQ(t.steps(), 47684);
    EXPECT_EQ(warmup_steps(t), 2000);
  }
}

// ---- overrides ----------------------------------------------------------------

TEST(Overrides, ScalarsEnumsStringsNestedInOrder) {
  const RunConfig c = load_run_config(
      shipped("tiny"), {"train.lr=1e-4", "model.norm=RMSNORM", "model.alpha_init.attention=0.5",
                        "train.run_dir=runs/other", "data.tokenizer=\"quoted.model\"", "train.steps=100",
                        "train.steps=200", "parallel.zero1=true", " train.seed = 7 "});
  EXPECT_EQ(c.train().lr(), 1e-4);
  EXPECT_EQ(c.model().norm(), RMSNORM);
  EXPECT_FALSE(embed_scale_on(c.model()));
  EXPECT_EQ(c.model().alpha_init().attention(), 0.5);
  EXPECT_EQ(c.model().alpha_init().ffn(), 6.0);  // the file's, untouched by the override
  EXPECT_EQ(c.train().run_dir(), "runs/other");
  EXPECT_EQ(c.data().tokenizer(), "quoted.model");
  EXPECT_EQ(c.train().steps(), 200);  // later overrides win
  EXPECT_TRUE(c.parallel().zero1());
  EXPECT_EQ(c.train().seed(), 7u);
}

TEST(Overrides, EnumByNumberAndMessageMerge) {
  RunConfig c = small();
  apply_override(c, "model.norm=3");
  EXPECT_EQ(c.model().norm(), DYISRU);
  apply_override(c, "model.alpha_init={ffn: 0.3 final: 0.25}");
  apply_override(c, "model.alpha_init={attention: 0.7}");
  EXPECT_EQ(c.model().alpha_init().attention(), 0.7);
  EXPECT_EQ(c.model().alpha_init().ffn(), 0.3);
  EXPECT_EQ(c.model().alpha_init().final(), 0.25);
}

TEST(Overrides, SupplyAMissingRequiredField) {
  const RunConfig c = load_run_config(bad("missing_required"), {"model.d_model=64"});
  EXPECT_EQ(c.model().d_model(), 64);
}

TEST(Overrides, UnknownPathsAreNamed) {
  for (const std::string o : {"model.d_modle=1", "modle.d_model=1", "train.lr.x=1", "=1", "model.=1"}) {
    SCOPED_TRACE(o);
    const std::string e = load_error(shipped("tiny"), {o});
    EXPECT_TRUE(contains(e, o.substr(0, o.find('=')))) << e;
    EXPECT_TRUE(contains(e, "--set " + o)) << e;
  }
  EXPECT_TRUE(contains(load_error(shipped("tiny"), {"model.d_modle=1"}), "unknown field path model.d_modle"));
  EXPECT_TRUE(contains(load_error(shipped("tiny"), {"train.lr.x=1"}), "train.lr is a double, not a message"));
}

TEST(Overrides, BadValuesNamePathAndValue) {
  struct Case {
    std::string override_text, path, value;
  };
  for (const Case& k : {Case{"model.d_model=abc", "model.d_model", "abc"},
                        Case{"model.d_model=1.5", "model.d_model", "1.5"},
                        Case{"model.d_model=", "model.d_model", ""},
                        Case{"model.norm=LAYERNORM", "model.norm", "LAYERNORM"},
                        Case{"model.norm=9", "model.norm", "9"},
                        Case{"train.lr=fast", "train.lr", "fast"},
                        Case{"train.lr=1e-4 2", "train.lr", "1e-4 2"},
                        Case{"parallel.zero1=maybe", "parallel.zero1", "maybe"},
                        Case{"parallel.tp=99999999999", "parallel.tp", "99999999999"},
                        Case{"model.alpha_init={nope: 1}", "model.alpha_init", "{nope: 1}"}}) {
    SCOPED_TRACE(k.override_text);
    const std::string e = load_error(shipped("tiny"), {k.override_text});
    EXPECT_TRUE(contains(e, k.path)) << e;
    EXPECT_TRUE(contains(e, "\"" + k.value + "\"") || k.value.empty()) << e;
  }
  EXPECT_TRUE(contains(load_error(shipped("tiny"), {"model.norm=LAYERNORM"}), "RMSNORM, DYT, DYISRU"));
  EXPECT_TRUE(contains(load_error(shipped("tiny"), {"train.lr"}), "expected PATH=VALUE"));
}

TEST(Overrides, FailedOverrideLeavesConfigUnchanged) {
  RunConfig c = small();
  const std::string before = c.SerializeAsString();
  EXPECT_THROW(apply_override(c, "model.alpha_init={ffn: 0.3 nope: 1}"), ConfigError);
  EXPECT_THROW(apply_override(c, "train.lr=x"), ConfigError);
  EXPECT_EQ(c.SerializeAsString(), before);
}

TEST(Overrides, InvalidResultIsReportedWithFileAndField) {
  const std::string e = load_error(shipped("tiny"), {"model.n_heads=3"});
  EXPECT_TRUE(contains(e, shipped("tiny") + ": model.n_heads")) << e;
}

// ---- loading errors -------------------------------------------------------------

TEST(Loading, MissingFileNamesThePath) {
  const std::string e = load_error("/nonexistent/dir/cfg.pbtxt");
  EXPECT_TRUE(contains(e, "/nonexistent/dir/cfg.pbtxt")) << e;
}

TEST(Loading, DirectoryIsRefused) {
  const std::string e = load_error(kSource + "/configs");
  EXPECT_TRUE(contains(e, "is a directory")) << e;
}

TEST(Loading, SyntaxErrorHasFileLineColumn) {
  const std::string e = load_error(bad("syntax_error"));
  EXPECT_TRUE(contains(e, bad("syntax_error") + ":5:12: ")) << e;
}

TEST(Loading, UnknownFieldHasLineAndName) {
  const std::string e = load_error(bad("unknown_field"));
  EXPECT_TRUE(contains(e, bad("unknown_field") + ":5:3: ")) << e;
  EXPECT_TRUE(contains(e, "d_modle")) << e;
}

TEST(Loading, UnknownEnumValuePointsAtTheValue) {
  const std::string e = load_error(bad("bad_enum"));
  EXPECT_TRUE(contains(e, bad("bad_enum") + ":9:9: ")) << e;
  EXPECT_TRUE(contains(e, "LAYERNORM")) << e;
  // Tabs count to the next multiple of 8, as protobuf's tokenizer does.
  const std::string t = error_of([] { parse_run_config("model {\n\tnorm: FOO\n}\n", "tab.pbtxt", {}); });
  EXPECT_TRUE(contains(t, "tab.pbtxt:2:15: ")) << t;
}

TEST(Loading, MissingRequiredFieldsAreAllNamed) {
  const std::string e =
      error_of([] { parse_run_config("model { vocab_size: 1 n_layers: 1 ffn_hidden: 1 }", "mem.pbtxt", {}); });
  EXPECT_TRUE(contains(e, "mem.pbtxt: missing required field model.d_model")) << e;
  EXPECT_TRUE(contains(e, "mem.pbtxt: missing required field model.n_heads")) << e;
  EXPECT_TRUE(contains(error_of([] { parse_run_config("", "empty.pbtxt", {}); }),
                       "empty.pbtxt: missing required field model"));
}

TEST(Loading, SeveralProblemsOnePerLine) {
  const std::string e = error_of([] {
    parse_run_config("model { vocab_size: 0 d_model: 64 n_layers: 0 n_heads: 4 ffn_hidden: 1 }", "two.pbtxt", {});
  });
  EXPECT_TRUE(contains(e, "two.pbtxt: model.vocab_size: must be > 0, got 0\n")) << e;
  EXPECT_TRUE(contains(e, "two.pbtxt: model.n_layers: must be > 0, got 0")) << e;
}

// Every tests/configs/bad/*.pbtxt fails to load, naming the file and the
// text of each of its "# expect: " lines.
TEST(Loading, EveryBadConfigIsRefusedNamingTheField) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(kSource + "/tests/configs/bad")) {
    if (entry.path().extension() != ".pbtxt") continue;
    ++n;
    const std::string path = entry.path().string();
    SCOPED_TRACE(path);
    std::ifstream in(path);
    std::vector<std::string> expects;
    for (std::string line; std::getline(in, line);)
      if (line.rfind("# expect: ", 0) == 0) expects.push_back(line.substr(10));
    ASSERT_FALSE(expects.empty()) << "no '# expect: ' line";
    const std::string e = load_error(path);
    EXPECT_TRUE(contains(e, path)) << e;
    for (const auto& x : expects) EXPECT_TRUE(contains(e, x)) << "missing '" << x << "' in: " << e;
  }
  EXPECT_GE(n, 9);
}

// ---- validation ---------------------------------------------------------------

TEST(Validate, SmallConfigIsValid) { EXPECT_TRUE(validate(small()).empty()); }

// Fewer KV heads than tensor-parallel ranks: each is replicated over
// tp / n_kv_heads ranks (70B's 8 KV heads at tp 16).
TEST(Validate, KvHeadsReplicatedWhenFewerThanTp) {
  RunConfig c = small();
  c.mutable_model()->set_n_kv_heads(2);
  c.mutable_parallel()->set_tp(4);
  EXPECT_TRUE(validate(c).empty());
}

TEST(Validate, EachRuleNamesItsField) {
  struct Case {
    std::function<void(RunConfig&)> mutate;
    std::string field;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<Case> cases = {
      {[](RunConfig& c) { c.mutable_model()->set_vocab_size(-1); }, "model.vocab_size"},
      {[](RunConfig& c) { c.mutable_model()->set_d_model(0); }, "model.d_model"},
      {[](RunConfig& c) { c.mutable_model()->set_n_layers(0); }, "model.n_layers"},
      {[](RunConfig& c) { c.mutable_model()->set_n_heads(0); }, "model.n_heads"},
      {[](RunConfig& c) { c.mutable_model()->set_n_kv_heads(0); }, "model.n_kv_heads"},
      {[](RunConfig& c) { c.mutable_model()->set_ffn_hidden(0); }, "model.ffn_hidden"},
      {[](RunConfig& c) { c.mutable_model()->set_max_seq_len(0); }, "model.max_seq_len"},
      {[](RunConfig& c) { c.mutable_train()->set_seq_len(0); }, "train.seq_len"},
      {[](RunConfig& c) { c.mutable_train()->set_micro_batch(0); }, "train.micro_batch"},
      {[](RunConfig& c) { c.mutable_train()->set_global_batch_tokens(0); }, "train.global_batch_tokens"},
      {[](RunConfig& c) { c.mutable_train()->set_steps(0); }, "train.steps"},
      {[](RunConfig& c) { c.mutable_model()->set_n_heads(5); }, "model.n_heads"},
      {[](RunConfig& c) { c.mutable_model()->set_n_heads(64); }, "model.d_model: head dim"},
      {[](RunConfig& c) { c.mutable_model()->set_n_kv_heads(3); }, "model.n_kv_heads"},
      {[](RunConfig& c) { c.mutable_model()->mutable_alpha_init()->set_attention(-1); }, "model.alpha_init.attention"},
      {[=](RunConfig& c) { c.mutable_model()->mutable_alpha_init()->set_ffn(nan); }, "model.alpha_init.ffn"},
      {[=](RunConfig& c) { c.mutable_model()->mutable_alpha_init()->set_final(inf); }, "model.alpha_init.final"},
      {[](RunConfig& c) { c.mutable_model()->set_norm_eps(0); }, "model.norm_eps"},
      {[](RunConfig& c) { c.mutable_model()->set_init_std(0); }, "model.init_std"},
      {[](RunConfig& c) { c.mutable_model()->set_rope_theta(-1); }, "model.rope_theta"},
      {[](RunConfig& c) { c.mutable_model()->set_norm(NORM_UNSPECIFIED); }, "model.norm"},
      {[](RunConfig& c) {
         c.mutable_model()->set_norm(RMSNORM);
         c.mutable_model()->set_norm_bias(true);
       },
       "model.norm_bias"},
      {[](RunConfig& c) { c.mutable_train()->set_lr(0); }, "train.lr"},
      {[=](RunConfig& c) { c.mutable_train()->set_lr(nan); }, "train.lr"},
      {[](RunConfig& c) { c.mutable_train()->set_min_lr_ratio(1.5); }, "train.min_lr_ratio"},
      {[](RunConfig& c) { c.mutable_train()->set_min_lr_ratio(-0.1); }, "train.min_lr_ratio"},
      {[](RunConfig& c) { c.mutable_train()->set_beta1(1.0); }, "train.beta1"},
      {[](RunConfig& c) { c.mutable_train()->set_beta2(-0.5); }, "train.beta2"},
      {[](RunConfig& c) { c.mutable_train()->set_adam_eps(0); }, "train.adam_eps"},
      {[](RunConfig& c) { c.mutable_train()->set_weight_decay(-0.1); }, "train.weight_decay"},
      {[](RunConfig& c) { c.mutable_train()->set_grad_clip(-1); }, "train.grad_clip"},
      {[](RunConfig& c) { c.mutable_train()->set_alpha_lr_multiplier(0); }, "train.alpha_lr_multiplier"},
      {[](RunConfig& c) { c.mutable_train()->set_warmup_steps(-2); }, "train.warmup_steps"},
      {[](RunConfig& c) { c.mutable_train()->set_log_every(0); }, "train.log_every"},
      {[](RunConfig& c) { c.mutable_train()->set_eval_every(-1); }, "train.eval_every"},
      {[](RunConfig& c) { c.mutable_train()->set_eval_batches(-1); }, "train.eval_batches"},
      {[](RunConfig& c) { c.mutable_train()->set_max_nonfinite_steps(0); }, "train.max_nonfinite_steps"},
      {[](RunConfig& c) { c.mutable_train()->set_precision(PRECISION_UNSPECIFIED); }, "train.precision"},
      {[](RunConfig& c) { c.mutable_train()->set_seq_len(8192); }, "train.seq_len"},
      {[](RunConfig& c) { c.mutable_train()->set_global_batch_tokens(100); }, "train.global_batch_tokens"},
      {[](RunConfig& c) { c.mutable_parallel()->set_dp(3); }, "train.global_batch_tokens"},
      {[](RunConfig& c) { c.mutable_parallel()->set_dp(0); }, "parallel.dp"},
      {[](RunConfig& c) { c.mutable_parallel()->set_tp(0); }, "parallel.tp"},
      {[](RunConfig& c) { c.mutable_parallel()->set_tp(8); }, "parallel.tp: 8 does not divide model.n_heads"},
      {[](RunConfig& c) {
         c.mutable_model()->set_d_model(96);
         c.mutable_model()->set_n_heads(6);
         c.mutable_model()->set_n_kv_heads(3);
         c.mutable_parallel()->set_tp(2);
       },
       "parallel.tp: 2 does not divide the KV heads"},
      {[](RunConfig& c) { c.mutable_model()->set_ffn_hidden(130); c.mutable_parallel()->set_tp(4); },
       "parallel.tp: 4 does not divide model.ffn_hidden"},
      {[](RunConfig& c) { c.mutable_model()->set_vocab_size(258); c.mutable_parallel()->set_tp(4); },
       "parallel.tp: 4 does not divide model.vocab_size"},
      {[](RunConfig& c) {
         c.mutable_train()->set_seq_len(30);
         c.mutable_train()->set_global_batch_tokens(120);
         c.mutable_parallel()->set_tp(4);
         c.mutable_parallel()->set_sequence_parallel(true);
       },
       "parallel.tp: 4 does not divide train.seq_len"},
      {[](RunConfig& c) { c.mutable_checkpoint()->set_every_steps(-1); }, "checkpoint.every_steps"},
      {[](RunConfig& c) { c.mutable_checkpoint()->set_keep(0); }, "checkpoint.keep"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": " + cases[i].field);
    const std::string all = problems_after(cases[i].mutate);
    EXPECT_TRUE(contains(all, cases[i].field)) << all;
  }
}

TEST(Validate, GoodVariantsPass) {
  EXPECT_EQ(problems_after([](RunConfig& c) { c.mutable_parallel()->set_tp(4); }), "");
  EXPECT_EQ(problems_after([](RunConfig& c) {
              c.mutable_model()->set_norm(DYISRU);
              c.mutable_model()->set_norm_bias(true);
            }),
            "");
  EXPECT_EQ(problems_after([](RunConfig& c) {
              c.mutable_train()->set_grad_clip(0);
              c.mutable_train()->set_weight_decay(0);
              c.mutable_train()->set_min_lr_ratio(0);
              c.mutable_train()->set_eval_every(0);
              c.mutable_train()->set_eval_batches(0);
              c.mutable_train()->set_warmup_steps(0);
            }),
            "");
  EXPECT_EQ(problems_after([](RunConfig& c) { c.mutable_model()->set_n_kv_heads(1); }), "");
  // Huge sizes must not overflow the batch-divisibility check.
  EXPECT_TRUE(contains(problems_after([](RunConfig& c) {
                         c.mutable_train()->set_micro_batch(int64_t{1} << 40);
                         c.mutable_parallel()->set_dp(1 << 30);
                       }),
                       "train.global_batch_tokens"));
}

// ---- α₀ width rule ------------------------------------------------------------

TEST(WidthRule, ExactAtTableRows) {
  EXPECT_EQ(width_rule_alpha(1024, true), 1.0);
  EXPECT_EQ(width_rule_alpha(1024, false), 1.0);
  EXPECT_EQ(width_rule_alpha(2048, true), 1.0);
  EXPECT_EQ(width_rule_alpha(2048, false), 0.5);
  EXPECT_EQ(width_rule_alpha(4096, true), 0.8);
  EXPECT_EQ(width_rule_alpha(4096, false), 0.2);
  EXPECT_EQ(width_rule_alpha(5120, true), 0.6);
  EXPECT_EQ(width_rule_alpha(5120, false), 0.15);
  EXPECT_EQ(width_rule_alpha(8192, true), 0.2);
  EXPECT_EQ(width_rule_alpha(8192, false), 0.05);
}

TEST(WidthRule, ClampedOutsideTheTable) {
  for (int64_t w : {int64_t{0}, int64_t{1}, int64_t{64}, int64_t{128}, int64_t{1023}}) {
    EXPECT_EQ(width_rule_alpha(w, true), 1.0);
    EXPECT_EQ(width_rule_alpha(w, false), 1.0);
  }
  for (int64_t w : {int64_t{8193}, int64_t{12288}, int64_t{16384}, int64_t{1} << 40}) {
    EXPECT_EQ(width_rule_alpha(w, true), 0.2);
    EXPECT_EQ(width_rule_alpha(w, false), 0.05);
  }
}

TEST(WidthRule, MonotoneNonIncreasing) {
  for (bool attention : {true, false}) {
    double prev = width_rule_alpha(256, attention);
    for (int64_t w = 257; w <= 16384; ++w) {
      const double a = width_rule_alpha(w, attention);
      ASSERT_LE(a, prev) << "width " << w;
      ASSERT_GT(a, 0.0);
      prev = a;
    }
  }
}

TEST(WidthRule, LinearInLog2Width) {
  // Geometric midpoints of rows get the arithmetic mean of the rows' α₀.
  const double mid_1024_2048 = std::sqrt(1024.0 * 2048.0);  // 1448.15
  const double t = std::log2(1448.0) - 10.0;                  // just under 0.5
  EXPECT_NEAR(width_rule_alpha(1448, false), 1.0 + t * (0.5 - 1.0), 1e-12);
  EXPECT_NEAR(width_rule_alpha(1448, false), 0.75, 2e-4);
  EXPECT_LT(1448.0, mid_1024_2048);
  // 4096 → 5120 and 5120 → 8192 segments, at their geometric midpoints.
  const auto at = [](double w0, double w1, double a0, double a1, int64_t w) {
    return a0 + (std::log2(double(w)) - std::log2(w0)) / (std::log2(w1) - std::log2(w0)) * (a1 - a0);
  };
  EXPECT_NEAR(width_rule_alpha(4579, true), at(4096, 5120, 0.8, 0.6, 4579), 1e-12);
  EXPECT_NEAR(width_rule_alpha(4579, true), 0.7, 1e-3);
  EXPECT_NEAR(width_rule_alpha(6476, false), at(5120, 8192, 0.15, 0.05, 6476), 1e-12);
  EXPECT_NEAR(width_rule_alpha(6476, false), 0.1, 1e-3);
  EXPECT_NEAR(width_rule_alpha(3000, true), at(2048, 4096, 1.0, 0.8, 3000), 1e-12);
}

TEST(ResolveAlpha, PerKindOverridesWinOverTheRule) {
  ModelConfig m = small().model();
  m.set_d_model(4096);
  AlphaInitValues a = resolve_alpha(m);
  EXPECT_EQ(a.attention, 0.8);
  EXPECT_EQ(a.ffn, 0.2);
  EXPECT_EQ(a.final, 0.2);
  m.mutable_alpha_init()->set_ffn(0.3);
  a = resolve_alpha(m);
  EXPECT_EQ(a.attention, 0.8);
  EXPECT_EQ(a.ffn, 0.3);
  EXPECT_EQ(a.final, 0.2);
  m.mutable_alpha_init()->set_final(0.4);
  m.mutable_alpha_init()->set_attention(0.9);
  a = resolve_alpha(m);
  EXPECT_EQ(a.attention, 0.9);
  EXPECT_EQ(a.ffn, 0.3);
  EXPECT_EQ(a.final, 0.4);
}

// ---- derived values -------------------------------------------------------------

TEST(Derived, HeadsEmbedScaleWarmup) {
  ModelConfig m = small().model();
  EXPECT_EQ(kv_heads(m), 4);
  EXPECT_EQ(head_dim(m), 16);
  m.set_n_kv_heads(2);
  EXPECT_EQ(kv_heads(m), 2);

  EXPECT_TRUE(embed_scale_on(m));  // DYT by default
  m.set_norm(DYISRU);
  EXPECT_TRUE(embed_scale_on(m));
  m.set_norm(RMSNORM);
  EXPECT_FALSE(embed_scale_on(m));
  m.set_embed_scale(true);
  EXPECT_TRUE(embed_scale_on(m));
  m.set_norm(DYT);
  m.set_embed_scale(false);
  EXPECT_FALSE(embed_scale_on(m));

  TrainConfig t;
  t.set_steps(600);
  EXPECT_EQ(warmup_steps(t), 30);
  t.set_steps(1000000);
  EXPECT_EQ(warmup_steps(t), 2000);
  t.set_steps(19);
  EXPECT_EQ(warmup_steps(t), 0);
  t.set_warmup_steps(5);
  EXPECT_EQ(warmup_steps(t), 5);
  t.set_warmup_steps(0);
  EXPECT_EQ(warmup_steps(t), 0);
}

TEST(Derived, ResolvedWritesEverythingOutAndRoundTrips) {
  const RunConfig c = load_run_config(shipped("tiny"), {});
  const RunConfig r = resolved(c);
  EXPECT_EQ(r.model().n_kv_heads(), 2);
  EXPECT_TRUE(r.model().has_embed_scale());
  EXPECT_TRUE(r.model().embed_scale());
  EXPECT_EQ(r.model().alpha_init().final(), 6.0);  // tiny's own
  // Without α₀ in the file, the width rule's values are written out.
  RunConfig bare = c;
  bare.mutable_model()->clear_alpha_init();
  const RunConfig rb = resolved(bare);
  EXPECT_TRUE(rb.model().alpha_init().has_attention());
  EXPECT_EQ(rb.model().alpha_init().final(), 1.0);
  EXPECT_EQ(r.train().warmup_steps(), 30);
  EXPECT_TRUE(r.train().has_adam_eps());
  EXPECT_EQ(r.train().adam_eps(), 1e-8);
  EXPECT_TRUE(r.model().has_rope_theta());
  EXPECT_TRUE(r.checkpoint().has_keep());
  EXPECT_TRUE(validate(r).empty());

  const std::string text = to_text(r);
  EXPECT_TRUE(contains(text, "adam_eps: 1e-08")) << text;
  EXPECT_TRUE(contains(text, "norm: DYT")) << text;
  const RunConfig back = parse_run_config(text, "resolved", {});
  EXPECT_EQ(back.SerializeAsString(), r.SerializeAsString());
  // Resolving twice changes nothing.
  EXPECT_EQ(resolved(r).SerializeAsString(), r.SerializeAsString());
}

// ---- command line -----------------------------------------------------------------

namespace {
CliArgs cli(std::vector<std::string> args) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse_cli(static_cast<int>(argv.size()), argv.data(), {"out", "ranks"}, {"dry-run", "help"});
}
std::string cli_error(std::vector<std::string> args) {
  return error_of([&] { cli(std::move(args)); });
}
}  // namespace

TEST(Cli, ParsesConfigSetsOptionsAndFlags) {
  const CliArgs a = cli({"--config", "configs/tiny.pbtxt", "--set", "train.lr=1e-3", "--dry-run", "--out=x.json",
                         "--set=model.norm=RMSNORM", "--ranks", "8", "--dry-run"});
  EXPECT_EQ(a.config_path, "configs/tiny.pbtxt");
  EXPECT_EQ(a.overrides, (std::vector<std::string>{"train.lr=1e-3", "model.norm=RMSNORM"}));
  EXPECT_EQ(a.options.at("out"), "x.json");
  EXPECT_EQ(a.options.at("ranks"), "8");
  EXPECT_EQ(a.flags, std::vector<std::string>{"dry-run"});
  EXPECT_TRUE(has_flag(a, "dry-run"));
  EXPECT_FALSE(has_flag(a, "help"));
  EXPECT_EQ(cli({}).config_path, "");
}

TEST(Cli, ErrorsNameTheOption) {
  EXPECT_EQ(cli_error({"--bogus"}), "unknown option --bogus");
  EXPECT_EQ(cli_error({"--config"}), "option --config needs a value");
  EXPECT_EQ(cli_error({"--set"}), "option --set needs a value");
  EXPECT_EQ(cli_error({"--out", "--dry-run"}), "option --out needs a value");
  EXPECT_EQ(cli_error({"--config", "a", "--config", "b"}), "option --config given more than once");
  EXPECT_EQ(cli_error({"--out", "a", "--out=b"}), "option --out given more than once");
  EXPECT_EQ(cli_error({"--help=yes"}), "flag --help takes no value");
  EXPECT_TRUE(contains(cli_error({"configs/tiny.pbtxt"}), "unexpected argument 'configs/tiny.pbtxt'"));
}
