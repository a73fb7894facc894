#include "parallel/mesh.h"

namespace dyt::parallel {

Mesh Mesh::make(int world, int rank, int dp, int tp) {
  if (dp < 1 || tp < 1)
    throw LayoutError("parallel.dp = " + std::to_string(dp) + ", parallel.tp = " + std::to_string(tp) +
                      ": both must be >= 1");
  const long long ranks = static_cast<long long>(dp) * tp;
  if (ranks != world)
    throw LayoutError("parallel.dp × parallel.tp = " + std::to_string(dp) + " × " + std::to_string(tp) +
                      " = " + std::to_string(ranks) + (ranks == 1 ? " rank" : " ranks") + ", but " +
                      std::to_string(world) + (world == 1 ? " process was" : " processes were") +
                      " started (launch with mpirun -np " + std::to_string(ranks) +
                      ", or change the layout)");
  if (rank < 0 || rank >= world)
    throw LayoutError("rank " + std::to_string(rank) + " is outside a world of " + std::to_string(world));
  Mesh m;
  m.world = world;
  m.rank = rank;
  m.dp = dp;
  m.tp = tp;
  m.dp_rank = rank / tp;
  m.tp_rank = rank % tp;
  return m;
}

}  // namespace dyt::parallel
