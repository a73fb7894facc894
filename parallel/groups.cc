#include "parallel/groups.h"

#include <string>

namespace dyt::parallel {

Groups make_groups(Communicator& world, const Mesh& mesh) {
  if (mesh.world != world.size() || mesh.rank != world.rank())
    throw LayoutError("the mesh is for rank " + std::to_string(mesh.rank) + " of " + std::to_string(mesh.world) +
                      ", but this process is rank " + std::to_string(world.rank()) + " of " +
                      std::to_string(world.size()));
  Groups g;
  // Same order on every rank (tp, then dp): splits are collective.
  g.tp = mesh.tp == 1 ? std::make_unique<LocalCommunicator>() : world.split(mesh.dp_rank, mesh.tp_rank);
  g.dp = mesh.dp == 1 ? std::make_unique<LocalCommunicator>() : world.split(mesh.tp_rank, mesh.dp_rank);
  return g;
}

}  // namespace dyt::parallel
