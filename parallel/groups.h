// The communicators of this rank's groups in the mesh: its tensor-parallel
// group (the tp ranks of one replica, neighbours in the world) and its
// data-parallel group (the ranks that hold the same tp shard in every
// replica). Each is ordered by the rank's index in it, so tp.rank() is
// mesh.tp_rank and dp.rank() is mesh.dp_rank.
#pragma once

#include <memory>

#include "parallel/communicator.h"
#include "parallel/mesh.h"

namespace dyt::parallel {

struct Groups {
  std::unique_ptr<Communicator> dp, tp;
};

// Collective over `world`: every rank calls it with its own mesh of one
// layout. A group of one (tp = 1, or dp = 1) is a LocalCommunicator, made
// without a call to MPI (every rank agrees, since the layout is common);
// the others are world.split(colour = the index of the group, key = the
// rank's index in it), the tp split first. Throws LayoutError when the mesh
// is not this world's (its size or this rank differ). The groups must be
// destroyed before the MPI session ends.
Groups make_groups(Communicator& world, const Mesh& mesh);

}  // namespace dyt::parallel
