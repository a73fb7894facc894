#include "parallel/nccl_env.h"

#include <strings.h>

#include <cstdlib>
#include <stdexcept>

namespace dyt::parallel {

const std::vector<NcclSetting>& nccl_deterministic_settings() {
  static const std::vector<NcclSetting> s{
      {"NCCL_ALGO", "Ring"}, {"NCCL_PROTO", "Simple"}, {"NCCL_NVLS_ENABLE", "0"}, {"NCCL_COLLNET_ENABLE", "0"}};
  return s;
}

std::vector<std::string> pin_nccl_determinism() {
  const char* allow = std::getenv("DYT_NCCL_NONDETERMINISTIC");
  const bool allowed = allow != nullptr && std::string(allow) == "1";
  std::vector<std::string> departures;
  for (const NcclSetting& s : nccl_deterministic_settings()) {
    const char* have = std::getenv(s.name);
    if (have == nullptr) {
      if (setenv(s.name, s.value, 0) != 0) throw std::runtime_error(std::string("setenv ") + s.name + " failed");
      continue;
    }
    if (strcasecmp(have, s.value) == 0) continue;
    const std::string line = std::string(s.name) + "=" + have + " (the reproducibility contract needs " + s.name +
                             "=" + s.value + ")";
    if (!allowed)
      throw std::runtime_error("NCCL setting " + line +
                               "; unset it, or set DYT_NCCL_NONDETERMINISTIC=1 to run without the contract");
    departures.push_back(line);
  }
  return departures;
}

}  // namespace dyt::parallel
