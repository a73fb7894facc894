// The host emulator's checking options (emu.h), in plain C++ so that a test
// can set them without the CUDA macro overrides emu.h brings.
//
//   order           the order in which the threads of a block run each
//                   barrier interval: in index order, reversed, or shuffled
//                   afresh per interval (a missing __syncthreads shows only
//                   when some reader runs before its writer)
//   seed            the shuffle's seed (with the launch count, the block and
//                   the interval it fixes every permutation)
//   poison_shared   fill every __shared__ array with all-ones bytes (NaN in
//                   f32, bf16 and f64) at the start of each block
//   check_pointers  every pointer argument of a launch must be null or lie in
//                   a live cudaMalloc'd allocation
//
// Defaults: $DYT_EMU_ORDER (forward | reverse | shuffle, default forward),
// $DYT_EMU_SEED (default 1), both checks on. Read once, at first use.
#pragma once

#include <cstdint>
#include <string>

namespace emu {

enum class Order { kForward, kReverse, kShuffle };

struct Options {
  Order order = Order::kForward;
  uint64_t seed = 1;
  bool poison_shared = true;
  bool check_pointers = true;
};

Options& options();
// "order=shuffle seed=1" (for failure messages: what replays a run).
std::string describe_options();

}  // namespace emu
