// Which communicator carries each group's tensors in a run: on a CUDA
// backend in a build with NCCL, every group of more than one rank (dp, tp)
// gets an NCCL communicator of its own, made over the group's MPI one (the
// id broadcast there) on the backend's stream, so gradients, parameters and
// activations go between GPUs without a host copy; the host values (loss,
// norm sums, errors, barriers) stay on MPI. Elsewhere (the CPU backend, a
// build without NCCL, groups of one) the tensors use the host communicators,
// a device backend's staged through host memory.
#pragma once

#include <memory>
#include <string>

#include "kernels/backend.h"
#include "parallel/communicator.h"
#include "parallel/groups.h"
#include "trainer/train_step.h"

namespace dyt::trainer {

struct DeviceComms {
  // Destroyed before the host groups they were made from and before the
  // backend (its stream): declare them after both. The dp stream (when
  // overlap gives dp's NCCL communicator a stream of its own) outlives dp.
  std::unique_ptr<DpStream> dp_stream;
  std::unique_ptr<parallel::Communicator> dp, tp;
  DeviceGroups groups() const { return {dp.get(), tp.get(), dp_stream.get()}; }
};

// Collective over each group of more than one rank (dp first, then tp). A
// failure to start NCCL throws on every rank of the group where it can be
// agreed (nccl_communicator.h), else on the rank that saw it. overlap
// (parallel.overlap_grad_reduce): dp's NCCL communicator runs on a second
// stream ordered against the backend's by events, so its bucket reductions
// run beside the backward's kernels.
DeviceComms make_device_comms(const parallel::Groups& groups, kernels::Backend& backend, bool overlap = false);

// "dp 2: NCCL 2.28.9 (host values over MPI), tp 2: MPI, staged through host
// memory" — the groups of more than one rank; "" when there are none.
std::string describe_comms(const parallel::Groups& groups, const DeviceComms& device,
                           const kernels::Backend& backend);

}  // namespace dyt::trainer
