// MurmurHash3's 64-bit finalizer: a bijective mixer of 64-bit words, the
// root of every seeded choice in the data pipeline (sample order, the
// train/validation split), so each depends only on (seed, index).
#pragma once

#include <cstdint>

namespace dyt::data {

constexpr uint64_t fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace dyt::data
