// The process mesh: world = dp × tp ranks, tp innermost, so the tp ranks of
// one replica are neighbours (rank = dp_rank · tp + tp_rank) and share a node
// when ranks are placed by node.
#pragma once

#include <stdexcept>
#include <string>

namespace dyt::parallel {

// A layout that the world cannot hold; what() names parallel.dp, parallel.tp
// and the world size.
struct LayoutError : std::runtime_error {
  using runtime_error::runtime_error;
};

struct Mesh {
  int world = 1, rank = 0;
  int dp = 1, tp = 1;
  int dp_rank = 0, tp_rank = 0;

  // Throws LayoutError unless dp, tp >= 1, dp · tp == world and
  // 0 <= rank < world.
  static Mesh make(int world, int rank, int dp, int tp);
};

}  // namespace dyt::parallel
