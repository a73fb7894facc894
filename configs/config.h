// Loading, overriding, validating and resolving a dyt-train run config.
//
// A run is described by one text-format file (configs/*.pbtxt, schema in
// configs/dyt.proto) plus command-line overrides `--set a.b.c=value`.
// Everything that can be wrong with a config is reported as a ConfigError
// before any work starts; its message names the file (and line, for syntax
// errors) and the field path. Programs catch ConfigError, print what() to
// stderr and exit with status 2 (1 stays for runtime failures).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "configs/dyt.pb.h"

namespace dyt::config {

// A config cannot be used. what() is one message, possibly several lines
// (one problem per line), each naming the file and/or the field path.
struct ConfigError : std::runtime_error {
  using runtime_error::runtime_error;
};

// Reads the text-format RunConfig at `path`, applies `overrides` in order,
// checks required fields and validate(). Throws ConfigError:
//   - the file is missing/unreadable: "PATH: cannot read config file: ...";
//   - a syntax error or unknown field: "PATH:LINE:COL: message" (1-based);
//   - an override is malformed, names an unknown path, or has a bad value:
//     "--set PATH=VALUE: ..." naming the path (and the value);
//   - required fields missing after overrides:
//     "PATH: missing required field model.d_model" (one line each);
//   - validate() problems: "PATH: <problem>" (one line each).
//
// Override syntax: `a.b.c=value`, the path walking message fields by name
// from RunConfig (so `train.lr=1e-4`, `model.norm=RMSNORM`,
// `model.alpha_init.attention=0.5`). Values use protobuf text-format syntax
// for the field's type: numbers, `inf`, enum names (or numbers), true/false.
// String values may be given bare (`train.run_dir=runs/x`) or quoted. A path
// ending at a message field takes a text-format message that is merged into
// it: `model.alpha_init={attention: 0.5 ffn: 0.1}`.
RunConfig load_run_config(const std::string& path,
                          const std::vector<std::string>& overrides);

// Like load_run_config, but from text already in memory; `name` stands in
// for the file name in messages. Useful for tests and for configs embedded
// in checkpoints.
RunConfig parse_run_config(const std::string& text, const std::string& name,
                           const std::vector<std::string>& overrides);

// Applies one override `a.b.c=value` to `cfg` (see load_run_config).
// Throws ConfigError naming the override on any problem.
void apply_override(RunConfig& cfg, const std::string& override_text);

// Every problem with the values of a config whose required fields are set,
// each starting with the field path it is about (e.g.
// "model.n_heads: 5 does not divide model.d_model = 128"). Empty = valid.
// Unset optional fields are judged by their schema defaults.
std::vector<std::string> validate(const RunConfig& cfg);

// ---- derived values ------------------------------------------------------

// Key/value heads: n_kv_heads when set, else n_heads.
int64_t kv_heads(const ModelConfig& m);
// Per-head width: d_model / n_heads (validate() guarantees it divides).
int64_t head_dim(const ModelConfig& m);
// Whether the learnable embedding scale is used: the field when set, else
// on for DYT and DYISRU and off for RMSNORM.
bool embed_scale_on(const ModelConfig& m);

// The DyT paper's width-aware α₀ (table of widths 1024…8192, attention and
// "other" = FFN and final DyT): exact at the table rows, linear in
// log2(width) between rows, clamped to the first/last row outside them.
double width_rule_alpha(int64_t width, bool attention);

struct AlphaInitValues {
  double attention;  // input_layernorm of every block
  double ffn;        // post_attention_layernorm of every block
  double final;      // model.norm
};
// α₀ per kind: model.alpha_init.<kind> when set, else the width rule at
// d_model.
AlphaInitValues resolve_alpha(const ModelConfig& m);

// Warmup length: train.warmup_steps when >= 0, else min(2000, steps / 20).
int64_t warmup_steps(const TrainConfig& t);

// A copy of `cfg` with every derived choice written out, for logging and for
// recording what a run actually used: all schema defaults made explicit in
// every sub-message, n_kv_heads, embed_scale, alpha_init (all three kinds)
// and warmup_steps resolved to the values the helpers above return.
RunConfig resolved(const RunConfig& cfg);

// Protobuf text format of `cfg` (as given; pass resolved(cfg) to log every
// value in effect).
std::string to_text(const RunConfig& cfg);

}  // namespace dyt::config
