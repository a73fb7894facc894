// The NCCL settings behind the GPU reproducibility contract, "same layout,
// same machine, same bits" (docs/parallel.md). Plain C++ with no NCCL or
// CUDA, so the CPU build tests it.
//
// NCCL's sums are not in rank order, and which order it uses depends on the
// algorithm and protocol its tuner picks per call (by size, node count and
// bandwidth), on NVLink SHARP (NVLS, reduced in the switch, "not
// deterministic between different calls" by NCCL's maintainers) and on
// CollNet (SHARP in the network). Ring with the Simple protocol, with NVLS and
// CollNet off, gives each call a reduction order fixed by the ring, which
// NCCL derives from the machine's topology: so the same layout on the same
// machine sums in the same order every run.
#pragma once

#include <string>
#include <vector>

namespace dyt::parallel {

struct NcclSetting {
  const char* name;   // the environment variable NCCL reads
  const char* value;  // what the contract needs (compared case-insensitively)
};

// NCCL_ALGO=Ring, NCCL_PROTO=Simple, NCCL_NVLS_ENABLE=0, NCCL_COLLNET_ENABLE=0.
const std::vector<NcclSetting>& nccl_deterministic_settings();

// Called before NCCL's first use in the process (NCCL reads these once, at
// its first initialisation): sets every variable of the list that is unset
// (setenv without overwriting), and checks those already set. One set to
// anything else is refused with a std::runtime_error naming the variable,
// its value and the value needed, unless DYT_NCCL_NONDETERMINISTIC=1 is set:
// then the departures are returned (one line each) for the caller to warn
// about, and the contract does not hold. Returns nothing when it holds.
std::vector<std::string> pin_nccl_determinism();

}  // namespace dyt::parallel
