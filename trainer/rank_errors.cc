#include "trainer/rank_errors.h"

#include <vector>

namespace dyt::trainer {

std::string first_error(parallel::Communicator& comm, const std::string& error) {
  const int64_t failing = comm.allreduce_max(error.empty() ? 0 : comm.rank() + 1);
  if (failing == 0) return "";
  // The failing rank's bytes (as byte + 1, so 0 ends the text) reach the
  // others through a sum to which only it contributes: exact in double.
  constexpr size_t kMax = 4000;
  std::vector<double> text(kMax, 0.0);
  if (comm.rank() + 1 == failing)
    for (size_t i = 0; i < error.size() && i < kMax; ++i) text[i] = static_cast<unsigned char>(error[i]) + 1.0;
  comm.allreduce_sum(text.data(), text.size());
  std::string out;
  for (double c : text) {
    if (c == 0.0) break;
    out += static_cast<char>(static_cast<int>(c) - 1);
  }
  return comm.size() > 1 ? "rank " + std::to_string(failing - 1) + ": " + out : out;
}

}  // namespace dyt::trainer
