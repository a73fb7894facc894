#include "configs/cli.h"

#include <algorithm>

namespace dyt::config {

CliArgs parse_cli(int argc, char** argv, const std::set<std::string>& value_options,
                  const std::set<std::string>& flag_options) {
  CliArgs out;
  bool have_config = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0)
      throw ConfigError("unexpected argument '" + arg + "' (use --config FILE and --set a.b=value)");
    std::string name = arg.substr(2);
    std::string value;
    bool inline_value = false;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const bool is_value = name == "config" || name == "set" || value_options.count(name) > 0;
    const bool is_flag = !is_value && flag_options.count(name) > 0;
    if (!is_value && !is_flag) throw ConfigError("unknown option --" + name);
    if (is_flag) {
      if (inline_value) throw ConfigError("flag --" + name + " takes no value");
      if (std::find(out.flags.begin(), out.flags.end(), name) == out.flags.end()) out.flags.push_back(name);
      continue;
    }
    if (!inline_value) {
      // A following "--x" is the next option, not this one's value.
      if (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0)
        throw ConfigError("option --" + name + " needs a value");
      value = argv[++i];
    }
    if (value.empty()) throw ConfigError("option --" + name + " needs a value");
    if (name == "set") {
      out.overrides.push_back(value);
    } else if (name == "config") {
      if (have_config) throw ConfigError("option --config given more than once");
      out.config_path = value;
      have_config = true;
    } else {
      if (!out.options.emplace(name, value).second)
        throw ConfigError("option --" + name + " given more than once");
    }
  }
  return out;
}

bool has_flag(const CliArgs& args, const std::string& name) {
  return std::find(args.flags.begin(), args.flags.end(), name) != args.flags.end();
}

int64_t int_option(const CliArgs& args, const std::string& name, int64_t fallback,
                   int64_t min_value) {
  auto it = args.options.find(name);
  if (it == args.options.end()) return fallback;
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= min_value) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError("option --" + name + " needs an integer >= " + std::to_string(min_value) +
                    ", got '" + it->second + "'");
}

}  // namespace dyt::config
