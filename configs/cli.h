// The whole command line of a dyt-train program: a config file, overrides of
// its fields by path, and a few program-specific options. No flag sprawl:
// settings of a run belong in the config (configs/dyt.proto).
//
//   prog --config configs/tiny.pbtxt --set train.lr=1e-3 --set model.norm=RMSNORM
//
// Programs exit with status 2 when parse_cli or load_run_config throws
// ConfigError (print what() to stderr), 1 on other failures.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "configs/config.h"

namespace dyt::config {

struct CliArgs {
  std::string config_path;                     // --config FILE ("" if absent)
  std::vector<std::string> overrides;          // each --set a.b=v, in order
  std::map<std::string, std::string> options;  // --name value, name in value_options
  std::vector<std::string> flags;              // --name, name in flag_options (each once)
};

// Parses argv[1..argc). Accepted forms:
//   --config FILE | --config=FILE     (at most once)
//   --set a.b=v                        (repeatable; order kept)
//   --name value | --name=value        (name in value_options; at most once)
//   --name                             (name in flag_options)
// Throws ConfigError: "unknown option --x", "option --x needs a value",
// "option --x given more than once", "flag --x takes no value",
// "unexpected argument 'x'" (positional arguments are not accepted).
// "config" and "set" are built in and need not be listed.
CliArgs parse_cli(int argc, char** argv, const std::set<std::string>& value_options,
                  const std::set<std::string>& flag_options);

// True when `name` was given as a flag.
bool has_flag(const CliArgs& args, const std::string& name);

// The integer value of option --name, `fallback` when absent; ConfigError
// "option --name needs an integer >= min_value, got 'x'" otherwise.
int64_t int_option(const CliArgs& args, const std::string& name, int64_t fallback,
                   int64_t min_value);

}  // namespace dyt::config
